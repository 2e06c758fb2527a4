//! CI's bounded replay of the fuzz corpora: every checked-in seed (`fuzz/seeds/TARGET/`,
//! made by `fuzz/make-corpus.sh`) and every saved crash (`fuzz/regressions/TARGET/`) goes
//! through the same entry point its cargo-fuzz target drives, as a normal test: no fuzzer,
//! no nightly. Each entry point stops walking after a few thousand extents, so the replay
//! takes seconds.

use std::io::Read;
use std::path::Path;

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod entry;

/// A fuzz target's entry point.
type Entry = fn(&[u8]);

/// Every fuzz target and its entry point.
const TARGETS: [(&str, Entry); 14] = [
    ("qcow2", entry::qcow2),
    ("vmdk", entry::vmdk),
    ("vhd", entry::vhd),
    ("vhdx", entry::vhdx),
    ("vdi", entry::vdi),
    ("iso", entry::iso),
    ("probe", entry::probe),
    ("spec_load", entry::spec_load),
    ("tar", entry::tar),
    ("ovf", entry::ovf),
    ("ec2_manifest", entry::ec2_manifest),
    ("partitions", entry::partitions),
    ("ext4", entry::ext4),
    ("unpack", entry::unpack),
];

fn fuzz_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz"))
}

/// A corpus file's bytes (`.gz` files unpacked).
fn input(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut bytes)
            .unwrap();
        return bytes;
    }
    raw
}

/// Runs every file of `fuzz/KIND/TARGET/` through TARGET's entry point; returns how many.
fn replay(kind: &str) -> usize {
    let mut count = 0;
    for (target, run) in TARGETS {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            run(&input(&path));
            count += 1;
        }
    }
    count
}

#[test]
fn every_seed_and_saved_crash_runs_through_its_fuzz_target() {
    let count = replay("seeds") + replay("regressions");
    assert!(count >= 40, "only {count} inputs; run fuzz/make-corpus.sh");
}
