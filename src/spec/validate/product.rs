//! `product.properties`, `product.sections` and `deployment_options`: what the packages'
//! ProductSections and DeploymentOptionSection say (`crate::container::ovf_product`).
//!
//! Refused at the spec location: a key, class or id outside letters, digits, `.`, `-` and
//! `_` (they become OVF environment keys and XML ids); a key twice in one section, or one
//! cloud-init's `ovf-properties` delivery already writes; two sections of the same class
//! and instance; an unknown type (with a suggestion); a default value that is not of its
//! type; `password` on a non-string; two default configurations; deployment options with
//! no ova/ovf output or for a VirtualBox target (its importer has no configurations and
//! would take the last one's hardware).

use super::{Checker, ValidMachine, ValidOutput, packages};
use crate::container::ovf::Product as ProductMeta;
use crate::container::ovf_product::{
    DeploymentOption, PROPERTY_TYPES, ProductSection, Property, PropertyType,
};
use crate::container::profile::Profile;
use crate::spec::model::{self, PropertyValue, Spanned, Spec};
use crate::suggest::closest;

/// The keys cloud-init's `ovf-properties` delivery writes into the appliance's section.
const CLOUD_INIT_KEYS: [&str; 5] = [
    "instance-id",
    "hostname",
    "public-keys",
    "user-data",
    "network-config",
];

/// What the packages say about the product besides its metadata.
#[derive(Debug, Clone, Default)]
pub struct ValidProduct {
    /// The appliance's own properties.
    pub properties: Vec<Property>,
    /// More ProductSections.
    pub sections: Vec<ProductSection>,
    /// Deployment configurations.
    pub options: Vec<DeploymentOption>,
}

impl Checker<'_> {
    pub(super) fn product(
        &mut self,
        spec: &Spec,
        machine: &ValidMachine,
        outputs: &[ValidOutput],
        ovf_properties: bool,
    ) -> ValidProduct {
        let mut valid = ValidProduct::default();
        if let Some(p) = &spec.product {
            let taken: &[&str] = if ovf_properties {
                &CLOUD_INIT_KEYS
            } else {
                &[]
            };
            valid.properties = self.properties(&p.properties, "product.properties", taken);
            let mut seen: Vec<(String, Option<String>)> = Vec::new();
            for (i, at) in p.sections.iter().enumerate() {
                let s = &at.value;
                let key = format!("product.sections[{i}]");
                self.ovf_name(&s.class, &format!("{key}.class"));
                let id = (s.class.value.clone(), s.instance.clone());
                if seen.contains(&id) {
                    let message = format!(
                        "a section of class `{}` and this instance is already given; set a distinct `instance`",
                        id.0
                    );
                    self.err(&s.class, &format!("{key}.class"), message);
                }
                seen.push(id);
                let product = s.product.as_ref().map(|name| ProductMeta {
                    name: name.clone(),
                    vendor: s.vendor.clone(),
                    version: s.version.clone(),
                    url: None,
                });
                let properties = self.properties(&s.properties, &format!("{key}.properties"), &[]);
                valid.sections.push(ProductSection {
                    class: s.class.value.clone(),
                    instance: s.instance.clone(),
                    product,
                    properties,
                });
            }
        }
        valid.options = self.deployment_options(spec, machine, outputs);
        valid
    }

    /// The properties at `key`, none of whose keys is in `taken`.
    fn properties(
        &mut self,
        list: &[Spanned<model::Property>],
        key: &str,
        taken: &[&str],
    ) -> Vec<Property> {
        let mut out: Vec<Property> = Vec::new();
        for (i, at) in list.iter().enumerate() {
            let p = &at.value;
            let here = format!("{key}[{i}]");
            self.ovf_name(&p.key, &format!("{here}.key"));
            if taken.contains(&p.key.value.as_str()) {
                let message = format!(
                    "`{}` is a property cloud-init's `ovf-properties` delivery writes; choose another key",
                    p.key.value
                );
                self.err(&p.key, &format!("{here}.key"), message);
            } else if out.iter().any(|o| o.key == p.key.value) {
                let message = format!("property `{}` is given twice in this section", p.key.value);
                self.err(&p.key, &format!("{here}.key"), message);
            }
            let kind = match &p.kind {
                None => PropertyType::String,
                Some(t) => match PropertyType::parse(&t.value) {
                    Some(kind) => kind,
                    None => {
                        let hint = closest(&t.value, &PROPERTY_TYPES)
                            .map(|k| format!("did you mean `{k}`? "))
                            .unwrap_or_default();
                        let message = format!(
                            "unknown property type `{}`; {hint}known: {}",
                            t.value,
                            PROPERTY_TYPES.join(", ")
                        );
                        self.err(t, &format!("{here}.type"), message);
                        PropertyType::String
                    }
                },
            };
            let value = p.value.as_ref().map(|v| (text(&v.value), v));
            if let Some((text, v)) = &value
                && let Some(why) = kind.refuse(text)
            {
                self.err(v, &format!("{here}.value"), why);
            }
            let password = p.password.as_ref().is_some_and(|pw| pw.value);
            if let Some(pw) = p.password.as_ref().filter(|pw| pw.value)
                && kind != PropertyType::String
            {
                let message = format!(
                    "`password` hides a string; this property is {}",
                    kind.name()
                );
                self.err(pw, &format!("{here}.password"), message);
            }
            out.push(Property {
                key: p.key.value.clone(),
                kind,
                value: value.map(|(text, _)| text),
                label: p.label.clone(),
                description: p.description.clone(),
                category: p.category.clone(),
                user_configurable: p.user_configurable.unwrap_or(true),
                password,
            });
        }
        out
    }

    fn deployment_options(
        &mut self,
        spec: &Spec,
        machine: &ValidMachine,
        outputs: &[ValidOutput],
    ) -> Vec<DeploymentOption> {
        let Some(first) = spec.deployment_options.first() else {
            return Vec::new();
        };
        let packages: Vec<&ValidOutput> = packages(outputs);
        if packages.is_empty() {
            let message = "deployment options are part of an ova/ovf package, but no output has `container_format: ova` or `ovf`".to_string();
            self.err(first, "deployment_options", message);
        }
        for o in packages
            .iter()
            .filter(|o| o.target.has(Profile::Virtualbox7))
        {
            let message = format!(
                "outputs[{}] targets virtualbox, whose importer has no deployment configurations (it would take the last one's hardware); build a separate package per size",
                o.index
            );
            self.err(first, "deployment_options", message);
        }
        let mut options: Vec<DeploymentOption> = Vec::new();
        for (i, at) in spec.deployment_options.iter().enumerate() {
            let d = &at.value;
            let key = format!("deployment_options[{i}]");
            self.ovf_name(&d.id, &format!("{key}.id"));
            if options.iter().any(|o| o.id == d.id.value) {
                let message = format!("deployment option `{}` is given twice", d.id.value);
                self.err(&d.id, &format!("{key}.id"), message);
            }
            let default = d.default.unwrap_or(false);
            if default && options.iter().any(|o| o.default) {
                let message = "only one deployment option can be the default".to_string();
                self.err(&d.id, &format!("{key}.default"), message);
            }
            let cpus = (d.cpus.as_ref())
                .and_then(|c| self.cpus(c, &format!("{key}.cpus")))
                .unwrap_or(machine.cpus);
            let memory_mib = (d.memory.as_ref())
                .and_then(|m| self.memory_mib(m, &format!("{key}.memory")))
                .unwrap_or(machine.memory_mib);
            options.push(DeploymentOption {
                id: d.id.value.clone(),
                label: d.label.clone().unwrap_or_else(|| d.id.value.clone()),
                description: d.description.clone(),
                default,
                cpus,
                memory_mib,
            });
        }
        if !options.iter().any(|o| o.default) {
            options[0].default = true;
        }
        options
    }

    /// A key, class or id: letters, digits, `.`, `-`, `_`, not empty.
    fn ovf_name(&mut self, at: &Spanned<String>, key: &str) {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if at.value.is_empty() || !at.value.chars().all(ok) {
            let message = format!(
                "`{}` may hold only letters, digits, `.`, `-` and `_`",
                at.value
            );
            self.err(at, key, message);
        }
    }
}

/// A default value as the descriptor writes it.
fn text(value: &PropertyValue) -> String {
    match value {
        PropertyValue::Bool(b) => b.to_string(),
        PropertyValue::Unsigned(n) => n.to_string(),
        PropertyValue::Signed(n) => n.to_string(),
        PropertyValue::Real(r) => r.to_string(),
        PropertyValue::Text(t) => t.clone(),
    }
}
