//! Fuzzes `kiln_fuzz::vhdx` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): qemu-img convert -O vhdx and kiln's writer, truncated to their first 1.25 MiB.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::vhdx(data));
