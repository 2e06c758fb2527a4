//! A source's verification keys: `sha512`, `checksum: {file}` and `signature: {file,
//! keyring}`, checked here and carried to `kiln::fetch` as a [`SourceCheck`].
//!
//! A checksum or signature file is an http(s) URL or a path relative to the spec's
//! directory (through the same `--confine` rules as every other input); the keyring is
//! always local, since it is the one trust anchor.

use std::path::PathBuf;

use super::Checker;
use crate::spec::model::{ChecksumFile, SignatureFile, Source, Spanned};

/// Where a checksum or signature file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Downloaded (cached by the URL's hash for `--offline`).
    Url(String),
    /// A local file, resolved.
    Path(PathBuf),
}

impl Location {
    /// The URL or the path, for messages.
    pub fn display(&self) -> String {
        match self {
            Location::Url(u) => u.clone(),
            Location::Path(p) => p.display().to_string(),
        }
    }
}

/// A detached OpenPGP signature and the keyring trusted to have made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    /// The signature file.
    pub file: Location,
    /// Public keys, binary or armored.
    pub keyring: PathBuf,
}

/// Verification beyond the `sha256` literal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceCheck {
    /// Expected SHA-512, lower-case hex.
    pub sha512: Option<String>,
    /// A checksum file naming the image.
    pub checksum: Option<Location>,
    /// A signature over the checksum file, or over the image when there is none.
    pub signature: Option<SignatureCheck>,
}

impl SourceCheck {
    /// True when something besides `sha256` verifies the source.
    pub fn any(&self) -> bool {
        self.sha512.is_some() || self.checksum.is_some() || self.signature.is_some()
    }
}

impl Checker<'_> {
    /// The `sha512`, `checksum` and `signature` keys of a source (`key` is `disks[i].source`).
    pub(super) fn source_check(&mut self, s: &Source, key: &str) -> SourceCheck {
        let sha512 = s
            .sha512
            .as_ref()
            .and_then(|h| self.hex_digest(h, &format!("{key}.sha512"), 128, "SHA-512"));
        let checksum = s
            .checksum
            .as_ref()
            .and_then(|c| self.checksum_file(c, &format!("{key}.checksum")));
        let signature = s
            .signature
            .as_ref()
            .and_then(|c| self.signature_file(c, &format!("{key}.signature")));
        SourceCheck {
            sha512,
            checksum,
            signature,
        }
    }

    /// True when the source names any verification key (a blank disk must not).
    pub(super) fn has_verification(s: &Source) -> bool {
        s.sha256.is_some() || s.sha512.is_some() || s.checksum.is_some() || s.signature.is_some()
    }

    fn checksum_file(&mut self, c: &Spanned<ChecksumFile>, key: &str) -> Option<Location> {
        self.location(&c.value.file, &format!("{key}.file"))
    }

    fn signature_file(&mut self, c: &Spanned<SignatureFile>, key: &str) -> Option<SignatureCheck> {
        let file = self.location(&c.value.file, &format!("{key}.file"));
        let keyring = self.existing_file(&c.value.keyring, &format!("{key}.keyring"));
        Some(SignatureCheck {
            file: file?,
            keyring: keyring?,
        })
    }

    fn location(&mut self, at: &Spanned<String>, key: &str) -> Option<Location> {
        let v = at.value.trim();
        if v.starts_with("https://") || v.starts_with("http://") {
            return Some(Location::Url(v.to_string()));
        }
        if v.contains("://") {
            let message = format!("`{v}` is neither an http(s):// URL nor a local path");
            self.err(at, key, message);
            return None;
        }
        self.existing_file(at, key).map(Location::Path)
    }

    /// `len` hex digits, lower-cased.
    pub(super) fn hex_digest(
        &mut self,
        at: &Spanned<String>,
        key: &str,
        len: usize,
        what: &str,
    ) -> Option<String> {
        let v = at.value.trim().to_ascii_lowercase();
        if v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(v);
        }
        let message = format!(
            "`{}` is not a {what} digest; expected {len} hex digits",
            at.value
        );
        self.err(at, key, message);
        None
    }
}
