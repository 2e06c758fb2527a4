//! One loader for the on-disk tables of fixed-width entries that image formats keep: VHD
//! and VDI block maps, qcow2 L1 tables, VMDK grain directories. Every table an untrusted
//! header declares goes through the same three checks before a byte is allocated: its size
//! does not overflow, it is under the format's cap, and it lies inside the source.
//!
//! Formats keep their own, more specific, checks (a VHD table must end before the footer,
//! a qcow2 table must not alias another); this is the floor under all of them.

use super::{ReadAt, read_exact_at};
use crate::error::{Error, ErrorKind, Result};

/// Where a table lies and how large the format lets it be.
#[derive(Debug, Clone, Copy)]
pub struct TableAt {
    /// What the table is, for errors ("VHD BAT").
    pub what: &'static str,
    /// Byte offset of its first entry.
    pub offset: u64,
    /// Number of entries.
    pub entries: u64,
    /// The largest table, in bytes, the format allows.
    pub max_bytes: u64,
}

/// Why a table was refused before it was read.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The table extends past the end of the source.
    #[error(
        "{what} at offset {offset:#x} ({len} bytes) lies past the end of the file ({source_len} bytes)"
    )]
    PastEnd {
        /// The table.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// Its length in bytes.
        len: u64,
        /// The source's length.
        source_len: u64,
    },
    /// The declared table is larger than the format allows (or than memory can address).
    #[error(
        "{what} at offset {offset:#x} declares {entries} entries, more than the {max_bytes}-byte limit"
    )]
    TooLarge {
        /// The table.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// Declared entries.
        entries: u64,
        /// The cap in bytes.
        max_bytes: u64,
    },
}

/// Reads the table `at` describes and decodes each `N`-byte entry with `decode` (for
/// example `u32::from_be_bytes`).
///
/// # Errors
/// [`TableError`] (as an invalid image) when the table is too large or leaves the source;
/// read failures with their offset.
pub fn load<const N: usize, T>(
    source: &dyn ReadAt,
    at: TableAt,
    decode: fn([u8; N]) -> T,
) -> Result<Vec<T>> {
    let invalid = |e: TableError| Error::new(ErrorKind::InvalidImage, e).at(at.offset, at.what);
    let len = at
        .entries
        .checked_mul(N as u64)
        .filter(|&len| len <= at.max_bytes)
        .and_then(|len| usize::try_from(len).ok().map(|n| (len, n)));
    let Some((len, len_usize)) = len else {
        return Err(invalid(TableError::TooLarge {
            what: at.what,
            offset: at.offset,
            entries: at.entries,
            max_bytes: at.max_bytes,
        }));
    };
    let source_len = source.len();
    if at
        .offset
        .checked_add(len)
        .is_none_or(|end| end > source_len)
    {
        return Err(invalid(TableError::PastEnd {
            what: at.what,
            offset: at.offset,
            len,
            source_len,
        }));
    }
    let mut bytes = vec![0u8; len_usize];
    read_exact_at(source, &mut bytes, at.offset, at.what)?;
    Ok(decode_all(&bytes, decode))
}

/// Decodes whole `N`-byte entries of `bytes` (a trailing partial entry is ignored): the one
/// decode loop for tables read in windows.
pub fn decode_all<const N: usize, T>(bytes: &[u8], decode: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| decode(c.try_into().expect("chunks_exact yields N bytes")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, entries: u64, max_bytes: u64) -> TableAt {
        TableAt {
            what: "test table",
            offset,
            entries,
            max_bytes,
        }
    }

    #[test]
    fn entries_are_decoded_in_order() {
        let bytes: Vec<u8> = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
        let table = load(&bytes, at(4, 2, 1 << 20), u32::from_be_bytes).unwrap();
        assert_eq!(table, vec![1, 2]);
    }

    #[test]
    fn a_table_past_the_end_is_refused_before_allocating() {
        let bytes = vec![0u8; 64];
        let err = load(&bytes, at(60, 2, 1 << 20), u32::from_le_bytes).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidImage);
        assert!(err.to_string().contains("past the end"), "{err}");
        let place = err.place().expect("a refused table records its place");
        assert_eq!((place.offset, place.operation), (60, "test table"));
        // An offset that overflows is past the end too, not a wrap.
        let err = load(&bytes, at(u64::MAX - 2, 1, 1 << 20), u32::from_le_bytes).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
    }

    #[test]
    fn a_table_over_the_cap_or_overflowing_is_refused() {
        let bytes = vec![0u8; 64];
        let err = load(&bytes, at(0, 9, 32), u32::from_le_bytes).unwrap_err();
        assert!(err.to_string().contains("9 entries"), "{err}");
        let err = load(&bytes, at(0, u64::MAX, u64::MAX), u64::from_le_bytes).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
    }

    #[test]
    fn a_partial_trailing_entry_is_not_decoded() {
        assert_eq!(decode_all(&[1, 0, 2, 0, 9], u16::from_le_bytes), vec![1, 2]);
    }
}
