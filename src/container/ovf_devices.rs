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

use super::ovf::{Machine, Target, Xml};

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
        if let Some(usb) = self.usb {
            x.line(3, r#"<Item ovf:required="false">"#);
            x.leaf(4, "rasd:ElementName", "USB controller");
            x.leaf(4, "rasd:InstanceID", &next_id.to_string());
            if self.target == Target::Vmware {
                let subtype = match usb {
                    UsbController::Ehci => "vmware.usb.ehci",
                    UsbController::Xhci => "vmware.usb.xhci",
                };
                x.leaf(4, "rasd:ResourceSubType", subtype);
            }
            x.leaf(4, "rasd:ResourceType", "23");
            x.line(3, "</Item>");
            next_id += 1;
        }
        if let Some(kib) = self.video_kib {
            x.line(3, r#"<Item ovf:required="false">"#);
            x.leaf(4, "rasd:ElementName", "Video card");
            x.leaf(4, "rasd:InstanceID", &next_id.to_string());
            x.leaf(4, "rasd:ResourceType", "24");
            x.line(
                4,
                &format!(
                    r#"<vmw:Config ovf:required="false" vmw:key="videoRamSizeInKB" vmw:value="{kib}"/>"#
                ),
            );
            x.line(3, "</Item>");
        }
    }

    /// Firmware settings after the Items: EFI, and Secure Boot with it (VMware only).
    pub(super) fn firmware_config(&self, x: &mut Xml) {
        if !self.efi || self.target != Target::Vmware {
            return;
        }
        x.line(
            3,
            r#"<vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>"#,
        );
        if self.secure_boot {
            x.line(
                3,
                r#"<vmw:Config ovf:required="false" vmw:key="bootOptions.efiSecureBootEnabled" vmw:value="true"/>"#,
            );
        }
    }
}
