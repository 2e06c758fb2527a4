//! `kiln verify --target`: the rules of each named importer profile (see `profile`) on a
//! package read into the model: the hardware family and its version ceiling, compressed
//! files, `vmw:ExtraConfig` keys outside kiln's allow-list, `vbox:Machine` for VMware, the
//! disk count (Glance) and the disk format (AWS VM Import). Findings quote the importer's
//! own words where it has them.

use crate::container::finding::Finding;
use crate::container::ovf::{Target, VMDK_STREAM_FORMAT};
use crate::container::ovf_read::{Envelope, NS_VBOX};
use crate::container::profile::{
    GLANCE_ONE_DISK, Profile, Tolerance, bus_name, bus_of, nic_name, nic_of,
};

/// vSphere's words for a family it does not run (ovftool and the vSphere Client).
fn unsupported_family(family: &str) -> String {
    format!("Unsupported hardware family '{family}'.")
}

/// What vSphere's OVF deploy says of `ovf:compression`.
pub const VSPHERE_COMPRESSED: &str =
    "OVF package with compressed disks is currently not supported for OVF import";

/// What AWS VM Import reports for an OVA whose disks it cannot take.
pub const AWS_UNSUPPORTED_OVA: &str =
    "ClientError: Disk validation failed [Unsupported OVA format]";

/// Every finding of `profiles` on `env`, descriptor `name`.
pub fn check(env: &Envelope, name: &str, profiles: &[Profile], findings: &mut Vec<Finding>) {
    for p in profiles {
        hardware(env, name, *p, findings);
        devices(env, name, *p, findings);
        extensions(env, name, *p, findings);
        files(env, name, *p, findings);
        configurations(env, name, *p, findings);
        cdrom_media(env, name, *p, findings);
    }
}

/// VirtualBox attaches a CD-ROM's medium only through a Disk (ovfreader.cpp maps the
/// drive's HostResource through `ovf:/disk/`); a File reference leaves the drive empty.
fn cdrom_media(env: &Envelope, name: &str, p: Profile, findings: &mut Vec<Finding>) {
    if p.rules().family != Target::Virtualbox {
        return;
    }
    let items = (env.systems().into_iter())
        .flat_map(|s| s.hardware.iter())
        .flat_map(|hw| hw.items.iter());
    for item in items.filter(|i| matches!(i.resource_type, Some(15 | 16))) {
        if let Some(file) = item.host_resources.iter().find(|h| h.contains("/file/")) {
            let id = item.instance_id.as_deref().unwrap_or("?");
            let message = format!(
                "{}: CD/DVD drive {id} takes its medium from `{file}`, but VirtualBox reads a drive's medium only from a Disk (ovf:/disk/ID); the drive will be empty",
                p.name()
            );
            let place = format!("{name}:{}", item.line);
            findings.push(Finding::warning("target.cdrom-medium", message).at(place));
        }
    }
}

/// VirtualBox's importer has no deployment configurations: it reads every Item, so the
/// last configuration's CPU and memory win whatever the default says.
fn configurations(env: &Envelope, name: &str, p: Profile, findings: &mut Vec<Finding>) {
    if p.rules().family != Target::Virtualbox || env.deployment_options.len() < 2 {
        return;
    }
    let message = format!(
        "{}: the DeploymentOptionSection offers {} configurations, but VirtualBox ignores it and applies every configuration's Items (the last CPU and memory Items win)",
        p.name(),
        env.deployment_options.len()
    );
    findings.push(Finding::warning("target.deployment-options", message).at(name));
}

fn hardware(env: &Envelope, name: &str, p: Profile, findings: &mut Vec<Finding>) {
    let rules = p.rules();
    for system in env.systems() {
        for hw in &system.hardware {
            let versions: Vec<Option<u32>> = hw.system_types.iter().map(|t| vmx(t)).collect();
            let shown = hw.system_types.join(" ");
            if rules.needs_vmx && !versions.iter().any(Option::is_some) {
                findings.push(
                    Finding::error(
                        "target.hardware-family",
                        format!(
                            "{}: VirtualSystemType `{shown}` is not a VMware family (vmx-NN)",
                            p.name()
                        ),
                    )
                    .at(name)
                    .quoting("vSphere", unsupported_family(&shown)),
                );
                continue;
            }
            let Some(lowest) = versions.iter().flatten().min().copied() else {
                continue;
            };
            if let Some(ceiling) = rules.ceiling
                && lowest > ceiling
            {
                let message = format!(
                    "{}: the descriptor asks for vmx-{lowest}; {} runs hardware up to vmx-{ceiling}",
                    p.name(),
                    p.name()
                );
                findings.push(
                    Finding::error("target.hardware-family", message)
                        .at(name)
                        .quoting("vSphere", unsupported_family(&format!("vmx-{lowest}"))),
                );
            } else if let Some(base) = p.base_hardware()
                && lowest > base
            {
                let message = format!(
                    "{}: vmx-{lowest} needs a later update than the first release (vmx-{base})",
                    p.name()
                );
                findings.push(Finding::warning("target.hardware-update", message).at(name));
            }
        }
    }
}

/// Controllers and NICs outside the profile's lists, and `ovf:required` items of a type the
/// importer makes no device of.
fn devices(env: &Envelope, name: &str, p: Profile, findings: &mut Vec<Finding>) {
    let rules = p.rules();
    let items = env
        .systems()
        .into_iter()
        .flat_map(|s| s.hardware.iter())
        .flat_map(|hw| hw.items.iter());
    for item in items {
        let Some(rt) = item.resource_type else {
            continue;
        };
        let place = format!("{name}:{}", item.line);
        let id = item.instance_id.as_deref().unwrap_or("?");
        let sub = item.subtype.as_deref();
        if let Some(bus) = bus_of(rt, sub)
            && !rules.buses.contains(&bus)
        {
            let message = format!(
                "{}: item {id} is a {} controller (ResourceSubType `{}`), which {} does not import",
                p.name(),
                bus_name(bus),
                sub.unwrap_or(""),
                p.name()
            );
            findings.push(Finding::error("target.controller", message).at(place.clone()));
        }
        if rt == 10
            && let Some(nic) = sub.and_then(nic_of)
            && !rules.nics.contains(&nic)
        {
            let message = format!(
                "{}: item {id} is a {} network adapter, which {} does not offer",
                p.name(),
                nic_name(nic),
                p.name()
            );
            findings.push(Finding::error("target.nic", message).at(place.clone()));
        }
        if let Some(known) = rules.devices
            && item.required
            && !known.contains(&rt)
        {
            let message = format!(
                "{}: item {id} has ResourceType {rt}, which {} makes no device of, and is ovf:required; mark it ovf:required=\"false\" or drop it",
                p.name(),
                p.name()
            );
            let finding = Finding::error("target.required-item", message).at(place);
            findings.push(match rules.family {
                // ovfreader.cpp's words for a required Item of a type it does not handle.
                Target::Virtualbox => finding.quoting(
                    "VirtualBox",
                    format!(
                        "Error reading \"{name}\": Unknown resource type {rt} in hardware item, line {}",
                        item.line
                    ),
                ),
                Target::Vmware => finding,
            });
        }
    }
}

/// The version of a `vmx-NN` family.
fn vmx(family: &str) -> Option<u32> {
    family.strip_prefix("vmx-")?.parse().ok()
}

fn extensions(env: &Envelope, name: &str, p: Profile, findings: &mut Vec<Finding>) {
    let rules = p.rules();
    let mut vbox = env
        .extensions
        .iter()
        .filter(|e| e.ns.as_deref() == Some(NS_VBOX))
        .map(|e| e.line)
        .collect::<Vec<_>>();
    for system in env.systems() {
        vbox.extend(
            (system.common.extensions.iter())
                .filter(|e| e.ns.as_deref() == Some(NS_VBOX))
                .map(|e| e.line),
        );
        for hw in &system.hardware {
            let Some(allowed) = rules.extra_config else {
                continue;
            };
            let settings = hw
                .settings
                .iter()
                .chain(hw.items.iter().flat_map(|i| i.settings.iter()));
            for s in settings.filter(|s| s.extra) {
                if !allowed
                    .iter()
                    .any(|a| s.key == *a || (a.ends_with('.') && s.key.starts_with(a)))
                {
                    let message = format!(
                        "{}: vmw:ExtraConfig key `{}` is outside the keys kiln lets through for VMware ({})",
                        p.name(),
                        s.key,
                        allowed.join(", ")
                    );
                    findings.push(Finding::error("target.extra-config", message).at(name));
                }
            }
        }
    }
    if rules.vbox_machine != Tolerance::Tolerated {
        for line in vbox {
            let message = format!(
                "{}: a vbox:Machine section is VirtualBox's; {} ignores it",
                p.name(),
                p.name()
            );
            findings.push(
                Finding::warning("target.vbox-machine", message).at(format!("{name}:{line}")),
            );
        }
    }
}

fn files(env: &Envelope, name: &str, p: Profile, findings: &mut Vec<Finding>) {
    let rules = p.rules();
    for f in &env.files {
        let Some(c) = f.compression.as_deref().filter(|c| *c != "identity") else {
            continue;
        };
        let place = format!("{name}:{}", f.line);
        let message = format!(
            "{}: File `{}` has ovf:compression=\"{c}\"",
            p.name(),
            f.href
        );
        match rules.compression {
            Tolerance::Error => findings.push(
                Finding::error("target.compression", message)
                    .at(place)
                    .quoting("vSphere", VSPHERE_COMPRESSED),
            ),
            Tolerance::Warning => {
                findings.push(Finding::warning("target.compression", message).at(place));
            }
            Tolerance::Tolerated => {}
        }
    }
    if let Some(max) = rules.max_disks
        && env.disks.len() > max
    {
        let message = format!(
            "{}: the package has {} disks; Glance's OVA import takes exactly {max}",
            p.name(),
            env.disks.len()
        );
        findings.push(
            Finding::error("target.disk-count", message)
                .at(name)
                .quoting("Glance", GLANCE_ONE_DISK),
        );
    }
    if p == Profile::AwsVmimport {
        for d in env
            .disks
            .iter()
            .filter(|d| d.format.as_deref() != Some(VMDK_STREAM_FORMAT))
        {
            let message = format!(
                "{}: Disk `{}` is not a streamOptimized VMDK, the only disk AWS VM Import reads in an OVA",
                p.name(),
                d.id
            );
            findings.push(
                Finding::error("target.disk-format", message)
                    .at(format!("{name}:{}", d.line))
                    .quoting("AWS VM Import", AWS_UNSUPPORTED_OVA),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmx_versions_parse() {
        assert_eq!(vmx("vmx-20"), Some(20));
        assert_eq!(vmx("virtualbox-2.2"), None);
    }
}
