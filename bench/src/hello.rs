//! The reference server: bare axum answering `GET /hello` with `{"message":"hello"}`.
//!
//! It is deliberately the smallest thing axum can serve — same axum, hyper and tokio versions and the same
//! default multi-threaded tokio runtime as Corral — so the ratio against it shows what Corral's own layers cost.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use axum::routing::get;
use axum::{Json, Router};
use std::io::Write as _;

async fn hello() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "message": "hello" }))
}

pub fn router() -> Router {
    Router::new().route("/hello", get(hello))
}

/// Serves until killed. Prints `listening on ADDR` as its first stdout line once the socket is bound.
pub async fn serve(listen: SocketAddr) -> Result<()> {
    if !listen.ip().is_loopback() {
        bail!("the hello server only listens on loopback, not {listen}");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    drop(out);
    axum::serve(listener, router()).await?;
    Ok(())
}

/// A stand-in for `corral serve` used to test the harness itself: `GET /status` and a bearer-protected
/// `GET /v3/namespaces/default` (key from `CORRAL_BOOTSTRAP_KEY`). Not a benchmark target.
pub async fn serve_mock_corral(listen: SocketAddr) -> Result<()> {
    use axum::http::{HeaderMap, StatusCode};
    if !listen.ip().is_loopback() {
        bail!("the mock server only listens on loopback, not {listen}");
    }
    let key = std::env::var("CORRAL_BOOTSTRAP_KEY").context("CORRAL_BOOTSTRAP_KEY not set")?;
    let expected = format!("Bearer {key}");
    let ns = move |headers: HeaderMap| {
        let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
        async move {
            if ok {
                Ok(Json(serde_json::json!({ "name": "default", "uid": "mock" })))
            } else {
                Err((
                    StatusCode::UNAUTHORIZED,
                    Json(serde_json::json!({ "error": "unauthorized" })),
                ))
            }
        }
    };
    let app = Router::new()
        .route(
            "/status",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/v3/namespaces/default", get(ns));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}
