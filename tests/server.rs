//! `kiln serve` end to end: the server runs in-process on 127.0.0.1 with the
//! MiniLM fixture and a real HTTP client (ureq) calls every route and every
//! error path; vectors must equal the library's.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::server::{agent, floats, post_raw};
use kiln::server::Config;
use kiln::{CallOptions, Embedder, TruncateDirection};
use serde_json::{Value, json};

fn fixture() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf")
}

fn embedder() -> Arc<Embedder> {
    Arc::new(Embedder::builder().threads(2).open(fixture()).unwrap())
}

/// The MiniLM server and the embedder it serves; stops (gracefully) when
/// dropped.
struct TestServer {
    server: common::server::TestServer,
    embedder: Arc<Embedder>,
}

impl TestServer {
    fn start(tune: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_with(embedder(), tune)
    }

    fn start_with(embedder: Arc<Embedder>, tune: impl FnOnce(&mut Config)) -> TestServer {
        TestServer {
            server: common::server::TestServer::embedding(
                embedder.clone(),
                "all-MiniLM-L6-v2",
                tune,
            ),
            embedder,
        }
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Stops accepting, finishes in-flight requests, joins the server thread.
    fn stop(&mut self) {
        self.server.stop();
    }
}

/// POSTs JSON; returns status and JSON body.
fn post(url: &str, body: &Value) -> (u16, Value) {
    let (status, text) = post_raw(url, &body.to_string(), None);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

fn get(url: &str, key: Option<&str>) -> (u16, String) {
    let mut req = agent().get(url);
    if let Some(k) = key {
        req = req.header("authorization", &format!("Bearer {k}"));
    }
    let mut resp = req.call().unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

/// An OpenAI error body with this status.
fn assert_openai_error(status: u16, body: &Value, want: u16, needle: &str) {
    assert_eq!(status, want, "{body}");
    let msg = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(
        msg.contains(needle),
        "message {msg:?} does not mention {needle:?}"
    );
}

/// A TEI error body with this status.
fn assert_tei_error(status: u16, body: &Value, want: u16, needle: &str) {
    assert_eq!(status, want, "{body}");
    let msg = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(body["error_type"].is_string(), "{body}");
    assert!(
        msg.contains(needle),
        "message {msg:?} does not mention {needle:?}"
    );
}

const TEXTS: [&str; 3] = [
    "The quick brown fox jumps over the lazy dog.",
    "kiln serves embeddings",
    "A third, somewhat longer sentence about CPUs and vectors.",
];

#[test]
fn openai_embeddings_equal_library_vectors() {
    let s = TestServer::start(|_| {});
    let want = s.embedder.embed_batch(&TEXTS).unwrap();
    let (status, body) = post(
        &s.url("/v1/embeddings"),
        &json!({"model": "all-MiniLM-L6-v2", "input": TEXTS}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "all-MiniLM-L6-v2");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, (d, w)) in data.iter().zip(&want).enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        assert_eq!(floats(&d["embedding"]), *w, "input {i}");
    }
    let tokens: usize = TEXTS
        .iter()
        .map(|t| s.embedder.tokenize(t).unwrap().len())
        .sum();
    assert_eq!(body["usage"]["prompt_tokens"], tokens);
    assert_eq!(body["usage"]["total_tokens"], tokens);

    // A single string, token ids and arrays of token ids give the same vectors.
    let (_, one) = post(&s.url("/v1/embeddings"), &json!({"input": TEXTS[0]}));
    assert_eq!(floats(&one["data"][0]["embedding"]), want[0]);
    let ids: Vec<Vec<u32>> = TEXTS
        .iter()
        .map(|t| s.embedder.tokenize(t).unwrap())
        .collect();
    let (status, by_ids) = post(&s.url("/v1/embeddings"), &json!({"input": ids[1]}));
    assert_eq!(status, 200, "{by_ids}");
    assert_eq!(floats(&by_ids["data"][0]["embedding"]), want[1]);
    let (_, by_lists) = post(&s.url("/v1/embeddings"), &json!({"input": ids}));
    for (d, w) in by_lists["data"].as_array().unwrap().iter().zip(&want) {
        assert_eq!(floats(&d["embedding"]), *w);
    }
}

#[test]
fn openai_base64_dimensions_and_quantized_encodings() {
    let s = TestServer::start(|_| {});
    let want = s.embedder.embed(TEXTS[2]).unwrap();
    let (status, body) = post(
        &s.url("/v1/embeddings"),
        &json!({"input": [TEXTS[2]], "encoding_format": "base64"}),
    );
    assert_eq!(status, 200, "{body}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let got: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got, want);

    // Matryoshka: the first 128 values, re-normalized, as the library gives them.
    let (_, body) = post(
        &s.url("/v1/embeddings"),
        &json!({"input": TEXTS[2], "dimensions": 128}),
    );
    let got = floats(&body["data"][0]["embedding"]);
    let lib = s
        .embedder
        .embed_batch_with(
            &[TEXTS[2]],
            &CallOptions {
                dim: Some(128),
                ..CallOptions::default()
            },
        )
        .unwrap();
    assert_eq!(got, lib[0]);
    let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");

    // ubinary: sign bits, MSB first; binary: the same minus 128.
    let (_, ub) = post(
        &s.url("/v1/embeddings"),
        &json!({"input": TEXTS[2], "encoding_format": "ubinary"}),
    );
    let ub: Vec<i64> = ub["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(ub.len(), want.len() / 8);
    for (byte, chunk) in ub.iter().zip(want.chunks(8)) {
        let expect = chunk
            .iter()
            .enumerate()
            .filter(|(_, x)| **x > 0.0)
            .fold(0i64, |b, (i, _)| b | (0x80 >> i));
        assert_eq!(*byte, expect);
    }
    let (_, b) = post(
        &s.url("/v1/embeddings"),
        &json!({"input": TEXTS[2], "encoding_format": "binary"}),
    );
    let b: Vec<i64> = b["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(b, ub.iter().map(|x| x - 128).collect::<Vec<_>>());

    // int8 over a request-given range: trunc((x - lo) / ((hi - lo) / 255)) - 128.
    let (status, q) = post(
        &s.url("/v1/embeddings"),
        &json!({"input": TEXTS[2], "encoding_format": "int8", "quantization_range": [-0.25, 0.25]}),
    );
    assert_eq!(status, 200, "{q}");
    let q = q["data"][0]["embedding"].as_array().unwrap();
    assert_eq!(q.len(), want.len());
    for (x, v) in want.iter().zip(q) {
        let expect = (((x + 0.25) / (0.5 / 255.0)).clamp(0.0, 255.0) - 128.0).trunc() as i64;
        assert_eq!(v.as_i64().unwrap(), expect, "{x}");
    }
}

/// `--auto-truncate`: over-long inputs are cut by default (keeping the
/// start and end tokens, as with `truncate: true`), and a request may still
/// refuse it with `"truncate": false` and get 413 naming the limit.
#[test]
fn auto_truncate_cuts_unless_the_request_says_not_to() {
    let s = TestServer::start(|c| {
        c.max_input_tokens = 16;
        c.auto_truncate = true;
    });
    let long = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen";
    let cut = |d: TruncateDirection| {
        s.embedder
            .embed_batch_with(
                &[long],
                &CallOptions {
                    truncate: Some(true),
                    truncate_direction: Some(d),
                    max_tokens: Some(16),
                    ..CallOptions::default()
                },
            )
            .unwrap()
            .remove(0)
    };
    let (status, body) = post(&s.url("/embed"), &json!({"inputs": long}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(floats(&body[0]), cut(TruncateDirection::Right));
    let (status, body) = post(
        &s.url("/v1/embeddings"),
        &json!({"input": long, "truncation_direction": "Left"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        floats(&body["data"][0]["embedding"]),
        cut(TruncateDirection::Left)
    );
    let (status, body) = post(
        &s.url("/embed"),
        &json!({"inputs": long, "truncate": false}),
    );
    assert_tei_error(status, &body, 413, "more than the limit of 16");
    let (status, info) = get(&s.url("/info"), None);
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["auto_truncate"], true, "{info}");
}

#[test]
fn tei_embed_options_equal_library() {
    let s = TestServer::start(|c| c.max_input_tokens = 16);
    let (status, body) = post(&s.url("/embed"), &json!({"inputs": TEXTS[1]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(floats(&body[0]), s.embedder.embed(TEXTS[1]).unwrap());

    let raw = CallOptions {
        normalize: Some(false),
        ..CallOptions::default()
    };
    let (_, body) = post(
        &s.url("/embed"),
        &json!({"inputs": [TEXTS[1]], "normalize": false}),
    );
    assert_eq!(
        floats(&body[0]),
        s.embedder.embed_batch_with(&[TEXTS[1]], &raw).unwrap()[0]
    );

    // Over the 16-token limit: 413 unless truncating, from either end.
    let long = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen";
    let (status, body) = post(&s.url("/embed"), &json!({"inputs": long}));
    assert_tei_error(status, &body, 413, "more than the limit of 16");
    for (dir, d) in [
        ("Right", TruncateDirection::Right),
        ("left", TruncateDirection::Left),
    ] {
        let (status, body) = post(
            &s.url("/embed"),
            &json!({"inputs": long, "truncate": true, "truncation_direction": dir}),
        );
        assert_eq!(status, 200, "{body}");
        let lib = s
            .embedder
            .embed_batch_with(
                &[long],
                &CallOptions {
                    truncate: Some(true),
                    truncate_direction: Some(d),
                    max_tokens: Some(16),
                    ..CallOptions::default()
                },
            )
            .unwrap();
        assert_eq!(floats(&body[0]), lib[0], "{dir}");
    }
    let (r, l) = (
        post(&s.url("/embed"), &json!({"inputs": long, "truncate": true})).1,
        post(
            &s.url("/embed"),
            &json!({"inputs": long, "truncate": true, "truncation_direction": "Left"}),
        )
        .1,
    );
    assert_ne!(r, l, "left and right truncation cut different ends");

    let (status, body) = post(
        &s.url("/embed"),
        &json!({"inputs": "x", "truncation_direction": "up"}),
    );
    assert_tei_error(status, &body, 422, "truncation_direction");
    // MiniLM defines no prompts.
    let (status, body) = post(
        &s.url("/embed"),
        &json!({"inputs": "x", "prompt_name": "query"}),
    );
    assert_tei_error(status, &body, 422, "unknown task `query`");
    let (status, body) = post(
        &s.url("/embed"),
        &json!({"inputs": "x", "dimensions": 1000}),
    );
    assert_tei_error(status, &body, 422, "dimensions 1000");
}

/// Over-long token-id inputs are cut as the library cuts them: from the
/// left the [CLS] start token stays, from the right the [SEP] end token
/// does (the server used to drop them).
#[test]
fn token_id_truncation_keeps_the_special_tokens() {
    let s = TestServer::start(|c| c.max_input_tokens = 8);
    let ids = s
        .embedder
        .tokenize("one two three four five six seven eight nine ten eleven twelve")
        .unwrap();
    assert!(ids.len() > 8);
    for (name, dir) in [
        ("left", TruncateDirection::Left),
        ("right", TruncateDirection::Right),
    ] {
        let call = CallOptions {
            truncate: Some(true),
            truncate_direction: Some(dir),
            max_tokens: Some(8),
            ..CallOptions::default()
        };
        let kept = s.embedder.prepare_tokens(&ids, &call).unwrap();
        assert_eq!(kept.len(), 8);
        assert_eq!((kept[0], kept[7]), (ids[0], ids[ids.len() - 1]), "{name}");
        let want = s.embedder.embed_tokens_batch(&[&kept], &call).unwrap();
        let (status, body) = post(
            &s.url("/embed"),
            &json!({"inputs": [ids], "truncate": true, "truncation_direction": name}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(floats(&body[0]), want[0], "{name}");
    }
}

#[test]
fn tokenize_info_health_models_metrics() {
    let s = TestServer::start(|_| {});
    let (status, body) = post(&s.url("/tokenize"), &json!({"inputs": TEXTS[1]}));
    assert_eq!(status, 200, "{body}");
    let ids: Vec<u32> = body[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, s.embedder.tokenize(TEXTS[1]).unwrap());
    assert_eq!(body[0][0]["text"], "[CLS]");
    assert_eq!(body[0][0]["special"], true);
    assert_eq!(body[0][1]["special"], false);
    let (_, bare) = post(
        &s.url("/tokenize"),
        &json!({"inputs": [TEXTS[1], TEXTS[0]], "add_special_tokens": false}),
    );
    assert_eq!(bare.as_array().unwrap().len(), 2);
    assert_eq!(bare[0].as_array().unwrap().len(), ids.len() - 2);

    let (status, info) = get(&s.url("/info"), None);
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["model_id"], "all-MiniLM-L6-v2");
    assert_eq!(info["dim"], 384);
    assert_eq!(info["max_input_length"], 512);
    assert_eq!(info["model_type"]["embedding"]["pooling"], "mean");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));

    assert_eq!(get(&s.url("/health"), None).0, 200);
    let (status, models) = get(&s.url("/v1/models"), None);
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"][0]["id"], "all-MiniLM-L6-v2");

    let (status, body) = get(&s.url("/metrics"), None);
    assert_eq!(status, 200);
    for needle in [
        "kiln_requests_total{route=\"/tokenize\",status=\"200\"} 2",
        "kiln_requests_total{route=\"/info\",status=\"200\"} 1",
        "kiln_request_duration_seconds_bucket{route=\"/health\",le=\"+Inf\"} 1",
        "kiln_queue_depth 0",
        "# TYPE kiln_batch_tokens histogram",
        "kiln_tokens_per_second",
    ] {
        assert!(body.contains(needle), "no {needle:?} in\n{body}");
    }
    let (_, _) = post(&s.url("/embed"), &json!({"inputs": ["a", "b"]}));
    let (_, body) = get(&s.url("/metrics"), None);
    assert!(body.contains("kiln_inputs_total 2\n"), "{body}");
    assert!(body.contains("kiln_batch_inputs_count 1\n"), "{body}");
}

#[test]
fn malformed_wrong_types_and_empty_inputs() {
    let s = TestServer::start(|_| {});
    let oa = s.url("/v1/embeddings");
    let tei = s.url("/embed");

    let (status, text) = post_raw(&oa, "{\"input\": ", None);
    assert_openai_error(
        status,
        &serde_json::from_str(&text).unwrap(),
        400,
        "invalid JSON",
    );
    let (status, text) = post_raw(&tei, "not json", None);
    assert_tei_error(
        status,
        &serde_json::from_str(&text).unwrap(),
        400,
        "invalid JSON",
    );

    for (body, needle) in [
        (json!({"input": 5}), "must be a string"),
        (json!({"input": {"a": 1}}), "must be a string"),
        (json!({"input": ["a", 1]}), "not a string"),
        (json!({"input": [1, -2]}), "not a token id"),
        (json!({"input": [[1, 2], "a"]}), "`input[1]`"),
        (json!({"model": "m"}), "missing `input`"),
        (json!({"input": "a", "dimensions": 0}), "dimensions 0"),
        (json!({"input": "a", "dimensions": -3}), "invalid request"),
        (
            json!({"input": "a", "encoding_format": "int4"}),
            "encoding_format",
        ),
        (
            json!({"input": "a", "quantization_range": [1, -1]}),
            "quantization_range",
        ),
        (json!({"input": [[1, 999999]]}), "not in the vocabulary"),
        (json!({"input": "a", "normalize": "yes"}), "invalid request"),
    ] {
        let (status, resp) = post(&oa, &body);
        assert_openai_error(status, &resp, 400, needle);
    }
    for (body, needle) in [
        (json!({"input": []}), "empty array"),
        (json!({"input": ""}), "empty string"),
        (json!({"input": ["a", ""]}), "`input[1]` is an empty string"),
        (json!({"input": [[]]}), "empty array"),
    ] {
        let (status, resp) = post(&oa, &body);
        assert_openai_error(status, &resp, 400, needle);
        assert_eq!(resp["error"]["param"], "input");
    }
    let (status, resp) = post(&tei, &json!({"inputs": 5}));
    assert_tei_error(status, &resp, 422, "must be a string");
    let (status, resp) = post(&tei, &json!({"inputs": []}));
    assert_tei_error(status, &resp, 400, "empty");
    assert_eq!(resp["error_type"], "empty");
    let (status, resp) = post(&tei, &json!({"inputs": "a", "truncate": 3}));
    assert_tei_error(status, &resp, 422, "invalid request");
    let (status, resp) = post(&s.url("/tokenize"), &json!({"inputs": [[1, 2]]}));
    assert_tei_error(status, &resp, 422, "array of strings");

    // Unknown routes and methods.
    let (status, text) = get(&s.url("/v1/nope"), None);
    assert_openai_error(
        status,
        &serde_json::from_str(&text).unwrap(),
        404,
        "no route",
    );
    // 405 has the same JSON error shape as every other error.
    let (status, text) = get(&s.url("/embed"), None);
    assert_tei_error(
        status,
        &serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}")),
        405,
        "does not take GET",
    );
    let (status, text) = get(&s.url("/v1/embeddings"), None);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert_openai_error(status, &v, 405, "does not take GET");
}

#[test]
fn size_limits_give_413() {
    let mut s = TestServer::start(|c| {
        c.max_body_bytes = 4096;
        c.max_batch_tokens = 600;
    });
    let big = "word ".repeat(2000);
    let (status, resp) = post(&s.url("/v1/embeddings"), &json!({"input": big}));
    assert_openai_error(status, &resp, 413, "larger than the limit of 4096 bytes");
    // Each input fits (≤ 512 tokens) but together they exceed the per-request budget.
    let text = "word ".repeat(250);
    let (status, resp) = post(&s.url("/embed"), &json!({"inputs": [text, text, text]}));
    assert_tei_error(status, &resp, 413, "more than the limit of 600 per request");
    // One input over the model's context.
    let text = "word ".repeat(600);
    let (status, resp) = post(&s.url("/v1/embeddings"), &json!({"input": text}));
    assert_openai_error(status, &resp, 413, "more than the limit of 512");
    assert_eq!(resp["error"]["code"], "context_length_exceeded");
    let (status, _) = post(
        &s.url("/v1/embeddings"),
        &json!({"input": text, "truncate": true}),
    );
    assert_eq!(status, 200);
    s.stop();
}

#[test]
fn api_key_guards_every_route_but_health() {
    let s = TestServer::start(|c| c.api_key = Some("s3cret".into()));
    assert_eq!(get(&s.url("/health"), None).0, 200);
    for path in ["/info", "/metrics", "/v1/models"] {
        assert_eq!(get(&s.url(path), None).0, 401, "{path}");
        assert_eq!(get(&s.url(path), Some("wrong")).0, 401, "{path}");
        assert_eq!(get(&s.url(path), Some("s3cret")).0, 200, "{path}");
    }
    let body = json!({"input": "hi"}).to_string();
    let (status, text) = post_raw(&s.url("/v1/embeddings"), &body, Some("nope"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_openai_error(status, &v, 401, "invalid API key");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (status, text) = post_raw(&s.url("/embed"), "{\"inputs\":\"hi\"}", None);
    assert_tei_error(
        status,
        &serde_json::from_str(&text).unwrap(),
        401,
        "missing API key",
    );
    let (status, _) = post_raw(&s.url("/v1/embeddings"), &body, Some("s3cret"));
    assert_eq!(status, 200);
    // The scheme is case-insensitive (RFC 7235).
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let mut resp = agent()
            .post(s.url("/v1/embeddings"))
            .header("content-type", "application/json")
            .header("authorization", &format!("{scheme} s3cret"))
            .send(&body)
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(
            status,
            200,
            "{scheme}: {}",
            resp.body_mut().read_to_string().unwrap()
        );
    }
}

/// `/tokenize` tokenizes as the library does: the embedder's prompt, the
/// special tokens on or off, and the check of `prompt_name`.
#[test]
fn tokenize_follows_the_library() {
    let prompted = Arc::new(
        Embedder::builder()
            .threads(2)
            .prompt("query: ")
            .open(fixture())
            .unwrap(),
    );
    let s = TestServer::start_with(prompted.clone(), |_| {});
    let url = s.url("/tokenize");
    let ids = |body: &Value| -> Vec<u32> {
        body[0]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|t| t["id"].as_u64().unwrap() as u32)
            .collect()
    };
    let (status, body) = post(&url, &json!({"inputs": TEXTS[1]}));
    assert_eq!(status, 200, "{body}");
    let full = embedder()
        .tokenize(&format!("query: {}", TEXTS[1]))
        .unwrap();
    assert_eq!(ids(&body), full);
    assert_eq!(ids(&body), prompted.tokenize(TEXTS[1]).unwrap());

    let (status, body) = post(
        &url,
        &json!({"inputs": TEXTS[1], "add_special_tokens": false}),
    );
    assert_eq!(status, 200, "{body}");
    let bare = CallOptions {
        add_special: Some(false),
        ..CallOptions::default()
    };
    assert_eq!(ids(&body), prompted.tokenize_with(TEXTS[1], &bare).unwrap());
    assert_eq!(ids(&body), full[1..full.len() - 1]);
    let (status, body) = post(&url, &json!({"inputs": "x", "prompt_name": "query"}));
    assert_tei_error(status, &body, 422, "unknown prompt_name `query`");

    // Without a prompt, spaces and no special tokens are no tokens, not an
    // error.
    let plain = TestServer::start(|_| {});
    let (status, body) = post(
        &plain.url("/tokenize"),
        &json!({"inputs": "   ", "add_special_tokens": false}),
    );
    assert_eq!((status, body), (200, json!([[]])));
}

#[test]
fn tokenize_obeys_the_embed_token_limits() {
    let s = TestServer::start(|c| c.max_batch_tokens = 600);
    let url = s.url("/tokenize");
    let (status, resp) = post(&url, &json!({"inputs": "word ".repeat(600)}));
    assert_tei_error(status, &resp, 413, "more than the limit of 512");
    let text = "word ".repeat(250);
    let (status, resp) = post(&url, &json!({"inputs": [text, text, text]}));
    assert_tei_error(status, &resp, 413, "limit per request");
    // About a million words in a body under the 2 MB limit: once a 68 MB
    // answer and over 1 GB of memory, now a short 413.
    let start = std::time::Instant::now();
    let (status, text) = post_raw(
        &url,
        &json!({"inputs": "a ".repeat(1_000_000)}).to_string(),
        None,
    );
    assert_eq!(status, 413, "{}", &text[..text.len().min(300)]);
    assert!(text.len() < 1000, "{} bytes", text.len());
    assert!(start.elapsed() < Duration::from_secs(10));
    let (status, resp) = post(&url, &json!({"inputs": "still answers"}));
    assert_eq!(status, 200, "{resp}");
}

#[test]
fn tokenize_gives_429_when_busy() {
    let s = TestServer::start(|c| c.max_concurrent_requests = 1);
    let body = json!({"inputs": "a ".repeat(1_000_000)}).to_string();
    let barrier = Arc::new(std::sync::Barrier::new(12));
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let (url, body, barrier) = (s.url("/tokenize"), body.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                post_raw(&url, &body, None)
            })
        })
        .collect();
    let results: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let busy: Vec<&String> = results
        .iter()
        .filter(|(st, _)| *st == 429)
        .map(|(_, b)| b)
        .collect();
    assert!(
        results.iter().all(|(st, _)| [413, 429].contains(st)),
        "{results:?}"
    );
    assert!(!busy.is_empty(), "a one-slot queue must refuse some");
    let v: Value = serde_json::from_str(busy[0]).unwrap();
    assert_tei_error(429, &v, 429, "at capacity");
}

#[test]
fn a_slow_body_gets_408() {
    use std::io::{Read, Write};
    let s = TestServer::start(|c| c.connections.body_read_timeout = Duration::from_millis(300));
    let addr = s.server.addr().to_owned();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = std::time::Instant::now();
    sock.write_all(
        b"POST /embed HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"inputs\":",
    )
    .unwrap();
    let mut answer = String::new();
    let mut buf = [0u8; 1024];
    while !answer.contains("within") {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("not received within"), "{answer}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

/// A request that keeps the worker busy for a while: `n` inputs of ~90 tokens.
const HEAVY: &str = "lorem ipsum dolor sit amet ";

fn heavy_request(n: usize) -> Value {
    json!({"inputs": vec![HEAVY.repeat(10); n]})
}

#[test]
fn overload_gives_429_and_loses_no_accepted_request() {
    let s = TestServer::start(|c| c.max_concurrent_requests = 1);
    let want = s
        .embedder
        .embed_batch_with(
            &[HEAVY.repeat(10)],
            &CallOptions {
                truncate: Some(true),
                ..CallOptions::default()
            },
        )
        .unwrap()
        .remove(0);
    let url = s.url("/embed");
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || post(&url, &heavy_request(4)))
        })
        .collect();
    let results: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|(st, _)| *st == 200).count();
    let busy = results.iter().filter(|(st, _)| *st == 429).count();
    assert_eq!(ok + busy, results.len(), "only 200 and 429: {results:?}");
    assert!(
        busy > 0,
        "a one-slot queue under 12 concurrent requests must refuse some"
    );
    assert!(ok > 0);
    for (st, body) in &results {
        if *st == 200 {
            assert_eq!(body.as_array().unwrap().len(), 4);
            for v in body.as_array().unwrap() {
                assert_eq!(floats(v), want);
            }
        } else {
            assert_tei_error(*st, body, 429, "at capacity");
            assert_eq!(body["error_type"], "overloaded");
        }
    }
    let (_, metrics) = get(&s.url("/metrics"), None);
    assert!(
        metrics.contains(&format!("kiln_rejected_total {busy}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("kiln_inputs_total {}\n", ok * 4)),
        "{metrics}"
    );
}

#[test]
fn disconnected_client_cancels_its_queued_work() {
    // One compute thread, so that the busy request keeps the worker for
    // well over the quitter's patience (~1 s against 0.25 s here) even
    // on a fast, quiet machine.
    let one_thread = Arc::new(Embedder::builder().threads(1).open(fixture()).unwrap());
    let s = TestServer::start_with(one_thread, |_| {});
    let url = s.url("/embed");
    // Occupy the worker, then queue a request whose client gives up.
    let busy = {
        let url = url.clone();
        std::thread::spawn(move || post(&url, &heavy_request(32)))
    };
    std::thread::sleep(Duration::from_millis(100));
    let quitter = agent()
        .post(&url)
        .config()
        .timeout_global(Some(Duration::from_millis(150)))
        .build()
        .header("content-type", "application/json")
        .send(heavy_request(2).to_string());
    assert!(quitter.is_err(), "the client timed out");
    assert_eq!(busy.join().unwrap().0, 200);
    // The worker skipped the abandoned job. It reaches that job after it has
    // answered `busy`, so the count can trail the response: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (_, metrics) = get(&s.url("/metrics"), None);
        if metrics.contains("kiln_cancelled_total 1\n") || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(metrics.contains("kiln_cancelled_total 1\n"), "{metrics}");
    assert!(metrics.contains("kiln_inputs_total 32\n"), "{metrics}");
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let mut s = TestServer::start(|_| {});
    let url = s.url("/embed");
    let inflight = {
        let url = url.clone();
        std::thread::spawn(move || post(&url, &heavy_request(16)))
    };
    std::thread::sleep(Duration::from_millis(200));
    s.stop();
    let (status, body) = inflight.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 16);
    assert!(
        agent().get(&s.url("/health")).call().is_err(),
        "the listener is closed after shutdown"
    );
}

/// The MiniLM fixture with one NaN in a norm weight, in memory: every
/// vector it computes is NaN.
fn embedder_with_a_nan_weight() -> Arc<Embedder> {
    use kiln::runtime::gguf::{GgufFile, GgufWriter};
    let src = GgufFile::open(fixture()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in src.metadata().iter() {
        w.add_metadata(k, v.clone()).unwrap();
    }
    for t in src.tensors() {
        w.add_tensor(&t.name, &t.dims, t.ty).unwrap();
    }
    let mut out = w.begin(Vec::new()).unwrap();
    for t in src.tensors() {
        let mut bytes = src.tensor_bytes(t).to_vec();
        if t.name == "token_embd_norm.weight" {
            bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        out.write_tensor(&t.name, &bytes).unwrap();
    }
    let file = GgufFile::from_vec(out.finish().unwrap(), "minilm-nan.gguf").unwrap();
    Arc::new(
        Embedder::builder()
            .threads(1)
            .pack_cache(None)
            .open_file(Arc::new(file))
            .unwrap(),
    )
}

#[test]
fn a_non_finite_vector_is_an_error_not_a_200() {
    let server = TestServer::start_with(embedder_with_a_nan_weight(), |_| {});
    let (status, body) = post(
        &server.url("/v1/embeddings"),
        &json!({"input": ["hello", "world"]}),
    );
    assert_openai_error(status, &body, 500, "non-finite");
    let (status, body) = post(&server.url("/embed"), &json!({"inputs": "hello"}));
    assert_tei_error(status, &body, 500, "non-finite");
    // The server keeps serving: the failure is the request's, not the worker's.
    let (status, _) = get(&server.url("/health"), None);
    assert_eq!(status, 200);
}

/// TEI's `/embed_all`, `/similarity` and `/decode` against the library.
#[test]
fn embed_all_similarity_and_decode() {
    let s = TestServer::start(|_| {});
    let e = &s.embedder;

    // Per-token states; their mean, normalized, is the pooled embedding.
    let (status, body) = post(
        &s.url("/embed_all"),
        &json!({"inputs": [TEXTS[0], TEXTS[1]]}),
    );
    assert_eq!(status, 200, "{body}");
    for (i, text) in TEXTS[..2].iter().enumerate() {
        let ids = e.tokenize_with(text, &CallOptions::default()).unwrap();
        let rows = body[i].as_array().unwrap();
        assert_eq!(rows.len(), ids.len());
        let states = e.token_states(&ids).unwrap();
        let got: Vec<f32> = rows.iter().flat_map(floats).collect();
        assert_eq!(got, states);
        let d = e.dim();
        let mut mean = vec![0f32; d];
        for r in states.chunks_exact(d) {
            for (m, x) in mean.iter_mut().zip(r) {
                *m += x / ids.len() as f32;
            }
        }
        let cos = kiln::cosine(&mean, &e.embed(text).unwrap());
        assert!(cos >= 0.99999, "{cos}");
    }
    let long = "word ".repeat(600);
    let (status, body) = post(&s.url("/embed_all"), &json!({"inputs": long}));
    assert_tei_error(status, &body, 413, "more than the limit of 512");
    let (status, body) = post(
        &s.url("/embed_all"),
        &json!({"inputs": long, "truncate": true}),
    );
    assert_eq!(status, 200);
    assert_eq!(body[0].as_array().unwrap().len(), 512);

    // Cosine of the source to each sentence.
    let sentences = [TEXTS[1], "A fast fox leaps over a dog.", TEXTS[2]];
    let (status, body) = post(
        &s.url("/similarity"),
        &json!({"inputs": {"source_sentence": TEXTS[0], "sentences": sentences}}),
    );
    assert_eq!(status, 200, "{body}");
    let got = floats(&body);
    let src = e.embed(TEXTS[0]).unwrap();
    for (g, t) in got.iter().zip(sentences) {
        let want = kiln::cosine(&src, &e.embed(t).unwrap());
        assert!((g - want).abs() < 1e-6, "{t}: {g} against {want}");
    }
    assert!(got[1] > got[0] && got[1] > got[2], "{got:?}");
    let (status, body) = post(
        &s.url("/similarity"),
        &json!({"inputs": {"source_sentence": "a", "sentences": []}}),
    );
    assert_tei_error(status, &body, 400, "sentences");

    // Ids back to text, control tokens left out.
    let text = "kiln serves embeddings";
    let ids = e.tokenize_with(text, &CallOptions::default()).unwrap();
    let (status, body) = post(&s.url("/decode"), &json!({"ids": ids}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([text]));
    let (status, body) = post(&s.url("/decode"), &json!({"ids": [ids.clone(), ids]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([text, text]));
    let (status, body) = post(&s.url("/decode"), &json!({"ids": [999_999]}));
    assert_tei_error(status, &body, 422, "999999");
}
