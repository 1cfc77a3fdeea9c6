//! Clouds as the operator configures them (perspective.md 2), and what each tenant sees of them:
//! one project per visible cloud, its flavors, networks, keypairs, zones, quota and the cloud's
//! base images. None of it is stored: it is derived from the settings and the drivers, with
//! deterministic ids (v5 UUIDs of `"<tenant>/<cloud>/<kind>/<name>"`), so the same object always
//! has the same id and one tenant's ids say nothing about another's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use corral_drivers::{
    CloudDriver, CloudError, CloudImage, Observed, Operation, VmAction, VmReport, VmRequest,
};
use corral_types::perspective::{Flavor, Image, Keypair, Metadata, MetadataEntry, Network, Subnet};
use corral_types::time::rfc3339;
use corral_types::{CloudId, CloudKind, ImageId, ImageState, TenantId};
use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}

/// One cloud of the `clouds` setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    pub id: CloudId,
    #[serde(default)]
    pub name: Option<String>,
    /// The owning tenant's name; absent: shared by every tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The driver registry's name for its driver (`mock`, `qemu`, ...).
    #[serde(rename = "type")]
    pub kind: CloudKind,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Connection data of drivers for real clouds; never exposed by the API.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub identity: Option<String>,
    #[serde(default)]
    pub credential: Option<String>,
    #[serde(default)]
    pub options: CloudOptions,
}

/// A cloud's `options` table: what every tenant's project in the cloud gets, which core reads,
/// and the driver's own options, which core passes on unread to the driver registry
/// (`corral_drivers::CloudRegistry`). The driver refuses keys it does not know, so a typo in
/// any option still refuses the start, naming the cloud.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CloudOptions {
    #[serde(default)]
    pub flavors: Vec<FlavorConfig>,
    #[serde(default)]
    pub availability_zones: Vec<String>,
    /// Per tenant project.
    #[serde(default)]
    pub quota: QuotaConfig,
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    #[serde(default)]
    pub keypairs: Vec<KeypairConfig>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Every other key: the driver's options (`delay_ms` of `mock`, `image_dir` of `qemu`, ...),
    /// in the same table so that existing config files keep loading.
    #[serde(flatten)]
    pub driver: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlavorConfig {
    pub name: String,
    /// MiB.
    pub ram: i64,
    pub vcpus: i64,
    #[serde(default)]
    pub root_disk: i64,
    #[serde(default)]
    pub ephemeral_disk: i64,
    #[serde(default)]
    pub has_swap: bool,
    #[serde(default = "yes")]
    pub is_public: bool,
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub instances: Option<i64>,
    pub vcpus: Option<i64>,
    /// MiB.
    pub ram: Option<i64>,
    /// GiB.
    pub disk: Option<i64>,
    pub ips: Option<i64>,
    pub security_groups: Option<i64>,
    pub volumes: Option<i64>,
    pub keypairs: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub name: String,
    #[serde(default)]
    pub shared: bool,
    #[serde(default)]
    pub subnets: Vec<SubnetConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetConfig {
    pub name: String,
    pub cidr: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default = "yes")]
    pub dhcp: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeypairConfig {
    pub name: String,
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default)]
    pub public_key: String,
}

/// Builds a cloud's driver again, for the retries of an unavailable cloud: the driver, or why
/// it still cannot work.
pub type Rebuild = Arc<dyn Fn() -> Result<Arc<dyn CloudDriver>, String> + Send + Sync>;

/// A configured cloud with its driver.
pub struct Cloud {
    pub config: CloudConfig,
    live: RwLock<Live>,
    /// The driver's own type name, which rows record as `cloud_type` (the configured type while
    /// the cloud is unavailable).
    kind: CloudKind,
    /// Set when the cloud started unavailable: how the retries build its driver.
    rebuild: Option<Rebuild>,
    base_images: RwLock<Vec<CloudImage>>,
    /// When the base images were listed (their `created`/`timestamp`).
    listed_at: RwLock<i64>,
    /// How long an instance call of the driver took lately: how wide a bulk action needs to
    /// fan out.
    pace: Pace,
}

/// The driver a cloud has now; swapped when an unavailable cloud comes good.
struct Live {
    driver: Arc<dyn CloudDriver>,
    operations: BTreeSet<Operation>,
    /// Why the cloud cannot work (a missing program or directory); `None` when it can.
    unavailable: Option<String>,
}

/// A moving average of call durations in nanoseconds, 0 before the first call. Racing updates
/// may lose one sample, which an average can afford.
#[derive(Debug, Default)]
struct Pace(AtomicU64);

impl Pace {
    fn note(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let old = self.0.load(Ordering::Relaxed);
        // Weight 1/8: a run of slow calls moves it, one outlier does not.
        let new = if old == 0 { took } else { old - old / 8 + took / 8 };
        self.0.store(new.max(1), Ordering::Relaxed);
    }

    fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

/// The stand-in driver of an unavailable cloud: it supports nothing and every call fails with
/// the reason (a job that was already running on the cloud fails with it).
struct Unavailable(String);

#[async_trait::async_trait]
impl CloudDriver for Unavailable {
    fn cloud_type(&self) -> &'static str {
        "unavailable"
    }
    fn operations(&self) -> BTreeSet<Operation> {
        BTreeSet::new()
    }
    async fn images(&self) -> Result<Vec<CloudImage>, CloudError> {
        Err(CloudError(self.0.clone()))
    }
    async fn launch(&self, _vm: &VmRequest) -> Result<VmReport, CloudError> {
        Err(CloudError(self.0.clone()))
    }
    async fn act(&self, _vm: &VmRequest, _action: VmAction) -> Result<VmReport, CloudError> {
        Err(CloudError(self.0.clone()))
    }
    async fn snapshot(
        &self,
        _vm: &VmRequest,
        _image_id: &str,
        _name: &str,
    ) -> Result<CloudImage, CloudError> {
        Err(CloudError(self.0.clone()))
    }
    async fn delete_image(&self, _real_id: &str) -> Result<(), CloudError> {
        Err(CloudError(self.0.clone()))
    }
    async fn image_in_use(&self, _real_id: &str) -> Result<bool, CloudError> {
        Err(CloudError(self.0.clone()))
    }
    async fn console(&self, _vm_id: &str, _max_bytes: usize) -> Result<Vec<u8>, CloudError> {
        Err(CloudError(self.0.clone()))
    }
    async fn observe(&self, _vm_ids: &[String]) -> Result<Vec<(String, Observed, VmReport)>, CloudError> {
        Err(CloudError(self.0.clone()))
    }
}

/// A v5 UUID of `tenant/cloud/kind/name` in the URL namespace (perspective 1, "Ids").
pub fn object_id(tenant: &TenantId, cloud: &CloudId, kind: &str, name: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{}/{cloud}/{kind}/{name}", tenant.as_str()).as_bytes(),
    )
    .to_string()
}

fn metadata(map: &BTreeMap<String, String>) -> Metadata {
    Metadata {
        entry: map
            .iter()
            .map(|(k, v)| MetadataEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

impl Cloud {
    pub fn new(config: CloudConfig, driver: Arc<dyn CloudDriver>) -> Cloud {
        let operations = driver.operations();
        let kind = CloudKind::from_trusted(driver.cloud_type());
        Cloud {
            config,
            live: RwLock::new(Live {
                driver,
                operations,
                unavailable: None,
            }),
            kind,
            rebuild: None,
            base_images: RwLock::default(),
            listed_at: RwLock::new(corral_types::time::now_ms()),
            pace: Pace::default(),
        }
    }

    /// A cloud whose driver cannot work now, for `reason`: the server starts without it, launches
    /// into it answer 409 with the reason, and [`Clouds::retry_unavailable`] builds it again with
    /// `rebuild`.
    pub fn unavailable(config: CloudConfig, reason: String, rebuild: Rebuild) -> Cloud {
        let kind = config.kind.clone();
        Cloud {
            config,
            live: RwLock::new(Live {
                driver: Arc::new(Unavailable(reason.clone())),
                operations: BTreeSet::new(),
                unavailable: Some(reason),
            }),
            kind,
            rebuild: Some(rebuild),
            base_images: RwLock::default(),
            listed_at: RwLock::new(corral_types::time::now_ms()),
            pace: Pace::default(),
        }
    }

    /// The driver now (a stand-in that fails every call while the cloud is unavailable).
    pub fn driver(&self) -> Arc<dyn CloudDriver> {
        match self.live.read() {
            Ok(l) => l.driver.clone(),
            Err(p) => p.into_inner().driver.clone(),
        }
    }

    /// Why the cloud cannot work now; `None` when it can.
    pub fn unavailable_reason(&self) -> Option<String> {
        match self.live.read() {
            Ok(l) => l.unavailable.clone(),
            Err(p) => p.into_inner().unavailable.clone(),
        }
    }

    /// Builds the driver of an unavailable cloud again; true when it works now (its base images
    /// are listed then). An available cloud answers true at once.
    pub async fn retry(&self) -> bool {
        let Some(rebuild) = self.rebuild.clone() else {
            return true;
        };
        if self.unavailable_reason().is_none() {
            return true;
        }
        let built = tokio::task::spawn_blocking(move || rebuild())
            .await
            .unwrap_or_else(|e| Err(format!("building the driver failed: {e}")));
        match built {
            Ok(driver) => {
                let operations = driver.operations();
                if let Ok(mut l) = self.live.write() {
                    *l = Live {
                        driver,
                        operations,
                        unavailable: None,
                    };
                }
                tracing::info!(cloud = %self.id(), "the cloud is available now");
                match tokio::time::timeout(std::time::Duration::from_secs(10), self.refresh_images()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(cloud = %self.id(), "cannot list the cloud's images: {e}"),
                    Err(_) => tracing::warn!(cloud = %self.id(), "listing the cloud's images timed out"),
                }
                true
            }
            Err(reason) => {
                tracing::warn!(cloud = %self.id(), "the cloud is still unavailable: {reason}");
                if let Ok(mut l) = self.live.write() {
                    l.driver = Arc::new(Unavailable(reason.clone()));
                    l.unavailable = Some(reason);
                }
                false
            }
        }
    }

    /// Notes how long one instance call of the driver took.
    pub fn note_call(&self, took: Duration) {
        self.pace.note(took);
    }

    /// How long an instance call of the driver takes lately; `None` before the first call.
    pub fn pace(&self) -> Option<Duration> {
        self.pace.get()
    }

    pub fn id(&self) -> &CloudId {
        &self.config.id
    }

    pub fn kind(&self) -> &CloudKind {
        &self.kind
    }

    pub fn supports(&self, op: Operation) -> bool {
        self.operations().contains(&op)
    }

    /// What the driver supports now (nothing while the cloud is unavailable).
    pub fn operations(&self) -> BTreeSet<Operation> {
        match self.live.read() {
            Ok(l) => l.operations.clone(),
            Err(p) => p.into_inner().operations.clone(),
        }
    }

    /// Whether `tenant_name` sees this cloud.
    pub fn visible_to(&self, tenant_name: &str) -> bool {
        self.config.tenant.as_deref().is_none_or(|t| t == tenant_name)
    }

    /// Reads the base images from the driver again.
    pub async fn refresh_images(&self) -> Result<(), corral_drivers::CloudError> {
        let images = self.driver().images().await?;
        if let Ok(mut w) = self.base_images.write() {
            *w = images;
        }
        if let Ok(mut w) = self.listed_at.write() {
            *w = corral_types::time::now_ms();
        }
        Ok(())
    }

    pub fn base_images(&self) -> Vec<CloudImage> {
        self.base_images.read().map(|i| i.clone()).unwrap_or_default()
    }

    pub fn project_id(&self, tenant: &TenantId) -> String {
        object_id(tenant, self.id(), "project", tenant.as_str())
    }

    pub fn quota(&self) -> QuotaConfig {
        self.config.options.quota
    }

    pub fn flavors(&self, tenant: &TenantId) -> Vec<Flavor> {
        self.config
            .options
            .flavors
            .iter()
            .map(|f| Flavor {
                id: object_id(tenant, self.id(), "flavor", &f.name),
                name: f.name.clone(),
                ram: f.ram,
                vcpus: f.vcpus,
                root_disk: f.root_disk,
                ephemeral_disk: f.ephemeral_disk,
                has_swap: f.has_swap,
                is_public: f.is_public,
                notes: f.notes.clone(),
            })
            .collect()
    }

    pub fn networks(&self, tenant: &TenantId) -> Vec<Network> {
        self.config
            .options
            .networks
            .iter()
            .map(|n| Network {
                id: object_id(tenant, self.id(), "network", &n.name),
                name: n.name.clone(),
                state: "ACTIVE".into(),
                is_shared: n.shared,
                subnets: n
                    .subnets
                    .iter()
                    .map(|s| Subnet {
                        id: object_id(tenant, self.id(), "subnet", &format!("{}/{}", n.name, s.name)),
                        name: s.name.clone(),
                        cidr: s.cidr.clone(),
                        protocol_version: if s.cidr.contains(':') { 6 } else { 4 },
                        gateway: s.gateway.clone(),
                        is_dhcp_enabled: s.dhcp,
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn keypairs(&self) -> Vec<Keypair> {
        self.config
            .options
            .keypairs
            .iter()
            .map(|k| Keypair {
                name: k.name.clone(),
                fingerprint: k.fingerprint.clone(),
                public_key: k.public_key.clone(),
            })
            .collect()
    }

    pub fn metadata(&self) -> Metadata {
        metadata(&self.config.options.metadata)
    }

    /// The tenant's view of a base image.
    pub fn base_image_view(&self, tenant: &TenantId, img: &CloudImage) -> Image {
        let at = rfc3339(self.listed_at.read().map(|t| *t).unwrap_or_default());
        Image {
            id: object_id(tenant, self.id(), "image", &img.real_id),
            real_id: img.real_id.clone(),
            timestamp: at.clone(),
            created: at,
            instance_id: String::new(),
            cloud_id: self.id().to_string(),
            cloud_type: self.kind().to_string(),
            project_id: vec![self.project_id(tenant)],
            name: img.name.clone(),
            state: ImageState::Saved.as_str().into(),
            checksum: img.checksum.clone(),
            metadata: Metadata::default(),
        }
    }
}

/// Every configured cloud.
#[derive(Default)]
pub struct Clouds {
    by_id: BTreeMap<CloudId, Arc<Cloud>>,
}

/// `A-Z a-z 0-9 _ -`, 1..255 (perspective 2.1).
fn valid_cloud_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Clouds {
    /// Checks the configuration: valid and unique ids, flavors with positive shapes (the
    /// driver's options were checked by the driver registry).
    pub fn new(clouds: Vec<Cloud>) -> Result<Clouds, String> {
        let mut by_id = BTreeMap::new();
        for c in clouds {
            if !valid_cloud_id(c.id().as_str()) {
                return Err(format!("cloud id '{}': use 1 to 255 of A-Z a-z 0-9 _ -", c.id()));
            }
            let mut names = BTreeSet::new();
            for f in &c.config.options.flavors {
                if f.ram < 1 || f.vcpus < 1 || f.root_disk < 0 || f.ephemeral_disk < 0 {
                    return Err(format!(
                        "cloud '{}': flavor '{}' needs ram and vcpus of at least 1",
                        c.id(),
                        f.name
                    ));
                }
                if !names.insert(f.name.clone()) {
                    return Err(format!(
                        "cloud '{}': flavor '{}' is defined twice",
                        c.id(),
                        f.name
                    ));
                }
            }
            let id = c.id().clone();
            if by_id.insert(id.clone(), Arc::new(c)).is_some() {
                return Err(format!("cloud id '{id}' is used twice"));
            }
        }
        Ok(Clouds { by_id })
    }

    pub fn get(&self, id: &CloudId) -> Option<&Arc<Cloud>> {
        self.by_id.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Cloud>> {
        self.by_id.values()
    }

    /// The clouds a tenant sees, by id.
    pub fn visible<'a>(&'a self, tenant_name: &'a str) -> impl Iterator<Item = &'a Arc<Cloud>> + 'a {
        self.by_id.values().filter(move |c| c.visible_to(tenant_name))
    }

    /// The cloud of a tenant's project id.
    pub fn by_project(&self, tenant: &TenantId, tenant_name: &str, project_id: &str) -> Option<&Arc<Cloud>> {
        self.by_id
            .values()
            .find(|c| c.visible_to(tenant_name) && c.project_id(tenant) == project_id)
    }

    /// A base image by the tenant's id for it, with its cloud.
    pub fn base_image(
        &self,
        tenant: &TenantId,
        tenant_name: &str,
        id: &ImageId,
    ) -> Option<(Arc<Cloud>, CloudImage)> {
        self.visible(tenant_name).find_map(|c| {
            c.base_images()
                .into_iter()
                .find(|img| object_id(tenant, c.id(), "image", &img.real_id) == id.as_str())
                .map(|img| (c.clone(), img))
        })
    }

    /// The clouds that cannot work now, with the reason, by id.
    pub fn unavailable(&self) -> Vec<(CloudId, String)> {
        self.by_id
            .values()
            .filter_map(|c| c.unavailable_reason().map(|r| (c.id().clone(), r)))
            .collect()
    }

    /// Tries every unavailable cloud again (server task, every `cloud_retry_interval_ms`); true
    /// when none is left unavailable.
    pub async fn retry_unavailable(&self) -> bool {
        let mut all = true;
        for c in self.by_id.values() {
            all &= c.retry().await;
        }
        all
    }

    /// `GET /operations` (perspective 7.3): per cloud type with a working driver here, its
    /// operations, sorted (an unavailable cloud adds none).
    pub fn operations(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
        for c in self.by_id.values() {
            out.entry(c.kind().to_string())
                .or_default()
                .extend(c.operations().iter().map(|o| o.as_str()));
        }
        out.into_iter()
            .filter(|(_, ops)| !ops.is_empty())
            .map(|(k, v)| (k, v.into_iter().map(str::to_string).collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_is_unknown_until_a_call_then_follows_a_run_of_calls() {
        let pace = Pace::default();
        assert_eq!(pace.get(), None);
        pace.note(Duration::from_millis(80));
        assert_eq!(pace.get(), Some(Duration::from_millis(80)));
        pace.note(Duration::from_millis(0));
        let after_one = pace.get().unwrap_or_default();
        assert!(
            after_one > Duration::from_millis(60),
            "one fast call moved it to {after_one:?}"
        );
        for _ in 0..60 {
            pace.note(Duration::from_micros(10));
        }
        let settled = pace.get().unwrap_or_default();
        assert!(
            settled < Duration::from_millis(1),
            "a run of fast calls left it at {settled:?}"
        );
        // A zero-length call still counts as a known pace.
        let fast = Pace::default();
        fast.note(Duration::ZERO);
        assert!(fast.get().is_some());
    }
}
