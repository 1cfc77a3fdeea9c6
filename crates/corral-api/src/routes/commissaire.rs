//! Commissaire family, `/api/v0`: hosts (clusters follow in `commissaire_clusters`).

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use corral_core::hosts::PeerInfo;
use corral_types::commissaire::{Host, HostCreds, HostPut, HostStatus};
use corral_types::views::ErrorBody;

use crate::AppState;
use crate::extract::{Ctx, JsonBody, Params};
use crate::reply::{ApiResult, Created, Json, json_array_stream};
use crate::serve::PeerAddr;

/// Commissaire answers a delete with an empty JSON array.
pub(crate) fn deleted() -> Json<[(); 0]> {
    Json([])
}

/// The tenant's hosts, sorted by address.
///
/// Streamed from a database cursor: a list longer than one batch (256 hosts) is sent with
/// chunked transfer encoding as it is read, and an error after the first byte cuts the body
/// off (docs/api/commissaire.md).
#[utoipa::path(get, path = "/api/v0/hosts", tag = "commissaire", responses((status = 200, body = [Host])))]
pub async fn list_hosts(State(s): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Response> {
    let batches = s.core.commissaire().stream_hosts(&ctx)?;
    json_array_stream(batches, ctx.request_id().to_string()).await
}

/// Same as `GET /api/v0/hosts` (the singular spelling of commissaire-http).
#[utoipa::path(get, path = "/api/v0/host", tag = "commissaire", responses((status = 200, body = [Host])))]
pub async fn list_hosts_singular(State(s): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Response> {
    let batches = s.core.commissaire().stream_hosts(&ctx)?;
    json_array_stream(batches, ctx.request_id().to_string()).await
}

#[utoipa::path(get, path = "/api/v0/host/{address}", tag = "commissaire",
    params(("address" = String, Path, description = "host address")),
    responses((status = 200, body = Host), (status = 404, body = ErrorBody)))]
pub async fn get_host(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(address): Params<String>,
) -> ApiResult<Json<Host>> {
    Ok(Json(s.core.commissaire().get_host(&ctx, &address).await?))
}

fn created_or_ok((created, host): (bool, Host)) -> Response {
    if created {
        Created(host).into_response()
    } else {
        Json(host).into_response()
    }
}

/// Registers a host and starts its investigation and bootstrap.
#[utoipa::path(put, path = "/api/v0/host/{address}", tag = "commissaire", request_body = HostPut,
    params(("address" = String, Path, description = "host address")),
    responses((status = 201, body = Host), (status = 200, body = Host), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_host(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(address): Params<String>,
    JsonBody(body): JsonBody<HostPut>,
) -> ApiResult<Response> {
    let peer = PeerInfo {
        peer: None,
        forwarded_for: None,
    };
    Ok(created_or_ok(
        s.core
            .commissaire()
            .put_host(&ctx, Some(&address), body, peer)
            .await?,
    ))
}

/// Self-registration: the address comes from the body, or from the TCP peer.
#[utoipa::path(put, path = "/api/v0/host", tag = "commissaire", request_body = HostPut,
    responses((status = 201, body = Host), (status = 200, body = Host), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_host_self(
    State(s): State<AppState>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<HostPut>,
) -> ApiResult<Response> {
    let forwarded_for = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let peer = PeerInfo {
        peer: Some(peer.ip()),
        forwarded_for,
    };
    Ok(created_or_ok(
        s.core.commissaire().put_host(&ctx, None, body, peer).await?,
    ))
}

/// Deletes a host: its record, credentials and membership.
#[utoipa::path(delete, path = "/api/v0/host/{address}", tag = "commissaire",
    params(("address" = String, Path, description = "host address")),
    responses((status = 200, description = "`[]`"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_host(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(address): Params<String>,
) -> ApiResult<Json<[(); 0]>> {
    s.core.commissaire().delete_host(&ctx, &address).await?;
    Ok(deleted())
}

/// The host's SSH credentials (tenant admins only).
#[utoipa::path(get, path = "/api/v0/host/{address}/creds", tag = "commissaire",
    params(("address" = String, Path, description = "host address")),
    responses((status = 200, body = HostCreds), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn host_creds(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(address): Params<String>,
) -> ApiResult<Json<HostCreds>> {
    Ok(Json(s.core.commissaire().host_creds(&ctx, &address).await?))
}

/// The host's status and the last failure reason.
#[utoipa::path(get, path = "/api/v0/host/{address}/status", tag = "commissaire",
    params(("address" = String, Path, description = "host address")),
    responses((status = 200, body = HostStatus), (status = 404, body = ErrorBody)))]
pub async fn host_status(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(address): Params<String>,
) -> ApiResult<Json<HostStatus>> {
    Ok(Json(s.core.commissaire().host_status(&ctx, &address).await?))
}

/// The state of the host machinery for the caller's tenant (commissaire-mvp's status).
#[utoipa::path(get, path = "/api/v0/status", tag = "commissaire",
    responses((status = 200, body = Object), (status = 503, body = ErrorBody)))]
pub async fn status(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
) -> ApiResult<Json<corral_types::commissaire::MachineryStatus>> {
    Ok(Json(s.core.commissaire().commissaire_status(&ctx).await?))
}
