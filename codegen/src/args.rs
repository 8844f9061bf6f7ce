//! The attribute's options: `arch = "...", path = "..."` and the optional
//! defaults of the generated type.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitInt, LitStr, MetaNameValue, Token};

/// Options every `#[model]` accepts, for the error on an unknown one.
const KNOWN: &str = "arch, path, path_env, dim, task, normalize, threads, kernels";

/// The parsed attribute.
pub(crate) struct Args {
    /// `arch = "bert" | "gemma"`.
    pub arch: LitStr,
    /// `path = "models/x.gguf"`.
    pub path: LitStr,
    /// `path_env = "VAR"`: an environment variable that, when set at
    /// compile time, replaces `path`.
    pub path_env: Option<LitStr>,
    /// `dim = 256`: Matryoshka width of `embed`'s array.
    pub dim: Option<LitInt>,
    /// `task = "query"`: a named task prompt of the architecture.
    pub task: Option<LitStr>,
    /// `normalize = false`: turn off L2 normalization.
    pub normalize: Option<bool>,
    /// `threads = 2`: threads per text (default: all cores).
    pub threads: Option<LitInt>,
    /// `kernels = "generic"`: accept shapes without specialized kernels.
    pub generic_kernels: bool,
}

fn lit(value: &Expr) -> syn::Result<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Ok(lit),
        other => Err(syn::Error::new_spanned(other, "expected a literal")),
    }
}

fn str_lit(nv: &MetaNameValue) -> syn::Result<LitStr> {
    match lit(&nv.value)? {
        Lit::Str(s) => Ok(s.clone()),
        other => Err(syn::Error::new_spanned(other, "expected a string literal")),
    }
}

fn int_lit(nv: &MetaNameValue) -> syn::Result<LitInt> {
    match lit(&nv.value)? {
        Lit::Int(i) => {
            i.base10_parse::<usize>()?;
            Ok(i.clone())
        }
        other => Err(syn::Error::new_spanned(
            other,
            "expected an integer literal",
        )),
    }
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let items = Punctuated::<MetaNameValue, Token![,]>::parse_terminated(input)?;
        let (mut arch, mut path, mut path_env, mut dim, mut task) = (None, None, None, None, None);
        let (mut normalize, mut threads) = (None, None);
        let mut generic_kernels = false;
        for nv in &items {
            let Some(name) = nv.path.get_ident() else {
                return Err(syn::Error::new_spanned(
                    &nv.path,
                    format!("unknown option; #[kiln::model] takes: {KNOWN}"),
                ));
            };
            let seen = match name.to_string().as_str() {
                "arch" => arch.replace(str_lit(nv)?).is_some(),
                "path" => path.replace(str_lit(nv)?).is_some(),
                "path_env" => path_env.replace(str_lit(nv)?).is_some(),
                "dim" => dim.replace(int_lit(nv)?).is_some(),
                "task" => task.replace(str_lit(nv)?).is_some(),
                "threads" => threads.replace(int_lit(nv)?).is_some(),
                "normalize" => match lit(&nv.value)? {
                    Lit::Bool(b) => normalize.replace(b.value).is_some(),
                    other => return Err(syn::Error::new_spanned(other, "expected true or false")),
                },
                "kernels" => {
                    let s = str_lit(nv)?;
                    match s.value().as_str() {
                        "generic" => generic_kernels = true,
                        "specialized" => generic_kernels = false,
                        _ => {
                            return Err(syn::Error::new_spanned(
                                s,
                                "expected \"specialized\" (the default) or \"generic\"",
                            ));
                        }
                    }
                    false
                }
                other => {
                    return Err(syn::Error::new_spanned(
                        name,
                        format!("unknown option `{other}`; #[kiln::model] takes: {KNOWN}"),
                    ));
                }
            };
            if seen {
                return Err(syn::Error::new_spanned(name, "option given twice"));
            }
        }
        let missing = |what: &str| {
            syn::Error::new(
                Span::call_site(),
                format!("#[kiln::model] needs `{what} = \"...\"`"),
            )
        };
        Ok(Args {
            arch: arch.ok_or_else(|| missing("arch"))?,
            path: path.ok_or_else(|| missing("path"))?,
            path_env,
            dim,
            task,
            normalize,
            threads,
            generic_kernels,
        })
    }
}
