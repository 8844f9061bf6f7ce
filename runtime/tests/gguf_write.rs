//! The writer: read → write → read round trip on the MiniLM fixture, and the
//! writer's checks on misuse.

use std::path::PathBuf;

use kiln_runtime::gguf::{GgmlType, GgufFile, GgufWriter, Value, WriteError};

fn minilm() -> GgufFile {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf");
    GgufFile::open(path).unwrap()
}

/// Writes `f`'s metadata and tensors, streaming each tensor in `chunk`-byte
/// pieces.
fn rewrite(f: &GgufFile, chunk: usize) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata().iter() {
        w.add_metadata(k, v.clone()).unwrap();
    }
    for t in f.tensors() {
        let n = w.add_tensor(&t.name, &t.dims, t.ty).unwrap();
        assert_eq!(n, t.n_bytes);
    }
    let mut out = w.begin(Vec::new()).unwrap();
    assert_eq!(out.data_offset(), f.data_offset());
    for t in f.tensors() {
        if chunk == 0 {
            out.write_tensor(&t.name, f.tensor_bytes(t)).unwrap();
        } else {
            for piece in f.tensor_bytes(t).chunks(chunk) {
                out.write_data(piece).unwrap();
            }
        }
    }
    out.finish().unwrap()
}

#[test]
fn round_trip_is_byte_identical() {
    let f = minilm();
    let bytes = rewrite(&f, 0);
    // Same order, same alignment, same padding as llama.cpp's writer: the
    // file comes back byte for byte.
    assert_eq!(bytes.len() as u64, f.len());
    assert!(bytes == f.as_bytes(), "rewritten file differs");

    let g = GgufFile::from_vec(bytes, "rewritten.gguf").unwrap();
    assert_eq!(g.metadata().len(), f.metadata().len());
    for ((ka, va), (kb, vb)) in f.metadata().iter().zip(g.metadata().iter()) {
        assert_eq!(ka, kb);
        assert_eq!(va, vb, "{ka}");
    }
    assert_eq!(f.tensors(), g.tensors());
    for t in f.tensors() {
        assert_eq!(f.tensor_bytes(t), g.tensor_bytes(t), "{}", t.name);
    }
}

#[test]
fn streaming_in_pieces_gives_the_same_file() {
    let f = minilm();
    assert!(rewrite(&f, 1000) == f.as_bytes());
}

#[test]
fn new_values_and_alignment() {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("t".into()))
        .unwrap();
    w.add_metadata("general.alignment", Value::U32(64)).unwrap();
    w.add_metadata("t.tokens", Value::string_array(["a", "b"]))
        .unwrap();
    w.add_metadata("t.scores", Value::f32_array(&[0.5, -1.0]))
        .unwrap();
    w.add_metadata("t.types", Value::i32_array(&[1, 2, 3]))
        .unwrap();
    w.add_tensor("a", &[3], GgmlType::F32).unwrap();
    w.add_tensor("b", &[2, 2], GgmlType::F16).unwrap();
    let mut out = w.begin(Vec::new()).unwrap();
    assert_eq!(out.tensors()[1].offset, 64);
    out.write_tensor("a", &[0u8; 12]).unwrap();
    out.write_tensor("b", &[0u8; 8]).unwrap();
    let bytes = out.finish().unwrap();

    let f = GgufFile::from_vec(bytes, "new.gguf").unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    let m = f.metadata();
    assert_eq!(
        m.get_str_array("t.tokens").unwrap().collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(m.get_f32_array("t.scores").unwrap(), [0.5, -1.0]);
    assert_eq!(m.get_i32_array("t.types").unwrap(), [1, 2, 3]);
    assert_eq!(f.tensor_f32("a").unwrap(), [0.0; 3]);
}

#[test]
fn misuse_is_refused() {
    let mut w = GgufWriter::new();
    w.add_metadata("k", Value::U8(1)).unwrap();
    assert!(matches!(
        w.add_metadata("k", Value::U8(2)),
        Err(WriteError::DuplicateKey(_))
    ));
    assert!(matches!(
        w.add_metadata("general.alignment", Value::U32(48)),
        Err(WriteError::BadAlignment)
    ));
    assert!(matches!(
        w.add_metadata("general.alignment", Value::U64(64)),
        Err(WriteError::BadAlignment)
    ));
    assert!(matches!(
        w.add_tensor("q", &[33], GgmlType::Q8_0),
        Err(WriteError::BadTensor { .. })
    ));
    assert!(matches!(
        w.add_tensor("q", &[1, 1, 1, 1, 1], GgmlType::F32),
        Err(WriteError::BadTensor { .. })
    ));
    assert!(matches!(
        w.add_tensor("q", &[1 << 40, 1 << 40], GgmlType::F32),
        Err(WriteError::BadTensor { .. })
    ));
    w.add_tensor("x", &[4], GgmlType::F32).unwrap();
    assert!(matches!(
        w.add_tensor("x", &[4], GgmlType::F32),
        Err(WriteError::DuplicateTensor(_))
    ));
    w.add_tensor("y", &[32], GgmlType::Q8_0).unwrap();

    let mut out = w.begin(Vec::new()).unwrap();
    assert!(matches!(
        out.write_tensor("y", &[0; 34]),
        Err(WriteError::WrongTensor { .. })
    ));
    assert!(matches!(
        out.write_tensor("x", &[0; 15]),
        Err(WriteError::WrongSize {
            expected: 16,
            got: 15,
            ..
        })
    ));
    out.write_tensor("x", &[0; 16]).unwrap();
    out.write_data(&[0; 10]).unwrap();
    assert!(matches!(
        out.write_data(&[0; 25]),
        Err(WriteError::TooMuchData)
    ));
    let mut w = GgufWriter::new();
    w.add_tensor("x", &[4], GgmlType::F32).unwrap();
    let out = w.begin(Vec::new()).unwrap();
    assert!(matches!(
        out.finish(),
        Err(WriteError::Unfinished { missing: 1, .. })
    ));
}
