//! Helpers shared by the end-to-end tests: where models and goldens are.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository's test fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One line of a golden JSONL file.
#[derive(serde::Deserialize)]
pub struct Golden {
    pub text: String,
    pub token_ids: Vec<u32>,
    #[serde(default)]
    pub n_tokens_used: Option<usize>,
    #[serde(default)]
    pub embedding: Vec<f32>,
}

/// Reads `tests/fixtures/goldens/NAME`.
pub fn goldens(name: &str) -> Vec<Golden> {
    let path = fixtures().join("goldens").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The model called `name` in the cache (`kiln pull NAME`), or `None` with a
/// message when it is absent. With `KILN_REQUIRE_MODELS=1` (set by CI) an
/// absent model fails the test instead of skipping it.
pub fn cached_model(name: &str) -> Option<PathBuf> {
    match kiln::hub::Cache::from_env().ok().and_then(|c| c.cached(name)) {
        Some(p) => Some(p),
        None => {
            if std::env::var("KILN_REQUIRE_MODELS").is_ok_and(|v| v == "1") {
                panic!("model `{name}` is not in the cache; run `kiln pull {name}`");
            }
            eprintln!("SKIPPED: model `{name}` is not in the cache (run `kiln pull {name}`)");
            None
        }
    }
}

/// Cosine similarity in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    f64::from(kiln::cosine(a, b))
}
