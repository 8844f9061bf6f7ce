//! EmbeddingGemma-300M (Q8_0, ~330 MB) compiled into the binary with
//! `#[kiln::model]`, checked against the runtime API on the same file and
//! timed against it. Not built by default (the binary is large):
//!
//! ```text
//! KILN_EMBEDDINGGEMMA_GGUF=~/.cache/kiln/models/embeddinggemma/embeddinggemma-300m-Q8_0.gguf \
//!   cargo run --release --features gemma-example --example gemma_embedded
//! ```
//!
//! Without the variable the file is read from `models/` under the crate.
//! With the argument `runtime` it first times the runtime API's cold path
//! (open the file, first vector) instead of the embedded model's.

use std::time::{Duration, Instant};

#[kiln::model(
    arch = "gemma",
    path = "models/embeddinggemma-300m-Q8_0.gguf",
    path_env = "KILN_EMBEDDINGGEMMA_GGUF",
    task = "query"
)]
struct Gemma;

fn median_ms(mut t: Vec<Duration>) -> (f64, f64) {
    t.sort();
    (t[0].as_secs_f64() * 1e3, t[t.len() / 2].as_secs_f64() * 1e3)
}

fn main() -> Result<(), kiln::Error> {
    if std::env::args().nth(1).as_deref() == Some("runtime")
        && let Some(path) = std::env::var_os("KILN_EMBEDDINGGEMMA_GGUF")
    {
        let start = Instant::now();
        let e = kiln::Embedder::builder().task("query").open(&path)?;
        e.embed("Which planet is known as the Red Planet?")?;
        println!(
            "runtime API: first embedding {:.1} ms after main",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    let start = Instant::now();
    let v: [f32; 768] = Gemma::embed("Which planet is known as the Red Planet?")?;
    println!(
        "first embedding {:.1} ms after main; {:+.5?}",
        start.elapsed().as_secs_f64() * 1e3,
        &v[..4]
    );
    let small: [f32; 256] = Gemma::embed_dim::<256>("Which planet is known as the Red Planet?")?;
    println!("Matryoshka 256: {:+.5?}", &small[..4]);

    // The same file through the runtime API, when it is on disk.
    let Some(path) = std::env::var_os("KILN_EMBEDDINGGEMMA_GGUF") else {
        return Ok(());
    };
    let runtime = kiln::Embedder::builder().task("query").open(&path)?;
    let texts = [
        "Hello world",
        "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
        "Le renard brun rapide saute par-dessus le chien paresseux.",
    ];
    for t in texts {
        assert_eq!(runtime.embed(t)?, Gemma::embed(t)?.to_vec(), "{t:?}");
    }
    println!(
        "vectors equal the runtime API's bit for bit on {} texts",
        texts.len()
    );
    let (mut rt, mut em) = (Vec::new(), Vec::new());
    let mut out = vec![0.0f32; 768];
    for _ in 0..30 {
        let t = Instant::now();
        runtime.embed_into(texts[1], &mut out)?;
        rt.push(t.elapsed());
        let t = Instant::now();
        Gemma::embed(texts[1])?;
        em.push(t.elapsed());
    }
    let (a, b) = (median_ms(rt), median_ms(em));
    println!("runtime API: min {:.2} ms, median {:.2} ms", a.0, a.1);
    println!("#[kiln::model]: min {:.2} ms, median {:.2} ms", b.0, b.1);
    Ok(())
}
