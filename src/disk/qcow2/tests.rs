//! Round trips through the writer and the reader, and header rules one at a time.

use proptest::prelude::*;

use super::header::Qcow2Header;
use super::*;
use crate::context::BuildContext;
use std::path::Path;

use crate::disk::{DiskFormat, OpenOptions};

/// Writes `data` (zero bytes become zero extents) as qcow2 with `options`, reads it back.
fn round_trip(data: &[u8], runs: &[(usize, bool)], options: &str, compress: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.qcow2");
    let options = KvOptions::parse(options).unwrap();
    let ctx = BuildContext::from_env("test");
    let req = CreateRequest {
        format: DiskFormat::Qcow2,
        virtual_size: data.len() as u64,
        options: &options,
        compress,
        ctx: &ctx,
    };
    let mut out = OutputSet::new(&path, false);
    let mut writer = create(&req, &mut out).unwrap();
    let mut pos = 0;
    for &(len, is_data) in runs {
        let extent = if is_data {
            Extent::Data(&data[pos..pos + len])
        } else {
            Extent::Zero(len as u64)
        };
        writer.write_extent(extent).unwrap();
        pos += len;
    }
    writer.finish().unwrap();
    out.commit().unwrap();
    read_back(&path)
}

fn read_back(path: &Path) -> Vec<u8> {
    let mut reader = crate::disk::open(path, &OpenOptions::default()).unwrap();
    let mut bytes = Vec::new();
    while let Some(extent) = reader.next_extent().unwrap() {
        match extent {
            Extent::Data(b) => bytes.extend_from_slice(b),
            other => bytes.resize(bytes.len() + usize::try_from(other.len()).unwrap(), 0),
        }
    }
    bytes
}

/// A disk of `runs` (length, data?) with data bytes drawn from `seed`.
fn disk(runs: &[(usize, bool)], seed: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, &(len, is_data)) in runs.iter().enumerate() {
        let salt = seed ^ i.to_le_bytes()[0];
        let fill = |j: usize| {
            if is_data {
                j.to_le_bytes()[0].wrapping_mul(31).wrapping_add(salt) | 1
            } else {
                0
            }
        };
        bytes.extend((0..len).map(|j| if j % 7 == 0 && is_data { 0 } else { fill(j) }));
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_sparse_maps_round_trip(
        runs in prop::collection::vec((1usize..40_000, any::<bool>()), 1..12),
        cluster in prop::sample::select(vec![512u32, 4096, 65536]),
        mode in 0usize..5,
        seed in any::<u8>(),
    ) {
        let data = disk(&runs, seed);
        let (options, compress) = match mode {
            0 => (format!("cluster_size={cluster}"), false),
            1 => (format!("cluster_size={cluster}"), true),
            2 => (format!("cluster_size={cluster},compat=0.10"), true),
            3 => (format!("cluster_size={cluster},preallocation=metadata"), false),
            _ => (format!("cluster_size={cluster},preallocation=full,compat=0.10"), false),
        };
        let mut back = round_trip(&data, &runs, &options, compress);
        // The writer rounds the virtual size up to a 512-byte sector, as qemu does.
        prop_assert_eq!(back.len(), data.len().div_ceil(512) * 512);
        back.truncate(data.len());
        prop_assert!(back == data);
    }
}

/// A valid v3 header: 64 KiB clusters, 1 MiB disk.
fn valid_header() -> [u8; 112] {
    let mut h = [0u8; 112];
    h[0..4].copy_from_slice(b"QFI\xfb"); // magic
    h[4..8].copy_from_slice(&3u32.to_be_bytes()); // version
    h[20..24].copy_from_slice(&16u32.to_be_bytes()); // cluster_bits
    h[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes()); // size
    h[36..40].copy_from_slice(&1u32.to_be_bytes()); // l1_size
    h[40..48].copy_from_slice(&0x30000u64.to_be_bytes()); // l1_table_offset
    h[48..56].copy_from_slice(&0x10000u64.to_be_bytes()); // refcount_table_offset
    h[56..60].copy_from_slice(&1u32.to_be_bytes()); // refcount_table_clusters
    h[96..100].copy_from_slice(&4u32.to_be_bytes()); // refcount_order
    h[100..104].copy_from_slice(&112u32.to_be_bytes()); // header_length
    h
}

#[test]
fn valid_header_parses_and_round_trips() {
    let header = Qcow2Header::parse(&valid_header()).unwrap();
    let mut again = [0u8; 112];
    again.copy_from_slice(&header.to_bytes());
    assert_eq!(Qcow2Header::parse(&again).unwrap(), header);
}

#[test]
fn header_with_bad_magic_is_rejected() {
    let mut h = valid_header();
    h[0] = b'X';
    assert!(matches!(
        Qcow2Header::parse(&h),
        Err(Qcow2Error::BadMagic { .. })
    ));
}

#[test]
fn header_with_version_4_is_rejected() {
    let mut h = valid_header();
    h[7] = 4;
    assert!(matches!(
        Qcow2Header::parse(&h),
        Err(Qcow2Error::BadVersion { found: 4 })
    ));
}

#[test]
fn header_with_cluster_bits_30_is_rejected() {
    let mut h = valid_header();
    h[23] = 30;
    assert!(matches!(
        Qcow2Header::parse(&h),
        Err(Qcow2Error::BadClusterBits { found: 30 })
    ));
}

#[test]
fn header_length_past_the_first_cluster_is_rejected() {
    let mut h = valid_header();
    h[100..104].copy_from_slice(&0x10000u32.to_be_bytes());
    assert!(matches!(
        Qcow2Header::parse(&h),
        Err(Qcow2Error::BadHeaderLength { .. })
    ));
}

#[test]
fn refcount_bits_other_than_16_are_refused() {
    let options = KvOptions::parse("refcount_bits=1").unwrap();
    let err = Settings::from_options(&options).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[test]
fn cluster_size_4m_is_rejected() {
    let options = KvOptions::parse("cluster_size=4M").unwrap();
    assert_eq!(
        Settings::from_options(&options).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn measure_of_8g_matches_qemu_img() {
    // `qemu-img measure -O qcow2 --size 8G` (qemu 10.0.2).
    let m = measure(&KvOptions::default(), 8 << 30, None).unwrap();
    assert_eq!(
        m,
        Measure {
            required: 1_572_864,
            fully_allocated: 8_591_507_456
        }
    );
}
