//! Reading a file's bytes through its block map, as a byte stream ([`FileReader::read`],
//! [`FileReader::copy_to`]) or as a disk of its own ([`DiskReader`]: holes stay holes, so
//! a kernel or ramdisk can be written as a sparse raw image by the disk engine).

use std::io::Write;

use super::Ext4;
use super::blockmap::{BlockMap, Run};
use super::inode::Inode;
use crate::disk::{DiskFormat, DiskReader, Extent, ImageInfo, MAX_EXTENT_BYTES};
use crate::error::{Error, Result};
use crate::io::read_exact_at;

/// Bytes moved per read when copying.
const COPY_CHUNK: u64 = 1 << 20;

/// The next stretch of a file.
enum Region {
    /// Not mapped: zeros.
    Hole(u64),
    /// Allocated but unwritten: zeros.
    Unwritten(u64),
    /// `len` bytes at byte `at` of the file system.
    Data { at: u64, len: u64 },
}

/// A regular file's (or slow symbolic link's) contents.
pub struct FileReader {
    fs: Ext4,
    map: BlockMap,
    size: u64,
    pos: u64,
    run: Option<Run>,
    runs_done: bool,
    buf: Vec<u8>,
}

impl FileReader {
    pub(super) fn new(fs: &Ext4, inode: &Inode) -> Result<Self> {
        inode.check_readable()?;
        Ok(Self {
            map: BlockMap::new(fs, inode)?,
            fs: fs.clone(),
            size: inode.size,
            pos: 0,
            run: None,
            runs_done: false,
            buf: Vec::new(),
        })
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The region at the current position, at most `max` bytes; `None` at the end.
    fn next_region(&mut self, max: u64) -> Result<Option<Region>> {
        if self.pos >= self.size {
            return Ok(None);
        }
        let bs = self.fs.sb.block_size;
        let block = self.pos / bs;
        while !self.runs_done && self.run.is_none_or(|r| r.logical + r.len <= block) {
            self.run = self.map.next_run(&self.fs)?;
            self.runs_done = self.run.is_none();
        }
        let left = (self.size - self.pos).min(max);
        Ok(Some(match self.run {
            Some(r) if r.logical <= block => {
                let len = ((r.logical + r.len) * bs - self.pos).min(left);
                match r.physical {
                    Some(physical) => Region::Data {
                        at: physical * bs + (self.pos - r.logical * bs),
                        len,
                    },
                    None => Region::Unwritten(len),
                }
            }
            Some(r) => Region::Hole((r.logical * bs - self.pos).min(left)),
            None => Region::Hole(left),
        }))
    }

    /// Reads the next bytes into `buf`; 0 at the end of the file.
    ///
    /// # Errors
    /// A malformed block map or I/O, naming the offset.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let Some(region) = self.next_region(buf.len() as u64)? else {
            return Ok(0);
        };
        let n = match region {
            Region::Hole(len) | Region::Unwritten(len) => {
                let n = usize::try_from(len).expect("at most buf.len()");
                buf[..n].fill(0);
                n
            }
            Region::Data { at, len } => {
                let n = usize::try_from(len).expect("at most buf.len()");
                read_exact_at(&*self.fs.src, &mut buf[..n], at, "ext4 file data")?;
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }

    /// Copies the rest of the file to `out`; returns the bytes copied.
    ///
    /// # Errors
    /// As [`FileReader::read`], or writing `out` failed.
    pub fn copy_to(&mut self, out: &mut dyn Write) -> Result<u64> {
        let mut buf = vec![0u8; usize::try_from(COPY_CHUNK.min(self.size)).unwrap_or(0)];
        let mut copied = 0;
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                return Ok(copied);
            }
            out.write_all(&buf[..n]).map_err(Error::io)?;
            copied += n as u64;
        }
    }

    /// The whole file (for small files: symbolic link targets).
    pub(super) fn read_all(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.copy_to(&mut out)?;
        Ok(out)
    }
}

impl DiskReader for FileReader {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        let Some(region) = self.next_region(MAX_EXTENT_BYTES as u64)? else {
            return Ok(None);
        };
        Ok(Some(match region {
            Region::Hole(len) => {
                self.pos += len;
                Extent::Unallocated(len)
            }
            Region::Unwritten(len) => {
                self.pos += len;
                Extent::Zero(len)
            }
            Region::Data { at, len } => {
                self.buf
                    .resize(usize::try_from(len).expect("at most 4 MiB"), 0);
                read_exact_at(&*self.fs.src, &mut self.buf, at, "ext4 file data")?;
                self.pos += len;
                Extent::Data(&self.buf)
            }
        }))
    }

    fn info(&self) -> ImageInfo {
        ImageInfo::new(DiskFormat::Raw, self.size).detail("source", "file in an ext4 file system")
    }
}
