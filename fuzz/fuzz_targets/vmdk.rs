//! Fuzzes `kiln_fuzz::vmdk` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): qemu-img convert -O vmdk (monolithicSparse, streamOptimized, a monolithicFlat descriptor) and kiln's streamOptimized writer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::vmdk(data));
