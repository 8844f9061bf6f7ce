//! Reading and checking the model file at compile time.
//!
//! The GGUF is memory-mapped by `kiln-runtime`'s reader, which parses the
//! header and metadata and never touches the weights. Then the runtime's own
//! model constructor and tokenizer builder run over it (with kernels that are
//! never called), so a file the runtime would refuse is refused here, as a
//! compile error, and the first use at run time cannot fail on the model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_kernels_gen::{ModelShapes, ShapeTable, shapes};
use kiln_runtime::gguf::{GgmlType, GgufError, GgufFile};
use kiln_runtime::model::{ModelOptions, open_encoder};
use kiln_runtime::tokenizer::Tokenizer;
use syn::LitStr;

use crate::args::Args;
use crate::no_kernels::NO_KERNELS;

/// The environment variable that, when set at compile time, replaces the
/// crate's manifest directory as the base of relative `path`s.
pub(crate) const MODEL_DIR_ENV: &str = "KILN_MODEL_DIR";

/// Alignment of the embedded bytes (`kiln::__private::Aligned`): a multiple
/// of every GGUF alignment kiln accepts and of a cache line.
pub(crate) const EMBED_ALIGN: u64 = 64;

/// Tensor types an embedded model may hold (what the runtime's weight
/// loader takes).
const SUPPORTED_TYPES: &[GgmlType] =
    &[GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0];

/// What the expansion needs to know about the model.
pub(crate) struct Model {
    /// Absolute path of the file.
    pub path: PathBuf,
    /// The parsed header.
    pub file: Arc<GgufFile>,
    /// `general.architecture` (`bert`, `gemma-embedding`).
    pub gguf_arch: String,
    /// Width of the model's vectors.
    pub model_dim: usize,
    /// Context length in tokens.
    pub context: usize,
    /// Kernel shapes the model uses that the built-in table lacks.
    pub missing_kernels: Vec<String>,
}

fn err(span: &LitStr, msg: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span.span(), msg.to_string())
}

/// The GGUF architecture an `arch` option stands for.
fn gguf_arch(arch: &LitStr) -> syn::Result<&'static str> {
    match arch.value().as_str() {
        "bert" => Ok("bert"),
        "gemma" | "gemma-embedding" => Ok("gemma-embedding"),
        other => Err(err(
            arch,
            format!(
                "unknown arch `{other}`; #[kiln::model] supports \"bert\" (BERT encoders such as \
                 all-MiniLM-L6-v2) and \"gemma\" (EmbeddingGemma)"
            ),
        )),
    }
}

/// The path the model is read from: `path_env`'s variable when it is set,
/// else `path`, as written (for messages).
pub(crate) fn chosen_path(args: &Args) -> String {
    args.path_env
        .as_ref()
        .and_then(|var| std::env::var(var.value()).ok())
        .unwrap_or_else(|| args.path.value())
}

/// Where `p` points: absolute as given, else under `KILN_MODEL_DIR` or
/// the crate's manifest directory.
fn resolve(path: &LitStr, p: &str) -> syn::Result<PathBuf> {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        return Ok(p);
    }
    let base = std::env::var_os(MODEL_DIR_ENV)
        .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR"))
        .ok_or_else(|| err(path, "CARGO_MANIFEST_DIR is not set (build with cargo)"))?;
    Ok(Path::new(&base).join(p))
}

fn open_error(path: &LitStr, p: &str, e: GgufError) -> syn::Error {
    match e {
        GgufError::Io { source, .. } => err(
            path,
            format!(
                "cannot read model file `{p}` (relative paths start at the crate's manifest \
                 directory, or at ${MODEL_DIR_ENV} when set): {source}"
            ),
        ),
        GgufError::Format { offset, kind, .. } => err(
            path,
            format!("`{p}` is not a GGUF file kiln can read: at byte {offset}: {kind}"),
        ),
        other => err(path, format!("`{p}`: {other}")),
    }
}

/// Reads and checks the model file named by `args`.
pub(crate) fn inspect(args: &Args) -> syn::Result<Model> {
    let want_arch = gguf_arch(&args.arch)?;
    let p = chosen_path(args);
    let path = resolve(&args.path, &p)?;
    let file = Arc::new(GgufFile::open(&path).map_err(|e| open_error(&args.path, &p, e))?);

    let found = file
        .architecture()
        .map_err(|e| open_error(&args.path, &p, e))?;
    if found != want_arch {
        return Err(err(
            &args.arch,
            format!(
                "`{p}` holds a `{found}` model, not `{want_arch}` (its general.architecture is \
                 \"{found}\")"
            ),
        ));
    }
    if let Some(t) = file
        .tensors()
        .iter()
        .find(|t| !SUPPORTED_TYPES.contains(&t.ty))
    {
        return Err(err(
            &args.path,
            format!(
                "`{p}`: tensor `{}` has type {:?}, which #[kiln::model] cannot run (supported: \
                 Q8_0, F32, F16, BF16)",
                t.name, t.ty
            ),
        ));
    }
    if !EMBED_ALIGN.is_multiple_of(file.alignment()) {
        return Err(err(
            &args.path,
            format!(
                "`{p}` aligns its tensors to {} bytes; embedded models support alignments that \
                 divide {EMBED_ALIGN}",
                file.alignment()
            ),
        ));
    }

    let model = open_encoder(file.clone(), &NO_KERNELS, &ModelOptions::default())
        .map_err(|e| err(&args.path, format!("`{p}`: {e}")))?;
    Tokenizer::from_gguf(&file).map_err(|e| err(&args.path, format!("`{p}`: tokenizer: {e}")))?;
    let needed = needed_kernels(&file, want_arch).map_err(|e| err(&args.path, e))?;

    Ok(Model {
        path,
        gguf_arch: want_arch.to_owned(),
        model_dim: model.dim(),
        context: model.context_length(),
        missing_kernels: shapes::builtin().missing(&needed),
        file,
    })
}

/// The kernel shapes the runtime will ask for when it opens this model
/// (mirrors what `kiln_runtime::model` requests from a `KernelSet`).
fn needed_kernels(file: &GgufFile, arch: &str) -> Result<ShapeTable, String> {
    let md = file.metadata();
    let get = |key: &str| -> Result<usize, String> {
        md.get_u32(&format!("{arch}.{key}"))
            .map(|v| v as usize)
            .map_err(|e| e.to_string())
    };
    let hidden = get("embedding_length")?;
    let ffn = get("feed_forward_length")?;
    let n_head = get("attention.head_count")?;
    // Matmul and quantization kernels are only specialized for Q8_0 weights.
    let q8 = file
        .tensor("blk.0.attn_q.weight")
        .is_some_and(|t| t.ty == GgmlType::Q8_0);
    let mut table = ShapeTable::new();
    let shapes = match arch {
        "bert" => ModelShapes {
            hidden,
            head_dim: hidden / n_head.max(1),
            ffn,
            matmuls: vec![(hidden, hidden), (ffn, hidden), (hidden, ffn)],
            rms_norm: false,
            geglu: false,
            rope: false,
            head_norm: false,
        },
        _ => {
            let head_dim = get("attention.key_length")?;
            let q_dim = n_head * head_dim;
            let kv_dim = get("attention.head_count_kv")? * head_dim;
            let mut matmuls = vec![
                (q_dim, hidden),
                (kv_dim, hidden),
                (hidden, q_dim),
                (ffn, hidden),
                (hidden, ffn),
            ];
            for i in [2, 3] {
                matmuls.push((
                    get(&format!("dense_{i}_feat_out"))?,
                    get(&format!("dense_{i}_feat_in"))?,
                ));
            }
            ModelShapes {
                hidden,
                head_dim,
                ffn,
                matmuls,
                rms_norm: true,
                geglu: true,
                rope: true,
                head_norm: true,
            }
        }
    };
    let shapes = ModelShapes {
        matmuls: if q8 { shapes.matmuls } else { Vec::new() },
        ..shapes
    };
    table.add_model(&shapes);
    Ok(table)
}
