//! Wire views: the JSON shapes of the contract, separate from how the store keeps rows.
//! Field names follow each family's spelling (camelCase for Coopr, CDAP's own for `/v3`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ctx::Role;

/// Coopr's default for `maxClusters` and `maxNodes`: Java's `Integer.MAX_VALUE`.
pub const UNLIMITED: i64 = 2_147_483_647;

fn unlimited() -> i64 {
    UNLIMITED
}

/// A tenant (Coopr's TenantSpecification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Concurrent background job slots.
    pub workers: i64,
    #[serde(default = "unlimited")]
    pub max_clusters: i64,
    #[serde(default = "unlimited")]
    pub max_nodes: i64,
}

/// A tenant as given in a request: `workers` is required on create, defaulted on replace.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub workers: Option<i64>,
    pub max_clusters: Option<i64>,
    pub max_nodes: Option<i64>,
}

/// Body of `POST /v2/tenants` and `PUT /v2/tenants/{tenant}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TenantRequest {
    pub tenant: TenantInput,
    #[serde(default)]
    pub bootstrap: bool,
}

/// Answer of `POST /v2/tenants`: the tenant and its first admin with its key (shown once).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantCreated {
    pub tenant: Tenant,
    pub admin: UserWithKey,
}

/// A user of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub tenant: String,
    pub role: Role,
    pub description: String,
    pub create_time: i64,
}

/// A user and a key just issued to it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserWithKey {
    #[serde(flatten)]
    pub user: User,
    pub apikey: ApiKeyCreated,
}

/// Body of `POST /v2/users`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct UserCreate {
    pub id: String,
    pub role: Option<String>,
    pub description: Option<String>,
}

/// Body of `PUT /v2/users/{user}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UserUpdate {
    pub id: Option<String>,
    pub role: Option<String>,
    pub description: Option<String>,
}

/// An API key's public record. The secret is never part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    /// The first 8 characters of the key, to recognise it.
    pub prefix: String,
    pub description: String,
    pub create_time: i64,
    pub expire_time: Option<i64>,
    pub last_used_time: Option<i64>,
}

/// An API key in the one answer that creates it: the only time `key` is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    pub record: ApiKey,
    pub key: String,
}

/// Body of `POST /v2/users/{user}/apikeys` and `POST /v2/tenants/{tenant}/adminkey`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCreate {
    pub description: Option<String>,
    /// Milliseconds since the epoch, in the future.
    pub expire_time: Option<i64>,
}

/// Answer of `GET /token`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessToken {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
}

/// A CDAP namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Namespace {
    pub name: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
}

/// Body of `PUT /v3/namespaces/{ns}` and `PUT /v3/namespaces/{ns}/properties`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct NamespaceInput {
    pub description: Option<String>,
    pub config: Option<BTreeMap<String, String>>,
}

/// The JSON error body every error carries (README 4).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: u16,
    pub error: String,
    pub message: String,
}

// Commissaire networks and container managers

/// A Commissaire network (commissaire-v0.md 3.5): `type` is `flannel_etcd` or
/// `flannel_server`; `options` is a free-form object (`address` for `flannel_server`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Network {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// Body of `PUT /api/v0/network/{name}`. Every field is optional: `type` defaults to
/// `flannel_etcd` and `options` to `{}`; `name`, when given, must equal the path's.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkInput {
    pub name: Option<String>,
    /// `flannel_etcd` or `flannel_server` (`flanneld_service` is accepted for the latter).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A Commissaire container manager configuration (commissaire-v0.md 3.5). A stored
/// `token` is shown only as `"********"`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ContainerManager {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// Body of `PUT /api/v0/containermanager/{name}`. `type` is required (checked by core, so
/// the answer is the contract's 400 rather than a parse error); `name`, when given, must
/// equal the path's.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerManagerInput {
    pub name: Option<String>,
    /// `openshift` or `trivial`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// For `openshift`: `apiserver` (or `server_url`), `token`, `certificate_path`,
    /// `certificate_key_path`.
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The caller's Coopr profile: by contract any JSON object, stored and returned as sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Profile(pub serde_json::Map<String, serde_json::Value>);

/// One item of `POST /v2/getClusterStatuses` (the 2014 Loom shape). Fields are in alphabetical
/// order, the order the answer has always had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub action: String,
    pub actionstatus: String,
    pub clusterid: String,
    pub status: String,
    pub stepscompleted: usize,
    pub stepstotal: usize,
}

/// The body of `POST /v2/getNodeProperties`, as the API read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePropertiesRequest {
    pub cluster_id: String,
    /// Properties to report; empty: all of them.
    pub properties: Vec<String>,
    /// Only nodes running all of these.
    pub services: Vec<String>,
}

/// `ipaddresses` of a node in `getNodeProperties`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeAddresses {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_v4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_v6: Option<String>,
}

/// The properties of one node in `getNodeProperties`; only those asked for are present.
/// Fields are in alphabetical order, the order the answer has always had.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipaddress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipaddresses: Option<NodeAddresses>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodenum: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sshuser: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl NodeProperties {
    /// Keeps only the named properties (unknown names are ignored); none named keeps all.
    pub fn select(self, wanted: &[String]) -> NodeProperties {
        if wanted.is_empty() {
            return self;
        }
        let keep = |name: &str| wanted.iter().any(|w| w == name);
        fn pick<T>(on: bool, v: Option<T>) -> Option<T> {
            if on { v } else { None }
        }
        NodeProperties {
            cpus: pick(keep("cpus"), self.cpus),
            hostname: pick(keep("hostname"), self.hostname),
            ipaddress: pick(keep("ipaddress"), self.ipaddress),
            ipaddresses: pick(keep("ipaddresses"), self.ipaddresses),
            last_check: pick(keep("last_check"), self.last_check),
            memory: pick(keep("memory"), self.memory),
            nodenum: pick(keep("nodenum"), self.nodenum),
            os: pick(keep("os"), self.os),
            services: pick(keep("services"), self.services),
            space: pick(keep("space"), self.space),
            sshuser: pick(keep("sshuser"), self.sshuser),
            status: pick(keep("status"), self.status),
        }
    }
}
