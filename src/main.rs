//! The `kiln` command line tool.

mod cli {
    pub mod kernels;
}

use clap::Parser;

/// kiln: embeddings and small-model generation on CPUs.
#[derive(Parser)]
#[command(name = "kiln", version, about)]
enum Cli {
    /// List the generated kernel variants and the ISA this CPU gets, or print
    /// one kernel's generated source (`--show NAME --isa avx2`).
    Kernels(cli::kernels::KernelsArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::Kernels(args) => cli::kernels::run(&args),
    }
}
