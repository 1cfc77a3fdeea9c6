//! Perspective instances and images (perspective.md 5, 6): bulk requests answered at once with
//! per-id results, the state machine checked in the API, and each accepted action carried out by
//! a job through the cloud's driver. Every transitional state ends: the job's deadline
//! (`instance_transition_timeout`) sets `error` with a reason when the driver hangs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use corral_drivers::{Operation, VmAction, VmRequest};
use corral_store::{ImageRow, InstanceChange, InstanceKey, InstanceRow, JobRow, Launch, NewEvent, Quota};
use corral_types::perspective::{
    BulkResult, Console, Flavor, Image, Instance, InstanceEvent, Metadata, MetadataEntry,
};
use corral_types::time::{now_ms, rfc3339};
use corral_types::{Access, Error, OpCtx, TenantId, TenantScope};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Core;
use crate::clouds::{Cloud, Clouds};
use crate::jobs::{JobCtx, JobError, JobHandler, new_job};

pub const INSTANCE_JOB: &str = "instance.action";
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
    /// The `{action}` words of `PUT /instances/{action}`.
    pub fn from_path(word: &str) -> Option<Action> {
        Some(match word {
            "start" => Action::Start,
            "shutdown" => Action::Shutdown,
            "reboot" => Action::Reboot,
            "hard-reboot" => Action::HardReboot,
            "pause" => Action::Pause,
            "resume" => Action::Resume,
            "suspend" => Action::Suspend,
            _ => return None,
        })
    }

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

    /// States it may start from, the state set at once, the end state.
    fn states(self) -> (&'static [&'static str], &'static str, &'static str) {
        match self {
            Action::Launch => (&[], "queued", "launched"),
            Action::Start => (&["shutoff", "starting"], "starting", "launched"),
            Action::Shutdown => (&["launched", "shutting_down"], "shutting_down", "shutoff"),
            Action::Reboot => (&["launched", "rebooting"], "rebooting", "launched"),
            Action::HardReboot => (&["launched", "hard_rebooting"], "hard_rebooting", "launched"),
            Action::Pause => (&["launched", "pausing"], "pausing", "paused"),
            Action::Unpause | Action::Resume => {
                (&["paused", "suspended", "resuming"], "resuming", "launched")
            }
            Action::Suspend => (&["launched", "suspending"], "suspending", "suspended"),
            Action::Resize => (&["launched", "resizing"], "resizing", "launched"),
            Action::Rebuild => (&["launched", "rebuilding"], "rebuilding", "launched"),
            Action::Rename => (&[], "", ""),
            Action::Delete => (
                &["launched", "shutoff", "suspended", "paused", "error", "deleting"],
                "deleting",
                "",
            ),
        }
    }

    /// Whether an instance in `state` is still this action's to finish: a newer action (or a
    /// delete) takes over from it. Its job then does nothing, and its failure sets no `error`.
    fn in_charge(self, state: &str) -> bool {
        match self {
            Action::Launch => state == "queued" || state == "launching",
            Action::Rename => state != "deleting",
            a => state == a.states().1,
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

/// The input of an instance job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstanceJob {
    instance: String,
    action: Action,
    /// The history entry to complete (= the job id at creation).
    event: String,
}

/// The input of an image job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageJob {
    image: String,
    /// `snapshot` or `delete`.
    action: String,
}

fn not_found_instance(id: &str) -> Error {
    Error::not_found(format!("Instance with id = {id} not found"))
}

fn not_found_image(id: &str) -> Error {
    Error::not_found(format!("Image with id = {id} not found"))
}

fn result(id: &str, status: u16, message: impl Into<String>) -> BulkResult {
    BulkResult {
        id: id.to_string(),
        status,
        message: message.into(),
    }
}

fn cloud_gone(cloud_id: &str) -> String {
    format!("Cloud {cloud_id} is no longer configured")
}

/// A body that must be an array of strings (perspective 5.5-5.7).
fn id_list(body: Value) -> Result<Vec<String>, Error> {
    let bad = || Error::bad_request("The request body must be a JSON array of ids (strings).");
    let Value::Array(items) = body else {
        return Err(bad());
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(bad()),
        })
        .collect()
}

/// Metadata as given: `{"entry": [{"key", "value"}]}` or a plain object of strings (3.1).
fn parse_metadata(v: Option<&Value>, at: &str) -> Result<Metadata, Error> {
    let bad = |why: &str| Error::bad_request(format!("{at}.metadata: {why}"));
    let mut entry = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) if map.contains_key("entry") => {
            let Some(Value::Array(items)) = map.get("entry") else {
                return Err(bad("entry must be an array"));
            };
            for it in items {
                let (Some(k), Some(v)) = (
                    it.get("key").and_then(Value::as_str),
                    it.get("value").and_then(Value::as_str),
                ) else {
                    return Err(bad("each entry needs a string key and value"));
                };
                entry.push(MetadataEntry {
                    key: k.to_string(),
                    value: v.to_string(),
                });
            }
        }
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let Some(v) = v.as_str() else {
                    return Err(bad("values must be strings"));
                };
                entry.push(MetadataEntry {
                    key: k.clone(),
                    value: v.to_string(),
                });
            }
        }
        Some(_) => return Err(bad("must be an object")),
    }
    for e in &entry {
        let ok = !e.key.is_empty()
            && e.key.len() <= 255
            && e.key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(bad(&format!(
                "invalid key '{}': use 1 to 255 of A-Z a-z 0-9 _ . -",
                e.key
            )));
        }
    }
    Ok(Metadata { entry })
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 255
}

/// A launch item after the whole-request checks (5.4's 400s).
struct LaunchItem {
    name: String,
    project: String,
    flavor: String,
    image: String,
    keypair: Option<String>,
    networks: Vec<String>,
    zone: Option<String>,
    metadata: Metadata,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str)
}

fn parse_launch(body: Value) -> Result<Vec<LaunchItem>, Error> {
    let Value::Array(items) = body else {
        return Err(Error::bad_request(
            "The request body must be a JSON array of instances.",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let at = format!("[{i}]");
            if !it.is_object() {
                return Err(Error::bad_request(format!(
                    "{at}: an instance must be an object."
                )));
            }
            let need = |path: &[&str]| {
                str_at(it, path).map(str::to_string).ok_or_else(|| {
                    Error::bad_request(format!("{at}.{}: a string is required.", path.join(".")))
                })
            };
            let name = need(&["name"])?;
            if !name_ok(&name) {
                return Err(Error::bad_request(format!("{at}.name: 1 to 255 characters.")));
            }
            let keypair = match (it.get("keypair"), it.get("keypairs")) {
                (Some(Value::Object(k)), _) if !k.is_empty() => Some(
                    k.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            Error::bad_request(format!("{at}.keypair.name: a string is required."))
                        })?
                        .to_string(),
                ),
                (_, Some(Value::Array(list))) if list.len() > 1 => {
                    return Err(Error::bad_request(format!("{at}.keypairs: at most one keypair.")));
                }
                (_, Some(Value::Array(list))) => list
                    .first()
                    .map(|k| {
                        k.get("name")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| {
                                Error::bad_request(format!("{at}.keypairs[0].name: a string is required."))
                            })
                    })
                    .transpose()?,
                _ => None,
            };
            let networks = match it.get("networks") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|n| {
                        n.get("id")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| {
                                Error::bad_request(format!("{at}.networks: each needs a string id."))
                            })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(Error::bad_request(format!("{at}.networks: must be an array."))),
            };
            let zone = match it.get("availabilityZone") {
                Some(Value::Object(z)) if !z.is_empty() => Some(
                    z.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            Error::bad_request(format!("{at}.availabilityZone.name: a string is required."))
                        })?
                        .to_string(),
                ),
                _ => None,
            };
            Ok(LaunchItem {
                project: need(&["projectId"])?,
                flavor: need(&["flavor", "id"])?,
                image: need(&["image", "id"])?,
                metadata: parse_metadata(it.get("metadata"), &at)?,
                name,
                keypair,
                networks,
                zone,
            })
        })
        .collect()
}

fn json<T: Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, Error> {
    serde_json::from_str(s).map_err(Error::internal)
}

/// The API view of a stored instance.
fn instance_view(r: &InstanceRow) -> Result<Instance, Error> {
    let zone = if r.availability_zone.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({"name": r.availability_zone})
    };
    Ok(Instance {
        id: r.id.clone(),
        real_id: r.real_id.clone(),
        timestamp: rfc3339(r.last_updated),
        created: rfc3339(r.created),
        cloud_id: r.cloud_id.clone(),
        cloud_type: r.cloud_type.clone(),
        project_id: r.project_id.clone(),
        name: r.name.clone(),
        flavor: from_json(&r.flavor)?,
        image: from_json(&r.image)?,
        keypair: from_json(&r.keypair)?,
        state: r.state.clone(),
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
        id: r.id.clone(),
        real_id: r.real_id.clone(),
        timestamp: rfc3339(r.last_updated),
        created: rfc3339(r.created),
        instance_id: r.instance_id.clone(),
        cloud_id: r.cloud_id.clone(),
        cloud_type: r.cloud_type.clone(),
        project_id: from_json(&r.project_ids)?,
        name: r.name.clone(),
        state: r.state.clone(),
        checksum: r.checksum.clone(),
        metadata: from_json(&r.metadata)?,
    })
}

fn vm_request(r: &InstanceRow) -> VmRequest {
    VmRequest {
        id: r.id.clone(),
        name: r.name.clone(),
        vcpus: u32::try_from(r.vcpus).unwrap_or(1),
        ram_mb: u64::try_from(r.ram).unwrap_or(0),
        disk_gb: u64::try_from(r.disk).unwrap_or(0),
        image_real_id: r.image_real_id.clone(),
    }
}

impl Core {
    fn clouds(&self) -> &Clouds {
        &self.clouds
    }

    /// The cloud of a record, if it can run `op` now: the per-id 409 reasons of perspective 5.2
    /// otherwise (gone from the settings, disabled, operation not supported by its type).
    fn cloud_for(&self, cloud_id: &str, op: Operation) -> Result<&Arc<Cloud>, String> {
        let cloud = self.clouds().get(cloud_id).ok_or_else(|| cloud_gone(cloud_id))?;
        if !cloud.config.enabled {
            return Err(format!("Cloud {cloud_id} is disabled"));
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
        id: &str,
    ) -> Result<Option<(Image, String, String)>, Error> {
        let tenant = &scope;
        if let Some(row) = self.store.get_image(tenant, id).await? {
            let cloud = row.cloud_id.clone();
            return Ok(Some((image_view(&row)?, row.real_id, cloud)));
        }
        Ok(self
            .clouds()
            .base_image(tenant.id(), ctx.tenant().name.as_str(), id)
            .map(|(c, img)| {
                (
                    c.base_image_view(tenant.id(), &img),
                    img.real_id,
                    c.id().to_string(),
                )
            }))
    }

    /// `GET /instances/{id}` (5.1).
    pub async fn get_instance(&self, ctx: &OpCtx, id: &str) -> Result<Instance, Error> {
        let scope = ctx.require(Access::Read)?;
        let row = self
            .store
            .get_instance(&scope, id)
            .await?
            .ok_or_else(|| not_found_instance(id))?;
        instance_view(&row)
    }

    /// `GET /instances/{id}/history` (Corral addition): the actions, oldest first.
    pub async fn instance_history(&self, ctx: &OpCtx, id: &str) -> Result<Vec<InstanceEvent>, Error> {
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
    pub async fn instance_console(&self, ctx: &OpCtx, id: &str) -> Result<Console, Error> {
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
            .driver
            .console(&row.id, 64 * 1024)
            .await
            .map_err(|e| Error::conflict(e.0))?;
        Ok(Console {
            id: row.id,
            output: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    /// `GET /operations` (7.3).
    /// `GET /operations`: what each cloud type's driver supports.
    pub fn cloud_operations(&self, ctx: &OpCtx) -> Result<BTreeMap<String, Vec<String>>, Error> {
        ctx.require(Access::Read)?;
        Ok(self.clouds().operations())
    }

    fn job_for(
        &self,
        ctx: &OpCtx,
        scope: &TenantScope,
        id: &str,
        action: Action,
    ) -> Result<(corral_store::NewJob, NewEvent), Error> {
        let tenant = &scope;
        let mut job = new_job(ctx, tenant, INSTANCE_JOB, id, &(), true, self.instance_timeout)?;
        job.payload = json(&InstanceJob {
            instance: id.to_string(),
            action,
            event: job.id.to_string(),
        })?;
        let event = NewEvent {
            id: job.id.to_string(),
            instance_id: id.to_string(),
            actor: ctx.actor(),
            action: action.verb().replace(' ', "_"),
            request_id: ctx.request_id().to_string(),
        };
        Ok((job, event))
    }

    /// `POST /instances` (5.4).
    pub async fn launch_instances(&self, ctx: &OpCtx, body: Value) -> Result<Vec<BulkResult>, Error> {
        let scope = ctx.require(Access::Write)?;
        let items = parse_launch(body)?;
        let tenant = &scope;
        let tenant_name = ctx.tenant().name.as_str().to_string();
        let now = now_ms();
        let mut results: Vec<Option<BulkResult>> = Vec::with_capacity(items.len());
        let mut launches = Vec::new();
        let mut slots = Vec::new();
        let mut quotas: HashMap<String, Quota> = HashMap::new();
        let mut image_cache: HashMap<String, Option<(Image, String, String)>> = HashMap::new();
        let mut flavor_cache: HashMap<String, Vec<Flavor>> = HashMap::new();
        for item in items {
            let Some(cloud) = self.clouds().by_project(tenant.id(), &tenant_name, &item.project) else {
                results.push(Some(result(
                    "",
                    404,
                    format!("Project {} does not exist", item.project),
                )));
                continue;
            };
            if let Err(why) = self.cloud_for(cloud.id(), Operation::AddInstance) {
                results.push(Some(result("", 409, why)));
                continue;
            }
            let flavors = flavor_cache
                .entry(cloud.id().to_string())
                .or_insert_with(|| cloud.flavors(tenant.id()));
            let Some(flavor) = flavors.iter().find(|f| f.id == item.flavor).cloned() else {
                results.push(Some(result(
                    "",
                    404,
                    format!("Flavor {} does not exist", item.flavor),
                )));
                continue;
            };
            if !image_cache.contains_key(&item.image) {
                let found = self.usable_image(ctx, &scope, &item.image).await?;
                image_cache.insert(item.image.clone(), found);
            }
            let Some((image, image_real_id, image_cloud)) = image_cache.get(&item.image).cloned().flatten()
            else {
                results.push(Some(result(
                    "",
                    404,
                    format!("Image {} does not exist", item.image),
                )));
                continue;
            };
            if image_cloud != cloud.id() || !image.project_id.contains(&item.project) {
                results.push(Some(result(
                    "",
                    404,
                    format!(
                        "Image {} is not available in project {}",
                        item.image, item.project
                    ),
                )));
                continue;
            }
            if image.state != "saved" {
                results.push(Some(result(
                    "",
                    409,
                    format!("Image {} is not saved (state {})", item.image, image.state),
                )));
                continue;
            }
            let keypair = match &item.keypair {
                None => serde_json::json!({}),
                Some(name) => match cloud.keypairs().into_iter().find(|k| &k.name == name) {
                    Some(k) => serde_json::to_value(k).map_err(Error::internal)?,
                    None => {
                        results.push(Some(result("", 404, format!("Keypair {name} does not exist"))));
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
                results.push(Some(result("", 404, format!("Network {n} does not exist"))));
                continue;
            }
            if let Some(z) = &item.zone
                && !cloud.config.options.availability_zones.contains(z)
            {
                results.push(Some(result(
                    "",
                    404,
                    format!("Availability zone {z} does not exist"),
                )));
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
            let id = uuid::Uuid::new_v4().to_string();
            let (job, event) = self.job_for(ctx, &scope, &id, Action::Launch)?;
            let row = InstanceRow {
                id: id.clone(),
                real_id: String::new(),
                cloud_id: cloud.id().to_string(),
                cloud_type: cloud.kind().to_string(),
                project_id: item.project.clone(),
                name: item.name,
                flavor_id: flavor.id.clone(),
                flavor: json(&flavor)?,
                image_id: image.id.clone(),
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
                state: "queued".into(),
                created: now,
                last_updated: now,
            };
            slots.push(results.len());
            results.push(None);
            launches.push(Launch { row, job, event });
        }
        if !launches.is_empty() {
            let outcomes = self
                .store
                .launch_instances(tenant, &launches, &quotas, now)
                .await?;
            for ((slot, launch), outcome) in slots.into_iter().zip(&launches).zip(outcomes) {
                results[slot] = Some(match outcome {
                    Ok(()) => result(&launch.row.id, 202, "queued"),
                    Err(which) => result("", 409, format!("Quota exceeded: {which}")),
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
        ids: Vec<String>,
        action: Action,
        change: InstanceChange,
        // Per instance: an extra 409 reason (the flavor or image does not fit its project).
        fits: impl Fn(&InstanceKey) -> Option<String>,
    ) -> Result<Vec<BulkResult>, Error> {
        let tenant = &scope;
        let rows: HashMap<String, InstanceKey> = self
            .store
            .get_instance_keys(tenant, &ids)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let (from, transitional, _) = action.states();
        let mut results: Vec<BulkResult> = Vec::with_capacity(ids.len());
        // Candidates by the action the job will run (resume: unpause or resume).
        let mut candidates: BTreeMap<(bool, &'static str), Vec<String>> = BTreeMap::new();
        for id in &ids {
            let Some(row) = rows.get(id) else {
                results.push(result(id, 404, not_found_instance(id).external_message()));
                continue;
            };
            let effective = match (action, row.state.as_str()) {
                (Action::Resume, "paused") => Action::Unpause,
                (a, _) => a,
            };
            if let Err(why) = self.cloud_for(&row.cloud_id, effective.operation()) {
                results.push(result(id, 409, why));
                continue;
            }
            if row.state == transitional {
                results.push(result(id, 202, format!("already {transitional}")));
                continue;
            }
            if !from.contains(&row.state.as_str()) {
                results.push(result(
                    id,
                    409,
                    format!("Cannot {} instance in state {}", action.verb(), row.state),
                ));
                continue;
            }
            if let Some(why) = fits(row) {
                results.push(result(id, 409, why));
                continue;
            }
            results.push(result(id, 202, transitional));
            candidates
                .entry((effective == Action::Unpause, state_key(&row.state)))
                .or_default()
                .push(id.clone());
        }
        let now = now_ms();
        let mut moved = std::collections::HashSet::new();
        for ((unpause, _), group) in candidates {
            let job_action = if unpause { Action::Unpause } else { action };
            let done = self
                .store
                .transition_instances(tenant, &group, from, transitional, &change, now, |id| {
                    self.job_for(ctx, scope, id, job_action)
                })
                .await?;
            moved.extend(done);
        }
        // Accepted in the checks but changed by a concurrent request before the update.
        for r in results.iter_mut() {
            if r.status == 202 && r.message == transitional && !moved.contains(&r.id) {
                let state = self
                    .store
                    .get_instance(tenant, &r.id)
                    .await?
                    .map(|x| x.state)
                    .unwrap_or_else(|| "deleted".into());
                *r = result(
                    &r.id,
                    409,
                    format!("Cannot {} instance in state {state}", action.verb()),
                );
            }
        }
        if !moved.is_empty() {
            self.wake_jobs();
        }
        tracing::info!(request_id = %ctx.request_id(), action = action.verb(), requested = ids.len(), accepted = moved.len(), "instances action");
        Ok(results)
    }

    /// `PUT /instances/{action}` (5.6); `action` is the path word.
    pub async fn instance_action(
        &self,
        ctx: &OpCtx,
        word: &str,
        body: Value,
    ) -> Result<Vec<BulkResult>, Error> {
        let scope = ctx.require(Access::Write)?;
        let action = Action::from_path(word)
            .ok_or_else(|| Error::not_found(format!("No route for PUT /instances/{word}.")))?;
        let ids = id_list(body)?;
        self.act_on(ctx, &scope, ids, action, InstanceChange::default(), |_| None)
            .await
    }

    /// `POST /instances/delete` (5.5).
    pub async fn delete_instances(&self, ctx: &OpCtx, body: Value) -> Result<Vec<BulkResult>, Error> {
        let scope = ctx.require(Access::Write)?;
        let ids = id_list(body)?;
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
        body: Value,
    ) -> Result<Vec<BulkResult>, Error> {
        let scope = ctx.require(Access::Write)?;
        let ids = id_list(body)?;
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
        image_id: &str,
        body: Value,
    ) -> Result<Vec<BulkResult>, Error> {
        let scope = ctx.require(Access::Write)?;
        let ids = id_list(body)?;
        let Some((image, real_id, _)) = self.usable_image(ctx, &scope, image_id).await? else {
            return Err(Error::not_found(format!("Image {image_id} does not exist")));
        };
        let change = InstanceChange {
            flavor: None,
            image: Some((image.id.clone(), json(&image)?, real_id)),
        };
        let saved = image.state == "saved";
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
    pub async fn rename_instances(&self, ctx: &OpCtx, body: Value) -> Result<Vec<BulkResult>, Error> {
        let scope = ctx.require(Access::Write)?;
        let Value::Object(map) = body else {
            return Err(Error::bad_request(
                "The request body must be a JSON object of instance id to new name.",
            ));
        };
        let mut items = Vec::with_capacity(map.len());
        for (id, name) in map {
            let Value::String(name) = name else {
                return Err(Error::bad_request(format!(
                    "{id}: the new name must be a string."
                )));
            };
            if !name_ok(&name) {
                return Err(Error::bad_request(format!(
                    "{id}: a name has 1 to 255 characters."
                )));
            }
            items.push((id, name));
        }
        let tenant = &scope;
        let now = now_ms();
        let mut out = Vec::with_capacity(items.len());
        for (id, name) in items {
            let Some(row) = self.store.get_instance(tenant, &id).await? else {
                out.push(result(&id, 404, not_found_instance(&id).external_message()));
                continue;
            };
            if let Err(why) = self.cloud_for(&row.cloud_id, Operation::RenameInstance) {
                out.push(result(&id, 409, why));
                continue;
            }
            let (job, event) = self.job_for(ctx, &scope, &id, Action::Rename)?;
            if self
                .store
                .rename_instance(tenant, &id, &name, &job, &event, now)
                .await?
            {
                out.push(result(&id, 202, "renamed"));
            } else {
                out.push(result(&id, 409, "Cannot rename instance in state deleting"));
            }
        }
        self.wake_jobs();
        Ok(out)
    }

    /// `GET /images/{id}` (6.1): a private image, or a base image of a visible cloud.
    pub async fn get_image(&self, ctx: &OpCtx, id: &str) -> Result<Image, Error> {
        let scope = ctx.require(Access::Read)?;
        self.usable_image(ctx, &scope, id)
            .await?
            .map(|(v, _, _)| v)
            .ok_or_else(|| not_found_image(id))
    }

    /// `POST /images` (6.3): snapshots of instances.
    pub async fn create_images(&self, ctx: &OpCtx, body: Value) -> Result<Vec<BulkResult>, Error> {
        let scope = ctx.require(Access::Write)?;
        let Value::Array(items) = body else {
            return Err(Error::bad_request(
                "The request body must be a JSON array of images.",
            ));
        };
        let mut parsed = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let at = format!("[{i}]");
            if !it.is_object() {
                return Err(Error::bad_request(format!("{at}: an image must be an object.")));
            }
            let (Some(name), Some(instance)) = (str_at(it, &["name"]), str_at(it, &["instanceId"])) else {
                return Err(Error::bad_request(format!(
                    "{at}: 'name' and 'instanceId' are required strings."
                )));
            };
            if !name_ok(name) {
                return Err(Error::bad_request(format!("{at}.name: 1 to 255 characters.")));
            }
            let projects: Option<Vec<String>> = match it.get("projectId").or_else(|| it.get("projectIds")) {
                None | Some(Value::Null) => None,
                Some(Value::Array(list)) => Some(
                    list.iter()
                        .map(|p| {
                            p.as_str().map(str::to_string).ok_or_else(|| {
                                Error::bad_request(format!("{at}.projectId: an array of strings."))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Some(Value::String(p)) => Some(vec![p.clone()]),
                Some(_) => {
                    return Err(Error::bad_request(format!(
                        "{at}.projectId: an array of strings."
                    )));
                }
            };
            parsed.push((
                name.to_string(),
                instance.to_string(),
                projects,
                parse_metadata(it.get("metadata"), &at)?,
            ));
        }
        let tenant = &scope;
        let mut out = Vec::with_capacity(parsed.len());
        for (name, instance, projects, metadata) in parsed {
            let Some(row) = self.store.get_instance(tenant, &instance).await? else {
                out.push(result("", 404, not_found_instance(&instance).external_message()));
                continue;
            };
            let cloud = match self.cloud_for(&row.cloud_id, Operation::AddImage) {
                Ok(c) => c,
                Err(why) => {
                    out.push(result("", 409, why));
                    continue;
                }
            };
            if !["launched", "shutoff"].contains(&row.state.as_str()) {
                out.push(result(
                    "",
                    409,
                    format!("Cannot snapshot instance in state {}", row.state),
                ));
                continue;
            }
            let projects = projects.unwrap_or_else(|| vec![row.project_id.clone()]);
            if let Some(p) = projects.iter().find(|p| **p != cloud.project_id(tenant.id())) {
                out.push(result("", 404, format!("Project {p} does not exist")));
                continue;
            }
            let id = uuid::Uuid::new_v4().to_string();
            let now = now_ms();
            let image = ImageRow {
                id: id.clone(),
                real_id: String::new(),
                cloud_id: cloud.id().to_string(),
                cloud_type: cloud.kind().to_string(),
                name,
                instance_id: instance.clone(),
                project_ids: json(&projects)?,
                state: "queued".into(),
                checksum: String::new(),
                metadata: json(&metadata)?,
                created: now,
                last_updated: now,
            };
            let job = new_job(
                ctx,
                tenant,
                IMAGE_JOB,
                &id,
                &ImageJob {
                    image: id.clone(),
                    action: "snapshot".into(),
                },
                true,
                self.instance_timeout,
            )?;
            self.store.insert_image(tenant, &image, &job, now).await?;
            out.push(result(&id, 202, "queued"));
        }
        self.wake_jobs();
        Ok(out)
    }

    /// `POST /images/delete` (6.4). An image that a VM's disk is backed by is refused (409).
    pub async fn delete_images(&self, ctx: &OpCtx, body: Value) -> Result<Vec<BulkResult>, Error> {
        let scope = ctx.require(Access::Write)?;
        let ids = id_list(body)?;
        let tenant = &scope;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(row) = self.store.get_image(tenant, &id).await? else {
                let base = self
                    .clouds()
                    .base_image(tenant.id(), ctx.tenant().name.as_str(), &id);
                out.push(match base {
                    Some((c, _)) => result(
                        &id,
                        409,
                        format!(
                            "Image {id} is a base image of cloud {} and cannot be deleted",
                            c.id()
                        ),
                    ),
                    None => result(&id, 404, not_found_image(&id).external_message()),
                });
                continue;
            };
            let cloud = match self.cloud_for(&row.cloud_id, Operation::DeleteImage) {
                Ok(c) => c,
                Err(why) => {
                    out.push(result(&id, 409, why));
                    continue;
                }
            };
            if row.state == "deleting" {
                out.push(result(&id, 202, "already deleting"));
                continue;
            }
            if !["saved", "error"].contains(&row.state.as_str()) {
                out.push(result(
                    &id,
                    409,
                    format!("Cannot delete image in state {}", row.state),
                ));
                continue;
            }
            let in_use = if row.real_id.is_empty() {
                Ok(false)
            } else {
                cloud.driver.image_in_use(&row.real_id).await
            };
            let in_use = match in_use {
                Ok(b) => b,
                Err(e) => {
                    out.push(result(
                        &id,
                        409,
                        format!("Cannot check whether image {id} is in use: {}", e.0),
                    ));
                    continue;
                }
            };
            if in_use {
                out.push(result(
                    &id,
                    409,
                    format!(
                        "Image {id} is the backing disk of an instance; delete or rebuild the instance first"
                    ),
                ));
                continue;
            }
            let job = new_job(
                ctx,
                tenant,
                IMAGE_JOB,
                &id,
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
                .transition_image(tenant, &id, &["saved", "error"], "deleting", Some(&job), now)
                .await?
            {
                out.push(result(&id, 202, "deleting"));
            } else {
                out.push(result(&id, 409, "Cannot delete image in its current state"));
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
                .filter(|(_, r)| ["launched", "shutoff", "paused", "suspended"].contains(&r.state.as_str()))
                .collect();
            if settled.is_empty() {
                continue;
            }
            let ids: Vec<String> = settled.iter().map(|(_, r)| r.id.clone()).collect();
            let observed = match cloud.driver.observe(&ids).await {
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
                    corral_drivers::Observed::Running => "launched",
                    corral_drivers::Observed::Paused => "paused",
                    corral_drivers::Observed::Shutoff => "shutoff",
                    corral_drivers::Observed::Suspended => "suspended",
                    corral_drivers::Observed::Missing => "error",
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
                            &row.state,
                            state,
                            &addresses,
                            now_ms(),
                        )
                        .await?;
                    tracing::warn!(instance = %row.id, cloud = %cloud.id(), recorded = %row.state, observed = state, "instance state corrected from its cloud");
                }
            }
        }
        Ok(())
    }
}

/// Groups candidates whose allowed state sets are the same (only resume differs: paused or
/// suspended, which decides the driver action).
fn state_key(state: &str) -> &'static str {
    match state {
        "paused" => "paused",
        _ => "",
    }
}

/// Carries out instance actions.
pub(crate) struct InstanceHandler {
    pub clouds: Arc<Clouds>,
    pub store: corral_store::Store,
    pub timeout: Duration,
}

fn driver_failed(e: corral_drivers::CloudError) -> JobError {
    JobError::Failed(e.0)
}

#[async_trait::async_trait]
impl JobHandler for InstanceHandler {
    async fn run(&self, ctx: &mut JobCtx) -> Result<(), JobError> {
        let p: InstanceJob = ctx.payload()?;
        let tenant = ctx.scope();
        let store = ctx.store().clone();
        let Some(row) = store.get_instance(&tenant, &p.instance).await? else {
            return Ok(());
        };
        let (_, transitional, end) = p.action.states();
        let now = now_ms();
        // A newer action took over (or the instance was deleted): nothing left to do.
        if !p.action.in_charge(&row.state) {
            store
                .finish_instance_event(&tenant, &p.instance, &p.event, "superseded", "", now)
                .await?;
            return Ok(());
        }
        let cloud = self
            .clouds
            .get(&row.cloud_id)
            .ok_or_else(|| JobError::Failed(cloud_gone(&row.cloud_id)))?
            .clone();
        let vm = vm_request(&row);
        match p.action {
            Action::Launch => {
                if row.state == "queued" {
                    store
                        .advance_instance(&tenant, &row.id, "queued", "launching", None, None, now)
                        .await?;
                }
                let report = cloud.driver.launch(&vm).await.map_err(driver_failed)?;
                store
                    .advance_instance(
                        &tenant,
                        &row.id,
                        "launching",
                        end,
                        Some((&report.real_id, &report.addresses.join(","))),
                        Some((&p.event, "succeeded", "")),
                        now_ms(),
                    )
                    .await?;
            }
            Action::Delete => {
                cloud
                    .driver
                    .act(&vm, VmAction::Delete)
                    .await
                    .map_err(driver_failed)?;
                store.remove_instance(&tenant, &row.id).await?;
            }
            Action::Rename => {
                cloud
                    .driver
                    .act(&vm, VmAction::Rename)
                    .await
                    .map_err(driver_failed)?;
                store
                    .finish_instance_event(&tenant, &p.instance, &p.event, "succeeded", "", now_ms())
                    .await?;
            }
            action => {
                let Some(vm_action) = action.vm_action() else {
                    return Err(JobError::Failed("no driver action".into()));
                };
                let report = cloud.driver.act(&vm, vm_action).await.map_err(driver_failed)?;
                let addresses = report.addresses.join(",");
                let report =
                    (!report.real_id.is_empty()).then_some((report.real_id.as_str(), addresses.as_str()));
                store
                    .advance_instance(
                        &tenant,
                        &row.id,
                        transitional,
                        end,
                        report,
                        Some((&p.event, "succeeded", "")),
                        now_ms(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn failed(&self, job: &JobRow, reason: &str) -> Result<(), Error> {
        let Ok(p) = serde_json::from_str::<InstanceJob>(&job.payload) else {
            return Ok(());
        };
        let (_, transitional, _) = p.action.states();
        let reason = if reason == "deadline passed" {
            let what = match p.action {
                Action::Launch => "queued/launching".to_string(),
                Action::Rename => "renaming".to_string(),
                _ => transitional.to_string(),
            };
            format!(
                "The instance stayed {what} longer than the {} s allowed (instance_transition_timeout).",
                self.timeout.as_secs()
            )
        } else {
            reason.to_string()
        };
        tracing::warn!(instance = %p.instance, action = p.action.verb(), %reason, "instance action failed");
        let tenant = &TenantScope::background(job.tenant_id.clone());
        let Some(row) = self.store.get_instance(tenant, &p.instance).await? else {
            return Ok(());
        };
        let now = now_ms();
        // Only the action still in charge sets `error`; a superseded one just records its end.
        if p.action.in_charge(&row.state) {
            self.store
                .fail_instance(tenant, &p.instance, &p.event, &reason, now)
                .await
        } else {
            self.store
                .finish_instance_event(tenant, &p.instance, &p.event, "failed", &reason, now)
                .await
        }
    }
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
            if image.state != "deleting" {
                return Ok(());
            }
            if !image.real_id.is_empty() {
                cloud
                    .driver
                    .delete_image(&image.real_id)
                    .await
                    .map_err(driver_failed)?;
            }
            store.remove_image(&tenant, &image.id).await?;
            return Ok(());
        }
        if image.state == "queued" {
            store
                .transition_image(&tenant, &image.id, &["queued"], "saving", None, now_ms())
                .await?;
        } else if image.state != "saving" {
            return Ok(());
        }
        let instance = store
            .get_instance(&tenant, &image.instance_id)
            .await?
            .ok_or_else(|| JobError::Failed(format!("Instance {} no longer exists", image.instance_id)))?;
        let made = cloud
            .driver
            .snapshot(&vm_request(&instance), &image.id, &image.name)
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
                &["queued", "saving", "deleting"],
                "error",
                None,
                now_ms(),
            )
            .await
            .map(|_| ())
    }
}
