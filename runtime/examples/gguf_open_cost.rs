//! Measures what opening a GGUF file costs: wall time and resident memory
//! before and after `GgufFile::open`, then the cost of decoding the
//! vocabulary on access.
//!
//! `cargo run --release -p kiln-runtime --example gguf_open_cost -- FILE`

use std::time::Instant;

use kiln_runtime::gguf::GgufFile;

/// Resident set size in KiB, from /proc/self/status (Linux only).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: gguf_open_cost FILE")?;
    let before = rss_kib();
    let mut times = Vec::new();
    let mut file = None;
    for _ in 0..20 {
        let t = Instant::now();
        let f = GgufFile::open(&path)?;
        times.push(t.elapsed());
        file = Some(f);
    }
    let after = rss_kib();
    let f = file.ok_or("no run")?;
    times.sort();
    println!(
        "open: min {:?}, median {:?} over {} runs; file {} bytes, {} tensors, {} metadata entries",
        times[0],
        times[times.len() / 2],
        times.len(),
        f.len(),
        f.tensors().len(),
        f.metadata().len()
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "RSS: {b} KiB before, {a} KiB after open (+{} KiB)",
            a.saturating_sub(b)
        );
    }
    if f.metadata().get("tokenizer.ggml.tokens").is_some() {
        let t = Instant::now();
        let tokens: Vec<&str> = f
            .metadata()
            .get_str_array("tokenizer.ggml.tokens")?
            .collect();
        println!(
            "tokens: {} decoded on access in {:?}",
            tokens.len(),
            t.elapsed()
        );
    }
    Ok(())
}
