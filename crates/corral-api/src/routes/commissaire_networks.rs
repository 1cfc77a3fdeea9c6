//! Commissaire family, `/api/v0`: networks and container manager configurations
//! (commissaire-v0.md 5.7-5.14). Lists are served under the plural and the singular path.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use corral_types::views::{ContainerManager, ContainerManagerInput, ErrorBody, Network, NetworkInput};

use crate::AppState;
use crate::extract::{Ctx, OptionalJson, Params};
use crate::reply::{ApiResult, Created, Json};

/// 201 with the object when the `PUT` created it, 200 when it was there already.
fn put_reply<T: serde::Serialize>((view, created): (T, bool)) -> Response {
    if created {
        Created(view).into_response()
    } else {
        Json(view).into_response()
    }
}

/// Commissaire answers every delete with an empty JSON array.
fn deleted() -> Json<Vec<String>> {
    Json(Vec::new())
}

/// The tenant's network names, sorted by byte value; `default` is always there.
#[utoipa::path(get, path = "/api/v0/networks", tag = "commissaire",
    responses((status = 200, body = [String])))]
pub async fn list_networks(State(s): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.core.commissaire().list_networks(&ctx).await?))
}

/// The same list as `GET /api/v0/networks`, under the excerpt's singular path.
#[utoipa::path(get, path = "/api/v0/network", tag = "commissaire",
    responses((status = 200, body = [String])))]
pub async fn list_networks_singular(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.core.commissaire().list_networks(&ctx).await?))
}

#[utoipa::path(get, path = "/api/v0/network/{network}", tag = "commissaire",
    params(("network" = String, Path, description = "network name")),
    responses((status = 200, body = Network), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_network(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
) -> ApiResult<Json<Network>> {
    Ok(Json(s.core.commissaire().get_network(&ctx, &name).await?))
}

/// Creates a network (201); putting the same settings again answers 200, different ones 409.
/// `flanneld_service` is accepted for `flannel_server`.
#[utoipa::path(put, path = "/api/v0/network/{network}", tag = "commissaire", request_body = NetworkInput,
    params(("network" = String, Path, description = "network name")),
    responses((status = 201, body = Network), (status = 200, body = Network), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_network(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
    OptionalJson(body): OptionalJson<NetworkInput>,
) -> ApiResult<Response> {
    Ok(put_reply(
        s.core.commissaire().put_network(&ctx, &name, body).await?,
    ))
}

/// Deletes a network that no cluster uses; `default` cannot be deleted. The body is `[]`.
#[utoipa::path(delete, path = "/api/v0/network/{network}", tag = "commissaire",
    params(("network" = String, Path, description = "network name")),
    responses((status = 200, description = "deleted: always the empty array `[]`", body = [String]),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_network(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
) -> ApiResult<Json<Vec<String>>> {
    s.core.commissaire().delete_network(&ctx, &name).await?;
    Ok(deleted())
}

/// The tenant's container manager names, sorted by byte value.
#[utoipa::path(get, path = "/api/v0/containermanagers", tag = "commissaire",
    responses((status = 200, body = [String])))]
pub async fn list_container_managers(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.core.commissaire().list_container_managers(&ctx).await?))
}

/// The same list as `GET /api/v0/containermanagers`, under the singular path.
#[utoipa::path(get, path = "/api/v0/containermanager", tag = "commissaire",
    responses((status = 200, body = [String])))]
pub async fn list_container_managers_singular(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.core.commissaire().list_container_managers(&ctx).await?))
}

/// A container manager configuration; a stored `token` is shown as `"********"`.
#[utoipa::path(get, path = "/api/v0/containermanager/{container_manager}", tag = "commissaire",
    params(("container_manager" = String, Path, description = "container manager name")),
    responses((status = 200, body = ContainerManager), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn get_container_manager(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
) -> ApiResult<Json<ContainerManager>> {
    Ok(Json(
        s.core.commissaire().get_container_manager(&ctx, &name).await?,
    ))
}

/// Creates a container manager configuration (201); the same settings again (the real token
/// compared) answer 200, different ones 409. `server_url` is accepted for `apiserver`.
#[utoipa::path(put, path = "/api/v0/containermanager/{container_manager}", tag = "commissaire",
    request_body = ContainerManagerInput,
    params(("container_manager" = String, Path, description = "container manager name")),
    responses((status = 201, body = ContainerManager), (status = 200, body = ContainerManager),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_container_manager(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
    OptionalJson(body): OptionalJson<ContainerManagerInput>,
) -> ApiResult<Response> {
    Ok(put_reply(
        s.core
            .commissaire()
            .put_container_manager(&ctx, &name, body)
            .await?,
    ))
}

/// Deletes a container manager configuration that no cluster uses. The body is `[]`.
#[utoipa::path(delete, path = "/api/v0/containermanager/{container_manager}", tag = "commissaire",
    params(("container_manager" = String, Path, description = "container manager name")),
    responses((status = 200, description = "deleted: always the empty array `[]`", body = [String]),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_container_manager(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
) -> ApiResult<Json<Vec<String>>> {
    s.core.commissaire().delete_container_manager(&ctx, &name).await?;
    Ok(deleted())
}
