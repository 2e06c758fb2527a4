//! A raw image read straight from its decoder: a [`DiskReader`] over a `Read`, with no copy
//! on disk. The decoder runs on the engine's reading thread while the writers run on
//! theirs, so decompression overlaps writing.
//!
//! The image's size must be known before its first byte (the writers lay out their tables
//! from it): the tar member's size, else what the compressed container declares
//! ([`super::size`]). The stream is held to it: ending early or running on is an error,
//! found before any output is committed. All-zero chunks are reported as holes.
//!
//! A streamOptimized VMDK is streamed too, by the VMDK module's front-to-back reader over
//! the same decoded input; its size is the capacity in its header, whatever the codec.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;

use super::archive::{self, Entry, Walker};
use super::codec::{self, Codec, Consumed};
use super::{UnpackError, UnpackOptions, read_full, size, tail};
use crate::disk::vmdk::{self, StreamInput};
use crate::disk::{DiskFormat, DiskReader, Extent, ImageInfo, MAX_EXTENT_BYTES, OwnedExtent};
use crate::error::{Error, ErrorKind, Result};
use crate::io::{FileSource, is_zero};

/// Bytes decoded ahead to recognise the image (and the tar header) before choosing a path.
const HEAD_BYTES: usize = 64 << 10;
/// Zero bytes allowed after a stream VMDK's end-of-stream marker: qemu-img leaves the file
/// as long as its last grain's full-size allocation, up to one grain (64 KiB) past the
/// marker; 1 MiB covers grains up to that size and is not a way to hide a bomb.
const VMDK_TRAILING_ZEROS: usize = 1 << 20;
/// "conectix": the cookie a VHD footer starts with.
const VHD_COOKIE: &[u8] = b"conectix";

/// The decoded image, positioned at its first byte, and what is known about it.
pub(super) struct Started {
    /// The image's bytes (a tar member's are cut to its length).
    pub input: Box<dyn ImageInput>,
    /// Its size, when declared up front.
    pub size: Option<u64>,
    /// What declared the size.
    pub from: &'static str,
    /// Whether its first bytes read as a raw image (no other format's magic).
    pub raw: bool,
    /// The capacity in bytes, when its first sector is a streamOptimized VMDK header: such
    /// an image is read front to back ([`crate::disk::vmdk::open_sequential`]).
    pub vmdk: Option<u64>,
    /// The codec, for messages.
    pub codec: Codec,
    /// Compressed bytes consumed.
    pub consumed: Consumed,
}

impl Started {
    /// True when the image can be streamed: raw, of a known size, or a stream VMDK.
    pub fn streamable(&self) -> bool {
        (self.raw && self.size.is_some()) || self.vmdk.is_some()
    }

    /// The virtual size of a streamable image.
    pub fn virtual_size(&self) -> Option<u64> {
        self.vmdk.or(self.size.filter(|_| self.raw))
    }
}

/// The image's bytes from a decoder, with the checks to run once they are all read.
pub(super) trait ImageInput: Read + Send {
    /// Called after the image's last byte: checks the input holds nothing more than it
    /// should (the rest of a tar archive is walked).
    ///
    /// # Errors
    /// A stream longer than declared; a second disk image in an archive.
    fn finish(&mut self, read: u64) -> Result<()>;
}

/// A whole decoded file is the image.
struct Whole {
    decoder: Box<dyn Read + Send>,
    codec: Codec,
    consumed: Consumed,
    size: Option<u64>,
    from: &'static str,
}

impl Read for Whole {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.decoder.read(buf)
    }
}

impl ImageInput for Whole {
    fn finish(&mut self, read: u64) -> Result<()> {
        let Some(declared) = self.size else {
            return Ok(());
        };
        let mut byte = [0u8; 1];
        let n = (self.decoder.read(&mut byte))
            .map_err(|e| codec::corrupt(self.codec, &self.consumed, read, e))?;
        if n == 0 {
            return Ok(());
        }
        let (codec, from) = (self.codec, self.from);
        Err(UnpackError::Longer {
            codec,
            declared,
            from,
        }
        .into())
    }
}

/// A tar member of a decoded archive is the image.
struct Member {
    walker: Walker<Box<dyn Read + Send>>,
    entry: Entry,
    left: u64,
    by_default: bool,
    codec: Codec,
    consumed: Consumed,
}

impl Read for Member {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        // Never ask the decoder for zero bytes: zstd's reader reports that as no progress.
        if max == 0 {
            return Ok(0);
        }
        let n = self.walker.input().read(&mut buf[..max])?;
        self.left -= n as u64;
        self.walker.advance(n as u64);
        Ok(n)
    }
}

impl ImageInput for Member {
    fn finish(&mut self, _read: u64) -> Result<()> {
        let read = self.entry.len - self.left;
        let end = self.entry.offset + read;
        (self.walker.check_rest(&self.entry, read, self.by_default)).map_err(|e| {
            // A decoding error past the image (its trailing checksum, most often).
            if e.kind() != ErrorKind::Io {
                return e;
            }
            let source = io::Error::other(e.to_string());
            codec::corrupt(self.codec, &self.consumed, end, source)
        })
    }
}

/// Starts decoding `path`: reads its first bytes, walks to the tar member when it is an
/// archive, and tells whether the image is raw and how long it is.
///
/// # Errors
/// Corrupt data in the first bytes; a refused archive; a declared size past the bound.
pub(super) fn start(path: &Path, codec: Codec, opts: &UnpackOptions) -> Result<Started> {
    let file = File::open(path).map_err(Error::io)?;
    let src = FileSource::new(file).map_err(Error::io)?;
    let declared = size::declared(&src, codec)?;
    let (mut decoder, consumed) = codec::decoder(path, codec)?;
    let mut head = vec![0u8; HEAD_BYTES];
    let n =
        read_full(&mut decoder, &mut head).map_err(|e| codec::corrupt(codec, &consumed, 0, e))?;
    head.truncate(n);
    let is_tar = archive::is_tar(&head);
    let raw = is_raw(&head) && !(codec == Codec::Xz && !is_tar && ends_in_vhd_footer(&src)?);
    let vmdk = vmdk::stream_capacity(&head);
    let rejoined: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(decoder));
    let started = if is_tar {
        start_member(rejoined, codec, consumed, opts)?
    } else {
        start_whole(rejoined, codec, consumed, declared, raw, vmdk)
    };
    check_bound(&started, opts)?;
    Ok(started)
}

/// True when the xz file `src`'s last block, decoded alone, ends in a VHD footer: a fixed
/// VHD, which goes through the cache ([`super::tail`]).
fn ends_in_vhd_footer(src: &FileSource) -> Result<bool> {
    Ok(tail::xz_tail(src)?.is_some_and(|t| t.starts_with(VHD_COOKIE)))
}

fn start_whole(
    decoder: Box<dyn Read + Send>,
    codec: Codec,
    consumed: Consumed,
    declared: Option<(u64, &'static str)>,
    raw: bool,
    vmdk: Option<u64>,
) -> Started {
    let (size, from) = declared.map_or((None, ""), |(s, f)| (Some(s), f));
    Started {
        input: Box::new(Whole {
            decoder,
            codec,
            consumed: consumed.clone(),
            size,
            from,
        }),
        size,
        from,
        raw,
        vmdk,
        codec,
        consumed,
    }
}

fn start_member(
    decoder: Box<dyn Read + Send>,
    codec: Codec,
    consumed: Consumed,
    opts: &UnpackOptions,
) -> Result<Started> {
    let mut walker = Walker::new(decoder);
    let entry = walker.find(opts.member.as_deref())?;
    let size = entry.len;
    let mut member = Member {
        walker,
        entry,
        left: size,
        by_default: opts.member.is_none(),
        codec,
        consumed: consumed.clone(),
    };
    let mut head = vec![0u8; HEAD_BYTES.min(usize::try_from(size).unwrap_or(HEAD_BYTES))];
    let n =
        read_full(&mut member, &mut head).map_err(|e| codec::corrupt(codec, &consumed, 0, e))?;
    head.truncate(n);
    let raw = is_raw(&head);
    let vmdk = vmdk::stream_capacity(&head);
    let input = Box::new(Prefixed {
        head: Cursor::new(head),
        rest: member,
    });
    Ok(Started {
        input,
        size: Some(size),
        from: "tar header",
        raw,
        vmdk,
        codec,
        consumed,
    })
}

/// A member whose first bytes were read ahead to recognise it.
struct Prefixed {
    head: Cursor<Vec<u8>>,
    rest: Member,
}

impl Read for Prefixed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.head.read(buf)? {
            0 => self.rest.read(buf),
            n => Ok(n),
        }
    }
}

impl ImageInput for Prefixed {
    fn finish(&mut self, read: u64) -> Result<()> {
        self.rest.finish(read)
    }
}

/// Refuses a declared size past the bound before anything is written.
fn check_bound(started: &Started, opts: &UnpackOptions) -> Result<()> {
    let limit = opts.limit();
    if let Some(capacity) = started.vmdk.filter(|&c| c > limit) {
        let what = format!("its stream VMDK header declares a capacity of {capacity} bytes");
        return Err(UnpackError::TooLarge { limit, what }.into());
    }
    match started.size {
        Some(size) if size > limit => Err(UnpackError::TooLarge {
            limit,
            what: format!("its {} declares {size} bytes", started.from),
        }
        .into()),
        _ => Ok(()),
    }
}

/// True when `head` carries none of the magics of the formats that need random access
/// (qcow2, QED, VMDK sparse or descriptor, VHD dynamic, VHDX, VDI, LUKS): those are
/// unpacked into the cache and opened (or refused) by the engine's probe there.
fn is_raw(head: &[u8]) -> bool {
    const MAGICS: [&[u8]; 8] = [
        b"QFI\xfb",
        b"QED\0",
        b"KDMV",
        b"COWD",
        b"# Disk DescriptorFile",
        VHD_COOKIE,
        b"vhdxfile",
        b"LUKS\xba\xbe",
    ];
    // VDI: the signature 0xbeda107f at offset 0x40.
    let vdi = head.get(0x40..0x44) == Some(&[0x7f, 0x10, 0xda, 0xbe]);
    !vdi && !MAGICS.iter().any(|m| head.starts_with(m))
}

/// Opens the raw image in compressed `path` as a stream.
///
/// # Errors
/// As [`start`]; an image that is not raw or whose size is not declared (it needs
/// [`super::prepare`]).
pub(super) fn open(path: &Path, codec: Codec, opts: &UnpackOptions) -> Result<Box<dyn DiskReader>> {
    let started = start(path, codec, opts)?;
    if started.vmdk.is_some() {
        return open_vmdk(started);
    }
    let Some(size) = started.size.filter(|_| started.raw) else {
        return Err(Error::unsupported(format!(
            "this {codec} image must be unpacked into the cache first (it is not raw, or its size is not declared)"
        )));
    };
    Ok(Box::new(StreamReader {
        input: started.input,
        codec,
        consumed: started.consumed,
        from: started.from,
        size,
        done: 0,
        buf: Vec::new(),
        finished: false,
    }))
}

/// The stream VMDK in `started`, read front to back; errors name the compressed offset.
fn open_vmdk(started: Started) -> Result<Box<dyn DiskReader>> {
    let (codec, consumed) = (started.codec, started.consumed.clone());
    let input = VmdkInput {
        input: started.input,
    };
    let wrap = |e| in_vmdk(codec, &consumed, e);
    let inner = vmdk::open_sequential(Box::new(input)).map_err(wrap)?;
    Ok(Box::new(VmdkStream {
        inner,
        codec,
        consumed,
    }))
}

/// `e`, from reading a stream VMDK, with the compressed offset the decoder had reached.
fn in_vmdk(codec: Codec, consumed: &Consumed, e: Error) -> Error {
    let kind = e.kind();
    let compressed = consumed.get();
    let e = UnpackError::InVmdk {
        codec,
        compressed,
        source: Box::new(e),
    };
    Error::new(kind, e)
}

/// The decoded image as the VMDK reader's input: only zeros may follow the end-of-stream
/// marker, at most [`VMDK_TRAILING_ZEROS`], then the input's own end checks run.
struct VmdkInput {
    input: Box<dyn ImageInput>,
}

impl Read for VmdkInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl StreamInput for VmdkInput {
    fn finish(&mut self, read: u64) -> Result<()> {
        let mut tail = vec![0u8; VMDK_TRAILING_ZEROS + 1];
        let n = read_full(&mut self.input, &mut tail).map_err(Error::io)?;
        if n > VMDK_TRAILING_ZEROS || !is_zero(&tail[..n]) {
            return Err(UnpackError::AfterVmdk { offset: read }.into());
        }
        self.input.finish(read + n as u64)
    }
}

/// A stream VMDK read from its decoder.
struct VmdkStream {
    inner: Box<dyn DiskReader>,
    codec: Codec,
    consumed: Consumed,
}

impl DiskReader for VmdkStream {
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        let (codec, consumed) = (self.codec, &self.consumed);
        self.inner
            .next_extent()
            .map_err(|e| in_vmdk(codec, consumed, e))
    }

    fn info(&self) -> ImageInfo {
        self.inner.info().detail("compression", self.codec)
    }
}

/// The raw image's extents, read from the decoder in chunks of [`MAX_EXTENT_BYTES`].
struct StreamReader {
    input: Box<dyn ImageInput>,
    codec: Codec,
    consumed: Consumed,
    from: &'static str,
    size: u64,
    done: u64,
    buf: Vec<u8>,
    finished: bool,
}

impl StreamReader {
    /// Fills `buf` with the next chunk; checks the end of the stream after the last one.
    fn fill(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>> {
        let left = self.size - self.done;
        if left == 0 {
            if !self.finished {
                self.finished = true;
                self.input.finish(self.done)?;
            }
            return Ok(None);
        }
        let want = usize::try_from(left).map_or(MAX_EXTENT_BYTES, |l| l.min(MAX_EXTENT_BYTES));
        buf.resize(want, 0);
        let n = read_full(&mut self.input, buf)
            .map_err(|e| codec::corrupt(self.codec, &self.consumed, self.done, e))?;
        if n < want {
            return Err(UnpackError::Truncated {
                codec: self.codec,
                uncompressed: self.done + n as u64,
                compressed: self.consumed.get(),
                declared: self.size,
                from: self.from,
            }
            .into());
        }
        if left == n as u64 && buf.len() >= 512 && buf[buf.len() - 512..].starts_with(VHD_COOKIE) {
            return Err(UnpackError::FixedVhd.into());
        }
        self.done += n as u64;
        Ok(Some(n))
    }
}

impl DiskReader for StreamReader {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        let mut buf = std::mem::take(&mut self.buf);
        let got = self.fill(&mut buf);
        self.buf = buf;
        let Some(n) = got? else {
            return Ok(None);
        };
        let data = &self.buf[..n];
        Ok(Some(if is_zero(data) {
            Extent::Zero(n as u64)
        } else {
            Extent::Data(data)
        }))
    }

    fn next_owned_extent(&mut self, spare: &mut Vec<u8>) -> Result<Option<OwnedExtent>> {
        let mut buf = std::mem::take(spare);
        let Some(n) = self.fill(&mut buf)? else {
            *spare = buf;
            return Ok(None);
        };
        if is_zero(&buf[..n]) {
            *spare = buf;
            return Ok(Some(OwnedExtent::Zero(n as u64)));
        }
        Ok(Some(OwnedExtent::Data(buf)))
    }

    fn info(&self) -> ImageInfo {
        ImageInfo::new(DiskFormat::Raw, self.size).detail("compression", self.codec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    fn gzip_file(data: &[u8]) -> tempfile::NamedTempFile {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        tmp.write_all(&gz.finish().unwrap()).unwrap();
        tmp
    }

    #[test]
    fn a_raw_gzip_streams_with_zero_chunks_as_holes() {
        let mut data = vec![0u8; MAX_EXTENT_BYTES];
        data.extend_from_slice(b"hello");
        let tmp = gzip_file(&data);
        let mut reader = open(tmp.path(), Codec::Gzip, &UnpackOptions::default()).unwrap();
        let first = reader.next_extent().unwrap().map(|e| e.len());
        let second = reader
            .next_extent()
            .unwrap()
            .map(|e| e == Extent::Data(b"hello"));
        assert_eq!((first, second), (Some(MAX_EXTENT_BYTES as u64), Some(true)));
    }

    #[test]
    fn a_declared_size_past_max_size_is_refused_before_reading() {
        let tmp = gzip_file(&[1u8; 4096]);
        let opts = UnpackOptions {
            max_size: Some(1024),
            ..UnpackOptions::default()
        };
        let err = open(tmp.path(), Codec::Gzip, &opts).err().unwrap();
        assert!(err.to_string().contains("more than 1024 bytes"), "{err}");
    }

    #[test]
    fn a_gzip_trailer_that_lies_is_refused() {
        let tmp = gzip_file(&[1u8; 4096]);
        let mut bytes = std::fs::read(tmp.path()).unwrap();
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&8192u32.to_le_bytes());
        std::fs::write(tmp.path(), &bytes).unwrap();
        // The whole stream fits the bytes read ahead to recognise the image.
        let err = open(tmp.path(), Codec::Gzip, &UnpackOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("gzip data is corrupt"), "{err}");
    }

    #[test]
    fn a_qcow2_head_is_not_raw() {
        assert!(!is_raw(b"QFI\xfb\0\0\0\x03"));
    }

    #[test]
    fn a_vdi_head_is_not_raw() {
        let mut head = vec![0u8; 0x48];
        head[0x40..0x44].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        assert!(!is_raw(&head));
    }

    #[test]
    fn a_boot_sector_is_raw() {
        assert!(is_raw(&[0xeb, 0x63, 0x90, 0, 0]));
    }
}
