//! Signing at build time (`sign:` in the spec, `--sign-key/--sign-cert`): the signed OVA is
//! byte for byte what `kiln build` followed by `kiln sign` writes; openssl verifies the
//! `.cert` signature against the manifest; check-ova and `sha256sum -c` accept the
//! packages; a key that does not match its certificate writes nothing.

use crate::util::{
    Dir, assert_same_file, check_ova, describe, names_in, openssl_key_and_cert,
    openssl_verifies_cert, run_ok, sparse_raw, tar_extract,
};

/// A throwaway RSA key and self-signed certificate as `key.pem` and `cert.pem` in `d`, and
/// an unrelated key as `other.pem`.
fn keys(d: &Dir) {
    for (key, cert) in [("key.pem", "cert.pem"), ("other.pem", "other-cert.pem")] {
        openssl_key_and_cert(&d.path(key), &d.path(cert), "kiln build signer");
    }
}

/// A two-disk spec with an ova and an ovf output, plus `extra` on both outputs.
fn spec(d: &Dir, extra: &str) {
    sparse_raw(&d.path("src.raw"), 16 << 20, 20, 3);
    let text = format!(
        "name: app\ndisks:\n  - {{ name: root, source: {{ file: src.raw }} }}\n  - {{ name: data, source: {{ blank: true }}, size: 8MiB }}\noutputs:\n  - {{ disk_format: vmdk, container_format: ova{extra} }}\n  - {{ disk_format: vmdk, container_format: ovf{extra} }}\n"
    );
    std::fs::write(d.path("s.yaml"), text).unwrap();
}

#[test]
fn a_signed_build_is_what_build_then_sign_writes_and_openssl_verifies_it() {
    let d = Dir::new();
    keys(&d);
    spec(&d, "");
    d.kiln_ok(&["build", "s.yaml", "-o", "plain"]);
    d.kiln_ok(&[
        "sign",
        "plain/app.ova",
        "--key",
        "key.pem",
        "--cert",
        "cert.pem",
        "-o",
        "later.ova",
    ]);
    spec(&d, ", sign: { key: key.pem, cert: cert.pem }");
    d.kiln_ok(&["build", "s.yaml", "-o", "signed"]);
    assert_same_file(&d.path("later.ova"), &d.path("signed/app.ova"));
    check_ova(&d.path("signed/app.ova"), "vmware");
    check_ova(&d.path("signed/app.ovf"), "vmware");
    let x = d.path("x");
    std::fs::create_dir_all(&x).unwrap();
    let listing = run_ok(
        "tar",
        &[
            "-xvf",
            d.path("signed/app.ova").to_str().unwrap(),
            "-C",
            x.to_str().unwrap(),
        ],
    );
    let members: Vec<&str> = listing.lines().collect();
    assert_eq!(
        members,
        [
            "app.ovf",
            "app.mf",
            "app.cert",
            "app-disk1.vmdk",
            "app-disk2.vmdk"
        ]
    );
    openssl_verifies_cert(&x.join("app.cert"), &x.join("app.mf"));
    openssl_verifies_cert(&d.path("signed/app.cert"), &d.path("signed/app.mf"));
    let out = d.kiln_ok(&["verify", "signed/app.ovf"]);
    assert!(out.contains("OK (0 errors"), "{out}");
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(d.path("signed"))
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", describe(&sums));
    assert!(String::from_utf8_lossy(&sums.stdout).contains("app.cert: OK"));
}

#[test]
fn the_command_line_key_signs_a_spec_without_sign() {
    let d = Dir::new();
    keys(&d);
    spec(&d, "");
    d.kiln_ok(&[
        "build",
        "s.yaml",
        "-o",
        "out",
        "--sign-key",
        "key.pem",
        "--sign-cert",
        "cert.pem",
    ]);
    let x = d.path("x");
    tar_extract(&d.path("out/app.ova"), &x);
    openssl_verifies_cert(&x.join("app.cert"), &x.join("app.mf"));
}

#[test]
fn a_key_that_does_not_match_its_certificate_writes_nothing() {
    let d = Dir::new();
    keys(&d);
    spec(&d, ", sign: { key: other.pem, cert: cert.pem }");
    let out = d.kiln(&["build", "s.yaml", "-o", "out"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s.yaml:6:") && err.contains("outputs[0].sign"),
        "{err}"
    );
    assert_eq!(names_in(&d.path("out")), Vec::<String>::new());
}

#[test]
fn sign_on_a_bare_output_is_refused() {
    let d = Dir::new();
    keys(&d);
    sparse_raw(&d.path("src.raw"), 1 << 20, 2, 3);
    let text = "name: app\ndisks:\n  - { name: root, source: { file: src.raw } }\noutputs:\n  - { disk_format: qcow2, container_format: bare, sign: { key: key.pem, cert: cert.pem } }\n";
    std::fs::write(d.path("s.yaml"), text).unwrap();
    let out = d.kiln(&["validate", "s.yaml"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`sign` applies only to ovf and ova"), "{err}");
}
