//! `POST /query` (perspective.md 4): read-only SQL over the caller's tenant's inventory.
//!
//! Safety by construction: the engine (`corral-query`) runs over an in-memory snapshot that holds
//! only the caller's tenant's rows, built here from tenant-scoped store reads; it has no path to
//! the store, files, settings or another tenant at all, so no query text can reach them.
//!
//! Speed by a per-tenant **read model** kept current instead of rebuilt per query: instances (the
//! big table) are refreshed incrementally from the rows changed since the last look (an index on
//! `(tenant_id, last_updated)`), with a row count, checked once a second, to detect deletes (then
//! a full reload, streamed row by row); the smaller tables are reloaded when older than a second. A query on an unchanged inventory costs
//! two indexed reads and the engine's own work. Models unused for ten minutes are dropped, so
//! memory follows the active tenants, not the number of queries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_query::{Database, Table, Value};
use corral_store::InstanceRow;
use corral_types::perspective::{Flavor, Image, Metadata, Network};
use corral_types::query::{QueryData, QueryResult, QueryRow, QueryStatement, QueryStatus};
use corral_types::time::{commissaire_time, now_ms, rfc3339};
use corral_types::{Access, ClusterName, Error, InstanceId, OpCtx, OperationKind, TenantId, TenantScope};

/// How long the smaller tables are trusted.
const OTHERS_TTL: Duration = Duration::from_secs(1);
/// Models idle this long are dropped.
const IDLE: Duration = Duration::from_secs(600);
/// Instances changed up to this long before the newest one seen are read again: covers writers
/// whose clocks lag a little, and writes within the same millisecond.
const CLOCK_SLACK_MS: i64 = 2_000;

fn s(v: impl Into<Arc<str>>) -> Value {
    Value::Str(v.into())
}

fn opt_s(v: Option<String>) -> Value {
    v.map(s).unwrap_or(Value::Null)
}

/// One instance as rows of `instances`, `instance_metadata`, `instance_networks`.
struct InstanceRows {
    updated: i64,
    row: Vec<Value>,
    metadata: Vec<Vec<Value>>,
    networks: Vec<Vec<Value>>,
}

fn instance_rows(r: &InstanceRow) -> InstanceRows {
    let metadata: Metadata = serde_json::from_str(&r.metadata).unwrap_or_default();
    let networks: Vec<Network> = serde_json::from_str(&r.networks).unwrap_or_default();
    InstanceRows {
        updated: r.last_updated,
        row: vec![
            s(r.id.as_str()),
            s(r.real_id.as_str()),
            s(r.name.as_str()),
            s(r.cloud_id.as_str()),
            s(r.cloud_type.as_str()),
            s(r.project_id.as_str()),
            s(r.flavor_id.as_str()),
            s(r.image_id.as_str()),
            s(r.state.as_str()),
            s(rfc3339(r.last_updated)),
            s(rfc3339(r.created)),
            s(r.availability_zone.as_str()),
            s(r.addresses.as_str()),
            s(r.fqdn.as_str()),
        ],
        metadata: metadata
            .entry
            .into_iter()
            .map(|e| vec![s(r.id.as_str()), s(e.key), s(e.value)])
            .collect(),
        networks: networks
            .into_iter()
            .map(|n| vec![s(r.id.as_str()), s(n.id)])
            .collect(),
    }
}

/// One tenant's read model.
#[derive(Default)]
struct Model {
    db: Database,
    instances: HashMap<InstanceId, InstanceRows>,
    /// Newest `last_updated` among the instances seen.
    newest: i64,
    loaded_instances: bool,
    others_at: Option<Instant>,
    used_at: Option<Instant>,
}

/// Every tenant's read model.
#[derive(Default)]
pub(crate) struct ReadModels {
    models: std::sync::Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<Model>>>>,
}

impl ReadModels {
    fn model(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<Model>> {
        let mut map = self.models.lock().unwrap_or_else(|p| p.into_inner());
        // Drop idle models (their lock is free and nobody holds them).
        map.retain(|t, m| {
            t == tenant
                || Arc::strong_count(m) > 1
                || m.try_lock()
                    .map(|g| g.used_at.is_some_and(|at| at.elapsed() < IDLE))
                    .unwrap_or(true)
        });
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
    /// Per-tenant snapshots.
    pub(crate) read_models: ReadModels,
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
        let mut m = model.lock().await;
        m.used_at = Some(Instant::now());
        let mut changed = false;
        if m.loaded_instances {
            let since = m.newest.saturating_sub(CLOCK_SLACK_MS);
            for r in self.store.instances_updated_since(tenant, since).await? {
                m.newest = m.newest.max(r.last_updated);
                let fresh = instance_rows(&r);
                let same = m
                    .instances
                    .get(&r.id)
                    .is_some_and(|old| old.updated == fresh.updated && old.row == fresh.row);
                if !same {
                    m.instances.insert(r.id.clone(), fresh);
                    changed = true;
                }
            }
            // Deletes show in the count; it is checked with the other tables' refresh, so an
            // unchanged inventory costs one indexed range read per query.
            if m.others_at.is_none_or(|at| at.elapsed() >= OTHERS_TTL) {
                let count = usize::try_from(self.store.count_instances(tenant).await?).unwrap_or(0);
                if count != m.instances.len() {
                    m.loaded_instances = false;
                }
            }
        }
        if !m.loaded_instances {
            let mut all = HashMap::new();
            let mut newest = 0;
            self.store
                .visit_instances(tenant, |r| {
                    newest = newest.max(r.last_updated);
                    all.insert(r.id.clone(), instance_rows(&r));
                })
                .await?;
            m.newest = newest;
            m.instances = all;
            m.loaded_instances = true;
            changed = true;
        }
        if changed {
            let mut ids: Vec<&InstanceId> = m.instances.keys().collect();
            ids.sort_unstable();
            let mut rows = Vec::with_capacity(ids.len());
            let mut meta = Vec::new();
            let mut nets = Vec::new();
            for id in ids {
                if let Some(i) = m.instances.get(id) {
                    rows.push(i.row.clone());
                    meta.extend(i.metadata.iter().cloned());
                    nets.extend(i.networks.iter().cloned());
                }
            }
            let (t1, t2, t3) = (
                table("instances", rows)?,
                table("instance_metadata", meta)?,
                table("instance_networks", nets)?,
            );
            for (name, t) in [
                ("instances", t1),
                ("instance_metadata", t2),
                ("instance_networks", t3),
            ] {
                m.db.set(name, t).map_err(Error::internal)?;
            }
        }
        if m.others_at.is_none_or(|at| at.elapsed() >= OTHERS_TTL) {
            self.load_others(ctx, scope, &mut m.db).await?;
            m.others_at = Some(Instant::now());
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
        for h in self.store.list_hosts(tenant).await? {
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
