//! Turning a complete DEFLATE stream (RFC 1951) into a non-final piece of a longer one.
//!
//! libdeflate compresses a buffer into one whole stream whose last block carries BFINAL and
//! has no flush API. To join independently compressed chunks into one gzip member (as pigz
//! does), every chunk but the last must (1) not set BFINAL and (2) end on a byte boundary
//! so the next chunk's first block header starts at bit 0 of a byte: zlib's sync flush.
//!
//! [`make_non_final`] walks the blocks of the stream (headers, Huffman tables and symbols;
//! nothing is decompressed) to find the final block's header bit and the bit where its
//! end-of-block code ends, clears BFINAL, and appends an empty stored block (`000`, padding,
//! `00 00 FF FF`), which is exactly what zlib's `Z_SYNC_FLUSH` emits.

/// The walk found a stream that is not valid DEFLATE; the message names the defect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DEFLATE stream invalid at bit {bit}: {what}")]
pub struct DeflateError {
    /// Bit offset (from the start of the stream) where the defect was seen.
    pub bit: u64,
    /// What is wrong.
    pub what: &'static str,
}

/// Where the final block of a stream starts and where the stream's last code ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalBlock {
    /// Bit offset of the final block's BFINAL bit.
    pub header_bit: u64,
    /// Bit offset just past the final block (its end-of-block code or stored data).
    pub end_bit: u64,
}

/// Rewrites `stream`, a complete DEFLATE stream, so that it does not end the data: BFINAL
/// cleared, then an empty stored block that leaves the stream byte-aligned.
///
/// # Errors
/// The stream is not valid DEFLATE or has bytes after its final block.
pub fn make_non_final(stream: &mut Vec<u8>) -> Result<(), DeflateError> {
    let last = find_final_block(stream)?;
    let end_byte = usize::try_from(last.end_bit.div_ceil(8)).unwrap_or(usize::MAX);
    if end_byte != stream.len() {
        return Err(DeflateError {
            bit: last.end_bit,
            what: "bytes follow the final block",
        });
    }
    let header_byte = usize::try_from(last.header_bit / 8).unwrap_or(usize::MAX);
    let bit = last.header_bit % 8;
    if let Some(b) = stream.get_mut(header_byte) {
        *b &= !(1u8 << bit);
    }
    let used = last.end_bit % 8;
    if let Some(b) = stream.last_mut().filter(|_| used != 0) {
        // The padding bits after the last code become the empty block's header.
        *b &= (1u8 << used) - 1;
    }
    let free = if used == 0 { 0 } else { 8 - used };
    if free < 3 {
        // BFINAL=0 and BTYPE=00 need three bits; they spill into a new byte.
        stream.push(0);
    }
    stream.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    Ok(())
}

/// Walks every block of `stream` and reports where the final one starts and ends.
///
/// # Errors
/// The stream is truncated or not valid DEFLATE.
pub fn find_final_block(stream: &[u8]) -> Result<FinalBlock, DeflateError> {
    let mut bits = BitReader::new(stream);
    let mut fixed: Option<(Huffman, Huffman)> = None;
    loop {
        let header_bit = bits.position();
        let bfinal = bits.take(1)?;
        match bits.take(2)? {
            0 => skip_stored(&mut bits)?,
            1 => {
                let (lit, dist) = fixed.get_or_insert_with(fixed_tables);
                skip_symbols(&mut bits, lit, dist)?;
            }
            2 => {
                let (lit, dist) = dynamic_tables(&mut bits)?;
                skip_symbols(&mut bits, &lit, &dist)?;
            }
            _ => return Err(bits.error("reserved block type 3")),
        }
        if bfinal == 1 {
            return Ok(FinalBlock {
                header_bit,
                end_bit: bits.position(),
            });
        }
    }
}

/// LSB-first bit reader over a byte slice; reading past the end is an error.
struct BitReader<'a> {
    data: &'a [u8],
    next_byte: usize,
    buf: u64,
    count: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            next_byte: 0,
            buf: 0,
            count: 0,
        }
    }

    fn position(&self) -> u64 {
        (self.next_byte as u64) * 8 - u64::from(self.count)
    }

    fn error(&self, what: &'static str) -> DeflateError {
        DeflateError {
            bit: self.position(),
            what,
        }
    }

    /// Fills the buffer to at least 57 bits where the data allows.
    fn refill(&mut self) {
        while self.count <= 56 {
            let Some(&b) = self.data.get(self.next_byte) else {
                return;
            };
            self.buf |= u64::from(b) << self.count;
            self.count += 8;
            self.next_byte += 1;
        }
    }

    /// The next `n` (≤ 32) bits without consuming them; missing bits read as zero.
    #[allow(clippy::cast_possible_truncation)] // masked to at most 32 bits
    fn peek(&mut self, n: u32) -> u32 {
        if self.count < n {
            self.refill();
        }
        // The mask keeps at most 32 bits.
        (self.buf & ((1u64 << n) - 1)) as u32
    }

    fn consume(&mut self, n: u32) -> Result<(), DeflateError> {
        if self.count < n {
            self.refill();
            if self.count < n {
                return Err(self.error("stream ends inside a block"));
            }
        }
        self.buf >>= n;
        self.count -= n;
        Ok(())
    }

    fn take(&mut self, n: u32) -> Result<u32, DeflateError> {
        let v = self.peek(n);
        self.consume(n)?;
        Ok(v)
    }

    /// Drops the bits up to the next byte boundary.
    fn align(&mut self) {
        let drop = self.count % 8;
        self.buf >>= drop;
        self.count -= drop;
    }

    /// Skips `n` whole bytes; the reader must be byte-aligned.
    fn skip_bytes(&mut self, n: usize) -> Result<(), DeflateError> {
        let buffered = (self.count / 8) as usize;
        if n <= buffered {
            // n ≤ 7 here, so the shift stays below 64.
            let bits = u32::try_from(n * 8).unwrap_or(u32::MAX);
            return self.consume(bits);
        }
        let rest = n - buffered;
        if rest > self.data.len() - self.next_byte {
            return Err(self.error("stored block runs past the end"));
        }
        self.buf = 0;
        self.count = 0;
        self.next_byte += rest;
        Ok(())
    }
}

fn skip_stored(bits: &mut BitReader<'_>) -> Result<(), DeflateError> {
    bits.align();
    let len = bits.take(16)?;
    let nlen = bits.take(16)?;
    if len != !nlen & 0xffff {
        return Err(bits.error("stored block LEN and NLEN disagree"));
    }
    bits.skip_bytes(len as usize)
}

/// Bits resolved by one table lookup; longer codes take the canonical slow path.
const FAST_BITS: u32 = 10;
/// The longest code DEFLATE allows.
const MAX_CODE_BITS: usize = 15;

/// A canonical Huffman code: a lookup table for short codes plus the per-length counts and
/// symbols in canonical order for the rest.
struct Huffman {
    /// `symbol << 4 | length` by the next FAST_BITS input bits; 0 when the code is longer.
    fast: Vec<u16>,
    counts: [u16; MAX_CODE_BITS + 1],
    sorted: Vec<u16>,
}

impl Huffman {
    /// Builds the code for `lengths` (0 = unused symbol). Incomplete codes are allowed (a
    /// single distance code is legal); over-subscribed ones are not.
    fn new(lengths: &[u8]) -> Option<Self> {
        let mut counts = [0u16; MAX_CODE_BITS + 1];
        for &l in lengths {
            *counts.get_mut(usize::from(l))? += 1;
        }
        counts[0] = 0;
        let mut left: i32 = 1;
        for &c in &counts[1..] {
            left = left * 2 - i32::from(c);
            if left < 0 {
                return None;
            }
        }
        let mut next_code = [0u32; MAX_CODE_BITS + 2];
        let mut offsets = [0u16; MAX_CODE_BITS + 2];
        for len in 1..=MAX_CODE_BITS {
            next_code[len + 1] = (next_code[len] + u32::from(counts[len])) << 1;
            offsets[len + 1] = offsets[len] + counts[len];
        }
        let mut sorted = vec![0u16; usize::from(offsets[MAX_CODE_BITS + 1])];
        let mut fast = vec![0u16; 1 << FAST_BITS];
        for (sym, &l) in lengths.iter().enumerate() {
            let len = usize::from(l);
            if len == 0 {
                continue;
            }
            let len32 = u32::from(l);
            let sym16 = u16::try_from(sym).ok()?;
            sorted[usize::from(offsets[len])] = sym16;
            offsets[len] += 1;
            let code = next_code[len];
            next_code[len] += 1;
            if len32 <= FAST_BITS {
                let rev = reverse_bits(code, len32) as usize;
                let entry = (sym16 << 4) | u16::from(l);
                let mut i = rev;
                while i < fast.len() {
                    fast[i] = entry;
                    i += 1 << len;
                }
            }
        }
        Some(Self {
            fast,
            counts,
            sorted,
        })
    }

    fn decode(&self, bits: &mut BitReader<'_>) -> Result<u16, DeflateError> {
        let entry = self.fast[bits.peek(FAST_BITS) as usize];
        if entry != 0 {
            bits.consume(u32::from(entry & 0xf))?;
            return Ok(entry >> 4);
        }
        self.decode_slow(bits)
    }

    /// Canonical decoding one bit at a time: codes of each length are consecutive
    /// integers starting at `first`.
    fn decode_slow(&self, bits: &mut BitReader<'_>) -> Result<u16, DeflateError> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..=MAX_CODE_BITS {
            code |= i32::try_from(bits.take(1)?).unwrap_or(0);
            let count = i32::from(self.counts[len]);
            if code - first < count {
                let at = usize::try_from(index + code - first).unwrap_or(usize::MAX);
                return self
                    .sorted
                    .get(at)
                    .copied()
                    .ok_or_else(|| bits.error("bad Huffman code"));
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(bits.error("no Huffman code matches"))
    }
}

fn reverse_bits(code: u32, len: u32) -> u32 {
    code.reverse_bits() >> (32 - len)
}

fn fixed_tables() -> (Huffman, Huffman) {
    let mut lit = [8u8; 288];
    lit[144..256].fill(9);
    lit[256..280].fill(7);
    let dist = [5u8; 32];
    // RFC 1951 §3.2.6 defines these codes; they are complete by construction.
    let (Some(l), Some(d)) = (Huffman::new(&lit), Huffman::new(&dist)) else {
        unreachable!("the fixed Huffman codes are valid")
    };
    (l, d)
}

/// Order in which the code length code lengths are stored (RFC 1951 §3.2.7).
const CLEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

fn dynamic_tables(bits: &mut BitReader<'_>) -> Result<(Huffman, Huffman), DeflateError> {
    let hlit = bits.take(5)? as usize + 257;
    let hdist = bits.take(5)? as usize + 1;
    let hclen = bits.take(4)? as usize + 4;
    if hlit > 286 || hdist > 30 {
        return Err(bits.error("too many literal/length or distance codes"));
    }
    let mut clen = [0u8; 19];
    for &i in &CLEN_ORDER[..hclen] {
        clen[i] = u8::try_from(bits.take(3)?).unwrap_or(0);
    }
    let clen_code = Huffman::new(&clen).ok_or_else(|| bits.error("bad code length code"))?;
    let mut lengths = vec![0u8; hlit + hdist];
    let mut i = 0;
    while i < lengths.len() {
        let sym = clen_code.decode(bits)?;
        let (value, repeat) = match sym {
            0..=15 => (u8::try_from(sym).unwrap_or(0), 1),
            16 => {
                let prev = i
                    .checked_sub(1)
                    .map(|p| lengths[p])
                    .ok_or_else(|| bits.error("repeat with no previous length"))?;
                (prev, 3 + bits.take(2)? as usize)
            }
            17 => (0, 3 + bits.take(3)? as usize),
            _ => (0, 11 + bits.take(7)? as usize),
        };
        let end = i + repeat;
        if end > lengths.len() {
            return Err(bits.error("code lengths overrun the table"));
        }
        lengths[i..end].fill(value);
        i = end;
    }
    if lengths[256] == 0 {
        return Err(bits.error("no end-of-block code"));
    }
    let lit = Huffman::new(&lengths[..hlit]);
    let dist = Huffman::new(&lengths[hlit..]);
    match (lit, dist) {
        (Some(l), Some(d)) => Ok((l, d)),
        _ => Err(bits.error("over-subscribed Huffman code")),
    }
}

/// Skips a block's symbols up to and including its end-of-block code.
fn skip_symbols(
    bits: &mut BitReader<'_>,
    lit: &Huffman,
    dist: &Huffman,
) -> Result<(), DeflateError> {
    loop {
        let sym = lit.decode(bits)?;
        match sym {
            0..=255 => {}
            256 => return Ok(()),
            257..=285 => {
                bits.consume(length_extra_bits(sym))?;
                let d = dist.decode(bits)?;
                if d >= 30 {
                    return Err(bits.error("distance code 30 or 31"));
                }
                bits.consume(distance_extra_bits(d))?;
            }
            _ => return Err(bits.error("literal/length code 286 or 287")),
        }
    }
}

/// Extra bits after length code `sym` (257..=285), RFC 1951 §3.2.5.
fn length_extra_bits(sym: u16) -> u32 {
    match sym {
        257..=264 | 285 => 0,
        _ => u32::from((sym - 261) / 4),
    }
}

/// Extra bits after distance code `d` (0..=29).
fn distance_extra_bits(d: u16) -> u32 {
    if d < 4 { 0 } else { u32::from((d - 2) / 2) }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use libdeflater::{CompressionLvl, Compressor};

    use super::*;

    fn deflate(data: &[u8], level: i32) -> Vec<u8> {
        let mut c = Compressor::new(CompressionLvl::new(level).unwrap());
        let mut out = vec![0; c.deflate_compress_bound(data.len())];
        let n = c.deflate_compress(data, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(stream)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x1234_5678u32;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 7 == 0 {
                    (x >> 24) as u8
                } else {
                    b"kiln"[i % 4]
                }
            })
            .collect()
    }

    #[test]
    fn final_block_of_a_fixed_empty_stream_is_found() {
        // libdeflate's empty stream: BFINAL=1, fixed block, end-of-block (7 zero bits).
        assert_eq!(
            find_final_block(&[0x03, 0x00]),
            Ok(FinalBlock {
                header_bit: 0,
                end_bit: 10
            })
        );
    }

    #[test]
    fn non_final_chunks_joined_inflate_to_the_input() {
        let a = sample(700_000);
        let b = sample(123_457);
        let mut joined = deflate(&a, 9);
        make_non_final(&mut joined).unwrap();
        joined.extend(deflate(&b, 6));
        assert_eq!(inflate(&joined), [a, b].concat());
    }

    #[test]
    fn stored_blocks_are_walked() {
        let a = sample(70_000);
        let mut joined = deflate(&a, 0);
        make_non_final(&mut joined).unwrap();
        joined.extend(deflate(b"tail", 1));
        assert_eq!(inflate(&joined), [&a[..], b"tail"].concat());
    }

    #[test]
    fn truncated_stream_is_rejected() {
        let s = deflate(&sample(50_000), 6);
        assert!(find_final_block(&s[..s.len() / 2]).is_err());
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut s = deflate(b"abc", 6);
        s.push(0);
        assert!(make_non_final(&mut s).is_err());
    }
}
