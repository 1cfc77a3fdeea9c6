//! CDAP family, `/v3`: applications, their versions and the read side of their services
//! (cdap-v3.md 3, 4.1, 4.2).

use axum::extract::State;
use corral_types::cdap::{AppRecord, AppSpec, ApplicationDetail, ServiceDetail, ServiceRecord};
use corral_types::views::ErrorBody;

use crate::AppState;
use crate::extract::{Ctx, JsonBody, Params};
use crate::reply::{ApiResult, Empty, Json};

/// One record per app, describing its current version, sorted by name.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200, body = [AppRecord]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_apps(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
) -> ApiResult<Json<Vec<AppRecord>>> {
    Ok(Json(s.core.list_apps(&ctx, &ns).await?))
}

/// Creates the app, or adds or overwrites (`-SNAPSHOT`) the version named in the body.
#[utoipa::path(put, path = "/v3/namespaces/{ns}/apps/{app}", tag = "cdap", request_body = AppSpec,
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name")),
    responses((status = 200, body = ApplicationDetail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_app(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app)): Params<(String, String)>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<ApplicationDetail>> {
    Ok(Json(s.core.put_app(&ctx, &ns, &app, None, body).await?))
}

/// The app's current version.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name")),
    responses((status = 200, body = ApplicationDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_app(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app)): Params<(String, String)>,
) -> ApiResult<Json<ApplicationDetail>> {
    Ok(Json(s.core.get_app(&ctx, &ns, &app, None).await?))
}

/// Deletes every version of the app.
#[utoipa::path(delete, path = "/v3/namespaces/{ns}/apps/{app}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name")),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_app(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app)): Params<(String, String)>,
) -> ApiResult<Empty> {
    s.core.delete_app(&ctx, &ns, &app).await?;
    Ok(Empty)
}

/// Creates (or overwrites, `-SNAPSHOT`) version `{v}`; the app is created if needed.
#[utoipa::path(put, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/create", tag = "cdap", request_body = AppSpec,
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("v" = String, Path, description = "version")),
    responses((status = 200, body = ApplicationDetail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_app_version(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v)): Params<(String, String, String)>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<ApplicationDetail>> {
    Ok(Json(s.core.put_app(&ctx, &ns, &app, Some(&v), body).await?))
}

/// CDAP's method for the version create.
#[utoipa::path(post, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/create", tag = "cdap", request_body = AppSpec,
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("v" = String, Path, description = "version")),
    responses((status = 200, body = ApplicationDetail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn post_app_version(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v)): Params<(String, String, String)>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<ApplicationDetail>> {
    Ok(Json(s.core.put_app(&ctx, &ns, &app, Some(&v), body).await?))
}

/// Version `{v}` of the app.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("v" = String, Path, description = "version")),
    responses((status = 200, body = ApplicationDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_app_version(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v)): Params<(String, String, String)>,
) -> ApiResult<Json<ApplicationDetail>> {
    Ok(Json(s.core.get_app(&ctx, &ns, &app, Some(&v)).await?))
}

/// Deletes version `{v}`; deleting the last version deletes the app.
#[utoipa::path(delete, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("v" = String, Path, description = "version")),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_app_version(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v)): Params<(String, String, String)>,
) -> ApiResult<Empty> {
    s.core.delete_app_version(&ctx, &ns, &app, &v).await?;
    Ok(Empty)
}

/// The app's version names, oldest first.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/versions", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name")),
    responses((status = 200, body = [String]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_app_versions(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app)): Params<(String, String)>,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.core.list_app_versions(&ctx, &ns, &app).await?))
}

/// The services of the current version of every app, sorted by app then name.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/services", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200, body = [ServiceRecord]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_services(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
) -> ApiResult<Json<Vec<ServiceRecord>>> {
    Ok(Json(s.core.list_services(&ctx, &ns).await?))
}

/// A service of the app's current version.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = ServiceDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_service(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
) -> ApiResult<Json<ServiceDetail>> {
    Ok(Json(s.core.get_service(&ctx, &ns, &app, None, &svc).await?))
}

/// A service of version `{v}`.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = ServiceDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_version_service(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v, svc)): Params<(String, String, String, String)>,
) -> ApiResult<Json<ServiceDetail>> {
    Ok(Json(s.core.get_service(&ctx, &ns, &app, Some(&v), &svc).await?))
}
