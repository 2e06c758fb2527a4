//! `kiln extract X.ova -d DIR`: copies members of an OVA into a directory, checking each
//! against the manifest's digest when the package has one.
//!
//! The archive is listed by the strict [`reader`], which refuses every name that is not a
//! plain file name (`/`, `..`, NUL, absolute), links, devices and duplicates, so a member can
//! only land directly in DIR. Each file is written through an [`OutputSet`]: `NAME.partial`
//! is created with `create_new` (a symlink planted there is never followed), renamed over
//! NAME only once its digest is right, and removed otherwise. An existing NAME (any entry,
//! a dangling symlink included) is refused unless `force`; with `force` the rename replaces
//! the entry itself and never writes through a link.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::manifest::Hasher;
use super::ovf_read::{self, xml::XML_MAX_BYTES};
use super::tar::reader::{self, Member};
use super::verify::mf::{self, Entry, MF_MAX_BYTES};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;
use crate::io::{FileSource, Source, read_exact_at};

/// Bytes copied per read.
const COPY_CHUNK: usize = 1 << 20;

/// What to extract.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Every member, not only the disks.
    pub all: bool,
    /// These members (overrides `all` and the default).
    pub members: Vec<String>,
    /// Replace existing files.
    pub force: bool,
}

/// One extracted member.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// Member name.
    pub name: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Bytes written.
    pub len: u64,
    /// The manifest algorithm it was checked with, when the manifest lists it.
    pub checked: Option<&'static str>,
}

/// Why a member cannot be extracted.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The extracted bytes do not match the manifest.
    #[error(
        "member `{name}`: {alg} digest {computed} does not match {expected} in `{manifest}` line {line}; nothing written for it"
    )]
    DigestMismatch {
        /// Member name.
        name: String,
        /// Algorithm label.
        alg: &'static str,
        /// Digest of the bytes.
        computed: String,
        /// Manifest's digest.
        expected: String,
        /// Manifest member.
        manifest: String,
        /// Its line.
        line: usize,
    },
    /// The descriptor references a disk file the archive does not hold.
    #[error("disk file `{name}` (referenced by `{descriptor}`) is not a member of the OVA")]
    DiskMissing {
        /// The href.
        name: String,
        /// Descriptor member.
        descriptor: String,
    },
    /// The archive has no `.ovf` member, so the disks cannot be told (use --all).
    #[error("the OVA holds no .ovf descriptor, so its disks are unknown; pass --all or --member")]
    NoDescriptor,
    /// `--member NAME` names no member.
    #[error("no member `{name}` in the OVA (members: {members})")]
    NoSuchMember {
        /// Asked-for name.
        name: String,
        /// Members present.
        members: String,
    },
    /// The descriptor cannot be read.
    #[error("member `{name}`: {reason}")]
    Unreadable {
        /// Member name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl From<ExtractError> for Error {
    fn from(e: ExtractError) -> Self {
        let kind = match e {
            ExtractError::NoSuchMember { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::InvalidImage,
        };
        Error::new(kind, e)
    }
}

/// Extracts members of the OVA at `ova` into `dir` (created when missing).
///
/// # Errors
/// A refused archive, a descriptor that cannot be read (default mode), a missing member, an
/// existing file without `force`, a digest mismatch (that member's file is not left), or
/// I/O failures. Errors name the OVA and the member.
pub fn extract(ova: &Path, dir: &Path, opts: &ExtractOptions) -> Result<Vec<Extracted>> {
    let file = File::open(ova).map_err(|e| Error::io(e).with_path(ova))?;
    let src = FileSource::shared(file).map_err(|e| Error::io(e).with_path(ova))?;
    let members = reader::list(&*src).map_err(|e| e.with_path(ova))?;
    let chosen = choose(&src, &members, opts).map_err(|e| e.with_path(ova))?;
    let manifest = read_manifest(&src, &members).map_err(|e| e.with_path(ova))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(e).with_path(dir))?;
    let mut done = Vec::with_capacity(chosen.len());
    for m in chosen {
        let entry = manifest
            .as_ref()
            .and_then(|(_, mf)| mf.entries.iter().find(|e| e.name == m.name));
        let mf_name = manifest.as_ref().map_or("", |(n, _)| n.as_str());
        let out =
            write_member(&src, m, dir, opts.force, entry, mf_name).map_err(|e| e.with_path(ova))?;
        done.push(out);
    }
    Ok(done)
}

/// The members to extract, in archive order (asked-for names in the order given).
fn choose<'a>(
    src: &Source,
    members: &'a [Member],
    opts: &ExtractOptions,
) -> Result<Vec<&'a Member>> {
    let find = |name: &str| members.iter().find(|m| m.name == name);
    if !opts.members.is_empty() {
        let mut out: Vec<&Member> = Vec::new();
        for name in &opts.members {
            let m = find(name).ok_or_else(|| ExtractError::NoSuchMember {
                name: name.clone(),
                members: member_list(members),
            })?;
            if !out.iter().any(|o| o.name == m.name) {
                out.push(m);
            }
        }
        return Ok(out);
    }
    if opts.all {
        return Ok(members.iter().collect());
    }
    let descriptor = members
        .iter()
        .find(|m| m.name.to_ascii_lowercase().ends_with(".ovf"))
        .ok_or(ExtractError::NoDescriptor)?;
    let bytes = read_small(src, descriptor, XML_MAX_BYTES as u64)?;
    let d = ovf_read::read_descriptor(&bytes, &descriptor.name).map_err(|e| {
        ExtractError::Unreadable {
            name: descriptor.name.clone(),
            reason: e.to_string(),
        }
    })?;
    let env = &d.envelope;
    let mut hrefs: Vec<&str> = Vec::new();
    for disk in &env.disks {
        let Some(file) = disk.file_ref.as_deref().and_then(|id| env.file(id)) else {
            continue;
        };
        if !hrefs.contains(&file.href.as_str()) {
            hrefs.push(&file.href);
        }
    }
    // Archive order, so the disks come out as `tar -x` would write them.
    for href in &hrefs {
        if find(href).is_none() {
            return Err(ExtractError::DiskMissing {
                name: (*href).to_string(),
                descriptor: descriptor.name.clone(),
            }
            .into());
        }
    }
    Ok(members
        .iter()
        .filter(|m| hrefs.contains(&m.name.as_str()))
        .collect())
}

fn member_list(members: &[Member]) -> String {
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The manifest member (the one named like the descriptor, else the first `.mf`), parsed.
fn read_manifest(src: &Source, members: &[Member]) -> Result<Option<(String, mf::Manifest)>> {
    let stem = members
        .iter()
        .find(|m| m.name.to_ascii_lowercase().ends_with(".ovf"))
        .map(|m| m.name[..m.name.len() - 4].to_string());
    let wanted = stem.map(|s| format!("{s}.mf"));
    let mf_member = members
        .iter()
        .find(|m| Some(&m.name) == wanted.as_ref())
        .or_else(|| {
            members
                .iter()
                .find(|m| m.name.to_ascii_lowercase().ends_with(".mf"))
        });
    let Some(m) = mf_member else {
        return Ok(None);
    };
    let bytes = read_small(src, m, MF_MAX_BYTES)?;
    Ok(Some((m.name.clone(), mf::parse(&bytes, &m.name))))
}

/// A small member (descriptor, manifest) read whole, refusing one above `max` bytes.
fn read_small(src: &Source, m: &Member, max: u64) -> Result<Vec<u8>> {
    if m.len > max {
        return Err(ExtractError::Unreadable {
            name: m.name.clone(),
            reason: format!("{} bytes is more than the {max} kiln reads", m.len),
        }
        .into());
    }
    let len = usize::try_from(m.len).map_err(|_| Error::invalid_input("member too large"))?;
    let mut bytes = vec![0u8; len];
    read_exact_at(&**src, &mut bytes, m.offset, "member")?;
    Ok(bytes)
}

/// Copies member `m` to `dir/NAME` through a partial file, checking the manifest `entry`.
fn write_member(
    src: &Source,
    m: &Member,
    dir: &Path,
    force: bool,
    entry: Option<&Entry>,
    mf_name: &str,
) -> Result<Extracted> {
    let target = dir.join(&m.name);
    let in_member = |e: Error| {
        let message = format!("member `{}`: {e}", m.name);
        Error::new(e.kind(), message)
    };
    let mut set = OutputSet::new(&target, force);
    let mut file = set
        .create_primary()
        .map_err(|e| in_member(e.with_path(&target)))?;
    let mut hasher: Option<Hasher> = entry.map(|e| e.alg.hasher());
    copy(src, m, &mut file, hasher.as_mut()).map_err(in_member)?;
    drop(file);
    if let (Some(e), Some(h)) = (entry, hasher) {
        let computed = h.finish_hex();
        if !computed.eq_ignore_ascii_case(&e.digest) {
            // Dropping the set removes the partial file.
            return Err(ExtractError::DigestMismatch {
                name: m.name.clone(),
                alg: e.alg.label(),
                computed,
                expected: e.digest.clone(),
                manifest: mf_name.to_string(),
                line: e.line,
            }
            .into());
        }
    }
    set.commit().map_err(in_member)?;
    Ok(Extracted {
        name: m.name.clone(),
        path: target,
        len: m.len,
        checked: entry.map(|e| e.alg.label()),
    })
}

/// Copies the member's bytes to `out`, feeding `hasher`. The member was listed inside the
/// archive, so the loop runs `len / COPY_CHUNK` times at most.
fn copy(src: &Source, m: &Member, out: &mut File, mut hasher: Option<&mut Hasher>) -> Result<()> {
    let mut buf = vec![0u8; COPY_CHUNK.min(usize::try_from(m.len).unwrap_or(COPY_CHUNK))];
    let mut done = 0u64;
    while done < m.len {
        let n = usize::try_from((m.len - done).min(buf.len() as u64)).unwrap_or(buf.len());
        let pos = m
            .offset
            .checked_add(done)
            .ok_or_else(|| Error::invalid_input("member offset overflows"))?;
        read_exact_at(&**src, &mut buf[..n], pos, "member data")?;
        if let Some(h) = hasher.as_deref_mut() {
            h.update(&buf[..n]);
        }
        out.write_all(&buf[..n])?;
        done += n as u64;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::tar;

    fn ova(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
        let mut bytes = Vec::new();
        for (name, data) in members {
            bytes.extend(tar::member(name, data, 0).unwrap());
        }
        bytes.extend_from_slice(&tar::TAR_END);
        let path = dir.join("a.ova");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_wrong_digest_leaves_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mf = format!("SHA256(x.bin)= {}\n", "0".repeat(64));
        let path = ova(tmp.path(), &[("a.mf", mf.as_bytes()), ("x.bin", b"hello")]);
        let out = tmp.path().join("out");
        let opts = ExtractOptions {
            all: true,
            ..Default::default()
        };
        let err = extract(&path, &out, &opts).unwrap_err().to_string();
        assert!(err.contains("member `x.bin`"), "{err}");
        assert!(!out.join("x.bin").exists());
        assert!(!out.join("x.bin.partial").exists());
    }

    #[test]
    fn an_existing_file_is_refused_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let path = ova(tmp.path(), &[("x.bin", b"hello")]);
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("x.bin"), b"old").unwrap();
        let mut opts = ExtractOptions {
            all: true,
            ..Default::default()
        };
        let err = extract(&path, &out, &opts).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read(out.join("x.bin")).unwrap(), b"old");
        opts.force = true;
        extract(&path, &out, &opts).unwrap();
        assert_eq!(std::fs::read(out.join("x.bin")).unwrap(), b"hello");
    }
}
