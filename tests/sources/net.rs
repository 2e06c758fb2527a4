//! The test's network: an HTTP server with `Range` support and a CONNECT proxy, both on
//! 127.0.0.1, each recording the requests it saw.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Requests a test server or proxy saw (`GET /path` or `CONNECT host:port`).
pub type Seen = Arc<Mutex<Vec<String>>>;

/// Serves `files` (path -> body) until the test process ends, honouring `Range: bytes=N-`.
pub fn serve(files: BTreeMap<String, Vec<u8>>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            let earlier = log
                .lock()
                .unwrap()
                .iter()
                .filter(|r| **r == format!("GET {path}"))
                .count();
            log.lock().unwrap().push(format!("GET {path}"));
            // `/flaky/...` answers 503 the first time, as an overloaded mirror might.
            if path.starts_with("/flaky/") && earlier == 0 {
                let _ = stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let Some(body) = files.get(&path) else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let start = range.unwrap_or(0).min(body.len());
            let head = match range {
                Some(_) => format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\n",
                    body.len().saturating_sub(1),
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
    (base, seen)
}

/// A CONNECT proxy: records each CONNECT target, then tunnels bytes both ways; or, when
/// `refuse`, answers 403 to every request.
pub fn proxy(refuse: bool) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut client) = stream else { continue };
            let mut reader = BufReader::new(client.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            log.lock().unwrap().push(first.trim().to_string());
            let target = first.split_whitespace().nth(1).unwrap_or("").to_string();
            if refuse || !first.starts_with("CONNECT ") {
                let _ = client.write_all(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let Ok(upstream) = TcpStream::connect(&target) else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                continue;
            };
            let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let mut up_read = upstream.try_clone().unwrap();
            let mut client_write = client.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_read, &mut client_write);
                let _ = client_write.shutdown(std::net::Shutdown::Both);
            });
            let mut up_write = upstream;
            std::thread::spawn(move || {
                // Bytes the reader already buffered go first.
                let buffered = reader.buffer().to_vec();
                let _ = up_write.write_all(&buffered);
                let mut rest = reader.into_inner();
                let _ = std::io::copy(&mut rest, &mut up_write);
                // The client hung up: so does the tunnel, or a server that waits for the
                // client's end (openssl s_server, one connection at a time) waits forever.
                let _ = up_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (url, seen)
}
