//! The cross-cutting conventions of README 4-9: error bodies, 404/405, JSON parsing, body
//! limits, trailing slashes, path decoding, request ids, HEAD, health and version.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_stores;
use crate::harness::{Db, TestServer, expect_error, expect_json};

async fn unknown_uri_is_json_404(db: Db) {
    let s = TestServer::start(db).await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::POST, "/v2/clusters"),
        (Method::GET, "/v3/namespaces/default/artifacts"),
    ] {
        let resp = s.anon(method.clone(), path).send().await.unwrap();
        expect_error(
            resp,
            StatusCode::NOT_FOUND,
            Some(&format!("No route for {method} {path}.")),
        )
        .await;
    }
    // A route check comes before authentication: no credentials, still 404.
    let resp = s.root(Method::GET, "/v2/nothing/here").send().await.unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, None).await;
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
        let resp = s
            .call(&admin, Method::POST, "/v2/users")
            .body(body)
            .send()
            .await
            .unwrap();
        let err = expect_error(resp, StatusCode::BAD_REQUEST, None).await;
        let msg = err["message"].as_str().unwrap();
        assert!(msg.starts_with("Request body is not valid JSON: "), "{msg}");
    }
    // Valid JSON of the wrong type: the message names the field.
    let resp = s
        .call(&admin, Method::POST, "/v2/users")
        .json(&json!({"id": 5}))
        .send()
        .await
        .unwrap();
    let err = expect_error(resp, StatusCode::BAD_REQUEST, None).await;
    assert!(err["message"].as_str().unwrap().contains("id"), "{err}");
    let resp = s
        .call(&admin, Method::PUT, "/v3/namespaces/dev")
        .json(&json!({"config": {"a": 1}}))
        .send()
        .await
        .unwrap();
    let err = expect_error(resp, StatusCode::BAD_REQUEST, None).await;
    assert!(err["message"].as_str().unwrap().contains("config.a"), "{err}");
    let resp = s
        .call(&admin, Method::POST, "/v2/users")
        .json(&json!([1, 2]))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, None).await;
    // Coopr's own text for tenant bodies.
    let resp = s
        .root(Method::POST, "/v2/tenants")
        .json(&json!({"tenant": {"name": "x", "workers": "1"}}))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, Some("invalid input")).await;
    // No framework 415: a JSON body with a text content type is parsed.
    let resp = s
        .call(&admin, Method::POST, "/v2/users")
        .header("content-type", "text/plain")
        .body(r#"{"id": "carol"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

async fn oversized_body_is_413(db: Db) {
    let s = TestServer::start_with(db, |c| c.max_body_bytes = 1024).await;
    let big = json!({"blob": "x".repeat(2000)});
    let resp = s
        .root(Method::PUT, "/v2/profile")
        .json(&big)
        .send()
        .await
        .unwrap();
    expect_error(
        resp,
        StatusCode::PAYLOAD_TOO_LARGE,
        Some("Request body exceeds 1024 bytes."),
    )
    .await;
    // Nothing was stored.
    let resp = s.root(Method::GET, "/v2/profile").send().await.unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, Some("Profile not found.")).await;
    let small = json!({"blob": "x"});
    let resp = s
        .root(Method::PUT, "/v2/profile")
        .json(&small)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(resp, StatusCode::OK).await, small);
}

async fn trailing_slash_and_percent_decoding(db: Db) {
    let s = TestServer::start(db).await;
    let a = expect_json(
        s.root(Method::GET, "/v3/namespaces").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let b = expect_json(
        s.root(Method::GET, "/v3/namespaces/").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(a, b);
    let resp = s
        .root(Method::PUT, "/v3/namespaces/my%2Dns/")
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(resp, StatusCode::OK).await["name"], "my-ns");
    let resp = s.root(Method::GET, "/v3/namespaces/my-ns").send().await.unwrap();
    assert_eq!(expect_json(resp, StatusCode::OK).await["name"], "my-ns");
    for bad in ["/v3/namespaces/a%2Fb", "/v3/namespaces/a%0Ab"] {
        let resp = s.root(Method::GET, bad).send().await.unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, None).await;
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
    let resp = s
        .anon(Method::HEAD, "/v3/namespaces/default")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

async fn ping_is_503_when_the_store_is_gone(db: Db) {
    let s = TestServer::start(db).await;
    s.store.close().await;
    let resp = s.anon(Method::GET, "/ping").send().await.unwrap();
    expect_error(
        resp,
        StatusCode::SERVICE_UNAVAILABLE,
        Some("Storage is unavailable."),
    )
    .await;
    // /status does not look at the store.
    assert_eq!(
        s.anon(Method::GET, "/status").send().await.unwrap().status(),
        StatusCode::OK
    );
    // An authenticated call fails cleanly, not with a panic or a hang.
    let resp = s
        .call("crk_unknown", Method::GET, "/v3/namespaces")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::SERVICE_UNAVAILABLE, None).await;
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
    let resp = s.call(&admin, Method::GET, "/metrics").send().await.unwrap();
    expect_error(resp, StatusCode::FORBIDDEN, None).await;
}

async fn openapi_and_docs_are_served(db: Db) {
    let s = TestServer::start(db).await;
    let api = expect_json(
        s.anon(Method::GET, "/openapi.json").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(api["info"]["title"], "Corral");
    assert!(api["paths"]["/v2/tenants/{tenant}"]["delete"].is_object());
    let resp = s.anon(Method::GET, "/docs/").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // The page's assets are served by Corral itself, not fetched from the internet.
    assert!(!html.contains("https://"), "docs page references an external URL");
    let resp = s
        .anon(Method::GET, "/docs/swagger-ui-bundle.js")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
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
