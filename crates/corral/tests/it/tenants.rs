//! Tenant management by the superadmin (coopr-v2.md 3): create with its admin and one-time
//! key, list, get, replace, delete, worker capacity, cluster and node quotas, bootstrap
//! copies and admin-key recovery.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer, keys_of};
use crate::helpers::Req;

const UNLIMITED: i64 = 2_147_483_647;

fn post_tenant(s: &TestServer, body: Value) -> Req {
    s.req_root(Method::POST, "/v2/tenants").json(body)
}

fn put_tenant(s: &TestServer, name: &str, body: Value) -> Req {
    s.req_root(Method::PUT, &format!("/v2/tenants/{name}")).json(body)
}

fn get_tenant(s: &TestServer, name: &str) -> Req {
    s.req_root(Method::GET, &format!("/v2/tenants/{name}"))
}

/// Asserts a tenant's `admin` user answered with a new API key (at creation, or by
/// `adminkey`): its fields, and its key's fields, with the secret shown this once and no
/// expiry or use yet. Answers the key object and the secret.
fn assert_admin_with_new_key(admin: &Value) -> (&Value, &str) {
    assert_eq!(
        keys_of(admin),
        ["apikey", "createTime", "description", "id", "role", "tenant"],
        "{admin}"
    );
    assert_eq!(admin["id"], "admin");
    assert_eq!(admin["tenant"], "acme");
    assert_eq!(admin["role"], "admin");
    assert_eq!(admin["description"], "");
    let apikey = &admin["apikey"];
    assert_eq!(
        keys_of(apikey),
        [
            "createTime",
            "description",
            "expireTime",
            "id",
            "key",
            "lastUsedTime",
            "prefix"
        ],
        "{apikey}"
    );
    let key = apikey["key"].as_str().unwrap();
    assert!(key.starts_with("crk_") && key.len() == 47, "{key}");
    assert_eq!(apikey["prefix"], json!(&key[..8]));
    assert_eq!(apikey["expireTime"], Value::Null);
    assert_eq!(apikey["lastUsedTime"], Value::Null);
    (apikey, key)
}

async fn tenant_names(s: &TestServer) -> Vec<String> {
    let list = s.req_root(Method::GET, "/v2/tenants").ok().await;
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn create_answers_tenant_admin_and_a_working_key(db: Db) {
    let s = TestServer::start(db).await;
    let before = now_ms();
    let body = post_tenant(
        &s,
        json!({"tenant": {"name": "acme", "workers": 3}, "bootstrap": false}),
    )
    .ok()
    .await;
    let after = now_ms();
    assert_eq!(keys_of(&body), ["admin", "tenant"], "{body}");
    // Omitted fields take their defaults.
    assert_eq!(
        body["tenant"],
        json!({"name": "acme", "description": "", "workers": 3, "maxClusters": UNLIMITED, "maxNodes": UNLIMITED})
    );
    let admin = &body["admin"];
    let (apikey, key) = assert_admin_with_new_key(admin);
    let created = admin["createTime"].as_i64().unwrap();
    assert!(before - 1000 <= created && created <= after + 1000, "{created}");
    assert!(uuid::Uuid::parse_str(apikey["id"].as_str().unwrap()).is_ok());
    assert!(apikey["description"].is_string());
    assert!(apikey["createTime"].is_i64());

    // The key works, as the tenant's admin, and is the admin's only key.
    let users = s.get(key, "/v2/users").ok().await;
    assert_eq!(
        users,
        json!([{"id": "admin", "tenant": "acme", "role": "admin", "description": "", "createTime": created}])
    );
    let keys = s.get(key, "/v2/users/admin/apikeys").ok().await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["id"], apikey["id"]);
    assert!(keys[0].get("key").is_none(), "the secret is shown once: {keys}");

    // The new tenant has its own namespace `default`, usable by its admin.
    let namespaces = s.get(key, "/v3/namespaces").ok().await;
    assert_eq!(
        namespaces,
        json!([{"name": "default", "description": "Default Namespace", "config": {}}])
    );
    assert_eq!(
        s.put(key, "/v3/namespaces/default/properties")
            .json(json!({"config": {"k": "v"}}))
            .ok()
            .await["config"],
        json!({"k": "v"})
    );
    // ... and its own network `default` (no API reads networks yet).
    assert_eq!(
        s.sql_count(
            "SELECT COUNT(*) FROM networks WHERE name = 'default' AND type = 'flannel_etcd' AND options = '{}' \
             AND tenant_id = (SELECT id FROM tenants WHERE name = 'acme')"
        )
        .await,
        1
    );
    // The tenant admin is not a superadmin.
    s.get(key, "/v2/tenants")
        .expect_error(StatusCode::FORBIDDEN, "user unauthorized, must be superadmin.")
        .await;
    // GET answers what the create answered.
    let got = get_tenant(&s, "acme").ok().await;
    assert_eq!(got, body["tenant"]);
}

async fn create_keeps_explicit_fields(db: Db) {
    let s = TestServer::start(db).await;
    let tenant =
        json!({"name": "acme", "description": "Acme Corp", "workers": 2, "maxClusters": 5, "maxNodes": 0});
    let body = post_tenant(&s, json!({"tenant": tenant})).ok().await;
    assert_eq!(body["tenant"], tenant);
    assert_eq!(get_tenant(&s, "acme").ok().await, tenant);
    // A description of exactly 4096 characters is accepted.
    let long = "d".repeat(4096);
    let body = post_tenant(
        &s,
        json!({"tenant": {"name": "long", "workers": 0, "description": long}}),
    )
    .ok()
    .await;
    assert_eq!(body["tenant"]["description"], json!(long));
}

async fn list_is_sorted_by_name_with_superadmin(db: Db) {
    let s = TestServer::start(db).await;
    assert_eq!(tenant_names(&s).await, ["superadmin"]);
    for name in ["zeta", "acme", "Beta", "my-company", "m_co"] {
        s.create_tenant(name, 0).await;
    }
    assert_eq!(
        tenant_names(&s).await,
        ["Beta", "acme", "m_co", "my-company", "superadmin", "zeta"]
    );
    let list = s.req_root(Method::GET, "/v2/tenants").ok().await;
    let superadmin = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "superadmin")
        .unwrap();
    assert_eq!(
        superadmin,
        &json!({"name": "superadmin", "description": "", "workers": 10, "maxClusters": UNLIMITED, "maxNodes": UNLIMITED})
    );
    // A user of tenant superadmin who is not an admin is not a superadmin.
    let plain = s.create_user(BOOTSTRAP_KEY, "plain", "user").await;
    s.get(&plain, "/v2/tenants")
        .expect_error(StatusCode::FORBIDDEN, "user unauthorized, must be superadmin.")
        .await;
}

async fn get_unknown_tenant_is_404(db: Db) {
    let s = TestServer::start(db).await;
    get_tenant(&s, "nope")
        .expect_error(StatusCode::NOT_FOUND, "tenant nope not found")
        .await;
    // Names are case-sensitive.
    s.create_tenant("acme", 0).await;
    get_tenant(&s, "ACME")
        .expect_error(StatusCode::NOT_FOUND, "tenant ACME not found")
        .await;
    let sa = get_tenant(&s, "superadmin").ok().await;
    assert_eq!(sa["workers"], 10);
}

async fn duplicate_tenant_is_409(db: Db) {
    let s = TestServer::start(db).await;
    s.create_tenant("acme", 1).await;
    post_tenant(&s, json!({"tenant": {"name": "acme", "workers": 2}}))
        .expect_error(StatusCode::CONFLICT, "Tenant acme already exists.")
        .await;
    post_tenant(&s, json!({"tenant": {"name": "superadmin", "workers": 0}}))
        .expect_error(StatusCode::CONFLICT, "Tenant superadmin already exists.")
        .await;
    // The existing tenant is unchanged.
    assert_eq!(get_tenant(&s, "acme").ok().await["workers"], 1);
    // Another case is another name.
    s.create_tenant("Acme", 0).await;
}

async fn invalid_tenant_bodies_are_invalid_input(db: Db) {
    let s = TestServer::start(db).await;
    let bodies = [
        json!([]),
        json!("acme"),
        json!({}),
        json!({"bootstrap": true}),
        json!({"tenant": null}),
        json!({"tenant": "acme"}),
        json!({"tenant": {"workers": 1}}),
        json!({"tenant": {"name": "x"}}),
        json!({"tenant": {"name": "x", "workers": -1}}),
        json!({"tenant": {"name": "x", "workers": 1, "maxClusters": -1}}),
        json!({"tenant": {"name": "x", "workers": 1, "maxNodes": -5}}),
        json!({"tenant": {"name": "x", "workers": "1"}}),
        json!({"tenant": {"name": "x", "workers": 1.5}}),
        json!({"tenant": {"name": "x", "workers": 1e20}}),
        json!({"tenant": {"name": 5, "workers": 1}}),
        json!({"tenant": {"name": "x", "workers": 1, "description": 7}}),
        json!({"tenant": {"name": "x", "workers": 1, "maxNodes": "many"}}),
        json!({"tenant": {"name": "x", "workers": 1}, "bootstrap": "yes"}),
        json!({"tenant": {"name": "x", "workers": 1, "description": "d".repeat(4097)}}),
        json!({"tenant": {"name": "a b", "workers": 1}}),
        json!({"tenant": {"name": "a.b", "workers": 1}}),
        json!({"tenant": {"name": "", "workers": 1}}),
        json!({"tenant": {"name": "x".repeat(256), "workers": 1}}),
    ];
    for body in bodies {
        let err = post_tenant(&s, body.clone())
            .expect_error(StatusCode::BAD_REQUEST, None)
            .await;
        assert_eq!(err["message"], "invalid input", "body {body}: {err}");
    }
    // Nothing was created.
    assert_eq!(tenant_names(&s).await, ["superadmin"]);
    // The longest valid name is accepted.
    let name = "x".repeat(255);
    s.create_tenant(&name, 0).await;
    assert_eq!(tenant_names(&s).await, ["superadmin", name.as_str()]);
}

async fn worker_capacity_limits_create_and_update(db: Db) {
    // superadmin holds 10 of the 15 workers.
    let s = TestServer::start_with(db, |c| c.worker_capacity = 15).await;
    s.create_tenant("a", 5).await;
    post_tenant(&s, json!({"tenant": {"name": "b", "workers": 1}}))
        .expect_error(StatusCode::CONFLICT, "Not enough capacity to add tenant.")
        .await;
    get_tenant(&s, "b")
        .expect_error(StatusCode::NOT_FOUND, None)
        .await;
    // A tenant without workers always fits.
    s.create_tenant("b", 0).await;
    put_tenant(&s, "b", json!({"tenant": {"name": "b", "workers": 1}}))
        .expect_error(StatusCode::CONFLICT, "Not enough capacity to update tenant.")
        .await;
    assert_eq!(get_tenant(&s, "b").ok().await["workers"], 0);
    // Keeping the same workers at full capacity is fine; lowering frees capacity.
    assert_eq!(
        put_tenant(&s, "a", json!({"tenant": {"name": "a", "workers": 5}}))
            .ok()
            .await["workers"],
        5
    );
    assert_eq!(
        put_tenant(&s, "a", json!({"tenant": {"name": "a", "workers": 3}}))
            .ok()
            .await["workers"],
        3
    );
    assert_eq!(
        put_tenant(&s, "b", json!({"tenant": {"name": "b", "workers": 2}}))
            .ok()
            .await["workers"],
        2
    );
    // Full again: 10 + 3 + 2.
    put_tenant(&s, "a", json!({"tenant": {"name": "a", "workers": 4}}))
        .expect_error(StatusCode::CONFLICT, "Not enough capacity to update tenant.")
        .await;
    put_tenant(
        &s,
        "superadmin",
        json!({"tenant": {"name": "superadmin", "workers": 11}}),
    )
    .expect_error(StatusCode::CONFLICT, "Not enough capacity to update tenant.")
    .await;
    post_tenant(&s, json!({"tenant": {"name": "c", "workers": 1}}))
        .expect_error(StatusCode::CONFLICT, "Not enough capacity to add tenant.")
        .await;
    // Deleting a tenant (after setting its workers to 0) frees its capacity.
    put_tenant(&s, "b", json!({"tenant": {"name": "b", "workers": 0}}))
        .ok()
        .await;
    s.req_root(Method::DELETE, "/v2/tenants/b")
        .expect_empty_ok()
        .await;
    s.create_tenant("c", 2).await;
}

async fn put_replaces_the_complete_object(db: Db) {
    let s = TestServer::start(db).await;
    post_tenant(
        &s,
        json!({"tenant": {"name": "acme", "description": "d", "workers": 2, "maxClusters": 5, "maxNodes": 6}}),
    ).ok().await;
    let expected = json!({"name": "acme", "description": "", "workers": 4, "maxClusters": UNLIMITED, "maxNodes": UNLIMITED});
    assert_eq!(
        put_tenant(&s, "acme", json!({"tenant": {"name": "acme", "workers": 4}}))
            .ok()
            .await,
        expected
    );
    assert_eq!(get_tenant(&s, "acme").ok().await, expected);
    let full =
        json!({"name": "acme", "description": "new", "workers": 1, "maxClusters": 20, "maxNodes": 100});
    assert_eq!(put_tenant(&s, "acme", json!({"tenant": full})).ok().await, full);
    assert_eq!(get_tenant(&s, "acme").ok().await, full);
    // `workers` defaults to 0 on replace.
    assert_eq!(
        put_tenant(&s, "acme", json!({"tenant": {"name": "acme", "maxNodes": 3}}))
            .ok()
            .await,
        json!({"name": "acme", "description": "", "workers": 0, "maxClusters": UNLIMITED, "maxNodes": 3})
    );
    // The tenant's key still works after a change of settings.
    let key = s.create_tenant("keyed", 1).await;
    put_tenant(&s, "keyed", json!({"tenant": {"name": "keyed", "workers": 2}}))
        .ok()
        .await;
    s.get(&key, "/v2/users").ok().await;
}

async fn put_errors(db: Db) {
    let s = TestServer::start(db).await;
    s.create_tenant("acme", 1).await;
    let before = get_tenant(&s, "acme").ok().await;
    put_tenant(&s, "acme", json!({"tenant": {"name": "other", "workers": 1}}))
        .expect_error(
            StatusCode::BAD_REQUEST,
            "tenant name in body does not match name in path.",
        )
        .await;
    put_tenant(&s, "ghost", json!({"tenant": {"name": "ghost", "workers": 1}}))
        .expect_error(StatusCode::NOT_FOUND, "tenant ghost not found")
        .await;
    for body in [
        json!({}),
        json!([]),
        json!({"tenant": {"name": "acme", "workers": -1}}),
        json!({"tenant": {"name": "acme", "workers": 1, "maxClusters": -1}}),
        json!({"tenant": {"name": "acme", "workers": 1, "maxNodes": "x"}}),
        json!({"tenant": {"name": "acme", "workers": 1.25}}),
        json!({"tenant": {"name": "acme", "workers": 1, "description": ["a"]}}),
    ] {
        let err = put_tenant(&s, "acme", body.clone())
            .expect_error(StatusCode::BAD_REQUEST, None)
            .await;
        assert_eq!(err["message"], "invalid input", "body {body}: {err}");
    }
    assert_eq!(get_tenant(&s, "acme").ok().await, before);
    // The tenant routes are the superadmin's only.
    let key = s.create_tenant("other", 0).await;
    s.put(&key, "/v2/tenants/other")
        .json(json!({"tenant": {"name": "other", "workers": 0}}))
        .expect_error(StatusCode::FORBIDDEN, "user unauthorized, must be superadmin.")
        .await;
}

async fn put_checks_cluster_and_node_quotas(db: Db) {
    let s = TestServer::start(db).await;
    s.create_tenant("acme", 0).await;
    s.create_tenant("other", 0).await;
    let acme = "(SELECT id FROM tenants WHERE name='acme')";
    s.exec_sql(&format!(
        "INSERT INTO clusters (tenant_id, name, create_time) VALUES ({acme}, 'c1', 0), ({acme}, 'c2', 0)"
    ))
    .await;
    s.exec_sql(&format!(
        "INSERT INTO hosts (tenant_id, address, create_time) VALUES \
         ({acme}, '10.0.0.1', 0), ({acme}, '10.0.0.2', 0), ({acme}, '10.0.0.3', 0)"
    ))
    .await;
    let violated = "Writing tenant would cause cluster or node quotas to be violated.";
    for tenant in [
        json!({"name": "acme", "workers": 0, "maxClusters": 1}),
        json!({"name": "acme", "workers": 0, "maxNodes": 2}),
        json!({"name": "acme", "workers": 0, "maxClusters": 0, "maxNodes": 0}),
        json!({"name": "acme", "workers": 0, "maxClusters": 1, "maxNodes": 3}),
        json!({"name": "acme", "workers": 0, "maxClusters": 2, "maxNodes": 2}),
    ] {
        put_tenant(&s, "acme", json!({"tenant": tenant}))
            .expect_error(StatusCode::CONFLICT, violated)
            .await;
    }
    // Nothing was written.
    let got = get_tenant(&s, "acme").ok().await;
    assert_eq!(
        (got["maxClusters"].as_i64(), got["maxNodes"].as_i64()),
        (Some(UNLIMITED), Some(UNLIMITED))
    );
    // Exactly the current counts is allowed.
    let exact = json!({"name": "acme", "description": "", "workers": 0, "maxClusters": 2, "maxNodes": 3});
    assert_eq!(put_tenant(&s, "acme", json!({"tenant": exact})).ok().await, exact);
    assert_eq!(get_tenant(&s, "acme").ok().await, exact);
    // Another tenant's clusters and hosts do not count.
    assert_eq!(
        put_tenant(
            &s,
            "other",
            json!({"tenant": {"name": "other", "workers": 0, "maxClusters": 0, "maxNodes": 0}}),
        )
        .ok()
        .await["maxNodes"],
        0
    );
}

async fn delete_tenant_rules(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 2).await;
    let alice = s.create_user(&admin, "alice", "user").await;
    let acme = "(SELECT id FROM tenants WHERE name='acme')";
    s.exec_sql(&format!(
        "INSERT INTO clusters (tenant_id, name, create_time) VALUES ({acme}, 'c1', 0)"
    ))
    .await;
    s.exec_sql(&format!(
        "INSERT INTO hosts (tenant_id, address, create_time) VALUES ({acme}, '10.0.0.1', 0)"
    ))
    .await;
    s.put(&alice, "/v2/profile")
        .json(json!({"theme": "dark"}))
        .ok()
        .await;
    s.put(&admin, "/v3/namespaces/dev").ok().await;

    s.req_root(Method::DELETE, "/v2/tenants/acme")
        .expect_error(
            StatusCode::CONFLICT,
            "Tenant acme still has 2 workers. Cannot delete it until workers are set to 0.",
        )
        .await;
    // Still there, keys still work.
    get_tenant(&s, "acme").ok().await;
    s.get(&alice, "/v3/namespaces").ok().await;

    put_tenant(&s, "acme", json!({"tenant": {"name": "acme", "workers": 0}}))
        .ok()
        .await;
    s.req_root(Method::DELETE, "/v2/tenants/acme")
        .expect_empty_ok()
        .await;
    get_tenant(&s, "acme")
        .expect_error(StatusCode::NOT_FOUND, "tenant acme not found")
        .await;
    assert_eq!(tenant_names(&s).await, ["superadmin"]);
    for key in [&admin, &alice] {
        s.get(key, "/v3/namespaces")
            .case(format!("{key:?}"))
            .expect_error(StatusCode::UNAUTHORIZED, "Invalid credentials.")
            .await;
    }
    // Everything the tenant owned is gone.
    for table in [
        "users",
        "namespaces",
        "networks",
        "container_managers",
        "clusters",
        "hosts",
    ] {
        let orphans = s
            .sql_count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE tenant_id NOT IN (SELECT id FROM tenants)"
            ))
            .await;
        assert_eq!(orphans, 0, "rows of the deleted tenant left in {table}");
    }
    for table in ["api_keys", "profiles"] {
        let orphans = s
            .sql_count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE tenant_id NOT IN (SELECT id FROM tenants)"
            ))
            .await;
        assert_eq!(orphans, 0, "rows of the deleted tenant left in {table}");
    }
    s.req_root(Method::DELETE, "/v2/tenants/acme")
        .expect_error(StatusCode::NOT_FOUND, "tenant acme not found")
        .await;
    // A new tenant of the same name starts empty; the old keys stay dead.
    let fresh = s.create_tenant("acme", 0).await;
    s.get(&admin, "/v2/users")
        .expect_error(StatusCode::UNAUTHORIZED, "Invalid credentials.")
        .await;
    let users = s.get(&fresh, "/v2/users").ok().await;
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
    let namespaces = s.get(&fresh, "/v3/namespaces").ok().await;
    assert_eq!(namespaces.as_array().unwrap().len(), 1, "{namespaces}");
}

async fn superadmin_cannot_be_deleted(db: Db) {
    let s = TestServer::start(db).await;
    s.req_root(Method::DELETE, "/v2/tenants/superadmin")
        .expect_error(StatusCode::FORBIDDEN, "Superadmin cannot be deleted.")
        .await;
    // Not even without workers.
    put_tenant(
        &s,
        "superadmin",
        json!({"tenant": {"name": "superadmin", "workers": 0}}),
    )
    .ok()
    .await;
    s.req_root(Method::DELETE, "/v2/tenants/superadmin")
        .expect_error(StatusCode::FORBIDDEN, "Superadmin cannot be deleted.")
        .await;
    get_tenant(&s, "superadmin").ok().await;
    // The bootstrap key still works.
    assert_eq!(tenant_names(&s).await, ["superadmin"]);
}

async fn bootstrap_copies_superadmin_networks_and_container_managers(db: Db) {
    let s = TestServer::start(db).await;
    let sa = "(SELECT id FROM tenants WHERE name='superadmin')";
    s.exec_sql(&format!(
        "INSERT INTO networks (tenant_id, name, type, options) VALUES \
         ({sa}, 'shared-net', 'flannel_server', '{{\"address\": \"10.1.0.1:8080\"}}'), \
         ({sa}, 'other-net', 'flannel_etcd', '{{}}')"
    ))
    .await;
    s.exec_sql(&format!(
        "INSERT INTO container_managers (tenant_id, name, type, options) VALUES \
         ({sa}, 'k8s', 'openshift', '{{\"apiserver\": \"https://k8s:8443\"}}')"
    ))
    .await;
    // The superadmin's own `default` network differs from the one every tenant gets: it
    // must not be copied.
    s.exec_sql(&format!(
        "UPDATE networks SET type = 'flannel_server', options = '{{\"address\": \"x\"}}' \
         WHERE tenant_id = {sa} AND name = 'default'"
    ))
    .await;

    post_tenant(
        &s,
        json!({"tenant": {"name": "copied", "workers": 0}, "bootstrap": true}),
    )
    .ok()
    .await;
    let copied = "(SELECT id FROM tenants WHERE name='copied')";
    s.assert_counts([
        (
            format!("SELECT COUNT(*) FROM networks WHERE tenant_id = {copied}"),
            3,
        ),
        (
            format!(
                "SELECT COUNT(*) FROM networks WHERE tenant_id = {copied} AND name = 'shared-net' \
                 AND type = 'flannel_server' AND options = '{{\"address\": \"10.1.0.1:8080\"}}'"
            ),
            1,
        ),
        (
            format!(
                "SELECT COUNT(*) FROM networks WHERE tenant_id = {copied} AND name = 'default' \
                 AND type = 'flannel_etcd' AND options = '{{}}'"
            ),
            1,
        ),
        (
            format!(
                "SELECT COUNT(*) FROM container_managers WHERE tenant_id = {copied} AND name = 'k8s' \
                 AND type = 'openshift' AND options = '{{\"apiserver\": \"https://k8s:8443\"}}'"
            ),
            1,
        ),
        (
            format!("SELECT COUNT(*) FROM container_managers WHERE tenant_id = {copied}"),
            1,
        ),
    ])
    .await;

    // Without `bootstrap` (or with false) nothing is copied.
    s.create_tenant("plain", 0).await;
    post_tenant(
        &s,
        json!({"tenant": {"name": "plain2", "workers": 0}, "bootstrap": false}),
    )
    .ok()
    .await;
    for name in ["plain", "plain2"] {
        let t = format!("(SELECT id FROM tenants WHERE name='{name}')");
        s.assert_counts([
            (format!("SELECT COUNT(*) FROM networks WHERE tenant_id = {t}"), 1),
            (
                format!(
                    "SELECT COUNT(*) FROM networks WHERE tenant_id = {t} AND name = 'default' AND type = 'flannel_etcd'"
                ),
                1,
            ),
            (format!("SELECT COUNT(*) FROM container_managers WHERE tenant_id = {t}"), 0),
        ])
        .await;
    }
    // The superadmin keeps its own rows.
    assert_eq!(
        s.sql_count(&format!("SELECT COUNT(*) FROM networks WHERE tenant_id = {sa}"))
            .await,
        3
    );
}

async fn adminkey_restores_the_admin_role(db: Db) {
    let s = TestServer::start(db).await;
    let created = post_tenant(&s, json!({"tenant": {"name": "acme", "workers": 0}}))
        .ok()
        .await;
    let first = created["admin"]["apikey"]["key"].as_str().unwrap().to_string();
    let create_time = created["admin"]["createTime"].clone();
    // A tenant keeps one admin: make a second one, then demote `admin`.
    let boss = s.create_user(&first, "boss", "admin").await;
    assert_eq!(
        s.put(&boss, "/v2/users/admin")
            .json(json!({"role": "user"}))
            .ok()
            .await["role"],
        "user"
    );
    s.get(&first, "/v2/users")
        .expect_error(StatusCode::FORBIDDEN, "user unauthorized, must be admin.")
        .await;

    let body = s
        .req_root(Method::POST, "/v2/tenants/acme/adminkey")
        .json(json!({"description": "recovery"}))
        .ok()
        .await;
    let (apikey, recovery) = assert_admin_with_new_key(&body);
    let recovery = recovery.to_string();
    assert_eq!(body["createTime"], create_time, "the existing user is kept");
    assert_eq!(apikey["description"], "recovery");
    assert_ne!(recovery, first);

    // The new key works as an admin; so does the old one, its user being admin again.
    for key in [&recovery, &first] {
        s.get(key, "/v2/users").case(format!("{key:?}")).ok().await;
    }
    let admin = s.get(&boss, "/v2/users/admin").ok().await;
    assert_eq!(admin["role"], "admin");
    let keys = s.get(&boss, "/v2/users/admin/apikeys").ok().await;
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    assert_eq!(keys[1]["id"], apikey["id"], "newest last");
}

async fn adminkey_recreates_a_deleted_admin(db: Db) {
    let s = TestServer::start(db).await;
    let first = s.create_tenant("acme", 0).await;
    let boss = s.create_user(&first, "boss", "admin").await;
    s.delete(&boss, "/v2/users/admin").expect_empty_ok().await;
    s.get(&first, "/v3/namespaces")
        .expect_error(StatusCode::UNAUTHORIZED, "Invalid credentials.")
        .await;

    // No body at all.
    let body = s.req_root(Method::POST, "/v2/tenants/acme/adminkey").ok().await;
    assert_eq!(body["id"], "admin");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["role"], "admin");
    assert_eq!(body["apikey"]["description"], "");
    let key = body["apikey"]["key"].as_str().unwrap().to_string();
    let users = s.get(&key, "/v2/users").ok().await;
    let ids: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["admin", "boss"]);
    let keys = s.get(&key, "/v2/users/admin/apikeys").ok().await;
    assert_eq!(
        keys.as_array().unwrap().len(),
        1,
        "the deleted admin's keys stay gone: {keys}"
    );
    // The old key of the deleted admin stays dead.
    s.get(&first, "/v3/namespaces")
        .expect_error(StatusCode::UNAUTHORIZED, "Invalid credentials.")
        .await;
}

async fn adminkey_errors(db: Db) {
    let s = TestServer::start(db).await;
    s.req_root(Method::POST, "/v2/tenants/ghost/adminkey")
        .expect_error(StatusCode::NOT_FOUND, None)
        .await;
    let admin = s.create_tenant("acme", 0).await;
    s.post(&admin, "/v2/tenants/acme/adminkey")
        .expect_error(StatusCode::FORBIDDEN, "user unauthorized, must be superadmin.")
        .await;
    // The refused call issued nothing.
    let keys = s.get(&admin, "/v2/users/admin/apikeys").ok().await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    // The superadmin tenant itself can be recovered too.
    let key = s
        .req_root(Method::POST, "/v2/tenants/superadmin/adminkey")
        .ok()
        .await["apikey"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    s.get(&key, "/v2/tenants").ok().await;
}

/// Concurrent creates: the capacity check and the name check hold under races.
async fn concurrent_creates_respect_capacity_and_names(db: Db) {
    let s = TestServer::start_with(db, |c| c.worker_capacity = 15).await;
    // superadmin holds 10 workers: 5 of these 8 fit.
    let statuses = all_at_once(
        &s,
        (0..8).map(|i| json!({"tenant": {"name": format!("t{i}"), "workers": 1}})),
    )
    .await;
    assert_eq!(count_of(&statuses, StatusCode::OK), 5, "{statuses:?}");
    assert_eq!(count_of(&statuses, StatusCode::CONFLICT), 3, "{statuses:?}");
    assert_eq!(tenant_names(&s).await.len(), 6);
    let statuses = all_at_once(
        &s,
        (0..6).map(|_| json!({"tenant": {"name": "same", "workers": 0}})),
    )
    .await;
    assert_eq!(count_of(&statuses, StatusCode::OK), 1, "{statuses:?}");
    assert_eq!(count_of(&statuses, StatusCode::CONFLICT), 5, "{statuses:?}");
}

/// Sends every tenant create at once and answers the statuses.
async fn all_at_once(s: &TestServer, bodies: impl Iterator<Item = Value>) -> Vec<StatusCode> {
    let mut set = tokio::task::JoinSet::new();
    for body in bodies {
        set.spawn(s.root(Method::POST, "/v2/tenants").json(&body).send());
    }
    let mut statuses = Vec::new();
    while let Some(done) = set.join_next().await {
        statuses.push(done.unwrap().unwrap().status());
    }
    statuses
}

fn count_of(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|st| **st == status).count()
}

/// A delete racing a PUT that raises `workers`: never both succeed (a tenant with workers
/// is never deleted).
async fn delete_racing_a_workers_raise(db: Db) {
    let s = TestServer::start(db).await;
    for round in 0..12 {
        let name = format!("t{round}");
        s.create_tenant(&name, 0).await;
        let path = format!("/v2/tenants/{name}");
        let put = s
            .root(Method::PUT, &path)
            .json(&json!({"tenant": {"name": name, "workers": 1}}))
            .send();
        let delete = s.root(Method::DELETE, &path).send();
        let (put, delete) = tokio::join!(put, delete);
        let got = (put.unwrap().status(), delete.unwrap().status());
        assert!(
            got == (StatusCode::OK, StatusCode::CONFLICT) || got == (StatusCode::NOT_FOUND, StatusCode::OK),
            "round {round}: PUT, DELETE = {got:?}"
        );
    }
}

both_stores!(
    create_answers_tenant_admin_and_a_working_key,
    create_keeps_explicit_fields,
    list_is_sorted_by_name_with_superadmin,
    get_unknown_tenant_is_404,
    duplicate_tenant_is_409,
    invalid_tenant_bodies_are_invalid_input,
    worker_capacity_limits_create_and_update,
    put_replaces_the_complete_object,
    put_errors,
    put_checks_cluster_and_node_quotas,
    delete_tenant_rules,
    superadmin_cannot_be_deleted,
    bootstrap_copies_superadmin_networks_and_container_managers,
    adminkey_restores_the_admin_role,
    adminkey_recreates_a_deleted_admin,
    adminkey_errors,
    concurrent_creates_respect_capacity_and_names,
    delete_racing_a_workers_raise,
);
