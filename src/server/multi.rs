//! Several models behind one server: embedders and decoders on one port,
//! each with its own batching worker or engine loop, queue bound and
//! metrics.
//!
//! A request picks its model by the `model` field of its JSON body, on
//! OpenAI's routes and TEI's alike (`GET /info` takes `?model=`); without
//! it, it goes to the first model of the kind the route needs. A name that
//! is neither a model's id nor one of its aliases gets 404 listing the
//! models served; a model of the wrong kind (a decoder on `/embed`) gets
//! 400. `/v1/models` lists every model, `/metrics` labels each model's
//! figures with `model="ID"`, `/health` is 200 while every model's worker
//! runs.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::conn::{self, BodyLimits, ConnLimits};
use super::error::{ApiError, Flavor, Kind};
use super::generation::{self, GenServer};
use super::{Server, routes};

/// One model of a [`MultiServer`].
#[derive(Debug, Clone)]
pub enum Served {
    /// An embedding model with its batching worker.
    Embedder(Server),
    /// A decoder with its continuous-batching loop.
    Generator(GenServer),
}

impl Served {
    /// The model's id in responses.
    pub fn id(&self) -> &str {
        match self {
            Served::Embedder(s) => &s.config().model_id,
            Served::Generator(g) => &g.config().model_id,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Served::Embedder(_) => "embedding",
            Served::Generator(_) => "text-generation",
        }
    }
}

/// A model and the other names requests may call it by.
#[derive(Debug, Clone)]
pub struct ServedModel {
    /// The model and its worker.
    pub served: Served,
    /// Names accepted besides its id (for example an OpenAI model name
    /// that a client insists on sending).
    pub aliases: Vec<String>,
}

/// Settings of the whole server (each model keeps its own limits).
#[derive(Debug, Clone)]
pub struct MultiConfig {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Bearer token required on every route but `/health`.
    pub api_key: Option<String>,
    /// Connection cap and timeouts.
    pub connections: ConnLimits,
}

impl Default for MultiConfig {
    fn default() -> Self {
        MultiConfig {
            max_body_bytes: 2 * 1024 * 1024,
            api_key: None,
            connections: ConnLimits::default(),
        }
    }
}

/// Why a set of models cannot be served together.
#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    /// No model at all.
    #[error("no model to serve")]
    Empty,
    /// Two models (or a model and an alias) share a name.
    #[error("two models are called `{0}`: give each a distinct id and distinct aliases")]
    Duplicate(String),
}

/// Several models served on one port.
#[derive(Debug, Clone)]
pub struct MultiServer {
    state: Arc<MultiState>,
}

#[derive(Debug)]
struct MultiState {
    models: Vec<ServedModel>,
    config: MultiConfig,
}

type Shared = State<Arc<MultiState>>;

/// The kind of model a route needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Embedder,
    Generator,
}

impl Need {
    /// The kind with its article, as messages say it.
    fn name(self) -> &'static str {
        match self {
            Need::Embedder => "an embedding",
            Need::Generator => "a text-generation",
        }
    }
}

impl MultiServer {
    /// Serves `models`; the first of each kind is its routes' default.
    pub fn new(models: Vec<ServedModel>, config: MultiConfig) -> Result<MultiServer, MultiError> {
        if models.is_empty() {
            return Err(MultiError::Empty);
        }
        let mut seen = std::collections::HashSet::new();
        for m in &models {
            for name in std::iter::once(m.served.id()).chain(m.aliases.iter().map(String::as_str)) {
                if !seen.insert(name.to_owned()) {
                    return Err(MultiError::Duplicate(name.to_owned()));
                }
            }
        }
        Ok(MultiServer {
            state: Arc::new(MultiState { models, config }),
        })
    }

    /// The models served, in order.
    pub fn models(&self) -> &[ServedModel] {
        &self.state.models
    }

    /// The HTTP routes of every model.
    pub fn router(&self) -> Router {
        let s = self.state.clone();
        let body = BodyLimits {
            max_bytes: s.config.max_body_bytes,
            timeout: s.config.connections.body_read_timeout,
        };
        Router::new()
            .route("/v1/embeddings", post(openai_embeddings))
            .route("/embed", post(tei_embed))
            .route("/tokenize", post(tokenize))
            .route("/decode", post(decode))
            .route("/similarity", post(similarity))
            .route("/embed_all", post(embed_all))
            .route("/v1/completions", post(completions))
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/models", get(models))
            .route("/info", get(info))
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .fallback(routes::not_found)
            .method_not_allowed_fallback(super::method_not_allowed)
            .layer(DefaultBodyLimit::max(body.max_bytes))
            .layer(middleware::from_fn_with_state(body, conn::read_body))
            .layer(middleware::from_fn_with_state(
                s.config.api_key.as_deref().map(Arc::from),
                super::require_api_key,
            ))
            .layer(middleware::from_fn(log_request))
            .with_state(s)
    }

    /// Serves on `listener` until `shutdown` resolves, then lets every
    /// embedder's worker finish its queued jobs.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            let ids: Vec<&str> = self.state.models.iter().map(|m| m.served.id()).collect();
            tracing::info!(%addr, models = ?ids, "listening");
        }
        conn::serve(
            listener,
            self.router(),
            self.state.config.connections,
            shutdown,
        )
        .await?;
        tracing::info!("HTTP server stopped; draining the queues");
        self.shutdown();
        Ok(())
    }

    /// The embedder `name` picks (an id or alias; `None`: the first
    /// embedder), or the error naming the models served.
    #[cfg(feature = "grpc")]
    pub(crate) fn embedder(&self, name: Option<&str>) -> Result<Server, ApiError> {
        match self.state.pick(Flavor::Tei, Need::Embedder, name)? {
            Served::Embedder(s) => Ok(s.clone()),
            Served::Generator(_) => unreachable!("pick returns the kind asked for"),
        }
    }

    /// TEI's gRPC API for this server's embedders, with its limits and API
    /// key; serve it with [`super::grpc::GrpcServer::serve`].
    #[cfg(feature = "grpc")]
    pub fn grpc(&self) -> super::grpc::GrpcServer {
        super::grpc::GrpcServer::new(self.clone())
    }

    /// The settings shared by every model.
    pub fn config(&self) -> &MultiConfig {
        &self.state.config
    }

    /// Closes every embedder's queue and waits for its worker.
    pub fn shutdown(&self) {
        for m in &self.state.models {
            if let Served::Embedder(s) = &m.served {
                s.shutdown();
            }
        }
    }
}

impl MultiState {
    /// The ids served, for error messages.
    fn names(&self) -> String {
        self.models
            .iter()
            .map(|m| format!("{} ({})", m.served.id(), m.served.kind()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The model a request names (or the first of the kind `need`).
    fn pick(&self, flavor: Flavor, need: Need, name: Option<&str>) -> Result<&Served, ApiError> {
        let fits = |m: &ServedModel| {
            matches!(
                (&m.served, need),
                (Served::Embedder(_), Need::Embedder) | (Served::Generator(_), Need::Generator)
            )
        };
        let Some(name) = name else {
            return self
                .models
                .iter()
                .find(|m| fits(m))
                .map(|m| &m.served)
                .ok_or_else(|| {
                    ApiError::new(
                        flavor,
                        Kind::NotFound,
                        format!(
                            "no model here is {} model (serving: {})",
                            need.name(),
                            self.names()
                        ),
                    )
                    .param("model")
                });
        };
        let found = self
            .models
            .iter()
            .find(|m| m.served.id() == name || m.aliases.iter().any(|a| a == name));
        match found {
            Some(m) if fits(m) => Ok(&m.served),
            Some(m) => Err(ApiError::new(
                flavor,
                Kind::Validation,
                format!(
                    "model `{name}` is a {} model; this route needs {} model (serving: {})",
                    m.served.kind(),
                    need.name(),
                    self.names()
                ),
            )
            .param("model")),
            None => Err(ApiError::new(
                flavor,
                Kind::NotFound,
                format!(
                    "model `{name}` is not served here (serving: {})",
                    self.names()
                ),
            )
            .param("model")),
        }
    }

    /// The model a JSON body names. A body that is not JSON, or whose
    /// `model` is not a string, goes to the default model, whose handler
    /// then says what is wrong with it.
    fn pick_for(
        &self,
        flavor: Flavor,
        need: Need,
        body: &Result<Bytes, BytesRejection>,
    ) -> Result<&Served, ApiError> {
        #[derive(Deserialize)]
        struct Named {
            model: Option<Value>,
        }
        let name = body
            .as_ref()
            .ok()
            .and_then(|b| serde_json::from_slice::<Named>(b).ok())
            .and_then(|n| match n.model {
                Some(Value::String(s)) => Some(s),
                _ => None,
            });
        self.pick(flavor, need, name.as_deref())
    }
}

/// Logs one line per request.
async fn log_request(req: Request, next: Next) -> Response {
    super::run_logged(req, next).await.0
}

/// Runs an embedding route's handler on the model the body names, counting
/// the request in that model's metrics.
async fn embedding_route<F, Fut>(
    s: &MultiState,
    flavor: Flavor,
    route: &str,
    body: Result<Bytes, BytesRejection>,
    handler: F,
) -> Response
where
    F: FnOnce(Server, Result<Bytes, BytesRejection>) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let server = match s.pick_for(flavor, Need::Embedder, &body) {
        Ok(Served::Embedder(server)) => server.clone(),
        Ok(Served::Generator(_)) => unreachable!("pick returns the kind asked for"),
        Err(e) => return e.into_response(),
    };
    let start = std::time::Instant::now();
    let resp = handler(server.clone(), body).await.into_response();
    server
        .state
        .metrics
        .request(route, resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}

async fn openai_embeddings(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    embedding_route(&s, Flavor::OpenAi, "/v1/embeddings", body, |m, b| {
        routes::openai_embeddings(State(m.state), b)
    })
    .await
}

async fn tei_embed(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    embedding_route(&s, Flavor::Tei, "/embed", body, |m, b| {
        routes::tei_embed(State(m.state), b)
    })
    .await
}

async fn tokenize(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    embedding_route(&s, Flavor::Tei, "/tokenize", body, |m, b| {
        routes::tokenize(State(m.state), b)
    })
    .await
}

async fn decode(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    embedding_route(&s, Flavor::Tei, "/decode", body, |m, b| {
        routes::decode(State(m.state), b)
    })
    .await
}

async fn similarity(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    embedding_route(&s, Flavor::Tei, "/similarity", body, |m, b| {
        routes::similarity(State(m.state), b)
    })
    .await
}

async fn embed_all(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    embedding_route(&s, Flavor::Tei, "/embed_all", body, |m, b| {
        routes::embed_all(State(m.state), b)
    })
    .await
}

/// The body of a generation route, or the error a single-model server
/// would give for it.
fn generation_body(s: &MultiState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                Flavor::OpenAi,
                Kind::TooLarge,
                format!(
                    "the request body is larger than the limit of {} bytes",
                    s.config.max_body_bytes
                ),
            )
        } else {
            ApiError::new(
                Flavor::OpenAi,
                Kind::Syntax,
                format!("cannot read the body: {rej}"),
            )
        }
    })
}

fn pick_generator(
    s: &MultiState,
    body: &Result<Bytes, BytesRejection>,
) -> Result<GenServer, ApiError> {
    match s.pick_for(Flavor::OpenAi, Need::Generator, body)? {
        Served::Generator(g) => Ok(g.clone()),
        Served::Embedder(_) => unreachable!("pick returns the kind asked for"),
    }
}

async fn completions(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    let run = async {
        let g = pick_generator(&s, &body)?;
        generation::completions(State(g.state), generation_body(&s, body)?).await
    };
    run.await.into_response()
}

async fn chat_completions(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    let run = async {
        let g = pick_generator(&s, &body)?;
        generation::chat_completions(State(g.state), generation_body(&s, body)?).await
    };
    run.await.into_response()
}

/// `GET /v1/models`: every model, with its kind and aliases.
async fn models(State(s): Shared) -> Json<Value> {
    let data: Vec<Value> = s
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.served.id(),
                "object": "model",
                "created": 0,
                "owned_by": "kiln",
                "kind": m.served.kind(),
                "aliases": m.aliases,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /info[?model=ID]`: one model's info (the first model's by
/// default), with the ids of all.
async fn info(State(s): Shared, uri: axum::http::Uri) -> Response {
    let asked = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "model")
        .map(|(_, v)| v.into_owned());
    let served = match &asked {
        None => &s.models[0].served,
        Some(name) => match s
            .models
            .iter()
            .find(|m| m.served.id() == name || m.aliases.iter().any(|a| a == name))
        {
            Some(m) => &m.served,
            None => {
                return ApiError::new(
                    Flavor::Tei,
                    Kind::NotFound,
                    format!("model `{name}` is not served here (serving: {})", s.names()),
                )
                .into_response();
            }
        },
    };
    let mut v = match served {
        Served::Embedder(e) => e.info(),
        Served::Generator(g) => g.info(),
    };
    if let Value::Object(o) = &mut v {
        o.insert(
            "models".into(),
            s.models.iter().map(|m| m.served.id()).collect(),
        );
    }
    Json(v).into_response()
}

/// `GET /health`: 200 while every embedder's worker runs.
async fn health(State(s): Shared) -> Response {
    let down: Vec<&str> = s
        .models
        .iter()
        .filter(|m| matches!(&m.served, Served::Embedder(e) if !e.is_alive()))
        .map(|m| m.served.id())
        .collect();
    if down.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        ApiError::new(
            Flavor::Tei,
            Kind::Unavailable,
            format!("the batching worker of {} is not running", down.join(", ")),
        )
        .into_response()
    }
}

/// `GET /metrics`: every model's figures, labelled `model="ID"`.
async fn metrics(State(s): Shared) -> Response {
    let body = super::metrics::combine(s.models.iter().map(|m| {
        let text = match &m.served {
            Served::Embedder(e) => e.render_metrics(),
            Served::Generator(g) => g.render_metrics(),
        };
        (m.served.id(), text)
    }));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
