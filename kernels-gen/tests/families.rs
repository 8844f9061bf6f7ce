//! Each kernel family is declared once, in `kiln_kernels_gen::kernels`:
//! these tests fail when something generated from the declarations and
//! committed is stale, or when a family names no property test.

use std::path::{Path, PathBuf};

use kiln_kernels_gen::kernels::all_families;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kernels-gen is a workspace member")
        .to_path_buf()
}

/// `runtime/src/kernel_set.rs` is what the generator makes of the families
/// now; `KILN_BLESS=1` rewrites it.
#[test]
fn runtime_interface_is_up_to_date() {
    let path = repo().join("runtime/src/kernel_set.rs");
    let want = kiln_kernels_gen::interface::runtime_source();
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have == want {
        return;
    }
    if std::env::var_os("KILN_BLESS").is_some() {
        std::fs::write(&path, want).expect("writing runtime/src/kernel_set.rs");
        return;
    }
    panic!(
        "{} is stale: rerun with KILN_BLESS=1 \
         (`KILN_BLESS=1 cargo test -p kiln-kernels-gen --test families`)",
        path.display()
    );
}

/// The body of `fn name()` after a `#[test]` in `src`, if any.
fn test_fn<'a>(src: &'a str, name: &str) -> Option<&'a str> {
    let head = format!("#[test]\nfn {name}() {{\n");
    let start = src.find(&head)? + head.len();
    let len = src[start..].find("\n}\n")?;
    Some(&src[start..start + len])
}

#[test]
fn every_family_names_its_property_test() {
    for f in all_families() {
        let (file, name) = f
            .test
            .split_once("::")
            .unwrap_or_else(|| panic!("{}: test `{}` is not file::function", f.getter, f.test));
        let path = repo().join("tests").join(format!("{file}.rs"));
        let src = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {}: {e}", f.getter, path.display()));
        assert!(
            test_fn(&src, name).is_some(),
            "{}: no `#[test] fn {name}()` in {}",
            f.getter,
            path.display()
        );
        // Tests share helpers, so the call may be outside the test's own body.
        assert!(
            src.contains(&format!(".{}(", f.getter)),
            "{}: {} never calls `.{}(`",
            f.getter,
            path.display(),
            f.getter
        );
    }
}
