//! The Kubernetes Node client against a real HTTP(S) server started by each test: a small axum
//! app that speaks the subset of the Node API Corral uses (create, read, delete), keeps nodes in
//! a map and checks a bearer token. The HTTPS tests make their own CA with rcgen. Nothing here
//! contacts an address outside 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use corral_drivers::{ContainerManagerClient, KubeClient, KubeError, KubeTarget};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const TOKEN: &str = "t0ken-SECRET-0123456789";
const LIMIT: Duration = Duration::from_secs(10);

/// The fake API server's state.
#[derive(Default)]
struct Api {
    /// The bearer token it accepts; `None`: no token check (client-certificate tests).
    token: Option<String>,
    nodes: Mutex<BTreeMap<String, Value>>,
    /// Request targets as received, before any decoding.
    seen: Mutex<Vec<String>>,
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "reason": reason, "message": message, "code": code.as_u16()});
    (code, Json(body)).into_response()
}

async fn check_token(State(api): State<Arc<Api>>, headers: HeaderMap, req: Request, next: Next) -> Response {
    api.seen.lock().unwrap().push(req.uri().to_string());
    if let Some(token) = &api.token {
        let want = format!("Bearer {token}");
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into());
        }
    }
    next.run(req).await
}

async fn create(State(api): State<Arc<Api>>, Json(node): Json<Value>) -> Response {
    let name = node["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    if node["apiVersion"] != "v1" || node["kind"] != "Node" || name.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("not a Node: {node}"),
        );
    }
    if name.starts_with("forbidden") {
        let message = r#"nodes is forbidden: User "corral" cannot create resource "nodes""#;
        return status(StatusCode::FORBIDDEN, "Forbidden", message.into());
    }
    let mut nodes = api.nodes.lock().unwrap();
    if nodes.contains_key(&name) {
        let message = format!(r#"nodes "{name}" already exists"#);
        return status(StatusCode::CONFLICT, "AlreadyExists", message);
    }
    let stored = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                        "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    nodes.insert(name, stored.clone());
    (StatusCode::CREATED, Json(stored)).into_response()
}

async fn read(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    match api.nodes.lock().unwrap().get(&name) {
        Some(node) => Json(node.clone()).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(r#"nodes "{name}" not found"#),
        ),
    }
}

async fn remove(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    match api.nodes.lock().unwrap().remove(&name) {
        Some(_) => Json(json!({"kind": "Status", "status": "Success"})).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(r#"nodes "{name}" not found"#),
        ),
    }
}

fn app(api: &Arc<Api>) -> Router {
    Router::new()
        .route("/api/v1/nodes", post(create))
        .route("/api/v1/nodes/{name}", get(read).delete(remove))
        .layer(middleware::from_fn_with_state(Arc::clone(api), check_token))
        .with_state(Arc::clone(api))
}

/// Serves the Node API over plain HTTP on 127.0.0.1; answers the state and the port.
async fn serve_http(token: Option<&str>) -> (Arc<Api>, u16) {
    let api = Arc::new(Api {
        token: token.map(str::to_owned),
        ..Api::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = app(&api);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (api, port)
}

fn target(url: String) -> KubeTarget {
    KubeTarget {
        token: Some(TOKEN.to_owned()),
        ..KubeTarget::new(url, LIMIT)
    }
}

#[tokio::test]
async fn register_status_and_remove_a_node() {
    let (api, port) = serve_http(Some(TOKEN)).await;
    let kube = KubeClient::new();
    let t = target(format!("http://127.0.0.1:{port}"));

    kube.register_node(&t, "192.168.100.50").await.unwrap();
    assert!(api.nodes.lock().unwrap().contains_key("192.168.100.50"));
    // The server answers 409 AlreadyExists: a repeated registration is a success.
    kube.register_node(&t, "192.168.100.50").await.unwrap();
    assert_eq!(api.nodes.lock().unwrap().len(), 1);

    let status = kube.node_status(&t, "192.168.100.50").await.unwrap();
    assert_eq!(
        status,
        json!({"conditions": [{"type": "Ready", "status": "True"}]})
    );

    kube.remove_node(&t, "192.168.100.50").await.unwrap();
    assert!(api.nodes.lock().unwrap().is_empty());
    // 404 on a repeated removal is a success, and the status of a missing node is `{}`.
    kube.remove_node(&t, "192.168.100.50").await.unwrap();
    assert_eq!(kube.node_status(&t, "192.168.100.50").await.unwrap(), json!({}));
}

#[tokio::test]
async fn an_apiserver_url_ending_in_api_is_normalised() {
    let (api, port) = serve_http(Some(TOKEN)).await;
    let kube = KubeClient::new();
    let t = target(format!("http://127.0.0.1:{port}/api/"));

    kube.register_node(&t, "10.0.0.7").await.unwrap();
    assert_eq!(
        kube.node_status(&t, "10.0.0.7").await.unwrap()["conditions"][0]["type"],
        "Ready"
    );
    assert_eq!(
        *api.seen.lock().unwrap(),
        ["/api/v1/nodes", "/api/v1/nodes/10.0.0.7"]
    );
}

#[tokio::test]
async fn ipv6_node_names_are_percent_encoded_in_the_path() {
    let (api, port) = serve_http(Some(TOKEN)).await;
    let kube = KubeClient::new();
    let t = target(format!("http://127.0.0.1:{port}"));

    kube.register_node(&t, "fd00::1").await.unwrap();
    assert!(
        !kube
            .node_status(&t, "fd00::1")
            .await
            .unwrap()
            .as_object()
            .unwrap()
            .is_empty()
    );
    kube.remove_node(&t, "fd00::1").await.unwrap();
    assert_eq!(
        *api.seen.lock().unwrap(),
        [
            "/api/v1/nodes",
            "/api/v1/nodes/fd00%3A%3A1",
            "/api/v1/nodes/fd00%3A%3A1"
        ]
    );
    assert!(api.nodes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_never_shown() {
    let (api, port) = serve_http(Some(TOKEN)).await;
    let kube = KubeClient::new();
    let wrong = KubeTarget {
        token: Some("wrong-SECRET-token".to_owned()),
        ..KubeTarget::new(format!("http://127.0.0.1:{port}/api/"), LIMIT)
    };

    for err in [
        kube.register_node(&wrong, "10.0.0.1").await.unwrap_err(),
        kube.remove_node(&wrong, "10.0.0.1").await.unwrap_err(),
        kube.node_status(&wrong, "10.0.0.1").await.unwrap_err(),
    ] {
        assert!(matches!(err, KubeError::Unauthorized { .. }), "{err:?}");
        let text = err.to_string();
        assert_eq!(
            text,
            format!("Container manager API at http://127.0.0.1:{port} refused the token (401).")
        );
        assert!(!format!("{text} {err:?}").contains("SECRET"), "{err:?}");
        assert!(!err.is_unreachable());
    }
    assert!(api.nodes.lock().unwrap().is_empty());

    let anonymous = KubeTarget::new(format!("http://127.0.0.1:{port}"), LIMIT);
    let err = kube.register_node(&anonymous, "10.0.0.1").await.unwrap_err();
    assert!(
        err.to_string().contains("refused an anonymous request (401)"),
        "{err}"
    );
}

#[tokio::test]
async fn other_refusals_carry_the_servers_message() {
    let (_api, port) = serve_http(Some(TOKEN)).await;
    let err = KubeClient::new()
        .register_node(
            &target(format!("http://127.0.0.1:{port}")),
            "forbidden.example.org",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, KubeError::Rejected { status: 403, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "Container manager API at http://127.0.0.1:{port} answered 403: \
             nodes is forbidden: User \"corral\" cannot create resource \"nodes\"."
        )
    );
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = KubeClient::new()
        .register_node(&target(format!("http://127.0.0.1:{port}/api/")), "10.0.0.1")
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("Cannot reach the container manager API at http://127.0.0.1:{port}: connection refused.")
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts connections and holds them open without reading or answering.
    tokio::spawn(async move {
        let mut held: Vec<TcpStream> = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let t = KubeTarget {
        timeout: Duration::from_millis(300),
        ..target(format!("http://127.0.0.1:{port}"))
    };
    let started = Instant::now();
    let err = KubeClient::new().node_status(&t, "10.0.0.1").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, KubeError::Timeout { .. }), "{err:?}");
    assert!(err.is_unreachable());
    assert_eq!(
        err.to_string(),
        format!("Container manager API at http://127.0.0.1:{port} did not answer within 300 ms.")
    );
}

#[tokio::test]
async fn a_non_http_answer_is_a_protocol_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    let err = KubeClient::new()
        .node_status(&target(format!("http://127.0.0.1:{port}")), "10.0.0.1")
        .await
        .unwrap_err();
    assert!(matches!(err, KubeError::Protocol { .. }), "{err:?}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all made for the test.
struct Pki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: KeyPair,
    client_cert_pem: String,
    client_key_pem: String,
    ca_der: CertificateDer<'static>,
}

fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "corral test cluster CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "system:admin");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    Pki {
        ca_pem: ca.pem(),
        server_chain: vec![server.der().clone()],
        server_key,
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
        ca_der: ca.der().clone(),
    }
}

/// TLS on top of a TCP listener, for `axum::serve`. A failed handshake (the refusals the tests
/// provoke) drops that connection and waits for the next.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves the Node API over HTTPS on 127.0.0.1 with the test CA's server certificate; with
/// `require_client_cert`, only clients with a certificate of the test CA are let in (and no
/// token is checked).
async fn serve_https(pki: &Pki, require_client_cert: bool) -> (Arc<Api>, u16) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_der.clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.serialize_der()));
    let mut config = builder.with_single_cert(pki.server_chain.clone(), key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    let api = Arc::new(Api {
        token: (!require_client_cert).then(|| TOKEN.to_owned()),
        ..Api::default()
    });
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    let router = app(&api);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (api, port)
}

#[tokio::test]
async fn https_needs_the_clusters_ca() {
    let pki = make_pki();
    let (api, port) = serve_https(&pki, false).await;
    let kube = KubeClient::new();
    let url = format!("https://127.0.0.1:{port}/api/");

    // By default only the public web roots are trusted: the cluster's own CA is not.
    let err = kube
        .register_node(&target(url.clone()), "10.0.0.1")
        .await
        .unwrap_err();
    assert!(matches!(err, KubeError::Tls { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "TLS connection to the container manager API at https://127.0.0.1:{port} failed: \
             its certificate is not signed by a trusted authority (give the cluster's CA)."
        )
    );
    assert!(!err.to_string().contains("SECRET"));
    assert!(api.nodes.lock().unwrap().is_empty());

    let with_ca = KubeTarget {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        ..target(url)
    };
    with_ca.validate().unwrap();
    kube.register_node(&with_ca, "10.0.0.1").await.unwrap();
    assert_eq!(
        kube.node_status(&with_ca, "10.0.0.1").await.unwrap()["conditions"][0]["status"],
        "True"
    );
    kube.remove_node(&with_ca, "10.0.0.1").await.unwrap();
    assert!(api.nodes.lock().unwrap().is_empty());

    // The name in the certificate is checked too: `localhost` is not in it.
    let wrong_name = KubeTarget {
        apiserver: format!("https://localhost:{port}"),
        ..with_ca
    };
    let err = kube.node_status(&wrong_name, "10.0.0.1").await.unwrap_err();
    assert!(err.to_string().contains("not valid for 'localhost'"), "{err}");
}

#[tokio::test]
async fn https_with_a_client_certificate() {
    let pki = make_pki();
    let (api, port) = serve_https(&pki, true).await;
    let kube = KubeClient::new();
    let base = KubeTarget {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        ..KubeTarget::new(format!("https://127.0.0.1:{port}"), LIMIT)
    };

    let err = kube.register_node(&base, "10.0.0.2").await.unwrap_err();
    assert!(matches!(err, KubeError::Tls { .. }), "{err:?}");
    assert!(
        err.to_string().contains("refused the client certificate"),
        "{err}"
    );

    let with_cert = KubeTarget {
        client_cert_pem: Some(pki.client_cert_pem.clone().into_bytes()),
        client_key_pem: Some(pki.client_key_pem.clone().into_bytes()),
        ..base.clone()
    };
    with_cert.validate().unwrap();
    kube.register_node(&with_cert, "10.0.0.2").await.unwrap();
    kube.register_node(&with_cert, "10.0.0.2").await.unwrap();
    assert!(api.nodes.lock().unwrap().contains_key("10.0.0.2"));
    assert!(
        !kube
            .node_status(&with_cert, "10.0.0.2")
            .await
            .unwrap()
            .as_object()
            .unwrap()
            .is_empty()
    );
    kube.remove_node(&with_cert, "10.0.0.2").await.unwrap();
    assert!(api.nodes.lock().unwrap().is_empty());

    // A certificate of another CA is refused as well.
    let other = make_pki();
    let stranger = KubeTarget {
        client_cert_pem: Some(other.client_cert_pem.into_bytes()),
        client_key_pem: Some(other.client_key_pem.into_bytes()),
        ..base.clone()
    };
    let err = kube.register_node(&stranger, "10.0.0.2").await.unwrap_err();
    assert!(
        err.to_string().contains("refused the client certificate"),
        "{err}"
    );

    // A key that does not belong to the certificate fails before any traffic.
    let mismatched = KubeTarget {
        client_cert_pem: Some(pki.client_cert_pem.into_bytes()),
        client_key_pem: Some(KeyPair::generate().unwrap().serialize_pem().into_bytes()),
        ..base
    };
    assert!(matches!(mismatched.validate(), Err(KubeError::Config(_))));
}

#[tokio::test]
async fn plain_http_against_https_and_back_is_explained() {
    let pki = make_pki();
    let (_api, tls_port) = serve_https(&pki, false).await;
    let (_api, http_port) = serve_http(Some(TOKEN)).await;
    let kube = KubeClient::new();

    let err = kube
        .node_status(&target(format!("https://127.0.0.1:{http_port}")), "10.0.0.1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not speak TLS"), "{err}");

    let err = kube
        .node_status(&target(format!("http://127.0.0.1:{tls_port}")), "10.0.0.1")
        .await
        .unwrap_err();
    assert!(matches!(err, KubeError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("is the URL meant to be https?"), "{err}");
}
