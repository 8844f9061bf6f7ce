//! The kernels generated at build time, wired into the runtime's
//! [`KernelSet`] interface.
//!
//! `build.rs` runs `kiln-kernels-gen` for the shape table of the supported
//! models and writes one module per ISA into `OUT_DIR`; each module's kernel
//! set can only be obtained through its `detect()`, which checks the CPU's
//! features first. [`best`] does that once per process.

use std::sync::OnceLock;

use kiln_runtime::kernels::{Isa, KernelSet};

#[allow(
    dead_code,
    unused_imports,
    clippy::all,
    clippy::pedantic,
    reason = "generated code: every ISA module gets every op, used or not"
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

pub mod limits;

/// ISAs in order of preference, best first.
const PREFERENCE: &[Isa] = &[
    Isa::Avx512Vnni,
    Isa::Avx2,
    Isa::NeonDotprod,
    Isa::Neon,
    Isa::WasmRelaxedSimd,
    Isa::WasmSimd128,
    Isa::Scalar,
];

/// The kernel set of `isa`, if it is compiled for this target and this CPU
/// supports it (for tests and benches; models use [`best`]).
pub fn for_isa(isa: Isa) -> Option<&'static dyn KernelSet> {
    generated::for_isa(isa)
}

/// `probe(blocks, iters)`: see [`int8_dot_probe`].
pub type Int8DotProbeFn = fn(&[[i8; 32]; 8], usize) -> i32;

/// A function that runs `iters` rounds of 8 independent Q8_0 block dots
/// (`64 · 8 · iters` int8 ops) with `isa`'s instruction sequence, for
/// benches that measure this machine's int8 peak; `None` if not supported.
pub fn int8_dot_probe(isa: Isa) -> Option<Int8DotProbeFn> {
    generated::int8_dot_probe(isa)
}

/// `probe(operands, iters)`: see [`Int8CeilingProbe`].
pub type Int8CeilingProbeFn = fn(&[[i8; 64]; 2], usize) -> i32;

/// A register-only probe of one int8 multiply-accumulate instruction
/// sequence, independent of kiln's kernels: `probe(operands, iters)` runs
/// `iters` rounds of `chains` independent multiply-accumulates of
/// `macs_per_op` multiply-adds each (`2 · macs_per_op · chains · iters` int
/// ops) on two operand registers loaded from `operands` (the first bytes,
/// as many as one register holds), and returns the wrapping sum of the
/// accumulators' lanes.
#[derive(Clone, Copy, Debug)]
pub struct Int8CeilingProbe {
    /// The instructions, e.g. `vpdpbusd zmm`.
    pub instructions: &'static str,
    /// Multiply-adds of one multiply-accumulate (64 for a 512-bit `vpdpbusd`).
    pub macs_per_op: usize,
    /// Independent accumulator chains per round.
    pub chains: usize,
    /// Whether the ISA's kernels could use it, so it counts toward the ISA's
    /// int8 ceiling (AVX-VNNI beside AVX2 does not).
    pub in_ceiling: bool,
    /// The probe.
    pub probe: Int8CeilingProbeFn,
}

/// The register-only int8 ceiling probes of `isa` (best form first) this
/// CPU can run; empty if the ISA has no int8 multiply-accumulate
/// instruction (scalar), is not compiled or is not supported.
pub fn int8_ceiling_probes(isa: Isa) -> Vec<Int8CeilingProbe> {
    generated::int8_ceiling_probes(isa)
        .into_iter()
        .map(
            |(instructions, macs_per_op, chains, in_ceiling, probe)| Int8CeilingProbe {
                instructions,
                macs_per_op,
                chains,
                in_ceiling,
                probe,
            },
        )
        .collect()
}

/// The best kernel set for this CPU, detected once per process.
///
/// `KILN_ISA=avx2` (any name `kiln kernels` lists) picks a lower ISA
/// instead, to compare ISAs on one machine; a name this CPU cannot run is
/// reported on stderr once and the detected one is used.
pub fn best() -> &'static dyn KernelSet {
    static BEST: OnceLock<&'static dyn KernelSet> = OnceLock::new();
    *BEST.get_or_init(|| {
        let detected = PREFERENCE
            .iter()
            .find_map(|&isa| for_isa(isa))
            .expect("the scalar kernel set is always available");
        match std::env::var("KILN_ISA") {
            Ok(name) if !name.is_empty() => match requested(&name) {
                Ok(set) => set,
                Err(why) => {
                    eprintln!(
                        "kiln: ignoring KILN_ISA={name}: {why}; using {}",
                        detected.isa().name()
                    );
                    detected
                }
            },
            _ => detected,
        }
    })
}

/// The kernel set `KILN_ISA` names, or why it cannot be used.
fn requested(name: &str) -> Result<&'static dyn KernelSet, String> {
    for_isa(compiled_isa(name)?).ok_or_else(|| "this CPU does not support it".to_owned())
}

/// The compiled ISA called `name` (as `kiln kernels` prints it), or a
/// message naming the compiled ones.
pub fn compiled_isa(name: &str) -> Result<Isa, String> {
    compiled()
        .iter()
        .copied()
        .find(|i| i.name() == name)
        .ok_or_else(|| {
            let names: Vec<_> = compiled().iter().map(|i| i.name()).collect();
            format!("unknown ISA `{name}`; compiled: {}", names.join(", "))
        })
}

/// The ISA called `name`, compiled for this target or not (the generated
/// source of any ISA can be shown: see [`source`]), or a message naming them.
pub fn any_isa(name: &str) -> Result<Isa, String> {
    Isa::from_name(name).ok_or_else(|| {
        let names: Vec<_> = Isa::ALL.iter().map(|i| i.name()).collect();
        format!("unknown ISA `{name}`; known: {}", names.join(", "))
    })
}

/// The ISAs compiled for this target, scalar first.
pub fn compiled() -> &'static [Isa] {
    generated::COMPILED
}

/// The kernel variants compiled for `isa` (empty if it is not compiled).
pub fn variants(isa: Isa) -> &'static [&'static str] {
    generated::VARIANTS
        .iter()
        .find(|(i, _)| *i == isa)
        .map_or(&[], |(_, v)| v)
}

/// The formatted generated source of function `name` (a kernel variant or
/// an op) for `isa`, or the number of functions `isa` has if there is no
/// such function.
///
/// The source is generated again from the shape table the build used
/// (`kiln_kernels_gen` is deterministic), so the binary does not carry the
/// text of every function (about 2.8 MB) for this one command.
pub fn source(isa: Isa, name: &str) -> Result<String, usize> {
    let module = isa.name().replace('-', "_");
    let sources = kiln_kernels_gen::sources(&kiln_kernels_gen::shapes::builtin(), &module)
        .unwrap_or_default();
    sources
        .iter()
        .find(|s| s.name == name)
        .map(kiln_kernels_gen::Source::text)
        .ok_or(sources.len())
}
