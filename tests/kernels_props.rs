//! Every kernel of every ISA this CPU supports against the scalar kernels,
//! and the scalar kernels against plain f64 formulas, on random inputs and
//! awkward shapes (K not a multiple of 256, one row, one token, 513 tokens).

mod common;

use common::{assert_close, deq, q8, scalar, sets};
use kiln::runtime::kernels::{AttnShape, CacheAttn, Mask, MatMut, attention_scratch_len};
use kiln::runtime::quant::{BlockQ8_0, quantize_row_q8_0_reference, repack_q8_0x8};
use proptest::prelude::*;

/// f32 kernels that only reorder sums (norms, matmul_f32, rope, pooling):
/// a few hundred terms at f32 epsilon (1.2e-7) stay well under 1e-5 relative.
const F32_TOL: f32 = 1e-5;
/// Kernels through `exp` (GELU, softmax): the SIMD exp is a Cephes polynomial
/// (about 2 ulp) and tanh is `1 - 2/(e^{2x}+1)` (about 1e-7 absolute), then
/// multiplied by inputs of a few units.
const EXP_TOL: f32 = 2e-5;
/// Q8_0 matmul: block dots are exact int32 in every ISA; only the f32 sum of
/// `dw·dx·dot` over blocks is reordered, so the error is relative to the sum
/// of the terms' magnitudes.
const Q8_SUM_TOL: f32 = 1e-5;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        ..ProptestConfig::default()
    }
}

fn vecf(len: usize, mag: f32) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-mag..mag, len)
}

#[test]
fn quantize_is_bit_exact_with_reference() {
    let sets = sets("quantize");
    // Crafted: ties (absmax 127 makes d = 1, so x/d keeps .5), zeros, tiny
    // values (f16 subnormal scales), negative zero.
    let mut crafted = vec![0.0f32; 32 * 4];
    crafted[0] = 127.0;
    for (i, v) in [2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 126.5, -126.5]
        .iter()
        .enumerate()
    {
        crafted[1 + i] = *v;
    }
    for (i, v) in crafted[64..96].iter_mut().enumerate() {
        *v = (i as f32 - 16.0) * 1e-7;
    }
    crafted[96] = -0.0;
    for set in &sets {
        let mut got = vec![BlockQ8_0::default(); 4];
        set.quantize_q8_0(128)(&crafted, &mut got);
        assert_eq!(got, q8(&crafted), "{}", set.isa().name());
    }
    proptest!(cases(200), |(blocks in 1usize..40, mag in prop::sample::select(vec![1e-6f32, 1e-3, 1.0, 300.0]), seed in vecf(32 * 40, 1.0))| {
        let x: Vec<f32> = seed[..blocks * 32].iter().map(|v| v * mag).collect();
        let want = q8(&x);
        for set in &sets {
            for k in [blocks * 32, 768] {
                if !x.len().is_multiple_of(k) { continue; }
                let mut got = vec![BlockQ8_0::default(); blocks];
                set.quantize_q8_0(k)(&x, &mut got);
                prop_assert_eq!(&got, &want, "{}", set.isa().name());
            }
        }
    });
}

/// `out[i][j] = Σ_b dw·dx·dot` in f64, plus the magnitude bound of the terms.
fn q8_matmul_ref(w: &[BlockQ8_0], x: &[BlockQ8_0], m: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    let kb = x.len() / m;
    let mut out = vec![0.0; m * n];
    let mut mag = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut a) = (0.0f64, 0.0f64);
            for b in 0..kb {
                let (wb, xb) = (&w[j * kb + b], &x[i * kb + b]);
                let d = f64::from(wb.d.to_f32()) * f64::from(xb.d.to_f32());
                let dot: i32 = wb
                    .qs
                    .iter()
                    .zip(&xb.qs)
                    .map(|(&p, &q)| i32::from(p) * i32::from(q))
                    .sum();
                let abs: i32 = wb
                    .qs
                    .iter()
                    .zip(&xb.qs)
                    .map(|(&p, &q)| (i32::from(p) * i32::from(q)).abs())
                    .sum();
                s += d * f64::from(dot);
                a += d.abs() * f64::from(abs);
            }
            out[i * n + j] = s as f32;
            mag[i * n + j] = a as f32;
        }
    }
    (out, mag)
}

fn check_q8_matmul(
    m: usize,
    n: usize,
    k: usize,
    wv: &[f32],
    xv: &[f32],
    bias: Option<&[f32]>,
    accumulate: bool,
) -> Result<(), TestCaseError> {
    let w = q8(&wv[..n * k]);
    let x = q8(&xv[..m * k]);
    let (want, mag) = q8_matmul_ref(&w, &x, m, n);
    let init: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32 - 3.0).collect();
    let packed = repack_q8_0x8(&w, n, k);
    for (set, layout) in sets("matmul_q8_0")
        .into_iter()
        .flat_map(|s| [(s, "rows"), (s, "x8")])
    {
        let mut out = init.clone();
        let view = MatMut::new(&mut out, m, n, n);
        if layout == "rows" {
            set.matmul_q8_0(n, k)(&w, &x, bias, view, accumulate);
        } else {
            set.matmul_q8_0x8(n, k)(&packed, &x, bias, view, accumulate);
        }
        for i in 0..m * n {
            let mut e = want[i];
            if let Some(b) = bias {
                e += b[i % n];
            }
            if accumulate {
                e += init[i];
            }
            let tol = Q8_SUM_TOL * (mag[i] + e.abs() + 1.0);
            prop_assert!(
                (out[i] - e).abs() <= tol,
                "{} {layout} m={m} n={n} k={k} [{i}]: {} vs {e}",
                set.isa().name(),
                out[i]
            );
        }
    }
    Ok(())
}

#[test]
fn matmul_q8_0_matches_reference() {
    // Awkward generic shapes: one token, odd tokens, whole and partial token
    // tiles (4 and 8 tokens), K not a multiple of 256, n not a multiple of
    // the tile or panel widths (an odd last group of 16-row tiles).
    proptest!(cases(40), |(m in prop::sample::select(vec![1usize, 2, 3, 4, 5, 8, 9, 17]), n in 1usize..70, kb in 1usize..12, wv in vecf(70 * 12 * 32, 2.0), xv in vecf(17 * 12 * 32, 3.0), bias in vecf(70, 1.0), flags in 0u8..4)| {
        let b = (flags & 1 == 1).then_some(&bias[..n]);
        check_q8_matmul(m, n, kb * 32, &wv, &xv, b, flags & 2 == 2)?;
    });
}

#[test]
fn matmul_q8_0_table_shapes_and_513_tokens() {
    // Specialized variants (shapes from the table) at 1, 4 and 7 tokens, the
    // generic one on 513 tokens, and on rows longer than the stack keeps the
    // VNNI offset corrections for (`X8_BIAS_CAP`, 128 blocks).
    let mut state = 12345u32;
    let mut rand = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    };
    for (n, k, ms) in [
        (256usize, 768usize, &[1usize, 4, 7][..]),
        (384, 384, &[1, 5]),
        (768, 1152, &[1, 4]),
        (40, 96, &[513]),
        (24, 129 * 32, &[1, 5, 9]),
    ] {
        for &m in ms {
            let (wv, xv, bias) = (rand(n * k), rand(m * k), rand(n));
            check_q8_matmul(m, n, k, &wv, &xv, Some(&bias), m % 2 == 1).unwrap();
        }
    }
}

#[test]
fn matmul_q8_0_writes_column_blocks() {
    // Threads own column blocks of one output: the halves of a split view
    // must equal the whole.
    let (m, n, k) = (5usize, 256usize, 768usize);
    let wv: Vec<f32> = (0..n * k)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let xv: Vec<f32> = (0..m * k)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 20.0)
        .collect();
    let (w, x) = (q8(&wv), q8(&xv));
    let kb = k / 32;
    for set in sets("matmul_q8_0 split") {
        let mut whole = vec![0.0; m * n];
        set.matmul_q8_0(n, k)(&w, &x, None, MatMut::new(&mut whole, m, n, n), false);
        let mut split = vec![0.0; m * n];
        let (l, r) = MatMut::new(&mut split, m, n, n).split_cols(96);
        set.matmul_q8_0(96, k)(&w[..96 * kb], &x, None, l, false);
        set.matmul_q8_0(n - 96, k)(&w[96 * kb..], &x, None, r, false);
        assert_close("split", set.isa(), &split, &whole, 1e-6);
        // The same for 8-row groups: a block of 96 columns is 12 groups.
        let packed = repack_q8_0x8(&w, n, k);
        let mut split = vec![0.0; m * n];
        let (l, r) = MatMut::new(&mut split, m, n, n).split_cols(96);
        set.matmul_q8_0x8(96, k)(&packed[..12 * kb], &x, None, l, false);
        set.matmul_q8_0x8(n - 96, k)(&packed[12 * kb..], &x, None, r, false);
        assert_close("split x8", set.isa(), &split, &whole, 1e-5);
    }
}

#[test]
fn matmul_f32_matches_reference() {
    proptest!(cases(40), |(m in 1usize..6, n in 1usize..40, k in 1usize..300, wv in vecf(40 * 300, 1.0), xv in vecf(6 * 300, 1.0), bias in vecf(40, 1.0), acc in any::<bool>())| {
        let (w, x) = (&wv[..n * k], &xv[..m * k]);
        let mut want = vec![0.0f32; m * n];
        for i in 0..m { for j in 0..n {
            let s: f64 = (0..k).map(|t| f64::from(x[i * k + t]) * f64::from(w[j * k + t])).sum();
            want[i * n + j] = s as f32 + bias[j] + if acc { 1.0 } else { 0.0 };
        }}
        for set in sets("matmul_f32") {
            let mut out = vec![1.0; m * n];
            set.matmul_f32(n, k)(w, x, Some(&bias[..n]), MatMut::new(&mut out, m, n, n), acc);
            let scale = (k as f32).sqrt();
            assert_close("matmul_f32", set.isa(), &out, &want, F32_TOL * scale);
        }
    });
}

fn rms_ref(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let dim = w.len();
    x.chunks(dim)
        .flat_map(|r| {
            let ms: f64 = r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / dim as f64;
            let s = 1.0 / (ms + f64::from(eps)).sqrt();
            r.iter()
                .zip(w)
                .map(move |(v, w)| (f64::from(*v) * s * f64::from(*w)) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn norms_match_reference() {
    proptest!(cases(60), |(rows in 1usize..4, dim in prop::sample::select(vec![32usize, 96, 256, 384, 640, 768, 800]), xv in vecf(4 * 800, 3.0), wv in vecf(800, 2.0), bv in vecf(800, 1.0))| {
        let (x, w, b) = (&xv[..rows * dim], &wv[..dim], &bv[..dim]);
        let eps = 1e-6;
        let want = rms_ref(x, w, eps);
        let want_ln: Vec<f32> = x.chunks(dim).flat_map(|r| {
            let mean = r.iter().map(|v| f64::from(*v)).sum::<f64>() / dim as f64;
            let var = r.iter().map(|v| (f64::from(*v) - mean).powi(2)).sum::<f64>() / dim as f64;
            let inv = 1.0 / (var + f64::from(eps)).sqrt();
            r.iter().zip(w).zip(b).map(move |((v, w), b)| ((f64::from(*v) - mean) * inv * f64::from(*w) + f64::from(*b)) as f32).collect::<Vec<_>>()
        }).collect();
        for set in sets("norms") {
            let mut out = vec![0.0; x.len()];
            set.rms_norm(dim)(x, w, eps, &mut out);
            assert_close("rms_norm", set.isa(), &out, &want, F32_TOL);
            // Fused quantization equals quantizing this ISA's own output.
            let mut fused = vec![BlockQ8_0::default(); x.len() / 32];
            set.rms_norm_q8_0(dim)(x, w, eps, &mut fused);
            let mut sep = vec![BlockQ8_0::default(); x.len() / 32];
            quantize_row_q8_0_reference(&out, &mut sep);
            prop_assert_eq!(&fused, &sep, "rms_norm_q8_0/{}", set.isa().name());
            let mut ln = vec![0.0; x.len()];
            set.layer_norm(dim)(x, w, b, eps, &mut ln);
            assert_close("layer_norm", set.isa(), &ln, &want_ln, F32_TOL);
        }
    });
}

#[test]
fn rope_matches_reference() {
    proptest!(cases(40), |(rows in 1usize..5, heads in 1usize..4, hd in prop::sample::select(vec![8usize, 32, 64, 256, 20]), pos0 in 0usize..10, neox in any::<bool>(), xv in vecf(5 * 4 * 256, 2.0))| {
        let half = hd / 2;
        let npos = pos0 + rows;
        let (cos, sin): (Vec<f32>, Vec<f32>) = (0..npos * half).map(|i| {
            let (p, d) = (i / half, i % half);
            let th = p as f32 * 10000f32.powf(-2.0 * d as f32 / hd as f32);
            (th.cos(), th.sin())
        }).unzip();
        let x0 = &xv[..rows * heads * hd];
        let mut want = x0.to_vec();
        for (r, row) in want.chunks_mut(heads * hd).enumerate() {
            for h in row.chunks_mut(hd) {
                for i in 0..half {
                    let (a, b) = if neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
                    let (c, s) = (cos[(pos0 + r) * half + i], sin[(pos0 + r) * half + i]);
                    let (xa, xb) = (h[a], h[b]);
                    h[a] = xa * c - xb * s;
                    h[b] = xa * s + xb * c;
                }
            }
        }
        for set in sets("rope") {
            let mut x = x0.to_vec();
            set.rope(hd)(&mut x, heads, hd, pos0, &cos, &sin, neox);
            assert_close("rope", set.isa(), &x, &want, F32_TOL);
        }
    });
}

fn attention_ref(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: &AttnShape,
    rows: std::ops::Range<usize>,
) -> Vec<f32> {
    let (hd, nh, nkv, n) = (s.head_dim, s.n_head, s.n_head_kv, s.n_tokens);
    let mut out = Vec::new();
    for i in rows {
        for h in 0..nh {
            let kh = h / (nh / nkv);
            let allowed = |j: usize| match s.mask {
                Mask::Full => true,
                Mask::Window { radius } => i.abs_diff(j) <= radius,
                Mask::Causal => j <= i,
                Mask::CausalWindow { window } => j <= i && i - j < window,
            };
            let sc: Vec<(usize, f64)> = (0..n)
                .filter(|&j| allowed(j))
                .map(|j| {
                    let d: f64 = (0..hd)
                        .map(|t| {
                            f64::from(q[i * nh * hd + h * hd + t])
                                * f64::from(k[j * nkv * hd + kh * hd + t])
                        })
                        .sum();
                    (j, d * f64::from(s.scale))
                })
                .collect();
            let mx = sc.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = sc.iter().map(|p| (p.1 - mx).exp()).sum();
            for t in 0..hd {
                let o: f64 = sc
                    .iter()
                    .map(|&(j, d)| (d - mx).exp() / z * f64::from(v[j * nkv * hd + kh * hd + t]))
                    .sum();
                out.push(o as f32);
            }
        }
    }
    out
}

#[test]
fn attention_matches_reference() {
    proptest!(cases(40), |(n in 1usize..20, heads in prop::sample::select(vec![(1usize, 1usize), (3, 1), (4, 2), (2, 2)]), hd in prop::sample::select(vec![8usize, 32, 256, 12]), mask in 0usize..4, r in 0usize..6, qv in vecf(20 * 4 * 256, 1.5), kv in vecf(20 * 2 * 256, 1.5), vv in vecf(20 * 2 * 256, 2.0))| {
        let mask = [Mask::Full, Mask::Window { radius: r }, Mask::Causal, Mask::CausalWindow { window: r + 1 }][mask];
        let (nh, nkv) = heads;
        let shape = AttnShape { n_tokens: n, n_head: nh, n_head_kv: nkv, head_dim: hd, scale: 1.0 / (hd as f32).sqrt(), mask };
        let (q, k, v) = (&qv[..n * nh * hd], &kv[..n * nkv * hd], &vv[..n * nkv * hd]);
        let lo = n / 3;
        let want = attention_ref(q, k, v, &shape, lo..n);
        for set in sets("attention") {
            // One score row (query by query) and a tile's worth (tiled).
            for scratch_len in [n, attention_scratch_len(n, hd)] {
                let mut out = vec![0.0; (n - lo) * nh * hd];
                let mut scratch = vec![0.0; scratch_len];
                set.attention(hd)(q, k, v, &shape, lo..n, &mut out, &mut scratch);
                assert_close("attention", set.isa(), &out, &want, EXP_TOL);
            }
        }
    });
}

/// Long sequences: tiles cross key blocks, spans start unaligned, and every
/// mask clips a different part of them.
#[test]
fn attention_513_tokens_specialized() {
    let (n, hd) = (513usize, 256usize);
    let f = |i: usize, m: usize| ((i * m % 1009) as f32 - 504.0) / 300.0;
    let q: Vec<f32> = (0..n * 3 * hd).map(|i| f(i, 31)).collect();
    let k: Vec<f32> = (0..n * hd).map(|i| f(i, 17)).collect();
    let v: Vec<f32> = (0..n * hd).map(|i| f(i, 13)).collect();
    let masks = [
        Mask::Window { radius: 256 },
        Mask::Full,
        Mask::Causal,
        Mask::CausalWindow { window: 100 },
    ];
    for mask in masks {
        let shape = AttnShape {
            n_tokens: n,
            n_head: 3,
            n_head_kv: 1,
            head_dim: hd,
            scale: 1.0 / 16.0,
            mask,
        };
        for rows in [250..261, 0..13, 437..513] {
            let want = attention_ref(&q, &k, &v, &shape, rows.clone());
            for set in sets("attention 513") {
                for scratch_len in [n, attention_scratch_len(n, hd)] {
                    let mut out = vec![0.0; rows.len() * 3 * hd];
                    let mut scratch = vec![0.0; scratch_len];
                    set.attention(hd)(&q, &k, &v, &shape, rows.clone(), &mut out, &mut scratch);
                    assert_close("attention513", set.isa(), &out, &want, EXP_TOL);
                }
            }
        }
    }
}

/// Attention of `q`'s heads over rows `spans` of a cache, in f64.
fn attend_cache_ref(q: &[f32], k: &[f32], v: &[f32], at: &CacheAttn<'_>) -> Vec<f32> {
    let hd = at.head_dim;
    let rows: Vec<usize> = at.spans.iter().flat_map(|s| s.clone()).collect();
    let mut out = Vec::new();
    for qv in q.chunks_exact(hd) {
        let s: Vec<f64> = rows
            .iter()
            .map(|&j| {
                let d: f64 = (0..hd)
                    .map(|t| f64::from(qv[t]) * f64::from(k[j * at.stride + t]))
                    .sum();
                d * f64::from(at.scale)
            })
            .collect();
        let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = s.iter().map(|x| (x - mx).exp()).sum();
        for t in 0..hd {
            let o: f64 = rows
                .iter()
                .zip(&s)
                .map(|(&j, &d)| (d - mx).exp() / z * f64::from(v[j * at.stride + t]))
                .sum();
            out.push(o as f32);
        }
    }
    out
}

/// Runs `check(q, k, v, attn, what)` on the cache kernels' cases: random
/// queries over one span or a ring's two, on a KV head that is not the first
/// of its row (an offset slice), then Gemma-3-270M's shape (4 heads of 256
/// over one KV head, 700 rows, one span and a wrapped ring).
fn cache_cases(what: &str, check: impl Fn(&[f32], &[f32], &[f32], &CacheAttn<'_>, &str)) {
    proptest!(cases(40), |(nq in 1usize..6, hd in prop::sample::select(vec![8usize, 32, 256, 12]), n_kv in 1usize..3, slots in 1usize..40, a in 0usize..40, len in 1usize..40, qv in vecf(6 * 256, 1.5), kv in vecf(40 * 2 * 256, 1.5), vv in vecf(40 * 2 * 256, 2.0))| {
        let a = a % slots;
        let len = len.min(slots);
        let b = (a + len) % slots;
        let spans: Vec<_> = if a + len <= slots { std::iter::once(a..a + len).collect() } else { vec![a..slots, 0..b] };
        let stride = n_kv * hd;
        let kh = n_kv - 1;
        let (k, v) = (&kv[kh * hd..slots * stride], &vv[kh * hd..slots * stride]);
        let at = CacheAttn { head_dim: hd, stride, spans: &spans, scale: 1.0 / (hd as f32).sqrt() };
        check(&qv[..nq * hd], k, v, &at, what);
    });
    let (hd, rows) = (256usize, 700usize);
    let f = |i: usize, m: usize| ((i * m % 1009) as f32 - 504.0) / 300.0;
    let q: Vec<f32> = (0..4 * hd).map(|i| f(i, 31)).collect();
    let k: Vec<f32> = (0..rows * hd).map(|i| f(i, 17)).collect();
    let v: Vec<f32> = (0..rows * hd).map(|i| f(i, 13)).collect();
    for spans in [std::iter::once(0..rows).collect(), vec![300..rows, 0..212]] {
        let at = CacheAttn {
            head_dim: hd,
            stride: hd,
            spans: &spans,
            scale: 1.0 / 16.0,
        };
        check(&q, &k, &v, &at, &format!("{what} 700"));
    }
}

/// The f32 cache kernel against the f64 formula on [`cache_cases`].
#[test]
fn attend_cache_matches_reference() {
    cache_cases("attend_cache", |q, k, v, at, what| {
        let want = attend_cache_ref(q, k, v, at);
        let nq = q.len() / at.head_dim;
        let nk: usize = at.spans.iter().map(|s| s.len()).sum();
        for set in sets(what) {
            let mut out = vec![f32::NAN; q.len()];
            let mut scratch = vec![0.0; nq * nk];
            set.attend_cache(at.head_dim)(q, k, v, at, &mut out, &mut scratch);
            assert_close(what, set.isa(), &out, &want, EXP_TOL);
        }
    });
}

/// f16 bits of `x`, and `x` rounded to f16 (what an f16 cache holds).
fn halves(x: &[f32]) -> (Vec<u16>, Vec<f32>) {
    let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
    (
        h.iter().map(|v| v.to_bits()).collect(),
        h.iter().map(|v| v.to_f32()).collect(),
    )
}

/// The f16 cache kernel on [`cache_cases`]: against the f64 formula over
/// the rounded rows, and bit for bit against the same ISA's f32 kernel over
/// them (the same sums in the same order).
#[test]
fn attend_cache_f16_matches_reference() {
    cache_cases("attend_cache_f16", |q, k, v, at, what| {
        let ((kb, kf), (vb, vf)) = (halves(k), halves(v));
        let want = attend_cache_ref(q, &kf, &vf, at);
        let nq = q.len() / at.head_dim;
        let nk: usize = at.spans.iter().map(|s| s.len()).sum();
        for set in sets(what) {
            let mut out = vec![f32::NAN; q.len()];
            let mut scratch = vec![0.0; nq * nk];
            set.attend_cache_f16(at.head_dim)(q, &kb, &vb, at, &mut out, &mut scratch);
            assert_close(what, set.isa(), &out, &want, EXP_TOL);
            let mut out32 = vec![f32::NAN; q.len()];
            set.attend_cache(at.head_dim)(q, &kf, &vf, at, &mut out32, &mut scratch);
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&out),
                bits(&out32),
                "{what}/{}: vs the f32 kernel",
                set.isa().name()
            );
        }
    });
}

/// The f16-to-f32 conversion the f16 cache kernels read with, on every one
/// of the 65,536 halves (subnormals, infinities and NaNs included), bit for
/// bit against `half`; through the vector loads and, at an odd offset, the
/// scalar tail.
#[test]
fn f16_widening_is_bit_exact() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    for set in sets("widen_f16") {
        for (start, end) in [(0, all.len()), (1, all.len()), (0, 3)] {
            let src = &all[start..end];
            let mut out = vec![0.0f32; src.len()];
            set.widen_f16()(src, &mut out);
            for (&b, o) in src.iter().zip(&out) {
                let want = half::f16::from_bits(b).to_f32();
                assert_eq!(
                    o.to_bits(),
                    want.to_bits(),
                    "{}: f16 {b:#06x} gave {o} ({:#010x}), want {want} ({:#010x})",
                    set.isa().name(),
                    o.to_bits(),
                    want.to_bits()
                );
            }
        }
    }
}

#[test]
fn activations_match_reference() {
    proptest!(cases(60), |(len in 1usize..100, xv in vecf(100, 6.0), uv in vecf(96 * 2, 2.0))| {
        let x0 = &xv[..len];
        let gelu_tanh = |x: f64| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
        let want_t: Vec<f32> = x0.iter().map(|&x| gelu_tanh(f64::from(x)) as f32).collect();
        let want_e: Vec<f32> = x0.iter().map(|&x| (0.5 * f64::from(x) * (1.0 + erf(f64::from(x) / 2f64.sqrt()))) as f32).collect();
        let want_s: Vec<f32> = x0.iter().map(|&x| (f64::from(x) / (1.0 + (-f64::from(x)).exp())) as f32).collect();
        for set in sets("gelu") {
            let mut a = x0.to_vec();
            set.gelu_tanh()(&mut a);
            assert_close("gelu_tanh", set.isa(), &a, &want_t, EXP_TOL);
            let mut b = x0.to_vec();
            set.gelu_erf()(&mut b);
            assert_close("gelu_erf", set.isa(), &b, &want_e, EXP_TOL);
            // GeGLU fused with quantization equals quantizing this ISA's GELU ⊙ up.
            let (g, u) = (&uv[..96], &uv[96..]);
            let mut gg = g.to_vec();
            set.gelu_tanh()(&mut gg);
            let prod: Vec<f32> = gg.iter().zip(u).map(|(a, b)| a * b).collect();
            let mut fused = vec![BlockQ8_0::default(); 3];
            set.geglu_q8_0(96)(g, u, &mut fused);
            prop_assert_eq!(&fused, &q8(&prod), "geglu/{}", set.isa().name());
            // SiLU against f64, and SwiGLU fused with quantization against
            // quantizing this ISA's SiLU ⊙ up, as for GeGLU.
            let mut c = x0.to_vec();
            set.silu()(&mut c);
            assert_close("silu", set.isa(), &c, &want_s, EXP_TOL);
            let mut sg = g.to_vec();
            set.silu()(&mut sg);
            let prod: Vec<f32> = sg.iter().zip(u).map(|(a, b)| a * b).collect();
            set.swiglu_q8_0(96)(g, u, &mut fused);
            prop_assert_eq!(&fused, &q8(&prod), "swiglu/{}", set.isa().name());
        }
    });
    // SwiGLU at SmolLM2's FFN width (the specialized variant) on two rows,
    // and SiLU where exp over- and underflows.
    let gate: Vec<f32> = (0..2 * 1536)
        .map(|i| ((i * 37 % 211) as f32 - 105.0) / 9.0)
        .collect();
    let up: Vec<f32> = (0..2 * 1536)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 17.0)
        .collect();
    let edges = [
        -200.0f32, -104.0, -88.5, -87.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 88.5, 200.0,
    ];
    let silu = |x: f32| (f64::from(x) / (1.0 + (-f64::from(x)).exp())) as f32;
    for set in sets("swiglu/silu") {
        let mut sg = gate.clone();
        set.silu()(&mut sg);
        let prod: Vec<f32> = sg.iter().zip(&up).map(|(a, b)| a * b).collect();
        let mut fused = vec![BlockQ8_0::default(); gate.len() / 32];
        set.swiglu_q8_0(1536)(&gate, &up, &mut fused);
        assert_eq!(fused, q8(&prod), "swiglu 1536/{}", set.isa().name());
        let mut e = edges.to_vec();
        set.silu()(&mut e);
        let want: Vec<f32> = edges.iter().map(|&x| silu(x)).collect();
        assert_close("silu edges", set.isa(), &e, &want, EXP_TOL);
    }
}

/// erf in f64 (Abramowitz & Stegun 7.1.28 is too coarse; use the series /
/// continued fraction split) for the reference only.
fn erf(x: f64) -> f64 {
    // W. J. Cody's rational approximations would be longer; a 60-term Taylor
    // series is exact to f64 for |x| < 3 and erf is ±1 to 1e-9 beyond 6.
    if x.abs() > 6.0 {
        return x.signum();
    }
    let mut sum = 0.0;
    let mut term = x;
    let mut n = 0.0;
    while n < 200.0 {
        sum += term / (2.0 * n + 1.0);
        n += 1.0;
        term *= -x * x / n;
        if term.abs() < 1e-17 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn gather_pool_normalize_match_reference() {
    proptest!(cases(40), |(rows in 1usize..6, dim in prop::sample::select(vec![32usize, 384, 768, 96]), tv in vecf(8 * 768, 1.0), ids in prop::collection::vec(0u32..8, 1..6))| {
        let table = q8(&tv[..8 * dim]);
        let deq_t = deq(&table);
        let scale = 27.7;
        let want: Vec<f32> = ids.iter().flat_map(|&id| deq_t[id as usize * dim..][..dim].iter().map(|v| v * scale).collect::<Vec<_>>()).collect();
        let x = &tv[..rows * dim];
        let want_mean: Vec<f32> = (0..dim).map(|c| ((0..rows).map(|r| f64::from(x[r * dim + c])).sum::<f64>() / rows as f64) as f32).collect();
        let norm = x[..dim].iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        let want_l2: Vec<f32> = x[..dim].iter().map(|v| (f64::from(*v) / norm) as f32).collect();
        for set in sets("gather/pool/l2") {
            let mut out = vec![0.0; ids.len() * dim];
            set.gather_q8_0(dim)(&table, dim, &ids, scale, &mut out);
            assert_close("gather_q8_0", set.isa(), &out, &want, F32_TOL);
            let mut mean = vec![0.0; dim];
            set.mean_pool(dim)(x, &mut mean);
            assert_close("mean_pool", set.isa(), &mean, &want_mean, F32_TOL);
            let mut l2 = x[..dim].to_vec();
            set.l2_normalize()(&mut l2);
            assert_close("l2_normalize", set.isa(), &l2, &want_l2, F32_TOL);
            let mut zero = vec![0.0; dim];
            set.l2_normalize()(&mut zero);
            prop_assert!(zero.iter().all(|v| *v == 0.0));
        }
    });
}

#[test]
fn scalar_is_in_every_build() {
    assert_eq!(scalar().isa(), kiln::runtime::kernels::Isa::Scalar);
    assert!(kiln::kernels::best().isa() >= kiln::runtime::kernels::Isa::Scalar);
}

#[test]
fn int8_ceiling_probes_do_the_multiply_adds_they_count() {
    // Operands small enough that no form saturates or wraps its int16 pair
    // sums (`vpmaddubsw`, `smlal2`), and below 128 so unsigned and signed
    // readings of `u` agree: the probe's sum is then exact.
    let xs: [[i8; 64]; 2] = [
        std::array::from_fn(|i| (i * 37 % 100) as i8),
        std::array::from_fn(|i| ((i * 53 % 200) as i32 - 100) as i8),
    ];
    for &isa in kiln::kernels::compiled() {
        let probes = kiln::kernels::int8_ceiling_probes(isa);
        if probes.is_empty() {
            println!("int8 ceiling: no probe for {} here", isa.name());
        }
        for p in probes {
            let dot: i32 = (0..p.macs_per_op)
                .map(|i| i32::from(xs[0][i]) * i32::from(xs[1][i]))
                .sum();
            for iters in [0, 1, 7] {
                let want = dot * (p.chains * iters) as i32;
                assert_eq!(
                    (p.probe)(&xs, iters),
                    want,
                    "{} {} over {iters} rounds",
                    isa.name(),
                    p.instructions
                );
            }
            println!("int8 ceiling: {} {} ok", isa.name(), p.instructions);
        }
    }
}
