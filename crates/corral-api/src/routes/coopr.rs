//! Coopr family, `/v2`: tenants (superadmin), users and API keys (tenant admins), profile.

use axum::extract::State;
use corral_types::Error;
use corral_types::views::{
    ApiKey, ApiKeyCreate, ApiKeyCreated, ClusterStatus, ErrorBody, NodeProperties, NodePropertiesRequest,
    Profile, Tenant, TenantCreated, TenantRequest, User, UserCreate, UserUpdate, UserWithKey,
};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::AppState;
use crate::extract::{BodyError, Ctx, IgnoredBody, JsonBody, OptionalJson, Params};
use crate::reply::{ApiResult, Created, Empty, Json};

/// Coopr answers every malformed tenant body with this one text (coopr-v2.md 3.4).
fn tenant_body(body: Result<JsonBody<TenantRequest>, BodyError>) -> ApiResult<TenantRequest> {
    match body {
        Ok(JsonBody(b)) => Ok(b),
        Err(BodyError::Shape(_)) => Err(Error::bad_request("invalid input").into()),
        Err(e) => Err(e.into()),
    }
}

/// All tenants, sorted by name.
#[utoipa::path(get, path = "/v2/tenants", tag = "coopr",
    responses((status = 200, body = [Tenant]), (status = 403, body = ErrorBody)))]
pub async fn list_tenants(State(s): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Json<Vec<Tenant>>> {
    Ok(Json(s.core.identity().list_tenants(&ctx).await?))
}

/// Creates a tenant with its `default` namespace and network and an `admin` user whose key
/// is returned once.
#[utoipa::path(post, path = "/v2/tenants", tag = "coopr", request_body = TenantRequest,
    responses((status = 200, body = TenantCreated), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_tenant(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<JsonBody<TenantRequest>, BodyError>,
) -> ApiResult<Json<TenantCreated>> {
    Ok(Json(
        s.core.identity().create_tenant(&ctx, tenant_body(body)?).await?,
    ))
}

#[utoipa::path(get, path = "/v2/tenants/{tenant}", tag = "coopr",
    params(("tenant" = String, Path, description = "tenant name")),
    responses((status = 200, body = Tenant), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_tenant(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(tenant): Params<String>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(s.core.identity().get_tenant(&ctx, &tenant).await?))
}

/// Replaces a tenant's settings; omitted fields take their defaults.
///
/// The body is the complete tenant (coopr-v2.md 3.5): an omitted `maxClusters` or `maxNodes`
/// becomes unlimited (2147483647), an omitted `workers` 0 and an omitted `description` empty.
/// To change one field, send back the whole object read with `GET`.
#[utoipa::path(put, path = "/v2/tenants/{tenant}", tag = "coopr", request_body = TenantRequest,
    params(("tenant" = String, Path, description = "tenant name")),
    responses((status = 200, body = Tenant), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_tenant(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(tenant): Params<String>,
    body: Result<JsonBody<TenantRequest>, BodyError>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(
        s.core
            .identity()
            .update_tenant(&ctx, &tenant, tenant_body(body)?)
            .await?,
    ))
}

/// Deletes a tenant whose `workers` is 0, with everything it owns.
#[utoipa::path(delete, path = "/v2/tenants/{tenant}", tag = "coopr",
    params(("tenant" = String, Path, description = "tenant name")),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn delete_tenant(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(tenant): Params<String>,
) -> ApiResult<Empty> {
    s.core.identity().delete_tenant(&ctx, &tenant).await?;
    Ok(Empty)
}

/// Recovery: makes sure the tenant has an `admin` user and issues it a new key (shown once).
#[utoipa::path(post, path = "/v2/tenants/{tenant}/adminkey", tag = "coopr", request_body = ApiKeyCreate,
    params(("tenant" = String, Path, description = "tenant name")),
    responses((status = 200, body = UserWithKey), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn issue_admin_key(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(tenant): Params<String>,
    OptionalJson(body): OptionalJson<ApiKeyCreate>,
) -> ApiResult<Json<UserWithKey>> {
    Ok(Json(
        s.core.identity().issue_admin_key(&ctx, &tenant, body).await?,
    ))
}

/// Users of the caller's tenant, sorted by id.
#[utoipa::path(get, path = "/v2/users", tag = "coopr",
    responses((status = 200, body = [User]), (status = 403, body = ErrorBody)))]
pub async fn list_users(State(s): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(s.core.identity().list_users(&ctx).await?))
}

/// Creates a user (without a key).
#[utoipa::path(post, path = "/v2/users", tag = "coopr", request_body = UserCreate,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<UserCreate>,
) -> ApiResult<Created<User>> {
    Ok(Created(s.core.identity().create_user(&ctx, body).await?))
}

#[utoipa::path(get, path = "/v2/users/{user}", tag = "coopr",
    params(("user" = String, Path, description = "user id")),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(user): Params<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(s.core.identity().get_user(&ctx, &user).await?))
}

/// Changes a user's role and/or description.
#[utoipa::path(put, path = "/v2/users/{user}", tag = "coopr", request_body = UserUpdate,
    params(("user" = String, Path, description = "user id")),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_user(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(user): Params<String>,
    JsonBody(body): JsonBody<UserUpdate>,
) -> ApiResult<Json<User>> {
    Ok(Json(s.core.identity().update_user(&ctx, &user, body).await?))
}

/// Deletes a user, its keys, their tokens and its profile.
#[utoipa::path(delete, path = "/v2/users/{user}", tag = "coopr",
    params(("user" = String, Path, description = "user id")),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn delete_user(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(user): Params<String>,
) -> ApiResult<Empty> {
    s.core.identity().delete_user(&ctx, &user).await?;
    Ok(Empty)
}

/// A user's keys, oldest first; secrets are never included.
#[utoipa::path(get, path = "/v2/users/{user}/apikeys", tag = "coopr",
    params(("user" = String, Path, description = "user id")),
    responses((status = 200, body = [ApiKey]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_keys(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(user): Params<String>,
) -> ApiResult<Json<Vec<ApiKey>>> {
    Ok(Json(s.core.identity().list_keys(&ctx, &user).await?))
}

/// Issues a key; the secret is in this answer only.
#[utoipa::path(post, path = "/v2/users/{user}/apikeys", tag = "coopr", request_body = ApiKeyCreate,
    params(("user" = String, Path, description = "user id")),
    responses((status = 201, body = ApiKeyCreated), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn create_key(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(user): Params<String>,
    OptionalJson(body): OptionalJson<ApiKeyCreate>,
) -> ApiResult<Created<ApiKeyCreated>> {
    Ok(Created(s.core.identity().create_key(&ctx, &user, body).await?))
}

#[utoipa::path(get, path = "/v2/users/{user}/apikeys/{key_id}", tag = "coopr",
    params(("user" = String, Path, description = "user id"), ("key_id" = String, Path, description = "key id (UUID)")),
    responses((status = 200, body = ApiKey), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_key(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((user, key_id)): Params<(String, String)>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(s.core.identity().get_key(&ctx, &user, &key_id).await?))
}

/// Revokes a key and every token minted from it, at once.
#[utoipa::path(delete, path = "/v2/users/{user}/apikeys/{key_id}", tag = "coopr",
    params(("user" = String, Path, description = "user id"), ("key_id" = String, Path, description = "key id (UUID)")),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_key(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((user, key_id)): Params<(String, String)>,
) -> ApiResult<Empty> {
    s.core.identity().delete_key(&ctx, &user, &key_id).await?;
    Ok(Empty)
}

/// The caller's own free-form profile.
#[utoipa::path(get, path = "/v2/profile", tag = "coopr",
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_profile(State(s): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Json<Profile>> {
    Ok(Json(s.core.identity().get_profile(&ctx).await?))
}

/// Stores the caller's profile: a JSON object of at most 64 KiB.
#[utoipa::path(put, path = "/v2/profile", tag = "coopr", request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody)))]
pub async fn put_profile(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Profile>> {
    let Value::Object(profile) = body else {
        return Err(Error::bad_request("The profile must be a JSON object.").into());
    };
    Ok(Json(s.core.identity().put_profile(&ctx, Profile(profile)).await?))
}

/// Deletes the caller's profile (200 also when none exists).
#[utoipa::path(delete, path = "/v2/profile", tag = "coopr", responses((status = 200)))]
pub async fn delete_profile(State(s): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Empty> {
    s.core.identity().delete_profile(&ctx).await?;
    Ok(Empty)
}

/// The status of every cluster of the tenant (the 2014 Loom shape). The body is ignored.
#[utoipa::path(post, path = "/v2/getClusterStatuses", tag = "coopr", responses((status = 200, body = [Object])))]
pub async fn get_cluster_statuses(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    _body: IgnoredBody,
) -> ApiResult<Json<Vec<ClusterStatus>>> {
    Ok(Json(s.core.commissaire().cluster_statuses(&ctx).await?))
}

/// Properties of the member hosts of one cluster.
#[utoipa::path(post, path = "/v2/getNodeProperties", tag = "coopr", request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_node_properties(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<JsonBody<Value>, BodyError>,
) -> ApiResult<Json<BTreeMap<String, NodeProperties>>> {
    let body = match body {
        Ok(JsonBody(v)) => Some(v),
        Err(BodyError::Transport(e)) => return Err(e.into()),
        Err(_) => None,
    };
    let req = node_properties_request(body)?;
    Ok(Json(s.core.commissaire().node_properties(&ctx, &req).await?))
}

/// Reads a `getNodeProperties` body (`None`: not JSON) with Coopr's texts, checked in the
/// order Coopr checks them.
fn node_properties_request(body: Option<Value>) -> Result<NodePropertiesRequest, Error> {
    let Some(Value::Object(req)) = body else {
        return Err(Error::bad_request(
            "Invalid request body. Must be a valid JSON Object.",
        ));
    };
    let cluster_id = req
        .get("clusterId")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_request("clusterId must be specified."))?
        .to_string();
    let strings = |field: &str| -> Result<Vec<String>, Error> {
        match req.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::bad_request(format!("{field} must be an array of strings."))),
            Some(_) => Err(Error::bad_request(format!(
                "{field} must be an array of strings."
            ))),
        }
    };
    Ok(NodePropertiesRequest {
        cluster_id,
        properties: strings("properties")?,
        services: strings("services")?,
    })
}
