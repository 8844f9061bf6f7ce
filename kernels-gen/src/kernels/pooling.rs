//! Pooling a sequence into one embedding: the mean of its rows (and the
//! L2 normalization after it, declared inline in the family table).

use proc_macro2::TokenStream;
use quote::quote;

use super::bind;

pub(super) fn mean_pool(key: &[Option<usize>]) -> TokenStream {
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
