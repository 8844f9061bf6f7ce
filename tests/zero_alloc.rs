//! A warm `embed_into` does no heap allocation: a counting global allocator
//! watches the calls after warm-up.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

// Per thread, so tests running in parallel do not count each other (the
// embedders here use one thread: all their work is on the caller's).
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; it only
// counts allocations while `COUNTING` is on.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_of(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(Cell::get)
}

fn check(path: &std::path::Path, texts: &[&str]) {
    let e = kiln::Embedder::builder().threads(1).open(path).unwrap();
    let mut out = vec![0.0f32; e.dim()];
    // Warm up with the longest text: buffers grow to it once.
    let longest = texts
        .iter()
        .max_by_key(|t| e.tokenize(t).unwrap().len())
        .unwrap();
    e.embed_into(longest, &mut out).unwrap();
    for t in texts {
        let n = allocations_of(|| e.embed_into(t, &mut out).unwrap());
        assert_eq!(n, 0, "{n} allocations embedding {t:?} after warm-up");
    }
}

const TEXTS: &[&str] = &[
    "Hello world",
    "Café, naïve, résumé — 東京は日本の首都です。 🍕",
    "The quick brown fox jumps over the lazy dog, again and again and again.",
];

#[test]
fn minilm_embed_does_not_allocate_when_warm() {
    check(
        &common::fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf"),
        TEXTS,
    );
}

#[test]
fn embeddinggemma_embed_does_not_allocate_when_warm() {
    let Some(path) = common::cached_model("embeddinggemma") else {
        return;
    };
    check(&path, TEXTS);
}
