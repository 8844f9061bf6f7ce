//! Streamed text: bytes to whole UTF-8 characters across token boundaries,
//! and stop strings cut exactly across tokens.

use std::collections::VecDeque;

use super::generation::Token;

/// Bytes to text across token boundaries: releases whole UTF-8 characters,
/// holds an incomplete one until its last byte arrives; invalid bytes
/// become U+FFFD.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds bytes and returns the text completed so far.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let ok = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..ok]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..ok);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..ok + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left (an unfinished character) as U+FFFD.
    pub(crate) fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Stop strings over streamed tokens: tokens are released only once their
/// text cannot be the start of a stop string; at a match, the text is cut
/// exactly before it.
#[derive(Debug)]
pub(crate) struct StopCut {
    stops: Vec<String>,
    /// Tokens held back and their joined text.
    held: Vec<Token>,
    text: String,
    pub(crate) stopped: bool,
}

impl StopCut {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        StopCut {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: Vec::new(),
            text: String::new(),
            stopped: false,
        }
    }

    /// Adds a token; moves releasable tokens to `out`. `true` when a stop
    /// string was found (the tokens before it are in `out`, cut exactly).
    pub(crate) fn push(&mut self, id: u32, text: String, out: &mut VecDeque<Token>) -> bool {
        self.text.push_str(&text);
        self.held.push(Token { id, text });
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min();
        if let Some(at) = hit {
            let mut pos = 0;
            for mut t in self.held.drain(..) {
                if pos >= at {
                    break;
                }
                let keep = (at - pos).min(t.text.len());
                pos += t.text.len();
                t.text.truncate(keep);
                out.push_back(t);
            }
            self.text.clear();
            self.stopped = true;
            return true;
        }
        // Hold the longest suffix that begins some stop string.
        let hold = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len().min(self.text.len() + 1))
                    .rev()
                    .find(|&n| {
                        self.text.is_char_boundary(self.text.len() - n)
                            && s.as_bytes()
                                .starts_with(&self.text.as_bytes()[self.text.len() - n..])
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let free = self.text.len() - hold;
        let mut pos = 0;
        let mut n = 0;
        for t in &self.held {
            if pos + t.text.len() > free {
                break;
            }
            pos += t.text.len();
            n += 1;
        }
        out.extend(self.held.drain(..n));
        self.text.drain(..pos);
        false
    }

    /// Releases everything held, `tail` added to the last token.
    pub(crate) fn flush(&mut self, tail: String, out: &mut VecDeque<Token>) {
        if let Some(last) = self.held.last_mut() {
            last.text.push_str(&tail);
        } else if !tail.is_empty()
            && let Some(last) = out.back_mut()
        {
            last.text.push_str(&tail);
        }
        out.extend(self.held.drain(..));
        self.text.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut s = StopCut::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = VecDeque::new();
        let mut hit = false;
        for (i, p) in pieces.iter().enumerate() {
            if s.push(i as u32, p.to_string(), &mut out) {
                hit = true;
                break;
            }
        }
        if !hit {
            s.flush(String::new(), &mut out);
        }
        (out.into_iter().map(|t| t.text).collect(), hit)
    }

    #[test]
    fn stop_string_cuts_exactly_across_tokens() {
        let (t, hit) = run(&["\n\nQ:"], &["The", " answer", ".\n", "\nQ", ": next"]);
        assert!(hit);
        assert_eq!(t.concat(), "The answer.");
        // The token holding the start of the stop string is cut, not dropped.
        assert_eq!(t, ["The", " answer", "."]);
    }

    #[test]
    fn stop_string_inside_one_token() {
        let (t, hit) = run(&["END"], &["abcENDdef"]);
        assert!(hit);
        assert_eq!(t, ["abc"]);
    }

    #[test]
    fn false_prefix_is_released() {
        // "\n\nX" starts like the stop string but is not it.
        let (t, hit) = run(&["\n\nQ:"], &["a", "\n\n", "X", "b"]);
        assert!(!hit);
        assert_eq!(t.concat(), "a\n\nXb");
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (t, _) = run(&["world", "lo"], &["hello world"]);
        assert_eq!(t.concat(), "hel");
    }

    #[test]
    fn no_stops_release_every_token_at_once() {
        let mut s = StopCut::new(vec![]);
        let mut out = VecDeque::new();
        assert!(!s.push(1, "x".into(), &mut out));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn utf8_across_tokens() {
        let mut u = Utf8Stream::default();
        let bytes = "é😀".as_bytes();
        assert_eq!(u.push(&bytes[..1]), "");
        assert_eq!(u.push(&bytes[1..3]), "é");
        assert_eq!(u.push(&bytes[3..5]), "");
        assert_eq!(u.push(&bytes[5..]), "😀");
        // Invalid bytes become U+FFFD, an unfinished tail too.
        assert_eq!(u.push(&[0xff, b'a']), "\u{FFFD}a");
        assert_eq!(u.push(&[0xe2, 0x82]), "");
        assert_eq!(u.finish(), "\u{FFFD}");
    }
}
