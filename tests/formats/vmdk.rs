//! vmdk: every subformat from several sources judged by check-image; qemu-img's vmdk read
//! back; deterministic output; hostile input refused with file and offset.

use std::os::unix::fs::FileExt;
use std::process::Command;

use crate::util::*;

const SUBFORMATS: [&str; 3] = ["monolithicSparse", "streamOptimized", "monolithicFlat"];

/// Converts `src` to vmdk `sub` as `out`, then runs the oracle.
fn write_and_check(d: &Dir, src: &str, sub: &str, out: &str) {
    d.kiln_ok(&[
        "convert",
        "-O",
        "vmdk",
        "-o",
        &format!("subformat={sub}"),
        src,
        out,
    ]);
    check_image("vmdk", Some(sub), &d.path(out), Some(&d.path(src)), &[]);
}

#[test]
fn sparse_random_map_passes_every_oracle_in_each_subformat() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 64 << 20, 40, 11);
    for sub in SUBFORMATS {
        write_and_check(&d, "src.raw", sub, &format!("{sub}.vmdk"));
    }
}

#[test]
fn all_zero_disk_passes_every_oracle_in_each_subformat() {
    let d = Dir::new();
    std::fs::File::create(d.path("zero.raw"))
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    for sub in SUBFORMATS {
        write_and_check(&d, "zero.raw", sub, &format!("{sub}.vmdk"));
    }
}

#[test]
fn random_data_passes_every_oracle_in_each_subformat() {
    let d = Dir::new();
    random_raw(&d.path("rand.raw"), 6 << 20, 5);
    for sub in SUBFORMATS {
        write_and_check(&d, "rand.raw", sub, &format!("{sub}.vmdk"));
    }
}

#[test]
fn ext4_disk_passes_every_oracle_in_each_subformat() {
    let d = Dir::new();
    ext4_raw(&d.path("fs.raw"), 32);
    for sub in SUBFORMATS {
        write_and_check(&d, "fs.raw", sub, &format!("{sub}.vmdk"));
    }
}

#[test]
fn size_not_a_multiple_of_the_grain_round_trips() {
    let d = Dir::new();
    sparse_raw(&d.path("odd.raw"), (5 << 20) + 4096 + 512, 6, 3);
    for sub in SUBFORMATS {
        write_and_check(&d, "odd.raw", sub, &format!("{sub}.vmdk"));
    }
}

#[test]
fn stream_options_are_honoured_and_still_pass_the_oracle() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 16 << 20, 10, 4);
    let opts = "subformat=streamOptimized,adapter_type=lsilogic,hwversion=14,toolsversion=12352,compression_level=1";
    d.kiln_ok(&["convert", "-O", "vmdk", "-o", opts, "src.raw", "s.vmdk"]);
    check_image(
        "vmdk",
        Some("streamOptimized"),
        &d.path("s.vmdk"),
        Some(&d.path("src.raw")),
        &[],
    );
    let info = d.kiln_ok(&["info", "s.vmdk"]);
    for want in [
        "createType: streamOptimized",
        "adapter: lsilogic",
        "hw version: 14",
        "tools version: 12352",
        "grain size: 65536",
        "CID: ",
    ] {
        assert!(info.contains(want), "`{want}` missing from:\n{info}");
    }
}

#[test]
fn create_makes_an_empty_image_in_each_subformat() {
    let d = Dir::new();
    for sub in SUBFORMATS {
        let name = format!("{sub}.vmdk");
        d.kiln_ok(&[
            "create",
            "-f",
            "vmdk",
            "-o",
            &format!("subformat={sub}"),
            &name,
            "1G",
        ]);
        check_image(
            "vmdk",
            Some(sub),
            &d.path(&name),
            None,
            &["--virtual-size", "1073741824"],
        );
    }
}

fn kiln_with_env(d: &Dir, args: &[&str], env: &[(&str, &str)]) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(d.path(""))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln {args:?} failed:\n{}",
        describe(&out)
    );
}

#[test]
fn output_is_identical_across_runs_and_thread_counts() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 32 << 20, 30, 8);
    // Same output file name (it seeds the ids) in three directories.
    let runs: [(&str, &[(&str, &str)]); 3] = [
        ("one", &[("RAYON_NUM_THREADS", "1")]),
        ("four", &[("RAYON_NUM_THREADS", "4")]),
        ("default", &[]),
    ];
    for sub in SUBFORMATS {
        for (dir, env) in runs {
            let _ = std::fs::remove_dir_all(d.path(dir));
            std::fs::create_dir(d.path(dir)).unwrap();
            let out = format!("{dir}/x.vmdk");
            kiln_with_env(
                &d,
                &[
                    "convert",
                    "-O",
                    "vmdk",
                    "-o",
                    &format!("subformat={sub}"),
                    "src.raw",
                    &out,
                ],
                env,
            );
        }
        for file in ["x.vmdk", "x-flat.vmdk"] {
            if d.path("one").join(file).exists() {
                assert_same_file(&d.path("one").join(file), &d.path("four").join(file));
                assert_same_file(&d.path("one").join(file), &d.path("default").join(file));
            }
        }
    }
}

#[test]
fn kiln_reads_qemu_img_vmdk_of_every_subformat() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 64 << 20, 40, 21);
    let subs = [
        "monolithicSparse",
        "streamOptimized",
        "monolithicFlat",
        "twoGbMaxExtentSparse",
        "twoGbMaxExtentFlat",
    ];
    for sub in subs {
        let q = format!("q-{sub}.vmdk");
        run_ok(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "vmdk",
                "-o",
                &format!("subformat={sub}"),
                src.to_str().unwrap(),
                d.path(&q).to_str().unwrap(),
            ],
        );
        let back = format!("{sub}.raw");
        d.kiln_ok(&["convert", "-O", "raw", &q, &back]);
        assert_same_file(&src, &d.path(&back));
        let info = d.kiln_ok(&["info", &q]);
        assert!(info.contains(&format!("createType: {sub}")), "{info}");
    }
}

/// qemu-img stores the last grain of a disk whose size is not a whole number of grains
/// short: it inflates to what is left of the disk, not to a whole grain.
#[test]
fn kiln_reads_qemu_img_stream_whose_last_grain_is_short() {
    let d = Dir::new();
    let src = random_raw(&d.path("odd.raw"), (1 << 20) + 17 * 512, 9);
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized",
            src.to_str().unwrap(),
            d.path("q.vmdk").to_str().unwrap(),
        ],
    );
    d.kiln_ok(&["convert", "-O", "raw", "q.vmdk", "back.raw"]);
    assert_same_file(&src, &d.path("back.raw"));
}

#[test]
fn kiln_reads_qemu_img_split_extents_across_the_2gb_boundary() {
    let d = Dir::new();
    let size: u64 = (2 << 30) + (64 << 20);
    let f = std::fs::File::create(d.path("src.raw")).unwrap();
    f.set_len(size).unwrap();
    let mut data = vec![0u8; 300_000];
    Rng::new(9).fill(&mut data);
    for at in [0, (2 << 30) - 150_000, size - 300_000] {
        f.write_all_at(&data, at).unwrap();
    }
    for sub in ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"] {
        let q = format!("{sub}.vmdk");
        run_ok(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "vmdk",
                "-o",
                &format!("subformat={sub}"),
                d.path("src.raw").to_str().unwrap(),
                d.path(&q).to_str().unwrap(),
            ],
        );
        let info = d.kiln_ok(&["info", &q]);
        assert!(info.contains("; "), "expected several extents:\n{info}");
        d.kiln_ok(&["convert", "-O", "raw", &q, "back.raw"]);
        // qemu-img compare skips holes; hashing 2 GiB twice per case would be slow.
        let (src, back) = (d.path("src.raw"), d.path("back.raw"));
        run_ok(
            "qemu-img",
            &[
                "compare",
                "-f",
                "raw",
                "-F",
                "raw",
                src.to_str().unwrap(),
                back.to_str().unwrap(),
            ],
        );
        assert_eq!(std::fs::metadata(&back).unwrap().len(), size);
        std::fs::remove_file(back).unwrap();
    }
}

#[test]
fn kiln_reads_qemu_img_zeroed_grains() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 16 << 20, 12, 13);
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "zeroed_grain=on",
            src.to_str().unwrap(),
            d.path("z.vmdk").to_str().unwrap(),
        ],
    );
    d.kiln_ok(&["convert", "-O", "raw", "z.vmdk", "back.raw"]);
    assert_same_file(&src, &d.path("back.raw"));
}

#[test]
fn qemu_stream_converts_to_spec_stream_that_7zip_accepts() {
    let d = Dir::new();
    let src = ext4_raw(&d.path("fs.raw"), 24);
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized",
            src.to_str().unwrap(),
            d.path("q.vmdk").to_str().unwrap(),
        ],
    );
    d.kiln_ok(&[
        "convert",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        "q.vmdk",
        "k.vmdk",
    ]);
    check_image(
        "vmdk",
        Some("streamOptimized"),
        &d.path("k.vmdk"),
        Some(&src),
        &[],
    );
}

// ---- hostile input -------------------------------------------------------------------

/// Writes `sub` from a 64 MiB sparse source and returns the image bytes.
fn kiln_image(d: &Dir, sub: &str, name: &str) -> Vec<u8> {
    sparse_raw(&d.path("src.raw"), 64 << 20, 40, 31);
    d.kiln_ok(&[
        "convert",
        "-O",
        "vmdk",
        "-o",
        &format!("subformat={sub}"),
        "src.raw",
        name,
    ]);
    std::fs::read(d.path(name)).unwrap()
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Converting `name` to raw must fail naming the file and `needle`, leaving no output.
fn assert_refused(d: &Dir, name: &str, needle: &str) {
    let before = d.files();
    let err = d.kiln_err(&["convert", "-O", "raw", name, "out.raw"], 1);
    assert!(err.contains(name), "error does not name {name}: {err}");
    assert!(err.contains(needle), "error lacks `{needle}`: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert_eq!(d.files(), before, "output left behind");
}

/// Sector of the first grain table of a monolithicSparse image.
fn first_gt(img: &[u8]) -> usize {
    let gd = usize::try_from(le64(img, 56)).unwrap() * 512;
    le32(img, gd) as usize * 512
}

#[test]
fn truncated_stream_is_rejected() {
    let d = Dir::new();
    let img = kiln_image(&d, "streamOptimized", "s.vmdk");
    std::fs::write(d.path("cut.vmdk"), &img[..img.len() - 4096]).unwrap();
    assert_refused(&d, "cut.vmdk", "footer marker at 0x");
    std::fs::write(d.path("cut2.vmdk"), &img[..img.len() - 700]).unwrap();
    assert_refused(&d, "cut2.vmdk", "truncated");
}

#[test]
fn grain_marker_with_bad_size_is_rejected() {
    let d = Dir::new();
    let mut img = kiln_image(&d, "streamOptimized", "s.vmdk");
    // The first grain follows the 64 KiB header area.
    img[65536 + 8..65536 + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    std::fs::write(d.path("bad.vmdk"), &img).unwrap();
    assert_refused(&d, "bad.vmdk", "grain marker at 0x10000");
}

#[test]
fn grain_with_wrong_lba_is_rejected() {
    let d = Dir::new();
    let mut img = kiln_image(&d, "streamOptimized", "s.vmdk");
    img[65536..65536 + 8].copy_from_slice(&12345u64.to_le_bytes());
    std::fs::write(d.path("bad.vmdk"), &img).unwrap();
    assert_refused(&d, "bad.vmdk", "LBA 0x3039");
}

#[test]
fn corrupt_compressed_grain_is_rejected() {
    let d = Dir::new();
    let mut img = kiln_image(&d, "streamOptimized", "s.vmdk");
    for b in &mut img[65536 + 14..65536 + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(d.path("bad.vmdk"), &img).unwrap();
    assert_refused(&d, "bad.vmdk", "compressed grain at 0x10000");
}

#[test]
fn grain_pointing_past_eof_is_rejected() {
    let d = Dir::new();
    let mut img = kiln_image(&d, "monolithicSparse", "m.vmdk");
    let gt = first_gt(&img);
    let slot = (0..512)
        .map(|i| gt + 4 * i)
        .find(|&at| le32(&img, at) != 0)
        .unwrap();
    img[slot..slot + 4].copy_from_slice(&0x00ff_0000u32.to_le_bytes());
    std::fs::write(d.path("bad.vmdk"), &img).unwrap();
    assert_refused(&d, "bad.vmdk", "grain at 0x1fe000000");
}

#[test]
fn grain_table_outside_file_is_rejected() {
    let d = Dir::new();
    let mut img = kiln_image(&d, "monolithicSparse", "m.vmdk");
    let gd = usize::try_from(le64(&img, 56)).unwrap() * 512;
    img[gd..gd + 4].copy_from_slice(&0x0100_0000u32.to_le_bytes());
    std::fs::write(d.path("bad.vmdk"), &img).unwrap();
    assert_refused(&d, "bad.vmdk", "grain table at 0x200000000");
}

#[test]
fn aliased_grain_tables_are_rejected() {
    let d = Dir::new();
    let mut img = kiln_image(&d, "monolithicSparse", "m.vmdk");
    let gd = usize::try_from(le64(&img, 56)).unwrap() * 512;
    let first = img[gd..gd + 4].to_vec();
    img[gd + 4..gd + 8].copy_from_slice(&first);
    std::fs::write(d.path("bad.vmdk"), &img).unwrap();
    assert_refused(&d, "bad.vmdk", "overlaps another grain table");
}

#[test]
fn stream_grain_table_pointing_at_the_directory_is_rejected() {
    let d = Dir::new();
    let mut img = kiln_image(&d, "streamOptimized", "s.vmdk");
    let footer = img.len() - 1024;
    let gd_sector = le64(&img, footer + 56);
    let gd = usize::try_from(gd_sector).unwrap() * 512;
    let gd_sector = u32::try_from(gd_sector).unwrap();
    img[gd..gd + 4].copy_from_slice(&gd_sector.to_le_bytes());
    std::fs::write(d.path("bad.vmdk"), &img).unwrap();
    assert_refused(&d, "bad.vmdk", "overlaps the grain directory");
}

#[test]
fn huge_capacity_is_rejected() {
    let d = Dir::new();
    let mut img = kiln_image(&d, "monolithicSparse", "m.vmdk");
    img[12..20].copy_from_slice(&(1u64 << 60).to_le_bytes());
    std::fs::write(d.path("bad.vmdk"), &img).unwrap();
    assert_refused(&d, "bad.vmdk", "capacity is 0x1000000000000000");
}

#[test]
fn extent_outside_the_descriptor_directory_is_refused() {
    let d = Dir::new();
    kiln_image(&d, "monolithicFlat", "f.vmdk");
    let text = std::fs::read_to_string(d.path("f.vmdk")).unwrap();
    for (i, evil) in ["../f-flat.vmdk", "/etc/passwd", "sub/f-flat.vmdk", ".."]
        .iter()
        .enumerate()
    {
        let name = format!("evil{i}.vmdk");
        std::fs::write(d.path(&name), text.replace("f-flat.vmdk", evil)).unwrap();
        assert_refused(&d, &name, "not a plain file name");
    }
}

#[test]
fn symlinked_extent_is_refused() {
    let d = Dir::new();
    kiln_image(&d, "monolithicFlat", "f.vmdk");
    std::os::unix::fs::symlink(d.path("f-flat.vmdk"), d.path("link-flat.vmdk")).unwrap();
    let text = std::fs::read_to_string(d.path("f.vmdk")).unwrap();
    std::fs::write(
        d.path("l.vmdk"),
        text.replace("f-flat.vmdk", "link-flat.vmdk"),
    )
    .unwrap();
    assert_refused(&d, "l.vmdk", "symbolic link");
}

#[test]
fn unknown_create_type_is_rejected() {
    let d = Dir::new();
    kiln_image(&d, "monolithicFlat", "f.vmdk");
    let text = std::fs::read_to_string(d.path("f.vmdk")).unwrap();
    std::fs::write(
        d.path("u.vmdk"),
        text.replace("monolithicFlat", "vmfsRawDeviceMap"),
    )
    .unwrap();
    let before = d.files();
    let err = d.kiln_err(&["convert", "-O", "raw", "u.vmdk", "out.raw"], 1);
    assert!(
        err.contains("u.vmdk") && err.contains("vmfsRawDeviceMap"),
        "{err}"
    );
    assert_eq!(d.files(), before);
}

#[test]
fn flat_extent_shorter_than_the_descriptor_is_rejected() {
    let d = Dir::new();
    kiln_image(&d, "monolithicFlat", "f.vmdk");
    std::fs::OpenOptions::new()
        .write(true)
        .open(d.path("f-flat.vmdk"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    assert_refused(&d, "f.vmdk", "flat extent at 0x0");
}

#[test]
fn unknown_option_and_bad_level_are_usage_errors() {
    let d = Dir::new();
    d.kiln_err(
        &[
            "create",
            "-f",
            "vmdk",
            "-o",
            "compression_level=12",
            "x.vmdk",
            "1M",
        ],
        2,
    );
    d.kiln_err(
        &[
            "create",
            "-f",
            "vmdk",
            "-o",
            "adapter_type=nvme",
            "x.vmdk",
            "1M",
        ],
        2,
    );
    d.kiln_err(
        &[
            "create",
            "-f",
            "vmdk",
            "-o",
            "hwversion=4\"",
            "x.vmdk",
            "1M",
        ],
        2,
    );
    assert!(d.files().is_empty());
}
