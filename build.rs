//! Generates kiln's kernels into `OUT_DIR` (see `kiln-kernels-gen`).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
}
