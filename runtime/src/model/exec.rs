//! Scratch memory of one worker and the thread splitting of row-wise steps.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::kernels::{AttentionFn, AttnShape, attention_scratch_len};
use crate::quant::{BlockQ8_0, BlockQ8K};

/// Scratch buffers of one worker. They grow to the longest input seen and are
/// reused afterwards, so a warm forward pass does not allocate.
#[derive(Default)]
pub struct Workspace {
    /// Residual stream `[n][hidden]`.
    pub(crate) x: Vec<f32>,
    /// Normed or temporary rows `[n][hidden]`.
    pub(crate) t: Vec<f32>,
    /// Queries, keys, values and attention output.
    pub(crate) q: Vec<f32>,
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) att: Vec<f32>,
    /// Feed-forward intermediates `[n][ffn]`.
    pub(crate) ff_a: Vec<f32>,
    pub(crate) ff_b: Vec<f32>,
    /// Quantized matmul input.
    pub(crate) xq: Vec<BlockQ8_0>,
    pub(crate) xqk: Vec<BlockQ8K>,
    /// Attention score rows, one per thread.
    pub(crate) scores: Vec<f32>,
    /// Pooled vectors and the projections after pooling.
    pub(crate) pooled: Vec<f32>,
    pub(crate) pooled_b: Vec<f32>,
    /// The sequences of a packed forward pass.
    pub(crate) segments: Vec<Segment>,
}

/// `len` consecutive rows of a forward pass at positions `pos0..pos0 + len`:
/// one sequence of a packed batch, or a decoder's new tokens.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    pub(crate) len: usize,
    pub(crate) pos0: usize,
}

/// Runs `f` (one forward pass) with the current rayon pool's other
/// `threads - 1` workers kept awake: each spins, taking the pass's split
/// work (`rayon::join` halves) as soon as it is queued, until `f` returns.
///
/// Without this, a worker falls asleep between two matmuls and every split
/// pays a wake-up (measured ~40 us on our 2-vCPU VMs: MiniLM's "Hello
/// world" took 1.05 ms on 2 threads against 0.75 ms on 1). With it, a pass
/// pays one wake-up per helper, at its start. Built on `rayon::join` (stack
/// jobs), so a warm pass still does not allocate.
pub fn with_hot_workers<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    let Some(caller) = rayon::current_thread_index() else {
        return f();
    };
    let helpers = threads.min(rayon::current_num_threads()).saturating_sub(1);
    if helpers == 0 {
        return f();
    }
    let running = AtomicBool::new(true);
    let (r, ()) = rayon::join(
        || {
            let _stop = StopOnDrop(&running);
            f()
        },
        || keep_awake(&running, caller, helpers),
    );
    r
}

/// Clears the flag when the pass ends, panicking or not.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Keeps `n` workers (this one first) busy-waiting for work while `running`.
fn keep_awake(running: &AtomicBool, caller: usize, n: usize) {
    // The pass's own thread may pick this up while it waits in a join: it
    // must not spin there, waiting for itself.
    if n == 0 || rayon::current_thread_index() == Some(caller) {
        return;
    }
    let spin = || {
        while running.load(Ordering::Acquire) {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::hint::spin_loop();
            }
        }
    };
    if n == 1 {
        spin();
    } else {
        rayon::join(spin, || keep_awake(running, caller, n - 1));
    }
}

/// Resizes `buf` to `len` (allocating only when it grows past its capacity)
/// and returns it.
pub(crate) fn sized<T: Default + Clone>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    &mut buf[..len]
}

/// Runs attention for all query rows, split across `threads` by rows.
#[expect(
    clippy::too_many_arguments,
    reason = "mirrors the kernel's signature plus threading"
)]
pub(crate) fn attention(
    f: AttentionFn,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: &AttnShape,
    out: &mut [f32],
    scores: &mut Vec<f32>,
    threads: usize,
) {
    let n = shape.n_tokens;
    let width = shape.n_head * shape.head_dim;
    // Below MIN_MACS_PER_THREAD (short texts) a fork costs more than it saves.
    let work = n * n * shape.n_head * shape.head_dim * 2;
    let parts = threads
        .clamp(1, (work / super::linear::MIN_MACS_PER_THREAD).max(1))
        .min(n);
    let per = attention_scratch_len(n, shape.head_dim);
    let scores = sized(scores, parts * per);
    split_rows(
        f,
        q,
        k,
        v,
        shape,
        0..n,
        &mut out[..n * width],
        scores,
        parts,
    );
}

#[expect(clippy::too_many_arguments, reason = "recursive helper of `attention`")]
fn split_rows(
    f: AttentionFn,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: &AttnShape,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
    scores: &mut [f32],
    parts: usize,
) {
    if parts <= 1 || rows.len() < 2 {
        f(
            q,
            k,
            v,
            shape,
            rows,
            out,
            &mut scores[..attention_scratch_len(shape.n_tokens, shape.head_dim)],
        );
        return;
    }
    let left_parts = parts / 2;
    let mid = rows.start + rows.len() * left_parts / parts;
    let width = shape.n_head * shape.head_dim;
    let (out_a, out_b) = out.split_at_mut((mid - rows.start) * width);
    let (s_a, s_b) =
        scores.split_at_mut(left_parts * attention_scratch_len(shape.n_tokens, shape.head_dim));
    rayon::join(
        || split_rows(f, q, k, v, shape, rows.start..mid, out_a, s_a, left_parts),
        || {
            split_rows(
                f,
                q,
                k,
                v,
                shape,
                mid..rows.end,
                out_b,
                s_b,
                parts - left_parts,
            )
        },
    );
}

/// Cos/sin tables of rotary embeddings, `[position][head_dim / 2]`.
pub(crate) struct RopeTable {
    pub(crate) cos: Vec<f32>,
    pub(crate) sin: Vec<f32>,
}

impl RopeTable {
    /// `θ(p, i) = p · base^(-2i/d)`, computed in f64 and rounded once.
    pub(crate) fn new(base: f32, head_dim: usize, positions: usize) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| f64::from(base).powf(-2.0 * i as f64 / head_dim as f64))
            .collect();
        // Rotations by each frequency, advanced one position at a time by a
        // complex multiply in f64 and re-anchored on exact cos/sin every
        // `ANCHOR` positions (the drift stays ~1e-14, far below f32's
        // rounding): about 30× faster at open than a sin/cos per entry.
        const ANCHOR: usize = 64;
        cos.resize(positions * half, 0.0);
        sin.resize(positions * half, 0.0);
        for (i, &f) in inv_freq.iter().enumerate() {
            let (ss, cs) = f.sin_cos();
            let (mut c, mut s) = (1.0f64, 0.0f64);
            for p in 0..positions {
                if p % ANCHOR == 0 {
                    (s, c) = (p as f64 * f).sin_cos();
                }
                cos[p * half + i] = c as f32;
                sin[p * half + i] = s as f32;
                (c, s) = (c * cs - s * ss, s * cs + c * ss);
            }
        }
        RopeTable { cos, sin }
    }
}

#[cfg(test)]
mod tests {
    use super::RopeTable;

    #[test]
    fn rope_table_matches_direct_sin_cos() {
        // Gemma's bases and head width, over EmbeddingGemma's context.
        for base in [10_000.0f32, 1_000_000.0] {
            let (d, n) = (256usize, 2048usize);
            let t = RopeTable::new(base, d, n);
            let mut differ = 0;
            for p in 0..n {
                for i in 0..d / 2 {
                    let f = f64::from(base).powf(-2.0 * i as f64 / d as f64);
                    let (s, c) = (p as f64 * f).sin_cos();
                    let (gc, gs) = (t.cos[p * d / 2 + i], t.sin[p * d / 2 + i]);
                    // At most one f32 rounding step away from the exact value.
                    assert!((f64::from(gc) - c).abs() <= 6e-8, "cos p={p} i={i}");
                    assert!((f64::from(gs) - s).abs() <= 6e-8, "sin p={p} i={i}");
                    differ += usize::from(gc != c as f32) + usize::from(gs != s as f32);
                }
            }
            // Rounded once from nearly the exact value: almost all equal.
            assert!(
                differ * 10_000 < n * d,
                "{differ} of {} entries differ",
                n * d
            );
        }
    }
}
