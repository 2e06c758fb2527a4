//! The manifest beside an OVF being repacked (`kiln ova --from-ovf dir/x.ovf`): when
//! `dir/x.mf` exists, every file it lists must still have the digest it lists, before any
//! of them is packed and re-hashed. A repack must not turn a damaged or altered download
//! into a package whose fresh manifest vouches for it.
//!
//! Only the package's own files are read: the descriptor, each References href and the
//! chunks of a chunked one (`HREF.000000000`, ...), all plain names in the descriptor's
//! directory. A line naming anything else, a missing file, a line that does not parse
//! and a digest that differs are refused, naming the manifest and the line. A source
//! whose manifest is known to be stale can be repacked by removing it.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::chunks::{CHUNKS_MAX, chunk_name};
use super::finding::Severity;
use super::ovf_read::FileRef;
use super::verify::mf::{self, MF_MAX_BYTES};
use crate::error::{Error, ErrorKind, Result};

/// Why the source manifest refuses the repack.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceManifestError {
    /// A digest differs.
    #[error(
        "{mf}:{line}: `{name}` no longer has the {alg} digest listed there; the source is damaged or was changed (remove {mf} to repack it as it is)"
    )]
    Digest {
        /// The manifest's name.
        mf: String,
        /// Its line.
        line: usize,
        /// The file.
        name: String,
        /// The algorithm's label.
        alg: &'static str,
    },
    /// A line lists a file that is not one of the package's, or is missing.
    #[error("{mf}:{line}: `{name}` {why}")]
    Listed {
        /// The manifest's name.
        mf: String,
        /// Its line.
        line: usize,
        /// The file.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The manifest does not parse.
    #[error("{place}: {message}")]
    Syntax {
        /// `x.mf:line`.
        place: String,
        /// The parser's finding.
        message: String,
    },
}

impl From<SourceManifestError> for Error {
    fn from(e: SourceManifestError) -> Self {
        Error::new(ErrorKind::InvalidImage, e)
    }
}

/// Checks the manifest beside `descriptor` (same stem, `.mf`), when there is one, against
/// the descriptor and the files `files` it references.
///
/// # Errors
/// The refusals of the module docs; I/O.
pub fn check(descriptor: &Path, files: &[FileRef]) -> Result<()> {
    let mf_path = descriptor.with_extension("mf");
    let Ok(meta) = std::fs::symlink_metadata(&mf_path) else {
        return Ok(());
    };
    let mf_name = name_of(&mf_path);
    if !meta.is_file() || meta.len() > MF_MAX_BYTES {
        let message = format!("is not a regular file of at most {MF_MAX_BYTES} bytes");
        return Err(Error::new(ErrorKind::InvalidImage, message).with_path(&mf_path));
    }
    let bytes = std::fs::read(&mf_path).map_err(|e| Error::io(e).with_path(&mf_path))?;
    let parsed = mf::parse(&bytes, &mf_name);
    if let Some(f) = (parsed.findings.iter()).find(|f| f.severity == Severity::Error) {
        return Err(SourceManifestError::Syntax {
            place: f.place.clone().unwrap_or_default(),
            message: f.message.clone(),
        }
        .into());
    }
    let own = own_names(descriptor, files);
    let dir = descriptor.parent().unwrap_or(Path::new(""));
    for e in &parsed.entries {
        let listed = |why| SourceManifestError::Listed {
            mf: mf_name.clone(),
            line: e.line,
            name: e.name.clone(),
            why,
        };
        if !own.contains(&e.name) {
            return Err(listed("is not the descriptor or a file it references").into());
        }
        let path = dir.join(&e.name);
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(listed("is listed but is not a regular file beside the descriptor").into());
        }
        let mut hasher = e.alg.hasher();
        let mut file = File::open(&path).map_err(|err| Error::io(err).with_path(&path))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|err| Error::io(err).with_path(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        if hasher.finish_hex() != e.digest {
            return Err(SourceManifestError::Digest {
                mf: mf_name.clone(),
                line: e.line,
                name: e.name.clone(),
                alg: e.alg.label(),
            }
            .into());
        }
    }
    Ok(())
}

/// The names a manifest of this package may list: the descriptor, each href and, for a
/// chunked file, each of its chunks that exists.
fn own_names(descriptor: &Path, files: &[FileRef]) -> Vec<String> {
    let dir = descriptor.parent().unwrap_or(Path::new(""));
    let mut names = vec![name_of(descriptor)];
    for f in files {
        names.push(f.href.clone());
        if f.chunk_size.is_some() {
            let chunks = (0..)
                .map(|i| chunk_name(&f.href, i))
                .take(CHUNKS_MAX)
                .take_while(|c| dir.join(c).is_file());
            names.extend(chunks);
        }
    }
    names
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}
