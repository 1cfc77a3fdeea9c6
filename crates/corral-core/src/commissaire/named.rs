//! The one flow of a tenant-scoped named object's API (Commissaire networks and container
//! managers, commissaire-v0.md 5.7-5.14): list, get, create by `PUT` (201, or 200 when the
//! same settings are put again, 409 when they differ), delete unless in use. A kind supplies
//! its normalisation, its comparison with a stored row and its view by implementing
//! [`NamedKind`]; the store side is `corral_store::NamedObject`.

use corral_store::{CreateIfAbsent, DeleteInUse, NamedObject};
use corral_types::ids::{invalid_name, is_valid_name};
use corral_types::{Access, Error, OpCtx, TenantScope};

use crate::commissaire::Commissaire;

/// A kind of named object as the API sees it.
pub(crate) trait NamedKind {
    /// The stored row, which also names the table.
    type Row: NamedObject;
    /// The body of a `PUT`.
    type Input: Send;
    /// What the input normalises to besides the row: the settings a re-`PUT` is compared on
    /// (they may hold what the row keeps only sealed).
    type Settings: Send + Sync;
    /// The object as answered.
    type View;
    /// The kind in messages, capitalised: "Network" in "Network 'x' does not exist.".
    const NOUN: &'static str;

    /// The optional `name` of the body, which must match the path's.
    fn body_name(input: &Self::Input) -> Option<&str>;
    /// Validates and normalises a `PUT` of `name` into the row to store and its settings.
    fn normalize(
        core: &Commissaire,
        tenant: &TenantScope,
        name: &str,
        input: Self::Input,
    ) -> Result<(Self::Row, Self::Settings), Error>;
    /// Whether a stored row has exactly these settings.
    fn same(
        core: &Commissaire,
        tenant: &TenantScope,
        stored: &Self::Row,
        settings: &Self::Settings,
    ) -> Result<bool, Error>;
    fn view(row: Self::Row) -> Result<Self::View, Error>;
    /// Refuses deletes the kind never allows, before the store is asked.
    fn check_delete(_name: &str) -> Result<(), Error> {
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(invalid_name(name))
    }
}

/// A `name` in the body is optional, but when given it must name the object of the path.
fn check_body_name(path: &str, body: Option<&str>) -> Result<(), Error> {
    match body {
        Some(b) if b != path => Err(Error::bad_request(format!(
            "The name '{b}' in the body does not match the name '{path}' in the path."
        ))),
        _ => Ok(()),
    }
}

fn not_found<K: NamedKind>(name: &str) -> Error {
    Error::not_found(format!("{} '{name}' does not exist.", K::NOUN))
}

impl Commissaire {
    /// The tenant's names of kind `K`, by byte value.
    pub(crate) async fn list_named<K: NamedKind>(&self, ctx: &OpCtx) -> Result<Vec<String>, Error> {
        let scope = ctx.require(Access::Read)?;
        self.store.named::<K::Row>().list_names(&scope).await
    }

    pub(crate) async fn get_named<K: NamedKind>(&self, ctx: &OpCtx, name: &str) -> Result<K::View, Error> {
        let scope = ctx.require(Access::Read)?;
        check_name(name)?;
        self.store
            .named::<K::Row>()
            .get(&scope, name)
            .await?
            .map(K::view)
            .transpose()?
            .ok_or_else(|| not_found::<K>(name))
    }

    /// Creates the object; answers it and whether it was created (201) or already there with
    /// the same settings (200).
    pub(crate) async fn put_named<K: NamedKind>(
        &self,
        ctx: &OpCtx,
        name: &str,
        input: K::Input,
    ) -> Result<(K::View, bool), Error> {
        let scope = ctx.require(Access::Write)?;
        check_name(name)?;
        check_body_name(name, K::body_name(&input))?;
        let (row, settings) = K::normalize(self, &scope, name, input)?;
        match self
            .store
            .named::<K::Row>()
            .create_if_absent(&scope, &row)
            .await?
        {
            CreateIfAbsent::Created(stored) => {
                tracing::info!(request_id = %ctx.request_id(), kind = K::NOUN, name = %name, "named object created");
                Ok((K::view(stored)?, true))
            }
            CreateIfAbsent::Existing(stored) => {
                if K::same(self, &scope, &stored, &settings)? {
                    Ok((K::view(stored)?, false))
                } else {
                    Err(Error::conflict(format!(
                        "{} '{name}' already exists with different settings.",
                        K::NOUN
                    )))
                }
            }
        }
    }

    /// Deletes the object unless the kind forbids it or a cluster uses it.
    pub(crate) async fn delete_named<K: NamedKind>(&self, ctx: &OpCtx, name: &str) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        check_name(name)?;
        K::check_delete(name)?;
        match self.store.named::<K::Row>().delete(&scope, name).await? {
            DeleteInUse::Deleted => {
                tracing::info!(request_id = %ctx.request_id(), kind = K::NOUN, name = %name, "named object deleted");
                Ok(())
            }
            DeleteInUse::NotFound => Err(not_found::<K>(name)),
            // Both kinds' `USED_BY` table is `clusters`.
            DeleteInUse::UsedBy(user) => Err(Error::conflict(format!(
                "{} '{name}' is used by cluster '{user}'.",
                K::NOUN
            ))),
        }
    }
}
