//! Hardening (issue 13): a cloud that cannot start leaves the server up and is retried; a
//! Commissaire body with an unknown field is refused naming it; `/metrics` with a read-only
//! scrape credential; a `user` rotates its own keys; every status an operation answers is
//! declared in the served OpenAPI document.

use std::time::{Duration, Instant};

use corral_core::clouds::{CloudConfig, CloudOptions, FlavorConfig, object_id};
use corral_types::{CloudId, CloudKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer, expect_error, expect_json};
use crate::instances::{Ids, ids, launch, mock_cloud};

/// A `qemu` cloud `east` whose program and image directory are `bin/qemu-system-x86_64` and
/// `images` under `dir`, which the test creates later.
fn qemu_cloud(dir: &std::path::Path) -> CloudConfig {
    CloudConfig {
        id: CloudId::from_trusted("east"),
        name: None,
        tenant: None,
        kind: CloudKind::from_trusted("qemu"),
        enabled: true,
        endpoint: None,
        identity: None,
        credential: None,
        options: CloudOptions {
            flavors: vec![FlavorConfig {
                name: "small".into(),
                ram: 256,
                vcpus: 1,
                root_disk: 1,
                ephemeral_disk: 0,
                has_swap: false,
                is_public: true,
                notes: String::new(),
            }],
            driver: json!({
                "image_dir": dir.join("images"),
                "state_dir": dir.join("state"),
                "accel": "tcg",
                "qemu_binary": dir.join("bin/qemu-system-x86_64"),
                "qemu_img": "/bin/sh",
            })
            .as_object()
            .cloned()
            .unwrap(),
            ..CloudOptions::default()
        },
    }
}

/// `/operations`: its body and the unavailable clouds of its header (id → reason).
async fn operations(s: &TestServer, key: &str) -> (Value, Value) {
    let resp = s.call(key, Method::GET, "/operations").send().await.unwrap();
    let header = resp
        .headers()
        .get("x-corral-unavailable-clouds")
        .map(|v| serde_json::from_slice(v.as_bytes()).unwrap())
        .unwrap_or(json!({}));
    (expect_json(resp, StatusCode::OK).await, header)
}

/// Launches one instance of flavor `small` into `east`'s project with image `image`.
async fn launch_east(s: &TestServer, key: &str, tenant: &str, image: &str) -> Value {
    let t = s.store.get_tenant(tenant).await.unwrap().unwrap().id;
    let east = CloudId::from_trusted("east");
    let body = json!([{"name": "vm-1", "projectId": object_id(&t, &east, "project", t.as_str()),
        "flavor": {"id": object_id(&t, &east, "flavor", "small")}, "image": {"id": image}}]);
    let resp = s
        .call(key, Method::POST, "/instances")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await[0].clone()
}

/// Polls `/operations` until `east` is no longer (or still) reported, within `limit`.
async fn wait_east(
    s: &TestServer,
    key: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> (Value, Value) {
    let start = Instant::now();
    loop {
        let (body, header) = operations(s, key).await;
        if done(&header) {
            return (body, header);
        }
        assert!(start.elapsed() < limit, "east did not change: {header}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn an_unavailable_cloud_is_retried(db: Db) {
    let dir = tempfile::Builder::new().prefix("cr").tempdir_in("/tmp").unwrap();
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    let s = TestServer::start_with(db, |c| {
        c.clouds = vec![mock_cloud(|_| {}), qemu_cloud(dir.path())];
        c.cloud_retry_interval_ms = 200;
    })
    .await;
    let k = s.create_tenant("acme", 10).await;

    // The server serves; the cloud is named with the reason, the others work.
    let (body, header) = operations(&s, &k).await;
    assert!(body.get("mock").is_some() && body.get("qemu").is_none(), "{body}");
    let why = header["east"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("qemu-system-x86_64"), "{header}");
    let out = launch_east(&s, &k, "acme", "whatever").await;
    assert_eq!(out["status"], 409, "{out}");
    assert_eq!(out["message"], format!("Cloud east is unavailable: {why}"));
    let mock: Ids = ids(&s, "acme").await;
    let id = launch(&s, &k, &mock, "m-1").await;
    crate::instances::wait_state(&s, &k, &id, "launched").await;

    // The program appears: the next retry finds the image directory missing.
    std::os::unix::fs::symlink("/bin/sh", dir.path().join("bin/qemu-system-x86_64")).unwrap();
    let (_, header) = wait_east(&s, &k, Duration::from_secs(10), |h| {
        h["east"].as_str().is_some_and(|w| w.contains("image directory"))
    })
    .await;
    let why = header["east"].as_str().unwrap().to_string();
    assert!(
        why.contains(&dir.path().join("images").display().to_string()),
        "{why}"
    );
    let out = launch_east(&s, &k, "acme", "whatever").await;
    assert_eq!(out["message"], format!("Cloud east is unavailable: {why}"));

    // The directory appears: the cloud is available, launches get past the check (to the image).
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let (body, _) = wait_east(&s, &k, Duration::from_secs(10), |h| h.get("east").is_none()).await;
    assert!(
        body["qemu"]
            .as_array()
            .is_some_and(|o| o.contains(&json!("addInstance"))),
        "{body}"
    );
    let out = launch_east(&s, &k, "acme", "whatever").await;
    assert_eq!(
        out,
        json!({"id": "", "status": 404, "message": "Image whatever does not exist"})
    );
    s.stop().await;
}

/// A misspelled field of a Commissaire body is refused, naming it, and nothing is made.
async fn commissaire_refuses_unknown_fields(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.create_tenant("acme", 10).await;
    for (path, body, field) in [
        ("/api/v0/cluster/prod", json!({"netwrk": "default"}), "netwrk"),
        (
            "/api/v0/network/n1",
            json!({"type": "flannel_etcd", "option": {}}),
            "option",
        ),
        (
            "/api/v0/containermanager/c1",
            json!({"type": "trivial", "opts": {}}),
            "opts",
        ),
        (
            "/api/v0/host/10.0.0.5",
            json!({"ssh_priv_key": "eA==", "remote_usr": "root"}),
            "remote_usr",
        ),
        (
            "/api/v0/cluster/prod/upgrade",
            json!({"version": "1", "max_paralel": 2}),
            "max_paralel",
        ),
    ] {
        let resp = s.call(&k, Method::PUT, path).json(&body).send().await.unwrap();
        let err = expect_error(resp, StatusCode::BAD_REQUEST, None).await;
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("unknown field `{field}`")),
            "{path}: {message}"
        );
    }
    for path in [
        "/api/v0/cluster/prod",
        "/api/v0/network/n1",
        "/api/v0/containermanager/c1",
        "/api/v0/host/10.0.0.5",
    ] {
        let resp = s.call(&k, Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // The same bodies spelled right are accepted.
    let resp = s
        .call(&k, Method::PUT, "/api/v0/cluster/prod")
        .json(&json!({"network": "default"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    s.stop().await;
}

const SCRAPE: &str = "scrape-token-0123456789-abcdefghijklmnop";

/// `/metrics` answers the scrape token and the superadmin, nobody else; the token opens nothing
/// but `/metrics`.
async fn metrics_take_a_scrape_token(db: Db) {
    let s = TestServer::start_with(db, |c| c.metrics_token = Some(SCRAPE.into())).await;
    let admin = s.create_tenant("acme", 10).await;
    let user = s.create_user(&admin, "ursula", "user").await;
    for (who, key) in [("scraper", SCRAPE), ("superadmin", BOOTSTRAP_KEY)] {
        let resp = s.call(key, Method::GET, "/metrics").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{who}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("corral_store_pool_connections"), "{who}: {text}");
        assert!(!text.contains(SCRAPE), "{who}");
    }
    for (who, key, status) in [
        ("tenant admin", admin.as_str(), StatusCode::FORBIDDEN),
        ("user", user.as_str(), StatusCode::FORBIDDEN),
        (
            "wrong token",
            "scrape-token-0123456789-abcdefghijklmnoq",
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let resp = s.call(key, Method::GET, "/metrics").send().await.unwrap();
        let err = expect_error(resp, status, None).await;
        assert!(err["message"].is_string(), "{who}");
    }
    let resp = s.anon(Method::GET, "/metrics").send().await.unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, None).await;
    for path in ["/v3/namespaces", "/token", "/v2/tenants", "/operations"] {
        let resp = s.call(SCRAPE, Method::GET, path).send().await.unwrap();
        expect_error(resp, StatusCode::UNAUTHORIZED, None).await;
    }
    s.stop().await;
}

/// A `user` creates and revokes its own keys; another's keys and a viewer's own stay an
/// admin's business.
async fn a_user_rotates_its_own_keys(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 10).await;
    let old = s.create_user(&admin, "ursula", "user").await;
    let viewer = s.create_user(&admin, "vera", "viewer").await;

    let resp = s
        .call(&old, Method::POST, "/v2/users/ursula/apikeys")
        .json(&json!({"description": "rotated"}))
        .send()
        .await
        .unwrap();
    let created = expect_json(resp, StatusCode::CREATED).await;
    let new = created["key"].as_str().unwrap().to_string();
    let resp = s
        .call(&new, Method::GET, "/v2/users/ursula/apikeys")
        .send()
        .await
        .unwrap();
    let keys = expect_json(resp, StatusCode::OK).await;
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let old_id = keys
        .iter()
        .find(|k| old.starts_with(k["prefix"].as_str().unwrap()) && k["id"] != created["id"])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = s
        .call(&new, Method::GET, &format!("/v2/users/ursula/apikeys/{old_id}"))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    let resp = s
        .call(
            &new,
            Method::DELETE,
            &format!("/v2/users/ursula/apikeys/{old_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = s.call(&old, Method::GET, "/v3/namespaces").send().await.unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, None).await;
    let resp = s.call(&new, Method::GET, "/v3/namespaces").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Not another user's keys, whatever the method; not as a viewer.
    let resp = s
        .call(&admin, Method::GET, "/v2/users/admin/apikeys")
        .send()
        .await
        .unwrap();
    let admin_key = expect_json(resp, StatusCode::OK).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let must = Some("user unauthorized, must be admin.");
    for (key, method, path) in [
        (&new, Method::GET, "/v2/users/admin/apikeys".to_string()),
        (&new, Method::POST, "/v2/users/admin/apikeys".to_string()),
        (&new, Method::POST, "/v2/users/vera/apikeys".to_string()),
        (&new, Method::GET, format!("/v2/users/admin/apikeys/{admin_key}")),
        (
            &new,
            Method::DELETE,
            format!("/v2/users/admin/apikeys/{admin_key}"),
        ),
        (&viewer, Method::POST, "/v2/users/vera/apikeys".to_string()),
        (&viewer, Method::GET, "/v2/users/vera/apikeys".to_string()),
    ] {
        let resp = s
            .call(key, method.clone(), &path)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::FORBIDDEN, must).await;
    }
    let resp = s
        .call(&admin, Method::GET, "/v2/users/admin/apikeys")
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_json(resp, StatusCode::OK).await.as_array().unwrap().len(),
        1
    );
    let resp = s
        .call(&admin, Method::GET, "/v2/users/vera/apikeys")
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_json(resp, StatusCode::OK).await.as_array().unwrap().len(),
        1
    );
    s.stop().await;
}

/// Every operation of the served document declares the statuses the shared machinery answers:
/// 400 where it takes a path parameter, a query or a body; 401 and 403 where it needs
/// credentials; 404 where a path parameter names an object; 413 where it takes a body; each
/// error with the contract's error body, and at least one success.
async fn every_status_is_declared(db: Db) {
    let s = TestServer::start(db).await;
    let api = expect_json(
        s.anon(Method::GET, "/openapi.json").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let error_body = json!({"$ref": "#/components/schemas/ErrorBody"});
    let mut missing = Vec::new();
    let mut count = 0;
    for (path, item) in api["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                continue;
            }
            count += 1;
            let responses = op["responses"].as_object().unwrap();
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let body = op.get("requestBody").is_some();
            let public = op["security"]
                .as_array()
                .is_some_and(|reqs| reqs.iter().all(|r| r == &json!({})));
            let mut want = Vec::new();
            if !params.is_empty() || body {
                want.push("400");
            }
            if !public {
                want.extend(["401", "403"]);
            }
            if params.iter().any(|p| p["in"] == "path") {
                want.push("404");
            }
            if body {
                want.push("413");
            }
            for status in want {
                if !responses.contains_key(status) {
                    missing.push(format!("{method} {path}: {status}"));
                }
            }
            if !responses.keys().any(|k| k.starts_with('2') || k.starts_with('3')) {
                missing.push(format!("{method} {path}: no success"));
            }
            for (status, r) in responses {
                if status.as_str() >= "400" && r["content"]["application/json"]["schema"] != error_body {
                    missing.push(format!("{method} {path}: {status} without the error body"));
                }
            }
        }
    }
    assert!(count > 100, "{count} operations");
    assert!(missing.is_empty(), "undeclared: {missing:#?}");
    s.stop().await;
}

/// A NUL character in a body (which PostgreSQL cannot store) is the same 400 on both stores,
/// not a 500 from deep in a query (found by schemathesis on PostgreSQL).
async fn a_nul_in_a_body_is_a_400(db: Db) {
    let s = TestServer::start_with(db, |c| c.clouds = vec![mock_cloud(|_| {})]).await;
    let k = s.create_tenant("acme", 10).await;
    let nul = Some("Request body contains a NUL character (\\u0000), which Corral does not accept.");
    for (method, path, body) in [
        (Method::PUT, "/instances/pause", r#"["a\u0000b"]"#),
        (Method::POST, "/images/delete", r#"["\u0000"]"#),
        (Method::PUT, "/v2/profile", r#"{"x": "\u0000"}"#),
        (
            Method::POST,
            "/v2/users",
            r#"{"id": "bob", "role": "user", "description": "\u0000"}"#,
        ),
    ] {
        let resp = s.call(&k, method, path).body(body).send().await.unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, nul).await;
    }
    // An escaped backslash before `u0000` is no NUL.
    let resp = s
        .call(&k, Method::PUT, "/instances/pause")
        .body(r#"["a\\u0000b"]"#)
        .send()
        .await
        .unwrap();
    let out = expect_json(resp, StatusCode::OK).await;
    assert_eq!(out[0]["status"], 404, "{out}");
    s.stop().await;
}

both_stores!(
    a_nul_in_a_body_is_a_400,
    every_status_is_declared,
    an_unavailable_cloud_is_retried,
    commissaire_refuses_unknown_fields,
    metrics_take_a_scrape_token,
    a_user_rotates_its_own_keys,
);
