//! Serving HTTP/1 connections with limits that `axum::serve` lacks: a cap on
//! open connections, a deadline for each request head, an idle keep-alive
//! timeout, and a deadline for reading each request body.
//!
//! Each connection is watched: a connection with no request in flight is
//! closed once it has waited too long for a request head (a slow or silent
//! client) or idled too long between requests. At the cap, a new connection
//! takes the place of the longest-idle one (as nginx reuses keep-alive
//! connections); when every connection is busy it gets a 503 and is closed
//! at once, never queued. So held or slow sockets cannot keep `/health` or
//! real requests out.
//!
//! The accept loop never waits for an evicted connection to close: the new
//! one is served at once and the cap is overcommitted by the evictions still
//! pending, at most 64. Waiting for each one would make a burst
//! over the cap cost a task switch per connection before the next accept,
//! which on a loaded machine delayed the connections behind it by a second
//! or more.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt;

use super::error::{ApiError, Flavor, Kind};

/// Connection limits and timeouts (the `kiln serve` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Longest wait for a complete request head: from accept for a new
    /// connection, from the first byte for later requests.
    pub header_read_timeout: Duration,
    /// Longest time to read a request body.
    pub body_read_timeout: Duration,
    /// Longest wait for the next request on a keep-alive connection.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: default_max_connections(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// 1024, or fewer when the open-file limit leaves less room: 64 descriptors
/// stay free for the model file, the listener and logs, and 64
/// more for evicted connections that have not closed yet.
pub fn default_max_connections() -> usize {
    match open_file_limit() {
        Some(n) => n.saturating_sub(64 + EVICTING).max(n / 2).clamp(1, 1024),
        None => 1024,
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One open connection, as the accept loop and its watchdog see it.
#[derive(Debug)]
struct Conn {
    /// Requests whose response has not been fully sent.
    in_flight: AtomicUsize,
    /// Whether a request has been served: the first head's deadline counts
    /// from accept, later ones from their first byte.
    served: AtomicBool,
    /// When the connection last became idle (ms since the server started).
    idle_since: AtomicU64,
    /// When the first byte of the next head arrived, 0 while none has.
    head_since: AtomicU64,
    /// Asks the connection to close: at once if it is idle, else after the
    /// response in flight.
    evict: Notify,
    /// Whether it has been asked to close (changed under the table's lock).
    evicting: AtomicBool,
}

impl Conn {
    fn new(now: u64) -> Conn {
        Conn {
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(now),
            head_since: AtomicU64::new(0),
            evict: Notify::new(),
            evicting: AtomicBool::new(false),
        }
    }
}

/// Evicted connections that may still be open at once: the cap is
/// overcommitted by at most this many while they close.
const EVICTING: usize = 64;

/// The open connections.
#[derive(Default)]
struct Table {
    conns: HashMap<u64, Arc<Conn>>,
    /// How many of them have been asked to close.
    evicting: usize,
}

impl Table {
    /// Asks the idle connection that has waited longest to close; silent
    /// ones go before ones that have started a head. False if none is idle.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .conns
            .values()
            .filter(|c| {
                !c.evicting.load(Ordering::Relaxed) && c.in_flight.load(Ordering::Acquire) == 0
            })
            .min_by_key(|c| {
                let head = c.head_since.load(Ordering::Relaxed);
                (head != 0, head.max(c.idle_since.load(Ordering::Relaxed)))
            });
        match victim {
            Some(c) => {
                c.evicting.store(true, Ordering::Relaxed);
                c.evict.notify_one();
                self.evicting += 1;
                true
            }
            None => false,
        }
    }
}

/// Whether a new connection may open.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Admitted,
    /// Every connection is busy.
    Busy,
    /// [`EVICTING`] evicted connections are still closing.
    Closing,
}

/// State shared by the accept loop and every connection.
struct Shared {
    limits: ConnLimits,
    start: Instant,
    /// The cap, at least 1.
    max: usize,
    table: Mutex<Table>,
    /// Woken whenever a connection closes.
    closed: Notify,
}

impl Shared {
    fn new(limits: ConnLimits) -> Shared {
        Shared {
            limits,
            start: Instant::now(),
            max: limits.max_connections.max(1),
            table: Mutex::new(Table::default()),
            closed: Notify::new(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Milliseconds since the server started, at least 1 (0 means "never").
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Asks an idle connection to close (see [`Table::evict_one`]).
    fn evict_one(&self) -> bool {
        self.table().evict_one()
    }

    /// Opens `conn` as `id` if it fits under the cap, evicting an idle
    /// connection to make room; it does not wait for that one to close.
    fn try_admit(&self, id: u64, conn: &Arc<Conn>) -> Admission {
        let mut table = self.table();
        if table.conns.len() - table.evicting >= self.max {
            if table.evicting >= EVICTING {
                return Admission::Closing;
            }
            if !table.evict_one() {
                return Admission::Busy;
            }
        }
        table.conns.insert(id, conn.clone());
        Admission::Admitted
    }

    /// [`Shared::try_admit`], waiting up to 100 ms for evicted connections
    /// to close when too many are still closing.
    async fn admit(&self, id: u64, conn: &Arc<Conn>) -> Admission {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        loop {
            let closed = self.closed.notified();
            let mut closed = std::pin::pin!(closed);
            // Registered before the check, so a close in between still wakes.
            closed.as_mut().enable();
            match self.try_admit(id, conn) {
                Admission::Closing => {
                    if tokio::time::timeout_at(deadline, closed).await.is_err() {
                        return Admission::Closing;
                    }
                }
                done => return done,
            }
        }
    }

    /// Forgets a closed connection.
    fn remove(&self, id: u64) {
        let mut table = self.table();
        if let Some(c) = table.conns.remove(&id)
            && c.evicting.load(Ordering::Relaxed)
        {
            table.evicting -= 1;
        }
        drop(table);
        self.closed.notify_waiters();
    }

    /// Returns once every connection has closed.
    async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            let mut closed = std::pin::pin!(closed);
            closed.as_mut().enable();
            if self.table().conns.is_empty() {
                return;
            }
            closed.await;
        }
    }
}

/// Marks a request in flight until the response body is sent or dropped.
struct InFlight {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl InFlight {
    fn new(conn: Arc<Conn>, shared: Arc<Shared>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.head_since.store(0, Ordering::Relaxed);
        conn.served.store(true, Ordering::Relaxed);
        InFlight { conn, shared }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(self.shared.now(), Ordering::Relaxed);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight while it
/// streams.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when the first byte of a request head arrives.
struct Watched {
    io: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && self.conn.in_flight.load(Ordering::Acquire) == 0
            && self.conn.head_since.load(Ordering::Relaxed) == 0
        {
            let now = self.shared.now();
            self.conn.head_since.store(now, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What a connection over the cap gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 71\r\nconnection: close\r\n\r\n{\"error\":\"too many connections; retry later\",\"error_type\":\"overloaded\"}";

/// Refused connections that may linger at once (see [`refuse`]).
const LINGERING: usize = 64;

/// Answers 503 and closes. The socket first reads what the client sends
/// for a moment (at most [`LINGERING`] at once): closing with unread data
/// resets the connection, and the client could lose the answer.
fn refuse(mut stream: TcpStream, lingering: &Arc<Semaphore>) {
    let _ = stream.try_write(REFUSED);
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await;
        let drain = async {
            let mut buf = [0u8; 4096];
            loop {
                if stream.readable().await.is_err() {
                    return;
                }
                match stream.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(250), drain).await;
    });
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves;
/// then stops accepting, lets requests in flight finish, and returns once
/// every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared::new(limits));
    let (stop_tx, stop_rx) = watch::channel(false);
    let lingering = Arc::new(Semaphore::new(LINGERING));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (or a transient error): free an idle
                // connection and retry shortly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                shared.evict_one();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        let conn = Arc::new(Conn::new(shared.now()));
        match shared.admit(id, &conn).await {
            Admission::Admitted => {}
            refused => {
                let max = shared.max;
                if refused == Admission::Busy {
                    tracing::warn!(max, "connection refused: every connection is busy");
                } else {
                    tracing::warn!(max, "connection refused: evicted connections still closing");
                }
                refuse(stream, &lingering);
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let router = router.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            run_connection(stream, router, conn, &shared, stop).await;
            shared.remove(id);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    shared.all_closed().await;
    Ok(())
}

/// Serves one connection until it closes, times out, is evicted, or the
/// server stops.
async fn run_connection(
    stream: TcpStream,
    router: Router,
    conn: Arc<Conn>,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let io = hyper_util::rt::TokioIo::new(Watched {
        io: stream,
        conn: conn.clone(),
        shared: shared.clone(),
    });
    let svc = {
        let conn = conn.clone();
        let shared = shared.clone();
        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let in_flight = InFlight::new(conn.clone(), shared.clone());
            let router = router.clone();
            async move {
                let Ok(resp) = router.oneshot(req.map(Body::new)).await;
                Ok::<_, Infallible>(resp.map(|inner| {
                    Body::new(Tracked {
                        inner,
                        _in_flight: in_flight,
                    })
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None);
    let mut http = std::pin::pin!(builder.serve_connection(io, svc));
    let limits = shared.limits;
    let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = *stop.borrow();
    if stopping {
        http.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = http.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = conn.evict.notified() => {
                if conn.in_flight.load(Ordering::Acquire) == 0 {
                    tracing::debug!("closed an idle connection to make room");
                    return;
                }
                // A request arrived after it was chosen: it stays counted
                // as closing, so it must close once that response is sent.
                if !stopping {
                    stopping = true;
                    http.as_mut().graceful_shutdown();
                }
            }
            _ = ticks.tick() => {
                if let Some(why) = expired(&conn, shared) {
                    tracing::debug!(why, "closed a connection");
                    return;
                }
            }
            r = stop.changed(), if !stopping => {
                stopping = true;
                if r.is_ok() {
                    http.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Why an idle connection must close now, if it must.
fn expired(conn: &Conn, shared: &Shared) -> Option<&'static str> {
    if conn.in_flight.load(Ordering::Acquire) != 0 {
        return None;
    }
    let now = shared.now();
    let since = |t: u64| Duration::from_millis(now.saturating_sub(t));
    let limits = &shared.limits;
    let head = conn.head_since.load(Ordering::Relaxed);
    let idle = conn.idle_since.load(Ordering::Relaxed);
    if head != 0 {
        (since(head) > limits.header_read_timeout).then_some("request head timeout")
    } else if !conn.served.load(Ordering::Relaxed) {
        (since(idle) > limits.header_read_timeout).then_some("no request head in time")
    } else {
        (since(idle) > limits.idle_timeout).then_some("idle timeout")
    }
}

/// Body limits for [`read_body`].
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Largest body in bytes.
    pub max_bytes: usize,
    /// Longest time to read it.
    pub timeout: Duration,
}

/// Middleware: reads the whole request body within the size and time
/// limits before the handler runs (413 when too large, 408 when too slow).
pub async fn read_body(State(l): State<BodyLimits>, req: Request, next: Next) -> Response {
    let flavor = Flavor::of_path(req.uri().path());
    let too_large = || {
        ApiError::new(
            flavor,
            Kind::TooLarge,
            format!(
                "the request body is larger than the limit of {} bytes",
                l.max_bytes
            ),
        )
        .into_response()
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > l.max_bytes as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let read = async {
        let mut data = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Some(e.to_string()))?;
            if data.len() + chunk.len() > l.max_bytes {
                return Err(None);
            }
            data.extend_from_slice(&chunk);
        }
        Ok::<_, Option<String>>(data)
    };
    match tokio::time::timeout(l.timeout, read).await {
        Ok(Ok(data)) => next.run(Request::from_parts(parts, Body::from(data))).await,
        Ok(Err(None)) => too_large(),
        Ok(Err(Some(e))) => ApiError::new(
            flavor,
            Kind::Syntax,
            format!("cannot read the request body: {e}"),
        )
        .into_response(),
        Err(_) => ApiError::new(
            flavor,
            Kind::Timeout,
            format!(
                "the request body was not received within {} s",
                l.timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::{Admission, Conn, ConnLimits, EVICTING, Shared};

    fn shared(max_connections: usize) -> Arc<Shared> {
        Arc::new(Shared::new(ConnLimits {
            max_connections,
            ..ConnLimits::default()
        }))
    }

    fn conn(s: &Shared) -> Arc<Conn> {
        Arc::new(Conn::new(s.now()))
    }

    /// The id of a connection asked to close.
    fn an_evicted(s: &Shared) -> u64 {
        let table = s.table();
        let evicted = table
            .conns
            .iter()
            .find(|(_, c)| c.evicting.load(Ordering::Relaxed));
        *evicted.unwrap().0
    }

    #[test]
    fn evictions_overcommit_the_cap_by_a_bounded_amount() {
        let s = shared(2);
        for id in 0..2 {
            assert_eq!(s.try_admit(id, &conn(&s)), Admission::Admitted);
        }
        // Over the cap, each new connection evicts an idle one and opens
        // without waiting for it to close...
        let over = 2 + EVICTING as u64;
        for id in 2..over {
            assert_eq!(s.try_admit(id, &conn(&s)), Admission::Admitted);
        }
        assert_eq!(s.table().conns.len(), 2 + EVICTING);
        assert_eq!(s.table().evicting, EVICTING);
        // ...until too many are still closing.
        assert_eq!(s.try_admit(over, &conn(&s)), Admission::Closing);
        s.remove(an_evicted(&s));
        assert_eq!(s.try_admit(over, &conn(&s)), Admission::Admitted);
        assert_eq!(s.table().conns.len(), 2 + EVICTING);
        // Once every open connection is busy, new ones are refused.
        for c in s.table().conns.values() {
            c.in_flight.store(1, Ordering::Release);
        }
        while s.table().evicting > 0 {
            s.remove(an_evicted(&s));
        }
        assert_eq!(s.try_admit(over + 1, &conn(&s)), Admission::Busy);
        assert_eq!(s.table().conns.len(), 2);
    }

    #[test]
    fn admission_waits_briefly_for_evicted_connections_to_close() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = shared(1);
            for id in 0..=EVICTING as u64 {
                assert_eq!(s.try_admit(id, &conn(&s)), Admission::Admitted);
            }
            let id = EVICTING as u64 + 1;
            let t = std::time::Instant::now();
            assert_eq!(s.admit(id, &conn(&s)).await, Admission::Closing);
            assert!(t.elapsed() >= std::time::Duration::from_millis(100));
            let closer = {
                let s = s.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    s.remove(an_evicted(&s));
                })
            };
            assert_eq!(s.admit(id, &conn(&s)).await, Admission::Admitted);
            closer.await.unwrap();
        });
    }

    #[test]
    fn default_cap_is_bounded() {
        let n = super::default_max_connections();
        assert!((1..=1024).contains(&n), "{n}");
    }

    #[test]
    fn refusal_length_matches_its_body() {
        let text = std::str::from_utf8(super::REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
    }
}
