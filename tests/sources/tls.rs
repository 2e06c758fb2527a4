//! HTTPS through a proxy (#17): a TLS server (`openssl s_server -WWW`, the independent
//! server) with a certificate from a throwaway CA that openssl makes in the test, reached
//! through the test's CONNECT proxy when `HTTPS_PROXY` says so, directly when `NO_PROXY`
//! names the host; kiln trusts the CA only through `SSL_CERT_FILE`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::proxy;
use super::{assert_identical, cache_entries, kiln_env, kiln_fails, spec};
use crate::util::*;

/// `openssl ARGS` in `dir`, asserting success.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}:\n{}",
        describe(&out)
    );
}

/// A CA (`ca.pem`) and a server key and certificate for 127.0.0.1 signed by it.
fn make_ca(dir: &Path) {
    require_tool("openssl");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        ]
        .into_iter()
        .chain(["-out", "ca.pem", "-days", "2", "-subj", "/CN=kiln test CA"])
        .chain(["-addext", "basicConstraints=critical,CA:TRUE"])
        .chain(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .collect::<Vec<_>>(),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    let ext =
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("srv.ext"), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "srv.ext",
        ],
    );
}

/// `openssl s_server -WWW` serving `root`; killed when dropped.
struct TlsServer {
    child: Child,
    base: String,
}

impl TlsServer {
    fn start(certs: &Path, root: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(certs.join("srv.pem"))
            .arg("-key")
            .arg(certs.join("srv.key"))
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            base: format!("https://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "s_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's directory, image, CA bundle and running server.
fn setup() -> (Dir, PathBuf, String, TlsServer) {
    let d = Dir::new();
    std::fs::create_dir(d.path("www")).unwrap();
    let src = random_raw(&d.path("www/disk.raw"), 1 << 20, 23);
    make_ca(&d.path(""));
    let server = TlsServer::start(&d.path(""), &d.path("www"));
    let ca = d.path("ca.pem").display().to_string();
    (d, src, ca, server)
}

#[test]
fn https_goes_through_the_proxy_and_around_it_for_no_proxy() {
    let (d, src, ca, server) = setup();
    let source = format!(
        "url: \"{}/disk.raw\", sha256: {}",
        server.base,
        sha256(&src)
    );
    let file = spec(&d, "h", &source);
    // Without the CA kiln refuses the server's certificate (and does not retry it).
    let err = kiln_fails(&d, &["build", &file, "-o", "out"], &[]);
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(!err.contains("retrying"), "{err}");
    let (proxy_url, proxied) = proxy(false);
    let via = [("HTTPS_PROXY", proxy_url.as_str()), ("SSL_CERT_FILE", &ca)];
    let out = kiln_env(&d, &["build", &file, "-o", "out", "--quiet"], &via);
    assert!(out.status.success(), "{}", describe(&out));
    assert_identical(&src, &d.path("out/h.qcow2"));
    let host = server.base.trim_start_matches("https://");
    assert_eq!(
        *proxied.lock().unwrap(),
        [format!("CONNECT {host} HTTP/1.1")]
    );
    // NO_PROXY: the next download goes straight to the server.
    let out = kiln_env(&d, &["cache", "prune", "--all"], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let around = [
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("SSL_CERT_FILE", &ca),
        ("NO_PROXY", "localhost,127.0.0.1"),
    ];
    let out = kiln_env(&d, &["build", &file, "-o", "out2", "--quiet"], &around);
    assert!(out.status.success(), "{}", describe(&out));
    assert_identical(&src, &d.path("out2/h.qcow2"));
    assert_eq!(proxied.lock().unwrap().len(), 1);
}

#[test]
fn https_proxy_that_refuses_connect_is_one_line_and_nothing_is_cached() {
    let (d, src, ca, server) = setup();
    let source = format!(
        "url: \"{}/disk.raw\", sha256: {}",
        server.base,
        sha256(&src)
    );
    let file = spec(&d, "r", &source);
    let (proxy_url, proxied) = proxy(true);
    let via = [("HTTPS_PROXY", proxy_url.as_str()), ("SSL_CERT_FILE", &ca)];
    let err = kiln_fails(&d, &["build", &file, "-o", "out"], &via);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("kiln: error: ") && last.contains(&format!("through proxy {proxy_url}")),
        "{err}"
    );
    assert!(!proxied.lock().unwrap().is_empty());
    let (images, partials) = cache_entries(&d);
    assert!(
        images.is_empty() && partials.is_empty(),
        "{images:?} {partials:?}"
    );
    assert!(!d.path("out").join("r.qcow2").exists());
}

#[test]
fn ssl_cert_file_without_a_certificate_is_refused() {
    let (d, src, _ca, server) = setup();
    let source = format!(
        "url: \"{}/disk.raw\", sha256: {}",
        server.base,
        sha256(&src)
    );
    let file = spec(&d, "n", &source);
    std::fs::write(d.path("empty.pem"), "not a certificate\n").unwrap();
    let bundle = d.path("empty.pem").display().to_string();
    let out = kiln_env(
        &d,
        &["build", &file, "-o", "out"],
        &[("SSL_CERT_FILE", &bundle)],
    );
    // A setting the user gave is wrong: a usage error, as an unusable proxy URL is.
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("SSL_CERT_FILE {bundle}: no PEM certificate in it")),
        "{err}"
    );
}
