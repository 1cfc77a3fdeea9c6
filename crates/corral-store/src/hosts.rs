//! Commissaire hosts, clusters, memberships and operation records.
//!
//! Membership changes, cluster deletes and operation starts of one cluster serialise on the
//! cluster's row ([`lock_cluster`]), so the compare-and-swap of `PUT .../hosts` and the
//! "no change while an operation is in process" rule hold with several replicas.

use corral_types::{
    ClusterName, Error, HostAddress, JobId, ObjectType, OperationKind, OperationStatus, TenantId,
    TenantScope, Verb,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::changes::Journal;
use crate::jobs::{NewJob, insert_event, insert_job};
use crate::{Changed, NewChange, Store, db};

/// A stored host, with the cluster it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub address: HostAddress,
    pub status: String,
    pub os: String,
    pub cpus: i64,
    pub memory: i64,
    pub space: i64,
    pub last_check: Option<i64>,
    pub source: String,
    pub remote_user: String,
    pub ssh_key_sealed: String,
    pub ssh_key_digest: String,
    pub host_key_fingerprint: Option<String>,
    pub message: String,
    pub bootstrapped: bool,
    pub hostname: String,
    pub ipv4: String,
    pub registered: bool,
    pub cluster: Option<ClusterName>,
}

const HOST_COLS: &str = "h.address, h.status, h.os, h.cpus, h.memory, h.space, h.last_check, h.source, \
     h.remote_user, h.ssh_key_sealed, h.ssh_key_digest, h.host_key_fingerprint, h.message, h.bootstrapped, \
     h.hostname, h.ipv4, h.registered, m.cluster";
const HOST_FROM: &str =
    "hosts h LEFT JOIN cluster_hosts m ON m.tenant_id = h.tenant_id AND m.address = h.address";

fn host_row(r: &AnyRow) -> Result<HostRow, sqlx::Error> {
    Ok(HostRow {
        address: r.try_get(0)?,
        status: r.try_get(1)?,
        os: r.try_get(2)?,
        cpus: r.try_get(3)?,
        memory: r.try_get(4)?,
        space: r.try_get(5)?,
        last_check: r.try_get(6)?,
        source: r.try_get(7)?,
        remote_user: r.try_get(8)?,
        ssh_key_sealed: r.try_get(9)?,
        ssh_key_digest: r.try_get(10)?,
        host_key_fingerprint: r.try_get(11)?,
        message: r.try_get(12)?,
        bootstrapped: r.try_get::<i64, _>(13)? == 1,
        hostname: r.try_get(14)?,
        ipv4: r.try_get(15)?,
        registered: r.try_get::<i64, _>(16)? == 1,
        cluster: r.try_get(17)?,
    })
}

/// [`host_row`] for the SQLite fast path (fast.rs).
fn fast_host_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostRow> {
    Ok(HostRow {
        address: HostAddress::from_trusted(r.get::<_, String>(0)?),
        status: r.get(1)?,
        os: r.get(2)?,
        cpus: r.get(3)?,
        memory: r.get(4)?,
        space: r.get(5)?,
        last_check: r.get(6)?,
        source: r.get(7)?,
        remote_user: r.get(8)?,
        ssh_key_sealed: r.get(9)?,
        ssh_key_digest: r.get(10)?,
        host_key_fingerprint: r.get(11)?,
        message: r.get(12)?,
        bootstrapped: r.get::<_, i64>(13)? == 1,
        hostname: r.get(14)?,
        ipv4: r.get(15)?,
        registered: r.get::<_, i64>(16)? == 1,
        cluster: r.get::<_, Option<String>>(17)?.map(ClusterName::from_trusted),
    })
}

/// A host to register.
#[derive(Debug, Clone)]
pub struct NewHost {
    pub address: HostAddress,
    pub source: String,
    pub remote_user: String,
    pub ssh_key_sealed: String,
    pub ssh_key_digest: String,
    pub host_key_fingerprint: Option<String>,
    pub create_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateHostOutcome {
    Created(HostRow),
    /// The address is taken; the stored host, for the caller to compare.
    Exists(HostRow),
    QuotaExceeded(i64),
    ClusterMissing,
    /// The cluster has an operation of this type in process.
    ClusterBusy(OperationKind),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteHostOutcome {
    /// Deleted; the cluster it was a member of, if any, and whether it was registered there.
    Deleted(Option<ClusterName>, bool),
    NotFound,
    ClusterBusy(OperationKind),
}

/// A stored cluster with its members in join order and their statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRow {
    pub name: ClusterName,
    pub network: String,
    pub container_manager: String,
    /// Member addresses with their host statuses.
    pub members: Vec<(HostAddress, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateClusterOutcome {
    Created(ClusterRow),
    Exists(ClusterRow),
    NetworkMissing,
    ContainerManagerMissing,
    QuotaExceeded(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteClusterOutcome {
    /// Deleted; its former members with whether each was registered with the manager.
    Deleted(Vec<(HostAddress, bool)>),
    NotFound,
    Busy(OperationKind),
}

/// Why a membership change was refused, or what it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipOutcome {
    /// Done: hosts added (in join order) and removed (with their `registered` flag).
    Changed {
        added: Vec<HostAddress>,
        removed: Vec<(HostAddress, bool)>,
    },
    NoCluster,
    Busy(OperationKind),
    Mismatch,
    HostMissing(HostAddress),
    OtherCluster(HostAddress, ClusterName),
    /// Hosts to add with their statuses, which are not `active` or `disassociated`.
    NotReady(Vec<(HostAddress, String)>),
}

/// An operation record (deploy, upgrade, restart) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRow {
    pub cluster: ClusterName,
    pub kind: OperationKind,
    pub status: OperationStatus,
    pub version: String,
    pub max_parallel: i64,
    pub members: Vec<HostAddress>,
    pub done: Vec<HostAddress>,
    pub in_process: Vec<HostAddress>,
    pub failed: Vec<HostAddress>,
    pub message: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub job_id: JobId,
}

const OP_COLS: &str = "cluster, type, status, version, max_parallel, members, done, in_process, failed, message, \
                       started_at, finished_at, job_id";

/// A JSON array of addresses (serde transparent: the stored text is an array of strings).
fn list(text: String) -> Result<Vec<HostAddress>, sqlx::Error> {
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn op_row(r: &AnyRow) -> Result<OperationRow, sqlx::Error> {
    Ok(OperationRow {
        cluster: r.try_get(0)?,
        kind: r.try_get(1)?,
        status: r.try_get(2)?,
        version: r.try_get(3)?,
        max_parallel: r.try_get(4)?,
        members: list(r.try_get(5)?)?,
        done: list(r.try_get(6)?)?,
        in_process: list(r.try_get(7)?)?,
        failed: list(r.try_get(8)?)?,
        message: r.try_get(9)?,
        started_at: r.try_get(10)?,
        finished_at: r.try_get(11)?,
        job_id: r.try_get(12)?,
    })
}

fn json_list(v: &[HostAddress]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// What a host's status becomes; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    pub status: String,
    pub message: String,
    pub bootstrapped: Option<bool>,
    pub registered: Option<bool>,
    pub last_check: Option<i64>,
}

impl HostState {
    pub fn new(status: &str, message: &str) -> HostState {
        HostState {
            status: status.into(),
            message: message.into(),
            ..HostState::default()
        }
    }
}

/// The facts an investigation gathered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub os: String,
    pub cpus: i64,
    pub memory: i64,
    pub space: i64,
    pub hostname: String,
    pub ipv4: String,
}

/// An operation to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOperation {
    pub cluster: ClusterName,
    pub kind: OperationKind,
    pub version: String,
    pub max_parallel: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOperationOutcome {
    Started(OperationRow),
    /// The same operation is in process: its current record.
    AlreadyRunning(OperationRow),
    /// Another operation (or a deploy of another version) is in process.
    Conflict(OperationRow),
    NoCluster,
}

/// Locks a cluster row for the rest of the transaction; false when it does not exist.
async fn lock_cluster(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    name: &ClusterName,
) -> Result<bool, Error> {
    let done = sqlx::query("UPDATE clusters SET name = name WHERE tenant_id = $1 AND name = $2")
        .bind(tenant.as_str())
        .bind(name)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

/// The type of the operation in process on a cluster, if any.
async fn busy(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    cluster: &ClusterName,
) -> Result<Option<OperationKind>, Error> {
    sqlx::query("SELECT type FROM operations WHERE tenant_id = $1 AND cluster = $2 AND status = 'in_process'")
        .bind(tenant.as_str())
        .bind(cluster)
        .fetch_optional(&mut **tx)
        .await
        .and_then(|r| r.map(|r| r.try_get(0)).transpose())
        .map_err(db)
}

async fn host_in(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    address: &HostAddress,
) -> Result<Option<HostRow>, Error> {
    sqlx::query(sqlf!(
        "SELECT {HOST_COLS} FROM {HOST_FROM} WHERE h.tenant_id = $1 AND h.address = $2"
    ))
    .bind(tenant.as_str())
    .bind(address)
    .fetch_optional(&mut **tx)
    .await
    .and_then(|r| r.as_ref().map(host_row).transpose())
    .map_err(db)
}

/// A cluster with its members, read inside a transaction.
async fn cluster_in(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    name: &ClusterName,
) -> Result<Option<ClusterRow>, Error> {
    let Some(row) = sqlx::query(
        "SELECT name, network, container_manager FROM clusters WHERE tenant_id = $1 AND name = $2",
    )
    .bind(tenant.as_str())
    .bind(name)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?
    else {
        return Ok(None);
    };
    let members = members_in(tx, tenant, name)
        .await?
        .into_iter()
        .map(|(a, status, _)| (a, status))
        .collect();
    Ok(Some(ClusterRow {
        name: row.try_get(0).map_err(db)?,
        network: row.try_get(1).map_err(db)?,
        container_manager: row.try_get(2).map_err(db)?,
        members,
    }))
}

/// Records a host's change as the transaction left it, and its cluster's (a cluster's
/// status is computed from its members').
async fn journal_host(
    tx: &mut Transaction<'static, Any>,
    journal: &mut Journal<'_>,
    tenant: &TenantScope,
    address: &HostAddress,
) -> Result<(), Error> {
    if let Some(h) = host_in(tx, tenant, address).await? {
        journal.row(Verb::Updated, Changed::Host(&h));
        if let Some(c) = &h.cluster {
            journal_cluster(tx, journal, tenant, c).await?;
        }
    }
    Ok(())
}

async fn journal_cluster(
    tx: &mut Transaction<'static, Any>,
    journal: &mut Journal<'_>,
    tenant: &TenantScope,
    name: &ClusterName,
) -> Result<(), Error> {
    if let Some(c) = cluster_in(tx, tenant, name).await? {
        journal.row(Verb::Updated, Changed::Cluster(&c));
    }
    Ok(())
}

/// The per-host progress an operation update made: a host that entered `in_process`,
/// `done` or `failed` is a step that started or ended.
fn step_changes(before: &OperationRow, after: &OperationRow) -> Vec<NewChange> {
    let mut out = Vec::new();
    for (list, old, status) in [
        (&after.in_process, &before.in_process, "in_process"),
        (&after.done, &before.done, "done"),
        (&after.failed, &before.failed, "failed"),
    ] {
        for host in list.iter().filter(|h| !old.contains(h)) {
            out.push(NewChange {
                verb: Verb::Updated,
                object_type: ObjectType::OperationStep,
                object_id: format!("{}/{}/{}", after.cluster, after.kind, host),
                namespace: String::new(),
                view: serde_json::json!({
                    "cluster": after.cluster,
                    "type": after.kind.as_str(),
                    "host": host,
                    "status": status,
                }),
            });
        }
    }
    out
}

async fn append_member(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    cluster: &ClusterName,
    address: &HostAddress,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO cluster_hosts (tenant_id, address, cluster, position) \
         SELECT $1, $2, $3, COALESCE(MAX(position), 0) + 1 FROM cluster_hosts WHERE tenant_id = $1 AND cluster = $3",
    )
    .bind(tenant.as_str())
    .bind(address)
    .bind(cluster)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

async fn members_in(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    cluster: &ClusterName,
) -> Result<Vec<(HostAddress, String, bool)>, Error> {
    sqlx::query(
        "SELECT m.address, h.status, h.registered FROM cluster_hosts m JOIN hosts h \
         ON h.tenant_id = m.tenant_id AND h.address = m.address \
         WHERE m.tenant_id = $1 AND m.cluster = $2 ORDER BY m.position",
    )
    .bind(tenant.as_str())
    .bind(cluster)
    .fetch_all(&mut **tx)
    .await
    .and_then(|rows| {
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<i64, _>(2)? == 1)))
            .collect()
    })
    .map_err(db)
}

/// Removes a member; its container-manager registration is the caller's to undo.
async fn drop_member(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    address: &HostAddress,
) -> Result<(), Error> {
    sqlx::query("DELETE FROM cluster_hosts WHERE tenant_id = $1 AND address = $2")
        .bind(tenant.as_str())
        .bind(address)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    // A bootstrapped host out of every cluster is `disassociated`; others keep their status.
    sqlx::query(
        "UPDATE hosts SET status = CASE WHEN status = 'active' THEN 'disassociated' ELSE status END, registered = 0 \
         WHERE tenant_id = $1 AND address = $2",
    )
    .bind(tenant.as_str())
    .bind(address)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

impl Store {
    pub async fn list_hosts(&self, tenant: &TenantScope) -> Result<Vec<HostRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {HOST_COLS} FROM {HOST_FROM} WHERE h.tenant_id = $1 ORDER BY {}",
            self.bytewise("h.address")
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(host_row).collect())
        .map_err(db)
    }

    /// The tenant's hosts sorted by address, read from one database cursor by a task of its
    /// own and handed over in batches of at most `batch` rows through a channel of two
    /// batches: a slow reader holds back the cursor, so a list of any length never sits in
    /// memory (`GET /api/v0/hosts` streams it). An error ends the stream after being yielded;
    /// dropping the stream stops the task and closes the cursor.
    pub fn stream_hosts(
        &self,
        tenant: &TenantScope,
        batch: usize,
    ) -> impl futures_util::Stream<Item = Result<Vec<HostRow>, Error>> + Send + use<> {
        use futures_util::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<HostRow>, Error>>(2);
        let pool = self.pool.clone();
        let sql = sqlf!(
            "SELECT {HOST_COLS} FROM {HOST_FROM} WHERE h.tenant_id = $1 ORDER BY {}",
            self.bytewise("h.address")
        );
        let tenant = tenant.as_str().to_string();
        let batch = batch.max(1);
        tokio::spawn(async move {
            let mut rows = sqlx::query(sql).bind(tenant).fetch(&pool);
            let mut buf = Vec::with_capacity(batch);
            while let Some(r) = rows.next().await {
                match r.and_then(|r| host_row(&r)) {
                    Ok(h) => buf.push(h),
                    Err(e) => {
                        let _ = tx.send(Err(db(e))).await;
                        return;
                    }
                }
                if buf.len() >= batch && tx.send(Ok(std::mem::take(&mut buf))).await.is_err() {
                    return;
                }
            }
            if !buf.is_empty() {
                let _ = tx.send(Ok(buf)).await;
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
            .fuse()
    }

    pub async fn get_host(
        &self,
        tenant: &TenantScope,
        address: &HostAddress,
    ) -> Result<Option<HostRow>, Error> {
        let sql = format!("SELECT {HOST_COLS} FROM {HOST_FROM} WHERE h.tenant_id = $1 AND h.address = $2");
        if let Some(fast) = &self.fast {
            return fast.read(|c| {
                use rusqlite::OptionalExtension;
                c.prepare_cached(&sql)?
                    .query_row([tenant.as_str(), address.as_str()], fast_host_row)
                    .optional()
            });
        }
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(address)
            .fetch_optional(&self.pool)
            .await
            .and_then(|r| r.as_ref().map(host_row).transpose())
            .map_err(db)
    }

    /// Registers a host, joins it to `cluster` if given, and enqueues its investigation, in
    /// one transaction.
    pub async fn create_host(
        &self,
        tenant: &TenantScope,
        host: &NewHost,
        cluster: Option<&ClusterName>,
        job: &NewJob,
    ) -> Result<CreateHostOutcome, Error> {
        let mut tx = self.begin_write().await?;
        // Locks the tenant row (a no-op update) so concurrent registrations count in turn.
        let max_nodes: i64 =
            sqlx::query("UPDATE tenants SET workers = workers WHERE id = $1 RETURNING max_nodes")
                .bind(tenant.as_str())
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db)?;
        if let Some(existing) = host_in(&mut tx, tenant, &host.address).await? {
            return Ok(CreateHostOutcome::Exists(existing));
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM hosts WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db)?;
        if count >= max_nodes {
            return Ok(CreateHostOutcome::QuotaExceeded(max_nodes));
        }
        if let Some(c) = cluster {
            if !lock_cluster(&mut tx, tenant, c).await? {
                return Ok(CreateHostOutcome::ClusterMissing);
            }
            if let Some(op) = busy(&mut tx, tenant, c).await? {
                return Ok(CreateHostOutcome::ClusterBusy(op));
            }
        }
        sqlx::query(
            "INSERT INTO hosts (tenant_id, address, create_time, source, remote_user, ssh_key_sealed, ssh_key_digest, \
             host_key_fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(tenant.as_str())
        .bind(&host.address)
        .bind(host.create_time)
        .bind(&host.source)
        .bind(&host.remote_user)
        .bind(&host.ssh_key_sealed)
        .bind(&host.ssh_key_digest)
        .bind(&host.host_key_fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(c) = cluster {
            append_member(&mut tx, tenant, c, &host.address).await?;
        }
        insert_job(&mut tx, job, host.create_time).await?;
        insert_event(&mut tx, &job.id, host.create_time, "queued").await?;
        let row = host_in(&mut tx, tenant, &host.address)
            .await?
            .ok_or_else(|| Error::internal("host vanished"))?;
        let mut journal = self.journal(tenant);
        journal.row(Verb::Created, Changed::Host(&row));
        if let Some(c) = cluster {
            journal_cluster(&mut tx, &mut journal, tenant, c).await?;
        }
        journal.commit(tx, tenant).await?;
        Ok(CreateHostOutcome::Created(row))
    }

    /// Deletes a host, its membership and credentials, and cancels its pending jobs.
    pub async fn delete_host(
        &self,
        tenant: &TenantScope,
        address: &HostAddress,
        now: i64,
    ) -> Result<DeleteHostOutcome, Error> {
        let mut tx = self.begin_write().await?;
        let Some(host) = host_in(&mut tx, tenant, address).await? else {
            return Ok(DeleteHostOutcome::NotFound);
        };
        if let Some(c) = &host.cluster {
            lock_cluster(&mut tx, tenant, c).await?;
            if let Some(op) = busy(&mut tx, tenant, c).await? {
                return Ok(DeleteHostOutcome::ClusterBusy(op));
            }
        }
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_until = NULL, updated_at = $3 \
             WHERE tenant_id = $1 AND subject = $2 AND kind LIKE 'host.%' AND state IN ('queued', 'running')",
        )
        .bind(tenant.as_str())
        .bind(address)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM hosts WHERE tenant_id = $1 AND address = $2")
            .bind(tenant.as_str())
            .bind(address)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut journal = self.journal(tenant);
        journal.row(Verb::Deleted, Changed::Host(&host));
        if let Some(c) = &host.cluster {
            journal_cluster(&mut tx, &mut journal, tenant, c).await?;
        }
        journal.commit(tx, tenant).await?;
        Ok(DeleteHostOutcome::Deleted(host.cluster, host.registered))
    }

    /// Records the facts of an investigation and moves the host to `bootstrapping`.
    pub async fn record_facts(
        &self,
        tenant: &TenantScope,
        address: &HostAddress,
        f: &HostFacts,
        now: i64,
    ) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE hosts SET os = $3, cpus = $4, memory = $5, space = $6, hostname = $7, ipv4 = $8, \
             last_check = $9, status = 'bootstrapping', message = '' WHERE tenant_id = $1 AND address = $2",
        )
        .bind(tenant.as_str())
        .bind(address)
        .bind(&f.os)
        .bind(f.cpus)
        .bind(f.memory)
        .bind(f.space)
        .bind(&f.hostname)
        .bind(&f.ipv4)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let mut journal = self.journal(tenant);
        journal_host(&mut tx, &mut journal, tenant, address).await?;
        journal.commit(tx, tenant).await
    }

    /// Pins the host key fingerprint seen at the first contact (trust on first use). Only
    /// sets it when none is recorded, so a concurrent contact cannot replace it.
    pub async fn pin_host_key(
        &self,
        tenant: &TenantScope,
        address: &HostAddress,
        fingerprint: &str,
    ) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE hosts SET host_key_fingerprint = $3 WHERE tenant_id = $1 AND address = $2 \
             AND host_key_fingerprint IS NULL",
        )
        .bind(tenant.as_str())
        .bind(address)
        .bind(fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Sets a host's status and message, and the other fields `state` gives.
    pub async fn set_host_state(
        &self,
        tenant: &TenantScope,
        address: &HostAddress,
        state: &HostState,
    ) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE hosts SET status = $3, message = $4, bootstrapped = COALESCE($5, bootstrapped), \
             registered = COALESCE($6, registered), last_check = COALESCE($7, last_check) \
             WHERE tenant_id = $1 AND address = $2",
        )
        .bind(tenant.as_str())
        .bind(address)
        .bind(&state.status)
        .bind(&state.message)
        .bind(state.bootstrapped.map(i64::from))
        .bind(state.registered.map(i64::from))
        .bind(state.last_check)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let mut journal = self.journal(tenant);
        journal_host(&mut tx, &mut journal, tenant, address).await?;
        journal.commit(tx, tenant).await
    }

    pub async fn list_clusters(&self, tenant: &TenantScope) -> Result<Vec<ClusterName>, Error> {
        sqlx::query(sqlf!(
            "SELECT name FROM clusters WHERE tenant_id = $1 ORDER BY {}",
            self.bytewise("name")
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
        .map_err(db)
    }

    /// Every cluster of the tenant with its members in join order (the SQL read model).
    pub async fn all_clusters(&self, tenant: &TenantScope) -> Result<Vec<ClusterRow>, Error> {
        let mut clusters: Vec<ClusterRow> = sqlx::query(sqlf!(
            "SELECT name, network, container_manager FROM clusters WHERE tenant_id = $1 ORDER BY {}",
            self.bytewise("name")
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok(ClusterRow {
                        name: r.try_get(0)?,
                        network: r.try_get(1)?,
                        container_manager: r.try_get(2)?,
                        members: Vec::new(),
                    })
                })
                .collect()
        })
        .map_err(db)?;
        let members: Vec<(ClusterName, HostAddress, String)> = sqlx::query(
            "SELECT m.cluster, m.address, h.status FROM cluster_hosts m JOIN hosts h ON h.tenant_id = m.tenant_id \
             AND h.address = m.address WHERE m.tenant_id = $1 ORDER BY m.cluster, m.position",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect()
        })
        .map_err(db)?;
        let index: std::collections::HashMap<ClusterName, usize> = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        for (cluster, address, status) in members {
            if let Some(i) = index.get(&cluster) {
                clusters[*i].members.push((address, status));
            }
        }
        Ok(clusters)
    }

    /// Every operation record of the tenant (the SQL read model).
    pub async fn all_operations(&self, tenant: &TenantScope) -> Result<Vec<OperationRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {OP_COLS} FROM operations WHERE tenant_id = $1 ORDER BY started_at"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(op_row).collect())
        .map_err(db)
    }

    pub async fn get_cluster(
        &self,
        tenant: &TenantScope,
        name: &ClusterName,
    ) -> Result<Option<ClusterRow>, Error> {
        let Some(row) = sqlx::query(
            "SELECT name, network, container_manager FROM clusters WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        else {
            return Ok(None);
        };
        let members = sqlx::query(
            "SELECT m.address, h.status FROM cluster_hosts m JOIN hosts h ON h.tenant_id = m.tenant_id \
             AND h.address = m.address WHERE m.tenant_id = $1 AND m.cluster = $2 ORDER BY m.position",
        )
        .bind(tenant.as_str())
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect())
        .map_err(db)?;
        Ok(Some(ClusterRow {
            name: row.try_get(0).map_err(db)?,
            network: row.try_get(1).map_err(db)?,
            container_manager: row.try_get(2).map_err(db)?,
            members,
        }))
    }

    /// Creates a cluster unless the name is taken (then answers the stored one).
    pub async fn create_cluster(
        &self,
        tenant: &TenantScope,
        name: &ClusterName,
        network: &str,
        container_manager: &str,
        now: i64,
    ) -> Result<CreateClusterOutcome, Error> {
        let mut tx = self.begin_write().await?;
        // Locks the tenant row (a no-op update) so concurrent creations count in turn.
        let max: i64 =
            sqlx::query("UPDATE tenants SET workers = workers WHERE id = $1 RETURNING max_clusters")
                .bind(tenant.as_str())
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db)?;
        let existing =
            sqlx::query("SELECT network, container_manager FROM clusters WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if let Some(r) = existing {
            let row = ClusterRow {
                name: name.clone(),
                network: r.try_get(0).map_err(db)?,
                container_manager: r.try_get(1).map_err(db)?,
                members: Vec::new(),
            };
            return Ok(CreateClusterOutcome::Exists(row));
        }
        let has_network = sqlx::query("SELECT 1 FROM networks WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.as_str())
            .bind(network)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_some();
        if !has_network {
            return Ok(CreateClusterOutcome::NetworkMissing);
        }
        if !container_manager.is_empty() {
            let has_cm = sqlx::query("SELECT 1 FROM container_managers WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(container_manager)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .is_some();
            if !has_cm {
                return Ok(CreateClusterOutcome::ContainerManagerMissing);
            }
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM clusters WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db)?;
        if count >= max {
            return Ok(CreateClusterOutcome::QuotaExceeded(max));
        }
        sqlx::query(
            "INSERT INTO clusters (tenant_id, name, create_time, network, container_manager) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(now)
        .bind(network)
        .bind(container_manager)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let row = ClusterRow {
            name: name.clone(),
            network: network.to_string(),
            container_manager: container_manager.to_string(),
            members: Vec::new(),
        };
        let mut journal = self.journal(tenant);
        journal.row(Verb::Created, Changed::Cluster(&row));
        journal.commit(tx, tenant).await?;
        Ok(CreateClusterOutcome::Created(row))
    }

    /// Deletes a cluster and its operation records; members become `disassociated`.
    pub async fn delete_cluster(
        &self,
        tenant: &TenantScope,
        name: &ClusterName,
    ) -> Result<DeleteClusterOutcome, Error> {
        let mut tx = self.begin_write().await?;
        if !lock_cluster(&mut tx, tenant, name).await? {
            return Ok(DeleteClusterOutcome::NotFound);
        }
        if let Some(op) = busy(&mut tx, tenant, name).await? {
            return Ok(DeleteClusterOutcome::Busy(op));
        }
        let mut journal = self.journal(tenant);
        let before = cluster_in(&mut tx, tenant, name).await?;
        let members = members_in(&mut tx, tenant, name).await?;
        for (address, _, _) in &members {
            drop_member(&mut tx, tenant, address).await?;
        }
        let ops = sqlx::query(sqlf!(
            "DELETE FROM operations WHERE tenant_id = $1 AND cluster = $2 RETURNING {OP_COLS}"
        ))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_all(&mut *tx)
        .await
        .and_then(|rows| rows.iter().map(op_row).collect::<Result<Vec<_>, _>>())
        .map_err(db)?;
        sqlx::query("DELETE FROM clusters WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for op in &ops {
            journal.row(Verb::Deleted, Changed::Operation(op));
        }
        for (address, _, _) in &members {
            if let Some(h) = host_in(&mut tx, tenant, address).await? {
                journal.row(Verb::Updated, Changed::Host(&h));
            }
        }
        if let Some(c) = &before {
            journal.row(Verb::Deleted, Changed::Cluster(c));
        }
        journal.commit(tx, tenant).await?;
        Ok(DeleteClusterOutcome::Deleted(
            members.into_iter().map(|(a, _, r)| (a, r)).collect(),
        ))
    }

    /// Replaces a cluster's members if `old` (as a set) is the current member set
    /// (compare-and-swap), `new` giving the join order of added hosts. With `old` `None`, adds
    /// the hosts of `new` to the current members (one-host PUT).
    pub async fn change_members(
        &self,
        tenant: &TenantScope,
        cluster: &ClusterName,
        old: Option<&[HostAddress]>,
        new: &[HostAddress],
    ) -> Result<MembershipOutcome, Error> {
        let mut tx = self.begin_write().await?;
        if !lock_cluster(&mut tx, tenant, cluster).await? {
            return Ok(MembershipOutcome::NoCluster);
        }
        let current = members_in(&mut tx, tenant, cluster).await?;
        let current_set: std::collections::BTreeSet<&HostAddress> =
            current.iter().map(|(a, _, _)| a).collect();
        let target: Vec<HostAddress> = match old {
            Some(_) => new.to_vec(),
            None => current
                .iter()
                .map(|(a, _, _)| a.clone())
                .chain(new.iter().cloned())
                .collect(),
        };
        let mut seen = std::collections::BTreeSet::new();
        let target: Vec<HostAddress> = target.into_iter().filter(|a| seen.insert(a.clone())).collect();
        let added: Vec<HostAddress> = target
            .iter()
            .filter(|a| !current_set.contains(a))
            .cloned()
            .collect();
        let removed: Vec<(HostAddress, bool)> = current
            .iter()
            .filter(|(a, _, _)| !seen.contains(a))
            .map(|(a, _, r)| (a.clone(), *r))
            .collect();
        if added.is_empty() && removed.is_empty() && old.is_none() {
            return Ok(MembershipOutcome::Changed { added, removed });
        }
        if let Some(op) = busy(&mut tx, tenant, cluster).await? {
            return Ok(MembershipOutcome::Busy(op));
        }
        if let Some(old) = old {
            let old_set: std::collections::BTreeSet<&HostAddress> = old.iter().collect();
            if old_set != current_set {
                return Ok(MembershipOutcome::Mismatch);
            }
        }
        let mut not_ready = Vec::new();
        for a in &added {
            let Some(h) = host_in(&mut tx, tenant, a).await? else {
                return Ok(MembershipOutcome::HostMissing(a.clone()));
            };
            if let Some(other) = h.cluster.filter(|c| c != cluster) {
                return Ok(MembershipOutcome::OtherCluster(a.clone(), other));
            }
            if h.status != "active" && h.status != "disassociated" {
                not_ready.push((a.clone(), h.status));
            }
        }
        if !not_ready.is_empty() {
            return Ok(MembershipOutcome::NotReady(not_ready));
        }
        for (a, _) in &removed {
            drop_member(&mut tx, tenant, a).await?;
        }
        for a in &added {
            append_member(&mut tx, tenant, cluster, a).await?;
        }
        let mut journal = self.journal(tenant);
        for a in removed.iter().map(|(a, _)| a).chain(&added) {
            if let Some(h) = host_in(&mut tx, tenant, a).await? {
                journal.row(Verb::Updated, Changed::Host(&h));
            }
        }
        journal_cluster(&mut tx, &mut journal, tenant, cluster).await?;
        journal.commit(tx, tenant).await?;
        Ok(MembershipOutcome::Changed { added, removed })
    }

    /// Removes one member (idempotent). `None`: no such cluster; `Some(Err(op))`: busy.
    pub async fn remove_member(
        &self,
        tenant: &TenantScope,
        cluster: &ClusterName,
        address: &HostAddress,
    ) -> Result<Option<Result<Option<bool>, OperationKind>>, Error> {
        let mut tx = self.begin_write().await?;
        if !lock_cluster(&mut tx, tenant, cluster).await? {
            return Ok(None);
        }
        let member = members_in(&mut tx, tenant, cluster)
            .await?
            .into_iter()
            .find(|(a, _, _)| a == address);
        let Some((_, _, registered)) = member else {
            return Ok(Some(Ok(None)));
        };
        if let Some(op) = busy(&mut tx, tenant, cluster).await? {
            return Ok(Some(Err(op)));
        }
        drop_member(&mut tx, tenant, address).await?;
        let mut journal = self.journal(tenant);
        if let Some(h) = host_in(&mut tx, tenant, address).await? {
            journal.row(Verb::Updated, Changed::Host(&h));
        }
        journal_cluster(&mut tx, &mut journal, tenant, cluster).await?;
        journal.commit(tx, tenant).await?;
        Ok(Some(Ok(Some(registered))))
    }

    pub async fn get_operation(
        &self,
        tenant: &TenantScope,
        cluster: &ClusterName,
        kind: OperationKind,
    ) -> Result<Option<OperationRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {OP_COLS} FROM operations WHERE tenant_id = $1 AND cluster = $2 AND type = $3"
        ))
        .bind(tenant.as_str())
        .bind(cluster)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.as_ref().map(op_row).transpose())
        .map_err(db)
    }

    /// The most recently started operation of a cluster, of any type.
    pub async fn latest_operation(
        &self,
        tenant: &TenantScope,
        cluster: &ClusterName,
    ) -> Result<Option<OperationRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {OP_COLS} FROM operations WHERE tenant_id = $1 AND cluster = $2 ORDER BY started_at DESC LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(cluster)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.as_ref().map(op_row).transpose())
        .map_err(db)
    }

    /// Starts an operation: snapshots the members, replaces the type's record, enqueues `job`.
    pub async fn start_operation(
        &self,
        tenant: &TenantScope,
        new: &NewOperation,
        job: &NewJob,
        now: i64,
    ) -> Result<StartOperationOutcome, Error> {
        let NewOperation {
            cluster,
            kind,
            version,
            max_parallel,
        } = new;
        let (kind, version, max_parallel) = (*kind, version.as_str(), *max_parallel);
        let mut tx = self.begin_write().await?;
        if !lock_cluster(&mut tx, tenant, cluster).await? {
            return Ok(StartOperationOutcome::NoCluster);
        }
        let running = sqlx::query(sqlf!(
            "SELECT {OP_COLS} FROM operations WHERE tenant_id = $1 AND cluster = $2 AND status = 'in_process'"
        ))
        .bind(tenant.as_str())
        .bind(cluster)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(op_row).transpose())
        .map_err(db)?;
        if let Some(op) = running {
            return Ok(if op.kind == kind && op.version == version {
                StartOperationOutcome::AlreadyRunning(op)
            } else {
                StartOperationOutcome::Conflict(op)
            });
        }
        let members: Vec<HostAddress> = members_in(&mut tx, tenant, cluster)
            .await?
            .into_iter()
            .map(|(a, _, _)| a)
            .collect();
        sqlx::query("DELETE FROM operations WHERE tenant_id = $1 AND cluster = $2 AND type = $3")
            .bind(tenant.as_str())
            .bind(cluster)
            .bind(kind)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let op = OperationRow {
            cluster: cluster.clone(),
            kind,
            status: OperationStatus::InProcess,
            version: version.to_string(),
            max_parallel,
            members,
            done: Vec::new(),
            in_process: Vec::new(),
            failed: Vec::new(),
            message: String::new(),
            started_at: now,
            finished_at: None,
            job_id: job.id.clone(),
        };
        sqlx::query(sqlf!(
            "INSERT INTO operations (tenant_id, {OP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(tenant.as_str())
        .bind(&op.cluster)
        .bind(op.kind)
        .bind(op.status)
        .bind(&op.version)
        .bind(op.max_parallel)
        .bind(json_list(&op.members))
        .bind(json_list(&op.done))
        .bind(json_list(&op.in_process))
        .bind(json_list(&op.failed))
        .bind(&op.message)
        .bind(op.started_at)
        .bind(op.finished_at)
        .bind(&op.job_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        insert_job(&mut tx, job, now).await?;
        insert_event(&mut tx, &job.id, now, "queued").await?;
        let mut journal = self.journal(tenant);
        journal.row(Verb::Created, Changed::Operation(&op));
        journal.commit(tx, tenant).await?;
        Ok(StartOperationOutcome::Started(op))
    }

    /// Changes an operation record in one transaction, only while `job_id` owns it (a newer
    /// operation of the type replaced nothing of an older job's). False when it does not.
    pub async fn update_operation(
        &self,
        tenant: &TenantScope,
        cluster: &ClusterName,
        kind: OperationKind,
        job_id: &JobId,
        change: impl FnOnce(&mut OperationRow),
    ) -> Result<Option<OperationRow>, Error> {
        let mut tx = self.begin_write().await?;
        let Some(mut op) = sqlx::query(sqlf!(
            "SELECT {OP_COLS} FROM operations WHERE tenant_id = $1 AND cluster = $2 AND type = $3 AND job_id = $4"
        ))
        .bind(tenant.as_str())
        .bind(cluster)
        .bind(kind)
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(op_row).transpose())
        .map_err(db)?
        else {
            return Ok(None);
        };
        let before = op.clone();
        change(&mut op);
        sqlx::query(
            "UPDATE operations SET status = $5, done = $6, in_process = $7, failed = $8, message = $9, finished_at = $10 \
             WHERE tenant_id = $1 AND cluster = $2 AND type = $3 AND job_id = $4",
        )
        .bind(tenant.as_str())
        .bind(cluster)
        .bind(kind)
        .bind(job_id)
        .bind(op.status)
        .bind(json_list(&op.done))
        .bind(json_list(&op.in_process))
        .bind(json_list(&op.failed))
        .bind(&op.message)
        .bind(op.finished_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let mut journal = self.journal(tenant);
        if before != op {
            for step in step_changes(&before, &op) {
                journal.change(step);
            }
            journal.row(Verb::Updated, Changed::Operation(&op));
        }
        journal.commit(tx, tenant).await?;
        Ok(Some(op))
    }
}

/// A host the watcher should check, with its tenant.
#[derive(Debug, Clone)]
pub struct WatchedHost {
    pub tenant_id: TenantId,
    pub host: HostRow,
}

impl Store {
    /// Bootstrapped hosts in a watched status (`active`, `disassociated`, `failed`) whose last
    /// check is older than `before`, oldest first, across tenants (the watcher works for all).
    /// A host in the middle of a rolling step (a restart takes it away on purpose) is left to
    /// that step.
    pub async fn hosts_due_for_check(&self, before: i64, limit: i64) -> Result<Vec<WatchedHost>, Error> {
        sqlx::query(sqlf!(
            "SELECT {HOST_COLS}, h.tenant_id FROM {HOST_FROM} WHERE h.bootstrapped = 1 \
             AND h.status IN ('active', 'disassociated', 'failed') AND (h.last_check IS NULL OR h.last_check < $1) \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.tenant_id = h.tenant_id AND j.kind = 'cluster.host_step' \
                 AND j.state IN ('queued', 'running') AND j.subject LIKE '%/' || h.address) \
             ORDER BY h.last_check LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| {
            rows.iter().map(|r| Ok(WatchedHost { tenant_id: TenantId::from_trusted(r.try_get::<String, _>(18)?), host: host_row(r)? })).collect()
        })
        .map_err(db)
    }

    /// Records a watcher check, only while the host is still bootstrapped and watched (a
    /// concurrent delete or re-registration wins). False when nothing was written.
    pub async fn record_host_check(
        &self,
        tenant: &TenantScope,
        address: &HostAddress,
        status: &str,
        message: &str,
        registered: Option<bool>,
        now: i64,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        // A check that changes nothing but the time is not a change worth a log entry: a
        // watched fleet would fill the log with one per host and interval.
        let before: Option<(String, String, i64)> = sqlx::query(
            "SELECT status, message, registered FROM hosts WHERE tenant_id = $1 AND address = $2",
        )
        .bind(tenant.as_str())
        .bind(address)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| {
            r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .transpose()
        })
        .map_err(db)?;
        let done = sqlx::query(
            "UPDATE hosts SET status = $3, message = $4, last_check = $5, registered = COALESCE($6, registered) \
             WHERE tenant_id = $1 AND address = $2 AND bootstrapped = 1 \
             AND status IN ('active', 'disassociated', 'failed')",
        )
        .bind(tenant.as_str())
        .bind(address)
        .bind(status)
        .bind(message)
        .bind(now)
        .bind(registered.map(i64::from))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let written = done.rows_affected() == 1;
        let mut journal = self.journal(tenant);
        let unchanged = before.is_some_and(|(s, m, r)| {
            s == status && m == message && registered.is_none_or(|g| i64::from(g) == r)
        });
        if written && !unchanged {
            journal_host(&mut tx, &mut journal, tenant, address).await?;
        }
        journal.commit(tx, tenant).await?;
        Ok(written)
    }

    /// Counts for `GET /api/v0/status`: (queued, running) investigations and watched hosts.
    pub async fn host_machinery_counts(&self, tenant: &TenantScope) -> Result<(i64, i64, i64), Error> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM jobs WHERE tenant_id = $1 AND kind = 'host.investigate' AND state = 'queued'), \
               (SELECT COUNT(*) FROM jobs WHERE tenant_id = $1 AND kind = 'host.investigate' AND state = 'running'), \
               (SELECT COUNT(*) FROM hosts WHERE tenant_id = $1 AND bootstrapped = 1 \
                  AND status IN ('active', 'disassociated', 'failed'))",
        )
        .bind(tenant.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok((
            row.try_get(0).map_err(db)?,
            row.try_get(1).map_err(db)?,
            row.try_get(2).map_err(db)?,
        ))
    }
}
