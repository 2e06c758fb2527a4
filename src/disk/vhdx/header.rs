//! The file type identifier and the two headers (MS-VHDX 2.2.1 and 2.2.2).

use uuid::Uuid;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{VhdxError, checksum_with_zero_field};
use crate::error::Result;
use crate::io::{ReadAt, read_exact_at};

/// `vhdxfile`: the signature at offset 0 of every VHDX file.
pub(super) const VHDX_SIGNATURE: &[u8; 8] = b"vhdxfile";
/// Bytes of the creator field (UTF-16LE) that follows the signature.
const VHDX_CREATOR_BYTES: usize = 512;
/// Offsets of the two header copies.
pub(super) const VHDX_HEADER_OFFSETS: [u64; 2] = [0x1_0000, 0x2_0000];
/// Bytes of one header covered by its checksum.
pub(super) const VHDX_HEADER_SIZE: usize = 4096;
/// `head`: the signature of a header.
const VHDX_HEADER_SIGNATURE: &[u8; 4] = b"head";
/// The only header version the spec defines.
const VHDX_HEADER_VERSION: u16 = 1;

/// One header as stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct RawHeader {
    signature: [u8; 4],
    checksum: U32,
    sequence_number: U64,
    file_write_guid: [u8; 16],
    data_write_guid: [u8; 16],
    log_guid: [u8; 16],
    log_version: U16,
    version: U16,
    log_length: U32,
    log_offset: U64,
    reserved: [u8; 4016],
}

/// A header whose signature, checksum and version were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VhdxHeader {
    pub sequence_number: u64,
    pub file_write_guid: Uuid,
    pub data_write_guid: Uuid,
    /// Non-nil means the log holds entries that must be replayed.
    pub log_guid: Uuid,
    pub log_length: u32,
    pub log_offset: u64,
}

impl VhdxHeader {
    /// Parses the header stored at `offset`.
    pub fn parse(buf: &[u8; VHDX_HEADER_SIZE], offset: u64) -> Result<Self, VhdxError> {
        let raw = RawHeader::ref_from_bytes(buf).expect("buffer is one header");
        if &raw.signature != VHDX_HEADER_SIGNATURE {
            return Err(VhdxError::BadSignature {
                what: "header",
                offset,
            });
        }
        let computed = checksum_with_zero_field(buf);
        let found = raw.checksum.get();
        if found != computed {
            return Err(VhdxError::BadChecksum {
                what: "header",
                offset,
                found,
                computed,
            });
        }
        let version = raw.version.get();
        if version != VHDX_HEADER_VERSION {
            return Err(VhdxError::BadVersion { offset, version });
        }
        Ok(Self {
            sequence_number: raw.sequence_number.get(),
            file_write_guid: Uuid::from_bytes_le(raw.file_write_guid),
            data_write_guid: Uuid::from_bytes_le(raw.data_write_guid),
            log_guid: Uuid::from_bytes_le(raw.log_guid),
            log_length: raw.log_length.get(),
            log_offset: raw.log_offset.get(),
        })
    }

    /// The 4 KiB header with its checksum.
    pub fn to_bytes(self) -> [u8; VHDX_HEADER_SIZE] {
        let raw = RawHeader {
            signature: *VHDX_HEADER_SIGNATURE,
            checksum: U32::new(0),
            sequence_number: U64::new(self.sequence_number),
            file_write_guid: self.file_write_guid.to_bytes_le(),
            data_write_guid: self.data_write_guid.to_bytes_le(),
            log_guid: self.log_guid.to_bytes_le(),
            log_version: U16::new(0),
            version: U16::new(VHDX_HEADER_VERSION),
            log_length: U32::new(self.log_length),
            log_offset: U64::new(self.log_offset),
            reserved: [0; 4016],
        };
        let mut buf = [0u8; VHDX_HEADER_SIZE];
        buf.copy_from_slice(raw.as_bytes());
        let sum = checksum_with_zero_field(&buf);
        buf[4..8].copy_from_slice(&sum.to_le_bytes());
        buf
    }
}

/// The current header: the valid one with the higher sequence number. One bad copy falls
/// back to the other (MS-VHDX 2.2.2.1); both bad is an error naming the first failure.
pub(super) fn select_header(
    first: Result<VhdxHeader, VhdxError>,
    second: Result<VhdxHeader, VhdxError>,
) -> Result<(VhdxHeader, u64), VhdxError> {
    let [off1, off2] = VHDX_HEADER_OFFSETS;
    match (first, second) {
        (Ok(a), Ok(b)) if b.sequence_number > a.sequence_number => Ok((b, off2)),
        (Ok(a), _) => Ok((a, off1)),
        (Err(_), Ok(b)) => Ok((b, off2)),
        (Err(a), Err(_)) => Err(VhdxError::NoValidHeader {
            source: Box::new(a),
        }),
    }
}

/// The file type identifier: signature plus creator in UTF-16LE (at most 256 code units).
pub(super) fn identifier_bytes(creator: &str) -> Vec<u8> {
    let mut buf = VHDX_SIGNATURE.to_vec();
    let units = creator.encode_utf16().take(VHDX_CREATOR_BYTES / 2 - 1);
    buf.extend(units.flat_map(u16::to_le_bytes));
    buf
}

/// Checks the signature at offset 0.
pub(super) fn check_identifier(head: &[u8; 8]) -> Result<(), VhdxError> {
    if head != VHDX_SIGNATURE {
        return Err(VhdxError::BadSignature {
            what: "file type identifier",
            offset: 0,
        });
    }
    Ok(())
}

/// Reads both headers and picks the current one (see [`select_header`]).
pub(super) fn read_headers(file: &dyn ReadAt) -> Result<(VhdxHeader, u64)> {
    let mut parsed = Vec::with_capacity(2);
    for offset in VHDX_HEADER_OFFSETS {
        let mut buf = [0u8; VHDX_HEADER_SIZE];
        read_exact_at(file, &mut buf, offset, "VHDX header")?;
        parsed.push(VhdxHeader::parse(&buf, offset));
    }
    let second = parsed.pop().expect("two headers were parsed");
    let first = parsed.pop().expect("two headers were parsed");
    Ok(select_header(first, second)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64) -> VhdxHeader {
        VhdxHeader {
            sequence_number: seq,
            file_write_guid: Uuid::from_u128(1),
            data_write_guid: Uuid::from_u128(2),
            log_guid: Uuid::nil(),
            log_length: 1 << 20,
            log_offset: 1 << 20,
        }
    }

    #[test]
    fn header_round_trips() {
        let bytes = header(7).to_bytes();
        assert_eq!(VhdxHeader::parse(&bytes, 0x10000).unwrap(), header(7));
    }

    #[test]
    fn header_with_bad_checksum_is_rejected() {
        let mut bytes = header(7).to_bytes();
        bytes[100] ^= 1;
        let err = VhdxHeader::parse(&bytes, 0x10000).unwrap_err();
        assert!(
            matches!(
                err,
                VhdxError::BadChecksum {
                    offset: 0x10000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn header_with_bad_signature_is_rejected() {
        let mut bytes = header(7).to_bytes();
        bytes[0] = b'x';
        let err = VhdxHeader::parse(&bytes, 0x20000).unwrap_err();
        assert!(
            matches!(
                err,
                VhdxError::BadSignature {
                    offset: 0x20000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn higher_sequence_number_wins() {
        let (h, off) = select_header(Ok(header(3)), Ok(header(4))).unwrap();
        assert_eq!((h.sequence_number, off), (4, 0x20000));
    }

    #[test]
    fn bad_first_header_falls_back_to_second() {
        let bad = Err(VhdxError::BadSignature {
            what: "header",
            offset: 0x10000,
        });
        let (h, off) = select_header(bad, Ok(header(1))).unwrap();
        assert_eq!((h.sequence_number, off), (1, 0x20000));
    }

    #[test]
    fn both_headers_bad_is_an_error() {
        let bad = || {
            Err(VhdxError::BadSignature {
                what: "header",
                offset: 0x10000,
            })
        };
        assert!(select_header(bad(), bad()).is_err());
    }

    #[test]
    fn identifier_holds_utf16_creator() {
        let id = identifier_bytes("kiln");
        assert_eq!(&id[..], b"vhdxfilek\0i\0l\0n\0");
    }
}
