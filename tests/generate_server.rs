//! `kiln serve` with Gemma-3-270M (skipped when the model is not cached):
//! OpenAI's completions and chat completions, whole and streamed (SSE),
//! against the library's output.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::server::{TestServer, agent, post_raw};
use kiln::server::generation::{GenConfig, router};
use kiln::{ChatMessage, GenerateOptions, Generator, SamplingOptions};
use serde_json::{Value, json};

/// Log lines the servers wrote.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Tests run one at a time: the timing checks must not share the CPU.
fn exclusive() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

/// The generator shared by every server of the file.
fn generator() -> Option<&'static Arc<Generator>> {
    static G: OnceLock<Option<Arc<Generator>>> = OnceLock::new();
    G.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init();
        common::generator("gemma3-270m", 256).map(Arc::new)
    })
    .as_ref()
}

/// Serves `config` on a free loopback port, with kiln's connection limits.
fn serve(g: &Arc<Generator>, config: GenConfig) -> TestServer {
    let limits = config.connections;
    TestServer::router(router(g.clone(), config), limits)
}

/// One server for most of the file (kept in a static, so it runs until
/// the test binary exits).
fn server() -> Option<(&'static str, &'static Arc<Generator>)> {
    static S: OnceLock<TestServer> = OnceLock::new();
    let g = generator()?;
    let s = S.get_or_init(|| {
        let mut config = GenConfig::new("gemma3-270m");
        config.max_concurrent = 2;
        serve(g, config)
    });
    Some((s.base.as_str(), g))
}

/// A server with an API key, one generation at a time and one waiting.
fn keyed() -> Option<&'static str> {
    static S: OnceLock<TestServer> = OnceLock::new();
    let g = generator()?;
    let s = S.get_or_init(|| {
        let mut config = GenConfig::new("gemma3-270m");
        config.max_concurrent = 1;
        config.max_waiting = 1;
        config.api_key = Some("k3y".into());
        serve(g, config)
    });
    Some(s.base.as_str())
}

fn call(method: &str, url: &str, key: Option<&str>, body: Option<&Value>) -> (u16, String) {
    let agent = agent();
    let auth = key.map(|k| format!("bearer {k}"));
    let mut resp = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
        (_, b) => {
            let mut r = agent.post(url).header("content-type", "application/json");
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.send(b.map_or(String::new(), Value::to_string))
        }
    }
    .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

/// Sends a raw request; returns the open socket.
fn send_raw(base: &str, path: &str, body: &Value, key: Option<&str>) -> std::net::TcpStream {
    let mut sock = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = body.to_string();
    let auth = key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    write!(
        sock,
        "POST {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    sock
}

/// Reads from `sock` until `needle` has arrived.
fn read_until(sock: &mut std::net::TcpStream, needle: &str) -> String {
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains(needle) {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    got
}

fn post(url: &str, body: &Value) -> (u16, String) {
    post_raw(url, &body.to_string(), None)
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
    let _one = exclusive();
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
    let _one = exclusive();
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
    let _one = exclusive();
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

#[test]
fn out_of_range_sampling_values_get_400() {
    let _one = exclusive();
    let Some((base, _)) = server() else { return };
    for (field, value) in [
        ("min_p", json!(-0.1)),
        ("min_p", json!(1.5)),
        ("repetition_penalty", json!(0)),
        ("repetition_penalty", json!(-1.0)),
    ] {
        let mut req = json!({"prompt": "x", "max_tokens": 1});
        req[field] = value.clone();
        let (status, body) = post(&format!("{base}/v1/completions"), &req);
        assert_eq!(status, 400, "{field}={value}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["param"], field, "{body}");
    }
}

#[test]
fn the_key_guards_every_route_but_health() {
    let _one = exclusive();
    let Some(base) = keyed() else { return };
    assert_eq!(call("GET", &format!("{base}/health"), None, None).0, 200);
    for path in ["/info", "/v1/models"] {
        let (status, body) = call("GET", &format!("{base}{path}"), None, None);
        assert_eq!(status, 401, "{path}: {body}");
        let (status, body) = call("GET", &format!("{base}{path}"), Some("wrong"), None);
        assert_eq!(status, 401, "{path}: {body}");
        // A lowercase scheme is accepted (RFC 7235).
        let (status, body) = call("GET", &format!("{base}{path}"), Some("k3y"), None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let req = json!({"prompt": "x", "max_tokens": 1});
    let url = format!("{base}/v1/completions");
    assert_eq!(call("POST", &url, None, Some(&req)).0, 401);
    assert_eq!(call("POST", &url, Some("k3y"), Some(&req)).0, 200);
    // /info shows no earlier caller's metrics.
    let (_, info) = call("GET", &format!("{base}/info"), Some("k3y"), None);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert!(info.get("last_call").is_none(), "{info}");
    // 405 has the OpenAI error shape.
    let (status, body) = call("GET", &url, Some("k3y"), None);
    assert_eq!(status, 405, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[test]
fn waiting_generations_are_bounded_and_every_request_is_logged() {
    let _one = exclusive();
    let Some(base) = keyed() else { return };
    // One generation runs (a stream held open), one waits, the next gets 429.
    let long =
        json!({"prompt": "Count: one, two,", "max_tokens": 200, "stream": true, "temperature": 0});
    let mut running = send_raw(base, "/v1/completions", &long, Some("k3y"));
    let first = read_until(&mut running, "data:");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let waiting = {
        let url = format!("{base}/v1/completions");
        std::thread::spawn(move || {
            call(
                "POST",
                &url,
                Some("k3y"),
                Some(&json!({"prompt": "x", "max_tokens": 1})),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = call(
        "POST",
        &format!("{base}/v1/completions"),
        Some("k3y"),
        Some(&json!({"prompt": "x", "max_tokens": 1})),
    );
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("generations waiting"), "{body}");
    // Abandoning the stream frees the slot for the waiting request.
    drop(running);
    let (status, body) = waiting.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let log = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
    assert!(
        log.lines()
            .any(|l| l.contains("route=\"/v1/completions\"") && l.contains("status=429")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("route=\"/v1/completions\"") && l.contains("status=200")),
        "{log}"
    );
}

#[test]
fn abandoned_prefills_do_not_delay_the_next_request() {
    let _one = exclusive();
    let Some(base) = keyed() else { return };
    let url = format!("{base}/v1/completions");
    let long = json!({"prompt": "word ".repeat(240), "max_tokens": 1});
    let tiny = json!({"prompt": "x", "max_tokens": 1});
    // How long one long prompt takes when its client waits for it.
    let t = Instant::now();
    assert_eq!(call("POST", &url, Some("k3y"), Some(&long)).0, 200);
    let full = t.elapsed();
    // Six clients send the long prompt and leave at once. One runs, one
    // waits (the rest get 429): without cancellation the next request
    // would wait for about two whole prefills.
    for _ in 0..6 {
        let sock = send_raw(base, "/v1/completions", &long, Some("k3y"));
        std::thread::sleep(Duration::from_millis(30));
        drop(sock);
    }
    let t = Instant::now();
    let (status, body) = call("POST", &url, Some("k3y"), Some(&tiny));
    let next = t.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        next < full.max(Duration::from_millis(200)),
        "the next request took {next:?}; one long prefill takes {full:?}"
    );
}

#[test]
fn a_cancellable_generation_equals_the_library() {
    let _one = exclusive();
    let Some(g) = generator() else { return };
    // The server feeds long prompts in chunks so that it can stop between
    // them; the text must not change.
    let prompt = "The history of the river valley, told year by year: ".repeat(12);
    let opts = GenerateOptions::greedy(8);
    let want = g.generate_text(&prompt, &opts).unwrap();
    let got = g
        .generate(&prompt, &opts)
        .cancel_when(|| false)
        .text()
        .unwrap();
    assert_eq!(got, want);
    assert!(
        g.generate(&prompt, &opts)
            .cancel_when(|| true)
            .text()
            .unwrap()
            .is_empty()
    );
}

/// Continuous batching: requests that arrive at different times, with
/// different lengths, join and leave the batch while others decode, and
/// each gets exactly the library's lone output (greedy and seeded).
#[test]
fn concurrent_requests_each_get_their_lone_output() {
    let _one = exclusive();
    let Some((base, g)) = server() else { return };
    let cases: Vec<(String, usize, f32)> = vec![
        ("The capital of France is".into(), 24, 0.0),
        ("Once upon a time".into(), 6, 0.0),
        ("def add(a, b):".into(), 16, 0.7),
        ("List three colors:".into(), 10, 0.0),
        ("The German word for house is".into(), 20, 0.9),
    ];
    let url = format!("{base}/v1/completions");
    std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .enumerate()
            .map(|(i, (prompt, n, temp))| {
                let url = url.clone();
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(40 * i as u64));
                    let req =
                        json!({"prompt": prompt, "max_tokens": n, "temperature": temp, "seed": 5});
                    post(&url, &req)
                })
            })
            .collect();
        for ((prompt, n, temp), h) in cases.iter().zip(handles) {
            let (status, body) = h.join().unwrap();
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let opts = GenerateOptions {
                max_tokens: *n,
                sampling: SamplingOptions {
                    temperature: *temp,
                    seed: 5,
                    top_k: 0,
                    top_p: 1.0,
                    min_p: 0.0,
                    ..SamplingOptions::default()
                },
                ..Default::default()
            };
            let want = g.generate_text(prompt, &opts).unwrap();
            assert_eq!(v["choices"][0]["text"], want.as_str(), "{prompt}");
        }
    });
}

#[test]
fn metrics_report_the_batch_and_the_generations() {
    let _one = exclusive();
    let Some((base, _)) = server() else { return };
    let req = json!({"prompt": "Hello", "max_tokens": 3, "temperature": 0});
    assert_eq!(post(&format!("{base}/v1/completions"), &req).0, 200);
    let (status, body) = call("GET", &format!("{base}/metrics"), None, None);
    assert_eq!(status, 200, "{body}");
    let value = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing: {body}"))
            .parse()
            .unwrap()
    };
    assert!(value("kiln_generations_total") >= 1.0);
    assert!(value("kiln_generated_tokens_total") >= 3.0);
    assert!(value("kiln_generations_active") <= 2.0 && value("kiln_generations_waiting") >= 0.0);
    assert!(value("kiln_time_to_first_token_seconds_count") >= 1.0);
    assert!(value("kiln_generation_queue_seconds_count") >= 1.0);
}

/// A long prompt joins in 64-token chunks between the running streams'
/// steps; its output is the library's for the same chunking.
#[test]
fn a_long_prompt_fed_in_chunks_between_steps_gives_the_librarys_output() {
    let _one = exclusive();
    let Some((base, g)) = server() else { return };
    let long = "The history of the river valley, told year by year: ".repeat(12);
    let want = g
        .generate(&long, &GenerateOptions::greedy(12))
        .cancel_when(|| false)
        .text()
        .unwrap();
    let url = format!("{base}/v1/completions");
    std::thread::scope(|s| {
        let other = s.spawn(|| {
            post(
                &url,
                &json!({"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0}),
            )
        });
        std::thread::sleep(Duration::from_millis(50));
        let (status, body) = post(
            &url,
            &json!({"prompt": long, "max_tokens": 12, "temperature": 0}),
        );
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["choices"][0]["text"], want.as_str());
        assert_eq!(other.join().unwrap().0, 200);
    });
}
