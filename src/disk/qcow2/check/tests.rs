//! Each finding on a hand-made image; `tests/hostile.rs` compares whole reports with
//! `qemu-img check` on images qemu-img made.

use super::*;

/// A minimal v3 image with 512-byte clusters: header, refcount table, refcount block, L1,
/// one L2 table and two data clusters, every refcount 1 and every copied flag set.
fn image() -> Vec<u8> {
    let cs = 512usize;
    let mut img = vec![0u8; 7 * cs];
    let put64 =
        |img: &mut Vec<u8>, at: usize, v: u64| img[at..at + 8].copy_from_slice(&v.to_be_bytes());
    let put32 =
        |img: &mut Vec<u8>, at: usize, v: u32| img[at..at + 4].copy_from_slice(&v.to_be_bytes());
    put32(&mut img, 0, 0x5146_49fb); // magic
    put32(&mut img, 4, 3); // version
    put32(&mut img, 20, 9); // cluster_bits
    put64(&mut img, 24, 2 * 512); // size: two clusters
    put32(&mut img, 36, 1); // l1_size
    put64(&mut img, 40, 3 * 512); // l1_table_offset
    put64(&mut img, 48, 512); // refcount_table_offset
    put32(&mut img, 56, 1); // refcount_table_clusters
    put32(&mut img, 96, 4); // refcount_order
    put32(&mut img, 100, 104); // header_length
    put64(&mut img, 512, 2 * 512); // refcount table -> block at cluster 2
    for cluster in 0..7 {
        img[1024 + cluster * 2 + 1] = 1; // refcount 1
    }
    put64(&mut img, 3 * 512, QCOW2_OFLAG_COPIED | (4 * 512)); // L1 -> L2 at cluster 4
    put64(&mut img, 4 * 512, QCOW2_OFLAG_COPIED | (5 * 512)); // L2[0] -> cluster 5
    put64(&mut img, 4 * 512 + 8, QCOW2_OFLAG_COPIED | (6 * 512)); // L2[1] -> cluster 6
    img
}

#[test]
fn a_consistent_image_has_no_findings() {
    assert_eq!(check(&image()).unwrap(), CheckReport::default());
}

#[test]
fn a_cluster_mapped_twice_is_an_error_and_its_twin_a_leak() {
    let mut img = image();
    img[4 * 512 + 8..4 * 512 + 16].copy_from_slice(&(QCOW2_OFLAG_COPIED | (5 * 512)).to_be_bytes());
    let report = check(&img).unwrap();
    assert_eq!(
        report.messages,
        [
            "ERROR cluster 5 refcount=1 reference=2",
            "Leaked cluster 6 refcount=1 reference=0"
        ]
    );
    assert_eq!((report.corruptions, report.leaks), (1, 1));
}

#[test]
fn a_zeroed_refcount_block_fails_every_cluster() {
    let mut img = image();
    img[1024..1536].fill(0);
    let report = check(&img).unwrap();
    // Seven clusters with no refcount, and the copied flags of the L2 and both data clusters.
    assert_eq!(report.corruptions, 7 + 3);
}

/// Found by the `qcow2` fuzz target in its first seconds (issue 15): a refcount table offset
/// near 2^64 overflowed while the check read the table (fuzz/regressions/qcow2/).
#[test]
fn a_refcount_table_offset_near_the_end_of_the_address_space_reads_as_zeros() {
    let mut img = image();
    img[48..56].copy_from_slice(&0xffff_ffff_ffff_ff1b_u64.to_be_bytes());
    let report = check(&img).unwrap();
    assert!(report.errors() > 0, "{report:?}");
}

#[test]
fn too_many_snapshots_is_reported_without_reading_them() {
    let mut img = image();
    img[60..64].copy_from_slice(&u32::MAX.to_be_bytes());
    let report = check(&img).unwrap();
    assert_eq!(report.corruptions, 1);
    assert!(
        report.messages[0].contains("snapshot table too large"),
        "{:?}",
        report.messages
    );
}

#[test]
fn an_l1_whose_entries_all_name_one_l2_table_stops_within_the_visit_budget() {
    let mut img = image();
    img[36..40].copy_from_slice(&64u32.to_be_bytes()); // l1_size: the whole cluster
    for i in 0..64 {
        let at = 3 * 512 + i * 8;
        img[at..at + 8].copy_from_slice(&(QCOW2_OFLAG_COPIED | (4 * 512)).to_be_bytes());
    }
    let report = check(&img).unwrap();
    assert!(report.errors() > 0);
}
