//! Choosing the accelerator. On the build machines `/dev/kvm` exists and QEMU accepts
//! `-accel kvm`, yet the guest hangs in the firmware (nested virtualisation), so "KVM is usable"
//! is proven, not assumed: a probe VM boots the guest kernel with KVM and must reach its init
//! within a deadline. The answer is cached per process and binary: the probe costs a boot (or,
//! when KVM hangs, the whole deadline), and the machine's KVM does not change while Corral runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::OnceCell;

use super::{Accel, QemuConfig};

/// Lines on the probe's serial console that prove the guest reached its init: the test
/// guest's own marker, or the kernel's announcement of running init (any kernel, without
/// `quiet`).
const MARKERS: [&str; 2] = ["corral-guest: init", "Run /init as init process"];

type ProbeCache = Mutex<HashMap<PathBuf, Arc<OnceCell<bool>>>>;

fn cache() -> &'static ProbeCache {
    static CACHE: OnceLock<ProbeCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The accelerator to pass to QEMU (`kvm` or `tcg`) for this configuration; `auto` probes once
/// per process and binary.
pub async fn resolved_accel(config: &QemuConfig) -> &'static str {
    match config.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
        Accel::Auto => {
            let cell = {
                let mut map = cache().lock().unwrap_or_else(|p| p.into_inner());
                map.entry(config.binary.clone()).or_default().clone()
            };
            let usable = cell
                .get_or_init(|| {
                    probe_kvm(
                        &config.binary,
                        &config.kernel,
                        &config.initrd,
                        config.kvm_probe_timeout,
                    )
                })
                .await;
            if *usable { "kvm" } else { "tcg" }
        }
    }
}

/// Boots `kernel` + `initrd` under KVM (no disk, no network, serial on a pipe) and answers
/// whether it reached its init within `limit`. Never fails: any trouble means "not usable".
pub async fn probe_kvm(binary: &Path, kernel: &Path, initrd: &Path, limit: Duration) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        tracing::info!("KVM probe: /dev/kvm cannot be opened, using TCG");
        return false;
    }
    let mut cmd = Command::new(binary);
    cmd.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-machine",
        "q35",
        "-accel",
        "kvm",
        "-smp",
        "1",
        "-m",
        "128",
        "-no-reboot",
        "-serial",
        "stdio",
        "-append",
        "console=ttyS0 panic=-1",
    ])
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(initrd)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("KVM probe: cannot run {}: {e}", binary.display());
            return false;
        }
    };
    let Some(out) = child.stdout.take() else {
        return false;
    };
    let mut lines = BufReader::new(out).lines();
    let found = tokio::time::timeout(limit, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if MARKERS.iter().any(|m| line.contains(m)) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    let _ = child.kill().await;
    if found {
        tracing::info!("KVM probe: the guest reached its init, using KVM");
    } else {
        tracing::warn!(
            "KVM probe: the guest did not reach its init within {} s, using TCG",
            limit.as_secs()
        );
    }
    found
}
