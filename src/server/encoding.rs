//! Output encodings of vectors: OpenAI's `float` and `base64`, and the
//! quantized precisions of sentence-transformers' `quantize_embeddings`
//! (`int8`, `uint8`, `binary`, `ubinary`) so vector databases get compact
//! vectors straight from the server.
//!
//! `binary`/`ubinary` match sentence-transformers exactly: one bit per
//! dimension (`x > 0`), packed most significant bit first (numpy's
//! `packbits`), the last byte padded with zeros; `binary` subtracts 128 to
//! get int8 values.
//!
//! `int8`/`uint8` need per-dimension ranges. sentence-transformers takes
//! them from calibration embeddings (or from the batch being quantized,
//! which would make a vector depend on its neighbours in the request). kiln
//! uses one fixed range for every dimension instead, `[-1, 1]` by default
//! (a bound for every component of a unit vector), or the range a request
//! gives in the kiln extension field `quantization_range: [lo, hi]`. With
//! that range as `ranges`, the values equal `quantize_embeddings`':
//! `uint8 = trunc((x - lo) / ((hi - lo) / 255))`, `int8 = trunc(… - 128)`,
//! computed in f32 as numpy does for float32 embeddings and ranges; values
//! outside the range are clamped (numpy would wrap).

use base64::Engine;
use serde::Serialize;

/// How vectors are returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// JSON numbers.
    Float,
    /// Base64 of the little-endian f32 bytes (OpenAI's `base64`).
    Base64,
    /// Signed bytes from a fixed range.
    Int8,
    /// Unsigned bytes from a fixed range.
    Uint8,
    /// Sign bits packed 8 per byte, as int8.
    Binary,
    /// Sign bits packed 8 per byte, as uint8.
    Ubinary,
}

impl Encoding {
    /// Parses an `encoding_format` value (`float32` is accepted for `float`).
    pub fn parse(s: &str) -> Option<Encoding> {
        Some(match s {
            "float" | "float32" => Encoding::Float,
            "base64" => Encoding::Base64,
            "int8" => Encoding::Int8,
            "uint8" => Encoding::Uint8,
            "binary" => Encoding::Binary,
            "ubinary" => Encoding::Ubinary,
            _ => return None,
        })
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
    /// Integers (any quantized precision).
    Int(Vec<i16>),
}

/// The default int8/uint8 range.
pub const DEFAULT_RANGE: (f32, f32) = (-1.0, 1.0);

/// Encodes `v`; `range` is used by `int8`/`uint8` (lo < hi, checked by the caller).
pub fn encode(v: Vec<f32>, encoding: Encoding, range: (f32, f32)) -> Encoded {
    match encoding {
        Encoding::Float => Encoded::Float(v),
        Encoding::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Encoded::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Encoding::Int8 | Encoding::Uint8 => {
            let (lo, hi) = range;
            let step = (hi - lo) / 255.0;
            let offset = if encoding == Encoding::Int8 {
                128.0
            } else {
                0.0
            };
            Encoded::Int(
                v.iter()
                    .map(|&x| {
                        let q = ((x - lo) / step).clamp(0.0, 255.0) - offset;
                        q.trunc() as i16
                    })
                    .collect(),
            )
        }
        Encoding::Binary | Encoding::Ubinary => {
            let offset = if encoding == Encoding::Binary { 128 } else { 0 };
            Encoded::Int(
                v.chunks(8)
                    .map(|bits| {
                        let byte = bits
                            .iter()
                            .enumerate()
                            .filter(|(_, x)| **x > 0.0)
                            .fold(0u8, |b, (i, _)| b | (0x80 >> i));
                        i16::from(byte) - offset
                    })
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        let Encoded::Base64(s) = encode(vec![1.0, -2.0], Encoding::Base64, DEFAULT_RANGE) else {
            panic!()
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(bytes, [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);
    }

    #[test]
    fn binary_packs_msb_first() {
        // Bits 1,0,0,0,0,0,0,1 | 1 (padded) → 0x81, 0x80.
        let v = vec![0.5, -1.0, 0.0, -0.1, -0.2, -0.3, -0.4, 0.1, 2.0];
        assert_eq!(
            encode(v.clone(), Encoding::Ubinary, DEFAULT_RANGE),
            Encoded::Int(vec![0x81, 0x80])
        );
        assert_eq!(
            encode(v, Encoding::Binary, DEFAULT_RANGE),
            Encoded::Int(vec![0x81 - 128, 0])
        );
    }

    #[test]
    fn scalar_quantization_matches_sentence_transformers() {
        // numpy on float32 embeddings and float32 ranges:
        // ((x - lo) / ((hi - lo) / 255)).astype(uint8), and - 128 for int8.
        // In float32, 2 / (2 / 255) is 254.99998, so x = hi truncates to 254.
        let v = vec![-1.0, 0.0, 0.5, 1.0, 3.0];
        assert_eq!(
            encode(v.clone(), Encoding::Uint8, (-1.0, 1.0)),
            Encoded::Int(vec![0, 127, 191, 254, 255])
        );
        assert_eq!(
            encode(v, Encoding::Int8, (-1.0, 1.0)),
            Encoded::Int(vec![-128, 0, 63, 126, 127])
        );
    }
}
