//! CDAP applications (cdap-v3.md 1.1-1.3, 3) and the read side of their services (4.1, 4.2).
//! The lifecycle of services is in `services.rs`.

use std::collections::BTreeSet;

use corral_store::{AppVersionRow, NewAppVersion, PutAppVersion};
use corral_types::cdap::{
    AppRecord, AppSpec, ApplicationDetail, ProgramRecord, ServiceDetail, ServiceRecord, ServiceSpec,
};
use corral_types::ids::{invalid_name, is_valid_name};
use corral_types::time::now_ms;
use corral_types::{Access, Error, OpCtx, Parsed, TenantScope};

use crate::cdap::Cdap;
use crate::namespaces::check_namespace_param;

/// CDAP's default version name.
pub const DEFAULT_VERSION: &str = "-SNAPSHOT";
const MAX_DESCRIPTION: usize = 4096;

fn app_not_found(app: &str) -> Error {
    Error::not_found(format!("Application '{app}' not found."))
}

fn version_not_found(app: &str, v: &str) -> Error {
    Error::not_found(format!("Version '{v}' of application '{app}' not found."))
}

pub(crate) fn service_not_found(app: &str, svc: &str) -> Error {
    Error::not_found(format!("Service '{svc}' not found in application '{app}'."))
}

/// The version name rule (1.3): 1 to 255 of `A-Z a-z 0-9 _ . -`.
pub fn is_valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn check_version(v: &str) -> Result<(), Error> {
    if is_valid_version(v) {
        Ok(())
    } else {
        Err(Error::bad_request(format!("Invalid version '{v}'.")))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) use corral_types::ids::is_env_key;

fn check_description(field: &str, d: &str) -> Result<(), Error> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Error::bad_request(format!(
            "{field} is longer than {MAX_DESCRIPTION} characters."
        )));
    }
    Ok(())
}

pub(crate) fn services_of(row: &AppVersionRow) -> Result<Vec<ServiceSpec>, Error> {
    serde_json::from_str(&row.spec).map_err(Error::internal)
}

pub(crate) fn detail(row: &AppVersionRow) -> Result<ApplicationDetail, Error> {
    let services = services_of(row)?;
    Ok(ApplicationDetail {
        name: row.app.clone(),
        app_version: row.version.clone(),
        description: row.description.clone(),
        created: row.created / 1000,
        programs: services
            .iter()
            .map(|s| ProgramRecord {
                kind: "Service".into(),
                app: row.app.clone(),
                name: s.name.clone(),
                description: s.description.clone(),
            })
            .collect(),
        services,
    })
}

impl Cdap {
    /// The namespace check of every `/v3/namespaces/{ns}/...` route (cdap-v3.md 1).
    pub(crate) async fn require_namespace(&self, scope: &TenantScope, ns: &str) -> Result<(), Error> {
        check_namespace_param(ns)?;
        if self.store.get_namespace(scope, ns).await?.is_none() {
            return Err(Error::not_found(format!("Namespace '{ns}' not found.")));
        }
        Ok(())
    }

    /// Checks every rule of 1.1 on a service; the field is named in each message.
    fn check_service(&self, i: usize, s: &ServiceSpec) -> Result<(), Error> {
        let at = |field: &str| format!("services[{i}].{field}");
        if !is_valid_name(&s.name) {
            return Err(Error::bad_request(format!(
                "{}: {}",
                at("name"),
                invalid_name(&s.name).external_message()
            )));
        }
        check_description(&at("description"), &s.description)?;
        let Some(program) = s.command.first() else {
            return Err(Error::bad_request(format!(
                "{} must not be empty.",
                at("command")
            )));
        };
        corral_drivers::resolve_program(program, self.settings.service_command_dirs.as_deref())
            .map_err(Error::bad_request)?;
        for key in s.env.keys() {
            if !is_env_key(key) {
                return Err(Error::bad_request(format!(
                    "{}: invalid variable name '{key}': use [A-Za-z_][A-Za-z0-9_]*.",
                    at("env")
                )));
            }
            if key == "PORT" || key.starts_with("CORRAL_") {
                return Err(Error::bad_request(format!(
                    "{}: the variable '{key}' is set by Corral and cannot be given.",
                    at("env")
                )));
            }
        }
        let max = self.settings.service_max_instances;
        if !(1..=max).contains(&s.instances) {
            return Err(Error::bad_request(format!(
                "{} must be between 1 and {max}.",
                at("instances")
            )));
        }
        if let Some(p) = &s.health_path
            && !p.starts_with('/')
        {
            return Err(Error::bad_request(format!(
                "{} must start with '/'.",
                at("health_path")
            )));
        }
        Ok(())
    }

    /// `GET /v3/namespaces/{ns}/apps` (3.2).
    pub async fn list_apps(&self, ctx: &OpCtx, ns: &str) -> Result<Vec<AppRecord>, Error> {
        let scope = ctx.require(Access::Read)?;
        self.require_namespace(&scope, ns).await?;
        Ok(self
            .store
            .list_apps(&scope, ns)
            .await?
            .into_iter()
            .map(|r| AppRecord {
                kind: "App".into(),
                id: r.app.clone(),
                name: r.app,
                version: r.version,
                description: r.description,
            })
            .collect())
    }

    /// `PUT /v3/namespaces/{ns}/apps/{app}` (3.3) and, with `path_version`, the version
    /// create of 3.4. `spec` is the body as the API read it; a parse failure is reported only
    /// after the permission and namespace checks, as before any complaint about its fields.
    pub async fn put_app(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        path_version: Option<&str>,
        spec: Parsed<AppSpec>,
    ) -> Result<ApplicationDetail, Error> {
        let scope = ctx.require(Access::Write)?;
        self.require_namespace(&scope, ns).await?;
        if !is_valid_name(app) {
            return Err(invalid_name(app));
        }
        if let Some(v) = path_version {
            check_version(v)?;
        }
        let spec = spec?;
        let version = match (path_version, spec.version.as_deref()) {
            (Some(p), Some(b)) if p != b => {
                return Err(Error::bad_request(format!(
                    "version: '{b}' does not match the version '{p}' of the path."
                )));
            }
            (Some(p), _) => p.to_string(),
            (None, Some(b)) => {
                check_version(b)?;
                b.to_string()
            }
            (None, None) => DEFAULT_VERSION.to_string(),
        };
        let description = spec.description.unwrap_or_default();
        check_description("description", &description)?;
        if spec.services.is_empty() {
            return Err(Error::bad_request("services: at least one service is required."));
        }
        let mut seen = BTreeSet::new();
        for (i, s) in spec.services.iter().enumerate() {
            self.check_service(i, s)?;
            if !seen.insert(s.name.as_str()) {
                return Err(Error::bad_request(format!(
                    "services[{i}].name: the service name '{}' is used twice.",
                    s.name
                )));
            }
        }
        let services = serde_json::to_string(&spec.services).map_err(Error::internal)?;
        let overwritable = version.ends_with(DEFAULT_VERSION);
        if overwritable
            && !self
                .store
                .active_runs_in(&scope, Some(ns), Some(app), Some(&version))
                .await?
                .is_empty()
        {
            // Only an overwrite would change anything; an identical spec is still a 200.
            let same = self
                .store
                .get_app_version(&scope, ns, app, Some(&version))
                .await?
                .is_some_and(|row| row.spec == services && row.description == description);
            if !same {
                return Err(Error::conflict(format!(
                    "Stop the services of version '{version}' first."
                )));
            }
        }
        let new = NewAppVersion {
            version: &version,
            description: &description,
            spec: &services,
            overwritable,
        };
        match self
            .store
            .put_app_version(&scope, ns, app, &new, now_ms())
            .await?
        {
            PutAppVersion::Stored(row) => {
                tracing::info!(request_id = %ctx.request_id(), namespace = %ns, app = %app, version = %version, "app version stored");
                detail(&row)
            }
            PutAppVersion::Unchanged(row) => detail(&row),
            PutAppVersion::Conflict => Err(Error::conflict(format!(
                "Version '{version}' of application '{app}' already exists with a different spec."
            ))),
            PutAppVersion::NoNamespace => Err(Error::not_found(format!("Namespace '{ns}' not found."))),
        }
    }

    /// The row of version `v` (current when `None`), or the contract's 404.
    pub(crate) async fn app_version(
        &self,
        scope: &TenantScope,
        ns: &str,
        app: &str,
        v: Option<&str>,
    ) -> Result<AppVersionRow, Error> {
        self.require_namespace(scope, ns).await?;
        if !is_valid_name(app) {
            return Err(app_not_found(app));
        }
        let tenant = &scope;
        if let Some(v) = v
            && is_valid_version(v)
            && let Some(row) = self.store.get_app_version(tenant, ns, app, Some(v)).await?
        {
            return Ok(row);
        }
        let current = self.store.get_app_version(tenant, ns, app, None).await?;
        match (current, v) {
            (None, _) => Err(app_not_found(app)),
            (Some(_), Some(v)) => Err(version_not_found(app, v)),
            (Some(row), None) => Ok(row),
        }
    }

    /// `GET /v3/namespaces/{ns}/apps/{app}` and `.../versions/{v}` (3.5).
    pub async fn get_app(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
    ) -> Result<ApplicationDetail, Error> {
        let scope = ctx.require(Access::Read)?;
        detail(&self.app_version(&scope, ns, app, v).await?)
    }

    /// `GET /v3/namespaces/{ns}/apps/{app}/versions` (3.6): oldest first.
    pub async fn list_app_versions(&self, ctx: &OpCtx, ns: &str, app: &str) -> Result<Vec<String>, Error> {
        let scope = ctx.require(Access::Read)?;
        self.require_namespace(&scope, ns).await?;
        let versions = if is_valid_name(app) {
            self.store.list_app_versions(&scope, ns, app).await?
        } else {
            Vec::new()
        };
        if versions.is_empty() {
            return Err(app_not_found(app));
        }
        Ok(versions)
    }

    /// `DELETE /v3/namespaces/{ns}/apps/{app}` (3.7): refused while a service runs.
    pub async fn delete_app(&self, ctx: &OpCtx, ns: &str, app: &str) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        self.require_namespace(&scope, ns).await?;
        if is_valid_name(app) {
            self.refuse_if_running(&scope, ns, app, None).await?;
        }
        if !is_valid_name(app) || !self.store.delete_app(&scope, ns, app).await? {
            return Err(app_not_found(app));
        }
        tracing::info!(request_id = %ctx.request_id(), namespace = %ns, app = %app, "app deleted");
        Ok(())
    }

    /// `DELETE /v3/namespaces/{ns}/apps/{app}/versions/{v}` (3.8); the last version's delete
    /// deletes the app. Refused while a service of the version runs or a route config names it.
    pub async fn delete_app_version(&self, ctx: &OpCtx, ns: &str, app: &str, v: &str) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        // 404 for an unknown app or version, before anything is deleted.
        self.app_version(&scope, ns, app, Some(v)).await?;
        self.refuse_if_running(&scope, ns, app, Some(v)).await?;
        self.refuse_if_routed(&scope, ns, app, v).await?;
        if !self.store.delete_app_version(&scope, ns, app, v).await? {
            return Err(version_not_found(app, v));
        }
        tracing::info!(request_id = %ctx.request_id(), namespace = %ns, app = %app, version = %v, "app version deleted");
        Ok(())
    }

    /// `GET /v3/namespaces/{ns}/services` (4.1): the services of every app's current version,
    /// sorted by app (the store's order) then name.
    pub async fn list_services(&self, ctx: &OpCtx, ns: &str) -> Result<Vec<ServiceRecord>, Error> {
        let scope = ctx.require(Access::Read)?;
        self.require_namespace(&scope, ns).await?;
        let mut out = Vec::new();
        for row in self.store.list_apps(&scope, ns).await? {
            let mut services = services_of(&row)?;
            services.sort_by(|a, b| a.name.cmp(&b.name));
            out.extend(services.into_iter().map(|s| ServiceRecord {
                app: row.app.clone(),
                description: s.description,
                id: s.name.clone(),
                name: s.name,
                kind: "Service".into(),
            }));
        }
        Ok(out)
    }

    /// `GET .../apps/{app}[/versions/{v}]/services/{svc}` (4.2), with `instances` the
    /// requested count (4.6).
    pub async fn get_service(
        &self,
        ctx: &OpCtx,
        ns: &str,
        app: &str,
        v: Option<&str>,
        svc: &str,
    ) -> Result<ServiceDetail, Error> {
        let scope = ctx.require(Access::Read)?;
        let row = self.app_version(&scope, ns, app, v).await?;
        let s = services_of(&row)?
            .into_iter()
            .find(|s| s.name == svc)
            .ok_or_else(|| service_not_found(app, svc))?;
        let requested = self
            .store
            .requested_instances(
                &scope,
                &corral_store::ServiceRef {
                    namespace: ns.to_string(),
                    app: app.to_string(),
                    version: row.version.clone(),
                    service: svc.to_string(),
                },
            )
            .await?;
        Ok(ServiceDetail {
            kind: "Service".into(),
            app: row.app,
            version: row.version,
            name: s.name,
            description: s.description,
            command: s.command,
            env: s.env,
            instances: requested.unwrap_or(s.instances),
            health_path: s.health_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_env_rules() {
        for ok in ["-SNAPSHOT", "1.0.0", "a_b-c.D9", &"v".repeat(255)] {
            assert!(is_valid_version(ok), "{ok}");
        }
        for bad in ["", "1 0", "a/b", "é", &"v".repeat(256)] {
            assert!(!is_valid_version(bad), "{bad}");
        }
        for ok in ["A", "_", "a_1", "PATH_2"] {
            assert!(is_env_key(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A.B", "Ä"] {
            assert!(!is_env_key(bad), "{bad}");
        }
    }
}
