//! Shared helpers of the tokenizer tests: fixture paths and golden files.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::path::PathBuf;

use kiln_runtime::gguf::GgufFile;
use kiln_runtime::tokenizer::Tokenizer;

/// `tests/fixtures` at the repository root.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// One line of a golden JSONL file.
pub struct Golden {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub n_tokens_used: Option<usize>,
}

/// Read `tests/fixtures/goldens/NAME`.
pub fn goldens(name: &str) -> Vec<Golden> {
    let path = fixtures().join("goldens").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("golden line is JSON");
            Golden {
                text: v["text"].as_str().expect("text").to_owned(),
                token_ids: v["token_ids"]
                    .as_array()
                    .expect("token_ids")
                    .iter()
                    .map(|x| u32::try_from(x.as_u64().expect("id")).expect("id fits u32"))
                    .collect(),
                n_tokens_used: v["n_tokens_used"].as_u64().map(|n| n as usize),
            }
        })
        .collect()
}

/// The MiniLM GGUF made by llama.cpp (in the repository).
pub fn minilm() -> (GgufFile, Tokenizer) {
    let file = GgufFile::open(fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf"))
        .expect("MiniLM fixture opens");
    let tok = Tokenizer::from_gguf(&file).expect("MiniLM tokenizer");
    (file, tok)
}

/// A GGUF with EmbeddingGemma's vocabulary. Until the converted
/// EmbeddingGemma GGUF is available this is Gemma-3-270M's (same tokens and
/// scores; its token types differ only for `<start_of_image>` and
/// `<end_of_image>`, user-defined there and control in EmbeddingGemma; no
/// golden input contains them). That GGUF says `add_eos_token = false`, so
/// callers turn EOS on as EmbeddingGemma's GGUF does.
pub fn gemma_path() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("KILN_HOME")
            .map(|h| PathBuf::from(h).join("models/gemma-3-270m-q4_k_m.gguf")),
        Some(PathBuf::from("/work/models/gemma-3-270m-q4_k_m.gguf")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.exists());
    if found.is_none() {
        println!("skipped: gemma-3-270m-q4_k_m.gguf not found ($KILN_HOME/models or /work/models)");
    }
    found
}

/// Gemma's tokenizer with EmbeddingGemma's settings, or `None` (skip).
pub fn gemma() -> Option<Tokenizer> {
    let file = GgufFile::open(gemma_path()?).expect("Gemma GGUF opens");
    Some(
        Tokenizer::from_gguf(&file)
            .expect("Gemma tokenizer")
            .with_add_eos(true)
            .expect("Gemma has EOS"),
    )
}

/// Token ids whose type differs between Gemma-3-270M's GGUF (user-defined)
/// and EmbeddingGemma's (control): `<start_of_image>`, `<end_of_image>`.
/// See `tests/fixtures/tools/embeddinggemma_token_types.py`.
pub const EMBEDDINGGEMMA_CONTROL_NOT_IN_270M: [usize; 2] = [255_999, 256_000];

/// Gemma-3-270M's vocabulary with EmbeddingGemma's token types and
/// `add_eos_token`: the tokenizer the EmbeddingGemma GGUF describes.
pub fn embeddinggemma_like() -> Option<Tokenizer> {
    use kiln_runtime::tokenizer::Vocab;
    let file = GgufFile::open(gemma_path()?).expect("Gemma GGUF opens");
    let mut v = Vocab::from_gguf_metadata(file.metadata()).expect("Gemma vocab");
    for id in EMBEDDINGGEMMA_CONTROL_NOT_IN_270M {
        assert_eq!(v.types[id], 4, "user-defined in Gemma-3-270M");
        v.types[id] = 3;
    }
    v.add_eos = true;
    Some(Tokenizer::from_vocab(&v).expect("tokenizer"))
}
