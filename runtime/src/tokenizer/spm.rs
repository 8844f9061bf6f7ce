//! SentencePiece-style tokenization as llama.cpp's `llm_tokenizer_spm` does
//! it (`tokenizer.ggml.model = "llama"`, used by Gemma).
//!
//! The text of a fragment, with spaces written as U+2581 (and one prefixed
//! when `add_space_prefix` asks for it), is split into UTF-8 characters.
//! Every adjacent pair whose concatenation is a vocabulary piece goes into a
//! priority queue keyed by that piece's score (ties: leftmost first); the best
//! pair is merged, its neighbours' pairs are queued, and stale entries are
//! skipped when popped. The surviving symbols are looked up; a symbol that
//! is no piece is emitted as byte-fallback tokens `<0xXX>`, one per byte.
//!
//! One deliberate difference from llama.cpp: control and unknown pieces are
//! never merge targets, so text can never turn into `<bos>`,
//! `<start_of_turn>`, ... unless special-token parsing is on. For Gemma's
//! vocabulary this changes nothing observable (no control piece is reachable
//! by merging its own text); it makes "text is text" hold by construction.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::TokenizerError;
use super::pieces::Pieces;
use super::vocab::TokenType;

/// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space.
pub(crate) const SPACE: &str = "\u{2581}";

#[derive(Clone, Copy, Debug)]
pub(crate) struct Symbol {
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

const NONE: u32 = u32::MAX;

/// A candidate merge of `left` and its right neighbour `right`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    /// Byte length of the merged piece, to detect stale entries.
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Reusable buffers of the SPM step.
#[derive(Debug, Default)]
pub(crate) struct SpmScratch {
    pub(crate) text: String,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
}

/// Piece lookups that exclude control and unknown tokens.
pub(crate) struct SpmModel<'t> {
    pub(crate) pieces: &'t Pieces,
    pub(crate) scores: &'t [f32],
    pub(crate) types: &'t [TokenType],
    /// Byte-fallback token of every byte, or `u32::MAX` when the vocabulary has none.
    pub(crate) byte_tokens: &'t [u32; 256],
}

impl SpmModel<'_> {
    fn lookup(&self, bytes: &[u8]) -> Option<u32> {
        self.pieces
            .get(bytes)
            .filter(|&id| !self.types[id as usize].is_special_only())
    }

    fn try_add(&self, s: &mut SpmScratch, left: u32, right: u32) {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (s.symbols[left as usize], s.symbols[right as usize]);
        let start = l.start as usize;
        let end = start + (l.len + r.len) as usize;
        if let Some(id) = self.lookup(&s.text.as_bytes()[start..end]) {
            s.queue.push(Bigram {
                score: self.scores[id as usize],
                left,
                right,
                size: l.len + r.len,
            });
        }
    }

    /// Tokenize `s.text` (already escaped) and append the ids to `out`.
    pub(crate) fn tokenize(
        &self,
        s: &mut SpmScratch,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        s.symbols.clear();
        s.queue.clear();
        let n_chars = s.text.chars().count() as u32;
        for (i, (start, c)) in s.text.char_indices().enumerate() {
            let i = i as u32;
            s.symbols.push(Symbol {
                start: start as u32,
                len: c.len_utf8() as u32,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n_chars { NONE } else { i + 1 },
            });
        }
        for i in 1..n_chars {
            self.try_add(s, i - 1, i);
        }
        while let Some(b) = s.queue.pop() {
            let (l, r) = (s.symbols[b.left as usize], s.symbols[b.right as usize]);
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            s.symbols[b.left as usize].len += r.len;
            s.symbols[b.right as usize].len = 0;
            s.symbols[b.left as usize].next = r.next;
            if r.next != NONE {
                s.symbols[r.next as usize].prev = b.left;
            }
            self.try_add(s, l.prev, b.left);
            self.try_add(s, b.left, r.next);
        }

        let mut i = if n_chars == 0 { NONE } else { 0 };
        while i != NONE {
            let sym = s.symbols[i as usize];
            let bytes = &s.text.as_bytes()[sym.start as usize..(sym.start + sym.len) as usize];
            match self.lookup(bytes) {
                Some(id) => out.push(id),
                None => {
                    for &b in bytes {
                        let id = self.byte_tokens[b as usize];
                        if id == u32::MAX {
                            return Err(TokenizerError::NoByteToken(b));
                        }
                        out.push(id);
                    }
                }
            }
            i = sym.next;
        }
        Ok(())
    }
}

/// Find the byte-fallback token of every byte: `<0xXX>`, else the one-byte
/// piece (llama.cpp's `byte_to_token`), else `u32::MAX`.
pub(crate) fn byte_tokens(pieces: &Pieces) -> [u32; 256] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut table = [u32::MAX; 256];
    for (b, slot) in table.iter_mut().enumerate() {
        let name = [b'<', b'0', b'x', HEX[b >> 4], HEX[b & 15], b'>'];
        *slot = pieces
            .get(&name)
            .or_else(|| pieces.get(&[b as u8]))
            .unwrap_or(u32::MAX);
    }
    table
}
