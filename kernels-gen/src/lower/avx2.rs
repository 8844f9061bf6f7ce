//! x86-64 AVX2 + FMA + F16C: 8 f32 lanes; the Q8_0 dot uses the sign trick
//! (`|w|` unsigned × `sign(x, w)` signed through `vpmaddubsw`, then `vpmaddwd`
//! with ones), which cannot saturate because Q8_0 quants lie in `[-127, 127]`.

use proc_macro2::TokenStream;
use quote::quote;

use super::{CeilingForm, Lowering};
use crate::ops::Op;

/// AVX2 + FMA + F16C.
pub struct Avx2;

impl Lowering for Avx2 {
    fn module(&self) -> &'static str {
        "avx2"
    }
    fn isa_variant(&self) -> &'static str {
        "Avx2"
    }
    fn target_arch(&self) -> Option<&'static str> {
        Some("x86_64")
    }
    fn features(&self) -> Option<&'static str> {
        Some("avx2,fma,f16c")
    }
    fn detect(&self) -> TokenStream {
        quote! {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        }
    }
    fn prelude(&self) -> TokenStream {
        quote! {
            use core::arch::x86_64::*;
            const LANES: usize = 8;
            /// Queries per attention register tile (16 vector registers: a 4 × 2 tile of accumulators leaves room for the loads).
            const ATTN_ROWS: usize = 4;
            type F = __m256;
            type A = __m256;
            type I = __m256i;
            /// `(|w|, w)`: the unsigned operand and the sign source.
            type QW = (__m256i, __m256i);
            type QX = __m256i;
            type R8 = __m256;
            type RI = __m256i;
            /// `(|w|, w)`, as for `QW`.
            type RW = (__m256i, __m256i);
            type RX = __m256i;
            // 32 bytes, and 16 int16 scales (8 per 128-bit half).
            type KW = __m256i;
            type KS = __m256i;
            type CA = __m256i;
            type CB = __m256i;
            type CA2 = __m256i;
            type CB2 = __m256i;
        }
    }
    fn int8_ceiling(&self) -> [Option<CeilingForm>; 2] {
        [
            // Each chain's loop-carried step is one `vpaddd` (latency 1); 8
            // chains plus operands, ones and a temporary fit 16 registers.
            Some(CeilingForm {
                name: "vpmaddubsw+vpmaddwd+vpaddd ymm",
                macs: 32,
                chains: 8,
                in_ceiling: true,
                detect: None,
            }),
            // AVX-VNNI's 256-bit `vpdpbusd` (latency 5, 2 per cycle where it
            // exists): reported beside the ceiling, which it does not raise,
            // since the AVX2 kernels do not use it.
            Some(CeilingForm {
                name: "vpdpbusd ymm (AVX-VNNI)",
                macs: 32,
                chains: 10,
                in_ceiling: false,
                detect: Some(quote!(std::arch::is_x86_feature_detected!("avxvnni"))),
            }),
        ]
    }
    fn op(&self, op: Op) -> Option<TokenStream> {
        x86_256_op(op).or_else(|| {
            Some(match op {
                Op::ceil_zero | Op::ceil2_zero => quote!(_mm256_setzero_si256()),
                Op::ceil_load | Op::ceil2_load => quote! {
                    __SAFETY__!("`s` is 64 bytes: a 256-bit load of the first 32.");
                    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
                },
                Op::ceil_opaque | Op::ceil2_opaque => quote! {
                    let mut v = v;
                    __SAFETY__!("an empty template: the register is left as it is.");
                    unsafe {
                        core::arch::asm!("/* {v} */", v = inout(ymm_reg) v, options(nomem, nostack, preserves_flags));
                    }
                    v
                },
                // `vpmaddubsw` saturates its int16 pair sums; the probe only
                // times the sequence, so its operands need not avoid that.
                Op::ceil_mac => quote! {
                    let p = _mm256_maddubs_epi16(u, s);
                    _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
                },
                // Written as `asm!` because the AVX2 functions do not enable
                // `avxvnni`; the probe runs it only where it was detected.
                Op::ceil2_mac => quote! {
                    let mut acc = acc;
                    __SAFETY__!("`vpdpbusd` only reads and writes these registers; its probe is only handed out where `avxvnni` was detected.");
                    unsafe {
                        core::arch::asm!(
                            "{{vex}} vpdpbusd {acc}, {u}, {s}",
                            acc = inout(ymm_reg) acc,
                            u = in(ymm_reg) u,
                            s = in(ymm_reg) s,
                            options(pure, nomem, nostack, preserves_flags),
                        );
                    }
                    acc
                },
                Op::ceil_hsum | Op::ceil2_hsum => quote!(i_hsum(a)),
                Op::q8_dot => quote! {
                    let p = _mm256_maddubs_epi16(w.0, _mm256_sign_epi8(x, w.1));
                    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
                },
                Op::q8r_dot_acc => quote! {
                    let p = _mm256_maddubs_epi16(w.0, _mm256_sign_epi8(x, w.1));
                    _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
                },
                Op::f_zero => quote!(_mm256_setzero_ps()),
                Op::f_splat => quote!(_mm256_set1_ps(x)),
                Op::f_load => quote! {
                    assert!(s.len() >= LANES);
                    __SAFETY__!("`s` holds at least 8 values (asserted above).");
                    unsafe { _mm256_loadu_ps(s.as_ptr()) }
                },
                Op::f_store => quote! {
                    assert!(s.len() >= LANES);
                    __SAFETY__!("`s` holds at least 8 values (asserted above).");
                    unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
                },
                Op::f_from_i8 => quote! {
                    assert!(s.len() >= LANES);
                    __SAFETY__!("`s` holds at least 8 bytes (asserted above).");
                    let v = unsafe { _mm_loadl_epi64(s.as_ptr().cast()) };
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
                },
                Op::f_load_f16 => quote! {
                    assert!(s.len() >= LANES);
                    __SAFETY__!("`s` holds at least 8 halves (asserted above): 16 bytes.");
                    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(s.as_ptr().cast()) })
                },
                Op::f_add => quote!(_mm256_add_ps(a, b)),
                Op::f_sub => quote!(_mm256_sub_ps(a, b)),
                Op::f_mul => quote!(_mm256_mul_ps(a, b)),
                Op::f_div => quote!(_mm256_div_ps(a, b)),
                Op::f_max => quote!(_mm256_max_ps(a, b)),
                Op::f_min => quote!(_mm256_min_ps(a, b)),
                Op::f_fma => quote!(_mm256_fmadd_ps(a, b, c)),
                Op::f_abs => quote!(_mm256_andnot_ps(_mm256_set1_ps(-0.0), a)),
                Op::f_copysign => quote! {
                    let m = _mm256_set1_ps(-0.0);
                    _mm256_or_ps(_mm256_andnot_ps(m, mag), _mm256_and_ps(m, sign))
                },
                Op::f_round => quote! {
                    _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
                },
                Op::f_pow2i => quote! {
                    let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
                    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e))
                },
                Op::f_hsum | Op::acc_hsum => quote! {
                    let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
                },
                Op::f_hmax => quote! {
                    let s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
                    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
                },
                Op::acc_zero => quote!(_mm256_setzero_ps()),
                Op::acc_splat_f16 => quote!(_mm256_cvtph_ps(_mm_set1_epi16(bits as i16))),
                Op::acc_mul => quote!(_mm256_mul_ps(a, b)),
                Op::acc_fma => quote!(_mm256_fmadd_ps(s, _mm256_cvtepi32_ps(p), acc)),
                Op::q8_quant => quote! {
                    let v = [
                        f_load(&x[0..]),
                        f_load(&x[8..]),
                        f_load(&x[16..]),
                        f_load(&x[24..]),
                    ];
                    let m = f_max(f_max(f_abs(v[0]), f_abs(v[1])), f_max(f_abs(v[2]), f_abs(v[3])));
                    let d = f_hmax(m) / 127.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    let dh = _mm_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm_set_ss(d));
                    out.d = f16::from_bits(_mm_extract_epi16::<0>(dh) as u16);
                    let idv = f_splat(id);
                    let mut q = [_mm256_setzero_si256(); 4];
                    for (qi, vi) in q.iter_mut().zip(v) {
                        // Round half away from zero exactly: truncate, then step
                        // away from zero when the dropped fraction is >= 0.5.
                        let m = f_mul(vi, idv);
                        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(m);
                        let up = _mm256_cmp_ps::<_CMP_GE_OQ>(f_abs(f_sub(m, t)), f_splat(0.5));
                        let step = _mm256_and_ps(up, f_copysign(f_splat(1.0), m));
                        *qi = _mm256_cvttps_epi32(f_add(t, step));
                    }
                    let a = _mm256_packs_epi32(q[0], q[1]);
                    let b = _mm256_packs_epi32(q[2], q[3]);
                    // The packs work per 128-bit lane: restore element order.
                    let c = _mm256_permutevar8x32_epi32(
                        _mm256_packs_epi16(a, b),
                        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
                    );
                    __SAFETY__!("`out.qs` is 32 bytes, one 256-bit store.");
                    unsafe { _mm256_storeu_si256(out.qs.as_mut_ptr().cast(), c) }
                },
                _ => return None,
            })
        })
    }
}

/// Ops shared by every lowering on 256-bit integer vectors (AVX2 and AVX-512 VL),
/// the K-quant and Q5_0 ones among them.
pub(super) fn x86_256_op(op: Op) -> Option<TokenStream> {
    Some(match op {
        Op::f16_to_f32 => quote!(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
            bits
        ))))),
        Op::i_zero => quote!(_mm256_setzero_si256()),
        Op::prefetch => quote!(_mm_prefetch::<_MM_HINT_T0>(p.cast())),
        Op::i_add => quote!(_mm256_add_epi32(a, b)),
        Op::i_hsum => quote! {
            let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
        },
        Op::q8_load_w => quote! {
            __SAFETY__!("`qs` is 32 bytes, one 256-bit load.");
            let w = unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) };
            (_mm256_sign_epi8(w, w), w)
        },
        Op::r8_zero => quote!(_mm256_setzero_ps()),
        Op::r8_scales => quote! {
            __SAFETY__!("`d` is 8 halves: one 128-bit load.");
            _mm256_cvtph_ps(unsafe { _mm_loadu_si128(d.as_ptr().cast()) })
        },
        Op::r8_load => quote! {
            assert!(s.len() >= 8);
            __SAFETY__!("`s` holds at least 8 values (asserted above).");
            unsafe { _mm256_loadu_ps(s.as_ptr()) }
        },
        Op::r8_store => quote! {
            assert!(s.len() >= 8);
            __SAFETY__!("`s` holds at least 8 values (asserted above).");
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
        },
        Op::r8_add => quote!(_mm256_add_ps(a, b)),
        Op::r8_fma_block => quote! {
            _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(dx)), _mm256_cvtepi32_ps(p), acc)
        },
        Op::r8_fma_splat => quote!(_mm256_fmadd_ps(a, _mm256_set1_ps(s), acc)),
        Op::q8_sum => quote! {
            __SAFETY__!("`qs` is 32 bytes, one 256-bit load.");
            let x = unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) };
            // Σ(x + 128) as sums of absolute differences from 0, 4 × 8 bytes.
            let s = _mm256_sad_epu8(_mm256_xor_si256(x, _mm256_set1_epi8(-128)), _mm256_setzero_si256());
            let s = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
            _mm_cvtsi128_si32(s) - 32 * 128
        },
        Op::ri_zero => quote!(_mm256_setzero_si256()),
        Op::q8r_load_w => quote! {
            __SAFETY__!("`qs` is 32 bytes, one 256-bit load.");
            let w = unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) };
            (_mm256_sign_epi8(w, w), w)
        },
        Op::q8r_load_x => quote! {
            assert!(quad < 8);
            __SAFETY__!("`quad < 8` (asserted above): 4 bytes inside the 32-byte `qs`.");
            _mm256_set1_epi32(unsafe { qs.as_ptr().add(4 * quad).cast::<i32>().read_unaligned() })
        },
        Op::q8_load_x => quote! {
            __SAFETY__!("`qs` is 32 bytes, one 256-bit load.");
            unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) }
        },
        // K-quant and Q5_0: the chunk dot is `vpmaddubsw` (unsigned weights
        // <= 63 × int8: pair sums <= 16002, no saturation) then `vpmaddwd`
        // with the int16 scales.
        Op::acc_splat => quote!(_mm256_set1_ps(x)),
        Op::ks_pair => quote!(_mm256_set_m128i(
            _mm_set1_epi16(hi as i16),
            _mm_set1_epi16(lo as i16)
        )),
        Op::ku_dot => quote!(_mm256_madd_epi16(_mm256_maddubs_epi16(w, x), s)),
        Op::i16_dot => quote! {
            __SAFETY__!("`a` and `b` are 32 bytes each, one 256-bit load each.");
            let (a, b) = unsafe {
                (_mm256_loadu_si256(a.as_ptr().cast()), _mm256_loadu_si256(b.as_ptr().cast()))
            };
            _mm256_madd_epi16(a, b)
        },
        Op::q4k_w => quote! {
            assert!(c < 8);
            __SAFETY__!("`c < 8` (asserted), so bytes `32(c/2)..32(c/2)+32` lie inside the 128 of `qs`.");
            let v = unsafe { _mm256_loadu_si256(qs.as_ptr().add(32 * (c / 2)).cast()) };
            let v = if c % 2 == 1 { _mm256_srli_epi16::<4>(v) } else { v };
            _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
        },
        Op::q6k_w => quote! {
            assert!(c < 8);
            let (h, j) = (c / 4, c % 4);
            __SAFETY__!("`c < 8` (asserted): `64h + 32(j%2) + 32 <= 128` bytes of `ql`, `32h + 32 <= 64` of `qh`.");
            let (l, hb) = unsafe {
                (
                    _mm256_loadu_si256(ql.as_ptr().add(64 * h + 32 * (j % 2)).cast()),
                    _mm256_loadu_si256(qh.as_ptr().add(32 * h).cast()),
                )
            };
            let l = if j >= 2 { _mm256_srli_epi16::<4>(l) } else { l };
            let l = _mm256_and_si256(l, _mm256_set1_epi8(0x0f));
            let hb = match j {
                0 => hb,
                1 => _mm256_srli_epi16::<2>(hb),
                2 => _mm256_srli_epi16::<4>(hb),
                _ => _mm256_srli_epi16::<6>(hb),
            };
            let hb = _mm256_slli_epi16::<4>(_mm256_and_si256(hb, _mm256_set1_epi8(3)));
            _mm256_or_si256(l, hb)
        },
        Op::q4x8_w => quote! {
            __SAFETY__!("`qs` is 32 bytes, one 256-bit load.");
            let v = unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) };
            let v = if hi == 1 { _mm256_srli_epi16::<4>(v) } else { v };
            let v = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
            (v, v)
        },
        Op::q6x8_w => quote! {
            __SAFETY__!("`ql` and `qh` are 32 bytes each, one 256-bit load each.");
            let (l, h) = unsafe {
                (_mm256_loadu_si256(ql.as_ptr().cast()), _mm256_loadu_si256(qh.as_ptr().cast()))
            };
            let l = if hi == 1 { _mm256_srli_epi16::<4>(l) } else { l };
            let l = _mm256_and_si256(l, _mm256_set1_epi8(0x0f));
            // Bits 2j..2j+2 to bits 4-5; 16-bit shifts of at most 4 take
            // those bits from the same byte.
            let h = match j {
                0 => _mm256_slli_epi16::<4>(h),
                1 => _mm256_slli_epi16::<2>(h),
                2 => h,
                _ => _mm256_srli_epi16::<2>(h),
            };
            let v = _mm256_or_si256(l, _mm256_and_si256(h, _mm256_set1_epi8(0x30)));
            (v, v)
        },
        Op::ru_dot_acc => quote! {
            // Unsigned weights <= 63 times int8: pair sums <= 16002, no saturation.
            let p = _mm256_maddubs_epi16(w.0, x);
            _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
        },
        Op::ri_from_i8 => quote! {
            __SAFETY__!("`s` is 8 bytes, one 64-bit load.");
            _mm256_cvtepi8_epi32(unsafe { _mm_loadl_epi64(s.as_ptr().cast()) })
        },
        Op::ri_mul_acc => quote!(_mm256_add_epi32(acc, _mm256_mullo_epi32(p, s))),
        Op::ri_sub_splat => quote!(_mm256_sub_epi32(p, _mm256_set1_epi32(v))),
        Op::ri_madd_pair_acc => quote! {
            __SAFETY__!("`m` is 16 int16, one 256-bit load.");
            let m = unsafe { _mm256_loadu_si256(m.as_ptr().cast()) };
            _mm256_add_epi32(acc, _mm256_madd_epi16(m, _mm256_set1_epi32(pair)))
        },
        Op::q5_0_w => quote! {
            __SAFETY__!("`b.qs` is 16 bytes, one 128-bit load.");
            let q = unsafe { _mm_loadu_si128(b.qs.as_ptr().cast()) };
            let nib = _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16::<4>(q), q),
                _mm256_set1_epi8(0x0f),
            );
            // Byte i gets byte i/8 of qh and tests its bit i%8.
            let qh = _mm256_set1_epi32(i32::from_le_bytes(b.qh));
            let spread = _mm256_shuffle_epi8(
                qh,
                _mm256_setr_epi8(
                    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
                ),
            );
            let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
            let q5 = _mm256_or_si256(nib, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
            let w = _mm256_sub_epi8(q5, _mm256_set1_epi8(16));
            (_mm256_sign_epi8(w, w), w)
        },
        Op::q8k_quant => quote! {
            let x = &x[..256];
            let absmask = _mm256_set1_ps(-0.0);
            let mut m = _mm256_setzero_ps();
            for c in x.chunks_exact(8) {
                __SAFETY__!("`c` is 8 values.");
                let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
                m = _mm256_max_ps(m, _mm256_andnot_ps(absmask, v));
            }
            let s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            let amax = _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
            if amax == 0.0 {
                out.d = 0.0;
                out.qs = [0; 256];
                return;
            }
            // The reference keeps the first value of largest magnitude.
            let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
            let iscale = -127.0 / max;
            let iv = _mm256_set1_ps(iscale);
            let top = _mm256_set1_epi32(127);
            for (c, o) in x.chunks_exact(32).zip(out.qs.chunks_exact_mut(32)) {
                let mut q = [_mm256_setzero_si256(); 4];
                for (t, qi) in q.iter_mut().enumerate() {
                    __SAFETY__!("`c` is 32 values: `8t + 8 <= 32`.");
                    let v = unsafe { _mm256_loadu_ps(c.as_ptr().add(8 * t)) };
                    // Nearest, ties to even (ggml's nearest_int), then min 127.
                    let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                        _mm256_mul_ps(v, iv),
                    );
                    *qi = _mm256_min_epi32(_mm256_cvtps_epi32(r), top);
                }
                let a = _mm256_packs_epi32(q[0], q[1]);
                let b = _mm256_packs_epi32(q[2], q[3]);
                // The packs work per 128-bit lane: restore element order.
                let p = _mm256_permutevar8x32_epi32(
                    _mm256_packs_epi16(a, b),
                    _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
                );
                __SAFETY__!("`o` is 32 bytes, one 256-bit store.");
                unsafe { _mm256_storeu_si256(o.as_mut_ptr().cast(), p) }
            }
            out.d = 1.0 / iscale;
        },
        _ => return None,
    })
}
