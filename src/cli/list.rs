//! `kiln list [DIR]`: the models in the cache, and GGUF files and Hugging
//! Face checkpoints found under DIR, with arch, type, size and dims.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use kiln::hub::{CATALOG, Cache};
use kiln::runtime::gguf::GgufFile;

/// List cached models (and models found under DIR).
#[derive(clap::Args)]
pub struct Args {
    /// Also look for GGUF files and checkpoint directories under DIR.
    dir: Option<PathBuf>,
}

/// Deepest directory level searched under DIR.
const MAX_DEPTH: usize = 5;

struct Row {
    name: String,
    arch: String,
    ty: String,
    size: u64,
    dims: String,
    path: PathBuf,
}

fn gguf_row(name: String, path: &Path) -> Row {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match GgufFile::open(path) {
        Ok(g) => {
            let md = g.metadata();
            let arch = g.architecture().unwrap_or("?").to_owned();
            let ty = md
                .get_u32("general.file_type")
                .map(kiln_runtime::gguf::file_type_name)
                .unwrap_or_else(|_| "?".into());
            let get = |k: &str| {
                md.get_u32(&format!("{arch}.{k}"))
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| "?".into())
            };
            let dims = format!(
                "{} x {} layers, ctx {}",
                get("embedding_length"),
                get("block_count"),
                get("context_length")
            );
            Row {
                name,
                arch,
                ty,
                size,
                dims,
                path: path.to_owned(),
            }
        }
        Err(e) => Row {
            name,
            arch: "unreadable".into(),
            ty: "-".into(),
            size,
            dims: e.to_string(),
            path: path.to_owned(),
        },
    }
}

fn checkpoint_row(dir: &Path) -> Option<Row> {
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
    let model_type = cfg["model_type"].as_str()?;
    let size: u64 = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum();
    if size == 0 {
        return None;
    }
    let get = |k: &str| {
        cfg[k]
            .as_u64()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    };
    Some(Row {
        name: dir.file_name()?.to_string_lossy().into_owned(),
        arch: format!("hf:{model_type}"),
        ty: cfg["torch_dtype"]
            .as_str()
            .or(cfg["dtype"].as_str())
            .unwrap_or("?")
            .to_owned(),
        size,
        dims: format!(
            "{} x {} layers, ctx {}",
            get("hidden_size"),
            get("num_hidden_layers"),
            get("max_position_embeddings")
        ),
        path: dir.to_owned(),
    })
}

fn scan(dir: &Path, depth: usize, rows: &mut Vec<Row>) {
    if let Some(r) = checkpoint_row(dir) {
        // A checkpoint's subfolders (sentence-transformers modules) are part of it.
        rows.push(r);
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && depth < MAX_DEPTH {
            scan(&p, depth + 1, rows);
        } else if p.extension().is_some_and(|x| x == "gguf") {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            rows.push(gguf_row(name, &p));
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cache = Cache::from_env()?;
    let mut rows = Vec::new();
    for spec in CATALOG {
        let name = match spec.aliases {
            [] => spec.name.to_owned(),
            aliases => format!("{} ({})", spec.name, aliases.join(", ")),
        };
        match cache.cached_spec(spec) {
            Some(path) => rows.push(gguf_row(name, &path)),
            None => rows.push(Row {
                name,
                arch: "-".into(),
                ty: "-".into(),
                size: 0,
                dims: "not pulled (kiln pull NAME)".into(),
                path: cache.model_path(spec),
            }),
        }
    }
    if let Some(dir) = &args.dir {
        scan(dir, 0, &mut rows);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<28} {:<16} {:<7} {:>9}  {:<30} PATH",
        "NAME", "ARCH", "TYPE", "SIZE", "DIMS"
    )?;
    for r in rows {
        let size = if r.size == 0 {
            "-".to_owned()
        } else {
            format!("{:.1} MB", r.size as f64 / 1e6)
        };
        writeln!(
            out,
            "{:<28} {:<16} {:<7} {:>9}  {:<30} {}",
            r.name,
            r.arch,
            r.ty,
            size,
            r.dims,
            r.path.display()
        )?;
    }
    Ok(())
}
