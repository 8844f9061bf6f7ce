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
/// annotates: the binary carries the weights and needs no model file.
///
/// ```ignore
/// #[kiln::model(arch = "bert", path = "models/all-MiniLM-L6-v2-Q8_0.gguf")]
/// pub struct MiniLm;
///
/// let v: [f32; 384] = MiniLm::embed("Hello world")?;
/// ```
///
/// Options:
/// - `arch = "bert" | "gemma"` (required): BERT encoders (GGUF `bert`, e.g.
///   all-MiniLM-L6-v2) or EmbeddingGemma (GGUF `gemma-embedding`); the file
///   must be that architecture.
/// - `path = "..."` (required): the GGUF, relative to the crate's manifest
///   directory, or to `$KILN_MODEL_DIR` when that is set at compile time.
/// - `path_env = "VAR"`: when `VAR` is set at compile time, its value is the
///   path instead.
/// - `dim = N`: Matryoshka width of `embed`'s array (default: the model's).
/// - `task = "query"`: a named task prompt of the architecture (see
///   `kiln::prompts`); checked at compile time.
/// - `normalize = false`: return raw pooled vectors (default: L2-normalized).
/// - `threads = N`: threads per text (default: all cores).
/// - `kernels = "generic"`: accept a model whose shapes kiln's built-in
///   kernel table does not specialize (slower); without it that is an error.
///
/// The type gets `DIM`, `MODEL_DIM`, `MAX_TOKENS`, `ARCH`, `embed(text) ->
/// Result<[f32; DIM]>`, `embed_dim::<D>()` (Matryoshka, `D` checked at
/// compile time), `embed_with(text, &CallOptions)`, `embed_batch`,
/// `embedder()` (the shared `kiln::Embedder`), `builder()` / `open(builder)`
/// (a new embedder with other options, e.g. threads), `gguf()` and
/// `gguf_bytes()`.
///
/// At compile time the header is read (memory-mapped; the weights are not
/// touched), the architecture, tensor types, shapes and options are checked
/// (errors point at the offending option), and the runtime's model
/// constructor and tokenizer builder run over the file. The expansion holds
/// the file in a 64-byte aligned static (`include_bytes!`, so cargo rebuilds
/// when the file changes) and its header as literals, so nothing is parsed at
/// run time; on first use the model is opened from those (tensors resolved
/// through an index built from the literals) and the tokenizer is built from
/// the embedded vocabulary.
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
