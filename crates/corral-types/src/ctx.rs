//! The operation context: who is acting, for which tenant, under which request id.
//!
//! One `OpCtx` is built by the API's auth extractor (or, later, from a job's stored principal)
//! and passed by reference through core into the store. The tenant of every query comes from
//! here, never from a request parameter.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{ApiKeyId, JobId, TenantId, TenantName, UserName};

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

/// The context of one operation: a request, or a job acting for the request that started it.
///
/// Fields are private: the API's auth extractor and the job engine are the only places that
/// build one ([`OpCtx::new`], [`OpCtx::for_job`]), and the only way from a context to the
/// tenant's data is a permission check ([`OpCtx::require`]), which yields a [`TenantScope`].
#[derive(Debug, Clone)]
pub struct OpCtx {
    principal: Principal,
    request_id: String,
    job: Option<JobId>,
}

impl OpCtx {
    /// The context of a request by an authenticated principal.
    pub fn new(principal: Principal, request_id: impl Into<String>) -> OpCtx {
        OpCtx {
            principal,
            request_id: request_id.into(),
            job: None,
        }
    }

    /// The context of a job, rebuilt from the principal and request id stored with it.
    pub fn for_job(principal: Principal, request_id: impl Into<String>, job: JobId) -> OpCtx {
        OpCtx {
            principal,
            request_id: request_id.into(),
            job: Some(job),
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn user(&self) -> &UserName {
        &self.principal.user
    }

    pub fn tenant(&self) -> &TenantRef {
        &self.principal.tenant
    }

    /// The request this operation serves (a job keeps the id of the request that started it).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The job this context runs in, if any.
    pub fn job_id(&self) -> Option<&JobId> {
        self.job.as_ref()
    }

    /// `user@tenant`, as histories and logs name the actor.
    pub fn actor(&self) -> String {
        format!("{}@{}", self.principal.user, self.principal.tenant.name)
    }

    /// Fails with 403 unless the caller may do what `access` names; otherwise answers the
    /// scope that store calls on the caller's tenant need. The messages for admin and
    /// superadmin are Coopr's own texts.
    pub fn require(&self, access: Access) -> Result<TenantScope, Error> {
        if self.principal.allows(access) {
            return Ok(TenantScope {
                tenant: self.principal.tenant.id.clone(),
            });
        }
        Err(Error::Forbidden(match access {
            Access::Superadmin => "user unauthorized, must be superadmin.".to_string(),
            Access::Admin => "user unauthorized, must be admin.".to_string(),
            Access::Write | Access::Read => {
                format!("Role '{}' may not change resources.", self.principal.role)
            }
        }))
    }

    /// The scope of another tenant, for the superadmin's tenant administration (Coopr's
    /// `/v2/tenants/{name}/...`): 403 for anyone else.
    pub fn require_superadmin_over(&self, tenant: &TenantId) -> Result<TenantScope, Error> {
        self.require(Access::Superadmin)?;
        Ok(TenantScope {
            tenant: tenant.clone(),
        })
    }

    /// A job's scope: the permission was checked when the request that started the job was
    /// accepted, so the job acts within it without checking the role again.
    pub fn job_scope(&self) -> Option<TenantScope> {
        self.job.as_ref().map(|_| TenantScope {
            tenant: self.principal.tenant.id.clone(),
        })
    }
}

/// Proof that an operation may touch one tenant's data: store methods on tenant-owned rows take
/// it instead of a bare [`TenantId`], so a query on tenant data cannot be written without a
/// permission check (or an explicit background task) having produced it first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantScope {
    tenant: TenantId,
}

impl TenantScope {
    /// For work Corral does on its own, for no caller: the health watcher, reconciliation at
    /// start, a job's failure hook, bootstrap. Grep for it: every call site is such a task.
    pub fn background(tenant: TenantId) -> TenantScope {
        TenantScope { tenant }
    }

    pub fn id(&self) -> &TenantId {
        &self.tenant
    }

    pub fn as_str(&self) -> &str {
        self.tenant.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(tenant: &str, role: Role) -> Principal {
        Principal {
            tenant: TenantRef {
                id: TenantId::from_trusted("t"),
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

    #[test]
    fn a_scope_comes_only_from_a_passed_check() {
        let viewer = OpCtx::new(principal("acme", Role::Viewer), "r-1");
        assert_eq!(viewer.require(Access::Read).unwrap().as_str(), "t");
        assert!(viewer.require(Access::Write).is_err());
        assert!(
            viewer
                .require_superadmin_over(&TenantId::from_trusted("x"))
                .is_err()
        );
        // A request is no job: it has no job scope.
        assert_eq!(viewer.job_scope(), None);
        let root = OpCtx::new(principal("superadmin", Role::Admin), "r-2");
        let other = root
            .require_superadmin_over(&TenantId::from_trusted("x"))
            .unwrap();
        assert_eq!(other.id().as_str(), "x");
        let job = OpCtx::for_job(principal("acme", Role::Viewer), "r-3", JobId::from_trusted("j"));
        assert_eq!(
            job.job_scope().map(|s| s.as_str().to_string()),
            Some("t".to_string())
        );
        assert_eq!(job.request_id(), "r-3");
        assert_eq!(job.actor(), "u@acme");
    }
}
