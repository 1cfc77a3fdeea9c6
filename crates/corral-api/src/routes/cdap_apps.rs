//! CDAP family, `/v3`: applications, their versions and the read side of their services
//! (cdap-v3.md 3, 4.1, 4.2).

use axum::extract::State;
use corral_types::cdap::{AppRecord, AppSpec, ApplicationDetail, ServiceDetail, ServiceRecord};
use corral_types::views::ErrorBody;
use corral_types::{Error, Parsed};

use crate::AppState;
use crate::extract::{Ctx, JsonBody, Params};
use crate::reply::{ApiResult, Empty, Json};

/// Reads an application spec, naming the field of any error (unknown fields included); core
/// reports a failure only after its permission and namespace checks.
fn app_spec(body: serde_json::Value) -> Parsed<AppSpec> {
    serde_path_to_error::deserialize::<_, AppSpec>(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            Error::bad_request(format!("Invalid application spec: {inner}."))
        } else {
            Error::bad_request(format!("Invalid application spec: {path}: {inner}."))
        }
    })
}

/// One record per app, describing its current version, sorted by name.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200, body = [AppRecord]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_apps(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
) -> ApiResult<Json<Vec<AppRecord>>> {
    Ok(Json(s.core.cdap().list_apps(&ctx, &ns).await?))
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
    Ok(Json(
        s.core
            .cdap()
            .put_app(&ctx, &ns, &app, None, app_spec(body))
            .await?,
    ))
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
    Ok(Json(s.core.cdap().get_app(&ctx, &ns, &app, None).await?))
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
    s.core.cdap().delete_app(&ctx, &ns, &app).await?;
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
    Ok(Json(
        s.core
            .cdap()
            .put_app(&ctx, &ns, &app, Some(&v), app_spec(body))
            .await?,
    ))
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
    Ok(Json(
        s.core
            .cdap()
            .put_app(&ctx, &ns, &app, Some(&v), app_spec(body))
            .await?,
    ))
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
    Ok(Json(s.core.cdap().get_app(&ctx, &ns, &app, Some(&v)).await?))
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
    s.core.cdap().delete_app_version(&ctx, &ns, &app, &v).await?;
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
    Ok(Json(s.core.cdap().list_app_versions(&ctx, &ns, &app).await?))
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
    Ok(Json(s.core.cdap().list_services(&ctx, &ns).await?))
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
    Ok(Json(
        s.core.cdap().get_service(&ctx, &ns, &app, None, &svc).await?,
    ))
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
    Ok(Json(
        s.core.cdap().get_service(&ctx, &ns, &app, Some(&v), &svc).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(body: serde_json::Value) -> String {
        match app_spec(body) {
            Ok(spec) => panic!("parsed: {spec:?}"),
            Err(e) => e.external_message(),
        }
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let top = parse_error(serde_json::json!({"services": [], "instance": 1}));
        assert!(top.contains("unknown field `instance`"), "{top}");
        let nested =
            parse_error(serde_json::json!({"services": [{"name": "a", "command": ["x"], "instance": 2}]}));
        assert!(
            nested.contains("services[0]") && nested.contains("`instance`"),
            "{nested}"
        );
        let typed =
            parse_error(serde_json::json!({"services": [{"name": "a", "command": ["x"], "instances": "2"}]}));
        assert!(typed.contains("services[0].instances"), "{typed}");
        let missing = parse_error(serde_json::json!({"description": "d"}));
        assert!(missing.contains("`services`"), "{missing}");
    }
}
