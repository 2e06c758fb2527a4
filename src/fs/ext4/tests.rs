//! Superblock rules, each broken alone on a minimal superblock built here; the file
//! system as a whole is judged against debugfs and e2fsck in tests/partitions.rs.

use super::csum::crc32c;
use super::superblock::Superblock;
use super::*;

/// A 4 MiB file system: 1024 blocks of 4 KiB, one group, 128 inodes of 256 bytes.
fn superblock() -> [u8; 1024] {
    let mut b = [0u8; 1024];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(0x00, &128u32.to_le_bytes()); // s_inodes_count
    put(0x04, &1024u32.to_le_bytes()); // s_blocks_count_lo
    put(0x18, &2u32.to_le_bytes()); // s_log_block_size: 4 KiB
    put(0x20, &32768u32.to_le_bytes()); // s_blocks_per_group
    put(0x28, &128u32.to_le_bytes()); // s_inodes_per_group
    put(0x38, &0xEF53u16.to_le_bytes()); // s_magic
    put(0x4C, &1u32.to_le_bytes()); // s_rev_level: dynamic
    put(0x58, &256u16.to_le_bytes()); // s_inode_size
    put(0x60, &0x42u32.to_le_bytes()); // s_feature_incompat: filetype, extent
    b
}

fn set(b: &mut [u8; 1024], at: usize, bytes: &[u8]) {
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

fn parse(b: &[u8; 1024]) -> Result<Superblock, Ext4Error> {
    Superblock::parse(b, 4 << 20)
}

fn error(b: &[u8; 1024]) -> String {
    parse(b).unwrap_err().to_string()
}

#[test]
fn minimal_superblock_is_read() {
    let sb = parse(&superblock()).unwrap();
    assert_eq!(
        (sb.block_size, sb.group_count, sb.inode_size),
        (4096, 1, 256)
    );
}

#[test]
fn missing_magic_is_not_ext4() {
    let mut b = superblock();
    set(&mut b, 0x38, &[0, 0]);
    assert!(matches!(parse(&b), Err(Ext4Error::NotExt4)));
}

#[test]
fn block_size_over_64_kib_is_refused() {
    let mut b = superblock();
    set(&mut b, 0x18, &7u32.to_le_bytes());
    assert!(error(&b).contains("s_log_block_size is 7"));
}

#[test]
fn inode_size_over_the_block_size_is_refused() {
    let mut b = superblock();
    set(&mut b, 0x58, &8192u16.to_le_bytes());
    assert!(error(&b).contains("s_inode_size is 8192"));
}

#[test]
fn inode_size_not_a_power_of_two_is_refused() {
    let mut b = superblock();
    set(&mut b, 0x58, &384u16.to_le_bytes());
    assert!(error(&b).contains("s_inode_size is 384"));
}

#[test]
fn revision_0_inodes_are_128_bytes_whatever_the_field_says() {
    let mut b = superblock();
    set(&mut b, 0x4C, &0u32.to_le_bytes());
    assert_eq!(parse(&b).unwrap().inode_size, 128);
}

#[test]
fn file_system_larger_than_its_source_is_refused() {
    let mut b = superblock();
    set(&mut b, 0x04, &1025u32.to_le_bytes());
    assert!(error(&b).contains("declares 1025 blocks of 4096 bytes"));
}

#[test]
fn needs_recovery_is_refused_by_name() {
    let mut b = superblock();
    set(&mut b, 0x60, &0x46u32.to_le_bytes());
    assert!(error(&b).contains("needs_recovery"));
}

#[test]
fn unknown_incompatible_feature_is_refused() {
    let mut b = superblock();
    set(&mut b, 0x60, &0x8000_0042u32.to_le_bytes());
    assert!(error(&b).contains("unknown incompatible features 0x80000000"));
}

#[test]
fn inode_count_beyond_the_groups_is_refused() {
    let mut b = superblock();
    set(&mut b, 0x00, &129u32.to_le_bytes());
    assert!(error(&b).contains("s_inodes_count is 129"));
}

#[test]
fn zero_blocks_per_group_is_refused() {
    let mut b = superblock();
    set(&mut b, 0x20, &0u32.to_le_bytes());
    assert!(error(&b).contains("s_blocks_per_group is 0"));
}

/// The superblock with metadata_csum and its checksum computed as the kernel does.
fn with_csum() -> [u8; 1024] {
    let mut b = superblock();
    set(&mut b, 0x64, &0x400u32.to_le_bytes()); // s_feature_ro_compat: metadata_csum
    set(&mut b, 0x175, &[1]); // s_checksum_type: crc32c
    let crc = crc32c(!0, &b[..0x3FC]);
    set(&mut b, 0x3FC, &crc.to_le_bytes());
    b
}

#[test]
fn metadata_csum_superblock_with_its_checksum_is_read() {
    let sb = parse(&with_csum()).unwrap();
    assert_eq!(sb.csum_seed, Some(crc32c(!0, &[0; 16])));
}

#[test]
fn metadata_csum_superblock_with_a_bad_checksum_is_refused() {
    let mut b = with_csum();
    b[0x78] ^= 1;
    assert!(error(&b).contains("superblock at offset 0x400 has checksum"));
}

#[test]
fn sparse_super_backups_are_in_groups_0_1_and_powers_of_3_5_7() {
    let mut b = superblock();
    set(&mut b, 0x64, &1u32.to_le_bytes()); // s_feature_ro_compat: sparse_super
    let sb = parse(&b).unwrap();
    let with: Vec<u32> = (0..60).filter(|&g| sb.group_has_super(g)).collect();
    assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49]);
}

#[test]
fn permissions_show_set_id_and_sticky_bits_as_ls_does() {
    let inode = |mode: u16| Inode {
        ino: 12,
        offset: 0,
        mode,
        uid: 0,
        gid: 0,
        size: 0,
        links: 1,
        mtime: 0,
        flags: 0,
        block: [0; 60],
        csum_seed: None,
    };
    assert_eq!(inode(0o104_755).permissions(), "rwsr-xr-x");
    assert_eq!(inode(0o041_777).permissions(), "rwxrwxrwt");
    assert_eq!(inode(0o102_644).permissions(), "rw-r-Sr--");
}
