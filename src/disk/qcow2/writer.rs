//! The qcow2 writer (layouts and RAM use are described in the module doc of `qcow2`).

use flate2::{Compress, Compression, FlushCompress, Status};
use rayon::prelude::*;

use super::header::{QCOW2_V2_HEADER_LEN, QCOW2_V3_WRITE_LEN, Qcow2Header};
use super::layout::{Geometry, PreallocLayout, refcount_metadata};
use super::refcount::{SharedRefcounts, refcount_block, table_bytes};
use super::{Prealloc, Settings};
use crate::disk::block::{Block, Blocker};
use crate::disk::{CreateRequest, DiskWriter, Extent, WriteReport};
use crate::error::{Error, Result};
use crate::io::output::OutputSet;
use crate::io::sparse_out::SparseOut;
use crate::io::sys;

/// L1/L2 entry bit 63: refcount is exactly 1 (qcow2 spec, "QCOW_OFLAG_COPIED").
pub(super) const QCOW2_OFLAG_COPIED: u64 = 1 << 63;
/// L2 entry bit 62: the cluster is compressed.
pub(super) const QCOW2_OFLAG_COMPRESSED: u64 = 1 << 62;
/// qemu compresses with a 4 KiB window (raw deflate, windowBits -12) and inflates with
/// the same window, so kiln must not use a larger one.
const QCOW2_DEFLATE_WINDOW_BITS: u8 = 12;
/// zlib-rs level 9 with qemu's 4 KiB window: about as small as qemu's C zlib at its
/// default level 6 (zlib-rs level 6 came out 4% larger on the os corpus) and only about
/// 30% slower than level 6, which the parallel batches more than make up for.
const QCOW2_DEFLATE_LEVEL: u32 = 9;
/// Input bytes per compression batch.
const COMPRESS_BATCH_BYTES: usize = 4 << 20;

pub(super) fn create(
    req: &CreateRequest<'_>,
    settings: Settings,
    out: &mut OutputSet,
) -> Result<Box<dyn DiskWriter>> {
    // qemu counts the disk in 512-byte sectors and drops a partial one, so the size is
    // rounded up to a sector as qemu-img create and convert do.
    let virtual_size = req.virtual_size.div_ceil(512) * 512;
    let geometry = Geometry {
        cluster_bits: settings.cluster_bits,
        virtual_size,
    };
    check_size(geometry)?;
    let file = out.create_primary()?;
    let mode = match settings.prealloc {
        Prealloc::Off => Mode::Sparse(Box::new(SparseState::new(geometry, req.compress))),
        _ => Mode::Prealloc(PreallocLayout::new(geometry)),
    };
    if let (Prealloc::Falloc, Mode::Prealloc(layout)) = (settings.prealloc, &mode) {
        sys::allocate(&file, 0, layout.file_len)?;
    }
    let block_size = usize::try_from(geometry.cluster_size()).expect("cluster size fits usize");
    Ok(Box::new(Qcow2Writer {
        settings,
        geometry,
        blocker: Blocker::runs(block_size),
        sink: SparseOut::new(file),
        mode,
    }))
}

/// Refuses sizes whose L1 table would exceed qemu's limit.
pub(super) fn check_size(geometry: Geometry) -> Result<()> {
    let l1_bytes = geometry.l1_size().checked_mul(8);
    if l1_bytes.is_none_or(|b| b > super::header::QCOW2_MAX_L1_BYTES) {
        return Err(Error::invalid_input(format!(
            "virtual size {} is too large for qcow2 with {}-byte clusters; try a larger cluster_size",
            geometry.virtual_size,
            geometry.cluster_size()
        )));
    }
    Ok(())
}

enum Mode {
    Sparse(Box<SparseState>),
    Prealloc(PreallocLayout),
}

struct Qcow2Writer {
    settings: Settings,
    geometry: Geometry,
    blocker: Blocker,
    sink: SparseOut,
    mode: Mode,
}

impl Qcow2Writer {
    fn take_block(&mut self, block: Block<'_>) -> Result<()> {
        let cs = self.geometry.cluster_size();
        match (&mut self.mode, block) {
            (Mode::Sparse(state), Block::Data { index, bytes }) => {
                state.data(&mut self.sink, index, bytes)
            }
            (Mode::Sparse(_), Block::Empty { .. }) => Ok(()),
            (Mode::Prealloc(layout), Block::Data { index, bytes }) => {
                let count = bytes.len() as u64 / cs;
                let mut rest = bytes;
                for (host, n) in layout.host_ranges(index, count) {
                    let (piece, tail) =
                        rest.split_at(usize::try_from(n * cs).expect("within bytes"));
                    self.sink.write(host * cs, piece)?;
                    rest = tail;
                }
                Ok(())
            }
            (Mode::Prealloc(layout), Block::Empty { index, count }) => {
                if self.settings.prealloc != Prealloc::Full {
                    return Ok(());
                }
                for (host, n) in layout.host_ranges(index, count) {
                    self.sink.write_zeros(host * cs, n * cs)?;
                }
                Ok(())
            }
        }
    }

    fn header(&self, l1: u64, reftable: u64, reftable_clusters: u64) -> Result<Qcow2Header> {
        let v3 = self.settings.version == 3;
        let too_big = || Error::invalid_input("qcow2 tables too large");
        Ok(Qcow2Header {
            version: self.settings.version,
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: self.settings.cluster_bits,
            size: self.geometry.virtual_size,
            crypt_method: 0,
            l1_size: u32::try_from(self.geometry.l1_size()).map_err(|_| too_big())?,
            l1_table_offset: l1 * self.geometry.cluster_size(),
            refcount_table_offset: reftable * self.geometry.cluster_size(),
            refcount_table_clusters: u32::try_from(reftable_clusters).map_err(|_| too_big())?,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible: 0,
            compatible: 0,
            autoclear: 0,
            refcount_order: 4,
            header_length: if v3 {
                QCOW2_V3_WRITE_LEN
            } else {
                QCOW2_V2_HEADER_LEN
            },
            compression_type: 0,
        })
    }

    /// Writes the L2 tables, refcount blocks and table, L1 and header of a preallocated image.
    fn finish_prealloc(&mut self, layout: &PreallocLayout) -> Result<()> {
        let cs = self.geometry.cluster_size();
        let entries = self.geometry.l2_entries();
        let guest_clusters = self.geometry.guest_clusters();
        let mut table = vec![0u64; usize::try_from(entries).expect("entries fit usize")];
        for (l1_index, &l2) in layout.l2.iter().enumerate() {
            let first = l1_index as u64 * entries;
            for (j, slot) in table.iter_mut().enumerate() {
                let guest = first + j as u64;
                *slot = match layout.host_cluster(guest) {
                    Some(host) if guest < guest_clusters => (host * cs) | QCOW2_OFLAG_COPIED,
                    _ => 0,
                };
            }
            self.sink.write(l2 * cs, &table_bytes(&table, 1, cs))?;
        }
        let shared = SharedRefcounts::default();
        for (index, &block) in layout.refblocks.iter().enumerate() {
            let bytes = refcount_block(index as u64, cs, layout.clusters, &shared);
            self.sink.write(block * cs, &bytes)?;
        }
        let reftable: Vec<u64> = layout.refblocks.iter().map(|&b| b * cs).collect();
        self.sink.write(
            layout.reftable * cs,
            &table_bytes(&reftable, layout.reftable_clusters, cs),
        )?;
        let l1: Vec<u64> = layout
            .l2
            .iter()
            .map(|&l2| (l2 * cs) | QCOW2_OFLAG_COPIED)
            .collect();
        self.sink.write(
            layout.l1 * cs,
            &table_bytes(&l1, self.geometry.l1_clusters(), cs),
        )?;
        let header = self.header(layout.l1, layout.reftable, layout.reftable_clusters)?;
        self.sink.write(0, &header.to_bytes())?;
        self.sink.flush()?;
        self.sink.file().set_len(layout.file_len)?;
        Ok(())
    }

    /// Writes the last L2 table, refcount blocks and table, L1 and header of a sparse image.
    fn finish_sparse(&mut self, state: &mut SparseState) -> Result<()> {
        state.flush_batch(&mut self.sink)?;
        state.close_l2(&mut self.sink)?;
        let cs = self.geometry.cluster_size();
        let used = state.frontier;
        let (blocks, table_clusters) = refcount_metadata(used, cs, 16);
        let total = used + blocks + table_clusters;
        let mut reftable = Vec::new();
        for index in 0..blocks {
            let bytes = refcount_block(index, cs, total, &state.shared);
            self.sink.write((used + index) * cs, &bytes)?;
            reftable.push((used + index) * cs);
        }
        self.sink.write(
            (used + blocks) * cs,
            &table_bytes(&reftable, table_clusters, cs),
        )?;
        self.sink
            .write(cs, &table_bytes(&state.l1, self.geometry.l1_clusters(), cs))?;
        let header = self.header(1, used + blocks, table_clusters)?;
        self.sink.write(0, &header.to_bytes())?;
        self.sink.flush()?;
        self.sink.file().set_len(total * cs)?;
        Ok(())
    }
}

impl DiskWriter for Qcow2Writer {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        Blocker::push_via(self, |w| &mut w.blocker, extent, Self::take_block)
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        Blocker::finish_via(&mut *self, |w| &mut w.blocker, Self::take_block)?;
        match std::mem::replace(&mut self.mode, Mode::Prealloc(PreallocLayout::empty())) {
            Mode::Sparse(mut state) => self.finish_sparse(&mut state)?,
            Mode::Prealloc(layout) => self.finish_prealloc(&layout)?,
        }
        Ok(WriteReport::new(self.geometry.virtual_size))
    }
}

/// Allocation state of a `preallocation=off` image.
struct SparseState {
    geometry: Geometry,
    compress: bool,
    /// L1 entries (host offset | COPIED).
    l1: Vec<u64>,
    /// Next free host cluster.
    frontier: u64,
    /// The L2 table being filled and its L1 index.
    l2: Vec<u64>,
    l2_index: Option<u64>,
    /// Byte offset where the next compressed cluster may go, while the cluster it lies in
    /// is the last one allocated.
    packed: Option<u64>,
    shared: SharedRefcounts,
    /// Clusters waiting to be compressed: (guest cluster, bytes).
    batch: Vec<(u64, Vec<u8>)>,
}

impl SparseState {
    fn new(geometry: Geometry, compress: bool) -> Self {
        let l1_len = usize::try_from(geometry.l1_size()).expect("checked against the L1 limit");
        let entries = usize::try_from(geometry.l2_entries()).expect("entries fit usize");
        Self {
            geometry,
            compress,
            l1: vec![0; l1_len],
            frontier: 1 + geometry.l1_clusters(),
            l2: vec![0; entries],
            l2_index: None,
            packed: None,
            shared: SharedRefcounts::default(),
            batch: Vec::new(),
        }
    }

    /// Stores the whole clusters `bytes` from guest cluster `first`.
    fn data(&mut self, sink: &mut SparseOut, first: u64, bytes: &[u8]) -> Result<()> {
        let cs = usize::try_from(self.geometry.cluster_size()).expect("cluster size fits usize");
        if !self.compress {
            return self.place_raw(sink, first, bytes);
        }
        for (guest, cluster) in (first..).zip(bytes.chunks(cs)) {
            self.batch.push((guest, cluster.to_vec()));
        }
        if self.batch.len() * cs >= COMPRESS_BATCH_BYTES {
            self.flush_batch(sink)?;
        }
        Ok(())
    }

    fn alloc(&mut self) -> u64 {
        self.packed = None;
        self.frontier += 1;
        self.frontier - 1
    }

    /// Makes the L2 table of `guest` current, writing out the previous one.
    fn select_l2(&mut self, sink: &mut SparseOut, guest: u64) -> Result<usize> {
        let entries = self.geometry.l2_entries();
        let l1_index = guest / entries;
        if self.l2_index != Some(l1_index) {
            self.close_l2(sink)?;
            self.l2_index = Some(l1_index);
        }
        Ok(usize::try_from(guest % entries).expect("index below the entry count"))
    }

    fn close_l2(&mut self, sink: &mut SparseOut) -> Result<()> {
        let Some(l1_index) = self.l2_index.take() else {
            return Ok(());
        };
        let cs = self.geometry.cluster_size();
        let host = self.alloc();
        sink.write(host * cs, &table_bytes(&self.l2, 1, cs))?;
        let slot = usize::try_from(l1_index).expect("index below the L1 size");
        self.l1[slot] = (host * cs) | QCOW2_OFLAG_COPIED;
        self.l2.fill(0);
        Ok(())
    }

    /// Stores whole clusters uncompressed, each L2 table's share with one write: the
    /// clusters get adjacent host clusters, as one at a time would give them.
    fn place_raw(&mut self, sink: &mut SparseOut, first: u64, bytes: &[u8]) -> Result<()> {
        let cs = self.geometry.cluster_size();
        let entries = self.geometry.l2_entries();
        let (mut guest, mut rest) = (first, bytes);
        while !rest.is_empty() {
            let slot = self.select_l2(sink, guest)?;
            let count = (rest.len() as u64 / cs).min(entries - guest % entries);
            let host = self.alloc();
            self.frontier += count - 1;
            for (i, entry) in self.l2[slot..]
                [..usize::try_from(count).expect("below the entry count")]
                .iter_mut()
                .enumerate()
            {
                *entry = ((host + i as u64) * cs) | QCOW2_OFLAG_COPIED;
            }
            let (piece, tail) = rest.split_at(usize::try_from(count * cs).expect("within bytes"));
            sink.write(host * cs, piece)?;
            guest += count;
            rest = tail;
        }
        Ok(())
    }

    /// Appends a compressed cluster after the previous one, spanning host clusters as
    /// qemu does; every host cluster it touches gains a reference.
    fn place_compressed(&mut self, sink: &mut SparseOut, guest: u64, data: &[u8]) -> Result<()> {
        let slot = self.select_l2(sink, guest)?;
        let cs = self.geometry.cluster_size();
        let start = self.packed.unwrap_or(self.frontier * cs);
        let end = start + data.len() as u64;
        for cluster in start / cs..=(end - 1) / cs {
            self.shared.add(cluster);
        }
        self.frontier = self.frontier.max((end - 1) / cs + 1);
        self.packed = Some(end);
        sink.write(start, data)?;
        // qcow2 spec, "Compressed Clusters Descriptor": offset in the low bits, then the
        // number of 512-byte sectors after the first one that the data touches.
        let shift = 62 - (self.geometry.cluster_bits - 8);
        let sectors = (end - 1) / 512 - start / 512;
        self.l2[slot] = QCOW2_OFLAG_COMPRESSED | sectors << shift | start;
        Ok(())
    }

    fn flush_batch(&mut self, sink: &mut SparseOut) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let cs = self.geometry.cluster_size();
        let compressed: Vec<Option<Vec<u8>>> = batch
            .par_iter()
            .map_init(new_deflate, |z, (_, bytes)| deflate_cluster(z, bytes, cs))
            .collect();
        for ((guest, bytes), packed) in batch.iter().zip(compressed) {
            match packed {
                Some(data) => self.place_compressed(sink, *guest, &data)?,
                None => self.place_raw(sink, *guest, bytes)?,
            }
        }
        Ok(())
    }
}

fn new_deflate() -> Compress {
    Compress::new_with_window_bits(
        Compression::new(QCOW2_DEFLATE_LEVEL),
        false,
        QCOW2_DEFLATE_WINDOW_BITS,
    )
}

/// Raw-deflates one cluster; `None` when the result would not be smaller than a cluster.
fn deflate_cluster(z: &mut Compress, bytes: &[u8], cluster_size: u64) -> Option<Vec<u8>> {
    z.reset();
    let cluster = usize::try_from(cluster_size).ok()?;
    // Room for deflate's worst case (stored blocks): zlib-rs must never run out of output
    // space mid-stream, so the size check happens afterwards.
    let mut out = Vec::with_capacity(cluster * 2 + 64);
    match z.compress_vec(bytes, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) if out.len() < cluster => Some(out),
        _ => None,
    }
}

impl PreallocLayout {
    /// A placeholder while the writer moves its real layout out.
    fn empty() -> Self {
        Self {
            geometry: Geometry {
                cluster_bits: 16,
                virtual_size: 0,
            },
            reftable: 0,
            reftable_clusters: 0,
            l1: 0,
            l2: Vec::new(),
            refblocks: Vec::new(),
            runs: Vec::new(),
            clusters: 0,
            file_len: 0,
        }
    }
}
