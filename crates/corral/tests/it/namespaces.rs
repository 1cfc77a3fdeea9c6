//! CDAP namespaces (cdap-v3.md 2): `default` always there, create is idempotent, reserved
//! ids `cdap` and `system`, properties, both delete paths, and who may write.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer};
use crate::helpers::expect_each_error;

const RESERVED: [&str; 2] = ["cdap", "system"];

async fn list(s: &TestServer, key: &str) -> Value {
    s.get(key, "/v3/namespaces").ok().await
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
        s.put(&admin, &format!("/v3/namespaces/{ns}"))
            .case(format!("{description:?}"))
            .json(json!({"description": description}))
            .ok()
            .await;
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
    s.req(&admin, Method::HEAD, "/v3/namespaces")
        .expect_status(StatusCode::OK)
        .await;
    let slash = s.get(&admin, "/v3/namespaces/").ok().await;
    assert_eq!(slash, all);
}

async fn put_creates_and_keeps_an_existing_namespace(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let dev = json!({"name": "dev", "description": "Namespace for development of applications", "config": {"scheduler.queue.name": "A"}});
    assert_eq!(
        s.put(&admin, "/v3/namespaces/dev")
            .json(json!({"description": dev["description"], "config": dev["config"]}))
            .ok()
            .await,
        dev
    );
    assert_eq!(s.get(&admin, "/v3/namespaces/dev").ok().await, dev);
    // Again, with other settings or none: 200 with the existing namespace, unchanged.
    for body in [Some(json!({"description": "other", "config": {"x": "y"}})), None] {
        assert_eq!(
            s.put(&admin, "/v3/namespaces/dev")
                .json_opt(body.clone())
                .ok()
                .await,
            dev,
            "{body:?}"
        );
    }
    assert_eq!(s.get(&admin, "/v3/namespaces/dev").ok().await, dev);
    // `default` too.
    assert_eq!(
        s.put(&admin, "/v3/namespaces/default")
            .json(json!({"description": "mine"}))
            .ok()
            .await,
        default_ns()
    );
    assert_eq!(names(&s, &admin).await, ["default", "dev"]);
    // Names are case-sensitive: `Dev` is another namespace.
    assert_eq!(
        s.put(&admin, "/v3/namespaces/Dev").ok().await,
        json!({"name": "Dev", "description": "", "config": {}})
    );
    // Another tenant may have its own `dev`.
    let other = s.create_tenant("other", 0).await;
    assert_eq!(
        s.put(&other, "/v3/namespaces/dev")
            .json(json!({"description": "theirs"}))
            .ok()
            .await["description"],
        "theirs"
    );
    assert_eq!(s.get(&admin, "/v3/namespaces/dev").ok().await, dev);
}

async fn put_without_a_body(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for (name, body, config) in [
        ("empty", None, json!({})),
        ("braces", Some(json!({})), json!({})),
        (
            "conf",
            Some(json!({"config": {"a": "1", "b": ""}})),
            json!({"a": "1", "b": ""}),
        ),
    ] {
        assert_eq!(
            s.put(&admin, &format!("/v3/namespaces/{name}"))
                .json_opt(body)
                .ok()
                .await,
            json!({"name": name, "description": "", "config": config})
        );
    }
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
        s.put(&admin, &format!("/v3/namespaces/{path}"))
            .case(format!("{id:?}"))
            .expect_error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid name '{id}': use 1 to 255 characters from A-Z a-z 0-9 _ -."),
            )
            .await;
    }
    // Bodies of the wrong shape create nothing.
    s.expect_bad_bodies(
        &admin,
        Method::PUT,
        "/v3/namespaces/dev",
        [
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
        ],
    )
    .await;
    s.put(&admin, "/v3/namespaces/dev")
        .with(|r| r.body("{\"description\": "))
        .expect_not_json()
        .await;
    assert_eq!(names(&s, &admin).await, ["default"]);
    // The longest valid id works.
    let id = "n".repeat(255);
    assert_eq!(
        s.put(&admin, &format!("/v3/namespaces/{id}")).ok().await["name"],
        json!(id)
    );
    s.get(&admin, &format!("/v3/namespaces/{id}")).ok().await;
}

async fn reserved_namespaces(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for ns in RESERVED {
        let path = format!("/v3/namespaces/{ns}");
        s.put(&admin, &path)
            .case(format!("{ns:?}"))
            .json(json!({"description": "x"}))
            .expect_error(
                StatusCode::BAD_REQUEST,
                &format!("Cannot create the namespace '{ns}'. '{ns}' is a reserved namespace."),
            )
            .await;
        s.put(&admin, &path)
            .case(format!("{ns:?}"))
            .expect_error(StatusCode::BAD_REQUEST, None)
            .await;
        let reserved = format!("Namespace '{ns}' is reserved.");
        s.get(&admin, &format!("/v3/namespaces/{ns}"))
            .expect_error(StatusCode::FORBIDDEN, &reserved)
            .await;
        s.put(&admin, &format!("{path}/properties"))
            .case(format!("{ns:?}"))
            .json(json!({"description": "x"}))
            .expect_error(StatusCode::FORBIDDEN, &reserved)
            .await;
        let cannot = format!("Reserved namespace '{ns}' cannot be deleted.");
        for delete in [path.clone(), format!("/v3/unrecoverable/namespaces/{ns}")] {
            s.delete(&admin, &delete)
                .case(format!("{ns:?}"))
                .expect_error(StatusCode::FORBIDDEN, &cannot)
                .await;
        }
    }
    // For the superadmin too.
    s.get(BOOTSTRAP_KEY, "/v3/namespaces/system")
        .expect_error(StatusCode::FORBIDDEN, "Namespace 'system' is reserved.")
        .await;
    assert_eq!(names(&s, &admin).await, ["default"]);
}

async fn unknown_namespace_is_404(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    s.get(&admin, "/v3/namespaces/dev")
        .expect_error(StatusCode::NOT_FOUND, "Namespace 'dev' not found.")
        .await;
    // Another tenant's namespace does not exist here.
    let other = s.create_tenant("other", 0).await;
    s.put(&other, "/v3/namespaces/theirs").ok().await;
    expect_each_error(
        [
            s.get(&admin, "/v3/namespaces/theirs"),
            s.delete(&admin, "/v3/namespaces/theirs"),
        ],
        StatusCode::NOT_FOUND,
        "Namespace 'theirs' not found.",
    )
    .await;
    s.get(&other, "/v3/namespaces/theirs").ok().await;
}

async fn properties_replace_the_fields_given(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    s.put(&admin, "/v3/namespaces/dev")
        .json(json!({"description": "A", "config": {"k1": "v1", "k2": "v2"}}))
        .ok()
        .await;
    let props = "/v3/namespaces/dev/properties";

    // Description only: the config stays.
    let expected = json!({"name": "dev", "description": "Dev apps", "config": {"k1": "v1", "k2": "v2"}});
    assert_eq!(
        s.put(&admin, props)
            .json(json!({"description": "Dev apps"}))
            .ok()
            .await,
        expected
    );
    assert_eq!(s.get(&admin, "/v3/namespaces/dev").ok().await, expected);
    // Config: the whole map is replaced; the description stays.
    let expected = json!({"name": "dev", "description": "Dev apps", "config": {"k3": "v3"}});
    assert_eq!(
        s.put(&admin, props)
            .json(json!({"config": {"k3": "v3"}}))
            .ok()
            .await,
        expected
    );
    assert_eq!(s.get(&admin, "/v3/namespaces/dev").ok().await, expected);
    // Nothing given: nothing changes.
    assert_eq!(s.put(&admin, props).json(json!({})).ok().await, expected);
    // Both, including an empty description and an empty map.
    let cleared = json!({"name": "dev", "description": "", "config": {}});
    assert_eq!(
        s.put(&admin, props)
            .json(json!({"description": "", "config": {}}))
            .ok()
            .await,
        cleared
    );
    assert_eq!(s.get(&admin, "/v3/namespaces/dev").ok().await, cleared);
    let back = s
        .put(&admin, props)
        .json(json!({"description": "back", "config": {"q": "1"}}))
        .ok()
        .await;

    // Wrong types: 400, nothing changes.
    s.expect_bad_bodies(
        &admin,
        Method::PUT,
        props,
        [
            json!([]),
            json!("x"),
            json!({"description": 5}),
            json!({"description": null, "config": 3}),
            json!({"config": []}),
            json!({"config": {"a": true}}),
            json!({"config": {"a": 1}}),
        ],
    )
    .await;
    assert_eq!(s.get(&admin, "/v3/namespaces/dev").ok().await, back);
    // Unknown namespace.
    s.put(&admin, "/v3/namespaces/ghost/properties")
        .json(json!({"description": "x"}))
        .expect_error(StatusCode::NOT_FOUND, "Namespace 'ghost' not found.")
        .await;
    s.get(&admin, "/v3/namespaces/ghost")
        .expect_error(StatusCode::NOT_FOUND, None)
        .await;
    // `default` can be edited.
    assert_eq!(
        s.put(&admin, "/v3/namespaces/default/properties")
            .json(json!({"config": {"scheduler.queue.name": "q"}}))
            .ok()
            .await,
        json!({"name": "default", "description": "Default Namespace", "config": {"scheduler.queue.name": "q"}})
    );
}

async fn delete_removes_a_namespace_by_either_path(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for ns in ["a", "b", "c"] {
        s.put(&admin, &format!("/v3/namespaces/{ns}"))
            .json(json!({"description": "old", "config": {"k": "v"}}))
            .ok()
            .await;
    }
    s.delete(&admin, "/v3/namespaces/a").expect_empty_ok().await;
    s.get(&admin, "/v3/namespaces/a")
        .expect_error(StatusCode::NOT_FOUND, "Namespace 'a' not found.")
        .await;
    for path in ["/v3/namespaces/a", "/v3/unrecoverable/namespaces/a"] {
        s.delete(&admin, path)
            .expect_error(StatusCode::NOT_FOUND, "Namespace 'a' not found.")
            .await;
    }
    s.delete(&admin, "/v3/unrecoverable/namespaces/b")
        .expect_empty_ok()
        .await;
    s.get(&admin, "/v3/namespaces/b")
        .expect_error(StatusCode::NOT_FOUND, "Namespace 'b' not found.")
        .await;
    assert_eq!(names(&s, &admin).await, ["c", "default"]);
    // A deleted namespace can be created anew, with the new settings.
    assert_eq!(
        s.put(&admin, "/v3/namespaces/a")
            .json(json!({"description": "new"}))
            .ok()
            .await,
        json!({"name": "a", "description": "new", "config": {}})
    );
    // Deleting in one tenant leaves another tenant's namespace of the same name.
    let other = s.create_tenant("other", 0).await;
    s.put(&other, "/v3/namespaces/c").ok().await;
    s.delete(&admin, "/v3/namespaces/c").expect_empty_ok().await;
    s.get(&other, "/v3/namespaces/c").ok().await;
    // Unknown and invalid ids.
    s.delete(&admin, "/v3/unrecoverable/namespaces/ghost")
        .expect_error(StatusCode::NOT_FOUND, "Namespace 'ghost' not found.")
        .await;
}

async fn deleting_default_keeps_it(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for path in ["/v3/namespaces/default", "/v3/unrecoverable/namespaces/default"] {
        s.delete(&admin, path).expect_empty_ok().await;
        let got = s
            .get(&admin, "/v3/namespaces/default")
            .case(format!("{path:?}"))
            .ok()
            .await;
        assert_eq!(got["name"], "default");
        assert_eq!(names(&s, &admin).await, ["default"]);
    }
    // Twice in a row is fine: `default` never stops existing.
    s.delete(&admin, "/v3/namespaces/default").expect_empty_ok().await;
    s.get(&admin, "/v3/namespaces/default").ok().await;
}

async fn viewer_reads_but_cannot_write(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let viewer = s.create_user(&admin, "vic", "viewer").await;
    let user = s.create_user(&admin, "ursula", "user").await;
    let dev = s
        .put(&admin, "/v3/namespaces/dev")
        .json(json!({"description": "D", "config": {"k": "v"}}))
        .ok()
        .await;

    // Reads.
    assert_eq!(names(&s, &viewer).await, ["default", "dev"]);
    assert_eq!(s.get(&viewer, "/v3/namespaces/dev").ok().await, dev);
    s.get(&viewer, "/v3/namespaces/ghost")
        .expect_error(StatusCode::NOT_FOUND, "Namespace 'ghost' not found.")
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
        let err = s
            .req(&viewer, method.clone(), path)
            .case(format!("{body:?}"))
            .json_opt(body)
            .expect_error(StatusCode::FORBIDDEN, None)
            .await;
        assert!(err["message"].is_string(), "{method} {path}");
    }
    // Nothing changed.
    assert_eq!(names(&s, &viewer).await, ["default", "dev"]);
    assert_eq!(s.get(&viewer, "/v3/namespaces/dev").ok().await, dev);

    // A user may write.
    s.put(&user, "/v3/namespaces/new").ok().await;
    assert_eq!(
        s.put(&user, "/v3/namespaces/dev/properties")
            .json(json!({"description": "by user"}))
            .ok()
            .await["description"],
        "by user"
    );
    s.delete(&user, "/v3/namespaces/new").expect_empty_ok().await;
    s.delete(&user, "/v3/unrecoverable/namespaces/dev")
        .expect_empty_ok()
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
