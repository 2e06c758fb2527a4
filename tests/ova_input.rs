//! Reading the disk inside an OVA in place (`kiln info|check|convert X.ova`): the tar
//! reader lists the members and the VMDK is read through a view of the archive. `tar`
//! itself, Python's `tarfile` and kiln's own OVA writer make the archives; `cmp` against
//! the source disk and qemu-img's reading of the extracted VMDK are the oracles. Hostile
//! archives are refused with one line naming the member and leave no output.

use std::path::Path;
use std::process::Command;

use crate::util::*;

/// `tar ARGS` in `d`, asserting success (GNU tar: the archive format real users make).
fn tar(d: &Dir, args: &[&str]) {
    require_tool("tar");
    let out = Command::new("tar")
        .args(args)
        .current_dir(d.tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "tar {args:?}:\n{}", describe(&out));
}

/// A 40 MiB sparse random source and its streamOptimized VMDK made by qemu-img.
fn qemu_stream_vmdk(d: &Dir) {
    sparse_raw(&d.path("src.raw"), 40 << 20, 30, 11);
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized",
            d.path("src.raw").to_str().unwrap(),
            d.path("disk.vmdk").to_str().unwrap(),
        ],
    );
}

#[test]
fn a_qemu_img_vmdk_in_a_tar_made_by_tar_converts_to_the_source() {
    let d = Dir::new();
    qemu_stream_vmdk(&d);
    std::fs::write(d.path("p.ovf"), "<Envelope/>").unwrap();
    tar(&d, &["cf", "p.ova", "p.ovf", "disk.vmdk"]);
    d.kiln_ok(&["convert", "p.ova", "out.raw"]);
    assert_same_file(&d.path("out.raw"), &d.path("src.raw"));
}

#[test]
fn the_disk_of_a_kiln_ova_converts_to_the_source_and_qemu_img_agrees() {
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 24 << 20, 40, 7);
    let spec = "name: app\ndisks:\n  - name: root\n    source: { file: src.raw }\noutputs:\n  - { disk_format: vmdk, container_format: ova }\n";
    std::fs::write(d.path("spec.yaml"), spec).unwrap();
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    d.kiln_ok(&["convert", "out/app.ova", "-O", "qcow2", "disk.qcow2"]);
    run_ok(
        "qemu-img",
        &[
            "compare",
            "-f",
            "qcow2",
            "-F",
            "raw",
            d.path("disk.qcow2").to_str().unwrap(),
            d.path("src.raw").to_str().unwrap(),
        ],
    );
    let check = d.kiln_ok(&["check", "out/app.ova"]);
    assert!(check.contains("No errors were found"), "{check}");
}

#[test]
fn info_names_the_member_it_read() {
    let d = Dir::new();
    qemu_stream_vmdk(&d);
    tar(&d, &["cf", "p.ova", "disk.vmdk"]);
    let info = d.kiln_ok(&["info", "--output", "json", "p.ova"]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["filename"], "p.ova:disk.vmdk");
    assert_eq!(v["format"], "vmdk");
    assert_eq!(v["virtual-size"], 40 << 20);
}

#[test]
fn member_picks_a_named_disk() {
    let d = Dir::new();
    qemu_stream_vmdk(&d);
    run_ok(
        "qemu-img",
        &[
            "create",
            "-f",
            "vmdk",
            d.path("blank.vmdk").to_str().unwrap(),
            "8M",
        ],
    );
    tar(&d, &["cf", "p.ova", "blank.vmdk", "disk.vmdk"]);
    d.kiln_ok(&["convert", "--member", "disk.vmdk", "p.ova", "out.raw"]);
    assert_same_file(&d.path("out.raw"), &d.path("src.raw"));
}

#[test]
fn a_missing_member_is_refused_with_the_members_listed() {
    let d = Dir::new();
    qemu_stream_vmdk(&d);
    tar(&d, &["cf", "p.ova", "disk.vmdk"]);
    let err = d.kiln_err(&["convert", "--member", "x.vmdk", "p.ova", "out.raw"], 2);
    assert!(err.contains("no member `x.vmdk`"), "{err}");
    assert!(err.contains("disk.vmdk"), "{err}");
    assert!(!d.path("out.raw").exists());
}

#[test]
fn raw_format_still_copies_the_archive_bytes() {
    let d = Dir::new();
    qemu_stream_vmdk(&d);
    tar(&d, &["cf", "p.ova", "disk.vmdk"]);
    d.kiln_ok(&["convert", "-f", "raw", "p.ova", "out.raw"]);
    assert_same_file(&d.path("out.raw"), &d.path("p.ova"));
}

/// Asserts `kiln convert ova out.raw` fails with one line containing each of `needles`
/// and leaves nothing behind.
fn refused(d: &Dir, ova: &str, needles: &[&str]) {
    let before = d.files();
    let err = d.kiln_err(&["convert", ova, "out.raw"], 1);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    assert!(err.contains(ova), "{err}");
    assert_eq!(d.files(), before);
}

#[test]
fn a_member_past_the_end_of_the_archive_is_refused() {
    let d = Dir::new();
    qemu_stream_vmdk(&d);
    tar(&d, &["cf", "p.ova", "disk.vmdk"]);
    let len = std::fs::metadata(d.path("p.ova")).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(d.path("p.ova"))
        .unwrap();
    f.set_len(len / 2).unwrap();
    refused(&d, "p.ova", &["disk.vmdk", "past the end of the archive"]);
}

#[test]
fn a_negative_size_is_refused() {
    let d = Dir::new();
    python(
        d.tmp.path(),
        "import tarfile,io\nt=tarfile.open('p.ova','w',format=tarfile.GNU_FORMAT)\ni=tarfile.TarInfo('neg.vmdk')\ni.size=0\nt.addfile(i,io.BytesIO(b''))\nt.close()\nb=bytearray(open('p.ova','rb').read())\nb[124:136]=b'\\xff'*12\ns=sum(b[0:148])+8*32+sum(b[156:512])\nb[148:156]=('%06o\\0 '%s).encode()\nopen('p.ova','wb').write(b)\n",
        &[],
    );
    refused(&d, "p.ova", &["neg.vmdk", "negative size"]);
}

#[test]
fn a_huge_base_256_size_is_refused() {
    let d = Dir::new();
    python(
        d.tmp.path(),
        "import tarfile,io\nt=tarfile.open('p.ova','w',format=tarfile.GNU_FORMAT)\ni=tarfile.TarInfo('huge.vmdk')\ni.size=0\nt.addfile(i,io.BytesIO(b''))\nt.close()\nb=bytearray(open('p.ova','rb').read())\nb[124:136]=b'\\x80'+b'\\x7f'*11\ns=sum(b[0:148])+8*32+sum(b[156:512])\nb[148:156]=('%06o\\0 '%s).encode()\nopen('p.ova','wb').write(b)\n",
        &[],
    );
    refused(&d, "p.ova", &["huge.vmdk"]);
}

#[test]
fn a_dot_dot_name_is_refused() {
    let d = Dir::new();
    python(
        d.tmp.path(),
        "import tarfile,io\nt=tarfile.open('p.ova','w',format=tarfile.USTAR_FORMAT)\ni=tarfile.TarInfo('../evil.vmdk')\ni.size=4\nt.addfile(i,io.BytesIO(b'KDMV'))\nt.close()\n",
        &[],
    );
    refused(&d, "p.ova", &["../evil.vmdk", "not a plain file name"]);
}

#[test]
fn a_symlink_member_is_refused() {
    let d = Dir::new();
    python(
        d.tmp.path(),
        "import tarfile\nt=tarfile.open('p.ova','w',format=tarfile.USTAR_FORMAT)\ni=tarfile.TarInfo('disk.vmdk')\ni.type=tarfile.SYMTYPE\ni.linkname='/etc/shadow'\nt.addfile(i)\nt.close()\n",
        &[],
    );
    refused(&d, "p.ova", &["disk.vmdk", "symbolic link"]);
}

#[test]
fn a_pax_header_is_refused() {
    let d = Dir::new();
    python(
        d.tmp.path(),
        "import tarfile,io\nt=tarfile.open('p.ova','w',format=tarfile.PAX_FORMAT)\ni=tarfile.TarInfo('disk.vmdk')\ni.size=4\ni.pax_headers={'comment':'x'}\nt.addfile(i,io.BytesIO(b'KDMV'))\nt.close()\n",
        &[],
    );
    refused(&d, "p.ova", &["PAX extended header"]);
}

#[test]
fn a_hundred_thousand_empty_members_are_refused() {
    let d = Dir::new();
    python(
        d.tmp.path(),
        "import tarfile,io\nt=tarfile.open('p.ova','w',format=tarfile.USTAR_FORMAT)\nfor n in range(100000):\n    i=tarfile.TarInfo('m%d'%n)\n    t.addfile(i,io.BytesIO(b''))\nt.close()\n",
        &[],
    );
    refused(&d, "p.ova", &["more than 1024 members", "m1024"]);
}

#[test]
fn a_package_without_a_disk_is_refused() {
    let d = Dir::new();
    std::fs::write(d.path("p.ovf"), "<Envelope/>").unwrap();
    tar(&d, &["cf", "p.ova", "p.ovf"]);
    let err = d.kiln_err(&["info", "p.ova"], 2);
    assert!(err.contains("no disk member"), "{err}");
}

#[test]
fn the_member_bytes_are_what_tar_extracts() {
    // The view reads exactly the member: kiln's raw copy of `--member -f raw` equals the
    // file GNU tar extracts.
    let d = Dir::new();
    qemu_stream_vmdk(&d);
    tar(&d, &["cf", "p.ova", "disk.vmdk"]);
    std::fs::create_dir(d.path("x")).unwrap();
    tar(&d, &["xf", "p.ova", "-C", "x"]);
    d.kiln_ok(&[
        "convert",
        "--member",
        "disk.vmdk",
        "-f",
        "raw",
        "p.ova",
        "member.bin",
    ]);
    assert_same_file(&d.path("member.bin"), Path::new(&d.path("x/disk.vmdk")));
}
