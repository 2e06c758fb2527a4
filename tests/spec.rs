//! Spec loading and validation: every kind of bad spec gets a located, one-sentence error
//! (insta snapshots of the plain rendering), and the checked-in JSON Schema is current.

use std::path::{Path, PathBuf};

use kiln::plan::{BuildOptions, Plan};
use kiln::spec;

use crate::util::*;

const GOOD_TAIL: &str = "outputs:\n  - { disk_format: raw, container_format: bare }\n";

/// Writes `files` into a fresh directory and returns it with the path of `spec.yaml`.
fn setup(files: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let path = dir.path().join("spec.yaml");
    (dir, path)
}

fn scrub(text: &str, dir: &Path) -> String {
    text.replace(&format!("{}/", dir.display()), "")
        .replace(&dir.display().to_string(), "DIR")
}

/// The plain rendering of every problem in `spec.yaml` (parse or validation).
fn spec_errors(files: &[(&str, &[u8])]) -> String {
    let (dir, path) = setup(files);
    let result = spec::load(&path).and_then(|(parsed, text)| spec::validate(&path, parsed, text));
    let errors = result.expect_err("spec should be invalid");
    scrub(&errors.render_plain(), dir.path())
}

/// The error `kiln build` stops with (after validation passed).
fn build_error(files: &[(&str, &[u8])]) -> String {
    let (dir, path) = setup(files);
    let (parsed, text) = spec::load(&path).unwrap();
    let valid = spec::validate(&path, parsed, text).unwrap();
    let opts = BuildOptions {
        out_dir: dir.path().join("out"),
        only: Vec::new(),
        sign: None,
        report: true,
    };
    let err = Plan::new(valid, &opts)
        .and_then(|p| p.execute(&mut |_: &str| {}))
        .expect_err("build should fail");
    scrub(&err.to_string(), dir.path())
}

fn one(spec_text: &str) -> String {
    spec_errors(&[("spec.yaml", spec_text.as_bytes())])
}

#[test]
fn unknown_key_gets_a_suggestion() {
    insta::assert_snapshot!(one(
        "name: x\ndisks:\n  - name: root\n    source: { blank: true }\n    sise: 1G\n"
    ));
}

#[test]
fn every_unknown_key_is_reported_with_its_suggestion() {
    insta::assert_snapshot!(one(
        "name: x\nvm: { cpu: 2, memroy: 1G }\ndisks:\n  - name: root\n    source: { blank: true }\n    sise: 1G\noutputs: [ { disk_format: raw, container_format: bare, optoins: {} } ]\ncloud_init: { meta_data: { free-form: 1 }, userdata: x }\n"
    ));
}

#[test]
fn unknown_enum_value_gets_a_suggestion() {
    insta::assert_snapshot!(one(
        "name: x\ndisks: [ { name: root, source: { blank: true }, size: 1G } ]\noutputs: [ { disk_format: qcow, container_format: bare } ]\n"
    ));
}

#[test]
fn wrong_type_is_located() {
    insta::assert_snapshot!(one(&format!(
        "name: x\nvm: {{ cpus: two }}\ndisks: [ {{ name: root, source: {{ blank: true }}, size: 1G }} ]\n{GOOD_TAIL}"
    )));
}

#[test]
fn bad_size_names_the_unit() {
    insta::assert_snapshot!(one(&format!(
        "name: x\ndisks: [ {{ name: root, source: {{ blank: true }}, size: 20Gib }} ]\n{GOOD_TAIL}"
    )));
}

#[test]
fn negative_cpus_are_out_of_range() {
    insta::assert_snapshot!(one(&format!(
        "name: x\nvm: {{ cpus: -2 }}\ndisks: [ {{ name: root, source: {{ blank: true }}, size: 1G }} ]\n{GOOD_TAIL}"
    )));
}

#[test]
fn missing_source_file_is_named() {
    insta::assert_snapshot!(one(&format!(
        "name: x\ndisks: [ {{ name: root, source: {{ file: images/base.img }} }} ]\n{GOOD_TAIL}"
    )));
}

#[test]
fn url_without_sha256_is_refused() {
    insta::assert_snapshot!(one(&format!(
        "name: x\ndisks:\n  - name: root\n    source: {{ url: \"http://127.0.0.1:9/x.img\" }}\n{GOOD_TAIL}"
    )));
}

#[test]
fn placeholder_sha256_says_to_fill_it_in() {
    insta::assert_snapshot!(one(&format!(
        "name: x\ndisks:\n  - name: root\n    source: {{ url: \"https://example.com/x.img\", sha256: \"<fill in>\" }}\n{GOOD_TAIL}"
    )));
}

#[test]
fn unsupported_format_container_pair_cites_the_rule() {
    insta::assert_snapshot!(one(
        "name: x\ndisks: [ { name: root, source: { blank: true }, size: 1G } ]\noutputs:\n  - { disk_format: qcow2, container_format: ami }\n  - { disk_format: ami, container_format: bare }\n"
    ));
}

#[test]
fn shrinking_a_disk_is_refused() {
    let image = vec![0u8; 2 << 20];
    let text = format!(
        "name: x\ndisks: [ {{ name: root, source: {{ file: base.img }}, size: 1MiB }} ]\n{GOOD_TAIL}"
    );
    insta::assert_snapshot!(spec_errors(&[
        ("spec.yaml", text.as_bytes()),
        ("base.img", &image)
    ]));
}

#[test]
fn duplicate_output_names_are_refused() {
    insta::assert_snapshot!(one(
        "name: x\ndisks: [ { name: root, source: { blank: true }, size: 1G } ]\noutputs:\n  - { disk_format: raw, container_format: bare }\n  - { disk_format: raw, container_format: bare, file: other.raw }\n"
    ));
}

#[test]
fn yaml_syntax_error_is_located() {
    insta::assert_snapshot!(one("name: x\ndisks: [ { name: root\noutputs: x\n"));
}

#[test]
fn non_utf8_file_names_the_offset() {
    insta::assert_snapshot!(spec_errors(&[("spec.yaml", b"name: ab\xff\xfe\n")]));
}

#[test]
fn empty_file_is_refused() {
    insta::assert_snapshot!(one("  \n"));
}

#[test]
fn alias_bomb_is_bounded() {
    let mut text = format!(
        "name: x\ndisks: [ {{ name: root, source: {{ blank: true }}, size: 1G }} ]\n{GOOD_TAIL}cloud_init:\n  deliver: []\n  meta_data:\n    a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n"
    );
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(",");
        text.push_str(&format!("    a{i}: &a{i} [{refs}]\n"));
    }
    let started = std::time::Instant::now();
    let errors = one(&text);
    assert!(
        started.elapsed().as_secs() < 5,
        "alias expansion was not bounded"
    );
    insta::assert_snapshot!(errors);
}

#[test]
fn spec_over_ten_megabytes_is_refused() {
    let mut text = b"name: x\n#".to_vec();
    text.resize(10_000_001, b'#');
    insta::assert_snapshot!(spec_errors(&[("spec.yaml", &text)]));
}

#[test]
fn every_validation_error_is_reported() {
    insta::assert_snapshot!(one(
        "name: x\nvm: { cpus: 0, memory: 12Q }\ndisks:\n  - { name: root, source: { blank: true } }\n  - { name: root, source: { file: nope.img } }\n  - { name: d3, source: { url: \"ftp://example.com/x.img\", sha256: abc } }\noutputs:\n  - { disk_format: raw, container_format: bare, disk: rot }\n  - { disk_format: raw, container_format: bare, options: { prealocation: full } }\n"
    ));
}

#[test]
fn sha256_mismatch_of_a_file_source_is_refused() {
    let text = format!(
        "name: x\ndisks:\n  - name: root\n    source: {{ file: base.img, sha256: {} }}\n{GOOD_TAIL}",
        "0".repeat(64)
    );
    insta::assert_snapshot!(build_error(&[
        ("spec.yaml", text.as_bytes()),
        ("base.img", b"not the expected bytes")
    ]));
}

#[test]
fn lone_aki_container_points_at_the_ami_kernel_key() {
    insta::assert_snapshot!(build_error(&[("spec.yaml", b"name: x\ndisks: [ { name: root, source: { blank: true }, size: 1G } ]\noutputs: [ { disk_format: aki, container_format: aki } ]\n")]));
}

#[test]
fn seed_iso_delivery_builds_a_seed() {
    let text = format!(
        "name: x\ndisks: [ {{ name: root, source: {{ blank: true }}, size: 1MiB }} ]\n{GOOD_TAIL}cloud_init:\n  meta_data: {{ instance-id: x-1 }}\n"
    );
    let (dir, path) = setup(&[("spec.yaml", text.as_bytes())]);
    let (parsed, text) = spec::load(&path).unwrap();
    let valid = spec::validate(&path, parsed, text).unwrap();
    let opts = BuildOptions {
        out_dir: dir.path().join("out"),
        only: Vec::new(),
        sign: None,
        report: true,
    };
    let report = Plan::new(valid, &opts)
        .and_then(|p| p.execute(&mut |_: &str| {}))
        .unwrap();
    let seed = &report.artefacts[1];
    assert_eq!(
        (seed.path.as_str(), seed.disk_format.as_str()),
        ("x-seed.iso", "iso")
    );
    assert!(dir.path().join("out/x-seed.iso").is_file());
}

/// A spec with one blank disk and `cloud_init` as given (indented two spaces).
fn with_cloud_init(cloud_init: &str) -> String {
    format!(
        "name: x\ndisks: [ {{ name: root, source: {{ blank: true }}, size: 1MiB }} ]\n{GOOD_TAIL}cloud_init:\n{cloud_init}"
    )
}

#[test]
fn invalid_inline_user_data_yaml_is_located() {
    insta::assert_snapshot!(one(&with_cloud_init(
        "  user_data: |\n    #cloud-config\n    users: [ { name: a\n"
    )));
}

#[test]
fn user_data_file_with_bad_yaml_names_the_file_and_spec_key() {
    let text = with_cloud_init("  user_data: ud.yaml\n");
    insta::assert_snapshot!(spec_errors(&[
        ("spec.yaml", text.as_bytes()),
        (
            "ud.yaml",
            b"#cloud-config\nusers:\n  - name: a\n   bad: [\n"
        ),
    ]));
}

#[test]
fn every_bad_cloud_init_part_is_reported() {
    insta::assert_snapshot!(one(&with_cloud_init(
        "  user_data: |\n    hello\n  meta_data: nope.yaml\n  network_config: { ethernets: {} }\n"
    )));
}

#[test]
fn seed_clashing_with_an_output_is_refused() {
    insta::assert_snapshot!(one(
        "name: x\ndisks: [ { name: root, source: { blank: true }, size: 1MiB } ]\noutputs: [ { name: seed-iso, disk_format: raw, container_format: bare } ]\ncloud_init: { meta_data: { instance-id: a } }\n"
    ));
}

#[test]
fn ovf_properties_delivery_needs_a_package_output() {
    let text = with_cloud_init(
        "  meta_data: { instance-id: x-1 }\n  deliver: [seed-iso, ovf-properties]\n",
    );
    insta::assert_snapshot!(spec_errors(&[("spec.yaml", text.as_bytes())]));
}

#[test]
fn validate_refuses_bad_inline_user_data_at_its_spec_line() {
    let d = Dir::new();
    std::fs::write(
        d.path("s.yaml"),
        with_cloud_init("  user_data: |\n    #cloud-config\n    users: [ { name: a\n"),
    )
    .unwrap();
    let err = d.kiln_err(&["validate", "s.yaml"], 1);
    assert!(
        err.contains("s.yaml:8:14: cloud_init.user_data: user-data is not valid YAML at line"),
        "{err}"
    );
}

#[test]
fn checked_in_json_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/kiln-spec.schema.json");
    let fresh = spec::schema_json();
    if std::env::var_os("KILN_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == fresh,
        "{} is stale; regenerate with KILN_BLESS=1 cargo test --test integration spec::checked_in_json_schema_is_current",
        path.display()
    );
}

#[test]
fn every_example_and_template_names_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["examples", "templates"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            // Specs only: a template may ship a companion file (ubuntu-cloud's signing key).
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with(
                    "# yaml-language-server: $schema=../schemas/kiln-spec.schema.json\n"
                ),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn validate_lists_every_error_and_exits_non_zero() {
    let d = Dir::new();
    std::fs::write(d.path("s.yaml"), "name: x\nvm: { cpus: 0 }\ndisks: [ { name: root, source: { blank: true } } ]\noutputs: [ { disk_format: raw, container_format: bare } ]\n").unwrap();
    let err = d.kiln_err(&["validate", "s.yaml"], 1);
    assert!(
        err.contains("s.yaml:2:13") && err.contains("s.yaml:3:32"),
        "{err}"
    );
}

#[test]
fn validate_notes_missing_capabilities_but_accepts_the_structure() {
    let d = Dir::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for t in [
        "vmware-ova",
        "virtualbox-ova",
        "aws-ami",
        "minimal",
        "debian-cloud",
        "fedora-cloud",
    ] {
        let spec = root.join("templates").join(format!("{t}.yaml"));
        let out = d.kiln(&["validate", spec.to_str().unwrap()]);
        assert!(out.status.success(), "{t}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("cannot be built"), "{t}: {stderr}");
    }
}
