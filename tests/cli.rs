//! CLI behaviour common to every format: sizes, refusals, no partial outputs.

use crate::util::*;

#[test]
fn nonsense_size_is_a_usage_error() {
    let d = Dir::new();
    let err = d.kiln_err(&["create", "-f", "raw", "x.raw", "8Q"], 2);
    assert!(err.contains("not a size unit"), "{err}");
    assert!(d.files().is_empty(), "left files: {:?}", d.files());
}

#[test]
fn existing_output_is_refused_without_force() {
    let d = Dir::new();
    std::fs::write(d.path("x.raw"), b"precious").unwrap();
    let err = d.kiln_err(&["create", "-f", "raw", "x.raw", "1M"], 2);
    assert!(err.contains("x.raw") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(d.path("x.raw")).unwrap(), b"precious");
    d.kiln_ok(&["create", "-f", "raw", "--force", "x.raw", "1M"]);
    assert_eq!(std::fs::metadata(d.path("x.raw")).unwrap().len(), 1 << 20);
}

#[test]
fn unwritable_output_directory_fails_cleanly() {
    let d = Dir::new();
    let err = d.kiln_err(&["create", "-f", "raw", "no/such/dir/x.raw", "1M"], 1);
    assert!(err.contains("no/such/dir/x.raw"), "{err}");
}

#[test]
fn unknown_option_suggests_the_right_one() {
    let d = Dir::new();
    let err = d.kiln_err(
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "prealocation=metadata",
            "x.qcow2",
            "1M",
        ],
        2,
    );
    assert!(err.contains("did you mean `preallocation`"), "{err}");
    assert!(d.files().is_empty(), "left files: {:?}", d.files());
}

#[test]
fn missing_input_names_the_file() {
    let d = Dir::new();
    let err = d.kiln_err(&["convert", "-O", "raw", "nope.qcow2", "out.raw"], 1);
    assert!(err.contains("nope.qcow2"), "{err}");
    assert!(d.files().is_empty(), "left files: {:?}", d.files());
}

#[test]
fn info_json_reports_format_and_size() {
    let d = Dir::new();
    d.kiln_ok(&["create", "-f", "raw", "x.raw", "3M"]);
    let out = d.kiln_ok(&["info", "--output", "json", "x.raw"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["format"], "raw");
    assert_eq!(v["virtual-size"], 3 << 20);
}

#[test]
fn full_disk_fails_cleanly_without_partial_output() {
    // A file-size limit makes every write past 1 MiB fail with EFBIG, as a full disk fails
    // with ENOSPC; SIGXFSZ is ignored so the write error reaches kiln.
    let d = Dir::new();
    random_raw(&d.path("src.raw"), 4 << 20, 3);
    let script = format!(
        "trap '' XFSZ; ulimit -f 1024; exec {} convert -O raw src.raw out.raw",
        env!("CARGO_BIN_EXE_kiln")
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(d.tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(err.contains("out.raw") && err.lines().count() == 1, "{err}");
    assert_eq!(d.files(), vec!["src.raw".to_string()]);
}

#[test]
fn interrupted_convert_leaves_no_partial_file() {
    let d = Dir::new();
    random_raw(&d.path("src.raw"), 64 << 20, 4);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["convert", "-O", "raw", "src.raw", "out.raw"])
        .current_dir(d.tmp.path())
        .spawn()
        .unwrap();
    // Wait until the partial file exists, then interrupt.
    let partial = d.path("out.raw.partial");
    for _ in 0..2000 {
        if partial.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let files = d.files();
    // Either the interrupt landed (exit 130, nothing left) or the copy had already finished.
    if status.code() == Some(130) {
        assert_eq!(files, vec!["src.raw".to_string()]);
    } else {
        assert!(status.success());
        assert_eq!(files, vec!["out.raw".to_string(), "src.raw".to_string()]);
    }
}
