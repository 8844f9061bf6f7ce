//! The `kiln` command line: one module per subcommand.

pub mod inspect;

use clap::Parser;

/// kiln: embeddings and small-model generation on CPUs.
#[derive(Parser)]
#[command(name = "kiln", version, about)]
pub enum Cli {
    /// Show a GGUF file: header, metadata, tensors and model facts.
    Inspect(inspect::Args),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Cli::Inspect(args) => inspect::run(&args),
        }
    }
}
