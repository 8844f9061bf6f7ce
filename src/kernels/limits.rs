//! This machine's limits, for benches and `kiln bench --limits`: read
//! bandwidth and the int8 multiply-add peak of the kernels' dot sequence.

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

/// int8 multiply-add peak of one core in GOPS (2 ops per multiply-add)
/// with `isa`'s Q8_0 block-dot instruction sequence (best of 5); `None` if
/// the ISA is not compiled or not supported here.
pub fn int8_peak_gops(isa: Isa) -> Option<f64> {
    let probe = super::int8_dot_probe(isa)?;
    let mut xs = [[0i8; 32]; 8];
    for (i, x) in xs.iter_mut().flatten().enumerate() {
        *x = ((i * 37 % 255) as i32 - 127) as i8;
    }
    let iters = 1 << 21;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        black_box(probe(black_box(&xs), iters));
        best = best.min(t.elapsed().as_secs_f64());
    }
    Some((64 * 8 * iters) as f64 / best / 1e9)
}
