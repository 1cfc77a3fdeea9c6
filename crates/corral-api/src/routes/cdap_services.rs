//! CDAP service lifecycle, availability and run records (cdap-v3.md 4.3-4.7, 5), each in the
//! contract's two forms: the app's current version, and `/versions/{v}/`,
//! one handler per form, so the OpenAPI document lists both.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::Uri;
use corral_types::Error;
use corral_types::Parsed;
use corral_types::cdap::{
    InstanceCounts, Message, ProcessRecord, ProgramStatus, RunRecord, RuntimeArgs, StartedRun,
};
use corral_types::views::ErrorBody;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Ctx, IgnoredBody, JsonBody, OptionalJson, Params};
use crate::reply::{ApiResult, Empty, Json};

/// The raw query parameters of a request.
fn query_map(uri: &Uri) -> Result<HashMap<String, String>, ApiError> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError(Error::bad_request(format!("Invalid query string: {e}."))))
}

/// Reads the instance count of a `PUT .../instances` body; core checks its range.
fn instances(body: &serde_json::Value) -> Parsed<i64> {
    match body.get("instances") {
        None => Err(Error::bad_request("'instances' must be specified.")),
        Some(n) => n
            .as_i64()
            .filter(|_| n.is_i64() || n.is_u64())
            .ok_or_else(|| Error::bad_request("'instances' must be an integer.")),
    }
}

/// Starts a run; the body is optional runtime arguments (added to the processes' environment for this run).
#[utoipa::path(post, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/start", tag = "cdap", request_body(content = Option<HashMap<String, String>>, description = "runtime arguments"),
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = StartedRun), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
    OptionalJson(body): OptionalJson<Option<serde_json::Value>>,
) -> ApiResult<Json<StartedRun>> {
    Ok(Json(
        s.core
            .cdap()
            .start_service(&ctx, &ns, &app, None, &svc, RuntimeArgs::from_json(body))
            .await?,
    ))
}

/// As the current-version form, for version `{v}`.
#[utoipa::path(post, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/start", tag = "cdap", request_body(content = Option<HashMap<String, String>>, description = "runtime arguments"),
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = StartedRun), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn start_v(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v, svc)): Params<(String, String, String, String)>,
    OptionalJson(body): OptionalJson<Option<serde_json::Value>>,
) -> ApiResult<Json<StartedRun>> {
    Ok(Json(
        s.core
            .cdap()
            .start_service(&ctx, &ns, &app, Some(&v), &svc, RuntimeArgs::from_json(body))
            .await?,
    ))
}

/// Stops the active run: every instance gets SIGTERM, then SIGKILL after the grace period; the run ends KILLED.
#[utoipa::path(post, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/stop", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("svc" = String, Path, description = "service name")),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
    _body: IgnoredBody,
) -> ApiResult<Empty> {
    s.core.cdap().stop_service(&ctx, &ns, &app, None, &svc).await?;
    Ok(Empty)
}

/// As the current-version form, for version `{v}`.
#[utoipa::path(post, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/stop", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name")),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop_v(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v, svc)): Params<(String, String, String, String)>,
    _body: IgnoredBody,
) -> ApiResult<Empty> {
    s.core
        .cdap()
        .stop_service(&ctx, &ns, &app, Some(&v), &svc)
        .await?;
    Ok(Empty)
}

/// The program status: STOPPED, STARTING, RUNNING or STOPPING.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/status", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = ProgramStatus), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn status(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
) -> ApiResult<Json<ProgramStatus>> {
    Ok(Json(
        s.core.cdap().service_status(&ctx, &ns, &app, None, &svc).await?,
    ))
}

/// As the current-version form, for version `{v}`.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/status", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = ProgramStatus), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn status_v(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v, svc)): Params<(String, String, String, String)>,
) -> ApiResult<Json<ProgramStatus>> {
    Ok(Json(
        s.core
            .cdap()
            .service_status(&ctx, &ns, &app, Some(&v), &svc)
            .await?,
    ))
}

/// Requested, provisioned (alive) and healthy instance counts.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/instances", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = InstanceCounts), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_instances(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
) -> ApiResult<Json<InstanceCounts>> {
    Ok(Json(
        s.core
            .cdap()
            .service_instances(&ctx, &ns, &app, None, &svc)
            .await?,
    ))
}

/// As the current-version form, for version `{v}`.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/instances", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = InstanceCounts), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_instances_v(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v, svc)): Params<(String, String, String, String)>,
) -> ApiResult<Json<InstanceCounts>> {
    Ok(Json(
        s.core
            .cdap()
            .service_instances(&ctx, &ns, &app, Some(&v), &svc)
            .await?,
    ))
}

/// Sets the instance count; a running service is scaled at once (new indexes added, highest removed).
#[utoipa::path(put, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/instances", tag = "cdap", request_body = corral_types::cdap::InstancesBody,
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("svc" = String, Path, description = "service name")),
    responses((status = 200), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_instances(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Empty> {
    s.core
        .cdap()
        .set_service_instances(&ctx, &ns, &app, None, &svc, instances(&body))
        .await?;
    Ok(Empty)
}

/// As the current-version form, for version `{v}`.
#[utoipa::path(put, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/instances", tag = "cdap", request_body = corral_types::cdap::InstancesBody,
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name")),
    responses((status = 200), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_instances_v(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v, svc)): Params<(String, String, String, String)>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Empty> {
    s.core
        .cdap()
        .set_service_instances(&ctx, &ns, &app, Some(&v), &svc, instances(&body))
        .await?;
    Ok(Empty)
}

/// Run records, newest first; filters: status (running, completed, killed, failed, all), start, end (epoch seconds), limit (1-10000, default 100).
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/runs", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("svc" = String, Path, description = "service name"), ("status" = Option<String>, Query, description = "running, completed, killed, failed or all"), ("start" = Option<i64>, Query, description = "epoch seconds"), ("end" = Option<i64>, Query, description = "epoch seconds"), ("limit" = Option<i64>, Query, description = "1 to 10000")),
    responses((status = 200, body = [RunRecord]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn runs(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
    uri: Uri,
) -> ApiResult<Json<Vec<RunRecord>>> {
    let query = query_map(&uri)?;
    Ok(Json(
        s.core
            .cdap()
            .service_runs(&ctx, &ns, &app, None, &svc, &query)
            .await?,
    ))
}

/// As the current-version form, for version `{v}`.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/runs", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name"), ("status" = Option<String>, Query, description = "running, completed, killed, failed or all"), ("start" = Option<i64>, Query, description = "epoch seconds"), ("end" = Option<i64>, Query, description = "epoch seconds"), ("limit" = Option<i64>, Query, description = "1 to 10000")),
    responses((status = 200, body = [RunRecord]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn runs_v(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v, svc)): Params<(String, String, String, String)>,
    uri: Uri,
) -> ApiResult<Json<Vec<RunRecord>>> {
    let query = query_map(&uri)?;
    Ok(Json(
        s.core
            .cdap()
            .service_runs(&ctx, &ns, &app, Some(&v), &svc, &query)
            .await?,
    ))
}

/// One run record.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/runs/{runid}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("svc" = String, Path, description = "service name"), ("runid" = String, Path, description = "run id")),
    responses((status = 200, body = RunRecord), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn run(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc, runid)): Params<(String, String, String, String)>,
) -> ApiResult<Json<RunRecord>> {
    Ok(Json(
        s.core
            .cdap()
            .service_run(&ctx, &ns, &app, None, &svc, &runid)
            .await?,
    ))
}

/// As the current-version form, for version `{v}`.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/runs/{runid}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name"), ("runid" = String, Path, description = "run id")),
    responses((status = 200, body = RunRecord), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn run_v(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v, svc, runid)): Params<(String, String, String, String, String)>,
) -> ApiResult<Json<RunRecord>> {
    Ok(Json(
        s.core
            .cdap()
            .service_run(&ctx, &ns, &app, Some(&v), &svc, &runid)
            .await?,
    ))
}

/// 200 when a method call would find a healthy instance now; 503 with the reason otherwise.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/available", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = Message), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn available(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
) -> ApiResult<Json<Message>> {
    Ok(Json(
        s.core
            .cdap()
            .service_available(&ctx, &ns, &app, None, &svc)
            .await?,
    ))
}

/// As the current-version form, for version `{v}`.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/available", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = Message), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn available_v(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v, svc)): Params<(String, String, String, String)>,
) -> ApiResult<Json<Message>> {
    Ok(Json(
        s.core
            .cdap()
            .service_available(&ctx, &ns, &app, Some(&v), &svc)
            .await?,
    ))
}

/// Corral addition: the live processes of the service (pid, port, health, restarts) with the recent output of each.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/processes", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = [ProcessRecord]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn processes(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, svc)): Params<(String, String, String)>,
) -> ApiResult<Json<Vec<ProcessRecord>>> {
    Ok(Json(
        s.core
            .cdap()
            .service_processes(&ctx, &ns, &app, None, &svc)
            .await?,
    ))
}

/// As the current-version form, for version `{v}`.
#[utoipa::path(get, path = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/processes", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id"), ("app" = String, Path, description = "application name"), ("v" = String, Path, description = "version"), ("svc" = String, Path, description = "service name")),
    responses((status = 200, body = [ProcessRecord]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn processes_v(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((ns, app, v, svc)): Params<(String, String, String, String)>,
) -> ApiResult<Json<Vec<ProcessRecord>>> {
    Ok(Json(
        s.core
            .cdap()
            .service_processes(&ctx, &ns, &app, Some(&v), &svc)
            .await?,
    ))
}
