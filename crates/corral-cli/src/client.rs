//! HTTP/1.1 over hyper's connection API (one connection per request: a CLI makes few), with
//! rustls on ring for `https://` addresses, a custom CA or `--insecure`.
//!
//! Credentials follow the contract's auth conventions (spec README 3): `Authorization: Bearer
//! <key or token>`, plus `Coopr-UserID` / `Coopr-TenantID` when the user and tenant are known,
//! which the server then checks against the key.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;
use tokio::net::TcpStream;

use crate::error::{CliError, Result};

/// Characters a path segment keeps unescaped (the CDAP convention, spec README 6.1).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'$')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'+')
    .remove(b'!')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Percent-encodes one path segment or query value.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The contract's default port.
pub const DEFAULT_PORT: u16 = 55054;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where and as whom to connect.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub addr: String,
    pub api_key: Option<String>,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub ca_cert: Option<std::path::PathBuf>,
    pub insecure: bool,
}

pub struct Client {
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    conn: Connection,
}

/// One answer, body read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn request_id(&self) -> Option<String> {
        header(&self.headers, "x-request-id")
    }
    /// The change-feed revision a followable action committed (`X-Corral-Revision`).
    pub fn revision(&self) -> Option<i64> {
        header(&self.headers, "x-corral-revision").and_then(|v| v.parse().ok())
    }
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The body as JSON (`null` when empty), or the error this answer stands for.
    pub fn json(self) -> Result<Value> {
        if !self.ok() {
            return Err(self.error());
        }
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| CliError {
            request_id: self.request_id(),
            ..CliError::failure(format!("the server's answer is not JSON: {e}"))
        })
    }
    pub fn error(&self) -> CliError {
        CliError::from_answer(self.status, &self.body, self.request_id())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn header(h: &hyper::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn transport(what: impl std::fmt::Display) -> CliError {
    CliError::failure(what.to_string())
}

impl Client {
    pub fn new(conn: Connection) -> Result<Client> {
        let addr = conn.addr.trim().trim_end_matches('/');
        if addr.is_empty() {
            return Err(CliError::usage(
                "no server address: pass --addr, set CORRAL_ADDR, or `corral context add`",
            ));
        }
        let (https, rest) = if let Some(r) = addr.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = addr.strip_prefix("http://") {
            (false, r)
        } else if addr.contains("://") {
            return Err(CliError::usage(format!(
                "unsupported address '{addr}': use http:// or https://"
            )));
        } else {
            (false, addr)
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| CliError::usage(format!("invalid server address '{}'", conn.addr)))?;
        let tls = if https {
            let config = tls_config(conn.ca_cert.as_deref(), conn.insecure)?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| CliError::usage(format!("invalid TLS server name '{host}': {e}")))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Client {
            host,
            port,
            tls,
            conn,
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply> {
        self.send_bytes(method, path, json_bytes(body)?, &[]).await
    }

    /// Sends and answers the JSON body of a success, or the error of a failure.
    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        self.send(method, path, body).await?.json()
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(Method::GET, path, None).await
    }

    /// Opens a request and answers the response with its body unread (for streams).
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra: &[(&str, String)],
    ) -> Result<Response<Incoming>> {
        self.open_bytes(method, path, json_bytes(body)?, extra).await
    }

    /// Sends raw bytes (the CDAP method proxy passes bodies through unchanged) and reads the
    /// whole answer, within `REQUEST_TIMEOUT` like every whole exchange.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        extra: &[(&str, String)],
    ) -> Result<Reply> {
        let fut = async {
            let resp = self.open_bytes(method, path, body, extra).await?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| transport(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut).await.map_err(|_| {
            transport(format!(
                "no answer from {} within {REQUEST_TIMEOUT:?}",
                self.conn.addr
            ))
        })?
    }

    async fn open_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        extra: &[(&str, String)],
    ) -> Result<Response<Incoming>> {
        let has_body = body.is_some();
        let bytes = body.unwrap_or_default();
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host_header)
            .header("user-agent", concat!("corral-cli/", env!("CARGO_PKG_VERSION")));
        let has_type = extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if has_body && !has_type {
            req = req.header("content-type", "application/json");
        }
        let has_accept = extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept"));
        if !has_accept {
            req = req.header("accept", "application/json");
        }
        if let Some(key) = &self.conn.api_key {
            req = req.header("authorization", format!("Bearer {key}"));
            if let Some(u) = &self.conn.user {
                req = req.header("coopr-userid", u.as_str());
            }
            if let Some(t) = &self.conn.tenant {
                req = req.header("coopr-tenantid", t.as_str());
            }
        }
        for (k, v) in extra {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| CliError::usage(format!("invalid request: {e}")))?;
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| transport(format!("cannot connect to {}: {e}", self.conn.addr)))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => exchange(tcp, req).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| transport(format!("TLS with {}: {e}", self.conn.addr)))?;
                exchange(tls, req).await
            }
        }
    }
}

async fn exchange<S>(io: S, req: Request<Full<Bytes>>) -> Result<Response<Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| transport(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| transport(format!("request failed: {e}")))
}

fn split_host_port(authority: &str) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None if !authority.is_empty() => Some((authority.to_string(), DEFAULT_PORT)),
        None => None,
    }
}

fn tls_config(ca: Option<&Path>, insecure: bool) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| transport(e.to_string()))?;
    if insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| CliError::usage(format!("CA file {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| CliError::usage(format!("CA file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| CliError::usage(format!("CA file {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(CliError::usage(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `--insecure`: accepts any server certificate (signatures are still checked, so the
/// handshake itself stays sound; only the identity is not).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A JSON body as bytes.
fn json_bytes(body: Option<&Value>) -> Result<Option<Bytes>> {
    body.map(|v| {
        serde_json::to_vec(v)
            .map(Bytes::from)
            .map_err(|e| transport(e.to_string()))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("a:1"), Some(("a".into(), 1)));
        assert_eq!(split_host_port("a"), Some(("a".into(), DEFAULT_PORT)));
        assert_eq!(split_host_port("[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }
}
