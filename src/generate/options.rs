//! What one generation call asks for.

use kiln_runtime::sampling::SamplingOptions;

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
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: SamplingOptions::default(),
            stop: Vec::new(),
            context: None,
            grammar: None,
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
