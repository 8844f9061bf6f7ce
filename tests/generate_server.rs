//! `kiln serve` with Gemma-3-270M (skipped when the model is not cached):
//! OpenAI's completions and chat completions, whole and streamed (SSE),
//! against the library's output.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kiln::server::generation::{GenConfig, router};
use kiln::{ChatMessage, GenerateOptions, Generator};
use serde_json::{Value, json};

/// One server for the whole file, on a free loopback port.
fn server() -> Option<&'static (String, Arc<Generator>)> {
    static S: OnceLock<Option<(String, Arc<Generator>)>> = OnceLock::new();
    S.get_or_init(|| {
        let path = common::cached_model("gemma3-270m")?;
        let g = Arc::new(
            Generator::builder()
                .threads(2)
                .context(256)
                .open(path)
                .unwrap(),
        );
        let mut config = GenConfig::new("gemma3-270m");
        config.max_concurrent = 2;
        let app = router(g.clone(), config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            rt.block_on(async { axum::serve(listener, app).await.unwrap() })
        });
        Some((base, g))
    })
    .as_ref()
}

fn post(url: &str, body: &Value) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut resp = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_owned)
        .collect()
}

const PROMPT: &str = "The three primary colors are";

#[test]
fn completion_whole_and_streamed_equal_the_library() {
    let Some((base, g)) = server() else { return };
    let want = g
        .generate_text(PROMPT, &GenerateOptions::greedy(8))
        .unwrap();
    let req = json!({"model": "gemma3-270m", "prompt": PROMPT, "max_tokens": 8, "temperature": 0});
    let (status, body) = post(&format!("{base}/v1/completions"), &req);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], want.as_str());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    assert_eq!(v["usage"]["completion_tokens"], 8);

    let mut req = req;
    req["stream"] = json!(true);
    let (status, body) = post(&format!("{base}/v1/completions"), &req);
    assert_eq!(status, 200, "{body}");
    let ev = events(&body);
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, want);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}

#[test]
fn chat_completion_stream_and_stop() {
    let Some((base, g)) = server() else { return };
    let msgs = [ChatMessage::new("user", "Name a color.")];
    let want = g.chat(&msgs, &GenerateOptions::greedy(6)).text().unwrap();
    let req = json!({
        "messages": [{"role": "user", "content": "Name a color."}],
        "max_tokens": 6, "temperature": 0, "stream": true,
    });
    let (status, body) = post(&format!("{base}/v1/chat/completions"), &req);
    assert_eq!(status, 200, "{body}");
    let ev = events(&body);
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, want);

    // A stop string cuts the whole answer exactly: before its first
    // occurrence in the library's greedy text.
    let full = g
        .generate_text(PROMPT, &GenerateOptions::greedy(12))
        .unwrap();
    let stop = "and";
    let cut = full
        .find(stop)
        .expect("the continuation names three colors");
    let req = json!({"prompt": PROMPT, "max_tokens": 12, "temperature": 0, "stop": [stop]});
    let (status, body) = post(&format!("{base}/v1/completions"), &req);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["text"], &full[..cut]);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[test]
fn errors_in_openai_shape() {
    let Some((base, _)) = server() else { return };
    let long = "word ".repeat(400);
    for stream in [false, true] {
        let req = json!({"prompt": long, "max_tokens": 4, "stream": stream});
        let (status, body) = post(&format!("{base}/v1/completions"), &req);
        assert_eq!(status, 413, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "context_length_exceeded");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("context of 256")
        );
    }
    let (status, body) = post(
        &format!("{base}/v1/chat/completions"),
        &json!({"messages": []}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(
        &format!("{base}/v1/completions"),
        &json!({"prompt": "x", "temperature": 9}),
    );
    assert_eq!(status, 400);
}
