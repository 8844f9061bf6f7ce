//! One `kiln serve` with several models (skipped when the models are not
//! cached): EmbeddingGemma, MiniLM and Gemma-3-270M on one port, each
//! request routed by its `model` field; vectors and text equal the
//! library's for the same model; a config file gives ids, aliases and
//! per-model limits.

#![cfg(feature = "server")]

mod common;

use common::server::{KilnServe, agent, floats, post_raw};
use kiln::{CallOptions, ChatMessage, Embedder, GenerateOptions, Generator};
use serde_json::{Value, json};

fn post(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = post_raw(&format!("http://{addr}{path}"), &body.to_string(), None);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut resp = agent().get(&format!("http://{addr}{path}")).call().unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

const TEXT: &str = "Retrieval needs an embedder for queries and documents.";

#[test]
fn three_models_on_one_port() {
    let (Some(gemma), Some(minilm), Some(decoder)) = (
        common::cached_model("embeddinggemma"),
        common::cached_model("minilm"),
        common::cached_model("gemma3-270m"),
    ) else {
        return;
    };
    let served = KilnServe::start(&[
        "-m",
        "embeddinggemma",
        "-m",
        "minilm",
        "-m",
        "gemma3-270m",
        "--port",
        "0",
        "-t",
        "2",
        "--ctx",
        "256",
    ]);
    let addr = served.addr.as_str();

    let (status, models) = get(addr, "/v1/models");
    assert_eq!(status, 200, "{models}");
    let models: Value = serde_json::from_str(&models).unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["embeddinggemma", "minilm", "gemma3-270m"]);
    assert_eq!(models["data"][2]["kind"], "text-generation");

    // Each embedder's vectors are the library's (`kiln embed`'s) for it.
    for (id, path) in [("embeddinggemma", &gemma), ("minilm", &minilm)] {
        let lib = Embedder::builder().threads(2).open(path).unwrap();
        let want = lib.embed(TEXT).unwrap();
        let (status, body) = post(addr, "/v1/embeddings", &json!({"input": TEXT, "model": id}));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["model"], id);
        assert_eq!(floats(&body["data"][0]["embedding"]), want, "{id}");
        let (status, body) = post(addr, "/embed", &json!({"inputs": TEXT, "model": id}));
        assert_eq!(status, 200, "{body}");
        assert_eq!(floats(&body[0]), want, "{id} /embed");
        if id == "embeddinggemma" {
            // Without `model`: the first embedder.
            let (_, body) = post(addr, "/embed", &json!({"inputs": TEXT}));
            assert_eq!(floats(&body[0]), want);
        }
        let (status, info) = get(addr, &format!("/info?model={id}"));
        assert_eq!(status, 200, "{info}");
        let info: Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["model_id"], id);
        assert_eq!(info["dim"], lib.dim());
    }

    // The decoder answers chat completions as the library does.
    let g: Generator = Generator::builder()
        .threads(2)
        .context(256)
        .open(&decoder)
        .unwrap();
    let msgs = [ChatMessage::new("user", "Name a color.")];
    let want = g.chat(&msgs, &GenerateOptions::greedy(6)).text().unwrap();
    for model in [None, Some("gemma3-270m")] {
        let mut req = json!({
            "messages": [{"role": "user", "content": "Name a color."}],
            "max_tokens": 6, "temperature": 0,
        });
        if let Some(m) = model {
            req["model"] = json!(m);
        }
        let (status, body) = post(addr, "/v1/chat/completions", &req);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["model"], "gemma3-270m");
        assert_eq!(body["choices"][0]["message"]["content"], want.as_str());
    }

    // An unknown model: 404 naming every model served; a model of the
    // wrong kind: 400.
    let (status, body) = post(
        addr,
        "/v1/embeddings",
        &json!({"input": TEXT, "model": "text-embedding-3-small"}),
    );
    assert_eq!(status, 404, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    for id in [
        "embeddinggemma",
        "minilm",
        "gemma3-270m",
        "text-embedding-3-small",
    ] {
        assert!(msg.contains(id), "{msg}");
    }
    assert_eq!(body["error"]["param"], "model");
    let (status, body) = post(addr, "/embed", &json!({"inputs": TEXT, "model": "nope"}));
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("minilm"), "{body}");
    let (status, body) = post(
        addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}], "model": "minilm"}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("text-generation"),
        "{body}"
    );

    // Each model's figures under its own label, each family declared once.
    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("kiln_inputs_total{model=\"minilm\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kiln_inputs_total{model=\"embeddinggemma\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kiln_generations_total{model=\"gemma3-270m\"} 2\n"),
        "{metrics}"
    );
    assert_eq!(
        metrics.matches("# TYPE kiln_inputs_total ").count(),
        1,
        "{metrics}"
    );
    let (status, health) = get(addr, "/health");
    assert_eq!(status, 200, "{health}");
}

/// `--config`: ids, aliases and limits per model. The same file served
/// twice, one copy cutting long inputs by default and one refusing them.
#[test]
fn a_config_file_names_models_and_sets_their_limits() {
    let Some(minilm) = common::cached_model("minilm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("models.toml");
    std::fs::write(
        &config,
        format!(
            "threads = 2\n\
             [[models]]\nmodel = {path:?}\nid = \"cutting\"\naliases = [\"text-embedding-3-small\"]\n\
             max_input_tokens = 16\nauto_truncate = true\n\
             [[models]]\nmodel = {path:?}\nid = \"strict\"\nmax_input_tokens = 16\nthreads = 1\n",
            path = minilm.display().to_string()
        ),
    )
    .unwrap();
    let served = KilnServe::start(&["--config", config.to_str().unwrap(), "--port", "0"]);
    let addr = served.addr.as_str();
    let long = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen";
    let lib = Embedder::builder().threads(2).open(&minilm).unwrap();
    let want = lib
        .embed_with(
            long,
            &CallOptions {
                truncate: Some(true),
                max_tokens: Some(16),
                ..CallOptions::default()
            },
        )
        .unwrap();
    // By alias: cut to 16 tokens.
    let (status, body) = post(
        addr,
        "/v1/embeddings",
        &json!({"input": long, "model": "text-embedding-3-small"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "cutting");
    assert_eq!(floats(&body["data"][0]["embedding"]), want);
    // The strict copy: 413 naming the limit, unless the request truncates.
    let (status, body) = post(addr, "/embed", &json!({"inputs": long, "model": "strict"}));
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("more than the limit of 16"),
        "{body}"
    );
    let (status, body) = post(
        addr,
        "/embed",
        &json!({"inputs": long, "model": "strict", "truncate": true}),
    );
    assert_eq!(status, 200, "{body}");
    let got = floats(&body[0]);
    assert!(
        common::cosine(&got, &want) > 0.99999,
        "one thread against two"
    );
    let (_, models) = get(addr, "/v1/models");
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(
        models["data"][0]["aliases"],
        json!(["text-embedding-3-small"])
    );
    assert_eq!(models["data"][1]["id"], "strict");
}
