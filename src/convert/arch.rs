//! Per-architecture metadata and tensor names, following llama.cpp's
//! `convert_hf_to_gguf.py` (BertModel, Gemma3Model, EmbeddingGemma) and
//! gguf-py's `constants.py` / `tensor_mapping.py`.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::safetensors::SafeTensors;
use super::vocab::{self, Vocab};
use super::{ConvertError, ConvertOptions, llama_order, read_json, read_json_opt, tensor_type};
use kiln_runtime::gguf::{GgmlType, Value};

/// Bounds on what a config may say, far above any real model of these
/// architectures: a value outside them is a damaged or hostile file, and
/// refusing it keeps every count from sizing anything absurd downstream.
const MAX_LAYERS: u64 = 1024;
const MAX_WIDTH: u64 = 1 << 17;
const MAX_FFN: u64 = 1 << 20;
const MAX_HEADS: u64 = 1024;
const MAX_HEAD_DIM: u64 = 1 << 12;
const MAX_CONTEXT: u64 = 1 << 21;
const MAX_TYPE_VOCAB: u64 = 1 << 16;

/// One output tensor and where its values come from.
pub struct PlannedTensor {
    /// GGUF name.
    pub name: String,
    /// Shape in ggml order.
    pub dims: Vec<u64>,
    /// Stored type.
    pub ty: GgmlType,
    /// Index into [`Plan::files`].
    pub file: usize,
    pub src_name: String,
    /// Rows (of the innermost dimension) taken from the source; fewer than it
    /// has when the embedding is cut to the tokenizer's vocabulary.
    pub rows: u64,
    /// Added to every value (Gemma's RMSNorm stores `weight - 1`).
    pub shift: f32,
}

/// Everything needed to write the file.
pub struct Plan {
    pub arch: &'static str,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<PlannedTensor>,
    pub files: Vec<SafeTensors>,
}

enum Arch {
    Bert,
    GemmaEmbedding,
    Gemma3,
}

impl Arch {
    fn name(&self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::GemmaEmbedding => "gemma-embedding",
            Self::Gemma3 => "gemma3",
        }
    }
}

/// Reads a checkpoint's configs and tensor headers and decides every key and tensor.
pub fn plan(dir: &Path, opts: &ConvertOptions) -> Result<Plan, ConvertError> {
    let cfg_path = dir.join("config.json");
    let cfg = read_json(&cfg_path)?;
    let model_type = cfg["model_type"].as_str().unwrap_or("").to_owned();
    let arch = match model_type.as_str() {
        "bert" => Arch::Bert,
        "gemma3_text" if has_arch(&cfg, "Gemma3TextModel") => Arch::GemmaEmbedding,
        "gemma3_text" | "gemma3" => Arch::Gemma3,
        _ => {
            return Err(ConvertError::UnknownModelType {
                path: cfg_path,
                model_type,
            });
        }
    };
    let a = arch.name();
    let hp = Hparams {
        cfg: &cfg,
        path: &cfg_path,
    };
    let mut md: Vec<(String, Value)> = Vec::new();
    let name = opts.name.clone().unwrap_or_else(|| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    md.push(("general.architecture".into(), Value::String(a.into())));
    md.push(("general.type".into(), Value::String("model".into())));
    // Sampling defaults from generation_config.json, as newer llama.cpp converters write them.
    if let Some(gen_cfg) = read_json_opt(&dir.join("generation_config.json"))? {
        if let Some(k) = gen_cfg
            .get("top_k")
            .and_then(Json::as_i64)
            .and_then(|k| i32::try_from(k).ok())
        {
            md.push(("general.sampling.top_k".into(), Value::I32(k)));
        }
        if let Some(p) = gen_cfg.get("top_p").and_then(Json::as_f64) {
            md.push(("general.sampling.top_p".into(), Value::F32(p as f32)));
        }
        if let Some(t) = gen_cfg.get("temperature").and_then(Json::as_f64) {
            md.push(("general.sampling.temp".into(), Value::F32(t as f32)));
        }
    }
    md.push(("general.name".into(), Value::String(name)));
    let key = |k: &str| format!("{a}.{k}");

    let main_path = dir.join("model.safetensors");
    if !main_path.is_file() {
        return Err(ConvertError::MissingFile {
            dir: dir.to_owned(),
            file: "model.safetensors".into(),
        });
    }
    let mut files = vec![SafeTensors::open(&main_path)?];
    // (gguf name, file, source name, shift)
    let mut mapped: Vec<(String, usize, String, f32)> = Vec::new();
    let vocab: Vocab;
    let mut n_vocab_rows = None;
    let (n_layers, hidden): (u32, u32);

    match arch {
        Arch::Bert => {
            n_layers = hp.int("num_hidden_layers", None, 1..=MAX_LAYERS)?;
            md.push((key("block_count"), Value::U32(n_layers)));
            md.push((
                key("context_length"),
                Value::U32(hp.int("max_position_embeddings", None, 1..=MAX_CONTEXT)?),
            ));
            hidden = hp.int("hidden_size", None, 1..=MAX_WIDTH)?;
            md.push((key("embedding_length"), Value::U32(hidden)));
            md.push((
                key("feed_forward_length"),
                Value::U32(hp.int("intermediate_size", None, 1..=MAX_FFN)?),
            ));
            let heads = hp.int("num_attention_heads", None, 1..=MAX_HEADS)?;
            if !hidden.is_multiple_of(heads) {
                return Err(hp.invalid(
                    "num_attention_heads",
                    heads,
                    format!("does not divide hidden_size {hidden}"),
                ));
            }
            md.push((key("attention.head_count"), Value::U32(heads)));
            md.push((
                key("attention.layer_norm_epsilon"),
                Value::F32(hp.eps("layer_norm_eps", None)?),
            ));
            md.push((key("attention.causal"), Value::Bool(false)));
            if let Some(p) = pooling_type(dir)? {
                md.push((key("pooling_type"), Value::U32(p)));
            }
            vocab = vocab::wordpiece(dir, hp.vocab_size()?)?;
            let type_count = hp.int("type_vocab_size", Some(1), 1..=MAX_TYPE_VOCAB)?;
            md.push((
                "tokenizer.ggml.token_type_count".into(),
                Value::U32(type_count),
            ));
            md.push(("tokenizer.ggml.model".into(), Value::String("bert".into())));
            // llama.cpp names the pre-tokenizer by hashing a test tokenization;
            // an uncased BERT WordPiece tokenizer hashes to "jina-v2-en".
            md.push((
                "tokenizer.ggml.pre".into(),
                Value::String("jina-v2-en".into()),
            ));
            push_vocab(&mut md, &vocab);
            md.extend(vocab::special_tokens(dir, &vocab)?);
            let lowercase = read_json_opt(&dir.join("tokenizer.json"))?
                .and_then(|t| t.pointer("/normalizer/lowercase").and_then(Json::as_bool))
                .or_else(|| {
                    read_json_opt(&dir.join("tokenizer_config.json"))
                        .ok()
                        .flatten()?
                        .get("do_lower_case")?
                        .as_bool()
                });
            if let Some(l) = lowercase {
                md.push(("tokenizer.ggml.normalizer.lowercase".into(), Value::Bool(l)));
            }
            for name in files[0].tensors().keys() {
                if let Some(g) = bert_name(name)? {
                    mapped.push((g, 0, name.clone(), 0.0));
                }
            }
        }
        Arch::GemmaEmbedding | Arch::Gemma3 => {
            n_layers = hp.int("num_hidden_layers", None, 1..=MAX_LAYERS)?;
            md.push((key("block_count"), Value::U32(n_layers)));
            md.push((
                key("context_length"),
                Value::U32(hp.int("max_position_embeddings", Some(131_072), 1..=MAX_CONTEXT)?),
            ));
            hidden = hp.int("hidden_size", None, 1..=MAX_WIDTH)?;
            md.push((key("embedding_length"), Value::U32(hidden)));
            md.push((
                key("feed_forward_length"),
                Value::U32(hp.int("intermediate_size", None, 1..=MAX_FFN)?),
            ));
            let heads = hp.int("num_attention_heads", Some(8), 1..=MAX_HEADS)?;
            let kv_heads = hp.int("num_key_value_heads", Some(4), 1..=MAX_HEADS)?;
            if !heads.is_multiple_of(kv_heads) {
                return Err(hp.invalid(
                    "num_key_value_heads",
                    kv_heads,
                    format!("does not divide num_attention_heads {heads}"),
                ));
            }
            md.push((key("attention.head_count"), Value::U32(heads)));
            md.push((key("attention.head_count_kv"), Value::U32(kv_heads)));
            md.push((
                key("rope.freq_base"),
                Value::F32(hp.positive("rope_theta", Some(1_000_000.0))?),
            ));
            if hp.get("rope_local_base_freq").is_some() {
                let local = hp.positive("rope_local_base_freq", None)?;
                md.push((key("rope.freq_base_swa"), Value::F32(local)));
            }
            md.push((
                key("attention.layer_norm_rms_epsilon"),
                Value::F32(hp.eps("rms_norm_eps", Some(1e-6))?),
            ));
            let head_dim = hp.int("head_dim", Some(256), 1..=MAX_HEAD_DIM)?;
            md.push((key("attention.key_length"), Value::U32(head_dim)));
            md.push((key("attention.value_length"), Value::U32(head_dim)));
            // `null` (no softcapping) is common: only a number is checked.
            if let Some(f) = hp.opt_f32("final_logit_softcapping") {
                if !f.is_finite() || f < 0.0 {
                    return Err(hp.invalid(
                        "final_logit_softcapping",
                        f,
                        "must be a finite number, 0 or above".into(),
                    ));
                }
                md.push((key("final_logit_softcapping"), Value::F32(f)));
            }
            if cfg.get("sliding_window_pattern").and_then(Json::as_u64) != Some(1) {
                md.push((
                    key("attention.sliding_window"),
                    Value::U32(hp.int("sliding_window", None, 1..=MAX_CONTEXT)?),
                ));
            }
            if matches!(arch, Arch::GemmaEmbedding) {
                for (prefix, path) in dense_modules(dir)? {
                    let conf_path = path.join("config.json");
                    let conf = read_json(&conf_path)?;
                    let dims = Hparams {
                        cfg: &conf,
                        path: &conf_path,
                    };
                    md.push((
                        key(&format!("{prefix}_feat_in")),
                        Value::U32(dims.int("in_features", None, 1..=MAX_FFN)?),
                    ));
                    md.push((
                        key(&format!("{prefix}_feat_out")),
                        Value::U32(dims.int("out_features", None, 1..=MAX_FFN)?),
                    ));
                    let st = SafeTensors::open(&path.join("model.safetensors"))?;
                    for name in st.tensors().keys() {
                        match name.as_str() {
                            "linear.weight" => mapped.push((
                                format!("{prefix}.weight"),
                                files.len(),
                                name.clone(),
                                0.0,
                            )),
                            _ => {
                                return Err(ConvertError::Unsupported(format!(
                                    "{}: Dense tensor {name} (llama.cpp's gemma-embedding has no dense bias)",
                                    path.display()
                                )));
                            }
                        }
                    }
                    files.push(st);
                }
                if let Some(p) = pooling_type(dir)? {
                    md.push((key("pooling_type"), Value::U32(p)));
                }
            }
            if !dir.join("tokenizer.model").is_file() {
                return Err(ConvertError::MissingFile {
                    dir: dir.to_owned(),
                    file: "tokenizer.model".into(),
                });
            }
            vocab = vocab::sentencepiece(dir, hp.vocab_size()?)?;
            n_vocab_rows = Some(vocab.tokens.len() as u64);
            md.push(("tokenizer.ggml.model".into(), Value::String("llama".into())));
            md.push(("tokenizer.ggml.pre".into(), Value::String("default".into())));
            push_vocab(&mut md, &vocab);
            md.extend(vocab::special_tokens(dir, &vocab)?);
            md.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false)));
            for name in files[0].tensors().keys() {
                if let Some(g) = gemma_name(a, name)? {
                    // Gemma3RMSNorm computes x * (1 + w); llama.cpp stores 1 + w.
                    let shift = if name.ends_with("norm.weight") {
                        1.0
                    } else {
                        0.0
                    };
                    mapped.push((g, 0, name.clone(), shift));
                }
            }
        }
    }
    md.push(("general.quantization_version".into(), Value::U32(2)));
    md.push((
        "general.file_type".into(),
        Value::U32(opts.out_type.file_type()),
    ));

    // The layer count must be the layers the checkpoint has: 0..n, each
    // with tensors.
    let layers: std::collections::BTreeSet<u64> = mapped
        .iter()
        .filter_map(|(g, ..)| g.strip_prefix("blk.")?.split('.').next()?.parse().ok())
        .collect();
    if layers.len() as u64 != u64::from(n_layers)
        || layers.last() != Some(&(u64::from(n_layers) - 1))
    {
        return Err(hp.invalid(
            "num_hidden_layers",
            n_layers,
            format!("the checkpoint has tensors for {} layers", layers.len()),
        ));
    }

    let mut tensors = Vec::with_capacity(mapped.len());
    for (gname, file, src_name, shift) in mapped {
        let src = &files[file].tensors()[&src_name];
        let mut shape = src.shape.clone();
        if gname == "token_embd.weight" && shape.last() != Some(&u64::from(hidden)) {
            return Err(hp.invalid(
                "hidden_size",
                hidden,
                format!("the token embedding {src_name} is {shape:?}"),
            ));
        }
        if gname == "token_embd.weight"
            && let Some(n) = n_vocab_rows
        {
            let rows = shape.first().copied().unwrap_or(0);
            if shape.len() != 2 || rows < n {
                return Err(ConvertError::Shape {
                    name: src_name,
                    why: format!(
                        "embedding {shape:?} has fewer rows than the {n} tokens of the vocabulary"
                    ),
                });
            }
            shape[0] = n;
        }
        let dims: Vec<u64> = if shape.is_empty() {
            vec![1]
        } else {
            shape.iter().rev().copied().collect()
        };
        let rows = dims.iter().skip(1).product();
        let ty = tensor_type(&gname, &dims, opts.out_type);
        tensors.push(PlannedTensor {
            name: gname,
            dims,
            ty,
            file,
            src_name,
            rows,
            shift,
        });
    }
    tensors.sort_by(|x, y| llama_order(&x.name, &y.name));
    if let Some(w) = tensors.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(ConvertError::Shape {
            name: w[0].name.clone(),
            why: "two checkpoint tensors map to it".into(),
        });
    }
    if !tensors.iter().any(|t| t.name == "token_embd.weight") {
        return Err(ConvertError::MissingTensor {
            name: "token embedding".into(),
        });
    }
    Ok(Plan {
        arch: a,
        metadata: md,
        tensors,
        files,
    })
}

fn has_arch(cfg: &Json, name: &str) -> bool {
    cfg["architectures"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == name))
}

fn push_vocab(md: &mut Vec<(String, Value)>, v: &Vocab) {
    md.push((
        "tokenizer.ggml.tokens".into(),
        Value::string_array(&v.tokens),
    ));
    if let Some(s) = &v.scores {
        md.push(("tokenizer.ggml.scores".into(), Value::f32_array(s)));
    }
    md.push((
        "tokenizer.ggml.token_type".into(),
        Value::i32_array(&v.types),
    ));
}

struct Hparams<'a> {
    cfg: &'a Json,
    path: &'a Path,
}

impl Hparams<'_> {
    fn missing(&self, key: &str) -> ConvertError {
        ConvertError::Config {
            path: self.path.to_owned(),
            key: key.to_owned(),
        }
    }
    fn invalid(&self, key: &str, value: impl std::fmt::Display, why: String) -> ConvertError {
        ConvertError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            value: value.to_string(),
            why,
        }
    }
    /// The raw value of `key`; `null` counts as absent.
    fn get(&self, key: &str) -> Option<&Json> {
        self.cfg.get(key).filter(|v| !v.is_null())
    }
    fn opt_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f64().map(|v| v as f32)
    }
    /// Integer `key` in `range` (`default` when absent; an error when
    /// absent without one, or present and not such an integer).
    fn int(
        &self,
        key: &str,
        default: Option<u32>,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u32, ConvertError> {
        let Some(v) = self.get(key) else {
            return default.ok_or_else(|| self.missing(key));
        };
        match v.as_u64() {
            Some(n) if range.contains(&n) => {
                u32::try_from(n).map_err(|_| self.invalid(key, n, "too large".into()))
            }
            _ => Err(self.invalid(
                key,
                v,
                format!("must be an integer in {}..={}", range.start(), range.end()),
            )),
        }
    }
    /// A finite number above zero.
    fn positive(&self, key: &str, default: Option<f32>) -> Result<f32, ConvertError> {
        let Some(v) = self.get(key) else {
            return default.ok_or_else(|| self.missing(key));
        };
        match v.as_f64().map(|x| x as f32) {
            Some(x) if x.is_finite() && x > 0.0 => Ok(x),
            _ => Err(self.invalid(key, v, "must be a finite number above 0".into())),
        }
    }
    /// A normalization epsilon: finite, above zero and below one.
    fn eps(&self, key: &str, default: Option<f32>) -> Result<f32, ConvertError> {
        let e = self.positive(key, default)?;
        if e >= 1.0 {
            return Err(self.invalid(key, e, "must be below 1".into()));
        }
        Ok(e)
    }
    /// `vocab_size`, if given.
    fn vocab_size(&self) -> Result<Option<usize>, ConvertError> {
        if self.get("vocab_size").is_none() {
            return Ok(None);
        }
        let n = self.int("vocab_size", None, 1..=vocab::MAX_VOCAB as u64)?;
        Ok(Some(n as usize))
    }
}

/// A sentence-transformers module's folder, from `modules.json`: a relative
/// path inside the checkpoint, never `..`, absolute or empty.
fn module_dir(dir: &Path, m: &Json) -> Result<PathBuf, ConvertError> {
    let rel = m["path"].as_str().unwrap_or("");
    let inside = !rel.is_empty()
        && !rel.contains('\\')
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !inside {
        return Err(ConvertError::Invalid {
            path: dir.join("modules.json"),
            key: "path".into(),
            value: format!("{rel:?}"),
            why: "must be a relative path inside the checkpoint".into(),
        });
    }
    Ok(dir.join(rel))
}

/// llama.cpp's `pooling_type` from the sentence-transformers Pooling module
/// (MEAN = 1, CLS = 2, LAST = 3); `None` without one.
fn pooling_type(dir: &Path) -> Result<Option<u32>, ConvertError> {
    let Some(Json::Array(mods)) = read_json_opt(&dir.join("modules.json"))? else {
        return Ok(None);
    };
    let Some(m) = mods
        .iter()
        .find(|m| m["type"].as_str().is_some_and(|t| t.ends_with("Pooling")))
    else {
        return Ok(None);
    };
    let path = module_dir(dir, m)?.join("config.json");
    let p = read_json(&path)?;
    let on = |k: &str| p[k].as_bool().unwrap_or(false);
    if on("pooling_mode_mean_tokens") {
        Ok(Some(1))
    } else if on("pooling_mode_cls_token") {
        Ok(Some(2))
    } else if on("pooling_mode_lasttoken") {
        Ok(Some(3))
    } else {
        Err(ConvertError::Unsupported(format!(
            "{}: only mean, CLS and last-token pooling exist in llama.cpp",
            path.display()
        )))
    }
}

/// The sentence-transformers Dense modules that have weights, as
/// (`dense_2` / `dense_3`, module path), in modules.json order.
fn dense_modules(dir: &Path) -> Result<Vec<(&'static str, PathBuf)>, ConvertError> {
    let Some(Json::Array(mods)) = read_json_opt(&dir.join("modules.json"))? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for m in &mods {
        if !m["type"].as_str().is_some_and(|t| t.ends_with("Dense")) {
            continue;
        }
        let path = module_dir(dir, m)?;
        if !path.join("model.safetensors").is_file() {
            return Err(ConvertError::MissingFile {
                dir: dir.to_owned(),
                file: format!("{}/model.safetensors", m["path"].as_str().unwrap_or("")),
            });
        }
        // llama.cpp knows exactly two: the one after pooling and the last.
        let prefix = if m["path"] == "2_Dense" {
            "dense_2"
        } else {
            "dense_3"
        };
        out.push((prefix, path));
    }
    Ok(out)
}

fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(u32, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (n, tail) = rest.split_once('.')?;
    Some((n.parse().ok()?, tail))
}

/// BERT tensor names (gguf-py tensor_mapping.py); `None` for tensors llama.cpp drops.
fn bert_name(hf: &str) -> Result<Option<String>, ConvertError> {
    let name = hf.strip_prefix("bert.").unwrap_or(hf);
    if name == "embeddings.position_ids" || name.starts_with("pooler.") || name.starts_with("cls.")
    {
        return Ok(None);
    }
    let unknown = || ConvertError::UnknownTensor {
        arch: "bert",
        name: hf.to_owned(),
    };
    let global = match name {
        "embeddings.word_embeddings.weight" => Some("token_embd.weight"),
        "embeddings.position_embeddings.weight" => Some("position_embd.weight"),
        "embeddings.token_type_embeddings.weight" => Some("token_types.weight"),
        "embeddings.LayerNorm.weight" => Some("token_embd_norm.weight"),
        "embeddings.LayerNorm.bias" => Some("token_embd_norm.bias"),
        _ => None,
    };
    if let Some(g) = global {
        return Ok(Some(g.to_owned()));
    }
    let (bid, tail) = split_layer(name, "encoder.layer.").ok_or_else(unknown)?;
    let (module, kind) = tail.rsplit_once('.').ok_or_else(unknown)?;
    let g = match module {
        "attention.self.query" => "attn_q",
        "attention.self.key" => "attn_k",
        "attention.self.value" => "attn_v",
        "attention.output.dense" => "attn_output",
        "attention.output.LayerNorm" => "attn_output_norm",
        "intermediate.dense" => "ffn_up",
        "output.dense" => "ffn_down",
        "output.LayerNorm" => "layer_output_norm",
        _ => return Err(unknown()),
    };
    Ok(Some(format!("blk.{bid}.{g}.{kind}")))
}

/// Gemma 3 tensor names; `None` for tensors llama.cpp drops.
fn gemma_name(arch: &'static str, hf: &str) -> Result<Option<String>, ConvertError> {
    let name = hf.strip_prefix("model.").unwrap_or(hf);
    let name = name.strip_prefix("language_model.").unwrap_or(name);
    if name == "lm_head.weight"
        || name.starts_with("vision_tower.")
        || name.starts_with("multi_modal_projector.")
    {
        return Ok(None);
    }
    let unknown = || ConvertError::UnknownTensor {
        arch,
        name: hf.to_owned(),
    };
    match name {
        "embed_tokens.weight" => return Ok(Some("token_embd.weight".into())),
        "norm.weight" => return Ok(Some("output_norm.weight".into())),
        _ => {}
    }
    let (bid, tail) = split_layer(name, "layers.").ok_or_else(unknown)?;
    let (module, kind) = tail.rsplit_once('.').ok_or_else(unknown)?;
    let g = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" => "post_attention_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return Err(unknown()),
    };
    Ok(Some(format!("blk.{bid}.{g}.{kind}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bert_names() {
        assert_eq!(
            bert_name("encoder.layer.3.attention.self.query.bias")
                .unwrap()
                .unwrap(),
            "blk.3.attn_q.bias"
        );
        assert_eq!(
            bert_name("bert.embeddings.LayerNorm.weight")
                .unwrap()
                .unwrap(),
            "token_embd_norm.weight"
        );
        assert_eq!(bert_name("embeddings.position_ids").unwrap(), None);
        assert!(bert_name("encoder.layer.0.weird.weight").is_err());
    }

    #[test]
    fn gemma_names() {
        let g = |n| gemma_name("gemma-embedding", n).unwrap().unwrap();
        assert_eq!(
            g("layers.11.self_attn.k_norm.weight"),
            "blk.11.attn_k_norm.weight"
        );
        assert_eq!(
            g("model.layers.0.pre_feedforward_layernorm.weight"),
            "blk.0.ffn_norm.weight"
        );
        assert_eq!(g("norm.weight"), "output_norm.weight");
        assert!(gemma_name("gemma3", "layers.0.nope.weight").is_err());
    }
}
