//! monolithicFlat: a text descriptor plus `<stem>-flat.vmdk`, the disk's bytes as they are.
//!
//! The writer leaves all-zero 64 KiB blocks as holes and sets the extent's length at the
//! end (RAM: one write buffer of at most 4 MiB). The reader of FLAT extents walks data and
//! holes with SEEK_DATA/SEEK_HOLE like the raw reader.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::header::VMDK_SECTOR;
use super::{VMDK_WRITE_GRAIN_SECTORS, WriteOptions};
use crate::disk::block::{Block, Blocker};
use crate::disk::{CreateRequest, DiskWriter, Extent, MAX_EXTENT_BYTES, WriteReport};
use crate::error::Result;
use crate::io::output::OutputSet;
use crate::io::sparse_out::SparseOut;
use crate::io::{Source, read_exact_at};

/// Writes a descriptor and its flat extent.
pub(super) struct FlatWriter {
    descriptor_file: File,
    descriptor: String,
    flat: SparseOut,
    len: u64,
    blocker: Blocker,
}

impl FlatWriter {
    pub fn new(req: &CreateRequest<'_>, opts: &WriteOptions, out: &mut OutputSet) -> Result<Self> {
        let stem = out
            .primary_path()
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let flat_name = format!("{stem}-flat.vmdk");
        let descriptor = opts.descriptor(req, "FLAT", &flat_name);
        let descriptor_file = out.create_primary()?;
        let flat = out.create_sibling(&flat_name)?;
        let block = usize::try_from(VMDK_WRITE_GRAIN_SECTORS * VMDK_SECTOR).expect("64 KiB");
        Ok(Self {
            descriptor_file,
            descriptor,
            flat: SparseOut::new(flat),
            len: opts.capacity * VMDK_SECTOR,
            blocker: Blocker::new(block),
        })
    }

    fn take_block(&mut self, block: Block<'_>) -> Result<()> {
        let Block::Data { index, bytes } = block else {
            return Ok(());
        };
        let offset = index * bytes.len() as u64;
        // The last block was padded to 64 KiB; never write past the extent's length.
        let room = usize::try_from(self.len.saturating_sub(offset)).unwrap_or(usize::MAX);
        self.flat.write(offset, &bytes[..bytes.len().min(room)])
    }
}

impl DiskWriter for FlatWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        Blocker::push_via(self, |w| &mut w.blocker, extent, Self::take_block)
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        Blocker::finish_via(&mut *self, |w| &mut w.blocker, Self::take_block)?;
        self.flat.flush()?;
        self.flat.file().set_len(self.len)?;
        self.descriptor_file
            .write_all_at(self.descriptor.as_bytes(), 0)?;
        Ok(WriteReport::new(self.len))
    }
}

/// Reads `len` bytes of a FLAT extent starting at byte `base` of its file.
pub(super) struct FlatExtent {
    pub path: PathBuf,
    src: Source,
    base: u64,
    len: u64,
    pos: u64,
    data_end: u64,
    buf: Vec<u8>,
}

impl FlatExtent {
    /// The caller has checked that `base + len` lies within the file.
    pub fn new(path: PathBuf, src: Source, base: u64, len: u64) -> Self {
        Self {
            path,
            src,
            base,
            len,
            pos: 0,
            data_end: 0,
            buf: Vec::new(),
        }
    }

    pub fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    pub fn next_extent(&mut self) -> Result<Extent<'_>> {
        if self.pos == self.data_end {
            let abs = self.base + self.pos;
            let end = self.base + self.len;
            let data = self.src.next_data(abs)?.unwrap_or(end).min(end);
            if data > abs {
                self.pos = data - self.base;
                self.data_end = self.pos;
                return Ok(Extent::Unallocated(data - abs));
            }
            let hole = self.src.next_hole(abs)?.min(end);
            self.data_end = if hole <= abs {
                self.len
            } else {
                hole - self.base
            };
        }
        let n = (self.data_end - self.pos).min(MAX_EXTENT_BYTES as u64);
        self.buf
            .resize(usize::try_from(n).expect("at most MAX_EXTENT_BYTES"), 0);
        read_exact_at(
            &*self.src,
            &mut self.buf,
            self.base + self.pos,
            "flat extent data",
        )?;
        self.pos += n;
        Ok(Extent::Data(&self.buf))
    }
}
