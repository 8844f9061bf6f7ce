//! `kiln convert DIR -o FILE.gguf [--type q8_0|f16|f32]`.

use std::path::PathBuf;

use kiln::convert::{ConvertOptions, OutType, convert};

/// Convert a Hugging Face / sentence-transformers checkpoint to GGUF.
#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer files).
    dir: PathBuf,
    /// Output GGUF file.
    #[arg(short, long)]
    output: PathBuf,
    /// Tensor type: q8_0 (default), f16 or f32.
    #[arg(long = "type", default_value = "q8_0")]
    out_type: OutType,
    /// `general.name` (default: the directory's name).
    #[arg(long)]
    name: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = ConvertOptions {
        out_type: args.out_type,
        name: args.name,
    };
    let bar = super::bytes_bar(0, "convert");
    let report = convert(&args.dir, &args.output, &opts, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} ({}, {} tensors, {:.1} MB)",
        args.output.display(),
        report.arch,
        report.tensors.len(),
        report.file_bytes as f64 / 1e6
    );
    Ok(())
}
