//! Corral's drivers: how the control plane reaches the outside world, each behind a trait so
//! that core can be tested with an in-process fake and demos can run without real machines.
//!
//! So far: the SSH host transport ([`HostTransport`], real: [`RusshTransport`], fake:
//! [`SimulatedTransport`]), the host facts script ([`FACTS_SCRIPT`], [`parse_facts`]),
//! private-key validation ([`parse_private_key`]) and the `openshift` container manager's
//! Kubernetes Node client ([`ContainerManagerClient`], real: [`KubeClient`]), and the local
//! runner of CDAP service processes ([`ProcessRunner`], real: [`LocalProcessRunner`]), and the
//! `qemu` cloud's hypervisor ([`Hypervisor`], real: [`QemuHypervisor`], in [`qemu`]) and its
//! [`CloudDriver`] ([`QemuCloud`]), and the [`CloudRegistry`] that builds a cloud's driver from
//! its `type` and the driver's own options.
//!
//! Architecture invariant: this crate knows nothing of the store, HTTP or Corral's types; it
//! speaks plain strings and numbers, and core maps them to its own vocabulary.

use std::fmt;
use std::time::Duration;

mod cloud;
mod error;
mod facts;
mod keys;
mod kube;
mod process;
pub mod qemu;
mod registry;
mod russh_transport;
mod simulated;
#[cfg(feature = "testing")]
pub mod testing;

pub use cloud::{
    CloudDriver, CloudError, CloudImage, MockCloud, MockOptions, Observed, Operation, VmAction, VmReport,
    VmRequest,
};
pub use error::SshError;
pub use facts::{
    FACTS_MARKER, FACTS_SCRIPT, Facts, facts_command, parse_facts, shell_quote, with_remote_timeout,
};
pub use keys::{KeyInfo, parse_private_key};
pub use kube::{
    ContainerManagerClient, KubeClient, KubeError, KubeTarget, MAX_ANSWER_BYTES, normalize_apiserver,
};
pub use process::{
    ExitInfo, LocalProcessRunner, ProcessError, ProcessHandle, ProcessRunner, ProcessSpec,
    free_loopback_port, fresh_work_dir, health_probe, kill_processes_with_env, lookup_user, resolve_program,
    resolve_program_in, running_as_root,
};
pub use qemu::{
    Accel, BaseImage, Hypervisor, QemuCloud, QemuCloudOptions, QemuConfig, QemuError, QemuHypervisor,
    Rebooted, Stopped, VmInfo, VmSpec, VmState,
};
pub use registry::{BuildError, CloudConfigError, CloudConstructor, CloudRegistry, DriverDefaults};
pub use russh_transport::{MAX_OUTPUT_BYTES, RusshTransport};
pub use simulated::{SIMULATED_FINGERPRINT, SimulatedTransport};

/// Where and as whom to connect.
#[derive(Clone)]
pub struct SshTarget {
    /// IP address (v4, or v6 with or without brackets) or DNS name.
    pub host: String,
    /// TCP port, 22 in production.
    pub port: u16,
    /// Remote user (spec 3.2 `remote_user`).
    pub user: String,
    /// The private key as text (OpenSSH or PEM). Never printed by `Debug`.
    pub private_key: String,
    /// Which server host key to accept.
    pub host_key: HostKeyPolicy,
    /// Limit for TCP connect + SSH handshake + authentication together.
    pub connect_timeout: Duration,
}

impl fmt::Debug for SshTarget {
    /// Hand-written so that logging a target can never leak its private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("private_key", &"<redacted>")
            .field("host_key", &self.host_key)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Which host key the client accepts (spec 6.1: trust on first use, then pinned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Accept whatever key the server presents and report its fingerprint, so the caller can
    /// record it and pin it from then on. Only for the first contact with a host.
    TrustOnFirstUse,
    /// Accept only this fingerprint (`SHA256:<base64 without padding>`, as `ssh-keygen -lf`
    /// prints it). Any other key fails with [`SshError::HostKeyMismatch`] during the key
    /// exchange, before the key is offered or a command runs.
    Expect(String),
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status of the remote command; a command killed by a signal reports `128 + signal`
    /// like a shell does.
    pub exit_status: u32,
    /// Standard output, at most [`MAX_OUTPUT_BYTES`].
    pub stdout: Vec<u8>,
    /// Standard error, at most [`MAX_OUTPUT_BYTES`].
    pub stderr: Vec<u8>,
    /// The server's host key fingerprint as seen on this connection, so a first contact
    /// records the key it actually authenticated against.
    pub host_key_fingerprint: String,
}

impl ExecOutput {
    /// Standard output as text (lossy: hosts may print anything).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// How Corral runs commands on hosts. One connection per call: calls are rare (investigation,
/// bootstrap, a watcher check a minute, rolling steps), and a fresh connection per call means
/// no pooled session can go stale or outlive a host key change.
#[async_trait::async_trait]
pub trait HostTransport: Send + Sync + 'static {
    /// Connects, authenticates with the key, runs `command` through the remote user's shell,
    /// collects its output and disconnects. A non-zero exit status is an `Ok` answer: what it
    /// means is the caller's business. The command's stdin is empty (end-of-file at once).
    ///
    /// `target.connect_timeout` bounds the connection, `timeout` bounds the command (from the
    /// moment it is started until its exit status and output are in; output arriving more than
    /// 2 s after the exit status, from a background process that kept stdout open, is not
    /// waited for). When `timeout` expires the call fails with [`SshError::Timeout`] and the
    /// connection is closed. The remote process group is also sent `KILL` over the protocol,
    /// but OpenSSH honours that only for non-root users (root sessions run without privilege
    /// separation, and sshd refuses to signal them), and closing the connection does not stop a
    /// command without a terminal. A command that must not outlive its limit on the host
    /// (whatever the user) is wrapped with [`with_remote_timeout`].
    async fn exec(
        &self,
        target: &SshTarget,
        command: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError>;

    /// Connects and authenticates only (a health check); answers the host key fingerprint.
    async fn probe(&self, target: &SshTarget) -> Result<String, SshError>;

    /// Whether commands reach real hosts, whose files outlive a connection and which really go
    /// away on a restart. A rolling step guards its command with files on the host and waits
    /// for a restarted host to leave; a simulated host has neither.
    fn real_hosts(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_target_hides_the_key() {
        let t = SshTarget {
            host: "127.0.0.2".into(),
            port: 22,
            user: "root".into(),
            private_key: "-----BEGIN OPENSSH PRIVATE KEY-----\nSECRETSTUFF\n".into(),
            host_key: HostKeyPolicy::TrustOnFirstUse,
            connect_timeout: Duration::from_secs(5),
        };
        let s = format!("{t:?}");
        assert!(!s.contains("SECRETSTUFF"), "{s}");
        assert!(s.contains("<redacted>"), "{s}");
    }
}
