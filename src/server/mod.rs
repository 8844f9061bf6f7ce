//! `kiln serve`: an embedding server that speaks OpenAI's `/v1/embeddings`
//! and text-embeddings-inference's `/embed`, on axum/tokio.
//!
//! Handlers parse and tokenize (cheap), then hand the token ids to the
//! [`batcher`]: inference never runs on the async runtime's threads. Limits
//! answer at once: a full queue gives 429, a large body or too many tokens
//! 413. Dropping a request (client gone) cancels its queued work.

pub mod batcher;
pub mod encoding;
pub mod error;
pub mod generation;
pub mod metrics;
mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::Embedder;
use batcher::Batcher;
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
    /// Bearer token required on every route but `/health`.
    pub api_key: Option<String>,
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
            api_key: None,
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
        Ok(Server {
            state: Arc::new(AppState {
                embedder,
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

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        let s = self.state.clone();
        Router::new()
            .route("/v1/embeddings", post(routes::openai_embeddings))
            .route("/embed", post(routes::tei_embed))
            .route("/tokenize", post(routes::tokenize))
            .route("/info", get(routes::info))
            .route("/health", get(routes::health))
            .route("/v1/models", get(routes::models))
            .route("/metrics", get(routes::metrics))
            .fallback(routes::not_found)
            .layer(DefaultBodyLimit::max(s.config.max_body_bytes))
            .layer(middleware::from_fn_with_state(s.clone(), auth))
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
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        tracing::info!("HTTP server stopped; draining the queue");
        self.shutdown();
        Ok(())
    }

    /// Closes the queue and waits for the worker to finish queued jobs.
    pub fn shutdown(&self) {
        self.state.batcher.shutdown();
    }
}

/// Counts every request by route and status, with its latency, and logs it.
async fn observe(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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
    s.metrics.request(&route, status, secs);
    tracing::info!(%method, route, status, ms = secs * 1e3, "request");
    resp
}

/// Requires `Authorization: Bearer KEY` on every route but `/health` when a
/// key is set.
async fn auth(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = &s.config.api_key else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/health" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), key.as_bytes()) => next.run(req).await,
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
}
