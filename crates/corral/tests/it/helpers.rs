//! Request helpers shared by the suite's modules: one call sends a request and asserts its
//! answer, naming the request (and, in a table of cases, the case) when the assertion fails.
//!
//! ```ignore
//! let user = s.post(&admin, "/v2/users").json(json!({"id": "alice"})).expect(StatusCode::CREATED).await;
//! s.get(&viewer, "/v2/users").expect_error(StatusCode::FORBIDDEN, MUST_BE_ADMIN).await;
//! for (name, body, status) in CASES {
//!     s.put(&admin, path).json(body).case(name).expect_error(status, None).await;
//! }
//! ```

use std::fmt::Display;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::harness::{
    BOOTSTRAP_KEY, TestServer, check_empty_ok, check_error, check_json, check_unauthorized,
};

/// A request to send and the name it fails under: `METHOD path`, after the case's name.
pub struct Req {
    builder: RequestBuilder,
    what: String,
}

impl TestServer {
    /// `method path` as `key` (`Authorization: Bearer <key>`).
    pub fn req(&self, key: &str, method: Method, path: &str) -> Req {
        Req::new(self.call(key, method.clone(), path), &method, path)
    }

    /// `method path` without credentials.
    pub fn req_anon(&self, method: Method, path: &str) -> Req {
        Req::new(self.anon(method.clone(), path), &method, path)
    }

    /// `method path` as the bootstrap superadmin.
    pub fn req_root(&self, method: Method, path: &str) -> Req {
        self.req(BOOTSTRAP_KEY, method, path)
    }

    pub fn get(&self, key: &str, path: &str) -> Req {
        self.req(key, Method::GET, path)
    }

    pub fn put(&self, key: &str, path: &str) -> Req {
        self.req(key, Method::PUT, path)
    }

    pub fn post(&self, key: &str, path: &str) -> Req {
        self.req(key, Method::POST, path)
    }

    pub fn delete(&self, key: &str, path: &str) -> Req {
        self.req(key, Method::DELETE, path)
    }

    /// Sends `method path` as `key` once with each of `bodies`: each must answer a 400
    /// contract error with a text message. A failure names the body.
    pub async fn expect_bad_bodies(
        &self,
        key: &str,
        method: Method,
        path: &str,
        bodies: impl IntoIterator<Item = Value>,
    ) {
        for body in bodies {
            let err = self
                .req(key, method.clone(), path)
                .case(&body)
                .json(&body)
                .expect_error(StatusCode::BAD_REQUEST, None)
                .await;
            assert!(err["message"].is_string(), "case {body}: {err}");
        }
    }

    /// Sends `method path` as `key` once with each `(body, message)`: each must answer a 400
    /// contract error with exactly that message. A failure names the body.
    pub async fn expect_rejected<M: AsRef<str>>(
        &self,
        key: &str,
        method: Method,
        path: &str,
        cases: impl IntoIterator<Item = (Value, M)>,
    ) {
        for (body, message) in cases {
            self.req(key, method.clone(), path)
                .case(&body)
                .json(&body)
                .expect_error(StatusCode::BAD_REQUEST, message.as_ref())
                .await;
        }
    }

    /// Asserts each `(query, count)`: the single integer the query answers on the server's
    /// database (see [`TestServer::sql_count`]). A failure names the query.
    pub async fn assert_counts<Q: AsRef<str>>(&self, cases: impl IntoIterator<Item = (Q, i64)>) {
        for (sql, want) in cases {
            assert_eq!(self.sql_count(sql.as_ref()).await, want, "{}", sql.as_ref());
        }
    }

    /// `GET path` as `key`, which must answer 200 with JSON.
    pub async fn get_json(&self, key: &str, path: &str) -> Value {
        self.get(key, path).ok().await
    }
}

/// A request built otherwise (custom headers, another credential form) as a [`Req`], named by
/// its method and path.
pub trait IntoReq {
    fn into_req(self) -> Req;
}

impl IntoReq for RequestBuilder {
    fn into_req(self) -> Req {
        let what = self
            .try_clone()
            .and_then(|b| b.build().ok())
            .map(|r| match r.url().query() {
                Some(q) => format!("{} {}?{q}", r.method(), r.url().path()),
                None => format!("{} {}", r.method(), r.url().path()),
            })
            .unwrap_or_else(|| "request".to_string());
        Req { builder: self, what }
    }
}

impl Req {
    fn new(builder: RequestBuilder, method: &Method, path: &str) -> Req {
        Req {
            builder,
            what: format!("{method} {path}"),
        }
    }

    /// Names the case this request belongs to in failure messages.
    pub fn case(mut self, case: impl Display) -> Req {
        self.what = format!("case {case}: {}", self.what);
        self
    }

    /// A JSON body.
    pub fn json(mut self, body: impl Serialize) -> Req {
        self.builder = self.builder.json(&body);
        self
    }

    /// A JSON body, or none.
    pub fn json_opt(self, body: Option<Value>) -> Req {
        match body {
            Some(b) => self.json(b),
            None => self,
        }
    }

    /// Adjusts the request otherwise (headers, a raw body).
    pub fn with(mut self, f: impl FnOnce(RequestBuilder) -> RequestBuilder) -> Req {
        self.builder = f(self.builder);
        self
    }

    pub async fn send(self) -> Response {
        let what = self.what;
        self.builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: send failed: {e}"))
    }

    /// Sends; asserts `status` and answers the JSON body.
    pub async fn expect(self, status: StatusCode) -> Value {
        let what = self.what.clone();
        check_json(&what, self.send().await, status).await
    }

    /// Sends; asserts 200 and answers the JSON body.
    pub async fn ok(self) -> Value {
        self.expect(StatusCode::OK).await
    }

    /// Sends; asserts a contract error (status, JSON content type, `code`, `error`, and the
    /// `message` if given) and answers its body.
    pub async fn expect_error<'m>(self, status: StatusCode, message: impl Message<'m>) -> Value {
        let what = self.what.clone();
        check_error(&what, self.send().await, status, message.message()).await
    }

    /// Sends (a body that is not JSON); asserts the general 400 whose message starts with
    /// "Request body is not valid JSON: ", and answers the error body.
    pub async fn expect_not_json(self) -> Value {
        let what = self.what.clone();
        let err = self.expect_error(StatusCode::BAD_REQUEST, None).await;
        let message = err["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("Request body is not valid JSON: "),
            "{what}: {err}"
        );
        err
    }

    /// Sends; asserts a 401 with the challenge header and `message`.
    pub async fn expect_unauthorized(self, message: &str) -> Value {
        let what = self.what.clone();
        check_unauthorized(&what, self.send().await, message).await
    }

    /// Sends; asserts a success without content (200, empty body, no content type).
    pub async fn expect_empty_ok(self) {
        let what = self.what.clone();
        check_empty_ok(&what, self.send().await).await
    }

    /// Sends; asserts Commissaire's delete answer: 200 with the JSON body `[]`.
    pub async fn expect_deleted(self) {
        let what = self.what.clone();
        let resp = self.send().await;
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_string());
        let text = resp.text().await.unwrap_or_else(|e| panic!("{what}: body: {e}"));
        assert_eq!(status, StatusCode::OK, "{what}: {text}");
        assert_eq!(text, "[]", "{what}");
        assert_eq!(ct.as_deref(), Some("application/json; charset=utf-8"), "{what}");
    }

    /// Sends; asserts `status` only and answers the body's text.
    pub async fn expect_status(self, status: StatusCode) -> String {
        let what = self.what.clone();
        let resp = self.send().await;
        let got = resp.status();
        let text = resp.text().await.unwrap_or_else(|e| panic!("{what}: body: {e}"));
        assert_eq!(got, status, "{what}: unexpected status; body: {text}");
        text
    }
}

/// The `message` an error must have: a text, or `None` for any.
pub trait Message<'m> {
    fn message(self) -> Option<&'m str>;
}

impl<'m> Message<'m> for &'m str {
    fn message(self) -> Option<&'m str> {
        Some(self)
    }
}

impl<'m> Message<'m> for &'m String {
    fn message(self) -> Option<&'m str> {
        Some(self)
    }
}

impl<'m> Message<'m> for Option<&'m str> {
    fn message(self) -> Option<&'m str> {
        self
    }
}

/// Sends each request in turn: each must answer the contract error `status` with `message`
/// (any message for `None`). A failure names the request.
pub async fn expect_each_error<'m, M: Message<'m> + Copy>(
    reqs: impl IntoIterator<Item = Req>,
    status: StatusCode,
    message: M,
) {
    for req in reqs {
        req.expect_error(status, message).await;
    }
}

impl TestServer {
    /// The Prometheus text of `/metrics`, read as the superadmin.
    pub async fn metrics_text(&self) -> String {
        let resp = self.root(Method::GET, "/metrics").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET /metrics");
        resp.text().await.unwrap()
    }
}

/// A self-signed certificate for `localhost`, written as PEM files, and a TLS client that
/// trusts exactly it.
pub struct TestTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub connector: tokio_rustls::TlsConnector,
}

impl TestTls {
    pub fn new(dir: &std::path::Path) -> TestTls {
        use std::sync::Arc;
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        TestTls {
            cert: cert_path,
            key: key_path,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// A TLS connection to `addr` for the name `localhost`.
    pub async fn connect(
        &self,
        addr: impl tokio::net::ToSocketAddrs,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        self.connector.connect(name, tcp).await
    }
}

/// Real sshd hosts on consecutive loopback addresses, all on one port (Corral's `ssh_port`),
/// accepting one client key; and a config file for a `corral serve` process that reaches them
/// with OS profiles whose upgrade counts its runs on the host side.
pub struct SshdHosts {
    pub key: corral_drivers::testing::ClientKey,
    pub port: u16,
    /// Held for the sshd processes' lives: dropping one stops it.
    _hosts: Vec<corral_drivers::testing::TestSshd>,
    pub addresses: Vec<String>,
}

impl SshdHosts {
    pub fn start(n: usize) -> SshdHosts {
        use corral_drivers::testing::{ClientKey, KeyFormat, KeyType, TestSshd, free_port, next_loopback};
        let key = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap();
        let first = next_loopback();
        let port = free_port(first).unwrap();
        let hosts: Vec<TestSshd> = (0..n)
            .map(|i| {
                let ip = if i == 0 { first } else { next_loopback() };
                TestSshd::start_at(ip, port, &[&key]).unwrap()
            })
            .collect();
        let addresses = hosts.iter().map(|h| h.ip().to_string()).collect();
        SshdHosts {
            key,
            port,
            _hosts: hosts,
            addresses,
        }
    }

    /// The private key as `ssh_priv_key` takes it.
    pub fn key_b64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.key.private_key)
    }

    /// Config lines for these hosts (a 3 s job lease) whose `upgrade` sleeps `upgrade_secs`
    /// and appends a line to `trace/<host>.upgrade`.
    pub fn config(&self, trace: &std::path::Path, upgrade_secs: u64) -> String {
        let profile = format!(
            "bootstrap = \"true\"\nrestart = \"true\"\ndeploy = \"true\"\n\
             upgrade = \"sleep {upgrade_secs}; echo upgraded >> {}/$CORRAL_TEST_HOST.upgrade\"\n",
            trace.display()
        );
        format!(
            "ssh_port = {}\nhost_allow = [\"127.0.0.0/8\"]\nssh_connect_timeout = 5\njob_lease = 3\n\
             [os_profiles.debian]\n{profile}[os_profiles.ubuntu]\n{profile}",
            self.port
        )
    }

    /// How many times each host ran its upgrade, by the trace files.
    pub fn upgrade_counts(&self, trace: &std::path::Path) -> Vec<(String, usize)> {
        self.addresses
            .iter()
            .map(|a| {
                let n = std::fs::read_to_string(trace.join(format!("{a}.upgrade")))
                    .unwrap_or_default()
                    .lines()
                    .count();
                (a.clone(), n)
            })
            .collect()
    }
}
