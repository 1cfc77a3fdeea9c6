//! CDAP route configs (cdap-v3.md 8), the batch calls (9) and the method proxy's routes (6).

use std::collections::BTreeMap;

use axum::extract::State;
use corral_core::BatchOp;
use corral_types::cdap::{BatchDone, BatchItem, RouteConfigInput, RuntimeArgs};
use corral_types::views::ErrorBody;
use corral_types::{Error, Parsed};
use serde_json::{Map, Value};

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
    Ok(Json(s.core.cdap().get_route_config(&ctx, &ns, &app, &svc).await?))
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
    s.core
        .cdap()
        .put_route_config(&ctx, &ns, &app, &svc, route_config(body))
        .await?;
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
    s.core.cdap().delete_route_config(&ctx, &ns, &app, &svc).await?;
    Ok(Empty)
}

/// Reads a route config: a non-empty object of integer percentages up to 100.
fn route_config(body: Value) -> Parsed<RouteConfigInput> {
    let invalid = || Error::bad_request("Route config contains invalid format or empty content.");
    let Value::Object(map) = body else {
        return Err(invalid());
    };
    if map.is_empty() {
        return Err(invalid());
    }
    let mut config = BTreeMap::new();
    for (version, pct) in map {
        let pct = pct.as_u64().filter(|p| *p <= 100).ok_or_else(invalid)?;
        config.insert(version, pct as u32);
    }
    Ok(RouteConfigInput(config))
}

/// Reads a batch body: the items as sent (echoed back in the answer) and as core takes them.
fn batch_items(body: Value) -> (Vec<Map<String, Value>>, Parsed<Vec<BatchItem>>) {
    let Value::Array(items) = body else {
        return (
            Vec::new(),
            Err(Error::bad_request("The request body must be a JSON array.")),
        );
    };
    let mut maps = Vec::with_capacity(items.len());
    let mut parsed = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(map) = item else {
            return (
                Vec::new(),
                Err(Error::bad_request("Every item must be a JSON object.")),
            );
        };
        for field in ["appId", "programType", "programId"] {
            if !map.get(field).is_some_and(Value::is_string) {
                return (
                    Vec::new(),
                    Err(Error::bad_request(format!("'{field}' must be specified."))),
                );
            }
        }
        let text = |f: &str| map.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
        let version = map.get("version").and_then(Value::as_str).map(str::to_string);
        parsed.push(BatchItem {
            app_id: text("appId"),
            program_type: text("programType"),
            program_id: text("programId"),
            bad_version: map.contains_key("version") && version.is_none(),
            version,
            runtime_args: match map.get("runtimeargs") {
                None | Some(Value::Null) => None,
                Some(a) => Some(RuntimeArgs::from_json(Some(a.clone()))),
            },
        });
        maps.push(map);
    }
    (maps, Ok(parsed))
}

async fn batch(
    s: AppState,
    ctx: corral_types::OpCtx,
    ns: String,
    op: BatchOp,
    body: Value,
) -> ApiResult<Json<Vec<Value>>> {
    let (maps, items) = batch_items(body);
    let outcomes = s.core.cdap().batch(&ctx, &ns, op, items).await?;
    // Each item is answered as sent, with its own `statusCode` and result or `error`.
    let out = maps
        .into_iter()
        .zip(outcomes)
        .map(|(mut map, outcome)| {
            match outcome {
                Ok(done) => {
                    map.insert("statusCode".into(), Value::from(200));
                    match done {
                        BatchDone::Started { runid } => {
                            map.insert("runid".into(), Value::from(runid));
                        }
                        BatchDone::Stopped => {}
                        BatchDone::Status { status } => {
                            map.insert("status".into(), Value::from(status));
                        }
                    }
                }
                Err(e) => {
                    map.insert("statusCode".into(), Value::from(e.status()));
                    map.insert("error".into(), Value::from(e.external_message()));
                }
            }
            Value::Object(map)
        })
        .collect();
    Ok(Json(out))
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
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Vec<Value>>> {
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
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Vec<Value>>> {
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
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Vec<Value>>> {
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
