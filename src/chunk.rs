//! Chunked embedding of long documents: one vector per chunk, with the
//! chunk's span in the text.
//!
//! A document is cut into units (a word with the whitespace before it, also
//! cut at every caller-given span edge), each tokenized alone, so that every
//! token belongs to one known stretch of text. Chunks are runs of whole
//! units: by token budget with overlap (moved back to a sentence or line end
//! where asked), or the caller's character spans.
//!
//! [`ChunkMode::Naive`] embeds each chunk's text alone. [`ChunkMode::Late`]
//! (late chunking) runs the whole document through the encoder once and
//! pools each chunk from the token states of its span, so every chunk's
//! vector has seen its neighbours. A document longer than the model's
//! context runs in overlapping macro-windows; each chunk is pooled in the
//! window where it has the most context on its shorter side.

use std::ops::Range;

use crate::{CallOptions, Embedder, Error};

/// How chunks are pooled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChunkMode {
    /// Each chunk's text embedded alone.
    Naive,
    /// The document encoded once (per macro-window), each chunk pooled from
    /// its tokens' states.
    #[default]
    Late,
}

/// Where a token-budget cut may move back to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Boundary {
    /// Anywhere between words.
    #[default]
    Word,
    /// After a sentence end (`.`, `!`, `?`, `。`) or a line end.
    Sentence,
    /// After a line end.
    Line,
}

/// How a document is cut.
#[derive(Clone, Debug)]
pub struct ChunkOptions {
    /// Largest chunk in tokens (without special tokens or prompt).
    pub size: usize,
    /// Tokens shared by consecutive chunks (less than `size`).
    pub overlap: usize,
    /// Where a cut may fall.
    pub boundary: Boundary,
    /// Chunks given by the caller as character ranges (Unicode scalar
    /// values, as Python's `str` counts) instead of a token budget.
    pub spans: Option<Vec<Range<usize>>>,
    /// Naive or late chunking.
    pub mode: ChunkMode,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            size: 256,
            overlap: 32,
            boundary: Boundary::Word,
            spans: None,
            mode: ChunkMode::Late,
        }
    }
}

/// One chunk's vector and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    /// Characters of the document (Unicode scalar values, end exclusive).
    pub chars: Range<usize>,
    /// The chunk's text tokens, counted over the document's text tokens.
    pub tokens: Range<usize>,
    /// Late chunking: the document tokens (same counting) encoded together
    /// when this chunk was pooled. Naive: the chunk's own tokens.
    pub window: Range<usize>,
    /// The vector, finished as the call asks (width, normalization).
    pub embedding: Vec<f32>,
}

/// A word with the whitespace before it: bytes and characters of the text.
#[derive(Clone, Debug)]
struct Unit {
    bytes: Range<usize>,
    chars: Range<usize>,
}

/// Cuts `text` into units, also at every character offset in `cuts`.
fn units(text: &str, cuts: &[usize]) -> Vec<Unit> {
    let mut out = Vec::new();
    let mut start = (0usize, 0usize);
    let mut seen_word = false;
    let mut cut_iter = {
        let mut c: Vec<usize> = cuts.to_vec();
        c.sort_unstable();
        c.dedup();
        c.into_iter().peekable()
    };
    let mut n_chars = 0;
    for (ci, (bi, ch)) in text.char_indices().enumerate() {
        let forced = cut_iter.peek() == Some(&ci);
        while cut_iter.peek().is_some_and(|&c| c <= ci) {
            cut_iter.next();
        }
        let boundary = forced || (ch.is_whitespace() && seen_word);
        if boundary && ci > start.1 {
            out.push(Unit {
                bytes: start.0..bi,
                chars: start.1..ci,
            });
            start = (bi, ci);
            seen_word = false;
        }
        if !ch.is_whitespace() {
            seen_word = true;
        }
        n_chars = ci + 1;
    }
    if n_chars > start.1 {
        out.push(Unit {
            bytes: start.0..text.len(),
            chars: start.1..n_chars,
        });
    }
    out
}

/// Whether a cut after `unit` (followed by `next`) meets `boundary`.
fn ends_at(text: &str, unit: &Unit, next: Option<&Unit>, boundary: Boundary) -> bool {
    let line = next.is_some_and(|n| {
        text[n.bytes.clone()]
            .chars()
            .take_while(|c| c.is_whitespace())
            .any(|c| c == '\n')
    }) || next.is_none();
    match boundary {
        Boundary::Word => true,
        Boundary::Line => line,
        Boundary::Sentence => {
            line || text[unit.bytes.clone()]
                .trim_end()
                .ends_with(['.', '!', '?', '。', '！', '？'])
        }
    }
}

/// Chunks as unit ranges by token budget: at most `size` tokens each (a
/// single longer unit alone), consecutive ones sharing up to `overlap`.
fn budget_chunks(
    text: &str,
    units: &[Unit],
    counts: &[usize],
    size: usize,
    overlap: usize,
    boundary: Boundary,
) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let mut j = i;
        let mut tokens = 0;
        while j < units.len() && (j == i || tokens + counts[j] <= size) {
            tokens += counts[j];
            j += 1;
        }
        // Move the end back to a boundary if one lies in the chunk's
        // second half.
        if j < units.len() && boundary != Boundary::Word {
            let half = i + (j - i) / 2;
            if let Some(e) = (half..j)
                .rev()
                .find(|&e| ends_at(text, &units[e], units.get(e + 1), boundary))
            {
                j = e + 1;
            }
        }
        out.push(i..j);
        if j >= units.len() {
            break;
        }
        // The next chunk starts so that it shares at most `overlap` tokens.
        let mut k = j;
        let mut shared = 0;
        while k > i + 1 && shared + counts[k - 1] <= overlap {
            shared += counts[k - 1];
            k -= 1;
        }
        i = k;
    }
    out
}

/// A chunk's characters without the whitespace that opens or closes it.
fn trimmed_chars(text: &str, units: &[Unit], r: &Range<usize>) -> Range<usize> {
    let piece = &text[units[r.start].bytes.start..units[r.end - 1].bytes.end];
    let lead = piece.chars().take_while(|c| c.is_whitespace()).count();
    let trail = piece
        .chars()
        .rev()
        .take_while(|c| c.is_whitespace())
        .count();
    let (start, end) = (units[r.start].chars.start, units[r.end - 1].chars.end);
    (start + lead).min(end)..end.saturating_sub(trail).max((start + lead).min(end))
}

impl Embedder {
    /// Embeds a long document as chunks: one vector per chunk, with its
    /// character span. Late chunking never fails for length: a document
    /// longer than the context runs in overlapping windows; naive chunks
    /// longer than the context are truncated. `call` sets the prompt
    /// (applied once, before the document), width and normalization.
    pub fn embed_chunks(
        &self,
        text: &str,
        opts: &ChunkOptions,
        call: &CallOptions,
    ) -> Result<Vec<Chunk>, Error> {
        let n_chars = text.chars().count();
        if let Some(spans) = &opts.spans
            && let Some(bad) = spans.iter().find(|s| s.start >= s.end || s.end > n_chars)
        {
            return Err(Error::BadChunkSpan {
                start: bad.start,
                end: bad.end,
                n_chars,
            });
        }
        if opts.spans.is_none() && (opts.size == 0 || opts.overlap >= opts.size) {
            return Err(Error::BadChunking {
                size: opts.size,
                overlap: opts.overlap,
            });
        }
        let cuts: Vec<usize> = opts
            .spans
            .iter()
            .flatten()
            .flat_map(|s| [s.start, s.end])
            .collect();
        let units = units(text, &cuts);
        if units.is_empty() {
            return Err(Error::Empty);
        }
        let plain = CallOptions {
            add_special: Some(false),
            task: None,
            prompt: Some(String::new()),
            truncate: Some(false),
            max_tokens: None,
            ..call.clone()
        };
        // The prompt's trailing whitespace belongs to the first unit, so
        // that the document's tokens are those of prompt and text together.
        let prompt = self.prompt_of(call)?.unwrap_or("");
        let prompt_head = prompt.trim_end();
        let prompt_space = &prompt[prompt_head.len()..];
        let unit_ids: Vec<Vec<u32>> = units
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let piece = &text[u.bytes.clone()];
                if i == 0 && !prompt_space.is_empty() {
                    self.tokenize_unlimited(&format!("{prompt_space}{piece}"), &plain)
                } else {
                    self.tokenize_unlimited(piece, &plain)
                }
            })
            .map(|r| match r {
                Err(Error::Empty) => Ok(Vec::new()),
                r => r,
            })
            .collect::<Result<_, _>>()?;
        let counts: Vec<usize> = unit_ids.iter().map(Vec::len).collect();
        let mut first_token = Vec::with_capacity(units.len() + 1);
        let mut acc = 0;
        for c in &counts {
            first_token.push(acc);
            acc += c;
        }
        first_token.push(acc);
        let chunk_units: Vec<Range<usize>> = match &opts.spans {
            None => budget_chunks(
                text,
                &units,
                &counts,
                opts.size,
                opts.overlap,
                opts.boundary,
            ),
            Some(spans) => spans
                .iter()
                .map(|s| {
                    let a = units.partition_point(|u| u.chars.start < s.start);
                    let b = units.partition_point(|u| u.chars.start < s.end);
                    a..b.max(a + 1).min(units.len())
                })
                .collect(),
        };
        let chars: Vec<Range<usize>> = match &opts.spans {
            None => chunk_units
                .iter()
                .map(|r| trimmed_chars(text, &units, r))
                .collect(),
            Some(spans) => spans.clone(),
        };
        let tokens: Vec<Range<usize>> = chunk_units
            .iter()
            .map(|r| first_token[r.start]..first_token[r.end])
            .collect();
        match opts.mode {
            ChunkMode::Naive => {
                let texts: Vec<&str> = chunk_units
                    .iter()
                    .map(|r| text[units[r.start].bytes.start..units[r.end - 1].bytes.end].trim())
                    .collect();
                let cut = CallOptions {
                    truncate: Some(true),
                    ..call.clone()
                };
                let vectors = self.embed_batch_with(&texts, &cut)?;
                Ok(chars
                    .into_iter()
                    .zip(tokens)
                    .zip(vectors)
                    .map(|((chars, tokens), embedding)| Chunk {
                        chars,
                        window: tokens.clone(),
                        tokens,
                        embedding,
                    })
                    .collect())
            }
            ChunkMode::Late => {
                let body: Vec<u32> = unit_ids.concat();
                let framed = CallOptions {
                    prompt: Some(prompt_head.to_owned()),
                    ..call.clone()
                };
                self.late(&body, &tokens, chars, &framed)
            }
        }
    }

    /// Late chunking of `body` (the document's text tokens) into `chunks`
    /// (token ranges of `body`), in macro-windows when it is too long.
    fn late(
        &self,
        body: &[u32],
        chunks: &[Range<usize>],
        chars: Vec<Range<usize>>,
        call: &CallOptions,
    ) -> Result<Vec<Chunk>, Error> {
        // The prompt and special tokens around the body, as for a text.
        let frame = self.tokenize_unlimited(
            "",
            &CallOptions {
                truncate: Some(false),
                max_tokens: None,
                ..call.clone()
            },
        );
        let frame = match frame {
            Ok(f) => f,
            Err(Error::Empty) => Vec::new(),
            Err(e) => return Err(e),
        };
        let end = self.tokenizer().end_token();
        let (head, tail) = match frame.last() {
            Some(&last) if Some(last) == end => {
                (&frame[..frame.len() - 1], &frame[frame.len() - 1..])
            }
            _ => (&frame[..], &frame[..0]),
        };
        let limit = call.max_tokens.unwrap_or(usize::MAX).min(self.max_tokens());
        let cap = limit.saturating_sub(head.len() + tail.len()).max(1);
        let windows = windows(body.len(), cap, chunks);
        // Each chunk goes to the window where its shorter side of context
        // is longest.
        let mut by_window: Vec<Vec<usize>> = vec![Vec::new(); windows.len()];
        let mut home = vec![0; chunks.len()];
        for (c, r) in chunks.iter().enumerate() {
            let score = |w: &Range<usize>| {
                let inside = r.start >= w.start && r.end <= w.end;
                let context = r
                    .start
                    .saturating_sub(w.start)
                    .min(w.end.saturating_sub(r.end));
                (inside, context)
            };
            let best = (0..windows.len())
                .max_by_key(|&i| score(&windows[i]))
                .unwrap_or(0);
            by_window[best].push(c);
            home[c] = best;
        }
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; chunks.len()];
        for (wi, members) in by_window.iter().enumerate() {
            if members.is_empty() {
                continue;
            }
            let w = &windows[wi];
            let mut ids = Vec::with_capacity(head.len() + w.len() + tail.len());
            ids.extend_from_slice(head);
            ids.extend_from_slice(&body[w.clone()]);
            ids.extend_from_slice(tail);
            // A chunk wider than its window (one huge unit) is pooled over
            // the part inside it.
            let spans: Vec<Range<usize>> = members
                .iter()
                .map(|&c| {
                    let r = &chunks[c];
                    let s = r.start.clamp(w.start, w.end);
                    let e = r.end.clamp(w.start, w.end).max(s + 1).min(w.end);
                    let s = s.min(e - 1);
                    head.len() + s - w.start..head.len() + e - w.start
                })
                .collect();
            let rows = self.embed_token_spans(&ids, &spans, call)?;
            for (&c, v) in members.iter().zip(rows) {
                vectors[c] = Some(v);
            }
        }
        Ok(chars
            .into_iter()
            .zip(chunks.iter().cloned())
            .zip(vectors)
            .zip(home)
            .map(|(((chars, tokens), v), wi)| Chunk {
                chars,
                tokens,
                window: windows[wi].clone(),
                embedding: v.unwrap_or_default(),
            })
            .collect())
    }
}

/// Macro-windows of at most `cap` tokens over `n` tokens: one when it fits,
/// else windows overlapping by a quarter of `cap` (or the longest chunk,
/// if longer, so each chunk lies whole in some window), the last one
/// ending at `n`.
fn windows(n: usize, cap: usize, chunks: &[Range<usize>]) -> Vec<Range<usize>> {
    if n <= cap {
        return std::iter::once(0..n.max(1)).collect();
    }
    let longest = chunks.iter().map(|r| r.len()).max().unwrap_or(0);
    let overlap = (cap / 4).max(longest).min(cap - 1);
    let stride = (cap - overlap).max(1);
    let mut out = Vec::new();
    let mut s = 0;
    loop {
        if s + cap >= n {
            out.push(n - cap..n);
            break;
        }
        out.push(s..s + cap);
        s += stride;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_cover_the_text_and_cut_at_spans() {
        let text = "Hello  world.\nNext line é here";
        let u = units(text, &[]);
        let words: Vec<&str> = u.iter().map(|u| &text[u.bytes.clone()]).collect();
        assert_eq!(
            words,
            ["Hello", "  world.", "\nNext", " line", " é", " here"]
        );
        assert_eq!(u.last().unwrap().chars.end, text.chars().count());
        let u = units(text, &[3, 15]);
        let words: Vec<&str> = u.iter().map(|u| &text[u.bytes.clone()]).collect();
        assert_eq!(words.concat(), text);
        assert!(u.iter().any(|u| u.chars.start == 3));
        assert!(u.iter().any(|u| u.chars.start == 15));
    }

    #[test]
    fn budget_chunks_respect_size_overlap_and_boundaries() {
        let text = "a b c. d e f g. h i j k l.";
        let u = units(text, &[]);
        let counts = vec![1; u.len()];
        let c = budget_chunks(text, &u, &counts, 4, 1, Boundary::Word);
        assert!(c.iter().all(|r| r.len() <= 4));
        assert_eq!(c[0], 0..4);
        assert_eq!(c[1].start, 3, "one unit shared");
        assert_eq!(c.last().unwrap().end, u.len());
        let c = budget_chunks(text, &u, &counts, 5, 0, Boundary::Sentence);
        assert_eq!(c[0], 0..3, "moved back to `c.`");
        assert_eq!(c[1].start, 3);
    }

    #[test]
    fn windows_overlap_and_hold_every_chunk() {
        let chunks: Vec<Range<usize>> = (0..100).map(|i| i * 10..i * 10 + 10).collect();
        let w = windows(1000, 128, &chunks);
        assert_eq!(w[0], 0..128);
        assert_eq!(w.last().unwrap().end, 1000);
        for r in &chunks {
            assert!(
                w.iter().any(|w| w.start <= r.start && r.end <= w.end),
                "{r:?}"
            );
        }
        let one = windows(50, 128, &chunks);
        assert_eq!((one.len(), one[0].clone()), (1, 0..50));
    }
}
