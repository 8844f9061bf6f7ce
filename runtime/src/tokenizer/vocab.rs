//! The plain-data description of a vocabulary, as `tokenizer.ggml.*` stores it.
//!
//! [`Vocab`] is what [`Tokenizer::from_vocab`](super::Tokenizer::from_vocab)
//! consumes; `Tokenizer::from_gguf` fills one from GGUF metadata, and tests build
//! small ones in memory.

/// Which tokenization algorithm a vocabulary uses (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// `"llama"`: SentencePiece-style merge by score with byte fallback (Gemma).
    Spm,
    /// `"bert"`: BERT basic tokenization + greedy longest-match WordPiece.
    WordPiece,
    /// `"gpt2"`: byte-level BPE, merges applied by rank within words that a
    /// pre-tokenizer (`tokenizer.ggml.pre`) cuts out of the text.
    Bpe,
}

impl ModelKind {
    /// Parse the value of `tokenizer.ggml.model`.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Spm),
            "bert" => Some(Self::WordPiece),
            "gpt2" => Some(Self::Bpe),
            _ => None,
        }
    }

    /// The value of `tokenizer.ggml.model` for this kind.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Spm => "llama",
            Self::WordPiece => "bert",
            Self::Bpe => "gpt2",
        }
    }
}

/// Token type, as stored in `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum TokenType {
    /// 0: not set.
    Undefined = 0,
    /// 1: an ordinary piece.
    #[default]
    Normal = 1,
    /// 2: the unknown token.
    Unknown = 2,
    /// 3: control token (`<bos>`, `[CLS]`, ...): matched in text only with `parse_special`.
    Control = 3,
    /// 4: user-defined token: always matched in text before the model runs.
    UserDefined = 4,
    /// 5: reserved, never produced.
    Unused = 5,
    /// 6: a SentencePiece byte-fallback token `<0xXX>`.
    Byte = 6,
}

impl TokenType {
    /// Decode a stored value; `None` for values outside 0..=6.
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => Self::Undefined,
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }

    /// Tokens that text never produces unless special-token parsing is on.
    pub(crate) fn is_special_only(self) -> bool {
        matches!(self, Self::Control | Self::Unknown)
    }
}

/// A vocabulary and its settings, borrowed from wherever they are stored.
///
/// Arrays are indexed by token id. `scores` may be empty (WordPiece and BPE
/// have none); `types` may be empty (every token is then
/// [`TokenType::Normal`]).
#[derive(Clone, Debug)]
pub struct Vocab<'a> {
    /// The algorithm.
    pub model: ModelKind,
    /// `tokenizer.ggml.tokens`: the piece of every token.
    pub tokens: Vec<&'a str>,
    /// `tokenizer.ggml.scores`: merge priority (higher merges first) for SPM.
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.token_type`, raw.
    pub types: Vec<i32>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.seperator_token_id` (sic, the GGUF spelling).
    pub sep: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<u32>,
    /// `tokenizer.ggml.cls_token_id`.
    pub cls: Option<u32>,
    /// `tokenizer.ggml.mask_token_id`.
    pub mask: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`: prepend BOS (WordPiece: `[CLS]`) when adding special tokens.
    pub add_bos: bool,
    /// `tokenizer.ggml.add_eos_token`: append EOS when adding special tokens.
    pub add_eos: bool,
    /// `tokenizer.ggml.add_sep_token`: append SEP when adding special tokens.
    pub add_sep: bool,
    /// `tokenizer.ggml.add_space_prefix` (SPM): prefix a space to text that starts a fragment.
    pub add_space_prefix: bool,
    /// `tokenizer.ggml.normalizer.lowercase` (WordPiece): lower-case and strip accents.
    pub lowercase: bool,
    /// `tokenizer.ggml.merges` (BPE): `"left right"` pairs, highest priority first.
    pub merges: Vec<&'a str>,
    /// `tokenizer.ggml.pre` (BPE): the pre-tokenizer's name, e.g. `"smollm"`.
    pub pre: Option<&'a str>,
}

impl<'a> Vocab<'a> {
    /// A vocabulary with llama.cpp's defaults for `model` and no special
    /// tokens (BPE: no BOS; `Tokenizer::from_gguf` applies the defaults of
    /// the pre-tokenizer, e.g. BOS for `llama3`, when the key is absent).
    pub fn new(model: ModelKind, tokens: Vec<&'a str>) -> Self {
        Self {
            model,
            tokens,
            scores: Vec::new(),
            types: Vec::new(),
            bos: None,
            eos: None,
            unk: None,
            sep: None,
            pad: None,
            cls: None,
            mask: None,
            add_bos: !matches!(model, ModelKind::Bpe),
            add_eos: false,
            add_sep: matches!(model, ModelKind::WordPiece),
            add_space_prefix: matches!(model, ModelKind::Spm),
            lowercase: true,
            merges: Vec::new(),
            pre: None,
        }
    }
}
