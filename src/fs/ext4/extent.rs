//! Extent trees (the kernel's Documentation/filesystems/ext4/ifork.rst): a 12-byte header
//! and up to four entries in `i_block`, deeper levels in blocks of their own, each ending
//! in a CRC-32C tail under `metadata_csum`.
//!
//! Walked lazily, depth first, with one node per level in memory. A malformed tree cannot
//! make the walk loop or repeat: each child must have exactly its parent's depth minus one
//! (depth at most 5), no node block may be visited twice, and extents must come in
//! increasing, non-overlapping logical order inside the range their index entry covers.

use std::collections::BTreeSet;

use super::blockmap::Run;
use super::csum::crc32c;
use super::inode::{I_BLOCK, Inode};
use super::{Ext4, Ext4Error};
use crate::error::Result;
use crate::io::read_exact_at;

/// The magic every extent node header starts with.
const EXT4_EXTENT_MAGIC: u16 = 0xF30A;
/// The deepest tree the kernel builds (`EXT4_MAX_EXTENT_DEPTH`).
const EXT4_MAX_EXTENT_DEPTH: u16 = 5;
/// Size of the node header and of each entry.
const EXTENT_ENTRY: usize = 12;
/// `ee_len` above this marks an unwritten extent of `ee_len - 32768` blocks.
const EXT_INIT_MAX_LEN: u16 = 32768;
/// Logical block numbers are 32 bits.
const EXT4_LOGICAL_LIMIT: u64 = 1 << 32;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One node being walked.
struct Node {
    bytes: Vec<u8>,
    /// Byte offset of the node in the file system.
    offset: u64,
    entries: usize,
    depth: u16,
    next: usize,
    /// Logical blocks this node may map: `[lo, hi)`.
    lo: u64,
    hi: u64,
}

impl Node {
    fn entry(&self, i: usize) -> &[u8] {
        let at = EXTENT_ENTRY * (i + 1);
        &self.bytes[at..at + EXTENT_ENTRY]
    }

    fn entry_offset(&self, i: usize) -> u64 {
        self.offset + (EXTENT_ENTRY * (i + 1)) as u64
    }
}

/// The runs of an extent-mapped inode, in logical order.
pub(super) struct ExtentWalker {
    ino: u32,
    csum_seed: Option<u32>,
    /// File system size in blocks.
    blocks: u64,
    stack: Vec<Node>,
    seen: BTreeSet<u64>,
    /// The next extent must start at or after this logical block.
    next_min: u64,
}

impl ExtentWalker {
    pub(super) fn new(fs: &Ext4, inode: &Inode) -> Result<Self> {
        let offset = inode.offset + I_BLOCK as u64;
        let bytes = inode.block.to_vec();
        let (entries, depth) = parse_header(inode.ino, &bytes, offset, None)?;
        let root = Node {
            bytes,
            offset,
            entries,
            depth,
            next: 0,
            lo: 0,
            hi: EXT4_LOGICAL_LIMIT,
        };
        Ok(Self {
            ino: inode.ino,
            csum_seed: inode.csum_seed,
            blocks: fs.sb.blocks_count,
            stack: vec![root],
            seen: BTreeSet::new(),
            next_min: 0,
        })
    }

    /// The next run; `None` after the last.
    pub(super) fn next_run(&mut self, fs: &Ext4) -> Result<Option<Run>> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            if top.next >= top.entries {
                self.stack.pop();
                continue;
            }
            let i = top.next;
            top.next += 1;
            if top.depth == 0 {
                return self.leaf(i).map(Some);
            }
            let child = self.child(fs, i)?;
            self.stack.push(child);
        }
    }

    fn bad(&self, offset: u64, rule: String) -> crate::Error {
        Ext4Error::BadExtentNode {
            ino: self.ino,
            offset,
            rule,
        }
        .into()
    }

    /// Leaf entry `i` of the top node as a run, checked for order and bounds.
    fn leaf(&mut self, i: usize) -> Result<Run> {
        let top = self.stack.last().expect("called with a node on the stack");
        let e = top.entry(i);
        let offset = top.entry_offset(i);
        let logical = u64::from(le32(e, 0));
        let raw_len = le16(e, 4);
        let (len, unwritten) = if raw_len > EXT_INIT_MAX_LEN {
            (u64::from(raw_len - EXT_INIT_MAX_LEN), true)
        } else {
            (u64::from(raw_len), false)
        };
        let physical = u64::from(le16(e, 6)) << 32 | u64::from(le32(e, 8));
        let (lo, hi) = (top.lo.max(self.next_min), top.hi);
        if len == 0 || logical < lo || logical + len > hi {
            return Err(self.bad(
                offset,
                format!(
                    "extent of {len} blocks at logical block {logical} lies outside the free range {lo}..{hi} (out of order, overlapping or empty)"
                ),
            ));
        }
        self.check_blocks("extent", offset, physical, len)?;
        self.next_min = logical + len;
        Ok(Run {
            logical,
            len,
            physical: (!unwritten).then_some(physical),
        })
    }

    /// Refuses a block run that is not inside the file system (block 0 never is data).
    fn check_blocks(&self, what: &'static str, offset: u64, block: u64, len: u64) -> Result<()> {
        let inside = block != 0 && block.checked_add(len).is_some_and(|end| end <= self.blocks);
        if inside {
            return Ok(());
        }
        Err(Ext4Error::BlockOutsideFs {
            what,
            ino: self.ino,
            offset,
            block,
            len,
            blocks: self.blocks,
        }
        .into())
    }

    /// Reads the child node index entry `i` of the top node points at.
    fn child(&mut self, fs: &Ext4, i: usize) -> Result<Node> {
        let top = self.stack.last().expect("called with a node on the stack");
        let e = top.entry(i);
        let offset = top.entry_offset(i);
        let lo = u64::from(le32(e, 0));
        let hi = if i + 1 < top.entries {
            u64::from(le32(top.entry(i + 1), 0))
        } else {
            top.hi
        };
        let block = u64::from(le16(e, 8)) << 32 | u64::from(le32(e, 4));
        let depth = top.depth - 1;
        if lo < top.lo.max(self.next_min) || lo >= hi || hi > top.hi {
            return Err(self.bad(
                offset,
                format!("index entries out of order: logical block {lo}, then {hi}"),
            ));
        }
        self.check_blocks("extent index", offset, block, 1)?;
        if !self.seen.insert(block) {
            return Err(self.bad(
                offset,
                format!("block {block} is referenced twice (a loop in the tree)"),
            ));
        }
        let node_offset = block * fs.sb.block_size;
        let mut bytes = vec![0u8; usize::try_from(fs.sb.block_size).unwrap_or(1024)];
        read_exact_at(&*fs.src, &mut bytes, node_offset, "ext4 extent node")?;
        let (entries, _) = parse_header(self.ino, &bytes, node_offset, Some(depth))?;
        self.check_tail(&bytes, node_offset)?;
        Ok(Node {
            bytes,
            offset: node_offset,
            entries,
            depth,
            next: 0,
            lo,
            hi,
        })
    }

    /// `metadata_csum`: the CRC-32C tail after `eh_max` entries.
    fn check_tail(&self, bytes: &[u8], offset: u64) -> Result<()> {
        let Some(seed) = self.csum_seed else {
            return Ok(());
        };
        let max = usize::from(le16(bytes, 4));
        let tail = EXTENT_ENTRY * (max + 1);
        if tail + 4 > bytes.len() {
            return Err(self.bad(
                offset,
                format!("eh_max {max} leaves no room for the checksum"),
            ));
        }
        let computed = crc32c(seed, &bytes[..tail]);
        let found = le32(bytes, tail);
        if found != computed {
            return Err(Ext4Error::BadChecksum {
                what: format!("extent node of inode {}", self.ino),
                offset,
                found,
                computed,
            }
            .into());
        }
        Ok(())
    }
}

/// Checks a node header; returns its entry count and depth. `expected_depth` is the
/// parent's depth minus one (`None` for the root in the inode).
fn parse_header(
    ino: u32,
    bytes: &[u8],
    offset: u64,
    expected_depth: Option<u16>,
) -> Result<(usize, u16)> {
    let bad =
        |rule: String| -> crate::Error { Ext4Error::BadExtentNode { ino, offset, rule }.into() };
    let magic = le16(bytes, 0);
    if magic != EXT4_EXTENT_MAGIC {
        return Err(bad(format!("magic {magic:#06x}, expected 0xf30a")));
    }
    let (entries, max, depth) = (le16(bytes, 2), le16(bytes, 4), le16(bytes, 6));
    let room = bytes.len() / EXTENT_ENTRY - 1;
    if usize::from(max) > room || entries > max {
        return Err(bad(format!(
            "{entries} entries of at most {max}, in room for {room}"
        )));
    }
    if depth > EXT4_MAX_EXTENT_DEPTH {
        return Err(bad(format!(
            "depth {depth} exceeds {EXT4_MAX_EXTENT_DEPTH}"
        )));
    }
    if let Some(expected) = expected_depth.filter(|&d| d != depth) {
        return Err(bad(format!(
            "depth {depth} where its parent requires {expected} (a loop in the tree)"
        )));
    }
    Ok((usize::from(entries), depth))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node header: magic, entries, max, depth (12 bytes, room for 4 entries).
    fn header(entries: u16, max: u16, depth: u16) -> Vec<u8> {
        let mut b = vec![0u8; 60];
        b[..2].copy_from_slice(&EXT4_EXTENT_MAGIC.to_le_bytes());
        b[2..4].copy_from_slice(&entries.to_le_bytes());
        b[4..6].copy_from_slice(&max.to_le_bytes());
        b[6..8].copy_from_slice(&depth.to_le_bytes());
        b
    }

    fn error(b: &[u8], expected_depth: Option<u16>) -> String {
        parse_header(12, b, 0x1000, expected_depth)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn inode_root_header_is_read() {
        assert_eq!(parse_header(12, &header(2, 4, 1), 0, None).unwrap(), (2, 1));
    }

    #[test]
    fn more_entries_than_max_are_refused() {
        assert!(error(&header(5, 4, 0), None).contains("5 entries of at most 4"));
    }

    #[test]
    fn max_beyond_the_node_is_refused() {
        assert!(error(&header(1, 5, 0), None).contains("in room for 4"));
    }

    #[test]
    fn depth_over_5_is_refused() {
        assert!(error(&header(1, 4, 6), None).contains("depth 6 exceeds 5"));
    }

    #[test]
    fn child_of_the_wrong_depth_is_refused_as_a_loop() {
        assert!(error(&header(1, 4, 1), Some(0)).contains("a loop in the tree"));
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut b = header(1, 4, 0);
        b[0] = 0;
        assert!(error(&b, None).contains("magic 0xf300"));
    }
}
