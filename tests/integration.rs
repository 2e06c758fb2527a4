#![allow(missing_docs, clippy::unwrap_used)]
//! kiln's integration tests: one binary (links once), modules by area.
//!
//! Correctness is judged by the independent oracles in `../shared/oracles`; a test that
//! needs a missing oracle fails with an install hint instead of skipping.

mod build;
mod cli;
mod defects;
mod formats;
mod fuzz_replay;
mod hostile;
mod layering;
mod ova;
mod ova_input;
mod seed;
mod spec;
mod util;
