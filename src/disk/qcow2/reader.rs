//! The qcow2 reader: validates the header and tables, then walks the active L1/L2 tables
//! in guest order, one L2 table in memory at a time.

use flate2::{Decompress, FlushDecompress};

use super::Qcow2Error;
use super::header::{
    Extension, INCOMPAT_COMPRESSION, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE, INCOMPAT_DIRTY,
    INCOMPAT_EXTENDED_L2, QCOW2_MAGIC, QCOW2_MAX_L1_BYTES, QCOW2_MAX_REFTABLE_BYTES, Qcow2Header,
    parse_extensions,
};
use super::writer::QCOW2_OFLAG_COMPRESSED;
use crate::disk::{DiskFormat, DiskReader, Extent, ImageInfo, MAX_EXTENT_BYTES};
use crate::error::Result;
use crate::io::table::{self, TableAt};
use crate::io::{ReadAt, Source, read_exact_at};

/// Bits 9..=55 of an L1 or standard L2 entry hold the host offset.
pub(super) const QCOW2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L2 entry bit 0 (v3): the cluster reads as zeros.
pub(super) const QCOW2_OFLAG_ZERO: u64 = 1;
/// Longest backing file name qemu accepts.
const QCOW2_MAX_BACKING_NAME: u32 = 1023;

/// What one L2 entry says about its guest cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cluster {
    Unallocated,
    Zero,
    Data(u64),
    Compressed(u64),
}

pub(super) struct Qcow2Reader {
    src: Source,
    file_len: u64,
    header: Qcow2Header,
    extensions: Vec<Extension>,
    backing_name: Option<String>,
    /// Active L1 table (offsets with flags).
    l1: Vec<u64>,
    /// Guest byte offset of the next extent (cluster-aligned).
    pos: u64,
    l2: Vec<u64>,
    l2_index: Option<usize>,
    l2_offset: u64,
    buf: Vec<u8>,
    compressed: Vec<u8>,
    inflate: Decompress,
}

impl Qcow2Reader {
    pub fn open(src: Source, allow_unsafe: bool) -> Result<Self> {
        let file_len = src.len();
        let header = read_header(&*src, file_len)?;
        check_features(&header, allow_unsafe)?;
        check_tables(&header, file_len)?;
        let cs = header.cluster_size();
        let area_end = match header.backing_file_offset {
            0 => cs,
            offset => offset.min(cs),
        }
        .min(file_len);
        let mut area = vec![0u8; usize::try_from(area_end).expect("at most one cluster")];
        read_exact_at(&*src, &mut area, 0, "qcow2 header extensions")?;
        let extensions = parse_extensions(&area, header.header_length)?;
        let backing_name = read_backing_name(&*src, &header, file_len)?;
        let l1 = read_l1(&*src, &header)?;
        Ok(Self {
            src,
            file_len,
            header,
            extensions,
            backing_name,
            l1,
            pos: 0,
            l2: Vec::new(),
            l2_index: None,
            l2_offset: 0,
            buf: Vec::new(),
            compressed: Vec::new(),
            inflate: Decompress::new(false),
        })
    }

    /// The image's bytes.
    pub fn source(&self) -> &dyn ReadAt {
        &*self.src
    }

    fn cluster_size(&self) -> u64 {
        self.header.cluster_size()
    }

    fn entries(&self) -> u64 {
        self.cluster_size() / 8
    }

    /// Loads the L2 table of L1 entry `index`; false when the entry is unallocated.
    fn load_l2(&mut self, index: usize) -> Result<bool> {
        if self.l2_index == Some(index) {
            return Ok(true);
        }
        let offset = self.l1[index] & QCOW2_OFFSET_MASK;
        if offset == 0 {
            return Ok(false);
        }
        let cs = self.cluster_size();
        if !offset.is_multiple_of(cs) {
            return Err(Qcow2Error::UnalignedTable {
                what: "L2 table",
                offset,
            }
            .into());
        }
        if offset.checked_add(cs).is_none_or(|end| end > self.file_len) {
            let file_len = self.file_len;
            return Err(Qcow2Error::TableOutsideFile {
                what: "L2 table",
                offset,
                len: cs,
                file_len,
            }
            .into());
        }
        let mut bytes = vec![0u8; usize::try_from(cs).expect("cluster fits usize")];
        read_exact_at(&*self.src, &mut bytes, offset, "qcow2 L2 table")?;
        self.l2 = table::decode_all(&bytes, u64::from_be_bytes);
        self.l2_index = Some(index);
        self.l2_offset = offset;
        Ok(true)
    }

    /// Classifies L2 entry `slot` of the loaded table.
    fn classify(&self, slot: usize) -> Result<Cluster> {
        let value = self.l2[slot];
        let entry_offset = self.l2_offset + slot as u64 * 8;
        let bad = |problem| Qcow2Error::BadL2Entry {
            entry_offset,
            value,
            problem,
        };
        if value & QCOW2_OFLAG_COMPRESSED != 0 {
            return Ok(Cluster::Compressed(value));
        }
        if value & QCOW2_OFLAG_ZERO != 0 {
            if self.header.version < 3 {
                return Err(bad("zero flag in a version 2 image").into());
            }
            return Ok(Cluster::Zero);
        }
        let offset = value & QCOW2_OFFSET_MASK;
        if offset == 0 {
            return Ok(Cluster::Unallocated);
        }
        if !offset.is_multiple_of(self.cluster_size()) {
            return Err(bad("data offset is not cluster-aligned").into());
        }
        if self.header.incompatible & INCOMPAT_DATA_FILE != 0 {
            // The data lives in a file kiln never opens (allow_unsafe): read as zeros.
            return Ok(Cluster::Unallocated);
        }
        Ok(Cluster::Data(offset))
    }

    /// Length in clusters of the run of `first` starting at `slot`.
    fn run_length(&self, slot: usize, first: Cluster) -> Result<u64> {
        let cs = self.cluster_size();
        let max = (MAX_EXTENT_BYTES as u64 / cs).max(1);
        let mut n = 1u64;
        for next_slot in slot + 1..self.l2.len() {
            let next = self.classify(next_slot)?;
            let same = match (first, next) {
                (Cluster::Data(a), Cluster::Data(b)) => b == a + n * cs && n < max,
                (Cluster::Compressed(_), _) => false,
                (a, b) => a == b,
            };
            if !same {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    fn check_in_file(&self, host_offset: u64) -> Result<()> {
        if host_offset >= self.file_len {
            return Err(Qcow2Error::ClusterOutsideFile {
                guest_offset: self.pos,
                host_offset,
                file_len: self.file_len,
            }
            .into());
        }
        Ok(())
    }

    /// Reads `len` bytes at `host` into the buffer; bytes past the end of the file (the
    /// tail of a preallocated last cluster) read as zeros.
    fn read_data(&mut self, host: u64, len: u64) -> Result<()> {
        self.check_in_file(host)?;
        let len = usize::try_from(len).expect("bounded by MAX_EXTENT_BYTES");
        let avail = usize::try_from((self.file_len - host).min(len as u64)).expect("bounded");
        self.buf.resize(len, 0);
        read_exact_at(
            &*self.src,
            &mut self.buf[..avail],
            host,
            "qcow2 data cluster",
        )?;
        self.buf[avail..].fill(0);
        Ok(())
    }

    /// Bytes of `[host, host + len)` that are a hole in the file, from its start (rounded
    /// down to clusters), or `None` when it starts with data (then `len` is trimmed to
    /// the data, rounded up to clusters).
    fn leading_hole(&self, host: u64, len: &mut u64) -> Result<Option<u64>> {
        let cs = self.cluster_size();
        let data = self.src.next_data(host)?.unwrap_or(u64::MAX);
        if data > host {
            let hole = (data - host).min(*len) / cs * cs;
            if hole > 0 {
                self.check_not_shrunk(host + hole)?;
            }
            return Ok((hole > 0).then_some(hole));
        }
        let hole = self.src.next_hole(host)?;
        if hole > host && hole - host < *len {
            *len = (hole - host).div_ceil(cs) * cs;
        }
        Ok(None)
    }

    /// SEEK_DATA reports "no data" past the end of a file as it does for a hole, so a file
    /// that shrank since it was opened would read as zeros: the last byte of a hole read
    /// as zeros must still be in the file.
    fn check_not_shrunk(&self, end: u64) -> Result<()> {
        let last = end.min(self.file_len) - 1;
        if self.src.read_at(&mut [0u8; 1], last)? == 0 {
            return Err(Qcow2Error::FileShrank {
                offset: last,
                file_len: self.file_len,
            }
            .into());
        }
        Ok(())
    }

    fn inflate_cluster(&mut self, value: u64) -> Result<()> {
        let cs = self.cluster_size();
        let shift = 62 - (self.header.cluster_bits - 8);
        let host = value & ((1u64 << shift) - 1);
        let sectors = ((value >> shift) & ((1u64 << (self.header.cluster_bits - 8)) - 1)) + 1;
        self.check_in_file(host)?;
        let csize = (sectors * 512 - (host & 511)).min(self.file_len - host);
        self.compressed
            .resize(usize::try_from(csize).expect("at most a few clusters"), 0);
        read_exact_at(
            &*self.src,
            &mut self.compressed,
            host,
            "qcow2 compressed cluster",
        )?;
        self.buf
            .resize(usize::try_from(cs).expect("cluster fits usize"), 0);
        self.inflate.reset(false);
        let status =
            self.inflate
                .decompress(&self.compressed, &mut self.buf, FlushDecompress::Finish);
        // qemu accepts the stream once the cluster is full, whatever follows it.
        if status.is_err() || self.inflate.total_out() != cs {
            return Err(Qcow2Error::BadCompressedCluster {
                guest_offset: self.pos,
                host_offset: host,
            }
            .into());
        }
        Ok(())
    }

    /// Unallocated L1 entries from `index` on, as one run of guest bytes.
    fn unallocated_chunks(&self, index: usize) -> u64 {
        let n = self.l1[index..]
            .iter()
            .take_while(|&&e| e & QCOW2_OFFSET_MASK == 0)
            .count();
        n as u64 * self.entries() * self.cluster_size()
    }
}

impl DiskReader for Qcow2Reader {
    fn virtual_size(&self) -> u64 {
        self.header.size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        self.walk()
    }

    fn info(&self) -> ImageInfo {
        self.describe()
    }
}

impl Qcow2Reader {
    /// The next extent (see [`DiskReader::next_extent`]).
    fn walk(&mut self) -> Result<Option<Extent<'_>>> {
        let size = self.header.size;
        if self.pos >= size {
            return Ok(None);
        }
        let cs = self.cluster_size();
        let guest = self.pos / cs;
        let index = usize::try_from(guest / self.entries()).expect("below the L1 size");
        if !self.load_l2(index)? {
            let len = self.unallocated_chunks(index).min(size - self.pos);
            self.pos += len;
            return Ok(Some(Extent::Unallocated(len)));
        }
        let slot = usize::try_from(guest % self.entries()).expect("below the entry count");
        let kind = self.classify(slot)?;
        let mut len = (self.run_length(slot, kind)? * cs).min(size - self.pos);
        let extent_kind = match kind {
            Cluster::Unallocated => Some(Extent::Unallocated(len)),
            Cluster::Zero => Some(Extent::Zero(len)),
            Cluster::Compressed(value) => {
                self.inflate_cluster(value)?;
                None
            }
            Cluster::Data(host) => {
                self.check_in_file(host)?;
                match self.leading_hole(host, &mut len)? {
                    Some(hole) => Some(Extent::Zero(hole.min(size - self.pos))),
                    None => {
                        len = len.min(size - self.pos);
                        self.read_data(host, len)?;
                        None
                    }
                }
            }
        };
        let extent = match extent_kind {
            Some(e) => e,
            None => {
                let n = usize::try_from(len.min(self.buf.len() as u64)).expect("bounded");
                self.pos += n as u64;
                return Ok(Some(Extent::Data(&self.buf[..n])));
            }
        };
        self.pos += extent.len();
        Ok(Some(extent))
    }

    fn describe(&self) -> ImageInfo {
        let h = &self.header;
        let flag = |bit: u64| {
            if h.incompatible & bit != 0 {
                "true"
            } else {
                "false"
            }
        };
        let (subformat, compat) = if h.version == 3 {
            ("v3", "1.1")
        } else {
            ("v2", "0.10")
        };
        let mut info = ImageInfo::new(DiskFormat::Qcow2, h.size)
            .detail("compat", compat)
            .detail("cluster_size", h.cluster_size())
            .detail("refcount_bits", 1u64 << h.refcount_order)
            .detail(
                "compression_type",
                if h.compression_type == 0 {
                    "zlib"
                } else {
                    "zstd"
                },
            )
            .detail(
                "lazy_refcounts",
                if h.compatible & 1 != 0 {
                    "true"
                } else {
                    "false"
                },
            )
            .detail("dirty", flag(INCOMPAT_DIRTY))
            .detail("corrupt", flag(INCOMPAT_CORRUPT))
            .detail("snapshots", h.nb_snapshots);
        info.subformat = Some(subformat.to_string());
        if let Some(name) = &self.backing_name {
            info = info.detail("backing_file", name);
        }
        if h.incompatible & INCOMPAT_DATA_FILE != 0 {
            info = info.detail("data_file", "external (not opened)");
        }
        if !self.extensions.is_empty() {
            let names: Vec<String> = self.extensions.iter().map(Extension::name).collect();
            info = info.detail("extensions", names.join(", "));
        }
        info
    }
}

pub(super) fn read_header(file: &dyn ReadAt, file_len: u64) -> Result<Qcow2Header> {
    let mut buf = [0u8; 112];
    let n = usize::try_from(file_len.min(112)).expect("at most 112");
    read_exact_at(file, &mut buf[..n], 0, "qcow2 header")?;
    let version = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let need: u64 = if version == 3 { 104 } else { 72 };
    let magic_ok = buf[..4] == QCOW2_MAGIC.to_be_bytes();
    if magic_ok && file_len < need {
        return Err(Qcow2Error::TableOutsideFile {
            what: "header",
            offset: 0,
            len: need,
            file_len,
        }
        .into());
    }
    Ok(Qcow2Header::parse(&buf)?)
}

fn check_features(h: &Qcow2Header, allow_unsafe: bool) -> Result<()> {
    let known = INCOMPAT_DIRTY
        | INCOMPAT_CORRUPT
        | INCOMPAT_DATA_FILE
        | INCOMPAT_COMPRESSION
        | INCOMPAT_EXTENDED_L2;
    if h.incompatible & !known != 0 {
        return Err(Qcow2Error::UnknownIncompatible {
            bits: h.incompatible & !known,
        }
        .into());
    }
    if h.crypt_method != 0 {
        return Err(Qcow2Error::Encrypted {
            method: h.crypt_method,
        }
        .into());
    }
    if h.incompatible & INCOMPAT_EXTENDED_L2 != 0 {
        return Err(Qcow2Error::ExtendedL2.into());
    }
    if h.compression_type != 0 {
        return Err(Qcow2Error::UnknownCompression {
            found: h.compression_type,
        }
        .into());
    }
    if allow_unsafe {
        return Ok(());
    }
    if h.incompatible & INCOMPAT_CORRUPT != 0 {
        return Err(Qcow2Error::Corrupt.into());
    }
    if h.incompatible & INCOMPAT_DATA_FILE != 0 {
        return Err(Qcow2Error::ExternalDataFile.into());
    }
    if h.backing_file_offset != 0 {
        return Err(Qcow2Error::BackingFile {
            offset: h.backing_file_offset,
        }
        .into());
    }
    Ok(())
}

/// Checks sizes and table placement before anything is allocated or read.
fn check_tables(h: &Qcow2Header, file_len: u64) -> Result<()> {
    if h.size > 1 << 63 {
        return Err(Qcow2Error::VirtualSizeTooLarge { size: h.size }.into());
    }
    let cs = h.cluster_size();
    let l1_size = u64::from(h.l1_size);
    let max = QCOW2_MAX_L1_BYTES / 8;
    if l1_size > max {
        return Err(Qcow2Error::L1TooLarge { l1_size, max }.into());
    }
    let needed = h.size.div_ceil(cs).div_ceil(cs / 8);
    if l1_size < needed {
        return Err(Qcow2Error::L1TooSmall {
            l1_size,
            needed,
            size: h.size,
        }
        .into());
    }
    check_table("L1 table", h.l1_table_offset, l1_size * 8, cs, file_len)?;
    super::check::check_snapshot_table(h, file_len)?;
    let reftable_len = u64::from(h.refcount_table_clusters) * cs;
    if reftable_len > QCOW2_MAX_REFTABLE_BYTES {
        return Err(Qcow2Error::RefcountTableTooLarge {
            clusters: h.refcount_table_clusters,
        }
        .into());
    }
    check_table(
        "refcount table",
        h.refcount_table_offset,
        reftable_len,
        cs,
        file_len,
    )
}

fn check_table(what: &'static str, offset: u64, len: u64, cs: u64, file_len: u64) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    if !offset.is_multiple_of(cs) {
        return Err(Qcow2Error::UnalignedTable { what, offset }.into());
    }
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(Qcow2Error::TableOutsideFile {
            what,
            offset,
            len,
            file_len,
        }
        .into());
    }
    Ok(())
}

fn read_l1(file: &dyn ReadAt, h: &Qcow2Header) -> Result<Vec<u64>> {
    let at = TableAt {
        what: "qcow2 L1 table",
        offset: h.l1_table_offset,
        entries: u64::from(h.l1_size),
        max_bytes: QCOW2_MAX_L1_BYTES,
    };
    table::load(file, at, u64::from_be_bytes)
}

/// The backing file name (only reached with allow_unsafe); bounded to qemu's 1023 bytes.
fn read_backing_name(file: &dyn ReadAt, h: &Qcow2Header, file_len: u64) -> Result<Option<String>> {
    if h.backing_file_offset == 0 {
        return Ok(None);
    }
    let len = u64::from(h.backing_file_size.min(QCOW2_MAX_BACKING_NAME));
    check_table_bytes("backing file name", h.backing_file_offset, len, file_len)?;
    let mut name = vec![0u8; usize::try_from(len).expect("at most 1023")];
    read_exact_at(
        file,
        &mut name,
        h.backing_file_offset,
        "qcow2 backing file name",
    )?;
    Ok(Some(String::from_utf8_lossy(&name).into_owned()))
}

fn check_table_bytes(what: &'static str, offset: u64, len: u64, file_len: u64) -> Result<()> {
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(Qcow2Error::TableOutsideFile {
            what,
            offset,
            len,
            file_len,
        }
        .into());
    }
    Ok(())
}
