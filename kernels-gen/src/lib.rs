//! The kernel DSL and its lowering.
//!
//! Each kernel is described once against a handful of abstract vector
//! operations; each instruction set is a lowering table from those operations
//! to Rust source. `build.rs` of the `kiln` crate runs this generator for the
//! shape table of the supported models.
