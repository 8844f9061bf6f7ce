//! Lowering tables: one per instruction set.
//!
//! A lowering says how the ISA's code is compiled and detected (target arch,
//! `#[target_feature]` list, detection expression), defines the abstract types
//! of [`crate::ops`] in its prelude, and gives a body for every primitive op.
//! Adding an ISA means adding one file here and listing it in [`all`].

use proc_macro2::{Delimiter, TokenStream, TokenTree};

mod avx2;
mod avx512;
mod neon;
mod scalar;

pub use avx2::Avx2;
pub use avx512::Avx512Vnni;
pub use neon::Neon;
pub use scalar::Scalar;

/// How one instruction set lowers the ops of [`crate::ops::OPS`].
pub trait Lowering {
    /// Module name and the runtime's `Isa::name()` spelling (`avx2`, `neon_dotprod`...).
    fn module(&self) -> &'static str;
    /// The `kiln_runtime::kernels::Isa` variant, e.g. `Avx2`.
    fn isa_variant(&self) -> &'static str;
    /// `target_arch` the code compiles on; `None` for portable code.
    fn target_arch(&self) -> Option<&'static str>;
    /// The `#[target_feature(enable = ...)]` list; `None` needs no feature.
    fn features(&self) -> Option<&'static str>;
    /// A `bool` expression true when the running CPU has [`Lowering::features`].
    fn detect(&self) -> TokenStream;
    /// `use` items, `const LANES`, `const ATTN_ROWS` (queries per attention
    /// register tile, at most `ATTN_TILE_ROWS`), and the types `F`, `A`, `I`, `QW`, `QX`.
    fn prelude(&self) -> TokenStream;
    /// The body of op `name`; `None` takes the op's composite default.
    fn op(&self, name: &str) -> Option<TokenStream>;
    /// The types `KW` and `KS` of the K-quant ops of [`crate::ops::OPS`].
    fn kquant_prelude(&self) -> TokenStream;
    /// The body of K-quant op `name` of [`crate::ops::OPS`] (asked after [`Lowering::op`]).
    fn kquant_op(&self, name: &str) -> Option<TokenStream>;
}

/// Every lowering that can compile for `target_arch` (as in `CARGO_CFG_TARGET_ARCH`).
pub fn for_target_arch(target_arch: &str) -> Vec<Box<dyn Lowering>> {
    all()
        .into_iter()
        .filter(|l| l.target_arch().is_none_or(|a| a == target_arch))
        .collect()
}

/// Every lowering, scalar first.
pub fn all() -> Vec<Box<dyn Lowering>> {
    vec![
        Box::new(Scalar),
        Box::new(Avx2),
        Box::new(Avx512Vnni),
        Box::new(Neon { dotprod: false }),
        Box::new(Neon { dotprod: true }),
    ]
}

/// The lowering tables' source, scanned by [`check_tables`].
const TABLES: &[(&str, &str)] = &[
    ("scalar.rs", include_str!("scalar.rs")),
    ("avx2.rs", include_str!("avx2.rs")),
    ("avx512.rs", include_str!("avx512.rs")),
    ("neon.rs", include_str!("neon.rs")),
];

/// Checks that every arm of every `match name { ... }` in the lowering
/// tables names an op of [`crate::ops::OPS`]: `op(name)` is only ever asked
/// for declared ops, so an entry with a misspelled or removed name would
/// otherwise be dead code that nobody notices. [`crate::generate`] runs
/// this, so such an entry fails the build.
pub fn check_tables() -> Result<(), String> {
    let known: Vec<&str> = crate::ops::all_ops().map(crate::ops::OpDef::name).collect();
    let mut unknown = Vec::new();
    for (file, src) in TABLES {
        let tokens: TokenStream = src
            .parse()
            .map_err(|e| format!("lowering table {file} does not tokenize: {e}"))?;
        for name in match_arm_names(tokens) {
            if !known.contains(&name.as_str()) {
                unknown.push(format!("{file}: `{name}`"));
            }
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "lowering-table entries that name no op: {}",
            unknown.join(", ")
        ))
    }
}

/// The string-literal patterns of the arms of every `match name { .. }` in
/// `tokens` (a literal directly inside the match braces, followed by `=>`,
/// `|` or an `if` guard).
fn match_arm_names(tokens: TokenStream) -> Vec<String> {
    let mut out = Vec::new();
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, t) in trees.iter().enumerate() {
        if let TokenTree::Group(g) = t {
            let is_match = i >= 2
                && matches!(&trees[i - 2], TokenTree::Ident(m) if m == "match")
                && matches!(&trees[i - 1], TokenTree::Ident(n) if n == "name")
                && g.delimiter() == Delimiter::Brace;
            if is_match {
                let arms: Vec<TokenTree> = g.stream().into_iter().collect();
                for (j, a) in arms.iter().enumerate() {
                    let TokenTree::Literal(lit) = a else { continue };
                    let follows = match arms.get(j + 1) {
                        Some(TokenTree::Punct(p)) => p.as_char() == '=' || p.as_char() == '|',
                        Some(TokenTree::Ident(id)) => id == "if",
                        _ => false,
                    };
                    let text = lit.to_string();
                    if follows && text.starts_with('"') {
                        out.push(text.trim_matches('"').to_string());
                    }
                }
            }
            out.extend(match_arm_names(g.stream()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_entry_names_an_op() {
        check_tables().unwrap();
        // The scan sees the tables' entries (scalar alone lowers every primitive).
        let scalar = match_arm_names(TABLES[0].1.parse().unwrap());
        assert!(scalar.len() > 50, "{} entries", scalar.len());
        let names = match_arm_names(
            r#"fn op(name: &str) { match name { "f_add" | "f_sub" => 1, "q8_dot" if x => 2, "oops" => 3, _ => 4 } }"#
                .parse()
                .unwrap(),
        );
        assert_eq!(names, ["f_add", "f_sub", "q8_dot", "oops"]);
    }
}
