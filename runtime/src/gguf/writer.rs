//! Streaming GGUF writer.
//!
//! Declare metadata and every tensor (name, dims, type) first; `begin`
//! writes the header and tensor infos, then each tensor's bytes are written
//! in declaration order, in one piece or several, and `finish` checks that
//! every tensor got exactly its size. Nothing is buffered beyond the header,
//! so a converter can stream a model of any size.
//!
//! Layout matches llama.cpp's `gguf_write_to_file`: tensor offsets are
//! assigned in order, each tensor is padded with zeros to the alignment
//! (the last one too), and the data section starts at the next multiple of
//! the alignment after the tensor infos.

use std::collections::HashSet;
use std::io::Write;

use super::error::WriteError;
use super::types::GgmlType;
use super::value::{Array, Value, ValueType};
use super::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGML_MAX_DIMS, GGUF_MAGIC, TensorInfo};

/// Collects metadata and tensor declarations for a new GGUF v3 file.
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<TensorInfo>,
    names: HashSet<String>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry (in order). `general.alignment` must be a `u32`
    /// power of two; it sets the alignment of the data.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: Value) -> Result<(), WriteError> {
        let key = key.into();
        if key == ALIGNMENT_KEY && !matches!(value, Value::U32(a) if a.is_power_of_two()) {
            return Err(WriteError::BadAlignment);
        }
        check_value(&key, &value)?;
        if !self.keys.insert(key.clone()) {
            return Err(WriteError::DuplicateKey(key));
        }
        self.metadata.push((key, value));
        Ok(())
    }

    /// Declares a tensor (in data order) and returns its byte size.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
    ) -> Result<u64, WriteError> {
        let name = name.into();
        let bad = |reason: String| WriteError::BadTensor {
            name: name.clone(),
            reason,
        };
        if dims.len() > GGML_MAX_DIMS as usize {
            return Err(bad(format!("{} dims, at most {GGML_MAX_DIMS}", dims.len())));
        }
        let ne0 = dims.first().copied().unwrap_or(1);
        if ne0 % ty.block_size() != 0 {
            return Err(bad(format!(
                "ne[0] = {ne0} is not a multiple of the {ty} block size {}",
                ty.block_size()
            )));
        }
        let n_bytes = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .and_then(|n| ty.n_bytes(n))
            .ok_or_else(|| bad(format!("shape {dims:?} overflows")))?;
        if self.names.contains(&name) {
            return Err(WriteError::DuplicateTensor(name));
        }
        self.names.insert(name.clone());
        self.tensors.push(TensorInfo {
            name,
            dims: dims.to_vec(),
            ty,
            offset: 0,
            n_bytes,
        });
        Ok(n_bytes)
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find_map(|(k, v)| match v {
                Value::U32(a) if k == ALIGNMENT_KEY => Some(u64::from(*a)),
                _ => None,
            })
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Writes the header, metadata, tensor infos and padding to `out`, and
    /// returns the writer for the tensor data.
    pub fn begin<W: Write>(mut self, mut out: W) -> Result<TensorDataWriter<W>, WriteError> {
        let alignment = self.alignment();
        let mut offset = 0u64;
        for t in &mut self.tensors {
            t.offset = offset;
            offset = t
                .n_bytes
                .checked_next_multiple_of(alignment)
                .and_then(|n| offset.checked_add(n))
                .ok_or_else(|| WriteError::BadTensor {
                    name: t.name.clone(),
                    reason: "data section overflows u64".into(),
                })?;
        }

        let mut w = Counting {
            inner: &mut out,
            written: 0,
        };
        w.write_all(&GGUF_MAGIC)?;
        w.write_all(&3u32.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_str(&mut w, key)?;
            w.write_all(&value.value_type().id().to_le_bytes())?;
            write_value(&mut w, value)?;
        }
        for t in &self.tensors {
            write_str(&mut w, &t.name)?;
            w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&t.ty.id().to_le_bytes())?;
            w.write_all(&t.offset.to_le_bytes())?;
        }
        let pad = w.written.next_multiple_of(alignment) - w.written;
        write_zeros(&mut w, pad)?;
        let header_len = w.written;
        Ok(TensorDataWriter {
            out,
            tensors: self.tensors,
            alignment,
            next: 0,
            written: 0,
            header_len,
        })
    }
}

/// Rejects values GGUF cannot store faithfully.
fn check_value(key: &str, value: &Value) -> Result<(), WriteError> {
    if let Value::Array(a) = value {
        if a.elem_type() == ValueType::Array {
            for item in a.nested_items().unwrap_or(&[]) {
                check_value(key, &Value::Array(item.clone()))?;
            }
        } else if a.encoded_bytes().is_none() {
            return Err(WriteError::BadValue {
                key: key.to_owned(),
                reason: "array without encoded elements".into(),
            });
        }
    }
    Ok(())
}

/// Writes tensor data in declaration order; made by [`GgufWriter::begin`].
#[derive(Debug)]
pub struct TensorDataWriter<W: Write> {
    out: W,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    /// Index of the tensor being written.
    next: usize,
    /// Bytes of it written so far.
    written: u64,
    header_len: u64,
}

impl<W: Write> TensorDataWriter<W> {
    /// The declared tensors with their assigned offsets.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Bytes of header, metadata, tensor infos and padding (the data
    /// section's file offset).
    pub fn data_offset(&self) -> u64 {
        self.header_len
    }

    /// Writes all of tensor `name`'s data, which must be the next declared
    /// tensor and exactly its size.
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
        let Some(t) = self.tensors.get(self.next) else {
            return Err(WriteError::TooMuchData);
        };
        if t.name != name {
            return Err(WriteError::WrongTensor {
                expected: t.name.clone(),
                got: name.to_owned(),
            });
        }
        if self.written != 0 || bytes.len() as u64 != t.n_bytes {
            return Err(WriteError::WrongSize {
                name: name.to_owned(),
                expected: t.n_bytes,
                got: self.written + bytes.len() as u64,
            });
        }
        self.write_data(bytes)
    }

    /// Appends data to the current tensor, moving on to the next tensor
    /// (after padding) when one is complete. For streaming a tensor in
    /// pieces, e.g. row by row. Bytes past the last tensor are refused with
    /// [`WriteError::TooMuchData`] (those that fit are written first).
    pub fn write_data(&mut self, mut bytes: &[u8]) -> Result<(), WriteError> {
        while !bytes.is_empty() {
            let Some(t) = self.tensors.get(self.next) else {
                return Err(WriteError::TooMuchData);
            };
            let left = t.n_bytes - self.written;
            let n = left.min(bytes.len() as u64) as usize;
            self.out.write_all(&bytes[..n])?;
            self.written += n as u64;
            bytes = &bytes[n..];
            self.finish_tensors()?;
        }
        Ok(())
    }

    /// Pads and moves past every complete tensor (zero-sized ones included).
    fn finish_tensors(&mut self) -> Result<(), WriteError> {
        while let Some(t) = self.tensors.get(self.next) {
            if self.written < t.n_bytes {
                break;
            }
            let pad = t.n_bytes.next_multiple_of(self.alignment) - t.n_bytes;
            write_zeros(&mut self.out, pad)?;
            self.next += 1;
            self.written = 0;
        }
        Ok(())
    }

    /// Checks that every tensor is complete, flushes and returns the output.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.finish_tensors()?;
        if let Some(t) = self.tensors.get(self.next) {
            return Err(WriteError::Unfinished {
                missing: self.tensors.len() - self.next,
                next: t.name.clone(),
            });
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Counts bytes written, to place the padding before the data section.
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_zeros(w: &mut impl Write, mut n: u64) -> std::io::Result<()> {
    const ZEROS: [u8; 64] = [0; 64];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes()),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::String(s) => write_str(w, s),
        Value::Array(a) => write_array(w, a),
    }
}

fn write_array(w: &mut impl Write, a: &Array) -> std::io::Result<()> {
    w.write_all(&a.elem_type().id().to_le_bytes())?;
    w.write_all(&a.len().to_le_bytes())?;
    match a.nested_items() {
        Some(items) => items.iter().try_for_each(|i| write_array(w, i)),
        None => w.write_all(a.encoded_bytes().unwrap_or(&[])),
    }
}
