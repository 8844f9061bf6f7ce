//! `kiln tokenize`: token ids of a text, as `llama-tokenize` prints them.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use kiln::runtime::gguf::GgufFile;
use kiln::runtime::model::is_decoder_arch;
use kiln::runtime::tokenizer::{EncodeOptions, Tokenizer};

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

/// Runs `kiln tokenize`: an embedding model's ids as it embeds the text
/// (prompt and special tokens included); a decoder's as it reads a prompt
/// (its start token, if the model adds one).
pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let path = super::resolve_model(&args.model.model)?;
    let file =
        Arc::new(GgufFile::open(&path).with_context(|| format!("cannot open {}", path.display()))?);
    if is_decoder_arch(file.architecture()?) {
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let opts = EncodeOptions {
            add_special: true,
            parse_special: args.model.parse_special,
        };
        print(
            &tokenizer.encode(&args.text, &opts)?,
            &tokenizer,
            args.verbose,
        )
    } else {
        let embedder = args
            .model
            .builder()
            .open_file(file)
            .with_context(|| format!("cannot open {}", path.display()))?;
        print(
            &embedder.tokenize(&args.text)?,
            embedder.tokenizer(),
            args.verbose,
        )
    }
}

/// Prints ids as `llama-tokenize` does, or one per line with its piece.
fn print(ids: &[u32], tokenizer: &Tokenizer, verbose: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if verbose {
        for id in ids {
            writeln!(out, "{id:>7} -> {:?}", tokenizer.token_to_piece(*id))?;
        }
    } else {
        writeln!(out, "{ids:?}")?;
    }
    Ok(())
}
