//! Hardware breadth in OVF packages: SCSI controller kinds (lsilogic, lsilogicsas, pvscsi,
//! buslogic) and NVMe, refused per target at validation, and `kiln verify --target` on
//! controllers and NICs outside a profile's lists and on `ovf:required` items the importer
//! makes no device of.
//!
//! Packages pass the repo's check-ova (DMTF schema through xmllint plus the importer's
//! rules); Python's xml.etree reads the written Items; broken packages are made with
//! Python's tarfile and hashlib, never by kiln.

use crate::util::*;

/// Python: prints `ResourceType ResourceSubType Address Parent AddressOnParent` of every
/// Item of the descriptor in the OVA argv[1], one line each ("-" for absent values).
const ITEMS: &str = r#"
import sys, tarfile, xml.etree.ElementTree as ET
t = tarfile.open(sys.argv[1])
ovf = [m for m in t.getmembers() if m.name.endswith('.ovf')][0]
root = ET.fromstring(t.extractfile(ovf).read())
ns = '{http://schemas.dmtf.org/ovf/envelope/1}'
rasd = '{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}'
for it in root.iter(ns + 'Item'):
    vals = []
    for p in ('ResourceType', 'ResourceSubType', 'Address', 'Parent', 'AddressOnParent'):
        e = it.find(rasd + p)
        vals.append(e.text if e is not None and e.text else '-')
    print(' '.join(vals))
"#;

/// A spec whose disks sit on `controllers` (one disk each) with one ova output per target.
fn spec(controllers: &[&str], targets: &[&str]) -> String {
    let mut s = String::from(
        "name: app\nvm: { cpus: 1, memory: 512MiB, os: ubuntu-64 }\nnetworks: [ { name: lan } ]\ndisks:\n",
    );
    for (i, c) in controllers.iter().enumerate() {
        s.push_str(&format!(
            "  - {{ name: d{i}, source: {{ blank: true }}, size: 8MiB, controller: {c} }}\n"
        ));
    }
    s.push_str("outputs:\n");
    for t in targets {
        s.push_str(&format!(
            "  - {{ disk_format: vmdk, container_format: ova, name: {t}, file: {t}.ova, target: {t} }}\n"
        ));
    }
    s
}

fn items(d: &Dir, ova: &str) -> Vec<String> {
    python(&d.path("."), ITEMS, &[d.path(ova).to_str().unwrap()])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn scsi_kinds_and_nvme_are_written_as_each_importer_reads_them() {
    let d = Dir::new();
    let vmware = ["lsilogic", "lsilogicsas", "pvscsi", "buslogic", "nvme"];
    std::fs::write(d.path("s.yaml"), spec(&vmware, &["esxi-8", "generic"])).unwrap();
    d.kiln_ok(&["build", "s.yaml", "-o", "out"]);
    for (t, oracle) in [("esxi-8", "vmware"), ("generic", "generic")] {
        let ova = format!("out/{t}.ova");
        check_ova(&d.path(&ova), oracle);
        let got = items(&d, &ova);
        // CPU, memory, five controllers (InstanceIDs 3-7), five disks on them, the NIC.
        let controllers: Vec<&str> = got[2..7].iter().map(String::as_str).collect();
        assert_eq!(
            controllers,
            [
                "6 lsilogic 0 - -",
                "6 lsilogicsas 0 - -",
                "6 VirtualSCSI 0 - -",
                "6 buslogic 0 - -",
                "20 vmware.nvme.controller 0 - -",
            ],
            "{t}: {got:?}"
        );
        for (i, line) in got[7..12].iter().enumerate() {
            assert_eq!(*line, format!("17 - - {} 0", 3 + i), "{t}: {got:?}");
        }
        let out = d.kiln_ok(&["verify", "--target", t, d.path(&ova).to_str().unwrap()]);
        assert!(out.contains("OK (0 errors"), "{t}: {out}");
    }
    // The VMDKs say the adapter VMware's own exports say for these controllers.
    let script = "import sys,tarfile; t=tarfile.open(sys.argv[1]); print(' '.join(t.extractfile(m).read(65536).split(b'ddb.adapterType = \"')[1].split(b'\"')[0].decode() if b'ddb.adapterType' in t.extractfile(m).read(65536) else 'ide' for m in t.getmembers() if m.name.endswith('.vmdk')))";
    let adapters = python(
        &d.path("."),
        script,
        &[d.path("out/esxi-8.ova").to_str().unwrap()],
    );
    assert_eq!(adapters, "lsilogic lsilogic lsilogic buslogic ide");
}

#[test]
fn virtualbox_gets_its_scsi_kinds() {
    let d = Dir::new();
    for kind in ["lsilogicsas", "buslogic"] {
        std::fs::write(d.path("s.yaml"), spec(&[kind, kind], &["virtualbox-7"])).unwrap();
        d.kiln_ok(&["build", "s.yaml", "-o", kind]);
        let ova = format!("{kind}/virtualbox-7.ova");
        check_ova(&d.path(&ova), "virtualbox");
        let got = items(&d, &ova);
        assert_eq!(got[2], format!("6 {kind} 0 - -"), "{got:?}");
        assert_eq!(got[3], "17 - - 3 0", "{got:?}");
        assert_eq!(got[4], "17 - - 3 1", "{got:?}");
    }
}

#[test]
fn validation_refuses_pvscsi_for_virtualbox() {
    let text = spec(&["pvscsi"], &["virtualbox-7"]);
    let err = build_refused(&text);
    let at = target_at(&text);
    assert!(
        err.contains(&format!("{at}: outputs[0].target: target `virtualbox-7` has no pvscsi controller (disks[0]); set another `controller:`")),
        "{err}"
    );
}

#[test]
fn validation_refuses_pvscsi_for_a_list_with_virtualbox_naming_both() {
    let text = spec(&["pvscsi"], &[]).replace(
        "outputs:\n",
        "outputs:\n  - { disk_format: vmdk, container_format: ova, target: [esxi-7, virtualbox-7] }\n",
    );
    let err = build_refused(&text);
    let at = target_at(&text);
    assert!(
        err.contains(&format!("{at}: outputs[0].target: targets `esxi-7` and `virtualbox-7` conflict: a pvscsi controller (disks[0]) is accepted by `esxi-7` but refused by `virtualbox-7`")),
        "{err}"
    );
}

#[test]
fn validation_refuses_two_scsi_kinds_for_virtualbox() {
    let text = spec(&["lsilogic", "buslogic"], &["virtualbox-7"]);
    let err = build_refused(&text);
    let at = target_at(&text);
    assert!(
        err.contains(&format!("{at}: outputs[0].target: target `virtualbox-7` gives a machine one SCSI controller, the disks ask for 2 kinds (scsi, buslogic)")),
        "{err}"
    );
}

#[test]
fn validation_refuses_lsilogicsas_for_aws() {
    let text = spec(&["lsilogicsas"], &["aws-vmimport"]);
    let err = build_refused(&text);
    assert!(
        err.contains("target `aws-vmimport` has no lsilogicsas controller (disks[0])"),
        "{err}"
    );
}

/// A one-disk `vmware` OVA edited (`old` -> `new` in its descriptor) and verified against
/// `target`: returns stdout, asserting exit 1.
fn verify_edited(d: &Dir, controller: &str, old: &str, new: &str, target: &str) -> String {
    std::fs::write(d.path("s.yaml"), spec(&[controller], &["vmware"])).unwrap();
    d.kiln_ok(&["build", "s.yaml", "-o", "out"]);
    python(
        &d.path("."),
        OVA_EDIT,
        &["out/vmware.ova", "bad.ova", old, new],
    );
    let out = d.kiln(&["verify", "--target", target, "bad.ova"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn verify_catches_a_controller_outside_the_profile() {
    let d = Dir::new();
    // A pvscsi package is fine for ESXi and refused for VirtualBox.
    let out = verify_edited(
        &d,
        "pvscsi",
        "<Info>A virtual machine</Info>",
        "<Info>A virtual machine </Info>",
        "virtualbox-7",
    );
    assert!(out.contains("error [target.controller]"), "{out}");
    assert!(
        out.contains("virtualbox-7: item 3 is a pvscsi controller (ResourceSubType `VirtualSCSI`), which virtualbox-7 does not import"),
        "{out}"
    );
    assert!(
        d.kiln_ok(&["verify", "--target", "esxi-7", "bad.ova"])
            .contains("OK (0 errors")
    );
}

#[test]
fn verify_catches_a_nic_outside_the_profile() {
    let d = Dir::new();
    let out = verify_edited(
        &d,
        "scsi",
        "<rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>",
        "<rasd:ResourceSubType>virtio-net</rasd:ResourceSubType>",
        "esxi-8",
    );
    assert!(out.contains("error [target.nic]"), "{out}");
    assert!(
        out.contains("is a virtio network adapter, which esxi-8 does not offer"),
        "{out}"
    );
}

#[test]
fn verify_catches_a_required_item_the_importer_makes_no_device_of() {
    let d = Dir::new();
    // ResourceType 35 (VirtualBox's sound card) is no device vSphere makes; required by
    // default, it is an error, and ovf:required="false" makes it fine.
    let sound = "<Item>\n      <rasd:ElementName>sound</rasd:ElementName>\n      <rasd:InstanceID>99</rasd:InstanceID>\n      <rasd:ResourceType>35</rasd:ResourceType>\n    </Item>\n  </VirtualHardwareSection>";
    let out = verify_edited(&d, "scsi", "</VirtualHardwareSection>", sound, "esxi-7");
    assert!(out.contains("error [target.required-item]"), "{out}");
    assert!(out.contains("esxi-7: item 99 has ResourceType 35"), "{out}");
    python(
        &d.path("."),
        OVA_EDIT,
        &[
            "bad.ova",
            "ok.ova",
            "<Item>\n      <rasd:ElementName>sound",
            "<Item ovf:required=\"false\">\n      <rasd:ElementName>sound",
        ],
    );
    let ok = d.kiln_ok(&["verify", "--target", "esxi-7", "ok.ova"]);
    assert!(!ok.contains("target.required-item"), "{ok}");
    // VirtualBox makes a sound card of it.
    let vbox = d.kiln(&["verify", "--target", "virtualbox-7", "bad.ova"]);
    assert!(!String::from_utf8_lossy(&vbox.stdout).contains("target.required-item"));
    // ResourceType 19 (a storage extent) it does not handle, in ovfreader.cpp's words.
    let extent = sound.replace(">35<", ">19<");
    let out = verify_edited(
        &d,
        "scsi",
        "</VirtualHardwareSection>",
        &extent,
        "virtualbox-7",
    );
    assert!(out.contains("error [target.required-item]"), "{out}");
    assert!(
        out.contains("VirtualBox says: \"Error reading \"vmware.ovf\": Unknown resource type 19 in hardware item, line "),
        "{out}"
    );
}

/// Python: prints `Address AutomaticAllocation Connection ResourceSubType` of every NIC
/// Item (ResourceType 10) of the descriptor in the OVA argv[1].
const NICS: &str = r#"
import sys, tarfile, xml.etree.ElementTree as ET
t = tarfile.open(sys.argv[1])
ovf = [m for m in t.getmembers() if m.name.endswith('.ovf')][0]
root = ET.fromstring(t.extractfile(ovf).read())
ns = '{http://schemas.dmtf.org/ovf/envelope/1}'
rasd = '{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}'
for it in root.iter(ns + 'Item'):
    if it.find(rasd + 'ResourceType').text != '10':
        continue
    vals = []
    for p in ('Address', 'AutomaticAllocation', 'Connection', 'ResourceSubType'):
        e = it.find(rasd + p)
        vals.append(e.text if e is not None and e.text else '-')
    print(' '.join(vals))
"#;

/// A one-disk spec whose `networks:` block is `networks` (one entry a line), one ova
/// output per target.
fn nic_spec(networks: &[&str], targets: &[&str]) -> String {
    let mut s = String::from(
        "name: app\nvm: { cpus: 1, memory: 512MiB }\ndisks:\n  - { name: d, source: { blank: true }, size: 8MiB }\nnetworks:\n",
    );
    for n in networks {
        s.push_str(&format!("  - {n}\n"));
    }
    s.push_str("outputs:\n");
    for t in targets {
        s.push_str(&format!(
            "  - {{ disk_format: vmdk, container_format: ova, name: {t}, file: {t}.ova, target: {t} }}\n"
        ));
    }
    s
}

#[test]
fn nic_mac_and_connected_state_are_written() {
    let d = Dir::new();
    let networks = [
        "{ name: lan, mac: \"00:50:56:0A:0b:0c\" }",
        "{ name: dmz, connected: false }",
        "{ name: lan, mac: \"02:00:00:00:00:01\", connected: true }",
    ];
    let text = nic_spec(&networks, &["esxi-8", "virtualbox-7", "generic"]);
    std::fs::write(d.path("s.yaml"), text).unwrap();
    d.kiln_ok(&["build", "s.yaml", "-o", "out"]);
    for (t, oracle, nic) in [
        ("esxi-8", "vmware", "VmxNet3"),
        ("virtualbox-7", "virtualbox", "E1000"),
        ("generic", "generic", "VmxNet3"),
    ] {
        let ova = d.path(&format!("out/{t}.ova"));
        check_ova(&ova, oracle);
        let got = python(&d.path("."), NICS, &[ova.to_str().unwrap()]);
        assert_eq!(
            got,
            format!(
                "00:50:56:0a:0b:0c true lan {nic}\n- false dmz {nic}\n02:00:00:00:00:01 true lan {nic}"
            ),
            "{t}"
        );
        let out = d.kiln_ok(&["verify", "--target", t, ova.to_str().unwrap()]);
        assert!(out.contains("OK (0 errors"), "{t}: {out}");
    }
}

/// `s.yaml:LINE:COL` of `needle` in `text` (1-based).
fn at(text: &str, needle: &str) -> String {
    for (i, line) in text.lines().enumerate() {
        if let Some(c) = line.find(needle) {
            return format!("s.yaml:{}:{}", i + 1, c + 1);
        }
    }
    panic!("{needle} not in {text}");
}

#[test]
fn validation_refuses_bad_macs_at_their_place() {
    for (mac, why) in [
        (
            "00:50:56:0a:0b",
            "is not six hex octets separated by colons",
        ),
        (
            "00-50-56-0a-0b-0c",
            "is not six hex octets separated by colons",
        ),
        (
            "00:50:56:0g:0b:0c",
            "is not six hex octets separated by colons",
        ),
        (
            "01:00:5e:00:00:01",
            "is a multicast address (the first octet is odd); a network adapter needs a unicast one",
        ),
        ("00:00:00:00:00:00", "is not an address"),
    ] {
        let text = nic_spec(&[&format!("{{ name: lan, mac: \"{mac}\" }}")], &["esxi-7"]);
        let err = build_refused(&text);
        let place = at(&text, &format!("\"{mac}\""));
        assert!(
            err.contains(&format!("{place}: networks[0].mac: ")) && err.contains(why),
            "{mac}: {err}"
        );
    }
}
