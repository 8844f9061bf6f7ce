//! Continuous batching: one loop per generator in which every running
//! generation advances one token per step in a single batched forward
//! pass, new requests join between steps, and a finished, stopped or
//! abandoned one leaves at once.
//!
//! Each generation is still a [`Generation`] (sampling, grammar, stop
//! strings, limits are its own); the loop only decides when its next
//! logits are computed, and a batched row is bit-identical to a lone step,
//! so every request gets exactly what it would get alone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::generation::{FinishReason, Generation, Token};
use super::generator::Generator;
use super::options::GenerateOptions;
use crate::{ChatMessage, Error};

/// Prompt tokens a newcomer feeds per step of the loop.
const PREFILL_CHUNK: usize = 64;

/// What a request generates from.
#[derive(Clone, Debug)]
pub enum EngineInput {
    /// A raw prompt (parsed for special tokens as `generate` parses it).
    Prompt(String),
    /// A conversation rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
}

/// What a request receives, in order: tokens, then one `Done` or `Error`.
#[derive(Debug)]
pub enum EngineEvent {
    /// A generated token.
    Token(Token),
    /// The generation ended.
    Done {
        /// Why.
        finish: FinishReason,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Generated tokens.
        completion_tokens: usize,
        /// Seconds it waited for a slot.
        queue_seconds: f64,
    },
    /// The generation failed.
    Error(Error),
}

/// Receives a request's events; returns false once nobody listens (the
/// generation then stops and frees its slot).
pub type EventSink = Box<dyn FnMut(EngineEvent) -> bool + Send>;

/// One request for the engine.
pub struct EngineRequest {
    /// What to generate from.
    pub input: EngineInput,
    /// How.
    pub opts: GenerateOptions,
    /// Where its events go.
    pub sink: EventSink,
    /// Asked before each step and between prompt chunks: true drops the
    /// request (a client that left).
    pub cancelled: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// The running loop of one generator: submit requests from any thread.
pub struct Engine {
    tx: Option<mpsc::Sender<(EngineRequest, Instant)>>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
}

/// Live figures of an engine.
#[derive(Debug, Default)]
struct Counts {
    active: AtomicUsize,
    waiting: AtomicUsize,
}

impl Engine {
    /// Starts the loop on its own thread: at most `slots` generations run
    /// at once (each holds a KV cache), others wait in arrival order.
    pub fn new(generator: Arc<Generator>, slots: usize) -> Engine {
        let (tx, rx) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let thread = std::thread::Builder::new()
            .name("kiln-engine".into())
            .spawn(move || {
                // A panic drops the requests in flight (their listeners see
                // the end of their events) and the loop starts over.
                while std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(&generator, &rx, slots.max(1), &c)
                }))
                .is_err()
                {
                    c.active.store(0, Ordering::Release);
                }
            })
            .expect("spawning the engine thread");
        Engine {
            tx: Some(tx),
            thread: Some(thread),
            counts,
        }
    }

    /// Queues a request; its events go to its sink.
    pub fn submit(&self, req: EngineRequest) {
        if let Some(tx) = &self.tx {
            self.counts.waiting.fetch_add(1, Ordering::AcqRel);
            if let Err(mpsc::SendError((mut req, _))) = tx.send((req, Instant::now())) {
                self.counts.waiting.fetch_sub(1, Ordering::AcqRel);
                (req.sink)(EngineEvent::Error(Error::Empty));
            }
        }
    }

    /// Generations running now.
    pub fn active(&self) -> usize {
        self.counts.active.load(Ordering::Acquire)
    }

    /// Requests waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.counts.waiting.load(Ordering::Acquire)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the channel ends the loop once the running ones finish.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("active", &self.active())
            .field("waiting", &self.waiting())
            .finish()
    }
}

struct Running<'g> {
    g: Generation<'g>,
    sink: EventSink,
    cancelled: Arc<dyn Fn() -> bool + Send + Sync>,
    queue_seconds: f64,
}

impl Running<'_> {
    /// Sends the tokens ready and, at the end, `Done`; false when the
    /// request is over (ended, failed or abandoned).
    fn flush(&mut self, step: Result<(), Error>) -> bool {
        while let Some(t) = self.g.pop_ready() {
            if !(self.sink)(EngineEvent::Token(t)) {
                return false;
            }
        }
        if let Err(e) = step {
            (self.sink)(EngineEvent::Error(e));
            return false;
        }
        if (self.cancelled)() {
            return false;
        }
        if self.g.is_done() {
            if let Some(finish) = self.g.finish_reason() {
                (self.sink)(EngineEvent::Done {
                    finish,
                    prompt_tokens: self.g.prompt_tokens(),
                    completion_tokens: self.g.generated_tokens(),
                    queue_seconds: self.queue_seconds,
                });
            }
            return false;
        }
        true
    }
}

fn run(
    g: &Generator,
    rx: &mpsc::Receiver<(EngineRequest, Instant)>,
    slots: usize,
    counts: &Counts,
) {
    let mut running: Vec<Running<'_>> = Vec::new();
    let mut waiting: VecDeque<(EngineRequest, Instant)> = VecDeque::new();
    let mut logits = Vec::new();
    loop {
        counts.active.store(running.len(), Ordering::Release);
        if running.is_empty() && waiting.is_empty() {
            match rx.recv() {
                Ok(r) => waiting.push_back(r),
                Err(_) => return,
            }
        }
        while let Ok(r) = rx.try_recv() {
            waiting.push_back(r);
        }
        // Join: each newcomer's prompt runs now, between two steps.
        while running.len() < slots
            && let Some((req, since)) = waiting.pop_front()
        {
            counts.waiting.fetch_sub(1, Ordering::AcqRel);
            if (req.cancelled)() {
                continue;
            }
            let gen_ = match &req.input {
                EngineInput::Prompt(p) => g.generate(p, &req.opts),
                EngineInput::Chat(m) => g.chat(m, &req.opts),
            };
            let c = req.cancelled.clone();
            let mut gen_ = gen_.cancel_when(move || c());
            gen_.prefill_in_chunks(PREFILL_CHUNK);
            let mut r = Running {
                g: gen_,
                sink: req.sink,
                cancelled: req.cancelled,
                queue_seconds: since.elapsed().as_secs_f64(),
            };
            if r.flush(Ok(())) {
                running.push(r);
            }
        }
        counts.active.store(running.len(), Ordering::Release);
        if running.is_empty() {
            continue;
        }
        // Newcomers feed one prompt chunk per step, between the others'
        // tokens, so that running streams keep flowing.
        running.retain_mut(|r| {
            if r.g.is_prefilling() {
                let step = r.g.advance();
                r.flush(step)
            } else {
                true
            }
        });
        if running.is_empty() {
            continue;
        }
        if running.len() == 1 {
            // Alone: the lone path (which also runs speculative drafts).
            let step = running[0].g.advance();
            if !running[0].flush(step) {
                running.clear();
            }
            continue;
        }
        let mut refs: Vec<&mut Generation<'_>> = running.iter_mut().map(|r| &mut r.g).collect();
        let mut results = g.decode_together(&mut refs, &mut logits).into_iter();
        // Those not in the step (cancelled or done) are flushed too.
        running.retain_mut(|r| r.flush(results.next().flatten().unwrap_or(Ok(()))));
    }
}
