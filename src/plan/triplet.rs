//! The Glance triplet: `NAME.ami` (the root partition's bytes, cropped from the disk in its
//! single pass), then `NAME.aki` and `NAME.ari` read out of the finished ami through the
//! ext4 reader (or copied from files beside the spec), and `NAME.glance.json`: the three
//! records and the `openstack image create` commands in upload order.
//!
//! The partition is found before any pass, so a wrong `partition:` writes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::report::{KERNEL_ID_PLACEHOLDER, RAMDISK_ID_PLACEHOLDER};
use super::{Artefact, FileDigest, Plan, locate};
use crate::container::manifest;
use crate::disk::window::CropWriter;
use crate::disk::{self, CreateRequest, DiskFormat, DiskReader, DiskWriter, OpenOptions};
use crate::error::{Error, Result};
use crate::fs::ext4::Ext4;
use crate::fs::partition::image::DiskImage;
use crate::io::FileSource;
use crate::io::output::{OutputSet, partial_path};
use crate::spec::{AmiPart, AmiSource, PartitionChoice, Span, ValidAmi, ValidOutput};

/// The bytes of the disk an ami holds: `(start, len)`.
pub(super) type Range = (u64, u64);

/// A kernel or ramdisk written beside its ami, waiting to be hashed and renamed.
pub(crate) struct Extra {
    target: PathBuf,
    set: OutputSet,
    role: Role,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Kernel,
    Ramdisk,
}

impl Role {
    fn format(self) -> &'static str {
        match self {
            Role::Kernel => "aki",
            Role::Ramdisk => "ari",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Role::Kernel => "kernel",
            Role::Ramdisk => "ramdisk",
        }
    }

    fn placeholder(self) -> &'static str {
        match self {
            Role::Kernel => KERNEL_ID_PLACEHOLDER,
            Role::Ramdisk => RAMDISK_ID_PLACEHOLDER,
        }
    }
}

/// One record of `NAME.glance.json`.
#[derive(Serialize)]
struct GlanceRecord {
    /// `kernel`, `ramdisk` or `machine`.
    role: &'static str,
    name: String,
    file: String,
    disk_format: &'static str,
    container_format: &'static str,
    size: u64,
    sha256: String,
    /// What later commands write for this image's id: replace it with the id this
    /// command prints.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_placeholder: Option<&'static str>,
    command: Vec<String>,
}

#[derive(Serialize)]
struct GlanceFile {
    /// Run the commands in this order.
    upload_order: Vec<GlanceRecord>,
}

impl Plan {
    /// The range of every selected ami output (by position in `self.outputs`), from the
    /// disks' partition tables; `None` for other outputs.
    ///
    /// # Errors
    /// A partition that does not exist or cannot be chosen; located at the spec's key.
    pub(super) fn ami_ranges(&self, inputs: &[Option<PathBuf>]) -> Result<Vec<Option<Range>>> {
        let mut ranges = Vec::new();
        for o in &self.outputs {
            let Some(ami) = &o.ami else {
                ranges.push(None);
                continue;
            };
            let input = inputs.get(o.disk).and_then(Option::as_ref);
            let size = self.reader(o.disk, input)?.virtual_size();
            let range = partition_range(ami, input, size).map_err(|e| {
                let key = format!("outputs[{}].partition", o.index);
                self.located(ami.partition_span, &key, &e)
            })?;
            self.check_bundle_size(o, range.1)?;
            ranges.push(Some(range));
        }
        Ok(ranges)
    }

    /// `spec.yaml:7:9: key: message`, keeping `e`'s kind.
    fn located(&self, span: Option<Span>, key: &str, e: &Error) -> Error {
        Error::new(e.kind(), locate(&self.spec.path, span, key, &e.to_string()))
    }

    /// The lane writing ami `o`: the raw image of `range`, cropped from the disk's pass.
    pub(super) fn ami_lane(
        &self,
        o: &ValidOutput,
        range: Range,
        set: &mut OutputSet,
    ) -> Result<Box<dyn DiskWriter>> {
        let ctx = self.ctx.derive(&o.name);
        let req = CreateRequest {
            format: DiskFormat::Raw,
            virtual_size: range.1,
            options: &o.options,
            compress: false,
            ctx: &ctx,
        };
        let raw = disk::create(&req, set)?;
        Ok(Box::new(CropWriter::new(raw, range.0, range.1)?))
    }

    /// Writes the kernel and ramdisk of the finished ami at `target` (still a partial file).
    ///
    /// # Errors
    /// The file system cannot be read, a path is missing or not a regular file, I/O.
    pub(super) fn ami_extras(&self, o: &ValidOutput, target: &Path) -> Result<Vec<Extra>> {
        let Some(ami) = &o.ami else {
            return Ok(Vec::new());
        };
        let parts = [(Role::Kernel, &ami.kernel), (Role::Ramdisk, &ami.ramdisk)];
        let mut fs = None;
        let mut extras = Vec::new();
        for (role, part) in parts {
            let Some(part) = part else { continue };
            let key = format!("outputs[{}].{}", o.index, role.key());
            let extra = self
                .write_extra(role, part, target, &mut fs)
                .map_err(|e| self.located(part.span, &key, &e))?;
            extras.push(extra);
        }
        Ok(extras)
    }

    fn write_extra(
        &self,
        role: Role,
        part: &AmiPart,
        ami: &Path,
        fs: &mut Option<Ext4>,
    ) -> Result<Extra> {
        let mut reader: Box<dyn DiskReader> = match &part.source {
            AmiSource::Inside(path) => {
                if fs.is_none() {
                    *fs = Some(open_ext4(ami)?);
                }
                let fs = fs.as_ref().expect("opened above");
                let file = fs
                    .open_path(path.as_bytes())
                    .map_err(|e| Error::new(e.kind(), format!("{e} (in {})", file_name(ami))))?;
                Box::new(file)
            }
            AmiSource::File(path) => {
                let opts = OpenOptions {
                    format: Some(DiskFormat::Raw),
                    ..OpenOptions::default()
                };
                disk::open(path, &opts)?
            }
        };
        let target = ami.with_extension(role.format());
        let mut set = OutputSet::new(&target, true);
        let ctx = self.ctx.derive(role.format());
        let req = CreateRequest {
            format: DiskFormat::Raw,
            virtual_size: reader.virtual_size(),
            options: &disk::KvOptions::default(),
            compress: false,
            ctx: &ctx,
        };
        let mut writer = disk::create(&req, &mut set).map_err(|e| e.with_path(&target))?;
        disk::convert(reader.as_mut(), &mut [writer.as_mut()], &mut |_| {})?;
        writer.finish().map_err(|e| e.with_path(&target))?;
        Ok(Extra { target, set, role })
    }

    /// Hashes and renames the kernel and ramdisk, writes `NAME.glance.json` into the ami's
    /// set, and describes the three artefacts in upload order (aki, ari, ami).
    pub(super) fn commit_triplet(
        &self,
        o: &ValidOutput,
        extras: Vec<Extra>,
        ami: Artefact,
        set: &mut OutputSet,
    ) -> Result<Vec<Artefact>> {
        let mut artefacts = Vec::new();
        let mut records = Vec::new();
        for extra in extras {
            let (sha256, size) = manifest::hash_file(&partial_path(&extra.target))?;
            extra.set.commit().map_err(|e| e.with_path(&extra.target))?;
            let format = extra.role.format();
            let path = file_name(&extra.target);
            let image = format!("{}-{}", self.spec.name, extra.role.key());
            let command = upload(format, &[], &path, &image);
            records.push(GlanceRecord {
                role: extra.role.key(),
                name: image,
                file: path.clone(),
                disk_format: format,
                container_format: format,
                size,
                sha256: sha256.clone(),
                id_placeholder: Some(extra.role.placeholder()),
                command: command.clone(),
            });
            artefacts.push(Artefact {
                name: format!("{}-{}", o.name, format),
                path,
                size,
                sha256,
                disk_format: format.into(),
                container_format: format.into(),
                virtual_size: size,
                glance_args: command,
                files: Vec::new(),
            });
        }
        records.push(GlanceRecord {
            role: "machine",
            name: self.spec.name.clone(),
            file: ami.path.clone(),
            disk_format: "ami",
            container_format: "ami",
            size: ami.size,
            sha256: ami.sha256.clone(),
            id_placeholder: None,
            command: ami.glance_args.clone(),
        });
        let glance = GlanceFile {
            upload_order: records,
        };
        let mut json = serde_json::to_string_pretty(&glance)
            .map_err(|e| Error::new(crate::ErrorKind::Io, e))?;
        json.push('\n');
        let name = format!("{}.glance.json", file_stem(&ami.path));
        let mut file = set.create_sibling(&name)?;
        let glance_path = set.primary_path().with_file_name(&name);
        file.write_all(json.as_bytes())
            .map_err(|e| Error::io(e).with_path(&glance_path))?;
        let mut ami = ami;
        let digest = manifest::hex(&Sha256::digest(json.as_bytes()));
        ami.files
            .push(FileDigest::new(&glance_path, json.len() as u64, digest));
        artefacts.push(ami);
        Ok(artefacts)
    }
}

/// `(start, len)` of the disk's bytes `ami` names, for a disk of `size` bytes read from
/// `input` (`None`: a blank disk, which has no partition table).
fn partition_range(ami: &ValidAmi, input: Option<&PathBuf>, size: u64) -> Result<Range> {
    if ami.partition == PartitionChoice::Whole {
        return Ok((0, size));
    }
    let table = match input {
        Some(path) => DiskImage::open(path, &OpenOptions::default())?.table()?,
        None => None,
    };
    let part = match (ami.partition, &table) {
        (PartitionChoice::Auto, None) => return Ok((0, size)),
        (PartitionChoice::Auto, Some(t)) => t.linux_root()?,
        (PartitionChoice::Number(n), Some(t)) => t.get(n)?,
        (PartitionChoice::Number(n), None) => {
            return Err(Error::invalid_input(format!(
                "there is no partition {n}: the disk has no partition table"
            )));
        }
        (PartitionChoice::Whole, _) => return Ok((0, size)),
    };
    if part.end() > size {
        return Err(Error::invalid_input(format!(
            "partition {} ends at byte {}, past the end of the {size}-byte disk",
            part.index,
            part.end()
        )));
    }
    Ok((part.start, part.size))
}

fn open_ext4(ami: &Path) -> Result<Ext4> {
    let partial = partial_path(ami);
    let file = std::fs::File::open(&partial).map_err(|e| Error::io(e).with_path(&partial))?;
    let src = FileSource::shared(file).map_err(|e| Error::io(e).with_path(&partial))?;
    let name = file_name(ami);
    Ext4::open(src).map_err(|e| Error::new(e.kind(), format!("{name}: {e}")))
}

/// `openstack image create --disk-format F --container-format F [--property ...] --file PATH NAME`.
fn upload(format: &str, properties: &[String], path: &str, image: &str) -> Vec<String> {
    let mut args: Vec<String> = ["openstack", "image", "create", "--disk-format", format]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    args.extend(["--container-format".into(), format.into()]);
    for p in properties {
        args.extend(["--property".into(), p.clone()]);
    }
    args.extend(["--file".into(), path.into(), image.into()]);
    args
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn file_stem(name: &str) -> &str {
    Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
}
