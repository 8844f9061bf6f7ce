//! Kernel benches at EmbeddingGemma-300M shapes, and this machine's limits.
//!
//! First measures single-thread DRAM read bandwidth and the int8 dot peak of
//! the ISA in use, then prints the speed bars below as fractions of them:
//! - Q8_0 matvec with weights streamed from DRAM (working set ≫ L3) vs read
//!   bandwidth (bar: ≥ 80%);
//! - Q8_0 matmul on 64+ tokens with weights in cache vs int8 peak (bar: ≥ 60%);
//! - specialized vs generic variants of the same kernel.
//!
//! - the Q4_K, Q6_K and Q5_0 matmuls at gemma-3-270m shapes: one token with
//!   weights from DRAM (vs read bandwidth) and 64 tokens in cache (vs the
//!   Q8_0 int8 peak, which uses a different instruction mix: indicative).
//!
//! - the Q4_1 matmul at SmolLM2-135M shapes beside the Q8_0 one at the same
//!   shapes: GOPS for one token and 64, weights in cache, and one token
//!   with weights from DRAM.
//!
//! Then runs criterion groups named `op/isa/shape`. `KILN_BENCH_ALL_ISAS=1`
//! benches every ISA the CPU supports instead of only the best one;
//! `KILN_BENCH_ONLY_SMOLLM2=1` prints only the SmolLM2 bars before them.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use kiln::kernels::{best, compiled, for_isa, limits};
use kiln::runtime::kernels::{AttnShape, KernelSet, Mask, MatMut, attention_scratch_len};
use kiln::runtime::quant::{
    BlockQ4_1, BlockQ4_1x8, BlockQ4K, BlockQ4Kx8, BlockQ5_0, BlockQ6K, BlockQ6Kx8, BlockQ8_0,
    BlockQ8K, quantize_row_q8_0_reference, quantize_row_q8_k_reference, repack_q4_1x8,
    repack_q4_kx8, repack_q6_kx8, repack_q8_0x8,
};

/// Deterministic pseudo-random values in `[-1, 1)`.
fn rand_vec(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn q8(x: &[f32]) -> Vec<BlockQ8_0> {
    let mut b = vec![BlockQ8_0::default(); x.len() / 32];
    quantize_row_q8_0_reference(x, &mut b);
    b
}

/// Minimum time of `f` over `reps` runs after one warm-up.
fn min_time(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .expect("reps > 0")
}

/// Weights of `n` rows of `k` in as many copies as make `total` bytes, so
/// that rotating through them streams every call from DRAM.
fn weight_copies(n: usize, k: usize, total: usize) -> Vec<Vec<BlockQ8_0>> {
    let one = q8(&rand_vec(n * k, 1));
    let bytes = one.len() * 34;
    (0..total.div_ceil(bytes)).map(|_| one.clone()).collect()
}

/// The generic variant of a kernel: a key no shape table lists.
const NOT_IN_TABLE: usize = 0;

fn bars(set: &'static dyn KernelSet, bw: f64, peak: f64) {
    let isa = set.isa().name();
    println!("== bars ({isa}) ==");
    // Q8_0 matvec streamed from DRAM.
    for (n, k) in [(768usize, 768usize), (1152, 768), (768, 1152), (3072, 768)] {
        let copies = weight_copies(n, k, 320 << 20);
        let packed: Vec<_> = copies.iter().map(|w| repack_q8_0x8(w, n, k)).collect();
        let x = q8(&rand_vec(k, 2));
        let mut out = vec![0.0f32; n];
        let rounds = copies.len() * 2;
        for layout in ["rows", "x8"] {
            let (f, f8) = (set.matmul_q8_0(n, k), set.matmul_q8_0x8(n, k));
            let mut i = 0;
            let t = Instant::now();
            for _ in 0..rounds {
                let o = MatMut::new(&mut out, 1, n, n);
                if layout == "rows" {
                    f(&copies[i], &x, None, o, false);
                } else {
                    f8(&packed[i], &x, None, o, false);
                }
                i = (i + 1) % copies.len();
            }
            let per = t.elapsed().as_secs_f64() / rounds as f64;
            let gbs = (n * k / 32 * 34) as f64 / per / 1e9;
            println!(
                "matvec q8_0 ({layout}) n{n} k{k} from DRAM: {:.1} us, {gbs:.1} GB/s = {:.0}% of read bandwidth (bar 80%)",
                per * 1e6,
                100.0 * gbs / bw
            );
        }
    }
    // Q8_0 matmul, many tokens, weights in cache.
    for (n, k, m) in [
        (256usize, 768usize, 64usize),
        (768, 768, 64),
        (1152, 768, 128),
        // A short text's tokens ("Hello world" with EmbeddingGemma's prompt).
        (768, 768, 6),
    ] {
        let w = q8(&rand_vec(n * k, 3));
        let w8 = repack_q8_0x8(&w, n, k);
        let x = q8(&rand_vec(m * k, 4));
        let mut out = vec![0.0f32; m * n];
        for (label, f, f8) in [
            // The row layout is reference-only: its generic variant.
            ("rows, generic", Some(set.matmul_q8_0(n, k)), None),
            ("x8, specialized", None, Some(set.matmul_q8_0x8(n, k))),
            (
                "x8, generic",
                None,
                Some(set.matmul_q8_0x8(NOT_IN_TABLE, NOT_IN_TABLE)),
            ),
        ] {
            let t = min_time(10, || {
                let o = MatMut::new(&mut out, m, n, n);
                match (f, f8) {
                    (Some(f), _) => f(&w, &x, None, o, false),
                    (_, Some(f8)) => f8(&w8, &x, None, o, false),
                    _ => unreachable!(),
                }
            });
            let gops = (2 * m * n * k) as f64 / t.as_secs_f64() / 1e9;
            println!(
                "matmul q8_0 n{n} k{k} m{m} in cache ({label}): {:.0} us, {gops:.1} GOPS = {:.0}% of int8 peak (bar 60%)",
                t.as_secs_f64() * 1e6,
                100.0 * gops / peak
            );
        }
    }
    // Specialized vs generic, in cache.
    let (n, k) = (768usize, 768usize);
    // The 8-row groups: the row layout is reference-only (generic only).
    let w = repack_q8_0x8(&q8(&rand_vec(n * k, 5)), n, k);
    let x1 = q8(&rand_vec(k, 6));
    let mut out = vec![0.0f32; n];
    let spec = min_time(200, || {
        set.matmul_q8_0x8(n, k)(&w, &x1, None, MatMut::new(&mut out, 1, n, n), false)
    });
    let gen_t = min_time(200, || {
        set.matmul_q8_0x8(NOT_IN_TABLE, NOT_IN_TABLE)(
            &w,
            &x1,
            None,
            MatMut::new(&mut out, 1, n, n),
            false,
        )
    });
    report("matvec q8_0x8 n768 k768 (in cache)", spec, gen_t);
    let xs = rand_vec(768 * 16, 7);
    let wn = rand_vec(768, 8);
    let mut o = vec![0.0; xs.len()];
    let spec = min_time(500, || set.rms_norm(768)(&xs, &wn, 1e-6, &mut o));
    let gen_t = min_time(500, || set.rms_norm(NOT_IN_TABLE)(&xs, &wn, 1e-6, &mut o));
    report("rms_norm 768 x16 rows", spec, gen_t);
    let (q, kk, v, shape) = attn_inputs(128);
    let mut ao = vec![0.0; q.len()];
    let mut scratch = vec![0.0; attention_scratch_len(128, 256)];
    let spec = min_time(20, || {
        set.attention(256)(&q, &kk, &v, &shape, 0..128, &mut ao, &mut scratch)
    });
    let gen_t = min_time(20, || {
        set.attention(NOT_IN_TABLE)(&q, &kk, &v, &shape, 0..128, &mut ao, &mut scratch)
    });
    report("attention hd256 3/1 heads 128 tokens", spec, gen_t);
}

fn q8k(x: &[f32]) -> Vec<BlockQ8K> {
    let mut b = vec![BlockQ8K::default(); x.len() / 256];
    quantize_row_q8_k_reference(x, &mut b);
    b
}

/// Random bytes for weight blocks (any bit pattern is a valid block) with
/// scales of a realistic size.
fn rand_bytes(len: usize, seed: u32) -> Vec<u8> {
    rand_vec(len, seed)
        .iter()
        .map(|v| ((v + 1.0) * 127.9) as u8)
        .collect()
}

fn rand_q4k(blocks: usize, seed: u32) -> Vec<BlockQ4K> {
    let b = rand_bytes(blocks * 140, seed);
    b.chunks_exact(140)
        .map(|c| BlockQ4K {
            d: half::f16::from_f32(0.01),
            dmin: half::f16::from_f32(0.005),
            scales: c[..12].try_into().expect("12"),
            qs: c[12..].try_into().expect("128"),
        })
        .collect()
}

fn rand_q6k(blocks: usize, seed: u32) -> Vec<BlockQ6K> {
    let b = rand_bytes(blocks * 208, seed);
    b.chunks_exact(208)
        .map(|c| BlockQ6K {
            ql: c[..128].try_into().expect("128"),
            qh: c[128..192].try_into().expect("64"),
            scales: std::array::from_fn(|i| c[192 + i] as i8),
            d: half::f16::from_f32(0.001),
        })
        .collect()
}

fn rand_q5_0(blocks: usize, seed: u32) -> Vec<BlockQ5_0> {
    let b = rand_bytes(blocks * 20, seed);
    b.chunks_exact(20)
        .map(|c| BlockQ5_0 {
            d: half::f16::from_f32(0.01),
            qh: c[..4].try_into().expect("4"),
            qs: c[4..].try_into().expect("16"),
        })
        .collect()
}

fn rand_q4_1(blocks: usize, seed: u32) -> Vec<BlockQ4_1> {
    let b = rand_bytes(blocks * 16, seed);
    b.chunks_exact(16)
        .map(|c| BlockQ4_1 {
            d: half::f16::from_f32(0.01),
            m: half::f16::from_f32(-0.08),
            qs: c.try_into().expect("16"),
        })
        .collect()
}

/// The gemma-3-270m weights by format: `(format, n, k)`.
const KQUANT_SHAPES: &[(&str, usize, usize)] = &[
    ("q4_k", 640, 2048),
    ("q4_k", 640, 1024),
    ("q6_k", 640, 2048),
    ("q4_kx8", 640, 2048),
    ("q4_kx8", 640, 1024),
    ("q6_kx8", 640, 2048),
    ("q5_0", 2048, 640),
    ("q5_0", 1024, 640),
    ("q5_0", 256, 640),
    // SmolLM2-135M (every projection Q4_1).
    ("q4_1x8", 1536, 576),
    ("q4_1x8", 576, 576),
    ("q4_1x8", 576, 1536),
];

/// Weights (in copies, to stream them from DRAM) and activations of one shape.
struct KquantCase {
    w4: Vec<Vec<BlockQ4K>>,
    w6: Vec<Vec<BlockQ6K>>,
    w5: Vec<Vec<BlockQ5_0>>,
    w4x8: Vec<Vec<BlockQ4Kx8>>,
    w6x8: Vec<Vec<BlockQ6Kx8>>,
    w41x8: Vec<Vec<BlockQ4_1x8>>,
    xk: Vec<BlockQ8K>,
    x8: Vec<BlockQ8_0>,
}

impl KquantCase {
    /// Enough copies of an `n × k` weight of `fmt` to fill `total_bytes`, and `m` tokens.
    fn new(fmt: &str, n: usize, k: usize, m: usize, total_bytes: usize) -> Self {
        let bytes = kquant_bytes(fmt, n, k);
        let copies = total_bytes.div_ceil(bytes).max(1);
        let mut c = KquantCase {
            w4: Vec::new(),
            w6: Vec::new(),
            w5: Vec::new(),
            w4x8: Vec::new(),
            w6x8: Vec::new(),
            w41x8: Vec::new(),
            xk: Vec::new(),
            x8: Vec::new(),
        };
        let x = rand_vec(m * k, 2);
        match fmt {
            "q4_k" => {
                let w = rand_q4k(n * k / 256, 1);
                c.w4 = vec![w; copies];
                c.xk = q8k(&x);
            }
            "q6_k" => {
                let w = rand_q6k(n * k / 256, 1);
                c.w6 = vec![w; copies];
                c.xk = q8k(&x);
            }
            "q4_kx8" => {
                let w = repack_q4_kx8(&rand_q4k(n * k / 256, 1), n, k);
                c.w4x8 = vec![w; copies];
                c.xk = q8k(&x);
            }
            "q6_kx8" => {
                let w = repack_q6_kx8(&rand_q6k(n * k / 256, 1), n, k);
                c.w6x8 = vec![w; copies];
                c.xk = q8k(&x);
            }
            "q4_1x8" => {
                let w = repack_q4_1x8(&rand_q4_1(n * k / 32, 1), n, k);
                c.w41x8 = vec![w; copies];
                c.x8 = q8(&x);
            }
            _ => {
                let w = rand_q5_0(n * k / 32, 1);
                c.w5 = vec![w; copies];
                c.x8 = q8(&x);
            }
        }
        c
    }
    fn copies(&self) -> usize {
        [
            self.w4.len(),
            self.w6.len(),
            self.w5.len(),
            self.w4x8.len(),
            self.w6x8.len(),
            self.w41x8.len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
    fn run(&self, set: &dyn KernelSet, fmt: &str, n: usize, k: usize, i: usize, out: MatMut<'_>) {
        match fmt {
            "q4_k" => set.matmul_q4_k(n, k)(&self.w4[i], &self.xk, None, out, false),
            "q6_k" => set.matmul_q6_k(n, k)(&self.w6[i], &self.xk, None, out, false),
            "q4_kx8" => set.matmul_q4_kx8(n, k)(&self.w4x8[i], &self.xk, None, out, false),
            "q6_kx8" => set.matmul_q6_kx8(n, k)(&self.w6x8[i], &self.xk, None, out, false),
            "q4_1x8" => set.matmul_q4_1x8(n, k)(&self.w41x8[i], &self.x8, None, out, false),
            _ => set.matmul_q5_0(n, k)(&self.w5[i], &self.x8, None, out, false),
        }
    }
}

/// Weight bytes of an `n × k` matrix of `fmt`.
fn kquant_bytes(fmt: &str, n: usize, k: usize) -> usize {
    match fmt {
        "q4_k" => n * k / 256 * 144,
        "q6_k" | "q6_kx8" => n * k / 256 * 210,
        "q4_kx8" => n * k / 256 * 156,
        "q4_1x8" => n * k / 32 * 20,
        _ => n * k / 32 * 22,
    }
}

/// The K-quant and Q5_0 matmuls at gemma-3-270m shapes.
fn kquant_bars(set: &'static dyn KernelSet, bw: f64, peak: f64) {
    let isa = set.isa().name();
    println!("== gemma-3-270m K-quant / Q5_0 matmuls ({isa}) ==");
    for &(fmt, n, k) in KQUANT_SHAPES {
        let bytes = kquant_bytes(fmt, n, k);
        // One token, weights streamed from DRAM.
        let c = KquantCase::new(fmt, n, k, 1, 320 << 20);
        let mut out = vec![0.0f32; n];
        let rounds = c.copies() * 2;
        let t = Instant::now();
        for r in 0..rounds {
            c.run(
                set,
                fmt,
                n,
                k,
                r % c.copies(),
                MatMut::new(&mut out, 1, n, n),
            );
        }
        let per = t.elapsed().as_secs_f64() / rounds as f64;
        let gbs = bytes as f64 / per / 1e9;
        // One token, weights in cache.
        let t1 = min_time(100, || {
            c.run(set, fmt, n, k, 0, MatMut::new(&mut out, 1, n, n))
        });
        let gbs1 = bytes as f64 / t1.as_secs_f64() / 1e9;
        println!(
            "matvec {fmt} n{n} k{k}: from DRAM {:.1} us, {gbs:.1} GB/s = {:.0}% of read bandwidth; in cache {:.1} us, {gbs1:.1} GB/s",
            per * 1e6,
            100.0 * gbs / bw,
            t1.as_secs_f64() * 1e6,
        );
        // 64 tokens, weights in cache.
        let m = 64;
        let c = KquantCase::new(fmt, n, k, m, 0);
        let mut out = vec![0.0f32; m * n];
        let t = min_time(10, || {
            c.run(set, fmt, n, k, 0, MatMut::new(&mut out, m, n, n))
        });
        let gops = (2 * m * n * k) as f64 / t.as_secs_f64() / 1e9;
        println!(
            "matmul {fmt} n{n} k{k} m{m} in cache: {:.0} us, {gops:.1} GOPS = {:.0}% of the Q8_0 int8 peak",
            t.as_secs_f64() * 1e6,
            100.0 * gops / peak
        );
    }
    let x = rand_vec(2048 * 64, 3);
    let mut xb = vec![BlockQ8K::default(); x.len() / 256];
    let t = min_time(50, || set.quantize_q8_k(2048)(&x, &mut xb));
    println!(
        "quantize_q8_k k2048 m64: {:.1} us, {:.1} GB/s of f32 input",
        t.as_secs_f64() * 1e6,
        (x.len() * 4) as f64 / t.as_secs_f64() / 1e9
    );
}

/// The Q4_1 and Q8_0 8-row-group matmuls side by side at SmolLM2-135M's
/// shapes (the same activations: both read Q8_0).
fn smollm2_bars(set: &'static dyn KernelSet, bw: f64) {
    let isa = set.isa().name();
    println!("== SmolLM2-135M Q4_1 vs Q8_0 matmuls ({isa}) ==");
    for (n, k) in [(1536usize, 576usize), (576, 576), (192, 576), (576, 1536)] {
        let wv = rand_vec(n * k, 21);
        let w8 = repack_q8_0x8(&q8(&wv), n, k);
        let w41 = repack_q4_1x8(&rand_q4_1(n * k / 32, 22), n, k);
        for m in [1usize, 64] {
            let x = q8(&rand_vec(m * k, 23));
            let mut out = vec![0.0f32; m * n];
            let reps = if m == 1 { 2000 } else { 50 };
            let t41 = min_time(reps, || {
                set.matmul_q4_1x8(n, k)(&w41, &x, None, MatMut::new(&mut out, m, n, n), false)
            });
            let t8 = min_time(reps, || {
                set.matmul_q8_0x8(n, k)(&w8, &x, None, MatMut::new(&mut out, m, n, n), false)
            });
            let gops = |t: Duration| (2 * m * n * k) as f64 / t.as_secs_f64() / 1e9;
            println!(
                "n{n} k{k} m{m} in cache: q4_1x8 {:.1} us {:.1} GOPS, q8_0x8 {:.1} us {:.1} GOPS ({:.2}x)",
                t41.as_secs_f64() * 1e6,
                gops(t41),
                t8.as_secs_f64() * 1e6,
                gops(t8),
                t8.as_secs_f64() / t41.as_secs_f64()
            );
        }
        // One token, weights streamed from DRAM.
        let c = KquantCase::new("q4_1x8", n, k, 1, 320 << 20);
        let mut out = vec![0.0f32; n];
        let rounds = c.copies() * 2;
        let t = Instant::now();
        for r in 0..rounds {
            c.run(
                set,
                "q4_1x8",
                n,
                k,
                r % c.copies(),
                MatMut::new(&mut out, 1, n, n),
            );
        }
        let per = t.elapsed().as_secs_f64() / rounds as f64;
        let gbs = kquant_bytes("q4_1x8", n, k) as f64 / per / 1e9;
        println!(
            "n{n} k{k} m1 q4_1x8 from DRAM: {:.1} us, {gbs:.1} GB/s = {:.0}% of read bandwidth, {:.1} GOPS",
            per * 1e6,
            100.0 * gbs / bw,
            (2 * n * k) as f64 / per / 1e9
        );
    }
}

fn report(what: &str, spec: Duration, generic: Duration) {
    println!(
        "specialized vs generic, {what}: {:.2} us vs {:.2} us ({:+.1}%)",
        spec.as_secs_f64() * 1e6,
        generic.as_secs_f64() * 1e6,
        100.0 * (generic.as_secs_f64() / spec.as_secs_f64() - 1.0)
    );
}

/// EmbeddingGemma attention inputs: 3 query heads, 1 KV head of 256.
fn attn_inputs(n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>, AttnShape) {
    let shape = AttnShape {
        n_tokens: n,
        n_head: 3,
        n_head_kv: 1,
        head_dim: 256,
        scale: 1.0 / 16.0,
        mask: Mask::Window { radius: 256 },
    };
    (
        rand_vec(n * 768, 11),
        rand_vec(n * 256, 12),
        rand_vec(n * 256, 13),
        shape,
    )
}

fn bench_set(c: &mut Criterion, set: &'static dyn KernelSet) {
    let isa = set.isa().name();
    // Q8_0 matmul: one token (weights in cache here; DRAM in `bars`) and 64.
    let mut g = c.benchmark_group(format!("matmul_q8_0/{isa}"));
    for (n, k) in [
        (768usize, 768usize),
        (256, 768),
        (1152, 768),
        (768, 1152),
        (3072, 768),
        (768, 3072),
    ] {
        let w = q8(&rand_vec(n * k, 1));
        for m in [1usize, 64] {
            let x = q8(&rand_vec(m * k, 2));
            let mut out = vec![0.0f32; m * n];
            let f = set.matmul_q8_0(n, k);
            g.throughput(Throughput::Elements((2 * m * n * k) as u64));
            g.bench_function(format!("n{n}_k{k}_m{m}"), |b| {
                b.iter(|| f(&w, &x, None, MatMut::new(&mut out, m, n, n), false))
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group(format!("matmul_kquant/{isa}"));
    for &(fmt, n, k) in KQUANT_SHAPES {
        for m in [1usize, 64] {
            let kc = KquantCase::new(fmt, n, k, m, 0);
            let mut out = vec![0.0f32; m * n];
            g.throughput(Throughput::Elements((2 * m * n * k) as u64));
            g.bench_function(format!("{fmt}_n{n}_k{k}_m{m}"), |b| {
                b.iter(|| kc.run(set, fmt, n, k, 0, MatMut::new(&mut out, m, n, n)))
            });
        }
    }
    g.finish();

    let x = rand_vec(768 * 64, 3);
    let w = rand_vec(768, 4);
    let mut g = c.benchmark_group(format!("quantize_q8_0/{isa}"));
    let mut blocks = vec![BlockQ8_0::default(); x.len() / 32];
    g.throughput(Throughput::Bytes((x.len() * 4) as u64));
    g.bench_function("k768_m64", |b| {
        b.iter(|| set.quantize_q8_0(768)(&x, &mut blocks))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("norm/{isa}"));
    let mut o = vec![0.0f32; x.len()];
    g.throughput(Throughput::Bytes((x.len() * 4) as u64));
    g.bench_function("rms_norm_768_m64", |b| {
        b.iter(|| set.rms_norm(768)(&x, &w, 1e-6, &mut o))
    });
    g.bench_function("rms_norm_q8_0_768_m64", |b| {
        b.iter(|| set.rms_norm_q8_0(768)(&x, &w, 1e-6, &mut blocks))
    });
    g.bench_function("layer_norm_768_m64", |b| {
        b.iter(|| set.layer_norm(768)(&x, &w, &w, 1e-12, &mut o))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("rope/{isa}"));
    let (cos, sin): (Vec<f32>, Vec<f32>) = (0..64 * 128)
        .map(|i| ((i as f32).cos(), (i as f32).sin()))
        .unzip();
    let mut q = rand_vec(64 * 768, 5);
    g.throughput(Throughput::Bytes((q.len() * 4) as u64));
    g.bench_function("hd256_h3_m64", |b| {
        b.iter(|| set.rope(256)(&mut q, 3, 256, 0, &cos, &sin, true))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("attention/{isa}"));
    for n in [16usize, 128] {
        let (q, k, v, shape) = attn_inputs(n);
        let mut out = vec![0.0; q.len()];
        let mut scratch = vec![0.0; attention_scratch_len(n, 256)];
        g.throughput(Throughput::Elements((4 * n * n * 3 * 256) as u64));
        g.bench_function(format!("hd256_h3kv1_n{n}"), |b| {
            b.iter(|| set.attention(256)(&q, &k, &v, &shape, 0..n, &mut out, &mut scratch))
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("ffn/{isa}"));
    let gate = rand_vec(1152 * 16, 6);
    let up = rand_vec(1152 * 16, 7);
    let mut gb = vec![BlockQ8_0::default(); gate.len() / 32];
    g.throughput(Throughput::Elements(gate.len() as u64));
    g.bench_function("geglu_q8_0_1152_m16", |b| {
        b.iter(|| set.geglu_q8_0(1152)(&gate, &up, &mut gb))
    });
    let mut t = gate.clone();
    let (sgate, sup) = (rand_vec(1536 * 16, 8), rand_vec(1536 * 16, 9));
    let mut sb = vec![BlockQ8_0::default(); sgate.len() / 32];
    g.bench_function("swiglu_q8_0_1536_m16", |b| {
        b.iter(|| set.swiglu_q8_0(1536)(&sgate, &sup, &mut sb))
    });
    g.bench_function("gelu_tanh_1152_m16", |b| {
        b.iter(|| {
            t.copy_from_slice(&gate);
            set.gelu_tanh()(&mut t)
        })
    });
    g.bench_function("gelu_erf_1152_m16", |b| {
        b.iter(|| {
            t.copy_from_slice(&gate);
            set.gelu_erf()(&mut t)
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("misc/{isa}"));
    let table = q8(&rand_vec(768 * 1024, 8));
    let ids: Vec<u32> = (0..64).map(|i| (i * 37) % 1024).collect();
    let mut emb = vec![0.0; 64 * 768];
    g.throughput(Throughput::Elements(emb.len() as u64));
    g.bench_function("gather_q8_0_768_m64", |b| {
        b.iter(|| set.gather_q8_0(768)(&table, 768, &ids, 27.7, &mut emb))
    });
    let mut pooled = vec![0.0; 768];
    g.bench_function("mean_pool_768_m64", |b| {
        b.iter(|| set.mean_pool(768)(&x, &mut pooled))
    });
    g.bench_function("l2_normalize_768", |b| {
        b.iter(|| set.l2_normalize()(&mut pooled))
    });
    g.finish();
}

fn main() {
    let all = std::env::var_os("KILN_BENCH_ALL_ISAS").is_some();
    let sets: Vec<&'static dyn KernelSet> = if all {
        compiled().iter().filter_map(|&i| for_isa(i)).collect()
    } else {
        vec![best()]
    };
    let bw = limits::read_bandwidth_gbs(1);
    println!("== machine limits (single thread) ==");
    println!("DRAM read bandwidth: {bw:.1} GB/s");
    for &set in &sets {
        let peak = limits::int8_peak_gops(set.isa()).expect("supported ISA has a probe");
        println!(
            "int8 dot peak ({}, the Q8_0 block-dot instruction sequence): {peak:.1} GOPS",
            set.isa().name()
        );
        if std::env::var_os("KILN_BENCH_ONLY_SMOLLM2").is_none() {
            bars(set, bw, peak);
            kquant_bars(set, bw, peak);
        }
        smollm2_bars(set, bw);
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10)
        .configure_from_args();
    for &set in &sets {
        bench_set(&mut c, set);
    }
    c.final_summary();
}
