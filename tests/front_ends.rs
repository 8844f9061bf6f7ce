//! Every front end finishes embeddings through the same library path, so
//! the same options give the same bits: the library (`Embedder` with
//! `CallOptions`), the `kiln embed` command line, the HTTP server and
//! `#[kiln::model]` are compared on MiniLM for Matryoshka widths,
//! normalization on and off, left and right truncation of over-long texts
//! and token-id inputs, and quantized precisions. (The Python package's
//! parity with the command line is python/tests/test_front_ends.py.)

#![cfg(feature = "server")]

mod common;

use std::process::Command;
use std::sync::Arc;

use common::server::{TestServer, floats, post_raw};
use kiln::{CallOptions, Embedder, Embedding, Precision, TruncateDirection};
use serde_json::{Value, json};

#[kiln::model(
    arch = "bert",
    path = "tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf",
    threads = 2
)]
struct MiniLm;

fn fixture() -> String {
    common::fixtures()
        .join("all-MiniLM-L6-v2-Q8_0.gguf")
        .display()
        .to_string()
}

fn library() -> Arc<Embedder> {
    Arc::new(Embedder::builder().threads(2).open(fixture()).unwrap())
}

/// A text of several hundred tokens, over MiniLM's 512-token context.
fn long_text() -> String {
    (0..400)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn texts() -> Vec<String> {
    vec![
        "The quick brown fox jumps over the lazy dog.".into(),
        "kiln serves embeddings".into(),
        long_text(),
    ]
}

/// The options compared, as each front end spells them.
#[derive(Clone, Copy, Debug)]
struct Case {
    dim: Option<usize>,
    normalize: bool,
    direction: TruncateDirection,
}

const CASES: [Case; 5] = [
    Case {
        dim: None,
        normalize: true,
        direction: TruncateDirection::Right,
    },
    Case {
        dim: None,
        normalize: true,
        direction: TruncateDirection::Left,
    },
    Case {
        dim: Some(128),
        normalize: true,
        direction: TruncateDirection::Right,
    },
    Case {
        dim: Some(100),
        normalize: false,
        direction: TruncateDirection::Left,
    },
    Case {
        dim: None,
        normalize: false,
        direction: TruncateDirection::Right,
    },
];

impl Case {
    fn call(self) -> CallOptions {
        CallOptions {
            dim: self.dim,
            normalize: Some(self.normalize),
            truncate: Some(true),
            truncate_direction: Some(self.direction),
            ..CallOptions::default()
        }
    }

    fn direction_name(self) -> &'static str {
        match self.direction {
            TruncateDirection::Right => "right",
            TruncateDirection::Left => "left",
        }
    }

    fn cli_args(self) -> Vec<String> {
        let mut a = vec![
            "--truncate".to_owned(),
            "--truncation-direction".to_owned(),
            self.direction_name().to_owned(),
        ];
        if let Some(d) = self.dim {
            a.extend(["--dim".to_owned(), d.to_string()]);
        }
        if !self.normalize {
            a.push("--no-normalize".to_owned());
        }
        a
    }

    fn server_options(self) -> Value {
        let mut o = json!({
            "normalize": self.normalize,
            "truncate": true,
            "truncation_direction": self.direction_name(),
        });
        if let Some(d) = self.dim {
            o["dimensions"] = json!(d);
        }
        o
    }
}

/// `kiln embed` with `args`; the `embedding` of each JSONL row as JSON.
fn cli(texts: &[String], args: &[String]) -> Vec<Value> {
    let m = fixture();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["embed", "-m", &m, "-t", "2", "--format", "jsonl"])
        .args(args)
        .args(["--"])
        .args(texts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["embedding"].clone())
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn embedding_ints(e: &Embedding) -> Vec<i64> {
    match e {
        Embedding::Int8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        Embedding::Uint8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        Embedding::Float32(_) => panic!("a float vector"),
    }
}

/// Bit equality, with a readable failure.
fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: widths");
    let same = got
        .iter()
        .zip(want)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same, "{what}: vectors differ\n got {got:?}\nwant {want:?}");
}

/// The server in-process on a free loopback port; stops when dropped.
fn start_server(embedder: Arc<Embedder>) -> TestServer {
    TestServer::embedding(embedder, "all-MiniLM-L6-v2", |_| {})
}

/// POSTs `body` to `/v1/embeddings`; the `embedding` of each row.
fn embeddings(server: &TestServer, body: &Value) -> Vec<Value> {
    let (status, text) = post_raw(&server.url("/v1/embeddings"), &body.to_string(), None);
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["embedding"].clone())
        .collect()
}

/// One options object for the server: `input` plus the case's fields.
fn request(input: Value, options: Value) -> Value {
    let mut body = options;
    body["input"] = input;
    body
}

#[test]
fn texts_give_the_same_bits_in_every_front_end() {
    let lib = library();
    let server = start_server(lib.clone());
    let texts = texts();
    assert!(lib.tokenize(&texts[2]).unwrap().len() > lib.max_tokens());
    for case in CASES {
        let call = case.call();
        let want = lib.embed_batch_with(&texts, &call).unwrap();
        let width = case.dim.unwrap_or(384);
        assert!(want.iter().all(|v| v.len() == width), "{case:?}");
        for (i, text) in texts.iter().enumerate() {
            let what = |front: &str| format!("{front}, {case:?}, text {i}");
            // One text alone equals the same text in a batch.
            assert_bits(
                &what("library alone"),
                &lib.embed_with(text, &call).unwrap(),
                &want[i],
            );
            assert_bits(
                &what("#[kiln::model]"),
                &MiniLm::embed_with(text, &call).unwrap(),
                &want[i],
            );
        }
        for (i, v) in cli(&texts, &case.cli_args()).iter().enumerate() {
            assert_bits(&format!("CLI, {case:?}, text {i}"), &floats(v), &want[i]);
        }
        let body = request(json!(texts), case.server_options());
        for (i, v) in embeddings(&server, &body).iter().enumerate() {
            assert_bits(&format!("server, {case:?}, text {i}"), &floats(v), &want[i]);
        }
    }
    // Left and right truncation really cut different ends.
    let [right, left] = [TruncateDirection::Right, TruncateDirection::Left].map(|d| {
        let call = CallOptions {
            truncate: Some(true),
            truncate_direction: Some(d),
            ..CallOptions::default()
        };
        lib.embed_with(&texts[2], &call).unwrap()
    });
    assert_ne!(right, left);
}

#[test]
fn token_ids_are_truncated_like_text_and_keep_the_special_tokens() {
    let lib = library();
    let server = start_server(lib.clone());
    let long = long_text();
    let ids = lib.tokenize(&long).unwrap();
    let max = lib.max_tokens();
    assert!(ids.len() > max);
    let (cls, sep) = (ids[0], *ids.last().unwrap());
    for case in CASES {
        let call = case.call();
        // The library cuts token ids exactly as it cuts the text they came
        // from: the [CLS] start and [SEP] end tokens stay.
        let kept = lib.prepare_tokens(&ids, &call).unwrap();
        assert_eq!(kept, lib.tokenize_with(&long, &call).unwrap(), "{case:?}");
        assert_eq!((kept.len(), kept[0], kept[max - 1]), (max, cls, sep));
        let want = lib.embed_with(&long, &call).unwrap();
        assert_bits(
            &format!("library token ids, {case:?}"),
            &lib.embed_tokens_batch(&[&ids], &call).unwrap()[0],
            &want,
        );
        // The server once cut token ids itself, dropping [CLS] when cutting
        // from the left and [SEP] from the right.
        let body = request(json!([ids]), case.server_options());
        assert_bits(
            &format!("server token ids, {case:?}"),
            &floats(&embeddings(&server, &body)[0]),
            &want,
        );
    }
}

#[test]
fn quantized_precisions_are_the_same_everywhere() {
    let lib = library();
    let server = start_server(lib.clone());
    let texts = texts();
    for precision in [
        Precision::Int8,
        Precision::Uint8,
        Precision::Binary,
        Precision::Ubinary,
    ] {
        let call = CallOptions {
            dim: Some(256),
            truncate: Some(true),
            precision,
            quantization_range: kiln::QuantRange::new(-0.25, 0.25).unwrap(),
            ..CallOptions::default()
        };
        let want: Vec<Vec<i64>> = lib
            .embed_batch_as(&texts, &call)
            .unwrap()
            .iter()
            .map(embedding_ints)
            .collect();
        assert_eq!(want[0].len(), precision.width(256));
        let floats = lib.embed_batch_with(&texts, &call).unwrap();
        for (w, f) in want.iter().zip(floats) {
            assert_eq!(
                *w,
                embedding_ints(&kiln::quantize::quantize(
                    f,
                    precision,
                    call.quantization_range
                ))
            );
        }
        let args: Vec<String> = [
            "--truncate",
            "--dim",
            "256",
            "--precision",
            precision.name(),
            "--quantization-range",
            "-0.25",
            "0.25",
        ]
        .map(str::to_owned)
        .to_vec();
        let got: Vec<Vec<i64>> = cli(&texts, &args).iter().map(ints).collect();
        assert_eq!(got, want, "CLI {precision}");
        let body = json!({
            "input": texts,
            "dimensions": 256,
            "truncate": true,
            "encoding_format": precision.name(),
            "quantization_range": [-0.25, 0.25],
        });
        let got: Vec<Vec<i64>> = embeddings(&server, &body).iter().map(ints).collect();
        assert_eq!(got, want, "server {precision}");
    }
}

#[test]
fn one_batch_finishes_each_group_with_its_own_options() {
    let lib = library();
    let texts = texts();
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| lib.tokenize(t).unwrap()).collect();
    let calls: Vec<CallOptions> = CASES.iter().map(|c| c.call()).collect();
    let groups: Vec<(&[Vec<u32>], &CallOptions)> =
        calls.iter().map(|c| (ids.as_slice(), c)).collect();
    let got = lib.embed_tokens_groups(&groups).unwrap();
    for (case, rows) in CASES.iter().zip(&got) {
        let want = lib.embed_batch_with(&texts, &case.call()).unwrap();
        for (g, w) in rows.iter().zip(&want) {
            assert_bits(&format!("groups, {case:?}"), g.as_f32().unwrap(), w);
        }
    }
}

#[test]
fn l2_normalize_is_the_kernel_and_survives_extreme_magnitudes() {
    let set = kiln::kernels::best();
    let v: Vec<f32> = (0..384)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect();
    let mut a = v.clone();
    kiln::l2_normalize(&mut a);
    let mut b = v.clone();
    set.l2_normalize()(&mut b);
    assert_bits("kiln::l2_normalize vs the kernel", &a, &b);
    // Scaled by powers of two far outside f32's comfortable range for a
    // sum of squares, the direction (so the result) is the same.
    for scale in [
        2f32.powi(-120),
        2f32.powi(-70),
        2f32.powi(70),
        2f32.powi(120),
    ] {
        let mut s: Vec<f32> = v.iter().map(|x| x * scale).collect();
        kiln::l2_normalize(&mut s);
        assert_bits(&format!("scaled by {scale:e}"), &s, &a);
    }
}
