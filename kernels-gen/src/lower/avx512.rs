//! x86-64 AVX-512 F/BW/VL + VNNI: 16 f32 lanes for element-wise and
//! reduction ops; the Q8_0 block dot stays 256 bits wide (one block is 32
//! bytes) and uses `vpdpbusd` (unsigned × signed bytes summed straight into
//! int32 lanes: one instruction instead of maddubs + madd). The row kernels
//! feed it `|w|` × `sign(x, w)`; the 8-row-group matmul feeds it `w + 128`
//! (one xor per weight load, shared by every token of a tile) × `x`, and
//! starts each block's dot from `-128·Σx` (`q8r_offset`), so no token pays
//! a sign instruction.

use proc_macro2::TokenStream;
use quote::quote;

use super::avx2::x86_256_op;
use super::{CeilingForm, Lowering};
use crate::ops::Op;

/// AVX-512 F/BW/VL + VNNI (with AVX2, FMA, F16C, which every such CPU has).
pub struct Avx512Vnni;

impl Lowering for Avx512Vnni {
    fn module(&self) -> &'static str {
        "avx512vnni"
    }
    fn isa_variant(&self) -> &'static str {
        "Avx512Vnni"
    }
    fn target_arch(&self) -> Option<&'static str> {
        Some("x86_64")
    }
    fn features(&self) -> Option<&'static str> {
        Some("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
    }
    fn detect(&self) -> TokenStream {
        quote! {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        }
    }
    fn prelude(&self) -> TokenStream {
        quote! {
            use core::arch::x86_64::*;
            const LANES: usize = 16;
            /// Queries per attention register tile (32 vector registers: an 8 × 2 tile of accumulators halves the key and value loads per FMA against 4 × 2).
            const ATTN_ROWS: usize = 8;
            type F = __m512;
            type A = __m256;
            type I = __m256i;
            /// `(|w|, w)`: the unsigned operand and the sign source.
            type QW = (__m256i, __m256i);
            type QX = __m256i;
            type R8 = __m256;
            type RI = __m256i;
            /// `(u, w)`: unsigned bytes for `vpdpbusd` (Q8_0: `w + 128`) and the weights as loaded.
            type RW = (__m256i, __m256i);
            type RX = __m256i;
            // 32 bytes, and 16 int16 scales (8 per 128-bit half).
            type KW = __m256i;
            type KS = __m256i;
            type CA = __m512i;
            type CB = __m512i;
            type CA2 = __m256i;
            type CB2 = __m256i;
        }
    }
    fn int8_ceiling(&self) -> [Option<CeilingForm>; 2] {
        // `vpdpbusd` has latency 5 and issues up to 2 per cycle (512-bit on
        // ports 0 and 5 where both exist, 256-bit on 0 and 1): 10 chains in
        // flight, 12 for margin, well within 32 registers. The wider form is
        // not faster on every core (a single 512-bit port halves it), so the
        // ceiling is the larger of the two.
        [
            Some(CeilingForm {
                name: "vpdpbusd zmm",
                macs: 64,
                chains: 12,
                in_ceiling: true,
                detect: None,
            }),
            Some(CeilingForm {
                name: "vpdpbusd ymm",
                macs: 32,
                chains: 12,
                in_ceiling: true,
                detect: None,
            }),
        ]
    }
    fn wide_groups(&self) -> bool {
        true
    }
    fn wide_types(&self) -> TokenStream {
        // 16 rows in one register: the 16-row Q8_0 group tiles (`q8r_wide`).
        quote! {
            type R16 = __m512;
            type RI16 = __m512i;
            /// `w + 128` as unsigned bytes, 16 rows × one column quad.
            type RW16 = __m512i;
        }
    }
    fn op(&self, op: Op) -> Option<TokenStream> {
        // Its own ops first: some (the offset Q8_0 weight loads) replace the shared AVX2 ones.
        avx512_op(op).or_else(|| x86_256_op(op))
    }
}

/// The ops AVX-512 VNNI lowers differently from AVX2 (or only it has).
fn avx512_op(op: Op) -> Option<TokenStream> {
    Some(match op {
        Op::ceil_zero => quote!(_mm512_setzero_si512()),
        Op::ceil_load => quote! {
            __SAFETY__!("`s` is 64 bytes, one 512-bit load.");
            unsafe { _mm512_loadu_si512(s.as_ptr().cast()) }
        },
        Op::ceil_opaque => quote! {
            let mut v = v;
            __SAFETY__!("an empty template: the register is left as it is.");
            unsafe {
                core::arch::asm!("/* {v} */", v = inout(zmm_reg) v, options(nomem, nostack, preserves_flags));
            }
            v
        },
        Op::ceil_mac => quote!(_mm512_dpbusd_epi32(acc, u, s)),
        Op::ceil_hsum => quote!(_mm512_reduce_add_epi32(a)),
        Op::ceil2_zero => quote!(_mm256_setzero_si256()),
        Op::ceil2_load => quote! {
            __SAFETY__!("`s` is 64 bytes: a 256-bit load of the first 32.");
            unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
        },
        Op::ceil2_opaque => quote! {
            let mut v = v;
            __SAFETY__!("an empty template: the register is left as it is.");
            unsafe {
                core::arch::asm!("/* {v} */", v = inout(ymm_reg) v, options(nomem, nostack, preserves_flags));
            }
            v
        },
        Op::ceil2_mac => quote!(_mm256_dpbusd_epi32(acc, u, s)),
        Op::ceil2_hsum => quote!(i_hsum(a)),
        Op::q8_dot => quote! {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), w.0, _mm256_sign_epi8(x, w.1))
        },
        Op::q8r_dot_acc => quote!(_mm256_dpbusd_epi32(acc, w.0, x)),
        // The 8-row groups' unsigned dot is one `vpdpbusd`. (The K-quant
        // chunk dot could be `vpdpbusd` then a 32-bit multiply by the scales;
        // the shared `vpmaddubsw + vpmaddwd` is as many uops.)
        Op::ru_dot_acc => quote!(_mm256_dpbusd_epi32(acc, w.0, x)),
        Op::q8r_offset => quote!(true),
        Op::q8r_init => quote!(_mm256_set1_epi32(bias)),
        Op::q8r_x_bias => quote! {
            __SAFETY__!("`qs` is 32 bytes, one 256-bit load.");
            let x = unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) };
            // Σ(x + 128) as sums of absolute differences from 0, 4 × 8 bytes.
            let s = _mm256_sad_epu8(_mm256_xor_si256(x, _mm256_set1_epi8(-128)), _mm256_setzero_si256());
            let s = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
            -128 * (_mm_cvtsi128_si32(s) - 32 * 128)
        },
        Op::q8r_load_w => quote! {
            __SAFETY__!("`qs` is 32 bytes, one 256-bit load.");
            let w = unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) };
            (_mm256_xor_si256(w, _mm256_set1_epi8(-128)), w)
        },
        // 16 rows (two groups) per register: each activation quad is one
        // broadcast memory operand of `vpdpbusd` for all 16.
        Op::r16_zero => quote!(_mm512_setzero_ps()),
        Op::r16_scales => quote! {
            __SAFETY__!("`d0` and `d1` are 8 halves each: two 128-bit loads.");
            let (d0, d1) = unsafe {
                (_mm_loadu_si128(d0.as_ptr().cast()), _mm_loadu_si128(d1.as_ptr().cast()))
            };
            _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(d0), d1))
        },
        Op::r16_fma_block => quote! {
            _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(dx)), _mm512_cvtepi32_ps(p), acc)
        },
        Op::r16_fma_splat => quote!(_mm512_fmadd_ps(a, _mm512_set1_ps(s), acc)),
        Op::q8r16_init => quote!(_mm512_set1_epi32(bias)),
        Op::q8r16_load_w => quote! {
            __SAFETY__!("`qs0` and `qs1` are 32 bytes each: two 256-bit loads.");
            let (w0, w1) = unsafe {
                (_mm256_loadu_si256(qs0.as_ptr().cast()), _mm256_loadu_si256(qs1.as_ptr().cast()))
            };
            let w = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(w0), w1);
            _mm512_xor_si512(w, _mm512_set1_epi8(-128))
        },
        Op::q8r16_dot_acc => quote! {
            assert!(quad < 8);
            __SAFETY__!("`quad < 8` (asserted above): 4 bytes inside the 32-byte `x`.");
            let xq = unsafe { x.as_ptr().add(4 * quad).cast::<i32>().read_unaligned() };
            _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(xq))
        },
        Op::ri16_zero => quote!(_mm512_setzero_si512()),
        Op::q4x16_w => quote! {
            __SAFETY__!("`qs0` and `qs1` are 32 bytes each: two 256-bit loads.");
            let (v0, v1) = unsafe {
                (_mm256_loadu_si256(qs0.as_ptr().cast()), _mm256_loadu_si256(qs1.as_ptr().cast()))
            };
            let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v0), v1);
            let v = if hi == 1 { _mm512_srli_epi16::<4>(v) } else { v };
            _mm512_and_si512(v, _mm512_set1_epi8(0x0f))
        },
        Op::q6x16_w => quote! {
            __SAFETY__!("`ql0`, `ql1`, `qh0` and `qh1` are 32 bytes each: four 256-bit loads.");
            let (l0, l1, h0, h1) = unsafe {
                (
                    _mm256_loadu_si256(ql0.as_ptr().cast()),
                    _mm256_loadu_si256(ql1.as_ptr().cast()),
                    _mm256_loadu_si256(qh0.as_ptr().cast()),
                    _mm256_loadu_si256(qh1.as_ptr().cast()),
                )
            };
            let l = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(l0), l1);
            let h = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(h0), h1);
            let l = if hi == 1 { _mm512_srli_epi16::<4>(l) } else { l };
            let l = _mm512_and_si512(l, _mm512_set1_epi8(0x0f));
            // Bits 2j..2j+2 to bits 4-5, as the 8-row form.
            let h = match j {
                0 => _mm512_slli_epi16::<4>(h),
                1 => _mm512_slli_epi16::<2>(h),
                2 => h,
                _ => _mm512_srli_epi16::<2>(h),
            };
            _mm512_or_si512(l, _mm512_and_si512(h, _mm512_set1_epi8(0x30)))
        },
        Op::ru16_dot_acc => quote! {
            assert!(quad < 8);
            __SAFETY__!("`quad < 8` (asserted above): 4 bytes inside the 32-byte `x`.");
            let xq = unsafe { x.as_ptr().add(4 * quad).cast::<i32>().read_unaligned() };
            _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(xq))
        },
        Op::ri16_from_i8 => quote! {
            __SAFETY__!("`s0` and `s1` are 8 bytes each: two 64-bit loads.");
            let (a, b) = unsafe { (_mm_loadl_epi64(s0.as_ptr().cast()), _mm_loadl_epi64(s1.as_ptr().cast())) };
            _mm512_cvtepi8_epi32(_mm_unpacklo_epi64(a, b))
        },
        Op::ri16_mul_acc => quote!(_mm512_add_epi32(acc, _mm512_mullo_epi32(p, s))),
        Op::ri16_sub_splat => quote!(_mm512_sub_epi32(p, _mm512_set1_epi32(v))),
        Op::ri16_madd_pair_acc => quote! {
            __SAFETY__!("`m0` and `m1` are 16 int16 each: two 256-bit loads.");
            let (a, b) = unsafe {
                (_mm256_loadu_si256(m0.as_ptr().cast()), _mm256_loadu_si256(m1.as_ptr().cast()))
            };
            let m = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
            _mm512_add_epi32(acc, _mm512_madd_epi16(m, _mm512_set1_epi32(pair)))
        },
        Op::r16_store_row => quote! {
            if j0 + 16 <= row.len() {
                let mut v = v;
                if let Some(bias) = bias {
                    v = f_add(v, f_load(&bias[j0..]));
                }
                if accumulate {
                    v = f_add(v, f_load(&row[j0..]));
                }
                f_store(&mut row[j0..], v);
            } else {
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
                r8_store_row(row, j0, _mm512_castps512_ps256(v), bias, accumulate);
                r8_store_row(row, j0 + 8, hi, bias, accumulate);
            }
        },
        Op::f_zero => quote!(_mm512_setzero_ps()),
        Op::f_splat => quote!(_mm512_set1_ps(x)),
        Op::f_load => quote! {
            assert!(s.len() >= LANES);
            __SAFETY__!("`s` holds at least 16 values (asserted above).");
            unsafe { _mm512_loadu_ps(s.as_ptr()) }
        },
        Op::f_store => quote! {
            assert!(s.len() >= LANES);
            __SAFETY__!("`s` holds at least 16 values (asserted above).");
            unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
        },
        Op::f_from_i8 => quote! {
            assert!(s.len() >= LANES);
            __SAFETY__!("`s` holds at least 16 bytes (asserted above).");
            let v = unsafe { _mm_loadu_si128(s.as_ptr().cast()) };
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v))
        },
        Op::f_load_f16 => quote! {
            assert!(s.len() >= LANES);
            __SAFETY__!("`s` holds at least 16 halves (asserted above): 32 bytes.");
            _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(s.as_ptr().cast()) })
        },
        Op::f_add => quote!(_mm512_add_ps(a, b)),
        Op::f_sub => quote!(_mm512_sub_ps(a, b)),
        Op::f_mul => quote!(_mm512_mul_ps(a, b)),
        Op::f_div => quote!(_mm512_div_ps(a, b)),
        Op::f_max => quote!(_mm512_max_ps(a, b)),
        Op::f_min => quote!(_mm512_min_ps(a, b)),
        Op::f_fma => quote!(_mm512_fmadd_ps(a, b, c)),
        Op::f_abs => quote! {
            _mm512_castsi512_ps(_mm512_and_si512(
                _mm512_castps_si512(a),
                _mm512_set1_epi32(0x7fff_ffff),
            ))
        },
        Op::f_copysign => quote! {
            let m = _mm512_set1_epi32(i32::MIN);
            _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_andnot_si512(m, _mm512_castps_si512(mag)),
                _mm512_and_si512(m, _mm512_castps_si512(sign)),
            ))
        },
        Op::f_round => quote! {
            _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
        },
        Op::f_pow2i => quote! {
            let e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e))
        },
        Op::f_hsum => quote!(_mm512_reduce_add_ps(a)),
        Op::f_hmax => quote!(_mm512_reduce_max_ps(a)),
        Op::acc_hsum => quote! {
            let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        },
        Op::acc_zero => quote!(_mm256_setzero_ps()),
        Op::acc_splat_f16 => quote!(_mm256_cvtph_ps(_mm_set1_epi16(bits as i16))),
        Op::acc_mul => quote!(_mm256_mul_ps(a, b)),
        Op::acc_fma => quote!(_mm256_fmadd_ps(s, _mm256_cvtepi32_ps(p), acc)),
        Op::q8_quant => quote! {
            let v = [f_load(&x[0..]), f_load(&x[16..])];
            let d = f_hmax(f_max(f_abs(v[0]), f_abs(v[1]))) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let dh = _mm_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm_set_ss(d));
            out.d = f16::from_bits(_mm_extract_epi16::<0>(dh) as u16);
            let idv = f_splat(id);
            for (half, vi) in v.into_iter().enumerate() {
                // Round half away from zero exactly: truncate, then step
                // away from zero where the dropped fraction is >= 0.5.
                let m = f_mul(vi, idv);
                let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(m);
                let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(f_abs(f_sub(m, t)), f_splat(0.5));
                let r = _mm512_mask_add_ps(t, up, t, f_copysign(f_splat(1.0), m));
                let q = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r));
                __SAFETY__!("`half` is 0 or 1: a 16-byte store inside the 32-byte `out.qs`.");
                unsafe { _mm_storeu_si128(out.qs.as_mut_ptr().add(16 * half).cast(), q) }
            }
        },
        _ => return None,
    })
}
