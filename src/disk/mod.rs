//! The disk engine: a virtual disk is a virtual size plus an ordered stream of extents.
//!
//! A [`DiskReader`] validates an image's metadata when it is opened and then lends extents
//! in order; a [`DiskWriter`] consumes them and finishes the file. [`convert`] is the only
//! copy loop. [`open`] and [`create`] are the one factory per direction: they match on
//! [`DiskFormat`] once and call one function per format.
//!
//! Zero detection lives in [`block`]: writers that store fixed-size blocks re-chunk the
//! stream through [`block::Blocker`], which reports all-zero blocks as empty so sparse input
//! stays sparse whatever the reader reported.

pub mod block;
pub mod iso;
pub mod options;
mod probe;
pub mod qcow2;
mod raw;
pub mod vdi;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

use std::fmt;
use std::fs::File;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;

pub use options::KvOptions;
pub use probe::probe;

use crate::context::BuildContext;
use crate::error::{Error, Result};
use crate::io::output::OutputSet;

/// Largest data extent a reader lends at once; also the bound on per-reader buffering.
pub const MAX_EXTENT_BYTES: usize = 4 << 20;

/// One run of a virtual disk. Extents arrive in order and tile `[0, virtual_size)` exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent<'a> {
    /// Bytes as stored (may still be all zero; writers detect that).
    Data(&'a [u8]),
    /// A run that reads as zeros and is recorded as such by the source.
    Zero(u64),
    /// A run that is not allocated in the source; reads as zeros.
    Unallocated(u64),
}

impl Extent<'_> {
    /// Length of the run in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Extent::Data(bytes) => bytes.len() as u64,
            Extent::Zero(len) | Extent::Unallocated(len) => *len,
        }
    }

    /// True for an empty run.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a disk image as an ordered extent stream.
pub trait DiskReader: Send {
    /// Guest-visible size in bytes.
    fn virtual_size(&self) -> u64;

    /// Lends the next extent from a buffer of at most [`MAX_EXTENT_BYTES`]; `None` at the end.
    ///
    /// # Errors
    /// I/O failures and metadata found inconsistent while walking (tables past the end of
    /// the file, corrupt compressed data, ...), naming the byte offset.
    fn next_extent(&mut self) -> Result<Option<Extent<'_>>>;

    /// Format, subformat and the header facts `kiln info` shows.
    fn info(&self) -> ImageInfo;
}

/// Consumes an extent stream and writes one image.
pub trait DiskWriter: Send {
    /// Writes the next run; runs arrive in order and tile the virtual disk.
    ///
    /// # Errors
    /// I/O failures of the output.
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()>;

    /// Writes tables, footers and end markers and flushes. Nothing is written from `Drop`.
    ///
    /// # Errors
    /// I/O failures of the output, or a stream that did not cover the virtual size.
    fn finish(self: Box<Self>) -> Result<WriteReport>;
}

/// What a writer reports when it finishes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteReport {
    /// Guest-visible size of the written image.
    pub virtual_size: u64,
}

/// The disk formats kiln knows, in Glance's vocabulary (`vhd` is qemu-img's `vpc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// A plain byte-for-byte image (also Glance's ami/aki/ari disks).
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// VMware virtual disk.
    Vmdk,
    /// Microsoft Virtual Hard Disk (qemu-img: `vpc`).
    Vhd,
    /// Microsoft Virtual Hard Disk v2.
    Vhdx,
    /// VirtualBox disk image.
    Vdi,
    /// ISO 9660 optical image.
    Iso,
}

impl DiskFormat {
    /// Every format, in probe-report order.
    pub const ALL: [DiskFormat; 7] = [
        DiskFormat::Raw,
        DiskFormat::Qcow2,
        DiskFormat::Vmdk,
        DiskFormat::Vhd,
        DiskFormat::Vhdx,
        DiskFormat::Vdi,
        DiskFormat::Iso,
    ];

    /// The Glance name.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Vdi => "vdi",
            DiskFormat::Iso => "iso",
        }
    }

    /// The `-o` keys this format's writer accepts.
    pub fn option_keys(self) -> &'static [&'static str] {
        match self {
            DiskFormat::Raw => raw::OPTION_KEYS,
            DiskFormat::Qcow2 => qcow2::OPTION_KEYS,
            DiskFormat::Vmdk => vmdk::OPTION_KEYS,
            DiskFormat::Vhd => vhd::OPTION_KEYS,
            DiskFormat::Vhdx => vhdx::OPTION_KEYS,
            DiskFormat::Vdi => vdi::OPTION_KEYS,
            DiskFormat::Iso => iso::OPTION_KEYS,
        }
    }
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DiskFormat {
    type Err = Error;

    /// Accepts Glance names and qemu-img driver names (`vpc` for vhd).
    fn from_str(s: &str) -> Result<Self> {
        let format = match s.to_ascii_lowercase().as_str() {
            "raw" | "img" => DiskFormat::Raw,
            "qcow2" => DiskFormat::Qcow2,
            "vmdk" => DiskFormat::Vmdk,
            "vhd" | "vpc" => DiskFormat::Vhd,
            "vhdx" => DiskFormat::Vhdx,
            "vdi" => DiskFormat::Vdi,
            "iso" => DiskFormat::Iso,
            _ => {
                return Err(Error::invalid_input(format!(
                    "unknown disk format `{s}`; expected one of raw, qcow2, vmdk, vhd (vpc), vhdx, vdi, iso"
                )));
            }
        };
        Ok(format)
    }
}

/// What `kiln info` shows about an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    /// Detected format.
    pub format: DiskFormat,
    /// Variant within the format (`streamOptimized`, `dynamic`, `v3`, ...).
    pub subformat: Option<String>,
    /// Guest-visible size in bytes.
    pub virtual_size: u64,
    /// Format-specific facts in display order (`cluster_size`, `createType`, ...).
    pub details: Vec<(String, String)>,
}

impl ImageInfo {
    /// Info with no subformat or details.
    pub fn new(format: DiskFormat, virtual_size: u64) -> Self {
        Self {
            format,
            subformat: None,
            virtual_size,
            details: Vec::new(),
        }
    }

    /// Appends one detail.
    #[must_use]
    pub fn detail(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.details.push((key.to_string(), value.to_string()));
        self
    }
}

/// How to open an image.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The format, or `None` to probe.
    pub format: Option<DiskFormat>,
    /// Opt in to images format_inspector refuses (qcow2 backing or data files, ...). The
    /// referenced files are still never opened; the reader treats the image alone.
    pub allow_unsafe: bool,
}

/// Opens `path` as a disk image, probing the format unless `opts.format` is set.
///
/// # Errors
/// The file cannot be opened, its metadata is invalid, or it is refused on safety grounds;
/// the error names `path`.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Box<dyn DiskReader>> {
    open_inner(path, opts).map_err(|e| e.with_path(path))
}

fn open_inner(path: &Path, opts: &OpenOptions) -> Result<Box<dyn DiskReader>> {
    let file = File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(Error::invalid_input("is a directory, not a disk image"));
    }
    let format = match opts.format {
        Some(format) => format,
        None => probe(&file)?,
    };
    match format {
        DiskFormat::Raw => raw::open(file),
        DiskFormat::Qcow2 => qcow2::open(file, path, opts),
        DiskFormat::Vmdk => vmdk::open(file, path, opts),
        DiskFormat::Vhd => vhd::open(file, path, opts),
        DiskFormat::Vhdx => vhdx::open(file, path, opts),
        DiskFormat::Vdi => vdi::open(file, path, opts),
        DiskFormat::Iso => iso::open(file, path, opts),
    }
}

/// Everything a writer needs to start.
#[derive(Debug, Clone, Copy)]
pub struct CreateRequest<'a> {
    /// Output format.
    pub format: DiskFormat,
    /// Guest-visible size in bytes.
    pub virtual_size: u64,
    /// `-o key=value` options, already checked against the format's known keys.
    pub options: &'a KvOptions,
    /// `-c`: compress where the format can.
    pub compress: bool,
    /// Time and identity source.
    pub ctx: &'a BuildContext,
}

/// Starts a writer for `req.format` whose files are created through `out`.
///
/// # Errors
/// Unknown or invalid options, a size the format cannot hold, or failure creating files.
pub fn create(req: &CreateRequest<'_>, out: &mut OutputSet) -> Result<Box<dyn DiskWriter>> {
    req.options
        .check_known(req.format.name(), req.format.option_keys())?;
    match req.format {
        DiskFormat::Raw => raw::create(req, out),
        DiskFormat::Qcow2 => qcow2::create(req, out),
        DiskFormat::Vmdk => vmdk::create(req, out),
        DiskFormat::Vhd => vhd::create(req, out),
        DiskFormat::Vhdx => vhdx::create(req, out),
        DiskFormat::Vdi => vdi::create(req, out),
        DiskFormat::Iso => iso::create(req, out),
    }
}

/// Copies every extent of `reader` into `writer`, calling `progress` with the bytes done.
/// The caller finishes the writer.
///
/// The reader runs on its own thread, at most [`CONVERT_QUEUE_DEPTH`] extents ahead of the
/// writer, so reading the source overlaps with writing (and compressing) the output while
/// memory stays bounded by `CONVERT_QUEUE_DEPTH + 2` buffers of [`MAX_EXTENT_BYTES`].
///
/// # Errors
/// Errors of either side, or a reader whose extents do not tile its virtual size.
pub fn convert(
    reader: &mut dyn DiskReader,
    writer: &mut dyn DiskWriter,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let virtual_size = reader.virtual_size();
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel(CONVERT_QUEUE_DEPTH);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        scope.spawn(move || read_ahead(reader, &full_tx, &empty_rx));
        let mut done: u64 = 0;
        // Dropping `full_rx` on an early return stops the reader at its next send.
        for item in full_rx {
            let extent: OwnedExtent = item?;
            let len = extent.len();
            if len > virtual_size - done {
                return Err(Error::new(
                    crate::ErrorKind::InvalidImage,
                    format!(
                        "image yields data past its virtual size {virtual_size} at offset {done:#x}"
                    ),
                ));
            }
            writer.write_extent(extent.as_extent())?;
            if let OwnedExtent::Data(buf) = extent {
                let _ = empty_tx.send(buf);
            }
            done += len;
            progress(done);
        }
        if done != virtual_size {
            return Err(Error::new(
                crate::ErrorKind::InvalidImage,
                format!("image ends at {done:#x}, before its virtual size {virtual_size:#x}"),
            ));
        }
        Ok(())
    })
}

/// Extents the reader thread may queue ahead of the writer.
const CONVERT_QUEUE_DEPTH: usize = 2;

/// An extent that owns its bytes, to cross from the reader thread to the writer.
enum OwnedExtent {
    Data(Vec<u8>),
    Zero(u64),
    Unallocated(u64),
}

impl OwnedExtent {
    fn len(&self) -> u64 {
        self.as_extent().len()
    }

    fn as_extent(&self) -> Extent<'_> {
        match self {
            OwnedExtent::Data(buf) => Extent::Data(buf),
            OwnedExtent::Zero(len) => Extent::Zero(*len),
            OwnedExtent::Unallocated(len) => Extent::Unallocated(*len),
        }
    }
}

/// The reader thread: copies each extent into a recycled buffer and queues it; stops at the
/// end, at the first error (which it queues), or when the writer side hangs up.
fn read_ahead(
    reader: &mut dyn DiskReader,
    full: &std::sync::mpsc::SyncSender<Result<OwnedExtent>>,
    empty: &std::sync::mpsc::Receiver<Vec<u8>>,
) {
    loop {
        let item = match reader.next_extent() {
            Ok(None) => return,
            Ok(Some(Extent::Data(bytes))) => {
                let mut buf = empty.try_recv().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(bytes);
                Ok(OwnedExtent::Data(buf))
            }
            Ok(Some(Extent::Zero(len))) => Ok(OwnedExtent::Zero(len)),
            Ok(Some(Extent::Unallocated(len))) => Ok(OwnedExtent::Unallocated(len)),
            Err(e) => Err(e),
        };
        let stop = item.is_err();
        if full.send(item).is_err() || stop {
            return;
        }
    }
}

/// A reader that presents another reader's disk grown to a larger virtual size; the added
/// tail is unallocated.
pub struct Grown {
    inner: Box<dyn DiskReader>,
    inner_done: u64,
    virtual_size: u64,
    tail_done: bool,
}

impl Grown {
    /// Grows `inner` to `virtual_size`.
    ///
    /// # Errors
    /// `virtual_size` is smaller than the inner disk: kiln never shrinks a disk.
    pub fn new(inner: Box<dyn DiskReader>, virtual_size: u64) -> Result<Self> {
        let current = inner.virtual_size();
        if virtual_size < current {
            return Err(Error::invalid_input(format!(
                "cannot shrink a disk from {current} to {virtual_size} bytes; kiln only grows disks"
            )));
        }
        Ok(Self {
            inner,
            inner_done: 0,
            virtual_size,
            tail_done: virtual_size == current,
        })
    }
}

impl DiskReader for Grown {
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        let inner_size = self.inner.virtual_size();
        if self.inner_done < inner_size {
            let extent = self.inner.next_extent()?;
            // A reader that stops early is caught by `convert`'s length check.
            self.inner_done = extent.map_or(inner_size, |e| self.inner_done + e.len());
            return Ok(extent);
        }
        if self.tail_done {
            return Ok(None);
        }
        self.tail_done = true;
        Ok(Some(Extent::Unallocated(self.virtual_size - inner_size)))
    }

    fn info(&self) -> ImageInfo {
        let mut info = self.inner.info();
        info.virtual_size = self.virtual_size;
        info
    }
}

/// A reader of a blank disk: one unallocated run.
pub struct Blank {
    virtual_size: u64,
    done: bool,
}

impl Blank {
    /// A blank disk of `virtual_size` bytes.
    pub fn new(virtual_size: u64) -> Self {
        Self {
            virtual_size,
            done: virtual_size == 0,
        }
    }
}

impl DiskReader for Blank {
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(Extent::Unallocated(self.virtual_size)))
    }

    fn info(&self) -> ImageInfo {
        ImageInfo::new(DiskFormat::Raw, self.virtual_size).detail("source", "blank")
    }
}
