//! Fixed VHD: the disk's bytes, then the footer.
//!
//! The reader walks data and holes of the data area with SEEK_DATA/SEEK_HOLE; the writer
//! writes non-zero 4 KiB blocks at their offsets and leaves the rest as holes.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::footer::VhdFooter;
use super::{VhdError, footer_details};
use crate::disk::block::{Block, Blocker};
use crate::disk::{
    DiskFormat, DiskReader, DiskWriter, Extent, ImageInfo, MAX_EXTENT_BYTES, WriteReport,
};
use crate::error::Result;
use crate::io::sparse_out::{SPARSE_CHUNK, SparseOut};
use crate::io::{read_exact_at, sys};

pub(super) fn open(
    file: File,
    footer: VhdFooter,
    footer_offset: u64,
) -> Result<Box<dyn DiskReader>> {
    if footer.current_size > footer_offset {
        return Err(VhdError::DataPastFooter {
            current_size: footer.current_size,
            footer_offset,
        }
        .into());
    }
    // data_offset should be all ones; qemu and libvhdi ignore it for fixed disks, so do we.
    let virtual_size = footer.current_size;
    Ok(Box::new(FixedReader {
        file,
        footer,
        virtual_size,
        pos: 0,
        data_end: 0,
        buf: Vec::new(),
    }))
}

/// Reads the data area of a fixed VHD as data runs and holes.
struct FixedReader {
    file: File,
    footer: VhdFooter,
    virtual_size: u64,
    pos: u64,
    /// End of the data region `pos` lies in; `pos == data_end` means "find the next one".
    data_end: u64,
    buf: Vec<u8>,
}

impl FixedReader {
    /// Finds the next data region; returns the length of a hole before it, if any.
    fn seek_data(&mut self) -> Result<Option<u64>> {
        let data = sys::next_data(&self.file, self.pos)?
            .unwrap_or(self.virtual_size)
            .min(self.virtual_size);
        if data > self.pos {
            let hole = data - self.pos;
            self.pos = data;
            self.data_end = data;
            return Ok(Some(hole));
        }
        self.data_end = sys::next_hole(&self.file, self.pos)?.min(self.virtual_size);
        if self.data_end <= self.pos {
            self.data_end = self.virtual_size;
        }
        Ok(None)
    }
}

impl DiskReader for FixedReader {
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        if self.pos >= self.virtual_size {
            return Ok(None);
        }
        if self.pos == self.data_end
            && let Some(hole) = self.seek_data()?
        {
            return Ok(Some(Extent::Unallocated(hole)));
        }
        let len = (self.data_end - self.pos).min(MAX_EXTENT_BYTES as u64);
        let len = usize::try_from(len).expect("bounded by MAX_EXTENT_BYTES");
        self.buf.resize(len, 0);
        read_exact_at(&self.file, &mut self.buf, self.pos, "fixed VHD data")?;
        self.pos += len as u64;
        Ok(Some(Extent::Data(&self.buf)))
    }

    fn info(&self) -> ImageInfo {
        let mut info = ImageInfo::new(DiskFormat::Vhd, self.virtual_size);
        info.subformat = Some(self.footer.disk_type.name().to_string());
        footer_details(info, &self.footer)
    }
}

/// Writes non-zero blocks of the data area and the footer after it.
pub(super) struct FixedWriter {
    out: SparseOut,
    blocker: Blocker,
    footer: VhdFooter,
}

impl FixedWriter {
    pub(super) fn new(file: File, footer: VhdFooter) -> Self {
        Self {
            out: SparseOut::new(file),
            blocker: Blocker::new(SPARSE_CHUNK),
            footer,
        }
    }

    fn take_block(out: &mut SparseOut, block: Block<'_>) -> Result<()> {
        let Block::Data { index, bytes } = block else {
            return Ok(());
        };
        out.write(index * SPARSE_CHUNK as u64, bytes)
    }
}

impl DiskWriter for FixedWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        let out = &mut self.out;
        self.blocker.push(extent, &mut |b| Self::take_block(out, b))
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        let out = &mut self.out;
        self.blocker.finish(&mut |b| Self::take_block(out, b))?;
        self.out.flush()?;
        let size = self.footer.current_size;
        // The last block was padded to 4 KiB; cut back before the footer goes on.
        self.out.file().set_len(size)?;
        self.out
            .file()
            .write_all_at(&self.footer.to_bytes(), size)?;
        Ok(WriteReport { virtual_size: size })
    }
}
