//! Zero-copy GGUF: open a file, read its metadata and tensor infos, view
//! tensor data in place, and write new files.
//!
//! [`GgufFile::open`] maps the file and parses the header, metadata and
//! tensor infos; tensor data is never copied: [`GgufFile::tensor_bytes`] and
//! the typed views (`tensor_f32`, `tensor_q8_0`, ...) borrow from the map.
//! Every count and offset from the file is checked against the bytes that are
//! really there before it is used, and a malformed file gives a
//! [`GgufError::Format`] naming the file, the byte offset and the problem.
//!
//! Versions 2 and 3 are read (v1 is rejected); little-endian only. Model
//! files must not be modified while they are open (they are memory-mapped).

#[cfg(target_endian = "big")]
compile_error!("kiln's GGUF reader views little-endian tensor data in place");

mod backing;
mod dequant;
mod error;
mod layout;
mod reader;
mod types;
mod value;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::{bf16, f16};

pub(crate) use backing::{AnonVec, Backing, Plain, as_bytes, cast_slice};
pub use error::{FormatError, GgufError, WriteError};
pub use layout::{OwnedLayout, OwnedValue, StaticLayout, StaticTensor, StaticValue, describe};
pub use reader::{MIN_KV_BYTES, MIN_TENSOR_INFO_BYTES};
pub use types::{GgmlType, QK_K, file_type_name};
pub(crate) use value::take;
pub use value::{Array, ArrayIter, StrIter, Value, ValueRef, ValueType};
pub use writer::{GgufWriter, TensorDataWriter};

use crate::quant::{BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ6K, BlockQ8_0};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of tensor offsets when the file has no
/// `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that sets the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Most dimensions a ggml tensor has (`GGML_MAX_DIMS`).
pub const GGML_MAX_DIMS: u32 = 4;
/// Deepest nesting of metadata arrays accepted (GGUF sets no limit; this
/// bounds the parser's recursion on hostile files).
pub const MAX_ARRAY_DEPTH: usize = 8;

/// One tensor's description from the file's tensor infos.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Shape in ggml order: `dims[0]` (`ne[0]`) is the contiguous dimension.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data, relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (product of the dims; checked at open).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Length of a row (`ne[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of the dims after the first).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

/// Metadata key-values, in file order, with lookup by key.
#[derive(Clone, Debug)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    path: PathBuf,
}

impl Metadata {
    pub(crate) fn new(
        entries: Vec<(String, Value)>,
        index: HashMap<String, usize>,
        path: PathBuf,
    ) -> Self {
        Metadata {
            entries,
            index,
            path,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_owned(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &Value) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_owned(),
            expected,
            found: found.describe(),
        }
    }

    fn get_int<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let v = self.require(key)?;
        v.as_i128()
            .and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| self.wrong_type(key, expected, v))
    }

    /// An integer value that fits `u32` (any integer type is accepted).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_int(key, "an integer that fits u32")
    }

    /// An integer value that fits `u64` (any integer type is accepted).
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_int(key, "an integer that fits u64")
    }

    /// An integer value that fits `i64` (any integer type is accepted).
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.get_int(key, "an integer that fits i64")
    }

    /// A `float32` value (a `float64` is accepted and rounded).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match self.require(key)? {
            Value::F32(v) => Ok(*v),
            Value::F64(v) => Ok(*v as f32),
            v => Err(self.wrong_type(key, "float32", v)),
        }
    }

    /// A `bool` value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            Value::Bool(v) => Ok(*v),
            v => Err(self.wrong_type(key, "bool", v)),
        }
    }

    /// A `string` value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            Value::String(v) => Ok(v),
            v => Err(self.wrong_type(key, "string", v)),
        }
    }

    /// An array value of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(self.wrong_type(key, "array", v)),
        }
    }

    fn get_typed_array(
        &self,
        key: &str,
        elem: ValueType,
        expected: &'static str,
    ) -> Result<&Array, GgufError> {
        match self.require(key)? {
            Value::Array(a) if a.elem_type() == elem => Ok(a),
            v => Err(self.wrong_type(key, expected, v)),
        }
    }

    /// The strings of an array of strings, borrowed from the file without
    /// allocating (`.len()` via [`StrIter::remaining`], or collect).
    pub fn get_str_array(&self, key: &str) -> Result<StrIter<'_>, GgufError> {
        let a = self.get_typed_array(key, ValueType::String, "array of string")?;
        a.strs()
            .ok_or_else(|| self.wrong_type(key, "array of string", &Value::Array(a.clone())))
    }

    /// An array of `float32`, decoded (GGUF arrays are not aligned in the
    /// file, so this copies).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        let a = self.get_typed_array(key, ValueType::F32, "array of float32")?;
        Ok(a.decode_fixed(f32::from_le_bytes))
    }

    /// An array of `int32`, decoded.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        let a = self.get_typed_array(key, ValueType::I32, "array of int32")?;
        Ok(a.decode_fixed(i32::from_le_bytes))
    }

    /// An array of `uint32`, decoded.
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>, GgufError> {
        let a = self.get_typed_array(key, ValueType::U32, "array of uint32")?;
        Ok(a.decode_fixed(u32::from_le_bytes))
    }

    /// `general.architecture`, e.g. `bert`, `gemma3`, `gemma-embedding`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }
}

/// An open GGUF file: parsed header, metadata and tensor infos over the
/// file's bytes (memory-mapped, embedded or owned).
#[derive(Debug)]
pub struct GgufFile {
    bytes: Arc<Backing>,
    path: PathBuf,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    identity: Option<FileIdentity>,
}

/// Which file on disk a GGUF was read from, and which version of it: what
/// a cache derived from the file is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    /// Length in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
    /// Inode number (0 where the platform has none).
    pub inode: u64,
    /// Device number (0 where the platform has none).
    pub device: u64,
    /// Status-change time, nanoseconds (wrapping; 0 where the platform has
    /// none). Unlike the mtime, any write sets it to now and no tool sets it
    /// back, so it tells a same-size edit whose mtime was restored.
    pub ctime_ns: u64,
}

impl FileIdentity {
    fn of(file: &File) -> Option<Self> {
        let md = file.metadata().ok()?;
        let mtime = md
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        #[cfg(unix)]
        let (inode, device, ctime_ns) = {
            use std::os::unix::fs::MetadataExt;
            let ctime_ns = (md.ctime() as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(md.ctime_nsec() as u64);
            (md.ino(), md.dev(), ctime_ns)
        };
        #[cfg(not(unix))]
        let (inode, device, ctime_ns) = (0, 0, 0);
        Some(FileIdentity {
            len: md.len(),
            mtime_ns: u64::try_from(mtime.as_nanos()).ok()?,
            inode,
            device,
            ctime_ns,
        })
    }
}

/// Opens `path` for reading if it is a regular file. The open itself must
/// not block: opening a FIFO for reading waits for a writer, so on Unix it
/// is opened non-blocking and its type checked on the open descriptor
/// (no window between a check and the open).
pub(crate) fn open_regular(path: &Path) -> Result<File, GgufError> {
    let io = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io)?;
    let ty = file.metadata().map_err(io)?.file_type();
    if ty.is_file() {
        return Ok(file);
    }
    let kind = if ty.is_dir() {
        "directory"
    } else {
        file_kind(&ty)
    };
    Err(GgufError::NotAFile {
        path: path.to_path_buf(),
        kind,
    })
}

/// A name for a file type that is neither a regular file nor a directory.
fn file_kind(ty: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_fifo() {
            return "FIFO";
        }
        if ty.is_socket() {
            return "socket";
        }
        if ty.is_block_device() {
            return "block device";
        }
        if ty.is_char_device() {
            return "character device";
        }
    }
    let _ = ty;
    "special file"
}

impl GgufFile {
    /// Maps `path` read-only and parses it. Cost: one `mmap` plus a pass
    /// over the header and metadata; tensor data is not touched.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = open_regular(path)?;
        let backing = Backing::map(&file).map_err(io)?;
        let mut this = Self::from_backing(Arc::new(backing), path.to_path_buf())?;
        this.identity = FileIdentity::of(&file);
        Ok(this)
    }

    /// The file on disk this was read from (`None` for bytes in memory).
    pub fn identity(&self) -> Option<&FileIdentity> {
        self.identity.as_ref()
    }

    /// Parses bytes compiled into the binary (e.g. `include_bytes!` in a
    /// wrapper aligned to the file's alignment); `name` stands for the path
    /// in errors.
    pub fn from_static(bytes: &'static [u8], name: impl Into<PathBuf>) -> Result<Self, GgufError> {
        Self::from_backing(Arc::new(Backing::Static(bytes)), name.into())
    }

    /// Parses bytes owned on the heap (tests, fuzzing, files built in
    /// memory); `name` stands for the path in errors.
    pub fn from_vec(bytes: Vec<u8>, name: impl Into<PathBuf>) -> Result<Self, GgufError> {
        Self::from_backing(Arc::new(Backing::Owned(bytes)), name.into())
    }

    fn from_backing(bytes: Arc<Backing>, path: PathBuf) -> Result<Self, GgufError> {
        let parsed = reader::parse(&bytes, &path)?;
        Ok(GgufFile {
            bytes,
            path,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            tensor_index: parsed.tensor_index,
            identity: None,
        })
    }

    /// The path given to `open` (or the name given to `from_static`/`from_vec`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and tensor offsets.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// File size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the file is empty (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Tells the OS this process is done with tensor `name`'s bytes for
    /// now: they leave the resident set (a later read faults them back in
    /// from the page cache). For weights that were copied at open, e.g.
    /// repacked into a kernel's layout. No effect on static or owned bytes,
    /// or for an unknown name.
    pub fn release_tensor(&self, name: &str) {
        if let Some(t) = self.tensor(name) {
            let start = (self.data_offset() + t.offset) as usize;
            self.bytes.release(start..start + t.n_bytes as usize);
        }
    }

    /// The whole file's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.metadata.architecture()
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    fn require_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            path: self.path.clone(),
            name: name.to_owned(),
        })
    }

    /// The bytes of a tensor, borrowed from the file. `info` must come from
    /// this file (bounds were checked at open; a foreign info whose range
    /// does not fit yields an empty slice rather than a panic).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let start = self.data_offset.saturating_add(info.offset);
        let end = start.saturating_add(info.n_bytes);
        match (usize::try_from(start), usize::try_from(end)) {
            (Ok(s), Ok(e)) => self.bytes.get(s..e).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Zero-copy typed view of tensor `name`, checking its type is `ty`.
    fn view<T: backing::Plain>(
        &self,
        name: &str,
        ty: GgmlType,
        expected: &'static str,
    ) -> Result<&[T], GgufError> {
        let info = self.require_tensor(name)?;
        if info.ty != ty {
            return Err(GgufError::TensorType {
                path: self.path.clone(),
                name: name.to_owned(),
                expected,
                found: info.ty,
            });
        }
        backing::cast_slice(self.tensor_bytes(info)).ok_or_else(|| GgufError::Misaligned {
            path: self.path.clone(),
            name: name.to_owned(),
            align: std::mem::align_of::<T>(),
        })
    }

    /// An F32 tensor's values, in place.
    pub fn tensor_f32(&self, name: &str) -> Result<&[f32], GgufError> {
        self.view(name, GgmlType::F32, "F32")
    }

    /// An F16 tensor's values, in place.
    pub fn tensor_f16(&self, name: &str) -> Result<&[f16], GgufError> {
        self.view(name, GgmlType::F16, "F16")
    }

    /// A BF16 tensor's values, in place.
    pub fn tensor_bf16(&self, name: &str) -> Result<&[bf16], GgufError> {
        self.view(name, GgmlType::BF16, "BF16")
    }

    /// A Q8_0 tensor's blocks, in place (row `r` is blocks
    /// `r * ne0/32 .. (r+1) * ne0/32`).
    pub fn tensor_q8_0(&self, name: &str) -> Result<&[BlockQ8_0], GgufError> {
        self.view(name, GgmlType::Q8_0, "Q8_0")
    }

    /// A Q4_1 tensor's blocks, in place (rows of `ne0/32` blocks).
    pub fn tensor_q4_1(&self, name: &str) -> Result<&[BlockQ4_1], GgufError> {
        self.view(name, GgmlType::Q4_1, "Q4_1")
    }

    /// A Q5_0 tensor's blocks, in place (rows of `ne0/32` blocks).
    pub fn tensor_q5_0(&self, name: &str) -> Result<&[BlockQ5_0], GgufError> {
        self.view(name, GgmlType::Q5_0, "Q5_0")
    }

    /// A Q4_K tensor's blocks, in place (rows of `ne0/256` blocks).
    pub fn tensor_q4_k(&self, name: &str) -> Result<&[BlockQ4K], GgufError> {
        self.view(name, GgmlType::Q4_K, "Q4_K")
    }

    /// A Q6_K tensor's blocks, in place (rows of `ne0/256` blocks).
    pub fn tensor_q6_k(&self, name: &str) -> Result<&[BlockQ6K], GgufError> {
        self.view(name, GgmlType::Q6_K, "Q6_K")
    }

    /// Tensor `name` converted to f32 (row-major in ggml order), for the
    /// types [`dequantize_supported`] lists.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.require_tensor(name)?;
        dequant::dequantize(info.ty, self.tensor_bytes(info)).ok_or_else(|| {
            GgufError::TensorType {
                path: self.path.clone(),
                name: name.to_owned(),
                expected: "a type kiln can dequantize (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K)",
                found: info.ty,
            }
        })
    }
}

/// Whether [`GgufFile::dequantize`] handles tensors of type `ty`.
pub fn dequantize_supported(ty: GgmlType) -> bool {
    dequant::supported(ty)
}

/// Converts raw tensor bytes of type `ty` to f32 (any alignment); `None` if
/// the type is not supported or `bytes` is not a whole number of blocks.
pub fn dequantize_bytes(ty: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    dequant::dequantize(ty, bytes)
}
