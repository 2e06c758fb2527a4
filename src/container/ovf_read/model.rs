//! The typed model of a descriptor read from a package: what DSP0243 (OVF 1.x and 2.x)
//! says a package holds, kept as written where importers disagree on the meaning (units,
//! subtypes) so the checks can judge it. Vendor extensions (`vmw:`, `vbox:Machine`, ...)
//! are kept as opaque [`Extension`]s, except VMware's `vmw:Config`/`vmw:ExtraConfig`
//! key-value settings.

/// Which OVF envelope namespace the descriptor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OvfVersion {
    /// `http://schemas.dmtf.org/ovf/envelope/1` (OVF 1.0 and 1.1).
    V1,
    /// `http://schemas.dmtf.org/ovf/envelope/2` (OVF 2.x).
    V2,
}

/// A whole descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Envelope namespace.
    pub version: OvfVersion,
    /// The `ovf:version` attribute, when given (`1.0`, `2.0`).
    pub spec_version: Option<String>,
    /// References/File, in order.
    pub files: Vec<FileRef>,
    /// DiskSection/Disk (and SharedDiskSection), in order.
    pub disks: Vec<Disk>,
    /// NetworkSection/Network, in order.
    pub networks: Vec<Network>,
    /// DeploymentOptionSection/Configuration, in order.
    pub deployment_options: Vec<DeploymentOption>,
    /// The VirtualSystem or VirtualSystemCollection.
    pub content: Option<Content>,
    /// Envelope-level sections kiln does not model.
    pub extensions: Vec<Extension>,
}

/// One File of the References section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// `ovf:id`.
    pub id: String,
    /// `ovf:href` (a member name, a relative path, or a URL).
    pub href: String,
    /// `ovf:size` in bytes, when given and numeric.
    pub size: Option<u64>,
    /// `ovf:size` as written, when it is not a number.
    pub size_text: Option<String>,
    /// `ovf:compression` (`gzip`, `identity`, ...).
    pub compression: Option<String>,
    /// `ovf:chunkSize`, when the file is split into chunks.
    pub chunk_size: Option<u64>,
    /// Line of the element.
    pub line: u32,
}

/// One Disk of the DiskSection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// `ovf:diskId`.
    pub id: String,
    /// `ovf:fileRef`; `None` for a disk created empty at import.
    pub file_ref: Option<String>,
    /// `ovf:capacity` as written (a number or `${property}`).
    pub capacity: String,
    /// `ovf:capacityAllocationUnits` as written.
    pub units: Option<String>,
    /// Capacity in bytes, when both the number and the unit could be read.
    pub capacity_bytes: Option<u64>,
    /// `ovf:populatedSize` in bytes.
    pub populated_size: Option<u64>,
    /// `ovf:format` URI.
    pub format: Option<String>,
    /// `ovf:parentRef` (delta disks).
    pub parent_ref: Option<String>,
    /// Line of the element.
    pub line: u32,
}

/// One Network of the NetworkSection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// `ovf:name`.
    pub name: String,
    /// Description.
    pub description: Option<String>,
}

/// One Configuration of the DeploymentOptionSection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentOption {
    /// `ovf:id`.
    pub id: String,
    /// Label.
    pub label: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// `ovf:default="true"`.
    pub default: bool,
}

/// What the envelope describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// One machine.
    System(Box<VirtualSystem>),
    /// A vApp of machines and nested collections.
    Collection(Box<Collection>),
}

/// Sections a VirtualSystem and a VirtualSystemCollection share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Common {
    /// `ovf:id`.
    pub id: String,
    /// Name.
    pub name: Option<String>,
    /// Info.
    pub info: Option<String>,
    /// ProductSections in order.
    pub products: Vec<Product>,
    /// EulaSection licences in order.
    pub eulas: Vec<String>,
    /// AnnotationSection text.
    pub annotation: Option<String>,
    /// Sections and elements kiln does not model (`vbox:Machine`, `vmw:BootOrderSection`, ...).
    pub extensions: Vec<Extension>,
}

/// A VirtualSystemCollection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    /// Id, name and shared sections.
    pub common: Common,
    /// Members in order.
    pub members: Vec<Content>,
}

/// A VirtualSystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualSystem {
    /// Id, name and shared sections.
    pub common: Common,
    /// OperatingSystemSection.
    pub os: Option<OperatingSystem>,
    /// VirtualHardwareSections (one per hardware family or deployment option).
    pub hardware: Vec<Hardware>,
}

/// OperatingSystemSection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatingSystem {
    /// `ovf:id`: the CIM_OperatingSystem OsType number.
    pub id: Option<u32>,
    /// `ovf:version`.
    pub version: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// `vmw:osType` (VMware's guest id).
    pub vmware_os_type: Option<String>,
    /// `vbox:OSType` (VirtualBox's guest type).
    pub virtualbox_os_type: Option<String>,
}

/// One VirtualHardwareSection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hardware {
    /// `vssd:VirtualSystemType`, split at whitespace (`vmx-13 vmx-14`).
    pub system_types: Vec<String>,
    /// `ovf:transport` (`com.vmware.guestInfo`, `iso`).
    pub transport: Option<String>,
    /// `ovf:id` of the section (DSP0243 2.x lets several sections coexist).
    pub id: Option<String>,
    /// Items, StorageItems and EthernetPortItems, in order.
    pub items: Vec<Item>,
    /// `vmw:Config` and `vmw:ExtraConfig` settings of the section.
    pub settings: Vec<VendorSetting>,
    /// Other vendor elements inside the section.
    pub extensions: Vec<Extension>,
}

/// Which CIM class an item's properties come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemClass {
    /// `Item` with `rasd:` properties.
    Resource,
    /// OVF 2.x `StorageItem` with `sasd:` properties.
    Storage,
    /// OVF 2.x `EthernetPortItem` with `epasd:` properties.
    EthernetPort,
}

/// One hardware item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Element kind.
    pub class: ItemClass,
    /// ResourceType (DMTF value map: 3 CPU, 4 memory, 5 IDE, 6 SCSI, 10 NIC, 15/16 CD, 17 disk, 20 other storage, ...).
    pub resource_type: Option<u32>,
    /// ResourceSubType (`lsilogic`, `VmxNet3`, `AHCI`, ...).
    pub subtype: Option<String>,
    /// InstanceID.
    pub instance_id: Option<String>,
    /// Parent's InstanceID.
    pub parent: Option<String>,
    /// Address (controller number).
    pub address: Option<String>,
    /// AddressOnParent (unit number).
    pub address_on_parent: Option<String>,
    /// HostResource values (`ovf:/disk/vmdisk1`, `ovf:/file/file2`).
    pub host_resources: Vec<String>,
    /// Connection values (network names).
    pub connections: Vec<String>,
    /// VirtualQuantity.
    pub quantity: Option<u64>,
    /// AllocationUnits.
    pub units: Option<String>,
    /// ElementName.
    pub element_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// AutomaticAllocation (a NIC's or CD's connected-at-power-on state).
    pub automatic_allocation: Option<bool>,
    /// Address of a NIC (MAC), when given.
    pub mac_address: Option<String>,
    /// `ovf:required` (defaults to true).
    pub required: bool,
    /// `ovf:configuration`: the deployment options the item belongs to.
    pub configuration: Option<String>,
    /// `ovf:bound` (`min`, `max`, `normal`) for range items.
    pub bound: Option<String>,
    /// `vmw:Config` settings of the item.
    pub settings: Vec<VendorSetting>,
    /// Namespace URIs of the CIM properties that were not the DMTF one (VirtualBox's
    /// look-alike `....xsd` namespaces), for the checks.
    pub odd_namespaces: Vec<String>,
    /// Line of the element.
    pub line: u32,
}

/// A `vmw:Config` or `vmw:ExtraConfig` key-value setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorSetting {
    /// `ExtraConfig` (passed to the VM's configuration file) or `Config` (a vSphere API property).
    pub extra: bool,
    /// `vmw:key`.
    pub key: String,
    /// `vmw:value`.
    pub value: String,
    /// `ovf:required`.
    pub required: bool,
}

/// One ProductSection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Product {
    /// `ovf:class`.
    pub class: Option<String>,
    /// `ovf:instance`.
    pub instance: Option<String>,
    /// Product.
    pub product: Option<String>,
    /// Vendor.
    pub vendor: Option<String>,
    /// Version.
    pub version: Option<String>,
    /// FullVersion.
    pub full_version: Option<String>,
    /// ProductUrl.
    pub product_url: Option<String>,
    /// VendorUrl.
    pub vendor_url: Option<String>,
    /// Properties in order, each with the Category in force where it appears.
    pub properties: Vec<Property>,
}

/// One ProductSection Property.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Property {
    /// `ovf:key`.
    pub key: String,
    /// `ovf:type` (`string`, `boolean`, `uint16`, ...).
    pub kind: Option<String>,
    /// `ovf:qualifiers` (`MinLen(2)`, `ValueMap{...}`).
    pub qualifiers: Option<String>,
    /// `ovf:value` (the default).
    pub value: Option<String>,
    /// `ovf:userConfigurable="true"`.
    pub user_configurable: bool,
    /// `ovf:password="true"`.
    pub password: bool,
    /// Label.
    pub label: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// The Category that precedes it in its section.
    pub category: Option<String>,
}

/// An element kiln keeps without reading inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Namespace URI.
    pub ns: Option<String>,
    /// Local name.
    pub name: String,
    /// `ovf:required` (true when absent, as DSP0243 says).
    pub required: bool,
    /// Line of the element.
    pub line: u32,
}

impl Envelope {
    /// The File with id `id`.
    pub fn file(&self, id: &str) -> Option<&FileRef> {
        self.files.iter().find(|f| f.id == id)
    }

    /// Every VirtualSystem, depth first.
    pub fn systems(&self) -> Vec<&VirtualSystem> {
        let mut out = Vec::new();
        if let Some(content) = &self.content {
            content.collect_systems(&mut out);
        }
        out
    }

    /// Every ProductSection property, in document order.
    pub fn properties(&self) -> Vec<&Property> {
        let mut out = Vec::new();
        if let Some(content) = &self.content {
            content.collect_properties(&mut out);
        }
        out
    }
}

impl Content {
    /// The shared sections.
    pub fn common(&self) -> &Common {
        match self {
            Content::System(s) => &s.common,
            Content::Collection(c) => &c.common,
        }
    }

    fn collect_systems<'a>(&'a self, out: &mut Vec<&'a VirtualSystem>) {
        match self {
            Content::System(s) => out.push(s),
            Content::Collection(c) => c.members.iter().for_each(|m| m.collect_systems(out)),
        }
    }

    fn collect_properties<'a>(&'a self, out: &mut Vec<&'a Property>) {
        out.extend(self.common().products.iter().flat_map(|p| &p.properties));
        if let Content::Collection(c) = self {
            c.members.iter().for_each(|m| m.collect_properties(out));
        }
    }
}
