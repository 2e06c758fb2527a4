//! A positioned writer that leaves zeros as holes and coalesces small writes.
//!
//! Shared by the writers that place data at known offsets (raw, VHD, VDI, monolithicFlat
//! VMDK); `write_sparse` also leaves the zero 4 KiB pieces inside a block unwritten. Keeps one buffer of at most
//! [`SPARSE_COALESCE_BYTES`] in RAM.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::is_zero;
use crate::error::Result;

/// Granularity of hole detection: the common file-system block size.
pub(crate) const SPARSE_CHUNK: usize = 4096;
/// Most bytes gathered before one write.
const SPARSE_COALESCE_BYTES: usize = 1 << 20;
/// Runs at least this long are written straight from the caller's buffer, uncopied.
const SPARSE_DIRECT_BYTES: usize = 256 << 10;
/// Most bytes handed to one write, cut at multiples of it in the file. On the benchmark
/// machine (Linux 6.18, ext4) the kernel's copy into the page cache cost about twice the
/// CPU for 4 MiB writes as for 1 MiB ones; qemu-img writes at most 2 MiB.
pub(crate) const SPARSE_WRITE_PIECE: u64 = 1 << 20;

/// Writes runs at increasing or arbitrary offsets; contiguous small runs become one write.
pub(crate) struct SparseOut {
    file: File,
    pending: Vec<u8>,
    pending_offset: u64,
}

impl SparseOut {
    pub(crate) fn new(file: File) -> Self {
        Self {
            file,
            pending: Vec::with_capacity(SPARSE_COALESCE_BYTES),
            pending_offset: 0,
        }
    }

    /// The underlying file (flush first before positioned writes of your own).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Writes `bytes` at `offset` as they are.
    pub(crate) fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let contiguous = self.pending_offset + self.pending.len() as u64 == offset;
        if bytes.len() >= SPARSE_DIRECT_BYTES {
            self.flush()?;
            let (mut at, mut rest) = (offset, bytes);
            while !rest.is_empty() {
                let room = SPARSE_WRITE_PIECE - at % SPARSE_WRITE_PIECE;
                let n = rest.len().min(usize::try_from(room).unwrap_or(usize::MAX));
                self.file.write_all_at(&rest[..n], at)?;
                at += n as u64;
                rest = &rest[n..];
            }
            return Ok(());
        }
        if !contiguous || self.pending.len() + bytes.len() > SPARSE_COALESCE_BYTES {
            self.flush()?;
            self.pending_offset = offset;
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes `bytes` at `offset`, skipping every all-zero piece that covers a whole
    /// [`SPARSE_CHUNK`]-aligned range of the file, so those stay holes whatever the
    /// alignment of `offset`.
    pub(crate) fn write_sparse(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let chunk = SPARSE_CHUNK as u64;
        let mut run_start: Option<usize> = None;
        let mut at = 0;
        while at < bytes.len() {
            let to_boundary = chunk - (offset + at as u64) % chunk;
            let end = bytes
                .len()
                .min(at + usize::try_from(to_boundary).expect("below 4 KiB"));
            match (is_zero(&bytes[at..end]), run_start) {
                (true, Some(start)) => {
                    self.write(offset + start as u64, &bytes[start..at])?;
                    run_start = None;
                }
                (false, None) => run_start = Some(at),
                _ => {}
            }
            at = end;
        }
        if let Some(start) = run_start {
            self.write(offset + start as u64, &bytes[start..])?;
        }
        Ok(())
    }

    /// Writes `len` zero bytes at `offset`, allocating them (for full preallocation).
    pub(crate) fn write_zeros(&mut self, mut offset: u64, mut len: u64) -> Result<()> {
        self.flush()?;
        let zeros = vec![
            0u8;
            usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(SPARSE_COALESCE_BYTES)
        ];
        while len > 0 {
            let n = usize::try_from(len).unwrap_or(usize::MAX).min(zeros.len());
            self.file.write_all_at(&zeros[..n], offset)?;
            offset += n as u64;
            len -= n as u64;
        }
        Ok(())
    }

    /// Writes out the gathered bytes.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.file.write_all_at(&self.pending, self.pending_offset)?;
            self.pending.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn zero_chunks_stay_holes() {
        let file = tempfile::tempfile().unwrap();
        let mut out = SparseOut::new(file.try_clone().unwrap());
        let mut data = vec![0u8; 64 * SPARSE_CHUNK];
        data[0] = 1;
        data[63 * SPARSE_CHUNK] = 2;
        out.write_sparse(0, &data).unwrap();
        out.flush().unwrap();
        let mut back = vec![0u8; data.len()];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, data);
        assert!(file.metadata().unwrap().blocks() * 512 < 16 * SPARSE_CHUNK as u64);
    }

    #[test]
    fn holes_follow_file_alignment_not_buffer_alignment() {
        let file = tempfile::tempfile().unwrap();
        let mut out = SparseOut::new(file.try_clone().unwrap());
        let mut data = vec![0u8; 64 * SPARSE_CHUNK];
        data[0] = 1;
        let last = data.len() - 1;
        data[last] = 2;
        out.write_sparse(512, &data).unwrap();
        out.flush().unwrap();
        let mut back = vec![0u8; data.len()];
        file.read_exact_at(&mut back, 512).unwrap();
        assert_eq!(back, data);
        assert!(file.metadata().unwrap().blocks() * 512 <= 4 * SPARSE_CHUNK as u64);
    }
}
