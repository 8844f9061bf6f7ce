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
//! The cache names the GGUF it came from by length, modification time and
//! inode (as Python's `.pyc` files do); anything that does not match (a
//! rewritten model, another kiln layout version, a truncated or hostile
//! file) is ignored and rewritten. Writing happens once, at the first open.
//!
//! Layout, all little-endian: a 64-byte header (`MAGIC`, layout version,
//! the GGUF's identity, index offset and length), the weights (each at a
//! multiple of `ALIGN`), then the index: per weight, its name's length
//! (u32) and bytes, its kind (u32), offset and length (u64).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::gguf::{Backing, FileIdentity, GgufFile, Plain, as_bytes, cast_slice, take};

const MAGIC: &[u8; 8] = b"KILNPAK1";
/// Bumped whenever a packed layout (`BlockQ8_0x8`, `BlockQ4Kx8`,
/// `BlockQ6Kx8`, the Q5_0 re-encoding) changes.
const LAYOUT_VERSION: u64 = 1;
const HEADER: usize = 64;
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
}

impl PackKind {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Q8_0x8,
            2 => Self::Q4Kx8,
            3 => Self::Q6Kx8,
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

fn header(id: &FileIdentity, index_offset: u64, index_len: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    let fields = [
        LAYOUT_VERSION,
        id.len,
        id.mtime_ns,
        id.inode,
        id.device,
        index_offset,
        index_len,
    ];
    for (i, f) in fields.iter().enumerate() {
        h[8 + 8 * i..16 + 8 * i].copy_from_slice(&f.to_le_bytes());
    }
    h
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

fn usize_from(b: &mut &[u8]) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(take(b)?)).ok()
}

impl PackCache {
    /// The cache at `path` if it is whole and made from the file `id`
    /// names by this layout version; `None` otherwise (never an error: a
    /// bad cache only means repacking).
    pub(crate) fn open(path: &Path, id: &FileIdentity) -> Option<Self> {
        let file = File::open(path).ok()?;
        // Populated while the tokenizer is built beside the model: the
        // first forward pass then finds every page mapped.
        let map = Backing::map_populated(&file).ok()?;
        let entries = Self::parse(&map, id)?;
        Some(PackCache { map, entries })
    }

    fn parse(b: &[u8], id: &FileIdentity) -> Option<HashMap<String, (PackKind, usize, usize)>> {
        let mut fields = b.get(48..HEADER)?;
        let (start, index_len) = (usize_from(&mut fields)?, usize_from(&mut fields)?);
        if b.get(..HEADER)? != header(id, start as u64, index_len as u64) {
            return None;
        }
        let mut index = b.get(start..start.checked_add(index_len)?)?;
        let mut entries = HashMap::new();
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
            // Weights lie between the header and the index, aligned.
            if offset < HEADER || !(offset as u64).is_multiple_of(ALIGN) {
                return None;
            }
            if offset.checked_add(len)? > start {
                return None;
            }
            entries.insert(name.to_owned(), (kind, offset, len));
        }
        Some(entries)
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
    pub(crate) fn create(path: PathBuf, id: FileIdentity) -> Option<Self> {
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
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ok()?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        if out.write_all(&[0u8; HEADER]).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return None;
        }
        Some(PackWriter {
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

    /// Appends weight `name`; a failed write abandons the cache (the model
    /// itself is unaffected).
    pub(crate) fn add<T: Plain>(&self, name: &str, kind: PackKind, values: &[T]) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = guard.as_mut() else { return };
        if (name.len() > MAX_NAME || w.append(name, kind, as_bytes(values)).is_err())
            && let Some(w) = guard.take()
        {
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
    fn append(&mut self, name: &str, kind: PackKind, bytes: &[u8]) -> std::io::Result<()> {
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
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        let index_offset = self.pos;
        self.out.write_all(&self.index)?;
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header(&self.id, index_offset, self.index.len() as u64))?;
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
    pub(crate) fn for_file(file: &GgufFile, dir: Option<&Path>) -> Self {
        let (Some(dir), Some(id)) = (dir, file.identity()) else {
            return Packs::Off;
        };
        let path = cache_path(dir, file.path());
        if let Some(cache) = PackCache::open(&path, id) {
            return Packs::Mapped(cache);
        }
        match PackWriter::create(path, *id) {
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
    use crate::quant::BlockQ8_0x8;

    fn id() -> FileIdentity {
        FileIdentity {
            len: 1234,
            mtime_ns: 5678,
            inode: 9,
            device: 10,
        }
    }

    fn blocks(n: usize, seed: u8) -> Vec<BlockQ8_0x8> {
        let mut v = vec![BlockQ8_0x8::default(); n];
        for (i, b) in v.iter_mut().enumerate() {
            b.qs[0][0] = (i as u8).wrapping_add(seed) as i8;
            b.d[0] = half::f16::from_f32(i as f32);
        }
        v
    }

    fn write(path: &Path) -> (Vec<BlockQ8_0x8>, Vec<BlockQ8_0x8>) {
        let (a, b) = (blocks(7, 1), blocks(3, 2));
        let w = PackWriter::create(path.to_path_buf(), id()).unwrap();
        w.add("blk.0.attn_q.weight", PackKind::Q8_0x8, &a);
        w.add("blk.0.ffn_up.weight", PackKind::Q8_0x8, &b);
        w.finish();
        (a, b)
    }

    fn same(x: &[BlockQ8_0x8], y: &[BlockQ8_0x8]) -> bool {
        as_bytes(x) == as_bytes(y)
    }

    #[test]
    fn written_weights_read_back_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.kpack");
        let (a, b) = write(&path);
        let c = PackCache::open(&path, &id()).unwrap();
        let ga = c
            .get::<BlockQ8_0x8>("blk.0.attn_q.weight", PackKind::Q8_0x8, 7)
            .unwrap();
        let gb = c
            .get::<BlockQ8_0x8>("blk.0.ffn_up.weight", PackKind::Q8_0x8, 3)
            .unwrap();
        assert!(same(ga, &a) && same(gb, &b));
        // Wrong length, kind or name: not served.
        assert!(
            c.get::<BlockQ8_0x8>("blk.0.attn_q.weight", PackKind::Q8_0x8, 6)
                .is_none()
        );
        assert!(
            c.get::<BlockQ8_0x8>("blk.0.attn_q.weight", PackKind::Q4Kx8, 7)
                .is_none()
        );
        assert!(
            c.get::<BlockQ8_0x8>("blk.1.attn_q.weight", PackKind::Q8_0x8, 7)
                .is_none()
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn another_source_or_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.kpack");
        write(&path);
        let mut other = id();
        other.mtime_ns += 1;
        assert!(PackCache::open(&path, &other).is_none());
        let good = std::fs::read(&path).unwrap();
        // Truncated anywhere: refused, never a panic.
        for cut in [0, 8, 63, 64, 100, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(PackCache::open(&path, &id()).is_none(), "cut at {cut}");
        }
        // Any single byte of the header or index flipped: refused, or (in a
        // name or the weights) a cache that serves nothing wrong-sized.
        let index_offset = usize_from(&mut &good[48..]).unwrap();
        for at in (0..HEADER).chain(index_offset..good.len()) {
            let mut bad = good.clone();
            bad[at] ^= 0x80;
            std::fs::write(&path, &bad).unwrap();
            if let Some(c) = PackCache::open(&path, &id()) {
                for (name, &(_, off, len)) in &c.entries {
                    assert!(off + len <= index_offset, "{name} at {off}+{len}");
                }
            }
        }
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
