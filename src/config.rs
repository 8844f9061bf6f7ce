//! Where kiln keeps its files: `$KILN_HOME` (default `~/.cache/kiln`) and
//! the directories under it.
//!
//! ```text
//! models/<short name>/<file>.gguf   finished models (+ licence files)
//! tmp/<short name>/                 staging of a pull in progress
//! tmp/<short name>.lock             pid of the pull in progress
//! packed/                           repacked weights (the pack cache)
//! ```
//!
//! The model cache ([`hub`](crate::hub)) fills `models/` and `tmp/`; the
//! decoders and embedders save and map repacked weights under `packed/`
//! unless `$KILN_PACK_CACHE` says otherwise.

use std::path::{Path, PathBuf};

/// The environment variable that overrides the cache directory.
pub const KILN_HOME: &str = "KILN_HOME";

/// Environment variable: `off`, `0`, `false` or `no` turns the pack cache off; any
/// other value is the directory to use instead of `$KILN_HOME/packed`.
pub const KILN_PACK_CACHE: &str = "KILN_PACK_CACHE";

/// kiln's directory in this environment: `$KILN_HOME`, else
/// `$HOME/.cache/kiln`; `None` when neither is set (an empty value counts
/// as unset).
pub fn home() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(KILN_HOME).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(Path::new(&home).join(".cache").join("kiln"))
}

/// Where the models pulled into `home` live, one directory per short name.
pub fn models_dir(home: &Path) -> PathBuf {
    home.join("models")
}

/// Where pulls into `home` stage their downloads (and hold their locks).
pub fn staging_dir(home: &Path) -> PathBuf {
    home.join("tmp")
}

/// The pack cache under `home`.
pub fn pack_dir(home: &Path) -> PathBuf {
    home.join("packed")
}

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
    home().map(|h| pack_dir(&h))
}
