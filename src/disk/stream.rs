//! Writing a disk front to back into a sequential sink (a tar member, a compression
//! pipeline) instead of a file: the one factory for stream outputs, and the writer of the
//! layouts that are the disk's bytes followed by an optional trailer (raw; fixed VHD, whose
//! footer follows the data). streamOptimized VMDK has its own stream writer. Formats whose
//! tables are written after the data they map (qcow2, dynamic VHD, VHDX, VDI, sparse VMDK)
//! need a seekable file and are refused here.
//!
//! A stream cannot hold holes: zero and unallocated runs are written as zeros. Memory: a
//! 1 MiB buffer in front of the sink. `finish` hands the sink back in the report.

use std::io::{BufWriter, Write};

use super::{CreateRequest, DiskFormat, DiskWriter, Extent, WriteReport, vhd, vmdk};
use crate::error::{Error, Result};
use crate::io::Sink;

/// Zeros written per call for a zero run.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Starts a writer of `req.format` that writes front to back into `sink`; `name` is what a
/// VMDK's descriptor calls its extent.
///
/// # Errors
/// A format that needs a seekable file, invalid options, a size the format cannot hold.
pub fn create_stream(
    req: &CreateRequest<'_>,
    sink: Box<dyn Sink>,
    name: &str,
) -> Result<Box<dyn DiskWriter>> {
    req.options
        .check_known(req.format.name(), req.format.option_keys())?;
    let seekable = |what: &str| {
        Err(Error::unsupported(format!(
            "{what} needs a seekable file; a stream takes raw, vhd (subformat=fixed) or vmdk (subformat=streamOptimized)"
        )))
    };
    match req.format {
        DiskFormat::Raw => Ok(Box::new(DataThenTrailer::new(
            sink,
            req.virtual_size,
            Vec::new(),
        ))),
        DiskFormat::Vhd => {
            let (size, footer) = vhd::stream_footer(req)?;
            Ok(Box::new(DataThenTrailer::new(sink, size, footer.to_vec())))
        }
        DiskFormat::Vmdk => vmdk::create_stream_into(req, sink, name),
        DiskFormat::Qcow2 => seekable("qcow2"),
        DiskFormat::Vhdx => seekable("vhdx"),
        DiskFormat::Vdi => seekable("vdi"),
        DiskFormat::Iso => seekable("an ISO built from a disk"),
    }
}

/// The disk's bytes, zero-filled to `data_len`, then `trailer`.
struct DataThenTrailer {
    out: BufWriter<Box<dyn Sink>>,
    pos: u64,
    data_len: u64,
    trailer: Vec<u8>,
}

impl DataThenTrailer {
    fn new(sink: Box<dyn Sink>, data_len: u64, trailer: Vec<u8>) -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 20, sink),
            pos: 0,
            data_len,
            trailer,
        }
    }

    /// Moves past `len` bytes, refusing to go beyond the data area.
    fn advance(&mut self, len: u64) -> Result<()> {
        let end = self.pos.checked_add(len).filter(|&e| e <= self.data_len);
        let Some(end) = end else {
            return Err(Error::invalid_input(format!(
                "stream writer given data past the virtual size {:#x} at {:#x}",
                self.data_len, self.pos
            )));
        };
        self.pos = end;
        Ok(())
    }

    fn write_zeros(&mut self, mut len: u64) -> Result<()> {
        while len > 0 {
            let n = len.min(ZEROS.len() as u64);
            self.out
                .write_all(&ZEROS[..usize::try_from(n).expect("at most 64 KiB")])?;
            len -= n;
        }
        Ok(())
    }
}

impl DiskWriter for DataThenTrailer {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        self.advance(extent.len())?;
        match extent {
            Extent::Data(bytes) => Ok(self.out.write_all(bytes)?),
            Extent::Zero(len) | Extent::Unallocated(len) => self.write_zeros(len),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        // A disk rounded up by its format (a VHD's CHS geometry) reads as zeros at the end.
        let rest = self.data_len - self.pos;
        self.write_zeros(rest)?;
        let trailer = std::mem::take(&mut self.trailer);
        self.out.write_all(&trailer)?;
        let sink = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(WriteReport {
            virtual_size: self.data_len,
            sink: Some(sink.into_any()),
        })
    }
}
