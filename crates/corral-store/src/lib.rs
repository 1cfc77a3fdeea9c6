//! The store: every SQL statement Corral runs, on SQLite (embedded default) or PostgreSQL.
//!
//! One SQL text serves both backends: statements use `$N` placeholders, portable types
//! (TEXT, BIGINT) and `ON CONFLICT` clauses both engines know, and run through sqlx's `Any`
//! driver. Where the engines really differ (locking), the code branches on [`Backend`].
//!
//! SQLite runs in WAL mode with one writer connection and a pool of readers: writes are
//! serialised in-process, so a write transaction never fails with `SQLITE_BUSY` on a lock
//! upgrade. PostgreSQL uses one pool for both.
//!
//! Architecture invariant: nothing here knows HTTP; every tenant-owned query takes the
//! tenant id as a parameter that core takes from the operation context.

/// A SQL text built only from constants of this crate (column lists, table names), never
/// from input: every value is bound.
macro_rules! sqlf {
    ($($t:tt)*) => {
        sqlx::AssertSqlSafe(format!($($t)*))
    };
}

/// Most bound parameters per statement of a multi-row write. SQLite looks up each parameter's
/// name with a linear scan of the statement's list (`sqlite3_bind_parameter_name`, called by
/// sqlx for every parameter), so a statement's binding cost grows with the square of its
/// parameters: 100 instance rows of 23 columns in one `INSERT` spent more time there than in
/// writing (docs/performance.md, "Bulk actions and launch throughput").
pub(crate) const MAX_PARAMS: usize = 256;

mod apps;
mod changes;
mod fast;
mod hosts;
mod identity;
mod instances;
mod jobs;
mod migrate;
mod named;
mod namespaces;
mod networks;
mod services;

use std::str::FromStr;
use std::time::Duration;

use corral_types::Error;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use apps::*;
pub use changes::{
    ChangeBounds, ChangeRow, ChangeViews, Changed, CommitObserver, InstancesCommitted, NewChange,
};
pub use hosts::*;
pub use identity::*;
pub use instances::*;
pub use jobs::{Fence, JobRow, JobState, NewJob};
pub use named::{AnyQuery, CreateIfAbsent, DeleteInUse, Named, NamedObject, UsedBy};
pub use namespaces::*;
pub use networks::{ContainerManagerRow, NetworkRow};
pub use services::*;

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The texts of the JSON array bound at `$n` as a one-column `SELECT` (column `v`), for
    /// [`Backend::one_of`] or a `FROM`. The same text on both engines: one statement and one
    /// parameter carry any number of values, where a `VALUES` list needs a parameter each and a
    /// statement per [`MAX_PARAMS`] (10,000 history rows: 45 ms instead of 90).
    pub(crate) fn json_values(self, n: usize) -> String {
        match self {
            Backend::Sqlite => format!("SELECT value AS v FROM json_each(${n})"),
            Backend::Postgres => format!("SELECT json_array_elements_text(${n}::json) AS v"),
        }
    }

    /// `col` is one of the values of the one-column `select`. On PostgreSQL as
    /// `= ANY(ARRAY(...))`, an index condition whatever the statistics say: `IN (SELECT ...)`
    /// is a join, and a generic plan made while the table was small ran it as a scan of the
    /// tenant's rows per id (32 ids at 30,000 instances: 2.2 s instead of 1 ms).
    pub(crate) fn one_of(self, col: &str, select: &str) -> String {
        match self {
            Backend::Sqlite => format!("{col} IN ({select})"),
            Backend::Postgres => format!("{col} = ANY(ARRAY({select}))"),
        }
    }

    /// A `SELECT` over the JSON array of rows (each an array) bound at `$n`: the row's
    /// position from 1 as `k` and its values as `c0`, `c1`, ..., typed as `cols`. Many rows of
    /// different values in one statement and one parameter (an insert of 2,000 instances was
    /// 200 statements of 10 rows, each a hop to SQLite's thread and 231 bound parameters).
    pub(crate) fn json_rows(self, n: usize, cols: &[JsonCol]) -> String {
        let mut out = String::from("SELECT ");
        match self {
            Backend::Sqlite => out.push_str("key + 1 AS k"),
            Backend::Postgres => out.push('k'),
        }
        for (i, col) in cols.iter().enumerate() {
            let value = match (self, col) {
                (Backend::Sqlite, _) => format!("value ->> {i}"),
                (Backend::Postgres, JsonCol::Text) => format!("e ->> {i}"),
                (Backend::Postgres, JsonCol::Int) => format!("CAST(e ->> {i} AS BIGINT)"),
            };
            out.push_str(&format!(", {value} AS c{i}"));
        }
        match self {
            Backend::Sqlite => out.push_str(&format!(" FROM json_each(${n})")),
            // jsonb: parsed once; `->>` on `json` parses the element again for each column
            // (500 instance rows: 48 ms of extraction as json, 4 ms as jsonb).
            Backend::Postgres => out.push_str(&format!(
                " FROM jsonb_array_elements(${n}::jsonb) WITH ORDINALITY AS x(e, k)"
            )),
        }
        out
    }
}

/// The type of a column of [`Backend::json_rows`]: the JSON value's text, or an integer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum JsonCol {
    Text,
    Int,
}

/// A connection to Corral's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Reads (and, on PostgreSQL, writes).
    pool: AnyPool,
    /// Write transactions. On SQLite a single connection; on PostgreSQL the same pool.
    writer: AnyPool,
    /// The query read model's refreshes and streamed lists: two connections of their own, so a
    /// busy job engine, whose workers can hold every connection of `pool`, does not stall
    /// `POST /query` behind it (docs/performance.md).
    reads: AnyPool,
    backend: Backend,
    /// SQLite only: point reads on the calling thread (fast.rs).
    fast: Option<std::sync::Arc<fast::FastReads>>,
    /// The change log's view renderer and commit signal (changes.rs).
    changes: std::sync::Arc<changes::ChangeShared>,
}

/// Pool figures for the metrics endpoint.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

impl Store {
    /// Connects to `url` (`sqlite://...` or `postgres://...`) and applies pending migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, Error> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::bad_request(format!(
                "Unsupported database URL scheme in '{}': use sqlite:// or postgres://.",
                redact_url(url)
            )));
        };
        let opts = AnyConnectOptions::from_str(url)
            .map_err(|e| Error::bad_request(format!("Invalid database URL: {e}")))?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let store = match backend {
            Backend::Sqlite => {
                let pool = sqlite_pool(max_connections.max(2), "")
                    .connect_with(opts.clone())
                    .await
                    .map_err(db)?;
                let reads = sqlite_pool(READS_POOL, "")
                    .connect_with(opts.clone())
                    .await
                    .map_err(db)?;
                // The statement journal of a multi-row write in memory: as a temporary file
                // each of its pages was a `pwrite` into freshly allocated, zeroed file blocks,
                // a fifth of a 10,000-instance bulk action's time (docs/performance.md, "Run F").
                // It holds the pages one statement changes, then is dropped.
                let writer = sqlite_pool(1, "PRAGMA temp_store = MEMORY")
                    .connect_with(opts)
                    .await
                    .map_err(db)?;
                // WAL is a property of the file: set once, kept by every later connection.
                sqlx::raw_sql("PRAGMA journal_mode = WAL")
                    .execute(&writer)
                    .await
                    .map_err(db)?;
                let changes = std::sync::Arc::<changes::ChangeShared>::default();
                spawn_checkpoints(writer.clone(), std::sync::Arc::downgrade(&changes));
                Store {
                    pool,
                    writer,
                    reads,
                    backend,
                    fast: fast::FastReads::for_url(url).map(std::sync::Arc::new),
                    changes,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(opts.clone())
                    .await
                    .map_err(db)?;
                let reads = AnyPoolOptions::new()
                    .max_connections(READS_POOL)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(opts)
                    .await
                    .map_err(db)?;
                Store {
                    writer: pool.clone(),
                    reads,
                    pool,
                    backend,
                    fast: None,
                    changes: Default::default(),
                }
            }
        };
        migrate::run(&store).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Answers whether the database can be reached now (for `GET /ping`).
    pub async fn ping(&self) -> bool {
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Ok(_))
        )
    }

    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.pool.options().get_max_connections(),
        }
    }

    /// Closes every connection; later calls fail as "store unavailable".
    pub async fn close(&self) {
        self.pool.close().await;
        self.reads.close().await;
        self.writer.close().await;
    }

    /// An `ORDER BY` term sorting `column` by byte value on both engines: the contract sorts
    /// names "ascending by byte value", SQLite's default collation already does, and
    /// PostgreSQL's database collation (often `en_US`) ignores case and punctuation.
    pub(crate) fn bytewise(&self, column: &str) -> String {
        match self.backend {
            Backend::Sqlite => column.to_string(),
            Backend::Postgres => format!("{column} COLLATE \"C\""),
        }
    }

    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, Error> {
        self.writer.begin().await.map_err(db)
    }
}

/// Connections of [`Store::reads`].
const READS_POOL: u32 = 2;

/// How often the SQLite WAL is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// SQLite: checkpoints the WAL between write transactions, on the writer connection, once a
/// second. SQLite's automatic checkpoint runs inside the `COMMIT` that takes the WAL past its
/// threshold, after the commit is already visible to readers: a bulk action's answer, and
/// every query that waited for its rows, paid ~100 ms for copying pages back. On another
/// connection a checkpoint races the writer and never completes, so the WAL is never restarted
/// and grows (951 MB after 40,000 launches, every read slower for it); on the writer, between
/// transactions, it completes unless a reader still needs old pages. Ends when the store is
/// dropped or closed.
fn spawn_checkpoints(writer: AnyPool, alive: std::sync::Weak<changes::ChangeShared>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            if alive.strong_count() == 0 || writer.is_closed() {
                return;
            }
            let Ok(mut c) = writer.acquire().await else {
                continue;
            };
            // PASSIVE: never waits for readers; what a reader still needs is copied by a
            // later round.
            if let Err(e) = sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut *c)
                .await
            {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    });
}

/// `extra`: more pragmas for this pool's connections.
fn sqlite_pool(max: u32, extra: &'static str) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                conn.execute(
                    // `spawn_checkpoints` checkpoints between transactions; the automatic
                    // checkpoint inside a `COMMIT` is only a backstop (200 MiB of WAL).
                    "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; \
                     PRAGMA wal_autocheckpoint = 50000;",
                )
                .await?;
                if !extra.is_empty() {
                    conn.execute(extra).await?;
                }
                Ok(())
            })
        })
}

/// Maps a database error to the public enum: connection trouble is 503 (the store is
/// unavailable, try again), everything else is an internal fault with the detail logged.
pub(crate) fn db(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            Error::Unavailable("The store is unavailable.".to_string())
        }
        other => Error::internal(format!("database: {other}")),
    }
}

/// Hides the password of a database URL before it goes into a message or a log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    /// A fresh directory for one test's database file.
    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "corral-{name}-{}-{}",
            std::process::id(),
            corral_types::time::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Only the writer keeps temporary data (a write's statement journal) in memory: a
    /// reader's sort spills to a file, so a large ordered list cannot grow the heap.
    #[tokio::test]
    async fn only_the_writer_keeps_temporary_data_in_memory() {
        let dir = scratch_dir("temp");
        let store = Store::open(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display()), 2)
            .await
            .unwrap();
        let temp_store = |pool: &AnyPool| {
            let pool = pool.clone();
            async move {
                sqlx::query("PRAGMA temp_store")
                    .fetch_one(&pool)
                    .await
                    .and_then(|r| sqlx::Row::try_get::<i64, _>(&r, 0))
                    .unwrap()
            }
        };
        // 2 is MEMORY, 0 the compiled default (a file).
        assert_eq!(temp_store(&store.writer).await, 2);
        assert_eq!(temp_store(&store.pool).await, 0);
        assert_eq!(temp_store(&store.reads).await, 0);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The store's own task copies the WAL back between transactions: a commit far below the
    /// automatic checkpoint's threshold reaches the main file with no further write.
    #[tokio::test]
    async fn the_wal_is_checkpointed_between_transactions() {
        let dir = scratch_dir("wal");
        let file = dir.join("t.db");
        let store = Store::open(&format!("sqlite://{}?mode=rwc", file.display()), 2)
            .await
            .unwrap();
        let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        // The migrations' pages first.
        tokio::time::sleep(CHECKPOINT_EVERY * 2).await;
        let before = size();
        let mut tx = store.begin_write().await.unwrap();
        sqlx::raw_sql("CREATE TABLE scratch (b TEXT)")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("INSERT INTO scratch VALUES ($1)")
            .bind("x".repeat(2_000_000))
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let deadline = std::time::Instant::now() + CHECKPOINT_EVERY * 5;
        // Until a checkpoint the main file does not grow at all; after it, by the value's
        // pages less the few the migrations freed (a dropped index) and the value reuses.
        while size() < before + 1_900_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the main file stayed at {} bytes (was {before})",
                size()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Typed ids and closed sets go through the driver as TEXT and come back as themselves; a
    /// stored value outside a closed set fails the read.
    #[tokio::test]
    async fn typed_values_round_trip_and_unknown_ones_fail() {
        use corral_types::{InstanceId, Role};
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect("sqlite::memory:").await.unwrap();
        let row = sqlx::query("SELECT $1, $2, $3")
            .bind(InstanceId::from_trusted("i-1"))
            .bind(Role::Viewer)
            .bind(JobState::Cancelled)
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(row.try_get::<InstanceId, _>(0).unwrap().as_str(), "i-1");
        assert_eq!(row.try_get::<String, _>(1).unwrap(), "viewer");
        assert_eq!(row.try_get::<Role, _>(1).unwrap(), Role::Viewer);
        assert_eq!(row.try_get::<JobState, _>(2).unwrap(), JobState::Cancelled);
        let row = sqlx::query("SELECT 'root', 'paused'")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert!(row.try_get::<Role, _>(0).is_err());
        assert!(row.try_get::<JobState, _>(1).is_err());
    }
}
