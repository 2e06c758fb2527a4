//! El Torito 1.0 ("El Torito" Bootable CD-ROM Format Specification, Phoenix/IBM 1995): the
//! boot record volume descriptor (sector 17), a one-sector boot catalog with a BIOS
//! no-emulation default entry and/or a UEFI (platform 0xEF) section entry pointing at a FAT
//! image, and the isolinux/GRUB "boot info table" patched into the BIOS boot image.

use super::records::{ISO_SECTOR, ISO_STANDARD_ID, ISO_VD_BOOT};

/// Boot system identifier of the boot record descriptor.
const EL_TORITO_ID: &[u8] = b"EL TORITO SPECIFICATION";
/// Platform id of x86 BIOS entries.
const PLATFORM_X86: u8 = 0;
/// Platform id of UEFI entries.
const PLATFORM_EFI: u8 = 0xEF;
/// Entry is bootable.
const BOOTABLE: u8 = 0x88;
/// Section header flag: last section.
const FINAL_SECTION: u8 = 0x91;
/// 512-byte sectors the BIOS loads from a no-emulation image (`-boot-load-size 4`).
pub const BIOS_LOAD_SECTORS: u16 = 4;

/// Where the boot images are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootImage {
    pub lba: u32,
    pub size: u64,
}

/// The boot record volume descriptor pointing at the catalog.
pub fn boot_record(catalog_lba: u32) -> Vec<u8> {
    let mut out = vec![ISO_VD_BOOT];
    out.extend_from_slice(ISO_STANDARD_ID);
    out.push(1);
    out.extend_from_slice(EL_TORITO_ID);
    out.resize(0x47, 0);
    out.extend_from_slice(&catalog_lba.to_le_bytes());
    out.resize(ISO_SECTOR, 0);
    out
}

fn validation_entry(platform: u8) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0] = 1;
    e[1] = platform;
    e[30] = 0x55;
    e[31] = 0xAA;
    // The 16-bit words of the entry must sum to zero.
    let sum = e.chunks_exact(2).fold(0u16, |s, w| {
        s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    e[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    e
}

fn boot_entry(image: BootImage, sectors: u16) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0] = BOOTABLE;
    e[6..8].copy_from_slice(&sectors.to_le_bytes());
    e[8..12].copy_from_slice(&image.lba.to_le_bytes());
    e
}

/// 512-byte sectors of a UEFI image, saturated at what the field holds.
fn efi_sectors(size: u64) -> u16 {
    u16::try_from(size.div_ceil(512)).unwrap_or(u16::MAX)
}

/// The boot catalog sector.
pub fn catalog(bios: Option<BootImage>, efi: Option<BootImage>) -> Vec<u8> {
    let mut out = Vec::with_capacity(ISO_SECTOR);
    match (bios, efi) {
        (Some(b), efi) => {
            out.extend_from_slice(&validation_entry(PLATFORM_X86));
            out.extend_from_slice(&boot_entry(b, BIOS_LOAD_SECTORS));
            if let Some(e) = efi {
                let mut header = [0u8; 32];
                header[0] = FINAL_SECTION;
                header[1] = PLATFORM_EFI;
                header[2..4].copy_from_slice(&1u16.to_le_bytes());
                out.extend_from_slice(&header);
                out.extend_from_slice(&boot_entry(e, efi_sectors(e.size)));
            }
        }
        (None, Some(e)) => {
            out.extend_from_slice(&validation_entry(PLATFORM_EFI));
            out.extend_from_slice(&boot_entry(e, efi_sectors(e.size)));
        }
        (None, None) => {}
    }
    out.resize(ISO_SECTOR, 0);
    out
}

/// Patches the boot info table (bytes 8..24: PVD block, image block, image length, checksum
/// of the 32-bit words from byte 64) into a BIOS boot image, as `-boot-info-table` does.
pub fn patch_boot_info_table(image: &mut [u8], lba: u32) {
    if image.len() < 64 {
        return;
    }
    let checksum = image[64..]
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .fold(0u32, u32::wrapping_add);
    let len = u32::try_from(image.len()).unwrap_or(u32::MAX);
    image[8..12].copy_from_slice(&16u32.to_le_bytes());
    image[12..16].copy_from_slice(&lba.to_le_bytes());
    image[16..20].copy_from_slice(&len.to_le_bytes());
    image[20..24].copy_from_slice(&checksum.to_le_bytes());
    image[24..64].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_entry_words_sum_to_zero() {
        let e = validation_entry(PLATFORM_X86);
        let sum = e.chunks_exact(2).fold(0u16, |s, w| {
            s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        assert_eq!(sum, 0);
    }

    #[test]
    fn boot_record_points_at_the_catalog() {
        let vd = boot_record(33);
        assert_eq!(&vd[7..30], EL_TORITO_ID);
        assert_eq!(&vd[0x47..0x4b], &33u32.to_le_bytes());
    }

    #[test]
    fn bios_and_efi_catalog_has_a_final_efi_section() {
        let image = BootImage {
            lba: 40,
            size: 2048,
        };
        let cat = catalog(
            Some(image),
            Some(BootImage {
                lba: 41,
                size: 1 << 20,
            }),
        );
        assert_eq!(cat[64], FINAL_SECTION);
        assert_eq!(cat[65], PLATFORM_EFI);
        assert_eq!(&cat[96 + 6..96 + 8], &2048u16.to_le_bytes());
    }

    #[test]
    fn boot_info_table_records_location_and_length() {
        let mut image = vec![0u8; 2048];
        image[64] = 1;
        patch_boot_info_table(&mut image, 50);
        assert_eq!(
            &image[8..24],
            &[16, 0, 0, 0, 50, 0, 0, 0, 0, 8, 0, 0, 1, 0, 0, 0]
        );
    }
}
