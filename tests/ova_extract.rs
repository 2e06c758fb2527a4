//! `kiln extract X.ova -d DIR`: the files it writes are byte-equal to what GNU tar extracts,
//! the VMDK passes check-image, `--all` writes exactly the members `tar -tf` lists, a member
//! tampered with (python tarfile) fails its manifest digest and leaves no file, existing
//! files need --force, and a hostile archive (`../x`, made with python tarfile) writes
//! nothing outside DIR.

use std::path::Path;

use crate::util::{Dir, check_image, names_in, python, run_ok, sparse_raw, tar_extract};

/// `cmp A B` (diffutils) finds the files byte-identical.
fn assert_same_file(a: &Path, b: &Path) {
    run_ok("cmp", &[a.to_str().unwrap(), b.to_str().unwrap()]);
}

/// `app.ova` with one disk, made by `kiln ova`; returns its members per `tar -tf`.
fn package(d: &Dir) -> Vec<String> {
    sparse_raw(&d.path("root.raw"), 16 << 20, 12, 3);
    d.kiln_ok(&["ova", "--disk", "root.raw", "-o", "app.ova", "-q"]);
    tar_list(&d.path("app.ova"))
}

/// The package's (one) disk member.
fn disk_member(members: &[String]) -> String {
    members
        .iter()
        .find(|m| m.ends_with(".vmdk"))
        .unwrap()
        .clone()
}

fn tar_list(ova: &Path) -> Vec<String> {
    let out = run_ok("tar", &["-tf", ova.to_str().unwrap()]);
    out.lines().map(str::to_string).collect()
}

#[test]
fn the_disk_equals_what_gnu_tar_extracts_and_passes_check_image() {
    let d = Dir::new();
    let members = package(&d);
    let disk = &disk_member(&members);
    let stdout = d.kiln_ok(&["extract", "app.ova", "-d", "out"]);
    assert!(stdout.contains("SHA256 matches the manifest"), "{stdout}");
    assert_eq!(
        names_in(&d.path("out")),
        [disk.as_str()],
        "only the disk by default"
    );
    tar_extract(&d.path("app.ova"), &d.path("gnu"));
    assert_same_file(&d.path("out").join(disk), &d.path("gnu").join(disk));
    check_image(
        "vmdk",
        Some("streamOptimized"),
        &d.path("out").join(disk),
        Some(&d.path("root.raw")),
        &[],
    );
}

#[test]
fn all_writes_exactly_what_tar_lists() {
    let d = Dir::new();
    let mut members = package(&d);
    d.kiln_ok(&["extract", "app.ova", "-d", "out", "--all"]);
    members.sort();
    assert_eq!(names_in(&d.path("out")), members);
    tar_extract(&d.path("app.ova"), &d.path("gnu"));
    for m in &members {
        assert_same_file(&d.path("out").join(m), &d.path("gnu").join(m));
    }
}

#[test]
fn a_tampered_member_fails_its_digest_and_leaves_no_file() {
    let d = Dir::new();
    let members = package(&d);
    let disk = disk_member(&members);
    // Rewrite the archive with one byte of the disk flipped, lengths and order kept.
    let script = r#"import sys, tarfile, io
src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(src) as t, tarfile.open(dst, 'w', format=tarfile.USTAR_FORMAT) as o:
    for m in t.getmembers():
        data = bytearray(t.extractfile(m).read())
        if m.name.endswith('.vmdk'):
            data[len(data) // 2] ^= 0xff
        o.addfile(m, io.BytesIO(bytes(data)))
"#;
    python(
        &d.path("."),
        script,
        &[
            d.path("app.ova").to_str().unwrap(),
            d.path("bad.ova").to_str().unwrap(),
        ],
    );
    let err = d.kiln_err(&["extract", "bad.ova", "-d", "out"], 1);
    assert!(err.contains("bad.ova"), "{err}");
    assert!(err.contains(&format!("member `{disk}`")), "{err}");
    assert!(err.contains("does not match"), "{err}");
    assert_eq!(
        names_in(&d.path("out")),
        Vec::<String>::new(),
        "nothing left"
    );
}

#[test]
fn an_existing_file_is_refused_without_force() {
    let d = Dir::new();
    let members = package(&d);
    let disk = disk_member(&members);
    std::fs::create_dir(d.path("out")).unwrap();
    std::fs::write(d.path("out").join(&disk), b"mine").unwrap();
    let err = d.kiln_err(&["extract", "app.ova", "-d", "out"], 2);
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains(&disk), "{err}");
    assert_eq!(std::fs::read(d.path("out").join(&disk)).unwrap(), b"mine");
    d.kiln_ok(&["extract", "app.ova", "-d", "out", "--force"]);
    tar_extract(&d.path("app.ova"), &d.path("gnu"));
    assert_same_file(&d.path("out").join(&disk), &d.path("gnu").join(&disk));
}

#[test]
fn a_symlink_in_dir_is_replaced_never_followed() {
    let d = Dir::new();
    let members = package(&d);
    let disk = disk_member(&members);
    std::fs::create_dir(d.path("out")).unwrap();
    std::fs::write(d.path("victim"), b"keep").unwrap();
    std::os::unix::fs::symlink(d.path("victim"), d.path("out").join(&disk)).unwrap();
    let partial = format!("{disk}.partial");
    std::os::unix::fs::symlink(d.path("victim"), d.path("out").join(&partial)).unwrap();
    d.kiln_err(&["extract", "app.ova", "-d", "out"], 2);
    d.kiln_ok(&["extract", "app.ova", "-d", "out", "--force"]);
    assert_eq!(std::fs::read(d.path("victim")).unwrap(), b"keep");
    let meta = std::fs::symlink_metadata(d.path("out").join(&disk)).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the link was replaced by the file"
    );
}

#[test]
fn a_hostile_member_writes_nothing_outside_dir() {
    let d = Dir::new();
    let script = r#"import sys, tarfile, io
with tarfile.open(sys.argv[1], 'w', format=tarfile.USTAR_FORMAT) as o:
    for name in ['a.ovf', '../x', 'b.vmdk']:
        data = b'payload'
        i = tarfile.TarInfo(name); i.size = len(data)
        o.addfile(i, io.BytesIO(data))
"#;
    std::fs::create_dir(d.path("work")).unwrap();
    python(
        &d.path("."),
        script,
        &[d.path("work/evil.ova").to_str().unwrap()],
    );
    let err = d.kiln_err(&["extract", "work/evil.ova", "-d", "work/out", "--all"], 1);
    assert!(err.contains("evil.ova"), "{err}");
    assert!(err.contains("../x"), "{err}");
    assert!(!d.path("x").exists() && !d.path("work/x").exists());
    assert!(!d.path("work/out").exists(), "refused before DIR is made");
    assert_eq!(names_in(&d.path("work")), ["evil.ova"]);
}
