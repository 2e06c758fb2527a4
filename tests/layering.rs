//! The layering rules of STYLE.md, enforced by scanning `src/`:
//! `cli → plan → container → disk → io`, `spec` and `fetch` below `plan` (the plan translates
//! the spec for the engine; `fetch` acts on the spec's sources), `unpack` below both, and
//! clap/miette/anyhow only in `main.rs` and `src/cli/`.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `(file relative to src/, line)` that mentions `needle` in code.
fn uses(needle: &str) -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut hits = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if code.contains(needle) {
                hits.push((rel.clone(), line.to_string()));
            }
        }
    }
    hits
}

#[test]
fn cli_crates_stay_in_the_binary() {
    for krate in ["clap::", "miette::", "anyhow::"] {
        let bad: Vec<_> = uses(krate)
            .into_iter()
            .filter(|(f, _)| f != "main.rs" && !f.starts_with("cli/"))
            .collect();
        assert!(
            bad.is_empty(),
            "{krate} used outside main.rs and src/cli/: {bad:#?}"
        );
    }
}

#[test]
fn lower_layers_do_not_import_upper_ones() {
    let rules: [(&str, &[&str]); 8] = [
        (
            "io/",
            &[
                "crate::disk",
                "crate::container",
                "crate::plan",
                "crate::spec",
                "crate::fs",
                "crate::seed",
            ],
        ),
        (
            "disk/",
            &[
                "crate::spec",
                "crate::plan",
                "crate::container",
                "crate::seed",
            ],
        ),
        ("container/", &["crate::spec", "crate::plan"]),
        ("fs/", &["crate::container", "crate::plan", "crate::spec"]),
        (
            "spec/",
            &[
                "crate::plan",
                "crate::io::output",
                "crate::disk::vmdk",
                "crate::fetch",
            ],
        ),
        ("plan/", &["crate::cli"]),
        // Fetching (download, verify) serves the plan and acts on the spec's sources.
        ("fetch/", &["crate::plan", "crate::cli"]),
        // Unpacking (compressed images, archive members) reads with the engine; the spec
        // and the plan both use it.
        ("unpack/", &["crate::plan", "crate::spec", "crate::fetch"]),
    ];
    for (layer, forbidden) in rules {
        for needle in forbidden {
            let bad: Vec<_> = uses(needle)
                .into_iter()
                .filter(|(f, _)| f.starts_with(layer))
                .collect();
            assert!(
                bad.is_empty(),
                "src/{layer} must not use {needle}: {bad:#?}"
            );
        }
    }
}
