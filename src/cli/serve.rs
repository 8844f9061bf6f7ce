//! `kiln serve`: the HTTP server. An embedding model gets OpenAI's
//! `/v1/embeddings` and text-embeddings-inference's `/embed`; a decoder
//! (gemma3) gets `/v1/completions` and `/v1/chat/completions`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use kiln::Embedder;
use kiln::server::conn::ConnLimits;
use kiln::server::generation::{GenConfig, GenServer};
use kiln::server::multi::{MultiConfig, MultiServer, Served, ServedModel};
use kiln::server::{Config, Server};

use super::serve_config::{self, ModelEntry};

/// Log line formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `kiln serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A GGUF file or a short model name (embeddinggemma, minilm,
    /// gemma3-270m) [default: embeddinggemma]. Repeat it to serve several
    /// models on one port; requests pick one by their `model` field.
    #[arg(short, long = "model", value_name = "MODEL")]
    pub model: Vec<String>,
    /// A TOML (or .json) file listing the models to serve with their own
    /// options (threads, batching limits, context, aliases); see
    /// docs/serving-rag.md. Models given with -m follow its models.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// The model's name in responses and /v1/models (default: --model, or
    /// its file name when it is a path). One model only.
    #[arg(long)]
    pub model_id: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Also serve text-embeddings-inference's gRPC API (package tei.v1,
    /// proto/tei.proto) on this port, with the same models, limits and API
    /// key (0: any free port, printed at start).
    #[arg(long, value_name = "PORT")]
    pub grpc_port: Option<u16>,
    /// Compute threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Tokens per computed batch, and the most one request may carry.
    #[arg(long, default_value_t = 16384)]
    pub max_batch_tokens: usize,
    /// Requests that may wait in the queue (and texts waiting to be
    /// tokenized); more get 429 at once.
    #[arg(long, default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Tokens per input (default and maximum: the model's context).
    #[arg(long)]
    pub max_input_tokens: Option<usize>,
    /// Embedders: cut inputs longer than --max-input-tokens (keeping the
    /// model's start and end tokens) unless a request sends
    /// `"truncate": false`; without it they get 413 naming the limit.
    #[arg(long)]
    pub auto_truncate: bool,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "KILN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Decoders: context in tokens per generation.
    #[arg(long, default_value_t = kiln::runtime::model::DEFAULT_CONTEXT)]
    pub ctx: usize,
    /// Decoders: generations decoded together in one batch (continuous
    /// batching; each slot holds a KV cache of --ctx positions; others wait).
    #[arg(long, visible_alias = "parallel", default_value_t = 4)]
    pub max_concurrent_generations: usize,
    /// Decoders: speculative decoding for every generation (`ngram`: prompt
    /// lookup; greedy output is unchanged).
    #[arg(long, value_enum)]
    pub draft: Option<super::generate::DraftArg>,
    /// Decoders: a draft model for speculative decoding (same vocabulary;
    /// implies --draft model).
    #[arg(long, value_name = "MODEL")]
    pub draft_model: Option<String>,
    /// Decoders: generations that may wait for a slot; more get 429 at once.
    #[arg(long, default_value_t = 64)]
    pub max_waiting_generations: usize,
    /// Connections open at once [default: 1024, or fewer when the open-file
    /// limit is low]. At the cap a new connection replaces the longest-idle
    /// one; when none is idle it gets 503 and is closed.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Seconds a client may take to send a request head (from connecting,
    /// or from the first byte of a later request); then it is disconnected.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub header_read_timeout: f64,
    /// Seconds a client may take to send a request body (408 after).
    #[arg(long, default_value_t = 30.0, value_parser = seconds)]
    pub body_read_timeout: f64,
    /// Seconds a keep-alive connection may idle between requests.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub idle_timeout: f64,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    pub log_level: tracing::Level,
}

/// A positive, finite number of seconds.
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() && x < 1e9 => Ok(x),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

impl ServeArgs {
    /// The connection limits the flags ask for.
    fn connections(&self) -> ConnLimits {
        let d = ConnLimits::default();
        ConnLimits {
            max_connections: self.max_connections.unwrap_or(d.max_connections).max(1),
            header_read_timeout: Duration::from_secs_f64(self.header_read_timeout),
            body_read_timeout: Duration::from_secs_f64(self.body_read_timeout),
            idle_timeout: Duration::from_secs_f64(self.idle_timeout),
        }
    }

    /// The one `--model` (the default model when none is given).
    fn single_model(&self) -> &str {
        self.model
            .first()
            .map_or(super::DEFAULT_MODEL, String::as_str)
    }

    /// `--model-id`, else `--model` without its directories: responses
    /// never show where the model lives on disk.
    fn model_id(&self) -> String {
        self.model_id
            .clone()
            .unwrap_or_else(|| serve_config::default_id(self.single_model()))
    }
}

/// Runs `kiln serve` until SIGTERM or ctrl-c.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let sub = tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => sub.init(),
        LogFormat::Json => sub.json().init(),
    }
    if args.config.is_some() || args.model.len() > 1 {
        return run_multi(args);
    }
    let path = super::resolve_model(args.single_model())?;
    // Opened (mapped) once, then handed to the embedder or generator.
    let file = Arc::new(
        kiln::runtime::gguf::GgufFile::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?,
    );
    if kiln::runtime::model::is_decoder_arch(file.architecture()?) {
        return run_generation(args, &path, file);
    }
    let mut b = Embedder::builder();
    if let Some(t) = args.threads {
        b = b.threads(t);
    }
    let embedder = Arc::new(
        b.open_file(file)
            .with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut config = Config::new(args.model_id(), &embedder);
    config.connections = args.connections();
    config.max_batch_tokens = args.max_batch_tokens;
    config.max_concurrent_requests = args.max_concurrent_requests;
    config.max_body_bytes = args.max_body_bytes;
    config.auto_truncate = args.auto_truncate;
    config.api_key = args.api_key.clone().filter(|k| !k.is_empty());
    if let Some(n) = args.max_input_tokens {
        config.max_input_tokens = n;
    }
    tracing::info!(
        model = %path.display(),
        arch = embedder.arch(),
        dim = embedder.dim(),
        threads = embedder.options().threads,
        isa = kiln::kernels::best().isa().name(),
        "model loaded"
    );
    let server = Server::new(embedder, config).context("cannot start the batching worker")?;
    let drain = server.clone();
    serve(
        &args,
        Serving {
            router: server.router(),
            connections: server.config().connections,
            grpc: grpc_of!(args.grpc_port, server.grpc()?),
            drain: Box::new(move || drain.shutdown()),
        },
    )
}

/// Serves a decoder model.
fn run_generation(
    args: ServeArgs,
    path: &std::path::Path,
    file: Arc<kiln::runtime::gguf::GgufFile>,
) -> anyhow::Result<()> {
    let mut b = kiln::Generator::builder().context(args.ctx);
    if let Some(t) = args.threads {
        b = b.threads(t);
    }
    if let Some(d) = &args.draft_model {
        b = b.draft(super::resolve_model(d)?);
    }
    let generator = Arc::new(
        b.open_file(file)
            .with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut config = kiln::server::generation::GenConfig::new(args.model_id());
    config.max_concurrent = args.max_concurrent_generations.max(1);
    config.max_waiting = args.max_waiting_generations;
    config.draft = super::generate::DraftArg::choose(args.draft, args.draft_model.is_some());
    config.connections = args.connections();
    config.max_body_bytes = args.max_body_bytes;
    config.api_key = args.api_key.clone().filter(|k| !k.is_empty());
    let info = generator.info();
    tracing::info!(model = %path.display(), arch = info.arch, context = info.context, isa = info.isa, "model loaded");
    if args.grpc_port.is_some() {
        anyhow::bail!(
            "--grpc-port serves text-embeddings-inference's API, for embedding models; {} is a decoder",
            path.display()
        );
    }
    let connections = config.connections;
    let router = kiln::server::generation::router(generator, config);
    serve(
        &args,
        Serving {
            router,
            connections,
            grpc: None,
            drain: Box::new(|| {}),
        },
    )
}

/// Serves every model of `--config` and the `-m` flags on one port.
fn run_multi(args: ServeArgs) -> anyhow::Result<()> {
    if args.model_id.is_some() {
        anyhow::bail!("--model-id names a single model; with several, give ids in --config");
    }
    let file = match &args.config {
        Some(p) => serve_config::read(p)?,
        None => serve_config::ServeFile::default(),
    };
    let entries: Vec<ModelEntry> = file
        .models
        .iter()
        .cloned()
        .chain(args.model.iter().map(|m| ModelEntry::named(m)))
        .collect();
    // One pool for every model without threads of its own: models running
    // at once take turns on its threads instead of oversubscribing the
    // cores.
    let threads = file
        .threads
        .or(args.threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let shared = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("kiln-{i}"))
            .build()
            .context("cannot start the thread pool")?,
    );
    let own_pool = |n: usize, id: &str| -> anyhow::Result<Arc<rayon::ThreadPool>> {
        let id = id.to_owned();
        Ok(Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .thread_name(move |i| format!("kiln-{id}-{i}"))
                .build()
                .context("cannot start a thread pool")?,
        ))
    };
    let mut models = Vec::with_capacity(entries.len());
    for e in &entries {
        let id = e.id();
        let path = super::resolve_model(&e.model)?;
        let file = Arc::new(
            kiln::runtime::gguf::GgufFile::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        );
        let pool = match e.threads {
            Some(n) => own_pool(n, &id)?,
            None => shared.clone(),
        };
        let served = if kiln::runtime::model::is_decoder_arch(file.architecture()?) {
            let mut b = kiln::Generator::builder()
                .pool(pool)
                .context(e.ctx.unwrap_or(args.ctx));
            if let Some(d) = &args.draft_model {
                b = b.draft(super::resolve_model(d)?);
            }
            let generator = Arc::new(
                b.open_file(file)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            );
            let mut config = GenConfig::new(id.clone());
            config.max_concurrent = e
                .max_concurrent_generations
                .unwrap_or(args.max_concurrent_generations)
                .max(1);
            config.max_waiting = e
                .max_waiting_generations
                .unwrap_or(args.max_waiting_generations);
            config.draft =
                super::generate::DraftArg::choose(args.draft, args.draft_model.is_some());
            let info = generator.info();
            tracing::info!(id, model = %path.display(), arch = info.arch, context = info.context, threads = info.threads, "model loaded");
            Served::Generator(GenServer::new(generator, config))
        } else {
            let embedder = Arc::new(
                Embedder::builder()
                    .pool(pool)
                    .open_file(file)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            );
            let mut config = Config::new(id.clone(), &embedder);
            config.max_batch_tokens = e.max_batch_tokens.unwrap_or(args.max_batch_tokens);
            config.max_concurrent_requests = e
                .max_concurrent_requests
                .unwrap_or(args.max_concurrent_requests);
            config.auto_truncate = e.auto_truncate.unwrap_or(args.auto_truncate);
            if let Some(n) = e.max_input_tokens.or(args.max_input_tokens) {
                config.max_input_tokens = n;
            }
            tracing::info!(
                id,
                model = %path.display(),
                arch = embedder.arch(),
                dim = embedder.dim(),
                threads = embedder.options().threads,
                "model loaded"
            );
            Served::Embedder(
                Server::new(embedder, config).context("cannot start the batching worker")?,
            )
        };
        models.push(ServedModel {
            served,
            aliases: e.aliases.clone(),
        });
    }
    tracing::info!(
        threads,
        isa = kiln::kernels::best().isa().name(),
        "shared thread pool"
    );
    let config = MultiConfig {
        max_body_bytes: args.max_body_bytes,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        connections: args.connections(),
    };
    let server = MultiServer::new(models, config)?;
    let grpc_port = args.grpc_port.or(file.grpc_port);
    if grpc_port.is_some()
        && !server
            .models()
            .iter()
            .any(|m| matches!(m.served, Served::Embedder(_)))
    {
        anyhow::bail!(
            "--grpc-port serves text-embeddings-inference's API, and no embedding model is served"
        );
    }
    let drain = server.clone();
    serve(
        &args,
        Serving {
            router: server.router(),
            connections: args.connections(),
            grpc: grpc_of!(grpc_port, server.grpc()),
            drain: Box::new(move || drain.shutdown()),
        },
    )
}

/// What one `kiln serve` process serves.
struct Serving {
    router: axum::Router,
    connections: ConnLimits,
    /// TEI's gRPC API on its port, when asked for.
    grpc: Option<(u16, Grpc)>,
    /// Lets the queued work finish once both listeners have stopped.
    drain: Box<dyn FnOnce()>,
}

#[cfg(feature = "grpc")]
type Grpc = kiln::server::grpc::GrpcServer;
/// A build without gRPC never has one.
#[cfg(not(feature = "grpc"))]
type Grpc = std::convert::Infallible;

/// `Some((port, gRPC server))` when a gRPC port is asked for; an error
/// when this kiln was built without gRPC (`make` is then never compiled).
macro_rules! grpc_of {
    ($port:expr, $make:expr) => {{
        let port: Option<u16> = $port;
        #[cfg(feature = "grpc")]
        let g = match port {
            Some(p) => Some((p, $make)),
            None => None,
        };
        #[cfg(not(feature = "grpc"))]
        let g: Option<(u16, Grpc)> = match port {
            Some(_) => anyhow::bail!("--grpc-port: this kiln was built without the `grpc` feature"),
            None => None,
        };
        g
    }};
}
use grpc_of;

/// Listens on `--host`/`--port` (and the gRPC port), serves until SIGTERM
/// or ctrl-c, lets requests in flight finish on both, then drains.
fn serve(args: &ServeArgs, serving: Serving) -> anyhow::Result<()> {
    let Serving {
        router,
        connections,
        grpc,
        drain,
    } = serving;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let bind = |port: u16| async move {
            tokio::net::TcpListener::bind((args.host.as_str(), port))
                .await
                .with_context(|| format!("cannot listen on {}:{port}", args.host))
        };
        let listener = bind(args.port).await?;
        eprintln!("kiln serve: listening on http://{}", listener.local_addr()?);
        // One signal stops both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let on_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let http =
            kiln::server::conn::serve(listener, router, connections, on_stop(stopped.clone()));
        let grpc = async {
            #[cfg(feature = "grpc")]
            if let Some((port, g)) = grpc {
                let l = bind(port).await?;
                eprintln!("kiln serve: gRPC (tei.v1) on {}", l.local_addr()?);
                g.serve(l, on_stop(stopped)).await?;
            }
            #[cfg(not(feature = "grpc"))]
            let _ = (grpc, stopped);
            anyhow::Ok(())
        };
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        tokio::try_join!(async { http.await.map_err(anyhow::Error::from) }, grpc)?;
        anyhow::Ok(())
    })?;
    tracing::info!("listeners stopped; draining the queues");
    drain();
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal: finishing requests in flight");
}
