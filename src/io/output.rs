//! Outputs that appear only when complete: each file is written as `<name>.partial` beside
//! its target and renamed when the whole set is committed. Dropping an uncommitted set
//! removes its partial files; [`remove_registered_partials`] does the same from a signal
//! handler, so an interrupted command leaves nothing half-written.
//!
//! A set that syncs (the default) also flushes each partial file from a [`Flusher`] thread
//! while it is written, so the disk works during the conversion rather than all at the
//! final fsync, which then finds little left to write.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// Every partial file of every live [`OutputSet`] in this process.
static PARTIALS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Why an output could not be prepared.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Creating the partial file failed.
    #[error("cannot create {path}")]
    Create {
        /// The partial path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The target exists and `--force` was not given.
    #[error("output already exists; pass --force to replace it")]
    Exists {
        /// The target.
        path: PathBuf,
    },
    /// Renaming the finished file into place failed.
    #[error("cannot rename {from} to {to}")]
    Rename {
        /// The partial path.
        from: PathBuf,
        /// The target.
        to: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The files one command writes, committed together.
#[derive(Debug)]
pub struct OutputSet {
    primary: PathBuf,
    force: bool,
    sync: bool,
    files: Vec<Partial>,
}

/// One file of a set: where it is written, where it goes, and its flusher.
#[derive(Debug)]
struct Partial {
    partial: PathBuf,
    target: PathBuf,
    flusher: Option<Flusher>,
}

/// How often a [`Flusher`] starts a flush (each waits for the previous one to finish).
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// A thread that `fdatasync`s a file being written every [`FLUSH_INTERVAL`]. Pages stay
/// cached. Its first error is kept for [`Flusher::stop`]: after a failed flush Linux may
/// report the final fsync as clean, so the error must not be lost.
#[derive(Debug)]
struct Flusher {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<std::io::Result<()>>,
}

impl Flusher {
    /// `None` when no thread or file handle can be had: the final fsync still runs.
    fn start(file: &File) -> Option<Self> {
        let file = file.try_clone().ok()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("kiln-flush".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(FLUSH_INTERVAL) {
                    file.sync_data()?;
                }
                Ok(())
            })
            .ok()?;
        Some(Self { stop, thread })
    }

    /// Stops the thread and returns its first flush error.
    fn stop(self) -> std::io::Result<()> {
        drop(self.stop);
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl OutputSet {
    /// A set whose main file is `primary`. Without `force`, existing targets are refused.
    pub fn new(primary: &Path, force: bool) -> Self {
        Self {
            primary: primary.to_path_buf(),
            force,
            sync: true,
            files: Vec::new(),
        }
    }

    /// Whether [`OutputSet::commit`] fsyncs each file before renaming it (default true).
    /// Turning it off is qemu-img's `-t unsafe`: faster, but a crash soon after the command
    /// can leave a renamed file whose data never reached the disk.
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// The main target path.
    pub fn primary_path(&self) -> &Path {
        &self.primary
    }

    /// Creates the partial file of the main target.
    ///
    /// # Errors
    /// The target exists (without force) or the partial cannot be created.
    pub fn create_primary(&mut self) -> Result<File> {
        let primary = self.primary.clone();
        self.create(&primary)
    }

    /// Creates the partial file of `name` in the main target's directory, e.g. the
    /// `-flat.vmdk` extent beside a descriptor.
    ///
    /// # Errors
    /// As [`OutputSet::create_primary`].
    pub fn create_sibling(&mut self, name: &str) -> Result<File> {
        let target = self.primary.with_file_name(name);
        self.create(&target)
    }

    fn create(&mut self, target: &Path) -> Result<File> {
        // Any directory entry counts, a dangling symlink included: `exists()` follows links
        // and would let the rename replace one without --force.
        if !self.force && std::fs::symlink_metadata(target).is_ok() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                OutputError::Exists {
                    path: target.into(),
                },
            ));
        }
        let partial = partial_path(target);
        let create_error = |source| {
            Error::new(
                ErrorKind::Io,
                OutputError::Create {
                    path: partial.clone(),
                    source,
                },
            )
        };
        // A stale partial from an interrupted run is replaced; the entry is removed rather
        // than opened, so a symlink planted at the partial name is never followed, and
        // `create_new` refuses anything that appears there in between.
        match std::fs::remove_file(&partial) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(create_error(e)),
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(create_error)?;
        register(&partial);
        let flusher = if self.sync {
            Flusher::start(&file)
        } else {
            None
        };
        self.files.push(Partial {
            partial,
            target: target.to_path_buf(),
            flusher,
        });
        Ok(file)
    }

    /// Syncs and renames every partial file onto its target.
    ///
    /// # Errors
    /// Sync or rename failures; remaining partial files are removed.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        let flushed: Vec<std::io::Result<()>> = (self.files.iter_mut())
            .filter_map(|f| f.flusher.take().map(Flusher::stop))
            .collect();
        flushed.into_iter().collect::<std::io::Result<()>>()?;
        let mut done = Vec::new();
        // Each file leaves `self.files` once renamed, so `Drop` removes only the rest.
        while let Some(Partial {
            partial, target, ..
        }) = self.files.first()
        {
            if self.sync {
                File::open(partial).and_then(|f| f.sync_all())?;
            }
            std::fs::rename(partial, target).map_err(|source| {
                Error::new(
                    ErrorKind::Io,
                    OutputError::Rename {
                        from: partial.clone(),
                        to: target.clone(),
                        source,
                    },
                )
            })?;
            let file = self.files.remove(0);
            unregister(&file.partial);
            done.push(file.target);
        }
        if let Some(dir) = self.primary.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the renames durable; a failure here cannot lose data already synced.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(done)
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        for file in self.files.drain(..) {
            if let Some(flusher) = file.flusher {
                let _ = flusher.stop();
            }
            let _ = std::fs::remove_file(&file.partial);
            unregister(&file.partial);
        }
    }
}

/// Whether a file of `len` bytes fits on the filesystem that holds `dir`, or its nearest
/// existing ancestor when `dir` is still to be created: `Some(false)` when the filesystem
/// refuses a file that large (EFBIG: ext4 stops at 16 TiB), `None` when it cannot be told.
///
/// An anonymous file (Linux `O_TMPFILE`: it never has a name, so nothing appears in any
/// directory and nothing is left behind) is extended to `len` without writing a byte and
/// closed. This is what `kiln create -f raw x 1E` runs into at its end; a build asks before
/// it starts, so it never hashes an artefact it cannot write.
pub fn file_size_fits(dir: &Path, len: u64) -> Option<bool> {
    // ftruncate takes an off_t.
    if i64::try_from(len).is_err() {
        return Some(false);
    }
    let existing = dir
        .ancestors()
        .find(|d| d.is_dir())
        .unwrap_or(Path::new("."));
    let file = anonymous_file(existing)?;
    match file.set_len(len) {
        Ok(()) => Some(true),
        Err(e) if e.raw_os_error() == Some(FILE_TOO_LARGE) => Some(false),
        Err(_) => None,
    }
}

/// Linux's EFBIG.
const FILE_TOO_LARGE: i32 = 27;

#[cfg(target_os = "linux")]
fn anonymous_file(dir: &Path) -> Option<File> {
    use rustix::fs::{Mode, OFlags};
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    rustix::fs::open(dir, flags, Mode::from_raw_mode(0o600))
        .ok()
        .map(File::from)
}

#[cfg(not(target_os = "linux"))]
fn anonymous_file(_dir: &Path) -> Option<File> {
    None
}

/// `<target>.partial`.
pub fn partial_path(target: &Path) -> PathBuf {
    let mut name = target
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    target.with_file_name(name)
}

fn register(path: &Path) {
    if let Ok(mut list) = PARTIALS.lock() {
        list.push(path.to_path_buf());
    }
}

fn unregister(path: &Path) {
    if let Ok(mut list) = PARTIALS.lock() {
        list.retain(|p| p != path);
    }
}

/// Removes every partial file still registered; for signal handlers before exiting.
pub fn remove_registered_partials() {
    let paths = match PARTIALS.lock() {
        Ok(mut list) => std::mem::take(&mut *list),
        Err(_) => return,
    };
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_set_leaves_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.img");
        {
            let mut set = OutputSet::new(&target, false);
            set.create_primary().unwrap();
            assert!(partial_path(&target).exists());
        }
        assert!(!partial_path(&target).exists());
        assert!(!target.exists());
    }

    #[test]
    fn committed_set_renames_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.img");
        let mut set = OutputSet::new(&target, false);
        set.create_primary().unwrap();
        set.commit().unwrap();
        assert!(target.exists());
        assert!(!partial_path(&target).exists());
    }

    #[test]
    fn dangling_symlink_at_the_target_is_refused_without_force() {
        // issue 15, defect 7: `exists()` follows the link and said "no such file".
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.img");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &target).unwrap();
        let err = OutputSet::new(&target, false).create_primary().unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
    }

    #[test]
    fn symlink_at_the_partial_name_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.img");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, partial_path(&target)).unwrap();
        let mut set = OutputSet::new(&target, false);
        std::io::Write::write_all(&mut set.create_primary().unwrap(), b"new").unwrap();
        set.commit().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn a_file_larger_than_off_t_never_fits() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(file_size_fits(dir.path(), u64::MAX), Some(false));
    }

    #[test]
    fn a_small_file_fits_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            file_size_fits(&dir.path().join("not/yet"), 1 << 20),
            Some(true)
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn existing_target_is_refused_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.img");
        std::fs::write(&target, b"keep").unwrap();
        let err = OutputSet::new(&target, false).create_primary().unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
    }
}
