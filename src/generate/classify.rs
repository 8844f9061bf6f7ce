//! Prefill-only scoring: the next-token distribution of a prompt, or the
//! probability of each of a set of labels as its continuation.

use std::time::Instant;

use kiln_runtime::model::DecoderState;
use kiln_runtime::sampling::softmax;
use kiln_runtime::tokenizer::EncodeOptions;

use super::generator::{Generator, Metrics};
use crate::Error;

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

impl Generator {
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
}
