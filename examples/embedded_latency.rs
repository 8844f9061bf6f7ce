//! Warm latency of a `#[kiln::model]` type against the runtime API
//! ([`kiln::Embedder`] opening the same GGUF from disk), interleaved in one
//! process so both see the same machine load. Run in release:
//!
//! ```text
//! cargo run --release --example embedded_latency [-- ITERATIONS [runtime]]
//! ```
//!
//! It first times the cold path, from the start of `main` to the first
//! vector, of the embedded model (or, with `runtime`, of the runtime API
//! opening the file), then the warm latency of both.

use std::time::{Duration, Instant};

#[kiln::model(
    arch = "bert",
    path = "tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf",
    threads = 1
)]
struct MiniLm1;

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf"
);

fn summary(mut t: Vec<Duration>) -> String {
    t.sort();
    format!(
        "min {:7.3} ms  median {:7.3} ms",
        t[0].as_secs_f64() * 1e3,
        t[t.len() / 2].as_secs_f64() * 1e3
    )
}

fn main() -> Result<(), kiln::Error> {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let text = "The quick brown fox jumps over the lazy dog near the river bank.";
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    if std::env::args().nth(2).as_deref() == Some("runtime") {
        let t = Instant::now();
        let e = kiln::Embedder::builder().threads(1).open(PATH)?;
        let opened = ms(t);
        e.embed(text)?;
        println!(
            "runtime API: open {opened:.2} ms, first vector {:.2} ms after main",
            ms(t)
        );
    } else {
        let t = Instant::now();
        let file = MiniLm1::gguf()?;
        let layout = ms(t);
        drop(file);
        let e = MiniLm1::embedder()?;
        let opened = ms(t);
        e.embed(text)?;
        println!(
            "#[kiln::model]: header {layout:.3} ms, open {opened:.2} ms, first vector {:.2} ms after main",
            ms(t)
        );
    }
    let runtime = kiln::Embedder::builder().threads(1).open(PATH)?;
    // Warm both (scratch memory, caches).
    for _ in 0..10 {
        runtime.embed(text)?;
        MiniLm1::embed(text)?;
    }
    let mut out = vec![0.0f32; runtime.dim()];
    let (mut rt, mut em) = (Vec::new(), Vec::new());
    for _ in 0..iters {
        let t = Instant::now();
        runtime.embed_into(text, &mut out)?;
        rt.push(t.elapsed());
        let t = Instant::now();
        let v = MiniLm1::embed(text)?;
        em.push(t.elapsed());
        assert_eq!(v.as_slice(), out.as_slice(), "same model, same vectors");
    }
    println!(
        "isa {:?}, 1 thread, {iters} iterations, one short text",
        kiln::kernels::best().isa()
    );
    println!("runtime API  (Embedder::open): {}", summary(rt));
    println!("#[kiln::model] (MiniLm1::embed): {}", summary(em));
    Ok(())
}
