//! The GGUF parser: header, metadata and tensor infos, every bound checked
//! before use.
//!
//! Layout (little-endian): `"GGUF"`, `u32` version, `u64` tensor count,
//! `u64` key-value count, the key-values, the tensor infos, padding to
//! `general.alignment` (default 32), then the data section. Counts from the
//! file are compared with the bytes left before anything is allocated from
//! them: each metadata entry takes at least [`MIN_KV_BYTES`] bytes and each
//! tensor info at least [`MIN_TENSOR_INFO_BYTES`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::backing::Backing;
use super::error::{FormatError, GgufError};
use super::types::GgmlType;
use super::value::{Array, Value, ValueType};
use super::{DEFAULT_ALIGNMENT, GGML_MAX_DIMS, GGUF_MAGIC, MAX_ARRAY_DEPTH, Metadata, TensorInfo};

/// Fewest bytes of one metadata entry: key length (8), type (4), a one-byte
/// value.
pub const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Fewest bytes of one tensor info: name length (8), n_dims (4), type (4),
/// offset (8).
pub const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// Whether `bytes` is UTF-8, with SIMD where the CPU has it: std's
/// validator ran at ~1 GB/s on Gemma's mostly non-ASCII vocabulary and took
/// most of the time of opening the file.
fn valid_utf8(bytes: &[u8]) -> bool {
    simdutf8::basic::from_utf8(bytes).is_ok()
}

/// What the parser found, before it is put together with the bytes.
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
}

/// A position in the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn error_at(&self, offset: usize, kind: FormatError) -> GgufError {
        GgufError::Format {
            path: self.path.to_path_buf(),
            offset: offset as u64,
            kind,
        }
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(self.error_at(
                self.pos,
                FormatError::Truncated {
                    what,
                    needed: n,
                    available: self.remaining(),
                },
            ));
        }
        // n <= remaining <= usize::MAX, so the cast and the slice are in range.
        let n = n as usize;
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A length-prefixed UTF-8 string, borrowed.
    fn str(&mut self, what: &'static str) -> Result<&'a str, GgufError> {
        let at = self.pos;
        let n = self.u64(what)?;
        if n > self.remaining() {
            // Point at the length field: that is the value that is wrong.
            return Err(self.error_at(
                at,
                FormatError::Truncated {
                    what,
                    needed: n,
                    available: self.remaining(),
                },
            ));
        }
        let start = self.pos;
        let s = self.take(n, what)?;
        std::str::from_utf8(s).map_err(|_| self.error_at(start, FormatError::BadUtf8 { what }))
    }

    /// Steps over `count` length-prefixed strings, checking each length and
    /// its UTF-8.
    ///
    /// This is the hot loop of opening a file with a large vocabulary
    /// (262,144 tokens for Gemma), and `from_utf8` per short string
    /// dominated it. So runs of strings shorter than 128 bytes are validated
    /// in one call, length prefixes included: such a prefix is eight ASCII
    /// bytes, and an ASCII byte can neither continue nor end inside a
    /// multi-byte sequence, so the run is valid UTF-8 exactly when each of
    /// its strings is. Longer strings are checked one by one. On any failure
    /// the run is read again string by string to report the exact one.
    fn skip_strings(&mut self, count: u64, what: &'static str) -> Result<(), GgufError> {
        /// Strings shorter than this have an all-ASCII length prefix.
        const SHORT: usize = 128;
        let bytes = self.bytes;
        let mut pos = self.pos;
        let mut run = pos;
        for _ in 0..count {
            let Some(len) = bytes.get(pos..pos + 8) else {
                return self.string_error(run, what);
            };
            let mut len8 = [0u8; 8];
            len8.copy_from_slice(len);
            let body = pos + 8;
            let n = u64::from_le_bytes(len8);
            if n > (bytes.len() - body) as u64 {
                return self.string_error(run, what);
            }
            let n = n as usize;
            if n >= SHORT {
                if !valid_utf8(&bytes[run..pos]) || !valid_utf8(&bytes[body..body + n]) {
                    return self.string_error(run, what);
                }
                run = body + n;
            }
            pos = body + n;
        }
        if !valid_utf8(&bytes[run..pos]) {
            return self.string_error(run, what);
        }
        self.pos = pos;
        Ok(())
    }

    /// Reads strings from `from` one at a time until one fails, and returns
    /// that error. Each step consumes at least 8 bytes, so this ends (at the
    /// latest with a truncation error at the end of the file).
    fn string_error(&mut self, from: usize, what: &'static str) -> Result<(), GgufError> {
        self.pos = from;
        loop {
            self.str(what)?;
        }
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit
    /// in the bytes left; `at` is the offset of the count field.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        what: &'static str,
        at: usize,
    ) -> Result<(), GgufError> {
        if count.saturating_mul(min_size) > self.remaining() {
            return Err(self.error_at(
                at,
                FormatError::CountTooLarge {
                    what,
                    count,
                    available: self.remaining(),
                },
            ));
        }
        Ok(())
    }

    fn value_type(&mut self) -> Result<ValueType, GgufError> {
        let at = self.pos;
        let id = self.u32("metadata value type")?;
        ValueType::from_id(id).ok_or_else(|| self.error_at(at, FormatError::UnknownValueType(id)))
    }
}

/// Parses the header, metadata and tensor infos of `backing`.
pub(crate) fn parse(backing: &Arc<Backing>, path: &Path) -> Result<Parsed, GgufError> {
    let bytes: &[u8] = backing;
    let mut r = Cursor {
        bytes,
        pos: 0,
        path,
    };

    let head = &bytes[..bytes.len().min(4)];
    if head != &GGUF_MAGIC[..head.len()] {
        return Err(r.error_at(
            0,
            FormatError::BadMagic {
                found: head.to_vec(),
            },
        ));
    }
    r.take(4, "magic")?;
    let version = r.u32("version")?;
    match version {
        2 | 3 => {}
        1 => return Err(r.error_at(4, FormatError::VersionOne)),
        v => return Err(r.error_at(4, FormatError::UnsupportedVersion(v))),
    }
    let n_tensors_at = r.pos;
    let n_tensors = r.u64("tensor count")?;
    let n_kv_at = r.pos;
    let n_kv = r.u64("metadata count")?;
    r.check_count(n_kv, MIN_KV_BYTES, "metadata entry", n_kv_at)?;

    // Metadata.
    let mut entries = Vec::with_capacity(n_kv as usize);
    let mut index = HashMap::with_capacity(n_kv as usize);
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..n_kv {
        let key_at = r.pos;
        let key = r.str("metadata key")?;
        let ty = r.value_type()?;
        let value_at = r.pos;
        let value = read_value(&mut r, backing, ty, 0)?;
        if key == super::ALIGNMENT_KEY {
            alignment = match value.as_i128() {
                Some(a) if a > 0 && a <= i128::from(u32::MAX) && (a & (a - 1)) == 0 => a as u64,
                _ => {
                    return Err(r.error_at(value_at, FormatError::BadAlignment(value.describe())));
                }
            };
        }
        if index.insert(key.to_owned(), entries.len()).is_some() {
            return Err(r.error_at(key_at, FormatError::DuplicateKey(key.to_owned())));
        }
        entries.push((key.to_owned(), value));
    }

    // Tensor infos. The count is checked against what is left after the
    // metadata, the tightest bound the file gives.
    r.check_count(
        n_tensors,
        MIN_TENSOR_INFO_BYTES,
        "tensor info",
        n_tensors_at,
    )?;
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
    let mut info_offsets = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let info_at = r.pos;
        let name = r.str("tensor name")?.to_owned();
        let n_dims_at = r.pos;
        let n_dims = r.u32("tensor n_dims")?;
        if n_dims > GGML_MAX_DIMS {
            return Err(r.error_at(
                n_dims_at,
                FormatError::TooManyDims {
                    name,
                    n_dims,
                    max: GGML_MAX_DIMS,
                },
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for dim in 0..n_dims as usize {
            let dim_at = r.pos;
            let value = r.u64("tensor dimension")?;
            if value > i64::MAX as u64 {
                return Err(r.error_at(dim_at, FormatError::DimTooLarge { name, dim, value }));
            }
            dims.push(value);
        }
        let type_at = r.pos;
        let type_id = r.u32("tensor type")?;
        let Some(ty) = GgmlType::from_id(type_id) else {
            return Err(r.error_at(
                type_at,
                FormatError::UnknownTensorType { name, id: type_id },
            ));
        };
        let offset_at = r.pos;
        let offset = r.u64("tensor offset")?;

        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64);
        let ne0 = dims.first().copied().unwrap_or(1);
        if n_elements.is_some() && ne0 % ty.block_size() != 0 {
            return Err(r.error_at(
                n_dims_at,
                FormatError::PartialBlock {
                    name,
                    ty,
                    ne0,
                    block: ty.block_size(),
                },
            ));
        }
        let Some(n_bytes) = n_elements
            .and_then(|n| ty.n_bytes(n))
            .filter(|&b| usize::try_from(b).is_ok())
        else {
            return Err(r.error_at(n_dims_at, FormatError::ShapeOverflow { name, dims }));
        };
        if offset % alignment != 0 {
            return Err(r.error_at(
                offset_at,
                FormatError::MisalignedOffset {
                    name,
                    offset,
                    alignment,
                },
            ));
        }
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(r.error_at(info_at, FormatError::DuplicateTensor(name)));
        }
        info_offsets.push(info_at);
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset,
            n_bytes,
        });
    }

    // Data section: starts at the next multiple of the alignment.
    let data_offset = (r.pos as u64).next_multiple_of(alignment);
    let data_len = (bytes.len() as u64).saturating_sub(data_offset);
    for (t, &at) in tensors.iter().zip(&info_offsets) {
        if t.offset
            .checked_add(t.n_bytes)
            .is_none_or(|end| end > data_len)
        {
            return Err(r.error_at(
                at,
                FormatError::TensorOutOfBounds {
                    name: t.name.clone(),
                    offset: t.offset,
                    n_bytes: t.n_bytes,
                    data_len,
                },
            ));
        }
    }
    check_overlaps(&r, &tensors, &info_offsets)?;

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata: Metadata::new(entries, index, path.to_path_buf()),
        tensors,
        tensor_index,
    })
}

/// Refuses tensors whose bytes overlap: two weights sharing bytes are a
/// corrupt or hostile file (GGUF ties weights by omitting a tensor, never
/// by sharing its data). Empty tensors overlap nothing. One sort of the
/// tensors' ranges, `O(n log n)` for a few hundred tensors.
fn check_overlaps(
    r: &Cursor<'_>,
    tensors: &[TensorInfo],
    info_offsets: &[usize],
) -> Result<(), GgufError> {
    let mut order: Vec<usize> = (0..tensors.len())
        .filter(|&i| tensors[i].n_bytes > 0)
        .collect();
    order.sort_unstable_by_key(|&i| (tensors[i].offset, i));
    for pair in order.windows(2) {
        let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
        // Bounds were checked before, so these sums do not overflow.
        let a_end = a.offset + a.n_bytes;
        if b.offset < a_end {
            return Err(r.error_at(
                info_offsets[pair[1]],
                FormatError::TensorOverlap {
                    name: b.name.clone(),
                    start: b.offset,
                    end: b.offset + b.n_bytes,
                    other: a.name.clone(),
                    other_end: a_end,
                },
            ));
        }
    }
    Ok(())
}

/// Reads one value of type `ty`; `depth` counts enclosing arrays.
fn read_value(
    r: &mut Cursor<'_>,
    backing: &Arc<Backing>,
    ty: ValueType,
    depth: usize,
) -> Result<Value, GgufError> {
    const WHAT: &str = "metadata value";
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(r.array(WHAT)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(r.array(WHAT)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(r.array(WHAT)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(r.array(WHAT)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(r.array(WHAT)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(r.array(WHAT)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(r.array(WHAT)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(r.array(WHAT)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(r.array(WHAT)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(r.array(WHAT)?)),
        ValueType::Bool => Value::Bool(r.array::<1>(WHAT)?[0] != 0),
        ValueType::String => Value::String(r.str("metadata string")?.to_owned()),
        ValueType::Array => Value::Array(read_array(r, backing, depth + 1)?),
    })
}

/// Reads an array header and its elements; `depth` is its nesting level.
fn read_array(
    r: &mut Cursor<'_>,
    backing: &Arc<Backing>,
    depth: usize,
) -> Result<Array, GgufError> {
    let at = r.pos;
    if depth > MAX_ARRAY_DEPTH {
        return Err(r.error_at(at, FormatError::ArrayTooDeep(MAX_ARRAY_DEPTH)));
    }
    let elem = r.value_type()?;
    let count_at = r.pos;
    let count = r.u64("array length")?;
    r.check_count(count, elem.min_size(), "array element", count_at)?;
    let start = r.pos;
    match elem {
        ValueType::Array => {
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(read_array(r, backing, depth + 1)?);
            }
            Ok(Array::nested(items))
        }
        ValueType::String => {
            r.skip_strings(count, "array string")?;
            Ok(Array::encoded(elem, count, backing.clone(), start, r.pos))
        }
        _ => {
            // Fixed-size: the count check above covered count * size.
            let size = elem.min_size();
            r.take(count * size, "array")?;
            Ok(Array::encoded(elem, count, backing.clone(), start, r.pos))
        }
    }
}
