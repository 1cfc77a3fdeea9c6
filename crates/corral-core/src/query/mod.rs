//! `POST /query` (perspective.md 4): read-only SQL over the caller's tenant's inventory.
//!
//! Safety by construction: the engine (`corral-query`) runs over an in-memory snapshot that holds
//! only the caller's tenant's rows, built here from tenant-scoped store reads; it has no path to
//! the store, files, settings or another tenant at all, so no query text can reach them.
//!
//! Speed by a per-tenant **read model** kept current instead of rebuilt per query: the model
//! remembers the last change-log revision (docs/events.md) it applied for the tenant; a query
//! first reads the tenant's newest revision (one index seek) and, if it moved, reads exactly the
//! instances the log names since then (a bulk action of thousands is one bounded read; more than
//! `MAX_DELTA`, or a log pruned past the model, is a full reload, streamed row by row). Deletes
//! are in the log too. The smaller tables (catalog, images, hosts, clusters, operations) are
//! reloaded when the log shows a change of anything but an instance, and at least every
//! `OTHERS_MAX_AGE` (a watcher check that only moves a host's `last_check` is not logged). A
//! query on an unchanged inventory costs one index seek and the engine's own work. Models unused for ten
//! minutes are dropped, so memory follows the active tenants, not the number of queries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_query::{Database, Table, Value};

use crate::sync::lock;
use corral_store::InstanceRow;
use corral_types::perspective::{Flavor, Image, Metadata, Network};
use corral_types::query::{QueryData, QueryResult, QueryRow, QueryStatement, QueryStatus};
use corral_types::time::{commissaire_time, now_ms, rfc3339};
use corral_types::{
    Access, ClusterName, Error, InstanceId, ObjectType, OpCtx, OperationKind, TenantId, TenantScope,
};

/// How long the smaller tables are trusted when the change log shows nothing for them.
const OTHERS_MAX_AGE: Duration = Duration::from_secs(5);
/// Models idle this long are dropped.
const IDLE: Duration = Duration::from_secs(600);
/// More changed instances than this since the last look are read by a full reload instead.
const MAX_DELTA: usize = 20_000;

fn s(v: impl Into<Arc<str>>) -> Value {
    Value::Str(v.into())
}

fn opt_s(v: Option<String>) -> Value {
    v.map(s).unwrap_or(Value::Null)
}

/// Strings repeated across instances (state, cloud, project, flavor, image, zone, metadata
/// keys, network ids): one shared allocation each instead of one per row. Bounded: past
/// `MAX` distinct strings, new ones are simply not shared.
#[derive(Default)]
struct Interner(std::collections::HashSet<Arc<str>>);

impl Interner {
    const MAX: usize = 4096;

    fn get(&mut self, v: &str) -> Value {
        if let Some(a) = self.0.get(v) {
            return Value::Str(a.clone());
        }
        let a: Arc<str> = Arc::from(v);
        if self.0.len() < Self::MAX {
            self.0.insert(a.clone());
        }
        Value::Str(a)
    }
}

/// What the model knows of one row of `instances` besides its cells.
#[derive(Clone, Copy)]
struct RowInfo {
    /// `last_updated` in ms.
    updated: i64,
    /// Hash of the metadata and networks text, to tell whether the side tables changed.
    extra: u64,
    /// How many rows of `instance_metadata` and `instance_networks` the instance has.
    metadata: u32,
    networks: u32,
}

fn extra_hash(r: &InstanceRow) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    r.metadata.hash(&mut h);
    r.networks.hash(&mut h);
    h.finish()
}

fn instance_values(r: &InstanceRow, id: &Arc<str>, it: &mut Interner) -> Vec<Value> {
    vec![
        Value::Str(id.clone()),
        s(r.real_id.as_str()),
        s(r.name.as_str()),
        it.get(r.cloud_id.as_str()),
        it.get(r.cloud_type.as_str()),
        it.get(r.project_id.as_str()),
        it.get(r.flavor_id.as_str()),
        it.get(r.image_id.as_str()),
        it.get(r.state.as_str()),
        s(rfc3339(r.last_updated)),
        s(rfc3339(r.created)),
        it.get(r.availability_zone.as_str()),
        s(r.addresses.as_str()),
        s(r.fqdn.as_str()),
    ]
}

/// Whether row `pos` of `t` already shows `r` (no allocation: the hot path of a refresh that
/// re-reads the rows of the last seconds).
fn same_row(t: &Table, pos: usize, info: &RowInfo, r: &InstanceRow) -> bool {
    if info.updated != r.last_updated || info.extra != extra_hash(r) {
        return false;
    }
    let text = [
        (1, r.real_id.as_str()),
        (2, r.name.as_str()),
        (3, r.cloud_id.as_str()),
        (4, r.cloud_type.as_str()),
        (5, r.project_id.as_str()),
        (6, r.flavor_id.as_str()),
        (7, r.image_id.as_str()),
        (8, r.state.as_str()),
        (11, r.availability_zone.as_str()),
        (12, r.addresses.as_str()),
        (13, r.fqdn.as_str()),
    ];
    text.iter()
        .all(|(c, v)| matches!(t.cell(pos, *c), Value::Str(x) if &**x == *v))
}

/// The instance tables being built (a full load in the database's order, or a merge in id
/// order), with what the model keeps per row.
struct Builder {
    instances: Table,
    metadata: Table,
    networks: Table,
    ids: Vec<Arc<str>>,
    info: Vec<RowInfo>,
}

impl Builder {
    fn new(rows: usize) -> Result<Builder, Error> {
        Ok(Builder {
            instances: Table::with_capacity("instances", rows).map_err(Error::internal)?,
            metadata: Table::new("instance_metadata").map_err(Error::internal)?,
            networks: Table::new("instance_networks").map_err(Error::internal)?,
            ids: Vec::with_capacity(rows),
            info: Vec::with_capacity(rows),
        })
    }

    /// Appends an instance as read from the store.
    fn push_fresh(&mut self, id: Arc<str>, r: &InstanceRow, it: &mut Interner) -> Result<(), Error> {
        let metadata: Metadata = serde_json::from_str(&r.metadata).unwrap_or_default();
        let networks: Vec<Network> = serde_json::from_str(&r.networks).unwrap_or_default();
        let info = RowInfo {
            updated: r.last_updated,
            extra: extra_hash(r),
            metadata: u32::try_from(metadata.entry.len()).map_err(Error::internal)?,
            networks: u32::try_from(networks.len()).map_err(Error::internal)?,
        };
        for e in metadata.entry {
            self.metadata
                .push(vec![Value::Str(id.clone()), it.get(&e.key), s(e.value)])
                .map_err(Error::internal)?;
        }
        for n in networks {
            self.networks
                .push(vec![Value::Str(id.clone()), it.get(&n.id)])
                .map_err(Error::internal)?;
        }
        self.instances
            .push(instance_values(r, &id, it))
            .map_err(Error::internal)?;
        self.ids.push(id);
        self.info.push(info);
        Ok(())
    }

    /// Appends an unchanged instance from the current tables (cells shared, not copied).
    fn push_old(&mut self, id: Arc<str>, old: &OldRows<'_>, pos: usize) -> Result<(), Error> {
        let (Some(info), Some(&m0), Some(&n0)) = (
            old.info.get(pos),
            old.metadata_start.get(pos),
            old.networks_start.get(pos),
        ) else {
            return Err(Error::internal("read model: row out of range"));
        };
        for i in m0..m0 + info.metadata as usize {
            self.metadata.push(old.metadata.row(i)).map_err(Error::internal)?;
        }
        for i in n0..n0 + info.networks as usize {
            self.networks.push(old.networks.row(i)).map_err(Error::internal)?;
        }
        self.instances
            .push(old.instances.row(pos))
            .map_err(Error::internal)?;
        self.ids.push(id);
        self.info.push(*info);
        Ok(())
    }

    /// Sorts the rows by id (the order queries see without `ORDER BY`) and installs them.
    fn finish(mut self, m: &mut Model) -> Result<(), Error> {
        let n = self.ids.len();
        let mut order: Vec<u32> = (0..u32::try_from(n).map_err(Error::internal)?).collect();
        if !self.ids.is_sorted() {
            order.sort_unstable_by(|a, b| self.ids[*a as usize].cmp(&self.ids[*b as usize]));
            let side = |counts: &dyn Fn(&RowInfo) -> u32| -> Vec<u32> {
                let mut start = Vec::with_capacity(n);
                let mut at = 0u32;
                for i in &self.info {
                    start.push(at);
                    at += counts(i);
                }
                order
                    .iter()
                    .flat_map(|&i| {
                        let i = i as usize;
                        start[i]..start[i] + counts(&self.info[i])
                    })
                    .collect()
            };
            let meta_order = side(&|i| i.metadata);
            let net_order = side(&|i| i.networks);
            self.instances.permute(&order).map_err(Error::internal)?;
            self.metadata.permute(&meta_order).map_err(Error::internal)?;
            self.networks.permute(&net_order).map_err(Error::internal)?;
            let ids = std::mem::take(&mut self.ids);
            let mut ids: Vec<Option<Arc<str>>> = ids.into_iter().map(Some).collect();
            self.ids = order.iter().filter_map(|&i| ids[i as usize].take()).collect();
            self.info = order.iter().map(|&i| self.info[i as usize]).collect();
        }
        m.index = self
            .ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id, i as u32))
            .collect();
        m.info = self.info;
        for (name, t) in [
            ("instances", self.instances),
            ("instance_metadata", self.metadata),
            ("instance_networks", self.networks),
        ] {
            m.db.set(name, Arc::new(t)).map_err(Error::internal)?;
        }
        Ok(())
    }
}

/// The current instance tables, read while merging changes into new ones.
struct OldRows<'a> {
    instances: &'a Table,
    metadata: &'a Table,
    networks: &'a Table,
    info: &'a [RowInfo],
    metadata_start: Vec<usize>,
    networks_start: Vec<usize>,
}

/// One tenant's read model. The instance rows live once, in the engine's tables; the model
/// keeps beside them only each row's position by id (the key shares the table's id string) and
/// a few numbers per row, so an incremental refresh can replace rows in place.
#[derive(Default)]
struct Model {
    db: Database,
    /// Row of each instance in `instances`.
    index: HashMap<Arc<str>, u32>,
    /// Per row of `instances`, in the same order.
    info: Vec<RowInfo>,
    interner: Interner,
    /// The tenant's change-log revision the instance tables reflect (at least).
    revision: i64,
    /// The same for the smaller tables.
    others_revision: i64,
    loaded_instances: bool,
    others_at: Option<Instant>,
    used_at: Option<Instant>,
}

impl Model {
    /// Applies the instances changed since the last look: rows replaced in place when only
    /// their own cells changed (a state change, the common case), else the three instance
    /// tables rebuilt by merging the changes into the current rows (new instances, changed
    /// metadata or networks).
    fn apply(&mut self, changed: Vec<InstanceRow>, removed: Vec<Arc<str>>) -> Result<(), Error> {
        let (updates, inserts, side_changed) = self.classify(changed)?;
        let removed: std::collections::HashSet<Arc<str>> = removed
            .into_iter()
            .filter(|id| self.index.contains_key(id))
            .collect();
        if updates.is_empty() && inserts.is_empty() && removed.is_empty() {
            return Ok(());
        }
        if inserts.is_empty() && removed.is_empty() && !side_changed {
            return self.replace(updates);
        }
        self.merge(updates, inserts, &removed)
    }

    /// Applies rows a local commit wrote, when each only replaces its own row's cells (a state
    /// change: a bulk action, a job finishing an instance); answers false, changing nothing,
    /// when a merge would be needed, which the next query does from the log instead (a
    /// merge rebuilds the tables, too much to do for every commit).
    fn follow(&mut self, changed: Vec<InstanceRow>) -> Result<bool, Error> {
        let (updates, inserts, side_changed) = self.classify(changed)?;
        if !inserts.is_empty() || side_changed {
            return Ok(false);
        }
        self.replace(updates)?;
        Ok(true)
    }

    /// Splits `changed` into rows that differ from the model's (with their position) and
    /// new instances; true in the third place when a differing row's metadata or networks
    /// changed.
    #[allow(clippy::type_complexity)]
    fn classify(
        &self,
        changed: Vec<InstanceRow>,
    ) -> Result<(Vec<(u32, InstanceRow)>, Vec<InstanceRow>, bool), Error> {
        let mut updates: Vec<(u32, InstanceRow)> = Vec::new();
        let mut inserts: Vec<InstanceRow> = Vec::new();
        let mut side_changed = false;
        let Some(t) = self.db.table("instances") else {
            return Err(Error::internal("read model: no instances table"));
        };
        for r in changed {
            match self.index.get(r.id.as_str()) {
                Some(&pos) => {
                    let Some(info) = self.info.get(pos as usize) else {
                        return Err(Error::internal("read model: row out of range"));
                    };
                    if !same_row(t, pos as usize, info, &r) {
                        side_changed |= info.extra != extra_hash(&r);
                        updates.push((pos, r));
                    }
                }
                None => inserts.push(r),
            }
        }
        Ok((updates, inserts, side_changed))
    }

    /// Replaces rows of `instances` in place, writing only the cells that differ: a state
    /// change writes `state` and `last_updated`, so only those two columns are copied when a
    /// running query still holds the table, and rows stamped in the same second share one
    /// timestamp string.
    fn replace(&mut self, updates: Vec<(u32, InstanceRow)>) -> Result<(), Error> {
        let Model {
            db,
            index,
            info,
            interner,
            ..
        } = self;
        let Some(t) = db.table_mut("instances") else {
            return Err(Error::internal("read model: no instances table"));
        };
        let mut stamp: Option<(i64, Value)> = None;
        for (pos, r) in updates {
            if !index.contains_key(r.id.as_str()) {
                continue;
            }
            let pos = pos as usize;
            let mut set = |col: usize, v: &str, interned: bool, t: &mut Table| -> Result<(), Error> {
                if matches!(t.cell(pos, col), Value::Str(x) if &**x == v) {
                    return Ok(());
                }
                let v = if interned { interner.get(v) } else { s(v) };
                t.set_cell(pos, col, v).map_err(Error::internal)
            };
            set(1, &r.real_id, false, t)?;
            set(2, &r.name, false, t)?;
            set(3, r.cloud_id.as_str(), true, t)?;
            set(4, r.cloud_type.as_str(), true, t)?;
            set(5, r.project_id.as_str(), true, t)?;
            set(6, r.flavor_id.as_str(), true, t)?;
            set(7, r.image_id.as_str(), true, t)?;
            set(8, r.state.as_str(), true, t)?;
            set(10, &rfc3339(r.created), false, t)?;
            set(11, r.availability_zone.as_str(), true, t)?;
            set(12, &r.addresses, false, t)?;
            set(13, &r.fqdn, false, t)?;
            let Some(i) = info.get_mut(pos) else {
                continue;
            };
            if i.updated != r.last_updated {
                let second = r.last_updated.div_euclid(1000);
                let v = match &stamp {
                    Some((at, v)) if *at == second => v.clone(),
                    _ => {
                        let v = s(rfc3339(r.last_updated).as_str());
                        stamp = Some((second, v.clone()));
                        v
                    }
                };
                t.set_cell(pos, 9, v).map_err(Error::internal)?;
                i.updated = r.last_updated;
            }
        }
        Ok(())
    }

    fn merge(
        &mut self,
        updates: Vec<(u32, InstanceRow)>,
        inserts: Vec<InstanceRow>,
        removed: &std::collections::HashSet<Arc<str>>,
    ) -> Result<(), Error> {
        let (Some(instances), Some(metadata), Some(networks)) = (
            self.db.table("instances").cloned(),
            self.db.table("instance_metadata").cloned(),
            self.db.table("instance_networks").cloned(),
        ) else {
            return Err(Error::internal("read model: no instances table"));
        };
        let info = std::mem::take(&mut self.info);
        let starts = |count: &dyn Fn(&RowInfo) -> u32| -> Vec<usize> {
            let mut at = 0usize;
            info.iter()
                .map(|i| {
                    let s = at;
                    at += count(i) as usize;
                    s
                })
                .collect()
        };
        let old = OldRows {
            instances: &instances,
            metadata: &metadata,
            networks: &networks,
            metadata_start: starts(&|i| i.metadata),
            networks_start: starts(&|i| i.networks),
            info: &info,
        };
        let mut fresh: HashMap<Arc<str>, InstanceRow> = HashMap::with_capacity(updates.len() + inserts.len());
        for (_, r) in updates {
            if let Some((id, _)) = self.index.get_key_value(r.id.as_str()) {
                fresh.insert(id.clone(), r);
            }
        }
        let mut order: Vec<(Arc<str>, Option<u32>)> = self
            .index
            .iter()
            .filter(|(id, _)| !removed.contains(*id))
            .map(|(id, &pos)| (id.clone(), Some(pos)))
            .collect();
        for r in inserts {
            let id: Arc<str> = Arc::from(r.id.as_str());
            order.push((id.clone(), None));
            fresh.insert(id, r);
        }
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut b = Builder::new(order.len())?;
        for (id, pos) in order {
            match (fresh.remove(&id), pos) {
                (Some(r), _) => b.push_fresh(id, &r, &mut self.interner)?,
                (None, Some(pos)) => b.push_old(id, &old, pos as usize)?,
                (None, None) => {}
            }
        }
        drop(old);
        drop((instances, metadata, networks));
        b.finish(self)
    }

    /// Reloads every instance of the tenant, streamed row by row into the tables; the old
    /// tables are let go first, so the two are not held together.
    async fn reload(&mut self, store: &corral_store::Store, tenant: &TenantScope) -> Result<(), Error> {
        self.loaded_instances = false;
        self.index = HashMap::new();
        self.info = Vec::new();
        for name in ["instances", "instance_metadata", "instance_networks"] {
            self.db
                .set(name, table(name, Vec::new())?)
                .map_err(Error::internal)?;
        }
        // The revision first: changes committed while the rows stream are applied again
        // by the next refresh, which is harmless.
        let revision = store.tenant_revision(tenant).await?;
        let expected = usize::try_from(store.count_instances(tenant).await?).unwrap_or(0);
        let mut b = Builder::new(expected)?;
        let mut failed = None;
        let interner = &mut self.interner;
        store
            .visit_instances(tenant, |r| {
                if failed.is_none()
                    && let Err(e) = b.push_fresh(Arc::from(r.id.as_str()), &r, interner)
                {
                    failed = Some(e);
                }
            })
            .await?;
        if let Some(e) = failed {
            return Err(e);
        }
        b.finish(self)?;
        self.revision = revision;
        self.loaded_instances = true;
        Ok(())
    }
}

/// Every tenant's read model.
#[derive(Default)]
pub(crate) struct ReadModels {
    models: std::sync::Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<Model>>>>,
    /// What the models are told of local commits; shared with the tasks that apply them.
    told: Arc<Told>,
}

#[derive(Default)]
struct Told {
    tenants: std::sync::Mutex<HashMap<TenantId, Commits>>,
    /// Woken when an in-flight commit is told or abandoned.
    settled: tokio::sync::Notify,
}

/// One tenant's local commits on their way to its model.
#[derive(Default)]
struct Commits {
    /// Told, not yet applied: an earlier commit may still be on its way.
    waiting: Vec<Followed>,
    /// Revisions of commits being made durable: a query that already sees one waits for its
    /// rows (see [`Told::catch_up_to`]).
    in_flight: Vec<i64>,
    /// The model met a commit it cannot follow (new or deleted instances): until a query
    /// brings it to the log's head, later commits are not kept, as the log has them.
    stalled: bool,
}

/// A local commit of a tenant with a model (see [`corral_store::CommitObserver`]).
struct Followed {
    before: i64,
    last: i64,
    rows: corral_store::InstancesCommitted,
}

/// Local commits kept per tenant while they cannot be applied yet (and at most
/// [`MAX_DELTA`] rows in them).
const MAX_WAITING: usize = 16;

/// How long a query waits for a commit it already sees to be told (far longer than the
/// usual microseconds between the two; past it, the query reads the rows back).
const AWAIT_TOLD: Duration = Duration::from_millis(500);

/// Local commits reach the models they concern at once: a query right after a bulk action
/// of 10,000 instances finds them applied instead of reading them back (docs/query.md).
impl corral_store::CommitObserver for ReadModels {
    fn follows(&self, tenant: &TenantId) -> bool {
        // Only tenants that query have a model, and a stalled model needs the log anyway:
        // the others' commits pay nothing.
        lock(&self.models).contains_key(tenant)
            && !lock(&self.told.tenants).get(tenant).is_some_and(|c| c.stalled)
    }

    fn committing(&self, tenant: &TenantId, last: i64) {
        lock(&self.told.tenants)
            .entry(tenant.clone())
            .or_default()
            .in_flight
            .push(last);
    }

    fn abandoned(&self, tenant: &TenantId, last: i64) {
        self.told.settle(tenant, last, None);
    }

    fn committed(&self, tenant: &TenantId, before: i64, last: i64, rows: corral_store::InstancesCommitted) {
        let Some(model) = lock(&self.models).get(tenant).cloned() else {
            self.told.settle(tenant, last, None);
            return;
        };
        self.told
            .settle(tenant, last, Some(Followed { before, last, rows }));
        // Applied by a task, not under the committing request: the model's lock may be held
        // by a query.
        let (told, tenant) = (self.told.clone(), tenant.clone());
        tokio::spawn(async move {
            let mut m = model.lock().await;
            told.catch_up(&tenant, &mut m);
        });
    }
}

impl Told {
    /// Ends the in-flight commit `last`, keeping its rows when it was made.
    fn settle(&self, tenant: &TenantId, last: i64, made: Option<Followed>) {
        let mut tenants = lock(&self.tenants);
        let c = tenants.entry(tenant.clone()).or_default();
        c.in_flight.retain(|l| *l != last);
        if let Some(f) = made
            && !c.stalled
        {
            // A model left this far behind catches up from the log at its next query.
            let rows: usize = c.waiting.iter().map(|f| f.rows.changed.len()).sum();
            if c.waiting.len() >= MAX_WAITING || rows + f.rows.changed.len() > MAX_DELTA {
                c.waiting.clear();
            }
            c.waiting.push(f);
        }
        drop(tenants);
        self.settled.notify_waiters();
    }

    /// Brings the model up to `head` with the local commits it is told of, waiting (a bounded
    /// time) for those the reader already sees: the commit's task tells right after the
    /// database commits, but on a busy machine a query may read the new head first and would
    /// read the rows back instead.
    async fn catch_up_to(&self, tenant: &TenantId, head: i64, m: &mut Model) {
        let deadline = tokio::time::Instant::now() + AWAIT_TOLD;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let pending = lock(&self.tenants)
                .get(tenant)
                .is_some_and(|c| c.in_flight.iter().any(|last| *last <= head));
            if !pending || tokio::time::timeout_at(deadline, settled).await.is_err() {
                break;
            }
        }
        self.catch_up(tenant, m);
    }

    /// Applies the tenant's waiting commits that continue the model's revision, in revision
    /// order. One that cannot be applied in place (new or deleted instances) leaves the model
    /// where it is and stalls it: the next query catches up from the log.
    fn catch_up(&self, tenant: &TenantId, m: &mut Model) {
        let mut tenants = lock(&self.tenants);
        let Some(c) = tenants.get_mut(tenant) else {
            return;
        };
        let mut list = std::mem::take(&mut c.waiting);
        list.sort_unstable_by_key(|f| f.before);
        c.stalled |= !m.loaded_instances;
        for f in list {
            if c.stalled || f.last <= m.revision {
                continue;
            }
            if f.before != m.revision {
                c.waiting.push(f);
                continue;
            }
            if !f.rows.removed.is_empty() {
                c.stalled = true;
                continue;
            }
            match m.follow(f.rows.changed) {
                Ok(true) => m.revision = f.last,
                Ok(false) => c.stalled = true,
                Err(e) => {
                    tracing::warn!(error = %e, "read model could not follow a commit; it reloads");
                    m.loaded_instances = false;
                    c.stalled = true;
                }
            }
        }
        if c.stalled {
            c.waiting.clear();
        }
    }

    /// The model is at the log's head again: later commits are worth keeping.
    fn resume(&self, tenant: &TenantId) {
        if let Some(c) = lock(&self.tenants).get_mut(tenant) {
            c.stalled = false;
        }
    }
}

impl ReadModels {
    fn model(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<Model>> {
        let mut map = lock(&self.models);
        // Drop idle models (their lock is free and nobody holds them).
        map.retain(|t, m| {
            t == tenant
                || Arc::strong_count(m) > 1
                || m.try_lock()
                    .map(|g| g.used_at.is_some_and(|at| at.elapsed() < IDLE))
                    .unwrap_or(true)
        });
        lock(&self.told.tenants).retain(|t, c| map.contains_key(t) || !c.in_flight.is_empty());
        map.entry(tenant.clone()).or_default().clone()
    }
}

fn table(name: &str, rows: Vec<Vec<Value>>) -> Result<Arc<Table>, Error> {
    Table::from_rows(name, rows)
        .map(Arc::new)
        .map_err(Error::internal)
}

/// The engine's result as the API serves it (spec 4.2).
fn result_view(r: corral_query::QueryResult) -> QueryResult {
    QueryResult {
        status: match r.status {
            corral_query::Status::Success => QueryStatus::Success,
            corral_query::Status::SyntaxError => QueryStatus::SyntaxError,
            corral_query::Status::MissingParameters => QueryStatus::MissingParameters,
            corral_query::Status::EvaluationError => QueryStatus::EvaluationError,
        },
        count: r.count,
        data: QueryData {
            column_name: r.data.column_name,
            row: r
                .data
                .row
                .into_iter()
                .map(|row| QueryRow {
                    value: row
                        .value
                        .iter()
                        .map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
                        .collect(),
                })
                .collect(),
        },
        message: r.message,
    }
}

/// The `POST /query` service: per-tenant read models over the store and the clouds.
pub struct Query {
    pub(crate) store: corral_store::Store,
    pub(crate) clouds: Arc<crate::clouds::Clouds>,
    /// Per-tenant snapshots, also told of local commits (the store's commit observer).
    pub(crate) read_models: Arc<ReadModels>,
    /// `sql_statement_timeout`, `sql_row_limit`.
    pub(crate) query_limits: corral_query::Limits,
}

impl Query {
    /// `POST /query`: runs every statement of every query; errors are inside the results.
    pub async fn run(&self, ctx: &OpCtx, statements: Vec<QueryStatement>) -> Result<Vec<QueryResult>, Error> {
        let scope = ctx.require(Access::Read)?;
        let queries: Vec<(String, Vec<corral_query::Param>)> = statements
            .into_iter()
            .map(|q| {
                let params = q
                    .params
                    .into_iter()
                    .map(|p| corral_query::Param {
                        name: p.name,
                        index: p.index,
                        value: p.value,
                    })
                    .collect();
                (q.sql, params)
            })
            .collect();
        let db = self.snapshot(ctx, &scope).await?;
        let limits = self.query_limits.clone();
        let request_id = ctx.request_id().to_string();
        // The engine is CPU-bound and may run for up to the statement timeout: off the async
        // workers.
        let results = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (sql, params) in &queries {
                out.extend(
                    corral_query::run(&db, sql, params, &limits, env!("CARGO_PKG_VERSION"))
                        .into_iter()
                        .map(result_view),
                );
            }
            out
        })
        .await
        .map_err(Error::internal)?;
        tracing::debug!(request_id = %request_id, statements = results.len(), "query answered");
        Ok(results)
    }

    /// The tenant's current snapshot (see the module doc).
    async fn snapshot(&self, ctx: &OpCtx, scope: &TenantScope) -> Result<Database, Error> {
        let tenant = &scope;
        let model = self.read_models.model(tenant.id());
        let told = &self.read_models.told;
        let mut m = model.lock().await;
        m.used_at = Some(Instant::now());
        let head = self.store.tenant_revision(tenant).await?;
        if m.loaded_instances && head > m.revision {
            told.catch_up_to(tenant.id(), head, &mut m).await;
        }
        if m.loaded_instances && head > m.revision {
            let pruned = self.store.pruned_through().await?;
            let delta = if pruned > m.revision {
                None
            } else {
                self.store
                    .changed_objects(tenant, ObjectType::Instance, m.revision, head, MAX_DELTA)
                    .await?
            };
            match delta {
                None => m.loaded_instances = false,
                Some(ids) => {
                    let ids: Vec<InstanceId> = ids.into_iter().map(InstanceId::from_trusted).collect();
                    let rows = self.store.instances_by_ids(tenant, &ids).await?;
                    let found: std::collections::HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
                    let removed: Vec<Arc<str>> = ids
                        .iter()
                        .filter(|id| !found.contains(id.as_str()))
                        .map(|id| Arc::from(id.as_str()))
                        .collect();
                    drop(found);
                    if let Err(e) = m.apply(rows, removed) {
                        m.loaded_instances = false;
                        return Err(e);
                    }
                    m.revision = head;
                }
            }
        }
        if !m.loaded_instances {
            m.reload(&self.store, tenant).await?;
        }
        told.resume(tenant.id());
        let others_due = match m.others_at {
            None => true,
            Some(at) if at.elapsed() >= OTHERS_MAX_AGE => true,
            Some(_) if head > m.others_revision => {
                let changed = self
                    .store
                    .changed_besides(tenant, ObjectType::Instance, m.others_revision, head)
                    .await?;
                if !changed {
                    m.others_revision = head;
                }
                changed
            }
            Some(_) => false,
        };
        if others_due {
            self.load_others(ctx, scope, &mut m.db).await?;
            m.others_at = Some(Instant::now());
            m.others_revision = head;
        }
        Ok(m.db.clone())
    }

    /// The catalog tables (from the settings and drivers), images and Commissaire's tables.
    async fn load_others(&self, ctx: &OpCtx, scope: &TenantScope, db: &mut Database) -> Result<(), Error> {
        let tenant = &scope;
        let tenant_name = ctx.tenant().name.as_str();
        let now = rfc3339(now_ms());
        let mut t: HashMap<&'static str, Vec<Vec<Value>>> = HashMap::new();
        let mut push = |name: &'static str, row: Vec<Value>| t.entry(name).or_default().push(row);
        for c in self.clouds.visible(tenant_name) {
            let project = c.project_id(tenant.id());
            push("clouds", vec![s(c.id().as_str()), s(c.kind().as_str())]);
            push(
                "projects",
                vec![
                    s(project.as_str()),
                    s(tenant_name),
                    s(c.id().as_str()),
                    s(c.kind().as_str()),
                    s(now.as_str()),
                ],
            );
            for z in &c.config.options.availability_zones {
                push("availability_zones", vec![s(z.as_str()), s(project.as_str())]);
            }
            for f in c.flavors(tenant.id()) {
                let Flavor {
                    id,
                    name,
                    ram,
                    vcpus,
                    root_disk,
                    ephemeral_disk,
                    has_swap,
                    is_public,
                    notes,
                } = f;
                push(
                    "flavors",
                    vec![
                        s(id),
                        s(project.as_str()),
                        s(name),
                        Value::Int(ram),
                        Value::Int(vcpus),
                        Value::Int(root_disk),
                        Value::Int(ephemeral_disk),
                        Value::Bool(has_swap),
                        Value::Bool(is_public),
                        s(notes),
                    ],
                );
            }
            for n in c.networks(tenant.id()) {
                for sn in &n.subnets {
                    push(
                        "network_subnets",
                        vec![
                            s(sn.id.as_str()),
                            s(project.as_str()),
                            s(n.id.as_str()),
                            s(sn.name.as_str()),
                            s(sn.cidr.as_str()),
                            Value::Int(sn.protocol_version),
                            s(sn.gateway.as_str()),
                            Value::Bool(sn.is_dhcp_enabled),
                        ],
                    );
                }
                push(
                    "networks",
                    vec![
                        s(n.id),
                        s(project.as_str()),
                        s(n.name),
                        s(n.state),
                        Value::Bool(n.is_shared),
                    ],
                );
            }
            for k in c.keypairs() {
                push(
                    "keypairs",
                    vec![s(k.name), s(project.as_str()), s(k.fingerprint), s(k.public_key)],
                );
            }
            for e in c.metadata().entry {
                push(
                    "project_metadata",
                    vec![s(project.as_str()), s(e.key), s(e.value)],
                );
            }
            let q = c.quota();
            let n = |v: Option<i64>| v.map(Value::Int).unwrap_or(Value::Null);
            push(
                "project_quota",
                vec![
                    s(project.as_str()),
                    n(q.instances),
                    n(q.vcpus),
                    n(q.ram),
                    n(q.disk),
                    n(q.ips),
                    n(q.security_groups),
                    n(q.volumes),
                    n(q.keypairs),
                ],
            );
            for img in c.base_images() {
                let view = c.base_image_view(tenant.id(), &img);
                image_rows(&mut push, &view);
            }
        }
        for row in self.store.list_images(tenant).await? {
            let view = crate::instances::image_view(&row)?;
            image_rows(&mut push, &view);
        }
        // Streamed in batches: the raw rows (with their sealed keys) are never all in memory.
        let mut hosts = std::pin::pin!(self.store.stream_hosts(tenant, 1024));
        while let Some(batch) = futures_util::StreamExt::next(&mut hosts).await {
            for h in batch? {
                push(
                    "hosts",
                    vec![
                        s(h.address.as_str()),
                        s(h.status),
                        s(h.os),
                        Value::Int(h.cpus),
                        Value::Int(h.memory),
                        Value::Int(h.space),
                        opt_s(h.last_check.map(commissaire_time)),
                        s(h.source),
                        opt_s(h.cluster.map(ClusterName::into_string)),
                    ],
                );
            }
        }
        for c in self.store.all_clusters(tenant).await? {
            let view = crate::clusters::cluster_view(&c, false);
            for (i, (address, _)) in c.members.iter().enumerate() {
                push(
                    "cluster_hosts",
                    vec![s(c.name.as_str()), s(address.as_str()), Value::Int(i as i64 + 1)],
                );
            }
            push(
                "clusters",
                vec![
                    s(view.name),
                    s(view.status),
                    s(view.network),
                    s(view.container_manager),
                    Value::Int(view.hosts.total),
                    Value::Int(view.hosts.available),
                    Value::Int(view.hosts.unavailable),
                ],
            );
        }
        for o in self.store.all_operations(tenant).await? {
            push(
                "operations",
                vec![
                    s(o.cluster.as_str()),
                    s(o.kind.as_str()),
                    s(o.status.as_str()),
                    if o.kind == OperationKind::Deploy {
                        s(o.version)
                    } else {
                        Value::Null
                    },
                    s(commissaire_time(o.started_at)),
                    opt_s(o.finished_at.map(commissaire_time)),
                    Value::Int(o.done.len() as i64),
                    Value::Int(o.in_process.len() as i64),
                    Value::Int(o.failed.len() as i64),
                    s(o.message),
                ],
            );
        }
        for name in [
            "availability_zones",
            "clouds",
            "cluster_hosts",
            "clusters",
            "flavors",
            "hosts",
            "image_metadata",
            "images",
            "keypairs",
            "network_subnets",
            "networks",
            "operations",
            "project_images",
            "project_metadata",
            "project_quota",
            "projects",
        ] {
            let rows = t.remove(name).unwrap_or_default();
            db.set(name, table(name, rows)?).map_err(Error::internal)?;
        }
        Ok(())
    }
}

fn image_rows(push: &mut impl FnMut(&'static str, Vec<Value>), v: &Image) {
    push(
        "images",
        vec![
            s(v.id.as_str()),
            s(v.real_id.as_str()),
            s(v.name.as_str()),
            s(v.cloud_id.as_str()),
            s(v.cloud_type.as_str()),
            s(v.created.as_str()),
            s(v.timestamp.as_str()),
            s(v.state.as_str()),
            s(v.checksum.as_str()),
        ],
    );
    for e in &v.metadata.entry {
        push(
            "image_metadata",
            vec![s(v.id.as_str()), s(e.key.as_str()), s(e.value.as_str())],
        );
    }
    for p in &v.project_id {
        push("project_images", vec![s(p.as_str()), s(v.id.as_str())]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use corral_types::instances::InstanceState;
    use corral_types::{CloudId, CloudKind, ImageId, InstanceId};

    fn row(i: u64, state: InstanceState, updated: i64, meta: usize, nets: usize) -> InstanceRow {
        // Ids in no particular order, like the UUIDs of real launches.
        let id = format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let metadata = serde_json::json!({"entry": (0..meta)
            .map(|k| serde_json::json!({"key": format!("k{k}"), "value": format!("{id}-{k}")}))
            .collect::<Vec<_>>()});
        let networks: Vec<_> = (0..nets)
            .map(|k| serde_json::json!({"id": format!("net{k}"), "name": "n", "state": "ACTIVE", "isShared": false, "subnets": []}))
            .collect();
        InstanceRow {
            id: InstanceId::from_trusted(id.clone()),
            real_id: format!("mock-{id}"),
            cloud_id: CloudId::from_trusted("mock"),
            cloud_type: CloudKind::from_trusted("mock"),
            project_id: "p".into(),
            name: format!("vm-{i}"),
            flavor_id: "small".into(),
            flavor: "{}".into(),
            image_id: ImageId::from_trusted("img"),
            image: "{}".into(),
            image_real_id: "img".into(),
            vcpus: 1,
            ram: 1,
            disk: 1,
            keypair: String::new(),
            networks: serde_json::to_string(&networks).unwrap(),
            metadata: metadata.to_string(),
            availability_zone: "az1".into(),
            addresses: format!("10.0.0.{}", i % 250),
            fqdn: String::new(),
            state,
            created: 1_000,
            last_updated: updated,
        }
    }

    fn rows_of(m: &Model, name: &str) -> Vec<Vec<Value>> {
        let t = m.db.table(name).unwrap();
        (0..t.len()).map(|i| t.row(i)).collect()
    }

    /// The model after many incremental changes holds exactly what a fresh load of the final
    /// rows holds: same rows, same order, same side tables, positions by id right.
    #[test]
    fn incremental_refresh_equals_a_fresh_load() {
        let mut live: std::collections::BTreeMap<u64, InstanceRow> = Default::default();
        let mut m = Model::default();
        let mut b = Builder::new(0).unwrap();
        for i in 0..300 {
            let r = row(
                i,
                InstanceState::Launching,
                10,
                (i % 3) as usize,
                (i % 2) as usize,
            );
            b.push_fresh(Arc::from(r.id.as_str()), &r, &mut m.interner)
                .unwrap();
            live.insert(i, r);
        }
        b.finish(&mut m).unwrap();
        let mut t = 10;
        for round in 0..40u64 {
            t += 1;
            let mut changed = Vec::new();
            // State changes only (replaced in place) on most rounds ...
            for i in (round % 7..300).step_by(7) {
                let Some(old) = live.get(&i) else { continue };
                let state = if round % 2 == 0 {
                    InstanceState::Launched
                } else {
                    InstanceState::Rebooting
                };
                let r = row(
                    i,
                    state,
                    t,
                    old.metadata.matches("\"key\"").count(),
                    old.networks.matches("\"id\"").count(),
                );
                changed.push(r.clone());
                live.insert(i, r);
            }
            // ... new instances and changed metadata on some.
            if round % 5 == 0 {
                for i in 300 + round * 10..310 + round * 10 {
                    let r = row(i, InstanceState::Launching, t, (i % 4) as usize, 1);
                    changed.push(r.clone());
                    live.insert(i, r);
                }
            }
            if round % 8 == 3 {
                let r = row(5, InstanceState::Launched, t, 5, 3);
                changed.push(r.clone());
                live.insert(5, r);
            }
            // Rows seen again unchanged change nothing.
            changed.push(live[&1].clone());
            // Deletes on some rounds (an id the model never had is ignored).
            let mut removed: Vec<Arc<str>> = Vec::new();
            if round % 6 == 4 {
                for i in [round * 3 + 11, round * 3 + 12] {
                    if let Some(r) = live.remove(&i) {
                        removed.push(Arc::from(r.id.as_str()));
                        changed.retain(|c| c.id != r.id);
                    }
                }
                removed.push(Arc::from("never-seen"));
            }
            m.apply(changed, removed).unwrap();
        }
        let mut fresh = Model::default();
        let mut b = Builder::new(0).unwrap();
        for r in live.values() {
            b.push_fresh(Arc::from(r.id.as_str()), r, &mut fresh.interner)
                .unwrap();
        }
        b.finish(&mut fresh).unwrap();
        for name in ["instances", "instance_metadata", "instance_networks"] {
            assert_eq!(rows_of(&m, name), rows_of(&fresh, name), "{name}");
        }
        assert_eq!(m.index, fresh.index);
        assert_eq!(m.index.len(), live.len());
        let ids = rows_of(&m, "instances");
        let text = |v: &Value| match v {
            Value::Str(s) => s.to_string(),
            _ => panic!("id {v:?}"),
        };
        assert!(
            ids.windows(2).all(|w| text(&w[0][0]) < text(&w[1][0])),
            "sorted by id"
        );
        for (id, pos) in &m.index {
            assert_eq!(ids[*pos as usize][0], Value::Str(id.clone()));
        }
    }

    fn loaded(n: u64) -> Model {
        let mut m = Model::default();
        let mut b = Builder::new(0).unwrap();
        for i in 0..n {
            let r = row(i, InstanceState::Launched, 1_000, 1, 1);
            b.push_fresh(Arc::from(r.id.as_str()), &r, &mut m.interner)
                .unwrap();
        }
        b.finish(&mut m).unwrap();
        m.loaded_instances = true;
        m.revision = 10;
        m
    }

    fn states(m: &Model) -> Vec<String> {
        rows_of(m, "instances")
            .iter()
            .map(|r| match &r[8] {
                Value::Str(s) => s.to_string(),
                v => panic!("state {v:?}"),
            })
            .collect()
    }

    fn commit(rows: Vec<InstanceRow>) -> corral_store::InstancesCommitted {
        corral_store::InstancesCommitted {
            changed: rows,
            removed: Vec::new(),
        }
    }

    /// Local commits reach the model in revision order whatever order they are told in; one
    /// that adds an instance stops the model (the log catches it up), and everything after it
    /// waits instead of being applied over the hole.
    #[tokio::test]
    async fn models_follow_local_commits_in_order() {
        use corral_store::CommitObserver;
        let models = ReadModels::default();
        let tenant = TenantId::from_trusted("t1");
        let model = models.model(&tenant);
        *model.lock().await = loaded(20);
        let held = model.lock().await.db.clone();
        assert!(models.follows(&tenant));
        assert!(
            !models.follows(&TenantId::from_trusted("t2")),
            "no model, no rows kept"
        );

        // Told out of order: 12..15 before 10..12.
        models.committing(&tenant, 15);
        models.committing(&tenant, 12);
        let late = (5..8)
            .map(|i| row(i, InstanceState::Rebooting, 3_000, 1, 1))
            .collect();
        models.committed(&tenant, 12, 15, commit(late));
        let early = (0..5)
            .map(|i| row(i, InstanceState::Shutoff, 2_000, 1, 1))
            .collect();
        models.committed(&tenant, 10, 12, commit(early));
        let mut m = model.lock().await;
        models.told.catch_up(&tenant, &mut m);
        assert_eq!(m.revision, 15);
        let by_id: HashMap<String, String> = rows_of(&m, "instances")
            .iter()
            .zip(states(&m))
            .map(|(r, st)| (format!("{:?}", r[0]), st))
            .collect();
        for i in 0..8 {
            let id = format!(
                "{:?}",
                Value::str(row(i, InstanceState::Launched, 0, 0, 0).id.as_str())
            );
            let want = if i < 5 { "SHUTOFF" } else { "REBOOTING" };
            assert_eq!(by_id[&id].to_ascii_uppercase(), want, "instance {i}");
        }
        assert_eq!(
            states(&m)
                .iter()
                .filter(|s| s.eq_ignore_ascii_case("launched"))
                .count(),
            12
        );
        // The snapshot a query held is untouched.
        let held_states = (0..20).filter(|i| {
            matches!(held.table("instances").unwrap().cell(*i, 8), Value::Str(s) if s.eq_ignore_ascii_case("launched"))
        });
        assert_eq!(held_states.count(), 20);
        drop(m);

        // A launch cannot be followed in place: the model stays at 15, and a later commit
        // (16 → 17) is not applied over the gap.
        let new = vec![row(99, InstanceState::Launching, 4_000, 1, 1)];
        models.committing(&tenant, 16);
        models.committed(&tenant, 15, 16, commit(new));
        let after = vec![row(1, InstanceState::Launched, 5_000, 1, 1)];
        models.committing(&tenant, 17);
        models.committed(&tenant, 16, 17, commit(after));
        let mut m = model.lock().await;
        models.told.catch_up(&tenant, &mut m);
        assert_eq!(m.revision, 15);
        assert_eq!(m.index.len(), 20);
        let tenants = lock(&models.told.tenants);
        assert!(tenants[&tenant].in_flight.is_empty(), "every commit settled");
        // Stalled: no rows are kept until a query is at the log's head again.
        assert!(
            tenants[&tenant].waiting.is_empty(),
            "the commit after the gap is dropped"
        );
        drop(tenants);
        assert!(!models.follows(&tenant));
        models.told.resume(&tenant);
        assert!(models.follows(&tenant));
    }

    /// A query that already sees a commit waits for it to be told (or abandoned), and only
    /// for commits it sees.
    #[tokio::test]
    async fn queries_wait_for_commits_they_see() {
        use corral_store::CommitObserver;
        let models = Arc::new(ReadModels::default());
        let tenant = TenantId::from_trusted("t1");
        let _model = models.model(&tenant);
        models.committing(&tenant, 7);
        // Head 6 does not include the commit: no wait (a wait would take AWAIT_TOLD).
        let started = Instant::now();
        models.told.catch_up_to(&tenant, 6, &mut Model::default()).await;
        assert!(started.elapsed() < AWAIT_TOLD);
        let waiter = {
            let models = models.clone();
            let tenant = tenant.clone();
            tokio::spawn(async move { models.told.catch_up_to(&tenant, 7, &mut Model::default()).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits while the commit is in flight");
        models.abandoned(&tenant, 7);
        tokio::time::timeout(AWAIT_TOLD / 2, waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(lock(&models.told.tenants)[&tenant].in_flight.is_empty());
    }
}
