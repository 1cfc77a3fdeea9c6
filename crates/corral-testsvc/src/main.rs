//! `corral-testsvc`: a CDAP service process for Corral's tests (spec cdap-v3 1.5, 6).
//!
//! It behaves as the contract expects a service to behave (listens on `127.0.0.1:$PORT`, answers
//! a health path, exits on `SIGTERM`) and gives tests a handle on every failure the supervisor
//! and the method proxy must survive: turning unhealthy, crashing, answering slowly, large
//! streamed bodies in both directions, and ignoring `SIGTERM`.
//!
//! Endpoints:
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | `{"version": $CORRAL_APP_VERSION, "instance": $CORRAL_INSTANCE, "pid": n}` |
//! | `GET /health` | 200, or 503 after `POST /control/unhealthy` (200 again after `POST /control/healthy`) |
//! | `POST /control/crash` | 200, then the process exits with status 3 |
//! | `ANY /slow?ms=N` | 200 after N milliseconds |
//! | `ANY /echo/...` | `{"method", "path", "query", "headers", "body_len", "body_sha256"}` |
//! | `GET /download?bytes=N` | N bytes, byte `i` being `i % 251`, streamed |
//! | `GET /env` | the process environment as a JSON object |
//!
//! Output, which tests use to check output capture: one line on stdout at start
//! (`corral-testsvc listening on 127.0.0.1:<port> pid <pid>`), one line per request on stderr
//! (`<METHOD> <path-and-query> <status>`).
//!
//! `--ignore-sigterm`: `SIGTERM` is received and ignored, so a test can watch the supervisor
//! fall back to `SIGKILL` after its grace period.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// Exit status of `POST /control/crash`: distinct from 0 (clean stop), 1 (a Rust error) and
/// 2 (bad start-up), so a test can tell a requested crash from anything else.
const CRASH_STATUS: i32 = 3;

/// Size of one `/download` chunk: the memory the endpoint uses whatever `bytes` is.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// What the handlers share.
struct App {
    /// Whether `/health` answers 200 (true) or 503.
    healthy: AtomicBool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let ignore_sigterm = std::env::args().skip(1).any(|a| a == "--ignore-sigterm");
    let port = match std::env::var("PORT").ok().and_then(|p| p.parse::<u16>().ok()) {
        Some(p) => p,
        None => {
            eprintln!("corral-testsvc: PORT must be set to a TCP port number");
            return ExitCode::from(2);
        }
    };
    // Installed before listening, so a SIGTERM that arrives as soon as the port answers is
    // handled (or ignored) by us rather than by the default disposition.
    let mut sigterm = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("corral-testsvc: cannot handle SIGTERM: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("corral-testsvc: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "corral-testsvc listening on 127.0.0.1:{port} pid {}",
        std::process::id()
    );

    let app = Arc::new(App {
        healthy: AtomicBool::new(true),
    });
    let router = Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/control/healthy", post(set_healthy))
        .route("/control/unhealthy", post(set_unhealthy))
        .route("/control/crash", post(crash))
        .route("/slow", any(slow))
        .route("/echo", any(echo))
        .route("/echo/", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/download", get(download))
        .route("/env", get(env))
        .layer(middleware::from_fn(log_request))
        .with_state(app);

    let server = axum::serve(listener, router);
    tokio::select! {
        r = server => match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("corral-testsvc: server failed: {e}");
                ExitCode::FAILURE
            }
        },
        () = async {
            loop {
                // `None`: the signal stream ended, which tokio does not do; stop waiting for it.
                if sigterm.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
                if ignore_sigterm {
                    eprintln!("corral-testsvc: SIGTERM ignored");
                } else {
                    break;
                }
            }
        } => {
            // Prompt, not graceful: in-flight requests (a long `/slow`) are dropped, as a real
            // service killed mid-request would drop them.
            eprintln!("corral-testsvc: SIGTERM, exiting");
            ExitCode::SUCCESS
        }
    }
}

/// One stderr line per request, after the answer's status is known.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let res = next.run(req).await;
    eprintln!("{method} {target} {}", res.status().as_u16());
    res
}

async fn root() -> Json<Value> {
    Json(json!({
        "version": std::env::var("CORRAL_APP_VERSION").ok(),
        "instance": std::env::var("CORRAL_INSTANCE").ok(),
        "pid": std::process::id(),
    }))
}

async fn health(State(app): State<Arc<App>>) -> StatusCode {
    if app.healthy.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn set_healthy(State(app): State<Arc<App>>) -> StatusCode {
    app.healthy.store(true, Ordering::Relaxed);
    StatusCode::OK
}

async fn set_unhealthy(State(app): State<Arc<App>>) -> StatusCode {
    app.healthy.store(false, Ordering::Relaxed);
    StatusCode::OK
}

/// Answers, then exits with [`CRASH_STATUS`]. The short delay lets hyper write the answer
/// before the process goes; a crash without an answer would look like a proxy failure.
async fn crash() -> StatusCode {
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        eprintln!("corral-testsvc: crashing on request");
        std::process::exit(CRASH_STATUS);
    });
    StatusCode::OK
}

async fn slow(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(ms) = q.get("ms").and_then(|v| v.parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "ms=N required\n").into_response();
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    (StatusCode::OK, format!("slept {ms} ms\n")).into_response()
}

/// Describes the request as received. The body is hashed chunk by chunk as it arrives, never
/// held whole, so a 100 MB upload through the proxy runs in flat memory on both sides.
async fn echo(req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut hasher = Sha256::new();
    let mut len: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                len += bytes.len() as u64;
                hasher.update(&bytes);
            }
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("body: {e}\n")).into_response();
            }
        }
    }
    let sha: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers_map(&parts.headers),
        "body_len": len,
        "body_sha256": sha,
    }))
    .into_response()
}

/// Header names are lower case already (the `http` crate normalises them); repeated headers
/// are joined with `, ` as HTTP allows.
fn headers_map(headers: &HeaderMap) -> Map<String, Value> {
    let mut map = Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        map.insert(name.as_str().to_owned(), Value::String(joined));
    }
    map
}

/// `bytes` bytes of the pattern `i % 251` (a prime, so chunk and buffer boundaries never line
/// up with the pattern and a dropped or repeated chunk shows), made one chunk at a time.
async fn download(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(total) = q.get("bytes").and_then(|v| v.parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "bytes=N required\n").into_response();
    };
    let chunks = futures_util::stream::unfold(0u64, move |offset| async move {
        if offset >= total {
            return None;
        }
        let n = (total - offset).min(DOWNLOAD_CHUNK as u64);
        let chunk: Vec<u8> = (offset..offset + n).map(|i| (i % 251) as u8).collect();
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(chunk)), offset + n))
    });
    let mut res = Body::from_stream(chunks).into_response();
    if let Ok(v) = total.to_string().parse() {
        res.headers_mut().insert(axum::http::header::CONTENT_LENGTH, v);
    }
    res
}

async fn env() -> Json<Map<String, Value>> {
    Json(
        std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    Value::String(v.to_string_lossy().into_owned()),
                )
            })
            .collect(),
    )
}
