//! The `kiln` subcommands, one module each.

pub mod embed;
pub mod similarity;
pub mod tokenize;

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The model every command uses when `--model` is not given.
pub const DEFAULT_MODEL: &str = "embeddinggemma";

/// Resolves a `--model` argument: a path to a GGUF file, or a short name of
/// the model cache (pulled on first use).
pub fn resolve_model(model: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(model);
    if path.is_file() {
        return Ok(path);
    }
    if path.exists() {
        bail!("`{model}` is not a GGUF file");
    }
    kiln::hub::resolve(model).with_context(|| format!("cannot resolve model `{model}`"))
}
