//! The `kiln` command line tool.

mod cli;

use clap::{Parser, Subcommand};

/// kiln: embeddings and small-model generation on CPUs, with kernels
/// generated for this machine's instruction set.
#[derive(Parser)]
#[command(name = "kiln", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed texts (arguments, --input FILE, or stdin lines).
    Embed(cli::embed::EmbedArgs),
    /// Generate text from a prompt with a decoder model (streams to stdout).
    Generate(cli::generate::GenerateArgs),
    /// Chat with a decoder model (interactive on a terminal, one message per
    /// stdin line otherwise).
    Chat(cli::generate::ChatArgs),
    /// Cosine similarity of the first text to each of the others.
    Similarity(cli::similarity::SimilarityArgs),
    /// Print the token ids of a text.
    Tokenize(cli::tokenize::TokenizeArgs),
    /// Show a GGUF file: header, metadata, tensors and model facts.
    Inspect(cli::inspect::Args),
    /// List the generated kernel variants and the ISA this CPU gets, or print
    /// one kernel's generated source (`--show NAME --isa avx2`).
    Kernels(cli::kernels::KernelsArgs),
    /// Time loading, warm latency and batch throughput of a model.
    Bench(cli::bench::BenchArgs),
    /// Download a model into the cache (`$KILN_HOME`, default ~/.cache/kiln) by short name.
    Pull(cli::pull::Args),
    /// Convert a Hugging Face checkpoint directory to GGUF.
    Convert(cli::convert::Args),
    /// List cached models (and models found under a directory).
    List(cli::list::Args),
    /// Serve embeddings over HTTP (OpenAI /v1/embeddings and TEI /embed).
    #[cfg(feature = "server")]
    Serve(cli::serve::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    match run(Cli::parse().command) {
        // `kiln kernels | head`: the reader left; that is not a failure.
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

/// Whether `e` comes from writing to a pipe whose reader has closed.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Embed(a) => cli::embed::run(a),
        Command::Generate(a) => cli::generate::run(a),
        Command::Chat(a) => cli::generate::run_chat(a),
        Command::Similarity(a) => cli::similarity::run(a),
        Command::Tokenize(a) => cli::tokenize::run(a),
        Command::Inspect(a) => cli::inspect::run(&a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Kernels(a) => cli::kernels::run(&a),
        Command::Pull(a) => cli::pull::run(a),
        Command::Convert(a) => cli::convert::run(a),
        Command::List(a) => cli::list::run(a),
        #[cfg(feature = "server")]
        Command::Serve(a) => cli::serve::run(a),
    }
}
