//! From the element tree to the [`Envelope`]: References, DiskSection, NetworkSection,
//! DeploymentOptionSection and the VirtualSystem or VirtualSystemCollection with their
//! sections. Lenient where exporters differ and the meaning is clear (unprefixed `ovf`
//! attributes, OVF 1.0's `<Section xsi:type="ovf:DiskSection_Type">`, units spelt
//! `MegaBytes`); each such leniency leaves a warning. The hardware section is read by
//! [`super::hardware`].

use super::hardware::read_hardware;
use super::model::*;
use super::units::parse_byte_unit;
use super::xml::Element;
use super::{NS_VBOX, NS_VMW, NS_XSI, is_ovf};
use crate::container::finding::Finding;

/// Reading state: the descriptor's name for places, and the findings so far.
pub(super) struct Ctx<'a> {
    name: &'a str,
    pub findings: Vec<Finding>,
}

impl<'a> Ctx<'a> {
    pub fn new(name: &'a str) -> Self {
        Self {
            name,
            findings: Vec::new(),
        }
    }

    /// `name.ovf:LINE` of `el`.
    pub fn place(&self, el: &Element) -> String {
        format!("{}:{}", self.name, el.line)
    }

    pub fn warn(&mut self, code: &'static str, el: &Element, message: impl Into<String>) {
        let f = Finding::warning(code, message).at(self.place(el));
        self.findings.push(f);
    }

    pub fn error(&mut self, code: &'static str, el: &Element, message: impl Into<String>) {
        let f = Finding::error(code, message).at(self.place(el));
        self.findings.push(f);
    }

    /// Attribute `name` in the OVF namespace; an unprefixed one is accepted with a warning
    /// (DSP8023 qualifies every OVF attribute).
    pub fn ovf_attr<'e>(&mut self, el: &'e Element, name: &str) -> Option<&'e str> {
        let qualified = el
            .attrs
            .iter()
            .find(|a| a.name == name && is_ovf(a.ns.as_deref()));
        if let Some(a) = qualified {
            return Some(&a.value);
        }
        let plain = el.attr(None, name)?;
        let message = format!("attribute `{name}` of {} has no ovf: prefix", el.name);
        self.warn("ovf.unqualified-attribute", el, message);
        Some(plain)
    }

    /// A numeric OVF attribute; a value that is not a number leaves an error.
    pub fn ovf_number(&mut self, el: &Element, name: &str) -> Option<u64> {
        let text = self.ovf_attr(el, name)?;
        let value = text.trim().parse().ok();
        if value.is_none() {
            let message = format!("ovf:{name} `{text}` of {} is not a number", el.name);
            self.error("ovf.number", el, message);
        }
        value
    }

    /// A boolean OVF attribute (`true`/`false`/`1`/`0`), `default` when absent.
    pub fn ovf_bool(&mut self, el: &Element, name: &str, default: bool) -> bool {
        self.ovf_attr(el, name).map_or(default, parse_bool)
    }
}

/// `true`, `1` (any case, blanks ignored) as XML Schema's boolean.
pub(super) fn parse_bool(text: &str) -> bool {
    matches!(text.trim().to_ascii_lowercase().as_str(), "true" | "1")
}

/// The trimmed text of the first child `name` in the OVF namespace, when not empty.
pub(super) fn child_text(el: &Element, name: &str) -> Option<String> {
    el.children_named(is_ovf, name)
        .next()
        .map(|c| c.trimmed().to_string())
        .filter(|t| !t.is_empty())
}

/// The section a child element is: its OVF name, or for OVF 1.0's generic
/// `<Section xsi:type="ovf:NAME_Type">` the NAME; `None` for vendor elements.
fn section_name(el: &Element) -> Option<&str> {
    if !is_ovf(el.ns.as_deref()) {
        return None;
    }
    if el.name != "Section" {
        return Some(&el.name);
    }
    let ty = el.attr(Some(NS_XSI), "type")?;
    let local = ty.rsplit(':').next().unwrap_or(ty);
    Some(local.strip_suffix("_Type").unwrap_or(local))
}

/// Reads the envelope's children.
pub(super) fn read_envelope(cx: &mut Ctx<'_>, root: &Element, version: OvfVersion) -> Envelope {
    let mut env = Envelope {
        version,
        spec_version: cx.ovf_attr(root, "version").map(str::to_string),
        files: Vec::new(),
        disks: Vec::new(),
        networks: Vec::new(),
        deployment_options: Vec::new(),
        content: None,
        extensions: Vec::new(),
    };
    for child in &root.children {
        match section_name(child) {
            Some("References") => env.files = read_references(cx, child),
            Some("DiskSection" | "SharedDiskSection") => env.disks.extend(read_disks(cx, child)),
            Some("NetworkSection") => env.networks = read_networks(cx, child),
            Some("DeploymentOptionSection") => env.deployment_options = read_options(cx, child),
            Some("VirtualSystem" | "VirtualSystemCollection") if env.content.is_some() => {
                cx.error(
                    "ovf.content",
                    child,
                    "the envelope holds more than one VirtualSystem or VirtualSystemCollection",
                );
            }
            Some("VirtualSystem") => env.content = Some(read_system(cx, child)),
            Some("VirtualSystemCollection") => env.content = Some(read_collection(cx, child)),
            _ => env.extensions.push(extension(child)),
        }
    }
    env
}

fn read_references(cx: &mut Ctx<'_>, el: &Element) -> Vec<FileRef> {
    let mut files = Vec::new();
    for f in el.children_named(is_ovf, "File") {
        let (Some(id), Some(href)) = (cx.ovf_attr(f, "id"), cx.ovf_attr(f, "href")) else {
            cx.error("ref.attribute", f, "File without ovf:id or ovf:href");
            continue;
        };
        let (id, href) = (id.to_string(), href.to_string());
        let size_text = cx.ovf_attr(f, "size").map(|s| s.trim().to_string());
        let size = size_text.as_deref().and_then(|s| s.parse().ok());
        if size.is_none()
            && let Some(text) = &size_text
        {
            cx.error(
                "ref.size",
                f,
                format!("File `{id}` has a non-numeric ovf:size `{text}`"),
            );
        }
        files.push(FileRef {
            size_text: size_text.filter(|_| size.is_none()),
            size,
            compression: cx.ovf_attr(f, "compression").map(str::to_string),
            chunk_size: cx.ovf_number(f, "chunkSize"),
            line: f.line,
            id,
            href,
        });
    }
    files
}

fn read_disks(cx: &mut Ctx<'_>, el: &Element) -> Vec<Disk> {
    let mut disks = Vec::new();
    for d in el.children_named(is_ovf, "Disk") {
        let Some(id) = cx.ovf_attr(d, "diskId").map(str::to_string) else {
            cx.error("disk.id", d, "Disk without ovf:diskId");
            continue;
        };
        let capacity = cx.ovf_attr(d, "capacity").unwrap_or("").trim().to_string();
        let units = cx
            .ovf_attr(d, "capacityAllocationUnits")
            .map(str::to_string);
        let capacity_bytes = capacity_bytes(cx, d, &id, &capacity, units.as_deref());
        disks.push(Disk {
            file_ref: cx
                .ovf_attr(d, "fileRef")
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            populated_size: cx.ovf_number(d, "populatedSize"),
            format: cx.ovf_attr(d, "format").map(str::to_string),
            parent_ref: cx.ovf_attr(d, "parentRef").map(str::to_string),
            line: d.line,
            capacity_bytes,
            capacity,
            units,
            id,
        });
    }
    disks
}

/// Capacity × units in bytes; findings for what cannot be read.
fn capacity_bytes(
    cx: &mut Ctx<'_>,
    d: &Element,
    id: &str,
    capacity: &str,
    units: Option<&str>,
) -> Option<u64> {
    if capacity.is_empty() {
        cx.error(
            "disk.capacity",
            d,
            format!("Disk `{id}` has no ovf:capacity"),
        );
        return None;
    }
    if capacity.starts_with("${") {
        return None;
    }
    let Ok(count) = capacity.parse::<u64>() else {
        cx.error(
            "disk.capacity",
            d,
            format!("Disk `{id}` has a non-integer ovf:capacity `{capacity}`"),
        );
        return None;
    };
    let Some(unit) = parse_byte_unit(units) else {
        let units = units.unwrap_or_default();
        let message = format!(
            "Disk `{id}` has ovf:capacityAllocationUnits `{units}`, which is not a byte unit (expected e.g. `byte * 2^30`)"
        );
        cx.error("disk.capacity-units", d, message);
        return None;
    };
    if !unit.standard {
        let units = units.unwrap_or_default();
        let message = format!(
            "Disk `{id}` ovf:capacityAllocationUnits `{units}` is not DSP0004's grammar (write e.g. `byte * 2^30`)"
        );
        cx.warn("disk.capacity-units", d, message);
    }
    let bytes = count.checked_mul(unit.bytes);
    if bytes.is_none() {
        cx.error(
            "disk.capacity",
            d,
            format!("Disk `{id}` capacity overflows 64 bits"),
        );
    }
    bytes
}

fn read_networks(cx: &mut Ctx<'_>, el: &Element) -> Vec<Network> {
    let mut networks = Vec::new();
    for n in el.children_named(is_ovf, "Network") {
        let Some(name) = cx.ovf_attr(n, "name") else {
            cx.error("net.name", n, "Network without ovf:name");
            continue;
        };
        networks.push(Network {
            name: name.to_string(),
            description: child_text(n, "Description"),
        });
    }
    networks
}

fn read_options(cx: &mut Ctx<'_>, el: &Element) -> Vec<DeploymentOption> {
    let mut options = Vec::new();
    for c in el.children_named(is_ovf, "Configuration") {
        let Some(id) = cx.ovf_attr(c, "id").map(str::to_string) else {
            cx.error("deployment.id", c, "Configuration without ovf:id");
            continue;
        };
        options.push(DeploymentOption {
            default: cx.ovf_bool(c, "default", false),
            label: child_text(c, "Label"),
            description: child_text(c, "Description"),
            id,
        });
    }
    options
}

fn read_system(cx: &mut Ctx<'_>, el: &Element) -> Content {
    let mut system = VirtualSystem {
        common: common_start(cx, el),
        os: None,
        hardware: Vec::new(),
    };
    for child in &el.children {
        match section_name(child) {
            Some("OperatingSystemSection") => system.os = Some(read_os(cx, child)),
            Some("VirtualHardwareSection") => system.hardware.push(read_hardware(cx, child)),
            _ => common_section(cx, &mut system.common, child),
        }
    }
    Content::System(Box::new(system))
}

fn read_collection(cx: &mut Ctx<'_>, el: &Element) -> Content {
    let mut collection = Collection {
        common: common_start(cx, el),
        members: Vec::new(),
    };
    for child in &el.children {
        match section_name(child) {
            Some("VirtualSystem") => collection.members.push(read_system(cx, child)),
            Some("VirtualSystemCollection") => collection.members.push(read_collection(cx, child)),
            _ => common_section(cx, &mut collection.common, child),
        }
    }
    Content::Collection(Box::new(collection))
}

fn common_start(cx: &mut Ctx<'_>, el: &Element) -> Common {
    let id = cx.ovf_attr(el, "id").unwrap_or_default().to_string();
    if id.is_empty() {
        cx.error("content.id", el, format!("{} without ovf:id", el.name));
    }
    Common {
        id,
        name: child_text(el, "Name"),
        info: child_text(el, "Info"),
        ..Common::default()
    }
}

/// A section both a system and a collection may hold.
fn common_section(cx: &mut Ctx<'_>, common: &mut Common, el: &Element) {
    match section_name(el) {
        Some("Info" | "Name") => {}
        Some("ProductSection") => common.products.push(read_product(cx, el)),
        Some("EulaSection") => common.eulas.extend(child_text(el, "License")),
        Some("AnnotationSection") => common.annotation = child_text(el, "Annotation"),
        _ => common.extensions.push(extension(el)),
    }
}

fn read_os(cx: &mut Ctx<'_>, el: &Element) -> OperatingSystem {
    let id = cx.ovf_attr(el, "id").map(str::trim).map(str::to_string);
    let number = id.as_deref().and_then(|i| i.parse().ok());
    if let (None, Some(id)) = (number, &id) {
        cx.warn(
            "os.id",
            el,
            format!("OperatingSystemSection ovf:id `{id}` is not a CIM OsType number"),
        );
    }
    OperatingSystem {
        id: number,
        version: cx.ovf_attr(el, "version").map(str::to_string),
        description: child_text(el, "Description"),
        vmware_os_type: el.attr(Some(NS_VMW), "osType").map(str::to_string),
        virtualbox_os_type: el
            .children_named(|ns| ns == Some(NS_VBOX), "OSType")
            .next()
            .map(|c| c.trimmed().to_string()),
    }
}

fn read_product(cx: &mut Ctx<'_>, el: &Element) -> Product {
    let mut product = Product {
        class: cx.ovf_attr(el, "class").map(str::to_string),
        instance: cx.ovf_attr(el, "instance").map(str::to_string),
        ..Product::default()
    };
    let mut category: Option<String> = None;
    for child in el.children.iter().filter(|c| is_ovf(c.ns.as_deref())) {
        let text = Some(child.trimmed().to_string()).filter(|t| !t.is_empty());
        match child.name.as_str() {
            "Product" => product.product = text,
            "Vendor" => product.vendor = text,
            "Version" => product.version = text,
            "FullVersion" => product.full_version = text,
            "ProductUrl" => product.product_url = text,
            "VendorUrl" => product.vendor_url = text,
            "Category" => category = text,
            "Property" => {
                if let Some(p) = read_property(cx, child, category.clone()) {
                    product.properties.push(p);
                }
            }
            _ => {}
        }
    }
    product
}

fn read_property(cx: &mut Ctx<'_>, el: &Element, category: Option<String>) -> Option<Property> {
    let Some(key) = cx.ovf_attr(el, "key").map(str::to_string) else {
        cx.error("product.property-key", el, "Property without ovf:key");
        return None;
    };
    Some(Property {
        kind: cx.ovf_attr(el, "type").map(str::to_string),
        qualifiers: cx.ovf_attr(el, "qualifiers").map(str::to_string),
        value: cx.ovf_attr(el, "value").map(str::to_string),
        user_configurable: cx.ovf_bool(el, "userConfigurable", false),
        password: cx.ovf_bool(el, "password", false),
        label: child_text(el, "Label"),
        description: child_text(el, "Description"),
        category,
        key,
    })
}

/// An element kept without reading it.
pub(super) fn extension(el: &Element) -> Extension {
    let required = el
        .attrs
        .iter()
        .find(|a| a.name == "required" && is_ovf(a.ns.as_deref()))
        .is_none_or(|a| parse_bool(&a.value));
    Extension {
        ns: el.ns.as_deref().map(str::to_string),
        name: el.name.clone(),
        required,
        line: el.line,
    }
}
