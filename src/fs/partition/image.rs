//! The partitions of a disk image in any format kiln reads.
//!
//! A raw image is read in place: its table is parsed from the file (the backup GPT header
//! included), a partition is a [`View`] of the file, and a file system reads the view.
//! Any other format is read through its disk reader, which streams: the table is parsed
//! from the first [`HEAD_BYTES`] of the virtual disk (so the backup GPT header at the end is
//! not checked), a partition is a [`Window`] of the reader, and a file system, which needs
//! random access, reads a copy of the partition spilled to an unlinked sparse file in
//! `$TMPDIR` (disk space up to the partition's allocated bytes; removed on exit whatever
//! happens).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{HEAD_BYTES, Partition, PartitionTable};
use crate::disk::block::is_zero;
use crate::disk::window::Window;
use crate::disk::{self, DiskFormat, DiskReader, Extent, OpenOptions, probe};
use crate::error::{Error, Result};
use crate::io::{FileSource, ReadAt, Source, View};

/// A disk image opened for its partitions.
#[derive(Debug)]
pub struct DiskImage {
    name: PathBuf,
    /// The file, when opened from one: its reader may need the directory (VMDK extents).
    path: Option<PathBuf>,
    src: Source,
    opts: OpenOptions,
    format: DiskFormat,
}

impl DiskImage {
    /// Opens the image file at `path`.
    ///
    /// # Errors
    /// The file cannot be opened or probed; errors name `path`.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(e).with_path(path))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::invalid_input("is a directory, not a disk image").with_path(path));
        }
        let src = FileSource::shared(file).map_err(|e| Error::io(e).with_path(path))?;
        let mut image = Self::from_source(src, path, opts)?;
        image.path = Some(path.to_path_buf());
        Ok(image)
    }

    /// The image in `src`, named `name` in errors.
    ///
    /// # Errors
    /// The format cannot be probed.
    pub fn from_source(src: Source, name: &Path, opts: &OpenOptions) -> Result<Self> {
        let format = match opts.format {
            Some(format) => format,
            None => probe(&*src).map_err(|e| e.with_path(name))?,
        };
        let opts = OpenOptions {
            format: Some(format),
            ..opts.clone()
        };
        Ok(Self {
            name: name.to_path_buf(),
            path: None,
            src,
            opts,
            format,
        })
    }

    /// The name errors carry.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// True for a raw image, read in place.
    pub fn is_raw(&self) -> bool {
        self.format == DiskFormat::Raw
    }

    /// A fresh reader of the whole disk.
    ///
    /// # Errors
    /// As [`disk::open`].
    pub fn reader(&self) -> Result<Box<dyn DiskReader>> {
        match &self.path {
            Some(path) => disk::open(path, &self.opts),
            None => disk::open_source(self.src.clone(), &self.name, &self.opts),
        }
    }

    /// The partition table, `None` when the disk has none.
    ///
    /// # Errors
    /// A damaged table (see [`super::read`]) or an unreadable image; errors name the image.
    pub fn table(&self) -> Result<Option<PartitionTable>> {
        if self.is_raw() {
            let len = self.src.len();
            return super::read(&*self.src, len, len).map_err(|e| e.with_path(&self.name));
        }
        let (head, disk_size) = self.head()?;
        self.table_of_head(&head, disk_size)
    }

    /// The first [`HEAD_BYTES`] of the virtual disk and its size, read through a fresh
    /// reader: what [`DiskImage::table`] parses for an image that is not raw.
    ///
    /// # Errors
    /// The reader's.
    pub fn head(&self) -> Result<(Vec<u8>, u64)> {
        head_of(self.reader()?.as_mut())
    }

    /// The partition table in `head`, the start of a disk of `disk_size` bytes.
    ///
    /// # Errors
    /// As [`super::read`]; errors name the image.
    pub fn table_of_head(&self, head: &[u8], disk_size: u64) -> Result<Option<PartitionTable>> {
        table_of_head(head, disk_size).map_err(|e| e.with_path(&self.name))
    }

    /// How errors name partition `index`: `disk.qcow2:2`.
    pub fn partition_name(&self, index: u32) -> PathBuf {
        let mut name = self.name.clone().into_os_string();
        name.push(format!(":{index}"));
        PathBuf::from(name)
    }

    /// A reader of `part`'s bytes as a disk of their own.
    ///
    /// # Errors
    /// The image cannot be opened.
    pub fn partition_reader(&self, part: &Partition) -> Result<Box<dyn DiskReader>> {
        if self.is_raw() {
            let view = self.view(part)?;
            let opts = OpenOptions {
                format: Some(DiskFormat::Raw),
                ..self.opts.clone()
            };
            return disk::open_source(view, &self.partition_name(part.index), &opts);
        }
        let window = Window::new(self.reader()?, part.start, part.size)
            .map_err(|e| e.with_path(&self.name))?;
        Ok(Box::new(window))
    }

    /// Random access to `part` (or the whole disk): a view of a raw image, else a copy
    /// spilled to a temporary file.
    ///
    /// # Errors
    /// The image cannot be read, or the temporary file cannot be written.
    pub fn random_access(&self, part: Option<&Partition>) -> Result<Source> {
        match (part, self.is_raw()) {
            (Some(part), true) => self.view(part),
            (None, true) => Ok(self.src.clone()),
            (Some(part), false) => spill(self.partition_reader(part)?.as_mut()),
            (None, false) => spill(self.reader()?.as_mut()),
        }
    }

    fn view(&self, part: &Partition) -> Result<Source> {
        View::new(self.src.clone(), part.start, part.size)
            .map(View::shared)
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "partition {} lies past the end of the image",
                    part.index
                ))
                .with_path(&self.name)
            })
    }
}

/// The first [`HEAD_BYTES`] of `reader`'s disk, and the disk's size.
///
/// # Errors
/// The reader's.
pub fn head_of(reader: &mut dyn DiskReader) -> Result<(Vec<u8>, u64)> {
    let disk_size = reader.virtual_size();
    Ok((read_head(reader, HEAD_BYTES)?, disk_size))
}

/// The partition table in `head`, the start of a disk of `disk_size` bytes (the backup GPT
/// header is checked only when `head` is the whole disk).
///
/// # Errors
/// As [`super::read`].
pub fn table_of_head(head: &[u8], disk_size: u64) -> Result<Option<PartitionTable>> {
    let readable = head.len() as u64;
    super::read(&HeadBytes(head), readable, disk_size)
}

/// Bytes in memory as a source, borrowed.
#[derive(Debug)]
struct HeadBytes<'a>(&'a [u8]);

impl ReadAt for HeadBytes<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let rest = usize::try_from(offset).ok().and_then(|o| self.0.get(o..));
        let Some(rest) = rest else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

/// The first `bound` bytes of `reader`'s disk (fewer when the disk is smaller).
///
/// # Errors
/// The reader's.
pub fn read_head(reader: &mut dyn DiskReader, bound: u64) -> Result<Vec<u8>> {
    let want = bound.min(reader.virtual_size());
    let want = usize::try_from(want).map_err(|_| Error::unsupported("head too large"))?;
    let mut head = Vec::with_capacity(want);
    while head.len() < want {
        let Some(extent) = reader.next_extent()? else {
            break;
        };
        let room = want - head.len();
        match extent {
            Extent::Data(bytes) => head.extend_from_slice(&bytes[..bytes.len().min(room)]),
            hole => {
                let len = usize::try_from(hole.len()).unwrap_or(usize::MAX);
                head.resize(head.len() + len.min(room), 0);
            }
        }
    }
    Ok(head)
}

/// Tells temporary files of one process apart.
static SPILL_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Copies `reader`'s disk into a sparse temporary file, unlinked as soon as it is created,
/// and returns it as a source.
///
/// # Errors
/// Creating or writing the file (the error names it), or the reader's.
pub fn spill(reader: &mut dyn DiskReader) -> Result<Source> {
    let (file, path) = create_temp()?;
    let io = |e: std::io::Error| Error::io(e).with_path(&path);
    file.set_len(reader.virtual_size()).map_err(io)?;
    let mut pos = 0u64;
    while let Some(extent) = reader.next_extent()? {
        if let Extent::Data(bytes) = extent
            && !is_zero(bytes)
        {
            file.write_all_at(bytes, pos).map_err(io)?;
        }
        pos += extent.len();
    }
    FileSource::shared(file).map_err(io)
}

/// A new file in `$TMPDIR`, already unlinked; its former path for messages.
fn create_temp() -> Result<(File, PathBuf)> {
    let dir = std::env::temp_dir();
    loop {
        let n = SPILL_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("kiln-{}-{n}.raw", std::process::id()));
        let created = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path);
        match created {
            Ok(file) => {
                std::fs::remove_file(&path).map_err(|e| Error::io(e).with_path(&path))?;
                return Ok((file, path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < u32::MAX => {}
            Err(e) => return Err(Error::io(e).with_path(&path)),
        }
    }
}
