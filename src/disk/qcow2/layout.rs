//! Cluster geometry, refcount sizing and the `preallocation=metadata` layout.
//!
//! The preallocated layout replays qemu's allocator (qemu 10, block/qcow2.c
//! `preallocate_co`, block/qcow2-cluster.c `handle_alloc`, block/qcow2-refcount.c
//! `alloc_refcount_block`): clusters are handed out from a single frontier; each L2 table
//! is allocated just before the first data run it maps; a data run stops at the end of
//! its L2 table and at 2 GiB; and a refcount block is placed right after the allocation
//! that first needs it (self-describing). So `qemu-img map` of kiln's image equals that of
//! `qemu-img create -f qcow2 -o preallocation=metadata` whenever qemu's refcount table
//! fits in its initial cluster (64 KiB clusters: images up to 16 TiB). When it does not,
//! kiln sizes the refcount table up front instead of growing it, so offsets differ from
//! qemu's but the image stays valid.

/// qemu's BDRV_REQUEST_MAX_BYTES: one allocation request covers at most this many bytes.
const QEMU_REQUEST_MAX_BYTES: u64 = (1 << 31) - 512;
/// qemu's INT_MAX: `preallocate_co` handles at most this many bytes (cluster-aligned) per call.
const QEMU_INT_MAX: u64 = (1 << 31) - 1;

/// Sizes derived from the cluster size and the virtual size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    pub cluster_bits: u32,
    pub virtual_size: u64,
}

impl Geometry {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Entries per L2 table (8 bytes each).
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }

    /// Guest clusters, the last one possibly partial.
    pub fn guest_clusters(&self) -> u64 {
        self.virtual_size.div_ceil(self.cluster_size())
    }

    /// L1 entries needed for the virtual size.
    pub fn l1_size(&self) -> u64 {
        self.guest_clusters().div_ceil(self.l2_entries())
    }

    /// Clusters the L1 table occupies (at least one).
    pub fn l1_clusters(&self) -> u64 {
        (self.l1_size() * 8).div_ceil(self.cluster_size()).max(1)
    }

    /// Clusters one 16-bit refcount block describes.
    pub fn refcounts_per_block(&self) -> u64 {
        self.cluster_size() / 2
    }
}

/// qemu's `qcow2_refcount_metadata_size` fixed point: the refcount blocks and table
/// clusters needed to count `clusters` clusters plus themselves. Returns `(blocks, table)`.
pub(super) fn refcount_metadata(
    clusters: u64,
    cluster_size: u64,
    refcount_bits: u64,
) -> (u64, u64) {
    let per_table_cluster = cluster_size / 8;
    let per_block = cluster_size * 8 / refcount_bits;
    let (mut blocks, mut table, mut n) = (0u64, 0u64, 0u64);
    loop {
        let last = n;
        blocks = (clusters + table + blocks).div_ceil(per_block);
        table = blocks.div_ceil(per_table_cluster);
        n = clusters + blocks + table;
        if n == last {
            return (blocks, table);
        }
    }
}

/// qemu's `qcow2_calc_prealloc_size`: bytes of a fully allocated image of `virtual_size`.
pub(super) fn prealloc_size(virtual_size: u64, cluster_size: u64) -> u64 {
    let aligned = virtual_size.div_ceil(cluster_size) * cluster_size;
    let mut meta = cluster_size;
    let l2_entries = (aligned / cluster_size).div_ceil(cluster_size / 8) * (cluster_size / 8);
    meta += l2_entries * 8;
    let l1_entries =
        (l2_entries * 8 / cluster_size).div_ceil(cluster_size / 8) * (cluster_size / 8);
    meta += l1_entries * 8;
    let (blocks, table) = refcount_metadata((meta + aligned) / cluster_size, cluster_size, 16);
    meta + (blocks + table) * cluster_size + aligned
}

/// Host-contiguous data clusters of a preallocated image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DataRun {
    /// First guest cluster.
    pub guest: u64,
    /// Its host cluster.
    pub host: u64,
    /// Clusters in the run.
    pub count: u64,
}

/// Where every cluster of a `preallocation=metadata` image goes. Kept in RAM: 8 bytes per
/// L2 table and refcount block, 24 bytes per data run (a few per L2 table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PreallocLayout {
    pub geometry: Geometry,
    /// Refcount table: first cluster and length (clusters).
    pub reftable: u64,
    pub reftable_clusters: u64,
    /// First L1 cluster.
    pub l1: u64,
    /// Host cluster of each L2 table, by L1 index.
    pub l2: Vec<u64>,
    /// Host cluster of each refcount block, by refcount table index.
    pub refblocks: Vec<u64>,
    /// Data runs in guest order.
    pub runs: Vec<DataRun>,
    /// Clusters in use: every cluster below this has refcount 1.
    pub clusters: u64,
    /// Apparent length of the file, as qemu leaves it.
    pub file_len: u64,
}

impl PreallocLayout {
    /// Replays qemu's allocator for `geometry` (see the module doc).
    pub fn new(geometry: Geometry) -> Self {
        let mut reftable_clusters = 1;
        loop {
            let layout = Allocator::replay(geometry, reftable_clusters);
            let needed = (layout.refblocks.len() as u64).div_ceil(geometry.cluster_size() / 8);
            if needed <= reftable_clusters {
                return layout;
            }
            reftable_clusters = needed;
        }
    }

    /// Host cluster of guest cluster `guest`.
    pub fn host_cluster(&self, guest: u64) -> Option<u64> {
        let i = self.runs.partition_point(|r| r.guest + r.count <= guest);
        let run = self.runs.get(i)?;
        (guest >= run.guest).then(|| run.host + (guest - run.guest))
    }

    /// Host runs `(first host cluster, clusters)` of guest clusters `[first, first + count)`.
    pub fn host_ranges(&self, first: u64, count: u64) -> Vec<(u64, u64)> {
        let end = first + count;
        let i = self.runs.partition_point(|r| r.guest + r.count <= first);
        let mut out = Vec::new();
        for run in self.runs[i..].iter().take_while(|r| r.guest < end) {
            let from = first.max(run.guest);
            let to = end.min(run.guest + run.count);
            out.push((run.host + (from - run.guest), to - from));
        }
        out
    }
}

/// The frontier allocator qemu's preallocation amounts to.
struct Allocator {
    geometry: Geometry,
    frontier: u64,
    l2: Vec<u64>,
    refblocks: Vec<u64>,
    runs: Vec<DataRun>,
}

impl Allocator {
    fn replay(geometry: Geometry, reftable_clusters: u64) -> PreallocLayout {
        let l1_size = usize::try_from(geometry.l1_size()).unwrap_or(usize::MAX);
        let mut a = Allocator {
            geometry,
            frontier: 0,
            l2: vec![0; l1_size],
            refblocks: Vec::new(),
            runs: Vec::new(),
        };
        // qcow2_co_create: header, refcount table, first refcount block; then the L1 table.
        a.frontier = 1 + reftable_clusters;
        a.refblocks.push(a.frontier);
        a.frontier += 1;
        a.cover();
        let l1 = a.fresh(geometry.l1_clusters());
        a.preallocate();
        // qemu extends the file to the end of the last data cluster, and metadata written
        // later may lie beyond it: either way the file ends on a cluster boundary.
        let file_len = a.frontier * geometry.cluster_size();
        PreallocLayout {
            geometry,
            reftable: 1,
            reftable_clusters,
            l1,
            l2: a.l2,
            refblocks: a.refblocks,
            runs: a.runs,
            clusters: a.frontier,
            file_len,
        }
    }

    /// Gives every refcount range up to the frontier a block, placed at the frontier.
    fn cover(&mut self) {
        let per_block = self.geometry.refcounts_per_block();
        while (self.refblocks.len() as u64) * per_block < self.frontier {
            self.refblocks.push(self.frontier);
            self.frontier += 1;
        }
    }

    /// `qcow2_alloc_clusters`: `n` clusters at the frontier, then their refcount blocks.
    fn fresh(&mut self, n: u64) -> u64 {
        let start = self.frontier;
        self.frontier += n;
        self.cover();
        start
    }

    /// `qcow2_alloc_clusters_at(at, n)`: extends a run in place. A missing refcount block
    /// takes the first uncovered cluster, which ends the run there.
    fn extend(&mut self, at: u64, n: u64) -> u64 {
        if at != self.frontier {
            return 0;
        }
        let covered = self.refblocks.len() as u64 * self.geometry.refcounts_per_block();
        if at + n <= covered {
            self.frontier += n;
            return n;
        }
        self.refblocks.push(covered);
        self.frontier = covered + 1;
        covered - at
    }

    /// `preallocate_co` over the whole disk.
    fn preallocate(&mut self) {
        let cs = self.geometry.cluster_size();
        let per_call = QEMU_INT_MAX / cs * cs;
        let mut offset = 0u64;
        while offset < self.geometry.virtual_size {
            let cur = (self.geometry.virtual_size - offset).min(per_call);
            offset += self.alloc_host_offset(offset, cur);
        }
    }

    /// `qcow2_alloc_host_offset` for `[start, start + bytes)`: returns the bytes handled.
    fn alloc_host_offset(&mut self, mut start: u64, mut remaining: u64) -> u64 {
        let cs = self.geometry.cluster_size();
        let entries = self.geometry.l2_entries();
        let max_run = QEMU_REQUEST_MAX_BYTES >> self.geometry.cluster_bits;
        let (first, mut host) = (start, None::<u64>);
        loop {
            let l1_index = usize::try_from(start / cs / entries).unwrap_or(usize::MAX);
            if self.l2[l1_index] == 0 {
                self.l2[l1_index] = self.fresh(1);
            }
            let want = (start % cs + remaining).div_ceil(cs);
            let n = want.min(entries - (start / cs) % entries).min(max_run);
            let (run_host, n) = match host {
                None => (self.fresh(n), n),
                Some(h) => match self.extend(h / cs, n) {
                    0 => break,
                    got => (h / cs, got),
                },
            };
            self.push_run(DataRun {
                guest: start / cs,
                host: run_host,
                count: n,
            });
            let handled = (n * cs - start % cs).min(remaining);
            host = Some(run_host * cs + start % cs + handled);
            start += handled;
            remaining -= handled;
            if remaining == 0 {
                break;
            }
        }
        start - first
    }

    fn push_run(&mut self, run: DataRun) {
        if let Some(last) = self.runs.last_mut()
            && last.guest + last.count == run.guest
            && last.host + last.count == run.host
        {
            last.count += run.count;
            return;
        }
        self.runs.push(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: u64, cluster_bits: u32) -> PreallocLayout {
        PreallocLayout::new(Geometry {
            cluster_bits,
            virtual_size: size,
        })
    }

    #[test]
    fn eight_gib_metadata_layout_matches_qemu() {
        // Offsets read from `qemu-img create -f qcow2 -o preallocation=metadata x 8G`
        // (qemu 10.0.2).
        let l = layout(8 << 30, 16);
        assert_eq!(l.l1, 3);
        assert_eq!(l.l2[..2], [4, 0x2005]);
        assert_eq!(l.refblocks, vec![2, 0x8008, 0x1000d, 0x18012, 0x20017]);
        assert_eq!(l.host_cluster(0), Some(5));
        assert_eq!(l.file_len, 8_591_507_456);
    }

    #[test]
    fn refcount_fixed_point_counts_itself() {
        // 32768 clusters fill one 64 KiB block; the block and table need a second block.
        assert_eq!(refcount_metadata(32768, 65536, 16), (2, 1));
    }

    #[test]
    fn prealloc_size_matches_qemu_measure() {
        // `qemu-img measure -O qcow2 --size 8G`: fully allocated size 8591507456.
        assert_eq!(prealloc_size(8 << 30, 65536), 8_591_507_456);
    }
}
