//! This machine's limits, for benches and `kiln bench --limits`: read
//! bandwidth, the int8 multiply-add peak of the kernels' dot sequence, and
//! the int8 ceiling of the ISA's best multiply-accumulate instructions on
//! registers (what no kernel can beat).

use std::hint::black_box;
use std::time::Instant;

use kiln_runtime::kernels::Isa;

/// Read bandwidth in GB/s of `threads` threads, each summing its own
/// 256 MiB buffer (best of 5).
pub fn read_bandwidth_gbs(threads: usize) -> f64 {
    let threads = threads.max(1);
    let bufs: Vec<Vec<u64>> = (0..threads).map(|_| vec![1u64; 32 << 20]).collect();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for b in &bufs {
                s.spawn(move || {
                    black_box(b.chunks_exact(4).fold([0u64; 4], |a, c| {
                        [
                            a[0].wrapping_add(c[0]),
                            a[1].wrapping_add(c[1]),
                            a[2].wrapping_add(c[2]),
                            a[3].wrapping_add(c[3]),
                        ]
                    }))
                });
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    (threads * (32 << 20) * 8) as f64 / best / 1e9
}

/// GOPS of `run(iters)` doing `ops_per_iter` int ops a round: best of 5.
fn best_gops(ops_per_iter: usize, iters: usize, run: impl Fn(usize) -> i32) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        black_box(run(iters));
        best = best.min(t.elapsed().as_secs_f64());
    }
    (ops_per_iter * iters) as f64 / best / 1e9
}

/// int8 multiply-add peak of one core in GOPS (2 ops per multiply-add)
/// with `isa`'s Q8_0 block-dot instruction sequence (best of 5); `None` if
/// the ISA is not compiled or not supported here.
pub fn int8_peak_gops(isa: Isa) -> Option<f64> {
    let probe = super::int8_dot_probe(isa)?;
    let mut xs = [[0i8; 32]; 8];
    for (i, x) in xs.iter_mut().flatten().enumerate() {
        *x = ((i * 37 % 255) as i32 - 127) as i8;
    }
    Some(best_gops(64 * 8, 1 << 21, |iters| {
        probe(black_box(&xs), iters)
    }))
}

/// One register-only int8 multiply-accumulate sequence, measured.
#[derive(Clone, Copy, Debug)]
pub struct Int8CeilingForm {
    /// The instructions, e.g. `vpdpbusd zmm`.
    pub instructions: &'static str,
    /// int8 GOPS of one core (2 ops per multiply-add), best of 5.
    pub gops: f64,
    /// Whether it counts toward the ISA's ceiling (see
    /// [`Int8CeilingProbe::in_ceiling`](super::Int8CeilingProbe::in_ceiling)).
    pub in_ceiling: bool,
}

/// Every register-only int8 probe of `isa` (see
/// [`int8_ceiling_probes`](super::int8_ceiling_probes)) measured on one
/// core, best form first; empty where the ISA has none (scalar) or is not
/// supported here.
pub fn int8_ceiling_forms(isa: Isa) -> Vec<Int8CeilingForm> {
    let mut xs = [[0i8; 64]; 2];
    for (i, x) in xs.iter_mut().flatten().enumerate() {
        *x = ((i * 37 % 255) as i32 - 127) as i8;
    }
    super::int8_ceiling_probes(isa)
        .into_iter()
        .map(|p| {
            let ops = 2 * p.macs_per_op * p.chains;
            // About 2^30 multiply-adds a run, whatever the form's width.
            let iters = (1usize << 31) / ops;
            Int8CeilingForm {
                instructions: p.instructions,
                gops: best_gops(ops, iters, |iters| (p.probe)(black_box(&xs), iters)),
                in_ceiling: p.in_ceiling,
            }
        })
        .collect()
}

/// The int8 ceiling of one core in GOPS: the fastest of `forms` that counts
/// toward the ISA's ceiling; `None` if there is none.
pub fn int8_ceiling_gops(forms: &[Int8CeilingForm]) -> Option<f64> {
    forms
        .iter()
        .filter(|f| f.in_ceiling)
        .map(|f| f.gops)
        .reduce(f64::max)
}
