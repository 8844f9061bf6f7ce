//! The `kiln` command line tool.

use clap::Parser;

/// kiln: embeddings and small-model generation on CPUs.
#[derive(Parser)]
#[command(name = "kiln", version, about)]
enum Cli {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli {}
}
