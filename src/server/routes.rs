//! The route handlers: request parsing and validation, queuing, responses.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::AppState;
use super::batcher::{Job, SubmitError};
use super::encoding::{self, Encoded, Encoding};
use super::error::{ApiError, Flavor, Kind, from_kiln};
use crate::quantize::QuantRange;
use crate::runtime::tokenizer::TokenType;
use crate::{CallOptions, TruncateDirection};

type Shared = State<Arc<AppState>>;

/// Parses a JSON body, with errors that say what is wrong.
fn parse<T: DeserializeOwned>(
    flavor: Flavor,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                flavor,
                Kind::TooLarge,
                format!("the request body is larger than the limit of {limit} bytes"),
            )
        } else {
            ApiError::new(flavor, Kind::Syntax, format!("cannot read the body: {rej}"))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                ApiError::new(flavor, Kind::Validation, format!("invalid request: {e}"))
            }
            _ => ApiError::new(flavor, Kind::Syntax, format!("invalid JSON: {e}")),
        }
    })
}

/// A 429 for a full queue (`what` names it), counted as rejected.
fn at_capacity(s: &AppState, flavor: Flavor, what: &str) -> ApiError {
    s.metrics
        .rejected_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ApiError::new(
        flavor,
        Kind::Overloaded,
        format!(
            "the server is at capacity ({} {what}); retry later",
            s.config.max_concurrent_requests
        ),
    )
}

/// Runs CPU-heavy request work (tokenizing) on a blocking thread: at most
/// one per core at once, and at most `max_concurrent_requests` waiting; past
/// that the request gets 429 at once. The async threads stay free for I/O.
pub(super) async fn off_thread<T: Send + 'static>(
    s: &AppState,
    flavor: Flavor,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let Ok(_queued) = s.cpu_queue.clone().try_acquire_owned() else {
        return Err(at_capacity(s, flavor, "requests tokenizing"));
    };
    let unavailable = || ApiError::new(flavor, Kind::Unavailable, "the server is shutting down");
    let running = s
        .cpu_workers
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| unavailable())?;
    tokio::task::spawn_blocking(move || {
        let _running = running;
        work()
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "a tokenizing task failed");
        ApiError::new(flavor, Kind::Backend, "tokenizing failed")
    })?
}

/// The inputs of an embedding request.
#[derive(Debug)]
pub(super) enum Inputs {
    Texts(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

const INPUT_SHAPE: &str = "must be a string, an array of strings, an array of token ids, or an array of arrays of token ids";

/// Reads `input` (OpenAI) or `inputs` (TEI) from its JSON value.
fn parse_inputs(flavor: Flavor, field: &'static str, v: Option<Value>) -> Result<Inputs, ApiError> {
    let bad = |msg: String| ApiError::new(flavor, Kind::Validation, msg).param(field);
    let empty = |msg: String| ApiError::new(flavor, Kind::Empty, msg).param(field);
    let ids = |a: &[Value], what: &str| -> Result<Vec<u32>, ApiError> {
        a.iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(format!("`{field}`{what}: {x} is not a token id")))
            })
            .collect()
    };
    let inputs = match v {
        None | Some(Value::Null) => return Err(bad(format!("missing `{field}`"))),
        Some(Value::String(s)) => Inputs::Texts(vec![s]),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(empty(format!("`{field}` is an empty array")));
        }
        Some(Value::Array(a)) => match &a[0] {
            Value::String(_) => Inputs::Texts(
                a.into_iter()
                    .enumerate()
                    .map(|(i, x)| match x {
                        Value::String(s) => Ok(s),
                        other => Err(bad(format!(
                            "`{field}[{i}]` is {other}, not a string (do not mix strings with other values)"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Value::Number(_) => Inputs::Tokens(vec![ids(&a, "")?]),
            Value::Array(_) => Inputs::Tokens(
                a.iter()
                    .enumerate()
                    .map(|(i, x)| match x {
                        Value::Array(inner) if inner.is_empty() => {
                            Err(empty(format!("`{field}[{i}]` is an empty array")))
                        }
                        Value::Array(inner) => ids(inner, &format!("[{i}]")),
                        other => Err(bad(format!("`{field}[{i}]` is {other}: `{field}` {INPUT_SHAPE}"))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(bad(format!("`{field}` {INPUT_SHAPE}"))),
        },
        Some(other) => return Err(bad(format!("`{field}` is {other}: it {INPUT_SHAPE}"))),
    };
    if let Inputs::Texts(t) = &inputs
        && let Some(i) = t.iter().position(String::is_empty)
    {
        return Err(empty(format!("`{field}[{i}]` is an empty string")));
    }
    Ok(inputs)
}

/// An embedding request, whichever API it came by.
pub(super) struct Embedding {
    pub flavor: Flavor,
    pub inputs: Inputs,
    pub dim: Option<usize>,
    pub normalize: bool,
    pub truncate: bool,
    pub direction: TruncateDirection,
    pub prompt_name: Option<String>,
    pub encoding: Encoding,
    pub range: QuantRange,
}

/// Vectors for a request, and its token count.
pub(super) struct Embedded {
    pub vectors: Vec<Encoded>,
    pub tokens: usize,
}

fn parse_encoding(flavor: Flavor, s: Option<&str>) -> Result<Encoding, ApiError> {
    match s {
        None => Ok(Encoding::Float),
        Some(s) => Encoding::parse(s).ok_or_else(|| {
            ApiError::new(
                flavor,
                Kind::Validation,
                format!(
                    "unknown encoding_format `{s}` (float, base64, int8, uint8, binary, ubinary)"
                ),
            )
            .param("encoding_format")
        }),
    }
}

fn parse_range(flavor: Flavor, r: Option<(f32, f32)>) -> Result<QuantRange, ApiError> {
    match r {
        None => Ok(QuantRange::DEFAULT),
        Some((lo, hi)) => QuantRange::new(lo, hi).map_err(|_| {
            ApiError::new(
                flavor,
                Kind::Validation,
                format!("quantization_range [{lo}, {hi}] must be two finite numbers, low < high"),
            )
            .param("quantization_range")
        }),
    }
}

/// Tokenizes, checks limits, queues, waits, encodes. Every option goes
/// to the library as one [`CallOptions`]: the width, prompt, length limit,
/// truncation, vocabulary, normalization and precision are checked and
/// applied there, as for every other front end.
pub(super) async fn embed(s: &AppState, req: Embedding) -> Result<Embedded, ApiError> {
    let flavor = req.flavor;
    let max = s.config.max_input_tokens;
    let call = CallOptions {
        dim: req.dim,
        task: req.prompt_name.clone(),
        normalize: Some(req.normalize),
        truncate: Some(req.truncate),
        truncate_direction: Some(req.direction),
        max_tokens: Some(max),
        precision: req.encoding.precision(),
        quantization_range: req.range,
        ..CallOptions::default()
    };
    // The request's options, checked once before any input.
    s.embedder.dim_with(&call).map_err(|e| match e {
        crate::Error::BadDim { dim, model_dim } => ApiError::new(
            flavor,
            Kind::Validation,
            format!("dimensions {dim} is not between 1 and the model's {model_dim}"),
        )
        .param("dimensions"),
        e => from_kiln(flavor, &e),
    })?;
    let per_input = move |i: usize, e: crate::Error| match e {
        crate::Error::TooLong { n_tokens, .. } => ApiError::new(
            flavor,
            Kind::TooLarge,
            format!(
                "input {i} has {n_tokens} tokens, more than the limit of {max} (set `truncate` to cut it)"
            ),
        ),
        e => {
            let mut a = from_kiln(flavor, &e);
            a.message = format!("input {i}: {}", a.message);
            a
        }
    };
    let ids: Vec<Vec<u32>> = match req.inputs {
        Inputs::Texts(texts) => {
            let embedder = s.embedder.clone();
            let call = call.clone();
            off_thread(s, flavor, move || {
                texts
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        embedder
                            .tokenize_with(t, &call)
                            .map_err(|e| per_input(i, e))
                    })
                    .collect::<Result<_, _>>()
            })
            .await?
        }
        Inputs::Tokens(lists) => {
            if req.prompt_name.is_some() {
                return Err(ApiError::new(
                    flavor,
                    Kind::Validation,
                    "prompt_name applies to text inputs, not token ids",
                )
                .param("prompt_name"));
            }
            lists
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    s.embedder
                        .prepare_tokens(l, &call)
                        .map_err(|e| per_input(i, e))
                })
                .collect::<Result<_, _>>()?
        }
    };
    let tokens: usize = ids.iter().map(Vec::len).sum();
    if tokens > s.config.max_batch_tokens {
        return Err(ApiError::new(
            flavor,
            Kind::TooLarge,
            format!(
                "the request has {tokens} tokens in all, more than the limit of {} per request; split it",
                s.config.max_batch_tokens
            ),
        ));
    }
    let (tx, rx) = oneshot::channel();
    let job = Job {
        inputs: ids,
        call,
        reply: tx,
        queued: Instant::now(),
    };
    match s.batcher.try_submit(job) {
        Ok(()) => {}
        Err(SubmitError::Full) => return Err(at_capacity(s, flavor, "queued requests")),
        Err(SubmitError::Closed) => {
            return Err(ApiError::new(
                flavor,
                Kind::Unavailable,
                "the server is shutting down",
            ));
        }
    }
    // If this future is dropped (client gone), `rx` drops with it and the
    // worker skips the job.
    let vectors = match rx.await {
        Ok(Ok(v)) => v,
        Ok(Err(msg)) => return Err(ApiError::new(flavor, Kind::Backend, msg)),
        Err(_) => {
            return Err(ApiError::new(
                flavor,
                Kind::Backend,
                "the batching worker dropped the request",
            ));
        }
    };
    Ok(Embedded {
        vectors: vectors
            .into_iter()
            .map(|v| encoding::encode(v, req.encoding))
            .collect(),
        tokens,
    })
}

/// The embedding options both APIs take (kiln extends each with the
/// other's): `dimensions`, `normalize`, `truncate`, `truncation_direction`,
/// `prompt_name`, the quantized `encoding_format`s and `quantization_range`.
#[derive(Deserialize)]
struct EmbedOptions {
    dimensions: Option<usize>,
    normalize: Option<bool>,
    truncate: Option<bool>,
    truncation_direction: Option<String>,
    prompt_name: Option<String>,
    encoding_format: Option<String>,
    quantization_range: Option<(f32, f32)>,
}

impl EmbedOptions {
    /// Checks the options and pairs them with the request's inputs.
    /// `auto_truncate` is the server's default for `truncate`.
    fn request(
        self,
        flavor: Flavor,
        inputs: Inputs,
        auto_truncate: bool,
    ) -> Result<Embedding, ApiError> {
        Ok(Embedding {
            flavor,
            inputs,
            dim: self.dimensions,
            normalize: self.normalize.unwrap_or(true),
            truncate: self.truncate.unwrap_or(auto_truncate),
            direction: parse_direction(flavor, self.truncation_direction.as_deref())?,
            prompt_name: self.prompt_name,
            encoding: parse_encoding(flavor, self.encoding_format.as_deref())?,
            range: parse_range(flavor, self.quantization_range)?,
        })
    }
}

/// `POST /v1/embeddings` (OpenAI), with kiln's extensions.
#[derive(Deserialize)]
struct OpenAiRequest {
    input: Option<Value>,
    model: Option<String>,
    /// kiln's chunked embedding of long documents, as on `/embed`.
    chunking: Option<ChunkingRequest>,
    #[serde(rename = "user")]
    _user: Option<String>,
    #[serde(flatten)]
    options: EmbedOptions,
}

fn parse_direction(flavor: Flavor, s: Option<&str>) -> Result<TruncateDirection, ApiError> {
    match s {
        None => Ok(TruncateDirection::Right),
        Some(d) if d.eq_ignore_ascii_case("right") => Ok(TruncateDirection::Right),
        Some(d) if d.eq_ignore_ascii_case("left") => Ok(TruncateDirection::Left),
        Some(d) => Err(ApiError::new(
            flavor,
            Kind::Validation,
            format!("truncation_direction `{d}` is neither Left nor Right"),
        )
        .param("truncation_direction")),
    }
}

pub(super) async fn openai_embeddings(
    State(s): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let f = Flavor::OpenAi;
    let r: OpenAiRequest = parse(f, body, s.config.max_body_bytes)?;
    if let Some(chunking) = r.chunking {
        let inputs = parse_inputs(f, "input", r.input)?;
        return openai_embed_chunks(&s, inputs, chunking, r.options).await;
    }
    let req = r.options.request(
        f,
        parse_inputs(f, "input", r.input)?,
        s.config.auto_truncate,
    )?;
    if let Some(m) = &r.model
        && *m != s.config.model_id
    {
        tracing::debug!(asked = %m, serving = %s.config.model_id, "request names another model");
    }
    let out = embed(&s, req).await?;
    let data: Vec<Value> = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": s.config.model_id,
        "usage": {"prompt_tokens": out.tokens, "total_tokens": out.tokens},
    }))
    .into_response())
}

/// `POST /embed` (text-embeddings-inference), with kiln extensions
/// `encoding_format` and `quantization_range`.
#[derive(Deserialize)]
struct TeiEmbedRequest {
    inputs: Option<Value>,
    /// kiln's chunked embedding of long documents.
    chunking: Option<ChunkingRequest>,
    #[serde(flatten)]
    options: EmbedOptions,
}

/// `"chunking": {"mode": "late" | "naive", "size": 256, "overlap": 32,
/// "boundary": "word" | "sentence" | "line", "spans": [[start, end], ...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkingRequest {
    mode: Option<String>,
    size: Option<usize>,
    overlap: Option<usize>,
    boundary: Option<String>,
    spans: Option<Vec<(usize, usize)>>,
}

impl ChunkingRequest {
    fn options(self, flavor: Flavor) -> Result<crate::ChunkOptions, ApiError> {
        let bad = |m: String| ApiError::new(flavor, Kind::Validation, m).param("chunking");
        let d = crate::ChunkOptions::default();
        let mode = match self.mode.as_deref() {
            None | Some("late") => crate::ChunkMode::Late,
            Some("naive") => crate::ChunkMode::Naive,
            Some(m) => {
                return Err(bad(format!(
                    "chunking.mode `{m}` is neither late nor naive"
                )));
            }
        };
        let boundary = match self.boundary.as_deref() {
            None | Some("word") => crate::Boundary::Word,
            Some("sentence") => crate::Boundary::Sentence,
            Some("line") => crate::Boundary::Line,
            Some(b) => {
                return Err(bad(format!(
                    "chunking.boundary `{b}` is not word, sentence or line"
                )));
            }
        };
        let size = self.size.unwrap_or(d.size);
        Ok(crate::ChunkOptions {
            size,
            overlap: self.overlap.unwrap_or(d.overlap.min(size / 2)),
            boundary,
            spans: self
                .spans
                .map(|v| v.into_iter().map(|(a, b)| a..b).collect()),
            mode,
        })
    }
}

/// `/embed` with `chunking`: per input, its chunks with their spans and
/// vectors. Runs off the async threads and outside the batcher (a
/// document's passes are its own); never fails for length.
async fn tei_embed_chunks(
    s: &AppState,
    inputs: Inputs,
    chunking: ChunkingRequest,
    options: EmbedOptions,
) -> Result<Response, ApiError> {
    let f = Flavor::Tei;
    embed_chunked(s, f, inputs, chunking, options, move |docs, _| {
        let out: Vec<Vec<Value>> = docs
            .into_iter()
            .map(|chunks| {
                chunks
                    .into_iter()
                    .map(|(c, v)| {
                        json!({
                            "start": c.chars.start,
                            "end": c.chars.end,
                            "tokens": [c.tokens.start, c.tokens.end],
                            "window": [c.window.start, c.window.end],
                            "embedding": v,
                        })
                    })
                    .collect()
            })
            .collect();
        serde_json::to_vec(&out).map_err(|e| ApiError::new(f, Kind::Backend, e.to_string()))
    })
    .await
}

/// `/v1/embeddings` with `chunking`: OpenAI's list with one entry per
/// chunk, numbered in order over all inputs, each with kiln's fields
/// `input_index` (its document), `start`, `end`, `tokens` and `window`.
async fn openai_embed_chunks(
    s: &AppState,
    inputs: Inputs,
    chunking: ChunkingRequest,
    options: EmbedOptions,
) -> Result<Response, ApiError> {
    let f = Flavor::OpenAi;
    let model = s.config.model_id.clone();
    embed_chunked(s, f, inputs, chunking, options, move |docs, tokens| {
        let data: Vec<Value> = docs
            .into_iter()
            .enumerate()
            .flat_map(|(i, chunks)| chunks.into_iter().map(move |c| (i, c)))
            .enumerate()
            .map(|(k, (i, (c, v)))| {
                json!({
                    "object": "embedding",
                    "index": k,
                    "input_index": i,
                    "start": c.chars.start,
                    "end": c.chars.end,
                    "tokens": [c.tokens.start, c.tokens.end],
                    "window": [c.window.start, c.window.end],
                    "embedding": v,
                })
            })
            .collect();
        serde_json::to_vec(&json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }))
        .map_err(|e| ApiError::new(f, Kind::Backend, e.to_string()))
    })
    .await
}

/// One document's chunks, each with its vector in the request's encoding.
type Chunked = Vec<(crate::Chunk, Encoded)>;

/// Embeds each text input as chunks (`float` or `base64` vectors) off the
/// async threads and outside the batcher (a document's passes are its
/// own); never fails for length. `body` writes the response from every
/// input's chunks and the tokens in all, on the same blocking thread.
async fn embed_chunked(
    s: &AppState,
    f: Flavor,
    inputs: Inputs,
    chunking: ChunkingRequest,
    options: EmbedOptions,
    body: impl FnOnce(Vec<Chunked>, usize) -> Result<Vec<u8>, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let Inputs::Texts(texts) = inputs else {
        return Err(ApiError::new(
            f,
            Kind::Validation,
            "chunking takes text inputs, not token ids",
        )
        .param("inputs"));
    };
    let encoding = match parse_encoding(f, options.encoding_format.as_deref())? {
        e @ (Encoding::Float | Encoding::Base64) => e,
        _ => {
            return Err(ApiError::new(
                f,
                Kind::Validation,
                "chunking returns float vectors only (encoding_format float or base64)",
            )
            .param("encoding_format"));
        }
    };
    let opts = chunking.options(f)?;
    let call = CallOptions {
        dim: options.dimensions,
        task: options.prompt_name,
        normalize: Some(options.normalize.unwrap_or(true)),
        max_tokens: Some(s.config.max_input_tokens),
        ..CallOptions::default()
    };
    let embedder = s.embedder.clone();
    let started = Instant::now();
    let (body, tokens) = off_thread(s, f, move || {
        let mut out = Vec::with_capacity(texts.len());
        let mut tokens = 0;
        for (i, t) in texts.iter().enumerate() {
            let chunks = embedder.embed_chunks(t, &opts, &call).map_err(|e| {
                let mut a = from_kiln(f, &e);
                a.message = format!("input {i}: {}", a.message);
                a
            })?;
            tokens += chunks.last().map_or(0, |c| c.tokens.end);
            out.push(
                chunks
                    .into_iter()
                    .map(|mut c| {
                        let v = std::mem::take(&mut c.embedding);
                        (c, encoding::encode(crate::Embedding::Float32(v), encoding))
                    })
                    .collect(),
            );
        }
        Ok((body(out, tokens)?, tokens))
    })
    .await?;
    s.metrics.chunked(tokens, started.elapsed().as_secs_f64());
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    resp.headers_mut().insert(
        "x-prompt-tokens",
        axum::http::HeaderValue::from(tokens as u64),
    );
    Ok(resp)
}

pub(super) async fn tei_embed(
    State(s): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let f = Flavor::Tei;
    let r: TeiEmbedRequest = parse(f, body, s.config.max_body_bytes)?;
    if let Some(chunking) = r.chunking {
        let inputs = parse_inputs(f, "inputs", r.inputs)?;
        return tei_embed_chunks(&s, inputs, chunking, r.options).await;
    }
    let req = r.options.request(
        f,
        parse_inputs(f, "inputs", r.inputs)?,
        s.config.auto_truncate,
    )?;
    let out = embed(&s, req).await?;
    let mut resp = Json(out.vectors).into_response();
    resp.headers_mut().insert(
        "x-prompt-tokens",
        axum::http::HeaderValue::from(out.tokens as u64),
    );
    Ok(resp)
}

/// `POST /tokenize` (text-embeddings-inference). Tokens carry no character
/// offsets (`start`/`stop` are null): kiln's tokenizers do not track them.
#[derive(Deserialize)]
struct TokenizeRequest {
    inputs: Option<Value>,
    add_special_tokens: Option<bool>,
    prompt_name: Option<String>,
}

pub(super) async fn tokenize(
    State(s): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let f = Flavor::Tei;
    let r: TokenizeRequest = parse(f, body, s.config.max_body_bytes)?;
    let Inputs::Texts(texts) = parse_inputs(f, "inputs", r.inputs)? else {
        return Err(ApiError::new(
            f,
            Kind::Validation,
            "`inputs` must be a string or an array of strings",
        ));
    };
    let call = tokenize_call(&s, f, r.prompt_name, r.add_special_tokens)?;
    let limits = (s.config.max_input_tokens, s.config.max_batch_tokens);
    let embedder = s.embedder.clone();
    // Tokenizing and the response (a JSON object per token) are built off
    // the async threads, and both are bounded by the same token limits as
    // `/embed`.
    let body = off_thread(&s, f, move || {
        let out: Vec<Vec<Value>> = tokens_of(&embedder, f, &texts, &call, limits)?
            .into_iter()
            .map(|tokens| {
                tokens
                    .into_iter()
                    .map(|t| {
                        json!({"id": t.id, "text": t.text, "special": t.special, "start": null, "stop": null})
                    })
                    .collect()
            })
            .collect();
        serde_json::to_vec(&out).map_err(|e| ApiError::new(f, Kind::Backend, e.to_string()))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A token as `/tokenize` and gRPC's `Tokenize` show it.
pub(super) struct Token {
    pub id: u32,
    pub text: String,
    /// A control token (`[CLS]`, `<bos>`, …).
    pub special: bool,
}

/// A tokenize request's options, checked: the prompt, special tokens and
/// length limit are the library's, as for `/embed`; over-long inputs are
/// refused, never cut.
pub(super) fn tokenize_call(
    s: &AppState,
    f: Flavor,
    prompt_name: Option<String>,
    add_special: Option<bool>,
) -> Result<CallOptions, ApiError> {
    let call = CallOptions {
        task: prompt_name,
        add_special,
        truncate: Some(false),
        max_tokens: Some(s.config.max_input_tokens),
        ..CallOptions::default()
    };
    s.embedder.dim_with(&call).map_err(|e| match e {
        crate::Error::UnknownTask { task, arch, known } => ApiError::new(
            f,
            Kind::Validation,
            format!("unknown prompt_name `{task}` for {arch} (known: {known})"),
        ),
        e => from_kiln(f, &e),
    })?;
    Ok(call)
}

/// The tokens of each text, within `(per input, per request)` token
/// limits. CPU work: run it on a blocking thread.
pub(super) fn tokens_of(
    embedder: &crate::Embedder,
    f: Flavor,
    texts: &[String],
    call: &CallOptions,
    (max_input, max_request): (usize, usize),
) -> Result<Vec<Vec<Token>>, ApiError> {
    let tok = embedder.tokenizer();
    let mut out = Vec::with_capacity(texts.len());
    let mut total = 0;
    for (i, t) in texts.iter().enumerate() {
        let ids = match embedder.tokenize_with(t, call) {
            Ok(ids) => ids,
            // The library refuses an input with no tokens at all (empty
            // text without special tokens) since it cannot be embedded;
            // here it simply tokenizes to nothing.
            Err(crate::Error::Empty) => Vec::new(),
            Err(crate::Error::TooLong { n_tokens, .. }) => {
                return Err(ApiError::new(
                    f,
                    Kind::TooLarge,
                    format!("input {i} has {n_tokens} tokens, more than the limit of {max_input}"),
                ));
            }
            Err(e) => {
                let mut a = from_kiln(f, &e);
                a.message = format!("input {i}: {}", a.message);
                return Err(a);
            }
        };
        total += ids.len();
        if total > max_request {
            return Err(ApiError::new(
                f,
                Kind::TooLarge,
                format!(
                    "the request has more than {max_request} tokens in all, the limit per request; split it"
                ),
            ));
        }
        out.push(
            ids.iter()
                .map(|&id| Token {
                    id,
                    text: tok.token_to_piece(id).unwrap_or_default(),
                    special: matches!(tok.token_type(id), Some(TokenType::Control)),
                })
                .collect(),
        );
    }
    Ok(out)
}

/// `GET /info`: the model and the server's limits (TEI's fields, plus kiln's).
pub(super) async fn info(State(s): Shared) -> Json<Value> {
    Json(info_of(&s))
}

/// What `/info` and gRPC's `Info` call the weights' type.
pub(super) const MODEL_DTYPE: &str = "q8_0";

/// The model and the server's limits (TEI's fields, plus kiln's).
pub(super) fn info_of(s: &AppState) -> Value {
    let e = &s.embedder;
    json!({
        "model_id": s.config.model_id,
        "model_sha": null,
        "model_dtype": MODEL_DTYPE,
        "model_type": {"embedding": {"pooling": e.pooling().name()}},
        "max_concurrent_requests": s.config.max_concurrent_requests,
        "max_input_length": s.config.max_input_tokens,
        "max_batch_tokens": s.config.max_batch_tokens,
        "max_batch_requests": null,
        "max_client_batch_size": null,
        "auto_truncate": s.config.auto_truncate,
        "tokenization_workers": s.tokenization_workers,
        "version": env!("CARGO_PKG_VERSION"),
        "arch": e.arch(),
        "dim": e.dim(),
        "prompts": crate::prompts::names(e.arch()),
        "isa": crate::kernels::best().isa().name(),
        "threads": e.options().threads,
    })
}

/// `GET /health`: 200 while the batching worker runs.
pub(super) async fn health(State(s): Shared) -> Response {
    if s.batcher.is_alive() {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        ApiError::new(
            Flavor::Tei,
            Kind::Unavailable,
            "the batching worker is not running",
        )
        .into_response()
    }
}

/// `GET /v1/models` (OpenAI): the one model served.
pub(super) async fn models(State(s): Shared) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": s.config.model_id, "object": "model", "created": 0, "owned_by": "kiln"}],
    }))
}

/// `GET /metrics`: Prometheus text exposition.
pub(super) async fn metrics(State(s): Shared) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Any other path.
pub(super) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        Flavor::of_path(uri.path()),
        Kind::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
}

/// `POST /decode` (TEI): token ids back to text, control tokens left out.
#[derive(Deserialize)]
struct DecodeRequest {
    ids: Option<Value>,
    skip_special_tokens: Option<bool>,
}

pub(super) async fn decode(
    State(s): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let f = Flavor::Tei;
    let r: DecodeRequest = parse(f, body, s.config.max_body_bytes)?;
    if r.skip_special_tokens == Some(false) {
        return Err(ApiError::new(
            f,
            Kind::Validation,
            "skip_special_tokens: false is not supported (kiln's decoder always leaves control tokens out)",
        )
        .param("skip_special_tokens"));
    }
    let lists = match parse_inputs(f, "ids", r.ids)? {
        Inputs::Tokens(lists) => lists,
        Inputs::Texts(_) => {
            return Err(ApiError::new(
                f,
                Kind::Validation,
                "`ids` must be an array of token ids or an array of such arrays",
            ));
        }
    };
    let tok = s.embedder.tokenizer();
    let texts = lists
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            tok.decode(ids).map_err(|e| {
                ApiError::new(f, Kind::Validation, format!("ids[{i}]: {e}")).param("ids")
            })
        })
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Json(texts).into_response())
}

/// `POST /similarity` (TEI): cosine similarity of `source_sentence` to each
/// of `sentences`, embedded as `/embed` would.
#[derive(Deserialize)]
struct SimilarityRequest {
    inputs: Option<SimilarityInputs>,
    #[serde(flatten)]
    options: EmbedOptions,
}

#[derive(Deserialize)]
struct SimilarityInputs {
    source_sentence: String,
    sentences: Vec<String>,
}

pub(super) async fn similarity(
    State(s): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let f = Flavor::Tei;
    let r: SimilarityRequest = parse(f, body, s.config.max_body_bytes)?;
    let Some(inputs) = r.inputs else {
        return Err(ApiError::new(
            f,
            Kind::Validation,
            "missing `inputs`: {\"source_sentence\": ..., \"sentences\": [...]}",
        )
        .param("inputs"));
    };
    if inputs.sentences.is_empty() {
        return Err(ApiError::new(f, Kind::Empty, "`inputs.sentences` is empty").param("inputs"));
    }
    let mut texts = Vec::with_capacity(1 + inputs.sentences.len());
    texts.push(inputs.source_sentence);
    texts.extend(inputs.sentences);
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(ApiError::new(
            f,
            Kind::Empty,
            if i == 0 {
                "`inputs.source_sentence` is empty".to_owned()
            } else {
                format!("`inputs.sentences[{}]` is empty", i - 1)
            },
        )
        .param("inputs"));
    }
    let mut options = r.options;
    options.encoding_format = None;
    options.normalize = Some(true);
    let req = options.request(f, Inputs::Texts(texts), s.config.auto_truncate)?;
    let out = embed(&s, req).await?;
    let vectors: Vec<Vec<f32>> = out
        .vectors
        .into_iter()
        .map(|v| match v {
            Encoded::Float(v) => Ok(v),
            _ => Err(ApiError::new(
                f,
                Kind::Backend,
                "similarity needs float vectors",
            )),
        })
        .collect::<Result<_, _>>()?;
    let scores: Vec<f32> = vectors[1..]
        .iter()
        .map(|v| crate::cosine(&vectors[0], v))
        .collect();
    Ok(Json(scores).into_response())
}

/// `POST /embed_all` (TEI): every token's final hidden state (before
/// pooling and projections), per input.
pub(super) async fn embed_all(
    State(s): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let f = Flavor::Tei;
    let r: TeiEmbedRequest = parse(f, body, s.config.max_body_bytes)?;
    let inputs = parse_inputs(f, "inputs", r.inputs)?;
    let call = token_states_call(
        &s,
        f,
        r.options.prompt_name,
        r.options.truncate.unwrap_or(s.config.auto_truncate),
        parse_direction(f, r.options.truncation_direction.as_deref())?,
    )?;
    let max_request = s.config.max_batch_tokens;
    let embedder = s.embedder.clone();
    let body = off_thread(&s, f, move || {
        let (out, _) = token_states(&embedder, f, inputs, &call, max_request)?;
        serde_json::to_vec(&out).map_err(|e| ApiError::new(f, Kind::Backend, e.to_string()))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A token-states request's options, checked.
pub(super) fn token_states_call(
    s: &AppState,
    f: Flavor,
    prompt_name: Option<String>,
    truncate: bool,
    direction: TruncateDirection,
) -> Result<CallOptions, ApiError> {
    let call = CallOptions {
        task: prompt_name,
        truncate: Some(truncate),
        truncate_direction: Some(direction),
        max_tokens: Some(s.config.max_input_tokens),
        ..CallOptions::default()
    };
    s.embedder.dim_with(&call).map_err(|e| from_kiln(f, &e))?;
    Ok(call)
}

/// Per input, per token, its final hidden state.
pub(super) type TokenStates = Vec<Vec<Vec<f32>>>;

/// Every token's final hidden state per input, and the tokens in all,
/// within the per-input and `max_request` token limits. CPU work: run it on
/// a blocking thread.
pub(super) fn token_states(
    embedder: &crate::Embedder,
    f: Flavor,
    inputs: Inputs,
    call: &CallOptions,
    max_request: usize,
) -> Result<(TokenStates, usize), ApiError> {
    let max = call.max_tokens.unwrap_or(usize::MAX);
    let ids: Vec<Vec<u32>> = match inputs {
        Inputs::Texts(texts) => texts
            .iter()
            .map(|t| embedder.tokenize_with(t, call))
            .collect::<Result<_, _>>(),
        Inputs::Tokens(lists) => lists
            .iter()
            .map(|l| embedder.prepare_tokens(l, call))
            .collect::<Result<_, _>>(),
    }
    .map_err(|e| match e {
        crate::Error::TooLong { n_tokens, .. } => ApiError::new(
            f,
            Kind::TooLarge,
            format!(
                "an input has {n_tokens} tokens, more than the limit of {max} (set `truncate` to cut it)"
            ),
        ),
        e => from_kiln(f, &e),
    })?;
    let total: usize = ids.iter().map(Vec::len).sum();
    if total > max_request {
        return Err(ApiError::new(
            f,
            Kind::TooLarge,
            format!(
                "the request has {total} tokens in all, more than the limit of {max_request} per request; split it"
            ),
        ));
    }
    let d = embedder.dim();
    let mut out = Vec::with_capacity(ids.len());
    for one in &ids {
        let states = embedder.token_states(one).map_err(|e| from_kiln(f, &e))?;
        out.push(states.chunks_exact(d).map(<[f32]>::to_vec).collect());
    }
    Ok((out, total))
}
