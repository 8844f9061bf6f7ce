//! The batching worker: one std thread that owns inference.
//!
//! Handlers tokenize, then `try_submit` a [`Job`] into a bounded queue (full
//! → the caller answers 429 at once). The worker takes the first waiting job,
//! then every job already queued while the batch stays under the token
//! budget, runs them as one `embed_tokens_groups` on the embedder's thread
//! pool (the jobs share forward passes; the library finishes each job's
//! vectors with the job's own options), and answers each job through its
//! oneshot channel. Nothing waits for a batch to fill: under load requests
//! pile up while the previous batch computes, so batches grow exactly when
//! there is work to merge. A job whose client went away (its receiver was
//! dropped) is skipped before computing.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::{CallOptions, Embedder, Embedding};

/// What a job gets back: one vector per input, or the error's message.
pub type Reply = Result<Vec<Embedding>, String>;

/// One request's inputs, tokenized and checked.
#[derive(Debug)]
pub struct Job {
    /// Token ids of each input, within the length limit.
    pub inputs: Vec<Vec<u32>>,
    /// The request's options (width, normalization, precision, …), checked.
    pub call: CallOptions,
    /// Where the answer goes; dropped by the handler if the client leaves.
    pub reply: oneshot::Sender<Reply>,
    /// When the job was queued.
    pub queued: Instant,
}

impl Job {
    fn tokens(&self) -> usize {
        self.inputs.iter().map(Vec::len).sum()
    }
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full.
    Full,
    /// The server is shutting down.
    Closed,
}

/// The queue's sending side and the worker thread.
#[derive(Debug)]
pub struct Batcher {
    tx: Mutex<Option<SyncSender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl Batcher {
    /// Starts the worker with a queue of `capacity` jobs; batches hold at
    /// most `max_batch_tokens` tokens (a single larger job runs alone).
    pub fn start(
        embedder: Arc<Embedder>,
        metrics: Arc<Metrics>,
        capacity: usize,
        max_batch_tokens: usize,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = sync_channel(capacity.max(1));
        let m = metrics.clone();
        let worker = std::thread::Builder::new()
            .name("kiln-batcher".into())
            .spawn(move || run(&embedder, &rx, &m, max_batch_tokens))?;
        Ok(Batcher {
            tx: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            metrics,
        })
    }

    /// Queues a job without waiting.
    pub fn try_submit(&self, job: Job) -> Result<(), SubmitError> {
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Err(SubmitError::Closed);
        };
        // Count first so the worker's decrement never goes below zero.
        self.metrics
            .queue_depth
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics
                    .queue_depth
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => Err(SubmitError::Full),
                    TrySendError::Disconnected(_) => Err(SubmitError::Closed),
                }
            }
        }
    }

    /// Whether the worker thread is running.
    pub fn is_alive(&self) -> bool {
        self.worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    /// Closes the queue, lets the worker finish every queued job, and joins it.
    pub fn shutdown(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        let handle = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("the batching worker panicked");
        }
    }
}

/// The worker loop; returns when the queue is closed and drained.
fn run(embedder: &Embedder, rx: &Receiver<Job>, metrics: &Metrics, max_batch_tokens: usize) {
    let take = |job: Job| {
        metrics
            .queue_depth
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        job
    };
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => take(j),
                Err(_) => break,
            },
        };
        let mut tokens = first.tokens();
        let mut batch = vec![first];
        while tokens < max_batch_tokens {
            let Ok(job) = rx.try_recv() else { break };
            let job = take(job);
            if tokens + job.tokens() > max_batch_tokens {
                held = Some(job);
                break;
            }
            tokens += job.tokens();
            batch.push(job);
        }
        batch.retain(|j| {
            let gone = j.reply.is_closed();
            if gone {
                metrics
                    .cancelled_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!("dropped a queued request: its client went away");
            }
            !gone
        });
        if batch.is_empty() {
            continue;
        }
        compute(embedder, batch, metrics);
    }
    tracing::info!("batching worker stopped");
}

/// Runs one batch and answers every job in it.
fn compute(embedder: &Embedder, batch: Vec<Job>, metrics: &Metrics) {
    let start = Instant::now();
    let waits: Vec<f64> = batch
        .iter()
        .map(|j| start.duration_since(j.queued).as_secs_f64())
        .collect();
    let groups: Vec<(&[Vec<u32>], &CallOptions)> = batch
        .iter()
        .map(|j| (j.inputs.as_slice(), &j.call))
        .collect();
    let inputs: usize = batch.iter().map(|j| j.inputs.len()).sum();
    let tokens: usize = batch.iter().map(Job::tokens).sum();
    let result = embedder.embed_tokens_groups(&groups);
    let seconds = start.elapsed().as_secs_f64();
    metrics.batch(inputs, tokens, &waits, seconds);
    tracing::debug!(
        requests = batch.len(),
        inputs,
        tokens,
        ms = seconds * 1e3,
        "batch"
    );
    match result {
        Ok(vectors) => {
            for (job, mine) in batch.into_iter().zip(vectors) {
                // The client may have left meanwhile; nothing to do then.
                let _ = job.reply.send(Ok(mine));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "batch failed");
            let msg = e.to_string();
            for job in batch {
                let _ = job.reply.send(Err(msg.clone()));
            }
        }
    }
}
