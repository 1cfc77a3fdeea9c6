//! [`QemuCloud`]: the `qemu` cloud type's [`CloudDriver`] (spec perspective 2.1), a thin layer
//! over [`QemuHypervisor`] that speaks Corral's vocabulary: image references instead of paths,
//! [`VmAction`]s instead of hypervisor calls, addresses as strings, errors as sentences.
//!
//! The state directory holds two things, kept apart so that no instance id can ever name an
//! image file:
//!
//! | path | what |
//! |---|---|
//! | `<state_dir>/vms/<instance id>/` | the hypervisor's instance directories |
//! | `<state_dir>/images/<image id>.qcow2` | private images made by [`CloudDriver::snapshot`] |
//!
//! Image references (`real_id`s), which Corral stores and passes back:
//! `base:<file name>` for a base image of the image directory, `private:<image id>` for a
//! snapshot. A reference never carries a path, so a stored reference cannot point Corral at an
//! arbitrary file.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::RwLock;

use super::driver::check_id;
use super::{Accel, Hypervisor, QemuConfig, QemuError, QemuHypervisor, VmInfo, VmSpec, VmState};
use crate::cloud::{
    CloudDriver, CloudError, CloudImage, Observed, Operation, VmAction, VmReport, VmRequest,
    check_option_keys,
};

/// Prefix of a base image reference.
const BASE: &str = "base:";
/// Prefix of a private image (snapshot) reference.
const PRIVATE: &str = "private:";
/// Sub-directory of the instance directories.
const VMS: &str = "vms";
/// Sub-directory of the private images.
const IMAGES: &str = "images";

/// The longest state directory (after symlinks are resolved) the cloud accepts: a unix socket
/// path has at most 107 bytes, and the deepest one is
/// `<state_dir>/vms/<64-byte id>/qmp.sock`.
pub const MAX_STATE_DIR_LEN: usize = 107 - "/vms/".len() - 64 - "/qmp.sock".len();

/// The `qemu` cloud's options (the cloud's `options` object in the server settings, minus
/// flavors, availability zones and quotas, which are the instances layer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCloudOptions {
    /// Base images (`*.qcow2`, `*.raw`) and, unless overridden, `vmlinuz` and `initrd.img`.
    pub image_dir: PathBuf,
    /// Instance directories and private images. At most [`MAX_STATE_DIR_LEN`] bytes once
    /// symlinks are resolved, because QMP sockets live below it: prefer something like
    /// `/var/lib/corral/qemu`.
    pub state_dir: PathBuf,
    /// `auto` (KVM when a probe guest proves it works, else TCG), `kvm` or `tcg`.
    pub accel: Accel,
    /// The guest kernel, default `image_dir/vmlinuz`.
    pub kernel: Option<PathBuf>,
    /// The guest initrd, default `image_dir/initrd.img`.
    pub initrd: Option<PathBuf>,
    /// How long a clean shutdown, a guest reboot, a suspend or a resume may take.
    pub shutdown_timeout: Duration,
    /// `qemu-system-x86_64`, looked up in `PATH` when bare.
    pub binary: PathBuf,
    /// `qemu-img`, likewise.
    pub qemu_img: PathBuf,
}

impl QemuCloudOptions {
    /// Defaults for everything but the two directories.
    pub fn new(image_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        let defaults = QemuConfig::new("", "");
        QemuCloudOptions {
            image_dir: image_dir.into(),
            state_dir: state_dir.into(),
            accel: defaults.accel,
            kernel: None,
            initrd: None,
            shutdown_timeout: defaults.shutdown_timeout,
            binary: defaults.binary,
            qemu_img: defaults.qemu_img,
        }
    }

    /// The keys of a `qemu` cloud's own options.
    pub const KEYS: [&'static str; 8] = [
        "image_dir",
        "state_dir",
        "accel",
        "kernel",
        "initrd",
        "shutdown_timeout_secs",
        "qemu_binary",
        "qemu_img",
    ];

    /// Reads a `qemu` cloud's own options: `image_dir` and `state_dir` (required), `accel`,
    /// `kernel`, `initrd`, `shutdown_timeout_secs`, `qemu_binary`, `qemu_img`. Any other key is
    /// refused: core has taken its own (`flavors`, `quota`, ...) out before.
    pub fn from_options(options: &Value) -> Result<Self, CloudError> {
        check_option_keys(options, "qemu", &Self::KEYS)?;
        let text = |key: &str| -> Result<Option<String>, CloudError> {
            match options.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(CloudError(format!(
                    "Option '{key}' of the qemu cloud must be a non-empty string."
                ))),
            }
        };
        let required = |key: &str| -> Result<String, CloudError> {
            text(key)?.ok_or_else(|| CloudError(format!("The qemu cloud needs the option '{key}'.")))
        };
        let mut o = QemuCloudOptions::new(required("image_dir")?, required("state_dir")?);
        if let Some(a) = text("accel")? {
            o.accel = a.parse().map_err(CloudError)?;
        }
        o.kernel = text("kernel")?.map(PathBuf::from);
        o.initrd = text("initrd")?.map(PathBuf::from);
        if let Some(b) = text("qemu_binary")? {
            o.binary = PathBuf::from(b);
        }
        if let Some(b) = text("qemu_img")? {
            o.qemu_img = PathBuf::from(b);
        }
        match options.get("shutdown_timeout_secs") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(s) if (1..=3600).contains(&s) => o.shutdown_timeout = Duration::from_secs(s),
                _ => {
                    return Err(CloudError(
                        "Option 'shutdown_timeout_secs' of the qemu cloud must be a whole number of seconds from 1 to 3600."
                            .into(),
                    ));
                }
            },
        }
        Ok(o)
    }
}

/// MD5 by path, valid while size and modification time are unchanged.
type ChecksumCache = HashMap<PathBuf, (u64, SystemTime, String)>;

/// The `qemu` cloud: real VMs on this machine. It keeps nothing in memory that the state
/// directory does not hold (apart from checksums), so a new one after a restart of Corral finds
/// everything again ([`CloudDriver::observe`]).
#[derive(Debug)]
pub struct QemuCloud {
    hv: QemuHypervisor,
    images_dir: PathBuf,
    /// Launch and rebuild hold it shared while they resolve an image and lay an overlay over
    /// it; deleting a private image holds it exclusively while it checks that no disk uses the
    /// file and removes it, so a VM can never be left with a deleted backing file.
    image_use: RwLock<()>,
    md5: Mutex<ChecksumCache>,
}

fn lock_std<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn cloud_err(e: QemuError) -> CloudError {
    CloudError(e.to_string())
}

fn io_cloud_err(action: &str) -> impl FnOnce(std::io::Error) -> CloudError + '_ {
    move |e| {
        cloud_err(QemuError::Io {
            action: action.to_string(),
            message: e.to_string(),
        })
    }
}

fn md5_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = md5::Context::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.consume(&buf[..n]);
    }
    Ok(format!("{:x}", ctx.finalize()))
}

/// The report of a VM as the hypervisor sees it: its id, and its forwarded address while a
/// process runs.
fn report_of(info: &VmInfo) -> VmReport {
    VmReport {
        real_id: info.id.clone(),
        addresses: info.address.map(|a| a.to_string()).into_iter().collect(),
    }
}

/// The observed state for a hypervisor state. A process in any other QMP status (`prelaunch`
/// after an interrupted resume, `guest-panicked`, `io-error`, ...) holds the VM with its vCPUs
/// stopped, which is what `paused` means to Corral: it can be resumed (`cont`) or deleted.
fn observed_of(state: &VmState) -> Observed {
    match state {
        VmState::Running => Observed::Running,
        VmState::Paused | VmState::Other(_) => Observed::Paused,
        VmState::Shutoff => Observed::Shutoff,
        VmState::Suspended => Observed::Suspended,
    }
}

/// An image reference, parsed.
#[derive(Debug, PartialEq, Eq)]
enum ImageRef<'a> {
    /// A file name in the image directory.
    Base(&'a str),
    /// A private image id.
    Private(&'a str),
}

/// Parses `base:<file name>` (a plain `*.qcow2` or `*.raw` name, no directory) or
/// `private:<image id>` (an id as instance ids are).
fn parse_reference(real_id: &str) -> Option<ImageRef<'_>> {
    if let Some(name) = real_id.strip_prefix(BASE) {
        let plain = !name.starts_with('.')
            && !name.contains('/')
            && name.len() <= 255
            && (name.ends_with(".qcow2") || name.ends_with(".raw"));
        plain.then_some(ImageRef::Base(name))
    } else if let Some(id) = real_id.strip_prefix(PRIVATE) {
        check_id(id).ok().map(|()| ImageRef::Private(id))
    } else {
        None
    }
}

impl QemuCloud {
    /// Makes the state directory (and its `vms` and `images` sub-directories), checks its
    /// length and finds the QEMU programs. No VM is touched: [`CloudDriver::observe`]
    /// re-attaches them.
    pub fn new(options: QemuCloudOptions) -> Result<QemuCloud, CloudError> {
        std::fs::create_dir_all(&options.state_dir).map_err(io_cloud_err("create the state directory"))?;
        let state_dir =
            std::fs::canonicalize(&options.state_dir).map_err(io_cloud_err("resolve the state directory"))?;
        if state_dir.as_os_str().len() > MAX_STATE_DIR_LEN {
            return Err(CloudError(format!(
                "The qemu cloud's state directory {} is too long for QMP sockets: use at most {MAX_STATE_DIR_LEN} bytes.",
                state_dir.display()
            )));
        }
        let images_dir = state_dir.join(IMAGES);
        std::fs::create_dir_all(&images_dir).map_err(io_cloud_err("create the private image directory"))?;
        let mut config = QemuConfig::new(&options.image_dir, state_dir.join(VMS));
        config.accel = options.accel;
        config.shutdown_timeout = options.shutdown_timeout;
        config.binary = options.binary;
        config.qemu_img = options.qemu_img;
        if let Some(k) = options.kernel {
            config.kernel = k;
        }
        if let Some(i) = options.initrd {
            config.initrd = i;
        }
        let hv = QemuHypervisor::new(config).map_err(cloud_err)?;
        Ok(QemuCloud {
            hv,
            images_dir,
            image_use: RwLock::new(()),
            md5: Mutex::new(HashMap::new()),
        })
    }

    /// The hypervisor underneath, for what the cloud interface does not tell (vCPUs and memory
    /// as QEMU sees them, the instance directory).
    pub fn hypervisor(&self) -> &QemuHypervisor {
        &self.hv
    }

    /// The file an image reference stands for (whether or not it exists). Refuses anything
    /// but `base:<file name>` and `private:<image id>`.
    pub fn image_path(&self, real_id: &str) -> Result<PathBuf, CloudError> {
        match parse_reference(real_id) {
            Some(ImageRef::Base(name)) => Ok(self.hv.config().image_dir.join(name)),
            Some(ImageRef::Private(id)) => Ok(self.private_path(id)),
            None => Err(CloudError(format!(
                "Image reference '{real_id}' is not one of the qemu cloud's."
            ))),
        }
    }

    fn private_path(&self, image_id: &str) -> PathBuf {
        self.images_dir.join(format!("{image_id}.qcow2"))
    }

    /// The image file of a reference, which must exist.
    fn existing_image(&self, real_id: &str) -> Result<PathBuf, CloudError> {
        let path = self.image_path(real_id)?;
        if path.is_file() {
            Ok(path)
        } else {
            Err(CloudError(format!(
                "Image '{real_id}' does not exist in the qemu cloud."
            )))
        }
    }

    /// The hypervisor's spec of a request; `image` is only read by create and rebuild.
    fn spec(vm: &VmRequest, image: PathBuf) -> VmSpec {
        VmSpec {
            id: vm.id.clone(),
            name: vm.name.clone(),
            vcpus: vm.vcpus,
            ram_mb: vm.ram_mb,
            image,
        }
    }

    async fn md5_cached(&self, path: &Path) -> Result<String, CloudError> {
        let md = std::fs::metadata(path).map_err(io_cloud_err("checksum an image"))?;
        let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let cached = lock_std(&self.md5)
            .get(path)
            .filter(|(s, m, _)| *s == md.len() && *m == mtime)
            .map(|(_, _, h)| h.clone());
        if let Some(h) = cached {
            return Ok(h);
        }
        let p = path.to_path_buf();
        let h = tokio::task::spawn_blocking(move || md5_file(&p))
            .await
            .map_err(|e| CloudError(format!("Cannot checksum an image: {e}.")))?
            .map_err(io_cloud_err("checksum an image"))?;
        lock_std(&self.md5).insert(path.to_path_buf(), (md.len(), mtime, h.clone()));
        Ok(h)
    }

    async fn report(&self, id: &str) -> Result<VmReport, CloudError> {
        self.hv
            .inspect(id)
            .await
            .map(|i| report_of(&i))
            .map_err(cloud_err)
    }

    /// True when an instance's disk is backed by `path`. An instance whose disk cannot be read
    /// counts by the image its metadata records, so a broken instance never lets its backing
    /// file be deleted.
    async fn used_by_any(&self, path: &Path) -> Result<bool, CloudError> {
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        for (id, info) in self.hv.attach_all().await.map_err(cloud_err)? {
            let backing = match info {
                Ok(info) => info.backing_file,
                Err(e) => {
                    tracing::warn!(id, "cannot read the disk of instance: {e}; going by its metadata");
                    Some(self.hv.recorded_image(&id).map_err(cloud_err)?)
                }
            };
            let Some(b) = backing else { continue };
            let b = std::fs::canonicalize(&b).unwrap_or(b);
            if b == target {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[async_trait::async_trait]
impl CloudDriver for QemuCloud {
    fn cloud_type(&self) -> &'static str {
        "qemu"
    }

    /// The image directory must be a directory Corral can list: without it no base image
    /// exists and no launch can work.
    fn check(&self) -> Result<(), CloudError> {
        let dir = &self.hv.config().image_dir;
        std::fs::read_dir(dir).map(drop).map_err(|e| {
            CloudError(format!(
                "The qemu cloud's image directory {} cannot be listed: {e}.",
                dir.display()
            ))
        })
    }

    fn operations(&self) -> BTreeSet<Operation> {
        Operation::ALL
            .into_iter()
            .filter(|o| {
                !matches!(
                    o,
                    Operation::MigrateInstance | Operation::AddAddress | Operation::DeleteAddress
                )
            })
            .collect()
    }

    /// The base images; private images are Corral's records, not listed here.
    async fn images(&self) -> Result<Vec<CloudImage>, CloudError> {
        let mut out = Vec::new();
        for b in self.hv.base_images().await.map_err(cloud_err)? {
            out.push(CloudImage {
                real_id: format!("{BASE}{}", b.name),
                checksum: self.md5_cached(&b.path).await?,
                name: b.name,
                size_bytes: b.size_bytes,
            });
        }
        Ok(out)
    }

    async fn launch(&self, vm: &VmRequest) -> Result<VmReport, CloudError> {
        // A retried launch finds the instance: it is only brought back to running.
        match self.hv.inspect(&vm.id).await {
            Ok(info) => match info.state {
                VmState::Running | VmState::Paused | VmState::Other(_) => return Ok(report_of(&info)),
                VmState::Suspended => {
                    return self
                        .hv
                        .resume(&vm.id)
                        .await
                        .map(|i| report_of(&i))
                        .map_err(cloud_err);
                }
                VmState::Shutoff => {}
            },
            Err(QemuError::NotFound(_)) => {}
            Err(e) => return Err(cloud_err(e)),
        }
        let _shared = self.image_use.read().await;
        let image = self.existing_image(&vm.image_real_id)?;
        let info = self.hv.create(&Self::spec(vm, image)).await.map_err(cloud_err)?;
        Ok(report_of(&info))
    }

    async fn act(&self, vm: &VmRequest, action: VmAction) -> Result<VmReport, CloudError> {
        let id = vm.id.as_str();
        let done = |r: Result<VmInfo, QemuError>| r.map(|i| report_of(&i)).map_err(cloud_err);
        match action {
            VmAction::Start => return done(self.hv.start(&Self::spec(vm, PathBuf::new())).await),
            VmAction::Shutdown => self.hv.shutdown(id).await.map(drop),
            VmAction::Reboot => self.hv.reboot(id).await.map(drop),
            VmAction::HardReboot => self.hv.hard_reboot(id).await,
            VmAction::Pause => self.hv.pause(id).await,
            VmAction::Unpause => self.hv.unpause(id).await,
            VmAction::Suspend => self.hv.suspend(id).await,
            VmAction::Resume => {
                // Corral's resume leaves `paused` and `suspended` alike: whichever it is.
                if self.hv.inspect(id).await.map_err(cloud_err)?.state == VmState::Paused {
                    self.hv.unpause(id).await
                } else {
                    return done(self.hv.resume(id).await);
                }
            }
            VmAction::Resize => return done(self.hv.resize(&Self::spec(vm, PathBuf::new())).await),
            VmAction::Rebuild => {
                let _shared = self.image_use.read().await;
                let image = self.existing_image(&vm.image_real_id)?;
                return done(self.hv.rebuild(&Self::spec(vm, image)).await);
            }
            VmAction::Rename => self.hv.rename(id, &vm.name).await,
            VmAction::Delete => {
                self.hv.delete(id).await.map_err(cloud_err)?;
                return Ok(VmReport {
                    real_id: vm.id.clone(),
                    addresses: Vec::new(),
                });
            }
        }
        .map_err(cloud_err)?;
        self.report(id).await
    }

    async fn snapshot(&self, vm: &VmRequest, image_id: &str, name: &str) -> Result<CloudImage, CloudError> {
        check_id(image_id).map_err(|_| {
            CloudError(format!(
                "Image id '{image_id}' is not valid: use 1 to 64 letters, digits and '-'."
            ))
        })?;
        let dest = self.private_path(image_id);
        // A retried job finds the finished file: the hypervisor writes it under another name
        // and renames it only once complete.
        if !dest.is_file() {
            self.hv.snapshot(&vm.id, &dest).await.map_err(cloud_err)?;
        }
        let size_bytes = std::fs::metadata(&dest)
            .map_err(io_cloud_err("read the snapshot"))?
            .len();
        Ok(CloudImage {
            real_id: format!("{PRIVATE}{image_id}"),
            name: name.to_string(),
            checksum: self.md5_cached(&dest).await?,
            size_bytes,
        })
    }

    /// Refused while a disk is backed by the image (as [`image_in_use`](Self::image_in_use)
    /// tells): removing the file would break that disk.
    async fn delete_image(&self, real_id: &str) -> Result<(), CloudError> {
        if matches!(parse_reference(real_id), Some(ImageRef::Base(_))) {
            return Err(CloudError(format!(
                "Image '{real_id}' is a base image of the qemu cloud and cannot be deleted through Corral."
            )));
        }
        let path = self.image_path(real_id)?;
        let _exclusive = self.image_use.write().await;
        if !path.exists() {
            return Ok(());
        }
        if self.used_by_any(&path).await? {
            return Err(CloudError(format!(
                "Image '{real_id}' is in use by an instance and cannot be deleted."
            )));
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_cloud_err("delete the image")(e)),
        }
        lock_std(&self.md5).remove(&path);
        Ok(())
    }

    async fn image_in_use(&self, real_id: &str) -> Result<bool, CloudError> {
        let path = self.image_path(real_id)?;
        self.used_by_any(&path).await
    }

    async fn console(&self, vm_id: &str, max_bytes: usize) -> Result<Vec<u8>, CloudError> {
        self.hv.console(vm_id, max_bytes).await.map_err(cloud_err)
    }

    /// Ids the cloud has no instance of (or that cannot name one) are `Missing`; an instance
    /// whose state cannot be read now is left out of the answer rather than reported missing,
    /// so that Corral never forgets a VM that still exists.
    async fn observe(&self, vm_ids: &[String]) -> Result<Vec<(String, Observed, VmReport)>, CloudError> {
        let mut out = Vec::with_capacity(vm_ids.len());
        for id in vm_ids {
            match self.hv.attach(id).await {
                Ok(info) => out.push((id.clone(), observed_of(&info.state), report_of(&info))),
                Err(QemuError::NotFound(_) | QemuError::InvalidId(_)) => out.push((
                    id.clone(),
                    Observed::Missing,
                    VmReport {
                        real_id: id.clone(),
                        addresses: Vec::new(),
                    },
                )),
                Err(e) => tracing::warn!(id, "cannot observe instance: {e}"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_never_name_a_path() {
        assert_eq!(
            parse_reference("base:debian.qcow2"),
            Some(ImageRef::Base("debian.qcow2"))
        );
        assert_eq!(parse_reference("base:disk.raw"), Some(ImageRef::Base("disk.raw")));
        assert_eq!(
            parse_reference("private:4d1c-7e4e"),
            Some(ImageRef::Private("4d1c-7e4e"))
        );
        for bad in [
            "",
            "debian.qcow2",
            "base:",
            "base:.qcow2",
            "base:../x.qcow2",
            "base:/etc/x.qcow2",
            "base:vmlinuz",
            "private:",
            "private:../x",
            "private:a/b",
            "/abs/path.qcow2",
        ] {
            assert_eq!(parse_reference(bad), None, "{bad}");
        }
    }

    #[test]
    fn options_are_read_from_the_cloud_settings() {
        let o = QemuCloudOptions::from_options(&serde_json::json!({
            "image_dir": "/srv/images", "state_dir": "/var/lib/corral/q", "accel": "tcg",
            "kernel": "/k", "shutdown_timeout_secs": 30,
        }))
        .unwrap();
        assert_eq!(o.image_dir, PathBuf::from("/srv/images"));
        assert_eq!(o.state_dir, PathBuf::from("/var/lib/corral/q"));
        assert_eq!(o.accel, Accel::Tcg);
        assert_eq!(o.kernel, Some(PathBuf::from("/k")));
        assert_eq!(o.initrd, None);
        assert_eq!(o.shutdown_timeout, Duration::from_secs(30));

        let defaults =
            QemuCloudOptions::from_options(&serde_json::json!({"image_dir": "/i", "state_dir": "/s"}))
                .unwrap();
        assert_eq!(defaults, QemuCloudOptions::new("/i", "/s"));
        assert_eq!(defaults.accel, Accel::Auto);

        for bad in [
            serde_json::json!({"state_dir": "/s"}),
            serde_json::json!({"image_dir": "/i", "state_dir": 3}),
            serde_json::json!({"image_dir": "/i", "state_dir": "/s", "accel": "host"}),
            serde_json::json!({"image_dir": "/i", "state_dir": "/s", "shutdown_timeout_secs": 0}),
        ] {
            let e = QemuCloudOptions::from_options(&bad).unwrap_err();
            assert!(e.0.ends_with('.'), "{e}");
        }

        // A typo is refused (core's keys never reach the driver, so none is ignored).
        let e = QemuCloudOptions::from_options(&serde_json::json!({
            "image_dir": "/i", "state_dir": "/s", "acel": "tcg",
        }))
        .unwrap_err();
        assert_eq!(
            e.0,
            "options.acel: unknown option (neither one every cloud has nor one of the qemu driver's: \
             image_dir, state_dir, accel, kernel, initrd, shutdown_timeout_secs, qemu_binary, qemu_img)"
        );
    }

    #[test]
    fn states_map_to_what_corral_observes() {
        assert_eq!(observed_of(&VmState::Running), Observed::Running);
        assert_eq!(observed_of(&VmState::Paused), Observed::Paused);
        assert_eq!(
            observed_of(&VmState::Other("guest-panicked".into())),
            Observed::Paused
        );
        assert_eq!(observed_of(&VmState::Shutoff), Observed::Shutoff);
        assert_eq!(observed_of(&VmState::Suspended), Observed::Suspended);
    }

    #[test]
    fn a_long_state_dir_is_refused_before_anything_runs() {
        let long = format!("/tmp/{}", "d".repeat(MAX_STATE_DIR_LEN));
        let e = QemuCloud::new(QemuCloudOptions::new("/nonexistent", &long));
        let _ = std::fs::remove_dir_all(&long);
        assert!(e.unwrap_err().0.contains("too long"));
    }
}
