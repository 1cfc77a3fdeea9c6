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
