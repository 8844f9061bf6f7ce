//! Element-wise kernels: quantization to Q8_0, the GELUs and SiLU, GeGLU
//! and SwiGLU fused with quantization, the Q8_0 embedding-row gather (dequantization), and the
//! widening of IEEE halves.

use proc_macro2::TokenStream;
use quote::quote;

use super::bind;

pub(super) fn quantize_q8_0(key: &[Option<usize>]) -> TokenStream {
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

pub(super) fn unary(op: TokenStream) -> TokenStream {
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

pub(super) fn geglu_q8_0(key: &[Option<usize>]) -> TokenStream {
    gated_q8_0("geglu_q8_0", quote!(gelu_tanh_v), key)
}

pub(super) fn swiglu_q8_0(key: &[Option<usize>]) -> TokenStream {
    gated_q8_0("swiglu_q8_0", quote!(silu_v), key)
}

/// `out = Q8_0(act(gate) ⊙ up)` block by block (kernel `name`): the
/// activation of each lane is the unary kernel's, so the result equals
/// quantizing that kernel's output times `up`.
fn gated_q8_0(name: &str, act: TokenStream, key: &[Option<usize>]) -> TokenStream {
    let dim = bind("dim", key[0], quote!(gate.len().max(32)));
    let (m_dim, m_up, m_rows, m_out) = (
        format!("{name}: dim {{dim}} is not a multiple of 32"),
        format!("{name}: gate vs up"),
        format!("{name}: {{}} values are not rows of {{dim}}"),
        format!("{name}: output blocks"),
    );
    quote! {
        #dim
        assert!(dim % 32 == 0, #m_dim);
        assert_eq!(gate.len(), up.len(), #m_up);
        assert!(gate.len() % dim == 0, #m_rows, gate.len());
        assert_eq!(out.len() * 32, gate.len(), #m_out);
        for ((g, u), ob) in gate.chunks_exact(32).zip(up.chunks_exact(32)).zip(out.iter_mut()) {
            let mut buf = [0.0f32; 32];
            let mut i = 0;
            while i < 32 {
                let r = f_mul(#act(f_load(&g[i..])), f_load(&u[i..]));
                f_store(&mut buf[i..], r);
                i += LANES;
            }
            q8_quant(&buf, ob);
        }
    }
}

pub(super) fn gather_q8_0(key: &[Option<usize>]) -> TokenStream {
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

pub(super) fn widen_f16() -> TokenStream {
    quote! {
        assert!(out.len() >= src.len(), "widen_f16: output too short");
        let n = src.len();
        let mut i = 0;
        while i + LANES <= n {
            f_store(&mut out[i..], f_load_f16(&src[i..]));
            i += LANES;
        }
        while i < n {
            out[i] = f16_to_f32(src[i]);
            i += 1;
        }
    }
}
