//! The `kiln` subcommands, one module each.

pub mod bench;
pub mod convert;
pub mod embed;
pub mod generate;
pub mod inspect;
pub mod kernels;
pub mod list;
pub mod pull;
#[cfg(feature = "server")]
pub mod serve;
#[cfg(feature = "server")]
pub mod serve_config;
pub mod similarity;
pub mod tokenize;

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kiln::hub::{Cache, PullOptions};

/// The model every command uses when `--model` is not given.
pub use kiln::hub::DEFAULT_MODEL;

/// Resolves a `--model` argument: a path to a GGUF file, or a short name of
/// the model cache (pulled on first use).
pub fn resolve_model(model: &str) -> anyhow::Result<PathBuf> {
    let cache = Cache::from_env()?;
    cache
        .resolve(model, &PullOptions::default())
        .with_context(|| format!("cannot resolve model `{model}`"))
}

/// A byte-progress bar on stderr (hidden when stderr is not a terminal).
pub fn bytes_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("static template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}
