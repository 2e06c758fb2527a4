//! From a checked spec to what an OVA says about its machine ([`crate::container`]).

use std::io::Read;
use std::path::Path;

use crate::container::cloud_init;
use crate::container::manifest::Algorithm;
use crate::container::ovf::{Adapter, Bus, Machine, Nic, Product, Target};
use crate::container::package::Package;
use crate::disk::KvOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::spec::model::{self, Controller, Firmware, ManifestDigest};
use crate::spec::{ValidOutput, ValidSpec};

/// Largest licence text kiln puts into a descriptor.
const MAX_EULA_BYTES: u64 = 1 << 20;

/// The package description of output `o`.
///
/// # Errors
/// The licence file cannot be read, is larger than 1 MiB or is not UTF-8.
pub fn package(spec: &ValidSpec, o: &ValidOutput) -> Result<Package> {
    let m = &spec.machine;
    let eula = m.eula.as_deref().map(read_eula).transpose()?;
    let product =
        (m.vendor.is_some() || m.product_url.is_some() || spec.version.is_some()).then(|| {
            Product {
                name: spec.name.clone(),
                vendor: m.vendor.clone(),
                version: spec.version.clone(),
                url: m.product_url.clone(),
            }
        });
    let machine = Machine {
        name: spec.name.clone(),
        description: spec.description.clone(),
        product,
        eula,
        os: m.os,
        cpus: m.cpus,
        memory_mib: m.memory_mib,
        efi: m.firmware == Firmware::Efi,
        target: match o.target {
            model::Target::Vmware => Target::Vmware,
            model::Target::Virtualbox => Target::Virtualbox,
        },
        bus: spec.disks[o.disk].controller.map(|c| match c {
            Controller::Ide => Bus::Ide,
            Controller::Sata => Bus::Sata,
            Controller::Scsi => Bus::Scsi,
            Controller::Nvme => Bus::Nvme,
        }),
        adapters: (m.networks.iter())
            .map(|(network, adapter)| Adapter {
                network: network.clone(),
                model: adapter.map(|a| match a {
                    model::Adapter::E1000 => Nic::E1000,
                    model::Adapter::E1000e => Nic::E1000e,
                    model::Adapter::Vmxnet3 => Nic::Vmxnet3,
                    model::Adapter::Virtio => Nic::Virtio,
                }),
            })
            .collect(),
        properties: match &spec.ovf_properties {
            Some(contents) => cloud_init::properties(contents)?,
            None => Vec::new(),
        },
    };
    let digest = match o.manifest {
        ManifestDigest::Sha1 => Algorithm::Sha1,
        ManifestDigest::Sha256 => Algorithm::Sha256,
        ManifestDigest::Sha512 => Algorithm::Sha512,
    };
    Ok(Package { machine, digest })
}

/// The VMDK options of a packaged disk: a SCSI disk says so in its own descriptor.
pub fn vmdk_options(spec: &ValidSpec, o: &ValidOutput) -> KvOptions {
    let mut options = o.options.clone();
    let scsi = match spec.disks[o.disk].controller {
        Some(c) => c == Controller::Scsi,
        None => o.target == model::Target::Vmware,
    };
    if scsi && options.get("adapter_type").is_none() {
        options.set("adapter_type", "lsilogic");
    }
    options
}

fn read_eula(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let mut bytes = Vec::new();
    (file.take(MAX_EULA_BYTES + 1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(e).with_path(path))?;
    if bytes.len() as u64 > MAX_EULA_BYTES {
        let e = Error::new(ErrorKind::InvalidInput, "licence text is larger than 1 MiB");
        return Err(e.with_path(path));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Error::new(
            ErrorKind::InvalidInput,
            format!("licence text is not UTF-8 at byte {at:#x}"),
        )
        .with_path(path)
    })
}
