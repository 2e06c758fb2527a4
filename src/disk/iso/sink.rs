//! Where the ISO writer's bytes go, front to back: any `Write` (one sequential stream), or
//! a file written with positioned writes. Into a file, metadata, padding and small files
//! are gathered into one 1 MiB buffer (many small files become few large writes), larger
//! files are copied by the kernel (`copy_file_range`, no trip through user space), and the
//! volume descriptors can be filled in last. The output set's flusher keeps the disk writing
//! while the image is produced. Either way the bytes are the same. RAM: the buffer (at most 1 MiB plus one small file).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::IsoError;
use super::records::ISO_SECTOR;
use crate::error::Result;
use crate::io::sys;

/// Bytes gathered before one write, and the copy buffer of the stream path.
const SINK_BUFFER: usize = 1 << 20;
/// Files at least this large are copied by the kernel; smaller ones go through the buffer.
const SINK_KERNEL_COPY_MIN: u64 = 64 << 10;
/// Largest single `copy_file_range` request (keeps each system call short).
const SINK_COPY_CHUNK: u64 = 16 << 20;

/// The output with its position, so every structure can be checked against the plan.
pub(super) struct Sink<'a> {
    out: Out<'a>,
    /// Bytes produced so far (written or buffered).
    pub pos: u64,
}

enum Out<'a> {
    Stream(&'a mut dyn Write),
    File(FileOut<'a>),
}

/// Positioned writes into a file: `pending` holds the bytes from `flushed` on.
struct FileOut<'a> {
    file: &'a File,
    pending: Vec<u8>,
    flushed: u64,
}

impl<'a> Sink<'a> {
    /// A sink writing sequentially to `out` (unbuffered: wrap it in a `BufWriter`).
    pub fn stream(out: &'a mut dyn Write) -> Self {
        Self {
            out: Out::Stream(out),
            pos: 0,
        }
    }

    /// A sink writing `file` from offset 0 with positioned writes; call [`Sink::finish`].
    pub fn file(file: &'a File) -> Self {
        let out = FileOut {
            file,
            pending: Vec::with_capacity(SINK_BUFFER),
            flushed: 0,
        };
        Self {
            out: Out::File(out),
            pos: 0,
        }
    }

    /// Writes what is still buffered.
    pub fn finish(&mut self) -> Result<()> {
        match &mut self.out {
            Out::Stream(out) => out.flush()?,
            Out::File(out) => out.flush()?,
        }
        Ok(())
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.out {
            Out::Stream(out) => out.write_all(bytes)?,
            Out::File(out) => out.push(bytes)?,
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }

    pub fn pad_to(&mut self, target: u64) -> Result<()> {
        if target < self.pos {
            return Err(IsoError::LayoutMismatch {
                offset: self.pos,
                planned: target,
            }
            .into());
        }
        let zeros = [0u8; ISO_SECTOR];
        while self.pos < target {
            let n =
                usize::try_from((target - self.pos).min(ISO_SECTOR as u64)).unwrap_or(ISO_SECTOR);
            self.write(&zeros[..n])?;
        }
        Ok(())
    }

    /// Writes `bytes` at block `lba` (which must be the current position), then pads to a
    /// whole block.
    pub fn write_padded(&mut self, bytes: &[u8], lba: u32) -> Result<()> {
        let start = u64::from(lba) * ISO_SECTOR as u64;
        if start != self.pos {
            return Err(IsoError::LayoutMismatch {
                offset: self.pos,
                planned: start,
            }
            .into());
        }
        self.write(bytes)?;
        let end = self.pos.div_ceil(ISO_SECTOR as u64) * ISO_SECTOR as u64;
        self.pad_to(end)
    }

    /// Overwrites `bytes` at `offset`, inside what was already written (the volume
    /// descriptors, filled in last). Only a file sink can go back.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let end = offset.checked_add(bytes.len() as u64);
        match &mut self.out {
            Out::File(out) if end.is_some_and(|end| end <= self.pos) => {
                out.flush()?;
                out.file.write_all_at(bytes, offset)?;
                Ok(())
            }
            _ => Err(IsoError::LayoutMismatch {
                offset,
                planned: self.pos,
            }
            .into()),
        }
    }

    /// Writes exactly `size` bytes of the file at `path`, failing if it has fewer or more
    /// (it changed since the layout was planned): nothing is written past its extent.
    pub fn copy_file(&mut self, path: &Path, size: u64) -> Result<()> {
        let source = Source::open(path, size)?;
        match &mut self.out {
            Out::File(out) if size >= SINK_KERNEL_COPY_MIN => out.copy(&source)?,
            Out::File(out) => out.read_small(&source)?,
            Out::Stream(out) => stream_copy(&source, 0, &mut **out)?,
        }
        source.check_end()?;
        self.pos += size;
        Ok(())
    }
}

/// A source file being copied, with its planned size.
struct Source<'p> {
    file: File,
    path: &'p Path,
    size: u64,
}

impl<'p> Source<'p> {
    fn open(path: &'p Path, size: u64) -> Result<Self> {
        let file = File::open(path).map_err(|e| read_error(path, e))?;
        Ok(Self { file, path, size })
    }

    fn changed(&self) -> crate::Error {
        IsoError::SourceChanged {
            path: self.path.to_path_buf(),
            expected: self.size,
        }
        .into()
    }

    /// Fails if the file now has more bytes than planned.
    fn check_end(&self) -> Result<()> {
        let mut probe = [0u8; 1];
        let more = (self.file)
            .read_at(&mut probe, self.size)
            .map_err(|e| read_error(self.path, e))?;
        if more != 0 {
            return Err(self.changed());
        }
        Ok(())
    }
}

fn read_error(path: &Path, source: std::io::Error) -> crate::Error {
    IsoError::OpenSource {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// Copies `source` from byte `done` to its planned end through a buffer into `out`.
fn stream_copy(source: &Source<'_>, done: u64, out: &mut dyn Write) -> Result<()> {
    let mut buf = vec![0u8; SINK_BUFFER];
    let mut pos = done;
    while pos < source.size {
        let want =
            usize::try_from((source.size - pos).min(SINK_BUFFER as u64)).unwrap_or(SINK_BUFFER);
        let got = (source.file)
            .read_at(&mut buf[..want], pos)
            .map_err(|e| read_error(source.path, e))?;
        if got == 0 {
            return Err(source.changed());
        }
        out.write_all(&buf[..got])?;
        pos += got as u64;
    }
    Ok(())
}

impl FileOut<'_> {
    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.pending.len() + bytes.len() > SINK_BUFFER {
            self.flush()?;
        }
        if bytes.len() >= SINK_BUFFER {
            self.file.write_all_at(bytes, self.flushed)?;
            self.advance(bytes.len() as u64);
            return Ok(());
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.pending, self.flushed)?;
        let len = self.pending.len() as u64;
        self.pending.clear();
        self.advance(len);
        Ok(())
    }

    /// Records `len` bytes handed to the kernel.
    fn advance(&mut self, len: u64) {
        self.flushed += len;
    }

    /// Reads a small file straight into the buffer.
    fn read_small(&mut self, source: &Source<'_>) -> Result<()> {
        let len = usize::try_from(source.size).unwrap_or(usize::MAX);
        self.pending.reserve(len);
        let got = (&source.file)
            .take(source.size)
            .read_to_end(&mut self.pending)
            .map_err(|e| read_error(source.path, e))?;
        if got != len {
            return Err(source.changed());
        }
        if self.pending.len() >= SINK_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Copies a large file with `copy_file_range` into its place right after the buffer;
    /// where the kernel cannot, the rest goes through the buffer.
    fn copy(&mut self, source: &Source<'_>) -> Result<()> {
        self.flush()?;
        let mut done = 0u64;
        while done < source.size {
            let want =
                usize::try_from((source.size - done).min(SINK_COPY_CHUNK)).unwrap_or(SINK_BUFFER);
            match sys::copy_range(&source.file, done, self.file, self.flushed, want) {
                Ok(n) if n > 0 => {
                    done += n as u64;
                    self.advance(n as u64);
                }
                // 0 (end of file or a pseudo file system) or no kernel copy: read the rest,
                // which also tells a shrunken file from one the kernel cannot copy.
                _ => return self.stream_rest(source, done),
            }
        }
        Ok(())
    }

    fn stream_rest(&mut self, source: &Source<'_>, done: u64) -> Result<()> {
        let mut writer = PendingWriter(self);
        stream_copy(source, done, &mut writer)?;
        Ok(self.flush()?)
    }
}

/// `Write` over a [`FileOut`]'s buffer, for the read-and-write fallback.
struct PendingWriter<'o, 'f>(&'o mut FileOut<'f>);

impl Write for PendingWriter<'_, '_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.push(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom};

    use super::*;

    /// Writes `files` (path, size) through `sink`, each padded to a block.
    fn write_all(sink: &mut Sink<'_>, files: &[(std::path::PathBuf, u64)]) -> Result<()> {
        sink.write(b"head")?;
        for (path, size) in files {
            let block = sink.pos.div_ceil(ISO_SECTOR as u64) * ISO_SECTOR as u64;
            sink.pad_to(block)?;
            sink.copy_file(path, *size)?;
        }
        sink.finish()
    }

    /// A small file, one just over the kernel-copy threshold, and a sparse 40 MiB file with
    /// data only at both ends (several copy chunks, a hole that must read as zeros).
    fn sources(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
        let small = dir.join("small");
        std::fs::write(&small, b"small file").unwrap();
        let medium = dir.join("medium");
        let bytes: Vec<u8> = (0..70_001u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&medium, &bytes).unwrap();
        let sparse = dir.join("sparse");
        let mut f = File::create(&sparse).unwrap();
        f.write_all(b"start").unwrap();
        f.seek(SeekFrom::Start((40 << 20) - 3)).unwrap();
        f.write_all(b"end").unwrap();
        vec![(small, 10), (medium, 70_001), (sparse, 40 << 20)]
    }

    #[test]
    fn file_sink_writes_the_same_bytes_as_the_stream_sink() {
        let dir = tempfile::tempdir().unwrap();
        let files = sources(dir.path());
        let mut streamed = Vec::new();
        write_all(&mut Sink::stream(&mut streamed), &files).unwrap();
        let out = File::create(dir.path().join("out")).unwrap();
        write_all(&mut Sink::file(&out), &files).unwrap();
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), streamed);
    }

    #[test]
    fn sparse_source_reads_as_zeros_between_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let files = sources(dir.path());
        let out = File::create(dir.path().join("out")).unwrap();
        write_all(&mut Sink::file(&out), &files[2..]).unwrap();
        let image = std::fs::read(dir.path().join("out")).unwrap();
        let data = &image[ISO_SECTOR..];
        assert_eq!(
            (&data[..5], &data[data.len() - 3..]),
            (&b"start"[..], &b"end"[..])
        );
        assert!(data[5..data.len() - 3].iter().all(|&b| b == 0));
    }

    #[test]
    fn file_sink_fills_in_written_bytes_but_a_stream_cannot_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = File::create(dir.path().join("out")).unwrap();
        let mut sink = Sink::file(&out);
        sink.write(b"0123456789").unwrap();
        sink.write_at(2, b"ab").unwrap();
        sink.finish().unwrap();
        let mut streamed = Vec::new();
        let mut stream = Sink::stream(&mut streamed);
        stream.write(b"0123").unwrap();
        assert!(stream.write_at(0, b"x").is_err());
        assert_eq!(
            std::fs::read(dir.path().join("out")).unwrap(),
            b"01ab456789"
        );
    }

    #[test]
    fn source_that_grew_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = sources(dir.path());
        let out = File::create(dir.path().join("out")).unwrap();
        let err = Sink::file(&out).copy_file(&files[1].0, 70_000).unwrap_err();
        assert!(err.to_string().contains("changed size"), "{err}");
    }

    #[test]
    fn source_that_shrank_is_refused_without_writing_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = sources(dir.path());
        let out = File::create(dir.path().join("out")).unwrap();
        let mut sink = Sink::file(&out);
        let err = sink.copy_file(&files[1].0, 1 << 20).unwrap_err();
        sink.finish().unwrap();
        assert!(err.to_string().contains("changed size"), "{err}");
        assert!(out.metadata().unwrap().len() <= 70_001);
    }
}
