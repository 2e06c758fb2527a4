//! The appliance spec as serde types: what `kiln build` reads from YAML.
//!
//! Every struct denies unknown keys (the loader turns them into "did you mean" errors).
//! Values whose meaning is checked after parsing (sizes, counts, paths, names) are wrapped in
//! [`Spanned`] so `validate` can point at their line and column. The JSON Schema in
//! `schemas/kiln-spec.schema.json` is generated from these types (`schemars`).
//!
//! Not supported, on purpose: `${VAR}` environment interpolation (every value is taken
//! literally, so a spec means the same thing on every machine), and YAML merge keys (`<<`).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

mod product;
pub use product::{DeploymentOption, Product, ProductSection, Property, PropertyValue};
pub use serde_saphyr::Spanned;

/// A whole appliance spec. Values are taken literally: there is no `${VAR}` environment
/// interpolation. Relative paths resolve against the spec file's directory.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "kiln appliance spec")]
pub struct Spec {
    /// Appliance name: names the artefacts and seeds every derived id.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Free-form version string (quote it: `"24.04"`).
    #[serde(default)]
    pub version: Option<String>,
    /// One-line description.
    #[serde(default)]
    pub description: Option<String>,
    /// Virtual hardware.
    #[serde(default)]
    pub vm: Option<Vm>,
    /// The disks, in guest order; the first is the boot disk.
    #[schemars(with = "Vec<Disk>")]
    pub disks: Vec<Spanned<Disk>>,
    /// Network adapters.
    #[serde(default)]
    pub networks: Vec<Network>,
    /// cloud-init data and how to deliver it.
    #[serde(default)]
    #[schemars(with = "Option<CloudInit>")]
    pub cloud_init: Option<Spanned<CloudInit>>,
    /// Product metadata for OVF containers.
    #[serde(default)]
    pub product: Option<Product>,
    /// Deployment configurations of ova/ovf packages (DeploymentOptionSection): the
    /// deployment wizard offers them and each selects its own CPUs and memory. VMware
    /// targets only: VirtualBox's importer has no configurations.
    #[serde(default)]
    #[schemars(with = "Vec<DeploymentOption>")]
    pub deployment_options: Vec<Spanned<DeploymentOption>>,
    /// The artefacts to build.
    #[schemars(with = "Vec<Output>")]
    pub outputs: Vec<Spanned<Output>>,
}

/// Virtual hardware.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// Virtual CPU count (1 to 256); default 1.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub cpus: Option<Spanned<i64>>,
    /// Memory, e.g. `4GiB` (at least 1 MiB, a whole number of MiB); default 1GiB.
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub memory: Option<Spanned<ByteSize>>,
    /// Firmware; default `bios`.
    #[serde(default)]
    pub firmware: Option<Firmware>,
    /// Guest OS for OVF descriptors: `ubuntu-64`, `ubuntu`, `debian-64`, `debian`,
    /// `linux-64` (the default), `linux`, `other-64` or `other`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub os: Option<Spanned<String>>,
    /// ISO 9660 images (paths relative to the spec) that every ova/ovf package carries,
    /// each in a CD-ROM drive on the IDE controller (at most two drives there, disks on
    /// `ide` included). For the cloud-init seed, use `cloud_init.deliver: [seed-cdrom]`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub cdroms: Vec<Spanned<String>>,
    /// A USB controller in ova/ovf packages: `usb2` (EHCI) or `usb3` (xHCI, VMware
    /// targets only); none by default.
    #[serde(default)]
    #[schemars(with = "Option<Usb>")]
    pub usb: Option<Spanned<Usb>>,
    /// Video memory in ova/ovf packages, 1MiB to 128MiB in whole MiB (VMware targets
    /// only: VirtualBox reads it only from its own `vbox:Machine` section); the
    /// importer's default when absent.
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub video_memory: Option<Spanned<ByteSize>>,
    /// UEFI Secure Boot (needs `firmware: efi`; VMware targets only).
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub secure_boot: Option<Spanned<bool>>,
}

/// A USB controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Usb {
    /// USB 2.0 (EHCI, with its USB 1.1 companion).
    Usb2,
    /// USB 3 (xHCI).
    Usb3,
}

/// Firmware type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// Legacy BIOS.
    Bios,
    /// UEFI.
    Efi,
}

/// One disk.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Disk name (letters, digits, `-`, `_`, `.`), unique in the spec.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Where the disk's contents come from.
    #[schemars(with = "Source")]
    pub source: Spanned<Source>,
    /// Virtual size, e.g. `20GiB`. Grows the source; kiln never shrinks a disk. Required
    /// for blank disks.
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub size: Option<Spanned<ByteSize>>,
    /// Controller the disk hangs off in OVF packages; default `scsi` for VMware, `sata` for
    /// VirtualBox.
    #[serde(default)]
    pub controller: Option<Controller>,
}

/// Where a disk's contents come from: exactly one of `blank`, `file` or `url`, and how it is
/// verified: `sha256`, `sha512`, a `checksum` file and/or an OpenPGP `signature` (a `url`
/// needs at least one; every one given must hold).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `true`: a new empty disk of the disk's `size`.
    #[serde(default)]
    pub blank: Option<bool>,
    /// A local image in any format kiln reads (probed), relative to the spec's directory.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
    /// An http(s) URL, verified by `sha256`, `sha512`, `checksum` or `signature` (at least
    /// one). Downloads are cached by SHA-256 (`kiln cache ls`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub url: Option<Spanned<String>>,
    /// Expected SHA-256 of the file or download (64 hex digits).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub sha256: Option<Spanned<String>>,
    /// Expected SHA-512 of the file or download (128 hex digits), as Debian publishes it.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub sha512: Option<Spanned<String>>,
    /// A checksum file listing the image's digest: GNU (`HEX  NAME`, `HEX *NAME`) or BSD
    /// (`SHA256 (NAME) = HEX`) lines, SHA-256 or SHA-512; the line for the image's file name
    /// (the URL's last path segment) is used. Packer's `file:` checksum.
    #[serde(default)]
    #[schemars(with = "Option<ChecksumFile>")]
    pub checksum: Option<Spanned<ChecksumFile>>,
    /// A detached OpenPGP signature over the checksum file (or over the image when there is
    /// no `checksum`), checked against `keyring` before any digest is trusted.
    #[serde(default)]
    #[schemars(with = "Option<SignatureFile>")]
    pub signature: Option<Spanned<SignatureFile>>,
    /// The member of a tar archive source (`.tar`, `.tar.xz`, ...) that holds the disk;
    /// default: the archive's one disk image (by name: `.raw`, `.img`, `.qcow2`, ...).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub member: Option<Spanned<String>>,
    /// Bound on the bytes a compressed source may decompress to, e.g. `64GiB`; default
    /// 256 GiB. Stops a decompression bomb before it fills the disk.
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub max_size: Option<Spanned<ByteSize>>,
}

/// A checksum file (`SHA256SUMS`, `SHA512SUMS`, Fedora's `CHECKSUM`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecksumFile {
    /// An http(s) URL (fetched, at most 1 MiB, cached for `--offline`) or a path relative to
    /// the spec's directory.
    #[schemars(with = "String")]
    pub file: Spanned<String>,
}

/// A detached OpenPGP signature and the keys trusted to make it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// The signature, binary or ASCII-armored (`SHA256SUMS.gpg`, `SHA512SUMS.sign`): an
    /// http(s) URL or a path relative to the spec's directory.
    #[schemars(with = "String")]
    pub file: Spanned<String>,
    /// The public keys (binary or armored, e.g. `gpg --export KEYID > keyring.gpg`), relative
    /// to the spec's directory: the only keys trusted.
    #[schemars(with = "String")]
    pub keyring: Spanned<String>,
}

/// Disk controller. The SCSI kinds (`scsi`/`lsilogic`, `lsilogicsas`, `pvscsi`, `buslogic`)
/// are checked against the output's `target:` (VirtualBox: no `pvscsi`, one SCSI kind;
/// AWS VM Import: `scsi`/`lsilogic` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    /// IDE.
    Ide,
    /// SATA (AHCI).
    Sata,
    /// SCSI (LSI Logic parallel).
    Scsi,
    /// NVMe.
    Nvme,
    /// LSI Logic parallel SCSI (the same as `scsi`).
    Lsilogic,
    /// LSI Logic SAS (not AWS VM Import).
    Lsilogicsas,
    /// VMware paravirtual SCSI (VMware targets, Glance, generic; not VirtualBox).
    Pvscsi,
    /// BusLogic parallel SCSI (not AWS VM Import).
    Buslogic,
}

/// One network adapter.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Network name the adapter attaches to.
    pub name: String,
    /// Adapter model; default `vmxnet3` for VMware, `e1000` for VirtualBox.
    #[serde(default)]
    pub adapter: Option<Adapter>,
    /// A static MAC address, `xx:xx:xx:xx:xx:xx` (hex, unicast); written as the Item's
    /// `rasd:Address`. Default: none, the importer generates one.
    #[serde(default)]
    #[schemars(
        with = "Option<String>",
        regex(pattern = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
    )]
    pub mac: Option<Spanned<String>>,
    /// Whether the adapter is connected at power-on (the Item's `AutomaticAllocation`);
    /// default `true`.
    #[serde(default)]
    pub connected: Option<bool>,
}

/// Network adapter model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Adapter {
    /// Intel e1000.
    E1000,
    /// Intel e1000e.
    E1000e,
    /// VMware vmxnet3.
    Vmxnet3,
    /// virtio-net.
    Virtio,
}

/// cloud-init data: each part is a path (relative to the spec), inline text (a `|` block)
/// or an inline mapping. A NoCloud seed holding them is built beside the disks.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudInit {
    /// user-data (`#cloud-config` YAML or a script); an inline mapping is written out as
    /// `#cloud-config` YAML.
    #[serde(default)]
    #[schemars(with = "Option<CloudInitPart>")]
    pub user_data: Option<Spanned<CloudInitPart>>,
    /// meta-data (`instance-id`, `local-hostname`).
    #[serde(default)]
    #[schemars(with = "Option<CloudInitPart>")]
    pub meta_data: Option<Spanned<CloudInitPart>>,
    /// network-config (version 1 or 2).
    #[serde(default)]
    #[schemars(with = "Option<CloudInitPart>")]
    pub network_config: Option<Spanned<CloudInitPart>>,
    /// How the data reaches the guest; default `[seed-iso]`; `[]` builds no seed.
    #[serde(default)]
    #[schemars(with = "Option<Vec<Delivery>>")]
    pub deliver: Option<Spanned<Vec<Delivery>>>,
}

/// A cloud-init part: a file path, inline text, or the content inline as a mapping.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CloudInitPart {
    /// A path relative to the spec's directory; text with a line break (a `|` block) is the
    /// content itself.
    Text(String),
    /// Inline content.
    Inline(BTreeMap<String, serde_json::Value>),
}

/// How cloud-init data is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// A NoCloud seed ISO (`cidata`), `<name>-seed.iso`, built beside the disks.
    SeedIso,
    /// A NoCloud seed FAT image (`CIDATA`), `<name>-seed.img`, built beside the disks.
    SeedVfat,
    /// OVF environment properties in the ova/ovf packages' ProductSection (instance-id,
    /// hostname, public-keys, base64 user-data and network-config), which VMware hands the
    /// guest and cloud-init's OVF datasource reads. Not for VirtualBox packages.
    OvfProperties,
    /// The NoCloud seed ISO inside every ova/ovf package (`<package>-seed.iso`), in a
    /// CD-ROM drive on the IDE controller, so the imported machine boots configured in
    /// VMware and VirtualBox alike. Not for the `glance` and `aws-vmimport` targets.
    SeedCdrom,
}

/// One artefact to build.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Output name for `--only` and the report; defaults to the container for ova/ovf
    /// (`ova`), else the disk format (`qcow2`). Unique.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// File name in the output directory; defaults to `<spec name>[-<name>].<ext>`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
    /// Which disk to write; defaults to the first. Not for ova/ovf, which hold every disk.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub disk: Option<Spanned<String>>,
    /// Disk format (Glance vocabulary).
    pub disk_format: OutputDiskFormat,
    /// Container format (Glance vocabulary).
    pub container_format: ContainerFormat,
    /// Disk format options, as `kiln create -o` takes them.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, OptionValue>>")]
    pub options: Option<Spanned<BTreeMap<String, OptionValue>>>,
    /// OVA/OVF target importer: a profile name or a list (`[esxi-7, virtualbox-7]`);
    /// default `vmware` (such packages also import in VirtualBox). Profiles: `vmware`,
    /// `esxi-6.7`, `esxi-7`, `esxi-8`, `workstation-17`, `virtualbox-7` (alias
    /// `virtualbox`), `aws-vmimport`, `glance`, `generic`; see the README's table.
    #[serde(default)]
    #[schemars(with = "Option<Target>")]
    pub target: Option<Spanned<Target>>,
    /// Manifest digest for OVF containers; default `sha256`.
    #[serde(default)]
    #[schemars(with = "Option<ManifestDigest>")]
    pub manifest: Option<Spanned<ManifestDigest>>,
    /// OVF/OVA: sign the manifest, writing `NAME.cert` as `kiln sign` does. Paths are
    /// relative to the spec's directory; `kiln build --sign-key/--sign-cert` override them.
    #[serde(default)]
    #[schemars(with = "Option<SignKeys>")]
    pub sign: Option<Spanned<SignKeys>>,
    /// AMI: which part of the disk is the image: `auto` (default: the whole disk without a
    /// partition table, else its one Linux root partition), `none` (the whole disk) or a
    /// partition number.
    #[serde(default)]
    #[schemars(with = "Option<AmiPartition>")]
    pub partition: Option<Spanned<AmiPartition>>,
    /// AMI: the kernel (written as `NAME.aki`): a path inside the root file system
    /// (symbolic links followed inside it), or `{ file: PATH }` beside the spec.
    #[serde(default)]
    #[schemars(with = "Option<AmiFile>")]
    pub kernel: Option<Spanned<AmiFile>>,
    /// AMI: the ramdisk (written as `NAME.ari`), as `kernel`.
    #[serde(default)]
    #[schemars(with = "Option<AmiFile>")]
    pub ramdisk: Option<Spanned<AmiFile>>,
    /// AMI: `ec2` also writes an EC2 instance-store bundle of the ami (and of its aki and
    /// ari): `NAME.ami.manifest.xml` and `NAME.ami.part.NN`, as `kiln bundle` does.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub bundle: Option<Spanned<String>>,
    /// EC2 bundle: AWS account number (12 digits).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub user: Option<Spanned<String>>,
    /// EC2 bundle: your X.509 certificate (PEM), relative to the spec's directory.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cert: Option<Spanned<String>>,
    /// EC2 bundle: your RSA private key (PEM, unencrypted), which signs the manifest.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub privatekey: Option<Spanned<String>>,
    /// EC2 bundle: EC2's X.509 certificate (PEM) for the region; required (kiln does not
    /// ship region certificates).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ec2_cert: Option<Spanned<String>>,
    /// EC2 bundle: `x86_64` (default) or `i386`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub arch: Option<Spanned<String>>,
    /// EC2 bundle: virtual name to device, e.g. `{ ami: sda1, root: /dev/sda1, ephemeral0:
    /// sdb }`. Default: none.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub block_device_mapping: Option<Spanned<BTreeMap<String, String>>>,
    /// EC2 bundle: product codes. Default: none.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub product_codes: Option<Spanned<Vec<String>>>,
}

/// The key and certificate that sign a package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignKeys {
    /// RSA private key (PEM, PKCS#8 or PKCS#1, unencrypted, at least 2048 bits).
    pub key: String,
    /// X.509 certificate chain (PEM), the signer's certificate first.
    pub cert: String,
}

/// An AMI's partition as written: `auto`, `none` or a number; checked by `validate`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AmiPartition {
    /// A partition number (from 1).
    Number(i64),
    /// `auto` or `none`.
    Text(String),
}

/// An AMI kernel or ramdisk: a path inside the image's root file system, or a file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AmiFile {
    /// An absolute path inside the root file system, e.g. `/boot/vmlinuz`.
    Inside(String),
    /// A file beside the spec.
    File {
        /// Path relative to the spec's directory.
        file: String,
    },
}

/// Output disk formats (Glance's `disk_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputDiskFormat {
    /// Raw bytes.
    Raw,
    /// QEMU qcow2.
    Qcow2,
    /// VMware VMDK.
    Vmdk,
    /// Microsoft VHD.
    Vhd,
    /// Microsoft VHDX.
    Vhdx,
    /// VirtualBox VDI.
    Vdi,
    /// Amazon kernel image (raw).
    Aki,
    /// Amazon ramdisk image (raw).
    Ari,
    /// Amazon machine image (raw).
    Ami,
}

/// Output containers (Glance's `container_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerFormat {
    /// The disk file alone.
    Bare,
    /// OVF descriptor directory.
    Ovf,
    /// OVA tar.
    Ova,
    /// Amazon kernel.
    Aki,
    /// Amazon ramdisk.
    Ari,
    /// Amazon machine image.
    Ami,
}

/// OVA/OVF target importer(s): one profile name or a list of them. With a list, kiln
/// writes the common denominator (lowest hardware version, controllers and NICs every
/// target accepts) or refuses the spec at validation.
///
/// | name | descriptor | hardware ceiling | notes |
/// |---|---|---|---|
/// | `vmware` (default) | `vmx-13` | none | VMware rules; also imports in VirtualBox |
/// | `esxi-6.7` | `vmx-14` | `vmx-14` | refuses `ovf:compression` |
/// | `esxi-7` | `vmx-17` | `vmx-19` (7.0 U2) | refuses `ovf:compression` |
/// | `esxi-8` | `vmx-20` | `vmx-21` (8.0 U2) | refuses `ovf:compression` |
/// | `workstation-17` | `vmx-20` | `vmx-21` (17.5) | |
/// | `virtualbox-7` (alias `virtualbox`) | `virtualbox-2.2` | none | e1000/virtio NICs, no EFI |
/// | `aws-vmimport` | `vmx-13` | none | IDE/SATA/SCSI, 64-bit Linux `os`, BIOS or UEFI |
/// | `glance` | `vmx-13` | none | exactly one disk |
/// | `generic` | `vmx-13` | none | only the DMTF rules |
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(untagged)]
pub enum Target {
    /// One profile name.
    One(#[schemars(with = "ProfileName")] String),
    /// Several profile names.
    Many(#[schemars(with = "Vec<ProfileName>")] Vec<String>),
}

/// A target profile name, for the schema only (editors complete them); the names and
/// their rules live in `container::profile`, and a unit test keeps the two lists equal.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub enum ProfileName {
    /// vmx-13, VMware's rules (the default).
    #[schemars(rename = "vmware")]
    Vmware,
    /// VMware ESXi 6.7: vmx-14.
    #[schemars(rename = "esxi-6.7")]
    Esxi67,
    /// VMware ESXi 7.0: vmx-17 (up to vmx-19).
    #[schemars(rename = "esxi-7")]
    Esxi7,
    /// VMware ESXi 8.0: vmx-20 (up to vmx-21).
    #[schemars(rename = "esxi-8")]
    Esxi8,
    /// VMware Workstation 17: vmx-20 (up to vmx-21).
    #[schemars(rename = "workstation-17")]
    Workstation17,
    /// Oracle VirtualBox 7.
    #[schemars(rename = "virtualbox-7")]
    Virtualbox7,
    /// OpenStack Glance's OVA import: exactly one disk.
    #[schemars(rename = "glance")]
    Glance,
    /// AWS VM Import.
    #[schemars(rename = "aws-vmimport")]
    AwsVmimport,
    /// Only the DMTF rules.
    #[schemars(rename = "generic")]
    Generic,
    /// Alias of `virtualbox-7`.
    #[schemars(rename = "virtualbox")]
    Virtualbox,
}

impl Target {
    /// The names as written.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Target::One(n) => vec![n.as_str()],
            Target::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TargetVisitor)
    }
}

struct TargetVisitor;

/// Most names a target list may hold (there are nine profiles).
const MAX_TARGETS: usize = 16;

impl<'de> Visitor<'de> for TargetVisitor {
    type Value = Target;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a target name such as esxi-7, or a list of them")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Target, E> {
        Ok(Target::One(v.to_string()))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Target, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = seq.next_element::<String>()? {
            if names.len() == MAX_TARGETS {
                return Err(de::Error::custom("more than 16 targets"));
            }
            names.push(name);
        }
        Ok(Target::Many(names))
    }
}

/// Manifest digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ManifestDigest {
    /// SHA-1 (old VMware).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

/// A scalar option value (`preallocation: metadata`, `cluster_size: 65536`, `azure: true`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OptionValue {
    /// A boolean, passed as `on`/`off`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Text(String),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Bool(b) => f.write_str(if *b { "on" } else { "off" }),
            OptionValue::Int(n) => write!(f, "{n}"),
            OptionValue::Text(s) => f.write_str(s),
        }
    }
}

/// A size as written: a byte count or text with a unit (`20GiB`); parsed by `validate`.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(untagged)]
pub enum ByteSize {
    /// A number (bytes); may be negative as written, which validation refuses.
    Number(i64),
    /// Text such as `20GiB`, `512M`, `8G`.
    Text(String),
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as 20GiB, 512M or a byte count")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        Ok(ByteSize::Number(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        i64::try_from(v)
            .map(ByteSize::Number)
            .map_err(|_| E::custom("size is too large"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        Ok(ByteSize::Text(v.to_string()))
    }
}
