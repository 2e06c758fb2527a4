//! Fuzzes `kiln_fuzz::partitions` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): sfdisk-made MBR and GPT tables of a small raw disk, and the first 64 KiB of a kiln ISO.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::partitions(data));
