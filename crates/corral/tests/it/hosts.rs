//! Hosts and clusters against real OpenSSH servers (design §6): registration through
//! investigation and bootstrap to a final status with the machine's real facts, wrong keys,
//! unreachable hosts, host-key pinning, the address allow-list, credentials, membership.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use corral::config::OsProfilePatch;
use corral_drivers::testing::{ClientKey, KeyFormat, KeyType, TestSshd, free_port, next_loopback};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{Db, TestServer, expect_error};

/// A Corral whose hosts listen on `port`, restricted to loopback, with a Debian profile whose
/// bootstrap only leaves a trace in `trace_dir` (never installs anything on this machine).
async fn corral(db: Db, port: u16, trace_dir: &std::path::Path) -> TestServer {
    let trace = trace_dir.join("bootstrap.log");
    TestServer::start_with(db, move |s| {
        s.ssh_port = port;
        s.host_allow = vec!["127.0.0.0/8".into()];
        s.ssh_connect_timeout = 5;
        let profile = OsProfilePatch {
            bootstrap: Some(format!("echo bootstrapped >> {}", trace.display())),
            upgrade: Some("true".into()),
            restart: Some("true".into()),
            deploy: Some("true".into()),
            ids: vec![],
        };
        s.os_profiles = BTreeMap::from([
            ("debian".to_string(), profile.clone()),
            ("ubuntu".to_string(), profile),
        ]);
    })
    .await
}

/// The settings of the watcher tests: hosts on `port` of loopback, a watcher check every
/// second, and a bootstrap that only appends to `trace_file`.
fn watched(s: &mut corral::config::Settings, port: u16, trace_file: &std::path::Path) {
    s.ssh_port = port;
    s.host_allow = vec!["127.0.0.0/8".into()];
    // The watcher tests stop sshd, so a check fails at once (refused): the timeout only
    // bounds a slow handshake or facts command on a loaded machine, where 2 s can end a
    // registration `failed` instead of `disassociated`.
    s.ssh_connect_timeout = 15;
    s.watcher_interval = 1;
    let profile = OsProfilePatch {
        bootstrap: Some(format!("echo bootstrapped >> {}", trace_file.display())),
        ..Default::default()
    };
    s.os_profiles = BTreeMap::from([
        ("debian".to_string(), profile.clone()),
        ("ubuntu".to_string(), profile),
    ]);
}

/// An Ed25519 client key, and a test sshd that accepts it on a fresh loopback address and a
/// free port: `(key, address, port, sshd)`.
fn sshd_with_key() -> (ClientKey, Ipv4Addr, u16, TestSshd) {
    let key = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap();
    let ip = next_loopback();
    let port = free_port(ip).unwrap();
    let sshd = TestSshd::start_at(ip, port, &[&key]).unwrap();
    (key, ip, port, sshd)
}

fn b64(key: &ClientKey) -> String {
    STANDARD.encode(&key.private_key)
}

/// Polls a host until its status is not transitional; answers the host.
async fn settled(s: &TestServer, key: &str, address: &str) -> Value {
    s.wait_json(key, &format!("/api/v0/host/{address}"), |h| {
        h["status"] != "investigating" && h["status"] != "bootstrapping"
    })
    .await
}

/// Polls a host until its status is `want`.
async fn host_becomes(s: &TestServer, key: &str, address: &str, want: &str) -> Value {
    s.wait_json(key, &format!("/api/v0/host/{address}"), |h| h["status"] == want)
        .await
}

async fn status_message(s: &TestServer, key: &str, address: &str) -> String {
    s.get(key, &format!("/api/v0/host/{address}/status")).ok().await["host"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

fn machine_facts() -> (String, i64, i64) {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap();
    let id = os_release
        .lines()
        .find_map(|l| l.strip_prefix("ID="))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let mem: i64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get() as i64;
    (id, cpus, mem)
}

async fn registration_reaches_a_final_status_with_real_facts(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let (key, _, port, sshd) = sshd_with_key();
    let s = corral(db, port, trace.path()).await;
    let admin = s.create_tenant("acme", 2).await;
    let address = sshd.ip().to_string();
    let host = s
        .put(&admin, &format!("/api/v0/host/{address}"))
        .json(json!({"ssh_priv_key": b64(&key), "source": "test"}))
        .expect(StatusCode::CREATED)
        .await;
    assert_eq!(
        host,
        json!({"address": address, "status": "investigating", "os": "", "cpus": 0, "memory": 0, "space": 0,
               "last_check": "", "source": "test"})
    );
    let host = settled(&s, &admin, &address).await;
    assert_eq!(
        host["status"],
        "disassociated",
        "{host}; sshd log: {}",
        sshd.log()
    );
    let (os, cpus, mem) = machine_facts();
    assert_eq!(host["os"], os);
    assert_eq!(host["cpus"], cpus);
    assert_eq!(host["memory"], mem);
    assert!(host["space"].as_i64().unwrap() > 0, "{host}");
    assert!(host["last_check"].as_str().unwrap().len() == 26, "{host}");
    // The profile's bootstrap ran exactly once.
    assert_eq!(
        std::fs::read_to_string(trace.path().join("bootstrap.log")).unwrap(),
        "bootstrapped\n"
    );
    // The same registration again is 200 and changes nothing; another key is 409.
    assert_eq!(
        s.put(&admin, &format!("/api/v0/host/{address}"))
            .json(json!({"ssh_priv_key": b64(&key)}))
            .ok()
            .await["status"],
        "disassociated"
    );
    let other = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap();
    s.put(&admin, &format!("/api/v0/host/{address}"))
        .json(json!({"ssh_priv_key": b64(&other)}))
        .expect_error(StatusCode::CONFLICT, "Host already exists")
        .await;
    // Credentials: admins only, the key as registered; never in any other answer.
    let creds = s.get(&admin, &format!("/api/v0/host/{address}/creds")).ok().await;
    assert_eq!(
        creds,
        json!({"address": address, "ssh_priv_key": b64(&key), "remote_user": "root"})
    );
    let user = s.create_user(&admin, "alice", "user").await;
    s.get(&user, &format!("/api/v0/host/{address}/creds"))
        .expect_error(StatusCode::FORBIDDEN, None)
        .await;
    let list = s.get(&user, "/api/v0/hosts").ok().await;
    assert!(!list.to_string().contains(&b64(&key)[..40]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    // Encrypted at rest: the key's text is nowhere in the row.
    let leaked = s
        .sql_count(&format!(
            "SELECT COUNT(*) FROM hosts WHERE ssh_key_sealed LIKE '%{}%'",
            &b64(&key)[10..40]
        ))
        .await;
    assert_eq!(leaked, 0);
    // Delete: 200 with [], then 404.
    assert_eq!(
        s.delete(&user, &format!("/api/v0/host/{address}")).ok().await,
        json!([])
    );
    s.get(&user, &format!("/api/v0/host/{address}"))
        .expect_error(
            StatusCode::NOT_FOUND,
            &format!("Host '{address}' does not exist."),
        )
        .await;
}

async fn wrong_key_unreachable_and_changed_host_key_fail_with_reasons(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let good = ClientKey::generate(KeyType::Rsa2048, KeyFormat::Pem).unwrap();
    let stranger = ClientKey::generate(KeyType::EcdsaP256, KeyFormat::OpenSsh).unwrap();
    let ip = next_loopback();
    let port = free_port(ip).unwrap();
    let mut sshd = TestSshd::start_at(ip, port, &[&good]).unwrap();
    let s = corral(db, port, trace.path()).await;
    let admin = s.create_tenant("acme", 4).await;
    let put = |address: String, body: Value| s.put(&admin, &format!("/api/v0/host/{address}")).json(body);
    // A key the host does not accept.
    put(ip.to_string(), json!({"ssh_priv_key": b64(&stranger)}))
        .expect_status(StatusCode::CREATED)
        .await;
    assert_eq!(settled(&s, &admin, &ip.to_string()).await["status"], "failed");
    assert_eq!(
        status_message(&s, &admin, &ip.to_string()).await,
        "Authentication rejected for user 'root'."
    );
    s.call(&admin, Method::DELETE, &format!("/api/v0/host/{ip}"))
        .send()
        .await
        .unwrap();
    // Nothing listens at another loopback address.
    let nobody: Ipv4Addr = next_loopback();
    put(nobody.to_string(), json!({"ssh_priv_key": b64(&good)}))
        .send()
        .await;
    assert_eq!(settled(&s, &admin, &nobody.to_string()).await["status"], "failed");
    let msg = status_message(&s, &admin, &nobody.to_string()).await;
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    // An expected fingerprint that is not the host's: refused before anything runs.
    put(
        ip.to_string(),
        json!({"ssh_priv_key": b64(&good), "ssh_host_key_fingerprint": "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
    ).expect_status(StatusCode::CREATED).await;
    assert_eq!(settled(&s, &admin, &ip.to_string()).await["status"], "failed");
    assert_eq!(
        status_message(&s, &admin, &ip.to_string()).await,
        "Host key changed."
    );
    assert!(
        !trace.path().join("bootstrap.log").exists(),
        "a command ran on an unverified host"
    );
    s.call(&admin, Method::DELETE, &format!("/api/v0/host/{ip}"))
        .send()
        .await
        .unwrap();
    // The right fingerprint works; a host key change after that fails the next contact.
    let fp = sshd.host_key_fingerprint().unwrap();
    put(
        ip.to_string(),
        json!({"ssh_priv_key": b64(&good), "ssh_host_key_fingerprint": fp}),
    )
    .send()
    .await;
    assert_eq!(
        settled(&s, &admin, &ip.to_string()).await["status"],
        "disassociated"
    );
    sshd.restart_with_new_host_key().unwrap();
    s.call(&admin, Method::DELETE, &format!("/api/v0/host/{ip}"))
        .send()
        .await
        .unwrap();
    put(
        ip.to_string(),
        json!({"ssh_priv_key": b64(&good), "ssh_host_key_fingerprint": fp}),
    )
    .send()
    .await;
    assert_eq!(settled(&s, &admin, &ip.to_string()).await["status"], "failed");
    assert_eq!(
        status_message(&s, &admin, &ip.to_string()).await,
        "Host key changed."
    );
}

async fn registration_input_is_checked(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let key = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap();
    let s = corral(db, 22, trace.path()).await;
    let admin = s.create_tenant("acme", 1).await;
    let put = |address: &str, body: Value| s.put(&admin, &format!("/api/v0/host/{address}")).json(body);
    // Outside the operator's allow-list: 403, and no record.
    put("192.168.100.50", json!({"ssh_priv_key": b64(&key)}))
        .expect_error(StatusCode::FORBIDDEN, None)
        .await;
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM hosts").await, 0);
    for (address, body) in [
        ("127.0.0.9", json!({})),
        ("127.0.0.9", json!({"ssh_priv_key": "%%% not base64"})),
        (
            "127.0.0.9",
            json!({"ssh_priv_key": STANDARD.encode("-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----\n")}),
        ),
        (
            "127.0.0.9",
            json!({"ssh_priv_key": STANDARD.encode(&key.public_key)}),
        ),
        (
            "127.0.0.9",
            json!({"ssh_priv_key": b64(&key), "remote_user": "bad user"}),
        ),
        (
            "127.0.0.9",
            json!({"ssh_priv_key": b64(&key), "address": "127.0.0.10"}),
        ),
        (
            "127.0.0.9",
            json!({"ssh_priv_key": b64(&key), "ssh_host_key_fingerprint": "MD5:aa"}),
        ),
        ("01.2.3.4", json!({"ssh_priv_key": b64(&key)})),
    ] {
        put(address, body.clone())
            .expect_error(StatusCode::BAD_REQUEST, None)
            .await;
    }
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM hosts").await, 0);
    // Quota: maxNodes 1.
    s.req_root(Method::PUT, "/v2/tenants/acme")
        .json(json!({"tenant": {"name": "acme", "workers": 0, "maxNodes": 1}}))
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(
        put("127.0.0.9", json!({"ssh_priv_key": b64(&key)}))
            .send()
            .await
            .status(),
        StatusCode::CREATED
    );
    put("127.0.0.10", json!({"ssh_priv_key": b64(&key)}))
        .expect_error(StatusCode::CONFLICT, "Tenant quota exceeded: maxNodes is 1.")
        .await;
    // Canonical addresses: another spelling names the same host.
    assert_eq!(
        s.get(&admin, "/api/v0/host/%3A%3Affff%3A127.0.0.9").ok().await["address"],
        "127.0.0.9"
    );
}

async fn clusters_and_membership(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let (key, ip, port, _sshd) = sshd_with_key();
    let s = corral(db, port, trace.path()).await;
    let admin = s.create_tenant("acme", 0).await;
    let call = |m: Method, path: &str, body: Option<Value>| s.req(&admin, m, path).json_opt(body);
    let c = call(Method::PUT, "/api/v0/cluster/prod", None)
        .expect(StatusCode::CREATED)
        .await;
    assert_eq!(
        c,
        json!({"name": "prod", "status": "ok", "network": "default", "container_manager": "",
               "hosts": {"total": 0, "available": 0, "unavailable": 0}})
    );
    assert_eq!(
        call(Method::PUT, "/api/v0/cluster/prod", Some(json!({})))
            .ok()
            .await,
        c
    );
    call(
        Method::PUT,
        "/api/v0/cluster/prod",
        Some(json!({"network": "other"})),
    )
    .expect_error(
        StatusCode::CONFLICT,
        "Cluster 'prod' already exists with different settings.",
    )
    .await;
    call(Method::PUT, "/api/v0/cluster/x", Some(json!({"network": "nope"})))
        .expect_error(StatusCode::CONFLICT, "Network 'nope' does not exist.")
        .await;
    let list = call(Method::GET, "/api/v0/clusters", None).ok().await;
    assert_eq!(list, json!(["prod"]));
    assert_eq!(call(Method::GET, "/api/v0/cluster", None).ok().await, list);
    // With workers 0 the host's investigation waits: it is not ready to join.
    let address = ip.to_string();
    call(
        Method::PUT,
        &format!("/api/v0/host/{address}"),
        Some(json!({"ssh_priv_key": b64(&key)})),
    )
    .expect_status(StatusCode::CREATED)
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = call(
        Method::PUT,
        &format!("/api/v0/cluster/prod/hosts/{address}"),
        None,
    )
    .send()
    .await;
    let allow = resp.headers()["allow"].to_str().unwrap().to_string();
    expect_error(
        resp,
        StatusCode::METHOD_NOT_ALLOWED,
        Some(&format!(
            "Host {address} (status: investigating) not ready to join cluster \"prod\""
        )),
    )
    .await;
    assert!(allow.contains("PUT"), "{allow}");
    call(
        Method::PUT,
        "/api/v0/cluster/prod/hosts",
        Some(json!({"old": [], "new": [address]})),
    )
    .expect_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Hosts not ready to join cluster \"prod\": {address}"),
    )
    .await;
    // Workers raised: the host settles, then joins (no container manager: active).
    s.root(Method::PUT, "/v2/tenants/acme")
        .json(&json!({"tenant": {"name": "acme", "workers": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(settled(&s, &admin, &address).await["status"], "disassociated");
    call(
        Method::PUT,
        "/api/v0/cluster/prod/hosts",
        Some(json!({"old": ["127.9.9.9"], "new": [address]})),
    )
    .expect_error(StatusCode::CONFLICT, "Conflict setting hosts for cluster prod")
    .await;
    call(
        Method::PUT,
        "/api/v0/cluster/prod/hosts",
        Some(json!({"old": [], "new": ["127.9.9.9"]})),
    )
    .expect_error(StatusCode::NOT_FOUND, "Host '127.9.9.9' does not exist.")
    .await;
    let c = call(
        Method::PUT,
        "/api/v0/cluster/prod/hosts",
        Some(json!({"old": [], "new": [address]})),
    )
    .ok()
    .await;
    assert_eq!(c["hostset"], json!([address]));
    assert_eq!(c["hosts"], json!({"total": 1, "available": 1, "unavailable": 0}));
    assert_eq!(
        call(Method::GET, &format!("/api/v0/host/{address}"), None)
            .ok()
            .await["status"],
        "active"
    );
    assert_eq!(
        call(
            Method::GET,
            &format!("/api/v0/cluster/prod/hosts/{address}"),
            None,
        )
        .ok()
        .await,
        json!([address])
    );
    // One cluster per host.
    call(Method::PUT, "/api/v0/cluster/dev", None).send().await;
    call(Method::PUT, &format!("/api/v0/cluster/dev/hosts/{address}"), None)
        .expect_error(
            StatusCode::CONFLICT,
            &format!("Host '{address}' already belongs to cluster 'prod'."),
        )
        .await;
    // Leaving: disassociated; the cluster answers its new status.
    assert_eq!(
        call(
            Method::DELETE,
            &format!("/api/v0/cluster/prod/hosts/{address}"),
            None,
        )
        .ok()
        .await,
        json!([])
    );
    assert_eq!(
        call(Method::GET, &format!("/api/v0/host/{address}"), None)
            .ok()
            .await["status"],
        "disassociated"
    );
    call(
        Method::GET,
        &format!("/api/v0/cluster/prod/hosts/{address}"),
        None,
    )
    .expect_error(
        StatusCode::NOT_FOUND,
        "The requested host is not part of the cluster.",
    )
    .await;
    // Cross-tenant: invisible.
    let other = s.create_tenant("other", 0).await;
    s.get(&other, "/api/v0/cluster/prod")
        .expect_error(StatusCode::NOT_FOUND, "Cluster 'prod' does not exist.")
        .await;
    s.get(&other, &format!("/api/v0/host/{address}"))
        .expect_error(StatusCode::NOT_FOUND, None)
        .await;
    assert_eq!(
        call(Method::DELETE, "/api/v0/cluster/prod", None).ok().await,
        json!([])
    );
}

async fn coopr_rpc_calls_over_clusters(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let (key, ip, port, _sshd) = sshd_with_key();
    let s = corral(db, port, trace.path()).await;
    let admin = s.create_tenant("acme", 1).await;
    let viewer = s.create_user(&admin, "vic", "viewer").await;
    let rpc = |path: &str, body: Option<&str>| {
        let body = body.map(str::to_string);
        s.post(&viewer, path).with(|r| match body {
            Some(b) => r.body(b),
            None => r,
        })
    };
    assert_eq!(rpc("/v2/getClusterStatuses", None).ok().await, json!([]));
    s.call(&admin, Method::PUT, "/api/v0/cluster/web")
        .send()
        .await
        .unwrap();
    let address = ip.to_string();
    s.put(&admin, &format!("/api/v0/host/{address}"))
        .json(json!({"ssh_priv_key": b64(&key), "cluster": "web"}))
        .expect_status(StatusCode::CREATED)
        .await;
    // Joined at registration: active once bootstrapped.
    assert_eq!(settled(&s, &admin, &address).await["status"], "active");
    let statuses = rpc("/v2/getClusterStatuses", Some("ignored")).ok().await;
    assert_eq!(
        statuses,
        json!([{"clusterid": "web", "action": "cluster_create", "actionstatus": "complete", "stepstotal": 1,
                "stepscompleted": 1, "status": "active"}])
    );
    let body = json!({"clusterId": "web", "properties": ["hostname", "ipaddress", "ipaddresses", "nodenum", "sshuser", "services", "nope"]});
    let props = rpc("/v2/getNodeProperties", Some(&body.to_string())).ok().await;
    let node = &props[&address];
    assert_eq!(node["ipaddress"], address);
    assert_eq!(node["ipaddresses"], json!({"access_v4": address}));
    assert_eq!(node["nodenum"], 1);
    assert_eq!(node["sshuser"], "root");
    assert_eq!(node["services"], json!(["flannel", "docker"]));
    assert!(!node["hostname"].as_str().unwrap().is_empty());
    assert!(node.get("nope").is_none());
    let all = json!({"clusterId": "web"});
    let props = rpc("/v2/getNodeProperties", Some(&all.to_string())).ok().await;
    assert_eq!(props[&address]["status"], "active");
    assert_eq!(props[&address]["os"], machine_facts().0);
    let filtered = json!({"clusterId": "web", "services": ["docker", "openshift"]});
    assert_eq!(
        rpc("/v2/getNodeProperties", Some(&filtered.to_string()))
            .ok()
            .await,
        json!({})
    );
    for (body, msg) in [
        ("[1]", "Invalid request body. Must be a valid JSON Object."),
        ("not json", "Invalid request body. Must be a valid JSON Object."),
        ("{}", "clusterId must be specified."),
        ("{\"clusterId\": 5}", "clusterId must be specified."),
    ] {
        rpc("/v2/getNodeProperties", Some(body))
            .expect_error(StatusCode::BAD_REQUEST, msg)
            .await;
    }
    let bad = json!({"clusterId": "web", "properties": "hostname"});
    rpc("/v2/getNodeProperties", Some(&bad.to_string()))
        .expect_error(StatusCode::BAD_REQUEST, None)
        .await;
    let missing = json!({"clusterId": "nope"});
    rpc("/v2/getNodeProperties", Some(&missing.to_string()))
        .expect_error(StatusCode::NOT_FOUND, "Cluster nope not found.")
        .await;
}

async fn watcher_fails_a_silent_host_and_restores_it(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let (key, ip, port, mut sshd) = sshd_with_key();
    let trace_file = trace.path().join("bootstrap.log");
    let s = TestServer::start_with(db, move |s| watched(s, port, &trace_file)).await;
    let admin = s.create_tenant("acme", 1).await;
    s.call(&admin, Method::PUT, "/api/v0/cluster/web")
        .send()
        .await
        .unwrap();
    let address = ip.to_string();
    s.call(&admin, Method::PUT, &format!("/api/v0/host/{address}"))
        .json(&json!({"ssh_priv_key": b64(&key), "cluster": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(settled(&s, &admin, &address).await["status"], "active");
    let first_check = settled(&s, &admin, &address).await["last_check"].clone();
    // The watcher checks again: last_check moves on.
    s.wait_json(&admin, &format!("/api/v0/host/{address}"), |h| {
        h["last_check"] != first_check
    })
    .await;
    sshd.stop();
    host_becomes(&s, &admin, &address, "failed").await;
    let msg = status_message(&s, &admin, &address).await;
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    let c = s.get(&admin, "/api/v0/cluster/web").ok().await;
    assert_eq!(c["status"], "failed");
    let st = s.get(&admin, "/api/v0/status").ok().await;
    assert_eq!(st["store"]["status"], "OK");
    assert_eq!(st["watcher"]["info"]["size"], 1);
    assert!(
        !st["watcher"]["info"]["errors"].as_array().unwrap().is_empty(),
        "{st}"
    );
    sshd.restart().unwrap();
    host_becomes(&s, &admin, &address, "active").await;
    assert_eq!(status_message(&s, &admin, &address).await, "");
    // The bootstrap is not repeated by a recovery.
    assert_eq!(
        std::fs::read_to_string(trace.path().join("bootstrap.log")).unwrap(),
        "bootstrapped\n"
    );
    // The key trusted at the first contact is pinned: a host that comes back with another
    // key fails, and stays failed while the impostor answers.
    sshd.restart_with_new_host_key().unwrap();
    // A check that lands while sshd restarts fails on the closed connection first; the next
    // one must meet the new key and refuse it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let h = host_becomes(&s, &admin, &address, "failed").await;
        let msg = status_message(&s, &admin, &address).await;
        if msg == "Host key changed." {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{msg}: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        s.get(&admin, &format!("/api/v0/host/{address}")).ok().await["status"],
        "failed"
    );
}

async fn bootstrap_configures_flannel_for_the_cluster_network_and_self_registration(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let key = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap();
    // Self-registration takes the TCP peer's address: the test client is 127.0.0.1.
    let port = free_port(Ipv4Addr::LOCALHOST).unwrap();
    let _sshd = TestSshd::start_at(Ipv4Addr::LOCALHOST, port, &[&key]).unwrap();
    let flannel = trace.path().join("flannel.log");
    let s = TestServer::start_with(db, move |s| {
        s.ssh_port = port;
        s.host_allow = vec!["127.0.0.0/8".into()];
        s.flannel_etcd_endpoint = Some("http://etcd.test:2379".into());
        let profile = OsProfilePatch {
            bootstrap: Some(format!(
                "printf '%s\\n' {{flannel_line}} >> {}",
                flannel.display()
            )),
            ..Default::default()
        };
        s.os_profiles = BTreeMap::from([
            ("debian".to_string(), profile.clone()),
            ("ubuntu".to_string(), profile),
        ]);
    })
    .await;
    let admin = s.create_tenant("acme", 1).await;
    s.put(&admin, "/api/v0/network/fnet")
        .json(json!({"type": "flannel_server", "options": {"address": "10.1.2.3:8080"}}))
        .expect_status(StatusCode::CREATED)
        .await;
    s.put(&admin, "/api/v0/cluster/web")
        .json(json!({"network": "fnet"}))
        .expect_status(StatusCode::CREATED)
        .await;
    let host = s
        .put(&admin, "/api/v0/host")
        .json(json!({"ssh_priv_key": b64(&key), "cluster": "web"}))
        .expect(StatusCode::CREATED)
        .await;
    assert_eq!(host["address"], "127.0.0.1");
    assert_eq!(settled(&s, &admin, "127.0.0.1").await["status"], "active");
    assert_eq!(
        std::fs::read_to_string(trace.path().join("flannel.log")).unwrap(),
        "FLANNEL_OPTIONS=\"-remote=10.1.2.3:8080\"\n"
    );
    // A host outside any cluster uses the tenant's default network (flannel_etcd).
    s.delete(&admin, "/api/v0/host/127.0.0.1")
        .expect_status(StatusCode::OK)
        .await;
    s.call(&admin, Method::PUT, "/api/v0/host/127.0.0.1")
        .json(&json!({"ssh_priv_key": b64(&key)}))
        .send()
        .await
        .unwrap();
    assert_eq!(settled(&s, &admin, "127.0.0.1").await["status"], "disassociated");
    let log = std::fs::read_to_string(trace.path().join("flannel.log")).unwrap();
    assert_eq!(
        log.lines().last(),
        Some("FLANNEL_ETCD_ENDPOINTS=\"http://etcd.test:2379\"")
    );
}

/// The subset of the Kubernetes node API an `openshift` container manager uses, over HTTP on
/// loopback (no Kubernetes runs here): nodes in a map, a bearer token checked, every call logged.
struct NodeApi {
    url: String,
    calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl NodeApi {
    /// Waits until the API has seen at least `n` calls.
    async fn wait_for(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.calls.lock().unwrap().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node API saw {:?}",
                self.calls.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn node_api(token: &'static str) -> NodeApi {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode as S};
    use axum::routing::{get, post};
    type Shared = std::sync::Arc<std::sync::Mutex<(Vec<String>, std::collections::BTreeSet<String>)>>;
    fn authorized(h: &HeaderMap, token: &str) -> bool {
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {token}"))
    }
    let state: Shared = Default::default();
    let app = axum::Router::new()
        .route(
            "/api/v1/nodes",
            post(move |State(st): State<Shared>, h: HeaderMap, body: axum::Json<Value>| async move {
                if !authorized(&h, token) {
                    return (S::UNAUTHORIZED, axum::Json(json!({"message": "Unauthorized"})));
                }
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let mut g = st.lock().unwrap();
                g.0.push(format!("POST {name}"));
                g.1.insert(name.clone());
                (S::CREATED, axum::Json(json!({"kind": "Node", "metadata": {"name": name}})))
            }),
        )
        .route(
            "/api/v1/nodes/{name}",
            get(move |State(st): State<Shared>, h: HeaderMap, Path(name): Path<String>| async move {
                if !authorized(&h, token) {
                    return (S::UNAUTHORIZED, axum::Json(json!({})));
                }
                let g = st.lock().unwrap();
                if g.1.contains(&name) {
                    (S::OK, axum::Json(json!({"kind": "Node", "status": {"conditions": [{"type": "Ready", "status": "True"}]}})))
                } else {
                    (S::NOT_FOUND, axum::Json(json!({"message": "not found"})))
                }
            })
            .delete(move |State(st): State<Shared>, h: HeaderMap, Path(name): Path<String>| async move {
                if !authorized(&h, token) {
                    return S::UNAUTHORIZED;
                }
                let mut g = st.lock().unwrap();
                g.0.push(format!("DELETE {name}"));
                if g.1.remove(&name) { S::OK } else { S::NOT_FOUND }
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mirror = calls.clone();
    tokio::spawn(async move {
        loop {
            let seen = state.lock().unwrap().0.clone();
            *mirror.lock().unwrap() = seen;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    NodeApi { url, calls }
}

async fn openshift_manager_registers_and_removes_nodes(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let (key, ip, port, _sshd) = sshd_with_key();
    let api = node_api("s3cr3t-token").await;
    let s = corral(db, port, trace.path()).await;
    let admin = s.create_tenant("acme", 1).await;
    let put = |path: String, body: Value| s.put(&admin, &path).json(body);
    put(
        "/api/v0/containermanager/k8s".into(),
        json!({"type": "openshift", "options": {"apiserver": api.url, "token": "s3cr3t-token"}}),
    )
    .expect_status(StatusCode::CREATED)
    .await;
    put(
        "/api/v0/containermanager/bad".into(),
        json!({"type": "openshift", "options": {"apiserver": api.url, "token": "wrong"}}),
    )
    .expect_status(StatusCode::CREATED)
    .await;
    put("/api/v0/cluster/web".into(), json!({"container_manager": "k8s"}))
        .send()
        .await;
    put("/api/v0/cluster/oops".into(), json!({"container_manager": "bad"}))
        .send()
        .await;
    let address = ip.to_string();
    put(
        format!("/api/v0/host/{address}"),
        json!({"ssh_priv_key": b64(&key), "cluster": "web"}),
    )
    .send()
    .await;
    assert_eq!(settled(&s, &admin, &address).await["status"], "active");
    // The calls are mirrored every 20 ms: wait for the mirror (2-CPU runners are slow).
    api.wait_for(1).await;
    assert_eq!(*api.calls.lock().unwrap(), vec![format!("POST {address}")]);
    let st = s
        .get(&admin, &format!("/api/v0/host/{address}/status"))
        .ok()
        .await;
    assert_eq!(
        st["container_manager"],
        json!({"conditions": [{"type": "Ready", "status": "True"}]})
    );
    assert_eq!(
        s.post(&admin, "/v2/getNodeProperties")
            .json(json!({"clusterId": "web", "properties": ["services"]}))
            .ok()
            .await[&address]["services"],
        json!(["flannel", "docker", "openshift"])
    );
    // Leaving removes the node.
    s.delete(&admin, &format!("/api/v0/cluster/web/hosts/{address}"))
        .expect_status(StatusCode::OK)
        .await;
    api.wait_for(2).await;
    assert_eq!(
        api.calls.lock().unwrap().last(),
        Some(&format!("DELETE {address}"))
    );
    // A manager that refuses the token: the host joins but stays disassociated, with the reason.
    assert_eq!(
        put(format!("/api/v0/cluster/oops/hosts/{address}"), json!(null))
            .ok()
            .await,
        json!([address])
    );
    let h = s.get(&admin, &format!("/api/v0/host/{address}")).ok().await;
    assert_eq!(h["status"], "disassociated");
    let msg = status_message(&s, &admin, &address).await;
    assert!(msg.contains("refused the token"), "{msg}");
    assert!(!msg.contains("wrong"), "the token leaked into a message: {msg}");
}

both_stores!(
    openshift_manager_registers_and_removes_nodes,
    bootstrap_configures_flannel_for_the_cluster_network_and_self_registration,
    watcher_fails_a_silent_host_and_restores_it,
    coopr_rpc_calls_over_clusters,
    registration_reaches_a_final_status_with_real_facts,
    wrong_key_unreachable_and_changed_host_key_fail_with_reasons,
    registration_input_is_checked,
    clusters_and_membership,
);

/// Two replicas on one PostgreSQL database: one watcher works at a time (the singleton
/// lease), and when its replica stops, the other takes over (a new fencing generation) and
/// notices a host that went silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_moves_to_the_surviving_replica() {
    let trace = tempfile::tempdir().unwrap();
    let (key, ip, port, mut sshd) = sshd_with_key();
    // Replicas share the server key, or one could not open the other's sealed credentials.
    let server_key = STANDARD.encode([42u8; 32]);
    let tune = |url: Option<String>| {
        let server_key = server_key.clone();
        let trace_file = trace.path().join("bootstrap.log");
        move |s: &mut corral::config::Settings| {
            if let Some(url) = url {
                s.database_url = Some(url);
            }
            s.server_key = Some(server_key);
            watched(s, port, &trace_file);
        }
    };
    let a = TestServer::start_with(Db::Postgres, tune(None)).await;
    let admin = a.create_tenant("acme", 1).await;
    let address = ip.to_string();
    a.call(&admin, Method::PUT, &format!("/api/v0/host/{address}"))
        .json(&json!({"ssh_priv_key": b64(&key)}))
        .send()
        .await
        .unwrap();
    let host = settled(&a, &admin, &address).await;
    assert_eq!(host["status"], "disassociated", "registration on A: {host}");
    // A holds the watcher before B even starts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        a.sql_count("SELECT MAX(generation) FROM singletons WHERE name = 'host-watcher'")
            .await,
        1,
        "A's watcher did not take the lease once"
    );
    let b = TestServer::start_with(Db::Postgres, tune(Some(a.db_url.clone()))).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        b.sql_count("SELECT MAX(generation) FROM singletons WHERE name = 'host-watcher'")
            .await,
        1,
        "B took the watcher while A held it"
    );
    a.stop().await;
    sshd.stop();
    // B takes over once A's lease lapses, and marks the silent host failed.
    host_becomes(&b, &admin, &address, "failed").await;
    assert_eq!(
        b.sql_count("SELECT MAX(generation) FROM singletons WHERE name = 'host-watcher'")
            .await,
        2,
        "the lease changed hands other than once, from A to B"
    );
}
