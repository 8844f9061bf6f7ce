//! End-to-end: constrained generation on real models. The JSON Schema
//! suite (tests/data/structured/suite.json) is validated with Python's
//! `jsonschema` by scripts/test-structured-output; here the engine's
//! promises are checked in Rust: a grammar that allows everything changes
//! no greedy token, outputs parse, and a cut-short output is a prefix.

mod common;

use std::sync::OnceLock;

use kiln::{ChatMessage, FinishReason, GenerateOptions, Generator, Grammar, SamplingOptions};
use serde_json::{Value, json};

fn gemma() -> Option<&'static Generator> {
    static G: OnceLock<Option<Generator>> = OnceLock::new();
    G.get_or_init(|| common::generator("gemma3-270m", 512))
        .as_ref()
}

fn smollm2() -> Option<&'static Generator> {
    static G: OnceLock<Option<Generator>> = OnceLock::new();
    G.get_or_init(|| common::generator("smollm2", 512)).as_ref()
}

fn ids(g: &Generator, prompt: &str, opts: &GenerateOptions) -> (Vec<u32>, Option<FinishReason>) {
    let mut run = g.generate(prompt, opts);
    let ids = run.by_ref().map(|t| t.unwrap().id).collect();
    (ids, run.finish_reason())
}

#[test]
fn a_grammar_that_allows_everything_changes_no_greedy_token() {
    let Some(g) = gemma() else { return };
    let any = Grammar::gbnf("root ::= .*").unwrap();
    let path = common::fixtures().join("goldens/gemma-3-270m.greedy.llamacpp.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let golden: Value = serde_json::from_str(line).unwrap();
        let prompt = golden["prompt"].as_str().unwrap();
        let plain = GenerateOptions::greedy(32);
        let constrained = GenerateOptions {
            grammar: Some(any.clone()),
            ..GenerateOptions::greedy(32)
        };
        let (a, fa) = ids(g, prompt, &plain);
        let (b, fb) = ids(g, prompt, &constrained);
        assert_eq!(a, b, "{prompt}");
        assert_eq!(fa, fb);
    }
}

fn person() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "born": {"type": "integer", "minimum": 1000, "maximum": 2100},
            "city": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["math", "science", "art"]}, "maxItems": 3}
        },
        "required": ["name", "born"],
        "additionalProperties": false
    })
}

fn chat(g: &Generator, user: &str, opts: &GenerateOptions) -> (String, Option<FinishReason>) {
    let mut run = g.chat(&[ChatMessage::new("user", user)], opts);
    let mut text = String::new();
    for t in run.by_ref() {
        text.push_str(&t.unwrap().text);
    }
    (text, run.finish_reason())
}

#[test]
fn schema_constrained_outputs_parse_greedy_and_sampled() {
    for g in [gemma(), smollm2()].into_iter().flatten() {
        let grammar = Grammar::json_schema(&person()).unwrap();
        for (i, sampling) in [
            SamplingOptions::greedy(),
            SamplingOptions {
                seed: 7,
                temperature: 1.0,
                ..Default::default()
            },
        ]
        .into_iter()
        .enumerate()
        {
            let opts = GenerateOptions {
                max_tokens: 160,
                sampling,
                grammar: Some(grammar.clone()),
                ..Default::default()
            };
            let (text, finish) = chat(
                g,
                "Extract the person as JSON: Ada Lovelace, born 1815 in London, wrote about mathematics. 日本語もどうぞ。",
                &opts,
            );
            assert_eq!(finish, Some(FinishReason::Stop), "{i}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert!(v["name"].is_string() && v["born"].is_i64(), "{text}");
            let born = v["born"].as_i64().unwrap();
            assert!((1000..=2100).contains(&born), "{text}");
            assert!(
                v.as_object()
                    .unwrap()
                    .keys()
                    .all(|k| ["name", "born", "city", "tags"].contains(&k.as_str()))
            );
        }
    }
}

#[test]
fn json_mode_on_a_byte_level_bpe_model_with_non_latin_text() {
    let Some(g) = smollm2() else { return };
    let opts = GenerateOptions {
        max_tokens: 96,
        grammar: Some(Grammar::json()),
        ..GenerateOptions::greedy(96)
    };
    let (text, finish) = chat(
        g,
        "Give a JSON object with the Japanese word for cat (猫) and its reading.",
        &opts,
    );
    if finish == Some(FinishReason::Stop) {
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(v.is_object());
    } else {
        assert!(
            Grammar::json().compiled().matches_prefix(text.as_bytes()),
            "{text}"
        );
    }
}

#[test]
fn an_output_cut_by_max_tokens_is_a_valid_prefix_and_says_length() {
    let Some(g) = gemma() else { return };
    let grammar = Grammar::json_schema(&person()).unwrap();
    let opts = GenerateOptions {
        grammar: Some(grammar.clone()),
        ..GenerateOptions::greedy(5)
    };
    let (text, finish) = chat(
        g,
        "Extract the person: Grace Hopper, born 1906 in New York.",
        &opts,
    );
    assert_eq!(finish, Some(FinishReason::Length));
    assert!(grammar.compiled().matches_prefix(text.as_bytes()), "{text}");
    assert!(!grammar.compiled().matches(text.as_bytes()), "{text}");
}

#[test]
fn a_schema_that_accepts_nothing_or_uses_an_unknown_keyword_is_an_error() {
    let e = Grammar::json_schema(&json!({"enum": []})).unwrap_err();
    assert!(e.to_string().contains("accepts no"), "{e}");
    let e = Grammar::json_schema(&json!({"type": "string", "pattern": "a+"})).unwrap_err();
    assert!(e.to_string().contains("pattern"), "{e}");
    let e = Grammar::gbnf("root ::= root \"a\" | \"b\"").unwrap_err();
    assert!(e.to_string().contains("left-recursive"), "{e}");
}
