//! What a descriptor says about the software and its choices (DSP0243 §9.5, §9.8): the
//! ProductSections, with their OVF environment properties, and the DeploymentOptionSection
//! whose configurations select per-option CPU and memory Items.
//!
//! A property is written in schema order (`Label`, `Description`), with `ovf:password` for
//! secrets and a `Category` element before the first property of each category. Additional
//! ProductSections carry `ovf:class`/`ovf:instance`, which prefix their keys in the OVF
//! environment VMware hands the guest (`class.key.instance`). A configuration's CPU and
//! memory Items repeat InstanceIDs 1 and 2 with `ovf:configuration`, as ovftool writes
//! them: the Items of the configuration the user picks replace the others.

use super::ovf::Product;
use super::ovf_xml::Xml;

/// An OVF property type (DSP0243 Table 6, CIM intrinsic types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    /// `string`.
    String,
    /// `boolean` (`true` or `false`).
    Boolean,
    /// `uint8` ... `sint64`: (un)signed integers of that width.
    Int {
        /// Bits.
        bits: u32,
        /// Whether negative values are allowed.
        signed: bool,
    },
    /// `real32`, `real64`.
    Real(u32),
}

/// Every type name, for messages and the schema.
pub const PROPERTY_TYPES: [&str; 12] = [
    "string", "boolean", "uint8", "sint8", "uint16", "sint16", "uint32", "sint32", "uint64",
    "sint64", "real32", "real64",
];

impl PropertyType {
    /// The type named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "string" => PropertyType::String,
            "boolean" => PropertyType::Boolean,
            "real32" => PropertyType::Real(32),
            "real64" => PropertyType::Real(64),
            _ => {
                let (signed, bits) = if let Some(b) = name.strip_prefix("uint") {
                    (false, b)
                } else {
                    (true, name.strip_prefix("sint")?)
                };
                let bits = match bits {
                    "8" => 8,
                    "16" => 16,
                    "32" => 32,
                    "64" => 64,
                    _ => return None,
                };
                PropertyType::Int { bits, signed }
            }
        })
    }

    /// The `ovf:type` value.
    pub fn name(self) -> String {
        match self {
            PropertyType::String => "string".into(),
            PropertyType::Boolean => "boolean".into(),
            PropertyType::Int { bits, signed } => {
                format!("{}{bits}", if signed { "sint" } else { "uint" })
            }
            PropertyType::Real(bits) => format!("real{bits}"),
        }
    }

    /// Why `value` is not a value of this type, if it is not.
    pub fn refuse(self, value: &str) -> Option<String> {
        let ok = match self {
            PropertyType::String => true,
            PropertyType::Boolean => matches!(value, "true" | "false"),
            PropertyType::Int { bits, signed } => match value.parse::<i128>() {
                Ok(n) if signed => {
                    let half = 1i128 << (bits - 1);
                    (-half..half).contains(&n)
                }
                Ok(n) => (0..(1i128 << bits)).contains(&n),
                Err(_) => false,
            },
            PropertyType::Real(_) => value.parse::<f64>().is_ok_and(f64::is_finite),
        };
        (!ok).then(|| match self {
            PropertyType::Boolean => format!("`{value}` is not `true` or `false`"),
            other => format!("`{value}` is not a {} value", other.name()),
        })
    }
}

/// One property of a ProductSection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// `ovf:key`.
    pub key: String,
    /// `ovf:type`.
    pub kind: PropertyType,
    /// `ovf:value`, the default.
    pub value: Option<String>,
    /// `Label`, shown by deployment wizards.
    pub label: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// The `Category` it is shown under.
    pub category: Option<String>,
    /// `ovf:userConfigurable`: the deployment wizard lets the user set it.
    pub user_configurable: bool,
    /// `ovf:password`: the wizard hides what is typed.
    pub password: bool,
}

impl From<super::cloud_init::Property> for Property {
    fn from(p: super::cloud_init::Property) -> Self {
        Property {
            key: p.key.into(),
            kind: PropertyType::String,
            value: Some(p.value),
            label: Some(p.label.into()),
            description: None,
            category: Some("cloud-init".into()),
            user_configurable: true,
            password: false,
        }
    }
}

/// A ProductSection besides the appliance's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSection {
    /// `ovf:class` (a reverse domain name).
    pub class: String,
    /// `ovf:instance`.
    pub instance: Option<String>,
    /// Product metadata.
    pub product: Option<Product>,
    /// Its properties.
    pub properties: Vec<Property>,
}

/// One deployment configuration and the hardware it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentOption {
    /// `ovf:id`.
    pub id: String,
    /// `Label`.
    pub label: String,
    /// `Description`.
    pub description: Option<String>,
    /// `ovf:default`.
    pub default: bool,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
}

/// A ProductSection with attributes `attrs`.
pub(super) fn product_section(
    x: &mut Xml,
    attrs: &[(&str, &str)],
    product: Option<&Product>,
    properties: &[Property],
) {
    x.open("ProductSection", attrs);
    x.leaf("Info", "Information about the installed software");
    if let Some(p) = product {
        x.leaf("Product", &p.name);
        for (tag, value) in [
            ("Vendor", &p.vendor),
            ("Version", &p.version),
            ("ProductUrl", &p.url),
        ] {
            if let Some(v) = value {
                x.leaf(tag, v);
            }
        }
    }
    let mut category: Option<&str> = None;
    for p in properties {
        if p.category.is_some() && p.category.as_deref() != category {
            category = p.category.as_deref();
            x.leaf("Category", category.unwrap_or_default());
        }
        let kind = p.kind.name();
        let configurable = p.user_configurable.to_string();
        let mut attrs = vec![("ovf:key", p.key.as_str()), ("ovf:type", &kind)];
        if p.password {
            attrs.push(("ovf:password", "true"));
        }
        attrs.push(("ovf:userConfigurable", &configurable));
        attrs.extend(p.value.as_deref().map(|v| ("ovf:value", v)));
        x.open("Property", &attrs);
        if let Some(label) = &p.label {
            x.leaf("Label", label);
        }
        if let Some(d) = &p.description {
            x.leaf("Description", d);
        }
        x.close("Property");
    }
    x.close("ProductSection");
}

/// The other ProductSections, after the appliance's own.
pub(super) fn other_sections(x: &mut Xml, sections: &[ProductSection]) {
    for s in sections {
        let mut attrs = vec![("ovf:class", s.class.as_str())];
        attrs.extend(s.instance.as_deref().map(|i| ("ovf:instance", i)));
        product_section(x, &attrs, s.product.as_ref(), &s.properties);
    }
}

/// The DeploymentOptionSection (at the Envelope), when there are options.
pub(super) fn deployment_options(x: &mut Xml, options: &[DeploymentOption]) {
    if options.is_empty() {
        return;
    }
    x.open("DeploymentOptionSection", &[]);
    x.leaf("Info", "Deployment configurations");
    for o in options {
        let mut attrs = Vec::new();
        if o.default {
            attrs.push(("ovf:default", "true"));
        }
        attrs.push(("ovf:id", o.id.as_str()));
        x.open("Configuration", &attrs);
        x.leaf("Label", &o.label);
        // The schema requires a Description; the hardware says what the option is.
        let hardware = format!("{} CPU(s), {} MiB of memory", o.cpus, o.memory_mib);
        x.leaf("Description", o.description.as_deref().unwrap_or(&hardware));
        x.close("Configuration");
    }
    x.close("DeploymentOptionSection");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_their_names_and_check_values() {
        for name in PROPERTY_TYPES {
            assert_eq!(PropertyType::parse(name).unwrap().name(), name);
        }
        assert!(PropertyType::parse("uint128").is_none());
        let u8t = PropertyType::parse("uint8").unwrap();
        assert!(u8t.refuse("255").is_none());
        assert!(u8t.refuse("256").is_some());
        assert!(u8t.refuse("-1").is_some());
        let s8 = PropertyType::parse("sint8").unwrap();
        assert!(s8.refuse("-128").is_none());
        assert!(s8.refuse("128").is_some());
        let u64t = PropertyType::parse("uint64").unwrap();
        assert!(u64t.refuse("18446744073709551615").is_none());
        assert!(PropertyType::Boolean.refuse("yes").is_some());
        assert!(PropertyType::Real(64).refuse("1.5e3").is_none());
        assert!(PropertyType::Real(64).refuse("inf").is_some());
    }
}
