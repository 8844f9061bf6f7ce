//! The transformer layer every decoder-style architecture shares: the
//! Gemma 3 encoder (`gemma-embedding`), the Gemma 3 decoder (`gemma3`) and
//! the llama family (`llama`: Llama, SmolLM, Mistral-style files). What
//! differs between them is data in a [`Style`] and a [`LayerConfig`] read
//! from the GGUF, never a second copy of the layer code.
//!
//! A layer is: RMSNorm → Q/K/V projections → (Gemma: per-head RMSNorm of Q
//! and K) → RoPE (Gemma: NeoX halves, base `rope.freq_base` on global
//! layers and `rope.freq_base_swa` or 10000 on local ones; llama: adjacent
//! pairs, the converter having permuted Q and K for it) → attention (the
//! models differ here: bidirectional or causal, and how a local layer's
//! window is read) → output projection → (Gemma: RMSNorm) → residual add;
//! then RMSNorm → gated FFN (Gemma: tanh-GELU of the gate times up; llama:
//! SiLU) → down projection → (Gemma: RMSNorm) → residual add. In Gemma
//! every `SWA_PATTERN`-th layer is global and the others see a sliding
//! window; llama layers are all global.
//!
//! GGUF keys (under the architecture's prefix): `block_count,
//! context_length, embedding_length, feed_forward_length,
//! attention.head_count, attention.head_count_kv,
//! attention.layer_norm_rms_epsilon, rope.freq_base`; optional
//! `attention.key_length` and `attention.value_length` (default
//! `embedding_length / head_count`), `rope.dimension_count` (must equal the
//! head size: partial rotation is refused); Gemma also
//! `attention.sliding_window` and `rope.freq_base_swa`. Tensors per layer:
//! `blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
//! ffn_gate, ffn_up, ffn_down}` and, in Gemma, `attn_q_norm, attn_k_norm,
//! post_attention_norm, post_ffw_norm`. Norm weights are used as stored:
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

/// llama.cpp's RoPE base when a llama-family GGUF has no `rope.freq_base`.
const DEFAULT_ROPE_BASE: f32 = 10_000.0;

/// The gate activation of the feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// GELU, tanh approximation (GeGLU: Gemma).
    GeluTanh,
    /// `x · sigmoid(x)` (SwiGLU: the llama family).
    Silu,
}

/// How an architecture's layers and embeddings differ from the common
/// shape: the one place an architecture name turns into behaviour.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    /// The family's name, for errors.
    pub(crate) name: &'static str,
    /// Per-head RMSNorm of Q and K before RoPE.
    pub(crate) qk_norm: bool,
    /// RMSNorm of each block's output before its residual add (Gemma's
    /// "sandwich" norms).
    pub(crate) post_norms: bool,
    /// Token embeddings scaled by `sqrt(hidden)`.
    pub(crate) embed_scale: bool,
    pub(crate) activation: Activation,
    /// RoPE over split halves (NeoX) rather than adjacent pairs.
    pub(crate) neox: bool,
    /// Every n-th layer global, the others a sliding window.
    pub(crate) swa_pattern: Option<usize>,
}

impl Style {
    /// Gemma 3, encoder and decoder.
    const GEMMA3: Style = Style {
        name: "Gemma 3",
        qk_norm: true,
        post_norms: true,
        embed_scale: true,
        activation: Activation::GeluTanh,
        neox: true,
        swa_pattern: Some(SWA_PATTERN),
    };

    /// llama.cpp's `llama` architecture (`LLAMA_ROPE_TYPE_NORM`).
    const LLAMA: Style = Style {
        name: "llama",
        qk_norm: false,
        post_norms: false,
        embed_scale: false,
        activation: Activation::Silu,
        neox: false,
        swa_pattern: None,
    };

    /// The style of a GGUF architecture name.
    pub(crate) fn of(arch: &str) -> Result<Style, ModelError> {
        match arch {
            "gemma3" | "gemma-embedding" => Ok(Style::GEMMA3),
            "llama" => Ok(Style::LLAMA),
            other => Err(ModelError::UnsupportedArch(other.to_owned())),
        }
    }
}

/// Hyperparameters read from the GGUF.
#[derive(Clone, Debug)]
pub(crate) struct LayerConfig {
    pub(crate) style: Style,
    pub(crate) n_layer: usize,
    pub(crate) hidden: usize,
    pub(crate) ffn: usize,
    pub(crate) n_head: usize,
    pub(crate) n_head_kv: usize,
    pub(crate) head_dim: usize,
    pub(crate) context: usize,
    pub(crate) eps: f32,
    /// `attention.sliding_window` of the local layers (styles with them).
    pub(crate) window: Option<usize>,
    pub(crate) base_global: f32,
    pub(crate) base_local: f32,
}

impl LayerConfig {
    /// Reads and checks the keys under `arch.`.
    pub(crate) fn read(md: &Metadata, arch: &str) -> Result<Self, ModelError> {
        let style = Style::of(arch)?;
        let key = |name: &str| format!("{arch}.{name}");
        let u = |name: &str| md.get_u32(&key(name)).map(|v| v as usize);
        let opt = |name: &str| -> Result<Option<usize>, ModelError> {
            match md.get(&key(name)) {
                Some(_) => Ok(Some(u(name)?)),
                None => Ok(None),
            }
        };
        let f = |name: &str, default: f32| -> Result<f32, ModelError> {
            match md.get(&key(name)) {
                Some(_) => Ok(md.get_f32(&key(name))?),
                None => Ok(default),
            }
        };
        let hidden = u("embedding_length")?;
        let n_head = u("attention.head_count")?;
        let n_head_kv = u("attention.head_count_kv")?;
        if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(ModelError::Config(format!(
                "{n_head} query heads cannot share {n_head_kv} key/value heads"
            )));
        }
        // llama.cpp's default head size when the file does not say.
        let head_dim = opt("attention.key_length")?.unwrap_or(hidden / n_head);
        let value_dim = opt("attention.value_length")?.unwrap_or(head_dim);
        let cfg = LayerConfig {
            style,
            n_layer: u("block_count")?,
            hidden,
            ffn: u("feed_forward_length")?,
            n_head,
            n_head_kv,
            head_dim,
            context: u("context_length")?,
            eps: md.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            window: match style.swa_pattern {
                Some(_) => Some(u("attention.sliding_window")?),
                None => None,
            },
            base_global: f("rope.freq_base", DEFAULT_ROPE_BASE)?,
            base_local: f("rope.freq_base_swa", DEFAULT_LOCAL_ROPE_BASE)?,
        };
        if value_dim != head_dim
            || head_dim == 0
            || !head_dim.is_multiple_of(2)
            || cfg.hidden == 0
            || cfg.ffn == 0
            || !cfg.hidden.is_multiple_of(QK8_0)
            || !cfg.ffn.is_multiple_of(QK8_0)
            || !cfg.q_dim().is_multiple_of(QK8_0)
        {
            return Err(ModelError::Config(format!(
                "head sizes k={head_dim} v={value_dim}, hidden {}, ffn {} are not supported",
                cfg.hidden, cfg.ffn
            )));
        }
        if let Some(rot) = opt("rope.dimension_count")?
            && rot != head_dim
        {
            return Err(super::bad_metadata(
                &key("rope.dimension_count"),
                rot,
                format!("RoPE over part of a head (head size {head_dim}) is not supported"),
            ));
        }
        let scaling = key("rope.scaling.type");
        if md.get(&scaling).is_some() {
            let ty = md.get_str(&scaling)?;
            if ty != "none" {
                return Err(ModelError::Config(format!(
                    "RoPE scaling `{ty}` ({scaling}) is not supported"
                )));
            }
        }
        if cfg.n_layer == 0 || cfg.context == 0 {
            return Err(ModelError::Config("no layers or no context".into()));
        }
        // A window of 0 lets a local layer's queries see no key at all.
        if let Some(w) = cfg.window {
            super::check_positive(&key("attention.sliding_window"), w)?;
        }
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

    /// The sliding window of layer `il`, `None` when it attends globally.
    fn window_of(&self, il: usize) -> Option<usize> {
        let pattern = self.style.swa_pattern?;
        (il % pattern != pattern - 1).then_some(self.window?)
    }
}

/// The weights of one layer.
pub(crate) struct Layer {
    pub(crate) attn_norm: Data<f32>,
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    /// Per-head norms of Q and K (`Style::qk_norm`).
    pub(crate) qk_norm: Option<(Data<f32>, Data<f32>)>,
    pub(crate) o: Linear,
    pub(crate) post_attn_norm: Option<Data<f32>>,
    pub(crate) ffn_norm: Data<f32>,
    pub(crate) gate: Linear,
    pub(crate) up: Linear,
    pub(crate) down: Linear,
    pub(crate) post_ffn_norm: Option<Data<f32>>,
    /// The sliding window of a local layer; `None` attends globally.
    pub(crate) window: Option<usize>,
}

/// Loads and checks every layer's tensors, layers in parallel on the
/// current rayon pool (repacking the Q8_0 weights is most of an open).
pub(crate) fn load_layers(
    t: &Tensors<'_>,
    cfg: &LayerConfig,
    kernels: &dyn KernelSet,
) -> Result<Vec<Layer>, ModelError> {
    let (hidden, ffn, head_dim) = (cfg.hidden, cfg.ffn, cfg.head_dim);
    let (q_dim, kv_dim) = (cfg.q_dim(), cfg.kv_dim());
    let lin = |name: &str, k: usize, n: usize| -> Result<Linear, ModelError> {
        Ok(t.linear(name, t.matrix(name, k, n)?, (k, n), None, kernels))
    };
    let (h, hd) = (hidden as u64, head_dim as u64);
    let style = cfg.style;
    check_unread_tensors(t, style)?;
    (0..cfg.n_layer)
        .into_par_iter()
        .map(|il| {
            let p = |s: &str| format!("blk.{il}.{s}.weight");
            let norm = |s: &str, dim: u64| t.f32(&p(s), &[dim]);
            let post = |s: &str| style.post_norms.then(|| norm(s, h)).transpose();
            Ok(Layer {
                attn_norm: norm("attn_norm", h)?,
                q: lin(&p("attn_q"), hidden, q_dim)?,
                k: lin(&p("attn_k"), hidden, kv_dim)?,
                v: lin(&p("attn_v"), hidden, kv_dim)?,
                qk_norm: style
                    .qk_norm
                    .then(|| {
                        Ok::<_, ModelError>((norm("attn_q_norm", hd)?, norm("attn_k_norm", hd)?))
                    })
                    .transpose()?,
                o: lin(&p("attn_output"), q_dim, hidden)?,
                post_attn_norm: post("post_attention_norm")?,
                ffn_norm: norm("ffn_norm", h)?,
                gate: lin(&p("ffn_gate"), hidden, ffn)?,
                up: lin(&p("ffn_up"), hidden, ffn)?,
                down: lin(&p("ffn_down"), ffn, hidden)?,
                post_ffn_norm: post("post_ffw_norm")?,
                window: cfg.window_of(il),
            })
        })
        .collect()
}

/// Refuses a file with per-layer tensors this style does not read (the
/// attention biases of Qwen2, the Q/K norms of Qwen3 in a llama-style file,
/// experts) or with RoPE frequency factors: running without them would be
/// a silently different model.
fn check_unread_tensors(t: &Tensors<'_>, style: Style) -> Result<(), ModelError> {
    const COMMON: &[&str] = &[
        "attn_norm",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    const QK_NORM: &[&str] = &["attn_q_norm", "attn_k_norm"];
    const POST_NORM: &[&str] = &["post_attention_norm", "post_ffw_norm"];
    for name in t.names() {
        if name == "rope_freqs.weight" {
            return Err(ModelError::Config(format!(
                "tensor `{name}` (RoPE frequency factors, Llama 3.1-style scaling) is not supported"
            )));
        }
        let Some((_, tensor)) = name.strip_prefix("blk.").and_then(|r| r.split_once('.')) else {
            continue;
        };
        let read = tensor.strip_suffix(".weight").is_some_and(|b| {
            COMMON.contains(&b)
                || (style.qk_norm && QK_NORM.contains(&b))
                || (style.post_norms && POST_NORM.contains(&b))
        });
        if !read {
            return Err(ModelError::Config(format!(
                "tensor `{name}` has no place in kiln's {} layer (biases, extra norms and \
                 experts are not supported)",
                style.name
            )));
        }
    }
    Ok(())
}

/// The kernels the shared blocks call.
pub(crate) struct LayerKernels {
    pub(crate) rms_norm_hidden: RmsNormFn,
    pub(crate) rms_norm_head: RmsNormFn,
    pub(crate) rope: RopeFn,
    /// The gate activation times up, quantized for a Q8_0-reading down
    /// projection.
    pub(crate) gated_q8: GegluQ8_0Fn,
    /// The gate activation alone, in place.
    pub(crate) activation: UnaryFn,
    pub(crate) gather: GatherQ8_0Fn,
    pub(crate) attention: AttentionFn,
    pub(crate) attend_cache: CacheKernels,
}

impl LayerKernels {
    pub(crate) fn new(k: &dyn KernelSet, cfg: &LayerConfig) -> Self {
        let (gated_q8, activation) = match cfg.style.activation {
            Activation::GeluTanh => (k.geglu_q8_0(cfg.ffn), k.gelu_tanh()),
            Activation::Silu => (k.swiglu_q8_0(cfg.ffn), k.silu()),
        };
        LayerKernels {
            rms_norm_hidden: k.rms_norm(cfg.hidden),
            rms_norm_head: k.rms_norm(cfg.head_dim),
            rope: k.rope(cfg.head_dim),
            gated_q8,
            activation,
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
    fn new(cfg: &LayerConfig, positions: usize) -> Self {
        RopeTables {
            global: RopeTable::new(cfg.base_global, cfg.head_dim, positions),
            local: RopeTable::new(cfg.base_local, cfg.head_dim, positions),
            positions,
        }
    }

    pub(crate) fn for_layer(&self, layer: &Layer) -> &RopeTable {
        match layer.window {
            None => &self.global,
            Some(_) => &self.local,
        }
    }
}

/// RoPE tables sized by what calls need: the first
/// [`ROPE_EAGER_POSITIONS`] at open, then grown (to the next power of two,
/// at most `max`) by the first call that needs more. A position's entries
/// do not depend on the table's length, so growing changes no result; a
/// warm call only clones an `Arc` (no allocation).
pub(crate) struct Rope {
    cfg: LayerConfig,
    max: usize,
    tables: Mutex<Arc<RopeTables>>,
}

impl Rope {
    /// Tables for positions up to `max` (the model's or the planned context).
    pub(crate) fn new(cfg: &LayerConfig, max: usize) -> Self {
        Rope {
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

/// Rows of the token embedding, scaled by `sqrt(hidden)` in styles that
/// do (Gemma).
pub(crate) fn embed_rows(
    table: &WeightData,
    gather: GatherQ8_0Fn,
    style: Style,
    hidden: usize,
    ids: &[u32],
    x: &mut [f32],
) {
    let scale = if style.embed_scale {
        (hidden as f32).sqrt()
    } else {
        1.0
    };
    match table {
        WeightData::Q8_0(table) => gather(table.get(), hidden, ids, scale, x),
        WeightData::Q4K(_) | WeightData::Q6K(_) | WeightData::Q5_0(_) | WeightData::Q4_1(_) => {
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

impl Layer {
    /// Attention inputs of the rows of the residual stream `x`, one run of
    /// rows per segment (projections over all rows at once, RoPE per
    /// segment): fills `b.q`, `b.k`, `b.v`.
    #[expect(clippy::too_many_arguments, reason = "a layer step's inputs")]
    pub(crate) fn qkv(
        &self,
        cfg: &LayerConfig,
        kn: &LayerKernels,
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
        // With per-head norms the projections land in scratch and are
        // normed into `q`/`k`; without, they land there directly.
        let (q_raw, k_raw) = match self.qk_norm {
            Some(_) => (&mut *b.att, &mut *b.ff_a),
            None => (&mut *b.q, &mut *b.k),
        };
        forward_together(
            [(&self.q, q_raw), (&self.k, k_raw), (&self.v, &mut *b.v)],
            input,
            n,
            false,
            threads,
        );
        let q = &mut b.q[..n * q_dim];
        let k = &mut b.k[..n * kv_dim];
        if let Some((q_norm, k_norm)) = &self.qk_norm {
            (kn.rms_norm_head)(&b.att[..n * q_dim], q_norm.get(), cfg.eps, q);
            (kn.rms_norm_head)(&b.ff_a[..n * kv_dim], k_norm.get(), cfg.eps, k);
        }
        let neox = cfg.style.neox;
        let mut row = 0;
        for s in segments {
            let (qs, ks) = (
                row * q_dim..(row + s.len) * q_dim,
                row * kv_dim..(row + s.len) * kv_dim,
            );
            (kn.rope)(
                &mut q[qs], cfg.n_head, hd, s.pos0, &rope.cos, &rope.sin, neox,
            );
            (kn.rope)(
                &mut k[ks],
                cfg.n_head_kv,
                hd,
                s.pos0,
                &rope.cos,
                &rope.sin,
                neox,
            );
            row += s.len;
        }
    }

    /// Output projection of the attention result in `b.att`, post-norm and
    /// residual add into `x`.
    pub(crate) fn attn_out(
        &self,
        cfg: &LayerConfig,
        kn: &LayerKernels,
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
        residual_add(
            kn,
            cfg,
            &mut x[..n * d],
            &b.ff_a[..n * d],
            self.post_attn_norm.as_ref(),
            b.t,
        );
    }

    /// The feed-forward block with its norms and residual add, in place on
    /// `n` rows of `x`.
    pub(crate) fn ffn(
        &self,
        cfg: &LayerConfig,
        kn: &LayerKernels,
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
            (kn.gated_q8)(&b.ff_a[..nf], &b.ff_b[..nf], xq_f);
        } else {
            (kn.activation)(&mut b.ff_a[..nf]);
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
        residual_add(
            kn,
            cfg,
            &mut x[..n * d],
            &b.ff_b[..n * d],
            self.post_ffn_norm.as_ref(),
            b.t,
        );
    }
}

/// `x += y`, through the block's post-norm into scratch `t` when the style
/// has one.
fn residual_add(
    kn: &LayerKernels,
    cfg: &LayerConfig,
    x: &mut [f32],
    y: &[f32],
    post_norm: Option<&Data<f32>>,
    t: &mut [f32],
) {
    match post_norm {
        Some(w) => {
            let t = &mut t[..y.len()];
            (kn.rms_norm_hidden)(y, w.get(), cfg.eps, t);
            add_in_place(x, t);
        }
        None => add_in_place(x, y),
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

    fn cfg(context: usize) -> LayerConfig {
        LayerConfig {
            style: Style::GEMMA3,
            n_layer: 1,
            hidden: 64,
            ffn: 64,
            n_head: 1,
            n_head_kv: 1,
            head_dim: 8,
            context,
            eps: 1e-6,
            window: Some(4),
            base_global: 1e6,
            base_local: 1e4,
        }
    }

    #[test]
    fn rope_tables_grow_only_when_needed_and_keep_their_values() {
        // A context from the file sizes nothing beyond the eager part.
        let rope = Rope::new(&cfg(1 << 30), 1 << 30);
        let first = rope.get(10);
        assert_eq!(first.positions, ROPE_EAGER_POSITIONS);
        let grown = rope.get(ROPE_EAGER_POSITIONS + 1);
        assert_eq!(grown.positions, 2 * ROPE_EAGER_POSITIONS);
        let n = first.global.cos.len();
        assert_eq!(first.global.cos[..], grown.global.cos[..n]);
        assert_eq!(first.local.sin[..], grown.local.sin[..n]);
        // Capped at the context.
        let small = Rope::new(&cfg(100), 100);
        assert_eq!(small.get(100).positions, 100);
    }
}
