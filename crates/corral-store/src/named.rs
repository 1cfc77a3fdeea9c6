//! Tenant-scoped named objects: tables keyed by `(tenant_id, name)` whose rows are created
//! once, read, listed and deleted, never edited in place (Commissaire's networks and container
//! managers). A kind declares its table, its row type and its in-use rule by implementing
//! [`NamedObject`]; [`Store::named`] gives the one implementation of the operations.
//!
//! A create is "create if absent": it either inserts the row or reports the row that is
//! there, in one transaction, so two racing creates of one name agree on a single winner and
//! core decides 200 or 409 against what is really stored. A delete first takes the tenant's
//! row lock (`UPDATE tenants ... WHERE id = $1`, the lock cluster creation takes before it
//! checks that the objects it names exist), then removes the row and looks for a user of it,
//! rolling back if there is one. On PostgreSQL the shared lock makes a delete and a cluster
//! create of the same tenant run one after the other, so a cluster can never end up naming a
//! deleted object; SQLite's single writer serialises them anyway.

use std::marker::PhantomData;

use corral_types::{Error, TenantScope, Verb};
use sqlx::any::AnyRow;

use crate::{Changed, Store, db};

/// A query on the `Any` driver, as [`NamedObject::bind`] receives and returns it.
pub type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// The in-use rule of a kind: rows of `table` (of the same tenant) whose `column` holds an
/// object's name keep that object from being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsedBy {
    pub table: &'static str,
    pub column: &'static str,
}

/// A kind of tenant-scoped named object. Table and column names are constants of this crate,
/// so the SQL built from them obeys the `sqlf!` rule.
pub trait NamedObject: Sized + Send + Sync + Unpin + 'static {
    /// The table; its key is `(tenant_id, name)`.
    const TABLE: &'static str;
    /// The columns besides `tenant_id`, `name` first, in the order `from_row` reads them and
    /// `bind` binds them.
    const COLUMNS: &'static [&'static str];
    /// What keeps an object of this kind from being deleted, if anything.
    const USED_BY: Option<UsedBy>;

    fn name(&self) -> &str;
    /// Reads a row selected as `COLUMNS`.
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error>;
    /// Binds this row's values of `COLUMNS`, in order.
    fn bind<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q>;
    /// This row as the change log records it.
    fn changed(&self) -> Changed<'_>;
}

/// What a create-if-absent found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateIfAbsent<T> {
    /// The row did not exist and was written as given.
    Created(T),
    /// A row of that name was there already; it is unchanged and answered as stored.
    Existing(T),
}

/// What a delete of an object that others may use did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteInUse {
    Deleted,
    NotFound,
    /// Nothing was deleted: this row of the `USED_BY` table (the first by name) uses the object.
    UsedBy(String),
}

/// The operations on one kind's table, from [`Store::named`].
pub struct Named<'s, T> {
    store: &'s Store,
    kind: PhantomData<fn() -> T>,
}

impl Store {
    /// The table of the named-object kind `T`.
    pub fn named<T: NamedObject>(&self) -> Named<'_, T> {
        Named {
            store: self,
            kind: PhantomData,
        }
    }
}

impl<T: NamedObject> Named<'_, T> {
    fn select() -> sqlx::AssertSqlSafe<String> {
        sqlf!(
            "SELECT {} FROM {} WHERE tenant_id = $1 AND name = $2",
            T::COLUMNS.join(", "),
            T::TABLE
        )
    }

    /// The tenant's object names, by byte value.
    pub async fn list_names(&self, tenant: &TenantScope) -> Result<Vec<String>, Error> {
        sqlx::query_scalar::<_, String>(sqlf!(
            "SELECT name FROM {} WHERE tenant_id = $1 ORDER BY {}",
            T::TABLE,
            self.store.bytewise("name")
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.store.pool)
        .await
        .map_err(db)
    }

    pub async fn get(&self, tenant: &TenantScope, name: &str) -> Result<Option<T>, Error> {
        sqlx::query(Self::select())
            .bind(tenant.as_str())
            .bind(name)
            .fetch_optional(&self.store.pool)
            .await
            .and_then(|r| r.as_ref().map(T::from_row).transpose())
            .map_err(db)
    }

    /// Creates the object unless one of that name exists; either way answers what is stored.
    pub async fn create_if_absent(&self, tenant: &TenantScope, row: &T) -> Result<CreateIfAbsent<T>, Error> {
        let placeholders = (2..=T::COLUMNS.len() + 1)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = sqlf!(
            "INSERT INTO {} (tenant_id, {}) VALUES ($1, {placeholders}) ON CONFLICT DO NOTHING",
            T::TABLE,
            T::COLUMNS.join(", ")
        );
        let mut tx = self.store.begin_write().await?;
        let inserted = row
            .bind(sqlx::query(insert).bind(tenant.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
            == 1;
        let stored = sqlx::query(Self::select())
            .bind(tenant.as_str())
            .bind(row.name())
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| T::from_row(&r))
            .map_err(db)?;
        let mut journal = self.store.journal(tenant);
        if inserted {
            journal.row(Verb::Created, stored.changed());
        }
        journal.commit(tx, tenant).await?;
        Ok(if inserted {
            CreateIfAbsent::Created(stored)
        } else {
            CreateIfAbsent::Existing(stored)
        })
    }

    /// Deletes the object unless `T::USED_BY` finds a user of it, under the tenant's row lock
    /// (see the module comment).
    pub async fn delete(&self, tenant: &TenantScope, name: &str) -> Result<DeleteInUse, Error> {
        let mut tx = self.store.begin_write().await?;
        sqlx::query("UPDATE tenants SET workers = workers WHERE id = $1")
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let deleted = sqlx::query(sqlf!(
            "DELETE FROM {} WHERE tenant_id = $1 AND name = $2 RETURNING {}",
            T::TABLE,
            T::COLUMNS.join(", ")
        ))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|r| r.as_ref().map(T::from_row).transpose())
        .map_err(db)?;
        let Some(deleted) = deleted else {
            tx.rollback().await.map_err(db)?;
            return Ok(DeleteInUse::NotFound);
        };
        if let Some(UsedBy { table, column }) = T::USED_BY {
            let user = sqlx::query_scalar::<_, String>(sqlf!(
                "SELECT name FROM {table} WHERE tenant_id = $1 AND {column} = $2 ORDER BY {} LIMIT 1",
                self.store.bytewise("name")
            ))
            .bind(tenant.as_str())
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(user) = user {
                tx.rollback().await.map_err(db)?;
                return Ok(DeleteInUse::UsedBy(user));
            }
        }
        let mut journal = self.store.journal(tenant);
        journal.row(Verb::Deleted, deleted.changed());
        journal.commit(tx, tenant).await?;
        Ok(DeleteInUse::Deleted)
    }
}
