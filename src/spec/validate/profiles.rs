//! `target:` of ova/ovf outputs: profile names (one or a list, unknown names with a
//! suggestion), their common denominator, and the requests no profile list can satisfy,
//! refused here so nothing is written.

use super::Checker;
use crate::container::ovf::{Bus, Target};
use crate::container::profile::{
    ALL_BUSES, GLANCE_ONE_DISK, Profile, Resolved, Rules, bus_name, nic_name,
};
use crate::spec::Issue;
use crate::spec::model::{Controller, Firmware, Output, Spanned, Spec};
use crate::suggest::closest;

impl Checker<'_> {
    /// The profiles `target:` names and what they agree on; today's `vmware` when absent.
    /// Unknown names are reported (with the closest known name) and give the default.
    pub(super) fn target_profiles(&mut self, at: &Spanned<Output>, key: &str) -> Resolved {
        let Some(t) = &at.value.target else {
            return Resolved::default();
        };
        let names = t.value.names();
        if names.is_empty() {
            self.err(
                t,
                &format!("{key}.target"),
                "`target` lists no target; name at least one".into(),
            );
            return Resolved::default();
        }
        let known = Profile::names();
        let mut profiles = Vec::new();
        for name in names {
            match Profile::from_name(name) {
                Some(p) => profiles.push(p),
                None => {
                    let hint = closest(name, &known).map_or_else(
                        || format!("; known targets: {}", known.join(", ")),
                        |k| format!("; did you mean `{k}`?"),
                    );
                    self.err(
                        t,
                        &format!("{key}.target"),
                        format!("unknown target `{name}`{hint}"),
                    );
                    return Resolved::default();
                }
            }
        }
        Resolved::of(&profiles)
    }

    /// The spec's hardware against every profile: firmware, NICs, controllers, disk count
    /// and guest OS.
    pub(super) fn target_rules(
        &mut self,
        at: &Spanned<Output>,
        key: &str,
        spec: &Spec,
        r: &Resolved,
    ) {
        let loc = at
            .value
            .target
            .as_ref()
            .map_or(at.referenced, |t| t.referenced);
        let field = format!("{key}.target");
        let efi = spec.vm.as_ref().and_then(|v| v.firmware) == Some(Firmware::Efi);
        if efi {
            match r.conflict(|rules| rules.efi) {
                Some((_, None)) => {
                    let message = "EFI firmware for VirtualBox needs its vbox:Machine OVF section, which kiln does not write yet; use `target: vmware` (VirtualBox imports it too, booting BIOS) or `firmware: bios`".to_string();
                    self.unsupported.push(Issue::at(&at.referenced, self.text, &field, message));
                }
                Some((no, Some(yes))) => self.err_loc(loc, &field, pair(no, yes, "EFI firmware (`vm.firmware: efi`)", "kiln cannot write a descriptor that boots EFI there; use `firmware: bios` or drop one target")),
                None => {}
            }
        }
        for (i, n) in spec.networks.iter().enumerate() {
            let Some(nic) = n.adapter.map(|a| a.nic()) else {
                continue;
            };
            match r.conflict(|rules| rules.nics.contains(&nic)) {
                Some((no, None)) => self.err_loc(loc, &field, format!("target `{}` has no `{}` network adapter (networks[{i}]); choose another `adapter`", no.name(), nic_name(nic))),
                Some((no, Some(yes))) => {
                    let what = format!("network adapter `{}` (networks[{i}])", nic_name(nic));
                    let hint = r.nic.map_or(String::new(), |c| format!("choose `adapter: {}`, which both accept", nic_name(c)));
                    self.err_loc(loc, &field, pair(no, yes, &what, &hint));
                }
                None => {}
            }
        }
        for (j, d) in spec.disks.iter().enumerate() {
            let bus = d
                .value
                .controller
                .map_or(r.target.default_bus(), Controller::bus);
            match r.conflict(|rules| rules.buses.contains(&bus)) {
                Some((no, None)) => self.err_loc(
                    loc,
                    &field,
                    format!(
                        "target `{}` has no {} controller (disks[{j}]); set another `controller:`",
                        no.name(),
                        bus_name(bus)
                    ),
                ),
                Some((no, Some(yes))) => {
                    let what = format!("a {} controller (disks[{j}])", bus_name(bus));
                    self.err_loc(loc, &field, pair(no, yes, &what, &common_buses(r)));
                }
                None => {}
            }
        }
        self.target_counts(loc, &field, spec, r);
    }

    fn target_counts(
        &mut self,
        loc: serde_saphyr::Location,
        field: &str,
        spec: &Spec,
        r: &Resolved,
    ) {
        let mut scsi: Vec<Bus> = Vec::new();
        for d in &spec.disks {
            let bus = (d.value.controller).map_or(r.target.default_bus(), Controller::bus);
            if bus.is_scsi() && !scsi.contains(&bus) {
                scsi.push(bus);
            }
        }
        for p in &r.profiles {
            let rules = p.rules();
            if rules.family == Target::Virtualbox && scsi.len() > 1 {
                let kinds: Vec<&str> = scsi.iter().map(|b| bus_name(*b)).collect();
                let message = format!(
                    "target `{}` gives a machine one SCSI controller, the disks ask for {} kinds ({}); use one SCSI `controller:` kind",
                    rules.name,
                    scsi.len(),
                    kinds.join(", ")
                );
                self.err_loc(loc, field, message);
            }
            if let Some(max) = rules.max_disks
                && spec.disks.len() > max
            {
                let message = format!(
                    "target `{}` takes exactly {max} disk, the spec has {} (Glance: \"{GLANCE_ONE_DISK}\")",
                    rules.name,
                    spec.disks.len()
                );
                self.err_loc(loc, field, message);
            }
            if let Some(oses) = rules.oses {
                let os = (spec.vm.as_ref().and_then(|v| v.os.as_ref()))
                    .map_or("linux-64", |o| o.value.as_str());
                if !oses.contains(&os) {
                    let message = format!(
                        "target `{}` imports the 64-bit Linux guests AWS VM Import supports ({}), not `os: {os}`",
                        rules.name,
                        oses.join(", ")
                    );
                    self.err_loc(loc, field, message);
                }
            }
        }
    }
}

/// One line naming both targets and what they disagree on.
fn pair(no: Profile, yes: Profile, what: &str, hint: &str) -> String {
    let hint = if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    };
    format!(
        "targets `{}` and `{}` conflict: {what} is accepted by `{}` but refused by `{}`{hint}",
        yes.name(),
        no.name(),
        yes.name(),
        no.name()
    )
}

/// The controllers every profile accepts, as a hint.
fn common_buses(r: &Resolved) -> String {
    let ok: Vec<&str> = (ALL_BUSES.iter().copied())
        .filter(|b| {
            r.conflict(|rules: &Rules| rules.buses.contains(b))
                .is_none()
        })
        .map(bus_name)
        .collect();
    format!("set `controller:` to one all accept ({})", ok.join(", "))
}
