//! Commissaire networks and container managers (commissaire-v0.md 2.5, 2.6, 5.7-5.14): lists
//! under both paths, create-if-absent `PUT` (201, 200 for the same settings, 409 otherwise),
//! the accepted alternative spellings, validation, deletes that clusters block, the sealed
//! and masked token, tenant isolation and who may write.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer};
use crate::helpers::expect_each_error;

const TOKEN: &str = "tok-Sup3rS3cret-4f9a7c";

/// The create-if-absent `PUT path`: `body` creates the object (201 with `want`, which a GET
/// then answers); each of `same` answers 200 with `want`; each of `different` answers 409;
/// and the object is still `want`. A failure names the body.
async fn put_creates_then_compares(
    s: &TestServer,
    key: &str,
    path: &str,
    body: Value,
    want: &Value,
    same: impl IntoIterator<Item = Value>,
    different: impl IntoIterator<Item = Value>,
) {
    assert_eq!(
        &s.put(key, path).json(body).expect(StatusCode::CREATED).await,
        want
    );
    assert_eq!(&s.get_json(key, path).await, want);
    for same in same {
        assert_eq!(
            &s.put(key, path).case(&same).json(&same).ok().await,
            want,
            "{same}"
        );
    }
    for different in different {
        s.put(key, path)
            .case(&different)
            .json(&different)
            .expect_error(StatusCode::CONFLICT, None)
            .await;
    }
    assert_eq!(&s.get_json(key, path).await, want);
}

fn invalid_name(name: &str) -> String {
    format!("Invalid name '{name}': use 1 to 255 characters from A-Z a-z 0-9 _ -.")
}

/// Stages a cluster of `tenant` that uses `network` and `cm` (no cluster API is needed).
async fn add_cluster(s: &TestServer, tenant: &str, cluster: &str, network: &str, cm: &str) {
    s.exec_sql(&format!(
        "INSERT INTO clusters (tenant_id, name, create_time, network, container_manager) \
         VALUES ((SELECT id FROM tenants WHERE name = '{tenant}'), '{cluster}', 0, '{network}', '{cm}')"
    ))
    .await;
}

async fn remove_clusters(s: &TestServer, tenant: &str) {
    s.exec_sql(&format!(
        "DELETE FROM clusters WHERE tenant_id = (SELECT id FROM tenants WHERE name = '{tenant}')"
    ))
    .await;
}

// ---- Networks

async fn network_lists_are_sorted_and_have_default(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for path in [
        "/api/v0/networks",
        "/api/v0/network",
        "/api/v0/networks/",
        "/api/v0/network/",
    ] {
        assert_eq!(s.get_json(&admin, path).await, json!(["default"]), "{path}");
    }
    for name in ["zeta", "Alpha", "beta", "d_1", "dev", "_x", "Z-9"] {
        s.put(&admin, &format!("/api/v0/network/{name}"))
            .json(json!({}))
            .expect(StatusCode::CREATED)
            .await;
    }
    let want = json!(["Alpha", "Z-9", "_x", "beta", "d_1", "default", "dev", "zeta"]);
    assert_eq!(s.get_json(&admin, "/api/v0/networks").await, want);
    assert_eq!(s.get_json(&admin, "/api/v0/network").await, want);
    s.req(&admin, Method::HEAD, "/api/v0/network")
        .expect_status(StatusCode::OK)
        .await;
    // The superadmin tenant has its own `default` and sees none of acme's.
    assert_eq!(
        s.get_json(BOOTSTRAP_KEY, "/api/v0/networks").await,
        json!(["default"])
    );
    assert_eq!(
        s.get_json(&admin, "/api/v0/network/default").await,
        json!({"name": "default", "type": "flannel_etcd", "options": {}})
    );
}

async fn network_put_creates_then_compares(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let path = "/api/v0/network/mynetwork";
    let body = json!({"type": "flannel_server", "options": {"address": "192.168.152.101:8080"}});
    let want = json!({"name": "mynetwork", "type": "flannel_server", "options": {"address": "192.168.152.101:8080"}});
    // The same settings again: 200 with the existing object, also with the matching name,
    // or the alternative type spelling (an unknown field is a 400: robust.rs). Different settings: 409, nothing
    // changes.
    let same = [
        body.clone(),
        json!({"name": "mynetwork", "type": "flannel_server", "options": {"address": "192.168.152.101:8080"}}),
        json!({"type": "flanneld_service", "options": {"address": "192.168.152.101:8080"}}),
    ];
    let different = [
        json!({"type": "flannel_server", "options": {"address": "192.168.152.101:8081"}}),
        json!({"type": "flannel_server", "options": {"address": "192.168.152.101:8080", "extra": 1}}),
        json!({}),
        json!({"type": "flannel_etcd"}),
    ];
    put_creates_then_compares(&s, &admin, path, body, &want, same, different).await;

    // No body, an empty object or null fields: flannel_etcd with `{}`.
    let plain = json!({"name": "plain", "type": "flannel_etcd", "options": {}});
    assert_eq!(
        s.put(&admin, "/api/v0/network/plain")
            .expect(StatusCode::CREATED)
            .await,
        plain
    );
    for same in [
        json!({}),
        json!({"type": null, "options": null}),
        json!({"type": "flannel_etcd", "options": {}}),
    ] {
        assert_eq!(
            s.put(&admin, "/api/v0/network/plain")
                .case(format!("{same:?}"))
                .json(same)
                .ok()
                .await,
            plain
        );
    }
    // flannel_etcd keeps any options object as given.
    let opts = json!({"etcd_prefix": "/atomic.io/network", "n": 5, "nested": {"a": [1, 2]}});
    let free = json!({"name": "free", "type": "flannel_etcd", "options": opts});
    assert_eq!(
        s.put(&admin, "/api/v0/network/free")
            .json(json!({"type": "flannel_etcd", "options": opts}))
            .expect(StatusCode::CREATED)
            .await,
        free
    );
    assert_eq!(s.get_json(&admin, "/api/v0/network/free").await, free);

    // `default` exists: the same settings answer 200, others 409.
    assert_eq!(
        s.put(&admin, "/api/v0/network/default")
            .json(json!({}))
            .ok()
            .await,
        json!({"name": "default", "type": "flannel_etcd", "options": {}})
    );
    s.put(&admin, "/api/v0/network/default")
        .json(json!({"type": "flannel_server", "options": {"address": "10.0.0.1:1"}}))
        .expect_error(StatusCode::CONFLICT, None)
        .await;

    // Trailing slash.
    s.put(&admin, "/api/v0/network/slash/")
        .json(json!({}))
        .expect(StatusCode::CREATED)
        .await;
    assert_eq!(
        s.get_json(&admin, "/api/v0/network/slash/").await["name"],
        "slash"
    );
}

async fn network_alias_and_address_are_stored_canonically(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let want = json!({"name": "legacy", "type": "flannel_server", "options": {"address": "flannel.example.com:8080"}});
    assert_eq!(
        s.put(&admin, "/api/v0/network/legacy")
            .json(json!({"type": "flanneld_service", "options": {"address": "Flannel.Example.COM.:8080"}}))
            .expect(StatusCode::CREATED)
            .await,
        want
    );
    assert_eq!(s.get_json(&admin, "/api/v0/network/legacy").await, want);
    assert_eq!(
        s.sql_count(
            "SELECT COUNT(*) FROM networks WHERE name = 'legacy' AND type = 'flannel_server' \
             AND options LIKE '%flannel.example.com:8080%'"
        )
        .await,
        1
    );
    // Another spelling of the same address is the same setting.
    assert_eq!(
        s.put(&admin, "/api/v0/network/legacy")
            .json(json!({"type": "flannel_server", "options": {"address": "flannel.example.com:8080"}}))
            .ok()
            .await,
        want
    );
    // IPv6 in brackets, compressed; IPv4-mapped becomes IPv4.
    for (name, given, stored) in [
        ("v6", "[FE80:0:0:0:0:0:0:1]:8080", "[fe80::1]:8080"),
        ("mapped", "[::ffff:10.1.2.3]:65535", "10.1.2.3:65535"),
    ] {
        assert_eq!(
            s.put(&admin, &format!("/api/v0/network/{name}"))
                .case(format!("{given:?}, {stored:?}"))
                .json(json!({"type": "flannel_server", "options": {"address": given}}))
                .expect(StatusCode::CREATED)
                .await["options"]["address"],
            json!(stored)
        );
    }
}

async fn network_put_validation(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let path = "/api/v0/network/bad";
    let required = "Network type 'flannel_server' requires options.address (\"host:port\").";
    let mut cases = vec![(
        json!({"type": "calico"}),
        "Unknown network type 'calico': use flannel_etcd or flannel_server.".to_string(),
    )];
    for body in [
        json!({"type": "flannel_server"}),
        json!({"type": "flannel_server", "options": {}}),
        json!({"type": "flanneld_service", "options": {"address": null}}),
    ] {
        cases.push((body, required.to_string()));
    }
    for address in [
        "192.168.152.101",
        "192.168.152.101:",
        ":8080",
        "host:0",
        "host:65536",
        "host:http",
        "01.2.3.4:80",
        "1.2.3.256:80",
        "fe80::1:80",
        "[fe80::1]",
        "bad_host:80",
        "-bad:80",
        "a b:80",
        "",
    ] {
        cases.push((
            json!({"type": "flannel_server", "options": {"address": address}}),
            format!(
                "Invalid options.address '{address}': use \"host:port\" with a host address and a port from 1 to 65535."
            ),
        ));
    }
    cases.push((
        json!({"type": "flannel_server", "options": {"address": 8080}}),
        "options.address must be a string.".to_string(),
    ));
    cases.push((
        json!({"name": "other"}),
        "The name 'other' in the body does not match the name 'bad' in the path.".to_string(),
    ));
    s.expect_rejected(&admin, Method::PUT, path, cases).await;
    // Wrong JSON types anywhere: 400.
    s.expect_bad_bodies(
        &admin,
        Method::PUT,
        path,
        [
            json!([]),
            json!("flannel_etcd"),
            json!(5),
            json!({"type": 5}),
            json!({"type": ["flannel_etcd"]}),
            json!({"options": "address=x"}),
            json!({"options": []}),
            json!({"options": 1}),
            json!({"name": 7}),
        ],
    )
    .await;
    s.put(&admin, path)
        .with(|r| r.body("{\"type\": "))
        .expect_not_json()
        .await;
    // Invalid names, on every method.
    let long = "n".repeat(256);
    for (raw, name) in [
        ("a%20b", "a b"),
        ("a.b", "a.b"),
        (long.as_str(), long.as_str()),
        ("caf%C3%A9", "café"),
    ] {
        let p = format!("/api/v0/network/{raw}");
        for (method, body) in [
            (Method::PUT, Some(json!({}))),
            (Method::GET, None),
            (Method::DELETE, None),
        ] {
            s.req(&admin, method.clone(), &p)
                .case(format!("{raw:?}, {name:?}, {method:?}, {body:?}"))
                .json_opt(body)
                .expect_error(StatusCode::BAD_REQUEST, &invalid_name(name))
                .await;
        }
    }
    // Nothing was created.
    assert_eq!(s.get_json(&admin, "/api/v0/networks").await, json!(["default"]));
    // The longest valid name works.
    let name = "n".repeat(255);
    s.put(&admin, &format!("/api/v0/network/{name}"))
        .json(json!({}))
        .expect(StatusCode::CREATED)
        .await;
}

async fn network_delete(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for name in ["mynetwork", "other"] {
        s.put(&admin, &format!("/api/v0/network/{name}"))
            .json(json!({}))
            .expect(StatusCode::CREATED)
            .await;
    }
    s.delete(&admin, "/api/v0/network/other").expect_deleted().await;
    let gone = "Network 'other' does not exist.";
    expect_each_error(
        [
            s.get(&admin, "/api/v0/network/other"),
            s.delete(&admin, "/api/v0/network/other"),
        ],
        StatusCode::NOT_FOUND,
        gone,
    )
    .await;
    s.delete(&admin, "/api/v0/network/ghost")
        .expect_error(StatusCode::NOT_FOUND, "Network 'ghost' does not exist.")
        .await;
    // `default` stays.
    for _ in 0..2 {
        s.delete(&admin, "/api/v0/network/default")
            .expect_error(StatusCode::CONFLICT, "Network 'default' cannot be deleted.")
            .await;
    }
    // A network in use by clusters: the first cluster by byte order is named.
    add_cluster(&s, "acme", "zz", "mynetwork", "").await;
    add_cluster(&s, "acme", "mycluster", "mynetwork", "").await;
    add_cluster(&s, "acme", "Z", "default", "").await;
    s.delete(&admin, "/api/v0/network/mynetwork")
        .expect_error(
            StatusCode::CONFLICT,
            "Network 'mynetwork' is used by cluster 'mycluster'.",
        )
        .await;
    assert_eq!(
        s.get_json(&admin, "/api/v0/networks").await,
        json!(["default", "mynetwork"])
    );
    remove_clusters(&s, "acme").await;
    s.delete(&admin, "/api/v0/network/mynetwork/")
        .expect_deleted()
        .await;
    assert_eq!(s.get_json(&admin, "/api/v0/networks").await, json!(["default"]));
    // A deleted network can be created anew with other settings.
    let body = json!({"type": "flannel_server", "options": {"address": "10.0.0.1:8285"}});
    assert_eq!(
        s.put(&admin, "/api/v0/network/other")
            .json(body)
            .expect(StatusCode::CREATED)
            .await["type"],
        "flannel_server"
    );
}

// ---- Container managers

async fn container_manager_lists(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for path in [
        "/api/v0/containermanagers",
        "/api/v0/containermanager",
        "/api/v0/containermanager/",
    ] {
        assert_eq!(s.get_json(&admin, path).await, json!([]), "{path}");
    }
    for name in ["prod_openshift", "Beta", "alpha", "a-1"] {
        s.put(&admin, &format!("/api/v0/containermanager/{name}"))
            .json(json!({"type": "trivial"}))
            .expect(StatusCode::CREATED)
            .await;
    }
    let want = json!(["Beta", "a-1", "alpha", "prod_openshift"]);
    assert_eq!(s.get_json(&admin, "/api/v0/containermanagers").await, want);
    assert_eq!(s.get_json(&admin, "/api/v0/containermanager").await, want);
    s.req(&admin, Method::HEAD, "/api/v0/containermanagers")
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(
        s.get_json(BOOTSTRAP_KEY, "/api/v0/containermanagers").await,
        json!([])
    );
}

async fn container_manager_put_and_compare(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let path = "/api/v0/containermanager/prod_openshift";
    let body = json!({"type": "openshift", "options": {"apiserver": "https://192.168.152.101:8080/api/"}});
    let want = json!({"name": "prod_openshift", "type": "openshift", "options": {"apiserver": "https://192.168.152.101:8080/api/"}});
    // The same settings: `server_url` and `apiserver` compare equal; unknown fields and
    // unknown options are ignored.
    let same = [
        body.clone(),
        json!({"name": "prod_openshift", "type": "openshift", "options": {"server_url": "https://192.168.152.101:8080/api/"}}),
        json!({"type": "openshift", "options": {"apiserver": "https://192.168.152.101:8080/api/",
                                               "server_url": "https://192.168.152.101:8080/api/"}}),
        json!({"type": "openshift", "options": {"apiserver": "https://192.168.152.101:8080/api/", "verify": false}}),
        json!({"type": "openshift", "options": {"apiserver": "https://192.168.152.101:8080/api/", "token": null}}),
    ];
    let different = [
        json!({"type": "openshift", "options": {"apiserver": "https://192.168.152.101:8080/"}}),
        json!({"type": "openshift", "options": {"apiserver": "https://192.168.152.101:8080/api/", "token": "t"}}),
        json!({"type": "trivial"}),
    ];
    put_creates_then_compares(&s, &admin, path, body, &want, same, different).await;

    // `server_url` on input is stored and answered as `apiserver`.
    let legacy = json!({"name": "legacy", "type": "openshift", "options": {"apiserver": "http://k8s.example.com:8080"}});
    assert_eq!(
        s.put(&admin, "/api/v0/containermanager/legacy")
            .json(json!({"type": "openshift", "options": {"server_url": "http://k8s.example.com:8080"}}))
            .expect(StatusCode::CREATED)
            .await,
        legacy
    );
    assert_eq!(
        s.get_json(&admin, "/api/v0/containermanager/legacy").await,
        legacy
    );
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM container_managers WHERE options LIKE '%server_url%'")
            .await,
        0
    );

    // `trivial` has no options: any given are ignored.
    let noop = json!({"name": "noop", "type": "trivial", "options": {}});
    assert_eq!(
        s.put(&admin, "/api/v0/containermanager/noop")
            .json(json!({"type": "trivial", "options": {"apiserver": "https://x", "token": TOKEN}}))
            .expect(StatusCode::CREATED)
            .await,
        noop
    );
    assert_eq!(
        s.put(&admin, "/api/v0/containermanager/noop")
            .json(json!({"type": "trivial"}))
            .ok()
            .await,
        noop
    );
    assert_eq!(
        s.sql_count(&format!(
            "SELECT COUNT(*) FROM container_managers WHERE name = 'noop' AND token_sealed = '' \
             AND options = '{{}}' AND options NOT LIKE '%{TOKEN}%'"
        ))
        .await,
        1
    );
}

async fn container_manager_token_is_sealed_and_masked(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let path = "/api/v0/containermanager/k8s";
    let body = json!({"type": "openshift", "options": {"apiserver": "https://k8s:6443", "token": TOKEN}});
    let want = json!({"name": "k8s", "type": "openshift", "options": {"apiserver": "https://k8s:6443", "token": "********"}});
    // Created: 201. The same token again: 200 (also as `server_url`). Another token, no
    // token, or the mask itself: 409. Then the reads. No answer shows the token.
    let mut requests = vec![
        (Method::PUT, path, Some(body.clone()), StatusCode::CREATED),
        (Method::PUT, path, Some(body.clone()), StatusCode::OK),
        (
            Method::PUT,
            path,
            Some(json!({"type": "openshift", "options": {"server_url": "https://k8s:6443", "token": TOKEN}})),
            StatusCode::OK,
        ),
    ];
    for different in [
        json!({"type": "openshift", "options": {"apiserver": "https://k8s:6443", "token": "other"}}),
        json!({"type": "openshift", "options": {"apiserver": "https://k8s:6443"}}),
        json!({"type": "openshift", "options": {"apiserver": "https://k8s:6443", "token": "********"}}),
        json!({"type": "openshift", "options": {"apiserver": "https://k8s:6443", "token": format!("{TOKEN} ")}}),
    ] {
        requests.push((Method::PUT, path, Some(different), StatusCode::CONFLICT));
    }
    for p in [path, "/api/v0/containermanagers", "/api/v0/containermanager"] {
        requests.push((Method::GET, p, None, StatusCode::OK));
    }
    let mut texts = Vec::new();
    for (i, (method, p, body, status)) in requests.into_iter().enumerate() {
        texts.push(
            s.req(&admin, method, p)
                .json_opt(body)
                .case(i)
                .expect_status(status)
                .await,
        );
    }
    assert_eq!(serde_json::from_str::<Value>(&texts[0]).unwrap(), want);
    assert_eq!(
        serde_json::from_str::<Value>(texts.last().unwrap()).unwrap(),
        json!(["k8s"])
    );
    assert_eq!(s.get_json(&admin, path).await, want);
    for t in &texts {
        assert!(!t.contains(TOKEN), "the token leaked: {t}");
    }
    // At rest: not in clear anywhere in the row, not in the options, sealed in its column.
    assert_eq!(
        s.sql_count(&format!(
            "SELECT COUNT(*) FROM container_managers WHERE options LIKE '%{TOKEN}%' \
             OR token_sealed LIKE '%{TOKEN}%' OR name LIKE '%{TOKEN}%' OR type LIKE '%{TOKEN}%'"
        ))
        .await,
        0
    );
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM container_managers WHERE options LIKE '%token%'")
            .await,
        0
    );
    assert_eq!(
        s.sql_count(
            "SELECT COUNT(*) FROM container_managers WHERE name = 'k8s' AND token_sealed LIKE 'v1:%'"
        )
        .await,
        1
    );
    // A viewer sees the mask too.
    let viewer = s.create_user(&admin, "vic", "viewer").await;
    assert_eq!(s.get_json(&viewer, path).await, want);
    // An empty token is a token.
    assert_eq!(
        s.put(&admin, "/api/v0/containermanager/empty")
            .json(json!({"type": "openshift", "options": {"apiserver": "https://k8s:6443", "token": ""}}))
            .expect(StatusCode::CREATED)
            .await["options"]["token"],
        "********"
    );
    s.put(&admin, "/api/v0/containermanager/empty")
        .json(json!({"type": "openshift", "options": {"apiserver": "https://k8s:6443"}}))
        .expect_error(StatusCode::CONFLICT, None)
        .await;
}

async fn container_manager_put_validation(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let path = "/api/v0/containermanager/bad";
    let required = "A container manager type is required: use openshift or trivial.";
    s.put(&admin, path)
        .expect_error(StatusCode::BAD_REQUEST, required)
        .await;
    let missing = "Container manager type 'openshift' requires options.apiserver (an http or https URL).";
    let together =
        "options.certificate_path and options.certificate_key_path go together: give both or neither.";
    let mut cases: Vec<(Value, String)> = Vec::new();
    for body in [
        json!({}),
        json!({"type": null, "options": {"apiserver": "https://k"}}),
    ] {
        cases.push((body, required.to_string()));
    }
    cases.push((
        json!({"type": "kubernetes"}),
        "Unknown container manager type 'kubernetes': use openshift or trivial.".to_string(),
    ));
    for body in [
        json!({"type": "openshift"}),
        json!({"type": "openshift", "options": {}}),
        json!({"type": "openshift", "options": {"token": TOKEN}}),
    ] {
        cases.push((body, missing.to_string()));
    }
    for url in [
        "k8s:6443",
        "ftp://k8s",
        "https://",
        "https://user:pw@k8s",
        "https://k8s:0",
        "https://k 8s",
        "not a url",
        "",
    ] {
        cases.push((
            json!({"type": "openshift", "options": {"apiserver": url}}),
            format!("Invalid options.apiserver '{url}': use an http or https URL."),
        ));
    }
    cases.push((
        json!({"type": "openshift", "options": {"apiserver": "https://a", "server_url": "https://b"}}),
        "options.apiserver and options.server_url differ: give one of them.".to_string(),
    ));
    for (key, value) in [
        ("apiserver", json!(5)),
        ("server_url", json!(["https://k"])),
        ("token", json!(123)),
        ("certificate_path", json!(true)),
    ] {
        let mut options = json!({"apiserver": "https://k8s"});
        options[key] = value;
        cases.push((
            json!({"type": "openshift", "options": options}),
            format!("options.{key} must be a string."),
        ));
    }
    // Certificates without the server's cert_dir: refused.
    for mut options in [
        json!({"certificate_path": "c.pem"}),
        json!({"certificate_key_path": "k.pem"}),
    ] {
        options["apiserver"] = json!("https://k8s");
        cases.push((
            json!({"type": "openshift", "options": options}),
            together.to_string(),
        ));
    }
    cases.push((
        json!({"type": "openshift", "options": {"apiserver": "https://k8s",
               "certificate_path": "c.pem", "certificate_key_path": "k.pem"}}),
        "Certificate files are not accepted: the server setting cert_dir is not set.".to_string(),
    ));
    cases.push((
        json!({"type": "trivial", "name": "other"}),
        "The name 'other' in the body does not match the name 'bad' in the path.".to_string(),
    ));
    s.expect_rejected(&admin, Method::PUT, path, cases).await;
    // Wrong JSON types.
    s.expect_bad_bodies(
        &admin,
        Method::PUT,
        path,
        [
            json!([]),
            json!("openshift"),
            json!({"type": 1}),
            json!({"type": "trivial", "options": "x"}),
            json!({"type": "openshift", "options": ["https://k"]}),
            json!({"type": "trivial", "name": false}),
        ],
    )
    .await;
    for (raw, name) in [("a%20b", "a b"), ("a.b", "a.b"), ("x%2By", "x+y")] {
        let p = format!("/api/v0/containermanager/{raw}");
        for (method, body) in [
            (Method::PUT, Some(json!({"type": "trivial"}))),
            (Method::GET, None),
            (Method::DELETE, None),
        ] {
            s.req(&admin, method.clone(), &p)
                .case(format!("{raw:?}, {name:?}, {method:?}, {body:?}"))
                .json_opt(body)
                .expect_error(StatusCode::BAD_REQUEST, &invalid_name(name))
                .await;
        }
    }
    assert_eq!(s.get_json(&admin, "/api/v0/containermanagers").await, json!([]));
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM container_managers").await, 0);
}

async fn container_manager_certificates_inside_cert_dir(db: Db) {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().to_path_buf();
    let s = TestServer::start_with(db, |settings| settings.cert_dir = Some(dir)).await;
    let admin = s.create_tenant("acme", 0).await;
    let path = "/api/v0/containermanager/secure";
    let options = json!({"apiserver": "https://k8s:6443", "certificate_path": "client.crt",
                         "certificate_key_path": "client.key", "token": TOKEN});
    let want = json!({"name": "secure", "type": "openshift", "options": {
        "apiserver": "https://k8s:6443", "certificate_path": "client.crt",
        "certificate_key_path": "client.key", "token": "********"}});
    assert_eq!(
        s.put(&admin, path)
            .json(json!({"type": "openshift", "options": options}))
            .expect(StatusCode::CREATED)
            .await,
        want
    );
    assert_eq!(s.get_json(&admin, path).await, want);
    assert_eq!(
        s.put(&admin, path)
            .json(json!({"type": "openshift", "options": options}))
            .ok()
            .await,
        want
    );
    let mut other = options.clone();
    other["certificate_key_path"] = json!("other.key");
    s.put(&admin, path)
        .json(json!({"type": "openshift", "options": other}))
        .expect_error(StatusCode::CONFLICT, None)
        .await;
    // Names that leave the directory are refused, in either option.
    let abs = certs.path().join("client.crt").display().to_string();
    for bad in [
        "../client.crt",
        "..",
        "a/b.crt",
        "/etc/ssl/private/key.pem",
        abs.as_str(),
        "x..y",
        "",
        ".",
    ] {
        for key in ["certificate_path", "certificate_key_path"] {
            let mut o = options.clone();
            o[key] = json!(bad);
            let message = format!(
                "Invalid certificate file name '{bad}': use a plain file name inside the server's certificate directory."
            );
            s.put(&admin, "/api/v0/containermanager/escape")
                .case(format!("{bad:?}, {key:?}"))
                .json(json!({"type": "openshift", "options": o}))
                .expect_error(StatusCode::BAD_REQUEST, &message)
                .await;
        }
    }
    let mut half = options.clone();
    half.as_object_mut().unwrap().remove("certificate_key_path");
    s.put(&admin, "/api/v0/containermanager/escape")
        .json(json!({"type": "openshift", "options": half}))
        .expect_error(
            StatusCode::BAD_REQUEST,
            "options.certificate_path and options.certificate_key_path go together: give both or neither.",
        )
        .await;
    assert_eq!(
        s.get_json(&admin, "/api/v0/containermanagers").await,
        json!(["secure"])
    );
}

async fn container_manager_delete(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for name in ["prod_openshift", "spare"] {
        s.put(&admin, &format!("/api/v0/containermanager/{name}"))
            .json(json!({"type": "openshift", "options": {"apiserver": "https://k8s", "token": TOKEN}}))
            .expect(StatusCode::CREATED)
            .await;
    }
    s.delete(&admin, "/api/v0/containermanager/spare")
        .expect_deleted()
        .await;
    let gone = "Container manager 'spare' does not exist.";
    for method in [Method::GET, Method::DELETE] {
        s.req(&admin, method, "/api/v0/containermanager/spare")
            .expect_error(StatusCode::NOT_FOUND, gone)
            .await;
    }
    add_cluster(&s, "acme", "mycluster", "default", "prod_openshift").await;
    add_cluster(&s, "acme", "other", "default", "").await;
    s.delete(&admin, "/api/v0/containermanager/prod_openshift")
        .expect_error(
            StatusCode::CONFLICT,
            "Container manager 'prod_openshift' is used by cluster 'mycluster'.",
        )
        .await;
    // Nothing changed, the token included.
    s.put(&admin, "/api/v0/containermanager/prod_openshift")
        .json(json!({"type": "openshift", "options": {"apiserver": "https://k8s", "token": TOKEN}}))
        .ok()
        .await;
    remove_clusters(&s, "acme").await;
    s.delete(&admin, "/api/v0/containermanager/prod_openshift/")
        .expect_deleted()
        .await;
    assert_eq!(s.get_json(&admin, "/api/v0/containermanagers").await, json!([]));
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM container_managers").await, 0);
    // Created anew with other settings.
    s.put(&admin, "/api/v0/containermanager/prod_openshift")
        .json(json!({"type": "trivial"}))
        .expect(StatusCode::CREATED)
        .await;
}

// ---- Tenancy and permissions

async fn other_tenants_objects_are_not_found(db: Db) {
    let s = TestServer::start(db).await;
    let acme = s.create_tenant("acme", 0).await;
    let other = s.create_tenant("other", 0).await;
    let net = json!({"type": "flannel_server", "options": {"address": "10.0.0.1:8080"}});
    let cm = json!({"type": "openshift", "options": {"apiserver": "https://k8s", "token": TOKEN}});
    s.put(&acme, "/api/v0/network/net")
        .json(net.clone())
        .expect(StatusCode::CREATED)
        .await;
    s.put(&acme, "/api/v0/containermanager/cm")
        .json(cm.clone())
        .expect(StatusCode::CREATED)
        .await;
    let acme_net = s.get_json(&acme, "/api/v0/network/net").await;
    let acme_cm = s.get_json(&acme, "/api/v0/containermanager/cm").await;
    for key in [other.as_str(), BOOTSTRAP_KEY] {
        for method in [Method::GET, Method::DELETE] {
            s.req(key, method.clone(), "/api/v0/network/net")
                .case(format!("{key:?}"))
                .expect_error(StatusCode::NOT_FOUND, "Network 'net' does not exist.")
                .await;
            s.req(key, method, "/api/v0/containermanager/cm")
                .case(format!("{key:?}"))
                .expect_error(StatusCode::NOT_FOUND, "Container manager 'cm' does not exist.")
                .await;
        }
        assert_eq!(s.get_json(key, "/api/v0/networks").await, json!(["default"]));
        assert_eq!(s.get_json(key, "/api/v0/containermanagers").await, json!([]));
    }
    // Names are per tenant: the same names with other settings are new objects elsewhere.
    s.put(&other, "/api/v0/network/net")
        .json(json!({}))
        .expect(StatusCode::CREATED)
        .await;
    s.put(&other, "/api/v0/containermanager/cm")
        .json(json!({"type": "trivial"}))
        .expect(StatusCode::CREATED)
        .await;
    // A cluster of another tenant does not hold acme's objects.
    add_cluster(&s, "other", "c", "net", "cm").await;
    assert_eq!(s.get_json(&acme, "/api/v0/network/net").await, acme_net);
    assert_eq!(s.get_json(&acme, "/api/v0/containermanager/cm").await, acme_cm);
    s.delete(&acme, "/api/v0/network/net").expect_deleted().await;
    s.delete(&acme, "/api/v0/containermanager/cm")
        .expect_deleted()
        .await;
    // ... and the other tenant's are untouched and still in use there.
    assert_eq!(
        s.get_json(&other, "/api/v0/network/net").await,
        json!({"name": "net", "type": "flannel_etcd", "options": {}})
    );
    s.delete(&other, "/api/v0/containermanager/cm")
        .expect_error(
            StatusCode::CONFLICT,
            "Container manager 'cm' is used by cluster 'c'.",
        )
        .await;
    // acme's token is not in the other tenant's row (it has none).
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM container_managers WHERE token_sealed <> ''")
            .await,
        0
    );
}

async fn viewer_reads_but_cannot_write(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let viewer = s.create_user(&admin, "vic", "viewer").await;
    let user = s.create_user(&admin, "ursula", "user").await;
    s.put(&admin, "/api/v0/network/net")
        .json(json!({}))
        .expect(StatusCode::CREATED)
        .await;
    s.put(&admin, "/api/v0/containermanager/cm")
        .json(json!({"type": "trivial"}))
        .expect(StatusCode::CREATED)
        .await;
    // Reads.
    assert_eq!(
        s.get_json(&viewer, "/api/v0/networks").await,
        json!(["default", "net"])
    );
    assert_eq!(
        s.get_json(&viewer, "/api/v0/network").await,
        json!(["default", "net"])
    );
    assert_eq!(
        s.get_json(&viewer, "/api/v0/containermanagers").await,
        json!(["cm"])
    );
    assert_eq!(
        s.get_json(&viewer, "/api/v0/containermanager").await,
        json!(["cm"])
    );
    assert_eq!(s.get_json(&viewer, "/api/v0/network/net").await["name"], "net");
    assert_eq!(
        s.get_json(&viewer, "/api/v0/containermanager/cm").await["type"],
        "trivial"
    );
    // Writes: 403 whether the target exists or not, valid body or not (permission before
    // existence and validation).
    for (method, path, body) in [
        (Method::PUT, "/api/v0/network/new", Some(json!({}))),
        (Method::PUT, "/api/v0/network/net", Some(json!({}))),
        (
            Method::PUT,
            "/api/v0/network/net",
            Some(json!({"type": "calico"})),
        ),
        (Method::PUT, "/api/v0/network/default", None),
        (Method::DELETE, "/api/v0/network/net", None),
        (Method::DELETE, "/api/v0/network/default", None),
        (Method::DELETE, "/api/v0/network/ghost", None),
        (
            Method::PUT,
            "/api/v0/containermanager/new",
            Some(json!({"type": "trivial"})),
        ),
        (
            Method::PUT,
            "/api/v0/containermanager/cm",
            Some(json!({"type": "trivial"})),
        ),
        (Method::PUT, "/api/v0/containermanager/x", None),
        (Method::DELETE, "/api/v0/containermanager/cm", None),
        (Method::DELETE, "/api/v0/containermanager/ghost", None),
    ] {
        s.req(&viewer, method.clone(), path)
            .case(format!("{method:?}, {body:?}"))
            .json_opt(body)
            .expect_error(StatusCode::FORBIDDEN, "Role 'viewer' may not change resources.")
            .await;
    }
    assert_eq!(
        s.get_json(&admin, "/api/v0/networks").await,
        json!(["default", "net"])
    );
    assert_eq!(
        s.get_json(&admin, "/api/v0/containermanagers").await,
        json!(["cm"])
    );
    // Without credentials: 401.
    s.req_anon(Method::GET, "/api/v0/networks")
        .expect_unauthorized("Authentication required.")
        .await;
    // A user may write.
    s.put(&user, "/api/v0/network/new")
        .json(json!({}))
        .expect(StatusCode::CREATED)
        .await;
    s.delete(&user, "/api/v0/network/net").expect_deleted().await;
    s.put(&user, "/api/v0/containermanager/new")
        .json(json!({"type": "trivial"}))
        .expect(StatusCode::CREATED)
        .await;
    s.delete(&user, "/api/v0/containermanager/cm")
        .expect_deleted()
        .await;
    assert_eq!(
        s.get_json(&viewer, "/api/v0/networks").await,
        json!(["default", "new"])
    );
    assert_eq!(
        s.get_json(&viewer, "/api/v0/containermanagers").await,
        json!(["new"])
    );
}

async fn concurrent_creates_agree(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    // Eight identical creates of one name: exactly one 201, the rest 200.
    let same: Vec<Value> = (0..8).map(|_| json!({})).collect();
    let statuses = put_all(&s, &admin, "/api/v0/network/race", same).await;
    assert_eq!(count(&statuses, StatusCode::CREATED), 1, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::OK), 7, "{statuses:?}");
    // Different settings racing for one name: one 201, the others 409.
    let bodies: Vec<Value> = (1..=6)
        .map(|i| json!({"type": "openshift", "options": {"apiserver": "https://k8s", "token": format!("t{i}")}}))
        .collect();
    let statuses = put_all(&s, &admin, "/api/v0/containermanager/race", bodies).await;
    assert_eq!(count(&statuses, StatusCode::CREATED), 1, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::CONFLICT), 5, "{statuses:?}");
}

fn count(statuses: &[StatusCode], want: StatusCode) -> usize {
    statuses.iter().filter(|c| **c == want).count()
}

/// Sends one `PUT path` per body, all at once, and answers the statuses.
async fn put_all(s: &TestServer, key: &str, path: &str, bodies: Vec<Value>) -> Vec<StatusCode> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let req = s.call(key, Method::PUT, path).json(&b);
            tokio::spawn(async move { req.send().await.unwrap().status() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

both_stores!(
    network_lists_are_sorted_and_have_default,
    network_put_creates_then_compares,
    network_alias_and_address_are_stored_canonically,
    network_put_validation,
    network_delete,
    container_manager_lists,
    container_manager_put_and_compare,
    container_manager_token_is_sealed_and_masked,
    container_manager_put_validation,
    container_manager_certificates_inside_cert_dir,
    container_manager_delete,
    other_tenants_objects_are_not_found,
    viewer_reads_but_cannot_write,
    concurrent_creates_agree,
);
