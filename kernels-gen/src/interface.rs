//! The runtime's side of the kernel families: the fn-pointer types, the
//! `KernelSet` trait and a do-nothing kernel set, generated from
//! [`FAMILIES`](crate::kernels::all_families) so that a family is declared
//! once.
//!
//! The output is committed as `runtime/src/kernel_set.rs` (included by
//! `runtime/src/kernels.rs`) rather than generated into `OUT_DIR`:
//! `kiln-runtime` is the crate that defines the interface, and a build
//! dependency on its own consumer's generator would compile syn and
//! prettyplease into every build of it and hide its public API from a reader
//! of the source. The test `kernels-gen/tests/families.rs` fails when the
//! committed file is stale (`KILN_BLESS=1` rewrites it).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::kernels::{Family, all_families};

/// A fn-pointer type of `kiln_runtime::kernels`: what a family's getter
/// returns (several families may share one, as the two GELUs do). Written
/// with `fn_type!` as the type alias it generates.
pub struct FnType {
    /// The type's name, e.g. `RmsNormFn`.
    pub name: &'static str,
    /// Its parameter list; a kernel of a family returning it has the same.
    pub params: fn() -> TokenStream,
    /// The parameters' names, in order.
    pub args: &'static [&'static str],
    /// What a function of the type computes: its doc comment, one string
    /// per line as `///` gives them (intra-doc links resolve in
    /// `kiln_runtime::kernels`).
    pub doc: &'static [&'static str],
}

/// A [`FnType`] from a documented `type Name = fn(arg: Type, ..);`: the
/// names must be identifiers and the types Rust types, so a malformed
/// parameter list does not compile.
macro_rules! fn_type {
    (
        $(#[doc = $doc:literal])+
        type $name:ident = fn($($arg:ident: $ty:ty),* $(,)?);
    ) => {
        FnType {
            name: stringify!($name),
            params: || quote!($($arg: $ty),*),
            args: &[$(stringify!($arg)),*],
            doc: &[$($doc),+],
        }
    };
}

/// Rows of `x` quantized to Q8_0.
pub const QUANTIZE_Q8_0: FnType = fn_type! {
    /// `out` = rows of `x` quantized to Q8_0 (`x.len() == 32 · out.len()`).
    type QuantizeQ8_0Fn = fn(x: &[f32], out: &mut [BlockQ8_0]);
};

/// The Q8_0 row-layout matmul.
pub const MATMUL_Q8_0: FnType = fn_type! {
    /// `out[i][j] (+)= bias[j] + Σ_k x[i][k]·W[j][k]` with Q8_0 weights and
    /// activations; `m = out.rows()`, `n = out.cols()`, `k = 32 · x.len() / m`.
    /// With `accumulate` the result is added to `out` (fused residual add).
    /// `w`, `bias` and `out` may be a block of columns of the full layer (see
    /// [`MATMUL_COL_ALIGN`]).
    type MatmulQ8_0Fn = fn(
        w: &[BlockQ8_0],
        x: &[BlockQ8_0],
        bias: Option<&[f32]>,
        out: MatMut<'_>,
        accumulate: bool,
    );
};

/// The Q8_0 matmul over 8-row groups.
pub const MATMUL_Q8_0X8: FnType = fn_type! {
    /// The same over weights repacked into groups of 8 rows
    /// ([`repack_q8_0x8`](crate::quant::repack_q8_0x8)): `w` holds the
    /// `ceil(n / 8)` groups covering `out`'s columns, `k / 32` blocks each.
    /// Faster than [`MatmulQ8_0Fn`] for many tokens (no horizontal sums, one
    /// scale multiply per 8 weight rows).
    type MatmulQ8_0x8Fn = fn(
        w: &[BlockQ8_0x8],
        x: &[BlockQ8_0],
        bias: Option<&[f32]>,
        out: MatMut<'_>,
        accumulate: bool,
    );
};

/// Rows of `x` quantized to Q8_K.
pub const QUANTIZE_Q8_K: FnType = fn_type! {
    /// `out` = rows of `x` quantized to Q8_K (`x.len() == 256 · out.len()`),
    /// bit-identical to [`quantize_row_q8_k_reference`](crate::quant::quantize_row_q8_k_reference):
    /// the activations of the K-quant matmuls.
    type QuantizeQ8KFn = fn(x: &[f32], out: &mut [BlockQ8K]);
};

/// The Q4_K row-layout matmul.
pub const MATMUL_Q4_K: FnType = fn_type! {
    /// As [`MatmulQ8_0Fn`] with Q4_K weights and Q8_K activations
    /// (`k = 256 · x.len() / m`).
    type MatmulQ4KFn = fn(
        w: &[BlockQ4K],
        x: &[BlockQ8K],
        bias: Option<&[f32]>,
        out: MatMut<'_>,
        accumulate: bool,
    );
};

/// The Q6_K row-layout matmul.
pub const MATMUL_Q6_K: FnType = fn_type! {
    /// As [`MatmulQ8_0Fn`] with Q6_K weights and Q8_K activations
    /// (`k = 256 · x.len() / m`).
    type MatmulQ6KFn = fn(
        w: &[BlockQ6K],
        x: &[BlockQ8K],
        bias: Option<&[f32]>,
        out: MatMut<'_>,
        accumulate: bool,
    );
};

/// The Q4_K matmul over 8-row groups.
pub const MATMUL_Q4_KX8: FnType = fn_type! {
    /// As [`MatmulQ4KFn`] over weights repacked into groups of 8 rows
    /// ([`repack_q4_kx8`](crate::quant::repack_q4_kx8)): `w` holds the
    /// `ceil(n / 8)` groups covering `out`'s columns, `k / 256` blocks each.
    type MatmulQ4Kx8Fn = fn(
        w: &[BlockQ4Kx8],
        x: &[BlockQ8K],
        bias: Option<&[f32]>,
        out: MatMut<'_>,
        accumulate: bool,
    );
};

/// The Q6_K matmul over 8-row groups.
pub const MATMUL_Q6_KX8: FnType = fn_type! {
    /// As [`MatmulQ6KFn`] over weights repacked into groups of 8 rows
    /// ([`repack_q6_kx8`](crate::quant::repack_q6_kx8)).
    type MatmulQ6Kx8Fn = fn(
        w: &[BlockQ6Kx8],
        x: &[BlockQ8K],
        bias: Option<&[f32]>,
        out: MatMut<'_>,
        accumulate: bool,
    );
};

/// The Q5_0 row-layout matmul.
pub const MATMUL_Q5_0: FnType = fn_type! {
    /// As [`MatmulQ8_0Fn`] with Q5_0 weights and Q8_0 activations (llama.cpp's
    /// pairing; `k = 32 · x.len() / m`).
    type MatmulQ5_0Fn = fn(
        w: &[BlockQ5_0],
        x: &[BlockQ8_0],
        bias: Option<&[f32]>,
        out: MatMut<'_>,
        accumulate: bool,
    );
};

/// The Q4_1 matmul over 8-row groups.
pub const MATMUL_Q4_1X8: FnType = fn_type! {
    /// As [`MatmulQ8_0x8Fn`] with Q4_1 weights repacked into groups of 8 rows
    /// ([`repack_q4_1x8`](crate::quant::repack_q4_1x8)) and Q8_0 activations
    /// (llama.cpp pairs Q4_1 with Q8_1: the same quants plus each block's
    /// sum, which the kernel computes): `w` holds the `ceil(n / 8)` groups
    /// covering `out`'s columns, `k / 32` blocks each.
    type MatmulQ4_1x8Fn = fn(
        w: &[BlockQ4_1x8],
        x: &[BlockQ8_0],
        bias: Option<&[f32]>,
        out: MatMut<'_>,
        accumulate: bool,
    );
};

/// The f32 matmul.
pub const MATMUL_F32: FnType = fn_type! {
    /// The same with f32 weights and f32 activations.
    type MatmulF32Fn = fn(
        w: &[f32],
        x: &[f32],
        bias: Option<&[f32]>,
        out: MatMut<'_>,
        accumulate: bool,
    );
};

/// RMSNorm.
pub const RMS_NORM: FnType = fn_type! {
    /// RMSNorm of each row of `x` (`dim = w.len()`): `out = x / sqrt(mean(x²) + eps) · w`.
    /// The weight is used as stored in the GGUF (llama.cpp's converter already
    /// adds Gemma's `1 +`).
    type RmsNormFn = fn(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]);
};

/// RMSNorm fused with Q8_0 quantization.
pub const RMS_NORM_Q8_0: FnType = fn_type! {
    /// RMSNorm fused with quantization of its output to Q8_0.
    type RmsNormQ8_0Fn = fn(x: &[f32], w: &[f32], eps: f32, out: &mut [BlockQ8_0]);
};

/// LayerNorm.
pub const LAYER_NORM: FnType = fn_type! {
    /// LayerNorm of each row with weight and bias: `out = (x - μ)/sqrt(σ² + eps)·w + b`.
    type LayerNormFn = fn(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]);
};

/// Rotary position embedding.
pub const ROPE: FnType = fn_type! {
    /// Rotary position embedding, in place, over rows of `n_heads · head_dim`
    /// values (`x.len() = rows · n_heads · head_dim`); row `r` has position
    /// `pos0 + r` and every head of a row is rotated the same way; `cos`/`sin`
    /// are tables of `[position][head_dim / 2]` (`θ(p, i) = p·base^(-2i/d)`);
    /// `neox` selects the split-halves pairing (`x[i]`, `x[i + d/2]`, as
    /// Gemma uses) instead of adjacent pairs (`x[2i]`, `x[2i+1]`).
    type RopeFn = fn(
        x: &mut [f32],
        n_heads: usize,
        head_dim: usize,
        pos0: usize,
        cos: &[f32],
        sin: &[f32],
        neox: bool,
    );
};

/// Attention over a sequence.
pub const ATTENTION: FnType = fn_type! {
    /// Attention for query rows `rows` of one sequence: `q` is
    /// `[n_tokens][n_head·head_dim]`, `k`/`v` are `[n_tokens][n_head_kv·head_dim]`,
    /// `out` receives `[rows.len()][n_head·head_dim]`; `scratch` holds at least
    /// `n_tokens` f32 (one score row), and with [`attention_scratch_len`] f32
    /// the kernel runs tiles of up to [`ATTN_TILE_ROWS`] queries (much faster: each
    /// value row is read once per tile, and the scores are FMAs into vectors of
    /// transposed keys instead of dot products).
    type AttentionFn = fn(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        shape: &AttnShape,
        rows: core::ops::Range<usize>,
        out: &mut [f32],
        scratch: &mut [f32],
    );
};

/// Attention over a decoder's cache.
pub const ATTEND_CACHE: FnType = fn_type! {
    /// Attention of the query heads in `q` (`[q.len() / head_dim][head_dim]`,
    /// heads that share one KV head) over cached keys and values: rows
    /// `at.spans` of `k` and `v` (row `j` starts at `j · stride`). `out`
    /// receives `[q.len() / head_dim][head_dim]`; `scratch` holds at least
    /// `q.len() / head_dim` × (rows in the spans) f32. Each key and value row
    /// is read once for all the heads: the grouped query heads of one position
    /// of a decoder, over its cache.
    type AttendCacheFn = fn(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        at: &CacheAttn<'_>,
        out: &mut [f32],
        scratch: &mut [f32],
    );
};

/// Attention over a decoder's f16 cache.
pub const ATTEND_CACHE_F16: FnType = fn_type! {
    /// [`AttendCacheFn`] over a cache of IEEE halves: `k` and `v` hold f16
    /// bits, each converted to f32 exactly as it is read. The arithmetic is
    /// the f32 kernel's, in the same order: the result equals
    /// [`AttendCacheFn`]'s over the converted cache, for half the bytes read.
    type AttendCacheF16Fn = fn(
        q: &[f32],
        k: &[u16],
        v: &[u16],
        at: &CacheAttn<'_>,
        out: &mut [f32],
        scratch: &mut [f32],
    );
};

/// IEEE halves to f32.
pub const WIDEN_F16: FnType = fn_type! {
    /// `out[i] = f32(src[i])` for IEEE halves given as bits (`out` at least
    /// as long as `src`): exact for every half, subnormals, infinities and
    /// NaNs included.
    type WidenF16Fn = fn(src: &[u16], out: &mut [f32]);
};

/// An element-wise activation.
pub const UNARY: FnType = fn_type! {
    /// Element-wise activation in place (GELU, tanh approximation or erf; SiLU).
    type UnaryFn = fn(x: &mut [f32]);
};

/// A gated activation (GeGLU, SwiGLU) fused with Q8_0 quantization.
pub const GEGLU_Q8_0: FnType = fn_type! {
    /// A gated activation fused with quantization: `out = Q8_0(act(gate) ⊙ up)`,
    /// where `act` is GELU (tanh approximation) for GeGLU and SiLU for SwiGLU.
    type GegluQ8_0Fn = fn(gate: &[f32], up: &[f32], out: &mut [BlockQ8_0]);
};

/// Embedding-row gather.
pub const GATHER_Q8_0: FnType = fn_type! {
    /// Gathers rows `ids` of a Q8_0 table of `dim`-wide rows, dequantized and
    /// multiplied by `scale`, into `out` (`[ids.len()][dim]`).
    type GatherQ8_0Fn = fn(
        table: &[BlockQ8_0],
        dim: usize,
        ids: &[u32],
        scale: f32,
        out: &mut [f32],
    );
};

/// Mean pooling.
pub const MEAN_POOL: FnType = fn_type! {
    /// Mean of the rows of `x` (`[rows][dim]`, `dim = out.len()`) into `out`.
    type MeanPoolFn = fn(x: &[f32], out: &mut [f32]);
};

/// L2 normalization.
pub const L2_NORMALIZE: FnType = fn_type! {
    /// Scales `x` to unit L2 norm in place (a zero vector stays zero).
    type L2NormalizeFn = fn(x: &mut [f32]);
};

fn doc_attrs(doc: &str) -> TokenStream {
    let lines = doc.lines().map(|l| format!(" {l}"));
    quote!(#(#[doc = #lines])*)
}

/// The fn-pointer types of `families`, each once, in order of first use.
fn fn_types<'a>(families: &[&'a Family]) -> Vec<&'a FnType> {
    let mut out: Vec<&FnType> = Vec::new();
    for f in families {
        match out.iter().find(|t| t.name == f.fn_type.name) {
            Some(t) => assert!(
                std::ptr::eq(*t, f.fn_type),
                "two fn types are called {}",
                t.name
            ),
            None => out.push(f.fn_type),
        }
    }
    out
}

/// The source of `runtime/src/kernel_set.rs`.
pub fn runtime_source() -> String {
    let families: Vec<&Family> = all_families().collect();
    let types = fn_types(&families).into_iter().map(|t| {
        let (name, params, doc) = (format_ident!("{}", t.name), (t.params)(), t.doc);
        quote! {
            #(#[doc = #doc])*
            pub type #name = fn(#params);
        }
    });
    let getters = families.iter().map(|f| {
        let (getter, ty, doc) = (
            format_ident!("{}", f.getter),
            format_ident!("{}", f.fn_type.name),
            doc_attrs(f.getter_doc),
        );
        let key = f.key.iter().map(|k| format_ident!("{k}"));
        quote! {
            #doc
            fn #getter(&self, #(#key: usize),*) -> #ty;
        }
    });
    let stubs = families.iter().map(|f| {
        let (getter, ty) = (
            format_ident!("{}", f.getter),
            format_ident!("{}", f.fn_type.name),
        );
        let key = f.key.iter().map(|_| quote!(_: usize));
        let args = f.fn_type.args.iter().map(|_| quote!(_));
        quote! {
            fn #getter(&self, #(#key),*) -> #ty {
                |#(#args),*| {}
            }
        }
    });
    let file = quote! {
        use crate::quant::{
            BlockQ4_1x8, BlockQ4K, BlockQ4Kx8, BlockQ5_0, BlockQ6K, BlockQ6Kx8, BlockQ8_0, BlockQ8_0x8,
            BlockQ8K,
        };
        #(#types)*
        /// The kernels of one instruction set, chosen once when a model is opened.
        ///
        /// Every method returns the shape-specialized variant when the build-time
        /// shape table has one for the given sizes and the generic variant otherwise.
        pub trait KernelSet: Send + Sync {
            /// The instruction set these kernels run on.
            fn isa(&self) -> Isa;
            #(#getters)*
        }
        /// A kernel set whose kernels do nothing, so that a model can be opened
        /// to check its file and shapes without running it (`#[kiln::model]`
        /// does this at compile time). It claims to be [`Isa::Scalar`].
        pub struct NoKernels;
        impl KernelSet for NoKernels {
            fn isa(&self) -> Isa {
                Isa::Scalar
            }
            #(#stubs)*
        }
    };
    format!(
        "// @generated by kiln-kernels-gen from its kernel families \
         (`KILN_BLESS=1 cargo test -p kiln-kernels-gen --test families`). Do not edit.\n\
         // Included by `kernels.rs`: the fn-pointer types, `KernelSet` and `NoKernels`.\n\n{}",
        crate::emit::format_tokens(file)
    )
}
