//! A byte range of another reader's virtual disk, read as a disk of its own: a partition of
//! an image in any format, in the image's single streaming pass.
//!
//! [`Window`] reads the inner disk from the start, drops the extents before the window, cuts
//! the ones that straddle its edges and stops reading once the window is done. Holes stay
//! holes. For a raw image a [`crate::io::View`] of the file is cheaper (it skips the prefix
//! without reading it); a window serves every format.

use super::{DiskReader, DiskWriter, Extent, ImageInfo, OwnedExtent, WriteReport};
use crate::error::{Error, Result};

/// Bytes `[start, start + len)` of `inner`'s virtual disk.
pub struct Window {
    inner: Box<dyn DiskReader>,
    start: u64,
    end: u64,
    /// Offset in the inner disk of the next inner extent.
    pos: u64,
    /// The in-window part of an extent that straddled the start, lent from here.
    cut: Vec<u8>,
}

impl Window {
    /// The window `[start, start + len)` of `inner`.
    ///
    /// # Errors
    /// The range does not lie inside the inner disk.
    pub fn new(inner: Box<dyn DiskReader>, start: u64, len: u64) -> Result<Self> {
        let size = inner.virtual_size();
        let end = start.checked_add(len).filter(|&end| end <= size);
        let Some(end) = end else {
            return Err(Error::invalid_input(format!(
                "range {start:#x}+{len:#x} lies outside the {size}-byte disk"
            )));
        };
        Ok(Self {
            inner,
            start,
            end,
            pos: 0,
            cut: Vec::new(),
        })
    }

    /// The in-window part `[lo, hi)` of an extent starting at `at` with length `len`.
    fn clip(&self, at: u64, len: u64) -> (u64, u64) {
        let lo = self.start.saturating_sub(at).min(len);
        let hi = (self.end - at.min(self.end)).min(len);
        (lo, hi.max(lo))
    }

    /// Skips inner extents that end before the window. Returns the first extent that
    /// reaches into it, owned, already clipped; `None` when the inner disk ended first.
    fn skip_to_start(&mut self, spare: &mut Vec<u8>) -> Result<Option<OwnedExtent>> {
        while self.pos < self.end {
            let Some(extent) = self.inner.next_owned_extent(spare)? else {
                return Ok(None);
            };
            let at = self.pos;
            self.pos += extent.len();
            if self.pos > self.start {
                return Ok(Some(self.clip_owned(extent, at)));
            }
            if let OwnedExtent::Data(buf) = extent {
                *spare = buf;
            }
        }
        Ok(None)
    }

    fn clip_owned(&self, extent: OwnedExtent, at: u64) -> OwnedExtent {
        let (lo, hi) = self.clip(at, extent.len());
        match extent {
            OwnedExtent::Data(mut buf) => {
                let (lo, hi) = (as_index(lo), as_index(hi));
                buf.truncate(hi);
                buf.drain(..lo);
                OwnedExtent::Data(buf)
            }
            OwnedExtent::Zero(_) => OwnedExtent::Zero(hi - lo),
            OwnedExtent::Unallocated(_) => OwnedExtent::Unallocated(hi - lo),
        }
    }
}

impl DiskReader for Window {
    fn virtual_size(&self) -> u64 {
        self.end - self.start
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        if self.start == self.end {
            return Ok(None);
        }
        if self.pos <= self.start {
            let mut spare = std::mem::take(&mut self.cut);
            let first = self.skip_to_start(&mut spare)?;
            return Ok(match first {
                None => None,
                Some(OwnedExtent::Data(buf)) => {
                    self.cut = buf;
                    Some(Extent::Data(&self.cut))
                }
                Some(OwnedExtent::Zero(len)) => Some(Extent::Zero(len)),
                Some(OwnedExtent::Unallocated(len)) => Some(Extent::Unallocated(len)),
            });
        }
        if self.pos >= self.end {
            return Ok(None);
        }
        let (start, end) = (self.start, self.end);
        let at = self.pos;
        let Some(extent) = self.inner.next_extent()? else {
            return Ok(None);
        };
        let len = extent.len();
        self.pos = at + len;
        let lo = start.saturating_sub(at).min(len);
        let hi = (end - at).min(len).max(lo);
        Ok(Some(match extent {
            Extent::Data(bytes) => Extent::Data(slice(bytes, lo, hi)),
            Extent::Zero(_) => Extent::Zero(hi - lo),
            Extent::Unallocated(_) => Extent::Unallocated(hi - lo),
        }))
    }

    fn next_owned_extent(&mut self, spare: &mut Vec<u8>) -> Result<Option<OwnedExtent>> {
        if self.start == self.end {
            return Ok(None);
        }
        if self.pos <= self.start {
            return self.skip_to_start(spare);
        }
        if self.pos >= self.end {
            return Ok(None);
        }
        let at = self.pos;
        let Some(extent) = self.inner.next_owned_extent(spare)? else {
            return Ok(None);
        };
        self.pos += extent.len();
        Ok(Some(self.clip_owned(extent, at)))
    }

    fn info(&self) -> ImageInfo {
        let mut info = self.inner.info();
        info.virtual_size = self.virtual_size();
        info.detail(
            "window",
            format!("{:#x}+{:#x}", self.start, self.virtual_size()),
        )
    }
}

/// `lo` or `hi` of [`Window::clip`], which never exceed a buffer's length.
fn as_index(n: u64) -> usize {
    usize::try_from(n).expect("clipped to a buffer length")
}

/// `bytes[lo..hi]` for a clipped range.
fn slice(bytes: &[u8], lo: u64, hi: u64) -> &[u8] {
    &bytes[as_index(lo)..as_index(hi)]
}

/// The writer mirror of [`Window`]: forwards to `inner` only the bytes `[start, start + len)`
/// of the disk it is fed, offsets shifted to 0; holes stay holes. An ami written in the
/// disk's single pass is a crop of it.
pub struct CropWriter {
    inner: Box<dyn DiskWriter>,
    start: u64,
    end: u64,
    /// Offset in the fed disk of the next extent.
    pos: u64,
}

impl CropWriter {
    /// Crops `[start, start + len)` into `inner`, a writer of a `len`-byte disk.
    ///
    /// # Errors
    /// The range overflows.
    pub fn new(inner: Box<dyn DiskWriter>, start: u64, len: u64) -> Result<Self> {
        let end = start
            .checked_add(len)
            .ok_or_else(|| Error::invalid_input(format!("range {start:#x}+{len:#x} overflows")))?;
        Ok(Self {
            inner,
            start,
            end,
            pos: 0,
        })
    }
}

impl DiskWriter for CropWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        let at = self.pos;
        let len = extent.len();
        self.pos = at.saturating_add(len);
        if self.pos <= self.start || at >= self.end {
            return Ok(());
        }
        let lo = self.start.saturating_sub(at);
        let hi = (self.end - at).min(len);
        let part = match extent {
            Extent::Data(bytes) => Extent::Data(&bytes[as_index(lo)..as_index(hi)]),
            Extent::Zero(_) => Extent::Zero(hi - lo),
            Extent::Unallocated(_) => Extent::Unallocated(hi - lo),
        };
        self.inner.write_extent(part)
    }

    fn finish(self: Box<Self>) -> Result<WriteReport> {
        if self.pos < self.end {
            return Err(Error::invalid_input(format!(
                "the disk ended at byte {:#x}, before the end {:#x} of the range",
                self.pos, self.end
            )));
        }
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::DiskFormat;

    /// Runs of data (`Ok`) and holes (`Err(len)`); counts the extents it lends.
    struct Runs {
        runs: Vec<std::result::Result<Vec<u8>, u64>>,
        next: usize,
    }

    impl DiskReader for Runs {
        fn virtual_size(&self) -> u64 {
            let len = |r: &std::result::Result<Vec<u8>, u64>| match r {
                Ok(bytes) => bytes.len() as u64,
                Err(len) => *len,
            };
            self.runs.iter().map(len).sum()
        }

        fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
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

    /// Data 0..10, hole 10..20, data 20..30 (bytes equal their offsets).
    fn disk() -> Box<Runs> {
        Box::new(Runs {
            runs: vec![Ok((0..10).collect()), Err(10), Ok((20..30).collect())],
            next: 0,
        })
    }

    /// The window's bytes (holes as 0xEE) and the extents read, through `next_extent`.
    fn borrowed(start: u64, len: u64) -> Vec<u8> {
        let mut w = Window::new(disk(), start, len).unwrap();
        let mut out = Vec::new();
        while let Some(e) = w.next_extent().unwrap() {
            match e {
                Extent::Data(b) => out.extend_from_slice(b),
                other => out.resize(out.len() + usize::try_from(other.len()).unwrap(), 0xEE),
            }
        }
        out
    }

    fn owned(start: u64, len: u64) -> Vec<u8> {
        let mut w = Window::new(disk(), start, len).unwrap();
        let mut out = Vec::new();
        let mut spare = Vec::new();
        while let Some(e) = w.next_owned_extent(&mut spare).unwrap() {
            match e {
                OwnedExtent::Data(b) => out.extend_from_slice(&b),
                other => out.resize(out.len() + usize::try_from(other.len()).unwrap(), 0xEE),
            }
        }
        out
    }

    #[test]
    fn window_cuts_straddling_extents_at_both_edges() {
        let expected = [&[5u8, 6, 7, 8, 9][..], &[0xEE; 10], &[20, 21]].concat();
        assert_eq!(borrowed(5, 17), expected);
    }

    #[test]
    fn owned_window_cuts_straddling_extents_at_both_edges() {
        let expected = [&[5u8, 6, 7, 8, 9][..], &[0xEE; 10], &[20, 21]].concat();
        assert_eq!(owned(5, 17), expected);
    }

    #[test]
    fn window_starting_inside_a_hole_keeps_the_hole() {
        assert_eq!(borrowed(12, 10), [&[0xEE; 8][..], &[20, 21]].concat());
    }

    #[test]
    fn window_on_an_extent_boundary_skips_whole_extents() {
        assert_eq!(owned(20, 10), (20..30).collect::<Vec<u8>>());
    }

    #[test]
    fn window_stops_reading_after_its_end() {
        let mut w = Window::new(disk(), 0, 10).unwrap();
        while w.next_extent().unwrap().is_some() {}
        assert_eq!(w.inner.info().virtual_size, 30);
        assert_eq!(w.pos, 10, "the hole and the last run were never read");
    }

    #[test]
    fn window_past_the_disk_is_refused() {
        assert!(Window::new(disk(), 25, 6).is_err());
    }

    /// Collects what a crop forwards (holes as 0xEE).
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl DiskWriter for Sink {
        fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
            let mut out = self.0.lock().unwrap();
            match extent {
                Extent::Data(b) => out.extend_from_slice(b),
                other => {
                    let n = out.len() + usize::try_from(other.len()).unwrap();
                    out.resize(n, 0xEE);
                }
            }
            Ok(())
        }

        fn finish(self: Box<Self>) -> Result<WriteReport> {
            Ok(WriteReport::default())
        }
    }

    #[test]
    fn crop_writer_forwards_only_the_range_and_keeps_holes() {
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut crop = CropWriter::new(Box::new(Sink(got.clone())), 5, 17).unwrap();
        let mut d = disk();
        while let Some(e) = d.next_extent().unwrap() {
            crop.write_extent(e).unwrap();
        }
        Box::new(crop).finish().unwrap();
        let expected = [&[5u8, 6, 7, 8, 9][..], &[0xEE; 10], &[20, 21]].concat();
        assert_eq!(*got.lock().unwrap(), expected);
    }

    #[test]
    fn crop_writer_fed_too_little_fails_at_finish() {
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut crop = CropWriter::new(Box::new(Sink(got)), 20, 20).unwrap();
        crop.write_extent(Extent::Data(&[1; 30])).unwrap();
        assert!(Box::new(crop).finish().is_err());
    }
}
