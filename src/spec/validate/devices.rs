//! `vm.usb`, `vm.video_memory` and `vm.secure_boot`: devices of the packages' machine
//! (`crate::container::ovf_devices`).
//!
//! Refused at their spec location: Secure Boot without `firmware: efi`; video memory
//! outside 1MiB to 128MiB or not in whole MiB (kiln's bound: the common VMware maximum;
//! each ESXi host reports its own range); and, when an ova/ovf output targets VirtualBox, USB 3 (its importer records
//! only that a USB controller exists) and video memory (read only from VirtualBox's own
//! `vbox:Machine` section, which kiln does not write).

use super::{Checker, ValidOutput, packages};
use crate::container::ovf_devices::UsbController;
use crate::container::profile::Profile;
use crate::spec::model::{Firmware, Spec, Usb};

/// Largest video memory kiln writes, in MiB (the common VMware maximum).
const MAX_VIDEO_MIB: u64 = 128;

/// The checked devices.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidDevices {
    /// USB controller.
    pub usb: Option<UsbController>,
    /// Video memory in KiB.
    pub video_kib: Option<u64>,
    /// UEFI Secure Boot.
    pub secure_boot: bool,
}

impl Checker<'_> {
    pub(super) fn devices(&mut self, spec: &Spec, outputs: &[ValidOutput]) -> ValidDevices {
        let Some(vm) = &spec.vm else {
            return ValidDevices::default();
        };
        let mut valid = ValidDevices::default();
        let vbox = (packages(outputs).into_iter()).find(|o| o.target.has(Profile::Virtualbox7));
        if let Some(at) = &vm.usb {
            valid.usb = Some(match at.value {
                Usb::Usb2 => UsbController::Ehci,
                Usb::Usb3 => UsbController::Xhci,
            });
            if let (Usb::Usb3, Some(o)) = (at.value, vbox) {
                let message = format!(
                    "outputs[{}] targets virtualbox, whose importer records only that a USB controller exists (not its version); use `usb: usb2`",
                    o.index
                );
                self.err(at, "vm.usb", message);
            }
        }
        if let Some(at) = &vm.video_memory
            && let Some(bytes) = self.size(at, "vm.video_memory")
        {
            let mib = bytes >> 20;
            if bytes % (1 << 20) != 0 || !(1..=MAX_VIDEO_MIB).contains(&mib) {
                let message = format!(
                    "video memory of {bytes} bytes is not a whole number of MiB from 1MiB to {MAX_VIDEO_MIB}MiB"
                );
                self.err(at, "vm.video_memory", message);
            } else if let Some(o) = vbox {
                let message = format!(
                    "outputs[{}] targets virtualbox, which reads video memory only from its own vbox:Machine section (kiln does not write it); drop `video_memory` or that target",
                    o.index
                );
                self.err(at, "vm.video_memory", message);
            }
            valid.video_kib = Some(mib << 10);
        }
        if let Some(at) = &vm.secure_boot {
            valid.secure_boot = at.value;
            if at.value && vm.firmware != Some(Firmware::Efi) {
                let message =
                    "Secure Boot is part of UEFI; set `firmware: efi` as well".to_string();
                self.err(at, "vm.secure_boot", message);
            }
        }
        valid
    }
}
