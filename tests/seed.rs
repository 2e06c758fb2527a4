//! `kiln seed`: every seed is judged by check-seed (blkid, mtools, fsck.fat, isoinfo and
//! cloud-init 22.4.2's own NoCloud datasource).

use crate::util::*;

const USER_DATA: &str =
    "#cloud-config\nhostname: kilnvm\nusers:\n  - name: kiln\n    shell: /bin/bash\n";
const NETWORK_V2: &str = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n";
const VENDOR_DATA: &str = "#!/bin/sh\necho vendor\n";

fn inputs(d: &Dir) {
    std::fs::write(d.path("user-data.yaml"), USER_DATA).unwrap();
    std::fs::write(d.path("net.yaml"), NETWORK_V2).unwrap();
    std::fs::write(d.path("vendor.sh"), VENDOR_DATA).unwrap();
}

fn seed_passes(format: &str, with_extras: bool) {
    let d = Dir::new();
    inputs(&d);
    let mut args = vec![
        "seed",
        "--user-data",
        "user-data.yaml",
        "-f",
        format,
        "-o",
        "seed.img",
    ];
    if with_extras {
        args.extend([
            "--network-config",
            "net.yaml",
            "--vendor-data",
            "vendor.sh",
            "--hostname",
            "box1",
        ]);
    }
    d.kiln_ok(&args);
    check_seed(&d.path("seed.img"), &["--expect-hostname", "kilnvm"]);
    let label = run_ok(
        "blkid",
        &[
            "-c",
            "/dev/null",
            "-o",
            "value",
            "-s",
            "LABEL",
            d.path("seed.img").to_str().unwrap(),
        ],
    );
    assert_eq!(
        label.trim(),
        if format == "iso" { "cidata" } else { "CIDATA" }
    );
}

#[test]
fn iso_seed_passes_check_seed() {
    seed_passes("iso", false);
}

#[test]
fn iso_seed_with_network_and_vendor_data_passes_check_seed() {
    seed_passes("iso", true);
}

#[test]
fn vfat_seed_passes_check_seed() {
    seed_passes("vfat", false);
}

#[test]
fn vfat_seed_with_network_and_vendor_data_passes_check_seed() {
    seed_passes("vfat", true);
}

#[test]
fn given_meta_data_keeps_its_instance_id() {
    let d = Dir::new();
    inputs(&d);
    std::fs::write(
        d.path("meta.yaml"),
        "instance-id: fixed-1\nlocal-hostname: box2\n",
    )
    .unwrap();
    d.kiln_ok(&[
        "seed",
        "--user-data",
        "user-data.yaml",
        "--meta-data",
        "meta.yaml",
        "-o",
        "seed.iso",
    ]);
    check_seed(&d.path("seed.iso"), &["--expect-instance-id", "fixed-1"]);
}

#[test]
fn ssh_keys_and_empty_user_data_make_a_valid_seed() {
    let d = Dir::new();
    std::fs::write(d.path("key.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvq0Jb9tG8hUe5q1D2ZyKc2bQm7lXf1F6S7c3y1Zx0a user@host\n").unwrap();
    d.kiln_ok(&[
        "seed",
        "--ssh-key",
        "key.pub",
        "--hostname",
        "box3",
        "-f",
        "vfat",
        "-o",
        "seed.img",
    ]);
    check_seed(&d.path("seed.img"), &["--expect-hostname", "box3"]);
}

#[test]
fn same_inputs_give_identical_seeds() {
    let d = Dir::new();
    inputs(&d);
    for format in ["iso", "vfat"] {
        d.kiln_ok(&[
            "seed",
            "--user-data",
            "user-data.yaml",
            "-f",
            format,
            "-o",
            "a.img",
        ]);
        d.kiln_ok(&[
            "seed",
            "--user-data",
            "user-data.yaml",
            "-f",
            format,
            "-o",
            "b.img",
        ]);
        assert_same_file(&d.path("a.img"), &d.path("b.img"));
        std::fs::remove_file(d.path("a.img")).unwrap();
        std::fs::remove_file(d.path("b.img")).unwrap();
    }
}

fn assert_refused(d: &Dir, args: &[&str], code: i32, needles: &[&str]) {
    let before = d.files();
    let err = d.kiln_err(args, code);
    for needle in needles {
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
    assert_eq!(d.files(), before, "output left behind");
}

#[test]
fn invalid_cloud_config_yaml_reports_line_and_column() {
    let d = Dir::new();
    std::fs::write(
        d.path("bad.yaml"),
        "#cloud-config\nusers:\n  - name: kiln\n    groups: [wheel\n",
    )
    .unwrap();
    assert_refused(
        &d,
        &["seed", "--user-data", "bad.yaml", "-o", "s.iso"],
        2,
        &["bad.yaml", "line 4, column 13"],
    );
}

#[test]
fn user_data_of_unknown_type_is_refused() {
    let d = Dir::new();
    std::fs::write(d.path("ud.txt"), "hello: world\n").unwrap();
    assert_refused(
        &d,
        &["seed", "--user-data", "ud.txt", "-o", "s.iso"],
        2,
        &["ud.txt", "#cloud-config"],
    );
}

#[test]
fn network_config_without_version_is_refused() {
    let d = Dir::new();
    inputs(&d);
    std::fs::write(d.path("net3.yaml"), "version: 3\n").unwrap();
    let args = [
        "seed",
        "--user-data",
        "user-data.yaml",
        "--network-config",
        "net3.yaml",
        "-o",
        "s.iso",
    ];
    assert_refused(&d, &args, 2, &["net3.yaml", "version"]);
}

#[test]
fn missing_user_data_file_is_named() {
    let d = Dir::new();
    assert_refused(
        &d,
        &[
            "seed",
            "--user-data",
            "nope.yaml",
            "-f",
            "vfat",
            "-o",
            "s.img",
        ],
        1,
        &["nope.yaml"],
    );
}

#[test]
fn meta_data_that_is_not_a_mapping_is_refused() {
    let d = Dir::new();
    inputs(&d);
    std::fs::write(d.path("meta.yaml"), "- a\n- b\n").unwrap();
    let args = [
        "seed",
        "--user-data",
        "user-data.yaml",
        "--meta-data",
        "meta.yaml",
        "-o",
        "s.iso",
    ];
    assert_refused(&d, &args, 2, &["meta.yaml", "mapping"]);
}

#[test]
fn large_vfat_seed_is_fat16_and_passes_check_seed() {
    let d = Dir::new();
    let mut script = String::from("#!/bin/sh\n");
    while script.len() < 3_000_000 {
        script.push_str(
            "# padding line to make a seed larger than FAT12 holds in 512-byte clusters\n",
        );
    }
    std::fs::write(d.path("big.sh"), script).unwrap();
    d.kiln_ok(&[
        "seed",
        "--user-data",
        "big.sh",
        "-f",
        "vfat",
        "-o",
        "big.img",
    ]);
    let boot = std::fs::read(d.path("big.img")).unwrap();
    assert_eq!(&boot[54..62], b"FAT16   ");
    check_seed(&d.path("big.img"), &[]);
}

#[test]
fn unreadable_user_data_is_named() {
    let d = Dir::new();
    std::fs::create_dir(d.path("ud")).unwrap();
    assert_refused(
        &d,
        &["seed", "--user-data", "ud", "-o", "s.iso"],
        1,
        &["ud"],
    );
}
