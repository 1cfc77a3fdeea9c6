//! CDAP applications and their versions (cdap-v3.md 3). An app row exists exactly while it has
//! a version: the first version's insert creates it, the last version's delete removes it.

use corral_types::{Error, TenantScope, Verb};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::changes::Journal;
use crate::{Changed, Store, db};

/// One stored version of an app; `spec` is the JSON array of its services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppVersionRow {
    pub app: String,
    pub version: String,
    pub description: String,
    pub spec: String,
    /// Milliseconds since the epoch of the creation or last overwrite.
    pub created: i64,
}

/// A version to store.
#[derive(Debug, Clone)]
pub struct NewAppVersion<'a> {
    pub version: &'a str,
    pub description: &'a str,
    pub spec: &'a str,
    /// An existing version of this name with another spec may be replaced (`-SNAPSHOT`).
    pub overwritable: bool,
}

/// What [`Store::put_app_version`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutAppVersion {
    /// Created, or an overwritable version replaced: it is now the current version.
    Stored(AppVersionRow),
    /// The version exists with the same description and spec: nothing changed.
    Unchanged(AppVersionRow),
    /// The version exists with another spec and may not be overwritten.
    Conflict,
    /// The namespace does not exist (deleted meanwhile).
    NoNamespace,
}

const COLUMNS: &str = "app, version, description, spec, created";

fn version_row(r: &AnyRow) -> Result<AppVersionRow, sqlx::Error> {
    Ok(AppVersionRow {
        app: r.try_get(0)?,
        version: r.try_get(1)?,
        description: r.try_get(2)?,
        spec: r.try_get(3)?,
        created: r.try_get(4)?,
    })
}

/// The current version of an app (or of every app of the namespace), inside a transaction.
async fn current_versions(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    ns: &str,
    app: Option<&str>,
) -> Result<Vec<AppVersionRow>, Error> {
    sqlx::query(sqlf!(
        "SELECT {COLUMNS} FROM app_versions v WHERE tenant_id = $1 AND namespace = $2 AND ($3 IS NULL OR app = $3) \
         AND seq = (SELECT MAX(w.seq) FROM app_versions w WHERE w.tenant_id = v.tenant_id \
         AND w.namespace = v.namespace AND w.app = v.app) ORDER BY app"
    ))
    .bind(tenant.as_str())
    .bind(ns)
    .bind(app)
    .fetch_all(&mut **tx)
    .await
    .and_then(|rows| rows.iter().map(version_row).collect())
    .map_err(db)
}

/// Records the deletion of the apps (their current versions) that a delete removed.
pub(crate) async fn journal_app_deletes(
    tx: &mut Transaction<'static, Any>,
    journal: &mut Journal<'_>,
    tenant: &TenantScope,
    ns: &str,
    app: Option<&str>,
) -> Result<(), Error> {
    for v in current_versions(tx, tenant, ns, app).await? {
        journal.row(Verb::Deleted, Changed::App(ns, &v));
    }
    Ok(())
}

impl Store {
    /// The current version of every app of the namespace, sorted by app name.
    pub async fn list_apps(&self, tenant: &TenantScope, ns: &str) -> Result<Vec<AppVersionRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {COLUMNS} FROM app_versions v WHERE tenant_id = $1 AND namespace = $2 \
             AND seq = (SELECT MAX(w.seq) FROM app_versions w WHERE w.tenant_id = v.tenant_id \
             AND w.namespace = v.namespace AND w.app = v.app) ORDER BY {}",
            self.bytewise("app")
        ))
        .bind(tenant.as_str())
        .bind(ns)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(version_row).collect())
        .map_err(db)
    }

    /// Version `version` of the app, or its current version when `None`.
    pub async fn get_app_version(
        &self,
        tenant: &TenantScope,
        ns: &str,
        app: &str,
        version: Option<&str>,
    ) -> Result<Option<AppVersionRow>, Error> {
        let q = match version {
            Some(v) => sqlx::query(sqlf!(
                "SELECT {COLUMNS} FROM app_versions WHERE tenant_id = $1 AND namespace = $2 AND app = $3 \
                 AND version = $4"
            ))
            .bind(tenant.as_str())
            .bind(ns)
            .bind(app)
            .bind(v.to_string()),
            None => sqlx::query(sqlf!(
                "SELECT {COLUMNS} FROM app_versions WHERE tenant_id = $1 AND namespace = $2 AND app = $3 \
                 ORDER BY seq DESC LIMIT 1"
            ))
            .bind(tenant.as_str())
            .bind(ns)
            .bind(app),
        };
        q.fetch_optional(&self.pool)
            .await
            .and_then(|r| r.as_ref().map(version_row).transpose())
            .map_err(db)
    }

    /// The app's version names, oldest (least recently created or overwritten) first; empty
    /// when the app does not exist.
    pub async fn list_app_versions(
        &self,
        tenant: &TenantScope,
        ns: &str,
        app: &str,
    ) -> Result<Vec<String>, Error> {
        sqlx::query(
            "SELECT version FROM app_versions WHERE tenant_id = $1 AND namespace = $2 AND app = $3 ORDER BY seq",
        )
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(|r| r.try_get::<String, _>(0)).collect())
        .map_err(db)
    }

    /// Creates the app if needed and stores the version (see [`PutAppVersion`]).
    pub async fn put_app_version(
        &self,
        tenant: &TenantScope,
        ns: &str,
        app: &str,
        new: &NewAppVersion<'_>,
        now: i64,
    ) -> Result<PutAppVersion, Error> {
        let mut tx = self.begin_write().await?;
        // A no-op update locks the namespace row (PostgreSQL), so a concurrent namespace
        // delete cannot slip between this check and the insert.
        let ns_found = sqlx::query("UPDATE namespaces SET name = name WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.as_str())
            .bind(ns)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
            == 1;
        if !ns_found {
            return Ok(PutAppVersion::NoNamespace);
        }
        sqlx::query(
            "INSERT INTO apps (tenant_id, namespace, name, create_time) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // Serialises the version writes of one app (the `seq` allocation below).
        sqlx::query("UPDATE apps SET name = name WHERE tenant_id = $1 AND namespace = $2 AND name = $3")
            .bind(tenant.as_str())
            .bind(ns)
            .bind(app)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let existing = sqlx::query(sqlf!(
            "SELECT {COLUMNS} FROM app_versions WHERE tenant_id = $1 AND namespace = $2 AND app = $3 AND version = $4"
        ))
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .bind(new.version)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(version_row).transpose())
        .map_err(db)?;
        if let Some(old) = &existing {
            if old.description == new.description && old.spec == new.spec {
                return Ok(PutAppVersion::Unchanged(old.clone()));
            }
            if !new.overwritable {
                return Ok(PutAppVersion::Conflict);
            }
        }
        let seq: i64 = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM app_versions WHERE tenant_id = $1 AND namespace = $2 AND app = $3",
        )
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .map_err(db)?;
        let sql = if existing.is_some() {
            "UPDATE app_versions SET description = $5, spec = $6, created = $7, seq = $8 \
             WHERE tenant_id = $1 AND namespace = $2 AND app = $3 AND version = $4"
        } else {
            "INSERT INTO app_versions (tenant_id, namespace, app, version, description, spec, created, seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        };
        sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(ns)
            .bind(app)
            .bind(new.version)
            .bind(new.description)
            .bind(new.spec)
            .bind(now)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let row = AppVersionRow {
            app: app.to_string(),
            version: new.version.to_string(),
            description: new.description.to_string(),
            spec: new.spec.to_string(),
            created: now,
        };
        let mut journal = self.journal(tenant);
        let verb = if seq == 1 { Verb::Created } else { Verb::Updated };
        journal.row(verb, Changed::App(ns, &row));
        journal.commit(tx, tenant).await?;
        Ok(PutAppVersion::Stored(row))
    }

    /// Deletes the app with all its versions; false when it does not exist.
    pub async fn delete_app(&self, tenant: &TenantScope, ns: &str, app: &str) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let mut journal = self.journal(tenant);
        journal_app_deletes(&mut tx, &mut journal, tenant, ns, Some(app)).await?;
        let done = sqlx::query("DELETE FROM apps WHERE tenant_id = $1 AND namespace = $2 AND name = $3")
            .bind(tenant.as_str())
            .bind(ns)
            .bind(app)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
            == 1;
        journal.commit(tx, tenant).await?;
        Ok(done)
    }

    /// Deletes one version; the last version's delete deletes the app. False when the version
    /// does not exist.
    pub async fn delete_app_version(
        &self,
        tenant: &TenantScope,
        ns: &str,
        app: &str,
        version: &str,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let mut journal = self.journal(tenant);
        let before = current_versions(&mut tx, tenant, ns, Some(app)).await?;
        let done = sqlx::query(
            "DELETE FROM app_versions WHERE tenant_id = $1 AND namespace = $2 AND app = $3 AND version = $4",
        )
        .bind(tenant.as_str())
        .bind(ns)
        .bind(app)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if done {
            sqlx::query(
                "DELETE FROM apps WHERE tenant_id = $1 AND namespace = $2 AND name = $3 AND NOT EXISTS \
                 (SELECT 1 FROM app_versions v WHERE v.tenant_id = $1 AND v.namespace = $2 AND v.app = $3)",
            )
            .bind(tenant.as_str())
            .bind(ns)
            .bind(app)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            // The app now shows its remaining current version, or is gone with its last.
            match current_versions(&mut tx, tenant, ns, Some(app)).await?.first() {
                Some(now) => journal.row(Verb::Updated, Changed::App(ns, now)),
                None => {
                    for v in &before {
                        journal.row(Verb::Deleted, Changed::App(ns, v));
                    }
                }
            }
        }
        journal.commit(tx, tenant).await?;
        Ok(done)
    }
}
