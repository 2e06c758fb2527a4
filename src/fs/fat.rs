//! A FAT12/FAT16 image writer for small flat file sets (cloud-init seeds): Microsoft's
//! "FAT: General Overview of On-Disk Format" 1.03, with VFAT long names.
//!
//! Layout: 512-byte sectors, one reserved sector (the boot sector with the extended BPB,
//! signature 0x29), two FATs, a 512-entry root directory, then each file in contiguous
//! clusters. The FAT type follows from the cluster count exactly as the specification
//! (and fsck.fat, blkid, the kernel) decide it: below 4085 clusters FAT12, else FAT16. The
//! volume label is written twice, in the boot sector and as a root-directory entry
//! (attribute 0x08), as `mkfs.fat -n` does: libblkid reports `LABEL` from the latter.
//! Every time stamp is `BuildContext.epoch` (clamped to 1980..2107), the serial number
//! comes from the context. RAM holds the FAT and the root directory (at most 128 KiB + 16
//! KiB); the files themselves are written from the caller's buffers.
//!
//! Refused: subdirectories, more files than the root directory holds, names that are not
//! valid long file names, images needing more than 65524 clusters of 32 KiB (~2 GiB).

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::context::BuildContext;
use crate::disk::iso::DateTime;
use crate::error::{Error, ErrorKind, Result};

/// Bytes per sector.
const FAT_SECTOR: u64 = 512;
/// Root directory entries (32 bytes each: 32 sectors).
const FAT_ROOT_ENTRIES: u64 = 512;
/// Sectors before the data region that are not FATs: boot sector + root directory.
const FAT_FIXED_SECTORS: u64 = 1 + FAT_ROOT_ENTRIES * 32 / FAT_SECTOR;
/// Smallest image kiln writes (1 MiB), so tools see an ordinary small disk.
const FAT_MIN_SECTORS: u64 = 2048;
/// Total sectors are a multiple of one "track" of 32 sectors x 2 heads (mtools checks it).
const FAT_TRACK_ROUND: u64 = 64;
/// Largest FAT12 cluster count (FAT spec, "FAT Type Determination").
const FAT12_MAX_CLUSTERS: u64 = 4084;
/// Largest FAT16 cluster count.
const FAT16_MAX_CLUSTERS: u64 = 65_524;
/// Media descriptor for a fixed disk.
const FAT_MEDIA: u8 = 0xF8;

/// One file in the image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatFile {
    /// Long file name (`user-data`).
    pub name: String,
    /// Contents.
    pub data: Vec<u8>,
}

/// Why a FAT image could not be made.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// A label is not 1..=11 characters of the allowed set.
    #[error("FAT volume label `{label}` must be 1 to 11 upper-case letters, digits, spaces or _-")]
    BadLabel {
        /// The label.
        label: String,
    },
    /// A file name is not a valid long file name.
    #[error("`{name}` is not a valid FAT long file name")]
    BadName {
        /// The name.
        name: String,
    },
    /// Two names are equal apart from case.
    #[error("`{name}` is added twice (FAT names ignore case)")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// The root directory cannot hold the entries.
    #[error("the files need {needed} root directory entries; a FAT root holds {max}")]
    RootFull {
        /// Entries needed.
        needed: u64,
        /// Entries available.
        max: u64,
    },
    /// The files do not fit FAT16.
    #[error("{bytes} bytes of files do not fit a FAT16 image (about 2 GiB at most)")]
    TooLarge {
        /// Bytes of file data.
        bytes: u64,
    },
}

impl From<FatError> for Error {
    fn from(e: FatError) -> Self {
        let kind = match e {
            FatError::TooLarge { .. } | FatError::RootFull { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidInput,
        };
        Error::new(kind, e)
    }
}

/// Sizes of the regions of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    total_sectors: u64,
    sectors_per_cluster: u64,
    fat_sectors: u64,
    clusters: u64,
    fat16: bool,
}

impl Geometry {
    /// The geometry of an image of `total` sectors with `spc` sectors per cluster, if the
    /// cluster count lands in the FAT12 or FAT16 range.
    fn of(total: u64, spc: u64) -> Option<Self> {
        let avail = total.checked_sub(FAT_FIXED_SECTORS)?;
        for fat16 in [false, true] {
            let mut fat_sectors = 1;
            let clusters = loop {
                let clusters = avail.checked_sub(2 * fat_sectors)? / spc;
                let bits = if fat16 { 16 } else { 12 };
                let need = ((clusters + 2) * bits).div_ceil(8).div_ceil(FAT_SECTOR);
                if need <= fat_sectors {
                    break clusters;
                }
                fat_sectors = need;
            };
            let fits = if fat16 {
                (FAT12_MAX_CLUSTERS + 1..=FAT16_MAX_CLUSTERS).contains(&clusters)
            } else {
                clusters <= FAT12_MAX_CLUSTERS
            };
            if fits {
                return Some(Self {
                    total_sectors: total,
                    sectors_per_cluster: spc,
                    fat_sectors,
                    clusters,
                    fat16,
                });
            }
        }
        None
    }

    /// The smallest geometry holding `sizes`, preferring small clusters.
    fn for_files(sizes: &[u64]) -> Result<Self> {
        for spc in [1u64, 2, 4, 8, 16, 32, 64] {
            let cluster = spc * FAT_SECTOR;
            let needed: u64 = sizes.iter().map(|s| s.div_ceil(cluster)).sum();
            let start = (FAT_FIXED_SECTORS + (needed + 16) * spc).max(FAT_MIN_SECTORS);
            let mut total = start.div_ceil(FAT_TRACK_ROUND) * FAT_TRACK_ROUND;
            while let Some(clusters_max) = (total - FAT_FIXED_SECTORS).checked_div(spc) {
                if clusters_max > FAT16_MAX_CLUSTERS + 1024 {
                    break;
                }
                if let Some(g) = Self::of(total, spc).filter(|g| g.clusters >= needed) {
                    return Ok(g);
                }
                total += FAT_TRACK_ROUND;
            }
        }
        Err(FatError::TooLarge {
            bytes: sizes.iter().sum(),
        }
        .into())
    }

    fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * FAT_SECTOR
    }
}

/// FAT date and time of `epoch` (UTC), clamped to the range FAT can store.
fn fat_timestamp(epoch: u64) -> (u16, u16) {
    // 1980-01-01 and 2107-12-31 23:59:58 in Unix time.
    let clamped = epoch.clamp(315_532_800, 4_354_819_198);
    let d = DateTime::from_epoch(clamped);
    let years = u16::try_from(d.year - 1980).unwrap_or(0);
    let date = (years << 9) | (u16::from(d.month) << 5) | u16::from(d.day);
    let time = (u16::from(d.hour) << 11) | (u16::from(d.minute) << 5) | u16::from(d.second / 2);
    (date, time)
}

/// Writes a FAT image labelled `label` holding `files` in its root; returns its size.
///
/// # Errors
/// A bad label or name, too many or too large files, write errors.
pub fn write_fat_image(
    label: &str,
    files: &[FatFile],
    ctx: &BuildContext,
    out: &mut dyn Write,
) -> Result<u64> {
    let label = label_bytes(label)?;
    let sizes: Vec<u64> = files.iter().map(|f| f.data.len() as u64).collect();
    let g = Geometry::for_files(&sizes)?;
    let (date, time) = fat_timestamp(ctx.epoch);
    let serial = volume_serial(ctx, files);
    let mut fat = FatTable::new(&g);
    let mut root = Vec::with_capacity(usize::try_from(FAT_ROOT_ENTRIES * 32).unwrap_or(0));
    root.extend_from_slice(&dir_entry(&label, 0x08, (date, time), 0, 0));
    let mut next_cluster = 2u64;
    let mut short_names: Vec<[u8; 11]> = Vec::new();
    for file in files {
        let short = short_name(&file.name, &short_names)?;
        short_names.push(short);
        let clusters = (file.data.len() as u64).div_ceil(g.cluster_bytes());
        let first = if clusters == 0 { 0 } else { next_cluster };
        fat.chain(next_cluster, clusters);
        next_cluster += clusters;
        root.extend_from_slice(&lfn_entries(&file.name, &short)?);
        let size = u32::try_from(file.data.len()).map_err(|_| FatError::TooLarge {
            bytes: file.data.len() as u64,
        })?;
        root.extend_from_slice(&dir_entry(&short, 0x20, (date, time), first, size));
    }
    let root_max = usize::try_from(FAT_ROOT_ENTRIES * 32).unwrap_or(usize::MAX);
    if root.len() > root_max {
        return Err(FatError::RootFull {
            needed: root.len() as u64 / 32,
            max: FAT_ROOT_ENTRIES,
        }
        .into());
    }
    root.resize(root_max, 0);
    let mut w = Counter { out, pos: 0 };
    w.write(&boot_sector(&g, &label, serial))?;
    for _ in 0..2 {
        w.write(&fat.bytes)?;
    }
    w.write(&root)?;
    for file in files {
        w.write(&file.data)?;
        let padded = (file.data.len() as u64).div_ceil(g.cluster_bytes()) * g.cluster_bytes();
        w.zeros(padded - file.data.len() as u64)?;
    }
    w.zeros(g.total_sectors * FAT_SECTOR - w.pos)?;
    Ok(w.pos)
}

/// The volume serial: a hash of the context's id and the contents, so the same files give
/// the same image and different seeds get different serials.
fn volume_serial(ctx: &BuildContext, files: &[FatFile]) -> u32 {
    let mut h = Sha256::new();
    h.update(ctx.uuid("fat/volume-serial").as_bytes());
    for f in files {
        h.update((f.name.len() as u64).to_le_bytes());
        h.update(f.name.as_bytes());
        h.update((f.data.len() as u64).to_le_bytes());
        h.update(&f.data);
    }
    let d = h.finalize();
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

fn label_bytes(label: &str) -> Result<[u8; 11]> {
    let ok = !label.is_empty()
        && label.len() <= 11
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b" _-".contains(&b));
    if !ok {
        return Err(FatError::BadLabel {
            label: label.to_string(),
        }
        .into());
    }
    let mut out = [b' '; 11];
    out[..label.len()].copy_from_slice(label.as_bytes());
    Ok(out)
}

/// A unique `BASE~N.EXT` short name for a long name (FAT spec, "Basis-Name Generation").
fn short_name(name: &str, taken: &[[u8; 11]]) -> Result<[u8; 11]> {
    let bad = name.is_empty()
        || name.encode_utf16().count() > 255
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| u32::from(c) < 0x20 || "\"*/:<>?\\|".contains(c));
    if bad {
        return Err(FatError::BadName {
            name: name.to_string(),
        }
        .into());
    }
    let map = |c: char| match c.to_ascii_uppercase() {
        c @ ('A'..='Z'
        | '0'..='9'
        | '!'
        | '#'
        | '$'
        | '%'
        | '&'
        | '\''
        | '('
        | ')'
        | '-'
        | '@'
        | '^'
        | '_'
        | '`'
        | '{'
        | '}'
        | '~') => u8::try_from(c).ok(),
        ' ' | '.' => None,
        _ => Some(b'_'),
    };
    let (base, ext) = name
        .rsplit_once('.')
        .filter(|(b, _)| !b.is_empty())
        .unwrap_or((name, ""));
    let base: Vec<u8> = base.chars().filter_map(map).take(6).collect();
    let ext: Vec<u8> = ext.chars().filter_map(map).take(3).collect();
    for n in 1..=999_999u32 {
        let tail = format!("~{n}");
        let keep = base.len().min(8 - tail.len());
        let mut short = [b' '; 11];
        short[..keep].copy_from_slice(&base[..keep]);
        short[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
        short[8..8 + ext.len()].copy_from_slice(&ext);
        if !taken.contains(&short) {
            return Ok(short);
        }
    }
    Err(FatError::DuplicateName {
        name: name.to_string(),
    }
    .into())
}

/// The VFAT checksum of a short name (FAT spec, "ChkSum").
fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &c| sum.rotate_right(1).wrapping_add(c))
}

/// Long-name entries for `name`, last part first as they are stored.
fn lfn_entries(name: &str, short: &[u8; 11]) -> Result<Vec<u8>> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    if !units.len().is_multiple_of(13) {
        units.push(0);
    }
    while !units.len().is_multiple_of(13) {
        units.push(0xFFFF);
    }
    let count = units.len() / 13;
    let checksum = lfn_checksum(short);
    let mut out = Vec::with_capacity(count * 32);
    for index in (0..count).rev() {
        let part = &units[index * 13..index * 13 + 13];
        let mut e = [0u8; 32];
        let ordinal = u8::try_from(index + 1).map_err(|_| FatError::BadName {
            name: name.to_string(),
        })?;
        e[0] = if index + 1 == count {
            ordinal | 0x40
        } else {
            ordinal
        };
        e[11] = 0x0F;
        e[13] = checksum;
        let slots = (1..11)
            .step_by(2)
            .chain((14..26).step_by(2))
            .chain((28..32).step_by(2));
        for (slot, unit) in slots.zip(part) {
            e[slot..slot + 2].copy_from_slice(&unit.to_le_bytes());
        }
        out.extend_from_slice(&e);
    }
    Ok(out)
}

fn dir_entry(
    name: &[u8; 11],
    attr: u8,
    (date, time): (u16, u16),
    cluster: u64,
    size: u32,
) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(name);
    e[11] = attr;
    e[14..16].copy_from_slice(&time.to_le_bytes());
    e[16..18].copy_from_slice(&date.to_le_bytes());
    e[18..20].copy_from_slice(&date.to_le_bytes());
    e[22..24].copy_from_slice(&time.to_le_bytes());
    e[24..26].copy_from_slice(&date.to_le_bytes());
    e[26..28].copy_from_slice(&u16::try_from(cluster).unwrap_or(0).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

fn boot_sector(g: &Geometry, label: &[u8; 11], serial: u32) -> Vec<u8> {
    let small = |v: u64| u16::try_from(v).unwrap_or(0);
    let mut b = vec![0u8; 512];
    b[..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
    b[3..11].copy_from_slice(b"KILN    ");
    b[11..13].copy_from_slice(&512u16.to_le_bytes());
    b[13] = u8::try_from(g.sectors_per_cluster).unwrap_or(1);
    b[14..16].copy_from_slice(&1u16.to_le_bytes()); // reserved sectors
    b[16] = 2; // FATs
    b[17..19].copy_from_slice(&small(FAT_ROOT_ENTRIES).to_le_bytes());
    if g.total_sectors <= u64::from(u16::MAX) {
        b[19..21].copy_from_slice(&small(g.total_sectors).to_le_bytes());
    } else {
        b[32..36].copy_from_slice(&u32::try_from(g.total_sectors).unwrap_or(0).to_le_bytes());
    }
    b[21] = FAT_MEDIA;
    b[22..24].copy_from_slice(&small(g.fat_sectors).to_le_bytes());
    b[24..26].copy_from_slice(&32u16.to_le_bytes()); // sectors per track
    b[26..28].copy_from_slice(&2u16.to_le_bytes()); // heads
    b[36] = 0x80; // drive number
    b[38] = 0x29; // extended boot signature
    b[39..43].copy_from_slice(&serial.to_le_bytes());
    b[43..54].copy_from_slice(label);
    b[54..62].copy_from_slice(if g.fat16 { b"FAT16   " } else { b"FAT12   " });
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

/// One FAT in memory.
struct FatTable {
    bytes: Vec<u8>,
    fat16: bool,
}

impl FatTable {
    fn new(g: &Geometry) -> Self {
        let len = usize::try_from(g.fat_sectors * FAT_SECTOR).unwrap_or(0);
        let mut t = Self {
            bytes: vec![0; len],
            fat16: g.fat16,
        };
        let (media, end) = if g.fat16 {
            (0xFF00 | u16::from(FAT_MEDIA), 0xFFFF)
        } else {
            (0xF00 | u16::from(FAT_MEDIA), 0xFFF)
        };
        t.set(0, media);
        t.set(1, end);
        t
    }

    /// Links `count` clusters from `first` into one chain ending in end-of-chain.
    fn chain(&mut self, first: u64, count: u64) {
        let end = if self.fat16 { 0xFFFF } else { 0xFFF };
        for i in 0..count {
            let value = if i + 1 == count {
                end
            } else {
                u16::try_from(first + i + 1).unwrap_or(end)
            };
            self.set(first + i, value);
        }
    }

    fn set(&mut self, cluster: u64, value: u16) {
        let Ok(n) = usize::try_from(cluster) else {
            return;
        };
        if self.fat16 {
            self.bytes[n * 2..n * 2 + 2].copy_from_slice(&value.to_le_bytes());
            return;
        }
        let at = n * 3 / 2;
        let [lo, hi] = value.to_le_bytes();
        if n % 2 == 0 {
            self.bytes[at] = lo;
            self.bytes[at + 1] = (self.bytes[at + 1] & 0xF0) | (hi & 0x0F);
        } else {
            self.bytes[at] = (self.bytes[at] & 0x0F) | (lo << 4);
            self.bytes[at + 1] = u8::try_from(value >> 4).unwrap_or(0);
        }
    }
}

struct Counter<'a> {
    out: &'a mut dyn Write,
    pos: u64,
}

impl Counter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<()> {
        let buf = [0u8; 8192];
        while n > 0 {
            let k = usize::try_from(n.min(buf.len() as u64)).unwrap_or(buf.len());
            self.write(&buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_seed_is_fat12() {
        let g = Geometry::for_files(&[100, 200]).unwrap();
        assert!(!g.fat16);
        assert!(g.clusters <= FAT12_MAX_CLUSTERS);
        assert_eq!(g.total_sectors % FAT_TRACK_ROUND, 0);
    }

    #[test]
    fn large_files_switch_to_fat16_in_range() {
        let g = Geometry::for_files(&[200 << 20]).unwrap();
        assert!(g.fat16);
        assert!(g.clusters > FAT12_MAX_CLUSTERS && g.clusters <= FAT16_MAX_CLUSTERS);
    }

    #[test]
    fn short_name_of_user_data_has_a_numeric_tail() {
        assert_eq!(&short_name("user-data", &[]).unwrap(), b"USER-D~1   ");
    }

    #[test]
    fn lowercase_label_is_refused() {
        assert!(label_bytes("cidata").is_err());
    }

    #[test]
    fn fat12_entries_pack_into_twelve_bits() {
        let g = Geometry {
            total_sectors: 2048,
            sectors_per_cluster: 1,
            fat_sectors: 6,
            clusters: 100,
            fat16: false,
        };
        let mut t = FatTable::new(&g);
        t.set(2, 0xABC);
        t.set(3, 0x123);
        assert_eq!(&t.bytes[3..6], &[0xBC, 0x3A, 0x12]);
    }

    #[test]
    fn lfn_checksum_matches_a_known_value() {
        // "USER-D~1   " checksum as computed by mkfs/mtools.
        let short = *b"USER-D~1   ";
        let expected = short
            .iter()
            .fold(0u8, |s, &c| (((s & 1) << 7) | (s >> 1)).wrapping_add(c));
        assert_eq!(lfn_checksum(&short), expected);
    }
}
