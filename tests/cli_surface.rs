//! The CLI surface users script against: completions, man pages, `--version`, and the JSON
//! field names of `info`, `check` and `measure` (README, "JSON output"), plus the promise
//! that a missing oracle fails with the command that installs it.

use std::collections::BTreeSet;
use std::process::Command;

use crate::util::*;

fn kiln_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kiln")
}

/// Runs `script` in bash with `$KILN` set to the built binary.
fn bash(script: &str) -> std::process::Output {
    require_tool("bash");
    Command::new("bash")
        .args(["-c", script])
        .env("KILN", kiln_bin())
        .output()
        .unwrap()
}

#[test]
fn bash_completion_loads_and_completes_a_command() {
    let out = bash(
        r#"source <("$KILN" completions bash) && complete -p kiln &&
           COMP_WORDS=(kiln conv) COMP_CWORD=1 && _kiln kiln conv kiln && echo "${COMPREPLY[*]}""#,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("-F _kiln kiln"), "{text}");
    assert_eq!(text.lines().last(), Some("convert"), "{text}");
}

#[test]
fn zsh_and_fish_completions_name_every_command() {
    let d = Dir::new();
    for shell in ["zsh", "fish"] {
        let script = d.kiln_ok(&["completions", shell]);
        for cmd in ["build", "convert", "info", "check", "seed", "man"] {
            assert!(script.contains(cmd), "{shell} script lacks {cmd}");
        }
    }
}

#[test]
fn man_pages_render_without_warnings() {
    require_tool("man");
    for page in ["", "convert", "build"] {
        let out = bash(&format!(
            r#"set -o pipefail; "$KILN" man {page} | man --warnings -l - | cat"#
        ));
        assert!(out.status.success(), "{}", describe(&out));
        assert!(out.stderr.is_empty(), "kiln man {page}: {}", describe(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let title = if page.is_empty() {
            "kiln(1)".to_string()
        } else {
            format!("kiln-{page}(1)")
        };
        assert!(text.contains(&title) && text.contains("SYNOPSIS"), "{text}");
    }
}

#[test]
fn man_page_lists_every_command() {
    let page = Dir::new().kiln_ok(&["man"]);
    for cmd in [
        "create", "convert", "info", "check", "measure", "build", "validate",
    ] {
        assert!(
            page.contains(&format!("kiln\\-{cmd}(1)")),
            "no {cmd}:\n{page}"
        );
    }
}

#[test]
fn man_for_an_unknown_command_is_a_usage_error() {
    let err = Dir::new().kiln_err(&["man", "convrt"], 2);
    assert!(err.contains("no command `convrt`"), "{err}");
}

#[test]
fn version_names_the_git_commit() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let commit = run_ok("git", &["-C", dir, "rev-parse", "--short=12", "HEAD"]);
    let version = Dir::new().kiln_ok(&["--version"]);
    assert_eq!(
        version.trim(),
        format!("kiln {} ({})", env!("CARGO_PKG_VERSION"), commit.trim())
    );
}

fn keys(v: &serde_json::Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn info_json_field_names_are_stable() {
    let d = Dir::new();
    d.kiln_ok(&["create", "-f", "vmdk", "x.vmdk", "3M"]);
    let v: serde_json::Value =
        serde_json::from_str(&d.kiln_ok(&["info", "--output", "json", "x.vmdk"])).unwrap();
    assert_eq!(
        keys(&v),
        BTreeSet::from([
            "filename",
            "format",
            "subformat",
            "virtual-size",
            "actual-size",
            "details"
        ])
    );
    assert_eq!(
        (v["filename"].as_str(), v["format"].as_str()),
        (Some("x.vmdk"), Some("vmdk"))
    );
    assert_eq!(v["subformat"], "monolithicSparse");
    assert_eq!(v["virtual-size"], 3 << 20);
    assert!(v["actual-size"].is_u64() && v["details"].is_object(), "{v}");
}

#[test]
fn check_json_field_names_are_stable() {
    let d = Dir::new();
    d.kiln_ok(&["create", "-f", "qcow2", "x.qcow2", "1M"]);
    let v: serde_json::Value =
        serde_json::from_str(&d.kiln_ok(&["check", "--output", "json", "x.qcow2"])).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "filename": "x.qcow2",
            "format": "qcow2",
            "check-errors": 0,
            "corruptions": 0,
            "leaks": 0
        })
    );
}

#[test]
fn measure_json_field_names_are_qemu_imgs() {
    let d = Dir::new();
    let out = d.kiln_ok(&["measure", "-O", "qcow2", "--size", "1G", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys(&v), BTreeSet::from(["required", "fully-allocated"]));
    d.kiln_ok(&["create", "-f", "qcow2", "x.qcow2", "1M"]);
    let out = d.kiln_ok(&["measure", "-O", "qcow2", "--output", "json", "x.qcow2"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        keys(&v),
        BTreeSet::from(["bitmaps", "required", "fully-allocated"])
    );
}

#[test]
fn a_missing_oracle_fails_with_the_setup_command() {
    // An empty cache stands for a machine where tests/setup.sh never ran.
    let d = Dir::new();
    d.kiln_ok(&["create", "-f", "qcow2", "x.qcow2", "1M"]);
    for (oracle, args) in [
        ("check-image", vec!["--format", "qcow2", "x.qcow2"]),
        ("check-seed", vec!["x.qcow2"]),
    ] {
        let out = Command::new(crate::util::oracle(oracle))
            .args(&args)
            .current_dir(d.tmp.path())
            .env("KILN_TEST_CACHE", d.path("empty-cache"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(text.contains(SETUP), "{oracle}: {text}");
    }
}
