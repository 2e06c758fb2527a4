//! ext2/3/4, read-only (placeholder).
