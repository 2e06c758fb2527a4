//! Reading source files into the page cache ahead of the copy. Pages of a source tree are
//! often partly evicted (here by proactive reclaim minutes after the tree was read); the
//! copy then reads each missing page when it reaches it, and such a read waits behind the
//! output's queued writes and cache flushes: on a 2 GiB tree 41 reads of 4 KiB took over
//! 5 ms each, 4.7 s of stalls in all. A helper thread opens each file in copy order and
//! asks for it (`POSIX_FADV_WILLNEED`, which reads only what is missing, without waiting),
//! at most [`PREFETCH_WINDOW`] bytes ahead of the copy so a tree larger than the page cache
//! does not evict its own prefetched files. Advice only: errors are ignored here, the copy
//! reads (and reports) the files itself. RAM: the queue of paths not yet prefetched.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use crate::io::sys;

/// How far the prefetch may run ahead of the copy, in bytes of file data.
const PREFETCH_WINDOW: u64 = 256 << 20;

/// The files to prefetch, in copy order; clones can be handed to other threads. The
/// default queue prefetches nothing.
#[derive(Debug, Clone, Default)]
pub(super) struct PrefetchQueue(Option<mpsc::Sender<(PathBuf, u64)>>);

impl PrefetchQueue {
    /// Queues `size` bytes of `path`, the next file the copy will read.
    pub fn want(&self, path: &Path, size: u64) {
        if let Some(files) = &self.0 {
            // A send fails only when the helper stopped: the copy just reads unaided.
            let _ = files.send((path.to_path_buf(), size));
        }
    }
}

/// The helper thread's handle: the copy reports its progress here. Dropping it stops the
/// thread (it only gives advice, so nothing waits for it).
#[derive(Debug)]
pub(super) struct Prefetcher {
    queue: PrefetchQueue,
    progress: Arc<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes of file data the copy has finished.
    copied: u64,
    /// The copy is over (finished or failed).
    stopped: bool,
}

impl Progress {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Prefetcher {
    /// Starts the helper thread; without one (spawn failed) the copy reads unaided.
    pub fn start() -> Self {
        let progress = Arc::new(Progress::default());
        let (files, queued) = mpsc::channel::<(PathBuf, u64)>();
        let shared = Arc::clone(&progress);
        let spawned = thread::Builder::new()
            .name("iso-prefetch".into())
            .spawn(move || run(&queued, &shared));
        let queue = PrefetchQueue(spawned.ok().map(|_| files));
        Self { queue, progress }
    }

    /// The queue, for whoever finds the files (the scanning thread).
    pub fn queue(&self) -> PrefetchQueue {
        self.queue.clone()
    }

    /// The copy finished `bytes` more bytes of file data.
    pub fn copied(&self, bytes: u64) {
        self.progress.lock().copied += bytes;
        self.progress.changed.notify_one();
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.progress.lock().stopped = true;
        self.progress.changed.notify_one();
    }
}

fn run(queued: &mpsc::Receiver<(PathBuf, u64)>, progress: &Progress) {
    let mut wanted = 0u64;
    for (path, size) in queued {
        let mut state = progress.lock();
        while !state.stopped && wanted.saturating_sub(state.copied) > PREFETCH_WINDOW {
            state = (progress.changed.wait(state)).unwrap_or_else(PoisonError::into_inner);
        }
        if state.stopped {
            return;
        }
        drop(state);
        if let Ok(file) = File::open(&path) {
            let _ = sys::prefetch(&file, 0, size);
        }
        wanted += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetched_file_reads_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"data").unwrap();
        let prefetcher = Prefetcher::start();
        prefetcher.queue().want(&path, 4);
        prefetcher.queue().want(&dir.path().join("missing"), 4);
        prefetcher.copied(8);
        drop(prefetcher);
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
