//! After warm-up, `encode_into` does no heap allocation, for every model
//! (WordPiece, SentencePiece, byte-level BPE).
//!
//! A counting global allocator counts allocations made by this test's thread
//! while counting is switched on (other test-harness threads are ignored).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::tok::{gemma, goldens, minilm, smollm2};
use kiln_runtime::tokenizer::{EncodeOptions, Tokenizer, TokenizerScratch};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // `try_with`: the thread-local may be gone while a thread shuts down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; counting touches only an atomic and a const thread-local.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn count(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn check(name: &str, tok: &Tokenizer, golden_file: &str) {
    let texts: Vec<String> = goldens(golden_file).into_iter().map(|g| g.text).collect();
    let mut texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Special-token strings exercise the partition buffers too.
    texts.push("<start_of_turn>user [CLS] <b>x</b>\n\n\t\t   y [SEP] <|im_start|>a<|im_end|>");
    // A word long enough for BPE's queue of merges.
    let long_word = "Donaudampfschifffahrtsgesellschaft".repeat(8);
    texts.push(&long_word);
    let mut out = Vec::new();
    let mut scratch = TokenizerScratch::new();
    let all_options = [
        EncodeOptions::default(),
        EncodeOptions {
            add_special: true,
            parse_special: true,
        },
    ];
    // Warm-up: buffers grow to the largest text.
    for opts in &all_options {
        for t in &texts {
            tok.encode_into(t, opts, &mut out, &mut scratch).unwrap();
        }
    }
    let mut total_ids = 0;
    let n = count(|| {
        for opts in &all_options {
            for t in &texts {
                tok.encode_into(t, opts, &mut out, &mut scratch).unwrap();
                total_ids += out.len();
            }
        }
    });
    println!(
        "{name}: {n} allocations over {} encodes ({total_ids} ids)",
        2 * texts.len()
    );
    assert_eq!(n, 0, "{name}: encode_into allocated after warm-up");
    // The counter itself works.
    assert!(count(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

#[test]
fn encode_into_allocates_nothing_after_warm_up() {
    let (_f, bert) = minilm();
    check("MiniLM", &bert, "all-MiniLM-L6-v2.st.jsonl");
    if let Some(gemma) = gemma() {
        check("Gemma", &gemma, "embeddinggemma-300m.llamacpp.jsonl");
    }
    if let Some(smollm2) = smollm2() {
        check("SmolLM2", &smollm2, "smollm2-135m.cli_tokens.jsonl");
    }
}
