//! OVF packages (DSP0243 §5): the descriptor `NAME.ovf`, the manifest `NAME.mf` and the disk
//! `NAME-disk1.vmdk` (streamOptimized), either as three files side by side ([`Form::Files`],
//! Glance's `ovf`) or in a plain ustar archive in that order ([`Form::Ova`]).
//!
//! The streamOptimized VMDK is written front to back and hashed as it is written. For an
//! OVA the writer first reserves the archive's head (descriptor and manifest members, the
//! disk's tar header), streams the VMDK into its member, and writes the head and the
//! end-of-archive blocks when the disk is complete. RAM: the VMDK writer's batches plus the
//! descriptor. Every member is a regular file, mode 0644, owner 0:0, mtime from the build
//! context, so the same disk gives the same bytes.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use super::manifest::{self, Algorithm, Hasher};
use super::ovf::{DiskFile, Machine, SIZE_WIDTH};
use crate::disk::{self, CreateRequest, DiskWriter, Extent, WriteReport};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;

/// Tar block size.
const BLOCK: u64 = 512;
/// The longest member name a ustar header holds without a directory prefix.
pub const MAX_MEMBER_NAME: usize = 100;

/// Why a package cannot be written.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The descriptor changed length after the disk was written (a bug in kiln).
    #[error("OVF descriptor is {found} bytes, but {reserved} were reserved for it")]
    DescriptorLength {
        /// Reserved bytes.
        reserved: usize,
        /// Final length.
        found: usize,
    },
    /// A member name does not fit a ustar header.
    #[error(
        "member name `{name}` is longer than {MAX_MEMBER_NAME} bytes; choose a shorter output `file:` name"
    )]
    NameTooLong {
        /// The name.
        name: String,
    },
}

impl From<PackageError> for Error {
    fn from(e: PackageError) -> Self {
        let kind = match e {
            PackageError::DescriptorLength { .. } => ErrorKind::Io,
            PackageError::NameTooLong { .. } => ErrorKind::InvalidInput,
        };
        Error::new(kind, e)
    }
}

/// How the package's files are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One tar archive (`.ova`).
    Ova,
    /// Descriptor, manifest and disk as files in the output directory.
    Files,
}

/// What goes into a package besides the disk's bytes.
#[derive(Debug, Clone)]
pub struct Package {
    /// The machine the descriptor describes.
    pub machine: Machine,
    /// Manifest digest.
    pub digest: Algorithm,
}

/// Writes a package while the disk is read: a [`DiskWriter`] for the whole package.
pub struct PackageWriter {
    vmdk: Box<dyn DiskWriter>,
    tally: Arc<Mutex<Tally>>,
    /// The OVA, or the descriptor file.
    file: File,
    /// The manifest file ([`Form::Files`]).
    manifest_file: Option<File>,
    layout: Layout,
}

/// The descriptor, manifest and disk file names of a package whose primary target (the
/// `.ova` or `.ovf`) is `target`.
pub fn file_names(target: &Path) -> [String; 3] {
    let stem = target
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    [
        format!("{stem}.ovf"),
        format!("{stem}.mf"),
        format!("{stem}-disk1.vmdk"),
    ]
}

/// Where the members go and what the head says.
struct Layout {
    package: Package,
    /// Descriptor, manifest and disk member names.
    names: [String; 3],
    capacity: u64,
    mtime: u64,
    /// The descriptor's length in an OVA (see [`DiskFile::size_width`]).
    descriptor_len: Option<usize>,
    /// Where the disk member's bytes start: the head's length.
    data_offset: u64,
}

/// The VMDK member's digest and length so far.
struct Tally {
    hasher: Option<Hasher>,
    bytes: u64,
}

impl PackageWriter {
    /// Starts the package at `out`'s primary target (the `.ova`, or the `.ovf` beside which
    /// the manifest and disk go); `req` describes the disk (format vmdk).
    ///
    /// # Errors
    /// Member names too long for tar, invalid VMDK options, failure creating the files.
    pub fn new(
        req: &CreateRequest<'_>,
        package: Package,
        form: Form,
        out: &mut OutputSet,
    ) -> Result<Self> {
        let names = file_names(out.primary_path());
        if form == Form::Ova
            && let Some(long) = names.iter().find(|n| n.len() > MAX_MEMBER_NAME)
        {
            return Err(PackageError::NameTooLong { name: long.clone() }.into());
        }
        let capacity = req.virtual_size.next_multiple_of(BLOCK);
        let descriptor_len = (form == Form::Ova).then(|| {
            (package.machine)
                .render(&disk_file(&names, 0, capacity, SIZE_WIDTH))
                .len()
        });
        let placeholder = "0".repeat(package.digest.hex_len());
        let manifest_len = manifest::render(
            package.digest,
            &[(&names[0], &placeholder), (&names[2], &placeholder)],
        )
        .len();
        let (file, manifest_file, disk, data_offset) = match form {
            Form::Ova => {
                let descriptor_len = descriptor_len.unwrap_or_default() as u64;
                let data_offset = 3 * BLOCK + padded(descriptor_len) + padded(manifest_len as u64);
                let mut file = out.create_primary()?;
                file.seek(SeekFrom::Start(data_offset))?;
                let disk = file.try_clone()?;
                (file, None, disk, data_offset)
            }
            Form::Files => {
                let file = out.create_primary()?;
                let manifest_file = out.create_sibling(&names[1])?;
                let disk = out.create_sibling(&names[2])?;
                (file, Some(manifest_file), disk, 0)
            }
        };
        let tally = Arc::new(Mutex::new(Tally {
            hasher: Some(package.digest.hasher()),
            bytes: 0,
        }));
        let sink = TallyWriter {
            file: disk,
            tally: Arc::clone(&tally),
        };
        let vmdk = disk::vmdk::create_stream_into(req, Box::new(sink), &names[2])?;
        let layout = Layout {
            package,
            names,
            capacity,
            mtime: req.ctx.epoch,
            descriptor_len,
            data_offset,
        };
        Ok(Self {
            vmdk,
            tally,
            file,
            manifest_file,
            layout,
        })
    }
}

impl Layout {
    /// The descriptor and the manifest of a disk of `disk_len` bytes.
    fn descriptor_and_manifest(
        &self,
        disk_len: u64,
        disk_digest: &str,
    ) -> Result<(String, String)> {
        let [ovf_name, _, disk_name] = &self.names;
        let width = self.descriptor_len.map_or(0, |_| SIZE_WIDTH);
        let disk = disk_file(&self.names, disk_len, self.capacity, width);
        let descriptor = self.package.machine.render(&disk);
        if let Some(reserved) = self.descriptor_len
            && descriptor.len() != reserved
        {
            return Err(PackageError::DescriptorLength {
                reserved,
                found: descriptor.len(),
            }
            .into());
        }
        let alg = self.package.digest;
        let descriptor_digest = manifest::digest_hex(alg, descriptor.as_bytes());
        let manifest = manifest::render(
            alg,
            &[(ovf_name, &descriptor_digest), (disk_name, disk_digest)],
        );
        Ok((descriptor, manifest))
    }

    /// The archive's head: descriptor and manifest members and the disk's tar header.
    fn head(&self, descriptor: &str, manifest: &str, disk_len: u64) -> Result<Vec<u8>> {
        let [ovf_name, mf_name, disk_name] = &self.names;
        let mut head = Vec::new();
        for (name, bytes) in [
            (ovf_name, descriptor.as_bytes()),
            (mf_name, manifest.as_bytes()),
        ] {
            head.extend_from_slice(&self.header(name, bytes.len() as u64)?);
            head.extend_from_slice(bytes);
            head.resize(head.len().next_multiple_of(512), 0);
        }
        head.extend_from_slice(&self.header(disk_name, disk_len)?);
        Ok(head)
    }

    /// A ustar header for a regular file.
    fn header(&self, name: &str, size: u64) -> Result<[u8; 512]> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name)?;
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        Ok(*h.as_bytes())
    }
}

impl DiskWriter for PackageWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        self.vmdk.write_extent(extent)
    }

    fn finish(self: Box<Self>) -> Result<WriteReport> {
        let PackageWriter {
            vmdk,
            tally,
            file,
            manifest_file,
            layout,
        } = *self;
        let report = vmdk.finish()?;
        let (hasher, disk_len) = {
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            (tally.hasher.take(), tally.bytes)
        };
        let digest = hasher.map(Hasher::finish_hex).unwrap_or_default();
        let (descriptor, manifest) = layout.descriptor_and_manifest(disk_len, &digest)?;
        if let Some(manifest_file) = manifest_file {
            file.write_all_at(descriptor.as_bytes(), 0)?;
            manifest_file.write_all_at(manifest.as_bytes(), 0)?;
            return Ok(report);
        }
        let head = layout.head(&descriptor, &manifest, disk_len)?;
        debug_assert_eq!(head.len() as u64, layout.data_offset);
        file.write_all_at(&head, 0)?;
        // Pad the disk member to a block, then two zero blocks end the archive.
        let end = layout.data_offset + disk_len;
        let tail = usize::try_from(padded(disk_len) - disk_len + 2 * BLOCK).expect("< 2 KiB");
        file.write_all_at(&vec![0u8; tail], end)?;
        Ok(report)
    }
}

/// Writes the VMDK member in order, hashing and counting what it writes.
struct TallyWriter {
    file: File,
    tally: Arc<Mutex<Tally>>,
}

impl Write for TallyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = tally.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        tally.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn disk_file(names: &[String; 3], size: u64, capacity: u64, size_width: usize) -> DiskFile {
    DiskFile {
        href: names[2].clone(),
        size,
        capacity,
        size_width,
    }
}

/// `len` rounded up to whole tar blocks.
fn padded(len: u64) -> u64 {
    len.next_multiple_of(BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::guest_os;
    use crate::container::ovf::Target;

    fn layout() -> Layout {
        let machine = Machine {
            name: "a".into(),
            description: None,
            product: None,
            eula: None,
            os: *guest_os("linux-64").unwrap(),
            cpus: 1,
            memory_mib: 512,
            efi: false,
            target: Target::Vmware,
            bus: None,
            adapters: Vec::new(),
            properties: Vec::new(),
        };
        Layout {
            package: Package {
                machine,
                digest: Algorithm::Sha256,
            },
            names: file_names(Path::new("a.ova")),
            capacity: 1 << 20,
            mtime: 946_684_800,
            descriptor_len: None,
            data_offset: 0,
        }
    }

    #[test]
    fn members_over_8_gib_get_a_base_256_size() {
        // ustar's 11 octal digits end below 8 GiB; larger sizes use the GNU binary form,
        // which GNU tar, bsdtar and Python's tarfile read.
        let h = layout().header("a-disk1.vmdk", 9 << 30).unwrap();
        assert_eq!(h[124] & 0x80, 0x80);
        let parsed = tar::Header::from_byte_slice(&h);
        assert_eq!(parsed.size().unwrap(), 9 << 30);
        assert_eq!(&h[257..263], b"ustar\0");
    }

    #[test]
    fn head_is_block_aligned_and_ends_with_the_disk_header() {
        let l = layout();
        let head = l.head("<x/>", "SHA256(a.ovf)= 00\n", 1000).unwrap();
        assert_eq!(head.len(), 3 * 512 + 512 + 512);
        assert_eq!(&head[head.len() - 512..][..12], b"a-disk1.vmdk");
    }
}
