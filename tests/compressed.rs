//! Compressed sources and archives (#17, part B): images compressed with the real tools
//! (xz, gzip, zstd, bzip2, tar) as `file:` sources build to a qcow2 that `qemu-img compare`
//! finds identical to the uncompressed original; streamOptimized VMDKs stream too, to the
//! same bytes as the uncompressed `.vmdk` gives (`cmp`); images that need random access are
//! unpacked into the cache once; corrupt, truncated, oversized and ambiguous sources are
//! refused with nothing left in the cache or the output directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

/// `sh -c SCRIPT` in `d`, after checking every tool it uses is installed.
fn sh(d: &Dir, tools: &[&str], script: &str) {
    for tool in tools {
        require_tool(tool);
    }
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(d.tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}:\n{}", describe(&out));
}

/// `kiln build s.yaml -o OUT` with the cache under `d/cache`.
fn build(d: &Dir, out: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "s.yaml", "-o", out])
        .current_dir(d.tmp.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("XDG_CACHE_HOME", d.path("cache"))
        .output()
        .unwrap()
}

/// A spec building `file` (with extra source keys) to a bare qcow2.
fn spec(d: &Dir, file: &str, extra: &str) {
    let text = format!(
        "name: c\ndisks:\n  - name: root\n    source: {{ file: {file}{extra} }}\noutputs:\n  - {{ disk_format: qcow2, container_format: bare }}\n"
    );
    std::fs::write(d.path("s.yaml"), text).unwrap();
}

/// Builds and asserts the output equals `original` by `qemu-img compare`.
fn builds_identical(d: &Dir, out: &str, original: &Path) -> String {
    let result = build(d, out);
    assert!(result.status.success(), "{}", describe(&result));
    let built = d.path(&format!("{out}/c.qcow2"));
    let compared = run_ok(
        "qemu-img",
        &[
            "compare",
            &original.display().to_string(),
            &built.display().to_string(),
        ],
    );
    assert!(compared.contains("identical"), "{compared}");
    String::from_utf8_lossy(&result.stderr).into_owned() + &String::from_utf8_lossy(&result.stdout)
}

/// The entries of the unpacked-image cache (none when it does not exist), without their
/// `.json` sidecars.
fn unpacked(d: &Dir) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(d.path("cache/kiln/unpacked")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// A 24 MiB sparse raw image with random runs, `d/disk.raw`.
fn raw(d: &Dir) -> PathBuf {
    sparse_raw(&d.path("disk.raw"), 24 << 20, 12, 17)
}

/// Asserts a refused build: exit `code`, `needle` in stderr, and nothing left in the
/// output directory or the unpacked cache.
fn refused(d: &Dir, code: i32, needle: &str) {
    let result = build(d, "out");
    assert_eq!(result.status.code(), Some(code), "{}", describe(&result));
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    let left: Vec<_> = std::fs::read_dir(d.path("out"))
        .map(|dir| dir.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in out/: {left:?}");
    assert_eq!(unpacked(d), Vec::<String>::new());
}

#[test]
fn raw_xz_streams_into_an_identical_qcow2_without_a_cache_entry() {
    let d = Dir::new();
    let original = raw(&d);
    sh(&d, &["xz"], "xz -k -T1 disk.raw");
    spec(&d, "disk.raw.xz", "");
    builds_identical(&d, "out", &original);
    assert_eq!(
        unpacked(&d),
        Vec::<String>::new(),
        "a raw xz image is streamed"
    );
}

#[test]
fn raw_zst_streams_into_an_identical_qcow2() {
    let d = Dir::new();
    let original = raw(&d);
    sh(&d, &["zstd"], "zstd -q disk.raw");
    spec(&d, "disk.raw.zst", "");
    builds_identical(&d, "out", &original);
    assert_eq!(
        unpacked(&d),
        Vec::<String>::new(),
        "a raw zstd image is streamed"
    );
}

#[test]
fn raw_gz_builds_an_identical_qcow2() {
    let d = Dir::new();
    let original = raw(&d);
    sh(&d, &["gzip"], "gzip -k disk.raw");
    spec(&d, "disk.raw.gz", "");
    builds_identical(&d, "out", &original);
}

#[test]
fn raw_bz2_is_unpacked_once_and_reused() {
    let d = Dir::new();
    let original = raw(&d);
    sh(&d, &["bzip2"], "bzip2 -k disk.raw");
    spec(&d, "disk.raw.bz2", "");
    builds_identical(&d, "out", &original);
    let first = unpacked(&d);
    assert_eq!(
        first,
        [sha256(&d.path("disk.raw.bz2"))],
        "keyed by the compressed digest"
    );
    let log = builds_identical(&d, "again", &original);
    assert_eq!(unpacked(&d), first, "one entry per content");
    assert!(log.contains("using unpacked"), "{log}");
}

/// `kiln cache ARGS` with the cache under `d/cache`.
fn cache_cmd(d: &Dir, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("cache")
        .args(args)
        .current_dir(d.tmp.path())
        .env("XDG_CACHE_HOME", d.path("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln cache {args:?}:\n{}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cache_ls_and_prune_cover_unpacked_images() {
    let d = Dir::new();
    let original = raw(&d);
    sh(
        &d,
        &["qemu-img", "xz"],
        "qemu-img convert -O qcow2 disk.raw d.qcow2 && xz -k d.qcow2",
    );
    spec(&d, "d.qcow2.xz", "");
    builds_identical(&d, "out", &original);
    let key = sha256(&d.path("d.qcow2.xz"));
    assert_eq!(unpacked(&d), std::slice::from_ref(&key));
    let entry = d.path(&format!("cache/kiln/unpacked/{key}"));
    // The oracle for what the entry is: qemu-img reads it as the qcow2 that was packed.
    let info = run_ok("qemu-img", &["info", &entry.display().to_string()]);
    assert!(info.contains("file format: qcow2"), "{info}");
    let bytes = std::fs::metadata(&entry).unwrap().len();
    let ls = cache_cmd(&d, &["ls"]);
    let line = (ls.lines())
        .find(|l| l.starts_with("unpacked\t"))
        .unwrap_or_else(|| panic!("no unpacked line:\n{ls}"));
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields[2], format!("unpacked/{key}"), "{ls}");
    assert!(
        fields[3].ends_with("/d.qcow2.xz"),
        "came from the source: {ls}"
    );
    // The size shown (`1.5 MiB`) is the file's, to its three decimals.
    let (number, unit) = fields[1].split_once(' ').unwrap();
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        other => panic!("unit {other}: {ls}"),
    };
    let shown = number.parse::<f64>().unwrap() * scale;
    assert!(
        (shown - bytes as f64).abs() <= bytes as f64 / 1000.0,
        "{bytes} bytes shown as {}: {ls}",
        fields[1]
    );
    // Pruning removes the image and its sidecar; the next build unpacks it again.
    let pruned = cache_cmd(&d, &["prune", "--all"]);
    assert!(pruned.contains(&format!("unpacked/{key}")), "{pruned}");
    let left: Vec<_> = std::fs::read_dir(d.path("cache/kiln/unpacked"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let log = builds_identical(&d, "again", &original);
    assert!(log.contains("unpacking"), "{log}");
}

#[test]
fn qcow2_xz_is_unpacked_once_into_the_cache() {
    let d = Dir::new();
    let original = raw(&d);
    sh(
        &d,
        &["qemu-img", "xz"],
        "qemu-img convert -O qcow2 disk.raw d.qcow2 && xz -k d.qcow2",
    );
    spec(&d, "d.qcow2.xz", "");
    builds_identical(&d, "out", &original);
    assert_eq!(unpacked(&d).len(), 1);
    let log = builds_identical(&d, "again", &original);
    assert_eq!(unpacked(&d).len(), 1, "one entry per content");
    assert!(log.contains("using unpacked"), "{log}");
}

/// qemu-img's streamOptimized VMDK of the test disk, `d/d.vmdk`, and the original.
fn stream_vmdk(d: &Dir) -> PathBuf {
    let original = raw(d);
    sh(
        d,
        &["qemu-img"],
        "qemu-img convert -O vmdk -o subformat=streamOptimized disk.raw d.vmdk",
    );
    original
}

/// Builds `file` (a compressed stream VMDK): identical to the original by `qemu-img
/// compare`, byte for byte the qcow2 built from the uncompressed `d.vmdk` (the
/// random-access path), and nothing unpacked into the cache.
fn vmdk_streams(d: &Dir, original: &Path, file: &str) {
    spec(d, "d.vmdk", "");
    builds_identical(d, "plain", original);
    spec(d, file, "");
    builds_identical(d, "out", original);
    run_ok(
        "cmp",
        &[
            &d.path("plain/c.qcow2").display().to_string(),
            &d.path("out/c.qcow2").display().to_string(),
        ],
    );
    assert_eq!(unpacked(d), Vec::<String>::new(), "{file} is streamed");
}

#[test]
fn stream_vmdk_xz_streams_into_the_same_qcow2_as_the_plain_vmdk() {
    let d = Dir::new();
    let original = stream_vmdk(&d);
    sh(&d, &["xz"], "xz -k -T1 d.vmdk");
    vmdk_streams(&d, &original, "d.vmdk.xz");
}

#[test]
fn stream_vmdk_zst_streams() {
    let d = Dir::new();
    let original = stream_vmdk(&d);
    sh(&d, &["zstd"], "zstd -q d.vmdk");
    vmdk_streams(&d, &original, "d.vmdk.zst");
}

#[test]
fn stream_vmdk_gz_streams() {
    let d = Dir::new();
    let original = stream_vmdk(&d);
    sh(&d, &["gzip"], "gzip -k d.vmdk");
    vmdk_streams(&d, &original, "d.vmdk.gz");
}

#[test]
fn stream_vmdk_bz2_streams_though_bzip2_declares_no_size() {
    let d = Dir::new();
    let original = stream_vmdk(&d);
    sh(&d, &["bzip2"], "bzip2 -k d.vmdk");
    vmdk_streams(&d, &original, "d.vmdk.bz2");
}

#[test]
fn stream_vmdk_in_a_tar_xz_streams() {
    let d = Dir::new();
    let original = stream_vmdk(&d);
    sh(
        &d,
        &["tar", "xz"],
        "echo hi > README && tar -cJf d.tar.xz README d.vmdk",
    );
    vmdk_streams(&d, &original, "d.tar.xz");
}

#[test]
fn stream_vmdk_made_by_kiln_streams() {
    let d = Dir::new();
    let original = raw(&d);
    let made = d.kiln(&[
        "convert",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        "disk.raw",
        "d.vmdk",
    ]);
    assert!(made.status.success(), "{}", describe(&made));
    sh(&d, &["zstd"], "zstd -q d.vmdk");
    vmdk_streams(&d, &original, "d.vmdk.zst");
}

#[test]
fn truncated_stream_vmdk_is_refused() {
    let d = Dir::new();
    stream_vmdk(&d);
    // A whole xz file around a VMDK cut in its grains.
    sh(
        &d,
        &["xz", "head"],
        "head -c 300000 d.vmdk > t.vmdk && xz t.vmdk",
    );
    spec(&d, "t.vmdk.xz", "");
    refused(&d, 1, "xz-compressed stream VMDK, near compressed byte 0x");
    let err = String::from_utf8_lossy(&build(&d, "out").stderr).into_owned();
    assert!(
        err.contains("stream VMDK ends at uncompressed byte 0x493e0 inside its compressed grain"),
        "{err}"
    );
}

/// Python: moves the second grain of qemu-img's stream VMDK `argv[1]` after the third
/// and points both grain directories' tables at the new places, writing `argv[2]`; a
/// legal image whose grains are not in ascending LBA order.
const SWAP_GRAINS: &str = r#"
import struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
h = struct.unpack_from('<4sIIQQQQIQQQ', b, 0)
grain, rgd, gd, over = h[4], h[8], h[9], h[10]
recs, at = [], over * 512
while True:
    lba, size = struct.unpack_from('<QI', b, at)
    if size == 0:
        break
    n = (12 + size + 511) // 512 * 512
    recs.append((at, n)); at += n
(a, na), (c, nc) = recs[1], recs[2]
b[a:a + na + nc] = b[c:c + nc] + b[a:a + na]
moved = {a // 512: (a + nc) // 512, c // 512: a // 512}
for d in (gd, rgd):
    for i in range((h[3] // grain + 511) // 512):
        gt = struct.unpack_from('<I', b, d * 512 + 4 * i)[0] * 512
        for j in range(512):
            if struct.unpack_from('<I', b, gt + 4 * j)[0] in moved:
                e = struct.unpack_from('<I', b, gt + 4 * j)[0]
                struct.pack_into('<I', b, gt + 4 * j, moved[e])
open(sys.argv[2], 'wb').write(b)
"#;

#[test]
fn stream_vmdk_with_grains_out_of_order_is_refused_and_builds_uncompressed() {
    let d = Dir::new();
    let original = stream_vmdk(&d);
    python(d.tmp.path(), SWAP_GRAINS, &["d.vmdk", "o.vmdk"]);
    // The oracle: qemu-img reads the reordered image as the original disk.
    let same = run_ok(
        "qemu-img",
        &[
            "compare",
            &original.display().to_string(),
            &d.path("o.vmdk").display().to_string(),
        ],
    );
    assert!(same.contains("identical"), "{same}");
    sh(&d, &["xz"], "xz -k o.vmdk");
    spec(&d, "o.vmdk.xz", "");
    refused(&d, 1, "not after the previous grain's LBA");
    let err = String::from_utf8_lossy(&build(&d, "out").stderr).into_owned();
    assert!(err.contains("use the .vmdk itself as the source"), "{err}");
    // What the error says to do works.
    spec(&d, "o.vmdk", "");
    builds_identical(&d, "out", &original);
}

#[test]
fn stream_vmdk_bomb_past_max_size_is_refused_before_reading() {
    let d = Dir::new();
    stream_vmdk(&d);
    sh(&d, &["bzip2"], "bzip2 -k d.vmdk");
    spec(&d, "d.vmdk.bz2", ", max_size: 8MiB");
    // Found by `kiln validate`'s look at the header, before any grain is read.
    refused(
        &d,
        1,
        "decompresses to more than 8388608 bytes (its stream VMDK",
    );
    let err = String::from_utf8_lossy(&build(&d, "out").stderr).into_owned();
    assert!(err.contains("capacity of 25165824 bytes"), "{err}");
}

#[test]
fn stream_vmdk_followed_by_data_is_refused() {
    let d = Dir::new();
    stream_vmdk(&d);
    sh(&d, &["gzip"], "(cat d.vmdk; echo extra) | gzip > x.vmdk.gz");
    spec(&d, "x.vmdk.gz", "");
    refused(&d, 1, "data follows the stream VMDK's end-of-stream marker");
}

#[test]
fn tar_xz_with_one_disk_raw_builds_by_default() {
    let d = Dir::new();
    let original = raw(&d);
    sh(
        &d,
        &["tar", "xz"],
        "echo hi > README && tar -cJf d.tar.xz README disk.raw",
    );
    spec(&d, "d.tar.xz", "");
    builds_identical(&d, "out", &original);
}

#[test]
fn tar_zst_member_picks_one_of_two_images() {
    let d = Dir::new();
    let original = raw(&d);
    sh(
        &d,
        &["tar", "zstd", "qemu-img"],
        "qemu-img convert -O qcow2 disk.raw other.qcow2 && tar -cf d.tar disk.raw other.qcow2 && zstd -q d.tar",
    );
    spec(&d, "d.tar.zst", ", member: other.qcow2");
    builds_identical(&d, "out", &original);
    assert_eq!(unpacked(&d).len(), 1, "the qcow2 member is unpacked");
}

#[test]
fn plain_tar_member_is_read_in_place() {
    let d = Dir::new();
    let original = raw(&d);
    sh(&d, &["tar", "bzip2"], "tar -cf d.tar ./disk.raw");
    spec(&d, "d.tar", ", member: disk.raw");
    builds_identical(&d, "out", &original);
    assert_eq!(
        unpacked(&d),
        Vec::<String>::new(),
        "a plain tar is not copied"
    );
}

#[test]
fn tar_bz2_member_builds_an_identical_qcow2() {
    let d = Dir::new();
    let original = raw(&d);
    sh(&d, &["tar", "bzip2"], "tar -cjf d.tar.bz2 disk.raw");
    spec(&d, "d.tar.bz2", "");
    builds_identical(&d, "out", &original);
}

#[test]
fn truncated_xz_is_refused() {
    let d = Dir::new();
    raw(&d);
    sh(
        &d,
        &["xz", "head"],
        "xz -k disk.raw && head -c 20000 disk.raw.xz > t.raw.xz",
    );
    spec(&d, "t.raw.xz", "");
    refused(&d, 1, "xz file has no valid index");
}

#[test]
fn decompression_bomb_past_max_size_is_refused() {
    let d = Dir::new();
    // 64 MiB of one repeated non-zero byte: bzip2 shrinks it to a few hundred bytes.
    sh(
        &d,
        &["bzip2", "head", "tr"],
        "head -c 67108864 /dev/zero | tr '\\0' 'A' | bzip2 > bomb.raw.bz2",
    );
    spec(&d, "bomb.raw.bz2", ", max_size: 8MiB");
    refused(&d, 1, "decompresses to more than 8388608 bytes");
}

#[test]
fn tar_with_two_images_and_no_member_is_refused() {
    let d = Dir::new();
    raw(&d);
    sh(
        &d,
        &["tar", "xz"],
        "cp disk.raw b.img && tar -cJf d.tar.xz disk.raw b.img",
    );
    spec(&d, "d.tar.xz", "");
    refused(
        &d,
        2,
        "several disk images; name one with `member:`; its members are: disk.raw, b.img",
    );
}

#[test]
fn member_that_is_not_there_is_refused() {
    let d = Dir::new();
    raw(&d);
    sh(&d, &["tar", "gzip"], "tar -czf d.tar.gz disk.raw");
    spec(&d, "d.tar.gz", ", member: root.img");
    refused(
        &d,
        1,
        "the archive has no member `root.img`; its members are: disk.raw",
    );
}

#[test]
fn corrupt_gzip_is_refused() {
    let d = Dir::new();
    raw(&d);
    // Overwrite 64 bytes in the middle of the deflate data.
    sh(
        &d,
        &["gzip", "dd"],
        "gzip -k disk.raw && n=$(stat -c %s disk.raw.gz) && head -c 64 /dev/urandom | dd of=disk.raw.gz bs=1 seek=$((n / 2)) conv=notrunc status=none",
    );
    spec(&d, "disk.raw.gz", "");
    refused(
        &d,
        1,
        "gzip data is corrupt or truncated near compressed byte",
    );
}

#[test]
fn a_fixed_vhd_in_any_single_stream_codec_builds_through_the_cache() {
    // A fixed VHD looks raw until its last 512 bytes (see src/unpack/mod.rs): the stream
    // ends in its footer, and the build starts again from the cache.
    for (tools, script, file) in [
        (&["xz"][..], "xz -k -T1 f.vhd", "f.vhd.xz"),
        (&["gzip"][..], "gzip -k f.vhd", "f.vhd.gz"),
        (&["zstd"][..], "zstd -q f.vhd", "f.vhd.zst"),
        (&["tar", "gzip"][..], "tar -czf f.tar.gz f.vhd", "f.tar.gz"),
    ] {
        let d = Dir::new();
        let original = raw(&d);
        sh(
            &d,
            &["qemu-img"],
            "qemu-img convert -O vpc -o subformat=fixed disk.raw f.vhd",
        );
        sh(&d, tools, script);
        spec(&d, file, "");
        // Compared with the raw original: the VHD's size is rounded up to its CHS geometry
        // (zeros, which `qemu-img compare` accepts past the shorter image).
        let log = builds_identical(&d, "out", &original);
        assert!(
            log.contains("ends in a VHD footer: a fixed VHD"),
            "{file}: {log}"
        );
        assert_eq!(unpacked(&d).len(), 1, "{file}");
        // The file is marked: the next build goes straight to the entry, and a file
        // changed since is streamed anew.
        let log = builds_identical(&d, "again", &original);
        assert!(log.contains("using unpacked"), "{file}: {log}");
        assert!(!log.contains("starting again"), "{file}: {log}");
        assert_eq!(unpacked(&d).len(), 1, "{file}");
        sh(&d, &["touch"], &format!("touch -d '2001-01-01' {file}"));
        let log = builds_identical(&d, "changed", &original);
        assert!(log.contains("starting again"), "{file}: {log}");
    }
}

#[test]
fn a_fixed_vhd_whose_footer_is_damaged_is_refused_and_leaves_nothing() {
    let d = Dir::new();
    raw(&d);
    sh(
        &d,
        &["qemu-img", "gzip"],
        // The footer checksum's high byte (byte 64 of the last 512; 0xff, the ones'
        // complement of a small sum) zeroed, then gzip.
        "qemu-img convert -O vpc -o subformat=fixed disk.raw f.vhd && n=$(stat -c %s f.vhd) && printf '\\000' | dd of=f.vhd bs=1 seek=$((n - 512 + 64)) conv=notrunc status=none && gzip f.vhd",
    );
    spec(&d, "f.vhd.gz", "");
    refused(
        &d,
        1,
        "f.vhd.gz: the decompressed image ends in a VHD footer, but VHD footer checksum",
    );
}

#[test]
fn kiln_convert_reads_a_compressed_fixed_vhd_too() {
    let d = Dir::new();
    raw(&d);
    sh(
        &d,
        &["qemu-img", "zstd"],
        "qemu-img convert -O vpc -o subformat=fixed disk.raw f.vhd && zstd -q -k f.vhd",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["convert", "f.vhd.zst", "-O", "qcow2", "c.qcow2"])
        .current_dir(d.tmp.path())
        .env("XDG_CACHE_HOME", d.path("cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let compared = run_ok(
        "qemu-img",
        &[
            "compare",
            "-f",
            "vpc",
            &d.path("f.vhd").display().to_string(),
            &d.path("c.qcow2").display().to_string(),
        ],
    );
    assert!(compared.contains("identical"), "{compared}");
}

#[test]
fn fixed_vhd_bz2_is_unpacked_into_the_cache() {
    // bzip2 declares no size, so the image goes through the cache, where the engine's probe
    // finds the footer.
    let d = Dir::new();
    let original = raw(&d);
    sh(
        &d,
        &["qemu-img", "bzip2"],
        "qemu-img convert -O vpc -o subformat=fixed disk.raw f.vhd && bzip2 -k f.vhd",
    );
    spec(&d, "f.vhd.bz2", "");
    // Compared with the raw original: the VHD's size is rounded up to its CHS geometry
    // (zeros, which `qemu-img compare` accepts past the shorter image).
    builds_identical(&d, "out", &original);
    assert_eq!(unpacked(&d).len(), 1);
}

#[test]
fn fixed_vhd_in_a_multi_block_xz_goes_through_the_cache() {
    // The last block, decoded alone before streaming, shows the footer (src/unpack/tail.rs).
    let d = Dir::new();
    let original = raw(&d);
    sh(
        &d,
        &["qemu-img", "xz"],
        "qemu-img convert -O vpc -o subformat=fixed disk.raw f.vhd && xz -k -T2 --block-size=1MiB f.vhd",
    );
    spec(&d, "f.vhd.xz", "");
    builds_identical(&d, "out", &original);
    assert_eq!(unpacked(&d).len(), 1);
}
