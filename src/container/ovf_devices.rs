//! Devices of kiln's descriptors besides storage and NICs: the USB controller, the video
//! card's memory and UEFI Secure Boot, written as VMware's ovftool writes them.
//!
//! | | `vmware` | `virtualbox` |
//! |---|---|---|
//! | USB 2 | Item 23 `vmware.usb.ehci` | Item 23 (VirtualBox records only that there is one) |
//! | USB 3 | Item 23 `vmware.usb.xhci` | refused by validation |
//! | video memory | Item 24 with `vmw:Config videoRamSizeInKB` | refused by validation |
//! | Secure Boot | `vmw:Config bootOptions.efiSecureBootEnabled` | refused (no EFI) |
//!
//! The Items are `ovf:required="false"`: an importer that makes no such device skips them
//! instead of refusing the package.

use super::ovf::{Machine, Target};
use super::ovf_xml::Xml;

/// A USB host controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsbController {
    /// USB 2.0 (EHCI).
    Ehci,
    /// USB 3 (xHCI).
    Xhci,
}

impl Machine {
    /// The USB controller and video card Items from InstanceID `next_id`.
    pub(super) fn peripherals(&self, x: &mut Xml, mut next_id: usize) {
        let optional = [("ovf:required", "false")];
        if let Some(usb) = self.usb {
            let id = next_id.to_string();
            let subtype = match (self.target, usb) {
                (Target::Virtualbox, _) => None,
                (Target::Vmware, UsbController::Ehci) => Some("vmware.usb.ehci"),
                (Target::Vmware, UsbController::Xhci) => Some("vmware.usb.xhci"),
            };
            let props: Vec<(&str, &str)> = [("ElementName", "USB controller"), ("InstanceID", &id)]
                .into_iter()
                .chain(subtype.map(|s| ("ResourceSubType", s)))
                .chain([("ResourceType", "23")])
                .collect();
            x.item_with(&optional, &props);
            next_id += 1;
        }
        // Its setting is a vmw:Config, and only VMware descriptors declare that namespace
        // (validation refuses video memory for VirtualBox).
        if let Some(kib) = self.video_kib.filter(|_| self.target == Target::Vmware) {
            x.open("Item", &optional);
            x.leaf("rasd:ElementName", "Video card");
            x.leaf("rasd:InstanceID", &next_id.to_string());
            x.leaf("rasd:ResourceType", "24");
            config(x, "videoRamSizeInKB", &kib.to_string());
            x.close("Item");
        }
    }

    /// Firmware settings after the Items: EFI, and Secure Boot with it (VMware only).
    pub(super) fn firmware_config(&self, x: &mut Xml) {
        if !self.efi || self.target != Target::Vmware {
            return;
        }
        config(x, "firmware", "efi");
        if self.secure_boot {
            config(x, "bootOptions.efiSecureBootEnabled", "true");
        }
    }
}

/// An optional VMware setting, `<vmw:Config ovf:required="false" vmw:key= vmw:value=/>`.
fn config(x: &mut Xml, key: &str, value: &str) {
    let attrs = [
        ("ovf:required", "false"),
        ("vmw:key", key),
        ("vmw:value", value),
    ];
    x.empty("vmw:Config", &attrs, 0);
}
