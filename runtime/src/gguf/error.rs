//! Errors of the GGUF reader and writer.
//!
//! A malformed file gives [`GgufError::Format`], which names the file, the
//! byte offset where reading went wrong and a [`FormatError`] saying what is
//! wrong; tests match on the `FormatError` variant.

use std::path::PathBuf;

use super::types::GgmlType;

/// Anything that can go wrong reading, viewing or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is not a regular file (a directory, FIFO, socket or
    /// device): a FIFO would block the open forever, a device could be
    /// endless.
    #[error("{path}: is a {kind}, not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead, e.g. `directory` or `FIFO`.
        kind: &'static str,
    },
    /// The bytes are not a valid GGUF file.
    #[error("{path}: at byte {offset}: {kind}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Byte offset where the problem was found.
        offset: u64,
        /// What is wrong.
        kind: FormatError,
    },
    /// A metadata key that the caller needs is absent.
    #[error("{path}: metadata key `{key}` is missing")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata value has another type than the caller needs.
    #[error("{path}: metadata key `{key}` is {found}, expected {expected}")]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the caller asked for, e.g. `u32` or `array of string`.
        expected: &'static str,
        /// What the file has, e.g. `i64 -3` or `array of f32`.
        found: String,
    },
    /// No tensor has this name.
    #[error("{path}: no tensor named `{name}`")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// A typed view or dequantization was asked of a tensor of another type.
    #[error("{path}: tensor `{name}` is {found}, expected {expected}")]
    TensorType {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The type the caller asked for.
        expected: &'static str,
        /// The tensor's type.
        found: GgmlType,
    },
    /// A tensor's bytes are not aligned for a zero-copy view of its type.
    #[error("{path}: tensor `{name}` data is not aligned to {align} bytes")]
    Misaligned {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// Alignment the view needs.
        align: usize,
    },
    /// The writer was used wrongly or its output failed.
    #[error("GGUF writer: {0}")]
    Write(#[from] WriteError),
}

impl GgufError {
    /// The [`FormatError`] of a malformed file, if that is what this is.
    pub fn format_error(&self) -> Option<&FormatError> {
        match self {
            GgufError::Format { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// The byte offset of a format error.
    pub fn offset(&self) -> Option<u64> {
        match self {
            GgufError::Format { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// What is wrong with a malformed GGUF file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The first (up to) four bytes.
        found: Vec<u8>,
    },
    /// GGUF v1 (u32 counts) is obsolete and not read.
    #[error(
        "GGUF version 1 is obsolete and not supported (convert it again; versions 2 and 3 are read)"
    )]
    VersionOne,
    /// A version this reader does not know.
    #[error("unsupported GGUF version {0} (versions 2 and 3 are read){hint}", hint = if .0.swap_bytes() == 2 || .0.swap_bytes() == 3 { "; this looks like a big-endian GGUF file" } else { "" })]
    UnsupportedVersion(u32),
    /// The file ends inside a field.
    #[error("file ends inside {what}: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A count is larger than the bytes left could possibly hold.
    #[error("{what} count {count} cannot fit in the {available} bytes left")]
    CountTooLarge {
        /// What is counted.
        what: &'static str,
        /// The count from the file.
        count: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A string is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    BadUtf8 {
        /// Which string.
        what: &'static str,
    },
    /// A metadata value type id that GGUF does not define.
    #[error("unknown metadata value type {0}")]
    UnknownValueType(u32),
    /// Arrays nested deeper than [`MAX_ARRAY_DEPTH`](super::MAX_ARRAY_DEPTH).
    #[error("arrays nested deeper than {0} levels")]
    ArrayTooDeep(usize),
    /// The same metadata key appears twice.
    #[error("duplicate metadata key `{0}`")]
    DuplicateKey(String),
    /// `general.alignment` is not a usable alignment.
    #[error("general.alignment must be a non-zero power of two that fits u32, found {0}")]
    BadAlignment(String),
    /// The same tensor name appears twice.
    #[error("duplicate tensor name `{0}`")]
    DuplicateTensor(String),
    /// A tensor with more dimensions than ggml supports.
    #[error("tensor `{name}` has {n_dims} dimensions, at most {max} are allowed")]
    TooManyDims {
        /// Tensor name.
        name: String,
        /// Its dimension count.
        n_dims: u32,
        /// GGML_MAX_DIMS.
        max: u32,
    },
    /// A dimension above `i64::MAX` (ggml stores `ne` as `int64_t`).
    #[error("tensor `{name}` has dimension {dim} = {value}, above i64::MAX")]
    DimTooLarge {
        /// Tensor name.
        name: String,
        /// Dimension index.
        dim: usize,
        /// Its value.
        value: u64,
    },
    /// The element count or byte size of a tensor overflows.
    #[error("tensor `{name}` shape {dims:?} overflows")]
    ShapeOverflow {
        /// Tensor name.
        name: String,
        /// Its dims.
        dims: Vec<u64>,
    },
    /// A ggml type id that ggml does not define.
    #[error("tensor `{name}` has unknown ggml type id {id}")]
    UnknownTensorType {
        /// Tensor name.
        name: String,
        /// The id.
        id: u32,
    },
    /// A row length that is not a whole number of blocks.
    #[error(
        "tensor `{name}` of type {ty} has ne[0] = {ne0}, not a multiple of its block size {block}"
    )]
    PartialBlock {
        /// Tensor name.
        name: String,
        /// Its type.
        ty: GgmlType,
        /// Its first dimension.
        ne0: u64,
        /// The type's block size.
        block: u64,
    },
    /// A tensor offset that is not a multiple of the file's alignment.
    #[error("tensor `{name}` offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedOffset {
        /// Tensor name.
        name: String,
        /// Offset relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor whose bytes extend past the end of the file.
    #[error(
        "tensor `{name}`: {n_bytes} bytes at offset {offset} pass the end of the data section ({data_len} bytes)"
    )]
    TensorOutOfBounds {
        /// Tensor name.
        name: String,
        /// Offset relative to the data section.
        offset: u64,
        /// Its size in bytes.
        n_bytes: u64,
        /// Bytes in the data section.
        data_len: u64,
    },
    /// Two tensors whose bytes overlap.
    #[error(
        "tensor `{name}` (bytes {start}..{end} of the data section) overlaps tensor `{other}`, which ends at {other_end}"
    )]
    TensorOverlap {
        /// The tensor that starts inside the other.
        name: String,
        /// Its byte range in the data section.
        start: u64,
        /// End of its range.
        end: u64,
        /// The tensor it overlaps.
        other: String,
        /// End of that tensor's range.
        other_end: u64,
    },
}

/// Misuse of [`GgufWriter`](super::GgufWriter) or a failed write.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The output failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// A metadata key was added twice.
    #[error("duplicate metadata key `{0}`")]
    DuplicateKey(String),
    /// A tensor was declared twice.
    #[error("duplicate tensor name `{0}`")]
    DuplicateTensor(String),
    /// A tensor's shape cannot be stored with its type.
    #[error("tensor `{name}`: {reason}")]
    BadTensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// `general.alignment` is not a non-zero power of two `u32`.
    #[error("general.alignment must be a non-zero power of two u32")]
    BadAlignment,
    /// Tensor data came in another order than the declarations.
    #[error("expected data of tensor `{expected}`, got `{got}`")]
    WrongTensor {
        /// The next declared tensor.
        expected: String,
        /// The tensor the caller wrote.
        got: String,
    },
    /// More or fewer bytes than a tensor's size.
    #[error("tensor `{name}` takes {expected} bytes, got {got}")]
    WrongSize {
        /// Tensor name.
        name: String,
        /// Its size.
        expected: u64,
        /// What was written.
        got: u64,
    },
    /// Data written after every tensor was complete.
    #[error("data written after the last tensor")]
    TooMuchData,
    /// `finish` before every tensor's data was written.
    #[error("{missing} tensors have no data yet (next: `{next}`)")]
    Unfinished {
        /// Tensors still missing.
        missing: usize,
        /// The first of them.
        next: String,
    },
    /// A metadata value that GGUF cannot store (e.g. an empty nested array
    /// whose element type cannot be known).
    #[error("metadata `{key}`: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}
