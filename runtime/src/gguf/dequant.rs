//! Tensor bytes to f32 through the scalar reference dequantizers of
//! [`crate::quant`].

use half::{bf16, f16};

use super::backing::{Plain, cast_slice, copy_to_vec};
use super::types::GgmlType;
use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5K, BlockQ6K, BlockQ8_0, dequantize_row_q4_0,
    dequantize_row_q4_1, dequantize_row_q4_k, dequantize_row_q5_0, dequantize_row_q5_k,
    dequantize_row_q6_k, dequantize_row_q8_0,
};

/// Whether [`dequantize`] handles `ty`.
pub(crate) fn supported(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q4_K | Q5_K | Q6_K
    )
}

/// Runs `f` on `bytes` viewed as `&[T]`, copying first if they are not
/// aligned for `T`; `None` if `bytes` is not a whole number of `T`.
fn with_slice<T: Plain + Default, R>(bytes: &[u8], f: impl FnOnce(&[T]) -> R) -> Option<R> {
    match cast_slice::<T>(bytes) {
        Some(s) => Some(f(s)),
        None => copy_to_vec::<T>(bytes).map(|v| f(&v)),
    }
}

/// Runs a block dequantizer over all of `bytes`.
fn blocks<T: Plain + Default>(
    bytes: &[u8],
    per_block: usize,
    row: fn(&[T], &mut [f32]),
) -> Option<Vec<f32>> {
    with_slice::<T, _>(bytes, |b| {
        let mut out = vec![0.0f32; b.len() * per_block];
        row(b, &mut out);
        out
    })
}

/// `bytes` of a tensor of type `ty` as f32; `None` for unsupported types or
/// a size that is not a whole number of blocks.
pub(crate) fn dequantize(ty: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    use crate::quant::{QK_K, QK4_0, QK4_1, QK5_0, QK8_0};
    match ty {
        GgmlType::F32 => with_slice::<f32, _>(bytes, <[f32]>::to_vec),
        GgmlType::F16 => with_slice::<f16, _>(bytes, |s| s.iter().map(|v| v.to_f32()).collect()),
        GgmlType::BF16 => with_slice::<bf16, _>(bytes, |s| s.iter().map(|v| v.to_f32()).collect()),
        GgmlType::Q8_0 => blocks::<BlockQ8_0>(bytes, QK8_0, dequantize_row_q8_0),
        GgmlType::Q4_0 => blocks::<BlockQ4_0>(bytes, QK4_0, dequantize_row_q4_0),
        GgmlType::Q4_1 => blocks::<BlockQ4_1>(bytes, QK4_1, dequantize_row_q4_1),
        GgmlType::Q5_0 => blocks::<BlockQ5_0>(bytes, QK5_0, dequantize_row_q5_0),
        GgmlType::Q4_K => blocks::<BlockQ4K>(bytes, QK_K, dequantize_row_q4_k),
        GgmlType::Q5_K => blocks::<BlockQ5K>(bytes, QK_K, dequantize_row_q5_k),
        GgmlType::Q6_K => blocks::<BlockQ6K>(bytes, QK_K, dequantize_row_q6_k),
        _ => None,
    }
}
