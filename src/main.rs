//! The `kiln` command line tool.

mod cli;

use clap::Parser;

/// kiln: embeddings and small-model generation on CPUs.
#[derive(Parser)]
#[command(name = "kiln", version, about)]
enum Cli {
    /// Download a model into the cache (`$KILN_HOME`, default ~/.cache/kiln) by short name.
    Pull(cli::pull::Args),
    /// Convert a Hugging Face checkpoint directory to GGUF.
    Convert(cli::convert::Args),
    /// List cached models (and models found under a directory).
    List(cli::list::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::Pull(args) => cli::pull::run(args),
        Cli::Convert(args) => cli::convert::run(args),
        Cli::List(args) => cli::list::run(args),
    }
}
