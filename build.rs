//! Build script: records the git commit the binary is built from, for `kiln --version`.
//!
//! Outside a git checkout (a crate tarball, an exported tree) the commit is `unknown`;
//! packagers may set `KILN_GIT_COMMIT` to name it.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KILN_GIT_COMMIT");
    let commit = std::env::var("KILN_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KILN_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself, the branch it names, and packed refs. Only
    // existing files are named, since cargo reruns a script on every build for a missing one.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// `git ARGS` in the package directory: its trimmed stdout, or None when git fails.
///
/// The directory is read when the script runs, not with `env!` when it is compiled: cargo
/// reuses a compiled build script across checkouts sharing a target directory, and a path
/// baked in would name a checkout that may be gone (a CI clone), giving `unknown`.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}
