//! Containers around a disk: the OVF descriptor ([`ovf`]), its manifest ([`manifest`]), and
//! the package writer ([`package`]) that stores them with the disk as files (`ovf`) or as an
//! OVA tar.
//!
//! A package is written while its disks are read (one pass per disk): each streamOptimized
//! VMDK goes straight into its file (or its place in the tar), and the descriptor and
//! manifest, which need the VMDKs' sizes and digests, are written at the end (for an OVA in front of the disk:
//! their length is known before, see [`ovf::SIZE_WIDTH`]). cloud-init data can ride along as
//! OVF environment properties ([`cloud_init`]). Tar framing and the bounded tar reader are
//! [`tar`]'s; [`ova`] opens a disk inside an OVA in place. Packages from any tool are read
//! back by [`ovf_read`] (the descriptor), checked by [`verify`], summarised by [`inspect`]
//! and signed by [`sign`] ([`signature`] holds the `.cert` format); all report
//! [`finding::Finding`]s.
//!
//! Layering: `container` builds on `disk` and `io` (and `seed` for cloud-init data); it never
//! imports `plan` or `spec`: the plan translates the spec into these types.

pub mod chunks;
pub mod cloud_init;
pub mod ec2;
pub mod extract;
pub mod finding;
pub mod from_ovf;
pub mod inspect;
pub mod manifest;
pub mod ova;
pub mod ovf;
pub mod ovf_devices;
pub mod ovf_product;
pub mod ovf_read;
pub mod ovf_rewrite;
mod ovf_xml;
pub mod package;
pub mod profile;
pub mod sign;
pub mod signature;
pub mod source_manifest;
pub mod tar;
pub mod verify;

/// A guest OS kiln can name in a descriptor: the spec's `vm.os` and what each importer
/// reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestOs {
    /// The spec's name, e.g. `ubuntu-64`.
    pub name: &'static str,
    /// CIM_OperatingSystem.OsType (DSP0243's `ovf:id`; VirtualBox maps it to its own types).
    pub cim: u16,
    /// VMware's guest id (`vmw:osType`).
    pub vmware: &'static str,
    /// Human-readable name for the descriptor.
    pub description: &'static str,
}

/// The guest OS ids `vm.os` accepts. CIM numbers from the CIM_OperatingSystem value map.
pub const GUEST_OSES: &[GuestOs] = &[
    os("ubuntu-64", 94, "ubuntu64Guest", "Ubuntu 64-bit"),
    os("ubuntu", 93, "ubuntuGuest", "Ubuntu"),
    os("debian-64", 96, "debian10_64Guest", "Debian 64-bit"),
    os("debian", 95, "debian10Guest", "Debian"),
    os("linux-64", 101, "otherLinux64Guest", "Linux 64-bit"),
    os("linux", 36, "otherLinuxGuest", "Linux"),
    os("other-64", 102, "otherGuest64", "Other 64-bit"),
    os("other", 1, "otherGuest", "Other"),
];

/// The guest OS when the spec names none: kiln builds Linux cloud appliances.
pub const DEFAULT_GUEST_OS: &str = "linux-64";

const fn os(
    name: &'static str,
    cim: u16,
    vmware: &'static str,
    description: &'static str,
) -> GuestOs {
    GuestOs {
        name,
        cim,
        vmware,
        description,
    }
}

/// The entry named `name`.
pub fn guest_os(name: &str) -> Option<&'static GuestOs> {
    GUEST_OSES.iter().find(|g| g.name == name)
}
