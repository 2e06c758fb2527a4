#![allow(missing_docs, clippy::unwrap_used)]
//! kiln's integration tests: one binary (links once), modules by area.
//!
//! Correctness is judged by the independent oracles in `tests/oracles`; a test that
//! needs a missing oracle fails with an install hint instead of skipping.

mod build;
mod cli;
mod cli_surface;
mod compressed;
mod defects;
mod ec2;
mod formats;
mod fuzz_replay;
mod hostile;
mod layering;
mod ova;
mod ova_cdrom;
mod ova_devices;
mod ova_extract;
mod ova_from_disks;
mod ova_from_ovf;
mod ova_hardware;
mod ova_input;
mod ova_product;
mod ova_profiles;
mod ova_signed_build;
mod ova_verify;
mod partitions;
mod progress;
mod seed;
mod sources;
mod spec;
mod triplet;
mod triplet_bundle;
mod util;
