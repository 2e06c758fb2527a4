//! Reading a streamOptimized VMDK front to back from a `Read` (a decompressor), with no
//! random access: the way the spec's "Stream-Optimized Compressed Sparse Extents" lets a
//! stream be consumed. The header gives the capacity; the grain markers (LBA and
//! compressed size) say where each grain goes; the metadata markers (grain table, grain
//! directory, footer) are skipped, each within its bound; the end-of-stream marker ends it.
//!
//! The markers are authoritative here, the tables are not read: for the images every known
//! writer makes (qemu-img, VMware, open-vmdk, VirtualBox, kiln) the two agree and the disk
//! is the same as the random-access reader's. Grains must come in ascending LBA order, as
//! those writers put them: a gap before a grain is reported as unallocated when the grain
//! arrives, so a grain for an earlier LBA can no longer be placed. Such a stream is legal
//! but cannot be streamed; it is refused with an error saying so (nothing tells it apart
//! up front: the tables that would show the order come after the grains, or in front but
//! only in layouts whose grains are in order anyway).
//!
//! Bounds: the capacity is checked by the caller before the first grain; a grain must be
//! aligned, inside the capacity, after the previous one and at most a grain plus deflate's
//! overhead compressed; grain tables, the directory and the footer are skipped only at their
//! own sizes and counts, so the stream cannot run on past what its capacity implies. RAM:
//! one batch of grains (`grains`), about 8 MiB.

use std::io::{self, Read};

use super::descriptor::{CreateType, VMDK_MAX_DESCRIPTOR_BYTES};
use super::error::VmdkError;
use super::grains::{GrainQueue, Next};
use super::header::{
    Marker, SparseHeader, VMDK_GTES_PER_GT, VMDK_MARKER_EOS, VMDK_MARKER_FOOTER, VMDK_MARKER_GD,
    VMDK_MARKER_GT, VMDK_SECTOR,
};
use super::reader::read_embedded_descriptor;
use crate::disk::{DiskFormat, DiskReader, Extent, ImageInfo};
use crate::error::{Error, Result};

/// Sectors of one grain table behind its marker (512 entries of 4 bytes).
const VMDK_GT_SECTORS: u64 = 4;

/// The input of a sequential reader: the image's bytes, and the check to run after its
/// end-of-stream marker (nothing may follow it, a tar archive's rest is walked, ...).
pub trait StreamInput: Read + Send {
    /// Called after the end-of-stream marker, `read` bytes into the input.
    ///
    /// # Errors
    /// Data after the image, or whatever the input finds wrong at its end.
    fn finish(&mut self, read: u64) -> Result<()>;
}

/// The capacity in bytes of the streamOptimized VMDK whose first sector is `head`, when
/// it is one (a valid sparse header with compressed grains and markers); `None` otherwise.
pub fn stream_capacity(head: &[u8]) -> Option<u64> {
    let sector: &[u8; 512] = head.get(..512)?.try_into().ok()?;
    let header = SparseHeader::parse(sector, 0).ok()?;
    header
        .compressed()
        .then(|| header.capacity.checked_mul(VMDK_SECTOR))
        .flatten()
}

/// Reads the stream VMDK `input` front to back. Its header must satisfy
/// [`stream_capacity`].
///
/// # Errors
/// A header that is not a stream VMDK's, an embedded descriptor of another layout, read
/// failures.
pub fn open_sequential(input: Box<dyn StreamInput>) -> Result<Box<dyn DiskReader>> {
    let mut reader = SequentialReader::new(input)?;
    reader.skip_front()?;
    Ok(Box::new(reader))
}

/// The reader's state.
struct SequentialReader {
    input: Box<dyn StreamInput>,
    header: SparseHeader,
    grain_bytes: u64,
    size: u64,
    /// Bytes of the disk handed out.
    pos: u64,
    /// Bytes read from the input.
    at: u64,
    /// The first LBA the next grain may have.
    next_lba: u64,
    /// Grain tables and directories skipped so far, bounded by the directory's length.
    tables: u64,
    eos: bool,
    finished: bool,
    queue: GrainQueue,
    info: ImageInfo,
}

impl SequentialReader {
    fn new(mut input: Box<dyn StreamInput>) -> Result<Self> {
        let mut head = [0u8; 512];
        read_exact(&mut *input, &mut head, 0, "sparse header")?;
        let header = SparseHeader::parse(&head, 0)?;
        let size = stream_capacity(&head).ok_or(VmdkError::BadHeaderField {
            offset: 0,
            field: "flags",
            value: header.flags.into(),
            allowed: "a VMDK read as a stream must be streamOptimized (compressed grains)",
        })?;
        let grain_bytes = header.grain_sectors * VMDK_SECTOR;
        let info = ImageInfo::new(DiskFormat::Vmdk, size)
            .detail("createType", CreateType::StreamOptimized.name())
            .detail("grain size", grain_bytes)
            .detail("read", "front to back");
        let mut info = info;
        info.subformat = Some(CreateType::StreamOptimized.name().to_string());
        Ok(Self {
            input,
            header,
            grain_bytes,
            size,
            pos: 0,
            at: 512,
            next_lba: 0,
            tables: 0,
            eos: false,
            finished: false,
            queue: GrainQueue::new(usize::try_from(grain_bytes).expect("at most 4 MiB")),
            info,
        })
    }

    /// Most bytes the header, descriptor, directories and tables in front may take:
    /// qemu-img puts all of them there, rounded up to a grain.
    fn front_bound(&self) -> u64 {
        let gd = self.header.gd_entries();
        let tables = gd * 4 + gd * VMDK_GTES_PER_GT as u64 * 4;
        (VMDK_SECTOR + VMDK_MAX_DESCRIPTOR_BYTES + 2 * (tables + VMDK_SECTOR))
            .next_multiple_of(self.grain_bytes)
            + self.grain_bytes
    }

    /// Checks the embedded descriptor, then reads up to `overHead`, where the grains start.
    fn skip_front(&mut self) -> Result<()> {
        let front = self.header.overhead.saturating_mul(VMDK_SECTOR);
        if front < VMDK_SECTOR || front > self.front_bound() {
            return Err(VmdkError::BadHeaderField {
                offset: 0,
                field: "overHead",
                value: self.header.overhead,
                allowed: "the grains of a stream must start after the header and within the metadata its capacity needs",
            }
            .into());
        }
        let descriptor = self.header.descriptor_sectors.saturating_mul(VMDK_SECTOR);
        let want = (VMDK_SECTOR + descriptor.min(VMDK_MAX_DESCRIPTOR_BYTES)).min(front);
        let mut bytes = vec![0u8; usize::try_from(want).expect("at most 1 MiB")];
        read_exact(
            &mut *self.input,
            &mut bytes[512..],
            512,
            "embedded descriptor",
        )?;
        self.at = want;
        if want == VMDK_SECTOR + descriptor.min(VMDK_MAX_DESCRIPTOR_BYTES) {
            read_embedded_descriptor(&bytes, &self.header)?;
        }
        self.skip(front - want, "metadata in front of the grains")
    }

    /// Reads and drops `len` bytes.
    fn skip(&mut self, len: u64, what: &'static str) -> Result<()> {
        let mut scratch = [0u8; 4096];
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left.min(4096)).expect("at most 4096");
            read_exact(&mut *self.input, &mut scratch[..n], self.at, what)?;
            self.at += n as u64;
            left -= n as u64;
        }
        Ok(())
    }

    /// Reads markers up to the next grain (its compressed bytes into `buf`) or the end.
    fn next_grain(&mut self, buf: &mut Vec<u8>) -> Result<Next> {
        loop {
            let offset = self.at;
            let mut head = [0u8; 16];
            read_exact(&mut *self.input, &mut head[..12], offset, "marker")?;
            self.at += 12;
            let marker = Marker::parse(&head);
            if marker.size != 0 {
                return self.read_grain(offset, marker, buf);
            }
            read_exact(&mut *self.input, &mut head[12..], offset + 12, "marker")?;
            self.at += 4;
            let marker = Marker::parse(&head);
            self.skip(VMDK_SECTOR - 16, "marker")?;
            if marker.kind == VMDK_MARKER_EOS && marker.val == 0 {
                self.eos = true;
                return Ok(Next::Stop);
            }
            self.skip_metadata(offset, marker)?;
        }
    }

    /// Skips the grain table, directory or footer behind `marker`, within its bound.
    fn skip_metadata(&mut self, offset: u64, marker: Marker) -> Result<()> {
        let gd_sectors = (self.header.gd_entries() * 4).div_ceil(VMDK_SECTOR);
        let (what, fits) = match marker.kind {
            VMDK_MARKER_GT => ("grain table marker", marker.val == VMDK_GT_SECTORS),
            VMDK_MARKER_GD => (
                "grain directory marker",
                (1..=gd_sectors).contains(&marker.val),
            ),
            VMDK_MARKER_FOOTER => ("footer marker", marker.val == 1),
            _ => ("marker", false),
        };
        // One table per directory entry and one directory (plus a redundant one): a
        // stream cannot repeat metadata without end.
        self.tables += 1;
        if !fits || self.tables > self.header.gd_entries() + 2 {
            return Err(VmdkError::BadMarker {
                what,
                offset,
                val: marker.val,
                size: marker.size,
                kind: marker.kind,
            }
            .into());
        }
        if marker.kind != VMDK_MARKER_FOOTER {
            return self.skip(marker.val * VMDK_SECTOR, what);
        }
        let mut footer = [0u8; 512];
        read_exact(&mut *self.input, &mut footer, self.at, "stream footer")?;
        let parsed = SparseHeader::parse(&footer, self.at)?;
        if (parsed.capacity, parsed.grain_sectors, parsed.flags)
            != (
                self.header.capacity,
                self.header.grain_sectors,
                self.header.flags,
            )
        {
            return Err(VmdkError::BadHeaderField {
                offset: self.at,
                field: "capacity",
                value: parsed.capacity,
                allowed: "footer capacity, grainSize and flags must equal the header's",
            }
            .into());
        }
        self.at += VMDK_SECTOR;
        Ok(())
    }

    /// Checks the grain marker at `offset` and reads the grain's compressed bytes.
    fn read_grain(&mut self, offset: u64, marker: Marker, buf: &mut Vec<u8>) -> Result<Next> {
        let sectors = self.header.grain_sectors;
        let max = self.grain_bytes + self.grain_bytes / 8 + 1024;
        let lba = marker.val;
        if u64::from(marker.size) > max
            || !lba.is_multiple_of(sectors)
            || lba >= self.header.capacity
        {
            return Err(VmdkError::BadMarker {
                what: "grain marker",
                offset,
                val: lba,
                size: marker.size,
                kind: 0,
            }
            .into());
        }
        if lba < self.next_lba {
            let previous = self.next_lba - sectors;
            return Err(VmdkError::GrainOutOfOrder {
                offset,
                lba,
                previous,
            }
            .into());
        }
        self.next_lba = lba + sectors;
        let size = usize::try_from(marker.size).expect("bounded above");
        buf.resize(size, 0);
        read_exact(&mut *self.input, buf, self.at, "compressed grain")?;
        self.at += size as u64;
        let pad = (12 + size as u64).next_multiple_of(VMDK_SECTOR) - 12 - size as u64;
        self.skip(pad, "compressed grain")?;
        let grain = lba / sectors;
        let want = self.grain_bytes.min(self.size - lba * VMDK_SECTOR);
        let want = usize::try_from(want).expect("at most one grain");
        Ok(Next::Grain(grain, offset, want))
    }

    /// Reads the next batch of grains and inflates it.
    fn fill(&mut self) -> Result<()> {
        let mut queue = std::mem::replace(&mut self.queue, GrainQueue::new(1));
        let filled = queue.fill(|_, buf| {
            if self.eos {
                return Ok(Next::Stop);
            }
            self.next_grain(buf)
        });
        self.queue = queue;
        filled
    }

    /// After the end-of-stream marker: the input must end there.
    fn finish(&mut self) -> Result<()> {
        if !self.finished {
            self.finished = true;
            self.input.finish(self.at)?;
        }
        Ok(())
    }
}

impl DiskReader for SequentialReader {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        if self.queue.next_grain().is_none() && !self.eos {
            self.fill()?;
        }
        let start = self
            .queue
            .next_grain()
            .map_or(self.size, |g| g * self.grain_bytes);
        if start > self.pos {
            let gap = start - self.pos;
            self.pos = start;
            return Ok(Some(Extent::Unallocated(gap)));
        }
        if self.queue.next_grain().is_none() {
            self.finish()?;
            return Ok(None);
        }
        match self.queue.take() {
            Ok(bytes) => {
                self.pos += bytes.len() as u64;
                Ok(Some(Extent::Data(bytes)))
            }
            Err((offset, reason)) => Err(VmdkError::BadCompressedGrain { offset, reason }.into()),
        }
    }

    fn info(&self) -> ImageInfo {
        self.info.clone()
    }
}

/// Fills `buf` from `input` at uncompressed byte `offset`; an early end is a truncated
/// stream, naming what was being read.
fn read_exact(input: &mut dyn Read, buf: &mut [u8], offset: u64, what: &'static str) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => {
                let at = offset + got as u64;
                return Err(VmdkError::StreamEnds { offset: at, what }.into());
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                let at = offset + got as u64;
                return Err(Error::from(VmdkError::StreamRead { offset: at, source }));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "sequential_tests.rs"]
mod tests;
