//! Wire views of the CDAP application and service endpoints (cdap-v3.md 1.1, 3, 4), in CDAP's
//! field spelling.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Parsed};
use crate::ids::is_env_key;
use utoipa::ToSchema;

fn one() -> i64 {
    1
}

/// An application specification (cdap-v3.md 1.1), the body of the app and version creates.
/// Unknown fields are refused so a misspelt field never deploys silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Default `-SNAPSHOT`.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub services: Vec<ServiceSpec>,
}

/// A service of an application specification, also as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "one")]
    pub instances: i64,
    /// Always emitted, `null` when absent.
    #[serde(default)]
    pub health_path: Option<String>,
}

/// One record of `GET /v3/namespaces/{ns}/apps`: an app, described by its current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppRecord {
    /// Always `App`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
}

/// A program of an application version (only services in Corral).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProgramRecord {
    /// Always `Service`.
    #[serde(rename = "type")]
    pub kind: String,
    pub app: String,
    pub name: String,
    pub description: String,
}

/// An application version (cdap-v3.md 3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDetail {
    pub name: String,
    pub app_version: String,
    pub description: String,
    /// Seconds since the epoch of the creation or last overwrite.
    pub created: i64,
    pub programs: Vec<ProgramRecord>,
    pub services: Vec<ServiceSpec>,
}

/// One record of `GET /v3/namespaces/{ns}/services` (cdap-v3.md 4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceRecord {
    pub app: String,
    pub description: String,
    pub id: String,
    pub name: String,
    /// Always `Service`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A service's specification (cdap-v3.md 4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceDetail {
    /// Always `Service`.
    #[serde(rename = "type")]
    pub kind: String,
    pub app: String,
    pub version: String,
    pub name: String,
    pub description: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// The requested instance count.
    pub instances: i64,
    pub health_path: Option<String>,
}

/// A run record (cdap-v3.md 4.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunRecord {
    pub runid: String,
    /// Seconds since the epoch.
    pub start: i64,
    /// Absent while the run is active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
    pub status: String,
}

/// `GET .../instances` (cdap-v3.md 4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceCounts {
    pub requested: i64,
    pub provisioned: i64,
    pub healthy: i64,
}

/// The body of `PUT .../instances`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstancesBody {
    pub instances: i64,
}

/// `GET .../status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProgramStatus {
    pub status: String,
}

/// The answer of a start: the new run's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StartedRun {
    pub runid: String,
}

/// The 200 of `GET .../available`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub message: String,
}

/// One supervised process of a running service (Corral addition, `GET .../processes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProcessRecord {
    /// The instance index, 0..N-1.
    pub instance: i64,
    /// Absent between an exit and the restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The loopback port of the current (or last) process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub healthy: bool,
    /// How many times the instance was started again after an exit.
    pub restarts: u32,
    /// The most recent output of the current (or last) process, stdout and stderr together.
    pub output: String,
}

/// Runtime arguments of a service start (cdap-v3.md 4.3): variable name to value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeArgs(pub BTreeMap<String, String>);

impl RuntimeArgs {
    /// Reads runtime arguments as sent (`None`: no body): an object of strings whose names
    /// follow the `env` rules, each entry checked in turn so the first fault is the one named.
    pub fn from_json(body: Option<serde_json::Value>) -> Result<RuntimeArgs, Error> {
        use serde_json::Value;
        let bad = || Error::bad_request("Runtime arguments must be a JSON object of strings.");
        let Some(body) = body else {
            return Ok(RuntimeArgs::default());
        };
        let Value::Object(map) = body else {
            return Err(bad());
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let Value::String(v) = v else {
                return Err(bad());
            };
            if !is_env_key(&k) {
                return Err(Error::bad_request(format!(
                    "Invalid runtime argument name '{k}': use [A-Za-z_][A-Za-z0-9_]*."
                )));
            }
            if k == "PORT" || k.starts_with("CORRAL_") {
                return Err(Error::bad_request(format!(
                    "The runtime argument '{k}' is set by Corral and cannot be given."
                )));
            }
            out.insert(k, v);
        }
        Ok(RuntimeArgs(out))
    }
}

/// A route config as sent (cdap-v3.md 8.2): version to percentage, each at most 100; whether
/// the versions exist and the sum is 100 are checked by core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteConfigInput(pub BTreeMap<String, u32>);

/// One item of a batch call (cdap-v3.md 9) as the API read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub app_id: String,
    pub program_type: String,
    pub program_id: String,
    pub version: Option<String>,
    /// `version` was present but not a string.
    pub bad_version: bool,
    /// `runtimeargs` (start only): `None` when absent or null.
    pub runtime_args: Option<Parsed<RuntimeArgs>>,
}

/// What a batch item did when it succeeded; a failed item is the item's [`Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchDone {
    Started { runid: String },
    Stopped,
    Status { status: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_arguments_follow_the_env_rules() {
        let ok = RuntimeArgs::from_json(Some(serde_json::json!({"A": "1", "_b": "x"})));
        assert_eq!(ok.map(|m| m.0.len()), Ok(2));
        assert_eq!(RuntimeArgs::from_json(None), Ok(RuntimeArgs::default()));
        for bad in [
            serde_json::json!([1]),
            serde_json::json!({"A": 1}),
            serde_json::json!({"1A": "x"}),
            serde_json::json!({"PORT": "1"}),
            serde_json::json!({"CORRAL_X": "1"}),
        ] {
            assert!(
                matches!(
                    RuntimeArgs::from_json(Some(bad.clone())),
                    Err(Error::BadRequest(_))
                ),
                "{bad}"
            );
        }
    }
}
