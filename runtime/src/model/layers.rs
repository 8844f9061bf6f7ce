//! What the Gemma 3 encoder (`gemma-embedding`) and decoder (`gemma3`)
//! share: hyperparameters, the layer weights, and the per-layer blocks
//! around attention.
//!
//! A layer is: RMSNorm → Q/K/V projections → per-head RMSNorm of Q and K →
//! NeoX RoPE (base `rope.freq_base` on global layers, `rope.freq_base_swa`
//! or 10000 on local ones, as llama.cpp defaults it) → attention (the
//! models differ here: bidirectional or causal, and how a local layer's
//! window is read) → output projection → RMSNorm → residual add; then
//! RMSNorm → GeGLU FFN (tanh GELU of the gate times up) → down projection →
//! RMSNorm → residual add. Every `SWA_PATTERN`-th layer is global.
//!
//! GGUF keys (under the architecture's prefix): `block_count,
//! context_length, embedding_length, feed_forward_length,
//! attention.head_count, attention.head_count_kv, attention.key_length,
//! attention.value_length, attention.layer_norm_rms_epsilon,
//! attention.sliding_window, rope.freq_base, rope.freq_base_swa`. Tensors
//! per layer: `blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_q_norm,
//! attn_k_norm, attn_output, post_attention_norm, ffn_norm, ffn_gate,
//! ffn_up, ffn_down, post_ffw_norm}`. Norm weights are used as stored:
//! llama.cpp's converter has already added Gemma's `1 +`.

use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::ModelError;
use super::exec::{RopeTable, Segment};
use super::kv_cache::CacheKernels;
use super::linear::{Input, Linear, forward_together};
use super::weights::{Data, Tensors, WeightData};
use crate::gguf::Metadata;
use crate::kernels::{
    AttentionFn, GatherQ8_0Fn, GegluQ8_0Fn, KernelSet, RmsNormFn, RopeFn, UnaryFn,
};
use crate::quant::{BlockQ8_0, BlockQ8K, QK_K, QK8_0};

/// Every `SWA_PATTERN`-th layer (the last of each group) attends globally
/// (llama.cpp's `set_swa_pattern(6)` for Gemma 3).
pub(crate) const SWA_PATTERN: usize = 6;

/// llama.cpp's local RoPE base for Gemma 3 when the GGUF has no
/// `rope.freq_base_swa` (`rope_freq_base_train_swa = 10000`).
pub(crate) const DEFAULT_LOCAL_ROPE_BASE: f32 = 10_000.0;

/// Hyperparameters read from the GGUF.
#[derive(Clone, Debug)]
pub(crate) struct GemmaConfig {
    pub(crate) n_layer: usize,
    pub(crate) hidden: usize,
    pub(crate) ffn: usize,
    pub(crate) n_head: usize,
    pub(crate) n_head_kv: usize,
    pub(crate) head_dim: usize,
    pub(crate) context: usize,
    pub(crate) eps: f32,
    /// `attention.sliding_window`.
    pub(crate) window: usize,
    pub(crate) base_global: f32,
    pub(crate) base_local: f32,
}

impl GemmaConfig {
    /// Reads and checks the keys under `arch.`.
    pub(crate) fn read(md: &Metadata, arch: &str) -> Result<Self, ModelError> {
        let key = |name: &str| format!("{arch}.{name}");
        let u = |name: &str| md.get_u32(&key(name)).map(|v| v as usize);
        let cfg = GemmaConfig {
            n_layer: u("block_count")?,
            hidden: u("embedding_length")?,
            ffn: u("feed_forward_length")?,
            n_head: u("attention.head_count")?,
            n_head_kv: u("attention.head_count_kv")?,
            head_dim: u("attention.key_length")?,
            context: u("context_length")?,
            eps: md.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            window: u("attention.sliding_window")?,
            base_global: md.get_f32(&key("rope.freq_base"))?,
            base_local: match md.get(&key("rope.freq_base_swa")) {
                Some(_) => md.get_f32(&key("rope.freq_base_swa"))?,
                None => DEFAULT_LOCAL_ROPE_BASE,
            },
        };
        let value_dim = u("attention.value_length")?;
        let (n_head, n_head_kv, head_dim) = (cfg.n_head, cfg.n_head_kv, cfg.head_dim);
        if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(ModelError::Config(format!(
                "{n_head} query heads cannot share {n_head_kv} key/value heads"
            )));
        }
        if value_dim != head_dim
            || head_dim == 0
            || !head_dim.is_multiple_of(2)
            || cfg.hidden == 0
            || cfg.ffn == 0
            || !cfg.hidden.is_multiple_of(QK8_0)
            || !cfg.ffn.is_multiple_of(QK8_0)
        {
            return Err(ModelError::Config(format!(
                "head sizes k={head_dim} v={value_dim}, hidden {}, ffn {} are not supported",
                cfg.hidden, cfg.ffn
            )));
        }
        if cfg.n_layer == 0 || cfg.context == 0 {
            return Err(ModelError::Config("no layers or no context".into()));
        }
        // A window of 0 lets a local layer's queries see no key at all.
        super::check_positive(&key("attention.sliding_window"), cfg.window)?;
        super::check_eps(&key("attention.layer_norm_rms_epsilon"), cfg.eps)?;
        super::check_base(&key("rope.freq_base"), cfg.base_global)?;
        super::check_base(&key("rope.freq_base_swa"), cfg.base_local)?;
        Ok(cfg)
    }

    pub(crate) fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub(crate) fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// The weights of one layer.
pub(crate) struct GemmaLayer {
    pub(crate) attn_norm: Data<f32>,
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) q_norm: Data<f32>,
    pub(crate) k_norm: Data<f32>,
    pub(crate) o: Linear,
    pub(crate) post_attn_norm: Data<f32>,
    pub(crate) ffn_norm: Data<f32>,
    pub(crate) gate: Linear,
    pub(crate) up: Linear,
    pub(crate) down: Linear,
    pub(crate) post_ffn_norm: Data<f32>,
    /// Global (full-context) attention rather than a sliding window.
    pub(crate) global: bool,
}

/// Loads and checks every layer's tensors, layers in parallel on the
/// current rayon pool (repacking the Q8_0 weights is most of an open).
pub(crate) fn load_layers(
    t: &Tensors<'_>,
    cfg: &GemmaConfig,
    kernels: &dyn KernelSet,
) -> Result<Vec<GemmaLayer>, ModelError> {
    let (hidden, ffn, head_dim) = (cfg.hidden, cfg.ffn, cfg.head_dim);
    let (q_dim, kv_dim) = (cfg.q_dim(), cfg.kv_dim());
    let lin = |name: &str, k: usize, n: usize| -> Result<Linear, ModelError> {
        Ok(t.linear(name, t.matrix(name, k, n)?, (k, n), None, kernels))
    };
    let h = hidden as u64;
    (0..cfg.n_layer)
        .into_par_iter()
        .map(|il| {
            let p = |s: &str| format!("blk.{il}.{s}.weight");
            Ok(GemmaLayer {
                attn_norm: t.f32(&p("attn_norm"), &[h])?,
                q: lin(&p("attn_q"), hidden, q_dim)?,
                k: lin(&p("attn_k"), hidden, kv_dim)?,
                v: lin(&p("attn_v"), hidden, kv_dim)?,
                q_norm: t.f32(&p("attn_q_norm"), &[head_dim as u64])?,
                k_norm: t.f32(&p("attn_k_norm"), &[head_dim as u64])?,
                o: lin(&p("attn_output"), q_dim, hidden)?,
                post_attn_norm: t.f32(&p("post_attention_norm"), &[h])?,
                ffn_norm: t.f32(&p("ffn_norm"), &[h])?,
                gate: lin(&p("ffn_gate"), hidden, ffn)?,
                up: lin(&p("ffn_up"), hidden, ffn)?,
                down: lin(&p("ffn_down"), ffn, hidden)?,
                post_ffn_norm: t.f32(&p("post_ffw_norm"), &[h])?,
                global: il % SWA_PATTERN == SWA_PATTERN - 1,
            })
        })
        .collect()
}

/// The kernels the shared blocks call.
pub(crate) struct GemmaKernels {
    pub(crate) rms_norm_hidden: RmsNormFn,
    pub(crate) rms_norm_head: RmsNormFn,
    pub(crate) rope: RopeFn,
    pub(crate) geglu_q8: GegluQ8_0Fn,
    pub(crate) gelu_tanh: UnaryFn,
    pub(crate) gather: GatherQ8_0Fn,
    pub(crate) attention: AttentionFn,
    pub(crate) attend_cache: CacheKernels,
}

impl GemmaKernels {
    pub(crate) fn new(k: &dyn KernelSet, cfg: &GemmaConfig) -> Self {
        GemmaKernels {
            rms_norm_hidden: k.rms_norm(cfg.hidden),
            rms_norm_head: k.rms_norm(cfg.head_dim),
            rope: k.rope(cfg.head_dim),
            geglu_q8: k.geglu_q8_0(cfg.ffn),
            gelu_tanh: k.gelu_tanh(),
            gather: k.gather_q8_0(cfg.hidden),
            attention: k.attention(cfg.head_dim),
            attend_cache: CacheKernels {
                f32: k.attend_cache(cfg.head_dim),
                f16: k.attend_cache_f16(cfg.head_dim),
            },
        }
    }
}

/// Positions the RoPE tables cover from the start; they grow past that
/// only when a call needs it (a context length from the file sizes
/// nothing up front).
const ROPE_EAGER_POSITIONS: usize = 4096;

/// The two RoPE tables (global and local base), for `positions` positions.
pub(crate) struct RopeTables {
    pub(crate) global: RopeTable,
    pub(crate) local: RopeTable,
    positions: usize,
}

impl RopeTables {
    fn new(cfg: &GemmaConfig, positions: usize) -> Self {
        RopeTables {
            global: RopeTable::new(cfg.base_global, cfg.head_dim, positions),
            local: RopeTable::new(cfg.base_local, cfg.head_dim, positions),
            positions,
        }
    }

    pub(crate) fn for_layer(&self, layer: &GemmaLayer) -> &RopeTable {
        if layer.global {
            &self.global
        } else {
            &self.local
        }
    }
}

/// RoPE tables sized by what calls need: the first
/// [`ROPE_EAGER_POSITIONS`] at open, then grown (to the next power of two,
/// at most `max`) by the first call that needs more. A position's entries
/// do not depend on the table's length, so growing changes no result; a
/// warm call only clones an `Arc` (no allocation).
pub(crate) struct GemmaRope {
    cfg: GemmaConfig,
    max: usize,
    tables: Mutex<Arc<RopeTables>>,
}

impl GemmaRope {
    /// Tables for positions up to `max` (the model's or the planned context).
    pub(crate) fn new(cfg: &GemmaConfig, max: usize) -> Self {
        GemmaRope {
            cfg: cfg.clone(),
            max,
            tables: Mutex::new(Arc::new(RopeTables::new(
                cfg,
                max.min(ROPE_EAGER_POSITIONS),
            ))),
        }
    }

    /// Tables that cover positions `0..positions` (callers check that
    /// `positions` is within the context first).
    pub(crate) fn get(&self, positions: usize) -> Arc<RopeTables> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if tables.positions < positions {
            let n = positions.next_power_of_two().min(self.max).max(positions);
            *tables = Arc::new(RopeTables::new(&self.cfg, n));
        }
        tables.clone()
    }
}

/// Rows of the token embedding, scaled by `sqrt(hidden)` as Gemma does.
pub(crate) fn embed_rows(
    table: &WeightData,
    gather: GatherQ8_0Fn,
    hidden: usize,
    ids: &[u32],
    x: &mut [f32],
) {
    let scale = (hidden as f32).sqrt();
    match table {
        WeightData::Q8_0(table) => gather(table.get(), hidden, ids, scale, x),
        WeightData::Q4K(_) | WeightData::Q6K(_) | WeightData::Q5_0(_) => {
            unreachable!("Tensors::table converts these to f32")
        }
        WeightData::F32(table) | WeightData::Dequantized(table, _) => {
            let table = table.get();
            for (row, &id) in x.chunks_exact_mut(hidden).zip(ids) {
                let src = &table[id as usize * hidden..][..hidden];
                for (d, s) in row.iter_mut().zip(src) {
                    *d = s * scale;
                }
            }
        }
    }
}

/// Quantizes `x` once to Q8_0 and once to Q8_K if any layer in `layers`
/// reads that (layers sharing an input may have different weight types).
pub(crate) fn prepare(layers: &[&Linear], x: &[f32], xq: &mut [BlockQ8_0], xqk: &mut [BlockQ8K]) {
    if let Some(l) = layers.iter().find(|l| l.wants_q8()) {
        l.prepare(x, xq);
    }
    if let Some(l) = layers.iter().find(|l| l.wants_q8k()) {
        l.prepare_k(x, xqk);
    }
}

/// Buffers the shared blocks work in, all rows of the current chunk.
pub(crate) struct BlockBufs<'a> {
    /// Normed rows `[n][max(hidden, q_dim)]`.
    pub(crate) t: &'a mut [f32],
    /// Queries `[n][q_dim]` after norm and RoPE.
    pub(crate) q: &'a mut [f32],
    /// Keys and values `[n][kv_dim]`, K after norm and RoPE.
    pub(crate) k: &'a mut [f32],
    pub(crate) v: &'a mut [f32],
    /// Attention output `[n][q_dim]`; also the raw Q projection.
    pub(crate) att: &'a mut [f32],
    /// Wide intermediates `[n][max(ffn, hidden, q_dim, kv_dim)]`.
    pub(crate) ff_a: &'a mut [f32],
    pub(crate) ff_b: &'a mut [f32],
    /// Quantized matmul inputs.
    pub(crate) xq: &'a mut [BlockQ8_0],
    pub(crate) xqk: &'a mut [BlockQ8K],
}

impl GemmaLayer {
    /// Attention inputs of the rows of the residual stream `x`, one run of
    /// rows per segment (projections over all rows at once, RoPE per
    /// segment): fills `b.q`, `b.k`, `b.v`.
    #[expect(clippy::too_many_arguments, reason = "a layer step's inputs")]
    pub(crate) fn qkv(
        &self,
        cfg: &GemmaConfig,
        kn: &GemmaKernels,
        rope: &RopeTable,
        x: &[f32],
        segments: &[Segment],
        b: &mut BlockBufs<'_>,
        threads: usize,
    ) {
        let n: usize = segments.iter().map(|s| s.len).sum();
        let (d, hd) = (cfg.hidden, cfg.head_dim);
        let (q_dim, kv_dim) = (cfg.q_dim(), cfg.kv_dim());
        let t = &mut b.t[..n * d];
        (kn.rms_norm_hidden)(&x[..n * d], self.attn_norm.get(), cfg.eps, t);
        let xq = &mut b.xq[..n * d / QK8_0];
        let xqk = &mut b.xqk[..n * d / QK_K];
        prepare(&[&self.q, &self.k, &self.v], t, xq, xqk);
        let input = Input {
            f32: t,
            q8: xq,
            q8k: xqk,
        };
        forward_together(
            [
                (&self.q, &mut *b.att),
                (&self.k, &mut *b.ff_a),
                (&self.v, &mut *b.v),
            ],
            input,
            n,
            false,
            threads,
        );
        let q = &mut b.q[..n * q_dim];
        let k = &mut b.k[..n * kv_dim];
        (kn.rms_norm_head)(&b.att[..n * q_dim], self.q_norm.get(), cfg.eps, q);
        (kn.rms_norm_head)(&b.ff_a[..n * kv_dim], self.k_norm.get(), cfg.eps, k);
        let mut row = 0;
        for s in segments {
            let (qs, ks) = (
                row * q_dim..(row + s.len) * q_dim,
                row * kv_dim..(row + s.len) * kv_dim,
            );
            (kn.rope)(
                &mut q[qs], cfg.n_head, hd, s.pos0, &rope.cos, &rope.sin, true,
            );
            (kn.rope)(
                &mut k[ks],
                cfg.n_head_kv,
                hd,
                s.pos0,
                &rope.cos,
                &rope.sin,
                true,
            );
            row += s.len;
        }
    }

    /// Output projection of the attention result in `b.att`, post-norm and
    /// residual add into `x`.
    pub(crate) fn attn_out(
        &self,
        cfg: &GemmaConfig,
        kn: &GemmaKernels,
        x: &mut [f32],
        n: usize,
        b: &mut BlockBufs<'_>,
        threads: usize,
    ) {
        let d = cfg.hidden;
        let att = &b.att[..n * cfg.q_dim()];
        let xq = &mut b.xq[..att.len() / QK8_0];
        let xqk = &mut b.xqk[..att.len() / QK_K];
        prepare(&[&self.o], att, xq, xqk);
        let input = Input {
            f32: att,
            q8: xq,
            q8k: xqk,
        };
        self.o.forward(input, n, b.ff_a, false, threads);
        let t = &mut b.t[..n * d];
        (kn.rms_norm_hidden)(&b.ff_a[..n * d], self.post_attn_norm.get(), cfg.eps, t);
        add_in_place(&mut x[..n * d], t);
    }

    /// The feed-forward block with its norms and residual add, in place on
    /// `n` rows of `x`.
    pub(crate) fn ffn(
        &self,
        cfg: &GemmaConfig,
        kn: &GemmaKernels,
        x: &mut [f32],
        n: usize,
        b: &mut BlockBufs<'_>,
        threads: usize,
    ) {
        let d = cfg.hidden;
        let t = &mut b.t[..n * d];
        (kn.rms_norm_hidden)(&x[..n * d], self.ffn_norm.get(), cfg.eps, t);
        let xq = &mut b.xq[..n * d / QK8_0];
        let xqk = &mut b.xqk[..n * d / QK_K];
        prepare(&[&self.gate, &self.up], t, xq, xqk);
        let input = Input {
            f32: t,
            q8: xq,
            q8k: xqk,
        };
        let nf = n * cfg.ffn;
        forward_together(
            [(&self.gate, &mut *b.ff_a), (&self.up, &mut *b.ff_b)],
            input,
            n,
            false,
            threads,
        );
        let xq_f = &mut b.xq[..nf / QK8_0];
        if self.down.wants_q8() {
            (kn.geglu_q8)(&b.ff_a[..nf], &b.ff_b[..nf], xq_f);
        } else {
            (kn.gelu_tanh)(&mut b.ff_a[..nf]);
            for (a, u) in b.ff_a[..nf].iter_mut().zip(&b.ff_b[..nf]) {
                *a *= u;
            }
            self.down.prepare_k(&b.ff_a[..nf], &mut b.xqk[..nf / QK_K]);
        }
        self.down.forward(
            Input {
                f32: &b.ff_a[..nf],
                q8: xq_f,
                q8k: &b.xqk[..nf / QK_K],
            },
            n,
            b.ff_b,
            false,
            threads,
        );
        let t = &mut b.t[..n * d];
        (kn.rms_norm_hidden)(&b.ff_b[..n * d], self.post_ffn_norm.get(), cfg.eps, t);
        add_in_place(&mut x[..n * d], t);
    }
}

/// `x += y`: the residual adds between blocks.
pub(crate) fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(context: usize) -> GemmaConfig {
        GemmaConfig {
            n_layer: 1,
            hidden: 64,
            ffn: 64,
            n_head: 1,
            n_head_kv: 1,
            head_dim: 8,
            context,
            eps: 1e-6,
            window: 4,
            base_global: 1e6,
            base_local: 1e4,
        }
    }

    #[test]
    fn rope_tables_grow_only_when_needed_and_keep_their_values() {
        // A context from the file sizes nothing beyond the eager part.
        let rope = GemmaRope::new(&cfg(1 << 30), 1 << 30);
        let first = rope.get(10);
        assert_eq!(first.positions, ROPE_EAGER_POSITIONS);
        let grown = rope.get(ROPE_EAGER_POSITIONS + 1);
        assert_eq!(grown.positions, 2 * ROPE_EAGER_POSITIONS);
        let n = first.global.cos.len();
        assert_eq!(first.global.cos[..], grown.global.cos[..n]);
        assert_eq!(first.local.sin[..], grown.local.sin[..n]);
        // Capped at the context.
        let small = GemmaRope::new(&cfg(100), 100);
        assert_eq!(small.get(100).positions, 100);
    }
}
