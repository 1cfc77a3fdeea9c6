//! The real `corral` binary as an operator runs it: first-start bootstrap and its key file,
//! refusing a short configured key, JSON logs with request ids, graceful shutdown on SIGTERM
//! with a request in flight, HTTPS, `--help`, and the committed OpenAPI document.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::both_stores;
use crate::harness::{Db, expect_json, fresh_database};
use crate::helpers::IntoReq;

/// A `corral serve` child process whose JSON log lines are collected.
pub(crate) struct Proc {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    pub(crate) addr: String,
}

impl Proc {
    pub(crate) fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Result<Proc, (Option<i32>, String)> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args);
        cmd.env_remove("CORRAL_BOOTSTRAP_KEY").env("CORRAL_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn corral");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let addr = logs.lock().unwrap().iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["message"] == "corral is serving")
                    .then(|| v["addr"].as_str().map(str::to_string))
                    .flatten()
            });
            if let Some(addr) = addr {
                return Ok(Proc { child, logs, addr });
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err((status.code(), logs.lock().unwrap().join("\n")));
            }
            assert!(
                Instant::now() < deadline,
                "corral did not start: {:?}",
                logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// Waits for the exit code after a signal was sent.
    pub(crate) fn terminate_after_signal(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the log reader drain the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status.code(), self.log_text());
            }
            assert!(Instant::now() < deadline, "corral did not exit after the signal");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub(crate) fn terminate(self) -> (Option<i32>, String) {
        self.signal("-TERM");
        self.terminate_after_signal()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn first_start_writes_one_key_once(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(db, dir.path()).await;
    let data = dir.path().join("data");
    let args = ["--data-dir", data.to_str().unwrap(), "--database-url", &url];
    let p = Proc::spawn(&args, &[]).unwrap_or_else(|e| panic!("start failed: {e:?}"));
    let key_file = data.join("bootstrap-key");
    let key = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    assert!(key.starts_with("crk_") && key.len() == 47, "{key}");
    #[cfg(unix)]
    assert_eq!(mode(&key_file), 0o600);
    let c = client();
    let tenants = c
        .get(p.url("/v2/tenants"))
        .bearer_auth(&key)
        .into_req()
        .ok()
        .await;
    assert_eq!(tenants[0]["name"], "superadmin");
    assert_eq!(tenants[0]["workers"], 10);
    let (code, logs) = p.terminate();
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        logs.contains(key_file.to_str().unwrap()),
        "the log names the key file: {logs}"
    );
    assert!(!logs.contains(&key), "the key itself was logged");

    // A second start on the same store creates nothing.
    let p = Proc::spawn(&args, &[]).unwrap_or_else(|e| panic!("restart failed: {e:?}"));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
    let keys = c
        .get(p.url("/v2/users/admin/apikeys"))
        .bearer_auth(&key)
        .into_req()
        .ok()
        .await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    // Even after that key is deleted, a restart does not mint another.
    let new_key = {
        let resp = c
            .post(p.url("/v2/users/admin/apikeys"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        expect_json(resp, StatusCode::CREATED).await["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first_id = keys[0]["id"].as_str().unwrap();
    c.delete(p.url(&format!("/v2/users/admin/apikeys/{first_id}")))
        .bearer_auth(&new_key)
        .into_req()
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(p.terminate().0, Some(0));
    let p = Proc::spawn(&args, &[]).unwrap_or_else(|e| panic!("restart failed: {e:?}"));
    assert_eq!(
        c.get(p.url("/v2/users/admin/apikeys"))
            .bearer_auth(&new_key)
            .into_req()
            .ok()
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    c.get(p.url("/v2/tenants"))
        .bearer_auth(&key)
        .into_req()
        .expect_status(StatusCode::UNAUTHORIZED)
        .await;
}

async fn configured_bootstrap_key(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(db, dir.path()).await;
    let data = dir.path().join("data");
    let args = ["--data-dir", data.to_str().unwrap(), "--database-url", &url];
    let err = Proc::spawn(&args, &[("CORRAL_BOOTSTRAP_KEY", "too-short-key")])
        .err()
        .expect("must refuse");
    assert_ne!(err.0, Some(0));
    assert!(err.1.contains("at least 32"), "{}", err.1);
    assert!(!data.join("bootstrap-key").exists());
    let key = "operator-chosen-key-0123456789-abcdef";
    let p = Proc::spawn(&args, &[("CORRAL_BOOTSTRAP_KEY", key)]).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        std::fs::read_to_string(data.join("bootstrap-key"))
            .unwrap()
            .trim(),
        key
    );
    client()
        .get(p.url("/v3/namespaces/default"))
        .bearer_auth(key)
        .into_req()
        .expect_status(StatusCode::OK)
        .await;
    let (code, logs) = p.terminate();
    assert_eq!(code, Some(0));
    assert!(!logs.contains(key), "the configured key was logged");
}

fn sqlite_proc(dir: &Path, extra: &[&str]) -> Proc {
    let data = dir.join("data");
    let mut args = vec!["--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    Proc::spawn(&args, &[("CORRAL_BOOTSTRAP_KEY", crate::harness::BOOTSTRAP_KEY)])
        .unwrap_or_else(|e| panic!("{e:?}"))
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let p = sqlite_proc(dir.path(), &[]);
    client()
        .get(p.url("/v3/namespaces/nope"))
        .bearer_auth(crate::harness::BOOTSTRAP_KEY)
        .header("x-request-id", "trace-7f3a")
        .into_req()
        .expect_status(StatusCode::NOT_FOUND)
        .await;
    let (_, logs) = p.terminate();
    let line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "request finished" && v["span"]["request_id"] == "trace-7f3a")
        .unwrap_or_else(|| panic!("no request line with the id: {logs}"));
    assert_eq!(line["status"], 404);
    assert_eq!(line["span"]["path"], "/v3/namespaces/nope");
    assert!(
        !logs.contains(crate::harness::BOOTSTRAP_KEY),
        "a key reached the log"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let p = sqlite_proc(dir.path(), &[]);
    let body = br#"{"theme": "dark", "note": "sent in two halves"}"#;
    let mut conn = TcpStream::connect(&p.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "PUT /v2/profile HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        crate::harness::BOOTSTRAP_KEY,
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    p.signal("-TERM");
    std::thread::sleep(Duration::from_millis(300));
    // Shutting down: new connections are no longer served.
    let refused = TcpStream::connect(&p.addr).and_then(|mut c| {
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        c.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut buf = [0u8; 16];
        c.read(&mut buf)
    });
    assert!(
        !matches!(refused, Ok(n) if n > 0),
        "a new request was served after SIGTERM"
    );
    // The request in flight still completes.
    conn.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("sent in two halves"), "{answer}");
    let (code, logs) = p.terminate_after_signal();
    assert_eq!(code, Some(0), "{logs}");
}

#[tokio::test]
async fn serves_https_with_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let p = sqlite_proc(
        dir.path(),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&p.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET /v3/namespaces/default HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
        .await
        .unwrap();
    tls.write_all(format!("Authorization: Bearer {}\r\n\r\n", crate::harness::BOOTSTRAP_KEY).as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("Default Namespace"), "{answer}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = client().get(p.url("/status")).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::OK);
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--data-dir",
        "--database-url",
        "--config",
        "--tls-cert",
        "--tls-key",
        "--log-format",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}: {help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("serve") && help.contains("openapi"), "{help}");
}

/// The committed contract (`openapi/corral.json`) must match what the code serves.
/// Regenerate with `CORRAL_UPDATE_OPENAPI=1 cargo test -p corral --test it openapi_document`.
#[test]
fn openapi_document_is_committed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/corral.json");
    let generated = corral_api::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var("CORRAL_UPDATE_OPENAPI").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/corral.json is out of date: run CORRAL_UPDATE_OPENAPI=1 cargo test -p corral --test it openapi_document"
    );
    // `corral openapi` prints the same document.
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("openapi")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), generated);
}

/// Kills Corral (SIGKILL) in the middle of a rolling upgrade of three hosts, starts it again
/// on the same store, and shows the operation finishes with every host's upgrade command run
/// exactly once, counted on the host side.
async fn a_killed_corral_finishes_the_upgrade_running_each_command_once(db: Db) {
    use base64::Engine;
    use corral_drivers::testing::{ClientKey, KeyFormat, KeyType, TestSshd, free_port, next_loopback};

    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    std::fs::create_dir(&trace).unwrap();
    let key = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap();
    let first = next_loopback();
    let port = free_port(first).unwrap();
    let hosts = [
        TestSshd::start_at(first, port, &[&key]).unwrap(),
        TestSshd::start_at(next_loopback(), port, &[&key]).unwrap(),
        TestSshd::start_at(next_loopback(), port, &[&key]).unwrap(),
    ];
    let addresses: Vec<String> = hosts.iter().map(|h| h.ip().to_string()).collect();
    let profile = format!(
        "bootstrap = \"true\"\nrestart = \"true\"\ndeploy = \"true\"\n\
         upgrade = \"sleep 1; echo upgraded >> {}/$CORRAL_TEST_HOST.upgrade\"\n",
        trace.display()
    );
    let config = dir.path().join("corral.toml");
    std::fs::write(
        &config,
        format!(
            "ssh_port = {port}\nhost_allow = [\"127.0.0.0/8\"]\nssh_connect_timeout = 5\njob_lease = 3\n\
             [os_profiles.debian]\n{profile}[os_profiles.ubuntu]\n{profile}"
        ),
    )
    .unwrap();
    let url = fresh_database(db, dir.path()).await;
    let data = dir.path().join("data");
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "--database-url",
        &url,
        "--config",
        config.to_str().unwrap(),
    ];
    let envs = [("CORRAL_BOOTSTRAP_KEY", crate::harness::BOOTSTRAP_KEY)];
    let p = Proc::spawn(&args, &envs).unwrap_or_else(|e| panic!("{e:?}"));
    let c = client();
    let root = crate::harness::BOOTSTRAP_KEY;
    let admin = c
        .post(p.url("/v2/tenants"))
        .bearer_auth(root)
        .json(&serde_json::json!({"tenant": {"name": "acme", "workers": 2}}))
        .into_req()
        .ok()
        .await["admin"]["apikey"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    c.put(p.url("/api/v0/cluster/c"))
        .bearer_auth(&admin)
        .into_req()
        .expect_status(StatusCode::CREATED)
        .await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key.private_key);
    for a in &addresses {
        c.put(p.url(&format!("/api/v0/host/{a}")))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"ssh_priv_key": b64, "cluster": "c"}))
            .into_req()
            .case(format!("{a:?}"))
            .expect_status(StatusCode::CREATED)
            .await;
    }
    let poll = |base: String, path: &'static str, done: fn(&Value) -> bool| {
        let (c, admin) = (c.clone(), admin.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let resp = c.get(format!("{base}{path}")).bearer_auth(&admin).send().await;
                if let Ok(resp) = resp
                    && resp.status() == StatusCode::OK
                {
                    let v: Value = resp.json().await.unwrap();
                    if done(&v) {
                        return v;
                    }
                }
                assert!(Instant::now() < deadline, "timed out polling {path}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let base = format!("http://{}", p.addr);
    poll(base.clone(), "/api/v0/cluster/c", |v| {
        v["hosts"]["available"] == 3
    })
    .await;
    c.put(p.url("/api/v0/cluster/c/upgrade"))
        .bearer_auth(&admin)
        .into_req()
        .expect_status(StatusCode::CREATED)
        .await;
    // Kill it while the second host's command runs.
    poll(base, "/api/v0/cluster/c/upgrade", |v| {
        v["upgraded"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.signal("-KILL");
    let (code, _) = p.terminate_after_signal();
    assert_eq!(code, None, "corral was killed by a signal");
    // A new process on the same store picks the operation up once the lease lapses.
    let p = Proc::spawn(&args, &envs).unwrap_or_else(|e| panic!("{e:?}"));
    let rec = poll(format!("http://{}", p.addr), "/api/v0/cluster/c/upgrade", |v| {
        v["status"] != "in_process"
    })
    .await;
    assert_eq!(rec["status"], "finished", "{rec}");
    assert_eq!(rec["upgraded"], serde_json::json!(addresses));
    for a in &addresses {
        let count = std::fs::read_to_string(trace.join(format!("{a}.upgrade")))
            .unwrap_or_default()
            .lines()
            .count();
        assert_eq!(count, 1, "host {a} ran its upgrade {count} times");
    }
    assert_eq!(p.terminate().0, Some(0));
}

both_stores!(
    first_start_writes_one_key_once,
    configured_bootstrap_key,
    a_killed_corral_finishes_the_upgrade_running_each_command_once,
);

/// `corral serve` on SQLite in `data`, able to run services (as `nobody` when the tests run
/// as root) whose health is checked from 100 ms on.
fn services_proc(data: &Path) -> Proc {
    let work = std::env::temp_dir().join("corral-it-services");
    let mut envs = vec![
        ("CORRAL_BOOTSTRAP_KEY", crate::harness::BOOTSTRAP_KEY.to_string()),
        ("CORRAL_SERVICE_WORK_DIR", work.display().to_string()),
        ("CORRAL_SERVICE_HEALTH_FIRST_INTERVAL_MS", "100".to_string()),
    ];
    if corral_drivers::running_as_root() {
        envs.push(("CORRAL_SERVICE_USER", "nobody".to_string()));
    }
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Proc::spawn(&["--data-dir", data.to_str().unwrap()], &envs).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Creates app `app` with one `corral-testsvc` service `svc` and starts it; answers the run id.
async fn start_testsvc(c: &reqwest::Client, p: &Proc, app: &str) -> String {
    let key = crate::harness::BOOTSTRAP_KEY;
    let body = serde_json::json!({"services": [{"name": "svc", "command": [crate::harness::testsvc()],
                                                "health_path": "/health"}]});
    c.put(p.url(&format!("/v3/namespaces/default/apps/{app}")))
        .bearer_auth(key)
        .json(&body)
        .into_req()
        .ok()
        .await;
    c.post(p.url(&format!("/v3/namespaces/default/apps/{app}/services/svc/start")))
        .bearer_auth(key)
        .into_req()
        .ok()
        .await["runid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `kill -9` of a server with a running service leaves the service's process behind; the next
/// start of the server on the same data dir kills that orphan, closes its run as FAILED and
/// starts the service again in a new run (cdap-v3.md 1.4).
#[tokio::test]
async fn a_killed_corral_leaves_no_orphan_service() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = services_proc(&data);
    let c = client();
    let key = crate::harness::BOOTSTRAP_KEY;
    let svc = "/v3/namespaces/default/apps/Shop/services/svc";
    let old_run = start_testsvc(&c, &p, "Shop").await;
    let procs = async |p: &Proc| -> Vec<Value> {
        let resp = c
            .get(p.url(&format!("{svc}/processes")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        expect_json(resp, StatusCode::OK)
            .await
            .as_array()
            .unwrap()
            .clone()
    };
    let old_pid = procs(&p).await[0]["pid"].as_u64().unwrap();
    p.signal("-KILL");
    let _ = p.terminate_after_signal();
    let alive =
        |pid: u64| std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(
        alive(old_pid),
        "the service died with the server; this test needs an orphan"
    );

    let p = services_proc(&data);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = procs(&p).await;
        if now.first().is_some_and(|i| i["healthy"] == true) {
            assert_ne!(now[0]["pid"].as_u64(), Some(old_pid));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service was not started again: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !alive(old_pid),
        "the orphan of the killed server is still running"
    );
    let runs = c
        .get(p.url(&format!("{svc}/runs")))
        .bearer_auth(key)
        .into_req()
        .ok()
        .await;
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let old = runs.iter().find(|r| r["runid"] == old_run.as_str()).unwrap();
    assert_eq!(old["status"], "FAILED");
    assert!(runs.iter().any(|r| r["status"] == "RUNNING"));
    let (code, logs) = p.terminate();
    assert_eq!(code, Some(0), "{logs}");
}

/// The server's peak resident memory, from /proc.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 100 MB up and 100 MB down through the method proxy of a real server: the bytes arrive intact
/// (hashed by the service, checked byte by byte here) and the server's peak memory stays flat,
/// so nothing was buffered whole (cdap-v3.md 6.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_streams_100_mb_each_way_in_flat_memory() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = services_proc(&data);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let key = crate::harness::BOOTSTRAP_KEY;
    let svc = "/v3/namespaces/default/apps/Echo/services/svc";
    start_testsvc(&c, &p, "Echo").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resp = c
            .get(p.url(&format!("{svc}/available")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the service never became available");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = p.child.id();
    let before = peak_rss_kb(pid);

    const SIZE: usize = 100 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut expected = Sha256::new();
    for _ in 0..SIZE / CHUNK {
        expected.update(&chunk);
    }
    let expected: String = expected.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let stream =
        futures_util::stream::iter((0..SIZE / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let echo = c
        .post(p.url(&format!("{svc}/methods/echo")))
        .bearer_auth(key)
        .body(reqwest::Body::wrap_stream(stream))
        .into_req()
        .ok()
        .await;
    assert_eq!(echo["body_len"], SIZE as u64);
    assert_eq!(echo["body_sha256"], expected.as_str());

    let mut resp = c
        .get(p.url(&format!("{svc}/methods/download?bytes={SIZE}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut at: usize = 0;
    while let Some(piece) = resp.chunk().await.unwrap() {
        for (j, b) in piece.iter().enumerate() {
            assert_eq!(*b as usize, (at + j) % 251, "byte {}", at + j);
        }
        at += piece.len();
    }
    assert_eq!(at, SIZE);
    let grown_mb = peak_rss_kb(pid).saturating_sub(before) / 1024;
    assert!(
        grown_mb < 32,
        "the server's peak memory grew by {grown_mb} MB while 200 MB went through its proxy"
    );
    let (code, logs) = p.terminate();
    assert_eq!(code, Some(0), "{logs}");
}
