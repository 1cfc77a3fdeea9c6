//! CDAP service lifecycle, availability, routing between versions, route configs and the batch
//! calls (cdap-v3.md 1.4, 4.3-4.7, 5, 7, 8, 9). The processes themselves are the supervisor's
//! (`supervisor.rs`); this module keeps the store's records in step with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_store::{InsertRun, RunFilter, RunRow, RunUpdate, ServiceRef};
use corral_types::cdap::{
    BatchDone, BatchItem, InstanceCounts, Message, ProcessRecord, ProgramStatus, RouteConfigInput, RunRecord,
    RuntimeArgs, ServiceSpec, StartedRun,
};
use corral_types::ids::is_valid_name;
use corral_types::time::now_ms;
use corral_types::{Access, Error, OpCtx, Parsed, TenantScope};

use crate::apps::{is_valid_version, services_of};
use crate::cdap::Cdap;
use crate::supervisor::{AppServiceKey, Fallback, LiveRun, ServiceKey, SpawnFailure};

const STOPPED_TEXT: &str = "Service is stopped. Please start it.";
const NOT_ACCEPTING: &str = "Service is running but not accepting requests at this time.";
/// How long a route config read from the store is trusted by the router. Writes through this
/// server invalidate it at once; a write through another replica is seen within this time.
const ROUTE_CACHE_TTL: Duration = Duration::from_secs(1);
/// Program types of CDAP that Corral knows but does not implement (1), singular as in batch
/// bodies.
pub const OTHER_PROGRAM_TYPES: [&str; 5] = ["flow", "mapreduce", "spark", "worker", "workflow"];

fn now_s() -> i64 {
    now_ms() / 1000
}

fn already_running(app: &str, svc: &str) -> Error {
    Error::conflict(format!(
        "Program '{svc}' of application '{app}' is already running."
    ))
}

fn not_running(app: &str, svc: &str) -> Error {
    Error::conflict(format!("Program '{svc}' of application '{app}' is not running."))
}

pub(crate) fn run_record(r: RunRow) -> RunRecord {
    RunRecord {
        runid: r.run_id,
        start: r.start,
        end: r.end,
        status: r.status,
    }
}

/// A parsed route config: (version, percentage), sorted by version.
pub(crate) type RouteConfig = Vec<(String, u32)>;

/// A request's target chosen by the router (7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    pub version: String,
    /// The chosen instance's port, then the next healthy instance of the same version (tried
    /// when connecting to the first fails, 6.3).
    pub ports: Vec<u16>,
}

/// What a batch item asks (9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOp {
    Start,
    Stop,
    Status,
}

/// Route configs as recently read, per app service.
#[derive(Default)]
pub(crate) struct RouteCache(std::sync::Mutex<HashMap<AppServiceKey, CachedConfig>>);

/// When a route config was read, and what it was (`None`: no config).
type CachedConfig = (Instant, Option<Arc<RouteConfig>>);

impl RouteCache {
    fn get(&self, key: &AppServiceKey) -> Option<Option<Arc<RouteConfig>>> {
        let map = crate::sync::lock(&self.0);
        map.get(key)
            .filter(|(at, _)| at.elapsed() < ROUTE_CACHE_TTL)
            .map(|(_, c)| c.clone())
    }

    fn put(&self, key: AppServiceKey, config: Option<Arc<RouteConfig>>) {
        let mut map = crate::sync::lock(&self.0);
        if map.len() > 100_000 {
            map.retain(|_, (at, _)| at.elapsed() < ROUTE_CACHE_TTL);
        }
        map.insert(key, (Instant::now(), config));
    }

    fn forget(&self, key: &AppServiceKey) {
        crate::sync::lock(&self.0).remove(key);
    }
}

fn parse_stored_config(json: &str) -> Result<RouteConfig, Error> {
    let map: BTreeMap<String, u32> = serde_json::from_str(json).map_err(Error::internal)?;
    Ok(map.into_iter().collect())
}

impl Cdap {
    fn service_key(&self, scope: &TenantScope, ns: &str, app: &str, version: &str, svc: &str) -> ServiceKey {
        ServiceKey {
            tenant: scope.clone(),
            service: ServiceRef {
                namespace: ns.to_string(),
                app: app.to_string(),
                version: version.to_string(),
                service: svc.to_string(),
            },
        }
    }

    fn app_service_key(&self, scope: &TenantScope, ns: &str, app: &str, svc: &str) -> AppServiceKey {
        AppServiceKey {
            tenant: scope.clone(),
            namespace: ns.to_string(),
            app: app.to_string(),
            service: svc.to_string(),
        }
    }

    /// The service of version `v` (current when `None`), with the contract's 404s.
    async fn resolve_service(
        &self,
        scope: &TenantScope,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
    ) -> Result<(ServiceKey, ServiceSpec), Error> {
        let row = self.app_version(scope, ns, app, v).await?;
        let spec = services_of(&row)?
            .into_iter()
            .find(|s| s.name == svc)
            .ok_or_else(|| crate::apps::service_not_found(app, svc))?;
        Ok((self.service_key(scope, ns, app, &row.version, svc), spec))
    }

    /// Records and starts a run. Shared by the API and the recovery at server start.
    async fn start_run(
        &self,
        key: &ServiceKey,
        spec: ServiceSpec,
        args: BTreeMap<String, String>,
        request_id: &str,
    ) -> Result<String, Error> {
        let s = &key.service;
        let run_id = uuid::Uuid::new_v4().to_string();
        let node = self.services.settings.node.clone();
        let args_json = serde_json::to_string(&args).map_err(Error::internal)?;
        match self
            .store
            .insert_run(&key.tenant, s, &run_id, &node, now_s(), &args_json)
            .await?
        {
            InsertRun::Inserted => {}
            InsertRun::AlreadyActive => return Err(already_running(&s.app, &s.service)),
            InsertRun::NoVersion => {
                return Err(Error::not_found(format!(
                    "Version '{}' of application '{}' not found.",
                    s.version, s.app
                )));
            }
        }
        let count = self
            .store
            .requested_instances(&key.tenant, s)
            .await?
            .unwrap_or(spec.instances)
            .max(1);
        let count = usize::try_from(count).unwrap_or(1);
        match self
            .services
            .start(key.clone(), run_id.clone(), spec, args, count)
            .await
        {
            Ok(_) => {
                self.store
                    .update_run(
                        &key.tenant,
                        s,
                        &run_id,
                        RunUpdate {
                            status: "RUNNING",
                            end: None,
                            message: "",
                            stopped: false,
                        },
                    )
                    .await?;
                tracing::info!(request_id, run = %run_id, namespace = %s.namespace, app = %s.app, version = %s.version, service = %s.service, instances = count, "service started");
                Ok(run_id)
            }
            Err(SpawnFailure::First(msg)) => {
                self.store
                    .update_run(
                        &key.tenant,
                        s,
                        &run_id,
                        RunUpdate {
                            status: "FAILED",
                            end: Some(now_s()),
                            message: &msg,
                            stopped: true,
                        },
                    )
                    .await?;
                tracing::warn!(request_id, run = %run_id, service = %s.service, "service failed to start: {msg}");
                Err(Error::Failed(format!(
                    "Program '{}' of application '{}' could not be started: {msg}",
                    s.service, s.app
                )))
            }
        }
    }

    /// `POST .../services/{svc}/start` (4.3).
    pub async fn start_service(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
        args: Parsed<RuntimeArgs>,
    ) -> Result<StartedRun, Error> {
        let scope = ctx.require(Access::Write)?;
        let (key, spec) = self.resolve_service(&scope, ns, app, v, svc).await?;
        let RuntimeArgs(args) = args?;
        let lock = self.services.lifecycle_lock(&key);
        let _guard = lock.lock().await;
        if self.store.active_run(&key.tenant, &key.service).await?.is_some() {
            return Err(already_running(app, svc));
        }
        let runid = self.start_run(&key, spec, args, ctx.request_id()).await?;
        Ok(StartedRun { runid })
    }

    /// Stops the active run of a service (4.4); the run ends `KILLED`.
    async fn stop_key(&self, key: &ServiceKey, request_id: &str) -> Result<(), Error> {
        let s = &key.service;
        let lock = self.services.lifecycle_lock(key);
        let _guard = lock.lock().await;
        let Some(run) = self.store.active_run(&key.tenant, s).await? else {
            return Err(not_running(&s.app, &s.service));
        };
        if run.node != self.services.settings.node {
            return Err(Error::conflict(format!(
                "Program '{}' of application '{}' runs on another Corral server ({}); stop it there.",
                s.service, s.app, run.node
            )));
        }
        self.store
            .update_run(
                &key.tenant,
                s,
                &run.run_id,
                RunUpdate {
                    status: "STOPPING",
                    end: None,
                    message: "",
                    stopped: false,
                },
            )
            .await?;
        if let Some(live) = self.services.live(key) {
            self.services.stop_run(&live).await;
        }
        self.store
            .update_run(
                &key.tenant,
                s,
                &run.run_id,
                RunUpdate {
                    status: "KILLED",
                    end: Some(now_s()),
                    message: "",
                    stopped: true,
                },
            )
            .await?;
        tracing::info!(request_id, run = %run.run_id, namespace = %s.namespace, app = %s.app, version = %s.version, service = %s.service, "service stopped");
        Ok(())
    }

    /// `POST .../services/{svc}/stop` (4.4).
    pub async fn stop_service(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
    ) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        let (key, _) = self.resolve_service(&scope, ns, app, v, svc).await?;
        self.stop_key(&key, ctx.request_id()).await
    }

    /// Stops every running service of a namespace (its delete, 2.6) or, with `None`, of the
    /// whole tenant (the tenant's delete).
    pub(crate) async fn stop_services_in(
        &self,
        tenant: &TenantScope,
        ns: Option<&str>,
        request_id: &str,
    ) -> Result<(), Error> {
        for (s, _) in self.store.active_runs_in(tenant, ns, None, None).await? {
            let key = ServiceKey {
                tenant: tenant.clone(),
                service: s,
            };
            match self.stop_key(&key, request_id).await {
                Ok(()) => {}
                // Stopped meanwhile.
                Err(Error::Conflict(m)) if m.ends_with("is not running.") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The 409 of an app or version delete while one of its services runs (3.7, 3.8).
    pub(crate) async fn refuse_if_running(
        &self,
        scope: &TenantScope,
        ns: &str,
        app: &str,
        version: Option<&str>,
    ) -> Result<(), Error> {
        let active = self
            .store
            .active_runs_in(scope, Some(ns), Some(app), version)
            .await?;
        if active.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = active
            .iter()
            .map(|(s, _)| format!("{} ({})", s.service, s.version))
            .collect();
        Err(Error::conflict(format!(
            "The following services are still running: {}.",
            list.join(", ")
        )))
    }

    /// `GET .../services/{svc}/status` (4.5).
    pub async fn service_status(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
    ) -> Result<ProgramStatus, Error> {
        let scope = ctx.require(Access::Read)?;
        let (key, _) = self.resolve_service(&scope, ns, app, v, svc).await?;
        let status = self
            .store
            .active_run(&key.tenant, &key.service)
            .await?
            .map(|r| r.status)
            .unwrap_or_else(|| "STOPPED".into());
        Ok(ProgramStatus { status })
    }

    /// `GET .../services/{svc}/instances` (4.6).
    pub async fn service_instances(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
    ) -> Result<InstanceCounts, Error> {
        let scope = ctx.require(Access::Read)?;
        let (key, spec) = self.resolve_service(&scope, ns, app, v, svc).await?;
        let requested = self
            .store
            .requested_instances(&key.tenant, &key.service)
            .await?
            .unwrap_or(spec.instances);
        let (provisioned, healthy) = match self.services.live(&key) {
            Some(run) => {
                let all = run.instances();
                (
                    all.iter().filter(|i| i.is_alive()).count(),
                    all.iter().filter(|i| i.is_healthy()).count(),
                )
            }
            None => (0, 0),
        };
        Ok(InstanceCounts {
            requested,
            provisioned: provisioned as i64,
            healthy: healthy as i64,
        })
    }

    /// `PUT .../services/{svc}/instances` (4.6): scales a running service at once.
    pub async fn set_service_instances(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
        instances: Parsed<i64>,
    ) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        let (key, _) = self.resolve_service(&scope, ns, app, v, svc).await?;
        let max = self.settings.service_max_instances;
        let n = instances?;
        if n < 1 {
            return Err(Error::bad_request("Instance count should be greater than 0"));
        }
        if n > max {
            return Err(Error::bad_request(format!(
                "Instance count should be at most {max}."
            )));
        }
        let lock = self.services.lifecycle_lock(&key);
        let _guard = lock.lock().await;
        if !self
            .store
            .set_requested_instances(&key.tenant, &key.service, n)
            .await?
        {
            return Err(Error::not_found(format!(
                "Version '{}' of application '{app}' not found.",
                key.service.version
            )));
        }
        if let Some(run) = self.services.live(&key) {
            self.services.scale(&run, usize::try_from(n).unwrap_or(1)).await;
        }
        tracing::info!(request_id = %ctx.request_id(), namespace = %ns, app = %app, service = %svc, instances = n, "instances set");
        Ok(())
    }

    /// `GET .../services/{svc}/runs` (4.7). `query` holds the raw query parameters.
    pub async fn service_runs(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
        query: &HashMap<String, String>,
    ) -> Result<Vec<RunRecord>, Error> {
        let scope = ctx.require(Access::Read)?;
        let (key, _) = self.resolve_service(&scope, ns, app, v, svc).await?;
        let statuses: Vec<&'static str> = match query.get("status").map(|s| s.to_ascii_lowercase()).as_deref()
        {
            None | Some("all") => vec![],
            Some("running") => vec!["STARTING", "RUNNING", "STOPPING"],
            Some("completed") | Some("killed") => vec!["KILLED"],
            Some("failed") => vec!["FAILED"],
            Some("starting") => vec!["STARTING"],
            Some("stopping") => vec!["STOPPING"],
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "Invalid status '{other}': use running, completed, killed, failed or all."
                )));
            }
        };
        let int = |name: &str| -> Result<Option<i64>, Error> {
            query
                .get(name)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| {
                        Error::bad_request(format!("Invalid '{name}': '{v}' is not an integer."))
                    })
                })
                .transpose()
        };
        let start = int("start")?.unwrap_or(0);
        let end = int("end")?;
        let limit = int("limit")?.unwrap_or(100);
        if !(1..=10_000).contains(&limit) {
            return Err(Error::bad_request("Invalid 'limit': use 1 to 10000."));
        }
        let filter = RunFilter {
            statuses,
            start,
            end,
            limit,
        };
        Ok(self
            .store
            .list_runs(&key.tenant, &key.service, &filter)
            .await?
            .into_iter()
            .map(run_record)
            .collect())
    }

    /// `GET .../services/{svc}/runs/{run-id}` (4.7).
    pub async fn service_run(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
        run_id: &str,
    ) -> Result<RunRecord, Error> {
        let scope = ctx.require(Access::Read)?;
        let (key, _) = self.resolve_service(&scope, ns, app, v, svc).await?;
        self.store
            .get_run(&key.tenant, &key.service, run_id)
            .await?
            .map(run_record)
            .ok_or_else(|| Error::not_found(format!("Run '{run_id}' of service '{svc}' not found.")))
    }

    /// `GET .../services/{svc}/processes` (Corral addition): the live processes and the
    /// recent output of each.
    pub async fn service_processes(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
    ) -> Result<Vec<ProcessRecord>, Error> {
        let scope = ctx.require(Access::Read)?;
        let (key, _) = self.resolve_service(&scope, ns, app, v, svc).await?;
        let Some(run) = self.services.live(&key) else {
            return Ok(Vec::new());
        };
        Ok(run
            .instances()
            .iter()
            .map(|i| {
                let pid = i.pid.load(std::sync::atomic::Ordering::Acquire);
                let port = i.port.load(std::sync::atomic::Ordering::Acquire);
                ProcessRecord {
                    instance: i.index as i64,
                    pid: (pid != 0).then_some(pid),
                    port: (port != 0).then_some(port),
                    healthy: i.is_healthy(),
                    restarts: i.restarts.load(std::sync::atomic::Ordering::Relaxed),
                    output: i.output(),
                }
            })
            .collect())
    }

    /// The 404s of a route with no live run behind it: namespace, app, version (when pinned)
    /// and a service of that name in the version (pinned) or in some version (unversioned).
    async fn check_service_exists(
        &self,
        scope: &TenantScope,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
    ) -> Result<(), Error> {
        if v.is_some() {
            return self.resolve_service(scope, ns, app, v, svc).await.map(|_| ());
        }
        self.app_version(scope, ns, app, None).await?;
        if self.versions_with_service(scope, ns, app, svc).await?.is_empty() {
            return Err(crate::apps::service_not_found(app, svc));
        }
        Ok(())
    }

    /// The versions of an app that contain service `svc`.
    async fn versions_with_service(
        &self,
        scope: &TenantScope,
        ns: &str,
        app: &str,
        svc: &str,
    ) -> Result<Vec<String>, Error> {
        let tenant = &scope;
        let mut out = Vec::new();
        for version in self.store.list_app_versions(tenant, ns, app).await? {
            if let Some(row) = self
                .store
                .get_app_version(tenant, ns, app, Some(&version))
                .await?
                && services_of(&row)?.iter().any(|s| s.name == svc)
            {
                out.push(version);
            }
        }
        Ok(out)
    }

    /// The route config the router uses, through a short cache.
    async fn route_config_cached(&self, key: &AppServiceKey) -> Result<Option<Arc<RouteConfig>>, Error> {
        if let Some(c) = self.route_cache.get(key) {
            return Ok(c);
        }
        let config = self
            .store
            .get_route_config(&key.tenant, &key.namespace, &key.app, &key.service)
            .await?
            .map(|json| parse_stored_config(&json))
            .transpose()?
            .map(Arc::new);
        self.route_cache.put(key.clone(), config.clone());
        Ok(config)
    }

    /// Chooses the target of a method call (6, 7); `write` is true for methods other than
    /// GET, HEAD and OPTIONS. A live run answers from memory; the store is read only to tell
    /// a 404 from a stopped service, and for the route config (cached).
    pub async fn route_request(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
        write: bool,
    ) -> Result<ProxyTarget, Error> {
        let scope = ctx.require(if write { Access::Write } else { Access::Read })?;
        let target = |run: &LiveRun| {
            let ports: Vec<u16> = run.healthy_ports().into_iter().take(2).collect();
            if ports.is_empty() {
                return Err(Error::Unavailable(NOT_ACCEPTING.into()));
            }
            Ok(ProxyTarget {
                version: run.key.service.version.clone(),
                ports,
            })
        };
        if let Some(v) = v {
            let key = self.service_key(&scope, ns, app, v, svc);
            let Some(run) = self.services.live(&key).filter(|r| !r.is_stopping()) else {
                self.check_service_exists(&scope, ns, app, Some(v), svc).await?;
                return Err(Error::Unavailable(STOPPED_TEXT.into()));
            };
            return target(&run);
        }
        let akey = self.app_service_key(&scope, ns, app, svc);
        let live: Vec<Arc<LiveRun>> = self
            .services
            .live_versions(&akey)
            .into_values()
            .filter(|r| !r.is_stopping())
            .collect();
        if live.is_empty() {
            self.check_service_exists(&scope, ns, app, None, svc).await?;
            return Err(Error::Unavailable(STOPPED_TEXT.into()));
        }
        // Candidates (7.1) with their healthy counts, sorted by version (the map's order).
        let candidates: Vec<(Arc<LiveRun>, u64)> = live
            .into_iter()
            .map(|r| {
                let n = r.healthy_count() as u64;
                (r, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let (Some(first), Some(last)) = (candidates.first(), candidates.last()) else {
            return Err(Error::Unavailable(NOT_ACCEPTING.into()));
        };
        // Each candidate's weight (7.2, 7.3): its percentage, or (random fallback) its healthy
        // count, so that instances are picked uniformly.
        let weights: Vec<u64> = match self.route_config_cached(&akey).await? {
            Some(config) => candidates
                .iter()
                .map(|(r, _)| {
                    config
                        .iter()
                        .find(|(v, _)| *v == r.key.service.version)
                        .map_or(0, |(_, w)| u64::from(*w))
                })
                .collect(),
            None => match self.services.settings.fallback {
                Fallback::Drop => return Err(Error::Unavailable(NOT_ACCEPTING.into())),
                Fallback::Smallest => return target(&first.0),
                Fallback::Largest => return target(&last.0),
                Fallback::Random => candidates.iter().map(|(_, n)| *n).collect(),
            },
        };
        match self.services.pick_weighted(&weights) {
            Some(at) => target(&candidates[at].0),
            None => Err(Error::Unavailable(NOT_ACCEPTING.into())),
        }
    }

    /// `GET .../services/{svc}/available` (5.1).
    pub async fn service_available(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
    ) -> Result<Message, Error> {
        self.route_request(ctx, ns, app, v, svc, false).await?;
        Ok(Message {
            message: "Service is available to accept requests.".into(),
        })
    }

    /// The checks every route config endpoint starts with (8.1 check 1).
    async fn route_config_scope(
        &self,
        scope: &TenantScope,
        ns: &str,
        app: &str,
        svc: &str,
    ) -> Result<Vec<String>, Error> {
        self.app_version(scope, ns, app, None).await?;
        let versions = self.versions_with_service(scope, ns, app, svc).await?;
        if versions.is_empty() {
            return Err(crate::apps::service_not_found(app, svc));
        }
        Ok(versions)
    }

    /// `GET .../services/{svc}/routeconfig` (8.2).
    pub async fn get_route_config(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        svc: &str,
    ) -> Result<BTreeMap<String, u32>, Error> {
        let scope = ctx.require(Access::Read)?;
        self.route_config_scope(&scope, ns, app, svc).await?;
        Ok(self
            .store
            .get_route_config(&scope, ns, app, svc)
            .await?
            .map(|json| parse_stored_config(&json))
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .collect())
    }

    /// `PUT .../services/{svc}/routeconfig` (8.1), checks in the contract's order.
    pub async fn put_route_config(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        svc: &str,
        config: Parsed<RouteConfigInput>,
    ) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        let with_service = self.route_config_scope(&scope, ns, app, svc).await?;
        let RouteConfigInput(config) = config?;
        let missing: Vec<String> = config
            .keys()
            .filter(|v| !with_service.contains(v))
            .cloned()
            .collect();
        let missing_text = |missing: &[String]| {
            let names: Vec<String> = missing.iter().map(|v| format!("{app}@{v}")).collect();
            Error::bad_request(format!(
                "Route config contains versions that do not exist: {}.",
                names.join(", ")
            ))
        };
        if !missing.is_empty() {
            return Err(missing_text(&missing));
        }
        if config.values().sum::<u32>() != 100 {
            return Err(Error::bad_request("Route Percentage needs to add up to 100."));
        }
        let versions: Vec<String> = config.keys().cloned().collect();
        let json = serde_json::to_string(&config).map_err(Error::internal)?;
        let missing = self
            .store
            .put_route_config(&scope, ns, app, svc, &versions, &json)
            .await?;
        if !missing.is_empty() {
            // A version was deleted between the checks and the write.
            return Err(missing_text(&missing));
        }
        self.route_cache
            .forget(&self.app_service_key(&scope, ns, app, svc));
        tracing::info!(request_id = %ctx.request_id(), namespace = %ns, app = %app, service = %svc, config = %json, "route config stored");
        Ok(())
    }

    /// `DELETE .../services/{svc}/routeconfig` (8.3).
    pub async fn delete_route_config(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        svc: &str,
    ) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        self.route_config_scope(&scope, ns, app, svc).await?;
        if !self.store.delete_route_config(&scope, ns, app, svc).await? {
            return Err(Error::not_found(format!(
                "Route config for service '{svc}' of application '{app}' not found."
            )));
        }
        self.route_cache
            .forget(&self.app_service_key(&scope, ns, app, svc));
        Ok(())
    }

    /// The 409 of a version delete while a route config names it (3.8).
    pub(crate) async fn refuse_if_routed(
        &self,
        scope: &TenantScope,
        ns: &str,
        app: &str,
        version: &str,
    ) -> Result<(), Error> {
        for (svc, json) in self.store.route_configs_of_app(scope, ns, app).await? {
            if parse_stored_config(&json)?.iter().any(|(v, _)| v == version) {
                return Err(Error::conflict(format!(
                    "Version '{version}' is referenced by the route config of service '{svc}'."
                )));
            }
        }
        Ok(())
    }

    /// `POST /v3/namespaces/{ns}/{start,stop,status}` (9): one outcome per item, in order.
    pub async fn batch(
        &self,
        ctx: &OpCtx,
        ns: &str,
        op: BatchOp,
        items: Parsed<Vec<BatchItem>>,
    ) -> Result<Vec<Result<BatchDone, Error>>, Error> {
        let scope = ctx.require(if op == BatchOp::Status {
            Access::Read
        } else {
            Access::Write
        })?;
        self.require_namespace(&scope, ns).await?;
        let mut out = Vec::new();
        for item in items? {
            let result = self.batch_item(ctx, ns, op, item).await;
            // The contract's per-item text for an unknown app or service.
            out.push(result.map_err(|e| match e {
                Error::NotFound(_) => Error::not_found("Program not found"),
                other => other,
            }));
        }
        Ok(out)
    }

    async fn batch_item(
        &self,
        ctx: &OpCtx,
        ns: &str,
        op: BatchOp,
        item: BatchItem,
    ) -> Result<BatchDone, Error> {
        let BatchItem {
            app_id: app,
            program_type: kind,
            program_id: svc,
            version,
            bad_version,
            runtime_args,
        } = item;
        let kind_lc = kind.to_ascii_lowercase();
        if OTHER_PROGRAM_TYPES.contains(&kind_lc.as_str()) {
            return Err(Error::NotImplemented(format!(
                "Program type '{kind}' is not supported by Corral."
            )));
        }
        if kind_lc != "service" {
            return Err(Error::bad_request(format!("Invalid program type '{kind}'.")));
        }
        let version = version.as_deref();
        if bad_version || version.is_some_and(|v| !is_valid_version(v)) {
            return Err(Error::bad_request(format!(
                "Invalid version '{}'.",
                version.unwrap_or_default()
            )));
        }
        if !is_valid_name(&app) || !is_valid_name(&svc) {
            return Err(Error::not_found("Program not found"));
        }
        match op {
            BatchOp::Start => {
                let args = runtime_args.unwrap_or_else(|| Ok(RuntimeArgs::default()));
                let run = self.start_service(ctx, ns, &app, version, &svc, args).await?;
                Ok(BatchDone::Started { runid: run.runid })
            }
            BatchOp::Stop => {
                self.stop_service(ctx, ns, &app, version, &svc).await?;
                Ok(BatchDone::Stopped)
            }
            BatchOp::Status => {
                let st = self.service_status(ctx, ns, &app, version, &svc).await?;
                Ok(BatchDone::Status { status: st.status })
            }
        }
    }

    /// At server start: closes the runs a previous server process left active (killing any
    /// process of theirs still alive) as `FAILED`, then starts again every service whose
    /// desired state is running (1.4). Only this server's own runs (its node id) are touched.
    pub async fn recover_services(&self) -> Result<(), Error> {
        let node = self.services.settings.node.clone();
        for active in self.store.active_runs_of_node(&node).await? {
            let killed = corral_drivers::kill_processes_with_env("CORRAL_RUN_ID", &active.run.run_id);
            self.store
                .update_run(
                    &TenantScope::background(active.tenant.clone()),
                    &active.service,
                    &active.run.run_id,
                    RunUpdate {
                        status: "FAILED",
                        end: Some(now_s()),
                        message: "The server supervising this run ended without stopping it.",
                        stopped: false,
                    },
                )
                .await?;
            tracing::warn!(run = %active.run.run_id, service = %active.service.service, leftover_processes_killed = killed, "closed a run left active by a previous server process");
        }
        for state in self.store.desired_running_of_node(&node).await? {
            let s = &state.service;
            let spec = self
                .store
                .get_app_version(
                    &TenantScope::background(state.tenant.clone()),
                    &s.namespace,
                    &s.app,
                    Some(&s.version),
                )
                .await?
                .map(|row| services_of(&row))
                .transpose()?
                .and_then(|all| all.into_iter().find(|x| x.name == s.service));
            let Some(spec) = spec else {
                continue;
            };
            let args: BTreeMap<String, String> =
                serde_json::from_str(&state.runtime_args).unwrap_or_default();
            let key = ServiceKey {
                tenant: TenantScope::background(state.tenant.clone()),
                service: s.clone(),
            };
            let lock = self.services.lifecycle_lock(&key);
            let _guard = lock.lock().await;
            match self.start_run(&key, spec, args, "recovery").await {
                Ok(run) => {
                    tracing::info!(run = %run, service = %s.service, app = %s.app, "service started again after a server restart")
                }
                Err(e) => {
                    tracing::warn!(service = %s.service, app = %s.app, "cannot start the service again: {e}")
                }
            }
        }
        Ok(())
    }

    /// Stops every service process of this server, leaving the runs active in the store so
    /// the next start restores them (graceful shutdown).
    pub async fn shutdown_services(&self) {
        self.services.shutdown().await;
    }
}
