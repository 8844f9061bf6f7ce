//! Q4_K, Q6_K and Q4_1 weights repacked into groups of 8 rows, as
//! [`BlockQ8_0x8`](super::BlockQ8_0x8) does for Q8_0: one 32-byte load holds
//! the same 4 columns of all 8 rows, so an int8 step yields the 8 rows'
//! partial dots in one vector (no horizontal sums, no per-row unpacking
//! repeated for every token), and the sub-block scales of the 8 rows are one
//! vector too. Values keep their bits (4 for Q4_K and Q4_1, 6 for Q6_K);
//! only the K-quant scales are stored decoded, so the copy is as exact as
//! the original.
//!
//! Within a 256-value super-block, *quad* `q` of a 32-value chunk means
//! values `4q .. 4q + 4` of it, and byte `4r + e` of a 32-byte row of quads
//! belongs to row `r` of the group, value `e` of the quad.

use half::f16;
use rayon::prelude::*;

use super::{BlockQ4_1, BlockQ4K, BlockQ6K, Q8_0X8_ROWS, QK_K, QK4_1, scale_min_k4};

/// One Q4_K super-block of 8 consecutive weight rows. Row `r`'s value
/// `32s + 4q + e` (sub-block `s`, quad `q`) is nibble `q % 2` (low, high)
/// of `qs[4s + q/2][4r + e]`; its weight is `d·sc·v - dmin·m`. 1248 bytes
/// for the 8 rows' 1152 (the mins are kept as int16 pairs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4Kx8 {
    /// Super-block scales `d` of the 8 rows.
    pub d: [f16; Q8_0X8_ROWS],
    /// Super-block min scales, negated (`-dmin`): the mins are subtracted.
    pub neg_dmin: [f16; Q8_0X8_ROWS],
    /// `sc[s][r]`: the 6-bit scale of sub-block `s` of row `r`.
    pub sc: [[i8; Q8_0X8_ROWS]; 8],
    /// `mins[t][2r + h]`: the 6-bit min of sub-block `2t + h` of row `r`
    /// (pairs, for one int16 multiply-add with two sub-block sums).
    pub mins: [[i16; 2 * Q8_0X8_ROWS]; 4],
    /// Packed values (see above).
    pub qs: [[u8; 32]; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ4Kx8>() == 1248);

/// One Q6_K super-block of 8 consecutive weight rows. Row `r`'s value
/// `16s + 4j + e` (sub-block `s` of 16 values, quad `j`) is nibble `j % 2`
/// of `ql[2s + j/2][4r + e]` plus bits `2j .. 2j + 2` of `qh[s][4r + e]`
/// as bits 4-5; its weight is `d·sc·(v - 32)`. Same 1680 bytes as 8 rows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ6Kx8 {
    /// Super-block scales of the 8 rows.
    pub d: [f16; Q8_0X8_ROWS],
    /// `sc[s][r]`: the scale of sub-block `s` of row `r`.
    pub sc: [[i8; Q8_0X8_ROWS]; 16],
    /// Low 4 bits (see above).
    pub ql: [[u8; 32]; 32],
    /// High 2 bits (see above).
    pub qh: [[u8; 32]; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ6Kx8>() == 1680);

/// One Q4_1 block (32 values) of 8 consecutive weight rows. Row `r`'s value
/// `4q + e` (quad `q`) is nibble `q % 2` (low, high) of `qs[q / 2][4r + e]`,
/// the layout of one Q4_K sub-block in [`BlockQ4Kx8`]: one 32-byte load and
/// a mask or a shift give two quads of the 8 rows as unsigned bytes, which
/// the unsigned × signed int8 dot (`vpdpbusd`, `vpmaddubsw`) takes as they
/// are. Its weight is `d·v + m`. The same 160 bytes as the 8 rows, the same
/// bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_1x8 {
    /// Scales `d` of the 8 rows.
    pub d: [f16; Q8_0X8_ROWS],
    /// Minimums `m` of the 8 rows (the weight of `v = 0`).
    pub m: [f16; Q8_0X8_ROWS],
    /// Packed values (see above).
    pub qs: [[u8; 32]; 4],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1x8>() == 8 * 20);

/// The 32 unsigned 4-bit values of a Q4_1 block, in order: the low nibbles
/// of `qs` are values 0..16, the high ones 16..32.
pub fn q4_1_values(b: &BlockQ4_1) -> [u8; QK4_1] {
    std::array::from_fn(|v| (b.qs[v % 16] >> (4 * (v / 16))) & 0x0f)
}

/// The 256 unsigned 4-bit values of a Q4_K block, in order.
pub fn q4_k_values(b: &BlockQ4K) -> [u8; QK_K] {
    std::array::from_fn(|v| {
        let (g, s, l) = (v / 64, (v / 32) % 2, v % 32);
        (b.qs[32 * g + l] >> (4 * s)) & 0x0f
    })
}

/// The 256 unsigned 6-bit values (`q + 32`) of a Q6_K block, in order:
/// value `128h + 32k + l` takes nibble `k / 2` of `ql[64h + 32(k % 2) + l]`
/// and bits `2k .. 2k + 2` of `qh[32h + l]`.
pub fn q6_k_values(b: &BlockQ6K) -> [u8; QK_K] {
    std::array::from_fn(|v| {
        let (h, k, l) = (v / 128, (v / 32) % 4, v % 32);
        let lo = (b.ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0f;
        let hi = (b.qh[32 * h + l] >> (2 * k)) & 3;
        lo | (hi << 4)
    })
}

/// Repacks `n` rows of `k` values (row-major blocks of `qk` values, as GGUF
/// stores them) into groups of 8 rows: group `g`, block `b` lands at
/// `out[g · k/qk + b]`, written by `put(source block, row in group, group
/// block)`. Padding rows of a last short group stay as `out` holds them
/// (zeroed: scale 0), and kernels never store their outputs. Split across
/// the current rayon pool.
pub(crate) fn repack_groups<S: Sync, D: Send>(
    w: &[S],
    (n, k, qk): (usize, usize, usize),
    out: &mut [D],
    put: impl Fn(&S, usize, &mut D) + Sync,
) {
    assert!(
        k.is_multiple_of(qk),
        "row length {k} is not a multiple of {qk}"
    );
    let kb = k / qk;
    assert_eq!(w.len(), n * kb, "weight is not {n} rows of {k}");
    assert_eq!(
        out.len(),
        n.div_ceil(Q8_0X8_ROWS) * kb,
        "output is not {n} rows of {k} in groups"
    );
    if kb == 0 {
        return;
    }
    out.par_chunks_exact_mut(kb)
        .enumerate()
        .for_each(|(g, dst)| {
            for r in 0..Q8_0X8_ROWS.min(n - g * Q8_0X8_ROWS) {
                let row = &w[(g * Q8_0X8_ROWS + r) * kb..][..kb];
                for (blk, src) in dst.iter_mut().zip(row) {
                    put(src, r, blk);
                }
            }
        });
}

/// [`BlockQ4Kx8`] groups of `n` rows of `k` Q4_K values into `out`
/// (`ceil(n/8) · k/256` blocks, zeroed), split across the rayon pool.
pub fn repack_q4_kx8_into(w: &[BlockQ4K], n: usize, k: usize, out: &mut [BlockQ4Kx8]) {
    repack_groups(w, (n, k, QK_K), out, |src, r, blk| {
        blk.d[r] = src.d;
        blk.neg_dmin[r] = -src.dmin;
        for s in 0..8 {
            let (sc, m) = scale_min_k4(s, &src.scales);
            blk.sc[s][r] = sc as i8;
            blk.mins[s / 2][2 * r + s % 2] = i16::from(m);
        }
        for (v, &q) in q4_k_values(src).iter().enumerate() {
            let (s, quad, e) = (v / 32, (v / 4) % 8, v % 4);
            blk.qs[4 * s + quad / 2][4 * r + e] |= q << (4 * (quad % 2));
        }
    });
}

/// [`BlockQ6Kx8`] groups of `n` rows of `k` Q6_K values into `out`
/// (`ceil(n/8) · k/256` blocks, zeroed), split across the rayon pool.
pub fn repack_q6_kx8_into(w: &[BlockQ6K], n: usize, k: usize, out: &mut [BlockQ6Kx8]) {
    repack_groups(w, (n, k, QK_K), out, |src, r, blk| {
        blk.d[r] = src.d;
        for (s, &sc) in src.scales.iter().enumerate() {
            blk.sc[s][r] = sc;
        }
        for (v, &q) in q6_k_values(src).iter().enumerate() {
            let (s, quad, e) = (v / 16, (v / 4) % 4, v % 4);
            blk.ql[2 * s + quad / 2][4 * r + e] |= (q & 0x0f) << (4 * (quad % 2));
            blk.qh[s][4 * r + e] |= (q >> 4) << (2 * quad);
        }
    });
}

/// [`BlockQ4_1x8`] groups of `n` rows of `k` Q4_1 values into `out`
/// (`ceil(n/8) · k/32` blocks, zeroed), split across the rayon pool.
pub fn repack_q4_1x8_into(w: &[BlockQ4_1], n: usize, k: usize, out: &mut [BlockQ4_1x8]) {
    repack_groups(w, (n, k, QK4_1), out, |src, r, blk| {
        blk.d[r] = src.d;
        blk.m[r] = src.m;
        for (v, &q) in q4_1_values(src).iter().enumerate() {
            let (quad, e) = (v / 4, v % 4);
            blk.qs[quad / 2][4 * r + e] |= q << (4 * (quad % 2));
        }
    });
}

/// [`repack_q4_1x8_into`] into a new vector.
pub fn repack_q4_1x8(w: &[BlockQ4_1], n: usize, k: usize) -> Vec<BlockQ4_1x8> {
    let mut out = vec![BlockQ4_1x8::default(); n.div_ceil(Q8_0X8_ROWS) * (k / QK4_1)];
    repack_q4_1x8_into(w, n, k, &mut out);
    out
}

/// [`repack_q4_kx8_into`] into a new vector.
pub fn repack_q4_kx8(w: &[BlockQ4K], n: usize, k: usize) -> Vec<BlockQ4Kx8> {
    let mut out = vec![BlockQ4Kx8::default(); n.div_ceil(Q8_0X8_ROWS) * (k / QK_K)];
    repack_q4_kx8_into(w, n, k, &mut out);
    out
}

/// [`repack_q6_kx8_into`] into a new vector.
pub fn repack_q6_kx8(w: &[BlockQ6K], n: usize, k: usize) -> Vec<BlockQ6Kx8> {
    let mut out = vec![BlockQ6Kx8::default(); n.div_ceil(Q8_0X8_ROWS) * (k / QK_K)];
    repack_q6_kx8_into(w, n, k, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{dequantize_row_q4_1, dequantize_row_q4_k, dequantize_row_q6_k};

    fn bytes(seed: u32, len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect()
    }

    /// Weight of row `r`, value `v` of group block `blk`, decoded from the
    /// x8 layout as the kernels read it.
    fn q4x8_weight(blk: &BlockQ4Kx8, r: usize, v: usize) -> f32 {
        let (s, quad, e) = (v / 32, (v / 4) % 8, v % 4);
        let q = (blk.qs[4 * s + quad / 2][4 * r + e] >> (4 * (quad % 2))) & 0x0f;
        let m = blk.mins[s / 2][2 * r + s % 2];
        let (d, nd) = (blk.d[r].to_f32(), blk.neg_dmin[r].to_f32());
        d * f32::from(blk.sc[s][r]) * f32::from(q) + nd * f32::from(m)
    }

    fn q6x8_weight(blk: &BlockQ6Kx8, r: usize, v: usize) -> f32 {
        let (s, quad, e) = (v / 16, (v / 4) % 4, v % 4);
        let lo = (blk.ql[2 * s + quad / 2][4 * r + e] >> (4 * (quad % 2))) & 0x0f;
        let hi = (blk.qh[s][4 * r + e] >> (2 * quad)) & 3;
        let q = i32::from(lo | (hi << 4)) - 32;
        blk.d[r].to_f32() * f32::from(blk.sc[s][r]) * q as f32
    }

    /// Every weight of 11 rows (a short last group) of 2 super-blocks reads
    /// back as the reference dequantization gives it.
    #[test]
    fn repacked_k_quants_hold_the_same_weights() {
        let (n, k) = (11usize, 512usize);
        let kb = k / QK_K;
        let raw = bytes(7, n * kb * 210);
        let q4: Vec<BlockQ4K> = (0..n * kb)
            .map(|i| {
                let b = &raw[i * 144..];
                BlockQ4K {
                    d: f16::from_f32(0.01 + i as f32 * 1e-3),
                    dmin: f16::from_f32(0.02 - i as f32 * 1e-4),
                    scales: b[..12].try_into().unwrap(),
                    qs: b[12..140].try_into().unwrap(),
                }
            })
            .collect();
        let q6: Vec<BlockQ6K> = (0..n * kb)
            .map(|i| {
                let b = &raw[i * 210..];
                BlockQ6K {
                    ql: b[..128].try_into().unwrap(),
                    qh: b[128..192].try_into().unwrap(),
                    scales: std::array::from_fn(|j| b[192 + j] as i8),
                    d: f16::from_f32(-0.003 + i as f32 * 1e-4),
                }
            })
            .collect();
        let (mut want4, mut want6) = (vec![0.0; n * k], vec![0.0; n * k]);
        dequantize_row_q4_k(&q4, &mut want4);
        dequantize_row_q6_k(&q6, &mut want6);
        let (x4, x6) = (repack_q4_kx8(&q4, n, k), repack_q6_kx8(&q6, n, k));
        assert_eq!((x4.len(), x6.len()), (2 * kb, 2 * kb));
        for row in 0..n {
            let (g, r) = (row / 8, row % 8);
            for c in 0..k {
                let (b, v) = (c / QK_K, c % QK_K);
                let (w4, w6) = (want4[row * k + c], want6[row * k + c]);
                let (g4, g6) = (
                    q4x8_weight(&x4[g * kb + b], r, v),
                    q6x8_weight(&x6[g * kb + b], r, v),
                );
                assert!((g4 - w4).abs() <= 1e-6 * w4.abs().max(1.0), "q4 {row} {c}");
                assert!((g6 - w6).abs() <= 1e-6 * w6.abs().max(1.0), "q6 {row} {c}");
            }
        }
        // Padding rows stay zero.
        for blk in &x4[kb..] {
            assert!(blk.d[3..].iter().all(|d| *d == f16::ZERO));
        }
    }

    /// Every weight of 11 rows (a short last group) of 3 blocks reads back
    /// as the reference dequantization gives it, bit for bit.
    #[test]
    fn repacked_q4_1_holds_the_same_weights() {
        let (n, k) = (11usize, 96usize);
        let kb = k / QK4_1;
        let raw = bytes(3, n * kb * 16);
        let w: Vec<BlockQ4_1> = (0..n * kb)
            .map(|i| BlockQ4_1 {
                d: f16::from_f32(0.01 + i as f32 * 1e-3),
                m: f16::from_f32(-0.3 + i as f32 * 7e-3),
                qs: raw[i * 16..][..16].try_into().unwrap(),
            })
            .collect();
        let mut want = vec![0.0; n * k];
        dequantize_row_q4_1(&w, &mut want);
        let x = repack_q4_1x8(&w, n, k);
        assert_eq!(x.len(), 2 * kb);
        for row in 0..n {
            let (g, r) = (row / 8, row % 8);
            for c in 0..k {
                let blk = &x[g * kb + c / QK4_1];
                let (quad, e) = ((c % QK4_1) / 4, c % 4);
                let q = (blk.qs[quad / 2][4 * r + e] >> (4 * (quad % 2))) & 0x0f;
                let got = blk.d[r].to_f32() * f32::from(q) + blk.m[r].to_f32();
                assert_eq!(got.to_bits(), want[row * k + c].to_bits(), "{row} {c}");
            }
        }
        for blk in &x[kb..] {
            assert!(
                blk.d[3..]
                    .iter()
                    .chain(&blk.m[3..])
                    .all(|d| *d == f16::ZERO)
            );
            assert!(blk.qs.iter().all(|q| q[12..].iter().all(|&b| b == 0)));
        }
    }
}
