//! K-quant (Q4_K, Q6_K), Q5_0 and Q4_1 matmuls: their block formats and
//! kernel families (the ops that unpack their blocks are in [`crate::ops`] with the
//! others).
//!
//! The formats only differ in how a weight block turns into int8 operands,
//! so the register-tiled row matmul of Q8_0
//! ([`row_matmul`](crate::kernels::matmul::row_matmul)) serves all three
//! through a [`Format`] that says how to unpack a block and combine its scales:
//!
//! - **Q4_K × Q8_K**: 8 sub-blocks of 32 unsigned 4-bit values with a 6-bit
//!   scale and min each. Per 32-value chunk `ku_dot` gives the exact
//!   `sc · Σ q·x` in int32 lanes; the mins come in once per block as
//!   `dmin · dx · Σ m · bsum` from the activations' 16-value sums.
//! - **Q6_K × Q8_K**: 16 sub-blocks of 16 unsigned 6-bit values with an i8
//!   scale; `q - 32` is folded into the same integer sum as
//!   `-32 · Σ sc · bsum`, so a block costs one float multiply-add.
//! - **Q5_0 × Q8_0**: one 32-value block, unpacked to signed `q - 16` and
//!   fed to the Q8_0 block dot (`q8_dot`).
//!
//! Activation blocks for the K-quants are Q8_K (`quantize_q8_k`), bit-identical
//! to ggml's `quantize_row_q8_K_ref`.
//!
//! - **Q4_1 × Q8_0** (8-row groups only, `q4_1x8_matmul`): one 32-value
//!   block of unsigned nibbles with an f16 scale `d` and minimum `m`. The
//!   nibbles feed the unsigned × signed int8 dot as they are; per block
//!   `dx·d·Σ q·x` comes from the exact int32 dot and `dx·m·Σ x` from the
//!   activation block's sum, computed once per token before the weight
//!   groups rather than for each group (llama.cpp stores it in Q8_1 blocks).
//!
//! The K-quant and Q5_0 kernels above read the file's row layout. The models run Q4_K and Q6_K
//! on weights repacked at open into groups of 8 rows instead
//! ([`kx8_matmul`], the Q8_0 groups' driver and tiles): one unsigned int8
//! step (`ru_dot_acc`, a single `vpdpbusd` on AVX-512 VNNI) gives 8 rows'
//! partial dots for 4 columns, the nibbles are unpacked once per tile of
//! tokens rather than once per 3, and each sub-block costs one integer
//! multiply by the 8 rows' scales. Same integer sums, so the same results
//! as the row kernels up to float rounding; 2-3x their speed on many tokens.
//! Where registers hold 16 rows (AVX-512), many tokens take 16-row tiles
//! over two groups ([`kx8_matmul`] with [`Rows::Sixteen`]).

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use crate::interface;
use crate::kernels::matmul::{self, Format, Rows, id, id2, lit};
use crate::kernels::{Family, bind};

/// The families of this module, in `KernelSet` order.
pub const FAMILIES: &[Family] = &[
    Family {
        getter: "quantize_q8_k",
        reference_only: false,
        fn_type: &interface::QUANTIZE_Q8_K,
        getter_doc: "Quantize rows of `k` values to Q8_K.",
        key: &["k"],
        doc: "Quantizes rows of `k` values to Q8_K, bit-identical to `quantize_row_q8_k_reference`.",
        test: "kquant_kernels::quantize_q8_k_is_bit_exact_with_reference",
        wide_body: None,
        body: quantize_q8_k,
    },
    Family {
        getter: "matmul_q4_k",
        reference_only: true,
        fn_type: &interface::MATMUL_Q4_K,
        getter_doc: "Q4_K matmul for a weight of `n` rows of `k`.",
        key: &["n", "k"],
        doc: "`out[i][j] (+)= bias[j] + Σ_b dw·dx·Σ_c sc·(wq·xq) - dmin·dx·Σ m·bsum` over Q4_K × Q8_K blocks, \
              in panels of `PANEL` weight rows and register tiles of `MR` tokens × `NR` rows.",
        test: "kquant_kernels::matmuls_match_reference_on_awkward_shapes",
        wide_body: None,
        body: |key| crate::kernels::matmul::row_matmul(&Q4K, key),
    },
    Family {
        getter: "matmul_q6_k",
        reference_only: true,
        fn_type: &interface::MATMUL_Q6_K,
        getter_doc: "Q6_K matmul for a weight of `n` rows of `k`.",
        key: &["n", "k"],
        doc: "`out[i][j] (+)= bias[j] + Σ_b d·dx·(Σ_c sc·(wq·xq) - 32·Σ sc·bsum)` over Q6_K × Q8_K blocks, \
              in panels of `PANEL` weight rows and register tiles of `MR` tokens × `NR` rows.",
        test: "kquant_kernels::matmuls_match_reference_on_awkward_shapes",
        wide_body: None,
        body: |key| crate::kernels::matmul::row_matmul(&Q6K, key),
    },
    Family {
        getter: "matmul_q4_kx8",
        reference_only: false,
        fn_type: &interface::MATMUL_Q4_KX8,
        getter_doc: "Q4_K matmul over 8-row-interleaved weights of `n` rows of `k`.",
        key: &["n", "k"],
        doc: "As `matmul_q4_k` over weights repacked in groups of 8 rows: each int8 step yields \
              the 8 rows' partial dots in one vector, each sub-block one integer scale multiply \
              per 8 rows, each super-block two scaled fmas. Panels of `X8_PANEL` groups, register \
              tiles of `X8_MR` tokens × 8 rows.",
        test: "kquant_kernels::matmuls_match_reference_on_awkward_shapes",
        wide_body: Some(|key| kx8_matmul(&Q4KX8, Rows::Sixteen, key)),
        body: |key| kx8_matmul(&Q4KX8, Rows::Eight, key),
    },
    Family {
        getter: "matmul_q6_kx8",
        reference_only: false,
        fn_type: &interface::MATMUL_Q6_KX8,
        getter_doc: "Q6_K matmul over 8-row-interleaved weights of `n` rows of `k`.",
        key: &["n", "k"],
        doc: "As `matmul_q6_k` over weights repacked in groups of 8 rows (see `matmul_q4_kx8`); \
              the offset of 32 comes off each sub-block's integer sum as `32 · bsum`.",
        test: "kquant_kernels::matmuls_match_reference_on_awkward_shapes",
        wide_body: Some(|key| kx8_matmul(&Q6KX8, Rows::Sixteen, key)),
        body: |key| kx8_matmul(&Q6KX8, Rows::Eight, key),
    },
    Family {
        getter: "matmul_q4_1x8",
        reference_only: false,
        fn_type: &interface::MATMUL_Q4_1X8,
        getter_doc: "Q4_1 matmul over 8-row-interleaved weights of `n` rows of `k`.",
        key: &["n", "k"],
        doc: "`out[i][j] (+)= bias[j] + Σ_b dx·(dw·(wq·xq) + mw·Σxq)` over Q4_1 × Q8_0 blocks repacked \
              in groups of 8 rows: each unsigned int8 step yields the 8 rows' partial dots in one \
              vector, each block two scaled fmas per 8 rows; the activation blocks' sums are \
              computed once per token tile. Panels of `X8_PANEL` groups, register tiles of \
              `X8_MR` tokens × 8 rows.",
        test: "kquant_kernels::matmuls_match_reference_on_awkward_shapes",
        wide_body: Some(|key| q4_1x8_matmul(Rows::Sixteen, key)),
        body: |key| q4_1x8_matmul(Rows::Eight, key),
    },
    Family {
        getter: "matmul_q5_0",
        reference_only: true,
        fn_type: &interface::MATMUL_Q5_0,
        getter_doc: "Q5_0 matmul for a weight of `n` rows of `k`.",
        key: &["n", "k"],
        doc: "`out[i][j] (+)= bias[j] + Σ_b dw·dx·((wq - 16)·xq)` over Q5_0 × Q8_0 blocks, \
              in panels of `PANEL` weight rows and register tiles of `MR` tokens × `NR` rows.",
        test: "kquant_kernels::matmuls_match_reference_on_awkward_shapes",
        wide_body: None,
        body: |key| crate::kernels::matmul::row_matmul(&Q5_0, key),
    },
];

fn quantize_q8_k(key: &[Option<usize>]) -> TokenStream {
    let k = bind("k", key[0], quote!(x.len().max(256)));
    quote! {
        #k
        assert!(k % 256 == 0, "quantize_q8_k: row length {k} is not a multiple of 256");
        assert_eq!(x.len(), out.len() * 256, "quantize_q8_k: values vs blocks");
        assert!(x.len() % k == 0, "quantize_q8_k: {} values are not rows of {k}", x.len());
        for (xb, ob) in x.chunks_exact(256).zip(out.iter_mut()) {
            q8k_quant(xb, ob);
            for (s, q) in ob.bsums.iter_mut().zip(ob.qs.chunks_exact(16)) {
                let mut t = 0i16;
                for &v in q {
                    t += i16::from(v);
                }
                *s = t;
            }
        }
    }
}

/// Q4_K weights, Q8_K activations.
pub const Q4K: Format = Format {
    name: "matmul_q4_k",
    qk: 256,
    chunks: 8,
    bytes: 144,
    nr1: 2,
    w_prep: |j| {
        let (wb, sc, mn, dw, dm) = (
            id("wb", j),
            id("sc", j),
            id("mn", j),
            id("dw", j),
            id("dm", j),
        );
        quote! {
            let (#sc, #mn) = q4k_scales(&#wb.scales);
            let #dw = f16_to_f32(#wb.d.to_bits());
            let #dm = f16_to_f32(#wb.dmin.to_bits());
        }
    },
    x_prep: |_| quote!(),
    w_chunk: |j, c| {
        let (wb, sc, c) = (id("wb", j), id("sc", j), lit(c));
        quote!((q4k_w(&#wb.qs, #c), ks_pair(#sc[#c], #sc[#c])))
    },
    x_chunk: |i, c| {
        let (xb, c) = (id("xb", i), lit(c));
        quote!(q8k_x(&#xb.qs, #c))
    },
    dot: |i, j, _| {
        let (w, x) = (id("w", j), id("x", i));
        quote!(ku_dot(#w.0, #x, #w.1))
    },
    finish: |i, j| {
        let (acc, s, xb, dw, dm, mn) = (
            id2("acc", i, j),
            id2("s", i, j),
            id("xb", i),
            id("dw", j),
            id("dm", j),
            id("mn", j),
        );
        quote! {
            #acc = acc_fma(acc_splat(#dw * #xb.d), #s, #acc);
            #acc = acc_fma(acc_splat(-#dm * #xb.d), i16_dot(&#mn, &#xb.bsums), #acc);
        }
    },
};

/// Q6_K weights, Q8_K activations.
pub const Q6K: Format = Format {
    name: "matmul_q6_k",
    qk: 256,
    chunks: 8,
    bytes: 210,
    nr1: 2,
    w_prep: |j| {
        let (wb, mn, dw) = (id("wb", j), id("mn", j), id("dw", j));
        quote! {
            // `q - 32` folded into the integer sum: -32·sc fits int16.
            let mut #mn = [0i16; 16];
            for (m, &s) in #mn.iter_mut().zip(&#wb.scales) {
                *m = -32 * i16::from(s);
            }
            let #dw = f16_to_f32(#wb.d.to_bits());
        }
    },
    x_prep: |_| quote!(),
    w_chunk: |j, c| {
        let wb = id("wb", j);
        let (cl, lo, hi) = (lit(c), lit(2 * c), lit(2 * c + 1));
        quote! {
            (
                q6k_w(&#wb.ql, &#wb.qh, #cl),
                ks_pair(i32::from(#wb.scales[#lo]), i32::from(#wb.scales[#hi])),
            )
        }
    },
    x_chunk: |i, c| {
        let (xb, c) = (id("xb", i), lit(c));
        quote!(q8k_x(&#xb.qs, #c))
    },
    dot: |i, j, _| {
        let (w, x) = (id("w", j), id("x", i));
        quote!(ku_dot(#w.0, #x, #w.1))
    },
    finish: |i, j| {
        let (acc, s, xb, dw, mn) = (
            id2("acc", i, j),
            id2("s", i, j),
            id("xb", i),
            id("dw", j),
            id("mn", j),
        );
        quote! {
            let t = i_add(#s, i16_dot(&#mn, &#xb.bsums));
            #acc = acc_fma(acc_splat(#dw * #xb.d), t, #acc);
        }
    },
};

/// Q5_0 weights, Q8_0 activations.
pub const Q5_0: Format = Format {
    name: "matmul_q5_0",
    bytes: 22,
    nr1: 2,
    // The block unpacks to signed `q - 16`; the rest is Q8_0's block dot.
    w_chunk: |j, _| {
        let wb = id("wb", j);
        quote!(q5_0_w(#wb))
    },
    ..matmul::Q8_0
};

/// How a K-quant format plugs into [`kx8_matmul`]: the statements of one
/// super-block `blk` (a group block) for the tile's tokens `xb0..`, adding
/// to their accumulators `acc0..`.
pub struct Kx8Format {
    /// Name used in assertion messages.
    pub name: &'static str,
    /// Bytes per group block (for prefetching).
    pub bytes: usize,
    /// The super-block's statements for a tile of `mr` tokens, 8 rows
    /// (`blk`) or 16 (`blk0`, `blk1`, on ISAs whose registers hold 16 rows).
    pub block: fn(rows: Rows, mr: usize) -> TokenStream,
}

/// Q4_K groups (`BlockQ4Kx8`), Q8_K activations.
pub const Q4KX8: Kx8Format = Kx8Format {
    name: "matmul_q4_kx8",
    bytes: 1248,
    block: q4k_block,
};

/// Q6_K groups (`BlockQ6Kx8`), Q8_K activations.
pub const Q6KX8: Kx8Format = Kx8Format {
    name: "matmul_q6_kx8",
    bytes: 1680,
    block: q6k_block,
};

/// Per token: `let mut {p}{i} = ri_zero();` (at the tile's width).
fn ri_zeros(rows: Rows, p: &str, mr: usize) -> Vec<TokenStream> {
    let zero = rows.op("ri_zero");
    (0..mr)
        .map(|i| {
            let v = id(p, i);
            quote!(let mut #v = #zero();)
        })
        .collect()
}

/// Per token: `xs{i}`, the 32 activations of chunk `chunk` (an expression).
fn x_chunks(mr: usize, chunk: &TokenStream) -> Vec<TokenStream> {
    (0..mr)
        .map(|i| {
            let (xs, xb) = (id("xs", i), id("xb", i));
            quote! {
                let #xs: &[i8; 32] = #xb.qs[32 * #chunk..32 * #chunk + 32]
                    .try_into()
                    .expect("32 values");
            }
        })
        .collect()
}

/// Per token: `is{i} = ru_dot_acc(is{i}, w, quad of xs{i})`.
fn quad_dots(
    rows: Rows,
    mr: usize,
    w: &proc_macro2::Ident,
    quad: &TokenStream,
) -> Vec<TokenStream> {
    (0..mr)
        .map(|i| {
            let (is, xs) = (id("is", i), id("xs", i));
            rows.dot("ru_dot_acc", &is, quote!(#w), quote!(#xs), quad.clone())
        })
        .collect()
}

/// 8 sub-blocks of 32: per sub-block, 8 quads of unsigned nibbles into an
/// exact int32 sum per row, times the rows' scales; per super-block the
/// mins (`Σ m·bsum` over pairs of sub-blocks) and two scaled fmas.
fn q4k_block(rows: Rows, mr: usize) -> TokenStream {
    let ia = ri_zeros(rows, "ia", mr);
    let is = ri_zeros(rows, "is", mr);
    let xs = x_chunks(mr, &quote!(s));
    let (zero, from_i8, mul_acc, madd_pair, w4, scales, fma) = (
        rows.op("ri_zero"),
        rows.op("ri_from_i8"),
        rows.op("ri_mul_acc"),
        rows.op("ri_madd_pair_acc"),
        rows.op("q4x8_w"),
        rows.op("r8_scales"),
        rows.op("r8_fma_block"),
    );
    let (w0, w1) = (format_ident!("w0"), format_ident!("w1"));
    let quads = (0..4).map(|p| {
        let (pl, q0, q1) = (lit(p), lit(2 * p), lit(2 * p + 1));
        let d0 = quad_dots(rows, mr, &w0, &quote!(#q0));
        let d1 = quad_dots(rows, mr, &w1, &quote!(#q1));
        let qs = rows.blk(quote!(qs[4 * s + #pl]));
        quote! {
            let w0 = #w4(#qs, 0);
            let w1 = #w4(#qs, 1);
            #(#d0)*
            #(#d1)*
        }
    });
    let scale = (0..mr).map(|i| {
        let (ia, is) = (id("ia", i), id("is", i));
        quote!(#ia = #mul_acc(#ia, #is, sc);)
    });
    let mins = rows.blk(quote!(mins[t]));
    let finish = (0..mr).map(|i| {
        let (acc, ia, xb) = (id("acc", i), id("ia", i), id("xb", i));
        quote! {
            let mut im = #zero();
            for t in 0..4 {
                // Sums of 32 activations: |Σ| <= 32 · 127 fits int16.
                let lo = #xb.bsums[4 * t] + #xb.bsums[4 * t + 1];
                let hi = #xb.bsums[4 * t + 2] + #xb.bsums[4 * t + 3];
                let pair = ((u32::from(hi as u16) << 16) | u32::from(lo as u16)) as i32;
                im = #madd_pair(im, #mins, pair);
            }
            #acc = #fma(dw, #xb.d, #ia, #acc);
            #acc = #fma(dm, #xb.d, im, #acc);
        }
    });
    let (sc, d, neg_dmin) = (
        rows.blk(quote!(sc[s])),
        rows.blk(quote!(d)),
        rows.blk(quote!(neg_dmin)),
    );
    quote! {
        #(#ia)*
        for s in 0..8 {
            let sc = #from_i8(#sc);
            #(#xs)*
            #(#is)*
            #(#quads)*
            #(#scale)*
        }
        let dw = #scales(#d);
        let dm = #scales(#neg_dmin);
        #(#finish)*
    }
}

/// 16 sub-blocks of 16: per sub-block, 4 quads of unsigned 6-bit values into
/// an exact int32 sum per row, minus `32 · bsum` (the values' offset), times
/// the rows' scales; one scaled fma per super-block.
fn q6k_block(rows: Rows, mr: usize) -> TokenStream {
    let ia = ri_zeros(rows, "ia", mr);
    let is = ri_zeros(rows, "is", mr);
    let xs = x_chunks(mr, &quote!((s / 2)));
    let (from_i8, mul_acc, sub_splat, w6, scales, fma) = (
        rows.op("ri_from_i8"),
        rows.op("ri_mul_acc"),
        rows.op("ri_sub_splat"),
        rows.op("q6x8_w"),
        rows.op("r8_scales"),
        rows.op("r8_fma_block"),
    );
    let w = format_ident!("w");
    let quads = (0..4).map(|j| {
        let (jl, pair, hi) = (lit(j), lit(j / 2), lit(j % 2));
        let dots = quad_dots(rows, mr, &w, &quote!(4 * (s % 2) + #jl));
        let (ql, qh) = (rows.blk(quote!(ql[2 * s + #pair])), rows.blk(quote!(qh[s])));
        quote! {
            let w = #w6(#ql, #hi, #qh, #jl);
            #(#dots)*
        }
    });
    let scale = (0..mr).map(|i| {
        let (ia, is, xb) = (id("ia", i), id("is", i), id("xb", i));
        quote! {
            #is = #sub_splat(#is, 32 * i32::from(#xb.bsums[s]));
            #ia = #mul_acc(#ia, #is, sc);
        }
    });
    let finish = (0..mr).map(|i| {
        let (acc, ia, xb) = (id("acc", i), id("ia", i), id("xb", i));
        quote!(#acc = #fma(dw, #xb.d, #ia, #acc);)
    });
    let (sc, d) = (rows.blk(quote!(sc[s])), rows.blk(quote!(d)));
    quote! {
        #(#ia)*
        for s in 0..16 {
            let sc = #from_i8(#sc);
            #(#xs)*
            #(#is)*
            #(#quads)*
            #(#scale)*
        }
        let dw = #scales(#d);
        #(#finish)*
    }
}

/// One tile: `mr` tokens from `i0` × the 8 rows of group `g`.
fn kx8_tile(f: &Kx8Format, mr: usize) -> TokenStream {
    let xbs = (0..mr).map(|i| {
        let (xb, xr) = (id("xb", i), id("xr", i));
        quote!(let #xb = &#xr[b];)
    });
    let prefetch = crate::kernels::matmul::x8_prefetch(mr, f.bytes, KX8_PREFETCH);
    let block = (f.block)(Rows::Eight, mr);
    crate::kernels::matmul::x8_tile(
        mr,
        prefetch,
        quote! {
            #(#xbs)*
            #block
        },
    )
}

/// The matmul of an 8-row-group K-quant format, on the driver the Q8_0
/// groups use.
pub fn kx8_matmul(f: &Kx8Format, rows: Rows, key: &[Option<usize>]) -> TokenStream {
    let wide = matmul::Wide::of(rows, |mr| (kx16_tile(f, mr), quote!()));
    matmul::x8_matmul(
        f.name,
        QK_K_VALUES,
        key,
        [&kx8_tile(f, matmul::X8_MR), &kx8_tile(f, 1)],
        [&quote!(), &quote!()],
        wide.as_ref(),
    )
}

/// One 16-row tile of a K-quant format: `mr` tokens × groups `g`, `g + 1`.
fn kx16_tile(f: &Kx8Format, mr: usize) -> TokenStream {
    let xbs = (0..mr).map(|i| {
        let (xb, xr) = (id("xb", i), id("xr", i));
        quote!(let #xb = &#xr[b];)
    });
    let block = (f.block)(Rows::Sixteen, mr);
    matmul::x16_tile(
        mr,
        f.bytes,
        KX8_PREFETCH,
        quote! {
            #(#xbs)*
            #block
        },
    )
}

/// How far ahead (in group blocks) the one-token 8-row-group K-quant
/// matmuls prefetch.
pub const KX8_PREFETCH: usize = 2;

/// Values per K-quant super-block.
const QK_K_VALUES: usize = 256;

/// Bytes of one Q4_1 group block (`BlockQ4_1x8`: 8 scales, 8 minimums, 8 × 16
/// bytes of nibbles).
const Q4_1X8_BYTES: usize = 160;

/// How far ahead (in group blocks) the one-token Q4_1 matmul prefetches
/// while it streams a weight from memory: about the distance of the Q8_0
/// groups' `X8_PREFETCH` in bytes (~6.4 KB).
pub const Q4_1X8_PREFETCH: usize = 40;

/// Before a tile's groups: `xs{i}[b] = dx·Σ xq` of block `b` of each of the
/// `mr` tokens, which every group of the panel reuses (`cap` blocks on the
/// stack; a longer generic row computes them in every group instead).
fn q4_1x8_sums(mr: usize, cap: usize) -> TokenStream {
    let cap = lit(cap);
    let rows = (0..mr).map(|i| {
        let (xs, il) = (id("xs", i), lit(i));
        quote! {
            let #xs: [f32; #cap] = if kb <= #cap {
                let xr = &x[(i0 + #il) * kb..][..kb];
                core::array::from_fn(|b| {
                    if b < kb {
                        f16_to_f32(xr[b].d.to_bits()) * q8_sum(&xr[b].qs) as f32
                    } else {
                        0.0
                    }
                })
            } else {
                [0.0; #cap]
            };
        }
    });
    quote!(#(#rows)*)
}

/// The Q4_1 block statements of a group tile: 4 loads of packed nibbles
/// give the 8 quads (low then high nibbles), each dotted with every token's
/// broadcast quad; then per token `dw·dx` times the dots and `mw` times
/// `dx·Σ xq`.
fn q4_1_block(rows: Rows, mr: usize, cap: usize) -> TokenStream {
    let cap = lit(cap);
    let ia = ri_zeros(rows, "ia", mr);
    let (w4, scales, fma, fma_splat) = (
        rows.op("q4x8_w"),
        rows.op("r8_scales"),
        rows.op("r8_fma_block"),
        rows.op("r8_fma_splat"),
    );
    let quads = (0..4).map(|p| {
        let (pl, q0, q1) = (lit(p), lit(2 * p), lit(2 * p + 1));
        let dots = |w: &str, q: &Literal| -> Vec<TokenStream> {
            let w = format_ident!("{w}");
            (0..mr)
                .map(|i| {
                    let (ia, xr) = (id("ia", i), id("xr", i));
                    rows.dot(
                        "ru_dot_acc",
                        &ia,
                        quote!(#w),
                        quote!(&#xr[b].qs),
                        quote!(#q),
                    )
                })
                .collect()
        };
        let (d0, d1) = (dots("w0", &q0), dots("w1", &q1));
        let qs = rows.blk(quote!(qs[#pl]));
        quote! {
            let w0 = #w4(#qs, 0);
            let w1 = #w4(#qs, 1);
            #(#d0)*
            #(#d1)*
        }
    });
    let finish = (0..mr).map(|i| {
        let (acc, ia, xr, xs) = (id("acc", i), id("ia", i), id("xr", i), id("xs", i));
        quote! {
            let dx = f16_to_f32(#xr[b].d.to_bits());
            let sx = if kb <= #cap { #xs[b] } else { dx * q8_sum(&#xr[b].qs) as f32 };
            #acc = #fma(dw, dx, #ia, #acc);
            #acc = #fma_splat(mw, sx, #acc);
        }
    });
    let (d, m) = (rows.blk(quote!(d)), rows.blk(quote!(m)));
    quote! {
        let dw = #scales(#d);
        let mw = #scales(#m);
        #(#ia)*
        #(#quads)*
        #(#finish)*
    }
}

/// The Q4_1 group tile (8 rows).
fn q4_1x8_tile(mr: usize, cap: usize) -> TokenStream {
    let prefetch = matmul::x8_prefetch(mr, Q4_1X8_BYTES, Q4_1X8_PREFETCH);
    matmul::x8_tile(mr, prefetch, q4_1_block(Rows::Eight, mr, cap))
}

/// The Q4_1 tile over two groups (`blk0`, `blk1`: 16 rows).
fn q4_1x16_tile(mr: usize, cap: usize) -> TokenStream {
    matmul::x16_tile(
        mr,
        Q4_1X8_BYTES,
        Q4_1X8_PREFETCH,
        q4_1_block(Rows::Sixteen, mr, cap),
    )
}

/// The Q4_1 matmul over 8-row groups, on the driver the Q8_0 groups use
/// (16-row tiles for many tokens with `Rows::Sixteen`).
fn q4_1x8_matmul(rows: Rows, key: &[Option<usize>]) -> TokenStream {
    let cap = key[1].map_or(matmul::X8_BIAS_CAP, |k| k / 32);
    let wide = matmul::Wide::of(rows, |mr| (q4_1x16_tile(mr, cap), q4_1x8_sums(mr, cap)));
    let mr = matmul::X8_MR;
    matmul::x8_matmul(
        "matmul_q4_1x8",
        32,
        key,
        [&q4_1x8_tile(mr, cap), &q4_1x8_tile(1, cap)],
        [&q4_1x8_sums(mr, cap), &q4_1x8_sums(1, cap)],
        wide.as_ref(),
    )
}
