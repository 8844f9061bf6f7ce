//! GOPS of the Q8_0 8-row-group matmul (most of an embedding's time) and
//! GFLOP/s of attention at all-MiniLM-L6-v2's shapes, weights in cache, one
//! thread, with the best
//! kernel set of this build (`KILN_ISA=avx2` or `scalar` picks another
//! natively). It builds for wasm32-wasip1 too, to see what a WebAssembly
//! engine makes of the same kernels (see docs/wasm.md):
//!
//! ```text
//! cargo run --release --example kernel_gops
//! CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C target-feature=+simd128" \
//! CARGO_TARGET_WASM32_WASIP1_RUNNER="node wasm/tests/wasi-run.mjs" \
//!     cargo run --release --target wasm32-wasip1 --no-default-features --example kernel_gops
//! ```

use std::hint::black_box;
use std::time::Instant;

use kiln::kernels::best;
use kiln::runtime::kernels::{AttnShape, Mask, MatMut, attention_scratch_len};
use kiln::runtime::quant::{BlockQ8_0, quantize_row_q8_0_reference, repack_q8_0x8};

/// Deterministic values in `[-1, 1)`.
fn values(len: usize, seed: u32) -> Vec<f32> {
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

/// Seconds of one `run()` (best of 5 timings of about `work` units each),
/// after one warm-up call.
fn seconds(work: usize, per_run: usize, mut run: impl FnMut()) -> f64 {
    run();
    let reps = (work / per_run).max(1);
    let mut best_s = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            run();
        }
        best_s = best_s.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best_s
}

fn main() {
    let set = best();
    println!("isa {}", set.isa().name());
    // Attention: 12 heads of 32, every token sees every token.
    for n in [4, 50] {
        let (nh, hd) = (12, 32);
        let q = values(n * nh * hd, 3);
        let k = values(n * nh * hd, 4);
        let v = values(n * nh * hd, 5);
        let shape = AttnShape {
            n_tokens: n,
            n_head: nh,
            n_head_kv: nh,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            mask: Mask::Full,
        };
        let mut out = vec![0.0f32; n * nh * hd];
        let mut scratch = vec![0.0f32; attention_scratch_len(n, hd)];
        let f = set.attention(hd);
        let flops = 4 * n * n * nh * hd;
        let s = seconds(1 << 29, flops, || {
            f(
                black_box(&q),
                black_box(&k),
                black_box(&v),
                &shape,
                0..n,
                &mut out,
                &mut scratch,
            )
        });
        println!(
            "attention n {n:>3} heads {nh} x {hd}  {:>8.1} us  {:>6.1} GFLOP/s",
            s * 1e6,
            flops as f64 / s / 1e9
        );
        black_box(&out);
    }
    // (tokens, n, k): "Hello world" is 4 tokens, the mixed texts ~50; the
    // layers' matmuls are 384x384 (q, k, v, out), 1536x384 and 384x1536.
    for (m, n, k) in [
        (4, 384, 384),
        (4, 1536, 384),
        (4, 384, 1536),
        (50, 384, 384),
        (50, 1536, 384),
        (50, 384, 1536),
    ] {
        let w = repack_q8_0x8(&q8(&values(n * k, 1)), n, k);
        let x = q8(&values(m * k, 2));
        let mut out = vec![0.0f32; m * n];
        let f = set.matmul_q8_0x8(n, k);
        let s = seconds(1 << 30, m * n * k, || {
            f(
                black_box(&w),
                black_box(&x),
                None,
                MatMut::new(&mut out, m, n, n),
                false,
            )
        });
        let gops = 2.0 * (m * n * k) as f64 / s / 1e9;
        println!(
            "m {m:>3} n {n:>5} k {k:>5}  {:>8.1} us  {gops:>6.1} GOPS",
            s * 1e6
        );
        black_box(&out);
    }
}
