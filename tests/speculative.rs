//! End-to-end: speculative decoding changes no greedy token, whatever
//! the drafts (prompt lookup, always right, always wrong, mixed), on
//! Gemma 3 and SmolLM2; a verification pass's rows are bit-identical to
//! single-token steps, which is what makes this exact.

mod common;

use std::sync::{Arc, OnceLock};

use kiln::{Draft, GenerateOptions, Generator, Grammar, Metrics};
use serde_json::Value;

fn gemma() -> Option<&'static Generator> {
    static G: OnceLock<Option<Generator>> = OnceLock::new();
    G.get_or_init(|| common::generator("gemma3-270m", 1024))
        .as_ref()
}

fn smollm2() -> Option<&'static Generator> {
    static G: OnceLock<Option<Generator>> = OnceLock::new();
    G.get_or_init(|| common::generator("smollm2", 1024))
        .as_ref()
}

/// Prompts whose answers copy from the prompt, where lookup drafts pay.
const EXTRACTIVE: &[&str] = &[
    "<start_of_turn>user\nRepeat this sentence exactly: The quick brown fox jumps over the lazy dog near the old stone bridge.<end_of_turn>\n<start_of_turn>model\n",
    "Copy the list:\n- apples\n- pears\n- plums\n- cherries\nCopy:\n- apples\n",
];

fn run(g: &Generator, prompt: &str, draft: Option<Draft>, n: usize) -> (Vec<u32>, Metrics) {
    run_with(g, prompt, draft, None, n)
}

fn run_with(
    g: &Generator,
    prompt: &str,
    draft: Option<Draft>,
    grammar: Option<Grammar>,
    n: usize,
) -> (Vec<u32>, Metrics) {
    let opts = GenerateOptions {
        draft,
        grammar,
        ..GenerateOptions::greedy(n)
    };
    let mut it = g.generate(prompt, &opts);
    let ids = it.by_ref().map(|t| t.unwrap().id).collect();
    (ids, it.metrics())
}

fn golden_prompts() -> Vec<String> {
    let path = common::fixtures().join("goldens/gemma-3-270m.greedy.llamacpp.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["prompt"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn prompt_lookup_changes_no_greedy_token() {
    for g in [gemma(), smollm2()].into_iter().flatten() {
        let mut drafted = 0;
        for p in golden_prompts()
            .iter()
            .map(String::as_str)
            .chain(EXTRACTIVE.iter().copied())
        {
            let (plain, _) = run(g, p, None, 48);
            let (spec, m) = run(g, p, Some(Draft::ngram()), 48);
            assert_eq!(plain, spec, "{p}");
            assert!(m.accepted_draft_tokens <= m.draft_tokens);
            drafted += m.draft_tokens;
        }
        assert!(drafted > 0, "prompt lookup never drafted");
    }
}

/// A drafter that knows the plain greedy continuation and proposes it
/// (`right`), or something else (`wrong`), or alternates per position.
fn oracle(prompt_len: usize, truth: Vec<u32>, n_vocab: u32, mode: &'static str) -> Draft {
    Draft::Custom(Arc::new(move |tokens: &[u32]| {
        let at = tokens.len() - prompt_len;
        (at..(at + 6).min(truth.len()))
            .map(|i| {
                let wrong = (truth[i] + 1) % n_vocab;
                match mode {
                    "right" => truth[i],
                    "wrong" => wrong,
                    _ if i % 2 == 0 => truth[i],
                    _ => wrong,
                }
            })
            .collect()
    }))
}

#[test]
fn always_right_always_wrong_and_mixed_drafts_give_the_plain_greedy_tokens() {
    let Some(g) = gemma() else { return };
    let n_vocab = g.info().n_vocab as u32;
    for p in golden_prompts().iter().take(3) {
        let prompt_len = g.tokenize(p).unwrap().len();
        let (plain, plain_m) = run(g, p, None, 32);
        for mode in ["right", "wrong", "mixed"] {
            let (spec, m) = run(
                g,
                p,
                Some(oracle(prompt_len, plain.clone(), n_vocab, mode)),
                32,
            );
            assert_eq!(plain, spec, "{mode}: {p}");
            match mode {
                "right" => {
                    assert_eq!(m.accepted_draft_tokens, m.draft_tokens, "{m:?}");
                    assert!(
                        m.decode_passes * 3 < plain_m.decode_passes,
                        "{m:?} vs {plain_m:?}"
                    );
                }
                "wrong" => assert_eq!(m.accepted_draft_tokens, 0, "{m:?}"),
                _ => {
                    assert!(m.accepted_draft_tokens > 0 && m.accepted_draft_tokens < m.draft_tokens)
                }
            }
        }
    }
}

/// Answers in JSON that copy from their prompts.
const JSON_EXTRACTIVE: &[&str] = &[
    "<start_of_turn>user\nRepeat this JSON exactly: {\"name\": \"Ada Lovelace\", \"born\": 1815, \"languages\": [\"English\", \"French\"]}<end_of_turn>\n<start_of_turn>model\n",
    "Record: {\"city\": \"Lisbon\", \"country\": \"Portugal\", \"population\": 545000}\nSame record again: ",
];

#[test]
fn drafts_under_a_grammar_give_the_plain_constrained_tokens() {
    for g in [gemma(), smollm2()].into_iter().flatten() {
        let n_vocab = g.info().n_vocab as u32;
        let mut accepted = 0;
        for p in JSON_EXTRACTIVE {
            let json = || Some(Grammar::json());
            let (plain, plain_m) = run_with(g, p, None, json(), 40);
            assert!(!plain.is_empty(), "{p}");
            let (lookup, m) = run_with(g, p, Some(Draft::ngram()), json(), 40);
            assert_eq!(plain, lookup, "lookup: {p}");
            accepted += m.accepted_draft_tokens;
            // Right drafts are all admitted and kept; wrong ones are mostly
            // cut by the grammar before the pass, and never change a token.
            let prompt_len = g.tokenize(p).unwrap().len();
            let (right, m) = run_with(
                g,
                p,
                Some(oracle(prompt_len, plain.clone(), n_vocab, "right")),
                json(),
                40,
            );
            assert_eq!(plain, right, "right: {p}");
            assert_eq!(m.accepted_draft_tokens, m.draft_tokens, "{m:?}");
            if plain.len() >= 12 {
                assert!(
                    m.decode_passes * 3 < plain_m.decode_passes,
                    "{m:?} vs {plain_m:?}"
                );
            }
            for mode in ["wrong", "mixed"] {
                let (spec, _) = run_with(
                    g,
                    p,
                    Some(oracle(prompt_len, plain.clone(), n_vocab, mode)),
                    json(),
                    40,
                );
                assert_eq!(plain, spec, "{mode}: {p}");
            }
        }
        assert!(accepted > 0, "prompt lookup under a grammar never paid");
    }
}

#[test]
fn a_draft_model_with_the_targets_weights_is_always_right_and_changes_nothing() {
    let Some(path) = common::cached_model("gemma3-270m") else {
        return;
    };
    let g = Generator::builder()
        .threads(2)
        .context(512)
        .draft(&path)
        .open(&path)
        .unwrap();
    for p in golden_prompts().iter().take(3) {
        let (plain, _) = run(&g, p, None, 32);
        let (spec, m) = run(&g, p, Some(Draft::model()), 32);
        assert_eq!(plain, spec, "{p}");
        assert_eq!(m.accepted_draft_tokens, m.draft_tokens, "{m:?}");
        assert!(m.draft_tokens > 0);
    }
    // Without a draft model, asking for one is a typed error.
    let lone = gemma().unwrap();
    let e = lone
        .generate(
            "Hi",
            &GenerateOptions {
                draft: Some(Draft::model()),
                ..GenerateOptions::greedy(4)
            },
        )
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, kiln::Error::NoDraftModel), "{e}");
}

#[test]
fn a_draft_model_with_another_vocabulary_is_refused_at_open() {
    let (Some(target), Some(draft)) = (
        common::cached_model("gemma3-270m"),
        common::cached_model("smollm2"),
    ) else {
        return;
    };
    let e = Generator::builder()
        .threads(1)
        .context(64)
        .draft(draft)
        .open(target)
        .unwrap_err();
    assert!(matches!(e, kiln::Error::DraftVocabulary { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("49152 tokens against the target's 262144"),
        "{e}"
    );
}
