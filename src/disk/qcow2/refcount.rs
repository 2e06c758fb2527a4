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
}
