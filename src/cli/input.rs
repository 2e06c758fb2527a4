//! The image a reading command was given: a disk image, or a disk inside an OVA (the first
//! disk, or `--member NAME`), read in place; a compressed image (`.xz`, `.gz`, `.zst`,
//! `.bz2`, by magic) or compressed tar is read through `kiln::unpack`.

use std::path::{Path, PathBuf};

use kiln::container::ova;
use kiln::disk::{self, DiskFormat, DiskReader, OpenOptions};
use kiln::io::FileSource;
use kiln::unpack::{self, UnpackOptions};
use kiln::{Error, Result};

/// An opened input image.
pub(super) struct Input {
    /// Its reader.
    pub reader: Box<dyn DiskReader>,
    /// The name to show: the path, or `package.ova:member`.
    pub name: PathBuf,
    /// Bytes the image occupies when it is a package member (its length in the archive).
    pub member_len: Option<u64>,
}

/// Opens `path`; a tar archive (an OVA) is read through its disk member `member` or its
/// first disk, unless `-f raw` asks for the archive's own bytes.
///
/// # Errors
/// As [`disk::open`] and [`ova::open_disk`]; `--member` on a file that is not a package.
pub(super) fn open(path: &Path, member: Option<&str>, opts: &OpenOptions) -> Result<Input> {
    open_with(path, member, opts, false)
}

/// [`open`], with a compressed image unpacked into the cache even when it could be
/// streamed: a stream that ended in a VHD footer ([`unpack::is_fixed_vhd`]) is read again
/// this way, as the fixed VHD it is.
///
/// # Errors
/// As [`open`].
pub(super) fn open_with(
    path: &Path,
    member: Option<&str>,
    opts: &OpenOptions,
    force_cache: bool,
) -> Result<Input> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let src = FileSource::shared(file).map_err(|e| Error::io(e).with_path(path))?;
    let raw_bytes = opts.format == Some(DiskFormat::Raw) && member.is_none();
    if !raw_bytes && opts.format.is_none() && unpack::is_compressed(path)? {
        let unpack_opts = UnpackOptions {
            member: member.map(str::to_string),
            ..UnpackOptions::default()
        };
        // Images that need random access are unpacked once into the cache.
        let reader = if force_cache {
            let ready = unpack::prepare_again(path, &unpack_opts, &mut |_| {})?;
            unpack::open(&ready, &unpack_opts)?
        } else {
            unpack::open_any(path, &unpack_opts, &mut |_| {})?
        };
        let name = path.to_path_buf();
        return Ok(Input {
            reader,
            name,
            member_len: None,
        });
    }
    if raw_bytes || !ova::is_package(&*src).map_err(|e| e.with_path(path))? {
        if member.is_some() {
            return Err(
                Error::invalid_input("--member needs a package (an OVA tar archive)")
                    .with_path(path),
            );
        }
        let reader = disk::open(path, opts)?;
        let name = path.to_path_buf();
        return Ok(Input {
            reader,
            name,
            member_len: None,
        });
    }
    let disk = ova::open_disk(&src, path, member, opts)?;
    Ok(Input {
        member_len: Some(disk.member_len),
        reader: disk.reader,
        name: disk.name,
    })
}
