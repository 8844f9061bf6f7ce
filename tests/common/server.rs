//! Test servers: kiln's HTTP server in-process on a free loopback port, or
//! the `kiln serve` binary as a child process.

#![cfg(feature = "server")]

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kiln::Embedder;
use kiln::server::conn::ConnLimits;
use kiln::server::{Config, Server};

/// Resolves when an in-process server should stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server in-process on a free loopback port, on a two-thread runtime of
/// its own. Dropping it stops it gracefully: requests in flight finish and
/// the server thread is joined.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Runs `serve(listener, shutdown)` on a new runtime thread.
    pub fn spawn<F>(
        serve: impl FnOnce(tokio::net::TcpListener, Shutdown) -> F + Send + 'static,
    ) -> TestServer
    where
        F: Future<Output = std::io::Result<()>>,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async {
            let _ = rx.await;
        });
        let thread = std::thread::spawn(move || rt.block_on(serve(listener, shutdown)).unwrap());
        TestServer {
            base,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// The embedding server for `embedder`, named `model_id`, with `tune`
    /// applied to the default settings.
    pub fn embedding(
        embedder: Arc<Embedder>,
        model_id: &str,
        tune: impl FnOnce(&mut Config),
    ) -> TestServer {
        let mut config = Config::new(model_id, &embedder);
        tune(&mut config);
        let server = Server::new(embedder, config).unwrap();
        TestServer::spawn(move |listener, stop| async move { server.serve(listener, stop).await })
    }

    /// `app` behind kiln's connection handling with `limits`.
    pub fn router(app: axum::Router, limits: ConnLimits) -> TestServer {
        TestServer::spawn(move |listener, stop| {
            kiln::server::conn::serve(listener, app, limits, stop)
        })
    }

    /// `base` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `127.0.0.1:PORT`, for raw sockets.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Stops accepting, lets requests in flight finish, joins the server
    /// thread.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// Leaves the server running until the test binary exits (for tests
    /// that leave connections hanging, which a graceful stop would wait
    /// for); returns its address, `127.0.0.1:PORT`.
    pub fn detach(self) -> String {
        let addr = self.addr().to_owned();
        // Dropping the sender would stop the server.
        std::mem::forget(self);
        addr
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            // Not `unwrap`: a panic while the test already panics aborts.
            let _ = t.join();
        }
    }
}

/// The `kiln serve` binary running with some arguments; killed when
/// dropped.
pub struct KilnServe {
    /// Where it listens, `HOST:PORT` (ask for `--port 0`).
    pub addr: String,
    child: Child,
}

impl KilnServe {
    /// Starts `kiln serve ARGS` and waits (up to a minute) until it logs
    /// the address it listens on.
    pub fn start(args: &[&str]) -> KilnServe {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("serve")
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut b = [0u8; 1];
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if err.read(&mut b).unwrap_or(0) == 0 {
                break;
            }
            seen.push(b[0]);
            if seen.ends_with(b"\n")
                && String::from_utf8_lossy(&seen).contains("listening on http://")
            {
                break;
            }
        }
        let text = String::from_utf8_lossy(&seen).into_owned();
        let Some(addr) = text
            .split("listening on http://")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`kiln serve` gave no address:\n{text}");
        };
        let addr = addr.to_owned();
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        KilnServe { addr, child }
    }

    /// Stops the server now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KilnServe {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP client for the tests: error statuses come back as responses
/// (the tests check them), and a request gets two minutes (a heavy one on
/// a loaded 2-core machine).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// POSTs `body` as JSON, with `Bearer key` when given: status and body text.
pub fn post_raw(url: &str, body: &str, key: Option<&str>) -> (u16, String) {
    let mut req = agent().post(url).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", &format!("Bearer {k}"));
    }
    let mut resp = req.send(body).unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

/// The numbers of a JSON array as f32.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}
