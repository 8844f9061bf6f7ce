//! Scratch memory of one worker and the thread splitting of row-wise steps.

use crate::kernels::{AttentionFn, AttnShape};
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
    let parts = threads.max(1).min(n);
    let scores = sized(scores, parts * n);
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
        f(q, k, v, shape, rows, out, &mut scores[..shape.n_tokens]);
        return;
    }
    let left_parts = parts / 2;
    let mid = rows.start + rows.len() * left_parts / parts;
    let width = shape.n_head * shape.head_dim;
    let (out_a, out_b) = out.split_at_mut((mid - rows.start) * width);
    let (s_a, s_b) = scores.split_at_mut(left_parts * shape.n_tokens);
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
        for p in 0..positions {
            for &f in &inv_freq {
                let theta = p as f64 * f;
                cos.push(theta.cos() as f32);
                sin.push(theta.sin() as f32);
            }
        }
        RopeTable { cos, sin }
    }
}
