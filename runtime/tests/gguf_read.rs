//! The reader on the MiniLM fixture (made by llama.cpp), checked against
//! the gguf-py dump of the same file.

use std::path::PathBuf;

use kiln_runtime::gguf::{GgmlType, GgufError, GgufFile, Value, ValueType};
use serde_json::Value as Json;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn minilm() -> GgufFile {
    GgufFile::open(fixture("all-MiniLM-L6-v2-Q8_0.gguf")).expect("fixture opens")
}

fn dump() -> Json {
    let text = std::fs::read_to_string(fixture("all-MiniLM-L6-v2-Q8_0.dump.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn header_matches_dump() {
    let f = minilm();
    let d = dump();
    assert_eq!(u64::from(f.version()), d["version"].as_u64().unwrap());
    assert_eq!(f.alignment(), d["alignment"].as_u64().unwrap());
    assert_eq!(f.len(), 25_285_408);
    assert_eq!(f.data_offset() % f.alignment(), 0);
    assert_eq!(f.architecture().unwrap(), "bert");
}

#[test]
fn tensor_infos_match_dump() {
    let f = minilm();
    let d = dump();
    let tensors = d["tensors"].as_array().unwrap();
    assert_eq!(f.tensors().len(), tensors.len());
    for (t, j) in f.tensors().iter().zip(tensors) {
        assert_eq!(t.name, j["name"].as_str().unwrap());
        let shape: Vec<u64> = j["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims, shape, "{}", t.name);
        assert_eq!(t.ty.to_string(), j["type"].as_str().unwrap(), "{}", t.name);
        // gguf-py's `data_offset` (what the dump records) is absolute in the
        // file, not relative to the data section as the fixtures README says.
        assert_eq!(
            f.data_offset() + t.offset,
            j["offset"].as_u64().unwrap(),
            "{}",
            t.name
        );
        assert_eq!(t.n_bytes, j["n_bytes"].as_u64().unwrap(), "{}", t.name);
        assert_eq!(f.tensor(&t.name), Some(t));
    }
}

#[test]
fn metadata_keys_and_scalar_values_match_dump() {
    let f = minilm();
    let d = dump();
    let md = d["metadata"].as_object().unwrap();
    // serde_json's map may be sorted (unless `preserve_order` is on), so
    // compare the key sets.
    let mut keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
    keys.sort_unstable();
    let mut dump_keys: Vec<&str> = md.keys().map(String::as_str).collect();
    dump_keys.sort_unstable();
    assert_eq!(keys, dump_keys);
    for (k, v) in f.metadata().iter() {
        let j = &md[k];
        assert_eq!(v.value_type().name(), j["type"].as_str().unwrap(), "{k}");
        match v {
            Value::String(s) => assert_eq!(s, j["value"].as_str().unwrap()),
            Value::U32(x) => assert_eq!(u64::from(*x), j["value"].as_u64().unwrap()),
            Value::Bool(x) => assert_eq!(*x, j["value"].as_bool().unwrap()),
            Value::F32(x) => assert_eq!(f64::from(*x), j["value"].as_f64().unwrap()),
            Value::Array(a) => assert_eq!(a.len(), j["len"].as_u64().unwrap()),
            other => panic!("{k}: type {:?} not in this fixture", other.value_type()),
        }
    }
}

#[test]
fn typed_getters() {
    let f = minilm();
    let m = f.metadata();
    assert_eq!(m.get_u32("bert.block_count").unwrap(), 6);
    assert_eq!(m.get_u64("bert.embedding_length").unwrap(), 384);
    assert_eq!(
        m.get_f32("bert.attention.layer_norm_epsilon").unwrap(),
        1e-12
    );
    assert!(!m.get_bool("bert.attention.causal").unwrap());
    assert_eq!(m.get_str("tokenizer.ggml.model").unwrap(), "bert");
    let tokens: Vec<&str> = m.get_str_array("tokenizer.ggml.tokens").unwrap().collect();
    assert_eq!(tokens.len(), 30522);
    assert_eq!(tokens[0], "[PAD]");
    assert_eq!(tokens[101], "[CLS]");
    let types = m.get_i32_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!(types.len(), 30522);
    assert_eq!(types[0], 3);

    match m.get_u32("no.such.key") {
        Err(GgufError::MissingKey { key, .. }) => assert_eq!(key, "no.such.key"),
        other => panic!("{other:?}"),
    }
    match m.get_u32("general.name") {
        Err(GgufError::WrongType { key, .. }) => assert_eq!(key, "general.name"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        m.get_f32_array("tokenizer.ggml.tokens"),
        Err(GgufError::WrongType { .. })
    ));
    assert_eq!(
        m.get("general.tags")
            .unwrap()
            .as_array()
            .unwrap()
            .elem_type(),
        ValueType::String
    );
}

#[test]
fn typed_views_are_zero_copy() {
    let f = minilm();
    let pos = f.tensor_f32("position_embd.weight").unwrap();
    assert_eq!(pos.len(), 384 * 512);
    let info = f.tensor("position_embd.weight").unwrap();
    assert_eq!(pos.as_ptr().cast::<u8>(), f.tensor_bytes(info).as_ptr());
    assert!(pos.iter().all(|v| v.is_finite()));

    let tok = f.tensor_q8_0("token_embd.weight").unwrap();
    assert_eq!(tok.len(), 384 / 32 * 30522);
    assert!(matches!(
        f.tensor_f32("token_embd.weight"),
        Err(GgufError::TensorType {
            found: GgmlType::Q8_0,
            ..
        })
    ));
    assert!(matches!(
        f.tensor_f32("nope"),
        Err(GgufError::MissingTensor { .. })
    ));

    let deq = f.dequantize("token_embd.weight").unwrap();
    assert_eq!(deq.len(), 384 * 30522);
    // Row 101 ([CLS]) from the blocks equals the dequantized row.
    let row = &tok[101 * 12..102 * 12];
    for (i, b) in row.iter().enumerate() {
        for (j, &q) in b.qs.iter().enumerate() {
            assert_eq!(deq[101 * 384 + i * 32 + j], b.d.to_f32() * f32::from(q));
        }
    }
    assert_eq!(f.dequantize("position_embd.weight").unwrap(), pos);
}

/// A small file written by another implementation (gguf-py 0.19.0's
/// `GGUFWriter`), with an array of arrays and a Q4_K tensor.
#[test]
fn reads_a_file_written_by_gguf_py() {
    let f = GgufFile::open(fixture("small-gguf-py.gguf")).unwrap();
    let m = f.metadata();
    assert_eq!(f.architecture().unwrap(), "test");
    assert_eq!(m.get_u32("test.block_count").unwrap(), 2);
    assert!(m.get_bool("test.flag").unwrap());
    let tokens: Vec<&str> = m.get_str_array("tokenizer.ggml.tokens").unwrap().collect();
    assert_eq!(tokens, ["<pad>", "a", "▁b", "é"]);
    assert_eq!(
        m.get_f32_array("tokenizer.ggml.scores").unwrap(),
        [0.0, -1.0, -2.5, 1e-5]
    );
    assert_eq!(
        m.get_i32_array("tokenizer.ggml.token_type").unwrap(),
        [3, 1, 1, 1]
    );
    let nested = m.get_array("test.nested").unwrap().nested_items().unwrap();
    let ints: Vec<Vec<i128>> = nested
        .iter()
        .map(|a| a.iter().map(|v| v.as_i128().unwrap()).collect())
        .collect();
    assert_eq!(ints, [vec![1, 2], vec![3]]);
    assert_eq!(f.tensor("w").unwrap().dims, [4, 2]);
    assert_eq!(f.tensor_f32("w").unwrap(), [0., 1., 2., 3., 4., 5., 6., 7.]);
    assert_eq!(f.dequantize("q8").unwrap()[0], 2.0);
    assert_eq!(f.tensor("q4k").unwrap().ty, GgmlType::Q4_K);
    assert_eq!(f.dequantize("q4k").unwrap().len(), 256);
}

/// Bytes compiled into the binary (as the `#[model]` macro will embed
/// weights). `include_bytes!` only guarantees 1-byte alignment, so typed
/// views may refuse the data; dequantization copies when it must.
#[test]
fn from_static_bytes() {
    static SMALL: &[u8] = include_bytes!("../../tests/fixtures/small-gguf-py.gguf");
    let f = GgufFile::from_static(SMALL, "embedded:small").unwrap();
    assert_eq!(f.path().to_str(), Some("embedded:small"));
    assert_eq!(f.len(), SMALL.len() as u64);
    assert_eq!(f.dequantize("w").unwrap(), [0., 1., 2., 3., 4., 5., 6., 7.]);
    match f.tensor_f32("w") {
        Ok(v) => assert_eq!(v[7], 7.0),
        Err(GgufError::Misaligned { align: 4, .. }) => {}
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn gguf_file_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GgufFile>();
    assert_send_sync::<GgufError>();
}
