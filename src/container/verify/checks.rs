//! The package rules, each a function that adds findings: member order and names (DSP0243
//! §5.3 and what ovftool and VirtualBox expect), the References files and their sizes, the
//! manifest against the files, the disks against their images, and the cross references
//! inside the hardware section.

use std::collections::BTreeMap;

use super::content::{DiskCheck, FileCheck};
use super::package::{Kind, Package};
use crate::container::finding::Finding;
use crate::container::manifest::Algorithm;
use crate::container::ovf_read::{Disk, Envelope, FileRef};

/// `.ovf` first, then `.mf`, then `.cert`, then the References files in their order; nothing
/// else (OVA only).
pub fn layout(pkg: &Package, findings: &mut Vec<Finding>) {
    if pkg.kind != Kind::Ova {
        return;
    }
    let Some(descriptor) = pkg.descriptor_name.as_deref() else {
        return;
    };
    let first = pkg.files.first().map(|f| f.name.as_str());
    if first != Some(descriptor) {
        let found = first.unwrap_or("nothing");
        let f = Finding::error("ova.order", format!("the first member is `{found}`, not the descriptor `{descriptor}`; importers that stream the package read the descriptor first"))
            .at(pkg.files.first().map(|f| f.place()).unwrap_or_default())
            .quoting("ovftool", "Did not find an .ovf file at the beginning of the OVA package.");
        findings.push(f);
    }
    let expected = expected_order(pkg);
    let actual: Vec<&str> = pkg
        .files
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| expected.contains(n))
        .collect();
    if first == Some(descriptor) && actual != expected {
        let f = Finding::error(
            "ova.order",
            format!(
                "members are in the order {}; DSP0243 wants the descriptor, the manifest, the certificate, then the References order: {}",
                actual.join(", "),
                expected.join(", ")
            ),
        );
        findings.push(f);
    }
    for file in pkg
        .files
        .iter()
        .filter(|f| !expected.contains(&f.name.as_str()))
    {
        let f = Finding::error(
            "ova.unexpected-member",
            format!(
                "member `{}` is neither the descriptor, the manifest, the certificate nor a References file",
                file.name
            ),
        );
        findings.push(f.at(file.place()));
    }
}

/// The members an OVA should hold, in order.
fn expected_order(pkg: &Package) -> Vec<&str> {
    let mut order: Vec<&str> = pkg.descriptor_name.as_deref().into_iter().collect();
    order.extend(pkg.manifest.as_ref().map(|(n, ..)| n.as_str()));
    order.extend(pkg.cert.as_ref().map(|(n, ..)| n.as_str()));
    if let Some(env) = pkg.envelope() {
        for f in &env.files {
            if pkg.file(&f.href).is_some() && !order.contains(&f.href.as_str()) {
                order.push(&f.href);
            }
        }
    }
    order
}

/// Every References file is present, with `ovf:size` equal to its length.
pub fn references(pkg: &Package, findings: &mut Vec<Finding>) {
    let Some(env) = pkg.envelope() else {
        return;
    };
    let name = pkg.descriptor_name.as_deref().unwrap_or_default();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for file in &env.files {
        let at = format!("{name}:{}", file.line);
        if seen
            .iter()
            .any(|(id, href)| *id == file.id || *href == file.href)
        {
            let f = Finding::error(
                "ref.duplicate",
                format!(
                    "File `{}` (`{}`) repeats an ovf:id or ovf:href",
                    file.id, file.href
                ),
            );
            findings.push(f.at(at));
            continue;
        }
        seen.push((&file.id, &file.href));
        reference(pkg, file, &at, findings);
    }
}

fn reference(pkg: &Package, file: &FileRef, at: &str, findings: &mut Vec<Finding>) {
    if file.chunk_size.is_some() {
        let f = Finding::warning(
            "ref.chunked",
            format!(
                "File `{}` is split into chunks (ovf:chunkSize); kiln does not check chunked files",
                file.href
            ),
        );
        findings.push(f.at(at));
        return;
    }
    let Some(member) = pkg.file(&file.href) else {
        let what = if pkg.kind == Kind::Ova {
            "member of the OVA"
        } else {
            "file next to the descriptor"
        };
        let f = Finding::error(
            "ref.missing",
            format!("File `{}` (`{}`) is not a {what}", file.id, file.href),
        );
        findings.push(f.at(at));
        return;
    };
    match file.size {
        Some(size) if size != member.len() => {
            let f = Finding::error("ref.size-mismatch", format!("ovf:size of `{}` is {size}, but the file is {} bytes", file.href, member.len()))
                .at(at)
                .quoting("ovftool", format!("Wrong file size specified in OVF descriptor for '{}' (specified: {size}, actual {})", file.href, member.len()));
            findings.push(f);
        }
        None if file.size_text.is_none() => {
            let f = Finding::warning(
                "ref.size-missing",
                format!(
                    "File `{}` has no ovf:size; importers cannot show or check the download size",
                    file.href
                ),
            );
            findings.push(f.at(at));
        }
        _ => {}
    }
    if let Some(c) = file.compression.as_deref().filter(|c| *c != "identity") {
        let f = Finding::warning(
            "ref.compressed",
            format!(
                "File `{}` is {c}-compressed (ovf:compression); kiln checks its digest and size but does not read the disk inside",
                file.href
            ),
        );
        findings.push(f.at(at));
    }
}

/// The files whose manifest digest is checked: the descriptor and the References files
/// present, in package order.
pub fn manifest_files(pkg: &Package) -> Vec<String> {
    let mut names: Vec<String> = pkg.descriptor_name.iter().cloned().collect();
    if let Some(env) = pkg.envelope() {
        names.extend(
            env.files
                .iter()
                .filter(|f| pkg.file(&f.href).is_some())
                .map(|f| f.href.clone()),
        );
    }
    names.dedup();
    names
}

/// The manifest lists every package file once, nothing else, with the right digests.
/// `computed` holds the digests of every file read.
pub fn manifest(
    pkg: &Package,
    computed: &BTreeMap<String, FileCheck>,
    findings: &mut Vec<Finding>,
) {
    let Some((mf_name, _, mf)) = &pkg.manifest else {
        if pkg.cert.is_some() {
            findings.push(Finding::error(
                "cert.without-manifest",
                "the package has a certificate but no manifest for it to sign",
            ));
        } else {
            findings.push(Finding::warning("mf.missing", "the package has no manifest (.mf); importers cannot check that its files arrived intact"));
        }
        return;
    };
    let files = manifest_files(pkg);
    for name in &files {
        if !mf.entries.iter().any(|e| &e.name == name) {
            let f = Finding::error(
                "mf.missing-entry",
                format!("package file `{name}` is not listed in the manifest"),
            );
            findings.push(f.at(mf_name));
        }
    }
    for entry in &mf.entries {
        let at = format!("{mf_name}:{}", entry.line);
        if !files.contains(&entry.name) {
            let why = if pkg.file(&entry.name).is_some() {
                "is not part of the package (neither the descriptor nor a References file)"
            } else {
                "is not in the package"
            };
            findings.push(
                Finding::error(
                    "mf.unknown-entry",
                    format!("the manifest lists `{}`, which {why}", entry.name),
                )
                .at(at),
            );
            continue;
        }
        let Some(actual) = digest_of(computed, &entry.name, entry.alg) else {
            continue;
        };
        if actual != entry.digest {
            let f = Finding::error(
                "mf.digest-mismatch",
                format!(
                    "{} digest of `{}` is {actual}, the manifest says {}",
                    entry.alg.label(),
                    entry.name,
                    entry.digest
                ),
            )
            .at(at)
            .quoting("ovftool", "The manifest does not validate");
            findings.push(f);
        }
    }
}

/// The digest of `name` from the read pass.
fn digest_of(computed: &BTreeMap<String, FileCheck>, name: &str, alg: Algorithm) -> Option<String> {
    let check = computed.get(name)?;
    check
        .digests
        .iter()
        .find(|(a, _)| *a == alg)
        .map(|(_, d)| d.clone())
}

/// Each disk's file was read as an image whose capacity is the Disk's, and its format is
/// the one the descriptor names.
pub fn disks(pkg: &Package, computed: &BTreeMap<String, FileCheck>, findings: &mut Vec<Finding>) {
    let Some(env) = pkg.envelope() else {
        return;
    };
    let name = pkg.descriptor_name.as_deref().unwrap_or_default();
    for disk in &env.disks {
        let at = format!("{name}:{}", disk.line);
        let capacity = capacity(env, disk, &at, findings);
        if let (Some(cap), Some(pop)) = (capacity, disk.populated_size)
            && pop > cap
        {
            let f = Finding::warning(
                "disk.populated-size",
                format!(
                    "Disk `{}` ovf:populatedSize {pop} exceeds its capacity ({cap} bytes)",
                    disk.id
                ),
            );
            findings.push(f.at(&at));
        }
        let Some(file_ref) = &disk.file_ref else {
            continue;
        };
        let Some(file) = env.file(file_ref) else {
            let f = Finding::error(
                "disk.fileref",
                format!(
                    "Disk `{}` has ovf:fileRef `{file_ref}`, which is no File id in References",
                    disk.id
                ),
            );
            findings.push(f.at(&at));
            continue;
        };
        if let Some(check) = computed.get(&file.href).and_then(|c| c.disk.as_ref()) {
            image(disk, &file.href, capacity, check, &at, findings);
        }
    }
}

/// Capacity in bytes, resolving `${property}` through the property's default value.
fn capacity(env: &Envelope, disk: &Disk, at: &str, findings: &mut Vec<Finding>) -> Option<u64> {
    if disk.capacity_bytes.is_some() {
        return disk.capacity_bytes;
    }
    let key = disk.capacity.strip_prefix("${")?.strip_suffix('}')?.trim();
    let Some(property) = env.properties().into_iter().find(|p| p.key == key) else {
        let f = Finding::error(
            "disk.capacity",
            format!(
                "Disk `{}` capacity refers to property `{key}`, which no ProductSection defines",
                disk.id
            ),
        );
        findings.push(f.at(at));
        return None;
    };
    let count: Option<u64> = property
        .value
        .as_deref()
        .and_then(|v| v.trim().parse().ok());
    let unit = crate::container::ovf_read::units::parse_byte_unit(disk.units.as_deref());
    count.zip(unit).and_then(|(c, u)| c.checked_mul(u.bytes))
}

/// The image read from a disk's file against what the Disk says.
fn image(
    disk: &Disk,
    href: &str,
    capacity: Option<u64>,
    check: &DiskCheck,
    at: &str,
    findings: &mut Vec<Finding>,
) {
    if let Some(error) = &check.error {
        let f = Finding::error(
            "disk.unreadable",
            format!(
                "Disk `{}` (`{href}`) cannot be read to its end: {error}",
                disk.id
            ),
        );
        findings.push(f.at(at));
    }
    let format = disk.format.as_deref().unwrap_or_default();
    if format.contains("vmdk.html") && check.format != "vmdk" && check.error.is_none() {
        let f = Finding::error(
            "disk.format-mismatch",
            format!(
                "Disk `{}` says ovf:format `{format}`, but `{href}` is a {} image",
                disk.id, check.format
            ),
        );
        findings.push(f.at(at));
    }
    let stream = check.subformat.as_deref() == Some("streamOptimized");
    if format.ends_with("#streamOptimized") && check.format == "vmdk" && !stream {
        let sub = check.subformat.as_deref().unwrap_or("unknown");
        let f = Finding::error(
            "disk.format-mismatch",
            format!(
                "Disk `{}` says streamOptimized, but `{href}` is a {sub} VMDK",
                disk.id
            ),
        );
        findings.push(f.at(at));
    }
    if let Some(cap) = capacity
        && check.error.is_none()
        && cap != check.virtual_size
    {
        let f = Finding::error(
            "disk.capacity-mismatch",
            format!(
                "Disk `{}` capacity is {cap} bytes (ovf:capacity {} × {}), but `{href}` holds a {}-byte disk",
                disk.id,
                disk.capacity,
                disk.units.as_deref().unwrap_or("byte"),
                check.virtual_size
            ),
        );
        findings.push(f.at(at));
    }
}

/// HostResource and Connection name things that exist.
pub fn references_in_hardware(pkg: &Package, findings: &mut Vec<Finding>) {
    let Some(env) = pkg.envelope() else {
        return;
    };
    let name = pkg.descriptor_name.as_deref().unwrap_or_default();
    for system in env.systems() {
        for item in system.hardware.iter().flat_map(|h| &h.items) {
            let at = format!("{name}:{}", item.line);
            for host in &item.host_resources {
                if !host_resource_exists(env, host) {
                    let f = Finding::error(
                        "hw.host-resource",
                        format!("HostResource `{host}` names no Disk or File of the descriptor"),
                    );
                    findings.push(f.at(&at));
                }
            }
            for net in &item.connections {
                if !env.networks.is_empty() && !env.networks.iter().any(|n| &n.name == net) {
                    let f = Finding::error(
                        "hw.connection",
                        format!("Connection `{net}` names no Network of the NetworkSection"),
                    );
                    findings.push(f.at(&at));
                }
            }
            if !item.odd_namespaces.is_empty() {
                let f = Finding::warning(
                    "hw.namespace",
                    format!(
                        "item properties are in `{}`, not the DMTF namespace; only VirtualBox reads them",
                        item.odd_namespaces.join("`, `")
                    ),
                );
                findings.push(f.at(&at));
            }
        }
    }
}

/// `ovf:/disk/ID` (also VirtualBox's `/disk/ID` and `ovf://disk/ID`) and `ovf:/file/ID`.
fn host_resource_exists(env: &Envelope, host: &str) -> bool {
    let rest = host
        .strip_prefix("ovf:")
        .unwrap_or(host)
        .trim_start_matches('/');
    if let Some(id) = rest.strip_prefix("disk/") {
        return env.disks.iter().any(|d| d.id == id);
    }
    if let Some(id) = rest.strip_prefix("file/") {
        return env.files.iter().any(|f| f.id == id);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ovf_read::read_descriptor;

    fn envelope() -> Envelope {
        let text = r#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:id="f1" ovf:href="a.iso"/></References>
  <DiskSection><Disk ovf:diskId="d1" ovf:capacity="1"/></DiskSection></Envelope>"#;
        read_descriptor(text.as_bytes(), "t.ovf").unwrap().envelope
    }

    #[test]
    fn the_host_resource_spellings_importers_use_resolve() {
        let env = envelope();
        for host in ["ovf:/disk/d1", "/disk/d1", "ovf://disk/d1", "ovf:/file/f1"] {
            assert!(host_resource_exists(&env, host), "{host}");
        }
    }

    #[test]
    fn a_host_resource_naming_no_disk_is_caught() {
        assert!(!host_resource_exists(&envelope(), "ovf:/disk/d2"));
    }
}
