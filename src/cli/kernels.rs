//! `kiln kernels`: the compiled kernel variants, the ISA this CPU gets, and
//! the generated source of one kernel.

use std::io::Write as _;

use anyhow::bail;
use clap::Args;
use kiln::kernels::{SOURCES, best, compiled, compiled_isa, for_isa, source, variants};

/// Arguments of `kiln kernels`.
#[derive(Args)]
pub struct KernelsArgs {
    /// Print the generated source of this kernel (or op), e.g. `rms_norm_768`.
    #[arg(long, value_name = "NAME")]
    show: Option<String>,
    /// The ISA whose source `--show` prints (default: the one this CPU gets).
    #[arg(long, value_name = "ISA")]
    isa: Option<String>,
}

/// Runs `kiln kernels`.
pub fn run(args: &KernelsArgs) -> anyhow::Result<()> {
    let isa = match &args.isa {
        Some(name) => compiled_isa(name).map_err(anyhow::Error::msg)?,
        None => best().isa(),
    };
    let mut out = std::io::stdout().lock();
    if let Some(name) = &args.show {
        match source(isa, name) {
            Some(text) => write!(out, "{text}")?,
            None => {
                let known = SOURCES.iter().filter(|s| s.0 == isa.name()).count();
                bail!(
                    "no generated function `{name}` for {} ({known} exist; `kiln kernels` lists the kernels)",
                    isa.name()
                );
            }
        }
        return Ok(());
    }
    writeln!(out, "this CPU uses: {}", best().isa().name())?;
    for &isa in compiled() {
        let status = if for_isa(isa).is_some() {
            "supported"
        } else {
            "not supported by this CPU"
        };
        let vs = variants(isa);
        writeln!(out, "\n{} ({status}), {} variants:", isa.name(), vs.len())?;
        for v in vs {
            writeln!(out, "  {v}")?;
        }
    }
    Ok(())
}
