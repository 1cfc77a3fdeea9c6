//! Issue 13's transport and file hardening, against the real server: slow clients are cut at
//! the header timeout and capped per peer and overall (refused with a 503 JSON answer), idle
//! connections are closed, a declared body over the limit gets its 413 without the body being
//! sent, errors raised below the router carry the JSON error body and a request id, files at
//! rest are the owner's only, and logs written to a pipe carry no colour codes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{BOOTSTRAP_KEY, Db, TestServer};

fn addr_of(s: &TestServer) -> SocketAddr {
    s.base.trim_start_matches("http://").parse().unwrap()
}

/// An answer read off a raw connection: status, lower-cased head, body.
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn parse(bytes: &[u8]) -> Raw {
        let text = String::from_utf8_lossy(bytes).to_string();
        let (head, _) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status: {head}"));
        let head_len = head.len() + 4;
        Raw {
            status,
            head: head.to_ascii_lowercase(),
            body: bytes[head_len..].to_vec(),
        }
    }

    /// Asserts the contract's JSON error: status, content type, request id, body.
    fn assert_json_error(&self, status: u16, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {}", self.head);
        assert!(
            self.head.contains("content-type: application/json"),
            "{what}: {}",
            self.head
        );
        let id = self
            .head
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .unwrap_or_else(|| panic!("{what}: no request id: {}", self.head));
        assert!(uuid::Uuid::parse_str(id.trim()).is_ok(), "{what}: {id}");
        let body: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {:?}", self.body));
        assert_eq!(body["code"], status, "{what}: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty() && e != "Error"),
            "{what}: {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        body
    }
}

/// Sends `bytes` on a new connection and reads until the server closes it (at most 5 s).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Raw {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
        .await
        .expect("the server closes the connection after its answer")
        .unwrap();
    Raw::parse(&out)
}

/// Reads one answer with a `Content-Length` body off a kept-alive connection.
async fn read_answer(c: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), c.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before a whole answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return Raw::parse(&buf[..end + 4 + len]);
            }
        }
    }
}

/// Whether the server closed `c` within `wait` (end of stream or reset).
async fn closed_within(c: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 64];
    match tokio::time::timeout(wait, c.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&b[..n])),
        Err(_) => false,
    }
}

/// A slow connection: a request head that never ends.
async fn slow(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    c
}

/// A client whose connections come from 127.0.0.2, another peer than the slow ones.
fn other_peer() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_at_the_header_timeout_and_capped_per_peer() {
    let s = TestServer::start_with(Db::Sqlite, |c| {
        c.server.header_read_timeout = 2;
        c.server.max_connections_per_peer = 20;
    })
    .await;
    let addr = addr_of(&s);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(slow(addr).await);
    }
    let opened = Instant::now();
    // Over the per-peer cap: answered at once with a 503 JSON error, not held.
    for i in 0..5 {
        let r = exchange(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let body = r.assert_json_error(503, &format!("refused connection {i}"));
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("max_connections_per_peer"),
            "{body}"
        );
    }
    // Another peer is served at once while the slow ones are held.
    let other = other_peer();
    let started = Instant::now();
    let ping = other.get(s.url("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(ping.headers().contains_key("x-request-id"));
    // The slow connections are still open before the timeout, and closed after it.
    assert!(
        opened.elapsed() < Duration::from_millis(1500),
        "setup too slow to check"
    );
    assert!(
        !closed_within(&mut held[0], Duration::from_millis(300)).await,
        "closed before the timeout"
    );
    for (i, c) in held.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(5)).await,
            "slow connection {i} still open"
        );
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        opened.elapsed()
    );
    // Their places are free again.
    let ping = s.anon(reqwest::Method::GET, "/ping").send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::OK);
    let metrics = other
        .get(s.url("/metrics"))
        .bearer_auth(BOOTSTRAP_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("corral_connections_refused_total{reason=\"max_connections_per_peer\"}")),
        "{metrics}"
    );
    assert!(metrics.contains("corral_connections_open"), "{metrics}");
    assert!(
        metrics.contains("corral_connections_timed_out_total{phase=\"header\"}"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_cap_refuses_and_idle_connections_close() {
    let s = TestServer::start_with(Db::Sqlite, |c| {
        c.server.max_connections = 6;
        c.server.idle_timeout = 2;
    })
    .await;
    let addr = addr_of(&s);
    // A kept-alive connection answered once, then idle.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut idle).await.status, 200);
    let mut held = vec![idle];
    for _ in 0..5 {
        held.push(slow(addr).await);
    }
    let r = exchange(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let body = r.assert_json_error(503, "over the total cap");
    assert!(
        body["message"].as_str().unwrap().contains("max_connections"),
        "{body}"
    );
    let since = Instant::now();
    assert!(!closed_within(&mut held[0], Duration::from_millis(500)).await);
    assert!(
        closed_within(&mut held[0], Duration::from_secs(5)).await,
        "idle connection kept"
    );
    assert!(
        since.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        since.elapsed()
    );
    drop(held);
    // Places are freed when connections end (as soon as the server sees them close).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ping = s.anon(reqwest::Method::GET, "/ping").send().await.unwrap();
        if ping.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "places were not freed: {}",
            ping.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains("corral_connections_refused_total{reason=\"max_connections\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("corral_connections_timed_out_total{phase=\"idle\"}"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_gets_413_before_it_is_sent() {
    let s = TestServer::start(Db::Sqlite).await;
    let addr = addr_of(&s);
    // Headers only: the body is never sent, the answer must come anyway.
    let head = format!(
        "POST /v2/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BOOTSTRAP_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
    );
    let r = exchange(addr, head.as_bytes()).await;
    let body = r.assert_json_error(413, "declared body");
    assert_eq!(body["message"], "Request body exceeds 4194304 bytes.");
    // Without credentials too: nothing is read before the check.
    let r = exchange(
        addr,
        b"PUT /v2/profile HTTP/1.1\r\nHost: x\r\nContent-Length: 4194305\r\n\r\n",
    )
    .await;
    r.assert_json_error(413, "declared body, anonymous");
    // At the limit the request goes on as usual (here: to authentication).
    let r = exchange(
        addr,
        b"PUT /v2/profile HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    r.assert_json_error(401, "small body");
    s.stop().await;
}

/// A body that stalls halfway gets a 408 after `server.body_read_timeout`, and the connection
/// closes: a client sending a byte a minute holds nothing for long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_the_connection_closes() {
    let s = TestServer::start_with(Db::Sqlite, |c| c.server.body_read_timeout = 1).await;
    let addr = addr_of(&s);
    let started = Instant::now();
    let head = format!(
        "PUT /v3/namespaces/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BOOTSTRAP_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"descr"
    );
    let r = exchange(addr, head.as_bytes()).await;
    let body = r.assert_json_error(408, "stalled body");
    assert_eq!(body["message"], "The request body did not arrive within 1 s.");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Nothing was created from the half body.
    let resp = s
        .root(reqwest::Method::GET, "/v3/namespaces/slow")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_below_the_router_are_json_with_a_request_id() {
    let s = TestServer::start(Db::Sqlite).await;
    let addr = addr_of(&s);
    let long_uri = format!("GET /v2/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000));
    let huge_uri = format!("GET /v2/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(80_000));
    let big_header = format!(
        "GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "v".repeat(70_000)
    );
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many_headers = format!("GET /ping HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let cases: [(&str, &[u8], u16, &str); 11] = [
        ("long URI", long_uri.as_bytes(), 414, "URI Too Long"),
        (
            "URI over the head buffer",
            huge_uri.as_bytes(),
            414,
            "URI Too Long",
        ),
        (
            "large header",
            big_header.as_bytes(),
            431,
            "Request Header Fields Too Large",
        ),
        (
            "too many headers",
            many_headers.as_bytes(),
            431,
            "Request Header Fields Too Large",
        ),
        ("bad request line", b"GET\r\n\r\n", 400, "Bad Request"),
        (
            "bad method",
            b"G(T /ping HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "Bad Request",
        ),
        (
            "bad version",
            b"GET /ping HTTP/7.0\r\nHost: x\r\n\r\n",
            400,
            "Bad Request",
        ),
        (
            "control character in a header",
            b"GET /ping HTTP/1.1\r\nHost: x\r\nX-A: a\x07b\r\n\r\n",
            400,
            "Bad Request",
        ),
        (
            "bad Content-Length",
            b"POST /v2/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 12ab\r\n\r\n",
            400,
            "Bad Request",
        ),
        (
            "conflicting Content-Length",
            b"POST /v2/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            400,
            "Bad Request",
        ),
        (
            "unsupported Transfer-Encoding",
            b"POST /v2/tenants HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            "Bad Request",
        ),
    ];
    for (what, bytes, status, reason) in cases {
        let r = exchange(addr, bytes).await;
        let body = r.assert_json_error(status, what);
        assert_eq!(body["error"], reason, "{what}");
    }
    // The same on a kept-alive connection, after a good request (with a body).
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"PUT /v2/profile HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    read_answer(&mut c).await.assert_json_error(401, "first request");
    c.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut c).await.status, 200);
    c.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-A: \x01\r\n\r\n")
        .await
        .unwrap();
    read_answer(&mut c)
        .await
        .assert_json_error(400, "third request, malformed");
    assert!(closed_within(&mut c, Duration::from_secs(5)).await);
    // A chunked body still works (and the request after it is left to hyper).
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"PUT /v2/profile HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    read_answer(&mut c)
        .await
        .assert_json_error(401, "chunked request");
    s.stop().await;
}

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `corral serve` with human logs on a pipe, on a SQLite data dir.
fn spawn_human(data: &Path, envs: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "human",
        "--data-dir",
    ])
    .arg(data)
    .env_remove("CORRAL_BOOTSTRAP_KEY")
    .env_remove("CORRAL_DATA_DIR_PERMISSIONS")
    .env("CORRAL_LOG", "info")
    .env("CORRAL_BOOTSTRAP_KEY", BOOTSTRAP_KEY);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's log lines until one says it serves; answers its address and the lines.
fn wait_serving(child: &mut std::process::Child) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains("corral is serving")
                && let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr="))
            {
                seen.push(line.clone());
                let (ltx, lrx) = std::sync::mpsc::channel();
                for l in seen {
                    ltx.send(l).unwrap();
                }
                std::thread::spawn(move || {
                    while let Ok(l) = rx.recv() {
                        if ltx.send(l).is_err() {
                            break;
                        }
                    }
                });
                return (addr.to_string(), lrx);
            }
            seen.push(line);
        }
    }
    panic!("corral did not start: {seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_at_rest_are_private_and_an_open_data_dir_is_refused_or_fixed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Refused, naming the dir and the problem.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("CORRAL_DATA_DIR_PERMISSIONS")
        .env("CORRAL_BOOTSTRAP_KEY", BOOTSTRAP_KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&data.display().to_string())
            && stderr.contains("0755")
            && stderr.contains("group or others"),
        "{stderr}"
    );
    assert!(!data.join("corral.db").exists(), "the store was touched");
    assert_eq!(mode(&data), 0o755);
    // Fixed on request, with a warning; every file it writes is the owner's only.
    let mut child = spawn_human(&data, &[("CORRAL_DATA_DIR_PERMISSIONS", "fix")]);
    let (addr, logs) = wait_serving(&mut child);
    assert_eq!(mode(&data), 0o700);
    // A write, so that SQLite has its -wal and -shm files.
    let c = reqwest::Client::new();
    let resp = c
        .post(format!("http://{addr}/v2/tenants"))
        .bearer_auth(BOOTSTRAP_KEY)
        .json(&serde_json::json!({"tenant": {"name": "modes", "workers": 0}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for want in [
        "corral.db",
        "corral.db-wal",
        "corral.db-shm",
        "server.key",
        "node-id",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    for name in &names {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let log: Vec<String> = logs.try_iter().collect();
    let log = log.join("\n");
    assert!(log.contains("data dir was open to group or others"), "{log}");
    // Logs on a pipe carry no colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape in a non-terminal log: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_slow_heads_are_cut_and_connections_over_the_cap_closed() {
    let certs = tempfile::tempdir().unwrap();
    let tls = crate::helpers::TestTls::new(certs.path());
    let s = TestServer::start_with(Db::Sqlite, |c| {
        c.tls_cert = Some(tls.cert.clone());
        c.tls_key = Some(tls.key.clone());
        c.server.header_read_timeout = 2;
        c.server.max_connections_per_peer = 3;
    })
    .await;
    let addr = addr_of(&s);
    let connect = || tls.connect(addr);
    // A whole request is served over TLS, and a malformed head gets the JSON error.
    let mut tls = connect().await.unwrap();
    tls.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap();
    assert_eq!(Raw::parse(&out).status, 200);
    let mut tls = connect().await.unwrap();
    tls.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nX-A: \x02\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    Raw::parse(&out).assert_json_error(400, "malformed head over TLS");
    drop(tls);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Three slow heads fill the peer's places; a fourth connection is closed without a handshake.
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut t = connect().await.unwrap();
        t.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        held.push(t);
    }
    let refused = tokio::time::timeout(Duration::from_secs(5), connect())
        .await
        .expect("the refused handshake ends at once");
    assert!(
        refused.is_err(),
        "a connection over the cap completed its handshake"
    );
    // The slow heads are cut at the header timeout.
    for (i, t) in held.iter_mut().enumerate() {
        let mut b = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(5), t.read(&mut b))
            .await
            .unwrap_or_else(|_| panic!("slow TLS connection {i} still open"));
        assert!(!matches!(r, Ok(n) if n > 0), "{i}: unexpected bytes");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}
