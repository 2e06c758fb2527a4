//! Fuzzes every disk reader through the probing factory: whatever the bytes, `open` and the
//! extent walk must return an error or a stream that tiles the virtual size, never panic or
//! allocate without bound.
//!
//! Seed corpus: `qemu-img convert -O {qcow2,vmdk,vpc,vhdx,vdi}` of a 1 MiB random file,
//! plus kiln's own outputs of the same file (see fuzz/README.md).
#![no_main]

use std::io::Write;

use kiln::disk::{self, OpenOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write input");
    let Ok(mut reader) = disk::open(file.path(), &OpenOptions::default()) else { return };
    let size = reader.virtual_size();
    let mut walked = 0u64;
    while let Ok(Some(extent)) = reader.next_extent() {
        walked += extent.len();
        assert!(walked <= size, "extents past the virtual size");
    }
});
