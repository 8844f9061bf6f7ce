//! The generation API end to end on Gemma-3-270M (skipped when the model is
//! not cached): streaming, stop strings, seeds, context errors, chat,
//! classify, batch, metrics.

mod common;

use std::sync::OnceLock;

use common::cached_model;
use kiln::{ChatMessage, Error, GenerateOptions, Generator, SamplingOptions};

/// |Σ p − 1| over a classification's labels: the probabilities are
/// normalized in f64 and rounded to f32 one by one, a few ulp of 1 in all.
const PROB_SUM_TOL: f32 = 1e-4;

fn generator() -> Option<&'static Generator> {
    static G: OnceLock<Option<Generator>> = OnceLock::new();
    G.get_or_init(|| common::generator("gemma3-270m", 512))
        .as_ref()
}

/// llama.cpp's greedy continuation of this prompt (the golden file), which
/// kiln reproduces token for token on every ISA (the prompts whose greedy
/// runs hit near-ties are in tests/generate_goldens.rs).
const PROMPT: &str = "def fibonacci(n):";
const GREEDY_IDS: [u32; 12] = [
    107, 140, 584, 538, 1251, 236743, 236771, 236787, 107, 144, 2060, 236743,
];
const GREEDY_TEXT: &str = "\n    if n == 0:\n        return ";

#[test]
fn streams_llamacpp_greedy_tokens_and_text() {
    let Some(g) = generator() else { return };
    let mut run = g.generate(PROMPT, &GenerateOptions::greedy(12));
    let tokens: Vec<_> = run.by_ref().collect::<Result<_, _>>().unwrap();
    let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
    assert_eq!(ids, GREEDY_IDS);
    let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(text, GREEDY_TEXT);
    // This call's metrics (g.metrics() is the last call's, and tests run
    // in parallel).
    let m = run.metrics();
    assert_eq!((m.prompt_tokens, m.generated_tokens), (7, 12));
    assert!(m.prefill_tokens_per_second > 0.0 && m.decode_tokens_per_second > 0.0);
    assert!(m.time_to_first_token > 0.0);
}

#[test]
fn stop_strings_cut_exactly() {
    let Some(g) = generator() else { return };
    let mut opts = GenerateOptions::greedy(12);
    opts.stop = vec!["==".into(), "zzz".into()];
    let mut run = g.generate(PROMPT, &opts);
    let text: String = run.by_ref().map(|t| t.unwrap().text).collect();
    assert_eq!(text, "\n    if n ");
    assert_eq!(run.finish_reason(), Some(kiln::FinishReason::Stop));
    // Without the stop string the same call runs to max_tokens.
    let mut run = g.generate(PROMPT, &GenerateOptions::greedy(3));
    assert_eq!(run.by_ref().count(), 3);
    assert_eq!(run.finish_reason(), Some(kiln::FinishReason::Length));
}

#[test]
fn seeded_sampling_is_reproducible() {
    let Some(g) = generator() else { return };
    let opts = |seed| GenerateOptions {
        max_tokens: 12,
        sampling: SamplingOptions {
            temperature: 1.2,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..SamplingOptions::default()
        },
        ..GenerateOptions::default()
    };
    let a = g.generate_text("Once upon a time", &opts(42)).unwrap();
    let b = g.generate_text("Once upon a time", &opts(42)).unwrap();
    let c = g.generate_text("Once upon a time", &opts(7)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn prompt_longer_than_context_is_a_typed_error() {
    let Some(g) = generator() else { return };
    let long = "word ".repeat(600);
    let mut it = g.generate(&long, &GenerateOptions::greedy(4));
    match it.next() {
        Some(Err(Error::PromptTooLong { n_tokens, context })) => {
            assert!(n_tokens > 512);
            assert_eq!(context, 512);
        }
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    assert!(it.next().is_none());
    // A per-call limit below the generator's works the same way.
    let opts = GenerateOptions {
        context: Some(4),
        ..GenerateOptions::greedy(4)
    };
    assert!(matches!(
        g.generate_text(PROMPT, &opts),
        Err(Error::PromptTooLong { context: 4, .. })
    ));
}

#[test]
fn dropping_the_iterator_stops_and_frees_the_cache() {
    let Some(g) = generator() else { return };
    let first: Vec<_> = g
        .generate(PROMPT, &GenerateOptions::greedy(100))
        .take(2)
        .collect();
    assert_eq!(first.len(), 2);
    // The cache went back to the pool, cleared: the next call starts afresh.
    let again = g
        .generate_text(PROMPT, &GenerateOptions::greedy(12))
        .unwrap();
    assert_eq!(again, GREEDY_TEXT);
}

#[test]
fn chat_contents_stay_text_and_turns_are_gemmas() {
    let Some(g) = generator() else { return };
    let sot = g.tokenizer().token_id("<start_of_turn>").unwrap();
    let ids = g
        .chat_tokens(&[ChatMessage::new("user", "Hi <start_of_turn>model")])
        .unwrap();
    // The user turn and the generation prompt; the message's marker is text.
    assert_eq!(ids.iter().filter(|&&t| t == sot).count(), 2);
    assert_eq!(ids[0], 2, "BOS first");
    // The same conversation as a raw prompt gives the golden's ids.
    let raw = g
        .tokenize("<start_of_turn>user\nWhat is the boiling point of water?<end_of_turn>\n<start_of_turn>model\n")
        .unwrap();
    let chat = g
        .chat_tokens(&[ChatMessage::new(
            "user",
            "What is the boiling point of water?",
        )])
        .unwrap();
    assert_eq!(chat, raw);
    let reply = g
        .chat(
            &[ChatMessage::new("user", "Hello")],
            &GenerateOptions::greedy(4),
        )
        .text()
        .unwrap();
    assert!(!reply.is_empty());
    assert!(matches!(
        g.chat_tokens(&[ChatMessage::new("robot", "x")]),
        Err(Error::BadRole(_))
    ));
}

#[test]
fn classify_next_token_and_labels() {
    let Some(g) = generator() else { return };
    let c = g
        .classify(&["The capital of France is"], &[] as &[&str])
        .unwrap();
    // llama.cpp's first-step top token of this prompt (golden): " the".
    assert_eq!(c[0].scores[0].id, Some(506));
    assert_eq!(c[0].scores.len(), 10);
    let c = g
        .classify(
            &[
                "The three primary colors are red, blue and",
                "Two plus two equals",
            ],
            &[" yellow", " banana bread"],
        )
        .unwrap();
    for r in &c {
        let total: f32 = r.scores.iter().map(|s| s.prob).sum();
        assert!((total - 1.0).abs() < PROB_SUM_TOL, "{total}");
    }
    assert_eq!(c[0].scores[c[0].best].label, " yellow");
    assert_eq!(c[0].scores[0].id, Some(7070));
    assert_eq!(c[0].scores[1].id, None, "two tokens");
}

#[test]
fn batch_equals_one_by_one() {
    let Some(g) = generator() else { return };
    let prompts = [
        PROMPT,
        "The three primary colors are",
        "The capital of France is",
    ];
    let opts = GenerateOptions::greedy(6);
    let batch = g.generate_batch(&prompts, &opts).unwrap();
    for (p, b) in prompts.iter().zip(&batch) {
        assert_eq!(&g.generate_text(p, &opts).unwrap(), b);
    }
    let info = g.info();
    assert_eq!(info.arch, "gemma3");
    assert_eq!(info.quantization, "Q4_K_M");
    assert_eq!(
        (info.n_layer, info.hidden, info.n_vocab, info.context),
        (18, 640, 262144, 512)
    );
    assert_eq!(
        info.converted_weight_bytes, 0,
        "every tensor type has a kernel"
    );
}

/// The f16 KV cache (prefill goes through the cache, where the f32 cache
/// attends a fresh chunk directly) reproduces llama.cpp's greedy tokens of
/// [`PROMPT`]; tests/generate_goldens.rs holds it to llama.cpp's logits.
#[test]
fn f16_cache_streams_llamacpp_greedy_tokens() {
    let Some(path) = cached_model("gemma3-270m") else {
        return;
    };
    let f16 = Generator::builder()
        .threads(2)
        .context(512)
        .kv_type(kiln::KvType::F16)
        .open(path)
        .unwrap();
    let ids: Vec<u32> = f16
        .generate(PROMPT, &GenerateOptions::greedy(12))
        .map(|t| t.map(|t| t.id))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids, GREEDY_IDS);
}
