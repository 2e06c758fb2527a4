//! Fuzzes `kiln_fuzz::ext4` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): a 1 MiB ext4 made with mkfs.ext4 -d from a two-file tree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::ext4(data));
