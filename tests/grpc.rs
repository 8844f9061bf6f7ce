//! TEI's gRPC API through tonic's client: two models behind one gRPC
//! listener (MiniLM under two ids with different limits), picked by the
//! `model` metadata key; vectors equal the library's; limits, API key and
//! unknown models answer with their gRPC codes.

#![cfg(feature = "grpc")]

mod common;

use std::sync::Arc;

use common::server::TestServer;
use kiln::Embedder;
use kiln::server::grpc::pb;
use kiln::server::multi::{MultiConfig, MultiServer, Served, ServedModel};
use kiln::server::{Config, Server};
use tonic::Code;
use tonic::transport::Channel;

const KEY: &str = "grpc-test-key";

/// A request with the API key and, if given, a `model`.
fn req<T>(msg: T, model: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let md = r.metadata_mut();
    md.insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    if let Some(m) = model {
        md.insert("model", m.parse().unwrap());
    }
    r
}

fn embed_req(text: &str) -> pb::EmbedRequest {
    pb::EmbedRequest {
        inputs: text.to_owned(),
        normalize: true,
        ..pb::EmbedRequest::default()
    }
}

#[test]
fn grpc_serves_two_models_picked_by_metadata() {
    let embedder = Arc::new(
        Embedder::builder()
            .threads(2)
            .open(common::fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf"))
            .unwrap(),
    );
    let server = |id: &str, max_input: Option<usize>| {
        let mut c = Config::new(id, &embedder);
        if let Some(n) = max_input {
            c.max_input_tokens = n;
        }
        ServedModel {
            served: Served::Embedder(Server::new(embedder.clone(), c).unwrap()),
            aliases: vec![],
        }
    };
    let multi = MultiServer::new(
        vec![server("minilm", None), server("minilm-short", Some(16))],
        MultiConfig {
            api_key: Some(KEY.into()),
            ..MultiConfig::default()
        },
    )
    .unwrap();
    let grpc = multi.grpc();
    let served =
        TestServer::spawn(move |listener, stop| async move { grpc.serve(listener, stop).await });
    let base = served.base.clone();

    let texts: Vec<String> = (0..20)
        .map(|i| format!("sentence number {i} about gRPC and vectors"))
        .collect();
    let want: Vec<Vec<f32>> = texts.iter().map(|t| embedder.embed(t).unwrap()).collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = Channel::from_shared(base).unwrap().connect().await.unwrap();
        let mut embed = pb::embed_client::EmbedClient::new(channel.clone());
        let mut info = pb::info_client::InfoClient::new(channel);

        // Without `model`: the first embedder, whose vectors are the library's.
        let r = embed
            .embed(req(embed_req(&texts[0]), None))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.embeddings, want[0]);

        // A stream, answered in order.
        let msgs: Vec<pb::EmbedRequest> = texts.iter().map(|t| embed_req(t)).collect();
        let mut replies = embed
            .embed_stream(req(tokio_stream_iter(msgs), Some("minilm")))
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while let Some(r) = replies.message().await.unwrap() {
            got.push(r.embeddings);
        }
        assert_eq!(got, want);

        // `model` picks each model's own limits.
        let long = info
            .info(req(pb::InfoRequest {}, Some("minilm")))
            .await
            .unwrap()
            .into_inner();
        let short = info
            .info(req(pb::InfoRequest {}, Some("minilm-short")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (long.model_id.as_str(), long.max_input_length),
            ("minilm", 512)
        );
        assert_eq!(
            (short.model_id.as_str(), short.max_input_length),
            ("minilm-short", 16)
        );
        let long_text = "word ".repeat(40);
        assert!(
            embed
                .embed(req(embed_req(&long_text), Some("minilm")))
                .await
                .is_ok()
        );
        let e = embed
            .embed(req(embed_req(&long_text), Some("minilm-short")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.message().contains("limit of 16"), "{e}");
        let cut = embed
            .embed(req(
                pb::EmbedRequest {
                    truncate: true,
                    ..embed_req(&long_text)
                },
                Some("minilm-short"),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cut.metadata.unwrap().compute_tokens, 16);

        let e = embed
            .embed(req(embed_req("x"), Some("nope")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e}");
        assert!(
            e.message().contains("minilm-short") && e.message().contains("minilm (embedding)"),
            "{e}"
        );

        let e = embed
            .embed(tonic::Request::new(embed_req("x")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    });
}

/// The messages as a client stream.
fn tokio_stream_iter<T: Send + 'static>(
    items: Vec<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::iter(items)
}
