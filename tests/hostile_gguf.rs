//! Hostile model files: a corpus generated from the real models at test
//! time (nothing committed), each case run through the `kiln` binary in a
//! child process under a memory limit and a timeout. Every case must end in
//! a clean error (exit 1, no panic) or a finite result, never a panic,
//! abort, hang, huge allocation or `null` vector.
//!
//! Cases are patches over a working copy of the model: the header fields
//! are rewritten in place (same size), so the tensor data is never copied
//! again; truncations inside the header are written as small files of
//! their own. MiniLM (tests/fixtures) always runs; EmbeddingGemma and
//! Gemma-3-270M run when they are in the cache, with fewer cases.
//!
//! The fixed regressions are also checked in-process below, one test each.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln::runtime::gguf::{FormatError, GgufError, GgufFile};
use kiln::runtime::model::ModelError;

/// Address-space limit of a child (`ulimit -v`, KiB): far above what a
/// real model needs (maps of the file included), far below the
/// allocations hostile metadata used to cause.
const CHILD_VMEM_KB: u64 = 3 << 20;
/// A child that runs longer than this has hung.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

fn minilm() -> PathBuf {
    common::root().join("tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf")
}

// ---------------------------------------------------------------------
// A minimal GGUF header walker that records where each field is.
// ---------------------------------------------------------------------

struct Kv {
    key: String,
    /// Offset of the key's length field.
    key_at: usize,
    ty: u32,
    ty_at: usize,
    val_at: usize,
    val_len: usize,
}

struct Tinfo {
    name: String,
    name_at: usize,
    n_dims_at: usize,
    dims: Vec<u64>,
    dims_at: usize,
    ty_at: usize,
    offset: u64,
    offset_at: usize,
    n_bytes: u64,
}

struct Header {
    kvs: Vec<Kv>,
    tensors: Vec<Tinfo>,
    data_offset: usize,
}

fn fixed_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => return None,
    })
}

fn u32_at(b: &[u8], p: usize) -> u32 {
    u32::from_le_bytes(b[p..p + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], p: usize) -> u64 {
    u64::from_le_bytes(b[p..p + 8].try_into().unwrap())
}

fn skip_value(b: &[u8], ty: u32, p: usize) -> usize {
    if let Some(n) = fixed_size(ty) {
        return p + n;
    }
    match ty {
        8 => p + 8 + u64_at(b, p) as usize,
        9 => {
            let (elem, n) = (u32_at(b, p), u64_at(b, p + 4));
            let mut q = p + 12;
            match fixed_size(elem) {
                Some(s) => q += s * n as usize,
                None => {
                    for _ in 0..n {
                        q = skip_value(b, elem, q);
                    }
                }
            }
            q
        }
        _ => panic!("the original model has value type {ty}"),
    }
}

/// Walks the header of a valid file (the originals).
fn walk(b: &[u8], file: &GgufFile) -> Header {
    let n_tensors = u64_at(b, 8) as usize;
    let n_kv = u64_at(b, 16) as usize;
    let mut p = 24;
    let mut kvs = Vec::new();
    for _ in 0..n_kv {
        let key_at = p;
        let len = u64_at(b, p) as usize;
        let key = String::from_utf8(b[p + 8..p + 8 + len].to_vec()).unwrap();
        p += 8 + len;
        let ty = u32_at(b, p);
        let ty_at = p;
        p += 4;
        let val_at = p;
        p = skip_value(b, ty, p);
        kvs.push(Kv {
            key,
            key_at,
            ty,
            ty_at,
            val_at,
            val_len: p - val_at,
        });
    }
    let mut tensors = Vec::new();
    for t in file.tensors().iter().take(n_tensors) {
        let name_at = p;
        p += 8 + u64_at(b, p) as usize;
        let n_dims_at = p;
        let n_dims = u32_at(b, p) as usize;
        p += 4;
        let dims_at = p;
        p += 8 * n_dims;
        let ty_at = p;
        p += 4;
        let offset_at = p;
        p += 8;
        tensors.push(Tinfo {
            name: t.name.clone(),
            name_at,
            n_dims_at,
            dims: t.dims.clone(),
            dims_at,
            ty_at,
            offset: t.offset,
            offset_at,
            n_bytes: t.n_bytes,
        });
    }
    Header {
        kvs,
        tensors,
        data_offset: file.data_offset() as usize,
    }
}

// ---------------------------------------------------------------------
// The corpus.
// ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    Embed,
    Generate,
}

/// One hostile file: patches over the original, or a truncation.
struct Case {
    class: &'static str,
    what: String,
    patches: Vec<(u64, Vec<u8>)>,
    /// The patches are masks to xor into the original bytes (bit flips).
    xor: bool,
    cut: Option<u64>,
}

impl Case {
    fn flip(class: &'static str, what: String, at: usize, bit: usize) -> Self {
        Case {
            class,
            what,
            patches: vec![((at + bit / 8) as u64, vec![1u8 << (bit % 8)])],
            xor: true,
            cut: None,
        }
    }

    fn patch(class: &'static str, what: String, at: usize, bytes: Vec<u8>) -> Self {
        Case {
            class,
            what,
            patches: vec![(at as u64, bytes)],
            xor: false,
            cut: None,
        }
    }
}

/// Values to try for a numeric key of GGUF type `ty`: 0, 1, -1 (all ones,
/// the maximum of an unsigned type) and a signed type's maximum; floats
/// also NaN and infinity. Without `full`, only 0 and all ones (-1 and NaN
/// for floats): the large models' successful opens are what costs time.
fn numeric_values(ty: u32, full: bool) -> Vec<(String, Vec<u8>)> {
    let int = |bytes: usize, signed: bool| {
        let ones = vec![0xffu8; bytes];
        let mut max = ones.clone();
        if signed {
            max[bytes - 1] = 0x7f;
        }
        let mut v = vec![
            ("0".to_owned(), vec![0u8; bytes]),
            ("-1/all ones".to_owned(), ones),
        ];
        if full {
            let mut one = vec![0u8; bytes];
            one[0] = 1;
            v.push(("1".to_owned(), one));
        }
        if signed && full {
            v.push(("max".to_owned(), max));
        }
        v
    };
    match ty {
        0 => int(1, false),
        1 => int(1, true),
        2 => int(2, false),
        3 => int(2, true),
        4 => int(4, false),
        5 => int(4, true),
        10 => int(8, false),
        11 => int(8, true),
        6 => {
            let all = [0.0f32, 1.0, -1.0, f32::MAX, f32::NAN, f32::INFINITY];
            let some = [-1.0f32, f32::NAN];
            (if full { &all[..] } else { &some[..] })
                .iter()
                .map(|x| (x.to_string(), x.to_le_bytes().to_vec()))
                .collect()
        }
        12 => [0.0f64, -1.0, f64::MAX, f64::NAN]
            .iter()
            .map(|x| (x.to_string(), x.to_le_bytes().to_vec()))
            .collect(),
        7 => vec![("0".into(), vec![0]), ("1".into(), vec![1])],
        _ => Vec::new(),
    }
}

/// Picks `n` items spread over `items` (first and last included).
fn spread<T>(items: &[T], n: usize) -> Vec<&T> {
    if items.is_empty() {
        return Vec::new();
    }
    let n = n.min(items.len()).max(1);
    let mut idx: Vec<usize> = (0..n)
        .map(|i| i * (items.len() - 1) / (n - 1).max(1))
        .collect();
    idx.dedup();
    idx.into_iter().map(|i| &items[i]).collect()
}

/// The hostile cases of one model. `full`: every case (MiniLM); otherwise
/// a cheaper sample (the large models).
fn corpus(h: &Header, len: u64, full: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    let le8 = |v: u64| v.to_le_bytes().to_vec();
    let le4 = |v: u32| v.to_le_bytes().to_vec();
    let d0 = h.data_offset as u64;

    cases.push(Case {
        class: "original",
        what: "unchanged".into(),
        patches: Vec::new(),
        xor: false,
        cut: None,
    });

    // Truncations: through the fixed header, the metadata, the tensor
    // infos, the padding and the data.
    let mut cuts: Vec<u64> = vec![0, 1, 3, 4, 5, 8, 12, 16, 20, 24, 25, 31];
    let steps = if full { 40 } else { 6 };
    cuts.extend((1..steps).map(|i| d0 * i / steps));
    cuts.extend([d0 - 1, len - 1, len - 4096]);
    // A cut in the data is undone by writing the rest back: anywhere in
    // MiniLM, near the end of the large models.
    if full {
        let last = h.tensors.iter().max_by_key(|t| t.offset).unwrap();
        cuts.extend([d0, d0 + 1, d0 + last.offset + last.n_bytes / 2]);
        cuts.extend((1..8).map(|i| d0 + (len - d0) * i / 8));
    } else {
        cuts.push(len - (1 << 20));
    }
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        cases.push(Case {
            class: "truncation",
            what: format!("cut at {cut}"),
            patches: Vec::new(),
            xor: false,
            cut: Some(cut),
        });
    }

    // Fixed header: version, tensor count, metadata count.
    for (at, name) in [(4usize, "version"), (8, "tensor count"), (16, "kv count")] {
        let width = if at == 4 { 4 } else { 8 };
        for bit in [0, 1, 7, 30, 31, 62, 63] {
            if bit < width * 8 {
                cases.push(Case::flip(
                    "header bit flip",
                    format!("{name} bit {bit}"),
                    at,
                    bit,
                ));
            }
        }
    }
    for (at, v) in [(8usize, u64::MAX), (16, u64::MAX), (16, 1 << 40)] {
        cases.push(Case::patch(
            "huge count",
            format!("u64 at {at} = {v}"),
            at,
            le8(v),
        ));
    }

    // Metadata: huge key/string/array lengths, unknown type ids, and
    // every numeric key set to 0, 1, -1 and its maximum.
    let kv_sample = spread(&h.kvs, if full { 16 } else { 4 });
    for kv in &kv_sample {
        for v in [u64::MAX, 1 << 40, (kv.key.len() as u64) + 1] {
            cases.push(Case::patch(
                "huge length",
                format!("key length of {} = {v}", kv.key),
                kv.key_at,
                le8(v),
            ));
        }
        for id in [13u32, 99, u32::MAX] {
            cases.push(Case::patch(
                "unknown type id",
                format!("value type of {} = {id}", kv.key),
                kv.ty_at,
                le4(id),
            ));
        }
    }
    // Strings: a sample (MiniLM has dozens of dataset names); arrays and
    // numbers: all of them.
    let strings: Vec<&Kv> = h.kvs.iter().filter(|k| k.ty == 8).collect();
    let strings = spread(&strings, if full { 12 } else { 4 });
    for kv in &h.kvs {
        match kv.ty {
            8 if !strings.iter().any(|s| std::ptr::eq(**s, kv)) => {}
            8 => {
                for v in [u64::MAX, 1 << 40] {
                    cases.push(Case::patch(
                        "huge length",
                        format!("string length of {} = {v}", kv.key),
                        kv.val_at,
                        le8(v),
                    ));
                }
            }
            9 => {
                for v in [u64::MAX, 1 << 40, 1 << 20] {
                    cases.push(Case::patch(
                        "huge length",
                        format!("array length of {} = {v}", kv.key),
                        kv.val_at + 4,
                        le8(v),
                    ));
                }
                cases.push(Case::patch(
                    "unknown type id",
                    format!("array element type of {} = 99", kv.key),
                    kv.val_at,
                    le4(99),
                ));
            }
            ty => {
                for (name, bytes) in numeric_values(ty, full) {
                    assert_eq!(bytes.len(), kv.val_len);
                    cases.push(Case::patch(
                        "numeric metadata",
                        format!("{} = {name}", kv.key),
                        kv.val_at,
                        bytes,
                    ));
                }
            }
        }
    }
    // Duplicate keys: a key renamed to another key of the same length.
    let mut by_len: BTreeMap<usize, Vec<&Kv>> = BTreeMap::new();
    for kv in &h.kvs {
        by_len.entry(kv.key.len()).or_default().push(kv);
    }
    let dups: Vec<(&Kv, &Kv)> = by_len
        .values()
        .filter(|v| v.len() >= 2)
        .map(|v| (v[0], v[1]))
        .collect();
    for (a, b) in spread(&dups, if full { 6 } else { 2 }) {
        cases.push(Case::patch(
            "duplicate key",
            format!("{} renamed {}", b.key, a.key),
            b.key_at + 8,
            a.key.as_bytes().to_vec(),
        ));
    }
    // `general.alignment` in place of a same-length key.
    if let Some(kv) = h
        .kvs
        .iter()
        .find(|k| k.key == "general.file_type" && k.ty == 4)
    {
        for v in [0u32, 3, 1, 64, 1 << 31] {
            cases.push(Case {
                class: "bad alignment",
                what: format!("general.alignment = {v}"),
                patches: vec![
                    (kv.key_at as u64 + 8, b"general.alignment".to_vec()),
                    (kv.val_at as u64, le4(v)),
                ],
                xor: false,
                cut: None,
            });
        }
    }

    // Tensor infos.
    let tensors = spread(&h.tensors, if full { 8 } else { 2 });
    for t in &tensors {
        let data_len = len - d0;
        for (class, what, at, bytes) in [
            (
                "huge length",
                "name length = 2^64-1",
                t.name_at,
                le8(u64::MAX),
            ),
            ("huge length", "name length = 2^40", t.name_at, le8(1 << 40)),
            ("too many dims", "n_dims = 5", t.n_dims_at, le4(5)),
            (
                "too many dims",
                "n_dims = 2^32-1",
                t.n_dims_at,
                le4(u32::MAX),
            ),
            ("too many dims", "n_dims = 0", t.n_dims_at, le4(0)),
            ("unknown type id", "type = 39", t.ty_at, le4(39)),
            ("unknown type id", "type = 2^32-1", t.ty_at, le4(u32::MAX)),
            (
                "unknown type id",
                "type = 4 (removed Q4_2)",
                t.ty_at,
                le4(4),
            ),
            ("unknown type id", "type = F32", t.ty_at, le4(0)),
            (
                "dims overflow",
                "ne0 = 2^63-1",
                t.dims_at,
                le8(i64::MAX as u64),
            ),
            ("dims overflow", "ne0 = 2^64-1", t.dims_at, le8(u64::MAX)),
            ("dims overflow", "ne0 = 2^32", t.dims_at, le8(1 << 32)),
            ("dims overflow", "ne0 = 0", t.dims_at, le8(0)),
            (
                "out-of-range offset",
                "offset = 2^64-32",
                t.offset_at,
                le8(u64::MAX - 31),
            ),
            (
                "out-of-range offset",
                "offset = data length",
                t.offset_at,
                le8(data_len / 32 * 32),
            ),
            (
                "bad alignment",
                "offset + 1",
                t.offset_at,
                le8(t.offset + 1),
            ),
            (
                "bad alignment",
                "offset + 16",
                t.offset_at,
                le8(t.offset + 16),
            ),
        ] {
            cases.push(Case::patch(class, format!("{}: {what}", t.name), at, bytes));
        }
        if t.dims.len() >= 2 {
            cases.push(Case {
                class: "dims overflow",
                what: format!("{}: ne0 = ne1 = 2^32", t.name),
                patches: vec![
                    (t.dims_at as u64, le8(1 << 32)),
                    (t.dims_at as u64 + 8, le8(1 << 32)),
                ],
                xor: false,
                cut: None,
            });
            cases.push(Case::patch(
                "dims overflow",
                format!("{}: ne1 doubled", t.name),
                t.dims_at + 8,
                le8(t.dims[1] * 2),
            ));
        }
        for bit in [0, 5, 13, 40, 63] {
            let what = format!("{}: offset bit {bit}", t.name);
            cases.push(Case::flip("tensor-info bit flip", what, t.offset_at, bit));
        }
        for bit in [0, 9, 33] {
            let what = format!("{}: ne0 bit {bit}", t.name);
            cases.push(Case::flip("tensor-info bit flip", what, t.dims_at, bit));
        }
        for bit in [0, 3] {
            let what = format!("{}: type bit {bit}", t.name);
            cases.push(Case::flip("tensor-info bit flip", what, t.ty_at, bit));
        }
    }
    // Overlaps: a tensor pointed at its neighbour's bytes, or into them.
    let mut by_offset: Vec<&Tinfo> = h.tensors.iter().filter(|t| t.n_bytes > 64).collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in spread(
        &by_offset.windows(2).collect::<Vec<_>>(),
        if full { 6 } else { 2 },
    ) {
        let (a, b) = (pair[0], pair[1]);
        for (what, off) in [("same offset as", a.offset), ("inside", a.offset + 32)] {
            cases.push(Case::patch(
                "overlapping offsets",
                format!("{} {what} {}", b.name, a.name),
                b.offset_at,
                le8(off),
            ));
        }
    }
    // Duplicate tensor names (same length).
    let mut tby_len: BTreeMap<usize, Vec<&Tinfo>> = BTreeMap::new();
    for t in &h.tensors {
        tby_len.entry(t.name.len()).or_default().push(t);
    }
    let tdups: Vec<(&Tinfo, &Tinfo)> = tby_len
        .values()
        .filter(|v| v.len() >= 2)
        .map(|v| (v[0], v[1]))
        .collect();
    for (a, b) in spread(&tdups, if full { 6 } else { 2 }) {
        cases.push(Case::patch(
            "duplicate tensor name",
            format!("{} renamed {}", b.name, a.name),
            b.name_at + 8,
            a.name.as_bytes().to_vec(),
        ));
    }
    // Layer-name games: a layer index past the count.
    if let Some(t) = h.tensors.iter().find(|t| t.name.starts_with("blk.0.")) {
        cases.push(Case::patch(
            "tensor name",
            format!("{} renamed to blk.9...", t.name),
            t.name_at + 8 + 4,
            b"9".to_vec(),
        ));
    }

    // Non-finite weights: the first value of every F32 tensor in the
    // sample (norm weights, biases) set to NaN or infinity.
    let f32_tensors: Vec<&Tinfo> = h
        .tensors
        .iter()
        .filter(|t| t.n_bytes >= 4 && t.n_bytes == t.dims.iter().product::<u64>() * 4)
        .collect();
    for t in spread(&f32_tensors, if full { 6 } else { 3 }) {
        for (what, v) in [("NaN", f32::NAN), ("inf", f32::INFINITY)] {
            // Every value of a short tensor (a norm's weight is read whole).
            let n = (t.n_bytes / 4).min(4096) as usize;
            let bytes: Vec<u8> = std::iter::repeat_n(v.to_le_bytes(), n).flatten().collect();
            cases.push(Case::patch(
                "non-finite weights",
                format!("{} = {what}", t.name),
                h.data_offset + t.offset as usize,
                bytes,
            ));
        }
    }
    cases
}

// ---------------------------------------------------------------------
// Running the cases.
// ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    CleanError,
    Ok,
    Failure,
}

/// A model's working copy; cases patch it and put the original bytes back.
struct Work {
    original: PathBuf,
    copy: PathBuf,
    len: u64,
    header: Vec<u8>,
    dir: PathBuf,
}

fn run_child(args: &[&std::ffi::OsStr], dir: &Path) -> (Outcome, String) {
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {CHILD_VMEM_KB} && exec \"$@\""))
        .arg("sh")
        // Another build can be put to the same corpus (e.g. an older one,
        // for a before/after table).
        .arg(std::env::var_os("KILN_HOSTILE_BIN").unwrap_or(env!("CARGO_BIN_EXE_kiln").into()))
        .args(args)
        .env("KILN_HOME", dir.join("home"))
        .env("KILN_PACK_CACHE", "off")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("sh runs");
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let first_line = |s: &str| s.lines().take(3).collect::<Vec<_>>().join(" | ");
    match status {
        None => (Outcome::Failure, "timeout".into()),
        Some(s) if s.code() == Some(0) => {
            if stdout.contains("null") || stdout.contains("NaN") {
                (
                    Outcome::Failure,
                    format!("non-finite output: {}", first_line(&stdout)),
                )
            } else {
                (Outcome::Ok, String::new())
            }
        }
        Some(s) if s.code() == Some(1) && !stderr.contains("panicked") => {
            (Outcome::CleanError, first_line(&stderr))
        }
        Some(s) => (
            Outcome::Failure,
            format!(
                "{s}: {}",
                first_line(&stderr).chars().take(400).collect::<String>()
            ),
        ),
    }
}

fn run_case(work: &Work, case: &Case, run: Run) -> (Outcome, String) {
    let path = match case.cut {
        Some(cut) if (cut as usize) < work.header.len() => {
            let p = work.dir.join("cut.gguf");
            std::fs::write(&p, &work.header[..cut as usize]).unwrap();
            p
        }
        _ => work.copy.clone(),
    };
    let copy = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&work.copy)
        .unwrap();
    let original = File::open(&work.original).unwrap();
    // Apply (bit flips xor into the original bytes), saving what was there.
    let xor = case.xor;
    let mut saved = Vec::new();
    for (at, bytes) in &case.patches {
        let mut old = vec![0u8; bytes.len()];
        original.read_exact_at(&mut old, *at).unwrap();
        let new: Vec<u8> = if xor {
            old.iter().zip(bytes).map(|(a, b)| a ^ b).collect()
        } else {
            bytes.clone()
        };
        copy.write_all_at(&new, *at).unwrap();
        saved.push((*at, old));
    }
    if let Some(cut) = case.cut
        && path == work.copy
    {
        copy.set_len(cut).unwrap();
    }

    let p = path.as_os_str();
    let args: Vec<&std::ffi::OsStr> = match run {
        Run::Embed => ["embed", "--threads", "1", "--model"]
            .iter()
            .map(|s| s.as_ref())
            .chain([p, "Hello world, a hostile file.".as_ref()])
            .collect(),
        Run::Generate => [
            "generate",
            "--threads",
            "1",
            "-n",
            "2",
            "--ctx",
            "64",
            "--model",
        ]
        .iter()
        .map(|s| s.as_ref())
        .chain([p, "Hi".as_ref()])
        .collect(),
    };
    let result = run_child(&args, &work.dir);

    // Restore.
    for (at, old) in saved {
        copy.write_all_at(&old, at).unwrap();
    }
    if let Some(cut) = case.cut
        && path == work.copy
    {
        let mut rest = vec![0u8; (work.len - cut) as usize];
        original.read_exact_at(&mut rest, cut).unwrap();
        copy.set_len(work.len).unwrap();
        copy.write_all_at(&rest, cut).unwrap();
    }
    result
}

/// Results of one model: per class, per outcome, a count.
type Table = BTreeMap<(String, &'static str), [usize; 3]>;

fn run_model(
    name: &str,
    path: &Path,
    run: Run,
    full: bool,
    workers: usize,
    table: &Mutex<Table>,
    failures: &Mutex<Vec<String>>,
) {
    let file = GgufFile::open(path).unwrap();
    let len = file.len();
    let header = file.as_bytes()[..file.data_offset() as usize].to_vec();
    let h = walk(file.as_bytes(), &file);
    drop(file);
    let cases = Arc::new(corpus(&h, len, full));
    let start = Instant::now();
    let next = Arc::new(Mutex::new(0usize));
    let tmp = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        for w in 0..workers {
            let dir = tmp.path().join(format!("w{w}"));
            std::fs::create_dir_all(&dir).unwrap();
            let copy = dir.join("model.gguf");
            std::fs::copy(path, &copy).unwrap();
            let work = Work {
                original: path.to_path_buf(),
                copy,
                len,
                header: header.clone(),
                dir,
            };
            let (cases, next) = (cases.clone(), next.clone());
            s.spawn(move || {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(case) = cases.get(i) else { break };
                    let (outcome, detail) = run_case(&work, case, run);
                    let mut t = table.lock().unwrap();
                    t.entry((name.to_owned(), case.class)).or_default()[outcome as usize] += 1;
                    let expect_error =
                        matches!(case.class, "non-finite weights" | "overlapping offsets");
                    let bad = outcome == Outcome::Failure
                        || (case.class == "original" && outcome != Outcome::Ok)
                        || (expect_error && outcome != Outcome::CleanError);
                    if bad {
                        failures.lock().unwrap().push(format!(
                            "{name}: {}: {}: {outcome:?} {detail}",
                            case.class, case.what
                        ));
                    }
                }
            });
        }
    });
    println!(
        "{name}: {} cases in {:.1} s",
        cases.len(),
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn hostile_corpus_ends_in_clean_errors_or_finite_results() {
    let start = Instant::now();
    let table = Mutex::new(Table::new());
    let failures = Mutex::new(Vec::new());
    let mut models: Vec<(&str, PathBuf, Run, bool, usize)> =
        vec![("minilm", minilm(), Run::Embed, true, 2)];
    if let Some(p) = common::cached_model("embeddinggemma") {
        models.push(("embeddinggemma", p, Run::Embed, false, 1));
    }
    if let Some(p) = common::cached_model("gemma3-270m") {
        models.push(("gemma3-270m", p, Run::Generate, false, 1));
    }
    std::thread::scope(|s| {
        for (name, path, run, full, workers) in &models {
            let (table, failures) = (&table, &failures);
            s.spawn(move || run_model(name, path, *run, *full, *workers, table, failures));
        }
    });

    let table = table.into_inner().unwrap();
    let mut totals = [0usize; 3];
    println!(
        "{:<16} {:<24} {:>11} {:>6} {:>8}",
        "model", "class", "clean error", "ok", "failure"
    );
    for ((model, class), [e, o, f]) in &table {
        println!("{model:<16} {class:<24} {e:>11} {o:>6} {f:>8}");
        totals[0] += e;
        totals[1] += o;
        totals[2] += f;
    }
    println!(
        "{} cases in {:.1} s: {} clean errors, {} ok, {} failures",
        totals.iter().sum::<usize>(),
        start.elapsed().as_secs_f64(),
        totals[0],
        totals[1],
        totals[2]
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------
// Regressions, in-process.
// ---------------------------------------------------------------------

/// The MiniLM bytes with `f` applied to them and to its header walk.
fn minilm_with(f: impl FnOnce(&mut Vec<u8>, &Header)) -> Arc<GgufFile> {
    let mut bytes = std::fs::read(minilm()).unwrap();
    let file = GgufFile::from_vec(bytes.clone(), "minilm").unwrap();
    let h = walk(&bytes, &file);
    f(&mut bytes, &h);
    Arc::new(GgufFile::from_vec(bytes, "minilm-hostile").unwrap())
}

fn kv<'h>(h: &'h Header, key: &str) -> &'h Kv {
    h.kvs.iter().find(|k| k.key == key).unwrap()
}

fn open_minilm(file: Arc<GgufFile>) -> Result<kiln::Embedder, kiln::Error> {
    kiln::Embedder::builder()
        .threads(1)
        .pack_cache(None)
        .open_file(file)
}

#[test]
fn block_count_must_match_the_layers_present() {
    for v in [u32::MAX, 7, 5] {
        let file = minilm_with(|b, h| {
            let at = kv(h, "bert.block_count").val_at;
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        });
        let err = open_minilm(file).unwrap_err();
        assert!(
            matches!(&err, kiln::Error::Model(ModelError::BadMetadata { key, value, .. })
                if key == "bert.block_count" && *value == v.to_string()),
            "{err}"
        );
    }
}

#[test]
fn token_table_must_match_the_embedding_rows() {
    let file = minilm_with(|b, h| {
        let t = h
            .tensors
            .iter()
            .find(|t| t.name == "token_embd.weight")
            .unwrap();
        b[t.dims_at + 8..t.dims_at + 16].copy_from_slice(&30_000u64.to_le_bytes());
    });
    let err = open_minilm(file).unwrap_err();
    assert!(
        matches!(&err, kiln::Error::Model(ModelError::BadMetadata { key, .. })
            if key == "tokenizer.ggml.tokens"),
        "{err}"
    );
}

#[test]
fn negative_or_nan_epsilon_is_refused_at_open() {
    for v in [-1.0f32, f32::NAN, f32::INFINITY] {
        let file = minilm_with(|b, h| {
            let at = kv(h, "bert.attention.layer_norm_epsilon").val_at;
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        });
        let err = open_minilm(file).unwrap_err();
        assert!(
            matches!(&err, kiln::Error::Model(ModelError::BadMetadata { key, .. })
                if key == "bert.attention.layer_norm_epsilon"),
            "{err}"
        );
    }
}

#[test]
fn non_finite_weights_give_an_error_not_a_vector() {
    let file = minilm_with(|b, h| {
        let t = h
            .tensors
            .iter()
            .find(|t| t.name == "token_embd_norm.weight")
            .unwrap();
        let at = h.data_offset + t.offset as usize;
        b[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let e = open_minilm(file).unwrap();
    let err = e.embed("hello").unwrap_err();
    assert!(
        matches!(err, kiln::Error::Model(ModelError::NonFinite { .. })),
        "{err}"
    );
    let err = e.embed_batch(&["hello", "world"]).unwrap_err();
    assert!(
        matches!(err, kiln::Error::Model(ModelError::NonFinite { .. })),
        "{err}"
    );
}

#[test]
fn overlapping_tensors_are_refused_at_open() {
    let mut bytes = std::fs::read(minilm()).unwrap();
    let file = GgufFile::from_vec(bytes.clone(), "minilm").unwrap();
    let h = walk(&bytes, &file);
    let q = h
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.attn_q.weight")
        .unwrap();
    let k = h
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.attn_k.weight")
        .unwrap();
    bytes[k.offset_at..k.offset_at + 8].copy_from_slice(&q.offset.to_le_bytes());
    let err = GgufFile::from_vec(bytes, "overlap").unwrap_err();
    assert!(
        matches!(err.format_error(), Some(FormatError::TensorOverlap { .. })),
        "{err}"
    );
}

#[test]
fn a_fifo_or_directory_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.gguf");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let start = Instant::now();
    let err = GgufFile::open(&fifo).unwrap_err();
    assert!(
        matches!(&err, GgufError::NotAFile { kind: "FIFO", .. }),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = GgufFile::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            GgufError::NotAFile {
                kind: "directory",
                ..
            }
        ),
        "{err}"
    );
    let err = GgufFile::open("/dev/null").unwrap_err();
    assert!(matches!(&err, GgufError::NotAFile { .. }), "{err}");
}

#[test]
fn tiny_vectors_normalize_to_finite_values() {
    let mut v = vec![0.0f32; 8];
    v[3] = 1e-45;
    kiln::l2_normalize(&mut v);
    assert!(v.iter().all(|x| x.is_finite()), "{v:?}");
    assert_eq!(v[3], 1.0);
}

/// A large model's bytes with `f` applied to its header walk (the data
/// stays mapped in the original's copy: patches only touch the header).
fn cached_with(
    name: &str,
    f: impl FnOnce(&mut Vec<u8>, &Header),
) -> Option<(tempfile::TempDir, PathBuf)> {
    let path = common::cached_model(name)?;
    let file = GgufFile::open(&path).unwrap();
    let mut header = file.as_bytes()[..file.data_offset() as usize].to_vec();
    let h = walk(file.as_bytes(), &file);
    f(&mut header, &h);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model.gguf");
    std::fs::copy(&path, &copy).unwrap();
    let out = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
    out.write_all_at(&header, 0).unwrap();
    Some((dir, copy))
}

#[test]
fn huge_context_length_sizes_nothing_at_open() {
    let Some((_dir, path)) = cached_with("embeddinggemma", |b, h| {
        let at = kv(h, "gemma-embedding.context_length").val_at;
        b[at..at + 4].copy_from_slice(&(1u32 << 24).to_le_bytes());
    }) else {
        return;
    };
    let start = Instant::now();
    let e = kiln::Embedder::builder()
        .threads(2)
        .pack_cache(None)
        .open(&path)
        .unwrap();
    let opened = start.elapsed();
    assert_eq!(e.max_tokens(), 1 << 24);
    let v = e.embed("hello world").unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
    // It took 51 s and 8.6 GB before (RoPE tables sized by the context).
    assert!(opened < Duration::from_secs(10), "open took {opened:?}");
}

/// Why opening `path` as a decoder fails (it must).
fn generator_error(path: &Path) -> kiln::Error {
    kiln::Generator::builder()
        .threads(1)
        .pack_cache(None)
        .open(path)
        .unwrap_err()
}

#[test]
fn zero_sliding_window_is_refused_at_open() {
    let Some((_dir, path)) = cached_with("gemma3-270m", |b, h| {
        let at = kv(h, "gemma3.attention.sliding_window").val_at;
        b[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
    }) else {
        return;
    };
    let err = generator_error(&path);
    assert!(
        matches!(&err, kiln::Error::Model(ModelError::BadMetadata { key, value, .. })
            if key == "gemma3.attention.sliding_window" && value == "0"),
        "{err}"
    );
}

#[test]
fn a_layer_tensor_the_architecture_does_not_read_is_refused() {
    // A llama file with an attention bias (as Qwen2 has): running without
    // it would be another model.
    let Some((_dir, path)) = cached_with("smollm2", |b, h| {
        let t = h
            .tensors
            .iter()
            .find(|t| t.name == "blk.0.attn_q.weight")
            .unwrap();
        let at = t.name_at + 8;
        b[at..at + 19].copy_from_slice(b"blk.0.attn_q_a.bias");
    }) else {
        return;
    };
    let err = generator_error(&path);
    assert!(
        err.to_string()
            .contains("`blk.0.attn_q_a.bias` has no place in kiln's llama layer"),
        "{err}"
    );
}
