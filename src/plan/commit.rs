//! Committing finished outputs: hash (raw outputs already are), sync and rename each one on
//! its own thread, and describe it for the report.

use std::path::PathBuf;

use super::triplet::Extra;
use super::{Artefact, FileDigest, Plan};
use crate::container::manifest;
use crate::error::Result;
use crate::io::output::{OutputSet, partial_path};

impl Plan {
    /// Hashes (raw outputs already are), syncs and renames each finished output on its own
    /// thread, so one file's hashing overlaps another's sync; describes them. A failure
    /// leaves the other outputs of the group committed.
    pub(super) fn commit_all(
        &self,
        commits: Vec<(usize, Commit)>,
    ) -> Result<Vec<(usize, Artefact)>> {
        let done: Vec<Result<Vec<(usize, Artefact)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (commits.into_iter())
                .map(|(i, c)| scope.spawn(move || self.commit(i, c)))
                .collect();
            (handles.into_iter())
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let done: Vec<Vec<(usize, Artefact)>> = done.into_iter().collect::<Result<_>>()?;
        Ok(done.into_iter().flatten().collect())
    }

    /// Hashes, syncs and renames output `i` (an ami with its kernel and ramdisk: three
    /// artefacts).
    fn commit(&self, i: usize, mut c: Commit) -> Result<Vec<(usize, Artefact)>> {
        let (sha256, size) = match c.streamed {
            Some(digest) => digest,
            // No report, no digest to put in it.
            None if !self.report => (String::new(), file_len(&partial_path(&c.target))?),
            None => manifest::hash_file(&partial_path(&c.target))?,
        };
        let mut files = Vec::new();
        for extra in &c.extras {
            let (sha256, size) = manifest::hash_file(&partial_path(extra))?;
            files.push(FileDigest::new(extra, size, sha256));
        }
        let o = &self.outputs[i];
        let mut artefact = Artefact::new(&self.spec, o, &c.target, size, sha256, c.virtual_size);
        artefact.files = files;
        let artefacts = match o.ami {
            Some(_) => {
                let mut triplet =
                    self.commit_triplet(o, std::mem::take(&mut c.triplet), artefact, &mut c.set)?;
                self.write_bundles(o, &c.target, &mut triplet)?;
                triplet
            }
            None => vec![artefact],
        };
        c.set.commit().map_err(|e| e.with_path(&c.target))?;
        Ok(artefacts.into_iter().map(|a| (i, a)).collect())
    }
}

fn file_len(path: &std::path::Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| crate::Error::io(e).with_path(path))?;
    Ok(meta.len())
}

/// A finished output waiting to be hashed, synced and renamed.
pub(crate) struct Commit {
    pub(super) target: PathBuf,
    pub(super) virtual_size: u64,
    /// The digest and size already computed while writing (raw outputs).
    pub(super) streamed: Option<(String, u64)>,
    /// Other files of the output (an `ovf` package's manifest and disks).
    pub(super) extras: Vec<PathBuf>,
    /// An ami's kernel and ramdisk, written beside it.
    pub(super) triplet: Vec<Extra>,
    pub(super) set: OutputSet,
}
