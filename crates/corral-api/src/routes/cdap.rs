//! CDAP family, `/v3`: namespaces.

use axum::extract::State;
use corral_types::views::{ErrorBody, Namespace, NamespaceInput};

use crate::AppState;
use crate::extract::{Ctx, OptionalJson, Params};
use crate::reply::{ApiResult, Empty, Json};

/// The tenant's namespaces, sorted by name; `default` is always there.
#[utoipa::path(get, path = "/v3/namespaces", tag = "cdap", responses((status = 200, body = [Namespace])))]
pub async fn list_namespaces(State(s): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Json<Vec<Namespace>>> {
    Ok(Json(s.core.namespaces().list_namespaces(&ctx).await?))
}

#[utoipa::path(get, path = "/v3/namespaces/{ns}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200, body = Namespace), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_namespace(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
) -> ApiResult<Json<Namespace>> {
    Ok(Json(s.core.namespaces().get_namespace(&ctx, &ns).await?))
}

/// Creates a namespace; an existing one is answered unchanged, also with 200.
#[utoipa::path(put, path = "/v3/namespaces/{ns}", tag = "cdap", request_body = NamespaceInput,
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200, body = Namespace), (status = 400, body = ErrorBody)))]
pub async fn create_namespace(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
    OptionalJson(body): OptionalJson<NamespaceInput>,
) -> ApiResult<Json<Namespace>> {
    Ok(Json(s.core.namespaces().create_namespace(&ctx, &ns, body).await?))
}

/// Edits a namespace's description and/or config (the whole config map is replaced).
#[utoipa::path(put, path = "/v3/namespaces/{ns}/properties", tag = "cdap", request_body = NamespaceInput,
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200, body = Namespace), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn update_namespace_properties(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
    OptionalJson(body): OptionalJson<NamespaceInput>,
) -> ApiResult<Json<Namespace>> {
    Ok(Json(s.core.namespaces().update_namespace(&ctx, &ns, body).await?))
}

/// Deletes the namespace and everything in it; `default` is emptied and kept.
#[utoipa::path(delete, path = "/v3/namespaces/{ns}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_namespace(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
) -> ApiResult<Empty> {
    s.core.namespaces().delete_namespace(&ctx, &ns).await?;
    Ok(Empty)
}

/// CDAP's spelling of the namespace delete.
#[utoipa::path(delete, path = "/v3/unrecoverable/namespaces/{ns}", tag = "cdap",
    params(("ns" = String, Path, description = "namespace id")),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_namespace_unrecoverable(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(ns): Params<String>,
) -> ApiResult<Empty> {
    s.core.namespaces().delete_namespace(&ctx, &ns).await?;
    Ok(Empty)
}
