//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum VHDX headers and
//! ext4's `metadata_csum` use, as a table-driven function over the raw register (no
//! initial or final inversion: callers apply the ones their format specifies).

/// One table entry per byte value.
const CRC32C_TABLE: [u32; 256] = crc32c_table();

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i: u32 = 0;
    while i < 256 {
        let mut c = i;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i as usize] = c;
        i += 1;
    }
    table
}

/// The raw CRC-32C register after `bytes`, starting from `crc`.
pub fn crc32c_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_known_vector() {
        assert_eq!(!crc32c_update(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn crc32c_chains_across_pieces() {
        let whole = crc32c_update(!0, b"123456789");
        assert_eq!(crc32c_update(crc32c_update(!0, b"1234"), b"56789"), whole);
    }
}
