//! BERT encoders (GGUF architecture `bert`), e.g. all-MiniLM-L6-v2 and
//! bge-small.
//!
//! Input: token + absolute position + token-type-0 embeddings, then
//! LayerNorm. Per layer (post-norm): Q/K/V projections with bias →
//! bidirectional attention (scale `1/sqrt(head_dim)`) → output projection
//! with bias → residual add → LayerNorm → up projection with bias → GELU
//! (erf, as the original model) → down projection with bias → residual add
//! → LayerNorm. Then pooling (`bert.pooling_type`: mean or CLS).
//!
//! GGUF keys: `bert.{block_count, context_length, embedding_length,
//! feed_forward_length, attention.head_count, attention.layer_norm_epsilon,
//! pooling_type}`. Tensors: `token_embd`, `position_embd`, `token_types`,
//! `token_embd_norm.{weight,bias}`, and per layer `blk.N.{attn_q, attn_k,
//! attn_v, attn_output, attn_output_norm, ffn_up, ffn_down,
//! layer_output_norm}.{weight,bias}`.

use std::sync::Arc;

use super::exec::{self, Workspace, sized};
use super::linear::{Input, Linear, forward_together};
use super::pack_cache::{PackCache, Packs};
use super::weights::{Data, Tensors, WeightData};
use super::{EncoderModel, ModelError, ModelOptions, Pooling, Readout};
use crate::gguf::GgufFile;
use crate::kernels::{
    AttentionFn, AttnShape, GatherQ8_0Fn, KernelSet, LayerNormFn, Mask, MeanPoolFn, UnaryFn,
};
use crate::quant::QK8_0;

const ARCH: &str = "bert";

struct Norm {
    w: Data<f32>,
    b: Data<f32>,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

struct Kernels {
    layer_norm: LayerNormFn,
    attention: AttentionFn,
    gelu: UnaryFn,
    gather: GatherQ8_0Fn,
    mean_pool: MeanPoolFn,
}

/// An opened BERT model.
pub(crate) struct Bert {
    hidden: usize,
    ffn: usize,
    n_head: usize,
    context: usize,
    eps: f32,
    pooling: Pooling,
    n_vocab: usize,
    token_embd: WeightData,
    position_embd: Data<f32>,
    token_type0: Data<f32>,
    embd_norm: Norm,
    layers: Vec<Layer>,
    kernels: Kernels,
    /// Keep the maps that every `Data` points into alive.
    _packs: Option<PackCache>,
    _file: Arc<GgufFile>,
}

fn key(name: &str) -> String {
    format!("{ARCH}.{name}")
}

impl Bert {
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
        let context = md.get_u32(&key("context_length"))? as usize;
        let eps = md.get_f32(&key("attention.layer_norm_epsilon"))?;
        let pooling = match options.pooling {
            Some(p) => p,
            None => {
                let raw = md.get_u32(&key("pooling_type"))?;
                Pooling::from_gguf(raw).ok_or_else(|| {
                    ModelError::Config(format!("pooling_type {raw} is not supported"))
                })?
            }
        };
        if n_head == 0
            || !hidden.is_multiple_of(n_head)
            || !hidden.is_multiple_of(QK8_0)
            || !ffn.is_multiple_of(QK8_0)
        {
            return Err(ModelError::Config(format!(
                "hidden {hidden}, ffn {ffn} and {n_head} heads are not supported"
            )));
        }
        if n_layer == 0 || context == 0 || hidden == 0 || ffn == 0 {
            return Err(ModelError::Config(
                "no layers, no context or a zero width".into(),
            ));
        }
        super::check_layer_count(&file, &key("block_count"), n_layer)?;
        super::check_eps(&key("attention.layer_norm_epsilon"), eps)?;
        let packs = Packs::for_file(&file, options.pack_dir.as_deref());
        let t = Tensors::new(&file, &packs);
        let h = hidden as u64;
        let norm = |name: &str| -> Result<Norm, ModelError> {
            Ok(Norm {
                w: t.f32(&format!("{name}.weight"), &[h])?,
                b: t.f32(&format!("{name}.bias"), &[h])?,
            })
        };
        let lin = |name: &str, k: usize, n: usize| -> Result<Linear, ModelError> {
            let bias = t.f32(&format!("{name}.bias"), &[n as u64])?;
            let w = format!("{name}.weight");
            Ok(t.linear(&w, t.matrix_q8(&w, k, n)?, (k, n), Some(bias), kernels))
        };
        let mut layers = Vec::with_capacity(n_layer);
        for il in 0..n_layer {
            let p = |s: &str| format!("blk.{il}.{s}");
            layers.push(Layer {
                q: lin(&p("attn_q"), hidden, hidden)?,
                k: lin(&p("attn_k"), hidden, hidden)?,
                v: lin(&p("attn_v"), hidden, hidden)?,
                o: lin(&p("attn_output"), hidden, hidden)?,
                attn_norm: norm(&p("attn_output_norm"))?,
                up: lin(&p("ffn_up"), hidden, ffn)?,
                down: lin(&p("ffn_down"), ffn, hidden)?,
                out_norm: norm(&p("layer_output_norm"))?,
            });
        }
        let n_vocab = super::vocab_rows(&file)?;
        let token_embd = t.table("token_embd.weight", hidden, n_vocab)?;
        let position_embd = t.f32("position_embd.weight", &[h, context as u64])?;
        let n_types = file
            .tensor("token_types.weight")
            .map(|i| i.dims.get(1).copied().unwrap_or(0))
            .unwrap_or(0);
        let token_types = t.f32("token_types.weight", &[h, n_types.max(1)])?;
        let token_type0 = Data::Owned(token_types.get()[..hidden].to_vec());
        let embd_norm = norm("token_embd_norm")?;
        let k = kernels;
        Ok(Bert {
            hidden,
            ffn,
            n_head,
            context,
            eps,
            pooling,
            n_vocab,
            token_embd,
            position_embd,
            token_type0,
            embd_norm,
            layers,
            kernels: Kernels {
                layer_norm: k.layer_norm(hidden),
                attention: k.attention(hidden / n_head),
                gelu: k.gelu_erf(),
                gather: k.gather_q8_0(hidden),
                mean_pool: k.mean_pool(hidden),
            },
            _packs: packs.finish(),
            _file: file,
        })
    }
}

impl EncoderModel for Bert {
    fn dim(&self) -> usize {
        self.hidden
    }

    fn context_length(&self) -> usize {
        self.context
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
        for ids in seqs {
            super::check_ids(ids, self.context, self.n_vocab)?;
        }
        let n: usize = seqs.iter().map(|s| s.len()).sum();
        let (d, kn, th) = (self.hidden, &self.kernels, threads.max(1));
        let hd = d / self.n_head;
        let wide = self.ffn.max(d);
        let x = sized(&mut ws.x, n * d);
        let t = sized(&mut ws.t, n * d);
        let q = sized(&mut ws.q, n * d);
        let k = sized(&mut ws.k, n * d);
        let v = sized(&mut ws.v, n * d);
        let att = sized(&mut ws.att, n * d);
        let ff = sized(&mut ws.ff_a, n * wide);
        let xq = sized(&mut ws.xq, n * wide / QK8_0);

        // Embeddings: token rows + position rows (from 0 in each text) +
        // token type 0, then LayerNorm.
        let pos = self.position_embd.get();
        let tt = self.token_type0.get();
        let mut row = 0;
        for ids in seqs {
            let rows = &mut t[row * d..(row + ids.len()) * d];
            match &self.token_embd {
                WeightData::Q8_0(table) => (kn.gather)(table.get(), d, ids, 1.0, rows),
                WeightData::Q4K(_)
                | WeightData::Q6K(_)
                | WeightData::Q5_0(_)
                | WeightData::Q4_1(_) => {
                    unreachable!("Tensors::table converts these to f32")
                }
                WeightData::F32(table) | WeightData::Dequantized(table, _) => {
                    let table = table.get();
                    for (r, &id) in rows.chunks_exact_mut(d).zip(*ids) {
                        r.copy_from_slice(&table[id as usize * d..][..d]);
                    }
                }
            }
            for (i, r) in rows.chunks_exact_mut(d).enumerate() {
                for ((a, p), y) in r.iter_mut().zip(&pos[i * d..][..d]).zip(tt) {
                    *a += p + y;
                }
            }
            row += ids.len();
        }
        (kn.layer_norm)(
            t,
            self.embd_norm.w.get(),
            self.embd_norm.b.get(),
            self.eps,
            x,
        );

        for layer in &self.layers {
            let xq_h = &mut xq[..n * d / QK8_0];
            layer.q.prepare(x, xq_h);
            let input = Input {
                f32: x,
                q8: xq_h,
                q8k: &[],
            };
            forward_together(
                [
                    (&layer.q, &mut *q),
                    (&layer.k, &mut *k),
                    (&layer.v, &mut *v),
                ],
                input,
                n,
                false,
                th,
            );
            let mut row = 0;
            for ids in seqs {
                let shape = AttnShape {
                    n_tokens: ids.len(),
                    n_head: self.n_head,
                    n_head_kv: self.n_head,
                    head_dim: hd,
                    scale: 1.0 / (hd as f32).sqrt(),
                    mask: Mask::Full,
                };
                let rows = row * d..(row + ids.len()) * d;
                exec::attention(
                    kn.attention,
                    &q[rows.clone()],
                    &k[rows.clone()],
                    &v[rows.clone()],
                    &shape,
                    &mut att[rows],
                    &mut ws.scores,
                    th,
                );
                row += ids.len();
            }
            let xq_h = &mut xq[..n * d / QK8_0];
            layer.o.prepare(att, xq_h);
            // Residual: the projection accumulates onto a copy of the input.
            t.copy_from_slice(x);
            layer.o.forward(
                Input {
                    f32: att,
                    q8: xq_h,
                    q8k: &[],
                },
                n,
                t,
                true,
                th,
            );
            (kn.layer_norm)(
                t,
                layer.attn_norm.w.get(),
                layer.attn_norm.b.get(),
                self.eps,
                x,
            );

            let xq_h = &mut xq[..n * d / QK8_0];
            layer.up.prepare(x, xq_h);
            let nf = n * self.ffn;
            layer.up.forward(
                Input {
                    f32: x,
                    q8: xq_h,
                    q8k: &[],
                },
                n,
                ff,
                false,
                th,
            );
            (kn.gelu)(&mut ff[..nf]);
            let xq_f = &mut xq[..nf / QK8_0];
            layer.down.prepare(&ff[..nf], xq_f);
            t.copy_from_slice(x);
            layer.down.forward(
                Input {
                    f32: &ff[..nf],
                    q8: xq_f,
                    q8k: &[],
                },
                n,
                t,
                true,
                th,
            );
            (kn.layer_norm)(
                t,
                layer.out_norm.w.get(),
                layer.out_norm.b.get(),
                self.eps,
                x,
            );
        }

        match readout {
            Readout::PerSequence => {
                let mut row = 0;
                for (ids, o) in seqs.iter().zip(out.chunks_exact_mut(d)) {
                    let rows = &x[row * d..(row + ids.len()) * d];
                    super::pool(self.pooling, kn.mean_pool, rows, o);
                    row += ids.len();
                }
            }
            Readout::Spans(spans) => {
                for (s, o) in spans.iter().zip(out.chunks_exact_mut(d)) {
                    super::pool(self.pooling, kn.mean_pool, &x[s.start * d..s.end * d], o);
                }
            }
            Readout::Tokens => out[..n * d].copy_from_slice(&x[..n * d]),
        }
        Ok(())
    }
}
