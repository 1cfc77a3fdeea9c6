//! Commissaire clusters (commissaire-v0.md 4.1-4.9, 6.3): creation with a network and an
//! optional container manager, the computed status, and membership with its compare-and-swap.

use corral_store::{ClusterRow, CreateClusterOutcome, DeleteClusterOutcome, HostState, MembershipOutcome};
use corral_types::commissaire::{Cluster, ClusterHosts, ClusterPut, MembersPut};
use corral_types::ids::{invalid_name, is_valid_name};
use corral_types::time::now_ms;
use corral_types::{Access, ClusterName, Error, HostAddress, OpCtx, OperationKind, TenantScope};

use crate::address::canonical_address;
use crate::commissaire::Commissaire;
use crate::hosts::article;

pub(crate) fn cluster_not_found(name: &str) -> Error {
    Error::not_found(format!("Cluster '{name}' does not exist."))
}

fn busy(name: &ClusterName, op: OperationKind) -> Error {
    Error::conflict(format!("Cluster '{name}' has {} {op} in process.", article(op)))
}

/// The status computed from the members (2.2).
pub(crate) fn cluster_view(row: &ClusterRow, hostset: bool) -> Cluster {
    let total = row.members.len() as i64;
    let available = row.members.iter().filter(|(_, s)| s == "active").count() as i64;
    let status = if total == 0 || available == total {
        "ok"
    } else if available > 0 {
        "degraded"
    } else {
        "failed"
    };
    Cluster {
        name: row.name.to_string(),
        status: status.into(),
        network: row.network.clone(),
        container_manager: row.container_manager.clone(),
        hosts: ClusterHosts {
            total,
            available,
            unavailable: total - available,
        },
        hostset: hostset.then(|| row.members.iter().map(|(a, _)| a.to_string()).collect()),
    }
}

/// A name in a path: anything invalid cannot exist. The only way from a path to a
/// [`ClusterName`] here; from then on the name travels typed.
fn cluster_param(name: &str) -> Result<ClusterName, Error> {
    if is_valid_name(name) {
        Ok(ClusterName::from_trusted(name))
    } else {
        Err(cluster_not_found(name))
    }
}

impl Commissaire {
    pub async fn list_clusters(&self, ctx: &OpCtx) -> Result<Vec<String>, Error> {
        let scope = ctx.require(Access::Read)?;
        Ok(self
            .store
            .list_clusters(&scope)
            .await?
            .into_iter()
            .map(ClusterName::into_string)
            .collect())
    }

    /// A cluster named in a path (404 when the name is invalid or unknown).
    pub(crate) async fn cluster_row(&self, scope: &TenantScope, name: &str) -> Result<ClusterRow, Error> {
        self.cluster_row_of(scope, &cluster_param(name)?).await
    }

    pub(crate) async fn cluster_row_of(
        &self,
        scope: &TenantScope,
        name: &ClusterName,
    ) -> Result<ClusterRow, Error> {
        self.store
            .get_cluster(scope, name)
            .await?
            .ok_or_else(|| cluster_not_found(name.as_str()))
    }

    pub async fn get_cluster(&self, ctx: &OpCtx, name: &str) -> Result<Cluster, Error> {
        let scope = ctx.require(Access::Read)?;
        Ok(cluster_view(&self.cluster_row(&scope, name).await?, false))
    }

    /// `PUT /api/v0/cluster/{name}`: `true` when created (201).
    pub async fn put_cluster(
        &self,
        ctx: &OpCtx,
        name: &str,
        body: ClusterPut,
    ) -> Result<(bool, Cluster), Error> {
        let scope = ctx.require(Access::Write)?;
        if !is_valid_name(name) {
            return Err(invalid_name(name));
        }
        let name = ClusterName::from_trusted(name);
        if body.name.as_deref().is_some_and(|n| n != name.as_str()) {
            return Err(Error::bad_request(
                "\"name\" in the body does not match the name in the url.",
            ));
        }
        let network = body.network.unwrap_or_else(|| "default".into());
        let cm = body.container_manager.unwrap_or_default();
        let tenant = &scope;
        match self
            .store
            .create_cluster(tenant, &name, &network, &cm, now_ms())
            .await?
        {
            CreateClusterOutcome::Created(row) => {
                tracing::info!(request_id = %ctx.request_id(), cluster = %name, "cluster created");
                Ok((true, cluster_view(&row, false)))
            }
            CreateClusterOutcome::Exists(row) if row.network == network && row.container_manager == cm => {
                Ok((
                    false,
                    cluster_view(&self.cluster_row_of(&scope, &name).await?, false),
                ))
            }
            CreateClusterOutcome::Exists(_) => Err(Error::conflict(format!(
                "Cluster '{name}' already exists with different settings."
            ))),
            CreateClusterOutcome::NetworkMissing => {
                Err(Error::conflict(format!("Network '{network}' does not exist.")))
            }
            CreateClusterOutcome::ContainerManagerMissing => Err(Error::conflict(format!(
                "Container manager '{cm}' does not exist."
            ))),
            CreateClusterOutcome::QuotaExceeded(max) => Err(Error::conflict(format!(
                "Tenant quota exceeded: maxClusters is {max}."
            ))),
        }
    }

    pub async fn delete_cluster(&self, ctx: &OpCtx, name: &str) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        let tenant = &scope;
        let name = cluster_param(name)?;
        let manager = self.manager_of(tenant, &name).await?;
        match self.store.delete_cluster(tenant, &name).await? {
            DeleteClusterOutcome::Deleted(members) => {
                for (address, registered) in members {
                    if registered {
                        self.deregister_node(tenant, &manager, &address).await;
                    }
                }
                tracing::info!(request_id = %ctx.request_id(), cluster = %name, "cluster deleted");
                Ok(())
            }
            DeleteClusterOutcome::NotFound => Err(cluster_not_found(name.as_str())),
            DeleteClusterOutcome::Busy(op) => Err(busy(&name, op)),
        }
    }

    pub async fn cluster_members(&self, ctx: &OpCtx, name: &str) -> Result<Vec<String>, Error> {
        let scope = ctx.require(Access::Read)?;
        Ok(self
            .cluster_row(&scope, name)
            .await?
            .members
            .into_iter()
            .map(|(a, _)| a.into_string())
            .collect())
    }

    /// `GET .../hosts/{address}`: membership test.
    pub async fn cluster_member(&self, ctx: &OpCtx, name: &str, address: &str) -> Result<String, Error> {
        let scope = ctx.require(Access::Read)?;
        let row = self.cluster_row(&scope, name).await?;
        let not_member = || Error::not_found("The requested host is not part of the cluster.");
        let address = canonical_address(address).map_err(|_| not_member())?;
        row.members
            .iter()
            .any(|(a, _)| *a == address)
            .then(|| address.into_string())
            .ok_or_else(not_member)
    }

    /// `PUT .../hosts`: the compare-and-swap of the member set (4.6).
    pub async fn swap_members(&self, ctx: &OpCtx, name: &str, body: MembersPut) -> Result<Cluster, Error> {
        let scope = ctx.require(Access::Write)?;
        let old = body
            .old
            .iter()
            .map(|a| canonical_address(a))
            .collect::<Result<Vec<_>, _>>()?;
        let new = body
            .new
            .iter()
            .map(|a| canonical_address(a))
            .collect::<Result<Vec<_>, _>>()?;
        let name = cluster_param(name)?;
        let outcome = self.store.change_members(&scope, &name, Some(&old), &new).await?;
        self.apply_membership(&scope, &name, outcome, None).await?;
        Ok(cluster_view(&self.cluster_row_of(&scope, &name).await?, true))
    }

    /// `PUT .../hosts/{address}`: adds one host (idempotent).
    pub async fn add_member(&self, ctx: &OpCtx, name: &str, address: &str) -> Result<String, Error> {
        let scope = ctx.require(Access::Write)?;
        let address = canonical_address(address)?;
        let name = cluster_param(name)?;
        let outcome = self
            .store
            .change_members(&scope, &name, None, std::slice::from_ref(&address))
            .await?;
        self.apply_membership(&scope, &name, outcome, Some(&address))
            .await?;
        Ok(address.into_string())
    }

    /// `DELETE .../hosts/{address}`: removes one host (idempotent).
    pub async fn remove_member(&self, ctx: &OpCtx, name: &str, address: &str) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        let tenant = &scope;
        let Ok(address) = canonical_address(address) else {
            // Not an address: it cannot be a member; the cluster must still exist.
            self.cluster_row(&scope, name).await?;
            return Ok(());
        };
        let name = cluster_param(name)?;
        match self.store.remove_member(tenant, &name, &address).await? {
            None => Err(cluster_not_found(name.as_str())),
            Some(Err(op)) => Err(busy(&name, op)),
            Some(Ok(registered)) => {
                if registered == Some(true) {
                    let manager = self.manager_of(tenant, &name).await?;
                    self.deregister_node(tenant, &manager, &address).await;
                }
                Ok(())
            }
        }
    }

    /// Turns a membership outcome into the contract's answer, and registers added hosts with
    /// the cluster's container manager / deregisters removed ones (6.3).
    async fn apply_membership(
        &self,
        scope: &TenantScope,
        name: &ClusterName,
        outcome: MembershipOutcome,
        single: Option<&HostAddress>,
    ) -> Result<(), Error> {
        let tenant = &scope;
        match outcome {
            MembershipOutcome::Changed { added, removed } => {
                let manager = self.manager_of(tenant, name).await?;
                for (address, registered) in removed {
                    if registered {
                        self.deregister_node(tenant, &manager, &address).await;
                    }
                }
                for address in added {
                    self.register_node(tenant, name, &address).await?;
                }
                Ok(())
            }
            MembershipOutcome::NoCluster => Err(cluster_not_found(name.as_str())),
            MembershipOutcome::Busy(op) => Err(busy(name, op)),
            MembershipOutcome::Mismatch => Err(Error::conflict(format!(
                "Conflict setting hosts for cluster {name}"
            ))),
            MembershipOutcome::HostMissing(a) => Err(Error::not_found(format!("Host '{a}' does not exist."))),
            MembershipOutcome::OtherCluster(a, other) => Err(Error::conflict(format!(
                "Host '{a}' already belongs to cluster '{other}'."
            ))),
            MembershipOutcome::NotReady(hosts) => {
                let message = match (single, hosts.first()) {
                    (Some(_), Some((a, status))) => {
                        format!("Host {a} (status: {status}) not ready to join cluster \"{name}\"")
                    }
                    _ => format!(
                        "Hosts not ready to join cluster \"{name}\": {}",
                        hosts
                            .iter()
                            .map(|(a, _)| a.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                };
                let allow = if single.is_some() {
                    "GET, HEAD, PUT, DELETE"
                } else {
                    "GET, HEAD, PUT"
                };
                Err(Error::MethodNotAllowed {
                    message,
                    allow: allow.into(),
                })
            }
        }
    }

    /// Registers a new member with the cluster's container manager: `active` on success (or
    /// without a manager), `disassociated` with a message on failure (6.3).
    pub(crate) async fn register_node(
        &self,
        tenant: &TenantScope,
        cluster: &ClusterName,
        address: &HostAddress,
    ) -> Result<(), Error> {
        let Some(host) = self.store.get_host(tenant, address).await? else {
            return Ok(());
        };
        if !host.bootstrapped {
            // Still being investigated: the bootstrap job settles it when it finishes.
            return Ok(());
        }
        let (status, message, registered) = self
            .host_ops()?
            .join_container_manager(tenant, cluster, address)
            .await?;
        let state = HostState {
            registered: Some(registered),
            ..HostState::new(status, &message)
        };
        self.store.set_host_state(tenant, address, &state).await
    }
}
