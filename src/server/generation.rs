//! `kiln serve` with a decoder model: OpenAI's `POST /v1/completions` and
//! `POST /v1/chat/completions`, whole or streamed as server-sent events
//! (`stream: true`), plus `/v1/models`, `/info` and `/health`.
//!
//! Each generation runs on a blocking thread and sends its tokens through a
//! channel; when the client goes away the channel closes and the
//! generation stops at its next token. At most `max_concurrent` generations
//! run at once (each uses all of the generator's threads); others wait.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use super::error::{ApiError, Flavor, Kind, from_kiln};
use crate::{ChatMessage, FinishReason, GenerateOptions, Generator, SamplingOptions};

/// Settings of the generation server.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// The model's name in responses.
    pub model_id: String,
    /// Generations running at once.
    pub max_concurrent: usize,
    /// Default `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Bearer token required on every route but `/health`.
    pub api_key: Option<String>,
}

impl GenConfig {
    /// Defaults, named `model_id`.
    pub fn new(model_id: impl Into<String>) -> Self {
        GenConfig {
            model_id: model_id.into(),
            max_concurrent: 1,
            default_max_tokens: 256,
            max_body_bytes: 2 * 1024 * 1024,
            api_key: None,
        }
    }
}

struct GenState {
    generator: Arc<Generator>,
    config: GenConfig,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

type Shared = State<Arc<GenState>>;

/// The routes of a generation server.
pub fn router(generator: Arc<Generator>, config: GenConfig) -> Router {
    let limit = config.max_body_bytes;
    let state = Arc::new(GenState {
        slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        generator,
        config,
        next_id: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/info", get(info))
        .route("/health", get(|| async { "ok" }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Fields shared by both routes (OpenAI's names; `top_k`, `min_p` and
/// `repetition_penalty` as llama.cpp's server accepts them).
#[derive(Debug, Deserialize)]
struct Common {
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    seed: Option<u64>,
    stop: Option<Value>,
    #[serde(default)]
    stream: bool,
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    prompt: Value,
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    common: Common,
}

fn bad(msg: impl Into<String>, param: &'static str) -> ApiError {
    ApiError::new(Flavor::OpenAi, Kind::Validation, msg).param(param)
}

impl Common {
    fn options(&self, default_max: usize) -> Result<GenerateOptions, ApiError> {
        let d = SamplingOptions::default();
        // OpenAI's default temperature is 1.
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(bad("temperature must be between 0 and 2", "temperature"));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&top_p) || top_p == 0.0 {
            return Err(bad("top_p must be in (0, 1]", "top_p"));
        }
        let stop = match &self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("stop must be a string or an array of strings", "stop"))?,
            Some(_) => return Err(bad("stop must be a string or an array of strings", "stop")),
        };
        Ok(GenerateOptions {
            max_tokens: self
                .max_completion_tokens
                .or(self.max_tokens)
                .unwrap_or(default_max),
            sampling: SamplingOptions {
                temperature,
                top_k: self.top_k.unwrap_or(0),
                top_p,
                min_p: self.min_p.unwrap_or(0.0),
                repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
                seed: self.seed.unwrap_or_else(|| {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64)
                }),
                ..d
            },
            stop,
            context: None,
        })
    }
}

/// Checks the bearer token when one is configured.
fn authorize(s: &GenState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &s.config.api_key else {
        return Ok(());
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g)
            if g.len() == key.len()
                && g.bytes().zip(key.bytes()).fold(0, |a, (x, y)| a | (x ^ y)) == 0 =>
        {
            Ok(())
        }
        _ => Err(ApiError::new(
            Flavor::OpenAi,
            Kind::Unauthorized,
            "missing or invalid API key",
        )),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let kind = if e.is_syntax() || e.is_eof() {
            Kind::Syntax
        } else {
            Kind::Validation
        };
        ApiError::new(Flavor::OpenAi, kind, format!("invalid request: {e}"))
    })
}

/// What a generation sends to its handler.
enum Msg {
    Text(String),
    Done {
        finish: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Error(ApiError),
}

/// The input of one generation.
enum Input {
    Prompt(String),
    Chat(Vec<ChatMessage>),
}

/// Starts a generation on a blocking thread once a slot is free; its
/// messages arrive on the returned channel.
async fn start(s: &Arc<GenState>, input: Input, opts: GenerateOptions) -> mpsc::Receiver<Msg> {
    let (tx, rx) = mpsc::channel(64);
    let slots = s.slots.clone();
    let generator = s.generator.clone();
    tokio::spawn(async move {
        let Ok(permit) = slots.acquire_owned().await else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut g = match &input {
                Input::Prompt(p) => generator.generate(p, &opts),
                Input::Chat(m) => generator.chat(m, &opts),
            };
            for t in g.by_ref() {
                let msg = match t {
                    Ok(t) => Msg::Text(t.text),
                    Err(e) => {
                        let _ = tx.blocking_send(Msg::Error(from_kiln(Flavor::OpenAi, &e)));
                        return;
                    }
                };
                if tx.blocking_send(msg).is_err() {
                    // The client is gone: dropping `g` stops the work.
                    return;
                }
            }
            let _ = tx.blocking_send(Msg::Done {
                finish: g.finish_reason().unwrap_or(FinishReason::Length),
                prompt_tokens: g.prompt_tokens(),
                completion_tokens: g.generated_tokens(),
            });
        })
        .await;
    });
    rx
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The shapes of the two routes.
#[derive(Clone, Copy, PartialEq)]
enum Api {
    Completion,
    Chat,
}

async fn respond(
    s: Arc<GenState>,
    api: Api,
    input: Input,
    opts: GenerateOptions,
    stream: bool,
) -> Response {
    let n = s.next_id.fetch_add(1, Ordering::Relaxed);
    let (id, object, chunk_object) = match api {
        Api::Completion => (format!("cmpl-{n}"), "text_completion", "text_completion"),
        Api::Chat => (
            format!("chatcmpl-{n}"),
            "chat.completion",
            "chat.completion.chunk",
        ),
    };
    let model = s.config.model_id.clone();
    let created = now();
    let mut rx = start(&s, input, opts).await;
    if !stream {
        let mut text = String::new();
        while let Some(m) = rx.recv().await {
            match m {
                Msg::Text(t) => text.push_str(&t),
                Msg::Error(e) => return e.into_response(),
                Msg::Done {
                    finish,
                    prompt_tokens,
                    completion_tokens,
                } => {
                    let choice = match api {
                        Api::Completion => json!({
                            "index": 0, "text": text, "logprobs": null,
                            "finish_reason": finish.name(),
                        }),
                        Api::Chat => json!({
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "logprobs": null,
                            "finish_reason": finish.name(),
                        }),
                    };
                    return Json(json!({
                        "id": id, "object": object, "created": created, "model": model,
                        "choices": [choice],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    }))
                    .into_response();
                }
            }
        }
        return ApiError::new(Flavor::OpenAi, Kind::Backend, "generation ended early")
            .into_response();
    }
    // Streamed: the first message decides between an error answer and a
    // stream, so a prompt that is too long still gets a status code.
    let first = rx.recv().await;
    if let Some(Msg::Error(e)) = first {
        return e.into_response();
    }
    let chunk = move |delta: Value, finish: Option<&'static str>| -> Event {
        let choice = match api {
            Api::Completion => json!({
                "index": 0, "text": delta, "logprobs": null, "finish_reason": finish,
            }),
            Api::Chat => json!({
                "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish,
            }),
        };
        Event::default().data(
            json!({
                "id": id, "object": chunk_object, "created": created, "model": model,
                "choices": [choice],
            })
            .to_string(),
        )
    };
    let text_delta = move |t: String| match api {
        Api::Completion => Value::String(t),
        Api::Chat => json!({ "content": t }),
    };
    let mut head = Vec::new();
    if api == Api::Chat {
        head.push(chunk(json!({"role": "assistant", "content": ""}), None));
    }
    // (pending first message, receiver, finished)
    let state = (first, rx, false);
    let events = futures_util::stream::unfold(state, move |(mut pending, mut rx, done)| {
        let chunk = chunk.clone();
        let text_delta = text_delta;
        async move {
            if done {
                return None;
            }
            let m = match pending.take() {
                Some(m) => Some(m),
                None => rx.recv().await,
            };
            let ev = match m {
                Some(Msg::Text(t)) => chunk(text_delta(t), None),
                Some(Msg::Done { finish, .. }) => {
                    let empty = match api {
                        Api::Completion => Value::String(String::new()),
                        Api::Chat => json!({}),
                    };
                    let last = chunk(empty, Some(finish.name()));
                    return Some((
                        vec![last, Event::default().data("[DONE]")],
                        (None, rx, true),
                    ));
                }
                Some(Msg::Error(e)) => Event::default().data(
                    json!({"error": {"message": e.message, "type": "server_error"}}).to_string(),
                ),
                None => return None,
            };
            Some((vec![ev], (None, rx, false)))
        }
    });
    use futures_util::StreamExt;
    let head = futures_util::stream::iter(vec![head]);
    let all = head
        .chain(events)
        .flat_map(|v| futures_util::stream::iter(v.into_iter().map(Ok::<Event, Infallible>)));
    Sse::new(all)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What both generation endpoints do before they differ: the key check
/// and the JSON body.
fn accept<T: serde::de::DeserializeOwned>(
    s: &GenState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    authorize(s, headers)?;
    parse(body)
}

async fn completions(
    State(s): Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = accept(&s, &headers, &body)?;
    let prompt = match req.prompt {
        Value::String(p) => p,
        Value::Array(a) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_owned()
        }
        _ => {
            return Err(bad(
                "prompt must be a string (one prompt per request)",
                "prompt",
            ));
        }
    };
    let opts = req.common.options(s.config.default_max_tokens)?;
    let stream = req.common.stream;
    Ok(respond(
        s.clone(),
        Api::Completion,
        Input::Prompt(prompt),
        opts,
        stream,
    )
    .await)
}

async fn chat_completions(
    State(s): Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: ChatRequest = accept(&s, &headers, &body)?;
    if req.messages.is_empty() {
        return Err(
            ApiError::new(Flavor::OpenAi, Kind::Empty, "messages is empty").param("messages"),
        );
    }
    let opts = req.common.options(s.config.default_max_tokens)?;
    let stream = req.common.stream;
    Ok(respond(
        s.clone(),
        Api::Chat,
        Input::Chat(req.messages),
        opts,
        stream,
    )
    .await)
}

async fn models(State(s): Shared) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": s.config.model_id, "object": "model", "created": 0, "owned_by": "kiln"}],
    }))
}

async fn info(State(s): Shared) -> Json<Value> {
    Json(json!({
        "model_id": s.config.model_id,
        "model": s.generator.info(),
        "last_call": s.generator.metrics(),
        "max_concurrent": s.config.max_concurrent,
    }))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        Flavor::of_path(uri.path()),
        Kind::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
}
