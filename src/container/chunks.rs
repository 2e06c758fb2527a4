//! A References file stored in chunks (DSP0243 §7.2, `ovf:chunkSize`): `HREF.000000000`,
//! `HREF.000000001`, ... beside the descriptor, each `chunkSize` bytes but the last. The
//! chunks are read as one [`Source`] in place, so a chunked disk is converted like any
//! other without being joined on disk first.
//!
//! Refused: no first chunk, a chunk other than the last whose length is not the chunk size,
//! an empty or oversized last chunk, more than [`CHUNKS_MAX`] chunks, a chunk that is not a
//! regular file (a symlink could lead out of the directory).

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::io::{FileSource, ReadAt, Source};

/// Most chunks one file may have (a 10 TiB disk in 1 GiB chunks is 10,240).
pub const CHUNKS_MAX: usize = 100_000;

/// The chunks of one file, read as one.
#[derive(Debug)]
pub struct Chunks {
    /// Each chunk and where it starts in the whole.
    parts: Vec<(FileSource, u64)>,
    len: u64,
}

/// The name of chunk `index` of `href`.
pub fn chunk_name(href: &str, index: usize) -> String {
    format!("{href}.{index:09}")
}

impl Chunks {
    /// Opens the chunks of `href` in `dir`, each `chunk_size` bytes but the last.
    ///
    /// # Errors
    /// The refusals of the module docs, naming the chunk; I/O.
    pub fn open(dir: &Path, href: &str, chunk_size: u64) -> Result<Source> {
        if chunk_size == 0 {
            return Err(refuse(href, "ovf:chunkSize is 0"));
        }
        let mut parts: Vec<(FileSource, u64)> = Vec::new();
        let mut len: u64 = 0;
        for index in 0..=CHUNKS_MAX {
            let name = chunk_name(href, index);
            let path = dir.join(&name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                break;
            };
            if index == CHUNKS_MAX {
                return Err(refuse(href, &format!("more than {CHUNKS_MAX} chunks")));
            }
            if !meta.is_file() {
                return Err(refuse(&name, "is not a regular file"));
            }
            if let Some((last, _)) = parts.last()
                && last.len() != chunk_size
            {
                let previous = chunk_name(href, index - 1);
                let message = format!("is {} bytes, not the chunk size {chunk_size}", last.len());
                return Err(refuse(&previous, &message));
            }
            let file = File::open(&path).map_err(|e| Error::io(e).with_path(&path))?;
            let source = FileSource::new(file).map_err(|e| Error::io(e).with_path(&path))?;
            if source.len() == 0 || source.len() > chunk_size {
                let message = format!("is {} bytes; a chunk holds 1 to {chunk_size}", source.len());
                return Err(refuse(&name, &message));
            }
            let start = len;
            len = len
                .checked_add(source.len())
                .ok_or_else(|| refuse(href, "chunks longer than 2^64 bytes"))?;
            parts.push((source, start));
        }
        if parts.is_empty() {
            let message = format!("has no first chunk `{}`", chunk_name(href, 0));
            return Err(refuse(href, &message));
        }
        Ok(Arc::new(Self { parts, len }))
    }
}

fn refuse(name: &str, message: &str) -> Error {
    Error::new(ErrorKind::InvalidImage, format!("chunk `{name}` {message}"))
}

impl ReadAt for Chunks {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        // The last chunk starting at or before `offset`.
        let i = self.parts.partition_point(|(_, start)| *start <= offset) - 1;
        let (part, start) = &self.parts[i];
        part.read_at(buf, offset - start)
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// Reads a [`Source`] front to back.
pub struct SourceReader {
    source: Source,
    offset: u64,
}

impl SourceReader {
    /// A reader from the start of `source`.
    pub fn new(source: Source) -> Self {
        Self { source, offset: 0 }
    }
}

impl io::Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.source.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn write_chunks(dir: &Path, parts: &[&[u8]]) {
        for (i, p) in parts.iter().enumerate() {
            std::fs::write(dir.join(chunk_name("d.vmdk", i)), p).unwrap();
        }
    }

    #[test]
    fn chunks_read_as_one_file() {
        let dir = tempfile::tempdir().unwrap();
        write_chunks(dir.path(), &[b"abcd", b"efgh", b"ij"]);
        let source = Chunks::open(dir.path(), "d.vmdk", 4).unwrap();
        assert_eq!(source.len(), 10);
        let mut all = Vec::new();
        SourceReader::new(source.clone())
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, b"abcdefghij");
        let mut two = [0u8; 2];
        assert_eq!(source.read_at(&mut two, 4).unwrap(), 2);
        assert_eq!(&two, b"ef");
    }

    #[test]
    fn a_short_middle_chunk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_chunks(dir.path(), &[b"abcd", b"ef", b"ij"]);
        let err = Chunks::open(dir.path(), "d.vmdk", 4).unwrap_err();
        assert!(err.to_string().contains("d.vmdk.000000001"), "{err}");
    }

    #[test]
    fn no_first_chunk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Chunks::open(dir.path(), "d.vmdk", 4).unwrap_err();
        assert!(err.to_string().contains("d.vmdk.000000000"), "{err}");
    }
}
