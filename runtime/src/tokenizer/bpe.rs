//! Byte-level BPE as llama.cpp's `llm_tokenizer_bpe` does it
//! (`tokenizer.ggml.model = "gpt2"`, used by SmolLM2, Llama 3, Qwen2).
//!
//! Vocabulary pieces are written in GPT-2's byte-to-unicode form: every byte
//! is one printable character ([`byte_char`]), so a piece is a string of
//! bytes. A text fragment is cut into words by the pre-tokenizer
//! ([`PreTokenizer`]); within each word every byte starts as one symbol, and
//! the adjacent pair with the best (lowest) merge rank is merged first, ties
//! to the leftmost, until no pair has a merge. Each surviving symbol is its
//! token.
//!
//! Merges are parsed once, into a table from the pair of symbol ids to the
//! rank and the merged symbol's id, so merging compares integers and builds
//! no strings. As in llama.cpp, a merge may name strings that are not
//! tokens: they get ids past the vocabulary, merge like any other symbol,
//! and a symbol that ends up as one of them is written as the tokens of its
//! single-byte characters that exist (llama.cpp's fallback, which drops the
//! others).
//!
//! One deliberate difference from llama.cpp: a merge whose result is a
//! control or unknown token is never applied, and a word is never looked up
//! as one, so text cannot turn into `<|im_start|>` unless special-token
//! parsing is on (no such merge exists in the supported models).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::TokenizerError;
use super::pieces::Pieces;
use super::pretok::{PreScratch, PreTokenizer};
use super::vocab::TokenType;

const NONE: u32 = u32::MAX;

/// Whether GPT-2 maps byte `b` to the character of the same code point.
const fn printable(b: u32) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The 68 bytes GPT-2 maps to U+0100.. in order (controls, space, DEL,
/// NBSP, soft hyphen).
const UNPRINTABLE: [u8; 68] = {
    let mut t = [0u8; 68];
    let mut n = 0;
    let mut b = 0;
    while b < 256 {
        if !printable(b) {
            t[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    t
};

/// GPT-2's `bytes_to_unicode`: the character byte `b` is written as.
const BYTE_CHARS: [char; 256] = {
    let mut t = ['\0'; 256];
    let mut n = 0;
    let mut b = 0;
    while b < 256 {
        let cp = if printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        t[b as usize] = match char::from_u32(cp) {
            Some(c) => c,
            None => panic!("code points below 0x200 are characters"),
        };
        b += 1;
    }
    t
};

/// The character GPT-2 writes byte `b` as.
pub(crate) fn byte_char(b: u8) -> char {
    BYTE_CHARS[b as usize]
}

/// The byte a character of a byte-level piece stands for, if it is one.
pub(crate) fn char_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 256 && printable(cp) {
        Some(cp as u8)
    } else {
        cp.checked_sub(256)
            .and_then(|i| UNPRINTABLE.get(i as usize))
            .copied()
    }
}

/// Merge rank and result of a pair of symbol ids: an open-addressing table
/// (48,900 merges for SmolLM2), looked up once per adjacent pair.
#[derive(Clone, Debug)]
struct PairTable {
    /// `(left << 32 | right, rank << 32 | result)`, key `EMPTY` for a free
    /// slot: key and value side by side cost one cache miss per probe.
    slots: Vec<(u64, u64)>,
    shift: u32,
}

const EMPTY: u64 = u64::MAX;

impl PairTable {
    fn with_capacity(n: usize) -> Self {
        let slots = (n * 2).next_power_of_two().max(16);
        Self {
            slots: vec![(EMPTY, 0); slots],
            shift: 64 - slots.trailing_zeros(),
        }
    }

    fn slot(&self, key: u64) -> usize {
        // Fibonacci hashing: the top bits of the product.
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Insert unless the pair is there already (llama.cpp keeps the first
    /// rank of a pair listed twice).
    fn insert(&mut self, left: u32, right: u32, rank: u32, result: u32) {
        let key = u64::from(left) << 32 | u64::from(right);
        let mask = self.slots.len() - 1;
        let mut i = self.slot(key);
        loop {
            match self.slots[i].0 {
                k if k == key => return,
                EMPTY => {
                    self.slots[i] = (key, u64::from(rank) << 32 | u64::from(result));
                    return;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// `(rank, result)` of the pair.
    fn get(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        let key = u64::from(left) << 32 | u64::from(right);
        let mask = self.slots.len() - 1;
        let mut i = self.slot(key);
        loop {
            let (k, v) = self.slots[i];
            if k == key {
                return Some(((v >> 32) as u32, v as u32));
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

/// The parsed merges and byte symbols of a byte-level BPE vocabulary.
#[derive(Clone, Debug)]
pub(crate) struct BpeTables {
    pub(crate) pre: PreTokenizer,
    /// Symbol id of each byte's character: its token, an id past the
    /// vocabulary if only merges name it, `NONE` if nothing does.
    byte_ids: [u32; 256],
    pairs: PairTable,
    n_vocab: u32,
}

/// Split a merge entry where llama.cpp does: at the first space after its
/// first byte.
fn split_merge(index: usize, merge: &str) -> Result<(&str, &str), TokenizerError> {
    let bad = |reason| TokenizerError::BadMerge {
        index,
        merge: merge.to_owned(),
        reason,
    };
    let at = merge
        .as_bytes()
        .iter()
        .skip(1)
        .position(|&b| b == b' ')
        .ok_or_else(|| bad("expected two pieces separated by a space"))?
        + 1;
    let (left, right) = (&merge[..at], &merge[at + 1..]);
    if right.is_empty() {
        return Err(bad("the right piece is empty"));
    }
    Ok((left, right))
}

impl BpeTables {
    /// Parse `merges` (rank = position) against the vocabulary.
    pub(crate) fn new(
        pieces: &Pieces,
        types: &[TokenType],
        merges: &[&str],
        pre: PreTokenizer,
    ) -> Result<Self, TokenizerError> {
        let n_vocab = pieces.len() as u32;
        // Ids stay below NONE: at most 2^31 tokens and 3 strings per merge.
        if merges.len() >= (1 << 29) {
            return Err(TokenizerError::BadKey {
                key: "tokenizer.ggml.merges",
                reason: format!("{} merges are more than kiln supports", merges.len()),
            });
        }
        // Strings merges name that are no tokens (none in a well-formed
        // vocabulary, so this stays empty).
        let mut extra: HashMap<String, u32> = HashMap::new();
        let mut id_of = |s: &str| -> u32 {
            if let Some(id) = pieces.get(s.as_bytes()) {
                return id;
            }
            let next = n_vocab + extra.len() as u32;
            *extra.entry(s.to_owned()).or_insert(next)
        };
        let mut pairs = PairTable::with_capacity(merges.len());
        let mut joined = String::new();
        for (rank, merge) in merges.iter().enumerate() {
            let (left, right) = split_merge(rank, merge)?;
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let (l, r, result) = (id_of(left), id_of(right), id_of(&joined));
            if result < n_vocab && types[result as usize].is_special_only() {
                continue;
            }
            pairs.insert(l, r, rank as u32, result);
        }
        let mut byte_ids = [NONE; 256];
        let mut buf = [0u8; 4];
        for (b, id) in byte_ids.iter_mut().enumerate() {
            let s = byte_char(b as u8).encode_utf8(&mut buf);
            *id = pieces
                .get(s.as_bytes())
                .or_else(|| extra.get(&*s).copied())
                .unwrap_or(NONE);
        }
        Ok(Self {
            pre,
            byte_ids,
            pairs,
            n_vocab,
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Symbol {
    id: u32,
    /// Byte range in the word.
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

/// A candidate merge of symbol `left` with its right neighbour `right`.
#[derive(Clone, Copy, Debug)]
struct Bigram {
    rank: u32,
    left: u32,
    right: u32,
    /// Lengths of both symbols when queued: a change means a stale entry.
    left_len: u32,
    right_len: u32,
    result: u32,
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
    /// Max-heap order: lowest rank first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Words of at most this many bytes merge in [`BpeModel::merge_small`].
const SMALL_WORD: usize = 48;

/// A symbol of a short word and the merge of it with the next one.
#[derive(Clone, Copy, Debug)]
struct Small {
    id: u32,
    len: u32,
    rank: u32,
    result: u32,
}

/// Reusable buffers of the BPE step.
#[derive(Debug, Default)]
pub(crate) struct BpeScratch {
    pre: PreScratch,
    word: WordScratch,
}

#[derive(Debug, Default)]
struct WordScratch {
    /// A word in byte-to-unicode form, for whole-word lookups.
    mapped: String,
    small: Vec<Small>,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
}

pub(crate) struct BpeModel<'t> {
    pub(crate) tables: &'t BpeTables,
    pub(crate) pieces: &'t Pieces,
    pub(crate) types: &'t [TokenType],
}

impl BpeModel<'_> {
    /// Tokenize `text` (one raw-text fragment) and append the ids to `out`.
    pub(crate) fn tokenize(&self, text: &str, s: &mut BpeScratch, out: &mut Vec<u32>) {
        self.tables.pre.split(text, &mut s.pre);
        let bytes = text.as_bytes();
        let mut start = 0;
        for &end in &s.pre.ends {
            let word = &bytes[start..end as usize];
            start = end as usize;
            self.word(word, &mut s.word, out);
        }
    }

    fn is_text_token(&self, id: u32) -> bool {
        id < self.tables.n_vocab && !self.types[id as usize].is_special_only()
    }

    fn word(&self, word: &[u8], s: &mut WordScratch, out: &mut Vec<u32>) {
        if self.tables.pre.ignore_merges() {
            s.mapped.clear();
            s.mapped.extend(word.iter().map(|&b| byte_char(b)));
            if let Some(id) = self.pieces.get(s.mapped.as_bytes())
                && !self.types[id as usize].is_special_only()
            {
                out.push(id);
                return;
            }
        }
        if word.len() <= SMALL_WORD {
            self.merge_small(word, &mut s.small, out);
        } else {
            self.merge_heap(word, &mut s.symbols, &mut s.queue, out);
        }
    }

    /// Append symbol `id` covering `bytes` of the word.
    fn emit(&self, id: u32, bytes: &[u8], out: &mut Vec<u32>) {
        if self.is_text_token(id) {
            out.push(id);
            return;
        }
        // llama.cpp looks up each byte of the piece's text alone: only the
        // characters of printable ASCII bytes are one byte.
        for &b in bytes {
            let id = self.tables.byte_ids[b as usize];
            if (0x21..=0x7E).contains(&b) && id < self.tables.n_vocab {
                out.push(id);
            }
        }
    }

    /// The merge of the pair `(left, right)`: `(rank, result)`, rank
    /// `NONE` if there is none.
    fn pair(&self, left: u32, right: u32) -> (u32, u32) {
        self.tables.pairs.get(left, right).unwrap_or((NONE, NONE))
    }

    /// Short words (nearly all): the symbols in a small array, each step
    /// merging the pair of lowest rank, leftmost first, found by a scan.
    /// Same result as the queue, without its cost per merge.
    fn merge_small(&self, word: &[u8], syms: &mut Vec<Small>, out: &mut Vec<u32>) {
        syms.clear();
        syms.extend(word.iter().map(|&b| Small {
            id: self.tables.byte_ids[b as usize],
            len: 1,
            rank: NONE,
            result: NONE,
        }));
        for i in 1..syms.len() {
            (syms[i - 1].rank, syms[i - 1].result) = self.pair(syms[i - 1].id, syms[i].id);
        }
        loop {
            let mut best = NONE;
            let mut at = 0;
            for (i, sym) in syms.iter().enumerate() {
                if sym.rank < best {
                    best = sym.rank;
                    at = i;
                }
            }
            if best == NONE {
                break;
            }
            let right = syms.remove(at + 1);
            let sym = &mut syms[at];
            sym.id = sym.result;
            sym.len += right.len;
            (sym.rank, sym.result) = (right.rank, right.result);
            if at + 1 < syms.len() {
                (syms[at].rank, syms[at].result) = self.pair(syms[at].id, syms[at + 1].id);
            }
            if at > 0 {
                (syms[at - 1].rank, syms[at - 1].result) = self.pair(syms[at - 1].id, syms[at].id);
            }
        }
        let mut start = 0;
        for sym in syms.iter() {
            let end = start + sym.len as usize;
            self.emit(sym.id, &word[start..end], out);
            start = end;
        }
    }

    /// Long words: llama.cpp's linked symbols and a priority queue of
    /// candidate pairs, stale entries skipped when popped.
    fn merge_heap(
        &self,
        word: &[u8],
        symbols: &mut Vec<Symbol>,
        queue: &mut BinaryHeap<Bigram>,
        out: &mut Vec<u32>,
    ) {
        symbols.clear();
        queue.clear();
        let n = word.len() as u32;
        for (i, &b) in word.iter().enumerate() {
            let i = i as u32;
            symbols.push(Symbol {
                id: self.tables.byte_ids[b as usize],
                start: i,
                len: 1,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
            });
        }
        for i in 1..n {
            self.try_add(symbols, queue, i - 1, i);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left as usize], symbols[b.right as usize]);
            if l.len != b.left_len || r.len != b.right_len {
                continue;
            }
            let left = &mut symbols[b.left as usize];
            left.id = b.result;
            left.len += r.len;
            left.next = r.next;
            symbols[b.right as usize].len = 0;
            if r.next != NONE {
                symbols[r.next as usize].prev = b.left;
            }
            self.try_add(symbols, queue, l.prev, b.left);
            self.try_add(symbols, queue, b.left, r.next);
        }
        let mut i = if n == 0 { NONE } else { 0 };
        while i != NONE {
            let sym = symbols[i as usize];
            let range = sym.start as usize..(sym.start + sym.len) as usize;
            self.emit(sym.id, &word[range], out);
            i = sym.next;
        }
    }

    fn try_add(&self, symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: u32, right: u32) {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        if let Some((rank, result)) = self.tables.pairs.get(l.id, r.id) {
            queue.push(Bigram {
                rank,
                left,
                right,
                left_len: l.len,
                right_len: r.len,
                result,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_words_merge_alike() {
        // Bytes a, b, c; pieces ab, bc, abc, cc, ccc; ranks favour bc.
        let mut toks: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
        toks.extend(["ab", "bc", "abc", "cc", "ccc", "abcc"].map(String::from));
        let refs: Vec<&str> = toks.iter().map(String::as_str).collect();
        let pieces = Pieces::new(&refs);
        let types = vec![TokenType::Normal; refs.len()];
        let merges = ["b c", "a b", "c c", "a bc", "cc c", "ab c", "abc c", "x y"];
        let tables = BpeTables::new(&pieces, &types, &merges, PreTokenizer::Gpt2).unwrap();
        let model = BpeModel {
            tables: &tables,
            pieces: &pieces,
            types: &types,
        };
        let mut s = WordScratch::default();
        let mut seed = 7u64;
        for len in 0..80 {
            let word: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    b"abcxy"[(seed >> 33) as usize % 5]
                })
                .collect();
            let (mut small, mut heap) = (Vec::new(), Vec::new());
            model.merge_small(&word, &mut s.small, &mut small);
            model.merge_heap(&word, &mut s.symbols, &mut s.queue, &mut heap);
            assert_eq!(small, heap, "{:?}", String::from_utf8_lossy(&word));
        }
    }

    #[test]
    fn byte_to_unicode_is_gpt2s() {
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(0), '\u{100}');
        assert_eq!(byte_char(0x7F), '\u{121}');
        assert_eq!(byte_char(0xAD), '\u{143}');
        assert_eq!(byte_char(0xE9), 'é');
        for b in 0..=255u8 {
            assert_eq!(char_byte(byte_char(b)), Some(b));
        }
        assert_eq!(char_byte('\u{144}'), None);
        assert_eq!(char_byte('€'), None);
        let distinct: std::collections::HashSet<char> = (0..=255u8).map(byte_char).collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn merge_entries_split_at_the_first_space_after_one_byte() {
        assert_eq!(split_merge(0, "Ġ t").unwrap(), ("Ġ", "t"));
        assert_eq!(split_merge(0, "a b c").unwrap(), ("a", "b c"));
        for bad in ["", "ab", " a", "a "] {
            assert!(
                matches!(
                    split_merge(3, bad),
                    Err(TokenizerError::BadMerge { index: 3, .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pair_table_keeps_the_first_rank() {
        let mut t = PairTable::with_capacity(3);
        t.insert(1, 2, 0, 10);
        t.insert(2, 1, 1, 11);
        t.insert(1, 2, 5, 12);
        assert_eq!(t.get(1, 2), Some((0, 10)));
        assert_eq!(t.get(2, 1), Some((1, 11)));
        assert_eq!(t.get(2, 2), None);
    }
}
