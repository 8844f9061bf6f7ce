//! `kiln serve` with a decoder model: OpenAI's `POST /v1/completions` and
//! `POST /v1/chat/completions`, whole or streamed as server-sent events
//! (`stream: true`), plus `/v1/models`, `/info` and `/health`.
//!
//! Every generation goes through one continuous-batching loop
//! ([`Engine`]): up to `max_concurrent` generations advance together, one
//! token each per batched forward pass, newcomers join between steps, and
//! each gets exactly what it would get alone. Tokens reach the handler
//! through a channel; when the client goes away the channel closes and the
//! generation leaves the batch at the next step. At most `max_waiting`
//! others wait, and more get 429. A stream that fails part way ends with
//! an error event.
//!
//! Structured output: OpenAI's `response_format` (`text`, `json_object`,
//! `json_schema`) and llama.cpp's `grammar` (GBNF) and `json_schema` on
//! both routes. The grammar is compiled before the request is queued, so a
//! schema that kiln cannot enforce gets 400 and never takes a slot.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::conn::{BodyLimits, ConnLimits};
use super::error::{ApiError, Flavor, Kind, from_kiln};
use super::metrics::GenMetrics;
use crate::{
    ChatMessage, Draft, Engine, EngineEvent, EngineInput, EngineRequest, FinishReason,
    GenerateOptions, Generator, Grammar, SamplingOptions,
};

/// Settings of the generation server.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// The model's name in responses.
    pub model_id: String,
    /// Generations decoded together (batch slots, each with its own KV
    /// cache).
    pub max_concurrent: usize,
    /// Generations that may wait for a slot; more get 429.
    pub max_waiting: usize,
    /// Default `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Bearer token required on every route but `/health`.
    pub api_key: Option<String>,
    /// Connection cap and timeouts.
    pub connections: ConnLimits,
    /// Speculative decoding for every generation (none by default).
    pub draft: Option<Draft>,
}

impl GenConfig {
    /// Defaults, named `model_id`.
    pub fn new(model_id: impl Into<String>) -> Self {
        GenConfig {
            model_id: model_id.into(),
            max_concurrent: 4,
            max_waiting: 64,
            default_max_tokens: 256,
            max_body_bytes: 2 * 1024 * 1024,
            api_key: None,
            connections: ConnLimits::default(),
            draft: None,
        }
    }
}

pub(super) struct GenState {
    generator: Arc<Generator>,
    config: GenConfig,
    /// The continuous-batching loop all generations go through.
    engine: Engine,
    metrics: Arc<GenMetrics>,
    /// Generations running or waiting for a slot.
    admitted: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

type Shared = State<Arc<GenState>>;

/// A decoder being served: its continuous-batching loop, limits and
/// metrics. Build its routes with [`GenServer::router`], or serve it among
/// other models with [`super::multi`].
#[derive(Clone)]
pub struct GenServer {
    pub(super) state: Arc<GenState>,
}

impl std::fmt::Debug for GenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenServer")
            .field("model_id", &self.state.config.model_id)
            .finish_non_exhaustive()
    }
}

impl GenServer {
    /// Starts the engine loop of `generator`.
    pub fn new(generator: Arc<Generator>, config: GenConfig) -> GenServer {
        GenServer {
            state: Arc::new(GenState {
                engine: Engine::new(generator.clone(), config.max_concurrent.max(1)),
                metrics: Arc::new(GenMetrics::default()),
                admitted: Arc::new(AtomicUsize::new(0)),
                generator,
                config,
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &GenConfig {
        &self.state.config
    }

    /// The generator served.
    pub fn generator(&self) -> &Arc<Generator> {
        &self.state.generator
    }

    /// The Prometheus text of this model's metrics.
    pub fn render_metrics(&self) -> String {
        let s = &self.state;
        s.metrics.render(s.engine.active(), s.engine.waiting())
    }

    /// What `/info` says about this model.
    pub fn info(&self) -> Value {
        let s = &self.state;
        json!({
            "model_id": s.config.model_id,
            "model": s.generator.info(),
            "max_concurrent": s.config.max_concurrent,
            "max_waiting": s.config.max_waiting,
        })
    }

    /// The routes of this model alone.
    pub fn router(&self) -> Router {
        let config = &self.state.config;
        let body = BodyLimits {
            max_bytes: config.max_body_bytes,
            timeout: config.connections.body_read_timeout,
        };
        let key = config.api_key.as_deref().map(Arc::from);
        Router::new()
            .route("/v1/completions", post(completions))
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/models", get(models))
            .route("/info", get(info))
            .route("/metrics", get(metrics))
            .route("/health", get(|| async { "ok" }))
            .fallback(not_found)
            .method_not_allowed_fallback(super::method_not_allowed)
            .layer(DefaultBodyLimit::max(body.max_bytes))
            .layer(middleware::from_fn_with_state(body, super::conn::read_body))
            .layer(middleware::from_fn_with_state(key, super::require_api_key))
            .layer(middleware::from_fn(log_request))
            .with_state(self.state.clone())
    }
}

/// The routes of a generation server.
pub fn router(generator: Arc<Generator>, config: GenConfig) -> Router {
    GenServer::new(generator, config).router()
}

/// Logs one line per request (no metrics for generations yet).
async fn log_request(req: Request, next: Next) -> Response {
    super::run_logged(req, next).await.0
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
    /// OpenAI's `{"type": "text" | "json_object" | "json_schema", ...}`.
    response_format: Option<Value>,
    /// llama.cpp's GBNF grammar.
    grammar: Option<Value>,
    /// llama.cpp's JSON Schema.
    json_schema: Option<Value>,
}

/// An output constraint as a request asks for it, before compiling.
#[derive(Debug, PartialEq)]
enum Constraint {
    /// A GBNF grammar.
    Gbnf(String),
    /// JSON valid against a schema.
    Schema(Value),
    /// Any JSON object.
    AnyJson,
}

/// A constraint and the request field it came from.
#[derive(Debug, PartialEq)]
struct Constrained {
    constraint: Constraint,
    param: &'static str,
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
        let min_p = self.min_p.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&min_p) {
            return Err(bad("min_p must be between 0 and 1", "min_p"));
        }
        let repetition_penalty = self.repetition_penalty.unwrap_or(1.0);
        if !(repetition_penalty > 0.0 && repetition_penalty.is_finite()) {
            return Err(bad(
                "repetition_penalty must be a positive number",
                "repetition_penalty",
            ));
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
                min_p,
                repetition_penalty,
                seed: self.seed.unwrap_or_else(|| {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64)
                }),
                ..d
            },
            stop,
            context: None,
            grammar: None,
            draft: None,
        })
    }
}

impl Common {
    /// The output constraint the request asks for: at most one of
    /// `response_format` (other than `text`), `grammar` and `json_schema`.
    fn constraint(&self) -> Result<Option<Constrained>, ApiError> {
        let mut found = Vec::new();
        if let Some(c) = response_format(self.response_format.as_ref())? {
            found.push(c);
        }
        match &self.grammar {
            None | Some(Value::Null) => {}
            // llama.cpp's default: no grammar.
            Some(Value::String(g)) if g.is_empty() => {}
            Some(Value::String(g)) => found.push(Constrained {
                constraint: Constraint::Gbnf(g.clone()),
                param: "grammar",
            }),
            Some(_) => return Err(bad("grammar must be a string (a GBNF grammar)", "grammar")),
        }
        match &self.json_schema {
            None | Some(Value::Null) => {}
            Some(v @ (Value::Object(_) | Value::Bool(_))) => found.push(Constrained {
                constraint: Constraint::Schema(v.clone()),
                param: "json_schema",
            }),
            Some(_) => {
                return Err(bad(
                    "json_schema must be an object (a JSON Schema)",
                    "json_schema",
                ));
            }
        }
        if found.len() > 1 {
            let names: Vec<&str> = found
                .iter()
                .map(|c| c.param.split('.').next().unwrap_or(c.param))
                .collect();
            return Err(bad(
                format!(
                    "give at most one of response_format, grammar and json_schema (got {})",
                    names.join(" and ")
                ),
                found[1].param,
            ));
        }
        Ok(found.pop())
    }

    /// The compiled constraint, off the async threads (a large schema can
    /// take a while). A constraint that does not compile is a 400 naming
    /// the field.
    async fn grammar(&self) -> Result<Option<Grammar>, ApiError> {
        let Some(c) = self.constraint()? else {
            return Ok(None);
        };
        let param = c.param;
        match tokio::task::spawn_blocking(move || compile(c)).await {
            Ok(r) => r.map(Some),
            Err(e) => {
                tracing::error!(error = %e, param, "compiling a grammar failed");
                Err(ApiError::new(
                    Flavor::OpenAi,
                    Kind::Backend,
                    "compiling the grammar failed (internal error)",
                ))
            }
        }
    }
}

/// Reads OpenAI's `response_format`; `None` for no constraint.
fn response_format(v: Option<&Value>) -> Result<Option<Constrained>, ApiError> {
    let rf = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(bad(
                "response_format must be an object such as {\"type\": \"json_object\"}",
                "response_format",
            ));
        }
    };
    let ty = match rf.get("type") {
        Some(Value::String(t)) => t.as_str(),
        None | Some(Value::Null) => {
            return Err(bad(
                "response_format.type is missing (text, json_object or json_schema)",
                "response_format.type",
            ));
        }
        Some(other) => {
            return Err(bad(
                format!(
                    "response_format.type must be a string (text, json_object or json_schema), not {other}"
                ),
                "response_format.type",
            ));
        }
    };
    let constraint = match ty {
        "text" => return Ok(None),
        // llama.cpp also takes a `schema` here.
        "json_object" => match rf.get("schema") {
            None | Some(Value::Null) => Constraint::AnyJson,
            Some(s @ (Value::Object(_) | Value::Bool(_))) => Constraint::Schema(s.clone()),
            Some(_) => {
                return Err(bad(
                    "response_format.schema must be an object (a JSON Schema)",
                    "response_format.schema",
                ));
            }
        },
        "json_schema" => {
            let Some(Value::Object(js)) = rf.get("json_schema") else {
                return Err(bad(
                    "response_format.json_schema must be an object with `name` and `schema`",
                    "response_format.json_schema",
                ));
            };
            match js.get("name") {
                Some(Value::String(n)) if !n.is_empty() => {}
                _ => {
                    return Err(bad(
                        "response_format.json_schema.name is required (a string)",
                        "response_format.json_schema.name",
                    ));
                }
            }
            if !matches!(js.get("strict"), None | Some(Value::Null | Value::Bool(_))) {
                return Err(bad(
                    "response_format.json_schema.strict must be a boolean",
                    "response_format.json_schema.strict",
                ));
            }
            // Strict or not, kiln enforces the schema exactly or refuses
            // it; without a schema, any JSON object.
            match js.get("schema") {
                None | Some(Value::Null) => Constraint::AnyJson,
                Some(s @ (Value::Object(_) | Value::Bool(_))) => Constraint::Schema(s.clone()),
                Some(_) => {
                    return Err(bad(
                        "response_format.json_schema.schema must be an object (a JSON Schema)",
                        "response_format.json_schema.schema",
                    ));
                }
            }
        }
        other => {
            return Err(bad(
                format!(
                    "unknown response_format.type `{other}` (text, json_object or json_schema)"
                ),
                "response_format.type",
            ));
        }
    };
    let param = match constraint {
        Constraint::Schema(_) if ty == "json_schema" => "response_format.json_schema.schema",
        Constraint::Schema(_) => "response_format.schema",
        _ => "response_format",
    };
    Ok(Some(Constrained { constraint, param }))
}

/// Compiles a constraint; its errors are the grammar's or schema's, at
/// the field it came from.
fn compile(c: Constrained) -> Result<Grammar, ApiError> {
    let r = match &c.constraint {
        Constraint::Gbnf(g) => Grammar::gbnf(g),
        Constraint::Schema(s) => Grammar::json_schema(s),
        Constraint::AnyJson => Ok(Grammar::json()),
    };
    r.map_err(|e| bad(e.to_string(), c.param))
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

/// Counts a generation as admitted (running or waiting) until dropped.
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts a generation on a blocking thread once a slot is free; its
/// messages arrive on the returned channel. 429 when every slot is taken
/// and `max_waiting` generations already wait.
fn start(
    s: &Arc<GenState>,
    input: Input,
    opts: GenerateOptions,
) -> Result<mpsc::Receiver<Msg>, ApiError> {
    let max = s.config.max_concurrent.max(1) + s.config.max_waiting;
    if s.admitted.fetch_add(1, Ordering::AcqRel) >= max {
        s.admitted.fetch_sub(1, Ordering::AcqRel);
        s.metrics.rejected();
        return Err(ApiError::new(
            Flavor::OpenAi,
            Kind::Overloaded,
            format!(
                "the server is at capacity ({} generations waiting); retry later",
                s.config.max_waiting
            ),
        ));
    }
    let admitted = Admitted(s.admitted.clone());
    let (tx, rx) = mpsc::channel(64);
    // The engine never waits on a slow client: its events queue here, and
    // a task feeds them to the handler's bounded channel.
    let (etx, mut erx) = mpsc::unbounded_channel::<Msg>();
    tokio::spawn(async move {
        // Admitted while its client listens and its events flow.
        let _admitted = admitted;
        loop {
            tokio::select! {
                m = erx.recv() => match m {
                    Some(m) => if tx.send(m).await.is_err() { break },
                    None => break,
                },
                () = tx.closed() => break,
            }
        }
    });
    let gone = etx.clone();
    let metrics = s.metrics.clone();
    let submitted = std::time::Instant::now();
    let mut first = Some(());
    let sink = move |ev: EngineEvent| {
        let msg = match ev {
            EngineEvent::Done {
                finish,
                prompt_tokens,
                completion_tokens,
                queue_seconds,
            } => {
                metrics.finished(prompt_tokens, completion_tokens, queue_seconds);
                Msg::Done {
                    finish,
                    prompt_tokens,
                    completion_tokens,
                }
            }
            EngineEvent::Token(t) => {
                if first.take().is_some() {
                    metrics.first_token(submitted.elapsed().as_secs_f64());
                }
                Msg::Text(t.text)
            }
            EngineEvent::Error(e) => Msg::Error(from_kiln(Flavor::OpenAi, &e)),
        };
        etx.send(msg).is_ok()
    };
    s.engine.submit(EngineRequest {
        input: match input {
            Input::Prompt(p) => EngineInput::Prompt(p),
            Input::Chat(m) => EngineInput::Chat(m),
        },
        opts,
        sink: Box::new(sink),
        // A client that leaves, waiting or running, gives up its place.
        cancelled: Arc::new(move || gone.is_closed()),
    });
    Ok(rx)
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
    let mut rx = match start(&s, input, opts) {
        Ok(rx) => rx,
        Err(e) => return e.into_response(),
    };
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
    sse(api, id, created, model, chunk_object, first, rx)
}

/// The event stream of a generation whose first message is `first`: text
/// chunks, then the finish chunk and `[DONE]`, or an error event when the
/// generation fails or ends without finishing.
fn sse(
    api: Api,
    id: String,
    created: u64,
    model: String,
    chunk_object: &'static str,
    first: Option<Msg>,
    rx: mpsc::Receiver<Msg>,
) -> Response {
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
                Some(Msg::Error(e)) => {
                    return Some((vec![error_event(&e.message)], (None, rx, true)));
                }
                None => {
                    tracing::error!("a streamed generation ended before it finished");
                    let ev = error_event("the generation ended before it finished");
                    return Some((vec![ev], (None, rx, true)));
                }
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

/// The last event of a stream that failed.
fn error_event(message: &str) -> Event {
    Event::default()
        .data(json!({"error": {"message": message, "type": "server_error"}}).to_string())
}

pub(super) async fn completions(
    State(s): Shared,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse(&body)?;
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
    let mut opts = req.common.options(s.config.default_max_tokens)?;
    opts.grammar = req.common.grammar().await?;
    opts.draft = s.config.draft.clone();
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

pub(super) async fn chat_completions(
    State(s): Shared,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(&body)?;
    if req.messages.is_empty() {
        return Err(
            ApiError::new(Flavor::OpenAi, Kind::Empty, "messages is empty").param("messages"),
        );
    }
    let mut opts = req.common.options(s.config.default_max_tokens)?;
    opts.grammar = req.common.grammar().await?;
    opts.draft = s.config.draft.clone();
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

/// The model and the limits. Per-call metrics are not shown: they belong to
/// whichever client made the last call.
/// Prometheus text: the batch's occupancy and the generations' figures.
async fn metrics(State(s): Shared) -> Response {
    let body = GenServer { state: s }.render_metrics();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn info(State(s): Shared) -> Json<Value> {
    Json(GenServer { state: s }.info())
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        Flavor::of_path(uri.path()),
        Kind::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `data:` payloads of a streamed response.
    async fn stream_data(first: Option<Msg>, rx: mpsc::Receiver<Msg>) -> Vec<String> {
        let resp = sse(Api::Completion, "c".into(), 0, "m".into(), "x", first, rx);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec())
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn a_stream_that_stops_early_ends_with_an_error_event() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Msg::Text("b".into())).await.unwrap();
        drop(tx);
        let data = stream_data(Some(Msg::Text("a".into())), rx).await;
        assert_eq!(data.len(), 3, "{data:?}");
        let last: Value = serde_json::from_str(&data[2]).unwrap();
        assert!(last["error"]["message"].is_string(), "{last}");
    }

    #[tokio::test]
    async fn a_failing_stream_ends_with_its_error() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Msg::Error(ApiError::new(
            Flavor::OpenAi,
            Kind::Backend,
            "boom",
        )))
        .await
        .unwrap();
        tx.send(Msg::Text("never sent".into())).await.unwrap();
        let data = stream_data(Some(Msg::Text("a".into())), rx).await;
        assert_eq!(data.len(), 2, "{data:?}");
        assert!(data[1].contains("boom"), "{data:?}");
        drop(tx);
    }

    #[tokio::test]
    async fn a_finished_stream_ends_with_done() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Msg::Done {
            finish: FinishReason::Length,
            prompt_tokens: 1,
            completion_tokens: 1,
        })
        .await
        .unwrap();
        let data = stream_data(Some(Msg::Text("a".into())), rx).await;
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    }

    #[test]
    fn sampling_values_out_of_range_are_refused() {
        for (v, param) in [
            (json!({"min_p": -0.1}), "min_p"),
            (json!({"min_p": 1.5}), "min_p"),
            (json!({"repetition_penalty": 0.0}), "repetition_penalty"),
            (json!({"repetition_penalty": -1.0}), "repetition_penalty"),
        ] {
            let e = common(v.clone()).options(8).unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{v}");
            assert_eq!(e.param, Some(param), "{v}");
        }
        assert!(
            common(json!({"min_p": 0.05, "repetition_penalty": 1.1}))
                .options(8)
                .is_ok()
        );
    }

    fn common(v: Value) -> Common {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn constraint_shapes_are_read() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let c = |v: Value| common(v).constraint().unwrap();
        let some = |constraint, param| Some(Constrained { constraint, param });
        assert_eq!(c(json!({})), None);
        assert_eq!(c(json!({"response_format": null})), None);
        assert_eq!(c(json!({"response_format": {"type": "text"}})), None);
        assert_eq!(
            c(json!({"response_format": {"type": "json_object"}})),
            some(Constraint::AnyJson, "response_format")
        );
        assert_eq!(
            c(json!({"response_format": {"type": "json_object", "schema": schema}})),
            some(Constraint::Schema(schema.clone()), "response_format.schema")
        );
        assert_eq!(
            c(
                json!({"response_format": {"type": "json_schema", "json_schema": {
                "name": "thing", "schema": schema, "strict": true}}})
            ),
            some(
                Constraint::Schema(schema.clone()),
                "response_format.json_schema.schema"
            )
        );
        // OpenAI's schema is optional: then any JSON object.
        assert_eq!(
            c(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})),
            some(Constraint::AnyJson, "response_format")
        );
        assert_eq!(
            c(json!({"grammar": "root ::= \"a\""})),
            some(Constraint::Gbnf("root ::= \"a\"".into()), "grammar")
        );
        assert_eq!(c(json!({"grammar": ""})), None);
        assert_eq!(
            c(json!({"json_schema": schema})),
            some(Constraint::Schema(schema.clone()), "json_schema")
        );
        // `text` constrains nothing, so it goes with a grammar.
        assert_eq!(
            c(json!({"response_format": {"type": "text"}, "grammar": "root ::= \"a\""})),
            some(Constraint::Gbnf("root ::= \"a\"".into()), "grammar")
        );
    }

    #[test]
    fn bad_constraints_are_refused_with_their_field() {
        for (v, param) in [
            (
                json!({"response_format": {"type": "xml"}}),
                "response_format.type",
            ),
            (json!({"response_format": {}}), "response_format.type"),
            (
                json!({"response_format": {"type": 3}}),
                "response_format.type",
            ),
            (json!({"response_format": "json_object"}), "response_format"),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "response_format.json_schema",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
                "response_format.json_schema.name",
            ),
            (
                json!({"response_format": {"type": "json_schema",
                    "json_schema": {"name": "x", "schema": "{}"}}}),
                "response_format.json_schema.schema",
            ),
            (
                json!({"response_format": {"type": "json_schema",
                    "json_schema": {"name": "x", "strict": "yes"}}}),
                "response_format.json_schema.strict",
            ),
            (json!({"grammar": 5}), "grammar"),
            (json!({"json_schema": "{}"}), "json_schema"),
            (
                json!({"grammar": "root ::= \"a\"", "json_schema": {"type": "object"}}),
                "json_schema",
            ),
            (
                json!({"response_format": {"type": "json_object"}, "grammar": "root ::= \"a\""}),
                "grammar",
            ),
        ] {
            let e = common(v.clone()).constraint().unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{v}");
            assert_eq!(e.param, Some(param), "{v}: {}", e.message);
        }
        let e = common(json!({"response_format": {"type": "xml"}}))
            .constraint()
            .unwrap_err();
        assert!(e.message.contains("`xml`"), "{}", e.message);
        let e = common(json!({"grammar": "root ::= \"a\"", "json_schema": {}}))
            .constraint()
            .unwrap_err();
        assert!(
            e.message.contains("grammar and json_schema"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_constraint_that_does_not_compile_is_a_400() {
        // `pattern` is not enforced (or, while the converter is being
        // written, nothing is): either way a 400 at the schema's field.
        let pattern = json!({"type": "string", "pattern": "a+"});
        for (v, param) in [
            (
                json!({"response_format": {"type": "json_schema",
                    "json_schema": {"name": "x", "schema": pattern, "strict": true}}}),
                "response_format.json_schema.schema",
            ),
            (json!({"json_schema": pattern}), "json_schema"),
            (json!({"grammar": "root ::= (\"a\""}), "grammar"),
            (json!({"grammar": "root ::= undefined-rule"}), "grammar"),
        ] {
            let e = common(v.clone()).grammar().await.unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{v}");
            assert_eq!(e.param, Some(param), "{v}: {}", e.message);
            let body = axum::body::to_bytes(e.into_response().into_body(), usize::MAX)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
            assert_eq!(body["error"]["param"], param, "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }

    #[tokio::test]
    async fn a_gbnf_grammar_compiles() {
        let g = common(json!({"grammar": "root ::= \"yes\" | \"no\""}))
            .grammar()
            .await
            .unwrap()
            .expect("a grammar");
        assert!(g.compiled().matches(b"no") && !g.compiled().matches(b"maybe"));
        assert!(common(json!({})).grammar().await.unwrap().is_none());
    }
}
