//! The generation API: a decoder model, prompts in, tokens out.
//!
//! ```no_run
//! # fn main() -> Result<(), kiln::Error> {
//! use kiln::{GenerateOptions, Generator};
//! let g = Generator::open("gemma-3-270m-q4_k_m.gguf")?;
//! for token in g.generate("The capital of France is", &GenerateOptions::default()) {
//!     print!("{}", token?.text);
//! }
//! # Ok(()) }
//! ```
//!
//! A raw prompt is parsed for special tokens as llama.cpp parses prompts
//! (`<start_of_turn>user\n…` works as written); [`Generator::chat`]
//! renders messages with the model's chat template and keeps their
//! contents as text. Generation is lazy: the prompt is processed on the
//! first `next()`, each later `next()` decodes one token, and dropping the
//! iterator stops the work.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kiln_runtime::gguf::GgufFile;
use kiln_runtime::model::{self, DecoderModel, DecoderOptions, DecoderState, KvType};
use kiln_runtime::sampling::{Sampler, SamplingOptions, softmax};
use kiln_runtime::tokenizer::{EncodeOptions, Tokenizer};

use crate::Error;

/// Options of one generation.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How each token is chosen (temperature, top-k, top-p, min-p,
    /// repetition penalty, seed).
    pub sampling: SamplingOptions,
    /// Generation ends before the first occurrence of any of these; the
    /// returned text never contains it.
    pub stop: Vec<String>,
    /// A context limit below the generator's (prompt plus generated tokens).
    pub context: Option<usize>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: SamplingOptions::default(),
            stop: Vec::new(),
            context: None,
        }
    }
}

impl GenerateOptions {
    /// Greedy decoding of up to `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        GenerateOptions {
            max_tokens,
            sampling: SamplingOptions::greedy(),
            ..Self::default()
        }
    }
}

/// One generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// Its id.
    pub id: u32,
    /// The text it completes: whole UTF-8 characters only, so a character
    /// split across byte tokens appears with the token that finishes it
    /// (earlier ones have empty text). Cut short where a stop string starts.
    pub text: String,
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context was reached.
    Length,
}

impl FinishReason {
    /// OpenAI's name (`stop`, `length`).
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (Gemma's `model` is accepted too).
    pub role: String,
    /// The text; never parsed for special tokens.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// What a generator runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// GGUF architecture.
    pub arch: String,
    /// `general.name`, if any.
    pub name: Option<String>,
    /// Quantization (`general.file_type`, e.g. `Q4_K_M`).
    pub quantization: String,
    /// Layers.
    pub n_layer: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Positions a generation can hold (prompt and output).
    pub context: usize,
    /// The model's trained context.
    pub trained_context: usize,
    /// KV cache element type.
    pub kv_type: &'static str,
    /// Threads per generation.
    pub threads: usize,
    /// Kernel instruction set.
    pub isa: &'static str,
    /// Bytes of weights held as f32 because their type has no kernel yet.
    pub converted_weight_bytes: usize,
    /// Whether the GGUF has a chat template (else Gemma's turn format).
    pub chat_template: bool,
}

/// Speed of the last finished call.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Metrics {
    /// Prompt tokens processed.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Prompt processing time, seconds.
    pub prefill_seconds: f64,
    /// Prompt tokens per second.
    pub prefill_tokens_per_second: f64,
    /// Decoding time after the first token, seconds.
    pub decode_seconds: f64,
    /// Generated tokens per second after the first.
    pub decode_tokens_per_second: f64,
    /// Time to the first generated token, seconds.
    pub time_to_first_token: f64,
    /// Peak resident memory of the process during the call (Linux; the
    /// process-wide peak where it cannot be reset), bytes.
    pub peak_rss_bytes: u64,
}

/// Builds a [`Generator`].
#[derive(Clone, Debug)]
pub struct GeneratorBuilder {
    threads: usize,
    context: Option<usize>,
    kv_type: KvType,
    /// `None`: the default ([`hub::default_pack_dir`](crate::hub::default_pack_dir)).
    pack_dir: Option<Option<PathBuf>>,
}

impl Default for GeneratorBuilder {
    fn default() -> Self {
        GeneratorBuilder {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            context: None,
            kv_type: KvType::F32,
            pack_dir: None,
        }
    }
}

impl GeneratorBuilder {
    /// Threads per generation (a batch runs one generation per thread).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Context in tokens (default 4096, at most the model's).
    pub fn context(mut self, context: usize) -> Self {
        self.context = Some(context);
        self
    }

    /// Where repacked weights are saved at a model's first open and mapped
    /// from by later opens (`None`: repack at every open). Default
    /// `$KILN_HOME/packed` (`KILN_PACK_CACHE=off` turns it off).
    pub fn pack_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.pack_dir = Some(dir);
        self
    }

    /// KV cache element type (default f32).
    pub fn kv_type(mut self, kv: KvType) -> Self {
        self.kv_type = kv;
        self
    }

    /// Opens the GGUF at `path`.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Generator, Error> {
        self.open_file(Arc::new(GgufFile::open(path.as_ref())?))
    }

    /// Builds the generator over an opened GGUF.
    pub fn open_file(self, file: Arc<GgufFile>) -> Result<Generator, Error> {
        let md = file.metadata();
        let arch = md.get_str("general.architecture")?.to_owned();
        let name = md.get_str("general.name").ok().map(str::to_owned);
        let quantization = md
            .get_u32("general.file_type")
            .map_or_else(|_| "unknown".to_owned(), kiln_runtime::gguf::file_type_name);
        let chat_template = md
            .get_str("tokenizer.chat_template")
            .ok()
            .map(str::to_owned);
        let kernels = crate::kernels::best();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("kiln-gen-{i}"))
            .build()
            .map_err(|e| Error::Threads(e.to_string()))?;
        // The plan (layers in parallel) and the tokenizer side by side, on
        // the generator's own threads.
        let options = DecoderOptions {
            context: self.context,
            pack_dir: self.pack_dir.unwrap_or_else(crate::hub::default_pack_dir),
        };
        let (model, tokenizer) = pool.install(|| {
            rayon::join(
                || model::open_decoder(file.clone(), kernels, &options),
                || Tokenizer::from_gguf(&file),
            )
        });
        let (model, tokenizer) = (model?, tokenizer?);
        model::check_vocab(tokenizer.vocab_size(), model.n_vocab())?;
        // End-of-generation tokens: EOS, and Gemma's end of turn.
        let mut eog: Vec<u32> = tokenizer.eos().into_iter().collect();
        eog.extend(tokenizer.token_id("<end_of_turn>"));
        Ok(Generator {
            arch,
            name,
            quantization,
            chat_template,
            model,
            tokenizer,
            eog,
            threads: self.threads,
            kv_type: self.kv_type,
            pool,
            states: Mutex::new(Vec::new()),
            metrics: Mutex::new(Metrics::default()),
            isa: kernels.isa().name(),
            _file: file,
        })
    }
}

/// A text-generation model ready to generate. `Send + Sync`: concurrent
/// generations each get their own KV cache.
pub struct Generator {
    arch: String,
    name: Option<String>,
    quantization: String,
    chat_template: Option<String>,
    model: Box<dyn DecoderModel>,
    tokenizer: Tokenizer,
    eog: Vec<u32>,
    threads: usize,
    kv_type: KvType,
    pool: rayon::ThreadPool,
    states: Mutex<Vec<DecoderState>>,
    metrics: Mutex<Metrics>,
    isa: &'static str,
    _file: Arc<GgufFile>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("arch", &self.arch)
            .field("context", &self.model.context())
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// Opens a GGUF decoder with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Generator, Error> {
        GeneratorBuilder::default().open(path)
    }

    /// Starts building a generator with options.
    pub fn builder() -> GeneratorBuilder {
        GeneratorBuilder::default()
    }

    /// What this generator runs.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            arch: self.arch.clone(),
            name: self.name.clone(),
            quantization: self.quantization.clone(),
            n_layer: self.model.n_layer(),
            hidden: self.model.hidden(),
            n_vocab: self.model.n_vocab(),
            context: self.model.context(),
            trained_context: self.model.trained_context(),
            kv_type: self.kv_type.name(),
            threads: self.threads,
            isa: self.isa,
            converted_weight_bytes: self.model.converted_bytes(),
            chat_template: self.chat_template.is_some(),
        }
    }

    /// Speed of the last finished call (generation, batch or classify).
    pub fn metrics(&self) -> Metrics {
        *self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of a raw prompt as [`generate`](Self::generate) feeds
    /// them: BOS added, special-token strings parsed.
    pub fn tokenize(&self, prompt: &str) -> Result<Vec<u32>, Error> {
        let ids = self.tokenizer.encode(
            prompt,
            &EncodeOptions {
                add_special: true,
                parse_special: true,
            },
        )?;
        if ids.is_empty() {
            return Err(Error::Empty);
        }
        Ok(ids)
    }

    /// Token ids of a conversation as [`chat`](Self::chat) feeds them.
    pub fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, Error> {
        let segments =
            crate::chat::render(self.chat_template.as_deref(), messages, &self.tokenizer)?;
        let parts: Vec<(&str, bool)> = segments.iter().map(|(s, p)| (s.as_str(), *p)).collect();
        let mut ids = self.tokenizer.encode_segments(&parts, false)?;
        // Add BOS unless the template already did.
        if let Some(bos) = self.tokenizer.start_token()
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// Streams the continuation of a raw prompt.
    pub fn generate(&self, prompt: &str, opts: &GenerateOptions) -> Generation<'_> {
        let ids = self.tokenize(prompt);
        Generation::new(self, ids, opts, self.threads)
    }

    /// Streams the continuation of already tokenized input (fed as given).
    pub fn generate_tokens(&self, ids: &[u32], opts: &GenerateOptions) -> Generation<'_> {
        let ids = if ids.is_empty() {
            Err(Error::Empty)
        } else {
            Ok(ids.to_vec())
        };
        Generation::new(self, ids, opts, self.threads)
    }

    /// The whole continuation of a raw prompt as one string.
    pub fn generate_text(&self, prompt: &str, opts: &GenerateOptions) -> Result<String, Error> {
        self.generate(prompt, opts).text()
    }

    /// Streams the model's reply to a conversation.
    pub fn chat(&self, messages: &[ChatMessage], opts: &GenerateOptions) -> Generation<'_> {
        let ids = self.chat_tokens(messages);
        Generation::new(self, ids, opts, self.threads)
    }

    /// Continues many prompts in parallel (one generation per thread);
    /// texts in input order. Each prompt is sampled with the same seed, so
    /// results do not depend on scheduling.
    pub fn generate_batch<S: AsRef<str> + Sync>(
        &self,
        prompts: &[S],
        opts: &GenerateOptions,
    ) -> Result<Vec<String>, Error> {
        use rayon::prelude::*;
        let start = Instant::now();
        kiln_runtime::memory::reset_peak_rss();
        let results: Vec<Result<(String, Metrics), Error>> = self.pool.install(|| {
            prompts
                .par_iter()
                .map(|p| {
                    let ids = self.tokenize(p.as_ref());
                    let mut g = Generation::new(self, ids, opts, 1);
                    g.record = false;
                    let text = g.by_ref().collect::<Result<Vec<Token>, Error>>()?;
                    Ok((text.into_iter().map(|t| t.text).collect(), g.metrics()))
                })
                .collect()
        });
        let mut texts = Vec::with_capacity(results.len());
        let mut m = Metrics::default();
        for r in results {
            let (t, one) = r?;
            texts.push(t);
            m.prompt_tokens += one.prompt_tokens;
            m.generated_tokens += one.generated_tokens;
            m.time_to_first_token = m.time_to_first_token.max(one.time_to_first_token);
        }
        let secs = start.elapsed().as_secs_f64();
        m.decode_seconds = secs;
        m.decode_tokens_per_second = m.generated_tokens as f64 / secs.max(1e-9);
        m.peak_rss_bytes = kiln_runtime::memory::peak_rss().unwrap_or(0);
        *self.metrics.lock().unwrap_or_else(|e| e.into_inner()) = m;
        Ok(texts)
    }

    /// Prefill only: for each prompt, the next-token distribution (the 10
    /// most likely tokens, when `labels` is empty) or the probability of
    /// each label as the prompt's continuation (the product of its tokens'
    /// probabilities, normalized over the labels).
    pub fn classify<S: AsRef<str> + Sync, L: AsRef<str> + Sync>(
        &self,
        prompts: &[S],
        labels: &[L],
    ) -> Result<Vec<Classification>, Error> {
        use rayon::prelude::*;
        let start = Instant::now();
        kiln_runtime::memory::reset_peak_rss();
        let label_ids: Vec<Vec<u32>> = labels
            .iter()
            .map(|l| {
                let ids = self.tokenizer.encode(
                    l.as_ref(),
                    &EncodeOptions {
                        add_special: false,
                        parse_special: false,
                    },
                )?;
                if ids.is_empty() {
                    return Err(Error::Empty);
                }
                Ok(ids)
            })
            .collect::<Result<_, Error>>()?;
        let one = |p: &S, threads: usize| -> Result<(Classification, usize), Error> {
            let ids = self.tokenize(p.as_ref())?;
            let mut state = self.state();
            let r = self.classify_one(&ids, labels, &label_ids, &mut state, threads);
            self.put_state(state);
            r.map(|c| (c, ids.len()))
        };
        let results: Vec<Result<(Classification, usize), Error>> = if prompts.len() == 1 {
            vec![self.pool.install(|| one(&prompts[0], self.threads))]
        } else {
            self.pool
                .install(|| prompts.par_iter().map(|p| one(p, 1)).collect())
        };
        let mut out = Vec::with_capacity(results.len());
        let mut n = 0;
        for r in results {
            let (c, k) = r?;
            n += k;
            out.push(c);
        }
        let secs = start.elapsed().as_secs_f64();
        *self.metrics.lock().unwrap_or_else(|e| e.into_inner()) = Metrics {
            prompt_tokens: n,
            prefill_seconds: secs,
            prefill_tokens_per_second: n as f64 / secs.max(1e-9),
            time_to_first_token: secs,
            peak_rss_bytes: kiln_runtime::memory::peak_rss().unwrap_or(0),
            ..Metrics::default()
        };
        Ok(out)
    }

    fn classify_one<L: AsRef<str>>(
        &self,
        ids: &[u32],
        labels: &[L],
        label_ids: &[Vec<u32>],
        state: &mut DecoderState,
        threads: usize,
    ) -> Result<Classification, Error> {
        let n_vocab = self.model.n_vocab();
        let mut logits = vec![0.0; n_vocab];
        self.check_fits(ids.len(), self.model.context())?;
        self.model.forward(ids, state, Some(&mut logits), threads)?;
        let probs = softmax(&logits);
        if labels.is_empty() {
            let mut order: Vec<u32> = (0..n_vocab as u32).collect();
            let k = 10.min(n_vocab);
            order.select_nth_unstable_by(k - 1, |a, b| {
                probs[*b as usize].total_cmp(&probs[*a as usize])
            });
            order.truncate(k);
            order.sort_by(|a, b| probs[*b as usize].total_cmp(&probs[*a as usize]));
            let scores = order
                .iter()
                .map(|&id| {
                    let p = probs[id as usize];
                    ClassScore {
                        label: self.tokenizer.token_to_piece(id).unwrap_or_default(),
                        id: Some(id),
                        logprob: p.ln(),
                        prob: p,
                    }
                })
                .collect();
            return Ok(Classification { scores, best: 0 });
        }
        let mut logps = Vec::with_capacity(labels.len());
        for lids in label_ids {
            let mut lp = f64::from(probs[lids[0] as usize]).ln();
            if lids.len() > 1 {
                if !state.truncate(ids.len()) {
                    state.clear();
                    self.model.forward(ids, state, None, threads)?;
                }
                self.check_fits(ids.len() + lids.len() - 1, self.model.context())?;
                for w in lids.windows(2) {
                    self.model
                        .forward(&w[..1], state, Some(&mut logits), threads)?;
                    lp += f64::from(softmax(&logits)[w[1] as usize]).ln();
                }
            }
            logps.push(lp);
        }
        let mx = logps.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = logps.iter().map(|l| (l - mx).exp()).sum();
        let scores: Vec<ClassScore> = labels
            .iter()
            .zip(&logps)
            .zip(label_ids)
            .map(|((l, &lp), lids)| ClassScore {
                label: l.as_ref().to_owned(),
                id: (lids.len() == 1).then_some(lids[0]),
                logprob: lp as f32,
                prob: ((lp - mx).exp() / z) as f32,
            })
            .collect();
        let best = (0..scores.len())
            .max_by(|&a, &b| scores[a].prob.total_cmp(&scores[b].prob))
            .unwrap_or(0);
        Ok(Classification { scores, best })
    }

    fn check_fits(&self, n_tokens: usize, context: usize) -> Result<(), Error> {
        if n_tokens > context {
            return Err(Error::PromptTooLong { n_tokens, context });
        }
        Ok(())
    }

    fn state(&self) -> DecoderState {
        let pooled = self.states.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut s = pooled.unwrap_or_else(|| self.model.new_state(self.kv_type));
        s.clear();
        s
    }

    fn put_state(&self, s: DecoderState) {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }
}

/// The result of [`Generator::classify`] for one prompt.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Classification {
    /// The labels in the order given, or the 10 most likely next tokens.
    pub scores: Vec<ClassScore>,
    /// Index of the most likely entry of `scores`.
    pub best: usize,
}

/// One label or token and its probability.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassScore {
    /// The label (or the token's text).
    pub label: String,
    /// The token id, when the label is one token.
    pub id: Option<u32>,
    /// Log-probability of the whole label after the prompt.
    pub logprob: f32,
    /// Probability (normalized over the labels when labels are given).
    pub prob: f32,
}

/// A generation in progress: an iterator of tokens. Created by
/// [`Generator::generate`] and [`Generator::chat`]; dropping it stops.
pub struct Generation<'a> {
    owner: &'a Generator,
    prompt: Option<Vec<u32>>,
    error: Option<Error>,
    state: Option<DecoderState>,
    sampler: Sampler,
    logits: Vec<f32>,
    history: Vec<u32>,
    max_tokens: usize,
    context: usize,
    threads: usize,
    utf8: Utf8Stream,
    stop: StopCut,
    ready: VecDeque<Token>,
    finish: Option<FinishReason>,
    done: bool,
    /// Record this generation's metrics as the generator's last call.
    record: bool,
    n_prompt: usize,
    start: Instant,
    first_token: Option<Instant>,
    prefill_seconds: f64,
    /// Asked between prefill chunks and before each token: true stops.
    cancel: Option<Box<dyn Fn() -> bool + Send + Sync + 'a>>,
}

/// Prompt tokens fed at once when a generation can be cancelled.
const CANCELLABLE_PREFILL_CHUNK: usize = 64;

impl<'a> Generation<'a> {
    fn new(
        owner: &'a Generator,
        ids: Result<Vec<u32>, Error>,
        opts: &GenerateOptions,
        threads: usize,
    ) -> Self {
        let context = opts
            .context
            .map_or(owner.model.context(), |c| c.min(owner.model.context()));
        let (prompt, error) = match ids {
            Ok(ids) if ids.len() > context => (
                None,
                Some(Error::PromptTooLong {
                    n_tokens: ids.len(),
                    context,
                }),
            ),
            Ok(ids) => (Some(ids), None),
            Err(e) => (None, Some(e)),
        };
        Generation {
            owner,
            n_prompt: prompt.as_ref().map_or(0, Vec::len),
            prompt,
            error,
            state: None,
            sampler: Sampler::new(opts.sampling.clone()),
            logits: Vec::new(),
            history: Vec::new(),
            max_tokens: opts.max_tokens,
            context,
            threads,
            utf8: Utf8Stream::default(),
            stop: StopCut::new(opts.stop.clone()),
            ready: VecDeque::new(),
            finish: None,
            done: false,
            record: true,
            start: Instant::now(),
            first_token: None,
            prefill_seconds: 0.0,
            cancel: None,
        }
    }

    /// Stops the generation early, without an error, once `cancelled`
    /// returns true: it is asked before each token and between chunks of
    /// the prompt, so a server can drop the work of a client that left.
    pub fn cancel_when(mut self, cancelled: impl Fn() -> bool + Send + Sync + 'a) -> Self {
        self.cancel = Some(Box::new(cancelled));
        self
    }

    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c())
    }

    /// Why the generation ended (`None` while it runs or after an error).
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Prompt tokens.
    pub fn prompt_tokens(&self) -> usize {
        self.n_prompt
    }

    /// Tokens generated so far.
    pub fn generated_tokens(&self) -> usize {
        self.history.len()
    }

    /// Runs to the end and returns the whole text.
    pub fn text(mut self) -> Result<String, Error> {
        let mut s = String::new();
        for t in self.by_ref() {
            s.push_str(&t?.text);
        }
        Ok(s)
    }

    /// This generation's speed so far.
    pub fn metrics(&self) -> Metrics {
        let now = Instant::now();
        let decode = self
            .first_token
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let n = self.history.len();
        Metrics {
            prompt_tokens: self.n_prompt,
            generated_tokens: n,
            prefill_seconds: self.prefill_seconds,
            prefill_tokens_per_second: self.n_prompt as f64 / self.prefill_seconds.max(1e-9),
            decode_seconds: decode,
            decode_tokens_per_second: if n > 1 {
                (n - 1) as f64 / decode.max(1e-9)
            } else {
                0.0
            },
            time_to_first_token: self
                .first_token
                .map_or(0.0, |t| t.duration_since(self.start).as_secs_f64()),
            peak_rss_bytes: kiln_runtime::memory::peak_rss().unwrap_or(0),
        }
    }

    /// Computes the next token's logits, samples it, and queues what can
    /// be released. Sets `done` at the end.
    fn step(&mut self) -> Result<(), Error> {
        let owner = self.owner;
        if self.state.is_none() {
            kiln_runtime::memory::reset_peak_rss();
            self.start = Instant::now();
            let prompt = self.prompt.take().ok_or(Error::Empty)?;
            let mut state = owner.state();
            self.logits.resize(owner.model.n_vocab(), 0.0);
            let t0 = Instant::now();
            let threads = self.threads;
            let logits = &mut self.logits;
            let cancel = self.cancel.as_deref();
            let r = owner.run(|| match cancel {
                None => owner
                    .model
                    .forward(&prompt, &mut state, Some(logits), threads)
                    .map(|()| false),
                Some(cancelled) => {
                    let n = prompt.len().div_ceil(CANCELLABLE_PREFILL_CHUNK);
                    for (i, chunk) in prompt.chunks(CANCELLABLE_PREFILL_CHUNK).enumerate() {
                        if cancelled() {
                            return Ok(true);
                        }
                        let out = if i + 1 == n {
                            Some(&mut logits[..])
                        } else {
                            None
                        };
                        owner.model.forward(chunk, &mut state, out, threads)?;
                    }
                    Ok(false)
                }
            });
            self.state = Some(state);
            if r? {
                self.done = true;
                return Ok(());
            }
            self.prefill_seconds = t0.elapsed().as_secs_f64();
        } else {
            let last = *self.history.last().ok_or(Error::Empty)?;
            let state = self.state.as_mut().ok_or(Error::Empty)?;
            let logits = &mut self.logits;
            let threads = self.threads;
            owner.run(|| owner.model.forward(&[last], state, Some(logits), threads))?;
        }
        let id = self.sampler.sample(&mut self.logits, &self.history);
        if self.first_token.is_none() {
            self.first_token = Some(Instant::now());
        }
        if owner.eog.contains(&id) {
            return self.end(FinishReason::Stop);
        }
        self.history.push(id);
        let mut bytes = Vec::new();
        owner.tokenizer.token_bytes(id, false, &mut bytes);
        let text = self.utf8.push(&bytes);
        if self.stop.push(id, text, &mut self.ready) {
            return self.end(FinishReason::Stop);
        }
        let in_cache = self.state.as_ref().map_or(0, DecoderState::len);
        if self.history.len() >= self.max_tokens || in_cache + 1 > self.context {
            return self.end(FinishReason::Length);
        }
        Ok(())
    }

    fn end(&mut self, why: FinishReason) -> Result<(), Error> {
        if why == FinishReason::Length || !self.stop.stopped {
            let tail = self.utf8.finish();
            self.stop.flush(tail, &mut self.ready);
        }
        self.finish = Some(why);
        self.done = true;
        Ok(())
    }

    fn release(&mut self) {
        if let Some(s) = self.state.take() {
            self.owner.put_state(s);
            if self.record {
                *self.owner.metrics.lock().unwrap_or_else(|e| e.into_inner()) = self.metrics();
            }
        }
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<Token, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(t) = self.ready.pop_front() {
                return Some(Ok(t));
            }
            if let Some(e) = self.error.take() {
                self.done = true;
                return Some(Err(e));
            }
            if self.done {
                self.release();
                return None;
            }
            if self.max_tokens == 0 {
                self.finish = Some(FinishReason::Length);
                self.done = true;
                continue;
            }
            if self.cancelled() {
                self.done = true;
                continue;
            }
            if let Err(e) = self.step() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

impl Drop for Generation<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl Generator {
    /// Runs `f` on the generator's pool when it has more than one thread.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if self.threads > 1 {
            self.pool.install(f)
        } else {
            f()
        }
    }
}

/// Bytes to text across token boundaries: releases whole UTF-8 characters,
/// holds an incomplete one until its last byte arrives; invalid bytes
/// become U+FFFD.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds bytes and returns the text completed so far.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let ok = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..ok]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..ok);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..ok + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left (an unfinished character) as U+FFFD.
    pub(crate) fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Stop strings over streamed tokens: tokens are released only once their
/// text cannot be the start of a stop string; at a match, the text is cut
/// exactly before it.
#[derive(Debug)]
pub(crate) struct StopCut {
    stops: Vec<String>,
    /// Tokens held back and their joined text.
    held: Vec<Token>,
    text: String,
    pub(crate) stopped: bool,
}

impl StopCut {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        StopCut {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: Vec::new(),
            text: String::new(),
            stopped: false,
        }
    }

    /// Adds a token; moves releasable tokens to `out`. `true` when a stop
    /// string was found (the tokens before it are in `out`, cut exactly).
    pub(crate) fn push(&mut self, id: u32, text: String, out: &mut VecDeque<Token>) -> bool {
        self.text.push_str(&text);
        self.held.push(Token { id, text });
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min();
        if let Some(at) = hit {
            let mut pos = 0;
            for mut t in self.held.drain(..) {
                if pos >= at {
                    break;
                }
                let keep = (at - pos).min(t.text.len());
                pos += t.text.len();
                t.text.truncate(keep);
                out.push_back(t);
            }
            self.text.clear();
            self.stopped = true;
            return true;
        }
        // Hold the longest suffix that begins some stop string.
        let hold = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len().min(self.text.len() + 1))
                    .rev()
                    .find(|&n| {
                        self.text.is_char_boundary(self.text.len() - n)
                            && s.as_bytes()
                                .starts_with(&self.text.as_bytes()[self.text.len() - n..])
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let free = self.text.len() - hold;
        let mut pos = 0;
        let mut n = 0;
        for t in &self.held {
            if pos + t.text.len() > free {
                break;
            }
            pos += t.text.len();
            n += 1;
        }
        out.extend(self.held.drain(..n));
        self.text.drain(..pos);
        false
    }

    /// Releases everything held, `tail` added to the last token.
    pub(crate) fn flush(&mut self, tail: String, out: &mut VecDeque<Token>) {
        if let Some(last) = self.held.last_mut() {
            last.text.push_str(&tail);
        } else if !tail.is_empty()
            && let Some(last) = out.back_mut()
        {
            last.text.push_str(&tail);
        }
        out.extend(self.held.drain(..));
        self.text.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut s = StopCut::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = VecDeque::new();
        let mut hit = false;
        for (i, p) in pieces.iter().enumerate() {
            if s.push(i as u32, p.to_string(), &mut out) {
                hit = true;
                break;
            }
        }
        if !hit {
            s.flush(String::new(), &mut out);
        }
        (out.into_iter().map(|t| t.text).collect(), hit)
    }

    #[test]
    fn stop_string_cuts_exactly_across_tokens() {
        let (t, hit) = run(&["\n\nQ:"], &["The", " answer", ".\n", "\nQ", ": next"]);
        assert!(hit);
        assert_eq!(t.concat(), "The answer.");
        // The token holding the start of the stop string is cut, not dropped.
        assert_eq!(t, ["The", " answer", "."]);
    }

    #[test]
    fn stop_string_inside_one_token() {
        let (t, hit) = run(&["END"], &["abcENDdef"]);
        assert!(hit);
        assert_eq!(t, ["abc"]);
    }

    #[test]
    fn false_prefix_is_released() {
        // "\n\nX" starts like the stop string but is not it.
        let (t, hit) = run(&["\n\nQ:"], &["a", "\n\n", "X", "b"]);
        assert!(!hit);
        assert_eq!(t.concat(), "a\n\nXb");
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (t, _) = run(&["world", "lo"], &["hello world"]);
        assert_eq!(t.concat(), "hel");
    }

    #[test]
    fn no_stops_release_every_token_at_once() {
        let mut s = StopCut::new(vec![]);
        let mut out = VecDeque::new();
        assert!(!s.push(1, "x".into(), &mut out));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn utf8_across_tokens() {
        let mut u = Utf8Stream::default();
        let bytes = "é😀".as_bytes();
        assert_eq!(u.push(&bytes[..1]), "");
        assert_eq!(u.push(&bytes[1..3]), "é");
        assert_eq!(u.push(&bytes[3..5]), "");
        assert_eq!(u.push(&bytes[5..]), "😀");
        // Invalid bytes become U+FFFD, an unfinished tail too.
        assert_eq!(u.push(&[0xff, b'a']), "\u{FFFD}a");
        assert_eq!(u.push(&[0xe2, 0x82]), "");
        assert_eq!(u.finish(), "\u{FFFD}");
    }
}
