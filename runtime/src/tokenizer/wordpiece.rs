//! BERT tokenization as Hugging Face's `BertNormalizer`,
//! `BertPreTokenizer` and `WordPiece` model do it
//! (`tokenizer.ggml.model = "bert"`, used by all-MiniLM-L6-v2).
//!
//! 1. Normalize: drop NUL, U+FFFD and control characters (general category
//!    Cc, Cf, Co, except tab/CR/LF); map whitespace to a space; surround CJK
//!    ideographs with spaces; if lower-casing, strip accents (canonical
//!    decomposition, NFD, then drop nonspacing marks, Mn) and lower-case each
//!    character.
//! 2. Pre-tokenize: split on whitespace, and isolate every punctuation
//!    character (ASCII punctuation or Unicode P*).
//! 3. WordPiece: per word, greedy longest match first; pieces after the first
//!    are continuations (`##x` in vocab.txt). A word of more than 100
//!    characters, or one that cannot be covered, becomes `[UNK]`.
//!
//! The GGUF stores the vocabulary the way llama.cpp's converter writes it:
//! a word-initial piece `x` as `▁x` (U+2581), a continuation `##x` as `x`,
//! control tokens (`[CLS]`, ...) unchanged. Lookups are built accordingly.
//!
//! Unlike llama.cpp, Hangul syllables are decomposed by NFD like every other
//! character (so Korean matches Hugging Face and the model's training).

use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::char::{canonical_combining_class, decompose_canonical};

use super::pieces::Pieces;
use super::spm::SPACE;
use super::vocab::TokenType;

/// Hugging Face's `max_input_chars_per_word`.
pub(crate) const MAX_WORD_CHARS: usize = 100;

/// Reusable buffers of the WordPiece step.
#[derive(Debug, Default)]
pub(crate) struct WordPieceScratch {
    chars: Vec<char>,
    word: String,
    bounds: Vec<u32>,
    piece: String,
}

pub(crate) struct WordPieceModel<'t> {
    pub(crate) pieces: &'t Pieces,
    pub(crate) types: &'t [TokenType],
    pub(crate) unk: u32,
    pub(crate) lowercase: bool,
}

/// `BertNormalizer`'s whitespace: tab, LF, CR and Unicode `White_Space`.
fn is_whitespace(c: char) -> bool {
    c.is_whitespace()
}

/// `BertNormalizer`'s control characters: Cc, Cf and Co except tab, LF, CR
/// (the `unicode_categories` crate's `is_other`, which Hugging Face uses,
/// leaves out Cn: unassigned code points are kept and become `[UNK]`).
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(
        get_general_category(c),
        GeneralCategory::Control | GeneralCategory::Format | GeneralCategory::PrivateUse
    )
}

/// The CJK Unified Ideographs blocks BERT pads with spaces.
fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// BERT's punctuation: all ASCII punctuation (which includes symbols such as
/// `$`, `+`, `^`) and every Unicode P* character.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            get_general_category(c),
            GeneralCategory::ConnectorPunctuation
                | GeneralCategory::DashPunctuation
                | GeneralCategory::OpenPunctuation
                | GeneralCategory::ClosePunctuation
                | GeneralCategory::InitialPunctuation
                | GeneralCategory::FinalPunctuation
                | GeneralCategory::OtherPunctuation
        )
}

impl WordPieceModel<'_> {
    fn lookup(&self, bytes: &[u8]) -> Option<u32> {
        self.pieces
            .get(bytes)
            .filter(|&id| !self.types[id as usize].is_special_only())
    }

    /// Normalize `text` into `s.chars` (steps of the normalizer, in order).
    fn normalize(&self, text: &str, s: &mut WordPieceScratch) {
        s.chars.clear();
        for c in text.chars() {
            if c == '\0' || c == '\u{FFFD}' || is_control(c) {
                continue;
            }
            if is_whitespace(c) {
                s.chars.push(' ');
                continue;
            }
            let cjk = is_chinese_char(c);
            if cjk {
                s.chars.push(' ');
            }
            if self.lowercase {
                // Strip accents: NFD, then drop nonspacing marks. (CJK
                // compatibility ideographs decompose too, after padding.)
                decompose_canonical(c, |d| {
                    if get_general_category(d) != GeneralCategory::NonspacingMark {
                        s.chars.push(d);
                    }
                });
            } else {
                s.chars.push(c);
            }
            if cjk {
                s.chars.push(' ');
            }
        }
        if self.lowercase {
            reorder_marks(&mut s.chars);
        }
    }

    /// Tokenize `text` (one raw-text fragment) and append the ids to `out`.
    pub(crate) fn tokenize(&self, text: &str, s: &mut WordPieceScratch, out: &mut Vec<u32>) {
        self.normalize(text, s);
        // Lower-case after accent stripping, as `BertNormalizer` does, one
        // character at a time (no final-sigma context).
        let n = s.chars.len();
        let mut i = 0;
        while i < n {
            let c = s.chars[i];
            i += 1;
            if is_whitespace(c) {
                continue;
            }
            s.word.clear();
            s.bounds.clear();
            if is_punctuation(c) {
                self.push_lower(c, s);
            } else {
                self.push_lower(c, s);
                while i < n && !is_whitespace(s.chars[i]) && !is_punctuation(s.chars[i]) {
                    let c = s.chars[i];
                    self.push_lower(c, s);
                    i += 1;
                }
            }
            self.word_piece(s, out);
        }
    }

    fn push_lower(&self, c: char, s: &mut WordPieceScratch) {
        if self.lowercase {
            for l in c.to_lowercase() {
                s.bounds.push(s.word.len() as u32);
                s.word.push(l);
            }
        } else {
            s.bounds.push(s.word.len() as u32);
            s.word.push(c);
        }
    }

    /// Greedy longest-match-first WordPiece over `s.word`.
    fn word_piece(&self, s: &mut WordPieceScratch, out: &mut Vec<u32>) {
        let n_chars = s.bounds.len();
        if n_chars > MAX_WORD_CHARS {
            out.push(self.unk);
            return;
        }
        s.bounds.push(s.word.len() as u32);
        let mark = out.len();
        let mut start = 0;
        while start < n_chars {
            let mut found = None;
            let mut end = n_chars;
            while end > start {
                s.piece.clear();
                if start == 0 {
                    s.piece.push_str(SPACE);
                }
                s.piece
                    .push_str(&s.word[s.bounds[start] as usize..s.bounds[end] as usize]);
                if let Some(id) = self.lookup(s.piece.as_bytes()) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(mark);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }
}

/// Canonical ordering of NFD: stably sort each run of characters with a
/// nonzero combining class by that class. Runs are short (usually empty
/// after accent stripping), so an insertion sort does it in place.
fn reorder_marks(chars: &mut [char]) {
    let mut i = 0;
    while i < chars.len() {
        if canonical_combining_class(chars[i]) == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && canonical_combining_class(chars[i]) != 0 {
            i += 1;
        }
        let run = &mut chars[start..i];
        for j in 1..run.len() {
            let mut k = j;
            while k > 0 && canonical_combining_class(run[k - 1]) > canonical_combining_class(run[k])
            {
                run.swap(k - 1, k);
                k -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_follows_bert() {
        for c in ['!', '$', '+', '^', '`', '~', '«', '»', '—', '¿', '。'] {
            assert!(is_punctuation(c), "{c:?}");
        }
        for c in ['a', '€', '5', ' ', '字'] {
            assert!(!is_punctuation(c), "{c:?}");
        }
    }

    #[test]
    fn control_and_whitespace() {
        assert!(is_control('\u{0}'));
        assert!(is_control('\u{200B}')); // Cf
        assert!(is_control('\u{E000}')); // Co
        assert!(!is_control('\u{378}')); // Cn: kept, as Hugging Face does
        assert!(!is_control('\t'));
        assert!(is_whitespace('\u{3000}'));
        assert!(is_whitespace('\n'));
    }

    #[test]
    fn canonical_reordering() {
        // U+0316 (ccc 220) sorts before U+0301 (ccc 230).
        let mut v = ['a', '\u{301}', '\u{316}', 'b'];
        reorder_marks(&mut v);
        assert_eq!(v, ['a', '\u{316}', '\u{301}', 'b']);
    }
}
