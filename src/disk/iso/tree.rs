//! The file tree an ISO is written from: entries added by path, directories created on the
//! way, and the three names each node gets (Rock Ridge: the POSIX name as given; ISO 9660
//! level 1: a unique 8.3 d-character name; Joliet: UCS-2, at most 103 units).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::IsoError;
use crate::error::Result;

/// Largest file one ISO 9660 extent holds: the directory record's data length is 32 bits.
pub const ISO_MAX_FILE_BYTES: u64 = u32::MAX as u64;
/// Longest symlink target written: libisofs (xorriso) refuses to load longer Rock Ridge
/// symlinks ("Rock Ridge path too long").
const ISO_MAX_SYMLINK_BYTES: usize = 1023;
/// Joliet name limit kiln writes, in UTF-16 units: what `genisoimage -joliet-long` and
/// libisofs allow (the Joliet spec says 64; every reader kiln was tested with takes 103).
const JOLIET_MAX_UNITS: usize = 103;

/// Where an entry's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsoSource {
    /// A regular file, streamed when the image is written.
    File(PathBuf),
    /// Bytes held by the caller (small generated files such as seed data).
    Bytes(Vec<u8>),
    /// A directory (its children are separate entries).
    Directory,
    /// A symbolic link with this target.
    Symlink(OsString),
}

/// One file, directory or symlink to put in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoEntry {
    /// Relative path inside the image (`etc/motd`); missing parent directories are created
    /// with mode 0755.
    pub path: PathBuf,
    /// The contents.
    pub source: IsoSource,
    /// POSIX permission bits (`0o644`); the file type comes from `source`.
    pub mode: u32,
    /// Owner written to Rock Ridge (PX).
    pub uid: u32,
    /// Group written to Rock Ridge (PX).
    pub gid: u32,
}

impl IsoEntry {
    /// An entry owned by root (uid and gid 0).
    pub fn new(path: impl Into<PathBuf>, source: IsoSource, mode: u32) -> Self {
        Self {
            path: path.into(),
            source,
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// File contents as the writer streams them.
#[derive(Debug, Clone)]
pub(super) enum Data {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub(super) enum NodeKind {
    Dir { children: BTreeMap<Vec<u8>, usize> },
    File { data: Data, size: u64 },
    Symlink { target: Vec<u8> },
}

/// One node of the tree; index 0 is the root.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// POSIX name (Rock Ridge NM); empty for the root.
    pub name: Vec<u8>,
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub parent: usize,
    /// ISO 9660 identifier, `NAME.EXT;1` for files.
    pub iso_name: Vec<u8>,
    /// Joliet identifier, UCS-2 big-endian.
    pub joliet_name: Vec<u8>,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir { .. })
    }

    pub fn children(&self) -> impl Iterator<Item = usize> + '_ {
        let map = match &self.kind {
            NodeKind::Dir { children } => Some(children),
            _ => None,
        };
        map.into_iter().flat_map(|m| m.values().copied())
    }

    /// Bytes of file data (0 for directories and symlinks).
    pub fn data_size(&self) -> u64 {
        match self.kind {
            NodeKind::File { size, .. } => size,
            _ => 0,
        }
    }
}

/// The tree being assembled.
#[derive(Debug, Clone)]
pub(super) struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn new() -> Self {
        let root = Node {
            name: Vec::new(),
            kind: NodeKind::Dir {
                children: BTreeMap::new(),
            },
            mode: 0o755,
            uid: 0,
            gid: 0,
            parent: 0,
            iso_name: vec![0],
            joliet_name: vec![0],
        };
        Self { nodes: vec![root] }
    }

    /// Adds one entry, creating parent directories.
    pub fn add(&mut self, entry: IsoEntry) -> Result<()> {
        let names = path_names(&entry.path)?;
        let Some((leaf, parents)) = names.split_last() else {
            // The root itself: only its mode can be set.
            return match entry.source {
                IsoSource::Directory => {
                    let root = &mut self.nodes[0];
                    (root.mode, root.uid, root.gid) = (entry.mode & 0o7777, entry.uid, entry.gid);
                    Ok(())
                }
                _ => Err(IsoError::RootNotDirectory.into()),
            };
        };
        let mut dir = 0;
        for name in parents {
            dir = self.child_dir(dir, name, &entry.path)?;
        }
        let kind = node_kind(entry.source, &entry.path)?;
        let meta = (entry.mode & 0o7777, entry.uid, entry.gid);
        self.insert(dir, leaf, kind, meta, &entry.path).map(|_| ())
    }

    fn child_dir(&mut self, dir: usize, name: &[u8], path: &Path) -> Result<usize> {
        if let Some(index) = self.lookup(dir, name) {
            if self.nodes[index].is_dir() {
                return Ok(index);
            }
            return Err(IsoError::NotADirectory {
                path: path.to_path_buf(),
            }
            .into());
        }
        let kind = NodeKind::Dir {
            children: BTreeMap::new(),
        };
        self.insert(dir, name, kind, (0o755, 0, 0), path)
    }

    fn lookup(&self, dir: usize, name: &[u8]) -> Option<usize> {
        match &self.nodes[dir].kind {
            NodeKind::Dir { children } => children.get(name).copied(),
            _ => None,
        }
    }

    /// Adds `name` below directory `dir`, returning its node (an existing directory's when
    /// a directory is added again).
    pub fn insert(
        &mut self,
        dir: usize,
        name: &[u8],
        kind: NodeKind,
        (mode, uid, gid): (u32, u32, u32),
        path: &Path,
    ) -> Result<usize> {
        if let Some(existing) = self.lookup(dir, name) {
            // A directory named explicitly after one of its files created it: keep the mode.
            if self.nodes[existing].is_dir() && matches!(kind, NodeKind::Dir { .. }) {
                let node = &mut self.nodes[existing];
                (node.mode, node.uid, node.gid) = (mode, uid, gid);
                return Ok(existing);
            }
            return Err(IsoError::AddedTwice {
                path: path.to_path_buf(),
            }
            .into());
        }
        let index = self.nodes.len();
        self.nodes.push(Node {
            name: name.to_vec(),
            kind,
            mode,
            uid,
            gid,
            parent: dir,
            iso_name: Vec::new(),
            joliet_name: Vec::new(),
        });
        if let NodeKind::Dir { children } = &mut self.nodes[dir].kind {
            children.insert(name.to_vec(), index);
        }
        Ok(index)
    }

    /// Nodes of files with data, depth first with children in name order: the order the
    /// data is written in, which is also the order a directory walk finds the files.
    pub fn data_order(&self) -> Vec<usize> {
        let mut order = Vec::new();
        let mut stack = vec![0usize];
        while let Some(node) = stack.pop() {
            if self.nodes[node].data_size() > 0 {
                order.push(node);
            }
            let first = stack.len();
            stack.extend(self.nodes[node].children());
            stack[first..].reverse();
        }
        order
    }

    /// The node at `path`, if any.
    pub fn find(&self, path: &Path) -> Option<usize> {
        let mut node = 0;
        for name in path_names(path).ok()? {
            node = self.lookup(node, &name)?;
        }
        Some(node)
    }

    /// The path of node `index` inside the image, for messages.
    pub fn display_path(&self, mut index: usize) -> PathBuf {
        let mut parts = Vec::new();
        while index != 0 {
            parts.push(String::from_utf8_lossy(&self.nodes[index].name).into_owned());
            index = self.nodes[index].parent;
        }
        parts.iter().rev().collect()
    }

    /// Gives every node its ISO 9660 and (when `joliet`) Joliet identifier.
    pub fn assign_names(&mut self, joliet: bool) -> Result<()> {
        for dir in 0..self.nodes.len() {
            if !self.nodes[dir].is_dir() {
                continue;
            }
            let children: Vec<usize> = self.nodes[dir].children().collect();
            self.assign_iso_names(&children);
            if joliet {
                self.assign_joliet_names(&children)?;
            }
        }
        Ok(())
    }

    fn assign_iso_names(&mut self, children: &[usize]) {
        let mut used = BTreeSet::new();
        for &child in children {
            let node = &self.nodes[child];
            let name = unique_iso_name(&node.name, node.is_dir(), &mut used);
            self.nodes[child].iso_name = name;
        }
    }

    fn assign_joliet_names(&mut self, children: &[usize]) -> Result<()> {
        let mut used: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for &child in children {
            let name =
                joliet_name(&self.nodes[child].name).ok_or_else(|| IsoError::JolietNeedsUtf8 {
                    path: self.display_path(child),
                })?;
            if let Some(&other) = used.get(&name) {
                return Err(IsoError::JolietNameCollision {
                    first: self.display_path(other),
                    second: self.display_path(child),
                }
                .into());
            }
            used.insert(name.clone(), child);
            self.nodes[child].joliet_name = name;
        }
        Ok(())
    }
}

/// Splits a relative image path into names, refusing `..`, absolute paths and empty names.
fn path_names(path: &Path) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name.as_bytes().to_vec()),
            Component::CurDir => {}
            _ => {
                return Err(IsoError::BadEntryPath {
                    path: path.to_path_buf(),
                }
                .into());
            }
        }
    }
    Ok(names)
}

pub(super) fn node_kind(source: IsoSource, path: &Path) -> Result<NodeKind> {
    Ok(match source {
        IsoSource::Directory => NodeKind::Dir {
            children: BTreeMap::new(),
        },
        IsoSource::Symlink(target) => {
            let target = target.as_bytes().to_vec();
            if target.is_empty() {
                return Err(IsoError::BadEntryPath {
                    path: path.to_path_buf(),
                }
                .into());
            }
            if target.len() > ISO_MAX_SYMLINK_BYTES {
                let (path, len) = (path.to_path_buf(), target.len());
                let max = ISO_MAX_SYMLINK_BYTES;
                return Err(IsoError::SymlinkTooLong { path, len, max }.into());
            }
            NodeKind::Symlink { target }
        }
        IsoSource::Bytes(bytes) => {
            let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            check_file_size(path, size)?;
            NodeKind::File {
                data: Data::Bytes(bytes),
                size,
            }
        }
        IsoSource::File(source) => {
            let size = readable_file_size(&source)?;
            NodeKind::File {
                data: Data::Path(source),
                size,
            }
        }
    })
}

/// Opens `source` once so unreadable files are reported before any output is written.
fn readable_file_size(source: &Path) -> Result<u64> {
    let file = File::open(source).map_err(|e| IsoError::OpenSource {
        path: source.to_path_buf(),
        source: e,
    })?;
    let meta = file.metadata().map_err(|e| IsoError::OpenSource {
        path: source.to_path_buf(),
        source: e,
    })?;
    if !meta.is_file() {
        return Err(IsoError::SpecialFile {
            path: source.to_path_buf(),
        }
        .into());
    }
    check_file_size(source, meta.len())?;
    Ok(meta.len())
}

pub(super) fn check_file_size(path: &Path, size: u64) -> Result<()> {
    if size > ISO_MAX_FILE_BYTES {
        return Err(IsoError::FileTooLarge {
            path: path.to_path_buf(),
            size,
        }
        .into());
    }
    Ok(())
}

/// Maps a name to ISO 9660 d-characters (`A-Z 0-9 _`).
fn d_chars(name: &[u8], max: usize) -> Vec<u8> {
    name.iter()
        .map(|&b| match b.to_ascii_uppercase() {
            c @ (b'A'..=b'Z' | b'0'..=b'9' | b'_') => c,
            _ => b'_',
        })
        .take(max)
        .collect()
}

/// A level 1 identifier (`NAME.EXT;1`, or `NAME` for a directory) unique within `used`;
/// clashes get a decimal counter in place of the last characters of the name.
fn unique_iso_name(name: &[u8], is_dir: bool, used: &mut BTreeSet<Vec<u8>>) -> Vec<u8> {
    let (base, ext) = match name.iter().rposition(|&b| b == b'.') {
        Some(dot) if !is_dir && dot > 0 => (&name[..dot], &name[dot + 1..]),
        _ => (name, &b""[..]),
    };
    let mut base = d_chars(base, 8);
    if base.is_empty() {
        base.push(b'_');
    }
    let ext = if is_dir { Vec::new() } else { d_chars(ext, 3) };
    let make = |base: &[u8]| -> Vec<u8> {
        let mut id = base.to_vec();
        if !is_dir {
            id.push(b'.');
            id.extend_from_slice(&ext);
        }
        id
    };
    let mut candidate = make(&base);
    let mut counter: u64 = 0;
    while used.contains(&candidate) {
        let digits = counter.to_string().into_bytes();
        let keep = 8usize.saturating_sub(digits.len()).min(base.len());
        let mut numbered = base[..keep].to_vec();
        numbered.extend_from_slice(&digits);
        candidate = make(&numbered);
        counter += 1;
    }
    used.insert(candidate.clone());
    if !is_dir {
        candidate.extend_from_slice(b";1");
    }
    candidate
}

/// The Joliet identifier (UCS-2 big-endian): characters Joliet forbids become `_`, names
/// longer than [`JOLIET_MAX_UNITS`] are cut. `None` when the name is not UTF-8.
fn joliet_name(name: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(name).ok()?;
    let mut units: Vec<u16> = Vec::new();
    for c in text.chars() {
        let c = match c {
            '*' | '/' | ':' | ';' | '?' | '\\' => '_',
            c if u32::from(c) < 0x20 => '_',
            c => c,
        };
        let mut buf = [0u16; 2];
        let encoded = c.encode_utf16(&mut buf);
        if units.len() + encoded.len() > JOLIET_MAX_UNITS {
            break;
        }
        units.extend_from_slice(encoded);
    }
    Some(units.iter().flat_map(|u| u.to_be_bytes()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_name_is_mapped_to_eight_dot_three() {
        let mut used = BTreeSet::new();
        assert_eq!(
            unique_iso_name(b"user-data", false, &mut used),
            b"USER_DAT.;1"
        );
    }

    #[test]
    fn clashing_names_get_a_counter() {
        let mut used = BTreeSet::new();
        unique_iso_name(b"longname-a.txt", false, &mut used);
        assert_eq!(
            unique_iso_name(b"longname-b.txt", false, &mut used),
            b"LONGNAM0.TXT;1"
        );
    }

    #[test]
    fn joliet_forbidden_characters_become_underscores() {
        let name = joliet_name(b"a:b").unwrap();
        assert_eq!(name, [0, b'a', 0, b'_', 0, b'b']);
    }

    #[test]
    fn joliet_names_are_cut_at_103_units() {
        let name = joliet_name(&[b'x'; 200]).unwrap();
        assert_eq!(name.len(), 2 * JOLIET_MAX_UNITS);
    }

    #[test]
    fn dot_dot_in_entry_path_is_refused() {
        let mut tree = Tree::new();
        let entry = IsoEntry::new(PathBuf::from("../x"), IsoSource::Bytes(vec![]), 0o644);
        assert!(tree.add(entry).is_err());
    }

    #[test]
    fn data_order_is_depth_first_by_name_whatever_the_adding_order() {
        let mut tree = Tree::new();
        for path in ["b/y", "a/c/x", "a/b", "a/empty"] {
            let size = if path.ends_with("empty") { 0 } else { 1 };
            let entry = IsoEntry::new(PathBuf::from(path), IsoSource::Bytes(vec![7; size]), 0o644);
            tree.add(entry).unwrap();
        }
        let order: Vec<PathBuf> = (tree.data_order().into_iter())
            .map(|n| tree.display_path(n))
            .collect();
        assert_eq!(order, ["a/b", "a/c/x", "b/y"].map(PathBuf::from));
    }

    #[test]
    fn same_path_twice_is_refused() {
        let mut tree = Tree::new();
        let entry = IsoEntry::new(PathBuf::from("a/b"), IsoSource::Bytes(vec![1]), 0o644);
        tree.add(entry.clone()).unwrap();
        assert!(tree.add(entry).is_err());
    }
}
