//! Assembly of a running server: settings → store → core → bootstrap → API → listener.
//! Tests start it in-process on `127.0.0.1:0`; `corral serve` starts it and waits for a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use corral_api::proxy::ProxyClient;
use corral_api::serve::{Bound, serve, tls_config};
use corral_api::{AppState, AppStateParts, app, metrics_handle};
use corral_core::address::AddressPolicy;
use corral_core::bootstrap::{Bootstrap, validate_bootstrap_key};
use corral_core::clouds::{Cloud, Clouds};
use corral_core::crypto::SecretBox;
use corral_core::hosts::HostSettings;
use corral_core::jobs::{JobEngine, JobSettings};
use corral_core::{Core, CoreSettings};
use corral_core::{ServiceSettings, SupervisionSettings};
use corral_drivers::{
    CloudConfigError, CloudRegistry, DriverDefaults, Facts, HostTransport, KubeClient, LocalProcessRunner,
    RusshTransport, SimulatedTransport,
};
use corral_store::{Store, redact_url};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{DataDirPermissions, HostDriver, Settings};

/// A server that is serving.
pub struct Running {
    pub addr: SocketAddr,
    pub core: Arc<Core>,
    /// The assembly's own handle on the store, for operator tooling and the integration tests'
    /// job-engine checks; the API reaches data only through `core`.
    pub store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    jobs_stop: watch::Sender<bool>,
    jobs: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (at most `grace`), closes the store.
    pub async fn shutdown(mut self, grace: Duration) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Running jobs go back to the queue; another replica (or the next start) resumes them.
        let _ = self.jobs_stop.send(true);
        let _ = tokio::time::timeout(grace, &mut self.jobs).await;
        let result = match tokio::time::timeout(grace, &mut self.task).await {
            Ok(joined) => joined.context("server task failed")?.context("server failed"),
            Err(_) => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "in-flight requests did not finish in time"
                );
                self.task.abort();
                Ok(())
            }
        };
        // Service processes stop after the last proxied request; their runs stay active in
        // the store, and the next start of this server (same data dir) restores them.
        self.core.cdap().shutdown_services().await;
        self.core.close().await;
        result
    }
}

/// Opens the store, bootstraps it if empty, binds the listener and starts serving.
pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    if let Some(Err(e)) = settings.bootstrap_apikey.as_deref().map(validate_bootstrap_key) {
        bail!("refusing to start: {e} (bootstrap_apikey / CORRAL_BOOTSTRAP_KEY)");
    }
    // Before the store: a typo in a cloud's options refuses the start with nothing touched.
    let clouds = build_clouds(settings)?;
    create_private_dir(&settings.data_dir, settings.data_dir_permissions)?;
    let url = settings.database_url();
    precreate_sqlite_file(&url)?;
    let store = Store::open(&url, settings.database_max_connections)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", redact_url(&url)))?;
    tracing::info!(database = %redact_url(&url), backend = ?store.backend(), "store ready");
    let secrets = SecretBox::load_or_create(&settings.data_dir, settings.server_key.as_deref())
        .map_err(|e| anyhow::anyhow!("server key: {e}"))?;
    let store_for_jobs = store.clone();
    let store_handle = store.clone();
    let core = Core::new(
        store,
        CoreSettings {
            token_ttl: Duration::from_secs(settings.token_ttl),
            worker_capacity: settings.worker_capacity,
            auth_cache_ttl: Duration::from_secs(settings.auth_cache_ttl),
            cert_dir: settings.cert_dir.clone(),
            service_command_dirs: settings.service_command_dirs.clone(),
            service_max_instances: settings.service_max_instances,
            session_ttl: Duration::from_secs(settings.console.session_ttl),
        },
        secrets,
    );
    let core = core.with_services(Arc::new(LocalProcessRunner), service_settings(settings)?);
    let profiles = settings.os_profiles().map_err(anyhow::Error::msg)?;
    let policy = AddressPolicy::parse(&settings.host_allow).map_err(anyhow::Error::msg)?;
    let engine = Arc::new(JobEngine::new(
        store_for_jobs,
        JobSettings {
            lease: Duration::from_secs(settings.job_lease.max(3)),
            ..JobSettings::default()
        },
    ));
    let transport: Arc<dyn HostTransport> = match settings.host_driver {
        HostDriver::Ssh => Arc::new(RusshTransport::new()),
        HostDriver::Simulated => Arc::new(SimulatedTransport::new(
            Facts {
                os_id: "fedora".into(),
                ostree: false,
                cpus: 4,
                memory_kb: 8_000_000,
                space_kb: 100_000_000,
                hostname: "simulated".into(),
            },
            Duration::from_millis(200),
        )),
    };
    let host_settings = HostSettings {
        ssh_port: settings.ssh_port,
        connect_timeout: Duration::from_secs(settings.ssh_connect_timeout),
        bootstrap_timeout: Duration::from_secs(settings.bootstrap_timeout),
        step_timeout: Duration::from_secs(settings.host_step_timeout),
        restart_wait_timeout: Duration::from_secs(settings.restart_wait_timeout),
        watcher_interval: Duration::from_secs(settings.watcher_interval),
        profiles,
        policy,
        trust_forwarded_for: settings.trust_forwarded_for,
        flannel_etcd_endpoint: settings.flannel_etcd_endpoint.clone(),
        simulated: settings.host_driver == HostDriver::Simulated,
        cert_dir: settings.cert_dir.clone(),
    };
    let core = Arc::new(
        core.with_hosts(
            engine.clone(),
            transport,
            Arc::new(KubeClient::new()),
            host_settings,
        )
        .with_clouds(clouds, Duration::from_secs(settings.instance_transition_timeout))
        .with_metrics_token(settings.metrics_token.as_deref())
        .with_query_limits(corral_query::Limits {
            timeout: Duration::from_millis(settings.sql_statement_timeout),
            row_limit: settings.sql_row_limit,
        })
        .with_feed(feed_settings(settings)),
    );
    match core
        .identity()
        .bootstrap(&settings.data_dir, settings.bootstrap_apikey.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))?
    {
        Bootstrap::Created(path) => {
            tracing::info!(file = %path.display(), "first start: created tenant superadmin, user admin and its API key; the key is in this file");
        }
        Bootstrap::AlreadyDone => tracing::debug!("store already bootstrapped"),
    }
    // Before serving: runs a previous process of this server left active are closed and
    // the services it ran are started again (cdap-v3.md 1.4).
    if let Err(e) = core.cdap().recover_services().await {
        tracing::error!("cannot restore the services of the previous run: {e}");
    }
    core.perspective()
        .refresh_cloud_images(Duration::from_secs(10))
        .await;
    // VM states are reconciled in the background: a slow cloud must not delay serving.
    {
        let core = core.clone();
        tokio::spawn(async move {
            if let Err(e) = core.perspective().reconcile_instances().await {
                tracing::error!("reconciling instances with their clouds failed: {e}");
            }
        });
    }
    // Everything the start wrote (node id, keys, database files of an older version) is the
    // owner's only.
    make_files_private(&settings.data_dir)?;
    let tcp = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let bound = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => {
            let config = tls_config(cert, key).map_err(anyhow::Error::msg)?;
            Bound::tls(tcp, config)
        }
        _ => Bound::Tcp(tcp),
    };
    let addr = bound.local_addr()?;
    let state = AppState::new(AppStateParts {
        core: core.clone(),
        max_body_bytes: settings.max_body_bytes,
        body_read_timeout: Duration::from_secs(settings.server.body_read_timeout),
        metrics: metrics_handle(),
        proxy: ProxyClient::new(
            Duration::from_secs(settings.proxy_timeout),
            settings.proxy_max_body_bytes,
        ),
        tls: bound.is_tls(),
        console_enabled: settings.console.enabled,
    });
    let (tx, rx) = oneshot::channel::<()>();
    let scheme = if bound.is_tls() { "https" } else { "http" };
    let task = tokio::spawn(serve(bound, app(state), settings.server.limits(), async move {
        let _ = rx.await;
    }));
    let (jobs_stop, jobs_rx) = watch::channel(false);
    if let Some(watcher) = core.watcher(jobs_rx.clone()) {
        tokio::spawn(watcher);
    }
    // The change feed's hub and retention; at shutdown it ends every open stream.
    tokio::spawn(core.feed().run(jobs_rx.clone()));
    // The lease owner this process writes into `jobs.lease_owner`: an operator (or a test)
    // can tell which replica holds which job.
    let worker = engine.owner().to_string();
    let retry = Duration::from_millis(settings.cloud_retry_interval_ms.max(100));
    if let Some(retrier) = core.cloud_retrier(retry, jobs_rx.clone()) {
        tokio::spawn(retrier);
    }
    let jobs = tokio::spawn(engine.run(jobs_rx));
    tracing::info!(%addr, scheme, %worker, version = env!("CARGO_PKG_VERSION"), "corral is serving");
    Ok(Running {
        addr,
        core,
        store: store_handle,
        shutdown: Some(tx),
        task,
        jobs_stop,
        jobs,
    })
}

/// The change feed's settings (`[events]`).
fn feed_settings(settings: &Settings) -> corral_core::FeedSettings {
    let e = &settings.events;
    corral_core::FeedSettings {
        retention: Duration::from_secs(e.retention_hours.saturating_mul(3600)),
        retention_events: e.retention_events,
        buffer: e.buffer,
        max_watchers_per_tenant: e.max_watchers_per_tenant,
        heartbeat: Duration::from_secs(e.heartbeat_secs),
        ..corral_core::FeedSettings::default()
    }
}

/// How service processes run, from the settings. As root, a `service_user` is required
/// for services to run at all.
fn service_settings(settings: &Settings) -> anyhow::Result<ServiceSettings> {
    let run_as = settings
        .service_user
        .as_deref()
        .map(corral_drivers::lookup_user)
        .transpose()
        .map_err(|e| anyhow::anyhow!("service_user: {e}"))?;
    let refuse_as_root = run_as.is_none() && corral_drivers::running_as_root();
    if refuse_as_root {
        tracing::warn!("running as root without service_user: CDAP services will not be started");
    }
    if settings.service_work_dir.starts_with(&settings.data_dir) {
        bail!("service_work_dir must lie outside data_dir: services must not reach Corral's files");
    }
    let defaults = SupervisionSettings::default();
    let restart = Duration::from_millis(settings.service_restart_backoff_ms.max(1));
    Ok(ServiceSettings {
        node: node_id(&settings.data_dir)?,
        work_root: settings.service_work_dir.clone(),
        run_as,
        refuse_as_root,
        output_cap_bytes: settings.service_output_bytes,
        supervision: SupervisionSettings {
            first_interval: Duration::from_millis(settings.service_health_first_interval_ms),
            interval: Duration::from_millis(settings.service_health_interval_ms),
            backoff_initial: restart,
            backoff_max: defaults.backoff_max.max(restart),
            stop_grace: Duration::from_secs(settings.service_stop_grace),
            ..defaults
        },
        fallback: settings.router.userservice.fallback.strategy,
    })
}

/// A driver for every configured cloud, built by the driver registry from the cloud's type and
/// the driver's own options; an unknown type or bad options refuse the start, naming the cloud
/// (perspective 2.1). A cloud whose driver cannot work now (a missing program or directory)
/// starts unavailable, with the reason, and is retried in the background.
fn build_clouds(settings: &Settings) -> anyhow::Result<Clouds> {
    let registry = CloudRegistry::builtin(DriverDefaults {
        mock_delay: Duration::from_secs_f64(settings.mock_delay),
    });
    let mut clouds = Vec::new();
    for c in &settings.clouds {
        let options = serde_json::Value::Object(c.options.driver.clone());
        match registry.build(c.id.as_str(), c.kind.as_str(), &options) {
            Ok(driver) => clouds.push(Cloud::new(c.clone(), driver)),
            Err(CloudConfigError::Unavailable { message, .. }) => {
                tracing::error!(cloud = %c.id, "the cloud is unavailable, retrying it in the background: {message}");
                let (registry, id, kind) = (registry.clone(), c.id.to_string(), c.kind.to_string());
                let rebuild = move || {
                    registry.build(&id, &kind, &options).map_err(|e| match e {
                        CloudConfigError::Unavailable { message, .. } => message,
                        other => other.to_string(),
                    })
                };
                clouds.push(Cloud::unavailable(c.clone(), message, Arc::new(rebuild)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Clouds::new(clouds).map_err(|e| anyhow::anyhow!("clouds: {e}"))
}

/// This server's node id, kept in the data dir: the runs it supervises carry it, so a
/// restart recovers exactly its own services, whatever other replicas share the store.
fn node_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            write_private_file(&path, id.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
    }
}

/// Creates the data dir 0700, or checks an existing one: a data dir that group or others may
/// enter or read is refused, or fixed (`data_dir_permissions = "fix"`) with a warning.
fn create_private_dir(dir: &std::path::Path, policy: DataDirPermissions) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(dir).with_context(|| format!("cannot read data dir {}", dir.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match policy {
                DataDirPermissions::Refuse => bail!(
                    "refusing to start: data dir {} has mode {mode:04o} and is open to group or others; \
                     run `chmod 700 {}`, or set data_dir_permissions = \"fix\" to let Corral do it",
                    dir.display(),
                    dir.display()
                ),
                DataDirPermissions::Fix => {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                        .with_context(|| format!("cannot chmod data dir {}", dir.display()))?;
                    tracing::warn!(
                        dir = %dir.display(),
                        was = format!("{mode:04o}"),
                        "data dir was open to group or others; changed to 0700 (data_dir_permissions = \"fix\")"
                    );
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = policy;
    Ok(())
}

/// Writes a new file readable by its owner only, whatever the umask.
fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Creates a SQLite database file 0600 before SQLite does (which would use 0644 less the
/// umask); SQLite gives its `-wal` and `-shm` files the database file's mode.
fn precreate_sqlite_file(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(());
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') || std::path::Path::new(path).exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        // Created meanwhile (another replica): its mode is fixed by `make_files_private`.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A directory that does not exist yet: SQLite reports it when it opens the file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot create the database file {path}: {e}")),
    }
}

/// Makes every file under the data dir 0600 and every directory 0700 (files of an older
/// version, a database file created before this start). Symbolic links are not followed.
fn make_files_private(dir: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            let entries = std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                let mode = meta.permissions().mode() & 0o777;
                let want = if meta.is_dir() {
                    todo.push(path.clone());
                    0o700
                } else if meta.is_file() {
                    0o600
                } else {
                    continue;
                };
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(
                        &path,
                        std::fs::Permissions::from_mode((mode & !0o077) | (want & 0o600)),
                    )
                    .with_context(|| format!("cannot chmod {}", path.display()))?;
                    tracing::info!(file = %path.display(), "made private to the owner");
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own large error.
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Overrides;

    /// The clouds of a config file as `start` builds them: their ids, or the error that
    /// refuses the start.
    fn clouds_of(toml: &str) -> Result<Vec<String>, String> {
        let mut out = Err("not run".to_string());
        figment::Jail::expect_with(|jail| {
            jail.create_file("corral.toml", toml)?;
            out = Settings::load(Some(Path::new("corral.toml")), &Overrides::default()).and_then(|s| {
                build_clouds(&s)
                    .map(|c| c.all().map(|c| c.id().to_string()).collect())
                    .map_err(|e| e.to_string())
            });
            Ok(())
        });
        out
    }

    #[test]
    fn clouds_are_built_by_the_driver_registry() {
        let ok = "[[clouds]]\nid = \"m\"\ntype = \"mock\"\n[clouds.options]\ndelay_ms = 1\n\
                  fail = [\"rebootInstance\"]\navailability_zones = [\"a\"]\n\
                  [[clouds.options.flavors]]\nname = \"small\"\nvcpus = 1\nram = 512\n";
        assert_eq!(clouds_of(ok), Ok(vec!["m".to_string()]));
    }

    #[test]
    fn a_bad_cloud_refuses_the_start_naming_it() {
        let cloud = |kind: &str, options: &str| {
            clouds_of(&format!(
                "[[clouds]]\nid = \"ok\"\ntype = \"mock\"\n\
                 [[clouds]]\nid = \"east\"\ntype = \"{kind}\"\n[clouds.options]\n{options}\n"
            ))
        };
        let unknown =
            "(neither one every cloud has nor one of the mock driver's: delay_ms, fail, hang, images)";
        for (kind, options, error) in [
            (
                "openstack",
                "",
                "cloud 'east': no driver for cloud type 'openstack' (types with a driver: mock, qemu)"
                    .to_string(),
            ),
            (
                "mock",
                "fail = [\"explode\"]",
                "cloud 'east': options.fail: unknown operation type 'explode'".to_string(),
            ),
            // A typo in a driver's option and in one core reads are both reported.
            (
                "mock",
                "delay = 5",
                format!("cloud 'east': options.delay: unknown option {unknown}"),
            ),
            (
                "mock",
                "availability_zone = [\"a\"]",
                format!("cloud 'east': options.availability_zone: unknown option {unknown}"),
            ),
            (
                "qemu",
                "state_dir = \"/tmp/x\"",
                "cloud 'east': The qemu cloud needs the option 'image_dir'.".to_string(),
            ),
        ] {
            assert_eq!(cloud(kind, options), Err(error), "{kind} {options}");
        }
        // Core's own options are still checked when the file is read.
        let e = cloud(
            "mock",
            "[[clouds.options.flavors]]\nname = \"s\"\nvcpus = 1\nram = \"big\"\n",
        );
        assert!(
            e.as_ref()
                .is_err_and(|e| e.contains("clouds") && e.contains("ram")),
            "{e:?}"
        );
    }
}
