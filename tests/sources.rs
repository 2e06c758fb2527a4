//! Verified and reachable sources (#17 part A): checksum files (GNU and BSD, SHA-256 and
//! SHA-512), `sha512:` literals, OpenPGP signatures made by a throwaway gpg key (`gpg
//! --verify` is the oracle that they are good), a CONNECT proxy started by the test,
//! `kiln fetch`, `--offline` and `kiln cache`. A local HTTP server on 127.0.0.1 serves
//! everything; every build is judged by `qemu-img compare` against the original image,
//! every refusal leaves no cache entry and no artefact.

mod more;
mod net;
mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;
use net::{Seen, proxy, serve};

/// `kiln ARGS` in `d` with its own cache under `d/cache` and `env` added (proxy variables
/// and `SSL_CERT_FILE` are cleared unless given).
fn kiln_env(d: &Dir, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .current_dir(d.tmp.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("XDG_CACHE_HOME", d.path("cache"));
    for v in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
        cmd.env_remove(v).env_remove(v.to_ascii_lowercase());
    }
    cmd.env_remove("SSL_CERT_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn kiln_ok(d: &Dir, args: &[&str]) -> String {
    let out = kiln_env(d, args, &[]);
    assert!(out.status.success(), "kiln {args:?}:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kiln_fails(d: &Dir, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = kiln_env(d, args, env);
    assert_eq!(
        out.status.code(),
        Some(1),
        "kiln {args:?}:\n{}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Image entries (64 hex digits) and partial downloads in the test's cache.
fn cache_entries(d: &Dir) -> (Vec<String>, Vec<String>) {
    let dir = d.path("cache/kiln/downloads");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let images = (names.iter())
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .cloned()
        .collect();
    let partials = names
        .iter()
        .filter(|n| n.ends_with(".partial"))
        .cloned()
        .collect();
    (images, partials)
}

fn sha512(path: &Path) -> String {
    run_ok("sha512sum", &[path.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A spec building `source` (a YAML flow mapping's inside) to qcow2 in `out/`.
fn spec(d: &Dir, name: &str, source: &str) -> String {
    let text = format!(
        "name: {name}\ndisks:\n  - name: root\n    source: {{ {source} }}\noutputs:\n  - {{ disk_format: qcow2, container_format: bare }}\n"
    );
    let file = format!("{name}.yaml");
    std::fs::write(d.path(&file), text).unwrap();
    file
}

/// `qemu-img compare` finds the built qcow2 identical to the original raw image.
fn assert_identical(src: &Path, built: &Path) {
    require_tool("qemu-img");
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(src)
        .arg(built)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img compare:\n{}",
        describe(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Images are identical"));
}

/// The image `disk.raw` (1 MiB of random data) and checksum files of every form.
struct Fixture {
    d: Dir,
    src: PathBuf,
    base: String,
    seen: Seen,
}

fn fixture(extra: &[(&str, Vec<u8>)]) -> Fixture {
    let d = Dir::new();
    let src = random_raw(&d.path("disk.raw"), 1 << 20, 17);
    let body = std::fs::read(&src).unwrap();
    let (s256, s512) = (sha256(&src), sha512(&src));
    let other = "0".repeat(64);
    let mut files = BTreeMap::new();
    files.insert("/img/disk.raw".to_string(), body.clone());
    files.insert("/copy/disk.raw".to_string(), body.clone());
    files.insert("/flaky/disk.raw".to_string(), body);
    let sums: [(&str, String); 6] = [
        ("GNU256", format!("{other}  other.raw\n{s256}  disk.raw\n")),
        ("GNU512", format!("{s512} *disk.raw\n")),
        (
            "BSD256",
            format!("SHA256 (other.raw) = {other}\nSHA256 (disk.raw) = {s256}\n"),
        ),
        ("BSD512", format!("SHA512 (disk.raw) = {s512}\n")),
        ("TWO", format!("{s256}  disk.raw\n{other}  disk.raw\n")),
        ("MD5", format!("{}  disk.raw\n", "d".repeat(32))),
    ];
    for (name, text) in sums {
        files.insert(format!("/img/{name}"), text.into_bytes());
    }
    for (name, body) in extra {
        files.insert((*name).to_string(), body.clone());
    }
    let (base, seen) = serve(files);
    Fixture { d, src, base, seen }
}

fn image_gets(seen: &Seen) -> usize {
    (seen.lock().unwrap().iter())
        .filter(|r| r.ends_with("/disk.raw"))
        .count()
}

#[test]
fn every_checksum_form_builds_the_image_and_the_cache_holds_it_once() {
    let f = fixture(&[]);
    let url = format!("{}/img/disk.raw", f.base);
    let copy = format!("{}/copy/disk.raw", f.base);
    let s512 = sha512(&f.src);
    let sources = [
        format!(
            "url: \"{url}\", checksum: {{ file: \"{}/img/GNU256\" }}",
            f.base
        ),
        format!(
            "url: \"{url}\", checksum: {{ file: \"{}/img/GNU512\" }}",
            f.base
        ),
        format!(
            "url: \"{url}\", checksum: {{ file: \"{}/img/BSD256\" }}",
            f.base
        ),
        format!(
            "url: \"{url}\", checksum: {{ file: \"{}/img/BSD512\" }}",
            f.base
        ),
        format!("url: \"{url}\", sha512: {s512}"),
        // The same content from another URL, found by its SHA-512.
        format!("url: \"{copy}\", sha512: {s512}"),
    ];
    for (i, source) in sources.iter().enumerate() {
        let name = format!("s{i}");
        let file = spec(&f.d, &name, source);
        kiln_ok(&f.d, &["build", &file, "-o", "out", "--quiet"]);
        assert_identical(&f.src, &f.d.path(&format!("out/{name}.qcow2")));
    }
    assert_eq!(image_gets(&f.seen), 1, "{:?}", f.seen.lock().unwrap());
    let (images, partials) = cache_entries(&f.d);
    assert_eq!(images, [sha256(&f.src)]);
    assert!(partials.is_empty(), "{partials:?}");
    let ls = kiln_ok(&f.d, &["cache", "ls"]);
    assert!(ls.contains(&sha256(&f.src)) && ls.contains(&url), "{ls}");
    // prune --partials drops unfinished downloads only; files kiln did not name stay.
    let dir = f.d.path("cache/kiln/downloads");
    let partial = dir.join(format!("url-{}.partial", "1".repeat(64)));
    std::fs::write(&partial, b"half").unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    kiln_ok(&f.d, &["cache", "prune", "--partials"]);
    assert!(!partial.exists());
    assert_eq!(cache_entries(&f.d).0, [sha256(&f.src)]);
    let pruned = kiln_ok(&f.d, &["cache", "prune", "--all"]);
    assert!(pruned.contains("removed"), "{pruned}");
    assert_eq!(cache_entries(&f.d).0.len(), 0);
    assert!(dir.join("notes.txt").exists());
}

#[test]
fn a_local_checksum_file_verifies_a_local_image() {
    let d = Dir::new();
    let src = random_raw(&d.path("disk.raw"), 1 << 20, 3);
    std::fs::write(
        d.path("SHA512SUMS"),
        format!("{}  disk.raw\n", sha512(&src)),
    )
    .unwrap();
    let file = spec(
        &d,
        "local",
        "file: disk.raw, checksum: { file: SHA512SUMS }",
    );
    kiln_ok(&d, &["build", &file, "-o", "out", "--quiet"]);
    assert_identical(&src, &d.path("out/local.qcow2"));
    std::fs::write(
        d.path("SHA512SUMS"),
        format!("{}  disk.raw\n", "e".repeat(128)),
    )
    .unwrap();
    let err = kiln_fails(&d, &["build", &file, "-o", "out2"], &[]);
    assert!(
        err.contains("sha512 of") && err.contains("SHA512SUMS says"),
        "{err}"
    );
    assert!(!d.path("out2/local.qcow2").exists());
}

/// Asserts a refused build left nothing: no cache image, no partial, no artefact.
fn assert_nothing_left(f: &Fixture, out: &str) {
    let (images, partials) = cache_entries(&f.d);
    assert!(
        images.is_empty() && partials.is_empty(),
        "{images:?} {partials:?}"
    );
    let artefacts: Vec<_> = std::fs::read_dir(f.d.path(out))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(artefacts.is_empty(), "{artefacts:?}");
}

#[test]
fn refused_wrong_digest() {
    let f = fixture(&[]);
    let wrong = "ab".repeat(64);
    let file = spec(
        &f.d,
        "w",
        &format!("url: \"{}/img/disk.raw\", sha512: {wrong}", f.base),
    );
    let err = kiln_fails(&f.d, &["build", &file, "-o", "out"], &[]);
    assert!(
        err.contains("w.yaml:4:13: disks[0].source: sha512 of http://"),
        "{err}"
    );
    assert!(
        err.contains(&wrong) && err.contains(&sha512(&f.src)),
        "{err}"
    );
    assert_nothing_left(&f, "out");
}

#[test]
fn refused_name_missing_from_the_checksum_file() {
    let f = fixture(&[]);
    // GNU256 lists other.raw and disk.raw, not the name this URL ends in.
    let file = spec(
        &f.d,
        "m",
        &format!(
            "url: \"{0}/img/GNU512\", checksum: {{ file: \"{0}/img/GNU256\" }}",
            f.base
        ),
    );
    let err = kiln_fails(&f.d, &["build", &file, "-o", "out"], &[]);
    assert!(err.contains("has no line for `GNU512`"), "{err}");
    assert!(
        err.contains("`other.raw`") && err.contains("`disk.raw`"),
        "{err}"
    );
    assert_nothing_left(&f, "out");
}

#[test]
fn refused_two_lines_for_the_name() {
    let f = fixture(&[]);
    let file = spec(
        &f.d,
        "t",
        &format!(
            "url: \"{0}/img/disk.raw\", checksum: {{ file: \"{0}/img/TWO\" }}",
            f.base
        ),
    );
    let err = kiln_fails(&f.d, &["build", &file, "-o", "out"], &[]);
    assert!(
        err.contains("2 SHA256 lines for `disk.raw`: line 1, line 2"),
        "{err}"
    );
    assert_nothing_left(&f, "out");
    assert_eq!(image_gets(&f.seen), 0);
}

#[test]
fn refused_md5_only_checksum_file() {
    let f = fixture(&[]);
    let file = spec(
        &f.d,
        "m",
        &format!(
            "url: \"{0}/img/disk.raw\", checksum: {{ file: \"{0}/img/MD5\" }}",
            f.base
        ),
    );
    let err = kiln_fails(&f.d, &["build", &file, "-o", "out"], &[]);
    assert!(err.contains("lists only MD5 for `disk.raw`"), "{err}");
    assert_nothing_left(&f, "out");
    assert_eq!(image_gets(&f.seen), 0);
}

#[test]
fn refused_offline_with_an_empty_cache_naming_every_source() {
    let f = fixture(&[]);
    let text = format!(
        "name: two\ndisks:\n  - name: a\n    source: {{ url: \"{0}/img/disk.raw\", checksum: {{ file: \"{0}/img/GNU256\" }} }}\n  - name: b\n    source: {{ url: \"{0}/copy/disk.raw\", sha256: {1} }}\noutputs:\n  - {{ name: a, file: a.qcow2, disk: a, disk_format: qcow2, container_format: bare }}\n  - {{ name: b, file: b.qcow2, disk: b, disk_format: qcow2, container_format: bare }}\n",
        f.base,
        sha256(&f.src)
    );
    std::fs::write(f.d.path("two.yaml"), text).unwrap();
    let err = kiln_fails(&f.d, &["build", "two.yaml", "-o", "out", "--offline"], &[]);
    assert!(err.contains("--offline: not in the cache"), "{err}");
    assert!(
        err.contains("two.yaml:4:13: disks[0].source") && err.contains("/img/GNU256"),
        "{err}"
    );
    assert!(
        err.contains("two.yaml:6:13: disks[1].source") && err.contains("/copy/disk.raw"),
        "{err}"
    );
    assert!(
        f.seen.lock().unwrap().is_empty(),
        "{:?}",
        f.seen.lock().unwrap()
    );
    assert_nothing_left(&f, "out");
    // `kiln fetch` fills the cache; then the offline build needs no network.
    let fetched = kiln_ok(&f.d, &["fetch", "two.yaml", "--quiet"]);
    assert_eq!(fetched.lines().count(), 2, "{fetched}");
    let before = f.seen.lock().unwrap().len();
    kiln_ok(
        &f.d,
        &["build", "two.yaml", "-o", "out", "--offline", "--quiet"],
    );
    assert_eq!(f.seen.lock().unwrap().len(), before);
    assert_identical(&f.src, &f.d.path("out/a.qcow2"));
    assert_identical(&f.src, &f.d.path("out/b.qcow2"));
    assert_eq!(cache_entries(&f.d).0.len(), 1);
}

#[test]
fn downloads_go_through_the_proxy_http_proxy_names() {
    let f = fixture(&[]);
    let (proxy_url, proxied) = proxy(false);
    let file = spec(
        &f.d,
        "p",
        &format!(
            "url: \"{0}/img/disk.raw\", checksum: {{ file: \"{0}/img/GNU256\" }}",
            f.base
        ),
    );
    let out = kiln_env(
        &f.d,
        &["build", &file, "-o", "out", "--quiet"],
        &[("HTTP_PROXY", &proxy_url)],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_identical(&f.src, &f.d.path("out/p.qcow2"));
    let host = f.base.trim_start_matches("http://");
    let connects = proxied.lock().unwrap().clone();
    assert_eq!(connects.len(), 2, "{connects:?}");
    assert!(
        connects
            .iter()
            .all(|c| c.starts_with(&format!("CONNECT {host} "))),
        "{connects:?}"
    );
    // NO_PROXY sends the next download around the proxy.
    kiln_ok(&f.d, &["cache", "prune", "--all"]);
    let out = kiln_env(
        &f.d,
        &["build", &file, "-o", "out2", "--quiet"],
        &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "127.0.0.1")],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(proxied.lock().unwrap().len(), 2);
}

#[test]
fn refused_by_the_proxy() {
    let f = fixture(&[]);
    let (proxy_url, proxied) = proxy(true);
    let file = spec(
        &f.d,
        "r",
        &format!(
            "url: \"{}/img/disk.raw\", sha256: {}",
            f.base,
            sha256(&f.src)
        ),
    );
    let err = kiln_fails(
        &f.d,
        &["build", &file, "-o", "out"],
        &[("HTTP_PROXY", &proxy_url)],
    );
    assert!(err.contains(&format!("through proxy {proxy_url}")), "{err}");
    assert!(!proxied.lock().unwrap().is_empty());
    assert!(f.seen.lock().unwrap().is_empty());
    assert_nothing_left(&f, "out");
}

/// A throwaway OpenPGP home with one signing key; `gpg` runs with it.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new(uid: &str, algo: &str) -> Self {
        require_tool("gpg");
        let home = tempfile::tempdir().unwrap();
        let g = Self { home };
        g.run(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            algo,
            "sign",
            "never",
        ]);
        g
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--yes", "--pinentry-mode", "loopback"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "gpg {args:?}:\n{}", describe(&out));
        out
    }

    fn export(&self, armor: bool) -> Vec<u8> {
        let args: &[&str] = if armor {
            &["--armor", "--export"]
        } else {
            &["--export"]
        };
        self.run(args).stdout
    }

    /// A detached signature over `data` (binary or armored).
    fn sign(&self, data: &[u8], armor: bool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in"), dir.path().join("in.sig"));
        std::fs::write(&input, data).unwrap();
        let mut args = vec!["--detach-sign", "-o", output.to_str().unwrap()];
        if armor {
            args.insert(0, "--armor");
        }
        args.push(input.to_str().unwrap());
        self.run(&args);
        std::fs::read(output).unwrap()
    }

    /// The fingerprint of the (one) key, as gpg prints it.
    fn fingerprint(&self) -> String {
        let out = self.run(&["--with-colons", "--list-keys"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().find(|l| l.starts_with("fpr:")).unwrap();
        line.split(':').nth(9).unwrap().to_string()
    }

    /// What `gpg --verify --status-fd 1` says about `sig` over `data`.
    fn verify_status(&self, sig: &[u8], data: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d"), data).unwrap();
        std::fs::write(dir.path().join("d.sig"), sig).unwrap();
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--status-fd", "1", "--verify"])
            .arg(dir.path().join("d.sig"))
            .arg(dir.path().join("d"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `gpg --verify` as the oracle: true when gpg calls the signature good.
    fn verifies(&self, sig: &[u8], data: &[u8]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d"), data).unwrap();
        std::fs::write(dir.path().join("d.sig"), sig).unwrap();
        Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--verify"])
            .arg(dir.path().join("d.sig"))
            .arg(dir.path().join("d"))
            .output()
            .unwrap()
            .status
            .success()
    }
}

/// The signed fixture: SUMS (GNU, SHA-256) with a binary and an armored signature by
/// `signer`, a tampered copy, and the image signed directly.
fn signed_fixture(signer: &Gpg) -> Fixture {
    let d = Dir::new();
    let src = random_raw(&d.path("disk.raw"), 1 << 20, 17);
    let sums = format!("{}  disk.raw\n", sha256(&src)).into_bytes();
    let mut tampered = sums.clone();
    tampered[0] = if tampered[0] == b'0' { b'1' } else { b'0' };
    let image = std::fs::read(&src).unwrap();
    let extra = [
        ("/s/SUMS", sums.clone()),
        ("/s/SUMS.gpg", signer.sign(&sums, false)),
        ("/s/SUMS.sign", signer.sign(&sums, true)),
        ("/bad/SUMS", tampered),
        ("/bad/SUMS.gpg", signer.sign(&sums, false)),
        ("/s/disk.raw.sig", signer.sign(&image, true)),
    ];
    // The oracle: gpg calls the good signatures good and the tampered file's bad.
    assert!(signer.verifies(&extra[1].1, &sums) && signer.verifies(&extra[2].1, &sums));
    assert!(signer.verifies(&extra[5].1, &image));
    assert!(!signer.verifies(&extra[4].1, &extra[3].1));
    let f = fixture(&extra);
    // The fixture made its own image from the same seed: the digests agree.
    assert_eq!(sha256(&f.src), sha256(&src));
    f
}

fn signed_source(base: &str, dir: &str, sig: &str, keyring: &str) -> String {
    format!(
        "url: \"{base}/img/disk.raw\", checksum: {{ file: \"{base}/{dir}/SUMS\" }}, signature: {{ file: \"{base}/{dir}/{sig}\", keyring: {keyring} }}"
    )
}

#[test]
fn signed_checksum_files_verify_binary_and_armored() {
    let signer = Gpg::new("kiln test <signer@example.org>", "rsa2048");
    let f = signed_fixture(&signer);
    std::fs::write(f.d.path("keys.gpg"), signer.export(false)).unwrap();
    std::fs::write(f.d.path("keys.asc"), signer.export(true)).unwrap();
    let cases = [("SUMS.gpg", "keys.gpg"), ("SUMS.sign", "keys.asc")];
    for (i, (sig, keyring)) in cases.iter().enumerate() {
        let name = format!("g{i}");
        let file = spec(&f.d, &name, &signed_source(&f.base, "s", sig, keyring));
        kiln_ok(&f.d, &["build", &file, "-o", "out", "--quiet"]);
        assert_identical(&f.src, &f.d.path(&format!("out/{name}.qcow2")));
    }
    // A signature over the image itself (no checksum file).
    let file = spec(
        &f.d,
        "direct",
        &format!(
            "url: \"{0}/img/disk.raw\", signature: {{ file: \"{0}/s/disk.raw.sig\", keyring: keys.asc }}",
            f.base
        ),
    );
    kiln_ok(&f.d, &["build", &file, "-o", "out", "--quiet"]);
    assert_identical(&f.src, &f.d.path("out/direct.qcow2"));
    assert_eq!(cache_entries(&f.d).0.len(), 1);
}

#[test]
fn gpg_is_the_oracle_for_the_test_signatures() {
    let signer = Gpg::new("kiln test <oracle@example.org>", "ed25519");
    let data = b"0123  disk.raw\n";
    assert!(signer.verifies(&signer.sign(data, false), data));
    assert!(signer.verifies(&signer.sign(data, true), data));
    assert!(!signer.verifies(&signer.sign(data, false), b"0124  disk.raw\n"));
}

#[test]
fn refused_bad_signature() {
    let signer = Gpg::new("kiln test <bad@example.org>", "ed25519");
    let f = signed_fixture(&signer);
    std::fs::write(f.d.path("keys.gpg"), signer.export(false)).unwrap();
    let file = spec(
        &f.d,
        "b",
        &signed_source(&f.base, "bad", "SUMS.gpg", "keys.gpg"),
    );
    let err = kiln_fails(&f.d, &["build", &file, "-o", "out"], &[]);
    assert!(
        err.contains("BAD signature") && err.contains("/bad/SUMS.gpg"),
        "{err}"
    );
    assert_nothing_left(&f, "out");
    assert_eq!(
        image_gets(&f.seen),
        0,
        "the image is not fetched on a bad signature"
    );
}

#[test]
fn refused_signature_by_a_key_not_in_the_keyring() {
    let signer = Gpg::new("kiln test <signer@example.org>", "ed25519");
    let stranger = Gpg::new("someone else <stranger@example.org>", "ed25519");
    let f = signed_fixture(&signer);
    std::fs::write(f.d.path("other.gpg"), stranger.export(false)).unwrap();
    let file = spec(
        &f.d,
        "u",
        &signed_source(&f.base, "s", "SUMS.gpg", "other.gpg"),
    );
    let err = kiln_fails(&f.d, &["build", &file, "-o", "out"], &[]);
    assert!(
        err.contains("which is not in") && err.contains("other.gpg"),
        "{err}"
    );
    assert_nothing_left(&f, "out");
    assert_eq!(image_gets(&f.seen), 0);
}

#[test]
fn distribution_templates_validate() {
    let d = Dir::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    for t in ["debian-cloud", "fedora-cloud"] {
        let spec = root.join(format!("{t}.yaml"));
        d.kiln_ok(&["validate", spec.to_str().unwrap()]);
    }
    // Ubuntu's template names the signing key shipped beside it.
    let text = std::fs::read_to_string(root.join("ubuntu-cloud.yaml")).unwrap();
    assert!(text.contains("SHA256SUMS.gpg") && text.contains("UEC Image Automatic Signing Key"));
    assert!(text.contains("keyring: ubuntu-cloudimage-keyring.asc"));
    d.kiln_ok(&["validate", root.join("ubuntu-cloud.yaml").to_str().unwrap()]);
    for t in ["debian-cloud", "ubuntu-cloud", "fedora-cloud"] {
        let text = std::fs::read_to_string(root.join(format!("{t}.yaml"))).unwrap();
        assert!(
            text.contains("checksum:") && !text.contains("sha256:"),
            "{t}"
        );
    }
}

/// `kiln init --template ubuntu-cloud` writes Ubuntu's cloud-image signing key beside the spec:
/// gpg (the oracle) reads it as the key with the fingerprint Ubuntu documents, and kiln reads
/// it as a keyring (a signature by another key is refused as "not in" it, not as unreadable).
#[test]
fn ubuntu_template_ships_the_documented_signing_key() {
    let signer = Gpg::new("kiln test <signer@example.org>", "ed25519");
    let f = signed_fixture(&signer);
    let out = kiln_ok(&f.d, &["init", "--template", "ubuntu-cloud", "proj"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["proj/kiln.yaml", "proj/ubuntu-cloudimage-keyring.asc"]
    );
    let key = f.d.path("proj/ubuntu-cloudimage-keyring.asc");
    let shown = signer.run(&["--with-colons", "--show-keys", key.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains(":D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81:")
            && shown.contains("UEC Image Automatic Signing Key <cdimage@ubuntu.com>"),
        "{shown}"
    );
    f.d.kiln_ok(&["validate", "proj/kiln.yaml"]);
    let keyring = key.to_str().unwrap();
    let file = spec(&f.d, "u", &signed_source(&f.base, "s", "SUMS.gpg", keyring));
    let err = kiln_fails(&f.d, &["build", &file, "-o", "out"], &[]);
    assert!(
        err.contains("which is not in") && err.contains("ubuntu-cloudimage-keyring.asc"),
        "{err}"
    );
    assert_nothing_left(&f, "out");
    // A second init refuses before writing anything.
    let err =
        f.d.kiln_err(&["init", "--template", "ubuntu-cloud", "proj"], 2);
    assert!(err.contains("--force"), "{err}");
}

#[test]
fn a_503_is_retried_and_a_404_is_not() {
    let f = fixture(&[]);
    let sha = sha256(&f.src);
    let file = spec(
        &f.d,
        "f",
        &format!("url: \"{}/flaky/disk.raw\", sha256: {sha}", f.base),
    );
    let out = kiln_env(&f.d, &["build", &file, "-o", "out"], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("retrying"));
    assert_identical(&f.src, &f.d.path("out/f.qcow2"));
    let file = spec(
        &f.d,
        "n",
        // Another digest, so the cache cannot answer for it.
        &format!(
            "url: \"{}/nothing/disk.raw\", sha256: {}",
            f.base,
            "cd".repeat(32)
        ),
    );
    let err = kiln_fails(&f.d, &["build", &file, "-o", "out2"], &[]);
    assert!(err.contains("HTTP status 404"), "{err}");
    let gets = f
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("GET /nothing/"))
        .count();
    assert_eq!(gets, 1, "a 404 is not retried");
}

#[test]
fn refused_signature_by_an_expired_key() {
    require_tool("gpg");
    // A key made, and used, in 2020 with a one-day lifetime: expired long before now. Each
    // gpg run starts its faked clock anew, so the key is used an hour after it is made: a
    // key generation that ticks past a second would otherwise be "created in the future".
    let home = tempfile::tempdir().unwrap();
    let gpg_at = |time: &str, args: &[&str]| {
        let out = Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args([
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--faked-system-time",
                time,
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "gpg {args:?}:\n{}", describe(&out));
        out.stdout
    };
    let gpg = |args: &[&str]| gpg_at("20200101T010000", args);
    gpg_at(
        "20200101T000000",
        &[
            "--passphrase",
            "",
            "--quick-gen-key",
            "old <old@example.org>",
            "ed25519",
            "sign",
            "1d",
        ],
    );
    let f = fixture(&[]);
    let sums = format!("{}  disk.raw\n", sha256(&f.src));
    std::fs::write(f.d.path("SUMS"), &sums).unwrap();
    gpg(&[
        "--detach-sign",
        "-o",
        f.d.path("SUMS.gpg").to_str().unwrap(),
        f.d.path("SUMS").to_str().unwrap(),
    ]);
    std::fs::write(f.d.path("keys.gpg"), gpg(&["--export"])).unwrap();
    let source = format!(
        "url: \"{}/img/disk.raw\", checksum: {{ file: SUMS }}, signature: {{ file: SUMS.gpg, keyring: keys.gpg }}",
        f.base
    );
    let file = spec(&f.d, "x", &source);
    let err = kiln_fails(&f.d, &["build", &file, "-o", "out"], &[]);
    assert!(err.contains("which expired at"), "{err}");
    assert_nothing_left(&f, "out");
    assert_eq!(image_gets(&f.seen), 0);
}
