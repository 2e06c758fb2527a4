//! Digests, and OVF manifests (DSP0243 §5.1): one line per package file,
//! `ALG(name)= hexdigest`, LF line ends, in package order (descriptor first, then the
//! References files). Every artefact digest of a build (SHA256SUMS, the report, manifests)
//! is computed here.

use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::disk::{self, DiskFormat, Extent, OpenOptions};
use crate::error::Result;

/// The digest a manifest uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// SHA-1: what VMware before vSphere 6.5 and old VirtualBox read.
    Sha1,
    /// SHA-256 (the default).
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The manifest's name for it.
    pub fn label(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// Digest length in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 40,
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A new running digest.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }
}

/// A running digest of one of the manifest algorithms.
#[derive(Debug, Clone)]
pub enum Hasher {
    /// SHA-1.
    Sha1(Sha1),
    /// SHA-256.
    Sha256(Sha256),
    /// SHA-512.
    Sha512(Sha512),
}

impl Hasher {
    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest in lower-case hex.
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Sha1(h) => hex(&h.finalize()),
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
        }
    }
}

/// The digest of `bytes` in lower-case hex.
pub fn digest_hex(alg: Algorithm, bytes: &[u8]) -> String {
    let mut h = alg.hasher();
    h.update(bytes);
    h.finish_hex()
}

/// The manifest text for `(file name, hex digest)` pairs, in the order given.
pub fn render(alg: Algorithm, entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(name, digest)| format!("{}({name})= {digest}\n", alg.label()))
        .collect()
}

/// `bytes` in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) and length of a file. Holes are hashed as the zeros they read as,
/// without reading them (the raw reader walks SEEK_DATA/SEEK_HOLE), so a sparse 4 GiB
/// image costs its data and the hashing, not 4 GiB of reads.
///
/// # Errors
/// Read failures.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let raw = OpenOptions {
        format: Some(DiskFormat::Raw),
        allow_unsafe: false,
    };
    let mut reader = disk::open(path, &raw)?;
    let mut hasher = Sha256::new();
    while let Some(extent) = reader.next_extent().map_err(|e| e.with_path(path))? {
        hash_extent(&mut hasher, extent);
    }
    Ok((hex(&hasher.finalize()), reader.virtual_size()))
}

/// Feeds one run of a disk to `hasher`; zero and unallocated runs as zeros.
pub fn hash_extent(hasher: &mut Sha256, extent: Extent<'_>) {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    match extent {
        Extent::Data(bytes) => hasher.update(bytes),
        Extent::Zero(mut len) | Extent::Unallocated(mut len) => {
            while len > 0 {
                let n = len.min(ZEROS.len() as u64);
                hasher.update(&ZEROS[..usize::try_from(n).expect("below 64 KiB")]);
                len -= n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_dsp0243_form() {
        let d = digest_hex(Algorithm::Sha1, b"abc");
        assert_eq!(d, "a9993e364706816aba3e25717850c26c9cd0d89d");
        let text = render(Algorithm::Sha1, &[("a.ovf", &d)]);
        assert_eq!(text, format!("SHA1(a.ovf)= {d}\n"));
    }

    #[test]
    fn digest_lengths_match_the_algorithms() {
        for alg in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(digest_hex(alg, b"").len(), alg.hex_len());
        }
    }
}
