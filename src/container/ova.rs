//! The OVA package (DSP0243 §5.3): a plain ustar archive holding, in this order, the
//! descriptor `NAME.ovf`, the manifest `NAME.mf` and the disk `NAME-disk1.vmdk`.
//!
//! The writer reserves the archive's head (descriptor and manifest members, the disk's tar
//! header), streams the streamOptimized VMDK into its member while hashing it, and writes the
//! head and the end-of-archive blocks when the disk is complete. RAM: the VMDK writer's
//! batches plus the descriptor. Every member is a regular file, mode 0644, owner 0:0, mtime
//! from the build context, so the same disk gives the same bytes.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, PoisonError};

use super::manifest::{self, Algorithm, Hasher};
use super::ovf::{DiskFile, Machine};
use crate::disk::{self, CreateRequest, DiskWriter, Extent, WriteReport};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;

/// Tar block size.
const BLOCK: u64 = 512;
/// The longest member name a ustar header holds without a directory prefix.
pub const MAX_MEMBER_NAME: usize = 100;

/// Why an OVA cannot be written.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum OvaError {
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

impl From<OvaError> for Error {
    fn from(e: OvaError) -> Self {
        let kind = match e {
            OvaError::DescriptorLength { .. } => ErrorKind::Io,
            OvaError::NameTooLong { .. } => ErrorKind::InvalidInput,
        };
        Error::new(kind, e)
    }
}

/// What goes into an OVA besides the disk's bytes.
#[derive(Debug, Clone)]
pub struct Package {
    /// The machine the descriptor describes.
    pub machine: Machine,
    /// Manifest digest.
    pub digest: Algorithm,
}

/// Writes an OVA while the disk is read: a [`DiskWriter`] for the whole package.
pub struct OvaWriter {
    vmdk: Box<dyn DiskWriter>,
    tally: Arc<Mutex<Tally>>,
    file: File,
    layout: Layout,
}

/// Where the members go and what the head says.
struct Layout {
    package: Package,
    /// Descriptor, manifest and disk member names.
    names: [String; 3],
    capacity: u64,
    mtime: u64,
    descriptor_len: usize,
    /// Where the disk member's bytes start: the head's length.
    data_offset: u64,
}

/// The VMDK member's digest and length so far.
struct Tally {
    hasher: Option<Hasher>,
    bytes: u64,
}

impl OvaWriter {
    /// Starts the OVA at `out`'s primary target; `req` describes the disk (format vmdk).
    ///
    /// # Errors
    /// Member names too long for tar, invalid VMDK options, failure creating the file.
    pub fn new(req: &CreateRequest<'_>, package: Package, out: &mut OutputSet) -> Result<Self> {
        let stem = out
            .primary_path()
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let names = [
            format!("{stem}.ovf"),
            format!("{stem}.mf"),
            format!("{stem}-disk1.vmdk"),
        ];
        if let Some(long) = names.iter().find(|n| n.len() > MAX_MEMBER_NAME) {
            return Err(OvaError::NameTooLong { name: long.clone() }.into());
        }
        let capacity = req.virtual_size.next_multiple_of(BLOCK);
        let descriptor_len = package
            .machine
            .render(&disk_file(&names, 0, capacity))
            .len();
        let placeholder = "0".repeat(package.digest.hex_len());
        let manifest_len = manifest::render(
            package.digest,
            &[(&names[0], &placeholder), (&names[2], &placeholder)],
        )
        .len();
        let data_offset = 3 * BLOCK + padded(descriptor_len as u64) + padded(manifest_len as u64);
        let mut file = out.create_primary()?;
        file.seek(SeekFrom::Start(data_offset))?;
        let tally = Arc::new(Mutex::new(Tally {
            hasher: Some(package.digest.hasher()),
            bytes: 0,
        }));
        let sink = TallyWriter {
            file: file.try_clone()?,
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
            layout,
        })
    }
}

impl Layout {
    /// The archive's head: descriptor and manifest members and the disk's tar header.
    fn head(&self, disk_len: u64, disk_digest: &str) -> Result<Vec<u8>> {
        let [ovf_name, mf_name, disk_name] = &self.names;
        let descriptor =
            (self.package.machine).render(&disk_file(&self.names, disk_len, self.capacity));
        if descriptor.len() != self.descriptor_len {
            return Err(OvaError::DescriptorLength {
                reserved: self.descriptor_len,
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

impl DiskWriter for OvaWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        self.vmdk.write_extent(extent)
    }

    fn finish(self: Box<Self>) -> Result<WriteReport> {
        let OvaWriter {
            vmdk,
            tally,
            file,
            layout,
        } = *self;
        let report = vmdk.finish()?;
        let (hasher, disk_len) = {
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            (tally.hasher.take(), tally.bytes)
        };
        let digest = hasher.map(Hasher::finish_hex).unwrap_or_default();
        let head = layout.head(disk_len, &digest)?;
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

fn disk_file(names: &[String; 3], size: u64, capacity: u64) -> DiskFile {
    DiskFile {
        href: names[2].clone(),
        size,
        capacity,
    }
}

/// `len` rounded up to whole tar blocks.
fn padded(len: u64) -> u64 {
    len.next_multiple_of(BLOCK)
}
