//! Corral's HTTP API: one axum router serving the four families on one port.
//!
//! Routes are registered once, next to their OpenAPI annotations (`utoipa-axum`), so the
//! served routes, the committed `openapi/corral.json`, the `/docs` page and the auth-matrix
//! test all come from the same list. Handlers are thin: extract, call one [`Core`] function,
//! render a view.
//!
//! Architecture invariant: no SQL here; the API reaches data only through `corral-core`.

mod console;
pub mod error;
pub mod extract;
mod middleware;
mod openapi;
pub mod proxy;
mod reply;
mod routes;
pub mod serve;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use corral_core::Core;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_swagger_ui::SwaggerUi;

pub use openapi::openapi;

/// The request id of the request being served (a request extension).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// What every handler can reach. One `Arc`: axum clones the state into every request's
/// handler service, and a clone of the parts (the proxy's client alone holds several `Arc`s)
/// was a measurable share of a GET's CPU (docs/performance.md, "Scale").
#[derive(Clone)]
pub struct AppState(Arc<AppStateParts>);

impl AppState {
    pub fn new(parts: AppStateParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateParts;

    fn deref(&self) -> &AppStateParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppStateParts {
    pub core: Arc<Core>,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive: a client that declares a body and sends
    /// it a byte a minute must not hold a handler for ever.
    pub body_read_timeout: std::time::Duration,
    pub metrics: PrometheusHandle,
    /// The method proxy's upstream client (cdap-v3.md 6).
    pub proxy: proxy::ProxyClient,
    /// The listener speaks TLS (for `X-Forwarded-Proto`, and the console's `Secure` cookies).
    pub tls: bool,
    /// Serve the web console (`/ui`) and accept its session cookie (`[console] enabled`).
    pub console_enabled: bool,
}

/// The process-wide Prometheus recorder. `metrics` has one global recorder, so every server
/// in a process (tests run several) shares it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const BUCKETS: &[f64] = &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Histogram samples wait in the recorder until a render or an upkeep drains them:
            // without this, a server nobody scrapes grows by every request's latency (the
            // soak benchmark measured ~1 MiB a minute). One thread, as the recorder is global.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("no metrics upkeep thread ({e}): memory grows until /metrics is scraped");
            }
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Builds the whole application: routes, docs, middleware.
pub fn app(state: AppState) -> Router {
    let (router, mut api) = routes::router().split_for_parts();
    openapi::complete(&mut api);
    let max_body = state.max_body_bytes;
    let allow = middleware::AllowMap::from_openapi(&api);
    router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback(middleware::no_route)
        .layer(axum::middleware::from_fn_with_state(
            allow,
            middleware::method_not_allowed,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.core.clone(),
            middleware::revision,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            max_body,
            middleware::declared_body_limit,
        ))
        .layer(axum::middleware::from_fn(middleware::metrics))
        .layer(CatchPanicLayer::custom(|_| {
            error::ApiError(corral_types::Error::internal("handler panicked")).into_response_static()
        }))
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
}

/// Every route accepts an optional trailing slash (README 6.4), answered by the same handler
/// without a redirect. Applied before routing. The docs pages keep theirs: the Swagger UI
/// serves `/docs/` and redirects `/docs` to it.
pub fn normalize_path(mut req: Request) -> Request {
    let path = req.uri().path();
    // Method paths are forwarded raw, trailing slash included (cdap-v3.md 6.2).
    if path.len() > 1
        && path.ends_with('/')
        && !path.starts_with("/docs/")
        && proxy::split_method_path(path).is_none()
    {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}
