//! `kiln build`'s progress: step lines in order off a terminal, one bar per artefact on a
//! terminal (a pseudo-terminal made by python3's `pty`), and `--output json`.

use std::process::Command;

use crate::util::{Dir, describe, random_raw};

/// Two disks; the outputs are listed so that the passes (disk by disk, packages first)
/// reach them out of spec order.
fn spec(d: &Dir) {
    random_raw(&d.path("a.raw"), 96 << 20, 1);
    random_raw(&d.path("b.raw"), 64 << 20, 2);
    let text = "name: app\ndisks:\n  - name: a\n    source: { file: a.raw }\n  - name: b\n    source: { file: b.raw }\noutputs:\n  - { name: b-qcow2, disk: b, disk_format: qcow2, container_format: bare }\n  - { name: pkg, disk_format: vmdk, container_format: ova }\n  - { name: a-vhdx, disk: a, disk_format: vhdx, container_format: bare }\n";
    std::fs::write(d.path("s.yaml"), text).unwrap();
}

#[test]
fn step_lines_off_a_terminal_are_numbered_in_the_order_they_print() {
    let d = Dir::new();
    spec(&d);
    let out = d.kiln(&["build", "s.yaml", "-o", "out"]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let steps: Vec<&str> = (err.lines())
        .filter_map(|l| l.strip_prefix("kiln: ["))
        .collect();
    let numbers: Vec<String> = (steps.iter())
        .map(|l| l.split(']').next().unwrap().to_string())
        .collect();
    assert_eq!(numbers, ["1/3", "2/3", "3/3"], "{err}");
    for file in ["app-b-qcow2.qcow2", "app-pkg.ova", "app-a-vhdx.vhdx"] {
        assert!(steps.iter().any(|l| l.contains(file)), "{file}: {err}");
    }
    // Off a terminal no bar is drawn: no carriage returns or escape sequences.
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn on_a_terminal_each_artefact_has_a_bar() {
    let d = Dir::new();
    spec(&d);
    // python3's pty gives kiln a terminal on stdout and stderr; everything it draws is
    // copied to our stdout.
    let script = r#"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            env!("CARGO_BIN_EXE_kiln"),
            "build",
            "s.yaml",
            "-o",
            "out",
        ])
        .current_dir(d.path(""))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("COLUMNS", "160")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    // Each artefact's bar: its file name as the prefix, then a percentage and a bar.
    for file in ["app-b-qcow2.qcow2", "app-pkg.ova", "app-a-vhdx.vhdx"] {
        // The rest of the bar's own line (the step line naming the file has no `%`).
        let drawn = (screen.split(file).skip(1)).any(|rest| {
            let line = rest.split('\n').next().unwrap_or_default();
            line.contains('%') && line.contains('[') && line.contains("MiB")
        });
        assert!(drawn, "no bar for {file} in {screen:?}");
    }
    assert!(screen.contains("kiln: [1/3] writing"), "{screen:?}");
}

#[test]
fn output_json_prints_the_build_report() {
    let d = Dir::new();
    spec(&d);
    let stdout = d.kiln_ok(&[
        "build", "s.yaml", "-o", "out", "--output", "json", "--quiet",
    ]);
    let report = std::fs::read_to_string(d.path("out/app.kiln.json")).unwrap();
    assert_eq!(stdout, report);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["artefacts"].as_array().unwrap().len(), 3, "{stdout}");
}
