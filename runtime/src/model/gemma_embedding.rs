//! EmbeddingGemma (GGUF architecture `gemma-embedding`): a Gemma 3 encoder.
//!
//! Per layer: RMSNorm → Q/K/V projections → per-head RMSNorm of Q and K →
//! NeoX RoPE (base `rope.freq_base` on global layers, `rope.freq_base_swa` on
//! local ones) → bidirectional attention (local layers see a symmetric window
//! of `attention.sliding_window / 2` tokens each side; every 6th layer is
//! global) with scale `1/sqrt(head_dim)` → output projection → RMSNorm →
//! residual add; then RMSNorm → GeGLU FFN (tanh GELU of the gate times up) →
//! down projection → RMSNorm → residual add. After the last layer: RMSNorm,
//! pooling, the sentence-transformers dense projections `dense_2` and
//! `dense_3` (no bias, no activation), and the caller normalizes.
//!
//! GGUF keys: `gemma-embedding.{block_count, context_length,
//! embedding_length, feed_forward_length, attention.head_count,
//! attention.head_count_kv, attention.key_length, attention.value_length,
//! attention.layer_norm_rms_epsilon, attention.sliding_window,
//! rope.freq_base, rope.freq_base_swa, pooling_type, dense_2_feat_in/out,
//! dense_3_feat_in/out}`. Tensors: `token_embd`, `output_norm`, `dense_2`,
//! `dense_3`, and per layer `blk.N.{attn_norm, attn_q, attn_k, attn_v,
//! attn_q_norm, attn_k_norm, attn_output, post_attention_norm, ffn_norm,
//! ffn_gate, ffn_up, ffn_down, post_ffw_norm}`. Norm weights are used as
//! stored: llama.cpp's converter has already added Gemma's `1 +`.

use std::sync::Arc;

use super::exec::{self, RopeTable, Workspace, sized};
use super::linear::{Input, Linear};
use super::weights::{Data, Tensors, WeightData};
use super::{EncoderModel, ModelError, ModelOptions, Pooling};
use crate::gguf::GgufFile;
use crate::kernels::{
    AttentionFn, AttnShape, GatherQ8_0Fn, GegluQ8_0Fn, KernelSet, Mask, MeanPoolFn, RmsNormFn,
    RopeFn, UnaryFn,
};
use crate::quant::QK8_0;

/// Every `SWA_PATTERN`-th layer (the last of each group) attends globally.
const SWA_PATTERN: usize = 6;

const ARCH: &str = "gemma-embedding";

struct Layer {
    attn_norm: Data<f32>,
    q: Linear,
    k: Linear,
    v: Linear,
    q_norm: Data<f32>,
    k_norm: Data<f32>,
    o: Linear,
    post_attn_norm: Data<f32>,
    ffn_norm: Data<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Data<f32>,
    /// `None` for global layers.
    window_radius: Option<usize>,
}

struct Kernels {
    rms_norm_hidden: RmsNormFn,
    rms_norm_head: RmsNormFn,
    rope: RopeFn,
    attention: AttentionFn,
    geglu_q8: GegluQ8_0Fn,
    gelu_tanh: UnaryFn,
    gather: GatherQ8_0Fn,
    mean_pool: MeanPoolFn,
}

/// An opened EmbeddingGemma model.
pub(crate) struct GemmaEmbedding {
    hidden: usize,
    ffn: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    context: usize,
    eps: f32,
    pooling: Pooling,
    token_embd: WeightData,
    n_vocab: usize,
    layers: Vec<Layer>,
    output_norm: Data<f32>,
    dense: Vec<Linear>,
    rope_global: RopeTable,
    rope_local: RopeTable,
    kernels: Kernels,
    /// Keeps the map that every `Data` points into alive; declared last so
    /// it is dropped after them.
    _file: Arc<GgufFile>,
}

fn key(name: &str) -> String {
    format!("{ARCH}.{name}")
}

impl GemmaEmbedding {
    pub(crate) fn open(
        file: Arc<GgufFile>,
        kernels: &'static dyn KernelSet,
        options: &ModelOptions,
    ) -> Result<Self, ModelError> {
        let md = file.metadata();
        let n_layer = md.get_u32(&key("block_count"))? as usize;
        let hidden = md.get_u32(&key("embedding_length"))? as usize;
        let ffn = md.get_u32(&key("feed_forward_length"))? as usize;
        let n_head = md.get_u32(&key("attention.head_count"))? as usize;
        let n_head_kv = md.get_u32(&key("attention.head_count_kv"))? as usize;
        let head_dim = md.get_u32(&key("attention.key_length"))? as usize;
        let value_dim = md.get_u32(&key("attention.value_length"))? as usize;
        let context = md.get_u32(&key("context_length"))? as usize;
        let eps = md.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        let window = md.get_u32(&key("attention.sliding_window"))? as usize;
        let base_global = md.get_f32(&key("rope.freq_base"))?;
        let base_local = match md.get(&key("rope.freq_base_swa")) {
            Some(_) => md.get_f32(&key("rope.freq_base_swa"))?,
            None => 10_000.0,
        };
        let pooling = match options.pooling {
            Some(p) => p,
            None => {
                let raw = md.get_u32(&key("pooling_type"))?;
                Pooling::from_gguf(raw).ok_or_else(|| {
                    ModelError::Config(format!("pooling_type {raw} is not supported"))
                })?
            }
        };
        if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(ModelError::Config(format!(
                "{n_head} query heads cannot share {n_head_kv} key/value heads"
            )));
        }
        if value_dim != head_dim
            || !head_dim.is_multiple_of(2)
            || !hidden.is_multiple_of(QK8_0)
            || !ffn.is_multiple_of(QK8_0)
        {
            return Err(ModelError::Config(format!(
                "head sizes k={head_dim} v={value_dim}, hidden {hidden}, ffn {ffn} are not supported"
            )));
        }
        if n_layer == 0 || context == 0 {
            return Err(ModelError::Config("no layers or no context".into()));
        }

        let t = Tensors::new(&file);
        let q_dim = n_head * head_dim;
        let kv_dim = n_head_kv * head_dim;
        let lin = |name: &str, k: usize, n: usize| -> Result<Linear, ModelError> {
            t.linear(name, k, n, None, kernels)
        };
        let h = hidden as u64;
        let mut layers = Vec::with_capacity(n_layer);
        for il in 0..n_layer {
            let p = |s: &str| format!("blk.{il}.{s}.weight");
            let is_global = il % SWA_PATTERN == SWA_PATTERN - 1;
            layers.push(Layer {
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
                window_radius: (!is_global).then_some(window / 2),
            });
        }

        // The dense projections after pooling (sentence-transformers' 2_Dense
        // and 3_Dense). Without them the vectors are wrong, so refuse.
        let mut dense = Vec::new();
        let mut width = hidden;
        for i in [2, 3] {
            let name = format!("dense_{i}.weight");
            if !t.has(&name) {
                return Err(ModelError::MissingTensor(format!(
                    "{name} (EmbeddingGemma needs the sentence-transformers dense projections: \
                     convert with them, e.g. `kiln convert`)"
                )));
            }
            let out = md.get_u32(&key(&format!("dense_{i}_feat_out")))? as usize;
            let inp = md.get_u32(&key(&format!("dense_{i}_feat_in")))? as usize;
            if inp != width || !out.is_multiple_of(QK8_0) {
                return Err(ModelError::Config(format!(
                    "dense_{i} maps {inp} -> {out} after {width}"
                )));
            }
            dense.push(lin(&name, inp, out)?);
            width = out;
        }
        if width != hidden {
            return Err(ModelError::Config(format!(
                "dense projections end at {width}, not {hidden}"
            )));
        }

        let n_vocab = super::vocab_rows(&file)?;
        let token_embd = t.table("token_embd.weight", hidden, n_vocab)?;
        let output_norm = t.f32("output_norm.weight", &[h])?;
        let k = kernels;
        let kernels = Kernels {
            rms_norm_hidden: k.rms_norm(hidden),
            rms_norm_head: k.rms_norm(head_dim),
            rope: k.rope(head_dim),
            attention: k.attention(head_dim),
            geglu_q8: k.geglu_q8_0(ffn),
            gelu_tanh: k.gelu_tanh(),
            gather: k.gather_q8_0(hidden),
            mean_pool: k.mean_pool(hidden),
        };
        Ok(GemmaEmbedding {
            hidden,
            ffn,
            n_head,
            n_head_kv,
            head_dim,
            context,
            eps,
            pooling,
            token_embd,
            n_vocab,
            layers,
            output_norm,
            dense,
            rope_global: RopeTable::new(base_global, head_dim, context),
            rope_local: RopeTable::new(base_local, head_dim, context),
            kernels,
            _file: file,
        })
    }

    fn embed_rows(&self, ids: &[u32], x: &mut [f32]) {
        let scale = (self.hidden as f32).sqrt();
        match &self.token_embd {
            WeightData::Q8_0(table) => {
                (self.kernels.gather)(table.get(), self.hidden, ids, scale, x)
            }
            WeightData::F32(table) => {
                let table = table.get();
                for (row, &id) in x.chunks_exact_mut(self.hidden).zip(ids) {
                    let src = &table[id as usize * self.hidden..][..self.hidden];
                    for (d, s) in row.iter_mut().zip(src) {
                        *d = s * scale;
                    }
                }
            }
        }
    }
}

impl EncoderModel for GemmaEmbedding {
    fn dim(&self) -> usize {
        self.hidden
    }

    fn context_length(&self) -> usize {
        self.context
    }

    fn pooling(&self) -> Pooling {
        self.pooling
    }

    fn embed_tokens(
        &self,
        ids: &[u32],
        ws: &mut Workspace,
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError> {
        super::check_ids(ids, self.context, self.n_vocab)?;
        let n = ids.len();
        let (d, hd, kn) = (self.hidden, self.head_dim, &self.kernels);
        let q_dim = self.n_head * hd;
        let kv_dim = self.n_head_kv * hd;
        let th = threads.max(1);

        let x = sized(&mut ws.x, n * d);
        let t = sized(&mut ws.t, n * d.max(q_dim));
        let q = sized(&mut ws.q, n * q_dim);
        let k = sized(&mut ws.k, n * kv_dim);
        let v = sized(&mut ws.v, n * kv_dim);
        let att = sized(&mut ws.att, n * q_dim);
        // ff_a and ff_b also hold the raw K and output projections.
        let wide = self.ffn.max(d).max(q_dim).max(kv_dim);
        let ff_a = sized(&mut ws.ff_a, n * wide);
        let ff_b = sized(&mut ws.ff_b, n * wide);
        let max_dense = self.dense.iter().map(|l| l.k.max(l.n)).max().unwrap_or(d);
        let xq = sized(&mut ws.xq, (n * wide).max(max_dense) / QK8_0);

        self.embed_rows(ids, x);

        for layer in &self.layers {
            // Attention block.
            (kn.rms_norm_hidden)(x, layer.attn_norm.get(), self.eps, &mut t[..n * d]);
            let xq_h = &mut xq[..n * d / QK8_0];
            layer.q.prepare(&t[..n * d], xq_h);
            let input = Input {
                f32: &t[..n * d],
                q8: xq_h,
            };
            layer.q.forward(input, n, att, false, th);
            layer.k.forward(input, n, ff_a, false, th);
            layer.v.forward(input, n, v, false, th);
            (kn.rms_norm_head)(&att[..n * q_dim], layer.q_norm.get(), self.eps, q);
            (kn.rms_norm_head)(&ff_a[..n * kv_dim], layer.k_norm.get(), self.eps, k);
            let rope = if layer.window_radius.is_some() {
                &self.rope_local
            } else {
                &self.rope_global
            };
            (kn.rope)(q, self.n_head, hd, 0, &rope.cos, &rope.sin, true);
            (kn.rope)(k, self.n_head_kv, hd, 0, &rope.cos, &rope.sin, true);
            let shape = AttnShape {
                n_tokens: n,
                n_head: self.n_head,
                n_head_kv: self.n_head_kv,
                head_dim: hd,
                scale: 1.0 / (hd as f32).sqrt(),
                mask: match layer.window_radius {
                    Some(radius) => Mask::Window { radius },
                    None => Mask::Full,
                },
            };
            exec::attention(kn.attention, q, k, v, &shape, att, &mut ws.scores, th);
            let xq_o = &mut xq[..n * q_dim / QK8_0];
            layer.o.prepare(att, xq_o);
            layer
                .o
                .forward(Input { f32: att, q8: xq_o }, n, ff_a, false, th);
            (kn.rms_norm_hidden)(
                &ff_a[..n * d],
                layer.post_attn_norm.get(),
                self.eps,
                &mut t[..n * d],
            );
            add_in_place(x, &t[..n * d]);

            // Feed-forward block.
            (kn.rms_norm_hidden)(x, layer.ffn_norm.get(), self.eps, &mut t[..n * d]);
            let xq_h = &mut xq[..n * d / QK8_0];
            layer.gate.prepare(&t[..n * d], xq_h);
            let input = Input {
                f32: &t[..n * d],
                q8: xq_h,
            };
            let nf = n * self.ffn;
            layer.gate.forward(input, n, ff_a, false, th);
            layer.up.forward(input, n, ff_b, false, th);
            let xq_f = &mut xq[..nf / QK8_0];
            if layer.down.wants_q8() {
                (kn.geglu_q8)(&ff_a[..nf], &ff_b[..nf], xq_f);
            } else {
                (kn.gelu_tanh)(&mut ff_a[..nf]);
                for (a, b) in ff_a[..nf].iter_mut().zip(&ff_b[..nf]) {
                    *a *= b;
                }
            }
            layer.down.forward(
                Input {
                    f32: &ff_a[..nf],
                    q8: xq_f,
                },
                n,
                ff_b,
                false,
                th,
            );
            (kn.rms_norm_hidden)(
                &ff_b[..n * d],
                layer.post_ffn_norm.get(),
                self.eps,
                &mut t[..n * d],
            );
            add_in_place(x, &t[..n * d]);
        }

        (kn.rms_norm_hidden)(x, self.output_norm.get(), self.eps, &mut t[..n * d]);
        let pooled = sized(&mut ws.pooled, d);
        super::pool(self.pooling, kn.mean_pool, &t[..n * d], pooled);

        let mut cur = sized(&mut ws.pooled, max_dense.max(d));
        let mut next = sized(&mut ws.pooled_b, max_dense.max(d));
        for lin in &self.dense {
            let xq_d = &mut xq[..lin.k / QK8_0];
            lin.prepare(&cur[..lin.k], xq_d);
            lin.forward(
                Input {
                    f32: &cur[..lin.k],
                    q8: xq_d,
                },
                1,
                &mut next[..lin.n],
                false,
                th,
            );
            std::mem::swap(&mut cur, &mut next);
        }
        out[..d].copy_from_slice(&cur[..d]);
        Ok(())
    }
}

/// `x += y`: the residual adds between blocks.
fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
