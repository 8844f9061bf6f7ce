//! The generation API: a decoder model, prompts in, tokens out.
//!
//! ```no_run
//! # fn main() -> Result<(), kiln::Error> {
//! use kiln::{GenerateOptions, Generator};
//! let g = Generator::open("gemma-3-270m-q4_k_m.gguf")?;
//! for token in g.generate("The capital of France is", &GenerateOptions::default()) {
//!     print!("{}", token?.text);
//! }
//! # Ok(()) }
//! ```
//!
//! A raw prompt is parsed for special tokens as llama.cpp parses prompts
//! (`<start_of_turn>user\n…` works as written); [`Generator::chat`]
//! renders messages with the model's chat template and keeps their
//! contents as text. Generation is lazy: the prompt is processed on the
//! first `next()`, each later `next()` decodes one token, and dropping the
//! iterator stops the work.
//!
//! The parts: `options` (what one call asks for), `builder` (opening a
//! model), `generator` (the opened model, its pooled sessions, batches),
//! `engine` (continuous batching: one loop serving many requests),
//! `generation` (one streamed generation), `classify` (prefill-only
//! scoring) and `stream` (bytes to whole characters, stop strings).

mod builder;
mod classify;
mod engine;
mod generation;
mod generator;
mod options;
mod stream;

pub use builder::GeneratorBuilder;
pub use classify::{ClassScore, Classification};
pub use engine::{Engine, EngineEvent, EngineInput, EngineRequest, EventSink};
pub use generation::{FinishReason, Generation, Token};
pub use generator::{Generator, Metrics, ModelInfo};
pub use options::{Draft, Drafter, GenerateOptions};
