//! CDAP namespaces of a tenant.

use corral_types::{Error, TenantScope, Verb};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::apps::journal_app_deletes;
use crate::{Changed, Store, db};

/// A stored namespace; `config` is a JSON object of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRow {
    pub name: String,
    pub description: String,
    pub config: String,
}

fn ns_row(r: &AnyRow) -> Result<NamespaceRow, sqlx::Error> {
    Ok(NamespaceRow {
        name: r.try_get(0)?,
        description: r.try_get(1)?,
        config: r.try_get(2)?,
    })
}

impl Store {
    pub async fn list_namespaces(&self, tenant: &TenantScope) -> Result<Vec<NamespaceRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT name, description, config FROM namespaces WHERE tenant_id = $1 ORDER BY {}",
            self.bytewise("name")
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(ns_row).collect())
        .map_err(db)
    }

    pub async fn get_namespace(
        &self,
        tenant: &TenantScope,
        name: &str,
    ) -> Result<Option<NamespaceRow>, Error> {
        const SQL: &str =
            "SELECT name, description, config FROM namespaces WHERE tenant_id = $1 AND name = $2";
        if let Some(fast) = &self.fast {
            return fast.read(|c| {
                use rusqlite::OptionalExtension;
                c.prepare_cached(SQL)?
                    .query_row([tenant.as_str(), name], |r| {
                        Ok(NamespaceRow {
                            name: r.get(0)?,
                            description: r.get(1)?,
                            config: r.get(2)?,
                        })
                    })
                    .optional()
            });
        }
        sqlx::query(SQL)
            .bind(tenant.as_str())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .and_then(|r| r.as_ref().map(ns_row).transpose())
            .map_err(db)
    }

    /// Creates the namespace unless it exists; either way answers what is stored now.
    pub async fn create_namespace(
        &self,
        tenant: &TenantScope,
        ns: &NamespaceRow,
        now: i64,
    ) -> Result<NamespaceRow, Error> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO namespaces (tenant_id, name, description, config, create_time) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(&ns.name)
        .bind(&ns.description)
        .bind(&ns.config)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        let stored = sqlx::query(
            "SELECT name, description, config FROM namespaces WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant.as_str())
        .bind(&ns.name)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| ns_row(&r))
        .map_err(db)?;
        let mut journal = self.journal(tenant);
        if inserted {
            journal.row(Verb::Created, Changed::Namespace(&stored));
        }
        journal.commit(tx, tenant).await?;
        Ok(stored)
    }

    /// Replaces the fields given; `None` when the namespace does not exist.
    pub async fn update_namespace(
        &self,
        tenant: &TenantScope,
        name: &str,
        description: Option<&str>,
        config: Option<&str>,
    ) -> Result<Option<NamespaceRow>, Error> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE namespaces SET description = COALESCE($1, description), config = COALESCE($2, config) \
             WHERE tenant_id = $3 AND name = $4",
        )
        .bind(description)
        .bind(config)
        .bind(tenant.as_str())
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let stored = sqlx::query(
            "SELECT name, description, config FROM namespaces WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant.as_str())
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| ns_row(&r))
        .map_err(db)?;
        let mut journal = self.journal(tenant);
        journal.row(Verb::Updated, Changed::Namespace(&stored));
        journal.commit(tx, tenant).await?;
        Ok(Some(stored))
    }

    /// Deletes a namespace and everything in it; `default` is emptied and kept.
    /// False when it does not exist.
    pub async fn delete_namespace(&self, tenant: &TenantScope, name: &str) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let mut journal = self.journal(tenant);
        let before = sqlx::query(
            "SELECT name, description, config FROM namespaces WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(ns_row).transpose())
        .map_err(db)?;
        if before.is_some() {
            journal_app_deletes(&mut tx, &mut journal, tenant, name, None).await?;
        }
        let done = if name == "default" {
            let exists = sqlx::query("SELECT 1 FROM namespaces WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .is_some();
            if exists {
                // Emptying `default`: its apps go (their versions cascade).
                sqlx::query("DELETE FROM apps WHERE tenant_id = $1 AND namespace = $2")
                    .bind(tenant.as_str())
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            exists
        } else {
            sqlx::query("DELETE FROM namespaces WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected()
                == 1
        };
        if let Some(ns) = before.as_ref().filter(|_| done && name != "default") {
            journal.row(Verb::Deleted, Changed::Namespace(ns));
        }
        journal.commit(tx, tenant).await?;
        Ok(done)
    }
}
