//! The `qemu` cloud's hypervisor driver (spec perspective 2.1): each instance is a real
//! `qemu-system-x86_64` process driven over QMP, with a qcow2 overlay over its base image, the
//! flavor's vCPUs and memory, KVM when it is proven usable and TCG otherwise, and an HTTP port of
//! the guest forwarded to a loopback port of the host.
//!
//! Everything about an instance lives in its directory under the state directory (see
//! `docs/dev/qemu-driver.md` for the files), and the QEMU processes are daemonized in their own
//! session, so they outlive the Corral process; a new driver finds them again with
//! [`Hypervisor::attach_all`]. The driver holds no state that the directory does not hold, apart
//! from caches (image checksums, the KVM probe's answer) and per-instance locks.
//!
//! It is a trait, [`Hypervisor`], so the instances layer can be tested against a fake; the real
//! thing is [`QemuHypervisor`].
//!
//! Corral's jobs do not call it directly: they call [`QemuCloud`], the cloud's
//! [`CloudDriver`](crate::CloudDriver), which turns image references and actions into
//! hypervisor calls.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod accel;
mod cloud;
mod driver;
mod qmp;

pub use accel::{probe_kvm, resolved_accel};
pub use cloud::{MAX_STATE_DIR_LEN, QemuCloud, QemuCloudOptions};
pub use driver::QemuHypervisor;
pub use qmp::{QmpClient, QmpError, QmpEvent};

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// KVM if a probe guest proves it usable (it reaches its init within a deadline), else TCG.
    /// Probed once per process and binary.
    #[default]
    Auto,
    /// Always KVM (`-accel kvm`); a VM that hangs in firmware is the operator's choice.
    Kvm,
    /// Always TCG, the emulator: slower, works everywhere.
    Tcg,
}

impl Accel {
    /// The setting's spelling: `auto`, `kvm`, `tcg`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::str::FromStr for Accel {
    type Err = String;

    /// Parses the cloud option `accel`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(format!("Accelerator '{s}' is not one of auto, kvm, tcg.")),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The driver's settings (the `qemu` cloud's options).
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// `qemu-system-x86_64`: a bare name is looked up in `PATH` when the driver is made.
    pub binary: PathBuf,
    /// `qemu-img`, likewise.
    pub qemu_img: PathBuf,
    /// Base images (`*.qcow2`, `*.raw`) and, by default, the shared kernel and initrd.
    pub image_dir: PathBuf,
    /// One directory per instance is made here.
    pub state_dir: PathBuf,
    /// The accelerator setting.
    pub accel: Accel,
    /// The guest kernel; default `image_dir/vmlinuz`.
    pub kernel: PathBuf,
    /// The guest initrd; default `image_dir/initrd.img`.
    pub initrd: PathBuf,
    /// How long a clean (ACPI) shutdown, a guest reboot or a suspend may take before the
    /// driver gives up on the guest (shutdown then kills the process).
    pub shutdown_timeout: Duration,
    /// How long the KVM probe guest gets to reach its init (`auto` only).
    pub kvm_probe_timeout: Duration,
}

impl QemuConfig {
    /// Defaults for everything but the two directories.
    pub fn new(image_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        let image_dir = image_dir.into();
        QemuConfig {
            binary: PathBuf::from("qemu-system-x86_64"),
            qemu_img: PathBuf::from("qemu-img"),
            kernel: image_dir.join("vmlinuz"),
            initrd: image_dir.join("initrd.img"),
            image_dir,
            state_dir: state_dir.into(),
            accel: Accel::Auto,
            shutdown_timeout: Duration::from_secs(60),
            kvm_probe_timeout: Duration::from_secs(20),
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The instance id: 1..64 of `A-Z a-z 0-9 -` (a UUID in practice); names its directory.
    pub id: String,
    /// The display name; it becomes the guest's hostname where it is a valid one.
    pub name: String,
    /// Virtual CPUs, 1..=64.
    pub vcpus: u32,
    /// Memory in MiB, 64..=1048576.
    pub ram_mb: u64,
    /// The base image: a file name in the image directory, or an absolute path (a base image
    /// or a private snapshot). The instance's disk is a copy-on-write overlay over it.
    pub image: PathBuf,
}

/// An instance's run state as QEMU (or its absence) tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    /// The guest runs.
    Running,
    /// The VM is stopped by `pause` (QMP status `paused`).
    Paused,
    /// No process, no saved state: the disk is all there is.
    Shutoff,
    /// No process, the memory state is saved in the instance directory.
    Suspended,
    /// The process runs in another QMP status (`shutdown`, `internal-error`, `guest-panicked`,
    /// `inmigrate`, `postmigrate`, ...): reported as QEMU spells it.
    Other(String),
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmState::Running => f.write_str("running"),
            VmState::Paused => f.write_str("paused"),
            VmState::Shutoff => f.write_str("shutoff"),
            VmState::Suspended => f.write_str("suspended"),
            VmState::Other(s) => f.write_str(s),
        }
    }
}

/// What [`Hypervisor::inspect`] learnt. The QEMU-reported fields are `None` when no process
/// runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    /// The instance id.
    pub id: String,
    /// The name recorded at the last create, start or rename.
    pub name: String,
    /// Run state.
    pub state: VmState,
    /// The QEMU process id.
    pub pid: Option<u32>,
    /// vCPUs, from `query-cpus-fast`.
    pub vcpus: Option<u32>,
    /// Memory in MiB, from `query-memory-size-summary`.
    pub ram_mb: Option<u64>,
    /// The instance disk (its qcow2 overlay).
    pub disk: PathBuf,
    /// The overlay's backing file: from `query-block` when running, else from `qemu-img info`.
    pub backing_file: Option<PathBuf>,
    /// Where the guest's port 80 is reachable (`127.0.0.1:<port>`), while a process runs.
    pub address: Option<SocketAddr>,
    /// The accelerator this process runs with (`kvm` or `tcg`).
    pub accel: Option<String>,
}

/// A base image in the image directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// The file name, e.g. `debian-tiny.qcow2`.
    pub name: String,
    /// Its absolute path.
    pub path: PathBuf,
    /// `qcow2` or `raw`, from the extension.
    pub format: String,
    /// File size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the file, lowercase hex (cached by path, size and modification time).
    pub sha256: String,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The guest powered off on the ACPI request, within the deadline.
    Clean,
    /// The guest did not: QEMU was told to quit (or killed).
    Forced,
    /// No process was running.
    AlreadyStopped,
}

/// How a guest-cooperative reboot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebooted {
    /// The guest reset itself after Ctrl-Alt-Del, within the deadline.
    Guest,
    /// It did not: the VM was reset (`system_reset`).
    Forced,
}

/// Why an operation failed. The `Display` is a sentence fit for an API message or an
/// instance's error reason; none names a host path except image errors, whose path the caller
/// gave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QemuError {
    /// The id is not 1..64 of `A-Z a-z 0-9 -`.
    #[error("Instance id '{0}' is not valid: use 1 to 64 letters, digits and '-'.")]
    InvalidId(String),
    /// A flavor outside the driver's limits.
    #[error("Invalid machine shape: {0}.")]
    InvalidSpec(String),
    /// No directory for this id.
    #[error("Instance {0} does not exist on this hypervisor.")]
    NotFound(String),
    /// `create` for an id that has a directory already.
    #[error("Instance {0} already exists on this hypervisor.")]
    AlreadyExists(String),
    /// The action does not fit the VM's current state.
    #[error("Cannot {action} instance {id} in state {state}.")]
    WrongState {
        /// The driver action, e.g. `pause`.
        action: &'static str,
        /// The instance id.
        id: String,
        /// Its state at the time.
        state: String,
    },
    /// The image is missing or unusable.
    #[error("Image '{image}' cannot be used: {message}.")]
    Image {
        /// As the caller gave it.
        image: String,
        /// Why.
        message: String,
    },
    /// QEMU (or qemu-img) could not be run or exited with an error.
    #[error("QEMU failed to {action}: {message}.")]
    Qemu {
        /// What was being done, e.g. `start instance 1234`.
        action: String,
        /// QEMU's own words, trimmed.
        message: String,
    },
    /// QEMU refused a QMP command or the monitor could not be reached.
    #[error("QEMU monitor of instance {id} failed on {command}: {message}.")]
    Qmp {
        /// The instance id.
        id: String,
        /// The QMP command.
        command: String,
        /// What went wrong.
        message: String,
    },
    /// Something did not happen within its deadline.
    #[error("Instance {id}: timed out waiting for {what}.")]
    Timeout {
        /// The instance id.
        id: String,
        /// What was awaited.
        what: String,
    },
    /// A file operation in the state or image directory failed.
    #[error("Hypervisor storage error while trying to {action}: {message}.")]
    Io {
        /// e.g. `write the instance metadata`.
        action: String,
        /// The operating system's reason.
        message: String,
    },
}

/// The hypervisor operations the instances layer needs. Every operation on an instance is
/// serialized per instance id; operations on different instances run concurrently.
#[async_trait::async_trait]
pub trait Hypervisor: Send + Sync + 'static {
    /// The base images in the image directory, sorted by name.
    async fn base_images(&self) -> Result<Vec<BaseImage>, QemuError>;
    /// Makes the instance directory and its overlay disk over `spec.image`, starts the VM and
    /// returns once QMP answers.
    async fn create(&self, spec: &VmSpec) -> Result<VmInfo, QemuError>;
    /// Starts an existing, shut-off instance with `spec`'s name, vCPUs and memory (its disk as
    /// it is; `spec.image` is not used). Starting a running instance answers its state.
    async fn start(&self, spec: &VmSpec) -> Result<VmInfo, QemuError>;
    /// ACPI power button, then waits for QEMU to exit up to the shutdown timeout; then `quit`,
    /// then `SIGKILL`.
    async fn shutdown(&self, id: &str) -> Result<Stopped, QemuError>;
    /// Guest-cooperative reboot (Ctrl-Alt-Del); resets the VM if the guest did not reboot
    /// within the shutdown timeout.
    async fn reboot(&self, id: &str) -> Result<Rebooted, QemuError>;
    /// `system_reset`: the power-cycle of a running VM; a paused one is reset and continued.
    async fn hard_reboot(&self, id: &str) -> Result<(), QemuError>;
    /// Stops the vCPUs (`stop`).
    async fn pause(&self, id: &str) -> Result<(), QemuError>;
    /// Continues them (`cont`).
    async fn unpause(&self, id: &str) -> Result<(), QemuError>;
    /// Saves the VM state to the instance directory and ends the process.
    async fn suspend(&self, id: &str) -> Result<(), QemuError>;
    /// Starts the process from the saved state (same machine shape as when suspended) and runs
    /// it; the state file is deleted once it runs.
    async fn resume(&self, id: &str) -> Result<VmInfo, QemuError>;
    /// Cold resize: clean shutdown (forced after the timeout), then a start with `spec`'s vCPUs
    /// and memory. A shut-off instance is only started.
    async fn resize(&self, spec: &VmSpec) -> Result<VmInfo, QemuError>;
    /// Replaces the disk with a fresh overlay over `spec.image` (the old disk's changes are
    /// lost) and (re)starts the VM.
    async fn rebuild(&self, spec: &VmSpec) -> Result<VmInfo, QemuError>;
    /// Writes a standalone qcow2 copy of the instance disk (no backing file) to `dest`,
    /// consistent at one instant (a running VM is paused for the copy).
    async fn snapshot(&self, id: &str, dest: &std::path::Path) -> Result<(), QemuError>;
    /// Ends the process and removes the directory. Deleting a missing instance is a success.
    async fn delete(&self, id: &str) -> Result<(), QemuError>;
    /// Records a new display name (metadata only; the guest's hostname changes at its next
    /// start).
    async fn rename(&self, id: &str, name: &str) -> Result<(), QemuError>;
    /// What QEMU reports about the instance.
    async fn inspect(&self, id: &str) -> Result<VmInfo, QemuError>;
    /// The last `max_bytes` of the serial console log (kept across restarts).
    async fn console(&self, id: &str, max_bytes: usize) -> Result<Vec<u8>, QemuError>;
    /// Re-connects to one instance after a restart of Corral and reports its state.
    async fn attach(&self, id: &str) -> Result<VmInfo, QemuError>;
    /// [`attach`](Self::attach) for every instance directory, sorted by id; each answer on its
    /// own, so one broken instance does not hide the others.
    async fn attach_all(&self) -> Result<Vec<(String, Result<VmInfo, QemuError>)>, QemuError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accel_setting_parses_and_prints() {
        for a in [Accel::Auto, Accel::Kvm, Accel::Tcg] {
            assert_eq!(a.as_str().parse::<Accel>(), Ok(a));
        }
        assert!("host".parse::<Accel>().is_err());
        let e = QemuError::WrongState {
            action: "pause",
            id: "abc".into(),
            state: VmState::Shutoff.to_string(),
        };
        assert_eq!(e.to_string(), "Cannot pause instance abc in state shutoff.");
    }
}
