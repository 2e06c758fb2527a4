//! EC2 bundles: `kiln bundle`, `kiln unbundle`, `kiln verify`, judged by the reference
//! decoder `ec2-unbundle`, the reference bundler `ec2-bundle-ref`, openssl and gzip.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::util::{Dir, assert_same_file, describe, oracle, random_raw, require_tool, sparse_raw};

const ACCOUNT: &str = "111122223333";
pub(crate) const KEY: &str = "00112233445566778899aabbccddeeff";
pub(crate) const IV: &str = "0f0e0d0c0b0a09080706050403020100";
/// What `Dir::kiln` sets SOURCE_DATE_EPOCH to: kiln's tar mtime.
const EPOCH: &str = "1700000000";

/// Throwaway keys made once per test run: the user's, EC2's, an unrelated one, and a
/// 1024-bit one.
pub(crate) struct Keys {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Keys {
    pub(crate) fn get(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }
}

pub(crate) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        require_tool("openssl");
        let dir = tempfile::Builder::new()
            .prefix("kiln-ec2-keys.")
            .tempdir()
            .unwrap();
        for (name, bits) in [
            ("user", "2048"),
            ("ec2", "2048"),
            ("other", "2048"),
            ("short", "1024"),
        ] {
            let out = Command::new("openssl")
                .args(["req", "-x509", "-newkey", &format!("rsa:{bits}"), "-nodes"])
                .arg("-keyout")
                .arg(dir.path().join(format!("{name}-key.pem")))
                .arg("-out")
                .arg(dir.path().join(format!("{name}-cert.pem")))
                .args(["-subj", &format!("/CN=kiln-{name}"), "-days", "3650"])
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl req: {}", describe(&out));
        }
        Keys {
            path: dir.path().to_path_buf(),
            _dir: dir,
        }
    })
}

/// `kiln bundle IMAGE` with the user's and EC2's keys into `dest`, plus `extra`; a
/// `--user`, `--cert` or `--privatekey` in `extra` replaces the default.
fn bundle_args(image: &str, dest: &str, extra: &[&str]) -> Vec<String> {
    let k = keys();
    let mut flags = vec![
        ("--user", ACCOUNT.to_string()),
        ("--cert", k.get("user-cert.pem")),
        ("--privatekey", k.get("user-key.pem")),
        ("--ec2-cert", k.get("ec2-cert.pem")),
    ];
    let mut rest = Vec::new();
    let mut i = 0;
    while i < extra.len() {
        match flags.iter_mut().find(|(f, _)| *f == extra[i]) {
            Some(slot) => {
                slot.1 = extra[i + 1].to_string();
                i += 2;
            }
            None => {
                rest.push(extra[i].to_string());
                i += 1;
            }
        }
    }
    let mut args = vec!["bundle".to_string(), image.to_string()];
    for (f, v) in flags {
        args.extend([f.to_string(), v]);
    }
    args.extend(["-d", dest, "-t", "unsafe"].map(String::from));
    args.extend(rest);
    args
}

fn kiln_bundle(dir: &Dir, image: &str, dest: &str, extra: &[&str]) -> String {
    let args = bundle_args(image, dest, extra);
    dir.kiln_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Runs the reference decoder; panics with its report unless it verifies the bundle.
pub(crate) fn ec2_unbundle(manifest: &Path, key: &str, dest: &Path) -> String {
    let out = Command::new(oracle("ec2-unbundle"))
        .arg("--manifest")
        .arg(manifest)
        .args([
            "--privatekey",
            key,
            "--cert",
            &keys().get("user-cert.pem"),
            "--strict-style",
        ])
        .arg("--destination")
        .arg(dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ec2-unbundle failed:\n{}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A 48 MiB sparse image with 24 MiB of incompressible data (3 parts) and scattered runs.
fn multi_part_image(dir: &Dir) -> PathBuf {
    let path = sparse_raw(&dir.path("disk.img"), 48 << 20, 40, 7);
    let mut data = vec![0u8; 24 << 20];
    crate::util::Rng::new(11).fill(&mut data);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&data, 8 << 20)
        .unwrap();
    path
}

/// Stamps the image the way kiln's tar records it (mode 0644, SOURCE_DATE_EPOCH), so GNU
/// tar under the reference bundler writes the same bytes.
fn stamp_like_kiln(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("touch")
        .arg("-d")
        .arg(format!("@{EPOCH}"))
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
}

fn reference_bundle(image: &Path, dest: &Path, extra: &[&str]) {
    let k = keys();
    let out = Command::new(oracle("ec2-bundle-ref"))
        .arg("--image")
        .arg(image)
        .args([
            "--privatekey",
            &k.get("user-key.pem"),
            "--cert",
            &k.get("user-cert.pem"),
        ])
        .args(["--ec2cert", &k.get("ec2-cert.pem"), "--user", ACCOUNT])
        .arg("--destination")
        .arg(dest)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ec2-bundle-ref failed:\n{}",
        describe(&out)
    );
}

/// `(tag, attributes, text)` of every element, in document order.
fn elements(xml: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>').unwrap();
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('/') || tag.starts_with('?') {
            continue;
        }
        let (name, attrs) = tag.split_once(' ').unwrap_or((tag, ""));
        let text = &rest[..rest.find('<').unwrap_or(rest.len())];
        out.push((name.to_string(), attrs.to_string(), text.to_string()));
    }
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn reference_decoder_restores_a_multi_part_sparse_bundle_with_either_key() {
    let dir = Dir::new();
    let image = multi_part_image(&dir);
    let listing = kiln_bundle(
        &dir,
        "disk.img",
        "b",
        &[
            "-B",
            "ami=sda1,root=/dev/sda1,ephemeral0=sdb",
            "--kernel",
            "aki-1a2b3c4d",
        ],
    );
    assert!(listing.contains("b/disk.img.part.2"), "{listing}");
    assert!(!dir.path("b/disk.img.part.3").exists());
    let report = ec2_unbundle(
        &dir.path("b/disk.img.manifest.xml"),
        &keys().get("user-key.pem"),
        &dir.path("o1"),
    );
    assert!(report.contains("GNU sparse"), "{report}");
    assert_same_file(&image, &dir.path("o1/disk.img"));
    ec2_unbundle(
        &dir.path("b/disk.img.manifest.xml"),
        &keys().get("ec2-key.pem"),
        &dir.path("o2"),
    );
    assert_same_file(&image, &dir.path("o2/disk.img"));
}

#[test]
fn reference_decoder_restores_a_regular_file_and_a_kernel() {
    let dir = Dir::new();
    let image = random_raw(&dir.path("vmlinuz"), 3_000_001, 5);
    kiln_bundle(
        &dir,
        "vmlinuz",
        "b",
        &["--type", "kernel", "--prefix", "kernel.img"],
    );
    let manifest = read(&dir.path("b/kernel.img.manifest.xml"));
    assert!(
        manifest.contains("<type>kernel</type><kernel_name>kernel.img</kernel_name>"),
        "{manifest}"
    );
    ec2_unbundle(
        &dir.path("b/kernel.img.manifest.xml"),
        &keys().get("user-key.pem"),
        &dir.path("o"),
    );
    assert_same_file(&image, &dir.path("o/kernel.img"));
}

#[test]
fn kiln_restores_what_the_reference_bundler_writes() {
    let dir = Dir::new();
    let image = multi_part_image(&dir);
    reference_bundle(
        &image,
        &dir.path("r"),
        &["--block-device-mapping", "ami=sda1,root=/dev/sda1"],
    );
    let k = keys();
    let out = dir.kiln_ok(&[
        "unbundle",
        "-m",
        "r/disk.img.manifest.xml",
        "-k",
        &k.get("user-key.pem"),
        "-c",
        &k.get("user-cert.pem"),
        "-d",
        "o",
        "-t",
        "unsafe",
    ]);
    assert!(out.contains("PASS signature"), "{out}");
    assert!(out.contains("PASS digest"), "{out}");
    assert_same_file(&image, &dir.path("o/disk.img"));
}

#[test]
fn manifest_matches_the_reference_element_by_element_at_a_fixed_key() {
    let dir = Dir::new();
    let image = multi_part_image(&dir);
    stamp_like_kiln(&image);
    let opts = [
        "-B",
        "root=/dev/sda1,ami=sda1",
        "--kernel",
        "aki-1a2b3c4d",
        "--ramdisk",
        "ari-4d3c2b1a",
        "--product-codes",
        "ABC123",
    ];
    let mut kiln_opts = opts.to_vec();
    kiln_opts.extend(["--key", KEY, "--iv", IV]);
    kiln_bundle(&dir, "disk.img", "k", &kiln_opts);
    let version = env!("CARGO_PKG_VERSION");
    let mut ref_opts = vec![
        "--block-device-mapping",
        "root=/dev/sda1,ami=sda1",
        "--kernel",
        "aki-1a2b3c4d",
    ];
    ref_opts.extend([
        "--ramdisk",
        "ari-4d3c2b1a",
        "--product-codes",
        "ABC123",
        "--key",
        KEY,
        "--iv",
        IV,
    ]);
    ref_opts.extend([
        "--bundler-name",
        "kiln",
        "--bundler-version",
        version,
        "--bundler-release",
        "0",
    ]);
    reference_bundle(&image, &dir.path("r"), &ref_opts);
    let ours = elements(&read(&dir.path("k/disk.img.manifest.xml")));
    let theirs = elements(&read(&dir.path("r/disk.img.manifest.xml")));
    assert_eq!(ours.len(), theirs.len(), "{ours:#?}\n{theirs:#?}");
    // RSA padding is random and the compressor differs: those values differ, the
    // structure and every other value (the tar digest included) must not.
    let varying = [
        "ec2_encrypted_key",
        "user_encrypted_key",
        "ec2_encrypted_iv",
        "user_encrypted_iv",
        "signature",
        "bundled_size",
    ];
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!((&a.0, &a.1), (&b.0, &b.1), "element {i}");
        let part_digest = a.0 == "digest" && ours[..i].iter().any(|e| e.0 == "parts");
        if !(varying.contains(&a.0.as_str()) || part_digest) {
            assert_eq!(a.2, b.2, "value of <{}> (element {i})", a.0);
        }
    }
    // The encrypted key and IV are the hex strings, for both recipients.
    for (elem, who, want) in [
        ("user_encrypted_key", "user", KEY),
        ("ec2_encrypted_iv", "ec2", IV),
    ] {
        let hex = &ours.iter().find(|e| e.0 == elem).unwrap().2;
        assert_eq!(
            rsa_decrypt(&dir, hex, &keys().get(&format!("{who}-key.pem"))),
            want
        );
    }
}

/// The image digest (SHA1 of the tar stream) a manifest records.
fn image_digest(manifest: &Path) -> String {
    let text = read(manifest);
    let (_, after) = text
        .split_once("</kernel_name>")
        .or_else(|| text.split_once("</type>"))
        .unwrap();
    after
        .split('>')
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn tar_stream_is_what_gnu_tar_writes_for_long_names_and_huge_sparse_files() {
    let dir = Dir::new();
    // Over 8 GiB: sizes and offsets need GNU base-256 numbers. A 130-byte name needs a
    // ././@LongLink member.
    let long = "n".repeat(130);
    let huge = dir.path(&long);
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(9 << 30).unwrap();
    f.write_all_at(b"past eight gib", (8 << 30) + 5).unwrap();
    f.write_all_at(b"end", (9 << 30) - 3).unwrap();
    drop(f);
    stamp_like_kiln(&huge);
    kiln_bundle(&dir, &long, "k", &[]);
    reference_bundle(&huge, &dir.path("r"), &[]);
    let manifest = format!("{long}.manifest.xml");
    let ours = image_digest(&dir.path("k").join(&manifest));
    assert_eq!(ours.len(), 40);
    assert_eq!(ours, image_digest(&dir.path("r").join(&manifest)));
    // Restored by the reference decoder; hashing 9 GiB of holes twice would dominate the
    // test, so the size and the two data runs are compared.
    ec2_unbundle(
        &dir.path("k").join(&manifest),
        &keys().get("user-key.pem"),
        &dir.path("o"),
    );
    let restored = std::fs::File::open(dir.path("o").join(&long)).unwrap();
    assert_eq!(restored.metadata().unwrap().len(), 9 << 30);
    let mut buf = [0u8; 14];
    restored.read_exact_at(&mut buf, (8 << 30) + 5).unwrap();
    assert_eq!(&buf, b"past eight gib");
    restored
        .read_exact_at(&mut buf[..3], (9 << 30) - 3)
        .unwrap();
    assert_eq!(&buf[..3], b"end");
}

fn rsa_decrypt(dir: &Dir, hex: &str, key: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    std::fs::write(dir.path("ct.bin"), bytes).unwrap();
    let out = Command::new("openssl")
        .args([
            "pkeyutl",
            "-decrypt",
            "-inkey",
            key,
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
            "-in",
        ])
        .arg(dir.path("ct.bin"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn decrypted_parts_are_one_gzip_member_that_gzip_accepts() {
    require_tool("gzip");
    let dir = Dir::new();
    multi_part_image(&dir);
    kiln_bundle(&dir, "disk.img", "b", &["--key", KEY, "--iv", IV]);
    let script = format!(
        "cat b/disk.img.part.0 b/disk.img.part.1 b/disk.img.part.2 | openssl enc -d -aes-128-cbc -K {KEY} -iv {IV} > s.gz && gzip -t s.gz && gzip -dc s.gz | tar -tvf -"
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir.tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("root/root"),
        "{}",
        describe(&out)
    );
}

#[test]
fn two_bundles_with_a_fixed_key_are_byte_identical() {
    let dir = Dir::new();
    multi_part_image(&dir);
    for dest in ["a", "b"] {
        kiln_bundle(
            &dir,
            "disk.img",
            dest,
            &[
                "--key",
                KEY,
                "--iv",
                IV,
                "--threads",
                if dest == "a" { "1" } else { "3" },
            ],
        );
    }
    for name in [
        "disk.img.manifest.xml",
        "disk.img.part.0",
        "disk.img.part.1",
        "disk.img.part.2",
    ] {
        assert_same_file(
            &dir.path(&format!("a/{name}")),
            &dir.path(&format!("b/{name}")),
        );
    }
}

#[test]
fn verify_checks_parts_and_says_what_it_did_not_check() {
    let dir = Dir::new();
    multi_part_image(&dir);
    kiln_bundle(&dir, "disk.img", "b", &[]);
    let without = dir.kiln_ok(&["verify", "b/disk.img.manifest.xml"]);
    assert!(
        without.contains("SKIP signature") && without.contains("PASS parts"),
        "{without}"
    );
    let with = dir.kiln_ok(&[
        "verify",
        "b/disk.img.manifest.xml",
        "--cert",
        &keys().get("user-cert.pem"),
    ]);
    assert!(with.contains("PASS signature"), "{with}");
    let wrong = dir.kiln_err(
        &[
            "verify",
            "b/disk.img.manifest.xml",
            "--cert",
            &keys().get("other-cert.pem"),
        ],
        1,
    );
    assert!(wrong.contains("signature"), "{wrong}");
}

/// Asserts a one-line error mentioning `needle` and a non-zero exit.
fn one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "{}", describe(out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line:\n{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

fn bundle_fails(dir: &Dir, image: &str, extra: &[&str], needle: &str) {
    let args = bundle_args(image, "out", extra);
    let out = dir.kiln(&args.iter().map(String::as_str).collect::<Vec<_>>());
    one_line_error(&out, needle);
    let written = std::fs::read_dir(dir.path("out"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(written, 0, "bundle left files behind");
}

#[test]
fn hostile_bundle_inputs_are_refused_before_anything_is_written() {
    let dir = Dir::new();
    sparse_raw(&dir.path("disk.img"), 1 << 20, 3, 1);
    let big = std::fs::File::create(dir.path("big.img")).unwrap();
    big.set_len((10 << 30) + 1).unwrap();
    bundle_fails(&dir, "big.img", &[], "at most 10737418240 bytes");
    bundle_fails(
        &dir,
        "disk.img",
        &["-B", "root=/dev/nvme0n1"],
        "invalid block device mapping",
    );
    bundle_fails(&dir, "disk.img", &["--user", "1234"], "12 digits");
    bundle_fails(&dir, "disk.img", &["--kernel", "ari-12345678"], "aki id");
    let k = keys();
    let short = [
        "--cert",
        &k.get("short-cert.pem"),
        "--privatekey",
        &k.get("short-key.pem"),
    ];
    bundle_fails(&dir, "disk.img", &short, "at least 2048");
    bundle_fails(
        &dir,
        "disk.img",
        &["--privatekey", &k.get("other-key.pem")],
        "does not match",
    );
}

/// A fresh bundle of `disk.img` in `b`, the image, and the unbundle command for it.
fn bundled(dir: &Dir) -> PathBuf {
    let image = multi_part_image(dir);
    kiln_bundle(dir, "disk.img", "b", &[]);
    image
}

fn unbundle_fails(dir: &Dir, key: &str, needle: &str) {
    let k = keys();
    let out = dir.kiln(&[
        "unbundle",
        "-m",
        "b/disk.img.manifest.xml",
        "-k",
        &k.get(key),
        "-c",
        &k.get("user-cert.pem"),
        "-d",
        "o",
    ]);
    one_line_error(&out, needle);
    let written = std::fs::read_dir(dir.path("o"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(written, 0, "unbundle left files behind");
}

fn edit_manifest(dir: &Dir, from: &str, to: &str) {
    let path = dir.path("b/disk.img.manifest.xml");
    let text = read(&path);
    assert!(text.contains(from), "{from} not in manifest");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn tampered_signature_is_refused() {
    let dir = Dir::new();
    bundled(&dir);
    let text = read(&dir.path("b/disk.img.manifest.xml"));
    let size = text
        .split("<size>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    edit_manifest(&dir, &format!("<size>{size}</size>"), "<size>1</size>");
    unbundle_fails(&dir, "user-key.pem", "signature");
}

#[test]
fn tampered_or_missing_part_is_refused() {
    let dir = Dir::new();
    bundled(&dir);
    let part = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path("b/disk.img.part.1"))
        .unwrap();
    part.write_all_at(b"X", 1000).unwrap();
    unbundle_fails(&dir, "user-key.pem", "parts: part 1");
    std::fs::remove_file(dir.path("b/disk.img.part.2")).unwrap();
    unbundle_fails(&dir, "user-key.pem", "is missing");
}

#[test]
fn traversing_part_name_and_doctype_are_refused() {
    let dir = Dir::new();
    bundled(&dir);
    edit_manifest(
        &dir,
        "<filename>disk.img.part.0</filename>",
        "<filename>../x</filename>",
    );
    unbundle_fails(&dir, "user-key.pem", "unsafe part file name");
    edit_manifest(
        &dir,
        "<manifest>",
        "<!DOCTYPE manifest [<!ENTITY x 'y'>]><manifest>",
    );
    unbundle_fails(&dir, "user-key.pem", "DOCTYPE");
}

#[test]
fn wrong_private_key_is_refused() {
    let dir = Dir::new();
    bundled(&dir);
    unbundle_fails(&dir, "other-key.pem", "decrypt-key");
}

#[test]
fn verify_refuses_what_is_not_a_bundle_manifest() {
    let dir = Dir::new();
    std::fs::write(dir.path("x.ova"), b"not a manifest").unwrap();
    let err = dir.kiln_err(&["verify", "x.ova"], 2);
    assert!(err.contains("not an EC2 bundle manifest"), "{err}");
}

#[test]
fn force_replaces_a_longer_bundle_and_its_extra_parts() {
    let dir = Dir::new();
    multi_part_image(&dir);
    kiln_bundle(&dir, "disk.img", "b", &[]);
    sparse_raw(&dir.path("small.img"), 1 << 20, 3, 2);
    let args = bundle_args("small.img", "b", &["--prefix", "disk.img"]);
    let refused = dir.kiln(&args.iter().map(String::as_str).collect::<Vec<_>>());
    one_line_error(&refused, "already exists");
    let mut forced = args.clone();
    forced.push("--force".into());
    dir.kiln_ok(&forced.iter().map(String::as_str).collect::<Vec<_>>());
    let mut left: Vec<String> = std::fs::read_dir(dir.path("b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["disk.img.manifest.xml", "disk.img.part.0"]);
    ec2_unbundle(
        &dir.path("b/disk.img.manifest.xml"),
        &keys().get("user-key.pem"),
        &dir.path("o"),
    );
    assert_same_file(&dir.path("small.img"), &dir.path("o/disk.img"));
}
