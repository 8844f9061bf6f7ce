//! EmbeddingGemma (GGUF architecture `gemma-embedding`): a Gemma 3 encoder.
//!
//! The layers are shared with the decoder (see `layers.rs`). Per layer: RMSNorm → Q/K/V projections → per-head RMSNorm of Q and K →
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

use super::exec::{self, Segment, Workspace, sized};
use super::layers::{BlockBufs, Layer, LayerConfig, LayerKernels, Rope};
use super::linear::{Input, Linear};
use super::pack_cache::{PackCache, Packs};
use super::weights::{Data, Tensors, WeightData};
use super::{EncoderModel, ModelError, ModelOptions, Pooling, Readout};
use crate::gguf::GgufFile;
use crate::kernels::{AttentionFn, AttnShape, KernelSet, Mask, MeanPoolFn};
use crate::quant::{QK_K, QK8_0};

const ARCH: &str = "gemma-embedding";

/// An opened EmbeddingGemma model.
pub(crate) struct GemmaEmbedding {
    cfg: LayerConfig,
    pooling: Pooling,
    token_embd: WeightData,
    n_vocab: usize,
    layers: Vec<Layer>,
    output_norm: Data<f32>,
    dense: Vec<Linear>,
    rope: Rope,
    kernels: LayerKernels,
    attention: AttentionFn,
    mean_pool: MeanPoolFn,
    /// Keeps the maps that every `Data` points into alive; declared last so
    /// they are dropped after them.
    _packs: Option<PackCache>,
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
        let cfg = LayerConfig::read(md, ARCH)?;
        super::check_layer_count(&file, &key("block_count"), cfg.n_layer)?;
        let pooling = match options.pooling {
            Some(p) => p,
            None => {
                let raw = md.get_u32(&key("pooling_type"))?;
                Pooling::from_gguf(raw).ok_or_else(|| {
                    ModelError::Config(format!("pooling_type {raw} is not supported"))
                })?
            }
        };

        let packs = Packs::for_file(&file, options.pack_dir.as_deref());
        let t = Tensors::new(&file, &packs);
        let hidden = cfg.hidden;
        let layers = super::layers::load_layers(&t, &cfg, kernels)?;
        let lin = |name: &str, k: usize, n: usize| -> Result<Linear, ModelError> {
            Ok(t.linear(name, t.matrix_q8(name, k, n)?, (k, n), None, kernels))
        };

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
        let output_norm = t.f32("output_norm.weight", &[hidden as u64])?;
        Ok(GemmaEmbedding {
            pooling,
            token_embd,
            n_vocab,
            layers,
            output_norm,
            dense,
            rope: Rope::new(&cfg, cfg.context),
            kernels: LayerKernels::new(kernels, &cfg),
            attention: kernels.attention(cfg.head_dim),
            mean_pool: kernels.mean_pool(hidden),
            cfg,
            _packs: packs.finish(),
            _file: file,
        })
    }
}

impl EncoderModel for GemmaEmbedding {
    fn dim(&self) -> usize {
        self.cfg.hidden
    }

    fn context_length(&self) -> usize {
        self.cfg.context
    }

    fn pooling(&self) -> Pooling {
        self.pooling
    }

    fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    fn forward(
        &self,
        seqs: &[&[u32]],
        readout: Readout<'_>,
        ws: &mut Workspace,
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError> {
        let cfg = &self.cfg;
        for ids in seqs {
            super::check_ids(ids, cfg.context, self.n_vocab)?;
        }
        let n: usize = seqs.iter().map(|s| s.len()).sum();
        // Rows pooled and projected.
        let m = readout.pooled_rows(seqs.len());
        let (d, hd, kn) = (cfg.hidden, cfg.head_dim, &self.kernels);
        let q_dim = cfg.q_dim();
        let kv_dim = cfg.kv_dim();
        let th = threads.max(1);

        let x = sized(&mut ws.x, n * d);
        // ff_a and ff_b also hold the raw K and output projections.
        let wide = cfg.ffn.max(d).max(q_dim).max(kv_dim);
        let max_dense = self.dense.iter().map(|l| l.k.max(l.n)).max().unwrap_or(d);
        let mut b = BlockBufs {
            t: sized(&mut ws.t, n * d.max(q_dim)),
            q: sized(&mut ws.q, n * q_dim),
            k: sized(&mut ws.k, n * kv_dim),
            v: sized(&mut ws.v, n * kv_dim),
            att: sized(&mut ws.att, n * q_dim),
            ff_a: sized(&mut ws.ff_a, n * wide),
            ff_b: sized(&mut ws.ff_b, n * wide),
            xq: sized(&mut ws.xq, (n * wide).max(m * max_dense) / QK8_0),
            xqk: sized(&mut ws.xqk, n * wide / QK_K),
        };

        let segments = &mut ws.segments;
        segments.clear();
        let mut row = 0;
        for ids in seqs {
            let rows = &mut x[row * d..(row + ids.len()) * d];
            super::layers::embed_rows(&self.token_embd, kn.gather, cfg.style, d, ids, rows);
            segments.push(Segment {
                len: ids.len(),
                pos0: 0,
            });
            row += ids.len();
        }
        let segments = &*segments;

        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let tables = self.rope.get(longest);
        for layer in &self.layers {
            let rope = tables.for_layer(layer);
            layer.qkv(cfg, kn, rope, x, segments, &mut b, th);
            let mut row = 0;
            for s in segments {
                let shape = AttnShape {
                    n_tokens: s.len,
                    n_head: cfg.n_head,
                    n_head_kv: cfg.n_head_kv,
                    head_dim: hd,
                    scale: 1.0 / (hd as f32).sqrt(),
                    // llama.cpp's symmetric window: `sliding_window / 2` each side.
                    mask: match layer.window {
                        None => Mask::Full,
                        Some(window) => Mask::Window { radius: window / 2 },
                    },
                };
                let (qs, kvs) = (
                    row * q_dim..(row + s.len) * q_dim,
                    row * kv_dim..(row + s.len) * kv_dim,
                );
                exec::attention(
                    self.attention,
                    &b.q[qs.clone()],
                    &b.k[kvs.clone()],
                    &b.v[kvs],
                    &shape,
                    &mut b.att[qs],
                    &mut ws.scores,
                    th,
                );
                row += s.len;
            }
            layer.attn_out(cfg, kn, x, n, &mut b, th);
            layer.ffn(cfg, kn, x, n, &mut b, th);
        }

        (kn.rms_norm_hidden)(x, self.output_norm.get(), cfg.eps, &mut b.t[..n * d]);
        let width = max_dense.max(d);
        let pooled = sized(&mut ws.pooled, m * width);
        match readout {
            Readout::Tokens => {
                out[..n * d].copy_from_slice(&b.t[..n * d]);
                return Ok(());
            }
            Readout::PerSequence => {
                let mut row = 0;
                for (s, p) in segments.iter().zip(pooled.chunks_exact_mut(d)) {
                    super::pool(
                        self.pooling,
                        self.mean_pool,
                        &b.t[row * d..(row + s.len) * d],
                        p,
                    );
                    row += s.len;
                }
            }
            Readout::Spans(spans) => {
                for (s, p) in spans.iter().zip(pooled.chunks_exact_mut(d)) {
                    super::pool(
                        self.pooling,
                        self.mean_pool,
                        &b.t[s.start * d..s.end * d],
                        p,
                    );
                }
            }
        }

        // The dense projections: one matmul over the pack's pooled rows.
        let xq = b.xq;
        let mut cur = sized(&mut ws.pooled, m * width);
        let mut next = sized(&mut ws.pooled_b, m * width);
        for lin in &self.dense {
            let xq_d = &mut xq[..m * lin.k / QK8_0];
            lin.prepare(&cur[..m * lin.k], xq_d);
            lin.forward(
                Input {
                    f32: &cur[..m * lin.k],
                    q8: xq_d,
                    q8k: &[],
                },
                m,
                &mut next[..m * lin.n],
                false,
                th,
            );
            std::mem::swap(&mut cur, &mut next);
        }
        out[..m * d].copy_from_slice(&cur[..m * d]);
        Ok(())
    }
}
