//! Fuzzes the HTTP server's request handling in process: any method, path,
//! header and body sent to `kiln serve`'s router (MiniLM from
//! `tests/fixtures`, small limits) must get a response with a JSON error
//! body or a well-formed answer, never a panic or a hang.

#![no_main]

use std::sync::{Arc, LazyLock};

use arbitrary::Arbitrary;
use axum::body::{Body, to_bytes};
use axum::http::{Request, header};
use kiln::server::{Config, Server};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

#[derive(Arbitrary, Debug)]
struct Input {
    route: u8,
    get: bool,
    json_content_type: bool,
    auth: Option<String>,
    body: Vec<u8>,
}

const ROUTES: [&str; 9] = [
    "/v1/embeddings",
    "/embed",
    "/tokenize",
    "/info",
    "/health",
    "/v1/models",
    "/metrics",
    "/nowhere",
    "/v1/completions",
];

struct Harness {
    rt: tokio::runtime::Runtime,
    server: Server,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf"
    );
    let embedder = Arc::new(
        kiln::Embedder::builder()
            .threads(1)
            .pack_cache(None)
            .open(path)
            .expect("the MiniLM fixture opens"),
    );
    let mut config = Config::new("minilm", &embedder);
    config.max_body_bytes = 64 * 1024;
    config.max_batch_tokens = 2048;
    config.max_concurrent_requests = 8;
    config.api_key = Some("secret".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = Server::new(embedder, config).expect("the batcher starts");
    Harness { rt, server }
});

fuzz_target!(|input: Input| {
    let h = &*HARNESS;
    let route = ROUTES[usize::from(input.route) % ROUTES.len()];
    let mut req = Request::builder()
        .method(if input.get { "GET" } else { "POST" })
        .uri(route);
    if input.json_content_type {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(auth) = &input.auth {
        req = req.header(header::AUTHORIZATION, auth.as_str());
    }
    let Ok(req) = req.body(Body::from(input.body)) else {
        return;
    };
    let router = h.server.router();
    let resp =
        h.rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), router.oneshot(req)).await
        })
        .expect("a response within 10 s")
        .expect("the router is infallible");
    let status = resp.status();
    let body =
        h.rt.block_on(to_bytes(resp.into_body(), 16 << 20))
            .expect("a body under 16 MiB");
    if status.is_client_error() || status.is_server_error() {
        assert!(status.as_u16() != 500, "500 for {route}");
        assert!(
            serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
            "{status} on {route} without a JSON error body: {body:?}"
        );
    }
});
