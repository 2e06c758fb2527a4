//! The OVF descriptor (DMTF DSP0243 1.1, schema DSP8023 1.1.1) of a virtual machine, as
//! VMware's ovftool and VirtualBox's importer read it, written through quick-xml
//! ([`super::ovf_xml`]); ProductSections and deployment options are
//! [`super::ovf_product`]'s, USB, video and Secure Boot [`super::ovf_devices`]'s.
//!
//! The descriptor uses the OVF 1.x envelope namespace (what both importers write). CIM
//! properties inside `Item` and `System` appear in schema (alphabetical) order, every
//! Section starts with `Info`, and every Item has an `ElementName`, `InstanceID` and
//! `ResourceType`. Hardware per target:
//!
//! | | `vmware` (default) | `virtualbox` |
//! |---|---|---|
//! | `VirtualSystemType` | `vmx-13` (a profile's version, see `profile`) | `virtualbox-2.2` |
//! | default disk controller | SCSI `lsilogic` | SATA `AHCI` |
//! | SATA / NVMe subtype | `vmware.sata.ahci` / `vmware.nvme.controller` | `AHCI` / `NVMe` |
//! | default NIC | `VmxNet3` | `E1000` |
//! | guest OS | CIM id + `vmw:osType` | CIM id |
//! | EFI firmware | `vmw:Config firmware=efi` | refused by validation |
//! | CD-ROM (IDE) | File + `vmware.cdrom.iso` on `ovf:/file/fileN` | Ecma-119 Disk + `ovf:/disk/isoN` |
//!
//! In an OVA the VMDK's `ovf:size` is padded with spaces to [`SIZE_WIDTH`] characters
//! (whitespace between attributes), so the descriptor's length does not depend on it and the
//! disk can be placed before its size is known.

use super::GuestOs;
use super::ovf_devices::UsbController;
use super::ovf_product::{self, DeploymentOption, ProductSection, Property};
use super::ovf_read::{NS_OVF1 as NS_OVF, NS_RASD, NS_VMW, NS_VSSD};
use super::ovf_xml::Xml;

/// Characters reserved for the disk file's `ovf:size` value (`u64::MAX` has 20 digits).
pub const SIZE_WIDTH: usize = 20;

/// The disk format URI VMware and VirtualBox import (a streamOptimized VMDK).
pub const VMDK_STREAM_FORMAT: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// The disk format URI of an ISO 9660 image (ECMA-119), as VirtualBox exports a CD-ROM.
pub const ISO_FORMAT: &str =
    "http://www.ecma-international.org/publications/standards/Ecma-119.htm";

/// VMware's subtype of a CD-ROM drive backed by an ISO file.
const CDROM_ISO: &str = "vmware.cdrom.iso";

/// The importer a descriptor is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// VMware vSphere, Workstation, Fusion (its packages also import in VirtualBox).
    #[default]
    Vmware,
    /// Oracle VirtualBox.
    Virtualbox,
}

impl Target {
    /// The controller a disk without one hangs off.
    pub fn default_bus(self) -> Bus {
        match self {
            Target::Vmware => Bus::Scsi,
            Target::Virtualbox => Bus::Sata,
        }
    }
}

/// The bus the disk hangs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// IDE (PIIX4).
    Ide,
    /// SATA (AHCI).
    Sata,
    /// Parallel SCSI (LSI Logic), spec `scsi` or `lsilogic`.
    Scsi,
    /// NVMe.
    Nvme,
    /// SAS SCSI (LSI Logic SAS), subtype `lsilogicsas`.
    LsiLogicSas,
    /// VMware paravirtual SCSI, subtype `VirtualSCSI` (what ovftool writes for PVSCSI).
    Pvscsi,
    /// BusLogic parallel SCSI, subtype `buslogic`.
    BusLogic,
}

impl Bus {
    /// Whether the controller is a SCSI one (ResourceType 6, unit 7 is the initiator's).
    pub fn is_scsi(self) -> bool {
        matches!(
            self,
            Bus::Scsi | Bus::LsiLogicSas | Bus::Pvscsi | Bus::BusLogic
        )
    }

    /// The VMDK `ddb.adapterType` a disk on this controller says, when not the VMDK
    /// default (`ide`): VMware's VMDK knows only ide, buslogic, lsilogic and legacyESX, and
    /// its own exports say `lsilogic` for LSI Logic SAS and PVSCSI disks.
    pub fn vmdk_adapter(self) -> Option<&'static str> {
        match self {
            Bus::Scsi | Bus::LsiLogicSas | Bus::Pvscsi => Some("lsilogic"),
            Bus::BusLogic => Some("buslogic"),
            Bus::Ide | Bus::Sata | Bus::Nvme => None,
        }
    }
}

/// A network adapter model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    /// Intel e1000.
    E1000,
    /// Intel e1000e.
    E1000e,
    /// VMware vmxnet3.
    Vmxnet3,
    /// virtio-net (VirtualBox only).
    Virtio,
}

/// One adapter and the network it connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    /// Network name (NetworkSection).
    pub network: String,
    /// Model; the target's default when `None`.
    pub model: Option<Nic>,
    /// Static MAC address (`rasd:Address`), lower case; the importer's choice when `None`.
    pub mac: Option<String>,
    /// Connected at power-on (`rasd:AutomaticAllocation`).
    pub connected: bool,
}

/// Product metadata (ProductSection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Product {
    /// Product name.
    pub name: String,
    /// Vendor.
    pub vendor: Option<String>,
    /// Version.
    pub version: Option<String>,
    /// Product URL.
    pub url: Option<String>,
}

/// Everything a descriptor says about the machine (its disks are [`DiskFile`]s).
#[derive(Debug, Clone)]
pub struct Machine {
    /// VirtualSystem id and name.
    pub name: String,
    /// Annotation.
    pub description: Option<String>,
    /// ProductSection, when any product metadata is given.
    pub product: Option<Product>,
    /// Licence text (EulaSection).
    pub eula: Option<String>,
    /// Guest OS.
    pub os: GuestOs,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Boot with EFI firmware (VMware only).
    pub efi: bool,
    /// Importer.
    pub target: Target,
    /// VMware hardware version (`vmx-N`); `None` writes `vmx-13`. Ignored for VirtualBox.
    pub hardware: Option<u32>,
    /// Write `ovf:capacityAllocationUnits` (profiles other than `vmware`/`virtualbox`).
    pub capacity_units: bool,
    /// Network adapters, in order.
    pub adapters: Vec<Adapter>,
    /// OVF environment properties (ProductSection), handed to the guest through VMware's
    /// `com.vmware.guestInfo` transport.
    pub properties: Vec<Property>,
    /// ProductSections besides the appliance's own (`ovf:class`).
    pub sections: Vec<ProductSection>,
    /// Deployment configurations (DeploymentOptionSection), each with its CPUs and memory.
    pub options: Vec<DeploymentOption>,
    /// USB controller, when the machine has one.
    pub usb: Option<UsbController>,
    /// Video memory in KiB (VMware), when not the importer's default.
    pub video_kib: Option<u64>,
    /// UEFI Secure Boot (with `efi`, VMware only).
    pub secure_boot: bool,
}

/// The disk file a descriptor references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    /// File name inside the package.
    pub href: String,
    /// File size in bytes.
    pub size: u64,
    /// Guest-visible capacity in bytes.
    pub capacity: u64,
    /// Characters the `ovf:size` value is padded to (with spaces after it): [`SIZE_WIDTH`]
    /// makes the descriptor's length independent of the size; 0 pads nothing.
    pub size_width: usize,
    /// Controller; the target's default when `None`.
    pub bus: Option<Bus>,
}

/// An ISO image the package carries for a CD-ROM drive (on the IDE controller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoFile {
    /// File name inside the package.
    pub href: String,
    /// File size in bytes as written (zero before), padded as [`DiskFile::size_width`].
    pub size: u64,
    /// The image's length, known before it is written: a VirtualBox Disk's capacity,
    /// which must not change the descriptor's length.
    pub capacity: u64,
    /// As [`DiskFile::size_width`].
    pub size_width: usize,
}

/// Most disks on one controller, per bus: IDE units 0-1, SCSI 0-15 without 7, SATA 0-29,
/// NVMe 0-14 (VMware's limits; kiln puts one controller of each kind used).
pub fn max_disks(bus: Bus) -> usize {
    match bus {
        Bus::Ide => 2,
        Bus::Scsi | Bus::LsiLogicSas | Bus::Pvscsi | Bus::BusLogic | Bus::Nvme => 15,
        Bus::Sata => 30,
    }
}

impl Machine {
    /// The descriptor text for a machine with `disks`, in guest order, and CD-ROM drives
    /// holding `isos`.
    pub fn render(&self, disks: &[DiskFile], isos: &[IsoFile]) -> String {
        let mut x = Xml::default();
        x.declaration();
        let mut namespaces = vec![
            ("xmlns", NS_OVF),
            ("xmlns:ovf", NS_OVF),
            ("xmlns:rasd", NS_RASD),
            ("xmlns:vssd", NS_VSSD),
        ];
        if self.target == Target::Vmware {
            namespaces.push(("xmlns:vmw", NS_VMW));
        }
        x.open("Envelope", &namespaces);
        x.open("References", &[]);
        for (i, disk) in disks.iter().enumerate() {
            file_ref(&mut x, i + 1, &disk.href, disk.size, disk.size_width);
        }
        for (i, iso) in isos.iter().enumerate() {
            file_ref(
                &mut x,
                disks.len() + i + 1,
                &iso.href,
                iso.size,
                iso.size_width,
            );
        }
        x.close("References");
        x.open("DiskSection", &[]);
        x.leaf("Info", "Virtual disk information");
        for (i, disk) in disks.iter().enumerate() {
            let n = i + 1;
            self.disk(
                &mut x,
                disk.capacity,
                &format!("vmdisk{n}"),
                n,
                VMDK_STREAM_FORMAT,
            );
        }
        // VirtualBox finds a CD-ROM's image through a Disk (as its own export writes it);
        // vSphere takes only VMDK Disks and finds the image through its File.
        if self.target == Target::Virtualbox {
            for (i, iso) in isos.iter().enumerate() {
                let id = format!("iso{}", i + 1);
                self.disk(&mut x, iso.capacity, &id, disks.len() + i + 1, ISO_FORMAT);
            }
        }
        x.close("DiskSection");
        self.networks(&mut x);
        ovf_product::deployment_options(&mut x, &self.options);
        x.open("VirtualSystem", &[("ovf:id", &self.name)]);
        x.leaf("Info", "A virtual machine");
        x.leaf("Name", &self.name);
        self.product(&mut x);
        self.annotation_and_eula(&mut x);
        self.operating_system(&mut x);
        self.hardware(&mut x, disks, isos);
        x.close("VirtualSystem");
        x.close("Envelope");
        x.finish()
    }

    /// A DiskSection Disk of `capacity` bytes whose file is References file `file`.
    fn disk(&self, x: &mut Xml, capacity: u64, id: &str, file: usize, format: &str) {
        let (value, units) = self.capacity(capacity);
        let file = format!("file{file}");
        let mut attrs = vec![("ovf:capacity", value.as_str())];
        attrs.extend(units.map(|u| ("ovf:capacityAllocationUnits", u)));
        attrs.extend([
            ("ovf:diskId", id),
            ("ovf:fileRef", &file),
            ("ovf:format", format),
        ]);
        x.empty("Disk", &attrs, 0);
    }

    /// One Network per distinct name, in first-use order.
    fn networks(&self, x: &mut Xml) {
        let names = self.network_names();
        if names.is_empty() {
            return;
        }
        x.open("NetworkSection", &[]);
        x.leaf("Info", "The logical networks");
        for name in names {
            x.open("Network", &[("ovf:name", name)]);
            x.leaf("Description", &format!("The {name} network"));
            x.close("Network");
        }
        x.close("NetworkSection");
    }

    fn network_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for a in &self.adapters {
            if !names.contains(&a.network.as_str()) {
                names.push(&a.network);
            }
        }
        names
    }

    /// The appliance's ProductSection (product metadata, then its properties), when it
    /// has either, then the other ProductSections.
    fn product(&self, x: &mut Xml) {
        if self.product.is_some() || !self.properties.is_empty() {
            ovf_product::product_section(x, &[], self.product.as_ref(), &self.properties);
        }
        ovf_product::other_sections(x, &self.sections);
    }

    /// Whether any ProductSection has properties (handed over by `com.vmware.guestInfo`).
    fn has_properties(&self) -> bool {
        !self.properties.is_empty() || self.sections.iter().any(|s| !s.properties.is_empty())
    }

    fn annotation_and_eula(&self, x: &mut Xml) {
        if let Some(d) = &self.description {
            x.open("AnnotationSection", &[]);
            x.leaf("Info", "A human-readable annotation");
            x.leaf("Annotation", d);
            x.close("AnnotationSection");
        }
        if let Some(text) = &self.eula {
            x.open("EulaSection", &[]);
            x.leaf("Info", "License agreement for the virtual system");
            x.leaf("License", text);
            x.close("EulaSection");
        }
    }

    fn operating_system(&self, x: &mut Xml) {
        let cim = self.os.cim.to_string();
        let mut attrs = vec![("ovf:id", cim.as_str())];
        if self.target == Target::Vmware {
            attrs.push(("vmw:osType", self.os.vmware));
        }
        x.open("OperatingSystemSection", &attrs);
        x.leaf("Info", "The kind of installed guest operating system");
        x.leaf("Description", self.os.description);
        x.close("OperatingSystemSection");
    }

    fn hardware(&self, x: &mut Xml, disks: &[DiskFile], isos: &[IsoFile]) {
        if self.has_properties() {
            x.open(
                "VirtualHardwareSection",
                &[("ovf:transport", "com.vmware.guestInfo")],
            );
        } else {
            x.open("VirtualHardwareSection", &[]);
        }
        x.leaf("Info", "Virtual hardware requirements");
        let system_type = match self.target {
            Target::Vmware => format!("vmx-{}", self.hardware.unwrap_or(13)),
            Target::Virtualbox => "virtualbox-2.2".to_string(),
        };
        x.open("System", &[]);
        x.leaf("vssd:ElementName", "Virtual Hardware Family");
        x.leaf("vssd:InstanceID", "0");
        x.leaf("vssd:VirtualSystemIdentifier", &self.name);
        x.leaf("vssd:VirtualSystemType", &system_type);
        x.close("System");
        if self.options.is_empty() {
            self.cpu_and_memory(x, &[], self.cpus, self.memory_mib);
        }
        for o in &self.options {
            let attrs = [("ovf:configuration", o.id.as_str())];
            self.cpu_and_memory(x, &attrs, o.cpus, o.memory_mib);
        }
        let next_id = self.storage(x, disks, isos);
        for (i, a) in self.adapters.iter().enumerate() {
            let model = self.nic_subtype(a.model);
            let id = (next_id + i).to_string();
            let mac = a.mac.as_deref().map(|m| ("Address", m));
            let connected = if a.connected { "true" } else { "false" };
            let rest = [
                ("AutomaticAllocation", connected),
                ("Connection", &a.network),
                (
                    "Description",
                    &format!("{model} ethernet adapter on {}", a.network),
                ),
                ("ElementName", &format!("Network adapter {}", i + 1)),
                ("InstanceID", &id),
                ("ResourceSubType", model),
                ("ResourceType", "10"),
            ];
            // Address sorts first among the properties (schema order).
            let props: Vec<(&str, &str)> = mac.into_iter().chain(rest).collect();
            x.item(&props);
        }
        self.peripherals(x, next_id + self.adapters.len());
        self.firmware_config(x);
        x.close("VirtualHardwareSection");
    }

    /// The CPU (InstanceID 1) and memory (2) Items, with Item attributes `attrs`.
    fn cpu_and_memory(&self, x: &mut Xml, attrs: &[(&str, &str)], cpus: u32, memory_mib: u64) {
        let cpus = cpus.to_string();
        x.item_with(
            attrs,
            &[
                ("AllocationUnits", "hertz * 10^6"),
                ("Description", "Number of virtual CPUs"),
                ("ElementName", &format!("{cpus} virtual CPU(s)")),
                ("InstanceID", "1"),
                ("ResourceType", "3"),
                ("VirtualQuantity", &cpus),
            ],
        );
        let mib = memory_mib.to_string();
        x.item_with(
            attrs,
            &[
                ("AllocationUnits", "byte * 2^20"),
                ("Description", "Memory size"),
                ("ElementName", &format!("{mib} MiB of memory")),
                ("InstanceID", "2"),
                ("ResourceType", "4"),
                ("VirtualQuantity", &mib),
            ],
        );
    }

    /// One controller per bus in use (InstanceIDs from 3, in first-use order; IDE last
    /// when only CD-ROMs use it), then the disks on them, numbered from 0 on each (SCSI
    /// skips unit 7, the initiator's), then the CD-ROM drives on IDE. Returns the next
    /// free InstanceID.
    fn storage(&self, x: &mut Xml, disks: &[DiskFile], isos: &[IsoFile]) -> usize {
        let buses: Vec<Bus> = disks.iter().map(|d| self.bus(d.bus)).collect();
        let mut controllers: Vec<Bus> = Vec::new();
        let cdrom_bus = (!isos.is_empty()).then_some(Bus::Ide);
        for bus in buses.iter().chain(&cdrom_bus) {
            if !controllers.contains(bus) {
                controllers.push(*bus);
            }
        }
        for (i, bus) in controllers.iter().enumerate() {
            let (kind, subtype, name) = self.controller(*bus);
            let id = (3 + i).to_string();
            x.item(&[
                ("Address", "0"),
                ("Description", name),
                ("ElementName", name),
                ("InstanceID", &id),
                ("ResourceSubType", subtype),
                ("ResourceType", kind),
            ]);
        }
        let mut next_id = 3 + controllers.len();
        let mut units = vec![0usize; controllers.len()];
        for (i, bus) in buses.iter().enumerate() {
            let c = controllers
                .iter()
                .position(|b| b == bus)
                .unwrap_or_default();
            if bus.is_scsi() && units[c] == 7 {
                units[c] += 1;
            }
            let (unit, parent, id) = (
                units[c].to_string(),
                (3 + c).to_string(),
                next_id.to_string(),
            );
            units[c] += 1;
            next_id += 1;
            x.item(&[
                ("AddressOnParent", &unit),
                ("ElementName", &format!("Hard disk {}", i + 1)),
                ("HostResource", &format!("ovf:/disk/vmdisk{}", i + 1)),
                ("InstanceID", &id),
                ("Parent", &parent),
                ("ResourceType", "17"),
            ]);
        }
        // Present whenever there are ISOs (added above).
        let ide = (controllers.iter().position(|b| *b == Bus::Ide)).unwrap_or_default();
        for i in 0..isos.len() {
            let (unit, parent, id) = (
                units[ide].to_string(),
                (3 + ide).to_string(),
                next_id.to_string(),
            );
            units[ide] += 1;
            next_id += 1;
            let host = match self.target {
                Target::Vmware => format!("ovf:/file/file{}", disks.len() + i + 1),
                Target::Virtualbox => format!("ovf:/disk/iso{}", i + 1),
            };
            let subtype = (self.target == Target::Vmware).then_some(("ResourceSubType", CDROM_ISO));
            let name = format!("CD/DVD drive {}", i + 1);
            let props: Vec<(&str, &str)> = [
                ("AddressOnParent", unit.as_str()),
                ("AutomaticAllocation", "true"),
                ("ElementName", &name),
                ("HostResource", &host),
                ("InstanceID", &id),
                ("Parent", &parent),
            ]
            .into_iter()
            .chain(subtype)
            .chain([("ResourceType", "15")])
            .collect();
            x.item(&props);
        }
        next_id
    }

    /// The `ovf:capacity` value, and `ovf:capacityAllocationUnits` when asked: govmomi's
    /// vCenter simulator reads a capacity without units as kilobytes (1024 times too
    /// large), so profiles write the largest whole unit as ovftool does.
    fn capacity(&self, bytes: u64) -> (String, Option<&'static str>) {
        if !self.capacity_units {
            return (bytes.to_string(), None);
        }
        let (n, unit) = [
            (30, "byte * 2^30"),
            (20, "byte * 2^20"),
            (10, "byte * 2^10"),
        ]
        .into_iter()
        .find(|(shift, _)| bytes.trailing_zeros() >= *shift)
        .map_or((bytes, "byte"), |(shift, unit)| (bytes >> shift, unit));
        (n.to_string(), Some(unit))
    }

    /// `bus`, or the target's default controller.
    fn bus(&self, bus: Option<Bus>) -> Bus {
        bus.unwrap_or(self.target.default_bus())
    }

    /// ResourceType, ResourceSubType and a name for a controller of `bus`.
    fn controller(&self, bus: Bus) -> (&'static str, &'static str, &'static str) {
        let vmware = self.target == Target::Vmware;
        match (bus, vmware) {
            (Bus::Ide, _) => ("5", "PIIX4", "IDE controller 0"),
            (Bus::Scsi, _) => ("6", "lsilogic", "SCSI controller 0"),
            (Bus::LsiLogicSas, _) => ("6", "lsilogicsas", "SAS controller 0"),
            (Bus::Pvscsi, _) => ("6", "VirtualSCSI", "Paravirtual SCSI controller 0"),
            (Bus::BusLogic, _) => ("6", "buslogic", "BusLogic SCSI controller 0"),
            (Bus::Sata, true) => ("20", "vmware.sata.ahci", "SATA controller 0"),
            (Bus::Sata, false) => ("20", "AHCI", "SATA controller 0"),
            (Bus::Nvme, true) => ("20", "vmware.nvme.controller", "NVMe controller 0"),
            (Bus::Nvme, false) => ("20", "NVMe", "NVMe controller 0"),
        }
    }

    fn nic_subtype(&self, model: Option<Nic>) -> &'static str {
        let model = model.unwrap_or(match self.target {
            Target::Vmware => Nic::Vmxnet3,
            Target::Virtualbox => Nic::E1000,
        });
        match model {
            Nic::E1000 => "E1000",
            Nic::E1000e => "E1000e",
            Nic::Vmxnet3 => "VmxNet3",
            Nic::Virtio => "virtio-net",
        }
    }
}

/// A References File, its `ovf:size` padded to `width` characters.
fn file_ref(x: &mut Xml, n: usize, href: &str, size: u64, width: usize) {
    let id = format!("file{n}");
    let size = size.to_string();
    let pad = width.saturating_sub(size.len());
    x.empty(
        "File",
        &[("ovf:href", href), ("ovf:id", &id), ("ovf:size", &size)],
        pad,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::guest_os;

    fn machine(target: Target) -> Machine {
        Machine {
            name: "app".into(),
            description: Some("a <b> & c".into()),
            product: None,
            eula: None,
            os: *guest_os("ubuntu-64").unwrap(),
            cpus: 2,
            memory_mib: 2048,
            efi: false,
            target,
            hardware: None,
            capacity_units: false,
            adapters: vec![Adapter {
                network: "VM Network".into(),
                model: None,
                mac: None,
                connected: true,
            }],
            properties: Vec::new(),
            sections: Vec::new(),
            options: Vec::new(),
            usb: None,
            video_kib: None,
            secure_boot: false,
        }
    }

    fn disk(size: u64) -> [DiskFile; 1] {
        [DiskFile {
            href: "app-disk1.vmdk".into(),
            size,
            capacity: 1 << 30,
            size_width: SIZE_WIDTH,
            bus: None,
        }]
    }

    #[test]
    fn length_does_not_depend_on_the_iso_size_written() {
        let iso = |size| IsoFile {
            href: "app-seed.iso".into(),
            size,
            capacity: 57_344,
            size_width: SIZE_WIDTH,
        };
        for target in [Target::Vmware, Target::Virtualbox] {
            let m = machine(target);
            let before = m.render(&disk(0), &[iso(0)]);
            let after = m.render(&disk(9), &[iso(57_344)]);
            assert_eq!(before.len(), after.len());
            assert!(after.contains("<rasd:ResourceType>15</rasd:ResourceType>"));
        }
    }

    #[test]
    fn scsi_disks_skip_unit_7_and_buses_get_one_controller_each() {
        let m = machine(Target::Vmware);
        let mut disks: Vec<DiskFile> = (0..9)
            .map(|i| DiskFile {
                href: format!("d{i}.vmdk"),
                size: 1,
                capacity: 512,
                size_width: 0,
                bus: Some(Bus::Scsi),
            })
            .collect();
        disks[1].bus = Some(Bus::Ide);
        let text = m.render(&disks, &[]);
        assert_eq!(
            text.matches("<rasd:ResourceType>6</rasd:ResourceType>")
                .count(),
            1
        );
        assert_eq!(
            text.matches("<rasd:ResourceType>5</rasd:ResourceType>")
                .count(),
            1
        );
        assert!(text.contains("<rasd:AddressOnParent>8</rasd:AddressOnParent>"));
        assert!(!text.contains("<rasd:AddressOnParent>7</rasd:AddressOnParent>"));
        assert!(text.contains("ovf:/disk/vmdisk9"));
    }

    #[test]
    fn length_does_not_depend_on_the_disk_size() {
        let m = machine(Target::Vmware);
        assert_eq!(
            m.render(&disk(0), &[]).len(),
            m.render(&disk(u64::MAX), &[]).len()
        );
    }

    #[test]
    fn text_is_escaped() {
        let text = machine(Target::Vmware).render(&disk(1), &[]);
        assert!(text.contains("<Annotation>a &lt;b&gt; &amp; c</Annotation>"));
    }

    #[test]
    fn targets_pick_their_defaults() {
        let vmware = machine(Target::Vmware).render(&disk(1), &[]);
        assert!(vmware.contains("vmx-13") && vmware.contains("VmxNet3"));
        assert!(vmware.contains("<rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>"));
        let vbox = machine(Target::Virtualbox).render(&disk(1), &[]);
        assert!(vbox.contains("virtualbox-2.2") && vbox.contains("E1000"));
        assert!(vbox.contains("<rasd:ResourceSubType>AHCI</rasd:ResourceSubType>"));
        assert!(!vbox.contains("vmw:"));
    }
}
