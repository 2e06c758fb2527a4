//! More of #17: a verified local source is read for its digests once per build (strace is
//! the oracle of what kiln read), and a signature by a revoked key is refused (gpg's
//! `REVKEYSIG` is the oracle that the key is revoked and the signature otherwise good).

use std::process::Command;

use super::{Gpg, assert_identical, assert_nothing_left, fixture, image_gets, kiln_fails, spec};
use crate::util::*;

/// Bytes kiln read from `name` during `kiln ARGS` in `d`, as `strace -f -y` saw them
/// (`read`/`pread64` on a descriptor of that file; `-y` prints the descriptor's path).
fn bytes_read_from(d: &Dir, name: &str, args: &[&str]) -> u64 {
    require_tool("strace");
    let trace = d.path("strace.txt");
    let out = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=read,pread64,readv,preadv",
            "-e",
        ])
        .arg("signal=none")
        .arg("-o")
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(d.path(""))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("XDG_CACHE_HOME", d.path("cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "kiln {args:?}:\n{}", describe(&out));
    let marker = format!("/{name}>");
    let text = std::fs::read_to_string(&trace).unwrap();
    (text.lines())
        .filter(|l| l.contains(&marker))
        .filter_map(|l| l.rsplit("= ").next()?.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn a_verified_local_source_is_hashed_once_per_build() {
    let d = Dir::new();
    let size = 32u64 << 20;
    let src = random_raw(&d.path("disk.raw"), size, 41);
    // Both a spec digest and a checksum file: every check is made, from one hash pass.
    let sums = format!("{}  disk.raw\n", super::sha512(&src));
    std::fs::write(d.path("SHA512SUMS"), sums).unwrap();
    let source = format!(
        "file: disk.raw, sha256: \"{}\", checksum: {{ file: SHA512SUMS }}",
        sha256(&src)
    );
    let file = spec(&d, "once", &source);
    let read = bytes_read_from(&d, "disk.raw", &["build", &file, "-o", "out", "--quiet"]);
    assert_identical(&src, &d.path("out/once.qcow2"));
    // One pass hashes it (SHA-256 and SHA-512 together), one converts it (plus a few header
    // probes, under 1 MiB); a second hash pass (what main did: the fetch step's and the
    // build's own) would make it three.
    assert!(
        read >= size,
        "kiln read {read} bytes of a {size}-byte source"
    );
    assert!(
        read <= 2 * size + (1 << 20),
        "kiln read {read} bytes of a {size}-byte source: more than one hash pass"
    );
}

#[test]
fn refused_signature_by_a_revoked_key() {
    let signer = Gpg::new("kiln test <revoked@example.org>", "ed25519");
    let f = fixture(&[]);
    let sums = format!("{}  disk.raw\n", sha256(&f.src)).into_bytes();
    std::fs::write(f.d.path("SUMS"), &sums).unwrap();
    let sig = signer.sign(&sums, false);
    std::fs::write(f.d.path("SUMS.gpg"), &sig).unwrap();
    // Before the revocation the signature is good, to gpg and to kiln.
    assert!(signer.verifies(&sig, &sums));
    std::fs::write(f.d.path("keys.gpg"), signer.export(false)).unwrap();
    let source = format!(
        "url: \"{}/img/disk.raw\", checksum: {{ file: SUMS }}, signature: {{ file: SUMS.gpg, keyring: keys.gpg }}",
        f.base
    );
    let file = spec(&f.d, "r", &source);
    super::kiln_ok(&f.d, &["build", &file, "-o", "good", "--quiet"]);
    assert_identical(&f.src, &f.d.path("good/r.qcow2"));
    std::fs::remove_dir_all(f.d.path("cache")).unwrap();
    // gpg made a revocation certificate with the key; importing it revokes the key.
    let fpr = signer.fingerprint();
    let rev = std::fs::read_to_string(
        (signer.home.path().join("openpgp-revocs.d")).join(format!("{fpr}.rev")),
    )
    .unwrap();
    // gpg guards the stored certificate against an accidental import with a leading ':'.
    let rev = rev.replace(
        ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    );
    let rev_path = f.d.path("revoke.asc");
    std::fs::write(&rev_path, rev).unwrap();
    signer.run(&["--import", rev_path.to_str().unwrap()]);
    // The oracle: gpg now says the signature is by a revoked key.
    let status = signer.verify_status(&sig, &sums);
    assert!(status.contains("[GNUPG:] REVKEYSIG"), "{status}");
    std::fs::write(f.d.path("keys.gpg"), signer.export(false)).unwrap();
    let err = kiln_fails(&f.d, &["build", &file, "-o", "out"], &[]);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("revoked") && err.contains(&fpr), "{err}");
    assert!(
        err.contains("keys.gpg") && err.contains("SUMS.gpg"),
        "{err}"
    );
    assert_nothing_left(&f, "out");
    assert_eq!(
        image_gets(&f.seen),
        1,
        "only the first build fetched the image"
    );
}
