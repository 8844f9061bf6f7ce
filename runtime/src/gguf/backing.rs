//! The bytes behind a GGUF file and the zero-copy casts over them.
//!
//! This is the mmap layer: the only place in the GGUF reader with `unsafe`.

use std::fs::File;
use std::ops::Deref;

use half::{bf16, f16};
use memmap2::Mmap;

use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4_1x8, BlockQ4K, BlockQ4Kx8, BlockQ5_0, BlockQ5K, BlockQ6K,
    BlockQ6Kx8, BlockQ8_0, BlockQ8_0x8,
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

    /// Maps `file` read-only with every page mapped up front (one call
    /// instead of a fault per 16 pages later, on the path that needs them).
    pub(crate) fn map_populated(file: &File) -> std::io::Result<Self> {
        // SAFETY: as in `map`: read-only, never `&mut`, and the file must
        // not be modified while open.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(file)? };
        Ok(Backing::Mmap(map))
    }
}

impl Backing {
    /// Drops the whole pages inside `range` (byte offsets) from this
    /// process's resident set; a later read faults them back in from the
    /// page cache with the same contents. Only maps are affected, and only
    /// on Unix (elsewhere the pages simply stay resident).
    #[cfg(unix)]
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

    /// Nothing to release without `madvise`.
    #[cfg(not(unix))]
    pub(crate) fn release(&self, _range: std::ops::Range<usize>) {}
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
unsafe impl Plain for BlockQ4_1 {}
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
// SAFETY: as above (two f16 arrays, then u8 arrays: 160 bytes, no gap).
unsafe impl Plain for BlockQ4_1x8 {}

/// Zero-initialized values in an anonymous memory map: for weights copied
/// at open (repacked), where a `Vec` would memset every byte and then fault
/// in every 4 KiB page. The pages are 4 KiB ones, populated in one call;
/// the huge-page advice after it only lets khugepaged merge a large map
/// later. Huge pages at open (advice first, one shared map per open) made
/// opens faster in most runs and 2-3x slower in others in our VMs, where
/// a huge page is sometimes memory the host has taken back (see the
/// revert of aa03f2a).
pub(crate) struct AnonVec<T: Plain> {
    map: memmap2::MmapMut,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Plain> AnonVec<T> {
    /// `len` zeroed values (all-zero bytes are a valid `T`: `Plain`).
    pub(crate) fn zeroed(len: usize) -> std::io::Result<Self> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| std::io::Error::other("allocation size overflows"))?;
        // Populated up front: one call instead of a page fault per 4 KiB.
        let map = memmap2::MmapOptions::new()
            .len(bytes.max(1))
            .populate()
            .map_anon()?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        Ok(AnonVec {
            map,
            len,
            _t: std::marker::PhantomData,
        })
    }

    /// The values.
    pub(crate) fn as_slice(&self) -> &[T] {
        let bytes = &self.map[..self.len * std::mem::size_of::<T>()];
        cast_slice(bytes).expect("a map is page-aligned and sized for `len` values")
    }

    /// The values, mutable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        let size = std::mem::size_of::<T>();
        let bytes = &mut self.map[..self.len * size];
        assert!((bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()));
        // SAFETY: the map is page-aligned (so aligned for T, asserted), the
        // length covers exactly `len` values inside it, any bit pattern is a
        // valid T (`Plain`), and the slice mutably borrows the map.
        unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<T>(), self.len) }
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

/// The bytes of `values` (to write them to a file).
pub(crate) fn as_bytes<T: Plain>(values: &[T]) -> &[u8] {
    // SAFETY: `T` has no padding (`Plain`), so every byte of the slice is
    // initialized; the length is exactly the slice's size, and the result
    // borrows `values` immutably.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
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
