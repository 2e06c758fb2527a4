//! `kiln verify`, `kiln sign` and `kiln inspect` on OVF packages.
//!
//! Packages kiln builds pass check-ova (the independent oracle) and `kiln verify`; signed
//! ones verify with `openssl dgst -verify` against the manifest. Broken packages are built
//! from a good one with Python's tarfile and hashlib (not by kiln), one defect each, and
//! `kiln verify` must name it with the expected code and, where an importer has words for
//! it, those words. Every real-world descriptor in tests/data/ovf reads and matches its
//! golden `kiln inspect --output json`.

use std::path::{Path, PathBuf};

use crate::util::*;

/// Python: `repack.py OUT [--pax] [--mf] NAME[=ARCNAME]...` writes a ustar (or PAX) OVA of
/// the named files in that order; `--mf` first rewrites `app.mf` with the SHA-256 of
/// app.ovf and the disks, so a descriptor edit leaves the manifest right.
const REPACK: &str = r#"
import hashlib, sys, tarfile
args = sys.argv[1:]
out, pax, fix = args[0], '--pax' in args, '--mf' in args
names = [a for a in args[1:] if not a.startswith('--')]
if fix:
    with open('app.mf', 'w') as mf:
        for n in ['app.ovf', 'app-disk1.vmdk', 'app-disk2.vmdk']:
            mf.write('SHA256(%s)= %s\n' % (n, hashlib.sha256(open(n, 'rb').read()).hexdigest()))
fmt = tarfile.PAX_FORMAT if pax else tarfile.USTAR_FORMAT
with tarfile.open(out, 'w', format=fmt) as t:
    for spec in names:
        name, _, arc = spec.partition('=')
        info = t.gettarinfo(name, arcname=arc or name)
        if pax:
            info.pax_headers = {'comment': 'made by a PAX writer'}
        with open(name, 'rb') as f:
            t.addfile(info, f)
"#;

/// Builds a two-disk OVA (`out/app.ova`, SHA-256 manifest, cloud-init data as OVF
/// properties) in `d` and extracts it with Python's tarfile into `d/x`.
fn good_package(d: &Dir) -> PathBuf {
    sparse_raw(&d.path("src.raw"), 24 << 20, 30, 11);
    let spec = "name: app\nvm: { cpus: 2, memory: 1GiB, firmware: efi }\ncloud_init:\n  user_data: { packages: [nginx] }\n  meta_data: { instance-id: web-1, local-hostname: web }\n  deliver: [ovf-properties]\nnetworks: [ { name: VM Network } ]\ndisks:\n  - { name: root, source: { file: src.raw } }\n  - { name: data, source: { blank: true }, size: 8MiB }\noutputs:\n  - { disk_format: vmdk, container_format: ova }\n";
    std::fs::write(d.path("spec.yaml"), spec).unwrap();
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    let x = d.path("x");
    std::fs::create_dir_all(&x).unwrap();
    python(
        &x,
        "import tarfile,sys; tarfile.open(sys.argv[1]).extractall('.')",
        &[d.path("out/app.ova").to_str().unwrap()],
    );
    d.path("out/app.ova")
}

/// Repacks `d/x` into `d/bad.ova` with REPACK's arguments and returns `kiln verify`'s
/// stdout, asserting it fails.
fn verify_broken(d: &Dir, args: &[&str]) -> String {
    let bad = d.path("bad.ova");
    let mut all = vec![bad.to_str().unwrap()];
    all.extend_from_slice(args);
    python(&d.path("x"), REPACK, &all);
    let out = d.kiln(&["verify", "bad.ova"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Edits `d/x/app.ovf` with Python `replace(old, new)`.
fn edit_descriptor(d: &Dir, old: &str, new: &str) {
    let script = "import sys; p='app.ovf'; s=open(p).read(); assert sys.argv[1] in s; open(p,'w').write(s.replace(sys.argv[1], sys.argv[2], 1))";
    python(&d.path("x"), script, &[old, new]);
}

/// Replaces `d/x/app.mf` with `text`.
fn write_manifest(d: &Dir, text: &str) {
    std::fs::write(d.path("x/app.mf"), text).unwrap();
}

const IN_ORDER: [&str; 4] = ["app.ovf", "app.mf", "app-disk1.vmdk", "app-disk2.vmdk"];

#[test]
fn every_package_kiln_builds_passes_check_ova_and_verify() {
    // Three disks on three controllers, two NICs, the seed in a CD-ROM beside the IDE disk.
    let d = Dir::new();
    sparse_raw(&d.path("src.raw"), 24 << 20, 30, 5);
    let spec = "name: app\nversion: \"1\"\nvm: { cpus: 2, memory: 1GiB }\nnetworks: [ { name: A }, { name: B, adapter: e1000 } ]\ndisks:\n  - { name: root, source: { file: src.raw } }\n  - { name: data, source: { blank: true }, size: 8MiB, controller: sata }\n  - { name: logs, source: { blank: true }, size: 4MiB, controller: ide }\ncloud_init: { user_data: { hostname: app }, deliver: [seed-cdrom] }\noutputs:\n  - { disk_format: vmdk, container_format: ova, name: vmw, file: vmw.ova }\n  - { disk_format: vmdk, container_format: ova, name: vbox, file: vbox.ova, target: virtualbox, manifest: sha1 }\n  - { disk_format: vmdk, container_format: ova, name: big, file: big.ova, manifest: sha512 }\n  - { disk_format: vmdk, container_format: ovf, name: dir, file: dir.ovf }\n";
    std::fs::write(d.path("spec.yaml"), spec).unwrap();
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    for (name, profile) in [
        ("vmw.ova", "vmware"),
        ("vbox.ova", "virtualbox"),
        ("big.ova", "generic"),
        ("dir.ovf", "generic"),
    ] {
        let path = d.path(&format!("out/{name}"));
        check_ova(&path, profile);
        let out = d.kiln_ok(&["verify", path.to_str().unwrap()]);
        assert!(out.contains("OK (0 errors"), "{name}: {out}");
    }
    // SHA512 is accepted, with the virt-v2v warning.
    let out = d.kiln_ok(&["verify", "--output", "json", "out/big.ova"]);
    assert!(out.contains("\"mf.sha512\""), "{out}");
}

#[test]
fn a_signed_package_verifies_with_openssl_and_kiln() {
    let d = Dir::new();
    good_package(&d);
    openssl_key_and_cert(&d.path("key.pem"), &d.path("cert.pem"), "kiln test signer");
    d.kiln_ok(&[
        "sign",
        "out/app.ova",
        "--key",
        "key.pem",
        "--cert",
        "cert.pem",
        "-o",
        "signed.ova",
    ]);
    d.kiln_ok(&[
        "sign",
        "out/app.ova",
        "--key",
        "key.pem",
        "--cert",
        "cert.pem",
        "-o",
        "again.ova",
    ]);
    assert_same_file(&d.path("signed.ova"), &d.path("again.ova"));
    check_ova(&d.path("signed.ova"), "generic");
    let s = d.path("s");
    std::fs::create_dir_all(&s).unwrap();
    let listing = "import tarfile,sys; t=tarfile.open(sys.argv[1]); open('order','w').write(' '.join(t.getnames())); t.extractall('.')";
    python(&s, listing, &[d.path("signed.ova").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(s.join("order")).unwrap(),
        "app.ovf app.mf app.cert app-disk1.vmdk app-disk2.vmdk"
    );
    openssl_verifies_cert(&s.join("app.cert"), &s.join("app.mf"));
    let out = d.kiln_ok(&["verify", "signed.ova"]);
    assert!(
        out.contains("[cert.self-signed]") && out.contains("OK (0 errors"),
        "{out}"
    );
    let inspect = d.kiln_ok(&["inspect", "signed.ova"]);
    assert!(
        inspect.contains("certificate: CN=kiln test signer (SHA256, signature valid)"),
        "{inspect}"
    );
}

#[test]
fn a_tampered_signature_is_caught() {
    let d = Dir::new();
    good_package(&d);
    openssl_key_and_cert(&d.path("key.pem"), &d.path("cert.pem"), "signer");
    d.kiln_ok(&[
        "sign",
        "out/app.ova",
        "--key",
        "key.pem",
        "--cert",
        "cert.pem",
    ]);
    let x = d.path("x");
    python(
        &x,
        "import tarfile,sys; tarfile.open(sys.argv[1]).extractall('.')",
        &[d.path("out/app.ova").to_str().unwrap()],
    );
    let flip = "p='app.cert'; s=open(p).read(); i=s.index('= ')+2; c='0' if s[i]!='0' else '1'; open(p,'w').write(s[:i]+c+s[i+1:])";
    python(&x, flip, &[]);
    let out = verify_broken(
        &d,
        &[
            "app.ovf",
            "app.mf",
            "app.cert",
            "app-disk1.vmdk",
            "app-disk2.vmdk",
        ],
    );
    assert!(out.contains("[cert.signature-invalid]"), "{out}");
}

#[test]
fn a_wrong_digest_is_caught_in_ovftools_words() {
    let d = Dir::new();
    good_package(&d);
    let mf = std::fs::read_to_string(d.path("x/app.mf")).unwrap();
    let line = mf.lines().nth(2).unwrap();
    let (head, digest) = line.split_once("= ").unwrap();
    let flipped: String = digest.chars().rev().collect();
    write_manifest(&d, &mf.replace(line, &format!("{head}= {flipped}")));
    let out = verify_broken(&d, &IN_ORDER);
    assert!(
        out.contains("[mf.digest-mismatch] (app.mf:3): SHA256 digest of `app-disk2.vmdk`"),
        "{out}"
    );
    assert!(
        out.contains("ovftool says: \"The manifest does not validate\""),
        "{out}"
    );
}

#[test]
fn a_missing_member_is_caught() {
    let d = Dir::new();
    good_package(&d);
    let out = verify_broken(&d, &["app.ovf", "app.mf", "app-disk1.vmdk"]);
    assert!(
        out.contains("[ref.missing]")
            && out.contains("`app-disk2.vmdk`) is not a member of the OVA"),
        "{out}"
    );
}

#[test]
fn reordered_members_are_caught() {
    let d = Dir::new();
    good_package(&d);
    let out = verify_broken(
        &d,
        &["app.ovf", "app.mf", "app-disk2.vmdk", "app-disk1.vmdk"],
    );
    assert!(
        out.contains("[ova.order]")
            && out
                .contains("the References order: app.ovf, app.mf, app-disk1.vmdk, app-disk2.vmdk"),
        "{out}"
    );
}

#[test]
fn a_descriptor_that_is_not_first_is_caught_in_ovftools_words() {
    let d = Dir::new();
    good_package(&d);
    let out = verify_broken(
        &d,
        &["app.mf", "app.ovf", "app-disk1.vmdk", "app-disk2.vmdk"],
    );
    assert!(
        out.contains(
            "ovftool says: \"Did not find an .ovf file at the beginning of the OVA package.\""
        ),
        "{out}"
    );
}

#[test]
fn a_pax_header_is_caught() {
    let d = Dir::new();
    good_package(&d);
    let mut args = vec!["--pax"];
    args.extend(IN_ORDER);
    let out = verify_broken(&d, &args);
    assert!(out.contains("[tar.pax-header] (header at 0x0)"), "{out}");
}

#[test]
fn a_dot_dot_member_is_caught() {
    let d = Dir::new();
    good_package(&d);
    let out = verify_broken(
        &d,
        &[
            "app.ovf",
            "app.mf",
            "app-disk1.vmdk",
            "app-disk2.vmdk=../app-disk2.vmdk",
        ],
    );
    assert!(
        out.contains("[tar.name]") && out.contains("`../app-disk2.vmdk` is not a plain file name"),
        "{out}"
    );
}

#[test]
fn a_wrong_file_size_is_caught_in_ovftools_words() {
    let d = Dir::new();
    good_package(&d);
    let actual = std::fs::metadata(d.path("x/app-disk2.vmdk")).unwrap().len();
    edit_descriptor(&d, &format!("ovf:size=\"{actual}\""), "ovf:size=\"12345\"");
    let mut args = vec!["--mf"];
    args.extend(IN_ORDER);
    let out = verify_broken(&d, &args);
    let says = format!(
        "ovftool says: \"Wrong file size specified in OVF descriptor for 'app-disk2.vmdk' (specified: 12345, actual {actual})\""
    );
    assert!(out.contains(&says), "{out}");
    assert!(!out.contains("mf.digest-mismatch"), "{out}");
}

#[test]
fn a_capacity_mismatch_is_caught() {
    let d = Dir::new();
    good_package(&d);
    edit_descriptor(
        &d,
        "ovf:capacity=\"8388608\"",
        "ovf:capacity=\"9\" ovf:capacityAllocationUnits=\"byte * 2^20\"",
    );
    let mut args = vec!["--mf"];
    args.extend(IN_ORDER);
    let out = verify_broken(&d, &args);
    assert!(out.contains("[disk.capacity-mismatch]") && out.contains("capacity is 9437184 bytes (ovf:capacity 9 × byte * 2^20), but `app-disk2.vmdk` holds a 8388608-byte disk"), "{out}");
}

/// The manifest with its first line rewritten by `form(name, digest)`.
fn manifest_with_first_line(d: &Dir, form: impl Fn(&str, &str) -> String) {
    let mf = std::fs::read_to_string(d.path("x/app.mf")).unwrap();
    let first = mf.lines().next().unwrap();
    let (_, digest) = first.split_once("= ").unwrap();
    write_manifest(d, &mf.replacen(first, &form("app.ovf", digest), 1));
}

#[test]
fn the_openssl_manifest_form_is_caught_in_vspheres_words() {
    let d = Dir::new();
    good_package(&d);
    manifest_with_first_line(&d, |n, h| format!("SHA256 ({n}) = {h}"));
    let out = verify_broken(&d, &IN_ORDER);
    assert!(
        out.contains("[mf.syntax] (app.mf:1)")
            && out.contains("vSphere says: \"Invalid OVF checksum algorithm: SHA256 \""),
        "{out}"
    );
    assert!(!out.contains("mf.digest-mismatch"), "{out}");
}

#[test]
fn an_unknown_manifest_algorithm_is_caught() {
    let d = Dir::new();
    good_package(&d);
    manifest_with_first_line(&d, |n, h| format!("SHA2-256({n})= {h}"));
    let out = verify_broken(&d, &IN_ORDER);
    assert!(
        out.contains("vSphere says: \"Invalid OVF checksum algorithm: SHA2-256\""),
        "{out}"
    );
    assert!(
        out.contains("[mf.missing-entry]") && out.contains("`app.ovf` is not listed"),
        "{out}"
    );
}

#[test]
fn a_blank_before_the_parenthesis_is_caught() {
    let d = Dir::new();
    good_package(&d);
    let sha1 = run_ok("sha1sum", &[d.path("x/app.ovf").to_str().unwrap()]);
    let sha1 = sha1.split_whitespace().next().unwrap().to_string();
    manifest_with_first_line(&d, |n, _| format!("SHA1 ({n})= {sha1}"));
    let out = verify_broken(&d, &IN_ORDER);
    assert!(
        out.contains("vSphere says: \"Invalid OVF checksum algorithm: SHA1 \""),
        "{out}"
    );
    assert!(out.contains("[mf.mixed-algorithms]"), "{out}");
}

#[test]
fn a_doctype_in_the_descriptor_is_refused() {
    let d = Dir::new();
    good_package(&d);
    edit_descriptor(
        &d,
        "<Envelope",
        "<!DOCTYPE Envelope [<!ENTITY boom \"boom\">]>\n<Envelope",
    );
    let mut args = vec!["--mf"];
    args.extend(IN_ORDER);
    let out = verify_broken(&d, &args);
    assert!(
        out.contains("[xml.dtd]") && out.contains("line 2: DOCTYPE declarations are not allowed"),
        "{out}"
    );
}

#[test]
fn an_undefined_entity_in_the_descriptor_is_refused() {
    let d = Dir::new();
    good_package(&d);
    edit_descriptor(&d, "<Info>A virtual machine</Info>", "<Info>&boom;</Info>");
    let mut args = vec!["--mf"];
    args.extend(IN_ORDER);
    let out = verify_broken(&d, &args);
    assert!(
        out.contains("[xml.dtd]") && out.contains("entity `&boom;` is not defined"),
        "{out}"
    );
}

#[test]
fn a_corrupt_disk_is_read_through_and_caught() {
    let d = Dir::new();
    good_package(&d);
    // Overwrite bytes in the middle of the first VMDK's grains (past its header).
    let damage = "p='app-disk1.vmdk'; b=bytearray(open(p,'rb').read()); m=len(b)//2; b[m:m+4096]=bytes(4096); open(p,'wb').write(b)";
    python(&d.path("x"), damage, &[]);
    let mut args = vec!["--mf"];
    args.extend(IN_ORDER);
    let out = verify_broken(&d, &args);
    assert!(
        out.contains("[disk.unreadable]")
            && out.contains("`app-disk1.vmdk`) cannot be read to its end"),
        "{out}"
    );
}

#[test]
fn a_file_that_is_not_a_package_is_refused() {
    let d = Dir::new();
    std::fs::write(d.path("x.img"), [0u8; 4096]).unwrap();
    let err = d.kiln_err(&["verify", "x.img"], 2);
    assert!(err.contains("not an OVA/OVF package"), "{err}");
}

#[test]
fn the_real_ttylinux_package_fails_on_its_manifest_form_and_missing_disk() {
    let d = Dir::new();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ovf");
    for f in ["ttylinux-pc_i486-16.1.ovf", "ttylinux-pc_i486-16.1.mf"] {
        std::fs::copy(data.join(f), d.path(f)).unwrap();
    }
    let out = d.kiln(&["verify", "ttylinux-pc_i486-16.1.ovf"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text.contains("vSphere says: \"Invalid OVF checksum algorithm: SHA1 \""),
        "{text}"
    );
    assert!(text.contains("[ref.missing]"), "{text}");
    // The descriptor's SHA1 in the `sha1sum --tag` line is right.
    assert!(
        !text.contains("digest of `ttylinux-pc_i486-16.1.ovf`"),
        "{text}"
    );
}

/// `kiln inspect --output json` of a real-world descriptor, against its golden file.
fn inspect_golden(file: &str) -> String {
    let d = Dir::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ovf")
        .join(file);
    std::fs::copy(&src, d.path(file)).unwrap();
    d.kiln_ok(&["inspect", "--output", "json", file])
}

macro_rules! inspect_golden_tests {
    ($($name:ident => $file:literal,)*) => {$(
        #[test]
        fn $name() {
            insta::assert_snapshot!(inspect_golden($file));
        }
    )*};
}

inspect_golden_tests! {
    inspect_ova_compose_vcf_license_server => "ova-compose-vcf-license-server.ovf",
    inspect_ovftool_photon5 => "ovftool-photon5.ovf",
    inspect_esxi_photon => "esxi-photon.ovf",
    inspect_vcenter_ttylinux_vapp => "vcenter-ttylinux-vapp.ovf",
    inspect_ttylinux => "ttylinux-pc_i486-16.1.ovf",
    inspect_dsp0243_example3_ovf2 => "dsp0243-example3-ovf2.ovf",
    inspect_deployment_options => "deployment-options.ovf",
    inspect_virtualbox_centos7 => "virtualbox-5.2-centos7.ovf",
    inspect_virtualbox_3_controllers => "virtualbox-3-controllers.ovf",
}

#[test]
fn inspect_of_kilns_own_package() {
    let d = Dir::new();
    good_package(&d);
    insta::assert_snapshot!(d.kiln_ok(&["inspect", "--output", "json", "out/app.ova"]));
}

/// A self-signed certificate for `key.pem` valid only during 2020-01-01, made with `openssl ca`.
fn expired_certificate(d: &Dir) {
    let dir = d.path("ca");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    let cnf = "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n";
    std::fs::write(dir.join("ca.cnf"), cnf).unwrap();
    let key = d.path("key.pem");
    run_ok(
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            dir.join("req.csr").to_str().unwrap(),
            "-subj",
            "/CN=old signer",
        ],
    );
    let out = std::process::Command::new("openssl")
        .args([
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            key.to_str().unwrap(),
            "-in",
            "req.csr",
            "-out",
            d.path("cert.pem").to_str().unwrap(),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-notext",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl ca failed:\n{}",
        describe(&out)
    );
}

#[test]
fn an_expired_certificate_is_a_warning_and_the_signature_still_verifies() {
    let d = Dir::new();
    good_package(&d);
    expired_certificate(&d);
    // openssl agrees the certificate has expired.
    let checkend = std::process::Command::new("openssl")
        .args(["x509", "-checkend", "0", "-noout", "-in"])
        .arg(d.path("cert.pem"))
        .output()
        .unwrap();
    assert_eq!(checkend.status.code(), Some(1), "{}", describe(&checkend));
    d.kiln_ok(&[
        "sign",
        "out/app.ova",
        "--key",
        "key.pem",
        "--cert",
        "cert.pem",
    ]);
    let out = d.kiln_ok(&["verify", "out/app.ova"]);
    assert!(
        out.contains("[cert.expired]") && out.contains("OK (0 errors"),
        "{out}"
    );
    // check-ova verifies the signature with openssl.
    check_ova(&d.path("out/app.ova"), "generic");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let d = Dir::new();
    good_package(&d);
    for (key, cert) in [("a.key", "a.pem"), ("b.key", "b.pem")] {
        openssl_key_and_cert(&d.path(key), &d.path(cert), "x");
    }
    let err = d.kiln_err(
        &["sign", "out/app.ova", "--key", "a.key", "--cert", "b.pem"],
        2,
    );
    assert!(err.contains("is not the key of certificate"), "{err}");
    let untouched = d.kiln_ok(&["inspect", "out/app.ova"]);
    assert!(untouched.contains("certificate: none"), "{untouched}");
}

#[test]
fn an_ovf_file_that_links_outside_its_directory_is_not_opened() {
    let d = Dir::new();
    good_package(&d);
    std::fs::rename(d.path("x/app-disk2.vmdk"), d.path("outside.vmdk")).unwrap();
    std::os::unix::fs::symlink("../outside.vmdk", d.path("x/app-disk2.vmdk")).unwrap();
    let out = d.kiln(&["verify", "x/app.ovf"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text.contains("[ref.outside] (app-disk2.vmdk)") && text.contains("[ref.missing]"),
        "{text}"
    );
}
