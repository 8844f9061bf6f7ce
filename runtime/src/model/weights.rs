//! Typed, checked views of tensors inside a mapped GGUF.
//!
//! The bottom of the model layer: [`linear`](super::linear) builds layers
//! over these views (and adds [`Tensors::linear`]); nothing here knows
//! about layers.

use std::sync::Arc;

use super::ModelError;
use super::pack_cache::Packs;
use crate::gguf::{AnonVec, GgmlType, GgufFile, Plain};
use crate::quant::{BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ6K, BlockQ8_0, QK_K};

/// A slice of `T` inside the mapping of a GGUF file, or owned when the file's
/// type had to be converted at open.
///
/// Mapped views carry no lifetime: the model that holds them also holds the
/// `Arc<GgufFile>` they point into, and never hands a view out past itself.
pub(crate) enum Data<T: Plain> {
    Mapped {
        ptr: *const T,
        len: usize,
    },
    Owned(Vec<T>),
    /// Copied at open into an anonymous map (large repacked weights).
    Anon(AnonVec<T>),
}

// SAFETY: a mapped `Data` is a shared view of immutable file bytes (the map is
// read-only and lives as long as the model that owns both); sharing or sending
// it is like sharing a `&[T]`.
unsafe impl<T: Plain + Sync> Send for Data<T> {}
// SAFETY: as above: only shared reads of immutable memory.
unsafe impl<T: Plain + Sync> Sync for Data<T> {}

impl<T: Plain> Data<T> {
    pub(crate) fn mapped(slice: &[T]) -> Self {
        Data::Mapped {
            ptr: slice.as_ptr(),
            len: slice.len(),
        }
    }

    /// Bytes owned (converted at open); 0 for a view of the file.
    pub(crate) fn owned_bytes(&self) -> usize {
        match self {
            Data::Mapped { .. } => 0,
            Data::Owned(v) => std::mem::size_of_val(v.as_slice()),
            Data::Anon(v) => std::mem::size_of_val(v.as_slice()),
        }
    }

    /// The values.
    pub(crate) fn get(&self) -> &[T] {
        match self {
            // SAFETY: `ptr/len` came from a live slice of the file's map, and
            // the map outlives `self` (see the type's doc).
            Data::Mapped { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            Data::Owned(v) => v,
            Data::Anon(v) => v.as_slice(),
        }
    }
}

/// Element types a linear layer's weight can have at run time.
pub(crate) enum WeightData {
    Q8_0(Data<BlockQ8_0>),
    F32(Data<f32>),
    Q4K(Data<BlockQ4K>),
    Q6K(Data<BlockQ6K>),
    Q5_0(Data<BlockQ5_0>),
    Q4_1(Data<BlockQ4_1>),
    /// A quantized type without a kernel, dequantized to f32 at open; the
    /// matmul rounds its input as that type's kernel would quantize it, so
    /// results equal the quantized kernel's up to summation order.
    Dequantized(Data<f32>, ActRound),
}

/// How a quantized kernel quantizes its activations (llama.cpp's
/// `vec_dot_type`), emulated by the f32 fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActRound {
    /// Q8_0: blocks of 32, `d = absmax / 127` stored as f16 (Q4_0, Q5_0).
    Q8_0,
    /// Q8_K: blocks of 256, `d = max / -127` over the signed extreme, f32
    /// (the K-quants).
    Q8K,
}

/// Looks tensors up by name and checks their shapes.
pub(crate) struct Tensors<'f> {
    file: &'f Arc<GgufFile>,
    /// Where repacked weights come from or go to.
    packs: &'f Packs,
}

impl<'f> Tensors<'f> {
    pub(crate) fn new(file: &'f Arc<GgufFile>, packs: &'f Packs) -> Self {
        Tensors { file, packs }
    }

    fn info(&self, name: &str, dims: &[u64]) -> Result<&'f crate::gguf::TensorInfo, ModelError> {
        let info = self
            .file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_owned()))?;
        if info.dims != dims {
            return Err(ModelError::TensorShape {
                name: name.to_owned(),
                found: info.dims.clone(),
                expected: dims.to_vec(),
            });
        }
        Ok(info)
    }

    /// The names of every tensor in the file.
    pub(crate) fn names(&self) -> impl Iterator<Item = &'f str> {
        self.file.tensors().iter().map(|t| t.name.as_str())
    }

    /// Whether the file has a tensor of that name.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    /// A small f32 tensor (norm weights, biases, position tables); F16 and
    /// BF16 are converted once at open.
    pub(crate) fn f32(&self, name: &str, dims: &[u64]) -> Result<Data<f32>, ModelError> {
        let info = self.info(name, dims)?;
        match info.ty {
            GgmlType::F32 => Ok(Data::mapped(self.file.tensor_f32(name)?)),
            GgmlType::F16 | GgmlType::BF16 => Ok(Data::Owned(self.file.dequantize(name)?)),
            other => Err(ModelError::TensorType {
                name: name.to_owned(),
                ty: format!("{other:?}"),
                supported: "F32, F16, BF16",
            }),
        }
    }

    /// A matrix used as the weight of a matmul: `n` rows of `k`.
    pub(crate) fn matrix(&self, name: &str, k: usize, n: usize) -> Result<WeightData, ModelError> {
        let info = self.info(name, &[k as u64, n as u64])?;
        match info.ty {
            GgmlType::Q8_0 => Ok(WeightData::Q8_0(Data::mapped(self.file.tensor_q8_0(name)?))),
            GgmlType::F32 => Ok(WeightData::F32(Data::mapped(self.file.tensor_f32(name)?))),
            GgmlType::F16 | GgmlType::BF16 => {
                Ok(WeightData::F32(Data::Owned(self.file.dequantize(name)?)))
            }
            GgmlType::Q5_0 => Ok(WeightData::Q5_0(Data::mapped(self.file.tensor_q5_0(name)?))),
            GgmlType::Q4_K if k.is_multiple_of(QK_K) => {
                Ok(WeightData::Q4K(Data::mapped(self.file.tensor_q4_k(name)?)))
            }
            GgmlType::Q6_K if k.is_multiple_of(QK_K) => {
                Ok(WeightData::Q6K(Data::mapped(self.file.tensor_q6_k(name)?)))
            }
            GgmlType::Q4_1 => Ok(WeightData::Q4_1(Data::mapped(self.file.tensor_q4_1(name)?))),
            // The quantized types without a kernel yet (Q4_0, Q5_K): f32 at
            // open through the reference dequantizers (correct, but 4-8x
            // the file's memory and f32 matmul speed).
            GgmlType::Q4_0 => Ok(WeightData::Dequantized(
                Data::Owned(self.file.dequantize(name)?),
                ActRound::Q8_0,
            )),
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K if k.is_multiple_of(QK_K) => Ok(
                WeightData::Dequantized(Data::Owned(self.file.dequantize(name)?), ActRound::Q8K),
            ),
            other => Err(ModelError::TensorType {
                name: name.to_owned(),
                ty: format!("{other:?}"),
                supported: "Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K, F32, F16, BF16",
            }),
        }
    }

    /// As [`matrix`](Self::matrix), for plans that feed only f32 and Q8_0
    /// inputs: weights whose kernel reads Q8_K activations are dequantized
    /// (Q4_1's reads Q8_0, so it stays).
    pub(crate) fn matrix_q8(
        &self,
        name: &str,
        k: usize,
        n: usize,
    ) -> Result<WeightData, ModelError> {
        Ok(match self.matrix(name, k, n)? {
            WeightData::Q4K(_) | WeightData::Q6K(_) => {
                WeightData::Dequantized(Data::Owned(self.file.dequantize(name)?), ActRound::Q8K)
            }
            other => other,
        })
    }

    /// Where repacked weights come from or go to.
    pub(crate) fn packs(&self) -> &'f Packs {
        self.packs
    }

    /// Drops the file's resident pages of tensor `name` (its data now lives
    /// in a copy).
    pub(crate) fn release_tensor(&self, name: &str) {
        self.file.release_tensor(name);
    }

    /// Rows of an embedding table, `n_rows` rows of `dim`, kept in the
    /// file's type when the gather kernel reads it directly (Q8_0, F32),
    /// else converted to f32 (Q4_1 among them: no gather reads it).
    pub(crate) fn table(
        &self,
        name: &str,
        dim: usize,
        n_rows: usize,
    ) -> Result<WeightData, ModelError> {
        Ok(match self.matrix(name, dim, n_rows)? {
            w @ (WeightData::Q8_0(_) | WeightData::F32(_) | WeightData::Dequantized(..)) => w,
            _ => WeightData::Dequantized(Data::Owned(self.file.dequantize(name)?), ActRound::Q8_0),
        })
    }
}
