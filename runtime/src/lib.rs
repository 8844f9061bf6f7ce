//! kiln's runtime: zero-copy GGUF reading, tokenizers, model configs and the
//! static execution plans that stitch generated kernels together.
//!
//! This crate never depends on generated code: it defines the kernel
//! interface, and the `kiln` facade fills it with the kernels that its build
//! script generates.

pub mod gguf;
pub mod grammar;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod prompts;
pub mod quant;
pub mod sampling;
pub mod tokenizer;
