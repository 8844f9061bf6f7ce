//! CLS pooling (bge-small-style models) on the MiniLM weights: the GGUF's
//! `bert.pooling_type` is rewritten to CLS with kiln's GGUF writer, and the
//! vectors are checked against CLS-pooling goldens made with
//! sentence-transformers and llama.cpp.

mod common;

use std::sync::Arc;

use kiln::runtime::gguf::{GgufFile, GgufWriter, Value};
use kiln::{Embedder, Pooling};

/// The MiniLM fixture with `bert.pooling_type` set to CLS (2), in memory.
fn minilm_with_cls_pooling() -> Arc<GgufFile> {
    let src = GgufFile::open(common::fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf")).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in src.metadata().iter() {
        let v = if k == "bert.pooling_type" {
            Value::U32(Pooling::Cls.to_gguf())
        } else {
            v.clone()
        };
        w.add_metadata(k, v).unwrap();
    }
    for t in src.tensors() {
        w.add_tensor(&t.name, &t.dims, t.ty).unwrap();
    }
    let mut out = w.begin(Vec::new()).unwrap();
    for t in src.tensors() {
        out.write_tensor(&t.name, src.tensor_bytes(t)).unwrap();
    }
    let bytes = out.finish().unwrap();
    Arc::new(GgufFile::from_vec(bytes, "minilm-cls.gguf").unwrap())
}

#[test]
fn cls_pooling_matches_references() {
    let file = minilm_with_cls_pooling();
    let e = Embedder::builder().truncate(true).open_file(file).unwrap();
    assert_eq!(e.pooling(), Pooling::Cls);
    let mut min_st = f64::MAX;
    let mut sum_st = 0.0;
    let st = common::goldens("all-MiniLM-L6-v2.cls.st.jsonl");
    for g in &st {
        let v = e.embed(&g.text).unwrap();
        let s = common::cosine(&v, &g.embedding);
        min_st = min_st.min(s);
        sum_st += s;
    }
    let mean_st = sum_st / st.len() as f64;
    eprintln!("CLS vs sentence-transformers: min {min_st:.6}, mean {mean_st:.6}");
    assert!(
        min_st >= common::MINILM_Q8_VS_F32_MIN,
        "min cosine {min_st}"
    );
    assert!(mean_st >= common::Q8_VS_F32_MEAN, "mean cosine {mean_st}");

    let mut min_ll = f64::MAX;
    for g in common::goldens("all-MiniLM-L6-v2.cls.llamacpp.jsonl") {
        if e.tokenize(&g.text).unwrap() != g.token_ids {
            continue; // llama.cpp mis-tokenizes the Korean line
        }
        min_ll = min_ll.min(common::cosine(&e.embed(&g.text).unwrap(), &g.embedding));
    }
    eprintln!("CLS vs llama.cpp: min {min_ll:.6}");
    assert!(
        min_ll >= common::SAME_GGUF_MIN,
        "min cosine vs llama.cpp {min_ll}"
    );
}

#[test]
fn pooling_can_be_overridden_without_rewriting() {
    let path = common::fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf");
    let rewritten = Embedder::builder()
        .open_file(minilm_with_cls_pooling())
        .unwrap();
    let overridden = Embedder::builder()
        .pooling(Pooling::Cls)
        .open(path)
        .unwrap();
    let text = "The quick brown fox";
    assert_eq!(
        rewritten.embed(text).unwrap(),
        overridden.embed(text).unwrap()
    );
}
