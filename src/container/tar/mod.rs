//! Tar framing shared by every package kind: ustar headers written deterministically
//! (regular files, mode 0644, owner 0:0, empty user and group names, mtime from the build
//! context; GNU base-256 sizes above 8 GiB, never PAX), and a bounded [`reader`] that lists
//! an archive's members with their offsets so each can be opened as a view.
//!
//! A member whose length is learnt only after its data is written (a VMDK streamed into an
//! OVA) is framed by reserving its header block and patching it afterwards:
//! [`header`] gives the block, the caller places it.

pub mod reader;

use crate::error::{Error, ErrorKind, Result};

/// Tar block size.
pub const TAR_BLOCK: u64 = 512;
/// The longest member name a ustar header holds without a directory prefix.
pub const MAX_MEMBER_NAME: usize = 100;
/// Two zero blocks end an archive.
pub const TAR_END: [u8; 1024] = [0; 1024];

/// Why a tar header cannot be written.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum TarWriteError {
    /// A member name tar cannot store or an extractor would place outside its directory.
    #[error("member name `{name}` must be a plain file name (no `/`, NUL or `..`)")]
    NameNotPlain {
        /// The name.
        name: String,
    },
    /// A member name does not fit a ustar header.
    #[error("member name `{name}` is longer than {MAX_MEMBER_NAME} bytes")]
    NameTooLong {
        /// The name.
        name: String,
    },
}

impl From<TarWriteError> for Error {
    fn from(e: TarWriteError) -> Self {
        Error::new(ErrorKind::InvalidInput, e)
    }
}

/// Checks that `name` can be a flat member of a kiln archive.
///
/// # Errors
/// [`TarWriteError`] naming the rule it breaks.
pub fn check_member_name(name: &str) -> Result<(), TarWriteError> {
    if name.len() > MAX_MEMBER_NAME {
        return Err(TarWriteError::NameTooLong { name: name.into() });
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(TarWriteError::NameNotPlain { name: name.into() });
    }
    Ok(())
}

/// The ustar header block of regular file `name` of `size` bytes stamped `mtime`.
///
/// # Errors
/// A name that [`check_member_name`] refuses.
pub fn header(name: &str, size: u64, mtime: u64) -> Result<[u8; 512]> {
    check_member_name(name)?;
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    // Sizes of 8 GiB and more do not fit 11 octal digits; the tar crate then writes GNU's
    // base-256 form, which GNU tar, bsdtar and Python's tarfile read.
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(*h.as_bytes())
}

/// `len` rounded up to whole tar blocks.
pub fn padded(len: u64) -> u64 {
    len.next_multiple_of(TAR_BLOCK)
}

/// A whole member: header, `bytes`, zero padding to the block.
///
/// # Errors
/// As [`header`].
pub fn member(name: &str, bytes: &[u8], mtime: u64) -> Result<Vec<u8>> {
    let mut out = header(name, bytes.len() as u64, mtime)?.to_vec();
    out.extend_from_slice(bytes);
    out.resize(out.len().next_multiple_of(512), 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_over_8_gib_get_a_base_256_size() {
        let h = header("a-disk1.vmdk", 9 << 30, 0).unwrap();
        assert_eq!(h[124] & 0x80, 0x80);
        let parsed = tar::Header::from_byte_slice(&h);
        assert_eq!(parsed.size().unwrap(), 9 << 30);
        assert_eq!(&h[257..263], b"ustar\0");
    }

    #[test]
    fn a_name_with_a_slash_is_refused() {
        assert!(header("a/b.vmdk", 1, 0).is_err());
    }

    #[test]
    fn a_dot_dot_name_is_refused() {
        assert!(header("..", 1, 0).is_err());
    }

    #[test]
    fn a_member_is_block_aligned() {
        assert_eq!(member("a.mf", b"x", 0).unwrap().len(), 1024);
    }
}
