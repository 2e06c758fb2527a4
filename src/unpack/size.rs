//! The uncompressed size a compressed file declares, read from its container without
//! decompressing it: the xz index, the zstd frame headers, the gzip trailer. The decoder
//! is still checked against it: a stream that yields more or less is refused.

use super::UnpackError;
use super::codec::Codec;
use crate::error::{Error, Result};
use crate::io::{ReadAt, read_exact_at};

/// Largest xz index read into memory: 16 MiB holds millions of block records (a 1 TiB
/// image in 1 MiB blocks needs about 6 MiB).
const XZ_MAX_INDEX_BYTES: u64 = 16 << 20;
/// xz stream header and footer length.
const XZ_HEADER_BYTES: u64 = 12;
/// Footer magic `YZ`.
const XZ_FOOTER_MAGIC: &[u8] = b"YZ";
/// deflate's best ratio is 1032:1 per member (RFC 1951 runs), so a gzip file shorter than
/// 2^32 / 1032 bytes cannot hold 4 GiB or more, and its ISIZE (length mod 2^32) is exact.
const GZIP_MAX_RATIO: u64 = 1032;
/// zstd skippable frames: magic 0x184D2A5? (RFC 8878, 3.1.2).
const ZSTD_SKIPPABLE_MASK: u32 = 0xffff_fff0;
/// zstd skippable frame magic with the low nibble cleared.
const ZSTD_SKIPPABLE: u32 = 0x184d_2a50;
/// zstd frame magic.
const ZSTD_FRAME: u32 = 0xfd2f_b528;

/// The size `codec`'s container in `src` declares, and what declared it; `None` when it
/// does not say (bzip2, gzip that may have wrapped, zstd frames without a content size).
///
/// # Errors
/// A malformed xz index (a truncated xz file has none); I/O failures.
pub fn declared(src: &dyn ReadAt, codec: Codec) -> Result<Option<(u64, &'static str)>> {
    Ok(match codec {
        Codec::Xz => Some((xz_size(src)?, "xz index")),
        Codec::Zstd => zstd_size(src)?.map(|s| (s, "zstd frame headers")),
        Codec::Gzip => gzip_size(src)?.map(|s| (s, "gzip trailer")),
        Codec::Bzip2 => None,
    })
}

fn xz_error(offset: u64, reason: &'static str) -> Error {
    UnpackError::XzIndex { offset, reason }.into()
}

/// Sums the uncompressed sizes of every xz stream, walking from the end of the file
/// (xz file format 1.2.1, sections 2.1.2 and 4): footer, index, blocks, header, padding.
fn xz_size(src: &dyn ReadAt) -> Result<u64> {
    let mut end = src.len();
    let mut total = 0u64;
    loop {
        end = skip_stream_padding(src, end)?;
        if end == 0 {
            return Ok(total);
        }
        let (start, size) = xz_stream(src, end)?;
        total = total
            .checked_add(size)
            .ok_or_else(|| xz_error(end, "sizes overflow"))?;
        end = start;
    }
}

/// Moves `end` back over zero stream padding (in 4-byte units).
pub(super) fn skip_stream_padding(src: &dyn ReadAt, mut end: u64) -> Result<u64> {
    if !end.is_multiple_of(4) {
        return Err(xz_error(end, "file length is not a multiple of four"));
    }
    let mut word = [0u8; 4];
    while end >= 4 {
        read_exact_at(src, &mut word, end - 4, "xz stream padding")?;
        if word != [0; 4] {
            break;
        }
        end -= 4;
    }
    Ok(end)
}

/// The stream that ends at `end`: its start and uncompressed size.
fn xz_stream(src: &dyn ReadAt, end: u64) -> Result<(u64, u64)> {
    let (start, _, index) = xz_stream_index(src, end)?;
    let index_at = end - XZ_HEADER_BYTES - index.len() as u64;
    let (_, size) = parse_index(&index).map_err(|reason| xz_error(index_at, reason))?;
    Ok((start, size))
}

/// The stream that ends at `end`: its start, the offset of its index and the index.
pub(super) fn xz_stream_index(src: &dyn ReadAt, end: u64) -> Result<(u64, u64, Vec<u8>)> {
    if end < 2 * XZ_HEADER_BYTES {
        return Err(xz_error(end, "too short for a stream header and footer"));
    }
    let footer_at = end - XZ_HEADER_BYTES;
    let mut footer = [0u8; 12];
    read_exact_at(src, &mut footer, footer_at, "xz stream footer")?;
    if &footer[10..12] != XZ_FOOTER_MAGIC {
        return Err(xz_error(footer_at, "no stream footer magic"));
    }
    let mut crc = flate2::Crc::new();
    crc.update(&footer[4..10]);
    if crc.sum().to_le_bytes() != footer[0..4] {
        return Err(xz_error(footer_at, "stream footer CRC32 mismatch"));
    }
    let backward = u64::from(u32::from_le_bytes([
        footer[4], footer[5], footer[6], footer[7],
    ]));
    let index_len = (backward + 1) * 4;
    if index_len > XZ_MAX_INDEX_BYTES || index_len > footer_at - XZ_HEADER_BYTES {
        return Err(xz_error(footer_at, "index size out of range"));
    }
    let index_at = footer_at - index_len;
    let len = usize::try_from(index_len).map_err(|_| xz_error(index_at, "index too large"))?;
    let mut index = vec![0u8; len];
    read_exact_at(src, &mut index, index_at, "xz index")?;
    let (blocks, _) = parse_index(&index).map_err(|reason| xz_error(index_at, reason))?;
    let start = index_at
        .checked_sub(blocks)
        .and_then(|s| s.checked_sub(XZ_HEADER_BYTES))
        .ok_or_else(|| xz_error(index_at, "blocks reach before the start of the file"))?;
    let mut header = [0u8; 6];
    read_exact_at(src, &mut header, start, "xz stream header")?;
    if Codec::detect(&header) != Some(Codec::Xz) {
        return Err(xz_error(
            start,
            "no stream header where the index places it",
        ));
    }
    Ok((start, index_at, index))
}

/// Parses an index: returns the bytes its blocks occupy and their uncompressed total.
fn parse_index(index: &[u8]) -> Result<(u64, u64), &'static str> {
    if index.first() != Some(&0) {
        return Err("no index indicator");
    }
    let mut at = 1;
    let records = varint(index, &mut at)?;
    let (mut blocks, mut size) = (0u64, 0u64);
    for _ in 0..records {
        let unpadded = varint(index, &mut at)?;
        let uncompressed = varint(index, &mut at)?;
        // Block Padding brings each block to a multiple of four bytes.
        let padded = unpadded.checked_add(3).ok_or("block size overflows")? & !3;
        blocks = blocks.checked_add(padded).ok_or("block sizes overflow")?;
        size = size.checked_add(uncompressed).ok_or("sizes overflow")?;
    }
    Ok((blocks, size))
}

/// One xz multibyte integer (at most nine bytes, 63 bits) at `*at`.
pub(super) fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for i in 0..9 {
        let b = *bytes.get(*at).ok_or("index ends inside a record")?;
        *at += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("integer longer than nine bytes")
}

/// gzip's ISIZE when the file is too short for it to have wrapped.
fn gzip_size(src: &dyn ReadAt) -> Result<Option<u64>> {
    let len = src.len();
    if len < 18 || len > u64::from(u32::MAX) / GZIP_MAX_RATIO {
        return Ok(None);
    }
    let mut isize = [0u8; 4];
    read_exact_at(src, &mut isize, len - 4, "gzip trailer")?;
    Ok(Some(u64::from(u32::from_le_bytes(isize))))
}

/// The sum of every zstd frame's content size, walking frame and block headers; `None`
/// when a frame does not record its size or the walk does not end at the end of the file.
fn zstd_size(src: &dyn ReadAt) -> Result<Option<u64>> {
    let src = &mut Window::new(src);
    let len = src.len();
    let mut at = 0u64;
    let mut total = 0u64;
    while at < len {
        let Some((next, size)) = zstd_frame(src, at)? else {
            return Ok(None);
        };
        at = next;
        let Some(sum) = total.checked_add(size) else {
            return Ok(None);
        };
        total = sum;
    }
    Ok((at == len).then_some(total))
}

/// Reads of a few bytes through a cached window: block headers of highly compressible
/// data lie a few bytes apart, and one `pread` per header would cost tens of thousands of
/// system calls for one image.
struct Window<'a> {
    src: &'a dyn ReadAt,
    start: u64,
    buf: Vec<u8>,
}

/// Bytes the zstd walk reads at once. Small: a window is read at each header it does not
/// hold, so a large one reads nearly the whole file (a 400 MB image was read three times
/// over per build with 1 MiB windows), while 4 KiB still holds hundreds of the few-byte
/// headers of highly compressible data and reads a few percent of incompressible data's
/// 128 KiB blocks.
const WINDOW_BYTES: u64 = 4 << 10;

impl<'a> Window<'a> {
    fn new(src: &'a dyn ReadAt) -> Self {
        Self {
            src,
            start: 0,
            buf: Vec::new(),
        }
    }

    fn len(&self) -> u64 {
        self.src.len()
    }

    /// `n` (at most 8) bytes at `at`, little-endian; `None` past the end of the file.
    fn read_le(&mut self, at: u64, n: usize) -> Result<Option<u64>> {
        let len = self.src.len();
        let Some(end) = at.checked_add(n as u64).filter(|&end| end <= len) else {
            return Ok(None);
        };
        if at < self.start || end > self.start + self.buf.len() as u64 {
            let take = WINDOW_BYTES.min(len - at);
            self.buf.resize(usize::try_from(take).unwrap_or(0), 0);
            read_exact_at(self.src, &mut self.buf, at, "zstd frame header")?;
            self.start = at;
        }
        let from = usize::try_from(at - self.start).unwrap_or(0);
        let mut bytes = [0u8; 8];
        bytes[..n].copy_from_slice(&self.buf[from..from + n]);
        Ok(Some(u64::from_le_bytes(bytes)))
    }
}

/// The frame at `at`: where the next one starts and its content size (0 for skippable
/// frames); `None` when the size is not recorded or the frame is malformed.
fn zstd_frame(src: &mut Window<'_>, at: u64) -> Result<Option<(u64, u64)>> {
    let Some(magic) = src.read_le(at, 4)? else {
        return Ok(None);
    };
    let magic = u32::try_from(magic).unwrap_or_default();
    if magic & ZSTD_SKIPPABLE_MASK == ZSTD_SKIPPABLE {
        let Some(skip) = src.read_le(at + 4, 4)? else {
            return Ok(None);
        };
        return Ok(Some((at + 8 + skip, 0)));
    }
    if magic != ZSTD_FRAME {
        return Ok(None);
    }
    let Some(descriptor) = src.read_le(at + 4, 1)? else {
        return Ok(None);
    };
    let fcs_flag = descriptor >> 6;
    let single_segment = (descriptor >> 5) & 1 == 1;
    let checksum = (descriptor >> 2) & 1 == 1;
    let dict_bytes = [0, 1, 2, 4][usize::from(u8::try_from(descriptor & 3).unwrap_or(0))];
    let fcs_bytes = match (fcs_flag, single_segment) {
        (0, false) => return Ok(None),
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let window_bytes = u64::from(!single_segment);
    let fcs_at = at + 5 + window_bytes + dict_bytes;
    let Some(mut size) = src.read_le(fcs_at, fcs_bytes)? else {
        return Ok(None);
    };
    if fcs_bytes == 2 {
        size += 256;
    }
    let Some(end) = zstd_blocks(src, fcs_at + fcs_bytes as u64)? else {
        return Ok(None);
    };
    Ok(Some((end + if checksum { 4 } else { 0 }, size)))
}

/// Walks the blocks starting at `at`; returns where the last one ends.
fn zstd_blocks(src: &mut Window<'_>, mut at: u64) -> Result<Option<u64>> {
    loop {
        let Some(header) = src.read_le(at, 3)? else {
            return Ok(None);
        };
        let last = header & 1 == 1;
        let kind = (header >> 1) & 3;
        let size = header >> 3;
        let content = match kind {
            0 | 2 => size,
            1 => 1,
            _ => return Ok(None),
        };
        at += 3 + content;
        if last {
            return Ok(Some(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_with_two_records_sums_sizes_and_pads_blocks() {
        // indicator, 2 records, (unpadded 5, uncompressed 300), (unpadded 8, uncompressed 1)
        let index = [0, 2, 5, 0xac, 0x02, 8, 1];
        assert_eq!(parse_index(&index), Ok((8 + 8, 301)));
    }

    #[test]
    fn index_cut_inside_a_record_is_refused() {
        assert_eq!(parse_index(&[0, 1, 5]), Err("index ends inside a record"));
    }

    #[test]
    fn ten_byte_integer_is_refused() {
        let bytes = [0xff; 10];
        assert_eq!(
            varint(&bytes, &mut 0),
            Err("integer longer than nine bytes")
        );
    }

    #[test]
    fn truncated_xz_file_has_no_index() {
        let mut bytes = vec![0xfd, b'7', b'z', b'X', b'Z', 0];
        bytes.resize(64, 0x55);
        let err = xz_size(&bytes).unwrap_err();
        assert!(err.to_string().contains("no stream footer magic"), "{err}");
    }

    #[test]
    fn large_gzip_files_declare_nothing() {
        let bytes = vec![0u8; 5 << 20];
        assert_eq!(gzip_size(&bytes).unwrap(), None);
    }

    #[test]
    fn zstd_frame_without_content_size_declares_nothing() {
        // magic, descriptor 0 (no FCS, not single segment), window byte, one raw last block
        let bytes = [0x28, 0xb5, 0x2f, 0xfd, 0, 0x40, 0x09, 0, 0, b'x'];
        assert_eq!(zstd_size(&bytes.to_vec()).unwrap(), None);
    }

    #[test]
    fn zstd_single_segment_frame_declares_its_size() {
        // descriptor 0x20: single segment, 1-byte FCS = 1; one raw last block of one byte
        let bytes = vec![0x28, 0xb5, 0x2f, 0xfd, 0x20, 1, 0x09, 0, 0, b'x'];
        assert_eq!(zstd_size(&bytes).unwrap(), Some(1));
    }
}
