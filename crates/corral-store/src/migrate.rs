//! A small migration runner: numbered, portable SQL files compiled into the binary, applied
//! in order at start, each in its own transaction, recorded in `corral_migrations`.
//!
//! Own rather than `sqlx::migrate!` so the binary needs no proc-macro build and no files at
//! run time, and so several replicas starting at once on PostgreSQL serialise on an advisory
//! lock instead of racing.

use corral_types::Error;
use corral_types::time::now_ms;
use sqlx::Row;

use crate::{Backend, Store, db};

/// Every migration, in order. Append only: never edit a migration that has shipped.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "identity", include_str!("../migrations/0001_identity.sql")),
    (2, "jobs", include_str!("../migrations/0002_jobs.sql")),
    (
        3,
        "commissaire",
        include_str!("../migrations/0003_commissaire.sql"),
    ),
    (4, "apps", include_str!("../migrations/0004_apps.sql")),
    (5, "services", include_str!("../migrations/0005_services.sql")),
    (6, "instances", include_str!("../migrations/0006_instances.sql")),
    (7, "job_claims", include_str!("../migrations/0007_job_claims.sql")),
    (
        8,
        "request_ids",
        include_str!("../migrations/0008_request_ids.sql"),
    ),
    (9, "change_log", include_str!("../migrations/0009_change_log.sql")),
    (
        10,
        "drop_instances_by_update",
        include_str!("../migrations/0010_drop_instances_by_update.sql"),
    ),
];

/// An arbitrary constant naming Corral's migration lock among PostgreSQL advisory locks.
const PG_MIGRATION_LOCK: i64 = 5_505_401;

pub(crate) async fn run(store: &Store) -> Result<(), Error> {
    let mut tx = store.begin_write().await?;
    if store.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS corral_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let applied: Option<i64> = sqlx::query("SELECT MAX(version) FROM corral_migrations")
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get::<Option<i64>, _>(0))
        .map_err(db)?;
    let applied = applied.unwrap_or(0);
    let newest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if applied > newest {
        return Err(Error::internal(format!(
            "the database schema is at version {applied}, newer than this binary knows ({newest}); run a newer Corral"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
        tracing::info!(version, name, "applying migration");
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(db)?;
        sqlx::query("INSERT INTO corral_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(version)
            .bind(*name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}
