//! Commissaire networks and container manager configurations of a tenant: two named-object
//! kinds (see `named.rs`), each in use while a cluster of the tenant names it.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Changed;
use crate::named::{AnyQuery, NamedObject, UsedBy};

/// A stored network; `options` is a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRow {
    pub name: String,
    pub kind: String,
    pub options: String,
}

impl NamedObject for NetworkRow {
    const TABLE: &'static str = "networks";
    const COLUMNS: &'static [&'static str] = &["name", "type", "options"];
    const USED_BY: Option<UsedBy> = Some(UsedBy {
        table: "clusters",
        column: "network",
    });

    fn name(&self) -> &str {
        &self.name
    }

    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            name: r.try_get(0)?,
            kind: r.try_get(1)?,
            options: r.try_get(2)?,
        })
    }

    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(&self.name).bind(&self.kind).bind(&self.options)
    }

    fn changed(&self) -> Changed<'_> {
        Changed::Network(self)
    }
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

impl NamedObject for ContainerManagerRow {
    const TABLE: &'static str = "container_managers";
    const COLUMNS: &'static [&'static str] = &["name", "type", "options", "token_sealed"];
    const USED_BY: Option<UsedBy> = Some(UsedBy {
        table: "clusters",
        column: "container_manager",
    });

    fn name(&self) -> &str {
        &self.name
    }

    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            name: r.try_get(0)?,
            kind: r.try_get(1)?,
            options: r.try_get(2)?,
            token_sealed: r.try_get(3)?,
        })
    }

    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(&self.name)
            .bind(&self.kind)
            .bind(&self.options)
            .bind(&self.token_sealed)
    }

    fn changed(&self) -> Changed<'_> {
        Changed::ContainerManager(self)
    }
}
