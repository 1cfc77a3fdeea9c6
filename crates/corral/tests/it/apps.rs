//! CDAP applications (cdap-v3.md 1.1-1.3, 3, 4.1, 4.2): specs and their validation, versions,
//! the current version, deletes, the namespace check, and isolation between tenants and
//! namespaces. No processes yet: nothing is started.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{Db, TestServer, wall_clock_ms};
use crate::helpers::expect_each_error;

fn spec(version: &str, cmd: &str) -> Value {
    json!({"version": version, "description": "Purchase history",
           "services": [{"name": "CatalogLookup", "description": "Service to retrieve Product IDs.",
                         "command": [cmd, "-c", "exit 0"], "env": {"LOG_LEVEL": "info"},
                         "instances": 2, "health_path": "/health"}]})
}

const APP: &str = "/v3/namespaces/default/apps/PurchaseHistory";

async fn versions(s: &TestServer, k: &str) -> Value {
    s.get(k, &format!("{APP}/versions")).ok().await
}

async fn create_read_and_list(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.create_tenant("acme", 0).await;
    let before = wall_clock_ms() / 1000;
    let created = s.put(&k, APP).json(spec("1.0.0", "/bin/sh")).ok().await;
    let t = created["created"].as_i64().unwrap();
    assert!(t >= before && t <= wall_clock_ms() / 1000 + 1, "{created}");
    assert_eq!(
        created,
        json!({"name": "PurchaseHistory", "appVersion": "1.0.0", "description": "Purchase history", "created": t,
               "programs": [{"type": "Service", "app": "PurchaseHistory", "name": "CatalogLookup",
                             "description": "Service to retrieve Product IDs."}],
               "services": [{"name": "CatalogLookup", "description": "Service to retrieve Product IDs.",
                             "command": ["/bin/sh", "-c", "exit 0"], "env": {"LOG_LEVEL": "info"},
                             "instances": 2, "health_path": "/health"}]})
    );
    assert_eq!(s.get(&k, APP).ok().await, created);
    assert_eq!(s.get(&k, &format!("{APP}/versions/1.0.0")).ok().await, created);
    // Defaults: version -SNAPSHOT, description "", env {}, instances 1, health_path null.
    let minimal = json!({"services": [{"name": "web", "command": ["true"]}]});
    let alpha = s
        .put(&k, "/v3/namespaces/default/apps/Alpha")
        .json(minimal)
        .ok()
        .await;
    assert_eq!(alpha["appVersion"], "-SNAPSHOT");
    assert_eq!(alpha["description"], "");
    assert_eq!(
        alpha["services"],
        json!([{"name": "web", "description": "", "command": ["true"], "env": {}, "instances": 1, "health_path": null}])
    );
    // The list: one record per app, its current version, sorted by name.
    assert_eq!(
        s.get(&k, "/v3/namespaces/default/apps").ok().await,
        json!([
            {"type": "App", "id": "Alpha", "name": "Alpha", "version": "-SNAPSHOT", "description": ""},
            {"type": "App", "id": "PurchaseHistory", "name": "PurchaseHistory", "version": "1.0.0",
             "description": "Purchase history"}
        ])
    );
    // Services of the namespace, sorted by app then name; a service's detail, both forms.
    assert_eq!(
        s.get(&k, "/v3/namespaces/default/services").ok().await,
        json!([
            {"app": "Alpha", "description": "", "id": "web", "name": "web", "type": "Service"},
            {"app": "PurchaseHistory", "description": "Service to retrieve Product IDs.", "id": "CatalogLookup",
             "name": "CatalogLookup", "type": "Service"}
        ])
    );
    let want = json!({"type": "Service", "app": "PurchaseHistory", "version": "1.0.0", "name": "CatalogLookup",
                      "description": "Service to retrieve Product IDs.", "command": ["/bin/sh", "-c", "exit 0"],
                      "env": {"LOG_LEVEL": "info"}, "instances": 2, "health_path": "/health"});
    for path in [
        format!("{APP}/services/CatalogLookup"),
        format!("{APP}/versions/1.0.0/services/CatalogLookup"),
    ] {
        assert_eq!(s.get(&k, &path).ok().await, want);
    }
    // 404s of the family.
    for (path, msg) in [
        (
            "/v3/namespaces/default/apps/Nope".to_string(),
            "Application 'Nope' not found.",
        ),
        (
            "/v3/namespaces/default/apps/Nope/versions".into(),
            "Application 'Nope' not found.",
        ),
        (
            "/v3/namespaces/default/apps/Nope/versions/1.0.0".into(),
            "Application 'Nope' not found.",
        ),
        (
            format!("{APP}/versions/9.9"),
            "Version '9.9' of application 'PurchaseHistory' not found.",
        ),
        (
            format!("{APP}/services/Other"),
            "Service 'Other' not found in application 'PurchaseHistory'.",
        ),
        (
            format!("{APP}/versions/2.0/services/CatalogLookup"),
            "Version '2.0' of application 'PurchaseHistory' not found.",
        ),
        (
            "/v3/namespaces/default/apps/Nope/services/CatalogLookup".into(),
            "Application 'Nope' not found.",
        ),
    ] {
        s.get(&k, &path)
            .case(format!("{msg:?}"))
            .expect_error(StatusCode::NOT_FOUND, msg)
            .await;
    }
}

async fn versions_current_and_conflicts(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.create_tenant("acme", 0).await;
    s.put(&k, APP).json(spec("1.0.0", "/bin/sh")).ok().await;
    // 3.4 with PUT and POST: the app's versions, oldest first; the newest is current.
    let v2 = json!({"description": "v2", "services": [{"name": "CatalogLookup", "command": ["/bin/true"]}]});
    let detail = s
        .put(&k, &format!("{APP}/versions/2.0.0/create"))
        .json(v2.clone())
        .ok()
        .await;
    assert_eq!(detail["appVersion"], "2.0.0");
    assert_eq!(
        s.post(&k, &format!("{APP}/versions/1.5_b/create"))
            .json(v2.clone())
            .ok()
            .await["appVersion"],
        "1.5_b"
    );
    assert_eq!(versions(&s, &k).await, json!(["1.0.0", "2.0.0", "1.5_b"]));
    assert_eq!(s.get(&k, APP).ok().await["appVersion"], "1.5_b");
    // An identical spec: 200, nothing changes (the current version stays).
    assert_eq!(
        s.put(&k, APP).json(spec("1.0.0", "/bin/sh")).ok().await["appVersion"],
        "1.0.0"
    );
    assert_eq!(versions(&s, &k).await, json!(["1.0.0", "2.0.0", "1.5_b"]));
    assert_eq!(s.get(&k, APP).ok().await["appVersion"], "1.5_b");
    // A different spec for an immutable version: 409, by either route.
    let conflict = "Version '1.0.0' of application 'PurchaseHistory' already exists with a different spec.";
    s.put(&k, APP)
        .json(spec("1.0.0", "/bin/true"))
        .expect_error(StatusCode::CONFLICT, conflict)
        .await;
    s.put(&k, &format!("{APP}/versions/1.0.0/create"))
        .json(v2.clone())
        .expect_error(StatusCode::CONFLICT, conflict)
        .await;
    // A body version must equal the path's; a matching one is fine.
    let mut mismatch = v2.clone();
    mismatch["version"] = json!("3.0.0");
    let err = s
        .put(&k, &format!("{APP}/versions/2.0.0/create"))
        .json(mismatch)
        .expect_error(StatusCode::BAD_REQUEST, None)
        .await;
    assert!(err["message"].as_str().unwrap().contains("version"), "{err}");
    let mut matching = v2.clone();
    matching["version"] = json!("2.0.0");
    s.put(&k, &format!("{APP}/versions/2.0.0/create"))
        .json(matching)
        .ok()
        .await;
    // A -SNAPSHOT is overwritten and becomes current (and the newest of the list).
    let snap = json!({"version": "1.1-SNAPSHOT", "services": [{"name": "a", "command": ["/bin/true"]}]});
    s.put(&k, APP).json(snap).ok().await;
    let other = json!({"version": "1.0.0", "services": [{"name": "a", "command": ["/bin/true"]}]});
    s.put(&k, "/v3/namespaces/default/apps/Other")
        .json(other)
        .ok()
        .await;
    s.put(&k, &format!("{APP}/versions/3.0/create"))
        .json(v2.clone())
        .ok()
        .await;
    assert_eq!(
        versions(&s, &k).await,
        json!(["1.0.0", "2.0.0", "1.5_b", "1.1-SNAPSHOT", "3.0"])
    );
    let snap2 = json!({"version": "1.1-SNAPSHOT", "services": [{"name": "b", "command": ["/bin/true"]}]});
    let over = s.put(&k, APP).json(snap2).ok().await;
    assert_eq!(over["services"][0]["name"], "b");
    assert_eq!(
        versions(&s, &k).await,
        json!(["1.0.0", "2.0.0", "1.5_b", "3.0", "1.1-SNAPSHOT"])
    );
    assert_eq!(s.get(&k, APP).ok().await, over);
    let names: Vec<(Value, Value)> = s
        .get(&k, "/v3/namespaces/default/services")
        .ok()
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["app"].clone(), r["name"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            (json!("Other"), json!("a")),
            (json!("PurchaseHistory"), json!("b"))
        ]
    );
    // Invalid versions: 400, from the body or the path.
    for bad in ["", "a/b", "1.0 beta", "v:1", &"x".repeat(256)] {
        s.put(&k, APP)
            .case(format!("{bad:?}"))
            .json(json!({"version": bad, "services": [{"name": "a", "command": ["/bin/true"]}]}))
            .expect_error(StatusCode::BAD_REQUEST, &format!("Invalid version '{bad}'."))
            .await;
    }
    s.put(&k, &format!("{APP}/versions/v:1/create"))
        .json(v2.clone())
        .expect_error(StatusCode::BAD_REQUEST, "Invalid version 'v:1'.")
        .await;
    let ok = "A.z_0-9.".repeat(31) + "1234567";
    assert_eq!(ok.len(), 255);
    s.put(&k, &format!("{APP}/versions/{ok}/create"))
        .json(v2)
        .ok()
        .await;
    // An invalid app name.
    s.put(&k, "/v3/namespaces/default/apps/bad.name")
        .json(spec("1", "/bin/true"))
        .expect_error(
            StatusCode::BAD_REQUEST,
            "Invalid name 'bad.name': use 1 to 255 characters from A-Z a-z 0-9 _ -.",
        )
        .await;
}

/// One service with `field` set to `value`, as the only change to a valid spec.
fn with_service_field(field: &str, value: Value) -> Value {
    let mut svc = json!({"name": "web", "command": ["/bin/true"]});
    svc[field] = value;
    json!({"services": [svc]})
}

async fn spec_validation(db: Db) {
    let s = TestServer::start_with(db, |st| st.service_max_instances = 3).await;
    let k = s.create_tenant("acme", 0).await;
    let path = "/v3/namespaces/default/apps/app1";
    let long = "d".repeat(4097);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "services"),
        (
            json!({"services": []}),
            "services: at least one service is required.",
        ),
        (
            json!({"services": [{"name": "a", "command": ["/bin/true"]}], "instance": 1}),
            "instance",
        ),
        (
            json!({"services": [{"name": "a", "command": ["/bin/true"], "instance": 2}]}),
            "instance",
        ),
        (json!({"services": "web"}), "services"),
        (
            json!({"services": [{"name": "a", "command": "/bin/true"}]}),
            "services[0].command",
        ),
        (json!({"services": [{"command": ["/bin/true"]}]}), "name"),
        (json!({"services": [{"name": "a"}]}), "command"),
        (
            json!({"description": long.clone(), "services": [{"name": "a", "command": ["/bin/true"]}]}),
            "description is longer than 4096 characters.",
        ),
        (
            with_service_field("description", json!(long)),
            "services[0].description is longer than 4096 characters.",
        ),
        (
            with_service_field("name", json!("a.b")),
            "services[0].name: Invalid name 'a.b': use 1 to 255 characters from A-Z a-z 0-9 _ -.",
        ),
        (
            json!({"services": [{"name": "a", "command": ["/bin/true"]}, {"name": "a", "command": ["/bin/true"]}]}),
            "services[1].name: the service name 'a' is used twice.",
        ),
        (
            with_service_field("command", json!([])),
            "services[0].command must not be empty.",
        ),
        (
            with_service_field("command", json!(["/no/such/prog"])),
            "Command '/no/such/prog' not found or not executable.",
        ),
        (
            with_service_field("command", json!(["no-such-prog-xyz"])),
            "Command 'no-such-prog-xyz' not found or not executable.",
        ),
        (
            with_service_field("command", json!(["/etc/passwd"])),
            "Command '/etc/passwd' not found or not executable.",
        ),
        (
            with_service_field("command", json!(["bin/true"])),
            "Command 'bin/true' not found or not executable.",
        ),
        (
            with_service_field("env", json!({"1X": "a"})),
            "services[0].env: invalid variable name '1X': use [A-Za-z_][A-Za-z0-9_]*.",
        ),
        (
            with_service_field("env", json!({"A-B": "a"})),
            "services[0].env: invalid variable name 'A-B': use [A-Za-z_][A-Za-z0-9_]*.",
        ),
        (
            with_service_field("env", json!({"PORT": "80"})),
            "services[0].env: the variable 'PORT' is set by Corral and cannot be given.",
        ),
        (
            with_service_field("env", json!({"CORRAL_APP": "x"})),
            "services[0].env: the variable 'CORRAL_APP' is set by Corral and cannot be given.",
        ),
        (with_service_field("env", json!({"A": 1})), "services[0].env"),
        (
            with_service_field("instances", json!(0)),
            "services[0].instances must be between 1 and 3.",
        ),
        (
            with_service_field("instances", json!(4)),
            "services[0].instances must be between 1 and 3.",
        ),
        (
            with_service_field("instances", json!(-1)),
            "services[0].instances must be between 1 and 3.",
        ),
        (
            with_service_field("health_path", json!("health")),
            "services[0].health_path must start with '/'.",
        ),
    ];
    for (body, msg) in cases {
        let err = s
            .put(&k, path)
            .case(format!("{body:?}, {msg:?}"))
            .json(body.clone())
            .expect_error(StatusCode::BAD_REQUEST, None)
            .await;
        let got = err["message"].as_str().unwrap();
        if msg.ends_with('.') {
            assert_eq!(got, msg, "{body}");
        } else {
            assert!(got.contains(msg), "{body}: {got} should name {msg}");
        }
    }
    // Nothing of that was stored.
    s.get(&k, path)
        .expect_error(StatusCode::NOT_FOUND, "Application 'app1' not found.")
        .await;
    // Accepted edge values.
    let ok = json!({"description": "d".repeat(4096), "services": [
        {"name": "a", "command": ["sh", "-c", "true"], "env": {"_x": "1", "Port": "2", "CORRAL": "3"},
         "instances": 3, "health_path": "/"},
        {"name": "b", "command": ["/bin/true"], "health_path": null, "instances": 1}]});
    let detail = s.put(&k, path).json(ok).ok().await;
    assert_eq!(detail["services"][0]["command"], json!(["sh", "-c", "true"]));
    // A body that is not JSON at all is the general 400.
    s.put(&k, path).with(|r| r.body("{nope")).expect_not_json().await;
}

async fn command_dirs_restrict_programs(db: Db) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("svc.sh");
    std::fs::write(&prog, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let allowed = dir.path().to_path_buf();
    let s = TestServer::start_with(db, move |st| st.service_command_dirs = Some(vec![allowed])).await;
    let k = s.create_tenant("acme", 0).await;
    let path = "/v3/namespaces/default/apps/a";
    s.put(&k, path)
        .json(with_service_field("command", json!(["/bin/true"])))
        .expect_error(
            StatusCode::BAD_REQUEST,
            "Command '/bin/true' is outside the allowed service_command_dirs.",
        )
        .await;
    let cmd = prog.to_str().unwrap();
    let detail = s
        .put(&k, path)
        .json(with_service_field("command", json!([cmd])))
        .ok()
        .await;
    // The spec is stored as given.
    assert_eq!(detail["services"][0]["command"], json!([cmd]));
}

async fn deletes(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.create_tenant("acme", 0).await;
    for v in ["1", "2", "3"] {
        s.put(&k, APP)
            .case(format!("{v:?}"))
            .json(spec(v, "/bin/true"))
            .ok()
            .await;
    }
    // Deleting the current version makes the previous one current.
    s.delete(&k, &format!("{APP}/versions/3")).expect_empty_ok().await;
    assert_eq!(s.get(&k, APP).ok().await["appVersion"], "2");
    s.delete(&k, &format!("{APP}/versions/3"))
        .expect_error(
            StatusCode::NOT_FOUND,
            "Version '3' of application 'PurchaseHistory' not found.",
        )
        .await;
    s.delete(&k, &format!("{APP}/versions/bad:v"))
        .expect_error(
            StatusCode::NOT_FOUND,
            "Version 'bad:v' of application 'PurchaseHistory' not found.",
        )
        .await;
    s.delete(&k, &format!("{APP}/versions/1")).expect_empty_ok().await;
    assert_eq!(s.get(&k, &format!("{APP}/versions")).ok().await, json!(["2"]));
    // The last version's delete deletes the app.
    s.delete(&k, &format!("{APP}/versions/2")).expect_empty_ok().await;
    s.get(&k, APP)
        .expect_error(StatusCode::NOT_FOUND, "Application 'PurchaseHistory' not found.")
        .await;
    assert_eq!(s.get(&k, "/v3/namespaces/default/apps").ok().await, json!([]));
    // The app delete removes every version; a second one is 404.
    for v in ["1", "2"] {
        s.put(&k, APP)
            .case(format!("{v:?}"))
            .json(spec(v, "/bin/true"))
            .ok()
            .await;
    }
    s.delete(&k, APP).expect_empty_ok().await;
    let missing = "Application 'PurchaseHistory' not found.";
    expect_each_error(
        [
            s.delete(&k, APP),
            s.get(&k, &format!("{APP}/versions")),
            s.delete(&k, &format!("{APP}/versions/1")),
        ],
        StatusCode::NOT_FOUND,
        missing,
    )
    .await;
    // Re-created from scratch: only the new version.
    s.put(&k, APP).json(spec("9", "/bin/true")).ok().await;
    assert_eq!(s.get(&k, &format!("{APP}/versions")).ok().await, json!(["9"]));
}

/// Every route of this slice, with `{ns}` to fill, and its method and body.
fn routes() -> Vec<(Method, &'static str, Option<Value>)> {
    let body = Some(json!({"services": [{"name": "web", "command": ["/bin/true"]}]}));
    vec![
        (Method::GET, "/v3/namespaces/{ns}/apps", None),
        (Method::PUT, "/v3/namespaces/{ns}/apps/a", body.clone()),
        (Method::GET, "/v3/namespaces/{ns}/apps/a", None),
        (Method::DELETE, "/v3/namespaces/{ns}/apps/a", None),
        (
            Method::PUT,
            "/v3/namespaces/{ns}/apps/a/versions/1/create",
            body.clone(),
        ),
        (Method::POST, "/v3/namespaces/{ns}/apps/a/versions/1/create", body),
        (Method::GET, "/v3/namespaces/{ns}/apps/a/versions/1", None),
        (Method::DELETE, "/v3/namespaces/{ns}/apps/a/versions/1", None),
        (Method::GET, "/v3/namespaces/{ns}/apps/a/versions", None),
        (Method::GET, "/v3/namespaces/{ns}/services", None),
        (Method::GET, "/v3/namespaces/{ns}/apps/a/services/web", None),
        (
            Method::GET,
            "/v3/namespaces/{ns}/apps/a/versions/1/services/web",
            None,
        ),
    ]
}

async fn namespace_check_comes_first(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.create_tenant("acme", 0).await;
    for (m, template, body) in routes() {
        for (ns, status, msg) in [
            ("nope", StatusCode::NOT_FOUND, "Namespace 'nope' not found."),
            ("system", StatusCode::FORBIDDEN, "Namespace 'system' is reserved."),
            ("cdap", StatusCode::FORBIDDEN, "Namespace 'cdap' is reserved."),
        ] {
            let path = template.replace("{ns}", ns);
            // Even with an invalid spec, the namespace answers first.
            let body = body.as_ref().map(|_| json!({"services": [], "bogus": 1}));
            s.req(&k, m.clone(), &path)
                .case(format!("{template:?}, {body:?}, {ns:?}, {status:?}, {msg:?}"))
                .json_opt(body)
                .expect_error(status, msg)
                .await;
        }
    }
}

async fn tenants_and_namespaces_are_isolated(db: Db) {
    let s = TestServer::start(db).await;
    let acme = s.create_tenant("acme", 0).await;
    let other = s.create_tenant("other", 0).await;
    s.put(&acme, "/v3/namespaces/prod").ok().await;
    s.put(&other, "/v3/namespaces/dev").ok().await;
    let body = json!({"version": "1", "services": [{"name": "web", "command": ["/bin/true"]}]});
    s.put(&acme, "/v3/namespaces/prod/apps/a")
        .json(body.clone())
        .ok()
        .await;
    // Another tenant's namespace is unknown; another tenant's app in a namespace of the same
    // name is unknown too.
    for (m, template, body) in routes() {
        let path = template.replace("{ns}", "prod");
        s.req(&other, m.clone(), &path)
            .case(format!("{template:?}, {body:?}"))
            .json_opt(body.clone())
            .expect_error(StatusCode::NOT_FOUND, "Namespace 'prod' not found.")
            .await;
    }
    for (m, template, _) in routes() {
        if m != Method::GET && m != Method::DELETE {
            continue;
        }
        for (ns, key) in [("default", &other), ("default", &acme)] {
            let path = template.replace("{ns}", ns);
            let req = s.req(key, m.clone(), &path);
            if path.ends_with("/apps") || path.ends_with("/services") {
                assert_eq!(req.ok().await, json!([]), "{path}");
            } else {
                req.expect_error(StatusCode::NOT_FOUND, "Application 'a' not found.")
                    .await;
            }
        }
    }
    // Still there for its owner.
    s.get(&acme, "/v3/namespaces/prod/apps/a/versions/1/services/web")
        .ok()
        .await;
    // The same app name in two namespaces and two tenants: separate apps.
    let body2 = json!({"version": "2", "services": [{"name": "web", "command": ["/bin/true"]}]});
    s.put(&acme, "/v3/namespaces/default/apps/a")
        .json(body2.clone())
        .ok()
        .await;
    s.put(&other, "/v3/namespaces/dev/apps/a").json(body2).ok().await;
    assert_eq!(
        s.get(&acme, "/v3/namespaces/prod/apps/a/versions").ok().await,
        json!(["1"])
    );
    assert_eq!(
        s.get(&acme, "/v3/namespaces/default/apps/a/versions").ok().await,
        json!(["2"])
    );
    s.delete(&other, "/v3/namespaces/dev/apps/a")
        .expect_empty_ok()
        .await;
    assert_eq!(
        s.get(&acme, "/v3/namespaces/prod/apps/a/versions").ok().await,
        json!(["1"])
    );
}

async fn namespace_delete_removes_apps(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.create_tenant("acme", 0).await;
    let body = json!({"version": "1", "services": [{"name": "web", "command": ["/bin/true"]}]});
    s.put(&k, "/v3/namespaces/prod").ok().await;
    for ns in ["prod", "default"] {
        for app in ["a", "b"] {
            s.put(&k, &format!("/v3/namespaces/{ns}/apps/{app}"))
                .json(body.clone())
                .ok()
                .await;
        }
    }
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM app_versions").await, 4);
    s.delete(&k, "/v3/namespaces/prod").expect_empty_ok().await;
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM apps WHERE namespace = 'prod'")
            .await,
        0
    );
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM app_versions").await, 2);
    // Re-created, the namespace is empty.
    s.put(&k, "/v3/namespaces/prod").ok().await;
    assert_eq!(s.get(&k, "/v3/namespaces/prod/apps").ok().await, json!([]));
    // `default` is emptied and kept.
    s.delete(&k, "/v3/unrecoverable/namespaces/default")
        .expect_empty_ok()
        .await;
    assert_eq!(s.get(&k, "/v3/namespaces/default/apps").ok().await, json!([]));
    assert_eq!(s.get(&k, "/v3/namespaces/default/services").ok().await, json!([]));
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM apps").await, 0);
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM app_versions").await, 0);
    // A tenant delete takes its apps too.
    s.put(&k, "/v3/namespaces/default/apps/a").json(body).ok().await;
    s.req_root(Method::DELETE, "/v2/tenants/acme")
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM apps").await, 0);
}

async fn viewers_read_users_write(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let viewer = s.create_user(&admin, "vera", "viewer").await;
    let user = s.create_user(&admin, "ursula", "user").await;
    let body = json!({"services": [{"name": "web", "command": ["/bin/true"]}]});
    // A viewer's write is 403 before anything about the namespace or the body.
    for path in ["/v3/namespaces/default/apps/a", "/v3/namespaces/nope/apps/a"] {
        s.put(&viewer, path)
            .json(json!({"bogus": 1}))
            .expect_error(StatusCode::FORBIDDEN, None)
            .await;
    }
    s.put(&user, "/v3/namespaces/default/apps/a")
        .json(body)
        .ok()
        .await;
    s.get(&viewer, "/v3/namespaces/default/apps/a").ok().await;
    s.delete(&viewer, "/v3/namespaces/default/apps/a")
        .expect_error(StatusCode::FORBIDDEN, None)
        .await;
    s.delete(&user, "/v3/namespaces/default/apps/a")
        .expect_empty_ok()
        .await;
}

both_stores!(
    create_read_and_list,
    versions_current_and_conflicts,
    spec_validation,
    command_dirs_restrict_programs,
    deletes,
    namespace_check_comes_first,
    tenants_and_namespaces_are_isolated,
    namespace_delete_removes_apps,
    viewers_read_users_write,
);
