//! Fuzzes `kiln_fuzz::spec_load` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): kiln's templates/*.yaml and examples, plus a few broken specs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::spec_load(data));
