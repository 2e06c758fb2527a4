//! iso: `kiln convert -O iso DIR out.iso` judged by xorriso, isoinfo, pycdlib, 7-Zip and
//! oslo (check-image), plus listings compared entry by entry with the source tree.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::util::*;

/// Long, mixed-case and Unicode names.
const UNICODE_NAME: &str = "Grüße-文字-Ünïcødé Name.TXT";

/// A source tree exercising every feature: long/mixed/Unicode names, > 8 levels, empty
/// files and directories, symlinks, modes, multi-sector random data.
fn make_tree(root: &Path) {
    let w = |rel: &str, data: &[u8], mode: u32| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let mut random = vec![0u8; 1_234_567];
    Rng::new(3).fill(&mut random);
    w("README", b"kiln iso test\n", 0o644);
    w("bin/run-me.sh", b"#!/bin/sh\necho hi\n", 0o755);
    w("data/random.bin", &random, 0o600);
    w("data/empty", b"", 0o644);
    w(&format!("names/{UNICODE_NAME}"), b"unicode\n", 0o644);
    w("names/MixedCase.Name.With.Dots.tar.gz", b"dots\n", 0o640);
    w(
        &format!("names/{}", "long-name-".repeat(9)),
        b"ninety chars\n",
        0o644,
    );
    w("names/same-prefix-aaaaaaaaa-1.txt", b"1\n", 0o644);
    w("names/same-prefix-aaaaaaaaa-2.txt", b"2\n", 0o644);
    let deep: String = (1..=11).map(|i| format!("level{i}/")).collect();
    w(&format!("{deep}deep.txt"), b"deep\n", 0o644);
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("../README", root.join("bin/readme-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("data/random.bin", root.join("rel-link")).unwrap();
}

#[derive(Debug, PartialEq, Eq)]
struct Listed {
    mode: String,
    size: u64,
    target: Option<String>,
}

/// The tree as `ls -l` would describe it: path → (mode string, size, symlink target).
fn source_listing(root: &Path) -> BTreeMap<String, Listed> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let (kind, size, target) = if meta.file_type().is_symlink() {
                (
                    'l',
                    0,
                    Some(
                        std::fs::read_link(&p)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    ),
                )
            } else if meta.is_dir() {
                stack.push(p.clone());
                ('d', 2048, None)
            } else {
                ('-', meta.len(), None)
            };
            let mode = if kind == 'l' {
                0o777
            } else {
                meta.permissions().mode() & 0o777
            };
            out.insert(
                rel,
                Listed {
                    mode: mode_string(kind, mode),
                    size,
                    target,
                },
            );
        }
    }
    out
}

fn mode_string(kind: char, mode: u32) -> String {
    let mut s = String::from(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// `isoinfo -R -l` parsed into the same shape (directory sizes are one block here).
fn isoinfo_rr_listing(iso: &Path) -> BTreeMap<String, Listed> {
    let text = run_ok("isoinfo", &["-R", "-l", "-i", iso.to_str().unwrap()]);
    let mut out = BTreeMap::new();
    let mut dir = String::new();
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("Directory listing of /") {
            dir = d.to_string();
            continue;
        }
        let Some((head, name)) = line.split_once("]  ") else {
            continue;
        };
        let name = name.strip_suffix(' ').unwrap_or(name);
        if name == "." || name == ".." {
            continue;
        }
        let fields: Vec<&str> = head.split_whitespace().collect();
        let (name, target) = match name.split_once(" -> ") {
            Some((n, t)) => (n.to_string(), Some(t.to_string())),
            None => (name.to_string(), None),
        };
        let size: u64 = fields[4].parse().unwrap();
        out.insert(
            format!("{dir}{name}"),
            Listed {
                mode: fields[0].to_string(),
                size,
                target,
            },
        );
    }
    out
}

fn build_tree_iso(d: &Dir) -> std::path::PathBuf {
    make_tree(&d.path("src"));
    d.kiln_ok(&[
        "convert",
        "-O",
        "iso",
        "-o",
        "volume_label=KILN_TEST,publisher=Kiln Tests",
        "src",
        "out.iso",
    ]);
    d.path("out.iso")
}

#[test]
fn directory_tree_passes_every_iso_oracle() {
    let d = Dir::new();
    let iso = build_tree_iso(&d);
    check_image(
        "iso",
        None,
        &iso,
        Some(&d.path("src")),
        &["--volume-label", "KILN_TEST"],
    );
}

#[test]
fn rock_ridge_listing_matches_names_sizes_modes_and_links() {
    let d = Dir::new();
    let iso = build_tree_iso(&d);
    let listed = isoinfo_rr_listing(&iso);
    let expected = source_listing(&d.path("src"));
    assert_eq!(listed, expected);
}

#[test]
fn joliet_listing_names_every_entry() {
    let d = Dir::new();
    let iso = build_tree_iso(&d);
    let text = run_ok("isoinfo", &["-J", "-f", "-i", iso.to_str().unwrap()]);
    let mut joliet: Vec<String> = text
        .lines()
        .map(|l| l.trim_start_matches('/').to_string())
        .collect();
    joliet.sort();
    // isoinfo prints Joliet names in Latin-1, so the Unicode name is checked with 7-Zip.
    let mut expected: Vec<String> = source_listing(&d.path("src"))
        .into_keys()
        .filter(|p| !p.contains(UNICODE_NAME))
        .collect();
    expected.sort();
    joliet.retain(|p| !p.starts_with("names/Gr"));
    assert_eq!(joliet, expected);
    let slt = run_ok("7zz", &["l", "-slt", iso.to_str().unwrap()]);
    assert!(
        slt.contains(&format!("Path = names/{UNICODE_NAME}")),
        "{slt}"
    );
}

#[test]
fn seven_zip_extracts_identical_files() {
    let d = Dir::new();
    let iso = build_tree_iso(&d);
    let out = d.path("x");
    run_ok(
        "7zz",
        &[
            "x",
            "-y",
            &format!("-o{}", out.display()),
            iso.to_str().unwrap(),
        ],
    );
    for (path, entry) in source_listing(&d.path("src")) {
        if entry.mode.starts_with('-') {
            // 7-Zip reads the Joliet tree, where symlinks are empty files.
            assert_same_file(&d.path("src").join(&path), &out.join(&path));
        }
    }
}

#[test]
fn same_tree_and_epoch_give_identical_bytes() {
    let d = Dir::new();
    make_tree(&d.path("src"));
    d.kiln_ok(&["convert", "-O", "iso", "src", "a.iso"]);
    d.kiln_ok(&["convert", "-O", "iso", "src", "b.iso"]);
    assert_same_file(&d.path("a.iso"), &d.path("b.iso"));
}

#[test]
fn info_reports_label_extensions_and_counts() {
    let d = Dir::new();
    build_tree_iso(&d);
    let v: serde_json::Value =
        serde_json::from_str(&d.kiln_ok(&["info", "--output", "json", "out.iso"])).unwrap();
    assert_eq!(v["format"], "iso");
    assert_eq!(v["details"]["volume_label"], "KILN_TEST");
    assert_eq!(v["details"]["joliet"], "yes");
    assert_eq!(v["details"]["rock_ridge"], "yes");
    assert_eq!(v["details"]["publisher"], "Kiln Tests");
    let files = source_listing(&d.path("src"))
        .values()
        .filter(|l| !l.mode.starts_with('d'))
        .count();
    assert_eq!(v["details"]["files"], files.to_string());
}

#[test]
fn iso_converts_to_raw_byte_for_byte() {
    let d = Dir::new();
    build_tree_iso(&d);
    d.kiln_ok(&["convert", "-O", "raw", "out.iso", "out.raw"]);
    assert_same_file(&d.path("out.iso"), &d.path("out.raw"));
}

#[test]
fn xorriso_iso_is_read() {
    let d = Dir::new();
    make_tree(&d.path("src"));
    run_ok(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-quiet",
            "-R",
            "-J",
            "-V",
            "XORRISO",
            "-o",
            d.path("x.iso").to_str().unwrap(),
            d.path("src").to_str().unwrap(),
        ],
    );
    let v: serde_json::Value =
        serde_json::from_str(&d.kiln_ok(&["info", "--output", "json", "x.iso"])).unwrap();
    assert_eq!(v["details"]["volume_label"], "XORRISO");
    assert_eq!(v["details"]["rock_ridge"], "yes");
    d.kiln_ok(&["convert", "-O", "raw", "x.iso", "x.raw"]);
    assert_same_file(&d.path("x.iso"), &d.path("x.raw"));
}

#[test]
fn plain_iso_without_extensions_is_valid() {
    let d = Dir::new();
    std::fs::create_dir(d.path("src")).unwrap();
    std::fs::write(d.path("src/a.txt"), b"a").unwrap();
    d.kiln_ok(&[
        "convert",
        "-O",
        "iso",
        "-o",
        "joliet=off,rock_ridge=off,label=PLAIN",
        "src",
        "p.iso",
    ]);
    check_image(
        "iso",
        None,
        &d.path("p.iso"),
        None,
        &[
            "--joliet",
            "forbid",
            "--rock-ridge",
            "forbid",
            "--volume-label",
            "PLAIN",
        ],
    );
}

fn assert_refused(d: &Dir, args: &[&str], code: i32, needle: &str) {
    let before = d.files();
    let err = d.kiln_err(args, code);
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert_eq!(d.files(), before, "output left behind");
}

#[test]
fn names_colliding_in_joliet_are_refused() {
    let d = Dir::new();
    std::fs::create_dir(d.path("src")).unwrap();
    let stem = "x".repeat(110);
    std::fs::write(d.path("src").join(format!("{stem}-1")), b"1").unwrap();
    std::fs::write(d.path("src").join(format!("{stem}-2")), b"2").unwrap();
    assert_refused(
        &d,
        &["convert", "-O", "iso", "src", "c.iso"],
        2,
        "same Joliet name",
    );
    d.kiln_ok(&["convert", "-O", "iso", "-o", "joliet=off", "src", "c.iso"]);
    check_image(
        "iso",
        None,
        &d.path("c.iso"),
        Some(&d.path("src")),
        &["--joliet", "forbid"],
    );
}

#[test]
fn file_over_four_gib_is_refused() {
    let d = Dir::new();
    std::fs::create_dir(d.path("src")).unwrap();
    std::fs::File::create(d.path("src/huge.img"))
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    assert_refused(
        &d,
        &["convert", "-O", "iso", "src", "h.iso"],
        1,
        "multi-extent",
    );
}

#[test]
fn special_files_are_refused() {
    let d = Dir::new();
    std::fs::create_dir(d.path("src")).unwrap();
    run_ok("mkfifo", &[d.path("src/fifo").to_str().unwrap()]);
    assert_refused(
        &d,
        &["convert", "-O", "iso", "src", "f.iso"],
        1,
        "not a regular file",
    );
}

#[test]
fn missing_source_directory_names_it() {
    let d = Dir::new();
    assert_refused(&d, &["convert", "-O", "iso", "nope", "n.iso"], 1, "nope");
}

/// A tree with a fake BIOS no-emulation image and a real FAT image for UEFI.
fn boot_tree(d: &Dir) {
    let mut bios = vec![0u8; 30_000];
    Rng::new(9).fill(&mut bios);
    std::fs::create_dir_all(d.path("src/boot")).unwrap();
    std::fs::create_dir_all(d.path("src/EFI")).unwrap();
    std::fs::write(d.path("src/boot/isolinux.bin"), bios).unwrap();
    std::fs::write(d.path("src/readme"), b"boot test\n").unwrap();
    let efi = d.path("src/EFI/efiboot.img");
    std::fs::File::create(&efi)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    run_ok("mkfs.vfat", &["-n", "EFIBOOT", efi.to_str().unwrap()]);
}

fn el_torito_report(iso: &Path) -> String {
    require_tool("xorriso");
    let out = std::process::Command::new("xorriso")
        .args([
            "-indev",
            iso.to_str().unwrap(),
            "-report_el_torito",
            "plain",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn el_torito_bios_and_uefi_entries_are_written() {
    let d = Dir::new();
    boot_tree(&d);
    let opts = "label=BOOT,bios_boot=boot/isolinux.bin,efi_boot=EFI/efiboot.img";
    d.kiln_ok(&["convert", "-O", "iso", "-o", opts, "src", "b.iso"]);
    check_image(
        "iso",
        None,
        &d.path("b.iso"),
        Some(&d.path("src")),
        &["--volume-label", "BOOT"],
    );
    let report = el_torito_report(&d.path("b.iso"));
    assert!(
        report.contains("El Torito img path :   1  /boot/isolinux.bin"),
        "{report}"
    );
    assert!(
        report.contains("El Torito img path :   2  /EFI/efiboot.img"),
        "{report}"
    );
    assert!(
        report.contains("1  BIOS  y   none  0x0000  0x00      4"),
        "{report}"
    );
    assert!(
        report.contains("2  UEFI  y   none  0x0000  0x00   2048"),
        "{report}"
    );
    let info = d.kiln_ok(&["info", "b.iso"]);
    assert!(info.contains("el_torito: yes"), "{info}");
}

#[test]
fn boot_info_table_is_recognised_by_xorriso() {
    let d = Dir::new();
    boot_tree(&d);
    let opts = "bios_boot=boot/isolinux.bin,boot_info_table=on";
    d.kiln_ok(&["convert", "-O", "iso", "-o", opts, "src", "t.iso"]);
    let report = el_torito_report(&d.path("t.iso"));
    assert!(
        report.contains("El Torito img opts :   1  boot-info-table"),
        "{report}"
    );
}

#[test]
fn missing_boot_image_is_refused() {
    let d = Dir::new();
    std::fs::create_dir(d.path("src")).unwrap();
    assert_refused(
        &d,
        &[
            "convert",
            "-O",
            "iso",
            "-o",
            "bios_boot=isolinux.bin",
            "src",
            "b.iso",
        ],
        2,
        "bios_boot",
    );
}

#[test]
fn too_long_label_is_refused() {
    let d = Dir::new();
    std::fs::create_dir(d.path("src")).unwrap();
    let opt = format!("label={}", "L".repeat(33));
    assert_refused(
        &d,
        &["convert", "-O", "iso", "-o", &opt, "src", "l.iso"],
        2,
        "at most 32",
    );
}

#[test]
fn iso_from_a_disk_image_is_unsupported() {
    let d = Dir::new();
    d.kiln_ok(&["create", "-f", "raw", "x.raw", "1M"]);
    assert_refused(
        &d,
        &["convert", "-O", "iso", "x.raw", "x.iso"],
        1,
        "kiln convert -O iso DIR",
    );
}

/// A small valid ISO to corrupt.
fn small_iso(d: &Dir) -> Vec<u8> {
    std::fs::create_dir(d.path("src")).unwrap();
    std::fs::write(d.path("src/a.txt"), b"a").unwrap();
    d.kiln_ok(&["convert", "-O", "iso", "src", "ok.iso"]);
    std::fs::read(d.path("ok.iso")).unwrap()
}

#[test]
fn bad_block_size_is_rejected_with_offset() {
    let d = Dir::new();
    let mut bytes = small_iso(&d);
    bytes[0x8000 + 128] = 0x00;
    bytes[0x8000 + 129] = 0x02;
    std::fs::write(d.path("bad.iso"), &bytes).unwrap();
    let err = d.kiln_err(&["info", "bad.iso"], 1);
    assert!(
        err.contains("bad.iso") && err.contains("0x8080") && err.contains("512"),
        "{err}"
    );
}

#[test]
fn truncated_iso_is_rejected_with_offset() {
    let d = Dir::new();
    let bytes = small_iso(&d);
    std::fs::write(d.path("cut.iso"), &bytes[..0x8800]).unwrap();
    let err = d.kiln_err(&["info", "cut.iso"], 1);
    assert!(err.contains("cut.iso") && err.contains("0x8"), "{err}");
}

#[test]
fn root_directory_past_the_end_is_rejected() {
    let d = Dir::new();
    let mut bytes = small_iso(&d);
    let root_lba = 0x8000 + 156 + 2;
    bytes[root_lba..root_lba + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    std::fs::write(d.path("root.iso"), &bytes).unwrap();
    let err = d.kiln_err(&["info", "root.iso"], 1);
    assert!(
        err.contains("root.iso") && err.contains("outside the image"),
        "{err}"
    );
}

/// The library reader lists `iso` exactly as the source tree and extracts identical files.
fn assert_reader_matches_source(iso: &Path, src: &Path) {
    use kiln::disk::iso::{IsoFileKind, IsoImage};
    let image = IsoImage::open(iso).unwrap();
    let expected = source_listing(src);
    let listed: Vec<&str> = image.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        listed,
        expected.keys().map(String::as_str).collect::<Vec<_>>()
    );
    for entry in &image.entries {
        let want = &expected[&entry.path];
        match &entry.kind {
            IsoFileKind::File => {
                let mut bytes = Vec::new();
                image.read_file(entry, &mut bytes).unwrap();
                assert_eq!(
                    bytes,
                    std::fs::read(src.join(&entry.path)).unwrap(),
                    "{}",
                    entry.path
                );
                assert_eq!(mode_string('-', entry.mode.unwrap() & 0o777), want.mode);
            }
            IsoFileKind::Symlink(target) => assert_eq!(Some(target), want.target.as_ref()),
            IsoFileKind::Directory => assert!(want.mode.starts_with('d')),
        }
    }
}

#[test]
fn library_reader_lists_and_extracts_kiln_isos() {
    let d = Dir::new();
    let iso = build_tree_iso(&d);
    assert_reader_matches_source(&iso, &d.path("src"));
}

#[test]
fn library_reader_lists_and_extracts_xorriso_isos() {
    let d = Dir::new();
    make_tree(&d.path("src"));
    let iso = d.path("x.iso");
    run_ok(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-quiet",
            "-R",
            "-J",
            "-o",
            iso.to_str().unwrap(),
            d.path("src").to_str().unwrap(),
        ],
    );
    assert_reader_matches_source(&iso, &d.path("src"));
}

#[test]
fn library_extraction_equals_the_source_tree() {
    let d = Dir::new();
    let iso = build_tree_iso(&d);
    let image = kiln::disk::iso::IsoImage::open(&iso).unwrap();
    image.extract_all(&d.path("x")).unwrap();
    run_ok(
        "diff",
        &[
            "-r",
            "--no-dereference",
            d.path("src").to_str().unwrap(),
            d.path("x").to_str().unwrap(),
        ],
    );
}

/// Hundreds of long names: directories span several sectors, Rock Ridge continuation
/// areas fill several blocks, path tables span several sectors.
#[test]
fn large_directories_and_many_continuation_areas_pass_the_oracles() {
    let d = Dir::new();
    let src = d.path("src");
    for i in 0..300 {
        let dir = src.join(format!("directory-with-a-rather-long-name-{i:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        let long = format!(
            "{}-{i}",
            "file-name-longer-than-one-hundred-and-fifty-bytes-".repeat(4)
        );
        std::fs::write(dir.join(&long[..long.len().min(250)]), format!("{i}\n")).unwrap();
        std::fs::write(
            src.join(format!("Top Level File Number {i:03}.Data")),
            format!("{i}\n"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(src.join("l")).unwrap();
    let target = format!("{}y", "x/".repeat(511));
    std::os::unix::fs::symlink(&target, src.join("l/long-symlink")).unwrap();
    d.kiln_ok(&["convert", "-O", "iso", "-o", "joliet=off", "src", "big.iso"]);
    check_image(
        "iso",
        None,
        &d.path("big.iso"),
        Some(&src),
        &["--joliet", "forbid"],
    );
    assert_eq!(isoinfo_rr_listing(&d.path("big.iso")), source_listing(&src));
}

#[test]
fn symlink_target_over_1023_bytes_is_refused() {
    let d = Dir::new();
    std::fs::create_dir(d.path("src")).unwrap();
    std::os::unix::fs::symlink("x/".repeat(512), d.path("src/link")).unwrap();
    assert_refused(
        &d,
        &["convert", "-O", "iso", "src", "s.iso"],
        1,
        "1024-byte target",
    );
}

mod roundtrip {
    use std::collections::BTreeMap;

    use kiln::disk::iso::{IsoEntry, IsoFileKind, IsoImage, IsoOptions, IsoSource, IsoWriter};
    use proptest::prelude::*;

    /// Names with dots, case, spaces and non-ASCII; some long.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof!["[a-zA-Z0-9._ -]{1,12}", "[a-zé文ü]{1,40}", "[a-z]{90,120}",]
            .prop_filter("not . or ..", |n| n != "." && n != "..")
    }

    fn tree() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
        let path = prop::collection::vec(name(), 1..6).prop_map(|parts| parts.join("/"));
        let data = prop::collection::vec(any::<u8>(), 0..5000);
        prop::collection::btree_map(path, data, 1..40)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Whatever the tree, the library reader gets back every file and its bytes.
        #[test]
        fn random_trees_round_trip(files in tree()) {
            // A path cannot be both a file and a directory.
            let files: BTreeMap<_, _> = files
                .iter()
                .filter(|(p, _)| !files.keys().any(|o| o.starts_with(&format!("{p}/"))))
                .map(|(p, d)| (p.clone(), d.clone()))
                .collect();
            let options = IsoOptions { joliet: false, ..IsoOptions::default() };
            let mut writer = IsoWriter::new(options).unwrap();
            for (path, data) in &files {
                let source = IsoSource::Bytes(data.clone());
                writer.add(IsoEntry::new(path, source, 0o644)).unwrap();
            }
            let mut bytes = Vec::new();
            writer.write_to(&kiln::BuildContext::from_env("prop"), &mut bytes).unwrap();
            let tmp = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(tmp.path(), &bytes).unwrap();
            let image = IsoImage::open(tmp.path()).unwrap();
            let mut got = BTreeMap::new();
            for e in image.entries.iter().filter(|e| e.kind == IsoFileKind::File) {
                let mut data = Vec::new();
                image.read_file(e, &mut data).unwrap();
                got.insert(e.path.clone(), data);
            }
            prop_assert_eq!(got, files);
        }
    }
}

#[test]
fn library_entries_carry_owner_mode_and_symlinks() {
    use kiln::disk::iso::{IsoEntry, IsoOptions, IsoSource, IsoWriter};
    let d = Dir::new();
    let mut writer = IsoWriter::new(IsoOptions {
        volume_label: "LIB".into(),
        ..IsoOptions::default()
    })
    .unwrap();
    let mut owned = IsoEntry::new("etc/app.conf", IsoSource::Bytes(b"x=1\n".to_vec()), 0o640);
    (owned.uid, owned.gid) = (1000, 100);
    writer.add(owned).unwrap();
    writer
        .add(IsoEntry::new(
            "etc/link",
            IsoSource::Symlink("app.conf".into()),
            0o777,
        ))
        .unwrap();
    let ctx = kiln::BuildContext::from_env("lib");
    writer.write_file(&ctx, &d.path("lib.iso"), false).unwrap();
    check_image(
        "iso",
        None,
        &d.path("lib.iso"),
        None,
        &["--volume-label", "LIB"],
    );
    // isoinfo misprints Rock Ridge owners (1000:100 shows as 1750:144, also for xorriso's
    // images), so the owner is read with xorriso.
    let iso = d.path("lib.iso");
    let conf = run_ok(
        "xorriso",
        &["-indev", iso.to_str().unwrap(), "-lsdl", "/etc/app.conf"],
    );
    assert!(conf.contains("-rw-r-----    1 1000     100"), "{conf}");
    let listing = run_ok("isoinfo", &["-R", "-l", "-i", iso.to_str().unwrap()]);
    assert!(listing.contains("link -> app.conf"), "{listing}");
}

/// Files around the sizes where the writer changes how it copies (small files gathered in
/// a buffer, kernel copies from 64 KiB on, a sparse file spanning several 16 MiB copy
/// chunks): the oracles and a byte-for-byte extraction see exactly the source.
#[test]
fn sparse_and_mixed_size_files_are_copied_exactly() {
    use std::io::{Seek, SeekFrom, Write};
    let d = Dir::new();
    let src = d.path("src");
    std::fs::create_dir_all(src.join("small")).unwrap();
    let mut rng = Rng::new(7);
    let sizes = (0..40)
        .map(|i| i * 1_500)
        .chain([65_535, 65_536, 65_537, 1 << 20, (1 << 20) + 1]);
    for (i, size) in sizes.enumerate() {
        let mut bytes = vec![0u8; size];
        rng.fill(&mut bytes);
        std::fs::write(src.join(format!("small/f{i:02}")), bytes).unwrap();
    }
    let mut sparse = std::fs::File::create(src.join("sparse.img")).unwrap();
    for at in [0u64, 17 << 20, (20 << 20) - 5] {
        sparse.seek(SeekFrom::Start(at)).unwrap();
        sparse.write_all(b"data!").unwrap();
    }
    drop(sparse);
    d.kiln_ok(&["convert", "-O", "iso", "src", "out.iso"]);
    check_image("iso", None, &d.path("out.iso"), Some(&src), &[]);
    let image = kiln::disk::iso::IsoImage::open(&d.path("out.iso")).unwrap();
    image.extract_all(&d.path("x")).unwrap();
    run_ok(
        "diff",
        &["-r", src.to_str().unwrap(), d.path("x").to_str().unwrap()],
    );
}
