//! text-embeddings-inference's gRPC API (package `tei.v1`, from
//! proto/tei.proto) on tonic, served on a port of its own beside the HTTP
//! routes.
//!
//! Every call runs the HTTP routes' code on the same models: the same
//! batching workers and queues, the same token limits and truncation
//! defaults, the same API key (metadata `authorization: Bearer KEY`). The
//! metadata key `model` picks one of several models (default: the first
//! embedder). Errors carry the HTTP routes' messages with gRPC codes:
//! INVALID_ARGUMENT for bad or over-long input (naming the limit),
//! RESOURCE_EXHAUSTED for a full queue, NOT_FOUND for an unknown model,
//! UNAUTHENTICATED for a missing or wrong key. The sparse, classifier and
//! reranker RPCs answer UNIMPLEMENTED.
//!
//! Proto3 cannot tell an unset `bool` from `false`, so `truncate: false`
//! means "the server's default" (`--auto-truncate`), and `Decode` always
//! leaves control tokens out whatever `skip_special_tokens` says.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status, Streaming};

use super::encoding::{Encoded, Encoding};
use super::error::{ApiError, Flavor, Kind};
use super::multi::MultiServer;
use super::routes::{self, Embedding, Inputs};
use super::{Server, bearer_token, key_matches};
use crate::TruncateDirection;
use crate::quantize::QuantRange;

/// The `tei.v1` messages, and the client and server stubs tonic generates
/// for its services.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("tei.v1");
}

use pb::embed_server::{Embed, EmbedServer};
use pb::info_server::{Info, InfoServer};
use pb::tokenize_server::{Tokenize, TokenizeServer};

/// The responses of a streaming call.
type Replies<T> = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;

/// Messages of one stream processed at once: each is a job in its model's
/// queue, so the batching worker merges them.
const STREAM_PARALLEL: usize = 64;

/// TEI's gRPC services over a server's embedders.
#[derive(Debug, Clone)]
pub struct GrpcServer {
    models: MultiServer,
}

impl GrpcServer {
    /// The gRPC services for the embedders of `models`, with its body limit
    /// (as the largest message) and API key.
    pub fn new(models: MultiServer) -> GrpcServer {
        GrpcServer { models }
    }

    /// Serves on `listener` (HTTP/2) until `shutdown` resolves and the
    /// calls in flight end. Leaves the models' workers running: whoever
    /// owns the HTTP side drains them.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let auth = Auth(self.models.config().api_key.as_deref().map(Arc::from));
        let limit = self.models.config().max_body_bytes;
        let tei = Tei {
            models: self.models.clone(),
        };
        let conn = self.models.config().connections;
        tonic::transport::Server::builder()
            // A peer that stops answering HTTP/2 pings (gone, or stalled on
            // purpose) is dropped within the HTTP side's header deadline;
            // one connection may not open streams without bound.
            .http2_keepalive_interval(Some(conn.idle_timeout / 2))
            .http2_keepalive_timeout(Some(conn.header_read_timeout))
            .max_concurrent_streams(Some(GRPC_MAX_STREAMS))
            .tcp_keepalive(Some(conn.idle_timeout))
            .add_service(InterceptedService::new(
                InfoServer::new(tei.clone()),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                EmbedServer::new(tei.clone()).max_decoding_message_size(limit),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                TokenizeServer::new(tei).max_decoding_message_size(limit),
                auth,
            ))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await
            .map_err(std::io::Error::other)
    }
}

/// Streams (calls in flight) one gRPC connection may hold open.
const GRPC_MAX_STREAMS: u32 = 256;

/// Requires `authorization: Bearer KEY` when the server has a key.
#[derive(Clone)]
struct Auth(Option<Arc<str>>);

impl Interceptor for Auth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(key) = &self.0 else {
            return Ok(req);
        };
        match req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
        {
            Some(given) if key_matches(given, key) => Ok(req),
            Some(_) => Err(Status::unauthenticated("invalid API key")),
            None => Err(Status::unauthenticated(
                "missing API key: send metadata `authorization: Bearer KEY`",
            )),
        }
    }
}

/// The gRPC code of an error the HTTP routes would answer with `e`.
fn status(e: ApiError) -> Status {
    let code = match e.kind {
        Kind::Syntax | Kind::Validation | Kind::Empty | Kind::TooLarge => Code::InvalidArgument,
        Kind::Overloaded => Code::ResourceExhausted,
        Kind::Unavailable => Code::Unavailable,
        Kind::Unauthorized => Code::Unauthenticated,
        Kind::NotFound => Code::NotFound,
        Kind::MethodNotAllowed => Code::Unimplemented,
        Kind::Timeout => Code::DeadlineExceeded,
        Kind::Backend => Code::Internal,
    };
    Status::new(code, e.message)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(Flavor::Tei, Kind::Validation, message)
}

/// The services' shared state: the models to pick from.
#[derive(Debug, Clone)]
struct Tei {
    models: MultiServer,
}

impl Tei {
    /// The embedder the call's `model` metadata names (default: the first).
    fn server(&self, metadata: &MetadataMap) -> Result<Server, Status> {
        let name = match metadata.get("model") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| Status::invalid_argument("metadata `model` is not ASCII text"))?,
            ),
        };
        self.models.embedder(name).map_err(status)
    }

    /// Runs one message of `method` on the model the metadata picks.
    async fn unary<Req, Res, F, Fut>(
        &self,
        method: &'static str,
        request: Request<Req>,
        work: F,
    ) -> Result<Response<Res>, Status>
    where
        F: FnOnce(Server, Req) -> Fut,
        Fut: Future<Output = Result<Res, ApiError>>,
    {
        let server = self.server(request.metadata())?;
        observed(&server, method, work(server.clone(), request.into_inner()))
            .await
            .map(Response::new)
    }

    /// Runs each message of a stream as `work` would alone, up to
    /// [`STREAM_PARALLEL`] at once, answering in order. The first error
    /// ends the stream with its status.
    fn stream<Req, Res, F, Fut>(
        &self,
        method: &'static str,
        request: Request<Streaming<Req>>,
        work: F,
    ) -> Result<Response<Replies<Res>>, Status>
    where
        Req: Send + 'static,
        Res: Send + 'static,
        F: Fn(Server, Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, ApiError>> + Send + 'static,
    {
        let server = self.server(request.metadata())?;
        let replies = request
            .into_inner()
            .map(move |msg| {
                let (server, work) = (server.clone(), work.clone());
                async move { observed(&server, method, work(server.clone(), msg?)).await }
            })
            .buffered(STREAM_PARALLEL);
        Ok(Response::new(Box::pin(replies)))
    }
}

/// Awaits `work`, counting it in the model's metrics under `method` with
/// the status its HTTP route would give, and logs it.
async fn observed<T>(
    server: &Server,
    method: &'static str,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, Status> {
    let start = Instant::now();
    let result = work.await;
    let secs = start.elapsed().as_secs_f64();
    let http = match &result {
        Ok(_) => 200,
        Err(e) => e.status().as_u16(),
    };
    server.state.metrics.request(method, http, secs);
    tracing::info!(method, status = http, ms = secs * 1e3, "grpc");
    result.map_err(status)
}

fn direction(value: i32) -> Result<TruncateDirection, ApiError> {
    match pb::TruncationDirection::try_from(value) {
        Ok(pb::TruncationDirection::Right) => Ok(TruncateDirection::Right),
        Ok(pb::TruncationDirection::Left) => Ok(TruncateDirection::Left),
        Err(_) => Err(invalid(format!(
            "truncation_direction {value} is neither RIGHT (0) nor LEFT (1)"
        ))),
    }
}

/// One text, refused when empty as `/embed` refuses `""`.
fn text(inputs: String) -> Result<String, ApiError> {
    if inputs.is_empty() {
        Err(ApiError::new(
            Flavor::Tei,
            Kind::Empty,
            "`inputs` is an empty string",
        ))
    } else {
        Ok(inputs)
    }
}

/// What TEI reports per call: kiln fills the characters, tokens and total
/// time; the time split is not tracked per call and stays 0.
fn metadata(chars: usize, tokens: usize, start: Instant) -> Option<pb::Metadata> {
    Some(pb::Metadata {
        compute_chars: u32::try_from(chars).unwrap_or(u32::MAX),
        compute_tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
        total_time_ns: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
        ..pb::Metadata::default()
    })
}

async fn embed_one(server: Server, r: pb::EmbedRequest) -> Result<pb::EmbedResponse, ApiError> {
    let start = Instant::now();
    let s = &server.state;
    let inputs = text(r.inputs)?;
    let chars = inputs.chars().count();
    let out = routes::embed(
        s,
        Embedding {
            flavor: Flavor::Tei,
            inputs: Inputs::Texts(vec![inputs]),
            dim: None,
            normalize: r.normalize,
            truncate: r.truncate || s.config.auto_truncate,
            direction: direction(r.truncation_direction)?,
            prompt_name: r.prompt_name,
            encoding: Encoding::Float,
            range: QuantRange::DEFAULT,
        },
    )
    .await?;
    let Some(Encoded::Float(embeddings)) = out.vectors.into_iter().next() else {
        return Err(ApiError::new(
            Flavor::Tei,
            Kind::Backend,
            "the batching worker returned no float vector",
        ));
    };
    Ok(pb::EmbedResponse {
        embeddings,
        metadata: metadata(chars, out.tokens, start),
    })
}

async fn embed_all_one(
    server: Server,
    r: pb::EmbedAllRequest,
) -> Result<pb::EmbedAllResponse, ApiError> {
    let start = Instant::now();
    let s = &server.state;
    let f = Flavor::Tei;
    let inputs = text(r.inputs)?;
    let chars = inputs.chars().count();
    let call = routes::token_states_call(
        s,
        f,
        r.prompt_name,
        r.truncate || s.config.auto_truncate,
        direction(r.truncation_direction)?,
    )?;
    let embedder = s.embedder.clone();
    let max_request = s.config.max_batch_tokens;
    let (mut states, tokens) = routes::off_thread(s, f, move || {
        routes::token_states(
            &embedder,
            f,
            Inputs::Texts(vec![inputs]),
            &call,
            max_request,
        )
    })
    .await?;
    Ok(pb::EmbedAllResponse {
        token_embeddings: states
            .pop()
            .unwrap_or_default()
            .into_iter()
            .map(|embeddings| pb::TokenEmbedding { embeddings })
            .collect(),
        metadata: metadata(chars, tokens, start),
    })
}

async fn tokenize_one(
    server: Server,
    r: pb::EncodeRequest,
) -> Result<pb::EncodeResponse, ApiError> {
    let s = &server.state;
    let f = Flavor::Tei;
    let call = routes::tokenize_call(s, f, r.prompt_name, Some(r.add_special_tokens))?;
    let limits = (s.config.max_input_tokens, s.config.max_batch_tokens);
    let embedder = s.embedder.clone();
    let texts = vec![r.inputs];
    let mut tokens = routes::off_thread(s, f, move || {
        routes::tokens_of(&embedder, f, &texts, &call, limits)
    })
    .await?;
    Ok(pb::EncodeResponse {
        tokens: tokens
            .pop()
            .unwrap_or_default()
            .into_iter()
            .map(|t| pb::SimpleToken {
                id: t.id,
                text: t.text,
                special: t.special,
                start: None,
                stop: None,
            })
            .collect(),
    })
}

async fn decode_one(server: Server, r: pb::DecodeRequest) -> Result<pb::DecodeResponse, ApiError> {
    let text = server
        .state
        .embedder
        .tokenizer()
        .decode(&r.ids)
        .map_err(|e| invalid(format!("ids: {e}")))?;
    Ok(pb::DecodeResponse { text })
}

#[tonic::async_trait]
impl Info for Tei {
    async fn info(
        &self,
        request: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let server = self.server(request.metadata())?;
        let s = &server.state;
        let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        Ok(Response::new(pb::InfoResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            sha: None,
            docker_label: None,
            model_id: s.config.model_id.clone(),
            model_sha: None,
            model_dtype: routes::MODEL_DTYPE.to_owned(),
            model_type: pb::ModelType::Embedding.into(),
            max_concurrent_requests: n(s.config.max_concurrent_requests),
            max_input_length: n(s.config.max_input_tokens),
            max_batch_tokens: n(s.config.max_batch_tokens),
            max_batch_requests: None,
            // No cap on inputs per HTTP request but the token limits.
            max_client_batch_size: 0,
            tokenization_workers: n(s.tokenization_workers),
        }))
    }
}

#[tonic::async_trait]
impl Embed for Tei {
    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        self.unary("/tei.v1.Embed/Embed", request, embed_one).await
    }

    async fn embed_stream(
        &self,
        request: Request<Streaming<pb::EmbedRequest>>,
    ) -> Result<Response<Replies<pb::EmbedResponse>>, Status> {
        self.stream("/tei.v1.Embed/EmbedStream", request, embed_one)
    }

    async fn embed_all(
        &self,
        request: Request<pb::EmbedAllRequest>,
    ) -> Result<Response<pb::EmbedAllResponse>, Status> {
        self.unary("/tei.v1.Embed/EmbedAll", request, embed_all_one)
            .await
    }

    async fn embed_all_stream(
        &self,
        request: Request<Streaming<pb::EmbedAllRequest>>,
    ) -> Result<Response<Replies<pb::EmbedAllResponse>>, Status> {
        self.stream("/tei.v1.Embed/EmbedAllStream", request, embed_all_one)
    }

    async fn embed_raw(
        &self,
        request: Request<pb::EmbedAllRequest>,
    ) -> Result<Response<pb::EmbedAllResponse>, Status> {
        self.unary("/tei.v1.Embed/EmbedRaw", request, embed_all_one)
            .await
    }

    async fn embed_raw_stream(
        &self,
        request: Request<Streaming<pb::EmbedAllRequest>>,
    ) -> Result<Response<Replies<pb::EmbedAllResponse>>, Status> {
        self.stream("/tei.v1.Embed/EmbedRawStream", request, embed_all_one)
    }

    async fn embed_sparse(
        &self,
        _: Request<pb::EmbedSparseRequest>,
    ) -> Result<Response<pb::EmbedSparseResponse>, Status> {
        Err(no_sparse())
    }

    async fn embed_sparse_stream(
        &self,
        _: Request<Streaming<pb::EmbedSparseRequest>>,
    ) -> Result<Response<Replies<pb::EmbedSparseResponse>>, Status> {
        Err(no_sparse())
    }
}

fn no_sparse() -> Status {
    Status::unimplemented("kiln serves no sparse (SPLADE) embedding models")
}

#[tonic::async_trait]
impl Tokenize for Tei {
    async fn tokenize(
        &self,
        request: Request<pb::EncodeRequest>,
    ) -> Result<Response<pb::EncodeResponse>, Status> {
        self.unary("/tei.v1.Tokenize/Tokenize", request, tokenize_one)
            .await
    }

    async fn tokenize_stream(
        &self,
        request: Request<Streaming<pb::EncodeRequest>>,
    ) -> Result<Response<Replies<pb::EncodeResponse>>, Status> {
        self.stream("/tei.v1.Tokenize/TokenizeStream", request, tokenize_one)
    }

    async fn decode(
        &self,
        request: Request<pb::DecodeRequest>,
    ) -> Result<Response<pb::DecodeResponse>, Status> {
        self.unary("/tei.v1.Tokenize/Decode", request, decode_one)
            .await
    }

    async fn decode_stream(
        &self,
        request: Request<Streaming<pb::DecodeRequest>>,
    ) -> Result<Response<Replies<pb::DecodeResponse>>, Status> {
        self.stream("/tei.v1.Tokenize/DecodeStream", request, decode_one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_map_to_grpc_codes() {
        let code = |k| status(ApiError::new(Flavor::Tei, k, "m")).code();
        assert_eq!(code(Kind::TooLarge), Code::InvalidArgument);
        assert_eq!(code(Kind::Empty), Code::InvalidArgument);
        assert_eq!(code(Kind::Overloaded), Code::ResourceExhausted);
        assert_eq!(code(Kind::NotFound), Code::NotFound);
        assert_eq!(code(Kind::Unauthorized), Code::Unauthenticated);
        assert_eq!(code(Kind::Backend), Code::Internal);
    }

    #[test]
    fn api_key_is_checked_in_metadata() {
        let call = |key: Option<&str>, sent: Option<&str>| {
            let mut req = Request::new(());
            if let Some(v) = sent {
                req.metadata_mut()
                    .insert("authorization", v.parse().unwrap());
            }
            Auth(key.map(Arc::from)).call(req).map_err(|s| s.code())
        };
        assert!(call(None, None).is_ok());
        assert!(call(Some("k"), Some("Bearer k")).is_ok());
        assert!(call(Some("k"), Some("bearer  k")).is_ok());
        assert_eq!(
            call(Some("k"), Some("Bearer x")).unwrap_err(),
            Code::Unauthenticated
        );
        assert_eq!(call(Some("k"), None).unwrap_err(), Code::Unauthenticated);
    }

    #[test]
    fn truncation_directions() {
        assert!(matches!(direction(0), Ok(TruncateDirection::Right)));
        assert!(matches!(direction(1), Ok(TruncateDirection::Left)));
        assert!(direction(7).is_err());
    }
}
