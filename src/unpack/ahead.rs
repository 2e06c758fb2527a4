//! Decoding ahead of the engine: a thread of its own runs the decoder into a small ring of
//! buffers while the engine's reading thread takes them, so on two cores decompressing
//! overlaps with everything the engine does with the bytes (zero detection, queueing,
//! the writers' copies into the page cache).
//!
//! Memory stays bounded: [`RING`] buffers of [`CHUNK`] bytes circulate between the two
//! threads (the decoder waits for one to come back before it decodes further).

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::read_full;
use super::stream::ImageInput;
use crate::error::{Error, Result};

/// Bytes per buffer of the ring.
pub(super) const CHUNK: usize = 1 << 20;
/// Buffers in the ring.
pub(super) const RING: usize = 4;

/// What the decoder thread sends.
enum Msg {
    /// A full buffer (shorter only at the end of the stream).
    Data(Vec<u8>),
    /// A read error of the decoder, after the bytes sent before it.
    Failed(io::Error),
    /// The image's `size` bytes were all sent; the input's end check.
    End(Result<()>),
}

/// An [`ImageInput`] whose bytes are decoded by a thread of its own, at most [`RING`]
/// buffers ahead.
pub(super) struct ReadAhead {
    rx: Receiver<Msg>,
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    /// The end check's result, once the decoder thread sent it.
    end: Option<Result<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts decoding `input`'s first `size` bytes (the image's declared size) on a new
    /// thread; its end check runs there when they are read.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(super) fn spawn(input: Box<dyn ImageInput>, size: u64) -> Result<Self> {
        let (tx, rx) = sync_channel::<Msg>(RING);
        let (spare, spare_rx) = sync_channel::<Vec<u8>>(RING + 1);
        let thread = std::thread::Builder::new()
            .name("kiln-decode".into())
            .spawn(move || {
                let mut input = input;
                decode(input.as_mut(), size, &tx, &spare_rx);
            })
            .map_err(Error::io)?;
        Ok(Self {
            rx,
            spare,
            current: Vec::new(),
            at: 0,
            end: None,
            thread: Some(thread),
        })
    }
}

/// The decoder thread: fills buffers from `input` until `size` bytes went out, then runs
/// the input's end check. Stops early when the reader hangs up.
fn decode(input: &mut dyn ImageInput, size: u64, tx: &SyncSender<Msg>, spare: &Receiver<Vec<u8>>) {
    let mut left = size;
    let mut allocated = 0;
    while left > 0 {
        // A returned buffer when there is one; a new one while the ring is not full.
        let mut buf = match spare.try_recv() {
            Ok(buf) => buf,
            Err(_) if allocated < RING + 1 => {
                allocated += 1;
                Vec::with_capacity(CHUNK)
            }
            Err(_) => match spare.recv() {
                Ok(buf) => buf,
                Err(_) => return,
            },
        };
        let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        buf.resize(want, 0);
        let n = match read_full(input, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        };
        buf.truncate(n);
        left -= n as u64;
        if tx.send(Msg::Data(buf)).is_err() {
            return;
        }
        if n < want {
            // Ended early: the reader reports it as truncated, with its own count.
            return;
        }
    }
    let _ = tx.send(Msg::End(input.finish(size)));
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if self.end.is_some() {
                return Ok(0);
            }
            let next = match self.rx.recv() {
                Ok(msg) => msg,
                // The thread ended without a message: the stream ended short.
                Err(_) => return Ok(0),
            };
            match next {
                Msg::Data(buf) if buf.is_empty() => return Ok(0),
                Msg::Data(buf) => {
                    let old = std::mem::replace(&mut self.current, buf);
                    self.at = 0;
                    if old.capacity() > 0 {
                        // The thread may be gone (an error); the buffer is then dropped.
                        let _ = self.spare.try_send(old);
                    }
                }
                Msg::Failed(e) => return Err(e),
                Msg::End(result) => self.end = Some(result),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl ImageInput for ReadAhead {
    fn finish(&mut self, _read: u64) -> Result<()> {
        loop {
            if let Some(result) = self.end.take() {
                return result;
            }
            match self.rx.recv() {
                Ok(Msg::End(result)) => return result,
                Ok(Msg::Failed(e)) => return Err(Error::io(e)),
                // The caller read every byte before its end check; nothing is left unread.
                Ok(Msg::Data(_)) => {}
                Err(_) => {
                    let e = io::Error::other("the decoder stopped before the end of the image");
                    return Err(Error::io(e));
                }
            }
        }
    }
}

impl Drop for ReadAhead {
    /// Hangs up both channels, then waits for the thread: it stops at its next send or
    /// its next wait for a buffer.
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.rx, sync_channel(0).1));
        drop(std::mem::replace(&mut self.spare, sync_channel(0).0));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` bytes of a counting pattern; its end check fails when `fail_end`.
    struct Pattern {
        at: u64,
        len: u64,
        fail_end: bool,
    }

    impl Read for Pattern {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = usize::try_from(self.len - self.at).map_or(out.len(), |l| l.min(out.len()));
            for (i, b) in out[..n].iter_mut().enumerate() {
                *b = u8::try_from((self.at + i as u64) % 251).unwrap_or(0);
            }
            self.at += n as u64;
            Ok(n)
        }
    }

    impl ImageInput for Pattern {
        fn finish(&mut self, _read: u64) -> Result<()> {
            if self.fail_end {
                return Err(Error::invalid_input("trailing data"));
            }
            Ok(())
        }
    }

    fn pattern(len: u64, fail_end: bool) -> Box<dyn ImageInput> {
        Box::new(Pattern {
            at: 0,
            len,
            fail_end,
        })
    }

    #[test]
    fn every_byte_arrives_in_order_through_the_ring() {
        let len = (RING as u64 + 3) * CHUNK as u64 + 12_345;
        let mut ahead = ReadAhead::spawn(pattern(len, false), len).unwrap();
        let mut got = Vec::new();
        ahead.read_to_end(&mut got).unwrap();
        assert_eq!(got.len() as u64, len);
        assert!((got.iter().enumerate()).all(|(i, b)| u64::from(*b) == (i as u64) % 251));
        ahead.finish(len).unwrap();
    }

    #[test]
    fn the_end_check_runs_on_the_thread_and_reaches_the_reader() {
        let mut ahead = ReadAhead::spawn(pattern(1000, true), 1000).unwrap();
        let mut got = Vec::new();
        ahead.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 1000);
        assert!(ahead.finish(1000).is_err());
    }

    #[test]
    fn a_short_stream_ends_early_and_dropping_midway_does_not_hang() {
        let mut short = ReadAhead::spawn(pattern(10, false), 100).unwrap();
        let mut got = Vec::new();
        short.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 10);
        // A reader that stops after a byte: the thread is blocked on a full ring.
        let len = 64 * CHUNK as u64;
        let mut ahead = ReadAhead::spawn(pattern(len, false), len).unwrap();
        let mut byte = [0u8; 1];
        ahead.read_exact(&mut byte).unwrap();
        drop(ahead);
    }
}
