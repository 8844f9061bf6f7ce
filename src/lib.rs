//! kiln: CPU inference for text-embedding and small text-generation models.
//!
//! The facade crate: the public library API ([`Embedder`], [`Generator`]),
//! the model cache and converter ([`hub`], [`convert`]), the `kiln` command
//! line tool, the wiring of the kernels generated at build time into the
//! runtime ([`kernels`]), and [`macro@model`], which compiles one GGUF model
//! into a binary.

mod chat;
mod chunk;
pub mod config;
pub mod convert;
mod embedder;
mod error;
mod generate;
pub mod grammar;
pub mod hub;
pub mod kernels;
pub mod prompts;
pub mod quantize;
#[cfg(feature = "server")]
pub mod server;
mod threads;

pub use chat::ChatMessage;
pub use chunk::{Boundary, Chunk, ChunkMode, ChunkOptions};
pub use embedder::{
    CallOptions, EmbedOptions, Embedder, EmbedderBuilder, TruncateDirection, cosine, l2_normalize,
};
pub use error::Error;
pub use generate::{
    ClassScore, Classification, Draft, Drafter, Engine, EngineEvent, EngineInput, EngineRequest,
    EventSink, FinishReason, GenerateOptions, Generation, Generator, GeneratorBuilder, Metrics,
    ModelInfo, Token,
};
pub use grammar::Grammar;
pub use kiln_codegen::model;
pub use kiln_runtime as runtime;
pub use kiln_runtime::model::KvType;
pub use kiln_runtime::model::Pooling;
pub use kiln_runtime::sampling::SamplingOptions;
pub use quantize::{Embedding, Precision, QuantRange};

/// What `#[kiln::model]` expansions use; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use std::sync::{Arc, OnceLock};

    /// A model file's bytes with the alignment the kernels' typed views
    /// need (a multiple of every GGUF alignment the macro accepts), so that
    /// `include_bytes!` is not an unaligned `[u8]`.
    #[repr(C, align(64))]
    pub struct Aligned<const N: usize>(pub [u8; N]);
}
