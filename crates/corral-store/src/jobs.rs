//! The durable job queue and singleton leases (design §5).
//!
//! A job is claimed by one worker under a lease (`lease_owner`, `lease_until`) that its
//! heartbeat renews. Every write a worker makes about its job is fenced by the lease: it
//! applies only while the row still names that worker as owner and is `running`, so a worker
//! that lost its lease (paused, partitioned, presumed dead) can no longer change anything.
//! Claiming respects each tenant's `workers` slots. On PostgreSQL candidates are taken with
//! `FOR UPDATE SKIP LOCKED` and the tenant row is locked while its running jobs are counted;
//! on SQLite the single writer connection serialises claims.

use corral_types::{Error, JobId, JobKind, TenantId, TenantScope};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{Backend, Store, db};

/// Where a job is in its life; stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

corral_types::sqlx_text!(JobState);

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub kind: JobKind,
    pub subject: String,
    pub payload: String,
    pub principal: String,
    pub uses_slot: bool,
    pub run_after: i64,
    pub deadline: i64,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub kind: JobKind,
    pub subject: String,
    pub payload: String,
    pub principal: String,
    pub state: JobState,
    pub attempts: i64,
    pub deadline: i64,
    pub error: Option<String>,
}

const JOB_COLS: &str = "id, tenant_id, kind, subject, payload, principal, state, attempts, deadline, error";

fn job_row(r: &AnyRow) -> Result<JobRow, sqlx::Error> {
    Ok(JobRow {
        id: r.try_get(0)?,
        tenant_id: TenantId::from_trusted(r.try_get::<String, _>(1)?),
        kind: r.try_get(2)?,
        subject: r.try_get(3)?,
        payload: r.try_get(4)?,
        principal: r.try_get(5)?,
        state: r.try_get(6)?,
        attempts: r.try_get(7)?,
        deadline: r.try_get(8)?,
        error: r.try_get(9)?,
    })
}

/// Inserts a job inside the caller's transaction, so a resource and the job that works on
/// it are committed together or not at all.
pub(crate) async fn insert_job(
    tx: &mut Transaction<'static, Any>,
    job: &NewJob,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO jobs (id, tenant_id, kind, subject, payload, principal, state, uses_slot, attempts, \
         run_after, deadline, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, 0, $8, $9, $10, $10)",
    )
    .bind(&job.id)
    .bind(job.tenant_id.as_str())
    .bind(&job.kind)
    .bind(&job.subject)
    .bind(&job.payload)
    .bind(&job.principal)
    .bind(i64::from(job.uses_slot))
    .bind(job.run_after)
    .bind(job.deadline)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Rows per multi-row `INSERT` of jobs (9 parameters each, within [`crate::MAX_PARAMS`]).
const INSERT_BATCH: usize = crate::MAX_PARAMS / 9;

/// Inserts many jobs, [`INSERT_BATCH`] rows per statement; with `once`, a job whose id is
/// already stored is left alone (a fan-out that runs again after a crash adds nothing twice).
pub(crate) async fn insert_jobs(
    tx: &mut Transaction<'static, Any>,
    jobs: &[NewJob],
    now: i64,
    once: bool,
) -> Result<(), Error> {
    let conflict = if once { " ON CONFLICT (id) DO NOTHING" } else { "" };
    for chunk in jobs.chunks(INSERT_BATCH) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = i * 9;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, 'queued', ${}, 0, ${}, ${}, $1, $1)",
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9,
                    b + 10
                )
            })
            .collect();
        let mut q = sqlx::query(sqlf!(
            "INSERT INTO jobs (id, tenant_id, kind, subject, payload, principal, state, uses_slot, attempts, \
             run_after, deadline, created_at, updated_at) VALUES {}{conflict}",
            values.join(", ")
        ))
        .bind(now);
        for job in chunk {
            q = q
                .bind(&job.id)
                .bind(job.tenant_id.as_str())
                .bind(&job.kind)
                .bind(&job.subject)
                .bind(&job.payload)
                .bind(&job.principal)
                .bind(i64::from(job.uses_slot))
                .bind(job.run_after)
                .bind(job.deadline);
        }
        q.execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

/// Adds a line to a job's history.
pub(crate) async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    job_id: &JobId,
    now: i64,
    message: &str,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO job_events (job_id, at, message) VALUES ($1, $2, $3)")
        .bind(job_id)
        .bind(now)
        .bind(message)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// `$first, $first+1, ...` for an `IN (...)` list of `n` bound values.
fn placeholders_from(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The condition that fences a worker's writes to its job.
const FENCE: &str = "id = $1 AND lease_owner = $2 AND state = 'running'";

/// A job's lease as its worker holds it: writes a job makes about its resources outside its
/// own row (a batch of instances) check it inside their transaction, so a worker that lost
/// the job can no longer change them.
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    pub job: &'a JobId,
    pub owner: &'a str,
}

impl Fence<'_> {
    /// Whether the lease is still held, checked inside `tx` (on PostgreSQL the job's row stays
    /// locked to commit, so the reaper cannot re-queue the job in between).
    pub(crate) async fn held(
        &self,
        tx: &mut Transaction<'static, Any>,
        backend: Backend,
    ) -> Result<bool, Error> {
        let lock = if backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        Ok(sqlx::query(sqlf!("SELECT 1 FROM jobs WHERE {FENCE}{lock}"))
            .bind(self.job)
            .bind(self.owner)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .is_some())
    }
}

impl Store {
    /// Enqueues a job on its own.
    pub async fn enqueue_job(&self, job: &NewJob, now: i64) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        insert_job(&mut tx, job, now).await?;
        insert_event(&mut tx, &job.id, now, "queued").await?;
        tx.commit().await.map_err(db)
    }

    /// Enqueues the jobs a job fans out into, in one transaction; ids already stored are
    /// skipped, so a fan-out repeated after a crash is harmless.
    pub async fn enqueue_jobs_once(&self, jobs: &[NewJob], now: i64) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        insert_jobs(&mut tx, jobs, now, true).await?;
        tx.commit().await.map_err(db)
    }

    /// The tenant's `workers`: how many of its jobs may hold a slot at once.
    pub async fn tenant_workers(&self, tenant: &TenantScope) -> Result<i64, Error> {
        sqlx::query("SELECT workers FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map_or(Ok(0), |r| r.try_get(0))
            .map_err(db)
    }

    /// Claims the oldest ready job whose tenant has a free slot (or that needs none), leasing
    /// it to `owner` until `lease_until`. Only jobs of `kinds` are considered: a replica never
    /// takes a job it has no handler for (during a rolling upgrade of Corral, say).
    pub async fn claim_job(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        kinds: &[JobKind],
    ) -> Result<Option<JobRow>, Error> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        let lock = if self.backend == Backend::Postgres {
            " FOR UPDATE OF j SKIP LOCKED"
        } else {
            ""
        };
        // Tenants with a free worker slot first (few rows, each count from an index), so the
        // queue scan below never evaluates a per-row subquery over a long queue.
        let free: Vec<String> = sqlx::query(
            "SELECT t.id FROM tenants t WHERE t.workers > (SELECT COUNT(*) FROM jobs r \
             WHERE r.tenant_id = t.id AND r.state = 'running' AND r.uses_slot = 1)",
        )
        .fetch_all(&mut *tx)
        .await
        .and_then(|rows| rows.iter().map(|r| r.try_get::<String, _>(0)).collect())
        .map_err(db)?;
        let kinds_at = placeholders_from(2, kinds.len());
        let tenants_clause = if free.is_empty() {
            String::new()
        } else {
            format!(
                " OR j.tenant_id IN ({})",
                placeholders_from(2 + kinds.len(), free.len())
            )
        };
        // SQLite would otherwise pick the tenant index for the `IN` list and sort the whole
        // queue; the claim order index reads it already sorted.
        let indexed = if self.backend == Backend::Sqlite {
            " INDEXED BY jobs_claim_order"
        } else {
            ""
        };
        let mut query = sqlx::query(sqlf!(
            "SELECT j.id, j.tenant_id, j.uses_slot FROM jobs j{indexed} \
             WHERE j.state = 'queued' AND j.run_after <= $1 AND j.kind IN ({kinds_at}) \
             AND (j.uses_slot = 0{tenants_clause}) \
             ORDER BY j.state, j.run_after, j.created_at, j.id LIMIT 8{lock}"
        ))
        .bind(now);
        for k in kinds {
            query = query.bind(k);
        }
        for t in &free {
            query = query.bind(t);
        }
        let candidates = query.fetch_all(&mut *tx).await.map_err(db)?;
        for c in candidates {
            let (id, tenant, uses_slot): (JobId, String, i64) = (
                c.try_get(0).map_err(db)?,
                c.try_get(1).map_err(db)?,
                c.try_get(2).map_err(db)?,
            );
            if uses_slot == 1 && self.backend == Backend::Postgres {
                // Another replica may have claimed a job of this tenant since the count above:
                // count again under the tenant's row lock.
                let free: i64 = sqlx::query(
                    "SELECT t.workers - (SELECT COUNT(*) FROM jobs r WHERE r.tenant_id = t.id \
                     AND r.state = 'running' AND r.uses_slot = 1) FROM tenants t WHERE t.id = $1 FOR UPDATE",
                )
                .bind(&tenant)
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db)?;
                if free <= 0 {
                    continue;
                }
            }
            sqlx::query(
                "UPDATE jobs SET state = 'running', lease_owner = $2, lease_until = $3, \
                 attempts = attempts + 1, updated_at = $4 WHERE id = $1",
            )
            .bind(&id)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            insert_event(&mut tx, &id, now, &format!("claimed by {owner}")).await?;
            let row = sqlx::query(sqlf!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"))
                .bind(&id)
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| job_row(&r))
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(Some(row));
        }
        tx.rollback().await.map_err(db)?;
        Ok(None)
    }

    /// Renews a lease. False when the worker no longer holds it: it must stop at once.
    pub async fn heartbeat_job(&self, id: &JobId, owner: &str, lease_until: i64) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(sqlf!("UPDATE jobs SET lease_until = $3 WHERE {FENCE}"))
            .bind(id)
            .bind(owner)
            .bind(lease_until)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    /// The steps a job completed so far, with their recorded outputs.
    pub async fn job_steps(&self, id: &JobId) -> Result<Vec<(String, String)>, Error> {
        sqlx::query("SELECT step, output FROM job_steps WHERE job_id = $1 ORDER BY done_at, step")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .and_then(|rows| rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect())
            .map_err(db)
    }

    /// Records a completed step (fenced). False when the lease was lost.
    pub async fn complete_step(
        &self,
        id: &JobId,
        owner: &str,
        step: &str,
        output: &str,
        now: i64,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let held = sqlx::query(sqlf!("SELECT 1 FROM jobs WHERE {FENCE}"))
            .bind(id)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_some();
        if !held {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO job_steps (job_id, step, output, done_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job_id, step) DO UPDATE SET output = excluded.output, done_at = excluded.done_at",
        )
        .bind(id)
        .bind(step)
        .bind(output)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    /// Ends a job (fenced) with `succeeded`, `failed` or `cancelled`.
    pub async fn finish_job(
        &self,
        id: &JobId,
        owner: &str,
        final_state: JobState,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(sqlf!(
            "UPDATE jobs SET state = $3, error = $4, lease_owner = NULL, lease_until = NULL, updated_at = $5 \
             WHERE {FENCE}"
        ))
        .bind(id)
        .bind(owner)
        .bind(final_state)
        .bind(error)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 1 {
            let msg = match error {
                Some(e) => format!("{final_state}: {e}"),
                None => final_state.to_string(),
            };
            insert_event(&mut tx, id, now, &msg).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    /// The reaper: jobs whose lease lapsed (their worker died or stalled) go back to the queue.
    pub async fn requeue_expired_leases(&self, now: i64) -> Result<u64, Error> {
        let mut tx = self.begin_write().await?;
        let expired: Vec<JobId> =
            sqlx::query("SELECT id FROM jobs WHERE state = 'running' AND lease_until < $1")
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
                .map_err(db)?;
        let mut requeued = 0;
        for id in &expired {
            let done = sqlx::query(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, updated_at = $2 \
                 WHERE id = $1 AND state = 'running' AND lease_until < $2",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if done.rows_affected() == 1 {
                insert_event(&mut tx, id, now, "lease expired: re-queued").await?;
                requeued += 1;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(requeued)
    }

    /// Fails every unfinished job of `kinds` whose deadline passed and answers them, so core
    /// can put their resources in the family's failure state (only a replica with the kind's
    /// handler can do that, so only such a replica fails it).
    pub async fn fail_overdue_jobs(&self, now: i64, kinds: &[JobKind]) -> Result<Vec<JobRow>, Error> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let placeholders = placeholders_from(2, kinds.len());
        let mut query = sqlx::query(sqlf!(
            "SELECT {JOB_COLS} FROM jobs WHERE state IN ('queued', 'running') AND deadline < $1 \
             AND kind IN ({placeholders})"
        ))
        .bind(now);
        for k in kinds {
            query = query.bind(k);
        }
        let overdue = query
            .fetch_all(&mut *tx)
            .await
            .and_then(|rows| rows.iter().map(job_row).collect::<Result<Vec<_>, _>>())
            .map_err(db)?;
        // Only the jobs this transaction really failed are answered: a worker may have ended
        // one since the SELECT (PostgreSQL's READ COMMITTED), and its failure is reported once.
        let mut failed = Vec::with_capacity(overdue.len());
        for job in overdue {
            let done = sqlx::query(
                "UPDATE jobs SET state = 'failed', error = 'deadline passed', lease_owner = NULL, \
                 lease_until = NULL, updated_at = $2 WHERE id = $1 AND state IN ('queued', 'running')",
            )
            .bind(&job.id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if done.rows_affected() == 1 {
                insert_event(&mut tx, &job.id, now, "failed: deadline passed").await?;
                failed.push(job);
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(failed)
    }

    pub async fn get_job(&self, id: &JobId) -> Result<Option<JobRow>, Error> {
        sqlx::query(sqlf!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .and_then(|r| r.as_ref().map(job_row).transpose())
            .map_err(db)
    }

    /// A job's history, oldest first.
    pub async fn job_events(&self, id: &JobId) -> Result<Vec<(i64, String)>, Error> {
        sqlx::query("SELECT at, message FROM job_events WHERE job_id = $1 ORDER BY at")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .and_then(|rows| rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect())
            .map_err(db)
    }

    /// Cancels the unfinished jobs of a subject (a deleted host's investigation, say). A job
    /// running elsewhere notices at its next fenced write.
    pub async fn cancel_jobs(
        &self,
        tenant: &TenantScope,
        kind: &str,
        subject: &str,
        now: i64,
    ) -> Result<u64, Error> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_until = NULL, updated_at = $4 \
             WHERE tenant_id = $1 AND kind = $2 AND subject = $3 AND state IN ('queued', 'running')",
        )
        .bind(tenant.as_str())
        .bind(kind)
        .bind(subject)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected())
    }

    /// Takes or renews the lease of singleton `name` for `owner`. Answers the fencing
    /// generation while `owner` holds it, `None` while another live owner does. The
    /// generation grows each time the singleton changes hands.
    pub async fn acquire_singleton(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<i64>, Error> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO singletons (name, owner, generation, lease_until) VALUES ($1, $2, 1, $4) \
             ON CONFLICT (name) DO UPDATE SET \
                 generation = CASE WHEN singletons.owner = excluded.owner \
                                   THEN singletons.generation ELSE singletons.generation + 1 END, \
                 owner = excluded.owner, lease_until = excluded.lease_until \
             WHERE singletons.owner = excluded.owner OR singletons.lease_until < $3 \
             RETURNING generation",
        )
        .bind(name)
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        row.map(|r| r.try_get(0)).transpose().map_err(db)
    }
}

impl Store {
    /// Puts a job back in the queue (fenced): a transient failure to retry after `run_after`,
    /// or a job given up by a worker that is shutting down.
    pub async fn requeue_job(
        &self,
        id: &JobId,
        owner: &str,
        run_after: i64,
        reason: &str,
        now: i64,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(sqlf!(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, run_after = $3, \
             updated_at = $4 WHERE {FENCE}"
        ))
        .bind(id)
        .bind(owner)
        .bind(run_after)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 1 {
            insert_event(&mut tx, id, now, &format!("re-queued: {reason}")).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected() == 1)
    }
}
