//! Linear layers (`y = x·Wᵀ + b`) over quantized or f32 weights, split
//! across threads by output columns.

use super::pack_cache::{PackCache, PackKind, PackWriter, Packs};
use super::weights::{ActRound, Data, Tensors, WeightData};
use crate::gguf::{AnonVec, Plain};
use crate::kernels::{
    KernelSet, MATMUL_COL_ALIGN, MatMut, MatmulF32Fn, MatmulQ4_1x8Fn, MatmulQ4Kx8Fn, MatmulQ6Kx8Fn,
    MatmulQ8_0x8Fn, QuantizeQ8_0Fn, QuantizeQ8KFn,
};
use crate::quant::{
    BlockQ4_1x8, BlockQ4Kx8, BlockQ6Kx8, BlockQ8_0, BlockQ8_0x8, BlockQ8K, Q8_0X8_ROWS, QK_K,
    QK4_1, QK8_0, dequantize_row_q8_0, q5_0_to_q8_0, repack_q4_1x8_into, repack_q4_kx8_into,
    repack_q6_kx8_into, repack_q8_0x8_into,
};

/// Output columns below which a matmul is not split further: keeps each
/// thread's slice of the weight large enough to amortize the fork.
const MIN_COLS_PER_THREAD: usize = MATMUL_COL_ALIGN;

/// Multiply-adds below which a matmul stays on one thread: with the workers
/// kept awake during a pass (`exec::with_hot_workers`) a fork and join costs
/// about a microsecond, ~256K int8 multiply-adds (measured: 1M -> 256K took
/// EmbeddingGemma's "Hello world" on 2 threads from 10.5 to 9.0-9.3 ms).
pub(crate) const MIN_MACS_PER_THREAD: usize = 1 << 18;

enum Kernel {
    /// Q8_0 weights (and Q5_0 ones, re-encoded as Q8_0 without loss)
    /// repacked at open into groups of 8 rows: the layout the matmul streams
    /// best (a copy of the weight, made once; see `BlockQ8_0x8`).
    Q8_0x8(Data<BlockQ8_0x8>, MatmulQ8_0x8Fn, QuantizeQ8_0Fn),
    F32(Data<f32>, MatmulF32Fn),
    /// Q4_K and Q6_K weights repacked at open into groups of 8 rows (the
    /// same bits; see `BlockQ4Kx8`): 2-3x the row layout's speed on many
    /// tokens, as fast for one.
    Q4Kx8(Data<BlockQ4Kx8>, MatmulQ4Kx8Fn, QuantizeQ8KFn),
    Q6Kx8(Data<BlockQ6Kx8>, MatmulQ6Kx8Fn, QuantizeQ8KFn),
    /// Q4_1 weights repacked at open into groups of 8 rows (the same bits;
    /// see `BlockQ4_1x8`), reading Q8_0 activations as llama.cpp's Q8_1
    /// without the stored sums (the kernel computes them).
    Q4_1x8(Data<BlockQ4_1x8>, MatmulQ4_1x8Fn, QuantizeQ8_0Fn),
    /// Dequantized weights; the input is rounded as `ActRound` says first.
    Rounded(Data<f32>, MatmulF32Fn, ActRound, QuantizeQ8_0Fn),
}

/// One weight matrix of `n` rows of `k`, its optional bias, and the kernel
/// resolved for its shape.
pub(crate) struct Linear {
    kernel: Kernel,
    bias: Option<Data<f32>>,
    /// Input width.
    pub(crate) k: usize,
    /// Output width.
    pub(crate) n: usize,
}

/// The input of a linear layer: f32 rows, and their Q8_0 (Q8_0, Q5_0 and
/// Q4_1 weights) or Q8_K (K-quant weights) quantization when the weight
/// reads it.
#[derive(Clone, Copy)]
pub(crate) struct Input<'a> {
    pub(crate) f32: &'a [f32],
    pub(crate) q8: &'a [BlockQ8_0],
    pub(crate) q8k: &'a [BlockQ8K],
}

/// Where a weight's 8-row groups come from.
pub(crate) enum Groups<'a> {
    /// Repacked now.
    Repack,
    /// Mapped from the pack cache (weight named so), else repacked.
    Cached(&'a PackCache, &'a str),
    /// Repacked now and written to the pack cache under that name.
    Record(&'a PackWriter, &'a str),
}

impl Groups<'_> {
    /// The `ceil(n/8) · kb` groups of a weight: from the cache, or made by
    /// `fill` (and recorded).
    fn get<T: Plain + Default>(
        &self,
        kind: PackKind,
        n: usize,
        kb: usize,
        fill: impl FnOnce(&mut [T]),
    ) -> Data<T> {
        if let Groups::Cached(cache, name) = self
            && let Some(groups) = cache.get::<T>(name, kind, n.div_ceil(Q8_0X8_ROWS) * kb)
        {
            return Data::mapped(groups);
        }
        let data = packed(n, kb, fill);
        if let Groups::Record(writer, name) = self {
            writer.add(name, kind, data.get());
        }
        data
    }
}

impl Tensors<'_> {
    /// A linear layer over `weight`, tensor `name`, its 8-row groups
    /// mapped from the pack cache when it has them. When its kernel works
    /// on a copy (repacked into 8-row groups, types converted at open), the
    /// file's pages of the original leave the resident set.
    ///
    /// Defined here rather than beside the other views in `weights` so that
    /// weights never depend on the layers built over them.
    pub(crate) fn linear(
        &self,
        name: &str,
        weight: WeightData,
        (k, n): (usize, usize),
        bias: Option<Data<f32>>,
        kernels: &dyn KernelSet,
    ) -> Linear {
        let groups = match self.packs() {
            Packs::Off => Groups::Repack,
            Packs::Mapped(c) => Groups::Cached(c, name),
            Packs::Writing(w) => Groups::Record(w, name),
        };
        let l = Linear::new(weight, bias, k, n, kernels, groups);
        if l.copies_weight() {
            self.release_tensor(name);
        }
        l
    }
}

impl Linear {
    pub(crate) fn new(
        weight: WeightData,
        bias: Option<Data<f32>>,
        k: usize,
        n: usize,
        kernels: &dyn KernelSet,
        groups: Groups<'_>,
    ) -> Self {
        let kernel = match weight {
            WeightData::Q8_0(w) => Kernel::Q8_0x8(
                groups.get(PackKind::Q8_0x8, n, k / QK8_0, |o| {
                    repack_q8_0x8_into(w.get(), n, k, o)
                }),
                kernels.matmul_q8_0x8(n, k),
                kernels.quantize_q8_0(k),
            ),
            WeightData::F32(w) => Kernel::F32(w, kernels.matmul_f32(n, k)),
            WeightData::Q4K(w) => Kernel::Q4Kx8(
                groups.get(PackKind::Q4Kx8, n, k / QK_K, |o| {
                    repack_q4_kx8_into(w.get(), n, k, o)
                }),
                kernels.matmul_q4_kx8(n, k),
                kernels.quantize_q8_k(k),
            ),
            WeightData::Q6K(w) => Kernel::Q6Kx8(
                groups.get(PackKind::Q6Kx8, n, k / QK_K, |o| {
                    repack_q6_kx8_into(w.get(), n, k, o)
                }),
                kernels.matmul_q6_kx8(n, k),
                kernels.quantize_q8_k(k),
            ),
            // Q5_0 values are int8 values with the same scales: re-encoded
            // as Q8_0 (no loss) they run on the 8-row Q8_0 kernel, 2.6x the
            // Q5_0 kernel's speed on many tokens, for 34 instead of 22
            // bytes per block (about as fast for one token from DRAM).
            WeightData::Q5_0(w) => Kernel::Q8_0x8(
                groups.get(PackKind::Q8_0x8, n, k / QK8_0, |o| {
                    repack_q8_0x8_into(&q5_0_to_q8_0(w.get()), n, k, o)
                }),
                kernels.matmul_q8_0x8(n, k),
                kernels.quantize_q8_0(k),
            ),
            WeightData::Q4_1(w) => Kernel::Q4_1x8(
                groups.get(PackKind::Q4_1x8, n, k / QK4_1, |o| {
                    repack_q4_1x8_into(w.get(), n, k, o)
                }),
                kernels.matmul_q4_1x8(n, k),
                kernels.quantize_q8_0(k),
            ),
            WeightData::Dequantized(w, act) => {
                Kernel::Rounded(w, kernels.matmul_f32(n, k), act, kernels.quantize_q8_0(k))
            }
        };
        Linear { kernel, bias, k, n }
    }

    /// Whether the kernel reads a copy of the weight made at open (Q8_0,
    /// Q4_K, Q6_K, Q4_1 repacked into 8-row groups, or a type converted), so
    /// the file's bytes of it are no longer read.
    pub(crate) fn copies_weight(&self) -> bool {
        matches!(
            self.kernel,
            Kernel::Q8_0x8(..) | Kernel::Q4Kx8(..) | Kernel::Q6Kx8(..) | Kernel::Q4_1x8(..)
        ) || self.owned_bytes() > 0
    }

    /// Bytes of weight converted to another type at open (a fallback for
    /// types without a kernel, or F16/BF16 to f32); the Q8_0 repacking,
    /// which keeps the type, is not counted (nor the other 8-row groups).
    pub(crate) fn owned_bytes(&self) -> usize {
        match &self.kernel {
            Kernel::Q8_0x8(..) | Kernel::Q4Kx8(..) | Kernel::Q6Kx8(..) | Kernel::Q4_1x8(..) => 0,
            Kernel::F32(w, _) | Kernel::Rounded(w, ..) => w.owned_bytes(),
        }
    }

    /// Whether this layer reads its input quantized to Q8_0.
    pub(crate) fn wants_q8(&self) -> bool {
        matches!(
            self.kernel,
            Kernel::Q8_0x8(..) | Kernel::Q4_1x8(..) | Kernel::Rounded(_, _, ActRound::Q8_0, _)
        )
    }

    /// Whether this layer reads its input quantized to Q8_K.
    pub(crate) fn wants_q8k(&self) -> bool {
        matches!(self.kernel, Kernel::Q4Kx8(..) | Kernel::Q6Kx8(..))
    }

    /// Quantizes this layer's input rows into Q8_K blocks when a K-quant
    /// weight reads them.
    pub(crate) fn prepare_k(&self, x: &[f32], out: &mut [BlockQ8K]) {
        if let Kernel::Q4Kx8(_, _, q) | Kernel::Q6Kx8(_, _, q) = &self.kernel {
            q(x, &mut out[..x.len() / QK_K]);
        }
    }

    /// Quantizes this layer's input rows (`x`, rows of `k`) into `out` when
    /// the weight reads Q8_0 activations (Q8_0, Q5_0, Q4_1); layers that
    /// share an input call it once.
    pub(crate) fn prepare(&self, x: &[f32], out: &mut [BlockQ8_0]) {
        match &self.kernel {
            Kernel::Q8_0x8(_, _, quantize)
            | Kernel::Q4_1x8(_, _, quantize)
            | Kernel::Rounded(_, _, ActRound::Q8_0, quantize) => {
                quantize(x, &mut out[..x.len() / QK8_0]);
            }
            _ => {}
        }
    }

    /// `out[i][j] (+)= b[j] + Σ x[i][k]·W[j][k]` for the `m` rows of `x`;
    /// `out` is `[m][n]`.
    pub(crate) fn forward(
        &self,
        x: Input<'_>,
        m: usize,
        out: &mut [f32],
        accumulate: bool,
        threads: usize,
    ) {
        forward_together([(self, out)], x, m, accumulate, threads);
    }

    fn run(&self, x: Input<'_>, col0: usize, out: MatMut<'_>, accumulate: bool) {
        let cols = col0..col0 + out.cols();
        let bias = self.bias.as_ref().map(|b| &b.get()[cols.clone()]);
        match &self.kernel {
            // Column blocks start at multiples of 64, so at group bounds.
            Kernel::Q8_0x8(w, f, _) => f(
                groups_of(w, self.k / QK8_0, &cols),
                x.q8,
                bias,
                out,
                accumulate,
            ),
            Kernel::Q4_1x8(w, f, _) => f(
                groups_of(w, self.k / QK4_1, &cols),
                x.q8,
                bias,
                out,
                accumulate,
            ),
            Kernel::Q4Kx8(w, f, _) => f(
                groups_of(w, self.k / QK_K, &cols),
                x.q8k,
                bias,
                out,
                accumulate,
            ),
            Kernel::Q6Kx8(w, f, _) => f(
                groups_of(w, self.k / QK_K, &cols),
                x.q8k,
                bias,
                out,
                accumulate,
            ),
            Kernel::F32(w, f) => {
                let k = self.k;
                f(
                    &w.get()[cols.start * k..cols.end * k],
                    x.f32,
                    bias,
                    out,
                    accumulate,
                )
            }
            Kernel::Rounded(w, f, act, _) => {
                let k = self.k;
                let rows = out.rows();
                let mut xr = vec![0.0f32; rows * k];
                match act {
                    ActRound::Q8_0 => dequantize_row_q8_0(&x.q8[..rows * k / QK8_0], &mut xr),
                    ActRound::Q8K => round_q8_k(&x.f32[..rows * k], &mut xr),
                }
                f(
                    &w.get()[cols.start * k..cols.end * k],
                    &xr,
                    bias,
                    out,
                    accumulate,
                )
            }
        }
    }
}

/// The 8-row groups of `w` (`kb` blocks per row) that hold output columns
/// `cols` (which start at a group bound).
fn groups_of<'a, T: Plain>(w: &'a Data<T>, kb: usize, cols: &std::ops::Range<usize>) -> &'a [T] {
    let groups = cols.start / Q8_0X8_ROWS..cols.end.div_ceil(Q8_0X8_ROWS);
    &w.get()[groups.start * kb..groups.end * kb]
}

/// Several layers over the same input rows (`[(layer, its output)]`, each
/// as in [`Linear::forward`]) as one parallel step: the threads split the
/// layers' output columns taken together, so Q, K and V (or gate and up)
/// pay one fork and join instead of one each. A short text has ~40 such
/// steps per pass, where a hand-off costs as much as a small matmul.
pub(crate) fn forward_together<const N: usize>(
    layers: [(&Linear, &mut [f32]); N],
    x: Input<'_>,
    m: usize,
    accumulate: bool,
    threads: usize,
) {
    let macs: usize = layers.iter().map(|(l, _)| m * l.n * l.k).sum();
    let parts = threads.clamp(1, (macs / MIN_MACS_PER_THREAD).max(1));
    let pieces = layers.map(|(lin, out)| {
        Some(Piece {
            lin,
            col0: 0,
            out: MatMut::new(&mut out[..m * lin.n], m, lin.n, lin.n),
        })
    });
    split_pieces(x, pieces, accumulate, parts);
}

/// Output columns `col0..` of one layer, and where they go.
struct Piece<'a> {
    lin: &'a Linear,
    col0: usize,
    out: MatMut<'a>,
}

/// Runs `pieces` on `parts` threads: halves of about equal width (split
/// at a multiple of the kernels' column alignment inside a layer, so
/// shape-specialized kernels run on every block), recursively.
fn split_pieces<const N: usize>(
    x: Input<'_>,
    pieces: [Option<Piece<'_>>; N],
    accumulate: bool,
    parts: usize,
) {
    let run_all = |pieces: [Option<Piece<'_>>; N]| {
        for p in pieces.into_iter().flatten() {
            p.lin.run(x, p.col0, p.out, accumulate);
        }
    };
    let cols: usize = pieces.iter().flatten().map(|p| p.out.cols()).sum();
    if parts <= 1 || cols < 2 * MIN_COLS_PER_THREAD {
        run_all(pieces);
        return;
    }
    let left_parts = parts / 2;
    let mid = cols * left_parts / parts;
    let mut left: [Option<Piece<'_>>; N] = std::array::from_fn(|_| None);
    let mut right: [Option<Piece<'_>>; N] = std::array::from_fn(|_| None);
    let (mut seen, mut left_cols) = (0, 0);
    for (i, p) in pieces.into_iter().enumerate() {
        let Some(p) = p else { continue };
        let c = p.out.cols();
        let want = mid.saturating_sub(seen);
        let at = want / MATMUL_COL_ALIGN * MATMUL_COL_ALIGN;
        seen += c;
        if want >= c {
            left_cols += c;
            left[i] = Some(p);
        } else if at == 0 {
            right[i] = Some(p);
        } else {
            left_cols += at;
            let (a, b) = p.out.split_cols(at);
            left[i] = Some(Piece { out: a, ..p });
            right[i] = Some(Piece {
                lin: p.lin,
                col0: p.col0 + at,
                out: b,
            });
        }
    }
    if left_cols == 0 || left_cols == cols {
        // No aligned cut near the middle: one thread does it all.
        run_all(left);
        run_all(right);
        return;
    }
    rayon::join(
        || split_pieces(x, left, accumulate, left_parts),
        || split_pieces(x, right, accumulate, parts - left_parts),
    );
}

/// A weight of `n` rows of `kb` blocks repacked by `fill` into zeroed
/// 8-row groups, in an anonymous map (or on the heap where there is none).
fn packed<T: Plain + Default>(n: usize, kb: usize, fill: impl FnOnce(&mut [T])) -> Data<T> {
    let len = n.div_ceil(Q8_0X8_ROWS) * kb;
    match AnonVec::zeroed(len) {
        Ok(mut a) => {
            fill(a.as_mut_slice());
            Data::Anon(a)
        }
        // No map available: the heap does the same job.
        Err(_) => {
            let mut v = vec![T::default(); len];
            fill(&mut v);
            Data::Owned(v)
        }
    }
}

/// `x` quantized to Q8_K and back (llama.cpp's `quantize_row_q8_K_ref`:
/// per 256 values, `iscale = -127 / v` where `v` is the value of largest
/// magnitude, `q = min(127, round(iscale · x))`, `y = q / iscale`).
fn round_q8_k(x: &[f32], out: &mut [f32]) {
    for (xs, ys) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(QK_K)) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in xs {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            ys.fill(0.0);
            continue;
        }
        let iscale = -127.0 / max;
        let d = 1.0 / iscale;
        for (y, &v) in ys.iter_mut().zip(xs) {
            // llama.cpp's nearest_int rounds half to even.
            let q = (iscale * v).round_ties_even().min(127.0);
            *y = q * d;
        }
    }
}
