//! Refcount blocks and the refcount table (qcow2 spec, "Host cluster management").
//!
//! kiln's writers allocate every host cluster from one frontier, so the refcounts are
//! implied: 1 for every cluster below the frontier, except host clusters holding
//! compressed clusters, which count every compressed cluster that touches them. Those are
//! the only refcounts kept in RAM (a sorted list, 16 bytes per shared host cluster).

/// Refcounts that are not 1, as `(host cluster, refcount)` in ascending cluster order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SharedRefcounts {
    entries: Vec<(u64, u16)>,
}

impl SharedRefcounts {
    /// Counts one more reference to `cluster`, which is at or after every cluster counted
    /// so far (the writer allocates in order).
    pub fn add(&mut self, cluster: u64) {
        match self.entries.last_mut() {
            // A compressed cluster is at least a few bytes of deflate output, so even a
            // 2 MiB host cluster holds far fewer than 65535 of them.
            Some((last, count)) if *last == cluster => *count = count.saturating_add(1),
            _ => self.entries.push((cluster, 1)),
        }
    }

    /// The refcount of `cluster` below the frontier.
    fn get(&self, cluster: u64) -> u16 {
        match self.entries.binary_search_by_key(&cluster, |&(c, _)| c) {
            Ok(i) => self.entries[i].1,
            Err(_) => 1,
        }
    }
}

/// Builds refcount block `index` (16-bit entries) for an image whose clusters below
/// `clusters` are in use with refcount 1 unless `shared` says otherwise.
pub(super) fn refcount_block(
    index: u64,
    cluster_size: u64,
    clusters: u64,
    shared: &SharedRefcounts,
) -> Vec<u8> {
    let per_block = cluster_size / 2;
    let first = index * per_block;
    let mut block = vec![0u8; usize::try_from(cluster_size).expect("cluster size fits usize")];
    for (i, entry) in block.chunks_exact_mut(2).enumerate() {
        let cluster = first + i as u64;
        if cluster >= clusters {
            break;
        }
        entry.copy_from_slice(&shared.get(cluster).to_be_bytes());
    }
    block
}

/// Serialises big-endian 64-bit table entries padded to whole clusters.
pub(super) fn table_bytes(entries: &[u64], clusters: u64, cluster_size: u64) -> Vec<u8> {
    let len = usize::try_from(clusters * cluster_size).expect("table fits in memory");
    let mut bytes = vec![0u8; len];
    for (slot, entry) in bytes.chunks_exact_mut(8).zip(entries) {
        slot.copy_from_slice(&entry.to_be_bytes());
    }
    bytes
}

/// Refcount table entries keep the block offset in bits 9..=63.
pub(super) const QCOW2_REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;

/// References counted while checking an image: one bit per host cluster of the file for
/// "referenced", and a map of the clusters referenced more than once. Bounded by the file:
/// the bit set by its cluster count (a 1 TiB file of 64 KiB clusters costs 2 MiB), the map
/// by [`MAX_SHARED_CLUSTERS`] entries.
#[derive(Debug)]
pub(super) struct Counted {
    once: Vec<u64>,
    shared: std::collections::BTreeMap<u64, u64>,
    clusters: u64,
}

/// Clusters referenced more than once that a check keeps count of (about 64 MiB of map).
pub(super) const MAX_SHARED_CLUSTERS: usize = 1 << 20;

impl Counted {
    /// Room for `clusters` host clusters.
    pub fn new(clusters: u64) -> Self {
        let words = usize::try_from(clusters.div_ceil(64)).expect("bounded by the file size");
        Self {
            once: vec![0; words],
            shared: std::collections::BTreeMap::new(),
            clusters,
        }
    }

    /// References counted to `cluster`.
    pub fn get(&self, cluster: u64) -> u64 {
        let Some(word) = self.word(cluster) else {
            return 0;
        };
        if self.once[word] & (1 << (cluster % 64)) == 0 {
            return 0;
        }
        self.shared.get(&cluster).copied().unwrap_or(1)
    }

    /// Counts one more reference to `cluster` (below [`Counted::clusters`]); false when the
    /// map of shared clusters is full.
    pub fn add(&mut self, cluster: u64) -> bool {
        let Some(word) = self.word(cluster) else {
            return true;
        };
        let bit = 1 << (cluster % 64);
        if self.once[word] & bit == 0 {
            self.once[word] |= bit;
            return true;
        }
        if let Some(count) = self.shared.get_mut(&cluster) {
            *count += 1;
            return true;
        }
        if self.shared.len() >= MAX_SHARED_CLUSTERS {
            return false;
        }
        self.shared.insert(cluster, 2);
        true
    }

    fn word(&self, cluster: u64) -> Option<usize> {
        (cluster < self.clusters).then(|| usize::try_from(cluster / 64).expect("checked"))
    }
}

/// Reads the refcounts an image stores (any `refcount_order`), one refcount block at a time.
pub(super) struct Stored<'a> {
    src: &'a dyn crate::io::ReadAt,
    cluster_bits: u32,
    refcount_order: u32,
    table_offset: u64,
    table_entries: u64,
    /// The table entry read last, `(index, entry)`.
    entry: Option<(u64, u64)>,
    block: Option<(u64, Vec<u8>)>,
}

/// Why a stored refcount cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UnalignedBlock;

impl<'a> Stored<'a> {
    /// The refcounts of an image whose refcount table is `table_clusters` clusters at
    /// `table_offset`.
    pub fn new(
        src: &'a dyn crate::io::ReadAt,
        cluster_bits: u32,
        refcount_order: u32,
        table_offset: u64,
        table_clusters: u32,
    ) -> Self {
        Self {
            src,
            cluster_bits,
            refcount_order,
            table_offset,
            table_entries: u64::from(table_clusters) << (cluster_bits - 3),
            entry: None,
            block: None,
        }
    }

    /// Entries of the refcount table.
    pub fn table_entries(&self) -> u64 {
        self.table_entries
    }

    /// Refcount table entry `index` (bytes past the end of the file read as zeros).
    pub fn table_entry(&self, index: u64) -> std::io::Result<u64> {
        let mut bytes = [0u8; 8];
        // A table offset near 2^64 reads as zeros past the end, not as an overflow.
        let offset = self.table_offset.saturating_add(index * 8);
        read_zero_filled(self.src, &mut bytes, offset)?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// The refcount stored for `cluster`: 0 where no table entry or block covers it.
    pub fn get(&mut self, cluster: u64) -> std::io::Result<Result<u64, UnalignedBlock>> {
        let per_block_bits = self.cluster_bits + 3 - self.refcount_order;
        let index = cluster >> per_block_bits;
        if index >= self.table_entries {
            return Ok(Ok(0));
        }
        let table_entry = match self.entry {
            Some((i, e)) if i == index => e,
            _ => self.table_entry(index)?,
        };
        self.entry = Some((index, table_entry));
        let offset = table_entry & QCOW2_REFT_OFFSET_MASK;
        if offset == 0 {
            return Ok(Ok(0));
        }
        if offset & ((1 << self.cluster_bits) - 1) != 0 {
            return Ok(Err(UnalignedBlock));
        }
        if self.block.as_ref().is_none_or(|(o, _)| *o != offset) {
            let len = usize::try_from(1u64 << self.cluster_bits).expect("at most 2 MiB");
            let mut bytes = vec![0u8; len];
            read_zero_filled(self.src, &mut bytes, offset)?;
            self.block = Some((offset, bytes));
        }
        let block = &self.block.as_ref().expect("loaded above").1;
        let slot = cluster & ((1 << per_block_bits) - 1);
        Ok(Ok(entry(block, slot, self.refcount_order)))
    }
}

/// Entry `slot` of a refcount block of `1 << order`-bit entries (qcow2 spec: big-endian
/// for whole bytes; narrower entries fill each byte from its least significant bit, as
/// qemu reads them).
fn entry(block: &[u8], slot: u64, order: u32) -> u64 {
    let bits = 1u64 << order;
    if bits < 8 {
        let per_byte = 8 / bits;
        let byte = block[usize::try_from(slot / per_byte).expect("in the block")];
        let shift = (slot % per_byte) * bits;
        return (u64::from(byte) >> shift) & ((1 << bits) - 1);
    }
    let width = usize::try_from(bits / 8).expect("at most 8");
    let start = usize::try_from(slot).expect("in the block") * width;
    block[start..start + width]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Reads `buf` at `offset`; bytes past the end of the file read as zeros (as qemu reads
/// them), so a hostile offset costs no more than the buffer.
pub(super) fn read_zero_filled(
    src: &dyn crate::io::ReadAt,
    buf: &mut [u8],
    offset: u64,
) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let Some(at) = offset.checked_add(done as u64) else {
            break;
        };
        match src.read_at(&mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_cluster_counts_each_reference() {
        let mut shared = SharedRefcounts::default();
        shared.add(7);
        shared.add(7);
        shared.add(8);
        let block = refcount_block(0, 512, 9, &shared);
        assert_eq!(&block[12..18], &[0, 1, 0, 2, 0, 1]);
        assert_eq!(&block[18..20], &[0, 0]);
    }

    #[test]
    fn a_cluster_referenced_three_times_counts_three() {
        let mut counted = Counted::new(100);
        for _ in 0..3 {
            assert!(counted.add(70));
        }
        assert_eq!((counted.get(70), counted.get(69)), (3, 0));
    }

    #[test]
    fn one_bit_refcounts_fill_each_byte_from_its_low_bit() {
        assert_eq!(entry(&[0b0000_0100], 2, 0), 1);
    }

    #[test]
    fn sixteen_bit_refcounts_are_big_endian() {
        assert_eq!(entry(&[0, 0, 1, 2], 1, 4), 0x102);
    }
}
