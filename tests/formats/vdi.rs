//! vdi: kiln writes dynamic and static VDIs that qemu, 7-Zip and format_inspector accept with
//! the source's bytes; kiln reads what qemu-img writes; bad images are refused.

use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::util::*;

const MIB: u64 = 1 << 20;

/// `kiln convert -O vdi -o OPTS src out`, then the oracle with `--source src`.
fn convert_and_check(d: &Dir, src: &str, opts: &str, sub: &str) {
    let out = format!("{src}.{sub}.vdi");
    let mut args = vec!["convert", "-O", "vdi"];
    if !opts.is_empty() {
        args.extend(["-o", opts]);
    }
    args.extend([src, &out]);
    d.kiln_ok(&args);
    check_image("vdi", Some(sub), &d.path(&out), Some(&d.path(src)), &[]);
}

#[test]
fn dynamic_and_static_from_a_sparse_map_pass_the_oracle() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 48 * MIB, 40, 21);
    convert_and_check(&d, "src.raw", "", "dynamic");
    convert_and_check(&d, "src.raw", "static=on", "static");
}

#[test]
fn zero_disk_passes_the_oracle_and_stores_no_block() {
    let d = Dir::new();
    std::fs::File::create(d.path("zero.raw"))
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    convert_and_check(&d, "zero.raw", "subformat=dynamic", "dynamic");
    convert_and_check(&d, "zero.raw", "subformat=fixed", "static");
    let info = d.kiln_ok(&["info", "zero.raw.dynamic.vdi"]);
    assert!(info.contains("allocated_blocks: 0 of 32"), "{info}");
}

#[test]
fn random_data_passes_the_oracle() {
    let d = Dir::new();
    random_raw(&d.path("rnd.raw"), 12 * MIB, 22);
    convert_and_check(&d, "rnd.raw", "", "dynamic");
    convert_and_check(&d, "rnd.raw", "subformat=static", "static");
}

#[test]
fn small_ext4_passes_the_oracle() {
    let d = Dir::new();
    ext4_raw(&d.path("fs.raw"), 32);
    convert_and_check(&d, "fs.raw", "", "dynamic");
    convert_and_check(&d, "fs.raw", "static=on", "static");
}

#[test]
fn static_vdi_stays_sparse() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 64 * MIB, 10, 23);
    d.kiln_ok(&[
        "convert",
        "-O",
        "vdi",
        "-o",
        "static=on",
        "src.raw",
        "s.vdi",
    ]);
    let blocks =
        |p: &str| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(d.path(p)).unwrap());
    assert!(
        blocks("s.vdi") <= blocks("src.raw") + 16,
        "holes were written"
    );
    let info = d.kiln_ok(&["info", "s.vdi"]);
    assert!(
        info.contains("subformat: static") && info.contains("block_size: 1048576"),
        "{info}"
    );
}

#[test]
fn qemu_made_images_convert_back_to_the_source() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 24 * MIB, 25, 24);
    for (i, opts) in ["static=off", "static=on"].iter().enumerate() {
        let q = d.path(&format!("q{i}.vdi"));
        run_ok(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "vdi",
                "-o",
                opts,
                src.to_str().unwrap(),
                q.to_str().unwrap(),
            ],
        );
        let out = format!("q{i}.raw");
        d.kiln_ok(&["convert", "-O", "raw", &format!("q{i}.vdi"), &out]);
        assert_same_file(&src, &d.path(&out));
    }
}

#[test]
fn vdi_converts_to_vhd() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 16 * MIB, 15, 25);
    d.kiln_ok(&[
        "convert",
        "-O",
        "vdi",
        "-o",
        "static=on",
        "src.raw",
        "a.vdi",
    ]);
    d.kiln_ok(&[
        "convert",
        "-O",
        "vhd",
        "-o",
        "force_size=on",
        "a.vdi",
        "b.vhd",
    ]);
    check_image("vhd", Some("dynamic"), &d.path("b.vhd"), Some(&src), &[]);
    d.kiln_ok(&["convert", "-O", "raw", "b.vhd", "c.raw"]);
    assert_same_file(&src, &d.path("c.raw"));
}

#[test]
fn output_is_byte_identical_across_runs() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 16 * MIB, 15, 26);
    for opts in ["static=off", "static=on"] {
        // Ids derive from the output name, so both runs write the same name.
        d.kiln_ok(&[
            "convert", "-O", "vdi", "-o", opts, "--force", "src.raw", "out.vdi",
        ]);
        std::fs::rename(d.path("out.vdi"), d.path("first.vdi")).unwrap();
        d.kiln_ok(&["convert", "-O", "vdi", "-o", opts, "src.raw", "out.vdi"]);
        assert_same_file(&d.path("first.vdi"), &d.path("out.vdi"));
    }
}

// --- bad input -------------------------------------------------------------------------

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// A 16 MiB dynamic kiln VDI storing blocks 0 and 5; returns its path.
fn dynamic_image(d: &Dir) -> std::path::PathBuf {
    let f = std::fs::File::create(d.path("src.raw")).unwrap();
    f.set_len(16 * MIB).unwrap();
    f.write_all_at(b"kiln data", 4096).unwrap();
    f.write_all_at(b"more data", 5 * MIB + 7).unwrap();
    d.kiln_ok(&["convert", "-O", "vdi", "src.raw", "bad.vdi"]);
    d.path("bad.vdi")
}

/// Converting `bad.vdi` fails with exit 1, one line naming the file and `needle`, no output.
fn assert_refused(d: &Dir, needle: &str) {
    let err = d.kiln_err(
        &["convert", "-f", "vdi", "-O", "raw", "bad.vdi", "out.raw"],
        1,
    );
    assert!(err.contains("bad.vdi") && err.contains(needle), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        !d.files().iter().any(|f| f.starts_with("out.raw")),
        "left files: {:?}",
        d.files()
    );
}

#[test]
fn bad_signature_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    patch(&img, 0x40, &[0; 4]);
    assert_refused(&d, "no VDI signature 0xbeda107f at 0x40");
}

#[test]
fn block_map_entry_past_eof_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    // Entry 1 names data block 15: in range for the image, past the end of this file.
    patch(&img, 512 + 4, &15u32.to_le_bytes());
    assert_refused(&d, "entry 1 at 0x204");
}

#[test]
fn block_map_entry_past_the_block_count_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    patch(&img, 512 + 8, &1000u32.to_le_bytes());
    assert_refused(&d, "entry 2 at 0x208 names data block 1000");
}

#[test]
fn overlapping_blocks_are_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    patch(&img, 512 + 5 * 4, &0u32.to_le_bytes());
    assert_refused(&d, "entries 0 and 5 both name data block 0");
}

#[test]
fn absurd_block_size_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    patch(&img, 0x178, &(1u32 << 31).to_le_bytes());
    assert_refused(&d, "block size 2147483648 at 0x178");
}

#[test]
fn huge_disk_size_is_rejected_before_allocating() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    // 512 TiB in 2^29 blocks: a 2 GiB block map that this small file cannot hold.
    patch(&img, 0x170, &(1u64 << 49).to_le_bytes());
    patch(&img, 0x180, &(1u32 << 29).to_le_bytes());
    patch(&img, 0x158, &0xffff_f000u32.to_le_bytes());
    assert_refused(&d, "block map at 0x200");
}

#[test]
fn too_few_blocks_for_the_disk_size_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    patch(&img, 0x180, &8u32.to_le_bytes());
    assert_refused(&d, "too few for its disk size");
}

#[test]
fn truncated_vdi_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(MIB)
        .unwrap();
    assert_refused(&d, "entry 0 at 0x200");
}

#[test]
fn differencing_vdi_is_refused() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    patch(&img, 0x4c, &4u32.to_le_bytes());
    assert_refused(&d, "needs a parent image");
}

#[test]
fn contradictory_options_are_usage_errors() {
    let d = Dir::new();
    let err = d.kiln_err(
        &[
            "create",
            "-f",
            "vdi",
            "-o",
            "subformat=dynamic,static=on",
            "x.vdi",
            "1M",
        ],
        2,
    );
    assert!(err.contains("contradict"), "{err}");
    assert!(d.files().is_empty(), "left files: {:?}", d.files());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    #[test]
    fn random_sparse_maps_round_trip_through_vdi(runs in super::vhd::runs_strategy()) {
        super::vhd::round_trip(&runs, "vdi", "static=off");
        super::vhd::round_trip(&runs, "vdi", "static=on");
    }
}
