//! `kiln serve --config FILE`: the models of a multi-model server and each
//! one's options, in TOML (or JSON when the file name ends in `.json`).
//!
//! ```toml
//! threads = 2                  # the shared pool (default: --threads, or all cores)
//! grpc_port = 50051            # TEI's gRPC API too (default: --grpc-port, or none)
//!
//! [[models]]
//! model = "embeddinggemma"     # a cached model's name or a GGUF path
//! aliases = ["text-embedding-3-small"]
//! max_batch_tokens = 8192
//! auto_truncate = true
//!
//! [[models]]
//! model = "gemma3-270m"
//! id = "gemma"                 # the name in responses (default: as --model-id)
//! ctx = 2048
//! threads = 1                  # a pool of its own: cores split by hand
//! ```
//!
//! Unset options take the command line's values; unknown keys are errors.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    /// Threads of the pool the models share.
    pub threads: Option<usize>,
    /// The port of TEI's gRPC API (`--grpc-port` wins).
    pub grpc_port: Option<u16>,
    /// The models, in order: the first of each kind is its routes' default.
    #[serde(default)]
    pub models: Vec<ModelEntry>,
}

/// One model and its options.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// A GGUF path or a cached model's short name.
    pub model: String,
    /// The name in responses and `/v1/models`.
    pub id: Option<String>,
    /// Other names requests may use.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A thread pool of this many threads for this model alone, instead of
    /// the shared pool.
    pub threads: Option<usize>,
    /// Embedders: tokens per computed batch and per request.
    pub max_batch_tokens: Option<usize>,
    /// Embedders: requests that may wait in the queue.
    pub max_concurrent_requests: Option<usize>,
    /// Embedders: tokens per input.
    pub max_input_tokens: Option<usize>,
    /// Embedders: cut over-long inputs unless a request says otherwise.
    pub auto_truncate: Option<bool>,
    /// Decoders: context per generation.
    pub ctx: Option<usize>,
    /// Decoders: generations decoded together.
    pub max_concurrent_generations: Option<usize>,
    /// Decoders: generations that may wait for a slot.
    pub max_waiting_generations: Option<usize>,
}

impl ModelEntry {
    /// An entry for `-m MODEL` with every option from the command line.
    pub fn named(model: &str) -> ModelEntry {
        ModelEntry {
            model: model.to_owned(),
            ..ModelEntry::default()
        }
    }

    /// `id`, else the model argument without its directories (responses
    /// never show where a model lives on disk).
    pub fn id(&self) -> String {
        self.id.clone().unwrap_or_else(|| default_id(&self.model))
    }
}

/// A model argument's default id: its file name when it is a path.
pub fn default_id(model: &str) -> String {
    Path::new(model)
        .file_name()
        .map_or_else(|| model.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Reads a config file (TOML, or JSON for `*.json`).
pub fn read(path: &Path) -> anyhow::Result<ServeFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: ServeFile = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?
    };
    if file.models.is_empty() {
        anyhow::bail!(
            "{} lists no models (add a [[models]] table with `model = \"NAME\"`)",
            path.display()
        );
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_read_the_same_entries() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("m.toml");
        std::fs::write(
            &toml_path,
            "threads = 2\n[[models]]\nmodel = \"minilm\"\naliases = [\"a\"]\nauto_truncate = true\n\
             [[models]]\nmodel = \"/x/gemma.gguf\"\nctx = 512\nthreads = 1\n",
        )
        .unwrap();
        let json_path = dir.path().join("m.json");
        std::fs::write(
            &json_path,
            r#"{"threads": 2, "models": [{"model": "minilm", "aliases": ["a"], "auto_truncate": true},
                {"model": "/x/gemma.gguf", "ctx": 512, "threads": 1}]}"#,
        )
        .unwrap();
        for p in [toml_path, json_path] {
            let f = read(&p).unwrap();
            assert_eq!(f.threads, Some(2));
            assert_eq!(f.models.len(), 2);
            assert_eq!(f.models[0].aliases, ["a"]);
            assert_eq!(f.models[0].auto_truncate, Some(true));
            assert_eq!(f.models[1].id(), "gemma.gguf");
            assert_eq!(f.models[1].ctx, Some(512));
            assert_eq!(f.models[1].threads, Some(1));
        }
    }

    #[test]
    fn unknown_keys_and_empty_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(&p, "[[models]]\nmodel = \"minilm\"\nthreds = 2\n").unwrap();
        let e = format!("{:#}", read(&p).unwrap_err());
        assert!(e.contains("threds"), "{e}");
        std::fs::write(&p, "threads = 2\n").unwrap();
        let e = format!("{:#}", read(&p).unwrap_err());
        assert!(e.contains("no models"), "{e}");
    }
}
