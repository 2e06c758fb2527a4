//! CD-ROM drives inside ova/ovf packages: the cloud-init seed (`deliver: [seed-cdrom]`) and
//! ISO files (`vm.cdroms`), written as VMware's ovftool (File + `ovf:/file/`) and
//! VirtualBox's export (an Ecma-119 Disk + `ovf:/disk/`) write them.
//!
//! Oracles: check-ova (DMTF schema via xmllint and each importer's rules), cloud-init's
//! own NoCloud code on the extracted seed (check-seed), GNU tar for extraction, Python's
//! xml.etree for the Items, xorriso for the user's ISO.

use crate::util::*;

/// Python: prints `ResourceType ResourceSubType HostResource Parent AddressOnParent` of
/// every drive Item (ResourceType 15 or 17) and `DISK id format` of every Disk of the
/// descriptor argv[1].
const DRIVES: &str = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = '{http://schemas.dmtf.org/ovf/envelope/1}'
rasd = '{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}'
ids = {}
for it in root.iter(ns + 'Item'):
    ids[it.find(rasd + 'InstanceID').text] = it
for d in root.iter(ns + 'Disk'):
    print('DISK', d.get(ns + 'diskId'), d.get(ns + 'fileRef'), d.get(ns + 'format').rsplit('/', 1)[1])
for it in root.iter(ns + 'Item'):
    rt = it.find(rasd + 'ResourceType').text
    if rt not in ('15', '17'):
        continue
    vals = [rt]
    for p in ('ResourceSubType', 'HostResource', 'Parent', 'AddressOnParent'):
        e = it.find(rasd + p)
        vals.append(e.text if e is not None and e.text else '-')
    parent = ids[vals[3]]
    vals.append('on:' + parent.find(rasd + 'ResourceType').text)
    print(' '.join(vals))
"#;

const SPEC: &str = "name: app
vm: { cpus: 1, memory: 512MiB, os: ubuntu-64 }
networks: [ { name: lan } ]
disks:
  - { name: root, source: { blank: true }, size: 8MiB }
cloud_init:
  user_data: |
    #cloud-config
    hostname: cdrom-test
  meta_data: { instance-id: cd-1 }
  deliver: [seed-iso, seed-cdrom]
outputs:
  - { disk_format: vmdk, container_format: ova, name: vmw, file: vmw.ova, target: esxi-7 }
  - { disk_format: vmdk, container_format: ova, name: vbox, file: vbox.ova, target: virtualbox }
  - { disk_format: vmdk, container_format: ovf, name: dir, file: dir.ovf }
";

fn drives(d: &Dir, ovf: &str) -> Vec<String> {
    python(&d.path("."), DRIVES, &[d.path(ovf).to_str().unwrap()])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_seed_travels_in_each_package_as_its_importer_reads_a_cdrom() {
    let d = Dir::new();
    std::fs::write(d.path("s.yaml"), SPEC).unwrap();
    d.kiln_ok(&["build", "s.yaml", "-o", "out"]);
    check_ova(&d.path("out/vmw.ova"), "vmware");
    check_ova(&d.path("out/vbox.ova"), "virtualbox");
    check_ova(&d.path("out/dir.ovf"), "vmware");
    for (ova, member) in [("vmw", "vmw-seed.iso"), ("vbox", "vbox-seed.iso")] {
        let x = d.path(ova);
        std::fs::create_dir(&x).unwrap();
        tar_extract(&d.path(&format!("out/{ova}.ova")), &x);
        let seed = x.join(member);
        check_seed(&seed, &[]);
        // The same bytes as the seed beside the disks.
        assert_same_file(&seed, &d.path("out/app-seed.iso"));
    }
    check_seed(&d.path("out/dir-seed.iso"), &[]);
    for ova in ["vmw", "vbox"] {
        let text = std::fs::read_to_string(d.path(&format!("{ova}/{ova}.ovf"))).unwrap();
        insta::assert_snapshot!(format!("cdrom-descriptor-{ova}"), text);
    }
    assert_eq!(
        drives(&d, "vmw/vmw.ovf"),
        [
            "DISK vmdisk1 file1 vmdk.html#streamOptimized",
            "17 - ovf:/disk/vmdisk1 3 0 on:6",
            "15 vmware.cdrom.iso ovf:/file/file2 4 0 on:5",
        ]
    );
    assert_eq!(
        drives(&d, "vbox/vbox.ovf"),
        [
            "DISK vmdisk1 file1 vmdk.html#streamOptimized",
            "DISK iso1 file2 Ecma-119.htm",
            "17 - ovf:/disk/vmdisk1 3 0 on:20",
            "15 - ovf:/disk/iso1 4 0 on:5",
        ]
    );
    let listing = run_ok("tar", &["-tf", d.path("out/vmw.ova").to_str().unwrap()]);
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["vmw.ovf", "vmw.mf", "vmw-disk1.vmdk", "vmw-seed.iso"]
    );
    let mf = std::fs::read_to_string(d.path("out/dir.mf")).unwrap();
    let iso_line = format!(
        "SHA256(dir-seed.iso)= {}",
        sha256(&d.path("out/dir-seed.iso"))
    );
    assert!(mf.contains(&iso_line), "{mf}");
    d.kiln_ok(&["verify", "out/vmw.ova", "--target", "esxi-7"]);
    let vbox = d.kiln_ok(&["verify", "out/vbox.ova", "--target", "virtualbox"]);
    assert!(!vbox.contains("target.cdrom-medium"), "{vbox}");
    // VMware's form leaves VirtualBox's drive empty, and verify says so.
    let out = d.kiln(&["verify", "out/vmw.ova", "--target", "virtualbox"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning [target.cdrom-medium]") && text.contains("ovf:/file/file2"),
        "{text}"
    );
}

/// `d/tools.iso`, made by xorriso.
fn tools_iso(d: &Dir) -> std::path::PathBuf {
    require_tool("xorriso");
    std::fs::create_dir(d.path("tree")).unwrap();
    std::fs::write(d.path("tree/README.TXT"), "tools\n").unwrap();
    let iso = d.path("tools.iso");
    let tree = d.path("tree");
    run_ok(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-quiet",
            "-V",
            "TOOLS",
            "-o",
            iso.to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
    );
    iso
}

#[test]
fn iso_files_ride_along_on_the_ide_controller_after_ide_disks() {
    let d = Dir::new();
    let iso = tools_iso(&d);
    let spec = "name: app
vm: { cpus: 1, memory: 512MiB, os: ubuntu-64, cdroms: [tools.iso] }
disks:
  - { name: root, source: { blank: true }, size: 8MiB, controller: ide }
outputs:
  - { disk_format: vmdk, container_format: ova, name: vmw, file: vmw.ova }
  - { disk_format: vmdk, container_format: ova, name: vbox, file: vbox.ova, target: virtualbox-7 }
";
    std::fs::write(d.path("s.yaml"), spec).unwrap();
    d.kiln_ok(&["build", "s.yaml", "-o", "out"]);
    check_ova(&d.path("out/vmw.ova"), "vmware");
    check_ova(&d.path("out/vbox.ova"), "virtualbox");
    std::fs::create_dir(d.path("x")).unwrap();
    tar_extract(&d.path("out/vmw.ova"), &d.path("x"));
    assert_same_file(&d.path("x/vmw-cdrom1.iso"), &iso);
    // One IDE controller: the disk at unit 0, the drive at unit 1.
    assert_eq!(
        drives(&d, "x/vmw.ovf"),
        [
            "DISK vmdisk1 file1 vmdk.html#streamOptimized",
            "17 - ovf:/disk/vmdisk1 3 0 on:5",
            "15 vmware.cdrom.iso ovf:/file/file2 3 1 on:5",
        ]
    );
}

#[test]
fn cdroms_are_refused_where_they_cannot_reach_the_guest() {
    let seed_only = SPEC.replace(
        "  - { disk_format: vmdk, container_format: ova, name: vmw, file: vmw.ova, target: esxi-7 }\n  - { disk_format: vmdk, container_format: ova, name: vbox, file: vbox.ova, target: virtualbox }\n  - { disk_format: vmdk, container_format: ovf, name: dir, file: dir.ovf }\n",
        "  - { disk_format: qcow2, container_format: bare }\n",
    );
    let err = build_refused(&seed_only);
    assert!(
        err.contains("s.yaml:11:12: cloud_init.deliver: a CD-ROM travels inside an ova/ovf package, but no output has `container_format: ova` or `ovf`"),
        "{err}"
    );
    let glance = SPEC.replace("target: esxi-7", "target: glance");
    let err = build_refused(&glance);
    assert!(
        err.contains("outputs[0] targets glance, whose import attaches no CD-ROM"),
        "{err}"
    );
    let both = SPEC.replace("target: esxi-7", "target: [esxi-7, virtualbox]");
    let err = build_refused(&both);
    assert!(
        err.contains("outputs[0] targets VMware and VirtualBox, which find a CD-ROM's medium in different places"),
        "{err}"
    );
    let aws = SPEC.replace("target: esxi-7", "target: [vmware, aws-vmimport]");
    let err = build_refused(&aws);
    assert!(err.contains("outputs[0] targets aws-vmimport"), "{err}");
    let crowded = SPEC.replace(
        "size: 8MiB }",
        "size: 8MiB, controller: ide }\n  - { name: data, source: { blank: true }, size: 8MiB, controller: ide }",
    );
    let err = build_refused(&crowded);
    assert!(
        err.contains(
            "1 CD-ROM drive(s) and 2 disk(s) on `ide` need more than the IDE controller's 2 units"
        ),
        "{err}"
    );
}

#[test]
fn a_cdrom_file_must_be_iso_9660() {
    let d = Dir::new();
    std::fs::write(d.path("not.iso"), vec![0u8; 64 << 10]).unwrap();
    let spec = "name: app
vm: { cdroms: [missing.iso, not.iso] }
disks:
  - { name: root, source: { blank: true }, size: 8MiB }
outputs:
  - { disk_format: vmdk, container_format: ova }
";
    std::fs::write(d.path("s.yaml"), spec).unwrap();
    let err = d.kiln_err(&["build", "s.yaml", "-o", "out"], 1);
    assert!(!d.path("out").exists(), "{err}");
    let err = err.replace(['│', '×'], " ");
    let err = err.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        err.contains("s.yaml:2:16: vm.cdroms[0]: cannot read"),
        "{err}"
    );
    assert!(
        err.contains("s.yaml:2:29: vm.cdroms[1]: `not.iso` is not an ISO 9660 image (no `CD001` at byte 0x8001)"),
        "{err}"
    );
}

#[test]
fn a_signed_package_covers_its_cdrom_in_the_manifest() {
    let d = Dir::new();
    std::fs::write(d.path("s.yaml"), SPEC).unwrap();
    openssl_key_and_cert(&d.path("key.pem"), &d.path("cert.pem"), "kiln cdrom signer");
    d.kiln_ok(&[
        "build",
        "s.yaml",
        "-o",
        "out",
        "--sign-key",
        "key.pem",
        "--sign-cert",
        "cert.pem",
    ]);
    let x = d.path("x");
    std::fs::create_dir(&x).unwrap();
    tar_extract(&d.path("out/vbox.ova"), &x);
    let listing = run_ok("tar", &["-tf", d.path("out/vbox.ova").to_str().unwrap()]);
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [
            "vbox.ovf",
            "vbox.mf",
            "vbox.cert",
            "vbox-disk1.vmdk",
            "vbox-seed.iso"
        ]
    );
    openssl_verifies_cert(&x.join("vbox.cert"), &x.join("vbox.mf"));
    let mf = std::fs::read_to_string(x.join("vbox.mf")).unwrap();
    let iso_line = format!(
        "SHA256(vbox-seed.iso)= {}",
        sha256(&x.join("vbox-seed.iso"))
    );
    assert!(mf.contains(&iso_line), "{mf}");
    check_ova(&d.path("out/vbox.ova"), "virtualbox");
}

#[test]
fn kiln_ova_takes_cdroms_too() {
    let d = Dir::new();
    let iso = tools_iso(&d);
    sparse_raw(&d.path("root.raw"), 8 << 20, 4, 3);
    let args = [
        "ova",
        "--disk",
        "root.raw",
        "--cdrom",
        "tools.iso",
        "--target",
        "virtualbox",
        "-o",
        "vb.ovf",
    ];
    d.kiln_ok(&args);
    check_ova(&d.path("vb.ovf"), "virtualbox");
    assert_same_file(&d.path("vb-cdrom1.iso"), &iso);
    assert_eq!(
        drives(&d, "vb.ovf"),
        [
            "DISK vmdisk1 file1 vmdk.html#streamOptimized",
            "DISK iso1 file2 Ecma-119.htm",
            "17 - ovf:/disk/vmdisk1 3 0 on:20",
            "15 - ovf:/disk/iso1 4 0 on:5",
        ]
    );
    // The loose ISO counts as part of the package: no --force, no overwrite.
    for f in ["vb.ovf", "vb.mf", "vb-disk1.vmdk"] {
        std::fs::remove_file(d.path(f)).unwrap();
    }
    let err = d.kiln_err(&args, 2);
    assert!(err.contains("vb-cdrom1.iso"), "{err}");
}
