//! A bounded tar reader: lists an archive's members with the offset and length of each one's
//! data, so a member can be read in place as a [`View`] without extracting it.
//!
//! Archives come from strangers, so the reader accepts only what a package needs: flat
//! regular files in ustar or GNU headers. It refuses, naming the member and its header's
//! offset: bad header checksums, sizes that are negative or reach past the archive, PAX and
//! GNU long-name headers, links, directories and devices, names with `/`, `..`, NUL or an
//! absolute path, duplicate names, and more than [`TAR_MAX_MEMBERS`] members. Work is
//! bounded by the member cap: one 512-byte header read per member.

use super::TAR_BLOCK;
use crate::error::{Error, ErrorKind, Result};
use crate::io::{ReadAt, Source, View, read_exact_at};

/// Most members a package may hold; an OVA has a descriptor, a manifest, a certificate and
/// its disks.
pub const TAR_MAX_MEMBERS: usize = 1024;

/// One regular file of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's name (a plain file name).
    pub name: String,
    /// Offset of its header block.
    pub header_offset: u64,
    /// Offset of its first data byte.
    pub offset: u64,
    /// Length of its data.
    pub len: u64,
}

impl Member {
    /// The member's bytes in `archive`, as a source of their own.
    pub fn view(&self, archive: &Source) -> Source {
        View::new(archive.clone(), self.offset, self.len)
            .expect("listing checked that the member lies inside the archive")
            .shared()
    }
}

/// Why an archive is refused.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum TarReadError {
    /// The header's checksum does not match its bytes.
    #[error("tar header at {offset:#x} has checksum {found:o}, computed {computed:o}")]
    BadChecksum {
        /// Header offset.
        offset: u64,
        /// Stored value.
        found: u64,
        /// Computed value.
        computed: u64,
    },
    /// A numeric field is not octal or base-256, or does not fit 64 bits.
    #[error("member `{name}` (header at {offset:#x}): field `{field}` is not a number below 2^64")]
    BadNumber {
        /// Member name (lossy).
        name: String,
        /// Header offset.
        offset: u64,
        /// Field name.
        field: &'static str,
    },
    /// Two members share a name.
    #[error("member `{name}` (header at {offset:#x}) appears twice")]
    DuplicateName {
        /// Member name.
        name: String,
        /// Header offset of the second one.
        offset: u64,
    },
    /// The archive has no end-of-archive block where a header should be.
    #[error("tar archive ends at {offset:#x} without an end-of-archive block")]
    MissingEnd {
        /// Where the next header should have been.
        offset: u64,
    },
    /// A member name an extractor would place outside its directory, or not a flat file.
    #[error(
        "member `{name}` (header at {offset:#x}) is not a plain file name (`/`, `..`, NUL or an absolute path)"
    )]
    NameNotPlain {
        /// Member name (lossy).
        name: String,
        /// Header offset.
        offset: u64,
    },
    /// The member's size field is negative.
    #[error("member `{name}` (header at {offset:#x}) has a negative size")]
    NegativeSize {
        /// Member name.
        name: String,
        /// Header offset.
        offset: u64,
    },
    /// The header magic is neither ustar nor GNU.
    #[error("no tar header at {offset:#x} (magic is not `ustar`)")]
    NotTar {
        /// Header offset.
        offset: u64,
    },
    /// The member's data reaches past the end of the archive.
    #[error(
        "member `{name}` (header at {offset:#x}) is {len} bytes, which reaches past the end of the archive ({archive_len:#x} bytes)"
    )]
    PastEnd {
        /// Member name.
        name: String,
        /// Header offset.
        offset: u64,
        /// Declared length.
        len: u64,
        /// Archive length.
        archive_len: u64,
    },
    /// More members than a package may hold.
    #[error(
        "tar archive has more than {TAR_MAX_MEMBERS} members (at `{name}`, header {offset:#x})"
    )]
    TooManyMembers {
        /// The first member past the cap.
        name: String,
        /// Its header offset.
        offset: u64,
    },
    /// A member that is not a regular file.
    #[error("member `{name}` (header at {offset:#x}) is a {kind}, not a regular file")]
    Unsupported {
        /// Member name.
        name: String,
        /// Header offset.
        offset: u64,
        /// What it is.
        kind: &'static str,
    },
}

impl From<TarReadError> for Error {
    fn from(e: TarReadError) -> Self {
        Error::new(ErrorKind::InvalidImage, e)
    }
}

/// True when `src` starts with a ustar or GNU tar header.
///
/// # Errors
/// I/O failures.
pub fn is_tar(src: &dyn ReadAt) -> Result<bool> {
    if src.len() < TAR_BLOCK {
        return Ok(false);
    }
    let mut block = [0u8; 512];
    read_exact_at(src, &mut block, 0, "tar header")?;
    Ok(block[257..262] == *b"ustar")
}

/// Lists the members of the archive in `src`, in archive order.
///
/// # Errors
/// [`TarReadError`] for anything the module docs say is refused; I/O failures.
pub fn list(src: &dyn ReadAt) -> Result<Vec<Member>> {
    let archive_len = src.len();
    let mut members: Vec<Member> = Vec::new();
    let mut offset = 0u64;
    let mut block = [0u8; 512];
    loop {
        // A last member without its padding leaves `offset` past the end.
        if archive_len.saturating_sub(offset) < TAR_BLOCK {
            return Err(TarReadError::MissingEnd { offset }.into());
        }
        read_exact_at(src, &mut block, offset, "tar header")?;
        if block.iter().all(|&b| b == 0) {
            return Ok(members);
        }
        let member = parse_header(&block, offset, archive_len)?;
        if members.len() == TAR_MAX_MEMBERS {
            let name = member.name;
            return Err(TarReadError::TooManyMembers { name, offset }.into());
        }
        if members.iter().any(|m| m.name == member.name) {
            let name = member.name;
            return Err(TarReadError::DuplicateName { name, offset }.into());
        }
        offset = member.offset + super::padded(member.len);
        members.push(member);
    }
}

/// Parses one header block at `offset` into a member whose data lies in the archive.
fn parse_header(block: &[u8; 512], offset: u64, archive_len: u64) -> Result<Member, TarReadError> {
    if block[257..262] != *b"ustar" {
        return Err(TarReadError::NotTar { offset });
    }
    let (name, plain) = member_name(block);
    let found = number(&block[148..156], &name, offset, "chksum")?;
    let computed = checksum(block);
    if found != computed {
        return Err(TarReadError::BadChecksum {
            offset,
            found,
            computed,
        });
    }
    if let Some(kind) = unsupported_kind(block[156]) {
        return Err(TarReadError::Unsupported { name, offset, kind });
    }
    if !plain {
        return Err(TarReadError::NameNotPlain { name, offset });
    }
    if block[124] == 0xff {
        return Err(TarReadError::NegativeSize { name, offset });
    }
    let len = number(&block[124..136], &name, offset, "size")?;
    let data = offset + TAR_BLOCK;
    if len > archive_len - data {
        return Err(TarReadError::PastEnd {
            name,
            offset,
            len,
            archive_len,
        });
    }
    Ok(Member {
        name,
        header_offset: offset,
        offset: data,
        len,
    })
}

/// What a non-regular type flag stands for; `None` for a regular file.
fn unsupported_kind(flag: u8) -> Option<&'static str> {
    match flag {
        b'0' | 0 | b'7' => None,
        b'1' => Some("hard link"),
        b'2' => Some("symbolic link"),
        b'3' | b'4' => Some("device"),
        b'5' => Some("directory"),
        b'6' => Some("FIFO"),
        b'x' | b'g' => Some("PAX extended header"),
        b'L' | b'K' => Some("GNU long-name header"),
        b'S' => Some("GNU sparse file"),
        _ => Some("member of unknown type"),
    }
}

/// The member's name (ustar prefix joined, lossy), and whether it is a plain file name.
fn member_name(block: &[u8; 512]) -> (String, bool) {
    let field = |range: std::ops::Range<usize>| {
        let bytes = &block[range];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        &bytes[..end]
    };
    let (name, prefix) = (field(0..100), field(345..500));
    // GNU headers ("ustar  \0") use the prefix area for other fields.
    let prefix = if block[257..263] == *b"ustar\0" {
        prefix
    } else {
        &[]
    };
    let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let plain = prefix.is_empty()
        && !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && std::str::from_utf8(name).is_ok();
    let full = if prefix.is_empty() {
        lossy(name)
    } else {
        format!("{}/{}", lossy(prefix), lossy(name))
    };
    (full, plain)
}

/// An octal field (NUL or space terminated) or a GNU base-256 one (high bit set).
fn number(
    field: &[u8],
    member: &str,
    offset: u64,
    name: &'static str,
) -> Result<u64, TarReadError> {
    match field_number(field) {
        Some((value, digits)) if digits > 0 => Ok(value),
        _ => Err(TarReadError::BadNumber {
            name: member.to_string(),
            offset,
            field: name,
        }),
    }
}

/// The value of a numeric header field, GNU base-256 (high bit set) or octal (leading
/// spaces, then digits up to a NUL or space), with the count of digits read (0 for an
/// empty octal field, whose value is 0); `None` for a non-octal digit or an overflow.
/// The one parser for the bounded reader here and the streamed walk of `unpack`.
pub(crate) fn field_number(field: &[u8]) -> Option<(u64, usize)> {
    if field[0] & 0x80 != 0 {
        let mut value = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some((value, field.len()));
    }
    let digits = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != 0 && b != b' ');
    let (mut value, mut count) = (0u64, 0usize);
    for &b in digits {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
        count += 1;
    }
    Some((value, count))
}

/// The header checksum: the sum of its bytes with the checksum field read as spaces.
pub(crate) fn checksum(block: &[u8; 512]) -> u64 {
    let spaces = 8 * u64::from(b' ');
    let all: u64 = block.iter().map(|&b| u64::from(b)).sum();
    let field: u64 = block[148..156].iter().map(|&b| u64::from(b)).sum();
    all - field + spaces
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::container::tar::{TAR_END, header, member};

    fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = parts.concat();
        out.extend_from_slice(&TAR_END);
        out
    }

    fn error_of(bytes: Vec<u8>) -> String {
        let src: Source = Arc::new(bytes);
        list(&*src).unwrap_err().to_string()
    }

    #[test]
    fn members_are_listed_with_their_data_offsets() {
        let bytes = archive(&[
            member("a.ovf", b"<x/>", 0).unwrap(),
            member("a.mf", b"m", 0).unwrap(),
        ]);
        let members = list(&bytes).unwrap();
        assert_eq!(members[1].name, "a.mf");
        assert_eq!((members[1].offset, members[1].len), (1536, 1));
    }

    #[test]
    fn a_member_view_reads_its_bytes() {
        let bytes: Source = Arc::new(archive(&[member("d.vmdk", b"hello", 0).unwrap()]));
        let m = &list(&*bytes).unwrap()[0];
        let mut buf = [0u8; 5];
        read_exact_at(&*m.view(&bytes), &mut buf, 0, "t").unwrap();
        assert_eq!(&buf, b"hello");
    }

    /// Found by the tar fuzz target (2026-12-04, fuzz/regressions/tar/unpadded-last-member):
    /// a member whose data ends at the end of the file, without its padding, overflowed the
    /// subtraction that looks for the end-of-archive blocks.
    #[test]
    fn a_last_member_without_padding_is_a_missing_end() {
        let mut bytes = member("d.vmdk", b"hello", 0).unwrap();
        bytes.truncate(512 + 5);
        assert!(error_of(bytes).contains("end"), "missing end");
    }

    #[test]
    fn a_member_past_the_end_is_refused() {
        let mut bytes = header("d.vmdk", 1 << 20, 0).unwrap().to_vec();
        bytes.extend_from_slice(&TAR_END);
        assert!(error_of(bytes).contains("reaches past the end"));
    }

    #[test]
    fn a_bad_checksum_is_refused() {
        let mut bytes = archive(&[member("d.vmdk", b"x", 0).unwrap()]);
        bytes[0] = b'e';
        assert!(error_of(bytes).contains("checksum"));
    }

    #[test]
    fn a_missing_end_block_is_refused() {
        let bytes = member("d.vmdk", b"x", 0).unwrap();
        assert!(error_of(bytes).contains("without an end-of-archive block"));
    }

    #[test]
    fn octal_with_spaces_parses() {
        assert_eq!(number(b" 1234 \0", "m", 0, "size").unwrap(), 0o1234);
    }

    #[test]
    fn base_256_parses() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 2;
        field[10] = 1;
        assert_eq!(number(&field, "m", 0, "size").unwrap(), 258);
    }
}
