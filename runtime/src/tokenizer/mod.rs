//! Tokenizers built from a GGUF's `tokenizer.ggml.*` metadata: SentencePiece
//! merge-by-score with byte fallback (`"llama"`, Gemma), BERT WordPiece
//! (`"bert"`, all-MiniLM-L6-v2) and GPT-2-style byte-level BPE (`"gpt2"`,
//! SmolLM2; pre-tokenizers `smollm`, `gpt-2`, `llama3`, `qwen2`).
//!
//! Why hand-written rather than on the `tokenizers` crate: an embed call must
//! do zero heap allocations after warm-up, and `tokenizers` allocates per call
//! (normalized strings, offsets, encodings); it also has no SentencePiece
//! model that merges by piece score from a GGUF's arrays (its BPE wants a
//! merge list), and its regex pre-tokenizers are not llama.cpp's hand-written
//! splitters. The algorithms are small; here they run over reusable
//! buffers ([`TokenizerScratch`]) with two small crates for Unicode tables
//! (`unicode-normalization` for NFD, `unicode-general-category` for the
//! categories BERT and the BPE pre-tokenizers test).
//!
//! What is matched against what:
//! - Gemma: llama.cpp's tokenizer (its ids equal Hugging Face's on all golden
//!   inputs), including its special-token partition: user-defined tokens
//!   (runs of spaces, tabs and newlines, HTML tags) are always cut out of the
//!   text first; control tokens (`<bos>`, `<start_of_turn>`, ...) only with
//!   [`EncodeOptions::parse_special`].
//! - BERT: Hugging Face's `BertNormalizer` + `BertPreTokenizer` + `WordPiece`
//!   (llama.cpp differs on text whose NFD changes more than accents, e.g.
//!   Korean).
//! - BPE: llama.cpp's `llm_tokenizer_bpe` and its pre-tokenizer splitters
//!   (golden ids of SmolLM2), the same special-token partition as Gemma
//!   (`<|im_start|>` only with `parse_special`); on random text, a Hugging
//!   Face `tokenizers` pipeline built from the same vocabulary and merges,
//!   and for the splitters of every supported `tokenizer.ggml.pre`, the
//!   regexes llama.cpp lists, run by a regex engine.
//!
//! Text is text by default: special-token strings in user input are
//! tokenized as ordinary text, and (unlike llama.cpp) SentencePiece and BPE
//! merges never produce a control token.

mod bpe;
mod error;
mod gguf;
mod pieces;
mod pretok;
mod special;
mod spm;
mod vocab;
mod wordpiece;

pub use error::TokenizerError;
pub use gguf::keys;
pub use vocab::{ModelKind, TokenType, Vocab};

use bpe::{BpeModel, BpeScratch, BpeTables};
use pieces::Pieces;
use pretok::PreTokenizer;
use special::{Fragment, PartitionScratch, SpecialTokens};
use spm::{SPACE, SpmModel, SpmScratch};
use wordpiece::{WordPieceModel, WordPieceScratch};

/// How to encode one text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add the model's special tokens around the text (BOS/EOS, `[CLS]`/`[SEP]`).
    pub add_special: bool,
    /// Recognize control-token strings (`<bos>`, `[CLS]`, ...) in the text as
    /// those tokens. Off by default so that user input cannot forge structure.
    pub parse_special: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            add_special: true,
            parse_special: false,
        }
    }
}

/// Reusable per-call buffers; keep one per thread and pass it to
/// [`Tokenizer::encode_into`] so that encoding allocates nothing once the
/// buffers have grown to the texts' sizes.
#[derive(Debug, Default)]
pub struct TokenizerScratch {
    partition: PartitionScratch,
    spm: SpmScratch,
    wordpiece: WordPieceScratch,
    bpe: BpeScratch,
}

impl TokenizerScratch {
    /// Empty buffers.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A tokenizer for one model's vocabulary. Immutable and `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    kind: ModelKind,
    pieces: Pieces,
    scores: Vec<f32>,
    types: Vec<TokenType>,
    specials: SpecialTokens,
    byte_tokens: Box<[u32; 256]>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    sep: Option<u32>,
    pad: Option<u32>,
    cls: Option<u32>,
    mask: Option<u32>,
    /// Token put before the text when adding special tokens.
    start: Option<u32>,
    /// Token put after the text when adding special tokens.
    end: Option<u32>,
    add_space_prefix: bool,
    lowercase: bool,
    /// Merges and pre-tokenizer of a BPE vocabulary.
    bpe: Option<Box<BpeTables>>,
}

fn check_id(key: &'static str, id: Option<u32>, n: usize) -> Result<Option<u32>, TokenizerError> {
    match id {
        Some(id) if id as usize >= n => Err(TokenizerError::IdOutOfRange {
            key,
            id: u64::from(id),
            vocab_size: n,
        }),
        other => Ok(other),
    }
}

impl Tokenizer {
    /// Build a tokenizer from a vocabulary description, checking that arrays
    /// have one entry per token and that special ids are in range.
    pub fn from_vocab(v: &Vocab<'_>) -> Result<Self, TokenizerError> {
        Self::build(v, v.scores.clone())
    }

    /// [`from_vocab`](Self::from_vocab) with the vocabulary's `scores`
    /// taken out of it (moved, not copied, when read from a file).
    pub(super) fn build(v: &Vocab<'_>, scores: Vec<f32>) -> Result<Self, TokenizerError> {
        let n = v.tokens.len();
        if n == 0 || n > (1 << 31) {
            return Err(TokenizerError::BadVocabSize(n));
        }
        let total: usize = v.tokens.iter().map(|t| t.len()).sum();
        if total >= u32::MAX as usize {
            return Err(TokenizerError::BadKey {
                key: "tokenizer.ggml.tokens",
                reason: format!("{total} bytes of piece text exceed 4 GiB"),
            });
        }
        let types: Vec<TokenType> = if v.types.is_empty() {
            vec![TokenType::Normal; n]
        } else if v.types.len() != n {
            return Err(TokenizerError::LengthMismatch {
                key: "tokenizer.ggml.token_type",
                expected: n,
                found: v.types.len(),
            });
        } else {
            v.types
                .iter()
                .enumerate()
                .map(|(index, &value)| {
                    TokenType::from_i32(value).ok_or(TokenizerError::BadTokenType { index, value })
                })
                .collect::<Result<_, _>>()?
        };
        let scores = match v.model {
            ModelKind::Spm if scores.len() != n => {
                return Err(TokenizerError::LengthMismatch {
                    key: "tokenizer.ggml.scores",
                    expected: n,
                    found: scores.len(),
                });
            }
            ModelKind::WordPiece | ModelKind::Bpe if !scores.is_empty() && scores.len() != n => {
                return Err(TokenizerError::LengthMismatch {
                    key: "tokenizer.ggml.scores",
                    expected: n,
                    found: scores.len(),
                });
            }
            _ => scores,
        };
        let bos = check_id("tokenizer.ggml.bos_token_id", v.bos, n)?;
        let eos = check_id("tokenizer.ggml.eos_token_id", v.eos, n)?;
        let unk = check_id("tokenizer.ggml.unknown_token_id", v.unk, n)?;
        let sep = check_id("tokenizer.ggml.seperator_token_id", v.sep, n)?;
        let pad = check_id("tokenizer.ggml.padding_token_id", v.pad, n)?;
        let cls = check_id("tokenizer.ggml.cls_token_id", v.cls, n)?;
        let mask = check_id("tokenizer.ggml.mask_token_id", v.mask, n)?;

        let pieces = Pieces::new(&v.tokens);
        let (start, end, unk) = match v.model {
            ModelKind::Spm => {
                let start = if v.add_bos {
                    Some(bos.ok_or(TokenizerError::MissingSpecialToken("BOS", "SentencePiece"))?)
                } else {
                    None
                };
                let end = if v.add_eos {
                    Some(eos.ok_or(TokenizerError::MissingSpecialToken("EOS", "SentencePiece"))?)
                } else {
                    None
                };
                (start, end, unk)
            }
            // As llama.cpp: [CLS] (stored as BOS) before and [SEP] after the
            // text, whatever the add_* flags say.
            ModelKind::WordPiece => {
                let start = cls.or(bos).ok_or(TokenizerError::MissingSpecialToken(
                    "[CLS]/BOS",
                    "WordPiece",
                ))?;
                let end = sep.or(eos).ok_or(TokenizerError::MissingSpecialToken(
                    "[SEP]/EOS",
                    "WordPiece",
                ))?;
                let unk = unk
                    .or_else(|| pieces.get(b"[UNK]"))
                    .ok_or(TokenizerError::MissingSpecialToken("[UNK]", "WordPiece"))?;
                (Some(start), Some(end), Some(unk))
            }
            ModelKind::Bpe => {
                let start = if v.add_bos {
                    Some(bos.ok_or(TokenizerError::MissingSpecialToken("BOS", "BPE"))?)
                } else {
                    None
                };
                let end = if v.add_eos {
                    Some(eos.ok_or(TokenizerError::MissingSpecialToken("EOS", "BPE"))?)
                } else {
                    None
                };
                (start, end, unk)
            }
        };
        let bpe = match v.model {
            ModelKind::Bpe => {
                let name = v.pre.unwrap_or("default");
                let pre = PreTokenizer::from_gguf_name(name).ok_or_else(|| {
                    TokenizerError::UnknownPreTokenizer {
                        name: name.to_owned(),
                        supported: pretok::SUPPORTED,
                    }
                })?;
                Some(Box::new(BpeTables::new(&pieces, &types, &v.merges, pre)?))
            }
            ModelKind::Spm | ModelKind::WordPiece => None,
        };
        let specials = SpecialTokens::new(&pieces, &types);
        let byte_tokens = Box::new(spm::byte_tokens(&pieces));
        Ok(Self {
            kind: v.model,
            pieces,
            scores,
            types,
            specials,
            byte_tokens,
            bos,
            eos,
            unk,
            sep,
            pad,
            cls: match v.model {
                ModelKind::WordPiece => cls.or(bos),
                ModelKind::Spm | ModelKind::Bpe => cls,
            },
            mask,
            start,
            end,
            add_space_prefix: v.add_space_prefix,
            lowercase: v.lowercase,
            bpe,
        })
    }

    /// Override whether EOS is appended when adding special tokens (the GGUF's
    /// `add_eos_token`). Gemma-3 generation GGUFs say no; EmbeddingGemma says yes.
    /// WordPiece always ends with `[SEP]`.
    pub fn with_add_eos(mut self, add: bool) -> Result<Self, TokenizerError> {
        let name = match self.kind {
            ModelKind::Spm => "SentencePiece",
            ModelKind::Bpe => "BPE",
            ModelKind::WordPiece => return Ok(self),
        };
        self.end = if add {
            Some(
                self.eos
                    .ok_or(TokenizerError::MissingSpecialToken("EOS", name))?,
            )
        } else {
            None
        };
        Ok(self)
    }

    /// Encode `text` into a new vector (allocates; see [`Self::encode_into`]).
    pub fn encode(&self, text: &str, opts: &EncodeOptions) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::new();
        self.encode_into(text, opts, &mut out, &mut TokenizerScratch::new())?;
        Ok(out)
    }

    /// Encode `text`, replacing the contents of `out`. Allocates nothing once
    /// `out` and `scratch` have grown to the sizes the text needs.
    pub fn encode_into(
        &self,
        text: &str,
        opts: &EncodeOptions,
        out: &mut Vec<u32>,
        scratch: &mut TokenizerScratch,
    ) -> Result<(), TokenizerError> {
        out.clear();
        // Offsets are u32; a SentencePiece space becomes 3 bytes.
        if text.len() > (u32::MAX as usize) / 4 {
            return Err(TokenizerError::TextTooLong(text.len()));
        }
        if opts.add_special {
            out.extend(self.start);
        }
        self.specials.partition(
            &self.pieces,
            text,
            opts.parse_special,
            &mut scratch.partition,
        );
        let fragments = std::mem::take(&mut scratch.partition.fragments);
        let r = self.encode_fragments(text, &fragments, out, scratch);
        scratch.partition.fragments = fragments;
        r?;
        if opts.add_special {
            out.extend(self.end);
        }
        Ok(())
    }

    /// Encodes text made of segments, each with its own `parse_special`:
    /// a chat prompt whose template parts may hold control tokens while the
    /// messages' contents never do. Adjacent raw text of different segments
    /// is tokenized as one piece, as if the segments were one string (only
    /// a user-defined token spanning a boundary is not matched).
    pub fn encode_segments(
        &self,
        segments: &[(&str, bool)],
        add_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut scratch = TokenizerScratch::new();
        let mut text = String::new();
        let mut fragments = Vec::new();
        for &(seg, parse_special) in segments {
            let base = text.len() as u32;
            text.push_str(seg);
            self.specials
                .partition(&self.pieces, seg, parse_special, &mut scratch.partition);
            for &f in &scratch.partition.fragments {
                let f = match f {
                    Fragment::Text(a, b) => Fragment::Text(a + base, b + base),
                    t => t,
                };
                match (fragments.last_mut(), f) {
                    (Some(Fragment::Text(_, end)), Fragment::Text(a, b)) if *end == a => *end = b,
                    _ => fragments.push(f),
                }
            }
        }
        if text.len() > (u32::MAX as usize) / 4 {
            return Err(TokenizerError::TextTooLong(text.len()));
        }
        let mut out = Vec::new();
        if add_special {
            out.extend(self.start);
        }
        self.encode_fragments(&text, &fragments, &mut out, &mut scratch)?;
        if add_special {
            out.extend(self.end);
        }
        Ok(out)
    }

    fn encode_fragments(
        &self,
        text: &str,
        fragments: &[Fragment],
        out: &mut Vec<u32>,
        scratch: &mut TokenizerScratch,
    ) -> Result<(), TokenizerError> {
        let mut prev_special = true;
        for &f in fragments {
            match f {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(a, b) => {
                    let fragment = &text[a as usize..b as usize];
                    match self.kind {
                        ModelKind::Spm => {
                            let s = &mut scratch.spm;
                            s.text.clear();
                            if self.add_space_prefix && prev_special {
                                s.text.push_str(SPACE);
                            }
                            for (k, part) in fragment.split(' ').enumerate() {
                                if k > 0 {
                                    s.text.push_str(SPACE);
                                }
                                s.text.push_str(part);
                            }
                            self.spm_model().tokenize(s, out)?;
                        }
                        ModelKind::WordPiece => {
                            self.wordpiece_model()
                                .tokenize(fragment, &mut scratch.wordpiece, out);
                        }
                        ModelKind::Bpe => {
                            if let Some(model) = self.bpe_model() {
                                model.tokenize(fragment, &mut scratch.bpe, out);
                            }
                        }
                    }
                    prev_special = false;
                }
            }
        }
        Ok(())
    }

    fn spm_model(&self) -> SpmModel<'_> {
        SpmModel {
            pieces: &self.pieces,
            scores: &self.scores,
            types: &self.types,
            byte_tokens: &self.byte_tokens,
        }
    }

    /// `Some` for every BPE tokenizer (`build` makes the tables).
    fn bpe_model(&self) -> Option<BpeModel<'_>> {
        Some(BpeModel {
            tables: self.bpe.as_deref()?,
            pieces: &self.pieces,
            types: &self.types,
        })
    }

    fn wordpiece_model(&self) -> WordPieceModel<'_> {
        WordPieceModel {
            pieces: &self.pieces,
            types: &self.types,
            // from_vocab guarantees an unknown token for WordPiece.
            unk: self.unk.unwrap_or(0),
            lowercase: self.lowercase,
        }
    }

    /// Shorten `ids` to at most `max_tokens`, keeping the final EOS/`[SEP]`
    /// last if the sequence ended with it (as the references truncate).
    pub fn truncate(&self, ids: &mut Vec<u32>, max_tokens: usize) {
        if ids.len() <= max_tokens {
            return;
        }
        let end = self.end.filter(|&e| ids.last() == Some(&e));
        ids.truncate(max_tokens);
        if let (Some(e), Some(last)) = (end, ids.last_mut()) {
            *last = e;
        }
    }

    /// The bytes token `id` stands for in text (`special`: also control tokens).
    fn piece_text_bytes(&self, id: u32, special: bool, out: &mut Vec<u8>) {
        let Some(piece) = self.pieces.piece(id) else {
            return;
        };
        match (self.kind, self.types[id as usize]) {
            (_, TokenType::Control | TokenType::Unknown) => {
                if special {
                    out.extend_from_slice(piece.as_bytes());
                }
            }
            (ModelKind::Bpe, TokenType::UserDefined) => out.extend_from_slice(piece.as_bytes()),
            (ModelKind::Bpe, TokenType::Normal) => {
                // Each character is one byte; a character outside the
                // mapping (no such piece in a well-formed vocabulary) is
                // kept as it is, where llama.cpp writes a debugging marker.
                let mut buf = [0u8; 4];
                for c in piece.chars() {
                    match bpe::char_byte(c) {
                        Some(b) => out.push(b),
                        None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
                    }
                }
            }
            // As llama.cpp: BPE pieces of other types are not text.
            (ModelKind::Bpe, _) => {}
            (ModelKind::Spm, TokenType::Byte) => {
                match piece
                    .strip_prefix("<0x")
                    .and_then(|h| h.strip_suffix('>'))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => out.push(b),
                    None => out.extend_from_slice(piece.as_bytes()),
                }
            }
            _ => {
                for (k, part) in piece.split(SPACE).enumerate() {
                    if k > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(part.as_bytes());
                }
            }
        }
    }

    /// Appends the bytes token `id` stands for in text to `out`: byte
    /// tokens (`<0xNN>`) give their byte and a byte-level BPE token its
    /// bytes, so a character split across tokens is whole only once all of
    /// them are appended; control tokens give nothing unless `special`.
    /// Nothing for an id out of range.
    pub fn token_bytes(&self, id: u32, special: bool, out: &mut Vec<u8>) {
        self.piece_text_bytes(id, special, out);
    }

    /// The text of one token, with control tokens shown as their piece (as
    /// `llama-tokenize` prints them). `None` for an id out of range.
    pub fn token_to_piece(&self, id: u32) -> Option<String> {
        self.pieces.piece(id)?;
        let mut bytes = Vec::new();
        self.piece_text_bytes(id, true, &mut bytes);
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Decode ids to text, leaving out control tokens (BOS, EOS, `[CLS]`,
    /// ...). Invalid UTF-8 from byte tokens becomes U+FFFD. Byte-level BPE
    /// text is given back exactly (llama.cpp's `clean_up_tokenization_spaces`,
    /// which some BPE models ask for, is not applied).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        for &id in ids {
            if id as usize >= self.pieces.len() {
                return Err(TokenizerError::IdOutOfRange {
                    key: "token id",
                    id: u64::from(id),
                    vocab_size: self.pieces.len(),
                });
            }
            self.piece_text_bytes(id, false, &mut bytes);
        }
        let strip = match self.kind {
            ModelKind::WordPiece => true,
            ModelKind::Spm => self.add_space_prefix,
            // llama.cpp's BPE never adds a space, whatever the GGUF says.
            ModelKind::Bpe => false,
        };
        let text = if strip && bytes.first() == Some(&b' ') {
            &bytes[1..]
        } else {
            &bytes[..]
        };
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    /// The vocabulary entry of `id`, verbatim (`▁` for spaces, `<0x41>`, ...).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.pieces.piece(id)
    }

    /// The type of token `id`.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The id of the vocabulary entry `piece`, verbatim.
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.pieces.get(piece.as_bytes())
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The algorithm.
    pub fn model_kind(&self) -> ModelKind {
        self.kind
    }

    /// Beginning-of-sequence token (WordPiece: `[CLS]`).
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Separator token (`[SEP]`), if the model has one.
    pub fn sep(&self) -> Option<u32> {
        self.sep
    }

    /// Classification token (`[CLS]`; WordPiece models without the key use BOS).
    pub fn cls(&self) -> Option<u32> {
        self.cls
    }

    /// Unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// Padding token.
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// Mask token.
    pub fn mask(&self) -> Option<u32> {
        self.mask
    }

    /// The token appended after the text with `add_special` (EOS or `[SEP]`), if any.
    pub fn end_token(&self) -> Option<u32> {
        self.end
    }

    /// The token put before the text with `add_special` (BOS or `[CLS]`), if any.
    pub fn start_token(&self) -> Option<u32> {
        self.start
    }
}

#[cfg(test)]
mod tests;
