//! `kiln unbundle` and `kiln verify` of a bundle manifest, in the reference decoder's
//! order: structure, signature (only with the user's certificate, which the manifest does
//! not carry), parts (presence, SHA-1, `bundled_size`), then for unbundling the key and
//! IV, AES-CBC, gunzip, the image digest and the tar member. The image is written as
//! `DIR/NAME.partial` and renamed only when every check passed.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use rsa::PrivateKey;
use sha1::{Digest, Sha1};

use super::Ec2Error;
use super::crypto::{
    CbcDecryptor, decrypt_hex16, load_certificate_key, load_private_key, parse_hex, verify_sha1,
};
use super::manifest::Manifest;
use super::parse::{MAX_MANIFEST_BYTES, ParsedManifest, parse_manifest};
use super::passthrough;
use super::untar::{Counted, ExtractError, expect_end, extract, read_member};
use crate::container::manifest::hex;
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;

/// One line of the report: a step and what was (or was not) established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The step (`structure`, `signature`, `parts`, ...).
    pub step: &'static str,
    /// False when the step was skipped (e.g. no certificate for the signature).
    pub checked: bool,
    /// What was established.
    pub message: String,
}

fn pass(step: &'static str, message: String) -> Check {
    Check {
        step,
        checked: true,
        message,
    }
}

/// What `kiln verify` needs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The manifest.
    pub manifest: PathBuf,
    /// The user's certificate, to check the signature.
    pub cert: Option<PathBuf>,
    /// Directory of the parts (default: the manifest's).
    pub source: Option<PathBuf>,
}

/// What `kiln unbundle` needs.
#[derive(Debug, Clone)]
pub struct UnbundleOptions {
    /// Manifest, certificate and parts directory.
    pub verify: VerifyOptions,
    /// The user's (or EC2's) private key.
    pub private_key: PathBuf,
    /// Where the image is written (as `DIR/NAME`).
    pub destination: PathBuf,
    /// Replace an existing image.
    pub force: bool,
    /// fsync the image before renaming it into place.
    pub sync: bool,
}

fn fail(e: Ec2Error, path: &Path) -> Error {
    let kind = match e {
        Ec2Error::NotManifest => ErrorKind::InvalidInput,
        _ => ErrorKind::InvalidImage,
    };
    Error::new(kind, e).with_path(path)
}

/// Whether `bytes` look like an EC2 manifest: XML whose first element is `<manifest>`.
pub fn looks_like_manifest(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    if rest.starts_with("<?xml") {
        rest = rest.find("?>").map_or("", |i| rest[i + 2..].trim_start());
    }
    rest.starts_with("<manifest>") || rest.starts_with("<manifest ")
}

/// Reads (bounded) and parses the manifest at `path`.
fn load_manifest(path: &Path) -> Result<ParsedManifest> {
    let file = File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(e).with_path(path))?;
    parse_manifest(&bytes).map_err(|e| fail(e, path))
}

fn check_signature(parsed: &ParsedManifest, opts: &VerifyOptions) -> Result<Check> {
    let Some(cert) = &opts.cert else {
        return Ok(Check {
            step: "signature",
            checked: false,
            message: "NOT checked: pass --cert with the user's certificate (the manifest does not carry it)".into(),
        });
    };
    let key = load_certificate_key(cert, "certificate")?;
    let sig = parse_hex(&parsed.manifest.signature).unwrap_or_default();
    if !verify_sha1(&key, &parsed.signed, &sig) {
        return Err(fail(Ec2Error::Signature, &opts.manifest));
    }
    Ok(pass(
        "signature",
        format!(
            "RSA-SHA1 over {} bytes of <machine_configuration><image> verifies with {}",
            parsed.signed.len(),
            cert.display()
        ),
    ))
}

fn part_paths(m: &Manifest, opts: &VerifyOptions) -> Vec<PathBuf> {
    let dir = opts.source.clone().unwrap_or_else(|| {
        opts.manifest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    });
    m.image
        .parts
        .iter()
        .map(|p| dir.join(&p.filename))
        .collect()
}

/// Every part present, of the right digest, adding up to `bundled_size`.
fn check_parts(m: &Manifest, paths: &[PathBuf], manifest: &Path) -> Result<Check> {
    let mut total = 0u64;
    for (index, (path, entry)) in paths.iter().zip(&m.image.parts).enumerate() {
        if !path.is_file() {
            let e = Ec2Error::PartMissing {
                index,
                name: entry.filename.clone(),
            };
            return Err(fail(e, manifest));
        }
        total += path
            .metadata()
            .map_err(|e| Error::io(e).with_path(path))?
            .len();
    }
    if total != m.image.bundled_size {
        let e = Ec2Error::BundledSize {
            found: total,
            expected: m.image.bundled_size,
        };
        return Err(fail(e, manifest));
    }
    let mut buf = vec![0u8; 1 << 20];
    for (index, (path, entry)) in paths.iter().zip(&m.image.parts).enumerate() {
        let found = sha1_file(path, &mut buf)?;
        if found != entry.digest {
            let e = Ec2Error::PartDigest {
                index,
                name: entry.filename.clone(),
                found,
                expected: entry.digest.clone(),
            };
            return Err(fail(e, manifest));
        }
    }
    Ok(pass(
        "parts",
        format!("{} part digest(s) match, {total} bytes", paths.len()),
    ))
}

fn sha1_file(path: &Path, buf: &mut [u8]) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let mut h = Sha1::new();
    loop {
        let n = f.read(buf).map_err(|e| Error::io(e).with_path(path))?;
        if n == 0 {
            return Ok(hex(&h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// The checks that need no private key: structure, signature (with a certificate), parts.
fn verify_parsed(opts: &VerifyOptions) -> Result<(ParsedManifest, Vec<PathBuf>, Vec<Check>)> {
    let parsed = load_manifest(&opts.manifest)?;
    let m = &parsed.manifest;
    let mut checks = vec![pass(
        "structure",
        format!(
            "manifest {}: image {:?}, type {}, {} bytes, {} part(s)",
            m.version,
            m.image.name,
            m.image.kind.as_str(),
            m.image.size,
            m.image.parts.len()
        ),
    )];
    checks.push(check_signature(&parsed, opts)?);
    let paths = part_paths(m, opts);
    checks.push(check_parts(m, &paths, &opts.manifest)?);
    Ok((parsed, paths, checks))
}

/// Checks a bundle without its private key.
///
/// # Errors
/// The first check that fails, naming its step.
pub fn verify(opts: &VerifyOptions) -> Result<Vec<Check>> {
    let (_, _, mut checks) = verify_parsed(opts)?;
    checks.push(Check {
        step: "digest",
        checked: false,
        message: "NOT checked: the image digest needs the private key (kiln unbundle)".into(),
    });
    Ok(checks)
}

/// The AES key and IV, from the user's recipient first, then EC2's.
fn session_key(m: &Manifest, key: &PrivateKey) -> Option<(&'static str, [u8; 16], [u8; 16])> {
    let k = &m.image.keys;
    [
        ("user", &k.user_key, &k.user_iv),
        ("ec2", &k.ec2_key, &k.ec2_iv),
    ]
    .into_iter()
    .find_map(|(who, key_hex, iv_hex)| {
        let aes = decrypt_hex16(key, key_hex)?;
        Some((who, aes, decrypt_hex16(key, iv_hex)?))
    })
}

/// Verifies and restores the image of a bundle.
///
/// # Errors
/// The first check that fails, naming its step; nothing is left in the destination.
pub fn unbundle(opts: &UnbundleOptions) -> Result<(PathBuf, Vec<Check>)> {
    let manifest_path = &opts.verify.manifest;
    let (parsed, paths, mut checks) = verify_parsed(&opts.verify)?;
    let m = &parsed.manifest;
    let private = load_private_key(&opts.private_key)?;
    let (who, key, iv) =
        session_key(m, &private).ok_or_else(|| fail(Ec2Error::DecryptKey, manifest_path))?;
    checks.push(pass(
        "decrypt-key",
        format!("{who}_encrypted_key and IV decrypted"),
    ));
    std::fs::create_dir_all(&opts.destination)
        .map_err(|e| Error::io(e).with_path(&opts.destination))?;
    let target = opts.destination.join(&m.image.name);
    let mut set = OutputSet::new(&target, opts.force);
    set.set_sync(opts.sync);
    let out = set.create_primary()?;
    let parts = PartsReader::new(paths);
    let digest = restore(parts, CbcDecryptor::new(key, iv), m, &out).map_err(|e| match e {
        ExtractError::Stream(e) => fail(e, manifest_path),
        ExtractError::Write(e) => Error::io(e).with_path(&target),
    })?;
    checks.push(pass(
        "decrypt",
        "AES-128-CBC and its padding OK; gzip stream complete".into(),
    ));
    if digest != m.image.digest {
        let e = Ec2Error::ImageDigest {
            found: digest,
            expected: m.image.digest.clone(),
        };
        return Err(fail(e, manifest_path));
    }
    checks.push(pass(
        "digest",
        "SHA1 of the tar stream matches <digest>".into(),
    ));
    drop(out);
    set.commit()?;
    checks.push(pass(
        "extract",
        format!("{} bytes written to {}", m.image.size, target.display()),
    ));
    Ok((target, checks))
}

/// Decrypts, gunzips and extracts; returns the tar stream's SHA-1.
fn restore(
    parts: PartsReader,
    cipher: CbcDecryptor,
    m: &Manifest,
    out: &File,
) -> std::result::Result<String, ExtractError> {
    let decrypted = BufReader::with_capacity(1 << 20, DecryptReader::new(parts, cipher));
    let gunzip = Gunzip(flate2::bufread::GzDecoder::new(decrypted));
    let mut tar = Counted::new(Sha1Reader {
        inner: gunzip,
        sha: Sha1::new(),
    });
    let member = read_member(&mut tar)?;
    if member.name != m.image.name.as_bytes() || member.size != m.image.size {
        return Err(ExtractError::Stream(Ec2Error::Tar {
            offset: 0,
            problem: format!(
                "member {:?} of {} bytes, the manifest names {:?} of {} bytes",
                String::from_utf8_lossy(&member.name),
                member.size,
                m.image.name,
                m.image.size
            ),
        }));
    }
    extract(&mut tar, &member, out)?;
    expect_end(&mut tar)?;
    let Sha1Reader {
        inner: Gunzip(decoder),
        sha,
    } = tar.into_inner();
    expect_no_trailing(decoder.into_inner())?;
    Ok(hex(&sha.finalize()))
}

/// After the gzip member only NUL bytes may follow (the reference decoder allows them).
fn expect_no_trailing<R: BufRead>(mut rest: R) -> std::result::Result<(), ExtractError> {
    let mut extra = 0u64;
    loop {
        let buf = rest.fill_buf().map_err(|e| {
            ExtractError::Stream(passthrough(e).unwrap_or_else(|e| Ec2Error::Gunzip {
                problem: e.to_string(),
            }))
        })?;
        if buf.is_empty() {
            return Ok(());
        }
        extra += buf.iter().filter(|&&b| b != 0).count() as u64;
        let n = buf.len();
        rest.consume(n);
        if extra != 0 {
            return Err(ExtractError::Stream(Ec2Error::Gunzip {
                problem: "data follows the gzip member".into(),
            }));
        }
    }
}

/// The part files read one after another.
struct PartsReader {
    paths: std::vec::IntoIter<PathBuf>,
    current: Option<File>,
}

impl PartsReader {
    fn new(paths: Vec<PathBuf>) -> Self {
        Self {
            paths: paths.into_iter(),
            current: None,
        }
    }
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(f) = &mut self.current {
                let n = f.read(buf)?;
                if n != 0 {
                    return Ok(n);
                }
            }
            match self.paths.next() {
                Some(p) => self.current = Some(File::open(p)?),
                None => return Ok(0),
            }
        }
    }
}

/// AES-CBC decryption as a reader; a padding error surfaces as [`Ec2Error::Decrypt`].
struct DecryptReader {
    inner: PartsReader,
    cipher: Option<CbcDecryptor>,
    input: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    read: u64,
}

impl DecryptReader {
    fn new(inner: PartsReader, cipher: CbcDecryptor) -> Self {
        Self {
            inner,
            cipher: Some(cipher),
            input: vec![0; 1 << 20],
            out: Vec::new(),
            pos: 0,
            read: 0,
        }
    }
}

impl Read for DecryptReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.out.len() {
            let Some(cipher) = self.cipher.as_mut() else {
                return Ok(0);
            };
            self.out.clear();
            self.pos = 0;
            let n = self.inner.read(&mut self.input)?;
            self.read += n as u64;
            if n != 0 {
                cipher.update(&self.input[..n], &mut self.out);
                continue;
            }
            let last = self.cipher.take().and_then(|c| c.finish(&mut self.out));
            if last.is_none() {
                return Err(std::io::Error::other(Ec2Error::Decrypt {
                    bytes: self.read,
                }));
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The gzip decoder with its own errors named [`Ec2Error::Gunzip`].
struct Gunzip<R: BufRead>(flate2::bufread::GzDecoder<R>);

impl<R: BufRead> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| match passthrough(e) {
            Ok(inner) => std::io::Error::other(inner),
            Err(e) => std::io::Error::other(Ec2Error::Gunzip {
                problem: e.to_string(),
            }),
        })
    }
}

/// SHA-1 of everything read through it.
struct Sha1Reader<R> {
    inner: R,
    sha: Sha1,
}

impl<R: Read> Read for Sha1Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}
