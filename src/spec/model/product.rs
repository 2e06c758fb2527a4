//! The spec's product metadata: what the packages' ProductSections and
//! DeploymentOptionSection say.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ByteSize, Spanned};

/// Product metadata for OVF containers.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Vendor name.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Product URL.
    #[serde(default)]
    pub product_url: Option<String>,
    /// Licence text file, relative to the spec.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub eula: Option<Spanned<String>>,
    /// Properties of the appliance's ProductSection, which VMware's deployment wizard
    /// shows and hands the guest in its OVF environment (`com.vmware.guestInfo`).
    #[serde(default)]
    #[schemars(with = "Vec<Property>")]
    pub properties: Vec<Spanned<Property>>,
    /// More ProductSections (e.g. one per component), each with its own `class`.
    #[serde(default)]
    #[schemars(with = "Vec<ProductSection>")]
    pub sections: Vec<Spanned<ProductSection>>,
}

/// One OVF property.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Property {
    /// `ovf:key`: letters, digits, `.`, `-`, `_`; unique in its section.
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// `ovf:type`: string (default), boolean, uint8, sint8, uint16, sint16, uint32, sint32,
    /// uint64, sint64, real32 or real64.
    #[serde(default, rename = "type")]
    #[schemars(with = "Option<String>")]
    pub kind: Option<Spanned<String>>,
    /// The default value, checked against the type.
    #[serde(default)]
    #[schemars(with = "Option<PropertyValue>")]
    pub value: Option<Spanned<PropertyValue>>,
    /// Label shown by the deployment wizard.
    #[serde(default)]
    pub label: Option<String>,
    /// Description shown by the deployment wizard.
    #[serde(default)]
    pub description: Option<String>,
    /// Category the wizard groups it under.
    #[serde(default)]
    pub category: Option<String>,
    /// Whether the user may set it at deployment; default `true`.
    #[serde(default)]
    pub user_configurable: Option<bool>,
    /// A secret: the wizard hides what is typed (`string` only); default `false`.
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub password: Option<Spanned<bool>>,
}

/// A property's default value: text, a number or a boolean.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PropertyValue {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Unsigned(u64),
    /// A negative whole number.
    Signed(i64),
    /// A real number.
    Real(f64),
    /// Text.
    Text(String),
}

/// A ProductSection besides the appliance's own.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductSection {
    /// `ovf:class`, e.g. `com.example.db`: prefixes its keys in the OVF environment.
    #[schemars(with = "String")]
    pub class: Spanned<String>,
    /// `ovf:instance`, when the class appears more than once.
    #[serde(default)]
    pub instance: Option<String>,
    /// Product name.
    #[serde(default)]
    pub product: Option<String>,
    /// Vendor.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Version.
    #[serde(default)]
    pub version: Option<String>,
    /// Its properties.
    #[serde(default)]
    #[schemars(with = "Vec<Property>")]
    pub properties: Vec<Spanned<Property>>,
}

/// One deployment configuration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentOption {
    /// `ovf:id`: letters, digits, `.`, `-`, `_`; unique.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Label shown by the wizard; default the id.
    #[serde(default)]
    pub label: Option<String>,
    /// Description shown by the wizard.
    #[serde(default)]
    pub description: Option<String>,
    /// The configuration chosen unless the user picks another (at most one; default the
    /// first).
    #[serde(default)]
    pub default: Option<bool>,
    /// Virtual CPUs in this configuration; default `vm.cpus`.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub cpus: Option<Spanned<i64>>,
    /// Memory in this configuration; default `vm.memory`.
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub memory: Option<Spanned<ByteSize>>,
}
