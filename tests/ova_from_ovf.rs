//! `kiln ova --from-ovf dir/x.ovf -o y.ova|y.ovf`: an existing OVF repacked. The oracles:
//! check-ova (schema, tar layout, manifest, importer rules), GNU tar, `qemu-img compare`
//! and `qemu-img info` for the disks, Python's xml.etree for what the descriptor still
//! says, openssl for the signature. Refusals write nothing.

use std::path::Path;

use serde_json::Value;

use crate::util::{
    Dir, assert_same_file, check_ova, describe, names_in, openssl_key_and_cert,
    openssl_verifies_cert, oracle, python, run_ok, sha256, sparse_raw, tar_extract,
};

const STREAM_VMDK: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// Python's view of a descriptor: VirtualSystem ids, hardware items, networks, product
/// properties, and the References/DiskSection attributes, for two descriptors.
const SUMMARY: &str = r#"
import json, sys, xml.etree.ElementTree as ET
OVF = ('{http://schemas.dmtf.org/ovf/envelope/1}', '{http://schemas.dmtf.org/ovf/envelope/2}')
def local(tag): return tag.rsplit('}', 1)[-1]
def ovf(el, name):
    for k, v in el.attrib.items():
        if k in (OVF[0] + name, OVF[1] + name): return v
    return None
def summary(path):
    root = ET.parse(path).getroot()
    every = list(root.iter())
    named = lambda *names: [e for e in every if local(e.tag) in names]
    return {
        'systems': [ovf(e, 'id') for e in named('VirtualSystem', 'VirtualSystemCollection')],
        'items': [sorted((local(c.tag), (c.text or '').strip()) for c in e)
                  for e in named('Item', 'StorageItem', 'EthernetPortItem')],
        'networks': [ovf(e, 'name') for e in named('Network')],
        'properties': [[ovf(e, 'key'), ovf(e, 'type'), ovf(e, 'value')] for e in named('Property')],
        'files': [{k: ovf(f, k) for k in ('id', 'href', 'size', 'compression', 'chunkSize')}
                  for s in root if local(s.tag) == 'References' for f in s],
        'disks': [{k: ovf(d, k) for k in ('diskId', 'fileRef', 'capacity',
                   'capacityAllocationUnits', 'format', 'populatedSize')}
                  for s in root if local(s.tag) == 'DiskSection' for d in s if local(d.tag) == 'Disk'],
    }
print(json.dumps([summary(sys.argv[1]), summary(sys.argv[2])]))
"#;

/// `(before, after)` summaries of two descriptors, by Python.
fn summaries(d: &Dir, before: &Path, after: &Path) -> (Value, Value) {
    let out = python(
        d.path("").as_path(),
        SUMMARY,
        &[before.to_str().unwrap(), after.to_str().unwrap()],
    );
    let mut both: Vec<Value> = serde_json::from_str(&out).unwrap();
    let after = both.pop().unwrap();
    (both.pop().unwrap(), after)
}

/// The descriptor parts a repack must keep are the same.
fn assert_kept(before: &Value, after: &Value) {
    for key in ["systems", "items", "networks", "properties"] {
        assert_eq!(before[key], after[key], "{key} changed");
    }
    assert!(before["systems"].as_array().is_some_and(|s| !s.is_empty()));
}

/// qemu-img's virtual size of `image`.
fn virtual_size(image: &Path) -> u64 {
    let out = run_ok(
        "qemu-img",
        &["info", "--output", "json", image.to_str().unwrap()],
    );
    let info: Value = serde_json::from_str(&out).unwrap();
    info["virtual-size"].as_u64().unwrap()
}

fn same_image(a: &Path, b: &Path) {
    let out = run_ok(
        "qemu-img",
        &["compare", a.to_str().unwrap(), b.to_str().unwrap()],
    );
    assert!(out.contains("Images are identical"), "{out}");
}

fn qemu_convert(from: &Path, fmt: &str, options: &[&str], to: &Path) {
    let mut args = vec!["convert", "-f", "raw", "-O", fmt];
    args.extend_from_slice(options);
    args.extend([from.to_str().unwrap(), to.to_str().unwrap()]);
    run_ok("qemu-img", &args);
}

/// The new File and Disk attributes: each File's size is its member's length in `dir`,
/// each Disk's capacity is in bytes, with units, and equals its VMDK's size.
fn assert_new_attributes(after: &Value, dir: &Path) {
    for f in after["files"].as_array().unwrap() {
        let href = f["href"].as_str().unwrap();
        let len = std::fs::metadata(dir.join(href)).unwrap().len();
        assert_eq!(f["size"].as_str().unwrap().trim(), len.to_string(), "{f}");
        assert!(
            f["compression"].is_null() && f["chunkSize"].is_null(),
            "{f}"
        );
    }
    for disk in after["disks"].as_array().unwrap() {
        let Some(file_ref) = disk["fileRef"].as_str().filter(|r| !r.is_empty()) else {
            continue;
        };
        let file = (after["files"].as_array().unwrap().iter())
            .find(|f| f["id"] == file_ref)
            .unwrap();
        let vmdk = dir.join(file["href"].as_str().unwrap());
        assert!(vmdk.to_str().unwrap().ends_with(".vmdk"), "{file}");
        assert_eq!(disk["capacityAllocationUnits"], "byte", "{disk}");
        assert_eq!(disk["format"], STREAM_VMDK, "{disk}");
        let capacity: u64 = disk["capacity"].as_str().unwrap().parse().unwrap();
        assert_eq!(capacity, virtual_size(&vmdk), "{disk}");
    }
}

/// A directory OVF written by `kiln build` whose first disk is replaced by a qcow2 and the
/// second by a monolithicSparse VMDK, both made by qemu-img. Returns the raw sources.
fn built_ovf(d: &Dir) -> [std::path::PathBuf; 2] {
    let root = sparse_raw(&d.path("root.raw"), 24 << 20, 20, 11);
    let data = sparse_raw(&d.path("data.raw"), 8 << 20, 5, 12);
    let spec = "name: app\nnetworks: [ { name: LAN } ]\ndisks:\n  - name: root\n    source: { file: root.raw }\n  - name: data\n    source: { file: data.raw }\noutputs:\n  - { disk_format: vmdk, container_format: ovf }\n";
    std::fs::write(d.path("spec.yaml"), spec).unwrap();
    d.kiln_ok(&["build", "spec.yaml", "-o", "src"]);
    let src = d.path("src");
    qemu_convert(&root, "qcow2", &[], &src.join("root.qcow2"));
    qemu_convert(
        &data,
        "vmdk",
        &["-o", "subformat=monolithicSparse"],
        &src.join("data-sparse.vmdk"),
    );
    for name in ["app-disk1.vmdk", "app-disk2.vmdk", "app.mf"] {
        std::fs::remove_file(src.join(name)).unwrap();
    }
    let ovf = std::fs::read_to_string(src.join("app.ovf")).unwrap();
    let ovf = ovf
        .replace("\"app-disk1.vmdk\"", "\"root.qcow2\"")
        .replace("\"app-disk2.vmdk\"", "\"data-sparse.vmdk\"");
    std::fs::write(src.join("app.ovf"), ovf).unwrap();
    [root, data]
}

#[test]
fn a_built_ovf_with_qcow2_and_sparse_vmdk_disks_repacks_into_an_importable_ova() {
    let d = Dir::new();
    let [root, data] = built_ovf(&d);
    std::fs::create_dir(d.path("out")).unwrap();
    let stdout = d.kiln_ok(&["ova", "--from-ovf", "src/app.ovf", "-o", "out/new.ova"]);
    assert_eq!(stdout.trim(), "out/new.ova");
    assert_eq!(names_in(&d.path("out")), ["new.ova"]);
    check_ova(&d.path("out/new.ova"), "vmware");
    // The same inputs give the same bytes.
    let first = sha256(&d.path("out/new.ova"));
    d.kiln_ok(&[
        "ova",
        "--from-ovf",
        "src/app.ovf",
        "-o",
        "out/new.ova",
        "--force",
    ]);
    assert_eq!(sha256(&d.path("out/new.ova")), first);
    let out = d.kiln_ok(&["verify", "out/new.ova"]);
    assert!(out.contains("OK (0 errors"), "{out}");
    let x = d.path("x");
    tar_extract(&d.path("out/new.ova"), &x);
    let mut members = names_in(&x);
    members.sort();
    assert_eq!(
        members,
        ["data-sparse.vmdk", "new.mf", "new.ovf", "root.vmdk"]
    );
    same_image(&root, &x.join("root.vmdk"));
    same_image(&data, &x.join("data-sparse.vmdk"));
    let (before, after) = summaries(&d, &d.path("src/app.ovf"), &x.join("new.ovf"));
    assert_kept(&before, &after);
    assert_new_attributes(&after, &x);
}

#[test]
fn a_directory_ovf_output_writes_its_files_side_by_side() {
    let d = Dir::new();
    let [root, _] = built_ovf(&d);
    std::fs::create_dir(d.path("out")).unwrap();
    d.kiln_ok(&[
        "ova",
        "--from-ovf",
        "src/app.ovf",
        "--manifest",
        "sha1",
        "-o",
        "out/new.ovf",
    ]);
    assert_eq!(
        names_in(&d.path("out")),
        ["data-sparse.vmdk", "new.mf", "new.ovf", "root.vmdk"]
    );
    check_ova(&d.path("out/new.ovf"), "vmware");
    let mf = std::fs::read_to_string(d.path("out/new.mf")).unwrap();
    assert!(mf.starts_with("SHA1(new.ovf)= "), "{mf}");
    same_image(&root, &d.path("out/root.vmdk"));
}

/// A copy of real-world descriptor `name` in `d/src` with a qemu-img-made disk of the
/// declared capacity for each of its Files (`(href, bytes, qemu-img format)`).
fn real_world(d: &Dir, name: &str, disks: &[(&str, u64, &str)]) -> Vec<std::path::PathBuf> {
    let src = d.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ovf");
    std::fs::copy(data.join(name), src.join(name)).unwrap();
    let mut raws = Vec::new();
    for (i, (href, size, fmt)) in disks.iter().enumerate() {
        let raw = sparse_raw(&d.path(&format!("disk{i}.raw")), *size, 6, 20 + i as u64);
        qemu_convert(&raw, fmt, &[], &src.join(href));
        raws.push(raw);
    }
    raws
}

#[test]
fn a_vmware_export_repacks_and_keeps_its_descriptor() {
    let d = Dir::new();
    // ESXi's export: one 16 GiB disk; here a qcow2 under the VMDK's name.
    let raws = real_world(
        &d,
        "esxi-photon.ovf",
        &[("photon-disk1.vmdk", 16 << 30, "qcow2")],
    );
    d.kiln_ok(&[
        "ova",
        "--from-ovf",
        "src/esxi-photon.ovf",
        "-o",
        "photon.ova",
    ]);
    check_ova(&d.path("photon.ova"), "vmware");
    check_ova(&d.path("photon.ova"), "virtualbox");
    let out = d.kiln_ok(&["verify", "--target", "esxi-7", "photon.ova"]);
    assert!(out.contains("OK (0 errors"), "{out}");
    let x = d.path("x");
    tar_extract(&d.path("photon.ova"), &x);
    same_image(&raws[0], &x.join("photon-disk1.vmdk"));
    let (before, after) = summaries(&d, &d.path("src/esxi-photon.ovf"), &x.join("photon.ovf"));
    assert_kept(&before, &after);
    assert_new_attributes(&after, &x);
    // The source said populatedSize; it now counts the new disk's data, within capacity.
    let populated: u64 = after["disks"][0]["populatedSize"]
        .as_str()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(populated > 0 && populated < 16 << 30, "{populated}");
    // Everything outside File and Disk is byte for byte the source.
    let source = std::fs::read_to_string(d.path("src/esxi-photon.ovf")).unwrap();
    let new = std::fs::read_to_string(x.join("photon.ovf")).unwrap();
    let (_, tail) = source.split_once("</DiskSection>").unwrap();
    assert!(new.ends_with(tail));
}

/// check-ova's failed checks (name and message) for `path` under `profile`.
fn failures(path: &Path, profile: &str, descriptor_only: bool) -> Vec<(String, String)> {
    let mut cmd = std::process::Command::new(oracle("check-ova"));
    cmd.args(["--json", "--profile", profile]);
    if descriptor_only {
        cmd.arg("--descriptor-only");
    }
    let out = cmd.arg(path).output().unwrap();
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    (report["checks"].as_array().unwrap().iter())
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            let name = c["check"].as_str().unwrap().to_string();
            (name, c["message"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn a_virtualbox_export_repacks_with_no_new_findings() {
    let d = Dir::new();
    let raws = real_world(
        &d,
        "virtualbox-5.2-centos7.ovf",
        &[("centos7-disk001.vmdk", 64 << 30, "vmdk")],
    );
    let descriptor = d.path("src/virtualbox-5.2-centos7.ovf");
    d.kiln_ok(&[
        "ova",
        "--from-ovf",
        descriptor.to_str().unwrap(),
        "-o",
        "vb.ova",
    ]);
    // VirtualBox 5.2's own descriptor breaks three generic rules (MegaBytes memory, a sound
    // card item, `/disk/vmdisk1` host resources) that VirtualBox itself accepts. The repack
    // keeps the descriptor, so those stay and nothing else may fail: tar, schema,
    // VirtualBox's importer rules and the package checks pass.
    let source = failures(&descriptor, "virtualbox", true);
    let package = failures(&d.path("vb.ova"), "virtualbox", false);
    assert_eq!(package, source);
    assert!(
        package.iter().all(|(c, _)| c.starts_with("hw.")),
        "{package:?}"
    );
    let out = d.kiln_ok(&["verify", "--target", "virtualbox-7", "vb.ova"]);
    assert!(out.contains("OK (0 errors"), "{out}");
    let x = d.path("x");
    tar_extract(&d.path("vb.ova"), &x);
    same_image(&raws[0], &x.join("centos7-disk001.vmdk"));
    let (before, after) = summaries(&d, &descriptor, &x.join("vb.ovf"));
    assert_kept(&before, &after);
    assert_new_attributes(&after, &x);
    let ovf = std::fs::read_to_string(x.join("vb.ovf")).unwrap();
    assert!(ovf.contains("vbox:uuid=\"a80fb9c1-b029-4bf3-855e-79830aeeaade\""));
}

/// `kiln inspect --output json` of `path`: machines, disk ids and capacities, networks and
/// properties.
fn inspected(d: &Dir, path: &str) -> Value {
    let out = d.kiln_ok(&["inspect", "--output", "json", path]);
    let report: Value = serde_json::from_str(&out).unwrap();
    let disks: Vec<Value> = (report["disks"].as_array().unwrap().iter())
        .map(|disk| serde_json::json!([disk["id"], disk["capacity_bytes"]]))
        .collect();
    serde_json::json!({
        "machines": report["machines"],
        "disks": disks,
        "networks": report["networks"],
        "properties": report["properties"],
    })
}

#[test]
fn inspect_sees_the_same_appliance_after_a_round_trip() {
    let d = Dir::new();
    // ova-compose's descriptor: properties, `byte * 2^30` capacities, populatedSize and a
    // Disk with an empty fileRef (created at import, left as it is).
    let name = "ova-compose-vcf-license-server.ovf";
    real_world(
        &d,
        name,
        &[
            (
                "Vcf-License-Server-9.1.0.0.25262073-disk1.vmdk",
                4 << 30,
                "vmdk",
            ),
            (
                "Vcf-License-Server-9.1.0.0.25262073-disk2.vmdk",
                1 << 30,
                "raw",
            ),
        ],
    );
    let before = inspected(&d, &format!("src/{name}"));
    d.kiln_ok(&["ova", "--from-ovf", &format!("src/{name}"), "-o", "vcf.ova"]);
    let after = inspected(&d, "vcf.ova");
    assert_eq!(before, after);
    assert!(before["properties"].as_array().is_some_and(|p| p.len() > 3));
    let x = d.path("x");
    tar_extract(&d.path("vcf.ova"), &x);
    assert_eq!(
        virtual_size(&x.join("Vcf-License-Server-9.1.0.0.25262073-disk2.vmdk")),
        4 << 30,
        "a smaller image grows to the declared capacity"
    );
}

#[test]
fn a_signed_repack_with_an_iso_has_a_certificate_openssl_verifies() {
    let d = Dir::new();
    built_ovf(&d);
    // A file no Disk names (a seed ISO) is copied unchanged, in References order.
    d.kiln_ok(&["seed", "--hostname", "h", "-o", "src/seed.iso"]);
    edit_descriptor(
        &d,
        "</References>",
        "  <File ovf:href=\"seed.iso\" ovf:id=\"file9\"/>\n  </References>",
    );
    openssl_key_and_cert(&d.path("key.pem"), &d.path("cert.pem"), "kiln from-ovf");
    d.kiln_ok(&[
        "ova",
        "--from-ovf",
        "src/app.ovf",
        "--sign-key",
        "key.pem",
        "--sign-cert",
        "cert.pem",
        "-o",
        "signed.ova",
    ]);
    check_ova(&d.path("signed.ova"), "vmware");
    let x = d.path("x");
    tar_extract(&d.path("signed.ova"), &x);
    openssl_verifies_cert(&x.join("signed.cert"), &x.join("signed.mf"));
    let listing = run_ok("tar", &["-tf", d.path("signed.ova").to_str().unwrap()]);
    let order: Vec<&str> = listing.lines().collect();
    assert_eq!(
        order,
        [
            "signed.ovf",
            "signed.mf",
            "signed.cert",
            "root.vmdk",
            "data-sparse.vmdk",
            "seed.iso"
        ]
    );
    assert_same_file(&d.path("src/seed.iso"), &x.join("seed.iso"));
}

/// Runs `kiln ova --from-ovf src/app.ovf -o out.ova`, expecting a one-line error that
/// holds each of `wanted`, and no new file anywhere.
#[test]
fn a_disk_in_chunks_is_read_from_its_chunks() {
    let d = Dir::new();
    let [root, _] = built_ovf(&d);
    // GNU split makes the chunks as DSP0243 names them: HREF.000000000, HREF.000000001, ...
    run_ok(
        "split",
        &[
            "-b",
            "65536",
            "-d",
            "-a",
            "9",
            d.path("src/root.qcow2").to_str().unwrap(),
            d.path("src/root.qcow2.").to_str().unwrap(),
        ],
    );
    std::fs::remove_file(d.path("src/root.qcow2")).unwrap();
    assert!(d.path("src/root.qcow2.000000002").exists());
    edit_descriptor(
        &d,
        "ovf:href=\"root.qcow2\"",
        "ovf:href=\"root.qcow2\" ovf:chunkSize=\"65536\"",
    );
    d.kiln_ok(&["ova", "--from-ovf", "src/app.ovf", "-o", "joined.ova"]);
    check_ova(&d.path("joined.ova"), "vmware");
    let x = d.path("x");
    tar_extract(&d.path("joined.ova"), &x);
    same_image(&root, &x.join("root.vmdk"));
    let ovf = std::fs::read_to_string(x.join("joined.ovf")).unwrap();
    assert!(!ovf.contains("chunkSize"), "{ovf}");
    // A middle chunk cut short is refused, naming it.
    std::fs::remove_file(d.path("joined.ova")).unwrap();
    let chunk = std::fs::OpenOptions::new()
        .write(true)
        .open(d.path("src/root.qcow2.000000001"))
        .unwrap();
    chunk.set_len(1000).unwrap();
    refused(
        &d,
        &[],
        &["src/app.ovf", "root.qcow2.000000001", "not the chunk size"],
    );
}

fn refused(d: &Dir, extra: &[&str], wanted: &[&str]) {
    let before = (names_in(&d.path("")), names_in(&d.path("src")));
    let mut args = vec!["ova", "--from-ovf", "src/app.ovf", "-o", "out.ova"];
    args.extend_from_slice(extra);
    let out = d.kiln(&args);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for w in wanted {
        assert!(err.contains(w), "{w} not in {err}");
    }
    assert_eq!((names_in(&d.path("")), names_in(&d.path("src"))), before);
}

fn edit_descriptor(d: &Dir, from: &str, to: &str) {
    let path = d.path("src/app.ovf");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn refusals_name_the_descriptor_and_the_element_and_write_nothing() {
    let d = Dir::new();
    built_ovf(&d);
    let original = std::fs::read_to_string(d.path("src/app.ovf")).unwrap();
    let reset = || std::fs::write(d.path("src/app.ovf"), &original).unwrap();

    std::fs::rename(d.path("src/root.qcow2"), d.path("src/moved.qcow2")).unwrap();
    refused(
        &d,
        &[],
        &["src/app.ovf", "file1", "root.qcow2", "not a regular file"],
    );
    // A symlink could lead anywhere; only regular files beside the descriptor are read.
    std::os::unix::fs::symlink("../root.raw", d.path("src/root.qcow2")).unwrap();
    refused(
        &d,
        &[],
        &["src/app.ovf", "file1", "root.qcow2", "not a regular file"],
    );
    std::fs::remove_file(d.path("src/root.qcow2")).unwrap();
    std::fs::rename(d.path("src/moved.qcow2"), d.path("src/root.qcow2")).unwrap();

    edit_descriptor(&d, "\"root.qcow2\"", "\"../root.raw\"");
    refused(
        &d,
        &[],
        &["src/app.ovf", "file1", "../root.raw", "not a file name"],
    );
    reset();

    edit_descriptor(
        &d,
        "<Envelope",
        "<!DOCTYPE Envelope [<!ENTITY x \"y\">]>\n<Envelope",
    );
    refused(&d, &[], &["src/app.ovf", "DOCTYPE"]);
    reset();

    edit_descriptor(&d, "ovf:fileRef=\"file2\"", "ovf:fileRef=\"file9\"");
    refused(&d, &[], &["src/app.ovf", "vmdisk2", "file9"]);
    reset();

    // A capacity below the image's size: the disk would be cut.
    let text = std::fs::read_to_string(d.path("src/app.ovf")).unwrap();
    let disk1: String = text
        .lines()
        .find(|l| l.contains("ovf:diskId=\"vmdisk1\""))
        .unwrap()
        .to_string();
    let small = format!(
        "<Disk ovf:capacity=\"1048576\" ovf:capacityAllocationUnits=\"byte\" ovf:diskId=\"vmdisk1\" ovf:fileRef=\"file1\" ovf:format=\"{STREAM_VMDK}\"/>"
    );
    std::fs::write(d.path("src/app.ovf"), text.replace(disk1.trim(), &small)).unwrap();
    refused(
        &d,
        &[],
        &[
            "src/app.ovf",
            "vmdisk1",
            "root.qcow2",
            "larger than the declared",
        ],
    );
    reset();

    std::fs::write(d.path("out.ova"), b"keep").unwrap();
    let out = d.kiln(&["ova", "--from-ovf", "src/app.ovf", "-o", "out.ova"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists; pass --force"), "{err}");
    assert_eq!(std::fs::read(d.path("out.ova")).unwrap(), b"keep");
    d.kiln_ok(&[
        "ova",
        "--from-ovf",
        "src/app.ovf",
        "-o",
        "out.ova",
        "--force",
    ]);
    check_ova(&d.path("out.ova"), "vmware");
}

#[test]
fn the_source_manifest_must_still_hold() {
    let d = Dir::new();
    built_ovf(&d);
    // The source's manifest, written with openssl in SHA1 (ovftool's old default).
    let mut mf = String::new();
    for name in ["app.ovf", "root.qcow2", "data-sparse.vmdk"] {
        let path = d.path(&format!("src/{name}"));
        let out = run_ok("openssl", &["dgst", "-sha1", "-r", path.to_str().unwrap()]);
        let hex = out.split_whitespace().next().unwrap();
        mf.push_str(&format!("SHA1({name})= {hex}\n"));
    }
    std::fs::write(d.path("src/app.mf"), &mf).unwrap();
    d.kiln_ok(&["ova", "--from-ovf", "src/app.ovf", "-o", "ok.ova"]);
    check_ova(&d.path("ok.ova"), "vmware");
    std::fs::remove_file(d.path("ok.ova")).unwrap();

    // One byte of the qcow2 changed after the manifest was made (inside its data, so the
    // image still opens).
    let qcow2 = d.path("src/root.qcow2");
    let mut bytes = std::fs::read(&qcow2).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0xff;
    std::fs::write(&qcow2, &bytes).unwrap();
    refused(
        &d,
        &[],
        &["app.mf:2", "`root.qcow2`", "SHA1 digest", "remove"],
    );
    bytes[at] ^= 0xff;
    std::fs::write(&qcow2, &bytes).unwrap();

    // A line naming a file that is not the package's is never read, even when it exists
    // (a path is not even a manifest name).
    std::fs::write(d.path("src/other.img"), b"x").unwrap();
    let zeros = "0".repeat(40);
    std::fs::write(
        d.path("src/app.mf"),
        format!("{mf}SHA1(other.img)= {zeros}\n"),
    )
    .unwrap();
    refused(
        &d,
        &[],
        &["app.mf:4", "`other.img`", "is not the descriptor"],
    );
    std::fs::write(
        d.path("src/app.mf"),
        format!("{mf}SHA1(../root.raw)= {zeros}\n"),
    )
    .unwrap();
    refused(&d, &[], &["app.mf:4", "is not `ALG(name)= hexdigest`"]);
}
