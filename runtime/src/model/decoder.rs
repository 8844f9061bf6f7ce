//! The decoder of every generation architecture kiln runs: Gemma 3
//! (`gemma3`, e.g. Gemma-3-270M) and the llama family (`llama`, e.g.
//! SmolLM2-135M). Their differences are a [`Style`] and a [`LayerConfig`]
//! read from the GGUF (see `layers.rs`); the layer loop is one.
//!
//! Attention is causal over a [`KvCache`]: global layers see every earlier
//! position, local layers (Gemma) the last `attention.sliding_window`
//! positions (query `p` sees keys `p - window < j <= p`, llama.cpp's
//! standard SWA). Queries are scaled by `1/sqrt(head_dim)` (llama.cpp's
//! `f_attention_scale` for every Gemma 3 size but 27B, whose
//! `query_pre_attn_scalar` differs: a 27B file is refused). Logits come
//! from `output.weight` when the file has it, else from the token
//! embedding (tied output, e.g. a Q8_0 matvec over Gemma's 262,144-row
//! vocabulary), computed for the last position only.
//! `final_logit_softcapping` is applied when the GGUF has the key
//! (`cap · tanh(x / cap)`); Gemma 3 GGUFs have none, and llama.cpp's
//! sliding-window Gemma 3 graph never caps.
//!
//! GGUF keys: those of `layers.rs` under the architecture's prefix, and
//! `ARCH.final_logit_softcapping` if present. Tensors: `token_embd`,
//! `output_norm`, optional `output`, the per-layer ones.

use std::sync::Arc;

use super::exec::{self, Segment, Workspace, sized};
use super::kv_cache::{CacheShape, KvCache, KvType, MAX_CHUNK};
use super::layers::{BlockBufs, Layer, LayerConfig, LayerKernels, Rope};
use super::linear::{Input, Linear};
use super::pack_cache::{PackCache, Packs};
use super::weights::{Data, Tensors, WeightData};
use super::{DecoderModel, DecoderOptions, DecoderState, ModelError};
use crate::gguf::GgufFile;
use crate::kernels::{AttnShape, KernelSet, Mask};
use crate::quant::{BlockQ8_0, BlockQ8K, QK_K, QK8_0};

/// Layer count of Gemma 3 27B, whose attention scale is not `1/sqrt(head_dim)`.
const LAYERS_27B: usize = 62;

/// An opened decoder.
pub(crate) struct Decoder {
    cfg: LayerConfig,
    /// Positions a session holds (the planned context).
    context: usize,
    token_embd: WeightData,
    /// The output projection: `output`, or `token_embd` read as a matrix.
    output: Linear,
    n_vocab: usize,
    layers: Vec<Layer>,
    output_norm: Data<f32>,
    softcap: Option<f32>,
    rope: Rope,
    kernels: LayerKernels,
    /// Bytes of weights converted to f32 at open (types without a kernel).
    owned_bytes: usize,
    /// Keep the maps that every `Data` points into alive; declared last.
    _packs: Option<PackCache>,
    _file: Arc<GgufFile>,
}

impl Decoder {
    /// Opens `file` as architecture `arch` (its `general.architecture`).
    pub(crate) fn open(
        file: Arc<GgufFile>,
        arch: &str,
        kernels: &'static dyn KernelSet,
        options: &DecoderOptions,
    ) -> Result<Self, ModelError> {
        let md = file.metadata();
        let cfg = LayerConfig::read(md, arch)?;
        if arch == "gemma3" && cfg.n_layer == LAYERS_27B {
            return Err(ModelError::Config(
                "Gemma 3 27B (query_pre_attn_scalar != head_dim) is not supported".into(),
            ));
        }
        super::check_layer_count(&file, &format!("{arch}.block_count"), cfg.n_layer)?;
        let context = options
            .context
            .unwrap_or(DEFAULT_CONTEXT.min(cfg.context))
            .max(1);
        if context > cfg.context {
            return Err(ModelError::Config(format!(
                "context {context} is longer than the model's trained context of {}",
                cfg.context
            )));
        }
        let softcap_key = format!("{arch}.final_logit_softcapping");
        let softcap = match md.get(&softcap_key) {
            Some(_) => {
                let cap = md.get_f32(&softcap_key)?;
                if !cap.is_finite() {
                    return Err(ModelError::BadMetadata {
                        key: softcap_key,
                        value: cap.to_string(),
                        reason: "a logit soft cap must be finite".into(),
                    });
                }
                Some(cap).filter(|c| *c > 0.0)
            }
            None => None,
        };
        let packs = Packs::for_file(&file, options.pack_dir.as_deref());
        let t = Tensors::new(&file, &packs);
        let layers = super::layers::load_layers(&t, &cfg, kernels)?;
        let n_vocab = super::vocab_rows(&file)?;
        let token_embd = t.table("token_embd.weight", cfg.hidden, n_vocab)?;
        // Through `Tensors::linear`, so that once a tied output is repacked
        // the file's pages of the table leave the resident set (178 MB for
        // Gemma-3-270M): the gather reads only the prompt's rows.
        let output_name = if t.has("output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        let output = t.linear(
            output_name,
            t.matrix(output_name, cfg.hidden, n_vocab)?,
            (cfg.hidden, n_vocab),
            None,
            kernels,
        );
        let output_norm = t.f32("output_norm.weight", &[cfg.hidden as u64])?;
        let owned_bytes = layers
            .iter()
            .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down])
            .chain([&output])
            .map(|l| l.owned_bytes())
            .sum();
        Ok(Decoder {
            context,
            token_embd,
            output,
            n_vocab,
            layers,
            output_norm,
            softcap,
            rope: Rope::new(&cfg, context),
            kernels: LayerKernels::new(kernels, &cfg),
            owned_bytes,
            cfg,
            _packs: packs.finish(),
            _file: file,
        })
    }

    fn cache_shape(&self) -> CacheShape {
        CacheShape {
            windows: self.layers.iter().map(|l| l.window).collect(),
            kv_dim: self.cfg.kv_dim(),
            context: self.context,
        }
    }

    /// Runs one chunk (at most `MAX_CHUNK` ids) at the cache's end; leaves
    /// the final hidden rows in `ws.x`.
    fn chunk(&self, ids: &[u32], cache: &mut KvCache, ws: &mut Workspace, threads: usize) {
        let cfg = &self.cfg;
        let n = ids.len();
        let pos0 = cache.len();
        let (d, kn) = (cfg.hidden, &self.kernels);
        let (x, mut b, scores) = buffers(ws, cfg, n);
        super::layers::embed_rows(&self.token_embd, kn.gather, cfg.style, d, ids, x);
        let scale = 1.0 / (cfg.head_dim as f32).sqrt();
        // A prompt's first chunk sees only its own keys: the generated
        // (tiled, vector) attention kernel runs on them as computed, before
        // an f16 cache rounds them (SmolLM2's 538-token prefill 429 -> 525
        // tok/s against reading them back; the f16 rounding then applies
        // from the next chunk on, a difference of the size of a summation
        // order's). Later chunks
        // and decode steps read the cache.
        let fresh = pos0 == 0;
        let tables = self.rope.get(pos0 + n);
        for (il, layer) in self.layers.iter().enumerate() {
            layer.qkv(
                cfg,
                kn,
                tables.for_layer(layer),
                x,
                &[Segment { len: n, pos0 }],
                &mut b,
                threads,
            );
            cache.write(il, pos0, b.k, b.v);
            if fresh {
                let shape = AttnShape {
                    n_tokens: n,
                    n_head: cfg.n_head,
                    n_head_kv: cfg.n_head_kv,
                    head_dim: cfg.head_dim,
                    scale,
                    mask: match layer.window {
                        None => Mask::Causal,
                        Some(window) => Mask::CausalWindow { window },
                    },
                };
                exec::attention(kn.attention, b.q, b.k, b.v, &shape, b.att, scores, threads);
            } else {
                cache.attend(
                    kn.attend_cache,
                    il,
                    b.q,
                    pos0,
                    (cfg.n_head, cfg.head_dim),
                    scale,
                    b.att,
                    scores,
                    threads,
                );
            }
            layer.attn_out(cfg, kn, x, n, &mut b, threads);
            layer.ffn(cfg, kn, x, n, &mut b, threads);
        }
        cache.advance(n);
    }
}

/// The residual rows, the blocks' buffers and the attention scratch of an
/// `n`-row step, carved out of `ws`.
fn buffers<'w>(
    ws: &'w mut Workspace,
    cfg: &LayerConfig,
    n: usize,
) -> (&'w mut [f32], BlockBufs<'w>, &'w mut Vec<f32>) {
    let d = cfg.hidden;
    let (q_dim, kv_dim) = (cfg.q_dim(), cfg.kv_dim());
    let wide = cfg.ffn.max(d).max(q_dim).max(kv_dim);
    let b = BlockBufs {
        t: sized(&mut ws.t, n * d.max(q_dim)),
        q: sized(&mut ws.q, n * q_dim),
        k: sized(&mut ws.k, n * kv_dim),
        v: sized(&mut ws.v, n * kv_dim),
        att: sized(&mut ws.att, n * q_dim),
        ff_a: sized(&mut ws.ff_a, n * wide),
        ff_b: sized(&mut ws.ff_b, n * wide),
        xq: sized(&mut ws.xq, n * wide / QK8_0),
        xqk: sized(&mut ws.xqk, n * wide / QK_K),
    };
    (sized(&mut ws.x, n * d), b, &mut ws.scores)
}

/// Context planned when the caller does not say (the CLI's `--ctx` default).
pub const DEFAULT_CONTEXT: usize = 4096;

impl DecoderModel for Decoder {
    fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    fn trained_context(&self) -> usize {
        self.cfg.context
    }

    fn context(&self) -> usize {
        self.context
    }

    fn hidden(&self) -> usize {
        self.cfg.hidden
    }

    fn n_layer(&self) -> usize {
        self.cfg.n_layer
    }

    fn converted_bytes(&self) -> usize {
        self.owned_bytes
    }

    fn new_state(&self, kv: KvType) -> DecoderState {
        DecoderState {
            cache: KvCache::new(&self.cache_shape(), kv),
            ws: Workspace::default(),
            norm: Vec::new(),
            xq: Vec::new(),
            xqk: Vec::new(),
        }
    }

    fn forward(
        &self,
        ids: &[u32],
        state: &mut DecoderState,
        logits: Option<&mut [f32]>,
        threads: usize,
    ) -> Result<(), ModelError> {
        self.check(ids, state)?;
        let th = threads.max(1);
        let mut logits = logits;
        exec::with_hot_workers(th, || {
            self.run(ids, state, logits.as_deref_mut(), false, th)
        });
        match logits {
            Some(l) => super::check_finite("logits", &l[..self.n_vocab]),
            None => Ok(()),
        }
    }

    fn forward_rows(
        &self,
        ids: &[u32],
        state: &mut DecoderState,
        logits: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError> {
        self.check(ids, state)?;
        let rows = ids.len() * self.n_vocab;
        if ids.len() > MAX_CHUNK || logits.len() < rows {
            return Err(ModelError::Config(format!(
                "forward_rows takes at most {MAX_CHUNK} ids and ids x n_vocab logits ({} ids, {} logits)",
                ids.len(),
                logits.len()
            )));
        }
        let th = threads.max(1);
        exec::with_hot_workers(th, || self.run(ids, state, Some(&mut *logits), true, th));
        super::check_finite("logits", &logits[..rows])
    }

    fn forward_batch(
        &self,
        ids: &[u32],
        states: &mut [&mut DecoderState],
        logits: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError> {
        let rows = ids.len() * self.n_vocab;
        if ids.len() != states.len() || ids.len() > MAX_CHUNK || logits.len() < rows {
            return Err(ModelError::Config(format!(
                "forward_batch takes one id per state, at most {MAX_CHUNK}, and ids x n_vocab logits \
                 ({} ids, {} states, {} logits)",
                ids.len(),
                states.len(),
                logits.len()
            )));
        }
        for (id, st) in ids.iter().zip(states.iter()) {
            self.check(std::slice::from_ref(id), st)?;
        }
        let th = threads.max(1);
        // The first state's scratch serves the whole batch.
        let mut ws = std::mem::take(&mut states[0].ws);
        let (mut norm, mut xq, mut xqk) = (
            std::mem::take(&mut states[0].norm),
            std::mem::take(&mut states[0].xq),
            std::mem::take(&mut states[0].xqk),
        );
        exec::with_hot_workers(th, || {
            self.batch(ids, states, &mut ws, th);
            let d = self.cfg.hidden;
            self.logits(
                &ws.x[..ids.len() * d],
                &mut norm,
                &mut xq,
                &mut xqk,
                logits,
                th,
            );
        });
        let s0 = &mut states[0];
        (s0.ws, s0.norm, s0.xq, s0.xqk) = (ws, norm, xq, xqk);
        super::check_finite("logits", &logits[..rows])
    }
}

impl Decoder {
    /// What [`DecoderModel::forward`] checks before touching the state.
    fn check(&self, ids: &[u32], state: &DecoderState) -> Result<(), ModelError> {
        if ids.is_empty() {
            return Err(ModelError::Empty);
        }
        let have = state.cache.len();
        if have + ids.len() > self.context {
            return Err(ModelError::TooLong {
                n_tokens: have + ids.len(),
                max: self.context,
            });
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.n_vocab) {
            return Err(ModelError::BadToken {
                id,
                n_vocab: self.n_vocab,
            });
        }
        Ok(())
    }
}

impl Decoder {
    /// [`DecoderModel::forward`] after its checks, inside its hot-worker
    /// scope.
    fn run(
        &self,
        ids: &[u32],
        state: &mut DecoderState,
        logits: Option<&mut [f32]>,
        every_row: bool,
        th: usize,
    ) {
        let mut last = 0;
        for chunk in ids.chunks(MAX_CHUNK) {
            self.chunk(chunk, &mut state.cache, &mut state.ws, th);
            last = chunk.len();
        }
        if let Some(logits) = logits {
            let d = self.cfg.hidden;
            // The last row, or (every_row, one chunk) all of them.
            let first = if every_row { 0 } else { last - 1 };
            let DecoderState {
                ws, norm, xq, xqk, ..
            } = state;
            self.logits(&ws.x[first * d..last * d], norm, xq, xqk, logits, th);
        }
    }

    /// Next-token logits of the hidden `rows` (`[m][hidden]`) into
    /// `logits` (`[m][n_vocab]`): final norm, output projection, soft cap.
    fn logits(
        &self,
        rows: &[f32],
        norm: &mut Vec<f32>,
        xq: &mut Vec<BlockQ8_0>,
        xqk: &mut Vec<BlockQ8K>,
        logits: &mut [f32],
        th: usize,
    ) {
        let d = self.cfg.hidden;
        let m = rows.len() / d;
        let normed = sized(norm, m * d);
        for (r, n) in rows.chunks_exact(d).zip(normed.chunks_exact_mut(d)) {
            (self.kernels.rms_norm_hidden)(r, self.output_norm.get(), self.cfg.eps, n);
        }
        let xq = sized(xq, m * d / QK8_0);
        let xqk = sized(xqk, m * d / QK_K);
        super::layers::prepare(&[&self.output], normed, xq, xqk);
        let out = &mut logits[..m * self.n_vocab];
        self.output.forward(
            Input {
                f32: normed,
                q8: xq,
                q8k: xqk,
            },
            m,
            out,
            false,
            th,
        );
        if let Some(cap) = self.softcap {
            for l in out.iter_mut() {
                *l = cap * (*l / cap).tanh();
            }
        }
    }

    /// One decode step of several sequences: row `i` is `ids[i]` at the
    /// end of `states[i]`'s cache. Projections and the feed-forward run
    /// over all rows at once (weights read once); RoPE, the cache write
    /// and attention run per sequence on its own cache.
    fn batch(&self, ids: &[u32], states: &mut [&mut DecoderState], ws: &mut Workspace, th: usize) {
        let cfg = &self.cfg;
        let n = ids.len();
        let (d, kn) = (cfg.hidden, &self.kernels);
        let (x, mut b, scores) = buffers(ws, cfg, n);
        super::layers::embed_rows(&self.token_embd, kn.gather, cfg.style, d, ids, x);
        let scale = 1.0 / (cfg.head_dim as f32).sqrt();
        let segments: Vec<Segment> = states
            .iter()
            .map(|s| Segment {
                len: 1,
                pos0: s.cache.len(),
            })
            .collect();
        let end = segments.iter().map(|s| s.pos0 + 1).max().unwrap_or(1);
        let tables = self.rope.get(end);
        for (il, layer) in self.layers.iter().enumerate() {
            layer.qkv(cfg, kn, tables.for_layer(layer), x, &segments, &mut b, th);
            let (q_dim, kv_dim) = (cfg.q_dim(), cfg.kv_dim());
            for (i, (st, seg)) in states.iter_mut().zip(&segments).enumerate() {
                let kv = i * kv_dim..(i + 1) * kv_dim;
                st.cache.write(il, seg.pos0, &b.k[kv.clone()], &b.v[kv]);
                let q = i * q_dim..(i + 1) * q_dim;
                st.cache.attend(
                    kn.attend_cache,
                    il,
                    &b.q[q.clone()],
                    seg.pos0,
                    (cfg.n_head, cfg.head_dim),
                    scale,
                    &mut b.att[q],
                    scores,
                    th,
                );
            }
            layer.attn_out(cfg, kn, x, n, &mut b, th);
            layer.ffn(cfg, kn, x, n, &mut b, th);
        }
        for st in states.iter_mut() {
            st.cache.advance(1);
        }
    }
}
