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
//! 10. otherwise raw

use super::DiskFormat;
use crate::error::{Error, Result};
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

/// Detects the format of `file` (see the module docs for the order).
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
    fn zeros_are_raw() {
        assert_eq!(probe_bytes(&[0; 1024]), DiskFormat::Raw);
    }
}
