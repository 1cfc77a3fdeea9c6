//! Corral's application layer: every operation the API offers, as one function that takes the
//! operation context, checks authorization, applies the business rules and calls the store.
//!
//! Architecture invariant: no HTTP and no SQL text here. Handlers call exactly one function
//! of [`Core`]; the tenant of every store call comes from the [`OpCtx`].

mod cdap;
pub mod commissaire;
pub mod crypto;
pub mod identity;
pub mod jobs;
mod namespaces;
pub mod perspective;
mod query;

// The domains' modules under their former paths, so `crate::hosts` and `corral_core::clouds`
// keep naming the same things.
pub(crate) use cdap::{apps, services, supervisor};
pub(crate) use commissaire::{clusters, named, networks, operations};
pub use commissaire::{address, hosts, watcher};
pub use identity::{auth, bootstrap, secrets};
pub(crate) use perspective::instances;
pub use perspective::clouds;

pub use instances::{BulkItem, BulkOutcome, LaunchItem, SimpleAction, SnapshotItem};

use std::time::Duration;

use corral_store::Store;
pub use corral_types::OpCtx;

use std::sync::Arc;

use corral_drivers::{ContainerManagerClient, HostTransport, ProcessRunner};

pub use services::{BatchOp, OTHER_PROGRAM_TYPES, ProxyTarget};
pub use supervisor::{Fallback, ServiceSettings, SupervisionSettings};

use crate::auth::Authenticator;
use crate::crypto::SecretBox;
use crate::hosts::{HostOps, HostSettings};
use crate::jobs::JobEngine;

/// Settings the business rules depend on.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
    /// The most workers all tenants may hold together.
    pub worker_capacity: i64,
    /// How long a resolved credential is reused without asking the store.
    pub auth_cache_ttl: Duration,
    /// Where container manager certificate files live (server setting `cert_dir`); `None`
    /// refuses certificate options, so a client can never name a file elsewhere.
    pub cert_dir: Option<std::path::PathBuf>,
    /// With a value, a service's program must lie in one of these directories (server
    /// setting `service_command_dirs`, cdap-v3.md 1.1).
    pub service_command_dirs: Option<Vec<std::path::PathBuf>>,
    /// The most instances a service may ask for (server setting `service_max_instances`).
    pub service_max_instances: i64,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            token_ttl: Duration::from_secs(3600),
            worker_capacity: 1000,
            auth_cache_ttl: Duration::from_secs(5),
            cert_dir: None,
            service_command_dirs: None,
            service_max_instances: 100,
        }
    }
}

/// The application: cheap to share behind an `Arc`.
pub struct Core {
    store: Store,
    settings: CoreSettings,
    auth: Authenticator,
    secrets: Arc<SecretBox>,
    /// The host machinery (SSH transport, OS profiles); `None` until configured.
    hosts: Option<Arc<HostOps>>,
    jobs: Option<Arc<JobEngine>>,
    watcher: Arc<watcher::WatcherState>,
    /// The service processes this server runs.
    services: Arc<supervisor::Supervisor>,
    route_cache: services::RouteCache,
    /// The configured clouds (perspective 2).
    clouds: Arc<clouds::Clouds>,
    /// `instance_transition_timeout`: the deadline of every instance and image action.
    instance_timeout: std::time::Duration,
    /// Per-tenant snapshots for `POST /query`.
    read_models: query::ReadModels,
    /// `sql_statement_timeout`, `sql_row_limit`.
    query_limits: corral_query::Limits,
}

impl Core {
    pub fn new(store: Store, settings: CoreSettings, secrets: SecretBox) -> Core {
        let auth = Authenticator::new(store.clone(), settings.auth_cache_ttl);
        Core {
            store,
            settings,
            auth,
            secrets: Arc::new(secrets),
            hosts: None,
            jobs: None,
            watcher: Arc::default(),
            services: Arc::new(supervisor::Supervisor::new(
                Arc::new(corral_drivers::LocalProcessRunner),
                ServiceSettings::default(),
                None,
            )),
            route_cache: services::RouteCache::default(),
            clouds: Arc::default(),
            instance_timeout: std::time::Duration::from_secs(600),
            read_models: query::ReadModels::default(),
            query_limits: corral_query::Limits::default(),
        }
    }

    /// Sets the limits of every SQL statement (perspective 4.8).
    pub fn with_query_limits(mut self, limits: corral_query::Limits) -> Core {
        self.query_limits = limits;
        self
    }

    /// Adds the configured clouds and registers their jobs' handlers (after `with_hosts`,
    /// which brings the job engine).
    pub fn with_clouds(mut self, clouds: clouds::Clouds, transition_timeout: std::time::Duration) -> Core {
        let clouds = Arc::new(clouds);
        if let Some(engine) = &self.jobs {
            engine.register(
                instances::INSTANCE_JOB,
                Arc::new(instances::InstanceHandler {
                    clouds: clouds.clone(),
                    store: self.store.clone(),
                    timeout: transition_timeout,
                }),
            );
            engine.register(
                instances::IMAGE_JOB,
                Arc::new(instances::ImageHandler {
                    clouds: clouds.clone(),
                    store: self.store.clone(),
                }),
            );
        }
        self.clouds = clouds;
        self.instance_timeout = transition_timeout;
        self
    }

    /// Sets how and where service processes run.
    pub fn with_services(mut self, runner: Arc<dyn ProcessRunner>, settings: ServiceSettings) -> Core {
        self.services = Arc::new(supervisor::Supervisor::new(
            runner,
            settings,
            self.settings.service_command_dirs.clone(),
        ));
        self
    }

    /// Adds the job engine and the host machinery, registering the host jobs' handlers.
    pub fn with_hosts(
        mut self,
        engine: Arc<JobEngine>,
        transport: Arc<dyn HostTransport>,
        kube: Arc<dyn ContainerManagerClient>,
        settings: HostSettings,
    ) -> Core {
        let ops = Arc::new(HostOps {
            store: self.store.clone(),
            secrets: self.secrets.clone(),
            transport,
            kube,
            settings,
        });
        engine.register(
            hosts::INVESTIGATE,
            Arc::new(hosts::InvestigateHandler(ops.clone())),
        );
        engine.register(
            operations::COORDINATE,
            Arc::new(operations::CoordinateHandler(ops.clone())),
        );
        engine.register(
            operations::HOST_STEP,
            Arc::new(operations::HostStepHandler(ops.clone())),
        );
        self.hosts = Some(ops);
        self.jobs = Some(engine);
        self
    }

    /// The health watcher's loop (run it once per process; the singleton lease picks the one
    /// that works). `None` without host machinery.
    pub fn watcher(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Option<impl Future<Output = ()> + use<>> {
        let ops = self.hosts.clone()?;
        let owner = self
            .jobs
            .as_ref()
            .map(|j| j.owner().to_string())
            .unwrap_or_default();
        Some(watcher::run(ops, owner, self.watcher.clone(), shutdown))
    }

    /// `GET /api/v0/status` (commissaire-v0.md 5.15).
    pub async fn commissaire_status(
        &self,
        ctx: &OpCtx,
    ) -> Result<corral_types::commissaire::MachineryStatus, corral_types::Error> {
        use corral_types::commissaire::{MachineryStatus, StoreStatus, WorkerInfo, WorkerStatus};
        let scope = ctx.require(corral_types::Access::Read)?;
        if !self.store.ping().await {
            return Err(corral_types::Error::Unavailable("Storage is unavailable.".into()));
        }
        let (queued, running, watched) = self.store.host_machinery_counts(&scope).await?;
        let (errors, in_use) = self.watcher.for_tenant(scope.id());
        let up = if self.hosts.is_some() { "OK" } else { "FAILED" };
        Ok(MachineryStatus {
            investigator: WorkerStatus {
                info: WorkerInfo {
                    errors: Vec::new(),
                    in_use: running,
                    size: queued,
                },
                status: up.to_string(),
            },
            store: StoreStatus {
                status: "OK".to_string(),
            },
            watcher: WorkerStatus {
                info: WorkerInfo {
                    errors,
                    in_use,
                    size: watched,
                },
                status: up.to_string(),
            },
        })
    }

    /// Tells the job engine to look at the queue now.
    pub(crate) fn wake_jobs(&self) {
        if let Some(j) = &self.jobs {
            j.wake();
        }
    }

    /// Encrypts and decrypts secrets kept at rest.
    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    /// The store's connection pool, for `/metrics` (operators only).
    pub fn store_pool_stats(&self, ctx: &OpCtx) -> Result<corral_store::PoolStats, corral_types::Error> {
        ctx.require(corral_types::Access::Superadmin)?;
        Ok(self.store.pool_stats())
    }

    /// Closes the store's connections at shutdown; later calls fail as "store unavailable".
    pub async fn close(&self) {
        self.store.close().await;
    }

    pub fn settings(&self) -> &CoreSettings {
        &self.settings
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// `GET /ping`: can the store be reached?
    pub async fn ping(&self) -> bool {
        self.store.ping().await
    }
}
