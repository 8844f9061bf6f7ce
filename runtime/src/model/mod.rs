//! Model architectures: configuration read from GGUF metadata, weights
//! viewed in place, and the forward pass of each architecture over the
//! kernels of one [`KernelSet`].
//!
//! Opening a model resolves, once, every kernel it will call (specialized to
//! the model's shapes where the build-time table has them), checks every
//! tensor's name, type and shape, and sizes the per-worker scratch arena.
//! Running it afterwards only calls function pointers over preallocated
//! buffers.

mod bert;
mod decoder;
mod exec;
mod gemma_embedding;
mod kv_cache;
mod layers;
mod linear;
mod pack_cache;
mod weights;

use std::ops::Range;
use std::sync::Arc;

use thiserror::Error;

use crate::gguf::{GgufError, GgufFile};
use crate::kernels::{self, KernelSet};
use crate::quant::{BlockQ8_0, BlockQ8K};

pub use decoder::DEFAULT_CONTEXT;
pub use exec::Workspace;
pub use kv_cache::{KvCache, KvType, MAX_CHUNK};

/// How token vectors become one text vector (GGUF `<arch>.pooling_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of all token vectors.
    Mean,
    /// The first token's vector (`[CLS]`).
    Cls,
    /// The last token's vector.
    Last,
}

impl Pooling {
    /// Decodes llama.cpp's `pooling_type` values.
    pub fn from_gguf(value: u32) -> Option<Pooling> {
        match value {
            1 => Some(Pooling::Mean),
            2 => Some(Pooling::Cls),
            3 => Some(Pooling::Last),
            _ => None,
        }
    }

    /// llama.cpp's `pooling_type` value.
    pub fn to_gguf(self) -> u32 {
        match self {
            Pooling::Mean => 1,
            Pooling::Cls => 2,
            Pooling::Last => 3,
        }
    }

    /// Lower-case name for humans and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
        }
    }
}

/// What can go wrong opening or running a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The GGUF itself is unreadable or lacks a key.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The file's architecture is not one kiln runs.
    #[error(
        "unsupported architecture `{0}` (kiln embeds with: {enc}; generates with: {dec})",
        enc = ENCODER_ARCHS.join(", "),
        dec = DECODER_ARCHS.join(", ")
    )]
    UnsupportedArch(String),
    /// A tensor the architecture needs is missing.
    #[error("tensor `{0}` is missing")]
    MissingTensor(String),
    /// A tensor has a shape the configuration does not predict.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// Tensor name.
        name: String,
        /// Shape in the file (ggml order).
        found: Vec<u64>,
        /// Shape the metadata implies.
        expected: Vec<u64>,
    },
    /// A tensor's type cannot be used where it stands.
    #[error("tensor `{name}` has type {ty}, which kiln cannot use here (supported: {supported})")]
    TensorType {
        /// Tensor name.
        name: String,
        /// Its type name.
        ty: String,
        /// Types accepted at that place.
        supported: &'static str,
    },
    /// The metadata describes a model kiln cannot run.
    #[error("unsupported configuration: {0}")]
    Config(String),
    /// A metadata value that is out of range or contradicts the tensors
    /// present (checked at open, before anything is sized from it).
    #[error("metadata `{key}` = {value}: {reason}")]
    BadMetadata {
        /// The key.
        key: String,
        /// Its value as read.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The forward pass produced a NaN or an infinity (broken weights or
    /// norms): an error rather than a vector or logits of garbage.
    #[error("the model computed a non-finite {what} (NaN or infinity): its weights are broken")]
    NonFinite {
        /// What was not finite, e.g. `embedding` or `logits`.
        what: &'static str,
    },
    /// The input has more tokens than the model's context.
    #[error("input has {n_tokens} tokens, more than the model's context of {max}")]
    TooLong {
        /// Tokens in the input.
        n_tokens: usize,
        /// The model's context length.
        max: usize,
    },
    /// No tokens at all.
    #[error("input has no tokens")]
    Empty,
    /// A chunk span that is empty or reaches past its input.
    #[error("token span {start}..{end} is empty or outside the input's {n_tokens} tokens")]
    BadSpan {
        /// First token of the span.
        start: usize,
        /// One past its last token.
        end: usize,
        /// Tokens in the input.
        n_tokens: usize,
    },
    /// A token id the vocabulary does not have.
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    BadToken {
        /// The id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
}

/// Checks token ids before a forward pass: not empty, within the context,
/// inside the vocabulary (ids may come from a caller, not our tokenizer).
pub(crate) fn check_ids(ids: &[u32], context: usize, n_vocab: usize) -> Result<(), ModelError> {
    if ids.is_empty() {
        return Err(ModelError::Empty);
    }
    if ids.len() > context {
        return Err(ModelError::TooLong {
            n_tokens: ids.len(),
            max: context,
        });
    }
    match ids.iter().find(|&&id| id as usize >= n_vocab) {
        Some(&id) => Err(ModelError::BadToken { id, n_vocab }),
        None => Ok(()),
    }
}

fn bad_metadata(key: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> ModelError {
    ModelError::BadMetadata {
        key: key.to_owned(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A count or size that must be at least 1.
pub(crate) fn check_positive(key: &str, value: usize) -> Result<(), ModelError> {
    if value == 0 {
        return Err(bad_metadata(key, value, "must be at least 1"));
    }
    Ok(())
}

/// A norm epsilon: finite and not negative (a negative or NaN one makes
/// every norm NaN).
pub(crate) fn check_eps(key: &str, eps: f32) -> Result<(), ModelError> {
    if !eps.is_finite() || eps < 0.0 {
        return Err(bad_metadata(
            key,
            eps,
            "a norm epsilon must be finite and >= 0",
        ));
    }
    Ok(())
}

/// A RoPE frequency base: finite and positive.
pub(crate) fn check_base(key: &str, base: f32) -> Result<(), ModelError> {
    if !base.is_finite() || base <= 0.0 {
        return Err(bad_metadata(
            key,
            base,
            "a RoPE base must be finite and > 0",
        ));
    }
    Ok(())
}

/// Checks that `n_layer` (the value of `key`) is exactly the number of
/// layers the file has tensors for (`blk.0` to `blk.{n_layer - 1}`), before
/// anything is sized by it.
pub(crate) fn check_layer_count(
    file: &GgufFile,
    key: &str,
    n_layer: usize,
) -> Result<(), ModelError> {
    let present = file
        .tensors()
        .iter()
        .filter_map(|t| {
            t.name
                .strip_prefix("blk.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|il| il.saturating_add(1))
        .max()
        .unwrap_or(0);
    if n_layer != present {
        return Err(bad_metadata(
            key,
            n_layer,
            format!(
                "the file has tensors for {present} layers (blk.0 to blk.{})",
                present.saturating_sub(1)
            ),
        ));
    }
    Ok(())
}

/// Whether every value is finite. Branch-free over blocks so that it
/// vectorizes: a logits row of 262,144 values takes a few microseconds.
pub(crate) fn all_finite(values: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    values.chunks(1024).all(|block| {
        block
            .iter()
            .fold(0u32, |bad, v| bad | u32::from(v.to_bits() & EXP == EXP))
            == 0
    })
}

/// An error unless every value of a model's output is finite.
pub(crate) fn check_finite(what: &'static str, values: &[f32]) -> Result<(), ModelError> {
    if all_finite(values) {
        Ok(())
    } else {
        Err(ModelError::NonFinite { what })
    }
}

/// Pools the rows of `x` (`[n][dim]`, `dim = out.len()`) into `out`.
pub(crate) fn pool(pooling: Pooling, mean: kernels::MeanPoolFn, x: &[f32], out: &mut [f32]) {
    let d = out.len();
    let n = x.len() / d;
    match pooling {
        Pooling::Mean => mean(x, out),
        Pooling::Cls => out.copy_from_slice(&x[..d]),
        Pooling::Last => out.copy_from_slice(&x[(n - 1) * d..n * d]),
    }
}

/// Checks that the tokenizer's token table has exactly a row of the token
/// embedding per token (else ids it produces would be out of range).
pub fn check_vocab(tokens: usize, n_vocab: usize) -> Result<(), ModelError> {
    if tokens != n_vocab {
        return Err(bad_metadata(
            "tokenizer.ggml.tokens",
            format!("{tokens} tokens"),
            format!("token_embd.weight has {n_vocab} rows"),
        ));
    }
    Ok(())
}

/// Rows of the token-embedding table: its vocabulary size.
pub(crate) fn vocab_rows(file: &GgufFile) -> Result<usize, ModelError> {
    let info = file
        .tensor("token_embd.weight")
        .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
    Ok(info.dims.get(1).copied().unwrap_or(0) as usize)
}

/// A text-embedding model, opened and planned.
pub trait EncoderModel: Send + Sync {
    /// Width of the output vector.
    fn dim(&self) -> usize;
    /// Maximum tokens in one input.
    fn context_length(&self) -> usize;
    /// The pooling this model applies.
    fn pooling(&self) -> Pooling;
    /// Vocabulary size: rows of the token-embedding table.
    fn n_vocab(&self) -> usize;
    /// Creates scratch memory for one worker; it grows to the longest input
    /// seen and is then reused without allocating.
    fn workspace(&self) -> Workspace {
        Workspace::default()
    }
    /// Embeds one tokenized text into `out` (`dim()` values), not
    /// normalized, splitting each step across `threads` workers of the
    /// current rayon pool (1: all on the caller's thread).
    fn embed_tokens(
        &self,
        ids: &[u32],
        ws: &mut Workspace,
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError> {
        self.embed_packed(&[ids], ws, out, threads)
    }
    /// Embeds several tokenized texts in one forward pass into `out`
    /// (`seqs.len()` rows of `dim()` values): the matmuls run over all
    /// their tokens at once, so the weights are read once for the whole
    /// pack, while attention, positions and pooling stay per text. Every
    /// row is bit-identical to [`embed_tokens`](Self::embed_tokens) of
    /// that text alone. Runs [`forward`](Self::forward) with the pool's
    /// other workers kept awake (`with_hot_workers`).
    fn embed_packed(
        &self,
        seqs: &[&[u32]],
        ws: &mut Workspace,
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError> {
        exec::with_hot_workers(threads, || {
            self.forward(seqs, Readout::PerSequence, ws, out, threads)
        })?;
        let n = (seqs.len() * self.dim()).min(out.len());
        check_finite("embedding", &out[..n])
    }
    /// Late chunking: one forward pass over `ids`, then each of `spans`
    /// (token ranges of `ids`) pooled from the final token states as the
    /// model pools a whole text, then through the model's projections:
    /// `out` gets `spans.len()` rows of `dim()` values, not normalized. A
    /// span covering all of `ids` gives [`embed_tokens`](Self::embed_tokens)'s
    /// vector.
    fn embed_spans(
        &self,
        ids: &[u32],
        spans: &[Range<usize>],
        ws: &mut Workspace,
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError> {
        if let Some(bad) = spans.iter().find(|s| s.start >= s.end || s.end > ids.len()) {
            return Err(ModelError::BadSpan {
                start: bad.start,
                end: bad.end,
                n_tokens: ids.len(),
            });
        }
        let rows = spans.len() * self.dim();
        exec::with_hot_workers(threads, || {
            self.forward(&[ids], Readout::Spans(spans), ws, &mut out[..rows], threads)
        })?;
        check_finite("embedding", &out[..rows])
    }
    /// The final hidden state of every token of `ids` (after the last
    /// norm, before pooling and projections): `ids.len()` rows of `dim()`
    /// values into `out`.
    fn token_states(
        &self,
        ids: &[u32],
        ws: &mut Workspace,
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError> {
        let rows = ids.len() * self.dim();
        exec::with_hot_workers(threads, || {
            self.forward(&[ids], Readout::Tokens, ws, &mut out[..rows], threads)
        })?;
        check_finite("token state", &out[..rows])
    }
    /// The architecture's forward pass (what a model implements): `seqs`
    /// packed in one pass, read out as `readout` says. [`Readout::Spans`]
    /// and [`Readout::Tokens`] take one sequence.
    fn forward(
        &self,
        seqs: &[&[u32]],
        readout: Readout<'_>,
        ws: &mut Workspace,
        out: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError>;
}

/// What an encoder's forward pass writes out.
#[derive(Clone, Copy, Debug)]
pub enum Readout<'a> {
    /// One pooled, projected vector per sequence.
    PerSequence,
    /// One pooled, projected vector per token span of the one sequence.
    Spans(&'a [Range<usize>]),
    /// The one sequence's final token states, neither pooled nor projected.
    Tokens,
}

impl Readout<'_> {
    /// Pooled rows of a pass over `seqs` sequences.
    pub(crate) fn pooled_rows(self, seqs: usize) -> usize {
        match self {
            Readout::PerSequence => seqs,
            Readout::Spans(s) => s.len(),
            Readout::Tokens => 0,
        }
    }
}

/// Options that change how a model is planned.
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    /// Overrides the GGUF's pooling type.
    pub pooling: Option<Pooling>,
    /// Directory of the pack cache (repacked weights saved at the first
    /// open and mapped by later ones); `None` repacks at every open.
    pub pack_dir: Option<std::path::PathBuf>,
}

/// The `general.architecture` values kiln embeds with.
pub const ENCODER_ARCHS: &[&str] = &["gemma-embedding", "bert"];

/// The `general.architecture` values kiln generates with.
pub const DECODER_ARCHS: &[&str] = &["gemma3", "llama"];

/// Whether `arch` is a generation architecture kiln runs.
pub fn is_decoder_arch(arch: &str) -> bool {
    DECODER_ARCHS.contains(&arch)
}

/// Opens the encoder that `file`'s `general.architecture` names.
pub fn open_encoder(
    file: Arc<GgufFile>,
    kernels: &'static dyn KernelSet,
    options: &ModelOptions,
) -> Result<Box<dyn EncoderModel>, ModelError> {
    let arch = file.metadata().get_str("general.architecture")?.to_owned();
    match arch.as_str() {
        "gemma-embedding" => Ok(Box::new(gemma_embedding::GemmaEmbedding::open(
            file, kernels, options,
        )?)),
        "bert" => Ok(Box::new(bert::Bert::open(file, kernels, options)?)),
        other => Err(ModelError::UnsupportedArch(other.to_owned())),
    }
}

/// Options that change how a decoder is planned.
#[derive(Clone, Debug, Default)]
pub struct DecoderOptions {
    /// Positions a session holds (prompt and generated tokens); default
    /// [`DEFAULT_CONTEXT`], at most the model's trained context.
    pub context: Option<usize>,
    /// As [`ModelOptions::pack_dir`].
    pub pack_dir: Option<std::path::PathBuf>,
}

/// One sequence's state: its key/value cache and scratch memory. Made by
/// [`DecoderModel::new_state`]; reused across generations after
/// [`clear`](Self::clear).
pub struct DecoderState {
    pub(crate) cache: KvCache,
    pub(crate) ws: Workspace,
    pub(crate) norm: Vec<f32>,
    pub(crate) xq: Vec<BlockQ8_0>,
    pub(crate) xqk: Vec<BlockQ8K>,
}

impl DecoderState {
    /// Positions in the cache.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Forgets the sequence (memory is kept).
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    /// Keeps the first `len` positions, to reuse a common prompt prefix;
    /// `false` (and nothing changed) when a sliding-window ring already
    /// overwrote them.
    pub fn truncate(&mut self, len: usize) -> bool {
        self.cache.truncate(len)
    }

    /// The cache.
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }
}

/// A text-generation model (decoder), opened and planned.
pub trait DecoderModel: Send + Sync {
    /// Vocabulary size: the length of a logits row.
    fn n_vocab(&self) -> usize;
    /// The context the model was trained with (`context_length`).
    fn trained_context(&self) -> usize;
    /// Positions one state holds (the planned context).
    fn context(&self) -> usize;
    /// Hidden size.
    fn hidden(&self) -> usize;
    /// Number of layers.
    fn n_layer(&self) -> usize;
    /// Bytes of weights held as f32 because their type has no kernel.
    fn converted_bytes(&self) -> usize;
    /// A fresh state with an empty cache of element type `kv`.
    fn new_state(&self, kv: KvType) -> DecoderState;
    /// Feeds `ids` after the positions already in `state` and, with
    /// `logits` (`n_vocab()` values), writes the next-token logits of the
    /// last one. Fails without touching the state when the ids do not fit
    /// in the context or are outside the vocabulary.
    fn forward(
        &self,
        ids: &[u32],
        state: &mut DecoderState,
        logits: Option<&mut [f32]>,
        threads: usize,
    ) -> Result<(), ModelError>;
    /// Like [`forward`](Self::forward), but writes the next-token logits
    /// of every one of `ids` (`ids.len() · n_vocab()` values, row by row):
    /// the verification pass of speculative decoding. At most
    /// [`MAX_CHUNK`] ids. Each row's logits are
    /// bit-identical to feeding the ids one at a time.
    fn forward_rows(
        &self,
        ids: &[u32],
        state: &mut DecoderState,
        logits: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError>;
    /// One decode step of several sequences at once: `ids[i]` goes after
    /// the positions of `states[i]` (each already holding its prompt), and
    /// row `i` of `logits` (`ids.len() · n_vocab()` values) gets its
    /// next-token logits. The weights are read once for all rows; each
    /// row is bit-identical to a lone [`forward`](Self::forward) step.
    fn forward_batch(
        &self,
        ids: &[u32],
        states: &mut [&mut DecoderState],
        logits: &mut [f32],
        threads: usize,
    ) -> Result<(), ModelError>;
}

/// Opens the decoder that `file`'s `general.architecture` names.
pub fn open_decoder(
    file: Arc<GgufFile>,
    kernels: &'static dyn KernelSet,
    options: &DecoderOptions,
) -> Result<Box<dyn DecoderModel>, ModelError> {
    let arch = file.metadata().get_str("general.architecture")?.to_owned();
    if !is_decoder_arch(&arch) {
        return Err(ModelError::UnsupportedArch(arch));
    }
    Ok(Box::new(decoder::Decoder::open(
        file, &arch, kernels, options,
    )?))
}
