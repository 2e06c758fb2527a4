//! Reading OVF descriptors (DMTF DSP0243 1.x and 2.x) that other tools wrote: VMware's
//! ovftool, vSphere and Workstation exports, VirtualBox, open-vmdk's ova-compose, Packer,
//! and kiln itself.
//!
//! Two steps: [`xml`] parses the untrusted text into a bounded element tree with namespaces
//! resolved (exporters bind OVF to `ovf:`, to the default namespace, or both; CIM classes to
//! `rasd:`, `vssd:`, `sasd:`, `epasd:` or prefixes of their own), then [`reader`] and
//! [`hardware`] build the typed [`model`]. Only the root must be right (an `Envelope` in the
//! OVF 1.x or 2.x namespace); everything else that is odd but readable becomes a
//! [`Finding`] and reading goes on, so `kiln inspect` shows what a package says and `kiln
//! verify` says what is wrong with it.
//!
//! Layering: reads only bytes; knows nothing of packages, disks or the spec.

pub mod hardware;
pub mod model;
pub mod reader;
pub mod units;
pub mod xml;

use crate::container::finding::Finding;
use crate::error::{Error, ErrorKind};
pub use model::*;
use xml::XmlError;

/// The OVF 1.x envelope namespace.
pub const NS_OVF1: &str = "http://schemas.dmtf.org/ovf/envelope/1";
/// The OVF 2.x envelope namespace.
pub const NS_OVF2: &str = "http://schemas.dmtf.org/ovf/envelope/2";
/// VMware's pre-standard OVF 0.9 namespace, which current importers refuse.
pub const NS_OVF09: &str = "http://www.vmware.com/schema/ovf/1/envelope";
/// CIM_ResourceAllocationSettingData (`rasd:`).
pub const NS_RASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
/// CIM_VirtualSystemSettingData (`vssd:`).
pub const NS_VSSD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
/// CIM_StorageAllocationSettingData (`sasd:`, OVF 2.x).
pub const NS_SASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData";
/// CIM_EthernetPortAllocationSettingData (`epasd:`, OVF 2.x).
pub const NS_EPASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData";
/// VMware's extensions (`vmw:`).
pub const NS_VMW: &str = "http://www.vmware.com/schema/ovf";
/// VirtualBox's extensions (`vbox:`).
pub const NS_VBOX: &str = "http://www.virtualbox.org/ovf/machine";
/// XML Schema instance (`xsi:type`).
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// True for either OVF envelope namespace (VMware puts OVF 2 elements into OVF 1
/// descriptors, e.g. `ovf2:PlacementGroupSection`).
pub fn is_ovf(ns: Option<&str>) -> bool {
    matches!(ns, Some(NS_OVF1 | NS_OVF2))
}

/// Why a descriptor cannot be read at all.
#[remain::sorted]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DescriptorError {
    /// The root is not an OVF Envelope.
    #[error("{name}: the root element is `{found}` in namespace `{ns}`, not an OVF Envelope")]
    NotEnvelope {
        /// Descriptor name.
        name: String,
        /// Local name of the root.
        found: String,
        /// Its namespace.
        ns: String,
    },
    /// The root is in VMware's pre-standard OVF 0.9 namespace.
    #[error(
        "{name}: the Envelope uses the pre-standard OVF 0.9 namespace {NS_OVF09}; OVF 1.x ({NS_OVF1}) or 2.x ({NS_OVF2}) is required"
    )]
    Ovf09 {
        /// Descriptor name.
        name: String,
    },
    /// The XML cannot be read.
    #[error("{name}: {source}")]
    Xml {
        /// Descriptor name.
        name: String,
        /// What is wrong.
        #[source]
        source: XmlError,
    },
}

impl From<DescriptorError> for Error {
    fn from(e: DescriptorError) -> Self {
        Error::new(ErrorKind::InvalidImage, e)
    }
}

/// A descriptor read into the model, with what was odd about it.
#[derive(Debug, Clone)]
pub struct Descriptor {
    /// The model.
    pub envelope: Envelope,
    /// Leniencies and defects met while reading (places are `name:line`).
    pub findings: Vec<Finding>,
}

/// Reads descriptor `bytes`, naming it `name` in findings and errors.
///
/// # Errors
/// [`DescriptorError`]: not XML kiln reads (see [`xml`]), or not an OVF 1.x/2.x Envelope.
pub fn read_descriptor(bytes: &[u8], name: &str) -> Result<Descriptor, DescriptorError> {
    let doc = xml::parse(bytes).map_err(|source| DescriptorError::Xml {
        name: name.to_string(),
        source,
    })?;
    let root = &doc.root;
    let version = match root.ns.as_deref() {
        Some(NS_OVF1) if root.name == "Envelope" => OvfVersion::V1,
        Some(NS_OVF2) if root.name == "Envelope" => OvfVersion::V2,
        Some(NS_OVF09) => return Err(DescriptorError::Ovf09 { name: name.into() }),
        ns => {
            return Err(DescriptorError::NotEnvelope {
                name: name.into(),
                found: root.name.clone(),
                ns: ns.unwrap_or("").into(),
            });
        }
    };
    let mut cx = reader::Ctx::new(name);
    look_alike_namespaces(&mut cx, &doc);
    let envelope = reader::read_envelope(&mut cx, root, version);
    Ok(Descriptor {
        envelope,
        findings: cx.findings,
    })
}

/// Declarations of near-misses of DMTF namespaces (VirtualBox's OVF 2.0 export binds
/// `sasd:` and `epasd:` to the schema file names, with `.xsd`): VirtualBox reads them,
/// validating importers do not recognise the elements.
fn look_alike_namespaces(cx: &mut reader::Ctx<'_>, doc: &xml::Document) {
    const DMTF: [&str; 6] = [NS_OVF1, NS_OVF2, NS_RASD, NS_VSSD, NS_SASD, NS_EPASD];
    for (prefix, uri) in &doc.declarations {
        let bare = uri.trim().trim_end_matches(".xsd").trim_end_matches('/');
        let Some(good) = DMTF
            .iter()
            .find(|g| **g != uri && (**g == bare || g.eq_ignore_ascii_case(bare)))
        else {
            continue;
        };
        let message = format!(
            "namespace `{uri}` (prefix `{prefix}`) is not the DMTF namespace `{good}`; importers other than VirtualBox do not recognise elements in it"
        );
        cx.warn("ovf.namespace", &doc.root, message);
    }
}

#[cfg(test)]
mod tests;
