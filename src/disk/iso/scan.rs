//! Reading a source directory for the ISO writer: a depth-first walk, children in name
//! (byte) order, one `lstat` per entry relative to its open directory; files are not opened
//! here (an unreadable file is reported when its data is copied, before the output is
//! committed).
//!
//! The walk either fills the tree at once ([`scan_dir`]) or runs on its own thread and hands
//! its entries to the writer in walk order ([`stream`]), so file data is copied while the
//! rest of the tree is still being read. Either way the tree is the same, and so are the
//! bytes: data is placed in walk order, never in arrival time order. RAM: one batch of
//! entries in flight per queue slot.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use super::IsoError;
use super::prefetch::PrefetchQueue;
use super::tree::{self, Data, IsoEntry, IsoSource, NodeKind, Tree};
use crate::error::Result;

/// Entries the scanning thread gathers before handing them over.
const SCAN_BATCH: usize = 64;
/// Batches queued between the scanning thread and the writer.
const SCAN_QUEUE: usize = 256;

/// One entry found by the walk, to be inserted below node `parent`.
#[derive(Debug)]
pub(super) struct Scanned {
    pub parent: usize,
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits; owners are not copied (see [`walk`]).
    pub mode: u32,
    /// The source path, for messages.
    pub path: PathBuf,
}

impl Scanned {
    /// Inserts the entry into `tree`, returning its node.
    pub fn insert(self, tree: &mut Tree) -> Result<usize> {
        let meta = (self.mode, 0, 0);
        tree.insert(self.parent, &self.name, self.kind, meta, &self.path)
    }
}

/// Why a streamed walk stopped.
#[derive(Debug)]
pub(super) enum StreamError {
    /// The walk failed (unreadable directory, special file, ...).
    Scan(crate::Error),
    /// The consumer failed (it was writing the image).
    Take(crate::Error),
}

/// Sets the root's mode from `dir`; fails if `dir` cannot be read as a directory's metadata.
pub(super) fn add_root(tree: &mut Tree, dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| IsoError::ReadSourceDir {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let root = IsoEntry::new(
        PathBuf::new(),
        IsoSource::Directory,
        meta.permissions().mode(),
    );
    tree.add(root)
}

/// Adds every file, directory and symlink under `dir` (which becomes the image root), in
/// walk order. Other file types are refused.
pub(super) fn scan_dir(tree: &mut Tree, dir: &Path) -> Result<()> {
    add_root(tree, dir)?;
    scan_children(tree, dir)
}

/// Adds everything under `dir` below the root of `tree`.
pub(super) fn scan_children(tree: &mut Tree, dir: &Path) -> Result<()> {
    walk(dir, 0, &mut |item| item.insert(tree))
}

/// Walks `dir` (whose root is already in a tree holding `first` nodes, none of them below
/// the root) on a scoped thread and calls `take` for each entry in walk order on this
/// thread; the entries get node numbers `first`, `first + 1`, ... as they are inserted.
/// Files with data are also queued on `prefetch` as soon as they are found.
pub(super) fn stream(
    dir: &Path,
    first: usize,
    prefetch: &PrefetchQueue,
    take: &mut dyn FnMut(Scanned) -> Result<()>,
) -> std::result::Result<(), StreamError> {
    thread::scope(|scope| {
        let (batches, received) = mpsc::sync_channel::<Result<Vec<Scanned>>>(SCAN_QUEUE);
        scope.spawn(move || {
            let mut batch = Vec::with_capacity(SCAN_BATCH);
            let mut next = first;
            let walked = walk(dir, 0, &mut |item| {
                if let NodeKind::File {
                    data: Data::Path(path),
                    size,
                } = &item.kind
                {
                    prefetch.want(path, *size);
                }
                batch.push(item);
                let node = next;
                next += 1;
                if batch.len() >= SCAN_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(SCAN_BATCH));
                    // The writer hung up (it failed): stop walking.
                    batches.send(Ok(full)).map_err(|_| hung_up())?;
                }
                Ok(node)
            });
            // A failed send means the writer already failed with its own error.
            let _ = batches.send(walked.map(|()| batch));
        });
        for batch in received {
            for item in batch.map_err(StreamError::Scan)? {
                take(item).map_err(StreamError::Take)?;
            }
        }
        Ok(())
    })
}

fn hung_up() -> crate::Error {
    std::io::Error::from(std::io::ErrorKind::BrokenPipe).into()
}

/// Emits the entries of `dir` (node `node`) and, depth first, of its subdirectories;
/// `emit` inserts an entry and returns its node.
fn walk(dir: &Path, node: usize, emit: &mut dyn FnMut(Scanned) -> Result<usize>) -> Result<()> {
    let read_err = |e| IsoError::ReadSourceDir {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(read_err)? {
        entries.push(item.map_err(read_err)?);
    }
    entries.sort_by_cached_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let full = entry.path();
        let open_err = |e| IsoError::OpenSource {
            path: full.clone(),
            source: e,
        };
        let meta = entry.metadata().map_err(open_err)?;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            NodeKind::Dir {
                children: BTreeMap::new(),
            }
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&full).map_err(open_err)?;
            tree::node_kind(IsoSource::Symlink(target.into_os_string()), &full)?
        } else if file_type.is_file() {
            tree::check_file_size(&full, meta.len())?;
            NodeKind::File {
                data: Data::Path(full.clone()),
                size: meta.len(),
            }
        } else {
            return Err(IsoError::SpecialFile { path: full }.into());
        };
        // Owners are not copied: images from a tree are owned by root, as `mkisofs -r`
        // makes them, so the same tree gives the same bytes on any machine.
        let child = emit(Scanned {
            parent: node,
            name: entry.file_name().as_bytes().to_vec(),
            kind,
            mode: meta.permissions().mode() & 0o7777,
            path: full.clone(),
        })?;
        if file_type.is_dir() {
            walk(&full, child, emit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(root: &Path) {
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("b/c/f"), b"f").unwrap();
        std::fs::write(root.join("a/g"), b"gg").unwrap();
        std::fs::write(root.join("z"), b"").unwrap();
        std::os::unix::fs::symlink("a/g", root.join("l")).unwrap();
    }

    fn names(tree: &Tree) -> Vec<(Vec<u8>, usize)> {
        tree.nodes
            .iter()
            .map(|n| (n.name.clone(), n.parent))
            .collect()
    }

    #[test]
    fn streamed_walk_builds_the_same_tree_as_the_direct_scan() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let mut direct = Tree::new();
        scan_dir(&mut direct, dir.path()).unwrap();
        let mut streamed = Tree::new();
        add_root(&mut streamed, dir.path()).unwrap();
        let queue = PrefetchQueue::default();
        stream(dir.path(), 1, &queue, &mut |item| {
            item.insert(&mut streamed).map(|_| ())
        })
        .unwrap();
        assert_eq!(names(&streamed), names(&direct));
    }

    #[test]
    fn walk_order_is_depth_first_by_name() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let mut tree = Tree::new();
        scan_dir(&mut tree, dir.path()).unwrap();
        let order: Vec<&[u8]> = tree.nodes.iter().map(|n| &n.name[..]).collect();
        assert_eq!(order, [&b""[..], b"a", b"g", b"b", b"c", b"f", b"l", b"z"]);
    }

    #[test]
    fn consumer_error_stops_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let err = stream(dir.path(), 1, &PrefetchQueue::default(), &mut |_| {
            Err(crate::Error::invalid_input("stop"))
        })
        .unwrap_err();
        assert!(matches!(err, StreamError::Take(_)));
    }

    #[test]
    fn missing_directory_is_a_scan_error() {
        let dir = tempfile::tempdir().unwrap();
        let queue = PrefetchQueue::default();
        let err = stream(&dir.path().join("nope"), 1, &queue, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, StreamError::Scan(_)));
    }
}
