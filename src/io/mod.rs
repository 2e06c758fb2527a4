//! I/O: sources readers read from (files and views of them), sinks writers write to
//! (atomic output files, sparse positioned writes), positioned reads with error context,
//! the one bounded loader for on-disk tables ([`table`]), and OS specifics.
//!
//! `io` is the bottom layer: it imports nothing of the crate but the error type, so disk
//! formats, containers and the plan all build on it (enforced by `tests/layering.rs`).

pub mod crc;
pub mod output;
pub mod source;
pub(crate) mod sparse_out;
pub mod sys;
pub mod table;

pub use source::{FileSource, ReadAt, Source, View};

/// True when every byte of `buf` is zero.
pub fn is_zero(buf: &[u8]) -> bool {
    // OR-folding fixed-size chunks vectorises well; stop at the first non-zero chunk.
    let mut chunks = buf.chunks_exact(256);
    let body_zero = chunks.all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0);
    body_zero && chunks.remainder().iter().all(|&b| b == 0)
}

/// A sequential sink a writer can write into and hand back when it is done: any
/// `Write + Send` value. The caller gets it back from [`Sink::into_any`] and downcasts it
/// to the type it passed in.
pub trait Sink: std::io::Write + Send {
    /// The sink as `Any`, to be downcast by whoever created it.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

impl<T: std::io::Write + Send + 'static> Sink for T {
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

use crate::error::{Error, ErrorKind, Result};

/// Why a positioned read failed.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The range lies past the end of the file.
    #[error("{what} at offset {offset:#x} ({len} bytes) lies past the end of the file")]
    PastEnd {
        /// What was being read.
        what: &'static str,
        /// Byte offset.
        offset: u64,
        /// Requested length.
        len: usize,
    },
    /// The OS read failed.
    #[error("failed to read {what} at offset {offset:#x}")]
    Read {
        /// What was being read.
        what: &'static str,
        /// Byte offset.
        offset: u64,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Reads exactly `buf.len()` bytes at `offset` of `source`, looping over short reads, and
/// names `what` and the offset on failure.
///
/// # Errors
/// [`ReadError::PastEnd`] (as [`ErrorKind::InvalidImage`]) on a short source, else I/O.
pub fn read_exact_at(
    source: &dyn ReadAt,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<()> {
    fill_at(source, buf, offset).map_err(|source| {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::new(
                ErrorKind::InvalidImage,
                ReadError::PastEnd {
                    what,
                    offset,
                    len: buf.len(),
                },
            )
        } else {
            Error::new(
                ErrorKind::Io,
                ReadError::Read {
                    what,
                    offset,
                    source,
                },
            )
        }
        .at(offset, what)
    })
}

/// `read_exact_at` without context: fills `buf` or fails with `UnexpectedEof`.
fn fill_at(source: &dyn ReadAt, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match source.read_at(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_read_names_what_and_where_in_text_and_in_fields() {
        let bytes = vec![0u8; 10];
        let mut buf = [0u8; 8];
        let err = read_exact_at(&bytes, &mut buf, 6, "grain table").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidImage);
        assert!(
            err.to_string().contains("grain table at offset 0x6"),
            "{err}"
        );
        let place = err.place().expect("the read records its place");
        assert_eq!((place.offset, place.operation), (6, "grain table"));
        // The first place recorded is kept: the read that failed knows best.
        assert_eq!(err.at(0, "outer").place(), Some(place));
    }
}
