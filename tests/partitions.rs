//! Partition tables and ext2/3/4 inside images, judged by sfdisk, sgdisk, dd, debugfs and
//! e2fsck: `kiln info` lists what `sfdisk --json` reports, `kiln convert --partition N`
//! equals `dd` of the range (and e2fsck accepts it), `kiln cat` equals `debugfs -R cat`,
//! `kiln ls` lists the names `debugfs -R 'ls -l'` lists. Hostile tables and file systems
//! are refused with one line naming the file and the offset, and nothing is written.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Dir, Rng, describe};

/// The partition that holds the file system: 58 MiB from sector 10240.
const ROOT_START: u64 = 10240;
const ROOT_SECTORS: u64 = 118_784;
/// The test disks are 64 MiB.
const DISK_BYTES: u64 = 64 << 20;

/// Fails with the install command (`bash tests/setup.sh`) unless `tool` is on PATH.
fn need(tool: &str) {
    crate::util::require_tool(tool);
}

/// `tool ARGS` must succeed; its stdout, bytes.
fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    need(tool);
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(out.status.success(), "{tool} {args:?}:\n{}", describe(&out));
    out.stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The tree every file system is made from.
fn tree(root: &Path) {
    let write = |name: &str, len: usize, seed: u64| {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut data = vec![0u8; len];
        Rng::new(seed).fill(&mut data);
        std::fs::write(p, data).unwrap();
    };
    write("boot/vmlinuz-6.1.0-test", 3_000_000, 1);
    write("boot/initrd.img-6.1.0-test", 1_500_000, 2);
    write("etc/deep/er/nested.txt", 5000, 3);
    std::fs::write(root.join("etc/hostname"), "kiln-test\n").unwrap();
    for i in 0..2000 {
        let p = root.join(format!("big/entry-{i:04}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{i}\n")).unwrap();
    }
    // Data past 64 MiB of holes: the triple indirect block of a 1 KiB-block ext2.
    let sparse = std::fs::File::create(root.join("sparse.bin")).unwrap();
    sparse.set_len(70 << 20).unwrap();
    sparse
        .write_all_at(b"the end of a sparse file", (70 << 20) - 24)
        .unwrap();
    let link =
        |target: &str, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
    link("vmlinuz-6.1.0-test", "boot/vmlinuz");
    link("initrd.img-6.1.0-test", "boot/initrd.img");
    // Over 60 bytes: stored in a block ("slow"), absolute, and resolved inside the image.
    let long = "etc/deep/er/a-directory-with-a-rather-long-name-for-a-slow-link";
    std::fs::create_dir_all(root.join(long)).unwrap();
    link(&format!("/{long}/../../er/./nested.txt"), "slow");
    link("loop-b", "loop-a");
    link("loop-a", "loop-b");
}

/// A file system image of the partition's size made by `mke2fs` from the tree.
fn mkfs(d: &Dir, name: &str, args: &[&str]) -> PathBuf {
    let src = d.path("tree");
    if !src.exists() {
        tree(&src);
    }
    let img = d.path(name);
    let size = format!("{}k", ROOT_SECTORS / 2);
    let mut all = vec!["-q", "-F", "-E", "root_owner=0:0", "-d", s(&src)];
    all.extend_from_slice(args);
    all.extend_from_slice(&[s(&img), &size]);
    run("mke2fs", &all);
    img
}

/// A 64 MiB disk with a 4 MiB first partition and `fs` in partition 2, partitioned by
/// sfdisk with `label` (gpt or dos).
fn disk_with(d: &Dir, name: &str, label: &str, fs: &Path) -> PathBuf {
    let disk = d.path(name);
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(DISK_BYTES)
        .unwrap();
    let (esp, root) = if label == "gpt" {
        (
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        )
    } else {
        ("ef", "83")
    };
    let script = format!(
        "label: {label}\nstart=2048, size=8192, type={esp}\nstart={ROOT_START}, size={ROOT_SECTORS}, type={root}\n"
    );
    sfdisk(&disk, &script);
    copy_into(&disk, fs, ROOT_START * 512);
    disk
}

fn sfdisk(disk: &Path, script: &str) {
    need("sfdisk");
    let mut child = Command::new("sfdisk")
        .args(["-q", s(disk)])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk {script}");
}

fn copy_into(disk: &Path, fs: &Path, offset: u64) {
    let data = std::fs::read(fs).unwrap();
    let f = OpenOptions::new().write(true).open(disk).unwrap();
    f.write_all_at(&data, offset).unwrap();
}

/// `dd` of partition 2: the oracle's copy of the file system.
fn dd_root(d: &Dir, disk: &Path) -> PathBuf {
    let out = d.path("root.dd");
    run(
        "dd",
        &[
            &format!("if={}", s(disk)),
            &format!("of={}", s(&out)),
            "bs=512",
            &format!("skip={ROOT_START}"),
            &format!("count={ROOT_SECTORS}"),
            "status=none",
        ],
    );
    out
}

/// `debugfs -R CMD IMAGE`'s stdout.
fn debugfs(image: &Path, cmd: &str) -> Vec<u8> {
    run("debugfs", &["-R", cmd, s(image)])
}

/// Name to size, from `debugfs -R 'ls -l DIR'` ("." and ".." left out).
fn debugfs_ls(image: &Path, dir: &str) -> BTreeMap<String, String> {
    let text = String::from_utf8(debugfs(image, &format!("ls -l {dir}"))).unwrap();
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|t| t.len() >= 9 && t[8] != "." && t[8] != "..")
        .map(|t| (t[8..].join(" "), t[5].to_string()))
        .collect()
}

/// Name to size, from `kiln ls`.
fn kiln_ls(d: &Dir, image: &str, dir: &str) -> BTreeMap<String, String> {
    let text = d.kiln_ok(&["ls", image, dir]);
    text.lines()
        .map(|l| {
            let t: Vec<&str> = l.split(" -> ").next().unwrap().split_whitespace().collect();
            (t[7..].join(" "), t[4].to_string())
        })
        .collect()
}

/// Every check of one file system variant in partition 2 of a `label` disk.
fn check_variant(label: &str, mkfs_args: &[&str]) {
    let d = Dir::new();
    let fs = mkfs(&d, "root.fs", mkfs_args);
    let disk = disk_with(&d, "disk.img", label, &fs);
    let oracle = dd_root(&d, &disk);
    d.kiln_ok(&["convert", "--partition", "2", "disk.img", "root.raw"]);
    run("cmp", &[s(&d.path("root.raw")), s(&oracle)]);
    run("e2fsck", &["-fn", s(&d.path("root.raw"))]);
    let files = [
        ("/boot/vmlinuz", "/boot/vmlinuz-6.1.0-test"),
        ("/boot/initrd.img", "/boot/initrd.img-6.1.0-test"),
        ("/slow", "/etc/deep/er/nested.txt"),
        ("/etc/hostname", "/etc/hostname"),
        ("/sparse.bin", "/sparse.bin"),
    ];
    for (path, resolved) in files {
        let out = d.kiln(&["cat", "disk.img:2", path]);
        assert!(out.status.success(), "kiln cat {path}: {}", describe(&out));
        let expected = debugfs(&oracle, &format!("cat {resolved}"));
        assert!(
            out.stdout == expected,
            "kiln cat {path} differs from debugfs cat {resolved}"
        );
    }
    for dir in ["/", "/boot", "/big", "/etc/deep/er"] {
        assert_eq!(
            kiln_ls(&d, "disk.img:2", dir),
            debugfs_ls(&oracle, dir),
            "ls {dir}"
        );
    }
    assert_eq!(kiln_ls(&d, "disk.img:2", "/big").len(), 2000);
    check_info_against_sfdisk(&d, "disk.img");
}

/// `kiln info --output json` lists what `sfdisk --json` lists.
fn check_info_against_sfdisk(d: &Dir, disk: &str) {
    let ours: serde_json::Value =
        serde_json::from_str(&d.kiln_ok(&["info", "--output", "json", disk])).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&run("sfdisk", &["--json", s(&d.path(disk))])).unwrap();
    let theirs = &theirs["partitiontable"];
    let ours = &ours["partition-table"];
    let scheme = if theirs["label"] == "dos" {
        "mbr"
    } else {
        "gpt"
    };
    assert_eq!(ours["scheme"], scheme);
    assert_eq!(ours["sector-size"], theirs["sectorsize"]);
    let node_prefix = s(&d.path(disk)).to_string();
    let expected: Vec<serde_json::Value> = (theirs["partitions"].as_array().unwrap().iter())
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let index: u32 = node.trim_start_matches(&node_prefix).parse().unwrap();
            serde_json::json!({
                "index": index,
                "start": p["start"],
                "size": p["size"],
                "type": p["type"].as_str().unwrap().to_uppercase(),
                "name": p.get("name").cloned().unwrap_or(serde_json::json!("")),
            })
        })
        .collect();
    let found: Vec<serde_json::Value> = (ours["partitions"].as_array().unwrap().iter())
        .map(|p| {
            serde_json::json!({
                "index": p["index"],
                "start": p["start-sector"],
                "size": p["sectors"],
                "type": p["type"].as_str().unwrap().to_uppercase(),
                "name": p["label"],
            })
        })
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn gpt_ext4_with_metadata_csum_matches_the_oracles() {
    check_variant("gpt", &["-t", "ext4", "-b", "4096"]);
}

#[test]
fn mbr_ext4_without_metadata_csum_matches_the_oracles() {
    check_variant("dos", &["-t", "ext4", "-O", "^metadata_csum"]);
}

#[test]
fn ext4_without_64bit_matches_the_oracles() {
    check_variant("gpt", &["-t", "ext4", "-O", "^64bit"]);
}

#[test]
fn ext4_with_block_pointers_instead_of_extents_matches_the_oracles() {
    check_variant("gpt", &["-t", "ext4", "-O", "^extent,^64bit", "-b", "1024"]);
}

#[test]
fn ext2_with_triple_indirect_blocks_matches_the_oracles() {
    check_variant("dos", &["-t", "ext2", "-b", "1024"]);
}

#[test]
fn ext3_matches_the_oracles() {
    check_variant("gpt", &["-t", "ext3", "-b", "2048"]);
}

#[test]
fn qcow2_partition_converts_to_the_bytes_dd_cuts_from_the_raw_disk() {
    let d = Dir::new();
    let fs = mkfs(&d, "root.fs", &["-t", "ext4"]);
    let disk = disk_with(&d, "disk.img", "gpt", &fs);
    let oracle = dd_root(&d, &disk);
    run(
        "qemu-img",
        &["convert", "-O", "qcow2", s(&disk), s(&d.path("disk.qcow2"))],
    );
    d.kiln_ok(&["convert", "--partition", "2", "disk.qcow2", "root.raw"]);
    run("cmp", &[s(&d.path("root.raw")), s(&oracle)]);
    let out = d.kiln(&["cat", "disk.qcow2", "/boot/vmlinuz"]);
    let expected = debugfs(&oracle, "cat /boot/vmlinuz-6.1.0-test");
    assert!(
        out.status.success() && out.stdout == expected,
        "{}",
        describe(&out)
    );
    let info = d.kiln_ok(&["info", "disk.qcow2"]);
    assert!(info.contains("backup gpt header: not checked"), "{info}");
}

#[test]
fn partition_of_the_disk_inside_an_ova_is_read_in_place() {
    let d = Dir::new();
    let fs = mkfs(&d, "root.fs", &["-t", "ext4"]);
    let disk = disk_with(&d, "disk.img", "gpt", &fs);
    let oracle = dd_root(&d, &disk);
    let vmdk = d.path("disk.vmdk");
    run(
        "qemu-img",
        &[
            "convert",
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized",
            s(&disk),
            s(&vmdk),
        ],
    );
    std::fs::write(d.path("p.ovf"), "<Envelope/>").unwrap();
    need("tar");
    let out = Command::new("tar")
        .args(["cf", "p.ova", "p.ovf", "disk.vmdk"])
        .current_dir(d.tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    d.kiln_ok(&["convert", "--partition", "2", "p.ova", "root.raw"]);
    run("cmp", &[s(&d.path("root.raw")), s(&oracle)]);
    let out = d.kiln(&["cat", "p.ova:2", "/etc/hostname"]);
    assert!(
        out.status.success() && out.stdout == b"kiln-test\n",
        "{}",
        describe(&out)
    );
    let info = d.kiln_ok(&["info", "p.ova"]);
    assert!(info.contains("Linux root (x86-64)"), "{info}");
}

#[test]
fn cat_to_a_file_writes_it_whole() {
    let d = Dir::new();
    let fs = mkfs(&d, "root.fs", &["-t", "ext4"]);
    disk_with(&d, "disk.img", "gpt", &fs);
    d.kiln_ok(&["cat", "-o", "initrd", "disk.img", "/boot/initrd.img"]);
    let expected = debugfs(&fs, "cat /boot/initrd.img-6.1.0-test");
    assert!(std::fs::read(d.path("initrd")).unwrap() == expected);
}

#[test]
fn mbr_logical_partitions_are_listed_as_sfdisk_lists_them() {
    let d = Dir::new();
    let disk = d.path("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(DISK_BYTES)
        .unwrap();
    sfdisk(
        &disk,
        "label: dos\nstart=2048, size=8192, type=83\nstart=10240, size=100000, type=5\nstart=12288, size=20000, type=83\nstart=34816, size=30000, type=82\n",
    );
    check_info_against_sfdisk(&d, "disk.img");
    let info = d.kiln_ok(&["info", "disk.img"]);
    assert!(info.contains("Linux swap"), "{info}");
}

#[test]
fn gpt_with_4096_byte_sectors_is_read_as_fdisk_reads_it() {
    let d = Dir::new();
    let disk = d.path("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(DISK_BYTES)
        .unwrap();
    need("fdisk");
    let mut child = Command::new("fdisk")
        .args(["-b", "4096", s(&disk)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    let script = b"g\nn\n1\n256\n+1023\nt\n1\nw\n";
    child.stdin.take().unwrap().write_all(script).unwrap();
    assert!(child.wait().unwrap().success());
    let listing = String::from_utf8(run("fdisk", &["-b", "4096", "-l", s(&disk)])).unwrap();
    let row: Vec<&str> = (listing.lines())
        .find(|l| l.starts_with(&format!("{}1 ", s(&disk))))
        .unwrap()
        .split_whitespace()
        .collect();
    let v: serde_json::Value =
        serde_json::from_str(&d.kiln_ok(&["info", "--output", "json", "disk.img"])).unwrap();
    let p = &v["partition-table"]["partitions"][0];
    assert_eq!(v["partition-table"]["sector-size"], 4096);
    assert_eq!(p["start-sector"].to_string(), row[1]);
    assert_eq!(p["sectors"].to_string(), row[3]);
    assert_eq!(p["type-name"], row[5..].join(" "));
}

// ---- hostile input ----

/// A 64 MiB GPT disk made by sgdisk: ESP at 2048 (4 MiB), Linux root after it to the end.
fn sgdisk_disk(d: &Dir) -> PathBuf {
    let disk = d.path("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(DISK_BYTES)
        .unwrap();
    run(
        "sgdisk",
        &[
            "-n",
            "1:2048:+4M",
            "-t",
            "1:ef00",
            "-c",
            "1:esp",
            "-n",
            "2:0:0",
            "-t",
            "2:8304",
            "-c",
            "2:root",
            s(&disk),
        ],
    );
    disk
}

/// Inverts the bits of the byte at `offset`.
fn flip(path: &Path, offset: u64) {
    let byte = read_at(path, offset, 1)[0];
    patch(path, offset, &[!byte]);
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

/// Recomputes the entry array CRC and then the primary header CRC (CRC-32 as zlib).
fn fix_gpt_crcs(disk: &Path) {
    // sgdisk puts the 128 entries of 128 bytes at LBA 2 (whatever a patch says now).
    let array = read_at(disk, 1024, 128 * 128);
    patch(disk, 512 + 88, &libdeflater::crc32(&array).to_le_bytes());
    let mut header = read_at(disk, 512, 92);
    header[16..20].fill(0);
    patch(disk, 512 + 16, &libdeflater::crc32(&header).to_le_bytes());
}

/// Every command that reads the table fails with one line naming the image and an offset
/// (containing `expected`), and `convert` leaves nothing behind.
fn assert_refused(d: &Dir, expected: &str) {
    for args in [
        &["info", "disk.img"][..],
        &["ls", "disk.img:2", "/"],
        &["convert", "--partition", "2", "disk.img", "out.raw"],
    ] {
        let out = d.kiln(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "kiln {args:?}: {}",
            describe(&out)
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("disk.img: ") && err.contains("offset 0x"),
            "{err}"
        );
        assert!(
            err.contains(expected),
            "kiln {args:?}: expected `{expected}` in {err}"
        );
    }
    assert_eq!(d.files(), ["disk.img"], "nothing is written");
}

#[test]
fn gpt_with_a_bad_header_crc_is_refused() {
    let d = Dir::new();
    let disk = sgdisk_disk(&d);
    flip(&disk, 512 + 56);
    assert_refused(&d, "GPT header at offset 0x200 records CRC-32");
}

#[test]
fn gpt_with_a_bad_entry_array_crc_is_refused() {
    let d = Dir::new();
    let disk = sgdisk_disk(&d);
    flip(&disk, 1024 + 56);
    assert_refused(
        &d,
        "GPT entry array at offset 0x400: its header at 0x200 records CRC-32",
    );
}

#[test]
fn gpt_with_entries_past_the_disk_is_refused() {
    let d = Dir::new();
    let disk = sgdisk_disk(&d);
    patch(&disk, 512 + 72, &(DISK_BYTES / 512 - 8).to_le_bytes());
    fix_gpt_crcs(&disk);
    assert_refused(&d, "lies past the end of the 67108864-byte disk");
}

#[test]
fn gpt_with_overlapping_partitions_is_refused() {
    let d = Dir::new();
    let disk = sgdisk_disk(&d);
    patch(&disk, 1024 + 128 + 32, &4000u64.to_le_bytes());
    fix_gpt_crcs(&disk);
    assert_refused(&d, "overlap");
}

#[test]
fn gpt_with_a_partition_past_the_end_is_refused() {
    let d = Dir::new();
    let disk = sgdisk_disk(&d);
    patch(
        &disk,
        1024 + 128 + 40,
        &(DISK_BYTES / 512 + 100).to_le_bytes(),
    );
    fix_gpt_crcs(&disk);
    assert_refused(&d, "past the end of the 67108864-byte disk");
}

/// An ext4 image (no partition table) with metadata checksums off unless asked, so one
/// patched field is the only fault.
fn bare_fs(d: &Dir, csum: bool) -> PathBuf {
    let feature = if csum {
        "metadata_csum"
    } else {
        "^metadata_csum"
    };
    mkfs(d, "fs.img", &["-t", "ext4", "-b", "4096", "-O", feature])
}

/// `(block, offset)` of an inode, from `debugfs -R 'imap PATH'`.
fn imap(fs: &Path, path: &str) -> u64 {
    let text = String::from_utf8(debugfs(fs, &format!("imap {path}"))).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("located at block"))
        .unwrap();
    let block: u64 = line
        .split("block ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let offset = u64::from_str_radix(line.split("offset 0x").nth(1).unwrap().trim(), 16).unwrap();
    block * 4096 + offset
}

fn bmap(fs: &Path, path: &str) -> u64 {
    let text = String::from_utf8(debugfs(fs, &format!("bmap {path} 0"))).unwrap();
    text.trim().parse().unwrap()
}

/// `kiln ARGS` fails with one line naming fs.img and containing `expected`.
fn assert_fs_refused(d: &Dir, args: &[&str], expected: &str) {
    let out = d.kiln(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "kiln {args:?}: {}",
        describe(&out)
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("fs.img: ") && err.contains("offset 0x") && err.contains(expected),
        "expected `{expected}` and an offset in {err}"
    );
    assert!(out.stdout.is_empty(), "nothing written to stdout");
}

#[test]
fn ext4_extent_tree_loop_is_refused() {
    let d = Dir::new();
    let fs = bare_fs(&d, false);
    let inode = imap(&fs, "/boot/initrd.img-6.1.0-test");
    let block = bmap(&fs, "/boot/initrd.img-6.1.0-test");
    // The root becomes an index (depth 1) pointing at the file's first block, and that
    // block an index node of depth 1 pointing at itself.
    let mut node = vec![0u8; 24];
    node[..12].copy_from_slice(&[0x0A, 0xF3, 1, 0, 4, 0, 1, 0, 0, 0, 0, 0]);
    node[16..20].copy_from_slice(&u32::try_from(block).unwrap().to_le_bytes());
    patch(&fs, inode + 0x28, &node);
    let mut child = node.clone();
    child[4..6].copy_from_slice(&340u16.to_le_bytes());
    patch(&fs, block * 4096, &child);
    assert_fs_refused(
        &d,
        &["cat", "fs.img", "/boot/initrd.img"],
        "extent node of inode",
    );
    let out = d.kiln(&["cat", "fs.img", "/boot/initrd.img"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("a loop in the tree"));
}

#[test]
fn ext4_directory_entry_past_its_block_is_refused() {
    let d = Dir::new();
    let fs = bare_fs(&d, false);
    let block = bmap(&fs, "/etc");
    patch(&fs, block * 4096 + 4, &8192u16.to_le_bytes());
    assert_fs_refused(
        &d,
        &["ls", "fs.img", "/etc"],
        &format!("at offset {:#x} (rec_len 8192", block * 4096),
    );
}

#[test]
fn ext4_symlink_loop_is_refused() {
    let d = Dir::new();
    bare_fs(&d, true);
    assert_fs_refused(
        &d,
        &["cat", "fs.img", "/loop-a"],
        "/loop-a: more than 40 symbolic links",
    );
}

#[test]
fn ext4_huge_inode_size_is_refused() {
    let d = Dir::new();
    let fs = bare_fs(&d, false);
    patch(&fs, 1024 + 0x58, &8192u16.to_le_bytes());
    assert_fs_refused(
        &d,
        &["ls", "fs.img", "/"],
        "superblock at offset 0x400: s_inode_size is 8192",
    );
}

#[test]
fn ext4_group_descriptor_with_a_bad_checksum_is_refused() {
    let d = Dir::new();
    let fs = bare_fs(&d, true);
    flip(&fs, 4096 + 0x0C);
    assert_fs_refused(
        &d,
        &["ls", "fs.img", "/"],
        "group descriptor 0 at offset 0x1000 has checksum",
    );
}

#[test]
fn cat_into_a_closed_pipe_ends_quietly() {
    // `kiln cat ... | head -c 10`: the reader goes away after 10 bytes of a 200 kB file;
    // kiln must exit 0 without printing an error (the broken pipe is not a failure).
    let d = Dir::new();
    crate::util::ext4_raw(&d.path("fs.raw"), 16);
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; '{kiln}' cat fs.raw /deep/er/d.bin | head -c 10 > /dev/null"
            ),
        ])
        .current_dir(d.tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(out.stderr.is_empty(), "{}", describe(&out));
}
