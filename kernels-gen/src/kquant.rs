//! K-quant (Q4_K, Q6_K) and Q5_0 matmuls: the ops these formats add to the
//! DSL and their kernel families.
//!
//! The formats only differ in how a weight block turns into int8 operands,
//! so one register-tiled matmul ([`kq_matmul`]) serves all three through a
//! [`Format`] that says how to unpack a block and combine its scales:
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
//! Those kernels read the file's row layout. The models run Q4_K and Q6_K
//! on weights repacked at open into groups of 8 rows instead
//! ([`kx8_matmul`], the Q8_0 groups' driver and tiles): one unsigned int8
//! step (`ru_dot_acc`, a single `vpdpbusd` on AVX-512 VNNI) gives 8 rows'
//! partial dots for 4 columns, the nibbles are unpacked once per tile of
//! tokens rather than once per 3, and each sub-block costs one integer
//! multiply by the 8 rows' scales. Same integer sums, so the same results
//! as the row kernels up to float rounding; 2-3x their speed on many tokens.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use crate::kernels::Family;
use crate::ops::OpDef;

/// Extra abstract types each lowering defines (see [`Lowering::kquant_prelude`](crate::lower::Lowering::kquant_prelude)):
///
/// | type | meaning |
/// |------|---------|
/// | `KW` | 32 unsigned weight quants (`0..=63`) of one chunk, prepared for `ku_dot` |
/// | `KS` | the scales of a chunk's two 16-value halves, prepared for `ku_dot` |
pub const OPS: &[OpDef] = &[
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

/// The families of this module, in `KernelSet` order.
pub const FAMILIES: &[Family] = &[
    Family {
        getter: "quantize_q8_k",
        fn_type: "QuantizeQ8KFn",
        key: &["k"],
        params: "x: &[f32], out: &mut [BlockQ8K]",
        doc: "Quantizes rows of `k` values to Q8_K, bit-identical to `quantize_row_q8_k_reference`.",
        body: quantize_q8_k,
    },
    Family {
        getter: "matmul_q4_k",
        fn_type: "MatmulQ4KFn",
        key: &["n", "k"],
        params: "w: &[BlockQ4K], x: &[BlockQ8K], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool",
        doc: "`out[i][j] (+)= bias[j] + Σ_b dw·dx·Σ_c sc·(wq·xq) - dmin·dx·Σ m·bsum` over Q4_K × Q8_K blocks, \
              in panels of `PANEL` weight rows and register tiles of `MR` tokens × `NR` rows.",
        body: |key| kq_matmul(&Q4K, key),
    },
    Family {
        getter: "matmul_q6_k",
        fn_type: "MatmulQ6KFn",
        key: &["n", "k"],
        params: "w: &[BlockQ6K], x: &[BlockQ8K], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool",
        doc: "`out[i][j] (+)= bias[j] + Σ_b d·dx·(Σ_c sc·(wq·xq) - 32·Σ sc·bsum)` over Q6_K × Q8_K blocks, \
              in panels of `PANEL` weight rows and register tiles of `MR` tokens × `NR` rows.",
        body: |key| kq_matmul(&Q6K, key),
    },
    Family {
        getter: "matmul_q4_kx8",
        fn_type: "MatmulQ4Kx8Fn",
        key: &["n", "k"],
        params: "w: &[BlockQ4Kx8], x: &[BlockQ8K], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool",
        doc: "As `matmul_q4_k` over weights repacked in groups of 8 rows: each int8 step yields \
              the 8 rows' partial dots in one vector, each sub-block one integer scale multiply \
              per 8 rows, each super-block two scaled fmas. Panels of `X8_PANEL` groups, register \
              tiles of `X8_MR` tokens × 8 rows.",
        body: |key| kx8_matmul(&Q4KX8, key),
    },
    Family {
        getter: "matmul_q6_kx8",
        fn_type: "MatmulQ6Kx8Fn",
        key: &["n", "k"],
        params: "w: &[BlockQ6Kx8], x: &[BlockQ8K], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool",
        doc: "As `matmul_q6_k` over weights repacked in groups of 8 rows (see `matmul_q4_kx8`); \
              the offset of 32 comes off each sub-block's integer sum as `32 · bsum`.",
        body: |key| kx8_matmul(&Q6KX8, key),
    },
    Family {
        getter: "matmul_q5_0",
        fn_type: "MatmulQ5_0Fn",
        key: &["n", "k"],
        params: "w: &[BlockQ5_0], x: &[BlockQ8_0], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool",
        doc: "`out[i][j] (+)= bias[j] + Σ_b dw·dx·((wq - 16)·xq)` over Q5_0 × Q8_0 blocks, \
              in panels of `PANEL` weight rows and register tiles of `MR` tokens × `NR` rows.",
        body: |key| kq_matmul(&Q5_0, key),
    },
];

fn bind(name: &str, v: Option<usize>, runtime: TokenStream) -> TokenStream {
    let id = format_ident!("{name}");
    match v {
        Some(v) => {
            let v = Literal::usize_unsuffixed(v);
            quote!(let #id: usize = #v;)
        }
        None => quote!(let #id: usize = #runtime;),
    }
}

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

/// Register tile of the K-quant matmuls: `MR` tokens × `NR` weight rows for
/// many tokens, `1 × NR1` for one token, weight panels of `PANEL` rows.
pub const MR: usize = 3;
/// See [`MR`].
pub const NR: usize = 2;
/// See [`MR`].
pub const NR1: usize = 2;
/// See [`MR`].
pub const PANEL: usize = 64;
/// How far ahead (in weight rows) the one-token matmul prefetches.
pub const PREFETCH_ROWS: usize = 8;

/// How one weight format plugs into [`kq_matmul`]. Each hook returns tokens
/// for weight row `j` / token `i` of the tile; the block of row `j` is bound
/// as `wb{j}`, the activation block of token `i` as `xb{i}`.
pub struct Format {
    /// Name used in assertion messages.
    pub name: &'static str,
    /// Values per block.
    pub qk: usize,
    /// 32-value chunks per block.
    pub chunks: usize,
    /// Bytes per weight block (for prefetching).
    pub bytes: usize,
    /// Statements computing per-weight-block values (scales) for row `j`.
    pub w_prep: fn(j: usize) -> TokenStream,
    /// Statements computing per-activation-block values for token `i`.
    pub x_prep: fn(i: usize) -> TokenStream,
    /// The weight operand of chunk `c` of row `j`.
    pub w_chunk: fn(j: usize, c: usize) -> TokenStream,
    /// The activation operand of chunk `c` of token `i`.
    pub x_chunk: fn(i: usize, c: usize) -> TokenStream,
    /// The int32 lanes of chunk `c` (weights `w{j}`, activations `x{i}`).
    pub dot: fn(i: usize, j: usize, c: usize) -> TokenStream,
    /// Statements folding the block's integer sum `s{i}_{j}` into `acc{i}_{j}`.
    pub finish: fn(i: usize, j: usize) -> TokenStream,
}

fn id(p: &str, a: usize) -> proc_macro2::Ident {
    format_ident!("{p}{a}")
}

fn id2(p: &str, a: usize, b: usize) -> proc_macro2::Ident {
    format_ident!("{p}{a}_{b}")
}

fn lit(v: usize) -> Literal {
    Literal::usize_unsuffixed(v)
}

/// Q4_K weights, Q8_K activations.
pub const Q4K: Format = Format {
    name: "matmul_q4_k",
    qk: 256,
    chunks: 8,
    bytes: 144,
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
    qk: 32,
    chunks: 1,
    bytes: 22,
    w_prep: |j| {
        let (wb, dw) = (id("wb", j), id("dw", j));
        quote!(let #dw = acc_splat_f16(#wb.d.to_bits());)
    },
    x_prep: |i| {
        let (xb, dx) = (id("xb", i), id("dx", i));
        quote!(let #dx = acc_splat_f16(#xb.d.to_bits());)
    },
    w_chunk: |j, _| {
        let wb = id("wb", j);
        quote!(q5_0_w(#wb))
    },
    x_chunk: |i, _| {
        let xb = id("xb", i);
        quote!(q8_load_x(&#xb.qs))
    },
    dot: |i, j, _| {
        let (w, x) = (id("w", j), id("x", i));
        quote!(q8_dot(#w, #x))
    },
    finish: |i, j| {
        let (acc, s, dw, dx) = (id2("acc", i, j), id2("s", i, j), id("dw", j), id("dx", i));
        quote!(#acc = acc_fma(acc_mul(#dw, #dx), #s, #acc);)
    },
};

/// One `mr × nr` register tile at token `i0`, weight row `j0`.
fn kq_tile(f: &Format, mr: usize, nr: usize) -> TokenStream {
    let wrows = (0..nr).map(|j| {
        let (wr, jl) = (id("wr", j), lit(j));
        quote!(let #wr = &w[(j0 + #jl) * kb..][..kb];)
    });
    let xrows = (0..mr).map(|i| {
        let (xr, il) = (id("xr", i), lit(i));
        quote!(let #xr = &x[(i0 + #il) * kb..][..kb];)
    });
    let mut accs = Vec::new();
    let mut sums = Vec::new();
    let mut finish = Vec::new();
    let mut stores = Vec::new();
    for i in 0..mr {
        let (row, il) = (id("row", i), lit(i));
        let mut per_j = Vec::new();
        for j in 0..nr {
            let (acc, s, jl) = (id2("acc", i, j), id2("s", i, j), lit(j));
            accs.push(quote!(let mut #acc = acc_zero();));
            sums.push(quote!(let mut #s = i_zero();));
            finish.push((f.finish)(i, j));
            per_j.push(quote! {
                let mut v = acc_hsum(#acc);
                if let Some(bias) = bias {
                    v += bias[j0 + #jl];
                }
                #row[j0 + #jl] = if accumulate { #row[j0 + #jl] + v } else { v };
            });
        }
        stores.push(quote! {
            let #row = out.row(i0 + #il);
            #(#per_j)*
        });
    }
    let wprep = (0..nr).map(|j| {
        let (wr, wb) = (id("wr", j), id("wb", j));
        let prep = (f.w_prep)(j);
        quote!(let #wb = &#wr[b]; #prep)
    });
    // One token streams the weights from memory: prefetch every cache line
    // of the same block `PREFETCH_ROWS` rows ahead (never faults, even past
    // the end of the weight).
    let prefetch = (0..nr).filter(|_| mr == 1).map(|j| {
        let ahead = lit(PREFETCH_ROWS + j);
        crate::kernels::prefetch_lines(
            quote!(w.as_ptr().wrapping_add((j0 + #ahead) * kb + b)),
            f.bytes,
        )
    });
    let xprep = (0..mr).map(|i| {
        let (xr, xb) = (id("xr", i), id("xb", i));
        let prep = (f.x_prep)(i);
        quote!(let #xb = &#xr[b]; #prep)
    });
    let chunks = (0..f.chunks).map(|c| {
        let ws = (0..nr).map(|j| {
            let (w, e) = (id("w", j), (f.w_chunk)(j, c));
            quote!(let #w = #e;)
        });
        let xs = (0..mr).map(|i| {
            let (x, e) = (id("x", i), (f.x_chunk)(i, c));
            quote!(let #x = #e;)
        });
        let dots = (0..mr).flat_map(|i| {
            (0..nr).map(move |j| {
                let (s, d) = (id2("s", i, j), (f.dot)(i, j, c));
                quote!(#s = i_add(#s, #d);)
            })
        });
        quote! {
            #(#ws)*
            #(#xs)*
            #(#dots)*
        }
    });
    quote! {
        {
            #(#wrows)*
            #(#xrows)*
            #(#accs)*
            for b in 0..kb {
                #(#prefetch)*
                #(#wprep)*
                #(#xprep)*
                #(#sums)*
                #(#chunks)*
                #(#finish)*
            }
            #(#stores)*
        }
    }
}

/// Walks weight rows `[jp, je)` in tiles of `nr` with a 1-row tail unless
/// `exact` says the range is a multiple of `nr`.
fn kq_cols(f: &Format, mr: usize, nr: usize, exact: bool) -> TokenStream {
    let main = kq_tile(f, mr, nr);
    let nrl = lit(nr);
    let tail = if exact || nr == 1 {
        quote!()
    } else {
        let one = kq_tile(f, mr, 1);
        quote! {
            while j0 < je {
                #one
                j0 += 1;
            }
        }
    };
    quote! {
        let mut j0 = jp;
        while j0 + #nrl <= je {
            #main
            j0 += #nrl;
        }
        #tail
    }
}

/// The matmul of format `f`: panels of `PANEL` weight rows; within a panel,
/// `MR × NR` tiles over the tokens (`1 × NR1` for a single token).
pub fn kq_matmul(f: &Format, key: &[Option<usize>]) -> TokenStream {
    let name = f.name;
    let qk = lit(f.qk);
    // Threads split a matmul by column blocks (multiples of
    // `MATMUL_COL_ALIGN`), so `n` stays the block's width at run time and
    // only its divisibility by the panel is specialized.
    let n = bind("n", None, quote!(out.cols()));
    let kb = bind(
        "kb",
        key[1].map(|k| k / f.qk),
        quote!(if m == 0 { 0 } else { x.len() / m }),
    );
    let exact = key[0].is_some_and(|n| n.is_multiple_of(PANEL));
    let je = if exact {
        quote!(let je = jp + PANEL;)
    } else {
        quote!(let je = (jp + PANEL).min(n);)
    };
    let vec = kq_cols(f, 1, NR1, exact && PANEL.is_multiple_of(NR1));
    let many = kq_cols(f, MR, NR, exact && PANEL.is_multiple_of(NR));
    let rest = kq_cols(f, 1, NR, exact && PANEL.is_multiple_of(NR));
    let mut checks = Vec::new();
    if let Some(k) = key[1] {
        let k = lit(k);
        let msg = format!("{name}: wrong k");
        checks.push(quote!(assert_eq!(k, #k, #msg);));
    }
    if exact {
        let msg = format!("{name}: {{n}} columns is not a multiple of the panel");
        checks.push(quote!(assert!(n % PANEL == 0, #msg);));
    }
    let (m_cols, m_x, m_w, m_bias) = (
        format!("{name}: output columns vs n"),
        format!("{name}: activations are not {{m}} rows of {{k}}"),
        format!("{name}: weight is not {{n}} rows of {{k}}"),
        format!("{name}: bias length"),
    );
    let (panel, mr) = (lit(PANEL), lit(MR));
    quote! {
        const PANEL: usize = #panel;
        let mut out = out;
        let m = out.rows();
        #n
        #kb
        let k = kb * #qk;
        #(#checks)*
        assert_eq!(out.cols(), n, #m_cols);
        assert_eq!(x.len(), m * kb, #m_x);
        assert_eq!(w.len(), n * kb, #m_w);
        if let Some(bias) = bias {
            assert_eq!(bias.len(), n, #m_bias);
        }
        let mut jp = 0;
        while jp < n {
            #je
            if m == 1 {
                let i0 = 0;
                #vec
            } else {
                let mut i0 = 0;
                while i0 + #mr <= m {
                    #many
                    i0 += #mr;
                }
                while i0 < m {
                    #rest
                    i0 += 1;
                }
            }
            jp = je;
        }
    }
}

/// How a K-quant format plugs into [`kx8_matmul`]: the statements of one
/// super-block `blk` (a group block) for the tile's tokens `xb0..`, adding
/// to their accumulators `acc0..`.
pub struct Kx8Format {
    /// Name used in assertion messages.
    pub name: &'static str,
    /// Bytes per group block (for prefetching).
    pub bytes: usize,
    /// The super-block's statements for a tile of `mr` tokens.
    pub block: fn(mr: usize) -> TokenStream,
}

/// Q4_K groups (`BlockQ4Kx8`), Q8_K activations.
pub const Q4KX8: Kx8Format = Kx8Format {
    name: "matmul_q4_kx8",
    bytes: 1248,
    block: q4kx8_block,
};

/// Q6_K groups (`BlockQ6Kx8`), Q8_K activations.
pub const Q6KX8: Kx8Format = Kx8Format {
    name: "matmul_q6_kx8",
    bytes: 1680,
    block: q6kx8_block,
};

/// Per token: `let mut {p}{i} = ri_zero();`.
fn ri_zeros(p: &str, mr: usize) -> Vec<TokenStream> {
    (0..mr)
        .map(|i| {
            let v = id(p, i);
            quote!(let mut #v = ri_zero();)
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

/// Per token: `is{i} = ru_dot_acc(is{i}, w, q8r_load_x(xs{i}, quad))`.
fn quad_dots(mr: usize, w: &proc_macro2::Ident, quad: &TokenStream) -> Vec<TokenStream> {
    (0..mr)
        .map(|i| {
            let (is, xs) = (id("is", i), id("xs", i));
            quote!(#is = ru_dot_acc(#is, #w, q8r_load_x(#xs, #quad));)
        })
        .collect()
}

/// 8 sub-blocks of 32: per sub-block, 8 quads of unsigned nibbles into an
/// exact int32 sum per row, times the rows' scales; per super-block the
/// mins (`Σ m·bsum` over pairs of sub-blocks) and two scaled fmas.
fn q4kx8_block(mr: usize) -> TokenStream {
    let ia = ri_zeros("ia", mr);
    let is = ri_zeros("is", mr);
    let xs = x_chunks(mr, &quote!(s));
    let (w0, w1) = (format_ident!("w0"), format_ident!("w1"));
    let quads = (0..4).map(|p| {
        let (pl, q0, q1) = (lit(p), lit(2 * p), lit(2 * p + 1));
        let d0 = quad_dots(mr, &w0, &quote!(#q0));
        let d1 = quad_dots(mr, &w1, &quote!(#q1));
        quote! {
            let w0 = q4x8_w(&blk.qs[4 * s + #pl], 0);
            let w1 = q4x8_w(&blk.qs[4 * s + #pl], 1);
            #(#d0)*
            #(#d1)*
        }
    });
    let scale = (0..mr).map(|i| {
        let (ia, is) = (id("ia", i), id("is", i));
        quote!(#ia = ri_mul_acc(#ia, #is, sc);)
    });
    let finish = (0..mr).map(|i| {
        let (acc, ia, xb) = (id("acc", i), id("ia", i), id("xb", i));
        quote! {
            let mut im = ri_zero();
            for t in 0..4 {
                // Sums of 32 activations: |Σ| <= 32 · 127 fits int16.
                let lo = #xb.bsums[4 * t] + #xb.bsums[4 * t + 1];
                let hi = #xb.bsums[4 * t + 2] + #xb.bsums[4 * t + 3];
                let pair = ((u32::from(hi as u16) << 16) | u32::from(lo as u16)) as i32;
                im = ri_madd_pair_acc(im, &blk.mins[t], pair);
            }
            #acc = r8_fma_block(dw, #xb.d, #ia, #acc);
            #acc = r8_fma_block(dm, #xb.d, im, #acc);
        }
    });
    quote! {
        #(#ia)*
        for s in 0..8 {
            let sc = ri_from_i8(&blk.sc[s]);
            #(#xs)*
            #(#is)*
            #(#quads)*
            #(#scale)*
        }
        let dw = r8_scales(&blk.d);
        let dm = r8_scales(&blk.neg_dmin);
        #(#finish)*
    }
}

/// 16 sub-blocks of 16: per sub-block, 4 quads of unsigned 6-bit values into
/// an exact int32 sum per row, minus `32 · bsum` (the values' offset), times
/// the rows' scales; one scaled fma per super-block.
fn q6kx8_block(mr: usize) -> TokenStream {
    let ia = ri_zeros("ia", mr);
    let is = ri_zeros("is", mr);
    let xs = x_chunks(mr, &quote!((s / 2)));
    let w = format_ident!("w");
    let quads = (0..4).map(|j| {
        let (jl, pair, hi) = (lit(j), lit(j / 2), lit(j % 2));
        let dots = quad_dots(mr, &w, &quote!(4 * (s % 2) + #jl));
        quote! {
            let w = q6x8_w(&blk.ql[2 * s + #pair], #hi, &blk.qh[s], #jl);
            #(#dots)*
        }
    });
    let scale = (0..mr).map(|i| {
        let (ia, is, xb) = (id("ia", i), id("is", i), id("xb", i));
        quote! {
            #is = ri_sub_splat(#is, 32 * i32::from(#xb.bsums[s]));
            #ia = ri_mul_acc(#ia, #is, sc);
        }
    });
    let finish = (0..mr).map(|i| {
        let (acc, ia, xb) = (id("acc", i), id("ia", i), id("xb", i));
        quote!(#acc = r8_fma_block(dw, #xb.d, #ia, #acc);)
    });
    quote! {
        #(#ia)*
        for s in 0..16 {
            let sc = ri_from_i8(&blk.sc[s]);
            #(#xs)*
            #(#is)*
            #(#quads)*
            #(#scale)*
        }
        let dw = r8_scales(&blk.d);
        #(#finish)*
    }
}

/// One tile: `mr` tokens from `i0` × the 8 rows of group `g`.
fn kx8_tile(f: &Kx8Format, mr: usize) -> TokenStream {
    let xbs = (0..mr).map(|i| {
        let (xb, xr) = (id("xb", i), id("xr", i));
        quote!(let #xb = &#xr[b];)
    });
    let prefetch = crate::kernels::x8_prefetch(mr, f.bytes, KX8_PREFETCH);
    let block = (f.block)(mr);
    crate::kernels::x8_tile(
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
pub fn kx8_matmul(f: &Kx8Format, key: &[Option<usize>]) -> TokenStream {
    crate::kernels::x8_matmul(
        f.name,
        QK_K_VALUES,
        key,
        [&kx8_tile(f, crate::kernels::X8_MR), &kx8_tile(f, 1)],
        [&quote!(), &quote!()],
    )
}

/// How far ahead (in group blocks) the one-token 8-row-group K-quant
/// matmuls prefetch.
pub const KX8_PREFETCH: usize = 2;

/// Values per K-quant super-block.
const QK_K_VALUES: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_signatures_parse_and_names_are_new() {
        for op in OPS {
            syn::parse_str::<syn::Signature>(op.sig).expect(op.sig);
            assert!(
                !crate::ops::OPS.iter().any(|o| o.name() == op.name()),
                "{} is already an op",
                op.name()
            );
        }
    }
}
