//! OVF packages (DSP0243 §5): the descriptor `NAME.ovf`, the manifest `NAME.mf` and the disks
//! `NAME-disk1.vmdk`, `NAME-disk2.vmdk`, ... (streamOptimized), either as files side by side
//! ([`Form::Files`], Glance's `ovf`) or in a plain ustar archive in that order ([`Form::Ova`]).
//!
//! Each VMDK is written front to back and hashed as it is written. For an OVA the writer
//! first reserves the archive's head (descriptor and manifest members), streams each VMDK
//! into its member after a reserved tar header (written once the member's length is known),
//! and writes the head and the end-of-archive blocks when the last disk is complete. RAM:
//! the VMDK writer's batches plus the descriptor. Tar framing is [`super::tar`]'s, so the
//! same disk gives the same bytes.
//!
//! The descriptor comes from a [`Describe`]: kiln's own [`Machine`] for a build, or another
//! tool's descriptor with new file and disk attributes for `kiln ova --from-ovf`
//! ([`super::ovf_rewrite`]), whose members may also be files copied unchanged
//! ([`PackageWriter::copy_member`]: an ISO, NVRAM) under names of its own.
//!
//! A signed package also has `NAME.cert` (the manifest's RSA signature and the certificate
//! chain, [`PackageSigner`]) after the manifest, as `kiln sign` places it: the head reserves
//! its member, whose length does not depend on what is signed, and the signature is made
//! once the manifest is final. PKCS#1 v1.5 signatures are deterministic, so a signed build
//! is as reproducible as an unsigned one.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::manifest::{self, Algorithm, Hasher};
use super::ovf::{Bus, DiskFile, IsoFile, Machine, SIZE_WIDTH};
use super::signature::PackageSigner;
pub use super::tar::MAX_MEMBER_NAME;
use super::tar::{self, TAR_BLOCK as BLOCK, TAR_END, padded};
use crate::disk::{self, CreateRequest, DiskWriter, WriteReport};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;

/// Why a package cannot be written.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The certificate file changed length after the disk was written (a bug in kiln).
    #[error("certificate file is {found} bytes, but {reserved} were reserved for it")]
    CertLength {
        /// Reserved bytes.
        reserved: usize,
        /// Final length.
        found: usize,
    },
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
            PackageError::CertLength { .. } | PackageError::DescriptorLength { .. } => {
                ErrorKind::Io
            }
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

/// What goes into a package besides the disks' bytes.
#[derive(Debug, Clone)]
pub struct Package {
    /// The machine the descriptor describes.
    pub machine: Machine,
    /// Manifest digest.
    pub digest: Algorithm,
    /// Each disk's guest-visible size in bytes and controller, in guest order.
    pub disks: Vec<(u64, Option<Bus>)>,
    /// ISO images for CD-ROM drives, copied in after the disks
    /// ([`PackageWriter::copy_member`]), in drive order.
    pub isos: Vec<PackageIso>,
}

/// An ISO image a package carries for a CD-ROM drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageIso {
    /// What follows the package's stem in the member name: `seed` → `NAME-seed.iso`.
    pub suffix: String,
    /// Its length in bytes.
    pub len: u64,
}

/// A package's file names: the descriptor, the manifest and one VMDK per disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `NAME.ovf`.
    pub descriptor: String,
    /// `NAME.mf`.
    pub manifest: String,
    /// `NAME.cert`, written when the package is signed.
    pub cert: String,
    /// `NAME-disk1.vmdk`, `NAME-disk2.vmdk`, ...
    pub disks: Vec<String>,
}

impl Names {
    /// These names with members `NAME-SUFFIX.iso` after the disks, one per suffix.
    pub fn with_isos<'a>(mut self, suffixes: impl IntoIterator<Item = &'a str>) -> Names {
        let stem = self.descriptor.trim_end_matches(".ovf").to_string();
        (self.disks).extend(suffixes.into_iter().map(|s| format!("{stem}-{s}.iso")));
        self
    }

    /// The manifest and the disks: the files beside the descriptor.
    pub fn others(&self) -> Vec<String> {
        std::iter::once(self.manifest.clone())
            .chain(self.disks.iter().cloned())
            .collect()
    }
}

/// The file names of a package of `disks` disks whose primary target (the `.ova` or `.ovf`)
/// is `target`.
pub fn file_names(target: &Path, disks: usize) -> Names {
    let stem = target
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Names {
        descriptor: format!("{stem}.ovf"),
        manifest: format!("{stem}.mf"),
        cert: format!("{stem}.cert"),
        disks: (1..=disks)
            .map(|i| format!("{stem}-disk{i}.vmdk"))
            .collect(),
    }
}

/// What a package's descriptor needs of a member once it is written (zero before).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// The member's length in bytes (`ovf:size`).
    pub len: u64,
    /// Bytes of the disk that hold data (`ovf:populatedSize`), when known.
    pub populated: Option<u64>,
}

/// Writes a package's descriptor from what was written of its members.
pub trait Describe: Send {
    /// The descriptor for members `names`, of which `written` tells what was written (all
    /// zero before they are). In [`Form::Ova`] its length must not depend on `written`: the
    /// archive's head is reserved before the members are written.
    ///
    /// # Errors
    /// A descriptor that cannot be written.
    fn describe(&self, names: &[String], written: &[Written], form: Form) -> Result<String>;
}

/// Form, names and digest of a package being started.
#[derive(Debug, Clone)]
pub struct Start {
    /// How the files are stored.
    pub form: Form,
    /// Tar headers' mtime.
    pub mtime: u64,
    /// Manifest digest.
    pub digest: Algorithm,
    /// Descriptor, manifest, certificate and member names (`disks`: every member, in
    /// References order).
    pub names: Names,
}

/// kiln's own descriptor of a [`Machine`] with its disks and CD-ROM images.
struct MachineDescriptor {
    machine: Machine,
    /// Each disk's guest-visible size in bytes and controller.
    disks: Vec<(u64, Option<Bus>)>,
    /// Each ISO's length in bytes.
    isos: Vec<u64>,
}

impl Describe for MachineDescriptor {
    fn describe(&self, names: &[String], written: &[Written], form: Form) -> Result<String> {
        let width = match form {
            Form::Ova => SIZE_WIDTH,
            Form::Files => 0,
        };
        let members = names.iter().zip(written);
        let files: Vec<DiskFile> = (members.clone().zip(&self.disks))
            .map(|((href, w), (capacity, bus))| DiskFile {
                href: href.clone(),
                size: w.len,
                capacity: capacity.next_multiple_of(BLOCK),
                size_width: width,
                bus: *bus,
            })
            .collect();
        let isos: Vec<IsoFile> = (members.skip(self.disks.len()).zip(&self.isos))
            .map(|((href, w), len)| IsoFile {
                href: href.clone(),
                size: w.len,
                capacity: *len,
                size_width: width,
            })
            .collect();
        Ok(self.machine.render(&files, &isos))
    }
}

/// Writes a package while its disks are read, one after the other: [`PackageWriter::disk_writer`]
/// gives the [`DiskWriter`] of the next disk, [`PackageWriter::disk_done`] records it once
/// that writer has finished, and [`PackageWriter::finish`] writes the descriptor and manifest.
pub struct PackageWriter {
    /// The OVA, or the descriptor file.
    file: File,
    /// The manifest file ([`Form::Files`]).
    manifest_file: Option<File>,
    /// The certificate file ([`Form::Files`], signed).
    cert_file: Option<File>,
    layout: Layout,
    /// What was written of each member so far, and its manifest digest.
    done: Vec<(Written, String)>,
    /// Whether a disk's writer has been handed out and not yet reported back.
    open: bool,
    /// In an OVA, where the next disk member's tar header goes.
    next_header: u64,
}

/// Where the members go and what the head says.
struct Layout {
    form: Form,
    describe: Box<dyn Describe>,
    digest: Algorithm,
    names: Names,
    mtime: u64,
    /// The descriptor's length in an OVA (see [`DiskFile::size_width`]).
    descriptor_len: Option<usize>,
    /// Signs the manifest, and the length of the certificate file it writes.
    signer: Option<(PackageSigner, usize)>,
}

impl PackageWriter {
    /// Starts the package at `out`'s primary target (the `.ova`, or the `.ovf` beside which
    /// the manifest and disks go), signed by `signer` when given; tar headers carry `mtime`.
    ///
    /// # Errors
    /// Member names too long for tar, failure creating the files.
    pub fn new(
        package: Package,
        form: Form,
        mtime: u64,
        signer: Option<PackageSigner>,
        out: &mut OutputSet,
    ) -> Result<Self> {
        let names = file_names(out.primary_path(), package.disks.len())
            .with_isos(package.isos.iter().map(|i| i.suffix.as_str()));
        let digest = package.digest;
        let describe = Box::new(MachineDescriptor {
            machine: package.machine,
            disks: package.disks,
            isos: package.isos.iter().map(|i| i.len).collect(),
        });
        let start = Start {
            form,
            mtime,
            digest,
            names,
        };
        Self::with_descriptor(describe, start, signer, out)
    }

    /// Starts a package whose descriptor `describe` writes and whose members (disks, or
    /// files copied unchanged) are `start.names.disks`, in that order.
    ///
    /// # Errors
    /// Member names too long for tar, the descriptor's refusal, failure creating the files.
    pub fn with_descriptor(
        describe: Box<dyn Describe>,
        start: Start,
        signer: Option<PackageSigner>,
        out: &mut OutputSet,
    ) -> Result<Self> {
        let Start {
            form,
            mtime,
            digest,
            names,
        } = start;
        if form == Form::Ova {
            let mut all = [&names.descriptor, &names.manifest, &names.cert]
                .into_iter()
                .chain(&names.disks);
            if let Some(long) = all.find(|n| n.len() > MAX_MEMBER_NAME) {
                return Err(PackageError::NameTooLong { name: long.clone() }.into());
            }
        }
        let mut layout = Layout {
            form,
            describe,
            digest,
            names,
            mtime,
            descriptor_len: None,
            signer: None,
        };
        let placeholder = "0".repeat(layout.digest.hex_len());
        let placeholders = vec![(Written::default(), placeholder); layout.names.disks.len()];
        let (descriptor, manifest) = layout.descriptor_and_manifest(&placeholders)?;
        if let Some(signer) = signer {
            let len = signer
                .cert_text(manifest.as_bytes(), &layout.names.manifest)?
                .len();
            layout.signer = Some((signer, len));
        }
        let cert_len = layout.signer.as_ref().map(|(_, len)| *len);
        let file = out.create_primary()?;
        let (manifest_file, cert_file, next_header) = match form {
            Form::Ova => {
                layout.descriptor_len = Some(descriptor.len());
                let cert = cert_len.map_or(0, |len| BLOCK + padded(len as u64));
                let head = 2 * BLOCK
                    + padded(descriptor.len() as u64)
                    + padded(manifest.len() as u64)
                    + cert;
                (None, None, head)
            }
            Form::Files => {
                let manifest = out.create_sibling(&layout.names.manifest)?;
                let cert = match cert_len {
                    Some(_) => Some(out.create_sibling(&layout.names.cert)?),
                    None => None,
                };
                (Some(manifest), cert, 0)
            }
        };
        Ok(Self {
            file,
            manifest_file,
            cert_file,
            layout,
            done: Vec::new(),
            open: false,
            next_header,
        })
    }

    /// The writer of the next disk: a streamOptimized VMDK described by `req`.
    ///
    /// # Errors
    /// More disks than the package was made for, invalid VMDK options, I/O.
    pub fn disk_writer(
        &mut self,
        req: &CreateRequest<'_>,
        out: &mut OutputSet,
    ) -> Result<Box<dyn DiskWriter>> {
        let (name, sink) = self.member_sink(out)?;
        self.open = true;
        disk::create_stream(req, Box::new(sink), &name)
    }

    /// Copies the next member unchanged from `src` (a file the package carries besides its
    /// disks: an ISO, NVRAM); returns its length.
    ///
    /// # Errors
    /// More members than the package was made for, a disk still being written, I/O.
    pub fn copy_member(&mut self, src: &mut dyn Read, out: &mut OutputSet) -> Result<u64> {
        if self.open {
            return Err(Error::new(
                ErrorKind::Io,
                "a package disk is still being written",
            ));
        }
        let (_, mut sink) = self.member_sink(out)?;
        std::io::copy(src, &mut sink)?;
        sink.flush()?;
        let len = sink.bytes;
        self.record(sink, None)?;
        Ok(len)
    }

    /// The next member's name and the writer of its bytes.
    fn member_sink(&mut self, out: &mut OutputSet) -> Result<(String, TallyWriter)> {
        let index = self.done.len();
        let Some(name) = self.layout.names.disks.get(index).cloned() else {
            return Err(Error::new(
                ErrorKind::Io,
                "more disks than the package holds",
            ));
        };
        let file = match self.layout.form {
            Form::Ova => {
                let mut file = self.file.try_clone()?;
                file.seek(SeekFrom::Start(self.next_header + BLOCK))?;
                file
            }
            Form::Files => out.create_sibling(&name)?,
        };
        let sink = TallyWriter {
            file,
            hasher: self.layout.digest.hasher(),
            bytes: 0,
        };
        Ok((name, sink))
    }

    /// Records the disk whose writer has just finished with `report`; in an OVA, writes
    /// its tar header.
    ///
    /// # Errors
    /// No disk was being written, a report from another writer, I/O.
    pub fn disk_done(&mut self, report: WriteReport) -> Result<()> {
        self.disk_done_populated(report, None)
    }

    /// [`PackageWriter::disk_done`] for a disk of which `populated` bytes hold data (the
    /// descriptor's `ovf:populatedSize`, when it writes one).
    ///
    /// # Errors
    /// As [`PackageWriter::disk_done`].
    pub fn disk_done_populated(
        &mut self,
        report: WriteReport,
        populated: Option<u64>,
    ) -> Result<()> {
        let tally = report
            .sink
            .and_then(|sink| sink.downcast::<TallyWriter>().ok())
            .filter(|_| self.open);
        let Some(tally) = tally else {
            return Err(Error::new(
                ErrorKind::Io,
                "no package disk is being written",
            ));
        };
        self.open = false;
        self.record(*tally, populated)
    }

    /// Records the member `tally` has written; in an OVA, writes its tar header.
    fn record(&mut self, tally: TallyWriter, populated: Option<u64>) -> Result<()> {
        let TallyWriter {
            hasher, bytes: len, ..
        } = tally;
        if self.layout.form == Form::Ova {
            let name = &self.layout.names.disks[self.done.len()];
            self.file
                .write_all_at(&self.layout.header(name, len)?, self.next_header)?;
            self.next_header += BLOCK + padded(len);
        }
        self.done
            .push((Written { len, populated }, hasher.finish_hex()));
        Ok(())
    }

    /// Writes the descriptor and manifest (in an OVA: the head and the end-of-archive
    /// blocks). The caller syncs and renames the files through its [`OutputSet`].
    ///
    /// # Errors
    /// Disks missing, I/O.
    pub fn finish(self) -> Result<()> {
        if self.done.len() != self.layout.names.disks.len() || self.open {
            return Err(Error::new(
                ErrorKind::Io,
                "package finished before all its disks",
            ));
        }
        let (descriptor, manifest) = self.layout.descriptor_and_manifest(&self.done)?;
        let cert = self.layout.cert(&manifest)?;
        if let Some(manifest_file) = &self.manifest_file {
            self.file.write_all_at(descriptor.as_bytes(), 0)?;
            manifest_file.write_all_at(manifest.as_bytes(), 0)?;
            if let (Some(file), Some(cert)) = (&self.cert_file, &cert) {
                file.write_all_at(cert.as_bytes(), 0)?;
            }
            return Ok(());
        }
        let head = self.layout.head(&descriptor, &manifest, cert.as_deref())?;
        self.file.write_all_at(&head, 0)?;
        // The last disk's padding reads as zeros; two zero blocks end the archive.
        self.file.write_all_at(&TAR_END, self.next_header)?;
        Ok(())
    }
}

impl Layout {
    /// The descriptor and the manifest for disks of the given lengths and digests.
    fn descriptor_and_manifest(&self, disks: &[(Written, String)]) -> Result<(String, String)> {
        let written: Vec<Written> = disks.iter().map(|(w, _)| *w).collect();
        let descriptor = self
            .describe
            .describe(&self.names.disks, &written, self.form)?;
        if let Some(reserved) = self.descriptor_len
            && descriptor.len() != reserved
        {
            return Err(PackageError::DescriptorLength {
                reserved,
                found: descriptor.len(),
            }
            .into());
        }
        let alg = self.digest;
        let descriptor_digest = manifest::digest_hex(alg, descriptor.as_bytes());
        let entries: Vec<(&str, &str)> =
            std::iter::once((self.names.descriptor.as_str(), descriptor_digest.as_str()))
                .chain(
                    self.names
                        .disks
                        .iter()
                        .zip(disks)
                        .map(|(n, (_, d))| (n.as_str(), d.as_str())),
                )
                .collect();
        Ok((descriptor, manifest::render(alg, &entries)))
    }

    /// The certificate file for the final `manifest` (signed packages), as long as the one
    /// reserved.
    fn cert(&self, manifest: &str) -> Result<Option<String>> {
        let Some((signer, reserved)) = &self.signer else {
            return Ok(None);
        };
        let cert = signer.cert_text(manifest.as_bytes(), &self.names.manifest)?;
        if cert.len() != *reserved {
            let e = PackageError::CertLength {
                reserved: *reserved,
                found: cert.len(),
            };
            return Err(e.into());
        }
        Ok(Some(cert))
    }

    /// The archive's head: the descriptor, manifest and (signed) certificate members.
    fn head(&self, descriptor: &str, manifest: &str, cert: Option<&str>) -> Result<Vec<u8>> {
        let mut head = tar::member(&self.names.descriptor, descriptor.as_bytes(), self.mtime)?;
        head.extend(tar::member(
            &self.names.manifest,
            manifest.as_bytes(),
            self.mtime,
        )?);
        if let Some(cert) = cert {
            head.extend(tar::member(&self.names.cert, cert.as_bytes(), self.mtime)?);
        }
        Ok(head)
    }

    /// A ustar header for a regular file.
    fn header(&self, name: &str, size: u64) -> Result<[u8; 512]> {
        tar::header(name, size, self.mtime)
    }
}

/// Writes the VMDK member in order, hashing and counting what it writes; the VMDK writer
/// hands it back when it finishes.
struct TallyWriter {
    file: File,
    hasher: Hasher,
    bytes: u64,
}

impl Write for TallyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
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
            hardware: None,
            capacity_units: false,
            adapters: Vec::new(),
            properties: Vec::new(),
            sections: Vec::new(),
            options: Vec::new(),
            usb: None,
            video_kib: None,
            secure_boot: false,
        };
        Layout {
            form: Form::Ova,
            describe: Box::new(MachineDescriptor {
                machine,
                disks: vec![(1 << 20, None)],
                isos: Vec::new(),
            }),
            digest: Algorithm::Sha256,
            names: file_names(Path::new("a.ova"), 1),
            mtime: 946_684_800,
            descriptor_len: None,
            signer: None,
        }
    }

    #[test]
    fn head_is_block_aligned() {
        let head = layout().head("<x/>", "SHA256(a.ovf)= 00\n", None).unwrap();
        assert_eq!(head.len(), 4 * 512);
        assert_eq!(&head[..5], b"a.ovf");
        assert_eq!(&head[1024..1028], b"a.mf");
    }

    #[test]
    fn descriptor_length_does_not_depend_on_disk_sizes() {
        let l = layout();
        let w = |len| Written {
            len,
            populated: None,
        };
        let short = l
            .descriptor_and_manifest(&[(w(1), "0".repeat(64))])
            .unwrap();
        let long = l
            .descriptor_and_manifest(&[(w(u64::MAX), "f".repeat(64))])
            .unwrap();
        assert_eq!(short.0.len(), long.0.len());
        assert_eq!(short.1.len(), long.1.len());
    }
}
