//! CDAP namespaces (cdap-v3.md 2): `default` always there, create is idempotent, reserved
//! ids `cdap` and `system`, properties, both delete paths, and who may write.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer, expect_empty_ok, expect_error, expect_json};

const RESERVED: [&str; 2] = ["cdap", "system"];

async fn send(s: &TestServer, key: &str, method: Method, path: &str, body: Option<Value>) -> Response {
    let req = s.call(key, method, path);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    req.send().await.unwrap()
}

async fn list(s: &TestServer, key: &str) -> Value {
    expect_json(
        send(s, key, Method::GET, "/v3/namespaces", None).await,
        StatusCode::OK,
    )
    .await
}

async fn names(s: &TestServer, key: &str) -> Vec<String> {
    list(s, key)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

async fn get(s: &TestServer, key: &str, ns: &str) -> Response {
    send(s, key, Method::GET, &format!("/v3/namespaces/{ns}"), None).await
}

fn default_ns() -> Value {
    json!({"name": "default", "description": "Default Namespace", "config": {}})
}

async fn list_is_sorted_and_has_default(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    assert_eq!(list(&s, &admin).await, json!([default_ns()]));
    for (ns, description) in [
        ("zeta", "Z"),
        ("Alpha", "A"),
        ("beta", ""),
        ("dev", "D"),
        ("d_1", ""),
    ] {
        let resp = send(
            &s,
            &admin,
            Method::PUT,
            &format!("/v3/namespaces/{ns}"),
            Some(json!({"description": description})),
        )
        .await;
        expect_json(resp, StatusCode::OK).await;
    }
    let all = list(&s, &admin).await;
    let got: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["Alpha", "beta", "d_1", "default", "dev", "zeta"]);
    assert_eq!(all[3], default_ns());
    assert_eq!(all[0], json!({"name": "Alpha", "description": "A", "config": {}}));
    // The superadmin tenant has its own `default`, and sees none of acme's.
    assert_eq!(list(&s, BOOTSTRAP_KEY).await, json!([default_ns()]));
    // HEAD and the trailing slash are served too.
    let resp = send(&s, &admin, Method::HEAD, "/v3/namespaces", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let slash = expect_json(
        send(&s, &admin, Method::GET, "/v3/namespaces/", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(slash, all);
}

async fn put_creates_and_keeps_an_existing_namespace(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let dev = json!({"name": "dev", "description": "Namespace for development of applications", "config": {"scheduler.queue.name": "A"}});
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        "/v3/namespaces/dev",
        Some(json!({"description": dev["description"], "config": dev["config"]})),
    )
    .await;
    assert_eq!(expect_json(resp, StatusCode::OK).await, dev);
    assert_eq!(
        expect_json(get(&s, &admin, "dev").await, StatusCode::OK).await,
        dev
    );
    // Again, with other settings: 200 with the existing namespace, unchanged.
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        "/v3/namespaces/dev",
        Some(json!({"description": "other", "config": {"x": "y"}})),
    )
    .await;
    assert_eq!(expect_json(resp, StatusCode::OK).await, dev);
    let resp = send(&s, &admin, Method::PUT, "/v3/namespaces/dev", None).await;
    assert_eq!(expect_json(resp, StatusCode::OK).await, dev);
    assert_eq!(
        expect_json(get(&s, &admin, "dev").await, StatusCode::OK).await,
        dev
    );
    // `default` too.
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        "/v3/namespaces/default",
        Some(json!({"description": "mine"})),
    )
    .await;
    assert_eq!(expect_json(resp, StatusCode::OK).await, default_ns());
    assert_eq!(names(&s, &admin).await, ["default", "dev"]);
    // Names are case-sensitive: `Dev` is another namespace.
    let resp = send(&s, &admin, Method::PUT, "/v3/namespaces/Dev", None).await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await,
        json!({"name": "Dev", "description": "", "config": {}})
    );
    // Another tenant may have its own `dev`.
    let other = s.create_tenant("other", 0).await;
    let resp = send(
        &s,
        &other,
        Method::PUT,
        "/v3/namespaces/dev",
        Some(json!({"description": "theirs"})),
    )
    .await;
    assert_eq!(expect_json(resp, StatusCode::OK).await["description"], "theirs");
    assert_eq!(
        expect_json(get(&s, &admin, "dev").await, StatusCode::OK).await,
        dev
    );
}

async fn put_without_a_body(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let resp = send(&s, &admin, Method::PUT, "/v3/namespaces/empty", None).await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await,
        json!({"name": "empty", "description": "", "config": {}})
    );
    let resp = send(&s, &admin, Method::PUT, "/v3/namespaces/braces", Some(json!({}))).await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await,
        json!({"name": "braces", "description": "", "config": {}})
    );
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        "/v3/namespaces/conf",
        Some(json!({"config": {"a": "1", "b": ""}})),
    )
    .await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await,
        json!({"name": "conf", "description": "", "config": {"a": "1", "b": ""}})
    );
    assert_eq!(names(&s, &admin).await, ["braces", "conf", "default", "empty"]);
}

async fn invalid_ids_and_bodies_are_400(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let long = "n".repeat(256);
    for (path, id) in [
        ("a%20b", "a b"),
        (long.as_str(), long.as_str()),
        ("a.b", "a.b"),
        ("caf%C3%A9", "café"),
        ("a%2Bb", "a+b"),
    ] {
        let resp = send(&s, &admin, Method::PUT, &format!("/v3/namespaces/{path}"), None).await;
        expect_error(
            resp,
            StatusCode::BAD_REQUEST,
            Some(&format!(
                "Invalid name '{id}': use 1 to 255 characters from A-Z a-z 0-9 _ -."
            )),
        )
        .await;
    }
    // Bodies of the wrong shape create nothing.
    for body in [
        json!([]),
        json!("dev"),
        json!(null),
        json!({"description": 5}),
        json!({"description": ["a"]}),
        json!({"config": "x"}),
        json!({"config": ["a"]}),
        json!({"config": {"a": 1}}),
        json!({"config": {"a": null}}),
        json!({"config": {"a": {"b": "c"}}}),
    ] {
        let resp = send(&s, &admin, Method::PUT, "/v3/namespaces/dev", Some(body.clone())).await;
        let err = expect_error(resp, StatusCode::BAD_REQUEST, None).await;
        assert!(err["message"].is_string(), "{body}");
    }
    let resp = s
        .call(&admin, Method::PUT, "/v3/namespaces/dev")
        .body("{\"description\": ")
        .send()
        .await
        .unwrap();
    let err = expect_error(resp, StatusCode::BAD_REQUEST, None).await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("Request body is not valid JSON: "),
        "{err}"
    );
    assert_eq!(names(&s, &admin).await, ["default"]);
    // The longest valid id works.
    let id = "n".repeat(255);
    let resp = send(&s, &admin, Method::PUT, &format!("/v3/namespaces/{id}"), None).await;
    assert_eq!(expect_json(resp, StatusCode::OK).await["name"], json!(id));
    expect_json(get(&s, &admin, &id).await, StatusCode::OK).await;
}

async fn reserved_namespaces(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for ns in RESERVED {
        let path = format!("/v3/namespaces/{ns}");
        let resp = send(&s, &admin, Method::PUT, &path, Some(json!({"description": "x"}))).await;
        expect_error(
            resp,
            StatusCode::BAD_REQUEST,
            Some(&format!(
                "Cannot create the namespace '{ns}'. '{ns}' is a reserved namespace."
            )),
        )
        .await;
        let resp = send(&s, &admin, Method::PUT, &path, None).await;
        expect_error(resp, StatusCode::BAD_REQUEST, None).await;
        let reserved = format!("Namespace '{ns}' is reserved.");
        expect_error(get(&s, &admin, ns).await, StatusCode::FORBIDDEN, Some(&reserved)).await;
        let resp = send(
            &s,
            &admin,
            Method::PUT,
            &format!("{path}/properties"),
            Some(json!({"description": "x"})),
        )
        .await;
        expect_error(resp, StatusCode::FORBIDDEN, Some(&reserved)).await;
        let cannot = format!("Reserved namespace '{ns}' cannot be deleted.");
        for delete in [path.clone(), format!("/v3/unrecoverable/namespaces/{ns}")] {
            let resp = send(&s, &admin, Method::DELETE, &delete, None).await;
            expect_error(resp, StatusCode::FORBIDDEN, Some(&cannot)).await;
        }
    }
    // For the superadmin too.
    expect_error(
        get(&s, BOOTSTRAP_KEY, "system").await,
        StatusCode::FORBIDDEN,
        Some("Namespace 'system' is reserved."),
    )
    .await;
    assert_eq!(names(&s, &admin).await, ["default"]);
}

async fn unknown_namespace_is_404(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    expect_error(
        get(&s, &admin, "dev").await,
        StatusCode::NOT_FOUND,
        Some("Namespace 'dev' not found."),
    )
    .await;
    // Another tenant's namespace does not exist here.
    let other = s.create_tenant("other", 0).await;
    let resp = send(&s, &other, Method::PUT, "/v3/namespaces/theirs", None).await;
    expect_json(resp, StatusCode::OK).await;
    expect_error(
        get(&s, &admin, "theirs").await,
        StatusCode::NOT_FOUND,
        Some("Namespace 'theirs' not found."),
    )
    .await;
    let resp = send(&s, &admin, Method::DELETE, "/v3/namespaces/theirs", None).await;
    expect_error(resp, StatusCode::NOT_FOUND, Some("Namespace 'theirs' not found.")).await;
    expect_json(get(&s, &other, "theirs").await, StatusCode::OK).await;
}

async fn properties_replace_the_fields_given(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        "/v3/namespaces/dev",
        Some(json!({"description": "A", "config": {"k1": "v1", "k2": "v2"}})),
    )
    .await;
    expect_json(resp, StatusCode::OK).await;
    let props = "/v3/namespaces/dev/properties";

    // Description only: the config stays.
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        props,
        Some(json!({"description": "Dev apps"})),
    )
    .await;
    let expected = json!({"name": "dev", "description": "Dev apps", "config": {"k1": "v1", "k2": "v2"}});
    assert_eq!(expect_json(resp, StatusCode::OK).await, expected);
    assert_eq!(
        expect_json(get(&s, &admin, "dev").await, StatusCode::OK).await,
        expected
    );
    // Config: the whole map is replaced; the description stays.
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        props,
        Some(json!({"config": {"k3": "v3"}})),
    )
    .await;
    let expected = json!({"name": "dev", "description": "Dev apps", "config": {"k3": "v3"}});
    assert_eq!(expect_json(resp, StatusCode::OK).await, expected);
    assert_eq!(
        expect_json(get(&s, &admin, "dev").await, StatusCode::OK).await,
        expected
    );
    // Nothing given: nothing changes.
    let resp = send(&s, &admin, Method::PUT, props, Some(json!({}))).await;
    assert_eq!(expect_json(resp, StatusCode::OK).await, expected);
    // Both, including an empty description and an empty map.
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        props,
        Some(json!({"description": "", "config": {}})),
    )
    .await;
    let cleared = json!({"name": "dev", "description": "", "config": {}});
    assert_eq!(expect_json(resp, StatusCode::OK).await, cleared);
    assert_eq!(
        expect_json(get(&s, &admin, "dev").await, StatusCode::OK).await,
        cleared
    );
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        props,
        Some(json!({"description": "back", "config": {"q": "1"}})),
    )
    .await;
    let back = expect_json(resp, StatusCode::OK).await;

    // Wrong types: 400, nothing changes.
    for body in [
        json!([]),
        json!("x"),
        json!({"description": 5}),
        json!({"description": null, "config": 3}),
        json!({"config": []}),
        json!({"config": {"a": true}}),
        json!({"config": {"a": 1}}),
    ] {
        let resp = send(&s, &admin, Method::PUT, props, Some(body.clone())).await;
        let err = expect_error(resp, StatusCode::BAD_REQUEST, None).await;
        assert!(err["message"].is_string(), "{body}");
    }
    assert_eq!(
        expect_json(get(&s, &admin, "dev").await, StatusCode::OK).await,
        back
    );
    // Unknown namespace.
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        "/v3/namespaces/ghost/properties",
        Some(json!({"description": "x"})),
    )
    .await;
    expect_error(resp, StatusCode::NOT_FOUND, Some("Namespace 'ghost' not found.")).await;
    expect_error(get(&s, &admin, "ghost").await, StatusCode::NOT_FOUND, None).await;
    // `default` can be edited.
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        "/v3/namespaces/default/properties",
        Some(json!({"config": {"scheduler.queue.name": "q"}})),
    )
    .await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await,
        json!({"name": "default", "description": "Default Namespace", "config": {"scheduler.queue.name": "q"}})
    );
}

async fn delete_removes_a_namespace_by_either_path(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for ns in ["a", "b", "c"] {
        let resp = send(
            &s,
            &admin,
            Method::PUT,
            &format!("/v3/namespaces/{ns}"),
            Some(json!({"description": "old", "config": {"k": "v"}})),
        )
        .await;
        expect_json(resp, StatusCode::OK).await;
    }
    expect_empty_ok(send(&s, &admin, Method::DELETE, "/v3/namespaces/a", None).await).await;
    expect_error(
        get(&s, &admin, "a").await,
        StatusCode::NOT_FOUND,
        Some("Namespace 'a' not found."),
    )
    .await;
    for path in ["/v3/namespaces/a", "/v3/unrecoverable/namespaces/a"] {
        let resp = send(&s, &admin, Method::DELETE, path, None).await;
        expect_error(resp, StatusCode::NOT_FOUND, Some("Namespace 'a' not found.")).await;
    }
    expect_empty_ok(send(&s, &admin, Method::DELETE, "/v3/unrecoverable/namespaces/b", None).await).await;
    expect_error(
        get(&s, &admin, "b").await,
        StatusCode::NOT_FOUND,
        Some("Namespace 'b' not found."),
    )
    .await;
    assert_eq!(names(&s, &admin).await, ["c", "default"]);
    // A deleted namespace can be created anew, with the new settings.
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        "/v3/namespaces/a",
        Some(json!({"description": "new"})),
    )
    .await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await,
        json!({"name": "a", "description": "new", "config": {}})
    );
    // Deleting in one tenant leaves another tenant's namespace of the same name.
    let other = s.create_tenant("other", 0).await;
    let resp = send(&s, &other, Method::PUT, "/v3/namespaces/c", None).await;
    expect_json(resp, StatusCode::OK).await;
    expect_empty_ok(send(&s, &admin, Method::DELETE, "/v3/namespaces/c", None).await).await;
    expect_json(get(&s, &other, "c").await, StatusCode::OK).await;
    // Unknown and invalid ids.
    let resp = send(
        &s,
        &admin,
        Method::DELETE,
        "/v3/unrecoverable/namespaces/ghost",
        None,
    )
    .await;
    expect_error(resp, StatusCode::NOT_FOUND, Some("Namespace 'ghost' not found.")).await;
}

async fn deleting_default_keeps_it(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for path in ["/v3/namespaces/default", "/v3/unrecoverable/namespaces/default"] {
        expect_empty_ok(send(&s, &admin, Method::DELETE, path, None).await).await;
        let got = expect_json(get(&s, &admin, "default").await, StatusCode::OK).await;
        assert_eq!(got["name"], "default");
        assert_eq!(names(&s, &admin).await, ["default"]);
    }
    // Twice in a row is fine: `default` never stops existing.
    expect_empty_ok(send(&s, &admin, Method::DELETE, "/v3/namespaces/default", None).await).await;
    expect_json(get(&s, &admin, "default").await, StatusCode::OK).await;
}

async fn viewer_reads_but_cannot_write(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let viewer = s.create_user(&admin, "vic", "viewer").await;
    let user = s.create_user(&admin, "ursula", "user").await;
    let resp = send(
        &s,
        &admin,
        Method::PUT,
        "/v3/namespaces/dev",
        Some(json!({"description": "D", "config": {"k": "v"}})),
    )
    .await;
    let dev = expect_json(resp, StatusCode::OK).await;

    // Reads.
    assert_eq!(names(&s, &viewer).await, ["default", "dev"]);
    assert_eq!(
        expect_json(get(&s, &viewer, "dev").await, StatusCode::OK).await,
        dev
    );
    expect_error(
        get(&s, &viewer, "ghost").await,
        StatusCode::NOT_FOUND,
        Some("Namespace 'ghost' not found."),
    )
    .await;
    // Writes: 403, also for namespaces that do not exist (permission before existence).
    for (method, path, body) in [
        (
            Method::PUT,
            "/v3/namespaces/new",
            Some(json!({"description": "x"})),
        ),
        (Method::PUT, "/v3/namespaces/new", None),
        (Method::PUT, "/v3/namespaces/dev", None),
        (
            Method::PUT,
            "/v3/namespaces/dev/properties",
            Some(json!({"description": "x"})),
        ),
        (
            Method::PUT,
            "/v3/namespaces/ghost/properties",
            Some(json!({"description": "x"})),
        ),
        (Method::DELETE, "/v3/namespaces/dev", None),
        (Method::DELETE, "/v3/unrecoverable/namespaces/dev", None),
        (Method::DELETE, "/v3/namespaces/ghost", None),
        (Method::DELETE, "/v3/namespaces/default", None),
    ] {
        let resp = send(&s, &viewer, method.clone(), path, body).await;
        let err = expect_error(resp, StatusCode::FORBIDDEN, None).await;
        assert!(err["message"].is_string(), "{method} {path}");
    }
    // Nothing changed.
    assert_eq!(names(&s, &viewer).await, ["default", "dev"]);
    assert_eq!(
        expect_json(get(&s, &viewer, "dev").await, StatusCode::OK).await,
        dev
    );

    // A user may write.
    let resp = send(&s, &user, Method::PUT, "/v3/namespaces/new", None).await;
    expect_json(resp, StatusCode::OK).await;
    let resp = send(
        &s,
        &user,
        Method::PUT,
        "/v3/namespaces/dev/properties",
        Some(json!({"description": "by user"})),
    )
    .await;
    assert_eq!(expect_json(resp, StatusCode::OK).await["description"], "by user");
    expect_empty_ok(send(&s, &user, Method::DELETE, "/v3/namespaces/new", None).await).await;
    expect_empty_ok(
        send(
            &s,
            &user,
            Method::DELETE,
            "/v3/unrecoverable/namespaces/dev",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(names(&s, &viewer).await, ["default"]);
}

both_stores!(
    list_is_sorted_and_has_default,
    put_creates_and_keeps_an_existing_namespace,
    put_without_a_body,
    invalid_ids_and_bodies_are_400,
    reserved_namespaces,
    unknown_namespace_is_404,
    properties_replace_the_fields_given,
    delete_removes_a_namespace_by_either_path,
    deleting_default_keeps_it,
    viewer_reads_but_cannot_write,
);
