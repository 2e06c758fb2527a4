//! HTTP downloads: the proxy the environment asks for, retries with backoff, resume with
//! `Range`, progress events, SHA-256 and SHA-512 in one pass.
//!
//! Proxies are chosen here, not left to ureq's defaults: ureq reads `ALL_PROXY`,
//! `HTTPS_PROXY` then `HTTP_PROXY` and uses the first for every scheme. kiln follows curl:
//! an `https://` URL uses `HTTPS_PROXY` (or `https_proxy`), an `http://` URL uses
//! `HTTP_PROXY` (or `http_proxy`), either falls back to `ALL_PROXY`, and `NO_PROXY` lists
//! hosts reached directly (`*`, `host`, `.domain` / `domain` for the domain and its
//! subdomains; ports are ignored). ureq talks to an HTTP proxy with `CONNECT`, for
//! `https://` URLs too (TLS runs end to end through the tunnel).
//!
//! Trusted roots: Mozilla's, bundled (webpki-roots), unless `SSL_CERT_FILE` names a PEM
//! bundle, which then replaces them, as it does for OpenSSL and curl: a mirror or proxy
//! with a private CA works by pointing it at a bundle that holds that CA (with the public
//! roots too, when both are needed). An unreadable bundle, or one with no certificate, is
//! an error rather than a silent fallback.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256, Sha512};

use super::Event;
use super::error::FetchError;
use crate::container::manifest::hex;
use crate::error::{Error, ErrorKind, Result};

/// Buffer for hashing and copying.
const COPY_BUFFER_BYTES: usize = 1 << 20;
/// Attempts per download (the first and three retries).
const ATTEMPTS: u32 = 4;
/// First backoff; doubled after each failed attempt.
const BACKOFF_MS: u64 = 500;
/// Progress events at most every this many bytes.
const PROGRESS_STEP: u64 = 1 << 20;

/// Digests of a whole download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// SHA-512, lower-case hex.
    pub sha512: String,
    /// Bytes.
    pub size: u64,
}

/// Both digests, fed together so a file is read once.
#[derive(Default)]
pub struct Hasher {
    sha256: Sha256,
    sha512: Sha512,
    size: u64,
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.sha512.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// The digests.
    pub fn finish(self) -> Hashes {
        Hashes {
            sha256: hex(&self.sha256.finalize()),
            sha512: hex(&self.sha512.finalize()),
            size: self.size,
        }
    }

    /// Feeds everything `reader` yields.
    ///
    /// # Errors
    /// Read failures.
    pub fn read_all(&mut self, reader: &mut dyn Read) -> std::io::Result<()> {
        let mut buf = vec![0u8; COPY_BUFFER_BYTES];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            self.update(&buf[..n]);
        }
    }
}

/// The proxy URL for `url`, from `env` (a lookup of environment variables), or `None` for
/// a direct connection.
pub fn proxy_for(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let var = |upper: &str| {
        env(upper)
            .or_else(|| env(&upper.to_ascii_lowercase()))
            .filter(|v| !v.trim().is_empty())
    };
    let proxy = if url.starts_with("https://") {
        var("HTTPS_PROXY")
    } else {
        var("HTTP_PROXY")
    };
    let proxy = proxy.or_else(|| var("ALL_PROXY"))?;
    let host = host_of(url);
    let bypass = var("NO_PROXY").is_some_and(|list| no_proxy_matches(&list, &host));
    (!bypass).then_some(proxy)
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host.to_ascii_lowercase()
}

fn no_proxy_matches(list: &str, host: &str) -> bool {
    list.split([',', ' ']).map(str::trim).any(|entry| {
        let entry = entry.to_ascii_lowercase();
        let entry = entry.split(':').next().unwrap_or("");
        if entry.is_empty() {
            return false;
        }
        if entry == "*" {
            return true;
        }
        let domain = entry.trim_start_matches("*.").trim_start_matches('.');
        host == domain || host.ends_with(&format!(".{domain}"))
    })
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn agent(proxy: Option<&str>, url: &str) -> Result<ureq::Agent> {
    let proxy = match proxy {
        Some(p) => Some(ureq::Proxy::new(p).map_err(|source| {
            let e = FetchError::Download {
                url: url.into(),
                via: format!(" through proxy {p}"),
                source: Box::new(source),
            };
            Error::new(ErrorKind::InvalidInput, e)
        })?),
        None => None,
    };
    let mut config = ureq::Agent::config_builder();
    if let Some(roots) = extra_roots(&env_var)? {
        let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
        config = config.tls_config(tls);
    }
    let config = config
        .proxy(proxy)
        .timeout_connect(Some(Duration::from_secs(30)))
        .build();
    Ok(config.into())
}

/// The roots `SSL_CERT_FILE` names (every certificate in the PEM file), when set.
fn extra_roots(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<ureq::tls::RootCerts>> {
    let Some(path) = env("SSL_CERT_FILE").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let bad = |reason: String| {
        let e = FetchError::CaFile {
            path: path.clone(),
            reason,
        };
        Error::new(ErrorKind::InvalidInput, e)
    };
    let pem = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(cert) = item.map_err(|e| bad(e.to_string()))? {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(Some(ureq::tls::RootCerts::from(certs)))
}

/// A failure worth another attempt: no connection, a dropped one, 5xx, 429. Not a TLS
/// certificate the roots do not vouch for (rustls reports it as invalid data): it will
/// not change on its own.
fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::StatusCode(s) => *s >= 500 || *s == 429,
        ureq::Error::Io(io) => io.kind() != std::io::ErrorKind::InvalidData,
        ureq::Error::Timeout(_) | ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        _ => false,
    }
}

/// One GET: the agent, the URL, the proxy label for messages.
pub struct Client {
    agent: ureq::Agent,
    via: String,
}

impl Client {
    /// A client for `url` with the environment's proxy.
    ///
    /// # Errors
    /// An unusable proxy URL.
    pub fn for_url(url: &str) -> Result<Self> {
        let proxy = proxy_for(url, &env_var);
        let via = proxy
            .as_deref()
            .map(|p| format!(" through proxy {p}"))
            .unwrap_or_default();
        Ok(Self {
            agent: agent(proxy.as_deref(), url)?,
            via,
        })
    }

    fn fail(&self, url: &str, source: ureq::Error) -> Error {
        let via = self.via.clone();
        let e = match source {
            ureq::Error::StatusCode(status) => FetchError::DownloadStatus {
                url: url.into(),
                via,
                status,
            },
            source => FetchError::Download {
                url: url.into(),
                via,
                source: Box::new(source),
            },
        };
        Error::new(ErrorKind::Io, e)
    }

    fn get(&self, url: &str, from: u64) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut request = self.agent.get(url);
        if from > 0 {
            request = request.header("Range", format!("bytes={from}-"));
        }
        request.call()
    }

    /// Downloads (or resumes) `url` into `partial`, retrying transient failures (each retry
    /// resumes where the file ends); returns the digests of the whole file.
    ///
    /// # Errors
    /// A non-transient failure, or the last transient one after every attempt.
    pub fn download(
        &self,
        url: &str,
        partial: &Path,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Hashes> {
        let mut attempt = 1;
        loop {
            match self.attempt(url, partial, on) {
                Ok(h) => return Ok(h),
                Err(Failure::Http(e)) if transient(&e) && attempt < ATTEMPTS => {
                    self.back_off(url, attempt, &e.to_string(), on);
                }
                Err(Failure::Body(e)) if attempt < ATTEMPTS => {
                    self.back_off(url, attempt, &e.to_string(), on);
                }
                Err(Failure::Http(e)) => return Err(self.fail(url, e)),
                Err(Failure::Body(e)) => return Err(Error::io(e).with_path(partial)),
                Err(Failure::Local(e)) => return Err(e),
            }
            attempt += 1;
        }
    }

    fn back_off(&self, url: &str, attempt: u32, why: &str, on: &mut dyn FnMut(Event<'_>)) {
        let wait = BACKOFF_MS << (attempt - 1);
        on(Event::Log(&format!(
            "{url}{}: {why}; retrying in {wait} ms (attempt {} of {ATTEMPTS})",
            self.via,
            attempt + 1
        )));
        std::thread::sleep(Duration::from_millis(wait));
    }

    fn attempt(
        &self,
        url: &str,
        partial: &Path,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Hashes, Failure> {
        let local = |e: std::io::Error| Failure::Local(Error::io(e).with_path(partial));
        let mut hasher = Hasher::default();
        let have = match File::open(partial) {
            Ok(mut f) => {
                hasher.read_all(&mut f).map_err(local)?;
                hasher.size
            }
            Err(_) => 0,
        };
        let response = match self.get(url, have) {
            // 416: the partial file is as long as the resource or longer (it changed).
            Err(ureq::Error::StatusCode(416)) if have > 0 => self.get(url, 0),
            other => other,
        }
        .map_err(Failure::Http)?;
        let resumed = have > 0 && response.status().as_u16() == 206;
        if !resumed {
            hasher = Hasher::default();
        }
        let length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let start = if resumed { have } else { 0 };
        let total = length.and_then(|l| l.checked_add(start));
        on(Event::Log(&match resumed {
            true => format!("resuming {url} at byte {have}{}", self.via),
            false => format!("downloading {url}{}", self.via),
        }));
        on(Event::Start {
            url,
            total,
            at: start,
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(partial)
            .map_err(local)?;
        let mut body = response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader();
        let copied = copy(&mut body, &mut file, &mut hasher, start, on);
        on(Event::Finish);
        copied?;
        file.sync_all().map_err(local)?;
        Ok(hasher.finish())
    }

    /// The body of `url`, at most `limit` bytes (checksum and signature files).
    ///
    /// # Errors
    /// HTTP failures after retries; `Ok(None)` when the body is longer than `limit`.
    pub fn small(
        &self,
        url: &str,
        limit: u64,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Option<Vec<u8>>> {
        let mut attempt = 1;
        loop {
            let got = self.get(url, 0).map_err(Failure::Http).and_then(|r| {
                let mut out = Vec::new();
                let mut body = r.into_body().into_with_config().limit(u64::MAX).reader();
                (&mut body)
                    .take(limit + 1)
                    .read_to_end(&mut out)
                    .map_err(Failure::Body)?;
                Ok(out)
            });
            match got {
                Ok(bytes) if bytes.len() as u64 > limit => return Ok(None),
                Ok(bytes) => return Ok(Some(bytes)),
                Err(Failure::Http(e)) if transient(&e) && attempt < ATTEMPTS => {
                    self.back_off(url, attempt, &e.to_string(), on);
                }
                Err(Failure::Body(e)) if attempt < ATTEMPTS => {
                    self.back_off(url, attempt, &e.to_string(), on);
                }
                Err(Failure::Http(e)) => return Err(self.fail(url, e)),
                Err(Failure::Body(e)) => return Err(Error::io(e).with_path(Path::new(url))),
                Err(Failure::Local(e)) => return Err(e),
            }
            attempt += 1;
        }
    }
}

/// Why an attempt failed: the request, the body (retried, resuming), or the local disk.
enum Failure {
    Http(ureq::Error),
    Body(std::io::Error),
    Local(Error),
}

fn copy(
    reader: &mut dyn Read,
    out: &mut File,
    hasher: &mut Hasher,
    start: u64,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(), Failure> {
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut done = start;
    let mut shown = start;
    loop {
        let n = reader.read(&mut buf).map_err(Failure::Body)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Failure::Local(Error::io(e)))?;
        done += n as u64;
        if done - shown >= PROGRESS_STEP {
            on(Event::Progress(done));
            shown = done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn each_scheme_uses_its_own_proxy_variable() {
        let e = env(&[("HTTPS_PROXY", "http://s:1"), ("http_proxy", "http://p:2")]);
        assert_eq!(proxy_for("https://x/a", &e).as_deref(), Some("http://s:1"));
        assert_eq!(proxy_for("http://x/a", &e).as_deref(), Some("http://p:2"));
        let all = env(&[("ALL_PROXY", "http://a:3")]);
        assert_eq!(
            proxy_for("https://x/a", &all).as_deref(),
            Some("http://a:3")
        );
        assert_eq!(proxy_for("http://x/a", &env(&[])), None);
    }

    #[test]
    fn no_proxy_bypasses_hosts_and_domains() {
        let e = env(&[
            ("HTTP_PROXY", "http://p:2"),
            ("NO_PROXY", "localhost, .internal,example.org:8080"),
        ]);
        assert_eq!(proxy_for("http://localhost:81/a", &e), None);
        assert_eq!(proxy_for("http://a.b.internal/a", &e), None);
        assert_eq!(proxy_for("http://example.org/a", &e), None);
        assert_eq!(proxy_for("http://www.example.org/a", &e), None);
        assert!(proxy_for("http://example.com/a", &e).is_some());
        assert!(proxy_for("http://user@notinternal/a", &e).is_some());
        let star = env(&[("HTTP_PROXY", "http://p:2"), ("no_proxy", "*")]);
        assert_eq!(proxy_for("http://anything/a", &star), None);
    }

    #[test]
    fn hosts_are_taken_from_urls() {
        assert_eq!(host_of("http://u:p@Host.EXAMPLE:80/x?y"), "host.example");
        assert_eq!(host_of("http://[::1]:8080/x"), "::1");
    }

    #[test]
    fn only_connection_failures_5xx_and_429_are_retried() {
        assert!(transient(&ureq::Error::StatusCode(503)));
        assert!(transient(&ureq::Error::StatusCode(429)));
        assert!(!transient(&ureq::Error::StatusCode(404)));
        assert!(!transient(&ureq::Error::StatusCode(403)));
        assert!(transient(&ureq::Error::ConnectionFailed));
    }

    #[test]
    fn sha512_of_abc_is_the_fips_vector() {
        let mut h = Hasher::default();
        h.update(b"abc");
        let got = h.finish();
        assert!(got.sha512.starts_with("ddaf35a193617aba"), "{}", got.sha512);
        assert!(got.sha256.starts_with("ba7816bf8f01cfea"), "{}", got.sha256);
    }
}
