//! The facade's error type.

use thiserror::Error;

/// Everything that can go wrong in kiln's library API.
#[derive(Debug, Error)]
pub enum Error {
    /// Reading the GGUF failed.
    #[error(transparent)]
    Gguf(#[from] kiln_runtime::gguf::GgufError),
    /// The model cannot be opened or run.
    #[error(transparent)]
    Model(#[from] kiln_runtime::model::ModelError),
    /// The tokenizer cannot be built or failed on the input.
    #[error(transparent)]
    Tokenizer(#[from] kiln_runtime::tokenizer::TokenizerError),
    /// A grammar or JSON Schema cannot be compiled, or a constrained
    /// generation cannot go on.
    #[error(transparent)]
    Grammar(#[from] kiln_runtime::grammar::GrammarError),
    /// A draft model's vocabulary differs from its target's.
    #[error("the draft model {} cannot draft for this model: its vocabulary differs ({why})", path.display())]
    DraftVocabulary {
        /// The draft model's file.
        path: std::path::PathBuf,
        /// The first difference.
        why: String,
    },
    /// Speculative decoding with a draft model was asked of a generator
    /// opened without one.
    #[error(
        "Draft::Model needs a draft model: open the generator with .draft(path) (--draft-model)"
    )]
    NoDraftModel,
    /// The input tokenizes to nothing.
    #[error("the input is empty")]
    Empty,
    /// A caller-given chunk span that is empty or past the text's end.
    #[error("chunk span {start}..{end} is empty or outside the text's {n_chars} characters")]
    BadChunkSpan {
        /// First character of the span.
        start: usize,
        /// One past its last character.
        end: usize,
        /// Characters in the text.
        n_chars: usize,
    },
    /// A chunk size of zero, or an overlap not below the size.
    #[error(
        "chunk size {size} with overlap {overlap}: the size must be positive and the overlap below it"
    )]
    BadChunking {
        /// Tokens per chunk.
        size: usize,
        /// Tokens shared by consecutive chunks.
        overlap: usize,
    },
    /// A token id outside the model's vocabulary.
    #[error("token id {id} is not in the vocabulary of {vocab} tokens")]
    BadToken {
        /// The id given.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// The input is longer than the model's context and truncation is off.
    #[error(
        "the input has {n_tokens} tokens, more than the model's context of {max} (enable truncation to cut it)"
    )]
    TooLong {
        /// Tokens in the input (with special tokens and prompt).
        n_tokens: usize,
        /// The model's context length.
        max: usize,
    },
    /// A task prompt name the model does not define.
    #[error("unknown task `{task}` for {arch} (known: {known})")]
    UnknownTask {
        /// The name asked for.
        task: String,
        /// The model's architecture.
        arch: String,
        /// The names it knows.
        known: String,
    },
    /// An output width the model cannot give.
    #[error("output dimension {dim} is not between 1 and the model's {model_dim}")]
    BadDim {
        /// Requested width.
        dim: usize,
        /// The model's width.
        model_dim: usize,
    },
    /// The output buffer has the wrong length.
    #[error("output buffer holds {len} values, the embedder gives {dim}")]
    OutputLength {
        /// Buffer length.
        len: usize,
        /// Vector width.
        dim: usize,
    },
    /// The thread pool could not start.
    #[error("cannot start the thread pool: {0}")]
    Threads(String),
    /// The prompt does not fit in the generation context.
    #[error(
        "the prompt has {n_tokens} tokens, more than the context of {context} (raise the context, e.g. --ctx, or shorten the prompt)"
    )]
    PromptTooLong {
        /// Tokens in the prompt (with special tokens).
        n_tokens: usize,
        /// The context in use.
        context: usize,
    },
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    Template(String),
    /// A chat message's role is not one the template knows.
    #[error("unknown chat role `{0}` (expected system, user or assistant)")]
    BadRole(String),
}
