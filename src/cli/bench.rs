//! `kiln bench`: load time, warm latency and batch throughput of one model,
//! printed for people or as JSON for `scripts/bench-vs-llamacpp`.

use std::time::Instant;

use clap::Args;
use serde::Serialize;

use kiln::kernels::limits;

use super::embed::ModelArgs;

/// Arguments of `kiln bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text timed for warm latency.
    #[arg(long, default_value = "Hello world")]
    pub text: String,
    /// Warm repetitions of the latency text.
    #[arg(long, default_value_t = 20)]
    pub repeat: usize,
    /// A file with one text per line for the throughput run.
    #[arg(long)]
    pub batch: Option<std::path::PathBuf>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Also measure this machine's limits (read bandwidth with the bench's
    /// threads, int8 dot peak of one core), for the floors of
    /// `scripts/bench-vs-llamacpp`.
    #[arg(long)]
    pub limits: bool,
}

#[derive(Serialize)]
struct Report {
    model: String,
    isa: &'static str,
    threads: usize,
    load_s: f64,
    first_embed_s: f64,
    text_tokens: usize,
    latency_min_s: f64,
    latency_median_s: f64,
    batch_texts: usize,
    batch_tokens: usize,
    batch_s: Option<f64>,
    texts_per_s: Option<f64>,
    tokens_per_s: Option<f64>,
    peak_rss_bytes: Option<u64>,
    /// Bytes of weights one forward pass reads (every tensor but the
    /// token-embedding table, of which only the input's rows are read).
    weight_bytes: u64,
    /// Multiply-adds per token in the weight matrices.
    macs_per_token: u64,
    /// Read bandwidth with `threads` threads, GB/s (`--limits`).
    read_bandwidth_gbs: Option<f64>,
    /// int8 multiply-add peak of one core with the Q8_0 dot sequence of
    /// this ISA, GOPS (`--limits`).
    int8_peak_gops_per_thread: Option<f64>,
    /// int8 ceiling of one core: the ISA's best multiply-accumulate
    /// instructions on registers, GOPS (`--limits`; none for scalar).
    int8_ceiling_gops_per_thread: Option<f64>,
}

/// Bytes read and multiply-adds per token of one forward pass, from the
/// GGUF's tensor table.
fn model_work(path: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    let file = kiln::runtime::gguf::GgufFile::open(path)?;
    let (mut bytes, mut macs) = (0u64, 0u64);
    for t in file.tensors() {
        if t.name == "token_embd.weight" {
            continue;
        }
        bytes += t.n_bytes;
        if t.dims.len() == 2 && !t.name.contains("position") && !t.name.contains("token_types") {
            macs += t.n_elements();
        }
    }
    Ok((bytes, macs))
}

/// Runs `kiln bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (weight_bytes, macs_per_token) = model_work(&super::resolve_model(&args.model.model)?)?;
    let t0 = Instant::now();
    let embedder = args.model.open()?;
    let load_s = t0.elapsed().as_secs_f64();
    let mut out = vec![0.0; embedder.dim()];
    let t1 = Instant::now();
    embedder.embed_into(&args.text, &mut out)?;
    let first_embed_s = t1.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(args.repeat);
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        embedder.embed_into(&args.text, &mut out)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);

    let texts = match &args.batch {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    // The tokens the model runs: after the prompt and the truncation the
    // batch is embedded with, so tokens/s and the compute floor count work
    // done, not text that was cut.
    let batch_tokens = texts
        .iter()
        .map(|t| {
            embedder
                .tokenize_with(t, &kiln::CallOptions::default())
                .map_or(0, |ids| ids.len())
        })
        .sum();
    let batch_s = (!texts.is_empty())
        .then(|| {
            let t = Instant::now();
            embedder
                .embed_batch(&texts)
                .map(|_| t.elapsed().as_secs_f64())
        })
        .transpose()?;
    let report = Report {
        model: args.model.model.clone(),
        isa: kiln::kernels::best().isa().name(),
        threads: embedder.options().threads,
        load_s,
        first_embed_s,
        text_tokens: embedder.tokenize(&args.text)?.len(),
        latency_min_s: times[0],
        latency_median_s: times[times.len() / 2],
        batch_texts: texts.len(),
        batch_tokens,
        batch_s,
        texts_per_s: batch_s.map(|s| texts.len() as f64 / s),
        tokens_per_s: batch_s.map(|s| batch_tokens as f64 / s),
        peak_rss_bytes: kiln_runtime::memory::peak_rss(),
        weight_bytes,
        macs_per_token,
        read_bandwidth_gbs: args
            .limits
            .then(|| limits::read_bandwidth_gbs(embedder.options().threads)),
        int8_peak_gops_per_thread: if args.limits {
            limits::int8_peak_gops(kiln::kernels::best().isa())
        } else {
            None
        },
        int8_ceiling_gops_per_thread: if args.limits {
            limits::int8_ceiling_gops(&limits::int8_ceiling_forms(kiln::kernels::best().isa()))
        } else {
            None
        },
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "model          {} ({} threads, {})",
            report.model, report.threads, report.isa
        );
        println!(
            "load           {:.1} ms (first embed {:.1} ms)",
            load_s * 1e3,
            first_embed_s * 1e3
        );
        println!(
            "latency        min {:.2} ms, median {:.2} ms ({} tokens, {} runs)",
            report.latency_min_s * 1e3,
            report.latency_median_s * 1e3,
            report.text_tokens,
            times.len()
        );
        if let (Some(s), Some(tps)) = (report.batch_s, report.texts_per_s) {
            println!(
                "batch          {} texts, {} tokens in {:.2} s: {:.1} texts/s, {:.0} tokens/s",
                report.batch_texts,
                report.batch_tokens,
                s,
                tps,
                report.tokens_per_s.unwrap_or(0.0)
            );
        }
        if let Some(rss) = report.peak_rss_bytes {
            println!("peak RSS       {:.1} MiB", rss as f64 / (1024.0 * 1024.0));
        }
        if let (Some(bw), Some(peak)) =
            (report.read_bandwidth_gbs, report.int8_peak_gops_per_thread)
        {
            let floor = weight_bytes as f64 / (bw * 1e9);
            println!(
                "limits         read {bw:.1} GB/s ({} threads): weights {:.0} MB, memory floor {:.2} ms per forward; int8 peak {peak:.0} GOPS per thread",
                report.threads,
                weight_bytes as f64 / 1e6,
                floor * 1e3
            );
            if let Some(ceiling) = report.int8_ceiling_gops_per_thread {
                println!(
                    "               int8 ceiling {ceiling:.0} GOPS per thread (best instructions on registers)"
                );
            }
        }
    }
    Ok(())
}
