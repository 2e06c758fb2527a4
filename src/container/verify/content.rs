//! One read of each package file: its manifest digests and, for a disk, the whole image read
//! through, in the same pass.
//!
//! A disk file is opened by the disk engine (format probed) through a [`HashingSource`]: the
//! reader's reads pass through, and the bytes they cover are hashed in file order. A read
//! a little ahead of what has been hashed (a stream VMDK's grain table sits after its
//! grains) first hashes the gap by reading it, so the reader then finds those bytes in the
//! page cache; a read far ahead (the footer and grain directory at the end) is not waited
//! for. Whatever is left is hashed at the end. The digests are computed on a thread of
//! their own, fed in 1 MiB chunks, so hashing and decompression use both cores.
//!
//! RAM: the disk reader's own buffers and at most [`HASH_QUEUE`] + 2 chunks of 1 MiB.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use super::package::PackageFile;
use crate::container::manifest::{Algorithm, Hasher};
use crate::disk::{self, OpenOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::io::{ReadAt, Source};

/// Bytes hashed per message to the hashing thread.
const HASH_CHUNK: usize = 1 << 20;
/// Chunks queued for the hashing thread before the reader waits.
const HASH_QUEUE: usize = 8;
/// How far ahead of the hashed prefix a read may start and still have the gap hashed first.
const GAP_WINDOW: u64 = 64 << 20;

/// What reading one file found.
#[derive(Debug, Clone, Default)]
pub struct FileCheck {
    /// The digests asked for, lower-case hex.
    pub digests: Vec<(Algorithm, String)>,
    /// The disk image, when the file was read as one.
    pub disk: Option<DiskCheck>,
}

/// A disk image read through.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiskCheck {
    /// Detected format (`vmdk`).
    pub format: String,
    /// Variant (`streamOptimized`).
    pub subformat: Option<String>,
    /// Guest-visible size.
    pub virtual_size: u64,
    /// Why the image could not be read to its end, if it could not.
    pub error: Option<String>,
}

/// Reads `file` once: hashes it with `algs` and, when `as_disk`, reads it through as a
/// disk image named `label` in errors.
///
/// # Errors
/// I/O failures of the package itself; a disk that cannot be read is a [`DiskCheck::error`].
pub fn check_file(
    file: &PackageFile,
    algs: &[Algorithm],
    as_disk: bool,
    label: &Path,
) -> Result<FileCheck> {
    let pipe = HashPipe::new(algs);
    if !as_disk {
        let mut pipe = pipe;
        hash_range(&*file.src, 0, file.len(), &mut pipe)?;
        return Ok(FileCheck {
            digests: pipe.finish()?,
            disk: None,
        });
    }
    let hashing = std::sync::Arc::new(HashingSource {
        inner: file.src.clone(),
        state: Mutex::new(HashState { cursor: 0, pipe }),
    });
    let disk = read_disk(hashing.clone(), label);
    // The reader held the only other handle and is gone.
    let mut state = std::sync::Arc::try_unwrap(hashing)
        .map_err(|_| Error::new(ErrorKind::Io, "disk reader outlived its walk"))?
        .state
        .into_inner()
        .map_err(|_| Error::new(ErrorKind::Io, "hashing state poisoned"))?;
    let cursor = state.cursor;
    hash_range(&*file.src, cursor, file.len(), &mut state.pipe)?;
    Ok(FileCheck {
        digests: state.pipe.finish()?,
        disk: Some(disk),
    })
}

/// Opens `src` as a disk image and reads every extent.
fn read_disk(src: Source, label: &Path) -> DiskCheck {
    let opts = OpenOptions::default();
    let mut reader = match disk::open_source(src, label, &opts) {
        Ok(r) => r,
        Err(e) => {
            return DiskCheck {
                format: "unknown".into(),
                subformat: None,
                virtual_size: 0,
                error: Some(e.to_string()),
            };
        }
    };
    let info = reader.info();
    let mut walked: u64 = 0;
    let error = loop {
        match reader.next_extent() {
            Ok(Some(extent)) => walked += extent.len(),
            Ok(None) if walked == info.virtual_size => break None,
            Ok(None) => {
                break Some(format!(
                    "{}: the image ends at {walked:#x}, before its virtual size {:#x}",
                    label.display(),
                    info.virtual_size
                ));
            }
            Err(e) => break Some(e.to_string()),
        }
    };
    DiskCheck {
        format: info.format.to_string(),
        subformat: info.subformat,
        virtual_size: info.virtual_size,
        error,
    }
}

/// Hashes `[from, to)` of `src` in order, reading straight into the pipe's buffers.
fn hash_range(src: &dyn ReadAt, from: u64, to: u64, pipe: &mut HashPipe) -> Result<()> {
    let mut at = from;
    while at < to && !pipe.is_idle() {
        let room = pipe.room();
        let want = usize::try_from(to - at).map_or(room.len(), |left| left.min(room.len()));
        crate::io::read_exact_at(src, &mut room[..want], at, "package file")?;
        pipe.advance(want);
        at += want as u64;
    }
    Ok(())
}

/// A source that hashes, in order, the bytes its reader reads (see the module docs).
#[derive(Debug)]
struct HashingSource {
    inner: Source,
    state: Mutex<HashState>,
}

#[derive(Debug)]
struct HashState {
    /// Bytes `[0, cursor)` have been hashed.
    cursor: u64,
    pipe: HashPipe,
}

impl ReadAt for HashingSource {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("hashing state poisoned"))?;
        if offset > st.cursor && offset - st.cursor <= GAP_WINDOW {
            let cursor = st.cursor;
            hash_range(&*self.inner, cursor, offset, &mut st.pipe)
                .map_err(std::io::Error::other)?;
            st.cursor = offset;
        }
        let n = self.inner.read_at(buf, offset)?;
        let end = offset + n as u64;
        if offset <= st.cursor && end > st.cursor {
            let from = usize::try_from(st.cursor - offset).unwrap_or(0);
            st.pipe.update(&buf[from..n]);
            st.cursor = end;
        }
        Ok(n)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn next_data(&self, offset: u64) -> std::io::Result<Option<u64>> {
        self.inner.next_data(offset)
    }

    fn next_hole(&self, offset: u64) -> std::io::Result<u64> {
        self.inner.next_hole(offset)
    }

    fn prefetch(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.inner.prefetch(offset, len)
    }
}

/// Digests computed on a thread of their own from chunks sent in order. Buffers go back
/// to the sender once hashed, so a long file reuses the same few (no allocation or page
/// faults per chunk).
#[derive(Debug)]
struct HashPipe {
    algs: Vec<Algorithm>,
    /// The chunk being filled (always [`HASH_CHUNK`] long) and how much of it is.
    buf: Vec<u8>,
    filled: usize,
    tx: Option<SyncSender<(Vec<u8>, usize)>>,
    spare: Option<Receiver<Vec<u8>>>,
    worker: Option<JoinHandle<Vec<Hasher>>>,
}

impl HashPipe {
    fn new(algs: &[Algorithm]) -> Self {
        let mut pipe = Self {
            algs: algs.to_vec(),
            buf: Vec::new(),
            filled: 0,
            tx: None,
            spare: None,
            worker: None,
        };
        if algs.is_empty() {
            return pipe;
        }
        let (tx, rx) = sync_channel::<(Vec<u8>, usize)>(HASH_QUEUE);
        let (back_tx, back_rx) = channel::<Vec<u8>>();
        let mut hashers: Vec<Hasher> = algs.iter().map(|a| a.hasher()).collect();
        let worker = std::thread::spawn(move || {
            for (chunk, len) in rx {
                hashers.iter_mut().for_each(|h| h.update(&chunk[..len]));
                // The sender may be gone already; then the buffer is simply dropped.
                let _ = back_tx.send(chunk);
            }
            hashers
        });
        pipe.buf = vec![0; HASH_CHUNK];
        pipe.tx = Some(tx);
        pipe.spare = Some(back_rx);
        pipe.worker = Some(worker);
        pipe
    }

    /// True when no digest is wanted.
    fn is_idle(&self) -> bool {
        self.tx.is_none()
    }

    /// The unfilled rest of the current chunk (never empty while the pipe is busy).
    fn room(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// Counts `n` bytes written into [`HashPipe::room`] and sends a full chunk.
    fn advance(&mut self, n: usize) {
        self.filled += n;
        if self.filled < self.buf.len() {
            return;
        }
        let Some(tx) = &self.tx else {
            return;
        };
        let next = self
            .spare
            .as_ref()
            .and_then(|r| r.try_recv().ok())
            .unwrap_or_else(|| vec![0; HASH_CHUNK]);
        let full = std::mem::replace(&mut self.buf, next);
        // A send fails only when the worker is gone; `finish` reports that.
        let _ = tx.send((full, self.filled));
        self.filled = 0;
    }

    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.is_idle() {
            let room = self.room();
            let take = room.len().min(bytes.len());
            room[..take].copy_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            self.advance(take);
        }
    }

    fn finish(mut self) -> Result<Vec<(Algorithm, String)>> {
        let Some(tx) = self.tx.take() else {
            return Ok(Vec::new());
        };
        if self.filled > 0 {
            let _ = tx.send((std::mem::take(&mut self.buf), self.filled));
        }
        drop(tx);
        let hashers = self
            .worker
            .take()
            .map(JoinHandle::join)
            .ok_or_else(|| Error::new(ErrorKind::Io, "no hashing thread"))?
            .map_err(|_| Error::new(ErrorKind::Io, "the hashing thread panicked"))?;
        Ok(self
            .algs
            .iter()
            .copied()
            .zip(hashers.into_iter().map(Hasher::finish_hex))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::container::manifest::digest_hex;

    fn file(bytes: Vec<u8>) -> PackageFile {
        PackageFile {
            name: "f".into(),
            src: Arc::new(bytes),
            header_offset: None,
        }
    }

    #[test]
    fn a_plain_file_is_hashed_whole() {
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let want = digest_hex(Algorithm::Sha256, &bytes);
        let got = check_file(&file(bytes), &[Algorithm::Sha256], false, Path::new("f")).unwrap();
        assert_eq!(got.digests, [(Algorithm::Sha256, want)]);
    }

    #[test]
    fn reads_out_of_order_still_hash_the_file_in_order() {
        let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
        let want = digest_hex(Algorithm::Sha1, &bytes);
        let src = HashingSource {
            inner: Arc::new(bytes),
            state: Mutex::new(HashState {
                cursor: 0,
                pipe: HashPipe::new(&[Algorithm::Sha1]),
            }),
        };
        let mut buf = [0u8; 1000];
        for offset in [4_999_000, 10, 0, 2_000_000, 1_000, 4_000_000] {
            src.read_at(&mut buf, offset).unwrap();
        }
        let mut st = src.state.into_inner().unwrap();
        let cursor = st.cursor;
        hash_range(&*src.inner, cursor, src.inner.len(), &mut st.pipe).unwrap();
        assert_eq!(st.pipe.finish().unwrap(), [(Algorithm::Sha1, want)]);
    }

    #[test]
    fn a_file_that_is_not_an_image_reports_the_reader_error() {
        let got = check_file(
            &file(vec![b'K', b'D', b'M', b'V', 9, 9, 9, 9]),
            &[],
            true,
            Path::new("x.vmdk"),
        )
        .unwrap();
        assert!(got.disk.unwrap().error.is_some());
    }
}
