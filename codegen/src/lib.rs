//! Proc macros of kiln. `#[model]` (not implemented yet) will compile one
//! GGUF model, known at build time, into a fully specialized type.
