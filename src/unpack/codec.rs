//! The four codecs, recognised by magic bytes, and their decoders.
//!
//! Decoders are the C-speed ones: liblzma (built from its bundled source), libzstd (bundled)
//! and zlib-rs through flate2; bzip2 through libbz2-rs-sys (a Rust port of libbzip2).
//! Every decoder reads the whole file: concatenated xz streams, zstd frames, gzip members
//! and bzip2 streams are all decoded, as `xz -dc`, `zstd -dc`, `gzip -dc` and `bzip2 -dc` do.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{UnpackError, XZ_MEMLIMIT};
use crate::error::{Error, Result};

/// xz: `FD 37 7A 58 5A 00` (xz file format 1.2.1, "Stream Header").
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
/// gzip: ID1 ID2 and CM = 8 (deflate), RFC 1952.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b, 8];
/// zstd frame magic 0xFD2FB528, little-endian (RFC 8878).
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// bzip2: `BZh`, a block-size digit, then the first block's magic (pi, `1AY&SY`) or the
/// end-of-stream magic (sqrt(pi)) of an empty stream.
const BZIP2_MAGIC: &[u8] = b"BZh";
/// bzip2 block header magic.
const BZIP2_BLOCK_MAGIC: &[u8] = &[0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
/// bzip2 end-of-stream magic.
const BZIP2_END_MAGIC: &[u8] = &[0x17, 0x72, 0x45, 0x38, 0x50, 0x90];

/// A compression format kiln decompresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// xz (LZMA2).
    Xz,
    /// gzip (deflate).
    Gzip,
    /// Zstandard.
    Zstd,
    /// bzip2.
    Bzip2,
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Xz => "xz",
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
        })
    }
}

impl Codec {
    /// The codec whose magic `head` (a file's first bytes) starts with.
    pub fn detect(head: &[u8]) -> Option<Codec> {
        if head.starts_with(XZ_MAGIC) {
            return Some(Codec::Xz);
        }
        if head.starts_with(GZIP_MAGIC) {
            return Some(Codec::Gzip);
        }
        if head.starts_with(ZSTD_MAGIC) {
            return Some(Codec::Zstd);
        }
        let bzip2 = head.starts_with(BZIP2_MAGIC)
            && head.get(3).is_some_and(|d| (b'1'..=b'9').contains(d))
            && head
                .get(4..10)
                .is_some_and(|m| m == BZIP2_BLOCK_MAGIC || m == BZIP2_END_MAGIC);
        bzip2.then_some(Codec::Bzip2)
    }
}

/// Counts the compressed bytes the decoder has taken, for error messages.
struct Counting {
    file: File,
    count: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Compressed bytes read so far by a decoder.
#[derive(Debug, Clone, Default)]
pub struct Consumed(Arc<AtomicU64>);

impl Consumed {
    /// Bytes read so far (the decoder's input buffer reads ahead of what it decoded).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Input buffer of the decoders: large reads keep the syscall count low.
const INPUT_BUFFER_BYTES: usize = 256 << 10;

/// A decoder of `path`'s whole contents with `codec`, and its compressed-byte counter.
///
/// # Errors
/// The file cannot be opened; the decoder cannot start.
pub fn decoder(path: &Path, codec: Codec) -> Result<(Box<dyn Read + Send>, Consumed)> {
    let file = File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let consumed = Consumed::default();
    let input = BufReader::with_capacity(
        INPUT_BUFFER_BYTES,
        Counting {
            file,
            count: consumed.0.clone(),
        },
    );
    let reader: Box<dyn Read + Send> = match codec {
        Codec::Xz => {
            let flags = liblzma::stream::CONCATENATED;
            let stream = liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, flags)
                .map_err(|e| Error::io(io::Error::other(e)).with_path(path))?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(input, stream))
        }
        Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Codec::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| Error::io(e).with_path(path))?,
        ),
        Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
    };
    Ok((reader, consumed))
}

/// A decoding error as the one-line [`UnpackError::Corrupt`].
pub fn corrupt(codec: Codec, consumed: &Consumed, uncompressed: u64, source: io::Error) -> Error {
    UnpackError::Corrupt {
        codec,
        compressed: consumed.get(),
        uncompressed,
        source,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xz_magic_is_detected() {
        assert_eq!(
            Codec::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Some(Codec::Xz)
        );
    }

    #[test]
    fn zstd_magic_is_detected() {
        assert_eq!(
            Codec::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(Codec::Zstd)
        );
    }

    #[test]
    fn gzip_needs_the_deflate_method_byte() {
        assert_eq!(Codec::detect(&[0x1f, 0x8b, 7]), None);
    }

    #[test]
    fn bzip2_needs_a_block_magic_after_the_level() {
        assert_eq!(Codec::detect(b"BZh9 not a block"), None);
    }

    #[test]
    fn bzip2_with_block_magic_is_detected() {
        let head = [b'B', b'Z', b'h', b'9', 0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
        assert_eq!(Codec::detect(&head), Some(Codec::Bzip2));
    }

    #[test]
    fn a_boot_sector_is_not_compressed() {
        assert_eq!(Codec::detect(&[0xeb, 0x63, 0x90, 0x10]), None);
    }
}
