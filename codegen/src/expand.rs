//! The code `#[model]` emits for a checked model.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_runtime::gguf::{OwnedValue, StaticValue, describe};
use kiln_runtime::prompts;
use proc_macro2::{Literal, TokenStream};
use quote::{ToTokens, quote};
use syn::{Fields, ItemStruct};

use crate::args::Args;
use crate::inspect::{MODEL_DIR_ENV, Model, inspect};

fn err(tokens: impl ToTokens, msg: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(tokens, msg.to_string())
}

/// Checks the attribute and the file, and emits the item with its impl.
pub(crate) fn expand(args: &Args, item: &ItemStruct) -> syn::Result<TokenStream> {
    if !matches!(item.fields, Fields::Unit) {
        return Err(err(
            &item.fields,
            "#[kiln::model] goes on a unit struct: `pub struct MyModel;`",
        ));
    }
    if !item.generics.params.is_empty() {
        return Err(err(&item.generics, "#[kiln::model] takes no generics"));
    }
    let model = inspect(args)?;
    let dim = match &args.dim {
        Some(lit) => {
            let d: usize = lit.base10_parse()?;
            if d == 0 || d > model.model_dim {
                return Err(err(
                    lit,
                    format!(
                        "dim {d} is not a width of this model (1..={})",
                        model.model_dim
                    ),
                ));
            }
            d
        }
        None => model.model_dim,
    };
    if let Some(task) = &args.task
        && prompts::lookup(&model.gguf_arch, &task.value()).is_none()
    {
        let known = prompts::names(&model.gguf_arch);
        return Err(err(
            task,
            format!(
                "`{}` has no task `{}`; known tasks: {}",
                model.gguf_arch,
                task.value(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    if let Some(threads) = &args.threads
        && threads.base10_parse::<usize>()? == 0
    {
        return Err(err(threads, "threads must be at least 1"));
    }
    if !model.missing_kernels.is_empty() && !args.generic_kernels {
        return Err(err(
            &args.path,
            format!(
                "kiln has no kernels specialized for some shapes of this model: {}. Add the \
                 model to kiln-kernels-gen's built-in shape table, or accept the slower \
                 generic kernels with `kernels = \"generic\"`",
                model.missing_kernels.join(", ")
            ),
        ));
    }
    let layout = layout_tokens(&model).map_err(|key| {
        err(
            &args.path,
            format!(
                "metadata key `{key}` is an array of arrays, which #[kiln::model] cannot embed"
            ),
        )
    })?;
    Ok(emit(args, item, &model, dim, &layout))
}

/// The `StaticLayout` literal of the model's header.
fn layout_tokens(model: &Model) -> Result<TokenStream, String> {
    let owned = describe(&model.file)?;
    let p = quote!(::kiln::runtime::gguf);
    let metadata = owned.metadata.iter().map(|(key, v)| {
        let value = match v {
            OwnedValue::Str(s) => quote!(#p::StaticValue::Str(#s)),
            OwnedValue::Scalar(s) => scalar_tokens(s),
        };
        quote!((#key, #value))
    });
    let tensors = model.file.tensors().iter().map(|t| {
        let name = &t.name;
        let dims = t.dims.iter().map(|&d| Literal::u64_unsuffixed(d));
        let ty = t.ty.id();
        let (offset, n_bytes) = (t.offset, t.n_bytes);
        quote!(#p::StaticTensor { name: #name, dims: &[#(#dims),*], ty: #ty, offset: #offset, n_bytes: #n_bytes })
    });
    let (file_len, version, alignment, data_offset) = (
        owned.file_len,
        owned.version,
        owned.alignment,
        owned.data_offset,
    );
    Ok(quote! {
        #p::StaticLayout {
            file_len: #file_len,
            version: #version,
            alignment: #alignment,
            data_offset: #data_offset,
            metadata: &[#(#metadata),*],
            tensors: &[#(#tensors),*],
        }
    })
}

fn scalar_tokens(v: &StaticValue) -> TokenStream {
    let p = quote!(::kiln::runtime::gguf::StaticValue);
    match *v {
        StaticValue::U8(x) => quote!(#p::U8(#x)),
        StaticValue::I8(x) => quote!(#p::I8(#x)),
        StaticValue::U16(x) => quote!(#p::U16(#x)),
        StaticValue::I16(x) => quote!(#p::I16(#x)),
        StaticValue::U32(x) => quote!(#p::U32(#x)),
        StaticValue::I32(x) => quote!(#p::I32(#x)),
        StaticValue::U64(x) => quote!(#p::U64(#x)),
        StaticValue::I64(x) => quote!(#p::I64(#x)),
        // Bit patterns keep every float exact (NaN and -0.0 included).
        StaticValue::F32(x) => {
            let bits = x.to_bits();
            quote!(#p::F32(f32::from_bits(#bits)))
        }
        StaticValue::F64(x) => {
            let bits = x.to_bits();
            quote!(#p::F64(f64::from_bits(#bits)))
        }
        StaticValue::Bool(x) => quote!(#p::Bool(#x)),
        StaticValue::Str(s) => quote!(#p::Str(#s)),
        StaticValue::Array {
            elem,
            len,
            start,
            end,
        } => quote!(#p::Array { elem: #elem, len: #len, start: #start, end: #end }),
    }
}

/// The module-level items that hold the file's bytes and the body of
/// `gguf_bytes()`.
///
/// On Linux (ELF) the assembler copies the file into a read-only section
/// with `.incbin`; a `const` that takes `include_bytes!(..).len()` makes
/// rustc record the file as a dependency, so cargo rebuilds when it changes.
/// Elsewhere the file is `include_bytes!` into a 64-byte aligned static.
/// Measured on EmbeddingGemma (333 MB), release profile with line tables,
/// rustc on the example crate: `.incbin` 13.7 s and 1.8 GB peak RSS, the
/// aligned static 51 s and 5.5 GB (LLVM is slow on the huge constant when
/// debug info is on; without debug info both take ~5 s).
fn bytes_tokens(item: &ItemStruct, abs: &str, len: u64) -> (TokenStream, TokenStream) {
    // Expansions in one crate get distinct symbols even for the same struct
    // name and file in two modules: rustc expands a crate's macros in one
    // process, in a fixed order, so the count is stable across builds.
    static EXPANSION: AtomicUsize = AtomicUsize::new(0);
    let mut h = DefaultHasher::new();
    EXPANSION.fetch_add(1, Ordering::Relaxed).hash(&mut h);
    abs.hash(&mut h);
    len.hash(&mut h);
    std::env::var("CARGO_CRATE_NAME").ok().hash(&mut h);
    std::env::var("CARGO_PKG_VERSION").ok().hash(&mut h);
    let sym = format!("__kiln_model_{}_{:016x}", item.ident, h.finish());
    let sym_ident = proc_macro2::Ident::new(&sym, proc_macro2::Span::call_site());
    // An assembler string: escape quotes and backslashes; `{}` are
    // placeholders in asm templates.
    let incbin = abs
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('{', "{{")
        .replace('}', "}}");
    let lines = [
        format!(".pushsection .rodata.{sym},\"a\""),
        ".balign 64".to_owned(),
        format!(".globl {sym}"),
        format!(".hidden {sym}"),
        format!("{sym}:"),
        format!(".incbin \"{incbin}\""),
        ".popsection".to_owned(),
    ];
    let n = Literal::u64_unsuffixed(len);
    let items = quote! {
        #[cfg(target_os = "linux")]
        ::core::arch::global_asm!(#(#lines),*);
        // SAFETY: the symbol is the `N` bytes the assembler copies from the
        // file above, in a read-only section; nothing writes to it.
        #[cfg(target_os = "linux")]
        unsafe extern "C" {
            #[doc(hidden)]
            safe static #sym_ident: [u8; #n];
        }
        // Tracks the file for rebuilds (see `bytes_tokens` in kiln-codegen).
        #[cfg(target_os = "linux")]
        const _: usize = ::core::include_bytes!(#abs).len();
    };
    let body = quote! {
        #[cfg(target_os = "linux")]
        {
            &#sym_ident
        }
        #[cfg(not(target_os = "linux"))]
        {
            static BYTES: ::kiln::__private::Aligned<#n> =
                ::kiln::__private::Aligned(*::core::include_bytes!(#abs));
            &BYTES.0
        }
    };
    (items, body)
}

fn emit(
    args: &Args,
    item: &ItemStruct,
    model: &Model,
    dim: usize,
    layout: &TokenStream,
) -> TokenStream {
    let name = &item.ident;
    let model_dim = model.model_dim;
    let context = model.context;
    let arch = &model.gguf_arch;
    let specialized = model.missing_kernels.is_empty();
    let abs = model.path.to_string_lossy().into_owned();
    let file_name = model
        .path
        .file_name()
        .map_or_else(|| abs.clone(), |n| n.to_string_lossy().into_owned());
    let label = format!("embedded:{file_name}");
    let env = MODEL_DIR_ENV;
    let (bytes_items, bytes) = bytes_tokens(item, &abs, model.file.len());
    let path_env = args.path_env.iter();

    let mut builder = TokenStream::new();
    if let Some(t) = &args.threads {
        builder.extend(quote!(let b = b.threads(#t);));
    }
    if let Some(t) = &args.task {
        builder.extend(quote!(let b = b.task(#t);));
    }
    if let Some(n) = args.normalize {
        builder.extend(quote!(let b = b.normalize(#n);));
    }
    if dim != model_dim {
        builder.extend(quote!(let b = b.dim(#dim);));
    }
    let doc_dim = format!(
        "Embeds one text: a vector of {dim} values{}.",
        if dim == model_dim {
            String::new()
        } else {
            format!(" (the first {dim} of the model's {model_dim}, Matryoshka)")
        }
    );
    quote! {
        #item

        #bytes_items

        // A rebuild when the variables that choose the file change: rustc
        // records the variables that `option_env!` reads.
        const _: () = {
            let _ = ::core::option_env!(#env);
            #(let _ = ::core::option_env!(#path_env);)*
        };

        impl #name {
            /// Width of the vectors [`embed`](Self::embed) returns.
            pub const DIM: usize = #dim;
            /// Full width of the model's vectors (the largest Matryoshka width).
            pub const MODEL_DIM: usize = #model_dim;
            /// Most tokens one input may have (prompt and special tokens included).
            pub const MAX_TOKENS: usize = #context;
            /// The model's GGUF architecture.
            pub const ARCH: &'static str = #arch;
            /// Whether kiln's built-in kernel table has a shape-specialized
            /// kernel for every step of this model.
            pub const SPECIALIZED_KERNELS: bool = #specialized;

            /// The model file as compiled into the binary, 64-byte aligned.
            pub fn gguf_bytes() -> &'static [u8] {
                #bytes
            }

            /// The model file, put together from the header the build parsed
            /// (no parsing at run time).
            pub fn gguf() -> ::core::result::Result<::kiln::runtime::gguf::GgufFile, ::kiln::Error> {
                static LAYOUT: ::kiln::runtime::gguf::StaticLayout = #layout;
                ::core::result::Result::Ok(::kiln::runtime::gguf::GgufFile::from_static_layout(
                    Self::gguf_bytes(),
                    #label,
                    &LAYOUT,
                )?)
            }

            /// A builder holding this type's defaults (the attribute's
            /// `threads`, `task`, `normalize` and `dim`), to change and pass
            /// to [`open`](Self::open).
            pub fn builder() -> ::kiln::EmbedderBuilder {
                let b = ::kiln::Embedder::builder();
                #builder
                b
            }

            /// Opens a new [`kiln::Embedder`] over the compiled-in model with
            /// `builder`'s options: the whole runtime API (batches, per-call
            /// options, tokenization) on the embedded weights.
            pub fn open(
                builder: ::kiln::EmbedderBuilder,
            ) -> ::core::result::Result<::kiln::Embedder, ::kiln::Error> {
                builder.open_file(::kiln::__private::Arc::new(Self::gguf()?))
            }

            /// The shared embedder behind [`embed`](Self::embed), opened on
            /// first use with [`builder`](Self::builder)'s options.
            pub fn embedder() -> ::core::result::Result<&'static ::kiln::Embedder, ::kiln::Error> {
                static EMBEDDER: ::kiln::__private::OnceLock<::kiln::Embedder> =
                    ::kiln::__private::OnceLock::new();
                if let ::core::option::Option::Some(e) = EMBEDDER.get() {
                    return ::core::result::Result::Ok(e);
                }
                let e = Self::open(Self::builder())?;
                ::core::result::Result::Ok(EMBEDDER.get_or_init(|| e))
            }

            #[doc = #doc_dim]
            pub fn embed(text: &str) -> ::core::result::Result<[f32; #dim], ::kiln::Error> {
                let mut out = [0.0f32; #dim];
                Self::embedder()?.embed_into(text, &mut out)?;
                ::core::result::Result::Ok(out)
            }

            /// Embeds one text at Matryoshka width `D` (the first `D` values
            /// of the model's vector, re-normalized when normalization is
            /// on); `D` above the model's width does not compile.
            pub fn embed_dim<const D: usize>(
                text: &str,
            ) -> ::core::result::Result<[f32; D], ::kiln::Error> {
                const {
                    assert!(D > 0 && D <= #model_dim, "embed_dim::<D>: D must be in 1..=MODEL_DIM");
                }
                let mut out = [0.0f32; D];
                let call = ::kiln::CallOptions {
                    dim: ::core::option::Option::Some(D),
                    ..::core::default::Default::default()
                };
                Self::embedder()?.embed_into_with(text, &call, &mut out)?;
                ::core::result::Result::Ok(out)
            }

            /// Embeds one text with per-call options (width, task or
            /// prompt, normalization, truncation).
            pub fn embed_with(
                text: &str,
                call: &::kiln::CallOptions,
            ) -> ::core::result::Result<::std::vec::Vec<f32>, ::kiln::Error> {
                Self::embedder()?.embed_with(text, call)
            }

            /// Embeds many texts (packed into shared forward passes that run in
            /// parallel); rows in input order.
            pub fn embed_batch<S: ::core::convert::AsRef<str> + ::core::marker::Sync>(
                texts: &[S],
            ) -> ::core::result::Result<::std::vec::Vec<[f32; #dim]>, ::kiln::Error> {
                let rows = Self::embedder()?.embed_batch(texts)?;
                ::core::result::Result::Ok(
                    rows.into_iter()
                        .map(|r| {
                            let mut a = [0.0f32; #dim];
                            a.copy_from_slice(&r);
                            a
                        })
                        .collect(),
                )
            }
        }
    }
}
