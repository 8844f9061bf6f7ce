//! kiln: CPU inference for text-embedding and small text-generation models.
//!
//! The facade crate: the public library API ([`Embedder`], [`Generator`]), the model cache
//! and converter ([`hub`], [`convert`]), the `kiln` command line tool, and
//! the wiring of the kernels generated at build time into the runtime
//! ([`kernels`]).

mod chat;
pub mod convert;
mod embedder;
mod error;
mod generate;
pub mod hub;
pub mod kernels;
pub mod prompts;
#[cfg(feature = "server")]
pub mod server;

pub use embedder::{
    CallOptions, EmbedOptions, Embedder, EmbedderBuilder, TruncateDirection, cosine, l2_normalize,
};
pub use error::Error;
pub use generate::{
    ChatMessage, ClassScore, Classification, FinishReason, GenerateOptions, Generation, Generator,
    GeneratorBuilder, Metrics, ModelInfo, Token,
};
pub use kiln_runtime as runtime;
pub use kiln_runtime::model::KvType;
pub use kiln_runtime::model::Pooling;
pub use kiln_runtime::sampling::SamplingOptions;
