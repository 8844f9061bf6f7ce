//! A small safetensors reader that never loads a whole model.
//!
//! The header (a little-endian u64 length, then JSON) is parsed and checked
//! against the file size; tensor data is read on demand with positioned
//! reads, a few rows at a time, so converting a 1.2 GB checkpoint keeps only
//! a small buffer in memory (the page cache is the kernel's business).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use super::ConvertError;

/// Largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// Fills `buf` from `file` at byte `offset` (a positioned read: the file's
/// cursor is not shared state).
#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Positioned reads need a Unix file API (WebAssembly has no files to convert).
#[cfg(not(unix))]
fn read_exact_at(_file: &File, _buf: &mut [u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "positioned file reads are only implemented on Unix",
    ))
}

/// Element types found in checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    /// A non-float type (e.g. BERT's I64 `position_ids`): listed, never converted.
    Other(&'static str, u64),
}

impl Dtype {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "F32" => Some(Self::F32),
            "F16" => Some(Self::F16),
            "BF16" => Some(Self::BF16),
            "F64" => Some(Self::Other("F64", 8)),
            "I64" => Some(Self::Other("I64", 8)),
            "I32" => Some(Self::Other("I32", 4)),
            "I16" => Some(Self::Other("I16", 2)),
            "I8" => Some(Self::Other("I8", 1)),
            "U8" => Some(Self::Other("U8", 1)),
            "BOOL" => Some(Self::Other("BOOL", 1)),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Other(_, size) => size,
        }
    }
}

/// One tensor of a safetensors file.
#[derive(Clone, Debug)]
pub struct StTensor {
    /// Name in the checkpoint.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost first (PyTorch order).
    pub shape: Vec<u64>,
    /// Absolute file offset of the data.
    offset: u64,
}

impl StTensor {
    /// Length of the innermost dimension (1 for a scalar).
    pub fn row_len(&self) -> u64 {
        self.shape.last().copied().unwrap_or(1)
    }
}

/// An open safetensors file.
pub struct SafeTensors {
    path: PathBuf,
    file: File,
    tensors: BTreeMap<String, StTensor>,
}

impl SafeTensors {
    /// Opens `path` and validates its header.
    pub fn open(path: &Path) -> Result<Self, ConvertError> {
        let bad = |why: String| ConvertError::Safetensors {
            path: path.to_owned(),
            why,
        };
        let file = File::open(path).map_err(|e| ConvertError::io(path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| ConvertError::io(path, e))?
            .len();
        let mut len_bytes = [0u8; 8];
        read_exact_at(&file, &mut len_bytes, 0)
            .map_err(|_| bad("file shorter than its 8-byte header length".into()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES || header_len + 8 > file_len {
            return Err(bad(format!(
                "header length {header_len} does not fit a {file_len}-byte file"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        read_exact_at(&file, &mut header, 8).map_err(|e| ConvertError::io(path, e))?;
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
        let data_start = 8 + header_len;
        let mut tensors = BTreeMap::new();
        for (name, entry) in json {
            if name == "__metadata__" {
                continue;
            }
            let dtype_s = entry["dtype"].as_str().unwrap_or("?");
            let dtype = Dtype::parse(dtype_s)
                .ok_or_else(|| bad(format!("tensor {name}: unsupported dtype {dtype_s}")))?;
            let shape: Vec<u64> = entry["shape"]
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_u64()).collect())
                .ok_or_else(|| bad(format!("tensor {name}: bad shape")))?;
            let offsets: Vec<u64> = entry["data_offsets"]
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_u64()).collect())
                .ok_or_else(|| bad(format!("tensor {name}: bad data_offsets")))?;
            let [begin, end] = offsets[..] else {
                return Err(bad(format!(
                    "tensor {name}: data_offsets must have two entries"
                )));
            };
            let n_bytes = shape
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| bad(format!("tensor {name}: shape overflows")))?;
            if end < begin
                || end - begin != n_bytes
                || data_start.checked_add(end).is_none_or(|e| e > file_len)
            {
                return Err(bad(format!(
                    "tensor {name}: data [{begin}, {end}) does not match its shape or the file size (truncated file?)"
                )));
            }
            let t = StTensor {
                name: name.clone(),
                dtype,
                shape,
                offset: data_start + begin,
            };
            tensors.insert(name, t);
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            tensors,
        })
    }

    /// All tensors, by name.
    pub fn tensors(&self) -> &BTreeMap<String, StTensor> {
        &self.tensors
    }

    /// Reads rows `[first, first + n)` of `t` (rows of `row_len` elements)
    /// as f32 into `out`, which is resized to fit.
    pub fn read_rows_f32(
        &self,
        t: &StTensor,
        first: u64,
        n: u64,
        raw: &mut Vec<u8>,
        out: &mut Vec<f32>,
    ) -> Result<(), ConvertError> {
        let row = t.row_len();
        let n_el = (row * n) as usize;
        let start = t.offset + first * row * t.dtype.size();
        if let Dtype::Other(name, _) = t.dtype {
            return Err(ConvertError::Safetensors {
                path: self.path.clone(),
                why: format!("tensor {}: cannot convert dtype {name} to float", t.name),
            });
        }
        raw.resize(n_el * t.dtype.size() as usize, 0);
        read_exact_at(&self.file, raw, start).map_err(|e| ConvertError::io(&self.path, e))?;
        out.clear();
        match t.dtype {
            Dtype::F32 => out.extend(
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Dtype::F16 => out.extend(
                raw.chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            Dtype::BF16 => out.extend(
                raw.chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            Dtype::Other(..) => unreachable!("rejected above"),
        }
        Ok(())
    }
}
