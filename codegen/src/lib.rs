//! Proc macros of kiln: [`macro@model`] compiles one GGUF embedding model,
//! known at build time, into a type.
//!
//! Use it through the facade, `#[kiln::model(...)]`: the expansion refers
//! to `::kiln` paths.

mod args;
mod expand;
mod inspect;
mod no_kernels;

use proc_macro::TokenStream;
use quote::ToTokens;
use syn::{ItemStruct, parse_macro_input};

/// Compiles the GGUF embedding model at `path` into the unit struct it
/// annotates. See the `kiln` crate's docs of `kiln::model` for the options
/// and the generated API.
#[proc_macro_attribute]
pub fn model(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(attr as args::Args);
    let item = parse_macro_input!(item as ItemStruct);
    match expand::expand(&args, &item) {
        Ok(tokens) => tokens.into(),
        Err(e) => {
            // Keep the struct so that its uses do not add errors of their own.
            let mut tokens = e.to_compile_error();
            tokens.extend(item.into_token_stream());
            tokens.into()
        }
    }
}
