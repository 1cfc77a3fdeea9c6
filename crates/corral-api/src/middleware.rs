//! Cross-cutting request handling: request ids, the request log line, metrics by route
//! template, and the JSON body of the router's own 404 and 405 answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corral_types::Error;
use tracing::Instrument;

use crate::RequestId;
use crate::error::ApiError;

pub const REQUEST_ID: &str = "x-request-id";

/// A client's request id is kept if it is at most 128 visible ASCII characters (README 5).
fn client_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())).then(|| v.to_string())
}

/// Outermost layer: assigns the request id, opens the span every log line of the request is
/// in, logs one line per request and echoes the id.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = client_request_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span =
        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    span.in_scope(|| {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::warn!(status, ms, "request finished");
        } else {
            tracing::info!(status, ms, "request finished");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// Where a request's context leaves the revisions its changes commit at (a request
/// extension the `Ctx` extractor fills).
#[derive(Clone, Default)]
pub struct RevisionSlot(Arc<std::sync::OnceLock<corral_core::OpCtx>>);

impl RevisionSlot {
    /// Attaches the slot's mark to `ctx` and keeps the context for the answer.
    pub fn attach(&self, ctx: corral_core::OpCtx) -> corral_core::OpCtx {
        let ctx = ctx.with_mark(corral_types::ChangeMark::new());
        let _ = self.0.set(ctx.clone());
        ctx
    }
}

/// The answer's header naming the revision a client follows the request's work from
/// (docs/events.md).
pub const REVISION: &str = "x-corral-revision";

/// Answers `X-Corral-Revision` on every successful change request (all asynchronous ones
/// among them): the last revision its own transactions committed, or the head when they
/// committed none. Proxied service methods are the service's answers and get none, and so do
/// the read-only `POST /query` and `POST /token`.
pub async fn revision(State(core): State<Arc<corral_core::Core>>, mut req: Request, next: Next) -> Response {
    // `POST /query` and `POST /token` read (or mint a credential): they change no object.
    let path = req.uri().path();
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !matches!(path, "/query" | "/token")
        && crate::proxy::split_method_path(path).is_none();
    let slot = RevisionSlot::default();
    if write {
        req.extensions_mut().insert(slot.clone());
    }
    let mut resp = next.run(req).await;
    if !write || !resp.status().is_success() {
        return resp;
    }
    let Some(ctx) = slot.0.get() else {
        return resp;
    };
    let revision = match ctx.change_mark().get() {
        Some(r) => r,
        None => match core.feed().head(ctx).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("no revision for the answer: {e}");
                return resp;
            }
        },
    };
    if let Ok(v) = HeaderValue::from_str(&revision.to_string()) {
        resp.headers_mut().insert(REVISION, v);
    }
    resp
}

/// A request that declares a body over `max_body_bytes` gets its 413 at once, before any
/// extractor waits for the body (README 9). The connection closes after the answer, since the
/// body is never read. Method proxy routes have their own limit (`proxy_max_body_bytes`).
pub async fn declared_body_limit(State(max): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) && crate::proxy::split_method_path(req.uri().path()).is_none()
    {
        let mut resp = ApiError(Error::PayloadTooLarge(max as u64)).into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    next.run(req).await
}

/// Counts requests and their latency, labelled by route template (never by raw path, which
/// would let clients create unbounded label values).
pub async fn metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    let route = route.unwrap_or_else(|| "unmatched".to_string());
    let labels = [
        ("route", route),
        ("method", method_label(&method).to_string()),
        ("status", resp.status().as_u16().to_string()),
    ];
    metrics::counter!("corral_http_requests_total", &labels).increment(1);
    metrics::histogram!("corral_http_request_duration_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
    resp
}

/// Bounded method labels: anything unusual is `other`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The methods each route template serves, taken from the OpenAPI document the routes were
/// registered with, as an `Allow` header value (`HEAD` wherever `GET` is).
#[derive(Clone, Default)]
pub struct AllowMap(Arc<HashMap<String, String>>);

impl AllowMap {
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> AllowMap {
        let mut map = HashMap::new();
        for (path, item) in &api.paths.paths {
            let ops = [
                ("GET", item.get.is_some()),
                ("HEAD", item.get.is_some() || item.head.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
                ("OPTIONS", item.options.is_some()),
            ];
            let allow = ops
                .iter()
                .filter(|(_, on)| *on)
                .map(|(m, _)| *m)
                .collect::<Vec<_>>()
                .join(", ");
            map.insert(path.clone(), allow);
        }
        AllowMap(Arc::new(map))
    }
}

/// The router answers a known path with a wrong method by an empty 405; give it the
/// contract's JSON body, message and `Allow` header.
pub async fn method_not_allowed(State(allow_map): State<AllowMap>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let resp = next.run(req).await;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED || resp.headers().contains_key(header::CONTENT_TYPE) {
        return resp;
    }
    let allow = route
        .and_then(|r| allow_map.0.get(&r).cloned())
        .unwrap_or_default();
    ApiError(Error::MethodNotAllowed {
        message: format!("Method {method} is not allowed for {path}."),
        allow,
    })
    .into_response()
}

/// Fallback for paths that match no route.
pub async fn no_route(req: Request) -> Response {
    if let Some(kind) = other_program_type(req.uri().path()) {
        return ApiError(Error::NotImplemented(format!(
            "Program type '{kind}' is not supported by Corral."
        )))
        .into_response();
    }
    ApiError(Error::not_found(format!(
        "No route for {} {}.",
        req.method(),
        req.uri().path()
    )))
    .into_response()
}

/// The CDAP program type of a URI for a program type other than services
/// (`.../apps/{app}[/versions/{v}]/{flows,mapreduce,spark,workers,workflows}[/...]`), which
/// answers 501 (cdap-v3.md 1).
fn other_program_type(path: &str) -> Option<&str> {
    const TYPES: [&str; 5] = ["flows", "mapreduce", "spark", "workers", "workflows"];
    let rest = path.strip_prefix("/v3/namespaces/")?;
    let mut segs = rest.split('/');
    let _ns = segs.next().filter(|s| !s.is_empty())?;
    if segs.next()? != "apps" {
        return None;
    }
    let _app = segs.next().filter(|s| !s.is_empty())?;
    let mut kind = segs.next()?;
    if kind == "versions" {
        segs.next().filter(|s| !s.is_empty())?;
        kind = segs.next()?;
    }
    TYPES.contains(&kind).then_some(kind)
}

#[cfg(test)]
mod program_type_tests {
    use super::other_program_type;

    #[test]
    fn other_program_types_are_recognised() {
        assert_eq!(other_program_type("/v3/namespaces/d/apps/a/flows"), Some("flows"));
        assert_eq!(
            other_program_type("/v3/namespaces/d/apps/a/spark/x/start"),
            Some("spark")
        );
        assert_eq!(
            other_program_type("/v3/namespaces/d/apps/a/versions/1/workflows/w/status"),
            Some("workflows")
        );
        assert_eq!(other_program_type("/v3/namespaces/d/apps/a/services/s"), None);
        assert_eq!(other_program_type("/v3/namespaces/d/apps/a/streams"), None);
        assert_eq!(other_program_type("/v3/namespaces/d/flows"), None);
    }
}
