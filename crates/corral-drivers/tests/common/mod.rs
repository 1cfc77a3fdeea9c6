//! What the QEMU tests (`tests/qemu.rs`, `tests/qemu_cloud.rs`) share: the test guest, a
//! temporary directory whose QEMU processes are killed whatever the test did, and readers of
//! what the guest prints and serves.
//!
//! The guest directory comes from `CORRAL_TEST_GUEST_DIR`, else `scripts/guest-image.sh` builds
//! it into `target/guest`. The accelerator is `auto` (so the KVM probe is exercised) unless
//! `CORRAL_TEST_QEMU_ACCEL` says `kvm` or `tcg`. Deadlines are generous: under TCG on a loaded
//! 2-core machine a boot can take ten times its usual 3 s.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corral_drivers::qemu::Accel;
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deadline for a guest boot (or any guest reaction) under TCG on a busy machine.
pub const BOOT: Duration = Duration::from_secs(120);

/// The guest directory, built once per test binary when not given.
pub fn guest_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("CORRAL_TEST_GUEST_DIR") {
            return PathBuf::from(d);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let root = std::fs::canonicalize(root).unwrap();
        let out = root.join("target/guest");
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/guest-image.sh"))
            .arg(&out)
            .status()
            .expect("run scripts/guest-image.sh");
        assert!(status.success(), "scripts/guest-image.sh failed");
        out
    })
    .clone()
}

/// The accelerator the tests run with (`CORRAL_TEST_QEMU_ACCEL`, default `auto`).
pub fn test_accel() -> Accel {
    match std::env::var("CORRAL_TEST_QEMU_ACCEL").as_deref() {
        Ok("kvm") => Accel::Kvm,
        Ok("tcg") => Accel::Tcg,
        _ => Accel::Auto,
    }
}

/// A test's own temporary directory (short, for the QMP socket paths below it); on drop every
/// QEMU process whose command line names it is killed, whatever the test did.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub guest: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            tmp: tempfile::Builder::new().prefix("cq").tempdir().unwrap(),
            guest: guest_dir(),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let needle = self.tmp.path().to_string_lossy().into_owned();
        for pid in pids_mentioning(&needle) {
            if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(p, Signal::KILL);
            }
        }
    }
}

/// Live (non-zombie) processes whose command line mentions `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// True while `pid` exists and is not a zombie (PID 1 of a container may never reap QEMU's
/// daemonized processes).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `pid` is gone.
pub async fn wait_gone(pid: u32) {
    let until = Instant::now() + BOOT;
    while alive(pid) {
        assert!(Instant::now() < until, "QEMU {pid} still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `corral-guest: up` lines so far.
pub fn up_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("corral-guest: up "))
        .map(str::to_string)
        .collect()
}

/// A `key=value` field of a console line.
pub fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

/// The image name printed by the last boot.
pub fn last_image(text: &str) -> String {
    text.lines()
        .rev()
        .find_map(|l| l.split("corral-guest: image=").nth(1))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Waits until the console (as `read` answers it) shows `n` boots; answers the last `up` line.
pub async fn wait_boots<F, Fut>(read: F, what: &str, n: usize) -> String
where
    F: Fn() -> Fut,
    Fut: Future<Output = String>,
{
    let until = Instant::now() + BOOT;
    loop {
        let text = read().await;
        let ups = up_lines(&text);
        if ups.len() >= n {
            assert_eq!(ups.len(), n, "more boots than expected:\n{text}");
            return ups[n - 1].clone();
        }
        assert!(
            Instant::now() < until,
            "no boot #{n} of {what} within {BOOT:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `GET /` against the forwarded port, retried until it answers 200 (the guest's httpd starts
/// just before it prints `up`; slirp may accept before the guest answers).
pub async fn http_get(addr: SocketAddr) -> String {
    let until = Instant::now() + BOOT;
    loop {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n").await?;
            let mut body = Vec::new();
            s.read_to_end(&mut body).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&body).into_owned())
        };
        if let Ok(Ok(body)) = tokio::time::timeout(Duration::from_secs(10), attempt).await
            && body.starts_with("HTTP/1.")
            && body.contains(" 200 ")
        {
            return body;
        }
        assert!(Instant::now() < until, "no HTTP answer from {addr}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The backing file `qemu-img` reads in an image's header.
pub fn backing_of(file: &Path) -> Option<String> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["backing-filename"].as_str().map(str::to_string)
}
