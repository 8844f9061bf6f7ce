//! The thread pools embedders run on.
//!
//! Natively each embedder owns a pool of `threads` workers. WebAssembly
//! without threads (`wasm32-unknown-unknown` with no `atomics`) cannot spawn
//! any, so there every embedder shares one pool made of the calling thread
//! alone, and everything runs in order on it.

use std::sync::Arc;

use crate::Error;

/// A pool of `threads` workers named `{name}-{i}`.
#[cfg(not(all(target_family = "wasm", not(target_feature = "atomics"))))]
pub(crate) fn pool(threads: usize, name: &'static str) -> Result<Arc<rayon::ThreadPool>, Error> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::Threads(e.to_string()))
}

/// The calling thread as a one-worker pool, shared by every embedder (a
/// thread can belong to one pool only).
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
pub(crate) fn pool(_threads: usize, _name: &'static str) -> Result<Arc<rayon::ThreadPool>, Error> {
    thread_local! {
        static POOL: std::cell::OnceCell<Arc<rayon::ThreadPool>> = const { std::cell::OnceCell::new() };
    }
    POOL.with(|cell| {
        if let Some(pool) = cell.get() {
            return Ok(pool.clone());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .use_current_thread()
            .build()
            .map(Arc::new)
            .map_err(|e| Error::Threads(e.to_string()))?;
        Ok(cell.get_or_init(|| pool).clone())
    })
}
