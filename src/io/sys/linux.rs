//! Linux: SEEK_DATA/SEEK_HOLE, fallocate, copy_file_range and read-ahead hints through rustix.

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

/// Copies up to `len` bytes from `src` at `src_offset` to `dst` at `dst_offset` inside the
/// kernel (`copy_file_range`: no trip through user space), returning the bytes copied. It
/// returns 0 at the source's end and also on pseudo file systems that cannot copy, and
/// fails with EXDEV, EINVAL, ENOSYS or EOPNOTSUPP where the kernel or file system offers no
/// such copy: callers fall back to reading and writing on 0 or any error.
///
/// # Errors
/// OS errors.
pub fn copy_range(
    src: &File,
    src_offset: u64,
    dst: &File,
    dst_offset: u64,
    len: usize,
) -> io::Result<usize> {
    let (mut src_pos, mut dst_pos) = (src_offset, dst_offset);
    rustix::fs::copy_file_range(src, Some(&mut src_pos), dst, Some(&mut dst_pos), len)
        .map_err(Into::into)
}

/// Starts reading `len` bytes of `file` at `offset` into the page cache without waiting for
/// them (`POSIX_FADV_WILLNEED`); cached pages cost no I/O.
///
/// # Errors
/// OS errors (the advice changes speed only, never what a later read returns).
pub fn prefetch(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let Some(len) = std::num::NonZeroU64::new(len) else {
        return Ok(());
    };
    rustix::fs::fadvise(file, offset, Some(len), rustix::fs::Advice::WillNeed).map_err(Into::into)
}
