//! Choosing the next token from a row of logits.
//!
//! The chain is llama.cpp's default order: repetition penalty over the
//! recent tokens → top-k → top-p → min-p → temperature → a draw from the
//! remaining distribution. Temperature 0 (or below) is greedy: the best
//! logit, ties to the lowest id. The random source is a seeded SplitMix64,
//! so a seed gives the same tokens on every machine and thread count.

/// How to sample; [`Default`] is llama.cpp's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingOptions {
    /// Divides the logits; `<= 0` means greedy.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability
    /// reaches `p` (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the best one (0: none).
    pub min_p: f32,
    /// Divides positive logits (multiplies negative ones) of tokens seen in
    /// the last [`repeat_last_n`](Self::repeat_last_n) tokens (1: off).
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the random draws.
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingOptions {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        SamplingOptions {
            temperature: 0.0,
            ..Self::default()
        }
    }
}

/// SplitMix64: tiny, fast, and the same everywhere.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A sampler: options, random state and scratch memory.
#[derive(Clone, Debug)]
pub struct Sampler {
    opts: SamplingOptions,
    rng: Rng,
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler seeded with `opts.seed`.
    pub fn new(opts: SamplingOptions) -> Self {
        let rng = Rng(opts.seed);
        Sampler {
            opts,
            rng,
            cand: Vec::new(),
        }
    }

    /// The options.
    pub fn options(&self) -> &SamplingOptions {
        &self.opts
    }

    /// Picks the next token from `logits`, given the tokens so far
    /// (`history`, for the repetition penalty). Penalized logits are
    /// changed in place.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.sample_with_draft(logits, history, None)
    }

    /// [`sample`](Self::sample), where `draft` is a token proposed for this
    /// position by a deterministic drafter (speculative decoding). Greedy
    /// ignores it (the caller compares). Sampling keeps the distribution
    /// of [`sample`](Self::sample) exactly: the draft is accepted with its
    /// probability p(draft) (the rule min(1, p/q) with q = 1), and on
    /// rejection the token is drawn from the distribution without it.
    pub fn sample_with_draft(
        &mut self,
        logits: &mut [f32],
        history: &[u32],
        draft: Option<u32>,
    ) -> u32 {
        let o = &self.opts;
        if o.repetition_penalty != 1.0 && o.repeat_last_n > 0 {
            let from = history.len().saturating_sub(o.repeat_last_n);
            let mut seen: Vec<u32> = history[from..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 {
                        *l / o.repetition_penalty
                    } else {
                        *l * o.repetition_penalty
                    };
                }
            }
        }
        if o.temperature <= 0.0 {
            return argmax(logits);
        }
        let cand = &mut self.cand;
        cand.clear();
        cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_finite())
                .map(|(i, &l)| (i as u32, l)),
        );
        if cand.is_empty() {
            return argmax(logits);
        }
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = if o.top_k == 0 {
            cand.len()
        } else {
            o.top_k.min(cand.len())
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, by_logit);
            cand.truncate(k);
        }
        cand.sort_unstable_by(by_logit);
        // Probabilities at temperature 1 decide top-p and min-p, as llama.cpp.
        let mx = cand[0].1;
        let mut probs: Vec<f64> = cand.iter().map(|c| f64::from(c.1 - mx).exp()).collect();
        let z: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= z);
        let mut keep = cand.len();
        if o.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= f64::from(o.top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        if o.min_p > 0.0 {
            let floor = probs[0] * f64::from(o.min_p);
            keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
        }
        cand.truncate(keep);
        let t = f64::from(o.temperature);
        let mut weights: Vec<f64> = cand
            .iter()
            .map(|c| (f64::from(c.1 - mx) / t).exp())
            .collect();
        let mut total: f64 = weights.iter().sum();
        if let Some(x) = draft {
            let at = cand.iter().position(|c| c.0 == x);
            let p = at.map_or(0.0, |i| weights[i] / total);
            if self.rng.next_f64() < p {
                return x;
            }
            if let Some(i) = at {
                total -= weights[i];
                weights[i] = 0.0;
            }
        }
        let mut r = self.rng.next_f64() * total;
        for (c, w) in cand.iter().zip(&weights) {
            if r < *w && *w > 0.0 {
                return c.0;
            }
            r -= w;
        }
        // Rounding left `r` past the end: the last token still possible.
        cand.iter()
            .zip(&weights)
            .rev()
            .find(|(_, w)| **w > 0.0)
            .map_or(cand[cand.len() - 1].0, |(c, _)| c.0)
    }
}

/// The index of the largest value, ties to the lowest index.
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// Softmax of `logits` into probabilities (f64 sums, f32 out).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let mx = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|&l| f64::from(l - mx).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| (v / z) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 3.0, -1.0]
    }

    #[test]
    fn greedy_takes_the_best_lowest_id() {
        let mut s = Sampler::new(SamplingOptions::greedy());
        assert_eq!(s.sample(&mut logits(), &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens_other_seed_differs() {
        let opts = SamplingOptions {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..Default::default()
        };
        let run = |seed| {
            let mut s = Sampler::new(SamplingOptions {
                seed,
                ..opts.clone()
            });
            (0..64)
                .map(|_| s.sample(&mut logits(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        // Every finite token is reachable at high temperature.
        let seen: std::collections::BTreeSet<u32> = run(7).into_iter().collect();
        assert!(seen.len() >= 4, "{seen:?}");
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplingOptions {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits(), &[]), 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Tokens 1 and 4 hold most of the mass; with top-p 0.5 only the
        // first of them (lowest id on ties) survives.
        let mut s = Sampler::new(SamplingOptions {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.3,
            min_p: 0.0,
            ..Default::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits(), &[]), 1);
        }
        // min-p 0.5: only tokens within half the best probability: 1 and 4
        // (e^-1 = 0.37 < 0.5 drops token 2).
        let mut s = Sampler::new(SamplingOptions {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            seed: 3,
            ..Default::default()
        });
        let seen: std::collections::BTreeSet<u32> =
            (0..100).map(|_| s.sample(&mut logits(), &[])).collect();
        assert_eq!(seen, [1, 4].into_iter().collect());
    }

    #[test]
    fn repetition_penalty_changes_greedy_choice() {
        let mut s = Sampler::new(SamplingOptions {
            temperature: 0.0,
            repetition_penalty: 2.0,
            ..Default::default()
        });
        // 1 and 4 were seen: 3.0 → 1.5 each, so 2 (2.0) wins.
        let mut l = logits();
        assert_eq!(s.sample(&mut l, &[1, 4, 1]), 2);
        assert_eq!(l[1], 1.5);
        // A negative logit is made more negative.
        let mut l = logits();
        s.sample(&mut l, &[5]);
        assert_eq!(l[5], -2.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let p = softmax(&logits());
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[2] && p[2] > p[0]);
    }

    /// Speculative sampling keeps the distribution: with a fixed draft,
    /// the frequencies of the chosen tokens match plain sampling's within
    /// sampling noise (a chi-square test on a 6-token vocabulary, top-k
    /// and min-p on, for a likely, an unlikely and an excluded draft).
    #[test]
    fn drafted_sampling_keeps_the_distribution() {
        let opts = SamplingOptions {
            temperature: 0.9,
            top_k: 5,
            top_p: 1.0,
            min_p: 0.02,
            seed: 3,
            ..SamplingOptions::default()
        };
        let n = 60_000;
        let counts = |draft: Option<u32>, seed: u64| {
            let mut s = Sampler::new(SamplingOptions {
                seed,
                ..opts.clone()
            });
            let mut c = [0usize; 6];
            for _ in 0..n {
                c[s.sample_with_draft(&mut logits(), &[], draft) as usize] += 1;
            }
            c
        };
        let plain = counts(None, 1);
        for draft in [1, 3, 5] {
            let spec = counts(Some(draft), 2);
            let mut chi2 = 0.0;
            for (a, b) in plain.iter().zip(&spec) {
                if a + b > 0 {
                    let (a, b) = (*a as f64, *b as f64);
                    chi2 += (a - b).powi(2) / (a + b);
                }
            }
            // 5 degrees of freedom: p = 0.001 at 20.5.
            assert!(
                chi2 < 20.5,
                "draft {draft}: {plain:?} vs {spec:?} (chi2 {chi2:.1})"
            );
            // Token 5 (logit -1) is outside top-k: never chosen, drafted or not.
            assert_eq!(spec[5], 0, "{spec:?}");
        }
    }
}
