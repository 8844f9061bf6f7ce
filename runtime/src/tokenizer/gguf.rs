//! Reading a [`Vocab`] from GGUF metadata (`tokenizer.ggml.*`).

use super::pretok::PreTokenizer;
use super::{ModelKind, Tokenizer, TokenizerError, Vocab};
use crate::gguf::{GgufFile, Metadata};

/// `tokenizer.ggml.*` keys this module reads.
pub mod keys {
    /// Tokenizer algorithm: `"llama"`, `"bert"` or `"gpt2"`.
    pub const MODEL: &str = "tokenizer.ggml.model";
    /// BPE pre-tokenizer (how text is cut into words), e.g. `"smollm"`.
    pub const PRE: &str = "tokenizer.ggml.pre";
    /// BPE merges, `"left right"`, highest priority first.
    pub const MERGES: &str = "tokenizer.ggml.merges";
    /// Piece of every token.
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    /// Merge score of every token (SentencePiece).
    pub const SCORES: &str = "tokenizer.ggml.scores";
    /// Type of every token.
    pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
    /// Beginning of sequence.
    pub const BOS: &str = "tokenizer.ggml.bos_token_id";
    /// End of sequence.
    pub const EOS: &str = "tokenizer.ggml.eos_token_id";
    /// Unknown token.
    pub const UNK: &str = "tokenizer.ggml.unknown_token_id";
    /// Separator (the GGUF spelling).
    pub const SEP: &str = "tokenizer.ggml.seperator_token_id";
    /// Padding.
    pub const PAD: &str = "tokenizer.ggml.padding_token_id";
    /// Classification.
    pub const CLS: &str = "tokenizer.ggml.cls_token_id";
    /// Mask.
    pub const MASK: &str = "tokenizer.ggml.mask_token_id";
    /// Prepend BOS.
    pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    /// Append EOS.
    pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
    /// Append SEP.
    pub const ADD_SEP: &str = "tokenizer.ggml.add_sep_token";
    /// SentencePiece: prefix a space.
    pub const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
    /// WordPiece: lower-case and strip accents.
    pub const LOWERCASE: &str = "tokenizer.ggml.normalizer.lowercase";
}

/// An optional token id. Negative values (some converters write -1) mean absent.
fn opt_id(md: &Metadata, key: &'static str) -> Result<Option<u32>, TokenizerError> {
    if md.get(key).is_none() {
        return Ok(None);
    }
    let v = md.get_i64(key)?;
    if v < 0 {
        return Ok(None);
    }
    u32::try_from(v)
        .map(Some)
        .map_err(|_| TokenizerError::IdOutOfRange {
            key,
            id: v as u64,
            vocab_size: 0,
        })
}

fn opt_bool(md: &Metadata, key: &str, default: bool) -> Result<bool, TokenizerError> {
    if md.get(key).is_none() {
        Ok(default)
    } else {
        Ok(md.get_bool(key)?)
    }
}

/// An array of strings, all of which must be UTF-8.
fn str_array<'a>(md: &'a Metadata, key: &'static str) -> Result<Vec<&'a str>, TokenizerError> {
    let iter = md.get_str_array(key)?;
    let declared = iter.remaining();
    let strings: Vec<&str> = iter.collect();
    if strings.len() as u64 != declared {
        return Err(TokenizerError::BadKey {
            key,
            reason: format!(
                "only {} of {declared} strings are readable UTF-8",
                strings.len()
            ),
        });
    }
    Ok(strings)
}

impl<'a> Vocab<'a> {
    /// Read a vocabulary from GGUF metadata; absent optional keys take
    /// llama.cpp's defaults.
    pub fn from_gguf_metadata(md: &'a Metadata) -> Result<Self, TokenizerError> {
        let name = md.get_str(keys::MODEL)?;
        let model = ModelKind::from_gguf_name(name)
            .ok_or_else(|| TokenizerError::UnknownModel(name.to_owned()))?;
        let tokens = str_array(md, keys::TOKENS)?;
        let mut v = Vocab::new(model, tokens);
        v.scores = match (model, md.get(keys::SCORES)) {
            (_, Some(_)) => md.get_f32_array(keys::SCORES)?,
            (ModelKind::Spm, None) => return Err(TokenizerError::MissingKey(keys::SCORES)),
            (ModelKind::WordPiece | ModelKind::Bpe, None) => Vec::new(),
        };
        if model == ModelKind::Bpe {
            if md.get(keys::MERGES).is_none() {
                return Err(TokenizerError::MissingKey(keys::MERGES));
            }
            v.merges = str_array(md, keys::MERGES)?;
            if md.get(keys::PRE).is_some() {
                v.pre = Some(md.get_str(keys::PRE)?);
            }
            // llama.cpp's default when the key is absent depends on the
            // pre-tokenizer (BOS for Llama 3).
            v.add_bos = v
                .pre
                .and_then(PreTokenizer::from_gguf_name)
                .is_some_and(PreTokenizer::default_add_bos);
        }
        if md.get(keys::TOKEN_TYPE).is_some() {
            v.types = md.get_i32_array(keys::TOKEN_TYPE)?;
        }
        v.bos = opt_id(md, keys::BOS)?;
        v.eos = opt_id(md, keys::EOS)?;
        v.unk = opt_id(md, keys::UNK)?;
        v.sep = opt_id(md, keys::SEP)?;
        v.pad = opt_id(md, keys::PAD)?;
        v.cls = opt_id(md, keys::CLS)?;
        v.mask = opt_id(md, keys::MASK)?;
        v.add_bos = opt_bool(md, keys::ADD_BOS, v.add_bos)?;
        v.add_eos = opt_bool(md, keys::ADD_EOS, v.add_eos)?;
        v.add_sep = opt_bool(md, keys::ADD_SEP, v.add_sep)?;
        v.add_space_prefix = opt_bool(md, keys::ADD_SPACE_PREFIX, v.add_space_prefix)?;
        v.lowercase = opt_bool(md, keys::LOWERCASE, v.lowercase)?;
        Ok(v)
    }
}

impl Tokenizer {
    /// Build the tokenizer a GGUF file describes.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        Self::from_gguf_metadata(file.metadata())
    }

    /// Build the tokenizer that GGUF metadata describes.
    pub fn from_gguf_metadata(md: &Metadata) -> Result<Self, TokenizerError> {
        let mut v = Vocab::from_gguf_metadata(md)?;
        let scores = std::mem::take(&mut v.scores);
        Self::build(&v, scores)
    }
}
