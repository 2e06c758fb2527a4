//! Product properties (types, labels, descriptions, categories, userConfigurable,
//! password), several ProductSections and deployment options with per-option hardware.
//!
//! Oracles: check-ova (DMTF schema via xmllint, VMware's importer rules) and Python's
//! xml.etree reading what the descriptor says; refusals at spec line:col.

use crate::util::*;

const SPEC: &str = r#"name: papp
version: "2.1"
vm: { cpus: 2, memory: 2GiB, os: ubuntu-64 }
networks: [ { name: lan } ]
disks:
  - { name: root, source: { blank: true }, size: 8MiB }
product:
  vendor: Example Corp
  properties:
    - { key: appliance.hostname, value: papp, label: Host name, description: "The host's name", category: Network }
    - { key: appliance.dhcp, type: boolean, value: true, label: Use DHCP, category: Network }
    - { key: admin.password, password: true, label: Admin password, category: Security }
    - { key: appliance.port, type: uint16, value: 8443, user_configurable: false }
  sections:
    - class: com.example.db
      product: Example DB
      version: "15"
      properties:
        - { key: size, type: sint32, value: -1, label: DB size in GiB }
deployment_options:
  - { id: small, label: Small, description: For tests }
  - { id: large, label: Large, cpus: 8, memory: 16GiB, default: true }
outputs:
  - { disk_format: vmdk, container_format: ova, target: esxi-7 }
"#;

/// Python: what the descriptor of the OVA argv[1] says about configurations, the CPU and
/// memory Items, the ProductSections and the transport, one fact per line.
const FACTS: &str = r#"
import sys, tarfile, xml.etree.ElementTree as ET
t = tarfile.open(sys.argv[1])
ovf = [m for m in t.getmembers() if m.name.endswith('.ovf')][0]
root = ET.fromstring(t.extractfile(ovf).read())
O = '{http://schemas.dmtf.org/ovf/envelope/1}'
R = '{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}'
for c in root.iter(O + 'Configuration'):
    print('config', c.get(O + 'id'), c.get(O + 'default'), c.find(O + 'Label').text, c.find(O + 'Description').text)
for it in root.iter(O + 'Item'):
    rt = it.find(R + 'ResourceType').text
    if rt in ('3', '4'):
        print('item', it.get(O + 'configuration'), it.find(R + 'InstanceID').text, rt, it.find(R + 'VirtualQuantity').text)
for s in root.iter(O + 'ProductSection'):
    print('section', s.get(O + 'class'), s.findtext(O + 'Product'))
    category = None
    for e in s:
        if e.tag == O + 'Category':
            category = e.text
        if e.tag == O + 'Property':
            a = lambda n: e.get(O + n)
            print(' ', a('key'), a('type'), a('value'), a('userConfigurable'), a('password'), category, e.findtext(O + 'Label'), e.findtext(O + 'Description'))
hw = list(root.iter(O + 'VirtualHardwareSection'))[0]
print('transport', hw.get(O + 'transport'))
"#;

#[test]
fn properties_sections_and_deployment_options_reach_the_descriptor() {
    let d = Dir::new();
    std::fs::write(d.path("s.yaml"), SPEC).unwrap();
    d.kiln_ok(&["build", "s.yaml", "-o", "out"]);
    let ova = d.path("out/papp.ova");
    check_ova(&ova, "vmware");
    check_ova(&ova, "generic");
    let facts = python(&d.path("."), FACTS, &[ova.to_str().unwrap()]);
    assert_eq!(
        facts.lines().collect::<Vec<_>>(),
        [
            "config small None Small For tests",
            "config large true Large 8 CPU(s), 16384 MiB of memory",
            "item small 1 3 2",
            "item small 2 4 2048",
            "item large 1 3 8",
            "item large 2 4 16384",
            "section None papp",
            "  appliance.hostname string papp true None Network Host name The host's name",
            "  appliance.dhcp boolean true true None Network Use DHCP None",
            "  admin.password string None true true Security Admin password None",
            "  appliance.port uint16 8443 false None Security None None",
            "section com.example.db Example DB",
            "  size sint32 -1 true None None DB size in GiB None",
            "transport com.vmware.guestInfo",
        ]
    );
    let out = d.kiln_ok(&["verify", "out/papp.ova", "--target", "esxi-7"]);
    assert!(out.contains("OK (0 errors"), "{out}");
    // (The VMware NIC is an error there too.)
    let out = d.kiln(&["verify", "out/papp.ova", "--target", "virtualbox-7"]);
    let vbox = String::from_utf8_lossy(&out.stdout);
    assert!(
        vbox.contains("warning [target.deployment-options]")
            && vbox.contains("offers 2 configurations"),
        "{vbox}"
    );
    let inspected = d.kiln_ok(&["inspect", "out/papp.ova"]);
    assert!(
        inspected.contains("deployment options: small, large (default)"),
        "{inspected}"
    );
}

/// The refusal of `SPEC` with `old` replaced by `new`.
fn refused_with(old: &str, new: &str) -> String {
    assert!(SPEC.contains(old), "{old}");
    build_refused(&SPEC.replacen(old, new, 1))
}

#[test]
fn bad_properties_are_refused_where_they_are_written() {
    let err = refused_with("type: uint16, value: 8443", "type: uint16, value: 70000");
    assert!(
        err.contains("s.yaml:13:51: product.properties[3].value: `70000` is not a uint16 value"),
        "{err}"
    );
    let err = refused_with("type: boolean", "type: boolen");
    assert!(
        err.contains(
            "product.properties[1].type: unknown property type `boolen`; did you mean `boolean`?"
        ),
        "{err}"
    );
    let err = refused_with("password: true", "type: uint8, password: true");
    assert!(
        err.contains(
            "product.properties[2].password: `password` hides a string; this property is uint8"
        ),
        "{err}"
    );
    let err = refused_with("key: appliance.dhcp", "key: appliance.hostname");
    assert!(
        err.contains("product.properties[1].key: property `appliance.hostname` is given twice"),
        "{err}"
    );
    let err = refused_with("key: admin.password", "key: admin/password");
    assert!(
        err.contains("`admin/password` may hold only letters, digits, `.`, `-` and `_`"),
        "{err}"
    );
    let clash = SPEC
        .replacen("key: appliance.hostname", "key: hostname", 1)
        .replacen(
            "outputs:",
            "cloud_init: { meta_data: { instance-id: x }, deliver: [ovf-properties] }\noutputs:",
            1,
        );
    let err = build_refused(&clash);
    assert!(
        err.contains("product.properties[0].key: `hostname` is a property cloud")
            && err.contains("`ovf-properties` delivery writes"),
        "{err}"
    );
}

#[test]
fn deployment_options_are_refused_where_they_cannot_work() {
    let err = refused_with("target: esxi-7", "target: [esxi-7, virtualbox]");
    assert!(
        err.contains("deployment_options: outputs[0] targets virtualbox, whose importer has no deployment configurations"),
        "{err}"
    );
    let err = refused_with("label: Small,", "label: Small, default: true,");
    assert!(
        err.contains(
            "deployment_options[1].default: only one deployment option can be the default"
        ),
        "{err}"
    );
    let err = refused_with("id: large", "id: small");
    assert!(
        err.contains("deployment_options[1].id: deployment option `small` is given twice"),
        "{err}"
    );
    let err = refused_with("cpus: 8", "cpus: 0");
    assert!(
        err.contains("deployment_options[1].cpus: 0 CPUs is out of range"),
        "{err}"
    );
    let err = refused_with(
        "container_format: ova, target: esxi-7",
        "container_format: bare",
    );
    assert!(
        err.contains("deployment_options: deployment options are part of an ova/ovf package"),
        "{err}"
    );
}
