//! Round trips through kiln's own writer and reader, in process.

use proptest::prelude::*;

use crate::context::BuildContext;
use crate::disk::{self, CreateRequest, DiskFormat, Extent, KvOptions, OpenOptions};
use crate::io::output::OutputSet;

/// Writes `disk` (zero runs as unallocated extents) as vmdk `sub`, reads it back.
fn round_trip(disk: &[u8], sub: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.vmdk");
    let options = KvOptions::parse(&format!("subformat={sub}")).unwrap();
    let ctx = BuildContext::from_env("p");
    let req = CreateRequest {
        format: DiskFormat::Vmdk,
        virtual_size: disk.len() as u64,
        options: &options,
        compress: false,
        ctx: &ctx,
    };
    let mut out = OutputSet::new(&path, false);
    let mut writer = disk::create(&req, &mut out).unwrap();
    for chunk in disk.chunks(4096 + 512) {
        let extent = if chunk.iter().all(|&b| b == 0) {
            Extent::Unallocated(chunk.len() as u64)
        } else {
            Extent::Data(chunk)
        };
        writer.write_extent(extent).unwrap();
    }
    writer.finish().unwrap();
    out.commit().unwrap();
    let opts = OpenOptions {
        format: None,
        allow_unsafe: false,
    };
    let mut reader = disk::open(&path, &opts).unwrap();
    let mut back = Vec::new();
    while let Some(e) = reader.next_extent().unwrap() {
        match e {
            Extent::Data(b) => back.extend_from_slice(b),
            Extent::Zero(n) | Extent::Unallocated(n) => {
                back.resize(back.len() + usize::try_from(n).unwrap(), 0);
            }
        }
    }
    back
}

/// A disk of `sectors` sectors with `runs` (offset, length, byte) of data.
fn build_disk(sectors: usize, runs: &[(usize, usize, u8)]) -> Vec<u8> {
    let mut disk = vec![0u8; sectors * 512];
    for &(offset, len, byte) in runs {
        let start = offset % disk.len();
        let end = (start + len).min(disk.len());
        disk[start..end].fill(byte);
    }
    disk
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn random_sparse_maps_round_trip_in_every_subformat(
        sectors in 1usize..6000,
        runs in prop::collection::vec((0usize..4_000_000, 1usize..200_000, any::<u8>()), 0..8),
    ) {
        let disk = build_disk(sectors, &runs);
        for sub in ["monolithicSparse", "streamOptimized", "monolithicFlat"] {
            prop_assert!(round_trip(&disk, sub) == disk, "{} differs", sub);
        }
    }
}

#[test]
fn sparse_file_whose_descriptor_claims_flat_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.vmdk");
    let options = KvOptions::default();
    let ctx = BuildContext::from_env("e");
    let req = CreateRequest {
        format: DiskFormat::Vmdk,
        virtual_size: 1 << 20,
        options: &options,
        compress: false,
        ctx: &ctx,
    };
    let mut out = OutputSet::new(&path, false);
    disk::create(&req, &mut out).unwrap().finish().unwrap();
    out.commit().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let from: &[u8] = b"\"monolithicSparse\"";
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    bytes[at..at + from.len()].copy_from_slice(b"\"monolithicFlat\"  ");
    std::fs::write(&path, &bytes).unwrap();
    let e = disk::open(&path, &OpenOptions::default()).err().unwrap();
    assert!(e.to_string().contains("may only describe itself"), "{e}");
}

/// A kiln streamOptimized image of `grains` grains of distinct, compressible data, and
/// the byte offset of each grain's marker (the writer's layout: grains from 64 KiB on,
/// each marker + data padded to a sector).
fn stream_image(dir: &std::path::Path, grains: usize) -> (std::path::PathBuf, Vec<u8>, Vec<usize>) {
    let disk: Vec<u8> = (0..grains * 65536)
        .map(|i| (i / 65536).to_le_bytes()[0].wrapping_mul(37) ^ (i / 13).to_le_bytes()[0])
        .collect();
    let path = dir.join("s.vmdk");
    let options = KvOptions::parse("subformat=streamOptimized").unwrap();
    let ctx = BuildContext::from_env("s");
    let req = CreateRequest {
        format: DiskFormat::Vmdk,
        virtual_size: disk.len() as u64,
        options: &options,
        compress: false,
        ctx: &ctx,
    };
    let mut out = OutputSet::new(&path, false);
    let mut writer = disk::create(&req, &mut out).unwrap();
    writer.write_extent(Extent::Data(&disk)).unwrap();
    writer.finish().unwrap();
    out.commit().unwrap();
    let img = std::fs::read(&path).unwrap();
    let mut markers = Vec::new();
    let mut at = 65536;
    for _ in 0..grains {
        markers.push(at);
        let size = u32::from_le_bytes(img[at + 8..at + 12].try_into().unwrap()) as usize;
        at = (at + 12 + size).div_ceil(512) * 512;
    }
    (path, disk, markers)
}

/// Reads `path` until the first error: the data before it and the error.
fn read_until_error(path: &std::path::Path) -> (Vec<u8>, String) {
    let mut reader = disk::open(path, &OpenOptions::default()).unwrap();
    let mut back = Vec::new();
    loop {
        match reader.next_extent() {
            Ok(Some(Extent::Data(b))) => back.extend_from_slice(b),
            Ok(Some(e)) => panic!("unexpected {e:?}"),
            Ok(None) => return (back, String::new()),
            Err(e) => return (back, e.to_string()),
        }
    }
}

#[test]
fn grains_read_ahead_are_handed_out_before_a_later_bad_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (path, disk, markers) = stream_image(dir.path(), 6);
    let mut img = std::fs::read(&path).unwrap();
    let m = markers[3];
    img[m..m + 8].copy_from_slice(&7u64.to_le_bytes());
    std::fs::write(&path, &img).unwrap();
    let (back, err) = read_until_error(&path);
    assert!(
        back == disk[..3 * 65536],
        "{} bytes before the error",
        back.len()
    );
    assert!(
        err.contains(&format!("grain marker at {m:#x} has LBA 0x7")),
        "{err}"
    );
}

#[test]
fn grains_read_ahead_are_handed_out_before_a_later_corrupt_grain() {
    let dir = tempfile::tempdir().unwrap();
    let (path, disk, markers) = stream_image(dir.path(), 6);
    let mut img = std::fs::read(&path).unwrap();
    let m = markers[4];
    for b in &mut img[m + 20..m + 60] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &img).unwrap();
    let (back, err) = read_until_error(&path);
    assert!(
        back == disk[..4 * 65536],
        "{} bytes before the error",
        back.len()
    );
    assert!(
        err.contains(&format!("compressed grain at {m:#x} is corrupt")),
        "{err}"
    );
}

#[test]
fn stream_of_many_batches_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    // 200 grains: more than three batches of 64, the last one partial.
    let (path, disk, _) = stream_image(dir.path(), 200);
    let (back, err) = read_until_error(&path);
    assert_eq!(err, "");
    assert!(back == disk, "differs");
}
