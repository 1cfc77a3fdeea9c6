//! Server settings: built-in defaults, then the TOML file of `--config`, then `CORRAL_*`
//! environment variables, then command-line flags; later sources win.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use corral_core::hosts::{OsProfile, builtin_profiles};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event.
    Json,
}

/// Every server setting. Each can be set in the config file by its name, or in the
/// environment as `CORRAL_<NAME>` (upper case).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address and port to listen on.
    pub listen: String,
    /// Shortcut for the port of `listen` (the contract's `port` setting).
    pub port: Option<u16>,
    /// Where Corral keeps its state: the SQLite database, the bootstrap key, server keys.
    pub data_dir: PathBuf,
    /// `sqlite://FILE` or `postgres://...`; default: `DATA_DIR/corral.db`.
    pub database_url: Option<String>,
    /// Most connections in the database pool.
    pub database_max_connections: u32,
    /// PEM certificate chain; with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    pub log_format: LogFormat,
    /// A tracing filter (`info`, `corral=debug,sqlx=warn`, ...).
    pub log: String,
    /// The first superadmin API key (env `CORRAL_BOOTSTRAP_KEY`); at least 32 characters.
    pub bootstrap_apikey: Option<String>,
    /// Base64 of the 32-byte key that encrypts secrets at rest (host SSH keys, container
    /// manager tokens); default: `DATA_DIR/server.key`, created on first start.
    pub server_key: Option<String>,
    /// Access token lifetime, seconds.
    pub token_ttl: u64,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Sum of all tenants' workers may not pass this.
    pub worker_capacity: i64,
    /// Seconds a resolved credential is reused before the store is asked again.
    pub auth_cache_ttl: u64,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    pub shutdown_grace: u64,
    /// The directory container manager certificate files are read from; clients name files
    /// inside it only. Unset: certificate options are refused (commissaire-v0.md 2.6).
    pub cert_dir: Option<PathBuf>,
    /// How Corral reaches hosts: `ssh` (real), or `simulated` for demos and scale tests.
    pub host_driver: HostDriver,
    /// TCP port of the hosts' SSH servers.
    pub ssh_port: u16,
    /// Seconds to connect and authenticate to a host.
    pub ssh_connect_timeout: u64,
    /// Seconds from registration until an unfinished investigation and bootstrap fails.
    pub bootstrap_timeout: u64,
    /// Seconds one host step of a rolling operation may take.
    pub host_step_timeout: u64,
    /// Seconds a rolling restart waits for a host to go away and come back.
    pub restart_wait_timeout: u64,
    /// Seconds between two health checks of a host.
    pub watcher_interval: u64,
    /// Networks (CIDR) and DNS suffixes (`.example.com`) hosts may have; empty: any.
    pub host_allow: Vec<String>,
    /// Take a self-registering host's address from `X-Forwarded-For` (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// The etcd endpoint flannel uses on `flannel_etcd` networks (written by the bootstrap).
    pub flannel_etcd_endpoint: Option<String>,
    /// OS profiles: override commands of the built-in ones, or add profiles (spec 6.5).
    pub os_profiles: BTreeMap<String, OsProfilePatch>,
    /// Seconds a job lease lasts without a heartbeat; a dead worker's jobs resume after it.
    pub job_lease: u64,
    /// Directories service programs must lie in (cdap-v3.md 1.1); unset: any executable.
    pub service_command_dirs: Option<Vec<PathBuf>>,
    /// The most instances one service may ask for.
    pub service_max_instances: i64,
    /// The OS user (name, or `uid:gid`) service processes run as. Required when Corral runs
    /// as root: services are refused rather than run as root.
    pub service_user: Option<String>,
    /// Parent of the services' working directories; keep it outside `data_dir`.
    pub service_work_dir: PathBuf,
    /// Bytes of recent output kept per service instance.
    pub service_output_bytes: usize,
    /// Seconds between SIGTERM and SIGKILL when a service instance is stopped.
    pub service_stop_grace: u64,
    /// Health check interval of a healthy instance, milliseconds (cdap-v3.md 1.5: 5 s).
    pub service_health_interval_ms: u64,
    /// Health check interval until an instance's first success, milliseconds (1 s).
    pub service_health_first_interval_ms: u64,
    /// First restart back-off of a crashed instance, milliseconds (1 s, doubling to 30 s).
    pub service_restart_backoff_ms: u64,
    /// Seconds the method proxy waits for a service's response headers.
    pub proxy_timeout: u64,
    /// Largest request body the method proxy forwards, bytes.
    pub proxy_max_body_bytes: u64,
    /// CDAP's `router.userservice.fallback.strategy`: `random`, `smallest`, `largest`, `drop`.
    pub router: RouterSettings,
    /// The clouds (perspective 2.1): `[[clouds]]` tables in the config file.
    pub clouds: Vec<corral_core::clouds::CloudConfig>,
    /// Seconds each operation of a `mock` cloud takes (a cloud's `options.delay_ms` wins).
    pub mock_delay: f64,
    /// A read-only credential for `/metrics` alone, presented as `Authorization: Bearer`
    /// (Prometheus' `bearer_token`); at least 32 characters. Core keeps and compares only its
    /// hash; the plain value stays in these settings, which are never logged.
    pub metrics_token: Option<String>,
    /// Milliseconds between retries of a cloud that could not start (30 s).
    pub cloud_retry_interval_ms: u64,
    /// Seconds an instance or image may stay in a transitional state before it goes to `error`.
    pub instance_transition_timeout: u64,
    /// Milliseconds one SQL statement of `POST /query` may run.
    pub sql_statement_timeout: u64,
    /// Most rows one SQL statement answers (after `LIMIT`).
    pub sql_row_limit: usize,
    /// The change feed, `[events]` (docs/events.md).
    pub events: EventsSettings,
    /// A data dir that group or others may access: `refuse` to start, or `fix` it (chmod
    /// 0700) with a warning.
    pub data_dir_permissions: DataDirPermissions,
    /// Transport limits of the listener: the `[server]` table (env `CORRAL_SERVER_<NAME>`).
    pub server: ServerSettings,
    /// The web console: the `[console]` table (env `CORRAL_CONSOLE_<NAME>`).
    pub console: ConsoleSettings,
}

/// `[console]`: the web console under `/ui` and its sessions (docs/security.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serve `/ui` and accept the console's session cookie; `false`: both answer 404.
    pub enabled: bool,
    /// Seconds a console session lasts from its sign-in (12 hours).
    pub session_ttl: u64,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            session_ttl: 12 * 3600,
        }
    }
}

/// The names of the `[console]` settings, for their `CORRAL_CONSOLE_<NAME>` variables.
const CONSOLE_KEYS: [&str; 2] = ["enabled", "session_ttl"];

/// What `start` does with a data dir that group or others may access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataDirPermissions {
    #[default]
    Refuse,
    Fix,
}

/// The `[server]` table: how long a client may take and how many connections it may hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Seconds from a connection's start (or a request's first byte) to the end of the
    /// request head; also the TLS handshake's limit.
    pub header_read_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    pub idle_timeout: u64,
    /// Most open connections; over it a connection is answered 503 and closed.
    pub max_connections: usize,
    /// Most open connections from one IP address.
    pub max_connections_per_peer: usize,
    /// Largest request head (request line and headers), bytes (431 over it).
    pub max_header_bytes: usize,
    /// Longest request target, bytes (414 over it).
    pub max_uri_bytes: usize,
    /// Seconds a request body may take to arrive (408 after it).
    pub body_read_timeout: u64,
}

/// The names of the `[server]` settings, for their `CORRAL_SERVER_<NAME>` variables.
const SERVER_KEYS: [&str; 7] = [
    "header_read_timeout",
    "idle_timeout",
    "max_connections",
    "max_connections_per_peer",
    "max_header_bytes",
    "max_uri_bytes",
    "body_read_timeout",
];

impl Default for ServerSettings {
    fn default() -> Self {
        let d = corral_api::serve::ConnLimits::default();
        ServerSettings {
            header_read_timeout: d.header_read_timeout.as_secs(),
            idle_timeout: d.idle_timeout.as_secs(),
            max_connections: d.max_connections,
            max_connections_per_peer: d.max_connections_per_peer,
            max_header_bytes: d.max_header_bytes,
            max_uri_bytes: d.max_uri_bytes,
            body_read_timeout: 60,
        }
    }
}

impl ServerSettings {
    /// The accept loop's limits.
    pub fn limits(&self) -> corral_api::serve::ConnLimits {
        corral_api::serve::ConnLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout),
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            max_header_bytes: self.max_header_bytes,
            max_uri_bytes: self.max_uri_bytes,
        }
    }
}

/// `[events]`: the change log's retention and `GET /events` watchers. Environment:
/// `CORRAL_EVENTS_<NAME>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSettings {
    /// Changes younger than this many hours are kept...
    pub retention_hours: u64,
    /// ...and so are the newest this many, whichever keeps more.
    pub retention_events: i64,
    /// Seconds between `: heartbeat` comments on an idle stream.
    pub heartbeat_secs: u64,
    /// Events a watcher may have waiting; one that falls further behind gets `lagged`.
    pub buffer: usize,
    /// Open watchers per tenant on one server; more answer 429.
    pub max_watchers_per_tenant: usize,
}

impl Default for EventsSettings {
    fn default() -> Self {
        EventsSettings {
            retention_hours: 24,
            retention_events: 1_000_000,
            heartbeat_secs: 15,
            buffer: 1024,
            max_watchers_per_tenant: 100,
        }
    }
}

/// How hosts are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostDriver {
    Ssh,
    Simulated,
}

/// An OS profile in the configuration: any command given replaces the built-in one; a new
/// profile must give all four.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsProfilePatch {
    #[serde(default)]
    pub ids: Vec<String>,
    pub bootstrap: Option<String>,
    pub upgrade: Option<String>,
    pub restart: Option<String>,
    pub deploy: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "0.0.0.0:55054".into(),
            port: None,
            data_dir: PathBuf::from("./corral-data"),
            database_url: None,
            database_max_connections: 16,
            tls_cert: None,
            tls_key: None,
            log_format: LogFormat::Human,
            log: "info".into(),
            bootstrap_apikey: None,
            server_key: None,
            token_ttl: 3600,
            max_body_bytes: 4 * 1024 * 1024,
            worker_capacity: 1000,
            auth_cache_ttl: 5,
            shutdown_grace: 30,
            cert_dir: None,
            host_driver: HostDriver::Ssh,
            ssh_port: 22,
            ssh_connect_timeout: 30,
            bootstrap_timeout: 1800,
            host_step_timeout: 3600,
            restart_wait_timeout: 200,
            watcher_interval: 60,
            host_allow: Vec::new(),
            trust_forwarded_for: false,
            flannel_etcd_endpoint: None,
            os_profiles: BTreeMap::new(),
            job_lease: 15,
            service_command_dirs: None,
            service_max_instances: 100,
            service_user: None,
            service_work_dir: std::env::temp_dir().join("corral-services"),
            service_output_bytes: 64 * 1024,
            service_stop_grace: 10,
            service_health_interval_ms: 5000,
            service_health_first_interval_ms: 1000,
            service_restart_backoff_ms: 1000,
            proxy_timeout: 60,
            proxy_max_body_bytes: 100 * 1024 * 1024,
            router: RouterSettings::default(),
            clouds: Vec::new(),
            mock_delay: 1.0,
            cloud_retry_interval_ms: 30_000,
            metrics_token: None,
            instance_transition_timeout: 600,
            sql_statement_timeout: 5000,
            sql_row_limit: 10_000,
            events: EventsSettings::default(),
            data_dir_permissions: DataDirPermissions::Refuse,
            server: ServerSettings::default(),
            console: ConsoleSettings::default(),
        }
    }
}

/// `router.userservice.fallback.strategy`, nested as CDAP spells it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterSettings {
    pub userservice: UserServiceSettings,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserServiceSettings {
    pub fallback: FallbackSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FallbackSettings {
    pub strategy: corral_core::Fallback,
}

impl Default for FallbackSettings {
    fn default() -> Self {
        FallbackSettings {
            strategy: corral_core::Fallback::Random,
        }
    }
}

/// Values given on the command line; `None` leaves the lower sources in charge.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Settings {
    /// Loads the settings from every source.
    pub fn load(config_file: Option<&Path>, overrides: &Overrides) -> Result<Settings, String> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig
            .merge(
                Env::prefixed("CORRAL_")
                    .ignore(&["CONFIG", "TEST_DATABASE_URL"])
                    .map(|k| {
                        if k == "BOOTSTRAP_KEY" {
                            "bootstrap_apikey".into()
                        } else if k == "ROUTER_USERSERVICE_FALLBACK_STRATEGY" {
                            "router.userservice.fallback.strategy".into()
                        } else if let Some(name) = k.as_str().to_ascii_lowercase().strip_prefix("events_") {
                            format!("events.{name}").into()
                        } else if let Some(name) = k
                            .as_str()
                            .to_ascii_lowercase()
                            .strip_prefix("server_")
                            .filter(|n| SERVER_KEYS.contains(n))
                        {
                            format!("server.{name}").into()
                        } else if let Some(name) = k
                            .as_str()
                            .to_ascii_lowercase()
                            .strip_prefix("console_")
                            .filter(|n| CONSOLE_KEYS.contains(n))
                        {
                            format!("console.{name}").into()
                        } else {
                            k.into()
                        }
                    }),
            )
            .merge(Serialized::defaults(overrides));
        let mut s: Settings = fig.extract().map_err(|e| format!("invalid configuration: {e}"))?;
        if let (Some(port), None) = (s.port, overrides.listen.as_ref()) {
            let host = s
                .listen
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_else(|| "0.0.0.0".into());
            s.listen = format!("{host}:{port}");
        }
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return Err("tls_cert and tls_key must be given together".into());
        }
        if s.max_body_bytes == 0 {
            return Err("max_body_bytes must be positive".into());
        }
        if s.proxy_max_body_bytes == 0 || s.proxy_timeout == 0 {
            return Err("proxy_max_body_bytes and proxy_timeout must be positive".into());
        }
        if s.service_health_interval_ms == 0 || s.service_health_first_interval_ms == 0 {
            return Err("service health intervals must be positive".into());
        }
        if !(s.mock_delay >= 0.0 && s.mock_delay < 86_400.0) {
            return Err("mock_delay must be between 0 and 86400 seconds".into());
        }
        if s.sql_statement_timeout == 0 || s.sql_row_limit == 0 {
            return Err("sql_statement_timeout and sql_row_limit must be positive".into());
        }
        if s.instance_transition_timeout == 0 {
            return Err("instance_transition_timeout must be positive".into());
        }
        if s.events.heartbeat_secs == 0 || s.events.buffer == 0 || s.events.max_watchers_per_tenant == 0 {
            return Err(
                "events.heartbeat_secs, events.buffer and events.max_watchers_per_tenant must be positive"
                    .into(),
            );
        }
        if s.events.retention_events < 0 {
            return Err("events.retention_events must not be negative".into());
        }
        if s.cloud_retry_interval_ms < 100 {
            return Err("cloud_retry_interval_ms must be at least 100".into());
        }
        if s.metrics_token
            .as_ref()
            .is_some_and(|t| t.trim().len() < 32 || t.trim() != t)
        {
            return Err("metrics_token must be at least 32 characters, without surrounding spaces".into());
        }
        let sv = &s.server;
        if sv.header_read_timeout == 0
            || sv.idle_timeout == 0
            || sv.max_connections == 0
            || sv.max_connections_per_peer == 0
            || sv.body_read_timeout == 0
        {
            return Err("server: timeouts and connection caps must be positive".into());
        }
        if sv.max_uri_bytes < 256 || sv.max_header_bytes < sv.max_uri_bytes + 64 {
            return Err("server: max_uri_bytes must be at least 256 and max_header_bytes above it".into());
        }
        if s.console.session_ttl == 0 || s.console.session_ttl > 366 * 24 * 3600 {
            return Err("console.session_ttl must be between 1 second and 366 days".into());
        }
        if s.service_max_instances < 1 {
            return Err("service_max_instances must be positive".into());
        }
        Ok(s)
    }

    /// The built-in OS profiles with the configured changes applied.
    pub fn os_profiles(&self) -> Result<BTreeMap<String, OsProfile>, String> {
        let mut profiles = builtin_profiles();
        for (name, patch) in &self.os_profiles {
            let p = match profiles.remove(name) {
                Some(mut p) => {
                    if !patch.ids.is_empty() {
                        p.ids = patch.ids.clone();
                    }
                    for (slot, given) in [
                        (&mut p.bootstrap, &patch.bootstrap),
                        (&mut p.upgrade, &patch.upgrade),
                        (&mut p.restart, &patch.restart),
                        (&mut p.deploy, &patch.deploy),
                    ] {
                        if let Some(cmd) = given {
                            *slot = cmd.clone();
                        }
                    }
                    p
                }
                None => match (&patch.bootstrap, &patch.upgrade, &patch.restart, &patch.deploy) {
                    (Some(b), Some(u), Some(r), Some(d)) => OsProfile {
                        ids: if patch.ids.is_empty() {
                            vec![name.clone()]
                        } else {
                            patch.ids.clone()
                        },
                        bootstrap: b.clone(),
                        upgrade: u.clone(),
                        restart: r.clone(),
                        deploy: d.clone(),
                    },
                    _ => {
                        return Err(format!(
                            "os_profiles.{name}: a new profile needs bootstrap, upgrade, restart and deploy"
                        ));
                    }
                },
            };
            profiles.insert(name.clone(), p);
        }
        Ok(profiles)
    }

    /// The database URL, defaulting to the SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("corral.db").display()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own large error.
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sources_layer_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "corral.toml",
                "listen = \"127.0.0.1:1\"\ntoken_ttl = 60\nmax_body_bytes = 10\n",
            )?;
            jail.set_env("CORRAL_TOKEN_TTL", "120");
            jail.set_env("CORRAL_BOOTSTRAP_KEY", "k".repeat(40));
            let over = Overrides {
                listen: Some("127.0.0.1:2".into()),
                ..Default::default()
            };
            let s = Settings::load(Some(Path::new("corral.toml")), &over).map_err(figment::Error::from)?;
            assert_eq!(s.listen, "127.0.0.1:2");
            assert_eq!(s.token_ttl, 120);
            assert_eq!(s.max_body_bytes, 10);
            assert_eq!(s.bootstrap_apikey, Some("k".repeat(40)));
            Ok(())
        });
    }

    #[test]
    fn the_events_section_and_its_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("corral.toml", "[events]\nretention_hours = 2\nbuffer = 64\n")?;
            jail.set_env("CORRAL_EVENTS_MAX_WATCHERS_PER_TENANT", "7");
            jail.set_env("CORRAL_EVENTS_HEARTBEAT_SECS", "3");
            let s = Settings::load(Some(Path::new("corral.toml")), &Overrides::default())
                .map_err(figment::Error::from)?;
            assert_eq!(
                s.events,
                EventsSettings {
                    retention_hours: 2,
                    retention_events: 1_000_000,
                    heartbeat_secs: 3,
                    buffer: 64,
                    max_watchers_per_tenant: 7,
                }
            );
            jail.set_env("CORRAL_EVENTS_BUFFER", "0");
            assert!(Settings::load(None, &Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn the_console_section_and_its_environment() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None, &Overrides::default()).map_err(figment::Error::from)?;
            assert_eq!(
                s.console,
                ConsoleSettings {
                    enabled: true,
                    session_ttl: 43_200
                }
            );
            jail.create_file("corral.toml", "[console]\nsession_ttl = 600\n")?;
            jail.set_env("CORRAL_CONSOLE_ENABLED", "false");
            let s = Settings::load(Some(Path::new("corral.toml")), &Overrides::default())
                .map_err(figment::Error::from)?;
            assert_eq!(
                s.console,
                ConsoleSettings {
                    enabled: false,
                    session_ttl: 600
                }
            );
            jail.set_env("CORRAL_CONSOLE_SESSION_TTL", "0");
            let err = Settings::load(None, &Overrides::default()).unwrap_err();
            assert!(err.contains("console.session_ttl"), "{err}");
            jail.create_file("bad.toml", "[console]\nsession = 1\n")?;
            assert!(Settings::load(Some(Path::new("bad.toml")), &Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_reported() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CORRAL_TOKEN_TTL", "soon");
            let err = Settings::load(None, &Overrides::default()).unwrap_err();
            assert!(err.to_lowercase().contains("token_ttl"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_weak_metrics_token_or_a_busy_cloud_retry_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CORRAL_METRICS_TOKEN", "short");
            let err = Settings::load(None, &Overrides::default()).unwrap_err();
            assert!(err.contains("metrics_token") && !err.contains("short"), "{err}");
            jail.set_env("CORRAL_METRICS_TOKEN", "m".repeat(32));
            let s = Settings::load(None, &Overrides::default()).map_err(figment::Error::from)?;
            assert_eq!(s.metrics_token, Some("m".repeat(32)));
            assert_eq!(s.cloud_retry_interval_ms, 30_000);
            jail.set_env("CORRAL_CLOUD_RETRY_INTERVAL_MS", "5");
            let err = Settings::load(None, &Overrides::default()).unwrap_err();
            assert!(err.contains("cloud_retry_interval_ms"), "{err}");
            Ok(())
        });
    }

    /// `examples/corral.toml` (docs/instances.md) loads, with its two shared clouds.
    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/corral.toml");
        figment::Jail::expect_with(|_jail| {
            let s = Settings::load(Some(&path), &Overrides::default()).map_err(figment::Error::from)?;
            assert_eq!(s.listen, "127.0.0.1:55054");
            assert_eq!(s.instance_transition_timeout, 600);
            assert_eq!(s.events, EventsSettings::default());
            let ids: Vec<(&str, &str)> = s
                .clouds
                .iter()
                .map(|c| (c.id.as_str(), c.kind.as_str()))
                .collect();
            assert_eq!(ids, [("mock", "mock"), ("local", "qemu")]);
            let mock = &s.clouds[0].options;
            assert!(s.clouds.iter().all(|c| c.enabled && c.tenant.is_none()));
            let fail = |e: corral_drivers::CloudError| figment::Error::from(e.0);
            // The driver's options, read by the driver.
            let mock_driver = serde_json::Value::Object(mock.driver.clone());
            let m = corral_drivers::MockOptions::from_options(&mock_driver, Duration::from_secs(1))
                .map_err(fail)?;
            assert_eq!(m.delay, Duration::from_millis(500));
            assert_eq!(m.images, ["debian-12", "alpine-3.20"]);
            let flavors: Vec<&str> = mock.flavors.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(flavors, ["small", "large"]);
            assert_eq!(mock.availability_zones, ["zone-a", "zone-b"]);
            assert_eq!(mock.networks[0].subnets[0].cidr, "10.20.0.0/24");
            assert_eq!(mock.quota.instances, Some(20));
            assert_eq!(mock.keypairs[0].fingerprint.split(':').count(), 16);
            let qemu = &s.clouds[1].options;
            let flavors: Vec<(&str, i64, i64)> = qemu
                .flavors
                .iter()
                .map(|f| (f.name.as_str(), f.vcpus, f.ram))
                .collect();
            assert_eq!(flavors, [("tiny", 1, 256), ("bigger", 2, 384)]);
            let qemu_driver = serde_json::Value::Object(qemu.driver.clone());
            let o = corral_drivers::qemu::QemuCloudOptions::from_options(&qemu_driver).map_err(fail)?;
            assert_eq!(o.image_dir, Path::new("target/guest"));
            assert!(o.state_dir.as_os_str().len() <= corral_drivers::qemu::MAX_STATE_DIR_LEN);
            assert_eq!(o.accel, corral_drivers::Accel::Auto);
            assert_eq!(o.shutdown_timeout, Duration::from_secs(60));
            Ok(())
        });
    }

    /// The `[server]` table and its `CORRAL_SERVER_*` variables; `CORRAL_SERVER_KEY` stays the
    /// server key.
    #[test]
    fn server_limits_come_from_the_table_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "corral.toml",
                "data_dir_permissions = \"fix\"\n[server]\nheader_read_timeout = 3\nmax_connections = 50\n",
            )?;
            jail.set_env("CORRAL_SERVER_MAX_CONNECTIONS_PER_PEER", "7");
            jail.set_env("CORRAL_SERVER_KEY", "c2VjcmV0");
            let s = Settings::load(Some(Path::new("corral.toml")), &Overrides::default())
                .map_err(figment::Error::from)?;
            assert_eq!(s.data_dir_permissions, DataDirPermissions::Fix);
            let l = s.server.limits();
            assert_eq!(l.header_read_timeout, Duration::from_secs(3));
            assert_eq!(l.idle_timeout, Duration::from_secs(60));
            assert_eq!((l.max_connections, l.max_connections_per_peer), (50, 7));
            assert_eq!(s.server_key.as_deref(), Some("c2VjcmV0"));
            jail.create_file("bad.toml", "[server]\nheader_timeout = 3\n")?;
            let err = Settings::load(Some(Path::new("bad.toml")), &Overrides::default()).unwrap_err();
            assert!(err.contains("header_timeout"), "{err}");
            jail.create_file("zero.toml", "[server]\nmax_connections = 0\n")?;
            assert!(Settings::load(Some(Path::new("zero.toml")), &Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn default_database_is_sqlite_in_data_dir() {
        let s = Settings {
            data_dir: "/var/lib/corral".into(),
            ..Settings::default()
        };
        assert_eq!(s.database_url(), "sqlite:///var/lib/corral/corral.db?mode=rwc");
    }
}
