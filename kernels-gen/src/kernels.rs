//! The kernels, each described once over the ops of [`crate::ops`].
//!
//! A [`Family`] is one method of the runtime's `KernelSet`: the fn-pointer
//! type it returns, the shape parameters its getter takes (the *key*), and a
//! body builder. The builder gets the key as `Some(value)` for a variant
//! specialized by the shape table (the value becomes a literal: loops unroll,
//! remainders vanish) or `None` for the generic variant (read from the
//! arguments). Bodies call only ops and plain Rust, so every ISA shares them.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

/// One kernel family (one `KernelSet` getter).
pub struct Family {
    /// The `KernelSet` method, also the kernel's base name.
    pub getter: &'static str,
    /// The fn-pointer type in `kiln_runtime::kernels` the getter returns.
    pub fn_type: &'static str,
    /// The getter's shape parameters (all `usize`), in order.
    pub key: &'static [&'static str],
    /// The kernel's parameter list (matches `fn_type`).
    pub params: &'static str,
    /// What the kernel computes (emitted as its doc comment).
    pub doc: &'static str,
    /// Builds the body for a key (`None` entries stay runtime values).
    pub body: fn(&[Option<usize>]) -> TokenStream,
}

impl Family {
    /// The kernel's name for a key: `rms_norm_768`, `matmul_q8_0_n768_k768`,
    /// or `..._generic` when any part of the key is a runtime value.
    pub fn variant_name(&self, key: &[Option<usize>]) -> String {
        if self.key.is_empty() {
            return self.getter.to_string();
        }
        if key.iter().any(Option::is_none) {
            return format!("{}_generic", self.getter);
        }
        let mut name = self.getter.to_string();
        for (k, v) in self.key.iter().zip(key) {
            let v = v.expect("checked above");
            if self.key.len() == 1 {
                name += &format!("_{v}");
            } else {
                name += &format!("_{k}{v}");
            }
        }
        name
    }
}

/// `let name: usize = value;` with a literal when specialized.
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

/// Every family, in `KernelSet` order.
pub const FAMILIES: &[Family] = &[
    Family {
        getter: "quantize_q8_0",
        fn_type: "QuantizeQ8_0Fn",
        key: &["k"],
        params: "x: &[f32], out: &mut [BlockQ8_0]",
        doc: "Quantizes rows of `k` values to Q8_0, bit-identical to `quantize_row_q8_0_reference`.",
        body: quantize_q8_0,
    },
    Family {
        getter: "matmul_q8_0",
        fn_type: "MatmulQ8_0Fn",
        key: &["n", "k"],
        params: "w: &[BlockQ8_0], x: &[BlockQ8_0], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool",
        doc: "`out[i][j] (+)= bias[j] + Σ_b dw·dx·(wq·xq)` over Q8_0 blocks. \
              Weights are walked in panels of `PANEL` rows (kept in L2) and, within a panel, \
              in register tiles of `MR` tokens × `NR` weight rows; one token uses `1 × NR1` tiles.",
        body: matmul_q8_0,
    },
    Family {
        getter: "matmul_q8_0x8",
        fn_type: "MatmulQ8_0x8Fn",
        key: &["n", "k"],
        params: "w: &[BlockQ8_0x8], x: &[BlockQ8_0], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool",
        doc: "`out[i][j] (+)= bias[j] + Σ_b dw·dx·(wq·xq)` over weights repacked in groups of 8 rows: \
              each int8 step yields the 8 rows' partial dots in one vector, each block one scaled \
              fma per 8 rows. Walked in panels of `X8_PANEL` groups (kept in L2), register tiles of \
              `X8_MR` tokens × 8 rows.",
        body: matmul_q8_0x8,
    },
    Family {
        getter: "matmul_f32",
        fn_type: "MatmulF32Fn",
        key: &["n", "k"],
        params: "w: &[f32], x: &[f32], bias: Option<&[f32]>, out: MatMut<'_>, accumulate: bool",
        doc: "`out[i][j] (+)= bias[j] + Σ_k x[i][k]·w[j][k]` in f32 (for small tensors).",
        body: matmul_f32,
    },
    Family {
        getter: "rms_norm",
        fn_type: "RmsNormFn",
        key: &["dim"],
        params: "x: &[f32], w: &[f32], eps: f32, out: &mut [f32]",
        doc: "RMSNorm of each row: `out = x / sqrt(mean(x²) + eps) · w`.",
        body: rms_norm,
    },
    Family {
        getter: "rms_norm_q8_0",
        fn_type: "RmsNormQ8_0Fn",
        key: &["dim"],
        params: "x: &[f32], w: &[f32], eps: f32, out: &mut [BlockQ8_0]",
        doc: "RMSNorm of each row fused with Q8_0 quantization of the result \
              (equal to `quantize_q8_0(rms_norm(x))` bit for bit).",
        body: rms_norm_q8_0,
    },
    Family {
        getter: "layer_norm",
        fn_type: "LayerNormFn",
        key: &["dim"],
        params: "x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]",
        doc: "LayerNorm of each row: `out = (x - μ) / sqrt(σ² + eps) · w + b` (two passes).",
        body: layer_norm,
    },
    Family {
        getter: "rope",
        fn_type: "RopeFn",
        key: &["head_dim"],
        params: "x: &mut [f32], n_heads: usize, head_dim: usize, pos0: usize, cos: &[f32], sin: &[f32], neox: bool",
        doc: "Rotary embedding in place over rows of `n_heads` heads: NeoX pairs `(x[i], x[i + d/2])` \
              are vectorized; adjacent pairs `(x[2i], x[2i+1])` use plain code.",
        body: rope,
    },
    Family {
        getter: "attention",
        fn_type: "AttentionFn",
        key: &["head_dim"],
        params: "q: &[f32], k: &[f32], v: &[f32], shape: &AttnShape, rows: core::ops::Range<usize>, out: &mut [f32], scratch: &mut [f32]",
        doc: "Attention for query rows `rows`: per query and head, scores `scale·q·k` over the \
              keys the mask allows, softmax (max-subtracted), then the weighted sum of `v`. \
              Query head `h` reads KV head `h / (n_head / n_head_kv)`.",
        body: attention,
    },
    Family {
        getter: "attend_cache",
        fn_type: "AttendCacheFn",
        key: &["head_dim"],
        params: "q: &[f32], k: &[f32], v: &[f32], at: &CacheAttn<'_>, out: &mut [f32], scratch: &mut [f32]",
        doc: "Attention of the query heads in `q` (sharing one KV head) over the key and value rows \
              `at.spans` (`at.stride` apart): scores `scale·q·k`, softmax (max-subtracted), the \
              weighted sum of `v`. Each key and value row is read once for all the heads.",
        body: attend_cache,
    },
    Family {
        getter: "gelu_tanh",
        fn_type: "UnaryFn",
        key: &[],
        params: "x: &mut [f32]",
        doc: "GELU, tanh approximation, in place.",
        body: |_| unary(quote!(gelu_tanh_v)),
    },
    Family {
        getter: "gelu_erf",
        fn_type: "UnaryFn",
        key: &[],
        params: "x: &mut [f32]",
        doc: "GELU with erf, in place.",
        body: |_| unary(quote!(gelu_erf_v)),
    },
    Family {
        getter: "geglu_q8_0",
        fn_type: "GegluQ8_0Fn",
        key: &["dim"],
        params: "gate: &[f32], up: &[f32], out: &mut [BlockQ8_0]",
        doc: "`out = Q8_0(gelu_tanh(gate) ⊙ up)`, block by block.",
        body: geglu_q8_0,
    },
    Family {
        getter: "gather_q8_0",
        fn_type: "GatherQ8_0Fn",
        key: &["dim"],
        params: "table: &[BlockQ8_0], dim: usize, ids: &[u32], scale: f32, out: &mut [f32]",
        doc: "Gathers rows `ids` of a Q8_0 table, `out = (d·q)·scale`.",
        body: gather_q8_0,
    },
    Family {
        getter: "mean_pool",
        fn_type: "MeanPoolFn",
        key: &["dim"],
        params: "x: &[f32], out: &mut [f32]",
        doc: "Mean of the rows of `x` (zero rows give zeros).",
        body: mean_pool,
    },
    Family {
        getter: "l2_normalize",
        fn_type: "L2NormalizeFn",
        key: &[],
        params: "x: &mut [f32]",
        doc: "Scales `x` to unit L2 norm (a zero vector stays zero).",
        body: |_| {
            quote! {
                let norm = dot_f32(x, x).sqrt();
                if norm > 0.0 {
                    scale_f32(x, 1.0 / norm);
                }
            }
        },
    },
];

fn quantize_q8_0(key: &[Option<usize>]) -> TokenStream {
    let k = bind("k", key[0], quote!(x.len().max(32)));
    quote! {
        #k
        assert!(k % 32 == 0, "quantize_q8_0: row length {k} is not a multiple of 32");
        assert_eq!(x.len(), out.len() * 32, "quantize_q8_0: values vs blocks");
        assert!(x.len() % k == 0, "quantize_q8_0: {} values are not rows of {k}", x.len());
        for (xr, or) in x.chunks_exact(k).zip(out.chunks_exact_mut(k / 32)) {
            for (xb, ob) in xr.chunks_exact(32).zip(or.iter_mut()) {
                q8_quant(xb, ob);
            }
        }
    }
}

/// Register tile sizes of the Q8_0 matmul: `MR` tokens × `NR` weight rows for
/// many tokens, `1 × NR1` for one token, weight panels of `PANEL` rows.
pub const MR: usize = 3;
/// See [`MR`].
pub const NR: usize = 2;
/// See [`MR`].
pub const NR1: usize = 4;
/// See [`MR`].
pub const PANEL: usize = 64;
/// How far ahead (in weight rows) the one-token matmul prefetches.
pub const PREFETCH_ROWS: usize = 8;

/// One `mr × nr` register tile at token `i0`, weight row `j0`.
fn q8_tile(mr: usize, nr: usize) -> TokenStream {
    let lit = Literal::usize_unsuffixed;
    let id = |p: &str, a: usize| format_ident!("{p}{a}");
    let id2 = |p: &str, a: usize, b: usize| format_ident!("{p}{a}_{b}");
    let wrows = (0..nr).map(|j| {
        let wr = id("wr", j);
        let jl = lit(j);
        quote!(let #wr = &w[(j0 + #jl) * kb..][..kb];)
    });
    let xrows = (0..mr).map(|i| {
        let xr = id("xr", i);
        let il = lit(i);
        quote!(let #xr = &x[(i0 + #il) * kb..][..kb];)
    });
    let mut accs = Vec::new();
    let mut fmas = Vec::new();
    let mut stores = Vec::new();
    for i in 0..mr {
        let row = id("row", i);
        let il = lit(i);
        let mut per_j = Vec::new();
        for j in 0..nr {
            let acc = id2("acc", i, j);
            let jl = lit(j);
            let (qw, dw, qx, dx) = (id("qw", j), id("dw", j), id("qx", i), id("dx", i));
            accs.push(quote!(let mut #acc = acc_zero();));
            fmas.push(quote!(#acc = acc_fma(acc_mul(#dw, #dx), q8_dot(#qw, #qx), #acc);));
            per_j.push(quote! {
                let mut s = acc_hsum(#acc);
                if let Some(bias) = bias {
                    s += bias[j0 + #jl];
                }
                #row[j0 + #jl] = if accumulate { #row[j0 + #jl] + s } else { s };
            });
        }
        stores.push(quote! {
            let #row = out.row(i0 + #il);
            #(#per_j)*
        });
    }
    // One token streams the weights from memory: prefetch the rows
    // `PREFETCH_ROWS` ahead (a prefetch never faults, even past the end).
    let prefetch = (0..nr).filter(|_| mr == 1).map(|j| {
        let ahead = lit(PREFETCH_ROWS + j);
        quote!(prefetch(w.as_ptr().wrapping_add((j0 + #ahead) * kb + b));)
    });
    let loads_w = (0..nr).map(|j| {
        let (wr, qw, dw) = (id("wr", j), id("qw", j), id("dw", j));
        quote! {
            let #qw = q8_load_w(&#wr[b].qs);
            let #dw = acc_splat_f16(#wr[b].d.to_bits());
        }
    });
    let loads_x = (0..mr).map(|i| {
        let (xr, qx, dx) = (id("xr", i), id("qx", i), id("dx", i));
        quote! {
            let #qx = q8_load_x(&#xr[b].qs);
            let #dx = acc_splat_f16(#xr[b].d.to_bits());
        }
    });
    quote! {
        {
            #(#wrows)*
            #(#xrows)*
            #(#accs)*
            for b in 0..kb {
                #(#prefetch)*
                #(#loads_w)*
                #(#loads_x)*
                #(#fmas)*
            }
            #(#stores)*
        }
    }
}

/// Walks weight rows `[jp, je)` in tiles of `nr` with a 1-row tail unless
/// `exact` says the range is a multiple of `nr`.
fn q8_cols(mr: usize, nr: usize, exact: bool) -> TokenStream {
    let main = q8_tile(mr, nr);
    let nr = Literal::usize_unsuffixed(nr);
    let tail = if exact {
        quote!()
    } else {
        let one = q8_tile(mr, 1);
        quote! {
            while j0 < je {
                #one
                j0 += 1;
            }
        }
    };
    quote! {
        let mut j0 = jp;
        while j0 + #nr <= je {
            #main
            j0 += #nr;
        }
        #tail
    }
}

fn matmul_q8_0(key: &[Option<usize>]) -> TokenStream {
    // The runtime splits a matmul across threads by blocks of output columns
    // (multiples of `PANEL`), so even a variant specialized for a weight of
    // `n` rows runs on any block of them: `n` stays the block's width, and
    // only its divisibility by the panel is specialized.
    let n = bind("n", None, quote!(out.cols()));
    let kb = bind(
        "kb",
        key[1].map(|k| k / 32),
        quote!(if m == 0 { 0 } else { x.len() / m }),
    );
    // With n known to be a multiple of the panel and tile widths, the
    // remainder loops are not generated at all.
    let exact = key[0].is_some_and(|n| n.is_multiple_of(PANEL));
    let je = if exact {
        quote!(let je = jp + PANEL;)
    } else {
        quote!(let je = (jp + PANEL).min(n);)
    };
    let vec = q8_cols(1, NR1, exact && PANEL.is_multiple_of(NR1));
    let many = q8_cols(MR, NR, exact && PANEL.is_multiple_of(NR));
    let rest = q8_cols(1, NR, exact && PANEL.is_multiple_of(NR));
    let k_check = match key[1] {
        Some(k) => {
            let k = Literal::usize_unsuffixed(k);
            quote!(assert_eq!(k, #k, "matmul_q8_0: wrong k");)
        }
        None => quote!(),
    };
    let k_check = if exact {
        quote! {
            #k_check
            assert!(n % PANEL == 0, "matmul_q8_0: {n} columns is not a multiple of the panel");
        }
    } else {
        k_check
    };
    let (panel, mr) = (
        Literal::usize_unsuffixed(PANEL),
        Literal::usize_unsuffixed(MR),
    );
    quote! {
        const PANEL: usize = #panel;
        let mut out = out;
        let m = out.rows();
        #n
        #kb
        let k = kb * 32;
        #k_check
        assert_eq!(out.cols(), n, "matmul_q8_0: output columns vs n");
        assert_eq!(x.len(), m * kb, "matmul_q8_0: activations are not {m} rows of {k}");
        assert_eq!(w.len(), n * kb, "matmul_q8_0: weight is not {n} rows of {k}");
        if let Some(bias) = bias {
            assert_eq!(bias.len(), n, "matmul_q8_0: bias length");
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
    let ahead = Literal::usize_unsuffixed(ahead);
    let lines = prefetch_lines(quote!(wg.as_ptr().wrapping_add(b + #ahead)), bytes);
    if mr == 1 {
        lines
    } else {
        quote!(if i0 == 0 { #lines })
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
    let lit = Literal::usize_unsuffixed;
    let id = |p: &str, a: usize| format_ident!("{p}{a}");
    let xrows = (0..mr).map(|i| {
        let (xr, il) = (id("xr", i), lit(i));
        quote!(let #xr = &x[(i0 + #il) * kb..][..kb];)
    });
    let accs = (0..mr).map(|i| {
        let acc = id("acc", i);
        quote!(let mut #acc = r8_zero();)
    });
    let stores = (0..mr).map(|i| {
        let (acc, il) = (id("acc", i), lit(i));
        quote!(r8_store_row(out.row(i0 + #il), g * 8, #acc, bias, accumulate);)
    });
    quote! {
        {
            let wg = &w[g * kb..][..kb];
            #(#xrows)*
            #(#accs)*
            for b in 0..kb {
                #prefetch
                let blk = &wg[b];
                #block
            }
            #(#stores)*
        }
    }
}

/// The Q8_0 group tile: per block, 8 column quads of int8 dots per token,
/// one scaled fma.
fn q8x8_tile(mr: usize, cap: usize) -> TokenStream {
    let lit = Literal::usize_unsuffixed;
    let id = |p: &str, a: usize| format_ident!("{p}{a}");
    let cap = lit(cap);
    let iaccs = (0..mr).map(|i| {
        let (ia, xb, xr) = (id("ia", i), id("xb", i), id("xr", i));
        quote! {
            let mut #ia = if !q8r_offset() {
                ri_zero()
            } else if kb <= #cap {
                q8r_init(#xb[b])
            } else {
                q8r_init(q8r_x_bias(&#xr[b].qs))
            };
        }
    });
    // The 8 column quads of a block, unrolled; each weight quad is loaded
    // once and used by every token of the tile.
    let dots = (0..mr).map(|i| {
        let (ia, xr) = (id("ia", i), id("xr", i));
        quote!(#ia = q8r_dot_acc(#ia, wq, q8r_load_x(&#xr[b].qs, q));)
    });
    let scales = (0..mr).map(|i| {
        let (acc, ia, xr) = (id("acc", i), id("ia", i), id("xr", i));
        quote!(#acc = r8_fma_block(dw, f16_to_f32(#xr[b].d.to_bits()), #ia, #acc);)
    });
    let prefetch = x8_prefetch(mr, Q8_0X8_BYTES, X8_PREFETCH);
    let block = quote! {
        let dw = r8_scales(&blk.d);
        #(#iaccs)*
        for q in 0..8 {
            let wq = q8r_load_w(&blk.qs[q]);
            #(#dots)*
        }
        #(#scales)*
    };
    x8_tile(mr, prefetch, block)
}

fn matmul_q8_0x8(key: &[Option<usize>]) -> TokenStream {
    let cap = key[1].map_or(X8_BIAS_CAP, |k| k / 32);
    x8_matmul(
        "matmul_q8_0x8",
        32,
        key,
        [&q8x8_tile(X8_MR, cap), &q8x8_tile(1, cap)],
        [&q8x8_bias(X8_MR, cap), &q8x8_bias(1, cap)],
    )
}

/// The most blocks of a token's offset corrections (`q8r_x_bias`) kept on
/// the stack (k ≤ 4096); a longer generic row computes them in every group.
pub const X8_BIAS_CAP: usize = 128;

/// Before a tile's groups: where the dot offsets the weights
/// (`q8r_offset`), the `mr` tokens' corrections per block, `xb{i}`, which
/// every group of the panel reuses (`cap` blocks on the stack).
fn q8x8_bias(mr: usize, cap: usize) -> TokenStream {
    let lit = Literal::usize_unsuffixed;
    let cap = lit(cap);
    let rows = (0..mr).map(|i| {
        let (xb, il) = (format_ident!("xb{i}"), lit(i));
        quote! {
            let #xb: [i32; #cap] = if q8r_offset() && kb <= #cap {
                let xr = &x[(i0 + #il) * kb..][..kb];
                core::array::from_fn(|b| if b < kb { q8r_x_bias(&xr[b].qs) } else { 0 })
            } else {
                [0; #cap]
            };
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
    }
}

fn matmul_f32(key: &[Option<usize>]) -> TokenStream {
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

/// Checks shared by the row-wise norms.
fn norm_prelude(key: &[Option<usize>], name: &str) -> TokenStream {
    let dim = bind("dim", key[0], quote!(w.len()));
    let len_msg = format!("{name}: weight length vs dim {{dim}}");
    let rows_msg = format!("{name}: {{}} values are not rows of {{dim}}");
    quote! {
        #dim
        assert!(dim > 0 && w.len() == dim, #len_msg);
        assert!(x.len() % dim == 0, #rows_msg, x.len());
    }
}

/// `let scale = 1/sqrt(mean(xr²) + eps);`
fn rms_scale() -> TokenStream {
    quote! {
        let scale = 1.0 / (dot_f32(xr, xr) / dim as f32 + eps).sqrt();
        let sv = f_splat(scale);
    }
}

fn rms_norm(key: &[Option<usize>]) -> TokenStream {
    let pre = norm_prelude(key, "rms_norm");
    let scale = rms_scale();
    quote! {
        #pre
        assert_eq!(out.len(), x.len(), "rms_norm: output length");
        for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            #scale
            let mut i = 0;
            while i + LANES <= dim {
                let r = f_mul(f_mul(f_load(&xr[i..]), sv), f_load(&w[i..]));
                f_store(&mut or[i..], r);
                i += LANES;
            }
            while i < dim {
                or[i] = xr[i] * scale * w[i];
                i += 1;
            }
        }
    }
}

fn rms_norm_q8_0(key: &[Option<usize>]) -> TokenStream {
    let pre = norm_prelude(key, "rms_norm_q8_0");
    let scale = rms_scale();
    quote! {
        #pre
        assert!(dim % 32 == 0, "rms_norm_q8_0: dim {dim} is not a multiple of 32");
        assert_eq!(out.len() * 32, x.len(), "rms_norm_q8_0: output blocks");
        for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim / 32)) {
            #scale
            for (b, ob) in or.iter_mut().enumerate() {
                let mut buf = [0.0f32; 32];
                let mut i = 0;
                while i < 32 {
                    let r = f_mul(f_mul(f_load(&xr[b * 32 + i..]), sv), f_load(&w[b * 32 + i..]));
                    f_store(&mut buf[i..], r);
                    i += LANES;
                }
                q8_quant(&buf, ob);
            }
        }
    }
}

fn layer_norm(key: &[Option<usize>]) -> TokenStream {
    let pre = norm_prelude(key, "layer_norm");
    quote! {
        #pre
        assert_eq!(b.len(), dim, "layer_norm: bias length");
        assert_eq!(out.len(), x.len(), "layer_norm: output length");
        for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            let mean = sum_f32(xr) / dim as f32;
            let mv = f_splat(mean);
            // Second pass: centred values into `or`, then their variance.
            let mut i = 0;
            while i + LANES <= dim {
                let c = f_sub(f_load(&xr[i..]), mv);
                f_store(&mut or[i..], c);
                i += LANES;
            }
            while i < dim {
                or[i] = xr[i] - mean;
                i += 1;
            }
            let var = dot_f32(or, or) / dim as f32;
            let inv = 1.0 / (var + eps).sqrt();
            let iv = f_splat(inv);
            let mut i = 0;
            while i + LANES <= dim {
                let r = f_fma(f_mul(f_load(&or[i..]), iv), f_load(&w[i..]), f_load(&b[i..]));
                f_store(&mut or[i..], r);
                i += LANES;
            }
            while i < dim {
                or[i] = or[i] * inv * w[i] + b[i];
                i += 1;
            }
        }
    }
}

fn rope(key: &[Option<usize>]) -> TokenStream {
    let hd = bind("hd", key[0], quote!(head_dim));
    quote! {
        #hd
        assert_eq!(head_dim, hd, "rope: head_dim");
        assert!(hd % 2 == 0 && n_heads > 0, "rope: head_dim {hd} must be even");
        let half = hd / 2;
        let row_len = n_heads * hd;
        assert!(x.len() % row_len == 0, "rope: {} values are not rows of {row_len}", x.len());
        let rows = x.len() / row_len;
        assert!(cos.len() >= (pos0 + rows) * half && sin.len() >= (pos0 + rows) * half,
            "rope: cos/sin tables shorter than position {}", pos0 + rows);
        for (r, xr) in x.chunks_exact_mut(row_len).enumerate() {
            let c = &cos[(pos0 + r) * half..][..half];
            let s = &sin[(pos0 + r) * half..][..half];
            for xh in xr.chunks_exact_mut(hd) {
                if neox {
                    let (x0, x1) = xh.split_at_mut(half);
                    let mut i = 0;
                    while i + LANES <= half {
                        let (a, b) = (f_load(&x0[i..]), f_load(&x1[i..]));
                        let (cv, sv) = (f_load(&c[i..]), f_load(&s[i..]));
                        f_store(&mut x0[i..], f_sub(f_mul(a, cv), f_mul(b, sv)));
                        f_store(&mut x1[i..], f_fma(a, sv, f_mul(b, cv)));
                        i += LANES;
                    }
                    while i < half {
                        let (a, b) = (x0[i], x1[i]);
                        x0[i] = a * c[i] - b * s[i];
                        x1[i] = a * s[i] + b * c[i];
                        i += 1;
                    }
                } else {
                    for (i, p) in xh.chunks_exact_mut(2).enumerate() {
                        let (a, b) = (p[0], p[1]);
                        p[0] = a * c[i] - b * s[i];
                        p[1] = a * s[i] + b * c[i];
                    }
                }
            }
        }
    }
}

fn attention(key: &[Option<usize>]) -> TokenStream {
    let hd = bind("hd", key[0], quote!(shape.head_dim));
    quote! {
        #hd
        const TR: usize = ATTN_ROWS;
        const _: () = assert!(TR <= ATTN_TILE_ROWS);
        assert_eq!(shape.head_dim, hd, "attention: head_dim");
        let n = shape.n_tokens;
        let (nh, nkv) = (shape.n_head, shape.n_head_kv);
        assert!(nkv > 0 && nh % nkv == 0, "attention: {nh} heads over {nkv} KV heads");
        let group = nh / nkv;
        let (qs, kvs) = (nh * hd, nkv * hd);
        assert!(rows.end <= n && rows.start <= rows.end, "attention: rows {rows:?} of {n}");
        assert!(q.len() >= n * qs && k.len() >= n * kvs && v.len() >= n * kvs, "attention: q/k/v too short");
        assert!(out.len() >= rows.len() * qs, "attention: output too short");
        assert!(scratch.len() >= n, "attention: scratch holds fewer than {n} scores");
        // The keys query `i` sees; both ends never decrease with `i`, so a
        // tile of consecutive queries sees the union `[lo(first), hi(last))`.
        let span = |i: usize| match shape.mask {
            Mask::Full => (0, n),
            Mask::Window { radius } => (i.saturating_sub(radius), (i + radius + 1).min(n)),
            Mask::Causal => (0, i + 1),
            Mask::CausalWindow { window } => ((i + 1).saturating_sub(window.max(1)), i + 1),
        };
        if scratch.len() < attention_scratch_len(n, hd) || hd % LANES != 0 {
            // One query at a time (small scratch, or a head width the
            // vector tiles do not divide).
            for (ri, i) in rows.enumerate() {
                let (lo, hi) = span(i);
                for h in 0..nh {
                    let kh = h / group;
                    let qv = &q[i * qs + h * hd..][..hd];
                    let o = &mut out[ri * qs + h * hd..][..hd];
                    let sc = &mut scratch[lo..hi];
                    let mut mx = f32::NEG_INFINITY;
                    for (j, s) in (lo..hi).zip(sc.iter_mut()) {
                        let d = dot_f32(qv, &k[j * kvs + kh * hd..][..hd]) * shape.scale;
                        *s = d;
                        mx = mx.max(d);
                    }
                    let sum = exp_sub_sum(sc, mx);
                    o.fill(0.0);
                    for (j, &p) in (lo..hi).zip(sc.iter()) {
                        axpy(o, p, &v[j * kvs + kh * hd..][..hd]);
                    }
                    scale_f32(o, 1.0 / sum);
                }
            }
            return;
        }
        // Tiles of `TR` queries × one head: each value row is read once per
        // tile instead of once per query. The call's keys of one KV head are
        // transposed into blocks of `KB`, so a score tile is plain FMAs of
        // broadcast query values into vectors of keys (no horizontal sums),
        // and each score's summation order is the same whatever the tiling
        // (threads split rows differently). Scratch: `TR` score rows of the
        // tile's key span, the weights transposed (`[key][TR]`), the tile's
        // queries transposed (`[hd][TR]`), the key blocks.
        if rows.is_empty() {
            return;
        }
        const KB: usize = 2 * LANES;
        let (klo, _) = span(rows.start);
        let (_, khi) = span(rows.end - 1);
        let nk = khi - klo;
        let (sc_all, rest) = scratch.split_at_mut(ATTN_TILE_ROWS * (n + ATTN_KEY_PAD));
        let (pt_all, rest) = rest.split_at_mut(ATTN_TILE_ROWS * (n + ATTN_KEY_PAD));
        let (qt_all, kt) = rest.split_at_mut(ATTN_TILE_ROWS * hd);
        let nblk = nk.div_ceil(KB);
        let kt = &mut kt[..nblk * hd * KB];
        // The score loop's length, hidden from the optimizer: with a constant
        // trip count LLVM unrolls it fully and hoists loads out of the tile
        // loop, more vectors than there are registers.
        let dot_len = core::hint::black_box(hd);
        let scale = f_splat(shape.scale);
        for kh in 0..nkv {
            // Blocks of `KB` keys, each `[hd][KB]`: a score tile streams one
            // block contiguously.
            for (jb, blk) in kt.chunks_exact_mut(hd * KB).enumerate() {
                for l in 0..KB {
                    let jj = jb * KB + l;
                    if jj < nk {
                        let kr = &k[(klo + jj) * kvs + kh * hd..][..hd];
                        for (d, &x) in kr.iter().enumerate() {
                            blk[d * KB + l] = x;
                        }
                    } else {
                        for d in 0..hd {
                            blk[d * KB + l] = 0.0;
                        }
                    }
                }
            }
            for h in kh * group..(kh + 1) * group {
                let mut i0 = rows.start;
                while i0 < rows.end {
                    let tr = (rows.end - i0).min(TR);
                    let (lo, _) = span(i0);
                    let (_, hi) = span(i0 + tr - 1);
                    let w = hi - lo;
                    // Score row `p` is key `klo + b0 * KB + p`: the tile's
                    // keys start `base` slots in.
                    let (b0, b1) = ((lo - klo) / KB, (hi - klo).div_ceil(KB));
                    let base = lo - klo - b0 * KB;
                    let wp = (b1 - b0) * KB;
                    let sc = &mut sc_all[..TR * wp];
                    // The tile's queries as `[hd][TR]`; a short tile repeats
                    // its last query.
                    let qt = &mut qt_all[..hd * TR];
                    for r in 0..TR {
                        let qr = &q[(i0 + r.min(tr - 1)) * qs + h * hd..][..hd];
                        for (d, &x) in qr.iter().enumerate() {
                            qt[d * TR + r] = x;
                        }
                    }
                    let qt = qt.as_chunks::<TR>().0;
                    // Scores: `TR` queries × 2 vectors of keys per register
                    // tile. Each score adds partial sums of `DC` products:
                    // one chain of `hd` products per score rounds worse than
                    // the lane-split dot products this replaced, and moved
                    // EmbeddingGemma Q8_0's mean cosine to float32 below
                    // the 0.9995 bar on AVX-512.
                    const DC: usize = 16;
                    for (bi, blk) in kt[b0 * hd * KB..b1 * hd * KB].chunks_exact(hd * KB).enumerate() {
                        let blk = &blk.as_chunks::<KB>().0[..dot_len];
                        let mut t = [[f_zero(); 2]; TR];
                        for (kc, qc) in blk.chunks(DC).zip(qt.chunks(DC)) {
                            let mut a = [[f_zero(); 2]; TR];
                            for (kr, qd) in kc.iter().zip(qc) {
                                let (k0, k1) = (f_load(kr), f_load(&kr[LANES..]));
                                for r in 0..TR {
                                    let qv = f_splat(qd[r]);
                                    a[r][0] = f_fma(qv, k0, a[r][0]);
                                    a[r][1] = f_fma(qv, k1, a[r][1]);
                                }
                            }
                            for r in 0..TR {
                                t[r][0] = f_add(t[r][0], a[r][0]);
                                t[r][1] = f_add(t[r][1], a[r][1]);
                            }
                        }
                        for r in 0..tr {
                            let s = &mut sc[r * wp + bi * KB..][..KB];
                            f_store(s, f_mul(t[r][0], scale));
                            f_store(&mut s[LANES..], f_mul(t[r][1], scale));
                        }
                    }
                    // Softmax of each query over its own span; keys of the
                    // tile's span that it must not see get weight 0. The
                    // weights go to `pt` as `[key][TR]`.
                    let mut inv = [0.0f32; TR];
                    for r in 0..tr {
                        let (a, b) = span(i0 + r);
                        let row = &mut sc[r * wp + base..][..w];
                        let own = &mut row[a - lo..b - lo];
                        let mx = own.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                        inv[r] = 1.0 / exp_sub_sum(own, mx);
                        row[..a - lo].fill(0.0);
                        row[b - lo..].fill(0.0);
                    }
                    // A short tile repeats its last query's weights.
                    let pt = &mut pt_all[..w * TR];
                    for r in 0..TR {
                        let row = &sc[r.min(tr - 1) * wp + base..][..w];
                        for (j, &p) in row.iter().enumerate() {
                            pt[j * TR + r] = p;
                        }
                    }
                    let pt = pt.as_chunks::<TR>().0;
                    // Weighted sum of values: `TR` queries × 2 vectors of
                    // columns per register tile, over every key of the span.
                    let mut c = 0;
                    while c < hd {
                        let cw = (hd - c).min(2 * LANES);
                        let mut acc = [[f_zero(); 2]; TR];
                        let vcol = &v[lo * kvs + kh * hd + c..];
                        if cw > LANES {
                            for (j, pj) in pt.iter().enumerate() {
                                let vr = &vcol[j * kvs..][..2 * LANES];
                                let (v0, v1) = (f_load(vr), f_load(&vr[LANES..]));
                                for r in 0..TR {
                                    let p = f_splat(pj[r]);
                                    acc[r][0] = f_fma(p, v0, acc[r][0]);
                                    acc[r][1] = f_fma(p, v1, acc[r][1]);
                                }
                            }
                        } else {
                            for (j, pj) in pt.iter().enumerate() {
                                let v0 = f_load(&vcol[j * kvs..][..LANES]);
                                for r in 0..TR {
                                    acc[r][0] = f_fma(f_splat(pj[r]), v0, acc[r][0]);
                                }
                            }
                        }
                        for r in 0..tr {
                            let o = &mut out[(i0 - rows.start + r) * qs + h * hd + c..][..cw];
                            let s = f_splat(inv[r]);
                            f_store(o, f_mul(acc[r][0], s));
                            if cw > LANES {
                                f_store(&mut o[LANES..], f_mul(acc[r][1], s));
                            }
                        }
                        c += cw;
                    }
                    i0 += tr;
                }
            }
        }
    }
}

fn attend_cache(key: &[Option<usize>]) -> TokenStream {
    let hd = bind("hd", key[0], quote!(at.head_dim));
    quote! {
        #hd
        assert_eq!(at.head_dim, hd, "attend_cache: head_dim");
        let stride = at.stride;
        assert!(hd > 0 && q.len() % hd == 0, "attend_cache: {} query values are not heads of {hd}", q.len());
        let nq = q.len() / hd;
        assert!(out.len() >= nq * hd, "attend_cache: output too short");
        let nk: usize = at.spans.iter().map(|s| s.len()).sum();
        assert!(scratch.len() >= nq * nk, "attend_cache: scratch holds fewer than {nq} x {nk} scores");
        for s in at.spans {
            assert!(
                s.is_empty() || (s.end - 1) * stride + hd <= k.len().min(v.len()),
                "attend_cache: rows {s:?} (stride {stride}) outside the cache"
            );
        }
        let out = &mut out[..nq * hd];
        out.fill(0.0);
        if nk == 0 {
            return;
        }
        // Scores `[query][key]`, key by key: a key row is loaded once and
        // stays in L1 for every query head.
        let sc = &mut scratch[..nq * nk];
        let mut j = 0;
        for s in at.spans {
            for row in s.clone() {
                let kr = &k[row * stride..][..hd];
                for r in 0..nq {
                    sc[r * nk + j] = dot_f32(&q[r * hd..][..hd], kr) * at.scale;
                }
                j += 1;
            }
        }
        // Softmax weights, normalized in place.
        for r in sc.chunks_exact_mut(nk) {
            let mx = r.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let sum = exp_sub_sum(r, mx);
            scale_f32(r, 1.0 / sum);
        }
        // Weighted values, value row by value row (each read once).
        let mut j = 0;
        for s in at.spans {
            for row in s.clone() {
                let vr = &v[row * stride..][..hd];
                for (r, o) in out.chunks_exact_mut(hd).enumerate() {
                    axpy(o, sc[r * nk + j], vr);
                }
                j += 1;
            }
        }
    }
}

fn unary(op: TokenStream) -> TokenStream {
    quote! {
        let n = x.len();
        let mut i = 0;
        while i + LANES <= n {
            let r = #op(f_load(&x[i..]));
            f_store(&mut x[i..], r);
            i += LANES;
        }
        if i < n {
            let mut buf = [0.0f32; LANES];
            buf[..n - i].copy_from_slice(&x[i..]);
            let r = #op(f_load(&buf));
            f_store(&mut buf, r);
            x[i..].copy_from_slice(&buf[..n - i]);
        }
    }
}

fn geglu_q8_0(key: &[Option<usize>]) -> TokenStream {
    let dim = bind("dim", key[0], quote!(gate.len().max(32)));
    quote! {
        #dim
        assert!(dim % 32 == 0, "geglu_q8_0: dim {dim} is not a multiple of 32");
        assert_eq!(gate.len(), up.len(), "geglu_q8_0: gate vs up");
        assert!(gate.len() % dim == 0, "geglu_q8_0: {} values are not rows of {dim}", gate.len());
        assert_eq!(out.len() * 32, gate.len(), "geglu_q8_0: output blocks");
        for ((g, u), ob) in gate.chunks_exact(32).zip(up.chunks_exact(32)).zip(out.iter_mut()) {
            let mut buf = [0.0f32; 32];
            let mut i = 0;
            while i < 32 {
                let r = f_mul(gelu_tanh_v(f_load(&g[i..])), f_load(&u[i..]));
                f_store(&mut buf[i..], r);
                i += LANES;
            }
            q8_quant(&buf, ob);
        }
    }
}

fn gather_q8_0(key: &[Option<usize>]) -> TokenStream {
    let d = bind("d", key[0], quote!(dim));
    quote! {
        #d
        assert!(dim == d && d % 32 == 0, "gather_q8_0: dim {dim} is not a multiple of 32");
        let nb = d / 32;
        assert_eq!(out.len(), ids.len() * d, "gather_q8_0: output length");
        let sv = f_splat(scale);
        for (&id, or) in ids.iter().zip(out.chunks_exact_mut(d)) {
            let row = &table[id as usize * nb..][..nb];
            for (blk, ob) in row.iter().zip(or.chunks_exact_mut(32)) {
                let dv = f_splat(f16_to_f32(blk.d.to_bits()));
                let mut i = 0;
                while i < 32 {
                    let r = f_mul(f_mul(dv, f_from_i8(&blk.qs[i..])), sv);
                    f_store(&mut ob[i..], r);
                    i += LANES;
                }
            }
        }
    }
}

fn mean_pool(key: &[Option<usize>]) -> TokenStream {
    let dim = bind("dim", key[0], quote!(out.len()));
    quote! {
        #dim
        assert!(out.len() == dim && dim > 0, "mean_pool: output length vs dim {dim}");
        assert!(x.len() % dim == 0, "mean_pool: {} values are not rows of {dim}", x.len());
        let rows = x.len() / dim;
        out.fill(0.0);
        for xr in x.chunks_exact(dim) {
            axpy(out, 1.0, xr);
        }
        if rows > 0 {
            scale_f32(out, 1.0 / rows as f32);
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
