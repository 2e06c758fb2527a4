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
    let err = d.kiln_err(&["create", "-f", "qcow2", "-o", "prealocation=metadata", "x.qcow2", "1M"], 2);
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
