//! Attention over a sequence (tiled) and over a decoder's cache.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::bind;

pub(super) fn attention(key: &[Option<usize>]) -> TokenStream {
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

pub(super) fn attend_cache(key: &[Option<usize>]) -> TokenStream {
    cache_body("attend_cache", key, quote!(dot_f32), quote!(axpy))
}

/// The same over a cache of IEEE halves: rows are converted as they are
/// read, by ops that sum in `dot_f32`'s and `axpy`'s order, so the result
/// is the f32 kernel's over the converted cache.
pub(super) fn attend_cache_f16(key: &[Option<usize>]) -> TokenStream {
    cache_body(
        "attend_cache_f16",
        key,
        quote!(dot_f32_f16),
        quote!(axpy_f16),
    )
}

/// The cache attention body for a row type: `dot` and `axpy` read a key or
/// value row of it; `name` prefixes the panic messages.
fn cache_body(
    name: &str,
    key: &[Option<usize>],
    dot: TokenStream,
    axpy: TokenStream,
) -> TokenStream {
    let hd = bind("hd", key[0], quote!(at.head_dim));
    let msg = |m: &str| Literal::string(&format!("{name}: {m}"));
    let (m_hd, m_heads, m_out, m_scratch, m_rows) = (
        msg("head_dim"),
        msg("{} query values are not heads of {hd}"),
        msg("output too short"),
        msg("scratch holds fewer than {nq} x {nk} scores"),
        msg("rows {s:?} (stride {stride}) outside the cache"),
    );
    quote! {
        #hd
        assert_eq!(at.head_dim, hd, #m_hd);
        let stride = at.stride;
        assert!(hd > 0 && q.len() % hd == 0, #m_heads, q.len());
        let nq = q.len() / hd;
        assert!(out.len() >= nq * hd, #m_out);
        let nk: usize = at.spans.iter().map(|s| s.len()).sum();
        assert!(scratch.len() >= nq * nk, #m_scratch);
        for s in at.spans {
            assert!(
                s.is_empty() || (s.end - 1) * stride + hd <= k.len().min(v.len()),
                #m_rows
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
                    sc[r * nk + j] = #dot(&q[r * hd..][..hd], kr) * at.scale;
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
                    #axpy(o, sc[r * nk + j], vr);
                }
                j += 1;
            }
        }
    }
}
