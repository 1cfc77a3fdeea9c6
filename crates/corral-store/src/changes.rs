//! The change log (docs/events.md): every write of a tenant-owned object appends what changed,
//! in the same transaction, with the view a `GET` would answer after it.
//!
//! Revisions come from the one row of `change_head`, incremented at the end of the writing
//! transaction: the increment is a row lock held to commit, so revision order is commit order
//! on PostgreSQL too, and a reader that sees revision N has already been able to see every
//! revision below it. That is what lets a watcher resume by revision with no gap.

use std::sync::{Arc, OnceLock};

use corral_types::time::now_ms;
use corral_types::{Error, InstanceId, ObjectType, TenantId, TenantScope, Verb};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{
    ApiKeyRow, AppVersionRow, Backend, ClusterRow, ContainerManagerRow, HostRow, ImageRow, InstanceRow,
    JsonCol, NamespaceRow, NetworkRow, OperationRow, RunRow, ServiceRef, Store, UserRow, db,
};

/// A changed object as the view renderer receives it, read back inside the writing
/// transaction (or, for a deletion, just before it).
#[derive(Debug, Clone, Copy)]
pub enum Changed<'a> {
    /// A user, with its tenant's name (the view names it).
    User(&'a str, &'a UserRow),
    /// A key, with its user's id.
    Key(&'a str, &'a ApiKeyRow),
    Host(&'a HostRow),
    Cluster(&'a ClusterRow),
    Network(&'a NetworkRow),
    ContainerManager(&'a ContainerManagerRow),
    Operation(&'a OperationRow),
    Instance(&'a InstanceRow),
    Image(&'a ImageRow),
    Namespace(&'a NamespaceRow),
    /// An app's current version, in its namespace.
    App(&'a str, &'a AppVersionRow),
    /// A run of a service.
    ServiceRun(&'a ServiceRef, &'a RunRow),
}

/// Renders a changed row as its API view. Core implements it (views are core's); the server
/// installs it with [`Store::set_change_views`] before serving.
pub trait ChangeViews: Send + Sync {
    fn view(&self, row: Changed<'_>) -> serde_json::Value;

    /// The view as JSON text, as the log stores it. A kind whose view is a plain struct
    /// renders it straight to text (no `Value` tree in between: a bulk action logs
    /// thousands of instance views in one transaction).
    fn view_text(&self, row: Changed<'_>) -> String {
        self.view(row).to_string()
    }
}

/// Told, after each local commit of a tenant it follows, of the instance rows the commit
/// wrote, so that an in-memory copy (the query read model) can follow without reading them
/// back. `before` is the tenant's last revision before the transaction, read under the change
/// log's lock, and `last` its last revision after it: a copy at `before` is exactly current
/// once it applies the rows and moves to `last`; a copy anywhere else must catch up from the
/// log instead. Commits of other replicas are not seen: they leave a gap, which the log fills.
pub trait CommitObserver: Send + Sync {
    /// Whether commits of `tenant` are of interest (costs the commit one index seek and a
    /// copy of its instance rows).
    fn follows(&self, tenant: &TenantId) -> bool;
    /// The commit ending at `last` is about to be made durable; exactly one of `committed`
    /// and `abandoned` follows.
    fn committing(&self, tenant: &TenantId, last: i64);
    fn committed(&self, tenant: &TenantId, before: i64, last: i64, rows: InstancesCommitted);
    /// The commit ending at `last` failed or may not have been made; a copy learns of it
    /// from the log, if at all.
    fn abandoned(&self, tenant: &TenantId, last: i64);
}

/// The instance rows of one commit, as its statements returned them (none for a commit of
/// other objects only).
#[derive(Debug, Default)]
pub struct InstancesCommitted {
    pub changed: Vec<InstanceRow>,
    pub removed: Vec<InstanceId>,
}

/// A change whose object has no row of its own (a service's health, an operation's host
/// step): the caller gives its view.
#[derive(Debug, Clone)]
pub struct NewChange {
    pub verb: Verb,
    pub object_type: ObjectType,
    pub object_id: String,
    pub namespace: String,
    pub view: serde_json::Value,
}

/// One entry of the log, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    pub revision: i64,
    pub time: i64,
    pub tenant: TenantId,
    /// `type.verb`, e.g. `instance.updated`.
    pub kind: String,
    pub object_type: String,
    pub object_id: String,
    /// The CDAP namespace of namespaced objects, `""` otherwise.
    pub namespace: String,
    pub actor: String,
    pub request_id: String,
    /// The JSON view.
    pub data: String,
}

/// The log's extent: the last revision handed out and the last one retention removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeBounds {
    pub head: i64,
    pub pruned_through: i64,
}

/// Shared by every clone of a store.
#[derive(Default)]
pub(crate) struct ChangeShared {
    views: OnceLock<Arc<dyn ChangeViews>>,
    observer: OnceLock<Arc<dyn CommitObserver>>,
    /// Woken after every local commit that appended changes, so the local feed need not
    /// wait for its next poll.
    pub(crate) committed: tokio::sync::Notify,
}

impl Changed<'_> {
    fn key(&self) -> (ObjectType, String, String) {
        match *self {
            Changed::User(_, r) => (ObjectType::User, r.id.clone(), String::new()),
            Changed::Key(_, r) => (ObjectType::Key, r.id.to_string(), String::new()),
            Changed::Host(r) => (ObjectType::Host, r.address.to_string(), String::new()),
            Changed::Cluster(r) => (ObjectType::Cluster, r.name.to_string(), String::new()),
            Changed::Network(r) => (ObjectType::Network, r.name.clone(), String::new()),
            Changed::ContainerManager(r) => (ObjectType::ContainerManager, r.name.clone(), String::new()),
            Changed::Operation(r) => (
                ObjectType::Operation,
                format!("{}/{}", r.cluster, r.kind),
                String::new(),
            ),
            Changed::Instance(r) => (ObjectType::Instance, r.id.to_string(), String::new()),
            Changed::Image(r) => (ObjectType::Image, r.id.to_string(), String::new()),
            Changed::Namespace(r) => (ObjectType::Namespace, r.name.clone(), r.name.clone()),
            Changed::App(ns, r) => (ObjectType::App, r.app.clone(), ns.to_string()),
            Changed::ServiceRun(s, r) => (ObjectType::ServiceRun, r.run_id.clone(), s.namespace.clone()),
        }
    }
}

/// A change waiting for its transaction's commit, its view already rendered as JSON text.
struct Entry {
    verb: Verb,
    object_type: ObjectType,
    object_id: String,
    namespace: String,
    data: String,
}

/// The changes of one writing transaction, appended by [`Journal::commit`] just before the
/// transaction commits.
pub(crate) struct Journal<'s> {
    store: &'s Store,
    pending: Vec<Entry>,
    /// For the [`CommitObserver`], when one is installed.
    instances: Option<InstancesCommitted>,
}

impl Journal<'_> {
    /// Records a change of `row`, rendered now (the row is as the transaction left it).
    pub(crate) fn row(&mut self, verb: Verb, row: Changed<'_>) {
        if let (Some(seen), Changed::Instance(r)) = (&mut self.instances, row) {
            match verb {
                Verb::Deleted => seen.removed.push(r.id.clone()),
                _ => seen.changed.push(r.clone()),
            }
        }
        let (object_type, object_id, namespace) = row.key();
        let data = match self.store.changes.views.get() {
            Some(v) => v.view_text(row),
            None => "null".to_string(),
        };
        self.pending.push(Entry {
            verb,
            object_type,
            object_id,
            namespace,
            data,
        });
    }

    pub(crate) fn change(&mut self, change: NewChange) {
        self.pending.push(Entry {
            verb: change.verb,
            object_type: change.object_type,
            object_id: change.object_id,
            namespace: change.namespace,
            data: change.view.to_string(),
        });
    }

    /// Appends the recorded changes and commits `tx`; notes the last revision in the
    /// scope's mark and wakes the local feed.
    pub(crate) async fn commit(
        self,
        mut tx: Transaction<'static, Any>,
        scope: &TenantScope,
    ) -> Result<(), Error> {
        if self.pending.is_empty() {
            return tx.commit().await.map_err(db);
        }
        // Told only with every instance row the commit wrote: a journal that kept none must
        // leave the observer to the log.
        let observer = match self.instances {
            Some(_) => self
                .store
                .changes
                .observer
                .get()
                .filter(|o| o.follows(scope.id())),
            None => None,
        };
        let last = append(&mut tx, self.store.backend, scope, &self.pending).await?;
        // From here until the observer is told, a reader may see `last` before the rows
        // reach its copy: `committing` lets it wait for them instead of reading them back.
        let telling = match observer {
            Some(o) => {
                // After `append` took the log's lock: no other transaction adds to the log
                // until this one commits, so this is the tenant's revision just before it.
                let before = revision_through(&mut *tx, scope, last - self.pending.len() as i64).await?;
                o.committing(scope.id(), last);
                Some(Telling {
                    observer: o.as_ref(),
                    tenant: scope.id(),
                    before,
                    last,
                    told: false,
                })
            }
            None => None,
        };
        tx.commit().await.map_err(db)?;
        scope.note_revision(last);
        self.store.changes.committed.notify_one();
        if let Some(mut t) = telling {
            t.told = true;
            t.observer
                .committed(t.tenant, t.before, t.last, self.instances.unwrap_or_default());
        }
        Ok(())
    }
}

/// The tenant's last revision up to `through` (0 when it has none): one seek in
/// `change_log_by_tenant`.
async fn revision_through<'e>(
    exec: impl sqlx::Executor<'e, Database = Any>,
    tenant: &TenantScope,
    through: i64,
) -> Result<i64, Error> {
    sqlx::query("SELECT COALESCE(MAX(revision), 0) FROM change_log WHERE tenant_id = $1 AND revision <= $2")
        .bind(tenant.as_str())
        .bind(through)
        .fetch_one(exec)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .map_err(db)
}

/// A commit announced to the [`CommitObserver`]: unless it is told of the rows, it hears
/// that the commit was abandoned (failed, or its request went away mid-commit).
struct Telling<'a> {
    observer: &'a dyn CommitObserver,
    tenant: &'a TenantId,
    before: i64,
    last: i64,
    told: bool,
}

impl Drop for Telling<'_> {
    fn drop(&mut self) {
        if !self.told {
            self.observer.abandoned(self.tenant, self.last);
        }
    }
}

const LOG_COLS: &str =
    "revision, time, tenant_id, kind, object_type, object_id, namespace, actor, request_id, data";

/// Log rows per statement: few statements (10,000 rows were 400 of 25 before the JSON), and
/// the JSON text of one (views of ~1.5 KiB each) and SQLite's parse of it stay a few MiB.
const LOG_ROWS: usize = 500;

/// Takes revisions for `changes` and inserts them, [`LOG_ROWS`] per statement; answers the
/// last revision.
async fn append(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    scope: &TenantScope,
    changes: &[Entry],
) -> Result<i64, Error> {
    let n = changes.len() as i64;
    let last: i64 =
        sqlx::query("UPDATE change_head SET revision = revision + $1 WHERE id = 1 RETURNING revision")
            .bind(n)
            .fetch_one(&mut **tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db)?;
    let now = now_ms();
    let mut revision = last - n;
    for chunk in changes.chunks(LOG_ROWS) {
        let rows: Vec<(String, &str, &str, &str, &str)> = chunk
            .iter()
            .map(|c| {
                (
                    format!("{}.{}", c.object_type, c.verb.as_str()),
                    c.object_type.as_str(),
                    c.object_id.as_str(),
                    c.namespace.as_str(),
                    c.data.as_str(),
                )
            })
            .collect();
        let rows = serde_json::to_string(&rows).map_err(Error::internal)?;
        sqlx::query(sqlf!(
            "INSERT INTO change_log ({LOG_COLS}) \
             SELECT $1 + j.k, $2, $3, j.c0, j.c1, j.c2, j.c3, $4, $5, j.c4 FROM ({}) AS j",
            backend.json_rows(6, &[JsonCol::Text; 5])
        ))
        .bind(revision)
        .bind(now)
        .bind(scope.as_str())
        .bind(scope.actor())
        .bind(scope.request_id())
        .bind(rows)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        revision += chunk.len() as i64;
    }
    Ok(last)
}

fn change_row(r: &AnyRow) -> Result<ChangeRow, sqlx::Error> {
    Ok(ChangeRow {
        revision: r.try_get(0)?,
        time: r.try_get(1)?,
        tenant: r.try_get(2)?,
        kind: r.try_get(3)?,
        object_type: r.try_get(4)?,
        object_id: r.try_get(5)?,
        namespace: r.try_get(6)?,
        actor: r.try_get(7)?,
        request_id: r.try_get(8)?,
        data: r.try_get(9)?,
    })
}

/// How many revisions one prune statement removes at most, so that a prune after a long
/// outage does not hold SQLite's one writer for long.
const PRUNE_BATCH: i64 = 10_000;

impl Store {
    /// Installs the renderer of change views (once; later calls are ignored).
    pub fn set_change_views(&self, views: Arc<dyn ChangeViews>) {
        let _ = self.changes.views.set(views);
    }

    /// Installs the observer of committed instance rows (once; later calls are ignored).
    pub fn set_commit_observer(&self, observer: Arc<dyn CommitObserver>) {
        let _ = self.changes.observer.set(observer);
    }

    /// A journal for a write of `tenant`: it keeps the instance rows for the observer only if
    /// the observer follows the tenant now, not a copy of every row of a launch storm that
    /// nobody will apply.
    pub(crate) fn journal(&self, tenant: &TenantScope) -> Journal<'_> {
        let keep = self
            .changes
            .observer
            .get()
            .is_some_and(|o| o.follows(tenant.id()));
        Journal {
            store: self,
            pending: Vec::new(),
            instances: keep.then(InstancesCommitted::default),
        }
    }

    /// Completes after the next local commit that appended changes (or at once if one
    /// happened since the last call).
    pub async fn changes_committed(&self) {
        self.changes.committed.notified().await;
    }

    /// Appends changes that no row write carries (a service instance's health), in a
    /// transaction of their own.
    pub async fn append_changes(&self, tenant: &TenantScope, changes: Vec<NewChange>) -> Result<(), Error> {
        let tx = self.begin_write().await?;
        let mut j = self.journal(tenant);
        for c in changes {
            j.change(c);
        }
        j.commit(tx, tenant).await
    }

    /// The tenant's changes after `after`, oldest first, at most `limit`.
    pub async fn changes_after(
        &self,
        tenant: &TenantScope,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {LOG_COLS} FROM change_log WHERE tenant_id = $1 AND revision > $2 ORDER BY revision LIMIT $3"
        ))
        .bind(tenant.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(change_row).collect())
        .map_err(db)
    }

    /// Every tenant's changes after `after`: the one read with which a server's feed fans the
    /// log out to all its watchers, each of which sees only its own tenant's entries. Not for
    /// answering a caller.
    pub async fn changes_after_all_tenants(&self, after: i64, limit: i64) -> Result<Vec<ChangeRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {LOG_COLS} FROM change_log WHERE revision > $1 ORDER BY revision LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(change_row).collect())
        .map_err(db)
    }

    /// The newest revision among the tenant's kept changes (0 when none is kept): one seek in
    /// `change_log_by_tenant`. A read model compares it with the revision it last applied.
    pub async fn tenant_revision(&self, tenant: &TenantScope) -> Result<i64, Error> {
        revision_through(&self.reads, tenant, i64::MAX).await
    }

    /// The ids of the tenant's objects of `object_type` changed in revisions `after + 1 ..=
    /// through`, each once; `None` when there are more than `limit` (the caller reloads
    /// instead of reading them one by one).
    pub async fn changed_objects(
        &self,
        tenant: &TenantScope,
        object_type: ObjectType,
        after: i64,
        through: i64,
        limit: usize,
    ) -> Result<Option<Vec<String>>, Error> {
        let ids: Vec<String> = sqlx::query(
            "SELECT DISTINCT object_id FROM change_log WHERE tenant_id = $1 AND revision > $2 \
             AND revision <= $3 AND object_type = $4 LIMIT $5",
        )
        .bind(tenant.as_str())
        .bind(after)
        .bind(through)
        .bind(object_type.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1)
        .fetch_all(&self.reads)
        .await
        .and_then(|rows| rows.iter().map(|r| r.try_get::<String, _>(0)).collect())
        .map_err(db)?;
        Ok((ids.len() <= limit).then_some(ids))
    }

    /// Whether the tenant changed any object that is not of `object_type` in revisions
    /// `after + 1 ..= through` (the query read model's smaller tables).
    pub async fn changed_besides(
        &self,
        tenant: &TenantScope,
        object_type: ObjectType,
        after: i64,
        through: i64,
    ) -> Result<bool, Error> {
        sqlx::query(
            "SELECT 1 FROM change_log WHERE tenant_id = $1 AND revision > $2 AND revision <= $3 \
             AND object_type <> $4 LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(after)
        .bind(through)
        .bind(object_type.as_str())
        .fetch_optional(&self.reads)
        .await
        .map(|r| r.is_some())
        .map_err(db)
    }

    /// The last revision removed by retention (on the read model's connections).
    pub async fn pruned_through(&self) -> Result<i64, Error> {
        sqlx::query("SELECT pruned_through FROM change_head WHERE id = 1")
            .fetch_one(&self.reads)
            .await
            .and_then(|r| r.try_get::<i64, _>(0))
            .map_err(db)
    }

    pub async fn change_bounds(&self) -> Result<ChangeBounds, Error> {
        let r = sqlx::query("SELECT revision, pruned_through FROM change_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(ChangeBounds {
            head: r.try_get(0).map_err(db)?,
            pruned_through: r.try_get(1).map_err(db)?,
        })
    }

    /// Removes entries that are both older than `older_than` (ms since the epoch) and not
    /// among the newest `keep_last`: retention keeps whichever set is larger. Answers how
    /// many entries went.
    pub async fn prune_changes(&self, older_than: i64, keep_last: i64) -> Result<u64, Error> {
        let head = self.change_bounds().await?.head;
        let cut = head.saturating_sub(keep_last.max(0));
        let through: Option<i64> =
            sqlx::query("SELECT MAX(revision) FROM change_log WHERE revision <= $1 AND time < $2")
                .bind(cut)
                .bind(older_than)
                .fetch_one(&self.pool)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db)?;
        let Some(through) = through else {
            return Ok(0);
        };
        let mut removed = 0;
        loop {
            let mut tx = self.begin_write().await?;
            let from: i64 = sqlx::query("SELECT pruned_through FROM change_head WHERE id = 1")
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db)?;
            if from >= through {
                tx.commit().await.map_err(db)?;
                return Ok(removed);
            }
            let upto = through.min(from.saturating_add(PRUNE_BATCH));
            removed += sqlx::query("DELETE FROM change_log WHERE revision <= $1")
                .bind(upto)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
            sqlx::query("UPDATE change_head SET pruned_through = $1 WHERE id = 1 AND pruned_through < $1")
                .bind(upto)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
        }
    }
}
