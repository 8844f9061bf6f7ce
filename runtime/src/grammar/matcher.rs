//! One generation's position in a grammar: which tokens may come next.

use std::collections::HashMap;
use std::sync::Arc;

use super::automaton::{Automaton, DEAD, StateId};
use super::{Grammar, GrammarError, GrammarVocab};

/// Masks kept per matcher; a step whose state was seen before reuses its
/// mask (inside a JSON string, for instance, every step is the same state).
const MAX_CACHED_MASKS: usize = 256;

/// Follows one generation through a grammar.
#[derive(Debug)]
pub struct Matcher {
    auto: Automaton,
    vocab: Arc<GrammarVocab>,
    state: StateId,
    masks: HashMap<StateId, Vec<u64>>,
    tokens: usize,
    ended: bool,
}

impl Matcher {
    /// A matcher at the start of `grammar`, over `vocab`'s tokens.
    pub fn new(grammar: &Grammar, vocab: Arc<GrammarVocab>) -> Result<Self, GrammarError> {
        let mut auto = Automaton::new(grammar.program().clone());
        let state = auto.start()?;
        Ok(Matcher {
            auto,
            vocab,
            state,
            masks: HashMap::new(),
            tokens: 0,
            ended: false,
        })
    }

    /// The tokens allowed next, one bit per token id.
    pub fn allowed(&mut self) -> Result<&[u64], GrammarError> {
        if !self.masks.contains_key(&self.state) {
            if self.masks.len() >= MAX_CACHED_MASKS {
                self.masks.clear();
            }
            let mut mask = vec![0u64; self.vocab.n_vocab().div_ceil(64)];
            if !self.ended {
                self.vocab.allowed(&mut self.auto, self.state, &mut mask)?;
            }
            if mask.iter().all(|&w| w == 0) {
                return Err(GrammarError::DeadEnd {
                    generated: self.tokens,
                });
            }
            self.masks.insert(self.state, mask);
        }
        Ok(&self.masks[&self.state])
    }

    /// Sets every logit the grammar forbids here to minus infinity.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), GrammarError> {
        let mask = self.allowed()?;
        for (chunk, &bits) in logits.chunks_mut(64).zip(mask) {
            if bits == u64::MAX {
                continue;
            }
            for (j, l) in chunk.iter_mut().enumerate() {
                if bits >> j & 1 == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        // Logits past the vocabulary the masks cover are never allowed.
        if let Some(rest) = logits.get_mut(mask.len() * 64..) {
            rest.fill(f32::NEG_INFINITY);
        }
        Ok(())
    }

    /// Moves past `token`; an error if the grammar does not allow it.
    pub fn accept(&mut self, token: u32) -> Result<(), GrammarError> {
        let (state, ended) = self
            .after(self.state, self.ended, token)?
            .ok_or(GrammarError::Rejected { token })?;
        self.state = state;
        self.ended = ended;
        self.tokens += 1;
        Ok(())
    }

    /// How many of `tokens`, from the start, the grammar allows in a row
    /// from here; the matcher does not move. Speculative decoding cuts
    /// its drafts there, since a verification row past it cannot match.
    pub fn admits(&mut self, tokens: &[u32]) -> Result<usize, GrammarError> {
        let (mut state, mut ended) = (self.state, self.ended);
        for (i, &token) in tokens.iter().enumerate() {
            match self.after(state, ended, token)? {
                Some(next) => (state, ended) = next,
                None => return Ok(i),
            }
        }
        Ok(tokens.len())
    }

    /// Where `token` leads from `state` (and whether the grammar has
    /// ended there), or `None` if the grammar does not allow it.
    fn after(
        &mut self,
        state: StateId,
        ended: bool,
        token: u32,
    ) -> Result<Option<(StateId, bool)>, GrammarError> {
        if ended {
            return Ok(None);
        }
        if self.vocab.is_end(token) {
            return Ok(self.auto.is_accepting(state).then_some((state, true)));
        }
        let bytes = self.vocab.token_bytes(token);
        if bytes.is_empty() {
            return Ok(None);
        }
        let next = self.auto.walk(state, bytes)?;
        Ok((next != DEAD).then_some((next, false)))
    }

    /// Whether the text so far is a whole sentence of the grammar.
    pub fn is_accepting(&self) -> bool {
        self.auto.is_accepting(self.state)
    }
}
