//! An inode's block map as runs of logical blocks: from its extent tree ([`ExtentWalker`])
//! or from the classic ext2/3 pointers (12 direct, then single, double and triple
//! indirect blocks of `block_size / 4` pointers each). Gaps between runs are holes.

use super::extent::ExtentWalker;
use super::inode::{I_BLOCK, Inode};
use super::{Ext4, Ext4Error};
use crate::error::Result;
use crate::io::read_exact_at;

/// Pointers in `i_block` before the indirect ones.
const DIRECT_POINTERS: u64 = 12;
/// Longest run the indirect walker coalesces at once (in blocks).
const MAX_RUN_BLOCKS: u64 = 32768;

/// `len` logical blocks from `logical`, at `physical` or unwritten (reads as zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) logical: u64,
    pub(super) len: u64,
    pub(super) physical: Option<u64>,
}

/// The runs of one inode, in logical order.
pub(super) enum BlockMap {
    Extents(Box<ExtentWalker>),
    Indirect(Box<IndirectWalker>),
}

impl BlockMap {
    /// The map of `inode`, which holds `size` bytes.
    pub(super) fn new(fs: &Ext4, inode: &Inode) -> Result<Self> {
        if inode.has_extents() {
            // Extents map 32-bit logical block numbers; bytes past them cannot exist.
            let max = (1u64 << 32) * fs.sb.block_size;
            if inode.size > max {
                return Err(Ext4Error::TooLarge {
                    ino: inode.ino,
                    offset: inode.offset,
                    size: inode.size,
                    max,
                }
                .into());
            }
            return Ok(BlockMap::Extents(Box::new(ExtentWalker::new(fs, inode)?)));
        }
        Ok(BlockMap::Indirect(Box::new(IndirectWalker::new(
            fs, inode,
        )?)))
    }

    /// The next run; `None` after the last.
    pub(super) fn next_run(&mut self, fs: &Ext4) -> Result<Option<Run>> {
        match self {
            BlockMap::Extents(walker) => walker.next_run(fs),
            BlockMap::Indirect(walker) => walker.next_run(fs),
        }
    }
}

/// What one logical block maps to.
enum Mapped {
    /// This physical block.
    Block(u64),
    /// A hole of this many blocks (a zero pointer covers its whole subtree).
    Hole(u64),
}

/// The runs of a block-pointer inode. Keeps the last indirect block read at each level.
pub(super) struct IndirectWalker {
    ino: u32,
    inode_offset: u64,
    pointers: [u32; 15],
    /// Pointers per indirect block.
    per_block: u64,
    next: u64,
    /// Logical blocks the file's size covers.
    end: u64,
    /// The last table read at each level: (block, pointers).
    cache: [Option<(u64, Vec<u32>)>; 3],
}

impl IndirectWalker {
    fn new(fs: &Ext4, inode: &Inode) -> Result<Self> {
        let bs = fs.sb.block_size;
        let per_block = bs / 4;
        let addressable = (1..=3)
            .map(|level| per_block.pow(level))
            .fold(DIRECT_POINTERS, u64::saturating_add);
        let end = inode.size.div_ceil(bs);
        if end > addressable {
            return Err(Ext4Error::TooLarge {
                ino: inode.ino,
                offset: inode.offset,
                size: inode.size,
                max: addressable.saturating_mul(bs),
            }
            .into());
        }
        let mut pointers = [0u32; 15];
        for (p, bytes) in pointers.iter_mut().zip(inode.block.chunks_exact(4)) {
            *p = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        Ok(Self {
            ino: inode.ino,
            inode_offset: inode.offset,
            pointers,
            per_block,
            next: 0,
            end,
            cache: [None, None, None],
        })
    }

    fn next_run(&mut self, fs: &Ext4) -> Result<Option<Run>> {
        while self.next < self.end {
            let start = self.next;
            let physical = match self.map(fs, start)? {
                Mapped::Hole(len) => {
                    self.next = start.saturating_add(len);
                    continue;
                }
                Mapped::Block(physical) => physical,
            };
            let mut len = 1;
            while start + len < self.end && len < MAX_RUN_BLOCKS {
                match self.map(fs, start + len)? {
                    Mapped::Block(p) if p == physical + len => len += 1,
                    _ => break,
                }
            }
            self.next = start + len;
            return Ok(Some(Run {
                logical: start,
                len,
                physical: Some(physical),
            }));
        }
        Ok(None)
    }

    /// Maps logical block `logical` through the direct pointers or the tree of the right
    /// depth.
    fn map(&mut self, fs: &Ext4, logical: u64) -> Result<Mapped> {
        if logical < DIRECT_POINTERS {
            let slot = usize::try_from(logical).expect("below 12");
            let at = self.inode_offset + (I_BLOCK + 4 * slot) as u64;
            return self.pointer(fs, u64::from(self.pointers[slot]), at, 1);
        }
        let mut rel = logical - DIRECT_POINTERS;
        for levels in 1..=3u32 {
            let span = self.per_block.pow(levels);
            if rel < span {
                let slot = 11 + levels as usize;
                let at = self.inode_offset + (I_BLOCK + 4 * slot) as u64;
                return self.walk(fs, u64::from(self.pointers[slot]), at, levels, rel);
            }
            rel -= span;
        }
        // `new` bounded `end` by what the tree addresses.
        Ok(Mapped::Hole(1))
    }

    /// Follows `levels` indirect blocks from `root` (stored at `at`) to block `rel` of the
    /// subtree.
    fn walk(&mut self, fs: &Ext4, root: u64, at: u64, levels: u32, rel: u64) -> Result<Mapped> {
        let (mut block, mut at, mut rel) = (root, at, rel);
        let mut span = self.per_block.pow(levels);
        for level in 0..levels as usize {
            if block == 0 {
                return Ok(Mapped::Hole(span - rel));
            }
            self.check(fs, block, at)?;
            span /= self.per_block;
            let index = rel / span;
            rel %= span;
            let table = self.table(fs, level, block)?;
            let index = usize::try_from(index).expect("below pointers per block");
            at = block * fs.sb.block_size + 4 * index as u64;
            block = u64::from(table[index]);
        }
        self.pointer(fs, block, at, 1)
    }

    fn pointer(&self, fs: &Ext4, block: u64, at: u64, hole: u64) -> Result<Mapped> {
        if block == 0 {
            return Ok(Mapped::Hole(hole));
        }
        self.check(fs, block, at)?;
        Ok(Mapped::Block(block))
    }

    fn check(&self, fs: &Ext4, block: u64, at: u64) -> Result<()> {
        if block < fs.sb.blocks_count {
            return Ok(());
        }
        Err(Ext4Error::BlockOutsideFs {
            what: "block pointer",
            ino: self.ino,
            offset: at,
            block,
            len: 1,
            blocks: fs.sb.blocks_count,
        }
        .into())
    }

    /// The pointers of indirect block `block`, read once per level while it is current.
    fn table(&mut self, fs: &Ext4, level: usize, block: u64) -> Result<&[u32]> {
        let cached = matches!(&self.cache[level], Some((b, _)) if *b == block);
        if !cached {
            let mut bytes = vec![0u8; usize::try_from(fs.sb.block_size).unwrap_or(1024)];
            let offset = block * fs.sb.block_size;
            read_exact_at(&*fs.src, &mut bytes, offset, "ext4 indirect block")?;
            let pointers = (bytes.chunks_exact(4))
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            self.cache[level] = Some((block, pointers));
        }
        Ok(self.cache[level]
            .as_ref()
            .map_or(&[][..], |(_, p)| p.as_slice()))
    }
}
