//! Chunked embedding of long documents: late chunking against a direct
//! computation from the model's token states, through the library and
//! through `/embed`, on a 20,000-token document; naive chunking against
//! embedding each chunk's text.

#![cfg(feature = "server")]

mod common;

use std::sync::Arc;

use common::server::{TestServer, floats, post_raw};
use kiln::{CallOptions, ChunkMode, ChunkOptions, Embedder};
use serde_json::{Value, json};

fn minilm() -> Arc<Embedder> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf");
    Arc::new(Embedder::builder().threads(2).open(path).unwrap())
}

/// A long document of varied sentences and lines.
fn document(sentences: usize) -> String {
    let words = [
        "kiln",
        "embeds",
        "long",
        "documents",
        "in",
        "windows",
        "retrieval",
        "needs",
        "context",
        "every",
        "chunk",
        "keeps",
        "its",
        "neighbours",
        "meaning",
    ];
    let mut s = String::new();
    for i in 0..sentences {
        for j in 0..(5 + i % 7) {
            s.push_str(words[(i * 7 + j * 3) % words.len()]);
            s.push(' ');
        }
        s.push_str(if i % 5 == 4 { "end.\n" } else { "end. " });
    }
    s
}

/// Mean of rows `span` of `states` (`d` wide), L2-normalized.
fn mean_normalized(states: &[f32], d: usize, span: std::ops::Range<usize>) -> Vec<f32> {
    let mut v = vec![0f64; d];
    for row in span.clone() {
        for (a, x) in v.iter_mut().zip(&states[row * d..(row + 1) * d]) {
            *a += f64::from(*x);
        }
    }
    let n = span.len() as f64;
    let norm = v.iter().map(|x| (x / n) * (x / n)).sum::<f64>().sqrt();
    v.iter().map(|x| (x / n / norm) as f32).collect()
}

/// Checks each chunk (`window` and `tokens` as the API reports them,
/// vectors normalized) against the mean of the token states of its tokens,
/// computed here from one forward pass over `[CLS] window [SEP]`.
fn check_against_token_states(
    e: &Embedder,
    body: &[u32],
    chunks: &[(Vec<usize>, Vec<usize>, Vec<f32>)],
) {
    let tok = e.tokenizer();
    let (cls, sep) = (tok.start_token().unwrap(), tok.end_token().unwrap());
    let d = e.dim();
    let mut last_window: Option<(Vec<usize>, Vec<f32>)> = None;
    for (i, (window, tokens, got)) in chunks.iter().enumerate() {
        assert!(
            window[0] <= tokens[0] && tokens[1] <= window[1],
            "chunk {i}"
        );
        assert!(window[1] - window[0] + 2 <= e.max_tokens(), "chunk {i}");
        if last_window.as_ref().is_none_or(|(w, _)| w != window) {
            let mut ids = vec![cls];
            ids.extend_from_slice(&body[window[0]..window[1]]);
            ids.push(sep);
            last_window = Some((window.clone(), e.token_states(&ids).unwrap()));
        }
        let states = &last_window.as_ref().unwrap().1;
        let span = 1 + tokens[0] - window[0]..1 + tokens[1] - window[0];
        let want = mean_normalized(states, d, span);
        let cos = common::cosine(got, &want);
        assert!(cos >= 0.99999, "chunk {i}: cosine {cos}");
    }
}

#[test]
fn late_chunks_equal_pooled_token_states_in_the_library() {
    let e = minilm();
    let text = document(400);
    let body = e
        .tokenize_unlimited(
            &text,
            &CallOptions {
                add_special: Some(false),
                ..CallOptions::default()
            },
        )
        .unwrap();
    assert!(body.len() > 2 * e.max_tokens(), "needs several windows");
    let opts = ChunkOptions {
        size: 100,
        overlap: 20,
        boundary: kiln::Boundary::Sentence,
        ..ChunkOptions::default()
    };
    let chunks = e
        .embed_chunks(&text, &opts, &CallOptions::default())
        .unwrap();
    assert_eq!(chunks.last().unwrap().tokens.end, body.len());
    let chars = text.chars().count();
    for c in &chunks {
        assert!(c.tokens.len() <= 100);
        assert!(c.chars.end <= chars);
        // Sentence boundaries: a chunk ends a sentence unless the document
        // offered none in its second half.
        let piece: String = text
            .chars()
            .skip(c.chars.start)
            .take(c.chars.len())
            .collect();
        assert!(piece.ends_with("end."), "{piece:?}");
        assert_eq!(piece.trim(), piece);
    }
    let reported: Vec<(Vec<usize>, Vec<usize>, Vec<f32>)> = chunks
        .iter()
        .map(|c| {
            (
                vec![c.window.start, c.window.end],
                vec![c.tokens.start, c.tokens.end],
                c.embedding.clone(),
            )
        })
        .collect();
    check_against_token_states(&e, &body, &reported);

    // Naive: each chunk's text embedded alone.
    let naive = e
        .embed_chunks(
            &text,
            &ChunkOptions {
                mode: ChunkMode::Naive,
                ..opts
            },
            &CallOptions::default(),
        )
        .unwrap();
    assert_eq!(naive.len(), chunks.len());
    for c in naive.iter().take(5) {
        let piece: String = text
            .chars()
            .skip(c.chars.start)
            .take(c.chars.len())
            .collect();
        assert_eq!(c.embedding, e.embed(&piece).unwrap());
    }

    // Caller spans, and their checks.
    let spans = ChunkOptions {
        spans: Some(vec![0..3, 4..30, 10..chars]),
        ..ChunkOptions::default()
    };
    let got = e
        .embed_chunks(&text, &spans, &CallOptions::default())
        .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].chars, 4..30);
    for bad in [3..3, 0..chars + 1].map(|r| std::iter::once(r).collect::<Vec<_>>()) {
        let err = e
            .embed_chunks(
                &text,
                &ChunkOptions {
                    spans: Some(bad),
                    ..ChunkOptions::default()
                },
                &CallOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, kiln::Error::BadChunkSpan { .. }), "{err}");
    }
}

#[test]
fn a_20000_token_document_through_embed_with_late_chunking() {
    let e = minilm();
    let server = TestServer::embedding(e.clone(), "minilm", |_| {});
    let mut text = document(2600);
    let body = loop {
        let b = e
            .tokenize_unlimited(
                &text,
                &CallOptions {
                    add_special: Some(false),
                    ..CallOptions::default()
                },
            )
            .unwrap();
        if b.len() >= 20_000 {
            break b;
        }
        text.push_str(&document(200));
    };
    let url = server.url("/embed");
    let (status, resp) = post_raw(
        &url,
        &json!({"inputs": text, "chunking": {"mode": "late", "size": 256, "overlap": 32}})
            .to_string(),
        None,
    );
    assert_eq!(status, 200, "{}", &resp[..resp.len().min(300)]);
    let resp: Value = serde_json::from_str(&resp).unwrap();
    let chunks = resp[0].as_array().unwrap();
    assert!(chunks.len() > 80, "{}", chunks.len());
    let pair = |v: &Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    let reported: Vec<(Vec<usize>, Vec<usize>, Vec<f32>)> = chunks
        .iter()
        .map(|c| {
            (
                pair(&c["window"]),
                pair(&c["tokens"]),
                floats(&c["embedding"]),
            )
        })
        .collect();
    assert_eq!(reported.last().unwrap().1[1], body.len());
    check_against_token_states(&e, &body, &reported);

    // The same document without chunking or truncation: 413 naming the limit.
    let (status, resp) = post_raw(&url, &json!({"inputs": text}).to_string(), None);
    assert_eq!(status, 413, "{resp}");
    assert!(resp.contains("more than the limit of 512"), "{resp}");
    // A bad chunking option: 422 naming it.
    let (status, resp) = post_raw(
        &url,
        &json!({"inputs": "a b", "chunking": {"size": 8, "overlap": 8}}).to_string(),
        None,
    );
    assert_eq!(status, 422, "{resp}");
    assert!(resp.contains("overlap"), "{resp}");
}

/// EmbeddingGemma (mean pooling, then dense projections): a span over a
/// whole input gives the input's own embedding (the span path runs the
/// same pooling, projections, width and normalization), and chunks are
/// the spans of the document framed by its prompt and special tokens.
#[test]
fn late_chunks_on_embeddinggemma_go_through_its_projections() {
    let Some(path) = common::cached_model("embeddinggemma") else {
        return;
    };
    let e = Embedder::builder().threads(2).open(path).unwrap();
    let text = document(30);
    for (task, dim) in [(None, None), (Some("document"), Some(128))] {
        let call = CallOptions {
            task: task.map(str::to_owned),
            dim,
            ..CallOptions::default()
        };
        let ids = e.tokenize_with(&text, &call).unwrap();
        let all = 0..ids.len();
        let whole = e
            .embed_token_spans(&ids, std::slice::from_ref(&all), &call)
            .unwrap();
        let want = e.embed_with(&text, &call).unwrap();
        assert_eq!(whole[0].len(), want.len());
        let cos = common::cosine(&whole[0], &want);
        assert!(cos >= 0.99999, "{task:?}: cosine {cos}");

        let chunks = e
            .embed_chunks(
                &text,
                &ChunkOptions {
                    size: 64,
                    overlap: 8,
                    ..ChunkOptions::default()
                },
                &call,
            )
            .unwrap();
        assert!(chunks.len() > 3);
        // The document's tokens, as a whole, are the chunks' tokens.
        let plain = CallOptions {
            add_special: Some(false),
            ..CallOptions::default()
        };
        let body = e.tokenize_unlimited(&text, &plain).unwrap();
        let n_body = chunks.last().unwrap().tokens.end;
        let head = ids.len() - n_body - 1;
        if task.is_none() {
            assert_eq!(n_body, body.len());
            assert_eq!(ids[head..ids.len() - 1], body[..]);
        }
        let spans: Vec<_> = chunks
            .iter()
            .map(|c| head + c.tokens.start..head + c.tokens.end)
            .collect();
        let direct = e.embed_token_spans(&ids, &spans, &call).unwrap();
        for (i, (c, d)) in chunks.iter().zip(&direct).enumerate() {
            let cos = common::cosine(&c.embedding, d);
            assert!(cos >= 0.99999, "{task:?} chunk {i}: cosine {cos}");
        }
    }
}

/// `/v1/embeddings` takes `/embed`'s `chunking`: one OpenAI entry per
/// chunk, numbered over all inputs, with the same spans and vectors (also
/// as base64, the `openai` client's default).
#[test]
fn openai_embeddings_take_the_same_chunking() {
    let server = TestServer::embedding(minilm(), "minilm", |_| {});
    let docs = [document(40), document(25)];
    let chunking = json!({"mode": "late", "size": 64, "overlap": 8});
    let post = |path: &str, body: Value| -> Value {
        let (status, resp) = post_raw(&server.url(path), &body.to_string(), None);
        assert_eq!(status, 200, "{}", &resp[..resp.len().min(300)]);
        serde_json::from_str(&resp).unwrap()
    };
    let tei = post("/embed", json!({"inputs": docs, "chunking": chunking}));
    let want: Vec<(usize, &Value)> = tei
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .flat_map(|(i, chunks)| chunks.as_array().unwrap().iter().map(move |c| (i, c)))
        .collect();
    assert!(want.len() > 4 && want.iter().any(|(i, _)| *i == 1));
    let openai = post(
        "/v1/embeddings",
        json!({"input": docs, "chunking": chunking, "encoding_format": "float"}),
    );
    let data = openai["data"].as_array().unwrap();
    assert_eq!(data.len(), want.len());
    let tokens: u64 = tei
        .as_array()
        .unwrap()
        .iter()
        .map(|chunks| {
            chunks.as_array().unwrap().last().unwrap()["tokens"][1]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(openai["usage"]["prompt_tokens"].as_u64(), Some(tokens));
    for (k, (d, (i, c))) in data.iter().zip(&want).enumerate() {
        assert_eq!(d["index"].as_u64(), Some(k as u64));
        assert_eq!(d["input_index"].as_u64(), Some(*i as u64));
        for key in ["start", "end", "tokens", "window"] {
            assert_eq!(d[key], c[key], "{key} of chunk {k}");
        }
        assert_eq!(
            floats(&d["embedding"]),
            floats(&c["embedding"]),
            "chunk {k}"
        );
    }
    let b64 = post(
        "/v1/embeddings",
        json!({"input": docs[0], "chunking": chunking, "encoding_format": "base64"}),
    );
    let first = b64["data"][0]["embedding"].as_str().unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(first)
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(decoded, floats(&want[0].1["embedding"]));
}
