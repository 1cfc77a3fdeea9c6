//! Commissaire networks and container manager configurations of a tenant.
//!
//! Both are "create if absent" objects: a `PUT` either creates the row or reports the row that
//! is there, in one transaction, so two racing creates of one name agree on a single winner and
//! core decides 200 or 409 against what is really stored. A delete first takes the tenant's
//! row lock (`UPDATE tenants ... WHERE id = $1`, the lock cluster creation takes before it
//! checks that the network and container manager exist), then removes the row and looks for a
//! cluster that still uses it, rolling back if one does. On PostgreSQL the shared lock makes a
//! delete and a cluster create of the same tenant run one after the other, so a cluster can
//! never end up naming a deleted object; SQLite's single writer serialises them anyway.

use corral_types::{Error, TenantScope};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, db};

/// A stored network; `options` is a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRow {
    pub name: String,
    pub kind: String,
    pub options: String,
}

/// A stored container manager configuration; `options` is a JSON object without the token,
/// `token_sealed` the token sealed by core (`""` when there is none).
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerManagerRow {
    pub name: String,
    pub kind: String,
    pub options: String,
    pub token_sealed: String,
}

/// Hand-written so that even the sealed token never reaches a log line.
impl std::fmt::Debug for ContainerManagerRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerManagerRow")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("options", &self.options)
            .field("has_token", &!self.token_sealed.is_empty())
            .finish()
    }
}

/// What a create-if-absent found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateIfAbsent<T> {
    /// The row did not exist and was written as given.
    Created(T),
    /// A row of that name was there already; it is unchanged and answered as stored.
    Existing(T),
}

/// What a delete of an object that clusters may use did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteInUse {
    Deleted,
    NotFound,
    /// Nothing was deleted: this cluster (the first by name) uses the object.
    UsedBy(String),
}

fn network_row(r: &AnyRow) -> Result<NetworkRow, sqlx::Error> {
    Ok(NetworkRow {
        name: r.try_get(0)?,
        kind: r.try_get(1)?,
        options: r.try_get(2)?,
    })
}

fn cm_row(r: &AnyRow) -> Result<ContainerManagerRow, sqlx::Error> {
    Ok(ContainerManagerRow {
        name: r.try_get(0)?,
        kind: r.try_get(1)?,
        options: r.try_get(2)?,
        token_sealed: r.try_get(3)?,
    })
}

const NETWORK_COLUMNS: &str = "name, type, options";
const CM_COLUMNS: &str = "name, type, options, token_sealed";

impl Store {
    /// The tenant's network names, by byte value.
    pub async fn list_network_names(&self, tenant: &TenantScope) -> Result<Vec<String>, Error> {
        self.list_names(tenant, "networks").await
    }

    pub async fn get_network(&self, tenant: &TenantScope, name: &str) -> Result<Option<NetworkRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {NETWORK_COLUMNS} FROM networks WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.as_ref().map(network_row).transpose())
        .map_err(db)
    }

    /// Creates the network unless one of that name exists; either way answers what is stored.
    pub async fn create_network(
        &self,
        tenant: &TenantScope,
        row: &NetworkRow,
    ) -> Result<CreateIfAbsent<NetworkRow>, Error> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO networks (tenant_id, name, type, options) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(&row.name)
        .bind(&row.kind)
        .bind(&row.options)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        let stored = sqlx::query(sqlf!(
            "SELECT {NETWORK_COLUMNS} FROM networks WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant.as_str())
        .bind(&row.name)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| network_row(&r))
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(if inserted {
            CreateIfAbsent::Created(stored)
        } else {
            CreateIfAbsent::Existing(stored)
        })
    }

    /// Deletes the network unless a cluster of the tenant uses it.
    pub async fn delete_network(&self, tenant: &TenantScope, name: &str) -> Result<DeleteInUse, Error> {
        self.delete_unless_used(tenant, "networks", "network", name).await
    }

    /// The tenant's container manager names, by byte value.
    pub async fn list_container_manager_names(&self, tenant: &TenantScope) -> Result<Vec<String>, Error> {
        self.list_names(tenant, "container_managers").await
    }

    pub async fn get_container_manager(
        &self,
        tenant: &TenantScope,
        name: &str,
    ) -> Result<Option<ContainerManagerRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {CM_COLUMNS} FROM container_managers WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.as_ref().map(cm_row).transpose())
        .map_err(db)
    }

    /// Creates the container manager unless one of that name exists; either way answers what
    /// is stored.
    pub async fn create_container_manager(
        &self,
        tenant: &TenantScope,
        row: &ContainerManagerRow,
    ) -> Result<CreateIfAbsent<ContainerManagerRow>, Error> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO container_managers (tenant_id, name, type, options, token_sealed) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(&row.name)
        .bind(&row.kind)
        .bind(&row.options)
        .bind(&row.token_sealed)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        let stored = sqlx::query(sqlf!(
            "SELECT {CM_COLUMNS} FROM container_managers WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant.as_str())
        .bind(&row.name)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| cm_row(&r))
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(if inserted {
            CreateIfAbsent::Created(stored)
        } else {
            CreateIfAbsent::Existing(stored)
        })
    }

    /// Deletes the container manager unless a cluster of the tenant uses it.
    pub async fn delete_container_manager(
        &self,
        tenant: &TenantScope,
        name: &str,
    ) -> Result<DeleteInUse, Error> {
        self.delete_unless_used(tenant, "container_managers", "container_manager", name)
            .await
    }

    /// `table` and `cluster_column` are constants of this module, never input.
    async fn list_names(&self, tenant: &TenantScope, table: &str) -> Result<Vec<String>, Error> {
        sqlx::query_scalar::<_, String>(sqlf!(
            "SELECT name FROM {table} WHERE tenant_id = $1 ORDER BY {}",
            self.bytewise("name")
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    /// Deletes `name` from `table`, then rolls back if a cluster's `cluster_column` names it,
    /// under the tenant's row lock (see the module comment).
    async fn delete_unless_used(
        &self,
        tenant: &TenantScope,
        table: &str,
        cluster_column: &str,
        name: &str,
    ) -> Result<DeleteInUse, Error> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE tenants SET workers = workers WHERE id = $1")
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let deleted = sqlx::query(sqlf!("DELETE FROM {table} WHERE tenant_id = $1 AND name = $2"))
            .bind(tenant.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if deleted == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(DeleteInUse::NotFound);
        }
        let user = sqlx::query_scalar::<_, String>(sqlf!(
            "SELECT name FROM clusters WHERE tenant_id = $1 AND {cluster_column} = $2 ORDER BY {} LIMIT 1",
            self.bytewise("name")
        ))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(cluster) = user {
            tx.rollback().await.map_err(db)?;
            return Ok(DeleteInUse::UsedBy(cluster));
        }
        tx.commit().await.map_err(db)?;
        Ok(DeleteInUse::Deleted)
    }
}
