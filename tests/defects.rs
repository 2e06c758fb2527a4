//! The defects the hostile-input review of issue 15 found, one test each (each failed before
//! its fix). The image-side defects (polyglots, qcow2 corruption `kiln check` missed, a VHD
//! BAT declared past the file, descriptor VMDKs) are tested in `hostile`, beside the safety
//! verdict.

use std::path::Path;

use crate::util::*;

/// issue 15, defect 7: a dangling symlink at the output path was replaced without --force.
#[test]
fn dangling_symlink_at_the_output_is_refused_without_force() {
    let dir = Dir::new();
    std::fs::write(dir.path("in.raw"), vec![7u8; 4096]).unwrap();
    std::os::unix::fs::symlink("nowhere", dir.path("out.raw")).unwrap();
    let err = dir.kiln_err(&["convert", "-f", "raw", "in.raw", "out.raw"], 2);
    assert!(err.contains("out.raw") && err.contains("--force"), "{err}");
    let link = std::fs::read_link(dir.path("out.raw")).unwrap();
    assert_eq!(link, Path::new("nowhere"));
    assert!(!dir.path("nowhere").exists());
}
