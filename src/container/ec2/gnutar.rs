//! The tar stream of an EC2 bundle: one file, written byte for byte as GNU tar 1.34 writes
//! it with `tar -c -h -S --owner 0 --group 0` (its default `--format=gnu`), which is what
//! `ec2-bundle-image` runs. The image digest in the manifest is the SHA-1 of this stream.
//!
//! What GNU tar does, and so what this module does:
//! - A file is stored sparse (old GNU sparse, typeflag `S`) only when it has fewer
//!   allocated 512-byte blocks than its size needs (`ST_IS_SPARSE`); otherwise it is a
//!   regular member (`0`) with all its bytes.
//! - A file with no allocated blocks maps to the single entry `{size, 0}`.
//! - Otherwise the map comes from SEEK_DATA/SEEK_HOLE, one entry per data run, plus a
//!   terminating `{size, 0}`. When the whole file is one data run, GNU tar falls back to
//!   scanning 512-byte blocks for zeros ("raw" detection), whose map ends with the last
//!   data run, or `{size, 0}` when the file ends in zeros.
//! - The header holds four map entries; more go in extension blocks of 21 each.
//!   `size` is the sum of the data run lengths, `realsize` the file size. Each data run is
//!   stored padded to 512 bytes.
//! - Numbers are octal with a NUL, or base-256 (a 0x80 byte then big-endian) when they do
//!   not fit: images over 8 GiB have such sizes. Names over 100 bytes go in a
//!   `././@LongLink` member first.
//! - Owner 0/0 with the names GNU tar looks up for them (`root`), mode 0644 (kiln's
//!   outputs are 0644, and this keeps the digest independent of the umask), and the
//!   build's timestamp (SOURCE_DATE_EPOCH) instead of the file's mtime, so two bundles of
//!   the same image are identical.
//! - Two zero blocks end the archive, which is then padded to a 10240-byte record.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};

use super::Ec2Error;
use crate::io::sys::{next_data, next_hole};

/// A tar block.
pub const TAR_BLOCK: u64 = 512;
/// [`TAR_BLOCK`] as a buffer length.
const TAR_BLOCK_BYTES: usize = 512;
/// GNU tar's default record (20 blocks); the archive is padded to a whole record.
pub const TAR_RECORD: u64 = 10_240;
/// Map entries in the main old-GNU sparse header.
const SPARSES_IN_HEADER: usize = 4;
/// Map entries in one sparse extension block.
const SPARSES_IN_EXTENSION: usize = 21;
/// The name GNU tar gives the member that carries a long file name.
const LONG_LINK_NAME: &[u8] = b"././@LongLink";
/// The owner and group name GNU tar writes for uid/gid 0 on every Linux system.
const ROOT_NAME: &[u8] = b"root";
/// Permission bits of the stored file.
const FILE_MODE: u64 = 0o644;

/// One entry of a sparse map: `len` bytes of data at `offset` of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Offset in the file.
    pub offset: u64,
    /// Bytes of data (0 for the terminating entry).
    pub len: u64,
}

/// How the file is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A regular member holding every byte.
    Regular,
    /// An old GNU sparse member with this map.
    Sparse(Vec<Region>),
}

impl Layout {
    /// Bytes of file data the member stores (its header `size`).
    pub fn stored_bytes(&self, file_size: u64) -> u64 {
        match self {
            Layout::Regular => file_size,
            Layout::Sparse(map) => map.iter().map(|r| r.len).sum(),
        }
    }
}

/// GNU tar's `ST_IS_SPARSE`: fewer 512-byte blocks allocated than the size needs (a file
/// under 512 bytes with no blocks is not sparse: some file systems keep those in the inode).
pub fn is_sparse(size: u64, blocks_512: u64) -> bool {
    let whole = size / TAR_BLOCK;
    blocks_512 < whole + u64::from(!size.is_multiple_of(TAR_BLOCK) && whole != 0)
}

/// The layout GNU tar 1.34 chooses for `file` (see the module doc).
///
/// # Errors
/// I/O errors while querying holes or reading for the zero-block scan.
pub fn scan_layout(file: &File) -> io::Result<Layout> {
    let meta = file.metadata()?;
    let size = meta.len();
    if !is_sparse(size, meta.blocks()) {
        return Ok(Layout::Regular);
    }
    let end = Region {
        offset: size,
        len: 0,
    };
    if meta.blocks() == 0 {
        return Ok(Layout::Sparse(vec![end]));
    }
    if let Some(map) = seek_map(file, size)? {
        return Ok(Layout::Sparse(map));
    }
    raw_map(file, size).map(Layout::Sparse)
}

/// The SEEK_DATA/SEEK_HOLE map, or `None` when the file is one data run (GNU tar then
/// scans for zeros instead).
fn seek_map(file: &File, size: u64) -> io::Result<Option<Vec<Region>>> {
    let mut map = Vec::new();
    let mut offset = 0;
    while let Some(data) = next_data(file, offset)? {
        if data >= size {
            break;
        }
        let hole = next_hole(file, data)?.min(size);
        if offset == 0 && data == 0 && hole == size {
            return Ok(None);
        }
        map.push(Region {
            offset: data,
            len: hole - data,
        });
        offset = hole;
    }
    map.push(Region {
        offset: size,
        len: 0,
    });
    Ok(Some(map))
}

/// GNU tar's "raw" hole detection: runs of non-zero 512-byte blocks.
fn raw_map(file: &File, size: u64) -> io::Result<Vec<Region>> {
    const SCAN_BYTES: usize = 1 << 20;
    let mut buf = vec![0u8; SCAN_BYTES];
    let mut map = Vec::new();
    let mut run = Region { offset: 0, len: 0 };
    let mut offset = 0u64;
    while offset < size {
        let want = usize::try_from(size - offset).map_or(SCAN_BYTES, |n| n.min(SCAN_BYTES));
        file.read_exact_at(&mut buf[..want], offset)?;
        for block in buf[..want].chunks(TAR_BLOCK_BYTES) {
            if block.iter().all(|&b| b == 0) {
                if run.len != 0 {
                    map.push(run);
                    run.len = 0;
                }
            } else {
                if run.len == 0 {
                    run.offset = offset;
                }
                run.len += block.len() as u64;
            }
            offset += block.len() as u64;
        }
    }
    if run.len == 0 {
        run.offset = offset;
    }
    map.push(run);
    Ok(map)
}

/// Writes `value` into `field` the way GNU tar does: zero-padded octal and a NUL, or
/// base-256 when the octal digits do not fit.
fn put_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() <= digits {
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
        return;
    }
    field.fill(0);
    field[0] = 0x80;
    let be = value.to_be_bytes();
    let n = be.len().min(field.len() - 1);
    let start = field.len() - n;
    field[start..].copy_from_slice(&be[be.len() - n..]);
}

/// A header block with the fields every member shares filled in: name, mode, owner,
/// size, mtime, type, GNU magic and owner names. The checksum comes last.
fn base_header(name: &[u8], size: u64, mtime: u64, typeflag: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    put_number(&mut h[100..108], FILE_MODE);
    put_number(&mut h[108..116], 0);
    put_number(&mut h[116..124], 0);
    put_number(&mut h[124..136], size);
    put_number(&mut h[136..148], mtime);
    h[156] = typeflag;
    // Old GNU magic: "ustar " followed by the version " \0".
    h[257..265].copy_from_slice(b"ustar  \0");
    h[265..265 + ROOT_NAME.len()].copy_from_slice(ROOT_NAME);
    h[297..297 + ROOT_NAME.len()].copy_from_slice(ROOT_NAME);
    h
}

/// Fills in the checksum: the byte sum with the field as spaces, six octal digits, NUL,
/// space (GNU tar's layout).
fn seal(h: &mut [u8; 512]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}");
    h[148..154].copy_from_slice(&text.as_bytes()[text.len() - 6..]);
    h[154] = 0;
    h[155] = b' ';
}

fn put_region(entry: &mut [u8], r: Region) {
    put_number(&mut entry[..12], r.offset);
    put_number(&mut entry[12..24], r.len);
}

/// The header blocks of the member: a `././@LongLink` member when the name is longer than
/// 100 bytes, the main header, and the sparse extension blocks.
pub fn header_blocks(name: &[u8], size: u64, mtime: u64, layout: &Layout) -> Vec<u8> {
    let mut out = Vec::new();
    if name.len() > 100 {
        let mut long = base_header(LONG_LINK_NAME, name.len() as u64 + 1, 0, b'L');
        seal(&mut long);
        out.extend_from_slice(&long);
        let padded = (name.len() + 1).next_multiple_of(512);
        let start = out.len();
        out.resize(start + padded, 0);
        out[start..start + name.len()].copy_from_slice(name);
    }
    let map: &[Region] = match layout {
        Layout::Regular => &[],
        Layout::Sparse(map) => map,
    };
    let typeflag = if map.is_empty() { b'0' } else { b'S' };
    let mut h = base_header(name, layout.stored_bytes(size), mtime, typeflag);
    if !map.is_empty() {
        let (first, rest) = map.split_at(map.len().min(SPARSES_IN_HEADER));
        for (i, r) in first.iter().enumerate() {
            put_region(&mut h[386 + 24 * i..410 + 24 * i], *r);
        }
        h[482] = u8::from(!rest.is_empty());
        put_number(&mut h[483..495], size);
        seal(&mut h);
        out.extend_from_slice(&h);
        let blocks: Vec<&[Region]> = rest.chunks(SPARSES_IN_EXTENSION).collect();
        for (b, chunk) in blocks.iter().enumerate() {
            let mut ext = [0u8; 512];
            for (i, r) in chunk.iter().enumerate() {
                put_region(&mut ext[24 * i..24 * i + 24], *r);
            }
            ext[504] = u8::from(b + 1 < blocks.len());
            out.extend_from_slice(&ext);
        }
    } else {
        seal(&mut h);
        out.extend_from_slice(&h);
    }
    out
}

/// One piece of the stream.
#[derive(Debug)]
enum Piece {
    Bytes(Vec<u8>),
    File { offset: u64, len: u64 },
    Zeros(u64),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File { len, .. } | Piece::Zeros(len) => *len,
        }
    }
}

/// The whole tar stream of one file as a reader: headers, data runs read from the file
/// (holes are never read), padding and the end-of-archive record.
#[derive(Debug)]
pub struct TarStream<'f> {
    file: &'f File,
    pieces: Vec<Piece>,
    index: usize,
    pos: u64,
    total: u64,
}

impl<'f> TarStream<'f> {
    /// The stream of `file` stored as `name` with `layout`, `size` bytes and `mtime`.
    pub fn new(file: &'f File, name: &[u8], size: u64, mtime: u64, layout: &Layout) -> Self {
        let mut pieces = vec![Piece::Bytes(header_blocks(name, size, mtime, layout))];
        let mut data = |offset: u64, len: u64| {
            pieces.push(Piece::File { offset, len });
            pieces.push(Piece::Zeros(len.next_multiple_of(TAR_BLOCK) - len));
        };
        match layout {
            Layout::Regular => data(0, size),
            Layout::Sparse(map) => map.iter().for_each(|r| data(r.offset, r.len)),
        }
        let body: u64 = pieces.iter().map(Piece::len).sum::<u64>() + 2 * TAR_BLOCK;
        let total = body.next_multiple_of(TAR_RECORD);
        pieces.push(Piece::Zeros(total - body + 2 * TAR_BLOCK));
        pieces.retain(|p| p.len() != 0);
        Self {
            file,
            pieces,
            index: 0,
            pos: 0,
            total,
        }
    }

    /// Length of the whole stream.
    pub fn total_len(&self) -> u64 {
        self.total
    }
}

impl Read for TarStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(piece) = self.pieces.get(self.index) else {
            return Ok(0);
        };
        let left = piece.len() - self.pos;
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let n = match piece {
            Piece::Bytes(b) => {
                let start = usize::try_from(self.pos).unwrap_or(usize::MAX);
                buf[..n].copy_from_slice(&b[start..start + n]);
                n
            }
            Piece::Zeros(_) => {
                buf[..n].fill(0);
                n
            }
            Piece::File { offset, .. } => {
                let got = self.file.read_at(&mut buf[..n], offset + self.pos)?;
                if got == 0 && n != 0 {
                    let at = offset + self.pos;
                    return Err(io::Error::other(Ec2Error::ImageChanged { offset: at }));
                }
                got
            }
        };
        self.pos += n as u64;
        if self.pos == piece.len() {
            self.index += 1;
            self.pos = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_numbers_are_octal_with_a_nul() {
        let mut f = [0xffu8; 12];
        put_number(&mut f, 4096);
        assert_eq!(&f, b"00000010000\0");
    }

    #[test]
    fn numbers_past_eight_gib_are_base_256() {
        let mut f = [0u8; 12];
        put_number(&mut f, 9 << 30);
        assert_eq!(f, [0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x40, 0, 0, 0]);
    }

    #[test]
    fn sparse_test_follows_st_is_sparse() {
        assert!(is_sparse(10 << 20, 8));
        assert!(!is_sparse(10 << 20, 20_480));
        assert!(!is_sparse(100, 0));
    }

    #[test]
    fn checksum_has_six_digits_nul_and_space() {
        let mut h = base_header(b"img", 0, 1_700_000_000, b'0');
        seal(&mut h);
        let sum: u64 = h
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
        assert_eq!(&h[148..156], format!("{sum:06o}\0 ").as_bytes());
    }
}
