//! Output precisions: float32, or the quantized precisions of
//! sentence-transformers' `quantize_embeddings` (`int8`, `uint8`, `binary`,
//! `ubinary`), so that vector databases get compact vectors straight from
//! kiln. Every front end that quantizes (the server's `encoding_format`,
//! the CLI's `--precision`, [`CallOptions::precision`](crate::CallOptions))
//! goes through [`quantize`].
//!
//! `binary`/`ubinary` match sentence-transformers exactly: one bit per
//! dimension (`x > 0`), packed most significant bit first (numpy's
//! `packbits`), the last byte padded with zeros; `binary` subtracts 128 to
//! get int8 values.
//!
//! `int8`/`uint8` need per-dimension ranges. sentence-transformers takes
//! them from calibration embeddings (or from the batch being quantized,
//! which would make a vector depend on its neighbours in the batch). kiln
//! uses one fixed [`QuantRange`] for every dimension instead, `[-1, 1]` by
//! default (a bound for every component of a unit vector). With that range
//! as `ranges`, the values equal `quantize_embeddings`':
//! `uint8 = trunc((x - lo) / ((hi - lo) / 255))`, `int8 = trunc(… - 128)`,
//! computed in f32 as numpy does for float32 embeddings and ranges; values
//! outside the range are clamped (numpy would wrap).

use thiserror::Error;

/// The precision of returned vectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// 32-bit floats, as computed.
    #[default]
    Float32,
    /// Signed bytes from a fixed range.
    Int8,
    /// Unsigned bytes from a fixed range.
    Uint8,
    /// Sign bits packed 8 per byte, as int8.
    Binary,
    /// Sign bits packed 8 per byte, as uint8.
    Ubinary,
}

impl Precision {
    /// Every precision, float32 first.
    pub const ALL: [Precision; 5] = [
        Precision::Float32,
        Precision::Int8,
        Precision::Uint8,
        Precision::Binary,
        Precision::Ubinary,
    ];

    /// Parses a precision name (`float` is accepted for `float32`).
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "float32" | "float" => Precision::Float32,
            "int8" => Precision::Int8,
            "uint8" => Precision::Uint8,
            "binary" => Precision::Binary,
            "ubinary" => Precision::Ubinary,
            _ => return None,
        })
    }

    /// The precision's name, as [`parse`](Self::parse) reads it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Int8 => "int8",
            Precision::Uint8 => "uint8",
            Precision::Binary => "binary",
            Precision::Ubinary => "ubinary",
        }
    }

    /// Values in a vector of `dim` dimensions at this precision.
    pub fn width(self, dim: usize) -> usize {
        match self {
            Precision::Binary | Precision::Ubinary => dim.div_ceil(8),
            _ => dim,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A quantization range that is not two finite numbers, low < high.
#[derive(Clone, Copy, Debug, Error, PartialEq)]
#[error("quantization range [{lo}, {hi}] must be two finite numbers, low < high")]
pub struct BadRange {
    /// The low end given.
    pub lo: f32,
    /// The high end given.
    pub hi: f32,
}

/// The range `int8`/`uint8` map onto their 256 codes, for every dimension:
/// two finite numbers, low < high.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantRange {
    lo: f32,
    hi: f32,
}

impl QuantRange {
    /// `[-1, 1]`: a bound for every component of a unit vector.
    pub const DEFAULT: QuantRange = QuantRange { lo: -1.0, hi: 1.0 };

    /// The range `[lo, hi]`, checked.
    pub fn new(lo: f32, hi: f32) -> Result<QuantRange, BadRange> {
        if lo.is_finite() && hi.is_finite() && lo < hi {
            Ok(QuantRange { lo, hi })
        } else {
            Err(BadRange { lo, hi })
        }
    }

    /// The low end.
    pub fn lo(self) -> f32 {
        self.lo
    }

    /// The high end.
    pub fn hi(self) -> f32 {
        self.hi
    }
}

impl Default for QuantRange {
    fn default() -> Self {
        QuantRange::DEFAULT
    }
}

/// One finished vector at its precision.
#[derive(Clone, Debug, PartialEq)]
pub enum Embedding {
    /// [`Precision::Float32`].
    Float32(Vec<f32>),
    /// [`Precision::Int8`] and [`Precision::Binary`].
    Int8(Vec<i8>),
    /// [`Precision::Uint8`] and [`Precision::Ubinary`].
    Uint8(Vec<u8>),
}

impl Embedding {
    /// Values held (bytes for the packed binary precisions).
    pub fn len(&self) -> usize {
        match self {
            Embedding::Float32(v) => v.len(),
            Embedding::Int8(v) => v.len(),
            Embedding::Uint8(v) => v.len(),
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The floats of a float32 vector.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Embedding::Float32(v) => Some(v),
            _ => None,
        }
    }
}

/// Quantizes a finished float vector to `precision`; `range` is used by
/// `int8`/`uint8`. Float32 returns `v` itself.
pub fn quantize(v: Vec<f32>, precision: Precision, range: QuantRange) -> Embedding {
    match precision {
        Precision::Float32 => Embedding::Float32(v),
        Precision::Uint8 => Embedding::Uint8(v.iter().map(|&x| scalar(x, range) as u8).collect()),
        Precision::Int8 => Embedding::Int8(
            v.iter()
                .map(|&x| (scalar(x, range) - 128.0).trunc() as i8)
                .collect(),
        ),
        Precision::Ubinary => Embedding::Uint8(sign_bits(&v).collect()),
        Precision::Binary => {
            Embedding::Int8(sign_bits(&v).map(|b| (i16::from(b) - 128) as i8).collect())
        }
    }
}

/// `x` on the 0..=255 scale of `range`, clamped (not yet truncated).
fn scalar(x: f32, range: QuantRange) -> f32 {
    let step = (range.hi - range.lo) / 255.0;
    ((x - range.lo) / step).clamp(0.0, 255.0)
}

/// `x > 0` bits, 8 per byte, most significant first.
fn sign_bits(v: &[f32]) -> impl Iterator<Item = u8> + '_ {
    v.chunks(8).map(|bits| {
        bits.iter()
            .enumerate()
            .filter(|(_, x)| **x > 0.0)
            .fold(0u8, |b, (i, _)| b | (0x80 >> i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_packs_msb_first() {
        // Bits 1,0,0,0,0,0,0,1 | 1 (padded) → 0x81, 0x80.
        let v = vec![0.5, -1.0, 0.0, -0.1, -0.2, -0.3, -0.4, 0.1, 2.0];
        assert_eq!(
            quantize(v.clone(), Precision::Ubinary, QuantRange::DEFAULT),
            Embedding::Uint8(vec![0x81, 0x80])
        );
        assert_eq!(
            quantize(v, Precision::Binary, QuantRange::DEFAULT),
            Embedding::Int8(vec![1, 0]) // 0x81 - 128, 0x80 - 128
        );
        assert_eq!(Precision::Binary.width(9), 2);
    }

    #[test]
    fn scalar_quantization_matches_sentence_transformers() {
        // numpy on float32 embeddings and float32 ranges:
        // ((x - lo) / ((hi - lo) / 255)).astype(uint8), and - 128 for int8.
        // In float32, 2 / (2 / 255) is 254.99998, so x = hi truncates to 254.
        let v = vec![-1.0, 0.0, 0.5, 1.0, 3.0];
        assert_eq!(
            quantize(v.clone(), Precision::Uint8, QuantRange::DEFAULT),
            Embedding::Uint8(vec![0, 127, 191, 254, 255])
        );
        assert_eq!(
            quantize(v, Precision::Int8, QuantRange::DEFAULT),
            Embedding::Int8(vec![-128, 0, 63, 126, 127])
        );
    }

    #[test]
    fn ranges_are_checked_and_names_round_trip() {
        assert!(QuantRange::new(0.0, 1.0).is_ok());
        for (lo, hi) in [
            (1.0, 1.0),
            (1.0, 0.0),
            (f32::NAN, 1.0),
            (0.0, f32::INFINITY),
        ] {
            assert!(QuantRange::new(lo, hi).is_err(), "[{lo}, {hi}]");
        }
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()), Some(p));
        }
        assert_eq!(Precision::parse("float"), Some(Precision::Float32));
        assert_eq!(Precision::parse("f16"), None);
    }
}
