//! The Glance triplet from a real partitioned disk made here (sgdisk GPT, sfdisk MBR,
//! `mke2fs -d`): the ami equals `dd` of the root partition and passes `e2fsck -fn`, the aki
//! and ari equal `debugfs -R cat` of the kernel and initrd, `sha256sum -c` accepts
//! SHA256SUMS, the glance JSON links the three; bad partitions and paths are refused with one
//! line at the spec's line:col and nothing written.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Dir, Rng, assert_same_file, describe, names_in, require_tool};

/// Root partition: 24 MiB from sector 10240 of a 40 MiB disk.
const ROOT_START: u64 = 10240;
const ROOT_SECTORS: u64 = 49_152;
const DISK_BYTES: u64 = 40 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `tool ARGS` must succeed; its stdout.
fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    require_tool(tool);
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(out.status.success(), "{tool} {args:?}:\n{}", describe(&out));
    out.stdout
}

/// A root file system of the partition's size with a Debian-style `/boot`.
pub(crate) fn mkfs(d: &Dir, args: &[&str]) -> PathBuf {
    let root = d.path("tree");
    std::fs::create_dir_all(root.join("boot")).unwrap();
    let write = |name: &str, len: usize, seed: u64| {
        let mut data = vec![0u8; len];
        Rng::new(seed).fill(&mut data);
        std::fs::write(root.join(name), data).unwrap();
    };
    write("boot/vmlinuz-6.1.0-test", 700_000, 11);
    write("boot/initrd.img", 400_000, 12);
    std::os::unix::fs::symlink("vmlinuz-6.1.0-test", root.join("boot/vmlinuz")).unwrap();
    let img = d.path("root.fs");
    let size = format!("{}k", ROOT_SECTORS / 2);
    let mut all = vec!["-q", "-F", "-t", "ext4", "-E", "root_owner=0:0", "-d"];
    all.push(s(&root));
    all.extend_from_slice(args);
    all.extend_from_slice(&[s(&img), &size]);
    run("mke2fs", &all);
    img
}

/// A disk with a small first partition and `fs` in partition 2: GPT by sgdisk, or MBR
/// (`dos`) by sfdisk. `root_type` is the second partition's type.
pub(crate) fn disk(d: &Dir, label: &str, fs: &Path, second_linux: bool) -> PathBuf {
    let disk = d.path("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(DISK_BYTES)
        .unwrap();
    if label == "gpt" {
        let first = if second_linux { "8300" } else { "ef00" };
        run(
            "sgdisk",
            &[
                "-n",
                "1:2048:10239",
                "-t",
                &format!("1:{first}"),
                "-n",
                &format!("2:{ROOT_START}:{}", ROOT_START + ROOT_SECTORS - 1),
                "-t",
                "2:8300",
                s(&disk),
            ],
        );
    } else {
        require_tool("sfdisk");
        let script = format!(
            "label: dos\nstart=2048, size=8192, type=ef\nstart={ROOT_START}, size={ROOT_SECTORS}, type=83\n"
        );
        let mut child = Command::new("sfdisk")
            .args(["-q", s(&disk)])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(script.as_bytes()).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success(), "sfdisk {script}");
    }
    let data = std::fs::read(fs).unwrap();
    let f = OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all_at(&data, ROOT_START * 512).unwrap();
    disk
}

pub(crate) fn spec(d: &Dir, source: &str, extra: &str) {
    let text = format!(
        "name: app\ndisks:\n  - name: root\n    source: {{ file: {source} }}\noutputs:\n  - disk_format: ami\n    container_format: ami\n{extra}"
    );
    std::fs::write(d.path("s.yaml"), text).unwrap();
}

pub(crate) const BOOT: &str = "    kernel: /boot/vmlinuz\n    ramdisk: /boot/initrd.img\n";

/// Every oracle check of one build in `out`, from `disk`.
fn check_triplet(d: &Dir, out: &str) {
    let out = d.path(out);
    let dd = d.path("root.dd");
    run(
        "dd",
        &[
            &format!("if={}", s(&d.path("disk.img"))),
            &format!("of={}", s(&dd)),
            "bs=512",
            &format!("skip={ROOT_START}"),
            &format!("count={ROOT_SECTORS}"),
            "status=none",
        ],
    );
    let ami = out.join("app.ami");
    run("cmp", &[s(&dd), s(&ami)]);
    run("e2fsck", &["-fn", s(&ami)]);
    let kernel = run("debugfs", &["-R", "cat /boot/vmlinuz-6.1.0-test", s(&dd)]);
    let initrd = run("debugfs", &["-R", "cat /boot/initrd.img", s(&dd)]);
    assert_eq!(kernel.len(), 700_000);
    assert!(std::fs::read(out.join("app.aki")).unwrap() == kernel, "aki");
    assert!(std::fs::read(out.join("app.ari")).unwrap() == initrd, "ari");
    let sums = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", describe(&sums));
    let listed = String::from_utf8(sums.stdout).unwrap();
    for f in ["app.ami", "app.aki", "app.ari", "app.glance.json"] {
        assert!(listed.contains(&format!("{f}: OK")), "{listed}");
    }
    check_glance(&out);
}

/// The records come in upload order and the ami's properties name the earlier ids.
fn check_glance(out: &Path) {
    let text = std::fs::read_to_string(out.join("app.glance.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let records = json["upload_order"].as_array().unwrap();
    let formats: Vec<&str> = (records.iter())
        .map(|r| r["disk_format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["aki", "ari", "ami"], "{text}");
    let command = |i: usize| -> Vec<String> {
        (records[i]["command"].as_array().unwrap().iter())
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let kernel_id = records[0]["id_placeholder"].as_str().unwrap();
    let ramdisk_id = records[1]["id_placeholder"].as_str().unwrap();
    assert_ne!(kernel_id, ramdisk_id);
    let ami = command(2);
    assert!(ami.contains(&format!("kernel_id={kernel_id}")), "{ami:?}");
    assert!(ami.contains(&format!("ramdisk_id={ramdisk_id}")), "{ami:?}");
    assert_eq!(&command(0)[..3], ["openstack", "image", "create"]);
    assert!(command(0).contains(&"app.aki".to_string()));
    let report = std::fs::read_to_string(out.join("app.kiln.json")).unwrap();
    for f in ["app.ami", "app.aki", "app.ari"] {
        assert!(report.contains(&format!("\"path\": \"{f}\"")), "{report}");
    }
}

fn build_and_check(label: &str, mkfs_args: &[&str]) {
    let d = Dir::new();
    let fs = mkfs(&d, mkfs_args);
    disk(&d, label, &fs, false);
    spec(&d, "disk.img", BOOT);
    d.kiln_ok(&["build", "s.yaml", "-o", "a"]);
    check_triplet(&d, "a");
    d.kiln_ok(&["build", "s.yaml", "-o", "b"]);
    for f in [
        "app.ami",
        "app.aki",
        "app.ari",
        "app.glance.json",
        "SHA256SUMS",
    ] {
        assert_same_file(&d.path("a").join(f), &d.path("b").join(f));
    }
}

#[test]
fn gpt_with_metadata_csum_gives_the_partition_kernel_and_initrd() {
    build_and_check("gpt", &["-O", "metadata_csum,64bit"]);
}

#[test]
fn mbr_without_64bit_or_metadata_csum_gives_the_same_triplet() {
    build_and_check("dos", &["-O", "^64bit,^metadata_csum"]);
}

#[test]
fn qcow2_source_gives_the_same_ami() {
    let d = Dir::new();
    let fs = mkfs(&d, &[]);
    let raw = disk(&d, "gpt", &fs, false);
    let qcow2 = d.path("disk.qcow2");
    run("qemu-img", &["convert", "-O", "qcow2", s(&raw), s(&qcow2)]);
    spec(&d, "disk.qcow2", BOOT);
    d.kiln_ok(&["build", "s.yaml", "-o", "q"]);
    check_triplet(&d, "q");
}

#[test]
fn without_kernel_and_ramdisk_only_the_ami_is_written() {
    let d = Dir::new();
    let fs = mkfs(&d, &[]);
    disk(&d, "dos", &fs, false);
    spec(&d, "disk.img", "    partition: 2\n");
    d.kiln_ok(&["build", "s.yaml", "-o", "a"]);
    let files: Vec<String> = std::fs::read_dir(d.path("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".aki") || f.ends_with(".ari"))
    );
    run("e2fsck", &["-fn", s(&d.path("a/app.ami"))]);
    let glance = std::fs::read_to_string(d.path("a/app.glance.json")).unwrap();
    assert!(!glance.contains("kernel_id"), "{glance}");
}

/// `extra` on the ami output fails at spec line 7 (the key's line) with `wanted` in the one
/// line of stderr, and the output directory holds nothing.
pub(crate) fn refused(second_linux: bool, extra: &str, line: u32, wanted: &str) {
    let d = Dir::new();
    let fs = mkfs(&d, &[]);
    disk(&d, "gpt", &fs, second_linux);
    spec(&d, "disk.img", extra);
    let out = d.kiln(&["build", "s.yaml", "-o", "out"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // Progress lines (`kiln: [1/1] writing ...`) aside, one line.
    let lines: Vec<&str> = (err.lines())
        .filter(|l| !l.starts_with("kiln: ["))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    let err = lines[0];
    assert!(err.contains(&format!("s.yaml:{line}:")), "{err}");
    assert!(err.contains(wanted), "{err}");
    assert_eq!(names_in(&d.path("out")), Vec::<String>::new());
}

#[test]
fn a_partition_that_does_not_exist_is_refused() {
    refused(false, "    partition: 7\n", 8, "7");
}

#[test]
fn auto_with_two_linux_partitions_lists_the_candidates() {
    refused(true, "    partition: auto\n", 8, "several Linux partitions");
}

#[test]
fn a_missing_kernel_is_refused() {
    refused(false, "    kernel: /boot/nope\n", 8, "/boot/nope");
}

#[test]
fn a_kernel_that_is_a_directory_is_refused() {
    refused(false, "    kernel: /boot\n", 8, "directory");
}

#[test]
fn a_kernel_beside_the_spec_is_copied() {
    let d = Dir::new();
    let fs = mkfs(&d, &[]);
    disk(&d, "gpt", &fs, false);
    let mut kernel = vec![0u8; 123_457];
    Rng::new(5).fill(&mut kernel);
    std::fs::write(d.path("k.bin"), &kernel).unwrap();
    spec(&d, "disk.img", "    kernel: { file: k.bin }\n");
    d.kiln_ok(&["build", "s.yaml", "-o", "a"]);
    run("cmp", &[s(&d.path("k.bin")), s(&d.path("a/app.aki"))]);
    assert!(!d.path("a/app.ari").exists());
}
