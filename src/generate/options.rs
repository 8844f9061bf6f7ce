//! What one generation call asks for.

use kiln_runtime::sampling::SamplingOptions;

use std::sync::Arc;

use crate::Grammar;

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
    /// Output constraint: every token keeps the text a valid prefix of
    /// the grammar, and generation ends only where it is complete.
    pub grammar: Option<Grammar>,
    /// Speculative decoding: drafted tokens verified several per weight
    /// pass. Greedy output is unchanged token for token, and sampling
    /// keeps its distribution. Not used together with a grammar.
    pub draft: Option<Draft>,
}

/// Where speculative decoding's drafted tokens come from.
#[derive(Clone)]
pub enum Draft {
    /// Prompt lookup: after the latest earlier occurrence of the last
    /// `ngram` tokens (prompt and output so far; shorter matches down to
    /// 2 tokens are tried next), the tokens that followed it, at most
    /// `max_tokens` at a time. No second model; it pays off where the
    /// output repeats the input (extraction, quoting, editing).
    Ngram {
        /// Longest suffix to look up.
        ngram: usize,
        /// Most tokens drafted per pass.
        max_tokens: usize,
    },
    /// The generator's draft model ([`GeneratorBuilder::draft`](super::GeneratorBuilder::draft)),
    /// decoding greedily `max_tokens` tokens per pass.
    Model {
        /// Most tokens drafted per pass.
        max_tokens: usize,
    },
    /// A drafter of the caller's: given the tokens so far (prompt and
    /// output), the tokens it expects next (any number; the excess over
    /// the room left is cut).
    Custom(Drafter),
}

/// A caller's drafter: tokens so far in, expected next tokens out.
pub type Drafter = Arc<dyn Fn(&[u32]) -> Vec<u32> + Send + Sync>;

impl Draft {
    /// Prompt lookup with a 3-token suffix and up to 8 drafted tokens.
    pub fn ngram() -> Draft {
        Draft::Ngram {
            ngram: 3,
            max_tokens: 8,
        }
    }

    /// The draft model, 4 tokens per pass.
    pub fn model() -> Draft {
        Draft::Model { max_tokens: 4 }
    }

    /// Tokens expected after `tokens`, at most `room`.
    pub(super) fn propose(&self, tokens: &[u32], room: usize) -> Vec<u32> {
        match self {
            Draft::Ngram { ngram, max_tokens } => {
                let room = room.min(*max_tokens);
                for n in (2.min(*ngram)..=*ngram).rev() {
                    if n == 0 || tokens.len() <= n {
                        continue;
                    }
                    let suffix = &tokens[tokens.len() - n..];
                    // Latest earlier occurrence with something after it.
                    if let Some(at) = (0..tokens.len() - n)
                        .rev()
                        .find(|&i| &tokens[i..i + n] == suffix)
                    {
                        let from = at + n;
                        return tokens[from..tokens.len().min(from + room)].to_vec();
                    }
                }
                Vec::new()
            }
            // Drafted by the generation, which holds the model's cache.
            Draft::Model { .. } => Vec::new(),
            Draft::Custom(f) => {
                let mut d = f(tokens);
                d.truncate(room);
                d
            }
        }
    }
}

impl std::fmt::Debug for Draft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Draft::Ngram { ngram, max_tokens } => f
                .debug_struct("Ngram")
                .field("ngram", ngram)
                .field("max_tokens", max_tokens)
                .finish(),
            Draft::Model { max_tokens } => f
                .debug_struct("Model")
                .field("max_tokens", max_tokens)
                .finish(),
            Draft::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: SamplingOptions::default(),
            stop: Vec::new(),
            context: None,
            grammar: None,
            draft: None,
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
