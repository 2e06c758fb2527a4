//! Raw images: the disk's bytes as they are.
//!
//! The reader walks data and holes with SEEK_DATA/SEEK_HOLE, so a 1 TiB sparse file costs a
//! few system calls; holes become [`Extent::Unallocated`]. The writer never writes zeros:
//! all-zero 4 KiB pieces stay holes (`io::sparse_out`), and the file is extended to the
//! virtual size at the end. It keeps only SparseOut's 1 MiB coalescing buffer in RAM.

use super::{
    CreateRequest, DiskFormat, DiskReader, DiskWriter, Extent, ImageInfo, MAX_EXTENT_BYTES,
    OwnedExtent, WriteReport,
};
use crate::error::Result;
use crate::io::output::OutputSet;
use crate::io::sparse_out::SparseOut;
use crate::io::{Source, read_exact_at};

/// Raw images take no `-o` options.
pub(super) const OPTION_KEYS: &[&str] = &[];

pub(super) fn open(src: Source) -> Result<Box<dyn DiskReader>> {
    let virtual_size = src.len();
    Ok(Box::new(RawReader {
        src,
        virtual_size,
        pos: 0,
        data_end: 0,
        buf: Vec::new(),
    }))
}

/// Reads a raw file as data runs and holes.
struct RawReader {
    src: Source,
    virtual_size: u64,
    pos: u64,
    /// End of the data region `pos` lies in; `pos == data_end` means "find the next one".
    data_end: u64,
    buf: Vec<u8>,
}

impl DiskReader for RawReader {
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        let mut buf = std::mem::take(&mut self.buf);
        let next = self.next_into(&mut buf);
        self.buf = buf;
        Ok(match next? {
            None => None,
            Some(RawRun::Data) => Some(Extent::Data(&self.buf)),
            Some(RawRun::Hole(len)) => Some(Extent::Unallocated(len)),
        })
    }

    fn next_owned_extent(&mut self, spare: &mut Vec<u8>) -> Result<Option<OwnedExtent>> {
        Ok(match self.next_into(spare)? {
            None => None,
            Some(RawRun::Data) => Some(OwnedExtent::Data(std::mem::take(spare))),
            Some(RawRun::Hole(len)) => Some(OwnedExtent::Unallocated(len)),
        })
    }

    fn info(&self) -> ImageInfo {
        ImageInfo::new(DiskFormat::Raw, self.virtual_size)
    }
}

/// One run of a raw file.
enum RawRun {
    /// A hole of this many bytes.
    Hole(u64),
    /// Data, read into the caller's buffer.
    Data,
}

impl RawReader {
    /// The next run (`None` at the end); data is read into `buf`, resized to fit.
    fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<RawRun>> {
        if self.pos >= self.virtual_size {
            return Ok(None);
        }
        if self.pos == self.data_end {
            let data = self.src.next_data(self.pos)?.unwrap_or(self.virtual_size);
            let data = data.min(self.virtual_size);
            if data > self.pos {
                let hole = data - self.pos;
                self.pos = data;
                self.data_end = data;
                return Ok(Some(RawRun::Hole(hole)));
            }
            self.data_end = self.src.next_hole(self.pos)?.min(self.virtual_size);
            if self.data_end <= self.pos {
                // A file system that reports no hole: treat the rest as data.
                self.data_end = self.virtual_size;
            }
        }
        let len = (self.data_end - self.pos).min(MAX_EXTENT_BYTES as u64);
        let len = usize::try_from(len).expect("bounded by MAX_EXTENT_BYTES");
        buf.resize(len, 0);
        read_exact_at(&*self.src, buf, self.pos, "raw data")?;
        self.pos += len as u64;
        Ok(Some(RawRun::Data))
    }
}

pub(super) fn create(req: &CreateRequest<'_>, out: &mut OutputSet) -> Result<Box<dyn DiskWriter>> {
    let file = out.create_primary()?;
    Ok(Box::new(RawWriter {
        out: SparseOut::new(file),
        virtual_size: req.virtual_size,
        pos: 0,
    }))
}

/// Writes the non-zero 4 KiB pieces of each data extent at their offsets and leaves
/// everything else as holes.
struct RawWriter {
    out: SparseOut,
    virtual_size: u64,
    /// Offset of the next extent.
    pos: u64,
}

impl DiskWriter for RawWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        if let Extent::Data(bytes) = extent {
            self.out.write_sparse(self.pos, bytes)?;
        }
        self.pos += extent.len();
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        self.out.flush()?;
        // Extends the file over a trailing hole.
        self.out.file().set_len(self.virtual_size)?;
        Ok(WriteReport::new(self.virtual_size))
    }
}
