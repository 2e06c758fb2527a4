//! Fuzzes `kiln_fuzz::ec2_manifest` (see fuzz/src/lib.rs): whatever the bytes, it returns.
//!
//! Seed corpus (fuzz/make-corpus.sh): the manifest.xml of an EC2 bundle kiln made with throwaway keys.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::ec2_manifest(data));
