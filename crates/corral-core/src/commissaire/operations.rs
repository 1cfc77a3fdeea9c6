//! Rolling operations (commissaire-v0.md 4.10-4.12, 6.4): deploy, upgrade and restart of a
//! cluster's hosts in member order, at most `max_parallel` at a time, stopping at the first
//! failure.
//!
//! Two kinds of job do the work. The coordinator (`cluster.operation`, no worker slot)
//! dispatches one `cluster.host_step` job per host (each takes a slot of the tenant) and
//! waits for them; dispatching is a recorded step, so a resumed coordinator never dispatches a
//! host twice. A host step runs its command on the host through a wrapper that makes it run
//! at most once whatever happens to Corral: the command is started detached, guarded by a
//! lock directory named after the job, and writes its exit status to a file the step then
//! polls. A resumed step finds the lock and only waits for the status.

use std::sync::Arc;
use std::time::Duration;

use corral_drivers::{SshError, shell_quote};
use corral_store::{JobRow, NewOperation, OperationRow, StartOperationOutcome};
use corral_types::commissaire::{OperationPut, OperationRecord};
use corral_types::time::{commissaire_time, now_ms};
use corral_types::{
    Access, ClusterName, Error, HostAddress, JobId, OpCtx, OperationKind, OperationStatus, TenantScope,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clusters::cluster_not_found;
use crate::commissaire::Commissaire;
use crate::hosts::{HostOps, article};
use crate::jobs::{JobCtx, JobError, JobHandler, new_job};

pub const COORDINATE: &str = "cluster.operation";
pub const HOST_STEP: &str = "cluster.host_step";

/// Where hosts keep the locks and exit statuses of Corral's steps.
const STEP_DIR: &str = "/var/tmp/corral-steps";

/// The name of an operation type's list of completed hosts in its record (3.6).
fn done_field(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Deploy => "deployed",
        OperationKind::Upgrade => "upgraded",
        OperationKind::Restart => "restarted",
    }
}

/// The record as the contract shapes it (3.6).
pub fn record_view(op: &OperationRow) -> OperationRecord {
    let mut v = json!({"name": op.cluster, "status": op.status});
    if op.kind == OperationKind::Deploy {
        v["version"] = json!(op.version);
    }
    v[done_field(op.kind)] = json!(op.done);
    v["in_process"] = json!(op.in_process);
    v["failed"] = json!(op.failed);
    v["message"] = json!(op.message);
    v["started_at"] = json!(commissaire_time(op.started_at));
    v["finished_at"] = json!(op.finished_at.map(commissaire_time));
    v
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpPayload {
    cluster: ClusterName,
    kind: OperationKind,
    version: String,
    max_parallel: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepPayload {
    cluster: ClusterName,
    kind: OperationKind,
    version: String,
    address: HostAddress,
    /// The coordinator's job id: the operation record it reports to.
    op_job: JobId,
}

impl Commissaire {
    /// `GET .../{deploy,upgrade,restart}`: `None` (204) when no record exists.
    pub async fn get_operation(
        &self,
        ctx: &OpCtx,
        cluster: &str,
        kind: OperationKind,
    ) -> Result<Option<OperationRecord>, Error> {
        let scope = ctx.require(Access::Read)?;
        let row = self.cluster_row(&scope, cluster).await?;
        Ok(self
            .store
            .get_operation(&scope, &row.name, kind)
            .await?
            .as_ref()
            .map(record_view))
    }

    /// `PUT .../{deploy,upgrade,restart}`: `true` when started (201).
    pub async fn start_operation(
        &self,
        ctx: &OpCtx,
        cluster: &str,
        kind: OperationKind,
        body: OperationPut,
    ) -> Result<(bool, OperationRecord), Error> {
        let scope = ctx.require(Access::Write)?;
        let row = self.cluster_row(&scope, cluster).await?;
        let version = if kind == OperationKind::Deploy {
            match body.version.as_ref().and_then(|v| v.as_str()) {
                Some(v) if !v.is_empty() && v.len() <= 255 && v.chars().all(|c| c.is_ascii_graphic()) => {
                    v.to_string()
                }
                _ => return Err(Error::bad_request("\"version\" must be given.")),
            }
        } else {
            String::new()
        };
        let max_parallel = body.max_parallel.unwrap_or(1);
        if !(1..=1000).contains(&max_parallel) {
            return Err(Error::bad_request(
                "\"max_parallel\" must be an integer from 1 to 1000.",
            ));
        }
        let ops = self.host_ops()?;
        let tenant = &scope;
        let payload = OpPayload {
            cluster: row.name.clone(),
            kind,
            version: version.clone(),
            max_parallel,
        };
        // The coordinator's own deadline bounds every host step plus the waits between them.
        let deadline = ops
            .settings
            .step_timeout
            .saturating_mul(row.members.len().max(1) as u32 + 1);
        let job = new_job(
            ctx,
            tenant,
            COORDINATE,
            row.name.as_str(),
            &payload,
            false,
            deadline,
        )?;
        let new = NewOperation {
            cluster: row.name.clone(),
            kind,
            version,
            max_parallel,
        };
        match self.store.start_operation(tenant, &new, &job, now_ms()).await? {
            StartOperationOutcome::Started(op) => {
                tracing::info!(request_id = %ctx.request_id(), cluster = %row.name, %kind, "rolling operation started");
                self.wake_jobs();
                Ok((true, record_view(&op)))
            }
            StartOperationOutcome::AlreadyRunning(op) => Ok((false, record_view(&op))),
            StartOperationOutcome::Conflict(op)
                if op.kind == OperationKind::Deploy && kind == OperationKind::Deploy =>
            {
                Err(Error::conflict(format!(
                    "Cluster '{}' is deploying version '{}'.",
                    row.name, op.version
                )))
            }
            StartOperationOutcome::Conflict(op) => Err(Error::conflict(format!(
                "Cluster '{}' has {} {} in process.",
                row.name,
                article(op.kind),
                op.kind
            ))),
            StartOperationOutcome::NoCluster => Err(cluster_not_found(cluster)),
        }
    }
}

/// The coordinator of one rolling operation.
pub struct CoordinateHandler(pub Arc<HostOps>);

#[async_trait::async_trait]
impl JobHandler for CoordinateHandler {
    async fn run(&self, ctx: &mut JobCtx) -> Result<(), JobError> {
        let ops = self.0.clone();
        let p: OpPayload = ctx.payload()?;
        let tenant = ctx.scope();
        let op_job = ctx.job.id.clone();
        let Some(op) = ops
            .store
            .get_operation(&tenant, &p.cluster, p.kind)
            .await?
            .filter(|o| o.job_id == op_job)
        else {
            return Ok(()); // replaced by a newer operation or the cluster is gone
        };
        let step_deadline = ops.settings.step_timeout + Duration::from_secs(60);
        for address in &op.members {
            // Wait for a free place and stop at the first failure.
            let op = loop {
                let op = current(&ops, &tenant, &p, &op_job).await?;
                let dispatched = op.members.iter().take_while(|a| *a != address).count();
                let finished = op.done.len() + op.failed.len();
                if !op.failed.is_empty() || dispatched - finished.min(dispatched) < p.max_parallel as usize {
                    break op;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            if !op.failed.is_empty() {
                break;
            }
            let step = StepPayload {
                cluster: p.cluster.clone(),
                kind: p.kind,
                version: p.version.clone(),
                address: address.clone(),
                op_job: op_job.clone(),
            };
            let store = ops.store.clone();
            let tenant_for_step = tenant.clone();
            let job_op = ctx.op().clone();
            ctx.step(&format!("dispatch:{address}"), || async move {
                let subject = format!("{}/{}/{}", step.cluster, step.kind, step.address);
                let job = new_job(
                    &job_op,
                    &tenant_for_step,
                    HOST_STEP,
                    &subject,
                    &step,
                    true,
                    step_deadline,
                )?;
                store.enqueue_job(&job, now_ms()).await?;
                Ok(job.id)
            })
            .await?;
        }
        // Wait until every dispatched host reported, then close the record.
        loop {
            let op = current(&ops, &tenant, &p, &op_job).await?;
            let dispatched = ctx.dispatched_count();
            if op.done.len() + op.failed.len() >= dispatched {
                let status = if op.failed.is_empty() {
                    OperationStatus::Finished
                } else {
                    OperationStatus::Failed
                };
                ops.store
                    .update_operation(&tenant, &p.cluster, p.kind, &op_job, |o| {
                        o.status = status;
                        o.in_process.clear();
                        o.finished_at = Some(now_ms());
                    })
                    .await?;
                tracing::info!(cluster = %p.cluster, kind = %p.kind, %status, "rolling operation ended");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn failed(&self, job: &JobRow, reason: &str) -> Result<(), Error> {
        let p: OpPayload = serde_json::from_str(&job.payload).map_err(Error::internal)?;
        self.0
            .store
            .update_operation(
                &TenantScope::background(job.tenant_id.clone()),
                &p.cluster,
                p.kind,
                &job.id,
                |o| {
                    o.status = OperationStatus::Failed;
                    if o.message.is_empty() {
                        o.message = format!("operation: {reason}");
                    }
                    o.finished_at = Some(now_ms());
                },
            )
            .await?;
        Ok(())
    }
}

impl JobCtx {
    /// How many hosts a coordinator dispatched (its recorded `dispatch:` steps).
    fn dispatched_count(&self) -> usize {
        self.done_steps().filter(|s| s.starts_with("dispatch:")).count()
    }
}

async fn current(
    ops: &HostOps,
    tenant: &TenantScope,
    p: &OpPayload,
    op_job: &JobId,
) -> Result<OperationRow, JobError> {
    ops.store
        .get_operation(tenant, &p.cluster, p.kind)
        .await?
        .filter(|o| o.job_id == *op_job)
        .ok_or_else(|| JobError::Failed("the operation record is gone".into()))
}

/// One host's step of a rolling operation.
pub struct HostStepHandler(pub Arc<HostOps>);

#[async_trait::async_trait]
impl JobHandler for HostStepHandler {
    async fn run(&self, ctx: &mut JobCtx) -> Result<(), JobError> {
        let ops = self.0.clone();
        let p: StepPayload = ctx.payload()?;
        let tenant = ctx.scope();
        let address = p.address.clone();
        let record = |change: Box<dyn FnOnce(&mut OperationRow) + Send>| {
            let ops = ops.clone();
            let (tenant, p) = (tenant.clone(), p.clone());
            async move {
                ops.store
                    .update_operation(&tenant, &p.cluster, p.kind, &p.op_job, change)
                    .await
            }
        };
        let a = address.clone();
        record(Box::new(move |o| {
            if !o.in_process.contains(&a) && !o.done.contains(&a) && !o.failed.contains(&a) {
                o.in_process.push(a);
            }
        }))
        .await?;
        let host = ops
            .store
            .get_host(&tenant, &address)
            .await?
            .ok_or_else(|| JobError::Failed("the host was deleted".into()))?;
        if !ctx.is_done("command") && host.status != "active" {
            return Err(JobError::Failed(format!(
                "host is not active (status: {})",
                host.status
            )));
        }
        let profile = ops
            .settings
            .profiles
            .get(&host.os)
            .ok_or_else(|| JobError::Failed(format!("Unsupported operating system '{}'.", host.os)))?;
        let command = match p.kind {
            OperationKind::Upgrade => profile.upgrade.clone(),
            OperationKind::Restart => profile.restart.clone(),
            OperationKind::Deploy => profile.deploy.replace("{version}", &shell_quote(&p.version)),
        };
        let job_id = ctx.job.id.clone();
        let step_timeout = ops.settings.step_timeout;
        let is_restart = p.kind == OperationKind::Restart;
        let h = host.clone();
        let t = tenant.clone();
        let o = ops.clone();
        ctx.step("command", || async move {
            run_once(&o, &t, &h, &job_id, &command, step_timeout, is_restart).await
        })
        .await?;
        // A simulated host never goes away: waiting for it to would take the whole deadline.
        if is_restart && ops.transport.real_hosts() {
            let wait = ops.settings.restart_wait_timeout;
            let (o, t, h) = (ops.clone(), tenant.clone(), host.clone());
            ctx.step(
                "gone",
                || async move { wait_reachable(&o, &t, &h, false, wait).await },
            )
            .await?;
            let (o, t, h) = (ops.clone(), tenant.clone(), host.clone());
            ctx.step(
                "back",
                || async move { wait_reachable(&o, &t, &h, true, wait).await },
            )
            .await?;
        }
        let a = address.clone();
        record(Box::new(move |o| {
            o.in_process.retain(|x| *x != a);
            if !o.done.contains(&a) {
                o.done.push(a);
            }
        }))
        .await?;
        Ok(())
    }

    async fn failed(&self, job: &JobRow, reason: &str) -> Result<(), Error> {
        let p: StepPayload = serde_json::from_str(&job.payload).map_err(Error::internal)?;
        let a = p.address.clone();
        let reason = reason.to_string();
        self.0
            .store
            .update_operation(
                &TenantScope::background(job.tenant_id.clone()),
                &p.cluster,
                p.kind,
                &p.op_job,
                move |o| {
                    o.in_process.retain(|x| *x != a);
                    if !o.failed.contains(&a) {
                        o.failed.push(a.clone());
                    }
                    if o.message.is_empty() {
                        o.message = format!("{a}: {reason}");
                    }
                },
            )
            .await?;
        Ok(())
    }
}

/// Runs `command` on the host at most once per job, whatever happens to Corral meanwhile
/// (see the module doc). With `detach_only`, answers as soon as the command started (a
/// restart takes the host away; its return is what counts).
async fn run_once(
    ops: &HostOps,
    tenant: &TenantScope,
    host: &corral_store::HostRow,
    job_id: &JobId,
    command: &str,
    timeout: Duration,
    detach_only: bool,
) -> Result<(), JobError> {
    if !ops.transport.real_hosts() {
        // No files to guard the command with, and nothing that could run it twice: a
        // simulated host runs it directly and answers its exit status.
        return ops
            .run(tenant, host, command, timeout)
            .await
            .map(|_| ())
            .map_err(step_error);
    }
    let base = format!("{STEP_DIR}/{job_id}");
    let inner = format!(
        "sh -c {cmd} >{base}.out 2>&1 </dev/null; echo $? >{base}.rc.tmp && mv {base}.rc.tmp {base}.rc",
        cmd = shell_quote(command)
    );
    let start = format!(
        "mkdir -p {STEP_DIR} && if mkdir {base}.lock 2>/dev/null; then nohup sh -c {inner} >/dev/null 2>&1 </dev/null & fi",
        inner = shell_quote(&inner)
    );
    ops.run(tenant, host, &start, ops.settings.connect_timeout)
        .await
        .map_err(step_error)?;
    if detach_only {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let poll = format!("cat {base}.rc 2>/dev/null || echo pending");
    loop {
        match ops.run(tenant, host, &poll, ops.settings.connect_timeout).await {
            Ok(out) if out.trim() == "pending" => {}
            Ok(out) => {
                let rc = out.trim();
                if rc == "0" {
                    return Ok(());
                }
                let tail = ops
                    .run(
                        tenant,
                        host,
                        &format!("tail -c 300 {base}.out"),
                        ops.settings.connect_timeout,
                    )
                    .await
                    .unwrap_or_default();
                return Err(JobError::Failed(format!(
                    "command exited with status {rc}: {}",
                    tail.trim()
                )));
            }
            Err(e) if e.is_unreachable() => {}
            Err(e) => return Err(step_error(e)),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(JobError::Failed(format!(
                "the step did not finish within {} s",
                timeout.as_secs()
            )));
        }
    }
}

/// Polls until the host's SSH answers (`up`) or stops answering (`!up`), within `limit`.
async fn wait_reachable(
    ops: &HostOps,
    tenant: &TenantScope,
    host: &corral_store::HostRow,
    up: bool,
    limit: Duration,
) -> Result<(), JobError> {
    let target = ops.target(tenant, host)?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match ops.transport.probe(&target).await {
            Ok(_) if up => return Ok(()),
            Err(e) if !up && e.is_unreachable() => return Ok(()),
            Err(e @ SshError::HostKeyMismatch { .. }) => return Err(step_error(e)),
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let what = if up { "come back" } else { "go down" };
            return Err(JobError::Failed(format!(
                "the host did not {what} within {} s",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn step_error(e: impl std::fmt::Display) -> JobError {
    JobError::Failed(e.to_string())
}
