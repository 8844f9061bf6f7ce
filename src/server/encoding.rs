//! Output encodings of vectors: OpenAI's `float` and `base64`, and the
//! quantized precisions of sentence-transformers' `quantize_embeddings`
//! (`int8`, `uint8`, `binary`, `ubinary`). The library computes vectors at
//! their precision ([`crate::quantize`], the rules are described there);
//! this module only picks the precision an `encoding_format` asks for and
//! writes the result as JSON numbers or base64 text.

use base64::Engine;
use serde::Serialize;

use crate::quantize::{Embedding, Precision};

/// How vectors are returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// JSON numbers.
    Float,
    /// Base64 of the little-endian f32 bytes (OpenAI's `base64`).
    Base64,
    /// Integers at a quantized precision (never [`Precision::Float32`]).
    Quantized(Precision),
}

impl Encoding {
    /// Parses an `encoding_format` value (`float32` is accepted for `float`).
    pub fn parse(s: &str) -> Option<Encoding> {
        match s {
            "float" | "float32" => Some(Encoding::Float),
            "base64" => Some(Encoding::Base64),
            other => Precision::parse(other)
                .filter(|p| *p != Precision::Float32)
                .map(Encoding::Quantized),
        }
    }

    /// The precision the library computes vectors at for this encoding.
    pub fn precision(self) -> Precision {
        match self {
            Encoding::Quantized(p) => p,
            Encoding::Float | Encoding::Base64 => Precision::Float32,
        }
    }
}

/// One encoded vector, serialized as the API returns it.
#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Encoded {
    /// Floats.
    Float(Vec<f32>),
    /// Base64 text.
    Base64(String),
    /// Signed bytes (`int8`, `binary`).
    Int8(Vec<i8>),
    /// Unsigned bytes (`uint8`, `ubinary`).
    Uint8(Vec<u8>),
}

/// Writes a vector the library computed at `encoding`'s precision.
pub fn encode(v: Embedding, encoding: Encoding) -> Encoded {
    match v {
        Embedding::Float32(v) if encoding == Encoding::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Encoded::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Embedding::Float32(v) => Encoded::Float(v),
        Embedding::Int8(v) => Encoded::Int8(v),
        Embedding::Uint8(v) => Encoded::Uint8(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        let Encoded::Base64(s) = encode(Embedding::Float32(vec![1.0, -2.0]), Encoding::Base64)
        else {
            panic!()
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(bytes, [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);
    }

    #[test]
    fn formats_parse_to_precisions() {
        assert_eq!(Encoding::parse("float32"), Some(Encoding::Float));
        assert_eq!(
            Encoding::parse("ubinary").map(Encoding::precision),
            Some(Precision::Ubinary)
        );
        assert_eq!(Encoding::parse("float16"), None);
        assert_eq!(
            serde_json::to_string(&encode(Embedding::Int8(vec![-128, 5]), Encoding::Float))
                .unwrap(),
            "[-128,5]"
        );
    }
}
