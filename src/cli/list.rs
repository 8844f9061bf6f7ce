//! `kiln list [DIR]`.
