//! Fixed VHD: the disk's bytes, then the footer.
//!
//! The reader walks data and holes of the data area with SEEK_DATA/SEEK_HOLE; the writer
//! hands each data extent to [`SparseOut::write_sparse`] at its own offset: non-zero 4 KiB
//! pieces are written (long runs straight from the extent, uncopied), zero ones left as
//! holes. It keeps SparseOut's 1 MiB buffer and nothing else.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::footer::VhdFooter;
use super::{VhdError, footer_details};
use crate::disk::{
    DiskFormat, DiskReader, DiskWriter, Extent, ImageInfo, MAX_EXTENT_BYTES, WriteReport,
};
use crate::error::{Error, Result};
use crate::io::sparse_out::SparseOut;
use crate::io::{Source, read_exact_at};

pub(super) fn open(
    src: Source,
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
        src,
        footer,
        virtual_size,
        pos: 0,
        data_end: 0,
        buf: Vec::new(),
    }))
}

/// Reads the data area of a fixed VHD as data runs and holes.
struct FixedReader {
    src: Source,
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
        let data = self
            .src
            .next_data(self.pos)?
            .unwrap_or(self.virtual_size)
            .min(self.virtual_size);
        if data > self.pos {
            let hole = data - self.pos;
            self.pos = data;
            self.data_end = data;
            return Ok(Some(hole));
        }
        self.data_end = self.src.next_hole(self.pos)?.min(self.virtual_size);
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
        read_exact_at(&*self.src, &mut self.buf, self.pos, "fixed VHD data")?;
        self.pos += len as u64;
        Ok(Some(Extent::Data(&self.buf)))
    }

    fn info(&self) -> ImageInfo {
        let mut info = ImageInfo::new(DiskFormat::Vhd, self.virtual_size);
        info.subformat = Some(self.footer.disk_type.name().to_string());
        footer_details(info, &self.footer)
    }
}

/// Writes the non-zero 4 KiB pieces of the data area at their offsets, and the footer.
pub(super) struct FixedWriter {
    out: SparseOut,
    /// Offset of the next extent (the data area starts at 0).
    pos: u64,
    footer: VhdFooter,
}

impl FixedWriter {
    pub(super) fn new(file: File, footer: VhdFooter) -> Self {
        Self {
            out: SparseOut::new(file),
            pos: 0,
            footer,
        }
    }

    /// Moves past `len` bytes, refusing to go beyond the data area.
    fn advance(&mut self, len: u64) -> Result<u64> {
        let start = self.pos;
        let size = self.footer.current_size;
        self.pos = start
            .checked_add(len)
            .filter(|&end| end <= size)
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "vhd writer given data past the virtual size {size:#x} at {start:#x}"
                ))
            })?;
        Ok(start)
    }
}

impl DiskWriter for FixedWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        match extent {
            Extent::Data(bytes) => {
                let at = self.advance(bytes.len() as u64)?;
                self.out.write_sparse(at, bytes)
            }
            Extent::Zero(len) | Extent::Unallocated(len) => self.advance(len).map(|_| ()),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        self.out.flush()?;
        let size = self.footer.current_size;
        self.out.file().set_len(size)?;
        self.out
            .file()
            .write_all_at(&self.footer.to_bytes(), size)?;
        Ok(WriteReport::new(size))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use crate::disk::{CreateRequest, DiskFormat, Extent, KvOptions};
    use crate::io::output::OutputSet;

    /// A fixed, exact-size VHD writer for `size` bytes in `dir`.
    fn writer(
        dir: &std::path::Path,
        size: u64,
    ) -> (
        Box<dyn crate::disk::DiskWriter>,
        OutputSet,
        std::path::PathBuf,
    ) {
        let path = dir.join("f.vhd");
        let options = KvOptions::parse("subformat=fixed,force_size=on").unwrap();
        let ctx = crate::BuildContext::from_env("f");
        let req = CreateRequest {
            format: DiskFormat::Vhd,
            virtual_size: size,
            options: &options,
            compress: false,
            ctx: &ctx,
        };
        let mut out = OutputSet::new(&path, false);
        let w = super::super::create(&req, &mut out).unwrap();
        (w, out, path)
    }

    #[test]
    fn zero_pieces_of_data_extents_stay_holes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, out, path) = writer(dir.path(), 1 << 20);
        let mut data = vec![0u8; 1 << 20];
        data[3000] = 1;
        data[(1 << 20) - 1] = 2;
        // Split inside a 4 KiB piece: both halves still land where they belong.
        w.write_extent(Extent::Data(&data[..2048])).unwrap();
        w.write_extent(Extent::Data(&data[2048..])).unwrap();
        w.finish().unwrap();
        out.commit().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert!(back[..1 << 20] == data[..]);
        assert_eq!(back.len(), (1 << 20) + 512);
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(allocated <= 4 * 4096, "{allocated} bytes allocated");
    }

    #[test]
    fn data_past_the_virtual_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _out, _path) = writer(dir.path(), 1 << 20);
        w.write_extent(Extent::Unallocated((1 << 20) - 512))
            .unwrap();
        let err = w.write_extent(Extent::Data(&[1; 1024])).unwrap_err();
        assert!(err.to_string().contains("past the virtual size"), "{err}");
    }
}
