//! What a package says, summarised for people and scripts (`kiln inspect`): the machines
//! with their hardware (CPUs, memory, controllers, NICs, disks), the disks with their
//! files, networks, properties, EULAs, and whether a manifest and a signature are present.
//! Nothing is hashed and no disk is read (that is `kiln verify`); the signature is checked
//! against the manifest, which is cheap.

use serde::Serialize;

use super::finding::Finding;
use super::ovf_read::units::parse_byte_unit;
use super::ovf_read::{Content, Envelope, Item, OvfVersion, VirtualSystem};
use super::signature::{self, CertStatus};
use super::verify::package::{Kind, Package};

/// The summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// OVA or OVF.
    pub kind: Kind,
    /// `1.x` or `2.x` (the envelope namespace).
    pub ovf_version: &'static str,
    /// The vApp, when the package holds a VirtualSystemCollection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<Named>,
    /// Every VirtualSystem, depth first.
    pub machines: Vec<Machine>,
    /// DiskSection.
    pub disks: Vec<DiskSummary>,
    /// NetworkSection names.
    pub networks: Vec<String>,
    /// ProductSection properties, all sections, in order.
    pub properties: Vec<PropertySummary>,
    /// DeploymentOptionSection ids, the default marked.
    pub deployment_options: Vec<String>,
    /// First line of each EULA.
    pub eulas: Vec<String>,
    /// The manifest.
    pub manifest: ManifestSummary,
    /// The signature.
    pub certificate: Option<CertStatus>,
    /// Oddities met while reading the descriptor.
    pub notes: Vec<Finding>,
}

/// An id and a name.
#[derive(Debug, Clone, Serialize)]
pub struct Named {
    /// `ovf:id`.
    pub id: String,
    /// Name.
    pub name: Option<String>,
}

/// One machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `ovf:id`.
    pub id: String,
    /// Name.
    pub name: Option<String>,
    /// CIM OsType id, description and vendor guest ids.
    pub os: Option<String>,
    /// Hardware families (`vmx-13`).
    pub hardware_family: Vec<String>,
    /// Virtual CPUs.
    pub cpus: Option<u64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// `firmware` from `vmw:Config`, when set.
    pub firmware: Option<String>,
    /// Storage and USB controllers: `InstanceID kind subtype`.
    pub controllers: Vec<String>,
    /// NICs: `network model mac`.
    pub nics: Vec<String>,
    /// Disks and CD-ROMs: `kind resource on controller:unit`.
    pub drives: Vec<String>,
    /// Product name and version of its first ProductSection.
    pub product: Option<String>,
    /// Annotation.
    pub annotation: Option<String>,
    /// Vendor sections (`vbox:Machine`), `?` marking the optional ones.
    pub extensions: Vec<String>,
}

/// One Disk.
#[derive(Debug, Clone, Serialize)]
pub struct DiskSummary {
    /// `ovf:diskId`.
    pub id: String,
    /// The file's href, when the disk has one.
    pub file: Option<String>,
    /// Whether the file is in the package.
    pub file_present: bool,
    /// The file's length in the package.
    pub file_size: Option<u64>,
    /// The format URI.
    pub format: Option<String>,
    /// Capacity in bytes, when known.
    pub capacity_bytes: Option<u64>,
    /// `ovf:capacity` and units as written.
    pub capacity: String,
    /// `ovf:populatedSize`.
    pub populated_size: Option<u64>,
}

/// One property.
#[derive(Debug, Clone, Serialize)]
pub struct PropertySummary {
    /// `ovf:key`.
    pub key: String,
    /// `ovf:type`.
    pub kind: Option<String>,
    /// Default value (passwords shown as `***`).
    pub value: Option<String>,
    /// Label.
    pub label: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// User-configurable.
    pub user_configurable: bool,
}

/// The manifest's presence and form.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestSummary {
    /// Its name, when present.
    pub name: Option<String>,
    /// Algorithms used.
    pub algorithms: Vec<&'static str>,
    /// Lines read.
    pub entries: usize,
    /// Lines not in the DSP0243 form.
    pub syntax_errors: usize,
}

/// Summarises the opened package `pkg`, checking the signature at time `now`.
pub fn summarize(pkg: &Package, now: u64) -> Option<Summary> {
    let d = pkg.descriptor.as_ref()?;
    let env = &d.envelope;
    let collection = match &env.content {
        Some(Content::Collection(c)) => Some(Named {
            id: c.common.id.clone(),
            name: c.common.name.clone(),
        }),
        _ => None,
    };
    let default_config = env
        .deployment_options
        .iter()
        .find(|o| o.default)
        .or(env.deployment_options.first())
        .map(|o| o.id.as_str());
    let mut eulas: Vec<String> = Vec::new();
    if let Some(Content::Collection(c)) = &env.content {
        eulas.extend(c.common.eulas.iter().map(|e| first_line(e)));
    }
    for s in env.systems() {
        eulas.extend(s.common.eulas.iter().map(|e| first_line(e)));
    }
    Some(Summary {
        kind: pkg.kind,
        ovf_version: match env.version {
            OvfVersion::V1 => "1.x",
            OvfVersion::V2 => "2.x",
        },
        collection,
        machines: env
            .systems()
            .into_iter()
            .map(|s| machine(s, default_config))
            .collect(),
        disks: disks(pkg, env),
        networks: env.networks.iter().map(|n| n.name.clone()).collect(),
        properties: env.properties().into_iter().map(property).collect(),
        deployment_options: env
            .deployment_options
            .iter()
            .map(|o| {
                if o.default {
                    format!("{} (default)", o.id)
                } else {
                    o.id.clone()
                }
            })
            .collect(),
        eulas,
        manifest: manifest(pkg),
        certificate: certificate(pkg, now),
        notes: d.findings.clone(),
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

fn machine(s: &VirtualSystem, config: Option<&str>) -> Machine {
    let hw = s.hardware.first();
    let items: Vec<&Item> = hw
        .map(|h| h.items.iter().filter(|i| applies(i, config)).collect())
        .unwrap_or_default();
    let of = |t: u32| {
        items
            .iter()
            .copied()
            .filter(move |i| i.resource_type == Some(t))
    };
    let memory_bytes = of(4).next().and_then(memory_bytes);
    let os = s.os.as_ref().map(os_text);
    Machine {
        id: s.common.id.clone(),
        name: s.common.name.clone(),
        os,
        hardware_family: hw.map(|h| h.system_types.clone()).unwrap_or_default(),
        cpus: of(3).next().and_then(|c| c.quantity),
        memory_bytes,
        firmware: hw
            .and_then(|h| h.settings.iter().find(|v| v.key == "firmware"))
            .map(|v| v.value.clone()),
        controllers: items.iter().filter_map(|i| controller(i)).collect(),
        nics: of(10).map(nic).collect(),
        drives: items.iter().filter_map(|i| drive(i, &items)).collect(),
        product: s.common.products.first().and_then(|p| {
            let name = p.product.clone()?;
            Some(
                p.version
                    .as_ref()
                    .map_or(name.clone(), |v| format!("{name} {v}")),
            )
        }),
        annotation: s.common.annotation.clone(),
        extensions: s
            .common
            .extensions
            .iter()
            .chain(hw.into_iter().flat_map(|h| &h.extensions))
            .map(|e| {
                format!(
                    "{}{}",
                    short_ns(e.ns.as_deref(), &e.name),
                    if e.required { "" } else { "?" }
                )
            })
            .collect(),
    }
}

/// Memory in bytes; VMware and VirtualBox read memory without AllocationUnits as MiB.
fn memory_bytes(m: &Item) -> Option<u64> {
    let unit = match m.units.as_deref() {
        None => 1 << 20,
        units => parse_byte_unit(units)?.bytes,
    };
    m.quantity?.checked_mul(unit)
}

/// `CIM 94, Ubuntu 64-bit, vmw:ubuntu64Guest, vbox:Ubuntu_64`.
fn os_text(o: &super::ovf_read::OperatingSystem) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(o.id.map(|i| format!("CIM {i}")));
    parts.extend(o.description.clone());
    parts.extend(o.vmware_os_type.as_ref().map(|v| format!("vmw:{v}")));
    parts.extend(o.virtualbox_os_type.as_ref().map(|v| format!("vbox:{v}")));
    parts.join(", ")
}

/// Whether an item belongs to the deployment option in force (and is not a range bound).
fn applies(item: &Item, config: Option<&str>) -> bool {
    let in_config = match (&item.configuration, config) {
        (Some(list), Some(c)) => list.split_whitespace().any(|x| x == c),
        _ => true,
    };
    in_config && item.bound.as_deref().is_none_or(|b| b == "normal")
}

/// `vbox:Machine`, `vmw:BootOrderSection`, or the URI for other namespaces.
fn short_ns(ns: Option<&str>, name: &str) -> String {
    let prefix = match ns {
        Some(super::ovf_read::NS_VMW) => "vmw",
        Some(super::ovf_read::NS_VBOX) => "vbox",
        Some(n) if super::ovf_read::is_ovf(Some(n)) => "ovf",
        Some(n) => return format!("{{{n}}}{name}"),
        None => return name.to_string(),
    };
    format!("{prefix}:{name}")
}

fn controller(item: &Item) -> Option<String> {
    let sub = item.subtype.as_deref().unwrap_or("");
    let kind = match item.resource_type? {
        5 => "ide",
        6 => "scsi",
        20 if sub.to_ascii_lowercase().contains("nvme") => "nvme",
        20 if sub.to_ascii_lowercase().contains("virtio") => "virtio-scsi",
        20 => "sata",
        23 => "usb",
        _ => return None,
    };
    let id = item.instance_id.as_deref().unwrap_or("?");
    Some(format!("{id} {kind} {sub}").trim_end().to_string())
}

fn nic(item: &Item) -> String {
    let mut parts = vec![
        item.connections
            .first()
            .cloned()
            .unwrap_or_else(|| "(no network)".into()),
    ];
    parts.extend(item.subtype.clone());
    parts.extend(item.mac_address.clone());
    if item.automatic_allocation == Some(false) {
        parts.push("disconnected".into());
    }
    parts.join(" ")
}

fn drive(item: &Item, items: &[&Item]) -> Option<String> {
    let kind = match item.resource_type? {
        14 => "floppy",
        15 | 16 => "cdrom",
        17 => "disk",
        _ => return None,
    };
    let what = item
        .host_resources
        .first()
        .map_or("(empty)", String::as_str);
    let Some(parent) = item.parent.as_deref() else {
        return Some(format!("{kind} {what}"));
    };
    let bus = items
        .iter()
        .find(|c| c.instance_id.as_deref() == Some(parent))
        .and_then(|c| controller(c))
        .and_then(|c| c.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| format!("parent {parent}"));
    let unit = item.address_on_parent.as_deref().unwrap_or("?");
    Some(format!("{kind} {what} on {bus}:{unit}"))
}

fn disks(pkg: &Package, env: &Envelope) -> Vec<DiskSummary> {
    env.disks
        .iter()
        .map(|d| {
            let file = d.file_ref.as_deref().and_then(|r| env.file(r));
            let member = file.and_then(|f| pkg.file(&f.href));
            DiskSummary {
                id: d.id.clone(),
                file: file.map(|f| f.href.clone()),
                file_present: member.is_some(),
                file_size: member.map(|m| m.len()),
                format: d.format.clone(),
                capacity_bytes: d.capacity_bytes,
                capacity: match &d.units {
                    Some(u) => format!("{} × {u}", d.capacity),
                    None => d.capacity.clone(),
                },
                populated_size: d.populated_size,
            }
        })
        .collect()
}

fn property(p: &super::ovf_read::Property) -> PropertySummary {
    PropertySummary {
        key: p.key.clone(),
        kind: p.kind.clone(),
        value: if p.password {
            p.value.as_ref().map(|_| "***".to_string())
        } else {
            p.value.clone()
        },
        label: p.label.clone(),
        category: p.category.clone(),
        user_configurable: p.user_configurable,
    }
}

fn manifest(pkg: &Package) -> ManifestSummary {
    match &pkg.manifest {
        Some((name, _, mf)) => ManifestSummary {
            name: Some(name.clone()),
            algorithms: mf.algorithms().iter().map(|a| a.label()).collect(),
            entries: mf.entries.len(),
            syntax_errors: mf.findings.iter().filter(|f| f.code == "mf.syntax").count(),
        },
        None => ManifestSummary {
            name: None,
            algorithms: Vec::new(),
            entries: 0,
            syntax_errors: 0,
        },
    }
}

fn certificate(pkg: &Package, now: u64) -> Option<CertStatus> {
    let (cert_name, bytes) = pkg.cert.as_ref()?;
    let cert = signature::parse_cert(bytes, cert_name).ok()?;
    let (mf_name, mf, _) = pkg.manifest.as_ref()?;
    Some(signature::check(&cert, mf, mf_name, cert_name, now).0)
}

impl Summary {
    /// The summary for people.
    pub fn render(&self, name: &str) -> String {
        let kind = match self.kind {
            Kind::Ova => "ova",
            Kind::Ovf => "ovf",
        };
        let mut out = format!("package: {name} ({kind}, OVF {})\n", self.ovf_version);
        if let Some(c) = &self.collection {
            out.push_str(&format!(
                "collection: {}{}\n",
                c.id,
                c.name
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ));
        }
        for m in &self.machines {
            out.push_str(&render_machine(m));
        }
        for d in &self.disks {
            out.push_str(&render_disk(d));
        }
        list(&mut out, "networks", &self.networks);
        let props: Vec<String> = self
            .properties
            .iter()
            .map(|p| format!("{}={}", p.key, p.value.as_deref().unwrap_or("")))
            .collect();
        list(&mut out, "properties", &props);
        list(&mut out, "deployment options", &self.deployment_options);
        list(&mut out, "eula", &self.eulas);
        out.push_str(&self.render_signing());
        for n in &self.notes {
            out.push_str(&format!("note: {}\n", n.render()));
        }
        out
    }
}

impl Summary {
    /// The manifest and certificate lines.
    fn render_signing(&self) -> String {
        let mf = match &self.manifest.name {
            Some(n) => format!(
                "{n} ({}, {} entries)",
                self.manifest.algorithms.join("+"),
                self.manifest.entries
            ),
            None => "none".into(),
        };
        let cert = match &self.certificate {
            Some(c) => {
                let state = if c.signature_valid {
                    "valid"
                } else {
                    "INVALID"
                };
                format!("{} ({}, signature {state})", c.subject, c.algorithm)
            }
            None => "none".into(),
        };
        format!("manifest: {mf}\ncertificate: {cert}\n")
    }
}

fn render_disk(d: &DiskSummary) -> String {
    let cap = d
        .capacity_bytes
        .map_or(d.capacity.clone(), |b| format!("{b} bytes"));
    let file = match (&d.file, d.file_present) {
        (Some(f), true) => format!("{f} ({} bytes)", d.file_size.unwrap_or(0)),
        (Some(f), false) => format!("{f} (missing)"),
        (None, _) => "(no file: created empty)".into(),
    };
    let format = d.format.as_deref().unwrap_or("-");
    format!("disk {}: {cap}, file {file}, format {format}\n", d.id)
}

fn render_machine(m: &Machine) -> String {
    let mut out = format!(
        "machine {}{}\n",
        m.id,
        m.name
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    let mem = m
        .memory_bytes
        .map_or("-".into(), |b| format!("{} MiB", b >> 20));
    out.push_str(&format!(
        "  cpus: {}, memory: {mem}, family: {}\n",
        m.cpus.map_or("-".into(), |c| c.to_string()),
        m.hardware_family.join(" ")
    ));
    for (label, value) in [
        ("os", &m.os),
        ("firmware", &m.firmware),
        ("product", &m.product),
    ] {
        if let Some(v) = value {
            out.push_str(&format!("  {label}: {v}\n"));
        }
    }
    for (label, values) in [
        ("controller", &m.controllers),
        ("nic", &m.nics),
        ("drive", &m.drives),
        ("extension", &m.extensions),
    ] {
        for v in values {
            out.push_str(&format!("  {label}: {v}\n"));
        }
    }
    out
}

fn list(out: &mut String, label: &str, values: &[String]) {
    if !values.is_empty() {
        out.push_str(&format!("{label}: {}\n", values.join(", ")));
    }
}
