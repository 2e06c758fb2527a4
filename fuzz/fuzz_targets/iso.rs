//! Fuzzes `kiln_fuzz::iso` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): genisoimage of a two-file tree and kiln's ISO writer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::iso(data));
