//! Rotary position embedding.

use proc_macro2::TokenStream;
use quote::quote;

use super::bind;

pub(super) fn rope(key: &[Option<usize>]) -> TokenStream {
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
