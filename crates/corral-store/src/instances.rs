//! Perspective instances, their history, and private images (perspective.md 5, 6). Bulk calls
//! touch thousands of rows in one transaction, so ids go in chunks of `IN (...)` lists and
//! inserts are multi-row; the state checks are part of the `UPDATE`s themselves, so two
//! concurrent actions on one instance cannot both be accepted.

use std::collections::HashMap;

use corral_types::{
    CloudId, CloudKind, Error, ImageId, ImageState, InstanceId, InstanceState, TenantId, TenantScope,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::jobs::{Fence, NewJob, insert_job};
use crate::{Backend, Changed, JsonCol, Store, db};
use corral_types::Verb;

/// Ids per `IN (...)` list (within [`crate::MAX_PARAMS`] with the statement's other values).
const CHUNK: usize = crate::MAX_PARAMS - 16;

/// An instance record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    pub id: InstanceId,
    pub real_id: String,
    pub cloud_id: CloudId,
    pub cloud_type: CloudKind,
    pub project_id: String,
    pub name: String,
    pub flavor_id: String,
    /// JSON of the Flavor view.
    pub flavor: String,
    pub image_id: ImageId,
    /// JSON of the Image view.
    pub image: String,
    /// The driver's reference of the image to boot from.
    pub image_real_id: String,
    pub vcpus: i64,
    pub ram: i64,
    pub disk: i64,
    pub keypair: String,
    pub networks: String,
    pub metadata: String,
    pub availability_zone: String,
    /// Joined with ','.
    pub addresses: String,
    pub fqdn: String,
    pub state: InstanceState,
    /// Milliseconds since the epoch.
    pub created: i64,
    pub last_updated: i64,
}

const INSTANCE_COLS: &str = "id, real_id, cloud_id, cloud_type, project_id, name, flavor_id, flavor, image_id, \
     image, image_real_id, vcpus, ram, disk, keypair, networks, metadata, availability_zone, addresses, fqdn, \
     state, created, last_updated";
const INSTANCE_NCOLS: usize = 23;

fn instance_row(r: &AnyRow) -> Result<InstanceRow, sqlx::Error> {
    instance_row_at(r, 0)
}

/// The instance columns starting at column `at`.
fn instance_row_at(r: &AnyRow, at: usize) -> Result<InstanceRow, sqlx::Error> {
    Ok(InstanceRow {
        id: r.try_get(at)?,
        real_id: r.try_get(at + 1)?,
        cloud_id: r.try_get(at + 2)?,
        cloud_type: r.try_get(at + 3)?,
        project_id: r.try_get(at + 4)?,
        name: r.try_get(at + 5)?,
        flavor_id: r.try_get(at + 6)?,
        flavor: r.try_get(at + 7)?,
        image_id: r.try_get(at + 8)?,
        image: r.try_get(at + 9)?,
        image_real_id: r.try_get(at + 10)?,
        vcpus: r.try_get(at + 11)?,
        ram: r.try_get(at + 12)?,
        disk: r.try_get(at + 13)?,
        keypair: r.try_get(at + 14)?,
        networks: r.try_get(at + 15)?,
        metadata: r.try_get(at + 16)?,
        availability_zone: r.try_get(at + 17)?,
        addresses: r.try_get(at + 18)?,
        fqdn: r.try_get(at + 19)?,
        state: r.try_get(at + 20)?,
        created: r.try_get(at + 21)?,
        last_updated: r.try_get(at + 22)?,
    })
}

/// The columns a bulk action's checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceKey {
    pub id: InstanceId,
    pub state: InstanceState,
    pub cloud_id: CloudId,
    pub project_id: String,
}

/// The start of an action in an instance's history; its id is the job's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: String,
    pub instance_id: InstanceId,
    pub actor: String,
    pub action: String,
    /// The request that asked for the action (empty for what Corral does on its own).
    pub request_id: String,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub at: i64,
    pub finished: Option<i64>,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub error: String,
    pub request_id: String,
}

/// Numeric quota of a project; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub instances: Option<i64>,
    pub vcpus: Option<i64>,
    pub ram: Option<i64>,
    pub disk: Option<i64>,
}

/// The history entry of one action request, shared by every instance it moved: its id is the
/// id of the job that carries the request out (and completes the entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEvent {
    pub id: String,
    pub actor: String,
    pub action: String,
    /// The request that asked for the action (empty for what Corral does on its own).
    pub request_id: String,
}

/// How one instance's part of an action ended, as its job records it ([`Store::end_instances`]).
#[derive(Debug, Clone, Copy)]
pub enum InstanceEnd<'a> {
    /// The driver did it: from `from` to `to`, with what it reported (`real_id`, addresses).
    Moved {
        from: InstanceState,
        to: InstanceState,
        report: Option<(&'a str, &'a str)>,
    },
    /// The driver deleted it: the record and its history go.
    Removed,
    /// Only the history changes (a rename).
    Noted,
    /// The driver failed (or the action ran out of time): `error` if the instance is still in
    /// one of `charge`, and the history entry says why.
    Failed {
        charge: &'a [InstanceState],
        reason: &'a str,
    },
    /// A newer action took over before this one ran.
    Superseded,
}

/// Fields replaced at once by a resize or a rebuild (perspective 5.3).
#[derive(Debug, Clone, Default)]
pub struct InstanceChange {
    /// flavor_id, flavor JSON, vcpus, ram, disk.
    pub flavor: Option<(String, String, i64, i64, i64)>,
    /// image_id, image JSON, image_real_id.
    pub image: Option<(ImageId, String, String)>,
}

/// A bulk state change: instances in one of `from` move to `to` with `change` applied.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    pub from: &'a [InstanceState],
    pub to: InstanceState,
    pub change: &'a InstanceChange,
    pub now: i64,
}

/// A private image record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    pub id: ImageId,
    pub real_id: String,
    pub cloud_id: CloudId,
    pub cloud_type: CloudKind,
    pub name: String,
    pub instance_id: InstanceId,
    /// JSON array.
    pub project_ids: String,
    pub state: ImageState,
    pub checksum: String,
    pub metadata: String,
    pub created: i64,
    pub last_updated: i64,
}

const IMAGE_COLS: &str = "id, real_id, cloud_id, cloud_type, name, instance_id, project_ids, state, checksum, metadata, created, last_updated";

fn image_row(r: &AnyRow) -> Result<ImageRow, sqlx::Error> {
    Ok(ImageRow {
        id: r.try_get(0)?,
        real_id: r.try_get(1)?,
        cloud_id: r.try_get(2)?,
        cloud_type: r.try_get(3)?,
        name: r.try_get(4)?,
        instance_id: r.try_get(5)?,
        project_ids: r.try_get(6)?,
        state: r.try_get(7)?,
        checksum: r.try_get(8)?,
        metadata: r.try_get(9)?,
        created: r.try_get(10)?,
        last_updated: r.try_get(11)?,
    })
}

/// `$a, $a+1, ...` for `n` values.
fn params(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    e: &NewEvent,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO instance_events (tenant_id, instance_id, id, at, finished, actor, action, outcome, error, request_id) \
         VALUES ($1, $2, $3, $4, NULL, $5, $6, 'accepted', '', $7)",
    )
    .bind(tenant.as_str())
    .bind(&e.instance_id)
    .bind(&e.id)
    .bind(now)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.request_id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// `ids` without repeats, in ascending order, as one JSON array for [`Backend::json_values`]:
/// in key order a statement over 10,000 ids walks each index once from left to right instead
/// of seeking all over it (a 10,000-row history insert: 180 ms in random order, 80 sorted, at
/// 100,000 instances on SQLite).
fn json_ids<'a>(ids: impl IntoIterator<Item = &'a InstanceId>) -> Result<String, Error> {
    let mut ids: Vec<&str> = ids.into_iter().map(|id| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    serde_json::to_string(&ids).map_err(Error::internal)
}

/// Inserts the history entries of `ids` for one action, in one statement.
async fn insert_events(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    tenant: &TenantScope,
    event: &ActionEvent,
    ids: &[InstanceId],
    now: i64,
) -> Result<(), Error> {
    let ids = json_ids(ids)?;
    sqlx::query(sqlf!(
        "INSERT INTO instance_events (tenant_id, instance_id, id, at, finished, actor, action, outcome, error, request_id) \
         SELECT $1, j.v, $2, $3, NULL, $4, $5, 'accepted', '', $6 FROM ({}) AS j",
        backend.json_values(7)
    ))
    .bind(tenant.as_str())
    .bind(&event.id)
    .bind(now)
    .bind(&event.actor)
    .bind(&event.action)
    .bind(&event.request_id)
    .bind(ids)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// The types of [`INSTANCE_COLS`], for [`Backend::json_rows`].
const INSTANCE_TYPES: [JsonCol; INSTANCE_NCOLS] = {
    use JsonCol::{Int, Text};
    [
        Text, Text, Text, Text, Text, Text, Text, Text, Text, Text, Text, Int, Int, Int, Text, Text, Text,
        Text, Text, Text, Text, Int, Int,
    ]
};

/// Instance rows per `INSERT`: a few statements for a launch of thousands, each's JSON text a
/// few MiB at most.
const INSTANCE_ROWS: usize = 500;

/// Inserts many instances, [`INSTANCE_ROWS`] per statement: the rows as one JSON array of
/// arrays, in [`INSTANCE_COLS`] order.
async fn insert_instances(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    tenant: &TenantScope,
    rows: &[&InstanceRow],
) -> Result<(), Error> {
    let columns: Vec<String> = (0..INSTANCE_NCOLS).map(|i| format!("j.c{i}")).collect();
    let sql = format!(
        "INSERT INTO instances (tenant_id, {INSTANCE_COLS}) SELECT $1, {} FROM ({}) AS j",
        columns.join(", "),
        backend.json_rows(2, &INSTANCE_TYPES)
    );
    for chunk in rows.chunks(INSTANCE_ROWS) {
        let values: Vec<serde_json::Value> = chunk
            .iter()
            .map(|r| {
                serde_json::json!([
                    r.id.as_str(),
                    r.real_id,
                    r.cloud_id.as_str(),
                    r.cloud_type.as_str(),
                    r.project_id,
                    r.name,
                    r.flavor_id,
                    r.flavor,
                    r.image_id.as_str(),
                    r.image,
                    r.image_real_id,
                    r.vcpus,
                    r.ram,
                    r.disk,
                    r.keypair,
                    r.networks,
                    r.metadata,
                    r.availability_zone,
                    r.addresses,
                    r.fqdn,
                    r.state.as_str(),
                    r.created,
                    r.last_updated,
                ])
            })
            .collect();
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(tenant.as_str())
            .bind(serde_json::to_string(&values).map_err(Error::internal)?)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

impl Store {
    /// One instance of the tenant.
    pub async fn get_instance(
        &self,
        tenant: &TenantScope,
        id: &InstanceId,
    ) -> Result<Option<InstanceRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {INSTANCE_COLS} FROM instances WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.as_ref().map(instance_row).transpose())
        .map_err(db)
    }

    /// What a bulk action checks of each instance among `ids`: only the small columns, so a
    /// 10,000-id request does not read and decode 10,000 flavor and image records. One
    /// statement over the ids as a JSON array; on SQLite on the calling thread (fast.rs).
    pub async fn get_instance_keys(
        &self,
        tenant: &TenantScope,
        ids: &[InstanceId],
    ) -> Result<Vec<InstanceKey>, Error> {
        let ids = json_ids(ids)?;
        let sql = format!(
            "SELECT id, state, cloud_id, project_id FROM instances WHERE tenant_id = $1 AND {}",
            self.backend.one_of("id", &self.backend.json_values(2))
        );
        if let Some(fast) = &self.fast {
            return fast.read(|c| {
                let mut stmt = c.prepare_cached(&sql)?;
                let rows = stmt.query_map([tenant.as_str(), ids.as_str()], |r| {
                    let state: String = r.get(1)?;
                    let state = InstanceState::parse(&state).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            1,
                            rusqlite::types::Type::Text,
                            format!("unknown instance state {state:?}").into(),
                        )
                    })?;
                    Ok(InstanceKey {
                        id: InstanceId::from_trusted(r.get::<_, String>(0)?),
                        state,
                        cloud_id: CloudId::from_trusted(r.get::<_, String>(2)?),
                        project_id: r.get(3)?,
                    })
                })?;
                rows.collect()
            });
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(InstanceKey {
                    id: r.try_get(0)?,
                    state: r.try_get(1)?,
                    cloud_id: r.try_get(2)?,
                    project_id: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db)
    }

    /// Calls `f` with every instance of the tenant, row by row as the database returns them,
    /// so a full load of a large tenant never holds all raw rows at once (the SQL read model).
    pub async fn visit_instances(
        &self,
        tenant: &TenantScope,
        mut f: impl FnMut(InstanceRow),
    ) -> Result<(), Error> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query(sqlf!(
            "SELECT {INSTANCE_COLS} FROM instances WHERE tenant_id = $1"
        ))
        .bind(tenant.as_str())
        .fetch(&self.reads);
        while let Some(r) = rows.try_next().await.map_err(db)? {
            f(instance_row(&r).map_err(db)?);
        }
        Ok(())
    }

    /// The tenant's instances among `ids` (missing ones are simply absent), for a read model
    /// that knows exactly which instances changed.
    pub async fn instances_by_ids(
        &self,
        tenant: &TenantScope,
        ids: &[InstanceId],
    ) -> Result<Vec<InstanceRow>, Error> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut q = sqlx::query(sqlf!(
                "SELECT {INSTANCE_COLS} FROM instances WHERE tenant_id = $1 AND id IN ({})",
                params(2, chunk.len())
            ))
            .bind(tenant.as_str());
            for id in chunk {
                q = q.bind(id);
            }
            let rows = q.fetch_all(&self.reads).await.map_err(db)?;
            for r in &rows {
                out.push(instance_row(r).map_err(db)?);
            }
        }
        Ok(out)
    }

    /// How many instances the tenant has.
    pub async fn count_instances(&self, tenant: &TenantScope) -> Result<i64, Error> {
        sqlx::query("SELECT COUNT(*) FROM instances WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get::<i64, _>(0))
            .map_err(db)
    }

    /// Stores accepted launches with their history and the one job that carries them out
    /// (`make`, given the accepted ids), checking each project's quota against what the
    /// project already holds, inside the transaction (so concurrent launches cannot overrun
    /// it together). Answers per item `Ok` or the exceeded quota's name.
    pub async fn launch_instances(
        &self,
        tenant: &TenantScope,
        items: &[InstanceRow],
        quotas: &HashMap<String, Quota>,
        now: i64,
        make: impl FnOnce(&[InstanceId]) -> Result<(NewJob, ActionEvent), Error>,
    ) -> Result<Vec<Result<(), &'static str>>, Error> {
        let mut tx = self.begin_write().await?;
        // Serialises launches of one tenant on PostgreSQL (SQLite has one writer anyway).
        sqlx::query("UPDATE tenants SET name = name WHERE id = $1")
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut usage: HashMap<&str, [i64; 4]> = HashMap::new();
        let mut out = Vec::with_capacity(items.len());
        let mut accepted: Vec<&InstanceRow> = Vec::with_capacity(items.len());
        for item in items {
            let project = item.project_id.as_str();
            let q = quotas.get(project).copied().unwrap_or_default();
            let unlimited = [q.instances, q.vcpus, q.ram, q.disk].iter().all(Option::is_none);
            // The project's usage is a scan of its instances: only read when a limit needs it.
            if !unlimited && !usage.contains_key(project) {
                let row = sqlx::query(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(vcpus), 0) AS BIGINT), CAST(COALESCE(SUM(ram), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(disk), 0) AS BIGINT) FROM instances WHERE tenant_id = $1 AND project_id = $2",
                )
                .bind(tenant.as_str())
                .bind(project)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                let get = |i: usize| row.try_get::<i64, _>(i).map_err(db);
                usage.insert(project, [get(0)?, get(1)?, get(2)?, get(3)?]);
            }
            let used = usage.get(project).copied().unwrap_or_default();
            let want = [1, item.vcpus, item.ram, item.disk];
            let limits = [
                ("instances", q.instances),
                ("vcpus", q.vcpus),
                ("ram", q.ram),
                ("disk", q.disk),
            ];
            if let Some((name, _)) = limits
                .iter()
                .zip(used.iter().zip(want))
                .find(|((_, limit), (u, w))| limit.is_some_and(|l| u.saturating_add(*w) > l))
                .map(|(l, _)| *l)
            {
                out.push(Err(name));
                continue;
            }
            if let Some(u) = usage.get_mut(project) {
                for (slot, w) in u.iter_mut().zip(want) {
                    *slot = slot.saturating_add(w);
                }
            }
            accepted.push(item);
            out.push(Ok(()));
        }
        if accepted.is_empty() {
            tx.rollback().await.map_err(db)?;
            return Ok(out);
        }
        insert_instances(&mut tx, self.backend, tenant, &accepted).await?;
        let ids: Vec<InstanceId> = accepted.iter().map(|r| r.id.clone()).collect();
        let (job, event) = make(&ids)?;
        insert_job(&mut tx, &job, now).await?;
        insert_events(&mut tx, self.backend, tenant, &event, &ids, now).await?;
        let mut journal = self.journal(tenant);
        for r in &accepted {
            journal.row(Verb::Created, Changed::Instance(r));
        }
        journal.commit(tx, tenant).await?;
        Ok(out)
    }

    /// Moves the instances among `ids` that are in one of `t.from` to `t.to` (with `t.change`
    /// applied), and stores a history entry for each and the one job that carries the action
    /// out (`make`, given the ids that moved). Answers the ids that moved; the others changed
    /// state meanwhile.
    pub async fn transition_instances(
        &self,
        tenant: &TenantScope,
        ids: &[InstanceId],
        t: &Transition<'_>,
        make: impl FnOnce(&[InstanceId]) -> Result<(NewJob, ActionEvent), Error>,
    ) -> Result<Vec<InstanceId>, Error> {
        if t.from.is_empty() {
            return Ok(Vec::new());
        }
        let mut set = String::from("state = $2, last_updated = $3");
        let mut extra: Vec<&str> = Vec::new();
        let mut extra_int: Vec<i64> = Vec::new();
        if let Some((fid, fjson, vcpus, ram, disk)) = &t.change.flavor {
            set.push_str(", flavor_id = $4, flavor = $5, vcpus = $6, ram = $7, disk = $8");
            extra.extend([fid.as_str(), fjson.as_str()]);
            extra_int.extend([*vcpus, *ram, *disk]);
        }
        if let Some((iid, ijson, ireal)) = &t.change.image {
            set.push_str(", image_id = $4, image = $5, image_real_id = $6");
            extra.extend([iid.as_str(), ijson.as_str(), ireal.as_str()]);
        }
        let states_at = 4 + extra.len() + extra_int.len();
        let ids_at = states_at + t.from.len();
        let ids = json_ids(ids)?;
        let mut tx = self.begin_write().await?;
        let mut moved = Vec::new();
        let mut journal = self.journal(tenant);
        let mut q = sqlx::query(sqlf!(
            "UPDATE instances SET {set} WHERE tenant_id = $1 AND state IN ({}) \
             AND {} RETURNING {INSTANCE_COLS}",
            params(states_at, t.from.len()),
            self.backend.one_of("id", &self.backend.json_values(ids_at))
        ))
        .bind(tenant.as_str())
        .bind(t.to)
        .bind(t.now);
        for e in &extra {
            q = q.bind(*e);
        }
        for e in &extra_int {
            q = q.bind(*e);
        }
        for state in t.from {
            q = q.bind(*state);
        }
        for r in q.bind(ids).fetch_all(&mut *tx).await.map_err(db)? {
            let row = instance_row(&r).map_err(db)?;
            journal.row(Verb::Updated, Changed::Instance(&row));
            moved.push(row.id);
        }
        if !moved.is_empty() {
            let (job, event) = make(&moved)?;
            insert_job(&mut tx, &job, t.now).await?;
            insert_events(&mut tx, self.backend, tenant, &event, &moved, t.now).await?;
        }
        journal.commit(tx, tenant).await?;
        Ok(moved)
    }

    /// The instances among `ids` whose history entry `event` is still open (`accepted`): what
    /// a job carrying that action out has left to do. Finished and deleted ones are not
    /// answered, so a resumed job never does an instance twice.
    pub async fn pending_instances(
        &self,
        tenant: &TenantScope,
        event: &str,
        ids: &[InstanceId],
    ) -> Result<Vec<InstanceRow>, Error> {
        let cols = INSTANCE_COLS
            .split(", ")
            .map(|c| format!("i.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut q = sqlx::query(sqlf!(
                "SELECT {cols} FROM instances i JOIN instance_events e \
                 ON e.tenant_id = i.tenant_id AND e.instance_id = i.id AND e.id = $2 \
                 WHERE i.tenant_id = $1 AND e.outcome = 'accepted' AND i.id IN ({})",
                params(3, chunk.len())
            ))
            .bind(tenant.as_str())
            .bind(event);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await.map_err(db)? {
                out.push(instance_row(&r).map_err(db)?);
            }
        }
        Ok(out)
    }

    /// Moves the instances among `ids` that are in `from` to `to` in one transaction (a batch
    /// of launches starting), fenced by the job's lease. Answers the ids that moved, or `None`
    /// when the lease is lost.
    pub async fn advance_instances(
        &self,
        tenant: &TenantScope,
        fence: Fence<'_>,
        ids: &[InstanceId],
        from: InstanceState,
        to: InstanceState,
        now: i64,
    ) -> Result<Option<Vec<InstanceId>>, Error> {
        let mut tx = self.begin_write().await?;
        if !fence.held(&mut tx, self.backend).await? {
            tx.rollback().await.map_err(db)?;
            return Ok(None);
        }
        let mut journal = self.journal(tenant);
        let mut moved = Vec::with_capacity(ids.len());
        let rows = move_state(&mut tx, self.backend, tenant, (from, to), ids, now).await?;
        for r in &rows {
            let row = instance_row(r).map_err(db)?;
            journal.row(Verb::Updated, Changed::Instance(&row));
            moved.push(row.id);
        }
        journal.commit(tx, tenant).await?;
        Ok(Some(moved))
    }

    /// Records how a batch of one action's instances ended, in one transaction: each
    /// instance's new state (or its removal) and its history entry `event`, with the change
    /// log. Fenced by the job's lease when `fence` is given (a job's failure hook runs after
    /// the job ended, without one); false when the lease is lost and nothing was written.
    pub async fn end_instances(
        &self,
        tenant: &TenantScope,
        fence: Option<Fence<'_>>,
        event: &str,
        ends: &[(&InstanceId, InstanceEnd<'_>)],
        now: i64,
    ) -> Result<bool, Error> {
        if ends.is_empty() {
            return Ok(true);
        }
        let mut tx = self.begin_write().await?;
        if let Some(f) = fence
            && !f.held(&mut tx, self.backend).await?
        {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        let mut journal = self.journal(tenant);
        let mut succeeded: Vec<&InstanceId> = Vec::new();
        let mut superseded: Vec<&InstanceId> = Vec::new();
        // Moves by (from, to), with and without the driver's report: one statement each, not
        // one per instance (a launch batch is hundreds of the same move).
        let mut reported: Moves<[&str; 3]> = Vec::new();
        let mut plain: Moves<&InstanceId> = Vec::new();
        for (id, end) in ends {
            let id = *id;
            match *end {
                InstanceEnd::Moved { from, to, report } => {
                    match report {
                        Some((real_id, addresses)) => {
                            group(&mut reported, (from, to)).push([id.as_str(), real_id, addresses])
                        }
                        None => group(&mut plain, (from, to)).push(id),
                    }
                    succeeded.push(id);
                }
                InstanceEnd::Noted => succeeded.push(id),
                InstanceEnd::Superseded => superseded.push(id),
                InstanceEnd::Removed => {
                    sqlx::query("DELETE FROM instance_events WHERE tenant_id = $1 AND instance_id = $2")
                        .bind(tenant.as_str())
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    let gone = sqlx::query(sqlf!(
                        "DELETE FROM instances WHERE tenant_id = $1 AND id = $2 RETURNING {INSTANCE_COLS}"
                    ))
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .and_then(|r| r.as_ref().map(instance_row).transpose())
                    .map_err(db)?;
                    if let Some(row) = &gone {
                        journal.row(Verb::Deleted, Changed::Instance(row));
                    }
                }
                InstanceEnd::Failed { charge, reason } => {
                    if !charge.is_empty() {
                        let mut q = sqlx::query(sqlf!(
                            "UPDATE instances SET state = $3, last_updated = $4 WHERE tenant_id = $1 AND id = $2 \
                             AND state IN ({}) RETURNING {INSTANCE_COLS}",
                            params(5, charge.len())
                        ))
                        .bind(tenant.as_str())
                        .bind(id)
                        .bind(InstanceState::Error)
                        .bind(now);
                        for state in charge {
                            q = q.bind(*state);
                        }
                        let failed = q
                            .fetch_optional(&mut *tx)
                            .await
                            .and_then(|r| r.as_ref().map(instance_row).transpose())
                            .map_err(db)?;
                        if let Some(row) = &failed {
                            journal.row(Verb::Updated, Changed::Instance(row));
                        }
                    }
                    finish_event(&mut tx, tenant, id, event, "failed", reason, now).await?;
                }
            }
        }
        for ((from, to), mut rows) in reported {
            // In key order, like json_ids: the primary key is walked once, left to right.
            // Materialized: SQLite has no estimate of a JSON array's length and would scan
            // the tenant's instances, and the array for each, instead of seeking each key;
            // PostgreSQL gets the keys as an index condition (one_of) for the same reason.
            rows.sort_unstable_by(|x, y| x[0].cmp(y[0]));
            rows.dedup_by(|x, y| x[0] == y[0]);
            let rows = serde_json::to_string(&rows).map_err(Error::internal)?;
            let moved = sqlx::query(sqlf!(
                "WITH j AS MATERIALIZED ({}) \
                 UPDATE instances SET state = $3, real_id = j.c1, addresses = j.c2, last_updated = $4 FROM j \
                 WHERE instances.tenant_id = $1 AND instances.id = j.c0 AND instances.state = $2 \
                 AND {} RETURNING {INSTANCE_COLS}",
                self.backend.json_rows(5, &[JsonCol::Text; 3]),
                self.backend.one_of("instances.id", "SELECT c0 FROM j")
            ))
            .bind(tenant.as_str())
            .bind(from)
            .bind(to)
            .bind(now)
            .bind(rows)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for r in &moved {
                journal.row(Verb::Updated, Changed::Instance(&instance_row(r).map_err(db)?));
            }
        }
        for (fromto, ids) in plain {
            for r in &move_state(&mut tx, self.backend, tenant, fromto, ids, now).await? {
                journal.row(Verb::Updated, Changed::Instance(&instance_row(r).map_err(db)?));
            }
        }
        for (outcome, ids) in [("succeeded", succeeded), ("superseded", superseded)] {
            if ids.is_empty() {
                continue;
            }
            sqlx::query(sqlf!(
                "UPDATE instance_events SET outcome = $3, error = '', finished = $4 \
                 WHERE tenant_id = $1 AND id = $2 AND {}",
                self.backend.one_of("instance_id", &self.backend.json_values(5))
            ))
            .bind(tenant.as_str())
            .bind(event)
            .bind(outcome)
            .bind(now)
            .bind(json_ids(ids)?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        journal.commit(tx, tenant).await?;
        Ok(true)
    }

    /// Renames an instance (any state but `deleting`) and stores the driver's job; false
    /// when it is gone or being deleted.
    pub async fn rename_instance(
        &self,
        tenant: &TenantScope,
        id: &InstanceId,
        name: &str,
        job: &NewJob,
        event: &NewEvent,
        now: i64,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let renamed = sqlx::query(sqlf!(
            "UPDATE instances SET name = $3, last_updated = $4 WHERE tenant_id = $1 AND id = $2 AND state <> $5 \
             RETURNING {INSTANCE_COLS}"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(name)
        .bind(now)
        .bind(InstanceState::Deleting)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(instance_row).transpose())
        .map_err(db)?;
        let mut journal = self.journal(tenant);
        if let Some(row) = &renamed {
            insert_job(&mut tx, job, now).await?;
            insert_event(&mut tx, tenant, event, now).await?;
            journal.row(Verb::Updated, Changed::Instance(row));
        }
        journal.commit(tx, tenant).await?;
        Ok(renamed.is_some())
    }

    /// An instance's history, oldest first.
    pub async fn instance_events(
        &self,
        tenant: &TenantScope,
        id: &InstanceId,
    ) -> Result<Vec<EventRow>, Error> {
        sqlx::query(
            "SELECT at, finished, actor, action, outcome, error, request_id FROM instance_events \
             WHERE tenant_id = $1 AND instance_id = $2 ORDER BY at, id",
        )
        .bind(tenant.as_str())
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok(EventRow {
                        at: r.try_get(0)?,
                        finished: r.try_get(1)?,
                        actor: r.try_get(2)?,
                        action: r.try_get(3)?,
                        outcome: r.try_get(4)?,
                        error: r.try_get(5)?,
                        request_id: r.try_get(6)?,
                    })
                })
                .collect()
        })
        .map_err(db)
    }

    /// Instances of a cloud across tenants (reconciliation after a restart; never a request).
    pub async fn instances_of_cloud(
        &self,
        cloud_id: &CloudId,
    ) -> Result<Vec<(TenantId, InstanceRow)>, Error> {
        sqlx::query(sqlf!(
            "SELECT tenant_id, {INSTANCE_COLS} FROM instances WHERE cloud_id = $1"
        ))
        .bind(cloud_id)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| {
                    let tenant = TenantId::from_trusted(r.try_get::<String, _>(0)?);
                    let shifted = instance_row_at(r, 1)?;
                    Ok((tenant, shifted))
                })
                .collect()
        })
        .map_err(db)
    }

    /// Sets an instance's state and addresses as its cloud reports them (reconciliation), when
    /// it is still in `from`.
    pub async fn reconcile_instance(
        &self,
        tenant: &TenantScope,
        id: &InstanceId,
        from: InstanceState,
        to: InstanceState,
        addresses: &str,
        now: i64,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(sqlf!(
            "UPDATE instances SET state = $4, addresses = $5, last_updated = $6 \
             WHERE tenant_id = $1 AND id = $2 AND state = $3 RETURNING {INSTANCE_COLS}"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(from)
        .bind(to)
        .bind(addresses)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(instance_row).transpose())
        .map_err(db)?;
        let mut journal = self.journal(tenant);
        if let Some(row) = &moved {
            journal.row(Verb::Updated, Changed::Instance(row));
        }
        journal.commit(tx, tenant).await?;
        Ok(moved.is_some())
    }

    // ---- images ----

    pub async fn get_image(&self, tenant: &TenantScope, id: &ImageId) -> Result<Option<ImageRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {IMAGE_COLS} FROM images WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.as_ref().map(image_row).transpose())
        .map_err(db)
    }

    /// Every private image of the tenant (the SQL read model).
    pub async fn list_images(&self, tenant: &TenantScope) -> Result<Vec<ImageRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {IMAGE_COLS} FROM images WHERE tenant_id = $1 ORDER BY id"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(image_row).collect())
        .map_err(db)
    }

    /// Stores a new image (`queued`) with its job.
    pub async fn insert_image(
        &self,
        tenant: &TenantScope,
        row: &ImageRow,
        job: &NewJob,
        now: i64,
    ) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        sqlx::query(sqlf!(
            "INSERT INTO images (tenant_id, {IMAGE_COLS}) VALUES ({})",
            params(1, 13)
        ))
        .bind(tenant.as_str())
        .bind(&row.id)
        .bind(&row.real_id)
        .bind(&row.cloud_id)
        .bind(&row.cloud_type)
        .bind(&row.name)
        .bind(&row.instance_id)
        .bind(&row.project_ids)
        .bind(row.state)
        .bind(&row.checksum)
        .bind(&row.metadata)
        .bind(row.created)
        .bind(row.last_updated)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        insert_job(&mut tx, job, now).await?;
        let mut journal = self.journal(tenant);
        journal.row(Verb::Created, Changed::Image(row));
        journal.commit(tx, tenant).await
    }

    /// Moves an image from one of `from` to `to`, storing `job` when it moved.
    pub async fn transition_image(
        &self,
        tenant: &TenantScope,
        id: &ImageId,
        from: &[ImageState],
        to: ImageState,
        job: Option<&NewJob>,
        now: i64,
    ) -> Result<bool, Error> {
        if from.is_empty() {
            return Ok(false);
        }
        let mut tx = self.begin_write().await?;
        let mut q = sqlx::query(sqlf!(
            "UPDATE images SET state = $3, last_updated = $4 WHERE tenant_id = $1 AND id = $2 AND state IN ({}) \
             RETURNING {IMAGE_COLS}",
            params(5, from.len())
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(to)
        .bind(now);
        for state in from {
            q = q.bind(*state);
        }
        let moved = q
            .fetch_optional(&mut *tx)
            .await
            .and_then(|r| r.as_ref().map(image_row).transpose())
            .map_err(db)?;
        let mut journal = self.journal(tenant);
        if let Some(row) = &moved {
            if let Some(job) = job {
                insert_job(&mut tx, job, now).await?;
            }
            journal.row(Verb::Updated, Changed::Image(row));
        }
        journal.commit(tx, tenant).await?;
        Ok(moved.is_some())
    }

    /// Records a finished snapshot: `saved`, the cloud's id and checksum.
    pub async fn image_saved(
        &self,
        tenant: &TenantScope,
        id: &ImageId,
        real_id: &str,
        checksum: &str,
        now: i64,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let saved = sqlx::query(sqlf!(
            "UPDATE images SET state = $6, real_id = $3, checksum = $4, last_updated = $5 \
             WHERE tenant_id = $1 AND id = $2 AND state = $7 RETURNING {IMAGE_COLS}"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(real_id)
        .bind(checksum)
        .bind(now)
        .bind(ImageState::Saved)
        .bind(ImageState::Saving)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(image_row).transpose())
        .map_err(db)?;
        let mut journal = self.journal(tenant);
        if let Some(row) = &saved {
            journal.row(Verb::Updated, Changed::Image(row));
        }
        journal.commit(tx, tenant).await?;
        Ok(saved.is_some())
    }

    pub async fn remove_image(&self, tenant: &TenantScope, id: &ImageId) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        let gone = sqlx::query(sqlf!(
            "DELETE FROM images WHERE tenant_id = $1 AND id = $2 RETURNING {IMAGE_COLS}"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(image_row).transpose())
        .map_err(db)?;
        let mut journal = self.journal(tenant);
        if let Some(row) = &gone {
            journal.row(Verb::Deleted, Changed::Image(row));
        }
        journal.commit(tx, tenant).await
    }
}

/// Instances (or their rows) by the move (from, to) they make.
type Moves<V> = Vec<((InstanceState, InstanceState), Vec<V>)>;

/// The list of `groups` kept under `key`, added when new (a batch has one or two keys).
fn group<K: PartialEq, V>(groups: &mut Vec<(K, Vec<V>)>, key: K) -> &mut Vec<V> {
    let at = match groups.iter().position(|(k, _)| *k == key) {
        Some(at) => at,
        None => {
            groups.push((key, Vec::new()));
            groups.len() - 1
        }
    };
    &mut groups[at].1
}

/// Moves the instances among `ids` that are in `from` to `to`, in one statement; answers the
/// moved rows.
async fn move_state<'a>(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    tenant: &TenantScope,
    (from, to): (InstanceState, InstanceState),
    ids: impl IntoIterator<Item = &'a InstanceId>,
    now: i64,
) -> Result<Vec<AnyRow>, Error> {
    sqlx::query(sqlf!(
        "UPDATE instances SET state = $3, last_updated = $4 WHERE tenant_id = $1 AND state = $2 \
         AND {} RETURNING {INSTANCE_COLS}",
        backend.one_of("id", &backend.json_values(5))
    ))
    .bind(tenant.as_str())
    .bind(from)
    .bind(to)
    .bind(now)
    .bind(json_ids(ids)?)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)
}

/// Completes a history entry (a primary-key update: the instance id is part of the key).
async fn finish_event(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    instance_id: &InstanceId,
    event_id: &str,
    outcome: &str,
    error: &str,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE instance_events SET outcome = $4, error = $5, finished = $6 \
         WHERE tenant_id = $1 AND instance_id = $2 AND id = $3",
    )
    .bind(tenant.as_str())
    .bind(instance_id)
    .bind(event_id)
    .bind(outcome)
    .bind(error)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}
