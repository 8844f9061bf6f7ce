//! A minimal streaming GGUF v3 writer for the converter.
//!
//! The header (metadata and tensor infos) is written first; the tensors'
//! bytes follow in the declared order, each padded to the alignment. Only
//! the value types the converter emits are supported.
//!
//! Layout and padding follow gguf-py's `GGUFWriter`, so a file written here
//! has the same tensor data offsets as llama.cpp's for the same header.

use std::io::{self, Write};

/// GGUF file format version written.
pub const GGUF_VERSION: u32 = 3;
/// Alignment of the data section and of each tensor (`general.alignment` default).
pub const ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    F32Array(Vec<f32>),
    I32Array(Vec<i32>),
}

/// ggml tensor types the converter writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q8_0,
}

impl TensorType {
    /// The ggml type id stored in the file.
    pub fn ggml_id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 8,
        }
    }

    /// Bytes taken by a row of `n` elements (`n` a multiple of 32 for Q8_0).
    pub fn row_bytes(self, n: u64) -> u64 {
        match self {
            Self::F32 => 4 * n,
            Self::F16 => 2 * n,
            Self::Q8_0 => n / 32 * 34,
        }
    }

    /// The name ggml uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q8_0 => "Q8_0",
        }
    }
}

/// One tensor's header entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutTensor {
    /// GGUF tensor name.
    pub name: String,
    /// Shape in ggml order (`dims[0]` is the contiguous one).
    pub dims: Vec<u64>,
    /// Stored type.
    pub ty: TensorType,
}

impl OutTensor {
    /// Size of the tensor data in bytes (without padding).
    pub fn n_bytes(&self) -> u64 {
        let row = self.dims.first().copied().unwrap_or(1);
        let rows: u64 = self.dims.iter().skip(1).product();
        self.ty.row_bytes(row) * rows
    }
}

fn pad_len(n: u64) -> u64 {
    (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT
}

/// Data offsets (relative to the data section) of `tensors`, in order.
pub fn data_offsets(tensors: &[OutTensor]) -> Vec<u64> {
    let mut off = 0;
    tensors
        .iter()
        .map(|t| {
            let this = off;
            off += t.n_bytes();
            off += pad_len(off);
            this
        })
        .collect()
}

fn put_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn put_value(w: &mut impl Write, v: &MetaValue) -> io::Result<()> {
    const U32: u32 = 4;
    const I32: u32 = 5;
    const F32: u32 = 6;
    const BOOL: u32 = 7;
    const STRING: u32 = 8;
    const ARRAY: u32 = 9;
    let array_head = |w: &mut dyn Write, ty: u32, n: usize| -> io::Result<()> {
        w.write_all(&ARRAY.to_le_bytes())?;
        w.write_all(&ty.to_le_bytes())?;
        w.write_all(&(n as u64).to_le_bytes())
    };
    match v {
        MetaValue::U32(x) => {
            w.write_all(&U32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        MetaValue::I32(x) => {
            w.write_all(&I32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        MetaValue::F32(x) => {
            w.write_all(&F32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        MetaValue::Bool(x) => {
            w.write_all(&BOOL.to_le_bytes())?;
            w.write_all(&[u8::from(*x)])
        }
        MetaValue::Str(s) => {
            w.write_all(&STRING.to_le_bytes())?;
            put_str(w, s)
        }
        MetaValue::StrArray(items) => {
            array_head(w, STRING, items.len())?;
            items.iter().try_for_each(|s| put_str(w, s))
        }
        MetaValue::F32Array(items) => {
            array_head(w, F32, items.len())?;
            items.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
        MetaValue::I32Array(items) => {
            array_head(w, I32, items.len())?;
            items.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
    }
}

/// Writes the GGUF header: magic, counts, metadata, tensor infos and the
/// padding up to the data section. Returns the bytes written.
pub fn write_header(
    w: &mut impl Write,
    metadata: &[(String, MetaValue)],
    tensors: &[OutTensor],
) -> io::Result<u64> {
    let mut w = CountingWriter { inner: w, n: 0 };
    w.write_all(b"GGUF")?;
    w.write_all(&GGUF_VERSION.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata {
        put_str(&mut w, key)?;
        put_value(&mut w, value)?;
    }
    for (t, off) in tensors.iter().zip(data_offsets(tensors)) {
        put_str(&mut w, &t.name)?;
        w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for d in &t.dims {
            w.write_all(&d.to_le_bytes())?;
        }
        w.write_all(&t.ty.ggml_id().to_le_bytes())?;
        w.write_all(&off.to_le_bytes())?;
    }
    let pad = pad_len(w.n);
    w.write_all(&vec![0u8; pad as usize])?;
    Ok(w.n)
}

/// Writes the zero padding that follows a tensor of `n_bytes`.
pub fn write_tensor_padding(w: &mut impl Write, n_bytes: u64) -> io::Result<()> {
    w.write_all(&vec![0u8; pad_len(n_bytes) as usize])
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_aligned_and_header_is_padded() {
        let tensors = vec![
            OutTensor {
                name: "a".into(),
                dims: vec![3],
                ty: TensorType::F32,
            },
            OutTensor {
                name: "b".into(),
                dims: vec![32, 2],
                ty: TensorType::Q8_0,
            },
        ];
        assert_eq!(data_offsets(&tensors), vec![0, 32]);
        let mut buf = Vec::new();
        let n = write_header(&mut buf, &[("k".into(), MetaValue::U32(7))], &tensors).unwrap();
        assert_eq!(n as usize, buf.len());
        assert_eq!(n % ALIGNMENT, 0);
        assert_eq!(&buf[..4], b"GGUF");
        assert_eq!(tensors[1].n_bytes(), 68);
    }
}
