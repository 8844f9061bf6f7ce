//! A model's repacked weights saved beside it, so later opens map them
//! instead of repacking.
//!
//! Repacking Q8_0/Q4_K/Q6_K weights into 8-row groups copies every weight
//! into fresh anonymous memory, and in our VMs getting a fresh 4 KiB page
//! costs ~1.6 µs (EmbeddingGemma: 110 MB, ~45 ms of CPU, most of an open).
//! A file holding the repacked bytes is mapped like the GGUF itself: its
//! pages come from the page cache, shared between processes. The GGUF stays
//! the standard file every other tool reads.
//!
//! Nothing in the cache is trusted on its name or header alone. The header
//! names the GGUF it came from by length, modification time, inode and
//! status-change time (ctime). Length, mtime and inode alone, as Python's
//! `.pyc` files use, survive a same-size edit whose mtime is put back
//! (`cp --preserve`, `rsync -t`, `touch -r`); the ctime does not: every
//! write to the file sets it to now, and no call sets it back. The cache
//! file itself can still be damaged or planted, so every weight's index
//! entry also carries a checksum of its packed bytes and one of the source
//! tensor it was made from (type, shape, length and sampled bytes, read
//! from the GGUF at hand), and the header carries one of itself and the
//! index. All of them are checked at open, weights in parallel; anything
//! that does not match (a rewritten model, another layout version, a
//! damaged, truncated or foreign file) is ignored and rewritten. Writing
//! happens once, at the first open. The checksums catch accidents and
//! stale files, not a forger who can also write the model: whoever can
//! write `$KILN_HOME` can replace what kiln runs anyway.
//!
//! Layout, all little-endian: a 128-byte header (`MAGIC`, layout version,
//! the GGUF's identity, index offset and length, and last the checksum of the
//! header's other bytes and the index), the weights (each at a multiple of
//! `ALIGN`, one after another, the gaps zero), then the index: per weight,
//! its name's length (u32) and bytes, its kind (u32), offset and length
//! (u64), and the checksums of its packed bytes and of its source (u64,
//! CRC-32 values).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::gguf::{Backing, FileIdentity, GgufFile, Plain, TensorInfo, as_bytes, cast_slice, take};

const MAGIC: &[u8; 8] = b"KILNPAK1";
/// Bumped whenever the file layout or a packed layout (`BlockQ8_0x8`,
/// `BlockQ4Kx8`, `BlockQ6Kx8`, the Q5_0 re-encoding) changes.
const LAYOUT_VERSION: u64 = 3;
const HEADER: usize = 128;
/// Where the index's offset and length (u64 each) live in the header.
const INDEX_FIELDS_AT: usize = 56;
/// Where the header's checksum (of the bytes before it and the index) lives.
const HEADER_HASH_AT: usize = HEADER - 8;
const ALIGN: u64 = 64;
/// Longest tensor name the index accepts (GGUF names are at most 64 bytes).
const MAX_NAME: usize = 256;

/// What a packed weight holds (checked against what the loader wants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum PackKind {
    /// Q8_0 (or Q5_0 re-encoded as Q8_0) in `BlockQ8_0x8` groups.
    Q8_0x8 = 1,
    /// `BlockQ4Kx8` groups.
    Q4Kx8 = 2,
    /// `BlockQ6Kx8` groups.
    Q6Kx8 = 3,
    /// `BlockQ4_1x8` groups.
    Q4_1x8 = 4,
}

impl PackKind {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Q8_0x8,
            2 => Self::Q4Kx8,
            3 => Self::Q6Kx8,
            4 => Self::Q4_1x8,
            _ => return None,
        })
    }
}

/// Where a model's packed weights live: one file per GGUF path in `dir`.
pub(crate) fn cache_path(dir: &Path, gguf: &Path) -> PathBuf {
    let full = std::fs::canonicalize(gguf).unwrap_or_else(|_| gguf.to_path_buf());
    let stem = gguf.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    // FNV-1a over the path: names stay apart for same-named files.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in full.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    dir.join(format!("{stem}-{h:016x}.kpack"))
}

/// The checksum of weight bytes: CRC-32 (crc32fast, with the CPU's
/// carry-less multiply), as fast as reading the bytes (~11 GB/s on one
/// core here, where xxh3 without AVX2 ran at ~3.7 GB/s). It catches every
/// change of up to 32 consecutive bits, so every single-byte flip, and
/// any other change but with probability 2^-32 per weight.
fn checksum(bytes: &[u8]) -> u64 {
    u64::from(crc32fast::hash(bytes))
}

/// Bytes in one sampled window of a source tensor.
const SAMPLE: usize = 256;
/// Windows sampled per source tensor: the first, the last and the rest
/// evenly spaced between them. 4 KiB read per tensor, about one page fault
/// per window, where hashing all of a tensor's bytes read the whole model
/// (EmbeddingGemma: ~11 ms of CRC and ~7 ms of faulting in pages the
/// cached path otherwise never touches).
const SAMPLES: usize = 16;

/// The ranges of a `len`-byte tensor its source checksum covers: all of it
/// when that is no more than the windows would read, else `SAMPLES`
/// windows spread over it, the first at 0 and the last ending at `len`
/// (at least `SAMPLE` bytes apart, as `len - SAMPLE` > 15 * `SAMPLE`).
fn sample_ranges(len: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let whole = len <= SAMPLE * SAMPLES;
    (0..if whole { 1 } else { SAMPLES }).map(move |k| {
        if whole {
            0..len
        } else {
            let start = k * (len - SAMPLE) / (SAMPLES - 1);
            start..start + SAMPLE
        }
    })
}

/// The checksum of a source tensor: its type, shape and length, and its
/// bytes at `sample_ranges` (the same bytes under another shape repack
/// differently). Sampled, not whole: the ctime in the file's identity
/// already tells a rewritten model; this catches a cache made from other
/// weights (another model, a fine-tune of the same shapes: their weights
/// differ everywhere) without reading every weight of the model.
fn source_hash(info: &TensorInfo, bytes: &[u8]) -> u64 {
    let mut h = crc32fast::Hasher::new();
    h.update(&info.ty.id().to_le_bytes());
    h.update(&(info.dims.len() as u64).to_le_bytes());
    for d in &info.dims {
        h.update(&d.to_le_bytes());
    }
    h.update(&(bytes.len() as u64).to_le_bytes());
    for r in sample_ranges(bytes.len()) {
        h.update(&bytes[r]);
    }
    u64::from(h.finalize())
}

/// Hash of tensor `name` of `file`; `None` if the file has no such tensor.
fn source_hash_of(file: &GgufFile, name: &str) -> Option<u64> {
    let info = file.tensor(name)?;
    Some(source_hash(info, file.tensor_bytes(info)))
}

/// The checksum guarding the header (all but its last 8 bytes) and the
/// index.
fn header_hash(head: &[u8], index: &[u8]) -> u64 {
    let mut h = crc32fast::Hasher::new();
    h.update(&head[..HEADER_HASH_AT]);
    h.update(index);
    u64::from(h.finalize())
}

fn header(id: &FileIdentity, index_offset: u64, index: &[u8]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    let fields = [
        LAYOUT_VERSION,
        id.len,
        id.mtime_ns,
        id.inode,
        id.device,
        id.ctime_ns,
        index_offset,
        index.len() as u64,
    ];
    for (i, f) in fields.iter().enumerate() {
        h[8 + 8 * i..16 + 8 * i].copy_from_slice(&f.to_le_bytes());
    }
    debug_assert_eq!(8 + 8 * (fields.len() - 2), INDEX_FIELDS_AT);
    let hash = header_hash(&h, index);
    h[HEADER_HASH_AT..].copy_from_slice(&hash.to_le_bytes());
    h
}

/// One weight in the index.
struct Entry {
    name: String,
    kind: PackKind,
    offset: usize,
    len: usize,
    payload_hash: u64,
    source_hash: u64,
}

/// The packed weights of one GGUF, mapped.
pub(crate) struct PackCache {
    map: Backing,
    entries: HashMap<String, (PackKind, usize, usize)>,
}

impl std::fmt::Debug for PackCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackCache")
            .field("weights", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn u32_from(b: &mut &[u8]) -> Option<u32> {
    take(b).map(u32::from_le_bytes)
}

fn u64_from(b: &mut &[u8]) -> Option<u64> {
    take(b).map(u64::from_le_bytes)
}

fn usize_from(b: &mut &[u8]) -> Option<usize> {
    usize::try_from(u64_from(b)?).ok()
}

/// Opens `path` only if it is a regular file, without blocking on a FIFO
/// (or a device) planted under the cache's name.
fn open_regular(path: &Path) -> Option<File> {
    let mut options = File::options();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    let file = options.open(path).ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

impl PackCache {
    /// The cache at `path` if it is whole, made by this layout version from
    /// the file `id` names, and every weight in it was made from the tensor
    /// of that name in `file` as it is now; `None` otherwise (never an
    /// error: a bad cache only means repacking).
    pub(crate) fn open(path: &Path, file: &GgufFile, id: &FileIdentity) -> Option<Self> {
        let f = open_regular(path)?;
        // Populated while the tokenizer is built beside the model: the
        // first forward pass then finds every page mapped (and checking
        // them below finds them resident).
        let map = Backing::map_populated(&f).ok()?;
        let entries = Self::parse(&map, id)?;
        if !Self::verify(&map, &entries, file) {
            return None;
        }
        let entries = entries
            .into_iter()
            .map(|e| (e.name, (e.kind, e.offset, e.len)))
            .collect();
        Some(PackCache { map, entries })
    }

    /// Reads the header and index, checking the header's checksum and that the
    /// weights tile the space between header and index in order.
    fn parse(b: &[u8], id: &FileIdentity) -> Option<Vec<Entry>> {
        let mut fields = b.get(INDEX_FIELDS_AT..INDEX_FIELDS_AT + 16)?;
        let (start, index_len) = (usize_from(&mut fields)?, usize_from(&mut fields)?);
        let index = b.get(start..start.checked_add(index_len)?)?;
        if b.get(..HEADER)? != header(id, start as u64, index) {
            return None;
        }
        let mut index = index;
        let mut entries = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut end = HEADER;
        while !index.is_empty() {
            let name_len = u32_from(&mut index)? as usize;
            if name_len > MAX_NAME {
                return None;
            }
            let (name, rest) = index.split_at_checked(name_len)?;
            let name = std::str::from_utf8(name).ok()?;
            index = rest;
            let kind = PackKind::from_u32(u32_from(&mut index)?)?;
            let (offset, len) = (usize_from(&mut index)?, usize_from(&mut index)?);
            let (payload_hash, source_hash) = (u64_from(&mut index)?, u64_from(&mut index)?);
            // Each weight starts at the first aligned offset after the one
            // before, the gap zero: no overlap, no unchecked byte.
            if offset != end.checked_next_multiple_of(ALIGN as usize)?
                || b.get(end..offset)?.iter().any(|&x| x != 0)
                || !names.insert(name)
            {
                return None;
            }
            end = offset.checked_add(len)?;
            entries.push(Entry {
                name: name.to_owned(),
                kind,
                offset,
                len,
                payload_hash,
                source_hash,
            });
        }
        (end == start).then_some(entries)
    }

    /// Whether every weight's packed bytes and source tensor check as the
    /// index says. Weights are checked in parallel; each source tensor's
    /// sampled pages leave the resident set once read (the weight is served
    /// from the cache, or repacked from them if the check fails).
    fn verify(map: &[u8], entries: &[Entry], file: &GgufFile) -> bool {
        entries.par_iter().all(|e| {
            let Some(payload) = map.get(e.offset..e.offset + e.len) else {
                return false;
            };
            if checksum(payload) != e.payload_hash {
                return false;
            }
            let source = source_hash_of(file, &e.name);
            file.release_tensor(&e.name);
            source == Some(e.source_hash)
        })
    }

    /// Weight `name` as `len` values of `T`, if the cache holds exactly
    /// that under `kind`.
    pub(crate) fn get<T: Plain>(&self, name: &str, kind: PackKind, len: usize) -> Option<&[T]> {
        let &(k, offset, bytes) = self.entries.get(name)?;
        if k != kind || bytes != len.checked_mul(std::mem::size_of::<T>())? {
            return None;
        }
        cast_slice(self.map.get(offset..offset + bytes)?)
    }
}

/// Writes packed weights as they are made, then the index; the file gets
/// its name only when whole.
pub(crate) struct PackWriter {
    /// The GGUF the weights are made from (their source checksums).
    file: Arc<GgufFile>,
    inner: Mutex<Option<Writing>>,
}

struct Writing {
    tmp: PathBuf,
    path: PathBuf,
    id: FileIdentity,
    out: BufWriter<File>,
    pos: u64,
    index: Vec<u8>,
}

impl PackWriter {
    /// A writer for `path`, or `None` when the file cannot be created
    /// (read-only directory, no space): the model then simply repacks at
    /// every open.
    pub(crate) fn create(path: PathBuf, file: Arc<GgufFile>, id: FileIdentity) -> Option<Self> {
        let dir = path.parent()?;
        std::fs::create_dir_all(dir).ok()?;
        // Unique per process and open: two opens writing at once (threads
        // or processes) each write their own file; the last rename wins,
        // and either file is whole.
        static OPENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".{}.{}-{}.tmp",
            path.file_name()?.to_string_lossy(),
            std::process::id(),
            OPENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let out_file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ok()?;
        let mut out = BufWriter::with_capacity(1 << 20, out_file);
        if out.write_all(&[0u8; HEADER]).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return None;
        }
        Some(PackWriter {
            file,
            inner: Mutex::new(Some(Writing {
                tmp,
                path,
                id,
                out,
                pos: HEADER as u64,
                index: Vec::new(),
            })),
        })
    }

    /// Appends weight `name`, made from the GGUF's tensor of that name; a
    /// failed write (or a weight with no such tensor) abandons the cache
    /// (the model itself is unaffected).
    pub(crate) fn add<T: Plain>(&self, name: &str, kind: PackKind, values: &[T]) {
        let bytes = as_bytes(values);
        // Checksummed before taking the lock: weights are made in parallel.
        let hashes = source_hash_of(&self.file, name).map(|s| (checksum(bytes), s));
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = guard.as_mut() else { return };
        let ok = match hashes {
            Some(hashes) if name.len() <= MAX_NAME => w.append(name, kind, bytes, hashes).is_ok(),
            _ => false,
        };
        if !ok && let Some(w) = guard.take() {
            let _ = std::fs::remove_file(&w.tmp);
        }
    }

    /// Writes the index and header and gives the file its name.
    pub(crate) fn finish(mut self) {
        let Some(w) = self
            .inner
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let tmp = w.tmp.clone();
        if w.finish().is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

impl Drop for PackWriter {
    /// An open that failed leaves no temporary file behind.
    fn drop(&mut self) {
        if let Some(w) = self
            .inner
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = std::fs::remove_file(&w.tmp);
        }
    }
}

impl Writing {
    fn append(
        &mut self,
        name: &str,
        kind: PackKind,
        bytes: &[u8],
        (payload_hash, source_hash): (u64, u64),
    ) -> std::io::Result<()> {
        let pad = self.pos.next_multiple_of(ALIGN) - self.pos;
        self.out.write_all(&[0u8; ALIGN as usize][..pad as usize])?;
        self.pos += pad;
        self.index
            .extend_from_slice(&(name.len() as u32).to_le_bytes());
        self.index.extend_from_slice(name.as_bytes());
        self.index.extend_from_slice(&(kind as u32).to_le_bytes());
        self.index.extend_from_slice(&self.pos.to_le_bytes());
        self.index
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.index.extend_from_slice(&payload_hash.to_le_bytes());
        self.index.extend_from_slice(&source_hash.to_le_bytes());
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        let index_offset = self.pos;
        self.out.write_all(&self.index)?;
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header(&self.id, index_offset, &self.index))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
    }
}

/// What a model open does with the cache: map it, or write it.
pub(crate) enum Packs {
    /// No cache (not asked for, or the GGUF is not a file on disk).
    Off,
    /// A valid cache: weights come from it.
    Mapped(PackCache),
    /// No valid cache yet: weights repacked now are written to it.
    Writing(PackWriter),
}

impl Packs {
    /// The cache for `file` in `dir` (`None`: no cache).
    pub(crate) fn for_file(file: &Arc<GgufFile>, dir: Option<&Path>) -> Self {
        let (Some(dir), Some(id)) = (dir, file.identity().copied()) else {
            return Packs::Off;
        };
        let path = cache_path(dir, file.path());
        if let Some(cache) = PackCache::open(&path, file, &id) {
            return Packs::Mapped(cache);
        }
        match PackWriter::create(path, Arc::clone(file), id) {
            Some(w) => Packs::Writing(w),
            None => Packs::Off,
        }
    }

    /// Ends the open: a finished write gets its name; a mapped cache is
    /// returned for the model to keep (its weights point into it).
    pub(crate) fn finish(self) -> Option<PackCache> {
        match self {
            Packs::Off => None,
            Packs::Mapped(c) => Some(c),
            Packs::Writing(w) => {
                w.finish();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgmlType, GgufWriter};
    use crate::quant::BlockQ8_0x8;

    const NAMES: [&str; 2] = ["blk.0.attn_q.weight", "blk.0.ffn_up.weight"];

    /// A GGUF with two Q8_0 tensors (32 x 8) whose bytes start at `seed`.
    fn gguf(dir: &Path, file: &str, seed: u8) -> Arc<GgufFile> {
        gguf_rows(dir, file, 8, |i| (i as u8).wrapping_add(seed))
    }

    /// A GGUF with two Q8_0 tensors of 32 x `rows`, byte `i` of each
    /// `byte(i)`.
    fn gguf_rows(dir: &Path, file: &str, rows: u64, byte: impl Fn(u64) -> u8) -> Arc<GgufFile> {
        let mut w = GgufWriter::new();
        let n: Vec<u64> = NAMES
            .iter()
            .map(|n| w.add_tensor(*n, &[32, rows], GgmlType::Q8_0).unwrap())
            .collect();
        let path = dir.join(file);
        let mut data = w.begin(File::create(&path).unwrap()).unwrap();
        for (name, len) in NAMES.iter().zip(n) {
            let bytes: Vec<u8> = (0..len).map(&byte).collect();
            data.write_tensor(name, &bytes).unwrap();
        }
        data.finish().unwrap();
        Arc::new(GgufFile::open(&path).unwrap())
    }

    fn id(file: &GgufFile) -> FileIdentity {
        file.identity().copied().unwrap()
    }

    fn blocks(n: usize, seed: u8) -> Vec<BlockQ8_0x8> {
        let mut v = vec![BlockQ8_0x8::default(); n];
        for (i, b) in v.iter_mut().enumerate() {
            b.qs[0][0] = (i as u8).wrapping_add(seed) as i8;
            b.d[0] = half::f16::from_f32(i as f32);
        }
        v
    }

    fn write(path: &Path, file: &Arc<GgufFile>) -> (Vec<BlockQ8_0x8>, Vec<BlockQ8_0x8>) {
        let (a, b) = (blocks(7, 1), blocks(3, 2));
        let w = PackWriter::create(path.to_path_buf(), Arc::clone(file), id(file)).unwrap();
        w.add(NAMES[0], PackKind::Q8_0x8, &a);
        w.add(NAMES[1], PackKind::Q8_0x8, &b);
        w.finish();
        (a, b)
    }

    fn same(x: &[BlockQ8_0x8], y: &[BlockQ8_0x8]) -> bool {
        as_bytes(x) == as_bytes(y)
    }

    #[test]
    fn written_weights_read_back_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = gguf(dir.path(), "m.gguf", 0);
        let packs = dir.path().join("packed");
        std::fs::create_dir(&packs).unwrap();
        let path = packs.join("m.kpack");
        let (a, b) = write(&path, &file);
        let c = PackCache::open(&path, &file, &id(&file)).unwrap();
        let ga = c.get::<BlockQ8_0x8>(NAMES[0], PackKind::Q8_0x8, 7).unwrap();
        let gb = c.get::<BlockQ8_0x8>(NAMES[1], PackKind::Q8_0x8, 3).unwrap();
        assert!(same(ga, &a) && same(gb, &b));
        // Wrong length, kind or name: not served.
        assert!(
            c.get::<BlockQ8_0x8>(NAMES[0], PackKind::Q8_0x8, 6)
                .is_none()
        );
        assert!(c.get::<BlockQ8_0x8>(NAMES[0], PackKind::Q4Kx8, 7).is_none());
        assert!(
            c.get::<BlockQ8_0x8>("blk.1.attn_q.weight", PackKind::Q8_0x8, 7)
                .is_none()
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&packs).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_weight_without_a_source_tensor_abandons_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let file = gguf(dir.path(), "m.gguf", 0);
        let path = dir.path().join("m.kpack");
        let w = PackWriter::create(path.clone(), Arc::clone(&file), id(&file)).unwrap();
        w.add("blk.9.attn_q.weight", PackKind::Q8_0x8, &blocks(2, 0));
        w.finish();
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn another_source_or_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = gguf(dir.path(), "m.gguf", 0);
        let path = dir.path().join("m.kpack");
        write(&path, &file);
        assert!(PackCache::open(&path, &file, &id(&file)).is_some());
        let mut other = id(&file);
        other.mtime_ns += 1;
        assert!(PackCache::open(&path, &file, &other).is_none());
        // Only the ctime differs (a same-size edit whose mtime was put
        // back): refused on the identity alone.
        let mut other = id(&file);
        other.ctime_ns += 1;
        assert!(PackCache::open(&path, &file, &other).is_none());
        // A cache whose header names this very file (as a same-size edit
        // that keeps the modification time leaves it, or as a planted file
        // would), made from other tensor bytes: refused.
        let edited = gguf(dir.path(), "edited.gguf", 1);
        assert!(PackCache::open(&path, &edited, &id(&file)).is_none());
        let good = std::fs::read(&path).unwrap();
        // Truncated anywhere: refused, never a panic.
        for cut in [0, 8, 63, 64, 127, 128, 200, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(
                PackCache::open(&path, &file, &id(&file)).is_none(),
                "cut at {cut}"
            );
        }
        // Any single byte flipped, anywhere (header, weights, the zero gaps
        // between them, index): refused.
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x80;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                PackCache::open(&path, &file, &id(&file)).is_none(),
                "flip at {at} of {}",
                good.len()
            );
        }
        // Something else than a regular file under the cache's name (a
        // FIFO would block a plain open forever): refused at once.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(PackCache::open(&path, &file, &id(&file)).is_none());
        std::fs::remove_dir(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(PackCache::open(&path, &file, &id(&file)).is_none());
    }

    #[test]
    fn sampled_windows_cover_small_tensors_whole_and_large_ones_spread() {
        for len in [0, 1, 4096] {
            let r: Vec<_> = sample_ranges(len).collect();
            assert!(r.len() == 1 && r[0] == (0..len), "{len}");
        }
        for len in [4097, 8704, 1 << 20, (1 << 26) + 13] {
            let r: Vec<_> = sample_ranges(len).collect();
            assert_eq!(r.len(), SAMPLES);
            assert_eq!((r[0].start, r[SAMPLES - 1].end), (0, len));
            assert!(r.iter().all(|w| w.len() == SAMPLE));
            assert!(r.windows(2).all(|p| p[0].end <= p[1].start), "{len}");
        }
    }

    /// The source check on its own: a cache whose header names the GGUF at
    /// hand (identity fields matching, as a planted file could make them),
    /// but made from tensors of the same names and shapes with other
    /// bytes.
    #[test]
    fn sampled_source_check_refuses_other_weights_of_the_same_shapes() {
        let dir = tempfile::tempdir().unwrap();
        // 32 x 256 Q8_0: 8704 bytes per tensor, so sampled, not whole.
        let base = |i: u64| (i.wrapping_mul(31) >> 3) as u8;
        let file = gguf_rows(dir.path(), "m.gguf", 256, base);
        assert!(file.tensor_bytes(file.tensor(NAMES[0]).unwrap()).len() > SAMPLE * SAMPLES);
        let path = dir.path().join("m.kpack");
        write(&path, &file);
        assert!(PackCache::open(&path, &file, &id(&file)).is_some());
        // A fine-tune: every weight moved a little.
        let tuned = gguf_rows(dir.path(), "tuned.gguf", 256, |i| base(i) ^ 1);
        assert!(PackCache::open(&path, &tuned, &id(&file)).is_none());
        // One byte changed in the first, a middle or the last window.
        let len = file.tensor_bytes(file.tensor(NAMES[1]).unwrap()).len() as u64;
        let windows: Vec<_> = sample_ranges(len as usize).collect();
        for at in [0, windows[7].start as u64 + 100, len - 1] {
            let edited = gguf_rows(dir.path(), "edited.gguf", 256, |i| {
                base(i).wrapping_add(u8::from(i == at))
            });
            assert!(
                PackCache::open(&path, &edited, &id(&file)).is_none(),
                "edit at {at}"
            );
        }
        // A byte between windows is not read: what tells such an edit of
        // the model is the ctime in its identity (tested above).
        let between = windows[7].end as u64 + 1;
        let edited = gguf_rows(dir.path(), "edited.gguf", 256, |i| {
            base(i).wrapping_add(u8::from(i == between))
        });
        assert!(PackCache::open(&path, &edited, &id(&file)).is_some());
    }

    #[test]
    fn cache_names_differ_by_path() {
        let d = Path::new("/tmp");
        let a = cache_path(d, Path::new("/x/model.gguf"));
        let b = cache_path(d, Path::new("/y/model.gguf"));
        assert_ne!(a, b);
        assert!(
            a.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("model-")
        );
    }
}
