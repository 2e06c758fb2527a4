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
