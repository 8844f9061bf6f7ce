//! `kiln inspect --json` against the gguf-py reference dumps: every metadata
//! key (type and value; long arrays by length, first values and the SHA-256
//! of their JSON) and every tensor's name, shape, type, offset, size and
//! SHA-256.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn inspect_json(file: &Path) -> Json {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["inspect", "--json", "--hash"])
        .arg(file)
        .output()
        .expect("kiln runs");
    assert!(
        out.status.success(),
        "kiln inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn load_dump(name: &str) -> Json {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Compares `kiln inspect --json` of `file` with the dump, key by key.
fn check_against_dump(file: &Path, dump: &Json) {
    let ours = inspect_json(file);
    assert_eq!(ours["version"], dump["version"]);
    assert_eq!(ours["alignment"], dump["alignment"]);

    let (om, dm) = (
        ours["metadata"].as_object().unwrap(),
        dump["metadata"].as_object().unwrap(),
    );
    let mut ok: Vec<&String> = om.keys().collect();
    let mut dk: Vec<&String> = dm.keys().collect();
    ok.sort();
    dk.sort();
    assert_eq!(ok, dk, "metadata keys");
    for (k, d) in dm {
        let o = &om[k];
        assert_eq!(o["type"], d["type"], "{k}: type");
        if d["type"] == "array" {
            for field in ["elem_type", "len", "sha256_json"] {
                assert_eq!(o[field], d[field], "{k}: {field}");
            }
            // The dump keeps whole short arrays in "value", long ones' first
            // values in "head"; compare what it has.
            let theirs = d.get("value").or_else(|| d.get("head")).unwrap();
            let ours = o.get("value").or_else(|| o.get("head")).unwrap();
            let n = theirs.as_array().unwrap().len();
            assert_eq!(
                &ours.as_array().unwrap()[..n],
                theirs.as_array().unwrap(),
                "{k}"
            );
        } else if d["type"] == "float32" || d["type"] == "float64" {
            assert_eq!(o["value"].as_f64(), d["value"].as_f64(), "{k}");
        } else {
            assert_eq!(o["value"], d["value"], "{k}");
        }
    }

    let (ot, dt) = (
        ours["tensors"].as_array().unwrap(),
        dump["tensors"].as_array().unwrap(),
    );
    assert_eq!(ot.len(), dt.len(), "tensor count");
    for (o, d) in ot.iter().zip(dt) {
        let name = d["name"].as_str().unwrap();
        assert_eq!(o["name"], d["name"]);
        assert_eq!(o["shape"], d["shape"], "{name}");
        assert_eq!(o["type"], d["type"], "{name}");
        // gguf-py's offset is absolute in the file.
        assert_eq!(o["file_offset"], d["offset"], "{name}");
        assert_eq!(o["n_bytes"], d["n_bytes"], "{name}");
        assert_eq!(o["sha256"], d["sha256"], "{name}");
    }
}

#[test]
fn minilm_matches_its_dump() {
    check_against_dump(
        &fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf"),
        &load_dump("all-MiniLM-L6-v2-Q8_0.dump.json"),
    );
}

/// The first existing `$KILN_HOME/models/NAME` or `/work/models/NAME`.
fn model(name: &str) -> Option<PathBuf> {
    let found = [
        std::env::var_os("KILN_HOME").map(|h| PathBuf::from(h).join("models").join(name)),
        Some(PathBuf::from("/work/models").join(name)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.exists());
    if found.is_none() {
        println!("skipped: {name} not found in $KILN_HOME/models or /work/models");
    }
    found
}

#[test]
fn gemma_3_270m_matches_its_dump() {
    if let Some(path) = model("gemma-3-270m-q4_k_m.gguf") {
        check_against_dump(&path, &load_dump("gemma-3-270m-q4_k_m.dump.json"));
    }
}

/// EmbeddingGemma's dump describes one particular conversion (llama.cpp's
/// `convert_hf_to_gguf.py --sentence-transformers-dense-modules`, then
/// `llama-quantize`); other conversions differ in metadata, so the file is
/// only compared when `KILN_EMBEDDINGGEMMA_REFERENCE_GGUF` names that file.
#[test]
fn embeddinggemma_matches_its_dump() {
    match std::env::var_os("KILN_EMBEDDINGGEMMA_REFERENCE_GGUF") {
        Some(path) => check_against_dump(
            Path::new(&path),
            &load_dump("embeddinggemma-300m-Q8_0.dump.json"),
        ),
        None => println!("skipped: KILN_EMBEDDINGGEMMA_REFERENCE_GGUF is not set"),
    }
}

#[test]
fn text_report_has_the_facts() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("inspect")
        .arg(fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "architecture       bert",
        "layers             6",
        "hidden size        384",
        "attention heads    12",
        "context length     512",
        "vocabulary size    30522",
        "pooling            mean (1)",
        "[30522 x string] [\"[PAD]\"",
        "... 30514 more]",
        "token_embd.weight",
        "37 tensors",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn broken_file_gives_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("kiln-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x63\0\0\0").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("inspect")
        .arg(&bad)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.gguf: at byte 4: unsupported GGUF version 99"),
        "{err}"
    );
}

#[test]
fn key_longer_than_a_format_width_is_printed() {
    use kiln::runtime::gguf::{GgmlType, GgufWriter, Value};
    // A width above 65,535 used to panic in `format!` ("Formatting
    // argument out of range"); a tensor name the same.
    let long = "k".repeat(70_000);
    let mut w = GgufWriter::new();
    w.add_metadata(long.clone(), Value::U32(7)).unwrap();
    w.add_metadata("general.architecture", Value::String("bert".into()))
        .unwrap();
    let name = "t".repeat(70_000);
    w.add_tensor(name.clone(), &[8], GgmlType::F32).unwrap();
    let mut data = w.begin(Vec::new()).unwrap();
    data.write_tensor(&name, &[0u8; 32]).unwrap();
    let bytes = data.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long-key.gguf");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("inspect")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("  {long}  uint32")),
        "key line missing"
    );
    assert!(text.contains(&name), "tensor line missing");
}
