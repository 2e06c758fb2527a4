//! The download cache's layout and its small index.
//!
//! ```text
//! <cache>/<sha256>             a verified image, named by its SHA-256
//! <cache>/<sha256>.json        sidecar: size, SHA-512, the URLs it came from
//! <cache>/<sha256>.partial     a download in progress whose SHA-256 is known, resumable
//! <cache>/url-<H>.partial      one whose SHA-256 is not (H: SHA-256 of the URL)
//! <cache>/by-url/<H>           the last fetched checksum or signature file of a URL
//! <cache>/by-url/<H>.json      sidecar: its URL
//! <unpacked>/<key>             a decompressed image (`kiln::unpack`), when listed with it
//! <unpacked>/<key>.json        sidecar: its size and the source it was unpacked from
//! <unpacked>/<key>.<pid>.partial  an unpacking in progress (or interrupted)
//! ```
//!
//! Images are content-addressed, so one content is one entry however many URLs serve it.
//! Checksum and signature files are not (nothing names their digest in advance): they are
//! kept by URL, refreshed on every online fetch, and `--offline` reuses the last copy.
//! Only names of these shapes are ever listed or removed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::container::manifest::hex;
use crate::error::{Error, Result};

/// A sidecar's largest size; bigger ones are ignored (never ours).
const MAX_SIDECAR_BYTES: u64 = 64 << 10;
/// The most URLs one sidecar remembers.
const MAX_URLS: usize = 16;

/// What a sidecar records.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sidecar {
    /// SHA-256 of the content (images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// SHA-512 of the content (images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Where it was downloaded from, newest last.
    #[serde(default)]
    pub urls: Vec<String>,
}

/// Kind of a cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A verified image.
    Image,
    /// A checksum or signature file, kept by URL.
    File,
    /// An unfinished download (or unpacking).
    Partial,
    /// A decompressed image in the unpacked directory (see [`Cache::with_unpacked`]).
    Unpacked,
}

/// One entry of `kiln cache ls`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Kind.
    pub kind: Kind,
    /// The file.
    pub path: PathBuf,
    /// Bytes on disk.
    pub size: u64,
    /// Last modification.
    pub modified: Option<SystemTime>,
    /// What the sidecar says (empty for partials).
    pub meta: Sidecar,
}

/// The cache directory and its naming.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    /// The directory of unpacked images, listed and pruned with the downloads when set.
    unpacked: Option<PathBuf>,
}

fn url_key(url: &str) -> String {
    hex(&Sha256::digest(url.as_bytes()))
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Cache {
    /// A cache in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            unpacked: None,
        }
    }

    /// The same cache, whose [`Cache::list`] and [`Cache::prune`] also cover the unpacked
    /// images in `dir` (`kiln cache ls|prune`).
    #[must_use]
    pub fn with_unpacked(mut self, dir: PathBuf) -> Self {
        self.unpacked = Some(dir);
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the image with this SHA-256 lives.
    pub fn image(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Where a download is kept while it runs: `<sha256>.partial` when the content's
    /// SHA-256 is known in advance, else `url-<H>.partial` by the URL.
    pub fn partial(&self, url: &str, sha256: Option<&str>) -> PathBuf {
        match sha256 {
            Some(h) => self.dir.join(format!("{h}.partial")),
            None => self.dir.join(format!("url-{}.partial", url_key(url))),
        }
    }

    /// Where the last fetched checksum/signature file of `url` is kept.
    pub fn file_for(&self, url: &str) -> PathBuf {
        self.dir.join("by-url").join(url_key(url))
    }

    fn sidecar_of(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".json");
        PathBuf::from(name)
    }

    /// Reads a sidecar; a missing, oversized or unreadable one is empty.
    pub fn sidecar(path: &Path) -> Sidecar {
        let side = Self::sidecar_of(path);
        let small = std::fs::metadata(&side).is_ok_and(|m| m.len() <= MAX_SIDECAR_BYTES);
        (small.then(|| std::fs::read(&side).ok()))
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes `path`'s sidecar (through a `.partial`), adding `url` to what it remembers.
    ///
    /// # Errors
    /// I/O failures.
    pub fn record(&self, path: &Path, mut meta: Sidecar, url: &str) -> Result<()> {
        let old = Self::sidecar(path);
        let mut urls = old.urls;
        urls.retain(|u| u != url);
        urls.push(url.to_string());
        let drop = urls.len().saturating_sub(MAX_URLS);
        urls.drain(..drop);
        meta.urls = urls;
        let side = Self::sidecar_of(path);
        let tmp = Self::sidecar_of(&side).with_extension("partial");
        let text = serde_json::to_vec_pretty(&meta).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(|e| Error::io(e).with_path(&tmp))?;
        std::fs::rename(&tmp, &side).map_err(|e| Error::io(e).with_path(&side))
    }

    /// The image whose sidecar records this SHA-512.
    pub fn find_sha512(&self, sha512: &str) -> Option<PathBuf> {
        (self.list().into_iter())
            .filter(|e| e.kind == Kind::Image)
            .find(|e| e.meta.sha512.as_deref() == Some(sha512))
            .map(|e| e.path)
    }

    /// The newest image downloaded from `url` (for sources verified by a signature alone).
    pub fn find_url(&self, url: &str) -> Option<PathBuf> {
        (self.list().into_iter())
            .filter(|e| e.kind == Kind::Image && e.meta.urls.iter().any(|u| u == url))
            .max_by_key(|e| e.modified)
            .map(|e| e.path)
    }

    /// Every entry, sorted by path.
    pub fn list(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut dirs = vec![
            (self.dir.clone(), image_kind as fn(&str) -> Option<Kind>),
            (self.dir.join("by-url"), file_kind),
        ];
        dirs.extend(
            self.unpacked
                .clone()
                .map(|d| (d, unpacked_kind as fn(&str) -> _)),
        );
        for (dir, kind_of) in dirs {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for item in rd.flatten() {
                let name = item.file_name().to_string_lossy().into_owned();
                let Some(kind) = kind_of(&name) else { continue };
                let Ok(md) = item.metadata() else { continue };
                if !md.is_file() {
                    continue;
                }
                let path = item.path();
                let meta = match kind {
                    Kind::Partial => Sidecar::default(),
                    _ => Self::sidecar(&path),
                };
                out.push(Entry {
                    kind,
                    size: md.len(),
                    modified: md.modified().ok(),
                    path,
                    meta,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Removes the entries `keep` rejects (with their sidecars); returns what was removed.
    ///
    /// # Errors
    /// The first file that cannot be removed.
    pub fn prune(&self, mut remove: impl FnMut(&Entry) -> bool) -> Result<Vec<Entry>> {
        let mut removed = Vec::new();
        for e in self.list() {
            if !remove(&e) {
                continue;
            }
            std::fs::remove_file(&e.path).map_err(|err| Error::io(err).with_path(&e.path))?;
            let side = Self::sidecar_of(&e.path);
            if side.is_file() {
                std::fs::remove_file(&side).map_err(|err| Error::io(err).with_path(&side))?;
            }
            removed.push(e);
        }
        Ok(removed)
    }
}

fn image_kind(name: &str) -> Option<Kind> {
    if is_hex64(name) {
        return Some(Kind::Image);
    }
    let partial = name.strip_suffix(".partial")?;
    let key = partial.strip_prefix("url-").unwrap_or(partial);
    is_hex64(key).then_some(Kind::Partial)
}

/// `<sha256>` or `<sha256>-<16 hex>` (an archive member), or either with `.<pid>.partial`.
fn unpacked_kind(name: &str) -> Option<Kind> {
    let key_ok = |key: &str| {
        let (digest, member) = key.split_once('-').unwrap_or((key, "0000000000000000"));
        is_hex64(digest)
            && member.len() == 16
            && member
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if key_ok(name) {
        return Some(Kind::Unpacked);
    }
    let rest = name.strip_suffix(".partial")?;
    let (key, pid) = rest.rsplit_once('.')?;
    (key_ok(key) && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .then_some(Kind::Partial)
}

fn file_kind(name: &str) -> Option<Kind> {
    if is_hex64(name) {
        return Some(Kind::File);
    }
    is_hex64(name.strip_suffix(".partial")?).then_some(Kind::Partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cache_shaped_names_are_entries() {
        let h = "a".repeat(64);
        assert_eq!(image_kind(&h), Some(Kind::Image));
        assert_eq!(image_kind(&format!("url-{h}.partial")), Some(Kind::Partial));
        assert_eq!(image_kind(&format!("{h}.partial")), Some(Kind::Partial));
        assert_eq!(image_kind(&format!("{h}.json")), None);
        assert_eq!(image_kind("notes.txt"), None);
        assert_eq!(file_kind(&h), Some(Kind::File));
    }

    #[test]
    fn sidecar_remembers_urls_and_finds_by_sha512() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = Cache::new(dir.path().to_path_buf());
        let h = "b".repeat(64);
        let path = cache.image(&h);
        std::fs::write(&path, b"x").unwrap_or_else(|e| panic!("{e}"));
        let meta = Sidecar {
            sha256: Some(h.clone()),
            sha512: Some("c".repeat(128)),
            size: 1,
            urls: Vec::new(),
        };
        cache
            .record(&path, meta.clone(), "http://a/x")
            .unwrap_or_else(|e| panic!("{e}"));
        cache
            .record(&path, meta, "http://b/x")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Cache::sidecar(&path).urls, ["http://a/x", "http://b/x"]);
        assert_eq!(cache.find_sha512(&"c".repeat(128)), Some(path.clone()));
        assert_eq!(cache.find_url("http://a/x"), Some(path));
        assert_eq!(cache.list().len(), 1);
    }
}
