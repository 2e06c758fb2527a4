//! Platform specifics: sparse-file queries and space allocation.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;
