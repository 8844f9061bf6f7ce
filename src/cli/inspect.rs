//! `kiln inspect FILE [--full] [--json] [--hash]`: what is in a GGUF file.
//!
//! Text output: header, metadata (long arrays shortened unless `--full`),
//! the tensor table, totals by type and the model facts a user asks first
//! (architecture, layers, hidden size, heads, context, vocabulary, tokenizer,
//! pooling). `--json` prints one JSON document shaped like the gguf-py dumps
//! in `tests/fixtures/*.dump.json`, so scripts and tests can compare them:
//! arrays longer than [`SHORT_ARRAY`] give their length, first 8 values and
//! `sha256_json`, the SHA-256 of the whole array as Python's
//! `json.dumps(values, ensure_ascii=False)` writes it. `--hash` adds each
//! tensor's SHA-256 (reads every byte of the file, so it is off by default).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use kiln_runtime::gguf::{Array, GgmlType, GgufFile, Metadata, Value, ValueRef, ValueType};
use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

/// Arrays up to this length are printed in full.
pub const SHORT_ARRAY: u64 = 8;

/// Arguments of `kiln inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file.
    pub file: PathBuf,
    /// Print every element of long arrays.
    #[arg(long)]
    pub full: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Add the SHA-256 of each tensor's bytes (reads the whole file).
    #[arg(long)]
    pub hash: bool,
}

/// Runs `kiln inspect`.
/// Widest column a name is padded to: longer keys and tensor names print in
/// full, unpadded (a width above 65,535 panics in `format!`, and a column
/// as wide as the longest hostile key helps nobody).
const MAX_PAD: usize = 64;

pub fn run(args: &Args) -> anyhow::Result<()> {
    let f = GgufFile::open(&args.file).context("cannot inspect")?;
    if args.json {
        let doc = to_json(&f, args.full, args.hash);
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        write!(std::io::stdout(), "{}", to_text(&f, args.full, args.hash))?;
    }
    Ok(())
}

/// The facts about the model that a user asks first.
struct Facts {
    rows: Vec<(&'static str, String)>,
}

/// llama.cpp's `llama_pooling_type` names.
fn pooling_name(v: u32) -> &'static str {
    match v {
        0 => "none",
        1 => "mean",
        2 => "cls",
        3 => "last",
        4 => "rank",
        _ => "unknown",
    }
}

fn facts(m: &Metadata) -> Facts {
    let mut rows = Vec::new();
    let Ok(arch) = m.architecture() else {
        rows.push(("architecture", "(no general.architecture)".to_string()));
        return Facts { rows };
    };
    rows.push(("architecture", arch.to_string()));
    let key = |k: &str| format!("{arch}.{k}");
    let num = |k: &str| m.get_u64(&key(k)).ok().map(|v| v.to_string());
    let entries: [(&'static str, Option<String>); 9] = [
        ("layers", num("block_count")),
        ("hidden size", num("embedding_length")),
        ("feed-forward size", num("feed_forward_length")),
        ("attention heads", num("attention.head_count")),
        (
            "kv heads",
            num("attention.head_count_kv").or_else(|| num("attention.head_count")),
        ),
        ("head size", num("attention.key_length")),
        ("context length", num("context_length")),
        (
            "vocabulary size",
            m.get_array("tokenizer.ggml.tokens")
                .ok()
                .map(|a| a.len().to_string())
                .or_else(|| num("vocab_size")),
        ),
        (
            "tokenizer",
            m.get_str("tokenizer.ggml.model").ok().map(|model| {
                match m.get_str("tokenizer.ggml.pre") {
                    Ok(pre) => format!("{model} (pre: {pre})"),
                    Err(_) => model.to_string(),
                }
            }),
        ),
    ];
    for (name, v) in entries {
        if let Some(v) = v {
            rows.push((name, v));
        }
    }
    if let Ok(p) = m.get_u32(&key("pooling_type")) {
        rows.push(("pooling", format!("{} ({p})", pooling_name(p))));
    }
    if let Ok(w) = m.get_u64(&key("attention.sliding_window")) {
        rows.push(("sliding window", w.to_string()));
    }
    Facts { rows }
}

/// gguf-py's upper-case value type name (`UINT32`, `FLOAT32`, `STRING`).
fn gguf_py_type(t: ValueType) -> String {
    t.name().to_ascii_uppercase()
}

/// A value as Python's `repr` writes a float: shortest round-trip digits,
/// positional for exponents -4..16, else `1e-05` / `1.5e+16`; `json.dumps`
/// spells the non-finite ones `NaN`, `Infinity`, `-Infinity`.
pub fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Position of the decimal point relative to the digits (0.d1d2 x 10^decpt).
    let decpt = exp + 1;
    if (-3..=16).contains(&decpt) {
        let n = digits.len() as i32;
        let s = if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= n {
            format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..decpt as usize],
                &digits[decpt as usize..]
            )
        };
        format!("{sign}{s}")
    } else {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

/// Appends one element as Python's `json.dumps(..., ensure_ascii=False)`
/// writes it.
fn push_py_json(out: &mut String, v: ValueRef<'_>) {
    match v {
        ValueRef::F32(x) => out.push_str(&py_float_repr(f64::from(x))),
        ValueRef::F64(x) => out.push_str(&py_float_repr(x)),
        ValueRef::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        // serde_json escapes exactly what Python does without ensure_ascii:
        // `"`, `\` and control characters, with lower-case \u00XX.
        ValueRef::Str(s) => out.push_str(&Json::from(s).to_string()),
        ValueRef::Array(a) => push_py_json_array(out, a),
        other => {
            let _ = write!(out, "{}", other.as_i128().unwrap_or_default());
        }
    }
}

fn push_py_json_array(out: &mut String, a: &Array) {
    out.push('[');
    for (i, v) in a.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_py_json(out, v);
    }
    out.push(']');
}

/// SHA-256 (hex) of the array as `json.dumps(values, ensure_ascii=False)`.
pub fn array_sha256_json(a: &Array) -> String {
    let mut s = String::new();
    push_py_json_array(&mut s, a);
    hex(&Sha256::digest(s.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn json_of(v: ValueRef<'_>) -> Json {
    match v {
        ValueRef::U8(x) => x.into(),
        ValueRef::I8(x) => x.into(),
        ValueRef::U16(x) => x.into(),
        ValueRef::I16(x) => x.into(),
        ValueRef::U32(x) => x.into(),
        ValueRef::I32(x) => x.into(),
        ValueRef::U64(x) => x.into(),
        ValueRef::I64(x) => x.into(),
        ValueRef::F32(x) => Json::from(f64::from(x)),
        ValueRef::F64(x) => Json::from(x),
        ValueRef::Bool(x) => x.into(),
        ValueRef::Str(s) => s.into(),
        ValueRef::Array(a) => Json::Array(a.iter().map(json_of).collect()),
    }
}

fn metadata_json(v: &Value, full: bool) -> Json {
    let Value::Array(a) = v else {
        return json!({ "type": v.value_type().name(), "value": json_of(v.as_ref()) });
    };
    let mut o = Map::new();
    o.insert("type".into(), "array".into());
    o.insert("elem_type".into(), gguf_py_type(a.elem_type()).into());
    o.insert("len".into(), a.len().into());
    o.insert("sha256_json".into(), array_sha256_json(a).into());
    if full || a.len() <= SHORT_ARRAY {
        o.insert("value".into(), Json::Array(a.iter().map(json_of).collect()));
    } else {
        let head = a.iter().take(SHORT_ARRAY as usize).map(json_of).collect();
        o.insert("head".into(), Json::Array(head));
    }
    Json::Object(o)
}

/// The `--json` document.
pub fn to_json(f: &GgufFile, full: bool, hash: bool) -> Json {
    let metadata: Map<String, Json> = f
        .metadata()
        .iter()
        .map(|(k, v)| (k.to_string(), metadata_json(v, full)))
        .collect();
    let tensors: Vec<Json> = f
        .tensors()
        .iter()
        .map(|t| {
            let mut o = json!({
                "name": t.name,
                "shape": t.dims,
                "type": t.ty.to_string(),
                "offset": t.offset,
                "file_offset": f.data_offset() + t.offset,
                "n_bytes": t.n_bytes,
            });
            if hash {
                o["sha256"] = hex(&Sha256::digest(f.tensor_bytes(t))).into();
            }
            o
        })
        .collect();
    let facts: Map<String, Json> = facts(f.metadata())
        .rows
        .into_iter()
        .map(|(k, v)| (k.replace(' ', "_"), v.into()))
        .collect();
    json!({
        "file": f.path().file_name().map(|n| n.to_string_lossy().into_owned()),
        "path": f.path().display().to_string(),
        "version": f.version(),
        "alignment": f.alignment(),
        "data_offset": f.data_offset(),
        "file_size": f.len(),
        "facts": facts,
        "metadata": metadata,
        "tensors": tensors,
        "totals": totals(f).into_iter().map(|(ty, (n, bytes))| {
            json!({ "type": ty.to_string(), "tensors": n, "bytes": bytes })
        }).collect::<Vec<_>>(),
    })
}

/// Tensor count and bytes per type, in type id order.
fn totals(f: &GgufFile) -> BTreeMap<TypeKey, (usize, u64)> {
    let mut m = BTreeMap::new();
    for t in f.tensors() {
        let e = m.entry(TypeKey(t.ty)).or_insert((0, 0));
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    m
}

/// Orders types by id.
#[derive(PartialEq, Eq)]
struct TypeKey(GgmlType);

impl Ord for TypeKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id().cmp(&other.0.id())
    }
}

impl PartialOrd for TypeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for TypeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn text_value(v: &Value, full: bool) -> String {
    let Value::Array(a) = v else {
        return match v {
            Value::String(s) => Json::from(s.as_str()).to_string(),
            other => other.as_ref().to_string(),
        };
    };
    let shown = if full {
        a.len()
    } else {
        a.len().min(SHORT_ARRAY)
    };
    let items: Vec<String> = a
        .iter()
        .take(shown as usize)
        .map(|x| match x {
            ValueRef::Str(s) => Json::from(s).to_string(),
            other => other.to_string(),
        })
        .collect();
    let more = if shown < a.len() {
        format!(", ... {} more", a.len() - shown)
    } else {
        String::new()
    };
    format!(
        "[{} x {}] [{}{more}]",
        a.len(),
        a.elem_type(),
        items.join(", ")
    )
}

/// The text report.
pub fn to_text(f: &GgufFile, full: bool, hash: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "file        {}", f.path().display());
    let _ = writeln!(
        s,
        "gguf        v{}, alignment {}, data at byte {}, {} ({} bytes)",
        f.version(),
        f.alignment(),
        f.data_offset(),
        human_bytes(f.len()),
        f.len()
    );
    let _ = writeln!(
        s,
        "contents    {} metadata entries, {} tensors",
        f.metadata().len(),
        f.tensors().len()
    );

    let _ = writeln!(s, "\nmodel");
    for (k, v) in facts(f.metadata()).rows {
        let _ = writeln!(s, "  {k:<18} {v}");
    }

    let _ = writeln!(s, "\nmetadata");
    let width = f
        .metadata()
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0)
        .min(MAX_PAD);
    for (k, v) in f.metadata().iter() {
        let _ = writeln!(
            s,
            "  {k:<width$}  {:<7}  {}",
            v.value_type(),
            text_value(v, full)
        );
    }

    let _ = writeln!(s, "\ntensors");
    let name_w = f
        .tensors()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, MAX_PAD);
    let _ = writeln!(
        s,
        "  {:<name_w$}  {:<20}  {:<7}  {:>12}  {:>12}{}",
        "name",
        "shape",
        "type",
        "bytes",
        "offset",
        if hash { "  sha256" } else { "" }
    );
    for t in f.tensors() {
        let shape = format!(
            "[{}]",
            t.dims
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let sha = if hash {
            format!("  {}", hex(&Sha256::digest(f.tensor_bytes(t))))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {:<name_w$}  {shape:<20}  {:<7}  {:>12}  {:>12}{sha}",
            t.name,
            t.ty.to_string(),
            t.n_bytes,
            t.offset
        );
    }

    let _ = writeln!(s, "\ntotals by type");
    let mut all = (0usize, 0u64, 0u64);
    for (ty, (n, bytes)) in totals(f) {
        let elements: u64 = f
            .tensors()
            .iter()
            .filter(|t| t.ty == ty.0)
            .map(|t| t.n_elements())
            .sum();
        let _ = writeln!(
            s,
            "  {:<7}  {n:>5} tensors  {:>12} bytes  ({})  {elements} elements",
            ty.to_string(),
            bytes,
            human_bytes(bytes)
        );
        all = (all.0 + n, all.1 + bytes, all.2 + elements);
    }
    let _ = writeln!(
        s,
        "  {:<7}  {:>5} tensors  {:>12} bytes  ({})  {} elements",
        "all",
        all.0,
        all.1,
        human_bytes(all.1),
        all.2
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        let cases: [(f64, &str); 16] = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1000.0, "-1000.0"),
            (0.5, "0.5"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e17, "1.2345e+17"),
            (123.456, "123.456"),
            (f64::from(0.95f32), "0.949999988079071"),
            (f64::from(1e-12f32), "9.999999960041972e-13"),
            (f64::INFINITY, "Infinity"),
            (f64::NAN, "NaN"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float_repr(x), want, "{x:e}");
        }
    }
}
