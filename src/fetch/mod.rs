//! Fetching disk sources: local files and downloads, verified before use, downloads kept in
//! a content-addressed cache, `$XDG_CACHE_HOME/kiln/downloads/<sha256>` (else
//! `~/.cache/kiln/downloads`; layout in [`cache`]).
//!
//! Verification, in this order: a `signature` is checked over the checksum file's bytes
//! (or the image's, when there is no checksum file) before anything in it is believed; the
//! checksum file's line for the image's name gives a SHA-256 and/or SHA-512; every digest
//! (the spec's and the file's) must match. A download streams into a `.partial` file while
//! SHA-256 and SHA-512 are computed in one pass; an interrupted download resumes with an
//! HTTP `Range` request (the existing prefix is re-hashed first); transient failures are
//! retried (`http`). The file is renamed to its SHA-256 only after every check passed, so
//! a cache entry is always verified, and its sidecar remembers the SHA-512 and the URL
//! (how a SHA-512-only source and `kiln cache ls` find it).
//!
//! Progress is reported through [`Event`]s; the command line draws them.

pub mod cache;
pub mod checksum;
mod error;
pub mod http;
mod signature;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use cache::Cache;
pub use error::FetchError;

use crate::error::{Error, ErrorKind, Result};
use crate::spec::{DiskPlanSource, Location, SourceCheck};
use http::{Client, Hasher};

/// Checksum and signature files are at most this long.
pub const MAX_SMALL_FILE_BYTES: u64 = 1 << 20;
/// Keyrings are at most this long (Debian's archive keyring is ~100 KiB).
pub const MAX_KEYRING_BYTES: u64 = 16 << 20;

/// What a fetch reports while it runs.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A line for the log.
    Log(&'a str),
    /// A download starts at byte `at` of `total` (when the server says).
    Start {
        /// The URL.
        url: &'a str,
        /// Whole length, when known.
        total: Option<u64>,
        /// Where it resumes.
        at: u64,
    },
    /// Bytes of the file so far.
    Progress(u64),
    /// The download ended (done or failed).
    Finish,
}

/// How sources are fetched.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Use only the cache; a missing source is an error naming every missing one.
    pub offline: bool,
}

/// The download cache directory.
pub fn cache_dir() -> PathBuf {
    crate::context::cache_root().join("downloads")
}

/// One source to fetch and the spec location errors name (`spec.yaml:7:9: disks[0].source`).
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The source.
    pub source: &'a DiskPlanSource,
    /// Its spec location.
    pub at: &'a str,
}

/// A digest the source must have, and who says so.
struct Expect {
    algo: &'static str,
    hex: String,
    from: String,
}

/// Local paths of every source (`None` for blank disks), fetching what is missing; with
/// `offline`, every source missing from the cache is named in one error.
///
/// # Errors
/// The first failure other than a missing cache entry; then every missing entry.
pub fn resolve_all(
    cache: &Cache,
    wanted: &[Wanted<'_>],
    opts: Options,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<Option<PathBuf>>> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for w in wanted {
        match resolve(cache, w.source, w.at, opts, on) {
            Ok(p) => out.push(p),
            Err(e) => match e.cause().downcast_ref::<FetchError>() {
                Some(FetchError::NotCached { missing: m, .. }) => missing.push(m.clone()),
                _ => return Err(e),
            },
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    Err(not_cached(cache, missing.join("; ")))
}

fn not_cached(cache: &Cache, missing: String) -> Error {
    let e = FetchError::NotCached {
        dir: cache.dir().display().to_string(),
        missing,
    };
    Error::new(ErrorKind::Io, e)
}

/// The local path of one source (`None` for a blank disk), verified.
///
/// # Errors
/// Verification failures, HTTP failures, a source missing from the cache when offline.
pub fn resolve(
    cache: &Cache,
    source: &DiskPlanSource,
    at: &str,
    opts: Options,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<Option<PathBuf>> {
    match source {
        DiskPlanSource::Blank => Ok(None),
        DiskPlanSource::File {
            path,
            sha256,
            check,
        } => {
            let name = file_name_of(&path.to_string_lossy());
            let ctx = Ctx { cache, at, opts };
            let expect = ctx.expectations(sha256.as_deref(), check, &name, on)?;
            ctx.check_file(path, &path.display().to_string(), &expect, check)?;
            Ok(Some(path.clone()))
        }
        DiskPlanSource::Url { url, sha256, check } => {
            let ctx = Ctx { cache, at, opts };
            let expect = ctx.expectations(sha256.as_deref(), check, &file_name_of(url), on)?;
            ctx.url(url, &expect, check, on).map(Some)
        }
    }
}

/// The name a checksum file lists: the last path segment, without query or fragment.
pub fn file_name_of(url_or_path: &str) -> String {
    let path = url_or_path.split(['?', '#']).next().unwrap_or("");
    path.rsplit(['/', '\\']).next().unwrap_or(path).to_string()
}

struct Ctx<'a> {
    cache: &'a Cache,
    at: &'a str,
    opts: Options,
}

impl Ctx<'_> {
    /// Every digest the image must have: the spec's, then the (signed) checksum file's.
    fn expectations(
        &self,
        sha256: Option<&str>,
        check: &SourceCheck,
        name: &str,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Vec<Expect>> {
        let mut out = Vec::new();
        let spec = |algo, hex: &str| Expect {
            algo,
            hex: hex.to_string(),
            from: "the spec".into(),
        };
        out.extend(sha256.map(|h| spec("sha256", h)));
        out.extend(check.sha512.as_deref().map(|h| spec("sha512", h)));
        let Some(loc) = &check.checksum else {
            return Ok(out);
        };
        let label = loc.display();
        let bytes = self.small(loc, on)?;
        if let Some(sig) = &check.signature {
            self.verify_signature(
                sig,
                &label,
                &mut || Ok(Box::new(std::io::Cursor::new(bytes.clone())) as Box<dyn Read>),
                on,
            )?;
        }
        let text = String::from_utf8_lossy(&bytes);
        let picked = checksum::pick(&text, name, &label, self.at)
            .map_err(|e| Error::new(ErrorKind::InvalidImage, e))?;
        let from = |algo, hex: String| Expect {
            algo,
            hex,
            from: label.clone(),
        };
        out.extend(picked.sha256.map(|h| from("sha256", h)));
        out.extend(picked.sha512.map(|h| from("sha512", h)));
        Ok(out)
    }

    fn verify_signature(
        &self,
        sig: &crate::spec::SignatureCheck,
        what: &str,
        data: &mut dyn FnMut() -> std::io::Result<Box<dyn Read>>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<()> {
        let sig_label = sig.file.display();
        let sig_bytes = self.small(&sig.file, on)?;
        let keyring_bytes = read_bounded(&sig.keyring, MAX_KEYRING_BYTES, self.at)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let names = signature::Names {
            at: self.at,
            sig: &sig_label,
            keyring: &sig.keyring.display().to_string(),
            what,
        };
        signature::verify(&sig_bytes, &keyring_bytes, data, now, &names)
            .map_err(|e| Error::new(ErrorKind::InvalidImage, e))?;
        on(Event::Log(&format!(
            "good signature {sig_label} over {what}"
        )));
        Ok(())
    }

    /// A checksum or signature file: local (bounded), or fetched by URL and kept in the
    /// cache by URL (reused when offline).
    fn small(&self, loc: &Location, on: &mut dyn FnMut(Event<'_>)) -> Result<Vec<u8>> {
        let url = match loc {
            Location::Path(p) => return read_bounded(p, MAX_SMALL_FILE_BYTES, self.at),
            Location::Url(u) => u,
        };
        let kept = self.cache.file_for(url);
        if self.opts.offline && kept.is_file() {
            return read_bounded(&kept, MAX_SMALL_FILE_BYTES, self.at);
        }
        if self.opts.offline {
            return Err(not_cached(self.cache, format!("{}: {url}", self.at)));
        }
        on(Event::Log(&format!("fetching {url}")));
        let too_large = || {
            let e = FetchError::FileTooLarge {
                at: self.at.into(),
                what: url.clone(),
                limit: MAX_SMALL_FILE_BYTES,
            };
            Error::new(ErrorKind::InvalidInput, e)
        };
        let bytes = Client::for_url(url)?
            .small(url, MAX_SMALL_FILE_BYTES, on)?
            .ok_or_else(too_large)?;
        let dir = kept.parent().unwrap_or(self.cache.dir());
        std::fs::create_dir_all(dir).map_err(|e| Error::io(e).with_path(dir))?;
        let partial = kept.with_extension("partial");
        std::fs::write(&partial, &bytes).map_err(|e| Error::io(e).with_path(&partial))?;
        std::fs::rename(&partial, &kept).map_err(|e| Error::io(e).with_path(&kept))?;
        let meta = cache::Sidecar {
            size: bytes.len() as u64,
            ..cache::Sidecar::default()
        };
        self.cache.record(&kept, meta, url)?;
        Ok(bytes)
    }

    /// Checks a local file (or a finished download) against every expectation and, when
    /// the signature covers the image itself, the signature.
    fn check_file(
        &self,
        path: &Path,
        what: &str,
        expect: &[Expect],
        check: &SourceCheck,
    ) -> Result<()> {
        if !expect.is_empty() {
            let hashes = hash_path(path)?;
            self.compare(what, &hashes, expect)?;
        }
        if let (Some(sig), None) = (&check.signature, &check.checksum) {
            let mut open = || {
                let f = std::fs::File::open(path)?;
                Ok(Box::new(std::io::BufReader::new(f)) as Box<dyn Read>)
            };
            self.verify_signature(sig, what, &mut open, &mut |_| {})?;
        }
        Ok(())
    }

    fn compare(&self, what: &str, got: &http::Hashes, expect: &[Expect]) -> Result<()> {
        for e in expect {
            let found = match e.algo {
                "sha256" => &got.sha256,
                _ => &got.sha512,
            };
            if *found != e.hex {
                let err = FetchError::DigestMismatch {
                    at: self.at.into(),
                    algo: e.algo,
                    what: what.into(),
                    found: found.as_str().into(),
                    expected: e.hex.as_str().into(),
                    source_of: e.from.clone(),
                };
                return Err(Error::new(ErrorKind::InvalidImage, err));
            }
        }
        Ok(())
    }

    /// The cached entry for `url`, when one matches the expectations.
    fn cached(&self, url: &str, expect: &[Expect], check: &SourceCheck) -> Option<PathBuf> {
        let by = |algo| expect.iter().find(|e| e.algo == algo);
        let path = if let Some(e) = by("sha256") {
            Some(self.cache.image(&e.hex)).filter(|p| p.is_file())?
        } else if let Some(e) = by("sha512") {
            self.cache.find_sha512(&e.hex)?
        } else {
            self.cache.find_url(url)?
        };
        // Entries are verified when made; the sidecar's digests stand for the content
        // unless a signature covers the image itself, which is checked again.
        let meta = Cache::sidecar(&path);
        let name = path.file_name()?.to_string_lossy().into_owned();
        let hashes = http::Hashes {
            sha256: name,
            sha512: meta.sha512.unwrap_or_default(),
            size: meta.size,
        };
        self.compare(url, &hashes, expect).ok()?;
        if check.signature.is_some() && check.checksum.is_none() {
            self.check_file(&path, url, &[], check).ok()?;
        }
        Some(path)
    }

    fn url(
        &self,
        url: &str,
        expect: &[Expect],
        check: &SourceCheck,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<PathBuf> {
        if let Some(path) = self.cached(url, expect, check) {
            on(Event::Log(&format!(
                "using cached {url} ({})",
                path.display()
            )));
            return Ok(path);
        }
        if self.opts.offline {
            return Err(not_cached(self.cache, format!("{}: {url}", self.at)));
        }
        let dir = self.cache.dir();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(e).with_path(dir))?;
        let known = expect
            .iter()
            .find(|e| e.algo == "sha256")
            .map(|e| e.hex.as_str());
        let partial = self.cache.partial(url, known);
        let hashes = Client::for_url(url)?.download(url, &partial, on)?;
        let verified = self
            .compare(url, &hashes, expect)
            .and_then(|()| self.check_file(&partial, url, &[], check));
        if let Err(e) = verified {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        let done = self.cache.image(&hashes.sha256);
        std::fs::rename(&partial, &done).map_err(|e| Error::io(e).with_path(&done))?;
        let meta = cache::Sidecar {
            sha256: Some(hashes.sha256.clone()),
            sha512: Some(hashes.sha512),
            size: hashes.size,
            urls: Vec::new(),
        };
        self.cache.record(&done, meta, url)?;
        Ok(done)
    }
}

fn hash_path(path: &Path) -> Result<http::Hashes> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let mut h = Hasher::default();
    h.read_all(&mut f)
        .map_err(|e| Error::io(e).with_path(path))?;
    Ok(h.finish())
}

fn read_bounded(path: &Path, limit: u64, at: &str) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let mut out = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::io(e).with_path(path))?;
    if out.len() as u64 > limit {
        let e = FetchError::FileTooLarge {
            at: at.into(),
            what: path.display().to_string(),
            limit,
        };
        return Err(Error::new(ErrorKind::InvalidInput, e));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_names_come_from_the_last_path_segment() {
        assert_eq!(file_name_of("https://h/a/b/disk.qcow2?x=1#f"), "disk.qcow2");
        assert_eq!(file_name_of("/tmp/x/disk.raw"), "disk.raw");
        assert_eq!(file_name_of("disk.raw"), "disk.raw");
    }

    #[test]
    fn a_local_file_with_a_wrong_sha512_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("disk.raw");
        std::fs::write(&path, b"abc").unwrap_or_else(|e| panic!("{e}"));
        let cache = Cache::new(dir.path().join("cache"));
        let check = SourceCheck {
            sha512: Some("0".repeat(128)),
            ..SourceCheck::default()
        };
        let source = DiskPlanSource::File {
            path,
            sha256: None,
            check,
        };
        let e = resolve(&cache, &source, "spec:1:1", Options::default(), &mut |_| {})
            .expect_err("a wrong digest must be refused");
        assert!(e.to_string().contains("sha512 of"), "{e}");
    }
}
