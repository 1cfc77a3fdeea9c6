//! `GET /events`: the change feed (docs/events.md), as Server-Sent Events or as a JSON page.
//! The wire format is fixed by docs/events.md; core does the rest.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use corral_core::feed::{FeedEvent, FeedItem, FeedQuery, Watch};
use corral_types::Error;
use corral_types::views::ErrorBody;
use serde::Serialize;

use crate::AppState;
use crate::extract::Ctx;
use crate::reply::ApiResult;

/// A JSON page of events (for the OpenAPI document; the body is built as text).
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Events: `{revision, time, kind, type, id, namespace?, actor, request_id, object}`.
    pub events: Vec<serde_json::Value>,
    /// Pass as `since` for the next page.
    pub next: i64,
}

/// One event of the stream as an SSE client parses it (OpenAPI 3.1 describes a
/// `text/event-stream` body by the schema of one event; schemathesis checks each against it).
#[derive(Serialize, utoipa::ToSchema)]
pub struct SseEvent {
    /// The revision (absent on the final `lagged` event).
    pub id: Option<String>,
    /// The kind (`instance.updated`, ...), or `lagged`.
    pub event: String,
    /// The JSON event, or `{"resume_from": N}` for `lagged`.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

const DEFAULT_LIMIT: i64 = 500;
const MAX_LIMIT: i64 = 5000;

/// Watches the caller's tenant's changes (a Corral addition, any role; users and keys only
/// for admins). Server-Sent Events by default: `id:` the revision, `event:` the kind, `data:`
/// the JSON event, `: heartbeat` comments when idle, and a final `event: lagged` with
/// `{"resume_from": REV}` for a watcher that fell behind its buffer. With `Accept:
/// application/json`, one page `{events, next}` instead.
#[utoipa::path(get, path = "/events", tag = "events",
    params(
        ("since" = Option<i64>, Query, description = "events after this revision (default: the current head)"),
        ("types" = Option<String>, Query, description = "comma-separated object types: user,key,host,cluster,network,container_manager,operation,operation_step,instance,image,namespace,app,service,service_run,service_instance"),
        ("ids" = Option<String>, Query, description = "comma-separated object ids"),
        ("namespace" = Option<String>, Query, description = "CDAP namespace"),
        ("limit" = Option<i64>, Query, description = "JSON page size (default 500, at most 5000)"),
        ("Last-Event-ID" = Option<i64>, Header, description = "as `since`, and wins over it (browsers resend it)"),
    ),
    responses(
        (status = 200, description = "the event stream (`text/event-stream`) or, with `Accept: application/json`, a page",
            content((SseEvent = "text/event-stream"), (EventPage = "application/json"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 410, description = "`since` is older than retention; the body also has `oldest`, the oldest available revision", body = ErrorBody),
        (status = 429, description = "too many watchers for the tenant", body = ErrorBody)))]
pub async fn events(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(pairs) = query.map_err(|e| Error::bad_request(format!("Invalid query: {}", e.body_text())))?;
    let param = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let q = FeedQuery::parse(
        param("since"),
        last_event_id,
        param("types"),
        param("ids"),
        param("namespace"),
    )?;
    if wants_json(&headers) {
        let limit = match param("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| Error::bad_request(format!("limit must be between 1 and {MAX_LIMIT}.")))?,
        };
        let page = s.core.feed().page(&ctx, &q, limit).await?;
        let mut body =
            String::with_capacity(64 + page.events.iter().map(|e| e.json.len() + 1).sum::<usize>());
        body.push_str("{\"events\":[");
        for (i, e) in page.events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&e.json);
        }
        body.push_str(&format!("],\"next\":{}}}", page.next));
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )],
            body,
        )
            .into_response());
    }
    let watch = s.core.feed().watch(&ctx, &q).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(sse(watch)),
    )
        .into_response())
}

/// JSON when the client asks for it and not for an event stream.
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("text/event-stream")
}

/// Bytes of events batched into one chunk of the stream.
const BATCH_BYTES: usize = 64 * 1024;

/// One event in the SSE framing of docs/events.md.
fn frame(out: &mut String, ev: &FeedEvent) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "id: {}\nevent: {}\ndata: {}\n\n",
        ev.revision, ev.kind, ev.json
    );
}

/// The SSE body: events as they come, heartbeats while idle, `lagged` last if it comes.
fn sse(watch: Watch) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    let every = watch.heartbeat().max(Duration::from_millis(100));
    let tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    futures_util::stream::unfold((watch, tick, false), |(mut w, mut tick, ended)| async move {
        if ended {
            return None;
        }
        let chunk = tokio::select! {
            item = w.next() => match item {
                Ok(Some(FeedItem::Event(ev))) => {
                    tick.reset();
                    let mut chunk = String::with_capacity(ev.json.len() + 64);
                    frame(&mut chunk, &ev);
                    // A burst goes out in one write.
                    while chunk.len() < BATCH_BYTES {
                        match w.try_next() {
                            Some(ev) => frame(&mut chunk, &ev),
                            None => break,
                        }
                    }
                    chunk
                }
                Ok(Some(FeedItem::Lagged { resume_from })) => {
                    let last = format!("event: lagged\ndata: {{\"resume_from\":{resume_from}}}\n\n");
                    return Some((Ok(Bytes::from(last)), (w, tick, true)));
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!("change feed stream ended: {e}");
                    return None;
                }
            },
            _ = tick.tick() => ": heartbeat\n\n".to_string(),
        };
        Some((Ok(Bytes::from(chunk)), (w, tick, false)))
    })
}
