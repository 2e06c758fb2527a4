//! The encrypted stream cut into 10 MiB part files, each hashed as it is written.
//!
//! Part names depend on how many parts there are (`.part.0` under ten, `.part.00` from
//! ten on), which is known only at the end. Each part is therefore written as a
//! registered `.partial` file under a provisional name (so an interrupted or failed
//! bundle leaves nothing behind) and renamed to its final name in [`StagedParts::commit`],
//! after which the manifest is committed last.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Writes the encrypted stream into parts in `dir`.
pub struct PartWriter {
    dir: PathBuf,
    name: String,
    current: Option<OpenPart>,
    done: Vec<StagedPart>,
}

impl PartWriter {
    /// Parts of bundle `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            current: None,
            done: Vec::new(),
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
        self.done.push(StagedPart {
            set: part.set,
            size: part.written,
            digest: hex(&part.hasher.finalize()),
        });
    }

    /// Closes the last part.
    pub fn finish(mut self) -> StagedParts {
        if let Some(part) = self.current.take() {
            self.close(part);
        }
        StagedParts {
            dir: self.dir,
            parts: self.done,
        }
    }
}

/// Every part written, still under provisional `.partial` names.
#[derive(Debug)]
pub struct StagedParts {
    dir: PathBuf,
    parts: Vec<StagedPart>,
}

impl StagedParts {
    /// `(size, SHA-1 hex)` of each part in order.
    pub fn sizes_and_digests(&self) -> Vec<(u64, String)> {
        self.parts
            .iter()
            .map(|p| (p.size, p.digest.clone()))
            .collect()
    }

    /// Syncs each part (when `sync`) and renames it to its final name in `names`.
    ///
    /// # Errors
    /// A final name exists and `force` is off, or syncing or renaming fails; the parts not
    /// yet renamed are removed.
    pub fn commit(self, names: &[String], force: bool, sync: bool) -> Result<Vec<PathBuf>> {
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
            let moved = sync_file(&from, sync).and_then(|()| {
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
