//! Perspective family, root paths (perspective.md 5, 6, 7.3): instances, images, operations.
//! Bulk calls answer 200 at once with one result per item; the work runs as jobs.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use corral_core::SimpleAction;
use corral_types::perspective::{BulkResult, Console, Image, Instance, InstanceEvent};
use corral_types::views::ErrorBody;
use corral_types::{ImageId, InstanceId};
use serde_json::Value;

use super::perspective_wire::{
    bulk_results, image_ids, instance_ids, launch_items, rename_items, snapshot_items,
};
use crate::AppState;
use crate::extract::{Ctx, JsonBody, Params};
use crate::reply::{ApiResult, Json};

type Bulk = ApiResult<Json<Vec<BulkResult>>>;

/// An instance (Perspective's singular path).
#[utoipa::path(get, path = "/instance/{id}", tag = "perspective",
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Instance), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_instance_singular(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(id): Params<String>,
) -> ApiResult<Json<Instance>> {
    Ok(Json(
        s.core
            .perspective()
            .get_instance(&ctx, &InstanceId::from_trusted(id))
            .await?,
    ))
}

/// An instance.
#[utoipa::path(get, path = "/instances/{id}", tag = "perspective",
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Instance), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_instance(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(id): Params<String>,
) -> ApiResult<Json<Instance>> {
    Ok(Json(
        s.core
            .perspective()
            .get_instance(&ctx, &InstanceId::from_trusted(id))
            .await?,
    ))
}

/// Corral addition: the instance's actions (who, what, when, outcome, error), oldest first.
#[utoipa::path(get, path = "/instances/{id}/history", tag = "perspective",
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = [InstanceEvent]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn instance_history(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(id): Params<String>,
) -> ApiResult<Json<Vec<InstanceEvent>>> {
    Ok(Json(
        s.core
            .perspective()
            .instance_history(&ctx, &InstanceId::from_trusted(id))
            .await?,
    ))
}

/// Corral addition: the recent output of the instance's serial console (empty for clouds that keep none).
#[utoipa::path(get, path = "/instances/{id}/console", tag = "perspective",
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Console), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn instance_console(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(id): Params<String>,
) -> ApiResult<Json<Console>> {
    Ok(Json(
        s.core
            .perspective()
            .instance_console(&ctx, &InstanceId::from_trusted(id))
            .await?,
    ))
}

/// Launches instances: one result per item (202 `queued` with the new id, 404, 409).
#[utoipa::path(post, path = "/instances", tag = "perspective", request_body = [serde_json::Value],
    responses((status = 200, body = [BulkResult]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn launch(State(s): State<AppState>, Ctx(ctx): Ctx, JsonBody(body): JsonBody<Value>) -> Bulk {
    let items = launch_items(body);
    Ok(Json(bulk_results(
        s.core.perspective().launch_instances(&ctx, items).await?,
    )))
}

/// Deletes instances (array of ids).
#[utoipa::path(post, path = "/instances/delete", tag = "perspective", request_body = [String],
    responses((status = 200, body = [BulkResult]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete(State(s): State<AppState>, Ctx(ctx): Ctx, JsonBody(body): JsonBody<Value>) -> Bulk {
    let ids = instance_ids(body);
    Ok(Json(bulk_results(
        s.core.perspective().delete_instances(&ctx, ids).await?,
    )))
}

macro_rules! action_route {
    ($name:ident, $word:literal, $action:ident, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(put, path = concat!("/instances/", $word), tag = "perspective", request_body = [String],
            responses((status = 200, body = [BulkResult]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
        pub async fn $name(State(s): State<AppState>, Ctx(ctx): Ctx, JsonBody(body): JsonBody<Value>) -> Bulk {
            let ids = instance_ids(body);
            Ok(Json(bulk_results(s.core.perspective().instance_action(&ctx, SimpleAction::$action, ids).await?)))
        }
    };
}

action_route!(start, "start", Start, "Starts instances (from `shutoff`).");
action_route!(
    shutdown,
    "shutdown",
    Shutdown,
    "Shuts instances down (from `launched`)."
);
action_route!(
    reboot,
    "reboot",
    Reboot,
    "Reboots instances with the guest's cooperation."
);
action_route!(hard_reboot, "hard-reboot", HardReboot, "Resets instances.");
action_route!(pause, "pause", Pause, "Pauses instances (in memory).");
action_route!(resume, "resume", Resume, "Resumes paused or suspended instances.");
action_route!(
    suspend,
    "suspend",
    Suspend,
    "Suspends instances (state saved to disk)."
);

/// Resizes instances to a flavor of their project; the flavor is swapped at once.
#[utoipa::path(put, path = "/instances/resize/{flavorId}", tag = "perspective", request_body = [String],
    params(("flavorId" = String, Path, description = "target flavor id")),
    responses((status = 200, body = [BulkResult]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn resize(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(flavor): Params<String>,
    JsonBody(body): JsonBody<Value>,
) -> Bulk {
    let ids = instance_ids(body);
    Ok(Json(bulk_results(
        s.core.perspective().resize_instances(&ctx, &flavor, ids).await?,
    )))
}

/// Rebuilds instances from an image usable by their project; the image is swapped at once.
#[utoipa::path(put, path = "/instances/rebuild/{imageId}", tag = "perspective", request_body = [String],
    params(("imageId" = String, Path, description = "image id")),
    responses((status = 200, body = [BulkResult]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn rebuild(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(image): Params<String>,
    JsonBody(body): JsonBody<Value>,
) -> Bulk {
    let ids = instance_ids(body);
    Ok(Json(bulk_results(
        s.core
            .perspective()
            .rebuild_instances(&ctx, &ImageId::from_trusted(image), ids)
            .await?,
    )))
}

/// Renames instances: an object of instance id to new name.
#[utoipa::path(put, path = "/instances/rename", tag = "perspective", request_body = BTreeMap<String, String>,
    responses((status = 200, body = [BulkResult]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn rename(State(s): State<AppState>, Ctx(ctx): Ctx, JsonBody(body): JsonBody<Value>) -> Bulk {
    let items = rename_items(body);
    Ok(Json(bulk_results(
        s.core.perspective().rename_instances(&ctx, items).await?,
    )))
}

/// An image (Perspective's singular path).
#[utoipa::path(get, path = "/image/{id}", tag = "perspective",
    params(("id" = String, Path, description = "image id")),
    responses((status = 200, body = Image), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_image_singular(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(id): Params<String>,
) -> ApiResult<Json<Image>> {
    Ok(Json(
        s.core
            .perspective()
            .get_image(&ctx, &ImageId::from_trusted(id))
            .await?,
    ))
}

/// An image: a private snapshot, or a base image of a cloud.
#[utoipa::path(get, path = "/images/{id}", tag = "perspective",
    params(("id" = String, Path, description = "image id")),
    responses((status = 200, body = Image), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_image(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Params(id): Params<String>,
) -> ApiResult<Json<Image>> {
    Ok(Json(
        s.core
            .perspective()
            .get_image(&ctx, &ImageId::from_trusted(id))
            .await?,
    ))
}

/// Snapshots instances into new private images (`queued` → `saving` → `saved`).
#[utoipa::path(post, path = "/images", tag = "perspective", request_body = [serde_json::Value],
    responses((status = 200, body = [BulkResult]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_images(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<Value>,
) -> Bulk {
    let items = snapshot_items(body);
    Ok(Json(bulk_results(
        s.core.perspective().create_images(&ctx, items).await?,
    )))
}

/// Deletes private images (array of ids); an image backing an instance's disk is refused (409).
#[utoipa::path(post, path = "/images/delete", tag = "perspective", request_body = [String],
    responses((status = 200, body = [BulkResult]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_images(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<Value>,
) -> Bulk {
    let ids = image_ids(body);
    Ok(Json(bulk_results(
        s.core.perspective().delete_images(&ctx, ids).await?,
    )))
}

/// The operations each cloud type's driver supports, sorted. A cloud that cannot work now (a
/// missing program or directory) adds none; the clouds of the caller in that case are named,
/// with the reason, in the header `X-Corral-Unavailable-Clouds` (a JSON object, cloud id to
/// reason), since the contract's body has no room for them.
#[utoipa::path(get, path = "/operations", tag = "perspective",
    responses((status = 200, body = BTreeMap<String, Vec<String>>, headers(
        ("X-Corral-Unavailable-Clouds" = String, description = "JSON object: id → reason of each unavailable cloud the caller sees; absent when every one works"))),
        (status = 401, body = ErrorBody)))]
pub async fn operations(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
) -> ApiResult<(HeaderMap, Json<BTreeMap<String, Vec<String>>>)> {
    let perspective = s.core.perspective();
    let ops = perspective.cloud_operations(&ctx)?;
    let mut headers = HeaderMap::new();
    let unavailable = perspective.unavailable_clouds(&ctx)?;
    if !unavailable.is_empty() {
        // A header value is visible ASCII: anything else in a reason becomes '?'.
        let map: BTreeMap<String, String> = unavailable
            .into_iter()
            .map(|(id, why)| {
                let why = why
                    .chars()
                    .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
                    .collect();
                (id.to_string(), why)
            })
            .collect();
        if let Ok(Ok(v)) = serde_json::to_string(&map).map(HeaderValue::try_from) {
            headers.insert(HeaderName::from_static("x-corral-unavailable-clouds"), v);
        }
    }
    Ok((headers, Json(ops)))
}

/// Read-only SQL over the caller's tenant's inventory: one result per statement, errors inside
/// the results (`syntax_error`, `missing_parameters`, `evaluation_error`).
#[utoipa::path(post, path = "/query", tag = "perspective", request_body = [serde_json::Value],
    responses((status = 200, body = [serde_json::Value]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn query(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<Vec<corral_types::query::QueryResult>>> {
    let statements =
        corral_types::query::parse_query_request(body).map_err(corral_types::Error::bad_request)?;
    Ok(Json(s.core.query().run(&ctx, statements).await?))
}
