//! kiln: CPU inference for text-embedding and small text-generation models.
//!
//! The facade crate: the public library API, the `kiln` command line tool,
//! and the wiring of the kernels generated at build time into the runtime.

pub use kiln_runtime as runtime;

pub mod kernels;
