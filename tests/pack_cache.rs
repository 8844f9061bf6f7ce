//! The pack cache on a real model: the first open writes the repacked
//! weights beside the model, later opens map them and give bit-identical
//! vectors; a damaged or stale cache is ignored and rewritten, never used.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln::Embedder;

const TEXTS: [&str; 3] = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Паровоз и 東京タワー",
];

fn embed_all(model: &Path, pack: Option<PathBuf>) -> Vec<Vec<f32>> {
    let e = Embedder::builder()
        .threads(2)
        .pack_cache(pack)
        .open(model)
        .unwrap();
    TEXTS.iter().map(|t| e.embed(t).unwrap()).collect()
}

/// The one cache file in `dir`, and no temporary files beside it.
fn only_pack(dir: &Path) -> PathBuf {
    let names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(names[0].extension().unwrap(), "kpack");
    names[0].clone()
}

#[test]
fn cache_is_written_once_then_mapped_with_identical_vectors() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("minilm.gguf");
    std::fs::copy(
        common::fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf"),
        &model,
    )
    .unwrap();
    let packs = work.path().join("packed");

    let repacked = embed_all(&model, None);
    assert!(!packs.exists(), "no cache asked for, none written");

    // First open: repacks and writes the cache.
    assert_eq!(embed_all(&model, Some(packs.clone())), repacked);
    let pack = only_pack(&packs);
    let written = std::fs::metadata(&pack).unwrap();
    assert!(
        written.len() > 10 << 20,
        "MiniLM's matmul weights are ~11 MB"
    );

    // Second open: maps it (a cache not taken would have been rewritten,
    // a new file under the same name).
    assert_eq!(embed_all(&model, Some(packs.clone())), repacked);
    assert_eq!(std::fs::metadata(&pack).unwrap().ino(), written.ino());

    // Damaged: cut in half. Ignored (same vectors) and rewritten whole.
    let bytes = std::fs::read(&pack).unwrap();
    std::fs::write(&pack, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(embed_all(&model, Some(packs.clone())), repacked);
    assert_eq!(std::fs::read(only_pack(&packs)).unwrap(), bytes);

    // Garbage in a header field: the same.
    let mut bad = bytes.clone();
    bad[8] ^= 1; // layout version
    std::fs::write(&pack, &bad).unwrap();
    assert_eq!(embed_all(&model, Some(packs.clone())), repacked);
    assert_eq!(std::fs::read(only_pack(&packs)).unwrap(), bytes);

    // The model rewritten (a new modification time): the old cache no
    // longer names it, so it is rewritten.
    let before = std::fs::metadata(&pack).unwrap().ino();
    let f = std::fs::File::options().write(true).open(&model).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    assert_eq!(embed_all(&model, Some(packs.clone())), repacked);
    assert_ne!(std::fs::metadata(only_pack(&packs)).unwrap().ino(), before);
}

#[test]
fn unwritable_cache_directory_only_means_repacking() {
    let work = tempfile::tempdir().unwrap();
    // A file where the directory should be: nothing can be created in it.
    let blocker = work.path().join("packed");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let model = common::fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf");
    assert_eq!(
        embed_all(&model, Some(blocker.clone())),
        embed_all(&model, None)
    );
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a directory");
}
