//! The cross-cutting conventions of README 4-9: error bodies, 404/405, JSON parsing, body
//! limits, trailing slashes, path decoding, request ids, HEAD, health and version.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_stores;
use crate::harness::{Db, TestServer, expect_error};

async fn unknown_uri_is_json_404(db: Db) {
    let s = TestServer::start(db).await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::POST, "/v2/clusters"),
        (Method::GET, "/v3/namespaces/default/artifacts"),
    ] {
        s.req_anon(method.clone(), path)
            .expect_error(StatusCode::NOT_FOUND, &format!("No route for {method} {path}."))
            .await;
    }
    // A route check comes before authentication: no credentials, still 404.
    s.req_root(Method::GET, "/v2/nothing/here")
        .expect_error(StatusCode::NOT_FOUND, None)
        .await;
}

async fn wrong_method_is_405_with_allow(db: Db) {
    let s = TestServer::start(db).await;
    let resp = s.anon(Method::PATCH, "/v2/tenants").send().await.unwrap();
    let allow = resp.headers()["allow"].to_str().unwrap().to_string();
    expect_error(
        resp,
        StatusCode::METHOD_NOT_ALLOWED,
        Some("Method PATCH is not allowed for /v2/tenants."),
    )
    .await;
    assert_eq!(allow, "GET, HEAD, POST");
    let resp = s
        .anon(Method::POST, "/v3/namespaces/default")
        .send()
        .await
        .unwrap();
    let allow = resp.headers()["allow"].to_str().unwrap().to_string();
    expect_error(resp, StatusCode::METHOD_NOT_ALLOWED, None).await;
    assert_eq!(allow, "GET, HEAD, PUT, DELETE");
    let resp = s.anon(Method::DELETE, "/status").send().await.unwrap();
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    expect_error(resp, StatusCode::METHOD_NOT_ALLOWED, None).await;
}

async fn malformed_and_mistyped_json_are_400(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 1).await;
    // Not JSON at all, whatever the content type.
    for body in ["{", "not json", "{\"id\": \"a\"} trailing"] {
        s.post(&admin, "/v2/users")
            .case(format!("{body:?}"))
            .with(|r| r.body(body))
            .expect_not_json()
            .await;
    }
    // Valid JSON of the wrong type: the message names the field.
    let err = s
        .post(&admin, "/v2/users")
        .json(json!({"id": 5}))
        .expect_error(StatusCode::BAD_REQUEST, None)
        .await;
    assert!(err["message"].as_str().unwrap().contains("id"), "{err}");
    let err = s
        .put(&admin, "/v3/namespaces/dev")
        .json(json!({"config": {"a": 1}}))
        .expect_error(StatusCode::BAD_REQUEST, None)
        .await;
    assert!(err["message"].as_str().unwrap().contains("config.a"), "{err}");
    s.post(&admin, "/v2/users")
        .json(json!([1, 2]))
        .expect_error(StatusCode::BAD_REQUEST, None)
        .await;
    // Coopr's own text for tenant bodies.
    s.req_root(Method::POST, "/v2/tenants")
        .json(json!({"tenant": {"name": "x", "workers": "1"}}))
        .expect_error(StatusCode::BAD_REQUEST, "invalid input")
        .await;
    // No framework 415: a JSON body with a text content type is parsed.
    s.post(&admin, "/v2/users")
        .with(|r| r.header("content-type", "text/plain"))
        .with(|r| r.body(r#"{"id": "carol"}"#))
        .expect_status(StatusCode::CREATED)
        .await;
}

async fn oversized_body_is_413(db: Db) {
    let s = TestServer::start_with(db, |c| c.max_body_bytes = 1024).await;
    let big = json!({"blob": "x".repeat(2000)});
    s.req_root(Method::PUT, "/v2/profile")
        .json(big)
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "Request body exceeds 1024 bytes.")
        .await;
    // Nothing was stored.
    s.req_root(Method::GET, "/v2/profile")
        .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
        .await;
    let small = json!({"blob": "x"});
    assert_eq!(
        s.req_root(Method::PUT, "/v2/profile").json(&small).ok().await,
        small
    );
}

async fn trailing_slash_and_percent_decoding(db: Db) {
    let s = TestServer::start(db).await;
    let a = s.req_root(Method::GET, "/v3/namespaces").ok().await;
    let b = s.req_root(Method::GET, "/v3/namespaces/").ok().await;
    assert_eq!(a, b);
    assert_eq!(
        s.req_root(Method::PUT, "/v3/namespaces/my%2Dns/").ok().await["name"],
        "my-ns"
    );
    assert_eq!(
        s.req_root(Method::GET, "/v3/namespaces/my-ns").ok().await["name"],
        "my-ns"
    );
    for bad in ["/v3/namespaces/a%2Fb", "/v3/namespaces/a%0Ab"] {
        s.req_root(Method::GET, bad)
            .expect_error(StatusCode::BAD_REQUEST, None)
            .await;
    }
}

async fn request_ids_are_echoed_or_generated(db: Db) {
    let s = TestServer::start(db).await;
    let resp = s
        .anon(Method::GET, "/status")
        .header("x-request-id", "my-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "my-trace-42");
    // Errors carry it too, and a bad client id is replaced by a UUID.
    let resp = s
        .anon(Method::GET, "/v2/users")
        .header("x-request-id", "x".repeat(129))
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    expect_error(resp, StatusCode::UNAUTHORIZED, None).await;
    let resp = s.anon(Method::GET, "/nope").send().await.unwrap();
    assert!(uuid::Uuid::parse_str(resp.headers()["x-request-id"].to_str().unwrap()).is_ok());
}

async fn health_version_and_head(db: Db) {
    let s = TestServer::start(db).await;
    let resp = s.anon(Method::GET, "/status").send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(resp.text().await.unwrap(), "OK\n");
    let resp = s.anon(Method::GET, "/version").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), env!("CARGO_PKG_VERSION"));
    let resp = s.anon(Method::GET, "/ping").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "");
    for path in ["/status", "/ping", "/version"] {
        let resp = s.anon(Method::HEAD, path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(resp.text().await.unwrap(), "");
    }
    let resp = s
        .root(Method::HEAD, "/v3/namespaces/default")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json; charset=utf-8");
    assert_eq!(resp.text().await.unwrap(), "");
    s.req_anon(Method::HEAD, "/v3/namespaces/default")
        .expect_status(StatusCode::UNAUTHORIZED)
        .await;
}

async fn ping_is_503_when_the_store_is_gone(db: Db) {
    let s = TestServer::start(db).await;
    s.store.close().await;
    s.req_anon(Method::GET, "/ping")
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "Storage is unavailable.")
        .await;
    // /status does not look at the store.
    assert_eq!(
        s.anon(Method::GET, "/status").send().await.unwrap().status(),
        StatusCode::OK
    );
    // An authenticated call fails cleanly, not with a panic or a hang.
    s.get("crk_unknown", "/v3/namespaces")
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, None)
        .await;
}

async fn metrics_by_route_template(db: Db) {
    let s = TestServer::start(db).await;
    s.root(Method::GET, "/v3/namespaces/default")
        .send()
        .await
        .unwrap();
    let resp = s.root(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(r#"corral_http_requests_total{route="/v3/namespaces/{ns}",method="GET",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains("corral_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"corral_store_pool_connections{state="max"}"#),
        "{text}"
    );
    let admin = s.create_tenant("acme", 0).await;
    s.get(&admin, "/metrics")
        .expect_error(StatusCode::FORBIDDEN, None)
        .await;
}

async fn openapi_and_docs_are_served(db: Db) {
    let s = TestServer::start(db).await;
    let api = s.req_anon(Method::GET, "/openapi.json").ok().await;
    assert_eq!(api["info"]["title"], "Corral");
    assert!(api["paths"]["/v2/tenants/{tenant}"]["delete"].is_object());
    let resp = s.anon(Method::GET, "/docs/").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // The page's assets are served by Corral itself, not fetched from the internet.
    assert!(!html.contains("https://"), "docs page references an external URL");
    s.req_anon(Method::GET, "/docs/swagger-ui-bundle.js")
        .expect_status(StatusCode::OK)
        .await;
}

both_stores!(
    unknown_uri_is_json_404,
    wrong_method_is_405_with_allow,
    malformed_and_mistyped_json_are_400,
    oversized_body_is_413,
    trailing_slash_and_percent_decoding,
    request_ids_are_echoed_or_generated,
    health_version_and_head,
    ping_is_503_when_the_store_is_gone,
    metrics_by_route_template,
    openapi_and_docs_are_served,
);
