//! The `kiln` command line tool.

mod cli;

use clap::Parser;

/// kiln: embeddings and small-model generation on CPUs.
#[derive(Parser)]
#[command(name = "kiln", version, about)]
enum Cli {
    /// Convert a Hugging Face checkpoint directory to GGUF.
    Convert(cli::convert::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::Convert(args) => cli::convert::run(args),
    }
}
