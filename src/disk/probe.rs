//! Format detection by magic numbers, in one fixed order.
//!
//! 1. qcow2 `QFI\xfb` at 0
//! 2. VMDK sparse `KDMV` at 0 (hosted sparse / streamOptimized) or `COWD` (ESX sparse)
//! 3. VHDX `vhdxfile` at 0
//! 4. VHD `conectix` at 0 (dynamic/differencing: the footer copy)
//! 5. VDI signature 0xbeda107f (LE) at 0x40
//! 6. VMDK text descriptor (`# Disk DescriptorFile` at 0)
//! 7. ISO 9660 `CD001` at 0x8001
//! 8. VHD `conectix` in the last 512 bytes (fixed VHD; qemu-img and format_inspector call
//!    this raw, kiln does not)
//! 9. a tar archive (`ustar` at 257, as in an OVA) is refused: it is a package, not a disk,
//!    and reading it as raw would copy the archive's bytes into a "disk" (`-f raw` still
//!    does that on purpose; the CLI reads a package's disk through `container::ova`)
//! 10. QED and LUKS are refused: kiln reads neither, and read as raw their bytes would
//!     carry the format on to whatever probes the output
//! 11. otherwise raw
//!
//! **Polyglots.** A file whose bytes carry the signatures of two formats reads as different
//! disks in different tools (Glance may take it for an ISO and qemu for a qcow2 with a
//! backing file), so opening one ([`probe_for_open`]) refuses it as OpenStack's format_inspector does
//! ("Multiple formats detected: qcow2,iso"). [`signatures`] lists every signature
//! format_inspector matches (plus a VMDK text descriptor, which kiln reads and
//! format_inspector calls raw). One pair is read anyway: an ISO with an MBR (a hybrid,
//! bootable ISO, which both read as the same bytes), and a fixed VHD of a partitioned disk;
//! `kiln check --safety` still reports the ISO, as format_inspector refuses it. kiln also
//! counts a VHD footer at the end (a fixed VHD), which format_inspector does not look for,
//! so a qcow2 that is also a fixed VHD is refused. `--allow-unsafe` (via [`probe_for_open`]) reads a
//! polyglot as the first format in the order above.

use super::DiskFormat;
use crate::error::{Error, ErrorKind, Result};
use crate::io::ReadAt;

/// `QFI\xfb`: the qcow magic.
const QCOW2_MAGIC: &[u8] = b"QFI\xfb";
/// `KDMV`: the VMDK hosted sparse extent magic.
const VMDK_SPARSE_MAGIC: &[u8] = b"KDMV";
/// `COWD`: the VMDK ESX sparse (vmfsSparse) magic.
const VMDK_COWD_MAGIC: &[u8] = b"COWD";
/// `vhdxfile`: the VHDX file type identifier.
const VHDX_MAGIC: &[u8] = b"vhdxfile";
/// `conectix`: the cookie every VHD footer starts with.
const VHD_COOKIE: &[u8] = b"conectix";
/// VDI image signature at header offset 0x40.
const VDI_SIGNATURE: u32 = 0xbeda_107f;
/// `ustar`: the POSIX and GNU tar header magic, at byte 257 of every header.
const TAR_MAGIC: &[u8] = b"ustar";
/// Where a tar header's magic is.
const TAR_MAGIC_OFFSET: usize = 257;
/// Offset of the ISO 9660 primary volume descriptor identifier (sector 16 + 1).
const ISO_ID_OFFSET: u64 = 0x8001;

/// A format signature at its fixed place, matched as format_inspector matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signature {
    /// `QFI\xfb` at 0.
    Qcow2,
    /// `QED\0` at 0: QEMU enhanced disk, which nobody should upload.
    Qed,
    /// `conectix` at 0 (a dynamic VHD's footer copy).
    Vhd,
    /// `vhdxfile` at 0.
    Vhdx,
    /// `KDMV` at 0, or (kiln only) a VMDK text descriptor or `COWD` extent.
    Vmdk,
    /// 0xbeda107f at 0x40.
    Vdi,
    /// `CD001`, `NSR02` or `NSR03` at 0x8001.
    Iso,
    /// `LUKS\xba\xbe` at 0: an encrypted volume.
    Luks,
    /// 0x55aa at 510 that is not a FAT boot sector: an MBR, protective or not.
    Gpt,
    /// (kiln only) `conectix` in the last 512 bytes and not at 0: a fixed VHD's footer,
    /// which format_inspector does not look for.
    VhdFooter,
}

impl Signature {
    /// format_inspector's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Signature::Qcow2 => "qcow2",
            Signature::Qed => "qed",
            Signature::Vhd => "vhd",
            Signature::Vhdx => "vhdx",
            Signature::Vmdk => "vmdk",
            Signature::Vdi => "vdi",
            Signature::Iso => "iso",
            Signature::Luks => "luks",
            Signature::Gpt => "gpt",
            Signature::VhdFooter => "vhd-footer",
        }
    }
}

/// `QED\0`: the QED magic.
const QED_MAGIC: &[u8] = b"QED\0";
/// `LUKS\xba\xbe`: the LUKS magic.
const LUKS_MAGIC: &[u8] = b"LUKS\xba\xbe";
/// The MBR boot signature at 510.
const MBR_SIGNATURE: [u8; 2] = [0x55, 0xaa];

/// Every signature the bytes of `file` carry, in [`Signature`] order.
///
/// # Errors
/// I/O failures while reading the probed areas.
pub fn signatures(file: &dyn ReadAt) -> Result<Vec<Signature>> {
    let head = read_up_to(file, 0, 512)?;
    let starts = |magic: &[u8]| head.starts_with(magic);
    let iso_id = read_up_to(file, ISO_ID_OFFSET, 5)?;
    let found = [
        (Signature::Qcow2, starts(QCOW2_MAGIC)),
        (Signature::Qed, starts(QED_MAGIC)),
        (Signature::Vhd, starts(VHD_COOKIE)),
        (Signature::Vhdx, starts(VHDX_MAGIC)),
        (Signature::Vmdk, is_vmdk(&head)),
        (
            Signature::Vdi,
            head.get(0x40..0x44) == Some(&VDI_SIGNATURE.to_le_bytes()[..]),
        ),
        (
            Signature::Iso,
            matches!(&iso_id[..], b"CD001" | b"NSR02" | b"NSR03"),
        ),
        (Signature::Luks, starts(LUKS_MAGIC)),
        (Signature::Gpt, is_mbr(&head)),
        (
            Signature::VhdFooter,
            !starts(VHD_COOKIE) && has_footer(file)?,
        ),
    ];
    Ok(found
        .iter()
        .filter(|(_, hit)| *hit)
        .map(|(s, _)| *s)
        .collect())
}

fn has_footer(file: &dyn ReadAt) -> Result<bool> {
    let len = file.len();
    Ok(len >= 512 && read_up_to(file, len - 512, 8)? == VHD_COOKIE)
}

fn is_vmdk(head: &[u8]) -> bool {
    [
        VMDK_SPARSE_MAGIC,
        VMDK_COWD_MAGIC,
        b"# Disk DescriptorFile",
        b"# Disk Descriptor File",
    ]
    .iter()
    .any(|m| head.starts_with(m))
}

/// format_inspector's GPT/MBR match: the boot signature, unless the sector is a FAT boot
/// sector (two FATs, fixed-disk media byte), which carries the same signature.
fn is_mbr(head: &[u8]) -> bool {
    let fat = head.get(0x10) == Some(&2) && head.get(0x15) == Some(&0xf8);
    head.get(510..512) == Some(&MBR_SIGNATURE[..]) && !fat
}

/// What format_inspector's GPT check refuses in the MBR of `head` (its first sector), in its
/// words: a boot flag other than 0x00/0x80, a protective (0xee) partition that does not
/// start at CHS 0/2/0 and LBA 1 or is not alone, or no partition at all.
pub fn mbr_problem(head: &[u8]) -> Option<&'static str> {
    let mut used = Vec::new();
    let mut protective = false;
    for i in 0..4 {
        let e = head.get(446 + 16 * i..446 + 16 * (i + 1))?;
        if e[0] != 0x00 && e[0] != 0x80 {
            return Some("MBR PTE has invalid boot flag");
        }
        if e[4] != 0 {
            used.push(i);
        }
        if e[4] == 0xee {
            protective = true;
            if e[1..4] != [0x00, 0x02, 0x00] {
                return Some("GPT MBR has invalid start CHS");
            }
            if e[8..12] != [1, 0, 0, 0] {
                return Some("GPT MBR has invalid start LBA");
            }
        }
    }
    if protective && used != [0] {
        return Some("GPT MBR defines invalid extra partitions");
    }
    used.is_empty()
        .then_some("GPT MBR has no partitions defined")
}

/// Whether `found` is a polyglot kiln refuses to read: two signatures, other than an ISO
/// with an MBR (a hybrid ISO; see the module docs) and a fixed VHD whose disk has an MBR
/// (the footer follows the disk's own bytes, so every reader sees the same disk).
pub fn is_polyglot(found: &[Signature]) -> bool {
    let harmless = [
        [Signature::Iso, Signature::Gpt],
        [Signature::Gpt, Signature::VhdFooter],
    ];
    found.len() > 1 && !harmless.iter().any(|pair| found == pair)
}

/// Whether format_inspector refuses `found` as "Multiple formats detected": two of the
/// signatures it looks for (it does not look for a VHD footer at the end).
pub fn inspector_polyglot(found: &[Signature]) -> bool {
    found.iter().filter(|s| **s != Signature::VhdFooter).count() > 1
}

/// format_inspector's refusal text for two or more signatures.
pub fn polyglot_message(found: &[Signature]) -> String {
    let names: Vec<&str> = found.iter().map(|s| s.name()).collect();
    format!("Multiple formats detected: {}", names.join(","))
}

/// [`probe`] for opening: a polyglot is refused unless `allow_unsafe`, which reads it as
/// the first format in the probe order.
///
/// # Errors
/// As [`probe`]; a polyglot without `allow_unsafe` ([`ErrorKind::Refused`]).
pub fn probe_for_open(file: &dyn ReadAt, allow_unsafe: bool) -> Result<DiskFormat> {
    if !allow_unsafe {
        let found = signatures(file)?;
        if is_polyglot(&found) {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "{}: the file is more than one format and reads differently in different tools; refused, pass -f FORMAT or --allow-unsafe to read it as one",
                    polyglot_message(&found)
                ),
            ));
        }
    }
    probe(file)
}

/// Detects the format of `file` (see the module docs for the order). A polyglot is read as
/// the first format in the order; [`probe_for_open`] refuses it.
///
/// # Errors
/// I/O failures while reading the probed areas.
pub fn probe(file: &dyn ReadAt) -> Result<DiskFormat> {
    let len = file.len();
    let head = read_up_to(file, 0, 512)?;
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(QCOW2_MAGIC) {
        return Ok(DiskFormat::Qcow2);
    }
    if starts(VMDK_SPARSE_MAGIC) || starts(VMDK_COWD_MAGIC) {
        return Ok(DiskFormat::Vmdk);
    }
    if starts(VHDX_MAGIC) {
        return Ok(DiskFormat::Vhdx);
    }
    if starts(VHD_COOKIE) {
        return Ok(DiskFormat::Vhd);
    }
    if head.get(0x40..0x44) == Some(&VDI_SIGNATURE.to_le_bytes()[..]) {
        return Ok(DiskFormat::Vdi);
    }
    if starts(b"# Disk DescriptorFile") || starts(b"# Disk Descriptor File") {
        return Ok(DiskFormat::Vmdk);
    }
    if read_up_to(file, ISO_ID_OFFSET, 5)? == b"CD001" {
        return Ok(DiskFormat::Iso);
    }
    if len >= 512 && read_up_to(file, len - 512, 8)? == VHD_COOKIE {
        return Ok(DiskFormat::Vhd);
    }
    if starts(QED_MAGIC) || starts(LUKS_MAGIC) {
        // Read as raw, the bytes would carry the format on to whatever probes the output.
        return Err(Error::unsupported(
            "this is a QED image or a LUKS volume, which kiln does not read (format_inspector bans QED); pass -f raw to copy its bytes anyway",
        ));
    }
    if head.get(TAR_MAGIC_OFFSET..TAR_MAGIC_OFFSET + TAR_MAGIC.len()) == Some(TAR_MAGIC) {
        return Err(Error::unsupported(
            "this is a tar archive (an OVA?), not a disk image: `kiln convert`, `info` and `check` read the disk inside a package (`--member NAME` picks one); elsewhere extract the disk (`tar xf`), or pass `-f raw` to copy the archive's bytes as a raw disk",
        ));
    }
    Ok(DiskFormat::Raw)
}

/// Reads up to `n` bytes at `offset`; fewer at the end of the file.
fn read_up_to(file: &dyn ReadAt, offset: u64, n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0; n];
    let mut got = 0;
    while got < n {
        let r = file.read_at(&mut buf[got..], offset + got as u64)?;
        if r == 0 {
            break;
        }
        got += r;
    }
    buf.truncate(got);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe_bytes(bytes: &[u8]) -> DiskFormat {
        probe(&bytes.to_vec()).unwrap()
    }

    #[test]
    fn qcow2_magic_is_qcow2() {
        assert_eq!(probe_bytes(b"QFI\xfb\0\0\0\x03"), DiskFormat::Qcow2);
    }

    #[test]
    fn vdi_signature_is_vdi() {
        let mut h = vec![0u8; 512];
        h[0x40..0x44].copy_from_slice(&VDI_SIGNATURE.to_le_bytes());
        assert_eq!(probe_bytes(&h), DiskFormat::Vdi);
    }

    #[test]
    fn footer_only_vhd_is_vhd() {
        let mut img = vec![0u8; 4096];
        img[4096 - 512..4096 - 504].copy_from_slice(VHD_COOKIE);
        assert_eq!(probe_bytes(&img), DiskFormat::Vhd);
    }

    #[test]
    fn tar_archives_are_refused_not_read_as_raw() {
        let err = probe(&tar::Header::new_ustar().as_bytes().to_vec())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tar archive"), "{err}");
    }

    #[test]
    fn an_iso_that_is_also_a_qcow2_is_refused_as_format_inspector_does() {
        // issue 15, defect 1: this was read as qcow2 and passed `kiln check`.
        let mut img = vec![0u8; 0x9000];
        img[..4].copy_from_slice(QCOW2_MAGIC);
        img[0x8001..0x8006].copy_from_slice(b"CD001");
        let err = probe_for_open(&img, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused);
        assert!(
            err.to_string()
                .starts_with("Multiple formats detected: qcow2,iso"),
            "{err}"
        );
    }

    #[test]
    fn a_polyglot_is_read_as_its_first_format_when_unsafe_is_allowed() {
        let mut img = vec![0u8; 0x9000];
        img[..8].copy_from_slice(VHD_COOKIE);
        img[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(probe_for_open(&img, true).unwrap(), DiskFormat::Vhd);
    }

    #[test]
    fn an_iso_with_an_mbr_is_read_as_an_iso() {
        let mut img = vec![0u8; 0x9000];
        img[510..512].copy_from_slice(&MBR_SIGNATURE);
        img[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(signatures(&img).unwrap(), [Signature::Iso, Signature::Gpt]);
        assert_eq!(probe_for_open(&img, false).unwrap(), DiskFormat::Iso);
    }

    #[test]
    fn a_qcow2_with_a_vhd_footer_is_refused() {
        let mut img = vec![0u8; 4096];
        img[..4].copy_from_slice(QCOW2_MAGIC);
        img[4096 - 512..4096 - 504].copy_from_slice(VHD_COOKIE);
        let err = probe_for_open(&img, false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Multiple formats detected: qcow2,vhd-footer"),
            "{err}"
        );
    }

    #[test]
    fn a_fixed_vhd_of_a_partitioned_disk_is_a_vhd() {
        let mut img = vec![0u8; 4096];
        img[510..512].copy_from_slice(&MBR_SIGNATURE);
        img[4096 - 512..4096 - 504].copy_from_slice(VHD_COOKIE);
        assert_eq!(probe_for_open(&img, false).unwrap(), DiskFormat::Vhd);
    }

    #[test]
    fn a_fat_boot_sector_is_not_an_mbr() {
        let mut img = vec![0u8; 512];
        img[510..512].copy_from_slice(&MBR_SIGNATURE);
        img[0x10] = 2;
        img[0x15] = 0xf8;
        assert_eq!(signatures(&img).unwrap(), []);
    }

    #[test]
    fn zeros_are_raw() {
        assert_eq!(probe_bytes(&[0; 1024]), DiskFormat::Raw);
    }
}
