//! The Q8_0 matmuls (the file's row layout and the 8-row groups whose
//! driver the K-quant groups share), the f32 matmul and the int8 probes.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::bind;

/// Register tile of the row-layout matmuls: `MR` tokens × `NR` weight rows
/// for many tokens (`1 ×` [`Format::nr1`] for one token), weight panels of
/// `PANEL` rows.
pub const MR: usize = 3;
/// See [`MR`].
pub const NR: usize = 2;
/// See [`MR`].
pub const PANEL: usize = 64;
/// How far ahead (in weight rows) the one-token matmul prefetches.
pub const PREFETCH_ROWS: usize = 8;

/// How one weight format plugs into [`row_matmul`]. Each hook returns tokens
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
    /// Weight rows per register tile for one token (`1 × nr1`).
    pub nr1: usize,
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

pub(crate) fn id(p: &str, a: usize) -> proc_macro2::Ident {
    format_ident!("{p}{a}")
}

pub(crate) fn id2(p: &str, a: usize, b: usize) -> proc_macro2::Ident {
    format_ident!("{p}{a}_{b}")
}

pub(crate) fn lit(v: usize) -> Literal {
    Literal::usize_unsuffixed(v)
}

/// `dw_j`: weight block `j`'s f16 scale in every lane (the Q8_0 layout's
/// `d`, shared by the 32-value formats).
fn w_block_scale(j: usize) -> TokenStream {
    let (wb, dw) = (id("wb", j), id("dw", j));
    quote!(let #dw = acc_splat_f16(#wb.d.to_bits());)
}

/// `dx_i`: activation block `i`'s f16 scale in every lane (Q8_0).
fn x_block_scale(i: usize) -> TokenStream {
    let (xb, dx) = (id("xb", i), id("dx", i));
    quote!(let #dx = acc_splat_f16(#xb.d.to_bits());)
}

/// Q8_0 weights, Q8_0 activations: one 32-value block, one `q8_dot`.
pub const Q8_0: Format = Format {
    name: "matmul_q8_0",
    qk: 32,
    chunks: 1,
    bytes: 34,
    nr1: 4,
    w_prep: w_block_scale,
    x_prep: x_block_scale,
    w_chunk: |j, _| {
        let wb = id("wb", j);
        quote!(q8_load_w(&#wb.qs))
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

pub(super) fn matmul_q8_0(key: &[Option<usize>]) -> TokenStream {
    row_matmul(&Q8_0, key)
}

/// One `mr × nr` register tile at token `i0`, weight row `j0`.
fn row_tile(f: &Format, mr: usize, nr: usize) -> TokenStream {
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
        prefetch_lines(
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
fn row_cols(f: &Format, mr: usize, nr: usize, exact: bool) -> TokenStream {
    let main = row_tile(f, mr, nr);
    let nrl = lit(nr);
    let tail = if exact || nr == 1 {
        quote!()
    } else {
        let one = row_tile(f, mr, 1);
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

/// The row-layout matmul of format `f` (Q8_0, Q4_K, Q6_K, Q5_0): panels of
/// `PANEL` weight rows; within a panel, `MR × NR` tiles over the tokens
/// (`1 × nr1` for a single token).
pub fn row_matmul(f: &Format, key: &[Option<usize>]) -> TokenStream {
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
    let vec = row_cols(f, 1, f.nr1, exact && PANEL.is_multiple_of(f.nr1));
    let many = row_cols(f, MR, NR, exact && PANEL.is_multiple_of(NR));
    let rest = row_cols(f, 1, NR, exact && PANEL.is_multiple_of(NR));
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

/// Tokens per register tile of the 8-row-group matmul.
pub const X8_MR: usize = 4;
/// Row groups per panel of the 8-row-group matmul (64 rows, as `PANEL`).
pub const X8_PANEL: usize = 8;
/// How far ahead (in group blocks, ~6.5 KB) the Q8_0 8-row-group matmul
/// prefetches while it streams a weight from memory. The hardware prefetcher
/// alone kept one core at ~70% of its read bandwidth; 4 blocks ahead (one
/// line each) did not help, every line 16-32 blocks ahead did (EmbeddingGemma
/// "Hello world", 1 thread, Intel Xeon: 14.3 -> 6.6-10 ms).
pub const X8_PREFETCH: usize = 24;

/// Bytes of one Q8_0 group block (`BlockQ8_0x8`: 8 f16 scales, 8 × 32 values).
const Q8_0X8_BYTES: usize = 8 * 2 + 8 * 32;

/// Prefetches every cache line of the group block `ahead` blocks after block
/// `b` of `wg` (`bytes` per block). Only the first tile of a panel streams
/// the panel's weights from memory (the tiles after it find them in L2),
/// so a tile of several tokens prefetches only when `i0 == 0`. A prefetch
/// never faults, even past the end of the weight.
pub(crate) fn x8_prefetch(mr: usize, bytes: usize, ahead: usize) -> TokenStream {
    group_prefetch(Rows::Eight, mr, bytes, ahead)
}

/// `x8_prefetch` for the group blocks of a tile `rows` wide (`wg`, or
/// `wg0` and `wg1`).
fn group_prefetch(rows: Rows, mr: usize, bytes: usize, ahead: usize) -> TokenStream {
    let ahead = Literal::usize_unsuffixed(ahead);
    let lines = rows
        .groups()
        .into_iter()
        .map(|wg| prefetch_lines(quote!(#wg.as_ptr().wrapping_add(b + #ahead)), bytes));
    if mr == 1 {
        quote!(#(#lines)*)
    } else {
        quote!(if i0 == 0 { #(#lines)* })
    }
}

/// Prefetches every cache line of the `bytes`-long block at the pointer
/// `block` (an expression of the kernel's).
pub(crate) fn prefetch_lines(block: TokenStream, bytes: usize) -> TokenStream {
    let lines = (0..bytes.div_ceil(64)).map(|t| {
        let off = Literal::usize_unsuffixed(64 * t);
        quote! {
            prefetch(#block.cast::<u8>().wrapping_add(#off).cast());
        }
    });
    quote!(#(#lines)*)
}

/// One tile of the 8-row-group matmuls: `mr` tokens from `i0` × the 8
/// rows of group `g`. Per block `b`, `prefetch` then `block` (with the group
/// block bound as `blk`, token `i`'s activation row as `xr{i}`) add to the
/// accumulators `acc{i}`, which are stored at the end.
pub(crate) fn x8_tile(mr: usize, prefetch: TokenStream, block: TokenStream) -> TokenStream {
    group_tile(Rows::Eight, mr, prefetch, block)
}

/// `x8_tile` for a tile `rows` wide: group `g` (`wg`, block `blk`), or
/// groups `g` and `g + 1` (`wg0`, `wg1`, blocks `blk0`, `blk1`) with `R16`
/// accumulators.
fn group_tile(rows: Rows, mr: usize, prefetch: TokenStream, block: TokenStream) -> TokenStream {
    let (zero, store) = (rows.op("r8_zero"), rows.op("r8_store_row"));
    let xrows = (0..mr).map(|i| {
        let (xr, il) = (id("xr", i), lit(i));
        quote!(let #xr = &x[(i0 + #il) * kb..][..kb];)
    });
    let accs = (0..mr).map(|i| {
        let acc = id("acc", i);
        quote!(let mut #acc = #zero();)
    });
    let stores = (0..mr).map(|i| {
        let (acc, il) = (id("acc", i), lit(i));
        quote!(#store(out.row(i0 + #il), g * 8, #acc, bias, accumulate);)
    });
    let (groups, blocks) = match rows {
        Rows::Eight => (
            quote!(let wg = &w[g * kb..][..kb];),
            quote!(let blk = &wg[b];),
        ),
        Rows::Sixteen => (
            quote! {
                let wg0 = &w[g * kb..][..kb];
                let wg1 = &w[(g + 1) * kb..][..kb];
            },
            quote!(let (blk0, blk1) = (&wg0[b], &wg1[b]);),
        ),
    };
    quote! {
        {
            #groups
            #(#xrows)*
            #(#accs)*
            for b in 0..kb {
                #prefetch
                #blocks
                #block
            }
            #(#stores)*
        }
    }
}

/// The width of a group tile: 8 rows of the group block `blk`, or 16 rows
/// of two neighbouring groups' blocks `blk0` and `blk1` (ISAs whose
/// registers hold 16 rows). The tiles' block statements are written once
/// against it.
#[derive(Clone, Copy)]
pub enum Rows {
    /// One group: `blk`, the 8-row ops.
    Eight,
    /// Two groups: `blk0` and `blk1`, the 16-row ops.
    Sixteen,
}

/// The 8-row ops that have a 16-row form, and its name.
const WIDE_OPS: &[(&str, &str)] = &[
    ("r8_zero", "r16_zero"),
    ("r8_store_row", "r16_store_row"),
    ("ri_zero", "ri16_zero"),
    ("ri_from_i8", "ri16_from_i8"),
    ("ri_mul_acc", "ri16_mul_acc"),
    ("ri_sub_splat", "ri16_sub_splat"),
    ("ri_madd_pair_acc", "ri16_madd_pair_acc"),
    ("r8_scales", "r16_scales"),
    ("r8_fma_block", "r16_fma_block"),
    ("r8_fma_splat", "r16_fma_splat"),
    ("q4x8_w", "q4x16_w"),
    ("q6x8_w", "q6x16_w"),
    ("q8r_load_w", "q8r16_load_w"),
    ("q8r_init", "q8r16_init"),
    ("q8r_dot_acc", "q8r16_dot_acc"),
    ("ru_dot_acc", "ru16_dot_acc"),
];

impl Rows {
    /// The 8-row op `name` at this width.
    pub(crate) fn op(self, name: &str) -> proc_macro2::Ident {
        match self {
            Rows::Eight => format_ident!("{name}"),
            Rows::Sixteen => {
                let (_, wide) = WIDE_OPS
                    .iter()
                    .find(|(op, _)| *op == name)
                    .unwrap_or_else(|| panic!("`{name}` has no 16-row form"));
                format_ident!("{wide}")
            }
        }
    }

    /// The tile's group rows of the weight: `wg`, or `wg0` and `wg1`.
    fn groups(self) -> Vec<TokenStream> {
        match self {
            Rows::Eight => vec![quote!(wg)],
            Rows::Sixteen => vec![quote!(wg0), quote!(wg1)],
        }
    }

    /// Field `field` of the group block, as operands: `&blk.field`, or
    /// `&blk0.field, &blk1.field`.
    pub(crate) fn blk(self, field: TokenStream) -> TokenStream {
        match self {
            Rows::Eight => quote!(&blk.#field),
            Rows::Sixteen => quote!(&blk0.#field, &blk1.#field),
        }
    }

    /// `acc = dot(acc, w, quad)` with the 8-row dot op `dot` (`q8r_dot_acc`,
    /// `ru_dot_acc`) and activation values `4·quad ..` of `xs` (a
    /// `&[i8; 32]`): loaded and broadcast for 8 rows, a broadcast operand
    /// of the 16-row dot.
    pub(crate) fn dot(
        self,
        dot: &str,
        acc: &proc_macro2::Ident,
        w: TokenStream,
        xs: TokenStream,
        quad: TokenStream,
    ) -> TokenStream {
        let op = self.op(dot);
        match self {
            Rows::Eight => quote!(#acc = #op(#acc, #w, q8r_load_x(#xs, #quad));),
            Rows::Sixteen => quote!(#acc = #op(#acc, #w, #xs, #quad);),
        }
    }
}

/// The Q8_0 block statements of a group tile: 8 column quads of int8 dots
/// per token (each weight quad loaded once for every token of the tile),
/// one scaled fma per token.
fn q8_block(rows: Rows, mr: usize, cap: usize) -> TokenStream {
    let cap = lit(cap);
    let (init, zero, load_w, scales, fma) = (
        rows.op("q8r_init"),
        rows.op("ri_zero"),
        rows.op("q8r_load_w"),
        rows.op("r8_scales"),
        rows.op("r8_fma_block"),
    );
    let iaccs = (0..mr).map(|i| {
        let (ia, xb, xr) = (id("ia", i), id("xb", i), id("xr", i));
        quote! {
            let mut #ia = if !q8r_offset() {
                #zero()
            } else if kb <= #cap {
                #init(#xb[b])
            } else {
                #init(q8r_x_bias(&#xr[b].qs))
            };
        }
    });
    let dots = (0..mr).map(|i| {
        let (ia, xr, px) = (id("ia", i), id("xr", i), id("px", i));
        match rows {
            // Prepared once per tile where the lowering prepares blocks.
            Rows::Eight => quote! {
                #ia = q8r_dot_acc(#ia, wq, if q8r_prepared() && kb <= #cap {
                    q8r_load_px(&#px[b], q)
                } else {
                    q8r_load_x(&#xr[b].qs, q)
                });
            },
            Rows::Sixteen => rows.dot(
                "q8r_dot_acc",
                &ia,
                quote!(wq),
                quote!(&#xr[b].qs),
                quote!(q),
            ),
        }
    });
    let scale = (0..mr).map(|i| {
        let (acc, ia, xr, dx) = (id("acc", i), id("ia", i), id("xr", i), id("dx", i));
        quote! {
            let d = if kb <= #cap { #dx[b] } else { f16_to_f32(#xr[b].d.to_bits()) };
            #acc = #fma(dw, d, #ia, #acc);
        }
    });
    let (d, qs) = (rows.blk(quote!(d)), rows.blk(quote!(qs[q])));
    quote! {
        let dw = #scales(#d);
        #(#iaccs)*
        for q in 0..8 {
            let wq = #load_w(#qs);
            #(#dots)*
        }
        #(#scale)*
    }
}

/// The Q8_0 group tile (8 rows).
fn q8x8_tile(mr: usize, cap: usize) -> TokenStream {
    let prefetch = x8_prefetch(mr, Q8_0X8_BYTES, X8_PREFETCH);
    x8_tile(mr, prefetch, q8_block(Rows::Eight, mr, cap))
}

/// The Q8_0 group matmul; with `Rows::Sixteen` (ISAs whose registers hold
/// 16 rows), many tokens go through 16-row tiles.
pub(super) fn matmul_q8_0x8(rows: Rows, key: &[Option<usize>]) -> TokenStream {
    let cap = key[1].map_or(X8_BIAS_CAP, |k| k / 32);
    let wide = Wide::of(rows, |mr| (q8x16_tile(mr, cap), q8x8_pre(mr, cap)));
    x8_matmul(
        "matmul_q8_0x8",
        32,
        key,
        [&q8x8_tile(X8_MR, cap), &q8x8_tile(1, cap)],
        [&q8x8_pre(X8_MR, cap), &q8x8_pre(1, cap)],
        wide.as_ref(),
    )
}

/// Tokens per register tile of the 16-row (two-group) Q8_0 tiles of wide
/// ISAs, largest first: 8 tokens × 16 rows keep 16 accumulators in
/// registers and load each group block once for 8 tokens; the last tokens
/// (a short text is 4-8) take the largest smaller tile that fits, since a
/// tile's weight loads cost as much for one token as for eight.
pub const X16_TILES: [usize; 4] = [8, 4, 2, 1];

/// The 16-row tiles of a wide ISA: per tile size of `X16_TILES`, the tile
/// and what it binds before its groups.
pub(crate) struct Wide {
    tiles: Vec<(usize, TokenStream, TokenStream)>,
}

impl Wide {
    /// For `Rows::Sixteen`, the 16-row tiles `tile(mr)` (the tile and what
    /// it binds before its groups) of every size of `X16_TILES`; `None`
    /// for 8 rows.
    pub(crate) fn of(
        rows: Rows,
        tile: impl Fn(usize) -> (TokenStream, TokenStream),
    ) -> Option<Self> {
        match rows {
            Rows::Eight => None,
            Rows::Sixteen => Some(Wide {
                tiles: X16_TILES
                    .iter()
                    .map(|&mr| {
                        let (t, pre) = tile(mr);
                        (mr, t, pre)
                    })
                    .collect(),
            }),
        }
    }
}

/// The Q8_0 tile over two groups at once (`g`, `g + 1`: 16 rows): each
/// token's activation quad is a broadcast operand of one dot for the 16
/// rows, and one scaled fma per token covers them.
fn q8x16_tile(mr: usize, cap: usize) -> TokenStream {
    x16_tile(
        mr,
        Q8_0X8_BYTES,
        X8_PREFETCH,
        q8_block(Rows::Sixteen, mr, cap),
    )
}

/// One 16-row tile: `mr` tokens from `i0` × groups `g` and `g + 1`. Per
/// block `b`, `block` (with the two group blocks bound as `blk0` and `blk1`,
/// token `i`'s activation row as `xr{i}`) adds to the accumulators `acc{i}`
/// (`R16`), which are stored at the end. As the 8-row tiles, only the first
/// token tile of a panel prefetches (`bytes` per group block, `ahead`
/// blocks ahead): it streams the panel's weights from memory.
pub(crate) fn x16_tile(mr: usize, bytes: usize, ahead: usize, block: TokenStream) -> TokenStream {
    let prefetch = group_prefetch(Rows::Sixteen, mr, bytes, ahead);
    group_tile(Rows::Sixteen, mr, prefetch, block)
}

/// The most blocks of a token's offset corrections (`q8r_x_bias`) kept on
/// the stack (k ≤ 4096); a longer generic row computes them in every group.
pub const X8_BIAS_CAP: usize = 128;

/// Before a Q8_0 tile's groups, what every group of the panel reuses for
/// each of the `mr` tokens (`cap` blocks on the stack; a longer generic row
/// computes them in every group): `xb{i}`, its corrections per block where
/// the dot offsets the weights (`q8r_offset`), `dx{i}`, its block scales as
/// f32, and `px{i}`, its blocks prepared where the lowering prepares them
/// (`q8r_prepared`).
fn q8x8_pre(mr: usize, cap: usize) -> TokenStream {
    let cap = lit(cap);
    let rows = (0..mr).map(|i| {
        let (xb, dx, px, il) = (id("xb", i), id("dx", i), id("px", i), lit(i));
        quote! {
            let mut #px = [q8r_prep_x(&[0; 32]); #cap];
            if q8r_prepared() && kb <= #cap {
                for (p, xb) in #px.iter_mut().zip(&x[(i0 + #il) * kb..][..kb]) {
                    *p = q8r_prep_x(&xb.qs);
                }
            }
            let mut #xb = [0i32; #cap];
            let mut #dx = [0.0f32; #cap];
            if kb <= #cap {
                let xr = &x[(i0 + #il) * kb..][..kb];
                for ((o, d), xb) in #xb.iter_mut().zip(#dx.iter_mut()).zip(xr) {
                    if q8r_offset() {
                        *o = q8r_x_bias(&xb.qs);
                    }
                    *d = f16_to_f32(xb.d.to_bits());
                }
            }
        }
    });
    quote!(#(#rows)*)
}

/// The driver of the 8-row-group matmuls (`name`, blocks of `qk` values):
/// one token streams the groups straight through (tile `one`); many walk
/// panels of `X8_PANEL` groups (kept in L2) in tiles of `X8_MR` tokens
/// (`many`), the last tokens of a panel one at a time. The tiles read `w`,
/// `x`, `kb`, `g` and `i0`, and what `pre` (for `many`, for `one`) binds
/// before their groups.
pub(crate) fn x8_matmul(
    name: &str,
    qk: usize,
    key: &[Option<usize>],
    [many, one]: [&TokenStream; 2],
    [pre_many, pre_one]: [&TokenStream; 2],
    wide: Option<&Wide>,
) -> TokenStream {
    // As for `matmul_q8_0`: the column count comes from `out` (threads split
    // by blocks of `MATMUL_COL_ALIGN` columns); only `k` is specialized.
    let kb = bind(
        "kb",
        key[1].map(|k| k / qk),
        quote!(if m == 0 { 0 } else { x.len() / m }),
    );
    let k_check = match key[1] {
        Some(k) => {
            let k = Literal::usize_unsuffixed(k);
            let msg = format!("{name}: wrong k");
            quote!(assert_eq!(k, #k, #msg);)
        }
        None => quote!(),
    };
    let (panel, mr, qk) = (
        Literal::usize_unsuffixed(X8_PANEL),
        Literal::usize_unsuffixed(X8_MR),
        Literal::usize_unsuffixed(qk),
    );
    let (m_x, m_w, m_bias) = (
        format!("{name}: activations are not {{m}} rows of {{k}}"),
        format!("{name}: weight is not {{groups}} groups of 8 rows of {{k}}"),
        format!("{name}: bias length"),
    );
    // A wide ISA's many tokens: pairs of groups per panel, an odd last
    // group through the one-token 8-row tile for each token.
    let many_tokens = match wide {
        Some(Wide { tiles }) => {
            // The largest tile that fits the tokens left, then its group
            // pairs, then an odd last group 8 rows at a time per token.
            let arms = tiles.iter().map(|(wmr, tile, pre)| {
                let wmr = Literal::usize_unsuffixed(*wmr);
                quote! {
                    if m - i0 >= #wmr {
                        #pre
                        let mut g = gp;
                        while g + 2 <= ge {
                            #tile
                            g += 2;
                        }
                        if g < ge {
                            for t in i0..i0 + #wmr {
                                let i0 = t;
                                #pre_one
                                #one
                            }
                        }
                        i0 += #wmr;
                        continue;
                    }
                }
            });
            quote! {
                let mut gp = 0;
                while gp < groups {
                    let ge = (gp + #panel).min(groups);
                    let mut i0 = 0;
                    while i0 < m {
                        #(#arms)*
                    }
                    gp = ge;
                }
            }
        }
        None => quote! {
            let mut gp = 0;
            while gp < groups {
                let ge = (gp + #panel).min(groups);
                let mut i0 = 0;
                while i0 + #mr <= m {
                    #pre_many
                    for g in gp..ge {
                        #many
                    }
                    i0 += #mr;
                }
                while i0 < m {
                    #pre_one
                    for g in gp..ge {
                        #one
                    }
                    i0 += 1;
                }
                gp = ge;
            }
        },
    };
    quote! {
        let mut out = out;
        let m = out.rows();
        let n = out.cols();
        #kb
        let k = kb * #qk;
        #k_check
        let groups = n.div_ceil(8);
        assert_eq!(x.len(), m * kb, #m_x);
        assert_eq!(w.len(), groups * kb, #m_w);
        if let Some(bias) = bias {
            assert_eq!(bias.len(), n, #m_bias);
        }
        if m == 1 {
            // One token streams the weights: straight through.
            let i0 = 0;
            #pre_one
            for g in 0..groups {
                #one
            }
            return;
        }
        #many_tokens
    }
}

pub(super) fn matmul_f32(key: &[Option<usize>]) -> TokenStream {
    // As for Q8_0: threads run it on column blocks, so `n` is the block's.
    let n = bind("n", None, quote!(out.cols()));
    let k = bind("k", key[1], quote!(if m == 0 { 0 } else { x.len() / m }));
    quote! {
        let mut out = out;
        let m = out.rows();
        #n
        #k
        assert_eq!(out.cols(), n, "matmul_f32: output columns vs n");
        assert_eq!(x.len(), m * k, "matmul_f32: activations are not {m} rows of {k}");
        assert_eq!(w.len(), n * k, "matmul_f32: weight is not {n} rows of {k}");
        if let Some(bias) = bias {
            assert_eq!(bias.len(), n, "matmul_f32: bias length");
        }
        for i in 0..m {
            let xr = &x[i * k..][..k];
            let row = out.row(i);
            for (j, o) in row.iter_mut().enumerate() {
                let mut s = dot_f32(xr, &w[j * k..][..k]);
                if let Some(bias) = bias {
                    s += bias[j];
                }
                *o = if accumulate { *o + s } else { s };
            }
        }
    }
}

/// The body of `int8_dot_probe(xs: &[[i8; 32]; 8], iters: usize) -> i32`:
/// 8 independent chains of `q8_dot` (the exact instruction sequence the
/// Q8_0 matmul uses for one block pair), `iters` times. Benches time it to
/// measure this ISA's int8 multiply-add peak: `64 · 8 · iters` int ops.
pub fn int8_dot_probe() -> TokenStream {
    let chains = 8usize;
    let accs: Vec<_> = (0..chains).map(|c| format_ident!("a{c}")).collect();
    let steps = (0..chains).map(|c| {
        let a = &accs[c];
        let (wi, xi) = (
            Literal::usize_unsuffixed(c % 4),
            Literal::usize_unsuffixed(c),
        );
        quote!(#a = i_add(#a, q8_dot(qw[#wi], q8_load_x(&xs[#xi])));)
    });
    quote! {
        let qw = [q8_load_w(&xs[0]), q8_load_w(&xs[1]), q8_load_w(&xs[2]), q8_load_w(&xs[3])];
        #(let mut #accs = i_zero();)*
        for _ in 0..iters {
            // Opaque each round, so the dots cannot be hoisted out of the loop.
            let xs = core::hint::black_box(xs);
            #(#steps)*
        }
        let mut s = i_zero();
        #(s = i_add(s, #accs);)*
        i_hsum(s)
    }
}

/// The body of `int8_ceiling_probe(xs: &[[i8; 64]; 2], iters: usize) -> i32`
/// (of `int8_ceiling_probe2` if `second`): `chains` independent accumulators
/// of `ceil_mac` (or `ceil2_mac`), `iters` rounds, over two operand registers
/// loaded once: no kernel's sequence, only the ISA's best int8
/// multiply-accumulate instructions on registers, so the time measures the
/// instructions' throughput (`2 · macs · chains · iters` int ops).
pub fn int8_ceiling_probe(second: bool, chains: usize) -> TokenStream {
    let prefix = if second { "ceil2" } else { "ceil" };
    let op = |name: &str| format_ident!("{prefix}_{name}");
    let (zero, load, opaque, mac, hsum) =
        (op("zero"), op("load"), op("opaque"), op("mac"), op("hsum"));
    let accs: Vec<_> = (0..chains).map(|c| format_ident!("a{c}")).collect();
    quote! {
        // Opaque once loaded, so the operands stay in registers rather than
        // becoming memory operands of the multiply-accumulates.
        let mut u = #opaque(#load(&xs[0]));
        let s = #opaque(#load(&xs[1]));
        #(let mut #accs = #zero();)*
        for _ in 0..iters {
            // `u` is hidden again before each step (no instruction): every
            // product is then a new one, neither hoisted out of the loop nor
            // shared by the chains.
            #(
                u = #opaque(u);
                #accs = #mac(#accs, u, s);
            )*
        }
        let mut t = 0i32;
        #(t = t.wrapping_add(#hsum(#accs));)*
        t
    }
}
