//! Target profiles: what each real OVF/OVA importer accepts, in one table, and the common
//! denominator of a list of them (spec `target:` takes one name or a list).
//!
//! | profile | family written | hardware ceiling | controllers | NICs | EFI | `ovf:compression` | `vbox:Machine` | disks |
//! |---|---|---|---|---|---|---|---|---|
//! | `vmware` (default) | `vmx-13` | none | all (IDE, SATA, SCSI lsilogic/lsilogicsas/pvscsi/buslogic, NVMe) | e1000, e1000e, vmxnet3 | yes | warning | warning | any |
//! | `esxi-6.7` | `vmx-14` | `vmx-14` | all | e1000, e1000e, vmxnet3 | yes | error | warning | any |
//! | `esxi-7` | `vmx-17` | `vmx-19` (7.0 U2) | all | e1000, e1000e, vmxnet3 | yes | error | warning | any |
//! | `esxi-8` | `vmx-20` | `vmx-21` (8.0 U2) | all | e1000, e1000e, vmxnet3 | yes | error | warning | any |
//! | `workstation-17` | `vmx-20` | `vmx-21` (17.5) | all | e1000, e1000e, vmxnet3 | yes | tolerated | warning | any |
//! | `virtualbox-7` (alias `virtualbox`) | `virtualbox-2.2` | none | all but pvscsi; one SCSI kind | e1000, virtio | no | tolerated | yes | any |
//! | `aws-vmimport` | `vmx-13` | none | IDE, SATA, SCSI (lsilogic) | e1000, e1000e, vmxnet3 | yes | warning | warning | any, first boots |
//! | `glance` | `vmx-13` | none | any | any | yes | tolerated | tolerated | exactly 1 |
//! | `generic` | `vmx-13` | none | any | any | yes | tolerated | tolerated | any |
//!
//! Every profile gets a streamOptimized VMDK (the only disk format vSphere deploys from a
//! package, what VirtualBox exports and what AWS VM Import reads inside an OVA) and a
//! SHA256 manifest: ovftool 4 and ESXi 6.5 and later check SHA256, so none of these
//! targets needs SHA1; virt-v2v 2.2 cannot parse SHA512 lines, so SHA256 stays the default.
//!
//! Hardware versions (VMware KB 1003746 "Virtual machine hardware versions", and the vSphere
//! "Virtual Machine Compatibility" pages): ESXi 6.5 runs up to version 13, ESXi 6.7 up to
//! 14 (15 from 6.7 U2, not assumed here), ESXi 7.0 up to 17 (18 with 7.0 U1, 19 with
//! 7.0 U2), ESXi 8.0 up to 20 (21 with 8.0 U2), Workstation 17 up to 20 (21 with 17.5).
//! A profile writes the version its first release runs and verify accepts up to the last
//! update's, with a warning above the first. vSphere refuses a higher family with
//! "Unsupported hardware family 'vmx-NN'".

use super::ovf::{Bus, Nic, Target};

/// What Glance's OVA import task says when a package holds more than one disk (glance
/// `async_/flows/ovf_process.py`).
pub const GLANCE_ONE_DISK: &str =
    "Currently, OVA packages containing multiple disk are not supported.";

/// A named importer profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Profile {
    /// Today's VMware default: vmx-13, no hardware ceiling.
    Vmware,
    /// VMware ESXi 6.7 (vSphere 6.7).
    Esxi67,
    /// VMware ESXi 7.0.
    Esxi7,
    /// VMware ESXi 8.0.
    Esxi8,
    /// VMware Workstation 17.
    Workstation17,
    /// Oracle VirtualBox 7 (`virtualbox` is its alias).
    Virtualbox7,
    /// OpenStack Glance's OVA import.
    Glance,
    /// AWS VM Import (`aws ec2 import-image` of an OVA).
    AwsVmimport,
    /// Only the DMTF rules.
    Generic,
}

/// What a profile does with an element it may not like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tolerance {
    /// Imported as is.
    Tolerated,
    /// Imported, but something is lost or looked at: a warning.
    Warning,
    /// Refused: an error.
    Error,
}

/// The rules of one profile.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The spec name.
    pub name: &'static str,
    /// Whose descriptor dialect the profile prefers.
    pub family: Target,
    /// Whether the descriptor must say `vmx-NN` (VMware's importers refuse other families).
    pub needs_vmx: bool,
    /// The vmx version written; `None` for the writer's default (13).
    pub hardware: Option<u32>,
    /// Highest vmx version the importer runs (verify errs above it).
    pub ceiling: Option<u32>,
    /// Controllers accepted.
    pub buses: &'static [Bus],
    /// NIC models accepted.
    pub nics: &'static [Nic],
    /// EFI firmware can be expressed and honoured.
    pub efi: bool,
    /// `ovf:compression` on a File.
    pub compression: Tolerance,
    /// A `vbox:Machine` section.
    pub vbox_machine: Tolerance,
    /// `vmw:ExtraConfig` keys (prefixes) passed through; `None` when not checked.
    pub extra_config: Option<&'static [&'static str]>,
    /// Most disks in one package.
    pub max_disks: Option<usize>,
    /// Guest OS names (spec `vm.os`) the importer converts; `None` for any.
    pub oses: Option<&'static [&'static str]>,
    /// Item ResourceTypes the importer makes a device of; an `ovf:required` item of
    /// another type is refused. `None` when not checked.
    pub devices: Option<&'static [u32]>,
}

/// ResourceTypes vSphere makes devices of (other, CPU, memory, IDE, SCSI, NIC, floppy,
/// CD/DVD, disk, other storage, serial, parallel, USB, graphics).
const VMWARE_DEVICES: &[u32] = &[1, 3, 4, 5, 6, 10, 14, 15, 16, 17, 20, 21, 22, 23, 24];
/// ResourceTypes VirtualBox's ovfreader.cpp handles (35 is its sound card).
const VBOX_DEVICES: &[u32] = &[3, 4, 5, 6, 10, 14, 15, 17, 20, 23, 35];

/// Every controller kiln writes.
pub const ALL_BUSES: &[Bus] = &[
    Bus::Ide,
    Bus::Sata,
    Bus::Scsi,
    Bus::Nvme,
    Bus::LsiLogicSas,
    Bus::Pvscsi,
    Bus::BusLogic,
];
/// VirtualBox's importer: its SCSI controller is LsiLogic, LsiLogicSas or BusLogic
/// (ApplianceImplImport.cpp), so VMware's paravirtual SCSI has no counterpart there.
const VBOX_BUSES: &[Bus] = &[
    Bus::Ide,
    Bus::Sata,
    Bus::Scsi,
    Bus::Nvme,
    Bus::LsiLogicSas,
    Bus::BusLogic,
];
const VMWARE_NICS: &[Nic] = &[Nic::E1000, Nic::E1000e, Nic::Vmxnet3];
const ALL_NICS: &[Nic] = &[Nic::E1000, Nic::E1000e, Nic::Vmxnet3, Nic::Virtio];

/// ExtraConfig keys kiln lets through for VMware targets: guest data (`guestinfo.*`, read
/// by cloud-init's VMware datasource), disk UUIDs and time sync. vCenter filters other keys
/// on OVF deploy (its `ovf.extraconfig` block list) or they change the host's behaviour, so
/// verify reports anything else. This is kiln's list, not a VMware one.
pub const EXTRA_CONFIG_ALLOWED: &[&str] = &[
    "guestinfo.",
    "disk.EnableUUID",
    "tools.syncTime",
    "time.synchronize.",
    "tools.guest.desktop.autolock",
];

const VMWARE: Rules = Rules {
    name: "vmware",
    family: Target::Vmware,
    needs_vmx: true,
    hardware: Some(13),
    ceiling: None,
    buses: ALL_BUSES,
    nics: VMWARE_NICS,
    efi: true,
    compression: Tolerance::Warning,
    vbox_machine: Tolerance::Warning,
    extra_config: Some(EXTRA_CONFIG_ALLOWED),
    max_disks: None,
    oses: None,
    devices: Some(VMWARE_DEVICES),
};

/// AWS VM Import's Linux guests (its "Operating systems" requirements list 64-bit
/// distributions only; it detects the distribution on the disk).
const AWS_OSES: &[&str] = &["ubuntu-64", "debian-64", "linux-64"];

impl Profile {
    /// Every profile, in table order.
    pub const ALL: [Profile; 9] = [
        Profile::Vmware,
        Profile::Esxi67,
        Profile::Esxi7,
        Profile::Esxi8,
        Profile::Workstation17,
        Profile::Virtualbox7,
        Profile::Glance,
        Profile::AwsVmimport,
        Profile::Generic,
    ];

    /// Every spec name, aliases included.
    pub fn names() -> Vec<&'static str> {
        let mut names: Vec<&str> = Self::ALL.iter().map(|p| p.rules().name).collect();
        names.push("virtualbox");
        names
    }

    /// The profile a spec name stands for.
    pub fn from_name(name: &str) -> Option<Profile> {
        if name == "virtualbox" {
            return Some(Profile::Virtualbox7);
        }
        Self::ALL.into_iter().find(|p| p.rules().name == name)
    }

    /// Its spec name.
    pub fn name(self) -> &'static str {
        self.rules().name
    }

    /// Its rules.
    pub fn rules(self) -> Rules {
        let esxi = |name, hardware, ceiling| Rules {
            name,
            hardware: Some(hardware),
            ceiling: Some(ceiling),
            compression: Tolerance::Error,
            ..VMWARE
        };
        let open = |name, max_disks| Rules {
            name,
            needs_vmx: false,
            hardware: None,
            nics: ALL_NICS,
            compression: Tolerance::Tolerated,
            vbox_machine: Tolerance::Tolerated,
            extra_config: None,
            max_disks,
            devices: None,
            ..VMWARE
        };
        match self {
            Profile::Vmware => VMWARE,
            Profile::Esxi67 => esxi("esxi-6.7", 14, 14),
            Profile::Esxi7 => esxi("esxi-7", 17, 19),
            Profile::Esxi8 => esxi("esxi-8", 20, 21),
            Profile::Workstation17 => Rules {
                compression: Tolerance::Tolerated,
                ..esxi("workstation-17", 20, 21)
            },
            Profile::Virtualbox7 => Rules {
                name: "virtualbox-7",
                family: Target::Virtualbox,
                needs_vmx: false,
                hardware: None,
                nics: &[Nic::E1000, Nic::Virtio],
                buses: VBOX_BUSES,
                devices: Some(VBOX_DEVICES),
                efi: false,
                compression: Tolerance::Tolerated,
                vbox_machine: Tolerance::Tolerated,
                extra_config: None,
                ..VMWARE
            },
            Profile::Glance => open("glance", Some(1)),
            Profile::AwsVmimport => Rules {
                name: "aws-vmimport",
                hardware: None,
                buses: &[Bus::Ide, Bus::Sata, Bus::Scsi],
                oses: Some(AWS_OSES),
                ..VMWARE
            },
            Profile::Generic => open("generic", None),
        }
    }

    /// The vmx version this profile's first release runs (warning above it, up to the
    /// ceiling).
    pub fn base_hardware(self) -> Option<u32> {
        self.rules().ceiling.and(self.rules().hardware)
    }
}

/// What a list of profiles agrees on: the descriptor kiln writes for all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The profiles, as listed (duplicates removed).
    pub profiles: Vec<Profile>,
    /// The descriptor dialect.
    pub target: Target,
    /// The vmx version written (VMware dialect); `None` for the writer's default.
    pub hardware: Option<u32>,
    /// The NIC for adapters without a model; `None` for the dialect's default.
    pub nic: Option<Nic>,
    /// Write `ovf:capacityAllocationUnits` (every profile but the `vmware` and
    /// `virtualbox` aliases, whose descriptors stay byte for byte what they were).
    pub capacity_units: bool,
}

impl Default for Resolved {
    fn default() -> Self {
        Self::of(&[Profile::Vmware])
    }
}

impl Resolved {
    /// The common denominator of `profiles` (not empty): VirtualBox's dialect only when
    /// every profile with a preference is VirtualBox, the lowest hardware version, and a
    /// NIC every profile accepts. Conflicts are the validator's job ([`Resolved::conflict`]).
    pub fn of(profiles: &[Profile]) -> Self {
        let mut list: Vec<Profile> = Vec::new();
        for p in profiles {
            if !list.contains(p) {
                list.push(*p);
            }
        }
        let opinionated: Vec<Rules> = (list.iter().map(|p| p.rules()))
            .filter(|r| r.needs_vmx || r.family == Target::Virtualbox)
            .collect();
        let target = if !opinionated.is_empty()
            && opinionated.iter().all(|r| r.family == Target::Virtualbox)
        {
            Target::Virtualbox
        } else {
            Target::Vmware
        };
        let hardware = match target {
            Target::Vmware => list.iter().filter_map(|p| p.rules().hardware).min(),
            Target::Virtualbox => None,
        };
        let default_nic = match target {
            Target::Vmware => Nic::Vmxnet3,
            Target::Virtualbox => Nic::E1000,
        };
        let accepted = |n: Nic| list.iter().all(|p| p.rules().nics.contains(&n));
        let nic = if accepted(default_nic) {
            None
        } else {
            ALL_NICS.iter().copied().find(|n| accepted(*n))
        };
        let capacity_units =
            (list.iter()).any(|p| !matches!(p, Profile::Vmware | Profile::Virtualbox7));
        Self {
            profiles: list,
            target,
            hardware,
            nic,
            capacity_units,
        }
    }

    /// The first two profiles that disagree on `ok`: one accepting, one refusing; or the
    /// first refusing one alone when none accepts.
    pub fn conflict(&self, ok: impl Fn(&Rules) -> bool) -> Option<(Profile, Option<Profile>)> {
        let refuses = self.profiles.iter().find(|p| !ok(&p.rules()))?;
        let accepts = self.profiles.iter().find(|p| ok(&p.rules()));
        Some((*refuses, accepts.copied()))
    }

    /// Whether `p` is one of the profiles.
    pub fn has(&self, p: Profile) -> bool {
        self.profiles.contains(&p)
    }

    /// The names, comma separated.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.profiles.iter().map(|p| p.name()).collect();
        names.join(", ")
    }
}

/// The spec name of a NIC model.
pub fn nic_name(n: Nic) -> &'static str {
    match n {
        Nic::E1000 => "e1000",
        Nic::E1000e => "e1000e",
        Nic::Vmxnet3 => "vmxnet3",
        Nic::Virtio => "virtio",
    }
}

/// The controller an Item of `resource_type` and `subtype` is (case-insensitive, in the
/// spellings ovftool, VirtualBox and kiln write); `None` for other items and unknown
/// subtypes. A SCSI controller without a subtype is LSI Logic, as both importers take it.
pub fn bus_of(resource_type: u32, subtype: Option<&str>) -> Option<Bus> {
    let sub = subtype.map(str::to_ascii_lowercase);
    match (resource_type, sub.as_deref()) {
        (5, _) => Some(Bus::Ide),
        (6, None | Some("lsilogic")) => Some(Bus::Scsi),
        (6, Some("lsilogicsas" | "lsilogic-sas")) => Some(Bus::LsiLogicSas),
        (6, Some("virtualscsi" | "pvscsi")) => Some(Bus::Pvscsi),
        (6, Some("buslogic")) => Some(Bus::BusLogic),
        (20, Some("ahci" | "vmware.sata.ahci")) => Some(Bus::Sata),
        (20, Some("nvme" | "vmware.nvme.controller")) => Some(Bus::Nvme),
        _ => None,
    }
}

/// The NIC model of a ResourceSubType (case-insensitive); `None` when kiln does not know it.
pub fn nic_of(subtype: &str) -> Option<Nic> {
    match subtype.to_ascii_lowercase().as_str() {
        "e1000" => Some(Nic::E1000),
        "e1000e" => Some(Nic::E1000e),
        "vmxnet3" => Some(Nic::Vmxnet3),
        "virtio" | "virtio-net" => Some(Nic::Virtio),
        _ => None,
    }
}

/// The spec name of a controller.
pub fn bus_name(b: Bus) -> &'static str {
    match b {
        Bus::Ide => "ide",
        Bus::Sata => "sata",
        Bus::Scsi => "scsi",
        Bus::Nvme => "nvme",
        Bus::LsiLogicSas => "lsilogicsas",
        Bus::Pvscsi => "pvscsi",
        Bus::BusLogic => "buslogic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_keep_todays_descriptors() {
        let vmware = Resolved::of(&[Profile::Vmware]);
        assert_eq!(
            (vmware.target, vmware.hardware, vmware.nic),
            (Target::Vmware, Some(13), None)
        );
        let vbox = Resolved::of(&[Profile::from_name("virtualbox").unwrap()]);
        assert_eq!(
            (vbox.target, vbox.hardware, vbox.nic),
            (Target::Virtualbox, None, None)
        );
    }

    #[test]
    fn a_list_takes_the_lowest_family_and_a_common_nic() {
        let r = Resolved::of(&[Profile::Esxi8, Profile::Esxi67, Profile::Virtualbox7]);
        assert_eq!(r.target, Target::Vmware);
        assert_eq!(r.hardware, Some(14));
        assert_eq!(r.nic, Some(Nic::E1000));
        let r = Resolved::of(&[Profile::Virtualbox7, Profile::Glance]);
        assert_eq!(r.target, Target::Virtualbox);
    }

    #[test]
    fn a_conflict_names_a_refusing_and_an_accepting_profile() {
        let r = Resolved::of(&[Profile::Esxi7, Profile::Virtualbox7]);
        let c = r.conflict(|rules| rules.nics.contains(&Nic::Vmxnet3));
        assert_eq!(c, Some((Profile::Virtualbox7, Some(Profile::Esxi7))));
        assert_eq!(r.conflict(|rules| rules.nics.contains(&Nic::E1000)), None);
    }

    #[test]
    fn names_round_trip() {
        for p in Profile::ALL {
            assert_eq!(Profile::from_name(p.name()), Some(p));
        }
        assert_eq!(Profile::Esxi7.base_hardware(), Some(17));
        assert_eq!(Profile::Vmware.base_hardware(), None);
    }
}
