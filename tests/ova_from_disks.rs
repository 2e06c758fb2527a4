//! `kiln ova --disk ... -o X.ova|X.ovf`: a package from existing images, no spec. check-ova
//! accepts it for VMware and VirtualBox, `qemu-img compare` finds each VMDK inside equal to
//! its source image, nothing but the package is written, and bad requests write nothing.

use std::path::Path;

use crate::util::{
    Dir, check_image, check_ova, describe, names_in, python, run_ok, sparse_raw, tar_extract,
};

fn sources(d: &Dir) {
    sparse_raw(&d.path("root.raw"), 24 << 20, 20, 7);
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            d.path("root.raw").to_str().unwrap(),
            d.path("root.qcow2").to_str().unwrap(),
        ],
    );
    sparse_raw(&d.path("data.raw"), 8 << 20, 5, 8);
}

fn same_image(a: &Path, b: &Path) {
    let out = run_ok(
        "qemu-img",
        &["compare", a.to_str().unwrap(), b.to_str().unwrap()],
    );
    assert!(out.contains("Images are identical"), "{out}");
}

#[test]
fn an_ova_from_two_images_imports_and_holds_their_bytes() {
    let d = Dir::new();
    sources(&d);
    std::fs::create_dir_all(d.path("out")).unwrap();
    let args = [
        "ova",
        "--disk",
        "root.qcow2",
        "--disk",
        "data.raw",
        "--cpus",
        "2",
        "--memory",
        "2GiB",
        "--os",
        "ubuntu-64",
        "-o",
        "out/app.ova",
    ];
    let stdout = d.kiln_ok(&args);
    assert_eq!(stdout.trim(), "out/app.ova");
    assert_eq!(
        names_in(&d.path("out")),
        ["app.ova"],
        "only the package is written"
    );
    check_ova(&d.path("out/app.ova"), "vmware");
    let x = d.path("x");
    tar_extract(&d.path("out/app.ova"), &x);
    same_image(&d.path("root.qcow2"), &x.join("app-disk1.vmdk"));
    same_image(&d.path("data.raw"), &x.join("app-disk2.vmdk"));
    let ovf = std::fs::read_to_string(x.join("app.ovf")).unwrap();
    assert!(
        ovf.contains("<rasd:VirtualQuantity>2</rasd:VirtualQuantity>"),
        "{ovf}"
    );
    assert!(ovf.contains("ubuntu64Guest"), "{ovf}");
    let out = d.kiln_ok(&["verify", "out/app.ova"]);
    assert!(out.contains("OK (0 errors"), "{out}");
    // Refused without --force; replaced with it.
    let again = d.kiln(&args);
    assert!(!again.status.success(), "{}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists; pass --force"));
    let mut forced = args.to_vec();
    forced.push("--force");
    d.kiln_ok(&forced);
}

#[test]
fn an_ovf_for_virtualbox_writes_its_files_side_by_side() {
    let d = Dir::new();
    sources(&d);
    d.kiln_ok(&[
        "ova",
        "--disk",
        "root.raw",
        "--target",
        "virtualbox",
        "-o",
        "vb.ovf",
    ]);
    check_ova(&d.path("vb.ovf"), "virtualbox");
    same_image(&d.path("root.raw"), &d.path("vb-disk1.vmdk"));
    assert!(d.path("vb.mf").exists());
    assert!(!d.path("SHA256SUMS").exists());
}

#[test]
fn a_missing_disk_or_a_bad_output_name_writes_nothing() {
    let d = Dir::new();
    sources(&d);
    for (args, wanted) in [
        (
            vec!["ova", "--disk", "nope.qcow2", "-o", "a.ova"],
            "nope.qcow2",
        ),
        (
            vec!["ova", "--disk", "root.raw", "-o", "a.tar"],
            "must end in .ova or .ovf",
        ),
        (
            vec!["ova", "--disk", "root.raw", "--cpus", "0", "-o", "a.ova"],
            "vm.cpus",
        ),
    ] {
        let out = d.kiln(&args);
        assert!(!out.status.success(), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(wanted), "{err}");
        assert!(!d.path("a.ova").exists() && !d.path("a.tar").exists());
    }
}

#[test]
fn a_target_profile_sets_the_hardware_family_an_importer_accepts() {
    let d = Dir::new();
    sources(&d);
    d.kiln_ok(&[
        "ova",
        "--disk",
        "root.qcow2",
        "--target",
        "esxi-6.7",
        "-o",
        "app.ova",
    ]);
    check_ova(&d.path("app.ova"), "vmware");
    // The descriptor, read by python's tar and XML readers, not by kiln.
    let family = run_ok(
        "python3",
        &[
            "-c",
            "import sys, tarfile, xml.etree.ElementTree as ET\n\
             t = tarfile.open(sys.argv[1])\n\
             root = ET.fromstring(t.extractfile('app.ovf').read())\n\
             print([e.text for e in root.iter() if e.tag.endswith('}VirtualSystemType')][0])",
            d.path("app.ova").to_str().unwrap(),
        ],
    );
    assert_eq!(family.trim(), "vmx-14", "ESXi 6.7 accepts at most vmx-14");
    let err = d.kiln_err(
        &[
            "ova",
            "--disk",
            "root.qcow2",
            "--target",
            "esxi-9",
            "-o",
            "b.ova",
        ],
        2,
    );
    assert!(err.contains("esxi-9"), "{err}");
    assert!(!d.path("b.ova").exists());
}

/// A 9 GiB sparse disk: the package stays plain ustar (no PAX header) that GNU tar and
/// Python's tarfile list with the member's true size, and the VMDK inside holds the disk.
#[test]
fn a_9_gib_sparse_disk_travels_in_a_plain_tar() {
    let d = Dir::new();
    let size: u64 = 9 << 30;
    sparse_raw(&d.path("big.raw"), size, 12, 21);
    d.kiln_ok(&["ova", "--disk", "big.raw", "-o", "big.ova"]);
    let listing = run_ok("tar", &["-tvf", d.path("big.ova").to_str().unwrap()]);
    // Python's tarfile: every member, its size and type, and any PAX headers it met.
    let members = python(
        d.tmp.path(),
        "import tarfile\n\
         t = tarfile.open('big.ova')\n\
         for m in t.getmembers():\n    \
             print(m.name, m.size, m.isreg(), bool(m.pax_headers))\n\
         print('pax', bool(t.pax_headers))",
        &[],
    );
    let lines: Vec<&str> = members.lines().collect();
    assert_eq!(lines.len(), 4, "{members}");
    assert_eq!(lines[3], "pax False", "{members}");
    let names = ["big.ovf", "big.mf", "big-disk1.vmdk"];
    for (line, name) in lines.iter().zip(names) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], name, "{members}");
        assert_eq!(&fields[2..], ["True", "False"], "{members}");
        // GNU tar lists the same size.
        let size_in_listing = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or_else(|| panic!("{name} not in tar -tvf:\n{listing}"));
        assert_eq!(size_in_listing, fields[1], "{listing}");
    }
    assert!(!listing.contains("PaxHeader"), "{listing}");
    let x = d.path("x");
    tar_extract(&d.path("big.ova"), &x);
    // check-image's structure checks, and qemu-img's reading of the bytes (7-Zip and libyal
    // would each stream all 9 GiB of holes).
    check_image(
        "vmdk",
        Some("streamOptimized"),
        &x.join("big-disk1.vmdk"),
        None,
        &["--virtual-size", &size.to_string()],
    );
    same_image(&d.path("big.raw"), &x.join("big-disk1.vmdk"));
    check_ova(&d.path("big.ova"), "vmware");
}
