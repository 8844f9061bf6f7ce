//! The Q4_K, Q6_K, Q5_0 and Q4_1 matmuls and the Q8_K quantizer of every
//! ISA this CPU supports: Q8_K quantization bit for bit against the
//! reference, every matmul against the f64 dot of the reference-dequantized
//! weights and activations (random blocks, awkward shapes), and against rows
//! of the real Gemma-3-270M and SmolLM2-135M tensors when their GGUFs are on
//! this machine.

mod common;

use common::sets;
use half::f16;
use kiln::runtime::gguf::GgufFile;
use kiln::runtime::kernels::{KernelSet, MatMut};
use kiln::runtime::quant::{
    BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ6K, BlockQ8_0, BlockQ8K, dequantize_row_q4_1,
    dequantize_row_q4_k, dequantize_row_q5_0, dequantize_row_q6_k, dequantize_row_q8_0,
    dequantize_row_q8_k, quantize_row_q8_0_reference, quantize_row_q8_k_reference, repack_q4_1x8,
    repack_q4_kx8, repack_q6_kx8,
};
use proptest::prelude::*;

/// Matmul tolerance, relative to `Σ_k mag(w_k)·|x_k|` where `mag(w)` is the
/// magnitude of the dequantized weight's parts (`|d·sc·q| + |dmin·m|` for
/// Q4_K, whose two parts can cancel). The kernels sum each block's
/// products exactly in int32 and only round `d·dx`, the int-to-float
/// conversion and the f32 accumulation over blocks; the reference rounds
/// each dequantized weight and activation once in f32. Observed errors stay
/// near 4e-8 of that magnitude on these shapes (k ≤ 2048): 5e-7 leaves a
/// margin of ~10x while still catching any wrong scale, nibble or bit.
const KQ_TOL: f64 = 5e-7;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        ..ProptestConfig::default()
    }
}

/// A small deterministic generator (tests must not depend on a global RNG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 16
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn f(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.next() % (1 << 24)) as f32 / (1 << 24) as f32
    }
    /// A scale in `±[lo, hi)`.
    fn scale(&mut self, lo: f32, hi: f32) -> f16 {
        let s = if self.next().is_multiple_of(2) {
            1.0
        } else {
            -1.0
        };
        f16::from_f32(s * self.f(lo, hi))
    }
}

fn rand_q4k(r: &mut Rng, n: usize) -> Vec<BlockQ4K> {
    (0..n)
        .map(|_| BlockQ4K {
            d: r.scale(1e-3, 3e-2),
            dmin: r.scale(1e-3, 3e-2),
            scales: std::array::from_fn(|_| r.byte()),
            qs: std::array::from_fn(|_| r.byte()),
        })
        .collect()
}

fn rand_q6k(r: &mut Rng, n: usize) -> Vec<BlockQ6K> {
    (0..n)
        .map(|_| BlockQ6K {
            ql: std::array::from_fn(|_| r.byte()),
            qh: std::array::from_fn(|_| r.byte()),
            scales: std::array::from_fn(|_| r.byte() as i8),
            d: r.scale(1e-4, 3e-3),
        })
        .collect()
}

fn rand_q5_0(r: &mut Rng, n: usize) -> Vec<BlockQ5_0> {
    (0..n)
        .map(|_| BlockQ5_0 {
            d: r.scale(1e-3, 3e-2),
            qh: std::array::from_fn(|_| r.byte()),
            qs: std::array::from_fn(|_| r.byte()),
        })
        .collect()
}

fn rand_q4_1(r: &mut Rng, n: usize) -> Vec<BlockQ4_1> {
    (0..n)
        .map(|_| BlockQ4_1 {
            d: r.scale(1e-3, 3e-2),
            m: r.scale(1e-3, 0.3),
            qs: std::array::from_fn(|_| r.byte()),
        })
        .collect()
}

fn rand_f32(r: &mut Rng, n: usize, mag: f32) -> Vec<f32> {
    (0..n).map(|_| r.f(-mag, mag)).collect()
}

fn q8k(x: &[f32]) -> Vec<BlockQ8K> {
    let mut b = vec![BlockQ8K::default(); x.len() / 256];
    quantize_row_q8_k_reference(x, &mut b);
    b
}

fn q8(x: &[f32]) -> Vec<BlockQ8_0> {
    let mut b = vec![BlockQ8_0::default(); x.len() / 32];
    quantize_row_q8_0_reference(x, &mut b);
    b
}

/// Dequantized weights and the magnitude of their parts (see [`KQ_TOL`]).
trait Weight: Copy {
    const QK: usize;
    fn deq(w: &[Self]) -> (Vec<f32>, Vec<f32>);
}

impl Weight for BlockQ4K {
    const QK: usize = 256;
    fn deq(w: &[Self]) -> (Vec<f32>, Vec<f32>) {
        let mut y = vec![0.0; w.len() * 256];
        dequantize_row_q4_k(w, &mut y);
        // The two parts separately: d·sc·q (dmin = 0) and dmin·m (d = 0).
        let scaled: Vec<BlockQ4K> = w
            .iter()
            .map(|b| BlockQ4K {
                dmin: f16::ZERO,
                ..*b
            })
            .collect();
        let mins: Vec<BlockQ4K> = w.iter().map(|b| BlockQ4K { d: f16::ZERO, ..*b }).collect();
        let (mut a, mut m) = (vec![0.0; y.len()], vec![0.0; y.len()]);
        dequantize_row_q4_k(&scaled, &mut a);
        dequantize_row_q4_k(&mins, &mut m);
        let mag = a.iter().zip(&m).map(|(a, m)| a.abs() + m.abs()).collect();
        (y, mag)
    }
}

impl Weight for BlockQ6K {
    const QK: usize = 256;
    fn deq(w: &[Self]) -> (Vec<f32>, Vec<f32>) {
        let mut y = vec![0.0; w.len() * 256];
        dequantize_row_q6_k(w, &mut y);
        let mag = y.iter().map(|v| v.abs()).collect();
        (y, mag)
    }
}

impl Weight for BlockQ5_0 {
    const QK: usize = 32;
    fn deq(w: &[Self]) -> (Vec<f32>, Vec<f32>) {
        let mut y = vec![0.0; w.len() * 32];
        dequantize_row_q5_0(w, &mut y);
        let mag = y.iter().map(|v| v.abs()).collect();
        (y, mag)
    }
}

impl Weight for BlockQ4_1 {
    const QK: usize = 32;
    fn deq(w: &[Self]) -> (Vec<f32>, Vec<f32>) {
        let mut y = vec![0.0; w.len() * 32];
        dequantize_row_q4_1(w, &mut y);
        // The two parts separately, as for Q4_K: d·q (m = 0) and m (d = 0).
        let scaled: Vec<BlockQ4_1> = w.iter().map(|b| BlockQ4_1 { m: f16::ZERO, ..*b }).collect();
        let mut a = vec![0.0; y.len()];
        dequantize_row_q4_1(&scaled, &mut a);
        let mag = a
            .iter()
            .zip(w.iter().flat_map(|b| [b.m.to_f32(); 32]))
            .map(|(a, m)| a.abs() + m.abs())
            .collect();
        (y, mag)
    }
}

/// `out[i][j] = Σ_k w[j][k]·x[i][k]` in f64 and its magnitude bound.
fn reference(wd: &[f32], wmag: &[f32], xd: &[f32], m: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let k = xd.len() / m;
    let mut out = vec![0.0; m * n];
    let mut mag = vec![0.0; m * n];
    for i in 0..m {
        let xr = &xd[i * k..][..k];
        for j in 0..n {
            let (wr, mr) = (&wd[j * k..][..k], &wmag[j * k..][..k]);
            let mut s = 0.0f64;
            let mut a = 0.0f64;
            for t in 0..k {
                s += f64::from(wr[t]) * f64::from(xr[t]);
                a += f64::from(mr[t]) * f64::from(xr[t]).abs();
            }
            out[i * n + j] = s;
            mag[i * n + j] = a;
        }
    }
    (out, mag)
}

type Run<'a, W, X> =
    &'a dyn Fn(&dyn KernelSet, &[W], &[X], Option<&[f32]>, MatMut<'_>, bool, (usize, usize));

/// Checks every ISA's matmul of `w` (n rows) with `x` (m rows) against the
/// f64 reference, with bias and accumulation; returns the worst error ratio.
#[allow(
    clippy::too_many_arguments,
    reason = "one test helper for three formats"
)]
fn check<W: Weight, X>(
    what: &str,
    run: Run<'_, W, X>,
    w: &[W],
    x: &[X],
    xd: &[f32],
    m: usize,
    n: usize,
    bias: Option<&[f32]>,
    accumulate: bool,
) -> f64 {
    let k = xd.len() / m;
    let (wd, wmag) = W::deq(w);
    assert_eq!(wd.len(), n * k);
    let (want, mag) = reference(&wd, &wmag, xd, m, n);
    let init: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32 - 3.0).collect();
    let mut worst = 0.0f64;
    for set in sets(what) {
        let mut out = init.clone();
        run(
            set,
            w,
            x,
            bias,
            MatMut::new(&mut out, m, n, n),
            accumulate,
            (n, k),
        );
        for idx in 0..m * n {
            let mut e = want[idx];
            let mut extra = 0.0;
            if let Some(b) = bias {
                e += f64::from(b[idx % n]);
                extra += f64::from(b[idx % n]).abs();
            }
            if accumulate {
                e += f64::from(init[idx]);
                extra += f64::from(init[idx]).abs();
            }
            // Adding bias/init in f32 rounds once more at their scale.
            let tol = KQ_TOL * mag[idx] + 2.0 * f64::from(f32::EPSILON) * (extra + e.abs());
            let err = (f64::from(out[idx]) - e).abs();
            worst = worst.max(err / (mag[idx] + 1e-30));
            assert!(
                err <= tol,
                "{what}/{} m={m} n={n} k={k} [{idx}]: {} vs {e} (tol {tol:e}, magnitude {:e})",
                set.isa().name(),
                out[idx],
                mag[idx]
            );
        }
    }
    worst
}

fn run_q4k(
    s: &dyn KernelSet,
    w: &[BlockQ4K],
    x: &[BlockQ8K],
    b: Option<&[f32]>,
    o: MatMut<'_>,
    a: bool,
    (n, k): (usize, usize),
) {
    s.matmul_q4_k(n, k)(w, x, b, o, a)
}

fn run_q6k(
    s: &dyn KernelSet,
    w: &[BlockQ6K],
    x: &[BlockQ8K],
    b: Option<&[f32]>,
    o: MatMut<'_>,
    a: bool,
    (n, k): (usize, usize),
) {
    s.matmul_q6_k(n, k)(w, x, b, o, a)
}

fn run_q4kx8(
    s: &dyn KernelSet,
    w: &[BlockQ4K],
    x: &[BlockQ8K],
    b: Option<&[f32]>,
    o: MatMut<'_>,
    a: bool,
    (n, k): (usize, usize),
) {
    s.matmul_q4_kx8(n, k)(&repack_q4_kx8(w, n, k), x, b, o, a)
}

fn run_q6kx8(
    s: &dyn KernelSet,
    w: &[BlockQ6K],
    x: &[BlockQ8K],
    b: Option<&[f32]>,
    o: MatMut<'_>,
    a: bool,
    (n, k): (usize, usize),
) {
    s.matmul_q6_kx8(n, k)(&repack_q6_kx8(w, n, k), x, b, o, a)
}

fn run_q5_0(
    s: &dyn KernelSet,
    w: &[BlockQ5_0],
    x: &[BlockQ8_0],
    b: Option<&[f32]>,
    o: MatMut<'_>,
    a: bool,
    (n, k): (usize, usize),
) {
    s.matmul_q5_0(n, k)(w, x, b, o, a)
}

fn run_q4_1x8(
    s: &dyn KernelSet,
    w: &[BlockQ4_1],
    x: &[BlockQ8_0],
    b: Option<&[f32]>,
    o: MatMut<'_>,
    a: bool,
    (n, k): (usize, usize),
) {
    s.matmul_q4_1x8(n, k)(&repack_q4_1x8(w, n, k), x, b, o, a)
}

/// One random case of each format at `m × n × k`.
fn case(seed: u64, m: usize, n: usize, kb_k: usize, kb_5: usize, flags: u8) -> f64 {
    let mut r = Rng(seed);
    let bias = rand_f32(&mut r, n, 1.0);
    let b = (flags & 1 == 1).then_some(&bias[..]);
    let acc = flags & 2 == 2;
    let k = 256 * kb_k;
    let xv = rand_f32(&mut r, m * k, 3.0);
    let xk = q8k(&xv);
    let mut xd = vec![0.0; m * k];
    dequantize_row_q8_k(&xk, &mut xd);
    let mut worst = 0.0f64;
    let w4 = rand_q4k(&mut r, n * kb_k);
    worst = worst.max(check("matmul_q4_k", &run_q4k, &w4, &xk, &xd, m, n, b, acc));
    let w6 = rand_q6k(&mut r, n * kb_k);
    worst = worst.max(check("matmul_q6_k", &run_q6k, &w6, &xk, &xd, m, n, b, acc));
    worst = worst.max(check(
        "matmul_q4_kx8",
        &run_q4kx8,
        &w4,
        &xk,
        &xd,
        m,
        n,
        b,
        acc,
    ));
    worst = worst.max(check(
        "matmul_q6_kx8",
        &run_q6kx8,
        &w6,
        &xk,
        &xd,
        m,
        n,
        b,
        acc,
    ));
    let k5 = 32 * kb_5;
    let xv = rand_f32(&mut r, m * k5, 3.0);
    let x8 = q8(&xv);
    let mut xd = vec![0.0; m * k5];
    dequantize_row_q8_0(&x8, &mut xd);
    let w5 = rand_q5_0(&mut r, n * kb_5);
    worst = worst.max(check("matmul_q5_0", &run_q5_0, &w5, &x8, &xd, m, n, b, acc));
    let w41 = rand_q4_1(&mut r, n * kb_5);
    worst.max(check(
        "matmul_q4_1x8",
        &run_q4_1x8,
        &w41,
        &x8,
        &xd,
        m,
        n,
        b,
        acc,
    ))
}

#[test]
fn matmuls_match_reference_on_awkward_shapes() {
    // Generic variants: one token, odd token counts, whole and partial token
    // tiles (4, 8 and 2 x 8 tokens), n not a multiple of the
    // tile or the panel, K-quant k of 1-3 super-blocks, Q5_0 and Q4_1 k of
    // 1-20 blocks.
    proptest!(cases(40), |(seed in any::<u64>(), m in prop::sample::select(vec![1usize, 2, 3, 5, 8, 9, 17]), n in 1usize..70, kb_k in 1usize..4, kb_5 in 1usize..21, flags in 0u8..4)| {
        case(seed, m, n, kb_k, kb_5, flags);
    });
}

#[test]
fn matmuls_match_reference_at_gemma3_shapes() {
    // Specialized variants (from the shape table) at 1, 4 and 7 tokens, and
    // a generic n of 130 (two panels and a tail).
    let mut worst = 0.0f64;
    for (n, k, m) in [(640usize, 2048usize, 1usize), (640, 1024, 4), (130, 512, 7)] {
        let mut r = Rng(k as u64 + m as u64);
        let xv = rand_f32(&mut r, m * k, 2.0);
        let xk = q8k(&xv);
        let mut xd = vec![0.0; m * k];
        dequantize_row_q8_k(&xk, &mut xd);
        let w4 = rand_q4k(&mut r, n * k / 256);
        worst = worst.max(check(
            "q4_k table",
            &run_q4k,
            &w4,
            &xk,
            &xd,
            m,
            n,
            None,
            false,
        ));
        worst = worst.max(check(
            "q4_kx8 table",
            &run_q4kx8,
            &w4,
            &xk,
            &xd,
            m,
            n,
            None,
            m > 1,
        ));
        let w6 = rand_q6k(&mut r, n * k / 256);
        worst = worst.max(check(
            "q6_kx8 table",
            &run_q6kx8,
            &w6,
            &xk,
            &xd,
            m,
            n,
            None,
            false,
        ));
        worst = worst.max(check(
            "q6_k table",
            &run_q6k,
            &w6,
            &xk,
            &xd,
            m,
            n,
            None,
            m > 1,
        ));
    }
    for (n, k, m) in [(1024usize, 640usize, 1usize), (256, 640, 5), (2048, 640, 3)] {
        let mut r = Rng(n as u64);
        let xv = rand_f32(&mut r, m * k, 2.0);
        let x8 = q8(&xv);
        let mut xd = vec![0.0; m * k];
        dequantize_row_q8_0(&x8, &mut xd);
        let w5 = rand_q5_0(&mut r, n * k / 32);
        worst = worst.max(check(
            "q5_0 table",
            &run_q5_0,
            &w5,
            &x8,
            &xd,
            m,
            n,
            None,
            false,
        ));
    }
    eprintln!("worst error / magnitude: {worst:e} (tolerance {KQ_TOL:e})");
}

#[test]
fn q4_1x8_matches_reference_at_smollm2_shapes() {
    // Specialized variants (SmolLM2's shapes: k = 576, not a multiple of
    // 256, and 1536) at 1, 4, 7 and 9 tokens; generic ones at n = 130 (two
    // panels and a short group) and at k = 129 blocks, past the activation
    // sums kept on the stack (`X8_BIAS_CAP`), so computed in every group.
    let mut worst = 0.0f64;
    for (n, k, m) in [
        (576usize, 576usize, 1usize),
        (192, 576, 4),
        (1536, 576, 7),
        (576, 1536, 1),
        (576, 1536, 9),
        (130, 544, 5),
        (24, 129 * 32, 1),
        (24, 129 * 32, 5),
    ] {
        let mut r = Rng(n as u64 * 31 + k as u64 + m as u64);
        let xv = rand_f32(&mut r, m * k, 2.0);
        let x8 = q8(&xv);
        let mut xd = vec![0.0; m * k];
        dequantize_row_q8_0(&x8, &mut xd);
        let bias = rand_f32(&mut r, n, 1.0);
        let w = rand_q4_1(&mut r, n * k / 32);
        worst = worst.max(check(
            "q4_1x8 table",
            &run_q4_1x8,
            &w,
            &x8,
            &xd,
            m,
            n,
            (m % 2 == 1).then_some(&bias[..]),
            m > 1,
        ));
    }
    eprintln!("q4_1x8 worst error / magnitude: {worst:e} (tolerance {KQ_TOL:e})");
}

#[test]
fn matmuls_write_column_blocks() {
    // Threads own column blocks of one output: two halves equal the whole.
    let (m, n, k) = (5usize, 640usize, 1024usize);
    let mut r = Rng(99);
    let xk = q8k(&rand_f32(&mut r, m * k, 1.0));
    let w4 = rand_q4k(&mut r, n * k / 256);
    let kb = k / 256;
    for set in sets("kquant split") {
        let mut whole = vec![0.0; m * n];
        set.matmul_q4_k(n, k)(&w4, &xk, None, MatMut::new(&mut whole, m, n, n), false);
        let mut split = vec![0.0; m * n];
        let (l, rt) = MatMut::new(&mut split, m, n, n).split_cols(192);
        set.matmul_q4_k(192, k)(&w4[..192 * kb], &xk, None, l, false);
        set.matmul_q4_k(n - 192, k)(&w4[192 * kb..], &xk, None, rt, false);
        assert_eq!(split, whole, "{}", set.isa().name());
    }
    // Q4_1 groups: a block of 192 columns is 24 groups.
    let (n, k) = (576usize, 576usize);
    let kb = k / 32;
    let x8 = q8(&rand_f32(&mut r, m * k, 1.0));
    let w = repack_q4_1x8(&rand_q4_1(&mut r, n * kb), n, k);
    for set in sets("q4_1x8 split") {
        let mut whole = vec![0.0; m * n];
        set.matmul_q4_1x8(n, k)(&w, &x8, None, MatMut::new(&mut whole, m, n, n), false);
        let mut split = vec![0.0; m * n];
        let (l, rt) = MatMut::new(&mut split, m, n, n).split_cols(192);
        set.matmul_q4_1x8(192, k)(&w[..24 * kb], &x8, None, l, false);
        set.matmul_q4_1x8(n - 192, k)(&w[24 * kb..], &x8, None, rt, false);
        assert_eq!(split, whole, "q4_1x8/{}", set.isa().name());
    }
}

#[test]
fn quantize_q8_k_is_bit_exact_with_reference() {
    let sets = sets("quantize_q8_k");
    // Crafted: ties at iscale = 1 (max = -127), the first largest value
    // deciding the sign (+5 before -5), an all-zero block, tiny values.
    let mut x = vec![0.0f32; 4 * 256];
    x[0] = -127.0;
    for (i, v) in [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 3.5]
        .iter()
        .enumerate()
    {
        x[1 + i] = *v;
    }
    x[256 + 3] = 5.0;
    x[256 + 200] = -5.0;
    x[256 + 7] = 2.5;
    for (i, v) in x[768..].iter_mut().enumerate() {
        *v = (i as f32 - 128.0) * 1e-30;
    }
    let want = q8k(&x);
    assert_eq!(want[2], BlockQ8K::default());
    for set in &sets {
        let mut got = vec![BlockQ8K::default(); 4];
        set.quantize_q8_k(1024)(&x, &mut got);
        assert_eq!(got, want, "{}", set.isa().name());
    }
    proptest!(cases(100), |(blocks in 1usize..9, mag in prop::sample::select(vec![1e-6f32, 1e-2, 1.0, 300.0]), seed in any::<u64>())| {
        let mut r = Rng(seed);
        let x: Vec<f32> = rand_f32(&mut r, blocks * 256, mag);
        let want = q8k(&x);
        for set in &sets {
            for k in [256 * blocks, 1024, 2048] {
                if !x.len().is_multiple_of(k) {
                    continue;
                }
                let mut got = vec![BlockQ8K::default(); blocks];
                set.quantize_q8_k(k)(&x, &mut got);
                prop_assert_eq!(&got, &want, "{} k={}", set.isa().name(), k);
            }
        }
    });
}

/// `run(set, weight rows, n, k, out)`: one token through a real tensor's rows.
type RowRun<'a, W> = &'a dyn Fn(&dyn KernelSet, &[W], usize, usize, &mut [f32]);

/// Rows `rows` of a real tensor of Gemma-3-270M against dequantize-then-f64.
fn real_rows<W: Weight>(
    g: &GgufFile,
    name: &str,
    blocks: &[W],
    run: RowRun<'_, W>,
    x: &[f32],
    q: &dyn Fn(&[f32]) -> Vec<f32>,
) {
    let info = g.tensor(name).expect("tensor listed in the dump");
    let k = info.dims[0] as usize;
    let kb = k / W::QK;
    let n_all = info.dims[1] as usize;
    // 64 rows from the start and 64 from the end.
    for start in [0usize, n_all - 64] {
        let n = 64;
        let w = &blocks[start * kb..(start + n) * kb];
        let xd = q(&x[..k]);
        let (wd, wmag) = W::deq(w);
        let (want, mag) = reference(&wd, &wmag, &xd, 1, n);
        for set in sets(name) {
            let mut out = vec![0.0; n];
            run(set, w, n, k, &mut out);
            for j in 0..n {
                let err = (f64::from(out[j]) - want[j]).abs();
                assert!(
                    err <= KQ_TOL * mag[j],
                    "{name} row {} /{}: {} vs {} (magnitude {:e})",
                    start + j,
                    set.isa().name(),
                    out[j],
                    want[j],
                    mag[j]
                );
            }
        }
    }
}

/// The GGUF a real-weights test reads: the file the variable `env` names,
/// or the cached model `name` (absent: the test skips, or fails under
/// KILN_REQUIRE_MODELS=1; CI pulls it).
fn real_model(env: &str, name: &str) -> Option<GgufFile> {
    let path = match std::env::var_os(env) {
        Some(p) => std::path::PathBuf::from(p),
        None => common::cached_model(name)?,
    };
    Some(GgufFile::open(&path).expect("gguf opens"))
}

/// Activations of a realistic spread: mostly small, a few outliers.
fn spread_activations(seed: u64, n: usize) -> Vec<f32> {
    let mut r = Rng(seed);
    (0..n)
        .map(|i| {
            let v = r.f(-1.0, 1.0);
            if i % 97 == 0 { v * 40.0 } else { v }
        })
        .collect()
}

/// `x` as a Q8_0 activation row sees it (quantized and back).
fn deq_8(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    dequantize_row_q8_0(&q8(x), &mut y);
    y
}

/// `x` as a Q8_K activation row sees it.
fn deq_k(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    dequantize_row_q8_k(&q8k(x), &mut y);
    y
}

#[test]
fn real_gemma3_weights() {
    let Some(g) = real_model("KILN_GEMMA3_GGUF", "gemma3-270m") else {
        return;
    };
    let x = spread_activations(2026, 2048);
    let mut seen = [false; 3];
    for t in g.tensors() {
        let name = t.name.as_str();
        if let Ok(w) = g.tensor_q4_k(name) {
            if !seen[0] || name == "blk.17.ffn_down.weight" {
                seen[0] = true;
                let k = t.dims[0] as usize;
                let xk = q8k(&x[..k]);
                let run = |s: &dyn KernelSet, w: &[BlockQ4K], n, k, o: &mut [f32]| {
                    s.matmul_q4_k(n, k)(w, &xk, None, MatMut::new(o, 1, n, n), false)
                };
                real_rows(&g, name, w, &run, &x, &deq_k);
            }
        } else if let Ok(w) = g.tensor_q6_k(name) {
            if !seen[1] {
                seen[1] = true;
                let k = t.dims[0] as usize;
                let xk = q8k(&x[..k]);
                let run = |s: &dyn KernelSet, w: &[BlockQ6K], n, k, o: &mut [f32]| {
                    s.matmul_q6_k(n, k)(w, &xk, None, MatMut::new(o, 1, n, n), false)
                };
                real_rows(&g, name, w, &run, &x, &deq_k);
            }
        } else if let Ok(w) = g.tensor_q5_0(name)
            && !seen[2]
        {
            seen[2] = true;
            let k = t.dims[0] as usize;
            let x8 = q8(&x[..k]);
            let run = |s: &dyn KernelSet, w: &[BlockQ5_0], n, k, o: &mut [f32]| {
                s.matmul_q5_0(n, k)(w, &x8, None, MatMut::new(o, 1, n, n), false)
            };
            real_rows(&g, name, w, &run, &x, &deq_8);
        }
    }
    assert_eq!(seen, [true; 3], "Q4_K, Q6_K and Q5_0 tensors in the GGUF");
}

#[test]
fn real_smollm2_weights() {
    // Every projection of SmolLM2-135M is Q4_1.
    let Some(g) = real_model("KILN_SMOLLM2_GGUF", "smollm2") else {
        return;
    };
    let x = spread_activations(2027, 1536);
    let mut seen = 0;
    for name in [
        "blk.0.attn_q.weight",
        "blk.0.attn_k.weight",
        "blk.29.ffn_up.weight",
        "blk.29.ffn_down.weight",
    ] {
        let w = g.tensor_q4_1(name).expect("a Q4_1 projection");
        let k = g.tensor(name).expect("listed").dims[0] as usize;
        let x8 = q8(&x[..k]);
        let run = |s: &dyn KernelSet, w: &[BlockQ4_1], n, k, o: &mut [f32]| {
            s.matmul_q4_1x8(n, k)(
                &repack_q4_1x8(w, n, k),
                &x8,
                None,
                MatMut::new(o, 1, n, n),
                false,
            )
        };
        real_rows(&g, name, w, &run, &x, &deq_8);
        seen += 1;
    }
    assert_eq!(seen, 4);
}
