//! The `kiln` binary as a user runs it: outputs, formats and bad input.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// |norm − 1| of a vector the CLI printed normalized: an L2-normalized f32
/// vector of 384 values, printed exactly, sums its squares in f32 to well
/// within this of 1.
const UNIT_NORM_TOL: f32 = 1e-4;

/// Cosine of the CLI's vector and the library's for the same input: the
/// CLI prints the library's vector, so only the decimal text may round it.
const SAME_VECTOR_MIN: f64 = 0.999_999;

/// MiniLM's cosine of a question and its answer sentence (measured 0.856).
const RELATED_MIN: f32 = 0.6;

/// MiniLM's cosine of a question and an unrelated sentence (measured 0.013).
const UNRELATED_MAX: f32 = 0.3;

fn minilm() -> String {
    common::fixtures()
        .join("all-MiniLM-L6-v2-Q8_0.gguf")
        .display()
        .to_string()
}

fn kiln(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn embed_jsonl_rows_in_input_order() {
    let m = minilm();
    let o = kiln(
        &["embed", "-m", &m, "first text", "second text", "third"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    for (i, (row, text)) in rows
        .iter()
        .zip(["first text", "second text", "third"])
        .enumerate()
    {
        assert_eq!(row["index"], i);
        assert_eq!(row["text"], text);
        assert_eq!(row["embedding"].as_array().unwrap().len(), 384);
    }
}

#[test]
fn embed_reads_stdin_and_writes_csv() {
    let m = minilm();
    let o = kiln(
        &["embed", "-m", &m, "--format", "csv"],
        Some(b"one\ntwo\r\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].split(',').count(), 384);
    let v: Vec<f32> = lines[1].split(',').map(|x| x.parse().unwrap()).collect();
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() < UNIT_NORM_TOL,
        "normalized by default, norm {norm}"
    );
}

#[test]
fn embed_matches_library_and_dim_option() {
    let m = minilm();
    let o = kiln(
        &[
            "embed",
            "-m",
            &m,
            "--format",
            "json",
            "--dim",
            "128",
            "Hello world",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cli: Vec<f32> = doc[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let lib = kiln::Embedder::builder()
        .dim(128)
        .open(&m)
        .unwrap()
        .embed("Hello world")
        .unwrap();
    assert_eq!(cli.len(), 128);
    assert!(common::cosine(&cli, &lib) > SAME_VECTOR_MIN);
}

#[test]
fn invalid_utf8_on_stdin_names_the_line() {
    let m = minilm();
    let o = kiln(&["embed", "-m", &m], Some(b"fine\nbad \xff byte\n"));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("stdin, line 2: not valid UTF-8"), "{e}");
}

#[test]
fn too_long_input_is_an_error_unless_truncated() {
    let m = minilm();
    let long = "word ".repeat(600);
    let o = kiln(&["embed", "-m", &m, &long], None);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("602 tokens, more than the model's context of 512"),
        "{e}"
    );
    let o = kiln(&["embed", "-m", &m, "--truncate", &long], None);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn empty_text_embeds_the_special_tokens() {
    // As sentence-transformers and llama.cpp do: "" is [CLS] [SEP].
    let m = minilm();
    let o = kiln(&["tokenize", "-m", &m, ""], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8(o.stdout).unwrap().trim(), "[101, 102]");
    let o = kiln(&["embed", "-m", &m, ""], None);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn decoders_tokenize_as_llamacpp() {
    // SmolLM2 (byte-level BPE, no start token): the ids llama.cpp gives.
    if common::cached_model("smollm2").is_none() {
        return;
    }
    let golden =
        std::fs::read_to_string(common::fixtures().join("goldens/smollm2-135m.cli_tokens.jsonl"))
            .unwrap();
    for line in golden.lines().take(8) {
        let g: serde_json::Value = serde_json::from_str(line).unwrap();
        let o = kiln(
            &[
                "tokenize",
                "-m",
                "smollm2",
                "--",
                g["text"].as_str().unwrap(),
            ],
            None,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let ids: Vec<u64> = serde_json::from_slice(&o.stdout).unwrap();
        let want: Vec<u64> = g["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ids, want, "{}", g["text"]);
    }
}

#[test]
fn unknown_model_name_and_missing_file_are_clear() {
    let o = kiln(&["embed", "-m", "no-such-model", "x"], None);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("no-such-model"), "{e}");
}

#[test]
fn other_architecture_is_refused() {
    use kiln::runtime::gguf::{GgufWriter, Value};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()))
        .unwrap();
    let bytes = w.begin(Vec::new()).unwrap().finish().unwrap();
    std::fs::write(&path, bytes).unwrap();
    let o = kiln(&["embed", "-m", path.to_str().unwrap(), "x"], None);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("unsupported architecture `llama`"), "{e}");
}

#[test]
fn similarity_ranks_the_related_text_first() {
    let m = minilm();
    let o = kiln(
        &[
            "similarity",
            "-m",
            &m,
            "What is the capital of France?",
            "Paris is the capital of France.",
            "Turtles are reptiles.",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let scores: Vec<f32> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(scores.len(), 2);
    assert!(
        scores[0] > RELATED_MIN && scores[1] < UNRELATED_MAX,
        "{out}"
    );
}

#[test]
fn generate_streams_greedy_text_and_stats() {
    let Some(path) = common::cached_model("gemma3-270m") else {
        return;
    };
    let m = path.display().to_string();
    let o = kiln(
        &[
            "generate",
            "-m",
            &m,
            "--ctx",
            "128",
            "-n",
            "8",
            "--temperature",
            "0",
            "--stats",
            "def fibonacci(n):",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // llama.cpp's greedy continuation (the golden; equal on every ISA for
    // this prompt), then a newline.
    assert!(stderr(&o).contains("tok/s"), "{}", stderr(&o));
    assert_eq!(String::from_utf8(o.stdout).unwrap(), "\n    if n == 0:\n");
    // --stop cuts exactly; a prompt over the context is a clear error.
    let o = kiln(
        &[
            "generate",
            "-m",
            &m,
            "-n",
            "8",
            "--temperature",
            "0",
            "--stop",
            "==",
            "def fibonacci(n):",
        ],
        None,
    );
    assert_eq!(String::from_utf8(o.stdout).unwrap(), "\n    if n \n");
    let long = "word ".repeat(200);
    let o = kiln(&["generate", "-m", &m, "--ctx", "64", &long], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("context of 64"), "{}", stderr(&o));
}

#[test]
fn chat_reads_one_message_per_line() {
    let Some(path) = common::cached_model("gemma3-270m") else {
        return;
    };
    let m = path.display().to_string();
    let o = kiln(
        &[
            "chat",
            "-m",
            &m,
            "--ctx",
            "256",
            "-n",
            "4",
            "--temperature",
            "0",
        ],
        Some(b"Hello\n\nName a color.\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Two answers (the empty line is skipped), one per line.
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.matches('\n').count() >= 2, "{out:?}");
}

/// `kiln inspect --full | head -1`: the reader closes the pipe after a few
/// bytes of a much longer output (over the 64 KiB a pipe buffers); kiln
/// stops quietly with success instead of panicking in a print.
#[test]
fn closed_stdout_pipe_is_not_an_error() {
    use std::io::Read;
    let model = common::fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["inspect", "--json", "--full"])
        .arg(&model)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn kernels_limits_reports_this_machine() {
    let o = kiln(&["kernels", "--limits", "--threads", "2", "--json"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(doc["threads"], 2);
    let bw = doc["read_bandwidth_gbs"].as_f64().unwrap();
    // Any real machine reads between 0.1 and 10,000 GB/s.
    assert!((0.1..1e4).contains(&bw), "{doc}");
    assert!(doc["isa"].is_string(), "{doc}");
    // `--threads` without `--limits` is a usage error, not ignored.
    let o = kiln(&["kernels", "--threads", "2"], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--limits"), "{}", stderr(&o));
}

#[test]
fn embed_stats_count_the_tokens_after_truncation() {
    let m = minilm();
    // ~1,500 WordPiece tokens: over MiniLM's 512.
    let long = "the quick brown fox jumps over the lazy dog ".repeat(150);
    let o = kiln(&["embed", "-m", &m, "--truncate", "--stats", &long], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("1 texts, 512 tokens in"), "{err}");
    // Without truncation the same text is refused, not counted.
    let o = kiln(&["embed", "-m", &m, "--stats", &long], None);
    assert!(!o.status.success());
}
