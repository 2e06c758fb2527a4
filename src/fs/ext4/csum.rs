//! The two checksums ext4 uses: CRC-32C for `metadata_csum` (ext4 chains the raw register
//! from structure to structure, with no final inversion: the kernel's `ext4_chksum`), and
//! the CRC-16 (ANSI, reflected polynomial 0xA001) of group descriptors under `gdt_csum`
//! (`uninit_bg`).
//!
//! A CRC-32C table also exists in the VHDX reader; it is private there and that module is
//! being split, so this one stays local (a shared checksum helper can replace both).

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) table.
const CRC32C_TABLE: [u32; 256] = table32(0x82F6_3B78);
/// CRC-16 (ANSI, reflected polynomial 0xA001) table.
const CRC16_TABLE: [u16; 256] = table16(0xA001);

const fn table32(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i: u32 = 0;
    while i < 256 {
        let mut c = i;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i as usize] = c;
        i += 1;
    }
    table
}

const fn table16(poly: u16) -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i: u16 = 0;
    while i < 256 {
        let mut c = i;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i as usize] = c;
        i += 1;
    }
    table
}

/// The raw CRC-32C register after `bytes`, starting from `crc` (ext4's `ext4_chksum`).
pub(super) fn crc32c(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// The raw CRC-16 register after `bytes`, starting from `crc` (the kernel's `crc16`).
pub(super) fn crc16(mut crc: u16, bytes: &[u8]) -> u16 {
    for &b in bytes {
        crc = CRC16_TABLE[usize::from((crc ^ u16::from(b)) & 0xff)] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_known_vector() {
        // The standard CRC-32C is the raw register started at !0 and inverted at the end.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn crc16_matches_the_known_vector() {
        // CRC-16/ARC: initial 0, reflected 0x8005 (0xA001), no final xor.
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
    }

    #[test]
    fn crc32c_chains_across_pieces() {
        assert_eq!(
            crc32c(crc32c(!0, b"1234"), b"56789"),
            crc32c(!0, b"123456789")
        );
    }
}
