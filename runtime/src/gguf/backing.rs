//! The bytes behind a GGUF file and the zero-copy casts over them.
//!
//! This is the mmap layer: the only place in the GGUF reader with `unsafe`.

use std::fs::File;
use std::ops::Deref;

use half::{bf16, f16};
use memmap2::Mmap;

use crate::quant::{BlockQ4_0, BlockQ4K, BlockQ5_0, BlockQ5K, BlockQ6K, BlockQ8_0};

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
