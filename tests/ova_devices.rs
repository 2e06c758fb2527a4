//! USB controllers, video memory and UEFI Secure Boot in ova/ovf packages.
//!
//! Oracles: check-ova (DMTF schema via xmllint and each importer's rules) and Python's
//! xml.etree reading the Items and vmw:Config the descriptor holds; refusals at spec
//! line:col.

use crate::util::*;

const SPEC: &str = "name: dev
vm: { cpus: 2, memory: 2GiB, os: ubuntu-64, firmware: efi, usb: usb3, video_memory: 16MiB, secure_boot: true }
networks: [ { name: lan } ]
disks:
  - { name: root, source: { blank: true }, size: 8MiB }
outputs:
  - { disk_format: vmdk, container_format: ova, name: e7, file: e7.ova, target: esxi-7 }
  - { disk_format: vmdk, container_format: ova, name: e67, file: e67.ova, target: esxi-6.7 }
";

/// Python: `ResourceType ResourceSubType required InstanceID` of every Item of type 23 or
/// 24 of the descriptor in the OVA argv[1], each with its vmw:Config `key=value`s, then
/// the VirtualHardwareSection's own vmw:Config `key=value`s.
const DEVICES: &str = r#"
import sys, tarfile, xml.etree.ElementTree as ET
t = tarfile.open(sys.argv[1])
ovf = [m for m in t.getmembers() if m.name.endswith('.ovf')][0]
root = ET.fromstring(t.extractfile(ovf).read())
O = '{http://schemas.dmtf.org/ovf/envelope/1}'
R = '{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}'
V = '{http://www.vmware.com/schema/ovf}'
cfg = lambda e: ['%s=%s' % (c.get(V + 'key'), c.get(V + 'value')) for c in e.findall(V + 'Config')]
for it in root.iter(O + 'Item'):
    rt = it.findtext(R + 'ResourceType')
    if rt in ('23', '24'):
        print(rt, it.findtext(R + 'ResourceSubType'), it.get(O + 'required'), it.findtext(R + 'InstanceID'), *cfg(it))
hw = list(root.iter(O + 'VirtualHardwareSection'))[0]
print('section', *cfg(hw))
"#;

fn devices(d: &Dir, ova: &str) -> Vec<String> {
    python(&d.path("."), DEVICES, &[d.path(ova).to_str().unwrap()])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn usb_video_memory_and_secure_boot_are_written_as_vsphere_reads_them() {
    let d = Dir::new();
    std::fs::write(d.path("s.yaml"), SPEC).unwrap();
    d.kiln_ok(&["build", "s.yaml", "-o", "out"]);
    for ova in ["out/e7.ova", "out/e67.ova"] {
        check_ova(&d.path(ova), "vmware");
        assert_eq!(
            devices(&d, ova),
            [
                "23 vmware.usb.xhci false 6",
                "24 None false 7 videoRamSizeInKB=16384",
                "section firmware=efi bootOptions.efiSecureBootEnabled=true",
            ],
            "{ova}"
        );
        let out = d.kiln_ok(&["verify", ova]);
        assert!(out.contains("OK (0 errors"), "{out}");
    }
    // USB 2 for VirtualBox: a USB controller Item, no VMware subtype.
    let vbox = SPEC
        .replace(
            "firmware: efi, usb: usb3, video_memory: 16MiB, secure_boot: true",
            "usb: usb2",
        )
        .replace("target: esxi-7", "target: virtualbox-7");
    std::fs::write(d.path("v.yaml"), vbox).unwrap();
    d.kiln_ok(&["build", "v.yaml", "-o", "vout"]);
    check_ova(&d.path("vout/e7.ova"), "virtualbox");
    assert_eq!(devices(&d, "vout/e7.ova"), ["23 None false 6", "section"]);
}

#[test]
fn devices_are_refused_where_they_cannot_work() {
    let no_efi = SPEC.replace("firmware: efi, ", "");
    let err = build_refused(&no_efi);
    assert!(
        err.contains(
            "s.yaml:2:90: vm.secure_boot: Secure Boot is part of UEFI; set `firmware: efi` as well"
        ),
        "{err}"
    );
    let big = SPEC.replace("video_memory: 16MiB", "video_memory: 256MiB");
    let err = build_refused(&big);
    assert!(
        err.contains("vm.video_memory: video memory of 268435456 bytes is not a whole number of MiB from 1MiB to 128MiB"),
        "{err}"
    );
    let vbox = SPEC
        .replace("firmware: efi, ", "")
        .replace(", secure_boot: true", "")
        .replace("target: esxi-7", "target: virtualbox-7");
    let err = build_refused(&vbox);
    assert!(
        err.contains("vm.usb: outputs[0] targets virtualbox, whose importer records only that a USB controller exists"),
        "{err}"
    );
    assert!(
        err.contains("vm.video_memory: outputs[0] targets virtualbox, which reads video memory only from its own vbox:Machine section"),
        "{err}"
    );
}
