//! The `openshift` container manager (spec 2.6, 6.3): a small client of the Kubernetes API
//! server's Node resource, enough to register a cluster's hosts as Nodes, remove them and read
//! their status.
//!
//! Deliberately not a Kubernetes client library: three requests, one HTTP/1.1 connection per
//! call (calls happen when a host joins or leaves a cluster, or its status is read, so a pool
//! would only hold connections that go stale), TLS by rustls with the ring provider, and a
//! timeout over the whole call so a hung API server never holds a request of Corral's.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::russh_transport::human;

/// Answers larger than this are refused. A Node with its image list is tens of kilobytes; the
/// cap keeps a misbehaving server from filling the control plane's memory.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// How to reach one API server, built by core from a stored `openshift` container manager.
#[derive(Clone)]
pub struct KubeTarget {
    /// The `apiserver` option: an `http://` or `https://` URL. A trailing `/`, `/api` or
    /// `/api/v1` is dropped (Commissaire's users wrote `https://host:8443/api/`); any other path
    /// is kept as a prefix, for API servers behind a reverse proxy.
    pub apiserver: String,
    /// Sent as `Authorization: Bearer <token>` (surrounding blanks removed). Never printed.
    pub token: Option<String>,
    /// PEM certificate chain for TLS client authentication; needs `client_key_pem`. Used only
    /// with an `https` URL.
    pub client_cert_pem: Option<Vec<u8>>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_pem`. Never printed.
    pub client_key_pem: Option<Vec<u8>>,
    /// PEM certificate(s) of the authority that signed the API server's certificate. When
    /// given it is the **only** trust root, as a kubeconfig's `certificate-authority` (clusters
    /// sign their API server with their own CA); when absent the public web roots
    /// (`webpki-roots`) are used. Corral reads it from the container manager's `ca_path` option,
    /// a file name resolved inside the server setting `cert_dir` like the certificate options.
    pub ca_pem: Option<Vec<u8>>,
    /// Limit for the whole call: name resolution, connect, TLS, request and answer.
    pub timeout: Duration,
}

impl KubeTarget {
    /// A target with no credentials and the public trust roots.
    pub fn new(apiserver: impl Into<String>, timeout: Duration) -> Self {
        Self {
            apiserver: apiserver.into(),
            token: None,
            client_cert_pem: None,
            client_key_pem: None,
            ca_pem: None,
            timeout,
        }
    }

    /// Checks everything that can be checked without the network: the URL, the PEM files and
    /// that the certificate matches its key. Core can call it when the container manager is
    /// stored, to answer 400 then rather than fail at the first join.
    pub fn validate(&self) -> Result<(), KubeError> {
        let endpoint = Endpoint::parse(&self.apiserver)?;
        bearer(self)?;
        if endpoint.https {
            tls_connector(self)?;
        }
        Ok(())
    }
}

impl fmt::Debug for KubeTarget {
    /// Hand-written so that logging a target can never leak its token or key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: bool| if v { "<redacted>" } else { "<none>" };
        let present = |v: bool| if v { "<given>" } else { "<none>" };
        f.debug_struct("KubeTarget")
            .field("apiserver", &self.apiserver)
            .field("token", &redacted(self.token.is_some()))
            .field("client_cert_pem", &present(self.client_cert_pem.is_some()))
            .field("client_key_pem", &redacted(self.client_key_pem.is_some()))
            .field("ca_pem", &present(self.ca_pem.is_some()))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a container manager call failed.
///
/// Every `Display` is a short sentence fit to show a user as a host's `message` (spec 3.3): it
/// names the API server (its normalised base URL) and never carries the token or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeError {
    /// The target cannot be used (bad URL, unreadable PEM, certificate without its key, a
    /// token that cannot be an HTTP header). Detected before any network traffic.
    #[error("{0}")]
    Config(String),
    /// No connection: refused, unreachable, name not resolved, closed before an answer.
    #[error("Cannot reach the container manager API at {server}: {reason}.")]
    Connect {
        /// Base URL of the API server.
        server: String,
        /// E.g. `connection refused`.
        reason: String,
    },
    /// The whole call took longer than the target's `timeout`.
    #[error("Container manager API at {server} did not answer within {}.", human(*.after))]
    Timeout {
        /// Base URL of the API server.
        server: String,
        /// The limit that passed.
        after: Duration,
    },
    /// The TLS handshake failed: untrusted or mismatching server certificate, client
    /// certificate refused, or a server that does not speak TLS.
    #[error("TLS connection to the container manager API at {server} failed: {reason}.")]
    Tls {
        /// Base URL of the API server.
        server: String,
        /// E.g. `its certificate is not signed by a trusted authority (...)`.
        reason: String,
    },
    /// 401: the credentials were refused.
    #[error("Container manager API at {server} refused {credential} (401).")]
    Unauthorized {
        /// Base URL of the API server.
        server: String,
        /// `the token`, `the client certificate` or `an anonymous request`.
        credential: &'static str,
    },
    /// Any other status than the call's successful ones, with the Kubernetes `Status`
    /// message when the server sent one (403: "nodes is forbidden: User ... cannot create ...").
    #[error("Container manager API at {server} answered {status}: {message}.")]
    Rejected {
        /// Base URL of the API server.
        server: String,
        /// The HTTP status code.
        status: u16,
        /// The server's message, or the status' reason phrase.
        message: String,
    },
    /// The server answered something that is not the expected HTTP or JSON.
    #[error("Container manager API at {server} sent an unusable answer: {reason}.")]
    Protocol {
        /// Base URL of the API server.
        server: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl KubeError {
    /// True when the API server could not be reached at all (as opposed to answering with a
    /// refusal): worth retrying later without operator action.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, KubeError::Connect { .. } | KubeError::Timeout { .. })
    }
}

/// The container manager operations Corral needs (spec 6.3). Node names are host addresses.
#[async_trait::async_trait]
pub trait ContainerManagerClient: Send + Sync + 'static {
    /// Creates the Node `node` (`POST {base}/api/v1/nodes`). A Node that already exists (409)
    /// counts as registered, so a host re-joining or a retried join succeeds.
    async fn register_node(&self, target: &KubeTarget, node: &str) -> Result<(), KubeError>;

    /// Deletes the Node `node` (`DELETE {base}/api/v1/nodes/{node}`). A missing Node (404)
    /// counts as removed.
    async fn remove_node(&self, target: &KubeTarget, node: &str) -> Result<(), KubeError>;

    /// The `status` object of the Node `node` (`GET {base}/api/v1/nodes/{node}`); `{}` when the
    /// Node does not exist or has no status.
    async fn node_status(&self, target: &KubeTarget, node: &str) -> Result<Value, KubeError>;
}

/// The real [`ContainerManagerClient`], speaking to a Kubernetes or OpenShift API server.
#[derive(Debug, Default, Clone, Copy)]
pub struct KubeClient;

impl KubeClient {
    /// The client. It holds no state: every call builds its connection from the target.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait::async_trait]
impl ContainerManagerClient for KubeClient {
    async fn register_node(&self, target: &KubeTarget, node: &str) -> Result<(), KubeError> {
        node_segment(node)?;
        let body = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}});
        let answer = call(target, Method::POST, "/api/v1/nodes", Some(body)).await?;
        match answer.status {
            StatusCode::OK | StatusCode::CREATED | StatusCode::ACCEPTED | StatusCode::CONFLICT => Ok(()),
            _ => Err(answer.refusal(target)),
        }
    }

    async fn remove_node(&self, target: &KubeTarget, node: &str) -> Result<(), KubeError> {
        let path = format!("/api/v1/nodes/{}", node_segment(node)?);
        let answer = call(target, Method::DELETE, &path, None).await?;
        match answer.status {
            StatusCode::OK | StatusCode::ACCEPTED | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(answer.refusal(target)),
        }
    }

    async fn node_status(&self, target: &KubeTarget, node: &str) -> Result<Value, KubeError> {
        let path = format!("/api/v1/nodes/{}", node_segment(node)?);
        let answer = call(target, Method::GET, &path, None).await?;
        match answer.status {
            StatusCode::OK => {
                let node: Value = serde_json::from_slice(&answer.body).map_err(|_| KubeError::Protocol {
                    server: answer.server.clone(),
                    reason: "the Node is not JSON".to_owned(),
                })?;
                Ok(match node.get("status") {
                    Some(status @ Value::Object(_)) => status.clone(),
                    _ => json!({}),
                })
            }
            StatusCode::NOT_FOUND => Ok(json!({})),
            _ => Err(answer.refusal(target)),
        }
    }
}

/// Normalises an `apiserver` option to the base URL the client uses (`https://host:8443`,
/// or with a proxy prefix `https://proxy/k8s`). Core can use it to validate the option and to
/// compare two settings.
pub fn normalize_apiserver(url: &str) -> Result<String, KubeError> {
    Endpoint::parse(url).map(|e| e.base)
}

/// The parsed `apiserver` URL.
struct Endpoint {
    https: bool,
    /// Host name or IP address, without the brackets of an IPv6 literal.
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority as written.
    authority: String,
    /// Path prefix before `/api/v1`, without a trailing slash (usually empty).
    prefix: String,
    /// `scheme://authority/prefix`, for messages.
    base: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, KubeError> {
        let invalid =
            |why: &str| KubeError::Config(format!("The container manager API URL is invalid: {why}."));
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|_| invalid("expected http://host[:port] or https://host[:port]"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("it has no host"))?.as_str();
        // Credentials belong in the token option, where they are stored encrypted and masked.
        if authority.contains('@') {
            return Err(invalid("it must not contain a user name or password"));
        }
        if uri.query().is_some() {
            return Err(invalid("it must not contain a query"));
        }
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("it has no host"));
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path().trim_end_matches('/');
        let prefix = path
            .strip_suffix("/api/v1")
            .or_else(|| path.strip_suffix("/api"))
            .unwrap_or(path)
            .trim_end_matches('/');
        let scheme = if https { "https" } else { "http" };
        Ok(Self {
            https,
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            prefix: prefix.to_owned(),
            base: format!("{scheme}://{authority}{prefix}"),
        })
    }
}

/// A node name as one path segment: everything but RFC 3986 unreserved characters is
/// percent-encoded (`fd00::1` → `fd00%3A%3A1`), so an address can never change the path.
fn node_segment(node: &str) -> Result<String, KubeError> {
    if matches!(node, "" | "." | "..") {
        return Err(KubeError::Config(format!("'{node}' is not a valid node name.")));
    }
    let mut out = String::with_capacity(node.len());
    for b in node.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// What the API server answered.
struct Answer {
    server: String,
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    /// The error for a status the call does not accept.
    fn refusal(&self, target: &KubeTarget) -> KubeError {
        if self.status == StatusCode::UNAUTHORIZED {
            let credential = if target.token.is_some() {
                "the token"
            } else if target.client_cert_pem.is_some() && self.server.starts_with("https:") {
                "the client certificate"
            } else {
                "an anonymous request"
            };
            return KubeError::Unauthorized {
                server: self.server.clone(),
                credential,
            };
        }
        // Kubernetes answers errors with a `Status` object whose `message` says what is wrong.
        let message = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .map(|m| shorten(m.trim().trim_end_matches('.'), 300))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| {
                self.status
                    .canonical_reason()
                    .unwrap_or("unknown status")
                    .to_owned()
            });
        KubeError::Rejected {
            server: self.server.clone(),
            status: self.status.as_u16(),
            message,
        }
    }
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

/// One request on a fresh connection, within `target.timeout`. The target is checked and the
/// request built before any traffic.
async fn call(
    target: &KubeTarget,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Answer, KubeError> {
    let endpoint = Endpoint::parse(&target.apiserver)?;
    let tls = if endpoint.https {
        Some(tls_connector(target)?)
    } else {
        None
    };
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", endpoint.prefix))
        .header(HOST, &endpoint.authority)
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, concat!("corral/", env!("CARGO_PKG_VERSION")));
    if let Some(auth) = bearer(target)? {
        request = request.header(AUTHORIZATION, auth);
    }
    if body.is_some() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let request = request
        .body(Full::new(body))
        .map_err(|e| KubeError::Config(format!("Cannot build the request to {}: {e}.", endpoint.base)))?;
    match timeout(target.timeout, exchange(&endpoint, tls, request)).await {
        Ok(result) => result,
        Err(_) => Err(KubeError::Timeout {
            server: endpoint.base,
            after: target.timeout,
        }),
    }
}

/// The `Authorization` header of the target's token, marked sensitive so that hyper never
/// shows it.
fn bearer(target: &KubeTarget) -> Result<Option<HeaderValue>, KubeError> {
    let Some(token) = target.token.as_deref().map(str::trim) else {
        return Ok(None);
    };
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        KubeError::Config("The container manager token contains characters not allowed in HTTP.".to_owned())
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// Connect (and TLS), send the request, read the whole answer.
async fn exchange(
    endpoint: &Endpoint,
    tls: Option<TlsConnector>,
    request: Request<Full<Bytes>>,
) -> Result<Answer, KubeError> {
    let tcp = tcp_connect(endpoint).await?;
    let Some(connector) = tls else {
        return send(endpoint, TokioIo::new(tcp), request).await;
    };
    let name = ServerName::try_from(endpoint.host.clone())
        .map_err(|_| KubeError::Config(format!("'{}' is not a valid TLS server name.", endpoint.host)))?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| io_error(endpoint, &e, "the connection closed during the TLS handshake"))?;
    send(endpoint, TokioIo::new(stream), request).await
}

async fn send<IO>(endpoint: &Endpoint, io: IO, request: Request<Full<Bytes>>) -> Result<Answer, KubeError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| hyper_error(endpoint, &e))?;
    // hyper needs the connection driven by a task of its own. The set aborts that task when
    // this function returns or is dropped by the timeout, so no connection outlives its call.
    let mut driver = JoinSet::new();
    driver.spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| hyper_error(endpoint, &e))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| match e.downcast_ref::<hyper::Error>() {
            Some(e) => hyper_error(endpoint, e),
            None if e.is::<LengthLimitError>() => KubeError::Protocol {
                server: endpoint.base.clone(),
                reason: format!("the answer is larger than {} MiB", MAX_ANSWER_BYTES >> 20),
            },
            None => KubeError::Protocol {
                server: endpoint.base.clone(),
                reason: e.to_string(),
            },
        })?
        .to_bytes();
    Ok(Answer {
        server: endpoint.base.clone(),
        status,
        body,
    })
}

/// Resolves the host and connects to its addresses in turn; the error describes the last failure.
async fn tcp_connect(endpoint: &Endpoint) -> Result<TcpStream, KubeError> {
    let unreachable = |reason: String| KubeError::Connect {
        server: endpoint.base.clone(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|_| unreachable(format!("cannot resolve host name '{}'", endpoint.host)))?
        .collect();
    let mut last = unreachable(format!("host name '{}' has no address", endpoint.host));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = unreachable(io_reason(&e)),
        }
    }
    Err(last)
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        io::ErrorKind::TimedOut => "connection timed out".to_owned(),
        io::ErrorKind::UnexpectedEof => "the connection closed unexpectedly".to_owned(),
        _ => e.to_string(),
    }
}

/// An I/O error of the TLS handshake: rustls' own errors say what to fix, the rest means the
/// peer went away.
fn io_error(endpoint: &Endpoint, e: &io::Error, closed: &str) -> KubeError {
    if let Some(tls) = find_tls_error(Some(e)) {
        return tls_error(endpoint, tls);
    }
    KubeError::Tls {
        server: endpoint.base.clone(),
        reason: match e.kind() {
            io::ErrorKind::UnexpectedEof => closed.to_owned(),
            _ => io_reason(e),
        },
    }
}

/// An error of the HTTP exchange. With TLS 1.3 a refused client certificate shows up here,
/// at the first read after the handshake, as a rustls alert inside hyper's I/O error.
fn hyper_error(endpoint: &Endpoint, e: &hyper::Error) -> KubeError {
    if let Some(tls) = find_tls_error(Some(e)) {
        return tls_error(endpoint, tls);
    }
    if e.is_parse() || e.is_parse_status() {
        return KubeError::Protocol {
            server: endpoint.base.clone(),
            reason: "the answer is not HTTP/1.1 (is the URL meant to be https?)".to_owned(),
        };
    }
    let reason = match find_io_error(Some(e)) {
        Some(io) => io_reason(io),
        None => "the connection closed before the answer was complete".to_owned(),
    };
    KubeError::Connect {
        server: endpoint.base.clone(),
        reason,
    }
}

fn tls_error(endpoint: &Endpoint, e: &rustls::Error) -> KubeError {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    let reason = match e {
        E::InvalidCertificate(Cert::UnknownIssuer) => {
            "its certificate is not signed by a trusted authority (give the cluster's CA)".to_owned()
        }
        E::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            format!("its certificate is not valid for '{}'", endpoint.host)
        }
        E::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "its certificate has expired".to_owned()
        }
        // `DecryptError`: a certificate naming the cluster's CA but signed by another key (a
        // CA that was regenerated under the same name).
        E::AlertReceived(
            Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::AccessDenied
            | Alert::DecryptError,
        ) => "the server refused the client certificate (or needs one)".to_owned(),
        E::InvalidMessage(_) => "the server does not speak TLS (is the URL meant to be http?)".to_owned(),
        other => other.to_string(),
    };
    KubeError::Tls {
        server: endpoint.base.clone(),
        reason,
    }
}

/// The rustls error somewhere in a chain of errors. `io::Error::source` skips the error it
/// wraps, so I/O errors are looked into with `get_ref`.
fn find_tls_error<'a>(mut e: Option<&'a (dyn StdError + 'static)>) -> Option<&'a rustls::Error> {
    while let Some(err) = e {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        e = err.source();
    }
    None
}

fn find_io_error<'a>(mut e: Option<&'a (dyn StdError + 'static)>) -> Option<&'a io::Error> {
    while let Some(err) = e {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        e = err.source();
    }
    None
}

/// The TLS client settings of a target: its CA (or the public roots), its client certificate,
/// ALPN `http/1.1` (API servers also speak HTTP/2; this client does not).
fn tls_connector(target: &KubeTarget) -> Result<TlsConnector, KubeError> {
    let config_error = |what: &str| KubeError::Config(format!("{what}."));
    let mut roots = RootCertStore::empty();
    match &target.ca_pem {
        Some(pem) => {
            for cert in pem_certs(pem, "The container manager CA file")? {
                roots
                    .add(cert)
                    .map_err(|e| config_error(&format!("The container manager CA cannot be used: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(&format!("TLS is unavailable: {e}")))?
        .with_root_certificates(roots);
    let mut config = match (&target.client_cert_pem, &target.client_key_pem) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = pem_certs(cert, "The container manager client certificate file")?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
                config_error("The container manager client key file holds no usable PEM private key")
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                config_error(&format!(
                    "The container manager client certificate and key cannot be used: {e}"
                ))
            })?
        }
        _ => {
            return Err(config_error(
                "A container manager client certificate needs its key, and a key its certificate",
            ));
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

fn pem_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, KubeError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| KubeError::Config(format!("{what} is not valid PEM.")))?;
    if certs.is_empty() {
        return Err(KubeError::Config(format!("{what} holds no PEM certificate.")));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apiserver_urls_are_normalised() {
        let ok = [
            ("https://master:8443", "https://master:8443"),
            ("https://master:8443/", "https://master:8443"),
            ("https://master:8443/api/", "https://master:8443"),
            ("https://master:8443/api", "https://master:8443"),
            ("https://master:8443/api/v1/", "https://master:8443"),
            (" http://10.0.0.1:8080/api/ ", "http://10.0.0.1:8080"),
            ("https://[fd00::1]:6443/api/", "https://[fd00::1]:6443"),
            (
                "https://proxy.example.org/k8s/api/",
                "https://proxy.example.org/k8s",
            ),
        ];
        for (given, want) in ok {
            assert_eq!(normalize_apiserver(given).as_deref(), Ok(want), "{given}");
        }
        let e = Endpoint::parse("https://[fd00::1]/api/").ok();
        assert_eq!(
            e.as_ref().map(|e| (e.host.as_str(), e.port)),
            Some(("fd00::1", 443))
        );
        assert_eq!(Endpoint::parse("http://h/").ok().map(|e| e.port), Some(80));
        for bad in [
            "",
            "master:8443",
            "ftp://master/",
            "/api/",
            "https://user:secret@master/",
            "https://master/api?x=1",
        ] {
            let err = normalize_apiserver(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.starts_with("The container manager API URL is invalid"),
                "{bad}: {err}"
            );
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn node_names_are_one_path_segment() {
        assert_eq!(node_segment("192.168.1.5").ok().as_deref(), Some("192.168.1.5"));
        assert_eq!(node_segment("fd00::1").ok().as_deref(), Some("fd00%3A%3A1"));
        assert_eq!(node_segment("a/b?c#d%").ok().as_deref(), Some("a%2Fb%3Fc%23d%25"));
        assert_eq!(node_segment("é").ok().as_deref(), Some("%C3%A9"));
        for bad in ["", ".", ".."] {
            assert!(matches!(node_segment(bad), Err(KubeError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn debug_of_a_target_hides_the_secrets() {
        let target = KubeTarget {
            token: Some("SECRETTOKEN".into()),
            client_cert_pem: Some(b"CERTPEM".to_vec()),
            client_key_pem: Some(b"SECRETKEY".to_vec()),
            ..KubeTarget::new("https://master:8443", Duration::from_secs(5))
        };
        let s = format!("{target:?}");
        for hidden in ["SECRETTOKEN", "SECRETKEY", "CERTPEM"] {
            assert!(!s.contains(hidden), "{s}");
        }
        assert!(s.contains("https://master:8443"), "{s}");
    }

    #[test]
    fn bad_credentials_fail_before_any_traffic() {
        let with = |f: fn(&mut KubeTarget)| {
            let mut t = KubeTarget::new("https://master:8443", Duration::from_secs(5));
            f(&mut t);
            t.validate().err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert_eq!(with(|_| {}), "");
        assert!(with(|t| t.client_cert_pem = Some(b"x".to_vec())).contains("needs its key"));
        assert!(with(|t| t.ca_pem = Some(b"not pem".to_vec())).contains("holds no PEM certificate"));
        assert!(with(|t| t.token = Some("a\nSECRET".into())).contains("characters not allowed"));
        assert!(!with(|t| t.token = Some("a\nSECRET".into())).contains("SECRET"));
    }

    #[test]
    fn refusals_read_the_kubernetes_status_message() {
        let target = KubeTarget::new("https://m", Duration::from_secs(1));
        let answer = |status: u16, body: &str| Answer {
            server: "https://m".into(),
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            body: Bytes::from(body.to_owned()),
        };
        let forbidden = r#"{"kind":"Status","message":"nodes is forbidden: User \"x\" cannot create resource \"nodes\"."}"#;
        assert_eq!(
            answer(403, forbidden).refusal(&target).to_string(),
            r#"Container manager API at https://m answered 403: nodes is forbidden: User "x" cannot create resource "nodes"."#
        );
        assert_eq!(
            answer(500, "oops").refusal(&target).to_string(),
            "Container manager API at https://m answered 500: Internal Server Error."
        );
        assert_eq!(
            answer(401, "").refusal(&target).to_string(),
            "Container manager API at https://m refused an anonymous request (401)."
        );
    }
}
