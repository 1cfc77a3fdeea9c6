//! The operation context: who is acting, for which tenant, under which request id.
//!
//! One `OpCtx` is built by the API's auth extractor (or, later, from a job's stored principal)
//! and passed by reference through core into the store. The tenant of every query comes from
//! here, never from a request parameter.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::changes::ChangeMark;
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
    mark: ChangeMark,
}

impl OpCtx {
    /// The context of a request by an authenticated principal.
    pub fn new(principal: Principal, request_id: impl Into<String>) -> OpCtx {
        OpCtx {
            principal,
            request_id: request_id.into(),
            job: None,
            mark: ChangeMark::new(),
        }
    }

    /// The same context, noting the revisions its changes commit at in `mark` (the API's,
    /// which answers the highest as `X-Corral-Revision`).
    pub fn with_mark(mut self, mark: ChangeMark) -> OpCtx {
        self.mark = mark;
        self
    }

    /// Where the revisions of this context's changes are noted.
    pub fn change_mark(&self) -> &ChangeMark {
        &self.mark
    }

    /// The context of a job, rebuilt from the principal and request id stored with it.
    pub fn for_job(principal: Principal, request_id: impl Into<String>, job: JobId) -> OpCtx {
        OpCtx {
            principal,
            request_id: request_id.into(),
            job: Some(job),
            mark: ChangeMark::new(),
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
            return Ok(self.scope_of(self.principal.tenant.id.clone()));
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
        Ok(self.scope_of(tenant.clone()))
    }

    /// A job's scope: the permission was checked when the request that started the job was
    /// accepted, so the job acts within it without checking the role again.
    pub fn job_scope(&self) -> Option<TenantScope> {
        self.job
            .as_ref()
            .map(|_| self.scope_of(self.principal.tenant.id.clone()))
    }

    fn scope_of(&self, tenant: TenantId) -> TenantScope {
        TenantScope {
            tenant,
            origin: Origin {
                actor: self.actor(),
                request_id: self.request_id.clone(),
                mark: Some(self.mark.clone()),
            },
        }
    }
}

/// Who a scope acts for, as the change log records it.
#[derive(Debug, Clone)]
struct Origin {
    actor: String,
    request_id: String,
    mark: Option<ChangeMark>,
}

/// The actor of changes Corral makes on its own.
pub const SYSTEM_ACTOR: &str = "corral";

/// Proof that an operation may touch one tenant's data: store methods on tenant-owned rows take
/// it instead of a bare [`TenantId`], so a query on tenant data cannot be written without a
/// permission check (or an explicit background task) having produced it first.
///
/// A scope also carries who acts (actor and request id, which the change log records) and
/// the request's [`ChangeMark`]; two scopes are equal when their tenants are.
#[derive(Debug, Clone)]
pub struct TenantScope {
    tenant: TenantId,
    origin: Origin,
}

impl PartialEq for TenantScope {
    fn eq(&self, other: &Self) -> bool {
        self.tenant == other.tenant
    }
}

impl Eq for TenantScope {}

impl PartialOrd for TenantScope {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TenantScope {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.tenant.cmp(&other.tenant)
    }
}

impl std::hash::Hash for TenantScope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.tenant.hash(state);
    }
}

impl TenantScope {
    /// For work Corral does on its own, for no caller: the health watcher, reconciliation at
    /// start, a job's failure hook, bootstrap. Grep for it: every call site is such a task.
    /// Its changes are recorded as made by [`SYSTEM_ACTOR`].
    pub fn background(tenant: TenantId) -> TenantScope {
        TenantScope {
            tenant,
            origin: Origin {
                actor: SYSTEM_ACTOR.to_string(),
                request_id: String::new(),
                mark: None,
            },
        }
    }

    /// `user@tenant` of the caller, or [`SYSTEM_ACTOR`].
    pub fn actor(&self) -> &str {
        &self.origin.actor
    }

    /// The request the change serves (a job keeps its request's id); empty for Corral's own.
    pub fn request_id(&self) -> &str {
        &self.origin.request_id
    }

    /// Notes that this scope's changes committed at `revision`.
    pub fn note_revision(&self, revision: i64) {
        if let Some(m) = &self.origin.mark {
            m.note(revision);
        }
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
