//! Perspective instances and images (perspective.md 5, 6): bulk requests answered at once with
//! per-id results, the state machine checked in the API, and each accepted action carried out by
//! a job through the cloud's driver. Every transitional state ends: the job's deadline
//! (`instance_transition_timeout`) sets `error` with a reason when the driver hangs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use corral_drivers::{Operation, VmAction, VmRequest};
use corral_store::{
    ActionEvent, ImageRow, InstanceChange, InstanceEnd, InstanceKey, InstanceRow, JobRow, NewEvent, NewJob,
    Quota, Transition,
};
use corral_types::perspective::{Console, Flavor, Image, Instance, InstanceEvent, Metadata};
use corral_types::time::{now_ms, rfc3339};
use corral_types::{
    Access, CloudId, Error, ImageId, ImageState, InstanceId, InstanceState, OpCtx, Parsed, TenantId,
    TenantScope,
};
use serde::{Deserialize, Serialize};

use crate::clouds::{Cloud, Clouds};
use crate::jobs::{JobCtx, JobError, JobHandler, new_job};
use crate::perspective::Perspective;

/// Carries out one action on a batch of instances (one, for a rename or a single-id request),
/// holding one worker slot: the driver calls run one at a time.
pub const INSTANCE_JOB: &str = "instance.action";
/// One bulk request of many instances: a slotless job that fans out into at most `workers`
/// `instance.action` jobs, one per slot the tenant has.
pub const BULK_JOB: &str = "instance.bulk";
pub const IMAGE_JOB: &str = "image.action";

/// An action of `PUT /instances/{action}` and friends (perspective 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Launch,
    Start,
    Shutdown,
    Reboot,
    HardReboot,
    Pause,
    Unpause,
    Resume,
    Suspend,
    Resize,
    Rebuild,
    Rename,
    Delete,
}

impl Action {
    /// The verb of messages ("Cannot reboot instance in state shutoff").
    fn verb(self) -> &'static str {
        match self {
            Action::Launch => "launch",
            Action::Start => "start",
            Action::Shutdown => "shutdown",
            Action::Reboot => "reboot",
            Action::HardReboot => "hard reboot",
            Action::Pause => "pause",
            Action::Unpause | Action::Resume => "resume",
            Action::Suspend => "suspend",
            Action::Resize => "resize",
            Action::Rebuild => "rebuild",
            Action::Rename => "rename",
            Action::Delete => "delete",
        }
    }

    /// States it may start from, the state set at once, the end state. Rename changes no
    /// state; a delete ends with the row gone.
    fn states(
        self,
    ) -> (
        &'static [InstanceState],
        Option<InstanceState>,
        Option<InstanceState>,
    ) {
        use InstanceState as S;
        let (from, transitional, end): (&'static [InstanceState], _, _) = match self {
            Action::Launch => (&[], S::Queued, S::Launched),
            Action::Start => (&[S::Shutoff, S::Starting], S::Starting, S::Launched),
            Action::Shutdown => (&[S::Launched, S::ShuttingDown], S::ShuttingDown, S::Shutoff),
            Action::Reboot => (&[S::Launched, S::Rebooting], S::Rebooting, S::Launched),
            Action::HardReboot => (&[S::Launched, S::HardRebooting], S::HardRebooting, S::Launched),
            Action::Pause => (&[S::Launched, S::Pausing], S::Pausing, S::Paused),
            Action::Unpause | Action::Resume => {
                (&[S::Paused, S::Suspended, S::Resuming], S::Resuming, S::Launched)
            }
            Action::Suspend => (&[S::Launched, S::Suspending], S::Suspending, S::Suspended),
            Action::Resize => (&[S::Launched, S::Resizing], S::Resizing, S::Launched),
            Action::Rebuild => (&[S::Launched, S::Rebuilding], S::Rebuilding, S::Launched),
            Action::Rename => return (&[], None, None),
            Action::Delete => {
                return (
                    &[
                        S::Launched,
                        S::Shutoff,
                        S::Suspended,
                        S::Paused,
                        S::Error,
                        S::Deleting,
                    ],
                    Some(S::Deleting),
                    None,
                );
            }
        };
        (from, Some(transitional), Some(end))
    }

    /// Whether an instance in `state` is still this action's to finish: a newer action (or a
    /// delete) takes over from it. Its job then does nothing, and its failure sets no `error`.
    fn in_charge(self, state: InstanceState) -> bool {
        match self {
            Action::Launch => matches!(state, InstanceState::Queued | InstanceState::Launching),
            Action::Rename => state != InstanceState::Deleting,
            a => a.states().1 == Some(state),
        }
    }

    fn vm_action(self) -> Option<VmAction> {
        Some(match self {
            Action::Launch => return None,
            Action::Start => VmAction::Start,
            Action::Shutdown => VmAction::Shutdown,
            Action::Reboot => VmAction::Reboot,
            Action::HardReboot => VmAction::HardReboot,
            Action::Pause => VmAction::Pause,
            Action::Unpause => VmAction::Unpause,
            Action::Resume => VmAction::Resume,
            Action::Suspend => VmAction::Suspend,
            Action::Resize => VmAction::Resize,
            Action::Rebuild => VmAction::Rebuild,
            Action::Rename => VmAction::Rename,
            Action::Delete => VmAction::Delete,
        })
    }

    fn operation(self) -> Operation {
        match self.vm_action() {
            Some(a) => a.operation(),
            None => Operation::AddInstance,
        }
    }
}

/// The input of an instance job as written for one instance (a rename; every job of an
/// older Corral).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstanceJob {
    instance: InstanceId,
    action: Action,
    /// The history entry to complete (= the job id at creation).
    event: String,
}

/// Instances that one job moves with one driver action.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    action: Action,
    instances: Vec<InstanceId>,
}

/// The input of a bulk job and of the batch jobs it fans out into: the instances of one
/// request, by the driver action each needs (a resume is an unpause for paused instances).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BatchJob {
    /// The history entry every instance of the request has (= the request's job id).
    event: String,
    groups: Vec<Group>,
    /// The clouds of the instances, whose pace decides how wide the bulk job fans out (none
    /// in a job written by an older Corral: as wide as the tenant's slots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    clouds: Vec<CloudId>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AnyInstanceJob {
    Batch(BatchJob),
    Single(InstanceJob),
}

impl BatchJob {
    fn parse(payload: &str) -> Result<BatchJob, String> {
        match serde_json::from_str::<AnyInstanceJob>(payload) {
            Ok(AnyInstanceJob::Batch(b)) => Ok(b),
            Ok(AnyInstanceJob::Single(j)) => Ok(BatchJob {
                event: j.event,
                groups: vec![Group {
                    action: j.action,
                    instances: vec![j.instance],
                }],
                clouds: Vec::new(),
            }),
            Err(e) => Err(e.to_string()),
        }
    }

    fn len(&self) -> usize {
        self.groups.iter().map(|g| g.instances.len()).sum()
    }

    /// Splits the instances into `parts` batches of nearly equal size, in order.
    fn split(&self, parts: usize) -> Vec<BatchJob> {
        let all: Vec<(Action, &InstanceId)> = self
            .groups
            .iter()
            .flat_map(|g| g.instances.iter().map(move |i| (g.action, i)))
            .collect();
        let size = all.len().div_ceil(parts.max(1)).max(1);
        all.chunks(size)
            .map(|chunk| {
                let mut groups: Vec<Group> = Vec::new();
                for (action, id) in chunk {
                    match groups.last_mut() {
                        Some(g) if g.action == *action => g.instances.push((*id).clone()),
                        _ => groups.push(Group {
                            action: *action,
                            instances: vec![(*id).clone()],
                        }),
                    }
                }
                BatchJob {
                    event: self.event.clone(),
                    groups,
                    clouds: self.clouds.clone(),
                }
            })
            .collect()
    }
}

/// The input of an image job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageJob {
    image: ImageId,
    /// `snapshot` or `delete`.
    action: String,
}

fn not_found_instance(id: &InstanceId) -> Error {
    Error::not_found(format!("Instance with id = {id} not found"))
}

fn not_found_image(id: &ImageId) -> Error {
    Error::not_found(format!("Image with id = {id} not found"))
}

fn cloud_gone(cloud_id: &CloudId) -> String {
    format!("Cloud {cloud_id} is no longer configured")
}

/// What became of one item of a bulk request (perspective 5.2). Core decides the outcome; the
/// API alone turns it into the wire's per-item status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkOutcome {
    /// Accepted: the state set at once (`rebooting`, `queued`, ...) or `renamed`.
    Accepted(String),
    /// Already in the action's transitional state (named here): nothing new was started.
    Already(String),
    /// The id, or something the item names (project, flavor, image...), does not exist for
    /// the tenant; the message says which.
    NotFound(String),
    /// Refused: wrong state, cloud gone or disabled, operation unsupported, quota exceeded,
    /// image in use. The message is the reason.
    Conflict(String),
}

/// One per-item answer of a bulk request, in request order. `id` is `None` when the item
/// created nothing (a refused launch or snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem<I> {
    pub id: Option<I>,
    pub outcome: BulkOutcome,
}

impl<I> BulkItem<I> {
    fn of(id: I, outcome: BulkOutcome) -> Self {
        BulkItem {
            id: Some(id),
            outcome,
        }
    }

    fn none(outcome: BulkOutcome) -> Self {
        BulkItem { id: None, outcome }
    }
}

/// A refused item that created nothing (launch, snapshot).
fn refused<I>(outcome: BulkOutcome) -> Option<BulkItem<I>> {
    Some(BulkItem::none(outcome))
}

fn instance_item(id: &InstanceId, outcome: BulkOutcome) -> BulkItem<InstanceId> {
    BulkItem::of(id.clone(), outcome)
}

fn image_item(id: &ImageId, outcome: BulkOutcome) -> BulkItem<ImageId> {
    BulkItem::of(id.clone(), outcome)
}

/// One item of `POST /instances` as the API parsed it (perspective 5.4); the references are
/// checked here, per item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchItem {
    pub name: String,
    pub project: String,
    pub flavor: String,
    pub image: ImageId,
    pub keypair: Option<String>,
    pub networks: Vec<String>,
    pub zone: Option<String>,
    pub metadata: Metadata,
}

/// One item of `POST /images` as the API parsed it (perspective 6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotItem {
    pub name: String,
    pub instance: InstanceId,
    /// `None`: the instance's project.
    pub projects: Option<Vec<String>>,
    pub metadata: Metadata,
}

/// The actions of `PUT /instances/{action}` (perspective 5.6); the others have their own calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleAction {
    Start,
    Shutdown,
    Reboot,
    HardReboot,
    Pause,
    Resume,
    Suspend,
}

impl From<SimpleAction> for Action {
    fn from(a: SimpleAction) -> Action {
        match a {
            SimpleAction::Start => Action::Start,
            SimpleAction::Shutdown => Action::Shutdown,
            SimpleAction::Reboot => Action::Reboot,
            SimpleAction::HardReboot => Action::HardReboot,
            SimpleAction::Pause => Action::Pause,
            SimpleAction::Resume => Action::Resume,
            SimpleAction::Suspend => Action::Suspend,
        }
    }
}

fn json<T: Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, Error> {
    serde_json::from_str(s).map_err(Error::internal)
}

/// The API view of a stored instance.
pub(crate) fn instance_view(r: &InstanceRow) -> Result<Instance, Error> {
    let zone = if r.availability_zone.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({"name": r.availability_zone})
    };
    Ok(Instance {
        id: r.id.to_string(),
        real_id: r.real_id.clone(),
        timestamp: rfc3339(r.last_updated),
        created: rfc3339(r.created),
        cloud_id: r.cloud_id.to_string(),
        cloud_type: r.cloud_type.to_string(),
        project_id: r.project_id.clone(),
        name: r.name.clone(),
        flavor: from_json(&r.flavor)?,
        image: from_json(&r.image)?,
        keypair: from_json(&r.keypair)?,
        state: r.state.as_str().to_string(),
        is_locked: false,
        metadata: from_json(&r.metadata)?,
        address: r
            .addresses
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        fqdn: r.fqdn.clone(),
        networks: from_json(&r.networks)?,
        availability_zone: zone,
    })
}

pub(crate) fn image_view(r: &ImageRow) -> Result<Image, Error> {
    Ok(Image {
        id: r.id.to_string(),
        real_id: r.real_id.clone(),
        timestamp: rfc3339(r.last_updated),
        created: rfc3339(r.created),
        instance_id: r.instance_id.to_string(),
        cloud_id: r.cloud_id.to_string(),
        cloud_type: r.cloud_type.to_string(),
        project_id: from_json(&r.project_ids)?,
        name: r.name.clone(),
        state: r.state.as_str().to_string(),
        checksum: r.checksum.clone(),
        metadata: from_json(&r.metadata)?,
    })
}

fn vm_request(r: &InstanceRow) -> VmRequest {
    VmRequest {
        id: r.id.to_string(),
        name: r.name.clone(),
        vcpus: u32::try_from(r.vcpus).unwrap_or(1),
        ram_mb: u64::try_from(r.ram).unwrap_or(0),
        disk_gb: u64::try_from(r.disk).unwrap_or(0),
        image_real_id: r.image_real_id.clone(),
    }
}

impl Perspective {
    fn clouds(&self) -> &Clouds {
        &self.clouds
    }

    /// The cloud of a record, if it can run `op` now: the per-id conflict reasons of perspective 5.2
    /// otherwise (gone from the settings, disabled, operation not supported by its type).
    fn cloud_for(&self, cloud_id: &CloudId, op: Operation) -> Result<&Arc<Cloud>, String> {
        let cloud = self.clouds().get(cloud_id).ok_or_else(|| cloud_gone(cloud_id))?;
        if !cloud.config.enabled {
            return Err(format!("Cloud {cloud_id} is disabled"));
        }
        if let Some(reason) = cloud.unavailable_reason() {
            return Err(format!("Cloud {cloud_id} is unavailable: {reason}"));
        }
        if !cloud.supports(op) {
            return Err(format!(
                "Operation {} is not supported for cloud type {}",
                op.as_str(),
                cloud.kind()
            ));
        }
        Ok(cloud)
    }

    /// An image a tenant may boot in `cloud`'s project: a private image of the tenant, or a base
    /// image of a visible cloud. Answers the view and the driver's reference.
    async fn usable_image(
        &self,
        ctx: &OpCtx,
        scope: &TenantScope,
        id: &ImageId,
    ) -> Result<Option<(Image, String, CloudId)>, Error> {
        let tenant = &scope;
        if let Some(row) = self.store.get_image(tenant, id).await? {
            let cloud = row.cloud_id.clone();
            return Ok(Some((image_view(&row)?, row.real_id, cloud)));
        }
        Ok(self
            .clouds()
            .base_image(tenant.id(), ctx.tenant().name.as_str(), id)
            .map(|(c, img)| (c.base_image_view(tenant.id(), &img), img.real_id, c.id().clone())))
    }

    /// `GET /instances/{id}` (5.1).
    pub async fn get_instance(&self, ctx: &OpCtx, id: &InstanceId) -> Result<Instance, Error> {
        let scope = ctx.require(Access::Read)?;
        let row = self
            .store
            .get_instance(&scope, id)
            .await?
            .ok_or_else(|| not_found_instance(id))?;
        instance_view(&row)
    }

    /// `GET /instances/{id}/history` (Corral addition): the actions, oldest first.
    pub async fn instance_history(&self, ctx: &OpCtx, id: &InstanceId) -> Result<Vec<InstanceEvent>, Error> {
        let scope = ctx.require(Access::Read)?;
        let tenant = &scope;
        if self.store.get_instance(tenant, id).await?.is_none() {
            return Err(not_found_instance(id));
        }
        Ok(self
            .store
            .instance_events(tenant, id)
            .await?
            .into_iter()
            .map(|e| InstanceEvent {
                at: rfc3339(e.at),
                actor: e.actor,
                action: e.action,
                outcome: e.outcome,
                error: e.error,
                request_id: e.request_id,
            })
            .collect())
    }

    /// `GET /instances/{id}/console` (Corral addition): the serial console's recent output.
    pub async fn instance_console(&self, ctx: &OpCtx, id: &InstanceId) -> Result<Console, Error> {
        let scope = ctx.require(Access::Read)?;
        let row = self
            .store
            .get_instance(&scope, id)
            .await?
            .ok_or_else(|| not_found_instance(id))?;
        let cloud = self
            .clouds()
            .get(&row.cloud_id)
            .ok_or_else(|| Error::conflict(cloud_gone(&row.cloud_id)))?;
        let bytes = cloud
            .driver()
            .console(row.id.as_str(), 64 * 1024)
            .await
            .map_err(|e| Error::conflict(e.0))?;
        Ok(Console {
            id: row.id.into_string(),
            output: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    /// `GET /operations` (7.3).
    /// `GET /operations`: what each cloud type's driver supports.
    pub fn cloud_operations(&self, ctx: &OpCtx) -> Result<BTreeMap<String, Vec<String>>, Error> {
        ctx.require(Access::Read)?;
        Ok(self.clouds().operations())
    }

    /// The clouds the caller sees that cannot work now, with the reason (for `/operations`).
    pub fn unavailable_clouds(&self, ctx: &OpCtx) -> Result<Vec<(CloudId, String)>, Error> {
        ctx.require(Access::Read)?;
        let tenant = ctx.tenant().name.as_str();
        Ok(self
            .clouds()
            .visible(tenant)
            .filter_map(|c| c.unavailable_reason().map(|r| (c.id().clone(), r)))
            .collect())
    }

    fn job_for(
        &self,
        ctx: &OpCtx,
        scope: &TenantScope,
        id: &InstanceId,
        action: Action,
    ) -> Result<(corral_store::NewJob, NewEvent), Error> {
        let tenant = &scope;
        let mut job = new_job(
            ctx,
            tenant,
            INSTANCE_JOB,
            id.as_str(),
            &(),
            true,
            self.instance_timeout,
        )?;
        job.payload = json(&InstanceJob {
            instance: id.clone(),
            action,
            event: job.id.to_string(),
        })?;
        let event = NewEvent {
            id: job.id.to_string(),
            instance_id: id.clone(),
            actor: ctx.actor(),
            action: action.verb().replace(' ', "_"),
            request_id: ctx.request_id().to_string(),
        };
        Ok((job, event))
    }

    /// The one job and the shared history entry of a request that moved `groups`: a batch job
    /// for a single instance, else a bulk job that fans out when it runs.
    fn action_job<'c>(
        &self,
        ctx: &OpCtx,
        scope: &TenantScope,
        action: Action,
        groups: Vec<Group>,
        clouds: impl IntoIterator<Item = &'c CloudId>,
    ) -> Result<(NewJob, ActionEvent), Error> {
        let count: usize = groups.iter().map(|g| g.instances.len()).sum();
        let (kind, subject, uses_slot) = match groups.first().map(|g| g.instances.as_slice()) {
            Some([one]) if count == 1 => (INSTANCE_JOB, one.to_string(), true),
            _ => (BULK_JOB, format!("{count} instances"), false),
        };
        let mut job = new_job(ctx, scope, kind, &subject, &(), uses_slot, self.instance_timeout)?;
        let clouds: BTreeSet<&CloudId> = clouds.into_iter().collect();
        job.payload = json(&BatchJob {
            event: job.id.to_string(),
            groups,
            clouds: clouds.into_iter().cloned().collect(),
        })?;
        let event = ActionEvent {
            id: job.id.to_string(),
            actor: ctx.actor(),
            action: action.verb().replace(' ', "_"),
            request_id: ctx.request_id().to_string(),
        };
        Ok((job, event))
    }

    /// `POST /instances` (5.4).
    pub async fn launch_instances(
        &self,
        ctx: &OpCtx,
        items: Parsed<Vec<LaunchItem>>,
    ) -> Result<Vec<BulkItem<InstanceId>>, Error> {
        let scope = ctx.require(Access::Write)?;
        let items = items?;
        let tenant = &scope;
        let tenant_name = ctx.tenant().name.as_str().to_string();
        let now = now_ms();
        let mut results: Vec<Option<BulkItem<InstanceId>>> = Vec::with_capacity(items.len());
        let mut launches: Vec<InstanceRow> = Vec::new();
        let mut slots = Vec::new();
        let mut quotas: HashMap<String, Quota> = HashMap::new();
        let mut image_cache: HashMap<ImageId, Option<(Image, String, CloudId)>> = HashMap::new();
        let mut flavor_cache: HashMap<CloudId, Vec<Flavor>> = HashMap::new();
        for item in items {
            let Some(cloud) = self.clouds().by_project(tenant.id(), &tenant_name, &item.project) else {
                results.push(refused(BulkOutcome::NotFound(format!(
                    "Project {} does not exist",
                    item.project
                ))));
                continue;
            };
            if let Err(why) = self.cloud_for(cloud.id(), Operation::AddInstance) {
                results.push(refused(BulkOutcome::Conflict(why)));
                continue;
            }
            let flavors = flavor_cache
                .entry(cloud.id().clone())
                .or_insert_with(|| cloud.flavors(tenant.id()));
            let Some(flavor) = flavors.iter().find(|f| f.id == item.flavor).cloned() else {
                results.push(refused(BulkOutcome::NotFound(format!(
                    "Flavor {} does not exist",
                    item.flavor
                ))));
                continue;
            };
            if !image_cache.contains_key(&item.image) {
                let found = self.usable_image(ctx, &scope, &item.image).await?;
                image_cache.insert(item.image.clone(), found);
            }
            let Some((image, image_real_id, image_cloud)) = image_cache.get(&item.image).cloned().flatten()
            else {
                results.push(refused(BulkOutcome::NotFound(format!(
                    "Image {} does not exist",
                    item.image
                ))));
                continue;
            };
            if image_cloud != *cloud.id() || !image.project_id.contains(&item.project) {
                results.push(refused(BulkOutcome::NotFound(format!(
                    "Image {} is not available in project {}",
                    item.image, item.project
                ))));
                continue;
            }
            if image.state != ImageState::Saved.as_str() {
                results.push(refused(BulkOutcome::Conflict(format!(
                    "Image {} is not saved (state {})",
                    item.image, image.state
                ))));
                continue;
            }
            let keypair = match &item.keypair {
                None => serde_json::json!({}),
                Some(name) => match cloud.keypairs().into_iter().find(|k| &k.name == name) {
                    Some(k) => serde_json::to_value(k).map_err(Error::internal)?,
                    None => {
                        results.push(refused(BulkOutcome::NotFound(format!(
                            "Keypair {name} does not exist"
                        ))));
                        continue;
                    }
                },
            };
            let all_networks = cloud.networks(tenant.id());
            let mut networks = Vec::new();
            let mut missing = None;
            for n in &item.networks {
                match all_networks.iter().find(|x| &x.id == n) {
                    Some(x) => networks.push(x.clone()),
                    None => missing = Some(n.clone()),
                }
            }
            if let Some(n) = missing {
                results.push(refused(BulkOutcome::NotFound(format!(
                    "Network {n} does not exist"
                ))));
                continue;
            }
            if let Some(z) = &item.zone
                && !cloud.config.options.availability_zones.contains(z)
            {
                results.push(refused(BulkOutcome::NotFound(format!(
                    "Availability zone {z} does not exist"
                ))));
                continue;
            }
            let q = cloud.quota();
            quotas.insert(
                item.project.clone(),
                Quota {
                    instances: q.instances,
                    vcpus: q.vcpus,
                    ram: q.ram,
                    disk: q.disk,
                },
            );
            let id = InstanceId::from_trusted(uuid::Uuid::new_v4().to_string());
            let row = InstanceRow {
                id,
                real_id: String::new(),
                cloud_id: cloud.id().clone(),
                cloud_type: cloud.kind().clone(),
                project_id: item.project.clone(),
                name: item.name,
                flavor_id: flavor.id.clone(),
                flavor: json(&flavor)?,
                image_id: ImageId::from_trusted(image.id.clone()),
                image: json(&image)?,
                image_real_id,
                vcpus: flavor.vcpus,
                ram: flavor.ram,
                disk: flavor.root_disk + flavor.ephemeral_disk,
                keypair: json(&keypair)?,
                networks: json(&networks)?,
                metadata: json(&item.metadata)?,
                availability_zone: item.zone.unwrap_or_default(),
                addresses: String::new(),
                fqdn: String::new(),
                state: InstanceState::Queued,
                created: now,
                last_updated: now,
            };
            slots.push(results.len());
            results.push(None);
            launches.push(row);
        }
        if !launches.is_empty() {
            let outcomes = self
                .store
                .launch_instances(tenant, &launches, &quotas, now, |ids| {
                    let groups = vec![Group {
                        action: Action::Launch,
                        instances: ids.to_vec(),
                    }];
                    let clouds = launches.iter().map(|r| &r.cloud_id);
                    self.action_job(ctx, &scope, Action::Launch, groups, clouds)
                })
                .await?;
            for ((slot, launch), outcome) in slots.into_iter().zip(&launches).zip(outcomes) {
                results[slot] = Some(match outcome {
                    Ok(()) => instance_item(
                        &launch.id,
                        BulkOutcome::Accepted(InstanceState::Queued.as_str().into()),
                    ),
                    Err(which) => BulkItem::none(BulkOutcome::Conflict(format!("Quota exceeded: {which}"))),
                });
            }
            self.wake_jobs();
            tracing::info!(request_id = %ctx.request_id(), requested = results.len(), accepted = launches.len(), "instances launch");
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// The common path of every action on existing instances: per-id checks in the contract's
    /// order, one transaction for the accepted ones.
    async fn act_on(
        &self,
        ctx: &OpCtx,
        scope: &TenantScope,
        ids: Vec<InstanceId>,
        action: Action,
        change: InstanceChange,
        // Per instance: an extra conflict reason (the flavor or image does not fit its project).
        fits: impl Fn(&InstanceKey) -> Option<String>,
    ) -> Result<Vec<BulkItem<InstanceId>>, Error> {
        let tenant = &scope;
        let rows: HashMap<InstanceId, InstanceKey> = self
            .store
            .get_instance_keys(tenant, &ids)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let (from, transitional, _) = action.states();
        let Some(transitional) = transitional else {
            return Err(Error::internal(format!(
                "{} has no transitional state",
                action.verb()
            )));
        };
        let mut results: Vec<(&InstanceId, BulkOutcome)> = Vec::with_capacity(ids.len());
        // Candidates, with the action the job will run for each (resume: unpause or resume).
        let mut candidates: Vec<InstanceId> = Vec::new();
        let mut unpause: HashSet<&InstanceId> = HashSet::new();
        for id in &ids {
            let Some(row) = rows.get(id) else {
                results.push((
                    id,
                    BulkOutcome::NotFound(not_found_instance(id).external_message()),
                ));
                continue;
            };
            let effective = match (action, row.state) {
                (Action::Resume, InstanceState::Paused) => Action::Unpause,
                (a, _) => a,
            };
            if let Err(why) = self.cloud_for(&row.cloud_id, effective.operation()) {
                results.push((id, BulkOutcome::Conflict(why)));
                continue;
            }
            if row.state == transitional {
                results.push((id, BulkOutcome::Already(transitional.as_str().into())));
                continue;
            }
            if !from.contains(&row.state) {
                results.push((
                    id,
                    BulkOutcome::Conflict(format!(
                        "Cannot {} instance in state {}",
                        action.verb(),
                        row.state
                    )),
                ));
                continue;
            }
            if let Some(why) = fits(row) {
                results.push((id, BulkOutcome::Conflict(why)));
                continue;
            }
            results.push((id, BulkOutcome::Accepted(transitional.as_str().into())));
            if effective == Action::Unpause {
                unpause.insert(id);
            }
            candidates.push(id.clone());
        }
        let now = now_ms();
        let step = Transition {
            from,
            to: transitional,
            change: &change,
            now,
        };
        // One transaction and one job for the whole request, whatever its size.
        let moved: HashSet<InstanceId> = self
            .store
            .transition_instances(tenant, &candidates, &step, |moved| {
                let (alt, main): (Vec<InstanceId>, Vec<InstanceId>) =
                    moved.iter().cloned().partition(|id| unpause.contains(id));
                let groups = [(action, main), (Action::Unpause, alt)]
                    .into_iter()
                    .filter(|(_, ids)| !ids.is_empty())
                    .map(|(action, instances)| Group { action, instances })
                    .collect();
                let clouds = moved.iter().filter_map(|id| rows.get(id)).map(|r| &r.cloud_id);
                self.action_job(ctx, scope, action, groups, clouds)
            })
            .await?
            .into_iter()
            .collect();
        // Accepted in the checks but changed by a concurrent request before the update.
        for (id, outcome) in results.iter_mut() {
            if matches!(outcome, BulkOutcome::Accepted(_)) && !moved.contains(*id) {
                let state = self
                    .store
                    .get_instance(tenant, id)
                    .await?
                    .map_or("deleted", |x| x.state.as_str());
                *outcome =
                    BulkOutcome::Conflict(format!("Cannot {} instance in state {state}", action.verb()));
            }
        }
        if !moved.is_empty() {
            self.wake_jobs();
        }
        tracing::info!(request_id = %ctx.request_id(), action = action.verb(), requested = ids.len(), accepted = moved.len(), "instances action");
        Ok(results
            .into_iter()
            .map(|(id, outcome)| instance_item(id, outcome))
            .collect())
    }

    /// `PUT /instances/{action}` (5.6).
    pub async fn instance_action(
        &self,
        ctx: &OpCtx,
        action: SimpleAction,
        ids: Parsed<Vec<InstanceId>>,
    ) -> Result<Vec<BulkItem<InstanceId>>, Error> {
        let scope = ctx.require(Access::Write)?;
        let ids = ids?;
        self.act_on(ctx, &scope, ids, action.into(), InstanceChange::default(), |_| {
            None
        })
        .await
    }

    /// `POST /instances/delete` (5.5).
    pub async fn delete_instances(
        &self,
        ctx: &OpCtx,
        ids: Parsed<Vec<InstanceId>>,
    ) -> Result<Vec<BulkItem<InstanceId>>, Error> {
        let scope = ctx.require(Access::Write)?;
        let ids = ids?;
        self.act_on(
            ctx,
            &scope,
            ids,
            Action::Delete,
            InstanceChange::default(),
            |_| None,
        )
        .await
    }

    /// `PUT /instances/resize/{flavorId}` (5.7): the flavor is swapped at once.
    pub async fn resize_instances(
        &self,
        ctx: &OpCtx,
        flavor_id: &str,
        ids: Parsed<Vec<InstanceId>>,
    ) -> Result<Vec<BulkItem<InstanceId>>, Error> {
        let scope = ctx.require(Access::Write)?;
        let ids = ids?;
        let tenant = &scope;
        let found = self.clouds().visible(ctx.tenant().name.as_str()).find_map(|c| {
            c.flavors(tenant.id())
                .into_iter()
                .find(|f| f.id == flavor_id)
                .map(|f| (c.project_id(tenant.id()), f))
        });
        let Some((project, flavor)) = found else {
            return Err(Error::not_found(format!("Flavor {flavor_id} does not exist")));
        };
        let change = InstanceChange {
            flavor: Some((
                flavor.id.clone(),
                json(&flavor)?,
                flavor.vcpus,
                flavor.ram,
                flavor.root_disk + flavor.ephemeral_disk,
            )),
            image: None,
        };
        self.act_on(ctx, &scope, ids, Action::Resize, change, |row| {
            (row.project_id != project).then(|| {
                format!(
                    "Flavor {flavor_id} is not available in project {}",
                    row.project_id
                )
            })
        })
        .await
    }

    /// `PUT /instances/rebuild/{imageId}` (5.7): the image is swapped at once.
    pub async fn rebuild_instances(
        &self,
        ctx: &OpCtx,
        image_id: &ImageId,
        ids: Parsed<Vec<InstanceId>>,
    ) -> Result<Vec<BulkItem<InstanceId>>, Error> {
        let scope = ctx.require(Access::Write)?;
        let ids = ids?;
        let Some((image, real_id, _)) = self.usable_image(ctx, &scope, image_id).await? else {
            return Err(Error::not_found(format!("Image {image_id} does not exist")));
        };
        let change = InstanceChange {
            flavor: None,
            image: Some((ImageId::from_trusted(image.id.clone()), json(&image)?, real_id)),
        };
        let saved = image.state == ImageState::Saved.as_str();
        let state = image.state.clone();
        self.act_on(ctx, &scope, ids, Action::Rebuild, change, |row| {
            if !image.project_id.contains(&row.project_id) {
                Some(format!(
                    "Image {image_id} is not available in project {}",
                    row.project_id
                ))
            } else if !saved {
                Some(format!("Image {image_id} is not saved (state {state})"))
            } else {
                None
            }
        })
        .await
    }

    /// `PUT /instances/rename` (5.8): names change at once, the driver follows in a job.
    pub async fn rename_instances(
        &self,
        ctx: &OpCtx,
        items: Parsed<Vec<(InstanceId, String)>>,
    ) -> Result<Vec<BulkItem<InstanceId>>, Error> {
        let scope = ctx.require(Access::Write)?;
        let items = items?;
        let tenant = &scope;
        let now = now_ms();
        let mut out = Vec::with_capacity(items.len());
        for (id, name) in items {
            let Some(row) = self.store.get_instance(tenant, &id).await? else {
                let outcome = BulkOutcome::NotFound(not_found_instance(&id).external_message());
                out.push(BulkItem::of(id, outcome));
                continue;
            };
            if let Err(why) = self.cloud_for(&row.cloud_id, Operation::RenameInstance) {
                out.push(BulkItem::of(id, BulkOutcome::Conflict(why)));
                continue;
            }
            let (job, event) = self.job_for(ctx, &scope, &id, Action::Rename)?;
            let outcome = if self
                .store
                .rename_instance(tenant, &id, &name, &job, &event, now)
                .await?
            {
                BulkOutcome::Accepted("renamed".into())
            } else {
                BulkOutcome::Conflict("Cannot rename instance in state deleting".into())
            };
            out.push(BulkItem::of(id, outcome));
        }
        self.wake_jobs();
        Ok(out)
    }

    /// `GET /images/{id}` (6.1): a private image, or a base image of a visible cloud.
    pub async fn get_image(&self, ctx: &OpCtx, id: &ImageId) -> Result<Image, Error> {
        let scope = ctx.require(Access::Read)?;
        self.usable_image(ctx, &scope, id)
            .await?
            .map(|(v, _, _)| v)
            .ok_or_else(|| not_found_image(id))
    }

    /// `POST /images` (6.3): snapshots of instances.
    pub async fn create_images(
        &self,
        ctx: &OpCtx,
        items: Parsed<Vec<SnapshotItem>>,
    ) -> Result<Vec<BulkItem<ImageId>>, Error> {
        let scope = ctx.require(Access::Write)?;
        let items = items?;
        let tenant = &scope;
        let mut out = Vec::with_capacity(items.len());
        for SnapshotItem {
            name,
            instance,
            projects,
            metadata,
        } in items
        {
            let Some(row) = self.store.get_instance(tenant, &instance).await? else {
                out.extend(refused(BulkOutcome::NotFound(
                    not_found_instance(&instance).external_message(),
                )));
                continue;
            };
            let cloud = match self.cloud_for(&row.cloud_id, Operation::AddImage) {
                Ok(c) => c,
                Err(why) => {
                    out.extend(refused(BulkOutcome::Conflict(why)));
                    continue;
                }
            };
            if !matches!(row.state, InstanceState::Launched | InstanceState::Shutoff) {
                out.extend(refused(BulkOutcome::Conflict(format!(
                    "Cannot snapshot instance in state {}",
                    row.state
                ))));
                continue;
            }
            let projects = projects.unwrap_or_else(|| vec![row.project_id.clone()]);
            if let Some(p) = projects.iter().find(|p| **p != cloud.project_id(tenant.id())) {
                out.extend(refused(BulkOutcome::NotFound(format!(
                    "Project {p} does not exist"
                ))));
                continue;
            }
            let id = ImageId::from_trusted(uuid::Uuid::new_v4().to_string());
            let now = now_ms();
            let image = ImageRow {
                id: id.clone(),
                real_id: String::new(),
                cloud_id: cloud.id().clone(),
                cloud_type: cloud.kind().clone(),
                name,
                instance_id: instance,
                project_ids: json(&projects)?,
                state: ImageState::Queued,
                checksum: String::new(),
                metadata: json(&metadata)?,
                created: now,
                last_updated: now,
            };
            let job = new_job(
                ctx,
                tenant,
                IMAGE_JOB,
                id.as_str(),
                &ImageJob {
                    image: id.clone(),
                    action: "snapshot".into(),
                },
                true,
                self.instance_timeout,
            )?;
            self.store.insert_image(tenant, &image, &job, now).await?;
            out.push(image_item(
                &id,
                BulkOutcome::Accepted(ImageState::Queued.as_str().into()),
            ));
        }
        self.wake_jobs();
        Ok(out)
    }

    /// `POST /images/delete` (6.4). An image that a VM's disk is backed by is refused (a conflict).
    pub async fn delete_images(
        &self,
        ctx: &OpCtx,
        ids: Parsed<Vec<ImageId>>,
    ) -> Result<Vec<BulkItem<ImageId>>, Error> {
        let scope = ctx.require(Access::Write)?;
        let ids = ids?;
        let tenant = &scope;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(row) = self.store.get_image(tenant, &id).await? else {
                let base = self
                    .clouds()
                    .base_image(tenant.id(), ctx.tenant().name.as_str(), &id);
                out.push(image_item(
                    &id,
                    match base {
                        Some((c, _)) => BulkOutcome::Conflict(format!(
                            "Image {id} is a base image of cloud {} and cannot be deleted",
                            c.id()
                        )),
                        None => BulkOutcome::NotFound(not_found_image(&id).external_message()),
                    },
                ));
                continue;
            };
            let cloud = match self.cloud_for(&row.cloud_id, Operation::DeleteImage) {
                Ok(c) => c,
                Err(why) => {
                    out.push(image_item(&id, BulkOutcome::Conflict(why)));
                    continue;
                }
            };
            if row.state == ImageState::Deleting {
                out.push(image_item(
                    &id,
                    BulkOutcome::Already(ImageState::Deleting.as_str().into()),
                ));
                continue;
            }
            if !DELETABLE_IMAGE.contains(&row.state) {
                out.push(image_item(
                    &id,
                    BulkOutcome::Conflict(format!("Cannot delete image in state {}", row.state)),
                ));
                continue;
            }
            let in_use = if row.real_id.is_empty() {
                Ok(false)
            } else {
                cloud.driver().image_in_use(&row.real_id).await
            };
            let in_use = match in_use {
                Ok(b) => b,
                Err(e) => {
                    out.push(image_item(
                        &id,
                        BulkOutcome::Conflict(format!("Cannot check whether image {id} is in use: {}", e.0)),
                    ));
                    continue;
                }
            };
            if in_use {
                out.push(image_item(
                    &id,
                    BulkOutcome::Conflict(format!(
                        "Image {id} is the backing disk of an instance; delete or rebuild the instance first"
                    )),
                ));
                continue;
            }
            let job = new_job(
                ctx,
                tenant,
                IMAGE_JOB,
                id.as_str(),
                &ImageJob {
                    image: id.clone(),
                    action: "delete".into(),
                },
                true,
                self.instance_timeout,
            )?;
            let now = now_ms();
            if self
                .store
                .transition_image(
                    tenant,
                    &id,
                    DELETABLE_IMAGE,
                    ImageState::Deleting,
                    Some(&job),
                    now,
                )
                .await?
            {
                out.push(image_item(
                    &id,
                    BulkOutcome::Accepted(ImageState::Deleting.as_str().into()),
                ));
            } else {
                out.push(image_item(
                    &id,
                    BulkOutcome::Conflict("Cannot delete image in its current state".into()),
                ));
            }
        }
        self.wake_jobs();
        Ok(out)
    }

    /// Lists every cloud's base images (at server start, before serving; at most `limit` per
    /// cloud, so one unreachable cloud cannot hold the server back).
    pub async fn refresh_cloud_images(&self, limit: Duration) {
        for cloud in self.clouds().all() {
            match tokio::time::timeout(limit, cloud.refresh_images()).await {
                Ok(Ok(())) => {
                    tracing::info!(cloud = %cloud.id(), images = cloud.base_images().len(), "cloud images listed")
                }
                Ok(Err(e)) => tracing::warn!(cloud = %cloud.id(), "cannot list the cloud's images: {e}"),
                Err(_) => tracing::warn!(cloud = %cloud.id(), "listing the cloud's images timed out"),
            }
        }
    }

    /// At server start: asks each cloud what its VMs are doing and corrects the records of
    /// instances that are not in the middle of an action (their jobs resume on their own).
    pub async fn reconcile_instances(&self) -> Result<(), Error> {
        for cloud in self.clouds().all() {
            let rows = self.store.instances_of_cloud(cloud.id()).await?;
            let settled: Vec<&(TenantId, InstanceRow)> = rows
                .iter()
                .filter(|(_, r)| {
                    matches!(
                        r.state,
                        InstanceState::Launched
                            | InstanceState::Shutoff
                            | InstanceState::Paused
                            | InstanceState::Suspended
                    )
                })
                .collect();
            if settled.is_empty() {
                continue;
            }
            let ids: Vec<String> = settled.iter().map(|(_, r)| r.id.to_string()).collect();
            let observed = match cloud.driver().observe(&ids).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(cloud = %cloud.id(), "cannot observe the cloud's VMs: {e}");
                    continue;
                }
            };
            let by_id: HashMap<&str, &(TenantId, InstanceRow)> =
                settled.iter().map(|x| (x.1.id.as_str(), *x)).collect();
            for (id, seen, report) in observed {
                let Some((tenant, row)) = by_id.get(id.as_str()) else {
                    continue;
                };
                let state = match seen {
                    corral_drivers::Observed::Running => InstanceState::Launched,
                    corral_drivers::Observed::Paused => InstanceState::Paused,
                    corral_drivers::Observed::Shutoff => InstanceState::Shutoff,
                    corral_drivers::Observed::Suspended => InstanceState::Suspended,
                    corral_drivers::Observed::Missing => InstanceState::Error,
                };
                // A VM without a process has no address (as after a shutdown or suspend through
                // the API); an unreadable or missing one keeps its recorded addresses.
                let stopped = matches!(
                    seen,
                    corral_drivers::Observed::Shutoff | corral_drivers::Observed::Suspended
                );
                let addresses = report.addresses.join(",");
                if state != row.state || ((stopped || !addresses.is_empty()) && addresses != row.addresses) {
                    let addresses = if addresses.is_empty() && !stopped {
                        row.addresses.clone()
                    } else {
                        addresses
                    };
                    self.store
                        .reconcile_instance(
                            &TenantScope::background(tenant.clone()),
                            &row.id,
                            row.state,
                            state,
                            &addresses,
                            now_ms(),
                        )
                        .await?;
                    tracing::warn!(instance = %row.id, cloud = %cloud.id(), recorded = %row.state, observed = %state, "instance state corrected from its cloud");
                }
            }
        }
        Ok(())
    }
}

/// The states an image may be deleted from.
const DELETABLE_IMAGE: &[ImageState] = &[ImageState::Saved, ImageState::Error];

/// The pace of the slowest of `clouds` ([`Cloud::pace`]); `None` when one is not known.
fn slowest_pace(all: &Clouds, clouds: &[CloudId]) -> Option<Duration> {
    clouds
        .iter()
        .map(|c| all.get(c).and_then(|c| c.pace()))
        .collect::<Option<Vec<Duration>>>()
        .and_then(|paces| paces.into_iter().max())
}

/// How many instances fit in [`BATCH_TIME`] at `per` each, at most [`BATCH_MAX`].
fn batch_size(per: Duration) -> usize {
    (BATCH_TIME.as_nanos() / per.as_nanos().max(1)).clamp(1, BATCH_MAX as u128) as usize
}

/// How long a batch of driver calls may take before its instances are recorded: a batch job
/// marks its instances `launching` and records their ends a batch at a time, sized from the
/// driver's pace so that neither waits much longer than this.
const BATCH_TIME: Duration = Duration::from_millis(200);
/// Most instances recorded in one transaction.
const BATCH_MAX: usize = 256;

impl Action {
    /// The states in which a failure of this action sets `error`: it is still in charge.
    fn charge(self) -> Vec<InstanceState> {
        InstanceState::ALL
            .iter()
            .copied()
            .filter(|s| self.in_charge(*s))
            .collect()
    }
}

/// The reason a failed action records: a passed deadline is told as the state that lasted.
fn failure_reason(action: Action, reason: &str, timeout: Duration) -> String {
    if reason != "deadline passed" {
        return reason.to_string();
    }
    let what = match action {
        Action::Launch => "queued/launching".to_string(),
        Action::Rename => "renaming".to_string(),
        a => a.states().1.map_or("", InstanceState::as_str).to_string(),
    };
    format!(
        "The instance stayed {what} longer than the {} s allowed (instance_transition_timeout).",
        timeout.as_secs()
    )
}

/// A failed job's hook: every instance it had not finished ends `error` (when the action is
/// still in charge of it) and its history entry says why.
async fn fail_pending(
    store: &corral_store::Store,
    timeout: Duration,
    job: &JobRow,
    reason: &str,
) -> Result<(), Error> {
    let Ok(p) = BatchJob::parse(&job.payload) else {
        return Ok(());
    };
    let tenant = &TenantScope::background(job.tenant_id.clone());
    for g in &p.groups {
        let reason = failure_reason(g.action, reason, timeout);
        let charge = g.action.charge();
        let pending = store.pending_instances(tenant, &p.event, &g.instances).await?;
        if pending.is_empty() {
            continue;
        }
        tracing::warn!(instances = pending.len(), first = %pending[0].id, action = g.action.verb(), %reason, "instance action failed");
        let ends: Vec<(&InstanceId, InstanceEnd<'_>)> = pending
            .iter()
            .map(|r| {
                let end = InstanceEnd::Failed {
                    charge: &charge,
                    reason: &reason,
                };
                (&r.id, end)
            })
            .collect();
        store
            .end_instances(tenant, None, &p.event, &ends, now_ms())
            .await?;
    }
    Ok(())
}

/// Carries out instance actions (`instance.action`): the instances of its batch one driver
/// call at a time (the job holds one worker slot), recorded a batch per transaction. Only
/// instances whose history entry is still open are done, so a resumed job skips the ones an
/// earlier attempt finished.
pub(crate) struct InstanceHandler {
    pub clouds: Arc<Clouds>,
    pub store: corral_store::Store,
    pub timeout: Duration,
}

/// What the driver answered for one instance: `real_id` and addresses, or the reason.
type DriverResult = Result<(String, String), String>;

impl InstanceHandler {
    /// Does one batch: marks its launches `launching`, calls the driver for each instance in
    /// turn and records how each ended, in one transaction.
    async fn run_batch(
        &self,
        ctx: &JobCtx,
        tenant: &TenantScope,
        event: &str,
        action: Action,
        ids: &[InstanceId],
    ) -> Result<(), JobError> {
        let store = ctx.store();
        let mut todo = Vec::with_capacity(ids.len());
        let mut superseded = Vec::new();
        for row in store.pending_instances(tenant, event, ids).await? {
            // A newer action took over (or the instance is being deleted): nothing to do.
            if action.in_charge(row.state) {
                todo.push(row);
            } else {
                superseded.push(row.id);
            }
        }
        if action == Action::Launch {
            let queued: Vec<InstanceId> = todo
                .iter()
                .filter(|r| r.state == InstanceState::Queued)
                .map(|r| r.id.clone())
                .collect();
            if !queued.is_empty() {
                let moved = store
                    .advance_instances(
                        tenant,
                        ctx.fence(),
                        &queued,
                        InstanceState::Queued,
                        InstanceState::Launching,
                        now_ms(),
                    )
                    .await?
                    .ok_or(JobError::LeaseLost)?;
                let moved: HashSet<InstanceId> = moved.into_iter().collect();
                for r in &mut todo {
                    if moved.contains(&r.id) {
                        r.state = InstanceState::Launching;
                    }
                }
            }
        }
        let mut results: Vec<(InstanceId, DriverResult)> = Vec::with_capacity(todo.len());
        for row in &todo {
            let outcome = match self.clouds.get(&row.cloud_id) {
                None => Err(cloud_gone(&row.cloud_id)),
                Some(cloud) => {
                    let vm = vm_request(row);
                    let started = std::time::Instant::now();
                    let answer = match action.vm_action() {
                        None => cloud.driver().launch(&vm).await,
                        Some(a) => cloud.driver().act(&vm, a).await,
                    };
                    cloud.note_call(started.elapsed());
                    answer
                        .map(|r| (r.real_id, r.addresses.join(",")))
                        .map_err(|e| e.0)
                }
            };
            if let Err(reason) = &outcome {
                tracing::warn!(instance = %row.id, action = action.verb(), %reason, "instance action failed");
            }
            results.push((row.id.clone(), outcome));
        }
        let (_, transitional, end) = action.states();
        let charge = action.charge();
        let mut ends: Vec<(&InstanceId, InstanceEnd<'_>)> = Vec::with_capacity(results.len());
        for (id, outcome) in &results {
            let end = match outcome {
                Err(reason) => InstanceEnd::Failed {
                    charge: &charge,
                    reason,
                },
                Ok((real_id, addresses)) => match (action, transitional, end) {
                    (Action::Delete, _, _) => InstanceEnd::Removed,
                    (Action::Rename, _, _) => InstanceEnd::Noted,
                    (Action::Launch, _, end) => InstanceEnd::Moved {
                        from: InstanceState::Launching,
                        to: end.unwrap_or(InstanceState::Launched),
                        report: Some((real_id, addresses)),
                    },
                    (_, Some(from), Some(to)) => InstanceEnd::Moved {
                        from,
                        to,
                        report: (!real_id.is_empty()).then_some((real_id.as_str(), addresses.as_str())),
                    },
                    _ => InstanceEnd::Failed {
                        charge: &charge,
                        reason: "no driver action",
                    },
                },
            };
            ends.push((id, end));
        }
        ends.extend(superseded.iter().map(|id| (id, InstanceEnd::Superseded)));
        if !store
            .end_instances(tenant, Some(ctx.fence()), event, &ends, now_ms())
            .await?
        {
            return Err(JobError::LeaseLost);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl JobHandler for InstanceHandler {
    async fn run(&self, ctx: &mut JobCtx) -> Result<(), JobError> {
        let p = BatchJob::parse(&ctx.job.payload)
            .map_err(|e| JobError::Failed(format!("job {} has an unreadable payload: {e}", ctx.job.id)))?;
        let tenant = ctx.scope();
        // The first batch is as many instances as the clouds' recent pace fits in the batch
        // time, or one when it is not known: then its time tells the pace.
        let mut size = slowest_pace(&self.clouds, &p.clouds).map_or(1, batch_size);
        for g in &p.groups {
            let mut rest = g.instances.as_slice();
            while !rest.is_empty() {
                let (batch, tail) = rest.split_at(size.min(rest.len()));
                rest = tail;
                let started = std::time::Instant::now();
                self.run_batch(ctx, &tenant, &p.event, g.action, batch).await?;
                size = batch_size(started.elapsed() / u32::try_from(batch.len()).unwrap_or(u32::MAX).max(1));
            }
        }
        Ok(())
    }

    async fn failed(&self, job: &JobRow, reason: &str) -> Result<(), Error> {
        fail_pending(&self.store, self.timeout, job, reason).await
    }
}

/// Fans a bulk request (`instance.bulk`) out into batch jobs, each holding one slot: as many
/// as its clouds' pace needs, up to one per worker slot of the tenant ([`fan_out`]). The number
/// of batches is recorded as a step and their ids derive from the bulk job's, so a fan-out
/// repeated after a crash adds nothing.
pub(crate) struct BulkHandler {
    pub clouds: Arc<Clouds>,
    pub store: corral_store::Store,
    pub timeout: Duration,
}

/// How long the driver calls of one batch job of a bulk action should take at the clouds'
/// pace: a bulk job fans out only as wide as that needs.
const FAN_OUT_TIME: Duration = Duration::from_millis(250);

/// How many batch jobs `n` instances need, given the slowest pace of their clouds and the
/// tenant's `workers` slots. Parallel batches hide the drivers' latency; where the drivers are
/// fast the store does the work, and each extra job only adds its own claim, lease and first
/// batch (a 0 ms mock cloud launched 2,400 instances/s in 64 batches per 2,000, 3,600/s in 8).
/// A cloud whose pace is not known yet gets every slot.
fn fan_out(n: usize, pace: Option<Duration>, workers: usize) -> usize {
    let wanted = match pace {
        None => workers,
        Some(pace) => {
            let calls = pace.as_nanos().saturating_mul(n as u128);
            let by_time = usize::try_from(calls.div_ceil(FAN_OUT_TIME.as_nanos())).unwrap_or(usize::MAX);
            by_time.max(n.div_ceil(BATCH_MAX))
        }
    };
    wanted.min(workers).clamp(1, n.max(1))
}

#[async_trait::async_trait]
impl JobHandler for BulkHandler {
    async fn run(&self, ctx: &mut JobCtx) -> Result<(), JobError> {
        let p = BatchJob::parse(&ctx.job.payload)
            .map_err(|e| JobError::Failed(format!("job {} has an unreadable payload: {e}", ctx.job.id)))?;
        let n = p.len();
        if n == 0 {
            return Ok(());
        }
        let workers = ctx.store().tenant_workers(&ctx.scope()).await?;
        let pace = slowest_pace(&self.clouds, &p.clouds);
        let parts = fan_out(n, pace, usize::try_from(workers).unwrap_or(0));
        let parts: usize = ctx.step("parts", || async move { Ok(parts) }).await?;
        let now = now_ms();
        let jobs = p
            .split(parts)
            .into_iter()
            .enumerate()
            .map(|(i, batch)| {
                Ok(NewJob {
                    id: corral_types::JobId::from_trusted(format!("{}.{i}", ctx.job.id)),
                    tenant_id: ctx.job.tenant_id.clone(),
                    kind: corral_types::JobKind::from_trusted(INSTANCE_JOB),
                    subject: format!("{} instances of {}", batch.len(), ctx.job.id),
                    payload: json(&batch)?,
                    principal: ctx.job.principal.clone(),
                    uses_slot: true,
                    run_after: now,
                    deadline: ctx.job.deadline,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        ctx.store().enqueue_jobs_once(&jobs, now).await?;
        ctx.wake_engine();
        Ok(())
    }

    async fn failed(&self, job: &JobRow, reason: &str) -> Result<(), Error> {
        fail_pending(&self.store, self.timeout, job, reason).await
    }
}

fn driver_failed(e: corral_drivers::CloudError) -> JobError {
    JobError::Failed(e.0)
}

/// Carries out image snapshots and deletes.
pub(crate) struct ImageHandler {
    pub clouds: Arc<Clouds>,
    pub store: corral_store::Store,
}

#[async_trait::async_trait]
impl JobHandler for ImageHandler {
    async fn run(&self, ctx: &mut JobCtx) -> Result<(), JobError> {
        let p: ImageJob = ctx.payload()?;
        let tenant = ctx.scope();
        let store = ctx.store().clone();
        let Some(image) = store.get_image(&tenant, &p.image).await? else {
            return Ok(());
        };
        let cloud = self
            .clouds
            .get(&image.cloud_id)
            .ok_or_else(|| JobError::Failed(cloud_gone(&image.cloud_id)))?
            .clone();
        if p.action == "delete" {
            if image.state != ImageState::Deleting {
                return Ok(());
            }
            if !image.real_id.is_empty() {
                cloud
                    .driver()
                    .delete_image(&image.real_id)
                    .await
                    .map_err(driver_failed)?;
            }
            store.remove_image(&tenant, &image.id).await?;
            return Ok(());
        }
        if image.state == ImageState::Queued {
            store
                .transition_image(
                    &tenant,
                    &image.id,
                    &[ImageState::Queued],
                    ImageState::Saving,
                    None,
                    now_ms(),
                )
                .await?;
        } else if image.state != ImageState::Saving {
            return Ok(());
        }
        let instance = store
            .get_instance(&tenant, &image.instance_id)
            .await?
            .ok_or_else(|| JobError::Failed(format!("Instance {} no longer exists", image.instance_id)))?;
        let made = cloud
            .driver()
            .snapshot(&vm_request(&instance), image.id.as_str(), &image.name)
            .await
            .map_err(driver_failed)?;
        store
            .image_saved(&tenant, &image.id, &made.real_id, &made.checksum, now_ms())
            .await?;
        Ok(())
    }

    async fn failed(&self, job: &JobRow, reason: &str) -> Result<(), Error> {
        let Ok(p) = serde_json::from_str::<ImageJob>(&job.payload) else {
            return Ok(());
        };
        tracing::warn!(image = %p.image, action = %p.action, %reason, "image action failed");
        self.store
            .transition_image(
                &TenantScope::background(job.tenant_id.clone()),
                &p.image,
                &[ImageState::Queued, ImageState::Saving, ImageState::Deleting],
                ImageState::Error,
                None,
                now_ms(),
            )
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bulk_action_fans_out_as_wide_as_its_clouds_pace_needs() {
        let ms = Duration::from_millis;
        // Pace unknown: every slot, never more parts than instances.
        assert_eq!(fan_out(2_000, None, 64), 64);
        assert_eq!(fan_out(10, None, 64), 10);
        // A fast driver: batches of at most BATCH_MAX instances.
        assert_eq!(
            fan_out(2_000, Some(Duration::from_micros(20)), 64),
            2_000usize.div_ceil(BATCH_MAX)
        );
        assert_eq!(fan_out(1, Some(Duration::from_micros(20)), 64), 1);
        // A slow driver: as many as finish in FAN_OUT_TIME, up to the tenant's slots.
        assert_eq!(fan_out(100, Some(ms(50)), 64), 20);
        assert_eq!(fan_out(100, Some(ms(50)), 8), 8);
        assert_eq!(fan_out(2_000, Some(ms(50)), 64), 64);
        assert_eq!(fan_out(2_000, Some(Duration::from_secs(3)), 8), 8);
        // No slots configured still runs the work.
        assert_eq!(fan_out(5, None, 0), 1);
    }
}
