//! Broken GGUF files, built byte by byte, and the exact error each gives.
//! None may panic, and none may make the reader allocate what the file
//! claims before it checks the claim against the bytes that are there.

use kiln_runtime::gguf::{FormatError, GgmlType, GgufError, GgufFile, MAX_ARRAY_DEPTH};

/// A GGUF file described field by field, so tests can break any field.
#[derive(Clone)]
struct Raw {
    magic: [u8; 4],
    version: u32,
    /// Overrides the tensor count written in the header.
    n_tensors: Option<u64>,
    /// Overrides the metadata count written in the header.
    n_kv: Option<u64>,
    /// (key bytes, value type id, encoded value).
    kvs: Vec<(Vec<u8>, u32, Vec<u8>)>,
    tensors: Vec<RawTensor>,
    /// Padding target before the data section.
    alignment: usize,
    data: Vec<u8>,
}

#[derive(Clone)]
struct RawTensor {
    name: Vec<u8>,
    dims: Vec<u64>,
    ty: u32,
    offset: u64,
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

fn array(elem: u32, count: u64, items: &[u8]) -> Vec<u8> {
    let mut v = elem.to_le_bytes().to_vec();
    v.extend_from_slice(&count.to_le_bytes());
    v.extend_from_slice(items);
    v
}

const U32: u32 = 4;
const STRING: u32 = 8;
const ARRAY: u32 = 9;

impl Raw {
    /// A small valid file: five metadata entries (string, u32, array of
    /// strings, array of arrays, f32) and two tensors (F32 [4, 2], Q8_0 [32]).
    fn valid() -> Self {
        let strs = [string(b"a"), string(b"bc"), string("é".as_bytes())].concat();
        let nested = [
            array(U32, 2, &[1, 0, 0, 0, 2, 0, 0, 0]),
            array(STRING, 0, &[]),
        ]
        .concat();
        let f32_data: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let mut q8 = vec![0u8; 34];
        q8[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        q8[2] = 4;
        let mut data = f32_data;
        data.resize(64, 0);
        data.extend_from_slice(&q8);
        Raw {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kvs: vec![
                (b"general.architecture".to_vec(), STRING, string(b"test")),
                (b"test.count".to_vec(), U32, 7u32.to_le_bytes().to_vec()),
                (b"test.tokens".to_vec(), ARRAY, array(STRING, 3, &strs)),
                (b"test.nested".to_vec(), ARRAY, array(ARRAY, 2, &nested)),
                (b"test.eps".to_vec(), 6, 1e-6f32.to_le_bytes().to_vec()),
            ],
            tensors: vec![
                RawTensor {
                    name: b"w".to_vec(),
                    dims: vec![4, 2],
                    ty: 0,
                    offset: 0,
                },
                RawTensor {
                    name: b"q".to_vec(),
                    dims: vec![32],
                    ty: 8,
                    offset: 64,
                },
            ],
            alignment: 32,
            data,
        }
    }

    fn build(&self) -> Vec<u8> {
        let mut b = self.magic.to_vec();
        b.extend_from_slice(&self.version.to_le_bytes());
        let n_tensors = self.n_tensors.unwrap_or(self.tensors.len() as u64);
        b.extend_from_slice(&n_tensors.to_le_bytes());
        let n_kv = self.n_kv.unwrap_or(self.kvs.len() as u64);
        b.extend_from_slice(&n_kv.to_le_bytes());
        for (k, ty, v) in &self.kvs {
            b.extend_from_slice(&string(k));
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(v);
        }
        for t in &self.tensors {
            b.extend_from_slice(&string(&t.name));
            b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.ty.to_le_bytes());
            b.extend_from_slice(&t.offset.to_le_bytes());
        }
        b.resize(b.len().next_multiple_of(self.alignment), 0);
        b.extend_from_slice(&self.data);
        b
    }

    /// Byte offsets where the sections start: (metadata, tensor infos,
    /// padding, data).
    fn sections(&self) -> (usize, usize, usize, usize) {
        let kv_len: usize = self
            .kvs
            .iter()
            .map(|(k, _, v)| 8 + k.len() + 4 + v.len())
            .sum();
        let ti_len: usize = self
            .tensors
            .iter()
            .map(|t| 8 + t.name.len() + 4 + 8 * t.dims.len() + 4 + 8)
            .sum();
        let infos = 24 + kv_len;
        let end = infos + ti_len;
        (24, infos, end, end.next_multiple_of(self.alignment))
    }
}

fn open(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
    GgufFile::from_vec(bytes, "hostile.gguf")
}

/// The format error of opening `bytes`, which must fail.
fn format_error(bytes: Vec<u8>) -> (u64, FormatError) {
    match open(bytes) {
        Err(GgufError::Format { offset, kind, .. }) => (offset, kind),
        Err(other) => panic!("expected a format error, got {other}"),
        Ok(_) => panic!("expected a format error, the file opened"),
    }
}

fn kind(bytes: Vec<u8>) -> FormatError {
    format_error(bytes).1
}

#[test]
fn the_valid_file_opens() {
    let raw = Raw::valid();
    let f = open(raw.build()).unwrap();
    assert_eq!(f.data_offset() as usize, raw.sections().3);
    let m = f.metadata();
    assert_eq!(m.architecture().unwrap(), "test");
    assert_eq!(m.get_u32("test.count").unwrap(), 7);
    let tokens: Vec<&str> = m.get_str_array("test.tokens").unwrap().collect();
    assert_eq!(tokens, ["a", "bc", "é"]);
    let nested = m.get_array("test.nested").unwrap();
    assert_eq!(nested.len(), 2);
    let items = nested.nested_items().unwrap();
    assert_eq!(
        items[0]
            .iter()
            .map(|v| v.as_i128().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(items[1].is_empty());
    assert_eq!(m.get_f32("test.eps").unwrap(), 1e-6);
    assert_eq!(f.dequantize("w").unwrap(), [0., 1., 2., 3., 4., 5., 6., 7.]);
    let q = f.dequantize("q").unwrap();
    assert_eq!(q[0], 2.0);
    assert!(q[1..].iter().all(|&v| v == 0.0));
    assert_eq!(f.tensor("q").unwrap().ty, GgmlType::Q8_0);
}

#[test]
fn truncated_at_every_byte() {
    let raw = Raw::valid();
    let full = raw.build();
    let (kv, infos, infos_end, data) = raw.sections();
    for len in 0..full.len() {
        let (offset, k) = format_error(full[..len].to_vec());
        assert!(
            offset <= len as u64,
            "len {len}: error offset {offset} past the end"
        );
        let expected_ok = match k {
            FormatError::Truncated { .. } | FormatError::CountTooLarge { .. } => len < infos_end,
            FormatError::TensorOutOfBounds { .. } => len >= infos_end,
            _ => false,
        };
        assert!(expected_ok, "len {len}: unexpected {k:?}");
    }
    // Exact errors at the section boundaries.
    assert!(matches!(
        kind(full[..0].to_vec()),
        FormatError::Truncated { what: "magic", .. }
    ));
    assert!(matches!(
        kind(full[..4].to_vec()),
        FormatError::Truncated {
            what: "version",
            ..
        }
    ));
    assert!(matches!(
        kind(full[..8].to_vec()),
        FormatError::Truncated {
            what: "tensor count",
            ..
        }
    ));
    assert!(matches!(
        kind(full[..16].to_vec()),
        FormatError::Truncated {
            what: "metadata count",
            ..
        }
    ));
    assert_eq!(
        kind(full[..kv].to_vec()),
        FormatError::CountTooLarge {
            what: "metadata entry",
            count: 5,
            available: 0
        }
    );
    assert_eq!(
        kind(full[..infos].to_vec()),
        FormatError::CountTooLarge {
            what: "tensor info",
            count: 2,
            available: 0
        }
    );
    for len in [infos_end, data - 1, data, data + 31, full.len() - 1] {
        assert!(
            matches!(
                kind(full[..len].to_vec()),
                FormatError::TensorOutOfBounds { .. }
            ),
            "len {len}"
        );
    }
}

#[test]
fn wrong_magic() {
    for magic in [*b"GGUX", *b"GGML", *b"\0\0\0\0", *b"FUGG"] {
        let mut raw = Raw::valid();
        raw.magic = magic;
        assert_eq!(
            format_error(raw.build()),
            (
                0,
                FormatError::BadMagic {
                    found: magic.to_vec()
                }
            )
        );
    }
    assert_eq!(
        kind(b"GX".to_vec()),
        FormatError::BadMagic {
            found: b"GX".to_vec()
        }
    );
}

#[test]
fn versions() {
    let mut raw = Raw::valid();
    raw.version = 99;
    assert_eq!(
        format_error(raw.build()),
        (4, FormatError::UnsupportedVersion(99))
    );
    raw.version = 1;
    assert_eq!(kind(raw.build()), FormatError::VersionOne);
    raw.version = 0;
    assert_eq!(kind(raw.build()), FormatError::UnsupportedVersion(0));
    raw.version = 3u32.swap_bytes();
    let err = open(raw.build()).unwrap_err().to_string();
    assert!(err.contains("big-endian"), "{err}");
    raw.version = 2;
    open(raw.build()).unwrap();
}

#[test]
fn huge_counts() {
    let mut raw = Raw::valid();
    raw.n_tensors = Some(1 << 60);
    let (offset, k) = format_error(raw.build());
    assert_eq!(offset, 8);
    assert!(matches!(
        k,
        FormatError::CountTooLarge {
            what: "tensor info",
            count: 0x1000_0000_0000_0000,
            ..
        }
    ));

    let mut raw = Raw::valid();
    raw.n_kv = Some(u64::MAX);
    assert!(matches!(
        format_error(raw.build()),
        (
            16,
            FormatError::CountTooLarge {
                what: "metadata entry",
                count: u64::MAX,
                ..
            }
        )
    ));

    // An array claiming 2^61 u64 elements (count * size overflows u64).
    let mut raw = Raw::valid();
    raw.kvs[1] = (b"big".to_vec(), ARRAY, array(10, 1 << 61, &[0; 16]));
    assert!(matches!(
        kind(raw.build()),
        FormatError::CountTooLarge {
            what: "array element",
            count: 0x2000_0000_0000_0000,
            ..
        }
    ));

    // One more string than the array holds.
    let mut raw = Raw::valid();
    let strs = [string(b"a"), string(b"b")].concat();
    raw.kvs[2] = (b"test.tokens".to_vec(), ARRAY, array(STRING, 3, &strs));
    assert!(matches!(
        kind(raw.build()),
        FormatError::Truncated { .. } | FormatError::UnknownValueType(_)
    ));
}

#[test]
fn huge_string_lengths() {
    let mut raw = Raw::valid();
    let mut key = u64::MAX.to_le_bytes().to_vec();
    key.extend_from_slice(b"x");
    raw.kvs[0] = (Vec::new(), STRING, Vec::new());
    let mut bytes = raw.build();
    // Replace the first key's length (at offset 24) with u64::MAX.
    bytes[24..32].copy_from_slice(&key[..8]);
    assert!(matches!(
        format_error(bytes),
        (
            24,
            FormatError::Truncated {
                what: "metadata key",
                needed: u64::MAX,
                ..
            }
        )
    ));

    let mut raw = Raw::valid();
    raw.kvs[0].2 = (1u64 << 40).to_le_bytes().to_vec();
    assert!(matches!(
        kind(raw.build()),
        FormatError::Truncated {
            what: "metadata string",
            needed: 0x100_0000_0000,
            ..
        }
    ));
}

#[test]
fn bad_utf8() {
    let mut raw = Raw::valid();
    raw.kvs[1].0 = b"bad\xffkey".to_vec();
    assert_eq!(
        kind(raw.build()),
        FormatError::BadUtf8 {
            what: "metadata key"
        }
    );

    let mut raw = Raw::valid();
    raw.kvs[0].2 = string(b"\xc3\x28");
    assert_eq!(
        kind(raw.build()),
        FormatError::BadUtf8 {
            what: "metadata string"
        }
    );

    let mut raw = Raw::valid();
    let strs = [string(b"a"), string(b"\xed\xa0\x80"), string(b"c")].concat();
    raw.kvs[2] = (b"test.tokens".to_vec(), ARRAY, array(STRING, 3, &strs));
    assert_eq!(
        kind(raw.build()),
        FormatError::BadUtf8 {
            what: "array string"
        }
    );

    // Strings of 128 bytes or more are validated apart from the runs of
    // short ones (their length prefix is not ASCII): bad UTF-8 before, in
    // and after a long string.
    let long_ok = "é".repeat(100);
    let mut long_bad = "x".repeat(200).into_bytes();
    long_bad[150] = 0xff;
    for (strs, ok) in [
        (
            vec![string(long_ok.as_bytes()), string(b"a"), string(b"b")],
            true,
        ),
        (
            vec![string(b"\xff"), string(long_ok.as_bytes()), string(b"b")],
            false,
        ),
        (vec![string(b"a"), string(&long_bad), string(b"b")], false),
        (
            vec![string(b"a"), string(long_ok.as_bytes()), string(b"\xc3")],
            false,
        ),
    ] {
        let mut raw = Raw::valid();
        raw.kvs[2] = (
            b"test.tokens".to_vec(),
            ARRAY,
            array(STRING, 3, &strs.concat()),
        );
        if ok {
            let f = open(raw.build()).unwrap();
            let got: Vec<&str> = f.metadata().get_str_array("test.tokens").unwrap().collect();
            assert_eq!(got, [long_ok.as_str(), "a", "b"]);
        } else {
            assert_eq!(
                kind(raw.build()),
                FormatError::BadUtf8 {
                    what: "array string"
                }
            );
        }
    }

    let mut raw = Raw::valid();
    raw.tensors[0].name = b"\x80".to_vec();
    assert_eq!(
        kind(raw.build()),
        FormatError::BadUtf8 {
            what: "tensor name"
        }
    );
}

#[test]
fn unknown_value_types() {
    let mut raw = Raw::valid();
    raw.kvs[1].1 = 13;
    assert_eq!(kind(raw.build()), FormatError::UnknownValueType(13));
    let mut raw = Raw::valid();
    raw.kvs[1] = (b"arr".to_vec(), ARRAY, array(0xdead, 0, &[]));
    assert_eq!(kind(raw.build()), FormatError::UnknownValueType(0xdead));
}

#[test]
fn arrays_nested_too_deep() {
    let mut value = array(U32, 0, &[]);
    for _ in 0..MAX_ARRAY_DEPTH {
        value = array(ARRAY, 1, &value);
    }
    let mut raw = Raw::valid();
    raw.kvs[1] = (b"deep".to_vec(), ARRAY, value.clone());
    assert_eq!(
        kind(raw.build()),
        FormatError::ArrayTooDeep(MAX_ARRAY_DEPTH)
    );
    // One level less is fine.
    let mut raw = Raw::valid();
    raw.kvs[1] = (b"deep".to_vec(), ARRAY, value[12..].to_vec());
    open(raw.build()).unwrap();
}

#[test]
fn duplicate_key() {
    let mut raw = Raw::valid();
    raw.kvs[1].0 = b"general.architecture".to_vec();
    raw.kvs[1].1 = STRING;
    raw.kvs[1].2 = string(b"x");
    assert_eq!(
        kind(raw.build()),
        FormatError::DuplicateKey("general.architecture".into())
    );
}

#[test]
fn alignment_values() {
    for (ty, value) in [
        (U32, 0u32.to_le_bytes().to_vec()),
        (U32, 48u32.to_le_bytes().to_vec()),
        (10, (1u64 << 33).to_le_bytes().to_vec()),
        (5, (-32i32).to_le_bytes().to_vec()),
        (STRING, string(b"32")),
    ] {
        let mut raw = Raw::valid();
        raw.kvs.push((b"general.alignment".to_vec(), ty, value));
        assert!(
            matches!(kind(raw.build()), FormatError::BadAlignment(_)),
            "type {ty}"
        );
    }
    // 64 is fine and moves the data section.
    let mut raw = Raw::valid();
    raw.kvs.push((
        b"general.alignment".to_vec(),
        U32,
        64u32.to_le_bytes().to_vec(),
    ));
    raw.alignment = 64;
    let f = open(raw.build()).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(f.dequantize("q").unwrap()[0], 2.0);
}

#[test]
fn tensor_shapes() {
    let with = |f: &dyn Fn(&mut RawTensor)| {
        let mut raw = Raw::valid();
        f(&mut raw.tensors[1]);
        kind(raw.build())
    };
    assert!(matches!(
        with(&|t| t.dims = vec![32, 1, 1, 1, 1]),
        FormatError::TooManyDims {
            n_dims: 5,
            max: 4,
            ..
        }
    ));
    assert!(matches!(
        with(&|t| t.dims = vec![32, 1 << 63]),
        FormatError::DimTooLarge { dim: 1, .. }
    ));
    assert!(matches!(
        with(&|t| t.dims = vec![1 << 32, 1 << 32, 1 << 32]),
        FormatError::ShapeOverflow { .. }
    ));
    // Elements fit i64 but bytes do not fit u64 (F32: 4 bytes each).
    assert!(matches!(
        with(&|t| {
            t.ty = 0;
            t.dims = vec![1 << 31, 1 << 31];
        }),
        FormatError::ShapeOverflow { .. }
    ));
    // A sane shape whose bytes are not in the file.
    assert!(matches!(
        with(&|t| t.dims = vec![32, 1 << 20]),
        FormatError::TensorOutOfBounds { .. }
    ));
    assert!(matches!(
        with(&|t| {
            t.ty = 0;
            t.dims = vec![1 << 62];
        }),
        FormatError::ShapeOverflow { .. }
    ));
    assert!(matches!(
        with(&|t| t.dims = vec![33]),
        FormatError::PartialBlock {
            ne0: 33,
            block: 32,
            ..
        }
    ));
    assert!(matches!(
        with(&|t| t.ty = 4),
        FormatError::UnknownTensorType { id: 4, .. }
    ));
    assert!(matches!(
        with(&|t| t.ty = 1000),
        FormatError::UnknownTensorType { id: 1000, .. }
    ));
}

#[test]
fn tensor_offsets() {
    let with = |offset: u64| {
        let mut raw = Raw::valid();
        raw.tensors[1].offset = offset;
        kind(raw.build())
    };
    assert!(matches!(
        with(1),
        FormatError::MisalignedOffset {
            offset: 1,
            alignment: 32,
            ..
        }
    ));
    assert!(matches!(
        with(96),
        FormatError::TensorOutOfBounds {
            offset: 96,
            n_bytes: 34,
            data_len: 98,
            ..
        }
    ));
    // offset + size overflows u64.
    assert!(matches!(
        with(u64::MAX - 31),
        FormatError::TensorOutOfBounds { .. }
    ));
}

#[test]
fn duplicate_tensor_name() {
    let mut raw = Raw::valid();
    raw.tensors[1].name = b"w".to_vec();
    assert_eq!(kind(raw.build()), FormatError::DuplicateTensor("w".into()));
}

#[test]
fn misaligned_views_are_refused_but_dequantize_works() {
    let mut raw = Raw::valid();
    raw.kvs.push((
        b"general.alignment".to_vec(),
        U32,
        1u32.to_le_bytes().to_vec(),
    ));
    raw.alignment = 1;
    // Data starts at an odd offset: prepend one byte, shift offsets.
    let mut bytes = raw.build();
    let (_, _, _, data) = raw.sections();
    let mut odd = Raw::valid();
    odd.kvs = raw.kvs.clone();
    odd.alignment = 1;
    odd.tensors[0].offset = 0;
    odd.tensors[1].offset = 64;
    if data % 2 == 0 {
        // Lengthen a key by one byte to make the data offset odd.
        odd.kvs[1].0.push(b'x');
        bytes = odd.build();
    }
    let f = open(bytes).unwrap();
    assert_eq!(f.data_offset() % 2, 1);
    assert!(matches!(
        f.tensor_f32("w"),
        Err(GgufError::Misaligned { align: 4, .. })
    ));
    assert_eq!(f.dequantize("w").unwrap(), [0., 1., 2., 3., 4., 5., 6., 7.]);
}

#[test]
fn errors_name_file_offset_and_problem() {
    let mut raw = Raw::valid();
    raw.tensors[1].ty = 4;
    let err = open(raw.build()).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("hostile.gguf: at byte "), "{text}");
    assert!(text.contains("unknown ggml type id 4"), "{text}");
    let (_, infos, _, _) = raw.sections();
    // The type field of tensor 1: after tensor 0's info and tensor 1's name
    // and dims.
    let expected = infos + (8 + 1 + 4 + 16 + 4 + 8) + (8 + 1 + 4 + 8);
    assert_eq!(err.offset(), Some(expected as u64));
}

#[test]
fn no_panic_on_random_mutations() {
    // A cheap stand-in for the fuzzer in CI: flip bytes of the valid file
    // with a fixed xorshift sequence and open each result.
    let full = Raw::valid().build();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut bytes = full.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % bytes.len() as u64) as usize;
            bytes[i] = next() as u8;
        }
        if let Ok(f) = open(bytes) {
            for t in f.tensors() {
                let _ = f.dequantize(&t.name);
            }
            for (_, v) in f.metadata().iter() {
                if let Some(a) = v.as_array() {
                    a.iter().count();
                }
            }
        }
    }
}
