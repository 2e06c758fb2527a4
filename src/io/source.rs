//! Sources: anything disk readers read from by position.
//!
//! A [`Source`] is a shared, cheaply cloned handle to a [`ReadAt`]: a whole file, or a
//! [`View`] (a byte range of another source) such as a tar member of an OVA or a partition
//! of a disk. Readers open from a source, so the same reader serves all of them. Sparse
//! hints (SEEK_DATA/SEEK_HOLE) pass through views of files, clipped to the view.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::sys;

/// Positioned reads from something of a fixed length.
///
/// `read_at` may return fewer bytes than asked (as `pread` may); callers loop through
/// [`super::read_exact_at`]. The sparse hints default to "all data", which is always
/// correct, only slower for sparse files.
pub trait ReadAt: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; 0 at or past the end.
    ///
    /// # Errors
    /// OS errors.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Length in bytes, fixed when the source was opened.
    fn len(&self) -> u64;

    /// True for an empty source.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset of the first data at or after `offset`, or `None` when only a hole follows.
    ///
    /// # Errors
    /// OS errors.
    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        Ok((offset < self.len()).then_some(offset))
    }

    /// Offset of the first hole at or after `offset`; the end counts as a hole.
    ///
    /// # Errors
    /// OS errors.
    fn next_hole(&self, offset: u64) -> io::Result<u64> {
        Ok(self.len().max(offset))
    }

    /// Hints that `[offset, offset + len)` will be read soon; changes speed only.
    ///
    /// # Errors
    /// OS errors (callers may ignore them).
    fn prefetch(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

/// A shared handle to a source; clones read the same bytes.
pub type Source = Arc<dyn ReadAt>;

/// A whole file, its length taken when it was opened.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Wraps an open file.
    ///
    /// # Errors
    /// The file's metadata cannot be read.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }

    /// Wraps an open file as a shared [`Source`].
    ///
    /// # Errors
    /// As [`FileSource::new`].
    pub fn shared(file: File) -> io::Result<Source> {
        Ok(Arc::new(Self::new(file)?))
    }
}

impl ReadAt for FileSource {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        sys::next_data(&self.file, offset)
    }

    fn next_hole(&self, offset: u64) -> io::Result<u64> {
        sys::next_hole(&self.file, offset)
    }

    fn prefetch(&self, offset: u64, len: u64) -> io::Result<()> {
        sys::prefetch(&self.file, offset, len)
    }
}

/// A byte range `[start, start + len)` of another source, read as a source of its own.
#[derive(Debug, Clone)]
pub struct View {
    base: Source,
    start: u64,
    len: u64,
}

impl View {
    /// The range `[start, start + len)` of `base`, or `None` when it does not lie inside.
    pub fn new(base: Source, start: u64, len: u64) -> Option<Self> {
        let end = start.checked_add(len)?;
        (end <= base.len()).then_some(Self { base, start, len })
    }

    /// Where the view starts in its base.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The view as a shared [`Source`].
    pub fn shared(self) -> Source {
        Arc::new(self)
    }

    /// `offset` of the view as an offset of the base, when it lies inside the view.
    fn to_base(&self, offset: u64) -> Option<u64> {
        (offset < self.len).then(|| self.start + offset)
    }
}

impl ReadAt for View {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Some(base_offset) = self.to_base(offset) else {
            return Ok(0);
        };
        let left = self.len - offset;
        let take = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        self.base.read_at(&mut buf[..take], base_offset)
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        let Some(base_offset) = self.to_base(offset) else {
            return Ok(None);
        };
        Ok(self
            .base
            .next_data(base_offset)?
            .map(|data| data - self.start)
            .filter(|&data| data < self.len))
    }

    fn next_hole(&self, offset: u64) -> io::Result<u64> {
        let Some(base_offset) = self.to_base(offset) else {
            return Ok(offset.max(self.len));
        };
        Ok((self.base.next_hole(base_offset)? - self.start).min(self.len))
    }

    fn prefetch(&self, offset: u64, len: u64) -> io::Result<()> {
        let Some(base_offset) = self.to_base(offset) else {
            return Ok(());
        };
        self.base.prefetch(base_offset, len.min(self.len - offset))
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Some(rest) = usize::try_from(offset).ok().and_then(|o| self.get(o..)) else {
            return Ok(0);
        };
        let take = rest.len().min(buf.len());
        buf[..take].copy_from_slice(&rest[..take]);
        Ok(take)
    }

    fn len(&self) -> u64 {
        self.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: u8) -> Source {
        Arc::new((0..n).collect::<Vec<u8>>())
    }

    #[test]
    fn view_reads_its_range_only() {
        let view = View::new(bytes(100), 10, 20).unwrap();
        let mut buf = [0u8; 64];
        let n = view.read_at(&mut buf, 15).unwrap();
        assert_eq!(&buf[..n], &[25, 26, 27, 28, 29]);
    }

    #[test]
    fn view_past_its_end_reads_nothing() {
        let view = View::new(bytes(100), 10, 20).unwrap();
        assert_eq!(view.read_at(&mut [0u8; 4], 20).unwrap(), 0);
    }

    #[test]
    fn view_outside_its_base_is_refused() {
        assert!(View::new(bytes(100), 90, 11).is_none());
    }

    #[test]
    fn view_with_overflowing_range_is_refused() {
        assert!(View::new(bytes(100), u64::MAX, 2).is_none());
    }

    #[test]
    fn view_of_a_view_composes() {
        let outer = View::new(bytes(100), 10, 50).unwrap().shared();
        let inner = View::new(outer, 5, 10).unwrap();
        let mut buf = [0u8; 2];
        inner.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [15, 16]);
    }

    #[test]
    fn view_of_a_sparse_file_reports_holes_inside_the_view() {
        let tmp = tempfile::tempfile().unwrap();
        tmp.set_len(1 << 20).unwrap();
        tmp.write_all_at(&[1; 4096], 512 << 10).unwrap();
        let file = FileSource::shared(tmp).unwrap();
        let view = View::new(file, 256 << 10, 512 << 10).unwrap();
        let data = view.next_data(0).unwrap();
        // File systems without SEEK_DATA report everything as data; both are correct.
        assert!(matches!(data, Some(0) | Some(0x4_0000)), "{data:?}");
        assert!(view.next_hole(0x4_0000).unwrap() <= 512 << 10);
    }
}
