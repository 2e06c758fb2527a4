//! A diagnostic walk over an OVA's tar headers. Where the bounded reader
//! ([`crate::container::tar::reader`]) refuses the first thing a package must not hold, this
//! walk names every such thing as a [`Finding`] and keeps going, so one run of `kiln verify`
//! reports a PAX header, a `../` name and a wrong digest together. Only regular files with
//! plain names become [`Member`]s; the rest are reported and skipped.
//!
//! Bounded like the reader: one 512-byte header read per member, at most
//! [`TAR_MAX_MEMBERS`] headers, GNU long names at most 4 KiB. A header that cannot be
//! framed (bad magic or checksum, a size past the end) ends the walk.

use crate::container::finding::Finding;
use crate::container::tar::reader::{Member, TAR_MAX_MEMBERS};
use crate::container::tar::{TAR_BLOCK, padded};
use crate::error::Result;
use crate::io::{ReadAt, read_exact_at};

/// Longest GNU long-name record read.
const LONG_NAME_MAX: u64 = 4096;

/// The regular members found and what was wrong on the way.
#[derive(Debug, Default)]
pub struct Walk {
    /// Regular files with plain names, in archive order.
    pub members: Vec<Member>,
    /// Container findings.
    pub findings: Vec<Finding>,
}

/// Walks the archive in `src` (named `name` in findings).
///
/// # Errors
/// I/O failures only; everything about the bytes is a finding.
pub fn walk(src: &dyn ReadAt) -> Result<Walk> {
    let mut w = Walk::default();
    let len = src.len();
    let mut offset = 0u64;
    let mut long_name: Option<String> = None;
    let mut block = [0u8; 512];
    for _ in 0..=TAR_MAX_MEMBERS * 2 {
        if len - offset < TAR_BLOCK {
            let f = Finding::error(
                "tar.truncated",
                format!(
                    "the archive ends at {len:#x} inside or before a header, without an end-of-archive block"
                ),
            );
            w.findings.push(f.at(format!("offset {offset:#x}")));
            return Ok(w);
        }
        read_exact_at(src, &mut block, offset, "tar header")?;
        if block.iter().all(|&b| b == 0) {
            end_marker(src, offset, &mut w)?;
            return Ok(w);
        }
        let Some(header) = frame(&block, offset, len, &mut w) else {
            return Ok(w);
        };
        let data = offset + TAR_BLOCK;
        offset = data + padded(header.size);
        let name = long_name.take().unwrap_or(header.name);
        match header.flag {
            b'x' | b'g' => pax(&mut w, &name, data - TAR_BLOCK),
            b'L' => long_name = Some(read_long_name(src, data, header.size, &mut w)?),
            b'0' | 0 | b'7' => regular(&mut w, name, data, header.size),
            flag => not_regular(&mut w, &name, data - TAR_BLOCK, flag),
        }
        if w.members.len() > TAR_MAX_MEMBERS {
            let f = Finding::error(
                "tar.too-many-members",
                format!(
                    "more than {TAR_MAX_MEMBERS} members; an OVA holds a descriptor, a manifest, a certificate and its files"
                ),
            );
            w.findings.push(f);
            return Ok(w);
        }
    }
    w.findings.push(Finding::error(
        "tar.too-many-members",
        "too many tar headers",
    ));
    Ok(w)
}

/// What one header says.
struct Header {
    name: String,
    size: u64,
    flag: u8,
}

/// Reads the header at `offset`, or reports why the archive cannot be framed from here.
fn frame(block: &[u8; 512], offset: u64, len: u64, w: &mut Walk) -> Option<Header> {
    let at = format!("header at {offset:#x}");
    if block[257..262] != *b"ustar" {
        let f = Finding::error(
            "tar.format",
            "not a ustar or GNU tar header (an OVA is a POSIX ustar archive)",
        );
        w.findings.push(f.at(at));
        return None;
    }
    let h = tar::Header::from_byte_slice(block);
    let computed = checksum(block);
    if h.cksum().ok().map(u64::from) != Some(computed) {
        let f = Finding::error(
            "tar.checksum",
            format!("header checksum does not match its bytes (computed {computed:o})"),
        );
        w.findings.push(f.at(at));
        return None;
    }
    let name = String::from_utf8_lossy(&h.path_bytes()).into_owned();
    let Ok(size) = h.entry_size() else {
        let f = Finding::error(
            "tar.size",
            format!("member `{name}` has a size field that is not a number"),
        );
        w.findings.push(f.at(at));
        return None;
    };
    if size > len - offset - TAR_BLOCK {
        let f = Finding::error(
            "tar.truncated",
            format!(
                "member `{name}` is {size} bytes, which reaches past the end of the archive ({len} bytes)"
            ),
        );
        w.findings.push(f.at(at));
        return None;
    }
    Some(Header {
        name,
        size,
        flag: block[156],
    })
}

/// The header checksum: the sum of its bytes with the checksum field read as spaces.
fn checksum(block: &[u8; 512]) -> u64 {
    let all: u64 = block.iter().map(|&b| u64::from(b)).sum();
    let field: u64 = block[148..156].iter().map(|&b| u64::from(b)).sum();
    all - field + 8 * u64::from(b' ')
}

fn end_marker(src: &dyn ReadAt, offset: u64, w: &mut Walk) -> Result<()> {
    let next = offset + TAR_BLOCK;
    let mut block = [0u8; 512];
    let two = src.len() - next >= TAR_BLOCK && {
        read_exact_at(src, &mut block, next, "tar end block")?;
        block.iter().all(|&b| b == 0)
    };
    if !two {
        let f = Finding::warning(
            "tar.eof-marker",
            "the end-of-archive marker is one zero block; tar writes two",
        );
        w.findings.push(f.at(format!("offset {offset:#x}")));
    }
    Ok(())
}

fn pax(w: &mut Walk, name: &str, header: u64) {
    let f = Finding::error(
        "tar.pax-header",
        format!(
            "PAX extended header `{name}`: an OVA is plain ustar, and importers that do not read PAX see it as a member of its own (write the archive with `tar --format=ustar`)"
        ),
    );
    w.findings.push(f.at(format!("header at {header:#x}")));
}

fn read_long_name(src: &dyn ReadAt, data: u64, size: u64, w: &mut Walk) -> Result<String> {
    let take = size.min(LONG_NAME_MAX);
    let mut buf = vec![0u8; usize::try_from(take).unwrap_or(0)];
    read_exact_at(src, &mut buf, data, "GNU long name")?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    let f = Finding::error(
        "tar.gnu-longname",
        format!(
            "GNU long-name record for `{name}`: an OVA member name must fit a ustar header (100 bytes)"
        ),
    );
    w.findings
        .push(f.at(format!("header at {:#x}", data - TAR_BLOCK)));
    Ok(name)
}

fn not_regular(w: &mut Walk, name: &str, header: u64, flag: u8) {
    let kind = match flag {
        b'1' => "hard link",
        b'2' => "symbolic link",
        b'3' | b'4' => "device",
        b'5' => "directory",
        b'6' => "FIFO",
        b'K' => "GNU long link name",
        b'S' => "GNU sparse file",
        _ => "member of unknown type",
    };
    let f = Finding::error(
        "tar.not-regular",
        format!("member `{name}` is a {kind}; an OVA holds regular files only"),
    )
    .at(format!("header at {header:#x}"))
    .quoting(
        "VirtualBox",
        format!("Malformed OVA. '{name}' is not a regular file"),
    );
    w.findings.push(f);
}

fn regular(w: &mut Walk, name: String, data: u64, size: u64) {
    let header_offset = data - TAR_BLOCK;
    let at = format!("header at {header_offset:#x}");
    if !is_plain(&name) {
        let f = Finding::error(
            "tar.name",
            format!(
                "member name `{name}` is not a plain file name (`/`, `..`, an absolute path or NUL); an extractor could write it outside its directory"
            ),
        );
        w.findings.push(f.at(at));
        return;
    }
    if w.members.iter().any(|m| m.name == name) {
        let f = Finding::error("tar.duplicate", format!("member `{name}` appears twice"));
        w.findings.push(f.at(at));
        return;
    }
    w.members.push(Member {
        name,
        header_offset,
        offset: data,
        len: size,
    });
}

/// A name an extractor places in its directory: no `/`, `\`, NUL, `.` or `..`.
fn is_plain(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::tar::{TAR_END, member};

    fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = parts.concat();
        out.extend_from_slice(&TAR_END);
        out
    }

    fn with_flag(name: &str, flag: u8) -> Vec<u8> {
        let mut m = member(name, b"data", 0).unwrap();
        m[156] = flag;
        let sum = checksum(m[..512].try_into().unwrap());
        m[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        m
    }

    fn codes(w: &Walk) -> Vec<&str> {
        w.findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_clean_archive_has_no_findings() {
        let bytes = archive(&[
            member("a.ovf", b"<x/>", 0).unwrap(),
            member("a.mf", b"m", 0).unwrap(),
        ]);
        let w = walk(&bytes).unwrap();
        assert!(w.findings.is_empty(), "{:?}", w.findings);
        assert_eq!(w.members[1].offset, 1536);
    }

    #[test]
    fn a_pax_header_is_reported_and_the_walk_goes_on() {
        let bytes = archive(&[
            with_flag("PaxHeader.a.ovf", b'x'),
            member("a.ovf", b"<x/>", 0).unwrap(),
        ]);
        let w = walk(&bytes).unwrap();
        assert_eq!(codes(&w), ["tar.pax-header"]);
        assert_eq!(w.members[0].name, "a.ovf");
    }

    #[test]
    fn a_symlink_quotes_virtualbox() {
        let w = walk(&archive(&[with_flag("l.vmdk", b'2')])).unwrap();
        let quote = w.findings[0].importer.as_ref().unwrap();
        assert_eq!(quote.says, "Malformed OVA. 'l.vmdk' is not a regular file");
    }

    #[test]
    fn a_dot_dot_name_is_reported_and_skipped() {
        let mut m = member("x.vmdk", b"data", 0).unwrap();
        m[..9].copy_from_slice(b"../x.vmdk");
        let sum = checksum(m[..512].try_into().unwrap());
        m[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let w = walk(&archive(&[m])).unwrap();
        assert_eq!(codes(&w), ["tar.name"]);
        assert!(w.members.is_empty());
    }

    #[test]
    fn a_single_end_block_is_a_warning() {
        let mut bytes = member("a.ovf", b"x", 0).unwrap();
        bytes.extend_from_slice(&[0; 512]);
        assert_eq!(codes(&walk(&bytes).unwrap()), ["tar.eof-marker"]);
    }
}
