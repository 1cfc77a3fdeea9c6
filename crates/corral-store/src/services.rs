//! The durable side of CDAP services (cdap-v3.md 1.4, 4, 8): desired state, instance counts,
//! run records and route configs. Processes themselves live in core's supervisor.

use corral_types::{Error, ObjectType, TenantId, TenantScope, Verb};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Changed, NewChange, Store, db};

/// A change of a service's own settings (instance count, route config). A service is named
/// `app/service` in its namespace, across its versions; the view says which version.
fn service_change(ns: &str, app: &str, service: &str, view: serde_json::Value) -> NewChange {
    NewChange {
        verb: Verb::Updated,
        object_type: ObjectType::Service,
        object_id: format!("{app}/{service}"),
        namespace: ns.to_string(),
        view,
    }
}

/// One service of one version of an app, inside a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    pub namespace: String,
    pub app: String,
    pub version: String,
    pub service: String,
}

/// A run record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub run_id: String,
    pub node: String,
    /// Seconds since the epoch.
    pub start: i64,
    pub end: Option<i64>,
    pub status: String,
    pub message: String,
}

/// A service a server must run again at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStateRow {
    pub tenant: TenantId,
    pub service: ServiceRef,
    /// JSON object of strings. (Its instance count is read again when it starts.)
    pub runtime_args: String,
}

/// An active run found at a server's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRun {
    pub tenant: TenantId,
    pub service: ServiceRef,
    pub run: RunRow,
}

/// What [`Store::insert_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertRun {
    Inserted,
    /// The service already has an active run (this one was not stored).
    AlreadyActive,
    /// The version does not exist (deleted meanwhile).
    NoVersion,
}

/// A change of a run's record (see [`Store::update_run`]).
#[derive(Debug, Clone, Copy)]
pub struct RunUpdate<'a> {
    pub status: &'a str,
    /// Seconds since the epoch: the run ends.
    pub end: Option<i64>,
    pub message: &'a str,
    /// The service's desired state becomes stopped.
    pub stopped: bool,
}

/// Filters of `GET .../runs` (cdap-v3.md 4.7).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Statuses to keep; empty keeps all.
    pub statuses: Vec<&'static str>,
    pub start: i64,
    pub end: Option<i64>,
    pub limit: i64,
}

const RUN_COLUMNS: &str = "run_id, node, start_time, end_time, status, message";

fn run_row(r: &AnyRow, at: usize) -> Result<RunRow, sqlx::Error> {
    Ok(RunRow {
        run_id: r.try_get(at)?,
        node: r.try_get(at + 1)?,
        start: r.try_get(at + 2)?,
        end: r.try_get(at + 3)?,
        status: r.try_get(at + 4)?,
        message: r.try_get(at + 5)?,
    })
}

fn service_ref(r: &AnyRow, at: usize) -> Result<ServiceRef, sqlx::Error> {
    Ok(ServiceRef {
        namespace: r.try_get(at)?,
        app: r.try_get(at + 1)?,
        version: r.try_get(at + 2)?,
        service: r.try_get(at + 3)?,
    })
}

/// `WHERE` of one service's rows: binds $1 tenant, $2..$5 the reference.
const SERVICE_KEY: &str = "tenant_id = $1 AND namespace = $2 AND app = $3 AND version = $4 AND service = $5";

impl Store {
    /// Records a new run as `STARTING` and marks the service desired running on `node`, in one
    /// transaction. The partial unique index refuses a second active run, even one started
    /// by another replica at the same moment.
    pub async fn insert_run(
        &self,
        tenant: &TenantScope,
        s: &ServiceRef,
        run_id: &str,
        node: &str,
        now: i64,
        runtime_args: &str,
    ) -> Result<InsertRun, Error> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query(
            "SELECT 1 FROM app_versions WHERE tenant_id = $1 AND namespace = $2 AND app = $3 AND version = $4",
        )
        .bind(tenant.as_str())
        .bind(&s.namespace)
        .bind(&s.app)
        .bind(&s.version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .is_some();
        if !exists {
            return Ok(InsertRun::NoVersion);
        }
        let inserted = sqlx::query(
            "INSERT INTO service_runs (tenant_id, run_id, namespace, app, version, service, node, start_time, \
             end_time, status, message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, 'STARTING', '') \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(run_id)
        .bind(&s.namespace)
        .bind(&s.app)
        .bind(&s.version)
        .bind(&s.service)
        .bind(node)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if !inserted {
            return Ok(InsertRun::AlreadyActive);
        }
        sqlx::query(
            "INSERT INTO service_states (tenant_id, namespace, app, version, service, requested, desired, \
             runtime_args, node) VALUES ($1, $2, $3, $4, $5, NULL, 'running', $6, $7) \
             ON CONFLICT (tenant_id, namespace, app, version, service) \
             DO UPDATE SET desired = 'running', runtime_args = excluded.runtime_args, node = excluded.node",
        )
        .bind(tenant.as_str())
        .bind(&s.namespace)
        .bind(&s.app)
        .bind(&s.version)
        .bind(&s.service)
        .bind(runtime_args)
        .bind(node)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let run = RunRow {
            run_id: run_id.to_string(),
            node: node.to_string(),
            start: now,
            end: None,
            status: "STARTING".to_string(),
            message: String::new(),
        };
        let mut journal = self.journal(tenant);
        journal.row(Verb::Created, Changed::ServiceRun(s, &run));
        journal.commit(tx, tenant).await?;
        Ok(InsertRun::Inserted)
    }

    /// Moves a run to `u.status`; with `u.end`, the run ends (and, with `u.stopped`, the
    /// service's desired state becomes stopped in the same transaction). Only an active run
    /// changes: an ended run is never revived.
    pub async fn update_run(
        &self,
        tenant: &TenantScope,
        s: &ServiceRef,
        run_id: &str,
        u: RunUpdate<'_>,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(sqlf!(
            "UPDATE service_runs SET status = $3, end_time = $4, message = $5 \
             WHERE tenant_id = $1 AND run_id = $2 AND end_time IS NULL RETURNING {RUN_COLUMNS}"
        ))
        .bind(tenant.as_str())
        .bind(run_id)
        .bind(u.status)
        .bind(u.end)
        .bind(u.message)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(|r| run_row(r, 0)).transpose())
        .map_err(db)?;
        let mut journal = self.journal(tenant);
        if let Some(run) = &changed {
            journal.row(Verb::Updated, Changed::ServiceRun(s, run));
        }
        if u.stopped {
            sqlx::query(sqlf!(
                "UPDATE service_states SET desired = 'stopped' WHERE {SERVICE_KEY}"
            ))
            .bind(tenant.as_str())
            .bind(&s.namespace)
            .bind(&s.app)
            .bind(&s.version)
            .bind(&s.service)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        journal.commit(tx, tenant).await?;
        Ok(changed.is_some())
    }

    /// The service's active run, if any.
    pub async fn active_run(&self, tenant: &TenantScope, s: &ServiceRef) -> Result<Option<RunRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {RUN_COLUMNS} FROM service_runs WHERE {SERVICE_KEY} AND end_time IS NULL"
        ))
        .bind(tenant.as_str())
        .bind(&s.namespace)
        .bind(&s.app)
        .bind(&s.version)
        .bind(&s.service)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.as_ref().map(|r| run_row(r, 0)).transpose())
        .map_err(db)
    }

    /// The instance count set by `PUT .../instances`, if any.
    pub async fn requested_instances(
        &self,
        tenant: &TenantScope,
        s: &ServiceRef,
    ) -> Result<Option<i64>, Error> {
        sqlx::query(sqlf!("SELECT requested FROM service_states WHERE {SERVICE_KEY}"))
            .bind(tenant.as_str())
            .bind(&s.namespace)
            .bind(&s.app)
            .bind(&s.version)
            .bind(&s.service)
            .fetch_optional(&self.pool)
            .await
            .and_then(|r| r.map(|r| r.try_get::<Option<i64>, _>(0)).transpose())
            .map(Option::flatten)
            .map_err(db)
    }

    /// Stores the instance count of `PUT .../instances`; false when the version is gone.
    pub async fn set_requested_instances(
        &self,
        tenant: &TenantScope,
        s: &ServiceRef,
        n: i64,
    ) -> Result<bool, Error> {
        let q = sqlx::query(
            "INSERT INTO service_states (tenant_id, namespace, app, version, service, requested, desired, \
             runtime_args, node) SELECT $1, $2, $3, $4, $5, $6, 'stopped', '{}', '' FROM app_versions \
             WHERE tenant_id = $1 AND namespace = $2 AND app = $3 AND version = $4 \
             ON CONFLICT (tenant_id, namespace, app, version, service) DO UPDATE SET requested = excluded.requested",
        )
        .bind(tenant.as_str())
        .bind(&s.namespace)
        .bind(&s.app)
        .bind(&s.version)
        .bind(&s.service)
        .bind(n);
        let mut tx = self.begin_write().await?;
        let stored = q.execute(&mut *tx).await.map_err(db)?.rows_affected() == 1;
        let mut journal = self.journal(tenant);
        if stored {
            journal.change(service_change(
                &s.namespace,
                &s.app,
                &s.service,
                json!({"namespace": s.namespace, "app": s.app, "version": s.version, "service": s.service, "instances": n}),
            ));
        }
        journal.commit(tx, tenant).await?;
        Ok(stored)
    }

    /// Run records of a service, newest first.
    pub async fn list_runs(
        &self,
        tenant: &TenantScope,
        s: &ServiceRef,
        f: &RunFilter,
    ) -> Result<Vec<RunRow>, Error> {
        let statuses = if f.statuses.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = f.statuses.iter().map(|st| format!("'{st}'")).collect();
            format!(" AND status IN ({})", list.join(", "))
        };
        sqlx::query(sqlf!(
            "SELECT {RUN_COLUMNS} FROM service_runs WHERE {SERVICE_KEY} AND start_time >= $6 \
             AND start_time < $7{statuses} ORDER BY start_time DESC, run_id DESC LIMIT $8"
        ))
        .bind(tenant.as_str())
        .bind(&s.namespace)
        .bind(&s.app)
        .bind(&s.version)
        .bind(&s.service)
        .bind(f.start)
        .bind(f.end.unwrap_or(i64::MAX))
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(|r| run_row(r, 0)).collect())
        .map_err(db)
    }

    /// One run of a service.
    pub async fn get_run(
        &self,
        tenant: &TenantScope,
        s: &ServiceRef,
        run_id: &str,
    ) -> Result<Option<RunRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {RUN_COLUMNS} FROM service_runs WHERE {SERVICE_KEY} AND run_id = $6"
        ))
        .bind(tenant.as_str())
        .bind(&s.namespace)
        .bind(&s.app)
        .bind(&s.version)
        .bind(&s.service)
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.as_ref().map(|r| run_row(r, 0)).transpose())
        .map_err(db)
    }

    /// Active runs of a namespace (`app` narrows to one app, `version` to one version), for the
    /// deletes that must refuse or stop running services.
    pub async fn active_runs_in(
        &self,
        tenant: &TenantScope,
        ns: Option<&str>,
        app: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<(ServiceRef, RunRow)>, Error> {
        sqlx::query(sqlf!(
            "SELECT namespace, app, version, service, {RUN_COLUMNS} FROM service_runs \
             WHERE tenant_id = $1 AND end_time IS NULL AND ($2 IS NULL OR namespace = $2) \
             AND ($3 IS NULL OR app = $3) AND ($4 IS NULL OR version = $4) \
             ORDER BY {}, {}, {}",
            self.bytewise("app"),
            self.bytewise("service"),
            self.bytewise("version")
        ))
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .bind(version)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| Ok((service_ref(r, 0)?, run_row(r, 4)?)))
                .collect()
        })
        .map_err(db)
    }

    /// Every active run a server supervised (for its restart). Crosses tenants: only the
    /// server's own recovery calls it, never a request.
    pub async fn active_runs_of_node(&self, node: &str) -> Result<Vec<ActiveRun>, Error> {
        sqlx::query(sqlf!(
            "SELECT tenant_id, namespace, app, version, service, {RUN_COLUMNS} FROM service_runs \
             WHERE node = $1 AND end_time IS NULL"
        ))
        .bind(node)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok(ActiveRun {
                        tenant: TenantId::from_trusted(r.try_get::<String, _>(0)?),
                        service: service_ref(r, 1)?,
                        run: run_row(r, 5)?,
                    })
                })
                .collect()
        })
        .map_err(db)
    }

    /// Services a server must run again after its restart. Crosses tenants, as
    /// [`active_runs_of_node`](Self::active_runs_of_node).
    pub async fn desired_running_of_node(&self, node: &str) -> Result<Vec<ServiceStateRow>, Error> {
        sqlx::query(
            "SELECT tenant_id, namespace, app, version, service, runtime_args \
             FROM service_states WHERE node = $1 AND desired = 'running'",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok(ServiceStateRow {
                        tenant: TenantId::from_trusted(r.try_get::<String, _>(0)?),
                        service: service_ref(r, 1)?,
                        runtime_args: r.try_get(5)?,
                    })
                })
                .collect()
        })
        .map_err(db)
    }

    /// The route config of a service of an app, as stored JSON.
    pub async fn get_route_config(
        &self,
        tenant: &TenantScope,
        ns: &str,
        app: &str,
        service: &str,
    ) -> Result<Option<String>, Error> {
        sqlx::query(
            "SELECT config FROM route_configs WHERE tenant_id = $1 AND namespace = $2 AND app = $3 AND service = $4",
        )
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .bind(service)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.map(|r| r.try_get::<String, _>(0)).transpose())
        .map_err(db)
    }

    /// Replaces the route config, provided every named version still exists (checked in the
    /// same transaction as the write, so a concurrent version delete cannot leave a config
    /// naming a missing version). Answers the versions that are missing; empty when stored.
    pub async fn put_route_config(
        &self,
        tenant: &TenantScope,
        ns: &str,
        app: &str,
        service: &str,
        versions: &[String],
        config: &str,
    ) -> Result<Vec<String>, Error> {
        let mut tx = self.begin_write().await?;
        // Serialises with version writes and deletes of this app (they lock the app row too).
        let app_found =
            sqlx::query("UPDATE apps SET name = name WHERE tenant_id = $1 AND namespace = $2 AND name = $3")
                .bind(tenant.as_str())
                .bind(ns)
                .bind(app)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected()
                == 1;
        if !app_found {
            return Ok(versions.to_vec());
        }
        let present: Vec<String> = sqlx::query(
            "SELECT version FROM app_versions WHERE tenant_id = $1 AND namespace = $2 AND app = $3",
        )
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .fetch_all(&mut *tx)
        .await
        .and_then(|rows| rows.iter().map(|r| r.try_get::<String, _>(0)).collect())
        .map_err(db)?;
        let missing: Vec<String> = versions
            .iter()
            .filter(|v| !present.contains(v))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Ok(missing);
        }
        sqlx::query(
            "INSERT INTO route_configs (tenant_id, namespace, app, service, config) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, namespace, app, service) DO UPDATE SET config = excluded.config",
        )
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .bind(service)
        .bind(config)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let routes: serde_json::Value = serde_json::from_str(config).map_err(Error::internal)?;
        let mut journal = self.journal(tenant);
        journal.change(service_change(
            ns,
            app,
            service,
            json!({"namespace": ns, "app": app, "service": service, "routeConfig": routes}),
        ));
        journal.commit(tx, tenant).await?;
        Ok(Vec::new())
    }

    /// Deletes a route config; false when there was none.
    pub async fn delete_route_config(
        &self,
        tenant: &TenantScope,
        ns: &str,
        app: &str,
        service: &str,
    ) -> Result<bool, Error> {
        let q = sqlx::query(
            "DELETE FROM route_configs WHERE tenant_id = $1 AND namespace = $2 AND app = $3 AND service = $4",
        )
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .bind(service);
        let mut tx = self.begin_write().await?;
        let deleted = q.execute(&mut *tx).await.map_err(db)?.rows_affected() == 1;
        let mut journal = self.journal(tenant);
        if deleted {
            journal.change(service_change(
                ns,
                app,
                service,
                json!({"namespace": ns, "app": app, "service": service, "routeConfig": {}}),
            ));
        }
        journal.commit(tx, tenant).await?;
        Ok(deleted)
    }

    /// Every route config of an app: `(service, config JSON)`, sorted by service.
    pub async fn route_configs_of_app(
        &self,
        tenant: &TenantScope,
        ns: &str,
        app: &str,
    ) -> Result<Vec<(String, String)>, Error> {
        sqlx::query(sqlf!(
            "SELECT service, config FROM route_configs WHERE tenant_id = $1 AND namespace = $2 AND app = $3 \
             ORDER BY {}",
            self.bytewise("service")
        ))
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect())
        .map_err(db)
    }
}
