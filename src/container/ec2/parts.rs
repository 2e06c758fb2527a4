//! The encrypted stream cut into 10 MiB part files, each hashed as it is written.
//!
//! Part names depend on how many parts there are (`.part.0` under ten, `.part.00` from
//! ten on), which is known only at the end. Each part is therefore written as a
//! registered `.partial` file under a provisional name (so an interrupted or failed
//! bundle leaves nothing behind) and renamed to its final name in [`StagedParts::commit`],
//! after which the manifest is committed last.
//!
//! With `sync`, each finished part is fsynced by a background thread while the next ones
//! are compressed, so the disk works during the pass instead of all at the commit.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::thread::{self, JoinHandle};

use sha1::{Digest, Sha1};

use super::Ec2Error;
use crate::container::manifest::hex;
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::{OutputSet, partial_path};

/// The part size ec2-bundle-image uses (its CHUNK_SIZE).
pub const PART_SIZE: u64 = 10 << 20;

/// One part on disk under its provisional name.
#[derive(Debug)]
struct StagedPart {
    /// Keeps the partial registered for interrupt cleanup until it is renamed.
    set: OutputSet,
    /// Synced by the background thread (or no sync wanted).
    synced: bool,
    size: u64,
    digest: String,
}

/// The part being written.
struct OpenPart {
    set: OutputSet,
    file: File,
    hasher: Sha1,
    written: u64,
}

/// A thread that fsyncs finished parts in order; it keeps the first error.
struct Syncer {
    files: Sender<(File, PathBuf)>,
    thread: JoinHandle<Result<()>>,
}

impl Syncer {
    /// `None` when no thread can be started: the parts are then synced at commit.
    fn start() -> Option<Self> {
        let (files, queue) = channel::<(File, PathBuf)>();
        let thread = thread::Builder::new()
            .name("kiln-part-sync".into())
            .spawn(move || {
                for (file, path) in queue {
                    file.sync_all().map_err(|e| Error::io(e).with_path(&path))?;
                }
                Ok(())
            })
            .ok()?;
        Some(Self { files, thread })
    }

    /// Waits for every queued sync.
    fn finish(self) -> Result<()> {
        drop(self.files);
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Writes the encrypted stream into parts in `dir`.
pub struct PartWriter {
    dir: PathBuf,
    name: String,
    current: Option<OpenPart>,
    done: Vec<StagedPart>,
    syncer: Option<Syncer>,
    sync: bool,
}

impl PartWriter {
    /// Parts of bundle `name` in `dir`, fsynced before they are renamed when `sync`.
    pub fn new(dir: &Path, name: &str, sync: bool) -> Self {
        Self {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            current: None,
            done: Vec::new(),
            syncer: if sync { Syncer::start() } else { None },
            sync,
        }
    }

    fn open(&mut self) -> Result<OpenPart> {
        let provisional = self
            .dir
            .join(format!("{}.part.{}", self.name, self.done.len()));
        // Existing files are checked against the final names in `commit`; the flush
        // thread is not wanted for parts (each is synced once, at commit).
        let mut set = OutputSet::new(&provisional, true);
        set.set_sync(false);
        let file = set.create_primary()?;
        Ok(OpenPart {
            set,
            file,
            hasher: Sha1::new(),
            written: 0,
        })
    }

    /// Appends `data`, starting a new part every [`PART_SIZE`] bytes.
    ///
    /// # Errors
    /// Creating or writing a part file failed.
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let mut part = match self.current.take() {
                Some(p) => p,
                None => self.open()?,
            };
            let room = usize::try_from(PART_SIZE - part.written).unwrap_or(usize::MAX);
            let (now, rest) = data.split_at(room.min(data.len()));
            part.file
                .write_all(now)
                .map_err(|e| Error::io(e).with_path(&partial_path(part.set.primary_path())))?;
            part.hasher.update(now);
            part.written += now.len() as u64;
            data = rest;
            if part.written == PART_SIZE {
                self.close(part);
            } else {
                self.current = Some(part);
            }
        }
        Ok(())
    }

    fn close(&mut self, part: OpenPart) {
        let queued = self.syncer.as_ref().is_some_and(|s| {
            let path = partial_path(part.set.primary_path());
            s.files.send((part.file, path)).is_ok()
        });
        self.done.push(StagedPart {
            synced: queued || !self.sync,
            set: part.set,
            size: part.written,
            digest: hex(&part.hasher.finalize()),
        });
    }

    /// Closes the last part and waits for the background syncs.
    ///
    /// # Errors
    /// An fsync failed.
    pub fn finish(mut self) -> Result<StagedParts> {
        if let Some(part) = self.current.take() {
            self.close(part);
        }
        if let Some(syncer) = self.syncer.take() {
            syncer.finish()?;
        }
        Ok(StagedParts {
            dir: self.dir,
            parts: self.done,
            sync: self.sync,
        })
    }
}

/// Every part written, still under provisional `.partial` names.
#[derive(Debug)]
pub struct StagedParts {
    dir: PathBuf,
    parts: Vec<StagedPart>,
    sync: bool,
}

impl StagedParts {
    /// `(size, SHA-1 hex)` of each part in order.
    pub fn sizes_and_digests(&self) -> Vec<(u64, String)> {
        self.parts
            .iter()
            .map(|p| (p.size, p.digest.clone()))
            .collect()
    }

    /// Syncs each part not yet synced (when the writer was asked to) and renames it to its
    /// final name in `names`.
    ///
    /// # Errors
    /// A final name exists and `force` is off, or syncing or renaming fails; the parts not
    /// yet renamed are removed.
    pub fn commit(self, names: &[String], force: bool) -> Result<Vec<PathBuf>> {
        let targets: Vec<PathBuf> = names.iter().map(|n| self.dir.join(n)).collect();
        if let Some(existing) = targets.iter().find(|t| !force && t.exists()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Ec2Error::OutputExists {
                    path: existing.clone(),
                },
            ));
        }
        let mut renamed = Vec::new();
        for (part, to) in self.parts.into_iter().zip(targets) {
            let from = partial_path(part.set.primary_path());
            let moved = sync_file(&from, self.sync && !part.synced).and_then(|()| {
                std::fs::rename(&from, &to).map_err(|e| Error::io(e).with_path(&to))
            });
            if let Err(e) = moved {
                // No half bundle: take back the parts already in place.
                renamed.iter().for_each(|p| drop(std::fs::remove_file(p)));
                return Err(e);
            }
            // Dropping the set now only unregisters the partial: it was renamed away.
            drop(part.set);
            renamed.push(to);
        }
        Ok(renamed)
    }
}

fn sync_file(path: &Path, sync: bool) -> Result<()> {
    if !sync {
        return Ok(());
    }
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(e).with_path(path))
}
