//! Reading the tar stream of an untrusted bundle: exactly one regular file, stored plain
//! (`0`) or old-GNU sparse (`S`), optionally named by a `././@LongLink` member, followed
//! by nothing but zero blocks. Anything else (pax headers, links, directories, a second
//! member) is refused.
//!
//! Bounds: header checksums are verified, a long name is at most [`MAX_LONG_NAME`]
//! bytes, a sparse map at most [`MAX_SPARSE_ENTRIES`] entries that must be sorted, not
//! overlap and lie inside the file, and add up to the member's size.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use super::gnutar::{Layout, Region, TAR_BLOCK};
use super::{Ec2Error, passthrough};

/// Longest `././@LongLink` name accepted.
pub const MAX_LONG_NAME: u64 = 4096;
/// Most sparse map entries accepted (16 bytes of memory each).
pub const MAX_SPARSE_ENTRIES: usize = 1 << 20;
/// Bytes moved per read while extracting.
const COPY_BYTES: usize = 1 << 20;
/// Extraction leaves all-zero runs of this size (aligned) as holes.
const HOLE_GRANULE: usize = 4096;

/// The one member of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name.
    pub name: Vec<u8>,
    /// The file's size.
    pub size: u64,
    /// Plain or sparse.
    pub layout: Layout,
}

/// A reader that counts the bytes it has read (for offsets in errors).
pub struct Counted<R> {
    inner: R,
    /// Bytes read so far.
    pub offset: u64,
}

impl<R: Read> Counted<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner, offset: 0 }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn block(&mut self) -> Result<[u8; 512], Ec2Error> {
        let mut b = [0u8; 512];
        self.exact(&mut b, "tar header")?;
        Ok(b)
    }

    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), Ec2Error> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) => Err(passthrough(e).unwrap_or_else(|e| {
                tar_err(self.offset, format!("stream ends inside the {what} ({e})"))
            })),
        }
    }

    /// Reads and drops `n` bytes.
    fn skip(&mut self, n: u64, buf: &mut [u8]) -> Result<(), Ec2Error> {
        let mut left = n;
        while left > 0 {
            let step = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            self.exact(&mut buf[..step], "padding")?;
            left -= step as u64;
        }
        Ok(())
    }
}

fn tar_err(offset: u64, problem: impl Into<String>) -> Ec2Error {
    Ec2Error::Tar {
        offset,
        problem: problem.into(),
    }
}

/// A number field: octal (spaces and NULs around it allowed) or base-256.
fn number(field: &[u8], at: u64) -> Result<u64, Ec2Error> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] != 0x80 {
            return Err(tar_err(at, "negative or oversized base-256 number"));
        }
        let tail = &field[1..];
        let (high, low) = tail.split_at(tail.len().saturating_sub(8));
        if high.iter().any(|&b| b != 0) {
            return Err(tar_err(at, "base-256 number does not fit 64 bits"));
        }
        return Ok(low.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)));
    }
    let text = std::str::from_utf8(field).map_err(|_| tar_err(at, "number field is not ASCII"))?;
    let digits = text.trim_matches(|c| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(digits, 8).map_err(|_| tar_err(at, format!("bad octal number {digits:?}")))
}

fn check_checksum(h: &[u8; 512], at: u64) -> Result<(), Ec2Error> {
    let stored = number(&h[148..156], at)?;
    let unsigned: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != unsigned {
        return Err(tar_err(
            at,
            format!("header checksum {stored:o}, computed {unsigned:o}"),
        ));
    }
    Ok(())
}

fn nul_terminated(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or(field)
}

/// Reads the member's headers (long name, main header, sparse extensions).
///
/// # Errors
/// [`Ec2Error::Tar`] for anything but the one regular file described in the module doc.
pub fn read_member<R: Read>(r: &mut Counted<R>) -> Result<Member, Ec2Error> {
    let mut at = r.offset;
    let mut h = r.block()?;
    if h.iter().all(|&b| b == 0) {
        return Err(tar_err(at, "the archive is empty"));
    }
    check_checksum(&h, at)?;
    let mut long_name = None;
    if h[156] == b'L' {
        let len = number(&h[124..136], at)?;
        if len > MAX_LONG_NAME {
            return Err(tar_err(
                at,
                format!("long name of {len} bytes (at most {MAX_LONG_NAME})"),
            ));
        }
        let mut name = vec![0u8; usize::try_from(len.next_multiple_of(TAR_BLOCK)).unwrap_or(0)];
        r.exact(&mut name, "long name")?;
        name.truncate(usize::try_from(len).unwrap_or(0));
        long_name = Some(nul_terminated(&name).to_vec());
        at = r.offset;
        h = r.block()?;
        check_checksum(&h, at)?;
    }
    let name = long_name.unwrap_or_else(|| nul_terminated(&h[..100]).to_vec());
    let stored = number(&h[124..136], at)?;
    let layout = match h[156] {
        b'0' | 0 => Layout::Regular,
        b'S' => sparse_map(r, &h, at)?,
        other => {
            return Err(tar_err(
                at,
                format!(
                    "member type {:?} is not a regular file (one regular file expected)",
                    char::from(other)
                ),
            ));
        }
    };
    let size = match &layout {
        Layout::Regular => stored,
        Layout::Sparse(_) => number(&h[483..495], at)?,
    };
    check_layout(&layout, size, stored, at)?;
    Ok(Member { name, size, layout })
}

fn sparse_map<R: Read>(r: &mut Counted<R>, h: &[u8; 512], at: u64) -> Result<Layout, Ec2Error> {
    let mut map = Vec::new();
    let push = |entry: &[u8], at: u64, map: &mut Vec<Region>| -> Result<bool, Ec2Error> {
        if entry[0] == 0 {
            return Ok(false);
        }
        if map.len() >= MAX_SPARSE_ENTRIES {
            return Err(tar_err(
                at,
                format!("more than {MAX_SPARSE_ENTRIES} sparse map entries"),
            ));
        }
        map.push(Region {
            offset: number(&entry[..12], at)?,
            len: number(&entry[12..24], at)?,
        });
        Ok(true)
    };
    for i in 0..4 {
        push(&h[386 + 24 * i..410 + 24 * i], at, &mut map)?;
    }
    let mut more = h[482] != 0;
    while more {
        let at = r.offset;
        let ext = r.block()?;
        for i in 0..21 {
            push(&ext[24 * i..24 * i + 24], at, &mut map)?;
        }
        more = ext[504] != 0;
    }
    Ok(Layout::Sparse(map))
}

fn check_layout(layout: &Layout, size: u64, stored: u64, at: u64) -> Result<(), Ec2Error> {
    let Layout::Sparse(map) = layout else {
        return Ok(());
    };
    let mut end = 0u64;
    let mut sum = 0u64;
    for r in map {
        let stop = r.offset.checked_add(r.len).filter(|&s| s <= size);
        let Some(stop) = stop.filter(|_| r.offset >= end) else {
            return Err(tar_err(
                at,
                format!(
                    "sparse entry {:#x}+{:#x} overlaps the previous one or lies past the size {size:#x}",
                    r.offset, r.len
                ),
            ));
        };
        end = stop;
        sum += r.len;
    }
    if sum != stored {
        return Err(tar_err(
            at,
            format!("sparse map holds {sum} bytes, the header says {stored}"),
        ));
    }
    Ok(())
}

/// Copies the member's data into `out` at its offsets (leaving zero runs as holes) and
/// sets the file's length.
///
/// # Errors
/// A short stream, or writing `out` failed (as [`std::io::Error`] inside `Err(Err(..))`).
pub fn extract<R: Read>(
    r: &mut Counted<R>,
    member: &Member,
    out: &File,
) -> Result<(), ExtractError> {
    let mut buf = vec![0u8; COPY_BYTES];
    let whole = [Region {
        offset: 0,
        len: member.size,
    }];
    let regions: &[Region] = match &member.layout {
        Layout::Regular => &whole,
        Layout::Sparse(map) => map,
    };
    for region in regions {
        copy_region(r, *region, out, &mut buf)?;
        r.skip(
            region.len.next_multiple_of(TAR_BLOCK) - region.len,
            &mut buf,
        )?;
    }
    out.set_len(member.size).map_err(ExtractError::Write)?;
    Ok(())
}

/// Why extraction stopped.
#[derive(Debug)]
pub enum ExtractError {
    /// The stream is bad.
    Stream(Ec2Error),
    /// Writing the image failed.
    Write(std::io::Error),
}

impl From<Ec2Error> for ExtractError {
    fn from(e: Ec2Error) -> Self {
        ExtractError::Stream(e)
    }
}

fn copy_region<R: Read>(
    r: &mut Counted<R>,
    region: Region,
    out: &File,
    buf: &mut [u8],
) -> Result<(), ExtractError> {
    let mut done = 0u64;
    while done < region.len {
        let step = usize::try_from(region.len - done).map_or(buf.len(), |l| l.min(buf.len()));
        r.exact(&mut buf[..step], "file data")?;
        write_skipping_zeros(out, &buf[..step], region.offset + done)
            .map_err(ExtractError::Write)?;
        done += step as u64;
    }
    Ok(())
}

/// Writes `data` at `offset`, skipping whole all-zero granules (the new file reads zero
/// there anyway), so the restored image stays sparse. Runs of data go out in one write.
fn write_skipping_zeros(out: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut run: Option<usize> = None;
    let mut start = 0;
    while start < data.len() {
        let pos = offset + start as u64;
        let into = usize::try_from(pos % HOLE_GRANULE as u64).unwrap_or(0);
        let end = (start + HOLE_GRANULE - into).min(data.len());
        let piece = &data[start..end];
        let zero = piece.len() == HOLE_GRANULE && piece.iter().all(|&b| b == 0);
        match (zero, run) {
            (true, Some(r)) => {
                out.write_all_at(&data[r..start], offset + r as u64)?;
                run = None;
            }
            (false, None) => run = Some(start),
            _ => {}
        }
        start = end;
    }
    if let Some(r) = run {
        out.write_all_at(&data[r..], offset + r as u64)?;
    }
    Ok(())
}

/// Reads the rest of the stream, which must be zero blocks only (end of archive and
/// record padding): a second member is refused.
///
/// # Errors
/// Non-zero bytes after the member.
pub fn expect_end<R: Read>(r: &mut Counted<R>) -> Result<(), Ec2Error> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let at = r.offset;
        let n = match r.inner.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                return Err(
                    passthrough(e).unwrap_or_else(|e| tar_err(at, format!("read failed: {e}")))
                );
            }
        };
        if n == 0 {
            return Ok(());
        }
        r.offset += n as u64;
        if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
            return Err(tar_err(
                at + i as u64,
                "data after the image member (one regular file expected)",
            ));
        }
    }
}
