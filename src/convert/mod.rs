//! `kiln convert`: Hugging Face / sentence-transformers checkpoints to GGUF,
//! written the way llama.cpp's `convert_hf_to_gguf.py` (then `llama-quantize`
//! for Q8_0) writes them: same architecture names, metadata keys, tokenizer
//! metadata, tensor names, tensor order and per-tensor types, so the files
//! load in llama.cpp and llama.cpp's load in kiln.
//!
//! Architectures: `bert` (BertModel, e.g. all-MiniLM-L6-v2),
//! `gemma-embedding` (Gemma3TextModel, EmbeddingGemma, with its
//! sentence-transformers Dense modules) and `gemma3` (Gemma3ForCausalLM).
//!
//! Descriptive `general.*` keys are not all written: kiln writes
//! `general.architecture`, `type`, `name`, `sampling.*` (from
//! generation_config.json), `quantization_version` and `file_type`; llama.cpp
//! also derives `basename`, `size_label`, `license`, `tags`, `datasets`, ...
//! from the model card. BERT's `tokenizer.ggml.pre` is always `jina-v2-en`
//! (what llama.cpp's tokenizer hash gives for uncased WordPiece vocabularies).
//!
//! Conversion streams: tensors are read a few rows at a time, converted and
//! written, so memory stays small whatever the model size. The output is
//! written to `<out>.partial` and renamed at the end: an error or an
//! interruption never leaves a half-written file under the final name.

mod arch;
mod safetensors;
pub mod sentencepiece;
mod vocab;

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kiln_runtime::gguf::{GgmlType, GgufWriter, TensorInfo, WriteError};
use kiln_runtime::quant::{BlockQ8_0, QK8_0, quantize_row_q8_0_reference};
use serde_json::Value as Json;

/// Everything that can go wrong converting a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("checkpoint {dir} has no {file}")]
    MissingFile { dir: PathBuf, file: String },
    #[error("{path}: invalid JSON: {why}")]
    Json { path: PathBuf, why: String },
    #[error("{path}: missing or invalid `{key}`")]
    Config { path: PathBuf, key: String },
    #[error(
        "{path}: model_type {model_type:?} is not supported (kiln converts bert, gemma3_text, gemma3)"
    )]
    UnknownModelType { path: PathBuf, model_type: String },
    #[error("{path}: {why}")]
    Safetensors { path: PathBuf, why: String },
    #[error("{path}: {source}")]
    SentencePiece {
        path: PathBuf,
        source: sentencepiece::SpError,
    },
    #[error("checkpoint tensor {name:?} has no GGUF name for arch {arch}")]
    UnknownTensor { arch: &'static str, name: String },
    #[error("checkpoint has no tensor {name:?}")]
    MissingTensor { name: String },
    #[error("tensor {name}: {why}")]
    Shape { name: String, why: String },
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: WriteError },
    #[error("unsupported checkpoint: {0}")]
    Unsupported(String),
    /// A config or tokenizer value that is present but out of range.
    #[error("{path}: `{key}` = {value} is invalid: {why}")]
    Invalid {
        path: PathBuf,
        key: String,
        value: String,
        why: String,
    },
}

impl ConvertError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The tensor type requested for the output (`--type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutType {
    F32,
    F16,
    #[default]
    Q8_0,
}

impl OutType {
    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 7,
        }
    }

    /// The name used in file names (`Q8_0`, `F16`, `F32`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q8_0 => "Q8_0",
        }
    }
}

impl FromStr for OutType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            _ => Err(format!("unknown type {s:?} (expected q8_0, f16 or f32)")),
        }
    }
}

/// Options of [`convert`].
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    /// Output tensor type.
    pub out_type: OutType,
    /// `general.name`; the checkpoint directory's name when `None`.
    pub name: Option<String>,
}

/// What [`convert`] wrote.
#[derive(Clone, Debug)]
pub struct ConvertReport {
    /// GGUF architecture name.
    pub arch: &'static str,
    /// Tensors in file order, with their data offsets (relative to the data section).
    pub tensors: Vec<TensorInfo>,
    /// File offset of the data section.
    pub data_offset: u64,
    /// Size of the file in bytes.
    pub file_bytes: u64,
}

/// Progress of a conversion: bytes of tensor data written so far, and the total.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

pub(crate) fn read_json(path: &Path) -> Result<Json, ConvertError> {
    read_json_opt(path)?.ok_or_else(|| ConvertError::MissingFile {
        dir: path.parent().unwrap_or(Path::new("")).to_owned(),
        file: path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

pub(crate) fn read_json_opt(path: &Path) -> Result<Option<Json>, ConvertError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConvertError::io(path, e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| ConvertError::Json {
            path: path.to_owned(),
            why: e.to_string(),
        })
}

/// The GGUF type a tensor gets: llama-quantize's rules (only 2-D+ `.weight`
/// tensors are quantized; norms, biases, BERT's position and token-type
/// embeddings stay F32), which convert_hf_to_gguf.py also follows for F16.
pub fn tensor_type(name: &str, dims: &[u64], out: OutType) -> GgmlType {
    let n_dims = dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1);
    let keep_f32 = !name.ends_with(".weight")
        || n_dims < 2
        || name.ends_with("_norm.weight")
        || name == "position_embd.weight"
        || name == "token_types.weight";
    match out {
        _ if keep_f32 => GgmlType::F32,
        OutType::F32 => GgmlType::F32,
        OutType::F16 => GgmlType::F16,
        // A row that is not whole Q8_0 blocks cannot be quantized: llama-quantize
        // refuses such a model; kiln keeps the tensor in F16 instead.
        OutType::Q8_0 if !dims[0].is_multiple_of(QK8_0 as u64) => GgmlType::F16,
        OutType::Q8_0 => GgmlType::Q8_0,
    }
}

/// llama.cpp's tensor order (`weight_name_comparer` in llama-model-loader,
/// which llama-quantize writes in): tensors outside blocks first, then
/// block by block, by name within each.
pub fn llama_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn layer(n: &str) -> i64 {
        n.strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|l| l.parse().ok())
            .unwrap_or(-1)
    }
    layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
}

/// Converts the checkpoint in `dir` to a GGUF file at `out`.
pub fn convert(
    dir: &Path,
    out: &Path,
    opts: &ConvertOptions,
    progress: Progress<'_>,
) -> Result<ConvertReport, ConvertError> {
    let plan = arch::plan(dir, opts)?;
    let partial = partial_path(out);
    let result = write_plan(&plan, &partial, progress).and_then(|report| {
        std::fs::rename(&partial, out).map_err(|e| ConvertError::io(out, e))?;
        Ok(report)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// `<out>.partial`: where a file is written before it is renamed into place.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

fn write_plan(
    plan: &arch::Plan,
    path: &Path,
    progress: Progress<'_>,
) -> Result<ConvertReport, ConvertError> {
    let io_err = |e| ConvertError::io(path, e);
    let w_err = |source| ConvertError::Write {
        path: path.to_owned(),
        source,
    };
    let mut gw = GgufWriter::new();
    for (key, value) in &plan.metadata {
        gw.add_metadata(key.clone(), value.clone()).map_err(w_err)?;
    }
    for t in &plan.tensors {
        gw.add_tensor(t.name.clone(), &t.dims, t.ty)
            .map_err(w_err)?;
    }
    let file = File::create(path).map_err(io_err)?;
    let mut out = gw
        .begin(BufWriter::with_capacity(1 << 20, file))
        .map_err(w_err)?;
    let infos = out.tensors().to_vec();
    let data_offset = out.data_offset();
    let total: u64 = infos.iter().map(|t| t.n_bytes).sum();
    let mut done = 0;
    let (mut raw, mut vals, mut blocks, mut bytes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in &plan.tensors {
        let st = &plan.files[t.file];
        let src = &st.tensors()[&t.src_name];
        let row_len = src.row_len();
        let chunk_rows = ((1u64 << 22) / (row_len * 4)).max(1);
        let mut first = 0;
        while first < t.rows {
            let n = chunk_rows.min(t.rows - first);
            st.read_rows_f32(src, first, n, &mut raw, &mut vals)?;
            if t.shift != 0.0 {
                vals.iter_mut().for_each(|v| *v += t.shift);
            }
            encode(&vals, t.ty, &mut blocks, &mut bytes);
            out.write_data(&bytes).map_err(w_err)?;
            first += n;
            done += bytes.len() as u64;
            progress(done, total);
        }
    }
    let file = out
        .finish()
        .map_err(w_err)?
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    let file_bytes = file.metadata().map_err(io_err)?.len();
    Ok(ConvertReport {
        arch: plan.arch,
        tensors: infos,
        data_offset,
        file_bytes,
    })
}

/// Encodes f32 values as `ty` into `bytes` (little-endian ggml layout).
fn encode(vals: &[f32], ty: GgmlType, blocks: &mut Vec<BlockQ8_0>, bytes: &mut Vec<u8>) {
    bytes.clear();
    match ty {
        GgmlType::F32 => bytes.extend(vals.iter().flat_map(|v| v.to_le_bytes())),
        GgmlType::F16 => bytes.extend(
            vals.iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes()),
        ),
        GgmlType::Q8_0 => {
            blocks.clear();
            blocks.resize(vals.len() / QK8_0, BlockQ8_0::default());
            quantize_row_q8_0_reference(vals, blocks);
            for b in blocks.iter() {
                bytes.extend_from_slice(&b.d.to_le_bytes());
                bytes.extend(b.qs.iter().map(|&q| q as u8));
            }
        }
        // tensor_type only picks F32, F16 and Q8_0.
        _ => bytes.extend(vals.iter().flat_map(|v| v.to_le_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_llama_quantize() {
        let q = OutType::Q8_0;
        assert_eq!(
            tensor_type("blk.0.attn_q.weight", &[384, 384], q),
            GgmlType::Q8_0
        );
        assert_eq!(tensor_type("blk.0.attn_q.bias", &[384], q), GgmlType::F32);
        assert_eq!(
            tensor_type("blk.0.attn_norm.weight", &[768], q),
            GgmlType::F32
        );
        assert_eq!(
            tensor_type("position_embd.weight", &[384, 512], q),
            GgmlType::F32
        );
        assert_eq!(
            tensor_type("token_types.weight", &[384, 2], q),
            GgmlType::F32
        );
        assert_eq!(
            tensor_type("dense_2.weight", &[768, 3072], q),
            GgmlType::Q8_0
        );
        assert_eq!(
            tensor_type("blk.0.attn_q.weight", &[384, 384], OutType::F16),
            GgmlType::F16
        );
        assert_eq!(tensor_type("x.weight", &[384, 1], q), GgmlType::F32);
    }

    #[test]
    fn order_puts_globals_first_then_layers_numerically() {
        let mut names = vec![
            "blk.10.a",
            "token_embd.weight",
            "blk.2.b",
            "blk.2.a",
            "dense_2.weight",
        ];
        names.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            names,
            [
                "dense_2.weight",
                "token_embd.weight",
                "blk.2.a",
                "blk.2.b",
                "blk.10.a"
            ]
        );
    }
}
