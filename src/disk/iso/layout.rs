//! Where everything goes: directory records planned per directory, path table order,
//! Rock Ridge continuation areas, and the logical block of every extent.
//!
//! Image order: system area (16 blocks), primary descriptor, boot record, Joliet
//! descriptor, terminator, file data, then primary L and M path tables, Joliet L and M path
//! tables, primary directories, Joliet directories, continuation areas and the boot catalog.
//!
//! File data comes first, in the tree's walk order ([`super::tree::Tree::data_order`]):
//! its place depends only on the files before it, so a writer can copy it while the rest of
//! the tree is still being read. The directories, path tables and descriptors depend on the
//! whole tree; they are planned afterwards (ECMA-119 puts no extent at a fixed place except
//! the descriptors from block 16, which a file writer fills in last).

use std::collections::VecDeque;

use super::IsoError;
use super::records::{ISO_FLAG_DIRECTORY, ISO_SECTOR, encode_path_record, record_len};
use super::susp::{self, S_IFDIR, S_IFLNK, S_IFREG, SUSP_CE_LEN, SUSP_SP};
use super::tree::{NodeKind, Tree};
use crate::error::Result;

/// First block after the 32 KiB system area.
pub(super) const ISO_FIRST_DESCRIPTOR: u32 = 16;
/// Longest directory record (its length is one byte).
const ISO_MAX_RECORD: usize = 255;

/// One directory record before block numbers are known.
#[derive(Debug, Clone)]
pub(super) struct PlannedRecord {
    /// The node whose extent the record points at.
    pub target: usize,
    pub ident: Vec<u8>,
    pub flags: u8,
    /// System use bytes, without the trailing CE entry.
    pub su: Vec<u8>,
    /// Continuation area holding the rest of the system use, if any.
    pub ce: Option<usize>,
}

impl PlannedRecord {
    fn len(&self) -> usize {
        let ce = if self.ce.is_some() { SUSP_CE_LEN } else { 0 };
        record_len(self.ident.len(), self.su.len() + ce)
    }
}

/// The records of one directory in one namespace.
#[derive(Debug, Clone)]
pub(super) struct DirPlan {
    pub node: usize,
    pub records: Vec<PlannedRecord>,
    pub size: u32,
}

/// One namespace (primary or Joliet): directories in path table order.
#[derive(Debug, Clone, Default)]
pub(super) struct Namespace {
    /// True for the Joliet namespace (UCS-2 identifiers).
    pub joliet: bool,
    pub dirs: Vec<DirPlan>,
    /// Directory block by node index (0 for non-directories).
    pub dir_lba: Vec<u32>,
    /// Directory size in bytes by node index.
    pub dir_size: Vec<u32>,
    pub table_l: Vec<u8>,
    pub table_m: Vec<u8>,
    pub table_l_lba: u32,
    pub table_m_lba: u32,
}

/// The complete plan of an image.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub primary: Namespace,
    pub joliet: Option<Namespace>,
    pub ce_areas: Vec<Vec<u8>>,
    /// `(block, offset)` of each continuation area.
    pub ce_pos: Vec<(u32, u32)>,
    pub ce_start: u32,
    pub ce_blocks: u32,
    /// Block of the El Torito boot catalog, when booting is asked for.
    pub catalog_lba: Option<u32>,
    /// File nodes in data order, with their first block.
    pub files: Vec<(usize, u32)>,
    /// Data block of every node (files; empty files and symlinks share the first data
    /// block).
    pub file_lba: Vec<u32>,
    pub total_blocks: u32,
}

/// File data placed so far: each file starts on a block after the previous one.
#[derive(Debug, Clone)]
pub(super) struct DataPlan {
    /// The first data block (right after the descriptors).
    pub start: u32,
    /// File nodes in data order, with their first block.
    pub files: Vec<(usize, u32)>,
    /// The block after the last file.
    next: u64,
}

impl DataPlan {
    /// An empty plan whose data starts after the descriptors an image with these
    /// extensions has (primary, boot record, Joliet, terminator).
    pub fn new(joliet: bool, boot: bool) -> Self {
        let descriptors = 2 + u32::from(joliet) + u32::from(boot);
        let start = ISO_FIRST_DESCRIPTOR + descriptors;
        Self {
            start,
            files: Vec::new(),
            next: u64::from(start),
        }
    }

    /// Places `size` bytes of node `node` after the data placed so far; returns its block.
    pub fn place(&mut self, node: usize, size: u64) -> Result<u32> {
        let lba = to_u32(self.next)?;
        self.files.push((node, lba));
        self.next += blocks_for(size);
        Ok(lba)
    }
}

/// Blocks needed for `bytes`.
pub(super) fn blocks_for(bytes: u64) -> u64 {
    bytes.div_ceil(ISO_SECTOR as u64)
}

fn to_u32(value: u64) -> Result<u32> {
    u32::try_from(value).map_err(|_| IsoError::ImageTooLarge { blocks: value }.into())
}

/// Plans the metadata of the image for `tree` (names already assigned) after its `data`.
pub(super) fn plan(
    tree: &Tree,
    data: DataPlan,
    rock_ridge: bool,
    joliet: bool,
    boot: bool,
    date: [u8; 7],
) -> Result<Layout> {
    let mut ce_areas = Vec::new();
    let primary_order = dir_order(tree, |n| &tree.nodes[n].iso_name, sort_key_iso);
    let mut primary = Namespace::default();
    for &dir in &primary_order {
        let records = primary_records(tree, dir, rock_ridge, date, &mut ce_areas)?;
        primary.dirs.push(DirPlan {
            node: dir,
            size: dir_bytes(&records)?,
            records,
        });
    }
    let joliet = joliet.then(|| {
        let order = dir_order(tree, |n| &tree.nodes[n].joliet_name, |id| id.to_vec());
        let mut ns = Namespace {
            joliet: true,
            ..Namespace::default()
        };
        for dir in order {
            let records = joliet_records(tree, dir);
            let size = dir_bytes(&records)?;
            ns.dirs.push(DirPlan {
                node: dir,
                size,
                records,
            });
        }
        Ok::<_, crate::Error>(ns)
    });
    let joliet = joliet.transpose()?;
    assign(tree, data, primary, joliet, ce_areas, boot)
}

/// Directories breadth first, children by identifier: the path table order (ECMA-119 6.9.1).
fn dir_order<'a>(
    tree: &'a Tree,
    ident: impl Fn(usize) -> &'a Vec<u8>,
    key: fn(&[u8]) -> Vec<u8>,
) -> Vec<usize> {
    let mut order = Vec::new();
    let mut queue = VecDeque::from([0usize]);
    while let Some(dir) = queue.pop_front() {
        order.push(dir);
        let mut subdirs: Vec<usize> = tree.nodes[dir]
            .children()
            .filter(|&c| tree.nodes[c].is_dir())
            .collect();
        subdirs.sort_by_cached_key(|&c| key(ident(c)));
        queue.extend(subdirs);
    }
    order
}

/// ECMA-119 9.3 order: name then extension, each padded with spaces; version ignored.
pub(super) fn sort_key_iso(ident: &[u8]) -> Vec<u8> {
    let ident = ident.strip_suffix(b";1").unwrap_or(ident);
    let (name, ext) = match ident.iter().position(|&b| b == b'.') {
        Some(dot) => (&ident[..dot], &ident[dot + 1..]),
        None => (ident, &b""[..]),
    };
    let mut key = name.to_vec();
    key.resize(31, b' ');
    key.extend_from_slice(ext);
    key.resize(62, b' ');
    key
}

fn sorted_children(tree: &Tree, dir: usize, key: impl Fn(usize) -> Vec<u8>) -> Vec<usize> {
    let mut children: Vec<usize> = tree.nodes[dir].children().collect();
    children.sort_by_cached_key(|&c| key(c));
    children
}

fn primary_records(
    tree: &Tree,
    dir: usize,
    rock_ridge: bool,
    date: [u8; 7],
    ce_areas: &mut Vec<Vec<u8>>,
) -> Result<Vec<PlannedRecord>> {
    let parent = tree.nodes[dir].parent;
    let mut dot = dot_record(dir, vec![0]);
    let mut dotdot = dot_record(parent, vec![1]);
    if rock_ridge {
        let mut su = Vec::new();
        if dir == 0 {
            su.extend_from_slice(&SUSP_SP);
        }
        attributes(tree, dir, date, &mut su);
        dot.su = su;
        if dir == 0 {
            let mut er = Vec::new();
            susp::er(&mut er);
            dot.ce = Some(push_area(ce_areas, er, tree, dir)?);
        }
        attributes(tree, parent, date, &mut dotdot.su);
    }
    let mut records = vec![dot, dotdot];
    for child in sorted_children(tree, dir, |c| sort_key_iso(&tree.nodes[c].iso_name)) {
        records.push(child_record(tree, child, rock_ridge, date, ce_areas)?);
    }
    Ok(records)
}

fn dot_record(target: usize, ident: Vec<u8>) -> PlannedRecord {
    PlannedRecord {
        target,
        ident,
        flags: ISO_FLAG_DIRECTORY,
        su: Vec::new(),
        ce: None,
    }
}

/// RR, PX and TF of `node`.
fn attributes(tree: &Tree, node: usize, date: [u8; 7], su: &mut Vec<u8>) {
    let n = &tree.nodes[node];
    let (kind, links) = match &n.kind {
        NodeKind::Dir { .. } => {
            let subdirs = n.children().filter(|&c| tree.nodes[c].is_dir()).count();
            (S_IFDIR, 2 + u32::try_from(subdirs).unwrap_or(u32::MAX - 2))
        }
        NodeKind::File { .. } => (S_IFREG, 1),
        NodeKind::Symlink { .. } => (S_IFLNK, 1),
    };
    susp::rr(su);
    susp::px(su, kind | n.mode, links, n.uid, n.gid);
    susp::tf(su, date);
}

fn child_record(
    tree: &Tree,
    child: usize,
    rock_ridge: bool,
    date: [u8; 7],
    ce_areas: &mut Vec<Vec<u8>>,
) -> Result<PlannedRecord> {
    let node = &tree.nodes[child];
    let flags = if node.is_dir() { ISO_FLAG_DIRECTORY } else { 0 };
    let mut record = PlannedRecord {
        target: child,
        ident: node.iso_name.clone(),
        flags,
        su: Vec::new(),
        ce: None,
    };
    if !rock_ridge {
        return Ok(record);
    }
    let mut names = Vec::new();
    susp::nm(&mut names, &node.name);
    if let NodeKind::Symlink { target } = &node.kind {
        susp::sl(&mut names, target);
    }
    attributes(tree, child, date, &mut record.su);
    if record_len(record.ident.len(), record.su.len() + names.len()) <= ISO_MAX_RECORD {
        // NM first, as genisoimage writes it; readers take any order.
        let mut su = names;
        su.extend_from_slice(&record.su);
        record.su = su;
    } else {
        record.ce = Some(push_area(ce_areas, names, tree, child)?);
    }
    Ok(record)
}

fn push_area(areas: &mut Vec<Vec<u8>>, area: Vec<u8>, tree: &Tree, node: usize) -> Result<usize> {
    if area.len() > ISO_SECTOR {
        return Err(IsoError::SystemUseTooLong {
            path: tree.display_path(node),
            len: area.len(),
        }
        .into());
    }
    areas.push(area);
    Ok(areas.len() - 1)
}

fn joliet_records(tree: &Tree, dir: usize) -> Vec<PlannedRecord> {
    let parent = tree.nodes[dir].parent;
    let mut records = vec![dot_record(dir, vec![0]), dot_record(parent, vec![1])];
    for child in sorted_children(tree, dir, |c| tree.nodes[c].joliet_name.clone()) {
        let node = &tree.nodes[child];
        let flags = if node.is_dir() { ISO_FLAG_DIRECTORY } else { 0 };
        let ident = node.joliet_name.clone();
        records.push(PlannedRecord {
            target: child,
            ident,
            flags,
            su: Vec::new(),
            ce: None,
        });
    }
    records
}

/// Offsets of each record when packed into sectors (records never straddle a sector,
/// ECMA-119 6.8.1.1), and the directory size in bytes.
pub(super) fn pack(lens: impl Iterator<Item = usize>) -> (Vec<usize>, usize) {
    let mut offsets = Vec::new();
    let mut pos = 0usize;
    for len in lens {
        let room = ISO_SECTOR - pos % ISO_SECTOR;
        if len > room {
            pos += room;
        }
        offsets.push(pos);
        pos += len;
    }
    (offsets, pos.div_ceil(ISO_SECTOR).max(1) * ISO_SECTOR)
}

fn dir_bytes(records: &[PlannedRecord]) -> Result<u32> {
    let (_, size) = pack(records.iter().map(PlannedRecord::len));
    to_u32(size as u64)
}

/// Assigns blocks to tables, directories, continuation areas and the boot catalog, after
/// the file data.
fn assign(
    tree: &Tree,
    data: DataPlan,
    mut primary: Namespace,
    mut joliet: Option<Namespace>,
    ce_areas: Vec<Vec<u8>>,
    boot: bool,
) -> Result<Layout> {
    let nodes = tree.nodes.len();
    let mut next = data.next;
    for ns in std::iter::once(&mut primary).chain(joliet.as_mut()) {
        ns.dir_lba = vec![0; nodes];
        ns.dir_size = vec![0; nodes];
        let table_bytes = path_table_len(tree, ns)?;
        ns.table_l_lba = to_u32(next)?;
        next += blocks_for(table_bytes);
        ns.table_m_lba = to_u32(next)?;
        next += blocks_for(table_bytes);
    }
    for ns in std::iter::once(&mut primary).chain(joliet.as_mut()) {
        for dir in &ns.dirs {
            ns.dir_lba[dir.node] = to_u32(next)?;
            ns.dir_size[dir.node] = dir.size;
            next += blocks_for(u64::from(dir.size));
        }
    }
    let ce_start = to_u32(next)?;
    let (ce_pos, ce_blocks) = place_areas(&ce_areas, ce_start)?;
    next += u64::from(ce_blocks);
    let catalog_lba = boot.then(|| to_u32(next)).transpose()?;
    next += u64::from(boot);
    for ns in std::iter::once(&mut primary).chain(joliet.as_mut()) {
        (ns.table_l, ns.table_m) = path_tables(tree, ns)?;
    }
    // Empty files and symlinks point at the first data block (with length 0); the path
    // tables follow the data, so that block is inside the volume.
    let mut file_lba = vec![data.start; nodes];
    for &(node, lba) in &data.files {
        file_lba[node] = lba;
    }
    Ok(Layout {
        primary,
        joliet,
        ce_areas,
        ce_pos,
        ce_start,
        ce_blocks,
        files: data.files,
        file_lba,
        catalog_lba,
        total_blocks: to_u32(next)?,
    })
}

/// Packs continuation areas into blocks without crossing a block boundary.
fn place_areas(areas: &[Vec<u8>], start: u32) -> Result<(Vec<(u32, u32)>, u32)> {
    let mut pos = Vec::with_capacity(areas.len());
    let mut block: u64 = 0;
    let mut offset = 0usize;
    for area in areas {
        if offset + area.len() > ISO_SECTOR {
            block += 1;
            offset = 0;
        }
        pos.push((to_u32(u64::from(start) + block)?, to_u32(offset as u64)?));
        offset += area.len();
    }
    let blocks = if areas.is_empty() { 0 } else { block + 1 };
    Ok((pos, to_u32(blocks)?))
}

fn dir_ident(tree: &Tree, node: usize, joliet: bool) -> Vec<u8> {
    match (node, joliet) {
        (0, _) => vec![0],
        (_, false) => tree.nodes[node].iso_name.clone(),
        (_, true) => tree.nodes[node].joliet_name.clone(),
    }
}

fn path_table_len(tree: &Tree, ns: &Namespace) -> Result<u64> {
    if ns.dirs.len() > usize::from(u16::MAX) {
        return Err(IsoError::TooManyDirectories {
            count: ns.dirs.len(),
        }
        .into());
    }
    let len: usize = ns
        .dirs
        .iter()
        .map(|d| {
            let ident = dir_ident(tree, d.node, ns.joliet);
            8 + ident.len() + ident.len() % 2
        })
        .sum();
    Ok(len as u64)
}

/// The L (little-endian) and M (big-endian) path tables (ECMA-119 9.4).
fn path_tables(tree: &Tree, ns: &Namespace) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut number = vec![0u16; tree.nodes.len()];
    let (mut l, mut m) = (Vec::new(), Vec::new());
    for (i, dir) in ns.dirs.iter().enumerate() {
        number[dir.node] = u16::try_from(i + 1).map_err(|_| IsoError::TooManyDirectories {
            count: ns.dirs.len(),
        })?;
        let parent = number[tree.nodes[dir.node].parent].max(1);
        let ident = dir_ident(tree, dir.node, ns.joliet);
        let lba = ns.dir_lba[dir.node];
        l.extend_from_slice(&encode_path_record(&ident, lba, parent, false));
        m.extend_from_slice(&encode_path_record(&ident, lba, parent, true));
    }
    Ok((l, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_do_not_straddle_sectors() {
        let (offsets, size) = pack([2000, 100].into_iter());
        assert_eq!(offsets, vec![0, 2048]);
        assert_eq!(size, 4096);
    }

    #[test]
    fn iso_order_compares_name_before_extension() {
        assert!(sort_key_iso(b"A.Z;1") < sort_key_iso(b"AB.A;1"));
    }

    #[test]
    fn data_starts_after_the_descriptors_and_files_follow_each_other() {
        let mut data = DataPlan::new(true, true);
        let first = data.place(7, 1).unwrap();
        let second = data.place(8, 4096).unwrap();
        // Primary, boot record, Joliet and terminator take blocks 16-19.
        assert_eq!((data.start, first, second, data.next), (20, 20, 21, 23));
    }

    #[test]
    fn continuation_areas_start_a_new_block_when_full() {
        let areas = vec![vec![0; 1500], vec![0; 1000]];
        let (pos, blocks) = place_areas(&areas, 40).unwrap();
        assert_eq!(pos, vec![(40, 0), (41, 0)]);
        assert_eq!(blocks, 2);
    }
}
