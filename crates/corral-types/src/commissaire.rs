//! Wire views of the Commissaire family (`/api/v0`): hosts, clusters, operation records.
//! Field names are Commissaire's (snake_case).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A host (commissaire-v0.md 3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Host {
    pub address: String,
    pub status: String,
    pub os: String,
    pub cpus: i64,
    /// Kilobytes.
    pub memory: i64,
    /// Kilobytes.
    pub space: i64,
    pub last_check: String,
    pub source: String,
}

/// Body of `PUT /api/v0/host[/{address}]`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostPut {
    /// Base64 of a PEM or OpenSSH private key (RSA, ECDSA or Ed25519).
    pub ssh_priv_key: Option<String>,
    pub remote_user: Option<String>,
    pub cluster: Option<String>,
    pub source: Option<String>,
    pub address: Option<String>,
    /// Corral addition: the SSH host key fingerprint to expect (`SHA256:...`), enforced from
    /// the first contact instead of trusting the first key seen.
    pub ssh_host_key_fingerprint: Option<String>,
}

/// `GET /api/v0/host/{address}/creds` (admins only).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HostCreds {
    pub address: String,
    pub ssh_priv_key: String,
    pub remote_user: String,
}

/// `host` part of [`HostStatus`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HostStatusHost {
    pub last_check: String,
    pub status: String,
    pub message: String,
}

/// `GET /api/v0/host/{address}/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HostStatus {
    #[serde(rename = "type")]
    pub kind: String,
    pub host: HostStatusHost,
    #[schema(value_type = serde_json::Value)]
    pub container_manager: NodeStatus,
}

/// The node status a container manager reports, passed through as it sent it (`{}`: none).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct NodeStatus(pub serde_json::Value);

impl NodeStatus {
    /// `{}`: no container manager to ask, or no answer from it.
    pub fn none() -> NodeStatus {
        NodeStatus(serde_json::Value::Object(serde_json::Map::new()))
    }
}

/// Member counts of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClusterHosts {
    pub total: i64,
    pub available: i64,
    pub unavailable: i64,
}

/// A cluster (3.4); `hostset` only in the answer of `PUT .../hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Cluster {
    pub name: String,
    pub status: String,
    pub network: String,
    pub container_manager: String,
    pub hosts: ClusterHosts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostset: Option<Vec<String>>,
}

/// Body of `PUT /api/v0/cluster/{name}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterPut {
    pub network: Option<String>,
    pub container_manager: Option<String>,
    /// Accepted and ignored (commissaire-mvp's cluster type).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
}

/// Body of `PUT /api/v0/cluster/{name}/hosts` (compare-and-swap).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersPut {
    pub old: Vec<String>,
    pub new: Vec<String>,
}

/// Body of `PUT .../deploy`, `.../upgrade`, `.../restart`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationPut {
    pub version: Option<serde_json::Value>,
    pub max_parallel: Option<i64>,
}

/// An operation record (3.6). The list of completed hosts is named after the operation
/// (`deployed`, `upgraded`, `restarted`), so the view is rendered as a JSON object.
pub type OperationRecord = serde_json::Value;

/// `GET /api/v0/status` (commissaire-v0.md 5.15). Fields are in alphabetical order, the order
/// the answer has always had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachineryStatus {
    pub investigator: WorkerStatus,
    pub store: StoreStatus,
    pub watcher: WorkerStatus,
}

/// `store` part of [`MachineryStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    pub status: String,
}

/// `investigator` and `watcher` parts of [`MachineryStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerStatus {
    pub info: WorkerInfo,
    /// `OK` or `FAILED`.
    pub status: String,
}

/// Queue figures of a [`WorkerStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerInfo {
    pub errors: Vec<String>,
    pub in_use: i64,
    pub size: i64,
}
