//! Fuzzes the tokenizers built from real GGUF vocabularies (MiniLM's
//! WordPiece from `tests/fixtures`, and EmbeddingGemma's and Gemma 3's
//! SentencePiece-BPE when the model cache has them): any text, with and
//! without special-token parsing, must encode to in-vocabulary ids without a
//! panic, truncate to any length, and decode back.

#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use kiln_runtime::gguf::GgufFile;
use kiln_runtime::tokenizer::{EncodeOptions, Tokenizer};
use libfuzzer_sys::fuzz_target;

fn cache_dir() -> PathBuf {
    std::env::var_os("KILN_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kiln")))
        .unwrap_or_default()
}

/// Every tokenizer that could be built, each from the file's metadata only.
static TOKENIZERS: LazyLock<Vec<Tokenizer>> = LazyLock::new(|| {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![manifest.join("../tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf")];
    // One file per cached model; the F32 variants share their tokenizer.
    if let Ok(dir) = std::fs::read_dir(cache_dir().join("models")) {
        for model in dir
            .flatten()
            .filter(|m| !m.file_name().to_string_lossy().ends_with("-f32"))
        {
            for file in std::fs::read_dir(model.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if file.path().extension().is_some_and(|e| e == "gguf") {
                    paths.push(file.path());
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.file_name().map(|n| n.to_owned())));
    let toks: Vec<Tokenizer> = paths
        .iter()
        .filter_map(|p| GgufFile::open(p).ok())
        .filter_map(|f| Tokenizer::from_gguf(&f).ok())
        .collect();
    eprintln!("fuzzing {} tokenizers from {paths:?}", toks.len());
    toks
});

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    for t in TOKENIZERS.iter() {
        let opts = EncodeOptions {
            add_special: flags & 1 != 0,
            parse_special: flags & 2 != 0,
        };
        let Ok(mut ids) = t.encode(&text, &opts) else {
            continue;
        };
        let n = t.vocab_size();
        assert!(
            ids.iter().all(|&id| (id as usize) < n),
            "id out of vocabulary"
        );
        let _ = t.decode(&ids);
        let keep = usize::from(flags >> 2);
        t.truncate(&mut ids, keep);
        assert!(ids.len() <= keep, "truncate kept {} of {keep}", ids.len());
    }
});
