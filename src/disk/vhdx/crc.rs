//! CRC-32C, as MS-VHDX uses it for headers, region tables and log entries (the register
//! is `io::crc`'s).

use crate::io::crc::crc32c_update;

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
    fn checksum_field_is_taken_as_zero() {
        let mut buf = *b"abcdXXXXefgh";
        let with_field = checksum_with_zero_field(&buf);
        buf[4..8].fill(0);
        assert_eq!(with_field, crc32c(&buf));
    }
}
