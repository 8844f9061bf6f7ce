//! Helpers shared by the kernel tests: which ISAs to test, references in f64.

#![allow(dead_code, reason = "each test file uses a subset")]

use std::collections::BTreeSet;
use std::sync::Mutex;

use kiln::kernels::{compiled, for_isa};
use kiln::runtime::kernels::{Isa, KernelSet};
use kiln::runtime::quant::{BlockQ8_0, dequantize_row_q8_0, quantize_row_q8_0_reference};

/// The scalar set (always present).
pub fn scalar() -> &'static dyn KernelSet {
    for_isa(Isa::Scalar).expect("scalar is always compiled")
}

/// Every compiled ISA this CPU supports, scalar included; prints the ones
/// that are compiled but skipped because the CPU lacks them.
pub fn sets(test: &str) -> Vec<&'static dyn KernelSet> {
    // Property bodies call this once per case: report once per test.
    static REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = REPORTED
        .lock()
        .map(|mut r| r.insert(test.to_string()))
        .unwrap_or(true);
    let mut out = Vec::new();
    for &isa in compiled() {
        match for_isa(isa) {
            Some(s) => out.push(s),
            None if first => eprintln!("{test}: SKIPPED {} (this CPU lacks it)", isa.name()),
            None => {}
        }
    }
    let names: Vec<_> = out.iter().map(|s| s.isa().name()).collect();
    if first {
        eprintln!("{test}: testing {}", names.join(", "));
    }
    out
}

/// Quantizes with the bit-exact reference.
pub fn q8(x: &[f32]) -> Vec<BlockQ8_0> {
    let mut b = vec![BlockQ8_0::default(); x.len() / 32];
    quantize_row_q8_0_reference(x, &mut b);
    b
}

/// Dequantizes blocks.
pub fn deq(b: &[BlockQ8_0]) -> Vec<f32> {
    let mut x = vec![0.0; b.len() * 32];
    dequantize_row_q8_0(b, &mut x);
    x
}

/// Asserts `|got - want| <= tol · (1 + |want|)` elementwise.
pub fn assert_close(what: &str, isa: Isa, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}/{}: length", isa.name());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}/{}: [{i}] got {g}, want {w} (tol {tol})",
            isa.name()
        );
    }
}
