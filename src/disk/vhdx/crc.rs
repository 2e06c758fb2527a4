//! CRC-32C, as MS-VHDX uses it for headers, region tables and log entries.

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table entry per byte value.
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

pub(super) fn crc32c_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32C of `bytes`.
#[cfg(test)]
fn crc32c(bytes: &[u8]) -> u32 {
    !crc32c_update(!0, bytes)
}

/// MS-VHDX 2.2.2 and 2.2.3: the CRC-32C of a structure with its checksum field (bytes 4..8)
/// taken as zero.
pub(super) fn checksum_with_zero_field(buf: &[u8]) -> u32 {
    let (head, rest) = buf.split_at(buf.len().min(4));
    let crc = crc32c_update(!0, head);
    let crc = crc32c_update(crc, &[0; 4][..rest.len().min(4)]);
    !crc32c_update(crc, rest.get(4..).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_known_vector() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn checksum_field_is_taken_as_zero() {
        let mut buf = *b"abcdXXXXefgh";
        let with_field = checksum_with_zero_field(&buf);
        buf[4..8].fill(0);
        assert_eq!(with_field, crc32c(&buf));
    }
}
