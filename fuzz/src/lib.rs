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
    walk(reader.as_mut());
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

/// Largest image the `unpack` target lets a source decompress to: keeps an execution short
/// while a declared size past it exercises the refusal.
pub const UNPACK_MAX_SIZE: u64 = 16 << 20;

/// Compressed sources and archives (`kiln::unpack`): magic detection, the size the xz
/// index, zstd frames or gzip trailer declare, the tar walk and member choice, and the
/// streamed decode of a raw image (on its read-ahead thread). The reader is path-based, so
/// the input is written to a file of this process first. An input whose first byte is odd
/// asks for the member `disk.raw`; otherwise the archive's one disk image is chosen.
pub fn unpack(data: &[u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("kiln-fuzz-unpack-{}-{n}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let opts = kiln::unpack::UnpackOptions {
        member: (data.first().is_some_and(|b| b % 2 == 1)).then(|| "disk.raw".to_string()),
        max_size: Some(UNPACK_MAX_SIZE),
        // A digest is given so nothing hashes the input; nothing is unpacked into a cache.
        sha256: Some("0".repeat(64)),
        force_cache: false,
    };
    let _ = kiln::unpack::is_packed(&path);
    if let Ok(Some(size)) = kiln::unpack::peek_size(&path, &opts) {
        assert!(
            size <= UNPACK_MAX_SIZE,
            "declared {size} bytes past the bound"
        );
    }
    if let Ok(mut reader) = kiln::unpack::open(&path, &opts) {
        walk(reader.as_mut());
    }
    let _ = std::fs::remove_file(&path);
}

/// Reads a disk's extents (up to [`MAX_EXTENTS`]): they must tile its virtual size.
fn walk(reader: &mut dyn disk::DiskReader) {
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

/// The OVF descriptor reader (untrusted XML: no DOCTYPE, bounded depth and size).
pub fn ovf(data: &[u8]) {
    let _ = kiln::container::ovf_read::read_descriptor(data, "fuzz.ovf");
}

/// The EC2 bundle manifest (`NAME.manifest.xml`) parser.
pub fn ec2_manifest(data: &[u8]) {
    let _ = kiln::container::ec2::parse::parse_manifest(data);
}

/// MBR and GPT partition tables of a disk that is the input.
pub fn partitions(data: &[u8]) {
    let len = data.len() as u64;
    let _ = kiln::fs::partition::read(&data.to_vec(), len, len);
}

/// ext2/3/4: the superblock, the root directory, and the first bytes of each file in it
/// (at most [`MAX_EXT4_ENTRIES`] entries, [`MAX_EXT4_READ`] bytes each).
pub fn ext4(data: &[u8]) {
    use kiln::fs::ext4::Ext4;
    let Ok(fs) = Ext4::open(Arc::new(data.to_vec())) else {
        return;
    };
    let _ = fs.label();
    let Ok(root) = fs.root() else { return };
    let Ok(entries) = fs.read_dir(&root) else {
        return;
    };
    for entry in entries.iter().take(MAX_EXT4_ENTRIES) {
        let _ = fs.lookup(&entry.name, false);
        let Ok(inode) = fs.entry_inode(entry) else {
            continue;
        };
        let _ = fs.read_dir(&inode);
        if let Ok(mut file) = fs.open_file(&inode) {
            let mut buf = vec![0u8; MAX_EXT4_READ];
            let _ = file.read(&mut buf);
        }
    }
}

/// Directory entries the ext4 entry point follows.
pub const MAX_EXT4_ENTRIES: usize = 64;
/// Bytes read from each file.
pub const MAX_EXT4_READ: usize = 64 << 10;
