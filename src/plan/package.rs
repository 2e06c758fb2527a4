//! ova/ovf outputs in a build: from the checked spec to what the descriptor says
//! ([`package`]), and a [`PackageRun`] that writes one package across the passes over the
//! appliance's disks (every disk goes into every package, in spec order).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::container::Kind;
use super::{Commit, Plan, locate};

use crate::container::cloud_init;
use crate::container::manifest::Algorithm;
use crate::container::ovf::{Adapter, Machine, Product};
use crate::container::package::{Form, Package, PackageIso, PackageWriter, file_names};
use crate::container::signature::PackageSigner;
use crate::context::BuildContext;
use crate::disk::{CreateRequest, DiskFormat, DiskWriter, KvOptions, WriteReport};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;
use crate::seed;
use crate::spec::model::{Controller, Firmware, ManifestDigest};
use crate::spec::{CdromSource, ValidCdrom, ValidOutput, ValidSpec};

/// Largest licence text kiln puts into a descriptor.
const MAX_EULA_BYTES: u64 = 1 << 20;

/// The package description of output `o` for disks of `sizes` bytes (spec order).
///
/// # Errors
/// The licence file cannot be read, is larger than 1 MiB or is not UTF-8.
pub fn package(
    spec: &ValidSpec,
    o: &ValidOutput,
    sizes: &[u64],
    isos: Vec<PackageIso>,
) -> Result<Package> {
    let m = &spec.machine;
    let eula = m.eula.as_deref().map(read_eula).transpose()?;
    let product =
        (m.vendor.is_some() || m.product_url.is_some() || spec.version.is_some()).then(|| {
            Product {
                name: spec.name.clone(),
                vendor: m.vendor.clone(),
                version: spec.version.clone(),
                url: m.product_url.clone(),
            }
        });
    let machine = Machine {
        name: spec.name.clone(),
        description: spec.description.clone(),
        product,
        eula,
        os: m.os,
        cpus: m.cpus,
        memory_mib: m.memory_mib,
        efi: m.firmware == Firmware::Efi,
        target: o.target.target,
        hardware: o.target.hardware,
        capacity_units: o.target.capacity_units,
        adapters: (m.networks.iter().zip(&m.nic_settings))
            .map(|((network, adapter), (mac, connected))| Adapter {
                network: network.clone(),
                model: adapter.map(|a| a.nic()).or(o.target.nic),
                mac: mac.clone(),
                connected: *connected,
            })
            .collect(),
        properties: match &spec.ovf_properties {
            Some(contents) => cloud_init::properties(contents)?,
            None => Vec::new(),
        }
        .into_iter()
        .map(Into::into)
        .chain(spec.product.properties.iter().cloned())
        .collect(),
        sections: spec.product.sections.clone(),
        options: spec.product.options.clone(),
        usb: spec.devices.usb,
        video_kib: spec.devices.video_kib,
        secure_boot: spec.devices.secure_boot,
    };
    let digest = match o.manifest {
        ManifestDigest::Sha1 => Algorithm::Sha1,
        ManifestDigest::Sha256 => Algorithm::Sha256,
        ManifestDigest::Sha512 => Algorithm::Sha512,
    };
    let disks = (spec.disks.iter().zip(sizes))
        .map(|(d, size)| (*size, d.controller.map(Controller::bus)))
        .collect();
    Ok(Package {
        machine,
        digest,
        disks,
        isos,
    })
}

/// The VMDK options of packaged disk `disk`: a SCSI disk says so in its own descriptor.
fn vmdk_options(spec: &ValidSpec, o: &ValidOutput, disk: usize) -> KvOptions {
    let mut options = o.options.clone();
    let bus = (spec.disks[disk].controller).map_or(o.target.target.default_bus(), Controller::bus);
    if let Some(adapter) = bus.vmdk_adapter()
        && options.get("adapter_type").is_none()
    {
        options.set("adapter_type", adapter);
    }
    options
}

/// The signer of output `o`, when its package is signed.
///
/// # Errors
/// The key or certificate cannot be read, or they do not belong together.
pub(super) fn signer(o: &ValidOutput) -> Result<Option<PackageSigner>> {
    (o.sign.as_ref())
        .map(|s| PackageSigner::load(&s.key, &s.cert))
        .transpose()
}

impl Plan {
    /// Loads every package's signing key and certificate, so a bad pair writes nothing.
    ///
    /// # Errors
    /// The signer's refusal, located at the output's `sign` key.
    pub(super) fn preflight_signers(&self) -> Result<()> {
        for o in &self.outputs {
            if let Err(e) = signer(o) {
                let key = format!("outputs[{}].sign", o.index);
                let span = o.sign.as_ref().and_then(|s| s.span);
                return Err(Error::new(
                    e.kind(),
                    locate(&self.spec.path, span, &key, &e.to_string()),
                ));
            }
        }
        Ok(())
    }
}

/// One ova/ovf output being written across the disk passes.
pub(super) struct PackageRun {
    /// Position in the plan's outputs.
    pub index: usize,
    /// The `.ova` or `.ovf`.
    pub target: PathBuf,
    form: Form,
    writer: PackageWriter,
    set: OutputSet,
    /// Every disk's size; the first (the boot disk's) is the artefact's `virtual_size`.
    sizes: Vec<u64>,
    /// Whether the package has a `.cert`.
    signed: bool,
    /// The CD-ROM drives' media, copied in after the disks.
    media: Vec<(String, Medium)>,
}

/// A CD-ROM's medium, ready to be copied into a package.
enum Medium {
    /// Built in memory (the seed ISO).
    Bytes(Vec<u8>),
    /// A file of this length.
    File(PathBuf, u64),
}

impl Medium {
    /// The medium of `cdrom`: the seed ISO is the same bytes as `seed-iso` beside the disks.
    fn of(cdrom: &ValidCdrom, build: &BuildContext) -> Result<Self> {
        match &cdrom.source {
            CdromSource::Seed(contents) => Ok(Medium::Bytes(seed::seed_iso_bytes(
                contents,
                &build.derive("seed-iso"),
            )?)),
            CdromSource::File(path) => {
                let meta = std::fs::metadata(path).map_err(|e| Error::io(e).with_path(path))?;
                Ok(Medium::File(path.clone(), meta.len()))
            }
        }
    }

    fn len(&self) -> u64 {
        match self {
            Medium::Bytes(b) => b.len() as u64,
            Medium::File(_, len) => *len,
        }
    }

    /// Copies the medium into the package as its next member.
    fn copy_into(&self, writer: &mut PackageWriter, set: &mut OutputSet) -> Result<()> {
        match self {
            Medium::Bytes(b) => writer.copy_member(&mut b.as_slice(), set).map(drop),
            Medium::File(path, len) => {
                let file = std::fs::File::open(path).map_err(|e| Error::io(e).with_path(path))?;
                // One byte more than expected shows a file that grew.
                let copied = writer.copy_member(&mut file.take(len + 1), set)?;
                if copied == *len {
                    return Ok(());
                }
                let message =
                    format!("changed while the build ran: {copied} bytes now, {len} before");
                Err(Error::new(ErrorKind::InvalidInput, message).with_path(path))
            }
        }
    }
}

impl PackageRun {
    /// Starts output `o` (at `index` of the plan's outputs) in `out_dir` for disks of
    /// `sizes` bytes.
    ///
    /// # Errors
    /// As [`package`] and [`PackageWriter::new`].
    pub fn start(
        spec: &ValidSpec,
        build: &BuildContext,
        o: &ValidOutput,
        index: usize,
        out_dir: &Path,
        sizes: &[u64],
    ) -> Result<Self> {
        let target = out_dir.join(&o.file);
        let Kind::Package(form) = super::container::kind(o.container) else {
            return Err(Error::new(
                ErrorKind::Io,
                format!("output `{}` is not a package", o.name),
            ));
        };
        let mut set = OutputSet::new(&target, true);
        let ctx = build.derive(&o.name);
        let signer = signer(o)?;
        let signed = signer.is_some();
        let media = (spec.cdroms.iter())
            .map(|c| Ok((c.suffix.clone(), Medium::of(c, build)?)))
            .collect::<Result<Vec<_>>>()?;
        let isos = (media.iter())
            .map(|(suffix, m)| PackageIso {
                suffix: suffix.clone(),
                len: m.len(),
            })
            .collect();
        let writer = PackageWriter::new(
            package(spec, o, sizes, isos)?,
            form,
            ctx.epoch,
            signer,
            &mut set,
        )
        .map_err(|e| e.with_path(&target))?;
        Ok(Self {
            index,
            target,
            form,
            writer,
            set,
            sizes: sizes.to_vec(),
            signed,
            media,
        })
    }

    /// Bytes of the disks before disk `disk`: where its pass starts in the package.
    pub fn bytes_before(&self, disk: usize) -> u64 {
        self.sizes.iter().take(disk).sum()
    }

    /// The lane that writes disk `disk` (of `virtual_size` bytes) into the package.
    ///
    /// # Errors
    /// Invalid VMDK options, I/O.
    pub fn disk_lane(
        &mut self,
        spec: &ValidSpec,
        build: &BuildContext,
        o: &ValidOutput,
        disk: usize,
        virtual_size: u64,
    ) -> Result<Box<dyn DiskWriter>> {
        // Each disk has ids of its own (the VMDK's CID and UUID).
        let name = &spec.disks[disk].name;
        let ctx = build.derive(&o.name).derive(name);
        let options = vmdk_options(spec, o, disk);
        let req = CreateRequest {
            format: DiskFormat::Vmdk,
            virtual_size,
            options: &options,
            compress: false,
            ctx: &ctx,
        };
        (self.writer.disk_writer(&req, &mut self.set)).map_err(|e| e.with_path(&self.target))
    }

    /// Records the disk whose lane has finished.
    ///
    /// # Errors
    /// I/O.
    pub fn disk_done(&mut self, report: WriteReport) -> Result<()> {
        self.writer
            .disk_done(report)
            .map_err(|e| e.with_path(&self.target))
    }

    /// Writes the descriptor and manifest; returns what is left: hashing and committing.
    ///
    /// # Errors
    /// I/O.
    pub fn finish(mut self, disks: usize) -> Result<Commit> {
        for (_, medium) in &self.media {
            (medium.copy_into(&mut self.writer, &mut self.set))
                .map_err(|e| e.with_path(&self.target))?;
        }
        self.writer
            .finish()
            .map_err(|e| e.with_path(&self.target))?;
        let extras = match self.form {
            Form::Files => {
                let names = file_names(&self.target, disks)
                    .with_isos(self.media.iter().map(|(s, _)| s.as_str()));
                let cert = self.signed.then_some(names.cert.clone());
                (names.others().into_iter().chain(cert))
                    .map(|n| self.target.with_file_name(n))
                    .collect()
            }
            Form::Ova => Vec::new(),
        };
        Ok(Commit {
            target: self.target,
            virtual_size: self.sizes.first().copied().unwrap_or_default(),
            streamed: None,
            extras,
            triplet: Vec::new(),
            set: self.set,
        })
    }
}

fn read_eula(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let mut bytes = Vec::new();
    (file.take(MAX_EULA_BYTES + 1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(e).with_path(path))?;
    if bytes.len() as u64 > MAX_EULA_BYTES {
        let e = Error::new(ErrorKind::InvalidInput, "licence text is larger than 1 MiB");
        return Err(e.with_path(path));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Error::new(
            ErrorKind::InvalidInput,
            format!("licence text is not UTF-8 at byte {at:#x}"),
        )
        .with_path(path)
    })
}
