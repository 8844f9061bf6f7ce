//! The kernels, each described once over the ops of [`crate::ops`].
//!
//! A [`Family`] is one method of the runtime's `KernelSet`: the fn-pointer
//! type it returns, the shape parameters its getter takes (the *key*), and a
//! body builder. The builder gets the key as `Some(value)` for a variant
//! specialized by the shape table (the value becomes a literal: loops unroll,
//! remainders vanish) or `None` for the generic variant (read from the
//! arguments). Bodies call only ops and plain Rust, so every ISA shares them.
//!
//! The table of families is here; their bodies are in one module per kind
//! (the K-quant matmuls in [`crate::kquant`]).

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use crate::interface::{self, FnType};

pub mod attention;
pub mod elementwise;
pub mod matmul;
pub mod norm;
pub mod pooling;
pub mod rope;

use attention::{attend_cache, attend_cache_f16, attention};
use elementwise::{gather_q8_0, geglu_q8_0, quantize_q8_0, swiglu_q8_0, unary, widen_f16};
use matmul::{Rows, matmul_f32, matmul_q8_0, matmul_q8_0x8};
use norm::{layer_norm, rms_norm, rms_norm_q8_0};
use pooling::mean_pool;
use rope::rope;

/// Builds a kernel body for a shape key (`None` entries stay runtime values).
pub type BodyFn = fn(&[Option<usize>]) -> TokenStream;

/// One kernel family (one `KernelSet` getter), declared once: the
/// runtime's fn type, `KernelSet` method and do-nothing stub are generated
/// from it ([`crate::interface`]), and so are its kernels for every ISA.
pub struct Family {
    /// The `KernelSet` method, also the kernel's base name.
    pub getter: &'static str,
    /// Whether the runtime never calls this family: it then gets its generic
    /// variant only (the shape table may not list it), kept as a reference
    /// for the property tests and benches. Specializing it for every shape
    /// would compile thousands of lines no model runs.
    pub reference_only: bool,
    /// The fn-pointer type the getter returns; the kernels take its parameters.
    pub fn_type: &'static FnType,
    /// The getter's doc comment in `KernelSet`.
    pub getter_doc: &'static str,
    /// The getter's shape parameters (all `usize`), in order.
    pub key: &'static [&'static str],
    /// What the kernel computes (emitted as its doc comment).
    pub doc: &'static str,
    /// The property test that checks every ISA's kernels of this family
    /// against the scalar ones (and those against a plain formula), as
    /// `file::function` under the `kiln` crate's `tests/`; the test
    /// `kernels-gen/tests/families.rs` fails if it does not exist or its
    /// file never calls the getter.
    pub test: &'static str,
    /// The body for ISAs whose registers hold two 8-row groups
    /// ([`Lowering::wide_groups`](crate::lower::Lowering::wide_groups)), if
    /// the family has one.
    pub wide_body: Option<BodyFn>,
    /// Builds the body for a key (`None` entries stay runtime values).
    pub body: BodyFn,
}

impl Family {
    /// The kernel's name for a key: `rms_norm_768`, `matmul_q8_0_n768_k768`,
    /// or `..._generic` when any part of the key is a runtime value.
    pub fn variant_name(&self, key: &[Option<usize>]) -> String {
        if self.key.is_empty() {
            return self.getter.to_string();
        }
        if key.iter().any(Option::is_none) {
            return format!("{}_generic", self.getter);
        }
        let mut name = self.getter.to_string();
        for (k, v) in self.key.iter().zip(key) {
            let v = v.expect("checked above");
            if self.key.len() == 1 {
                name += &format!("_{v}");
            } else {
                name += &format!("_{k}{v}");
            }
        }
        name
    }
}

/// The family whose getter is `getter`, if any.
pub fn family(getter: &str) -> Option<&'static Family> {
    all_families().find(|f| f.getter == getter)
}

/// Every family, in `KernelSet` order.
pub fn all_families() -> impl Iterator<Item = &'static Family> {
    FAMILIES.iter().chain(crate::kquant::FAMILIES)
}

/// `let name: usize = value;` with a literal when specialized.
pub(crate) fn bind(name: &str, v: Option<usize>, runtime: TokenStream) -> TokenStream {
    let id = format_ident!("{name}");
    match v {
        Some(v) => {
            let v = Literal::usize_unsuffixed(v);
            quote!(let #id: usize = #v;)
        }
        None => quote!(let #id: usize = #runtime;),
    }
}

/// Every family, in `KernelSet` order.
pub const FAMILIES: &[Family] = &[
    Family {
        getter: "quantize_q8_0",
        reference_only: false,
        fn_type: &interface::QUANTIZE_Q8_0,
        getter_doc: "Quantize rows of `k` values to Q8_0.",
        key: &["k"],
        doc: "Quantizes rows of `k` values to Q8_0, bit-identical to `quantize_row_q8_0_reference`.",
        test: "kernels_props::quantize_is_bit_exact_with_reference",
        wide_body: None,
        body: quantize_q8_0,
    },
    Family {
        getter: "matmul_q8_0",
        reference_only: true,
        fn_type: &interface::MATMUL_Q8_0,
        getter_doc: "Q8_0 matmul for a weight of `n` rows of `k`.",
        key: &["n", "k"],
        doc: "`out[i][j] (+)= bias[j] + Σ_b dw·dx·(wq·xq)` over Q8_0 blocks. \
              Weights are walked in panels of `PANEL` rows (kept in L2) and, within a panel, \
              in register tiles of `MR` tokens × `NR` weight rows; one token uses `1 × 4` tiles.",
        test: "kernels_props::matmul_q8_0_matches_reference",
        wide_body: None,
        body: matmul_q8_0,
    },
    Family {
        getter: "matmul_q8_0x8",
        reference_only: false,
        fn_type: &interface::MATMUL_Q8_0X8,
        getter_doc: "Q8_0 matmul over 8-row-interleaved weights of `n` rows of `k`.",
        key: &["n", "k"],
        doc: "`out[i][j] (+)= bias[j] + Σ_b dw·dx·(wq·xq)` over weights repacked in groups of 8 rows: \
              each int8 step yields the 8 rows' partial dots in one vector, each block one scaled \
              fma per 8 rows. Walked in panels of `X8_PANEL` groups (kept in L2), register tiles of \
              `X8_MR` tokens × 8 rows; where registers hold 16 rows, many tokens take tiles of \
              up to 8 tokens × 16 rows (two groups; `X16_TILES`).",
        test: "kernels_props::matmul_q8_0_matches_reference",
        wide_body: Some(|key| matmul_q8_0x8(Rows::Sixteen, key)),
        body: |key| matmul_q8_0x8(Rows::Eight, key),
    },
    Family {
        getter: "matmul_f32",
        reference_only: false,
        fn_type: &interface::MATMUL_F32,
        getter_doc: "f32 matmul for a weight of `n` rows of `k`.",
        key: &["n", "k"],
        doc: "`out[i][j] (+)= bias[j] + Σ_k x[i][k]·w[j][k]` in f32 (for small tensors).",
        test: "kernels_props::matmul_f32_matches_reference",
        wide_body: None,
        body: matmul_f32,
    },
    Family {
        getter: "rms_norm",
        reference_only: false,
        fn_type: &interface::RMS_NORM,
        getter_doc: "RMSNorm over `dim` values.",
        key: &["dim"],
        doc: "RMSNorm of each row: `out = x / sqrt(mean(x²) + eps) · w`.",
        test: "kernels_props::norms_match_reference",
        wide_body: None,
        body: rms_norm,
    },
    Family {
        getter: "rms_norm_q8_0",
        reference_only: true,
        fn_type: &interface::RMS_NORM_Q8_0,
        getter_doc: "RMSNorm over `dim` values fused with Q8_0 quantization.",
        key: &["dim"],
        doc: "RMSNorm of each row fused with Q8_0 quantization of the result \
              (equal to `quantize_q8_0(rms_norm(x))` bit for bit).",
        test: "kernels_props::norms_match_reference",
        wide_body: None,
        body: rms_norm_q8_0,
    },
    Family {
        getter: "layer_norm",
        reference_only: false,
        fn_type: &interface::LAYER_NORM,
        getter_doc: "LayerNorm over `dim` values.",
        key: &["dim"],
        doc: "LayerNorm of each row: `out = (x - μ) / sqrt(σ² + eps) · w + b` (two passes).",
        test: "kernels_props::norms_match_reference",
        wide_body: None,
        body: layer_norm,
    },
    Family {
        getter: "rope",
        reference_only: false,
        fn_type: &interface::ROPE,
        getter_doc: "RoPE for heads of `head_dim`.",
        key: &["head_dim"],
        doc: "Rotary embedding in place over rows of `n_heads` heads: NeoX pairs `(x[i], x[i + d/2])` \
              are vectorized; adjacent pairs `(x[2i], x[2i+1])` use plain code.",
        test: "kernels_props::rope_matches_reference",
        wide_body: None,
        body: rope,
    },
    Family {
        getter: "attention",
        reference_only: false,
        fn_type: &interface::ATTENTION,
        getter_doc: "Attention for heads of `head_dim`.",
        key: &["head_dim"],
        doc: "Attention for query rows `rows`: per query and head, scores `scale·q·k` over the \
              keys the mask allows, softmax (max-subtracted), then the weighted sum of `v`. \
              Query head `h` reads KV head `h / (n_head / n_head_kv)`.",
        test: "kernels_props::attention_matches_reference",
        wide_body: None,
        body: attention,
    },
    Family {
        getter: "attend_cache",
        reference_only: false,
        fn_type: &interface::ATTEND_CACHE,
        getter_doc: "Attention over a decoder's cache for heads of `head_dim`.",
        key: &["head_dim"],
        doc: "Attention of the query heads in `q` (sharing one KV head) over the key and value rows \
              `at.spans` (`at.stride` apart): scores `scale·q·k`, softmax (max-subtracted), the \
              weighted sum of `v`. Each key and value row is read once for all the heads.",
        test: "kernels_props::attend_cache_matches_reference",
        wide_body: None,
        body: attend_cache,
    },
    Family {
        getter: "attend_cache_f16",
        reference_only: false,
        fn_type: &interface::ATTEND_CACHE_F16,
        getter_doc: "Attention over a decoder's f16 cache for heads of `head_dim`.",
        key: &["head_dim"],
        doc: "`attend_cache` over key and value rows of IEEE halves (as bits), each value converted \
              to f32 exactly as it is read: the same sums in the same order, so the result is the \
              f32 kernel's over the converted rows, and half the bytes are read.",
        test: "kernels_props::attend_cache_f16_matches_reference",
        wide_body: None,
        body: attend_cache_f16,
    },
    Family {
        getter: "widen_f16",
        reference_only: true,
        fn_type: &interface::WIDEN_F16,
        getter_doc: "IEEE halves to f32.",
        key: &[],
        doc: "`out[i] = f32(src[i])` for halves given as bits, exactly: the conversion the f16 cache \
              kernels read rows with, exposed so that it can be tested on every half.",
        test: "kernels_props::f16_widening_is_bit_exact",
        wide_body: None,
        body: |_| widen_f16(),
    },
    Family {
        getter: "gelu_tanh",
        reference_only: false,
        fn_type: &interface::UNARY,
        getter_doc: "GELU, tanh approximation.",
        key: &[],
        doc: "GELU, tanh approximation, in place.",
        test: "kernels_props::activations_match_reference",
        wide_body: None,
        body: |_| unary(quote!(gelu_tanh_v)),
    },
    Family {
        getter: "gelu_erf",
        reference_only: false,
        fn_type: &interface::UNARY,
        getter_doc: "GELU, exact (erf).",
        key: &[],
        doc: "GELU with erf, in place.",
        test: "kernels_props::activations_match_reference",
        wide_body: None,
        body: |_| unary(quote!(gelu_erf_v)),
    },
    Family {
        getter: "silu",
        reference_only: false,
        fn_type: &interface::UNARY,
        getter_doc: "SiLU (swish).",
        key: &[],
        doc: "SiLU, `x / (1 + e^{-x})`, in place.",
        test: "kernels_props::activations_match_reference",
        wide_body: None,
        body: |_| unary(quote!(silu_v)),
    },
    Family {
        getter: "geglu_q8_0",
        reference_only: false,
        fn_type: &interface::GEGLU_Q8_0,
        getter_doc: "GeGLU over `dim` values fused with Q8_0 quantization.",
        key: &["dim"],
        doc: "`out = Q8_0(gelu_tanh(gate) ⊙ up)`, block by block.",
        test: "kernels_props::activations_match_reference",
        wide_body: None,
        body: geglu_q8_0,
    },
    Family {
        getter: "swiglu_q8_0",
        reference_only: false,
        fn_type: &interface::GEGLU_Q8_0,
        getter_doc: "SwiGLU over `dim` values fused with Q8_0 quantization.",
        key: &["dim"],
        doc: "`out = Q8_0(silu(gate) ⊙ up)`, block by block.",
        test: "kernels_props::activations_match_reference",
        wide_body: None,
        body: swiglu_q8_0,
    },
    Family {
        getter: "gather_q8_0",
        reference_only: false,
        fn_type: &interface::GATHER_Q8_0,
        getter_doc: "Embedding-row gather from a Q8_0 table.",
        key: &["dim"],
        doc: "Gathers rows `ids` of a Q8_0 table, `out = (d·q)·scale`.",
        test: "kernels_props::gather_pool_normalize_match_reference",
        wide_body: None,
        body: gather_q8_0,
    },
    Family {
        getter: "mean_pool",
        reference_only: false,
        fn_type: &interface::MEAN_POOL,
        getter_doc: "Mean pooling over `dim` values.",
        key: &["dim"],
        doc: "Mean of the rows of `x` (zero rows give zeros).",
        test: "kernels_props::gather_pool_normalize_match_reference",
        wide_body: None,
        body: mean_pool,
    },
    Family {
        getter: "l2_normalize",
        reference_only: false,
        fn_type: &interface::L2_NORMALIZE,
        getter_doc: "L2 normalization.",
        key: &[],
        doc: "Scales `x` to unit L2 norm (a zero vector stays zero).",
        test: "kernels_props::gather_pool_normalize_match_reference",
        wide_body: None,
        body: |_| {
            quote! {
                let norm = dot_f32(x, x).sqrt();
                if norm > 0.0 {
                    scale_f32(x, 1.0 / norm);
                }
            }
        },
    },
];
