//! Tenants, users, API keys, access tokens and profiles.

use corral_types::{ApiKeyId, Error, Role, TenantId, TenantScope, Verb};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::changes::Journal;
use crate::{Changed, Store, db};

/// The tenant's name, which a user's view carries.
async fn tenant_name(tx: &mut Transaction<'static, Any>, tenant: &TenantScope) -> Result<String, Error> {
    sqlx::query("SELECT name FROM tenants WHERE id = $1")
        .bind(tenant.as_str())
        .fetch_one(&mut **tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db)
}

async fn journal_user(
    tx: &mut Transaction<'static, Any>,
    journal: &mut Journal<'_>,
    tenant: &TenantScope,
    verb: Verb,
    user: &UserRow,
) -> Result<(), Error> {
    let name = tenant_name(tx, tenant).await?;
    journal.row(verb, Changed::User(&name, user));
    Ok(())
}

/// A user's keys, inside a transaction.
async fn keys_in(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantScope,
    user: &str,
    id: Option<ApiKeyId>,
) -> Result<Vec<ApiKeyRow>, Error> {
    sqlx::query(sqlf!(
        "SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 AND user_id = $2 AND ($3 IS NULL OR id = $3) \
         ORDER BY create_time, id"
    ))
    .bind(tenant.as_str())
    .bind(user)
    .bind(id.map(|i| i.to_string()))
    .fetch_all(&mut **tx)
    .await
    .and_then(|rows| rows.iter().map(key_row).collect())
    .map_err(db)
}

/// A stored tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    pub description: String,
    pub workers: i64,
    pub max_clusters: i64,
    pub max_nodes: i64,
    pub create_time: i64,
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub role: Role,
    pub description: String,
    pub create_time: i64,
}

/// A stored API key's public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub prefix: String,
    pub description: String,
    pub create_time: i64,
    pub expire_time: Option<i64>,
    pub last_used_time: Option<i64>,
}

/// A key about to be stored: only the hash of the secret.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub key_hash: String,
    pub prefix: String,
    pub description: String,
    pub create_time: i64,
    pub expire_time: Option<i64>,
}

/// What a credential resolves to: the key (or token) hash to compare, and its owner.
#[derive(Debug, Clone)]
pub struct CredentialRow {
    pub stored_hash: String,
    pub api_key_id: ApiKeyId,
    pub expire_time: Option<i64>,
    pub last_used_time: Option<i64>,
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub user_id: String,
    pub role: Role,
}

/// Everything a new tenant is created with, in one transaction.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub tenant: TenantRow,
    pub admin: UserRow,
    pub key: NewApiKey,
    /// Copy the superadmin tenant's networks and container managers.
    pub copy_from_superadmin: bool,
    /// The sum of all tenants' workers may not pass this.
    pub worker_capacity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateTenantOutcome {
    Created,
    NameTaken,
    NoCapacity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateTenantOutcome {
    Updated(TenantRow),
    NotFound,
    QuotaViolated,
    NoCapacity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteTenantOutcome {
    Deleted,
    NotFound,
    HasWorkers(i64),
}

/// Outcome of a change that must keep at least one admin in the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange<T> {
    Done(T),
    NotFound,
    LastAdmin,
}

const TENANT_COLS: &str = "id, name, description, workers, max_clusters, max_nodes, create_time";
const USER_COLS: &str = "id, role, description, create_time";
const KEY_COLS: &str = "id, prefix, description, create_time, expire_time, last_used_time";
const CRED_SELECT: &str = "SELECT k.id, k.expire_time, k.last_used_time, t.id, t.name, u.id, u.role";
const CRED_JOIN: &str = "JOIN users u ON u.tenant_id = k.tenant_id AND u.id = k.user_id \
                         JOIN tenants t ON t.id = k.tenant_id";

fn tenant_row(r: &AnyRow) -> Result<TenantRow, sqlx::Error> {
    Ok(TenantRow {
        id: TenantId::from_trusted(r.try_get::<String, _>(0)?),
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        workers: r.try_get(3)?,
        max_clusters: r.try_get(4)?,
        max_nodes: r.try_get(5)?,
        create_time: r.try_get(6)?,
    })
}

fn user_row(r: &AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: r.try_get(0)?,
        role: r.try_get(1)?,
        description: r.try_get(2)?,
        create_time: r.try_get(3)?,
    })
}

fn parse_key_id(s: String) -> Result<ApiKeyId, sqlx::Error> {
    ApiKeyId::parse(&s).ok_or_else(|| sqlx::Error::Decode(format!("bad api key id {s:?}").into()))
}

fn key_row(r: &AnyRow) -> Result<ApiKeyRow, sqlx::Error> {
    Ok(ApiKeyRow {
        id: parse_key_id(r.try_get(0)?)?,
        prefix: r.try_get(1)?,
        description: r.try_get(2)?,
        create_time: r.try_get(3)?,
        expire_time: r.try_get(4)?,
        last_used_time: r.try_get(5)?,
    })
}

fn cred_row(
    r: &AnyRow,
    stored_hash: String,
    expire_override: Option<i64>,
) -> Result<CredentialRow, sqlx::Error> {
    let key_expire: Option<i64> = r.try_get(1)?;
    Ok(CredentialRow {
        stored_hash,
        api_key_id: parse_key_id(r.try_get(0)?)?,
        // A token expires at its own time or its key's, whichever comes first.
        expire_time: match (key_expire, expire_override) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        last_used_time: r.try_get(2)?,
        tenant_id: TenantId::from_trusted(r.try_get::<String, _>(3)?),
        tenant_name: r.try_get(4)?,
        user_id: r.try_get(5)?,
        role: r.try_get(6)?,
    })
}

async fn insert_user(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantId,
    u: &UserRow,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "INSERT INTO users (tenant_id, id, role, description, create_time) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(&u.id)
    .bind(u.role)
    .bind(&u.description)
    .bind(u.create_time)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

async fn insert_key(
    tx: &mut Transaction<'static, Any>,
    tenant: &TenantId,
    user: &str,
    k: &NewApiKey,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, user_id, key_hash, prefix, description, create_time, expire_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(k.id.to_string())
    .bind(tenant.as_str())
    .bind(user)
    .bind(&k.key_hash)
    .bind(&k.prefix)
    .bind(&k.description)
    .bind(k.create_time)
    .bind(k.expire_time)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Takes the tenants lock: serialises the capacity checks of concurrent tenant writes.
/// An update of a fixed row is a row lock on PostgreSQL and a no-op under SQLite's one writer.
async fn lock_tenants(tx: &mut Transaction<'static, Any>) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO corral_meta (key, value) VALUES ('tenants_lock', '') \
         ON CONFLICT (key) DO UPDATE SET value = corral_meta.value",
    )
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Takes the lock of one tenant's row: serialises the changes that must leave the tenant an
/// admin. Without it, under PostgreSQL's READ COMMITTED two admins removing each other at
/// once would each count the other and both succeed. A no-op update is a row lock on
/// PostgreSQL and costs nothing under SQLite's one writer.
async fn lock_tenant(tx: &mut Transaction<'static, Any>, tenant: &TenantId) -> Result<(), Error> {
    sqlx::query("UPDATE tenants SET workers = workers WHERE id = $1")
        .bind(tenant.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn sum_workers(tx: &mut Transaction<'static, Any>, except: Option<&TenantId>) -> Result<i64, Error> {
    let except = except.map(|t| t.as_str().to_string()).unwrap_or_default();
    // SUM over BIGINT is NUMERIC on PostgreSQL: cast it back so both engines answer a BIGINT.
    sqlx::query("SELECT CAST(COALESCE(SUM(workers), 0) AS BIGINT) FROM tenants WHERE id <> $1")
        .bind(except)
        .fetch_one(&mut **tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db)
}

/// Inserts a tenant with the objects every tenant has (README 2.4).
async fn insert_tenant_objects(tx: &mut Transaction<'static, Any>, t: &NewTenant) -> Result<(), Error> {
    let row = &t.tenant;
    sqlx::query(sqlf!(
        "INSERT INTO tenants ({TENANT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(row.id.as_str())
    .bind(&row.name)
    .bind(&row.description)
    .bind(row.workers)
    .bind(row.max_clusters)
    .bind(row.max_nodes)
    .bind(row.create_time)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO namespaces (tenant_id, name, description, config, create_time) \
         VALUES ($1, 'default', 'Default Namespace', '{}', $2)",
    )
    .bind(row.id.as_str())
    .bind(row.create_time)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO networks (tenant_id, name, type, options) VALUES ($1, 'default', 'flannel_etcd', '{}')",
    )
    .bind(row.id.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    insert_user(tx, &row.id, &t.admin).await?;
    insert_key(tx, &row.id, &t.admin.id, &t.key).await?;
    if t.copy_from_superadmin {
        for table in ["networks", "container_managers"] {
            sqlx::query(sqlf!(
                "INSERT INTO {table} (tenant_id, name, type, options) \
                 SELECT $1, s.name, s.type, s.options FROM {table} s JOIN tenants st ON st.id = s.tenant_id \
                 WHERE st.name = 'superadmin' AND s.name <> 'default'"
            ))
            .bind(row.id.as_str())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        }
    }
    Ok(())
}

impl Store {
    /// Creates the superadmin tenant, its admin and first key on an empty store. Returns
    /// false (and changes nothing) when the store was bootstrapped before, even if that key
    /// has since been deleted. `persist` runs before the commit: if it fails, nothing is stored.
    pub async fn bootstrap(
        &self,
        t: &NewTenant,
        persist: impl FnOnce() -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        // Replicas starting together on one PostgreSQL queue here; the later ones then see
        // the marker the first committed.
        lock_tenants(&mut tx).await?;
        let done = sqlx::query("SELECT value FROM corral_meta WHERE key = 'bootstrapped'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if done.is_some() {
            return Ok(false);
        }
        insert_tenant_objects(&mut tx, t).await?;
        sqlx::query("INSERT INTO corral_meta (key, value) VALUES ('bootstrapped', $1)")
            .bind(t.tenant.create_time.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        persist()?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {TENANT_COLS} FROM tenants ORDER BY {}",
            self.bytewise("name")
        ))
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(tenant_row).collect())
        .map_err(db)
    }

    pub async fn get_tenant(&self, name: &str) -> Result<Option<TenantRow>, Error> {
        sqlx::query(sqlf!("SELECT {TENANT_COLS} FROM tenants WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .and_then(|r| r.as_ref().map(tenant_row).transpose())
            .map_err(db)
    }

    pub async fn create_tenant(&self, t: &NewTenant) -> Result<CreateTenantOutcome, Error> {
        let mut tx = self.begin_write().await?;
        lock_tenants(&mut tx).await?;
        let exists = sqlx::query("SELECT 1 FROM tenants WHERE name = $1")
            .bind(&t.tenant.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if exists.is_some() {
            return Ok(CreateTenantOutcome::NameTaken);
        }
        if sum_workers(&mut tx, None).await?.saturating_add(t.tenant.workers) > t.worker_capacity {
            return Ok(CreateTenantOutcome::NoCapacity);
        }
        insert_tenant_objects(&mut tx, t).await?;
        tx.commit().await.map_err(db)?;
        Ok(CreateTenantOutcome::Created)
    }

    /// Replaces a tenant's settings, checking its quotas against what it holds now.
    pub async fn update_tenant(
        &self,
        new: &TenantRow,
        worker_capacity: i64,
    ) -> Result<UpdateTenantOutcome, Error> {
        let mut tx = self.begin_write().await?;
        lock_tenants(&mut tx).await?;
        let Some(old) = sqlx::query(sqlf!("SELECT {TENANT_COLS} FROM tenants WHERE name = $1"))
            .bind(&new.name)
            .fetch_optional(&mut *tx)
            .await
            .and_then(|r| r.as_ref().map(tenant_row).transpose())
            .map_err(db)?
        else {
            return Ok(UpdateTenantOutcome::NotFound);
        };
        let count = |table: &'static str| {
            sqlx::query(sqlf!("SELECT COUNT(*) FROM {table} WHERE tenant_id = $1")).bind(old.id.as_str())
        };
        let clusters: i64 = count("clusters")
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db)?;
        let hosts: i64 = count("hosts")
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db)?;
        if new.max_clusters < clusters || new.max_nodes < hosts {
            return Ok(UpdateTenantOutcome::QuotaViolated);
        }
        if new.workers > old.workers
            && sum_workers(&mut tx, Some(&old.id))
                .await?
                .saturating_add(new.workers)
                > worker_capacity
        {
            return Ok(UpdateTenantOutcome::NoCapacity);
        }
        sqlx::query(
            "UPDATE tenants SET description = $1, workers = $2, max_clusters = $3, max_nodes = $4 WHERE id = $5",
        )
        .bind(&new.description)
        .bind(new.workers)
        .bind(new.max_clusters)
        .bind(new.max_nodes)
        .bind(old.id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(UpdateTenantOutcome::Updated(TenantRow {
            id: old.id,
            create_time: old.create_time,
            ..new.clone()
        }))
    }

    /// Deletes a tenant and, by cascade, every row it owns.
    pub async fn delete_tenant(&self, name: &str) -> Result<DeleteTenantOutcome, Error> {
        let mut tx = self.begin_write().await?;
        // Queue behind a concurrent `update_tenant`: otherwise a PUT raising `workers` could
        // commit between our read of `workers` and the delete, and a tenant with workers
        // would be deleted.
        lock_tenants(&mut tx).await?;
        let Some(row) = sqlx::query("SELECT id, workers FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
        else {
            return Ok(DeleteTenantOutcome::NotFound);
        };
        let (id, workers): (String, i64) = (row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?);
        if workers > 0 {
            return Ok(DeleteTenantOutcome::HasWorkers(workers));
        }
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(DeleteTenantOutcome::Deleted)
    }

    /// Makes sure tenant `name` has an `admin` user with role admin and gives it `key`.
    /// `None` when the tenant does not exist.
    pub async fn ensure_admin_with_key(
        &self,
        tenant_name: &str,
        admin: &UserRow,
        key: &NewApiKey,
    ) -> Result<Option<(TenantRow, UserRow)>, Error> {
        let mut tx = self.begin_write().await?;
        let Some(tenant) = sqlx::query(sqlf!("SELECT {TENANT_COLS} FROM tenants WHERE name = $1"))
            .bind(tenant_name)
            .fetch_optional(&mut *tx)
            .await
            .and_then(|r| r.as_ref().map(tenant_row).transpose())
            .map_err(db)?
        else {
            return Ok(None);
        };
        if !insert_user(&mut tx, &tenant.id, admin).await? {
            sqlx::query("UPDATE users SET role = 'admin' WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.id.as_str())
                .bind(&admin.id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        insert_key(&mut tx, &tenant.id, &admin.id, key).await?;
        let user = sqlx::query(sqlf!(
            "SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.id.as_str())
        .bind(&admin.id)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| user_row(&r))
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some((tenant, user)))
    }

    pub async fn list_users(&self, tenant: &TenantScope) -> Result<Vec<UserRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {USER_COLS} FROM users WHERE tenant_id = $1 ORDER BY {}",
            self.bytewise("id")
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(user_row).collect())
        .map_err(db)
    }

    pub async fn get_user(&self, tenant: &TenantScope, id: &str) -> Result<Option<UserRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.as_ref().map(user_row).transpose())
        .map_err(db)
    }

    /// Inserts a user; false when the id is taken in this tenant.
    pub async fn create_user(&self, tenant: &TenantScope, user: &UserRow) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let created = insert_user(&mut tx, tenant.id(), user).await?;
        let mut journal = self.journal(tenant);
        if created {
            journal_user(&mut tx, &mut journal, tenant, Verb::Created, user).await?;
        }
        journal.commit(tx, tenant).await?;
        Ok(created)
    }

    /// Counts the tenant's admins other than `except`, inside a write transaction.
    async fn other_admins(
        tx: &mut Transaction<'static, Any>,
        tenant: &TenantScope,
        except: &str,
    ) -> Result<i64, Error> {
        sqlx::query("SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND role = 'admin' AND id <> $2")
            .bind(tenant.as_str())
            .bind(except)
            .fetch_one(&mut **tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db)
    }

    pub async fn update_user(
        &self,
        tenant: &TenantScope,
        id: &str,
        role: Option<Role>,
        description: Option<&str>,
    ) -> Result<UserChange<UserRow>, Error> {
        let mut tx = self.begin_write().await?;
        lock_tenant(&mut tx, tenant.id()).await?;
        let Some(old) = sqlx::query(sqlf!(
            "SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(user_row).transpose())
        .map_err(db)?
        else {
            return Ok(UserChange::NotFound);
        };
        let role = role.unwrap_or(old.role);
        if old.role == Role::Admin
            && role != Role::Admin
            && Self::other_admins(&mut tx, tenant, id).await? == 0
        {
            return Ok(UserChange::LastAdmin);
        }
        let description = description.unwrap_or(&old.description);
        sqlx::query("UPDATE users SET role = $1, description = $2 WHERE tenant_id = $3 AND id = $4")
            .bind(role)
            .bind(description)
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let new = UserRow {
            role,
            description: description.to_string(),
            ..old
        };
        let mut journal = self.journal(tenant);
        journal_user(&mut tx, &mut journal, tenant, Verb::Updated, &new).await?;
        journal.commit(tx, tenant).await?;
        Ok(UserChange::Done(new))
    }

    /// Deletes a user and, by cascade, its keys, their tokens and its profile.
    pub async fn delete_user(&self, tenant: &TenantScope, id: &str) -> Result<UserChange<()>, Error> {
        let mut tx = self.begin_write().await?;
        lock_tenant(&mut tx, tenant.id()).await?;
        let Some(user) = sqlx::query(sqlf!(
            "SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(user_row).transpose())
        .map_err(db)?
        else {
            return Ok(UserChange::NotFound);
        };
        if user.role == Role::Admin && Self::other_admins(&mut tx, tenant, id).await? == 0 {
            return Ok(UserChange::LastAdmin);
        }
        let keys = keys_in(&mut tx, tenant, id, None).await?;
        sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut journal = self.journal(tenant);
        for k in &keys {
            journal.row(Verb::Deleted, Changed::Key(id, k));
        }
        journal_user(&mut tx, &mut journal, tenant, Verb::Deleted, &user).await?;
        journal.commit(tx, tenant).await?;
        Ok(UserChange::Done(()))
    }

    pub async fn list_keys(&self, tenant: &TenantScope, user: &str) -> Result<Vec<ApiKeyRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 AND user_id = $2 ORDER BY create_time, id"
        ))
        .bind(tenant.as_str())
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(key_row).collect())
        .map_err(db)
    }

    pub async fn get_key(
        &self,
        tenant: &TenantScope,
        user: &str,
        id: ApiKeyId,
    ) -> Result<Option<ApiKeyRow>, Error> {
        sqlx::query(sqlf!(
            "SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 AND user_id = $2 AND id = $3"
        ))
        .bind(tenant.as_str())
        .bind(user)
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.as_ref().map(key_row).transpose())
        .map_err(db)
    }

    /// Stores a new key of an existing user; false when the user does not exist.
    pub async fn create_key(&self, tenant: &TenantScope, user: &str, key: &NewApiKey) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Ok(false);
        }
        insert_key(&mut tx, tenant.id(), user, key).await?;
        let mut journal = self.journal(tenant);
        for k in keys_in(&mut tx, tenant, user, Some(key.id)).await? {
            journal.row(Verb::Created, Changed::Key(user, &k));
        }
        journal.commit(tx, tenant).await?;
        Ok(true)
    }

    /// Revokes a key and, by cascade, every token minted from it.
    pub async fn delete_key(&self, tenant: &TenantScope, user: &str, id: ApiKeyId) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let before = keys_in(&mut tx, tenant, user, Some(id)).await?;
        let done = sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1 AND user_id = $2 AND id = $3")
            .bind(tenant.as_str())
            .bind(user)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut journal = self.journal(tenant);
        for k in &before {
            journal.row(Verb::Deleted, Changed::Key(user, k));
        }
        journal.commit(tx, tenant).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Resolves an API key by the SHA-256 of its secret.
    pub async fn credential_by_key_hash(&self, hash: &str) -> Result<Option<CredentialRow>, Error> {
        sqlx::query(sqlf!(
            "{CRED_SELECT}, k.key_hash FROM api_keys k {CRED_JOIN} WHERE k.key_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| r.map(|r| cred_row(&r, r.try_get(7)?, None)).transpose())
        .map_err(db)
    }

    /// Resolves an access token by the SHA-256 of its secret.
    pub async fn credential_by_token_hash(&self, hash: &str) -> Result<Option<CredentialRow>, Error> {
        sqlx::query(sqlf!(
            "{CRED_SELECT}, a.token_hash, a.expire_time FROM access_tokens a \
             JOIN api_keys k ON k.id = a.api_key_id {CRED_JOIN} WHERE a.token_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .and_then(|r| {
            r.map(|r| cred_row(&r, r.try_get(7)?, Some(r.try_get(8)?)))
                .transpose()
        })
        .map_err(db)
    }

    pub async fn create_token(
        &self,
        hash: &str,
        api_key: ApiKeyId,
        now: i64,
        expire: i64,
    ) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO access_tokens (token_hash, api_key_id, create_time, expire_time) VALUES ($1, $2, $3, $4)")
            .bind(hash)
            .bind(api_key.to_string())
            .bind(now)
            .bind(expire)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // Expired tokens are useless: drop them while we hold the writer anyway.
        sqlx::query("DELETE FROM access_tokens WHERE expire_time < $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Records a successful use of a key.
    pub async fn touch_key(&self, id: ApiKeyId, now: i64) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE api_keys SET last_used_time = $1 WHERE id = $2")
            .bind(now)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    pub async fn get_profile(&self, tenant: &TenantScope, user: &str) -> Result<Option<String>, Error> {
        sqlx::query("SELECT body FROM profiles WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user)
            .fetch_optional(&self.pool)
            .await
            .and_then(|r| r.map(|r| r.try_get(0)).transpose())
            .map_err(db)
    }

    pub async fn put_profile(&self, tenant: &TenantScope, user: &str, body: &str) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO profiles (tenant_id, user_id, body) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET body = excluded.body",
        )
        .bind(tenant.as_str())
        .bind(user)
        .bind(body)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    pub async fn delete_profile(&self, tenant: &TenantScope, user: &str) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM profiles WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}

impl Store {
    /// How many tenants have a user with this id (for a Basic credential without `@tenant`).
    pub async fn count_tenants_with_user(&self, id: &str) -> Result<i64, Error> {
        sqlx::query("SELECT COUNT(*) FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db)
    }
}
