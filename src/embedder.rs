//! The embedding API: text in, one vector out.
//!
//! ```no_run
//! # fn main() -> Result<(), kiln::Error> {
//! let embedder = kiln::Embedder::open("all-MiniLM-L6-v2-Q8_0.gguf")?;
//! let v = embedder.embed("Hello world")?;
//! assert_eq!(v.len(), embedder.dim());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_runtime::gguf::GgufFile;
use kiln_runtime::kernels::L2NormalizeFn;
use kiln_runtime::model::{self, EncoderModel, ModelOptions, Pooling, Workspace};
use kiln_runtime::tokenizer::{EncodeOptions, Tokenizer, TokenizerScratch};

use crate::Error;
use crate::prompts;
use crate::quantize::{self, Embedding, Precision, QuantRange};

/// How texts are embedded. Built with [`EmbedderBuilder`] and fixed for the
/// life of an [`Embedder`].
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// Threads used for one text (and across texts in a batch).
    pub threads: usize,
    /// Output width: the model's width, or a smaller Matryoshka width (the
    /// vector is truncated, then re-normalized when `normalize` is on).
    pub dim: Option<usize>,
    /// Text prepended to every input (a task prompt).
    pub prompt: Option<String>,
    /// Scale each vector to unit length.
    pub normalize: bool,
    /// Cut inputs longer than the context instead of failing.
    pub truncate: bool,
    /// Which end truncation cuts.
    pub truncate_direction: TruncateDirection,
    /// Parse special-token strings (`<bos>`, `[CLS]`, …) in the input as
    /// control tokens. Off by default: input text is text.
    pub parse_special: bool,
    /// Overrides the model's pooling.
    pub pooling: Option<Pooling>,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            dim: None,
            prompt: None,
            normalize: true,
            truncate: false,
            truncate_direction: TruncateDirection::Right,
            parse_special: false,
            pooling: None,
        }
    }
}

/// Which end of an over-long input truncation cuts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TruncateDirection {
    /// Keep the beginning, cut the end (the end token stays).
    #[default]
    Right,
    /// Keep the end, cut the beginning (the start token stays).
    Left,
}

/// Per-call overrides of an [`Embedder`]'s options: `None` keeps the
/// embedder's. Every front end (library, CLI, server, Python,
/// `#[kiln::model]`) expresses its options as one of these, and the
/// embedder alone applies them: prompt, special tokens, length limit and
/// truncation, vocabulary check of token ids, Matryoshka width, L2 normalization and precision.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Matryoshka output width for this call.
    pub dim: Option<usize>,
    /// A named task prompt (see [`prompts`]); `prompt` wins if both are set.
    pub task: Option<String>,
    /// A custom prompt for this call.
    pub prompt: Option<String>,
    /// L2-normalize or not.
    pub normalize: Option<bool>,
    /// Cut over-long inputs instead of failing.
    pub truncate: Option<bool>,
    /// Which end truncation cuts.
    pub truncate_direction: Option<TruncateDirection>,
    /// A length limit below the model's context (e.g. a server's cap).
    pub max_tokens: Option<usize>,
    /// Add the model's start and end special tokens (`[CLS]`/`[SEP]`,
    /// BOS/EOS) to text inputs; on unless set off. Models are trained with
    /// them, so off is mostly for inspecting tokenization.
    pub add_special: Option<bool>,
    /// Output precision of the methods that return [`Embedding`]s
    /// ([`Embedder::embed_batch_as`], [`Embedder::embed_tokens_groups`]);
    /// the methods that return `f32` vectors give the float vector.
    pub precision: Precision,
    /// The range `int8`/`uint8` quantize over.
    pub quantization_range: QuantRange,
}

/// Options of one call, merged and checked.
struct Resolved<'a> {
    dim: usize,
    prompt: Option<&'a str>,
    normalize: bool,
    truncate: bool,
    direction: TruncateDirection,
    max: usize,
    add_special: bool,
    precision: Precision,
    range: QuantRange,
}

/// Builds an [`Embedder`] with options.
#[derive(Clone, Debug, Default)]
pub struct EmbedderBuilder {
    options: EmbedOptions,
    task: Option<String>,
    /// `None`: the default ([`config::default_pack_dir`](crate::config::default_pack_dir)).
    pack_dir: Option<Option<PathBuf>>,
    /// A thread pool shared with other models (instead of one of its own).
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl EmbedderBuilder {
    /// Runs on `pool`, shared with other models, instead of a pool of its
    /// own: several models in one process then never run more threads than
    /// the pool has. Threads per text become the pool's size.
    pub fn pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.options.threads = pool.current_num_threads().max(1);
        self.pool = Some(pool);
        self
    }

    /// Threads per text and across a batch (default: all cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.options.threads = threads.max(1);
        self
    }

    /// Matryoshka output width (e.g. 512, 256, 128 for EmbeddingGemma).
    pub fn dim(mut self, dim: usize) -> Self {
        self.options.dim = Some(dim);
        self
    }

    /// A named task prompt the model defines (e.g. `query`, `document`).
    pub fn task(mut self, name: impl Into<String>) -> Self {
        self.task = Some(name.into());
        self
    }

    /// A custom prompt prepended to every text.
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.options.prompt = Some(prompt.into());
        self
    }

    /// Turns L2 normalization on or off (default on).
    pub fn normalize(mut self, on: bool) -> Self {
        self.options.normalize = on;
        self
    }

    /// Cuts over-long inputs to the context instead of failing.
    pub fn truncate(mut self, on: bool) -> Self {
        self.options.truncate = on;
        self
    }

    /// Which end truncation cuts (default: the end, [`TruncateDirection::Right`]).
    pub fn truncate_direction(mut self, direction: TruncateDirection) -> Self {
        self.options.truncate_direction = direction;
        self
    }

    /// Parses special-token strings in the input.
    pub fn parse_special(mut self, on: bool) -> Self {
        self.options.parse_special = on;
        self
    }

    /// Overrides the model's pooling.
    pub fn pooling(mut self, pooling: Pooling) -> Self {
        self.options.pooling = Some(pooling);
        self
    }

    /// Where repacked weights are saved at a model's first open and mapped
    /// from by later opens (`None`: repack at every open). Default
    /// `$KILN_HOME/packed` (`KILN_PACK_CACHE=off` turns it off).
    pub fn pack_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.pack_dir = Some(dir);
        self
    }

    /// Opens the GGUF at `path` with these options.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Embedder, Error> {
        let file = Arc::new(GgufFile::open(path.as_ref())?);
        self.open_file(file)
    }

    /// Builds the embedder over an opened GGUF.
    pub fn open_file(mut self, file: Arc<GgufFile>) -> Result<Embedder, Error> {
        let arch = file.metadata().get_str("general.architecture")?.to_owned();
        if let Some(task) = &self.task {
            let prompt = prompts::lookup(&arch, task).ok_or_else(|| Error::UnknownTask {
                task: task.clone(),
                arch: arch.clone(),
                known: prompts::names(&arch).join(", "),
            })?;
            self.options.prompt = Some(prompt.to_owned());
        }
        let kernels = crate::kernels::best();
        let pool = match self.pool.take() {
            Some(pool) => pool,
            None => crate::threads::pool(self.options.threads.max(1), "kiln")?,
        };
        // The plan (weight repacking, layers in parallel) and the tokenizer
        // are built side by side on the embedder's own threads.
        let options = ModelOptions {
            pooling: self.options.pooling,
            pack_dir: self
                .pack_dir
                .take()
                .unwrap_or_else(crate::config::default_pack_dir),
        };
        let (model, tokenizer) = pool.install(|| {
            rayon::join(
                || model::open_encoder(file.clone(), kernels, &options),
                || Tokenizer::from_gguf(&file),
            )
        });
        let (model, tokenizer) = (model?, tokenizer?);
        model::check_vocab(tokenizer.vocab_size(), model.n_vocab())?;
        let model_dim = model.dim();
        if let Some(dim) = self.options.dim
            && (dim == 0 || dim > model_dim)
        {
            return Err(Error::BadDim { dim, model_dim });
        }
        Ok(Embedder {
            arch,
            l2: kernels.l2_normalize(),
            model,
            tokenizer,
            options: self.options,
            pool,
            workers: Mutex::new(Vec::new()),
            _file: file,
        })
    }
}

/// Per-worker reusable memory: nothing is allocated per call once warm.
struct Worker {
    ws: Workspace,
    text: String,
    ids: Vec<u32>,
    scratch: TokenizerScratch,
    full: Vec<f32>,
}

/// A text-embedding model ready to embed. `Send + Sync`: share it between
/// threads; concurrent callers each get their own scratch memory.
pub struct Embedder {
    arch: String,
    /// The `l2_normalize` kernel of the set the model runs on.
    l2: L2NormalizeFn,
    model: Box<dyn EncoderModel>,
    tokenizer: Tokenizer,
    options: EmbedOptions,
    pool: Arc<rayon::ThreadPool>,
    workers: Mutex<Vec<Worker>>,
    _file: Arc<GgufFile>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("arch", &self.arch)
            .field("dim", &self.dim())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Opens a GGUF model with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Embedder, Error> {
        EmbedderBuilder::default().open(path)
    }

    /// Starts building an embedder with options.
    pub fn builder() -> EmbedderBuilder {
        EmbedderBuilder::default()
    }

    /// Width of the vectors this embedder returns.
    pub fn dim(&self) -> usize {
        self.options.dim.unwrap_or_else(|| self.model.dim())
    }

    /// The model's maximum input length in tokens.
    pub fn max_tokens(&self) -> usize {
        self.model.context_length()
    }

    /// The GGUF architecture name.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.model.pooling()
    }

    /// The options in use.
    pub fn options(&self) -> &EmbedOptions {
        &self.options
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of `text` exactly as [`embed`](Self::embed) feeds them to
    /// the model (prompt included, before truncation).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, Error> {
        self.tokenize_unlimited(text, &CallOptions::default())
    }

    /// Token ids of `text` with `call`'s prompt and special tokens, before
    /// the length limit (what an over-long input would be cut from).
    pub fn tokenize_unlimited(&self, text: &str, call: &CallOptions) -> Result<Vec<u32>, Error> {
        let r = self.resolve(call)?;
        let mut w = self.worker();
        self.tokenize_into(text, &r, &mut w)?;
        Ok(w.ids.clone())
    }

    /// Token ids of `text` as [`embed_batch_with`](Self::embed_batch_with)
    /// feeds them to the model with `call`: prompt included, truncated (or
    /// rejected) at the length limit.
    pub fn tokenize_with(&self, text: &str, call: &CallOptions) -> Result<Vec<u32>, Error> {
        let r = self.resolve(call)?;
        let mut w = self.worker();
        self.tokenize_into(text, &r, &mut w)?;
        self.limit(&mut w.ids, &r)?;
        Ok(w.ids.clone())
    }

    /// Already-tokenized input as [`embed_tokens_batch`](Self::embed_tokens_batch)
    /// feeds it to the model with `call`: every id checked against the
    /// vocabulary ([`Error::BadToken`]), not empty ([`Error::Empty`]), and
    /// truncated (or rejected, [`Error::TooLong`]) at the length limit from
    /// `call`'s end, keeping the start and end special tokens exactly as
    /// for text. No prompt is added.
    pub fn prepare_tokens(&self, ids: &[u32], call: &CallOptions) -> Result<Vec<u32>, Error> {
        self.checked_tokens(ids, &self.resolve(call)?)
    }

    /// The width of the vectors a call with `call` returns, checked
    /// ([`Error::BadDim`]).
    pub fn dim_with(&self, call: &CallOptions) -> Result<usize, Error> {
        Ok(self.resolve(call)?.dim)
    }

    /// Embeds one text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, Error> {
        let mut out = vec![0.0; self.dim()];
        self.embed_into(text, &mut out)?;
        Ok(out)
    }

    /// Embeds one text with per-call options (`None` fields keep the
    /// embedder's).
    pub fn embed_with(&self, text: &str, call: &CallOptions) -> Result<Vec<f32>, Error> {
        let mut out = vec![0.0; self.dim_with(call)?];
        self.embed_into_with(text, call, &mut out)?;
        Ok(out)
    }

    /// Embeds one text into `out` (`dim()` values). Does not allocate once
    /// warm (after a first call with an input at least as long).
    pub fn embed_into(&self, text: &str, out: &mut [f32]) -> Result<(), Error> {
        let threads = self.options.threads;
        let r = self.defaults();
        let mut w = self.worker();
        if threads > 1 {
            self.pool
                .install(|| self.embed_text(text, out, &mut w, &r, threads))
        } else {
            self.embed_text(text, out, &mut w, &r, 1)
        }
    }

    /// Embeds one text into `out` with per-call options (`None` fields keep
    /// the embedder's); `out` must have the call's width. Does not allocate
    /// once warm.
    pub fn embed_into_with(
        &self,
        text: &str,
        call: &CallOptions,
        out: &mut [f32],
    ) -> Result<(), Error> {
        let threads = self.options.threads;
        let r = self.resolve(call)?;
        let mut w = self.worker();
        if threads > 1 {
            self.pool
                .install(|| self.embed_text(text, out, &mut w, &r, threads))
        } else {
            self.embed_text(text, out, &mut w, &r, 1)
        }
    }

    /// Embeds many texts, packed into shared forward passes that run in
    /// parallel; rows in input order, each equal to embedding its text alone.
    pub fn embed_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, Error> {
        self.embed_batch_with(texts, &CallOptions::default())
    }

    /// Embeds many texts with per-call options (`None` fields keep the
    /// embedder's): what a server needs when each request asks for its own
    /// width, prompt, normalization or truncation.
    pub fn embed_batch_with<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        call: &CallOptions,
    ) -> Result<Vec<Vec<f32>>, Error> {
        let r = self.resolve(call)?;
        let rows = self.text_rows(texts, &r)?;
        Ok(rows.into_iter().map(|row| self.finish(row, &r)).collect())
    }

    /// [`embed_batch_with`](Self::embed_batch_with) at `call`'s
    /// [`precision`](CallOptions::precision).
    pub fn embed_batch_as<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        call: &CallOptions,
    ) -> Result<Vec<Embedding>, Error> {
        let r = self.resolve(call)?;
        let rows = self.text_rows(texts, &r)?;
        Ok(rows
            .into_iter()
            .map(|row| self.finish_as(row, &r))
            .collect())
    }

    /// Embeds already-tokenized inputs, fed to the model exactly as given
    /// (no prompt, no special tokens added), after
    /// [`prepare_tokens`](Self::prepare_tokens)' checks and truncation.
    pub fn embed_tokens_batch<T: AsRef<[u32]> + Sync>(
        &self,
        inputs: &[T],
        call: &CallOptions,
    ) -> Result<Vec<Vec<f32>>, Error> {
        let r = self.resolve(call)?;
        let ids = inputs
            .iter()
            .map(|ids| self.checked_tokens(ids.as_ref(), &r))
            .collect::<Result<Vec<_>, Error>>()?;
        let rows = self.raw_rows(&ids)?;
        Ok(rows.into_iter().map(|row| self.finish(row, &r)).collect())
    }

    /// Embeds groups of already-tokenized inputs, each group with its own
    /// options, in shared forward passes: what a server's batching worker
    /// needs to merge requests that ask for different widths, normalization
    /// or precisions. One list of vectors per group, in order; each vector
    /// equals what [`embed_tokens_batch`](Self::embed_tokens_batch) (then
    /// [`quantize`](crate::quantize::quantize)) gives for it alone.
    pub fn embed_tokens_groups<T: AsRef<[u32]> + Sync>(
        &self,
        groups: &[(&[T], &CallOptions)],
    ) -> Result<Vec<Vec<Embedding>>, Error> {
        let resolved = groups
            .iter()
            .map(|(_, call)| self.resolve(call))
            .collect::<Result<Vec<_>, Error>>()?;
        let mut ids = Vec::with_capacity(groups.iter().map(|(g, _)| g.len()).sum());
        for ((inputs, _), r) in groups.iter().zip(&resolved) {
            for input in inputs.iter() {
                ids.push(self.checked_tokens(input.as_ref(), r)?);
            }
        }
        let mut rows = self.raw_rows(&ids)?.into_iter();
        Ok(groups
            .iter()
            .zip(&resolved)
            .map(|((inputs, _), r)| {
                rows.by_ref()
                    .take(inputs.len())
                    .map(|row| self.finish_as(row, r))
                    .collect()
            })
            .collect())
    }

    /// Tokenizes `texts` (prompt, length limit) in parallel and returns
    /// the model's full-width vectors.
    fn text_rows<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        r: &Resolved<'_>,
    ) -> Result<Vec<Vec<f32>>, Error> {
        use rayon::prelude::*;
        let ids: Vec<Vec<u32>> = self.pool.install(|| {
            texts
                .par_iter()
                .map_init(
                    || self.worker(),
                    |w, text| {
                        self.tokenize_into(text.as_ref(), r, w)?;
                        self.limit(&mut w.ids, r)?;
                        Ok(w.ids.clone())
                    },
                )
                .collect::<Result<_, Error>>()
        })?;
        self.raw_rows(&ids)
    }

    /// The model's full-width vectors (before the Matryoshka cut and
    /// normalization) of inputs already within the length limit, in input
    /// order. One input runs with all threads inside it; several are
    /// packed: consecutive inputs share one forward pass of up to
    /// [`PACK_TOKENS`] tokens, so the weights are read once per pack rather
    /// than once per input, and the packs run in parallel, one thread each.
    fn raw_rows(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, Error> {
        use rayon::prelude::*;
        let threads = self.options.threads;
        let full_dim = self.model.dim();
        if let [one] = ids {
            let mut out = vec![0.0; full_dim];
            let mut w = self.worker();
            self.pool
                .install(|| self.model.embed_tokens(one, &mut w.ws, &mut out, threads))?;
            return Ok(vec![out]);
        }
        self.pool.install(|| {
            let packs = packs(ids, threads);
            let per_pack = if packs.len() == 1 { threads } else { 1 };
            let rows: Vec<Vec<Vec<f32>>> = packs
                .par_iter()
                .map_init(
                    || self.worker(),
                    |w, range| self.run_pack(&ids[range.clone()], w, per_pack),
                )
                .collect::<Result<_, Error>>()?;
            Ok(rows.into_iter().flatten().collect())
        })
    }

    /// Embeds one pack of tokenized inputs in one forward pass: full-width
    /// rows.
    fn run_pack(
        &self,
        ids: &[Vec<u32>],
        w: &mut Worker,
        threads: usize,
    ) -> Result<Vec<Vec<f32>>, Error> {
        let seqs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let full_dim = self.model.dim();
        let full = grown(&mut w.full, seqs.len() * full_dim);
        self.model.embed_packed(&seqs, &mut w.ws, full, threads)?;
        Ok(full.chunks_exact(full_dim).map(<[f32]>::to_vec).collect())
    }

    /// The prompt a call puts before its text, if any.
    pub(crate) fn prompt_of<'a>(&'a self, call: &'a CallOptions) -> Result<Option<&'a str>, Error> {
        Ok(self.resolve(call)?.prompt)
    }

    /// The final hidden state of every token of `ids` (after the last
    /// norm, before pooling and any projection): `ids.len()` rows of the
    /// model's full width, one after another. `ids` go to the model as
    /// given (no special tokens added), within its context.
    pub fn token_states(&self, ids: &[u32]) -> Result<Vec<f32>, Error> {
        let vocab = self.tokenizer.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::BadToken { id, vocab });
        }
        let mut out = vec![0.0; ids.len() * self.model.dim()];
        let mut w = self.worker();
        let threads = self.options.threads;
        self.pool
            .install(|| self.model.token_states(ids, &mut w.ws, &mut out, threads))?;
        Ok(out)
    }

    /// Late chunking over one token sequence: `ids` run through the model
    /// once, and each of `spans` (token ranges of `ids`) is pooled from the
    /// final token states as the model pools a whole input, then finished
    /// as any embedding (projections, Matryoshka width, normalization, as
    /// `call` says). `ids` go to the model as given (no special tokens or
    /// prompt added), within its context. A span over all of `ids` gives
    /// the vector of `ids` embedded whole.
    pub fn embed_token_spans(
        &self,
        ids: &[u32],
        spans: &[std::ops::Range<usize>],
        call: &CallOptions,
    ) -> Result<Vec<Vec<f32>>, Error> {
        let r = self.resolve(call)?;
        let vocab = self.tokenizer.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::BadToken { id, vocab });
        }
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let full_dim = self.model.dim();
        let mut out = vec![0.0; spans.len() * full_dim];
        let mut w = self.worker();
        let threads = self.options.threads;
        self.pool.install(|| {
            self.model
                .embed_spans(ids, spans, &mut w.ws, &mut out, threads)
        })?;
        Ok(out
            .chunks_exact(full_dim)
            .map(|row| self.finish(row.to_vec(), &r))
            .collect())
    }

    /// Finishes a full-width row as a float vector: the Matryoshka cut,
    /// then L2 normalization. The one place both happen.
    fn finish(&self, mut row: Vec<f32>, r: &Resolved<'_>) -> Vec<f32> {
        row.truncate(r.dim);
        self.finish_in_place(&mut row, r);
        row
    }

    /// [`finish`](Self::finish), then the call's precision.
    fn finish_as(&self, row: Vec<f32>, r: &Resolved<'_>) -> Embedding {
        quantize::quantize(self.finish(row, r), r.precision, r.range)
    }

    /// Normalizes an already cut row when the call asks for it.
    fn finish_in_place(&self, out: &mut [f32], r: &Resolved<'_>) {
        if r.normalize {
            normalize_with(self.l2, out);
        }
    }

    /// The embedder's own options, resolved (never allocates).
    fn defaults(&self) -> Resolved<'_> {
        Resolved {
            dim: self.dim(),
            prompt: self.options.prompt.as_deref(),
            normalize: self.options.normalize,
            truncate: self.options.truncate,
            direction: self.options.truncate_direction,
            max: self.model.context_length(),
            add_special: true,
            precision: Precision::Float32,
            range: QuantRange::DEFAULT,
        }
    }

    /// Merges per-call options over the embedder's, checking them. The one
    /// place a width is checked.
    fn resolve<'a>(&'a self, call: &'a CallOptions) -> Result<Resolved<'a>, Error> {
        let mut r = self.defaults();
        if let Some(dim) = call.dim {
            let model_dim = self.model.dim();
            if dim == 0 || dim > model_dim {
                return Err(Error::BadDim { dim, model_dim });
            }
            r.dim = dim;
        }
        if let Some(task) = &call.task {
            r.prompt =
                Some(
                    prompts::lookup(&self.arch, task).ok_or_else(|| Error::UnknownTask {
                        task: task.clone(),
                        arch: self.arch.clone(),
                        known: prompts::names(&self.arch).join(", "),
                    })?,
                );
        }
        if let Some(p) = &call.prompt {
            r.prompt = Some(p.as_str());
        }
        if let Some(n) = call.normalize {
            r.normalize = n;
        }
        if let Some(t) = call.truncate {
            r.truncate = t;
        }
        if let Some(d) = call.truncate_direction {
            r.direction = d;
        }
        if let Some(max) = call.max_tokens {
            r.max = r.max.min(max.max(1));
        }
        if let Some(on) = call.add_special {
            r.add_special = on;
        }
        r.precision = call.precision;
        r.range = call.quantization_range;
        Ok(r)
    }

    fn embed_text(
        &self,
        text: &str,
        out: &mut [f32],
        w: &mut Worker,
        r: &Resolved<'_>,
        threads: usize,
    ) -> Result<(), Error> {
        if out.len() != r.dim {
            return Err(Error::OutputLength {
                len: out.len(),
                dim: r.dim,
            });
        }
        self.tokenize_into(text, r, w)?;
        self.limit(&mut w.ids, r)?;
        let full = grown(&mut w.full, self.model.dim());
        self.model.embed_tokens(&w.ids, &mut w.ws, full, threads)?;
        out.copy_from_slice(&full[..r.dim]);
        self.finish_in_place(out, r);
        Ok(())
    }

    /// Applies the length limit: cuts (from the chosen end, keeping the
    /// start and end special tokens) or fails. The one place inputs, text
    /// or token ids, are cut.
    fn limit(&self, ids: &mut Vec<u32>, r: &Resolved<'_>) -> Result<(), Error> {
        if ids.len() <= r.max {
            return Ok(());
        }
        if !r.truncate {
            return Err(Error::TooLong {
                n_tokens: ids.len(),
                max: r.max,
            });
        }
        match r.direction {
            TruncateDirection::Right => self.tokenizer.truncate(ids, r.max),
            TruncateDirection::Left => {
                let keep_start = usize::from(
                    self.tokenizer.start_token().is_some()
                        && ids.first() == self.tokenizer.start_token().as_ref(),
                );
                let cut = ids.len() - r.max;
                ids.drain(keep_start..keep_start + cut);
            }
        }
        Ok(())
    }

    /// Token ids as given, checked against the vocabulary and not empty,
    /// then within the length limit: the one path of already-tokenized
    /// inputs.
    fn checked_tokens(&self, ids: &[u32], r: &Resolved<'_>) -> Result<Vec<u32>, Error> {
        let vocab = self.tokenizer.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::BadToken { id, vocab });
        }
        if ids.is_empty() {
            return Err(Error::Empty);
        }
        let mut out = ids.to_vec();
        self.limit(&mut out, r)?;
        Ok(out)
    }

    fn tokenize_into(&self, text: &str, r: &Resolved<'_>, w: &mut Worker) -> Result<(), Error> {
        let opts = EncodeOptions {
            add_special: r.add_special,
            parse_special: self.options.parse_special,
        };
        let input = match r.prompt {
            Some(prompt) => {
                w.text.clear();
                w.text.push_str(prompt);
                w.text.push_str(text);
                w.text.as_str()
            }
            None => text,
        };
        self.tokenizer
            .encode_into(input, &opts, &mut w.ids, &mut w.scratch)?;
        if w.ids.is_empty() {
            return Err(Error::Empty);
        }
        Ok(())
    }

    /// Takes a worker's scratch memory from the pool (or makes one); it
    /// goes back when the guard drops.
    fn worker(&self) -> WorkerGuard<'_> {
        let pooled = self.workers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let w = pooled.unwrap_or_else(|| Worker {
            ws: self.model.workspace(),
            text: String::new(),
            ids: Vec::new(),
            scratch: TokenizerScratch::default(),
            full: Vec::new(),
        });
        WorkerGuard {
            embedder: self,
            worker: Some(w),
        }
    }
}

struct WorkerGuard<'a> {
    embedder: &'a Embedder,
    worker: Option<Worker>,
}

impl std::ops::Deref for WorkerGuard<'_> {
    type Target = Worker;
    fn deref(&self) -> &Worker {
        self.worker.as_ref().expect("worker present until drop")
    }
}

impl std::ops::DerefMut for WorkerGuard<'_> {
    fn deref_mut(&mut self) -> &mut Worker {
        self.worker.as_mut().expect("worker present until drop")
    }
}

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            self.embedder
                .workers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(w);
        }
    }
}

/// Tokens in one packed forward pass at most; a longer text runs alone.
/// Measured on EmbeddingGemma with ~30-token texts: the
/// weights are streamed once per pack, and past a few hundred tokens the
/// matmuls are compute-bound, so larger packs only cost scratch memory.
const PACK_TOKENS: usize = 512;

/// Splits tokenized texts into runs of consecutive texts of at most
/// [`PACK_TOKENS`] tokens (fewer when that leaves a thread idle).
fn packs(ids: &[Vec<u32>], threads: usize) -> Vec<std::ops::Range<usize>> {
    let total: usize = ids.iter().map(Vec::len).sum();
    let budget = total.div_ceil(threads.max(1)).clamp(1, PACK_TOKENS);
    let mut packs = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, t) in ids.iter().enumerate() {
        if i > start && tokens + t.len() > budget {
            packs.push(start..i);
            (start, tokens) = (i, 0);
        }
        tokens += t.len();
    }
    if start < ids.len() {
        packs.push(start..ids.len());
    }
    packs
}

/// Resizes `buf` to at least `len` values (allocating only when it grows)
/// and returns the first `len`.
fn grown(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Scales `v` to unit L2 norm (a zero vector stays zero), with the
/// `l2_normalize` kernel of the best kernel set for this CPU (the one
/// embedders normalize with).
pub fn l2_normalize(v: &mut [f32]) {
    normalize_with(crate::kernels::best().l2_normalize(), v);
}

/// Largest magnitudes the kernel handles as they are: it sums squares in
/// f32, which is exact enough for the magnitudes models produce but
/// underflows to a zero norm below about 1e-19 and overflows above about
/// 1e19 (and `1 / norm` overflows for the smallest norms).
const L2_SAFE: std::ops::RangeInclusive<f32> = 1.0 / (1u64 << 40) as f32..=(1u64 << 40) as f32;

/// Runs `kernel` on `v`, first scaling vectors whose largest magnitude is
/// outside [`L2_SAFE`] by a power of two: exact, and the direction (so the
/// result) does not change.
fn normalize_with(kernel: L2NormalizeFn, v: &mut [f32]) {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max > 0.0 && max.is_finite() && !L2_SAFE.contains(&max) {
        // In f64: the factor for the smallest subnormals (2^149) is not an f32.
        let scale = 2f64.powi(-(f64::from(max).log2().floor() as i32));
        v.iter_mut()
            .for_each(|x| *x = (f64::from(*x) * scale) as f32);
    }
    kernel(v);
}

/// Cosine similarity of two vectors of equal length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na.sqrt() * nb.sqrt())) as f32
    }
}
