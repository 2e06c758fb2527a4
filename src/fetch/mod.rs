//! Fetching disk sources: local files (optionally verified) and downloads into a
//! content-addressed cache, `$XDG_CACHE_HOME/kiln/downloads/<sha256>` (else
//! `~/.cache/kiln/downloads`).
//!
//! A download streams into `<sha256>.partial` while it is hashed; an interrupted download is
//! resumed with an HTTP `Range` request (the existing prefix is re-hashed first). The file is
//! renamed to its digest only after the digest matches, so a cache entry is always verified.
//! A server that ignores `Range` (200 instead of 206) restarts the download from zero.

pub mod unpack;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::container::manifest::{hash_file, hex};
use crate::error::{Error, ErrorKind, Result};

/// Why a source could not be fetched or verified.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The HTTP request failed.
    #[error("cannot download {url}")]
    Download {
        /// The URL.
        url: String,
        /// The client error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server answered with an error status.
    #[error("cannot download {url}: HTTP status {status}")]
    DownloadStatus {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// A source's digest differs from the spec's `sha256`.
    #[error("{at}: sha256 of {what} is {found}, but the spec says {expected}")]
    Sha256Mismatch {
        /// File or URL.
        what: String,
        /// From the spec.
        expected: String,
        /// Computed.
        found: String,
        /// Spec location, `spec.yaml:7:9 disks[0].source`.
        at: String,
    },
}

/// Buffer for hashing and copying.
const COPY_BUFFER_BYTES: usize = 1 << 20;

/// The download cache directory.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("kiln").join("downloads")
}

fn hash_into(reader: &mut dyn Read, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// Checks a local file against `expected` when given.
///
/// # Errors
/// A digest mismatch naming the file and both digests; read failures.
pub fn verify_file(path: &Path, expected: Option<&str>, at: &str) -> Result<()> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let (found, _) = hash_file(path)?;
    if found != expected {
        let what = path.display().to_string();
        let e = FetchError::Sha256Mismatch {
            what,
            expected: expected.into(),
            found,
            at: at.into(),
        };
        return Err(Error::new(ErrorKind::InvalidImage, e));
    }
    Ok(())
}

/// Returns the cached, verified download of `url`, fetching or resuming it when needed.
///
/// # Errors
/// HTTP failures, a digest mismatch (the partial file is removed), I/O failures in the cache.
pub fn fetch_url(url: &str, sha256: &str, at: &str, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dir = cache_dir();
    let done = dir.join(sha256);
    if done.is_file() {
        log(&format!("using cached {url} ({})", done.display()));
        return Ok(done);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(e).with_path(&dir))?;
    let partial = dir.join(format!("{sha256}.partial"));
    let found = download(url, &partial, log)?;
    if found != sha256 {
        let _ = std::fs::remove_file(&partial);
        let e = FetchError::Sha256Mismatch {
            what: url.into(),
            expected: sha256.into(),
            found,
            at: at.into(),
        };
        return Err(Error::new(ErrorKind::InvalidImage, e));
    }
    std::fs::rename(&partial, &done).map_err(|e| Error::io(e).with_path(&done))?;
    Ok(done)
}

/// Downloads (or resumes) `url` into `partial`; returns the SHA-256 of the whole file.
fn download(url: &str, partial: &Path, log: &mut dyn FnMut(&str)) -> Result<String> {
    let mut hasher = Sha256::new();
    let have = match File::open(partial) {
        Ok(mut f) => hash_into(&mut f, &mut hasher).map_err(|e| Error::io(e).with_path(partial))?,
        Err(_) => 0,
    };
    let response = match request(url, have, log) {
        // 416: the partial file is as long as the resource or longer (it changed): start over.
        Err(ureq::Error::StatusCode(416)) if have > 0 => request(url, 0, log),
        other => other,
    };
    let response = response.map_err(|source| http_error(url, source))?;
    let resumed = have > 0 && response.status().as_u16() == 206;
    if have > 0 && !resumed {
        hasher = Sha256::new();
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(partial)
        .map_err(|e| Error::io(e).with_path(partial))?;
    let mut body = response
        .into_body()
        .into_with_config()
        .limit(u64::MAX)
        .reader();
    copy_hashing(&mut body, &mut file, &mut hasher).map_err(|e| Error::io(e).with_path(partial))?;
    file.sync_all()
        .map_err(|e| Error::io(e).with_path(partial))?;
    Ok(hex(&hasher.finalize()))
}

fn request(
    url: &str,
    have: u64,
    log: &mut dyn FnMut(&str),
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut request = ureq::get(url);
    if have > 0 {
        log(&format!("resuming {url} at byte {have}"));
        request = request.header("Range", format!("bytes={have}-"));
    } else {
        log(&format!("downloading {url}"));
    }
    request.call()
}

fn copy_hashing(reader: &mut dyn Read, out: &mut File, hasher: &mut Sha256) -> std::io::Result<()> {
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
}

fn http_error(url: &str, source: ureq::Error) -> Error {
    let e = match source {
        ureq::Error::StatusCode(status) => FetchError::DownloadStatus {
            url: url.into(),
            status,
        },
        source => FetchError::Download {
            url: url.into(),
            source: Box::new(source),
        },
    };
    Error::new(ErrorKind::Io, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_sha256_of_empty_input_is_the_known_vector() {
        let digest = Sha256::new().finalize();
        assert_eq!(
            hex(&digest),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
