//! The operation context: who is acting, for which tenant, under which request id.
//!
//! One `OpCtx` is built by the API's auth extractor (or, later, from a job's stored principal)
//! and passed by reference through core into the store. The tenant of every query comes from
//! here, never from a request parameter.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{ApiKeyId, TenantId, TenantName, UserName};

/// The name of the tenant whose admins are superadmins.
pub const SUPERADMIN_TENANT: &str = "superadmin";

/// A stored role (README 2.1). `superadmin` is not stored: it is `Admin` in tenant `superadmin`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operation needs of its caller (the letters of the permission matrix, README 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// R: viewer and above.
    Read,
    /// W: user and above.
    Write,
    /// A: admin and above.
    Admin,
    /// S: an admin of tenant `superadmin`.
    Superadmin,
}

/// The tenant a context acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRef {
    pub id: TenantId,
    pub name: TenantName,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantRef,
    pub user: UserName,
    pub role: Role,
    /// The API key the credential came from (directly or through a token); tokens minted
    /// by this caller die with it.
    pub api_key: ApiKeyId,
}

impl Principal {
    pub fn is_superadmin(&self) -> bool {
        self.role == Role::Admin && self.tenant.name.as_str() == SUPERADMIN_TENANT
    }

    /// May this principal do an operation that needs `access`?
    pub fn allows(&self, access: Access) -> bool {
        match access {
            Access::Read => true,
            Access::Write => self.role >= Role::User,
            Access::Admin => self.role >= Role::Admin,
            Access::Superadmin => self.is_superadmin(),
        }
    }
}

/// The context of one operation.
#[derive(Debug, Clone)]
pub struct OpCtx {
    pub principal: Principal,
    pub request_id: String,
}

impl OpCtx {
    pub fn tenant(&self) -> &TenantRef {
        &self.principal.tenant
    }

    /// Fails with 403 unless the caller may do what `access` names. The messages for admin and
    /// superadmin are Coopr's own texts.
    pub fn require(&self, access: Access) -> Result<(), Error> {
        if self.principal.allows(access) {
            return Ok(());
        }
        Err(Error::Forbidden(match access {
            Access::Superadmin => "user unauthorized, must be superadmin.".to_string(),
            Access::Admin => "user unauthorized, must be admin.".to_string(),
            Access::Write | Access::Read => {
                format!("Role '{}' may not change resources.", self.principal.role)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(tenant: &str, role: Role) -> Principal {
        Principal {
            tenant: TenantRef {
                id: TenantId("t".into()),
                name: TenantName::from_trusted(tenant.into()),
            },
            user: UserName::from_trusted("u".into()),
            role,
            api_key: ApiKeyId::new(),
        }
    }

    #[test]
    fn permission_matrix_by_role() {
        use Access::*;
        let rows = [
            (principal("acme", Role::Viewer), [true, false, false, false]),
            (principal("acme", Role::User), [true, true, false, false]),
            (principal("acme", Role::Admin), [true, true, true, false]),
            (principal("superadmin", Role::User), [true, true, false, false]),
            (principal("superadmin", Role::Admin), [true, true, true, true]),
        ];
        for (p, expected) in rows {
            let got = [Read, Write, Admin, Superadmin].map(|a| p.allows(a));
            assert_eq!(got, expected, "{:?} in {}", p.role, p.tenant.name);
        }
    }
}
