//! The CDAP method proxy (cdap-v3.md 6): every method under `.../services/{svc}/methods/...`
//! goes to a healthy instance chosen by core's router, with bodies streamed both ways.
//!
//! Nothing is buffered: the request body is handed to the upstream connection frame by frame
//! (counted against `proxy_max_body_bytes` as it goes) and the response body comes back the
//! same way, so a 100 MB upload or download costs a few frames of memory. Upstream connections
//! are pooled per instance port by hyper's client.
//!
//! A connect failure to the chosen instance is retried once on the next healthy instance of the
//! same version (6.3). That is safe because a failed connect never polled the body: the body
//! sits in a shared slot that the first poll takes, so the retry can still send it.
//!
//! A service may answer before it has read the request body (a 413, a 501) and close the
//! connection; writing the rest of the body then fails. Like nginx and Envoy, the proxy passes
//! that answer on: the upstream connection ([`EarlyAnswerIo`]) swallows the failed writes, so
//! the client reads the answer that is already in the socket.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use corral_types::{Error, OpCtx};
use hyper::body::{Bytes, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::error::ApiError;
use crate::extract::Ctx;
use crate::serve::PeerAddr;
use crate::{AppState, RequestId};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// An upstream connection that ignores writes once the service has closed its side: what it
/// answered can still be read.
struct EarlyAnswerIo {
    inner: TokioIo<tokio::net::TcpStream>,
    /// A write failed because the service closed the connection; later writes are dropped.
    closed: bool,
}

/// Whether a write error means the peer closed the connection (it may have answered).
fn peer_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

impl hyper::rt::Read for EarlyAnswerIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for EarlyAnswerIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if peer_closed(&e) => {
                self.closed = true;
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) if peer_closed(&e) => {
                self.closed = true;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connection for EarlyAnswerIo {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

/// The HTTP connector, handing out [`EarlyAnswerIo`] connections.
#[derive(Clone)]
struct EarlyAnswerConnector(HttpConnector);

impl tower::Service<Uri> for EarlyAnswerConnector {
    type Response = EarlyAnswerIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<EarlyAnswerIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            Ok(EarlyAnswerIo {
                inner: connecting.await?,
                closed: false,
            })
        })
    }
}

/// The pooled upstream client, shared by every proxied request.
#[derive(Clone)]
pub struct ProxyClient {
    client: Client<EarlyAnswerConnector, ForwardBody>,
    timeout: Duration,
    max_body: u64,
}

impl ProxyClient {
    pub fn new(timeout: Duration, max_body: u64) -> ProxyClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(EarlyAnswerConnector(connector));
        ProxyClient {
            client,
            timeout,
            max_body,
        }
    }
}

/// The request body as the upstream client sees it: taken from a shared slot at the first
/// poll (so a retry after a connect failure still has it), counted against the limit.
struct ForwardBody {
    slot: Arc<Mutex<Option<Body>>>,
    inner: Option<Body>,
    seen: u64,
    max: u64,
    exceeded: Arc<AtomicBool>,
}

#[derive(Debug)]
struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body over the limit")
    }
}

impl std::error::Error for TooLarge {}

impl ForwardBody {
    fn with_slot<R>(&self, f: impl FnOnce(&Body) -> R, default: R) -> R {
        match &self.inner {
            Some(b) => f(b),
            None => match self.slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                Some(b) => f(b),
                None => default,
            },
        }
    }
}

/// A body dropped before its end (the service answered early and closed, or went away) is
/// drained in the background: the client is still sending it and must get to read the answer
/// (see [`drain`]).
impl Drop for ForwardBody {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take()
            && !hyper::body::Body::is_end_stream(&body)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(drain(body));
        }
    }
}

impl hyper::body::Body for ForwardBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.inner.is_none() {
            this.inner = this.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.max {
                        this.exceeded.store(true, Ordering::Release);
                        // Back into the slot: the handler drains what the client still sends
                        // before answering 413 (see `drain`).
                        if let Some(inner) = this.inner.take() {
                            *this.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(inner);
                        }
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.with_slot(hyper::body::Body::is_end_stream, true)
    }

    fn size_hint(&self) -> SizeHint {
        self.with_slot(hyper::body::Body::size_hint, SizeHint::with_exact(0))
    }
}

/// The parts of a method path (6.1): the percent-encoded path parameters and the raw endpoint
/// path to forward (always starting with `/`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MethodPath<'a> {
    pub ns: &'a str,
    pub app: &'a str,
    pub version: Option<&'a str>,
    pub svc: &'a str,
    pub endpoint: &'a str,
}

/// Splits `/v3/namespaces/{ns}/apps/{app}[/versions/{v}]/services/{svc}/methods[/...]`.
pub(crate) fn split_method_path(path: &str) -> Option<MethodPath<'_>> {
    let rest = path.strip_prefix("/v3/namespaces/")?;
    let (ns, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("apps/")?;
    let (app, rest) = rest.split_once('/')?;
    let (version, rest) = match rest.strip_prefix("versions/") {
        Some(r) => {
            let (v, r) = r.split_once('/')?;
            (Some(v), r)
        }
        None => (None, rest),
    };
    let rest = rest.strip_prefix("services/")?;
    let (svc, rest) = rest.split_once('/')?;
    let endpoint = rest.strip_prefix("methods")?;
    if !(endpoint.is_empty() || endpoint.starts_with('/')) {
        return None;
    }
    let endpoint = if endpoint.is_empty() { "/" } else { endpoint };
    if [ns, app, svc].iter().any(|s| s.is_empty()) || version.is_some_and(str::is_empty) {
        return None;
    }
    Some(MethodPath {
        ns,
        app,
        version,
        svc,
        endpoint,
    })
}

/// Percent-decodes a path parameter with the rules of every other route (README 6.1).
fn decode(raw: &str) -> Result<String, Error> {
    let bad = || Error::bad_request(format!("Invalid path parameter '{raw}'."));
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).map_err(|_| bad())?;
    if s.contains('/') || s.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(s)
}

/// Builds the upstream request's headers (6.2).
fn forward_headers(
    incoming: &HeaderMap,
    ctx: &OpCtx,
    port: u16,
    peer: Option<SocketAddr>,
    tls: bool,
    request_id: Option<&str>,
) -> HeaderMap {
    let listed: Vec<String> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let mut out = HeaderMap::with_capacity(incoming.len() + 6);
    for (name, value) in incoming {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || listed.iter().any(|l| l == n)
            || n == "authorization"
            || n == "coopr-apikey"
            || n == "host"
            || n == "x-forwarded-for"
            || n.starts_with("x-corral-")
            || n == crate::console::CSRF_HEADER
        {
            continue;
        }
        // The console's session is Corral's credential, not the service's.
        if n == "cookie" {
            out.extend(crate::console::without_console_cookies(value).map(|v| (header::COOKIE, v)));
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Ok(host) = HeaderValue::from_str(&format!("127.0.0.1:{port}")) {
        out.insert(header::HOST, host);
    }
    let earlier: Vec<&str> = incoming
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut chain = earlier.join(", ");
    if let Some(peer) = peer {
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(&peer.ip().to_string());
    }
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(HeaderName::from_static(name), v);
        }
    };
    if !chain.is_empty() {
        set("x-forwarded-for", &chain);
    }
    set("x-forwarded-proto", if tls { "https" } else { "http" });
    if let Some(host) = incoming.get(header::HOST).and_then(|h| h.to_str().ok()) {
        set("x-forwarded-host", host);
    }
    if let Some(id) = request_id {
        set("x-request-id", id);
    }
    set("x-corral-tenant", ctx.tenant().name.as_str());
    set("x-corral-user", ctx.user().as_str());
    out
}

/// Drops the hop-by-hop headers of an upstream response.
fn clean_response_headers(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Reads and drops what a client still sends of a refused body (at most 16 MiB, for at most
/// 5 s), so it reads the 413 instead of a connection reset: closing a connection with unread
/// data makes the kernel send RST, which destroys the answer in flight (a lingering close).
async fn drain(body: Body) {
    const MAX: usize = 16 * 1024 * 1024;
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    let read = async {
        while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut stream).await {
            seen += chunk.len();
            if seen > MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
}

/// The handler of every method route.
pub async fn proxy(State(s): State<AppState>, Ctx(ctx): Ctx, req: Request) -> Response {
    match forward(&s, &ctx, req).await {
        Ok(resp) => resp,
        Err(e) => ApiError(e).into_response(),
    }
}

async fn forward(s: &AppState, ctx: &OpCtx, req: Request) -> Result<Response, Error> {
    let uri = req.uri().clone();
    let parts = split_method_path(uri.path())
        .ok_or_else(|| Error::not_found(format!("No route for {} {}.", req.method(), uri.path())))?;
    let (ns, app, svc) = (decode(parts.ns)?, decode(parts.app)?, decode(parts.svc)?);
    let version = parts.version.map(decode).transpose()?;
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let target = s
        .core
        .cdap()
        .route_request(ctx, &ns, &app, version.as_deref(), &svc, write)
        .await?;
    let proxy = &s.proxy;
    let too_large = Error::PayloadTooLarge(proxy.max_body);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > proxy.max_body) {
        drain(req.into_body()).await;
        return Err(too_large);
    }
    let peer = req.extensions().get::<ConnectInfo<PeerAddr>>().map(|c| c.0.0);
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let path_and_query = match uri.query() {
        Some(q) => format!("{}?{q}", parts.endpoint),
        None => parts.endpoint.to_string(),
    };
    let (head, body) = req.into_parts();
    let slot = Arc::new(Mutex::new(Some(body)));
    let exceeded = Arc::new(AtomicBool::new(false));
    let not_accepting =
        || Error::Unavailable("Service is running but not accepting requests at this time.".into());
    let mut last_err = None;
    for port in &target.ports {
        let upstream_uri: Uri = format!("http://127.0.0.1:{port}{path_and_query}")
            .parse()
            .map_err(|_| Error::bad_request("Invalid endpoint path."))?;
        let mut upstream = hyper::Request::new(ForwardBody {
            slot: slot.clone(),
            inner: None,
            seen: 0,
            max: proxy.max_body,
            exceeded: exceeded.clone(),
        });
        *upstream.method_mut() = head.method.clone();
        *upstream.uri_mut() = upstream_uri;
        *upstream.headers_mut() =
            forward_headers(&head.headers, ctx, *port, peer, s.tls, request_id.as_deref());
        match tokio::time::timeout(proxy.timeout, proxy.client.request(upstream)).await {
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "Service did not answer within {} s.",
                    proxy.timeout.as_secs()
                )));
            }
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                clean_response_headers(&mut parts.headers);
                return Ok(Response::from_parts(parts, Body::new(body)));
            }
            Ok(Err(e)) => {
                if exceeded.load(Ordering::Acquire) {
                    let rest = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(rest) = rest {
                        drain(rest).await;
                    }
                    return Err(too_large);
                }
                let body_unsent = slot.lock().unwrap_or_else(|p| p.into_inner()).is_some();
                tracing::warn!(request_id = request_id.as_deref().unwrap_or(""), port, version = %target.version, "proxy: upstream failed: {e}");
                if e.is_connect() && body_unsent {
                    last_err = Some(not_accepting());
                    continue;
                }
                return Err(not_accepting());
            }
        }
    }
    Err(last_err.unwrap_or_else(not_accepting))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_paths_split_raw() {
        let p = split_method_path("/v3/namespaces/ns/apps/a/services/s/methods/x%2Fy/z/").unwrap();
        assert_eq!(
            p,
            MethodPath {
                ns: "ns",
                app: "a",
                version: None,
                svc: "s",
                endpoint: "/x%2Fy/z/"
            }
        );
        let p = split_method_path("/v3/namespaces/ns/apps/a/versions/1.0/services/s/methods").unwrap();
        assert_eq!((p.version, p.endpoint), (Some("1.0"), "/"));
        let p = split_method_path("/v3/namespaces/ns/apps/a/services/s/methods/").unwrap();
        assert_eq!(p.endpoint, "/");
        for no in [
            "/v3/namespaces/ns/apps/a/services/s/methodsx",
            "/v3/namespaces/ns/apps/a/services/s",
            "/v3/namespaces/ns/apps/a/flows/s/methods/x",
            "/v3/namespaces//apps/a/services/s/methods",
            "/v2/namespaces/ns/apps/a/services/s/methods",
        ] {
            assert_eq!(split_method_path(no), None, "{no}");
        }
    }

    #[test]
    fn decoding_follows_the_path_rules() {
        assert_eq!(decode("a%20b").unwrap(), "a b");
        assert!(decode("a%2Fb").is_err());
        assert!(decode("a%0Ab").is_err());
        assert!(decode("a%zz").is_err());
        assert!(decode("a%2").is_err());
    }
}
