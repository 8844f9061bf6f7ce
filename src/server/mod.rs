//! `kiln serve`: an embedding server that speaks OpenAI's `/v1/embeddings`
//! and text-embeddings-inference's `/embed`, on axum/tokio.
//!
//! Handlers parse, tokenize on a bounded set of blocking threads, then hand
//! the token ids to the [`batcher`]: neither tokenizing nor inference runs on
//! the async runtime's threads. Limits answer at once: a full queue gives
//! 429, a large body or too many tokens 413. Dropping a request (client
//! gone) cancels its queued work. [`conn`] caps connections and times out
//! slow or idle ones.

pub mod batcher;
pub mod conn;
pub mod encoding;
pub mod error;
pub mod generation;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod metrics;
pub mod multi;
mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::Embedder;
use batcher::Batcher;
use conn::{BodyLimits, ConnLimits};
use error::{ApiError, Flavor, Kind};
use metrics::Metrics;

/// Server settings (the `kiln serve` flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// The model's name in responses and `/v1/models`.
    pub model_id: String,
    /// Jobs that may wait in the queue before requests get 429.
    pub max_concurrent_requests: usize,
    /// Tokens per computed batch, and per request.
    pub max_batch_tokens: usize,
    /// Tokens per input (at most the model's context).
    pub max_input_tokens: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Cut inputs longer than `max_input_tokens` (keeping the model's start
    /// and end tokens) when a request does not say `truncate`; otherwise
    /// they get 413.
    pub auto_truncate: bool,
    /// Bearer token required on every route but `/health`.
    pub api_key: Option<String>,
    /// Connection cap and timeouts.
    pub connections: ConnLimits,
}

impl Config {
    /// Defaults for `embedder`, named `model_id`.
    pub fn new(model_id: impl Into<String>, embedder: &Embedder) -> Config {
        Config {
            model_id: model_id.into(),
            max_concurrent_requests: 512,
            max_batch_tokens: 16384,
            max_input_tokens: embedder.max_tokens(),
            max_body_bytes: 2 * 1024 * 1024,
            auto_truncate: false,
            api_key: None,
            connections: ConnLimits::default(),
        }
    }
}

/// What every handler sees.
#[derive(Debug)]
pub struct AppState {
    embedder: Arc<Embedder>,
    config: Config,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    /// Tokenizing jobs allowed to wait or run (more get 429).
    cpu_queue: Arc<tokio::sync::Semaphore>,
    /// Tokenizing jobs running at once on blocking threads.
    cpu_workers: Arc<tokio::sync::Semaphore>,
    /// How many: one per core.
    tokenization_workers: usize,
}

/// A running server's shared state: build the router from it, stop it with
/// [`Server::shutdown`].
#[derive(Debug, Clone)]
pub struct Server {
    state: Arc<AppState>,
}

impl Server {
    /// Starts the batching worker for `embedder`.
    pub fn new(embedder: Arc<Embedder>, mut config: Config) -> std::io::Result<Server> {
        config.max_input_tokens = config.max_input_tokens.clamp(1, embedder.max_tokens());
        config.max_batch_tokens = config.max_batch_tokens.max(config.max_input_tokens);
        let metrics = Arc::new(Metrics::default());
        let batcher = Batcher::start(
            embedder.clone(),
            metrics.clone(),
            config.max_concurrent_requests,
            config.max_batch_tokens,
        )?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Server {
            state: Arc::new(AppState {
                embedder,
                cpu_queue: Arc::new(tokio::sync::Semaphore::new(
                    config.max_concurrent_requests.max(1),
                )),
                cpu_workers: Arc::new(tokio::sync::Semaphore::new(workers)),
                tokenization_workers: workers,
                config,
                batcher,
                metrics,
            }),
        })
    }

    /// The settings in use (limits clamped to the model).
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// The embedder served.
    pub fn embedder(&self) -> &Arc<Embedder> {
        &self.state.embedder
    }

    /// What `/info` says about this model: TEI's fields, plus kiln's.
    pub fn info(&self) -> serde_json::Value {
        routes::info_of(&self.state)
    }

    /// The Prometheus text of this model's metrics.
    pub fn render_metrics(&self) -> String {
        self.state.metrics.render()
    }

    /// Whether the batching worker runs.
    pub fn is_alive(&self) -> bool {
        self.state.batcher.is_alive()
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        let s = self.state.clone();
        Router::new()
            .route("/v1/embeddings", post(routes::openai_embeddings))
            .route("/embed", post(routes::tei_embed))
            .route("/tokenize", post(routes::tokenize))
            .route("/decode", post(routes::decode))
            .route("/similarity", post(routes::similarity))
            .route("/embed_all", post(routes::embed_all))
            .route("/info", get(routes::info))
            .route("/health", get(routes::health))
            .route("/v1/models", get(routes::models))
            .route("/metrics", get(routes::metrics))
            .fallback(routes::not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(s.config.max_body_bytes))
            .layer(middleware::from_fn_with_state(
                BodyLimits {
                    max_bytes: s.config.max_body_bytes,
                    timeout: s.config.connections.body_read_timeout,
                },
                conn::read_body,
            ))
            .layer(middleware::from_fn_with_state(
                s.config.api_key.as_deref().map(Arc::from),
                require_api_key,
            ))
            .layer(middleware::from_fn_with_state(s.clone(), observe))
            .with_state(s)
    }

    /// Serves on `listener` until `shutdown` resolves, then finishes the
    /// requests in flight and every queued job before returning.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, model = %self.state.config.model_id, "listening");
        }
        conn::serve(
            listener,
            self.router(),
            self.state.config.connections,
            shutdown,
        )
        .await?;
        tracing::info!("HTTP server stopped; draining the queue");
        self.shutdown();
        Ok(())
    }

    /// Closes the queue and waits for the worker to finish queued jobs.
    pub fn shutdown(&self) {
        self.state.batcher.shutdown();
    }

    /// TEI's gRPC API for this model, with this server's limits and API
    /// key; serve it with [`grpc::GrpcServer::serve`] beside the HTTP
    /// routes.
    #[cfg(feature = "grpc")]
    pub fn grpc(&self) -> Result<grpc::GrpcServer, multi::MultiError> {
        let config = multi::MultiConfig {
            max_body_bytes: self.state.config.max_body_bytes,
            api_key: self.state.config.api_key.clone(),
            connections: self.state.config.connections,
        };
        let one = multi::ServedModel {
            served: multi::Served::Embedder(self.clone()),
            aliases: Vec::new(),
        };
        Ok(grpc::GrpcServer::new(multi::MultiServer::new(
            vec![one],
            config,
        )?))
    }
}

/// Counts every request by route and status, with its latency, and logs it.
async fn observe(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let (resp, route, secs) = run_logged(req, next).await;
    s.metrics.request(&route, resp.status().as_u16(), secs);
    resp
}

/// Runs a request and logs one line: method, route, status and latency (for
/// a stream, until its head). Returns the response with its route and
/// seconds for the caller's metrics.
pub(crate) async fn run_logged(req: Request, next: Next) -> (Response, String, f64) {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().clone();
    let resp = next.run(req).await;
    let secs = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    tracing::info!(%method, route, status, ms = secs * 1e3, "request");
    (resp, route, secs)
}

/// Requires `Authorization: Bearer KEY` on every route but `/health` when a
/// key is set.
pub(crate) async fn require_api_key(
    State(key): State<Option<Arc<str>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(key) = key else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/health" {
        return next.run(req).await;
    }
    match bearer(req.headers()) {
        Some(g) if key_matches(g, &key) => next.run(req).await,
        Some(_) => ApiError::new(Flavor::of_path(path), Kind::Unauthorized, "invalid API key")
            .into_response(),
        None => ApiError::new(
            Flavor::of_path(path),
            Kind::Unauthorized,
            "missing API key: send `Authorization: Bearer KEY`",
        )
        .into_response(),
    }
}

/// The credentials of an `Authorization: Bearer TOKEN` header. The scheme
/// is case-insensitive (RFC 7235).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_token(headers.get(AUTHORIZATION)?.to_str().ok()?)
}

/// The credentials of an `Authorization` value `Bearer TOKEN`.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Whether a client's key is the server's.
pub(crate) fn key_matches(given: &str, key: &str) -> bool {
    constant_time_eq(given.as_bytes(), key.as_bytes())
}

/// A route called with a method it does not take, in the same error shape
/// as every other error.
pub(crate) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> ApiError {
    ApiError::new(
        Flavor::of_path(uri.path()),
        Kind::MethodNotAllowed,
        format!("{} does not take {method}", uri.path()),
    )
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let with = |v: &str| {
            let mut h = super::HeaderMap::new();
            h.insert(super::AUTHORIZATION, v.parse().unwrap());
            super::bearer(&h).map(str::to_owned)
        };
        for v in ["Bearer k1", "bearer k1", "BEARER  k1 ", "bEaReR\tk1"] {
            assert_eq!(with(v).as_deref(), Some("k1"), "{v}");
        }
        assert_eq!(with("Basic k1"), None);
        assert_eq!(with("Bearerk1"), None);
    }
}
