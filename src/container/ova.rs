//! Reading an OVA's disks in place: the archive is listed by the bounded tar reader and a
//! disk member is opened as a view of the archive, so `kiln info`, `check` and `convert`
//! read the VMDK inside a package without extracting it.
//!
//! The disk is the member the user names, else the package's first disk: the first member
//! that is not the descriptor (`.ovf`), manifest (`.mf`) or certificate (`.cert`). Checking
//! the package itself (manifest digests, descriptor) is not done here.

use std::path::{Path, PathBuf};

use super::tar::reader::{self, Member};
use crate::disk::{self, DiskReader, OpenOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::io::{ReadAt, Source};

/// Members that describe a package rather than hold a disk.
const PACKAGE_METADATA_SUFFIXES: [&str; 3] = [".ovf", ".mf", ".cert"];

/// A disk read from inside a package.
pub struct PackagedDisk {
    /// The member it was read from.
    pub member: String,
    /// `package.ova:member`, the name errors and reports use.
    pub name: PathBuf,
    /// The member's length in the archive.
    pub member_len: u64,
    /// The disk's reader.
    pub reader: Box<dyn DiskReader>,
}

/// True when `src` is a tar archive (an OVA) rather than a disk image.
///
/// # Errors
/// I/O failures.
pub fn is_package(src: &dyn ReadAt) -> Result<bool> {
    reader::is_tar(src)
}

/// Opens disk `member` (or the first disk) of the OVA in `src`, read from `path`.
///
/// # Errors
/// A refused archive (see [`reader`]), no such member, no disk member, or the member's
/// image is invalid; errors name `path` and the member.
pub fn open_disk(
    src: &Source,
    path: &Path,
    member: Option<&str>,
    opts: &OpenOptions,
) -> Result<PackagedDisk> {
    let members = reader::list(&**src).map_err(|e| e.with_path(path))?;
    let chosen = choose(&members, member).map_err(|e| e.with_path(path))?;
    let name = PathBuf::from(format!("{}:{}", path.display(), chosen.name));
    let reader = disk::open_source(chosen.view(src), &name, opts)?;
    Ok(PackagedDisk {
        member: chosen.name.clone(),
        name,
        member_len: chosen.len,
        reader,
    })
}

fn choose<'m>(members: &'m [Member], wanted: Option<&str>) -> Result<&'m Member> {
    let found = match wanted {
        Some(name) => members.iter().find(|m| m.name == name),
        None => members.iter().find(|m| is_disk_member(&m.name)),
    };
    found.ok_or_else(|| {
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        let what = match wanted {
            Some(name) => format!("has no member `{name}`"),
            None => "has no disk member".to_string(),
        };
        Error::new(
            ErrorKind::InvalidInput,
            format!("package {what}; its members are: {}", names.join(", ")),
        )
    })
}

fn is_disk_member(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !PACKAGE_METADATA_SUFFIXES
        .iter()
        .any(|suffix| lower.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> Member {
        Member {
            name: name.into(),
            header_offset: 0,
            offset: 512,
            len: 0,
        }
    }

    #[test]
    fn the_first_disk_skips_descriptor_manifest_and_certificate() {
        let members = [
            member("a.ovf"),
            member("a.mf"),
            member("a.cert"),
            member("a-disk1.vmdk"),
        ];
        assert_eq!(choose(&members, None).unwrap().name, "a-disk1.vmdk");
    }

    #[test]
    fn a_missing_member_lists_what_is_there() {
        let err = choose(&[member("a.ovf")], Some("b.vmdk")).unwrap_err();
        assert!(err.to_string().contains("its members are: a.ovf"), "{err}");
    }
}
