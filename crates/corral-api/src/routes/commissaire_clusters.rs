//! Commissaire family, `/api/v0`: clusters and their members.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use corral_types::OperationKind;
use corral_types::commissaire::{Cluster, ClusterPut, MembersPut, OperationPut};
use corral_types::views::ErrorBody;

use crate::AppState;
use crate::extract::{Ctx, IgnoredBody, JsonBody, OptionalJson, Params};
use crate::reply::{ApiResult, Created, Json};
use crate::routes::commissaire::deleted;

/// The tenant's cluster names.
#[utoipa::path(get, path = "/api/v0/clusters", tag = "commissaire", responses((status = 200, body = [String])))]
pub async fn list_clusters(State(s): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.core.commissaire().list_clusters(&ctx).await?))
}

/// Same as `GET /api/v0/clusters` (the excerpt's spelling).
#[utoipa::path(get, path = "/api/v0/cluster", tag = "commissaire", responses((status = 200, body = [String])))]
pub async fn list_clusters_singular(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.core.commissaire().list_clusters(&ctx).await?))
}

#[utoipa::path(get, path = "/api/v0/cluster/{name}", tag = "commissaire",
    params(("name" = String, Path, description = "cluster name")),
    responses((status = 200, body = Cluster), (status = 404, body = ErrorBody)))]
pub async fn get_cluster(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
) -> ApiResult<Json<Cluster>> {
    Ok(Json(s.core.commissaire().get_cluster(&ctx, &name).await?))
}

/// Creates a cluster (201), or answers the identical existing one (200).
#[utoipa::path(put, path = "/api/v0/cluster/{name}", tag = "commissaire", request_body = ClusterPut,
    params(("name" = String, Path, description = "cluster name")),
    responses((status = 201, body = Cluster), (status = 200, body = Cluster), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn put_cluster(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
    OptionalJson(body): OptionalJson<ClusterPut>,
) -> ApiResult<Response> {
    let (created, cluster) = s.core.commissaire().put_cluster(&ctx, &name, body).await?;
    Ok(if created {
        Created(cluster).into_response()
    } else {
        Json(cluster).into_response()
    })
}

/// Deletes a cluster and its operation records; its hosts are kept, `disassociated`.
#[utoipa::path(delete, path = "/api/v0/cluster/{name}", tag = "commissaire",
    params(("name" = String, Path, description = "cluster name")),
    responses((status = 200, description = "`[]`"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_cluster(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
) -> ApiResult<Json<[(); 0]>> {
    s.core.commissaire().delete_cluster(&ctx, &name).await?;
    Ok(deleted())
}

/// Member addresses in join order.
#[utoipa::path(get, path = "/api/v0/cluster/{name}/hosts", tag = "commissaire",
    params(("name" = String, Path, description = "cluster name")),
    responses((status = 200, body = [String]), (status = 404, body = ErrorBody)))]
pub async fn get_members(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.core.commissaire().cluster_members(&ctx, &name).await?))
}

/// Replaces the member set if `old` is current (compare-and-swap).
#[utoipa::path(put, path = "/api/v0/cluster/{name}/hosts", tag = "commissaire", request_body = MembersPut,
    params(("name" = String, Path, description = "cluster name")),
    responses((status = 200, body = Cluster), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 405, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_members(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(name): Params<String>,
    JsonBody(body): JsonBody<MembersPut>,
) -> ApiResult<Json<Cluster>> {
    Ok(Json(s.core.commissaire().swap_members(&ctx, &name, body).await?))
}

/// Membership test: `["<address>"]`, or 404.
#[utoipa::path(get, path = "/api/v0/cluster/{name}/hosts/{address}", tag = "commissaire",
    params(("name" = String, Path, description = "cluster name"), ("address" = String, Path, description = "host address")),
    responses((status = 200, body = [String]), (status = 404, body = ErrorBody)))]
pub async fn get_member(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((name, address)): Params<(String, String)>,
) -> ApiResult<Json<[String; 1]>> {
    Ok(Json([s
        .core
        .commissaire()
        .cluster_member(&ctx, &name, &address)
        .await?]))
}

/// Adds one host (idempotent).
#[utoipa::path(put, path = "/api/v0/cluster/{name}/hosts/{address}", tag = "commissaire",
    params(("name" = String, Path, description = "cluster name"), ("address" = String, Path, description = "host address")),
    responses((status = 200, body = [String]), (status = 404, body = ErrorBody), (status = 405, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn put_member(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((name, address)): Params<(String, String)>,
    _body: IgnoredBody,
) -> ApiResult<Json<[String; 1]>> {
    Ok(Json([s
        .core
        .commissaire()
        .add_member(&ctx, &name, &address)
        .await?]))
}

/// Removes one host (idempotent).
#[utoipa::path(delete, path = "/api/v0/cluster/{name}/hosts/{address}", tag = "commissaire",
    params(("name" = String, Path, description = "cluster name"), ("address" = String, Path, description = "host address")),
    responses((status = 200, description = "`[]`"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_member(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params((name, address)): Params<(String, String)>,
) -> ApiResult<Json<[(); 0]>> {
    s.core.commissaire().remove_member(&ctx, &name, &address).await?;
    Ok(deleted())
}

/// Renders an operation's latest record, or 204 when none was ever started.
fn record(rec: Option<serde_json::Value>) -> Response {
    match rec {
        Some(r) => Json(r).into_response(),
        None => axum::http::StatusCode::NO_CONTENT.into_response(),
    }
}

async fn start(
    s: AppState,
    ctx: corral_core::OpCtx,
    name: &str,
    kind: OperationKind,
    body: OperationPut,
) -> ApiResult<Response> {
    let (created, rec) = s
        .core
        .commissaire()
        .start_operation(&ctx, name, kind, body)
        .await?;
    Ok(if created {
        Created(rec).into_response()
    } else {
        Json(rec).into_response()
    })
}

macro_rules! operation_routes {
    ($kind:expr, $get:ident, $put:ident, $path:literal) => {
        /// The latest record of this operation type (204 when none was ever started).
        #[utoipa::path(get, path = $path, tag = "commissaire",
            params(("name" = String, Path, description = "cluster name")),
            responses((status = 200, body = Object), (status = 204), (status = 404, body = ErrorBody)))]
        pub async fn $get(State(s): State<AppState>, Ctx(ctx): Ctx, Params(name): Params<String>) -> ApiResult<Response> {
            Ok(record(s.core.commissaire().get_operation(&ctx, &name, $kind).await?))
        }

        /// Starts this rolling operation over the cluster's hosts.
        #[utoipa::path(put, path = $path, tag = "commissaire", request_body = OperationPut,
            params(("name" = String, Path, description = "cluster name")),
            responses((status = 201, body = Object), (status = 200, body = Object), (status = 400, body = ErrorBody),
                      (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
        pub async fn $put(
            State(s): State<AppState>,
            Ctx(ctx): Ctx,
            Params(name): Params<String>,
            OptionalJson(body): OptionalJson<OperationPut>,
        ) -> ApiResult<Response> {
            start(s, ctx, &name, $kind, body).await
        }
    };
}

operation_routes!(
    OperationKind::Deploy,
    get_deploy,
    put_deploy,
    "/api/v0/cluster/{name}/deploy"
);
operation_routes!(
    OperationKind::Upgrade,
    get_upgrade,
    put_upgrade,
    "/api/v0/cluster/{name}/upgrade"
);
operation_routes!(
    OperationKind::Restart,
    get_restart,
    put_restart,
    "/api/v0/cluster/{name}/restart"
);
