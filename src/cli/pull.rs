//! `kiln pull NAME`.
