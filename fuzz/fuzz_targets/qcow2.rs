//! Fuzzes `kiln_fuzz::qcow2` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): qemu-img convert -O qcow2 (plain, -c compressed, preallocation=metadata, with a backing file), kiln's qcow2 writer, and the hostile edits of make-corpus.sh.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::qcow2(data));
