//! Test helpers: run the built binary in a fresh directory, make source images, call the
//! oracle wrappers in `tests/oracles` (installed by `tests/setup.sh`).
#![allow(dead_code, missing_docs)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh temporary directory that a test runs kiln in.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Self {
        Self {
            tmp: tempfile::Builder::new()
                .prefix("kiln-test.")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `kiln ARGS` run in this directory.
    pub fn kiln(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .current_dir(self.tmp.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap()
    }

    /// `kiln ARGS`, asserting success; returns stdout.
    pub fn kiln_ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed:\n{}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kiln ARGS`, asserting failure with `code`; returns stderr.
    pub fn kiln_err(&self, args: &[&str], code: i32) -> String {
        let out = self.kiln(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "kiln {args:?}:\n{}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Names of the files in this directory, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// The file names in `dir`, sorted; none when it does not exist.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// GNU tar extracts the archive `ova` into `dir` (created when missing).
pub fn tar_extract(ova: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    run_ok(
        "tar",
        &["-xf", ova.to_str().unwrap(), "-C", dir.to_str().unwrap()],
    );
}

/// Runs the Python `script` with `args` in `dir`, asserting it succeeds; its trimmed stdout.
pub fn python(dir: &Path, script: &str, args: &[&str]) -> String {
    require_tool("python3");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "python3 failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// openssl makes a throwaway 2048-bit RSA key `key` and a self-signed certificate `cert`
/// for it (valid a year, subject `CN=cn`).
pub fn openssl_key_and_cert(key: &Path, cert: &Path, cn: &str) {
    let subject = format!("/CN={cn}");
    run_ok(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "365",
            "-subj",
            &subject,
        ],
    );
}

/// openssl checks the signature line of the `.cert` file `cert` (`SHA256(NAME.mf)= HEX`
/// then the PEM certificate) against the manifest `mf` beside it, with the certificate's
/// public key.
pub fn openssl_verifies_cert(cert: &Path, mf: &Path) {
    let text = std::fs::read_to_string(cert).unwrap();
    let line = text.lines().next().unwrap();
    let name = mf.file_name().unwrap().to_str().unwrap();
    let hex = line
        .strip_prefix(&format!("SHA256({name})= "))
        .unwrap_or_else(|| panic!("{line}"));
    let sig: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (sig_path, pub_path) = (dir.path().join("sig.bin"), dir.path().join("pub.pem"));
    std::fs::write(&sig_path, sig).unwrap();
    let public = run_ok(
        "openssl",
        &["x509", "-in", cert.to_str().unwrap(), "-pubkey", "-noout"],
    );
    std::fs::write(&pub_path, public).unwrap();
    let verified = run_ok(
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-verify",
            pub_path.to_str().unwrap(),
            "-signature",
            sig_path.to_str().unwrap(),
            mf.to_str().unwrap(),
        ],
    );
    assert!(verified.contains("Verified OK"), "{verified}");
}

pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The one command that installs every tool and oracle the tests use.
pub const SETUP: &str = "bash tests/setup.sh";

/// Path of one of the repository's oracle wrappers (`tests/oracles/NAME`).
pub fn oracle(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracles")
        .join(name);
    assert!(
        p.exists(),
        "oracle {} is missing from the repository",
        p.display()
    );
    p
}

/// Panics with the install command unless `tool` is on PATH.
pub fn require_tool(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{tool} is not installed; run `{SETUP}`");
}

/// Runs `tool ARGS`, asserting success; returns stdout.
pub fn run_ok(tool: &str, args: &[&str]) -> String {
    require_tool(tool);
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `check-image --format FMT [--subformat SUB] IMAGE [--source SRC] [extra...]` must pass.
pub fn check_image(
    format: &str,
    subformat: Option<&str>,
    image: &Path,
    source: Option<&Path>,
    extra: &[&str],
) {
    let mut cmd = Command::new(oracle("check-image"));
    cmd.args(["--format", format]);
    if let Some(s) = subformat {
        cmd.args(["--subformat", s]);
    }
    cmd.arg(image);
    if let Some(s) = source {
        cmd.arg("--source").arg(s);
    }
    cmd.args(extra);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "check-image {format} {subformat:?} {} failed:\n{}",
        image.display(),
        describe(&out)
    );
}

/// `check-seed [extra...] SEED` (cloud-init's own NoCloud code reads the seed) must pass.
pub fn check_seed(seed: &Path, extra: &[&str]) {
    let out = Command::new(oracle("check-seed"))
        .args(extra)
        .arg(seed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-seed {} failed:\n{}",
        seed.display(),
        describe(&out)
    );
}

/// `check-ova --strict --profile PROFILE PACKAGE` (DMTF schema via xmllint, tar order,
/// manifest digests, the importer's rules) must pass without errors or warnings.
pub fn check_ova(package: &Path, profile: &str) {
    let out = Command::new(oracle("check-ova"))
        .args(["--strict", "--profile", profile])
        .arg(package)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-ova --profile {profile} {} failed:\n{}",
        package.display(),
        describe(&out)
    );
}

/// Where `tests/setup.sh` keeps the venv and cloud-init's code (`$KILN_TEST_CACHE`, default
/// `${XDG_CACHE_HOME:-~/.cache}/kiln-test`).
pub fn test_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_TEST_CACHE") {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        })
        .join("kiln-test")
}

/// The test venv's python and the directory of cloud-init's unpacked code (both made by
/// `tests/setup.sh`); panics with the install command when either is missing.
pub fn cloud_init_python() -> (PathBuf, PathBuf) {
    let cache = test_cache();
    let python = cache.join("venv/bin/python");
    let pydir = cache.join("cloud-init/usr/lib/python3/dist-packages");
    assert!(
        python.exists() && pydir.join("cloudinit/sources/DataSourceOVF.py").exists(),
        "cloud-init's code or the test venv is missing under {}; run `{SETUP}`",
        cache.display()
    );
    (python, pydir)
}

/// A small deterministic PRNG (xorshift64*), so sources need no extra crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes a sparse raw image of `size` bytes with `runs` random data runs (some unaligned,
/// some all-zero data, some at the very end) and returns its path.
pub fn sparse_raw(path: &Path, size: u64, runs: usize, seed: u64) -> PathBuf {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut rng = Rng::new(seed);
    for i in 0..runs {
        let len = 1 + rng.below(300_000);
        let off = rng.below(size.saturating_sub(len).max(1));
        let mut buf = vec![0u8; usize::try_from(len).unwrap()];
        if i % 5 != 4 {
            rng.fill(&mut buf);
        }
        f.write_all_at(&buf, off).unwrap();
    }
    // Data in the last bytes exercises partial final blocks.
    f.write_all_at(b"tail", size - 4).unwrap();
    path.to_path_buf()
}

/// Writes `size` bytes of random data.
pub fn random_raw(path: &Path, size: u64, seed: u64) -> PathBuf {
    let mut buf = vec![0u8; usize::try_from(size).unwrap()];
    Rng::new(seed).fill(&mut buf);
    std::fs::write(path, &buf).unwrap();
    path.to_path_buf()
}

/// A small ext4 image made with mkfs.ext4 -d from a tree of real files (the corpus shape,
/// at test size).
pub fn ext4_raw(path: &Path, size_mib: u64) -> PathBuf {
    require_tool("mkfs.ext4");
    let tree = tempfile::tempdir().unwrap();
    for (i, name) in ["a.txt", "b.bin", "deep/c.txt", "deep/er/d.bin"]
        .iter()
        .enumerate()
    {
        let p = tree.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut data = vec![0u8; 50_000 * (i + 1)];
        Rng::new(i as u64 + 7).fill(&mut data);
        std::fs::write(p, data).unwrap();
    }
    let size = format!("{size_mib}M");
    run_ok(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-E",
            "root_owner=0:0",
            "-d",
            tree.path().to_str().unwrap(),
            path.to_str().unwrap(),
            &size,
        ],
    );
    path.to_path_buf()
}

/// SHA-256 of a file, hex (via sha256sum, an independent tool).
pub fn sha256(path: &Path) -> String {
    run_ok("sha256sum", &[path.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Asserts two files are byte-identical.
pub fn assert_same_file(a: &Path, b: &Path) {
    assert_eq!(
        sha256(a),
        sha256(b),
        "{} and {} differ",
        a.display(),
        b.display()
    );
}

/// Python for `python(dir, OVA_EDIT, &[SRC, DST, OLD, NEW])`: replaces OLD by NEW once in the
/// descriptor of the OVA SRC, re-hashes every manifest line with its own algorithm and writes
/// DST as a ustar OVA in the same member order (an injected defect the manifest still covers).
pub const OVA_EDIT: &str = r#"
import hashlib, io, re, sys, tarfile
src, dst, old, new = sys.argv[1:5]
t = tarfile.open(src)
members = t.getmembers()
data = {m.name: t.extractfile(m).read() for m in members}
ovf = [n for n in data if n.endswith('.ovf')][0]
text = data[ovf].decode()
assert old in text, old
data[ovf] = text.replace(old, new, 1).encode()
mf = [n for n in data if n.endswith('.mf')][0]
lines = []
for line in data[mf].decode().splitlines():
    alg, name = re.match(r'(\w+)\((.+)\)= ', line).groups()
    lines.append('%s(%s)= %s' % (alg, name, hashlib.new(alg.lower(), data[name]).hexdigest()))
data[mf] = ('\n'.join(lines) + '\n').encode()
with tarfile.open(dst, 'w', format=tarfile.USTAR_FORMAT) as out:
    for m in members:
        info = tarfile.TarInfo(m.name)
        info.size, info.mode, info.mtime = len(data[m.name]), m.mode, m.mtime
        out.addfile(info, io.BytesIO(data[m.name]))
"#;

/// `kiln build` of `text` fails at validation; returns stderr with the report's box
/// drawing removed and whitespace collapsed, asserting nothing was written.
pub fn build_refused(text: &str) -> String {
    let d = Dir::new();
    std::fs::write(d.path("s.yaml"), text).unwrap();
    let err = d.kiln_err(&["build", "s.yaml", "-o", "out"], 1);
    assert!(
        !d.path("out").exists() || names_in(&d.path("out")).is_empty(),
        "{err}"
    );
    let flat: String = err.replace(['│', '×'], " ");
    flat.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s.yaml:LINE:COL` of the value after `target: ` on the last line of `text`.
pub fn target_at(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.last().unwrap();
    let col = last.find("target: ").unwrap() + "target: ".len() + 1;
    format!("s.yaml:{}:{col}", lines.len())
}
