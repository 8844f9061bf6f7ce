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

/// The shared fixtures beside the repository (`../shared/fixtures`), where
/// goldens land before they are copied into `tests/fixtures`.
pub fn shared_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

/// Read `tests/fixtures/goldens/NAME`, else the shared fixtures' copy.
pub fn goldens(name: &str) -> Vec<Golden> {
    let mut path = fixtures().join("goldens").join(name);
    if !path.exists() {
        path = shared_fixtures().join("goldens").join(name);
    }
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

/// `$KILN_HOME`, else `$HOME/.cache/kiln` (kiln's `config::home`; empty
/// values count as unset).
fn kiln_home() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    var("KILN_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache/kiln")))
}

/// Whether CI asked for every model to be there (`KILN_REQUIRE_MODELS=1`).
fn models_required() -> bool {
    std::env::var("KILN_REQUIRE_MODELS").is_ok_and(|v| v == "1")
}

/// The first existing candidate, or `None` with a message: a skip, or a
/// failure under `KILN_REQUIRE_MODELS=1`.
fn find_model(file: &str, name: &str, candidates: &[Option<PathBuf>]) -> Option<PathBuf> {
    let found = candidates.iter().flatten().find(|p| p.is_file()).cloned();
    if found.is_none() {
        if models_required() {
            panic!("{file} is not in the cache; run `kiln pull {name}`");
        }
        println!("skipped: {file} not found (run `kiln pull {name}`)");
    }
    found
}

/// A model pulled into kiln's cache: `$KILN_HOME/models/NAME/FILE`.
fn cached(name: &str, file: &str) -> Option<PathBuf> {
    kiln_home().map(|h| h.join("models").join(name).join(file))
}

/// SmolLM2-135M-Instruct (`kiln pull smollm2`): a byte-level BPE vocabulary.
pub fn smollm2_path() -> Option<PathBuf> {
    const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
    find_model(FILE, "smollm2", &[cached("smollm2", FILE)])
}

/// SmolLM2's tokenizer, or `None` (skip).
pub fn smollm2() -> Option<Tokenizer> {
    let file = GgufFile::open(smollm2_path()?).expect("SmolLM2 GGUF opens");
    Some(Tokenizer::from_gguf(&file).expect("SmolLM2 tokenizer"))
}

/// A GGUF with EmbeddingGemma's vocabulary. Until the converted
/// EmbeddingGemma GGUF is available this is Gemma-3-270M's (same tokens and
/// scores; its token types differ only for `<start_of_image>` and
/// `<end_of_image>`, user-defined there and control in EmbeddingGemma; no
/// golden input contains them). That GGUF says `add_eos_token = false`, so
/// callers turn EOS on as EmbeddingGemma's GGUF does.
pub fn gemma_path() -> Option<PathBuf> {
    const FILE: &str = "gemma-3-270m-q4_k_m.gguf";
    find_model(
        FILE,
        "gemma3-270m",
        &[
            cached("gemma3-270m", FILE),
            kiln_home().map(|h| h.join("models").join(FILE)),
            Some(PathBuf::from("/work/models").join(FILE)),
        ],
    )
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
