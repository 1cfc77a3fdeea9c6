//! The QEMU driver against real QEMU and the real test guest (`scripts/guest-image.sh`): every
//! step is checked against what QEMU reports over QMP and what the guest prints on its serial
//! console or serves over HTTP.
//!
//! The guest directory comes from `CORRAL_TEST_GUEST_DIR`, else the script builds it into
//! `target/guest`. The accelerator is `auto` (so the KVM probe is exercised) unless
//! `CORRAL_TEST_QEMU_ACCEL` says `kvm` or `tcg`. Deadlines are generous: under TCG on a loaded
//! 2-core machine a boot can take ten times its usual 3 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corral_drivers::qemu::{
    Accel, Hypervisor, QemuConfig, QemuHypervisor, Rebooted, Stopped, VmSpec, VmState,
};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deadline for a guest boot (or any guest reaction) under TCG on a busy machine.
const BOOT: Duration = Duration::from_secs(120);

/// The guest directory, built once per test binary when not given.
fn guest_dir() -> PathBuf {
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

/// A test's own state directory; on drop every QEMU process whose command line names it is
/// killed, whatever the test did.
struct Fixture {
    tmp: tempfile::TempDir,
    guest: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            tmp: tempfile::Builder::new().prefix("cq").tempdir().unwrap(),
            guest: guest_dir(),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("vms")
    }

    fn config(&self) -> QemuConfig {
        let mut c = QemuConfig::new(&self.guest, self.state_dir());
        c.accel = match std::env::var("CORRAL_TEST_QEMU_ACCEL").as_deref() {
            Ok("kvm") => Accel::Kvm,
            Ok("tcg") => Accel::Tcg,
            _ => Accel::Auto,
        };
        c.shutdown_timeout = BOOT;
        c
    }

    fn driver(&self) -> QemuHypervisor {
        QemuHypervisor::new(self.config()).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let needle = self.tmp.path().to_string_lossy().into_owned();
        for pid in qemu_pids_under(&needle) {
            if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(p, Signal::KILL);
            }
        }
    }
}

/// Live (non-zombie) processes whose command line mentions `needle`.
fn qemu_pids_under(needle: &str) -> Vec<u32> {
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
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn spec(id: &str, image: &str, vcpus: u32, ram_mb: u64) -> VmSpec {
    VmSpec {
        id: id.into(),
        name: format!("vm-{}", &id[..8]),
        vcpus,
        ram_mb,
        image: PathBuf::from(image),
    }
}

async fn console(hv: &QemuHypervisor, id: &str) -> String {
    String::from_utf8_lossy(&hv.console(id, 1 << 20).await.unwrap()).into_owned()
}

/// The `corral-guest: up` lines so far.
fn up_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("corral-guest: up "))
        .map(str::to_string)
        .collect()
}

/// A `key=value` field of a console line.
fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

/// Waits until the console shows `n` boots; answers the last `up` line.
async fn wait_boots(hv: &QemuHypervisor, id: &str, n: usize) -> String {
    let until = Instant::now() + BOOT;
    loop {
        let text = console(hv, id).await;
        let ups = up_lines(&text);
        if ups.len() >= n {
            assert_eq!(ups.len(), n, "more boots than expected:\n{text}");
            return ups[n - 1].clone();
        }
        assert!(
            Instant::now() < until,
            "no boot #{n} of {id} within {BOOT:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The image name printed by the last boot.
fn last_image(text: &str) -> String {
    text.lines()
        .rev()
        .find_map(|l| l.split("corral-guest: image=").nth(1))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `GET /` against the forwarded port, retried until it answers 200 (the guest's httpd starts
/// just before it prints `up`; slirp may accept before the guest answers).
async fn http_get(addr: std::net::SocketAddr) -> String {
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

async fn wait_gone(pid: u32) {
    let until = Instant::now() + BOOT;
    while alive(pid) {
        assert!(Instant::now() < until, "QEMU {pid} still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn backing_of(file: &Path) -> Option<String> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["backing-filename"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vm_through_its_whole_lifecycle() {
    let fx = Fixture::new();
    let hv = fx.driver();
    let t0 = Instant::now();
    let id = "0b0e5c1e-1111-4c1e-9a55-000000000001";

    // Base images are listed with checksums.
    let images = hv.base_images().await.unwrap();
    let names: Vec<_> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["debian-tiny-b.qcow2", "debian-tiny.qcow2"]);
    assert!(images.iter().all(|i| i.sha256.len() == 64 && i.size_bytes > 0));
    assert_ne!(images[0].sha256, images[1].sha256);

    // Invalid ids never reach the file system.
    let bad = VmSpec {
        id: "../etc".into(),
        ..spec(id, "debian-tiny.qcow2", 1, 256)
    };
    assert!(hv.create(&bad).await.is_err());

    // create
    let info = hv.create(&spec(id, "debian-tiny.qcow2", 1, 256)).await.unwrap();
    assert_eq!(info.state, VmState::Running);
    assert_eq!(info.vcpus, Some(1));
    assert_eq!(info.ram_mb, Some(256));
    let base_a = std::fs::canonicalize(fx.guest.join("debian-tiny.qcow2")).unwrap();
    assert_eq!(info.backing_file.as_deref(), Some(base_a.as_path()));
    let pid1 = info.pid.unwrap();
    let up = wait_boots(&hv, id, 1).await;
    eprintln!("first boot after {:?} ({:?})", t0.elapsed(), info.accel);
    assert_eq!(field(&up, "vcpus"), "1");
    let mem_kb: u64 = field(&up, "mem_kb").parse().unwrap();
    assert!((180_000..=262_144).contains(&mem_kb), "{up}");
    assert_eq!(field(&up, "boot"), "1");
    assert_eq!(last_image(&console(&hv, id).await), "debian-tiny");
    let page = http_get(info.address.unwrap()).await;
    assert!(page.contains("image=debian-tiny\n"), "{page}");
    assert!(page.contains("hostname=vm-0b0e5c1e"), "{page}");

    // pause / unpause
    hv.pause(id).await.unwrap();
    assert_eq!(hv.inspect(id).await.unwrap().state, VmState::Paused);
    hv.unpause(id).await.unwrap();
    assert_eq!(hv.inspect(id).await.unwrap().state, VmState::Running);

    // reboot: the guest's own, through Ctrl-Alt-Del
    assert_eq!(hv.reboot(id).await.unwrap(), Rebooted::Guest);
    let up = wait_boots(&hv, id, 2).await;
    assert_eq!(field(&up, "boot"), "2");
    assert!(console(&hv, id).await.contains("corral-guest: going down"));

    // hard reboot: a reset, no shutdown in the guest
    hv.hard_reboot(id).await.unwrap();
    let up = wait_boots(&hv, id, 3).await;
    assert_eq!(field(&up, "boot"), "3");
    assert_eq!(hv.inspect(id).await.unwrap().pid, Some(pid1));

    // suspend: state saved, process gone
    let boot_id = field(&up, "boot_id");
    hv.suspend(id).await.unwrap();
    wait_gone(pid1).await;
    let info = hv.inspect(id).await.unwrap();
    assert_eq!(info.state, VmState::Suspended);
    assert_eq!(info.pid, None);
    let dir = hv.instance_dir(id).unwrap();
    assert!(std::fs::metadata(dir.join("vmstate")).unwrap().len() > 0);
    assert!(hv.start(&spec(id, "debian-tiny.qcow2", 1, 256)).await.is_err());

    // resume: the same boot goes on
    let info = hv.resume(id).await.unwrap();
    assert_eq!(info.state, VmState::Running);
    assert_ne!(info.pid, Some(pid1));
    assert!(!dir.join("vmstate").exists());
    let page = http_get(info.address.unwrap()).await;
    assert!(page.contains(&format!("boot_id={boot_id}")), "{page}");
    assert!(page.contains("boot=3\n"), "{page}");
    assert_eq!(up_lines(&console(&hv, id).await).len(), 3);

    // resize: cold, with the new shape seen by QEMU and by the guest
    let info = hv.resize(&spec(id, "debian-tiny.qcow2", 2, 384)).await.unwrap();
    assert_eq!(info.vcpus, Some(2));
    assert_eq!(info.ram_mb, Some(384));
    let up = wait_boots(&hv, id, 4).await;
    assert_eq!(field(&up, "vcpus"), "2");
    let mem_kb2: u64 = field(&up, "mem_kb").parse().unwrap();
    assert!(mem_kb2 > mem_kb + 100_000, "{up}");
    assert_eq!(field(&up, "boot"), "4");

    // rebuild on image b: a fresh disk
    let info = hv
        .rebuild(&spec(id, "debian-tiny-b.qcow2", 2, 384))
        .await
        .unwrap();
    let base_b = std::fs::canonicalize(fx.guest.join("debian-tiny-b.qcow2")).unwrap();
    assert_eq!(info.backing_file.as_deref(), Some(base_b.as_path()));
    let up = wait_boots(&hv, id, 5).await;
    assert_eq!(field(&up, "boot"), "1");
    assert_eq!(last_image(&console(&hv, id).await), "debian-tiny-b");

    // snapshot: standalone, and bootable
    let snap = fx.tmp.path().join("snap.qcow2");
    hv.snapshot(id, &snap).await.unwrap();
    assert_eq!(backing_of(&snap), None);
    assert_eq!(hv.inspect(id).await.unwrap().state, VmState::Running);
    let id2 = "0b0e5c1e-2222-4c1e-9a55-000000000002";
    let snap_spec = spec(id2, snap.to_str().unwrap(), 1, 256);
    let info2 = hv.create(&snap_spec).await.unwrap();
    assert_eq!(info2.backing_file.as_deref(), Some(snap.as_path()));
    let up2 = wait_boots(&hv, id2, 1).await;
    assert_eq!(last_image(&console(&hv, id2).await), "debian-tiny-b");
    // The snapshot carries the disk's boot counter: this is its second boot.
    assert_eq!(field(&up2, "boot"), "2");
    hv.delete(id2).await.unwrap();
    wait_gone(info2.pid.unwrap()).await;

    // shutdown: the guest powers off by itself on the ACPI button
    let pid = hv.inspect(id).await.unwrap().pid.unwrap();
    assert_eq!(hv.shutdown(id).await.unwrap(), Stopped::Clean);
    assert!(!alive(pid));
    let text = console(&hv, id).await;
    assert!(text.contains("corral-guest: power button"), "{text}");
    let info = hv.inspect(id).await.unwrap();
    assert_eq!(info.state, VmState::Shutoff);
    assert_eq!(info.backing_file.as_deref(), Some(base_b.as_path()));
    assert_eq!(hv.shutdown(id).await.unwrap(), Stopped::AlreadyStopped);

    // start again
    let info = hv.start(&spec(id, "debian-tiny-b.qcow2", 2, 384)).await.unwrap();
    assert_eq!(info.state, VmState::Running);
    let up = wait_boots(&hv, id, 6).await;
    assert_eq!(field(&up, "boot"), "2");

    // rename is metadata
    hv.rename(id, "renamed").await.unwrap();
    assert_eq!(hv.inspect(id).await.unwrap().name, "renamed");

    // delete: process and directory gone; again is fine
    let pid = info.pid.unwrap();
    hv.delete(id).await.unwrap();
    wait_gone(pid).await;
    assert!(!dir.exists());
    hv.delete(id).await.unwrap();
    assert!(hv.inspect(id).await.is_err());
    eprintln!("lifecycle done in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_outlive_the_driver_and_are_reattached() {
    let fx = Fixture::new();
    let id = "0b0e5c1e-3333-4c1e-9a55-000000000003";
    let pid = {
        let hv = fx.driver();
        let info = hv.create(&spec(id, "debian-tiny.qcow2", 1, 192)).await.unwrap();
        wait_boots(&hv, id, 1).await;
        info.pid.unwrap()
        // the driver is dropped here
    };
    assert!(alive(pid));

    let hv = fx.driver();
    let all = hv.attach_all().await.unwrap();
    assert_eq!(all.len(), 1);
    let (got_id, info) = &all[0];
    assert_eq!(got_id, id);
    let info = info.as_ref().unwrap();
    assert_eq!(info.state, VmState::Running);
    assert_eq!(info.pid, Some(pid));
    assert_eq!(info.ram_mb, Some(192));
    let page = http_get(info.address.unwrap()).await;
    assert!(page.contains("image=debian-tiny\n"), "{page}");

    // Still under control.
    hv.pause(id).await.unwrap();
    assert_eq!(hv.attach(id).await.unwrap().state, VmState::Paused);
    hv.unpause(id).await.unwrap();
    hv.delete(id).await.unwrap();
    wait_gone(pid).await;
    assert!(hv.attach_all().await.unwrap().is_empty());
}
