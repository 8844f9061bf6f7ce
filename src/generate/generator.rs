//! The opened model: its description, its pooled sessions, raw prompts and
//! conversations to token ids, single and batched generation.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kiln_runtime::gguf::GgufFile;
use kiln_runtime::grammar::{GrammarVocab, Matcher};
use kiln_runtime::model::{DecoderModel, DecoderState, KvType};
use kiln_runtime::tokenizer::{EncodeOptions, TokenType, Tokenizer};

use super::builder::GeneratorBuilder;
use super::generation::{Generation, Token};
use super::options::GenerateOptions;
use crate::Error;
use crate::chat::ChatMessage;

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
    /// Time spent keeping the output inside its grammar (the allowed
    /// tokens of each step, and moving past each chosen one), seconds;
    /// 0 without a grammar.
    pub grammar_seconds: f64,
    /// Forward passes after the prompt: one per decoded token, or one per
    /// verification pass of speculative decoding.
    pub decode_passes: usize,
    /// Tokens drafted for speculative decoding.
    pub draft_tokens: usize,
    /// Drafted tokens the model confirmed (the acceptance rate is this
    /// over `draft_tokens`).
    pub accepted_draft_tokens: usize,
    /// Peak resident memory of the process during the call (Linux; the
    /// process-wide peak where it cannot be reset), bytes.
    pub peak_rss_bytes: u64,
}

/// A second model that drafts tokens for the target to verify.
pub(crate) struct DraftModel {
    pub(super) model: Box<dyn DecoderModel>,
    pub(super) _file: Arc<GgufFile>,
}

/// A text-generation model ready to generate. `Send + Sync`: concurrent
/// generations each get their own KV cache.
pub struct Generator {
    pub(super) arch: String,
    pub(super) name: Option<String>,
    pub(super) quantization: String,
    pub(super) chat_template: Option<String>,
    pub(super) model: Box<dyn DecoderModel>,
    pub(super) tokenizer: Tokenizer,
    pub(super) eog: Vec<u32>,
    pub(super) threads: usize,
    pub(super) kv_type: KvType,
    pub(super) pool: Arc<rayon::ThreadPool>,
    pub(super) states: Mutex<Vec<DecoderState>>,
    pub(super) metrics: Mutex<Metrics>,
    pub(super) isa: &'static str,
    /// The vocabulary as a byte trie, built on the first constrained
    /// generation.
    pub(super) grammar_vocab: OnceLock<Arc<GrammarVocab>>,
    /// The draft model of speculative decoding, if one was opened.
    pub(super) draft: Option<DraftModel>,
    pub(super) _file: Arc<GgufFile>,
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

    /// A matcher at the start of `grammar` over this model's tokens.
    pub(super) fn matcher(&self, grammar: &crate::Grammar) -> Result<Matcher, Error> {
        let vocab = self.grammar_vocab.get_or_init(|| {
            let t = &self.tokenizer;
            // Tokens that stand for text; control tokens (turn markers,
            // BOS) are not text a grammar could match.
            let tokens = (0..t.vocab_size() as u32).filter_map(|id| {
                let text = matches!(
                    t.token_type(id),
                    Some(TokenType::Normal | TokenType::Byte | TokenType::UserDefined)
                );
                text.then(|| {
                    let mut b = Vec::new();
                    t.token_bytes(id, false, &mut b);
                    (id, b)
                })
            });
            Arc::new(GrammarVocab::new(self.model.n_vocab(), tokens, &self.eog))
        });
        Ok(Matcher::new(grammar.compiled(), vocab.clone())?)
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

    /// Continues many prompts together: each prompt is processed on its
    /// own, then every unfinished generation advances one token per step
    /// in one batched forward pass (the weights are read once per step for
    /// all of them). Texts in input order; each is token for token what
    /// the prompt gives alone with the same options (same seed, so results
    /// do not depend on the batch). Speculative drafts are not used here.
    pub fn generate_batch<S: AsRef<str> + Sync>(
        &self,
        prompts: &[S],
        opts: &GenerateOptions,
    ) -> Result<Vec<String>, Error> {
        let start = Instant::now();
        kiln_runtime::memory::reset_peak_rss();
        let mut gens: Vec<Generation<'_>> = prompts
            .iter()
            .map(|p| {
                let mut g = Generation::new(self, self.tokenize(p.as_ref()), opts, self.threads);
                g.record = false;
                g
            })
            .collect();
        for g in &mut gens {
            g.advance()?;
        }
        let mut logits = Vec::new();
        let mut steps = 0;
        loop {
            let mut refs: Vec<&mut Generation<'_>> = gens.iter_mut().collect();
            let results = self.decode_together(&mut refs, &mut logits);
            if results.iter().all(Option::is_none) {
                break;
            }
            steps += 1;
            for r in results.into_iter().flatten() {
                r?;
            }
        }
        let mut texts = Vec::with_capacity(gens.len());
        let mut m = Metrics::default();
        for mut g in gens {
            debug_assert!(g.is_done());
            let text = g.by_ref().collect::<Result<Vec<Token>, Error>>()?;
            let one = g.metrics();
            texts.push(text.into_iter().map(|t| t.text).collect());
            m.prompt_tokens += one.prompt_tokens;
            m.generated_tokens += one.generated_tokens;
            m.prefill_seconds += one.prefill_seconds;
            m.time_to_first_token = m.time_to_first_token.max(one.time_to_first_token);
            m.grammar_seconds += one.grammar_seconds;
        }
        let secs = start.elapsed().as_secs_f64();
        m.prefill_tokens_per_second = m.prompt_tokens as f64 / m.prefill_seconds.max(1e-9);
        m.decode_passes = steps;
        m.decode_seconds = secs;
        m.decode_tokens_per_second = m.generated_tokens as f64 / secs.max(1e-9);
        m.peak_rss_bytes = kiln_runtime::memory::peak_rss().unwrap_or(0);
        *self.metrics.lock().unwrap_or_else(|e| e.into_inner()) = m;
        Ok(texts)
    }

    /// One decode step of every generation in `gens` that is past its
    /// prompt, all in one batched pass: per generation, the outcome of
    /// choosing its next token (`None`: it was not in the step). A failed
    /// pass fails every generation in it.
    pub(super) fn decode_together(
        &self,
        gens: &mut [&mut Generation<'_>],
        logits: &mut Vec<f32>,
    ) -> Vec<Option<Result<(), Error>>> {
        let mut out: Vec<Option<Result<(), Error>>> = (0..gens.len()).map(|_| None).collect();
        let (mut ids, mut states, mut which) = (Vec::new(), Vec::new(), Vec::new());
        for (i, g) in gens.iter_mut().enumerate() {
            if let Some((id, st)) = g.batch_input() {
                ids.push(id);
                states.push(st);
                which.push(i);
            }
        }
        if ids.is_empty() {
            return out;
        }
        let n_vocab = self.model.n_vocab();
        logits.resize(ids.len() * n_vocab, 0.0);
        let threads = self.threads;
        let pass = self.run(|| self.model.forward_batch(&ids, &mut states, logits, threads));
        drop(states);
        match pass {
            Ok(()) => {
                for (row, &i) in logits.chunks_exact_mut(n_vocab).zip(&which) {
                    out[i] = Some(gens[i].take_logits(row));
                }
            }
            Err(e) => {
                // The first member gets the error itself, the others its text.
                let msg = e.to_string();
                let mut first = Some(e);
                for &i in &which {
                    let e = first
                        .take()
                        .unwrap_or_else(|| kiln_runtime::model::ModelError::Config(msg.clone()));
                    out[i] = Some(Err(Error::Model(e)));
                }
            }
        }
        out
    }

    /// A cleared session: a pooled one, else a new KV cache.
    pub(super) fn state(&self) -> DecoderState {
        let pooled = self.states.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut s = pooled.unwrap_or_else(|| self.model.new_state(self.kv_type));
        s.clear();
        s
    }

    /// Returns a session to the pool.
    pub(super) fn put_state(&self, s: DecoderState) {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    /// Runs `f` on the generator's pool when it has more than one thread.
    pub(super) fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if self.threads > 1 {
            self.pool.install(f)
        } else {
            f()
        }
    }
}
