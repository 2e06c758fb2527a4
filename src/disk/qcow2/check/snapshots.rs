//! The snapshot table as `qemu-img check` reads it (qemu: `qcow2_do_read_snapshots`): each
//! entry's fixed part, extra data, id and name, 8-byte aligned; bytes past the end of the
//! file read as zeros. Only the L1 table of each entry is kept (and a short label for
//! messages); the count is capped at qemu's 65536 before anything is read.

use super::{
    Check, QCOW2_MAX_SNAPSHOT_EXTRA, QCOW2_MAX_SNAPSHOTS, QCOW2_MAX_SNAPSHOTS_BYTES,
    QCOW2_SNAPSHOT_HEADER_LEN, QCOW2_SNAPSHOT_MIN_EXTRA_V3, Snapshot, Stop,
};

/// Longest id or name a message shows.
const LABEL_BYTES: usize = 64;

impl Check<'_> {
    /// The snapshots and the bytes their table takes.
    pub(super) fn read_snapshots(&mut self) -> Result<(Vec<Snapshot>, u64), Stop> {
        let count = self.h.nb_snapshots;
        if count == 0 {
            return Ok((Vec::new(), 0));
        }
        if count > QCOW2_MAX_SNAPSHOTS {
            self.corruption(format!(
                "ERROR snapshot table too large: nb_snapshots is {count}, qemu allows {QCOW2_MAX_SNAPSHOTS}"
            ));
            return Err(Stop);
        }
        if !self.h.snapshots_offset.is_multiple_of(self.cs) {
            self.corruption("ERROR snapshot table offset invalid".into());
            return Err(Stop);
        }
        let start = self.h.snapshots_offset;
        let (mut offset, mut table_len) = (start, 0u64);
        let mut snapshots = Vec::new();
        for i in 0..count {
            offset = offset.checked_next_multiple_of(8).ok_or(Stop)?;
            table_len = table_len.next_multiple_of(8);
            let (sn, entry_len) = self.read_entry(i, offset)?;
            offset = offset.checked_add(entry_len).ok_or(Stop)?;
            table_len += entry_len;
            if table_len > QCOW2_MAX_SNAPSHOTS_BYTES {
                return Err(self.check_error(
                    "ERROR failed to read the snapshot table: Snapshot table is too big".into(),
                ));
            }
            snapshots.push(sn);
        }
        Ok((snapshots, offset - start))
    }

    /// Entry `i` at `offset` and its length.
    fn read_entry(&mut self, i: u32, offset: u64) -> Result<(Snapshot, u64), Stop> {
        let mut fixed = [0u8; QCOW2_SNAPSHOT_HEADER_LEN];
        self.read(&mut fixed, offset)?;
        let be32 = |at: usize| u32::from_be_bytes(fixed[at..at + 4].try_into().expect("4"));
        let be16 = |at: usize| u16::from_be_bytes(fixed[at..at + 2].try_into().expect("2"));
        let l1_offset = u64::from_be_bytes(fixed[0..8].try_into().expect("8 bytes"));
        let (l1_size, id_len, name_len, extra) = (be32(8), be16(12), be16(14), be32(36));
        if extra > QCOW2_MAX_SNAPSHOT_EXTRA {
            return Err(self.check_error(format!(
                "ERROR failed to read the snapshot table: Too much extra metadata in snapshot table entry {i}"
            )));
        }
        if self.h.version >= 3 && extra < QCOW2_SNAPSHOT_MIN_EXTRA_V3 {
            self.corruption(format!("ERROR snapshot table entry {i} is incomplete"));
        }
        let id_at = (offset.saturating_add(QCOW2_SNAPSHOT_HEADER_LEN as u64))
            .saturating_add(u64::from(extra));
        let id = self.text(id_at, id_len)?;
        let name = self.text(id_at.saturating_add(u64::from(id_len)), name_len)?;
        let len = QCOW2_SNAPSHOT_HEADER_LEN as u64
            + u64::from(extra)
            + u64::from(id_len)
            + u64::from(name_len);
        let label = format!("{id} ({name})");
        let sn = Snapshot {
            l1_offset,
            l1_size,
            label,
        };
        Ok((sn, len))
    }

    /// Up to [`LABEL_BYTES`] of a string in the file, as printable ASCII.
    fn text(&mut self, offset: u64, len: u16) -> Result<String, Stop> {
        let mut bytes = vec![0u8; usize::from(len).min(LABEL_BYTES)];
        self.read(&mut bytes, offset)?;
        Ok(bytes
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '?'
                }
            })
            .collect())
    }
}
