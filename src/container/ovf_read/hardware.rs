//! VirtualHardwareSection: the `System` (hardware family), the items (`Item` with `rasd:`
//! properties; OVF 2.x `StorageItem` with `sasd:` and `EthernetPortItem` with `epasd:`), and
//! VMware's `vmw:Config`/`vmw:ExtraConfig` settings.
//!
//! A CIM property is a child in a namespace whose URI ends with the class name
//! (`CIM_ResourceAllocationSettingData`, ...). VirtualBox's OVF 2.0 export declares the
//! storage and Ethernet classes with a trailing `.xsd`, and DSP0243's own example 3 has a
//! typo in its Ethernet namespace; such items are read, and their namespaces recorded in
//! [`Item::odd_namespaces`] for the checks to report.

use super::model::{Hardware, Item, ItemClass, VendorSetting};
use super::reader::{Ctx, extension, parse_bool};
use super::xml::Element;
use super::{NS_EPASD, NS_RASD, NS_SASD, NS_VMW, NS_VSSD, is_ovf};

/// The CIM classes whose properties describe items, by their namespace's last segment.
const CIM_CLASSES: [(&str, &str); 3] = [
    ("CIM_ResourceAllocationSettingData", NS_RASD),
    ("CIM_StorageAllocationSettingData", NS_SASD),
    ("CIM_EthernetPortAllocationSettingData", NS_EPASD),
];

/// Reads one VirtualHardwareSection.
pub(super) fn read_hardware(cx: &mut Ctx<'_>, el: &Element) -> Hardware {
    let mut hw = Hardware {
        transport: cx.ovf_attr(el, "transport").map(str::to_string),
        id: cx.ovf_attr(el, "id").map(str::to_string),
        ..Hardware::default()
    };
    for child in &el.children {
        let ovf = is_ovf(child.ns.as_deref());
        match child.name.as_str() {
            "Info" if ovf => {}
            "System" if ovf => hw.system_types = system_types(child),
            "Item" if ovf => hw.items.push(read_item(cx, child, ItemClass::Resource)),
            "StorageItem" if ovf => hw.items.push(read_item(cx, child, ItemClass::Storage)),
            "EthernetPortItem" if ovf => {
                hw.items.push(read_item(cx, child, ItemClass::EthernetPort));
            }
            _ => match vendor_setting(cx, child) {
                Some(s) => hw.settings.push(s),
                None => hw.extensions.push(extension(child)),
            },
        }
    }
    hw
}

/// The `vssd:VirtualSystemType` tokens.
fn system_types(system: &Element) -> Vec<String> {
    system
        .children_named(|ns| ns == Some(NS_VSSD), "VirtualSystemType")
        .flat_map(|t| t.text.split_whitespace().map(str::to_string))
        .collect()
}

/// A `vmw:Config` or `vmw:ExtraConfig` element as a setting.
fn vendor_setting(cx: &mut Ctx<'_>, el: &Element) -> Option<VendorSetting> {
    if el.ns.as_deref() != Some(NS_VMW) || !matches!(el.name.as_str(), "Config" | "ExtraConfig") {
        return None;
    }
    let (Some(key), Some(value)) = (el.attr(Some(NS_VMW), "key"), el.attr(Some(NS_VMW), "value"))
    else {
        cx.warn(
            "vmw.config",
            el,
            format!("vmw:{} without vmw:key and vmw:value", el.name),
        );
        return None;
    };
    Some(VendorSetting {
        extra: el.name == "ExtraConfig",
        key: key.to_string(),
        value: value.to_string(),
        required: el
            .attrs
            .iter()
            .find(|a| a.name == "required" && is_ovf(a.ns.as_deref()))
            .is_none_or(|a| parse_bool(&a.value)),
    })
}

/// The DMTF namespace a CIM property namespace stands for, and whether it is that exact URI.
fn cim_namespace(ns: Option<&str>) -> Option<bool> {
    let ns = ns?;
    let bare = ns.trim_end_matches(".xsd").trim_end_matches('/');
    CIM_CLASSES
        .iter()
        .find(|(class, _)| bare.ends_with(class))
        .map(|(_, exact)| ns == *exact)
}

fn read_item(cx: &mut Ctx<'_>, el: &Element, class: ItemClass) -> Item {
    let mut item = Item {
        class,
        resource_type: None,
        subtype: None,
        instance_id: None,
        parent: None,
        address: None,
        address_on_parent: None,
        host_resources: Vec::new(),
        connections: Vec::new(),
        quantity: None,
        units: None,
        element_name: None,
        description: None,
        automatic_allocation: None,
        mac_address: None,
        required: cx.ovf_bool(el, "required", true),
        configuration: cx.ovf_attr(el, "configuration").map(str::to_string),
        bound: cx.ovf_attr(el, "bound").map(str::to_string),
        settings: Vec::new(),
        odd_namespaces: Vec::new(),
        line: el.line,
    };
    let mut caption = None;
    for child in &el.children {
        let Some(exact) = cim_namespace(child.ns.as_deref()) else {
            if let Some(s) = vendor_setting(cx, child) {
                item.settings.push(s);
            }
            continue;
        };
        if !exact {
            let ns = child.ns.as_deref().unwrap_or_default().to_string();
            if !item.odd_namespaces.contains(&ns) {
                item.odd_namespaces.push(ns);
            }
        }
        if child.name == "Caption" {
            caption = Some(child.trimmed().to_string());
            continue;
        }
        property(cx, &mut item, child);
    }
    if item.element_name.is_none() {
        item.element_name = caption.filter(|c| !c.is_empty());
    }
    if item.resource_type == Some(10) {
        item.mac_address = item.address.take();
    }
    item
}

/// Stores one CIM property of an item.
fn property(cx: &mut Ctx<'_>, item: &mut Item, child: &Element) {
    let text = child.trimmed().to_string();
    let some = Some(text.clone()).filter(|t| !t.is_empty());
    match child.name.as_str() {
        "ResourceType" => {
            item.resource_type = text.parse().ok();
            if item.resource_type.is_none() {
                cx.error(
                    "hw.resource-type",
                    child,
                    format!("ResourceType `{text}` is not a number"),
                );
            }
        }
        "ResourceSubType" => item.subtype = some,
        "InstanceID" => item.instance_id = some,
        "Parent" => item.parent = some,
        "Address" => item.address = some,
        "AddressOnParent" => item.address_on_parent = some,
        "HostResource" => item.host_resources.extend(some),
        "Connection" => item.connections.extend(some),
        "VirtualQuantity" => {
            item.quantity = text.parse().ok();
            if item.quantity.is_none() && !text.is_empty() {
                cx.error(
                    "hw.quantity",
                    child,
                    format!("VirtualQuantity `{text}` is not a number"),
                );
            }
        }
        "AllocationUnits" => item.units = some,
        "ElementName" => item.element_name = some,
        "Description" => item.description = some,
        "AutomaticAllocation" => item.automatic_allocation = Some(parse_bool(&text)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtualbox_look_alike_namespaces_are_read_but_not_exact() {
        let odd = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData.xsd";
        assert_eq!(cim_namespace(Some(odd)), Some(false));
        assert_eq!(cim_namespace(Some(NS_RASD)), Some(true));
        assert_eq!(cim_namespace(Some(NS_VMW)), None);
    }
}
