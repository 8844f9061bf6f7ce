//! WebAssembly SIMD128: 4 f32 lanes in one `v128`, and optionally relaxed
//! SIMD.
//!
//! A WebAssembly engine cannot be asked for features at run time: a module
//! holding one instruction the engine lacks fails to validate as a whole. So
//! these lowerings are only generated when the whole build enables their
//! features (`-C target-feature=+simd128`, `+simd128,+relaxed-simd`; see
//! [`Lowering::build_features`]), and the page picks which `.wasm` to load.
//!
//! SIMD128 has no fused multiply-add: `f_fma` is a multiply then an add, as
//! the scalar reference computes it. Its 8-row group dots widen to int16 and
//! use `i32x4.dot_i16x8_s` (one `pmaddwd` on x86, exact for any int8): each
//! weight quad is widened once for every token of a tile into its even and
//! odd columns, in place (`even_odd`), so its dots with the same form of an
//! activation quad (made once per tile, broadcast by one load) add up 4
//! rows' quads in their own lanes: no shuffles, no lanes to add across. The
//! row layout's block dot widens with `extmul` and `extadd_pairwise`. With
//! relaxed SIMD the dot is `i32x4.relaxed_dot_i8x16_i7x16_add`, whose second
//! operand is only defined for 7-bit values: the weights' magnitudes go
//! there and their signs move to the activations (as x86's `vpmaddubsw` path
//! does), which is exact for the `[-127, 127]` quants Q8_0 files hold: one
//! `sdot` on ARM, five instructions on x86 without AVX-VNNI (see
//! docs/wasm.md). `f32x4.relaxed_madd` may or may not fuse, so the relaxed
//! variant's f32 sums may differ from SIMD128's in the last bit. Neither has
//! a half-precision conversion: `f16x4_to_f32` does it with integer and f32
//! ops, exactly.

use proc_macro2::TokenStream;
use quote::quote;

use super::{CeilingForm, Lowering};
use crate::ops::Op;

/// WebAssembly SIMD128, optionally with relaxed SIMD.
pub struct Wasm {
    /// Use relaxed SIMD's int8 dot and multiply-add.
    pub relaxed: bool,
}

impl Lowering for Wasm {
    fn module(&self) -> &'static str {
        if self.relaxed {
            "wasm_relaxed_simd"
        } else {
            "wasm_simd128"
        }
    }
    fn isa_variant(&self) -> &'static str {
        if self.relaxed {
            "WasmRelaxedSimd"
        } else {
            "WasmSimd128"
        }
    }
    fn target_arch(&self) -> Option<&'static str> {
        Some("wasm32")
    }
    fn features(&self) -> Option<&'static str> {
        // The whole build enables them (see `build_features`): nothing to
        // enable per function, nothing to detect.
        None
    }
    fn build_features(&self) -> &'static [&'static str] {
        if self.relaxed {
            &["simd128", "relaxed-simd"]
        } else {
            &["simd128"]
        }
    }
    fn detect(&self) -> TokenStream {
        // Compiled only into a build with these features: an engine that
        // runs this module has them.
        quote!(true)
    }
    fn prelude(&self) -> TokenStream {
        let (qw, rw) = if self.relaxed {
            (
                quote! {
                    /// `(|w| low 16, |w| high 16, sign mask low, sign mask high)`: the
                    /// 7-bit operand of the relaxed dot and the signs moved to `x`.
                    type QW = (v128, v128, v128, v128);
                },
                quote! {
                    /// `(|w|, |w|, sign mask, sign mask)` of rows 0–3 and 4–7, as `QW`.
                    type RW = (v128, v128, v128, v128);
                    /// The 4 values repeated in every 32-bit lane.
                    type RX = v128;
                },
            )
        } else {
            (
                quote! {
                    /// Bytes 0–15 and 16–31.
                    type QW = (v128, v128);
                },
                quote! {
                    /// Rows 0–3 then rows 4–7, each as their even then odd columns
                    /// (see `even_odd`): the `i32x4.dot_i16x8_s` operands.
                    type RW = (v128, v128, v128, v128);
                    /// The quad's even then odd columns (`even_odd` of the 4 values in
                    /// every 32-bit lane).
                    type RX = (v128, v128);

                    /// The even (0, 2) and odd (1, 3) values of each 4-value group
                    /// (`b[4r + e]`) sign-extended to int16 where they are: int16 lanes
                    /// `2r` and `2r + 1` of the first hold values 0 and 2 of group `r`,
                    /// of the second values 1 and 3. `i32x4.dot_i16x8_s` of each with
                    /// the same form of the activations adds up each group's 4 products
                    /// in its own lane: no bytes move across lanes (no shuffle, whose
                    /// mask x86 engines build anew each time).
                    #[inline(always)]
                    fn even_odd(b: v128) -> (v128, v128) {
                        (i16x8_shr(i16x8_shl(b, 8), 8), i16x8_shr(b, 8))
                    }

                    /// `RW` of a column quad's 8 rows (rows 0–3 in `a`, 4–7 in `b`).
                    #[inline(always)]
                    fn rows_i16(a: v128, b: v128) -> RW {
                        let ((a0, a1), (b0, b1)) = (even_odd(a), even_odd(b));
                        (a0, a1, b0, b1)
                    }
                },
            )
        };
        quote! {
            use core::arch::wasm32::*;
            const LANES: usize = 4;
            /// Queries per attention register tile (4 × 2 vectors, as on NEON).
            const ATTN_ROWS: usize = 4;
            type F = v128;
            type A = v128;
            type I = v128;
            #qw
            /// Bytes 0–15 and 16–31.
            type QX = (v128, v128);
            /// Rows 0–3 and 4–7.
            type R8 = (v128, v128);
            type RI = (v128, v128);
            #rw
            /// Two 16-byte halves; values <= 63 so they read as int8 too.
            type KW = (v128, v128);
            type KS = (v128, v128);
            // No register-only ceiling probe: without inline assembly nothing
            // keeps the optimizer from hoisting a loop-invariant multiply.
            type CA = ();
            type CB = ();
            type CA2 = ();
            type CB2 = ();

            /// Four IEEE halves (the low 16 bits of each 32-bit lane) as f32, exactly
            /// as `f16::to_f32` converts them: the magnitude's bits moved to f32's
            /// places and scaled by 2^112 (exact for zeros, subnormals and normals,
            /// as WebAssembly never flushes subnormals), infinities and NaNs
            /// (quieted) set apart, then the sign.
            #[inline(always)]
            fn f16x4_to_f32(h: v128) -> v128 {
                let em = v128_and(h, u32x4_splat(0x7fff));
                let t = u32x4_shl(em, 13);
                let finite = f32x4_mul(t, f32x4_splat(f32::from_bits(0x7780_0000)));
                let quiet = v128_and(i32x4_gt(em, u32x4_splat(0x7c00)), u32x4_splat(0x0040_0000));
                let special = v128_or(v128_or(t, u32x4_splat(0x7f80_0000)), quiet);
                let mag = v128_bitselect(special, finite, i32x4_gt(em, u32x4_splat(0x7bff)));
                v128_or(mag, u32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16))
            }

            /// The low (`hi == 0`) or high nibbles of 32 bytes.
            #[inline(always)]
            fn nibbles(qs: &[u8; 32], hi: usize) -> (v128, v128) {
                __SAFETY__!("`qs` is 32 bytes: two 16-byte loads.");
                let (a, b) = unsafe { (v128_load(qs.as_ptr().cast()), v128_load(qs.as_ptr().add(16).cast())) };
                let f = |v: v128| if hi == 1 { u8x16_shr(v, 4) } else { v128_and(v, u8x16_splat(0x0f)) };
                (f(a), f(b))
            }

            /// Nibble `hi` of `ql` with bits `2j..2j+2` of `qh` as bits 4-5.
            #[inline(always)]
            fn six_bits(ql: &[u8; 32], hi: usize, qh: &[u8; 32], j: usize) -> (v128, v128) {
                let (l0, l1) = nibbles(ql, hi);
                __SAFETY__!("`qh` is 32 bytes: two 16-byte loads.");
                let (h0, h1) = unsafe { (v128_load(qh.as_ptr().cast()), v128_load(qh.as_ptr().add(16).cast())) };
                let f = |l: v128, h: v128| v128_or(l, u8x16_shl(v128_and(u8x16_shr(h, 2 * j as u32), u8x16_splat(3)), 4));
                (f(l0, h0), f(l1, h1))
            }

            /// A Q5_0 block's 32 values `q - 16`, bytes 0–15 and 16–31.
            #[inline(always)]
            fn q5_0_bytes(b: &BlockQ5_0) -> (v128, v128) {
                let qh = u32::from_le_bytes(b.qh);
                let w: [i8; 32] = core::array::from_fn(|i| {
                    let nib = if i < 16 { b.qs[i] & 0x0f } else { b.qs[i - 16] >> 4 };
                    (nib | ((((qh >> i) & 1) as u8) << 4)) as i8 - 16
                });
                __SAFETY__!("`w` is 32 bytes: two 16-byte loads.");
                unsafe { (v128_load(w.as_ptr().cast()), v128_load(w.as_ptr().add(16).cast())) }
            }
        }
    }
    fn prepared_types(&self) -> TokenStream {
        if self.relaxed {
            quote!(
                type PX = [i8; 32];
            )
        } else {
            quote! {
                /// An activation block's quads as `RX` makes them, stored: the
                /// even values' int16 pairs of quads 0–7 (as `u32`), then the odd
                /// ones'. Made once per tile, each broadcast by one load per group.
                type PX = [u32; 16];
            }
        }
    }
    fn int8_ceiling(&self) -> [Option<CeilingForm>; 2] {
        [None, None]
    }
    fn op(&self, op: Op) -> Option<TokenStream> {
        self.int8_op(op).or_else(|| common_op(op))
    }
}

impl Wasm {
    /// The ops whose body differs between SIMD128 and relaxed SIMD.
    fn int8_op(&self, op: Op) -> Option<TokenStream> {
        let relaxed = self.relaxed;
        Some(match op {
            Op::f_fma if relaxed => quote!(f32x4_relaxed_madd(a, b, c)),
            Op::f_fma => quote!(f32x4_add(f32x4_mul(a, b), c)),
            Op::acc_fma if relaxed => quote!(f32x4_relaxed_madd(s, f32x4_convert_i32x4(p), acc)),
            Op::acc_fma => quote!(f32x4_add(f32x4_mul(s, f32x4_convert_i32x4(p)), acc)),
            Op::r8_fma_block if relaxed => quote! {
                let s = f32x4_splat(dx);
                (
                    f32x4_relaxed_madd(f32x4_mul(dw.0, s), f32x4_convert_i32x4(p.0), acc.0),
                    f32x4_relaxed_madd(f32x4_mul(dw.1, s), f32x4_convert_i32x4(p.1), acc.1),
                )
            },
            Op::r8_fma_block => quote! {
                let s = f32x4_splat(dx);
                (
                    f32x4_add(acc.0, f32x4_mul(f32x4_mul(dw.0, s), f32x4_convert_i32x4(p.0))),
                    f32x4_add(acc.1, f32x4_mul(f32x4_mul(dw.1, s), f32x4_convert_i32x4(p.1))),
                )
            },
            Op::r8_fma_splat if relaxed => quote! {
                let s = f32x4_splat(s);
                (f32x4_relaxed_madd(a.0, s, acc.0), f32x4_relaxed_madd(a.1, s, acc.1))
            },
            Op::r8_fma_splat => quote! {
                let s = f32x4_splat(s);
                (f32x4_add(acc.0, f32x4_mul(a.0, s)), f32x4_add(acc.1, f32x4_mul(a.1, s)))
            },
            Op::q8_load_w | Op::q8r_load_w if relaxed => quote! {
                __SAFETY__!("`qs` is 32 bytes: two 16-byte loads.");
                let (a, b) = unsafe { (v128_load(qs.as_ptr().cast()), v128_load(qs.as_ptr().add(16).cast())) };
                // |-128| stays 0x80, which the relaxed dot may read as 128
                // or -128: Q8_0 quants are in [-127, 127].
                (i8x16_abs(a), i8x16_abs(b), i8x16_shr(a, 7), i8x16_shr(b, 7))
            },
            Op::q8_load_w => quote! {
                __SAFETY__!("`qs` is 32 bytes: two 16-byte loads.");
                unsafe { (v128_load(qs.as_ptr().cast()), v128_load(qs.as_ptr().add(16).cast())) }
            },
            // Widened once per quad, for every token of the tile.
            Op::q8r_load_w => quote! {
                __SAFETY__!("`qs` is 32 bytes: two 16-byte loads.");
                let (a, b) = unsafe { (v128_load(qs.as_ptr().cast()), v128_load(qs.as_ptr().add(16).cast())) };
                rows_i16(a, b)
            },
            // Making `RX` takes three shifts per quad, more than the dots'
            // adds: done once per tile, not once per group.
            Op::q8r_prepared if !relaxed => quote!(true),
            Op::q8r_prep_x if !relaxed => quote! {
                let mut p = [0u32; 16];
                __SAFETY__!("`qs` is 32 bytes: two 16-byte loads; `p` is 64 bytes: four 16-byte stores.");
                unsafe {
                    let (e0, o0) = even_odd(v128_load(qs.as_ptr().cast()));
                    let (e1, o1) = even_odd(v128_load(qs.as_ptr().add(16).cast()));
                    let d = p.as_mut_ptr();
                    v128_store(d.cast(), e0);
                    v128_store(d.add(4).cast(), e1);
                    v128_store(d.add(8).cast(), o0);
                    v128_store(d.add(12).cast(), o1);
                }
                p
            },
            Op::q8r_load_px if !relaxed => quote! {
                assert!(quad < 8);
                __SAFETY__!("`quad < 8` (asserted): `u32`s `quad` and `8 + quad` lie inside the 16 of `p`.");
                unsafe { (v128_load32_splat(p.as_ptr().add(quad)), v128_load32_splat(p.as_ptr().add(8 + quad))) }
            },
            Op::q8r_load_x if relaxed => quote! {
                assert!(quad < 8);
                let q = &qs[4 * quad..4 * quad + 4];
                i32x4_splat(i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]))
            },
            Op::q8r_load_x => quote! {
                assert!(quad < 8);
                __SAFETY__!("`quad < 8` (asserted): bytes `4·quad .. 4·quad + 4` lie inside the 32 of `qs`.");
                even_odd(unsafe { v128_load32_splat(qs.as_ptr().add(4 * quad).cast()) })
            },
            Op::q5_0_w if relaxed => quote! {
                let (a, b) = q5_0_bytes(b);
                (i8x16_abs(a), i8x16_abs(b), i8x16_shr(a, 7), i8x16_shr(b, 7))
            },
            Op::q5_0_w => quote!(q5_0_bytes(b)),
            // `(x ^ m) - m` negates `x` where `w < 0` (`m` all ones): the
            // sign of `w` moved to `x`, so `|w|` can be the 7-bit operand.
            Op::q8_dot if relaxed => quote! {
                let x0 = i8x16_sub(v128_xor(x.0, w.2), w.2);
                let x1 = i8x16_sub(v128_xor(x.1, w.3), w.3);
                i32x4_relaxed_dot_i8x16_i7x16_add(x1, w.1, i32x4_relaxed_dot_i8x16_i7x16_add(x0, w.0, i32x4_splat(0)))
            },
            Op::q8_dot => quote! {
                // |127·128| fits the int16 products.
                let p0 = i32x4_add(
                    i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(w.0, x.0)),
                    i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(w.0, x.0)),
                );
                let p1 = i32x4_add(
                    i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(w.1, x.1)),
                    i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(w.1, x.1)),
                );
                i32x4_add(p0, p1)
            },
            Op::q8r_dot_acc if relaxed => quote! {
                let x0 = i8x16_sub(v128_xor(x, w.2), w.2);
                let x1 = i8x16_sub(v128_xor(x, w.3), w.3);
                (
                    i32x4_relaxed_dot_i8x16_i7x16_add(x0, w.0, acc.0),
                    i32x4_relaxed_dot_i8x16_i7x16_add(x1, w.1, acc.1),
                )
            },
            // One `pmaddwd` per 4 rows and even or odd columns on x86: exact
            // for any int8 operands (|-128·-128·2| fits int32).
            Op::q8r_dot_acc => quote! {
                (
                    i32x4_add(acc.0, i32x4_add(i32x4_dot_i16x8(w.0, x.0), i32x4_dot_i16x8(w.1, x.1))),
                    i32x4_add(acc.1, i32x4_add(i32x4_dot_i16x8(w.2, x.0), i32x4_dot_i16x8(w.3, x.1))),
                )
            },
            // Weights in 0..=63 are 7-bit: no sign to move.
            Op::ru_dot_acc if relaxed => quote! {
                (
                    i32x4_relaxed_dot_i8x16_i7x16_add(x, w.0, acc.0),
                    i32x4_relaxed_dot_i8x16_i7x16_add(x, w.1, acc.1),
                )
            },
            Op::ku_dot if relaxed => quote! {
                let z = i32x4_splat(0);
                let a = i32x4_relaxed_dot_i8x16_i7x16_add(x.0, w.0, z);
                let b = i32x4_relaxed_dot_i8x16_i7x16_add(x.1, w.1, z);
                i32x4_add(i32x4_mul(a, s.0), i32x4_mul(b, s.1))
            },
            Op::ku_dot => quote! {
                // 63·127 fits the int16 products.
                let half = |w: v128, x: v128| {
                    i32x4_add(
                        i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(w, x)),
                        i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(w, x)),
                    )
                };
                i32x4_add(i32x4_mul(half(w.0, x.0), s.0), i32x4_mul(half(w.1, x.1), s.1))
            },
            Op::q4x8_w if relaxed => quote! {
                let (a, b) = nibbles(qs, hi);
                let z = i32x4_splat(0);
                (a, b, z, z)
            },
            Op::q4x8_w => quote! {
                let (a, b) = nibbles(qs, hi);
                rows_i16(a, b)
            },
            Op::q6x8_w if relaxed => quote! {
                let (a, b) = six_bits(ql, hi, qh, j);
                let z = i32x4_splat(0);
                (a, b, z, z)
            },
            Op::q6x8_w => quote! {
                let (a, b) = six_bits(ql, hi, qh, j);
                rows_i16(a, b)
            },
            _ => return None,
        })
    }
}

/// The ops both variants share (the prelude's helpers `f16x4_to_f32`,
/// `nibbles`, `six_bits` and `q5_0_bytes` serve them and [`Wasm::int8_op`]).
fn common_op(op: Op) -> Option<TokenStream> {
    Some(match op {
        Op::f_zero | Op::acc_zero => quote!(f32x4_splat(0.0)),
        Op::f_splat | Op::acc_splat => quote!(f32x4_splat(x)),
        Op::f_load => quote! {
            assert!(s.len() >= LANES);
            __SAFETY__!("`s` holds at least 4 values (asserted above).");
            unsafe { v128_load(s.as_ptr().cast()) }
        },
        Op::f_store => quote! {
            assert!(s.len() >= LANES);
            __SAFETY__!("`s` holds at least 4 values (asserted above).");
            unsafe { v128_store(s.as_mut_ptr().cast(), v) }
        },
        Op::f_from_i8 => quote!(f32x4(
            f32::from(s[0]),
            f32::from(s[1]),
            f32::from(s[2]),
            f32::from(s[3])
        )),
        // No half-precision conversion in SIMD128: integer and f32 ops on
        // the bits (`f16x4_to_f32`), exact.
        Op::f_load_f16 => quote! {
            let s = &s[..LANES];
            __SAFETY__!("`s` holds 4 halves (sliced above): one 8-byte load.");
            f16x4_to_f32(u32x4_extend_low_u16x8(unsafe { v128_load64_zero(s.as_ptr().cast()) }))
        },
        Op::f_add => quote!(f32x4_add(a, b)),
        Op::f_sub => quote!(f32x4_sub(a, b)),
        Op::f_mul | Op::acc_mul => quote!(f32x4_mul(a, b)),
        Op::f_div => quote!(f32x4_div(a, b)),
        // `pmax`/`pmin` are `b < a ? a : b`, one instruction on x86 and ARM
        // (the NaN-propagating `max`/`min` take several).
        Op::f_max => quote!(f32x4_pmax(a, b)),
        Op::f_min => quote!(f32x4_pmin(a, b)),
        Op::f_abs => quote!(f32x4_abs(a)),
        Op::f_copysign => quote!(v128_bitselect(sign, mag, u32x4_splat(0x8000_0000))),
        Op::f_round => quote!(f32x4_nearest(a)),
        Op::f_pow2i => quote! {
            let e = i32x4_add(i32x4_trunc_sat_f32x4(n), i32x4_splat(127));
            i32x4_shl(e, 23)
        },
        Op::f_hsum | Op::acc_hsum => quote! {
            let s = f32x4_add(a, i32x4_shuffle::<2, 3, 0, 1>(a, a));
            let s = f32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
            f32x4_extract_lane::<0>(s)
        },
        Op::f_hmax => quote! {
            let s = f32x4_pmax(a, i32x4_shuffle::<2, 3, 0, 1>(a, a));
            let s = f32x4_pmax(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
            f32x4_extract_lane::<0>(s)
        },
        Op::f16_to_f32 => quote!(f16::from_bits(bits).to_f32()),
        Op::acc_splat_f16 => quote!(f32x4_splat(f16::from_bits(bits).to_f32())),
        Op::i_zero => quote!(i32x4_splat(0)),
        // No prefetch instruction in WebAssembly.
        Op::prefetch => quote!(let _ = p;),
        Op::i_add => quote!(i32x4_add(a, b)),
        Op::i_hsum => quote! {
            let s = i32x4_add(a, i32x4_shuffle::<2, 3, 0, 1>(a, a));
            let s = i32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
            i32x4_extract_lane::<0>(s)
        },
        Op::q8_load_x => quote! {
            __SAFETY__!("`qs` is 32 bytes: two 16-byte loads.");
            unsafe { (v128_load(qs.as_ptr().cast()), v128_load(qs.as_ptr().add(16).cast())) }
        },
        Op::q8_quant => quote! {
            let x = &x[..32];
            let v = [f_load(&x[0..]), f_load(&x[4..]), f_load(&x[8..]), f_load(&x[12..]),
                     f_load(&x[16..]), f_load(&x[20..]), f_load(&x[24..]), f_load(&x[28..])];
            let mut m = f_zero();
            for &c in &v {
                m = f32x4_pmax(m, f32x4_abs(c));
            }
            let d = f_hmax(m) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out.d = f16::from_f32(d);
            let idv = f32x4_splat(id);
            let half = f32x4_splat(0.5);
            let one = f32x4_splat(1.0);
            let mut q = [i32x4_splat(0); 8];
            for (qi, &c) in q.iter_mut().zip(&v) {
                // Nearest, ties away from zero (as `f32::round`): truncate,
                // then step one away from zero where the cut was >= 1/2
                // (`v - trunc(v)` is exact).
                let s = f32x4_mul(c, idv);
                let t = f32x4_trunc(s);
                let up = f32x4_ge(f32x4_abs(f32x4_sub(s, t)), half);
                let step = v128_and(up, v128_bitselect(s, one, u32x4_splat(0x8000_0000)));
                *qi = i32x4_trunc_sat_f32x4(f32x4_add(t, step));
            }
            let lo = i8x16_narrow_i16x8(i16x8_narrow_i32x4(q[0], q[1]), i16x8_narrow_i32x4(q[2], q[3]));
            let hi = i8x16_narrow_i16x8(i16x8_narrow_i32x4(q[4], q[5]), i16x8_narrow_i32x4(q[6], q[7]));
            __SAFETY__!("`out.qs` is 32 bytes: two 16-byte stores.");
            unsafe {
                v128_store(out.qs.as_mut_ptr().cast(), lo);
                v128_store(out.qs.as_mut_ptr().add(16).cast(), hi);
            }
        },
        Op::r8_zero => quote!((f32x4_splat(0.0), f32x4_splat(0.0))),
        Op::r8_scales => quote! {
            __SAFETY__!("`d` is 8 halves: one 16-byte load.");
            let h = unsafe { v128_load(d.as_ptr().cast()) };
            (f16x4_to_f32(u32x4_extend_low_u16x8(h)), f16x4_to_f32(u32x4_extend_high_u16x8(h)))
        },
        Op::r8_load => quote! {
            assert!(s.len() >= 8);
            __SAFETY__!("`s` holds at least 8 values (asserted above).");
            unsafe { (v128_load(s.as_ptr().cast()), v128_load(s.as_ptr().add(4).cast())) }
        },
        Op::r8_store => quote! {
            assert!(s.len() >= 8);
            __SAFETY__!("`s` holds at least 8 values (asserted above).");
            unsafe {
                v128_store(s.as_mut_ptr().cast(), v.0);
                v128_store(s.as_mut_ptr().add(4).cast(), v.1);
            }
        },
        Op::r8_add => quote!((f32x4_add(a.0, b.0), f32x4_add(a.1, b.1))),
        Op::ri_zero => quote!((i32x4_splat(0), i32x4_splat(0))),
        Op::ks_pair => quote!((i32x4_splat(lo), i32x4_splat(hi))),
        Op::i16_dot => quote! {
            __SAFETY__!("`a` and `b` are 16 int16 each: two 16-byte loads each.");
            let (a0, a1, b0, b1) = unsafe {
                (
                    v128_load(a.as_ptr().cast()),
                    v128_load(a.as_ptr().add(8).cast()),
                    v128_load(b.as_ptr().cast()),
                    v128_load(b.as_ptr().add(8).cast()),
                )
            };
            i32x4_add(i32x4_dot_i16x8(a0, b0), i32x4_dot_i16x8(a1, b1))
        },
        Op::q4k_w => quote! {
            assert!(c < 8);
            __SAFETY__!("`c < 8` (asserted): bytes `32(c/2)..32(c/2)+32` lie inside the 128 of `qs`.");
            let (v0, v1) = unsafe {
                let p = qs.as_ptr().add(32 * (c / 2));
                (v128_load(p.cast()), v128_load(p.add(16).cast()))
            };
            let f = |v: v128| if c % 2 == 1 { u8x16_shr(v, 4) } else { v128_and(v, u8x16_splat(0x0f)) };
            (f(v0), f(v1))
        },
        Op::q6k_w => quote! {
            assert!(c < 8);
            let (h, j) = (c / 4, c % 4);
            __SAFETY__!("`c < 8` (asserted): `64h + 32(j%2) + 32 <= 128` bytes of `ql`, `32h + 32 <= 64` of `qh`.");
            let (l0, l1, h0, h1) = unsafe {
                let pl = ql.as_ptr().add(64 * h + 32 * (j % 2));
                let ph = qh.as_ptr().add(32 * h);
                (v128_load(pl.cast()), v128_load(pl.add(16).cast()), v128_load(ph.cast()), v128_load(ph.add(16).cast()))
            };
            let f = |l: v128, hb: v128| {
                let l = if j >= 2 { u8x16_shr(l, 4) } else { v128_and(l, u8x16_splat(0x0f)) };
                let hb = v128_and(u8x16_shr(hb, 2 * j as u32), u8x16_splat(3));
                v128_or(l, u8x16_shl(hb, 4))
            };
            (f(l0, h0), f(l1, h1))
        },
        Op::ri_from_i8 => quote! {
            (
                i32x4(i32::from(s[0]), i32::from(s[1]), i32::from(s[2]), i32::from(s[3])),
                i32x4(i32::from(s[4]), i32::from(s[5]), i32::from(s[6]), i32::from(s[7])),
            )
        },
        Op::ri_mul_acc => quote!((
            i32x4_add(acc.0, i32x4_mul(p.0, s.0)),
            i32x4_add(acc.1, i32x4_mul(p.1, s.1))
        )),
        Op::ri_sub_splat => quote! {
            let v = i32x4_splat(v);
            (i32x4_sub(p.0, v), i32x4_sub(p.1, v))
        },
        // `pair` in every lane reads as `(lo, hi)` int16 pairs: one
        // `i32x4.dot_i16x8_s` per 4 rows.
        Op::ri_madd_pair_acc => quote! {
            __SAFETY__!("`m` is 16 int16: two 16-byte loads.");
            let (m0, m1) = unsafe { (v128_load(m.as_ptr().cast()), v128_load(m.as_ptr().add(8).cast())) };
            let p = i32x4_splat(pair);
            (i32x4_add(acc.0, i32x4_dot_i16x8(m0, p)), i32x4_add(acc.1, i32x4_dot_i16x8(m1, p)))
        },
        Op::q8k_quant => crate::lower::Scalar.op(Op::q8k_quant)?,
        _ => return None,
    })
}
