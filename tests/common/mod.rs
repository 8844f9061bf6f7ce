//! Shared by the end-to-end tests: where models and goldens are, comparing
//! a GGUF with a gguf-py dump, and the kernel sets to test.
//!
//! The dumps (tests/fixtures/*.dump.json) were made from llama.cpp's own
//! files with gguf-py: every metadata key (long arrays as the sha256 of
//! Python's `json.dumps(array, ensure_ascii=False)`), every tensor's name,
//! shape, type, data offset and the sha256 of its bytes.

#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod server;

use std::path::{Path, PathBuf};

use std::collections::BTreeSet;
use std::sync::Mutex;

use kiln::kernels::{compiled, for_isa};
use kiln::runtime::gguf::{GgufFile, Value, ValueRef};
use kiln::runtime::kernels::{Isa, KernelSet};
use kiln::runtime::quant::{BlockQ8_0, dequantize_row_q8_0, quantize_row_q8_0_reference};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Loads a dump from tests/fixtures.
pub fn dump(name: &str) -> Json {
    let path = root().join("tests/fixtures").join(name);
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The first of `candidates` (env var value, then fixed paths) that exists.
pub fn find_dir(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .chain(candidates.iter().map(PathBuf::from))
        .find(|p| p.join("config.json").is_file())
}

/// Python's `repr` of a float (what `json.dumps` writes).
pub fn py_float(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Shortest round-trip digits and the decimal exponent.
    let sci = format!("{x:e}");
    let (mant, exp) = sci.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let sign = if neg { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let body = if exp >= 0 {
            let int_len = exp as usize + 1;
            let padded = format!("{digits:0<int_len$}");
            let (int, frac) = padded.split_at(int_len);
            format!("{int}.{}", if frac.is_empty() { "0" } else { frac })
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        format!(
            "{sign}{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

/// Python's `json.dumps(s, ensure_ascii=False)` of a string.
pub fn py_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn py_item(v: &ValueRef<'_>, out: &mut String) {
    match v {
        ValueRef::Str(s) => py_str(s, out),
        ValueRef::F32(x) => out.push_str(&py_float(f64::from(*x))),
        ValueRef::F64(x) => out.push_str(&py_float(*x)),
        ValueRef::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        other => out.push_str(&other.as_i128().expect("integer").to_string()),
    }
}

/// sha256 of Python's JSON of an array value.
pub fn array_json_sha(v: &Value) -> String {
    let a = v.as_array().expect("array");
    let mut s = String::from("[");
    for (i, item) in a.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        py_item(&item, &mut s);
    }
    s.push(']');
    hex(&Sha256::digest(s.as_bytes()))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Keys whose values describe the model rather than define it: ours may differ.
pub fn descriptive(key: &str) -> bool {
    key.starts_with("general.")
        && !matches!(
            key,
            "general.architecture" | "general.file_type" | "general.quantization_version"
        )
}

/// Compares a GGUF with a dump: every non-descriptive key (type and value),
/// no extra keys, and every tensor (order, name, shape, type, offset
/// relative to the first tensor, size, sha256 of the data). Returns the
/// differences, one line each.
pub fn compare_with_dump(path: &Path, dump: &Json) -> Vec<String> {
    let g = GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let md = g.metadata();
    let mut diffs = Vec::new();
    let want = dump["metadata"].as_object().unwrap();
    for (key, w) in want {
        if descriptive(key) {
            continue;
        }
        let Some(v) = md.get(key) else {
            diffs.push(format!("missing key {key}"));
            continue;
        };
        let ty = v.value_type().name();
        if ty != w["type"] {
            diffs.push(format!("{key}: type {ty}, reference {}", w["type"]));
            continue;
        }
        let same = match v {
            Value::Array(a) => {
                a.len() == w["len"].as_u64().unwrap()
                    && a.elem_type()
                        .name()
                        .eq_ignore_ascii_case(w["elem_type"].as_str().unwrap())
                    && array_json_sha(v) == w["sha256_json"].as_str().unwrap()
            }
            Value::String(s) => w["value"] == s.as_str(),
            Value::Bool(b) => w["value"] == *b,
            Value::F32(x) => w["value"].as_f64().map(|r| r as f32) == Some(*x),
            Value::F64(x) => w["value"].as_f64() == Some(*x),
            other => other.as_i128().map(|i| i as i64) == w["value"].as_i64(),
        };
        if !same {
            diffs.push(format!(
                "{key}: ours {v:?}, reference {}",
                w.get("value").or(w.get("head")).unwrap_or(&Json::Null)
            ));
        }
    }
    for (key, _) in md.iter() {
        if !descriptive(key) && !want.contains_key(key) && key != "general.alignment" {
            diffs.push(format!("extra key {key}"));
        }
    }
    let ref_tensors = dump["tensors"].as_array().unwrap();
    let ref_base = ref_tensors
        .iter()
        .map(|t| t["offset"].as_u64().unwrap())
        .min()
        .unwrap_or(0);
    if ref_tensors.len() != g.tensors().len() {
        diffs.push(format!(
            "{} tensors, reference {}",
            g.tensors().len(),
            ref_tensors.len()
        ));
    }
    for (t, r) in g.tensors().iter().zip(ref_tensors) {
        let dims: Vec<u64> = r["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        let sha = hex(&Sha256::digest(g.tensor_bytes(t)));
        let checks = [
            ("name", t.name == r["name"].as_str().unwrap()),
            ("shape", t.dims == dims),
            (
                "type",
                t.ty.name()
                    .eq_ignore_ascii_case(r["type"].as_str().unwrap()),
            ),
            (
                "offset",
                t.offset == r["offset"].as_u64().unwrap() - ref_base,
            ),
            ("bytes", t.n_bytes == r["n_bytes"].as_u64().unwrap()),
            ("sha256", sha == r["sha256"].as_str().unwrap()),
        ];
        for (what, ok) in checks {
            if !ok {
                diffs.push(format!(
                    "tensor {} ({:?} {}): {what} differs from reference {}",
                    t.name,
                    t.dims,
                    t.ty.name(),
                    r
                ));
            }
        }
    }
    diffs
}

/// The repository's test fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One line of a golden JSONL file.
#[derive(serde::Deserialize)]
pub struct Golden {
    pub text: String,
    pub token_ids: Vec<u32>,
    #[serde(default)]
    pub n_tokens_used: Option<usize>,
    #[serde(default)]
    pub embedding: Vec<f32>,
}

/// Reads `tests/fixtures/goldens/NAME`.
pub fn goldens(name: &str) -> Vec<Golden> {
    let path = fixtures().join("goldens").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The model called `name` in the cache (`kiln pull NAME`), or `None` with a
/// message when it is absent. With `KILN_REQUIRE_MODELS=1` (set by CI) an
/// absent model fails the test instead of skipping it.
pub fn cached_model(name: &str) -> Option<PathBuf> {
    match kiln::hub::Cache::from_env()
        .ok()
        .and_then(|c| c.cached(name))
    {
        Some(p) => Some(p),
        None => {
            if std::env::var("KILN_REQUIRE_MODELS").is_ok_and(|v| v == "1") {
                panic!("model `{name}` is not in the cache; run `kiln pull {name}`");
            }
            eprintln!("SKIPPED: model `{name}` is not in the cache (run `kiln pull {name}`)");
            None
        }
    }
}

/// The cached decoder `name` on 2 threads with a `context`-token context
/// (`None`: skipped, as [`cached_model`] says).
pub fn generator(name: &str, context: usize) -> Option<kiln::Generator> {
    let path = cached_model(name)?;
    Some(
        kiln::Generator::builder()
            .threads(2)
            .context(context)
            .open(path)
            .unwrap(),
    )
}

// Cosine bars of the end-to-end embedding tests. Measured worst and mean
// against float32 sentence-transformers: EmbeddingGemma Q8_0 0.99923 /
// 0.99953, MiniLM Q8_0 0.99873 / 0.99953.

/// Worst input, a Q8_0 GGUF against the float32 model: int8 weights and
/// activations cost up to about 1e-3 of cosine (the project's quality bar).
pub const Q8_VS_F32_MIN: f64 = 0.999;

/// Mean over a golden file, Q8_0 against float32: most inputs lose far
/// less than the worst, so a drift of the whole set shows here first.
pub const Q8_VS_F32_MEAN: f64 = 0.9995;

/// Worst input of MiniLM Q8_0 against float32: a 6-layer, 384-wide model
/// averages out less int8 rounding per dimension than EmbeddingGemma.
pub const MINILM_Q8_VS_F32_MIN: f64 = 0.9985;

/// kiln against llama.cpp on the same GGUF, where their token ids agree:
/// the same quantized arithmetic, summed in another order.
pub const SAME_GGUF_MIN: f64 = 0.999;

/// An F32 GGUF against float32: no quantization left, only f32 rounding and
/// summation order (llama.cpp reaches 0.999998 this way).
pub const F32_VS_F32_MIN: f64 = 0.99999;

/// Cosine similarity in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    f64::from(kiln::cosine(a, b))
}

/// The scalar set (always present).
pub fn scalar() -> &'static dyn KernelSet {
    for_isa(Isa::Scalar).expect("scalar is always compiled")
}

/// Every compiled ISA this CPU supports, scalar included; prints the ones
/// that are compiled but skipped because the CPU lacks them.
pub fn sets(test: &str) -> Vec<&'static dyn KernelSet> {
    // Property bodies call this once per case: report once per test.
    static REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = REPORTED
        .lock()
        .map(|mut r| r.insert(test.to_string()))
        .unwrap_or(true);
    let mut out = Vec::new();
    for &isa in compiled() {
        match for_isa(isa) {
            Some(s) => out.push(s),
            None if first => eprintln!("{test}: SKIPPED {} (this CPU lacks it)", isa.name()),
            None => {}
        }
    }
    let names: Vec<_> = out.iter().map(|s| s.isa().name()).collect();
    if first {
        eprintln!("{test}: testing {}", names.join(", "));
    }
    out
}

/// Quantizes with the bit-exact reference.
pub fn q8(x: &[f32]) -> Vec<BlockQ8_0> {
    let mut b = vec![BlockQ8_0::default(); x.len() / 32];
    quantize_row_q8_0_reference(x, &mut b);
    b
}

/// Dequantizes blocks.
pub fn deq(b: &[BlockQ8_0]) -> Vec<f32> {
    let mut x = vec![0.0; b.len() * 32];
    dequantize_row_q8_0(b, &mut x);
    x
}

/// Asserts `|got - want| <= tol · (1 + |want|)` elementwise.
pub fn assert_close(what: &str, isa: Isa, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}/{}: length", isa.name());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}/{}: [{i}] got {g}, want {w} (tol {tol})",
            isa.name()
        );
    }
}
