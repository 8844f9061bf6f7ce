//! Scalar dequantizers against gguf-py's (`tests/fixtures/dequant_reference.json`,
//! made by `tests/fixtures/tools/make_dequant_reference.py`), and on every
//! tensor of the real Gemma-3-270M Q4_K_M file when it is present.

use std::path::PathBuf;

use kiln_runtime::gguf::{GgmlType, GgufFile, dequantize_bytes, dequantize_supported};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn matches_gguf_py_bit_for_bit() {
    let text = std::fs::read_to_string(fixtures().join("dequant_reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut seen = Vec::new();
    for case in json["cases"].as_array().unwrap() {
        let ty_name = case["type"].as_str().unwrap();
        let ty = *GgmlType::ALL
            .iter()
            .find(|t| t.to_string() == ty_name)
            .unwrap();
        let raw = from_hex(case["blocks_hex"].as_str().unwrap());
        // Misaligned copy too: dequantization must not depend on alignment.
        let mut shifted = vec![0u8; raw.len() + 1];
        shifted[1..].copy_from_slice(&raw);
        let expected: Vec<u32> = case["values_f32_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        for bytes in [&raw[..], &shifted[1..]] {
            let got: Vec<u32> = dequantize_bytes(ty, bytes)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(got.len(), expected.len(), "{}", case["source"]);
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                // gguf-py computes in f32 with the same operation order for
                // these types, so results agree to the bit (a multiply-add
                // difference would show as 1 ulp).
                assert_eq!(
                    g,
                    e,
                    "{ty} {} value {i}: {} vs {}",
                    case["source"],
                    f32::from_bits(*g),
                    f32::from_bits(*e)
                );
            }
        }
        seen.push(ty);
    }
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        assert!(seen.contains(&ty), "no reference case for {ty}");
    }
}

#[test]
fn partial_blocks_are_refused() {
    assert!(dequantize_bytes(GgmlType::Q4_K, &[0u8; 143]).is_none());
    assert!(dequantize_bytes(GgmlType::IQ2_XXS, &[0u8; 66]).is_none());
    assert!(!dequantize_supported(GgmlType::Q2_K));
}

fn gemma_path() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("KILN_HOME")
            .map(|h| PathBuf::from(h).join("models/gemma-3-270m-q4_k_m.gguf")),
        Some(PathBuf::from("/work/models/gemma-3-270m-q4_k_m.gguf")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.exists());
    if found.is_none() {
        println!("skipped: gemma-3-270m-q4_k_m.gguf not found ($KILN_HOME/models or /work/models)");
    }
    found
}

#[test]
fn gemma_3_270m_every_tensor_dequantizes() {
    let Some(path) = gemma_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.architecture().unwrap(), "gemma3");
    let mut types = std::collections::BTreeSet::new();
    for t in f.tensors() {
        types.insert(t.ty.to_string());
        let v = f.dequantize(&t.name).unwrap();
        assert_eq!(v.len() as u64, t.n_elements(), "{}", t.name);
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{} has non-finite values",
            t.name
        );
        let mean_abs = v.iter().map(|x| x.abs() as f64).sum::<f64>() / v.len() as f64;
        // Gemma norm weights reach ~100; quantized weights are far smaller.
        assert!(
            mean_abs > 0.0 && mean_abs < 1000.0,
            "{}: mean |x| {mean_abs}",
            t.name
        );
    }
    let types: Vec<String> = types.into_iter().collect();
    assert_eq!(types, ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"]);
}
