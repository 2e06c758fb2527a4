//! Fuzzes `kiln_fuzz::ovf` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): the .ovf descriptors of kiln-built OVAs (VMware and VirtualBox targets, cloud-init properties).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::ovf(data));
