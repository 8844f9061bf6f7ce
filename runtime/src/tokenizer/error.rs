//! Errors of building a tokenizer from GGUF metadata and of encoding text.

/// What went wrong building or using a [`Tokenizer`](super::Tokenizer).
///
/// Every variant names the GGUF key or the value at fault, so that a bad
/// model file can be diagnosed from the message alone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` names a tokenizer kiln does not implement.
    #[error(
        "unsupported tokenizer model {0:?} (kiln supports \"llama\" (SentencePiece), \"bert\" (WordPiece) and \"gpt2\" (byte-level BPE))"
    )]
    UnknownModel(String),
    /// The GGUF metadata could not be read (missing key, wrong type).
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// A key the tokenizer needs is absent.
    #[error("missing GGUF key {0}")]
    MissingKey(&'static str),
    /// A key is present but could not be read with the expected type.
    #[error("GGUF key {key}: {reason}")]
    BadKey {
        /// The GGUF key.
        key: &'static str,
        /// Why it could not be used.
        reason: String,
    },
    /// A per-token array does not have one entry per token.
    #[error("{key} has {found} entries but tokenizer.ggml.tokens has {expected}")]
    LengthMismatch {
        /// The GGUF key of the array.
        key: &'static str,
        /// Number of tokens.
        expected: usize,
        /// Number of entries in the array.
        found: usize,
    },
    /// A special-token id does not index the vocabulary.
    #[error("{key} = {id} is out of range for a vocabulary of {vocab_size} tokens")]
    IdOutOfRange {
        /// The GGUF key (or "token id" for ids passed by a caller).
        key: &'static str,
        /// The offending id.
        id: u64,
        /// Size of the vocabulary.
        vocab_size: usize,
    },
    /// A `tokenizer.ggml.token_type` entry is not one of llama.cpp's types (0..=6).
    #[error("tokenizer.ggml.token_type[{index}] = {value} is not a known token type")]
    BadTokenType {
        /// Token id.
        index: usize,
        /// The stored value.
        value: i32,
    },
    /// The vocabulary is empty or larger than ids can address.
    #[error("vocabulary size {0} is unusable (must be 1..=2^31)")]
    BadVocabSize(usize),
    /// The tokenizer needs a special token that the model does not define.
    #[error("the {0} token is not defined by the model (needed by the {1} tokenizer)")]
    MissingSpecialToken(&'static str, &'static str),
    /// SentencePiece byte fallback needs `<0xXX>` for a byte the vocabulary lacks.
    #[error("no byte-fallback token <0x{0:02X}> in the vocabulary")]
    NoByteToken(u8),
    /// `tokenizer.ggml.pre` names a BPE pre-tokenizer (text splitting rule)
    /// kiln does not implement; guessing one would give wrong ids silently.
    #[error(
        "unsupported BPE pre-tokenizer tokenizer.ggml.pre = {name:?} (kiln supports {supported})"
    )]
    UnknownPreTokenizer {
        /// The stored value (`"default"` when the key is absent, as llama.cpp calls it).
        name: String,
        /// The values kiln accepts.
        supported: &'static str,
    },
    /// A `tokenizer.ggml.merges` entry is not `"left right"`.
    #[error("tokenizer.ggml.merges[{index}] = {merge:?}: {reason}")]
    BadMerge {
        /// Position in the merges array (its rank).
        index: usize,
        /// The entry.
        merge: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Text is too long for 32-bit offsets (4 GiB).
    #[error("text of {0} bytes is too long to tokenize")]
    TextTooLong(usize),
}
