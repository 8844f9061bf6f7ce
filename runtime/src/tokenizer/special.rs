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
//! Instead of llama.cpp's repeated string search per special token (6,400 of
//! them in Gemma), one walk of a byte trie at every text position lists all
//! occurrences of all special tokens, and the sequential rule above is then
//! replayed on that list: sorted by (priority, position), an occurrence is
//! taken when it starts after the same token's previous match and covers
//! only bytes that no earlier-priority token took. That is exactly the
//! fragment structure llama.cpp builds.

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
    /// Number of tokens matched without `parse_special`.
    n_always: usize,
    /// Number of tokens matched with `parse_special`.
    n_all: usize,
}

/// One occurrence of a special token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Occurrence {
    rank: u32,
    pos: u32,
    len: u32,
    token: u32,
}

/// Reusable buffers of the partition step.
#[derive(Debug, Default)]
pub(crate) struct PartitionScratch {
    occurrences: Vec<Occurrence>,
    taken: Vec<bool>,
    accepted: Vec<Occurrence>,
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
        text: &str,
        parse_special: bool,
        scratch: &mut PartitionScratch,
    ) {
        let bytes = text.as_bytes();
        scratch.fragments.clear();
        if bytes.is_empty() {
            return;
        }
        let active = if parse_special {
            self.n_all
        } else {
            self.n_always
        };
        if active == 0 {
            scratch
                .fragments
                .push(Fragment::Text(0, bytes.len() as u32));
            return;
        }

        // Every occurrence of every active special token.
        scratch.occurrences.clear();
        for pos in 0..bytes.len() {
            let mut node = 0usize;
            for (depth, &b) in bytes[pos..].iter().enumerate() {
                let Some(next) = self.child(node, b) else {
                    break;
                };
                node = next;
                let n = self.nodes[node];
                if n.token != NO_TOKEN && (n.always || parse_special) {
                    scratch.occurrences.push(Occurrence {
                        rank: n.rank,
                        pos: pos as u32,
                        len: depth as u32 + 1,
                        token: n.token,
                    });
                }
            }
        }
        if scratch.occurrences.is_empty() {
            scratch
                .fragments
                .push(Fragment::Text(0, bytes.len() as u32));
            return;
        }

        // Replay llama.cpp's token-by-token splitting.
        scratch
            .occurrences
            .sort_unstable_by_key(|o| (o.rank, o.pos));
        scratch.taken.clear();
        scratch.taken.resize(bytes.len(), false);
        scratch.accepted.clear();
        let mut current = u32::MAX;
        let mut resume = 0u32;
        for o in &scratch.occurrences {
            if o.rank != current {
                current = o.rank;
                resume = 0;
            }
            let span = o.pos as usize..(o.pos + o.len) as usize;
            if o.pos < resume || scratch.taken[span.clone()].iter().any(|&t| t) {
                continue;
            }
            scratch.taken[span].fill(true);
            resume = o.pos + o.len;
            scratch.accepted.push(*o);
        }
        scratch.accepted.sort_unstable_by_key(|o| o.pos);

        let mut at = 0u32;
        for o in &scratch.accepted {
            if o.pos > at {
                scratch.fragments.push(Fragment::Text(at, o.pos));
            }
            scratch.fragments.push(Fragment::Token(o.token));
            at = o.pos + o.len;
        }
        if (at as usize) < bytes.len() {
            scratch
                .fragments
                .push(Fragment::Text(at, bytes.len() as u32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::pieces::Pieces;

    fn build(tokens: &[(&str, TokenType)]) -> SpecialTokens {
        let texts: Vec<&str> = tokens.iter().map(|t| t.0).collect();
        let types: Vec<TokenType> = tokens.iter().map(|t| t.1).collect();
        SpecialTokens::new(&Pieces::new(&texts), &types)
    }

    fn run(st: &SpecialTokens, text: &str, parse: bool) -> Vec<Fragment> {
        let mut s = PartitionScratch::default();
        st.partition(text, parse, &mut s);
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
    fn empty_and_plain_text() {
        let st = build(&[("<b>", UserDefined)]);
        assert_eq!(run(&st, "", false), vec![]);
        assert_eq!(run(&st, "plain", false), vec![Text(0, 5)]);
    }
}
