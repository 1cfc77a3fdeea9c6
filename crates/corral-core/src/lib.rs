//! Corral's application layer: every operation the API offers, as one function that takes the
//! operation context, checks authorization, applies the business rules and calls the store.
//!
//! [`Core`] is a struct of per-domain services (identity, namespaces, Commissaire,
//! Perspective, CDAP, query), each in its own module folder with its operations, rules and
//! job handlers, each holding only what it needs.
//!
//! Architecture invariant: no HTTP, no JSON bodies and no SQL text here. Handlers call exactly
//! one operation of one service; the tenant of every store call comes from the [`TenantScope`]
//! the operation's permission check produced.
//!
//! [`TenantScope`]: corral_types::TenantScope

mod cdap;
mod change_views;
pub mod commissaire;
pub mod crypto;
pub mod feed;
pub mod identity;
pub mod jobs;
mod namespaces;
pub mod perspective;
mod query;
mod sync;

// The domains' modules under their former paths, so `crate::hosts` and `corral_core::clouds`
// keep naming the same things.
pub(crate) use cdap::{apps, services, supervisor};
pub use commissaire::{address, hosts, watcher};
pub(crate) use commissaire::{clusters, named, networks, operations};
pub use identity::{auth, bootstrap, secrets};
pub use perspective::clouds;
pub(crate) use perspective::instances;

pub use instances::{BulkItem, BulkOutcome, LaunchItem, SimpleAction, SnapshotItem};

use std::time::Duration;

use corral_store::Store;
pub use corral_types::OpCtx;

use std::sync::Arc;

use corral_drivers::{ContainerManagerClient, HostTransport, ProcessRunner};

pub use services::{BatchOp, OTHER_PROGRAM_TYPES, ProxyTarget};
pub use supervisor::{Fallback, ServiceSettings, SupervisionSettings};

use crate::auth::Authenticator;
pub use crate::cdap::Cdap;
pub use crate::commissaire::Commissaire;
use crate::crypto::SecretBox;
pub use crate::feed::{Feed, FeedSettings};
use crate::hosts::{HostOps, HostSettings};
pub use crate::identity::Identity;
use crate::jobs::JobEngine;
pub use crate::namespaces::Namespaces;
pub use crate::perspective::Perspective;
pub use crate::query::Query;

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
    /// How long a console session lasts from its sign-in (`[console] session_ttl`).
    pub session_ttl: Duration,
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
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// The application: a struct of per-domain services, each owning what its operations need.
/// Handlers reach an operation through its service (`core.perspective().launch_instances(..)`);
/// the few operations that span domains (a tenant's or a namespace's delete stops its service
/// processes) are composed inside the service that owns them.
pub struct Core {
    store: Store,
    settings: Arc<CoreSettings>,
    secrets: Arc<SecretBox>,
    identity: Identity,
    namespaces: Namespaces,
    commissaire: Commissaire,
    perspective: Perspective,
    cdap: Arc<Cdap>,
    query: Query,
    feed: Feed,
    /// SHA-256 of the `metrics_token` setting: a read-only credential for `/metrics` alone
    /// (a Prometheus `bearer_token`), kept only hashed.
    metrics_token: Option<String>,
}

impl Core {
    pub fn new(store: Store, settings: CoreSettings, secrets: SecretBox) -> Core {
        store.set_change_views(Arc::new(change_views::CoreViews));
        let read_models = Arc::new(query::ReadModels::default());
        store.set_commit_observer(read_models.clone());
        let settings = Arc::new(settings);
        let secrets = Arc::new(secrets);
        let cdap = Arc::new(Cdap {
            store: store.clone(),
            settings: settings.clone(),
            services: Arc::new(
                cdap::supervisor::Supervisor::new(
                    Arc::new(corral_drivers::LocalProcessRunner),
                    ServiceSettings::default(),
                    None,
                )
                .with_change_log(store.clone()),
            ),
            route_cache: services::RouteCache::default(),
        });
        let clouds: Arc<clouds::Clouds> = Arc::default();
        Core {
            identity: Identity {
                store: store.clone(),
                settings: settings.clone(),
                auth: Authenticator::new(store.clone(), settings.auth_cache_ttl),
                secrets: secrets.clone(),
                cdap: cdap.clone(),
            },
            namespaces: Namespaces {
                store: store.clone(),
                cdap: cdap.clone(),
            },
            commissaire: Commissaire {
                store: store.clone(),
                settings: settings.clone(),
                secrets: secrets.clone(),
                hosts: None,
                jobs: None,
                watcher: Arc::default(),
            },
            perspective: Perspective {
                store: store.clone(),
                clouds: clouds.clone(),
                jobs: None,
                instance_timeout: Duration::from_secs(600),
            },
            query: Query {
                store: store.clone(),
                clouds,
                read_models,
                query_limits: corral_query::Limits::default(),
            },
            cdap,
            feed: feed::Feed::new(store.clone(), FeedSettings::default()),
            store,
            settings,
            secrets,
            metrics_token: None,
        }
    }

    /// Sets how the change feed behaves (retention, buffers, limits).
    pub fn with_feed(mut self, settings: FeedSettings) -> Core {
        self.feed = feed::Feed::new(self.store.clone(), settings);
        self
    }

    /// Accepts `token` as a scrape credential of `/metrics` (nothing else).
    pub fn with_metrics_token(mut self, token: Option<&str>) -> Core {
        self.metrics_token = token.map(secrets::hash);
        self
    }

    /// The store's connection pool for a scraper presenting the `metrics_token` (compared in
    /// constant time); `None` for any other bearer, which must then be an operator's key.
    pub fn scrape_pool_stats(&self, bearer: &str) -> Option<corral_store::PoolStats> {
        let want = self.metrics_token.as_deref()?;
        secrets::same_hash(&secrets::hash(bearer), want).then(|| self.store.pool_stats())
    }

    /// Sets the limits of every SQL statement (perspective 4.8).
    pub fn with_query_limits(mut self, limits: corral_query::Limits) -> Core {
        self.query.query_limits = limits;
        self
    }

    /// Adds the configured clouds and registers their jobs' handlers (after `with_hosts`,
    /// which brings the job engine).
    pub fn with_clouds(mut self, clouds: clouds::Clouds, transition_timeout: Duration) -> Core {
        let clouds = Arc::new(clouds);
        if let Some(engine) = &self.perspective.jobs {
            engine.register(
                instances::INSTANCE_JOB,
                Arc::new(instances::InstanceHandler {
                    clouds: clouds.clone(),
                    store: self.store.clone(),
                    timeout: transition_timeout,
                }),
            );
            engine.register(
                instances::BULK_JOB,
                Arc::new(instances::BulkHandler {
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
        self.perspective.clouds = clouds.clone();
        self.perspective.instance_timeout = transition_timeout;
        self.query.clouds = clouds;
        self
    }

    /// Sets how and where service processes run.
    pub fn with_services(mut self, runner: Arc<dyn ProcessRunner>, settings: ServiceSettings) -> Core {
        let cdap = Arc::new(Cdap {
            store: self.store.clone(),
            settings: self.settings.clone(),
            services: Arc::new(
                cdap::supervisor::Supervisor::new(
                    runner,
                    settings,
                    self.settings.service_command_dirs.clone(),
                )
                .with_change_log(self.store.clone()),
            ),
            route_cache: services::RouteCache::default(),
        });
        self.identity.cdap = cdap.clone();
        self.namespaces.cdap = cdap.clone();
        self.cdap = cdap;
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
        self.commissaire.hosts = Some(ops);
        self.commissaire.jobs = Some(engine.clone());
        self.perspective.jobs = Some(engine);
        self
    }

    /// Tenants, users, keys, tokens, profiles; credentials.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// CDAP namespaces.
    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// Hosts, clusters, operations, networks, container managers; Coopr's cluster RPC.
    pub fn commissaire(&self) -> &Commissaire {
        &self.commissaire
    }

    /// Clouds, instances, images.
    pub fn perspective(&self) -> &Perspective {
        &self.perspective
    }

    /// Applications, supervised services, the method proxy's routing.
    pub fn cdap(&self) -> &Cdap {
        &self.cdap
    }

    /// `POST /query`.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// The change feed (`GET /events`); its hub runs in [`Feed::run`].
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// The health watcher's loop; `None` without host machinery.
    pub fn watcher(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Option<impl Future<Output = ()> + use<>> {
        self.commissaire.watcher(shutdown)
    }

    /// Retries the clouds that could not start, every `interval`, until each works or
    /// `shutdown`; `None` when every cloud works.
    pub fn cloud_retrier(
        &self,
        interval: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Option<impl Future<Output = ()> + use<>> {
        let clouds = self.perspective.clouds.clone();
        if clouds.unavailable().is_empty() {
            return None;
        }
        Some(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.changed() => return,
                }
                if *shutdown.borrow() || clouds.retry_unavailable().await {
                    return;
                }
            }
        })
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

    pub fn authenticator(&self) -> &Authenticator {
        self.identity.authenticator()
    }

    /// `GET /ping`: can the store be reached?
    pub async fn ping(&self) -> bool {
        self.store.ping().await
    }
}
