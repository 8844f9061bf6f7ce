//! Generates kiln's kernels into `OUT_DIR` (see `kiln-kernels-gen`).
//!
//! The shape table ([`kiln_kernels_gen::shapes::builtin`]) lists the sizes of
//! the supported models; each gets specialized kernels, every other size uses
//! the generic variants. `#[kiln::model]` checks a model against the same
//! table at compile time.

use std::path::PathBuf;
use std::time::Instant;
use std::{env, fs};

use kiln_kernels_gen::{generate, lower, shapes};

/// Writes `contents` unless the file already holds it (keeps mtimes stable).
fn write_if_changed(path: &PathBuf, contents: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return;
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn main() {
    // The generator is a build dependency: cargo reruns this script when it
    // changes. Nothing else (no source file) affects the output but
    // `KILN_ISAS`.
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=KILN_ISAS");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Generate only the ISAs the target can compile (x86_64: scalar, AVX2,
    // AVX-512; aarch64: scalar, NEON, NEON+dotprod; wasm32: scalar, plus
    // SIMD128 and relaxed SIMD when the build enables them; others: scalar).
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let start = Instant::now();
    let mut isas = lower::for_target(&arch, &features);
    // `KILN_ISAS=scalar,wasm_relaxed_simd` (module names) keeps only those
    // ISAs, for a build whose size matters more than choice (a browser
    // `.wasm` runs one ISA: the best its build enables). Scalar, the
    // reference, always stays.
    if let Ok(keep) = env::var("KILN_ISAS")
        && !keep.trim().is_empty()
    {
        let keep: Vec<&str> = keep.split(',').map(str::trim).collect();
        isas.retain(|l| l.module() == "scalar" || keep.contains(&l.module()));
    }
    let kernels = generate(&shapes::builtin(), &isas);
    write_if_changed(&out.join("kernels.rs"), &kernels);
    write_if_changed(
        &out.join("generator_time.txt"),
        &format!("{} ms\n", start.elapsed().as_millis()),
    );
    #[cfg(feature = "grpc")]
    grpc();
}

/// The `tei.v1` messages and services (proto/tei.proto) for `kiln serve
/// --grpc-port`. protox parses the file in Rust, so the build needs no
/// `protoc`.
#[cfg(feature = "grpc")]
fn grpc() {
    println!("cargo::rerun-if-changed=proto/tei.proto");
    let fds = protox::compile(["tei.proto"], ["proto"])
        .unwrap_or_else(|e| panic!("proto/tei.proto: {e}"));
    tonic_prost_build::configure()
        // The client stubs serve kiln's tests and Rust callers; they take any
        // channel, so tonic's client transport stays out of the build.
        .build_transport(false)
        // Unwritten RPCs (sparse embeddings, classifiers, rerankers) answer
        // UNIMPLEMENTED.
        .generate_default_stubs(true)
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("generating the tei.v1 code: {e}"));
}
