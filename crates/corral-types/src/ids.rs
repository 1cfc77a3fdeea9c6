//! Typed ids and validated names, so a tenant id cannot be passed where a user id is expected
//! and an unchecked string never reaches the store.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Checks the contract's name rule (README 6.2): 1 to 255 of `A-Z a-z 0-9 _ -`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_key(k: &str) -> bool {
    let mut bytes = k.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The contract's 400 for a bad name.
pub fn invalid_name(s: &str) -> Error {
    Error::BadRequest(format!(
        "Invalid name '{s}': use 1 to 255 characters from A-Z a-z 0-9 _ -."
    ))
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` against the name rule.
            pub fn parse(s: &str) -> Result<Self, Error> {
                if is_valid_name(s) { Ok(Self(s.to_string())) } else { Err(invalid_name(s)) }
            }

            /// For values read back from the store, which only ever holds validated names.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(|e| serde::de::Error::custom(e.external_message()))
            }
        }
    };
}

name_type!(
    /// A tenant's name, its public id.
    TenantName
);
name_type!(
    /// A user's id, unique within its tenant.
    UserName
);
name_type!(
    /// A CDAP namespace id.
    NamespaceName
);

/// Opaque ids: a private `String` that only a parse (for input), a generator (for new objects)
/// or `from_trusted` (for values read back from the store) can fill, so an instance id cannot
/// be passed where a host address or a job id is expected.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// For values read back from the store or derived by Corral itself.
            pub fn from_trusted(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        #[cfg(feature = "sqlx")]
        crate::sqlx_text!($name, |s: String| Ok($name(s)));
    };
}

id_type!(
    /// A tenant's internal id: never reused after a delete, so a cached credential of a deleted
    /// tenant cannot match a new tenant of the same name.
    TenantId
);

impl TenantId {
    /// A fresh id for a new tenant.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

id_type!(
    /// A Perspective instance's id (a UUID Corral assigns at launch).
    InstanceId
);
id_type!(
    /// A Perspective image's id: a snapshot's UUID or a base image's derived v5 id.
    ImageId
);
id_type!(
    /// A configured cloud's id (`[[clouds]] id`).
    CloudId
);
id_type!(
    /// A cloud's type (`[[clouds]] type`: `mock`, `qemu`, ...), as the driver registry knows it.
    /// Open, not an enum: types are registered by name in `corral_drivers::CloudRegistry`, so a
    /// new driver is one `register` line there and neither the types nor core change; the
    /// registry refuses a name it does not know when the server builds its clouds.
    CloudKind
);
id_type!(
    /// A durable job's id.
    JobId
);

impl JobId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

id_type!(
    /// What a job does: the engine runs a job only with the handler registered for its kind.
    /// Open, not an enum: a replica of another version may have queued kinds this one does not
    /// know, and leaves them alone.
    JobKind
);

id_type!(
    /// A Commissaire host's id: the address it was registered with.
    HostAddress
);
id_type!(
    /// A Commissaire cluster's name, unique within its tenant.
    ClusterName
);

/// A rolling operation's type (commissaire-v0.md 4.10-4.12): a closed set, so a typo cannot
/// name a fourth kind; stored and serialised as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    Deploy,
    Upgrade,
    Restart,
}

impl OperationKind {
    pub const ALL: [OperationKind; 3] = [
        OperationKind::Deploy,
        OperationKind::Upgrade,
        OperationKind::Restart,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Deploy => "deploy",
            OperationKind::Upgrade => "upgrade",
            OperationKind::Restart => "restart",
        }
    }

    pub fn parse(s: &str) -> Option<OperationKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "sqlx")]
crate::sqlx_text!(OperationKind);

/// Where a rolling operation is: the record's `status` (commissaire-v0.md 3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    InProcess,
    Finished,
    Failed,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::InProcess => "in_process",
            OperationStatus::Finished => "finished",
            OperationStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<OperationStatus> {
        [
            OperationStatus::InProcess,
            OperationStatus::Finished,
            OperationStatus::Failed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for OperationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "sqlx")]
crate::sqlx_text!(OperationStatus);

/// An API key's id (a UUID, shown to clients, used to revoke it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKeyId(uuid::Uuid);

impl ApiKeyId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// Parses a path parameter; anything that is not a UUID cannot name a key.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(Self)
    }

    /// No key: the principal of a job stored before keys were recorded with jobs.
    pub fn nil() -> Self {
        Self(uuid::Uuid::nil())
    }

    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl Default for ApiKeyId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name("Prod_env-1"));
        assert!(is_valid_name(&"x".repeat(255)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"x".repeat(256)));
        for bad in ["a b", "a/b", "a.b", "é", "a\n", "a%2F"] {
            assert!(!is_valid_name(bad), "{bad:?} accepted");
        }
        assert_eq!(
            TenantName::parse("a b").unwrap_err().external_message(),
            "Invalid name 'a b': use 1 to 255 characters from A-Z a-z 0-9 _ -."
        );
    }

    #[test]
    fn operation_enums_round_trip() {
        for k in OperationKind::ALL {
            assert_eq!(OperationKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for st in [
            OperationStatus::InProcess,
            OperationStatus::Finished,
            OperationStatus::Failed,
        ] {
            assert_eq!(OperationStatus::parse(st.as_str()), Some(st));
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
        assert_eq!(OperationKind::parse("reboot"), None);
    }

    #[test]
    fn names_deserialize_only_when_valid() {
        assert!(serde_json::from_str::<UserName>("\"alice\"").is_ok());
        assert!(serde_json::from_str::<UserName>("\"al ice\"").is_err());
    }
}
