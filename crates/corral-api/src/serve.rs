//! Serving the application on a bound listener, over plain TCP or TLS (rustls with ring),
//! until a shutdown future resolves; in-flight requests are finished first.
//!
//! Corral runs its own accept loop instead of `axum::serve` so that hostile or slow clients
//! cannot exhaust it (issue 13):
//!
//! * a cap on open connections overall and per peer IP; a connection over a cap is answered
//!   at once with a 503 JSON error (plain HTTP) or closed (TLS) and counted in
//!   `corral_connections_refused_total{reason}`; `corral_connections_open` is the gauge;
//! * every request head is read and checked here ([`Guarded`]) before hyper sees it, within a
//!   bounded buffer and the header read timeout, so that a malformed head (long URI, large or
//!   too many headers, a bad request line, control characters, a bad `Content-Length`) gets
//!   the contract's JSON error and an `X-Request-Id` rather than hyper's empty answer;
//! * an idle keep-alive connection is closed after the idle timeout (hyper's header timer,
//!   which runs from the moment hyper waits for the next request).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

/// The TCP peer of a connection (a `ConnectInfo` extension of every request).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Loads a certificate chain and private key (PEM) into a rustls server configuration.
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A bound listener, plain or TLS.
pub enum Bound {
    Tcp(TcpListener),
    Tls(TcpListener, TlsAcceptor),
}

impl Bound {
    /// A TLS listener on `tcp` with `config`.
    pub fn tls(tcp: TcpListener, config: rustls::ServerConfig) -> Bound {
        Bound::Tls(tcp, TlsAcceptor::from(Arc::new(config)))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Bound::Tcp(l) | Bound::Tls(l, _) => l.local_addr(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Bound::Tls(..))
    }
}

/// The transport limits of the accept loop (the `[server]` settings).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Longest time from a connection's start (or a request's first byte) to the end of its
    /// request head; also bounds a TLS handshake.
    pub header_read_timeout: Duration,
    /// Longest wait for the next request on a kept-alive connection.
    pub idle_timeout: Duration,
    /// Most open connections.
    pub max_connections: usize,
    /// Most open connections from one peer IP address.
    pub max_connections_per_peer: usize,
    /// Largest request head (request line and headers), bytes: over it, 431 (or 414 when the
    /// request line alone does not fit).
    pub max_header_bytes: usize,
    /// Longest request target, bytes: over it, 414.
    pub max_uri_bytes: usize,
}

/// Most header fields of one request (hyper's own default), over it 431.
pub const MAX_HEADERS: usize = 100;

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_peer: 256,
            max_header_bytes: 64 * 1024,
            max_uri_bytes: 16 * 1024,
        }
    }
}

/// Open connections, overall and per peer IP.
#[derive(Default)]
struct Tracker {
    total: AtomicUsize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; leaving frees its place.
struct Slot {
    tracker: Arc<Tracker>,
    ip: IpAddr,
}

impl Tracker {
    /// Takes a place for a connection from `ip`, or names the cap that refuses it.
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &ConnLimits) -> Result<Slot, &'static str> {
        let mut peers = self.per_peer.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Relaxed) >= limits.max_connections {
            return Err("max_connections");
        }
        let n = peers.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_peer {
            return Err("max_connections_per_peer");
        }
        *n += 1;
        let open = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("corral_connections_open").set(open as f64);
        Ok(Slot {
            tracker: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut peers = self.tracker.per_peer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = peers.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                peers.remove(&self.ip);
            }
        }
        let open = self
            .tracker
            .total
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        metrics::gauge!("corral_connections_open").set(open as f64);
    }
}

/// A complete HTTP/1.1 error answer with the contract's JSON body and a fresh request id,
/// for answers given below the router. The connection closes after it.
pub fn raw_error(status: u16, message: &str) -> Vec<u8> {
    let reason = corral_types::error::reason_phrase(status);
    let body = corral_types::views::ErrorBody {
        code: status,
        error: reason.to_string(),
        message: message.to_string(),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let id = uuid::Uuid::new_v4();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\n\
         content-length: {}\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n",
        json.len()
    )
    .into_bytes();
    out.extend_from_slice(&json);
    tracing::debug!(status, request_id = %id, message, "answered below the router");
    out
}

/// Answers a connection over a cap without holding it: one 503 written into the socket's
/// buffer (at most 1 s), what the client already sent discarded (so the close does not reset
/// the answer), then closed. A TLS connection is closed without a handshake.
fn refuse(mut stream: TcpStream, reason: &'static str, tls: bool) {
    metrics::counter!("corral_connections_refused_total", "reason" => reason).increment(1);
    tracing::debug!(reason, "connection refused");
    if tls {
        return;
    }
    let answer = raw_error(503, &format!("Too many connections ({reason}); try again later."));
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer)).await;
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            match stream.try_read(&mut scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let _ = stream.shutdown().await;
    });
}

/// Serves `app` until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish and closes idle connections.
pub async fn serve(
    listener: Bound,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (tcp, tls) = match listener {
        Bound::Tcp(l) => (l, None),
        Bound::Tls(l, acceptor) => (l, Some(acceptor)),
    };
    let limits = Arc::new(limits);
    let tracker = Arc::new(Tracker::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; the receiver ends when the last one is gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = tcp.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match tracker.admit(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(reason) => {
                refuse(stream, reason, tls.is_some());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, limits, tls, stop, alive) = (
            app.clone(),
            limits.clone(),
            tls.clone(),
            stop_rx.clone(),
            alive_tx.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let _alive = alive;
            match tls {
                None => serve_conn(stream, peer, app, &limits, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_conn(tls, peer, app, &limits, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(tcp);
    drop(alive_tx);
    let _ = stop_tx.send(true);
    let _ = alive_rx.recv().await;
    Ok(())
}

/// Serves one connection with hyper until it ends, or until shutdown (then gracefully).
async fn serve_conn<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: &ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::new(ConnShared::default());
    let guarded = Guarded::new(io, limits, shared.clone());
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        let busy = Busy::enter(&shared);
        async move {
            let mut req = crate::normalize_path(req.map(Body::new));
            req.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
            let resp = tower::ServiceExt::oneshot(app, req).await?;
            // The request counts as in flight until its response body is gone.
            Ok::<_, std::convert::Infallible>(resp.map(|b| {
                Body::new(b.map_frame(move |f| {
                    let _busy = &busy;
                    f
                }))
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .max_headers(MAX_HEADERS)
        // Hyper's header timer starts when it waits for a request: for a kept-alive
        // connection that is the idle time; `Guarded` bounds the head itself.
        .header_read_timeout(limits.idle_timeout);
    let conn = builder.serve_connection(TokioIo::new(guarded), svc);
    tokio::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Hyper's own header timer is the idle timeout (`Guarded` counts the header phase).
        if e.is_timeout() {
            metrics::counter!("corral_connections_timed_out_total", "phase" => "idle").increment(1);
        }
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// What the service and the IO wrapper of one connection share.
#[derive(Default)]
struct ConnShared {
    /// Requests whose response has not been fully handed to hyper.
    in_flight: AtomicUsize,
}

/// One request in flight on its connection.
struct Busy(Arc<ConnShared>);

impl Busy {
    fn enter(shared: &Arc<ConnShared>) -> Busy {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(shared.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the bytes after a checked head are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// A body of this many bytes, then the next head.
    Body(u64),
    /// A chunked body or an upgrade: later heads are left to hyper.
    Pass,
}

/// The verdict on the bytes read so far of a request head.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    Partial,
    Complete { len: usize, next: Next },
    Bad { status: u16, message: String },
}

fn bad(status: u16, message: impl Into<String>) -> Head {
    Head::Bad {
        status,
        message: message.into(),
    }
}

/// Checks a request head as hyper would parse it (same parser, same rules for the request
/// line, header fields, `Content-Length` and `Transfer-Encoding`), with our limits.
fn inspect(buf: &[u8], limits: &ConnLimits) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            let line_done = buf
                .iter()
                .skip_while(|b| matches!(b, b'\r' | b'\n'))
                .any(|b| *b == b'\n');
            if !line_done && buf.len() > limits.max_uri_bytes + 32 {
                return bad(
                    414,
                    format!("Request URI exceeds {} bytes.", limits.max_uri_bytes),
                );
            }
            if buf.len() >= limits.max_header_bytes {
                return if line_done {
                    bad(
                        431,
                        format!("Request headers exceed {} bytes.", limits.max_header_bytes),
                    )
                } else {
                    bad(
                        414,
                        format!("Request URI exceeds {} bytes.", limits.max_uri_bytes),
                    )
                };
            }
            return Head::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => {
            return bad(431, format!("Request has more than {MAX_HEADERS} header fields."));
        }
        Err(httparse::Error::Token) if req.method.is_none() => {
            return bad(400, "Malformed request line: invalid method.");
        }
        Err(httparse::Error::Token) => return bad(400, "Malformed request line: invalid request target."),
        Err(httparse::Error::Version) => {
            return bad(400, "Malformed request line: unsupported HTTP version.");
        }
        Err(httparse::Error::HeaderName) => return bad(400, "Malformed header: invalid field name."),
        Err(httparse::Error::HeaderValue) => {
            return bad(400, "Malformed header: invalid character in a field value.");
        }
        Err(e) => return bad(400, format!("Malformed request: {e}.")),
    };
    if len > limits.max_header_bytes {
        return bad(
            431,
            format!("Request headers exceed {} bytes.", limits.max_header_bytes),
        );
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return bad(400, "Malformed request line.");
    };
    if path.len() > limits.max_uri_bytes {
        return bad(
            414,
            format!("Request URI exceeds {} bytes.", limits.max_uri_bytes),
        );
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return bad(400, "Malformed request line: invalid method.");
    };
    if Uri::try_from(path).is_err() {
        return bad(400, "Malformed request line: invalid request target.");
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut upgrade = method == Method::CONNECT;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = content_length(h.value) else {
                return bad(400, "Invalid Content-Length header.");
            };
            if length.is_some_and(|l| l != n) {
                return bad(400, "Conflicting Content-Length headers.");
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if version == 0 {
                return bad(400, "Transfer-Encoding is not allowed in HTTP/1.0.");
            }
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("upgrade") && version == 1 {
            upgrade = true;
        }
    }
    let next = match chunked {
        Some(false) => {
            return bad(
                400,
                "Unsupported Transfer-Encoding: the last coding must be chunked.",
            );
        }
        Some(true) => Next::Pass,
        None if upgrade => Next::Pass,
        None => Next::Body(length.unwrap_or(0)),
    };
    Head::Complete { len, next }
}

/// A `Content-Length` value as hyper reads it: one or more equal comma-separated decimal
/// numbers.
fn content_length(value: &[u8]) -> Option<u64> {
    let mut out = None;
    for part in value.split(|b| *b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(part).ok()?.parse().ok()?;
        if out.is_some_and(|o| o != n) {
            return None;
        }
        out = Some(n);
    }
    out
}

/// Where a connection's reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Collecting a request head.
    Head,
    /// Passing this many body bytes.
    Body(u64),
    /// Passing everything (after a chunked body or an upgrade).
    Pass,
}

/// A connection's IO as hyper sees it: request heads are collected and checked here first
/// (bounded buffer, header read timeout); a bad head is answered with the JSON error and the
/// connection ends; bodies pass through uncopied.
struct Guarded<I> {
    io: I,
    /// Bytes read but not yet handed to hyper, from `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes at `pos` checked and ready for hyper.
    ready: usize,
    /// What is known of the head being collected.
    scan: Scan,
    reading: Reading,
    /// The head deadline: from the start for the first request, else from its first byte.
    deadline: Option<Pin<Box<Sleep>>>,
    header_timeout: Duration,
    max_header_bytes: usize,
    max_uri_bytes: usize,
    /// hyper has written bytes it has not flushed yet.
    unflushed: bool,
    shared: Arc<ConnShared>,
    /// An error answer being written, and how much of it is out.
    answer: Option<(Vec<u8>, usize)>,
}

impl<I> Guarded<I> {
    fn new(io: I, limits: &ConnLimits, shared: Arc<ConnShared>) -> Self {
        Guarded {
            io,
            buf: Vec::new(),
            pos: 0,
            ready: 0,
            scan: Scan::default(),
            reading: Reading::Head,
            deadline: Some(Box::pin(tokio::time::sleep(limits.header_read_timeout))),
            header_timeout: limits.header_read_timeout,
            max_header_bytes: limits.max_header_bytes,
            max_uri_bytes: limits.max_uri_bytes,
            unflushed: false,
            shared,
            answer: None,
        }
    }

    fn limits(&self) -> ConnLimits {
        ConnLimits {
            max_header_bytes: self.max_header_bytes,
            max_uri_bytes: self.max_uri_bytes,
            ..ConnLimits::default()
        }
    }

    /// Scans the bytes that arrived since the last call (each byte once, so a client sending
    /// its head byte by byte costs linear time) and answers whether the head is worth parsing:
    /// it may be complete (an empty line after some content), or it already breaks a limit.
    fn worth_parsing(&mut self) -> bool {
        let pending = &self.buf[self.pos..];
        let from = self.scan.seen.min(pending.len());
        self.scan.seen = pending.len();
        for i in from..pending.len() {
            let b = pending[i];
            if !self.scan.content {
                // Empty lines before the request line are skipped, as httparse does.
                self.scan.content = b != b'\r' && b != b'\n';
                continue;
            }
            if b == b'\n' {
                self.scan.line_done = true;
                if (i >= 1 && pending[i - 1] == b'\n')
                    || (i >= 2 && pending[i - 1] == b'\r' && pending[i - 2] == b'\n')
                {
                    self.scan.end = true;
                }
            }
        }
        self.scan.end
            || pending.len() >= self.max_header_bytes
            || (!self.scan.line_done && pending.len() > self.max_uri_bytes + 32)
    }
}

/// What [`Guarded::worth_parsing`] learnt of the head so far.
#[derive(Debug, Default)]
struct Scan {
    /// Bytes scanned.
    seen: usize,
    /// A byte other than CR and LF was seen.
    content: bool,
    /// The request line has ended.
    line_done: bool,
    /// An empty line followed content.
    end: bool,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Guarded<I> {
    /// Writes the error answer; `Ready(Ok)` once it is out.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.answer {
            if *done < bytes.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*done..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *done += n;
            } else {
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                return Poll::Ready(Ok(()));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads more bytes of a head into the buffer. `Ready(Ok(0))` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        // Read through a stack chunk: the buffer grows only as far as the head does, so an
        // idle connection holds no large buffer.
        let mut chunk = [0u8; 8 * 1024];
        let room = (self.max_header_bytes + 1)
            .saturating_sub(self.buf.len())
            .clamp(1, chunk.len());
        let mut rb = ReadBuf::new(&mut chunk[..room]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        let got = rb.filled().len();
        self.buf.extend_from_slice(rb.filled());
        Poll::Ready(Ok(got))
    }

    /// Forgets the handed-over bytes; a buffer a large head grew is given back.
    fn reset_buf(&mut self) {
        self.pos = 0;
        if self.buf.capacity() > 16 * 1024 {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.answer.is_some() {
                let written = ready!(this.poll_answer(cx));
                this.answer = None;
                this.reading = Reading::Pass;
                this.reset_buf();
                // The end of the stream: hyper closes the connection.
                return Poll::Ready(written);
            }
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.buf[this.pos..this.pos + n]);
                this.pos += n;
                this.ready -= n;
                if this.pos == this.buf.len() {
                    this.reset_buf();
                }
                return Poll::Ready(Ok(()));
            }
            let have = this.buf.len() - this.pos;
            match this.reading {
                Reading::Pass if have > 0 => this.ready = have,
                Reading::Pass => return Pin::new(&mut this.io).poll_read(cx, out),
                Reading::Body(left) if have > 0 => {
                    let n = (have as u64).min(left);
                    this.ready = n as usize;
                    this.reading = if n == left {
                        Reading::Head
                    } else {
                        Reading::Body(left - n)
                    };
                }
                Reading::Body(left) => {
                    let cap = usize::try_from(left).unwrap_or(usize::MAX).min(out.remaining());
                    let mut sub = ReadBuf::new(out.initialize_unfilled_to(cap));
                    ready!(Pin::new(&mut this.io).poll_read(cx, &mut sub))?;
                    let got = sub.filled().len();
                    out.advance(got);
                    if got as u64 == left {
                        this.reading = Reading::Head;
                    } else if got > 0 {
                        this.reading = Reading::Body(left - got as u64);
                    }
                    return Poll::Ready(Ok(()));
                }
                Reading::Head => {
                    if have > 0 {
                        let verdict = if this.worth_parsing() {
                            inspect(&this.buf[this.pos..], &this.limits())
                        } else {
                            Head::Partial
                        };
                        match verdict {
                            Head::Complete { len, next } => {
                                this.ready = len;
                                this.scan = Scan::default();
                                this.deadline = None;
                                this.reading = match next {
                                    Next::Body(0) => Reading::Head,
                                    Next::Body(n) => Reading::Body(n),
                                    Next::Pass => Reading::Pass,
                                };
                                continue;
                            }
                            Head::Bad { status, message } => {
                                metrics::counter!("corral_http_malformed_requests_total", "status" => status.to_string())
                                    .increment(1);
                                if this.shared.in_flight.load(Ordering::Acquire) == 0 && !this.unflushed {
                                    this.answer = Some((raw_error(status, &message), 0));
                                } else {
                                    // An earlier response is still on its way (pipelining):
                                    // writing now would interleave, so hyper answers this one.
                                    this.ready = have;
                                    this.reading = Reading::Pass;
                                }
                                continue;
                            }
                            Head::Partial => {
                                this.scan.end = false;
                                if this.deadline.is_none() {
                                    this.deadline = Some(Box::pin(tokio::time::sleep(this.header_timeout)));
                                }
                            }
                        }
                    }
                    match this.poll_fill(cx) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                        Poll::Ready(Ok(_)) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {
                            if let Some(d) = this.deadline.as_mut()
                                && d.as_mut().poll(cx).is_ready()
                            {
                                metrics::counter!("corral_connections_timed_out_total", "phase" => "header")
                                    .increment(1);
                                return Poll::Ready(Err(io::Error::new(
                                    io::ErrorKind::TimedOut,
                                    "request head not received in time",
                                )));
                            }
                            return Poll::Pending;
                        }
                    }
                }
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        this.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn verdict(head: &str) -> Head {
        inspect(head.as_bytes(), &ConnLimits::default())
    }

    #[test]
    fn heads_are_judged_as_hyper_would() {
        assert_eq!(verdict("GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
        assert_eq!(
            verdict("GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"),
            Head::Complete {
                len: 27,
                next: Next::Body(0)
            }
        );
        assert_eq!(
            verdict("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
            Head::Complete {
                len: 41,
                next: Next::Body(5)
            }
        );
        assert_eq!(
            verdict("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Head::Complete {
                len: 53,
                next: Next::Pass
            }
        );
        let status = |h: &str| match verdict(h) {
            Head::Bad { status, .. } => status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status("GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), 400);
        assert_eq!(status("G@T / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/9.1\r\n\r\n"), 400);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
        assert_eq!(status(&long), 414);
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "v".repeat(70_000));
        assert_eq!(status(&big), 431);
    }

    /// Drives `Guarded` as hyper would (reading everything it hands over) while a client sends
    /// `parts` one after the other; answers what hyper saw and what the client received.
    async fn through_guard(parts: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut guarded = Guarded::new(server, &ConnLimits::default(), Arc::new(ConnShared::default()));
        let (mut client_rd, mut client_wr) = tokio::io::split(client);
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for p in parts {
                client_wr.write_all(&p).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            client_wr.shutdown().await.unwrap();
        });
        let mut seen = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = guarded.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        drop(guarded);
        let mut answer = Vec::new();
        client_rd.read_to_end(&mut answer).await.unwrap();
        (seen, answer)
    }

    #[tokio::test]
    async fn heads_bodies_and_later_heads_pass_intact() {
        let head = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        let mut bytes: Vec<&[u8]> = head.chunks(1).collect();
        bytes.extend([&b"ab"[..], b"cdeGET /b HT", b"TP/1.1\r\nHost: x\r\n\r\n"]);
        let (seen, answer) = through_guard(&bytes).await;
        assert_eq!(seen, bytes.concat());
        assert!(answer.is_empty());
    }

    #[tokio::test]
    async fn a_bad_later_head_is_answered_and_never_handed_over() {
        let good: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        let (seen, answer) = through_guard(&[good, b"GET /b HTTP/1.1\r\nX: \x01\r\n\r\n"]).await;
        assert_eq!(seen, good);
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
        assert!(answer.contains("x-request-id: "), "{answer}");
        assert!(answer.ends_with("}"), "{answer}");
    }
}
