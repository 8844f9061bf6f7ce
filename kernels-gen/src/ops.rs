//! The op table: every operation a kernel body may call, declared once.
//!
//! Kernel bodies (see [`crate::kernels`]) are written against these names and
//! five abstract types that each ISA defines in its prelude:
//!
//! | type | meaning |
//! |------|---------|
//! | `F`  | a vector of `LANES` f32 |
//! | `A`  | the f32 accumulator of one Q8_0 block dot (its own width) |
//! | `I`  | the i32 result of one 32 × int8 block dot (width matches `A`) |
//! | `QW` | one weight block's 32 int8, prepared for [`q8_dot`](OPS) |
//! | `QX` | one activation block's 32 int8, prepared the same way |
//! | `R8` | 8 f32, one per weight row of an 8-row group (`BlockQ8_0x8`) |
//! | `RI` | 8 int32 dot products, one per row of the group |
//! | `RW` | 4 columns of the 8 rows (32 int8), prepared for [`q8r_dot_acc`](OPS) |
//! | `RX` | 4 activation int8, prepared (broadcast) for the same |
//! | `KW` | 32 unsigned weight quants (`0..=63`) of one chunk, prepared for `ku_dot` |
//! | `KS` | the scales of a chunk's two 16-value halves, prepared for `ku_dot` |
//!
//! (`KW` and `KS` come from [`Lowering::kquant_prelude`](crate::lower::Lowering::kquant_prelude).)
//!
//! A *primitive* op has no default body: every [`Lowering`](crate::lower::Lowering)
//! must supply one. A *composite* op has a default body written once in terms
//! of other ops (a lowering may still override it, as scalar does with
//! `f32::exp`). The generator emits every op as an `#[inline]` function in each
//! ISA module, so kernels call them by name and never see an intrinsic.

use proc_macro2::TokenStream;
use quote::quote;

/// One operation: its Rust signature, what it means, and (for composites)
/// its ISA-independent body.
pub struct OpDef {
    /// The Rust signature, e.g. `fn f_add(a: F, b: F) -> F`.
    pub sig: &'static str,
    /// What the op computes (emitted as its doc comment).
    pub doc: &'static str,
    /// Default body in terms of other ops; `None` for primitives.
    pub composite: Option<fn() -> TokenStream>,
}

impl OpDef {
    /// The op's name (the identifier in [`OpDef::sig`]).
    pub fn name(&self) -> &'static str {
        let rest = self.sig.trim_start_matches("fn ");
        &rest[..rest.find('(').expect("op signature has a parameter list")]
    }
}

const fn prim(sig: &'static str, doc: &'static str) -> OpDef {
    OpDef {
        sig,
        doc,
        composite: None,
    }
}

const fn comp(sig: &'static str, doc: &'static str, body: fn() -> TokenStream) -> OpDef {
    OpDef {
        sig,
        doc,
        composite: Some(body),
    }
}

/// Every op of the DSL (the one registry: [`OPS`]).
pub fn all_ops() -> impl Iterator<Item = &'static OpDef> {
    OPS.iter()
}

/// Every op, primitives first, then composites in dependency order.
pub const OPS: &[OpDef] = &[
    // --- f32 vectors ---
    prim("fn f_zero() -> F", "All lanes 0."),
    prim("fn f_splat(x: f32) -> F", "All lanes `x`."),
    prim(
        "fn f_load(s: &[f32]) -> F",
        "The first `LANES` values of `s` (panics if shorter).",
    ),
    prim(
        "fn f_store(s: &mut [f32], v: F)",
        "Stores `v` to the first `LANES` values of `s` (panics if shorter).",
    ),
    prim(
        "fn f_from_i8(s: &[i8]) -> F",
        "The first `LANES` int8 of `s` converted to f32 (panics if shorter).",
    ),
    prim("fn f_add(a: F, b: F) -> F", "`a + b`."),
    prim("fn f_sub(a: F, b: F) -> F", "`a - b`."),
    prim("fn f_mul(a: F, b: F) -> F", "`a * b`."),
    prim("fn f_div(a: F, b: F) -> F", "`a / b`."),
    prim("fn f_max(a: F, b: F) -> F", "Lane-wise maximum."),
    prim("fn f_min(a: F, b: F) -> F", "Lane-wise minimum."),
    prim(
        "fn f_fma(a: F, b: F, c: F) -> F",
        "`a * b + c` (fused where the ISA has it).",
    ),
    prim("fn f_abs(a: F) -> F", "`|a|`."),
    prim(
        "fn f_copysign(mag: F, sign: F) -> F",
        "`|mag|` with the sign bit of `sign`.",
    ),
    prim(
        "fn f_round(a: F) -> F",
        "Nearest integer (any tie rule: only used where ties do not matter).",
    ),
    prim(
        "fn f_pow2i(n: F) -> F",
        "`2^n` for integral `n` in `[-126, 127]`.",
    ),
    prim("fn f_hsum(a: F) -> f32", "Sum of the lanes."),
    prim("fn f_hmax(a: F) -> f32", "Maximum of the lanes."),
    prim(
        "fn f16_to_f32(bits: u16) -> f32",
        "One IEEE half (as bits) to f32.",
    ),
    // --- Q8_0 block dot ---
    prim("fn acc_zero() -> A", "A zero block-dot accumulator."),
    prim(
        "fn acc_splat_f16(bits: u16) -> A",
        "A block scale (f16 bits) in every lane.",
    ),
    prim(
        "fn acc_mul(a: A, b: A) -> A",
        "`a * b` (combines two block scales).",
    ),
    prim(
        "fn acc_fma(s: A, p: I, acc: A) -> A",
        "`acc + s * f32(p)`: adds one scaled block dot.",
    ),
    prim(
        "fn acc_hsum(a: A) -> f32",
        "Sum of the accumulator's lanes.",
    ),
    prim(
        "fn prefetch(p: *const BlockQ8_0)",
        "Hints that the block at `p` will be read soon (never dereferences; may be a no-op).",
    ),
    prim("fn i_zero() -> I", "Zero block-dot lanes."),
    prim(
        "fn i_add(a: I, b: I) -> I",
        "Lane-wise int32 `a + b` (wrapping).",
    ),
    prim(
        "fn i_hsum(a: I) -> i32",
        "Sum of the int32 lanes (wrapping).",
    ),
    prim(
        "fn q8_load_w(qs: &[i8; 32]) -> QW",
        "Loads a weight block's quants, prepared for `q8_dot`.",
    ),
    prim(
        "fn q8_load_x(qs: &[i8; 32]) -> QX",
        "Loads an activation block's quants, prepared for `q8_dot`.",
    ),
    prim(
        "fn q8_dot(w: QW, x: QX) -> I",
        "Exact int32 dot product of 32 int8 pairs, as partial sums in lanes.",
    ),
    prim(
        "fn q8_quant(x: &[f32], out: &mut BlockQ8_0)",
        "Quantizes the first 32 values of `x` bit-identically to \
         `quantize_row_q8_0_reference`: `d = absmax/127` (f16), `q = round(x/d)` ties away from zero.",
    ),
    // --- Q8_0 over 8-row groups (BlockQ8_0x8) ---
    prim("fn r8_zero() -> R8", "8 zeros."),
    prim(
        "fn r8_scales(d: &[f16; 8]) -> R8",
        "The 8 row scales of a group, as f32.",
    ),
    prim(
        "fn r8_load(s: &[f32]) -> R8",
        "The first 8 values of `s` (panics if shorter).",
    ),
    prim(
        "fn r8_store(s: &mut [f32], v: R8)",
        "Stores `v` to the first 8 values of `s` (panics if shorter).",
    ),
    prim("fn r8_add(a: R8, b: R8) -> R8", "`a + b`."),
    prim(
        "fn r8_fma_block(dw: R8, dx: f32, p: RI, acc: R8) -> R8",
        "`acc + (dw·dx)·f32(p)`: adds one block's 8 scaled dots.",
    ),
    prim("fn ri_zero() -> RI", "8 zero int32."),
    prim(
        "fn q8r_load_w(qs: &[i8; 32]) -> RW",
        "Loads 4 columns of a group's 8 rows (`qs[4r + e]`), prepared for `q8r_dot_acc` \
         (plus 128, as unsigned bytes, where `q8r_offset()`).",
    ),
    prim(
        "fn q8r_load_x(qs: &[i8; 32], quad: usize) -> RX",
        "Activation values `4·quad .. 4·quad + 4` of a block, prepared for `q8r_dot_acc`.",
    ),
    prim(
        "fn q8r_dot_acc(acc: RI, w: RW, x: RX) -> RI",
        "`acc[r] + Σ_e (w[4r + e] + o)·x[e]` for the 8 rows `r`, exact in int32, where \
         `o` is 128 if `q8r_offset()`, else 0.",
    ),
    comp(
        "fn q8r_offset() -> bool",
        "Whether `q8r_load_w` offsets the weights by 128: an ISA that multiplies unsigned \
         by signed bytes (VNNI) then needs no sign fix-up per token, and a block's dot \
         starts from `q8r_init(q8r_x_bias(..))` instead of zero.",
        || quote!(false),
    ),
    comp(
        "fn q8r_x_bias(qs: &[i8; 32]) -> i32",
        "`-128·Σx` of an activation block: what cancels the weight offset of `q8r_offset()`.",
        || quote!(-128 * qs.iter().map(|&v| i32::from(v)).sum::<i32>()),
    ),
    comp(
        "fn q8r_init(bias: i32) -> RI",
        "The accumulator a block's `q8r_dot_acc` chain starts from: `bias` in every lane \
         where `q8r_offset()`, else zero.",
        || quote!(let _ = bias; ri_zero()),
    ),
    // --- composites: math on F ---
    comp(
        "fn f_exp(x: F) -> F",
        "`e^x`, Cephes polynomial with range reduction (about 2 ulp); input clamped to `[-87, 88]`.",
        exp_body,
    ),
    comp(
        "fn f_tanh(x: F) -> F",
        "`tanh x = 1 - 2 / (e^{2x} + 1)` (absolute error about 1e-7).",
        || {
            quote! {
                let e = f_exp(f_add(x, x));
                f_sub(f_splat(1.0), f_div(f_splat(2.0), f_add(e, f_splat(1.0))))
            }
        },
    ),
    comp(
        "fn f_erf(x: F) -> F",
        "`erf x`, Abramowitz & Stegun 7.1.26 (absolute error at most 1.5e-7).",
        erf_body,
    ),
    comp(
        "fn gelu_tanh_v(x: F) -> F",
        "GELU, tanh approximation: `x/2 · (1 + tanh(√(2/π)(x + 0.044715 x³)))`.",
        || {
            quote! {
                let inner = f_mul(
                    f_splat(0.797_884_6),
                    f_fma(f_mul(f_splat(0.044_715), x), f_mul(x, x), x),
                );
                f_mul(f_mul(f_splat(0.5), x), f_add(f_splat(1.0), f_tanh(inner)))
            }
        },
    ),
    comp(
        "fn gelu_erf_v(x: F) -> F",
        "GELU, exact: `x/2 · (1 + erf(x/√2))`.",
        || {
            quote! {
                let e = f_erf(f_mul(x, f_splat(core::f32::consts::FRAC_1_SQRT_2)));
                f_mul(f_mul(f_splat(0.5), x), f_add(f_splat(1.0), e))
            }
        },
    ),
    // --- composites: slice helpers shared by kernels ---
    comp(
        "fn dot_f32(a: &[f32], b: &[f32]) -> f32",
        "`Σ a[i]·b[i]` over the shorter length, four vector accumulators.",
        || {
            quote! {
                let n = a.len().min(b.len());
                let (mut s0, mut s1, mut s2, mut s3) = (f_zero(), f_zero(), f_zero(), f_zero());
                let mut i = 0;
                while i + 4 * LANES <= n {
                    s0 = f_fma(f_load(&a[i..]), f_load(&b[i..]), s0);
                    s1 = f_fma(f_load(&a[i + LANES..]), f_load(&b[i + LANES..]), s1);
                    s2 = f_fma(f_load(&a[i + 2 * LANES..]), f_load(&b[i + 2 * LANES..]), s2);
                    s3 = f_fma(f_load(&a[i + 3 * LANES..]), f_load(&b[i + 3 * LANES..]), s3);
                    i += 4 * LANES;
                }
                while i + LANES <= n {
                    s0 = f_fma(f_load(&a[i..]), f_load(&b[i..]), s0);
                    i += LANES;
                }
                let mut s = f_hsum(f_add(f_add(s0, s1), f_add(s2, s3)));
                while i < n {
                    s += a[i] * b[i];
                    i += 1;
                }
                s
            }
        },
    ),
    comp(
        "fn sum_f32(a: &[f32]) -> f32",
        "`Σ a[i]`, two vector accumulators.",
        || {
            quote! {
                let n = a.len();
                let (mut s0, mut s1) = (f_zero(), f_zero());
                let mut i = 0;
                while i + 2 * LANES <= n {
                    s0 = f_add(f_load(&a[i..]), s0);
                    s1 = f_add(f_load(&a[i + LANES..]), s1);
                    i += 2 * LANES;
                }
                while i + LANES <= n {
                    s0 = f_add(f_load(&a[i..]), s0);
                    i += LANES;
                }
                let mut s = f_hsum(f_add(s0, s1));
                while i < n {
                    s += a[i];
                    i += 1;
                }
                s
            }
        },
    ),
    comp(
        "fn axpy(y: &mut [f32], a: f32, x: &[f32])",
        "`y[i] += a·x[i]` over the shorter length.",
        || {
            quote! {
                let n = y.len().min(x.len());
                let av = f_splat(a);
                let mut i = 0;
                while i + LANES <= n {
                    let r = f_fma(av, f_load(&x[i..]), f_load(&y[i..]));
                    f_store(&mut y[i..], r);
                    i += LANES;
                }
                while i < n {
                    y[i] += a * x[i];
                    i += 1;
                }
            }
        },
    ),
    comp(
        "fn scale_f32(y: &mut [f32], a: f32)",
        "`y[i] *= a`.",
        || {
            quote! {
                let n = y.len();
                let av = f_splat(a);
                let mut i = 0;
                while i + LANES <= n {
                    let r = f_mul(f_load(&y[i..]), av);
                    f_store(&mut y[i..], r);
                    i += LANES;
                }
                while i < n {
                    y[i] *= a;
                    i += 1;
                }
            }
        },
    ),
    comp(
        "fn r8_store_row(row: &mut [f32], j0: usize, v: R8, bias: Option<&[f32]>, accumulate: bool)",
        "Stores 8 results as columns `j0..j0 + 8` of `row` (those that exist), \
         plus `bias[j]`, plus the old value when `accumulate`.",
        || {
            quote! {
                let n = row.len();
                if j0 + 8 <= n {
                    let mut v = v;
                    if let Some(bias) = bias {
                        v = r8_add(v, r8_load(&bias[j0..]));
                    }
                    if accumulate {
                        v = r8_add(v, r8_load(&row[j0..]));
                    }
                    r8_store(&mut row[j0..], v);
                } else {
                    let mut t = [0.0f32; 8];
                    r8_store(&mut t, v);
                    for (c, &s) in t.iter().enumerate().take(n.saturating_sub(j0)) {
                        let s = s + bias.map_or(0.0, |b| b[j0 + c]);
                        row[j0 + c] = if accumulate { row[j0 + c] + s } else { s };
                    }
                }
            }
        },
    ),
    comp(
        "fn exp_sub_sum(s: &mut [f32], mx: f32) -> f32",
        "`s[i] = e^(s[i] - mx)`, returning `Σ s[i]` (softmax numerators).",
        || {
            quote! {
                let n = s.len();
                let mv = f_splat(mx);
                let mut acc = f_zero();
                let mut i = 0;
                while i + LANES <= n {
                    let e = f_exp(f_sub(f_load(&s[i..]), mv));
                    f_store(&mut s[i..], e);
                    acc = f_add(acc, e);
                    i += LANES;
                }
                let mut sum = f_hsum(acc);
                if i < n {
                    let mut buf = [f32::NEG_INFINITY; LANES];
                    buf[..n - i].copy_from_slice(&s[i..]);
                    let e = f_exp(f_sub(f_load(&buf), mv));
                    f_store(&mut buf, e);
                    for (d, v) in s[i..].iter_mut().zip(buf) {
                        *d = v;
                        sum += v;
                    }
                }
                sum
            }
        },
    ),
    // --- K-quant and Q5_0 weights (see `crate::kquant`) ---
    OpDef {
        sig: "fn acc_splat(x: f32) -> A",
        doc: "`x` in every accumulator lane.",
        composite: None,
    },
    OpDef {
        sig: "fn ks_pair(lo: i32, hi: i32) -> KS",
        doc: "Chunk scales: `lo` for values 0..16, `hi` for 16..32 (each in `-128..=127`).",
        composite: None,
    },
    OpDef {
        sig: "fn ku_dot(w: KW, x: QX, s: KS) -> I",
        doc: "Exact `Σ s·w·x` over a 32-value chunk (unsigned 6-bit `w`, int8 `x` in \
              `[-127, 127]`, scale per 16-value half), as int32 partial sums in lanes.",
        composite: None,
    },
    OpDef {
        sig: "fn i16_dot(a: &[i16; 16], b: &[i16; 16]) -> I",
        doc: "Exact `Σ a·b` of 16 int16 pairs (products and pair sums must fit int32), \
              as int32 partial sums in lanes.",
        composite: None,
    },
    OpDef {
        sig: "fn q4k_w(qs: &[u8; 128], c: usize) -> KW",
        doc: "Chunk `c` (0..8, values `32c..32c+32`) of a Q4_K block: the low nibbles of \
              `qs[32(c/2)..]` for even `c`, the high ones for odd `c`.",
        composite: None,
    },
    OpDef {
        sig: "fn q6k_w(ql: &[u8; 128], qh: &[u8; 64], c: usize) -> KW",
        doc: "Chunk `c` (0..8) of a Q6_K block as unsigned 6-bit values (`q + 32`): half \
              `h = c/4`, `j = c%4`; low 4 bits from nibble `j/2` of `ql[64h + 32(j%2)..]`, \
              high 2 bits from bits `2j..2j+2` of `qh[32h..]`.",
        composite: None,
    },
    OpDef {
        sig: "fn q5_0_w(b: &BlockQ5_0) -> QW",
        doc: "A Q5_0 block as signed `q - 16` (`-16..=15`), prepared for `q8_dot`.",
        composite: None,
    },
    OpDef {
        sig: "fn q8k_quant(x: &[f32], out: &mut BlockQ8K)",
        doc: "`d` and `qs` of one Q8_K block from the first 256 values of `x`, bit-identical \
              to `quantize_row_q8_k_reference` (`bsums` are left to the caller).",
        composite: None,
    },
    OpDef {
        sig: "fn q8k_x(qs: &[i8; 256], c: usize) -> QX",
        doc: "Activation chunk `c` (values `32c..32c+32`) of a Q8_K block.",
        composite: Some(|| {
            quote! {
                let chunk: &[i8; 32] = qs[32 * c..32 * c + 32].try_into().expect("32 values");
                q8_load_x(chunk)
            }
        }),
    },
    OpDef {
        sig: "fn q4k_scales(s: &[u8; 12]) -> ([i32; 8], [i16; 16])",
        doc: "The 8 six-bit scales of a Q4_K block, and its 8 mins each repeated twice \
              (one per 16-value activation sum).",
        composite: Some(|| {
            quote! {
                let mut sc = [0i32; 8];
                let mut mn = [0i16; 16];
                let mut j = 0;
                while j < 8 {
                    let (a, m) = if j < 4 {
                        (s[j] & 63, s[j + 4] & 63)
                    } else {
                        ((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
                    };
                    sc[j] = i32::from(a);
                    mn[2 * j] = i16::from(m);
                    mn[2 * j + 1] = i16::from(m);
                    j += 1;
                }
                (sc, mn)
            }
        }),
    },
    OpDef {
        sig: "fn q4x8_w(qs: &[u8; 32], hi: usize) -> RW",
        doc: "The low (`hi == 0`) or high (`hi == 1`) nibbles of 32 packed bytes: 4 columns \
              of a group's 8 rows as non-negative int8, prepared for `ru_dot_acc`.",
        composite: None,
    },
    OpDef {
        sig: "fn q6x8_w(ql: &[u8; 32], hi: usize, qh: &[u8; 32], j: usize) -> RW",
        doc: "Nibble `hi` of `ql` plus bits `2j..2j+2` of `qh` as bits 4-5: 4 columns of a \
              group's 8 rows as unsigned 6-bit values, prepared for `ru_dot_acc`.",
        composite: None,
    },
    OpDef {
        sig: "fn ru_dot_acc(acc: RI, w: RW, x: RX) -> RI",
        doc: "`q8r_dot_acc` for weights known to be in `0..=63`, exact in int32 (unsigned \
              operands need no sign fix-up where the ISA multiplies unsigned by signed bytes).",
        composite: Some(|| quote!(q8r_dot_acc(acc, w, x))),
    },
    OpDef {
        sig: "fn ri_from_i8(s: &[i8; 8]) -> RI",
        doc: "8 int8 widened to the 8 int32 lanes (one per row of a group).",
        composite: None,
    },
    OpDef {
        sig: "fn ri_mul_acc(acc: RI, p: RI, s: RI) -> RI",
        doc: "`acc + p·s` per lane, in int32 (callers keep it in range).",
        composite: None,
    },
    OpDef {
        sig: "fn ri_sub_splat(p: RI, v: i32) -> RI",
        doc: "`p - v` in every lane.",
        composite: None,
    },
    OpDef {
        sig: "fn ri_madd_pair_acc(acc: RI, m: &[i16; 16], pair: i32) -> RI",
        doc: "`acc[r] + m[2r]·lo + m[2r+1]·hi` for the 8 lanes, where `lo` and `hi` are the \
              low and high int16 halves of `pair` (exact in int32).",
        composite: None,
    },
];

fn exp_body() -> TokenStream {
    quote! {
        let x = f_min(f_max(x, f_splat(-87.0)), f_splat(88.0));
        let n = f_round(f_mul(x, f_splat(core::f32::consts::LOG2_E)));
        // x - n·ln2 in two steps (Cody-Waite) so r keeps full precision.
        let r = f_fma(n, f_splat(-0.693_359_4), x);
        let r = f_fma(n, f_splat(2.121_944_4e-4), r);
        let mut p = f_splat(1.987_569_1e-4);
        p = f_fma(p, r, f_splat(1.398_199_9e-3));
        p = f_fma(p, r, f_splat(8.333_452e-3));
        p = f_fma(p, r, f_splat(4.166_579_6e-2));
        p = f_fma(p, r, f_splat(1.666_666_5e-1));
        p = f_fma(p, r, f_splat(5.000_000_1e-1));
        p = f_fma(p, f_mul(r, r), f_add(r, f_splat(1.0)));
        f_mul(p, f_pow2i(n))
    }
}

fn erf_body() -> TokenStream {
    quote! {
        let a = f_abs(x);
        let t = f_div(f_splat(1.0), f_fma(f_splat(0.327_591_1), a, f_splat(1.0)));
        let mut p = f_splat(1.061_405_4);
        p = f_fma(p, t, f_splat(-1.453_152_1));
        p = f_fma(p, t, f_splat(1.421_413_7));
        p = f_fma(p, t, f_splat(-0.284_496_74));
        p = f_fma(p, t, f_splat(0.254_829_6));
        p = f_mul(p, t);
        let y = f_sub(f_splat(1.0), f_mul(p, f_exp(f_sub(f_zero(), f_mul(a, a)))));
        f_copysign(y, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_signatures_parse() {
        let mut names: Vec<_> = OPS.iter().map(OpDef::name).collect();
        for op in OPS {
            syn::parse_str::<syn::Signature>(op.sig).expect(op.sig);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPS.len());
    }
}
