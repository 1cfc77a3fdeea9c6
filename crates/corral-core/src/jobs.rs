//! The job engine: runs durable jobs (design §5) on behalf of the tenants that own them.
//!
//! A job is a handler for its `kind` plus a row. The handler is written as a sequence of named
//! steps ([`JobCtx::step`]); a completed step is recorded with its output, so when a job is
//! resumed (after a crash, a restart, or a lost lease) completed steps are skipped and their
//! outputs reused. Steps with effects outside Corral must be idempotent on their own.
//!
//! Every job has a deadline: past it the job fails with a reason and its handler puts the
//! resource into its failure state ([`JobHandler::failed`]), instead of leaving it
//! transitional forever. Leases are renewed by a heartbeat; the reaper re-queues jobs whose
//! lease lapsed. All of it works the same on SQLite and PostgreSQL and with several replicas.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use corral_store::{Fence, JobRow, JobState, NewJob, Store};
use corral_types::time::now_ms;
use corral_types::{
    ApiKeyId, Error, JobId, JobKind, OpCtx, Principal, Role, TenantName, TenantRef, TenantScope, UserName,
};
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::Instrument;

/// How a job (or a step) ended other than by success.
#[derive(Debug)]
pub enum JobError {
    /// For good: the job fails with this reason.
    Failed(String),
    /// For now: try again after the delay (the deadline still applies).
    Retry { reason: String, after: Duration },
    /// The worker lost its lease; another worker owns the job now. Stop quietly.
    LeaseLost,
    /// A fault of Corral itself (the store); retried like a transient failure.
    Internal(Error),
}

impl From<Error> for JobError {
    fn from(e: Error) -> Self {
        JobError::Internal(e)
    }
}

/// What a handler does for its kind of job.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs (or resumes) the job.
    async fn run(&self, ctx: &mut JobCtx) -> Result<(), JobError>;

    /// Called once when the job has failed for good (an error, or its deadline passed): put
    /// the resource in its failure state with `reason`.
    async fn failed(&self, job: &JobRow, reason: &str) -> Result<(), Error>;
}

/// A running job as its handler sees it.
pub struct JobCtx {
    pub job: JobRow,
    /// The context of the request that started the job, rebuilt from the stored principal.
    op: OpCtx,
    owner: String,
    store: Store,
    done: HashMap<String, String>,
    wake: Arc<Notify>,
}

impl JobCtx {
    /// The job's input.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_str(&self.job.payload)
            .map_err(|e| JobError::Failed(format!("job {} has an unreadable payload: {e}", self.job.id)))
    }

    /// Whether a step completed in this or an earlier attempt.
    pub fn is_done(&self, name: &str) -> bool {
        self.done.contains_key(name)
    }

    /// Runs step `name` once: if an earlier attempt completed it, answers its recorded output
    /// without running it again; otherwise runs `f` and records its output (fenced by the
    /// lease, so a worker that lost the job records nothing).
    pub async fn step<T, F, Fut>(&mut self, name: &str, f: F) -> Result<T, JobError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, JobError>>,
    {
        if let Some(out) = self.done.get(name) {
            return serde_json::from_str(out)
                .map_err(|e| JobError::Failed(format!("recorded output of step {name} is unreadable: {e}")));
        }
        let value = f().await?;
        let out = serde_json::to_string(&value).map_err(|e| JobError::Internal(Error::internal(e)))?;
        if !self
            .store
            .complete_step(&self.job.id, &self.owner, name, &out, now_ms())
            .await?
        {
            return Err(JobError::LeaseLost);
        }
        self.done.insert(name.to_string(), out);
        Ok(value)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This worker's lease on the job, for store writes that must stop once it is lost.
    pub fn fence(&self) -> Fence<'_> {
        Fence {
            job: &self.job.id,
            owner: &self.owner,
        }
    }

    /// Tells the engine to look at the queue now (the job enqueued others).
    pub fn wake_engine(&self) {
        self.wake.notify_one();
    }

    /// The context of the request that started this job: its user and request id go into
    /// the job's log lines, the jobs it starts and the histories it writes.
    pub fn op(&self) -> &OpCtx {
        &self.op
    }

    /// The tenant scope the job acts in: its request passed the permission check when the job
    /// was enqueued.
    pub fn scope(&self) -> TenantScope {
        self.op
            .job_scope()
            .unwrap_or_else(|| TenantScope::background(self.job.tenant_id.clone()))
    }

    /// Names of the steps completed so far.
    pub fn done_steps(&self) -> impl Iterator<Item = &str> {
        self.done.keys().map(String::as_str)
    }
}

/// Tuning of the engine.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// How long a claim lasts without a heartbeat; the heartbeat runs at a third of it.
    pub lease: Duration,
    /// How often the queue is polled when nobody wakes the engine.
    pub poll: Duration,
    /// Most jobs this process runs at once (tenants' `workers` limit them further).
    pub max_concurrent: usize,
    /// Delay before a job that hit an internal fault is retried.
    pub retry_after: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            lease: Duration::from_secs(15),
            poll: Duration::from_millis(500),
            max_concurrent: 64,
            retry_after: Duration::from_secs(2),
        }
    }
}

/// Who a job acts for: stored with the job (column `principal`) so that the job, and every job
/// it starts, runs in the context of the request that started it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredPrincipal {
    tenant: String,
    user: String,
    role: Role,
    api_key: ApiKeyId,
    request_id: String,
}

impl StoredPrincipal {
    fn of(ctx: &OpCtx) -> StoredPrincipal {
        let p = ctx.principal();
        StoredPrincipal {
            tenant: p.tenant.name.to_string(),
            user: p.user.to_string(),
            role: p.role,
            api_key: p.api_key,
            request_id: ctx.request_id().to_string(),
        }
    }
}

/// Rebuilds the context a job runs in. The tenant id always comes from the job's row; a job
/// written by an older Corral stored only `user` or `user@tenant`, which still names the actor.
pub fn job_context(job: &JobRow) -> OpCtx {
    let job_id = job.id.clone();
    let (tenant, user, role, api_key, request_id) =
        match serde_json::from_str::<StoredPrincipal>(&job.principal) {
            Ok(p) => (p.tenant, p.user, p.role, p.api_key, p.request_id),
            Err(_) => {
                let raw = job.principal.trim_matches('"');
                let (user, tenant) = raw.split_once('@').unwrap_or((raw, ""));
                (
                    tenant.to_string(),
                    user.to_string(),
                    Role::User,
                    ApiKeyId::nil(),
                    String::new(),
                )
            }
        };
    let principal = Principal {
        tenant: TenantRef {
            id: job.tenant_id.clone(),
            name: TenantName::from_trusted(tenant),
        },
        user: UserName::from_trusted(user),
        role,
        api_key,
    };
    OpCtx::for_job(principal, request_id, job_id)
}

/// Builds a job row for [`Store::enqueue_job`] and the resource writes that enqueue jobs,
/// acting for `ctx` (a request, or the job that starts this one) in `scope`.
pub fn new_job(
    ctx: &OpCtx,
    scope: &TenantScope,
    kind: &str,
    subject: &str,
    payload: &impl Serialize,
    uses_slot: bool,
    deadline: Duration,
) -> Result<NewJob, Error> {
    let now = now_ms();
    Ok(NewJob {
        id: JobId::generate(),
        tenant_id: scope.id().clone(),
        kind: JobKind::from_trusted(kind),
        subject: subject.to_string(),
        payload: serde_json::to_string(payload).map_err(Error::internal)?,
        principal: serde_json::to_string(&StoredPrincipal::of(ctx)).map_err(Error::internal)?,
        uses_slot,
        run_after: now,
        deadline: now.saturating_add(deadline.as_millis() as i64),
    })
}

/// Runs the jobs of every registered kind.
pub struct JobEngine {
    store: Store,
    settings: JobSettings,
    owner: String,
    handlers: RwLock<HashMap<JobKind, Arc<dyn JobHandler>>>,
    wake: Arc<Notify>,
}

impl JobEngine {
    pub fn new(store: Store, settings: JobSettings) -> JobEngine {
        JobEngine {
            store,
            settings,
            owner: format!("worker-{}", JobId::generate()),
            handlers: RwLock::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
        }
    }

    /// This process's identity as a lease owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn register(&self, kind: &str, handler: Arc<dyn JobHandler>) {
        if let Ok(mut h) = self.handlers.write() {
            h.insert(JobKind::from_trusted(kind), handler);
        }
    }

    /// Looks at the queue now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn kinds(&self) -> Vec<JobKind> {
        self.handlers
            .read()
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn handler(&self, kind: &JobKind) -> Option<Arc<dyn JobHandler>> {
        self.handlers.read().ok()?.get(kind).cloned()
    }

    /// The engine's loop: reap, fail overdue jobs, claim and run ready jobs, until `shutdown`
    /// turns true. Jobs still running then are given back to the queue.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.settings.max_concurrent));
        let mut tasks = tokio::task::JoinSet::new();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut last_maintenance: Option<std::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Leases lapse at lease granularity, so reaping more often than a third of a lease
            // would only add write transactions (on SQLite, beside every API write).
            if last_maintenance.is_none_or(|at| at.elapsed() >= self.settings.lease / 3) {
                last_maintenance = Some(std::time::Instant::now());
                if let Err(e) = self.maintain().await {
                    tracing::warn!(error = %e, "job maintenance failed");
                }
            }
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                let lease_until = now_ms() + self.settings.lease.as_millis() as i64;
                let kinds = self.kinds();
                match self
                    .store
                    .claim_job(&self.owner, now_ms(), lease_until, &kinds)
                    .await
                {
                    Ok(Some(job)) => {
                        let engine = self.clone();
                        let stop = stop_rx.clone();
                        tasks.spawn(async move {
                            engine.clone().execute(job, stop).await;
                            drop(permit);
                            // A slot is free: claim the next job now, not at the next poll.
                            engine.wake();
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming a job failed");
                        break;
                    }
                }
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
    }

    /// The reaper's work, safe to run on every replica at once.
    async fn maintain(&self) -> Result<(), Error> {
        let now = now_ms();
        let requeued = self.store.requeue_expired_leases(now).await?;
        if requeued > 0 {
            tracing::info!(requeued, "re-queued jobs whose lease expired");
        }
        for job in self.store.fail_overdue_jobs(now, &self.kinds()).await? {
            tracing::warn!(job = %job.id, kind = %job.kind, subject = %job.subject, "job passed its deadline");
            self.report_failure(&job, "deadline passed").await;
        }
        Ok(())
    }

    async fn report_failure(&self, job: &JobRow, reason: &str) {
        if let Some(h) = self.handler(&job.kind)
            && let Err(e) = h.failed(job, reason).await
        {
            tracing::error!(job = %job.id, error = %e, "recording a job failure failed");
        }
    }

    async fn execute(self: Arc<Self>, job: JobRow, stop: watch::Receiver<bool>) {
        let op = job_context(&job);
        // The request's identity on every line the job logs, as on the request's own lines.
        let span = tracing::info_span!("job", id = %job.id, kind = %job.kind, subject = %job.subject,
            tenant = %op.tenant().name, user = %op.user(), request_id = %op.request_id());
        self.execute_in_span(job, op, stop).instrument(span).await;
    }

    async fn execute_in_span(self: Arc<Self>, job: JobRow, op: OpCtx, mut stop: watch::Receiver<bool>) {
        let Some(handler) = self.handler(&job.kind) else {
            tracing::error!("no handler for this kind of job");
            let _ = self
                .store
                .finish_job(
                    &job.id,
                    &self.owner,
                    JobState::Failed,
                    Some("unknown job kind"),
                    now_ms(),
                )
                .await;
            return;
        };
        let done = match self.store.job_steps(&job.id).await {
            Ok(steps) => steps.into_iter().collect(),
            Err(e) => {
                self.give_back(&job, &format!("{e}"), self.settings.retry_after)
                    .await;
                return;
            }
        };
        let mut ctx = JobCtx {
            job: job.clone(),
            op,
            owner: self.owner.clone(),
            store: self.store.clone(),
            done,
            wake: self.wake.clone(),
        };
        let remaining = Duration::from_millis(u64::try_from(job.deadline - now_ms()).unwrap_or(0));
        // The heartbeat lives inside this future: if the worker dies, so does its heartbeat,
        // and the lease lapses. If the lease is lost, the handler is dropped at once.
        let run = tokio::time::timeout(remaining, AssertUnwindSafe(handler.run(&mut ctx)).catch_unwind());
        let outcome = tokio::select! {
            r = run => match r {
                Err(_) => Outcome::Overdue,
                Ok(Err(_panic)) => Outcome::Ended(Err(JobError::Failed("internal error: the job handler panicked".into()))),
                Ok(Ok(r)) => Outcome::Ended(r),
            },
            () = heartbeat(&self.store, &job.id, &self.owner, self.settings.lease) => Outcome::Ended(Err(JobError::LeaseLost)),
            _ = stop.changed() => Outcome::Shutdown,
        };
        let now = now_ms();
        match outcome {
            Outcome::Shutdown => self.give_back(&job, "worker shutting down", Duration::ZERO).await,
            Outcome::Overdue => {
                if self
                    .store
                    .finish_job(
                        &job.id,
                        &self.owner,
                        JobState::Failed,
                        Some("deadline passed"),
                        now,
                    )
                    .await
                    .unwrap_or(false)
                {
                    self.report_failure(&job, "deadline passed").await;
                }
            }
            Outcome::Ended(Ok(())) => {
                if let Err(e) = self
                    .store
                    .finish_job(&job.id, &self.owner, JobState::Succeeded, None, now)
                    .await
                {
                    tracing::warn!(error = %e, "could not record the job's success; it will be resumed");
                }
            }
            Outcome::Ended(Err(JobError::Failed(reason))) => {
                tracing::warn!(%reason, "job failed");
                if self
                    .store
                    .finish_job(&job.id, &self.owner, JobState::Failed, Some(&reason), now)
                    .await
                    .unwrap_or(false)
                {
                    self.report_failure(&job, &reason).await;
                }
            }
            Outcome::Ended(Err(JobError::Retry { reason, after })) => {
                self.give_back(&job, &reason, after).await
            }
            Outcome::Ended(Err(JobError::Internal(e))) => {
                tracing::warn!(error = %e, "job hit an internal fault; retrying");
                self.give_back(&job, &e.to_string(), self.settings.retry_after)
                    .await;
            }
            Outcome::Ended(Err(JobError::LeaseLost)) => {
                tracing::info!("lease lost; another worker has the job")
            }
        }
    }

    async fn give_back(&self, job: &JobRow, reason: &str, after: Duration) {
        let now = now_ms();
        let run_after = now + after.as_millis() as i64;
        if let Err(e) = self
            .store
            .requeue_job(&job.id, &self.owner, run_after, reason, now)
            .await
        {
            tracing::warn!(error = %e, "could not re-queue the job; its lease will expire");
        }
        self.wake();
    }
}

/// How one run of a job ended.
enum Outcome {
    Ended(Result<(), JobError>),
    Overdue,
    Shutdown,
}

/// Renews the lease every third of its length; returns only when the lease is lost.
async fn heartbeat(store: &Store, id: &JobId, owner: &str, lease: Duration) {
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let until = now_ms() + lease.as_millis() as i64;
        match store.heartbeat_job(id, owner, until).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(principal: &str) -> JobRow {
        JobRow {
            id: JobId::from_trusted("job-1"),
            tenant_id: corral_types::TenantId::from_trusted("t-1"),
            kind: JobKind::from_trusted("k"),
            subject: "s".into(),
            payload: "{}".into(),
            principal: principal.into(),
            state: JobState::Queued,
            attempts: 0,
            deadline: 0,
            error: None,
        }
    }

    #[test]
    fn a_job_runs_in_the_context_of_its_request() {
        let ctx = OpCtx::new(
            Principal {
                tenant: TenantRef {
                    id: corral_types::TenantId::from_trusted("t-1"),
                    name: TenantName::from_trusted("acme".into()),
                },
                user: UserName::from_trusted("alice".into()),
                role: Role::User,
                api_key: ApiKeyId::new(),
            },
            "req-7",
        );
        let scope = ctx.require(corral_types::Access::Write).unwrap();
        let job = new_job(&ctx, &scope, "k", "s", &(), true, Duration::from_secs(1)).unwrap();
        let mut r = row(&job.principal);
        r.id = job.id.clone();
        let op = job_context(&r);
        assert_eq!(op.user().as_str(), "alice");
        assert_eq!(op.tenant().name.as_str(), "acme");
        assert_eq!(op.principal().role, Role::User);
        assert_eq!(op.principal().api_key, ctx.principal().api_key);
        assert_eq!(op.request_id(), "req-7");
        assert_eq!(op.job_id().map(|j| j.as_str()), Some(job.id.as_str()));
        assert_eq!(op.job_scope(), Some(scope));
        assert_eq!(op.actor(), "alice@acme");
    }

    #[test]
    fn jobs_of_an_older_corral_keep_their_actor() {
        // Older rows stored the user (JSON string) or `user@tenant`.
        let op = job_context(&row("\"admin\""));
        assert_eq!(op.user().as_str(), "admin");
        assert_eq!(op.request_id(), "");
        let op = job_context(&row("\"bob@acme\""));
        assert_eq!(op.actor(), "bob@acme");
        // The tenant id comes from the row, whatever the principal says.
        assert_eq!(op.tenant().id.as_str(), "t-1");
    }
}
