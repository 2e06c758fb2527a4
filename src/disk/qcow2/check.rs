//! `kiln check` for qcow2: every host cluster's references recounted and compared with the
//! refcounts the image stores, the snapshot table read, and the copied flags checked, as
//! `qemu-img check` does (qemu: block/qcow2-refcount.c "refcount checking functions",
//! block/qcow2-snapshot.c `qcow2_check_read_snapshot_table`). Findings use qemu's words,
//! so the two reports can be compared line by line, and are counted as qemu counts them:
//! corruptions (`ERROR ...`), leaks (`Leaked cluster ...`) and check errors.
//!
//! Bounded by the file, never by the virtual disk or by header counts: one bit per host
//! cluster of the file plus a capped map of clusters referenced more than once
//! ([`Counted`]), one cluster of a table at a time, at most [`MAX_MESSAGES`] messages kept
//! (all are counted), and L2 tables read at most [`L2_READS_PER_FILE_BYTE`] times the
//! file's length (plus one cluster) in all, so an L1 table whose every entry names the same
//! L2 table, or 2 MiB L2 tables in a small file, cannot make the walk quadratic.
//! Persistent bitmaps are not counted: their clusters would show as leaks.

use super::Qcow2Error;
use super::header::{INCOMPAT_DATA_FILE, Qcow2Header};
use super::reader::{QCOW2_OFFSET_MASK, QCOW2_OFLAG_ZERO, read_header};
use super::refcount::{Counted, QCOW2_REFT_OFFSET_MASK, Stored, read_zero_filled};
use super::writer::QCOW2_OFLAG_COMPRESSED;
use crate::error::Result;
use crate::io::{ReadAt, table};

/// L1 and L2 entry bit 63: the cluster's refcount is exactly 1.
const QCOW2_OFLAG_COPIED: u64 = 1 << 63;
/// qemu's QCOW_MAX_SNAPSHOTS.
const QCOW2_MAX_SNAPSHOTS: u32 = 65536;
/// qemu's QCOW_MAX_SNAPSHOT_EXTRA_DATA.
const QCOW2_MAX_SNAPSHOT_EXTRA: u32 = 1024;
/// qemu's QCOW_MAX_SNAPSHOTS_SIZE: the whole snapshot table.
const QCOW2_MAX_SNAPSHOTS_BYTES: u64 = 1024 * 65536;
/// Fixed part of a snapshot table entry.
const QCOW2_SNAPSHOT_HEADER_LEN: usize = 40;
/// A version 3 snapshot entry carries at least vm_state_size_large and disk_size.
const QCOW2_SNAPSHOT_MIN_EXTRA_V3: u32 = 16;
/// Messages a report keeps (a zeroed refcount block of a large image yields one per cluster).
pub const MAX_MESSAGES: usize = 1000;
/// L2 table bytes a check reads, per byte of the file: every L2 table lies in the file, and a
/// sound image reads each a few times (active L1, copied flags, snapshots sharing it).
const L2_READS_PER_FILE_BYTE: u64 = 64;

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Inconsistencies that may corrupt data (qemu's "errors").
    pub corruptions: u64,
    /// Clusters whose stored refcount is higher than their references (harmless).
    pub leaks: u64,
    /// Problems that stopped part of the check.
    pub check_errors: u64,
    /// Of the corruptions, references to a range past the end of the file (a read of the
    /// active tables reports those itself, naming the guest offset).
    pub past_end: u64,
    /// The first [`MAX_MESSAGES`] findings, in the order qemu-img prints them.
    pub messages: Vec<String>,
}

impl CheckReport {
    /// Findings that make the image fail the check.
    pub fn errors(&self) -> u64 {
        self.corruptions + self.check_errors
    }

    fn note(&mut self, message: String) {
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(message);
        }
    }
}

/// The check gave up on the rest of the image (its reason is in the report).
struct Stop;

/// One snapshot table entry, as far as the check needs it.
struct Snapshot {
    l1_offset: u64,
    l1_size: u32,
    label: String,
}

/// Checks the qcow2 image in `src`.
///
/// # Errors
/// I/O failures and a header that does not parse (the report covers everything else).
pub fn check(src: &dyn ReadAt) -> Result<CheckReport> {
    let file_len = src.len();
    let header = read_header(src, file_len)?;
    let mut c = Check::new(src, &header, file_len);
    if let Err(Stop) = c.run() {
        c.report
            .note("check stopped early; the counts cover the part checked".into());
    }
    Ok(c.report)
}

struct Check<'a> {
    src: &'a dyn ReadAt,
    h: &'a Qcow2Header,
    file_len: u64,
    cs: u64,
    counted: Counted,
    stored: Stored<'a>,
    /// Clusters the comparison covers: the file's, or more when references reach past it.
    nb_clusters: u64,
    /// L2 table bytes still allowed to be read.
    l2_bytes_left: u64,
    report: CheckReport,
}

impl<'a> Check<'a> {
    fn new(src: &'a dyn ReadAt, h: &'a Qcow2Header, file_len: u64) -> Self {
        let cs = h.cluster_size();
        let nb_clusters = file_len.div_ceil(cs);
        Self {
            src,
            h,
            file_len,
            cs,
            // A reference may reach less than one cluster past the end (qemu's rule).
            counted: Counted::new(nb_clusters + 1),
            stored: Stored::new(
                src,
                h.cluster_bits,
                h.refcount_order,
                h.refcount_table_offset,
                h.refcount_table_clusters,
            ),
            nb_clusters,
            l2_bytes_left: file_len.saturating_add(cs) * L2_READS_PER_FILE_BYTE,
            report: CheckReport::default(),
        }
    }

    fn corruption(&mut self, message: String) {
        self.report.corruptions += 1;
        self.report.note(message);
    }

    fn check_error(&mut self, message: String) -> Stop {
        self.report.check_errors += 1;
        self.report.note(message);
        Stop
    }

    fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Stop> {
        read_zero_filled(self.src, buf, offset)
            .map_err(|e| self.check_error(format!("ERROR: I/O error at offset {offset:#x}: {e}")))
    }

    fn run(&mut self) -> Result<(), Stop> {
        self.check_sizes()?;
        let (snapshots, table_len) = self.read_snapshots()?;
        self.add_range(0, self.cs)?;
        self.walk_l1(self.h.l1_table_offset, u64::from(self.h.l1_size))?;
        for sn in &snapshots {
            self.walk_snapshot(sn)?;
        }
        self.add_range(self.h.snapshots_offset, table_len)?;
        let reftable_len = u64::from(self.h.refcount_table_clusters) * self.cs;
        self.add_range(self.h.refcount_table_offset, reftable_len)?;
        self.check_refcount_blocks()?;
        self.compare()?;
        self.check_copied_flags()
    }

    /// Tables kiln will not walk at all (qemu refuses to open such images).
    fn check_sizes(&mut self) -> Result<(), Stop> {
        let problem = if u64::from(self.h.l1_size) > super::header::QCOW2_MAX_L1_BYTES / 8 {
            "L1 table too large"
        } else if u64::from(self.h.refcount_table_clusters) * self.cs
            > super::header::QCOW2_MAX_REFTABLE_BYTES
        {
            "refcount table too large"
        } else {
            return Ok(());
        };
        self.report.corruptions += 1;
        self.report.note(format!("ERROR {problem}"));
        Err(Stop)
    }

    /// qemu's `inc_refcounts`: one more reference to every cluster `[offset, offset+size)`
    /// touches, unless the range ends a cluster or more past the end of the file.
    fn add_range(&mut self, offset: u64, size: u64) -> Result<(), Stop> {
        if size == 0 {
            return Ok(());
        }
        let end = offset.saturating_add(size);
        if end > self.file_len && end - self.file_len >= self.cs {
            self.report.past_end += 1;
            self.corruption(format!("ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset {offset:#x} size {size:#x}"));
            return Ok(());
        }
        let max = self.refcount_max();
        for cluster in offset / self.cs..=(end - 1) / self.cs {
            if self.counted.get(cluster) >= max {
                self.corruption(format!(
                    "ERROR: overflow cluster offset={:#x}",
                    cluster * self.cs
                ));
                continue;
            }
            if !self.counted.add(cluster) {
                return Err(self
                    .check_error("ERROR: too many clusters are referenced more than once".into()));
            }
            self.nb_clusters = self.nb_clusters.max(cluster + 1);
        }
        Ok(())
    }

    fn refcount_max(&self) -> u64 {
        match self.h.refcount_order {
            6 => u64::MAX,
            order => (1u64 << (1u64 << order)) - 1,
        }
    }

    /// qemu's `check_refcounts_l1`: the table, its L2 tables and every cluster they map.
    fn walk_l1(&mut self, l1_offset: u64, l1_size: u64) -> Result<(), Stop> {
        self.add_range(l1_offset, l1_size * 8)?;
        let mut first = 0;
        while first < l1_size {
            let chunk = self.l1_chunk(l1_offset, first, l1_size)?;
            first += chunk.len() as u64;
            for entry in chunk {
                self.walk_l1_entry(entry)?;
            }
        }
        Ok(())
    }

    fn walk_l1_entry(&mut self, entry: u64) -> Result<(), Stop> {
        let l2_offset = entry & QCOW2_OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(());
        }
        self.add_range(l2_offset, self.cs)?;
        if !l2_offset.is_multiple_of(self.cs) {
            self.corruption(format!(
                "ERROR l2_offset={l2_offset:x}: Table is not cluster aligned; L1 entry corrupted"
            ));
        }
        for l2_entry in self.l2_table(l2_offset)? {
            self.count_l2_entry(l2_entry)?;
        }
        Ok(())
    }

    /// Up to one cluster of L1 entries from entry `first` of a table of `size` entries.
    fn l1_chunk(&mut self, offset: u64, first: u64, size: u64) -> Result<Vec<u64>, Stop> {
        let n = (self.cs / 8).min(size - first);
        let mut bytes = vec![0u8; usize::try_from(n * 8).expect("one cluster")];
        self.read(&mut bytes, offset.saturating_add(first * 8))?;
        Ok(table::decode_all(&bytes, u64::from_be_bytes))
    }

    /// An L2 table's entries; every read counts against the L2 read budget.
    fn l2_table(&mut self, offset: u64) -> Result<Vec<u64>, Stop> {
        if self.l2_bytes_left < self.cs {
            return Err(self.check_error(
                "ERROR: L2 tables are referenced more often than the file can hold them; check stopped".into(),
            ));
        }
        self.l2_bytes_left -= self.cs;
        let mut bytes = vec![0u8; usize::try_from(self.cs).expect("at most 2 MiB")];
        self.read(&mut bytes, offset)?;
        Ok(table::decode_all(&bytes, u64::from_be_bytes))
    }

    /// qemu's `check_refcounts_l2` for one entry.
    fn count_l2_entry(&mut self, entry: u64) -> Result<(), Stop> {
        let data_file = self.h.incompatible & INCOMPAT_DATA_FILE != 0;
        if entry & QCOW2_OFLAG_COMPRESSED != 0 {
            let (offset, size) = self.compressed_range(entry);
            if entry & QCOW2_OFLAG_COPIED != 0 {
                self.corruption(format!("ERROR: coffset={offset:#x}: copied flag must never be set for compressed clusters"));
            }
            return self.add_range(offset, size);
        }
        let offset = entry & QCOW2_OFFSET_MASK;
        if offset == 0 {
            return Ok(());
        }
        if !offset.is_multiple_of(self.cs) {
            let what = if entry & QCOW2_OFLAG_ZERO != 0 {
                "Preallocated"
            } else {
                "Data"
            };
            self.corruption(format!(
                "ERROR offset={offset:x}: {what} cluster is not properly aligned; L2 entry corrupted."
            ));
        }
        if data_file {
            return Ok(());
        }
        self.add_range(offset, self.cs)
    }

    /// Host bytes of a compressed cluster (qemu's `qcow2_parse_compressed_l2_entry`).
    fn compressed_range(&self, entry: u64) -> (u64, u64) {
        let shift = 62 - (self.h.cluster_bits - 8);
        let offset = entry & ((1u64 << shift) - 1);
        let sectors = ((entry >> shift) & ((1u64 << (self.h.cluster_bits - 8)) - 1)) + 1;
        (offset, sectors * 512 - (offset & 511))
    }

    fn walk_snapshot(&mut self, sn: &Snapshot) -> Result<(), Stop> {
        let label = &sn.label;
        if !sn.l1_offset.is_multiple_of(self.cs) {
            self.corruption(format!("ERROR snapshot {label} l1_offset={:#x}: L1 table is not cluster aligned; snapshot table entry corrupted", sn.l1_offset));
            return Ok(());
        }
        if u64::from(sn.l1_size) > super::header::QCOW2_MAX_L1_BYTES / 8 {
            self.corruption(format!("ERROR snapshot {label} l1_size={:#x}: L1 table is too large; snapshot table entry corrupted", sn.l1_size));
            return Ok(());
        }
        self.walk_l1(sn.l1_offset, u64::from(sn.l1_size))
    }
}

mod snapshots;
mod verify;

#[cfg(test)]
mod tests;

/// Refusals at open for the snapshot table (qemu refuses to open such images too).
pub(super) fn check_snapshot_table(h: &Qcow2Header, file_len: u64) -> Result<(), Qcow2Error> {
    if h.nb_snapshots == 0 {
        return Ok(());
    }
    if h.nb_snapshots > QCOW2_MAX_SNAPSHOTS {
        return Err(Qcow2Error::SnapshotTableTooLarge {
            nb_snapshots: h.nb_snapshots,
            max: QCOW2_MAX_SNAPSHOTS,
        });
    }
    if !h.snapshots_offset.is_multiple_of(h.cluster_size()) {
        return Err(Qcow2Error::UnalignedTable {
            what: "snapshot table",
            offset: h.snapshots_offset,
        });
    }
    // Each entry is at least its fixed part.
    let len = u64::from(h.nb_snapshots) * QCOW2_SNAPSHOT_HEADER_LEN as u64;
    if h.snapshots_offset
        .checked_add(len)
        .is_none_or(|end| end > file_len)
    {
        return Err(Qcow2Error::TableOutsideFile {
            what: "snapshot table",
            offset: h.snapshots_offset,
            len,
            file_len,
        });
    }
    Ok(())
}
