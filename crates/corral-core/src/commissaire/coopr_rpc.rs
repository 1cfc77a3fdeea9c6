//! Coopr's RPC calls over Commissaire clusters (coopr-v2.md 6): `getClusterStatuses` in the
//! 2014 Loom shape, and `getNodeProperties`, whose nodes are a cluster's member hosts.

use std::collections::BTreeMap;

use corral_types::time::commissaire_time;
use corral_types::views::{ClusterStatus, NodeAddresses, NodeProperties, NodePropertiesRequest};
use corral_types::{Access, Error, OpCtx};

use crate::clusters::cluster_view;
use crate::commissaire::Commissaire;

impl Commissaire {
    /// `POST /v2/getClusterStatuses`.
    pub async fn cluster_statuses(&self, ctx: &OpCtx) -> Result<Vec<ClusterStatus>, Error> {
        let scope = ctx.require(Access::Read)?;
        let tenant = &scope;
        let mut out = Vec::new();
        for name in self.store.list_clusters(tenant).await? {
            let Some(row) = self.store.get_cluster(tenant, &name).await? else {
                continue;
            };
            let (action, actionstatus, total, completed) =
                match self.store.latest_operation(tenant, &name).await? {
                    Some(op) => {
                        let status = match op.status.as_str() {
                            "in_process" => "running",
                            "finished" => "complete",
                            _ => "failed",
                        };
                        (
                            format!("cluster_{}", op.kind),
                            status,
                            op.members.len(),
                            op.done.len(),
                        )
                    }
                    None => {
                        let statuses: Vec<&str> = row.members.iter().map(|(_, s)| s.as_str()).collect();
                        let status = if statuses
                            .iter()
                            .any(|s| *s == "investigating" || *s == "bootstrapping")
                        {
                            "running"
                        } else if statuses.contains(&"failed") {
                            "failed"
                        } else {
                            "complete"
                        };
                        let done = statuses
                            .iter()
                            .filter(|s| **s == "active" || **s == "disassociated")
                            .count();
                        ("cluster_create".to_string(), status, statuses.len(), done)
                    }
                };
            let commissaire = cluster_view(&row, false).status;
            let status = match (actionstatus, commissaire.as_str()) {
                ("running", _) => "pending",
                (_, "failed") => "incomplete",
                ("failed", _) | (_, "degraded") => "inconsistent",
                _ => "active",
            };
            out.push(ClusterStatus {
                action,
                actionstatus: actionstatus.to_string(),
                clusterid: name.into_string(),
                status: status.to_string(),
                stepscompleted: completed,
                stepstotal: total,
            });
        }
        Ok(out)
    }

    /// `POST /v2/getNodeProperties`: the matching member hosts by address.
    pub async fn node_properties(
        &self,
        ctx: &OpCtx,
        req: &NodePropertiesRequest,
    ) -> Result<BTreeMap<String, NodeProperties>, Error> {
        let scope = ctx.require(Access::Read)?;
        let cluster = req.cluster_id.as_str();
        let services = &req.services;
        let tenant = &scope;
        let not_found = || Error::not_found(format!("Cluster {cluster} not found."));
        if !corral_types::ids::is_valid_name(cluster) {
            return Err(not_found());
        }
        let row = self
            .store
            .get_cluster(tenant, &corral_types::ClusterName::from_trusted(cluster))
            .await?
            .ok_or_else(not_found)?;
        let cm_kind = match row.container_manager.as_str() {
            "" => None,
            name => self
                .store
                .named::<corral_store::ContainerManagerRow>()
                .get(tenant, name)
                .await?
                .map(|c| c.kind),
        };
        let hosts: BTreeMap<corral_types::HostAddress, corral_store::HostRow> = self
            .store
            .list_hosts(tenant)
            .await?
            .into_iter()
            .map(|h| (h.address.clone(), h))
            .collect();
        let mut out = BTreeMap::new();
        for (i, (address, _)) in row.members.iter().enumerate() {
            let Some(h) = hosts.get(address) else { continue };
            let mut node_services: Vec<String> = Vec::new();
            if h.bootstrapped {
                node_services.extend(["flannel".to_string(), "docker".to_string()]);
            }
            if let Some(kind) = &cm_kind
                && h.status == "active"
                && h.registered
            {
                node_services.push(kind.clone());
            }
            if !services.iter().all(|s| node_services.contains(s)) {
                continue;
            }
            let ip: Option<std::net::IpAddr> = address.as_str().parse().ok();
            let mut addrs = NodeAddresses::default();
            match ip {
                Some(std::net::IpAddr::V6(_)) => addrs.access_v6 = Some(address.to_string()),
                Some(std::net::IpAddr::V4(_)) => addrs.access_v4 = Some(address.to_string()),
                None if !h.ipv4.is_empty() => addrs.access_v4 = Some(h.ipv4.clone()),
                None => {}
            }
            let all = NodeProperties {
                cpus: Some(h.cpus),
                hostname: Some(if h.hostname.is_empty() {
                    address.to_string()
                } else {
                    h.hostname.clone()
                }),
                ipaddress: Some(if ip.is_some() {
                    address.to_string()
                } else {
                    h.ipv4.clone()
                }),
                ipaddresses: Some(addrs),
                last_check: Some(h.last_check.map(commissaire_time).unwrap_or_default()),
                memory: Some(h.memory),
                nodenum: Some(i + 1),
                os: Some(h.os.clone()),
                services: Some(node_services),
                space: Some(h.space),
                sshuser: Some(h.remote_user.clone()),
                status: Some(h.status.clone()),
            };
            out.insert(address.to_string(), all.select(&req.properties));
        }
        Ok(out)
    }
}
