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

/// A copy of the MiniLM fixture in `dir`.
fn copy_model(dir: &Path) -> PathBuf {
    let model = dir.join("minilm.gguf");
    std::fs::copy(
        common::fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf"),
        &model,
    )
    .unwrap();
    model
}

#[test]
fn same_size_edit_keeping_the_mtime_rebuilds_the_cache() {
    let work = tempfile::tempdir().unwrap();
    let model = copy_model(work.path());
    let packs = work.path().join("packed");
    let original = embed_all(&model, Some(packs.clone()));
    let pack = only_pack(&packs);
    let stale = std::fs::read(&pack).unwrap();

    // Change one weight of a repacked matrix in place (same length, same
    // inode), then put the modification time back, as `cp --preserve`,
    // `rsync -t` or `touch -r` would leave it.
    let before = std::fs::metadata(&model).unwrap();
    let at = {
        let f = kiln_runtime::gguf::GgufFile::open(&model).unwrap();
        let t = f.tensor("blk.0.attn_q.weight").unwrap();
        assert_eq!(t.ty, kiln_runtime::gguf::GgmlType::Q8_0);
        // Past the first block's f16 scale: one int8 weight of row 0.
        (f.data_offset() + t.offset + 2) as usize
    };
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[at] = bytes[at].wrapping_add(100);
    let f = std::fs::File::options().write(true).open(&model).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &bytes[at..at + 1], at as u64).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    let after = std::fs::metadata(&model).unwrap();
    // Only the ctime tells the edit from the file's metadata (the edited
    // byte also lies in a window the sampled source check reads, so the
    // cache is refused on both counts).
    assert_ne!(
        (after.ctime(), after.ctime_nsec()),
        (before.ctime(), before.ctime_nsec())
    );
    assert_eq!(
        (after.len(), after.ino(), after.dev(), after.mtime_nsec()),
        (
            before.len(),
            before.ino(),
            before.dev(),
            before.mtime_nsec()
        )
    );

    let edited = embed_all(&model, None);
    assert_ne!(edited, original, "the edit changes the vectors");
    // The cache made from the old bytes is not used, and is rewritten.
    assert_eq!(embed_all(&model, Some(packs.clone())), edited);
    assert_ne!(std::fs::read(only_pack(&packs)).unwrap(), stale);
    // And the rewritten cache is then used as usual.
    let ino = std::fs::metadata(only_pack(&packs)).unwrap().ino();
    assert_eq!(embed_all(&model, Some(packs.clone())), edited);
    assert_eq!(std::fs::metadata(only_pack(&packs)).unwrap().ino(), ino);
}

#[test]
fn single_byte_flips_in_the_cache_are_caught_and_rebuilt() {
    let work = tempfile::tempdir().unwrap();
    let model = copy_model(work.path());
    let packs = work.path().join("packed");
    let reference = embed_all(&model, None);
    assert_eq!(embed_all(&model, Some(packs.clone())), reference);
    let pack = only_pack(&packs);
    let good = std::fs::read(&pack).unwrap();
    // 40 flips spread over the file (header, weights, index), plus its
    // first and last bytes.
    let mut spots: Vec<usize> = (0..40).map(|i| i * good.len() / 40 + 7).collect();
    spots.extend([0, good.len() - 1]);
    for at in spots {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&pack, &bad).unwrap();
        assert_eq!(
            embed_all(&model, Some(packs.clone())),
            reference,
            "flip at {at} of {}",
            good.len()
        );
        assert!(
            std::fs::read(only_pack(&packs)).unwrap() == good,
            "flip at {at}: cache not rebuilt"
        );
    }
}

#[test]
fn a_planted_cache_from_another_model_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let model = copy_model(work.path());
    let packs = work.path().join("packed");
    let reference = embed_all(&model, None);
    let pack = {
        embed_all(&model, Some(packs.clone()));
        only_pack(&packs)
    };
    let good = std::fs::read(&pack).unwrap();
    // Another model (the same one with every weight of one matrix changed)
    // packed under its own name, then planted under this model's cache
    // name with this model's identity in its header.
    let other_dir = work.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = copy_model(&other_dir);
    let mut bytes = std::fs::read(&other).unwrap();
    {
        let f = kiln_runtime::gguf::GgufFile::open(&other).unwrap();
        let t = f.tensor("blk.1.ffn_up.weight").unwrap();
        let start = (f.data_offset() + t.offset) as usize;
        for b in &mut bytes[start..start + t.n_bytes as usize] {
            *b = b.wrapping_mul(3);
        }
    }
    std::fs::write(&other, &bytes).unwrap();
    let other_packs = work.path().join("other-packed");
    embed_all(&other, Some(other_packs.clone()));
    let mut planted = std::fs::read(only_pack(&other_packs)).unwrap();
    // The identity fields (after magic and version, before the index's
    // offset and length), then the header's checksum made over them anew:
    // only the source checksums can tell this cache is not this model's.
    planted[16..56].copy_from_slice(&good[16..56]);
    reseal(&mut planted);
    std::fs::write(&pack, &planted).unwrap();
    assert_eq!(embed_all(&model, Some(packs.clone())), reference);
    assert_eq!(std::fs::read(only_pack(&packs)).unwrap(), good);
}

/// CRC-32 (IEEE), bit by bit: the header checksum's function.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = !0u32;
    for b in parts.iter().flat_map(|p| p.iter()) {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Makes a cache's header checksum (its last 8 bytes: CRC-32 of the header
/// before them and of the index) match its bytes again.
fn reseal(pack: &mut [u8]) {
    let field = |at: usize| u64::from_le_bytes(pack[at..at + 8].try_into().unwrap()) as usize;
    let (start, len) = (field(56), field(64));
    let hash = crc32(&[&pack[..120], &pack[start..start + len]]);
    pack[120..128].copy_from_slice(&u64::from(hash).to_le_bytes());
}
