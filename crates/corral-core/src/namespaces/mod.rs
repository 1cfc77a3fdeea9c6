//! CDAP namespaces (cdap-v3.md 2): per tenant, `default` always present, `cdap` and
//! `system` reserved.

use std::collections::BTreeMap;

use corral_store::NamespaceRow;
use corral_types::ids::{invalid_name, is_valid_name};
use corral_types::time::now_ms;
use corral_types::views::{Namespace, NamespaceInput};
use corral_types::{Access, Error, OpCtx};

use std::sync::Arc;

use corral_store::Store;

use crate::cdap::Cdap;

const RESERVED: [&str; 2] = ["cdap", "system"];
const MAX_DESCRIPTION: usize = 4096;

pub(crate) fn view(r: NamespaceRow) -> Result<Namespace, Error> {
    let config: BTreeMap<String, String> = serde_json::from_str(&r.config).map_err(Error::internal)?;
    Ok(Namespace {
        name: r.name,
        description: r.description,
        config,
    })
}

fn not_found(ns: &str) -> Error {
    Error::not_found(format!("Namespace '{ns}' not found."))
}

/// The namespace check every route under `/v3/namespaces/{ns}` starts with: reserved ids are
/// 403, invalid ones cannot exist (404).
pub fn check_namespace_param(ns: &str) -> Result<(), Error> {
    if RESERVED.contains(&ns) {
        return Err(Error::forbidden(format!("Namespace '{ns}' is reserved.")));
    }
    if !is_valid_name(ns) {
        return Err(not_found(ns));
    }
    Ok(())
}

fn check_description(d: &str) -> Result<(), Error> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Error::bad_request(format!(
            "description is longer than {MAX_DESCRIPTION} characters."
        )));
    }
    Ok(())
}

/// CDAP namespaces of a tenant.
pub struct Namespaces {
    pub(crate) store: Store,
    /// A deleted namespace's service processes are stopped first.
    pub(crate) cdap: Arc<Cdap>,
}

impl Namespaces {
    pub async fn list_namespaces(&self, ctx: &OpCtx) -> Result<Vec<Namespace>, Error> {
        let scope = ctx.require(Access::Read)?;
        self.store
            .list_namespaces(&scope)
            .await?
            .into_iter()
            .map(view)
            .collect()
    }

    pub async fn get_namespace(&self, ctx: &OpCtx, ns: &str) -> Result<Namespace, Error> {
        let scope = ctx.require(Access::Read)?;
        check_namespace_param(ns)?;
        self.store
            .get_namespace(&scope, ns)
            .await?
            .map(view)
            .transpose()?
            .ok_or_else(|| not_found(ns))
    }

    /// Creates a namespace; an existing one is answered unchanged (CDAP's 200).
    pub async fn create_namespace(
        &self,
        ctx: &OpCtx,
        ns: &str,
        input: NamespaceInput,
    ) -> Result<Namespace, Error> {
        let scope = ctx.require(Access::Write)?;
        if RESERVED.contains(&ns) {
            return Err(Error::bad_request(format!(
                "Cannot create the namespace '{ns}'. '{ns}' is a reserved namespace."
            )));
        }
        if !is_valid_name(ns) {
            return Err(invalid_name(ns));
        }
        let description = input.description.unwrap_or_default();
        check_description(&description)?;
        let config = serde_json::to_string(&input.config.unwrap_or_default()).map_err(Error::internal)?;
        let row = NamespaceRow {
            name: ns.to_string(),
            description,
            config,
        };
        let stored = self.store.create_namespace(&scope, &row, now_ms()).await?;
        view(stored)
    }

    pub async fn update_namespace(
        &self,
        ctx: &OpCtx,
        ns: &str,
        input: NamespaceInput,
    ) -> Result<Namespace, Error> {
        let scope = ctx.require(Access::Write)?;
        check_namespace_param(ns)?;
        if let Some(d) = &input.description {
            check_description(d)?;
        }
        let config = input
            .config
            .map(|c| serde_json::to_string(&c))
            .transpose()
            .map_err(Error::internal)?;
        self.store
            .update_namespace(&scope, ns, input.description.as_deref(), config.as_deref())
            .await?
            .map(view)
            .transpose()?
            .ok_or_else(|| not_found(ns))
    }

    /// Deletes a namespace and everything in it; `default` is emptied and kept.
    pub async fn delete_namespace(&self, ctx: &OpCtx, ns: &str) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        if RESERVED.contains(&ns) {
            return Err(Error::forbidden(format!(
                "Reserved namespace '{ns}' cannot be deleted."
            )));
        }
        check_namespace_param(ns)?;
        // Running services are stopped (their runs end KILLED) before the records go (2.6).
        self.cdap
            .stop_services_in(&scope, Some(ns), ctx.request_id())
            .await?;
        if !self.store.delete_namespace(&scope, ns).await? {
            return Err(not_found(ns));
        }
        tracing::info!(request_id = %ctx.request_id(), namespace = %ns, "namespace deleted");
        Ok(())
    }
}
