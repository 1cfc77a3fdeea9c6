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

/// A tenant's internal id: stable across renames of nothing, but never reused after a delete,
/// so a cached credential of a deleted tenant cannot match a new tenant of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub String);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An API key's id (a UUID, shown to clients, used to revoke it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKeyId(pub uuid::Uuid);

impl ApiKeyId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// Parses a path parameter; anything that is not a UUID cannot name a key.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(Self)
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
    fn names_deserialize_only_when_valid() {
        assert!(serde_json::from_str::<UserName>("\"alice\"").is_ok());
        assert!(serde_json::from_str::<UserName>("\"al ice\"").is_err());
    }
}
