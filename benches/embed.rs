//! Whole-model benches: warm `embed("Hello world")` at one thread and at all
//! threads, and a batch of 256 short texts, for all-MiniLM-L6-v2 (the test
//! fixture) and EmbeddingGemma-300M (when `kiln pull embeddinggemma` has put
//! it in the cache). Groups are `embed/<model>/<workload>`.
//!
//! The side-by-side comparison with llama.cpp is `scripts/bench-vs-llamacpp`.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::Embedder;

fn models() -> Vec<(&'static str, PathBuf)> {
    let mut out = vec![(
        "minilm",
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf"),
    )];
    match kiln::hub::Cache::from_env()
        .ok()
        .and_then(|c| c.cached("embeddinggemma"))
    {
        Some(p) => out.push(("embeddinggemma", p)),
        None => {
            eprintln!("embeddinggemma is not in the cache: run `kiln pull embeddinggemma`; skipped")
        }
    }
    out
}

fn short_texts() -> Vec<String> {
    let lines: Vec<String> = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/goldens/sentences.txt"),
    )
    .unwrap()
    .lines()
    .filter(|l| !l.trim().is_empty() && l.len() < 200)
    .map(str::to_owned)
    .collect();
    (0..256).map(|i| lines[i % lines.len()].clone()).collect()
}

fn bench(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("ISA: {}", kiln::kernels::best().isa().name());
    let texts = short_texts();
    for (name, path) in models() {
        let mut g = c.benchmark_group(format!("embed/{name}"));
        g.sample_size(20);
        for threads in [1, cores] {
            let e = Embedder::builder().threads(threads).open(&path).unwrap();
            let mut out = vec![0.0; e.dim()];
            e.embed_into("Hello world", &mut out).unwrap();
            g.throughput(Throughput::Elements(1));
            g.bench_function(format!("hello_world/t{threads}"), |b| {
                b.iter(|| e.embed_into("Hello world", &mut out).unwrap())
            });
        }
        let e = Embedder::builder().threads(cores).open(&path).unwrap();
        g.sample_size(10);
        g.throughput(Throughput::Elements(texts.len() as u64));
        g.bench_function(format!("batch256/t{cores}"), |b| {
            b.iter(|| e.embed_batch(&texts).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
