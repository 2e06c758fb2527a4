//! Linux: SEEK_DATA/SEEK_HOLE and fallocate through rustix.

use std::fs::File;
use std::io;

use rustix::fs::{FallocateFlags, SeekFrom};
use rustix::io::Errno;

/// Offset of the first data at or after `offset`, or `None` when only a hole follows.
///
/// # Errors
/// OS errors other than "no more data" (ENXIO).
pub fn next_data(file: &File, offset: u64) -> io::Result<Option<u64>> {
    match rustix::fs::seek(file, SeekFrom::Data(offset)) {
        Ok(pos) => Ok(Some(pos)),
        Err(Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Offset of the first hole at or after `offset` (the end of the file counts as a hole).
///
/// # Errors
/// OS errors.
pub fn next_hole(file: &File, offset: u64) -> io::Result<u64> {
    match rustix::fs::seek(file, SeekFrom::Hole(offset)) {
        Ok(pos) => Ok(pos),
        Err(Errno::NXIO) => Ok(offset),
        Err(e) => Err(e.into()),
    }
}

/// Allocates `len` bytes at `offset` without changing the file size semantics beyond
/// extending it (preallocation=falloc). Falls back to an error the caller can act on.
///
/// # Errors
/// OS errors, including EOPNOTSUPP on file systems without fallocate.
pub fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    rustix::fs::fallocate(file, FallocateFlags::empty(), offset, len).map_err(Into::into)
}
