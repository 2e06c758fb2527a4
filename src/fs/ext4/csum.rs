//! The two checksums ext4 uses: CRC-32C for `metadata_csum` (ext4 chains the raw register
//! from structure to structure, with no final inversion: the kernel's `ext4_chksum`), and
//! the CRC-16 (ANSI, reflected polynomial 0xA001) of group descriptors under `gdt_csum`
//! (`uninit_bg`).
//! The CRC-32C register is `io::crc`'s, shared with VHDX.

/// CRC-16 (ANSI, reflected polynomial 0xA001) table.
const CRC16_TABLE: [u16; 256] = table16(0xA001);

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
pub(super) fn crc32c(crc: u32, bytes: &[u8]) -> u32 {
    crate::io::crc::crc32c_update(crc, bytes)
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
    fn crc16_matches_the_known_vector() {
        // CRC-16/ARC: initial 0, reflected 0x8005 (0xA001), no final xor.
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
    }
}
