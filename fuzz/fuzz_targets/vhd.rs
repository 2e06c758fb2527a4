//! Fuzzes `kiln_fuzz::vhd` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): qemu-img convert -O vpc (dynamic, fixed) and kiln's writer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::vhd(data));
