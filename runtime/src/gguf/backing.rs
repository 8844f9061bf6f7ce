//! The bytes behind a GGUF file and the zero-copy casts over them.
//!
//! This is the mmap layer: the only place in the GGUF reader with `unsafe`.

use std::fs::File;
use std::ops::Deref;

use half::{bf16, f16};
use memmap2::Mmap;

use crate::quant::{
    BlockQ4_0, BlockQ4K, BlockQ4Kx8, BlockQ5_0, BlockQ5K, BlockQ6K, BlockQ6Kx8, BlockQ8_0,
    BlockQ8_0x8,
};

/// Where a file's bytes live.
#[derive(Debug)]
pub(crate) enum Backing {
    /// A read-only map of a file.
    Mmap(Mmap),
    /// Bytes compiled into the binary (`include_bytes!`).
    Static(&'static [u8]),
    /// Bytes owned on the heap (tests, fuzzing, small in-memory files).
    Owned(Vec<u8>),
}

impl Backing {
    /// Maps `file` read-only.
    pub(crate) fn map(file: &File) -> std::io::Result<Self> {
        // SAFETY: the map is read-only and never handed out as `&mut`. The
        // one hazard memmap2 cannot rule out is another process truncating or
        // rewriting the file while it is mapped; like every mmap-based model
        // loader (llama.cpp, candle, safetensors) we document that model
        // files must not be modified while open.
        let map = unsafe { Mmap::map(file)? };
        Ok(Backing::Mmap(map))
    }
}

impl Backing {
    /// Drops the whole pages inside `range` (byte offsets) from this
    /// process's resident set; a later read faults them back in from the
    /// page cache with the same contents. Only maps are affected.
    pub(crate) fn release(&self, range: std::ops::Range<usize>) {
        const PAGE: usize = 4096;
        let Backing::Mmap(map) = self else { return };
        let start = range.start.next_multiple_of(PAGE);
        let end = range.end.min(map.len()) / PAGE * PAGE;
        if start >= end {
            return;
        }
        // SAFETY: `MADV_DONTNEED` on a read-only, file-backed shared map
        // only discards this process's page-table entries: every later
        // access reads the same file bytes again, so the `&[u8]` views into
        // the map (which never see writes) stay valid and unchanged. The
        // range is page-aligned and inside the map (checked above). Failure
        // only means the pages stay resident, so the result is ignored.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
    }
}

impl Deref for Backing {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Static(s) => s,
            Backing::Owned(v) => v,
        }
    }
}

/// Types that are valid for every bit pattern and have no padding, so a
/// suitably aligned byte slice can be viewed as a slice of them.
///
/// # Safety
/// Implementors must be `Copy`, contain no padding bytes and accept any bit
/// pattern as a valid value.
pub(crate) unsafe trait Plain: Copy + 'static {}

// SAFETY: primitive numbers accept every bit pattern and have no padding.
unsafe impl Plain for f32 {}
// SAFETY: as above.
unsafe impl Plain for f16 {}
// SAFETY: as above.
unsafe impl Plain for bf16 {}
// SAFETY: every block is `#[repr(C)]`, made of f16 / u8 / i8 fields whose
// offsets leave no gap (their sizes are asserted in `quant.rs`), and any bit
// pattern is a valid block.
unsafe impl Plain for BlockQ8_0 {}
// SAFETY: as above.
unsafe impl Plain for BlockQ4_0 {}
// SAFETY: as above.
unsafe impl Plain for BlockQ5_0 {}
// SAFETY: as above.
unsafe impl Plain for BlockQ4K {}
// SAFETY: as above.
unsafe impl Plain for BlockQ5K {}
// SAFETY: as above.
unsafe impl Plain for BlockQ6K {}
// SAFETY: as above (`[f16; 8]` then `[[i8; 32]; 8]`: 272 bytes, no gap).
unsafe impl Plain for BlockQ8_0x8 {}
// SAFETY: as above (f16, i8, i16 and u8 arrays in that order, each at an
// offset its alignment divides: 1248 bytes, no gap).
unsafe impl Plain for BlockQ4Kx8 {}
// SAFETY: as above (f16, i8 and u8 arrays: 1680 bytes, no gap).
unsafe impl Plain for BlockQ6Kx8 {}

/// Anonymous memory for the weights copied at one open (repacked), handed
/// out as zeroed slices of shared maps: a `Vec` would memset every byte and
/// fault in every 4 KiB page, and one map per weight (most are under 2 MiB)
/// could never use huge pages. Chunks of [`ARENA_CHUNK`] bytes are asked
/// for huge pages (`MADV_HUGEPAGE`) before any page exists, and each slice
/// is populated in one call (`MADV_POPULATE_WRITE`), a fault per 2 MiB
/// instead of per 4 KiB: fewer faults at open, fewer TLB misses in the
/// kernels. A chunk lives as long as one of its slices.
pub(crate) struct AnonArena {
    /// The chunk being filled and the bytes of it handed out.
    current: std::sync::Mutex<Option<(std::sync::Arc<AnonMap>, usize)>>,
}

/// Virtual size of an arena chunk; a slice as large gets a map of its own.
/// Pages never written (a chunk's unused tail) cost no memory.
pub(crate) const ARENA_CHUNK: usize = 64 << 20;

/// Alignment of every slice (a cache line; every block type's alignment
/// divides it).
const ARENA_ALIGN: usize = 64;

/// One anonymous map, written only through the disjoint slices an arena
/// hands out.
struct AnonMap {
    map: memmap2::MmapMut,
    /// `map`'s first byte, taken once through `&mut` at creation.
    base: *mut u8,
}

// SAFETY: the map is plain memory owned by this value; `base` is only used
// to form the disjoint slices of `AnonVec`s, each of which follows Rust's
// borrowing rules on its own range.
unsafe impl Send for AnonMap {}
// SAFETY: as above; `AnonMap` itself never reads or writes through `base`.
unsafe impl Sync for AnonMap {}

impl AnonMap {
    fn new(bytes: usize) -> std::io::Result<Self> {
        let mut map = memmap2::MmapOptions::new().len(bytes.max(1)).map_anon()?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        let base = map.as_mut_ptr();
        Ok(AnonMap { map, base })
    }
}

impl AnonArena {
    pub(crate) fn new() -> Self {
        AnonArena {
            current: std::sync::Mutex::new(None),
        }
    }

    /// `len` zeroed values (all-zero bytes are a valid `T`: `Plain`).
    pub(crate) fn zeroed<T: Plain>(&self, len: usize) -> std::io::Result<AnonVec<T>> {
        const { assert!(std::mem::align_of::<T>() <= ARENA_ALIGN) };
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| std::io::Error::other("allocation size overflows"))?;
        let (map, offset) = if bytes >= ARENA_CHUNK / 2 {
            (std::sync::Arc::new(AnonMap::new(bytes)?), 0)
        } else {
            let mut current = self
                .current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let fits = |(m, used): &(std::sync::Arc<AnonMap>, usize)| {
                used.next_multiple_of(ARENA_ALIGN) + bytes <= m.map.len()
            };
            if !current.as_ref().is_some_and(fits) {
                *current = Some((std::sync::Arc::new(AnonMap::new(ARENA_CHUNK)?), 0));
            }
            let (m, used) = current.as_mut().expect("set above");
            let offset = used.next_multiple_of(ARENA_ALIGN);
            *used = offset + bytes;
            (m.clone(), offset)
        };
        // Populated outside the lock: threads opening layers in parallel
        // fault their own slices in. Before Linux 5.14 there is no
        // MADV_POPULATE_WRITE: the writes that fill the slice fault it in.
        #[cfg(target_os = "linux")]
        if bytes > 0 {
            let _ = map
                .map
                .advise_range(memmap2::Advice::PopulateWrite, offset, bytes);
        }
        // SAFETY: `offset + bytes` lies inside the map (a chunk was checked
        // to fit, a large slice has its own map), so the pointer stays in
        // the same allocation.
        let ptr = unsafe { map.base.add(offset) }.cast::<T>();
        Ok(AnonVec {
            _map: map,
            ptr,
            len,
        })
    }
}

/// Zeroed values in an [`AnonArena`] chunk: a range of it no other
/// `AnonVec` overlaps.
pub(crate) struct AnonVec<T: Plain> {
    /// Keeps the chunk mapped.
    _map: std::sync::Arc<AnonMap>,
    /// The first value: inside the chunk, aligned for `T`.
    ptr: *mut T,
    len: usize,
}

// SAFETY: an `AnonVec` owns its range of the map exclusively (the arena
// never hands a byte out twice), like a `Vec<T>` owns its buffer.
unsafe impl<T: Plain + Send> Send for AnonVec<T> {}
// SAFETY: shared access only gives `&[T]`, as `&Vec<T>` would.
unsafe impl<T: Plain + Sync> Sync for AnonVec<T> {}

impl<T: Plain> AnonVec<T> {
    /// The values.
    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` is aligned for T (page-aligned maps, 64-aligned
        // offsets) and `len` values follow it inside the map, which `_map`
        // keeps alive; the memory is initialized (zeroed, or written through
        // `as_mut_slice`), any bit pattern is a valid T (`Plain`), and no
        // other `AnonVec` covers this range.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The values, mutable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`; `&mut self` makes the borrow exclusive,
        // and the range is this value's alone.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Views `bytes` as `&[T]` without copying; `None` if `bytes` is not aligned
/// for `T` or not a whole number of `T`.
pub(crate) fn cast_slice<T: Plain>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if size == 0
        || !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: the pointer is aligned for T (checked above), the length covers
    // exactly `len / size` values inside `bytes`, T accepts any bit pattern
    // (`Plain`), and the returned slice borrows `bytes`, so it cannot outlive
    // them or alias a mutable borrow.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Copies `bytes` into a new `Vec<T>` (for data whose alignment does not
/// allow [`cast_slice`]); `None` if `bytes` is not a whole number of `T`.
pub(crate) fn copy_to_vec<T: Plain + Default>(bytes: &[u8]) -> Option<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if size == 0 || !bytes.len().is_multiple_of(size) {
        return None;
    }
    let mut out = vec![T::default(); bytes.len() / size];
    // SAFETY: `out` owns exactly `bytes.len()` bytes of initialized `T`s, T
    // has no padding and accepts any bit pattern (`Plain`), and the two
    // regions cannot overlap because `out` was just allocated.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr().cast::<u8>(), bytes.len());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slices come zeroed, aligned and disjoint, from shared chunks (a
    /// large one from its own map), and outlive the arena.
    #[test]
    fn arena_slices_are_zeroed_disjoint_and_outlive_it() {
        let arena = AnonArena::new();
        let lens = [1usize, 1000, 3, 0, 70_000, ARENA_CHUNK / 8, 17];
        let mut vecs: Vec<AnonVec<f32>> = lens.iter().map(|&n| arena.zeroed(n).unwrap()).collect();
        let big: AnonVec<BlockQ8_0x8> = arena
            .zeroed(ARENA_CHUNK / std::mem::size_of::<BlockQ8_0x8>())
            .unwrap();
        drop(arena);
        for (i, v) in vecs.iter_mut().enumerate() {
            assert!(
                v.as_slice().iter().all(|&x| x == 0.0),
                "slice {i} not zeroed"
            );
            assert!((v.as_slice().as_ptr() as usize).is_multiple_of(ARENA_ALIGN));
            v.as_mut_slice().fill(i as f32 + 1.0);
        }
        for (i, v) in vecs.iter().enumerate() {
            assert_eq!(v.as_slice().len(), lens[i]);
            assert!(
                v.as_slice().iter().all(|&x| x == i as f32 + 1.0),
                "slice {i} overwritten"
            );
        }
        assert!(big.as_slice().iter().all(|b| b.qs[7][31] == 0));
        // The chunks are shared: the second slice follows the first.
        let (a, b) = (
            vecs[0].as_slice().as_ptr() as usize,
            vecs[1].as_slice().as_ptr() as usize,
        );
        assert_eq!(b - a, ARENA_ALIGN);
    }

    #[test]
    fn cast_checks_alignment_and_length() {
        let words = [1.0f32, 2.0, 3.0];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let aligned = copy_to_vec::<f32>(&bytes).unwrap();
        assert_eq!(aligned, words);
        assert!(copy_to_vec::<f32>(&bytes[..5]).is_none());
        // A 4-aligned buffer viewed at offset 1 is misaligned for f32.
        let backing: Vec<f32> = vec![0.0; 4];
        let as_bytes = {
            let p = backing.as_ptr().cast::<u8>();
            // SAFETY: test-only view of the f32 buffer's own 16 bytes.
            unsafe { std::slice::from_raw_parts(p, 16) }
        };
        assert!(cast_slice::<f32>(&as_bytes[1..13]).is_none());
        assert_eq!(cast_slice::<f32>(&as_bytes[4..16]).unwrap().len(), 3);
    }
}
