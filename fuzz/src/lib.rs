//! The entry points kiln's fuzz targets drive, one per parser. They live here, not in the
//! targets, so `tests/fuzz_replay.rs` can feed every checked-in corpus file through the very
//! same code in a normal `cargo test`, no fuzzer needed.
//!
//! Each entry point must return for any bytes: an error is fine, a panic, a hang or an
//! allocation the input sizes without bound is a bug. Walks stop after [`MAX_EXTENTS`]
//! extents so a valid image with a large virtual size keeps an execution short.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

use kiln::disk::{self, DiskFormat, OpenOptions};
use kiln::io::Source;

/// Extents read per image before an execution stops walking.
pub const MAX_EXTENTS: usize = 4096;

/// Opens `data` as `format` (probed when `None`) and walks it. Inputs of odd length are
/// opened with `allow_unsafe`, so both the refusals and the code behind them are reached.
pub fn read_disk(format: Option<DiskFormat>, data: &[u8]) {
    let src: Source = Arc::new(data.to_vec());
    let opts = OpenOptions {
        format,
        allow_unsafe: data.len() % 2 == 1,
    };
    let Ok(mut reader) = disk::open_source(src, Path::new("fuzz"), &opts) else {
        return;
    };
    let size = reader.virtual_size();
    let _ = reader.info();
    let mut walked = 0u64;
    for _ in 0..MAX_EXTENTS {
        match reader.next_extent() {
            Ok(Some(extent)) => {
                walked += extent.len();
                assert!(walked <= size, "extents run past the virtual size {size}");
            }
            Ok(None) => {
                assert_eq!(walked, size, "extents end before the virtual size");
                return;
            }
            Err(_) => return,
        }
    }
}

/// qcow2: the reader, the metadata check and the safety reasons.
pub fn qcow2(data: &[u8]) {
    read_disk(Some(DiskFormat::Qcow2), data);
    let bytes = data.to_vec();
    if let Ok(report) = disk::qcow2::check(&bytes) {
        assert!(report.messages.len() <= disk::qcow2::MAX_MESSAGES);
    }
    let _ = disk::qcow2::safety_reasons(&bytes);
}

/// VMDK in every form a single file can take: hosted sparse, stream, text descriptor (whose
/// extent files cannot be opened from memory, so the descriptor parser is what runs).
pub fn vmdk(data: &[u8]) {
    read_disk(Some(DiskFormat::Vmdk), data);
    let _ = disk::vmdk::safety_reasons(&data.to_vec(), data.len().is_multiple_of(2));
}

/// Dynamic and fixed VHD.
pub fn vhd(data: &[u8]) {
    read_disk(Some(DiskFormat::Vhd), data);
}

/// VHDX.
pub fn vhdx(data: &[u8]) {
    read_disk(Some(DiskFormat::Vhdx), data);
}

/// VDI.
pub fn vdi(data: &[u8]) {
    read_disk(Some(DiskFormat::Vdi), data);
}

/// ISO 9660.
pub fn iso(data: &[u8]) {
    read_disk(Some(DiskFormat::Iso), data);
}

/// Format detection: signatures, the probe, the MBR rules, and opening whatever it finds.
pub fn probe(data: &[u8]) {
    let bytes = data.to_vec();
    let _ = disk::signatures(&bytes);
    let _ = disk::probe(&bytes);
    let _ = disk::mbr_problem(data);
    read_disk(None, data);
}

/// The spec loader (YAML with budgets, serde, every unknown key located), then validation,
/// confined to an empty directory so no file the spec names is ever opened.
pub fn spec_load(data: &[u8]) {
    let dir = std::env::temp_dir().join("kiln-fuzz-spec-empty");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("spec.yaml");
    let Ok((spec, text)) = kiln::spec::load::parse_bytes(&path, data) else {
        return;
    };
    let opts = kiln::spec::ValidateOptions::confined(&[]);
    let _ = kiln::spec::validate_with(&path, spec, text, &opts);
}

/// The tar reader OVAs are read through.
pub fn tar(data: &[u8]) {
    let bytes = data.to_vec();
    if let Ok(members) = kiln::container::tar::reader::list(&bytes) {
        let archive: Source = Arc::new(bytes);
        for m in members {
            assert!(
                m.offset + m.len <= archive.len(),
                "member {} past the end",
                m.name
            );
            let _ = m.view(&archive);
        }
    }
}
