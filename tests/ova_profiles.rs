//! Target profiles (`target:` one name or a list) and `kiln verify --target`.
//!
//! Every profile's packages (BIOS and EFI where the profile allows EFI, one and three disks
//! where it allows three, no NIC or three NICs with product properties, unsigned for BIOS
//! and signed for EFI) pass the repo's check-ova with the matching importer profile (DMTF
//! schema through xmllint, tar order, digests, importer rules), openssl verifies each
//! signature, and Python's xml.etree reads the hardware family each profile promises.
//! Broken packages are made from good ones with Python's tarfile and hashlib, never by kiln.

use crate::util::*;

/// (profile, check-ova profile, VirtualSystemType written, EFI allowed, disks allowed).
const PROFILES: [(&str, &str, &str, bool, usize); 10] = [
    ("vmware", "vmware", "vmx-13", true, 3),
    ("esxi-6.7", "vmware", "vmx-14", true, 3),
    ("esxi-7", "vmware", "vmx-17", true, 3),
    ("esxi-8", "vmware", "vmx-20", true, 3),
    ("workstation-17", "vmware", "vmx-20", true, 3),
    ("virtualbox-7", "virtualbox", "virtualbox-2.2", false, 3),
    ("virtualbox", "virtualbox", "virtualbox-2.2", false, 3),
    ("aws-vmimport", "vmware", "vmx-13", true, 3),
    ("glance", "generic", "vmx-13", true, 1),
    ("generic", "generic", "vmx-13", true, 3),
];

/// Python: prints the VirtualSystemType of the descriptor inside the OVA argv[1].
const FAMILY: &str = r#"
import sys, tarfile, xml.etree.ElementTree as ET
t = tarfile.open(sys.argv[1])
ovf = [m for m in t.getmembers() if m.name.endswith('.ovf')][0]
root = ET.fromstring(t.extractfile(ovf).read())
vssd = '{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData}'
print(' '.join(e.text for e in root.iter(vssd + 'VirtualSystemType')))
"#;

/// A spec with `disks` blank disks, EFI or BIOS, an optional NIC and one ova output per
/// profile in `outputs`.
fn spec(efi: bool, disks: usize, nic: bool, outputs: &[&str]) -> String {
    spec_with(efi, disks, usize::from(nic), outputs)
}

/// [`spec`] with `nics` network adapters; three or more also give the product properties.
fn spec_with(efi: bool, disks: usize, nics: usize, outputs: &[&str]) -> String {
    let firmware = if efi { "efi" } else { "bios" };
    let mut s = format!(
        "name: app\nvm: {{ cpus: 2, memory: 1GiB, firmware: {firmware}, os: ubuntu-64 }}\ndisks:\n"
    );
    for i in 0..disks {
        s.push_str(&format!(
            "  - {{ name: d{i}, source: {{ blank: true }}, size: {}MiB }}\n",
            8 + i * 4
        ));
    }
    let networks = [
        "{ name: VM Network }",
        "{ name: Backup }",
        "{ name: VM Network }",
    ];
    if nics > 0 {
        s.push_str(&format!("networks: [ {} ]\n", networks[..nics].join(", ")));
    }
    if nics >= 3 {
        s.push_str("product:\n  vendor: Example\n  properties:\n    - { key: app.port, type: uint16, value: 443, label: Port }\n");
    }
    s.push_str("outputs:\n");
    for p in outputs {
        s.push_str(&format!("  - {{ disk_format: vmdk, container_format: ova, name: {p}, file: {p}.ova, target: {p} }}\n"));
    }
    s
}

#[test]
fn every_profile_builds_packages_its_importer_accepts() {
    let d = Dir::new();
    openssl_key_and_cert(
        &d.path("key.pem"),
        &d.path("cert.pem"),
        "kiln profile signer",
    );
    for efi in [false, true] {
        for disks in [1, 3] {
            for nic in [false, true] {
                let wanted: Vec<_> = (PROFILES.iter())
                    .filter(|(_, _, _, efi_ok, most)| (!efi || *efi_ok) && disks <= *most)
                    .collect();
                let names: Vec<&str> = wanted.iter().map(|p| p.0).collect();
                let dir = format!("b-{efi}-{disks}-{nic}");
                let nics = if nic { 3 } else { 0 };
                std::fs::write(d.path("spec.yaml"), spec_with(efi, disks, nics, &names)).unwrap();
                let sign = ["--sign-key", "key.pem", "--sign-cert", "cert.pem"];
                let mut args = vec!["build", "spec.yaml", "-o", &dir];
                if efi {
                    args.extend(sign);
                }
                d.kiln_ok(&args);
                for (name, oracle_profile, family, ..) in wanted {
                    let ova = d.path(&format!("{dir}/{name}.ova"));
                    check_ova(&ova, oracle_profile);
                    if efi {
                        let x = d.path(&format!("{dir}/x-{name}"));
                        tar_extract(&ova, &x);
                        openssl_verifies_cert(
                            &x.join(format!("{name}.cert")),
                            &x.join(format!("{name}.mf")),
                        );
                    }
                    let got = python(&d.path("."), FAMILY, &[ova.to_str().unwrap()]);
                    assert_eq!(got, *family, "{name} in {dir}");
                    let out = d.kiln_ok(&["verify", "--target", name, ova.to_str().unwrap()]);
                    assert!(out.contains("OK (0 errors"), "{name} in {dir}: {out}");
                }
            }
        }
    }
}

#[test]
fn a_target_list_writes_the_common_denominator() {
    let d = Dir::new();
    let text = spec(false, 1, true, &[]).replace(
        "outputs:\n",
        "outputs:\n  - { disk_format: vmdk, container_format: ova, target: [esxi-8, esxi-6.7, virtualbox-7] }\n",
    );
    std::fs::write(d.path("spec.yaml"), text).unwrap();
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    let ova = d.path("out/app.ova");
    check_ova(&ova, "vmware");
    check_ova(&ova, "virtualbox");
    assert_eq!(
        python(&d.path("."), FAMILY, &[ova.to_str().unwrap()]),
        "vmx-14"
    );
    // The NIC is one VirtualBox accepts too (e1000, not vmxnet3).
    let script = "import sys,tarfile; t=tarfile.open(sys.argv[1]); print(t.extractfile('app.ovf').read().decode())";
    let ovf = python(&d.path("."), script, &[ova.to_str().unwrap()]);
    assert!(
        ovf.contains("<rasd:ResourceSubType>E1000</rasd:ResourceSubType>"),
        "{ovf}"
    );
    let out = d.kiln_ok(&[
        "verify",
        "--target",
        "esxi-6.7,esxi-8,virtualbox-7",
        "out/app.ova",
    ]);
    assert!(out.contains("OK (0 errors"), "{out}");
}

#[test]
fn glance_report_carries_its_formats() {
    let d = Dir::new();
    std::fs::write(d.path("spec.yaml"), spec(false, 1, false, &["glance"])).unwrap();
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    let script = "import json,sys; a=[a for a in json.load(open(sys.argv[1]))['artefacts'] if a['name']=='glance'][0]; print(a['disk_format'], a['container_format'], ' '.join(a['glance_args']))";
    let got = python(&d.path("."), script, &["out/app.kiln.json"]);
    assert!(
        got.starts_with(
            "vmdk ova openstack image create --disk-format vmdk --container-format ova"
        ),
        "{got}"
    );
}

#[test]
fn golden_descriptors_per_profile() {
    let d = Dir::new();
    let names: Vec<&str> = PROFILES.iter().map(|p| p.0).collect();
    std::fs::write(d.path("spec.yaml"), spec(false, 1, true, &names)).unwrap();
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    let script = "import sys,tarfile; t=tarfile.open(sys.argv[1]); m=[m for m in t.getmembers() if m.name.endswith('.ovf')][0]; print(t.extractfile(m).read().decode())";
    for name in names {
        let ova = d.path(&format!("out/{name}.ova"));
        let text = python(&d.path("."), script, &[ova.to_str().unwrap()]);
        insta::assert_snapshot!(format!("profile-descriptor-{name}"), text);
    }
}

/// Builds a one-disk `vmware` OVA in `d/out/app.ova`, writes `d/bad.ova` with `old`
/// replaced by `new` in its descriptor, and returns `kiln verify --target TARGETS` stdout,
/// asserting it fails.
fn verify_edited(d: &Dir, disks: usize, old: &str, new: &str, targets: &str) -> String {
    std::fs::write(
        d.path("spec.yaml"),
        spec(false, disks, true, &[]).replace(
            "outputs:\n",
            "outputs:\n  - { disk_format: vmdk, container_format: ova }\n",
        ),
    )
    .unwrap();
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    python(
        &d.path("."),
        OVA_EDIT,
        &["out/app.ova", "bad.ova", old, new],
    );
    let out = d.kiln(&["verify", "--target", targets, "bad.ova"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn verify_catches_a_hardware_family_the_target_does_not_run() {
    let d = Dir::new();
    let out = verify_edited(&d, 1, ">vmx-13<", ">vmx-20<", "esxi-7");
    assert!(out.contains("error [target.hardware-family]"), "{out}");
    assert!(
        out.contains("vSphere says: \"Unsupported hardware family 'vmx-20'.\""),
        "{out}"
    );
    // Without the target the package is fine, and esxi-8 runs vmx-20.
    assert!(d.kiln_ok(&["verify", "bad.ova"]).contains("OK (0 errors"));
    assert!(
        d.kiln_ok(&["verify", "--target", "esxi-8", "bad.ova"])
            .contains("OK (0 errors")
    );
}

#[test]
fn verify_catches_compression_for_an_esxi_target() {
    let d = Dir::new();
    let out = verify_edited(&d, 1, "<File ", "<File ovf:compression=\"gzip\" ", "esxi-8");
    assert!(out.contains("error [target.compression]"), "{out}");
    assert!(
        out.contains("vSphere says: \"OVF package with compressed disks is currently not supported for OVF import\""),
        "{out}"
    );
}

#[test]
fn verify_catches_an_extra_config_key_outside_the_allow_list() {
    let d = Dir::new();
    let extra = "<vmw:ExtraConfig ovf:required=\"false\" vmw:key=\"guestinfo.role\" vmw:value=\"web\"/>\n      <vmw:ExtraConfig ovf:required=\"false\" vmw:key=\"monitor.virtual_exec\" vmw:value=\"hardware\"/>\n    </VirtualHardwareSection>";
    let out = verify_edited(&d, 1, "</VirtualHardwareSection>", extra, "esxi-7");
    assert!(out.contains("error [target.extra-config]"), "{out}");
    assert!(out.contains("`monitor.virtual_exec`"), "{out}");
    assert!(!out.contains("`guestinfo.role` is outside"), "{out}");
}

#[test]
fn verify_catches_two_disks_for_glance() {
    let d = Dir::new();
    let out = verify_edited(
        &d,
        2,
        "</VirtualHardwareSection>",
        "</VirtualHardwareSection>",
        "glance",
    );
    assert!(out.contains("error [target.disk-count]"), "{out}");
    assert!(
        out.contains(
            "Glance says: \"Currently, OVA packages containing multiple disk are not supported.\""
        ),
        "{out}"
    );
}

#[test]
fn validation_refuses_two_disks_for_glance() {
    let text = spec(false, 2, false, &["glance"]);
    let err = build_refused(&text);
    let at = target_at(&text);
    assert!(err.contains(&format!("{at}: outputs[0].target: target `glance` takes exactly 1 disk, the spec has 2 (Glance: \"Currently, OVA packages containing multiple disk are not supported.\")")), "{err}");
}

#[test]
fn validation_refuses_an_unsatisfiable_target_list() {
    let text = spec(false, 1, false, &[]).replace(
        "outputs:\n",
        "networks: [ { name: lan, adapter: vmxnet3 } ]\noutputs:\n  - { disk_format: vmdk, container_format: ova, target: [esxi-7, virtualbox-7] }\n",
    );
    let err = build_refused(&text);
    let at = target_at(&text);
    assert!(err.contains(&format!("{at}: outputs[0].target: targets `esxi-7` and `virtualbox-7` conflict: network adapter `vmxnet3` (networks[0]) is accepted by `esxi-7` but refused by `virtualbox-7`; choose `adapter: e1000`, which both accept")), "{err}");
}

#[test]
fn validation_refuses_an_unknown_target_with_a_suggestion() {
    let text = spec(false, 1, false, &["esxi-9"]);
    let err = build_refused(&text);
    let at = target_at(&text);
    assert!(
        err.contains(&format!(
            "{at}: outputs[0].target: unknown target `esxi-9`; did you mean `esxi-7`?"
        )),
        "{err}"
    );
}
