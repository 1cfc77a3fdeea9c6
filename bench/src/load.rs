//! Closed-loop HTTP/1.1 load generator.
//!
//! `connections` tasks each own one keep-alive connection (a raw hyper `client::conn::http1` connection over a
//! `TcpStream` with `TCP_NODELAY`) and issue the same request back-to-back: the next request is sent as soon as
//! the previous response body has been read in full. Nothing is measured during the warm-up; afterwards every
//! request that both starts and completes inside the measurement window is counted, and the latency of every
//! successful (2xx) one is recorded in a [`Histogram`]. Being closed-loop, the generator measures latency under
//! the throughput the server can sustain; it does not model an open arrival rate (no coordinated-omission
//! correction).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::hist::Histogram;

/// One HTTP endpoint to load: a loopback address, a path and extra request headers.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    pub fn new(addr: SocketAddr, path: &str) -> Result<Self> {
        if !addr.ip().is_loopback() {
            bail!("refusing to load {addr}: only loopback addresses are allowed");
        }
        if !path.starts_with('/') {
            bail!("path must start with '/': {path}");
        }
        Ok(Self {
            addr,
            path: path.to_owned(),
            headers: Vec::new(),
        })
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self> {
        let name =
            HeaderName::from_bytes(name.as_bytes()).with_context(|| format!("bad header name {name}"))?;
        let value = HeaderValue::from_str(value).context("bad header value")?;
        self.headers.push((name, value));
        Ok(self)
    }

    fn request(&self) -> Result<Request<Empty<Bytes>>> {
        let mut b = Request::get(self.path.as_str()).header(HOST, self.addr.to_string());
        for (n, v) in &self.headers {
            b = b.header(n, v);
        }
        Ok(b.body(Empty::new())?)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Per-request timeout; a request that takes longer is counted as an error and its connection re-opened.
    pub timeout: Duration,
}

/// What one load run measured (measurement window only).
#[derive(Clone)]
pub struct Outcome {
    /// Total measured time (the window, times the number of runs merged into this outcome).
    pub window: Duration,
    /// Requests answered 2xx inside the window.
    pub ok: u64,
    /// Requests answered with another status inside the window, by status.
    pub bad_status: BTreeMap<u16, u64>,
    /// Connection/protocol failures and timeouts inside the window.
    pub io_errors: u64,
    /// Bytes of response bodies read (2xx only).
    pub body_bytes: u64,
    /// Latencies of the 2xx responses, in nanoseconds.
    pub hist: Histogram,
    /// First few distinct error descriptions, for the report.
    pub error_samples: Vec<String>,
    /// Connections opened in total (one per task unless the server closed or a request failed).
    pub connects: u64,
}

impl Outcome {
    pub fn errors(&self) -> u64 {
        self.io_errors + self.bad_status.values().sum::<u64>()
    }

    pub fn total(&self) -> u64 {
        self.ok + self.errors()
    }

    /// Successful requests per second over the measurement window.
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    /// Adds another run of the same target (for several alternating rounds).
    pub fn absorb(&mut self, other: &Outcome) {
        self.window += other.window;
        self.ok += other.ok;
        self.io_errors += other.io_errors;
        self.body_bytes += other.body_bytes;
        self.connects += other.connects;
        self.hist.merge(&other.hist);
        for (k, v) in &other.bad_status {
            *self.bad_status.entry(*k).or_default() += v;
        }
        for e in &other.error_samples {
            if self.error_samples.len() < 5 && !self.error_samples.contains(e) {
                self.error_samples.push(e.clone());
            }
        }
    }

    pub fn error_ratio(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.errors() as f64 / self.total() as f64
        }
    }
}

struct Worker {
    ok: u64,
    bad_status: BTreeMap<u16, u64>,
    io_errors: u64,
    body_bytes: u64,
    hist: Histogram,
    error_samples: Vec<String>,
    connects: u64,
}

impl Worker {
    fn note_error(&mut self, in_window: bool, what: String) {
        if in_window {
            self.io_errors += 1;
        }
        if self.error_samples.len() < 3 && !self.error_samples.contains(&what) {
            self.error_samples.push(what);
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection; errors surface on the sender.
        let _ = conn.await;
    });
    Ok(sender)
}

enum Reply {
    Ok(u64),
    Status(StatusCode),
}

async fn one_request(sender: &mut SendRequest<Empty<Bytes>>, target: &Target) -> Result<Reply> {
    sender.ready().await?;
    let resp = sender.send_request(target.request()?).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status.is_success() {
        Ok(Reply::Ok(body.len() as u64))
    } else {
        Ok(Reply::Status(status))
    }
}

async fn worker(target: Arc<Target>, measure_start: Instant, end: Instant, timeout: Duration) -> Worker {
    let mut w = Worker {
        ok: 0,
        bad_status: BTreeMap::new(),
        io_errors: 0,
        body_bytes: 0,
        hist: Histogram::new(),
        error_samples: Vec::new(),
        connects: 0,
    };
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(target.addr).await {
                Ok(s) => {
                    w.connects += 1;
                    sender.insert(s)
                }
                Err(e) => {
                    w.note_error(now >= measure_start, format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let t0 = Instant::now();
        let res = tokio::time::timeout(timeout, one_request(s, &target)).await;
        let t1 = Instant::now();
        let in_window = t0 >= measure_start && t1 <= end;
        match res {
            Ok(Ok(Reply::Ok(bytes))) => {
                if in_window {
                    w.ok += 1;
                    w.body_bytes += bytes;
                    w.hist
                        .record(u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX));
                }
            }
            Ok(Ok(Reply::Status(st))) => {
                if in_window {
                    *w.bad_status.entry(st.as_u16()).or_default() += 1;
                }
                let what = format!("HTTP {st}");
                if w.error_samples.len() < 3 && !w.error_samples.contains(&what) {
                    w.error_samples.push(what);
                }
            }
            Ok(Err(e)) => {
                w.note_error(in_window, format!("{e:#}"));
                sender = None;
            }
            Err(_) => {
                w.note_error(in_window, format!("timeout after {timeout:?}"));
                sender = None;
            }
        }
    }
    w
}

/// Runs `settings.connections` closed-loop connections against `target` for warm-up + duration.
pub async fn run(target: &Target, settings: Settings) -> Result<Outcome> {
    if settings.connections == 0 {
        bail!("need at least one connection");
    }
    if settings.duration.is_zero() {
        bail!("duration must be positive");
    }
    let target = Arc::new(target.clone());
    let start = Instant::now();
    let measure_start = start + settings.warmup;
    let end = measure_start + settings.duration;
    let tasks: Vec<_> = (0..settings.connections)
        .map(|_| tokio::spawn(worker(target.clone(), measure_start, end, settings.timeout)))
        .collect();
    let mut out = Outcome {
        window: settings.duration,
        ok: 0,
        bad_status: BTreeMap::new(),
        io_errors: 0,
        body_bytes: 0,
        hist: Histogram::new(),
        error_samples: Vec::new(),
        connects: 0,
    };
    for t in tasks {
        let w = t.await.map_err(|e| anyhow!("load task failed: {e}"))?;
        out.ok += w.ok;
        out.io_errors += w.io_errors;
        out.body_bytes += w.body_bytes;
        out.connects += w.connects;
        out.hist.merge(&w.hist);
        for (k, v) in w.bad_status {
            *out.bad_status.entry(k).or_default() += v;
        }
        for e in w.error_samples {
            if out.error_samples.len() < 5 && !out.error_samples.contains(&e) {
                out.error_samples.push(e);
            }
        }
    }
    Ok(out)
}

/// A single request on a fresh connection: status, content type and body. Used for readiness and sanity checks.
pub async fn probe(target: &Target, timeout: Duration) -> Result<(StatusCode, Option<String>, Bytes)> {
    let fut = async {
        let mut s = connect(target.addr).await?;
        s.ready().await?;
        let resp = s.send_request(target.request()?).await?;
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, ctype, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow!("no answer from {} within {timeout:?}", target.addr))?
}

/// One request with an optional JSON body, for setting up a benchmark (not measured).
pub async fn send(
    addr: SocketAddr,
    method: hyper::Method,
    path: &str,
    headers: &[(&str, &str)],
    json: Option<&serde_json::Value>,
) -> Result<(StatusCode, Bytes)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string());
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let body = match json {
        Some(v) => {
            b = b.header(hyper::header::CONTENT_TYPE, "application/json");
            http_body_util::Full::new(Bytes::from(serde_json::to_vec(v)?))
        }
        None => http_body_util::Full::new(Bytes::new()),
    };
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(b.body(body)?))
        .await
        .map_err(|_| anyhow!("no answer from {addr} within 30 s"))??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
