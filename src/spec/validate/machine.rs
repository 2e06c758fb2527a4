//! Virtual hardware checks (`vm`, `networks`, `product`): what OVF descriptors describe.
//! Defaults: 1 CPU, 1 GiB of memory, BIOS, guest OS `linux-64`.

use std::path::PathBuf;

use super::Checker;
use crate::container::{DEFAULT_GUEST_OS, GUEST_OSES, GuestOs, guest_os};
use crate::spec::model::{Adapter, ByteSize, Firmware, Spanned, Spec};
use crate::suggest::closest;

/// Most vCPUs a spec may ask for.
const MAX_CPUS: i64 = 256;
/// Memory when the spec gives none.
const DEFAULT_MEMORY_MIB: u64 = 1024;

/// The checked virtual machine, defaults filled in.
#[derive(Debug, Clone)]
pub struct ValidMachine {
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Firmware.
    pub firmware: Firmware,
    /// Guest OS.
    pub os: GuestOs,
    /// Network adapters: network name and model (the container's default when `None`).
    pub networks: Vec<(String, Option<Adapter>)>,
    /// Per adapter (same order): static MAC (lower case) and connected at power-on.
    pub nic_settings: Vec<(Option<String>, bool)>,
    /// Product vendor.
    pub vendor: Option<String>,
    /// Product URL.
    pub product_url: Option<String>,
    /// Licence text file, resolved.
    pub eula: Option<PathBuf>,
}

impl Checker<'_> {
    pub(super) fn machine(&mut self, spec: &Spec) -> ValidMachine {
        let vm = spec.vm.as_ref();
        let cpus = (vm.and_then(|v| v.cpus.as_ref()))
            .and_then(|at| self.cpus(at, "vm.cpus"))
            .unwrap_or(1);
        let memory_mib = (vm.and_then(|v| v.memory.as_ref()))
            .and_then(|at| self.memory_mib(at, "vm.memory"))
            .unwrap_or(DEFAULT_MEMORY_MIB);
        let os = vm
            .and_then(|v| v.os.as_ref())
            .map_or(DEFAULT_GUEST_OS, |o| o.value.as_str());
        let os = match (guest_os(os), vm.and_then(|v| v.os.as_ref())) {
            (Some(g), _) => *g,
            (None, Some(at)) => {
                let known: Vec<&str> = GUEST_OSES.iter().map(|g| g.name).collect();
                let hint = closest(os, &known)
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                self.err(
                    at,
                    "vm.os",
                    format!("unknown guest OS `{os}`; {hint}known: {}", known.join(", ")),
                );
                GUEST_OSES[0]
            }
            (None, None) => GUEST_OSES[0],
        };
        let nic_settings = (spec.networks.iter().enumerate())
            .map(|(i, n)| {
                let mac = n.mac.as_ref().and_then(|m| self.mac(m, i));
                (mac, n.connected.unwrap_or(true))
            })
            .collect();
        let product = spec.product.as_ref();
        let eula = product
            .and_then(|p| p.eula.as_ref())
            .and_then(|e| self.existing_file(e, "product.eula"));
        ValidMachine {
            cpus,
            memory_mib,
            firmware: vm.and_then(|v| v.firmware).unwrap_or(Firmware::Bios),
            os,
            networks: (spec.networks.iter())
                .map(|n| (n.name.clone(), n.adapter))
                .collect(),
            nic_settings,
            vendor: product.and_then(|p| p.vendor.clone()),
            product_url: product.and_then(|p| p.product_url.clone()),
            eula,
        }
    }
}

impl Checker<'_> {
    /// A CPU count: 1 to [`MAX_CPUS`].
    pub(super) fn cpus(&mut self, at: &Spanned<i64>, key: &str) -> Option<u32> {
        match u32::try_from(at.value) {
            Ok(n) if (1..=MAX_CPUS).contains(&at.value) => Some(n),
            _ => {
                let n = at.value;
                let message = format!("{n} CPUs is out of range; expected 1 to {MAX_CPUS}");
                self.err(at, key, message);
                None
            }
        }
    }

    /// A memory size in MiB: a whole number of MiB, at least one.
    pub(super) fn memory_mib(&mut self, at: &Spanned<ByteSize>, key: &str) -> Option<u64> {
        let bytes = self.size(at, key)?;
        if bytes < 1 << 20 || bytes % (1 << 20) != 0 {
            self.err(
                at,
                key,
                format!("memory of {bytes} bytes is not a whole number of MiB (at least 1MiB)"),
            );
            return None;
        }
        Some(bytes >> 20)
    }

    /// A static MAC address: six colon-separated hex octets, unicast (a multicast address
    /// on a NIC is refused by every hypervisor), not all zeros; lower case.
    fn mac(&mut self, at: &Spanned<String>, i: usize) -> Option<String> {
        let text = at.value.to_ascii_lowercase();
        let octets: Vec<Option<u8>> = text
            .split(':')
            .map(|o| {
                (o.len() == 2)
                    .then(|| u8::from_str_radix(o, 16).ok())
                    .flatten()
            })
            .collect();
        let key = format!("networks[{i}].mac");
        if octets.len() != 6 || octets.iter().any(Option::is_none) {
            let message = format!(
                "MAC address `{}` is not six hex octets separated by colons (e.g. 00:50:56:01:02:03)",
                at.value
            );
            self.err(at, &key, message);
            return None;
        }
        let first = octets[0].unwrap_or_default();
        if first & 1 == 1 {
            let message = format!(
                "MAC address `{}` is a multicast address (the first octet is odd); a network adapter needs a unicast one",
                at.value
            );
            self.err(at, &key, message);
            return None;
        }
        if octets.iter().all(|o| *o == Some(0)) {
            self.err(
                at,
                &key,
                "MAC address 00:00:00:00:00:00 is not an address".into(),
            );
            return None;
        }
        Some(text)
    }
}
