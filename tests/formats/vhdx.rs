//! vhdx: kiln writes dynamic and fixed VHDX that every oracle accepts, reads what qemu-img
//! writes, and refuses broken or unsafe images with a one-line error naming file and offset.

use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::util::*;

const SUBFORMATS: [&str; 2] = ["dynamic", "fixed"];
const MIB: u64 = 1 << 20;

/// kiln converts `src` to each subformat; the oracle judges each result.
fn convert_and_check(d: &Dir, src: &str, extra_opts: &str) {
    for sub in SUBFORMATS {
        let out = format!("{sub}.vhdx");
        let opts = format!("subformat={sub}{extra_opts}");
        d.kiln_ok(&["convert", "-O", "vhdx", "-o", &opts, src, &out]);
        check_image("vhdx", Some(sub), &d.path(&out), Some(&d.path(src)), &[]);
    }
}

#[test]
fn sparse_random_map_passes_the_oracle() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 64 * MIB, 40, 11);
    convert_and_check(&d, "src.raw", "");
}

#[test]
fn zero_disk_passes_the_oracle_and_stores_no_block() {
    let d = Dir::new();
    std::fs::File::create(d.path("src.raw"))
        .unwrap()
        .set_len(48 * MIB)
        .unwrap();
    convert_and_check(&d, "src.raw", "");
    // Header area, log, metadata and one BAT MiB: no payload block.
    assert_eq!(
        std::fs::metadata(d.path("dynamic.vhdx")).unwrap().len(),
        4 * MIB
    );
}

#[test]
fn random_data_passes_the_oracle() {
    let d = Dir::new();
    random_raw(&d.path("src.raw"), 12 * MIB + 3 * 4096, 12);
    convert_and_check(&d, "src.raw", "");
}

#[test]
fn size_not_a_multiple_of_4k_passes_every_other_oracle() {
    let d = Dir::new();
    let src = random_raw(&d.path("src.raw"), 5 * MIB + 3 * 512, 18);
    // 7-Zip 26.02 refuses any VHDX whose virtual size is not a multiple of 4 KiB, qemu-img's
    // own output included; qemu, libvhdi and format_inspector read it.
    for sub in SUBFORMATS {
        let out = format!("{sub}.vhdx");
        d.kiln_ok(&[
            "convert",
            "-O",
            "vhdx",
            "-o",
            &format!("subformat={sub}"),
            "src.raw",
            &out,
        ]);
        check_image(
            "vhdx",
            Some(sub),
            &d.path(&out),
            Some(&src),
            &["--skip", "7z-test,7z-compare"],
        );
    }
}

#[test]
fn small_ext4_passes_the_oracle() {
    let d = Dir::new();
    ext4_raw(&d.path("src.raw"), 40);
    convert_and_check(&d, "src.raw", "");
}

#[test]
fn small_blocks_bigger_log_and_zero_state_pass_the_oracle() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 2100 * MIB, 30, 13);
    convert_and_check(
        &d,
        "src.raw",
        ",block_size=1M,log_size=2M,block_state_zero=on",
    );
}

#[test]
fn qemu_made_images_read_back_identical() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 64 * MIB, 30, 14);
    for sub in SUBFORMATS {
        let img = d.path(&format!("q-{sub}.vhdx"));
        let opts = format!("subformat={sub}");
        run_ok(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "vhdx",
                "-o",
                &opts,
                src.to_str().unwrap(),
                img.to_str().unwrap(),
            ],
        );
        let out = format!("q-{sub}.raw");
        d.kiln_ok(&["convert", "-O", "raw", img.to_str().unwrap(), &out]);
        assert_same_file(&src, &d.path(&out));
        let info = d.kiln_ok(&["info", img.to_str().unwrap()]);
        assert!(info.contains(&format!("subformat: {sub}")), "{info}");
    }
}

#[test]
fn kiln_made_images_read_back_identical() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 40 * MIB, 30, 15);
    for sub in SUBFORMATS {
        let img = format!("{sub}.vhdx");
        d.kiln_ok(&[
            "convert",
            "-O",
            "vhdx",
            "-o",
            &format!("subformat={sub}"),
            "src.raw",
            &img,
        ]);
        d.kiln_ok(&["convert", "-O", "raw", &img, &format!("{sub}.raw")]);
        assert_same_file(&src, &d.path(&format!("{sub}.raw")));
    }
}

#[test]
fn output_is_byte_identical_across_runs() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 64 * MIB, 30, 16);
    for sub in SUBFORMATS {
        let opts = format!("subformat={sub}");
        // The output name seeds the image's ids, so both runs write `a.vhdx`.
        d.kiln_ok(&["convert", "-O", "vhdx", "-o", &opts, "src.raw", "a.vhdx"]);
        std::fs::rename(d.path("a.vhdx"), d.path("first.vhdx")).unwrap();
        d.kiln_ok(&["convert", "-O", "vhdx", "-o", &opts, "src.raw", "a.vhdx"]);
        assert_same_file(&d.path("a.vhdx"), &d.path("first.vhdx"));
        std::fs::remove_file(d.path("a.vhdx")).unwrap();
        std::fs::remove_file(d.path("first.vhdx")).unwrap();
    }
}

#[test]
fn bad_block_size_option_is_a_usage_error() {
    let d = Dir::new();
    let err = d.kiln_err(
        &[
            "create",
            "-f",
            "vhdx",
            "-o",
            "block_size=3M",
            "x.vhdx",
            "64M",
        ],
        2,
    );
    assert!(err.contains("block_size"), "{err}");
    assert!(
        !d.files().iter().any(|f| f.starts_with("x.vhdx")),
        "{:?}",
        d.files()
    );
}

// ---- bad input -------------------------------------------------------------------------

/// CRC-32C, bit by bit: an implementation independent of kiln's table.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A small dynamic kiln image with data in blocks 0 and 1 (1 MiB blocks).
fn good_image(d: &Dir) -> std::path::PathBuf {
    sparse_raw(&d.path("src.raw"), 8 * MIB, 10, 17);
    let f = std::fs::File::options()
        .write(true)
        .open(d.path("src.raw"))
        .unwrap();
    f.write_all_at(b"block0", 0).unwrap();
    f.write_all_at(b"block1", MIB).unwrap();
    d.kiln_ok(&[
        "convert",
        "-O",
        "vhdx",
        "-o",
        "block_size=1M",
        "src.raw",
        "img.vhdx",
    ]);
    std::fs::remove_file(d.path("src.raw")).unwrap();
    d.path("img.vhdx")
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

/// Rewrites the checksum at `offset + 4` of the structure of `len` bytes at `offset`.
fn fix_checksum(path: &Path, offset: u64, len: usize) {
    let mut buf = read_at(path, offset, len);
    buf[4..8].fill(0);
    patch(path, offset + 4, &crc32c(&buf).to_le_bytes());
}

/// Converting `img.vhdx` fails with exit 1, an error naming the file and `needle`, and no
/// output left behind.
fn assert_refused(d: &Dir, needle: &str) -> String {
    let err = d.kiln_err(&["convert", "-O", "raw", "img.vhdx", "out.raw"], 1);
    assert!(err.contains("img.vhdx") && err.contains(needle), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(d.files(), vec!["img.vhdx".to_string()]);
    err
}

/// Offset of the BAT: after the header area, the 1 MiB log and the 1 MiB metadata region.
const BAT: u64 = 3 * MIB;

#[test]
fn one_bad_header_checksum_falls_back_to_the_other() {
    let d = Dir::new();
    let img = good_image(&d);
    d.kiln_ok(&["convert", "-O", "raw", "img.vhdx", "before.raw"]);
    patch(&img, 0x2_0000 + 200, b"x");
    d.kiln_ok(&["convert", "-O", "raw", "img.vhdx", "after.raw"]);
    assert_same_file(&d.path("before.raw"), &d.path("after.raw"));
}

#[test]
fn both_bad_header_checksums_are_rejected() {
    let d = Dir::new();
    let img = good_image(&d);
    patch(&img, 0x1_0000 + 200, b"x");
    patch(&img, 0x2_0000 + 200, b"x");
    assert_refused(&d, "checksum at 0x10000");
}

#[test]
fn bat_entry_past_eof_is_rejected() {
    let d = Dir::new();
    let img = good_image(&d);
    patch(&img, BAT, &(6u64 | (5000 << 20)).to_le_bytes());
    assert_refused(&d, "BAT entry at 0x300000");
}

#[test]
fn overlapping_blocks_are_rejected() {
    let d = Dir::new();
    let img = good_image(&d);
    let first = read_at(&img, BAT, 8);
    patch(&img, BAT + 8, &first);
    assert_refused(&d, "overlaps");
}

#[test]
fn block_mapped_onto_the_bat_is_rejected() {
    let d = Dir::new();
    let img = good_image(&d);
    patch(&img, BAT, &(6u64 | (3 << 20)).to_le_bytes());
    assert_refused(&d, "overlaps");
}

#[test]
fn absurd_block_size_is_rejected() {
    let d = Dir::new();
    let img = good_image(&d);
    // File parameters are the first item, at 64 KiB into the metadata region (2 MiB).
    patch(&img, 2 * MIB + 0x1_0000, &(3u32 << 20).to_le_bytes());
    assert_refused(&d, "block size 3145728 in the metadata at 0x200000");
}

#[test]
fn differencing_disk_is_refused() {
    let d = Dir::new();
    let img = good_image(&d);
    patch(&img, 2 * MIB + 0x1_0004, &2u32.to_le_bytes());
    assert_refused(&d, "differencing");
}

#[test]
fn non_empty_log_is_refused() {
    let d = Dir::new();
    let img = good_image(&d);
    for header in [0x1_0000, 0x2_0000] {
        patch(&img, header + 48, &[0x5a; 16]);
        fix_checksum(&img, header, 4096);
    }
    let err = assert_refused(&d, "non-empty log");
    assert!(err.contains("0x20000"), "{err}");
}

#[test]
fn bad_region_table_checksum_falls_back_and_both_bad_are_rejected() {
    let d = Dir::new();
    let img = good_image(&d);
    patch(&img, 0x3_0000 + 100, b"x");
    d.kiln_ok(&["convert", "-O", "raw", "img.vhdx", "one.raw"]);
    std::fs::remove_file(d.path("one.raw")).unwrap();
    patch(&img, 0x4_0000 + 100, b"x");
    assert_refused(&d, "region table checksum at 0x30000");
}

#[test]
fn truncated_file_is_rejected() {
    let d = Dir::new();
    let img = good_image(&d);
    std::fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(3 * MIB + 4096)
        .unwrap();
    assert_refused(&d, "past the end of the file");
}

#[test]
fn file_shorter_than_the_header_area_is_rejected() {
    let d = Dir::new();
    let img = good_image(&d);
    std::fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(100_000)
        .unwrap();
    assert_refused(&d, "0x186a0 bytes");
}

#[test]
fn absurd_virtual_size_is_rejected() {
    let d = Dir::new();
    let img = good_image(&d);
    // Virtual disk size is the second item, 8 bytes after the file parameters.
    patch(&img, 2 * MIB + 0x1_0008, &(1u64 << 62).to_le_bytes());
    assert_refused(
        &d,
        "virtual size 4611686018427387904 in the metadata at 0x200000",
    );
}

#[test]
fn huge_virtual_size_is_a_usage_error_when_writing() {
    let d = Dir::new();
    let err = d.kiln_err(&["create", "-f", "vhdx", "x.vhdx", "65T"], 2);
    assert!(err.contains("64 TiB"), "{err}");
}
