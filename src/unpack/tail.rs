//! The last bytes of the image in an xz file, decoded from its last block alone: how a
//! fixed VHD (raw data, then a 512-byte footer) inside a multi-block xz file (`xz -T0`,
//! the default of xz 5.6 and later) is recognised before streaming starts, so it goes
//! through the cache, where the engine reads its footer, instead of being streamed as raw
//! and refused at its end.
//!
//! xz blocks decode independently (xz file format 1.2.1, section 3): the last block is
//! wrapped in a stream of its own (the file's stream header, the block, a one-record index
//! and a footer built here) and decoded with the usual decoder, which checks the block's
//! check and sizes. Only worth it when the file has more than one block; at most
//! [`XZ_TAIL_MAX_BLOCK`] of compressed data is decoded.

use std::io::{Cursor, Read};

use super::XZ_MEMLIMIT;
use super::size::{skip_stream_padding, varint, xz_stream_index};
use crate::error::Result;
use crate::io::{ReadAt, read_exact_at};

/// Largest last block decoded ahead (compressed bytes): `xz -T0 -9` blocks are 192 MiB
/// of input; beyond that the fixed VHD check is left to the end of the stream.
const XZ_TAIL_MAX_BLOCK: u64 = 64 << 20;
/// Bytes of the tail returned.
const TAIL_BYTES: usize = 512;

/// The last 512 bytes of what `src` (an xz file) decompresses to, when its last block
/// holds them and it is not the file's only block; `None` otherwise.
///
/// # Errors
/// A malformed index (as [`super::size::declared`]); I/O failures. A last block that
/// does not decode is `None`: the stream reports it when it gets there.
pub(super) fn xz_tail(src: &dyn ReadAt) -> Result<Option<Vec<u8>>> {
    let end = skip_stream_padding(src, src.len())?;
    let (start, index_at, index) = xz_stream_index(src, end)?;
    let Some((records, unpadded, uncompressed)) = last_record(&index) else {
        return Ok(None);
    };
    let padded = (unpadded + 3) & !3;
    if (records < 2 && start == 0)
        || uncompressed < TAIL_BYTES as u64
        || padded > XZ_TAIL_MAX_BLOCK
        || padded > index_at
    {
        return Ok(None);
    }
    let mut header = [0u8; 12];
    read_exact_at(src, &mut header, start, "xz stream header")?;
    let mut block = vec![0u8; usize::try_from(padded).expect("at most 64 MiB")];
    read_exact_at(src, &mut block, index_at - padded, "xz block")?;
    let stream = one_block_stream(&header, &block, unpadded, uncompressed);
    Ok(decode_tail(stream, uncompressed))
}

/// The number of records in `index` and the last one's unpadded and uncompressed sizes.
fn last_record(index: &[u8]) -> Option<(u64, u64, u64)> {
    let mut at = 1;
    let records = varint(index, &mut at).ok()?;
    let mut last = None;
    for _ in 0..records {
        let unpadded = varint(index, &mut at).ok()?;
        let uncompressed = varint(index, &mut at).ok()?;
        last = Some((records, unpadded, uncompressed));
    }
    last
}

/// An xz stream of `block` alone: `header`, the block, its index and the stream footer.
fn one_block_stream(header: &[u8; 12], block: &[u8], unpadded: u64, size: u64) -> Vec<u8> {
    let mut index = vec![0u8];
    for value in [1, unpadded, size] {
        push_varint(&mut index, value);
    }
    index.resize(index.len().next_multiple_of(4), 0);
    index.extend_from_slice(&crc32(&index).to_le_bytes());
    let backward = u32::try_from(index.len() / 4 - 1).expect("a one-record index");
    let mut footer_body = backward.to_le_bytes().to_vec();
    footer_body.extend_from_slice(&header[6..8]);
    let mut out = header.to_vec();
    out.extend_from_slice(block);
    out.extend_from_slice(&index);
    out.extend_from_slice(&crc32(&footer_body).to_le_bytes());
    out.extend_from_slice(&footer_body);
    out.extend_from_slice(b"YZ");
    out
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).expect("seven bits") | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).expect("below 0x80"));
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

/// Decodes `stream`, keeping its last [`TAIL_BYTES`]; `None` when it does not decode to
/// exactly `size` bytes.
fn decode_tail(stream: Vec<u8>, size: u64) -> Option<Vec<u8>> {
    let decoder = liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0).ok()?;
    let mut reader = liblzma::read::XzDecoder::new_stream(Cursor::new(stream), decoder);
    let mut buf = vec![0u8; 1 << 20];
    let mut tail = Vec::with_capacity(2 * TAIL_BYTES);
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        total += n as u64;
        tail.extend_from_slice(&buf[n.saturating_sub(TAIL_BYTES)..n]);
        let excess = tail.len().saturating_sub(TAIL_BYTES);
        tail.drain(..excess);
    }
    (total == size).then_some(tail)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// `data` as one xz stream of one block.
    fn xz(data: &[u8]) -> Vec<u8> {
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn data() -> Vec<u8> {
        (0..3_000_000u32)
            .map(|i| (i % 251).to_le_bytes()[0] ^ (i >> 13).to_le_bytes()[0])
            .collect()
    }

    #[test]
    fn the_last_block_alone_gives_the_tail() {
        // Two concatenated streams: the last block is the second stream's (the real
        // multi-block case, `xz -T2 --block-size`, is in tests/compressed.rs).
        let d = data();
        let mut file = xz(&d[..1_000_000]);
        file.extend_from_slice(&xz(&d[1_000_000..]));
        assert_eq!(xz_tail(&file).unwrap(), Some(d[d.len() - 512..].to_vec()));
    }

    #[test]
    fn a_single_block_is_not_decoded_ahead() {
        let file = xz(&data());
        assert_eq!(xz_tail(&file).unwrap(), None);
    }

    #[test]
    fn a_corrupt_last_block_gives_no_tail() {
        let d = data();
        let mut file = xz(&d[..1_000_000]);
        file.extend_from_slice(&xz(&d[1_000_000..]));
        let n = file.len();
        file[n - 100] ^= 0xff;
        assert_eq!(xz_tail(&file).ok().flatten(), None);
    }
}
