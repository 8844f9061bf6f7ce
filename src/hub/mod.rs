//! Model cache (placeholder).
