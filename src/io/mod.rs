//! I/O helpers: atomic output files, positioned reads with error context, OS specifics.

pub mod output;
pub(crate) mod sparse_out;
pub mod sys;

use std::fs::File;
use std::os::unix::fs::FileExt;

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

/// Reads exactly `buf.len()` bytes at `offset`, naming `what` and the offset on failure.
///
/// # Errors
/// [`ReadError::PastEnd`] (as [`ErrorKind::InvalidImage`]) on a short file, else I/O.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64, what: &'static str) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|source| {
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
    })
}
