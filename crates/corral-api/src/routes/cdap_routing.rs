//! CDAP route configs (cdap-v3.md 8), the batch calls (9) and the method proxy's routes (6).

use std::collections::BTreeMap;

use axum::extract::State;
use corral_core::BatchOp;
use corral_types::views::ErrorBody;

use crate::AppState;
use crate::extract::{Ctx, JsonBody, Params};
use crate::reply::{ApiResult, Empty, Json};

/// The traffic split between the app's versions: version to percentage, `{}` when none.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/routeconfig", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = BTreeMap<String, u32>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_route_config(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
) -> ApiResult<Json<BTreeMap<String, u32>>> {
    Ok(Json(s.core.get_route_config(&ctx, &ns, &app, &svc).await?))
}

/// Replaces the split: every key an existing version containing the service, integer
/// percentages adding up to exactly 100. The split is exactly proportional among the versions
/// that can serve.
#[utoipa::path(put, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/routeconfig", tag = "cdap",
    request_body = BTreeMap<String, u32>,
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("svc" = String, Path, description = "service name")),
    responses((status = 200), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_route_config(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Empty> {
    s.core.put_route_config(&ctx, &ns, &app, &svc, body).await?;
    Ok(Empty)
}

/// Deletes the split; routing falls back to the server's fallback strategy.
#[utoipa::path(delete, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/routeconfig", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("svc" = String, Path, description = "service name")),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_route_config(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
) -> ApiResult<Empty> {
    s.core.delete_route_config(&ctx, &ns, &app, &svc).await?;
    Ok(Empty)
}

async fn batch(
    s: AppState,
    ctx: corral_types::OpCtx,
    ns: String,
    op: BatchOp,
    body: serde_json::Value,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    Ok(Json(s.core.batch(&ctx, &ns, op, body).await?))
}

/// Starts several services; each item is answered with its own `statusCode` (and `runid`).
#[utoipa::path(post, path = "/v3/namespaces/{ns}/start", tag = "cdap", request_body = [serde_json::Value],
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200, body = [serde_json::Value]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn batch_start(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    batch(s, ctx, ns, BatchOp::Start, body).await
}

/// Stops several services; each item is answered with its own `statusCode`.
#[utoipa::path(post, path = "/v3/namespaces/{ns}/stop", tag = "cdap", request_body = [serde_json::Value],
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200, body = [serde_json::Value]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn batch_stop(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    batch(s, ctx, ns, BatchOp::Stop, body).await
}

/// The status of several services; each item is answered with `statusCode` and `status`.
#[utoipa::path(post, path = "/v3/namespaces/{ns}/status", tag = "cdap", request_body = [serde_json::Value],
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200, body = [serde_json::Value]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn batch_status(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    batch(s, ctx, ns, BatchOp::Status, body).await
}

// The method proxy answers every HTTP method (`any`), so it is routed in `routes::router`
// outside `routes!`; these two operations document it (GET stands for every method).

/// Method proxy: forwards any method to a healthy instance of the version the route config
/// (or the fallback strategy) picks. Path, query, headers and body pass through, streamed.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/methods/{path}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("svc" = String, Path, description = "service name"), ("path" = String, Path, description = "endpoint path, forwarded raw")),
    responses((status = 200, description = "the service's answer, unchanged"), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[allow(dead_code)]
pub async fn methods_doc() {}

/// Method proxy pinned to version `{v}` (route config ignored).
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/methods/{path}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"),
           ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name"),
           ("path" = String, Path, description = "endpoint path, forwarded raw")),
    responses((status = 200, description = "the service's answer, unchanged"), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[allow(dead_code)]
pub async fn methods_version_doc() {}
