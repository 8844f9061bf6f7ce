//! `kiln embed`: texts in, vectors out.

use std::io::{BufRead, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use kiln::{
    CallOptions, Embedder, EmbedderBuilder, Embedding, Pooling, Precision, QuantRange,
    TruncateDirection,
};

/// Output formats of `kiln embed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON array of `{"index", "text", "embedding"}` objects.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// One row of comma-separated values per text.
    Csv,
}

/// Truncation directions on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// Keep the beginning, cut the end.
    Right,
    /// Keep the end, cut the beginning.
    Left,
}

impl From<DirectionArg> for TruncateDirection {
    fn from(d: DirectionArg) -> TruncateDirection {
        match d {
            DirectionArg::Right => TruncateDirection::Right,
            DirectionArg::Left => TruncateDirection::Left,
        }
    }
}

/// Output precisions on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// 32-bit floats.
    Float32,
    /// Signed bytes over `--quantization-range`.
    Int8,
    /// Unsigned bytes over `--quantization-range`.
    Uint8,
    /// Sign bits, 8 per byte, as int8.
    Binary,
    /// Sign bits, 8 per byte, as uint8.
    Ubinary,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Precision {
        match p {
            PrecisionArg::Float32 => Precision::Float32,
            PrecisionArg::Int8 => Precision::Int8,
            PrecisionArg::Uint8 => Precision::Uint8,
            PrecisionArg::Binary => Precision::Binary,
            PrecisionArg::Ubinary => Precision::Ubinary,
        }
    }
}

/// Pooling choices on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    /// Mean of the token vectors.
    Mean,
    /// The first token's vector.
    Cls,
    /// The last token's vector.
    Last,
}

impl From<PoolingArg> for Pooling {
    fn from(p: PoolingArg) -> Pooling {
        match p {
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::Cls => Pooling::Cls,
            PoolingArg::Last => Pooling::Last,
        }
    }
}

/// Options shared by every command that opens an embedding model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A GGUF file or a short model name (`kiln list` shows them).
    #[arg(short, long, default_value = super::DEFAULT_MODEL)]
    pub model: String,
    /// Threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Matryoshka output width (e.g. 512, 256, 128 for EmbeddingGemma).
    #[arg(long)]
    pub dim: Option<usize>,
    /// A task prompt the model defines (EmbeddingGemma: query, document, STS, …).
    #[arg(long, conflicts_with = "prompt")]
    pub task: Option<String>,
    /// A custom prompt prepended to every text.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Return raw (not L2-normalized) vectors.
    #[arg(long)]
    pub no_normalize: bool,
    /// Cut texts longer than the model's context instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// Which end `--truncate` cuts.
    #[arg(long, value_enum, default_value = "right")]
    pub truncation_direction: DirectionArg,
    /// Parse special-token strings such as `<bos>` or `[CLS]` in the input.
    #[arg(long)]
    pub parse_special: bool,
    /// Override the model's pooling.
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
}

impl ModelArgs {
    /// Opens the embedder these arguments describe.
    pub fn open(&self) -> anyhow::Result<Embedder> {
        let path = super::resolve_model(&self.model)?;
        self.builder()
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))
    }

    /// The builder these arguments describe, for a file already open.
    pub fn builder(&self) -> EmbedderBuilder {
        let mut b = Embedder::builder()
            .normalize(!self.no_normalize)
            .truncate(self.truncate)
            .truncate_direction(self.truncation_direction.into())
            .parse_special(self.parse_special);
        if let Some(t) = self.threads {
            b = b.threads(t);
        }
        if let Some(d) = self.dim {
            b = b.dim(d);
        }
        if let Some(t) = &self.task {
            b = b.task(t);
        }
        if let Some(p) = &self.prompt {
            b = b.prompt(p);
        }
        if let Some(p) = self.pooling {
            b = b.pooling(p.into());
        }
        b
    }
}

/// Arguments of `kiln embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Texts to embed (otherwise --input, or one text per line on stdin).
    pub texts: Vec<String>,
    /// A file with one text per line.
    #[arg(short, long, conflicts_with = "texts")]
    pub input: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Output precision (sentence-transformers' quantize_embeddings rules;
    /// int8/uint8 over `--quantization-range`).
    #[arg(long, value_enum, default_value = "float32")]
    pub precision: PrecisionArg,
    /// The range int8/uint8 map onto their 256 codes, for every dimension.
    #[arg(long, value_names = ["LOW", "HIGH"], num_args = 2, allow_negative_numbers = true)]
    pub quantization_range: Option<Vec<f32>>,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Print tokens, time per text and texts/s on stderr.
    #[arg(long)]
    pub stats: bool,
    /// Embed each text as a long document cut into chunks, one vector per
    /// chunk with its character span (`late`: the document encoded once,
    /// each chunk pooled from its tokens' states; `naive`: each chunk
    /// alone). `--input` then reads the whole file as one document.
    #[arg(long, value_enum)]
    pub chunk: Option<ChunkModeArg>,
    /// Largest chunk in tokens.
    #[arg(long, default_value_t = 256)]
    pub chunk_size: usize,
    /// Tokens shared by consecutive chunks.
    #[arg(long, default_value_t = 32)]
    pub chunk_overlap: usize,
    /// Where a chunk may end.
    #[arg(long, value_enum, default_value = "word")]
    pub chunk_boundary: BoundaryArg,
}

/// Chunking modes on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ChunkModeArg {
    /// Late chunking.
    Late,
    /// Each chunk embedded alone.
    Naive,
}

/// Chunk boundaries on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BoundaryArg {
    /// Between any two words.
    Word,
    /// After a sentence or line end where the chunk has one.
    Sentence,
    /// After a line end where the chunk has one.
    Line,
}

/// Reads one text per line; a line that is not UTF-8 is an error naming it.
fn read_lines(mut r: impl BufRead, source: &str) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        match std::str::from_utf8(&buf) {
            Ok(s) => lines.push(s.to_owned()),
            Err(e) => bail!("{source}, line {n}: not valid UTF-8 ({e})"),
        }
    }
    Ok(lines)
}

/// Runs `kiln embed`.
pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    if let Some(mode) = args.chunk {
        return run_chunks(&args, mode);
    }
    let texts = if !args.texts.is_empty() {
        args.texts.clone()
    } else if let Some(path) = &args.input {
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        read_lines(std::io::BufReader::new(f), &path.display().to_string())?
    } else {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            bail!("no input: give texts as arguments, --input FILE, or lines on stdin");
        }
        let mut all = Vec::new();
        stdin.lock().read_to_end(&mut all)?;
        read_lines(&all[..], "stdin")?
    };
    if texts.is_empty() {
        bail!("no input texts");
    }
    let call = CallOptions {
        precision: args.precision.into(),
        quantization_range: match args.quantization_range.as_deref() {
            Some(&[lo, hi]) => QuantRange::new(lo, hi)?,
            _ => QuantRange::DEFAULT,
        },
        ..CallOptions::default()
    };
    let embedder = args.model.open()?;
    let start = Instant::now();
    let vectors = embed_with_progress(&embedder, &texts, &call)?;
    let elapsed = start.elapsed();

    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    write_vectors(&mut out, args.format, &texts, &vectors)?;
    out.flush()?;

    if args.stats {
        let tokens: usize = texts
            .iter()
            // What the model ran on: cut to the context with `--truncate`.
            .map(|t| {
                embedder
                    .tokenize_with(t, &kiln::CallOptions::default())
                    .map_or(0, |ids| ids.len())
            })
            .sum();
        let secs = elapsed.as_secs_f64();
        eprintln!(
            "{} texts, {} tokens in {:.3} s: {:.2} ms/text, {:.1} texts/s, {:.0} tokens/s ({} threads, {})",
            texts.len(),
            tokens,
            secs,
            secs * 1e3 / texts.len() as f64,
            texts.len() as f64 / secs,
            tokens as f64 / secs,
            embedder.options().threads,
            kiln::kernels::best().isa().name(),
        );
    }
    Ok(())
}

/// `kiln embed --chunk`: every document's chunks as JSON lines.
fn run_chunks(args: &EmbedArgs, mode: ChunkModeArg) -> anyhow::Result<()> {
    if args.precision != PrecisionArg::Float32 || args.format != Format::Jsonl {
        bail!("--chunk writes float32 vectors as JSON lines (no --precision or --format)");
    }
    let docs = if !args.texts.is_empty() {
        args.texts.clone()
    } else if let Some(path) = &args.input {
        vec![
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?,
        ]
    } else {
        let mut all = String::new();
        std::io::stdin()
            .read_to_string(&mut all)
            .context("cannot read stdin as UTF-8 text")?;
        vec![all]
    };
    let opts = kiln::ChunkOptions {
        size: args.chunk_size,
        overlap: args.chunk_overlap,
        boundary: match args.chunk_boundary {
            BoundaryArg::Word => kiln::Boundary::Word,
            BoundaryArg::Sentence => kiln::Boundary::Sentence,
            BoundaryArg::Line => kiln::Boundary::Line,
        },
        spans: None,
        mode: match mode {
            ChunkModeArg::Late => kiln::ChunkMode::Late,
            ChunkModeArg::Naive => kiln::ChunkMode::Naive,
        },
    };
    let embedder = args.model.open()?;
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    let (mut chunks, mut tokens, mut secs) = (0, 0, 0.0);
    for (d, doc) in docs.iter().enumerate() {
        let start = Instant::now();
        let got = embedder
            .embed_chunks(doc, &opts, &CallOptions::default())
            .with_context(|| format!("document {d}"))?;
        secs += start.elapsed().as_secs_f64();
        chunks += got.len();
        tokens += got.last().map_or(0, |c| c.tokens.end);
        for (i, c) in got.iter().enumerate() {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({
                    "document": d, "chunk": i, "start": c.chars.start, "end": c.chars.end,
                    "tokens": [c.tokens.start, c.tokens.end], "embedding": c.embedding,
                }),
            )?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    if args.stats {
        eprintln!(
            "{} documents, {chunks} chunks, {tokens} tokens in {secs:.3} s: {:.0} tokens/s, {:.1} chunks/s ({mode:?}, {} threads, {})",
            docs.len(),
            tokens as f64 / secs,
            chunks as f64 / secs,
            embedder.options().threads,
            kiln::kernels::best().isa().name(),
        );
    }
    Ok(())
}

/// Inputs above this many texts show a progress bar (on a terminal).
const PROGRESS_MIN_TEXTS: usize = 256;

/// Embeds `texts` in order; large inputs go in chunks behind a progress bar
/// when stderr is a terminal.
fn embed_with_progress(
    embedder: &Embedder,
    texts: &[String],
    call: &CallOptions,
) -> anyhow::Result<Vec<Embedding>> {
    if texts.len() < PROGRESS_MIN_TEXTS || !std::io::stderr().is_terminal() {
        return Ok(embedder.embed_batch_as(texts, call)?);
    }
    let bar = indicatif::ProgressBar::new(texts.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} texts {per_sec} eta {eta}")
            .expect("static template is valid"),
    );
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        out.extend(embedder.embed_batch_as(chunk, call)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// One vector's values as JSON numbers.
fn json_values(v: &Embedding) -> serde_json::Value {
    match v {
        Embedding::Float32(v) => serde_json::json!(v),
        Embedding::Int8(v) => serde_json::json!(v),
        Embedding::Uint8(v) => serde_json::json!(v),
    }
}

/// Writes vectors in one of the output formats.
pub fn write_vectors(
    out: &mut impl Write,
    format: Format,
    texts: &[String],
    vectors: &[Embedding],
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let rows: Vec<_> = texts
                .iter()
                .zip(vectors)
                .enumerate()
                .map(|(i, (t, v))| {
                    serde_json::json!({"index": i, "text": t, "embedding": json_values(v)})
                })
                .collect();
            serde_json::to_writer(&mut *out, &rows)?;
            writeln!(out)?;
        }
        Format::Jsonl => {
            for (i, (t, v)) in texts.iter().zip(vectors).enumerate() {
                serde_json::to_writer(
                    &mut *out,
                    &serde_json::json!({"index": i, "text": t, "embedding": json_values(v)}),
                )?;
                writeln!(out)?;
            }
        }
        Format::Csv => {
            for v in vectors {
                match v {
                    Embedding::Float32(v) => write_csv_row(out, v)?,
                    Embedding::Int8(v) => write_csv_row(out, v)?,
                    Embedding::Uint8(v) => write_csv_row(out, v)?,
                }
            }
        }
    }
    Ok(())
}

/// One comma-separated row.
fn write_csv_row<T: std::fmt::Display>(out: &mut impl Write, v: &[T]) -> anyhow::Result<()> {
    let mut first = true;
    for x in v {
        if !first {
            write!(out, ",")?;
        }
        first = false;
        write!(out, "{x}")?;
    }
    writeln!(out)?;
    Ok(())
}
