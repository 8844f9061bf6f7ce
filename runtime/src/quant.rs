//! ggml quantization blocks, bit-compatible with GGUF tensor data.
//!
//! Every block is `#[repr(C)]` with a compile-time size check, so a tensor's
//! bytes can be viewed as a slice of blocks without copying.

use half::f16;

/// Elements per Q8_0 block.
pub const QK8_0: usize = 32;

/// Q8_0: 32 signed bytes and one f16 scale; `x[i] = d * qs[i]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale: absmax / 127 of the 32 source values.
    pub d: f16,
    /// Quantized values.
    pub qs: [i8; QK8_0],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// Quantizes `x` (a multiple of 32 values) into Q8_0 blocks exactly as
/// llama.cpp's reference quantizer does: `d = absmax / 127` (stored as f16),
/// `q = round(x / d)` with ties away from zero, computed with the f32 `1/d`.
///
/// This is the bit-exact reference: generated quantize kernels and the
/// converter are tested against it.
pub fn quantize_row_q8_0_reference(x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(x.len(), out.len() * QK8_0, "length must be 32 x blocks");
    for (block, xs) in out.iter_mut().zip(x.chunks_exact(QK8_0)) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f16::from_f32(d);
        for (q, v) in block.qs.iter_mut().zip(xs) {
            // `f32::round` rounds half away from zero, as C's roundf does.
            *q = (v * id).round() as i8;
        }
    }
}

/// Dequantizes Q8_0 blocks into f32 values.
pub fn dequantize_row_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK8_0,
        "length must be 32 x blocks"
    );
    for (block, ys) in blocks.iter().zip(out.chunks_exact_mut(QK8_0)) {
        let d = block.d.to_f32();
        for (y, &q) in ys.iter_mut().zip(&block.qs) {
            *y = d * f32::from(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_ties_round_away_from_zero() {
        // absmax 127 gives d = 1 exactly, so x/d keeps the .5 ties.
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.5;
        x[4] = -0.5;
        let mut b = [BlockQ8_0::default()];
        quantize_row_q8_0_reference(&x, &mut b);
        assert_eq!(b[0].d.to_f32(), 1.0);
        assert_eq!(&b[0].qs[..5], &[127, 3, -3, 1, -1]);
    }

    #[test]
    fn q8_0_zero_block() {
        let x = [0.0f32; 32];
        let mut b = [BlockQ8_0::default()];
        quantize_row_q8_0_reference(&x, &mut b);
        assert_eq!(b[0].d.to_f32(), 0.0);
        assert!(b[0].qs.iter().all(|&q| q == 0));
    }
}
