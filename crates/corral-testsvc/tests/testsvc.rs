//! Runs the built `corral-testsvc` binary on a free loopback port and checks every endpoint,
//! its output lines and how it ends (crash status, SIGTERM, `--ignore-sigterm`). The HTTP
//! client is a few lines over a `TcpStream` (`Connection: close`), so the crate needs no client
//! dependency.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The service under test; killed when dropped so a failed assertion leaves no process behind.
struct Svc {
    child: Child,
    port: u16,
}

impl Drop for Svc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Svc {
    /// Starts the binary with a cleared environment plus `env` and `PORT`, and waits for its
    /// start line on stdout (printed once it listens).
    fn start(args: &[&str], env: &[(&str, &str)]) -> (Svc, String) {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_corral-testsvc"))
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        (Svc { child, port }, line)
    }

    /// Sends SIGTERM with the `kill` utility.
    fn term(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for the process to end (at most `limit`); `None` if it is still running.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process wrote to stderr; call after it ended.
    fn stderr(&mut self) -> String {
        let mut s = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    }
}

/// An answer: status, lower-case headers, body (chunked encoding decoded).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection; `extra` header lines end with `\r\n`.
async fn call(port: u16, method: &str, target: &str, extra: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn every_endpoint_answers_as_documented() {
    let (mut svc, start_line) = Svc::start(
        &[],
        &[
            ("CORRAL_APP_VERSION", "1.0.0"),
            ("CORRAL_INSTANCE", "2"),
            ("LOG_LEVEL", "info"),
        ],
    );
    let port = svc.port;
    assert!(
        start_line.starts_with(&format!("corral-testsvc listening on 127.0.0.1:{port} pid ")),
        "{start_line}"
    );

    // GET /: version, instance, pid.
    let a = call(port, "GET", "/", "", b"").await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["instance"], "2");
    assert_eq!(v["pid"], svc.child.id());

    // Health toggles.
    assert_eq!(call(port, "GET", "/health", "", b"").await.status, 200);
    assert_eq!(
        call(port, "POST", "/control/unhealthy", "", b"").await.status,
        200
    );
    assert_eq!(call(port, "GET", "/health", "", b"").await.status, 503);
    assert_eq!(call(port, "POST", "/control/healthy", "", b"").await.status, 200);
    assert_eq!(call(port, "GET", "/health", "", b"").await.status, 200);

    // Slow: waits at least the time asked, whatever the method.
    let t0 = Instant::now();
    assert_eq!(call(port, "PUT", "/slow?ms=200", "", b"").await.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(200));

    // Echo: raw path with its trailing slash and encoded bytes, raw query, headers, body hash.
    let body: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7) as u8).collect();
    let a = call(
        port,
        "PATCH",
        "/echo/a%2Fb/c/?x=1&y=%20z",
        "X-Custom: one\r\nX-Custom: two\r\n",
        &body,
    )
    .await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["method"], "PATCH");
    assert_eq!(v["path"], "/echo/a%2Fb/c/");
    assert_eq!(v["query"], "x=1&y=%20z");
    assert_eq!(v["headers"]["x-custom"], "one, two");
    assert_eq!(v["headers"]["host"], format!("127.0.0.1:{port}"));
    assert_eq!(v["body_len"], body.len());
    assert_eq!(v["body_sha256"], sha_hex(&body));
    let v = call(port, "GET", "/echo", "", b"").await.json();
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["query"], Value::Null);
    assert_eq!(v["body_len"], 0);
    assert_eq!(v["body_sha256"], sha_hex(b""));

    // Download: the i % 251 pattern, with its length announced.
    let a = call(port, "GET", "/download?bytes=200001", "", b"").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("200001"));
    assert_eq!(a.body.len(), 200_001);
    assert!(a.body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    assert_eq!(call(port, "GET", "/download", "", b"").await.status, 400);

    // Env: exactly what it was given.
    let v = call(port, "GET", "/env", "", b"").await.json();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["CORRAL_APP_VERSION", "CORRAL_INSTANCE", "LOG_LEVEL", "PORT"]
    );
    assert_eq!(v["PORT"], port.to_string());

    // One stderr line per request.
    svc.term();
    let st = svc.wait_exit(Duration::from_secs(5)).expect("exits on SIGTERM");
    assert_eq!(st.code(), Some(0));
    let err = svc.stderr();
    assert!(err.contains("GET /health 503\n"), "{err}");
    assert!(err.contains("PATCH /echo/a%2Fb/c/?x=1&y=%20z 200\n"), "{err}");
    assert!(err.contains("PUT /slow?ms=200 200\n"), "{err}");
}

#[tokio::test]
async fn crash_answers_then_exits_with_status_3() {
    let (mut svc, _) = Svc::start(&[], &[]);
    assert_eq!(
        call(svc.port, "POST", "/control/crash", "", b"").await.status,
        200
    );
    let st = svc.wait_exit(Duration::from_secs(5)).expect("exits");
    assert_eq!(st.code(), Some(3));
}

#[tokio::test]
async fn sigterm_stops_it_at_once_even_mid_request() {
    let (mut svc, _) = Svc::start(&[], &[]);
    let port = svc.port;
    let pending = tokio::spawn(async move {
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap()
            .write_all(b"GET /slow?ms=60000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    svc.term();
    let st = svc.wait_exit(Duration::from_secs(5)).expect("exits");
    assert_eq!(st.code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(2));
    pending.abort();
}

#[tokio::test]
async fn ignore_sigterm_keeps_it_running() {
    let (mut svc, _) = Svc::start(&["--ignore-sigterm"], &[]);
    svc.term();
    assert!(svc.wait_exit(Duration::from_millis(500)).is_none());
    assert_eq!(call(svc.port, "GET", "/health", "", b"").await.status, 200);
    svc.child.kill().unwrap();
    let st = svc.wait_exit(Duration::from_secs(5)).expect("killed");
    assert_eq!(st.code(), None);
    assert!(svc.stderr().contains("SIGTERM ignored"));
}
