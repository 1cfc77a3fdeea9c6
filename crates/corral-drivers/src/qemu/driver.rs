//! [`QemuHypervisor`]: the real [`Hypervisor`], one daemonized QEMU process per instance.
//!
//! An instance directory (`<state_dir>/<id>/`) holds everything the driver knows, so a new
//! driver (after a Corral restart) needs nothing else:
//!
//! | file | what |
//! |---|---|
//! | `vm.json` | name, vCPUs, memory, base image, forwarded port, accelerator of the last start |
//! | `disk.qcow2` | the qcow2 overlay over the base image |
//! | `qemu.pid` | written by QEMU (`-pidfile`), removed by QEMU when it exits cleanly |
//! | `qmp.sock` | the QMP socket |
//! | `console.log` | the serial console, appended to across restarts |
//! | `vmstate` | the saved memory state of a suspended VM |
//!
//! A pid is trusted only if `/proc/<pid>` is alive (not a zombie) and its command line names
//! this directory's QMP socket, so a stale pidfile whose pid was reused is never signalled.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::process::Command;
use tokio::sync::OwnedMutexGuard;
use tokio::time::{Instant, sleep};

use super::accel::resolved_accel;
use super::qmp::{QmpClient, QmpError};
use super::{BaseImage, Hypervisor, QemuConfig, QemuError, Rebooted, Stopped, VmInfo, VmSpec, VmState};
use crate::facts::shell_quote;
use crate::process::{free_loopback_port, resolve_program};

const META: &str = "vm.json";
const DISK: &str = "disk.qcow2";
const PIDFILE: &str = "qemu.pid";
const QMP_SOCK: &str = "qmp.sock";
const CONSOLE: &str = "console.log";
const VMSTATE: &str = "vmstate";

/// Limit for connecting to QMP and for one ordinary command.
const QMP_LIMIT: Duration = Duration::from_secs(15);
/// Limit for QEMU's start, up to the daemonized process answering QMP. Generous: a loaded
/// 2-core machine may take seconds just to map the guest memory.
const LAUNCH_LIMIT: Duration = Duration::from_secs(60);
/// How long `quit` may take before `SIGKILL`.
const QUIT_WAIT: Duration = Duration::from_secs(10);
/// How long a process may take to disappear after `SIGKILL`.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Polling period while waiting for a process or a migration.
const POLL: Duration = Duration::from_millis(100);
/// Longest unix socket path (`sun_path` is 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// What `vm.json` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    name: String,
    vcpus: u32,
    ram_mb: u64,
    image: PathBuf,
    port: Option<u16>,
    accel: Option<String>,
}

impl Meta {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "vcpus": self.vcpus,
            "ram_mb": self.ram_mb,
            "image": self.image.to_string_lossy(),
            "port": self.port,
            "accel": self.accel,
        })
    }

    fn from_json(v: &Value) -> Option<Meta> {
        Some(Meta {
            name: v["name"].as_str()?.to_string(),
            vcpus: u32::try_from(v["vcpus"].as_u64()?).ok()?,
            ram_mb: v["ram_mb"].as_u64()?,
            image: PathBuf::from(v["image"].as_str()?),
            port: v["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
            accel: v["accel"].as_str().map(str::to_string),
        })
    }
}

/// The real hypervisor: QEMU processes on this machine.
#[derive(Debug)]
pub struct QemuHypervisor {
    config: QemuConfig,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// sha256 by path, valid while size and modification time are unchanged.
    checksums: Mutex<HashMap<PathBuf, (u64, SystemTime, String)>>,
}

fn lock_std<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_err(action: &str) -> impl FnOnce(std::io::Error) -> QemuError + '_ {
    move |e| QemuError::Io {
        action: action.to_string(),
        message: e.to_string(),
    }
}

fn qmp_err(id: &str, command: &str) -> impl FnOnce(QmpError) -> QemuError {
    let id = id.to_string();
    let command = command.to_string();
    move |e| QemuError::Qmp {
        id,
        command,
        message: e.to_string(),
    }
}

/// Instance ids name directories: 1..64 of `A-Z a-z 0-9 -`, not starting with `-`.
pub(crate) fn check_id(id: &str) -> Result<(), QemuError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('-')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(QemuError::InvalidId(id.chars().take(80).collect()))
    }
}

fn check_shape(spec: &VmSpec) -> Result<(), QemuError> {
    check_id(&spec.id)?;
    if !(1..=64).contains(&spec.vcpus) {
        return Err(QemuError::InvalidSpec(format!(
            "{} vCPUs is outside 1..64",
            spec.vcpus
        )));
    }
    if !(64..=1_048_576).contains(&spec.ram_mb) {
        return Err(QemuError::InvalidSpec(format!(
            "{} MiB of memory is outside 64..1048576",
            spec.ram_mb
        )));
    }
    Ok(())
}

/// The guest hostname for a display name: its letters, digits and `-`, at most 63, else
/// `instance`. It goes on the kernel command line, which must not get spaces or quotes.
fn hostname_for(name: &str) -> String {
    let h: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(63)
        .collect();
    let h = h.trim_matches('-').to_string();
    if h.is_empty() { "instance".into() } else { h }
}

/// The pid of the QEMU process serving `dir`, if one runs.
fn running_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(PIDFILE)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    pid_serves(pid, dir).then_some(pid)
}

/// True if `pid` is alive (not a zombie) and its command line names `dir`'s QMP socket.
fn pid_serves(pid: u32, dir: &Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself contain ')'.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    if matches!(state, Some('Z') | Some('X') | None) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = format!("unix:{},server=on,wait=off", dir.join(QMP_SOCK).display());
    cmdline.split(|b| *b == 0).any(|arg| arg == needle.as_bytes())
}

fn sigkill(pid: u32) {
    if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(p, Signal::KILL);
    }
}

/// Waits until no process serves `dir` any more; answers whether it went within `limit`.
async fn wait_gone(pid: u32, dir: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !pid_serves(pid, dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL).await;
    }
}

fn trim_message(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    let s: String = s.chars().take(500).collect();
    s.trim_end_matches('.').to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl QemuHypervisor {
    /// Resolves the two programs from `PATH`, makes the state directory and checks that the
    /// QMP socket paths under it fit a unix socket address.
    pub fn new(mut config: QemuConfig) -> Result<Self, QemuError> {
        for program in [&mut config.binary, &mut config.qemu_img] {
            let resolved =
                resolve_program(&program.to_string_lossy(), None).map_err(|m| QemuError::Qemu {
                    action: "start".into(),
                    message: m.trim_end_matches('.').to_string(),
                })?;
            *program = resolved;
        }
        std::fs::create_dir_all(&config.state_dir).map_err(io_err("create the state directory"))?;
        config.state_dir =
            std::fs::canonicalize(&config.state_dir).map_err(io_err("resolve the state directory"))?;
        if let Ok(d) = std::fs::canonicalize(&config.image_dir) {
            config.image_dir = d;
        }
        // QEMU runs daemonized, in `/`: a relative kernel or initrd path (the default
        // `image_dir/vmlinuz` of a relative `image_dir`) would name nothing there.
        for path in [&mut config.kernel, &mut config.initrd] {
            if let Ok(abs) = std::path::absolute(&*path) {
                *path = abs;
            }
        }
        // 64 is the longest id.
        let longest = config.state_dir.join("x".repeat(64)).join(QMP_SOCK);
        if longest.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(QemuError::Io {
                action: "use the state directory".into(),
                message: format!(
                    "its path is too long for QMP sockets (at most {} bytes)",
                    MAX_SOCKET_PATH - 64 - QMP_SOCK.len() - 2
                ),
            });
        }
        Ok(QemuHypervisor {
            config,
            locks: Mutex::new(HashMap::new()),
            checksums: Mutex::new(HashMap::new()),
        })
    }

    /// The settings, with the programs resolved.
    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    /// The instance directory (whether or not it exists).
    pub fn instance_dir(&self, id: &str) -> Result<PathBuf, QemuError> {
        check_id(id)?;
        Ok(self.config.state_dir.join(id))
    }

    async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        let m = lock_std(&self.locks).entry(id.to_string()).or_default().clone();
        m.lock_owned().await
    }

    /// The image an instance's metadata records as its disk's base, for when the disk itself
    /// cannot be read.
    pub(crate) fn recorded_image(&self, id: &str) -> Result<PathBuf, QemuError> {
        let dir = self.existing_dir(id)?;
        self.read_meta(id, &dir).map(|m| m.image)
    }

    /// The directory of an existing instance.
    fn existing_dir(&self, id: &str) -> Result<PathBuf, QemuError> {
        let dir = self.instance_dir(id)?;
        if dir.join(META).is_file() {
            Ok(dir)
        } else {
            Err(QemuError::NotFound(id.to_string()))
        }
    }

    fn read_meta(&self, id: &str, dir: &Path) -> Result<Meta, QemuError> {
        let text = std::fs::read_to_string(dir.join(META)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                QemuError::NotFound(id.to_string())
            } else {
                io_err("read the instance metadata")(e)
            }
        })?;
        serde_json::from_str::<Value>(&text)
            .ok()
            .as_ref()
            .and_then(Meta::from_json)
            .ok_or_else(|| QemuError::Io {
                action: "read the instance metadata".into(),
                message: format!("{META} of instance {id} is damaged"),
            })
    }

    fn write_meta(&self, dir: &Path, meta: &Meta) -> Result<(), QemuError> {
        let tmp = dir.join(format!("{META}.tmp"));
        std::fs::write(&tmp, meta.to_json().to_string())
            .and_then(|()| std::fs::rename(&tmp, dir.join(META)))
            .map_err(io_err("write the instance metadata"))
    }

    /// Runs a tool (qemu-img) to completion; answers its stdout.
    async fn run_tool(&self, args: &[&std::ffi::OsStr], action: &str) -> Result<String, QemuError> {
        let out = Command::new(&self.config.qemu_img)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| QemuError::Qemu {
                action: action.into(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(QemuError::Qemu {
                action: action.into(),
                message: trim_message(&out.stderr),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `qemu-img info` as JSON; `-U` so a running VM's disk can be read.
    async fn image_info(&self, path: &Path, action: &str) -> Result<Value, QemuError> {
        let out = self
            .run_tool(
                &[
                    "info".as_ref(),
                    "-U".as_ref(),
                    "--output=json".as_ref(),
                    path.as_os_str(),
                ],
                action,
            )
            .await?;
        serde_json::from_str(&out).map_err(|e| QemuError::Qemu {
            action: action.into(),
            message: e.to_string(),
        })
    }

    /// The base image path for `image`: a bare file name is looked up in the image
    /// directory; anything else must be an absolute path to a file.
    fn resolve_image(&self, image: &Path) -> Result<PathBuf, QemuError> {
        let shown = image.display().to_string();
        let bad = |message: &str| QemuError::Image {
            image: shown.clone(),
            message: message.into(),
        };
        let path = if image.is_absolute() {
            image.to_path_buf()
        } else if image.components().count() == 1 && !shown.starts_with('.') {
            self.config.image_dir.join(image)
        } else {
            return Err(bad("give a file name in the image directory or an absolute path"));
        };
        if !path.is_file() {
            return Err(bad("no such file"));
        }
        std::fs::canonicalize(&path).map_err(|e| bad(&e.to_string()))
    }

    /// Makes a fresh overlay `disk.qcow2` over `image` (atomically replacing any old one).
    async fn make_overlay(&self, dir: &Path, image: &Path) -> Result<(), QemuError> {
        let info = self
            .image_info(image, "read the image")
            .await
            .map_err(|e| QemuError::Image {
                image: image.display().to_string(),
                message: e.to_string().trim_end_matches('.').to_string(),
            })?;
        let format = info["format"].as_str().unwrap_or("raw").to_string();
        let tmp = dir.join(format!("{DISK}.new"));
        let _ = std::fs::remove_file(&tmp);
        self.run_tool(
            &[
                "create".as_ref(),
                "-q".as_ref(),
                "-f".as_ref(),
                "qcow2".as_ref(),
                "-b".as_ref(),
                image.as_os_str(),
                "-F".as_ref(),
                format.as_ref(),
                tmp.as_os_str(),
            ],
            "create the instance disk",
        )
        .await?;
        std::fs::rename(&tmp, dir.join(DISK)).map_err(io_err("create the instance disk"))
    }

    /// Connects to the instance's QMP socket.
    async fn qmp(&self, id: &str, dir: &Path) -> Result<QmpClient, QemuError> {
        QmpClient::connect(&dir.join(QMP_SOCK), QMP_LIMIT)
            .await
            .map_err(qmp_err(id, "connect"))
    }

    async fn exec(
        &self,
        c: &mut QmpClient,
        id: &str,
        command: &str,
        args: Option<Value>,
    ) -> Result<Value, QemuError> {
        c.execute(command, args, QMP_LIMIT)
            .await
            .map_err(qmp_err(id, command))
    }

    async fn status(&self, c: &mut QmpClient, id: &str) -> Result<String, QemuError> {
        let st = self.exec(c, id, "query-status", None).await?;
        Ok(st["status"].as_str().unwrap_or("unknown").to_string())
    }

    /// The state without QMP when no process runs.
    fn offline_state(dir: &Path) -> VmState {
        if dir.join(VMSTATE).is_file() {
            VmState::Suspended
        } else {
            VmState::Shutoff
        }
    }

    fn map_status(status: &str) -> VmState {
        match status {
            "running" => VmState::Running,
            "paused" => VmState::Paused,
            other => VmState::Other(other.to_string()),
        }
    }

    /// Starts QEMU for the instance, daemonized, and waits until QMP answers. With `incoming`
    /// it waits for a migration stream (`-incoming defer`) with its vCPUs stopped (`-S`).
    async fn launch(&self, id: &str, dir: &Path, meta: &mut Meta, incoming: bool) -> Result<u32, QemuError> {
        let accel = resolved_accel(&self.config).await;
        let mut last_err = None;
        // A free port can be taken between the check and QEMU's bind: try a few.
        for _ in 0..3 {
            let port = free_loopback_port().map_err(io_err("find a free loopback port"))?;
            meta.port = Some(port);
            meta.accel = Some(accel.to_string());
            self.write_meta(dir, meta)?;
            match self.spawn_qemu(id, dir, meta, accel, port, incoming).await {
                Ok(pid) => return Ok(pid),
                Err(QemuError::Qemu { action, message }) if message.contains("forward") => {
                    last_err = Some(QemuError::Qemu { action, message });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| QemuError::Qemu {
            action: format!("start instance {id}"),
            message: "no free port".into(),
        }))
    }

    async fn spawn_qemu(
        &self,
        id: &str,
        dir: &Path,
        meta: &Meta,
        accel: &str,
        port: u16,
        incoming: bool,
    ) -> Result<u32, QemuError> {
        let action = format!("start instance {id}");
        let sock = dir.join(QMP_SOCK);
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(dir.join(PIDFILE));
        let disk = dir.join(DISK);
        let console = dir.join(CONSOLE);
        let mut cmd = Command::new(&self.config.binary);
        cmd.arg("-name")
            .arg(format!("corral-{id}"))
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-machine", "q35", "-accel", accel])
            .args(["-smp", &meta.vcpus.to_string(), "-m", &meta.ram_mb.to_string()])
            .arg("-kernel")
            .arg(&self.config.kernel)
            .arg("-initrd")
            .arg(&self.config.initrd)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 quiet panic=-1 corral.hostname={}",
                hostname_for(&meta.name)
            ))
            .arg("-drive")
            .arg(format!(
                "file={},if=none,id=disk0,format=qcow2,cache=writeback",
                disk.display().to_string().replace(',', ",,")
            ))
            .args(["-device", "virtio-blk-pci,drive=disk0,id=vda"])
            .arg("-netdev")
            .arg(format!(
                "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:80"
            ))
            .args(["-device", "virtio-net-pci,netdev=net0,romfile="])
            .arg("-chardev")
            .arg(format!(
                "file,id=serial0,path={},append=on",
                console.display().to_string().replace(',', ",,")
            ))
            .args(["-serial", "chardev:serial0"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .arg("-pidfile")
            .arg(dir.join(PIDFILE))
            .arg("-daemonize");
        if incoming {
            cmd.args(["-incoming", "defer", "-S"]);
        }
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // With -daemonize the command returns once the daemon is initialised (its sockets
        // bound, the pidfile written); the daemon itself runs on in its own session.
        let out = tokio::time::timeout(LAUNCH_LIMIT, cmd.output())
            .await
            .map_err(|_| QemuError::Timeout {
                id: id.to_string(),
                what: "QEMU to start".into(),
            })?
            .map_err(|e| QemuError::Qemu {
                action: action.clone(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(QemuError::Qemu {
                action,
                message: trim_message(&out.stderr),
            });
        }
        let Some(pid) = running_pid(dir) else {
            return Err(QemuError::Qemu {
                action,
                message: "the process is gone right after starting".into(),
            });
        };
        let mut c = self.qmp(id, dir).await?;
        let status = self.status(&mut c, id).await?;
        tracing::info!(id, pid, accel, port, status, "QEMU started");
        Ok(pid)
    }

    /// Ends the process: `quit`, then `SIGKILL`.
    async fn kill_vm(&self, id: &str, dir: &Path, pid: u32) -> Result<(), QemuError> {
        if let Ok(mut c) = QmpClient::connect(&dir.join(QMP_SOCK), Duration::from_secs(3)).await {
            let _ = c.execute("quit", None, Duration::from_secs(3)).await;
        }
        if !wait_gone(pid, dir, QUIT_WAIT).await {
            tracing::warn!(id, pid, "QEMU did not quit, killing it");
            sigkill(pid);
            if !wait_gone(pid, dir, KILL_WAIT).await {
                return Err(QemuError::Timeout {
                    id: id.to_string(),
                    what: "the QEMU process to end after SIGKILL".into(),
                });
            }
        }
        let _ = std::fs::remove_file(dir.join(PIDFILE));
        let _ = std::fs::remove_file(dir.join(QMP_SOCK));
        Ok(())
    }

    /// The clean shutdown, without taking the instance lock.
    async fn shutdown_locked(&self, id: &str, dir: &Path) -> Result<Stopped, QemuError> {
        let Some(pid) = running_pid(dir) else {
            return Ok(Stopped::AlreadyStopped);
        };
        {
            let mut c = self.qmp(id, dir).await?;
            if self.status(&mut c, id).await? == "paused" {
                // A stopped guest cannot see the power button.
                self.exec(&mut c, id, "cont", None).await?;
            }
            self.exec(&mut c, id, "system_powerdown", None).await?;
            // The connection is closed here: QEMU serves one QMP client at a time, and
            // inspecting the VM while it shuts down must not wait for this.
        }
        let deadline = Instant::now() + self.config.shutdown_timeout;
        let mut next_press = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !pid_serves(pid, dir) {
                let _ = std::fs::remove_file(dir.join(QMP_SOCK));
                return Ok(Stopped::Clean);
            }
            // A guest still booting may have missed the press: press again now and then.
            if Instant::now() >= next_press {
                if let Ok(mut c) = self.qmp(id, dir).await {
                    let _ = c.execute("system_powerdown", None, QMP_LIMIT).await;
                }
                next_press = Instant::now() + Duration::from_secs(10);
            }
            sleep(POLL).await;
        }
        tracing::warn!(id, pid, "the guest did not power off in time, stopping QEMU");
        self.kill_vm(id, dir, pid).await?;
        Ok(Stopped::Forced)
    }

    async fn inspect_dir(&self, id: &str, dir: &Path) -> Result<VmInfo, QemuError> {
        let meta = self.read_meta(id, dir)?;
        let disk = dir.join(DISK);
        let mut info = VmInfo {
            id: id.to_string(),
            name: meta.name.clone(),
            state: Self::offline_state(dir),
            pid: None,
            vcpus: None,
            ram_mb: None,
            disk: disk.clone(),
            backing_file: None,
            address: None,
            accel: None,
        };
        let Some(pid) = running_pid(dir) else {
            if disk.is_file() {
                let img = self.image_info(&disk, "read the instance disk").await?;
                info.backing_file = img["full-backing-filename"]
                    .as_str()
                    .or_else(|| img["backing-filename"].as_str())
                    .map(PathBuf::from);
            }
            return Ok(info);
        };
        let mut c = self.qmp(id, dir).await?;
        let status = self.status(&mut c, id).await?;
        let cpus = self.exec(&mut c, id, "query-cpus-fast", None).await?;
        let mem = self.exec(&mut c, id, "query-memory-size-summary", None).await?;
        let block = self.exec(&mut c, id, "query-block", None).await?;
        info.state = Self::map_status(&status);
        info.pid = Some(pid);
        info.vcpus = cpus.as_array().and_then(|a| u32::try_from(a.len()).ok());
        info.ram_mb = mem["base-memory"].as_u64().map(|b| b / (1024 * 1024));
        info.backing_file = block.as_array().and_then(|devs| {
            devs.iter().find_map(|d| {
                let ins = d.get("inserted")?;
                ins["backing_file"]
                    .as_str()
                    .or_else(|| ins["image"]["full-backing-filename"].as_str())
                    .or_else(|| ins["image"]["backing-filename"].as_str())
                    .map(PathBuf::from)
            })
        });
        info.address = meta.port.map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
        info.accel = meta.accel.clone();
        Ok(info)
    }

    /// Polls `query-migrate` until the migration ends; answers its final status.
    async fn wait_migration(&self, c: &mut QmpClient, id: &str, limit: Duration) -> Result<(), QemuError> {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.exec(c, id, "query-migrate", None).await?;
            match m["status"].as_str().unwrap_or("none") {
                "completed" => return Ok(()),
                "failed" | "cancelled" => {
                    return Err(QemuError::Qmp {
                        id: id.to_string(),
                        command: "migrate".into(),
                        message: m["error-desc"]
                            .as_str()
                            .unwrap_or("the migration failed")
                            .to_string(),
                    });
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(QemuError::Timeout {
                    id: id.to_string(),
                    what: "the VM state to be saved".into(),
                });
            }
            sleep(POLL).await;
        }
    }

    fn wrong_state(action: &'static str, id: &str, state: &VmState) -> QemuError {
        QemuError::WrongState {
            action,
            id: id.to_string(),
            state: state.to_string(),
        }
    }

    /// The state, asking QEMU when a process runs.
    async fn state(&self, id: &str, dir: &Path) -> Result<VmState, QemuError> {
        if running_pid(dir).is_none() {
            return Ok(Self::offline_state(dir));
        }
        let mut c = self.qmp(id, dir).await?;
        Ok(Self::map_status(&self.status(&mut c, id).await?))
    }

    fn sha256_cached(&self, path: &Path, size: u64, mtime: SystemTime) -> Option<String> {
        lock_std(&self.checksums)
            .get(path)
            .filter(|(s, m, _)| *s == size && *m == mtime)
            .map(|(_, _, h)| h.clone())
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

#[async_trait::async_trait]
impl Hypervisor for QemuHypervisor {
    async fn base_images(&self) -> Result<Vec<BaseImage>, QemuError> {
        let entries =
            std::fs::read_dir(&self.config.image_dir).map_err(io_err("list the image directory"))?;
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let format = match path.extension().and_then(|x| x.to_str()) {
                Some("qcow2") => "qcow2",
                Some("raw") => "raw",
                _ => continue,
            };
            let Ok(md) = e.metadata() else { continue };
            if !md.is_file() {
                continue;
            }
            let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let sha256 = match self.sha256_cached(&path, md.len(), mtime) {
                Some(h) => h,
                None => {
                    let p = path.clone();
                    let h = tokio::task::spawn_blocking(move || sha256_file(&p))
                        .await
                        .map_err(|e| QemuError::Io {
                            action: "checksum an image".into(),
                            message: e.to_string(),
                        })?
                        .map_err(io_err("checksum an image"))?;
                    lock_std(&self.checksums).insert(path.clone(), (md.len(), mtime, h.clone()));
                    h
                }
            };
            out.push(BaseImage {
                name: e.file_name().to_string_lossy().into_owned(),
                path,
                format: format.into(),
                size_bytes: md.len(),
                sha256,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn create(&self, spec: &VmSpec) -> Result<VmInfo, QemuError> {
        check_shape(spec)?;
        let _g = self.lock(&spec.id).await;
        let dir = self.instance_dir(&spec.id)?;
        let image = self.resolve_image(&spec.image)?;
        // Idempotent for a job that is run again: an instance made from the same image is
        // only (re)started.
        if let Ok(meta) = self.read_meta(&spec.id, &dir)
            && meta.image != image
        {
            return Err(QemuError::AlreadyExists(spec.id.clone()));
        }
        std::fs::create_dir_all(&dir).map_err(io_err("create the instance directory"))?;
        let mut meta = Meta {
            name: spec.name.clone(),
            vcpus: spec.vcpus,
            ram_mb: spec.ram_mb,
            image: image.clone(),
            port: None,
            accel: None,
        };
        if running_pid(&dir).is_none() {
            if !dir.join(DISK).is_file() {
                self.write_meta(&dir, &meta)?;
                self.make_overlay(&dir, &image).await?;
            }
            self.launch(&spec.id, &dir, &mut meta, false).await?;
        }
        self.inspect_dir(&spec.id, &dir).await
    }

    async fn start(&self, spec: &VmSpec) -> Result<VmInfo, QemuError> {
        check_shape(spec)?;
        let _g = self.lock(&spec.id).await;
        let dir = self.existing_dir(&spec.id)?;
        if running_pid(&dir).is_none() {
            let state = Self::offline_state(&dir);
            if state == VmState::Suspended {
                return Err(Self::wrong_state("start", &spec.id, &state));
            }
            let mut meta = self.read_meta(&spec.id, &dir)?;
            meta.name = spec.name.clone();
            meta.vcpus = spec.vcpus;
            meta.ram_mb = spec.ram_mb;
            self.launch(&spec.id, &dir, &mut meta, false).await?;
        }
        self.inspect_dir(&spec.id, &dir).await
    }

    async fn shutdown(&self, id: &str) -> Result<Stopped, QemuError> {
        let _g = self.lock(id).await;
        let dir = self.existing_dir(id)?;
        self.shutdown_locked(id, &dir).await
    }

    async fn reboot(&self, id: &str) -> Result<Rebooted, QemuError> {
        let _g = self.lock(id).await;
        let dir = self.existing_dir(id)?;
        let state = self.state(id, &dir).await?;
        if state != VmState::Running {
            return Err(Self::wrong_state("reboot", id, &state));
        }
        let mut c = self.qmp(id, &dir).await?;
        let keys = json!({ "keys": [
            { "type": "qcode", "data": "ctrl" },
            { "type": "qcode", "data": "alt" },
            { "type": "qcode", "data": "delete" },
        ]});
        self.exec(&mut c, id, "send-key", Some(keys)).await?;
        // The guest's own reboot ends in a reset of the machine, which QEMU reports.
        match c.wait_event("RESET", self.config.shutdown_timeout).await {
            Ok(_) => Ok(Rebooted::Guest),
            Err(QmpError::Timeout) => {
                tracing::warn!(id, "the guest did not reboot in time, resetting it");
                self.exec(&mut c, id, "system_reset", None).await?;
                Ok(Rebooted::Forced)
            }
            Err(e) => Err(qmp_err(id, "send-key")(e)),
        }
    }

    async fn hard_reboot(&self, id: &str) -> Result<(), QemuError> {
        let _g = self.lock(id).await;
        let dir = self.existing_dir(id)?;
        let state = self.state(id, &dir).await?;
        if !matches!(state, VmState::Running | VmState::Paused) {
            return Err(Self::wrong_state("hard-reboot", id, &state));
        }
        let mut c = self.qmp(id, &dir).await?;
        self.exec(&mut c, id, "system_reset", None).await?;
        if state == VmState::Paused {
            self.exec(&mut c, id, "cont", None).await?;
        }
        Ok(())
    }

    async fn pause(&self, id: &str) -> Result<(), QemuError> {
        let _g = self.lock(id).await;
        let dir = self.existing_dir(id)?;
        match self.state(id, &dir).await? {
            VmState::Paused => Ok(()),
            VmState::Running => {
                let mut c = self.qmp(id, &dir).await?;
                self.exec(&mut c, id, "stop", None).await.map(|_| ())
            }
            other => Err(Self::wrong_state("pause", id, &other)),
        }
    }

    async fn unpause(&self, id: &str) -> Result<(), QemuError> {
        let _g = self.lock(id).await;
        let dir = self.existing_dir(id)?;
        match self.state(id, &dir).await? {
            VmState::Running => Ok(()),
            VmState::Paused => {
                let mut c = self.qmp(id, &dir).await?;
                self.exec(&mut c, id, "cont", None).await.map(|_| ())
            }
            other => Err(Self::wrong_state("unpause", id, &other)),
        }
    }

    async fn suspend(&self, id: &str) -> Result<(), QemuError> {
        let _g = self.lock(id).await;
        let dir = self.existing_dir(id)?;
        let state = self.state(id, &dir).await?;
        match state {
            VmState::Suspended => return Ok(()),
            VmState::Running | VmState::Paused => {}
            other => return Err(Self::wrong_state("suspend", id, &other)),
        }
        let Some(pid) = running_pid(&dir) else {
            return Err(Self::wrong_state("suspend", id, &VmState::Shutoff));
        };
        let partial = dir.join(format!("{VMSTATE}.partial"));
        let _ = std::fs::remove_file(&partial);
        let mut c = self.qmp(id, &dir).await?;
        // Stopped first, so the state is saved in one pass and the guest sees no time pass
        // between the save and the quit.
        self.exec(&mut c, id, "stop", None).await?;
        let uri = format!("exec:cat > {}", shell_quote(&partial.display().to_string()));
        let saved = async {
            self.exec(&mut c, id, "migrate", Some(json!({ "uri": uri })))
                .await?;
            self.wait_migration(&mut c, id, self.config.shutdown_timeout)
                .await
        }
        .await;
        if let Err(e) = saved {
            let _ = std::fs::remove_file(&partial);
            if state == VmState::Running {
                let _ = c.execute("cont", None, QMP_LIMIT).await;
            }
            return Err(e);
        }
        std::fs::rename(&partial, dir.join(VMSTATE)).map_err(io_err("save the VM state"))?;
        drop(c);
        self.kill_vm(id, &dir, pid).await
    }

    async fn resume(&self, id: &str) -> Result<VmInfo, QemuError> {
        let _g = self.lock(id).await;
        let dir = self.existing_dir(id)?;
        let state = self.state(id, &dir).await?;
        match state {
            VmState::Running => return self.inspect_dir(id, &dir).await,
            VmState::Suspended => {}
            other => return Err(Self::wrong_state("resume", id, &other)),
        }
        let mut meta = self.read_meta(id, &dir)?;
        let pid = self.launch(id, &dir, &mut meta, true).await?;
        let restored = async {
            let mut c = self.qmp(id, &dir).await?;
            let uri = format!(
                "exec:cat < {}",
                shell_quote(&dir.join(VMSTATE).display().to_string())
            );
            self.exec(&mut c, id, "migrate-incoming", Some(json!({ "uri": uri })))
                .await?;
            let deadline = Instant::now() + self.config.shutdown_timeout;
            loop {
                let status = self.status(&mut c, id).await?;
                match status.as_str() {
                    "inmigrate" => {}
                    "paused" | "prelaunch" => break,
                    "running" => break,
                    other => {
                        return Err(QemuError::Qmp {
                            id: id.to_string(),
                            command: "migrate-incoming".into(),
                            message: format!("the VM ended in status {other}"),
                        });
                    }
                }
                if Instant::now() >= deadline {
                    return Err(QemuError::Timeout {
                        id: id.to_string(),
                        what: "the VM state to be restored".into(),
                    });
                }
                sleep(POLL).await;
            }
            self.exec(&mut c, id, "cont", None).await.map(|_| ())
        }
        .await;
        if let Err(e) = restored {
            // The saved state is kept for another try; the half-started process goes.
            let _ = self.kill_vm(id, &dir, pid).await;
            return Err(e);
        }
        let _ = std::fs::remove_file(dir.join(VMSTATE));
        self.inspect_dir(id, &dir).await
    }

    async fn resize(&self, spec: &VmSpec) -> Result<VmInfo, QemuError> {
        check_shape(spec)?;
        let _g = self.lock(&spec.id).await;
        let dir = self.existing_dir(&spec.id)?;
        let state = Self::offline_state(&dir);
        if running_pid(&dir).is_none() && state == VmState::Suspended {
            return Err(Self::wrong_state("resize", &spec.id, &state));
        }
        self.shutdown_locked(&spec.id, &dir).await?;
        let mut meta = self.read_meta(&spec.id, &dir)?;
        meta.name = spec.name.clone();
        meta.vcpus = spec.vcpus;
        meta.ram_mb = spec.ram_mb;
        self.launch(&spec.id, &dir, &mut meta, false).await?;
        self.inspect_dir(&spec.id, &dir).await
    }

    async fn rebuild(&self, spec: &VmSpec) -> Result<VmInfo, QemuError> {
        check_shape(spec)?;
        let _g = self.lock(&spec.id).await;
        let dir = self.existing_dir(&spec.id)?;
        let image = self.resolve_image(&spec.image)?;
        // The disk is thrown away: no point in a clean shutdown.
        if let Some(pid) = running_pid(&dir) {
            self.kill_vm(&spec.id, &dir, pid).await?;
        }
        let _ = std::fs::remove_file(dir.join(VMSTATE));
        self.make_overlay(&dir, &image).await?;
        let mut meta = self.read_meta(&spec.id, &dir)?;
        meta.name = spec.name.clone();
        meta.vcpus = spec.vcpus;
        meta.ram_mb = spec.ram_mb;
        meta.image = image;
        self.launch(&spec.id, &dir, &mut meta, false).await?;
        self.inspect_dir(&spec.id, &dir).await
    }

    async fn snapshot(&self, id: &str, dest: &Path) -> Result<(), QemuError> {
        let _g = self.lock(id).await;
        let dir = self.existing_dir(id)?;
        let Some(name) = dest.file_name() else {
            return Err(QemuError::Io {
                action: "write the snapshot".into(),
                message: "the destination has no file name".into(),
            });
        };
        let partial = dest.with_file_name(format!("{}.partial", name.to_string_lossy()));
        let state = self.state(id, &dir).await?;
        // `stop` drains and flushes every disk, so the overlay file is consistent while the
        // vCPUs stand still; qemu-img reads it beside the running QEMU (-U).
        let mut c = if state == VmState::Running {
            let mut c = self.qmp(id, &dir).await?;
            self.exec(&mut c, id, "stop", None).await?;
            Some(c)
        } else {
            None
        };
        let copied = self
            .run_tool(
                &[
                    "convert".as_ref(),
                    "-U".as_ref(),
                    "-O".as_ref(),
                    "qcow2".as_ref(),
                    dir.join(DISK).as_os_str(),
                    partial.as_os_str(),
                ],
                "copy the instance disk",
            )
            .await;
        if let Some(c) = c.as_mut() {
            self.exec(c, id, "cont", None).await?;
        }
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, dest).map_err(io_err("write the snapshot"))
    }

    async fn delete(&self, id: &str) -> Result<(), QemuError> {
        let _g = self.lock(id).await;
        let dir = self.instance_dir(id)?;
        if let Some(pid) = running_pid(&dir) {
            self.kill_vm(id, &dir, pid).await?;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove the instance directory")(e)),
        }
        lock_std(&self.locks).remove(id);
        Ok(())
    }

    async fn rename(&self, id: &str, name: &str) -> Result<(), QemuError> {
        let _g = self.lock(id).await;
        let dir = self.existing_dir(id)?;
        let mut meta = self.read_meta(id, &dir)?;
        meta.name = name.to_string();
        self.write_meta(&dir, &meta)
    }

    async fn inspect(&self, id: &str) -> Result<VmInfo, QemuError> {
        let dir = self.existing_dir(id)?;
        self.inspect_dir(id, &dir).await
    }

    async fn console(&self, id: &str, max_bytes: usize) -> Result<Vec<u8>, QemuError> {
        let dir = self.existing_dir(id)?;
        let mut f = match std::fs::File::open(dir.join(CONSOLE)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read the console log")(e)),
        };
        let len = f.metadata().map_err(io_err("read the console log"))?.len();
        let start = len.saturating_sub(max_bytes as u64);
        f.seek(SeekFrom::Start(start))
            .map_err(io_err("read the console log"))?;
        let mut buf = Vec::new();
        f.take(max_bytes as u64)
            .read_to_end(&mut buf)
            .map_err(io_err("read the console log"))?;
        Ok(buf)
    }

    async fn attach(&self, id: &str) -> Result<VmInfo, QemuError> {
        let dir = self.existing_dir(id)?;
        self.inspect_dir(id, &dir).await
    }

    async fn attach_all(&self) -> Result<Vec<(String, Result<VmInfo, QemuError>)>, QemuError> {
        let entries =
            std::fs::read_dir(&self.config.state_dir).map_err(io_err("list the state directory"))?;
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|id| check_id(id).is_ok())
            .filter(|id| self.config.state_dir.join(id).join(META).is_file())
            .collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let r = self.attach(&id).await;
            match &r {
                Ok(info) => tracing::info!(id, state = %info.state, "attached to instance"),
                Err(e) => tracing::warn!(id, "cannot attach to instance: {e}"),
            }
            out.push((id, r));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("4d1c7e4e-8b8e-4a59-9a43-0a6f6c1d2e3f").is_ok());
        for bad in ["", "-x", "a/b", "..", "a b", "é", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames_are_safe() {
        assert_eq!(hostname_for("web 1"), "web1");
        assert_eq!(hostname_for("--"), "instance");
        assert_eq!(hostname_for("a'b;c"), "abc");
    }

    #[test]
    fn metadata_round_trips() {
        let m = Meta {
            name: "n".into(),
            vcpus: 2,
            ram_mb: 256,
            image: PathBuf::from("/img/a.qcow2"),
            port: Some(4242),
            accel: Some("tcg".into()),
        };
        assert_eq!(Meta::from_json(&m.to_json()), Some(m));
    }
}
