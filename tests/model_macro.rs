//! `#[kiln::model]` end to end: a model compiled into the test binary gives
//! the same vectors, bit for bit, as the runtime API on the same GGUF, for
//! every option the attribute and the generated methods offer.

use std::path::PathBuf;

use kiln::runtime::gguf::GgufFile;
use kiln::{CallOptions, Embedder};

#[kiln::model(arch = "bert", path = "tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf")]
struct MiniLm;

#[kiln::model(
    arch = "bert",
    path = "tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf",
    dim = 128,
    normalize = false,
    threads = 1
)]
struct MiniLm128Raw;

/// Least |norm − 1| of a vector made with `normalize = false`: a raw
/// mean-pooled MiniLM vector cut to 128 dims is nowhere near unit length,
/// while a normalized one is within f32 rounding (~1e-6) of it.
const RAW_NORM_MIN_GAP: f32 = 1e-3;

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf")
}

/// The 24 golden inputs: short and long, many scripts, a 512+ token text.
fn sentences() -> Vec<String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/goldens/sentences.txt");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn constants_come_from_the_file() {
    assert_eq!(MiniLm::DIM, 384);
    assert_eq!(MiniLm::MODEL_DIM, 384);
    assert_eq!(MiniLm::MAX_TOKENS, 512);
    assert_eq!(MiniLm::ARCH, "bert");
    const { assert!(MiniLm::SPECIALIZED_KERNELS) };
    assert_eq!(MiniLm128Raw::DIM, 128);
    // The embedded bytes are the file, aligned as the kernels' views need.
    let bytes = MiniLm::gguf_bytes();
    assert_eq!(bytes, std::fs::read(model_path()).unwrap().as_slice());
    assert_eq!(bytes.as_ptr() as usize % 64, 0);
}

#[test]
fn compiled_header_equals_parsed_header() {
    let embedded = MiniLm::gguf().unwrap();
    let parsed = GgufFile::open(model_path()).unwrap();
    assert_eq!(embedded.tensors(), parsed.tensors());
    assert_eq!(embedded.data_offset(), parsed.data_offset());
    assert_eq!(embedded.alignment(), parsed.alignment());
    assert_eq!(embedded.metadata().len(), parsed.metadata().len());
    for (a, b) in embedded.metadata().iter().zip(parsed.metadata().iter()) {
        assert_eq!(a, b);
    }
}

#[test]
fn vectors_equal_the_runtime_api_bit_for_bit() {
    let runtime = Embedder::builder()
        .truncate(true)
        .open(model_path())
        .unwrap();
    let embedded = MiniLm::open(MiniLm::builder().truncate(true)).unwrap();
    for text in sentences() {
        let want = runtime.embed(&text).unwrap();
        assert_eq!(embedded.embed(&text).unwrap(), want, "{text:?}");
        if runtime.tokenize(&text).unwrap().len() <= MiniLm::MAX_TOKENS {
            let got: [f32; 384] = MiniLm::embed(&text).unwrap();
            assert_eq!(got.as_slice(), want.as_slice(), "{text:?}");
        }
    }
}

#[test]
fn options_equal_the_runtime_api() {
    let text = "Paris is the capital and most populous city of France.";
    let runtime = Embedder::builder()
        .dim(128)
        .normalize(false)
        .threads(1)
        .open(model_path())
        .unwrap();
    let want = runtime.embed(text).unwrap();
    assert_eq!(
        MiniLm128Raw::embed(text).unwrap().as_slice(),
        want.as_slice()
    );
    let norm: f32 = want.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() > RAW_NORM_MIN_GAP,
        "normalize = false keeps the raw norm {norm}"
    );

    // Matryoshka through the const-generic method and per-call options.
    let runtime = Embedder::builder().dim(256).open(model_path()).unwrap();
    let want = runtime.embed(text).unwrap();
    assert_eq!(
        MiniLm::embed_dim::<256>(text).unwrap().as_slice(),
        want.as_slice()
    );
    let call = CallOptions {
        dim: Some(256),
        ..Default::default()
    };
    assert_eq!(MiniLm::embed_with(text, &call).unwrap(), want);

    let batch = MiniLm::embed_batch(&["Hello world", text]).unwrap();
    assert_eq!(batch[1], MiniLm::embed(text).unwrap());
}

#[test]
fn errors_are_the_runtime_api_errors() {
    let long = "word ".repeat(600);
    assert!(matches!(
        MiniLm::embed(&long),
        Err(kiln::Error::TooLong { .. })
    ));
    let call = CallOptions {
        task: Some("query".into()),
        ..Default::default()
    };
    assert!(matches!(
        MiniLm::embed_with("x", &call),
        Err(kiln::Error::UnknownTask { .. })
    ));
}

/// `cargo test` builds the examples; run the MiniLM one when it is there
/// (a `cargo test --test model_macro` alone does not build it).
#[test]
fn example_runs() {
    let exe = std::env::current_exe().unwrap();
    let Some(profile_dir) = exe.parent().and_then(|d| d.parent()) else {
        return;
    };
    let example = profile_dir.join("examples").join("minilm_embedded");
    if !example.is_file() {
        eprintln!("SKIPPED: {} is not built", example.display());
        return;
    }
    let out = std::process::Command::new(&example)
        .args(["Hello world", "Hello world", "Goodbye"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[1].starts_with("1.0000"), "{stdout}");
    assert!(!lines[2].starts_with("1.0000"), "{stdout}");
}

/// Two models of the same name and file in one crate get distinct symbols.
mod same_name {
    #[kiln::model(arch = "bert", path = "tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf")]
    pub struct MiniLm;
}

#[test]
fn same_struct_name_in_two_modules() {
    assert_eq!(same_name::MiniLm::gguf_bytes(), MiniLm::gguf_bytes());
    assert_ne!(
        same_name::MiniLm::gguf_bytes().as_ptr(),
        MiniLm::gguf_bytes().as_ptr()
    );
}
