//! Assembles one module per ISA (ops, kernels, safe entry points, the
//! `KernelSet` impl) and formats it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::kernels::{FAMILIES, Family};
use crate::lower::Lowering;
use crate::ops::OPS;
use crate::shapes::ShapeTable;

/// One generated function, for `kiln kernels --show` and the snapshots
/// (formatted only when asked for: formatting every function of every ISA
/// would cost the build as much as generating them).
pub struct Source {
    /// Function name (`rms_norm_768`, `q8_dot`).
    pub name: String,
    /// The function's tokens.
    pub tokens: TokenStream,
}

impl Source {
    /// The function's formatted Rust source.
    pub fn text(&self) -> String {
        format_tokens(self.tokens.clone())
    }
}

/// `#[inline] #[target_feature(...)]` for ops, `#[target_feature(...)]` for kernels.
fn feature_attr(l: &dyn Lowering) -> TokenStream {
    match l.features() {
        Some(f) => quote!(#[target_feature(enable = #f)]),
        None => quote!(),
    }
}

/// Every op as an inline function of the ISA module.
fn ops(l: &dyn Lowering) -> Vec<(String, TokenStream)> {
    let attr = feature_attr(l);
    OPS.iter()
        .map(|op| {
            let sig = (op.sig)();
            let body = l
                .op(op.op)
                .or_else(|| op.composite.map(|c| c()))
                .unwrap_or_else(|| {
                    panic!(
                        "lowering {} has no body for primitive {}",
                        l.module(),
                        op.name
                    )
                });
            let doc = format!(" {}", op.doc);
            let tokens = quote! {
                #[doc = #doc]
                #[inline]
                #attr
                #sig { #body }
            };
            (op.name.to_string(), tokens)
        })
        .collect()
}

/// The keys a family is specialized for, then the generic key.
fn keys(f: &Family, shapes: &ShapeTable) -> Vec<Vec<Option<usize>>> {
    if f.reference_only {
        return vec![vec![None; f.key.len()]];
    }
    let mut out: Vec<Vec<Option<usize>>> = shapes
        .keys(f.getter)
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|k| k.iter().map(|&v| Some(v)).collect())
        .collect();
    out.push(vec![None; f.key.len()]);
    out
}

/// The generated module of one ISA and the sources of its functions.
pub fn isa_module(l: &dyn Lowering, shapes: &ShapeTable) -> (TokenStream, Vec<Source>) {
    let module = format_ident!("{}", l.module());
    let attr = feature_attr(l);
    let prelude = l.prelude();
    let wide_types = l.wide_types();
    let prepared_types = l.prepared_types();
    let mut items = Vec::new();
    let mut named = Vec::new();
    for (name, t) in ops(l) {
        named.push((name, t.clone()));
        items.push(t);
    }
    let mut getters = Vec::new();
    let mut variants = Vec::new();
    for f in FAMILIES.iter().chain(crate::kquant::FAMILIES) {
        let params = (f.fn_type.params)();
        let args: Vec<_> = f
            .fn_type
            .args
            .iter()
            .map(|a| format_ident!("{a}"))
            .collect();
        let mut arms = Vec::new();
        let mut generic_entry = None;
        // Keys whose bodies are the same tokens share one function (the
        // 8-row-group matmuls only specialize `k`, so every `n` of a `k`
        // would otherwise compile the same code again).
        let mut groups: Vec<(TokenStream, Vec<Vec<Option<usize>>>)> = Vec::new();
        for key in keys(f, shapes) {
            let body = match f.wide_body {
                Some(wide) if l.wide_groups() => wide(&key),
                _ => (f.body)(&key),
            };
            let text = body.to_string();
            match groups.iter_mut().find(|(b, _)| b.to_string() == text) {
                Some((_, same)) => same.push(key),
                None => groups.push((body, vec![key])),
            }
        }
        for (body, same) in groups {
            let name = f.variant_name(&same[0]);
            let kernel = format_ident!("{name}");
            let specialized: Vec<String> = same
                .iter()
                .filter(|key| key.iter().all(Option::is_some) && !key.is_empty())
                .map(|key| {
                    let parts: Vec<String> = f
                        .key
                        .iter()
                        .zip(key)
                        .map(|(k, v)| format!("{k} = {}", v.expect("specialized")))
                        .collect();
                    parts.join(", ")
                })
                .collect();
            let spec = if specialized.is_empty() {
                String::new()
            } else {
                format!(" Specialized for {}.", specialized.join("; "))
            };
            let doc = format!(" {}{spec}", f.doc);
            let kernel_fn = quote! {
                #[doc = #doc]
                #attr
                fn #kernel(#params) { #body }
            };
            named.push((name.clone(), kernel_fn.clone()));
            items.push(kernel_fn);
            variants.push(name.clone());
            // Safe entry point with the fn-pointer type's signature.
            let entry = if l.features().is_some() {
                let entry = format_ident!("{name}_entry");
                let why = format!(
                    "this private function is only reachable through `{}::detect`, which returns the \
                     kernel set only after the CPU reported every feature of `{}`.",
                    l.module(),
                    l.features().expect("checked")
                );
                items.push(quote! {
                    fn #entry(#params) {
                        __SAFETY__!(#why);
                        unsafe { #kernel(#(#args),*) }
                    }
                });
                entry
            } else {
                kernel
            };
            for key in &same {
                if key.iter().all(Option::is_some) && !key.is_empty() {
                    let vals = key.iter().map(|v| v.expect("specialized"));
                    arms.push(quote!((#(#vals,)*) => #entry,));
                } else {
                    generic_entry = Some(entry.clone());
                }
            }
        }
        let getter = format_ident!("{}", f.getter);
        let fn_type = format_ident!("{}", f.fn_type.name);
        let key_ids: Vec<_> = f.key.iter().map(|k| format_ident!("{k}")).collect();
        let generic = generic_entry.expect("every family has a generic variant");
        let body = if key_ids.is_empty() {
            quote!(#generic)
        } else {
            quote! {
                match (#(#key_ids,)*) {
                    #(#arms)*
                    _ => #generic,
                }
            }
        };
        getters.push(quote! {
            fn #getter(&self, #(#key_ids: usize),*) -> #fn_type { #body }
        });
    }
    // The int8 peak probe for benches: not a KernelSet kernel.
    let probe_body = crate::kernels::matmul::int8_dot_probe();
    let probe_fn = quote! {
        /// Times nothing itself: 8 chains of `q8_dot`, `iters` rounds (see `kiln_kernels_gen::kernels::int8_dot_probe`).
        #attr
        fn int8_dot_probe(xs: &[[i8; 32]; 8], iters: usize) -> i32 { #probe_body }
    };
    named.push(("int8_dot_probe".to_string(), probe_fn.clone()));
    items.push(probe_fn);
    let probe_entry = if l.features().is_some() {
        let why = format!(
            "only handed out by `int8_dot_probe_fn` after `detect` confirmed `{}`.",
            l.features().expect("checked")
        );
        items.push(quote! {
            fn int8_dot_probe_entry(xs: &[[i8; 32]; 8], iters: usize) -> i32 {
                __SAFETY__!(#why);
                unsafe { int8_dot_probe(xs, iters) }
            }
        });
        format_ident!("int8_dot_probe_entry")
    } else {
        format_ident!("int8_dot_probe")
    };
    // The register-only int8 ceiling probes: not KernelSet kernels either.
    let mut ceiling_pushes = Vec::new();
    for (i, form) in l.int8_ceiling().into_iter().enumerate() {
        let Some(form) = form else { continue };
        let name = if i == 0 {
            "int8_ceiling_probe".to_string()
        } else {
            format!("int8_ceiling_probe{}", i + 1)
        };
        let probe = format_ident!("{name}");
        let body = crate::kernels::matmul::int8_ceiling_probe(i > 0, form.chains);
        let doc = format!(
            " Times nothing itself: {} chains of `{}` ({} multiply-adds each) on registers, `iters` rounds (see `kiln_kernels_gen::kernels::int8_ceiling_probe`).",
            form.chains, form.name, form.macs
        );
        let probe_fn = quote! {
            #[doc = #doc]
            #attr
            fn #probe(xs: &[[i8; 64]; 2], iters: usize) -> i32 { #body }
        };
        named.push((name.clone(), probe_fn.clone()));
        items.push(probe_fn);
        let entry = if let Some(features) = l.features() {
            let entry = format_ident!("{name}_entry");
            let extra = if form.detect.is_some() {
                " and the form's own check".to_string()
            } else {
                String::new()
            };
            let why = format!(
                "only handed out by `int8_ceiling_probes` after `detect` confirmed `{features}`{extra}."
            );
            items.push(quote! {
                fn #entry(xs: &[[i8; 64]; 2], iters: usize) -> i32 {
                    __SAFETY__!(#why);
                    unsafe { #probe(xs, iters) }
                }
            });
            entry
        } else {
            probe
        };
        let (label, macs, chains, in_ceiling) =
            (form.name, form.macs, form.chains, form.in_ceiling);
        let push = quote! {
            v.push((#label, #macs, #chains, #in_ceiling, #entry as fn(&[[i8; 64]; 2], usize) -> i32));
        };
        ceiling_pushes.push(match form.detect {
            Some(check) => quote!(if #check { #push }),
            None => push,
        });
    }
    let ceiling_body = if ceiling_pushes.is_empty() {
        quote!(Vec::new())
    } else {
        quote! {
            let mut v = Vec::new();
            if detect().is_some() {
                #(#ceiling_pushes)*
            }
            v
        }
    };
    let isa = format_ident!("{}", l.isa_variant());
    let detect = l.detect();
    let cfg = match l.target_arch() {
        Some(a) => quote!(#[cfg(target_arch = #a)]),
        None => quote!(),
    };
    let features = match (l.features(), l.build_features()) {
        (Some(f), _) => f.to_string(),
        (None, []) => "portable Rust".to_string(),
        (None, build) => format!("a build with {}", build.join(",")),
    };
    let module_doc = format!(" Kernels lowered for `{}` ({features}).", l.module());
    let tokens = quote! {
        #cfg
        #[doc = #module_doc]
        pub mod #module {
            use half::f16;
            use kiln_runtime::kernels::*;
            use kiln_runtime::quant::{
                BlockQ4_1x8, BlockQ4K, BlockQ4Kx8, BlockQ5_0, BlockQ6K, BlockQ6Kx8, BlockQ8_0,
                BlockQ8_0x8, BlockQ8K,
            };
            #prelude
            #wide_types
            #prepared_types
            #(#items)*
            /// This ISA's kernel set; only [`detect`] hands it out.
            pub struct Kernels {
                _detected: (),
            }
            static KERNELS: Kernels = Kernels { _detected: () };
            /// The kernel set, if the running CPU supports this ISA.
            pub fn detect() -> Option<&'static dyn KernelSet> {
                if #detect { Some(&KERNELS) } else { None }
            }
            /// The int8 dot peak probe, if the running CPU supports this ISA.
            pub fn int8_dot_probe_fn() -> Option<fn(&[[i8; 32]; 8], usize) -> i32> {
                detect().map(|_| #probe_entry as fn(&[[i8; 32]; 8], usize) -> i32)
            }
            /// The register-only int8 ceiling probes the running CPU can run, best
            /// form first: (instructions, multiply-adds per op, chains, whether it
            /// counts toward this ISA's ceiling, probe).
            #[allow(clippy::type_complexity, reason = "a plain tuple keeps the generated code free of facade types")]
            pub fn int8_ceiling_probes() -> Vec<(&'static str, usize, usize, bool, fn(&[[i8; 64]; 2], usize) -> i32)> {
                #ceiling_body
            }
            /// Every kernel variant compiled for this ISA.
            pub const VARIANTS: &[&str] = &[#(#variants),*];
            impl KernelSet for Kernels {
                fn isa(&self) -> Isa { Isa::#isa }
                #(#getters)*
            }
        }
    };
    let sources = named
        .into_iter()
        .map(|(name, tokens)| Source { name, tokens })
        .collect();
    (tokens, sources)
}

/// Formats tokens with prettyplease and turns `__SAFETY__!("why");`
/// markers into `// SAFETY: why` comments (token streams carry no comments).
pub fn format_tokens(t: TokenStream) -> String {
    let file: syn::File = syn::parse2(t).unwrap_or_else(|e| panic!("generator: bad tokens: {e}"));
    let text = prettyplease::unparse(&file);
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("__SAFETY__!(") {
            // prettyplease may wrap a long marker over several lines.
            let mut call = rest.to_string();
            while !call.trim_end().ends_with(");") {
                let next = lines.next().expect("generator: unterminated SAFETY marker");
                call.push_str(next.trim());
            }
            let lit = call.trim_end().trim_end_matches(';').trim_end_matches(')');
            let why = syn::parse_str::<syn::LitStr>(lit)
                .expect("generator: SAFETY marker takes one string literal")
                .value();
            let indent = &line[..line.len() - trimmed.len()];
            let _ = writeln!(out, "{indent}// SAFETY: {why}");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
