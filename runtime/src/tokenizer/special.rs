//! Special-token partitioning: cut text into raw-text fragments and special
//! tokens before the model's algorithm sees it.
//!
//! Semantics follow llama.cpp's `tokenizer_st_partition`: special tokens are
//! taken one at a time, longest text first, and each splits every remaining
//! raw-text fragment at all of its (non-overlapping, left to right)
//! occurrences. User-defined tokens are always matched; control and unknown
//! tokens only when `parse_special` is on. Ties in length go to the lower id
//! (llama.cpp's sort is unstable there; no tie can overlap in Gemma's
//! vocabulary).
//!
//! llama.cpp searches the text once per special token (6,400 of them in
//! Gemma with `parse_special`). Here one walk of a byte trie over the text
//! first marks which special tokens occur at all (a bitset by priority);
//! only those few then split the fragments, in priority order, exactly as
//! llama.cpp does. Memory stays proportional to the number of fragments,
//! whatever the text (a megabyte of spaces matches 30 space-run tokens at
//! every position).

use super::vocab::TokenType;

const NO_TOKEN: u32 = u32::MAX;

/// One piece of partitioned text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Raw text `start..end` (byte offsets into the input).
    Text(u32, u32),
    /// A special token matched in the text.
    Token(u32),
}

#[derive(Clone, Copy, Debug)]
struct Node {
    /// Edges of this node: `edges[first..first + len]`, sorted by byte.
    first: u32,
    len: u32,
    /// Token ending here, or `NO_TOKEN`.
    token: u32,
    /// Priority of that token (0 = first), longest text first.
    rank: u32,
    /// Whether it is matched without `parse_special` (user-defined).
    always: bool,
}

/// A byte trie over the texts of special tokens.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpecialTokens {
    nodes: Vec<Node>,
    edges: Vec<(u8, u32)>,
    /// Special token ids by priority (rank).
    by_rank: Vec<u32>,
    /// Number of tokens matched without `parse_special`.
    n_always: usize,
    /// Number of tokens matched with `parse_special`.
    n_all: usize,
}

/// Reusable buffers of the partition step.
#[derive(Debug, Default)]
pub(crate) struct PartitionScratch {
    /// Bit `rank` set: the special token of that priority occurs in the text.
    present: Vec<u64>,
    next: Vec<Fragment>,
    pub(crate) fragments: Vec<Fragment>,
}

impl SpecialTokens {
    /// Build the trie over the non-empty pieces of user-defined, control and
    /// unknown tokens.
    pub(crate) fn new(pieces: &super::pieces::Pieces, types: &[TokenType]) -> Self {
        let mut special: Vec<u32> = (0..pieces.len() as u32)
            .filter(|&id| {
                matches!(
                    types[id as usize],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                ) && !pieces.piece_bytes(id).is_empty()
            })
            .collect();
        special.sort_by_key(|&id| (std::cmp::Reverse(pieces.piece_bytes(id).len()), id));

        // Build with per-node child lists, then flatten.
        let mut children: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        let mut terminal: Vec<(u32, u32, bool)> = vec![(NO_TOKEN, 0, false)];
        let mut n_always = 0;
        for (rank, &id) in special.iter().enumerate() {
            let always = types[id as usize] == TokenType::UserDefined;
            n_always += usize::from(always);
            let mut node = 0usize;
            for &b in pieces.piece_bytes(id) {
                node = match children[node].iter().find(|e| e.0 == b) {
                    Some(&(_, child)) => child as usize,
                    None => {
                        let child = children.len();
                        children.push(Vec::new());
                        terminal.push((NO_TOKEN, 0, false));
                        children[node].push((b, child as u32));
                        child
                    }
                };
            }
            // A duplicate text keeps its first (best-ranked) token.
            if terminal[node].0 == NO_TOKEN {
                terminal[node] = (id, rank as u32, always);
            }
        }
        let mut nodes = Vec::with_capacity(children.len());
        let mut edges = Vec::with_capacity(children.len());
        for (kids, &(token, rank, always)) in children.iter_mut().zip(&terminal) {
            kids.sort_unstable_by_key(|e| e.0);
            nodes.push(Node {
                first: edges.len() as u32,
                len: kids.len() as u32,
                token,
                rank,
                always,
            });
            edges.extend_from_slice(kids);
        }
        Self {
            nodes,
            edges,
            n_always,
            n_all: special.len(),
            by_rank: special,
        }
    }

    fn child(&self, node: usize, b: u8) -> Option<usize> {
        let n = &self.nodes[node];
        let edges = &self.edges[n.first as usize..(n.first + n.len) as usize];
        edges
            .binary_search_by_key(&b, |e| e.0)
            .ok()
            .map(|i| edges[i].1 as usize)
    }

    /// Cut `text` into fragments (left in `scratch.fragments`).
    pub(crate) fn partition(
        &self,
        pieces: &super::pieces::Pieces,
        text: &str,
        parse_special: bool,
        scratch: &mut PartitionScratch,
    ) {
        let bytes = text.as_bytes();
        scratch.fragments.clear();
        if bytes.is_empty() {
            return;
        }
        scratch
            .fragments
            .push(Fragment::Text(0, bytes.len() as u32));
        let active = if parse_special {
            self.n_all
        } else {
            self.n_always
        };
        if active == 0 {
            return;
        }

        // Which active special tokens occur anywhere in the text.
        scratch.present.clear();
        scratch.present.resize(self.n_all.div_ceil(64), 0);
        let mut any = false;
        for pos in 0..bytes.len() {
            let mut node = 0usize;
            for &b in &bytes[pos..] {
                let Some(next) = self.child(node, b) else {
                    break;
                };
                node = next;
                let n = self.nodes[node];
                if n.token != NO_TOKEN && (n.always || parse_special) {
                    scratch.present[n.rank as usize / 64] |= 1 << (n.rank % 64);
                    any = true;
                }
            }
        }
        if !any {
            return;
        }

        // llama.cpp's splitting, for the tokens present, in priority order.
        for word in 0..scratch.present.len() {
            let mut bits = scratch.present[word];
            while bits != 0 {
                let rank = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let id = self.by_rank[rank];
                split_at(
                    bytes,
                    pieces.piece_bytes(id),
                    id,
                    &scratch.fragments,
                    &mut scratch.next,
                );
                std::mem::swap(&mut scratch.fragments, &mut scratch.next);
            }
        }
    }
}

/// Split every text fragment of `from` at each non-overlapping occurrence of
/// `needle` (left to right), writing the result to `to`.
fn split_at(text: &[u8], needle: &[u8], id: u32, from: &[Fragment], to: &mut Vec<Fragment>) {
    to.clear();
    for &f in from {
        let Fragment::Text(start, end) = f else {
            to.push(f);
            continue;
        };
        let mut at = start as usize;
        let end = end as usize;
        while let Some(i) = find(&text[at..end], needle) {
            let m = at + i;
            if m > at {
                to.push(Fragment::Text(at as u32, m as u32));
            }
            to.push(Fragment::Token(id));
            at = m + needle.len();
        }
        if at < end {
            to.push(Fragment::Text(at as u32, end as u32));
        }
    }
}

/// First occurrence of `needle` (non-empty) in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while from + needle.len() <= hay.len() {
        let i = from
            + hay[from..=hay.len() - needle.len()]
                .iter()
                .position(|&b| b == first)?;
        if &hay[i + 1..i + needle.len()] == rest {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::pieces::Pieces;

    fn build(tokens: &[(&str, TokenType)]) -> (SpecialTokens, Pieces) {
        let texts: Vec<&str> = tokens.iter().map(|t| t.0).collect();
        let types: Vec<TokenType> = tokens.iter().map(|t| t.1).collect();
        let pieces = Pieces::new(&texts);
        (SpecialTokens::new(&pieces, &types), pieces)
    }

    fn run(st: &(SpecialTokens, Pieces), text: &str, parse: bool) -> Vec<Fragment> {
        let mut s = PartitionScratch::default();
        st.0.partition(&st.1, text, parse, &mut s);
        s.fragments
    }

    use Fragment::{Text, Token};
    use TokenType::{Control, Normal, UserDefined};

    #[test]
    fn control_tokens_only_with_parse_special() {
        let st = build(&[("a", Normal), ("<bos>", Control), ("<b>", UserDefined)]);
        assert_eq!(run(&st, "x<bos>y", false), vec![Text(0, 7)]);
        assert_eq!(
            run(&st, "x<bos>y", true),
            vec![Text(0, 1), Token(1), Text(6, 7)]
        );
        assert_eq!(
            run(&st, "<b>x<b>", false),
            vec![Token(2), Text(3, 4), Token(2)]
        );
    }

    #[test]
    fn longer_token_wins_even_when_it_starts_later() {
        // llama.cpp processes "bcd" before "ab": "ab" at 0 overlaps "bcd" at 1.
        let st = build(&[("ab", UserDefined), ("bcd", UserDefined)]);
        assert_eq!(run(&st, "abcd", false), vec![Text(0, 1), Token(1)]);
        assert_eq!(
            run(&st, "ab bcd", false),
            vec![Token(0), Text(2, 3), Token(1)]
        );
    }

    #[test]
    fn runs_split_longest_first_left_to_right() {
        let st = build(&[("  ", UserDefined), ("   ", UserDefined)]);
        // 7 spaces: "   " twice from the left, then one space of text.
        assert_eq!(
            run(&st, "       ", false),
            vec![Token(1), Token(1), Text(6, 7)]
        );
        // 5 spaces: "   " then "  ".
        assert_eq!(
            run(&st, "x     ", false),
            vec![Text(0, 1), Token(1), Token(0)]
        );
    }

    #[test]
    fn find_is_a_substring_search() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"aaa", b"aa"), Some(0));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"", b"a"), None);
    }

    #[test]
    fn empty_and_plain_text() {
        let st = build(&[("<b>", UserDefined)]);
        assert_eq!(run(&st, "", false), vec![]);
        assert_eq!(run(&st, "plain", false), vec![Text(0, 5)]);
    }
}
