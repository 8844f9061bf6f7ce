//! Task prompts that models were trained with, by architecture.
//!
//! The table lives in [`kiln_runtime::prompts`] so that `#[kiln::model]`
//! can check a `task = "..."` option at compile time.

pub use kiln_runtime::prompts::{lookup, names};
