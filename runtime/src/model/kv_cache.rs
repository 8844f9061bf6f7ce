//! The key/value cache of a decoder and attention over it.
//!
//! Preallocated once per session for the planned context. A global layer
//! keeps one slot per position; a sliding-window layer keeps a ring of
//! `window + MAX_CHUNK` slots (position `p` in slot `p % slots`): a chunk
//! of up to `MAX_CHUNK` new tokens is written before it is attended to, so
//! the ring must hold the window of its first query as well as the chunk
//! (llama.cpp sizes its SWA cache `n_swa + n_ubatch` for the same reason).
//!
//! Keys are stored after RoPE, so the order of slots does not matter to
//! attention; only which positions a query may see (its mask) does.
//!
//! Attention over the cache is a generated kernel, `attend_cache` (f32) or
//! `attend_cache_f16` (which converts rows as it reads them): per position
//! and KV head, its group of query heads over the one or two spans of slots
//! the mask allows, each cached row read once for the group. (In plain Rust
//! the f32 one was 16% of a Gemma-3-270M decode step at ~700 positions, 13%
//! generated; the f16 one made a 1,864-token prefill 3x slower than f32.)

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use rayon::prelude::*;

use super::exec::sized;
use crate::kernels::{AttendCacheF16Fn, AttendCacheFn, CacheAttn};

/// Tokens a forward pass processes at once; longer inputs are split.
pub const MAX_CHUNK: usize = 512;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// 4 bytes per value: exact.
    #[default]
    F32,
    /// 2 bytes per value, as llama.cpp stores its cache by default; half
    /// the memory, rounding each key and value to f16.
    F16,
}

impl KvType {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
        }
    }

    fn size(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }
}

/// One layer's keys and values, of one element type.
enum Buf {
    F32 {
        k: Vec<f32>,
        v: Vec<f32>,
    },
    /// f16 bits: a zeroed `Vec<u16>` comes from the allocator's zeroed pages
    /// and costs memory only as positions fill, like the f32 cache, where
    /// `vec![f16::ZERO; n]` would write every page up front.
    F16 {
        k: Vec<u16>,
        v: Vec<u16>,
    },
}

impl Buf {
    fn new(ty: KvType, len: usize) -> Self {
        match ty {
            KvType::F32 => Buf::F32 {
                k: vec![0.0; len],
                v: vec![0.0; len],
            },
            KvType::F16 => Buf::F16 {
                k: vec![0; len],
                v: vec![0; len],
            },
        }
    }

    /// Stores one position's keys and values at offset `at`.
    fn write(&mut self, at: usize, kr: &[f32], vr: &[f32]) {
        match self {
            Buf::F32 { k, v } => {
                k[at..at + kr.len()].copy_from_slice(kr);
                v[at..at + vr.len()].copy_from_slice(vr);
            }
            Buf::F16 { k, v } => {
                for (dst, src) in [(k, kr), (v, vr)] {
                    dst[at..at + src.len()]
                        .reinterpret_cast_mut::<f16>()
                        .convert_from_f32_slice(src);
                }
            }
        }
    }
}

/// The generated cache attention kernels, one per element type (the
/// cache's type picks one).
#[derive(Clone, Copy)]
pub(crate) struct CacheKernels {
    pub(crate) f32: AttendCacheFn,
    pub(crate) f16: AttendCacheF16Fn,
}

/// One layer's keys and values.
struct LayerCache {
    kv: Buf,
    /// Ring size in positions.
    slots: usize,
    /// Sliding window length, `None` for a global layer.
    window: Option<usize>,
}

/// Shape of the cache: one entry per layer, `Some(window)` for a
/// sliding-window layer.
#[derive(Clone, Debug)]
pub struct CacheShape {
    /// Per layer: sliding window or global.
    pub windows: Vec<Option<usize>>,
    /// Width of one position's keys (= values): `n_head_kv · head_dim`.
    pub kv_dim: usize,
    /// Positions the cache holds.
    pub context: usize,
}

/// A preallocated key/value cache for one sequence.
pub struct KvCache {
    layers: Vec<LayerCache>,
    kv_dim: usize,
    context: usize,
    len: usize,
    ty: KvType,
}

impl KvCache {
    /// Allocates the cache.
    pub fn new(shape: &CacheShape, ty: KvType) -> Self {
        let layers = shape
            .windows
            .iter()
            .map(|&window| {
                let slots = match window {
                    Some(w) => (w + MAX_CHUNK).min(shape.context),
                    None => shape.context,
                };
                LayerCache {
                    kv: Buf::new(ty, slots * shape.kv_dim),
                    slots,
                    window,
                }
            })
            .collect();
        KvCache {
            layers,
            kv_dim: shape.kv_dim,
            context: shape.context,
            len: 0,
            ty,
        }
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Element type.
    pub fn kv_type(&self) -> KvType {
        self.ty
    }

    /// Bytes allocated.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| 2 * l.slots * self.kv_dim * self.ty.size())
            .sum()
    }

    /// Forgets every position (the memory is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` positions (a shared prompt prefix, or the
    /// accepted part of a speculative pass). Possible while every
    /// sliding-window ring still holds the window before `len`: always
    /// for a roll-back of at most `MAX_CHUNK` positions, and for any
    /// length before a ring wraps.
    pub fn truncate(&mut self, len: usize) -> bool {
        if len >= self.len {
            return true;
        }
        let lost = self.layers.iter().any(|l| {
            // Positions below `self.len - slots` were overwritten.
            let overwritten_below = self.len.saturating_sub(l.slots);
            let needed_from = len.saturating_sub(l.window.unwrap_or(len));
            overwritten_below > needed_from
        });
        if lost {
            return false;
        }
        self.len = len;
        true
    }

    /// Marks `n` more positions filled (after every layer wrote them).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Stores rows `k`, `v` (`[n][kv_dim]`) of `layer` at positions
    /// `pos0..pos0 + n`.
    pub(crate) fn write(&mut self, layer: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let kvd = self.kv_dim;
        let l = &mut self.layers[layer];
        for (r, (kr, vr)) in k.chunks_exact(kvd).zip(v.chunks_exact(kvd)).enumerate() {
            let at = ((pos0 + r) % l.slots) * kvd;
            l.kv.write(at, kr, vr);
        }
    }

    /// Causal attention of queries `q` (`[n][n_head · head_dim]`, positions
    /// `pos0..pos0 + n`) over `layer`'s cached positions, into `out` (same
    /// shape): query at `p` sees keys `j <= p`, and on a sliding-window layer
    /// only `p - window < j` (llama.cpp's standard SWA mask).
    ///
    /// One call of the kernel of `f` for the cache's element type per
    /// position and KV head (its group of query heads read each cached row
    /// once); a decode step's single position splits its group across
    /// `threads`. `scratch` holds the scores of a call on one thread.
    #[expect(clippy::too_many_arguments, reason = "one attention call's shape")]
    pub(crate) fn attend(
        &self,
        f: CacheKernels,
        layer: usize,
        q: &[f32],
        pos0: usize,
        heads: (usize, usize),
        scale: f32,
        out: &mut [f32],
        scratch: &mut Vec<f32>,
        threads: usize,
    ) {
        let l = &self.layers[layer];
        let call = Call {
            q,
            pos0,
            heads,
            scale,
            threads,
        };
        match &l.kv {
            Buf::F32 { k, v } => l.attend(f.f32, k, v, self.kv_dim, call, out, scratch),
            Buf::F16 { k, v } => l.attend(f.f16, k, v, self.kv_dim, call, out, scratch),
        }
    }
}

/// The queries of one [`KvCache::attend`] call and how to run it.
#[derive(Clone, Copy)]
struct Call<'a> {
    q: &'a [f32],
    pos0: usize,
    /// `(n_head, head_dim)`.
    heads: (usize, usize),
    scale: f32,
    threads: usize,
}

/// A cache attention kernel over rows of `T` (the f32 and f16 kernels).
type Kernel<T> = fn(&[f32], &[T], &[T], &CacheAttn<'_>, &mut [f32], &mut [f32]);

impl LayerCache {
    /// The first position a query at `pos` sees (the mask of both
    /// attention paths): `pos + 1 - window` on a sliding-window layer.
    fn first_visible(&self, pos: usize) -> usize {
        self.window.map_or(0, |w| (pos + 1).saturating_sub(w))
    }

    /// [`KvCache::attend`] over this layer's keys `k` and values `v`.
    #[expect(clippy::too_many_arguments, reason = "one attention call's shape")]
    fn attend<T: Sync>(
        &self,
        f: Kernel<T>,
        k: &[T],
        v: &[T],
        kvd: usize,
        c: Call<'_>,
        out: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let ((n_head, head_dim), q) = (c.heads, c.q);
        let n_kv = kvd / head_dim;
        let group = n_head / n_kv;
        let out = &mut out[..q.len()];
        // Heads per call: the whole group, or a part of it when there are
        // fewer (position, KV head) pairs than threads.
        let calls = (q.len() / head_dim / group) * n_kv;
        let mut sub = group;
        while calls * (group / sub) < c.threads && sub.is_multiple_of(2) {
            sub /= 2;
        }
        let one = |i: usize, o: &mut [f32], scores: &mut Vec<f32>| {
            let h0 = i * sub;
            let (r, kh) = (h0 / n_head, (h0 % n_head) / group);
            let pos = c.pos0 + r;
            let lo = self.first_visible(pos);
            let (a, b) = (lo % self.slots, pos % self.slots + 1);
            // The ring holds every key a query sees, so they wrap at most once.
            let (single, wrapped) = (a..b, [a..self.slots, 0..b]);
            let spans = if a < b {
                std::slice::from_ref(&single)
            } else {
                &wrapped[..]
            };
            let at = CacheAttn {
                head_dim,
                stride: kvd,
                spans,
                scale: c.scale,
            };
            let qv = &q[h0 * head_dim..][..sub * head_dim];
            let scores = sized(scores, sub * (pos + 1 - lo));
            f(qv, &k[kh * head_dim..], &v[kh * head_dim..], &at, o, scores);
        };
        if c.threads <= 1 || calls * (group / sub) <= 1 {
            for (i, o) in out.chunks_exact_mut(sub * head_dim).enumerate() {
                one(i, o, scratch);
            }
        } else {
            out.par_chunks_mut(sub * head_dim)
                .enumerate()
                .for_each_init(Vec::new, |scores, (i, o)| one(i, o, scores));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Softmax weights of `scale · q·k` over `keys`, in f64.
    fn softmax<'a>(q: &[f32], keys: impl Iterator<Item = &'a [f32]>, scale: f64) -> Vec<f64> {
        let s: Vec<f64> = keys
            .map(|kr| q.iter().zip(kr).map(|(a, b)| f64::from(a * b)).sum::<f64>() * scale)
            .collect();
        let mx = s.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|x| x / z).collect()
    }

    /// Plain causal (windowed) attention over contiguous K/V, the textbook
    /// formula, for comparison.
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        n_head: usize,
        hd: usize,
        kvd: usize,
        window: Option<usize>,
    ) -> Vec<f32> {
        let n = k.len() / kvd;
        let group = n_head / (kvd / hd);
        let mut out = vec![0.0; n * n_head * hd];
        for p in 0..n {
            for h in 0..n_head {
                let kh = h / group;
                let qv = &q[p * n_head * hd + h * hd..][..hd];
                let keys: Vec<usize> = (0..=p)
                    .filter(|&j| window.is_none_or(|w| p - j < w))
                    .collect();
                let rows = keys.iter().map(|&j| &k[j * kvd + kh * hd..][..hd]);
                for (&j, w) in keys.iter().zip(softmax(qv, rows, 0.5)) {
                    for d in 0..hd {
                        out[p * n_head * hd + h * hd + d] +=
                            (w * f64::from(v[j * kvd + kh * hd + d])) as f32;
                    }
                }
            }
        }
        out
    }

    /// [`AttendCacheFn`] in plain f64 (the generated kernels are tested
    /// against the same formula in `tests/kernels_props.rs`).
    fn attend_ref(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        at: &CacheAttn<'_>,
        out: &mut [f32],
        _: &mut [f32],
    ) {
        let hd = at.head_dim;
        let rows: Vec<usize> = at.spans.iter().flat_map(|s| s.clone()).collect();
        for (qv, o) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)) {
            let keys = rows.iter().map(|&j| &k[j * at.stride..][..hd]);
            let e = softmax(qv, keys, f64::from(at.scale));
            for (d, od) in o.iter_mut().enumerate() {
                *od = rows
                    .iter()
                    .zip(&e)
                    .map(|(&j, w)| w * f64::from(v[j * at.stride + d]))
                    .sum::<f64>() as f32;
            }
        }
    }

    /// [`AttendCacheF16Fn`]: [`attend_ref`] over the rows converted.
    fn attend_ref_f16(
        q: &[f32],
        k: &[u16],
        v: &[u16],
        at: &CacheAttn<'_>,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let widen =
            |x: &[u16]| -> Vec<f32> { x.iter().map(|&b| f16::from_bits(b).to_f32()).collect() };
        attend_ref(q, &widen(k), &widen(v), at, out, scratch);
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    /// Chunks of several sizes, a ring that wraps, grouped heads: the cache
    /// gives the same output as attention over the whole sequence at once.
    #[test]
    fn a_wrapped_ring_rolls_back_only_while_it_holds_the_window() {
        let shape = CacheShape {
            windows: vec![Some(5), None],
            kv_dim: 2,
            context: 100,
        };
        let mut cache = KvCache::new(&shape, KvType::F32);
        cache.layers[0].slots = 5 + 7;
        cache.advance(30);
        // Positions below 30 - 12 = 18 are gone; rolling back to 23 needs
        // 18.. (its window), to 22 needs 17.
        assert!(!cache.truncate(22));
        assert_eq!(cache.len(), 30);
        assert!(cache.truncate(23));
        assert_eq!(cache.len(), 23);
    }

    #[test]
    fn chunked_ring_attention_matches_naive() {
        let (n_head, hd, kvd, n) = (4, 8, 16, 40);
        let window = Some(5);
        let q = values(n * n_head * hd, 1);
        let k = values(n * kvd, 2);
        let v = values(n * kvd, 3);
        for (ty, tol) in [(KvType::F32, 1e-5), (KvType::F16, 2e-3)] {
            for w in [None, window] {
                let want = naive(&q, &k, &v, n_head, hd, kvd, w);
                let shape = CacheShape {
                    windows: vec![w],
                    kv_dim: kvd,
                    context: n,
                };
                let mut cache = KvCache::new(&shape, ty);
                // A small ring, to make it wrap within 40 positions.
                if w.is_some() {
                    cache.layers[0].slots = 5 + 7;
                }
                let mut got = vec![0.0; want.len()];
                let mut scratch = Vec::new();
                let mut pos = 0;
                for (step, chunk) in [3usize, 7, 1, 1, 7, 5, 7, 2, 7].iter().enumerate() {
                    let (a, b) = (pos, pos + chunk);
                    cache.write(0, a, &k[a * kvd..b * kvd], &v[a * kvd..b * kvd]);
                    let qs = &q[a * n_head * hd..b * n_head * hd];
                    let out = &mut got[a * n_head * hd..b * n_head * hd];
                    let threads = 1 + step % 2;
                    cache.attend(
                        CacheKernels {
                            f32: attend_ref,
                            f16: attend_ref_f16,
                        },
                        0,
                        qs,
                        a,
                        (n_head, hd),
                        0.5,
                        out,
                        &mut scratch,
                        threads,
                    );
                    cache.advance(*chunk);
                    pos = b;
                }
                assert_eq!(pos, n);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() < tol, "{ty:?} {i}: {g} vs {w}");
                }
            }
        }
    }
}
