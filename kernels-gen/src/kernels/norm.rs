//! RMSNorm (alone and fused with Q8_0 quantization) and LayerNorm.

use proc_macro2::TokenStream;
use quote::quote;

use super::bind;

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

pub(super) fn rms_norm(key: &[Option<usize>]) -> TokenStream {
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

pub(super) fn rms_norm_q8_0(key: &[Option<usize>]) -> TokenStream {
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

pub(super) fn layer_norm(key: &[Option<usize>]) -> TokenStream {
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
