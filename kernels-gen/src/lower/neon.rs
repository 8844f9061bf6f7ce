//! aarch64 Advanced SIMD: 4 f32 lanes. The Q8_0 block dot is `smull`,
//! `smlal2` and pairwise adds, or with the dot-product extension two `sdot`s
//! (written with `asm!`: `vdotq_s32` is not stable in Rust 1.95). Quantization rounds
//! with `fcvtas`, which is exactly "nearest, ties away from zero".

use proc_macro2::TokenStream;
use quote::quote;

use super::{CeilingForm, Lowering};
use crate::ops::Op;

/// NEON, optionally with `dotprod`.
pub struct Neon {
    /// Use `sdot` for the Q8_0 block dot.
    pub dotprod: bool,
}

impl Lowering for Neon {
    fn module(&self) -> &'static str {
        if self.dotprod { "neon_dotprod" } else { "neon" }
    }
    fn isa_variant(&self) -> &'static str {
        if self.dotprod { "NeonDotprod" } else { "Neon" }
    }
    fn target_arch(&self) -> Option<&'static str> {
        Some("aarch64")
    }
    fn features(&self) -> Option<&'static str> {
        Some(if self.dotprod { "neon,dotprod" } else { "neon" })
    }
    fn detect(&self) -> TokenStream {
        if self.dotprod {
            quote! {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
        } else {
            quote!(std::arch::is_aarch64_feature_detected!("neon"))
        }
    }
    fn prelude(&self) -> TokenStream {
        quote! {
            use core::arch::aarch64::*;
            const LANES: usize = 4;
            /// Queries per attention register tile (4 × 2 vectors: 8 of 32 registers, as on AVX2).
            const ATTN_ROWS: usize = 4;
            type F = float32x4_t;
            type A = float32x4_t;
            type I = int32x4_t;
            type QW = (int8x16_t, int8x16_t);
            type QX = (int8x16_t, int8x16_t);
            /// Rows 0–3 and 4–7.
            type R8 = (float32x4_t, float32x4_t);
            type RI = (int32x4_t, int32x4_t);
            type RW = (int8x16_t, int8x16_t);
            /// The 4 values repeated in every 32-bit lane.
            type RX = int8x16_t;
            /// Two 16-byte halves; values <= 63 so they read as int8 too.
            type KW = (int8x16_t, int8x16_t);
            type KS = (int32x4_t, int32x4_t);
            type CA = int32x4_t;
            type CB = int8x16_t;
            type CA2 = ();
            type CB2 = ();
        }
    }
    fn int8_ceiling(&self) -> [Option<CeilingForm>; 2] {
        // NEON multiplies signed by signed bytes (`usdot` needs i8mm). `sdot`:
        // latency 3, up to 4 per cycle on wide cores, so 12 chains. Without
        // it the loop-carried step is `sadalp` alone: 8 chains suffice.
        let form = if self.dotprod {
            CeilingForm {
                name: "sdot",
                macs: 16,
                chains: 12,
                in_ceiling: true,
                detect: None,
            }
        } else {
            CeilingForm {
                name: "smull+smlal2+sadalp",
                macs: 16,
                chains: 8,
                in_ceiling: true,
                detect: None,
            }
        };
        [Some(form), None]
    }
    fn op(&self, op: Op) -> Option<TokenStream> {
        Some(match op {
            Op::ceil_zero => quote!(vdupq_n_s32(0)),
            Op::ceil_load => quote! {
                __SAFETY__!("`s` is 64 bytes: a 128-bit load of the first 16.");
                unsafe { vld1q_s8(s.as_ptr()) }
            },
            Op::ceil_opaque => quote! {
                let mut v = v;
                __SAFETY__!("an empty template: the register is left as it is.");
                unsafe {
                    core::arch::asm!("/* {v:v} */", v = inout(vreg) v, options(nomem, nostack, preserves_flags));
                }
                v
            },
            Op::ceil_mac if self.dotprod => quote! {
                let mut acc = acc;
                __SAFETY__!("`sdot` only reads and writes these registers; the enclosing function enables `dotprod`.");
                unsafe {
                    core::arch::asm!(
                        "sdot {acc:v}.4s, {u:v}.16b, {s:v}.16b",
                        acc = inout(vreg) acc,
                        u = in(vreg) u,
                        s = in(vreg) s,
                        options(pure, nomem, nostack),
                    );
                }
                acc
            },
            // The int16 pair sums wrap for the largest products; the probe
            // only times the sequence.
            Op::ceil_mac => quote! {
                vpadalq_s16(acc, vmlal_high_s8(vmull_s8(vget_low_s8(u), vget_low_s8(s)), u, s))
            },
            Op::ceil_hsum => quote!(vaddvq_s32(a)),
            Op::q8_dot if self.dotprod => quote! {
                let mut acc = vdupq_n_s32(0);
                __SAFETY__!("`sdot` only reads and writes these registers; the enclosing function enables `dotprod`.");
                unsafe {
                    core::arch::asm!(
                        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                        "sdot {acc:v}.4s, {c:v}.16b, {d:v}.16b",
                        acc = inout(vreg) acc,
                        a = in(vreg) w.0,
                        b = in(vreg) x.0,
                        c = in(vreg) w.1,
                        d = in(vreg) x.1,
                        options(pure, nomem, nostack),
                    );
                }
                acc
            },
            Op::q8_dot => quote! {
                // |127·127·2| fits the int16 pair sums.
                let p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w.0), vget_low_s8(x.0)), w.0, x.0);
                let p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w.1), vget_low_s8(x.1)), w.1, x.1);
                vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1))
            },
            Op::q8r_dot_acc if self.dotprod => quote! {
                let (mut a0, mut a1) = acc;
                __SAFETY__!("`sdot` only reads and writes these registers; the enclosing function enables `dotprod`.");
                unsafe {
                    core::arch::asm!(
                        "sdot {a0:v}.4s, {w0:v}.16b, {x:v}.16b",
                        "sdot {a1:v}.4s, {w1:v}.16b, {x:v}.16b",
                        a0 = inout(vreg) a0,
                        a1 = inout(vreg) a1,
                        w0 = in(vreg) w.0,
                        w1 = in(vreg) w.1,
                        x = in(vreg) x,
                        options(pure, nomem, nostack),
                    );
                }
                (a0, a1)
            },
            Op::q8r_dot_acc => quote! {
                // Per row: 4 int16 products summed pairwise into int32.
                let half = |w: int8x16_t| {
                    let lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(x)));
                    let hi = vpaddlq_s16(vmull_high_s8(w, x));
                    vpaddq_s32(lo, hi)
                };
                (vaddq_s32(acc.0, half(w.0)), vaddq_s32(acc.1, half(w.1)))
            },
            Op::r8_zero => quote!((vdupq_n_f32(0.0), vdupq_n_f32(0.0))),
            Op::r8_scales => quote! {
                let f: [f32; 8] = d.map(f16::to_f32);
                __SAFETY__!("`f` is 8 values: two 4-value loads.");
                unsafe { (vld1q_f32(f.as_ptr()), vld1q_f32(f.as_ptr().add(4))) }
            },
            Op::r8_load => quote! {
                assert!(s.len() >= 8);
                __SAFETY__!("`s` holds at least 8 values (asserted above).");
                unsafe { (vld1q_f32(s.as_ptr()), vld1q_f32(s.as_ptr().add(4))) }
            },
            Op::r8_store => quote! {
                assert!(s.len() >= 8);
                __SAFETY__!("`s` holds at least 8 values (asserted above).");
                unsafe {
                    vst1q_f32(s.as_mut_ptr(), v.0);
                    vst1q_f32(s.as_mut_ptr().add(4), v.1);
                }
            },
            Op::r8_add => quote!((vaddq_f32(a.0, b.0), vaddq_f32(a.1, b.1))),
            Op::r8_fma_block => quote! {
                let s = vdupq_n_f32(dx);
                (
                    vfmaq_f32(acc.0, vmulq_f32(dw.0, s), vcvtq_f32_s32(p.0)),
                    vfmaq_f32(acc.1, vmulq_f32(dw.1, s), vcvtq_f32_s32(p.1)),
                )
            },
            Op::r8_fma_splat => quote!((vfmaq_n_f32(acc.0, a.0, s), vfmaq_n_f32(acc.1, a.1, s))),
            Op::q8_sum => quote! {
                __SAFETY__!("`qs` is 32 bytes: two 16-byte loads.");
                let (a, b) = unsafe { (vld1q_s8(qs.as_ptr()), vld1q_s8(qs.as_ptr().add(16))) };
                // Sums of 16 int8 fit the int16 each `saddlv` returns.
                i32::from(vaddlvq_s8(a)) + i32::from(vaddlvq_s8(b))
            },
            Op::ri_zero => quote!((vdupq_n_s32(0), vdupq_n_s32(0))),
            Op::q8r_load_w => quote! {
                __SAFETY__!("`qs` is 32 bytes: two 16-byte loads.");
                unsafe { (vld1q_s8(qs.as_ptr()), vld1q_s8(qs.as_ptr().add(16))) }
            },
            Op::q8r_load_x => quote! {
                assert!(quad < 8);
                __SAFETY__!("`quad < 8` (asserted above): 4 bytes inside the 32-byte `qs`.");
                let v = unsafe { qs.as_ptr().add(4 * quad).cast::<i32>().read_unaligned() };
                vreinterpretq_s8_s32(vdupq_n_s32(v))
            },
            Op::f_zero | Op::acc_zero => quote!(vdupq_n_f32(0.0)),
            Op::f_splat => quote!(vdupq_n_f32(x)),
            Op::f_load => quote! {
                assert!(s.len() >= LANES);
                __SAFETY__!("`s` holds at least 4 values (asserted above).");
                unsafe { vld1q_f32(s.as_ptr()) }
            },
            Op::f_store => quote! {
                assert!(s.len() >= LANES);
                __SAFETY__!("`s` holds at least 4 values (asserted above).");
                unsafe { vst1q_f32(s.as_mut_ptr(), v) }
            },
            Op::f_from_i8 => quote! {
                let a = [f32::from(s[0]), f32::from(s[1]), f32::from(s[2]), f32::from(s[3])];
                __SAFETY__!("`a` is 4 values.");
                unsafe { vld1q_f32(a.as_ptr()) }
            },
            // `fcvtl`: base Advanced SIMD (no FEAT_FP16), exact for every half.
            Op::f_load_f16 => quote! {
                assert!(s.len() >= LANES);
                __SAFETY__!("`s` holds at least 4 halves (asserted above).");
                vcvt_f32_f16(vreinterpret_f16_u16(unsafe { vld1_u16(s.as_ptr()) }))
            },
            Op::f_add => quote!(vaddq_f32(a, b)),
            Op::i_zero => quote!(vdupq_n_s32(0)),
            // `_prefetch` is unstable on aarch64; rely on the hardware prefetcher.
            Op::prefetch => quote!(let _ = p;),
            Op::i_add => quote!(vaddq_s32(a, b)),
            Op::i_hsum => quote!(vaddvq_s32(a)),
            Op::f_sub => quote!(vsubq_f32(a, b)),
            Op::f_mul | Op::acc_mul => quote!(vmulq_f32(a, b)),
            Op::f_div => quote!(vdivq_f32(a, b)),
            Op::f_max => quote!(vmaxq_f32(a, b)),
            Op::f_min => quote!(vminq_f32(a, b)),
            Op::f_fma => quote!(vfmaq_f32(c, a, b)),
            Op::f_abs => quote!(vabsq_f32(a)),
            Op::f_copysign => quote!(vbslq_f32(vdupq_n_u32(0x8000_0000), sign, mag)),
            Op::f_round => quote!(vrndnq_f32(a)),
            Op::f_pow2i => quote! {
                let e = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
                vreinterpretq_f32_s32(vshlq_n_s32::<23>(e))
            },
            Op::f_hsum | Op::acc_hsum => quote!(vaddvq_f32(a)),
            Op::f_hmax => quote!(vmaxvq_f32(a)),
            Op::f16_to_f32 => quote!(f16::from_bits(bits).to_f32()),
            Op::acc_splat_f16 => quote!(vdupq_n_f32(f16::from_bits(bits).to_f32())),
            Op::acc_fma => quote!(vfmaq_f32(acc, s, vcvtq_f32_s32(p))),
            Op::q8_load_w | Op::q8_load_x => quote! {
                __SAFETY__!("`qs` is 32 bytes: two 16-byte loads.");
                unsafe { (vld1q_s8(qs.as_ptr()), vld1q_s8(qs.as_ptr().add(16))) }
            },
            Op::q8_quant => quote! {
                let x = &x[..32];
                let mut m = f_zero();
                for c in x.chunks_exact(4) {
                    m = f_max(m, f_abs(f_load(c)));
                }
                let d = f_hmax(m) / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.d = f16::from_f32(d);
                let idv = f_splat(id);
                for (c, o) in x.chunks_exact(8).zip(out.qs.chunks_exact_mut(8)) {
                    // fcvtas: nearest, ties away from zero (as `f32::round`).
                    let a = vcvtaq_s32_f32(f_mul(f_load(c), idv));
                    let b = vcvtaq_s32_f32(f_mul(f_load(&c[4..]), idv));
                    let q = vqmovn_s16(vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)));
                    __SAFETY__!("`o` is 8 bytes, one 64-bit store.");
                    unsafe { vst1_s8(o.as_mut_ptr(), q) }
                }
            },
            Op::ku_dot if self.dotprod => quote! {
                let (mut a, mut b) = (vdupq_n_s32(0), vdupq_n_s32(0));
                __SAFETY__!("`sdot` only reads and writes these registers; the enclosing function enables `dotprod`.");
                unsafe {
                    core::arch::asm!(
                        "sdot {a:v}.4s, {w0:v}.16b, {x0:v}.16b",
                        "sdot {b:v}.4s, {w1:v}.16b, {x1:v}.16b",
                        a = inout(vreg) a,
                        b = inout(vreg) b,
                        w0 = in(vreg) w.0,
                        x0 = in(vreg) x.0,
                        w1 = in(vreg) w.1,
                        x1 = in(vreg) x.1,
                        options(pure, nomem, nostack),
                    );
                }
                vmlaq_s32(vmulq_s32(a, s.0), b, s.1)
            },
            Op::ku_dot => quote! {
                // 63·127·2 fits the int16 pair sums.
                let p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w.0), vget_low_s8(x.0)), w.0, x.0);
                let p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w.1), vget_low_s8(x.1)), w.1, x.1);
                vmlaq_s32(vmulq_s32(vpaddlq_s16(p0), s.0), vpaddlq_s16(p1), s.1)
            },
            Op::acc_splat => quote!(vdupq_n_f32(x)),
            Op::ks_pair => quote!((vdupq_n_s32(lo), vdupq_n_s32(hi))),
            Op::i16_dot => quote! {
                __SAFETY__!("`a` and `b` are 16 int16 each: two 8-lane loads each.");
                let (a0, a1, b0, b1) = unsafe {
                    (
                        vld1q_s16(a.as_ptr()),
                        vld1q_s16(a.as_ptr().add(8)),
                        vld1q_s16(b.as_ptr()),
                        vld1q_s16(b.as_ptr().add(8)),
                    )
                };
                let r = vmlal_high_s16(vmull_s16(vget_low_s16(a0), vget_low_s16(b0)), a0, b0);
                vmlal_high_s16(vmlal_s16(r, vget_low_s16(a1), vget_low_s16(b1)), a1, b1)
            },
            Op::q4k_w => quote! {
                assert!(c < 8);
                __SAFETY__!("`c < 8` (asserted): bytes `32(c/2)..32(c/2)+32` lie inside the 128 of `qs`.");
                let (v0, v1) = unsafe {
                    let p = qs.as_ptr().add(32 * (c / 2));
                    (vld1q_u8(p), vld1q_u8(p.add(16)))
                };
                let f = |v: uint8x16_t| {
                    let v = if c % 2 == 1 { vshrq_n_u8::<4>(v) } else { vandq_u8(v, vdupq_n_u8(0x0f)) };
                    vreinterpretq_s8_u8(v)
                };
                (f(v0), f(v1))
            },
            Op::q6k_w => quote! {
                assert!(c < 8);
                let (h, j) = (c / 4, c % 4);
                __SAFETY__!("`c < 8` (asserted): `64h + 32(j%2) + 32 <= 128` bytes of `ql`, `32h + 32 <= 64` of `qh`.");
                let (l0, l1, h0, h1) = unsafe {
                    let pl = ql.as_ptr().add(64 * h + 32 * (j % 2));
                    let ph = qh.as_ptr().add(32 * h);
                    (vld1q_u8(pl), vld1q_u8(pl.add(16)), vld1q_u8(ph), vld1q_u8(ph.add(16)))
                };
                let shift = vdupq_n_s8(-2 * j as i8);
                let f = |l: uint8x16_t, hb: uint8x16_t| {
                    let l = if j >= 2 { vshrq_n_u8::<4>(l) } else { vandq_u8(l, vdupq_n_u8(0x0f)) };
                    let hb = vandq_u8(vshlq_u8(hb, shift), vdupq_n_u8(3));
                    vreinterpretq_s8_u8(vorrq_u8(l, vshlq_n_u8::<4>(hb)))
                };
                (f(l0, h0), f(l1, h1))
            },
            Op::q4x8_w => quote! {
                __SAFETY__!("`qs` is 32 bytes: two 16-byte loads.");
                let (v0, v1) = unsafe { (vld1q_u8(qs.as_ptr()), vld1q_u8(qs.as_ptr().add(16))) };
                let f = |v: uint8x16_t| {
                    let v = if hi == 1 { vshrq_n_u8::<4>(v) } else { vandq_u8(v, vdupq_n_u8(0x0f)) };
                    vreinterpretq_s8_u8(v)
                };
                (f(v0), f(v1))
            },
            Op::q6x8_w => quote! {
                __SAFETY__!("`ql` and `qh` are 32 bytes each: two 16-byte loads each.");
                let (l0, l1, h0, h1) = unsafe {
                    (
                        vld1q_u8(ql.as_ptr()),
                        vld1q_u8(ql.as_ptr().add(16)),
                        vld1q_u8(qh.as_ptr()),
                        vld1q_u8(qh.as_ptr().add(16)),
                    )
                };
                let shift = vdupq_n_s8(-2 * j as i8);
                let f = |l: uint8x16_t, hb: uint8x16_t| {
                    let l = if hi == 1 { vshrq_n_u8::<4>(l) } else { vandq_u8(l, vdupq_n_u8(0x0f)) };
                    let hb = vandq_u8(vshlq_u8(hb, shift), vdupq_n_u8(3));
                    vreinterpretq_s8_u8(vorrq_u8(l, vshlq_n_u8::<4>(hb)))
                };
                (f(l0, h0), f(l1, h1))
            },
            Op::ri_from_i8 => quote! {
                __SAFETY__!("`s` is 8 bytes, one 64-bit load.");
                let v = vmovl_s8(unsafe { vld1_s8(s.as_ptr()) });
                (vmovl_s16(vget_low_s16(v)), vmovl_high_s16(v))
            },
            Op::ri_mul_acc => quote!((vmlaq_s32(acc.0, p.0, s.0), vmlaq_s32(acc.1, p.1, s.1))),
            Op::ri_sub_splat => quote! {
                let v = vdupq_n_s32(v);
                (vsubq_s32(p.0, v), vsubq_s32(p.1, v))
            },
            Op::ri_madd_pair_acc => quote! {
                __SAFETY__!("`m` is 16 int16: one de-interleaving load of 2 × 8.");
                let m = unsafe { vld2q_s16(m.as_ptr()) };
                let (lo, hi) = (pair as i16, (pair >> 16) as i16);
                let a0 = vmlal_n_s16(vmlal_n_s16(acc.0, vget_low_s16(m.0), lo), vget_low_s16(m.1), hi);
                let a1 = vmlal_high_n_s16(vmlal_high_n_s16(acc.1, m.0, lo), m.1, hi);
                (a0, a1)
            },
            Op::q5_0_w => quote! {
                __SAFETY__!("`b.qs` is 16 bytes, one 128-bit load.");
                let q = unsafe { vld1q_u8(b.qs.as_ptr()) };
                let qh = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_le_bytes(b.qh)));
                const IDX: [u8; 32] = [
                    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
                ];
                const BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
                __SAFETY__!("`IDX` is 32 bytes and `BIT` 16: 128-bit loads inside them.");
                let (i0, i1, bit) = unsafe {
                    (vld1q_u8(IDX.as_ptr()), vld1q_u8(IDX.as_ptr().add(16)), vld1q_u8(BIT.as_ptr()))
                };
                let f = |nib: uint8x16_t, idx: uint8x16_t| {
                    let set = vtstq_u8(vqtbl1q_u8(qh, idx), bit);
                    let q5 = vorrq_u8(nib, vandq_u8(set, vdupq_n_u8(0x10)));
                    vreinterpretq_s8_u8(vsubq_u8(q5, vdupq_n_u8(16)))
                };
                (f(vandq_u8(q, vdupq_n_u8(0x0f)), i0), f(vshrq_n_u8::<4>(q), i1))
            },
            Op::q8k_quant => quote! {
                let x = &x[..256];
                let mut m = vdupq_n_f32(0.0);
                for c in x.chunks_exact(4) {
                    __SAFETY__!("`c` is 4 values.");
                    m = vmaxq_f32(m, vabsq_f32(unsafe { vld1q_f32(c.as_ptr()) }));
                }
                let amax = vmaxvq_f32(m);
                if amax == 0.0 {
                    out.d = 0.0;
                    out.qs = [0; 256];
                    return;
                }
                // The reference keeps the first value of largest magnitude.
                let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
                let iscale = -127.0 / max;
                let iv = vdupq_n_f32(iscale);
                let top = vdupq_n_s32(127);
                for (c, o) in x.chunks_exact(8).zip(out.qs.chunks_exact_mut(8)) {
                    __SAFETY__!("`c` is 8 values: two 4-lane loads.");
                    let (v0, v1) = unsafe { (vld1q_f32(c.as_ptr()), vld1q_f32(c.as_ptr().add(4))) };
                    // fcvtns: nearest, ties to even (ggml's nearest_int).
                    let a = vminq_s32(vcvtnq_s32_f32(vmulq_f32(v0, iv)), top);
                    let b = vminq_s32(vcvtnq_s32_f32(vmulq_f32(v1, iv)), top);
                    let q = vqmovn_s16(vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)));
                    __SAFETY__!("`o` is 8 bytes, one 64-bit store.");
                    unsafe { vst1_s8(o.as_mut_ptr(), q) }
                }
                out.d = 1.0 / iscale;
            },
            _ => return None,
        })
    }
}
