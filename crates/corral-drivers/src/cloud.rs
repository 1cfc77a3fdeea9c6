//! Cloud drivers (spec perspective 2.1, 5, 6): what core's instance and image jobs call to make a
//! cloud do something. Core owns the records, the state machine and the jobs; a driver only acts
//! and reports what the cloud says, in plain strings and numbers.
//!
//! Two implementations: [`MockCloud`] here (in-process, configurable latency and failure
//! injection, no network) and the QEMU cloud (`qemu::QemuCloud`), which drives real VMs.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

/// Perspective's `operationType` names (perspective 7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    ListProjects,
    AddInstance,
    AddAddress,
    DeleteInstance,
    DeleteAddress,
    HardRebootInstance,
    ListInstances,
    MigrateInstance,
    PauseInstance,
    RebootInstance,
    RebuildInstance,
    RenameInstance,
    ResizeInstance,
    ResumeInstance,
    StartInstance,
    ShutdownInstance,
    SuspendInstance,
    UnpauseInstance,
    AddImage,
    DeleteImage,
    ListImages,
}

impl Operation {
    pub const ALL: [Operation; 21] = [
        Operation::ListProjects,
        Operation::AddInstance,
        Operation::AddAddress,
        Operation::DeleteInstance,
        Operation::DeleteAddress,
        Operation::HardRebootInstance,
        Operation::ListInstances,
        Operation::MigrateInstance,
        Operation::PauseInstance,
        Operation::RebootInstance,
        Operation::RebuildInstance,
        Operation::RenameInstance,
        Operation::ResizeInstance,
        Operation::ResumeInstance,
        Operation::StartInstance,
        Operation::ShutdownInstance,
        Operation::SuspendInstance,
        Operation::UnpauseInstance,
        Operation::AddImage,
        Operation::DeleteImage,
        Operation::ListImages,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ListProjects => "listProjects",
            Operation::AddInstance => "addInstance",
            Operation::AddAddress => "addAddress",
            Operation::DeleteInstance => "deleteInstance",
            Operation::DeleteAddress => "deleteAddress",
            Operation::HardRebootInstance => "hardRebootInstance",
            Operation::ListInstances => "listInstances",
            Operation::MigrateInstance => "migrateInstance",
            Operation::PauseInstance => "pauseInstance",
            Operation::RebootInstance => "rebootInstance",
            Operation::RebuildInstance => "rebuildInstance",
            Operation::RenameInstance => "renameInstance",
            Operation::ResizeInstance => "resizeInstance",
            Operation::ResumeInstance => "resumeInstance",
            Operation::StartInstance => "startInstance",
            Operation::ShutdownInstance => "shutdownInstance",
            Operation::SuspendInstance => "suspendInstance",
            Operation::UnpauseInstance => "unpauseInstance",
            Operation::AddImage => "addImage",
            Operation::DeleteImage => "deleteImage",
            Operation::ListImages => "listImages",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// A VM as the driver needs to know it: identity, shape, disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRequest {
    /// Corral's instance id (a UUID); drivers may use it as their own id.
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    /// The image to boot from: the driver's own reference (a base image's `real_id`, or the
    /// `real_id` a snapshot answered).
    pub image_real_id: String,
}

/// What the cloud reports about a VM after an action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmReport {
    /// The cloud's id of the VM.
    pub real_id: String,
    /// Addresses reachable from the Corral host (`127.0.0.1:port`, an IP...).
    pub addresses: Vec<String>,
}

/// The state a driver observes a VM in (reconciliation after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Running,
    Paused,
    Shutoff,
    Suspended,
    /// The cloud has no such VM.
    Missing,
}

/// An image the cloud offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudImage {
    pub real_id: String,
    pub name: String,
    /// MD5 (32 hex digits) when known, else empty.
    pub checksum: String,
    pub size_bytes: u64,
}

/// Actions on an existing VM (perspective 5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmAction {
    Start,
    Shutdown,
    Reboot,
    HardReboot,
    Pause,
    Unpause,
    Suspend,
    Resume,
    /// To the request's (new) vcpus and ram.
    Resize,
    /// A fresh disk from the request's (new) image.
    Rebuild,
    Rename,
    Delete,
}

impl VmAction {
    /// The operation type a driver must support for this action.
    pub fn operation(&self) -> Operation {
        match self {
            VmAction::Start => Operation::StartInstance,
            VmAction::Shutdown => Operation::ShutdownInstance,
            VmAction::Reboot => Operation::RebootInstance,
            VmAction::HardReboot => Operation::HardRebootInstance,
            VmAction::Pause => Operation::PauseInstance,
            VmAction::Unpause => Operation::UnpauseInstance,
            VmAction::Suspend => Operation::SuspendInstance,
            VmAction::Resume => Operation::ResumeInstance,
            VmAction::Resize => Operation::ResizeInstance,
            VmAction::Rebuild => Operation::RebuildInstance,
            VmAction::Rename => Operation::RenameInstance,
            VmAction::Delete => Operation::DeleteInstance,
        }
    }
}

/// A driver failure; the text becomes the instance's or image's error reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CloudError(pub String);

/// One cloud's driver.
#[async_trait::async_trait]
pub trait CloudDriver: Send + Sync + 'static {
    /// The cloud type (`mock`, `qemu`).
    fn cloud_type(&self) -> &'static str;

    /// The operations this driver really supports.
    fn operations(&self) -> BTreeSet<Operation>;

    /// Whether what the driver needs from its environment is there now (a directory, a
    /// program): an error makes the cloud unavailable until a retry finds it good.
    fn check(&self) -> Result<(), CloudError> {
        Ok(())
    }

    /// The cloud's base images.
    async fn images(&self) -> Result<Vec<CloudImage>, CloudError>;

    /// Creates and boots a VM. Idempotent for the same id: a retried job may call it again.
    async fn launch(&self, vm: &VmRequest) -> Result<VmReport, CloudError>;

    /// Runs an action on a VM; `Delete` of a VM the cloud no longer has succeeds.
    async fn act(&self, vm: &VmRequest, action: VmAction) -> Result<VmReport, CloudError>;

    /// Snapshots a VM's disk into a new standalone image `image_id`; answers the image.
    async fn snapshot(&self, vm: &VmRequest, image_id: &str, name: &str) -> Result<CloudImage, CloudError>;

    /// Deletes an image made by [`snapshot`](Self::snapshot); a missing one succeeds.
    async fn delete_image(&self, real_id: &str) -> Result<(), CloudError>;

    /// True when a VM's disk is backed by this image (it cannot be deleted then).
    async fn image_in_use(&self, real_id: &str) -> Result<bool, CloudError>;

    /// The tail of the VM's serial console, at most `max_bytes`; empty when the cloud keeps none.
    async fn console(&self, vm_id: &str, max_bytes: usize) -> Result<Vec<u8>, CloudError>;

    /// What the cloud says about these VMs now (after a restart of Corral).
    async fn observe(&self, vm_ids: &[String]) -> Result<Vec<(String, Observed, VmReport)>, CloudError>;
}

/// Options of a `mock` cloud (perspective 2.1): latency and injected faults.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// How long every operation takes.
    pub delay: Duration,
    /// Operations that fail (after the delay) with "injected failure".
    pub fail: BTreeSet<Operation>,
    /// Operations that never finish (the job's deadline ends them).
    pub hang: BTreeSet<Operation>,
    /// Base image names the cloud offers.
    pub images: Vec<String>,
}

impl MockOptions {
    /// The keys of a `mock` cloud's own options.
    pub const KEYS: [&'static str; 4] = ["delay_ms", "fail", "hang", "images"];

    /// Reads a `mock` cloud's own options: `delay_ms` (default `default_delay`, the server's
    /// `mock_delay`), `fail` and `hang` (operation type names), `images` (names). Any other key
    /// is refused: core has taken its own keys out before.
    pub fn from_options(options: &Value, default_delay: Duration) -> Result<MockOptions, CloudError> {
        check_option_keys(options, "mock", &Self::KEYS)?;
        let delay = match options.get("delay_ms") {
            None | Some(Value::Null) => default_delay,
            Some(v) => Duration::from_millis(v.as_u64().ok_or_else(|| {
                CloudError("options.delay_ms: must be a whole number of milliseconds".into())
            })?),
        };
        let names = |key: &str, what: &str| -> Result<Vec<String>, CloudError> {
            match options.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| CloudError(format!("options.{key}: must be a list of {what}"))),
                Some(_) => Err(CloudError(format!("options.{key}: must be a list of {what}"))),
            }
        };
        let operations = |key: &str| -> Result<BTreeSet<Operation>, CloudError> {
            names(key, "operation types")?
                .iter()
                .map(|n| {
                    Operation::parse(n)
                        .ok_or_else(|| CloudError(format!("options.{key}: unknown operation type '{n}'")))
                })
                .collect()
        };
        Ok(MockOptions {
            delay,
            fail: operations("fail")?,
            hang: operations("hang")?,
            images: names("images", "image names")?,
        })
    }
}

/// Refuses a driver's options that are not a table or hold a key the driver does not know.
/// The driver gets only the keys core did not take, so an unknown one is a typo somewhere.
pub(crate) fn check_option_keys(options: &Value, driver: &str, known: &[&str]) -> Result<(), CloudError> {
    let table = match options {
        Value::Null => return Ok(()),
        Value::Object(table) => table,
        _ => return Err(CloudError("options: must be a table".into())),
    };
    match table.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(CloudError(format!(
            "options.{key}: unknown option (neither one every cloud has nor one of the {driver} driver's: {})",
            known.join(", ")
        ))),
    }
}

/// Perspective's simulated cloud: every operation, no network, no state of its own (the
/// instance and image records in Corral's store are the cloud's state, so a restart is
/// consistent by construction).
#[derive(Debug, Clone)]
pub struct MockCloud {
    opts: MockOptions,
}

impl MockCloud {
    pub fn new(opts: MockOptions) -> MockCloud {
        MockCloud { opts }
    }

    async fn perform(&self, op: Operation) -> Result<(), CloudError> {
        if self.opts.hang.contains(&op) {
            std::future::pending::<()>().await;
        }
        if !self.opts.delay.is_zero() {
            tokio::time::sleep(self.opts.delay).await;
        }
        if self.opts.fail.contains(&op) {
            return Err(CloudError(format!("{}: injected failure", op.as_str())));
        }
        Ok(())
    }

    /// A stable private address per VM, from its id.
    fn report(vm: &VmRequest) -> VmReport {
        let h = vm
            .id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        VmReport {
            real_id: format!("mock-{}", vm.id),
            addresses: vec![format!(
                "10.{}.{}.{}",
                (h >> 16) & 0xff,
                (h >> 8) & 0xff,
                (h & 0xfd) + 2
            )],
        }
    }
}

#[async_trait::async_trait]
impl CloudDriver for MockCloud {
    fn cloud_type(&self) -> &'static str {
        "mock"
    }

    fn operations(&self) -> BTreeSet<Operation> {
        Operation::ALL.into_iter().collect()
    }

    async fn images(&self) -> Result<Vec<CloudImage>, CloudError> {
        Ok(self
            .opts
            .images
            .iter()
            .map(|name| CloudImage {
                real_id: format!("mock-image-{name}"),
                name: name.clone(),
                checksum: String::new(),
                size_bytes: 0,
            })
            .collect())
    }

    async fn launch(&self, vm: &VmRequest) -> Result<VmReport, CloudError> {
        self.perform(Operation::AddInstance).await?;
        Ok(Self::report(vm))
    }

    async fn act(&self, vm: &VmRequest, action: VmAction) -> Result<VmReport, CloudError> {
        self.perform(action.operation()).await?;
        Ok(Self::report(vm))
    }

    async fn snapshot(&self, _vm: &VmRequest, image_id: &str, name: &str) -> Result<CloudImage, CloudError> {
        self.perform(Operation::AddImage).await?;
        Ok(CloudImage {
            real_id: format!("mock-image-{image_id}"),
            name: name.to_string(),
            checksum: String::new(),
            size_bytes: 0,
        })
    }

    async fn delete_image(&self, _real_id: &str) -> Result<(), CloudError> {
        self.perform(Operation::DeleteImage).await
    }

    async fn image_in_use(&self, _real_id: &str) -> Result<bool, CloudError> {
        Ok(false)
    }

    async fn console(&self, _vm_id: &str, _max_bytes: usize) -> Result<Vec<u8>, CloudError> {
        Ok(Vec::new())
    }

    async fn observe(&self, vm_ids: &[String]) -> Result<Vec<(String, Observed, VmReport)>, CloudError> {
        // The records are the mock's truth: nothing to correct.
        let _ = vm_ids;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
        }
        assert_eq!(Operation::parse("nope"), None);
    }

    #[test]
    fn mock_options_are_read_from_the_cloud_settings() {
        let o = MockOptions::from_options(
            &serde_json::json!({
                "delay_ms": 50, "fail": ["rebootInstance"], "hang": ["pauseInstance", "addImage"],
                "images": ["debian", "alpine"],
            }),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(o.delay, Duration::from_millis(50));
        assert_eq!(o.fail, [Operation::RebootInstance].into_iter().collect());
        assert_eq!(
            o.hang,
            [Operation::PauseInstance, Operation::AddImage]
                .into_iter()
                .collect()
        );
        assert_eq!(o.images, ["debian", "alpine"]);

        // Nothing given: the server's default delay, no faults, no images.
        for empty in [serde_json::json!({}), Value::Null] {
            let o = MockOptions::from_options(&empty, Duration::from_secs(2)).unwrap();
            assert_eq!(o.delay, Duration::from_secs(2));
            assert!(o.fail.is_empty() && o.hang.is_empty() && o.images.is_empty());
        }

        for (bad, message) in [
            (
                serde_json::json!({"fail": ["nope"]}),
                "options.fail: unknown operation type 'nope'",
            ),
            (
                serde_json::json!({"hang": "rebootInstance"}),
                "options.hang: must be a list of operation types",
            ),
            (
                serde_json::json!({"images": [1]}),
                "options.images: must be a list of image names",
            ),
            (
                serde_json::json!({"delay_ms": -1}),
                "options.delay_ms: must be a whole number of milliseconds",
            ),
            (
                serde_json::json!({"delay_ms": "5"}),
                "options.delay_ms: must be a whole number of milliseconds",
            ),
            (serde_json::json!(["delay_ms"]), "options: must be a table"),
            (
                serde_json::json!({"delay": 5}),
                "options.delay: unknown option (neither one every cloud has nor one of the mock driver's: \
                 delay_ms, fail, hang, images)",
            ),
        ] {
            let e = MockOptions::from_options(&bad, Duration::ZERO).unwrap_err();
            assert_eq!(e.0, message, "{bad}");
        }
    }

    #[tokio::test]
    async fn the_mock_fails_what_it_is_told_to() {
        let m = MockCloud::new(MockOptions {
            fail: [Operation::RebootInstance].into_iter().collect(),
            ..MockOptions::default()
        });
        let vm = VmRequest {
            id: "a".into(),
            name: "a".into(),
            vcpus: 1,
            ram_mb: 512,
            disk_gb: 1,
            image_real_id: "x".into(),
        };
        assert!(m.act(&vm, VmAction::Reboot).await.is_err());
        let r = m.act(&vm, VmAction::HardReboot).await.unwrap();
        assert_eq!(r, m.launch(&vm).await.unwrap());
    }
}
