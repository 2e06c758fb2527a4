//! One gzip member (RFC 1952) built from chunks compressed independently, pigz-style.
//!
//! Each chunk of the input is deflated on its own by libdeflate; every chunk but the last
//! is made non-final and byte-aligned ([`super::deflate::make_non_final`]), so the
//! concatenation is one DEFLATE stream. Each chunk's CRC-32 is computed beside its
//! compression and the member's CRC is assembled with [`crc32_combine`]. The output depends
//! only on the input and the chunk size, never on which thread compressed what.

use libdeflater::{CompressionLvl, Compressor};

use super::deflate::{DeflateError, make_non_final};

/// gzip magic, CM=8 (deflate), FLG=0 (no name, no comment), MTIME=0: as `gzip -n`.
const GZIP_MAGIC_CM_FLG_MTIME: [u8; 8] = [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0];
/// OS byte 3: Unix, as gzip writes on Linux.
const GZIP_OS_UNIX: u8 = 3;

/// The 10-byte member header for `level` (XFL 2 = slowest, 4 = fastest, as gzip sets it).
pub fn header(level: i32) -> [u8; 10] {
    let xfl = match level {
        ..=1 => 4,
        8.. => 2,
        _ => 0,
    };
    let mut h = [0u8; 10];
    h[..8].copy_from_slice(&GZIP_MAGIC_CM_FLG_MTIME);
    h[8] = xfl;
    h[9] = GZIP_OS_UNIX;
    h
}

/// The 8-byte member trailer: CRC-32 and the input length modulo 2^32, little-endian.
pub fn trailer(crc: u32, len: u64) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&crc.to_le_bytes());
    // ISIZE is the length modulo 2^32: the low four little-endian bytes.
    t[4..].copy_from_slice(&len.to_le_bytes()[..4]);
    t
}

/// The CRC-32 polynomial, bit-reflected (bit 31 is x^0).
const CRC32_POLY: u32 = 0xedb8_8320;

/// `a * b mod P` for polynomials over GF(2) in reflected form.
fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    for k in 0..32 {
        if a & (0x8000_0000 >> k) != 0 {
            product ^= b;
        }
        // b * x: a right shift in reflected form, reduced by P on overflow.
        b = if b & 1 != 0 {
            (b >> 1) ^ CRC32_POLY
        } else {
            b >> 1
        };
    }
    product
}

/// `x^(8·len) mod P`: the factor that moves a CRC past `len` bytes.
fn x_pow_8n_mod_p(mut len: u64) -> u32 {
    let mut result = 0x8000_0000; // x^0
    let mut power = 0x0080_0000; // x^8
    while len != 0 {
        if len & 1 != 0 {
            result = mul_mod_p(result, power);
        }
        power = mul_mod_p(power, power);
        len >>= 1;
    }
    result
}

/// The CRC-32 of `A ‖ B` from `crc(A)`, `crc(B)` and `len(B)`. The pre- and
/// post-inversions of the standard CRC cancel out, so the combination is linear.
pub fn crc32_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    mul_mod_p(x_pow_8n_mod_p(len_b), crc_a) ^ crc_b
}

/// One compressed chunk: its DEFLATE bytes, and the CRC-32 and length of its input.
#[derive(Debug)]
pub struct Compressed {
    /// DEFLATE blocks; byte-aligned and without BFINAL unless this is the last chunk.
    pub bytes: Vec<u8>,
    /// CRC-32 of the chunk's input.
    pub crc: u32,
    /// Length of the chunk's input.
    pub len: u64,
}

/// A per-thread libdeflate compressor for chunks of the member.
pub struct ChunkCompressor {
    inner: Compressor,
}

impl ChunkCompressor {
    /// A compressor at `level` (1..=12; levels out of range are clamped).
    pub fn new(level: i32) -> Self {
        let lvl = CompressionLvl::new(level.clamp(1, 12)).unwrap_or_default();
        Self {
            inner: Compressor::new(lvl),
        }
    }

    /// Compresses `data` into `out` (cleared first); `last` keeps BFINAL on the final block.
    ///
    /// # Errors
    /// Only if libdeflate's output cannot be walked, which would be a bug.
    pub fn compress(
        &mut self,
        data: &[u8],
        last: bool,
        mut out: Vec<u8>,
    ) -> Result<Compressed, DeflateError> {
        out.clear();
        // Room for the bound plus the 5-byte sync marker.
        out.resize(self.inner.deflate_compress_bound(data.len()) + 5, 0);
        let n = self
            .inner
            .deflate_compress(data, &mut out)
            .map_err(|_| DeflateError {
                bit: 0,
                what: "libdeflate reported insufficient space",
            })?;
        out.truncate(n);
        if !last {
            make_non_final(&mut out)?;
        }
        Ok(Compressed {
            bytes: out,
            crc: libdeflater::crc32(data),
            len: data.len() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn sample(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if i % 5 == 0 {
                    (x >> 24) as u8
                } else {
                    b"ec2 "[i % 4]
                }
            })
            .collect()
    }

    /// Compresses `data` in `chunk`-byte pieces into one member, as the bundler does.
    fn member(data: &[u8], chunk: usize, level: i32) -> Vec<u8> {
        let mut c = ChunkCompressor::new(level);
        let mut out = header(level).to_vec();
        let (mut crc, mut len) = (0u32, 0u64);
        let pieces: Vec<&[u8]> = data.chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let part = c
                .compress(piece, i + 1 == pieces.len(), Vec::new())
                .unwrap();
            crc = crc32_combine(crc, part.crc, part.len);
            len += part.len;
            out.extend(part.bytes);
        }
        out.extend(trailer(crc, len));
        out
    }

    #[test]
    fn crc_combine_equals_the_direct_crc() {
        let (a, b) = (sample(100_003, 1), sample(77_777, 2));
        let combined = crc32_combine(libdeflater::crc32(&a), libdeflater::crc32(&b), 77_777);
        assert_eq!(combined, libdeflater::crc32(&[a, b].concat()));
    }

    #[test]
    fn crc_combine_with_an_empty_tail_is_the_head() {
        assert_eq!(crc32_combine(0xdead_beef, 0, 0), 0xdead_beef);
    }

    #[test]
    fn chunked_member_decodes_with_flate2_to_the_input() {
        let data = sample(1_000_000, 7);
        let gz = member(&data, 65_536, 6);
        let mut dec = flate2::read::GzDecoder::new(&gz[..]);
        let mut out = Vec::new();
        dec.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn header_marks_the_slowest_level_like_gzip_9() {
        assert_eq!(header(9), [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, GZIP_OS_UNIX]);
    }
}
