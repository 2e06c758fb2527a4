//! Tables built byte by byte here; each validation rule is broken alone. The oracle tests
//! (sfdisk, sgdisk) are in tests/partitions.rs.

use super::types::{GPT_EFI_SYSTEM, GPT_LINUX_FILESYSTEM, GPT_LINUX_ROOT_X86_64};
use super::*;

/// A 1 MiB disk: 2048 LBAs of 512 bytes.
const DISK: usize = 1 << 20;
const LBAS: u64 = (DISK / 512) as u64;
/// Primary array at LBA 2, backup array 32 LBAs before the backup header.
const PRIMARY_ARRAY: usize = 1024;
const BACKUP_ARRAY: usize = DISK - 33 * 512;
const BACKUP_HEADER: usize = DISK - 512;

fn put(d: &mut [u8], at: usize, bytes: &[u8]) {
    d[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Protective MBR, both headers and arrays; `parts` are (type, first, last, name).
fn gpt_disk(parts: &[(Uuid, u64, u64, &str)]) -> Vec<u8> {
    let mut d = vec![0u8; DISK];
    put(&mut d, 446 + 4, &[0xEE]);
    put(&mut d, 446 + 8, &1u32.to_le_bytes());
    put(
        &mut d,
        446 + 12,
        &u32::try_from(LBAS - 1).unwrap().to_le_bytes(),
    );
    put(&mut d, 510, &[0x55, 0xAA]);
    let mut array = vec![0u8; 128 * 128];
    for (i, (kind, first, last, name)) in parts.iter().enumerate() {
        let e = &mut array[i * 128..(i + 1) * 128];
        put(e, 0, &kind.to_bytes_le());
        put(e, 16, &[u8::try_from(i + 1).unwrap(); 16]);
        put(e, 32, &first.to_le_bytes());
        put(e, 40, &last.to_le_bytes());
        let utf16: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        put(e, 56, &utf16);
    }
    let array_crc = libdeflater::crc32(&array);
    put(&mut d, PRIMARY_ARRAY, &array);
    put(&mut d, BACKUP_ARRAY, &array);
    put(&mut d, 512, &header(1, LBAS - 1, 2, array_crc));
    put(
        &mut d,
        BACKUP_HEADER,
        &header(LBAS - 1, 1, LBAS - 33, array_crc),
    );
    d
}

fn header(my: u64, alternate: u64, entries_lba: u64, array_crc: u32) -> [u8; 92] {
    let mut h = [0u8; 92];
    put(&mut h, 0, b"EFI PART");
    put(&mut h, 8, &0x0001_0000u32.to_le_bytes());
    put(&mut h, 12, &92u32.to_le_bytes());
    put(&mut h, 24, &my.to_le_bytes());
    put(&mut h, 32, &alternate.to_le_bytes());
    put(&mut h, 40, &34u64.to_le_bytes());
    put(&mut h, 48, &(LBAS - 34).to_le_bytes());
    put(&mut h, 56, &[0x42; 16]);
    put(&mut h, 72, &entries_lba.to_le_bytes());
    put(&mut h, 80, &128u32.to_le_bytes());
    put(&mut h, 84, &128u32.to_le_bytes());
    put(&mut h, 88, &array_crc.to_le_bytes());
    let crc = libdeflater::crc32(&h);
    put(&mut h, 16, &crc.to_le_bytes());
    h
}

/// Writes `bytes` at `field` of the header at `at` and fixes the header CRC.
fn patch_header(d: &mut [u8], at: usize, field: usize, bytes: &[u8]) {
    put(d, at + field, bytes);
    put(d, at + 16, &[0; 4]);
    let crc = libdeflater::crc32(&d[at..at + 92]);
    put(d, at + 16, &crc.to_le_bytes());
}

/// Writes `bytes` at `field` of primary entry `slot` and fixes both CRCs.
fn patch_entry(d: &mut [u8], slot: usize, field: usize, bytes: &[u8]) {
    put(d, PRIMARY_ARRAY + slot * 128 + field, bytes);
    let crc = libdeflater::crc32(&d[PRIMARY_ARRAY..PRIMARY_ARRAY + 128 * 128]);
    patch_header(d, 512, 88, &crc.to_le_bytes());
}

fn two_partitions() -> Vec<u8> {
    gpt_disk(&[
        (GPT_EFI_SYSTEM, 34, 99, "esp"),
        (GPT_LINUX_ROOT_X86_64, 100, LBAS - 34, "root"),
    ])
}

fn table(d: &Vec<u8>) -> Result<Option<PartitionTable>> {
    read(d, d.len() as u64, d.len() as u64)
}

fn error(d: &Vec<u8>) -> String {
    table(d).unwrap_err().to_string()
}

#[test]
fn gpt_partitions_are_read_with_names_and_types() {
    let t = table(&two_partitions()).unwrap().unwrap();
    let root = t.get(2).unwrap();
    assert_eq!(
        (root.start, root.size, root.label.as_str()),
        (100 * 512, (LBAS - 34 - 100 + 1) * 512, "root")
    );
    assert_eq!(root.kind.name(), Some("Linux root (x86-64)"));
}

#[test]
fn gpt_backup_is_checked_on_a_whole_disk() {
    let t = table(&two_partitions()).unwrap().unwrap();
    assert_eq!(t.backup, Some(BackupStatus::Ok));
}

#[test]
fn gpt_read_from_the_head_only_does_not_check_the_backup() {
    let d = two_partitions();
    let t = read(&d, 64 << 10, d.len() as u64).unwrap().unwrap();
    assert_eq!(t.backup, Some(BackupStatus::NotChecked));
}

#[test]
fn gpt_with_a_damaged_backup_is_read_and_says_so() {
    let mut d = two_partitions();
    d[BACKUP_HEADER + 60] ^= 1;
    let t = table(&d).unwrap().unwrap();
    assert!(matches!(t.backup, Some(BackupStatus::Damaged(_))), "{t:?}");
}

#[test]
fn gpt_header_with_a_bad_crc_is_refused_naming_the_intact_backup() {
    let mut d = two_partitions();
    d[512 + 60] ^= 1;
    let e = error(&d);
    assert!(
        e.contains("GPT header at offset 0x200 records CRC-32"),
        "{e}"
    );
    assert!(
        e.contains("backup header at offset 0xffe00 is intact"),
        "{e}"
    );
}

#[test]
fn gpt_array_with_a_bad_crc_is_refused() {
    let mut d = two_partitions();
    d[PRIMARY_ARRAY + 60] ^= 1;
    assert!(
        error(&d).contains("GPT entry array at offset 0x400: its header at 0x200 records CRC-32")
    );
}

#[test]
fn gpt_array_past_the_disk_is_refused() {
    let mut d = two_partitions();
    patch_header(&mut d, 512, 72, &(LBAS - 4).to_le_bytes());
    assert!(error(&d).contains("lies past the end of the 1048576-byte disk"));
}

#[test]
fn gpt_entry_size_not_128_times_a_power_of_two_is_refused() {
    let mut d = two_partitions();
    patch_header(&mut d, 512, 84, &384u32.to_le_bytes());
    assert!(error(&d).contains("entries of 384 bytes"));
}

#[test]
fn gpt_array_over_the_bound_is_refused() {
    let mut d = two_partitions();
    patch_header(&mut d, 512, 80, &100_000u32.to_le_bytes());
    assert!(error(&d).contains("declares 100000 entries"));
}

#[test]
fn gpt_header_size_over_one_block_is_refused() {
    let mut d = two_partitions();
    patch_header(&mut d, 512, 12, &513u32.to_le_bytes());
    // The CRC now covers 513 bytes; the size is refused before the CRC is looked at.
    assert!(error(&d).contains("declares 513 bytes"));
}

#[test]
fn gpt_usable_range_past_the_disk_is_refused() {
    let mut d = two_partitions();
    patch_header(&mut d, 512, 48, &LBAS.to_le_bytes());
    assert!(error(&d).contains("usable LBAs 34..=2048"));
}

#[test]
fn gpt_overlapping_partitions_are_refused() {
    let mut d = two_partitions();
    patch_entry(&mut d, 1, 32, &99u64.to_le_bytes());
    let e = error(&d);
    assert!(e.contains("partitions 1 (entry at offset 0x400, bytes 0x4400..0xc800) and 2 (entry at offset 0x480, bytes 0xc600"), "{e}");
}

#[test]
fn gpt_partition_past_the_disk_is_refused() {
    let mut d = two_partitions();
    patch_entry(&mut d, 1, 40, &(LBAS + 5).to_le_bytes());
    let e = error(&d);
    assert!(
        e.contains("partition 2 (entry at offset 0x480) ends at byte"),
        "{e}"
    );
}

#[test]
fn gpt_partition_outside_the_usable_range_is_refused() {
    let mut d = two_partitions();
    patch_entry(&mut d, 0, 32, &10u64.to_le_bytes());
    assert!(error(&d).contains("outside the usable LBAs 34..=2014"));
}

#[test]
fn gpt_reversed_partition_is_refused() {
    let mut d = two_partitions();
    patch_entry(&mut d, 0, 40, &33u64.to_le_bytes());
    assert!(error(&d).contains("spans LBAs 34..=33"));
}

#[test]
fn gpt_array_beyond_the_head_of_a_non_raw_image_is_refused() {
    let mut d = two_partitions();
    patch_header(&mut d, 512, 72, &1000u64.to_le_bytes());
    let e = read(&d, 64 << 10, d.len() as u64).unwrap_err().to_string();
    assert!(e.contains("past the first 65536 bytes"), "{e}");
}

#[test]
fn gpt_with_4096_byte_blocks_is_detected() {
    let mut d = vec![0u8; 8 << 20];
    let sector = two_partitions();
    put(&mut d, 0, &sector[..512]);
    let mut h = [0u8; 92];
    h.copy_from_slice(&sector[512..604]);
    put(&mut d, 4096, &h);
    put(
        &mut d,
        2 * 4096,
        &sector[PRIMARY_ARRAY..PRIMARY_ARRAY + 128 * 128],
    );
    let t = table(&d).unwrap().unwrap();
    assert_eq!((t.sector_size, t.get(2).unwrap().start), (4096, 100 * 4096));
}

#[test]
fn protective_mbr_without_a_gpt_is_refused() {
    let mut d = two_partitions();
    d[512] = b'X';
    assert!(error(&d).contains("protective MBR"));
}

/// An MBR disk; `parts` are (type, first LBA, sectors).
fn mbr_disk(parts: &[(u8, u32, u32)]) -> Vec<u8> {
    let mut d = vec![0u8; DISK];
    for (slot, (kind, first, sectors)) in parts.iter().enumerate() {
        let at = 446 + slot * 16;
        put(&mut d, at + 4, &[*kind]);
        put(&mut d, at + 8, &first.to_le_bytes());
        put(&mut d, at + 12, &sectors.to_le_bytes());
    }
    put(&mut d, 510, &[0x55, 0xAA]);
    d
}

/// An EBR at `lba` with a logical partition (relative) and a link (relative to `ext`).
fn ebr(d: &mut [u8], lba: u32, logical: (u32, u32), next: Option<(u32, u32)>) {
    let at = lba as usize * 512;
    put(d, at + 446 + 4, &[0x83]);
    put(d, at + 446 + 8, &logical.0.to_le_bytes());
    put(d, at + 446 + 12, &logical.1.to_le_bytes());
    if let Some((rel, sectors)) = next {
        put(d, at + 462 + 4, &[0x05]);
        put(d, at + 462 + 8, &rel.to_le_bytes());
        put(d, at + 462 + 12, &sectors.to_le_bytes());
    }
    put(d, at + 510, &[0x55, 0xAA]);
}

fn extended_disk() -> Vec<u8> {
    let mut d = mbr_disk(&[(0x83, 64, 100), (0x05, 200, 1000)]);
    ebr(&mut d, 200, (8, 100), Some((300, 200)));
    ebr(&mut d, 500, (8, 50), None);
    d
}

#[test]
fn mbr_primary_partitions_are_numbered_by_slot() {
    let d = mbr_disk(&[(0x83, 64, 100), (0, 0, 0), (0x82, 200, 10)]);
    let t = table(&d).unwrap().unwrap();
    let found: Vec<(u32, u64)> = t.partitions.iter().map(|p| (p.index, p.start)).collect();
    assert_eq!(found, [(1, 64 * 512), (3, 200 * 512)]);
}

#[test]
fn mbr_logical_partitions_follow_the_ebr_chain_from_5() {
    let t = table(&extended_disk()).unwrap().unwrap();
    let found: Vec<(u32, u64)> = t.partitions.iter().map(|p| (p.index, p.start)).collect();
    assert_eq!(
        found,
        [
            (1, 64 * 512),
            (2, 200 * 512),
            (5, 208 * 512),
            (6, 508 * 512)
        ]
    );
}

#[test]
fn mbr_ebr_chain_that_loops_is_refused() {
    let mut d = extended_disk();
    ebr(&mut d, 500, (8, 50), Some((0, 200)));
    assert!(error(&d).contains("links to offset 0x19000, not forward"));
}

#[test]
fn mbr_logical_partition_outside_its_extended_partition_is_refused() {
    let mut d = extended_disk();
    ebr(&mut d, 500, (8, 900), None);
    assert!(error(&d).contains("outside its extended partition"));
}

#[test]
fn mbr_overlapping_primaries_are_refused() {
    let d = mbr_disk(&[(0x83, 64, 100), (0x83, 100, 10)]);
    let e = error(&d);
    assert!(e.contains("partitions 1 (entry at offset 0x1be, bytes 0x8000..0x14800) and 2 (entry at offset 0x1ce, bytes 0xc800"), "{e}");
}

#[test]
fn mbr_partition_past_the_disk_is_refused() {
    let d = mbr_disk(&[(0x83, 64, 4000)]);
    assert!(error(&d).contains("past the end of the 1048576-byte disk"));
}

#[test]
fn boot_sector_with_invalid_status_bytes_is_no_table() {
    let mut d = mbr_disk(&[(0x83, 64, 100)]);
    d[446] = 0x12;
    assert!(table(&d).unwrap().is_none());
}

#[test]
fn disk_without_signature_is_no_table() {
    assert!(table(&vec![0u8; DISK]).unwrap().is_none());
}

#[test]
fn linux_root_prefers_the_root_type() {
    let d = gpt_disk(&[
        (GPT_LINUX_FILESYSTEM, 34, 99, "data"),
        (GPT_LINUX_ROOT_X86_64, 100, 199, "root"),
    ]);
    let t = table(&d).unwrap().unwrap();
    assert_eq!(t.linux_root().unwrap().index, 2);
}

#[test]
fn linux_root_refuses_two_candidates_listing_them() {
    let d = gpt_disk(&[
        (GPT_LINUX_FILESYSTEM, 34, 99, "a"),
        (GPT_LINUX_FILESYSTEM, 100, 199, "b"),
    ]);
    let t = table(&d).unwrap().unwrap();
    let e = t.linux_root().unwrap_err().to_string();
    assert!(
        e.contains("1 (Linux filesystem \"a\"), 2 (Linux filesystem \"b\")"),
        "{e}"
    );
}

#[test]
fn missing_partition_number_lists_the_existing_ones() {
    let t = table(&two_partitions()).unwrap().unwrap();
    let e = t.get(7).unwrap_err().to_string();
    assert!(
        e.contains("no partition 7; the table has 1 (EFI System"),
        "{e}"
    );
}
