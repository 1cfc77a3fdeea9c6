//! Coopr's RPC calls over Commissaire clusters (coopr-v2.md 6): `getClusterStatuses` in the
//! 2014 Loom shape, and `getNodeProperties`, whose nodes are a cluster's member hosts.

use std::collections::BTreeMap;

use corral_types::time::commissaire_time;
use corral_types::{Access, Error, OpCtx};
use serde_json::{Map, Value, json};

use crate::Core;
use crate::clusters::cluster_view;

/// Every property `getNodeProperties` knows, in the order it reports them.
const PROPERTIES: [&str; 11] = [
    "hostname",
    "ipaddress",
    "ipaddresses",
    "nodenum",
    "sshuser",
    "os",
    "cpus",
    "memory",
    "space",
    "status",
    "last_check",
];

impl Core {
    /// `POST /v2/getClusterStatuses`.
    pub async fn cluster_statuses(&self, ctx: &OpCtx) -> Result<Value, Error> {
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
            out.push(
                json!({"clusterid": name, "action": action, "actionstatus": actionstatus,
                            "stepstotal": total, "stepscompleted": completed, "status": status}),
            );
        }
        Ok(Value::Array(out))
    }

    /// `POST /v2/getNodeProperties`; `body` is the request as parsed JSON (`None`: not JSON).
    pub async fn node_properties(&self, ctx: &OpCtx, body: Option<Value>) -> Result<Value, Error> {
        let scope = ctx.require(Access::Read)?;
        let Some(Value::Object(req)) = body else {
            return Err(Error::bad_request(
                "Invalid request body. Must be a valid JSON Object.",
            ));
        };
        let cluster = req
            .get("clusterId")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_request("clusterId must be specified."))?;
        let strings = |field: &str| -> Result<Vec<String>, Error> {
            match req.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| Error::bad_request(format!("{field} must be an array of strings."))),
                Some(_) => Err(Error::bad_request(format!(
                    "{field} must be an array of strings."
                ))),
            }
        };
        let wanted = strings("properties")?;
        let services = strings("services")?;
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
        let mut out = Map::new();
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
            let mut all = Map::new();
            all.insert(
                "hostname".into(),
                json!(if h.hostname.is_empty() {
                    address.as_str()
                } else {
                    &h.hostname
                }),
            );
            all.insert(
                "ipaddress".into(),
                json!(if ip.is_some() {
                    address.to_string()
                } else {
                    h.ipv4.clone()
                }),
            );
            let mut addrs = Map::new();
            match ip {
                Some(std::net::IpAddr::V6(_)) => {
                    addrs.insert("access_v6".into(), json!(address));
                }
                Some(std::net::IpAddr::V4(_)) => {
                    addrs.insert("access_v4".into(), json!(address));
                }
                None if !h.ipv4.is_empty() => {
                    addrs.insert("access_v4".into(), json!(h.ipv4));
                }
                None => {}
            }
            all.insert("ipaddresses".into(), Value::Object(addrs));
            all.insert("nodenum".into(), json!(i + 1));
            all.insert("sshuser".into(), json!(h.remote_user));
            all.insert("os".into(), json!(h.os));
            all.insert("cpus".into(), json!(h.cpus));
            all.insert("memory".into(), json!(h.memory));
            all.insert("space".into(), json!(h.space));
            all.insert("status".into(), json!(h.status));
            all.insert(
                "last_check".into(),
                json!(h.last_check.map(commissaire_time).unwrap_or_default()),
            );
            all.insert("services".into(), json!(node_services));
            let props: Map<String, Value> = if wanted.is_empty() {
                PROPERTIES
                    .iter()
                    .chain(["services"].iter())
                    .filter_map(|k| all.get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect()
            } else {
                wanted
                    .iter()
                    .filter_map(|k| all.get(k).map(|v| (k.clone(), v.clone())))
                    .collect()
            };
            out.insert(address.to_string(), Value::Object(props));
        }
        Ok(Value::Object(out))
    }
}
