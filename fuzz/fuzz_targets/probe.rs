//! Fuzzes `kiln_fuzz::probe` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): the first 64 KiB of every other corpus, plus a tar header and an MBR.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::probe(data));
