//! ggml quantization blocks, bit-compatible with GGUF tensor data.
//!
//! Every block is `#[repr(C)]` with a compile-time size check, so a tensor's
//! bytes can be viewed as a slice of blocks without copying.

use half::f16;

mod kx8;
pub use kx8::{
    BlockQ4_1x8, BlockQ4Kx8, BlockQ6Kx8, q4_1_values, q4_k_values, q6_k_values, repack_q4_1x8,
    repack_q4_1x8_into, repack_q4_kx8, repack_q4_kx8_into, repack_q6_kx8, repack_q6_kx8_into,
};

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

/// Rows interleaved in one [`BlockQ8_0x8`].
pub const Q8_0X8_ROWS: usize = 8;

/// One Q8_0 block of 8 consecutive weight rows, interleaved so that a
/// 32-byte load holds the same 4 columns of all 8 rows: `qs[q][4r + e]` is
/// row `r`'s value `4q + e` of this block, `d[r]` its scale. A matmul over
/// this layout produces 8 output columns per vector with no horizontal sums
/// and one scale multiply per 8 rows (see `kernels::MatmulQ8_0x8Fn`). Same
/// 34 bytes per row as [`BlockQ8_0`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8_0x8 {
    /// Scales of the 8 rows.
    pub d: [f16; Q8_0X8_ROWS],
    /// Quants, by groups of 4 columns.
    pub qs: [[i8; 32]; Q8_0X8_ROWS],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0x8>() == 8 * 34);

/// Repacks `n` rows of `k` Q8_0 values (row-major blocks, as GGUF stores
/// them) into groups of 8 rows: group `g`, block `b` lands at
/// `out[g · k/32 + b]`. A last group with fewer than 8 rows is padded with
/// zero rows (scale 0), whose outputs kernels never store.
pub fn repack_q8_0x8(w: &[BlockQ8_0], n: usize, k: usize) -> Vec<BlockQ8_0x8> {
    let mut out = vec![BlockQ8_0x8::default(); n.div_ceil(Q8_0X8_ROWS) * (k / QK8_0)];
    repack_q8_0x8_into(w, n, k, &mut out);
    out
}

/// [`repack_q8_0x8`] into `out` (`ceil(n/8) · k/32` blocks, zeroed: padding
/// rows are left as they are), split across the current rayon pool.
pub fn repack_q8_0x8_into(w: &[BlockQ8_0], n: usize, k: usize, out: &mut [BlockQ8_0x8]) {
    kx8::repack_groups(w, (n, k, QK8_0), out, |src, r, blk| {
        blk.d[r] = src.d;
        for (q, quad) in blk.qs.iter_mut().zip(src.qs.as_chunks::<4>().0) {
            q[4 * r..4 * r + 4].copy_from_slice(quad);
        }
    });
}

/// Elements per Q4_0 block.
pub const QK4_0: usize = 32;
/// Elements per Q4_1 block.
pub const QK4_1: usize = 32;
/// Elements per Q5_0 block.
pub const QK5_0: usize = 32;
/// Elements per k-quant super-block (`QK_K`).
pub const QK_K: usize = 256;
/// Bytes of the packed 6-bit scales and mins of Q4_K and Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// Q4_0: 32 4-bit values and one f16 scale; `x = d * (q - 8)`.
///
/// Byte `j` holds element `j` in its low nibble and element `j + 16` in its
/// high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Packed nibbles.
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// Q4_1: 32 4-bit values, an f16 scale and an f16 minimum;
/// `x = d * q + m`. Nibbles are packed as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (the value of `q = 0`).
    pub m: f16,
    /// Packed nibbles.
    pub qs: [u8; QK4_1 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// Q5_0: 32 5-bit values and one f16 scale; `x = d * (q - 16)`.
///
/// Low 4 bits as in Q4_0; bit 4 of element `j` is bit `j` of `qh` (read as a
/// little-endian u32).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits of the 32 values.
    pub qh: [u8; 4],
    /// Packed low nibbles.
    pub qs: [u8; QK5_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// Q4_K: a 256-value super-block of 8 sub-blocks of 32 4-bit values, each
/// sub-block with a 6-bit scale and 6-bit min; `x = d * sc * q - dmin * m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
    /// 8 scales and 8 mins, 6 bits each (see [`scale_min_k4`]).
    pub scales: [u8; K_SCALE_SIZE],
    /// Packed nibbles: 4 groups of 32 bytes, each holding two sub-blocks.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

impl Default for BlockQ4K {
    fn default() -> Self {
        BlockQ4K {
            d: f16::ZERO,
            dmin: f16::ZERO,
            scales: [0; K_SCALE_SIZE],
            qs: [0; QK_K / 2],
        }
    }
}

/// Q5_K: as Q4_K with a fifth bit per value in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
    /// 8 scales and 8 mins, 6 bits each (see [`scale_min_k4`]).
    pub scales: [u8; K_SCALE_SIZE],
    /// Fifth bits: bit `2g` / `2g+1` of byte `l` for the low / high nibble
    /// of group `g`, position `l`.
    pub qh: [u8; QK_K / 8],
    /// Packed low nibbles.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

impl Default for BlockQ5K {
    fn default() -> Self {
        BlockQ5K {
            d: f16::ZERO,
            dmin: f16::ZERO,
            scales: [0; K_SCALE_SIZE],
            qh: [0; QK_K / 8],
            qs: [0; QK_K / 2],
        }
    }
}

/// Q6_K: a 256-value super-block of 16 sub-blocks of 16 6-bit values, each
/// with an i8 scale; `x = d * scale * (q - 32)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6K {
    /// Low 4 bits of the values.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the values.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

impl Default for BlockQ6K {
    fn default() -> Self {
        BlockQ6K {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales: [0; QK_K / 16],
            d: f16::ZERO,
        }
    }
}

/// Checks `out` holds exactly `block` values per block.
fn check_len(n_blocks: usize, block: usize, out: &[f32]) {
    assert_eq!(
        out.len(),
        n_blocks * block,
        "output length must be {block} x blocks"
    );
}

/// Dequantizes Q4_0 blocks: `y[j] = d * ((qs[j] & 15) - 8)`,
/// `y[j + 16] = d * ((qs[j] >> 4) - 8)`.
pub fn dequantize_row_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) {
    check_len(blocks.len(), QK4_0, out);
    for (b, ys) in blocks.iter().zip(out.chunks_exact_mut(QK4_0)) {
        let d = b.d.to_f32();
        let (lo, hi) = ys.split_at_mut(QK4_0 / 2);
        for ((&q, l), h) in b.qs.iter().zip(lo).zip(hi) {
            *l = d * (i32::from(q & 0x0f) - 8) as f32;
            *h = d * (i32::from(q >> 4) - 8) as f32;
        }
    }
}

/// Dequantizes Q4_1 blocks: `y[j] = d * (qs[j] & 15) + m`,
/// `y[j + 16] = d * (qs[j] >> 4) + m`.
pub fn dequantize_row_q4_1(blocks: &[BlockQ4_1], out: &mut [f32]) {
    check_len(blocks.len(), QK4_1, out);
    for (b, ys) in blocks.iter().zip(out.chunks_exact_mut(QK4_1)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        let (lo, hi) = ys.split_at_mut(QK4_1 / 2);
        for ((&q, l), h) in b.qs.iter().zip(lo).zip(hi) {
            *l = d * f32::from(q & 0x0f) + m;
            *h = d * f32::from(q >> 4) + m;
        }
    }
}

/// Dequantizes Q5_0 blocks: as Q4_0 with bit 4 of element `j` from bit `j`
/// of `qh`, and `- 16` instead of `- 8`.
pub fn dequantize_row_q5_0(blocks: &[BlockQ5_0], out: &mut [f32]) {
    check_len(blocks.len(), QK5_0, out);
    for (b, ys) in blocks.iter().zip(out.chunks_exact_mut(QK5_0)) {
        let d = b.d.to_f32();
        for (y, q) in ys.iter_mut().zip(q5_0_values(b)) {
            *y = d * f32::from(q);
        }
    }
}

/// The 32 values `q - 16` of a Q5_0 block, in order.
fn q5_0_values(b: &BlockQ5_0) -> [i8; QK5_0] {
    let qh = u32::from_le_bytes(b.qh);
    let mut out = [0i8; QK5_0];
    for (j, &q) in b.qs.iter().enumerate() {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        out[j] = ((u32::from(q & 0x0f) | h0) as i32 - 16) as i8;
        out[j + QK5_0 / 2] = ((u32::from(q >> 4) | h1) as i32 - 16) as i8;
    }
    out
}

/// Re-encodes Q5_0 blocks as Q8_0 without loss: a Q5_0 value `q - 16` is
/// an int8 in -16..=15 and the block keeps its f16 scale, so every product
/// with a Q8_0 activation block is the same integer sum times the same
/// scales. Lets Q5_0 weights run on the (faster) Q8_0 kernels.
pub fn q5_0_to_q8_0(blocks: &[BlockQ5_0]) -> Vec<BlockQ8_0> {
    const _: () = assert!(QK5_0 == QK8_0);
    blocks
        .iter()
        .map(|b| BlockQ8_0 {
            d: b.d,
            qs: q5_0_values(b),
        })
        .collect()
}

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes of Q4_K /
/// Q5_K: sub-blocks 0-3 keep their 6 bits in the low bits of bytes `j` and
/// `j + 4`; sub-blocks 4-7 split theirs between a nibble of byte `j + 4` and
/// the top two bits of bytes `j - 4` and `j`.
pub fn scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Dequantizes Q4_K blocks. Each group of 64 outputs uses 32 bytes of `qs`:
/// low nibbles for the first 32 values (sub-block `2g`), high nibbles for the
/// next 32 (sub-block `2g + 1`); `y = d * sc * q - dmin * m`.
pub fn dequantize_row_q4_k(blocks: &[BlockQ4K], out: &mut [f32]) {
    check_len(blocks.len(), QK_K, out);
    for (b, ys) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        dequantize_k4_super_block((b.d, b.dmin), &b.scales, &b.qs, None, ys);
    }
}

/// Dequantizes Q5_K blocks: as Q4_K, plus 16 when the value's bit in `qh`
/// is set (bit `2g` for the low nibbles of group `g`, `2g + 1` for the high).
pub fn dequantize_row_q5_k(blocks: &[BlockQ5K], out: &mut [f32]) {
    check_len(blocks.len(), QK_K, out);
    for (b, ys) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        dequantize_k4_super_block((b.d, b.dmin), &b.scales, &b.qs, Some(&b.qh), ys);
    }
}

/// One Q4_K super-block, or a Q5_K one when `qh` gives the fifth bits:
/// the two formats share their scales, mins and nibble layout.
fn dequantize_k4_super_block(
    (d, dmin): (f16, f16),
    scales: &[u8; K_SCALE_SIZE],
    qs: &[u8],
    qh: Option<&[u8; QK_K / 8]>,
    ys: &mut [f32],
) {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    for (g, (qs, ys)) in qs.chunks_exact(32).zip(ys.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let (lo, hi) = ys.split_at_mut(32);
        for (l, (&q, (yl, yh))) in qs.iter().zip(lo.iter_mut().zip(hi)).enumerate() {
            // The fifth bit adds 16 (Q5_K); Q4_K has none.
            let h = qh.map_or(0, |qh| qh[l] >> (2 * g));
            *yl = d1 * f32::from((q & 0x0f) + ((h & 1) << 4)) - m1;
            *yh = d2 * f32::from((q >> 4) + ((h >> 1 & 1) << 4)) - m2;
        }
    }
}

/// Dequantizes Q6_K blocks. Each half (128 outputs) uses 64 bytes of `ql`,
/// 32 of `qh` and 8 scales; output `32k + l` (k = 0..4) takes the low (k
/// even) or high (k odd) nibble of `ql[l + 32 * (k & 1)]`, bits `2k..2k+2`
/// of `qh[l]` on top, and scale `l / 16 + 2k`; `y = d * scale * (q - 32)`.
pub fn dequantize_row_q6_k(blocks: &[BlockQ6K], out: &mut [f32]) {
    check_len(blocks.len(), QK_K, out);
    for (b, ys) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for half in 0..2 {
            let ql = &b.ql[64 * half..64 * half + 64];
            let qh = &b.qh[32 * half..32 * half + 32];
            let sc = &b.scales[8 * half..8 * half + 8];
            let ys = &mut ys[128 * half..128 * half + 128];
            for l in 0..32 {
                let is = l / 16;
                let q = [
                    (ql[l] & 0x0f) | ((qh[l] & 3) << 4),
                    (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4),
                    (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                    (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                ];
                for (k, &qk) in q.iter().enumerate() {
                    let s = f32::from(sc[is + 2 * k]);
                    ys[l + 32 * k] = d * s * (i32::from(qk) - 32) as f32;
                }
            }
        }
    }
}

/// Q8_K: the activation format that K-quant weights are multiplied with:
/// 256 int8 values, an f32 scale, and the sums of each 16 values (so the
/// Q4_K mins and the Q6_K offset of 32 cost one small dot per block).
/// Layout as ggml's `block_q8_K`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    /// Scale: `x[i] ≈ d * qs[i]` (negative when the largest-magnitude value is positive).
    pub d: f32,
    /// Quantized values in `[-127, 127]`.
    pub qs: [i8; QK_K],
    /// `bsums[j] = Σ qs[16j .. 16j + 16]`.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// Quantizes `x` (a multiple of 256 values) into Q8_K blocks exactly as
/// ggml's `quantize_row_q8_K_ref` does: `max` is the first value of largest
/// magnitude, `iscale = -127 / max` (f32), `q = min(127, nearest(iscale·x))`
/// rounding ties to even (ggml's `nearest_int` magic-number trick, exact for
/// these magnitudes), `d = 1 / iscale`. An all-zero block gets `d = 0` and
/// zero quants and sums (ggml leaves its sums unwritten there).
///
/// Older ggml used `-128 / max`; it changed to `-127` for IQ2_XXS, and the
/// generated `quantize_q8_k` kernels are tested bit-for-bit against this.
pub fn quantize_row_q8_k_reference(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * QK_K, "length must be 256 x blocks");
    for (block, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xs {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *block = BlockQ8K::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in block.qs.iter_mut().zip(xs) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (s, qs) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
            *s = qs.iter().map(|&q| i16::from(q)).sum();
        }
        block.d = 1.0 / iscale;
    }
}

/// Dequantizes Q8_K blocks: `y = d * q`.
pub fn dequantize_row_q8_k(blocks: &[BlockQ8K], out: &mut [f32]) {
    check_len(blocks.len(), QK_K, out);
    for (b, ys) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        for (y, &q) in ys.iter_mut().zip(&b.qs) {
            *y = b.d * f32::from(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_dequantizes_low_nibbles_first_then_high_plus_the_minimum() {
        let b = BlockQ4_1 {
            d: f16::from_f32(0.5),
            m: f16::from_f32(-3.0),
            qs: std::array::from_fn(|j| (j as u8) | (15 - j as u8) << 4),
        };
        let mut y = [0.0f32; QK4_1];
        dequantize_row_q4_1(&[b], &mut y);
        for j in 0..16 {
            assert_eq!(y[j], 0.5 * j as f32 - 3.0);
            assert_eq!(y[j + 16], 0.5 * (15 - j) as f32 - 3.0);
        }
    }

    #[test]
    fn q5_0_as_q8_0_dequantizes_to_the_same_values() {
        // Every 5-bit value in both halves, high bits from `qh`, two scales.
        let blocks: Vec<BlockQ5_0> = (0..64u32)
            .map(|i| BlockQ5_0 {
                d: f16::from_f32(if i % 2 == 0 { 0.013 } else { -2.5 }),
                qh: (i.wrapping_mul(0x9e37_79b9)).to_le_bytes(),
                qs: std::array::from_fn(|j| (i as u8).wrapping_mul(37).wrapping_add(j as u8 * 11)),
            })
            .collect();
        let (mut a, mut b) = (vec![0.0; 64 * 32], vec![0.0; 64 * 32]);
        dequantize_row_q5_0(&blocks, &mut a);
        dequantize_row_q8_0(&q5_0_to_q8_0(&blocks), &mut b);
        assert_eq!(a, b);
        let all: std::collections::BTreeSet<i8> =
            q5_0_to_q8_0(&blocks).iter().flat_map(|b| b.qs).collect();
        assert_eq!(all, (-16..=15).collect());
    }

    /// ggml's `nearest_int`: add 1.5·2^23 and read the low mantissa bits.
    fn ggml_nearest_int(f: f32) -> i32 {
        let v = f + 12_582_912.0;
        (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
    }

    #[test]
    fn q8_k_rounds_ties_to_even_like_ggml() {
        // max = -127 gives iscale = 1 exactly, so x keeps its .5 ties.
        let mut x = [0.0f32; QK_K];
        x[0] = -127.0;
        let ties = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 3.5, 4.5];
        x[1..=ties.len()].copy_from_slice(&ties);
        let mut b = [BlockQ8K::default()];
        quantize_row_q8_k_reference(&x, &mut b);
        assert_eq!(b[0].d, 1.0);
        assert_eq!(&b[0].qs[..11], &[-127, 0, 2, 2, 0, -2, -2, 126, -126, 4, 4]);
        for (&v, &q) in x.iter().zip(&b[0].qs) {
            assert_eq!(i32::from(q), ggml_nearest_int(v));
        }
        let s: i16 = b[0].qs[..16].iter().map(|&q| i16::from(q)).sum();
        assert_eq!(b[0].bsums[0], s);
    }

    #[test]
    fn q8_k_sign_of_first_largest_value() {
        // +3 comes before -3: iscale = -127/3, so +3 -> -127 and -3 -> 127.
        let mut x = [0.0f32; QK_K];
        x[5] = 3.0;
        x[9] = -3.0;
        x[10] = 1.0;
        let mut b = [BlockQ8K::default()];
        quantize_row_q8_k_reference(&x, &mut b);
        assert_eq!((b[0].qs[5], b[0].qs[9]), (-127, 127));
        assert_eq!(b[0].d, 1.0 / (-127.0f32 / 3.0));
        assert_eq!(i32::from(b[0].qs[10]), ggml_nearest_int(-127.0 / 3.0));
        x[5] = -3.0;
        x[9] = 3.0;
        quantize_row_q8_k_reference(&x, &mut b);
        // The first largest value always maps to -127; the sign moves to d.
        assert_eq!((b[0].qs[5], b[0].qs[9]), (-127, 127));
        assert_eq!(b[0].d, 1.0 / (127.0f32 / 3.0));
    }

    #[test]
    fn q8_k_zero_block_and_sums() {
        let mut x = vec![0.0f32; 2 * QK_K];
        for (i, v) in x[QK_K..].iter_mut().enumerate() {
            *v = (i as f32 - 100.0) * 0.37;
        }
        let mut b = [BlockQ8K::default(); 2];
        b[0].bsums[3] = 7;
        quantize_row_q8_k_reference(&x, &mut b);
        assert_eq!(b[0], BlockQ8K::default());
        for (j, s) in b[1].bsums.iter().enumerate() {
            let want: i16 = b[1].qs[16 * j..16 * j + 16]
                .iter()
                .map(|&q| i16::from(q))
                .sum();
            assert_eq!(*s, want);
        }
        let mut y = vec![0.0; 2 * QK_K];
        dequantize_row_q8_k(&b, &mut y);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= 0.5 * 155.0 * 0.37 / 127.0 + 1e-6);
        }
    }

    #[test]
    fn repack_q8_0x8_places_every_value() {
        // 11 rows (one full group, one padded) of 64 values.
        let (n, k) = (11, 64);
        let w: Vec<BlockQ8_0> = (0..n * 2)
            .map(|i| BlockQ8_0 {
                d: f16::from_f32(i as f32 + 1.0),
                qs: std::array::from_fn(|e| (i * 7 + e) as i8),
            })
            .collect();
        let p = repack_q8_0x8(&w, n, k);
        assert_eq!(p.len(), 2 * 2);
        for row in 0..16 {
            for b in 0..2 {
                let blk = &p[(row / 8) * 2 + b];
                let r = row % 8;
                for e in 0..32 {
                    let got = blk.qs[e / 4][4 * r + e % 4];
                    let want = if row < n { w[row * 2 + b].qs[e] } else { 0 };
                    assert_eq!(got, want, "row {row} block {b} value {e}");
                }
                let d = if row < n { w[row * 2 + b].d } else { f16::ZERO };
                assert_eq!(blk.d[r], d);
            }
        }
    }

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
