//! Lowering tables: one per instruction set.
//!
//! A lowering says how the ISA's code is compiled and detected (target arch,
//! `#[target_feature]` list, detection expression), defines the abstract types
//! of [`crate::ops`] in its prelude, and gives a body for every primitive op.
//! Adding an ISA means adding one file here and listing it in [`all`].

use proc_macro2::TokenStream;

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
    /// The types `KW` and `KS` of [`crate::kquant::OPS`].
    fn kquant_prelude(&self) -> TokenStream;
    /// The body of op `name` of [`crate::kquant::OPS`] (asked after [`Lowering::op`]).
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
