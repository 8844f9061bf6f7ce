//! Fuzzes model opening (metadata -> plan) and one embedding on the real
//! MiniLM file from `tests/fixtures`: the input edits its metadata values
//! (any key, any type), drops or reshapes tensors, and picks a text. Opening
//! must give a model or a typed error, and an opened model must embed to
//! finite values or a typed error: never a panic, abort or `NaN`.

#![no_main]

use std::sync::{Arc, LazyLock};

use arbitrary::Arbitrary;
use kiln::runtime::gguf::{GgufFile, GgufWriter, Value};
use libfuzzer_sys::fuzz_target;

/// Replacement metadata values: small and boundary numbers of every type.
#[derive(Arbitrary, Debug)]
enum NewValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Remove,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    /// Metadata entry `index` (modulo the count) gets a new value.
    Meta(u16, NewValue),
    /// Tensor `index` is left out.
    DropTensor(u16),
    /// Tensor `index` gets new dims (its bytes cut or zero-padded to fit).
    Reshape(u16, Vec<u32>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    edits: Vec<Edit>,
    text: String,
}

static BASE: LazyLock<GgufFile> = LazyLock::new(|| {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf"
    );
    GgufFile::open(path).expect("the MiniLM fixture opens")
});

/// Largest tensor the harness itself will write (reshaped tensors only).
const MAX_TENSOR_BYTES: u64 = 8 << 20;

fn rewrite(edits: &[Edit]) -> Option<Vec<u8>> {
    let src = &*BASE;
    let mut meta: Vec<(String, Option<Value>)> = src
        .metadata()
        .iter()
        .map(|(k, v)| (k.to_owned(), Some(v.clone())))
        .collect();
    let mut tensors: Vec<(String, Vec<u64>, _, Option<&[u8]>)> = src
        .tensors()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.dims.clone(),
                t.ty,
                Some(src.tensor_bytes(t)),
            )
        })
        .collect();
    let mut keep = vec![true; tensors.len()];
    for e in edits.iter().take(8) {
        match e {
            Edit::Meta(i, v) => {
                let n = meta.len();
                let slot = &mut meta[usize::from(*i) % n].1;
                *slot = match v {
                    NewValue::U8(x) => Some(Value::U8(*x)),
                    NewValue::I8(x) => Some(Value::I8(*x)),
                    NewValue::U16(x) => Some(Value::U16(*x)),
                    NewValue::I16(x) => Some(Value::I16(*x)),
                    NewValue::U32(x) => Some(Value::U32(*x)),
                    NewValue::I32(x) => Some(Value::I32(*x)),
                    NewValue::U64(x) => Some(Value::U64(*x)),
                    NewValue::I64(x) => Some(Value::I64(*x)),
                    NewValue::F32(x) => Some(Value::F32(*x)),
                    NewValue::F64(x) => Some(Value::F64(*x)),
                    NewValue::Bool(x) => Some(Value::Bool(*x)),
                    NewValue::Str(s) => Some(Value::String(s.clone())),
                    NewValue::Remove => None,
                };
            }
            Edit::DropTensor(i) => keep[usize::from(*i) % tensors.len()] = false,
            Edit::Reshape(i, dims) => {
                let n = tensors.len();
                let t = &mut tensors[usize::from(*i) % n];
                if dims.is_empty() || dims.len() > 4 {
                    return None;
                }
                t.1 = dims.iter().map(|&d| u64::from(d)).collect();
                t.3 = None;
            }
        }
    }
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        if let Some(v) = v {
            w.add_metadata(k, v).ok()?;
        }
    }
    let mut kept = Vec::new();
    for (t, _) in tensors.iter().zip(&keep).filter(|(_, k)| **k) {
        let n_bytes = w.add_tensor(&t.0, &t.1, t.2).ok()?;
        if t.3.is_none() && n_bytes > MAX_TENSOR_BYTES {
            return None;
        }
        kept.push((t, n_bytes));
    }
    let mut out = w.begin(Vec::new()).ok()?;
    let mut pad = Vec::new();
    for (t, n_bytes) in kept {
        let bytes = match t.3 {
            Some(b) => b,
            None => {
                pad.clear();
                pad.resize(n_bytes as usize, 0u8);
                &pad[..]
            }
        };
        out.write_tensor(&t.0, bytes).ok()?;
    }
    out.finish().ok()
}

fuzz_target!(|input: Input| {
    let Some(bytes) = rewrite(&input.edits) else {
        return;
    };
    let Ok(file) = GgufFile::from_vec(bytes, "fuzz.gguf") else {
        return;
    };
    let Ok(e) = kiln::Embedder::builder()
        .threads(1)
        .pack_cache(None)
        .open_file(Arc::new(file))
    else {
        return;
    };
    if let Ok(v) = e.embed(&input.text) {
        assert!(
            v.iter().all(|x| x.is_finite()),
            "non-finite vector returned as a result"
        );
    }
});
