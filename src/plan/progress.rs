//! What a build reports while it runs: step lines, in the order the steps start, and
//! byte-counted tasks (an artefact being written, a disk being hashed for SHA256SUMS, a
//! source downloading) that a terminal shows as bars. The plan only reports; the CLI decides how to show it.

/// Receives a build's progress. A closure taking `&str` is an observer of lines alone.
pub trait Observer {
    /// A step line, e.g. `[2/5] writing app.ova (vmdk in ova, every disk)`.
    fn line(&mut self, text: &str);

    /// Task `id` starts: `total` bytes described by `label` (e.g. the artefact's file).
    fn start(&mut self, _id: TaskId, _label: &str, _total: u64) {}

    /// `done` of task `id`'s bytes are through.
    fn advance(&mut self, _id: TaskId, _done: u64) {}

    /// Task `id` is over (finished or abandoned).
    fn finish(&mut self, _id: TaskId) {}
}

impl<F: FnMut(&str)> Observer for F {
    fn line(&mut self, text: &str) {
        self(text);
    }
}

/// A task of a build: writing an output, or hashing a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskId {
    /// Writing output N (its position among the selected outputs).
    Write(usize),
    /// Hashing disk N's bytes for a raw artefact's SHA256SUMS line.
    Hash(usize),
    /// Downloading a source (the Nth download to start).
    Download(usize),
}
