//! Lowering tables: one per instruction set.
//!
//! A lowering says how the ISA's code is compiled and detected (target arch,
//! `#[target_feature]` list, detection expression), defines the abstract types
//! of [`crate::ops`] in its prelude, and gives a body for every primitive op.
//! Adding an ISA means adding one file here and listing it in [`all`].

use proc_macro2::TokenStream;

use crate::ops::Op;

mod avx2;
mod avx512;
mod neon;
mod scalar;
mod wasm;

pub use avx2::Avx2;
pub use avx512::Avx512Vnni;
pub use neon::Neon;
pub use scalar::Scalar;
pub use wasm::Wasm;

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
    /// Target features the whole build must enable for this lowering to be
    /// generated at all (`-C target-feature=...`). WebAssembly's: an engine
    /// cannot be asked at run time, and a module with one instruction it
    /// lacks does not load, so each feature level is its own build.
    fn build_features(&self) -> &'static [&'static str] {
        &[]
    }
    /// A `bool` expression true when the running CPU has [`Lowering::features`].
    fn detect(&self) -> TokenStream;
    /// `use` items, `const LANES`, `const ATTN_ROWS` (queries per attention
    /// register tile, at most `ATTN_TILE_ROWS`), and the abstract types of
    /// [`crate::ops`] (`F`, `A`, `I`, `QW`, `QX`, `R8`, `RI`, `RW`, `RX`, `KW`, `KS`).
    fn prelude(&self) -> TokenStream;
    /// The body of `op`; `None` takes the op's composite default. One table
    /// per ISA: adding an op is one entry here per lowering.
    fn op(&self, op: Op) -> Option<TokenStream>;
    /// Whether the ISA's registers hold 16 int32 lanes, so that the
    /// many-token Q8_0 group matmul runs 16-row tiles (two groups side by
    /// side): each activation quad is then loaded once for 16 rows, as a
    /// broadcast operand of the dot, and a block's scale work is done once
    /// per 16 rows ([`crate::kernels::Family::wide_body`]).
    fn wide_groups(&self) -> bool {
        false
    }
    /// The types of the 16-row Q8_0 group ops (`R16`, `RI16`, `RW16`): pairs
    /// of the 8-row types, unless the ISA holds 16 rows in one register (and
    /// then says so in [`Lowering::wide_groups`] and lowers those ops).
    fn wide_types(&self) -> TokenStream {
        quote::quote! {
            type R16 = (R8, R8);
            type RI16 = (RI, RI);
            type RW16 = (RW, RW);
        }
    }
    /// The type `PX` of an activation block prepared for the 8-row group
    /// tiles (`q8r_prep_x`): the block's quants themselves unless the
    /// lowering prepares them (and says so in its `q8r_prepared` op).
    fn prepared_types(&self) -> TokenStream {
        quote::quote! {
            type PX = [i8; 32];
        }
    }
    /// The register-only int8 ceiling probes: the form the `ceil_*` ops lower
    /// (the ISA's best multiply-accumulate sequence; `None`: the ISA has none)
    /// and the form the `ceil2_*` ops lower, if any.
    fn int8_ceiling(&self) -> [Option<CeilingForm>; 2];
}

/// One int8 multiply-accumulate instruction sequence the ceiling probe times.
pub struct CeilingForm {
    /// The instructions, as reported (`vpdpbusd zmm`).
    pub name: &'static str,
    /// Multiply-adds of one `ceil_mac` (64 for a 512-bit `vpdpbusd`).
    pub macs: usize,
    /// Independent accumulator chains: at least the sequence's loop-carried
    /// latency times how many issue per cycle, within the register file.
    pub chains: usize,
    /// Whether this ISA's kernels could use it, so it counts toward the ISA's
    /// ceiling (AVX-VNNI beside AVX2 is reported, but the AVX2 kernels do not
    /// use it).
    pub in_ceiling: bool,
    /// A `bool` expression for CPU features the form needs beyond
    /// [`Lowering::features`].
    pub detect: Option<TokenStream>,
}

/// Every lowering that can compile for `target_arch` (as in `CARGO_CFG_TARGET_ARCH`).
pub fn for_target_arch(target_arch: &str) -> Vec<Box<dyn Lowering>> {
    all()
        .into_iter()
        .filter(|l| l.target_arch().is_none_or(|a| a == target_arch))
        .collect()
}

/// Every lowering that can compile for `target_arch` with the build's
/// `target_features` (as in `CARGO_CFG_TARGET_FEATURE`, comma-separated):
/// [`for_target_arch`] less those whose [`Lowering::build_features`] the
/// build does not enable.
pub fn for_target(target_arch: &str, target_features: &str) -> Vec<Box<dyn Lowering>> {
    let enabled: Vec<&str> = target_features.split(',').map(str::trim).collect();
    for_target_arch(target_arch)
        .into_iter()
        .filter(|l| l.build_features().iter().all(|f| enabled.contains(f)))
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
        Box::new(Wasm { relaxed: false }),
        Box::new(Wasm { relaxed: true }),
    ]
}

/// Checks that every lowering of [`all`] has a body for every primitive op of
/// [`crate::ops::OPS`]: the build only generates the lowerings of its own
/// target, so a NEON body left out of an op added on x86 would otherwise only
/// show on an aarch64 build. (That every lowering entry names an op needs no
/// check: entries match on [`Op`], so one for an op that does
/// not exist does not compile.) [`crate::generate`] runs this, so a missing
/// body fails the build. The same goes for the ops of each declared
/// [`Lowering::int8_ceiling`] form.
pub fn check_tables() -> Result<(), String> {
    let missing: Vec<String> = all()
        .iter()
        .flat_map(|l| {
            // A ceiling form the lowering declares must lower its ops: their
            // defaults are only for forms the ISA does not have.
            let forms = l.int8_ceiling();
            crate::ops::all_ops()
                .filter(move |op| {
                    let declared = match op.name.split_once('_') {
                        Some(("ceil", _)) => forms[0].is_some(),
                        Some(("ceil2", _)) => forms[1].is_some(),
                        _ => false,
                    };
                    (op.composite.is_none() || declared) && l.op(op.op).is_none()
                })
                .map(|op| format!("{}: `{}`", l.module(), op.name))
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "primitive (or declared ceiling-form) ops without a lowering: {}",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lowering_lowers_every_primitive() {
        check_tables().unwrap();
    }

    #[test]
    fn wasm_lowerings_need_their_build_features() {
        let modules = |arch, features| -> Vec<&'static str> {
            for_target(arch, features)
                .iter()
                .map(|l| l.module())
                .collect()
        };
        assert_eq!(modules("wasm32", ""), ["scalar"]);
        assert_eq!(modules("wasm32", "simd128"), ["scalar", "wasm_simd128"]);
        assert_eq!(
            modules("wasm32", "relaxed-simd,simd128"),
            ["scalar", "wasm_simd128", "wasm_relaxed_simd"]
        );
        assert_eq!(
            modules("x86_64", "avx2,fma"),
            ["scalar", "avx2", "avx512vnni"]
        );
    }
}
