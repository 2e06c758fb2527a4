//! The build report: `NAME.kiln.json` (every artefact with its digest, formats and the
//! `openstack image create` arguments that upload it to Glance) and `SHA256SUMS` (the
//! `sha256sum` format, sorted by file name). Both are written atomically and contain no
//! times or host facts beyond `SOURCE_DATE_EPOCH`, so two builds give the same bytes.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::container::Kind;
use crate::container::package::{Form, file_names};
use crate::error::{Error, Result};
use crate::io::output::OutputSet;
use crate::spec::model::Firmware;
use crate::spec::{ValidOutput, ValidSeed, ValidSpec};

/// Placeholder for the Glance id of the kernel an `ami` image boots.
pub const KERNEL_ID_PLACEHOLDER: &str = "<KERNEL_IMAGE_ID>";
/// Placeholder for the Glance id of the ramdisk an `ami` image boots.
pub const RAMDISK_ID_PLACEHOLDER: &str = "<RAMDISK_IMAGE_ID>";

/// One artefact of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artefact {
    /// Output name.
    pub name: String,
    /// File name, relative to the output directory.
    pub path: String,
    /// File size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Glance disk format.
    pub disk_format: String,
    /// Glance container format.
    pub container_format: String,
    /// Guest-visible disk size (a seed's file size).
    pub virtual_size: u64,
    /// The command (argv) that uploads this artefact to Glance, `openstack image create ...`;
    /// `<KERNEL_IMAGE_ID>`/`<RAMDISK_IMAGE_ID>` stand for ids the user substitutes.
    pub glance_args: Vec<String>,
    /// The artefact's other files (an `ovf` package's manifest and disk), in package order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileDigest>,
}

/// One more file of an artefact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDigest {
    /// File name, relative to the output directory.
    pub path: String,
    /// File size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

impl FileDigest {
    /// The digest of the file at `path` (named by its file name).
    pub fn new(path: &Path, size: u64, sha256: String) -> Self {
        Self {
            path: file_name(path),
            size,
            sha256,
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Artefact {
    /// Describes the artefact written at `target` for `o`.
    pub fn new(
        spec: &ValidSpec,
        o: &ValidOutput,
        target: &Path,
        size: u64,
        sha256: String,
        virtual_size: u64,
    ) -> Self {
        let path = file_name(target);
        // Glance stores one file: for an `ovf` package, its (boot) disk.
        let upload = match super::container::kind(o.container) {
            Kind::Package(Form::Files) => file_names(target, 1).disks[0].clone(),
            Kind::Package(Form::Ova) | Kind::Bare | Kind::Triplet | Kind::NotBuilt => path.clone(),
        };
        let glance_args = glance_args(o, &upload, &spec.name, spec.firmware);
        Self {
            name: o.name.clone(),
            path,
            size,
            sha256,
            disk_format: o.disk_format.name().into(),
            container_format: o.container.name().into(),
            virtual_size,
            glance_args,
            files: Vec::new(),
        }
    }
}

impl Artefact {
    /// Describes the cloud-init seed written for `seed`: uploaded to Glance as its own image,
    /// `<name>-seed`, so it does not take the disk image's name.
    pub fn seed(spec: &ValidSpec, seed: &ValidSeed, size: u64, sha256: String) -> Self {
        let disk_format = seed.disk_format();
        let image_name = format!("{}-seed", spec.name);
        let glance_args = [
            "openstack",
            "image",
            "create",
            "--disk-format",
            disk_format,
            "--container-format",
            "bare",
            "--file",
            &seed.file,
            &image_name,
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        Self {
            name: seed.name.clone(),
            path: seed.file.clone(),
            size,
            sha256,
            disk_format: disk_format.into(),
            container_format: "bare".into(),
            virtual_size: size,
            glance_args,
            files: Vec::new(),
        }
    }
}

/// `openstack image create --disk-format F --container-format C [--property ...] --file PATH NAME`.
fn glance_args(
    o: &ValidOutput,
    path: &str,
    image_name: &str,
    firmware: Option<Firmware>,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "openstack",
        "image",
        "create",
        "--disk-format",
        o.disk_format.name(),
        "--container-format",
        o.container.name(),
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    // An ami names the kernel and ramdisk uploaded before it (`NAME.glance.json`).
    if let Some(ami) = &o.ami {
        if ami.kernel.is_some() {
            args.extend([
                "--property".into(),
                format!("kernel_id={KERNEL_ID_PLACEHOLDER}"),
            ]);
        }
        if ami.ramdisk.is_some() {
            args.extend([
                "--property".into(),
                format!("ramdisk_id={RAMDISK_ID_PLACEHOLDER}"),
            ]);
        }
    }
    if firmware == Some(Firmware::Efi) {
        args.extend(["--property".into(), "hw_firmware_type=uefi".into()]);
    }
    args.extend(["--file".into(), path.into(), image_name.into()]);
    args
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildReport {
    /// `kiln <version>`.
    pub creator: String,
    /// Spec name.
    pub name: String,
    /// Spec version.
    pub version: Option<String>,
    /// Artefacts in spec order.
    pub artefacts: Vec<Artefact>,
}

impl BuildReport {
    /// A report of `artefacts` built from `spec`.
    pub fn new(spec: &ValidSpec, artefacts: Vec<Artefact>) -> Self {
        Self {
            creator: format!("kiln {}", env!("CARGO_PKG_VERSION")),
            name: spec.name.clone(),
            version: spec.version.clone(),
            artefacts,
        }
    }

    /// `sha256sum` lines sorted by file name.
    pub fn sha256sums(&self) -> String {
        let mut lines: Vec<String> = (self.artefacts.iter())
            .flat_map(|a| {
                let main = (a.sha256.as_str(), a.path.as_str());
                let files = a.files.iter().map(|f| (f.sha256.as_str(), f.path.as_str()));
                std::iter::once(main).chain(files)
            })
            .map(|(sha256, path)| format!("{sha256}  {path}\n"))
            .collect();
        lines.sort_by(|a, b| a.get(66..).cmp(&b.get(66..)));
        lines.concat()
    }

    /// Writes `NAME.kiln.json` and `SHA256SUMS` into `dir`.
    ///
    /// # Errors
    /// I/O failures; nothing half-written is left.
    pub fn write(&self, dir: &Path, name: &str) -> Result<()> {
        let mut json =
            serde_json::to_string_pretty(self).map_err(|e| Error::new(crate::ErrorKind::Io, e))?;
        json.push('\n');
        write_atomic(&dir.join(format!("{name}.kiln.json")), json.as_bytes())?;
        write_atomic(&dir.join("SHA256SUMS"), self.sha256sums().as_bytes())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut set = OutputSet::new(path, true);
    let mut file = set.create_primary()?;
    file.write_all(bytes)
        .map_err(|e| Error::io(e).with_path(path))?;
    set.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{DiskFormat, KvOptions};
    use crate::spec::model::{ContainerFormat, ManifestDigest, OutputDiskFormat};

    fn output(disk_format: OutputDiskFormat, container: ContainerFormat) -> ValidOutput {
        ValidOutput {
            index: 0,
            name: "o".into(),
            file: "x.img".into(),
            disk: 0,
            disk_format,
            engine_format: DiskFormat::Raw,
            container,
            options: KvOptions::default(),
            target: crate::container::profile::Resolved::default(),
            manifest: ManifestDigest::Sha256,
            ami: None,
            sign: None,
        }
    }

    #[test]
    fn ami_upload_names_kernel_and_ramdisk_placeholders() {
        use crate::spec::{AmiPart, AmiSource, PartitionChoice, ValidAmi};
        let part = |p: &str| AmiPart {
            source: AmiSource::Inside(p.into()),
            span: None,
        };
        let mut o = output(OutputDiskFormat::Ami, ContainerFormat::Ami);
        o.ami = Some(ValidAmi {
            partition: PartitionChoice::Auto,
            partition_span: None,
            kernel: Some(part("/boot/vmlinuz")),
            ramdisk: Some(part("/boot/initrd.img")),
            bundle: None,
        });
        let args = glance_args(&o, "x.img", "app", None);
        assert!(
            args.contains(&"kernel_id=<KERNEL_IMAGE_ID>".to_string()),
            "{args:?}"
        );
        assert!(
            args.contains(&"ramdisk_id=<RAMDISK_IMAGE_ID>".to_string()),
            "{args:?}"
        );
    }

    #[test]
    fn efi_firmware_sets_the_glance_firmware_property() {
        let args = glance_args(
            &output(OutputDiskFormat::Raw, ContainerFormat::Bare),
            "x.img",
            "app",
            Some(Firmware::Efi),
        );
        assert!(
            args.contains(&"hw_firmware_type=uefi".to_string()),
            "{args:?}"
        );
    }

    #[test]
    fn sha256sums_list_every_file_sorted_by_name() {
        let artefact = |path: &str, sha: char| Artefact {
            name: path.into(),
            path: path.into(),
            size: 0,
            sha256: sha.to_string().repeat(64),
            disk_format: "raw".into(),
            container_format: "bare".into(),
            virtual_size: 0,
            glance_args: Vec::new(),
            files: Vec::new(),
        };
        let mut package = artefact("c.ovf", 'c');
        package.files.push(FileDigest {
            path: "a.vmdk".into(),
            size: 0,
            sha256: "d".repeat(64),
        });
        let report = BuildReport {
            creator: String::new(),
            name: "n".into(),
            version: None,
            artefacts: vec![package, artefact("b.raw", 'a'), artefact("a.raw", 'b')],
        };
        let line = |c: &str, name: &str| format!("{}  {name}\n", c.repeat(64));
        assert_eq!(
            report.sha256sums(),
            [
                line("b", "a.raw"),
                line("d", "a.vmdk"),
                line("a", "b.raw"),
                line("c", "c.ovf")
            ]
            .concat()
        );
    }
}
