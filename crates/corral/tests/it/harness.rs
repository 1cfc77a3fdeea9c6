//! The test harness: starts the real server in-process on `127.0.0.1:0`, on SQLite (a file
//! in a temp dir) or PostgreSQL (a fresh database per test on the server named by
//! `CORRAL_TEST_DATABASE_URL`, which `scripts/test.sh` starts), and talks to it over HTTP.

use std::path::PathBuf;
use std::time::Duration;

use corral::config::Settings;
use corral::server::{Running, start};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Db)` of the enclosing module once per store.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Db::Postgres).await
                }
            )*
        }
    };
}

/// The key the harness bootstraps every server with.
pub const BOOTSTRAP_KEY: &str = "test-bootstrap-key-0123456789-abcdefghijklmnop";

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub db_url: String,
    pub data_dir: PathBuf,
    /// The assembly's store handle, for the job-engine tests that drive it directly.
    pub store: corral_store::Store,
    running: Option<Running>,
    _dir: tempfile::TempDir,
}

/// A fresh, empty database URL for `db`.
pub async fn fresh_database(db: Db, dir: &std::path::Path) -> String {
    match db {
        Db::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("corral.db").display()),
        Db::Postgres => {
            let admin = std::env::var("CORRAL_TEST_DATABASE_URL").expect(
                "CORRAL_TEST_DATABASE_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
            );
            let name = format!("corral_t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to test PostgreSQL");
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("create database");
            let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
            format!("{base}/{name}")
        }
    }
}

impl TestServer {
    pub async fn start(db: Db) -> TestServer {
        Self::start_with(db, |_| {}).await
    }

    /// Starts a server after `tune` adjusted its settings.
    pub async fn start_with(db: Db, tune: impl FnOnce(&mut Settings)) -> TestServer {
        if let Ok(filter) = std::env::var("CORRAL_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let db_url = fresh_database(db, dir.path()).await;
        let mut settings = Settings {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().join("data"),
            database_url: Some(db_url.clone()),
            database_max_connections: 4,
            bootstrap_apikey: Some(BOOTSTRAP_KEY.into()),
            // As root (CI), services must run as another user; their work dirs lie outside
            // the test's private temp dir, which that user cannot enter.
            service_user: corral_drivers::running_as_root().then(|| "nobody".to_string()),
            service_work_dir: std::env::temp_dir().join("corral-it-services"),
            ..Settings::default()
        };
        tune(&mut settings);
        // A test may point the server at another server's database (replicas).
        let db_url = settings.database_url.clone().unwrap_or(db_url);
        let running = start(&settings).await.expect("server starts");
        TestServer {
            base: format!("http://{}", running.addr),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            db_url,
            data_dir: settings.data_dir.clone(),
            store: running.store.clone(),
            running: Some(running),
            _dir: dir,
        }
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(10)).await.expect("clean shutdown");
        }
    }

    /// Stops the server gracefully and hands over its temp dir (data dir, SQLite file), so a
    /// new server can start on the same state.
    pub async fn stop_keeping_files(mut self) -> tempfile::TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(30)).await.expect("clean shutdown");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self._dir, dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request with `Authorization: Bearer <key>`.
    pub fn call(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        self.anon(method, path).bearer_auth(key)
    }

    /// As the bootstrap superadmin.
    pub fn root(&self, method: Method, path: &str) -> RequestBuilder {
        self.call(BOOTSTRAP_KEY, method, path)
    }

    /// Creates tenant `name` with `workers` and answers its admin's key.
    pub async fn create_tenant(&self, name: &str, workers: i64) -> String {
        let body = self
            .post(BOOTSTRAP_KEY, "/v2/tenants")
            .json(json!({"tenant": {"name": name, "workers": workers}}))
            .ok()
            .await;
        body["admin"]["apikey"]["key"]
            .as_str()
            .expect("admin key")
            .to_string()
    }

    /// Creates a user with `role` in the tenant of `admin_key` and answers a new key of it.
    pub async fn create_user(&self, admin_key: &str, id: &str, role: &str) -> String {
        self.post(admin_key, "/v2/users")
            .json(json!({"id": id, "role": role}))
            .expect(StatusCode::CREATED)
            .await;
        let body = self
            .create_key(admin_key, id, json!({"description": "test"}))
            .await;
        body["key"].as_str().expect("key").to_string()
    }

    /// Runs one SQL statement directly on the server's database (to stage rows no API of
    /// this issue creates yet, such as clusters and hosts).
    pub async fn exec_sql(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.db_url).await.expect("connect");
        conn.execute(sqlx::AssertSqlSafe(sql.to_string()))
            .await
            .expect("exec");
    }
}

/// Asserts the status and answers the JSON body.
pub async fn expect_json(resp: Response, status: StatusCode) -> Value {
    check_json("response", resp, status).await
}

/// [`expect_json`] for the request named `what` in failure messages.
pub async fn check_json(what: &str, resp: Response, status: StatusCode) -> Value {
    let got = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "{what}: unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"))
}

/// Asserts a contract error: status, JSON content type, body fields, and (if given) message.
pub async fn expect_error(resp: Response, status: StatusCode, message: Option<&str>) -> Value {
    check_error("response", resp, status, message).await
}

/// [`expect_error`] for the request named `what` in failure messages.
pub async fn check_error(what: &str, resp: Response, status: StatusCode, message: Option<&str>) -> Value {
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let got = resp.status();
    assert_eq!(
        ct.as_deref(),
        Some("application/json; charset=utf-8"),
        "{what}: error without JSON content type (status {got})"
    );
    let body = check_json(what, resp, status).await;
    assert_eq!(body["code"], json!(status.as_u16()), "{what}: {body}");
    assert_eq!(
        body["error"],
        json!(status.canonical_reason().unwrap_or("")),
        "{what}: {body}"
    );
    if let Some(m) = message {
        assert_eq!(body["message"], json!(m), "{what}: {body}");
    }
    body
}

impl TestServer {
    /// Runs one query answering a single integer (such as `SELECT COUNT(*) ...`) directly on
    /// the server's database, to check rows no API of this issue reads yet (networks,
    /// container managers).
    pub async fn sql_count(&self, sql: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.db_url).await.expect("connect");
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut conn)
            .await
            .expect("count query")
    }
}

/// Asserts a success that has nothing to say (README 4): 200, empty body, no content type.
pub async fn check_empty_ok(what: &str, resp: Response) {
    let got = resp.status();
    let ct = resp.headers().get("content-type").cloned();
    let text = resp.text().await.expect("body");
    assert_eq!(got, StatusCode::OK, "{what}: unexpected status; body: {text}");
    assert_eq!(text, "", "{what}: a success without content has an empty body");
    assert_eq!(ct, None, "{what}: an empty success has no content type");
}

/// The sorted keys of a JSON object, to check a response's exact shape.
pub fn keys_of(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

// ---- Helpers for the auth, roles and isolation tests (appended; existing signatures unchanged).

impl TestServer {
    /// Issues a key to `user` in the tenant of `admin_key` with `body` (e.g.
    /// `{"description": "ci"}`) and answers the creation answer (with `id` and `key`).
    pub async fn create_key(&self, admin_key: &str, user: &str, body: Value) -> Value {
        self.post(admin_key, &format!("/v2/users/{user}/apikeys"))
            .json(body)
            .expect(StatusCode::CREATED)
            .await
    }

    /// Mints an access token with `GET /token`, authenticated by `Authorization: Bearer <cred>`.
    pub async fn mint_token(&self, cred: &str) -> String {
        let body = self.get_json(cred, "/token").await;
        body["access_token"].as_str().expect("access_token").to_string()
    }
}

/// Asserts a 401 of README 3.2: the challenge header, the JSON error body and `message`.
pub async fn check_unauthorized(what: &str, resp: Response, message: &str) -> Value {
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or("").to_string());
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"corral\""),
        "{what}: 401 without the WWW-Authenticate challenge (status {})",
        resp.status()
    );
    check_error(what, resp, StatusCode::UNAUTHORIZED, Some(message)).await
}

/// `Authorization: Basic base64(<user_part>:<key>)`.
pub fn basic(user_part: &str, key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user_part}:{key}"))
    )
}

/// Milliseconds since the Unix epoch, as the server counts Coopr times.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl TestServer {
    /// Polls `GET path` (as `key`) until it answers 200 with a body `done` accepts, and
    /// answers that body; fails the test after 90 s, naming the last answer.
    pub async fn wait_json(&self, key: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let resp = self.call(key, Method::GET, path).send().await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if status == StatusCode::OK
                && let Ok(v) = serde_json::from_str::<Value>(&text)
                && done(&v)
            {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out on {path}: {status} {text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The test service binary (`corral-testsvc`), built on first use when the suite was started
/// without it (`scripts/test.sh` builds it first).
pub fn testsvc() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        // target/<profile>/deps/it-<hash> -> target/<profile>/corral-testsvc
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target/<profile> directory");
        let bin = profile_dir.join("corral-testsvc");
        if !bin.is_file() {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "-p", "corral-testsvc"])
                .status()
                .expect("run cargo build -p corral-testsvc");
            assert!(status.success(), "cannot build corral-testsvc");
        }
        assert!(bin.is_file(), "{} is missing", bin.display());
        bin.display().to_string()
    })
    .clone()
}
