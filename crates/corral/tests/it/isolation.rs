//! Tenant isolation (README 2.3): nothing of tenant B is visible or changeable from tenant A.
//! Another tenant's resource answers 404, never 403; names are scoped by tenant; the only
//! cross-tenant data is the superadmin's tenant list; deleting a tenant leaves the others be.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use corral_drivers::testing::{ClientKey, KeyFormat, KeyType};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer, basic, expect_error};
use crate::helpers::expect_each_error;

/// One tenant's people: its first admin, `<t>-user` (role user), `<t>-viewer`, and `shared`,
/// a user id that exists in both tenants (a user in alpha, a viewer in beta).
struct Side {
    name: &'static str,
    admin: String,
    user: String,
    viewer: String,
    shared: String,
}

struct Two {
    s: TestServer,
    a: Side,
    b: Side,
}

async fn side(s: &TestServer, name: &'static str, shared_role: &str) -> Side {
    let admin = s.create_tenant(name, 1).await;
    let user = s.create_user(&admin, &format!("{name}-user"), "user").await;
    let viewer = s.create_user(&admin, &format!("{name}-viewer"), "viewer").await;
    let shared = s.create_user(&admin, "shared", shared_role).await;
    Side {
        name,
        admin,
        user,
        viewer,
        shared,
    }
}

async fn two(db: Db) -> Two {
    two_on(TestServer::start(db).await).await
}

async fn two_on(s: TestServer) -> Two {
    let a = side(&s, "alpha", "user").await;
    let b = side(&s, "beta", "viewer").await;
    Two { s, a, b }
}

impl Two {
    /// `GET path` as the superadmin, expecting 200.
    async fn root_get(&self, path: &str) -> Value {
        self.s.req_root(Method::GET, path).ok().await
    }

    /// `GET path` as `key`, expecting 200.
    async fn get(&self, key: &str, path: &str) -> Value {
        self.s.get(key, path).ok().await
    }
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|x| x[field].as_str().unwrap().to_string())
        .collect()
}

async fn other_tenants_users_are_not_found(db: Db) {
    let t = two(db).await;
    let before = t.get(&t.b.admin, "/v2/users/beta-user").await;
    let cases = [
        (Method::GET, "/v2/users/beta-user", None),
        (
            Method::PUT,
            "/v2/users/beta-user",
            Some(json!({"role": "viewer", "description": "taken over"})),
        ),
        (Method::DELETE, "/v2/users/beta-user", None),
        (Method::GET, "/v2/users/beta-user/apikeys", None),
        (
            Method::POST,
            "/v2/users/beta-user/apikeys",
            Some(json!({"description": "backdoor"})),
        ),
    ];
    for (method, path, body) in cases {
        t.s.req(&t.a.admin, method.clone(), path)
            .json_opt(body)
            .case(format!("{method} {path}"))
            .expect_error(StatusCode::NOT_FOUND, "User 'beta-user' not found.")
            .await;
    }
    // The superadmin manages only tenant superadmin's users here.
    expect_each_error(
        [
            t.s.req_root(Method::GET, "/v2/users/beta-user"),
            t.s.req_root(Method::DELETE, "/v2/users/beta-user"),
        ],
        StatusCode::NOT_FOUND,
        "User 'beta-user' not found.",
    )
    .await;
    // B's user is untouched, keeps one key, and that key still works.
    assert_eq!(t.get(&t.b.admin, "/v2/users/beta-user").await, before);
    assert_eq!(before["role"], "user");
    let keys = t.get(&t.b.admin, "/v2/users/beta-user/apikeys").await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    t.get(&t.b.user, "/v3/namespaces").await;
    // An id that exists in A names A's user, never B's.
    let alpha_shared =
        t.s.put(&t.a.admin, "/v2/users/shared")
            .json(json!({"description": "alpha's"}))
            .ok()
            .await;
    assert_eq!(alpha_shared["tenant"], "alpha");
    assert_eq!(alpha_shared["role"], "user");
    let beta_shared = t.get(&t.b.admin, "/v2/users/shared").await;
    assert_eq!(beta_shared["tenant"], "beta");
    assert_eq!(beta_shared["role"], "viewer");
    assert_eq!(beta_shared["description"], "");
    // A may create its own user with B's id: ids are scoped by tenant.
    assert_eq!(
        t.s.post(&t.a.admin, "/v2/users")
            .json(json!({"id": "beta-user", "role": "viewer"}))
            .expect(StatusCode::CREATED)
            .await["tenant"],
        "alpha"
    );
    t.s.delete(&t.a.admin, "/v2/users/beta-user")
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(t.get(&t.b.admin, "/v2/users/beta-user").await, before);
    t.get(&t.b.user, "/v3/namespaces").await;
}

async fn other_tenants_api_keys_are_not_found(db: Db) {
    let t = two(db).await;
    let b_keys = t.get(&t.b.admin, "/v2/users/shared/apikeys").await;
    let b_key_id = b_keys[0]["id"].as_str().unwrap().to_string();
    let b_admin_key_id = t.get(&t.b.admin, "/v2/users/admin/apikeys").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Under a user id that exists in both tenants (`shared`, `admin`) and under A's own users.
    for (user, key_id) in [
        ("shared", &b_key_id),
        ("admin", &b_admin_key_id),
        ("alpha-user", &b_key_id),
    ] {
        let path = format!("/v2/users/{user}/apikeys/{key_id}");
        let message = format!("API key '{key_id}' of user '{user}' not found.");
        for method in [Method::GET, Method::DELETE] {
            t.s.req(&t.a.admin, method.clone(), &path)
                .case(format!("{method} {path}"))
                .expect_error(StatusCode::NOT_FOUND, &message)
                .await;
        }
    }
    // A's list of its `shared` keys does not show B's.
    let a_keys = t.get(&t.a.admin, "/v2/users/shared/apikeys").await;
    assert_eq!(a_keys.as_array().unwrap().len(), 1, "{a_keys}");
    assert_ne!(a_keys[0]["id"], b_key_id.as_str());
    // B's keys still work and still exist.
    assert_eq!(t.get(&t.b.admin, "/v2/users/shared/apikeys").await, b_keys);
    t.get(&t.b.shared, "/v3/namespaces").await;
    t.get(&t.b.admin, "/v2/users").await;
    // And B's admin cannot see A's keys either.
    let a_key_id = a_keys[0]["id"].as_str().unwrap();
    t.s.get(&t.b.admin, &format!("/v2/users/shared/apikeys/{a_key_id}"))
        .expect_error(StatusCode::NOT_FOUND, None)
        .await;
}

async fn namespaces_are_scoped_by_tenant(db: Db) {
    let t = two(db).await;
    let b_dev =
        t.s.put(&t.b.user, "/v3/namespaces/dev")
            .json(json!({"description": "beta dev", "config": {"owner": "beta"}}))
            .ok()
            .await;
    t.s.put(&t.b.user, "/v3/namespaces/only-beta").ok().await;
    // A cannot read, edit or delete B's namespace: 404 as for one that does not exist.
    for key in [&t.a.admin, &t.a.user, &t.a.viewer] {
        t.s.get(key, "/v3/namespaces/only-beta")
            .case(format!("{key:?}"))
            .expect_error(StatusCode::NOT_FOUND, "Namespace 'only-beta' not found.")
            .await;
    }
    for key in [&t.a.admin, &t.a.user] {
        t.s.put(key, "/v3/namespaces/only-beta/properties")
            .case(format!("{key:?}"))
            .json(json!({"description": "alpha was here"}))
            .expect_error(StatusCode::NOT_FOUND, "Namespace 'only-beta' not found.")
            .await;
        for path in [
            "/v3/namespaces/only-beta",
            "/v3/unrecoverable/namespaces/only-beta",
        ] {
            t.s.delete(key, path)
                .case(format!("{key:?}"))
                .expect_error(StatusCode::NOT_FOUND, "Namespace 'only-beta' not found.")
                .await;
        }
    }
    t.s.get(&t.a.admin, "/v3/namespaces/dev")
        .expect_error(StatusCode::NOT_FOUND, "Namespace 'dev' not found.")
        .await;
    // A creates its own `dev`: a new namespace with A's settings, not B's answered back.
    assert_eq!(
        t.s.put(&t.a.user, "/v3/namespaces/dev")
            .json(json!({"description": "alpha dev"}))
            .ok()
            .await,
        json!({"name": "dev", "description": "alpha dev", "config": {}})
    );
    assert_eq!(
        t.s.put(&t.a.user, "/v3/namespaces/dev/properties")
            .json(json!({"config": {"owner": "alpha"}}))
            .ok()
            .await,
        json!({"name": "dev", "description": "alpha dev", "config": {"owner": "alpha"}})
    );
    assert_eq!(t.get(&t.b.viewer, "/v3/namespaces/dev").await, b_dev);
    // Lists show only the caller's tenant.
    assert_eq!(
        ids(&t.get(&t.a.viewer, "/v3/namespaces").await, "name"),
        ["default", "dev"]
    );
    assert_eq!(
        ids(&t.get(&t.b.viewer, "/v3/namespaces").await, "name"),
        ["default", "dev", "only-beta"]
    );
    assert_eq!(ids(&t.root_get("/v3/namespaces").await, "name"), ["default"]);
    // Deleting A's `dev` (and emptying A's `default`) leaves B's alone.
    for path in ["/v3/namespaces/dev", "/v3/namespaces/default"] {
        t.s.delete(&t.a.user, path)
            .case(path)
            .expect_status(StatusCode::OK)
            .await;
    }
    assert_eq!(t.get(&t.b.viewer, "/v3/namespaces/dev").await, b_dev);
    assert_eq!(
        ids(&t.get(&t.b.viewer, "/v3/namespaces").await, "name"),
        ["default", "dev", "only-beta"]
    );
    assert_eq!(
        ids(&t.get(&t.a.viewer, "/v3/namespaces").await, "name"),
        ["default"]
    );
}

async fn user_lists_show_only_the_callers_tenant(db: Db) {
    let t = two(db).await;
    for side in [&t.a, &t.b] {
        let list = t.get(&side.admin, "/v2/users").await;
        let mut want = vec![
            "admin".to_string(),
            format!("{}-user", side.name),
            format!("{}-viewer", side.name),
            "shared".to_string(),
        ];
        want.sort();
        assert_eq!(ids(&list, "id"), want, "{list}");
        for u in list.as_array().unwrap() {
            assert_eq!(u["tenant"], side.name, "{u}");
        }
    }
    let list = t.root_get("/v2/users").await;
    assert_eq!(ids(&list, "id"), ["admin"]);
    assert_eq!(list[0]["tenant"], "superadmin");
}

async fn profiles_of_the_same_user_id_are_separate(db: Db) {
    let t = two(db).await;
    let profile = |key: &str| t.s.get(key, "/v2/profile");
    let put = |key: &str, body: Value| t.s.put(key, "/v2/profile").json(body);
    put(&t.a.shared, json!({"theme": "alpha"})).ok().await;
    profile(&t.b.shared)
        .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
        .await;
    // `admin` exists in every tenant, the superadmin's included.
    for key in [&t.b.admin, BOOTSTRAP_KEY] {
        profile(key)
            .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
            .await;
    }
    put(&t.b.shared, json!({"theme": "beta"})).ok().await;
    assert_eq!(profile(&t.a.shared).ok().await, json!({"theme": "alpha"}));
    assert_eq!(profile(&t.b.shared).ok().await, json!({"theme": "beta"}));
    t.s.delete(&t.a.shared, "/v2/profile")
        .expect_status(StatusCode::OK)
        .await;
    profile(&t.a.shared)
        .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
        .await;
    assert_eq!(profile(&t.b.shared).ok().await, json!({"theme": "beta"}));
}

async fn only_the_superadmin_sees_tenants(db: Db) {
    let t = two(db).await;
    let must = Some("user unauthorized, must be superadmin.");
    for key in [&t.a.admin, &t.a.user, &t.a.viewer] {
        for (method, path, body) in [
            (Method::GET, "/v2/tenants", None),
            (Method::GET, "/v2/tenants/beta", None),
            (Method::GET, "/v2/tenants/alpha", None),
            (
                Method::PUT,
                "/v2/tenants/beta",
                Some(json!({"tenant": {"workers": 0}})),
            ),
            (Method::DELETE, "/v2/tenants/beta", None),
            (Method::POST, "/v2/tenants/beta/adminkey", None),
        ] {
            t.s.req(key, method.clone(), path)
                .json_opt(body)
                .case(format!("{method} {path}"))
                .expect_error(StatusCode::FORBIDDEN, must)
                .await;
        }
    }
    let list = t.root_get("/v2/tenants").await;
    assert_eq!(ids(&list, "name"), ["alpha", "beta", "superadmin"]);
    assert_eq!(list[1]["workers"], 1);
    assert_eq!(
        t.root_get("/v2/tenants/beta").await,
        json!({"name": "beta", "description": "", "workers": 1, "maxClusters": 2147483647, "maxNodes": 2147483647})
    );
}

async fn deleting_a_tenant_revokes_it_and_spares_the_others(db: Db) {
    let t = two(db).await;
    let b_token = t.s.mint_token(&t.b.user).await;
    let a_token = t.s.mint_token(&t.a.user).await;
    t.s.put(&t.b.admin, "/v3/namespaces/dev").ok().await;
    t.s.put(&t.a.admin, "/v3/namespaces/dev")
        .json(json!({"description": "alpha dev"}))
        .ok()
        .await;
    t.s.put(&t.a.shared, "/v2/profile")
        .json(json!({"mine": true}))
        .ok()
        .await;
    let a_users = t.get(&t.a.admin, "/v2/users").await;
    let a_namespaces = t.get(&t.a.viewer, "/v3/namespaces").await;
    // Not while it has workers.
    t.s.req_root(Method::DELETE, "/v2/tenants/beta")
        .expect_error(
            StatusCode::CONFLICT,
            "Tenant beta still has 1 workers. Cannot delete it until workers are set to 0.",
        )
        .await;
    t.get(&t.b.user, "/v3/namespaces").await;
    assert_eq!(
        t.s.req_root(Method::PUT, "/v2/tenants/beta")
            .json(json!({"tenant": {"name": "beta", "workers": 0}}))
            .ok()
            .await["workers"],
        0
    );
    let resp = t.s.root(Method::DELETE, "/v2/tenants/beta").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "");
    // Every credential of B is now invalid, in every form.
    for key in [&t.b.admin, &t.b.user, &t.b.viewer, &t.b.shared, &b_token] {
        t.s.get(key, "/v3/namespaces")
            .case(format!("{key:?}"))
            .expect_unauthorized("Invalid credentials.")
            .await;
    }
    t.s.req_anon(Method::GET, "/v3/namespaces")
        .with(|r| r.header("Coopr-UserID", "admin"))
        .with(|r| r.header("Coopr-TenantID", "beta"))
        .with(|r| r.header("Coopr-ApiKey", &t.b.admin))
        .expect_unauthorized("Invalid credentials.")
        .await;
    t.s.req_root(Method::GET, "/v2/tenants/beta")
        .expect_error(StatusCode::NOT_FOUND, "tenant beta not found")
        .await;
    assert_eq!(
        ids(&t.root_get("/v2/tenants").await, "name"),
        ["alpha", "superadmin"]
    );
    // A is untouched: keys, tokens, users, namespaces, profile.
    for key in [&t.a.admin, &t.a.user, &t.a.viewer, &t.a.shared, &a_token] {
        t.get(key, "/v3/namespaces").await;
    }
    assert_eq!(t.get(&t.a.admin, "/v2/users").await, a_users);
    assert_eq!(t.get(&t.a.viewer, "/v3/namespaces").await, a_namespaces);
    assert_eq!(
        t.get(&t.a.viewer, "/v3/namespaces/dev").await["description"],
        "alpha dev"
    );
    assert_eq!(t.get(&t.a.shared, "/v2/profile").await, json!({"mine": true}));
    // A new tenant of the same name starts empty; B's old keys stay dead.
    let new_b = t.s.create_tenant("beta", 0).await;
    assert_eq!(ids(&t.get(&new_b, "/v2/users").await, "id"), ["admin"]);
    assert_eq!(ids(&t.get(&new_b, "/v3/namespaces").await, "name"), ["default"]);
    for key in [&t.b.admin, &t.b.user, &b_token] {
        t.s.get(key, "/v3/namespaces")
            .case(format!("{key:?}"))
            .expect_unauthorized("Invalid credentials.")
            .await;
    }
}

async fn a_credential_never_crosses_into_another_tenant(db: Db) {
    let t = two(db).await;
    let b_token = t.s.mint_token(&t.b.shared).await;
    // `shared` exists in both tenants; B's secrets never authenticate as A's `shared`.
    for secret in [&t.b.shared, &b_token] {
        t.s.req_anon(Method::GET, "/v2/profile")
            .case(format!("{secret:?}"))
            .with(|r| r.header("Coopr-UserID", "shared"))
            .with(|r| r.header("Coopr-TenantID", "alpha"))
            .with(|r| r.header("Coopr-ApiKey", secret.as_str()))
            .expect_unauthorized("Invalid credentials.")
            .await;
        for user_part in ["shared@alpha", "shared"] {
            t.s.req_anon(Method::GET, "/v2/profile")
                .case(format!("{secret:?}, {user_part:?}"))
                .with(|r| r.header("Authorization", basic(user_part, secret)))
                .expect_unauthorized("Invalid credentials.")
                .await;
        }
        t.s.get(secret, "/v2/profile")
            .case(format!("{secret:?}"))
            .with(|r| r.header("Coopr-TenantID", "alpha"))
            .expect_unauthorized("Invalid credentials.")
            .await;
    }
    // B's admin key is no admin key in A.
    t.s.req_anon(Method::GET, "/v2/users")
        .with(|r| r.header("Authorization", basic("admin@alpha", &t.b.admin)))
        .expect_unauthorized("Invalid credentials.")
        .await;
    // While each works at home.
    assert_eq!(
        ids(
            &t.s.req_anon(Method::GET, "/v2/users")
                .with(|r| r.header("Authorization", basic("admin@beta", &t.b.admin)))
                .ok()
                .await,
            "tenant"
        )[0],
        "beta"
    );
}

/// Base64 of a new private key, as a host registration carries it.
fn ssh_key() -> String {
    let k = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap();
    STANDARD.encode(&k.private_key)
}

async fn other_tenants_hosts_and_clusters_are_not_found(db: Db) {
    let s = TestServer::start_with(db, |s| {
        s.host_allow = vec!["127.0.0.0/8".into()];
        s.ssh_port = 9;
        s.ssh_connect_timeout = 2;
    })
    .await;
    let t = two_on(s).await;
    // No background work: every record stays as the API left it.
    for name in ["alpha", "beta"] {
        t.s.req_root(Method::PUT, &format!("/v2/tenants/{name}"))
            .json(json!({"tenant": {"name": name, "workers": 0}}))
            .ok()
            .await;
    }
    let (a_key, b_key) = (ssh_key(), ssh_key());
    let address = "127.202.0.1";
    let send = |key: &str, method: Method, path: &str, body: Option<Value>| {
        t.s.req(key, method, path).json_opt(body)
    };
    // A: a cluster with one member host and an upgrade record.
    send(&t.a.user, Method::PUT, "/api/v0/cluster/prod", None)
        .expect(StatusCode::CREATED)
        .await;
    send(
        &t.a.user,
        Method::PUT,
        &format!("/api/v0/host/{address}"),
        Some(json!({"ssh_priv_key": a_key, "cluster": "prod"})),
    )
    .expect(StatusCode::CREATED)
    .await;
    let upgrade = send(&t.a.user, Method::PUT, "/api/v0/cluster/prod/upgrade", None)
        .expect(StatusCode::CREATED)
        .await;
    let a_views = [
        format!("/api/v0/host/{address}"),
        format!("/api/v0/host/{address}/status"),
        format!("/api/v0/host/{address}/creds"),
        "/api/v0/hosts".to_string(),
        "/api/v0/cluster/prod".to_string(),
        "/api/v0/cluster/prod/hosts".to_string(),
        format!("/api/v0/cluster/prod/hosts/{address}"),
    ];
    let mut before = Vec::new();
    for path in &a_views {
        before.push(t.get(&t.a.admin, path).await);
    }
    assert_eq!(before[2]["ssh_priv_key"], a_key.as_str());
    assert_eq!(before[5], json!([address]));
    // B (and the superadmin, whose tenant is another) finds none of it: 404 as for nothing.
    let no_host = format!("Host '{address}' does not exist.");
    let no_host = no_host.as_str();
    let no_cluster = "Cluster 'prod' does not exist.";
    let reads = [
        (format!("/api/v0/host/{address}"), no_host),
        (format!("/api/v0/host/{address}/status"), no_host),
        ("/api/v0/cluster/prod".to_string(), no_cluster),
        ("/api/v0/cluster/prod/hosts".to_string(), no_cluster),
        (format!("/api/v0/cluster/prod/hosts/{address}"), no_cluster),
        ("/api/v0/cluster/prod/deploy".to_string(), no_cluster),
        ("/api/v0/cluster/prod/upgrade".to_string(), no_cluster),
        ("/api/v0/cluster/prod/restart".to_string(), no_cluster),
    ];
    for key in [&t.b.viewer, &t.b.user, &t.b.admin, BOOTSTRAP_KEY] {
        for (path, message) in &reads {
            let resp = send(key, Method::GET, path, None).send().await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "GET {path}");
            expect_error(resp, StatusCode::NOT_FOUND, Some(message)).await;
        }
        assert_eq!(t.get(key, "/api/v0/hosts").await, json!([]));
        assert_eq!(t.get(key, "/api/v0/clusters").await, json!([]));
    }
    let writes = [
        (
            Method::GET,
            format!("/api/v0/host/{address}/creds"),
            None,
            no_host,
        ),
        (Method::DELETE, format!("/api/v0/host/{address}"), None, no_host),
        (
            Method::PUT,
            "/api/v0/cluster/prod/hosts".to_string(),
            Some(json!({"old": [address], "new": []})),
            no_cluster,
        ),
        (
            Method::PUT,
            format!("/api/v0/cluster/prod/hosts/{address}"),
            None,
            no_cluster,
        ),
        (
            Method::DELETE,
            format!("/api/v0/cluster/prod/hosts/{address}"),
            None,
            no_cluster,
        ),
        (
            Method::PUT,
            "/api/v0/cluster/prod/upgrade".to_string(),
            None,
            no_cluster,
        ),
        (
            Method::PUT,
            "/api/v0/cluster/prod/restart".to_string(),
            None,
            no_cluster,
        ),
        (
            Method::PUT,
            "/api/v0/cluster/prod/deploy".to_string(),
            Some(json!({"version": "7.2.6"})),
            no_cluster,
        ),
        (
            Method::DELETE,
            "/api/v0/cluster/prod".to_string(),
            None,
            no_cluster,
        ),
    ];
    for key in [&t.b.admin, BOOTSTRAP_KEY] {
        for (method, path, body, message) in &writes {
            let resp = send(key, method.clone(), path, body.clone()).send().await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
            expect_error(resp, StatusCode::NOT_FOUND, Some(message)).await;
        }
    }
    // Names are scoped by tenant: B registers the same address and makes its own `prod`.
    assert_eq!(
        send(
            &t.b.user,
            Method::PUT,
            &format!("/api/v0/host/{address}"),
            Some(json!({"ssh_priv_key": b_key})),
        )
        .expect(StatusCode::CREATED)
        .await["status"],
        "investigating"
    );
    assert_eq!(
        send(&t.b.user, Method::PUT, "/api/v0/cluster/prod", None)
            .expect(StatusCode::CREATED)
            .await["hosts"],
        json!({"total": 0, "available": 0, "unavailable": 0})
    );
    send(&t.b.viewer, Method::GET, "/api/v0/cluster/prod/upgrade", None)
        .case("B's own prod has no record")
        .expect_status(StatusCode::NO_CONTENT)
        .await;
    let b_creds = t.get(&t.b.admin, &format!("/api/v0/host/{address}/creds")).await;
    assert_eq!(b_creds["ssh_priv_key"], b_key.as_str());
    for path in [format!("/api/v0/host/{address}"), "/api/v0/cluster/prod".into()] {
        assert_eq!(
            send(&t.b.user, Method::DELETE, &path, None).ok().await,
            json!([]),
            "{path}"
        );
    }
    // A's objects are exactly as they were.
    for (path, was) in a_views.iter().zip(&before) {
        assert_eq!(&t.get(&t.a.admin, path).await, was, "{path}");
    }
    let now = t.get(&t.a.viewer, "/api/v0/cluster/prod/upgrade").await;
    assert_eq!(now["started_at"], upgrade["started_at"]);
    assert_eq!(now["status"], "in_process");
}

both_stores!(
    other_tenants_hosts_and_clusters_are_not_found,
    other_tenants_users_are_not_found,
    other_tenants_api_keys_are_not_found,
    namespaces_are_scoped_by_tenant,
    user_lists_show_only_the_callers_tenant,
    profiles_of_the_same_user_id_are_separate,
    only_the_superadmin_sees_tenants,
    deleting_a_tenant_revokes_it_and_spares_the_others,
    a_credential_never_crosses_into_another_tenant,
);
