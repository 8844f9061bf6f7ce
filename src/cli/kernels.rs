//! `kiln kernels`: the compiled kernel variants, the ISA this CPU gets, the
//! generated source of one kernel, and this machine's limits.

use std::io::Write as _;

use anyhow::bail;
use clap::Args;
use kiln::kernels::{any_isa, best, compiled, compiled_isa, for_isa, limits, source, variants};

/// Arguments of `kiln kernels`.
#[derive(Args)]
pub struct KernelsArgs {
    /// Print the generated source of this kernel (or op), e.g. `rms_norm_768`.
    #[arg(long, value_name = "NAME")]
    show: Option<String>,
    /// The ISA whose source `--show` prints (default: the one this CPU gets);
    /// any ISA kiln generates kernels for, compiled here or not (e.g.
    /// `neon-dotprod`, `wasm-simd128`, `wasm-relaxed-simd`).
    #[arg(long, value_name = "ISA")]
    isa: Option<String>,
    /// Measure this machine's limits instead: read bandwidth with
    /// `--threads` threads, the int8 multiply-add peak of one core with
    /// the ISA's Q8_0 dot sequence (the floors of `kiln bench --limits`),
    /// and the int8 ceiling of one core: the ISA's best multiply-accumulate
    /// instructions on registers, each form measured.
    #[arg(long, conflicts_with = "show")]
    limits: bool,
    /// Threads reading at once for `--limits`.
    #[arg(long, default_value_t = 1, requires = "limits")]
    threads: usize,
    /// Print `--limits` as one JSON line.
    #[arg(long, requires = "limits")]
    json: bool,
}

/// Runs `kiln kernels`.
pub fn run(args: &KernelsArgs) -> anyhow::Result<()> {
    let isa = match &args.isa {
        Some(name) if args.show.is_some() => any_isa(name).map_err(anyhow::Error::msg)?,
        Some(name) => compiled_isa(name).map_err(anyhow::Error::msg)?,
        None => best().isa(),
    };
    let mut out = std::io::stdout().lock();
    if args.limits {
        let threads = args.threads.max(1);
        let bw = limits::read_bandwidth_gbs(threads);
        let peak = limits::int8_peak_gops(isa);
        let forms = limits::int8_ceiling_forms(isa);
        let ceiling = limits::int8_ceiling_gops(&forms);
        if args.json {
            let probes: Vec<_> = forms
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "instructions": f.instructions,
                        "gops_per_thread": f.gops,
                        "in_ceiling": f.in_ceiling,
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "isa": isa.name(),
                "threads": threads,
                "read_bandwidth_gbs": bw,
                "int8_peak_gops_per_thread": peak,
                "int8_ceiling_gops_per_thread": ceiling,
                "int8_ceiling_probes": probes,
            });
            writeln!(out, "{doc}")?;
        } else {
            writeln!(out, "read bandwidth  {bw:.1} GB/s ({threads} threads)")?;
            match peak {
                Some(p) => writeln!(
                    out,
                    "int8 peak       {p:.0} GOPS per thread ({}, kiln's Q8_0 dot sequence)",
                    isa.name()
                )?,
                None => writeln!(out, "int8 peak       no probe for {}", isa.name())?,
            }
            match ceiling {
                Some(c) => writeln!(
                    out,
                    "int8 ceiling    {c:.0} GOPS per thread ({}, best instructions on registers)",
                    isa.name()
                )?,
                None => writeln!(
                    out,
                    "int8 ceiling    none for {} (no int8 multiply-accumulate instruction)",
                    isa.name()
                )?,
            }
            for f in &forms {
                let note = if f.in_ceiling {
                    ""
                } else {
                    ", not usable by this ISA's kernels"
                };
                writeln!(
                    out,
                    "  {:<32}{:.0} GOPS per thread{note}",
                    f.instructions, f.gops
                )?;
            }
        }
        return Ok(());
    }
    if let Some(name) = &args.show {
        match source(isa, name) {
            Ok(text) => write!(out, "{text}")?,
            Err(known) => {
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
