//! One generation: a lazy iterator of tokens over a pooled session,
//! cancellable, with its own speed.

use std::collections::VecDeque;
use std::time::Instant;

use kiln_runtime::grammar::Matcher;
use kiln_runtime::model::{DecoderState, MAX_CHUNK};
use kiln_runtime::sampling::Sampler;

use super::generator::{Generator, Metrics};
use super::options::{Draft, GenerateOptions};
use super::stream::{StopCut, Utf8Stream};
use crate::Error;

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

/// A generation in progress: an iterator of tokens. Created by
/// [`Generator::generate`] and [`Generator::chat`]; dropping it stops.
pub struct Generation<'a> {
    owner: &'a Generator,
    prompt: Option<Vec<u32>>,
    error: Option<Error>,
    state: Option<DecoderState>,
    sampler: Sampler,
    /// Where the output stands in its grammar, if it has one.
    matcher: Option<Matcher>,
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
    pub(super) record: bool,
    n_prompt: usize,
    start: Instant,
    first_token: Option<Instant>,
    prefill_seconds: f64,
    grammar_seconds: f64,
    /// Speculative decoding: the drafter, the prompt it looks in, the
    /// logits of a verification pass, and its counts.
    draft: Option<Draft>,
    prompt_ids: Vec<u32>,
    row_logits: Vec<f32>,
    draft_state: Option<DecoderState>,
    draft_logits: Vec<f32>,
    /// Chunked prefill: the most prompt tokens one step feeds, and how
    /// many are in while it is under way.
    prefill_chunk: Option<usize>,
    prefilled: Option<usize>,
    passes: usize,
    drafted_tokens: usize,
    accepted_tokens: usize,
    /// Asked between prefill chunks and before each token: true stops.
    cancel: Option<Box<dyn Fn() -> bool + Send + Sync + 'a>>,
}

/// Prompt tokens fed at once when a generation can be cancelled.
const CANCELLABLE_PREFILL_CHUNK: usize = 64;

impl<'a> Generation<'a> {
    pub(super) fn new(
        owner: &'a Generator,
        ids: Result<Vec<u32>, Error>,
        opts: &GenerateOptions,
        threads: usize,
    ) -> Self {
        let context = opts
            .context
            .map_or(owner.model.context(), |c| c.min(owner.model.context()));
        let ids = match (&opts.draft, &owner.draft) {
            (Some(Draft::Model { .. }), None) => Err(Error::NoDraftModel),
            _ => ids,
        };
        let matcher = opts.grammar.as_ref().map(|g| owner.matcher(g)).transpose();
        let (ids, matcher) = match matcher {
            Ok(m) => (ids, m),
            Err(e) => (Err(e), None),
        };
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
            matcher,
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
            grammar_seconds: 0.0,
            draft: opts.draft.clone(),
            prompt_ids: Vec::new(),
            row_logits: Vec::new(),
            draft_state: None,
            draft_logits: Vec::new(),
            prefill_chunk: None,
            prefilled: None,
            passes: 0,
            drafted_tokens: 0,
            accepted_tokens: 0,
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
            grammar_seconds: self.grammar_seconds,
            decode_passes: self.passes,
            draft_tokens: self.drafted_tokens,
            accepted_draft_tokens: self.accepted_tokens,
            peak_rss_bytes: kiln_runtime::memory::peak_rss().unwrap_or(0),
        }
    }

    /// Computes the next token's logits, samples it, and queues what can
    /// be released. Sets `done` at the end.
    fn step(&mut self) -> Result<(), Error> {
        let owner = self.owner;
        if self.state.is_none() || self.prefilled.is_some() {
            // The prompt, whole or in chunks: between chunks a cancelled
            // generation stops, and the engine runs other work.
            loop {
                if self.cancelled() {
                    self.done = true;
                    return Ok(());
                }
                if self.prefill_one_chunk()? {
                    break;
                }
                if self.prefill_chunk.is_some() {
                    return Ok(());
                }
            }
        } else {
            let last = *self.history.last().ok_or(Error::Empty)?;
            if let Some(drafted) = self.drafted()? {
                return self.speculate(last, drafted);
            }
            let state = self.state.as_mut().ok_or(Error::Empty)?;
            let logits = &mut self.logits;
            let threads = self.threads;
            owner.run(|| owner.model.forward(&[last], state, Some(logits), threads))?;
            self.passes += 1;
        }
        self.choose()
    }

    /// Chooses the next token from `self.logits` (grammar mask, sampler)
    /// and releases it.
    fn choose(&mut self) -> Result<(), Error> {
        let mut logits = std::mem::take(&mut self.logits);
        let r = self.choose_from(&mut logits);
        self.logits = logits;
        r
    }

    /// Chooses the next token from `logits`, which the grammar's mask and
    /// the repetition penalty change in place, and releases it.
    fn choose_from(&mut self, logits: &mut [f32]) -> Result<(), Error> {
        let id = pick(
            self.matcher.as_mut(),
            &mut self.sampler,
            logits,
            &self.history,
            None,
            &mut self.grammar_seconds,
        )?;
        let in_cache = self.state.as_ref().map_or(0, DecoderState::len);
        self.emit(id, in_cache)
    }

    /// Runs what `next()` would run once: the prompt and the first token,
    /// or one more token. Errors end the generation.
    pub(super) fn advance(&mut self) -> Result<(), Error> {
        if let Some(e) = self.error.take() {
            self.done = true;
            return Err(e);
        }
        if self.done {
            return Ok(());
        }
        if self.max_tokens == 0 {
            self.finish = Some(FinishReason::Length);
            self.done = true;
            return Ok(());
        }
        if self.cancelled() {
            self.done = true;
            return Ok(());
        }
        let r = self.step();
        if r.is_err() {
            self.done = true;
        }
        r
    }

    /// For a batched decode step: the token to feed and the session to
    /// feed it to, while the generation is past its prompt and not done.
    pub(super) fn batch_input(&mut self) -> Option<(u32, &mut DecoderState)> {
        if self.done || self.cancelled() {
            return None;
        }
        let last = *self.history.last()?;
        Some((last, self.state.as_mut()?))
    }

    /// Takes this generation's row of a batched decode step and chooses
    /// its next token as a lone step would.
    pub(super) fn take_logits(&mut self, row: &mut [f32]) -> Result<(), Error> {
        // Chosen in place: a copy would move the vocabulary's logits (1 MB
        // for Gemma 3) once more per sequence and step.
        self.passes += 1;
        let r = self.choose_from(row);
        if r.is_err() {
            self.done = true;
        }
        r
    }

    /// The next token ready to be handed out, without computing more.
    pub(super) fn pop_ready(&mut self) -> Option<Token> {
        self.ready.pop_front()
    }

    /// Whether the generation has ended.
    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds the next chunk of the prompt; true once the whole prompt is
    /// in and its last logits are computed.
    fn prefill_one_chunk(&mut self) -> Result<bool, Error> {
        let owner = self.owner;
        if self.state.is_none() {
            kiln_runtime::memory::reset_peak_rss();
            self.start = Instant::now();
            self.state = Some(owner.state());
            self.logits.resize(owner.model.n_vocab(), 0.0);
            self.prefilled = Some(0);
        }
        let prompt = self.prompt.as_ref().ok_or(Error::Empty)?;
        let at = self.prefilled.unwrap_or(0);
        // The engine's chunk, a cancellable generation's, or all at once.
        let chunk = self.prefill_chunk.unwrap_or(if self.cancel.is_some() {
            CANCELLABLE_PREFILL_CHUNK
        } else {
            prompt.len()
        });
        let end = (at + chunk).min(prompt.len());
        let last = end == prompt.len();
        let t0 = Instant::now();
        let state = self.state.as_mut().ok_or(Error::Empty)?;
        let logits = &mut self.logits;
        let threads = self.threads;
        owner.run(|| {
            owner.model.forward(
                &prompt[at..end],
                state,
                last.then_some(&mut logits[..]),
                threads,
            )
        })?;
        self.prefill_seconds += t0.elapsed().as_secs_f64();
        if !last {
            self.prefilled = Some(end);
            return Ok(false);
        }
        self.prefilled = None;
        let prompt = self.prompt.take().ok_or(Error::Empty)?;
        if self.draft.is_some() {
            self.prompt_ids = prompt;
        }
        Ok(true)
    }

    /// Makes each `advance` feed at most `chunk` prompt tokens, so that a
    /// loop can run other work between a long prompt's chunks.
    pub(super) fn prefill_in_chunks(&mut self, chunk: usize) {
        self.prefill_chunk = Some(chunk.max(1));
    }

    /// Whether the prompt is not fully fed yet.
    pub(super) fn is_prefilling(&self) -> bool {
        !self.done && self.history.is_empty() && self.prompt.is_some()
    }

    /// Drafted tokens for the next pass, if speculation is on and there is
    /// room for them (output and context).
    fn drafted(&mut self) -> Result<Option<Vec<u32>>, Error> {
        let Some(draft) = self.draft.as_ref() else {
            return Ok(None);
        };
        let Some(in_cache) = self.state.as_ref().map(DecoderState::len) else {
            return Ok(None);
        };
        // The pass feeds the last token and the drafts; a fully accepted
        // pass also yields one more token.
        let room = (self.max_tokens.saturating_sub(self.history.len() + 1))
            .min(self.context.saturating_sub(in_cache + 1))
            .min(MAX_CHUNK - 1);
        if room == 0 {
            return Ok(None);
        }
        let mut tokens = Vec::with_capacity(self.prompt_ids.len() + self.history.len());
        tokens.extend_from_slice(&self.prompt_ids);
        tokens.extend_from_slice(&self.history);
        let mut d = match *draft {
            Draft::Model { max_tokens } => self.model_draft(&tokens, room.min(max_tokens))?,
            _ => draft.propose(&tokens, room),
        };
        if let Some(m) = &mut self.matcher {
            // Rows past a draft the grammar forbids cannot match: the
            // pass would compute them for nothing.
            let t0 = Instant::now();
            d.truncate(m.admits(&d)?);
            self.grammar_seconds += t0.elapsed().as_secs_f64();
        }
        Ok((!d.is_empty()).then_some(d))
    }

    /// Greedy drafts of the draft model after `tokens`: its cache is
    /// brought up to `tokens` (kept where it still agrees, extended with
    /// the rest), then it decodes `n` tokens on its own.
    fn model_draft(&mut self, tokens: &[u32], n: usize) -> Result<Vec<u32>, Error> {
        let owner = self.owner;
        let dm = owner.draft.as_ref().ok_or(Error::NoDraftModel)?;
        let st = self
            .draft_state
            .get_or_insert_with(|| dm.model.new_state(owner.kv_type));
        // Its cache holds a prefix of `tokens` (rolled back after each
        // pass); at least the last token is fed again for fresh logits.
        let keep = st.len().min(tokens.len() - 1);
        if !st.truncate(keep) {
            st.clear();
        }
        let prompt = self.prompt_ids.len().min(tokens.len() - 1);
        self.draft_logits.resize(dm.model.n_vocab(), 0.0);
        let logits = &mut self.draft_logits;
        let threads = self.threads;
        owner.run(|| -> Result<Vec<u32>, Error> {
            // The prompt alone first, as the target ran it: then the same
            // model drafts exactly what the target would choose.
            if st.is_empty() && prompt > 0 {
                dm.model.forward(&tokens[..prompt], st, None, threads)?;
            }
            let have = st.len();
            dm.model
                .forward(&tokens[have..], st, Some(logits), threads)?;
            let mut out = vec![kiln_runtime::sampling::argmax(logits)];
            while out.len() < n {
                let last = out[out.len() - 1];
                dm.model.forward(&[last], st, Some(logits), threads)?;
                out.push(kiln_runtime::sampling::argmax(logits));
            }
            Ok(out)
        })
    }

    /// One verification pass: the last token and the drafts in one
    /// forward pass, each row's token chosen as a plain step would choose
    /// it, kept while it equals the draft; the cache is rolled back past
    /// the first mismatch.
    fn speculate(&mut self, last: u32, drafted: Vec<u32>) -> Result<(), Error> {
        let owner = self.owner;
        let v = owner.model.n_vocab();
        let k = drafted.len();
        let mut rows = Vec::with_capacity(k + 1);
        rows.push(last);
        rows.extend_from_slice(&drafted);
        self.row_logits.resize((k + 1) * v, 0.0);
        let state = self.state.as_mut().ok_or(Error::Empty)?;
        let base = state.len();
        let threads = self.threads;
        let logits = &mut self.row_logits;
        owner.run(|| owner.model.forward_rows(&rows, state, logits, threads))?;
        self.passes += 1;
        self.drafted_tokens += k;
        // Row i is chosen as a plain step after the tokens kept before it
        // would be: its repetition penalty sees them, and the grammar has
        // moved past them.
        let mut history = self.history.clone();
        let mut chosen = Vec::with_capacity(k + 1);
        let mut kept = 0;
        for (i, row) in self.row_logits.chunks_exact_mut(v).enumerate() {
            let d = drafted.get(i).copied();
            let id = pick(
                self.matcher.as_mut(),
                &mut self.sampler,
                row,
                &history,
                d,
                &mut self.grammar_seconds,
            )?;
            chosen.push(id);
            history.push(id);
            if d != Some(id) {
                break;
            }
            kept += 1;
        }
        self.accepted_tokens += kept;
        if let Some(ds) = &mut self.draft_state {
            // The draft model's cache keeps what the target confirmed.
            let confirmed = self.prompt_ids.len() + self.history.len() + kept;
            if !ds.truncate(confirmed.min(ds.len())) {
                ds.clear();
            }
        }
        let state = self.state.as_mut().ok_or(Error::Empty)?;
        if !state.truncate(base + 1 + kept) {
            return Err(Error::Model(kiln_runtime::model::ModelError::Config(
                "the KV cache could not roll back a speculative pass".into(),
            )));
        }
        for (i, id) in chosen.into_iter().enumerate() {
            self.emit(id, base + 1 + i)?;
            if self.done {
                break;
            }
        }
        Ok(())
    }

    /// Releases token `id` (chosen with `in_cache` positions computed):
    /// end of generation, UTF-8 assembly, stop strings, limits.
    fn emit(&mut self, id: u32, in_cache: usize) -> Result<(), Error> {
        let owner = self.owner;
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

/// Chooses the next token from `logits` as a plain step does: the
/// grammar's mask, then the sampler (`draft`: the token a drafter
/// proposed here, which sampling accepts with its probability); the
/// grammar moves past the choice, and its time is added to `grammar_seconds`.
fn pick(
    matcher: Option<&mut Matcher>,
    sampler: &mut Sampler,
    logits: &mut [f32],
    history: &[u32],
    draft: Option<u32>,
    grammar_seconds: &mut f64,
) -> Result<u32, Error> {
    let Some(m) = matcher else {
        return Ok(sampler.sample_with_draft(logits, history, draft));
    };
    let t0 = Instant::now();
    m.mask(logits)?;
    let t1 = Instant::now();
    let id = sampler.sample_with_draft(logits, history, draft);
    let t2 = Instant::now();
    m.accept(id)?;
    *grammar_seconds += (t1 - t0 + t2.elapsed()).as_secs_f64();
    Ok(id)
}

impl Iterator for Generation<'_> {
    type Item = Result<Token, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(t) = self.ready.pop_front() {
                return Some(Ok(t));
            }
            if self.done && self.error.is_none() {
                self.release();
                return None;
            }
            if let Err(e) = self.advance() {
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
