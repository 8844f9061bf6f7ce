//! A GGUF file's header described by literals, for models compiled into a
//! binary by `#[kiln::model]`.
//!
//! The macro parses the header at build time with this crate's reader and
//! emits a [`StaticLayout`]: every metadata entry (arrays as byte ranges of
//! the embedded file) and every tensor's type, shape and offset. At run time
//! [`GgufFile::from_static_layout`] puts the file together from those
//! literals without reading the header again. Nothing here is `unsafe`:
//! a layout that did not match its bytes (impossible when both come from one
//! macro expansion, since `include_bytes!` ties the bytes to the file the
//! macro read) would give wrong values or an error, never undefined
//! behavior: array and tensor ranges are bounds-checked slices.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::backing::Backing;
use super::error::{FormatError, GgufError};
use super::types::GgmlType;
use super::value::{Array, Value, ValueType};
use super::{GgufFile, Metadata, TensorInfo};

/// One metadata value as a literal.
#[derive(Clone, Copy, Debug)]
pub enum StaticValue {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float32`.
    F32(f32),
    /// `float64`.
    F64(f64),
    /// `bool`.
    Bool(bool),
    /// `string`.
    Str(&'static str),
    /// An array of scalars or strings: `len` elements of type id `elem`,
    /// encoded in the file's bytes `start..end` (arrays of arrays are not
    /// supported here; the macro refuses them).
    Array {
        /// GGUF value type id of the elements.
        elem: u32,
        /// Number of elements.
        len: u64,
        /// First byte of the elements in the file.
        start: usize,
        /// One past the last byte.
        end: usize,
    },
}

/// One tensor info as literals.
#[derive(Clone, Copy, Debug)]
pub struct StaticTensor {
    /// Tensor name.
    pub name: &'static str,
    /// Shape, ggml order.
    pub dims: &'static [u64],
    /// ggml type id.
    pub ty: u32,
    /// Offset of the data relative to the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

/// A whole header as literals.
#[derive(Clone, Copy, Debug)]
pub struct StaticLayout {
    /// Size of the file in bytes.
    pub file_len: u64,
    /// GGUF version.
    pub version: u32,
    /// Alignment of the data section and tensors.
    pub alignment: u64,
    /// File offset of the data section.
    pub data_offset: u64,
    /// Metadata entries in file order.
    pub metadata: &'static [(&'static str, StaticValue)],
    /// Tensor infos in file order.
    pub tensors: &'static [StaticTensor],
}

impl GgufFile {
    /// Puts together a file compiled into the binary from its bytes and the
    /// header the build already parsed (see the module docs): no parsing,
    /// only the index maps are built. `name` stands for the path in errors.
    pub fn from_static_layout(
        bytes: &'static [u8],
        name: impl Into<PathBuf>,
        layout: &StaticLayout,
    ) -> Result<Self, GgufError> {
        let path: PathBuf = name.into();
        let format = |kind| GgufError::Format {
            path: path.clone(),
            offset: 0,
            kind,
        };
        if bytes.len() as u64 != layout.file_len {
            return Err(format(FormatError::Truncated {
                what: "embedded model (its bytes differ from the layout)",
                needed: layout.file_len,
                available: bytes.len() as u64,
            }));
        }
        let backing = Arc::new(Backing::Static(bytes));
        let mut entries = Vec::with_capacity(layout.metadata.len());
        let mut index = HashMap::with_capacity(layout.metadata.len());
        for (i, &(key, value)) in layout.metadata.iter().enumerate() {
            let value = match value {
                StaticValue::U8(v) => Value::U8(v),
                StaticValue::I8(v) => Value::I8(v),
                StaticValue::U16(v) => Value::U16(v),
                StaticValue::I16(v) => Value::I16(v),
                StaticValue::U32(v) => Value::U32(v),
                StaticValue::I32(v) => Value::I32(v),
                StaticValue::U64(v) => Value::U64(v),
                StaticValue::I64(v) => Value::I64(v),
                StaticValue::F32(v) => Value::F32(v),
                StaticValue::F64(v) => Value::F64(v),
                StaticValue::Bool(v) => Value::Bool(v),
                StaticValue::Str(v) => Value::String(v.to_owned()),
                StaticValue::Array {
                    elem,
                    len,
                    start,
                    end,
                } => {
                    let elem = ValueType::from_id(elem)
                        .filter(|&t| t != ValueType::Array)
                        .ok_or_else(|| format(FormatError::UnknownValueType(elem)))?;
                    if start > end || end > bytes.len() {
                        return Err(format(FormatError::Truncated {
                            what: "embedded metadata array",
                            needed: end as u64,
                            available: bytes.len() as u64,
                        }));
                    }
                    Value::Array(Array::encoded(elem, len, backing.clone(), start, end))
                }
            };
            index.insert(key.to_owned(), i);
            entries.push((key.to_owned(), value));
        }
        let mut tensors = Vec::with_capacity(layout.tensors.len());
        let mut tensor_index = HashMap::with_capacity(layout.tensors.len());
        for (i, t) in layout.tensors.iter().enumerate() {
            let ty = GgmlType::from_id(t.ty)
                .ok_or_else(|| format(FormatError::UnknownValueType(t.ty)))?;
            let end = layout
                .data_offset
                .saturating_add(t.offset)
                .saturating_add(t.n_bytes);
            if end > layout.file_len {
                return Err(format(FormatError::Truncated {
                    what: "embedded tensor data",
                    needed: end,
                    available: layout.file_len,
                }));
            }
            tensor_index.insert(t.name.to_owned(), i);
            tensors.push(TensorInfo {
                name: t.name.to_owned(),
                dims: t.dims.to_vec(),
                ty,
                offset: t.offset,
                n_bytes: t.n_bytes,
            });
        }
        Ok(GgufFile {
            bytes: backing,
            path: path.clone(),
            version: layout.version,
            alignment: layout.alignment,
            data_offset: layout.data_offset,
            metadata: Metadata::new(entries, index, path),
            tensors,
            tensor_index,
            identity: None,
        })
    }
}

/// Describes `file`'s header as values a code generator turns into
/// literals (what `#[kiln::model]` emits); `Err` with the offending key if
/// it has an array of arrays.
pub fn describe(file: &GgufFile) -> Result<OwnedLayout, String> {
    let base = file.as_bytes().as_ptr() as usize;
    let mut metadata = Vec::with_capacity(file.metadata().len());
    for (key, value) in file.metadata().iter() {
        let v = match value {
            Value::U8(v) => OwnedValue::Scalar(StaticValue::U8(*v)),
            Value::I8(v) => OwnedValue::Scalar(StaticValue::I8(*v)),
            Value::U16(v) => OwnedValue::Scalar(StaticValue::U16(*v)),
            Value::I16(v) => OwnedValue::Scalar(StaticValue::I16(*v)),
            Value::U32(v) => OwnedValue::Scalar(StaticValue::U32(*v)),
            Value::I32(v) => OwnedValue::Scalar(StaticValue::I32(*v)),
            Value::U64(v) => OwnedValue::Scalar(StaticValue::U64(*v)),
            Value::I64(v) => OwnedValue::Scalar(StaticValue::I64(*v)),
            Value::F32(v) => OwnedValue::Scalar(StaticValue::F32(*v)),
            Value::F64(v) => OwnedValue::Scalar(StaticValue::F64(*v)),
            Value::Bool(v) => OwnedValue::Scalar(StaticValue::Bool(*v)),
            Value::String(s) => OwnedValue::Str(s.clone()),
            Value::Array(a) => {
                let Some(enc) = a.encoded_bytes() else {
                    return Err(key.to_owned());
                };
                let start = enc.as_ptr() as usize - base;
                OwnedValue::Scalar(StaticValue::Array {
                    elem: a.elem_type().id(),
                    len: a.len(),
                    start,
                    end: start + enc.len(),
                })
            }
        };
        metadata.push((key.to_owned(), v));
    }
    Ok(OwnedLayout {
        file_len: file.len(),
        version: file.version(),
        alignment: file.alignment(),
        data_offset: file.data_offset(),
        metadata,
    })
}

/// [`StaticLayout`]'s header fields and metadata as owned values, what a
/// code generator turns into literals (tensors come from
/// [`GgufFile::tensors`]).
#[derive(Clone, Debug)]
pub struct OwnedLayout {
    /// Size of the file in bytes.
    pub file_len: u64,
    /// GGUF version.
    pub version: u32,
    /// Alignment of the data section and tensors.
    pub alignment: u64,
    /// File offset of the data section.
    pub data_offset: u64,
    /// Metadata entries in file order.
    pub metadata: Vec<(String, OwnedValue)>,
}

/// A metadata value of an [`OwnedLayout`].
#[derive(Clone, Debug)]
pub enum OwnedValue {
    /// Everything but strings (arrays as byte ranges).
    Scalar(StaticValue),
    /// A string.
    Str(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leaks a copy of the MiniLM fixture (a test-only `'static` buffer;
    /// header and metadata reading needs no alignment).
    fn leaked_fixture() -> Option<&'static [u8]> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf"
        );
        std::fs::read(path).ok().map(Vec::leak).map(|b| &*b)
    }

    #[test]
    fn layout_round_trip_equals_parsed_file() {
        let Some(bytes) = leaked_fixture() else {
            eprintln!("skipped: MiniLM fixture not found");
            return;
        };
        let parsed = GgufFile::from_static(bytes, "minilm").unwrap();
        let owned = describe(&parsed).unwrap();
        let metadata: Vec<(&'static str, StaticValue)> = owned
            .metadata
            .iter()
            .map(|(k, v)| {
                let k: &'static str = Box::leak(k.clone().into_boxed_str());
                let v = match v {
                    OwnedValue::Scalar(s) => *s,
                    OwnedValue::Str(s) => StaticValue::Str(Box::leak(s.clone().into_boxed_str())),
                };
                (k, v)
            })
            .collect();
        let tensors: Vec<StaticTensor> = parsed
            .tensors()
            .iter()
            .map(|t| StaticTensor {
                name: Box::leak(t.name.clone().into_boxed_str()),
                dims: Box::leak(t.dims.clone().into_boxed_slice()),
                ty: t.ty.id(),
                offset: t.offset,
                n_bytes: t.n_bytes,
            })
            .collect();
        let layout = StaticLayout {
            file_len: owned.file_len,
            version: owned.version,
            alignment: owned.alignment,
            data_offset: owned.data_offset,
            metadata: Vec::leak(metadata),
            tensors: Vec::leak(tensors),
        };
        let rebuilt = GgufFile::from_static_layout(bytes, "minilm", &layout).unwrap();
        assert_eq!(rebuilt.tensors(), parsed.tensors());
        assert_eq!(rebuilt.data_offset(), parsed.data_offset());
        assert_eq!(rebuilt.metadata().len(), parsed.metadata().len());
        for ((ka, va), (kb, vb)) in rebuilt.metadata().iter().zip(parsed.metadata().iter()) {
            assert_eq!((ka, va), (kb, vb));
        }
        // A layout for other bytes is refused.
        assert!(GgufFile::from_static_layout(&bytes[..100], "short", &layout).is_err());
    }
}
