//! ggml tensor types: every id that ggml has assigned, with its block size
//! and bytes per block, so a file is listed even when kiln cannot run it.
//!
//! Ids and sizes follow `ggml.h` (`enum ggml_type`) and the `type_traits`
//! table of `ggml.c`. Ids 4, 5, 31-33 and 36-38 were used by types that ggml
//! has since removed; they are unknown here, as they are to ggml. (Q8_1 is
//! 36 bytes as in ggml's `block_q8_1`; gguf-py 0.19 says 40, a leftover of an
//! older layout. Q8_1 is a dot-product intermediate, never stored in files.)

use std::fmt;

/// Elements per block of the k-quants (`QK_K` in ggml).
pub const QK_K: u64 = 256;

macro_rules! ggml_types {
    ($($(#[$doc:meta])* $variant:ident = $id:literal, $name:literal, $block:expr, $bytes:expr;)*) => {
        /// A ggml tensor type, as stored in a GGUF tensor info.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[expect(
            non_camel_case_types,
            reason = "ggml's own names (Q4_K, IQ2_XXS) are the ones users know"
        )]
        pub enum GgmlType {
            $($(#[$doc])* $variant = $id,)*
        }

        impl GgmlType {
            /// Every known type, in id order.
            pub const ALL: &[GgmlType] = &[$(GgmlType::$variant,)*];

            /// The type with ggml id `id`, if ggml defines one.
            pub fn from_id(id: u32) -> Option<Self> {
                match id {
                    $($id => Some(GgmlType::$variant),)*
                    _ => None,
                }
            }

            /// ggml's name for the type (`ggml_type_name`), e.g. `Q8_0`.
            pub fn name(self) -> &'static str {
                match self {
                    $(GgmlType::$variant => $name,)*
                }
            }

            /// Elements per block (1 for plain types).
            pub fn block_size(self) -> u64 {
                match self {
                    $(GgmlType::$variant => $block,)*
                }
            }

            /// Bytes per block.
            pub fn type_size(self) -> u64 {
                match self {
                    $(GgmlType::$variant => $bytes,)*
                }
            }
        }
    };
}

ggml_types! {
    /// 32-bit float.
    F32 = 0, "f32", 1, 4;
    /// IEEE half.
    F16 = 1, "f16", 1, 2;
    /// f16 scale + 32 x 4-bit.
    Q4_0 = 2, "q4_0", 32, 18;
    /// f16 scale and min + 32 x 4-bit.
    Q4_1 = 3, "q4_1", 32, 20;
    /// f16 scale + 32 x 5-bit.
    Q5_0 = 6, "q5_0", 32, 22;
    /// f16 scale and min + 32 x 5-bit.
    Q5_1 = 7, "q5_1", 32, 24;
    /// f16 scale + 32 x i8.
    Q8_0 = 8, "q8_0", 32, 34;
    /// f16 scale and sum + 32 x i8.
    Q8_1 = 9, "q8_1", 32, 36;
    /// 2-bit k-quant.
    Q2_K = 10, "q2_K", QK_K, 84;
    /// 3-bit k-quant.
    Q3_K = 11, "q3_K", QK_K, 110;
    /// 4-bit k-quant.
    Q4_K = 12, "q4_K", QK_K, 144;
    /// 5-bit k-quant.
    Q5_K = 13, "q5_K", QK_K, 176;
    /// 6-bit k-quant.
    Q6_K = 14, "q6_K", QK_K, 210;
    /// 8-bit k-quant (intermediate type of ggml's dot products).
    Q8_K = 15, "q8_K", QK_K, 292;
    /// 2.06 bits per weight i-quant.
    IQ2_XXS = 16, "iq2_xxs", QK_K, 66;
    /// 2.31 bits per weight i-quant.
    IQ2_XS = 17, "iq2_xs", QK_K, 74;
    /// 3.06 bits per weight i-quant.
    IQ3_XXS = 18, "iq3_xxs", QK_K, 98;
    /// 1.56 bits per weight i-quant.
    IQ1_S = 19, "iq1_s", QK_K, 50;
    /// 4-bit non-linear quant, 32-element blocks.
    IQ4_NL = 20, "iq4_nl", 32, 18;
    /// 3.44 bits per weight i-quant.
    IQ3_S = 21, "iq3_s", QK_K, 110;
    /// 2.5 bits per weight i-quant.
    IQ2_S = 22, "iq2_s", QK_K, 82;
    /// 4.25 bits per weight non-linear quant.
    IQ4_XS = 23, "iq4_xs", QK_K, 136;
    /// 8-bit integer.
    I8 = 24, "i8", 1, 1;
    /// 16-bit integer.
    I16 = 25, "i16", 1, 2;
    /// 32-bit integer.
    I32 = 26, "i32", 1, 4;
    /// 64-bit integer.
    I64 = 27, "i64", 1, 8;
    /// 64-bit float.
    F64 = 28, "f64", 1, 8;
    /// 1.75 bits per weight i-quant.
    IQ1_M = 29, "iq1_m", QK_K, 56;
    /// bfloat16.
    BF16 = 30, "bf16", 1, 2;
    /// Ternary, 1.69 bits per weight.
    TQ1_0 = 34, "tq1_0", QK_K, 54;
    /// Ternary, 2.06 bits per weight.
    TQ2_0 = 35, "tq2_0", QK_K, 66;
    /// Microscaling FP4: an e8m0 scale + 32 x e2m1.
    MXFP4 = 39, "mxfp4", 32, 17;
    /// NVIDIA FP4: 4 e4m3 scales (one per 16) + 64 x e2m1.
    NVFP4 = 40, "nvfp4", 64, 36;
    /// 1-bit: f16 scale + 128 sign bits.
    Q1_0 = 41, "q1_0", 128, 18;
}

impl GgmlType {
    /// The ggml id stored in GGUF files.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Whether the type stores blocks of several elements.
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes taken by `n_elements` elements, or `None` if `n_elements` is
    /// not a whole number of blocks or the size overflows `u64`.
    pub fn n_bytes(self, n_elements: u64) -> Option<u64> {
        if !n_elements.is_multiple_of(self.block_size()) {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

impl fmt::Display for GgmlType {
    /// Upper-case, as gguf-py's `GGMLQuantizationType` names types
    /// (`Q8_0`, `Q4_K`, `BF16`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.name().to_ascii_uppercase())
    }
}

/// llama.cpp's `llama_ftype` name for a `general.file_type` value (what a
/// file is "quantized as": the type of most of its weights).
pub fn file_type_name(ft: u32) -> String {
    match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        other => return format!("file type {other}"),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for &t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
            assert_eq!(GgmlType::from_id(removed), None);
        }
    }

    #[test]
    fn sizes_match_block_structs() {
        use crate::quant::*;
        use std::mem::size_of;
        assert_eq!(GgmlType::Q8_0.type_size() as usize, size_of::<BlockQ8_0>());
        assert_eq!(GgmlType::Q4_0.type_size() as usize, size_of::<BlockQ4_0>());
        assert_eq!(GgmlType::Q5_0.type_size() as usize, size_of::<BlockQ5_0>());
        assert_eq!(GgmlType::Q4_K.type_size() as usize, size_of::<BlockQ4K>());
        assert_eq!(GgmlType::Q5_K.type_size() as usize, size_of::<BlockQ5K>());
        assert_eq!(GgmlType::Q6_K.type_size() as usize, size_of::<BlockQ6K>());
    }

    #[test]
    fn display_is_gguf_py_style() {
        assert_eq!(GgmlType::Q4_K.to_string(), "Q4_K");
        assert_eq!(GgmlType::BF16.to_string(), "BF16");
        assert_eq!(GgmlType::IQ2_XXS.to_string(), "IQ2_XXS");
    }

    #[test]
    fn n_bytes_needs_whole_blocks() {
        assert_eq!(GgmlType::Q8_0.n_bytes(64), Some(68));
        assert_eq!(GgmlType::Q8_0.n_bytes(33), None);
        assert_eq!(GgmlType::F32.n_bytes(u64::MAX), None);
    }
}
