//! The kernel interface: what an execution plan calls, and what the
//! generated kernels (in the `kiln` facade) provide.
//!
//! A plan asks a [`KernelSet`] once, at model open, for the function of each
//! step at that step's shape; the set answers with a shape-specialized kernel
//! when the build-time shape table has one and with the generic-shape variant
//! otherwise. Hot loops only call the function pointers they were given, so
//! they never test CPU features.
//!
//! Conventions shared by every kernel:
//! - activations are row-major `[rows][cols]` f32, one row per token;
//! - a weight matrix `W` of GGUF shape `[k, n]` (ggml order, `ne[0] = k`) is
//!   `n` rows of `k` values; a matmul computes `out[i][j] = Σ_k x[i][k]·W[j][k]`;
//! - Q8_0 activations are rows of `k / 32` blocks, quantized as
//!   [`quantize_row_q8_0_reference`](crate::quant::quantize_row_q8_0_reference) does.

use std::marker::PhantomData;

use crate::quant::{
    BlockQ4K, BlockQ4Kx8, BlockQ5_0, BlockQ6K, BlockQ6Kx8, BlockQ8_0, BlockQ8_0x8, BlockQ8K,
};

/// An instruction set that kernels are generated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust: the reference every other variant is tested against.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL + VNNI.
    Avx512Vnni,
    /// aarch64 Advanced SIMD.
    Neon,
    /// aarch64 Advanced SIMD with the dot-product extension (`sdot`).
    NeonDotprod,
}

impl Isa {
    /// The lower-case name used in kernel names, benches and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon-dotprod",
        }
    }
}

/// A mutable view of `rows × cols` f32 values with a row stride, so that
/// threads can own disjoint column blocks of one output matrix.
pub struct MatMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    stride: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `MatMut` is an exclusive borrow of the elements it can reach
// (rows × cols within the stride); sending it to another thread is like
// sending the `&mut [f32]` it came from.
unsafe impl Send for MatMut<'_> {}

impl<'a> MatMut<'a> {
    /// Views `data` as `rows` rows of `cols` values, `stride` apart.
    ///
    /// # Panics
    /// If `cols > stride` or `data` is too short for the view.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(cols <= stride, "MatMut: cols {cols} > stride {stride}");
        if rows > 0 {
            let needed = (rows - 1) * stride + cols;
            assert!(
                data.len() >= needed,
                "MatMut: {} values, view needs {needed}",
                data.len()
            );
        }
        MatMut {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            stride,
            _borrow: PhantomData,
        }
    }

    /// Number of rows.
    #[inline]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    #[inline]
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i` as a slice of `cols` values.
    ///
    /// # Panics
    /// If `i >= rows`.
    #[inline]
    pub fn row(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.rows, "MatMut: row {i} of {}", self.rows);
        // SAFETY: `new` checked that row `i < rows` lies inside the borrowed
        // slice, and `split_cols` only hands out disjoint column ranges, so
        // this is the only live reference to these `cols` values.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.stride), self.cols) }
    }

    /// Splits into columns `[0, at)` and `[at, cols)`.
    ///
    /// # Panics
    /// If `at > cols`.
    pub fn split_cols(self, at: usize) -> (MatMut<'a>, MatMut<'a>) {
        assert!(
            at <= self.cols,
            "MatMut: split at {at} of {} columns",
            self.cols
        );
        let left = MatMut { cols: at, ..self };
        let right = MatMut {
            // SAFETY: `at <= cols`, so the offset stays inside row 0 (or one
            // past its end when `at == cols`, which `row` never dereferences
            // because the right view then has zero columns).
            ptr: unsafe { self.ptr.add(at) },
            cols: self.cols - at,
            ..self
        };
        (left, right)
    }
}

/// Which key positions a query may attend to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Every token sees every token (encoders).
    Full,
    /// Bidirectional sliding window: query `i` sees keys `j` with
    /// `|i - j| <= radius` (llama.cpp's symmetric window: EmbeddingGemma's
    /// `sliding_window` of 512 is a radius of 256).
    Window {
        /// Half-width of the window.
        radius: usize,
    },
    /// Query `i` sees keys `j <= i` (decoders).
    Causal,
    /// Causal with a sliding window: `i - window < j <= i`.
    CausalWindow {
        /// Window length.
        window: usize,
    },
}

/// Shape and masking of one attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnShape {
    /// Tokens in the sequence (keys and queries).
    pub n_tokens: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (`n_head` is a multiple of it).
    pub n_head_kv: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// Multiplier of `q·k` before softmax (usually `1/sqrt(head_dim)`).
    pub scale: f32,
    /// Which keys each query sees.
    pub mask: Mask,
}

/// `out` = rows of `x` quantized to Q8_0 (`x.len() == 32 · out.len()`).
pub type QuantizeQ8_0Fn = fn(x: &[f32], out: &mut [BlockQ8_0]);

/// Column blocks that threads split a matmul into start at multiples of
/// this many columns, so a kernel specialized for a weight of `n` rows also
/// runs on any block of it (`n` a multiple of 64 gives blocks that are too).
pub const MATMUL_COL_ALIGN: usize = 64;

/// `out[i][j] (+)= bias[j] + Σ_k x[i][k]·W[j][k]` with Q8_0 weights and
/// activations; `m = out.rows()`, `n = out.cols()`, `k = 32 · x.len() / m`.
/// With `accumulate` the result is added to `out` (fused residual add).
/// `w`, `bias` and `out` may be a block of columns of the full layer (see
/// [`MATMUL_COL_ALIGN`]).
pub type MatmulQ8_0Fn =
    fn(w: &[BlockQ8_0], x: &[BlockQ8_0], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool);

/// The same over weights repacked into groups of 8 rows
/// ([`repack_q8_0x8`](crate::quant::repack_q8_0x8)): `w` holds the
/// `ceil(n / 8)` groups covering `out`'s columns, `k / 32` blocks each.
/// Faster than [`MatmulQ8_0Fn`] for many tokens (no horizontal sums, one
/// scale multiply per 8 weight rows).
pub type MatmulQ8_0x8Fn =
    fn(w: &[BlockQ8_0x8], x: &[BlockQ8_0], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool);
/// `out` = rows of `x` quantized to Q8_K (`x.len() == 256 · out.len()`),
/// bit-identical to [`quantize_row_q8_k_reference`](crate::quant::quantize_row_q8_k_reference):
/// the activations of the K-quant matmuls.
pub type QuantizeQ8KFn = fn(x: &[f32], out: &mut [BlockQ8K]);

/// As [`MatmulQ8_0Fn`] with Q4_K weights and Q8_K activations
/// (`k = 256 · x.len() / m`).
pub type MatmulQ4KFn =
    fn(w: &[BlockQ4K], x: &[BlockQ8K], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool);

/// As [`MatmulQ8_0Fn`] with Q6_K weights and Q8_K activations
/// (`k = 256 · x.len() / m`).
pub type MatmulQ6KFn =
    fn(w: &[BlockQ6K], x: &[BlockQ8K], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool);

/// As [`MatmulQ4KFn`] over weights repacked into groups of 8 rows
/// ([`repack_q4_kx8`](crate::quant::repack_q4_kx8)): `w` holds the
/// `ceil(n / 8)` groups covering `out`'s columns, `k / 256` blocks each.
pub type MatmulQ4Kx8Fn =
    fn(w: &[BlockQ4Kx8], x: &[BlockQ8K], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool);

/// As [`MatmulQ6KFn`] over weights repacked into groups of 8 rows
/// ([`repack_q6_kx8`](crate::quant::repack_q6_kx8)).
pub type MatmulQ6Kx8Fn =
    fn(w: &[BlockQ6Kx8], x: &[BlockQ8K], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool);

/// As [`MatmulQ8_0Fn`] with Q5_0 weights and Q8_0 activations (llama.cpp's
/// pairing; `k = 32 · x.len() / m`).
pub type MatmulQ5_0Fn =
    fn(w: &[BlockQ5_0], x: &[BlockQ8_0], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool);

/// The same with f32 weights and f32 activations.
pub type MatmulF32Fn =
    fn(w: &[f32], x: &[f32], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool);

/// RMSNorm of each row of `x` (`dim = w.len()`): `out = x / sqrt(mean(x²) + eps) · w`.
/// The weight is used as stored in the GGUF (llama.cpp's converter already
/// adds Gemma's `1 +`).
pub type RmsNormFn = fn(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]);

/// RMSNorm fused with quantization of its output to Q8_0.
pub type RmsNormQ8_0Fn = fn(x: &[f32], w: &[f32], eps: f32, out: &mut [BlockQ8_0]);

/// LayerNorm of each row with weight and bias: `out = (x - μ)/sqrt(σ² + eps)·w + b`.
pub type LayerNormFn = fn(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]);

/// Rotary position embedding, in place, over rows of `n_heads · head_dim`
/// values (`x.len() = rows · n_heads · head_dim`); row `r` has position
/// `pos0 + r` and every head of a row is rotated the same way; `cos`/`sin`
/// are tables of `[position][head_dim / 2]` (`θ(p, i) = p·base^(-2i/d)`);
/// `neox` selects the split-halves pairing (`x[i]`, `x[i + d/2]`, as
/// Gemma uses) instead of adjacent pairs (`x[2i]`, `x[2i+1]`).
pub type RopeFn = fn(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    pos0: usize,
    cos: &[f32],
    sin: &[f32],
    neox: bool,
);

/// The most queries an attention tile holds on any ISA (see [`AttentionFn`];
/// AVX-512 runs tiles of 8, the others of 4).
pub const ATTN_TILE_ROWS: usize = 8;

/// Key slots an attention tile may round up to (vectors of keys; at least
/// two vectors' worth for the widest ISA).
pub const ATTN_KEY_PAD: usize = 64;

/// The scratch the tiled attention path needs for `n_tokens` keys of
/// `head_dim` values: [`ATTN_TILE_ROWS`] score rows and as many weight
/// columns (each padded by [`ATTN_KEY_PAD`]), a tile of queries, and one KV
/// head's keys transposed.
pub const fn attention_scratch_len(n_tokens: usize, head_dim: usize) -> usize {
    (2 * ATTN_TILE_ROWS + head_dim) * (n_tokens + ATTN_KEY_PAD) + ATTN_TILE_ROWS * head_dim
}

/// Attention for query rows `rows` of one sequence: `q` is
/// `[n_tokens][n_head·head_dim]`, `k`/`v` are `[n_tokens][n_head_kv·head_dim]`,
/// `out` receives `[rows.len()][n_head·head_dim]`; `scratch` holds at least
/// `n_tokens` f32 (one score row), and with [`attention_scratch_len`] f32
/// the kernel runs tiles of up to [`ATTN_TILE_ROWS`] queries (much faster: each
/// value row is read once per tile, and the scores are FMAs into vectors of
/// transposed keys instead of dot products).
pub type AttentionFn = fn(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: &AttnShape,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
    scratch: &mut [f32],
);

/// Where [`AttendCacheFn`] finds its keys and values.
#[derive(Clone, Copy, Debug)]
pub struct CacheAttn<'a> {
    /// Dimension of one head.
    pub head_dim: usize,
    /// Values from one cache row to the next.
    pub stride: usize,
    /// The rows to attend to, in order (a ring's window is two spans once
    /// it wraps).
    pub spans: &'a [std::ops::Range<usize>],
    /// Multiplier of `q·k` before softmax.
    pub scale: f32,
}

/// Attention of the query heads in `q` (`[q.len() / head_dim][head_dim]`,
/// heads that share one KV head) over cached keys and values: rows
/// `at.spans` of `k` and `v` (row `j` starts at `j · stride`). `out`
/// receives `[q.len() / head_dim][head_dim]`; `scratch` holds at least
/// `q.len() / head_dim` × (rows in the spans) f32. Each key and value row
/// is read once for all the heads: the grouped query heads of one position
/// of a decoder, over its cache.
pub type AttendCacheFn =
    fn(q: &[f32], k: &[f32], v: &[f32], at: &CacheAttn<'_>, out: &mut [f32], scratch: &mut [f32]);

/// Element-wise activation in place (GELU, tanh approximation or erf).
pub type UnaryFn = fn(x: &mut [f32]);

/// GeGLU fused with quantization: `out = Q8_0(gelu_tanh(gate) ⊙ up)`.
pub type GegluQ8_0Fn = fn(gate: &[f32], up: &[f32], out: &mut [BlockQ8_0]);

/// Gathers rows `ids` of a Q8_0 table of `dim`-wide rows, dequantized and
/// multiplied by `scale`, into `out` (`[ids.len()][dim]`).
pub type GatherQ8_0Fn =
    fn(table: &[BlockQ8_0], dim: usize, ids: &[u32], scale: f32, out: &mut [f32]);

/// Mean of the rows of `x` (`[rows][dim]`, `dim = out.len()`) into `out`.
pub type MeanPoolFn = fn(x: &[f32], out: &mut [f32]);

/// Scales `x` to unit L2 norm in place (a zero vector stays zero).
pub type L2NormalizeFn = fn(x: &mut [f32]);

/// The kernels of one instruction set, chosen once when a model is opened.
///
/// Every method returns the shape-specialized variant when the build-time
/// shape table has one for the given sizes and the generic variant otherwise.
pub trait KernelSet: Send + Sync {
    /// The instruction set these kernels run on.
    fn isa(&self) -> Isa;
    /// Quantize rows of `k` values to Q8_0.
    fn quantize_q8_0(&self, k: usize) -> QuantizeQ8_0Fn;
    /// Q8_0 matmul for a weight of `n` rows of `k`.
    fn matmul_q8_0(&self, n: usize, k: usize) -> MatmulQ8_0Fn;
    /// Q8_0 matmul over 8-row-interleaved weights of `n` rows of `k`.
    fn matmul_q8_0x8(&self, n: usize, k: usize) -> MatmulQ8_0x8Fn;
    /// Quantize rows of `k` values to Q8_K.
    fn quantize_q8_k(&self, k: usize) -> QuantizeQ8KFn;
    /// Q4_K matmul for a weight of `n` rows of `k`.
    fn matmul_q4_k(&self, n: usize, k: usize) -> MatmulQ4KFn;
    /// Q6_K matmul for a weight of `n` rows of `k`.
    fn matmul_q6_k(&self, n: usize, k: usize) -> MatmulQ6KFn;
    /// Q4_K matmul over 8-row-interleaved weights of `n` rows of `k`.
    fn matmul_q4_kx8(&self, n: usize, k: usize) -> MatmulQ4Kx8Fn;
    /// Q6_K matmul over 8-row-interleaved weights of `n` rows of `k`.
    fn matmul_q6_kx8(&self, n: usize, k: usize) -> MatmulQ6Kx8Fn;
    /// Q5_0 matmul for a weight of `n` rows of `k`.
    fn matmul_q5_0(&self, n: usize, k: usize) -> MatmulQ5_0Fn;
    /// f32 matmul for a weight of `n` rows of `k`.
    fn matmul_f32(&self, n: usize, k: usize) -> MatmulF32Fn;
    /// RMSNorm over `dim` values.
    fn rms_norm(&self, dim: usize) -> RmsNormFn;
    /// RMSNorm over `dim` values fused with Q8_0 quantization.
    fn rms_norm_q8_0(&self, dim: usize) -> RmsNormQ8_0Fn;
    /// LayerNorm over `dim` values.
    fn layer_norm(&self, dim: usize) -> LayerNormFn;
    /// RoPE for heads of `head_dim`.
    fn rope(&self, head_dim: usize) -> RopeFn;
    /// Attention for heads of `head_dim`.
    fn attention(&self, head_dim: usize) -> AttentionFn;
    /// Attention over a decoder's cache for heads of `head_dim`.
    fn attend_cache(&self, head_dim: usize) -> AttendCacheFn;
    /// GELU, tanh approximation.
    fn gelu_tanh(&self) -> UnaryFn;
    /// GELU, exact (erf).
    fn gelu_erf(&self) -> UnaryFn;
    /// GeGLU over `dim` values fused with Q8_0 quantization.
    fn geglu_q8_0(&self, dim: usize) -> GegluQ8_0Fn;
    /// Embedding-row gather from a Q8_0 table.
    fn gather_q8_0(&self, dim: usize) -> GatherQ8_0Fn;
    /// Mean pooling over `dim` values.
    fn mean_pool(&self, dim: usize) -> MeanPoolFn;
    /// L2 normalization.
    fn l2_normalize(&self) -> L2NormalizeFn;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mat_mut_splits_disjoint_columns() {
        let mut data = vec![0.0f32; 3 * 5];
        let m = MatMut::new(&mut data, 3, 4, 5);
        let (mut a, mut b) = m.split_cols(1);
        assert_eq!((a.rows(), a.cols(), b.cols()), (3, 1, 3));
        a.row(2)[0] = 1.0;
        b.row(1).copy_from_slice(&[2.0, 3.0, 4.0]);
        assert_eq!(
            data,
            [0., 0., 0., 0., 0., 0., 2., 3., 4., 0., 1., 0., 0., 0., 0.]
        );
    }

    #[test]
    #[should_panic(expected = "view needs")]
    fn mat_mut_rejects_short_buffer() {
        let mut data = vec![0.0f32; 9];
        let _ = MatMut::new(&mut data, 2, 5, 5);
    }
}
