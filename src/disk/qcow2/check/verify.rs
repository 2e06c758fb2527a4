//! The second half of the check: the refcount blocks themselves, the stored refcounts
//! against the references counted, and the copied flags of the active tables (qemu:
//! `check_refblocks`, `compare_refcounts`, `check_oflag_copied`).

use super::super::reader::QCOW2_OFFSET_MASK;
use super::{Check, QCOW2_OFLAG_COPIED, QCOW2_REFT_OFFSET_MASK, Stop};
use crate::disk::qcow2::header::INCOMPAT_DATA_FILE;
use crate::disk::qcow2::writer::QCOW2_OFLAG_COMPRESSED;

impl Check<'_> {
    /// Every refcount table entry: aligned, inside the image, referenced exactly once.
    pub(super) fn check_refcount_blocks(&mut self) -> Result<(), Stop> {
        let entries = self.stored.table_entries();
        for i in 0..entries {
            let entry = self.stored.table_entry(i);
            let entry = entry.map_err(|e| self.check_error(format!("ERROR: {e}")))?;
            let offset = entry & QCOW2_REFT_OFFSET_MASK;
            if !offset.is_multiple_of(self.cs) {
                self.corruption(format!("ERROR refcount block {i} is not cluster aligned; refcount table entry corrupted"));
                continue;
            }
            if offset / self.cs >= self.nb_clusters {
                self.corruption(format!("ERROR refcount block {i} is outside image"));
                continue;
            }
            if offset == 0 {
                continue;
            }
            self.add_range(offset, self.cs)?;
            let count = self.counted.get(offset / self.cs);
            if count != 1 {
                self.corruption(format!("ERROR refcount block {i} refcount={count}"));
            }
        }
        Ok(())
    }

    /// Stored refcount against references, cluster by cluster.
    pub(super) fn compare(&mut self) -> Result<(), Stop> {
        for i in 0..self.nb_clusters {
            let found = self.stored.get(i);
            let found = found.map_err(|e| self.check_error(format!("ERROR: {e}")))?;
            let Ok(refcount) = found else {
                self.report.check_errors += 1;
                self.report.note(format!(
                    "Can't get refcount for cluster {i}: Input/output error"
                ));
                continue;
            };
            let reference = self.counted.get(i);
            if refcount < reference {
                self.corruption(format!(
                    "ERROR cluster {i} refcount={refcount} reference={reference}"
                ));
            } else if refcount > reference {
                self.report.leaks += 1;
                self.report.note(format!(
                    "Leaked cluster {i} refcount={refcount} reference={reference}"
                ));
            }
        }
        Ok(())
    }

    /// The copied flag of each active L1 and L2 entry says "refcount is exactly 1".
    pub(super) fn check_copied_flags(&mut self) -> Result<(), Stop> {
        let l1_size = u64::from(self.h.l1_size);
        let mut first = 0;
        while first < l1_size {
            let chunk = self.l1_chunk(self.h.l1_table_offset, first, l1_size)?;
            for (i, entry) in (first..).zip(chunk.iter().copied()) {
                self.check_copied_l1(i, entry)?;
            }
            first += chunk.len() as u64;
        }
        Ok(())
    }

    fn check_copied_l1(&mut self, index: u64, entry: u64) -> Result<(), Stop> {
        let l2_offset = entry & QCOW2_OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(());
        }
        if let Some(refcount) = self.stored_refcount(l2_offset)?
            && (refcount == 1) != (entry & QCOW2_OFLAG_COPIED != 0)
        {
            self.past_end_too(l2_offset);
            self.corruption(format!("ERROR OFLAG_COPIED L2 cluster: l1_index={index} l1_entry={entry:x} refcount={refcount}"));
        }
        for l2_entry in self.l2_table(l2_offset)? {
            let data = l2_entry & QCOW2_OFFSET_MASK;
            if l2_entry & QCOW2_OFLAG_COMPRESSED != 0 || data == 0 {
                continue;
            }
            let refcount = if self.h.incompatible & INCOMPAT_DATA_FILE != 0 {
                Some(1)
            } else {
                self.stored_refcount(data)?
            };
            let Some(refcount) = refcount else { continue };
            if (refcount == 1) != (l2_entry & QCOW2_OFLAG_COPIED != 0) {
                self.past_end_too(data);
                self.corruption(format!(
                    "ERROR OFLAG_COPIED data cluster: l2_entry={l2_entry:x} refcount={refcount}"
                ));
            }
        }
        Ok(())
    }

    /// A copied-flag finding about a cluster past the end of the file is the same problem
    /// as the reference past the end.
    fn past_end_too(&mut self, offset: u64) {
        if offset >= self.file_len {
            self.report.past_end += 1;
        }
    }

    /// The stored refcount of the cluster holding `offset`; `None` when it cannot be had.
    fn stored_refcount(&mut self, offset: u64) -> Result<Option<u64>, Stop> {
        let found = self.stored.get(offset / self.cs);
        let found = found.map_err(|e| self.check_error(format!("ERROR: {e}")))?;
        Ok(found.ok())
    }
}
