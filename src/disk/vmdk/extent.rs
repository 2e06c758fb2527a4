//! Reading one hosted sparse extent: header (and footer for `GD_AT_END`), grain directory,
//! grain tables loaded one at a time, plain or zlib-compressed grains (these read ahead
//! within one grain table and inflated in parallel, see `grains`).
//!
//! Everything a table points at is checked against the file before it is read; the grain
//! directory is checked once when the extent is opened (every table inside the file, none
//! overlapping another, the header or the directory). RAM: the grain directory (at most
//! 16 MiB), one grain table, one plain grain, and for compressed extents one batch of
//! inflated grains and their compressed bytes (each about 4 MiB, at least one grain).

use std::path::PathBuf;

use super::error::VmdkError;
use super::grains::{GrainQueue, Next};
use super::header::{
    Marker, SparseHeader, VMDK_FLAG_ZERO_GRAIN, VMDK_GD_AT_END, VMDK_GTES_PER_GT, VMDK_MARKER_EOS,
    VMDK_MARKER_FOOTER, VMDK_SECTOR,
};
use crate::disk::Extent;
use crate::error::{Error, Result};
use crate::io::table::{self, TableAt};
use crate::io::{ReadAt, Source, read_exact_at};

/// Most grain directory entries kiln loads (16 MiB of directory).
const VMDK_MAX_GD_ENTRIES: u64 = 4 << 20;
/// Bytes of one grain table.
const VMDK_GT_BYTES: u64 = VMDK_GT_BYTES_USIZE as u64;
/// [`VMDK_GT_BYTES`] as a buffer length.
const VMDK_GT_BYTES_USIZE: usize = 2048;

/// Where the grain directory came from, for `kiln info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GdSource {
    Header,
    Footer,
}

/// A validated sparse extent, walked grain by grain.
pub(super) struct SparseExtent {
    /// The extent's own file when a descriptor named it; `None` for the image itself,
    /// which the caller names.
    pub path: Option<PathBuf>,
    pub header: SparseHeader,
    pub gd_source: GdSource,
    src: Source,
    file_len: u64,
    grain_bytes: u64,
    /// Bytes of the virtual disk this extent supplies (≤ its capacity).
    len: u64,
    pos: u64,
    gd: Vec<u32>,
    gt: Vec<u32>,
    gt_loaded: Option<usize>,
    /// The last plain grain read.
    buf: Vec<u8>,
    /// Compressed grains read ahead and inflated.
    queue: GrainQueue,
}

impl SparseExtent {
    /// Opens the extent in `src`, whose header is `header`; it supplies `len` bytes.
    pub fn open(
        path: Option<PathBuf>,
        src: Source,
        header: SparseHeader,
        len: u64,
    ) -> Result<Self> {
        let file_len = src.len();
        let (header_gd, gd_source) = match header.gd_offset {
            VMDK_GD_AT_END => (
                read_footer(&*src, file_len, &header)?.gd_offset,
                GdSource::Footer,
            ),
            gd => (gd, GdSource::Header),
        };
        let gd = read_gd(&*src, file_len, &header, header_gd)?;
        let grain_bytes = header.grain_sectors * VMDK_SECTOR;
        Ok(Self {
            path,
            header,
            gd_source,
            src,
            file_len,
            grain_bytes,
            len,
            pos: 0,
            gd,
            gt: vec![0; VMDK_GTES_PER_GT as usize],
            gt_loaded: None,
            buf: Vec::new(),
            queue: GrainQueue::new(usize::try_from(grain_bytes).expect("at most 4 MiB")),
        })
    }

    pub fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    /// The next run; the caller checks `remaining() > 0` first.
    pub fn next_extent(&mut self) -> Result<Extent<'_>> {
        let grain = self.pos / self.grain_bytes;
        let per_gt = u64::from(VMDK_GTES_PER_GT);
        let gd_index = usize::try_from(grain / per_gt).expect("GD index is in memory");
        let slot = usize::try_from(grain % per_gt).expect("below 512");
        if self.gd[gd_index] == 0 {
            return Ok(self.skip(per_gt - grain % per_gt, false));
        }
        self.load_gt(gd_index)?;
        let entry = self.gt[slot];
        if entry == 0 || (entry == 1 && self.header.flags & VMDK_FLAG_ZERO_GRAIN != 0) {
            let run = self.gt[slot..].iter().take_while(|&&e| e == entry).count() as u64;
            return Ok(self.skip(run, entry == 1));
        }
        let want =
            usize::try_from(self.grain_bytes.min(self.remaining())).expect("at most one grain");
        if self.header.compressed() {
            return self.next_compressed(grain, slot, want);
        }
        self.read_plain(u64::from(entry) * VMDK_SECTOR, want)?;
        self.pos += want as u64;
        Ok(Extent::Data(&self.buf[..want]))
    }

    /// Hands out compressed grain `grain` (table slot `slot`) from the queue, filling the
    /// queue first when it does not hold it.
    fn next_compressed(&mut self, grain: u64, slot: usize, want: usize) -> Result<Extent<'_>> {
        if !self.queue.has(grain) {
            self.fill_queue(grain, slot)?;
        }
        match self.queue.take() {
            Ok(bytes) => {
                self.pos += want as u64;
                Ok(Extent::Data(bytes))
            }
            Err((offset, reason)) => {
                let e = VmdkError::BadCompressedGrain { offset, reason };
                Err(match &self.path {
                    Some(path) => e.at(path),
                    None => e.into(),
                })
            }
        }
    }

    /// Reads the allocated grains of the loaded table from `grain` (at `slot`) on, up to
    /// the queue's bound, and inflates them. A grain whose marker or data cannot be read
    /// ends the batch early; its error is reported when the reader reaches it.
    fn fill_queue(&mut self, grain: u64, slot: usize) -> Result<()> {
        let first = grain - slot as u64;
        let zero_flag = self.header.flags & VMDK_FLAG_ZERO_GRAIN != 0;
        // The queue is taken out while the closure reads through `self` (a placeholder
        // allocates nothing).
        let mut queue = std::mem::replace(&mut self.queue, GrainQueue::new(1));
        let this = &*self;
        // Table slots of the grains to queue, in disk order.
        let mut slots = (slot..this.gt.len())
            .take_while(|&s| (first + s as u64) * this.grain_bytes < this.len)
            .filter(|&s| !(this.gt[s] == 0 || (this.gt[s] == 1 && zero_flag)));
        let filled = queue.fill(|i, buf| {
            let Some(s) = slots.next() else {
                return Ok(Next::Stop);
            };
            let g = first + s as u64;
            let offset = u64::from(this.gt[s]) * VMDK_SECTOR;
            match this.read_grain(g, offset, buf) {
                Ok(()) => {
                    let want = this.grain_bytes.min(this.len - g * this.grain_bytes);
                    let want = usize::try_from(want).expect("at most one grain");
                    Ok(Next::Grain(g, offset, want))
                }
                Err(e) if i == 0 => Err(e),
                Err(_) => Ok(Next::Stop),
            }
        });
        self.queue = queue;
        filled
    }

    /// Checks the marker of grain `grain` at `offset` and reads its compressed bytes into
    /// `buf`.
    fn read_grain(&self, grain: u64, offset: u64, buf: &mut Vec<u8>) -> Result<()> {
        let size = self.read_marker(offset, grain * self.header.grain_sectors)?;
        buf.resize(
            usize::try_from(size).expect("bounded by the marker check"),
            0,
        );
        read_exact_at(&*self.src, buf, offset + 12, "compressed grain")
    }

    /// Advances over `grains` grains that hold no data.
    fn skip(&mut self, grains: u64, zero: bool) -> Extent<'static> {
        let n = (grains * self.grain_bytes).min(self.remaining());
        self.pos += n;
        if zero {
            Extent::Zero(n)
        } else {
            Extent::Unallocated(n)
        }
    }

    fn load_gt(&mut self, gd_index: usize) -> Result<()> {
        if self.gt_loaded == Some(gd_index) {
            return Ok(());
        }
        let offset = u64::from(self.gd[gd_index]) * VMDK_SECTOR;
        let mut bytes = [0u8; VMDK_GT_BYTES_USIZE];
        read_exact_at(&*self.src, &mut bytes, offset, "grain table")?;
        for (e, b) in self.gt.iter_mut().zip(bytes.chunks_exact(4)) {
            *e = u32::from_le_bytes(b.try_into().expect("4 bytes"));
        }
        self.gt_loaded = Some(gd_index);
        Ok(())
    }

    fn read_plain(&mut self, offset: u64, want: usize) -> Result<()> {
        self.check_inside("grain", offset, want as u64)?;
        self.buf.resize(want, 0);
        read_exact_at(&*self.src, &mut self.buf, offset, "grain")
    }

    /// Reads and checks the grain marker at `offset`, which must name sector `lba`, and
    /// returns the size of the compressed data that follows it (inside the file).
    fn read_marker(&self, offset: u64, lba: u64) -> Result<u32> {
        self.check_inside("grain marker", offset, 12)?;
        let mut head = [0u8; 16];
        let n = (self.file_len - offset).min(16);
        read_exact_at(
            &*self.src,
            &mut head[..usize::try_from(n).expect("≤ 16")],
            offset,
            "grain marker",
        )?;
        let marker = Marker::parse(&head);
        // A grain's compressed data can't reasonably be larger than the grain itself plus
        // deflate's stored-block overhead.
        let max = self.grain_bytes + self.grain_bytes / 8 + 1024;
        if marker.size == 0 || u64::from(marker.size) > max {
            let m = VmdkError::BadMarker {
                what: "grain marker",
                offset,
                val: marker.val,
                size: marker.size,
                kind: marker.kind,
            };
            return Err(self.err(m));
        }
        if marker.val != lba {
            return Err(self.err(VmdkError::WrongGrainLba {
                offset,
                found: marker.val,
                expected: lba,
            }));
        }
        self.check_inside("compressed grain", offset + 12, marker.size.into())?;
        Ok(marker.size)
    }

    fn check_inside(&self, what: &'static str, offset: u64, len: u64) -> Result<()> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.file_len)
        {
            return Err(self.err(VmdkError::PastEnd {
                what,
                offset,
                len,
                file_len: self.file_len,
            }));
        }
        Ok(())
    }

    fn err(&self, e: VmdkError) -> Error {
        match &self.path {
            Some(path) => e.at(path),
            None => e.into(),
        }
    }
}

/// Reads the footer of a `GD_AT_END` stream: footer marker, footer header, end-of-stream
/// marker as the last three sectors; the footer must agree with the header.
fn read_footer(
    file: &dyn ReadAt,
    file_len: u64,
    header: &SparseHeader,
) -> Result<SparseHeader, VmdkError> {
    if !file_len.is_multiple_of(VMDK_SECTOR) {
        return Err(VmdkError::TruncatedStream { file_len });
    }
    if file_len < 3 * VMDK_SECTOR {
        return Err(VmdkError::PastEnd {
            what: "stream footer",
            offset: 0,
            len: 1536,
            file_len,
        });
    }
    let at = file_len - 3 * VMDK_SECTOR;
    let mut tail = [0u8; 1536];
    read_exact_at(file, &mut tail, at, "stream footer").map_err(|_| VmdkError::PastEnd {
        what: "stream footer",
        offset: at,
        len: 1536,
        file_len,
    })?;
    let marker =
        |i: usize| Marker::parse(tail[i * 512..i * 512 + 16].try_into().expect("16 bytes"));
    let (m, eos) = (marker(0), marker(2));
    if m.size != 0 || m.kind != VMDK_MARKER_FOOTER {
        return Err(VmdkError::BadMarker {
            what: "footer marker",
            offset: at,
            val: m.val,
            size: m.size,
            kind: m.kind,
        });
    }
    if eos
        != (Marker {
            val: 0,
            size: 0,
            kind: VMDK_MARKER_EOS,
        })
    {
        let offset = at + 1024;
        return Err(VmdkError::BadMarker {
            what: "end-of-stream marker",
            offset,
            val: eos.val,
            size: eos.size,
            kind: eos.kind,
        });
    }
    let footer = SparseHeader::parse(tail[512..1024].try_into().expect("512 bytes"), at + 512)?;
    let bad = |field, value: u64, allowed| VmdkError::BadHeaderField {
        offset: at + 512,
        field,
        value,
        allowed,
    };
    if footer.gd_offset == VMDK_GD_AT_END || footer.gd_offset == 0 {
        return Err(bad(
            "gdOffset",
            footer.gd_offset,
            "the footer must give the grain directory's sector",
        ));
    }
    if (footer.capacity, footer.grain_sectors, footer.flags)
        != (header.capacity, header.grain_sectors, header.flags)
    {
        return Err(bad(
            "capacity",
            footer.capacity,
            "footer capacity, grainSize and flags must equal the header's",
        ));
    }
    Ok(footer)
}

/// Loads and checks the grain directory at sector `gd_sector`.
fn read_gd(
    file: &dyn ReadAt,
    file_len: u64,
    header: &SparseHeader,
    gd_sector: u64,
) -> Result<Vec<u32>> {
    let entries = header.gd_entries();
    if entries > VMDK_MAX_GD_ENTRIES {
        let e = VmdkError::BadHeaderField {
            offset: 0,
            field: "capacity",
            value: header.capacity,
            allowed: "its grain directory would exceed 16 MiB",
        };
        return Err(e.into());
    }
    if gd_sector == 0 {
        let e = VmdkError::BadHeaderField {
            offset: 0,
            field: "gdOffset",
            value: 0,
            allowed: "a grain directory is required",
        };
        return Err(e.into());
    }
    let gd_len = entries * 4;
    let gd_offset = gd_sector
        .checked_mul(VMDK_SECTOR)
        .filter(|o| o.checked_add(gd_len).is_some_and(|e| e <= file_len));
    let Some(gd_offset) = gd_offset else {
        return Err(VmdkError::PastEnd {
            what: "grain directory",
            offset: gd_sector.saturating_mul(VMDK_SECTOR),
            len: gd_len,
            file_len,
        }
        .into());
    };
    let at = TableAt {
        what: "grain directory",
        offset: gd_offset,
        entries,
        max_bytes: VMDK_MAX_GD_ENTRIES * 4,
    };
    let gd = table::load(file, at, u32::from_le_bytes)?;
    check_tables(&gd, gd_offset, gd_len, file_len)?;
    Ok(gd)
}

/// Every grain table must lie inside the file and overlap neither the header, the
/// directory nor another table: aliasing tables are how hostile images loop.
fn check_tables(gd: &[u32], gd_offset: u64, gd_len: u64, file_len: u64) -> Result<(), VmdkError> {
    let mut seen: Vec<(u64, usize)> = Vec::new();
    for (index, &entry) in gd.iter().enumerate() {
        if entry == 0 {
            continue;
        }
        let offset = u64::from(entry) * VMDK_SECTOR;
        if offset + VMDK_GT_BYTES > file_len {
            return Err(VmdkError::PastEnd {
                what: "grain table",
                offset,
                len: VMDK_GT_BYTES,
                file_len,
            });
        }
        if offset < VMDK_SECTOR {
            return Err(VmdkError::TableOverlap {
                index,
                offset,
                other: "the header",
            });
        }
        if offset < gd_offset + gd_len && gd_offset < offset + VMDK_GT_BYTES {
            return Err(VmdkError::TableOverlap {
                index,
                offset,
                other: "the grain directory",
            });
        }
        seen.push((offset, index));
    }
    seen.sort_unstable();
    for pair in seen.windows(2) {
        let ((a, _), (b, index)) = (pair[0], pair[1]);
        if b < a + VMDK_GT_BYTES {
            return Err(VmdkError::TableOverlap {
                index,
                offset: b,
                other: "another grain table",
            });
        }
    }
    Ok(())
}
