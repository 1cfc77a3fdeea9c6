//! Perspective instances and images on the real `qemu` cloud, through Corral's HTTP API only
//! (perspective.md 2.1, 3.3, 3.5, 5, 6, 7.3): every action is checked against what QEMU itself
//! reports (a `QemuCloud` opened by the test on the server's state directory) and, where it
//! tells something, against what the guest prints on its console or serves on its address.
//! Then a restart of Corral: running VMs are re-attached, and a VM that died meanwhile is
//! reconciled.
//!
//! The guest comes from `CORRAL_TEST_GUEST_DIR`, else `scripts/guest-image.sh` builds it into
//! `target/guest`; the accelerator is `CORRAL_TEST_QEMU_ACCEL` (`kvm`, `tcg`; default `auto`).
//! SQLite only: QEMU boots are the cost, the store adds nothing the mock tests do not cover.
//! Every QEMU process a test started is killed when its fixture drops, whatever happened.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corral_core::clouds::{CloudConfig, CloudOptions, FlavorConfig, object_id};
use corral_drivers::CloudDriver;
use corral_drivers::qemu::{Accel, Hypervisor, QemuCloud, QemuCloudOptions, VmInfo, VmState};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Db, TestServer, expect_json};

/// Deadline for a boot, or any guest reaction, under TCG on a loaded 2-core machine.
const BOOT: Duration = Duration::from_secs(180);

/// The guest directory, built once per test binary when not given.
fn guest_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("CORRAL_TEST_GUEST_DIR") {
            return PathBuf::from(d);
        }
        let root = std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap();
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

/// `CORRAL_TEST_QEMU_ACCEL` as the cloud option spells it.
fn accel() -> &'static str {
    match std::env::var("CORRAL_TEST_QEMU_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        Ok("tcg") => "tcg",
        _ => "auto",
    }
}

/// A test's QEMU cloud: a short temporary directory (`/tmp/cqXXXXXX/s` is the state dir, far
/// below the 29-byte limit of QMP socket paths); on drop every process whose command line
/// names it is killed.
struct Vms {
    tmp: tempfile::TempDir,
    guest: PathBuf,
}

impl Vms {
    fn new() -> Vms {
        Vms {
            tmp: tempfile::Builder::new().prefix("cq").tempdir_in("/tmp").unwrap(),
            guest: guest_dir(),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("s")
    }

    /// The shared cloud `local`: flavors `tiny` (1 vCPU, 256 MiB) and `bigger` (2, 384).
    fn cloud_config(&self) -> CloudConfig {
        let flavor = |name: &str, vcpus, ram| FlavorConfig {
            name: name.into(),
            ram,
            vcpus,
            root_disk: 1,
            ephemeral_disk: 0,
            has_swap: false,
            is_public: true,
            notes: String::new(),
        };
        CloudConfig {
            id: corral_types::CloudId::from_trusted("local"),
            name: Some("Local QEMU".into()),
            tenant: None,
            kind: corral_types::CloudKind::from_trusted("qemu"),
            enabled: true,
            endpoint: None,
            identity: None,
            credential: None,
            options: CloudOptions {
                driver: json!({
                    "image_dir": self.guest,
                    "state_dir": self.state_dir(),
                    "accel": accel(),
                    "shutdown_timeout_secs": BOOT.as_secs(),
                })
                .as_object()
                .cloned()
                .unwrap(),
                flavors: vec![flavor("tiny", 1, 256), flavor("bigger", 2, 384)],
                availability_zones: vec!["here".into()],
                ..CloudOptions::default()
            },
        }
    }

    /// The test's own view of the same state directory: what QEMU reports.
    fn qemu(&self) -> QemuCloud {
        let mut o = QemuCloudOptions::new(&self.guest, self.state_dir());
        o.accel = Accel::Tcg;
        QemuCloud::new(o).unwrap()
    }
}

impl Drop for Vms {
    fn drop(&mut self) {
        let needle = self.tmp.path().to_string_lossy().into_owned();
        for pid in pids_mentioning(&needle) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

/// Live (non-zombie) processes whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<u32> {
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

/// True while `pid` exists and is not a zombie (QEMU daemonizes; PID 1 of a container may never
/// reap it).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

async fn wait_gone(pid: u32) {
    let until = Instant::now() + BOOT;
    while alive(pid) {
        assert!(Instant::now() < until, "QEMU {pid} still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids a tenant sees in the `local` cloud (clients read them with `POST /query`).
struct Ids {
    project: String,
    tiny: String,
    bigger: String,
    image_a: String,
    image_b: String,
}

async fn ids(s: &TestServer, tenant: &str) -> Ids {
    let t = s.store.get_tenant(tenant).await.unwrap().unwrap().id;
    Ids {
        project: object_id(
            &t,
            &corral_types::CloudId::from_trusted("local"),
            "project",
            t.as_str(),
        ),
        tiny: object_id(
            &t,
            &corral_types::CloudId::from_trusted("local"),
            "flavor",
            "tiny",
        ),
        bigger: object_id(
            &t,
            &corral_types::CloudId::from_trusted("local"),
            "flavor",
            "bigger",
        ),
        image_a: object_id(
            &t,
            &corral_types::CloudId::from_trusted("local"),
            "image",
            "base:debian-tiny.qcow2",
        ),
        image_b: object_id(
            &t,
            &corral_types::CloudId::from_trusted("local"),
            "image",
            "base:debian-tiny-b.qcow2",
        ),
    }
}

/// A server with the `local` cloud of `vms`; with `reuse`, on that database and data dir.
async fn server(vms: &Vms, reuse: Option<(String, PathBuf)>) -> TestServer {
    let cloud = vms.cloud_config();
    TestServer::start_with(Db::Sqlite, move |c| {
        c.clouds = vec![cloud];
        if let Some((db, dir)) = reuse {
            c.database_url = Some(db);
            c.data_dir = dir;
        }
    })
    .await
}

async fn call(s: &TestServer, k: &str, m: Method, path: &str, body: Value) -> Value {
    let resp = s.call(k, m, path).json(&body).send().await.unwrap();
    expect_json(resp, StatusCode::OK).await
}

async fn get(s: &TestServer, k: &str, path: &str) -> Value {
    expect_json(s.call(k, Method::GET, path).send().await.unwrap(), StatusCode::OK).await
}

/// One accepted bulk action (`PUT /instances/{action}` and friends): 202 with `message`.
async fn accepted(s: &TestServer, k: &str, m: Method, path: &str, id: &str, message: &str) {
    let out = call(s, k, m, path, json!([id])).await;
    assert_eq!(
        out,
        json!([{"id": id, "status": 202, "message": message}]),
        "{path}"
    );
}

async fn act(s: &TestServer, k: &str, action: &str, id: &str, message: &str) {
    accepted(s, k, Method::PUT, &format!("/instances/{action}"), id, message).await;
}

/// Polls the instance until it is in `want`; a detour to `error` fails at once with the history.
async fn wait_state(s: &TestServer, k: &str, id: &str, want: &str) -> Value {
    let until = Instant::now() + BOOT;
    loop {
        let v = get(s, k, &format!("/instances/{id}")).await;
        if v["state"] == want {
            return v;
        }
        if v["state"] == "error" {
            let h = get(s, k, &format!("/instances/{id}/history")).await;
            panic!("instance {id} went to error waiting for {want}: {h}");
        }
        assert!(Instant::now() < until, "instance {id} not {want} in time: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET path` until it answers 404.
async fn wait_404(s: &TestServer, k: &str, path: &str) {
    let until = Instant::now() + BOOT;
    loop {
        let resp = s.call(k, Method::GET, path).send().await.unwrap();
        if resp.status() == StatusCode::NOT_FOUND {
            return;
        }
        assert!(Instant::now() < until, "{path} still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn inspect(q: &QemuCloud, id: &str) -> VmInfo {
    q.hypervisor().inspect(id).await.unwrap()
}

/// The serial console as the driver reads it (the whole log, for counting boots).
async fn console(q: &QemuCloud, id: &str) -> String {
    String::from_utf8_lossy(&q.console(id, 4 << 20).await.unwrap()).into_owned()
}

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

/// The image name printed by the last boot.
fn last_image(text: &str) -> String {
    text.lines()
        .rev()
        .find_map(|l| l.split("corral-guest: image=").nth(1))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Waits until the console shows exactly `n` boots; answers the last `up` line.
async fn wait_boots(q: &QemuCloud, id: &str, n: usize) -> String {
    let until = Instant::now() + BOOT;
    loop {
        let text = console(q, id).await;
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

/// The instance's one address, a loopback `ip:port` forwarded to the guest's port 80.
fn address(inst: &Value) -> SocketAddr {
    let list = inst["address"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{inst}");
    let a: SocketAddr = list[0].as_str().unwrap().parse().unwrap();
    assert!(a.ip().is_loopback(), "{a}");
    a
}

/// `GET /` on the guest, retried until it answers 200 (slirp accepts before the guest serves).
async fn http_get(addr: SocketAddr) -> String {
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

fn is_md5(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

async fn launch(s: &TestServer, k: &str, ids: &Ids, name: &str, image: &str) -> String {
    let out = call(
        s,
        k,
        Method::POST,
        "/instances",
        json!([{"name": name, "projectId": ids.project, "flavor": {"id": ids.tiny}, "image": {"id": image},
                "availabilityZone": {"name": "here"}}]),
    )
    .await;
    assert_eq!(out[0]["status"], 202, "{out}");
    assert_eq!(out[0]["message"], "queued", "{out}");
    out[0]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qemu_vm_through_every_action_of_the_api() {
    let t0 = Instant::now();
    let vms = Vms::new();
    let s = server(&vms, None).await;
    let k = s.create_tenant("acme", 10).await;
    let ids = ids(&s, "acme").await;
    let q = vms.qemu();
    let image_a = canonical(&vms.guest.join("debian-tiny.qcow2"));
    let image_b = canonical(&vms.guest.join("debian-tiny-b.qcow2"));

    // What the qemu driver supports: all but migrations and floating addresses.
    let ops = get(&s, &k, "/operations").await;
    assert_eq!(
        ops["qemu"],
        json!([
            "addImage",
            "addInstance",
            "deleteImage",
            "deleteInstance",
            "hardRebootInstance",
            "listImages",
            "listInstances",
            "listProjects",
            "pauseInstance",
            "rebootInstance",
            "rebuildInstance",
            "renameInstance",
            "resizeInstance",
            "resumeInstance",
            "shutdownInstance",
            "startInstance",
            "suspendInstance",
            "unpauseInstance"
        ]),
        "{ops}"
    );

    // The base images of the image directory, under their deterministic ids.
    let base = get(&s, &k, &format!("/images/{}", ids.image_a)).await;
    assert_eq!(base["realId"], "base:debian-tiny.qcow2");
    assert_eq!(base["name"], "debian-tiny.qcow2");
    assert_eq!(base["cloudId"], "local");
    assert_eq!(base["cloudType"], "qemu");
    assert_eq!(base["state"], "saved");
    assert_eq!(base["projectId"], json!([ids.project]));
    assert!(is_md5(base["checksum"].as_str().unwrap()), "{base}");

    // launch
    let id = launch(&s, &k, &ids, "web-1", &ids.image_a).await;
    let inst = wait_state(&s, &k, &id, "launched").await;
    eprintln!("launched after {:?}", t0.elapsed());
    assert_eq!(inst["realId"], id.as_str());
    assert_eq!(inst["cloudId"], "local");
    assert_eq!(inst["cloudType"], "qemu");
    assert_eq!(inst["flavor"]["name"], "tiny");
    assert_eq!(inst["image"]["id"], ids.image_a.as_str());
    assert_eq!(inst["availabilityZone"], json!({"name": "here"}));
    let info = inspect(&q, &id).await;
    assert_eq!(info.state, VmState::Running);
    assert_eq!((info.vcpus, info.ram_mb), (Some(1), Some(256)));
    assert_eq!(info.backing_file.as_deref().map(canonical), Some(image_a.clone()));
    assert_eq!(Some(address(&inst)), info.address);
    let up = wait_boots(&q, &id, 1).await;
    eprintln!("first boot after {:?}", t0.elapsed());
    assert_eq!(field(&up, "boot"), "1");
    let page = http_get(address(&inst)).await;
    assert!(page.contains("image=debian-tiny\n"), "{page}");
    let shown = get(&s, &k, &format!("/instances/{id}/console")).await;
    assert_eq!(shown["id"], id.as_str());
    assert!(
        shown["output"].as_str().unwrap().contains("corral-guest: up "),
        "{shown}"
    );

    // pause / resume (an unpause)
    act(&s, &k, "pause", &id, "pausing").await;
    wait_state(&s, &k, &id, "paused").await;
    assert_eq!(inspect(&q, &id).await.state, VmState::Paused);
    act(&s, &k, "resume", &id, "resuming").await;
    wait_state(&s, &k, &id, "launched").await;
    assert_eq!(inspect(&q, &id).await.state, VmState::Running);

    // reboot (the guest's own, after Ctrl-Alt-Del) and hard reboot (a reset)
    act(&s, &k, "reboot", &id, "rebooting").await;
    wait_state(&s, &k, &id, "launched").await;
    assert_eq!(field(&wait_boots(&q, &id, 2).await, "boot"), "2");
    assert!(console(&q, &id).await.contains("corral-guest: going down"));
    assert_eq!(inspect(&q, &id).await.state, VmState::Running);
    act(&s, &k, "hard-reboot", &id, "hard_rebooting").await;
    wait_state(&s, &k, &id, "launched").await;
    let up = wait_boots(&q, &id, 3).await;
    assert_eq!(field(&up, "boot"), "3");
    assert_eq!(inspect(&q, &id).await.state, VmState::Running);
    eprintln!("rebooted twice after {:?}", t0.elapsed());

    // suspend: no process, the memory state on disk; resume: the same boot goes on
    let boot_id = field(&up, "boot_id");
    let pid = inspect(&q, &id).await.pid.unwrap();
    act(&s, &k, "suspend", &id, "suspending").await;
    let inst = wait_state(&s, &k, &id, "suspended").await;
    assert_eq!(inst["address"], json!([]), "no process, no address");
    wait_gone(pid).await;
    let info = inspect(&q, &id).await;
    assert_eq!((info.state, info.pid), (VmState::Suspended, None));
    let dir = q.hypervisor().instance_dir(&id).unwrap();
    assert!(dir.join("vmstate").is_file());
    act(&s, &k, "resume", &id, "resuming").await;
    let inst = wait_state(&s, &k, &id, "launched").await;
    assert_eq!(inspect(&q, &id).await.state, VmState::Running);
    let page = http_get(address(&inst)).await;
    assert!(page.contains(&format!("boot_id={boot_id}")), "{page}");
    assert_eq!(up_lines(&console(&q, &id).await).len(), 3, "no new boot");
    eprintln!("suspended and resumed after {:?}", t0.elapsed());

    // resize: QEMU and the guest see the new shape
    accepted(
        &s,
        &k,
        Method::PUT,
        &format!("/instances/resize/{}", ids.bigger),
        &id,
        "resizing",
    )
    .await;
    let inst = wait_state(&s, &k, &id, "launched").await;
    assert_eq!(inst["flavor"]["name"], "bigger");
    let info = inspect(&q, &id).await;
    assert_eq!(info.state, VmState::Running);
    assert_eq!((info.vcpus, info.ram_mb), (Some(2), Some(384)));
    assert_eq!(Some(address(&inst)), info.address);
    assert_eq!(field(&wait_boots(&q, &id, 4).await, "vcpus"), "2");

    // rebuild on image b: a fresh disk over the other base image
    accepted(
        &s,
        &k,
        Method::PUT,
        &format!("/instances/rebuild/{}", ids.image_b),
        &id,
        "rebuilding",
    )
    .await;
    let inst = wait_state(&s, &k, &id, "launched").await;
    assert_eq!(inst["image"]["id"], ids.image_b.as_str());
    let info = inspect(&q, &id).await;
    assert_eq!(info.backing_file.as_deref().map(canonical), Some(image_b.clone()));
    assert_eq!((info.vcpus, info.ram_mb), (Some(2), Some(384)));
    assert_eq!(field(&wait_boots(&q, &id, 5).await, "boot"), "1");
    assert_eq!(last_image(&console(&q, &id).await), "debian-tiny-b");
    assert!(http_get(address(&inst)).await.contains("image=debian-tiny-b\n"));
    eprintln!("resized and rebuilt after {:?}", t0.elapsed());

    // rename: Corral at once, the VM's metadata by the job
    let out = call(&s, &k, Method::PUT, "/instances/rename", json!({&id: "web-one"})).await;
    assert_eq!(out, json!([{"id": id, "status": 202, "message": "renamed"}]));
    let until = Instant::now() + BOOT;
    while inspect(&q, &id).await.name != "web-one" {
        assert!(Instant::now() < until, "the VM was not renamed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // snapshot: a private image with an MD5 checksum
    let out = call(
        &s,
        &k,
        Method::POST,
        "/images",
        json!([{"name": "web-1-snap", "instanceId": id}]),
    )
    .await;
    assert_eq!(out[0]["status"], 202, "{out}");
    let img = out[0]["id"].as_str().unwrap().to_string();
    let saved = s
        .wait_json(&k, &format!("/images/{img}"), |v| {
            assert_ne!(v["state"], "error", "{v}");
            v["state"] == "saved"
        })
        .await;
    assert_eq!(saved["realId"], format!("private:{img}"));
    assert_eq!(saved["instanceId"], id.as_str());
    assert_eq!(saved["cloudType"], "qemu");
    assert_eq!(saved["projectId"], json!([ids.project]));
    assert!(is_md5(saved["checksum"].as_str().unwrap()), "{saved}");
    let file = q.image_path(&format!("private:{img}")).unwrap();
    assert!(file.is_file());
    assert_eq!(inspect(&q, &id).await.state, VmState::Running);

    // a second instance from the snapshot: its disk is backed by the image, which cannot be
    // deleted meanwhile
    let id2 = launch(&s, &k, &ids, "web-2", &img).await;
    let inst2 = wait_state(&s, &k, &id2, "launched").await;
    assert_eq!(inst2["image"]["id"], img.as_str());
    let info2 = inspect(&q, &id2).await;
    assert_eq!(
        info2.backing_file.as_deref().map(canonical),
        Some(canonical(&file))
    );
    let out = call(&s, &k, Method::POST, "/images/delete", json!([img])).await;
    assert_eq!(out[0]["status"], 409, "{out}");
    assert!(
        out[0]["message"].as_str().unwrap().contains("backing disk"),
        "{out}"
    );
    assert_eq!(get(&s, &k, &format!("/images/{img}")).await["state"], "saved");
    let up2 = wait_boots(&q, &id2, 1).await;
    assert_eq!(
        field(&up2, "boot"),
        "2",
        "the snapshot carries the disk's boot counter"
    );
    assert!(http_get(address(&inst2)).await.contains("image=debian-tiny-b\n"));
    let pid2 = info2.pid.unwrap();
    accepted(&s, &k, Method::POST, "/instances/delete", &id2, "deleting").await;
    wait_404(&s, &k, &format!("/instances/{id2}")).await;
    wait_gone(pid2).await;
    accepted(&s, &k, Method::POST, "/images/delete", &img, "deleting").await;
    wait_404(&s, &k, &format!("/images/{img}")).await;
    assert!(!file.exists());
    eprintln!("snapshot cycle done after {:?}", t0.elapsed());

    // shutdown: a clean power-off; start: a new boot of the same disk
    let pid = inspect(&q, &id).await.pid.unwrap();
    act(&s, &k, "shutdown", &id, "shutting_down").await;
    let inst = wait_state(&s, &k, &id, "shutoff").await;
    assert_eq!(inst["address"], json!([]), "no process, no address");
    wait_gone(pid).await;
    let info = inspect(&q, &id).await;
    assert_eq!((info.state, info.pid), (VmState::Shutoff, None));
    assert!(console(&q, &id).await.contains("corral-guest: power button"));
    act(&s, &k, "start", &id, "starting").await;
    let inst = wait_state(&s, &k, &id, "launched").await;
    let info = inspect(&q, &id).await;
    assert_eq!(info.state, VmState::Running);
    assert_eq!((info.vcpus, info.ram_mb), (Some(2), Some(384)));
    assert_eq!(field(&wait_boots(&q, &id, 6).await, "boot"), "2");
    http_get(address(&inst)).await;

    // The history: every action, in order, all succeeded.
    let history = get(&s, &k, &format!("/instances/{id}/history")).await;
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "launch",
            "pause",
            "resume",
            "reboot",
            "hard_reboot",
            "suspend",
            "resume",
            "resize",
            "rebuild",
            "rename",
            "shutdown",
            "start"
        ],
        "{history}"
    );
    for e in history.as_array().unwrap() {
        assert_eq!(e["actor"], "admin@acme", "{e}");
        assert_eq!(e["outcome"], "succeeded", "{e}");
        assert_eq!(e["error"], "", "{e}");
    }

    // delete: the process and the instance directory are gone, then 404
    let pid = info.pid.unwrap();
    accepted(&s, &k, Method::POST, "/instances/delete", &id, "deleting").await;
    wait_404(&s, &k, &format!("/instances/{id}")).await;
    wait_gone(pid).await;
    assert!(!dir.exists(), "{}", dir.display());
    wait_404(&s, &k, &format!("/instances/{id}/history")).await;
    s.stop().await;
    assert!(pids_mentioning(&vms.tmp.path().to_string_lossy()).is_empty());
    eprintln!("qemu lifecycle through the API done in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_vms_outlive_a_restart_of_corral() {
    let t0 = Instant::now();
    let vms = Vms::new();
    let s = server(&vms, None).await;
    let k = s.create_tenant("acme", 10).await;
    let ids = ids(&s, "acme").await;
    let q = vms.qemu();
    let out = call(
        &s,
        &k,
        Method::POST,
        "/instances",
        json!([{"name": "keep", "projectId": ids.project, "flavor": {"id": ids.tiny}, "image": {"id": ids.image_a}},
               {"name": "victim", "projectId": ids.project, "flavor": {"id": ids.tiny}, "image": {"id": ids.image_a}}]),
    )
    .await;
    let keep = out[0]["id"].as_str().unwrap().to_string();
    let victim = out[1]["id"].as_str().unwrap().to_string();
    let before = wait_state(&s, &k, &keep, "launched").await;
    wait_state(&s, &k, &victim, "launched").await;
    wait_boots(&q, &keep, 1).await;
    let keep_pid = inspect(&q, &keep).await.pid.unwrap();
    let victim_pid = inspect(&q, &victim).await.pid.unwrap();
    eprintln!("two VMs up after {:?}", t0.elapsed());

    // Corral stops; its VMs do not.
    let (db_url, data_dir) = (s.db_url.clone(), s.data_dir.clone());
    let _files = s.stop_keeping_files().await;
    assert!(alive(keep_pid) && alive(victim_pid));
    // One dies while Corral is away.
    let killed = std::process::Command::new("kill")
        .args(["-9", &victim_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_gone(victim_pid).await;

    let s = server(&vms, Some((db_url, data_dir))).await;
    // Reconciliation (in the background after the start) records what QEMU reports.
    let v = wait_state(&s, &k, &victim, "shutoff").await;
    assert_eq!(v["name"], "victim");
    assert_eq!(v["address"], json!([]), "no process, no address");
    let after = get(&s, &k, &format!("/instances/{keep}")).await;
    assert_eq!(after, before, "the running VM's record is unchanged");
    let info = inspect(&q, &keep).await;
    assert_eq!((info.state, info.pid), (VmState::Running, Some(keep_pid)));
    assert!(http_get(address(&after)).await.contains("image=debian-tiny\n"));

    // The re-attached VM obeys the new server.
    act(&s, &k, "pause", &keep, "pausing").await;
    wait_state(&s, &k, &keep, "paused").await;
    assert_eq!(inspect(&q, &keep).await.state, VmState::Paused);
    act(&s, &k, "resume", &keep, "resuming").await;
    wait_state(&s, &k, &keep, "launched").await;
    let info = inspect(&q, &keep).await;
    assert_eq!((info.state, info.pid), (VmState::Running, Some(keep_pid)));
    assert_eq!(up_lines(&console(&q, &keep).await).len(), 1, "no new boot");
    // ... and the reconciled one starts again, on its old disk.
    act(&s, &k, "start", &victim, "starting").await;
    let v = wait_state(&s, &k, &victim, "launched").await;
    let info = inspect(&q, &victim).await;
    assert_eq!(info.state, VmState::Running);
    assert_eq!(Some(address(&v)), info.address);

    let out = call(&s, &k, Method::POST, "/instances/delete", json!([keep, victim])).await;
    assert_eq!(out[0]["status"], 202, "{out}");
    assert_eq!(out[1]["status"], 202, "{out}");
    wait_404(&s, &k, &format!("/instances/{keep}")).await;
    wait_404(&s, &k, &format!("/instances/{victim}")).await;
    wait_gone(keep_pid).await;
    s.stop().await;
    assert!(pids_mentioning(&vms.tmp.path().to_string_lossy()).is_empty());
    eprintln!("restart test done in {:?}", t0.elapsed());
}
