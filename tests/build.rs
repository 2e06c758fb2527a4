//! `kiln build`: examples and templates build, artefacts pass the oracle (check-image for
//! disks, check-seed for cloud-init seeds), reports and SHA256SUMS match an independent
//! sha256sum, builds are byte-identical, downloads are
//! verified, cached and resumed (local HTTP server on 127.0.0.1), and an interrupted build
//! leaves nothing half-written.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use crate::util::*;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// `kiln ARGS` in `d` with its own download cache under `d/cache`.
fn kiln_cached(d: &Dir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(d.tmp.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("XDG_CACHE_HOME", d.path("cache"))
        .output()
        .unwrap()
}

/// Serves `body` at `/img` for `connections` requests, honouring `Range: bytes=N-`; records
/// each request's Range header (or "-").
fn serve(body: Vec<u8>, connections: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/img", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            log.lock()
                .unwrap()
                .push(range.map_or("-".to_string(), |r| format!("bytes={r}-")));
            let start = range.unwrap_or(0).min(body.len());
            let head = match range {
                Some(_) => format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\n",
                    body.len() - 1,
                    body.len()
                ),
                None => "HTTP/1.1 200 OK\r\n".to_string(),
            };
            let head = format!(
                "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len() - start
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body[start..]));
        }
    });
    (url, seen)
}

fn url_spec(url: &str, sha: &str, size: &str) -> String {
    format!(
        "name: dl\ndisks:\n  - name: root\n    source: {{ url: \"{url}\", sha256: {sha} }}\n{size}outputs:\n  - {{ disk_format: raw, container_format: bare }}\n"
    )
}

#[test]
fn minimal_example_builds_offline_and_says_where() {
    let d = Dir::new();
    let stdout = d.kiln_ok(&[
        "build",
        &repo("examples/minimal.yaml"),
        "--only",
        "raw",
        "-o",
        "out",
    ]);
    assert_eq!(stdout.trim(), "out/minimal.raw");
    let raw = d.path("out/minimal.raw");
    check_image("raw", None, &raw, None, &["--virtual-size", "67108864"]);
    let sums = std::fs::read_to_string(d.path("out/SHA256SUMS")).unwrap();
    assert_eq!(sums, format!("{}  minimal.raw\n", sha256(&raw)));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("out/minimal.kiln.json")).unwrap())
            .unwrap();
    let a = &report["artefacts"][0];
    assert_eq!(
        (
            a["path"].as_str(),
            a["size"].as_u64(),
            a["virtual_size"].as_u64()
        ),
        (Some("minimal.raw"), Some(1 << 26), Some(1 << 26))
    );
    assert_eq!(a["sha256"].as_str(), Some(sha256(&raw).as_str()));
    let args = glance_args(a);
    assert_eq!(
        args,
        [
            "openstack",
            "image",
            "create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            "minimal.raw",
            "minimal"
        ]
    );
}

#[test]
fn minimal_example_builds_raw_qcow2_ova_and_seed_identically_twice() {
    let d = Dir::new();
    let spec = repo("examples/minimal.yaml");
    let stdout = d.kiln_ok(&["build", &spec, "-o", "a", "--quiet"]);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "a/minimal.raw",
            "a/minimal.qcow2",
            "a/minimal.ova",
            "a/minimal-seed.iso"
        ]
    );
    d.kiln_ok(&["build", &spec, "-o", "b", "--quiet"]);
    let files = [
        "minimal.raw",
        "minimal.qcow2",
        "minimal.ova",
        "minimal-seed.iso",
        "minimal.kiln.json",
        "SHA256SUMS",
    ];
    for f in files {
        assert_same_file(&d.path(&format!("a/{f}")), &d.path(&format!("b/{f}")));
    }
    let size = (64u64 << 20).to_string();
    let raw = d.path("a/minimal.raw");
    check_image("raw", None, &raw, None, &["--virtual-size", &size]);
    let qcow2 = d.path("a/minimal.qcow2");
    check_image(
        "qcow2",
        None,
        &qcow2,
        Some(&raw),
        &["--virtual-size", &size],
    );
    let ova = d.path("a/minimal.ova");
    check_ova(&ova, "vmware");
    check_ova(&ova, "virtualbox");
    let seed = d.path("a/minimal-seed.iso");
    check_seed(
        &seed,
        &[
            "--expect-instance-id",
            "minimal-1",
            "--expect-hostname",
            "minimal",
        ],
    );
    let sums = std::fs::read_to_string(d.path("a/SHA256SUMS")).unwrap();
    let expected: String = [
        (&seed, "minimal-seed.iso"),
        (&ova, "minimal.ova"),
        (&qcow2, "minimal.qcow2"),
        (&raw, "minimal.raw"),
    ]
    .iter()
    .map(|(p, n)| format!("{}  {n}\n", sha256(p)))
    .collect();
    assert_eq!(sums, expected);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("a/minimal.kiln.json")).unwrap())
            .unwrap();
    let a = &report["artefacts"][3];
    let seed_len = std::fs::metadata(&seed).unwrap().len();
    assert_eq!(
        (
            a["name"].as_str(),
            a["path"].as_str(),
            a["size"].as_u64(),
            a["sha256"].as_str(),
            a["disk_format"].as_str(),
            a["container_format"].as_str(),
        ),
        (
            Some("seed-iso"),
            Some("minimal-seed.iso"),
            Some(seed_len),
            Some(sha256(&seed).as_str()),
            Some("iso"),
            Some("bare")
        )
    );
    let args = glance_args(a);
    assert_eq!(
        args.join(" "),
        "openstack image create --disk-format iso --container-format bare --file minimal-seed.iso minimal-seed"
    );
}

#[test]
fn only_builds_the_seed_when_it_is_named() {
    let d = Dir::new();
    let spec = repo("examples/minimal.yaml");
    let stdout = d.kiln_ok(&["build", &spec, "--only", "seed-iso", "-o", "s"]);
    assert_eq!(stdout.trim(), "s/minimal-seed.iso");
    let stdout = d.kiln_ok(&["build", &spec, "--only", "qcow2,seed-iso", "-o", "q"]);
    assert_eq!(stdout.trim(), "q/minimal.qcow2\nq/minimal-seed.iso");
    let stdout = d.kiln_ok(&["build", &spec, "--only", "qcow2", "-o", "n"]);
    assert_eq!(stdout.trim(), "n/minimal.qcow2");
    let err = d.kiln_err(&["build", &spec, "--only", "seed", "-o", "x"], 2);
    assert!(err.contains("`seed-iso`"), "{err}");
}

#[test]
fn seed_vfat_delivery_builds_a_fat_seed_from_files() {
    let d = Dir::new();
    std::fs::write(d.path("user-data"), "#!/bin/sh\necho hello\n").unwrap();
    std::fs::write(
        d.path("net.yaml"),
        "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n",
    )
    .unwrap();
    std::fs::write(d.path("s.yaml"), "name: fat\ndisks: [ { name: root, source: { blank: true }, size: 1MiB } ]\noutputs: [ { disk_format: raw, container_format: bare } ]\ncloud_init:\n  user_data: user-data\n  network_config: net.yaml\n  deliver: [seed-vfat, seed-iso]\n").unwrap();
    let stdout = d.kiln_ok(&["build", "s.yaml", "-o", "out"]);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["out/fat.raw", "out/fat-seed.img", "out/fat-seed.iso"]
    );
    check_seed(&d.path("out/fat-seed.img"), &[]);
    check_seed(&d.path("out/fat-seed.iso"), &[]);
    let report = std::fs::read_to_string(d.path("out/fat.kiln.json")).unwrap();
    assert!(report.contains("\"name\": \"seed-vfat\""), "{report}");
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let d = Dir::new();
    let out = d.kiln_ok(&[
        "build",
        &repo("examples/minimal.yaml"),
        "--dry-run",
        "-o",
        "out",
    ]);
    assert!(
        out.contains("disk root: blank, size 64 MiB")
            && out.contains("out/minimal.qcow2")
            && out.contains(
                "seed-iso: out/minimal-seed.iso ← cloud_init, NoCloud seed (iso, label cidata)"
            ),
        "{out}"
    );
    assert!(d.files().is_empty(), "{:?}", d.files());
}

#[test]
fn file_source_grows_and_builds_identically_twice() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("base.raw"), 8 << 20, 20, 3);
    std::fs::write(d.path("s.yaml"), "name: twice\ndisks: [ { name: root, source: { file: base.raw }, size: 12MiB } ]\noutputs:\n  - { disk_format: raw, container_format: bare }\n  - { name: copy, disk_format: raw, container_format: bare }\n  - { disk_format: qcow2, container_format: bare }\n").unwrap();
    d.kiln_ok(&["build", "s.yaml", "-o", "a"]);
    d.kiln_ok(&["build", "s.yaml", "-o", "b"]);
    for f in [
        "twice.raw",
        "twice-copy.raw",
        "twice.qcow2",
        "twice.kiln.json",
        "SHA256SUMS",
    ] {
        assert_same_file(&d.path(&format!("a/{f}")), &d.path(&format!("b/{f}")));
    }
    let out = d.path("a/twice.raw");
    check_image(
        "raw",
        None,
        &out,
        None,
        &["--virtual-size", &(12u64 << 20).to_string()],
    );
    check_image(
        "qcow2",
        None,
        &d.path("a/twice.qcow2"),
        Some(&out),
        &["--virtual-size", &(12u64 << 20).to_string()],
    );
    let built = std::fs::read(&out).unwrap();
    assert_eq!(&built[..8 << 20], &std::fs::read(&src).unwrap()[..]);
    assert!(built[8 << 20..].iter().all(|b| *b == 0));
}

#[test]
fn url_source_is_verified_cached_and_resumed() {
    let d = Dir::new();
    let src = random_raw(&d.path("src.raw"), 3 << 20, 9);
    let body = std::fs::read(&src).unwrap();
    let sha = sha256(&src);
    let (url, seen) = serve(body.clone(), 2);
    std::fs::write(d.path("s.yaml"), url_spec(&url, &sha, "")).unwrap();
    let cache = d.path(&format!("cache/kiln/downloads/{sha}"));
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    std::fs::write(
        cache.with_file_name(format!("{sha}.partial")),
        &body[..1 << 20],
    )
    .unwrap();
    let out = kiln_cached(&d, &["build", "s.yaml", "-o", "out"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(*seen.lock().unwrap(), ["bytes=1048576-"]);
    check_image("raw", None, &d.path("out/dl.raw"), Some(&src), &[]);
    assert_same_file(&cache, &src);
    // A second build uses the cache: the server sees no new request.
    let out = kiln_cached(&d, &["build", "s.yaml", "-o", "again"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn url_with_wrong_sha256_is_refused_and_not_cached() {
    let d = Dir::new();
    let (url, _) = serve(b"not the image".to_vec(), 1);
    let wrong = "ab".repeat(32);
    std::fs::write(d.path("s.yaml"), url_spec(&url, &wrong, "")).unwrap();
    let out = kiln_cached(&d, &["build", "s.yaml", "-o", "out"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s.yaml:4:13: disks[0].source: sha256 of http://") && err.contains(&wrong),
        "{err}"
    );
    let cached: Vec<_> = std::fs::read_dir(d.path("cache/kiln/downloads"))
        .unwrap()
        .collect();
    assert!(cached.is_empty(), "{cached:?}");
    assert!(!d.path("out/dl.raw").exists());
}

#[test]
fn url_source_larger_than_size_is_not_shrunk() {
    let d = Dir::new();
    let src = random_raw(&d.path("src.raw"), 2 << 20, 4);
    let (url, _) = serve(std::fs::read(&src).unwrap(), 1);
    std::fs::write(
        d.path("s.yaml"),
        url_spec(&url, &sha256(&src), "    size: 1MiB\n"),
    )
    .unwrap();
    let out = kiln_cached(&d, &["build", "s.yaml", "-o", "out"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s.yaml:5:11: disks[0].size") && err.contains("cannot shrink"),
        "{err}"
    );
}

#[test]
fn failed_build_leaves_earlier_artefacts_untouched() {
    let d = Dir::new();
    random_raw(&d.path("data.img"), 1 << 20, 5);
    std::fs::write(d.path("s.yaml"), "name: keep\ndisks:\n  - { name: a, source: { blank: true }, size: 1MiB }\n  - { name: b, source: { file: data.img } }\noutputs:\n  - { name: a, disk: a, disk_format: raw, container_format: bare }\n  - { name: b, disk: b, disk_format: raw, container_format: bare }\n").unwrap();
    d.kiln_ok(&["build", "s.yaml", "-o", "out"]);
    let before = std::fs::read(d.path("out/keep-b.raw")).unwrap();
    // Now disk b probes as qcow2 and its header is garbage: output b fails after a is done.
    let mut bad = b"QFI\xfb".to_vec();
    bad.resize(4096, 0xee);
    std::fs::write(d.path("data.img"), bad).unwrap();
    d.kiln_err(&["build", "s.yaml", "-o", "out"], 1);
    assert_eq!(std::fs::read(d.path("out/keep-b.raw")).unwrap(), before);
    let names: Vec<String> = std::fs::read_dir(d.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");
}

#[test]
fn interrupted_build_leaves_no_partial_files_and_reruns() {
    let d = Dir::new();
    // 384 MiB of non-zero data: long enough to interrupt while the artefact is written.
    let f = std::fs::File::create(d.path("big.img")).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let mut w = std::io::BufWriter::new(f);
    for _ in 0..384 {
        w.write_all(&chunk).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    std::fs::write(d.path("s.yaml"), "name: big\ndisks: [ { name: root, source: { file: big.img } } ]\noutputs: [ { disk_format: raw, container_format: bare } ]\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "s.yaml", "-o", "out"])
        .current_dir(d.tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let partial = d.path("out/big.raw.partial");
    let started = std::time::Instant::now();
    while !partial.exists() && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(partial.exists(), "the build never started writing");
    run_ok("kill", &["-INT", &child.id().to_string()]);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    let left: Vec<PathBuf> = std::fs::read_dir(d.path("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    d.kiln_ok(&["build", "s.yaml", "-o", "out"]);
    assert_same_file(&d.path("out/big.raw"), &d.path("big.img"));
}

#[test]
fn init_writes_a_template_that_builds() {
    let d = Dir::new();
    let out = d.kiln_ok(&["init", "--template", "minimal", "proj"]);
    assert_eq!(out.trim(), "proj/kiln.yaml");
    d.kiln_ok(&["validate", "proj/kiln.yaml"]);
    d.kiln_ok(&[
        "build",
        "proj/kiln.yaml",
        "--only",
        "raw",
        "-o",
        "out",
        "--quiet",
    ]);
    check_image(
        "raw",
        None,
        &d.path("out/minimal.raw"),
        None,
        &["--virtual-size", &(1u64 << 30).to_string()],
    );
    let err = d.kiln_err(&["init", "--template", "minimal", "proj"], 2);
    assert!(err.contains("--force"), "{err}");
    let err = d.kiln_err(&["init", "--template", "ubuntu-clod"], 2);
    assert!(err.contains("did you mean `ubuntu-cloud`"), "{err}");
}

#[test]
fn templates_build_their_supported_outputs() {
    let d = Dir::new();
    d.kiln_ok(&["build", &repo("templates/vmware-ova.yaml"), "-o", "out"]);
    check_image(
        "raw",
        None,
        &d.path("out/vmware-appliance.raw"),
        None,
        &["--virtual-size", &(8u64 << 30).to_string()],
    );
    check_ova(&d.path("out/vmware-appliance.ova"), "vmware");
    check_ova(&d.path("out/vmware-appliance.ova"), "virtualbox");
    d.kiln_ok(&[
        "build",
        &repo("templates/virtualbox-ova.yaml"),
        "-o",
        "vbox",
    ]);
    check_ova(&d.path("vbox/virtualbox-appliance.ova"), "virtualbox");
    d.kiln_ok(&["build", &repo("templates/aws-ami.yaml"), "-o", "aws"]);
    let ami = std::fs::metadata(d.path("aws/aws-appliance.ami")).unwrap();
    assert_eq!(ami.len(), 4 << 30);
    assert!(d.path("aws/aws-appliance.glance.json").exists());
}

#[test]
fn download_failure_names_the_url_and_status() {
    let d = Dir::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/missing.img", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Some(Ok(mut stream)) = listener.incoming().next() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    std::fs::write(d.path("s.yaml"), url_spec(&url, &"cd".repeat(32), "")).unwrap();
    let out = kiln_cached(&d, &["build", "s.yaml", "-o", "out"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot download {url}: HTTP status 404")),
        "{err}"
    );
}

#[test]
fn ubuntu_cloud_example_shape_builds_from_a_local_server() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("cloud.img"), 16 << 20, 10, 11);
    let (url, _) = serve(std::fs::read(&src).unwrap(), 1);
    let example = std::fs::read_to_string(repo("examples/ubuntu-cloud.yaml")).unwrap();
    let pinned = "https://cloud-images.ubuntu.com/releases/24.04/release-20240821/ubuntu-24.04-server-cloudimg-amd64.img";
    let pinned_sha = "0e25ca6ee9f08ec5d4f9910054b66ae7163c6152e81a3e67689d89bd6e4dfa69";
    assert!(example.contains(pinned) && example.contains(pinned_sha));
    // Same spec, served locally; raw instead of qcow2 and 64 MiB instead of 20 GiB so the test
    // stays small (the qcow2 case is the lead's to add once the qcow2 writer is merged).
    let local = example
        .replace(pinned, &url)
        .replace(pinned_sha, &sha256(&src))
        .replace("size: 20GiB", "size: 64MiB")
        .replace("disk_format: qcow2", "disk_format: raw");
    std::fs::write(d.path("ubuntu.yaml"), local).unwrap();
    let out = kiln_cached(&d, &["build", "ubuntu.yaml", "-o", "out"]);
    assert!(out.status.success(), "{}", describe(&out));
    let built = d.path("out/ubuntu-noble.raw");
    check_image(
        "raw",
        None,
        &built,
        None,
        &["--virtual-size", &(64u64 << 20).to_string()],
    );
    let bytes = std::fs::read(&built).unwrap();
    assert_eq!(&bytes[..16 << 20], &std::fs::read(&src).unwrap()[..]);
    let report = std::fs::read_to_string(d.path("out/ubuntu-noble.kiln.json")).unwrap();
    assert!(report.contains("hw_firmware_type=uefi"), "{report}");
}

/// An artefact's `glance_args` from the build report.
fn glance_args(artefact: &serde_json::Value) -> Vec<&str> {
    (artefact["glance_args"].as_array().unwrap().iter())
        .map(|v| v.as_str().unwrap())
        .collect()
}
