//! The crate-level error: a small kind, the file it concerns, and the module error as source.
//!
//! Format modules keep their own `thiserror` enums whose messages carry byte offsets; they
//! fold into [`Error`] at the module edge with a kind that tells the CLI how to report it.
//! The context a caller may want as data rather than text (the file, and for failed reads
//! and refused tables the byte offset and what was being read) travels in fields, attached
//! once: the place by the read that failed, the path by the edge that opened the file.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};

/// Result with the crate error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, broadly: decides how the CLI reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing a file failed.
    Io,
    /// An image is malformed or inconsistent.
    InvalidImage,
    /// A spec or option is invalid.
    InvalidInput,
    /// The request is valid but kiln does not implement it.
    Unsupported,
    /// The image is refused on safety grounds (backing files, external data files, ...).
    Refused,
}

/// Where in a file an error arose: the byte offset and what was being read there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// Byte offset in the file (or in the member or partition read as one).
    pub offset: u64,
    /// What was being read ("VHD BAT", "grain table").
    pub operation: &'static str,
}

/// The crate error: kind, optional file path and place, and the underlying cause.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    path: Option<PathBuf>,
    place: Option<Place>,
    source: Box<dyn StdError + Send + Sync>,
}

impl Error {
    /// Wraps `source` with `kind`.
    pub fn new(kind: ErrorKind, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            kind,
            path: None,
            place: None,
            source: source.into(),
        }
    }

    /// An I/O failure.
    pub fn io(source: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, source)
    }

    /// An invalid option, size or spec value; `message` is one sentence.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message.into())
    }

    /// A feature kiln does not implement; `message` names it.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message.into())
    }

    /// Attaches the file this error concerns, unless one is already attached.
    #[must_use]
    pub fn with_path(mut self, path: &Path) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_path_buf());
        }
        self
    }

    /// Records where in the file the error arose, unless a place is already recorded. The
    /// message text is unchanged: module errors already name the offset in words.
    #[must_use]
    pub fn at(mut self, offset: u64, operation: &'static str) -> Self {
        if self.place.is_none() {
            self.place = Some(Place { offset, operation });
        }
        self
    }

    /// Where in the file the error arose, when the failing read or table recorded it.
    pub fn place(&self) -> Option<Place> {
        self.place
    }

    /// The broad kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file this error concerns, when known.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The underlying cause (a module error, an I/O error, a message). It is not exposed as
    /// `source()`: `Display` already prints the whole chain on one line.
    pub fn cause(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        write!(f, "{}", self.source)?;
        // Print the chain on one line: the CLI contract is a one-line error.
        let mut cause = self.source.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl StdError for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::io(e)
    }
}
