//! Rolling operations against real OpenSSH servers: an upgrade over three hosts that stops at
//! the host whose command fails, a restart in which each host's sshd really goes away and
//! comes back, the concurrency rules while an operation runs, and — with the real binary —
//! a SIGKILL of Corral in the middle of an upgrade after which every host's command has run
//! exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use corral::config::OsProfilePatch;
use corral_drivers::testing::{ClientKey, KeyFormat, KeyType, TestSshd, free_port, next_loopback};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{Db, TestServer};
use crate::helpers::expect_each_error;

/// A test profile: every command leaves a trace per host (`$CORRAL_TEST_HOST`, which each test
/// sshd gives its sessions); `upgrade` fails on `failing`; `restart` really restarts the sshd.
pub(crate) fn profile(trace: &Path, failing: &str, upgrade_delay: f64) -> OsProfilePatch {
    let t = trace.display();
    OsProfilePatch {
        ids: vec![],
        bootstrap: Some("true".into()),
        upgrade: Some(format!(
            "sleep {upgrade_delay}; echo upgraded >> {t}/$CORRAL_TEST_HOST.upgrade; test \"$CORRAL_TEST_HOST\" != '{failing}'"
        )),
        restart: Some(format!(
            "echo restarted >> {t}/$CORRAL_TEST_HOST.restart; {}",
            TestSshd::generic_restart_command(Duration::from_secs(2))
        )),
        deploy: Some(format!("echo {{version}} >> {t}/$CORRAL_TEST_HOST.deploy")),
    }
}

pub(crate) struct Fleet {
    pub key: ClientKey,
    pub hosts: Vec<TestSshd>,
    pub port: u16,
}

pub(crate) fn fleet(n: usize) -> Fleet {
    let key = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap();
    let first = next_loopback();
    let port = free_port(first).unwrap();
    let mut hosts = vec![TestSshd::start_at(first, port, &[&key]).unwrap()];
    while hosts.len() < n {
        hosts.push(TestSshd::start_at(next_loopback(), port, &[&key]).unwrap());
    }
    Fleet { key, hosts, port }
}

impl Fleet {
    pub fn addresses(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.ip().to_string()).collect()
    }
}

pub(crate) async fn corral(db: Db, fleet: &Fleet, p: OsProfilePatch) -> TestServer {
    let port = fleet.port;
    TestServer::start_with(db, move |s| {
        s.ssh_port = port;
        s.host_allow = vec!["127.0.0.0/8".into()];
        s.ssh_connect_timeout = 5;
        s.restart_wait_timeout = 30;
        s.os_profiles = BTreeMap::from([("debian".to_string(), p.clone()), ("ubuntu".to_string(), p)]);
    })
    .await
}

/// Registers every host, waits until each is `disassociated`, and puts them in cluster `c`.
/// Waits until cluster `c`'s `op` (upgrade, deploy, restart) is no longer in process, and
/// answers its record.
pub(crate) async fn settled(s: &TestServer, admin: &str, op: &str) -> Value {
    s.wait_json(admin, &format!("/api/v0/cluster/c/{op}"), |r| {
        r["status"] != "in_process"
    })
    .await
}

pub(crate) async fn cluster_of(s: &TestServer, admin: &str, fleet: &Fleet) {
    s.put(admin, "/api/v0/cluster/c")
        .expect_status(StatusCode::CREATED)
        .await;
    for a in fleet.addresses() {
        s.put(admin, &format!("/api/v0/host/{a}"))
            .json(json!({"ssh_priv_key": STANDARD.encode(&fleet.key.private_key)}))
            .expect_status(StatusCode::CREATED)
            .await;
    }
    for a in fleet.addresses() {
        s.wait_json(admin, &format!("/api/v0/host/{a}"), |h| {
            h["status"] == "disassociated"
        })
        .await;
    }
    let c = s
        .put(admin, "/api/v0/cluster/c/hosts")
        .json(json!({"old": [], "new": fleet.addresses()}))
        .ok()
        .await;
    assert_eq!(c["status"], "ok", "{c}");
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

async fn upgrade_stops_at_the_first_failing_host(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let fleet = fleet(3);
    let [a, b, c] = <[String; 3]>::try_from(fleet.addresses()).unwrap();
    let s = corral(db, &fleet, profile(trace.path(), &b, 0.0)).await;
    let admin = s.create_tenant("acme", 2).await;
    cluster_of(&s, &admin, &fleet).await;
    let resp = s
        .call(&admin, Method::GET, "/api/v0/cluster/c/upgrade")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.text().await.unwrap(), "");
    let rec = s
        .put(&admin, "/api/v0/cluster/c/upgrade")
        .expect(StatusCode::CREATED)
        .await;
    assert_eq!(rec["status"], "in_process");
    assert_eq!(rec["upgraded"], json!([]));
    assert_eq!(rec["finished_at"], Value::Null);
    assert!(rec.get("version").is_none());
    let rec = settled(&s, &admin, "upgrade").await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["upgraded"], json!([a]));
    assert_eq!(rec["failed"], json!([b]));
    assert_eq!(rec["in_process"], json!([]));
    let msg = rec["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("{b}: command exited with status 1")),
        "{msg}"
    );
    assert_eq!(rec["finished_at"].as_str().unwrap().len(), 26);
    assert_eq!(lines(&trace.path().join(format!("{a}.upgrade"))), 1);
    assert_eq!(lines(&trace.path().join(format!("{b}.upgrade"))), 1);
    assert_eq!(
        lines(&trace.path().join(format!("{c}.upgrade"))),
        0,
        "the operation went on after a failure"
    );
    // Coopr's view of the same cluster.
    let statuses = s.post(&admin, "/v2/getClusterStatuses").ok().await;
    assert_eq!(
        statuses,
        json!([{"clusterid": "c", "action": "cluster_upgrade", "actionstatus": "failed", "stepstotal": 3,
                "stepscompleted": 1, "status": "inconsistent"}])
    );
}

async fn deploy_and_the_rules_while_an_operation_runs(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let fleet = fleet(2);
    let s = corral(db, &fleet, profile(trace.path(), "none", 2.0)).await;
    let admin = s.create_tenant("acme", 1).await;
    cluster_of(&s, &admin, &fleet).await;
    let put = |path: &str, body: Option<Value>| s.put(&admin, path).json_opt(body);
    put("/api/v0/cluster/c/deploy", Some(json!({})))
        .expect_error(StatusCode::BAD_REQUEST, "\"version\" must be given.")
        .await;
    put("/api/v0/cluster/c/upgrade", Some(json!({"max_parallel": 0})))
        .expect_error(StatusCode::BAD_REQUEST, None)
        .await;
    let started = put("/api/v0/cluster/c/upgrade", None)
        .expect(StatusCode::CREATED)
        .await;
    // The same operation again: 200 with the current record; another: 409.
    let again = put("/api/v0/cluster/c/upgrade", None).ok().await;
    assert_eq!(again["started_at"], started["started_at"]);
    let addrs = fleet.addresses();
    expect_each_error(
        [
            put("/api/v0/cluster/c/restart", None),
            put("/api/v0/cluster/c/deploy", Some(json!({"version": "7.2.6"}))),
            s.put(&admin, "/api/v0/cluster/c/hosts")
                .json(json!({"old": addrs, "new": [addrs[0]]})),
            s.delete(&admin, "/api/v0/cluster/c"),
        ],
        StatusCode::CONFLICT,
        "Cluster 'c' has an upgrade in process.",
    )
    .await;
    s.delete(&admin, &format!("/api/v0/host/{}", addrs[0]))
        .expect_error(StatusCode::CONFLICT, None)
        .await;
    let rec = settled(&s, &admin, "upgrade").await;
    assert_eq!(rec["status"], "finished", "{rec}");
    assert_eq!(rec["upgraded"], json!(addrs));
    // A deploy: the version reaches every host.
    let rec = put("/api/v0/cluster/c/deploy", Some(json!({"version": "7.2.6"})))
        .expect(StatusCode::CREATED)
        .await;
    assert_eq!(rec["version"], "7.2.6");
    put("/api/v0/cluster/c/deploy", Some(json!({"version": "7.2.5"})))
        .expect_error(StatusCode::CONFLICT, "Cluster 'c' is deploying version '7.2.6'.")
        .await;
    let rec = settled(&s, &admin, "deploy").await;
    assert_eq!(rec["status"], "finished", "{rec}");
    assert_eq!(rec["deployed"], json!(addrs));
    for a in &addrs {
        assert_eq!(
            std::fs::read_to_string(trace.path().join(format!("{a}.deploy"))).unwrap(),
            "7.2.6\n"
        );
    }
}

async fn restart_waits_for_each_host_to_go_and_return(db: Db) {
    let trace = tempfile::tempdir().unwrap();
    let fleet = fleet(2);
    let s = corral(db, &fleet, profile(trace.path(), "none", 0.0)).await;
    let admin = s.create_tenant("acme", 1).await;
    cluster_of(&s, &admin, &fleet).await;
    let pids: Vec<String> = fleet
        .hosts
        .iter()
        .map(|h| std::fs::read_to_string(h.dir().join("sshd.pid")).unwrap_or_default())
        .collect();
    s.put(&admin, "/api/v0/cluster/c/restart")
        .expect_status(StatusCode::CREATED)
        .await;
    let rec = settled(&s, &admin, "restart").await;
    assert_eq!(rec["status"], "finished", "{rec}");
    assert_eq!(rec["restarted"], json!(fleet.addresses()));
    for (h, old_pid) in fleet.hosts.iter().zip(pids) {
        assert_eq!(lines(&trace.path().join(format!("{}.restart", h.ip()))), 1);
        let new_pid = std::fs::read_to_string(h.dir().join("sshd.pid")).unwrap_or_default();
        assert_ne!(new_pid, old_pid, "the sshd of {} did not really restart", h.ip());
    }
    // Every host answers again.
    for a in fleet.addresses() {
        let h = s.get(&admin, &format!("/api/v0/host/{a}")).ok().await;
        assert_eq!(h["status"], "active");
    }
}

both_stores!(
    upgrade_stops_at_the_first_failing_host,
    deploy_and_the_rules_while_an_operation_runs,
    restart_waits_for_each_host_to_go_and_return,
    rolling_operations_on_simulated_hosts,
);

/// `host_driver = "simulated"` (docs/hosts.md): rolling operations run their command directly
/// and a restart does not wait for hosts that never go away, so each finishes at once.
async fn rolling_operations_on_simulated_hosts(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.host_driver = corral::config::HostDriver::Simulated;
        // Long enough that a restart waiting for the host to go would not finish in the test.
        c.restart_wait_timeout = 600;
    })
    .await;
    let admin = s.create_tenant("acme", 4).await;
    s.put(&admin, "/api/v0/cluster/c")
        .expect_status(StatusCode::CREATED)
        .await;
    let hosts = ["10.9.0.1", "10.9.0.2"];
    let key = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap();
    for a in hosts {
        s.put(&admin, &format!("/api/v0/host/{a}"))
            .json(json!({"ssh_priv_key": STANDARD.encode(&key.private_key), "cluster": "c"}))
            .expect_status(StatusCode::CREATED)
            .await;
    }
    for a in hosts {
        s.wait_json(&admin, &format!("/api/v0/host/{a}"), |h| h["status"] == "active")
            .await;
    }
    for (op, body) in [
        ("upgrade", json!({})),
        ("deploy", json!({"version": "2.1"})),
        ("restart", json!({})),
    ] {
        s.put(&admin, &format!("/api/v0/cluster/c/{op}"))
            .json(body)
            .expect_status(StatusCode::CREATED)
            .await;
        let record = settled(&s, &admin, op).await;
        assert_eq!(record["status"], "finished", "{op}: {record}");
        assert_eq!(record["failed"], json!([]), "{op}: {record}");
        assert_eq!(record["message"], "", "{op}: {record}");
        let done = match op {
            "upgrade" => "upgraded",
            "deploy" => "deployed",
            _ => "restarted",
        };
        let mut finished: Vec<String> = record[done]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        finished.sort();
        assert_eq!(finished, hosts, "{op}: {record}");
    }
}
