//! vhd: kiln writes fixed and dynamic VHDs that qemu, 7-Zip, libvhdi and format_inspector
//! accept with the source's bytes; kiln reads what qemu-img writes; bad images are refused.

use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::util::*;

const MIB: u64 = 1 << 20;

/// `kiln convert -O vhd -o OPTS src out`, then the oracle with `--source src`.
fn convert_and_check(d: &Dir, src: &str, opts: &str, sub: &str, extra: &[&str]) {
    let out = format!("{src}.{}.vhd", opts.replace([',', '='], "_"));
    let mut args = vec!["convert", "-O", "vhd"];
    if !opts.is_empty() {
        args.extend(["-o", opts]);
    }
    args.extend([src, &out]);
    d.kiln_ok(&args);
    check_image("vhd", Some(sub), &d.path(&out), Some(&d.path(src)), extra);
}

#[test]
fn dynamic_and_fixed_from_a_sparse_map_pass_the_oracle() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 48 * MIB, 40, 11);
    convert_and_check(&d, "src.raw", "", "dynamic", &[]);
    convert_and_check(&d, "src.raw", "subformat=fixed", "fixed", &[]);
}

#[test]
fn force_size_images_from_a_sparse_map_pass_the_oracle() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 40 * MIB, 30, 12);
    convert_and_check(&d, "src.raw", "force_size=on", "dynamic", &[]);
    convert_and_check(&d, "src.raw", "subformat=fixed,force_size=on", "fixed", &[]);
}

#[test]
fn zero_disk_passes_the_oracle_and_allocates_no_block() {
    let d = Dir::new();
    std::fs::File::create(d.path("zero.raw"))
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    convert_and_check(&d, "zero.raw", "force_size=on", "dynamic", &[]);
    convert_and_check(&d, "zero.raw", "subformat=fixed", "fixed", &[]);
    let info = d.kiln_ok(&["info", "zero.raw.force_size_on.vhd"]);
    assert!(info.contains("allocated_blocks: 0 of 16"), "{info}");
}

#[test]
fn random_data_passes_the_oracle() {
    let d = Dir::new();
    random_raw(&d.path("rnd.raw"), 12 * MIB, 13);
    convert_and_check(&d, "rnd.raw", "", "dynamic", &[]);
    convert_and_check(&d, "rnd.raw", "subformat=fixed,force_size=on", "fixed", &[]);
}

#[test]
fn small_ext4_passes_the_oracle() {
    let d = Dir::new();
    ext4_raw(&d.path("fs.raw"), 32);
    convert_and_check(&d, "fs.raw", "force_size=on", "dynamic", &[]);
    convert_and_check(&d, "fs.raw", "subformat=fixed", "fixed", &[]);
}

#[test]
fn small_block_size_passes_the_oracle() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 16 * MIB, 20, 14);
    convert_and_check(
        &d,
        "src.raw",
        "block_size=512K,force_size=on",
        "dynamic",
        &[],
    );
}

fn qemu_virtual_size(path: &Path) -> u64 {
    let out = run_ok(
        "qemu-img",
        &["info", "--output=json", "-f", "vpc", path.to_str().unwrap()],
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json["virtual-size"].as_u64().unwrap()
}

#[test]
fn virtual_size_equals_qemus_for_the_same_request() {
    let d = Dir::new();
    for size in [
        "1000",
        "5000001",
        "1M",
        "10M",
        "64M",
        "100000256",
        "1G",
        "3G",
        "130G",
    ] {
        for opts in [
            "subformat=dynamic",
            "subformat=dynamic,force_size=on",
            "subformat=fixed",
        ] {
            if opts == "subformat=fixed" && size == "130G" {
                continue; // a 130 GiB sparse file is fine, but keep the test light
            }
            let (q, k) = (d.path("q.vhd"), d.path("k.vhd"));
            let _ = std::fs::remove_file(&q);
            let _ = std::fs::remove_file(&k);
            run_ok(
                "qemu-img",
                &[
                    "create",
                    "-q",
                    "-f",
                    "vpc",
                    "-o",
                    opts,
                    q.to_str().unwrap(),
                    size,
                ],
            );
            d.kiln_ok(&["create", "-f", "vhd", "-o", opts, "k.vhd", size]);
            assert_eq!(
                qemu_virtual_size(&k),
                qemu_virtual_size(&q),
                "size {size} with {opts}"
            );
            let info = d.kiln_ok(&["info", "--output", "json", "k.vhd"]);
            let json: serde_json::Value = serde_json::from_str(&info).unwrap();
            assert_eq!(
                json["virtual-size"].as_u64(),
                Some(qemu_virtual_size(&q)),
                "kiln info, size {size} {opts}"
            );
        }
    }
}

#[test]
fn azure_preset_is_a_fixed_vhd_of_whole_mib_plus_footer() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 10 * MIB + 4096, 10, 15);
    d.kiln_ok(&[
        "convert", "-O", "vhd", "-o", "azure=on", "src.raw", "az.vhd",
    ]);
    let len = std::fs::metadata(d.path("az.vhd")).unwrap().len();
    assert_eq!(len, 11 * MIB + 512);
    assert_eq!(qemu_virtual_size(&d.path("az.vhd")), 11 * MIB);
    let vs = (11 * MIB).to_string();
    check_image(
        "vhd",
        Some("fixed"),
        &d.path("az.vhd"),
        Some(&d.path("src.raw")),
        &["--virtual-size", &vs],
    );
}

#[test]
fn fixed_vhd_is_sparse_and_probed_as_vhd() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 64 * MIB, 10, 16);
    d.kiln_ok(&[
        "convert",
        "-O",
        "vpc",
        "-o",
        "subformat=fixed",
        "src.raw",
        "f.vhd",
    ]);
    let blocks =
        |p: &str| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(d.path(p)).unwrap());
    assert!(
        blocks("f.vhd") <= blocks("src.raw") + 8,
        "holes were written"
    );
    let info = d.kiln_ok(&["info", "f.vhd"]);
    assert!(
        info.contains("file format: vhd") && info.contains("subformat: fixed"),
        "{info}"
    );
    assert!(
        info.contains("geometry: ") && info.contains("creator_app: kiln"),
        "{info}"
    );
}

/// Asserts that the first `len(src)` bytes of `out` equal `src` and the rest is zero.
fn assert_same_prefix(src: &Path, out: &Path) {
    let a = std::fs::read(src).unwrap();
    let b = std::fs::read(out).unwrap();
    assert!(
        b.len() >= a.len(),
        "{} is shorter than {}",
        out.display(),
        src.display()
    );
    assert!(
        a == b[..a.len()],
        "{} differs from {}",
        out.display(),
        src.display()
    );
    assert!(
        b[a.len()..].iter().all(|&x| x == 0),
        "{} has data past the source size",
        out.display()
    );
}

#[test]
fn qemu_made_images_convert_back_to_the_source() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 24 * MIB, 25, 17);
    for (i, opts) in [
        "subformat=dynamic",
        "subformat=fixed",
        "force_size=on",
        "subformat=fixed,force_size=on",
    ]
    .iter()
    .enumerate()
    {
        let q = d.path(&format!("q{i}.vhd"));
        run_ok(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                opts,
                src.to_str().unwrap(),
                q.to_str().unwrap(),
            ],
        );
        let out = format!("q{i}.raw");
        d.kiln_ok(&["convert", "-O", "raw", &format!("q{i}.vhd"), &out]);
        assert_same_prefix(&src, &d.path(&out));
        let info = d.kiln_ok(&["info", &format!("q{i}.vhd")]);
        assert!(info.contains("file format: vhd"), "{opts}: {info}");
    }
}

#[test]
fn vhd_converts_to_vdi_and_back() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 16 * MIB, 15, 18);
    d.kiln_ok(&[
        "convert",
        "-O",
        "vhd",
        "-o",
        "force_size=on",
        "src.raw",
        "a.vhd",
    ]);
    d.kiln_ok(&["convert", "-O", "vdi", "a.vhd", "b.vdi"]);
    check_image("vdi", Some("dynamic"), &d.path("b.vdi"), Some(&src), &[]);
    d.kiln_ok(&[
        "convert",
        "-O",
        "vhd",
        "-o",
        "subformat=fixed,force_size=on",
        "b.vdi",
        "c.vhd",
    ]);
    check_image("vhd", Some("fixed"), &d.path("c.vhd"), Some(&src), &[]);
}

#[test]
fn output_is_byte_identical_across_runs() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 16 * MIB, 15, 19);
    for opts in ["subformat=dynamic", "subformat=fixed"] {
        // Ids derive from the output name, so both runs write the same name.
        d.kiln_ok(&[
            "convert", "-O", "vhd", "-o", opts, "--force", "src.raw", "out.vhd",
        ]);
        std::fs::rename(d.path("out.vhd"), d.path("first.vhd")).unwrap();
        d.kiln_ok(&["convert", "-O", "vhd", "-o", opts, "src.raw", "out.vhd"]);
        assert_same_file(&d.path("first.vhd"), &d.path("out.vhd"));
    }
}

// --- bad input -------------------------------------------------------------------------

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

/// Recomputes the VHD checksum of the `len`-byte structure at `offset` (field at `field`).
fn fix_checksum(path: &Path, offset: u64, len: usize, field: usize) {
    let mut buf = read_at(path, offset, len);
    buf[field..field + 4].fill(0);
    let sum = buf
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)));
    patch(path, offset + field as u64, &(!sum).to_be_bytes());
}

/// A 16 MiB dynamic kiln VHD with data in its first block only; returns its path.
fn dynamic_image(d: &Dir) -> std::path::PathBuf {
    let f = std::fs::File::create(d.path("src.raw")).unwrap();
    f.set_len(16 * MIB).unwrap();
    f.write_all_at(b"kiln data", 4096).unwrap();
    d.kiln_ok(&[
        "convert",
        "-O",
        "vhd",
        "-o",
        "force_size=on",
        "src.raw",
        "bad.vhd",
    ]);
    d.path("bad.vhd")
}

/// Converting `bad.vhd` fails with exit 1, an error naming the file and `needle`, and no output.
fn assert_refused(d: &Dir, format: &str, needle: &str) {
    let err = d.kiln_err(
        &["convert", "-f", format, "-O", "raw", "bad.vhd", "out.raw"],
        1,
    );
    assert!(err.contains("bad.vhd") && err.contains(needle), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        !d.files().iter().any(|f| f.starts_with("out.raw")),
        "left files: {:?}",
        d.files()
    );
}

#[test]
fn footer_with_bad_checksum_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    let len = std::fs::metadata(&img).unwrap().len();
    patch(&img, len - 512 + 100, &[1]);
    assert_refused(&d, "vhd", &format!("footer checksum at {:#x}", len - 512));
}

#[test]
fn fixed_footer_with_bad_checksum_is_rejected() {
    let d = Dir::new();
    std::fs::File::create(d.path("src.raw"))
        .unwrap()
        .set_len(4 * MIB)
        .unwrap();
    d.kiln_ok(&[
        "convert",
        "-O",
        "vhd",
        "-o",
        "subformat=fixed,force_size=on",
        "src.raw",
        "bad.vhd",
    ]);
    patch(&d.path("bad.vhd"), 4 * MIB + 40, &[0xff]);
    assert_refused(&d, "vpc", &format!("footer checksum at {:#x}", 4 * MIB));
}

#[test]
fn dynamic_header_with_bad_checksum_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    patch(&img, 512 + 700, &[1]);
    assert_refused(&d, "vhd", "dynamic header checksum at 0x200");
}

#[test]
fn bat_entry_past_eof_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    patch(&img, 1536, &0x00ff_0000u32.to_be_bytes());
    assert_refused(&d, "vhd", "BAT entry 0 at 0x600");
}

#[test]
fn overlapping_blocks_are_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    let first = read_at(&img, 1536, 4);
    patch(&img, 1540, &first);
    assert_refused(&d, "vhd", "blocks 0 and 1 overlap");
}

#[test]
fn absurd_block_size_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    patch(&img, 512 + 32, &(1u32 << 31).to_be_bytes());
    fix_checksum(&img, 512, 1024, 36);
    assert_refused(&d, "vhd", "block size 2147483648 at 0x220");
}

#[test]
fn bat_larger_than_the_file_is_rejected_before_allocating() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    // A 2040 GiB disk in both footers: the BAT it needs runs far past the end of the file.
    let len = std::fs::metadata(&img).unwrap().len();
    for offset in [0, len - 512] {
        patch(&img, offset + 48, &(2040u64 << 30).to_be_bytes());
        fix_checksum(&img, offset, 512, 64);
    }
    patch(&img, 512 + 28, &(1u32 << 20).to_be_bytes());
    fix_checksum(&img, 512, 1024, 36);
    assert_refused(&d, "vhd", "BAT at 0x600");
}

#[test]
fn truncated_dynamic_vhd_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(MIB)
        .unwrap();
    assert_refused(&d, "vhd", "no VHD footer cookie `conectix` at 0xffe00");
}

#[test]
fn truncated_fixed_vhd_is_rejected() {
    let d = Dir::new();
    std::fs::File::create(d.path("src.raw"))
        .unwrap()
        .set_len(4 * MIB)
        .unwrap();
    d.kiln_ok(&[
        "convert",
        "-O",
        "vhd",
        "-o",
        "subformat=fixed,force_size=on",
        "src.raw",
        "bad.vhd",
    ]);
    // Keep the footer but lose data before it.
    let footer = read_at(&d.path("bad.vhd"), 4 * MIB, 512);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(d.path("bad.vhd"))
        .unwrap();
    f.set_len(2 * MIB).unwrap();
    f.write_all_at(&footer, 2 * MIB).unwrap();
    assert_refused(&d, "vpc", "runs past its footer at 0x200000");
}

#[test]
fn footer_copy_that_disagrees_is_rejected() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    patch(&img, 48, &(8 * MIB).to_be_bytes());
    fix_checksum(&img, 0, 512, 64);
    assert_refused(&d, "vhd", "footer copy at 0x0 disagrees");
}

#[test]
fn differencing_vhd_is_refused() {
    let d = Dir::new();
    let img = dynamic_image(&d);
    let len = std::fs::metadata(&img).unwrap().len();
    for offset in [0, len - 512] {
        patch(&img, offset + 60, &4u32.to_be_bytes());
        fix_checksum(&img, offset, 512, 64);
    }
    assert_refused(&d, "vhd", "differencing disk");
}

#[test]
fn contradictory_options_are_usage_errors() {
    let d = Dir::new();
    let err = d.kiln_err(
        &[
            "create",
            "-f",
            "vhd",
            "-o",
            "azure=on,subformat=dynamic",
            "x.vhd",
            "1M",
        ],
        2,
    );
    assert!(err.contains("azure"), "{err}");
    let err = d.kiln_err(
        &["create", "-f", "vhd", "-o", "block_size=3M", "x.vhd", "1M"],
        2,
    );
    assert!(err.contains("block_size"), "{err}");
    assert!(d.files().is_empty(), "left files: {:?}", d.files());
}

// --- property: random sparse extent maps round-trip ------------------------------------

/// One run of a generated disk: data bytes (may be all zero), a zero run or a hole.
#[derive(Debug, Clone)]
pub enum Run {
    Data(Vec<u8>),
    Zero(u64),
    Hole(u64),
}

/// Serves `runs` as a disk.
struct RunReader {
    runs: Vec<Run>,
    next: usize,
    size: u64,
}

impl kiln::disk::DiskReader for RunReader {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn next_extent(&mut self) -> kiln::Result<Option<kiln::disk::Extent<'_>>> {
        let Some(run) = self.runs.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        Ok(Some(match run {
            Run::Data(bytes) => kiln::disk::Extent::Data(bytes),
            Run::Zero(len) => kiln::disk::Extent::Zero(*len),
            Run::Hole(len) => kiln::disk::Extent::Unallocated(*len),
        }))
    }

    fn info(&self) -> kiln::disk::ImageInfo {
        kiln::disk::ImageInfo::new(kiln::disk::DiskFormat::Raw, self.size)
    }
}

pub fn runs_strategy() -> impl proptest::strategy::Strategy<Value = Vec<Run>> {
    use proptest::prelude::*;
    let run = prop_oneof![
        (1usize..70_000, any::<u8>(), any::<bool>()).prop_map(|(len, fill, zero)| {
            Run::Data(
                (0..len)
                    .map(|i| if zero { 0 } else { fill ^ i.to_le_bytes()[0] })
                    .collect(),
            )
        }),
        (1u64..1_500_000).prop_map(Run::Zero),
        (1u64..1_500_000).prop_map(Run::Hole),
    ];
    proptest::collection::vec(run, 1..12)
}

/// Writes `runs` as `format` with `options`, reads the image back and compares the bytes.
pub fn round_trip(runs: &[Run], format: &str, options: &str) {
    use kiln::disk::{self, CreateRequest, KvOptions, OpenOptions};
    let size: u64 = runs
        .iter()
        .map(|r| match r {
            Run::Data(b) => b.len() as u64,
            Run::Zero(n) | Run::Hole(n) => *n,
        })
        .sum();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let options = KvOptions::parse(options).unwrap();
    let ctx = kiln::BuildContext::from_env("proptest");
    let format: disk::DiskFormat = format.parse().unwrap();
    let req = CreateRequest {
        format,
        virtual_size: size,
        options: &options,
        compress: false,
        ctx: &ctx,
    };
    let mut out = kiln::io::output::OutputSet::new(&path, false);
    let mut writer = disk::create(&req, &mut out).unwrap();
    let mut reader = RunReader {
        runs: runs.to_vec(),
        next: 0,
        size,
    };
    disk::convert(&mut reader, &mut [writer.as_mut()], &mut |_| {}).unwrap();
    writer.finish().unwrap();
    out.commit().unwrap();
    let mut back = disk::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(back.info().format, format);
    let mut got = Vec::new();
    while let Some(e) = back.next_extent().unwrap() {
        match e {
            disk::Extent::Data(b) => got.extend_from_slice(b),
            disk::Extent::Zero(n) | disk::Extent::Unallocated(n) => {
                got.resize(got.len() + usize::try_from(n).unwrap(), 0);
            }
        }
    }
    let mut want = Vec::new();
    for r in runs {
        match r {
            Run::Data(b) => want.extend_from_slice(b),
            Run::Zero(n) | Run::Hole(n) => {
                want.resize(want.len() + usize::try_from(*n).unwrap(), 0);
            }
        }
    }
    assert!(got.len() as u64 >= size && got.len() as u64 == back.virtual_size());
    assert!(got[..want.len()] == want[..], "content differs");
    assert!(
        got[want.len()..].iter().all(|&b| b == 0),
        "data past the written size"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    #[test]
    fn random_sparse_maps_round_trip_through_vhd(runs in runs_strategy()) {
        round_trip(&runs, "vhd", "block_size=512K");
        round_trip(&runs, "vhd", "subformat=fixed,force_size=on");
    }
}
