//! The defects the hostile-input review of issue 15 found, one test each (each failed before
//! its fix). The image-side defects (polyglots, qcow2 corruption `kiln check` missed, a VHD
//! BAT declared past the file, descriptor VMDKs) are tested in `hostile`, beside the safety
//! verdict.

use std::path::Path;

use crate::util::*;

/// issue 15, defect 7: a dangling symlink at the output path was replaced without --force.
#[test]
fn dangling_symlink_at_the_output_is_refused_without_force() {
    let dir = Dir::new();
    std::fs::write(dir.path("in.raw"), vec![7u8; 4096]).unwrap();
    std::os::unix::fs::symlink("nowhere", dir.path("out.raw")).unwrap();
    let err = dir.kiln_err(&["convert", "-f", "raw", "in.raw", "out.raw"], 2);
    assert!(err.contains("out.raw") && err.contains("--force"), "{err}");
    let link = std::fs::read_link(dir.path("out.raw")).unwrap();
    assert_eq!(link, Path::new("nowhere"));
    assert!(!dir.path("nowhere").exists());
}

fn write_spec(dir: &Dir, rel: &str, source: &str, extra: &str) {
    let text = format!(
        "name: t\ndisks:\n  - name: root\n    source: {{ file: \"{source}\" }}\noutputs:\n  - {{ disk_format: raw, container_format: bare }}\n{extra}"
    );
    let path = dir.path(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// issue 15, defect 9: `kiln validate` accepted a `file:` source that `kiln build` refuses.
#[test]
fn validate_refuses_a_qcow2_source_with_a_backing_file() {
    require_tool("qemu-img");
    let dir = Dir::new();
    let base = dir.path("base.qcow2");
    let top = dir.path("top.qcow2");
    run_ok(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "1M"],
    );
    let (b, t) = (base.to_str().unwrap(), top.to_str().unwrap());
    run_ok(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "-b", b, "-F", "qcow2", t],
    );
    write_spec(&dir, "spec.yaml", "top.qcow2", "");
    let err = dir.kiln_err(&["validate", "spec.yaml"], 1);
    assert!(
        err.contains("disks[0].source.file") && err.contains("backing file"),
        "{err}"
    );
    let build = dir.kiln_err(&["build", "spec.yaml"], 1);
    assert!(build.contains("backing file"), "{build}");
    assert!(
        !dir.path("build").exists(),
        "validation failed, nothing is built"
    );
}

/// issue 15, defect 10: with --confine, an input outside the spec's directory is refused
/// before it is opened, however it gets there (`../`, an absolute path, a symlink).
#[test]
fn confine_refuses_inputs_that_resolve_outside_the_spec_directory() {
    let dir = Dir::new();
    std::fs::write(dir.path("outside.raw"), vec![1u8; 4096]).unwrap();
    std::fs::create_dir(dir.path("spec")).unwrap();
    std::os::unix::fs::symlink("../outside.raw", dir.path("spec/link.raw")).unwrap();
    let absolute = dir.path("outside.raw");
    for source in ["../outside.raw", absolute.to_str().unwrap(), "link.raw"] {
        write_spec(&dir, "spec/spec.yaml", source, "");
        dir.kiln_ok(&["validate", "spec/spec.yaml"]);
        let err = dir.kiln_err(&["validate", "--confine", "spec/spec.yaml"], 1);
        assert!(err.contains("refused by --confine"), "{source}: {err}");
        let err = dir.kiln_err(&["build", "--confine", "spec/spec.yaml"], 1);
        assert!(err.contains("refused by --confine"), "{source}: {err}");
    }
    assert!(!dir.path("build").exists());
    let allowed = dir.kiln_ok(&[
        "validate",
        "--confine",
        "--allow-dir",
        ".",
        "spec/spec.yaml",
    ]);
    assert!(allowed.contains("valid"), "{allowed}");
}

/// issue 15, defect 10: an error about a file the spec names does not quote the file.
#[test]
fn errors_about_a_cloud_init_file_do_not_quote_it() {
    let dir = Dir::new();
    std::fs::write(dir.path("disk.raw"), vec![0u8; 4096]).unwrap();
    std::fs::write(
        dir.path("secret"),
        "root:$6$topsecrethash:19000:0:99999:7:::\n",
    )
    .unwrap();
    let cloud_init = "cloud_init:\n  user_data: secret\n  deliver: [seed-iso]\n";
    write_spec(&dir, "spec.yaml", "disk.raw", cloud_init);
    let err = dir.kiln_err(&["validate", "spec.yaml"], 1);
    assert!(
        err.contains("cloud_init.user_data") && err.contains("secret"),
        "{err}"
    );
    assert!(
        !err.contains("topsecret") && !err.contains("root:"),
        "{err}"
    );
}

fn write_blank_spec(dir: &Dir, size: &str, format: &str) {
    let text = format!(
        "name: t\ndisks:\n  - name: root\n    source: {{ blank: true }}\n    size: {size}\noutputs:\n  - {{ disk_format: {format}, container_format: bare }}\n"
    );
    std::fs::write(dir.path("spec.yaml"), text).unwrap();
}

/// The smallest power of two from 1 TiB on that coreutils `truncate` cannot make a file of
/// in `dir` (the filesystem says EFBIG), else 2^63, which no file can be (off_t).
fn size_the_filesystem_refuses(dir: &Dir) -> u64 {
    require_tool("truncate");
    let probe = dir.path("probe");
    let refused = (40..63).map(|bits| 1u64 << bits).find(|size| {
        let out = std::process::Command::new("truncate")
            .args(["-s", &size.to_string(), probe.to_str().unwrap()])
            .output()
            .unwrap();
        !out.status.success()
    });
    let _ = std::fs::remove_file(&probe);
    refused.unwrap_or(1 << 63)
}

/// issue 15, defect 5: a blank raw disk larger than the filesystem holds (1 EiB on ext4) was
/// accepted, and the build hashed its zeros "forever" before the write failed with EFBIG.
#[test]
fn raw_disk_larger_than_the_filesystem_holds_is_refused_before_building() {
    let dir = Dir::new();
    let size = size_the_filesystem_refuses(&dir);
    write_blank_spec(&dir, &size.to_string(), "raw");
    for command in ["validate", "build"] {
        let out = dir.kiln(&[command, "-o", "out", "spec.yaml"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(
            err.contains("does not fit") || err.contains("more than a raw holds"),
            "{err}"
        );
    }
    assert!(!dir.path("out").exists(), "nothing is created");
}

/// issue 15, defect 5: sizes a format cannot hold fail at validation, located at the output.
#[test]
fn disk_larger_than_the_format_holds_is_refused_at_validation() {
    let dir = Dir::new();
    write_blank_spec(&dir, "3TiB", "vhd");
    let err = dir.kiln_err(&["validate", "spec.yaml"], 1);
    assert!(
        err.contains("outputs[0]") && err.contains("more than a vhd holds"),
        "{err}"
    );
    write_blank_spec(&dir, "8EiB", "raw");
    let err = dir.kiln_err(&["validate", "spec.yaml"], 1);
    assert!(err.contains("more than a raw holds"), "{err}");
}

/// issue 15, defect 5: hashing a large raw artefact for SHA256SUMS shows its progress.
#[test]
fn hashing_a_large_raw_disk_shows_progress() {
    let dir = Dir::new();
    write_blank_spec(&dir, "2GiB", "raw");
    let out = dir.kiln(&["build", "-o", "out", "spec.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stderr.contains("hashing disk root for SHA256SUMS: 1 GiB of 2 GiB (50%)"),
        "{stderr}"
    );
    assert!(stderr.contains("(100%)"), "{stderr}");
}

/// A reader that truncates its source file to `keep` bytes after lending the first extent:
/// the source shrinking under a running conversion.
struct ShrinksAfterFirst {
    inner: Box<dyn kiln::disk::DiskReader>,
    file: std::path::PathBuf,
    keep: u64,
    calls: u32,
}

impl kiln::disk::DiskReader for ShrinksAfterFirst {
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }

    fn next_extent(&mut self) -> kiln::Result<Option<kiln::disk::Extent<'_>>> {
        self.calls += 1;
        if self.calls == 2 {
            let f = std::fs::OpenOptions::new().write(true).open(&self.file);
            f.unwrap().set_len(self.keep).unwrap();
        }
        self.inner.next_extent()
    }

    fn info(&self) -> kiln::disk::ImageInfo {
        self.inner.info()
    }
}

/// Converts `source` to qcow2 as `kiln convert` does, the source shrinking to `keep` bytes
/// after the first extent; returns the error as the CLI prints it.
fn convert_shrinking(dir: &Dir, source: &Path, keep: u64) -> String {
    use kiln::disk::{self, CreateRequest, DiskFormat, DiskReader, KvOptions, OpenOptions};
    let inner = disk::open(source, &OpenOptions::default()).unwrap();
    let mut reader = ShrinksAfterFirst {
        inner,
        file: source.to_path_buf(),
        keep,
        calls: 0,
    };
    let out = dir.path("out.qcow2");
    let mut set = kiln::io::output::OutputSet::new(&out, false);
    let ctx = kiln::BuildContext::from_env("out.qcow2");
    let req = CreateRequest {
        format: DiskFormat::Qcow2,
        virtual_size: reader.virtual_size(),
        options: &KvOptions::default(),
        compress: false,
        ctx: &ctx,
    };
    let mut writer = disk::create(&req, &mut set).unwrap();
    let result = disk::convert(&mut reader, &mut [writer.as_mut()], &mut |_| {});
    let err = result.expect_err("the conversion reads past the end");
    // `kiln convert` names the output on errors that have no file yet (cli/convert.rs).
    err.with_path(&out).to_string()
}

/// issue 15, defect 6: a source that shrinks during a conversion was reported under the
/// output's name ("out.raw: raw data at offset … lies past the end of the file").
#[test]
fn a_source_that_shrinks_during_a_conversion_is_named() {
    let dir = Dir::new();
    let raw = random_raw(&dir.path("src.raw"), 8 << 20, 6);
    let err = convert_shrinking(&dir, &raw, 1 << 20);
    let name = raw.display().to_string();
    assert!(
        err.starts_with(&format!("{name}: raw data at offset 0x400000")),
        "{err}"
    );
    let qcow2 = dir.path("src.qcow2");
    let raw = random_raw(&dir.path("src2.raw"), 8 << 20, 7);
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            raw.to_str().unwrap(),
            qcow2.to_str().unwrap(),
        ],
    );
    let err = convert_shrinking(&dir, &qcow2, 6 * 65536);
    let name = qcow2.display().to_string();
    assert!(
        err.starts_with(&format!("{name}: qcow2 image ends before offset")),
        "{err}"
    );
}

/// The size limits validation applies are the writers' own: one unit more is refused by
/// both `kiln validate` and `kiln create`, and the limit itself passes validation.
#[test]
fn format_limits_at_validation_are_the_writers() {
    let dir = Dir::new();
    let limits = [
        ("vhd", 2040u64 << 30, 512u64),
        ("vhdx", 64 << 40, 512),
        ("vmdk", 64 << 40, 512),
        ("vdi", 0x3fff_ffff << 20, 1 << 20),
    ];
    for (format, max, unit) in limits {
        write_blank_spec(&dir, &max.to_string(), format);
        dir.kiln_ok(&["validate", "spec.yaml"]);
        let over = (max + unit).to_string();
        write_blank_spec(&dir, &over, format);
        let err = dir.kiln_err(&["validate", "spec.yaml"], 1);
        assert!(
            err.contains(&format!("more than a {format} holds")),
            "{err}"
        );
        let out = dir.kiln(&["create", "-f", format, "x.img", &over]);
        assert!(!out.status.success(), "{format}: {}", describe(&out));
        assert!(!dir.path("x.img").exists());
    }
}
