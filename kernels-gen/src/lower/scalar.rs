//! Plain Rust, one lane: the reference every other lowering is tested against.

use proc_macro2::TokenStream;
use quote::quote;

use super::Lowering;

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
        }
    }
    fn op(&self, name: &str) -> Option<TokenStream> {
        Some(match name {
            "f_zero" => quote!(0.0),
            "f_splat" => quote!(x),
            "f_load" => quote!(s[0]),
            "f_store" => quote!(s[0] = v;),
            "f_from_i8" => quote!(f32::from(s[0])),
            "f_add" => quote!(a + b),
            "f_sub" => quote!(a - b),
            "f_mul" => quote!(a * b),
            "f_div" => quote!(a / b),
            "f_max" => quote!(a.max(b)),
            "f_min" => quote!(a.min(b)),
            "f_fma" => quote!(a * b + c),
            "f_abs" => quote!(a.abs()),
            "f_copysign" => quote!(mag.copysign(sign)),
            "f_round" => quote!(a.round()),
            "f_pow2i" => quote!(f32::from_bits(((n as i32 + 127) as u32) << 23)),
            "f_hsum" | "f_hmax" | "acc_hsum" => quote!(a),
            "f16_to_f32" | "acc_splat_f16" => quote!(f16::from_bits(bits).to_f32()),
            "acc_zero" => quote!(0.0),
            "i_zero" => quote!(0),
            "prefetch" => quote!(let _ = p;),
            "i_add" => quote!(a.wrapping_add(b)),
            "i_hsum" => quote!(a),
            "acc_mul" => quote!(a * b),
            "acc_fma" => quote!(acc + s * p as f32),
            "q8_load_w" | "q8_load_x" => quote!(*qs),
            "q8_dot" => quote! {
                w.iter().zip(x.iter()).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum()
            },
            "q8_quant" => quote! {
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
            "r8_zero" => quote!([0.0; 8]),
            "r8_scales" => quote!(d.map(f16::to_f32)),
            "r8_load" => quote!(core::array::from_fn(|r| s[r])),
            "r8_store" => quote!(s[..8].copy_from_slice(&v);),
            "r8_add" => quote!(core::array::from_fn(|r| a[r] + b[r])),
            "r8_fma_block" => quote!(core::array::from_fn(|r| acc[r] + dw[r] * dx * p[r] as f32)),
            "ri_zero" => quote!([0; 8]),
            "q8r_load_w" => quote!(*qs),
            "q8r_load_x" => quote!([
                qs[4 * quad],
                qs[4 * quad + 1],
                qs[4 * quad + 2],
                qs[4 * quad + 3]
            ]),
            "q8r_dot_acc" => quote! {
                core::array::from_fn(|r| {
                    let d: i32 = (0..4).map(|e| i32::from(w[4 * r + e]) * i32::from(x[e])).sum();
                    acc[r].wrapping_add(d)
                })
            },
            "f_exp" => quote!(x.exp()),
            "f_tanh" => quote!(x.tanh()),
            _ => return None,
        })
    }
    fn kquant_prelude(&self) -> TokenStream {
        quote! {
            type KW = [u8; 32];
            type KS = (i32, i32);
        }
    }
    fn kquant_op(&self, name: &str) -> Option<TokenStream> {
        Some(match name {
            "acc_splat" => quote!(x),
            "ks_pair" => quote!((lo, hi)),
            "ku_dot" => quote! {
                let (mut a, mut b) = (0i32, 0i32);
                for i in 0..16 {
                    a += i32::from(w[i]) * i32::from(x[i]);
                    b += i32::from(w[16 + i]) * i32::from(x[16 + i]);
                }
                a * s.0 + b * s.1
            },
            "i16_dot" => quote! {
                a.iter().zip(b).map(|(&p, &q)| i32::from(p) * i32::from(q)).sum()
            },
            "q4k_w" => quote! {
                let q = &qs[32 * (c / 2)..][..32];
                core::array::from_fn(|i| if c % 2 == 0 { q[i] & 0x0f } else { q[i] >> 4 })
            },
            "q6k_w" => quote! {
                let (h, j) = (c / 4, c % 4);
                let l = &ql[64 * h + 32 * (j % 2)..][..32];
                let hb = &qh[32 * h..][..32];
                core::array::from_fn(|i| {
                    let lo = if j < 2 { l[i] & 0x0f } else { l[i] >> 4 };
                    lo | (((hb[i] >> (2 * j)) & 3) << 4)
                })
            },
            "q4x8_w" => quote!(core::array::from_fn(|i| ((qs[i] >> (4 * hi)) & 0x0f) as i8)),
            "q6x8_w" => quote! {
                core::array::from_fn(|i| {
                    let lo = (ql[i] >> (4 * hi)) & 0x0f;
                    (lo | (((qh[i] >> (2 * j)) & 3) << 4)) as i8
                })
            },
            "ri_from_i8" => quote!(s.map(i32::from)),
            "ri_mul_acc" => quote!(core::array::from_fn(|r| acc[r] + p[r] * s[r])),
            "ri_sub_splat" => quote!(p.map(|a| a - v)),
            "ri_madd_pair_acc" => quote! {
                let (lo, hi) = (i32::from(pair as i16), i32::from((pair >> 16) as i16));
                core::array::from_fn(|r| acc[r] + i32::from(m[2 * r]) * lo + i32::from(m[2 * r + 1]) * hi)
            },
            "q5_0_w" => quote! {
                let qh = u32::from_le_bytes(b.qh);
                core::array::from_fn(|i| {
                    let nib = if i < 16 { b.qs[i] & 0x0f } else { b.qs[i - 16] >> 4 };
                    let hi = ((qh >> i) & 1) as u8;
                    (nib | (hi << 4)) as i8 - 16
                })
            },
            "q8k_quant" => quote! {
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
