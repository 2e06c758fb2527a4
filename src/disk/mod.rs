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
//!
//! Readers open from an [`crate::io::Source`] (a file, or a view of one: a tar member, a
//! partition), so the same reader serves all of them; writers create their files through an
//! [`crate::io::output::OutputSet`] or write front to back into an [`crate::io::Sink`] that
//! `finish` hands back. Layering: `disk` imports only `io` and the error type, never
//! `container`, `plan` or `spec` (`tests/layering.rs`).

pub mod block;
mod blockmap;
pub mod iso;
mod open;
pub mod options;
mod probe;
pub mod qcow2;
mod raw;
mod stream;
pub mod vdi;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;
pub mod window;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;

pub use open::{OpenOptions, open, open_source};
pub use options::KvOptions;
pub use probe::{
    Signature, inspector_polyglot, is_polyglot, mbr_problem, polyglot_message, probe, signatures,
};
pub use stream::create_stream;

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

    /// [`DiskReader::next_extent`] with the data in an owned buffer, so it can cross
    /// threads. `spare` is a buffer the caller is done with (contents irrelevant); a data
    /// extent takes it (leaving an empty `Vec`), other extents leave it. Readers that read
    /// data straight from a file read into it instead of copying; the default copies what
    /// `next_extent` lends.
    ///
    /// # Errors
    /// As [`DiskReader::next_extent`].
    fn next_owned_extent(&mut self, spare: &mut Vec<u8>) -> Result<Option<OwnedExtent>> {
        Ok(self
            .next_extent()?
            .map(|extent| OwnedExtent::copied(extent, spare)))
    }

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
#[derive(Default)]
pub struct WriteReport {
    /// Guest-visible size of the written image.
    pub virtual_size: u64,
    /// The stream a writer into a caller's sink wrote to, handed back when it is done (as
    /// tar-rs's `into_inner`), so the caller learns what went into it without sharing
    /// state with the writer; `None` for writers that create their own files.
    pub sink: Option<Box<dyn std::any::Any + Send>>,
}

impl WriteReport {
    /// A report of an image of `virtual_size` bytes with no sink to hand back.
    pub fn new(virtual_size: u64) -> Self {
        Self {
            virtual_size,
            sink: None,
        }
    }
}

impl fmt::Debug for WriteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteReport")
            .field("virtual_size", &self.virtual_size)
            .field("sink", &self.sink.is_some())
            .finish()
    }
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

/// Copies every extent of `reader` into each of `writers`, calling `progress` with the
/// bytes read so far. The caller finishes the writers.
///
/// The source is read once on this thread; each writer runs on its own thread, at most
/// [`CONVERT_QUEUE_DEPTH`] extents behind the reader, so reading overlaps with writing (and
/// compressing), and several outputs of one disk are written in one pass. The writers share
/// each extent's buffer; the last one done with it hands it back for the next read, so
/// memory stays bounded by `(CONVERT_QUEUE_DEPTH + 1) * writers + 1` buffers of
/// [`MAX_EXTENT_BYTES`].
///
/// # Errors
/// The first error of a writer, else the reader's error, or a reader whose extents do not
/// tile its virtual size.
pub fn convert(
    reader: &mut dyn DiskReader,
    writers: &mut [&mut dyn DiskWriter],
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let mut lanes = Vec::new();
        let mut handles = Vec::new();
        for writer in writers.iter_mut() {
            let (tx, rx) = std::sync::mpsc::sync_channel(CONVERT_QUEUE_DEPTH);
            let spare = spare_tx.clone();
            lanes.push(tx);
            handles.push(scope.spawn(move || write_lane(&mut **writer, &rx, &spare)));
        }
        // Only the writers hand buffers back, so `feed` sees when they have all gone.
        drop(spare_tx);
        let fed = feed(reader, &lanes, &spare_rx, progress);
        // Hanging up lets each writer drain its queue and stop.
        drop(lanes);
        let mut first_error = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        // A writer's error explains why `feed` found its lane closed.
        first_error.map_or(fed, Err)
    })
}

/// Reads every extent and queues it to every lane; checks the extents tile the disk.
fn feed(
    reader: &mut dyn DiskReader,
    lanes: &[std::sync::mpsc::SyncSender<Arc<OwnedExtent>>],
    spare: &std::sync::mpsc::Receiver<Vec<u8>>,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let virtual_size = reader.virtual_size();
    let mut done: u64 = 0;
    // A fixed pool of buffers: each writer may hold its queue plus the one it writes, and
    // the reader one more. Waiting for a returned buffer, rather than allocating, keeps
    // memory bounded and spares the page faults of fresh 4 MiB allocations.
    let pool = lanes.len() * (CONVERT_QUEUE_DEPTH + 1) + 1;
    let mut allocated = 0;
    let mut next_buffer = || match spare.try_recv() {
        Ok(buf) => buf,
        Err(_) if allocated < pool => {
            allocated += 1;
            Vec::with_capacity(MAX_EXTENT_BYTES)
        }
        // Every writer gone: any buffer will do, the next send fails.
        Err(_) => spare.recv().unwrap_or_default(),
    };
    let mut buf = Vec::new();
    loop {
        if buf.capacity() == 0 {
            buf = next_buffer();
        }
        let Some(extent) = reader.next_owned_extent(&mut buf)? else {
            break;
        };
        let len = extent.len();
        if len > virtual_size - done {
            return Err(Error::new(
                crate::ErrorKind::InvalidImage,
                format!(
                    "image yields data past its virtual size {virtual_size} at offset {done:#x}"
                ),
            ));
        }
        // Only the writers may hold the extent, so the last of them gets the buffer back.
        let extent = Arc::new(extent);
        let mut copies: Vec<Arc<OwnedExtent>> =
            lanes.iter().skip(1).map(|_| Arc::clone(&extent)).collect();
        copies.push(extent);
        for (lane, extent) in lanes.iter().zip(copies) {
            if lane.send(extent).is_err() {
                // The writer failed; `convert` reports its error.
                return Err(Error::invalid_input("a writer stopped early"));
            }
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
}

/// One writer's thread: writes each queued extent and hands back buffers it was the last
/// to use. Stops at its first error, which closes its queue.
fn write_lane(
    writer: &mut dyn DiskWriter,
    queue: &std::sync::mpsc::Receiver<Arc<OwnedExtent>>,
    spare: &std::sync::mpsc::Sender<Vec<u8>>,
) -> Result<()> {
    for extent in queue {
        writer.write_extent(extent.as_extent())?;
        if let Some(OwnedExtent::Data(buf)) = Arc::into_inner(extent) {
            let _ = spare.send(buf);
        }
    }
    Ok(())
}

/// Extents the reader may queue ahead of each writer.
const CONVERT_QUEUE_DEPTH: usize = 2;

/// An extent that owns its bytes, to cross from a reader thread to writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedExtent {
    /// As [`Extent::Data`].
    Data(Vec<u8>),
    /// As [`Extent::Zero`].
    Zero(u64),
    /// As [`Extent::Unallocated`].
    Unallocated(u64),
}

impl OwnedExtent {
    /// `extent`; data is copied into `spare`, which it takes.
    pub fn copied(extent: Extent<'_>, spare: &mut Vec<u8>) -> Self {
        match extent {
            Extent::Data(bytes) => {
                let mut buf = std::mem::take(spare);
                buf.clear();
                buf.extend_from_slice(bytes);
                OwnedExtent::Data(buf)
            }
            Extent::Zero(len) => OwnedExtent::Zero(len),
            Extent::Unallocated(len) => OwnedExtent::Unallocated(len),
        }
    }

    /// Length of the run in bytes.
    pub fn len(&self) -> u64 {
        self.as_extent().len()
    }

    /// True for an empty run.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The borrowed view writers take.
    pub fn as_extent(&self) -> Extent<'_> {
        match self {
            OwnedExtent::Data(buf) => Extent::Data(buf),
            OwnedExtent::Zero(len) => Extent::Zero(*len),
            OwnedExtent::Unallocated(len) => Extent::Unallocated(*len),
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

impl Grown {
    /// The added unallocated tail's length, once.
    fn tail(&mut self) -> Option<u64> {
        if self.tail_done {
            return None;
        }
        self.tail_done = true;
        Some(self.virtual_size - self.inner.virtual_size())
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
        Ok(self.tail().map(Extent::Unallocated))
    }

    fn next_owned_extent(&mut self, spare: &mut Vec<u8>) -> Result<Option<OwnedExtent>> {
        let inner_size = self.inner.virtual_size();
        if self.inner_done < inner_size {
            let extent = self.inner.next_owned_extent(spare)?;
            self.inner_done = extent
                .as_ref()
                .map_or(inner_size, |e| self.inner_done + e.len());
            return Ok(extent);
        }
        Ok(self.tail().map(OwnedExtent::Unallocated))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of listed runs: `Some(bytes)` is data, `None(len)` a hole.
    struct ListReader {
        runs: Vec<std::result::Result<Vec<u8>, u64>>,
        next: usize,
        fail_at: Option<usize>,
    }

    impl DiskReader for ListReader {
        fn virtual_size(&self) -> u64 {
            self.runs
                .iter()
                .map(|r| r.as_ref().map_or_else(|len| *len, |b| b.len() as u64))
                .sum()
        }

        fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
            if self.fail_at == Some(self.next) {
                return Err(Error::invalid_input("broken source"));
            }
            self.next += 1;
            Ok(self.runs.get(self.next - 1).map(|run| match run {
                Ok(bytes) => Extent::Data(bytes),
                Err(len) => Extent::Unallocated(*len),
            }))
        }

        fn info(&self) -> ImageInfo {
            ImageInfo::new(DiskFormat::Raw, self.virtual_size())
        }
    }

    /// Collects the disk's bytes; fails on extent `fail_at`.
    #[derive(Default)]
    struct Collect {
        bytes: Vec<u8>,
        seen: usize,
        fail_at: Option<usize>,
    }

    impl DiskWriter for Collect {
        fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
            if self.fail_at == Some(self.seen) {
                return Err(Error::invalid_input("disk full"));
            }
            self.seen += 1;
            match extent {
                Extent::Data(b) => self.bytes.extend_from_slice(b),
                e => self
                    .bytes
                    .resize(self.bytes.len() + usize::try_from(e.len()).unwrap(), 0),
            }
            Ok(())
        }

        fn finish(self: Box<Self>) -> Result<WriteReport> {
            Ok(WriteReport::default())
        }
    }

    /// Forty data runs with holes between them: more than the buffer pool holds.
    fn reader() -> ListReader {
        let runs = (0..80u8)
            .map(|i| {
                if i % 2 == 0 {
                    Ok(vec![i + 1; 1000 + usize::from(i)])
                } else {
                    Err(7)
                }
            })
            .collect();
        ListReader {
            runs,
            next: 0,
            fail_at: None,
        }
    }

    fn flat(reader: &ListReader) -> Vec<u8> {
        (reader.runs.iter())
            .flat_map(|r| {
                r.clone()
                    .unwrap_or_else(|len| vec![0; usize::try_from(len).unwrap()])
            })
            .collect()
    }

    #[test]
    fn every_writer_gets_the_whole_disk_from_one_read() {
        let mut source = reader();
        let expected = flat(&source);
        let (mut a, mut b, mut c) = (Collect::default(), Collect::default(), Collect::default());
        let mut last = 0;
        convert(&mut source, &mut [&mut a, &mut b, &mut c], &mut |done| {
            last = done;
        })
        .unwrap();
        assert_eq!(source.next, 81, "the source is read once");
        assert_eq!(last, expected.len() as u64);
        for w in [a, b, c] {
            assert_eq!(w.bytes, expected);
        }
    }

    #[test]
    fn a_failing_writer_stops_the_conversion_with_its_error() {
        let mut source = reader();
        let mut ok = Collect::default();
        let mut bad = Collect {
            fail_at: Some(5),
            ..Collect::default()
        };
        let err = convert(&mut source, &mut [&mut ok, &mut bad], &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
    }

    #[test]
    fn a_failing_reader_stops_the_conversion_with_its_error() {
        let mut source = reader();
        source.fail_at = Some(9);
        let mut w = Collect::default();
        let err = convert(&mut source, &mut [&mut w], &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("broken source"), "{err}");
    }

    #[test]
    fn a_reader_that_ends_early_is_an_error() {
        struct Short(ListReader);
        impl DiskReader for Short {
            fn virtual_size(&self) -> u64 {
                self.0.virtual_size() + 1
            }
            fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
                self.0.next_extent()
            }
            fn info(&self) -> ImageInfo {
                self.0.info()
            }
        }
        let mut w = Collect::default();
        let err = convert(&mut Short(reader()), &mut [&mut w], &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("before its virtual size"), "{err}");
    }
}
