//! The op table: every operation a kernel body may call, declared once.
//!
//! Kernel bodies (see [`crate::kernels`]) are written against these names and
//! abstract types that each ISA defines in its prelude:
//!
//! | type | meaning |
//! |------|---------|
//! | `F`  | a vector of `LANES` f32 |
//! | `A`  | the f32 accumulator of one Q8_0 block dot (its own width) |
//! | `I`  | the i32 result of one 32 × int8 block dot (width matches `A`) |
//! | `QW` | one weight block's 32 int8, prepared for [`q8_dot`](Op::q8_dot) |
//! | `QX` | one activation block's 32 int8, prepared the same way |
//! | `R8` | 8 f32, one per weight row of an 8-row group (`BlockQ8_0x8`) |
//! | `RI` | 8 int32 dot products, one per row of the group |
//! | `RW` | 4 columns of the 8 rows (32 int8), prepared for [`q8r_dot_acc`](Op::q8r_dot_acc) |
//! | `RX` | 4 activation int8, prepared (broadcast) for the same |
//! | `PX` | one activation block prepared once per tile for every group's `RX` ([`q8r_load_px`](Op::q8r_load_px)) |
//! | `R16`, `RI16`, `RW16` | `R8`, `RI`, `RW` for two groups at once (16 rows): one register where the lowering's `wide_groups`, else a pair |
//! | `KW` | 32 unsigned weight quants (`0..=63`) of one chunk, prepared for [`ku_dot`](Op::ku_dot) |
//! | `KS` | the scales of a chunk's two 16-value halves, prepared for [`ku_dot`](Op::ku_dot) |
//! | `CA`, `CA2` | the int32 accumulator of the ceiling probe's first and second form ([`ceil_mac`](Op::ceil_mac)) |
//! | `CB`, `CB2` | the int8 operand register of the same |
//!
//! A *primitive* op has no default body: every [`Lowering`](crate::lower::Lowering)
//! must supply one. A *composite* op has a default body written once in terms
//! of other ops (a lowering may still override it, as scalar does with
//! `f32::exp`). The generator emits every op as an `#[inline]` function in each
//! ISA module, so kernels call them by name and never see an intrinsic.
//!
//! The table is written as the functions it generates: a doc comment, then
//! `fn name(params) -> Ret;` for a primitive or `fn name(params) -> Ret { body }`
//! for a composite. `ops!` takes the names as identifiers and the types as
//! Rust types, so a malformed signature does not compile, and turns the table
//! into [`OPS`] and the [`Op`] enum the lowerings match on (so a lowering entry
//! for an op that does not exist does not compile either). Real Rust syntax
//! rather than an enum of value kinds: the signatures use a couple of dozen
//! distinct types (slices, fixed arrays, block structs, `Option`, a tuple), and
//! the table then reads exactly like the generated functions.

use proc_macro2::TokenStream;
use quote::quote;

/// One operation: its name, what it means, its Rust signature and (for
/// composites) its ISA-independent body.
pub struct OpDef {
    /// The op, as the lowerings name it.
    pub op: Op,
    /// The op's name: its generated function's.
    pub name: &'static str,
    /// What the op computes (emitted as its doc comment).
    pub doc: &'static str,
    /// The generated function's signature, e.g. `fn f_add(a: F, b: F) -> F`.
    pub sig: fn() -> TokenStream,
    /// Default body in terms of other ops; `None` for primitives.
    pub composite: Option<fn() -> TokenStream>,
}

impl Op {
    /// The op's definition in [`OPS`].
    pub fn def(self) -> &'static OpDef {
        &OPS[self as usize]
    }
}

/// Every op of the DSL (the one registry: [`OPS`]).
pub fn all_ops() -> impl Iterator<Item = &'static OpDef> {
    OPS.iter()
}

/// Turns the op table into the [`Op`] enum and [`OPS`], in table order.
///
/// Reads one op at a time (a primitive ends in `;`, a composite in its body,
/// which one signature pattern followed by an optional body could not tell
/// apart: a type may not be followed by whatever starts the next op), so it
/// recurses once per op: past about 120 ops, raise `recursion_limit`.
macro_rules! ops {
    (@read [$($done:tt)*]
        $(#[doc = $doc:literal])+
        fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;
        $($rest:tt)*
    ) => {
        ops!(@read [$($done)* [$($doc)+] $name (($($arg: $ty),*) $(-> $ret)?) ()] $($rest)*);
    };
    (@read [$($done:tt)*]
        $(#[doc = $doc:literal])+
        fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? { $($body:tt)* }
        $($rest:tt)*
    ) => {
        ops!(@read [$($done)* [$($doc)+] $name (($($arg: $ty),*) $(-> $ret)?) ({ $($body)* })] $($rest)*);
    };
    (@read [$([$($doc:literal)+] $name:ident ($($sig:tt)*) ($($body:tt)*))*]) => {
        /// Every op of the DSL by name, in [`OPS`] order: the lowerings match
        /// on it. Each variant is spelled as its generated function.
        #[allow(non_camel_case_types, reason = "spelled as the generated functions")]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Op {
            $($(#[doc = $doc])+ $name,)*
        }

        /// Every op, in the order of the generated functions.
        pub const OPS: &[OpDef] = &[$(OpDef {
            op: Op::$name,
            name: stringify!($name),
            doc: concat!($($doc),+).trim_ascii_start(),
            sig: || quote!(fn $name $($sig)*),
            composite: ops!(@body $($body)*),
        },)*];
    };
    (@read [$($done:tt)*] $(#[doc = $doc:literal])+ fn $name:ident $($rest:tt)*) => {
        compile_error!(concat!(
            "op `", stringify!($name), "`: not `fn name(arg: Type, ..) -> Type` then `;` or a body"
        ));
    };
    (@body) => { None };
    (@body { $($body:tt)* }) => { Some(|| quote!($($body)*)) };
    (# $($table:tt)*) => { ops!(@read [] # $($table)*); };
}

ops! {
    // --- f32 vectors ---
    /// All lanes 0.
    fn f_zero() -> F;
    /// All lanes `x`.
    fn f_splat(x: f32) -> F;
    /// The first `LANES` values of `s` (panics if shorter).
    fn f_load(s: &[f32]) -> F;
    /// Stores `v` to the first `LANES` values of `s` (panics if shorter).
    fn f_store(s: &mut [f32], v: F);
    /// The first `LANES` int8 of `s` converted to f32 (panics if shorter).
    fn f_from_i8(s: &[i8]) -> F;
    /// The first `LANES` IEEE halves of `s` (as bits) converted to f32, exactly as
    /// `f16_to_f32` converts one (panics if shorter).
    fn f_load_f16(s: &[u16]) -> F;
    /// `a + b`.
    fn f_add(a: F, b: F) -> F;
    /// `a - b`.
    fn f_sub(a: F, b: F) -> F;
    /// `a * b`.
    fn f_mul(a: F, b: F) -> F;
    /// `a / b`.
    fn f_div(a: F, b: F) -> F;
    /// Lane-wise maximum.
    fn f_max(a: F, b: F) -> F;
    /// Lane-wise minimum.
    fn f_min(a: F, b: F) -> F;
    /// `a * b + c` (fused where the ISA has it).
    fn f_fma(a: F, b: F, c: F) -> F;
    /// `|a|`.
    fn f_abs(a: F) -> F;
    /// `|mag|` with the sign bit of `sign`.
    fn f_copysign(mag: F, sign: F) -> F;
    /// Nearest integer (any tie rule: only used where ties do not matter).
    fn f_round(a: F) -> F;
    /// `2^n` for integral `n` in `[-126, 127]`.
    fn f_pow2i(n: F) -> F;
    /// Sum of the lanes.
    fn f_hsum(a: F) -> f32;
    /// Maximum of the lanes.
    fn f_hmax(a: F) -> f32;
    /// One IEEE half (as bits) to f32.
    fn f16_to_f32(bits: u16) -> f32;
    // --- Q8_0 block dot ---
    /// A zero block-dot accumulator.
    fn acc_zero() -> A;
    /// A block scale (f16 bits) in every lane.
    fn acc_splat_f16(bits: u16) -> A;
    /// `a * b` (combines two block scales).
    fn acc_mul(a: A, b: A) -> A;
    /// `acc + s * f32(p)`: adds one scaled block dot.
    fn acc_fma(s: A, p: I, acc: A) -> A;
    /// Sum of the accumulator's lanes.
    fn acc_hsum(a: A) -> f32;
    /// Hints that the block at `p` will be read soon (never dereferences; may be a no-op).
    fn prefetch(p: *const BlockQ8_0);
    /// Zero block-dot lanes.
    fn i_zero() -> I;
    /// Lane-wise int32 `a + b` (wrapping).
    fn i_add(a: I, b: I) -> I;
    /// Sum of the int32 lanes (wrapping).
    fn i_hsum(a: I) -> i32;
    /// Loads a weight block's quants, prepared for `q8_dot`.
    fn q8_load_w(qs: &[i8; 32]) -> QW;
    /// Loads an activation block's quants, prepared for `q8_dot`.
    fn q8_load_x(qs: &[i8; 32]) -> QX;
    /// Exact int32 dot product of 32 int8 pairs, as partial sums in lanes.
    fn q8_dot(w: QW, x: QX) -> I;
    /// Quantizes the first 32 values of `x` bit-identically to `quantize_row_q8_0_reference`:
    /// `d = absmax/127` (f16), `q = round(x/d)` ties away from zero.
    fn q8_quant(x: &[f32], out: &mut BlockQ8_0);
    // --- Q8_0 over 8-row groups (BlockQ8_0x8) ---
    /// 8 zeros.
    fn r8_zero() -> R8;
    /// The 8 row scales of a group, as f32.
    fn r8_scales(d: &[f16; 8]) -> R8;
    /// The first 8 values of `s` (panics if shorter).
    fn r8_load(s: &[f32]) -> R8;
    /// Stores `v` to the first 8 values of `s` (panics if shorter).
    fn r8_store(s: &mut [f32], v: R8);
    /// `a + b`.
    fn r8_add(a: R8, b: R8) -> R8;
    /// `acc + (dw·dx)·f32(p)`: adds one block's 8 scaled dots.
    fn r8_fma_block(dw: R8, dx: f32, p: RI, acc: R8) -> R8;
    /// `acc + a·s`: adds a scalar times the 8 rows' values (Q4_1's minimums times an activation
    /// block's sum).
    fn r8_fma_splat(a: R8, s: f32, acc: R8) -> R8;
    /// 8 zero int32.
    fn ri_zero() -> RI;
    /// Loads 4 columns of a group's 8 rows (`qs[4r + e]`), prepared for `q8r_dot_acc` (plus 128, as
    /// unsigned bytes, where `q8r_offset()`).
    fn q8r_load_w(qs: &[i8; 32]) -> RW;
    /// Activation values `4·quad .. 4·quad + 4` of a block, prepared for `q8r_dot_acc`.
    fn q8r_load_x(qs: &[i8; 32], quad: usize) -> RX;
    /// `acc[r] + Σ_e (w[4r + e] + o)·x[e]` for the 8 rows `r`, exact in int32, where `o` is 128 if
    /// `q8r_offset()`, else 0.
    fn q8r_dot_acc(acc: RI, w: RW, x: RX) -> RI;
    /// Whether `q8r_load_w` offsets the weights by 128: an ISA that multiplies unsigned by signed
    /// bytes (VNNI) then needs no sign fix-up per token, and a block's dot starts from
    /// `q8r_init(q8r_x_bias(..))` instead of zero.
    fn q8r_offset() -> bool { false }
    /// `-128·Σx` of an activation block: what cancels the weight offset of `q8r_offset()`.
    fn q8r_x_bias(qs: &[i8; 32]) -> i32 { -128 * qs.iter().map(|&v| i32::from(v)).sum::<i32>() }
    /// The accumulator a block's `q8r_dot_acc` chain starts from: `bias` in every lane where
    /// `q8r_offset()`, else zero.
    fn q8r_init(bias: i32) -> RI { let _ = bias; ri_zero() }
    /// Whether the 8-row group tiles prepare each activation block once per tile
    /// (`q8r_prep_x`) for the dots of all the panel's groups (`q8r_load_px`) instead of
    /// loading its quads for each group (`q8r_load_x`): where making `RX` costs more than
    /// loading it.
    fn q8r_prepared() -> bool { false }
    /// An activation block prepared for `q8r_load_px`.
    fn q8r_prep_x(qs: &[i8; 32]) -> PX { *qs }
    /// `q8r_load_x` of a block prepared by `q8r_prep_x`.
    fn q8r_load_px(p: &PX, quad: usize) -> RX { q8r_load_x(p, quad) }
    /// 16 zeros.
    fn r16_zero() -> R16 { (r8_zero(), r8_zero()) }
    /// The 16 row scales of groups `d0` and `d1`, as f32.
    fn r16_scales(d0: &[f16; 8], d1: &[f16; 8]) -> R16 { (r8_scales(d0), r8_scales(d1)) }
    /// `acc + (dw·dx)·f32(p)` for 16 rows.
    fn r16_fma_block(dw: R16, dx: f32, p: RI16, acc: R16) -> R16 {
        (r8_fma_block(dw.0, dx, p.0, acc.0), r8_fma_block(dw.1, dx, p.1, acc.1))
    }
    /// `acc + a·s` for 16 rows.
    fn r16_fma_splat(a: R16, s: f32, acc: R16) -> R16 { (r8_fma_splat(a.0, s, acc.0), r8_fma_splat(a.1, s, acc.1)) }
    /// `q8r_init` for 16 rows.
    fn q8r16_init(bias: i32) -> RI16 { (q8r_init(bias), q8r_init(bias)) }
    /// `q8r_load_w` of the same column quad of two groups (`qs0`: rows 0-7, `qs1`: rows 8-15).
    fn q8r16_load_w(qs0: &[i8; 32], qs1: &[i8; 32]) -> RW16 { (q8r_load_w(qs0), q8r_load_w(qs1)) }
    /// `q8r_dot_acc` for 16 rows, with activation values `4·quad .. 4·quad + 4` of `x`.
    fn q8r16_dot_acc(acc: RI16, w: RW16, x: &[i8; 32], quad: usize) -> RI16 {
        let xq = q8r_load_x(x, quad);
        (q8r_dot_acc(acc.0, w.0, xq), q8r_dot_acc(acc.1, w.1, xq))
    }
    /// `Σ qs[i]`, exact: an activation block's sum, which Q4_1's minimums multiply.
    fn q8_sum(qs: &[i8; 32]) -> i32 { qs.iter().map(|&v| i32::from(v)).sum::<i32>() }
    // --- composites: math on F ---
    /// `e^x`, Cephes polynomial with range reduction (about 2 ulp); input clamped to `[-87, 88]`.
    fn f_exp(x: F) -> F {
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
    /// `tanh x = 1 - 2 / (e^{2x} + 1)` (absolute error about 1e-7).
    fn f_tanh(x: F) -> F {
        let e = f_exp(f_add(x, x));
        f_sub(f_splat(1.0), f_div(f_splat(2.0), f_add(e, f_splat(1.0))))
    }
    /// `erf x`, Abramowitz & Stegun 7.1.26 (absolute error at most 1.5e-7).
    fn f_erf(x: F) -> F {
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
    /// GELU, tanh approximation: `x/2 · (1 + tanh(√(2/π)(x + 0.044715 x³)))`.
    fn gelu_tanh_v(x: F) -> F {
        let inner = f_mul(
            f_splat(0.797_884_6),
            f_fma(f_mul(f_splat(0.044_715), x), f_mul(x, x), x),
        );
        f_mul(f_mul(f_splat(0.5), x), f_add(f_splat(1.0), f_tanh(inner)))
    }
    /// GELU, exact: `x/2 · (1 + erf(x/√2))`.
    fn gelu_erf_v(x: F) -> F {
        let e = f_erf(f_mul(x, f_splat(core::f32::consts::FRAC_1_SQRT_2)));
        f_mul(f_mul(f_splat(0.5), x), f_add(f_splat(1.0), e))
    }
    /// SiLU: `x / (1 + e^{-x})`, as ggml computes it (`ggml_silu_f32`, and its vector form
    /// `ggml_v_silu`: the same division of `x` by `1 + exp(-x)`).
    fn silu_v(x: F) -> F {
        f_div(x, f_add(f_splat(1.0), f_exp(f_sub(f_zero(), x))))
    }
    // --- composites: slice helpers shared by kernels ---
    /// `Σ a[i]·b[i]` over the shorter length, four vector accumulators.
    fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
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
    /// `Σ a[i]`, two vector accumulators.
    fn sum_f32(a: &[f32]) -> f32 {
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
    /// `y[i] += a·x[i]` over the shorter length.
    fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
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
    /// `Σ a[i]·b[i]` over the shorter length with `b` IEEE halves (as bits): the sums of
    /// `dot_f32` in its order, so the result equals `dot_f32` of `a` and `b` converted.
    fn dot_f32_f16(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let (mut s0, mut s1, mut s2, mut s3) = (f_zero(), f_zero(), f_zero(), f_zero());
        let mut i = 0;
        while i + 4 * LANES <= n {
            s0 = f_fma(f_load(&a[i..]), f_load_f16(&b[i..]), s0);
            s1 = f_fma(f_load(&a[i + LANES..]), f_load_f16(&b[i + LANES..]), s1);
            s2 = f_fma(f_load(&a[i + 2 * LANES..]), f_load_f16(&b[i + 2 * LANES..]), s2);
            s3 = f_fma(f_load(&a[i + 3 * LANES..]), f_load_f16(&b[i + 3 * LANES..]), s3);
            i += 4 * LANES;
        }
        while i + LANES <= n {
            s0 = f_fma(f_load(&a[i..]), f_load_f16(&b[i..]), s0);
            i += LANES;
        }
        let mut s = f_hsum(f_add(f_add(s0, s1), f_add(s2, s3)));
        while i < n {
            s += a[i] * f16_to_f32(b[i]);
            i += 1;
        }
        s
    }
    /// `y[i] += a·x[i]` over the shorter length with `x` IEEE halves (as bits): equal to
    /// `axpy` of `x` converted.
    fn axpy_f16(y: &mut [f32], a: f32, x: &[u16]) {
        let n = y.len().min(x.len());
        let av = f_splat(a);
        let mut i = 0;
        while i + LANES <= n {
            let r = f_fma(av, f_load_f16(&x[i..]), f_load(&y[i..]));
            f_store(&mut y[i..], r);
            i += LANES;
        }
        while i < n {
            y[i] += a * f16_to_f32(x[i]);
            i += 1;
        }
    }
    /// `y[i] *= a`.
    fn scale_f32(y: &mut [f32], a: f32) {
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
    /// Stores 8 results as columns `j0..j0 + 8` of `row` (those that exist), plus `bias[j]`, plus
    /// the old value when `accumulate`.
    fn r8_store_row(row: &mut [f32], j0: usize, v: R8, bias: Option<&[f32]>, accumulate: bool) {
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
    /// `r8_store_row` for 16 results, columns `j0..j0 + 16`.
    fn r16_store_row(row: &mut [f32], j0: usize, v: R16, bias: Option<&[f32]>, accumulate: bool) {
        r8_store_row(row, j0, v.0, bias, accumulate);
        r8_store_row(row, j0 + 8, v.1, bias, accumulate);
    }
    /// `s[i] = e^(s[i] - mx)`, returning `Σ s[i]` (softmax numerators).
    fn exp_sub_sum(s: &mut [f32], mx: f32) -> f32 {
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
    // --- K-quant and Q5_0 weights (see `crate::kquant`) ---
    /// `x` in every accumulator lane.
    fn acc_splat(x: f32) -> A;
    /// Chunk scales: `lo` for values 0..16, `hi` for 16..32 (each in `-128..=127`).
    fn ks_pair(lo: i32, hi: i32) -> KS;
    /// Exact `Σ s·w·x` over a 32-value chunk (unsigned 6-bit `w`, int8 `x` in `[-127, 127]`, scale
    /// per 16-value half), as int32 partial sums in lanes.
    fn ku_dot(w: KW, x: QX, s: KS) -> I;
    /// Exact `Σ a·b` of 16 int16 pairs (products and pair sums must fit int32), as int32 partial
    /// sums in lanes.
    fn i16_dot(a: &[i16; 16], b: &[i16; 16]) -> I;
    /// Chunk `c` (0..8, values `32c..32c+32`) of a Q4_K block: the low nibbles of `qs[32(c/2)..]`
    /// for even `c`, the high ones for odd `c`.
    fn q4k_w(qs: &[u8; 128], c: usize) -> KW;
    /// Chunk `c` (0..8) of a Q6_K block as unsigned 6-bit values (`q + 32`): half `h = c/4`,
    /// `j = c%4`; low 4 bits from nibble `j/2` of `ql[64h + 32(j%2)..]`, high 2 bits from bits
    /// `2j..2j+2` of `qh[32h..]`.
    fn q6k_w(ql: &[u8; 128], qh: &[u8; 64], c: usize) -> KW;
    /// A Q5_0 block as signed `q - 16` (`-16..=15`), prepared for `q8_dot`.
    fn q5_0_w(b: &BlockQ5_0) -> QW;
    /// `d` and `qs` of one Q8_K block from the first 256 values of `x`, bit-identical to
    /// `quantize_row_q8_k_reference` (`bsums` are left to the caller).
    fn q8k_quant(x: &[f32], out: &mut BlockQ8K);
    /// Activation chunk `c` (values `32c..32c+32`) of a Q8_K block.
    fn q8k_x(qs: &[i8; 256], c: usize) -> QX {
        let chunk: &[i8; 32] = qs[32 * c..32 * c + 32].try_into().expect("32 values");
        q8_load_x(chunk)
    }
    /// The 8 six-bit scales of a Q4_K block, and its 8 mins each repeated twice (one per 16-value
    /// activation sum).
    fn q4k_scales(s: &[u8; 12]) -> ([i32; 8], [i16; 16]) {
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
    /// The low (`hi == 0`) or high (`hi == 1`) nibbles of 32 packed bytes: 4 columns of a group's 8
    /// rows as non-negative int8, prepared for `ru_dot_acc`.
    fn q4x8_w(qs: &[u8; 32], hi: usize) -> RW;
    /// Nibble `hi` of `ql` plus bits `2j..2j+2` of `qh` as bits 4-5: 4 columns of a group's 8 rows
    /// as unsigned 6-bit values, prepared for `ru_dot_acc`.
    fn q6x8_w(ql: &[u8; 32], hi: usize, qh: &[u8; 32], j: usize) -> RW;
    /// `q8r_dot_acc` for weights known to be in `0..=63`, exact in int32 (unsigned operands need no
    /// sign fix-up where the ISA multiplies unsigned by signed bytes).
    fn ru_dot_acc(acc: RI, w: RW, x: RX) -> RI { q8r_dot_acc(acc, w, x) }
    /// 8 int8 widened to the 8 int32 lanes (one per row of a group).
    fn ri_from_i8(s: &[i8; 8]) -> RI;
    /// `acc + p·s` per lane, in int32 (callers keep it in range).
    fn ri_mul_acc(acc: RI, p: RI, s: RI) -> RI;
    /// `p - v` in every lane.
    fn ri_sub_splat(p: RI, v: i32) -> RI;
    /// `acc[r] + m[2r]·lo + m[2r+1]·hi` for the 8 lanes, where `lo` and `hi` are the low and high
    /// int16 halves of `pair` (exact in int32).
    fn ri_madd_pair_acc(acc: RI, m: &[i16; 16], pair: i32) -> RI;
    // --- the same for two groups at once (16 rows), where the lowering's `wide_groups` ---
    /// 16 zero int32.
    fn ri16_zero() -> RI16 { (ri_zero(), ri_zero()) }
    /// `q4x8_w` of the same packed bytes of two groups.
    fn q4x16_w(qs0: &[u8; 32], qs1: &[u8; 32], hi: usize) -> RW16 { (q4x8_w(qs0, hi), q4x8_w(qs1, hi)) }
    /// `q6x8_w` of the same packed bytes of two groups.
    fn q6x16_w(ql0: &[u8; 32], ql1: &[u8; 32], hi: usize, qh0: &[u8; 32], qh1: &[u8; 32], j: usize) -> RW16 {
        (q6x8_w(ql0, hi, qh0, j), q6x8_w(ql1, hi, qh1, j))
    }
    /// `ru_dot_acc` for 16 rows, with activation values `4·quad .. 4·quad + 4` of `x`.
    fn ru16_dot_acc(acc: RI16, w: RW16, x: &[i8; 32], quad: usize) -> RI16 {
        let xq = q8r_load_x(x, quad);
        (ru_dot_acc(acc.0, w.0, xq), ru_dot_acc(acc.1, w.1, xq))
    }
    /// `ri_from_i8` of two groups' 8 values.
    fn ri16_from_i8(s0: &[i8; 8], s1: &[i8; 8]) -> RI16 { (ri_from_i8(s0), ri_from_i8(s1)) }
    /// `ri_mul_acc` for 16 lanes.
    fn ri16_mul_acc(acc: RI16, p: RI16, s: RI16) -> RI16 { (ri_mul_acc(acc.0, p.0, s.0), ri_mul_acc(acc.1, p.1, s.1)) }
    /// `ri_sub_splat` for 16 lanes.
    fn ri16_sub_splat(p: RI16, v: i32) -> RI16 { (ri_sub_splat(p.0, v), ri_sub_splat(p.1, v)) }
    /// `ri_madd_pair_acc` for 16 lanes (`m0`: rows 0-7, `m1`: rows 8-15).
    fn ri16_madd_pair_acc(acc: RI16, m0: &[i16; 16], m1: &[i16; 16], pair: i32) -> RI16 {
        (ri_madd_pair_acc(acc.0, m0, pair), ri_madd_pair_acc(acc.1, m1, pair))
    }
    // --- the register-only int8 ceiling probe (no kernel uses these) ---
    // Two forms per ISA at most (`ceil_*`, `ceil2_*`; see `Lowering::int8_ceiling`). The defaults
    // are for a form the ISA does not have: it is never probed, so they are never called.
    /// Zero accumulator of the ceiling form's multiply-accumulate (`CA`).
    fn ceil_zero() -> CA { unreachable!("no int8 ceiling form") }
    /// The ceiling form's operand (`CB`): the first bytes of `s`, as many as one register holds.
    fn ceil_load(s: &[i8; 64]) -> CB { let _ = s; unreachable!("no int8 ceiling form") }
    /// `v` unchanged, with no instruction, but opaque to the optimizer: a multiply of loop-invariant
    /// operands would otherwise be hoisted out of the probe loop, or shared by its chains.
    fn ceil_opaque(v: CB) -> CB { let _ = v; unreachable!("no int8 ceiling form") }
    /// `acc` plus the products of `u` (read as unsigned bytes where the instruction multiplies
    /// unsigned by signed) and `s`, summed into its int32 lanes: the ISA's best int8
    /// multiply-accumulate sequence, register operands only.
    fn ceil_mac(acc: CA, u: CB, s: CB) -> CA { let _ = (acc, u, s); unreachable!("no int8 ceiling form") }
    /// Sum of the accumulator's int32 lanes (wrapping).
    fn ceil_hsum(a: CA) -> i32 { let _ = a; unreachable!("no int8 ceiling form") }
    /// `ceil_zero` of the ISA's second form (`CA2`).
    fn ceil2_zero() -> CA2 { unreachable!("no second int8 ceiling form") }
    /// `ceil_load` of the second form (`CB2`).
    fn ceil2_load(s: &[i8; 64]) -> CB2 { let _ = s; unreachable!("no second int8 ceiling form") }
    /// `ceil_opaque` of the second form.
    fn ceil2_opaque(v: CB2) -> CB2 { let _ = v; unreachable!("no second int8 ceiling form") }
    /// `ceil_mac` of the second form.
    fn ceil2_mac(acc: CA2, u: CB2, s: CB2) -> CA2 {
        let _ = (acc, u, s);
        unreachable!("no second int8 ceiling form")
    }
    /// `ceil_hsum` of the second form.
    fn ceil2_hsum(a: CA2) -> i32 { let _ = a; unreachable!("no second int8 ceiling form") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_is_enum_order() {
        // (Names are unique: a second variant of one name does not compile.)
        for (i, op) in OPS.iter().enumerate() {
            assert_eq!(op.op as usize, i, "{}", op.name);
            assert_eq!(op.op.def().name, op.name);
            assert_eq!(format!("{:?}", op.op), op.name);
        }
    }

    #[test]
    fn signatures_and_docs_come_from_the_table() {
        let add = Op::f_add.def();
        assert_eq!(
            (add.sig)().to_string(),
            quote!(fn f_add(a: F, b: F) -> F).to_string()
        );
        assert_eq!(add.doc, "`a + b`.");
        assert!(add.composite.is_none());
        let store = Op::f_store.def();
        assert_eq!(
            (store.sig)().to_string(),
            quote!(fn f_store(s: &mut [f32], v: F)).to_string()
        );
        // A doc comment over several lines is one line of text.
        assert!(
            Op::q8_quant
                .def()
                .doc
                .contains("to `quantize_row_q8_0_reference`: `d")
        );
        let offset = Op::q8r_offset.def();
        assert_eq!((offset.composite.unwrap())().to_string(), "false");
    }
}
