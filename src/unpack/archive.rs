//! Tar archives holding a disk image (Debian's and GCE's `disk.raw` in a `.tar.xz`), read
//! front to back: the headers are walked in order, other members skipped, and the chosen
//! member's data read (from the decoder, or in place through a view for a plain tar).
//!
//! Unlike the OVA reader this walk accepts what `tar` itself writes for a directory of
//! images: `./` prefixes, directory entries, PAX (`x`, `g`) and GNU long-name (`L`)
//! headers, ustar, GNU and base-256 sizes. Nothing is ever extracted: names are only
//! compared with `member:`, so paths inside names are harmless.
//!
//! The member is the one `member:` names, else the archive's one disk image, by name:
//! [`DISK_SUFFIXES`]. Without `member:`, the rest of the archive is walked after the member
//! so a second disk image is refused rather than silently ignored. Bounds: at most
//! [`TAR_MAX_ENTRIES`] headers, PAX and long-name data of at most [`TAR_MAX_META_BYTES`].

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::UnpackError;
use crate::container::tar::reader::{checksum, field_number};
use crate::disk::{self, DiskReader, OpenOptions};
use crate::error::{Error, Result};
use crate::io::{FileSource, View};

/// Names (lower-cased) that mark a member as a disk image when no `member:` is given.
pub const DISK_SUFFIXES: [&str; 11] = [
    ".raw", ".img", ".qcow2", ".qcow", ".vmdk", ".vhd", ".vhdx", ".vdi", ".iso", ".bin", ".image",
];
/// Most headers walked in one archive.
pub const TAR_MAX_ENTRIES: usize = 4096;
/// Largest PAX or GNU long-name record read into memory.
const TAR_MAX_META_BYTES: u64 = 64 << 10;
/// Most bytes read after the end-of-archive blocks (tar pads archives to 10 KiB records).
pub const TAR_MAX_TRAILER_BYTES: u64 = 1 << 20;
/// Tar block size.
const BLOCK: u64 = 512;

/// True when `head` (an archive's first bytes) is a ustar or GNU tar header.
pub fn is_tar(head: &[u8]) -> bool {
    head.len() >= 512 && &head[257..262] == b"ustar"
}

/// Input the walker reads: it can skip bytes (a file seeks, a decoder reads and drops).
pub trait TarInput: Read + Send {
    /// Skips `n` bytes.
    ///
    /// # Errors
    /// I/O or decoding errors; an input that ends early.
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

impl TarInput for File {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let n = i64::try_from(n).map_err(io::Error::other)?;
        self.seek(SeekFrom::Current(n)).map(|_| ())
    }
}

impl TarInput for Box<dyn Read + Send> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut self.by_ref().take(n), &mut io::sink())?;
        if copied < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// One member: its name (without a leading `./`), data offset and length.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Name as stored, `./` prefix dropped.
    pub name: String,
    /// Offset of its data in the (decompressed) archive.
    pub offset: u64,
    /// Data length.
    pub len: u64,
    /// A regular file (others are listed but never chosen).
    pub regular: bool,
}

/// Walks an archive's headers in order.
pub struct Walker<R> {
    input: R,
    /// Offset of the next unread byte.
    pos: u64,
    /// Names of the regular members seen, in order.
    seen: Vec<String>,
    entries: usize,
}

fn bad(offset: u64, reason: impl Into<String>) -> Error {
    UnpackError::TarHeader {
        offset,
        reason: reason.into(),
    }
    .into()
}

impl<R: TarInput> Walker<R> {
    /// A walker at the start of the archive `input`.
    pub fn new(input: R) -> Self {
        Self {
            input,
            pos: 0,
            seen: Vec::new(),
            entries: 0,
        }
    }

    /// The input, positioned wherever the walk stopped.
    pub fn input(&mut self) -> &mut R {
        &mut self.input
    }

    /// Records that `n` bytes were read from the input outside the walker.
    pub fn advance(&mut self, n: u64) {
        self.pos += n;
    }

    /// The regular members seen so far, comma separated.
    pub fn seen(&self) -> String {
        if self.seen.is_empty() {
            return "(none)".into();
        }
        self.seen.join(", ")
    }

    fn read_block(&mut self, block: &mut [u8; 512]) -> Result<bool> {
        let n = super::read_full(&mut self.input, block).map_err(Error::io)?;
        self.pos += n as u64;
        match n {
            0 => Ok(false),
            512 => Ok(true),
            _ => Err(bad(self.pos, "the archive ends inside a header")),
        }
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        self.input.skip(n).map_err(Error::io)?;
        self.pos += n;
        Ok(())
    }

    /// Skips the rest of the data of a member of `len` bytes of which `read` were read,
    /// and its padding to the next block.
    pub fn skip_data(&mut self, len: u64, read: u64) -> Result<()> {
        self.skip(padded(len) - read)
    }

    /// The next member, its data not yet read; `None` at the end of the archive.
    ///
    /// # Errors
    /// [`UnpackError::TarHeader`] for a malformed header or too many entries; I/O.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        let mut long_name: Option<String> = None;
        let mut pax: Pax = Pax::default();
        loop {
            let at = self.pos;
            let mut block = [0u8; 512];
            if !self.read_block(&mut block)? || block.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            self.entries += 1;
            if self.entries > TAR_MAX_ENTRIES {
                return Err(bad(at, format!("more than {TAR_MAX_ENTRIES} entries")));
            }
            let header = Header::parse(&block, at)?;
            match header.kind {
                b'L' => long_name = Some(self.meta(header.len, at)?),
                b'x' => pax = Pax::parse(&self.meta(header.len, at)?),
                b'g' => self.skip_data(header.len, 0)?,
                kind => {
                    let name = pax.path.take().or(long_name.take()).unwrap_or(header.name);
                    let name = name.trim_start_matches("./").to_string();
                    let len = pax.size.take().unwrap_or(header.len);
                    let regular = matches!(kind, b'0' | 0 | b'7');
                    if regular {
                        self.seen.push(name.clone());
                    }
                    let offset = self.pos;
                    return Ok(Some(Entry {
                        name,
                        offset,
                        len,
                        regular,
                    }));
                }
            }
        }
    }

    /// Reads a PAX or long-name record's data as text.
    fn meta(&mut self, len: u64, at: u64) -> Result<String> {
        if len > TAR_MAX_META_BYTES {
            return Err(bad(at, format!("a {len}-byte extended header")));
        }
        let mut data = vec![0u8; usize::try_from(len).map_err(|_| bad(at, "size"))?];
        let n = super::read_full(&mut self.input, &mut data).map_err(Error::io)?;
        if n < data.len() {
            return Err(bad(at, "the archive ends inside an extended header"));
        }
        self.pos += len;
        self.skip_data(len, len)?;
        let text = String::from_utf8_lossy(&data);
        Ok(text.trim_end_matches('\0').to_string())
    }

    /// Walks to the member to read: the one named `member`, else the first disk image.
    ///
    /// # Errors
    /// [`UnpackError::MemberMissing`] or [`UnpackError::NoDiskMember`], listing the
    /// members; header errors.
    pub fn find(&mut self, member: Option<&str>) -> Result<Entry> {
        while let Some(entry) = self.next_entry()? {
            let wanted = match member {
                Some(name) => entry.name == name,
                None => is_disk_name(&entry.name),
            };
            if wanted && entry.regular {
                return Ok(entry);
            }
            self.skip_data(entry.len, 0)?;
        }
        let members = self.seen();
        Err(match member {
            Some(name) => UnpackError::MemberMissing {
                member: name.to_string(),
                members,
            },
            None => UnpackError::NoDiskMember { members },
        }
        .into())
    }

    /// After the chosen member's data: walks the rest of the archive, refusing a second
    /// disk image when the member was chosen by default, then reads the input to its end
    /// (a decoder checks its trailing checksums only there).
    ///
    /// # Errors
    /// [`UnpackError::SeveralDiskMembers`]; header errors; more than
    /// [`TAR_MAX_TRAILER_BYTES`] after the end of the archive; decoding errors.
    pub fn check_rest(&mut self, chosen: &Entry, read: u64, by_default: bool) -> Result<()> {
        self.skip_data(chosen.len, read)?;
        let mut another = false;
        while let Some(entry) = self.next_entry()? {
            another |= entry.regular && is_disk_name(&entry.name);
            self.skip_data(entry.len, 0)?;
        }
        if another && by_default {
            let members = self.seen();
            return Err(UnpackError::SeveralDiskMembers { members }.into());
        }
        let limit = TAR_MAX_TRAILER_BYTES + 1;
        let trailer = io::copy(&mut self.input.by_ref().take(limit), &mut io::sink());
        if trailer.map_err(Error::io)? == limit {
            let reason =
                format!("more than {TAR_MAX_TRAILER_BYTES} bytes after the end of the archive");
            return Err(bad(self.pos, reason));
        }
        Ok(())
    }
}

/// `len` rounded up to whole blocks.
fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// Whether a member's name marks it as a disk image.
pub fn is_disk_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    DISK_SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// The fields of one header block the walk needs.
struct Header {
    name: String,
    len: u64,
    kind: u8,
}

impl Header {
    fn parse(block: &[u8; 512], at: u64) -> Result<Self> {
        if !is_tar(block) {
            return Err(bad(at, "no ustar magic"));
        }
        let stored = number(&block[148..156]).ok_or_else(|| bad(at, "bad checksum field"))?;
        let sum = checksum(block);
        if stored != sum {
            return Err(bad(at, format!("checksum {stored:o}, computed {sum:o}")));
        }
        if block[124] == 0xff {
            return Err(bad(at, "negative size"));
        }
        let len = number(&block[124..136]).ok_or_else(|| bad(at, "bad size field"))?;
        Ok(Self {
            name: name(block),
            len,
            kind: block[156],
        })
    }
}

/// The name, with the ustar prefix when there is one.
fn name(block: &[u8; 512]) -> String {
    let field = |bytes: &[u8]| {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let name = field(&block[0..100]);
    // GNU headers ("ustar  \0") use the prefix area for other fields.
    let prefix = if &block[257..263] == b"ustar\0" {
        field(&block[345..500])
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// An octal field (space or NUL terminated, empty reads as 0) or a GNU base-256 one;
/// `None` if malformed.
fn number(field: &[u8]) -> Option<u64> {
    field_number(field).map(|(value, _)| value)
}

/// The PAX records the walk honours: `path` and `size`.
#[derive(Default)]
struct Pax {
    path: Option<String>,
    size: Option<u64>,
}

impl Pax {
    /// Parses `LEN key=value\n` records; malformed ones are ignored, as GNU tar warns and
    /// goes on.
    fn parse(text: &str) -> Self {
        let mut pax = Pax::default();
        for record in text.split('\n') {
            let Some((_, kv)) = record.split_once(' ') else {
                continue;
            };
            match kv.split_once('=') {
                Some(("path", v)) => pax.path = Some(v.to_string()),
                Some(("size", v)) => pax.size = v.parse().ok(),
                _ => {}
            }
        }
        pax
    }
}

/// Opens the member of the plain tar `path` in place, as a view of the file.
///
/// # Errors
/// A missing or ambiguous member; a member reaching past the end of the file; as
/// [`disk::open_source`].
pub fn open_in_place(path: &Path, member: Option<&str>) -> Result<Box<dyn DiskReader>> {
    let file = File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let mut walker = Walker::new(file.try_clone().map_err(Error::io)?);
    let entry = walker.find(member).map_err(|e| e.with_path(path))?;
    (walker.check_rest(&entry, 0, member.is_none())).map_err(|e| e.with_path(path))?;
    let src = FileSource::shared(file).map_err(|e| Error::io(e).with_path(path))?;
    let view = View::new(src, entry.offset, entry.len).ok_or_else(|| {
        let reason = format!("member `{}` reaches past the end of the file", entry.name);
        bad(entry.offset, reason).with_path(path)
    })?;
    let name = PathBuf::from(format!("{}:{}", path.display(), entry.name));
    disk::open_source(view.shared(), &name, &OpenOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar header for `name` of `len` bytes, checksummed.
    fn header(name: &str, len: u64, kind: u8) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[124..136].copy_from_slice(format!("{len:011o}\0").as_bytes());
        b[156] = kind;
        b[257..263].copy_from_slice(b"ustar\0");
        b[148..156].fill(b' ');
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b
    }

    fn archive(members: &[(&str, &[u8], u8)]) -> Box<dyn Read + Send> {
        let mut out = Vec::new();
        for (name, data, kind) in members {
            out.extend_from_slice(&header(name, data.len() as u64, *kind));
            out.extend_from_slice(data);
            out.resize(usize::try_from(padded(out.len() as u64)).unwrap(), 0);
        }
        out.extend_from_slice(&[0; 1024]);
        Box::new(io::Cursor::new(out))
    }

    #[test]
    fn the_disk_member_is_found_past_a_directory_and_a_readme() {
        let input = archive(&[
            ("./", b"", b'5'),
            ("./README", b"hi", b'0'),
            ("./disk.raw", b"x", b'0'),
        ]);
        let entry = Walker::new(input).find(None).unwrap();
        assert_eq!(
            (entry.name.as_str(), entry.offset, entry.len),
            ("disk.raw", 2048, 1)
        );
    }

    #[test]
    fn a_missing_member_lists_the_members() {
        let input = archive(&[("a.raw", b"x", b'0')]);
        let err = Walker::new(input).find(Some("b.raw")).unwrap_err();
        assert!(err.to_string().contains("its members are: a.raw"), "{err}");
    }

    #[test]
    fn two_disk_images_without_member_are_refused() {
        let input = archive(&[("a.raw", b"x", b'0'), ("b.qcow2", b"y", b'0')]);
        let mut walker = Walker::new(input);
        let entry = walker.find(None).unwrap();
        let err = walker.check_rest(&entry, 0, true).unwrap_err();
        assert!(err.to_string().contains("several disk images"), "{err}");
    }

    #[test]
    fn a_pax_path_names_the_next_member() {
        let record = "21 path=long/disk.raw\n";
        let input = archive(&[
            ("PaxHeader", record.as_bytes(), b'x'),
            ("short", b"x", b'0'),
        ]);
        let entry = Walker::new(input).find(None).unwrap();
        assert_eq!(entry.name, "long/disk.raw");
    }

    #[test]
    fn a_bad_checksum_is_refused() {
        let mut block = header("a.raw", 1, b'0');
        block[0] = b'b';
        let err = Header::parse(&block, 0).err().unwrap();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
