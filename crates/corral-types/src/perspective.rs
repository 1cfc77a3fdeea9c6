//! Wire views of the Perspective family (perspective.md 3, 5, 6, 7), in Perspective's field
//! spelling. Every documented field is always present (perspective 1, "Empty fields").

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One metadata entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MetadataEntry {
    pub key: String,
    pub value: String,
}

/// `{"entry": [...]}` (perspective 3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Metadata {
    pub entry: Vec<MetadataEntry>,
}

/// A flavor (perspective 3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flavor {
    pub id: String,
    pub name: String,
    /// MiB.
    pub ram: i64,
    pub vcpus: i64,
    /// GiB.
    pub root_disk: i64,
    /// GiB.
    pub ephemeral_disk: i64,
    pub has_swap: bool,
    pub is_public: bool,
    pub notes: String,
}

/// An image (perspective 3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub id: String,
    pub real_id: String,
    pub timestamp: String,
    pub created: String,
    pub instance_id: String,
    pub cloud_id: String,
    pub cloud_type: String,
    pub project_id: Vec<String>,
    pub name: String,
    pub state: String,
    pub checksum: String,
    pub metadata: Metadata,
}

/// A subnet of a network (perspective 3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub cidr: String,
    pub protocol_version: i64,
    pub gateway: String,
    #[serde(rename = "isDHCPEnabled")]
    pub is_dhcp_enabled: bool,
}

/// A network (perspective 3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    pub id: String,
    pub name: String,
    pub state: String,
    pub is_shared: bool,
    pub subnets: Vec<Subnet>,
}

/// A keypair (perspective 3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Keypair {
    pub name: String,
    pub fingerprint: String,
    pub public_key: String,
}

/// An instance (perspective 3.5). `keypair` and `availabilityZone` are `{}` when none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub id: String,
    pub real_id: String,
    pub timestamp: String,
    pub created: String,
    pub cloud_id: String,
    pub cloud_type: String,
    pub project_id: String,
    pub name: String,
    pub flavor: Flavor,
    pub image: Image,
    #[schema(value_type = Object)]
    pub keypair: serde_json::Value,
    pub state: String,
    pub is_locked: bool,
    pub metadata: Metadata,
    pub address: Vec<String>,
    pub fqdn: String,
    pub networks: Vec<Network>,
    #[schema(value_type = Object)]
    pub availability_zone: serde_json::Value,
}

/// One per-item result of a bulk call (perspective 5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BulkResult {
    pub id: String,
    /// 202, 404 or 409.
    pub status: u16,
    pub message: String,
}

/// One entry of an instance's history (Corral addition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceEvent {
    /// RFC 3339.
    pub at: String,
    /// The user who asked (`user@tenant`), or `corral` for what Corral did on its own.
    pub actor: String,
    /// `launch`, `reboot`, `resize`, ..., or `reconcile` / `deadline`.
    pub action: String,
    /// `accepted`, `succeeded`, `failed`.
    pub outcome: String,
    /// The reason of a failure, else empty.
    pub error: String,
    /// The `X-Request-Id` of the request that asked for the action, so its log lines (and the
    /// job's, which carry it too) can be found; absent for what Corral did on its own.
    #[serde(rename = "requestId", default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
}

/// The serial console of an instance (Corral addition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Console {
    pub id: String,
    /// The most recent output, lossily decoded as UTF-8.
    pub output: String,
}
