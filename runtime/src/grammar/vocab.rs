//! The vocabulary as a byte trie, walked against the grammar's automaton.
//!
//! Tokens that share a prefix share the walk of that prefix, and a prefix
//! the grammar refuses skips every token below it at once, so a step's
//! mask costs one table lookup per trie node that is still alive.

use super::GrammarError;
use super::automaton::{Automaton, DEAD, StateId};

/// Tokens by their bytes, for matching against grammars. Build it once
/// per model and share it (it is read-only).
#[derive(Debug)]
pub struct GrammarVocab {
    n_vocab: usize,
    /// Per trie node, in preorder: its byte, its depth (1 for a first
    /// byte), the node after its subtree, and where its tokens start.
    byte: Vec<u8>,
    depth: Vec<u32>,
    skip: Vec<u32>,
    tok_start: Vec<u32>,
    toks: Vec<u32>,
    max_depth: usize,
    /// Each token's bytes (`offsets[id]..offsets[id + 1]`).
    offsets: Vec<u32>,
    bytes: Vec<u8>,
    end: Vec<u32>,
}

impl GrammarVocab {
    /// Builds the trie. `tokens` are the (id, bytes) of the tokens that
    /// stand for text (control tokens left out), `end` the
    /// end-of-generation tokens, allowed only where the grammar is
    /// complete, and `n_vocab` the number of logits. Ids at or above
    /// `n_vocab` and tokens without bytes are left out.
    pub fn new(
        n_vocab: usize,
        tokens: impl IntoIterator<Item = (u32, Vec<u8>)>,
        end: &[u32],
    ) -> Self {
        let mut list: Vec<(Vec<u8>, u32)> = tokens
            .into_iter()
            .filter(|(id, b)| (*id as usize) < n_vocab && !b.is_empty() && !end.contains(id))
            .map(|(id, b)| (b, id))
            .collect();
        let mut offsets = vec![0u32; n_vocab + 1];
        {
            let mut by_id: Vec<usize> = (0..list.len()).collect();
            by_id.sort_unstable_by_key(|&i| list[i].1);
            let mut len = vec![0u32; n_vocab];
            for &i in &by_id {
                len[list[i].1 as usize] = list[i].0.len() as u32;
            }
            for id in 0..n_vocab {
                offsets[id + 1] = offsets[id] + len[id];
            }
        }
        let mut bytes = vec![0u8; offsets[n_vocab] as usize];
        for (b, id) in &list {
            let at = offsets[*id as usize] as usize;
            bytes[at..at + b.len()].copy_from_slice(b);
        }
        list.sort_unstable();
        let (mut byte, mut depth, mut skip) = (Vec::new(), Vec::new(), Vec::new());
        let mut tok_node: Vec<u32> = Vec::with_capacity(list.len());
        let mut toks = Vec::with_capacity(list.len());
        let mut path: Vec<u32> = Vec::new();
        let mut prev: &[u8] = &[];
        for (b, id) in &list {
            let lcp = prev
                .iter()
                .zip(b.iter())
                .take_while(|(x, y)| x == y)
                .count();
            // Close the nodes below the shared prefix.
            for &node in &path[lcp..] {
                skip[node as usize] = byte.len() as u32;
            }
            path.truncate(lcp);
            for (d, &c) in b.iter().enumerate().skip(lcp) {
                path.push(byte.len() as u32);
                byte.push(c);
                depth.push(d as u32 + 1);
                skip.push(0);
            }
            tok_node.push(path[b.len() - 1]);
            toks.push(*id);
            prev = b;
        }
        for &node in &path {
            skip[node as usize] = byte.len() as u32;
        }
        // Tokens were appended in node order (a prefix sorts first).
        let mut tok_start = vec![0u32; byte.len() + 1];
        for &n in &tok_node {
            tok_start[n as usize + 1] += 1;
        }
        for i in 0..byte.len() {
            tok_start[i + 1] += tok_start[i];
        }
        let max_depth = depth.iter().copied().max().unwrap_or(0) as usize;
        GrammarVocab {
            n_vocab,
            byte,
            depth,
            skip,
            tok_start,
            toks,
            max_depth,
            offsets,
            bytes,
            end: end
                .iter()
                .copied()
                .filter(|&e| (e as usize) < n_vocab)
                .collect(),
        }
    }

    /// Number of logits the masks cover.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Nodes of the trie.
    pub fn n_nodes(&self) -> usize {
        self.byte.len()
    }

    /// The bytes of token `id` (empty for end and control tokens).
    pub(crate) fn token_bytes(&self, id: u32) -> &[u8] {
        match self.offsets.get(id as usize..id as usize + 2) {
            Some(&[a, b]) => &self.bytes[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Whether `id` ends generation.
    pub(crate) fn is_end(&self, id: u32) -> bool {
        self.end.contains(&id)
    }

    /// Sets in `mask` (one bit per token) every token allowed from state
    /// `s`; end tokens where `s` accepts.
    pub(crate) fn allowed(
        &self,
        auto: &mut Automaton,
        s: StateId,
        mask: &mut [u64],
    ) -> Result<(), GrammarError> {
        mask.fill(0);
        if auto.is_accepting(s) {
            for &e in &self.end {
                mask[e as usize / 64] |= 1 << (e % 64);
            }
        }
        let mut at = vec![s; self.max_depth + 1];
        let n = self.byte.len();
        let mut i = 0;
        while i < n {
            let d = self.depth[i] as usize;
            let next = auto.step(at[d - 1], self.byte[i])?;
            if next == DEAD {
                i = self.skip[i] as usize;
                continue;
            }
            at[d] = next;
            for &t in &self.toks[self.tok_start[i] as usize..self.tok_start[i + 1] as usize] {
                mask[t as usize / 64] |= 1 << (t % 64);
            }
            i += 1;
        }
        Ok(())
    }
}
