//! Tenants, users, API keys, access tokens and profiles (coopr-v2.md 3-5, README 3.3).

pub mod auth;
pub mod bootstrap;
pub mod secrets;
pub mod sessions;

use corral_store::{
    ApiKeyRow, CreateTenantOutcome, DeleteTenantOutcome, NewApiKey, NewTenant, TenantRow,
    UpdateTenantOutcome, UserChange, UserRow,
};
use corral_types::ctx::SUPERADMIN_TENANT;
use corral_types::ids::{invalid_name, is_valid_name};
use corral_types::time::now_ms;
use corral_types::views::{
    AccessToken, ApiKey, ApiKeyCreate, ApiKeyCreated, Profile, Tenant, TenantCreated, TenantInput,
    TenantRequest, UNLIMITED, User, UserCreate, UserUpdate, UserWithKey,
};
use corral_types::{Access, ApiKeyId, Error, OpCtx, Role, TenantId, TenantScope};

use std::sync::Arc;

use corral_store::Store;

use crate::CoreSettings;
use crate::auth::Authenticator;
use crate::cdap::Cdap;

const MAX_DESCRIPTION: usize = 4096;
/// Coopr's one text for every bad tenant body.
const INVALID_INPUT: &str = "invalid input";

fn tenant_not_found(name: &str) -> Error {
    Error::not_found(format!("tenant {name} not found"))
}

fn user_not_found(id: &str) -> Error {
    Error::not_found(format!("User '{id}' not found."))
}

fn last_admin(ctx: &OpCtx) -> Error {
    Error::conflict(format!(
        "Tenant '{}' must keep at least one admin.",
        ctx.tenant().name
    ))
}

pub(crate) fn tenant_view(r: TenantRow) -> Tenant {
    Tenant {
        name: r.name,
        description: r.description,
        workers: r.workers,
        max_clusters: r.max_clusters,
        max_nodes: r.max_nodes,
    }
}

pub(crate) fn user_view(tenant: &str, r: UserRow) -> Result<User, Error> {
    let role = r.role;
    Ok(User {
        id: r.id,
        tenant: tenant.to_string(),
        role,
        description: r.description,
        create_time: r.create_time,
    })
}

pub(crate) fn key_view(r: ApiKeyRow) -> ApiKey {
    ApiKey {
        id: r.id.to_string(),
        prefix: r.prefix,
        description: r.description,
        create_time: r.create_time,
        expire_time: r.expire_time,
        last_used_time: r.last_used_time,
    }
}

fn check_description(d: &str) -> Result<(), Error> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Error::bad_request(format!(
            "description is longer than {MAX_DESCRIPTION} characters."
        )));
    }
    Ok(())
}

/// Who may manage the keys of `user`: an admin, anyone's of the tenant; a `user`, its own, so
/// it can rotate them without an admin (a viewer cannot: its keys are an admin's business).
fn key_scope(ctx: &OpCtx, user: &str) -> Result<TenantScope, Error> {
    match ctx.require(Access::Admin) {
        Ok(scope) => Ok(scope),
        Err(denied) if ctx.user().as_str() == user => ctx.require(Access::Write).map_err(|_| denied),
        Err(denied) => Err(denied),
    }
}

/// Validates a tenant body against 3.1; every failure is Coopr's `invalid input`.
fn tenant_row(input: &TenantInput, require_workers: bool) -> Result<TenantRow, Error> {
    let bad = || Error::bad_request(INVALID_INPUT);
    let name = input.name.clone().filter(|n| is_valid_name(n)).ok_or_else(bad)?;
    let workers = match input.workers {
        Some(w) => w,
        None if require_workers => return Err(bad()),
        None => 0,
    };
    let row = TenantRow {
        id: TenantId::from_trusted(String::new()),
        name,
        description: input.description.clone().unwrap_or_default(),
        workers,
        max_clusters: input.max_clusters.unwrap_or(UNLIMITED),
        max_nodes: input.max_nodes.unwrap_or(UNLIMITED),
        create_time: now_ms(),
    };
    if row.workers < 0
        || row.max_clusters < 0
        || row.max_nodes < 0
        || row.description.chars().count() > MAX_DESCRIPTION
    {
        return Err(bad());
    }
    Ok(row)
}

/// A new key's stored record and its secret, to be shown once.
fn new_key(description: String, expire_time: Option<i64>) -> Result<(NewApiKey, String), Error> {
    let secret = secrets::generate(secrets::API_KEY_PREFIX)?;
    Ok((key_record(&secret, description, expire_time), secret))
}

pub(crate) fn key_record(secret: &str, description: String, expire_time: Option<i64>) -> NewApiKey {
    NewApiKey {
        id: ApiKeyId::new(),
        key_hash: secrets::hash(secret),
        prefix: secrets::prefix_of(secret),
        description,
        create_time: now_ms(),
        expire_time,
    }
}

fn created_key(k: NewApiKey, secret: String) -> ApiKeyCreated {
    ApiKeyCreated {
        record: ApiKey {
            id: k.id.to_string(),
            prefix: k.prefix,
            description: k.description,
            create_time: k.create_time,
            expire_time: k.expire_time,
            last_used_time: None,
        },
        key: secret,
    }
}

pub(crate) fn admin_user() -> UserRow {
    UserRow {
        id: "admin".into(),
        role: Role::Admin,
        description: String::new(),
        create_time: now_ms(),
    }
}

pub(crate) fn new_tenant_id() -> TenantId {
    TenantId::generate()
}

/// Path parameters of user routes must be names; anything else cannot exist.
fn user_param(id: &str) -> Result<&str, Error> {
    if is_valid_name(id) {
        Ok(id)
    } else {
        Err(user_not_found(id))
    }
}

/// Tenants, users, API keys, access tokens and profiles (Coopr's identity, shared by every
/// family), and the credentials they resolve to.
pub struct Identity {
    pub(crate) store: Store,
    pub(crate) settings: Arc<CoreSettings>,
    pub(crate) auth: Authenticator,
    /// Seals console sessions and derives their CSRF key (`sessions.rs`).
    pub(crate) secrets: Arc<crate::crypto::SecretBox>,
    /// A deleted tenant's service processes are stopped first.
    pub(crate) cdap: Arc<Cdap>,
}

impl Identity {
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }
}

impl Identity {
    pub async fn list_tenants(&self, ctx: &OpCtx) -> Result<Vec<Tenant>, Error> {
        ctx.require(Access::Superadmin)?;
        Ok(self
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(tenant_view)
            .collect())
    }

    pub async fn get_tenant(&self, ctx: &OpCtx, name: &str) -> Result<Tenant, Error> {
        ctx.require(Access::Superadmin)?;
        self.store
            .get_tenant(name)
            .await?
            .map(tenant_view)
            .ok_or_else(|| tenant_not_found(name))
    }

    pub async fn create_tenant(&self, ctx: &OpCtx, req: TenantRequest) -> Result<TenantCreated, Error> {
        ctx.require(Access::Superadmin)?;
        let mut row = tenant_row(&req.tenant, true)?;
        row.id = new_tenant_id();
        let (key, secret) = new_key("initial key".into(), None)?;
        let admin = admin_user();
        let new = NewTenant {
            tenant: row.clone(),
            admin: admin.clone(),
            key: key.clone(),
            copy_from_superadmin: req.bootstrap,
            worker_capacity: self.settings.worker_capacity,
        };
        match self.store.create_tenant(&new).await? {
            CreateTenantOutcome::Created => {}
            CreateTenantOutcome::NameTaken => {
                return Err(Error::conflict(format!("Tenant {} already exists.", row.name)));
            }
            CreateTenantOutcome::NoCapacity => {
                return Err(Error::conflict("Not enough capacity to add tenant."));
            }
        }
        tracing::info!(request_id = %ctx.request_id(), tenant = %row.name, "tenant created");
        let tenant_name = row.name.clone();
        Ok(TenantCreated {
            tenant: tenant_view(row),
            admin: UserWithKey {
                user: user_view(&tenant_name, admin)?,
                apikey: created_key(key, secret),
            },
        })
    }

    pub async fn update_tenant(&self, ctx: &OpCtx, name: &str, req: TenantRequest) -> Result<Tenant, Error> {
        ctx.require(Access::Superadmin)?;
        if self.store.get_tenant(name).await?.is_none() {
            return Err(tenant_not_found(name));
        }
        let mut input = req.tenant;
        if input.name.is_none() {
            input.name = Some(name.to_string());
        }
        let row = tenant_row(&input, false)?;
        if row.name != name {
            return Err(Error::bad_request(
                "tenant name in body does not match name in path.",
            ));
        }
        match self
            .store
            .update_tenant(&row, self.settings.worker_capacity)
            .await?
        {
            UpdateTenantOutcome::Updated(row) => Ok(tenant_view(row)),
            UpdateTenantOutcome::NotFound => Err(tenant_not_found(name)),
            UpdateTenantOutcome::QuotaViolated => Err(Error::conflict(
                "Writing tenant would cause cluster or node quotas to be violated.",
            )),
            UpdateTenantOutcome::NoCapacity => Err(Error::conflict("Not enough capacity to update tenant.")),
        }
    }

    pub async fn delete_tenant(&self, ctx: &OpCtx, name: &str) -> Result<(), Error> {
        ctx.require(Access::Superadmin)?;
        if name == SUPERADMIN_TENANT {
            return Err(Error::forbidden("Superadmin cannot be deleted."));
        }
        // Its service processes go first: nothing of a deleted tenant may keep running.
        if let Some(t) = self.store.get_tenant(name).await?
            && t.workers == 0
        {
            self.cdap
                .stop_services_in(&ctx.require_superadmin_over(&t.id)?, None, ctx.request_id())
                .await?;
        }
        match self.store.delete_tenant(name).await? {
            DeleteTenantOutcome::Deleted => {
                self.auth.invalidate();
                tracing::info!(request_id = %ctx.request_id(), tenant = %name, "tenant deleted");
                Ok(())
            }
            DeleteTenantOutcome::NotFound => Err(tenant_not_found(name)),
            DeleteTenantOutcome::HasWorkers(n) => Err(Error::conflict(format!(
                "Tenant {name} still has {n} workers. Cannot delete it until workers are set to 0."
            ))),
        }
    }

    /// Recovery: makes sure the tenant has an `admin` admin and issues it a new key.
    pub async fn issue_admin_key(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        req: ApiKeyCreate,
    ) -> Result<UserWithKey, Error> {
        ctx.require(Access::Superadmin)?;
        let description = req.description.unwrap_or_default();
        check_description(&description)?;
        let (key, secret) = new_key(description, None)?;
        let (tenant_row, user) = self
            .store
            .ensure_admin_with_key(tenant, &admin_user(), &key)
            .await?
            .ok_or_else(|| tenant_not_found(tenant))?;
        self.auth.invalidate();
        tracing::info!(request_id = %ctx.request_id(), tenant = %tenant, "admin key issued");
        Ok(UserWithKey {
            user: user_view(&tenant_row.name, user)?,
            apikey: created_key(key, secret),
        })
    }

    pub async fn list_users(&self, ctx: &OpCtx) -> Result<Vec<User>, Error> {
        let scope = ctx.require(Access::Admin)?;
        let tenant = ctx.tenant();
        self.store
            .list_users(&scope)
            .await?
            .into_iter()
            .map(|u| user_view(tenant.name.as_str(), u))
            .collect()
    }

    pub async fn get_user(&self, ctx: &OpCtx, id: &str) -> Result<User, Error> {
        let scope = ctx.require(Access::Admin)?;
        let tenant = ctx.tenant();
        let row = self
            .store
            .get_user(&scope, user_param(id)?)
            .await?
            .ok_or_else(|| user_not_found(id))?;
        user_view(tenant.name.as_str(), row)
    }

    pub async fn create_user(&self, ctx: &OpCtx, req: UserCreate) -> Result<User, Error> {
        let scope = ctx.require(Access::Admin)?;
        if !is_valid_name(&req.id) {
            return Err(invalid_name(&req.id));
        }
        let role = match req.role.as_deref() {
            None => Role::User,
            Some(r) => Role::parse(r).ok_or_else(|| invalid_role(r))?,
        };
        let description = req.description.unwrap_or_default();
        check_description(&description)?;
        let row = UserRow {
            id: req.id,
            role,
            description,
            create_time: now_ms(),
        };
        let tenant = ctx.tenant();
        if !self.store.create_user(&scope, &row).await? {
            return Err(Error::conflict(format!("User '{}' already exists.", row.id)));
        }
        tracing::info!(request_id = %ctx.request_id(), user = %row.id, role = %role, "user created");
        user_view(tenant.name.as_str(), row)
    }

    pub async fn update_user(&self, ctx: &OpCtx, id: &str, req: UserUpdate) -> Result<User, Error> {
        let scope = ctx.require(Access::Admin)?;
        let tenant = ctx.tenant();
        if self.store.get_user(&scope, user_param(id)?).await?.is_none() {
            return Err(user_not_found(id));
        }
        if req.id.as_deref().is_some_and(|body_id| body_id != id) {
            return Err(Error::bad_request(
                "User id in body does not match user id in path.",
            ));
        }
        let role = req
            .role
            .as_deref()
            .map(|r| Role::parse(r).ok_or_else(|| invalid_role(r)))
            .transpose()?;
        if let Some(d) = &req.description {
            check_description(d)?;
        }
        let changed = self
            .store
            .update_user(&scope, id, role, req.description.as_deref())
            .await?;
        match changed {
            UserChange::Done(row) => {
                self.auth.invalidate();
                user_view(tenant.name.as_str(), row)
            }
            UserChange::NotFound => Err(user_not_found(id)),
            UserChange::LastAdmin => Err(last_admin(ctx)),
        }
    }

    pub async fn delete_user(&self, ctx: &OpCtx, id: &str) -> Result<(), Error> {
        let scope = ctx.require(Access::Admin)?;
        match self.store.delete_user(&scope, user_param(id)?).await? {
            UserChange::Done(()) => {
                self.auth.invalidate();
                tracing::info!(request_id = %ctx.request_id(), user = %id, "user deleted");
                Ok(())
            }
            UserChange::NotFound => Err(user_not_found(id)),
            UserChange::LastAdmin => Err(last_admin(ctx)),
        }
    }

    pub async fn list_keys(&self, ctx: &OpCtx, user: &str) -> Result<Vec<ApiKey>, Error> {
        let scope = key_scope(ctx, user)?;
        let tenant = &scope;
        if self.store.get_user(tenant, user_param(user)?).await?.is_none() {
            return Err(user_not_found(user));
        }
        Ok(self
            .store
            .list_keys(tenant, user)
            .await?
            .into_iter()
            .map(key_view)
            .collect())
    }

    pub async fn get_key(&self, ctx: &OpCtx, user: &str, key_id: &str) -> Result<ApiKey, Error> {
        let scope = key_scope(ctx, user)?;
        let tenant = &scope;
        if self.store.get_user(tenant, user_param(user)?).await?.is_none() {
            return Err(user_not_found(user));
        }
        let missing = || key_not_found(user, key_id);
        let id = ApiKeyId::parse(key_id).ok_or_else(missing)?;
        self.store
            .get_key(tenant, user, id)
            .await?
            .map(key_view)
            .ok_or_else(missing)
    }

    pub async fn create_key(
        &self,
        ctx: &OpCtx,
        user: &str,
        req: ApiKeyCreate,
    ) -> Result<ApiKeyCreated, Error> {
        let scope = key_scope(ctx, user)?;
        let tenant = &scope;
        if self.store.get_user(tenant, user_param(user)?).await?.is_none() {
            return Err(user_not_found(user));
        }
        if req.expire_time.is_some_and(|t| t <= now_ms()) {
            return Err(Error::bad_request("expireTime must be in the future."));
        }
        let description = req.description.unwrap_or_default();
        check_description(&description)?;
        let (key, secret) = new_key(description, req.expire_time)?;
        if !self.store.create_key(tenant, user, &key).await? {
            return Err(user_not_found(user));
        }
        tracing::info!(request_id = %ctx.request_id(), user = %user, key_id = %key.id, "API key created");
        Ok(created_key(key, secret))
    }

    pub async fn delete_key(&self, ctx: &OpCtx, user: &str, key_id: &str) -> Result<(), Error> {
        let scope = key_scope(ctx, user)?;
        let tenant = &scope;
        if self.store.get_user(tenant, user_param(user)?).await?.is_none() {
            return Err(user_not_found(user));
        }
        let id = ApiKeyId::parse(key_id).ok_or_else(|| key_not_found(user, key_id))?;
        if !self.store.delete_key(tenant, user, id).await? {
            return Err(key_not_found(user, key_id));
        }
        self.auth.invalidate();
        tracing::info!(request_id = %ctx.request_id(), user = %user, key_id = %id, "API key revoked");
        Ok(())
    }

    /// `GET /token`: a short-lived bearer token for the caller, tied to the caller's key.
    pub async fn mint_token(&self, ctx: &OpCtx) -> Result<AccessToken, Error> {
        ctx.require(Access::Read)?;
        let secret = secrets::generate(secrets::TOKEN_PREFIX)?;
        let ttl = self.settings.token_ttl.as_secs() as i64;
        let now = now_ms();
        self.store
            .create_token(
                &secrets::hash(&secret),
                ctx.principal().api_key,
                now,
                now + ttl * 1000,
            )
            .await?;
        Ok(AccessToken {
            access_token: secret,
            token_type: "Bearer".into(),
            expires_in: ttl,
        })
    }

    /// `GET /v2/profile`: the caller's own profile.
    pub async fn get_profile(&self, ctx: &OpCtx) -> Result<Profile, Error> {
        let scope = ctx.require(Access::Read)?;
        let p = &ctx.principal();
        let body = self
            .store
            .get_profile(&scope, p.user.as_str())
            .await?
            .ok_or_else(|| Error::not_found("Profile not found."))?;
        serde_json::from_str(&body).map_err(Error::internal)
    }

    /// `PUT /v2/profile`: stores the caller's profile, at most 64 KiB as JSON text.
    pub async fn put_profile(&self, ctx: &OpCtx, profile: Profile) -> Result<Profile, Error> {
        let scope = ctx.require(Access::Read)?;
        let text = serde_json::to_string(&profile).map_err(Error::internal)?;
        if text.len() > 64 * 1024 {
            return Err(Error::bad_request("The profile must be at most 64 KiB."));
        }
        let p = &ctx.principal();
        self.store.put_profile(&scope, p.user.as_str(), &text).await?;
        Ok(profile)
    }

    pub async fn delete_profile(&self, ctx: &OpCtx) -> Result<(), Error> {
        let scope = ctx.require(Access::Read)?;
        let p = &ctx.principal();
        self.store.delete_profile(&scope, p.user.as_str()).await
    }
}

fn invalid_role(r: &str) -> Error {
    Error::bad_request(format!("Invalid role '{r}': use admin, user or viewer."))
}

fn key_not_found(user: &str, key: &str) -> Error {
    Error::not_found(format!("API key '{key}' of user '{user}' not found."))
}
