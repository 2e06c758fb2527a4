//! A package from an existing OVF (`kiln ova --from-ovf dir/x.ovf -o y.ova|y.ovf`): the
//! descriptor another tool wrote, with its files beside it, repacked as DSP0243 and the
//! importers want it.
//!
//! The descriptor is read by [`super::ovf_read`] (untrusted: its bounds, no DOCTYPE) and
//! every `References/File` is opened beside it; an href must be a plain file name (no path
//! separator, `..` or URL scheme), so nothing outside the descriptor's directory is read.
//! A File that a `Disk/@ovf:fileRef` names is a disk in any format kiln reads (probed) and
//! becomes a streamOptimized VMDK through the one conversion path (`disk::convert` into the
//! [`PackageWriter`]'s VMDK writer), grown to the Disk's declared capacity; it is renamed
//! `NAME.vmdk` when it was not a `.vmdk` (kept unique). Other files (ISO, NVRAM) are copied
//! unchanged. The package is the descriptor rewritten by [`super::ovf_rewrite`] (new
//! hrefs, sizes, capacities in bytes, format), the manifest re-hashed, the certificate when
//! signing, then the members in References order.
//!
//! A file stored in chunks (`ovf:chunkSize`) is read from its chunks as one
//! ([`super::chunks`]) and packed whole.
//!
//! When the source has a manifest (`dir/x.mf`), every digest in it must still hold
//! ([`super::source_manifest`]): the new manifest vouches only for what the old one did.
//!
//! Refused before anything is written, naming the descriptor and the element: a missing
//! file or chunk, a bad href, a digest the source manifest disagrees with, compressed files (`ovf:compression`), a Disk whose fileRef
//! names no File, two Disks sharing a File, delta disks (`ovf:parentRef`), a disk larger
//! than its declared capacity, and the reader's errors.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::chunks::{Chunks, SourceReader};
use super::finding::Severity;
use super::manifest::Algorithm;
use super::ovf_read::{self, Disk, FileRef, xml::XML_MAX_BYTES};
use super::ovf_rewrite::{DiskEdit, FileEdit, Rewrite};
use super::package::{Form, Names, PackageWriter, Start, file_names};
use super::signature::PackageSigner;
use super::source_manifest;
use crate::context::BuildContext;
use crate::disk::{self, CreateRequest, DiskFormat, DiskReader, DiskWriter, Extent, Grown};
use crate::disk::{KvOptions, OpenOptions, WriteReport};
use crate::error::{Error, ErrorKind, Result};
use crate::io::Source;
use crate::io::output::OutputSet;

/// The stream VMDK's grain: a data run counts as populated per grain that is not all zero.
const POPULATED_GRAIN: usize = 64 << 10;

/// Why an OVF cannot be repacked.
#[remain::sorted]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FromOvfError {
    /// A File's href is not a plain name beside the descriptor.
    #[error(
        "File `{id}` (line {line}): ovf:href `{href}` is not a file name beside the descriptor (no path separators, `..` or URL schemes)"
    )]
    BadHref {
        /// `ovf:id`.
        id: String,
        /// `ovf:href`.
        href: String,
        /// Line of the File.
        line: u32,
    },
    /// A non-disk File's name is one the package needs for itself.
    #[error(
        "File `{id}` (line {line}): ovf:href `{href}` is the name of the package's own descriptor, manifest or certificate"
    )]
    Clash {
        /// `ovf:id`.
        id: String,
        /// `ovf:href`.
        href: String,
        /// Line of the File.
        line: u32,
    },
    /// A File is compressed.
    #[error(
        "File `{id}` (line {line}): ovf:compression `{compression}` is not supported; decompress `{href}` and drop the attribute"
    )]
    Compressed {
        /// `ovf:id`.
        id: String,
        /// `ovf:href`.
        href: String,
        /// The compression.
        compression: String,
        /// Line of the File.
        line: u32,
    },
    /// A delta disk.
    #[error(
        "Disk `{id}` (line {line}) is a delta disk (ovf:parentRef `{parent}`); only whole disks are packed"
    )]
    Delta {
        /// `ovf:diskId`.
        id: String,
        /// `ovf:parentRef`.
        parent: String,
        /// Line of the Disk.
        line: u32,
    },
    /// The reader found an error in the descriptor.
    #[error("{place}: {message}")]
    Descriptor {
        /// `x.ovf:line`.
        place: String,
        /// The reader's finding.
        message: String,
    },
    /// A referenced file is missing (or not a regular file).
    #[error("File `{id}` (line {line}): `{href}` is not a regular file beside the descriptor")]
    Missing {
        /// `ovf:id`.
        id: String,
        /// `ovf:href`.
        href: String,
        /// Line of the File.
        line: u32,
    },
    /// A Disk's fileRef names no File.
    #[error("Disk `{id}` (line {line}): ovf:fileRef `{file_ref}` names no File in References")]
    NoFile {
        /// `ovf:diskId`.
        id: String,
        /// `ovf:fileRef`.
        file_ref: String,
        /// Line of the Disk.
        line: u32,
    },
    /// Two Disks name the same File.
    #[error("Disk `{id}` (line {line}): File `{file_ref}` is already the file of Disk `{other}`")]
    SharedFile {
        /// `ovf:diskId`.
        id: String,
        /// `ovf:fileRef`.
        file_ref: String,
        /// The Disk that names it first.
        other: String,
        /// Line of the Disk.
        line: u32,
    },
    /// The disk image is larger than the Disk's declared capacity.
    #[error(
        "Disk `{id}` (line {line}): `{href}` is a {size}-byte disk, larger than the declared ovf:capacity of {capacity} bytes"
    )]
    TooLarge {
        /// `ovf:diskId`.
        id: String,
        /// The image.
        href: String,
        /// Its virtual size.
        size: u64,
        /// The declared capacity in bytes.
        capacity: u64,
        /// Line of the Disk.
        line: u32,
    },
}

impl From<FromOvfError> for Error {
    fn from(e: FromOvfError) -> Self {
        let kind = match e {
            FromOvfError::Missing { .. } => ErrorKind::Io,
            FromOvfError::Compressed { .. } | FromOvfError::Delta { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidImage,
        };
        Error::new(kind, e)
    }
}

/// How the package is written.
pub struct FromOvfOptions {
    /// Files or one OVA.
    pub form: Form,
    /// Manifest digest.
    pub digest: Algorithm,
    /// Signs the manifest when given.
    pub signer: Option<PackageSigner>,
    /// Time (tar mtime) and ids (each VMDK's CID and UUID).
    pub ctx: BuildContext,
}

/// A descriptor checked and its files opened, ready to write.
pub struct Planned {
    descriptor: PathBuf,
    rewrite: Rewrite,
    members: Vec<Member>,
}

/// One References file in the package.
struct Member {
    /// Its name in the package.
    name: String,
    /// Its name in the source.
    href: String,
    what: MemberSource,
}

enum MemberSource {
    /// A disk, converted; its reader presents the declared capacity.
    Disk(Box<dyn DiskReader>),
    /// A file copied unchanged (from its chunks when it has them).
    Copy(Option<Source>),
}

impl Planned {
    /// The package's members in order: `(name in the package, href in the source)`.
    pub fn members(&self) -> Vec<(String, String)> {
        (self.members.iter())
            .map(|m| (m.name.clone(), m.href.clone()))
            .collect()
    }
}

/// Reads the descriptor at `descriptor` and opens its files for a package whose primary
/// target is `target` (`y.ova` or `y.ovf`, which name its descriptor, manifest and
/// certificate).
///
/// # Errors
/// The refusals of the module docs, each naming `descriptor`; I/O.
pub fn plan(descriptor: &Path, target: &Path) -> Result<Planned> {
    plan_inner(descriptor, target).map_err(|e| e.with_path(descriptor))
}

fn plan_inner(descriptor: &Path, target: &Path) -> Result<Planned> {
    let bytes = read_bytes(descriptor)?;
    let name = descriptor
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let read = ovf_read::read_descriptor(&bytes, &name)?;
    // The reader accepted it, so it is UTF-8.
    let source = String::from_utf8(bytes)
        .map_err(|e| Error::new(ErrorKind::InvalidImage, e.utf8_error()))?;
    if let Some(f) = (read.findings.iter()).find(|f| f.severity == Severity::Error) {
        return Err(FromOvfError::Descriptor {
            place: f.place.clone().unwrap_or_default(),
            message: f.message.clone(),
        }
        .into());
    }
    let env = read.envelope;
    let dir = descriptor.parent().unwrap_or(Path::new(""));
    let by_file = disks_by_file(&env.files, &env.disks)?;
    let own = file_names(target, 0);
    let mut taken = vec![own.descriptor, own.manifest, own.cert];
    // Files copied keep their names, so disks are renamed around them.
    for (f, disk) in env.files.iter().zip(&by_file) {
        check_file(f, dir)?;
        if disk.is_none() {
            if taken.contains(&f.href) {
                return Err(clash(f));
            }
            taken.push(f.href.clone());
        }
    }
    source_manifest::check(descriptor, &env.files)?;
    let mut rewrite = Rewrite {
        source,
        files: Vec::new(),
        disks: Vec::new(),
    };
    let mut members = Vec::new();
    for (index, (f, disk)) in env.files.iter().zip(&by_file).enumerate() {
        rewrite.files.push(FileEdit {
            id: f.id.clone(),
            member: index,
        });
        let (member, edit) = open_member(f, *disk, dir, index, &mut taken)?;
        rewrite.disks.extend(edit);
        members.push(member);
    }
    Ok(Planned {
        descriptor: descriptor.to_path_buf(),
        rewrite,
        members,
    })
}

/// File `f` (member `index`) opened as a disk of Disk `disk`, or as a file to copy; the
/// Disk's edit. A disk's new name is recorded in `taken`.
fn open_member(
    f: &FileRef,
    disk: Option<&Disk>,
    dir: &Path,
    index: usize,
    taken: &mut Vec<String>,
) -> Result<(Member, Option<DiskEdit>)> {
    let source = open_file(f, dir)?;
    let href = f.href.clone();
    let Some(d) = disk else {
        let what = MemberSource::Copy(source);
        return Ok((
            Member {
                name: href.clone(),
                href,
                what,
            },
            None,
        ));
    };
    let name = unique(&vmdk_name(&f.href), taken);
    let (reader, capacity) = open_disk(d, f, source, &dir.join(&f.href))?;
    let edit = DiskEdit {
        id: d.id.clone(),
        member: index,
        capacity,
        populated: d.populated_size.is_some(),
    };
    let what = MemberSource::Disk(reader);
    Ok((Member { name, href, what }, Some(edit)))
}

/// The descriptor's bytes, read no further than one past the XML reader's bound (which
/// then refuses them as too large).
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(Error::io)?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(XML_MAX_BYTES).unwrap_or(u64::MAX);
    (file.take(cap + 1))
        .read_to_end(&mut bytes)
        .map_err(Error::io)?;
    Ok(bytes)
}

/// For each File (in order), the Disk whose fileRef names it.
fn disks_by_file<'d>(files: &[FileRef], disks: &'d [Disk]) -> Result<Vec<Option<&'d Disk>>> {
    let mut by_file: Vec<Option<&Disk>> = vec![None; files.len()];
    for d in disks {
        let Some(file_ref) = &d.file_ref else {
            continue;
        };
        let Some(i) = files.iter().position(|f| &f.id == file_ref) else {
            return Err(FromOvfError::NoFile {
                id: d.id.clone(),
                file_ref: file_ref.clone(),
                line: d.line,
            }
            .into());
        };
        if let Some(other) = by_file[i] {
            return Err(FromOvfError::SharedFile {
                id: d.id.clone(),
                file_ref: file_ref.clone(),
                other: other.id.clone(),
                line: d.line,
            }
            .into());
        }
        if let Some(parent) = &d.parent_ref {
            return Err(FromOvfError::Delta {
                id: d.id.clone(),
                parent: parent.clone(),
                line: d.line,
            }
            .into());
        }
        by_file[i] = Some(d);
    }
    Ok(by_file)
}

/// A File's href is a plain name of a regular, whole, uncompressed file in `dir`.
fn check_file(f: &FileRef, dir: &Path) -> Result<()> {
    let (id, href, line) = (f.id.clone(), f.href.clone(), f.line);
    if !is_plain_name(&f.href) {
        return Err(FromOvfError::BadHref { id, href, line }.into());
    }
    if let Some(c) = f.compression.as_deref().filter(|c| *c != "identity") {
        let compression = c.to_string();
        return Err(FromOvfError::Compressed {
            id,
            href,
            compression,
            line,
        }
        .into());
    }
    if f.chunk_size.is_some() {
        // The chunks are checked as they are opened.
        return Ok(());
    }
    // symlink_metadata: a link could lead outside the directory.
    let regular = std::fs::symlink_metadata(dir.join(&f.href)).is_ok_and(|m| m.is_file());
    if !regular {
        return Err(FromOvfError::Missing { id, href, line }.into());
    }
    Ok(())
}

/// True for a name that stays in its directory: no separator, not `.`/`..`, no URL scheme.
fn is_plain_name(href: &str) -> bool {
    let scheme = href.split_once(':').is_some_and(|(s, _)| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    !(href.is_empty() || href == "." || href == ".." || href.contains(['/', '\\', '\0']) || scheme)
}

fn clash(f: &FileRef) -> Error {
    FromOvfError::Clash {
        id: f.id.clone(),
        href: f.href.clone(),
        line: f.line,
    }
    .into()
}

/// `href` with a `.vmdk` extension (unchanged when it has one).
fn vmdk_name(href: &str) -> String {
    let path = Path::new(href);
    let is_vmdk = (path.extension()).is_some_and(|e| e.eq_ignore_ascii_case("vmdk"));
    if is_vmdk {
        return href.to_string();
    }
    let stem = path
        .file_stem()
        .map_or_else(|| href.into(), |s| s.to_string_lossy());
    format!("{stem}.vmdk")
}

/// `name`, or `stem-N.ext` for the first N from 2 that is not `taken`; recorded as taken.
fn unique(name: &str, taken: &mut Vec<String>) -> String {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    let mut candidate = name.to_string();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{stem}-{n}.{ext}");
        n += 1;
    }
    taken.push(candidate.clone());
    candidate
}

/// The bytes of File `f`: the file beside the descriptor, or its chunks read as one.
fn open_file(f: &FileRef, dir: &Path) -> Result<Option<Source>> {
    let Some(chunk_size) = f.chunk_size else {
        return Ok(None);
    };
    Ok(Some(Chunks::open(dir, &f.href, chunk_size)?))
}

/// Opens the image of Disk `d` (File `f`, at `path`, or the chunks in `chunks`) and presents
/// it at the declared capacity (rounded up to whole sectors; the image's own size when none
/// is declared).
fn open_disk(
    d: &Disk,
    f: &FileRef,
    chunks: Option<Source>,
    path: &Path,
) -> Result<(Box<dyn DiskReader>, u64)> {
    let opts = OpenOptions {
        format: None,
        allow_unsafe: false,
    };
    let reader = match chunks {
        // A VMDK descriptor file may name extents beside it; chunks cannot.
        None => disk::open(path, &opts)?,
        Some(source) => disk::open_source(source, path, &opts)?,
    };
    let size = reader.virtual_size();
    let declared = d.capacity_bytes.unwrap_or(size);
    if size > declared {
        return Err(FromOvfError::TooLarge {
            id: d.id.clone(),
            href: f.href.clone(),
            size,
            capacity: declared,
            line: d.line,
        }
        .into());
    }
    let capacity = declared
        .checked_next_multiple_of(512)
        .ok_or_else(|| Error::invalid_input(format!("Disk `{}`: capacity too large", d.id)))?;
    Ok((Box::new(Grown::new(reader, capacity)?), capacity))
}

/// Writes the package of `planned` through `out` (whose primary target is the `.ova` or
/// `.ovf`); the caller commits `out`. Returns the member names in order.
///
/// # Errors
/// A disk that cannot be read or written, the signer's refusal, I/O.
pub fn write(planned: Planned, opts: FromOvfOptions, out: &mut OutputSet) -> Result<Vec<String>> {
    let Planned {
        descriptor,
        rewrite,
        members,
    } = planned;
    let mut names: Names = file_names(out.primary_path(), 0);
    names.disks = members.iter().map(|m| m.name.clone()).collect();
    let start = Start {
        form: opts.form,
        mtime: opts.ctx.epoch,
        digest: opts.digest,
        names: names.clone(),
    };
    let target = out.primary_path().to_path_buf();
    let mut writer = PackageWriter::with_descriptor(Box::new(rewrite), start, opts.signer, out)
        .map_err(|e| e.with_path(&target))?;
    for m in members {
        let source = descriptor.with_file_name(&m.href);
        match m.what {
            MemberSource::Disk(mut reader) => {
                let ctx = opts.ctx.derive(&m.name);
                pack_disk(&mut writer, reader.as_mut(), &ctx, out)
                    .map_err(|e| e.with_path(&source))?;
            }
            MemberSource::Copy(chunks) => {
                let path = source;
                let mut reader: Box<dyn Read> = match chunks {
                    Some(chunks) => Box::new(SourceReader::new(chunks)),
                    None => Box::new(File::open(&path).map_err(|e| Error::io(e).with_path(&path))?),
                };
                writer
                    .copy_member(&mut reader, out)
                    .map_err(|e| e.with_path(&path))?;
            }
        }
    }
    writer.finish().map_err(|e| e.with_path(&target))?;
    Ok(names.disks)
}

/// Converts one disk into the package's next member.
fn pack_disk(
    writer: &mut PackageWriter,
    reader: &mut dyn DiskReader,
    ctx: &BuildContext,
    out: &mut OutputSet,
) -> Result<()> {
    let options = KvOptions::default();
    let req = CreateRequest {
        format: DiskFormat::Vmdk,
        virtual_size: reader.virtual_size(),
        options: &options,
        compress: false,
        ctx,
    };
    let mut counting = Counting {
        inner: writer.disk_writer(&req, out)?,
        populated: 0,
    };
    disk::convert(reader, &mut [&mut counting], &mut |_| {})?;
    let Counting { inner, populated } = counting;
    let report = inner.finish()?;
    writer.disk_done_populated(report, Some(populated))
}

/// Passes extents on, counting the bytes of grains that hold data (`ovf:populatedSize`).
struct Counting {
    inner: Box<dyn DiskWriter>,
    populated: u64,
}

impl DiskWriter for Counting {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        if let Extent::Data(bytes) = extent {
            let data = bytes
                .chunks(POPULATED_GRAIN)
                .filter(|c| c.iter().any(|b| *b != 0))
                .map(|c| c.len() as u64)
                .sum::<u64>();
            self.populated = self.populated.saturating_add(data);
        }
        self.inner.write_extent(extent)
    }

    fn finish(self: Box<Self>) -> Result<WriteReport> {
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_in_their_directory() {
        assert!(is_plain_name("disk1.vmdk"));
        assert!(!is_plain_name("c:x.vmdk"));
        assert!(!is_plain_name("../x.vmdk"));
        assert!(!is_plain_name("sub/x.vmdk"));
        assert!(!is_plain_name("..\\x.vmdk"));
        assert!(!is_plain_name(".."));
        assert!(!is_plain_name("http://example.com/x.vmdk"));
        assert!(!is_plain_name("file:x.vmdk"));
    }

    #[test]
    fn a_disk_not_named_vmdk_is_renamed() {
        assert_eq!(vmdk_name("root.qcow2"), "root.vmdk");
        assert_eq!(vmdk_name("root.VMDK"), "root.VMDK");
        assert_eq!(vmdk_name("root"), "root.vmdk");
    }

    fn file(id: &str) -> FileRef {
        FileRef {
            id: id.into(),
            href: format!("{id}.qcow2"),
            size: None,
            size_text: None,
            compression: None,
            chunk_size: None,
            line: 3,
        }
    }

    fn disk(id: &str, file_ref: &str) -> Disk {
        Disk {
            id: id.into(),
            file_ref: Some(file_ref.into()),
            capacity: "1".into(),
            units: None,
            capacity_bytes: Some(1),
            populated_size: None,
            format: None,
            parent_ref: None,
            line: 7,
        }
    }

    #[test]
    fn each_file_is_matched_with_the_disk_that_names_it() {
        let files = [file("f1"), file("f2")];
        let disks = [disk("d2", "f2")];
        let by_file = disks_by_file(&files, &disks).unwrap();
        assert!(by_file[0].is_none());
        assert_eq!(by_file[1].map(|d| d.id.as_str()), Some("d2"));
    }

    #[test]
    fn two_disks_sharing_a_file_are_refused() {
        let err = disks_by_file(&[file("f1")], &[disk("d1", "f1"), disk("d2", "f1")]).unwrap_err();
        assert!(
            err.to_string().contains("already the file of Disk `d1`"),
            "{err}"
        );
    }

    #[test]
    fn a_delta_disk_is_refused() {
        let mut delta = disk("d1", "f1");
        delta.parent_ref = Some("base".into());
        let err = disks_by_file(&[file("f1")], &[delta]).unwrap_err();
        assert!(err.to_string().contains("delta disk"), "{err}");
    }

    #[test]
    fn a_compressed_file_is_refused() {
        let mut f = file("f1");
        f.compression = Some("gzip".into());
        let err = check_file(&f, Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("ovf:compression `gzip`"), "{err}");
    }

    #[test]
    fn renamed_disks_stay_unique() {
        let mut taken = vec!["a.vmdk".to_string()];
        assert_eq!(unique("a.vmdk", &mut taken), "a-2.vmdk");
        assert_eq!(unique("a.vmdk", &mut taken), "a-3.vmdk");
        assert_eq!(unique("b.vmdk", &mut taken), "b.vmdk");
    }
}
