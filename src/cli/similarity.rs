//! `kiln similarity`: cosine similarities between texts.

use std::io::Write as _;

use clap::Args;

use super::embed::ModelArgs;

/// Arguments of `kiln similarity`.
#[derive(Args, Debug)]
pub struct SimilarityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Two or more texts: the first is compared with each of the others.
    #[arg(required = true, num_args = 2..)]
    pub texts: Vec<String>,
}

/// Runs `kiln similarity`.
pub fn run(args: SimilarityArgs) -> anyhow::Result<()> {
    let embedder = args.model.open()?;
    let vectors = embedder.embed_batch(&args.texts)?;
    let (first, rest) = vectors.split_first().expect("clap requires two texts");
    let mut out = std::io::stdout().lock();
    for (text, v) in args.texts[1..].iter().zip(rest) {
        writeln!(out, "{:.4}\t{}", kiln::cosine(first, v), text)?;
    }
    Ok(())
}
