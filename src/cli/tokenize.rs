//! `kiln tokenize`: token ids of a text, as `llama-tokenize` prints them.

use std::io::Write as _;

use clap::Args;

use super::embed::ModelArgs;

/// Arguments of `kiln tokenize`.
#[derive(Args, Debug)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to tokenize.
    pub text: String,
    /// Print each id with its piece.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Runs `kiln tokenize`.
pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let embedder = args.model.open()?;
    let ids = embedder.tokenize(&args.text)?;
    let mut out = std::io::stdout().lock();
    if args.verbose {
        for id in &ids {
            writeln!(
                out,
                "{id:>7} -> {:?}",
                embedder.tokenizer().token_to_piece(*id)
            )?;
        }
    } else {
        writeln!(out, "{ids:?}")?;
    }
    Ok(())
}
