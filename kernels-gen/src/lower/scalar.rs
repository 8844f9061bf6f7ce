//! Plain Rust, one lane: the reference every other lowering is tested against.

use proc_macro2::TokenStream;
use quote::quote;

use super::{CeilingForm, Lowering};
use crate::ops::Op;

/// Portable scalar code (`LANES = 1`, exact `f32::exp`/`tanh`).
pub struct Scalar;

impl Lowering for Scalar {
    fn module(&self) -> &'static str {
        "scalar"
    }
    fn isa_variant(&self) -> &'static str {
        "Scalar"
    }
    fn target_arch(&self) -> Option<&'static str> {
        None
    }
    fn features(&self) -> Option<&'static str> {
        None
    }
    fn detect(&self) -> TokenStream {
        quote!(true)
    }
    fn prelude(&self) -> TokenStream {
        quote! {
            const LANES: usize = 1;
            /// Queries per attention register tile (4 × 2 values).
            const ATTN_ROWS: usize = 4;
            type F = f32;
            type A = f32;
            type I = i32;
            type QW = [i8; 32];
            type QX = [i8; 32];
            type R8 = [f32; 8];
            type RI = [i32; 8];
            type RW = [i8; 32];
            type RX = [i8; 4];
            type KW = [u8; 32];
            type KS = (i32, i32);
            // No int8 multiply-accumulate instruction: no ceiling probe.
            type CA = ();
            type CB = ();
            type CA2 = ();
            type CB2 = ();
        }
    }
    fn int8_ceiling(&self) -> [Option<CeilingForm>; 2] {
        [None, None]
    }
    fn op(&self, op: Op) -> Option<TokenStream> {
        Some(match op {
            Op::f_zero => quote!(0.0),
            Op::f_splat => quote!(x),
            Op::f_load => quote!(s[0]),
            Op::f_store => quote!(s[0] = v;),
            Op::f_from_i8 => quote!(f32::from(s[0])),
            Op::f_load_f16 => quote!(f16::from_bits(s[0]).to_f32()),
            Op::f_add => quote!(a + b),
            Op::f_sub => quote!(a - b),
            Op::f_mul => quote!(a * b),
            Op::f_div => quote!(a / b),
            Op::f_max => quote!(a.max(b)),
            Op::f_min => quote!(a.min(b)),
            Op::f_fma => quote!(a * b + c),
            Op::f_abs => quote!(a.abs()),
            Op::f_copysign => quote!(mag.copysign(sign)),
            Op::f_round => quote!(a.round()),
            Op::f_pow2i => quote!(f32::from_bits(((n as i32 + 127) as u32) << 23)),
            Op::f_hsum | Op::f_hmax | Op::acc_hsum => quote!(a),
            Op::f16_to_f32 | Op::acc_splat_f16 => quote!(f16::from_bits(bits).to_f32()),
            Op::acc_zero => quote!(0.0),
            Op::i_zero => quote!(0),
            Op::prefetch => quote!(let _ = p;),
            Op::i_add => quote!(a.wrapping_add(b)),
            Op::i_hsum => quote!(a),
            Op::acc_mul => quote!(a * b),
            Op::acc_fma => quote!(acc + s * p as f32),
            Op::q8_load_w | Op::q8_load_x => quote!(*qs),
            Op::q8_dot => quote! {
                w.iter().zip(x.iter()).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum()
            },
            Op::q8_quant => quote! {
                let x = &x[..32];
                let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.d = f16::from_f32(d);
                for (q, v) in out.qs.iter_mut().zip(x) {
                    // `f32::round` rounds half away from zero.
                    *q = (v * id).round() as i8;
                }
            },
            Op::r8_zero => quote!([0.0; 8]),
            Op::r8_scales => quote!(d.map(f16::to_f32)),
            Op::r8_load => quote!(core::array::from_fn(|r| s[r])),
            Op::r8_store => quote!(s[..8].copy_from_slice(&v);),
            Op::r8_add => quote!(core::array::from_fn(|r| a[r] + b[r])),
            Op::r8_fma_block => quote!(core::array::from_fn(|r| acc[r] + dw[r] * dx * p[r] as f32)),
            Op::r8_fma_splat => quote!(core::array::from_fn(|r| acc[r] + a[r] * s)),
            Op::ri_zero => quote!([0; 8]),
            Op::q8r_load_w => quote!(*qs),
            Op::q8r_load_x => quote!([
                qs[4 * quad],
                qs[4 * quad + 1],
                qs[4 * quad + 2],
                qs[4 * quad + 3]
            ]),
            Op::q8r_dot_acc => quote! {
                core::array::from_fn(|r| {
                    let d: i32 = (0..4).map(|e| i32::from(w[4 * r + e]) * i32::from(x[e])).sum();
                    acc[r].wrapping_add(d)
                })
            },
            Op::f_exp => quote!(x.exp()),
            Op::f_tanh => quote!(x.tanh()),
            Op::acc_splat => quote!(x),
            Op::ks_pair => quote!((lo, hi)),
            Op::ku_dot => quote! {
                let (mut a, mut b) = (0i32, 0i32);
                for i in 0..16 {
                    a += i32::from(w[i]) * i32::from(x[i]);
                    b += i32::from(w[16 + i]) * i32::from(x[16 + i]);
                }
                a * s.0 + b * s.1
            },
            Op::i16_dot => quote! {
                a.iter().zip(b).map(|(&p, &q)| i32::from(p) * i32::from(q)).sum()
            },
            Op::q4k_w => quote! {
                let q = &qs[32 * (c / 2)..][..32];
                core::array::from_fn(|i| if c % 2 == 0 { q[i] & 0x0f } else { q[i] >> 4 })
            },
            Op::q6k_w => quote! {
                let (h, j) = (c / 4, c % 4);
                let l = &ql[64 * h + 32 * (j % 2)..][..32];
                let hb = &qh[32 * h..][..32];
                core::array::from_fn(|i| {
                    let lo = if j < 2 { l[i] & 0x0f } else { l[i] >> 4 };
                    lo | (((hb[i] >> (2 * j)) & 3) << 4)
                })
            },
            Op::q4x8_w => quote!(core::array::from_fn(|i| ((qs[i] >> (4 * hi)) & 0x0f) as i8)),
            Op::q6x8_w => quote! {
                core::array::from_fn(|i| {
                    let lo = (ql[i] >> (4 * hi)) & 0x0f;
                    (lo | (((qh[i] >> (2 * j)) & 3) << 4)) as i8
                })
            },
            Op::ri_from_i8 => quote!(s.map(i32::from)),
            Op::ri_mul_acc => quote!(core::array::from_fn(|r| acc[r] + p[r] * s[r])),
            Op::ri_sub_splat => quote!(p.map(|a| a - v)),
            Op::ri_madd_pair_acc => quote! {
                let (lo, hi) = (i32::from(pair as i16), i32::from((pair >> 16) as i16));
                core::array::from_fn(|r| acc[r] + i32::from(m[2 * r]) * lo + i32::from(m[2 * r + 1]) * hi)
            },
            Op::q5_0_w => quote! {
                let qh = u32::from_le_bytes(b.qh);
                core::array::from_fn(|i| {
                    let nib = if i < 16 { b.qs[i] & 0x0f } else { b.qs[i - 16] >> 4 };
                    let hi = ((qh >> i) & 1) as u8;
                    (nib | (hi << 4)) as i8 - 16
                })
            },
            Op::q8k_quant => quote! {
                let x = &x[..256];
                let (mut amax, mut max) = (0.0f32, 0.0f32);
                for &v in x {
                    if v.abs() > amax {
                        amax = v.abs();
                        max = v;
                    }
                }
                if amax == 0.0 {
                    out.d = 0.0;
                    out.qs = [0; 256];
                    return;
                }
                let iscale = -127.0 / max;
                for (q, &v) in out.qs.iter_mut().zip(x) {
                    *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
                }
                out.d = 1.0 / iscale;
            },
            _ => return None,
        })
    }
}
