//! Fuzzes `kiln_fuzz::unpack` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): small raw and qcow2 images compressed by xz, zstd,
//! gzip and bzip2, and tar archives of them, plain and compressed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::unpack(data));
