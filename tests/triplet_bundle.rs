//! `bundle: ec2` on an ami output: the build bundles the ami, aki and ari; the reference
//! decoder `ec2-unbundle` verifies each bundle (signature, part digests, image digest) and
//! restores the exact image; `sha256sum -c` accepts SHA256SUMS with every bundle file;
//! two builds at a fixed key and IV are byte-identical; bad bundle settings are refused at
//! the spec's line with nothing written.

use std::path::Path;
use std::process::{Command, Output};

use crate::ec2::{IV, KEY, ec2_unbundle, keys};
use crate::triplet::{BOOT, disk, mkfs, refused, spec};

use crate::util::{Dir, assert_same_file, describe, names_in};

/// The bundle keys of an ami output, signing with `private_key` (a file in the test keys).
fn bundle_keys(private_key: &str) -> String {
    let k = keys();
    format!(
        "    bundle: ec2\n    user: \"111122223333\"\n    cert: {}\n    privatekey: {}\n    ec2_cert: {}\n    block_device_mapping: {{ ami: sda1, root: /dev/sda1 }}\n",
        k.get("user-cert.pem"),
        k.get(private_key),
        k.get("ec2-cert.pem")
    )
}

/// `kiln build s.yaml -o OUT` with the session key fixed.
fn build(d: &Dir, out: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "s.yaml", "-o", out])
        .current_dir(d.path(""))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("KILN_EC2_TEST_KEY_IV", format!("{KEY}:{IV}"))
        .output()
        .unwrap()
}

fn bundle_files(out: &Path) -> Vec<String> {
    (names_in(out).into_iter())
        .filter(|n| n.contains(".manifest.xml") || n.contains(".part."))
        .collect()
}

#[test]
fn each_image_of_the_triplet_is_bundled_and_restores_exactly() {
    let d = Dir::new();
    let fs = mkfs(&d, &[]);
    disk(&d, "gpt", &fs, false);
    spec(
        &d,
        "disk.img",
        &format!("{BOOT}{}", bundle_keys("user-key.pem")),
    );
    let out = build(&d, "a");
    assert!(out.status.success(), "{}", describe(&out));
    let a = d.path("a");
    for (image, kind) in [
        ("app.ami", "machine"),
        ("app.aki", "kernel"),
        ("app.ari", "ramdisk"),
    ] {
        let manifest = a.join(format!("{image}.manifest.xml"));
        let xml = std::fs::read_to_string(&manifest).unwrap();
        assert!(xml.contains(&format!("<type>{kind}</type>")), "{xml}");
        let restored = d.path(&format!("restored-{image}"));
        ec2_unbundle(&manifest, &keys().get("user-key.pem"), &restored);
        assert_same_file(&a.join(image), &restored.join(image));
    }
    let ami = std::fs::read_to_string(a.join("app.ami.manifest.xml")).unwrap();
    assert!(ami.contains("<device>/dev/sda1</device>"), "{ami}");
    let sums = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&a)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", describe(&sums));
    let listed = String::from_utf8(sums.stdout).unwrap();
    let files = bundle_files(&a);
    assert!(files.len() >= 6, "{files:?}");
    for f in &files {
        assert!(listed.contains(&format!("{f}: OK")), "{f} not in\n{listed}");
    }
    let out = build(&d, "b");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(bundle_files(&d.path("b")), files);
    for f in files.iter().chain(&["SHA256SUMS".to_string()]) {
        assert_same_file(&a.join(f), &d.path("b").join(f));
    }
}

#[test]
fn a_private_key_that_does_not_match_the_certificate_is_refused() {
    let extra = format!("{BOOT}{}", bundle_keys("other-key.pem"));
    refused(false, &extra, 10, "does not match");
}

/// A spec whose ami output has `extra` fails validation at `line` (the report names
/// `s.yaml:LINE:` and `wanted`) and writes nothing.
fn invalid(extra: &str, line: u32, wanted: &str) {
    let d = Dir::new();
    let fs = mkfs(&d, &[]);
    disk(&d, "gpt", &fs, false);
    spec(&d, "disk.img", extra);
    let out = build(&d, "out");
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert!(first.contains(&format!("s.yaml:{line}:")), "{err}");
    assert!(first.contains(wanted), "{err}");
    assert!(!d.path("out").exists(), "{err}");
}

#[test]
fn a_bad_account_number_is_refused_at_its_line() {
    let extra = bundle_keys("user-key.pem").replace("111122223333", "1234");
    invalid(&extra, 9, "\"1234\" must be 12 digits");
}

#[test]
fn a_device_name_ec2_refuses_is_refused() {
    let extra = bundle_keys("user-key.pem").replace("root: /dev/sda1", "root: /dev/vda1");
    invalid(
        &extra,
        13,
        "outputs[0].block_device_mapping: invalid block device",
    );
}

#[test]
fn an_unknown_bundle_kind_is_refused() {
    invalid("    bundle: s3\n", 8, "bundle `s3` is not known");
}

#[test]
fn bundle_keys_without_bundle_are_refused() {
    invalid(
        "    user: \"111122223333\"\n",
        8,
        "`user` applies only to ami",
    );
}

#[test]
fn a_missing_certificate_key_is_refused() {
    let extra = bundle_keys("user-key.pem");
    let extra: String = (extra.lines())
        .filter(|l| !l.contains("ec2_cert"))
        .map(|l| format!("{l}\n"))
        .collect();
    invalid(&extra, 6, "needs `ec2_cert:`");
}

#[test]
fn an_ami_over_ec2s_limit_is_refused_before_it_is_written() {
    let d = Dir::new();
    let text = format!(
        "name: app\ndisks:\n  - name: root\n    source: {{ blank: true }}\n    size: 11GiB\noutputs:\n  - disk_format: ami\n    container_format: ami\n    partition: none\n{}",
        bundle_keys("user-key.pem")
    );
    std::fs::write(d.path("s.yaml"), text).unwrap();
    let out = build(&d, "out");
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s.yaml:10:") && err.contains("10 GiB"),
        "{err}"
    );
    assert_eq!(names_in(&d.path("out")), Vec::<String>::new());
}
