//! Compile errors of `#[model]`, one file per mistake (tests/ui/*.rs), each
//! with the exact message it must give (the `.stderr` beside it).

#[test]
fn ui() {
    // The UI files name models relative to this crate; trybuild builds them
    // in a project of its own, so point the macro's base directory here.
    // SAFETY: set before trybuild starts any thread or process, and this
    // test binary has no other test that could read the environment
    // concurrently.
    unsafe { std::env::set_var("KILN_MODEL_DIR", env!("CARGO_MANIFEST_DIR")) };
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
