//! Health, version, tokens and metrics: the endpoints outside the four families' prefixes.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use corral_types::Error;
use corral_types::views::{AccessToken, ErrorBody};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Ctx, IgnoredBody};
use crate::reply::{ApiResult, Json, text};

/// Coopr's health check: always `OK`, without touching the store.
#[utoipa::path(get, path = "/status", tag = "system", security(()),
    responses((status = 200, description = "`OK`", content_type = "text/plain")))]
pub async fn status() -> Response {
    text(StatusCode::OK, "OK\n")
}

/// Perspective's liveness check: 200 when the store answers, else 503.
#[utoipa::path(get, path = "/ping", tag = "system", security(()),
    responses((status = 200, description = "the store answers"),
              (status = 503, description = "`Storage is unavailable.`", body = ErrorBody)))]
pub async fn ping(State(state): State<AppState>) -> ApiResult<StatusCode> {
    if state.core.ping().await {
        Ok(StatusCode::OK)
    } else {
        Err(Error::Unavailable("Storage is unavailable.".into()).into())
    }
}

/// The server's version as plain text.
#[utoipa::path(get, path = "/version", tag = "system", security(()),
    responses((status = 200, description = "e.g. `0.1.0`", content_type = "text/plain")))]
pub async fn version() -> Response {
    text(StatusCode::OK, env!("CARGO_PKG_VERSION"))
}

/// Trades any valid credential for a short-lived bearer access token (README 3.3).
#[utoipa::path(get, path = "/token", tag = "system",
    responses((status = 200, body = AccessToken), (status = 401, body = ErrorBody)))]
pub async fn token_get(State(state): State<AppState>, Ctx(ctx): Ctx) -> ApiResult<Json<AccessToken>> {
    Ok(Json(state.core.identity().mint_token(&ctx).await?))
}

/// Corral addition: who the caller is (tenant, user, role), for `corral whoami` and scripts.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub tenant: String,
    pub user: String,
    /// `admin`, `user` or `viewer` (the stored role).
    pub role: String,
    /// An admin of tenant `superadmin`.
    pub superadmin: bool,
}

/// Corral addition: the caller's identity. Permission: R.
#[utoipa::path(get, path = "/whoami", tag = "system",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(Ctx(ctx): Ctx) -> ApiResult<Json<WhoAmI>> {
    let p = ctx.principal();
    Ok(Json(WhoAmI {
        tenant: p.tenant.name.as_str().to_string(),
        user: p.user.as_str().to_string(),
        role: p.role.as_str().to_string(),
        superadmin: p.is_superadmin(),
    }))
}

/// As `GET /token`; a body, if any, is ignored.
#[utoipa::path(post, path = "/token", tag = "system",
    responses((status = 200, body = AccessToken), (status = 401, body = ErrorBody)))]
pub async fn token_post(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    _body: IgnoredBody,
) -> ApiResult<Json<AccessToken>> {
    Ok(Json(state.core.identity().mint_token(&ctx).await?))
}

/// Prometheus metrics: requests by route template, method and status, latency, store pool.
/// Operators only (an admin of tenant `superadmin`), or a scraper presenting the server's
/// `metrics_token` as `Authorization: Bearer` (Prometheus' `bearer_token`), which opens
/// nothing else.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
              (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: Result<Ctx, ApiError>,
) -> ApiResult<Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let pool = match bearer.and_then(|t| state.core.scrape_pool_stats(t)) {
        Some(pool) => pool,
        None => state.core.store_pool_stats(&ctx?.0)?,
    };
    metrics::gauge!("corral_store_pool_connections", "state" => "open").set(f64::from(pool.size));
    metrics::gauge!("corral_store_pool_connections", "state" => "idle").set(f64::from(pool.idle));
    metrics::gauge!("corral_store_pool_connections", "state" => "max").set(f64::from(pool.max));
    let feed = state.core.feed().stats();
    metrics::gauge!("corral_feed_watchers").set(feed.watchers as f64);
    metrics::counter!("corral_feed_events_sent_total").absolute(feed.events_sent);
    metrics::counter!("corral_feed_lagged_watchers_total").absolute(feed.lagged);
    metrics::gauge!("corral_feed_revision").set(feed.revision as f64);
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}
