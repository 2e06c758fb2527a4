//! OVA packages from `kiln build`: check-ova (DMTF OVF schema via xmllint, tar layout,
//! manifest digests, VMware and VirtualBox importer rules) judges every package; 7-Zip
//! extracts the disk, which check-image (qemu-img check/compare) compares with the source;
//! builds are byte-identical; bad requests fail at validation with located errors and leave
//! nothing behind.

use std::path::Path;

use crate::util::*;

/// A spec around a `src.raw` file source with the given extra top-level YAML and output.
fn spec(extra: &str, output: &str) -> String {
    format!(
        "name: app\nversion: \"2.1\"\ndescription: An appliance & its <disk>\n{extra}disks:\n  - name: root\n    source: {{ file: src.raw }}\noutputs:\n  - {output}\n"
    )
}

/// Writes `spec.yaml` and a 24 MiB sparse random source into `d`.
fn setup(d: &Dir, text: &str) {
    std::fs::write(d.path("spec.yaml"), text).unwrap();
    sparse_raw(&d.path("src.raw"), 24 << 20, 40, 7);
}

/// `sha256sum -c SHA256SUMS` in `dir` must pass (it checks every listed file); returns its
/// report.
fn sha256sum_check(dir: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Extracts `ova` with 7-Zip into `dir` and returns the member names 7-Zip lists, in order.
fn extract(ova: &Path, dir: &Path) -> Vec<String> {
    let listing = run_ok("7zz", &["l", "-slt", ova.to_str().unwrap()]);
    run_ok(
        "7zz",
        &[
            "x",
            "-y",
            &format!("-o{}", dir.display()),
            ova.to_str().unwrap(),
        ],
    );
    listing
        .lines()
        .filter_map(|l| l.strip_prefix("Path = "))
        .filter(|p| !p.ends_with(".ova"))
        .map(str::to_string)
        .collect()
}

#[test]
fn vmware_ova_passes_every_oracle_and_holds_the_source_disk() {
    let d = Dir::new();
    std::fs::write(d.path("eula.txt"), "Use at your own risk & <enjoy>.\n").unwrap();
    let extra = "vm: { cpus: 4, memory: 3GiB, os: ubuntu-64, firmware: efi }\nnetworks:\n  - { name: VM Network }\n  - { name: Backend, adapter: e1000e }\nproduct: { vendor: Example, product_url: https://example.com, eula: eula.txt }\n";
    setup(
        &d,
        &spec(extra, "{ disk_format: vmdk, container_format: ova }"),
    );
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    let ova = d.path("out/app.ova");
    for profile in ["generic", "vmware", "virtualbox"] {
        check_ova(&ova, profile);
    }
    let members = extract(&ova, &d.path("x"));
    assert_eq!(members, ["app.ovf", "app.mf", "app-disk1.vmdk"]);
    check_image(
        "vmdk",
        Some("streamOptimized"),
        &d.path("x/app-disk1.vmdk"),
        Some(&d.path("src.raw")),
        &[],
    );
    let ovf = std::fs::read_to_string(d.path("x/app.ovf")).unwrap();
    for needle in [
        "<vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>",
        "<rasd:VirtualQuantity>4</rasd:VirtualQuantity>",
        "<rasd:VirtualQuantity>3072</rasd:VirtualQuantity>",
        "vmw:osType=\"ubuntu64Guest\"",
        "vmw:key=\"firmware\" vmw:value=\"efi\"",
        "<rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>",
        "<rasd:ResourceSubType>E1000e</rasd:ResourceSubType>",
        "<License>Use at your own risk &amp; &lt;enjoy&gt;.\n</License>",
        "<Version>2.1</Version>",
    ] {
        assert!(ovf.contains(needle), "{needle} missing from:\n{ovf}");
    }
    // The report's digest and SHA256SUMS agree with an independent sha256sum.
    assert!(
        std::fs::read_to_string(d.path("out/SHA256SUMS"))
            .unwrap()
            .contains(&format!("{}  app.ova", sha256(&ova)))
    );
}

#[test]
fn an_ova_is_read_as_its_disk_not_as_raw_bytes() {
    let d = Dir::new();
    setup(
        &d,
        &spec("", "{ disk_format: vmdk, container_format: ova }"),
    );
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    d.kiln_ok(&["convert", "-O", "qcow2", "out/app.ova", "x.qcow2"]);
    let x = d.path("x.qcow2");
    let src = d.path("src.raw");
    run_ok(
        "qemu-img",
        &[
            "compare",
            "-f",
            "qcow2",
            "-F",
            "raw",
            x.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    // Asked for explicitly, the archive's bytes are a raw disk.
    d.kiln_ok(&["convert", "-f", "raw", "-O", "raw", "out/app.ova", "x.raw"]);
    assert_same_file(&d.path("out/app.ova"), &d.path("x.raw"));
    // As a build source, an OVA is a tar archive whose one disk image is the source (the
    // `member:` default), read in place.
    let again = "name: again\ndisks:\n  - name: root\n    source: { file: out/app.ova }\noutputs:\n  - { disk_format: raw, container_format: bare }\n";
    std::fs::write(d.path("again.yaml"), again).unwrap();
    d.kiln_ok(&["build", "again.yaml", "-o", "out2"]);
    run_ok(
        "cmp",
        &[
            src.to_str().unwrap(),
            d.path("out2/again.raw").to_str().unwrap(),
        ],
    );
}

#[test]
fn virtualbox_ova_uses_its_hardware_and_every_manifest_digest() {
    for (digest, label) in [
        ("sha1", "SHA1("),
        ("sha512", "SHA512("),
        ("sha256", "SHA256("),
    ] {
        let d = Dir::new();
        let extra = "vm: { os: debian-64 }\nnetworks: [ { name: NAT } ]\n";
        let output = format!(
            "{{ disk_format: vmdk, container_format: ova, target: virtualbox, manifest: {digest} }}"
        );
        setup(&d, &spec(extra, &output));
        d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
        let ova = d.path("out/app.ova");
        check_ova(&ova, "virtualbox");
        check_ova(&ova, "generic");
        extract(&ova, &d.path("x"));
        let mf = std::fs::read_to_string(d.path("x/app.mf")).unwrap();
        assert!(mf.starts_with(label) && mf.lines().count() == 2, "{mf}");
        let ovf = std::fs::read_to_string(d.path("x/app.ovf")).unwrap();
        assert!(
            ovf.contains("<rasd:ResourceSubType>AHCI</rasd:ResourceSubType>"),
            "{ovf}"
        );
        assert!(
            ovf.contains("<rasd:ResourceSubType>E1000</rasd:ResourceSubType>"),
            "{ovf}"
        );
        assert!(
            ovf.contains("ovf:id=\"96\"") && !ovf.contains("vmw:"),
            "{ovf}"
        );
    }
}

#[test]
fn every_controller_passes_both_importers() {
    for controller in ["ide", "sata", "scsi", "nvme"] {
        let d = Dir::new();
        let text = spec("", "{ disk_format: vmdk, container_format: ova }").replace(
            "    source:",
            &format!("    controller: {controller}\n    source:"),
        );
        setup(&d, &text);
        d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
        check_ova(&d.path("out/app.ova"), "vmware");
        check_ova(&d.path("out/app.ova"), "virtualbox");
    }
}

#[test]
fn ovf_package_is_three_files_that_the_report_lists() {
    let d = Dir::new();
    setup(
        &d,
        &spec(
            "networks: [ { name: LAN } ]\n",
            "{ disk_format: vmdk, container_format: ovf, manifest: sha512 }",
        ),
    );
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    let ovf = d.path("out/app.ovf");
    for profile in ["generic", "vmware", "virtualbox"] {
        check_ova(&ovf, profile);
    }
    check_image(
        "vmdk",
        Some("streamOptimized"),
        &d.path("out/app-disk1.vmdk"),
        Some(&d.path("src.raw")),
        &[],
    );
    let listed = sha256sum_check(&d.path("out"));
    for f in ["app.ovf: OK", "app.mf: OK", "app-disk1.vmdk: OK"] {
        assert!(listed.contains(f), "{listed}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path("out/app.kiln.json")).unwrap()).unwrap();
    let a = &report["artefacts"][0];
    assert_eq!(a["path"], "app.ovf");
    assert_eq!(a["files"][1]["path"], "app-disk1.vmdk");
    assert_eq!(
        a["files"][1]["sha256"].as_str().unwrap(),
        sha256(&d.path("out/app-disk1.vmdk"))
    );
    let args: Vec<&str> = a["glance_args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--file", "app-disk1.vmdk"]),
        "{args:?}"
    );
    assert!(
        args.windows(2).any(|w| w == ["--container-format", "ovf"]),
        "{args:?}"
    );
    let ovf_text = std::fs::read_to_string(&ovf).unwrap();
    assert!(
        !ovf_text.contains("\"  "),
        "no size padding outside an OVA:\n{ovf_text}"
    );
}

#[test]
fn packages_hold_every_disk_of_the_appliance() {
    let d = Dir::new();
    let text = spec(
        "",
        "{ disk_format: vmdk, container_format: ova }\n  - { disk_format: vmdk, container_format: ovf }\n  - { disk_format: qcow2, container_format: bare, disk: data }",
    )
    .replace(
        "outputs:",
        "  - name: data\n    source: { file: data.raw }\n    controller: sata\noutputs:",
    );
    setup(&d, &text);
    sparse_raw(&d.path("data.raw"), 8 << 20, 20, 9);
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    let ova = d.path("out/app.ova");
    for profile in ["generic", "vmware", "virtualbox"] {
        check_ova(&ova, profile);
        check_ova(&d.path("out/app.ovf"), profile);
    }
    let members = extract(&ova, &d.path("x"));
    assert_eq!(
        members,
        ["app.ovf", "app.mf", "app-disk1.vmdk", "app-disk2.vmdk"]
    );
    for dir in ["x", "out"] {
        for (vmdk, src) in [
            ("app-disk1.vmdk", "src.raw"),
            ("app-disk2.vmdk", "data.raw"),
        ] {
            let image = d.path(&format!("{dir}/{vmdk}"));
            check_image(
                "vmdk",
                Some("streamOptimized"),
                &image,
                Some(&d.path(src)),
                &[],
            );
        }
    }
    check_image(
        "qcow2",
        None,
        &d.path("out/app.qcow2"),
        Some(&d.path("data.raw")),
        &[],
    );
    let ovf = std::fs::read_to_string(d.path("x/app.ovf")).unwrap();
    assert!(
        ovf.contains("ovf:/disk/vmdisk2") && ovf.contains("vmware.sata.ahci"),
        "{ovf}"
    );
    assert!(sha256sum_check(&d.path("out")).contains("app-disk2.vmdk: OK"));
}

#[test]
fn ova_with_other_outputs_is_byte_identical_across_builds() {
    let d = Dir::new();
    let text = spec(
        "",
        "{ disk_format: vmdk, container_format: ova }\n  - { disk_format: qcow2, container_format: bare }",
    );
    setup(&d, &text);
    d.kiln_ok(&["build", "spec.yaml", "-o", "a"]);
    d.kiln_ok(&["build", "spec.yaml", "-o", "b"]);
    for f in ["app.ova", "app.qcow2", "app.kiln.json", "SHA256SUMS"] {
        assert_same_file(&d.path(&format!("a/{f}")), &d.path(&format!("b/{f}")));
    }
    check_ova(&d.path("a/app.ova"), "vmware");
    check_image(
        "qcow2",
        None,
        &d.path("a/app.qcow2"),
        Some(&d.path("src.raw")),
        &[],
    );
}

/// `kiln build` fails with `code`, its stderr contains every `needle`, and no output
/// directory content is left.
fn refused(text: &str, code: i32, needles: &[&str]) {
    let d = Dir::new();
    setup(&d, text);
    let err = d.kiln_err(&["build", "spec.yaml", "-o", "out"], code);
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(d.path("out"))
        .map(|r| r.count())
        .into_iter()
        .collect();
    assert!(
        left.iter().all(|n| *n == 0),
        "files left in out/: {:?}",
        d.files()
    );
}

#[test]
fn adapters_the_target_lacks_are_refused_with_their_place() {
    let extra = "networks: [ { name: NAT, adapter: vmxnet3 } ]\n";
    refused(
        &spec(
            extra,
            "{ disk_format: vmdk, container_format: ova, target: virtualbox }",
        ),
        1,
        &["spec.yaml:9:57", "outputs[0].target", "no `vmxnet3`"],
    );
    let extra = "networks: [ { name: LAN, adapter: virtio } ]\n";
    refused(
        &spec(extra, "{ disk_format: vmdk, container_format: ova }"),
        1,
        &["outputs[0].target", "target `vmware` has no `virtio`"],
    );
}

#[test]
fn packaging_requests_kiln_cannot_honour_are_refused() {
    refused(
        &spec(
            "vm: { firmware: efi }\n",
            "{ disk_format: vmdk, container_format: ova, target: virtualbox }",
        ),
        1,
        &["EFI firmware for VirtualBox"],
    );
    refused(
        &spec(
            "",
            "{ disk_format: vmdk, container_format: ova, options: { subformat: monolithicSparse } }",
        ),
        1,
        &["outputs[0].options", "streamOptimized"],
    );
    refused(
        &spec(
            "",
            "{ disk_format: raw, container_format: bare, target: vmware }",
        ),
        1,
        &["outputs[0].target", "only to ovf and ova"],
    );
    refused(
        &spec(
            "vm: { os: ubunto-64 }\n",
            "{ disk_format: vmdk, container_format: ova }",
        ),
        1,
        &["spec.yaml:4:11", "vm.os", "did you mean `ubuntu-"],
    );
    let pinned = spec(
        "",
        "{ disk_format: vmdk, container_format: ova, disk: root }",
    );
    refused(&pinned, 1, &["outputs[0].disk", "holds every disk"]);
    let three_ide = spec("", "{ disk_format: vmdk, container_format: ova }")
        .replace("    source: { file: src.raw }", "    controller: ide\n    source: { file: src.raw }")
        .replace(
            "outputs:",
            "  - { name: b, source: { blank: true }, size: 1MiB, controller: ide }\n  - { name: c, source: { blank: true }, size: 1MiB, controller: ide }\noutputs:",
        );
    refused(
        &three_ide,
        1,
        &["3 disks on one ide controller", "at most 2"],
    );
    let long = format!(
        "{{ disk_format: vmdk, container_format: ova, file: {}.ova }}",
        "n".repeat(95)
    );
    refused(&spec("", &long), 1, &["longer than 100 bytes"]);
}

#[test]
fn unreadable_licence_text_is_named() {
    let d = Dir::new();
    setup(
        &d,
        &spec(
            "product: { eula: eula.txt }\n",
            "{ disk_format: vmdk, container_format: ova }",
        ),
    );
    std::fs::write(d.path("eula.txt"), b"ok \xff\xfe").unwrap();
    let err = d.kiln_err(&["build", "spec.yaml", "-o", "out"], 2);
    assert!(
        err.contains("eula.txt") && err.contains("not UTF-8 at byte 0x3"),
        "{err}"
    );
    assert!(!d.path("out/app.ova").exists() && !d.path("out/app.ova.partial").exists());
}

/// Plays VMware's part (the OVF environment it builds from the descriptor's properties and
/// hands the guest as `guestinfo.ovfEnv`) and lets cloud-init's own OVF datasource read it;
/// prints `[metadata, user-data, config]` as JSON.
const OVF_ENV_READER: &str = r#"
import json, sys
import xml.etree.ElementTree as ET
sys.path.insert(0, sys.argv[1])
from cloudinit.sources import DataSourceOVF
OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"
root = ET.parse(sys.argv[2]).getroot()
hw = root.find(f"{OVF}VirtualSystem/{OVF}VirtualHardwareSection")
assert hw.get(f"{OVF}transport") == "com.vmware.guestInfo", hw.attrib
env = ET.Element("Environment", {"xmlns": "http://schemas.dmtf.org/ovf/environment/1",
                                 "xmlns:oe": "http://schemas.dmtf.org/ovf/environment/1"})
section = ET.SubElement(env, "PropertySection")
for p in root.iter(f"{OVF}Property"):
    ET.SubElement(section, "Property", {"oe:key": p.get(f"{OVF}key"), "oe:value": p.get(f"{OVF}value")})
md, ud, cfg = DataSourceOVF.read_ovf_environment(ET.tostring(env, encoding="unicode"), True)
print(json.dumps([md, ud.decode() if ud else None, cfg]))
"#;

#[test]
fn ovf_properties_reach_cloud_init_through_its_ovf_datasource() {
    let d = Dir::new();
    let extra = "cloud_init:\n  user_data: { packages: [nginx] }\n  meta_data: { instance-id: web-1, local-hostname: web }\n  network_config: { version: 2, ethernets: { eth0: { dhcp4: true } } }\n  deliver: [ovf-properties, seed-iso]\n";
    setup(
        &d,
        &spec(extra, "{ disk_format: vmdk, container_format: ova }"),
    );
    d.kiln_ok(&["build", "spec.yaml", "-o", "out"]);
    let ova = d.path("out/app.ova");
    check_ova(&ova, "vmware");
    check_ova(&ova, "generic");
    check_seed(
        &d.path("out/app-seed.iso"),
        &["--expect-instance-id", "web-1"],
    );
    extract(&ova, &d.path("x"));
    let (python, pydir) = cloud_init_python();
    let out = std::process::Command::new(python)
        .args(["-c", OVF_ENV_READER])
        .arg(&pydir)
        .arg(d.path("x/app.ovf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["instance-id"], "web-1", "{v}");
    assert_eq!(v[0]["local-hostname"], "web", "{v}");
    assert_eq!(
        v[0]["network-config"],
        serde_json::json!({ "version": 2, "ethernets": { "eth0": { "dhcp4": true } } }),
        "{v}"
    );
    let user_data = v[1].as_str().unwrap();
    assert!(
        user_data.starts_with("#cloud-config\n") && user_data.contains("nginx"),
        "{v}"
    );
}

#[test]
fn ovf_properties_cannot_go_to_virtualbox() {
    let extra = "cloud_init:\n  meta_data: { instance-id: a }\n  deliver: [ovf-properties]\n";
    refused(
        &spec(
            extra,
            "{ disk_format: vmdk, container_format: ova, target: virtualbox }",
        ),
        1,
        &["spec.yaml:6:12", "cloud_init.deliver", "cannot reach a"],
    );
}
