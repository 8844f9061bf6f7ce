//! all-MiniLM-L6-v2 compiled into the binary with `#[kiln::model]`: no model
//! file at run time. Prints the first values of each vector and the cosine
//! similarity of the first text with the others.
//!
//! ```text
//! cargo run --release --example minilm_embedded -- "first text" "second text"
//! ```

#[kiln::model(arch = "bert", path = "tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf")]
pub struct MiniLm;

fn main() -> Result<(), kiln::Error> {
    let mut texts: Vec<String> = std::env::args().skip(1).collect();
    if texts.is_empty() {
        texts = vec![
            "Hello world".into(),
            "A greeting to the planet".into(),
            "The stock market fell sharply today".into(),
        ];
    }
    let start = std::time::Instant::now();
    let first: [f32; MiniLm::DIM] = MiniLm::embed(&texts[0])?;
    eprintln!(
        "first embedding after {:.1} ms (model {} dims, {} tokens max)",
        start.elapsed().as_secs_f64() * 1e3,
        MiniLm::DIM,
        MiniLm::MAX_TOKENS
    );
    for text in &texts {
        let v = MiniLm::embed(text)?;
        println!("{:.4} {:+.6?} {text:?}", kiln::cosine(&first, &v), &v[..4]);
    }
    Ok(())
}
