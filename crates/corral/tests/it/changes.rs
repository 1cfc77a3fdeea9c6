//! The change log (docs/events.md): every kind of tenant-owned object appends its changes, in
//! order, with the acting user, the request id and the view a `GET` answers. Driven through
//! the API (real sshd hosts, real service processes, the mock cloud), read back from the log.

use corral_store::ChangeRow;
use corral_types::TenantScope;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{Db, TestServer};
use crate::instances::{act, call, ids, launch, server, wait_state};
use crate::operations::{cluster_of, corral, fleet, profile, settled};
use crate::services::{deploy, start, svc_path, wait_healthy};

/// The tenant's log, oldest first; checks that revisions only grow.
async fn log(s: &TestServer, tenant: &str) -> Vec<ChangeRow> {
    let id = s.store.get_tenant(tenant).await.unwrap().unwrap().id;
    let rows = s
        .store
        .changes_after(&TenantScope::background(id), 0, 100_000)
        .await
        .unwrap();
    assert!(
        rows.windows(2).all(|w| w[0].revision < w[1].revision),
        "revisions must grow"
    );
    rows
}

/// The kinds logged for one object, in order.
fn kinds(log: &[ChangeRow], object_type: &str, id: &str) -> Vec<String> {
    log.iter()
        .filter(|c| c.object_type == object_type && c.object_id == id)
        .map(|c| c.kind.clone())
        .collect()
}

/// The view logged by the object's last change.
fn last_view(log: &[ChangeRow], object_type: &str, id: &str) -> Value {
    let c = log
        .iter()
        .rev()
        .find(|c| c.object_type == object_type && c.object_id == id)
        .unwrap_or_else(|| panic!("no change of {object_type} {id}"));
    serde_json::from_str(&c.data).unwrap()
}

/// The distinct values of a field of an object's logged views, in order of first appearance.
fn seen(log: &[ChangeRow], object_type: &str, id: &str, field: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in log
        .iter()
        .filter(|c| c.object_type == object_type && c.object_id == id)
    {
        let v: Value = serde_json::from_str(&c.data).unwrap();
        let s = v[field].as_str().unwrap_or_default().to_string();
        if out.last() != Some(&s) {
            out.push(s);
        }
    }
    out
}

async fn users_keys_and_namespaces(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    s.post(&admin, "/v2/users")
        .with(|r| r.header("X-Request-Id", "req-create-bob"))
        .json(json!({"id": "bob", "role": "user"}))
        .expect(StatusCode::CREATED)
        .await;
    let key = s
        .post(&admin, "/v2/users/bob/apikeys")
        .expect(StatusCode::CREATED)
        .await;
    let key_id = key["id"].as_str().unwrap().to_string();
    s.put(&admin, "/v2/users/bob")
        .json(json!({"role": "viewer", "description": "read only"}))
        .ok()
        .await;
    let bob = s.get(&admin, "/v2/users/bob").ok().await;
    s.delete(&admin, &format!("/v2/users/bob/apikeys/{key_id}"))
        .expect_status(StatusCode::OK)
        .await;
    s.put(&admin, "/v3/namespaces/dev")
        .json(json!({"description": "d"}))
        .ok()
        .await;
    s.put(&admin, "/v3/namespaces/dev/properties")
        .json(json!({"description": "changed"}))
        .expect_status(StatusCode::OK)
        .await;
    let dev = s.get(&admin, "/v3/namespaces/dev").ok().await;
    s.delete(&admin, "/v3/unrecoverable/namespaces/dev")
        .expect_empty_ok()
        .await;
    s.delete(&admin, "/v2/users/bob")
        .expect_status(StatusCode::OK)
        .await;
    // Another tenant's changes are its own.
    let other = s.create_tenant("other", 0).await;
    s.put(&other, "/v3/namespaces/theirs").ok().await;

    let log = log(&s, "acme").await;
    assert_eq!(
        kinds(&log, "user", "bob"),
        ["user.created", "user.updated", "user.deleted"]
    );
    assert_eq!(kinds(&log, "key", &key_id), ["key.created", "key.deleted"]);
    assert_eq!(
        kinds(&log, "namespace", "dev"),
        ["namespace.created", "namespace.updated", "namespace.deleted"]
    );
    assert!(kinds(&log, "namespace", "theirs").is_empty());
    let created = log.iter().find(|c| c.kind == "user.created").unwrap();
    assert_eq!(created.actor, "admin@acme");
    assert_eq!(created.request_id, "req-create-bob");
    // The views are the GET views: a deleted object's last view is the one before it went.
    assert_eq!(last_view(&log, "user", "bob"), bob);
    assert_eq!(last_view(&log, "namespace", "dev"), dev);
    let key_view = last_view(&log, "key", &key_id);
    assert_eq!(key_view["user"], "bob");
    assert!(
        !log.iter().any(|c| c.data.contains(key["key"].as_str().unwrap())),
        "a key's secret must never reach the log"
    );
    crate::events::feed_matches_log(&s, &admin, "acme").await;
}

async fn apps_and_services(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.create_tenant("acme", 0).await;
    deploy(&s, &k, "Shop", "1.0", 1, &[]).await;
    deploy(&s, &k, "Shop", "2.0", 1, &[]).await;
    let run = start(&s, &k, "Shop", Some("2.0"), None).await;
    wait_healthy(&s, &k, "Shop", Some("2.0"), 1).await;
    s.put(&k, &svc_path("Shop", Some("2.0"), "/instances"))
        .json(json!({"instances": 2}))
        .expect_status(StatusCode::OK)
        .await;
    wait_healthy(&s, &k, "Shop", Some("2.0"), 2).await;
    s.put(&k, &svc_path("Shop", None, "/routeconfig"))
        .json(json!({"1.0": 20, "2.0": 80}))
        .expect_status(StatusCode::OK)
        .await;
    s.post(&k, &svc_path("Shop", Some("2.0"), "/stop"))
        .expect_status(StatusCode::OK)
        .await;
    s.delete(&k, "/v3/namespaces/default/apps/Shop")
        .expect_status(StatusCode::OK)
        .await;

    let log = log(&s, "acme").await;
    assert_eq!(
        kinds(&log, "app", "Shop"),
        ["app.created", "app.updated", "app.deleted"]
    );
    assert!(
        log.iter()
            .filter(|c| c.object_type == "app")
            .all(|c| c.namespace == "default")
    );
    let runs = kinds(&log, "service_run", &run);
    assert_eq!(runs.first().map(String::as_str), Some("service_run.created"));
    assert_eq!(
        seen(&log, "service_run", &run, "status")
            .last()
            .map(String::as_str),
        Some("KILLED")
    );
    for i in 0..2 {
        let healthy: Vec<bool> = log
            .iter()
            .filter(|c| c.object_type == "service_instance" && c.object_id == format!("{run}/{i}"))
            .map(|c| serde_json::from_str::<Value>(&c.data).unwrap()["healthy"] == true)
            .collect();
        assert_eq!(healthy, [true, false], "instance {i}");
    }
    let service: Vec<Value> = log
        .iter()
        .filter(|c| c.object_type == "service" && c.object_id == "Shop/svc")
        .map(|c| serde_json::from_str(&c.data).unwrap())
        .collect();
    assert_eq!(service.len(), 2, "{service:?}");
    assert_eq!(service[0]["instances"], 2);
    assert_eq!(service[1]["routeConfig"], json!({"1.0": 20, "2.0": 80}));
    crate::events::feed_matches_log(&s, &k, "acme").await;
}

async fn instances_and_images(db: Db) {
    let s = server(db, |_| {}).await;
    let k = s.create_tenant("acme", 10).await;
    let ids = ids(&s, "acme").await;
    let id = launch(&s, &k, &ids, "web").await;
    wait_state(&s, &k, &id, "launched").await;
    act(&s, &k, "reboot", &[&id]).await;
    let launched = wait_state(&s, &k, &id, "launched").await;
    let out = call(
        &s,
        &k,
        Method::POST,
        "/images",
        json!([{"name": "snap", "instanceId": id}]),
    )
    .await;
    let img = out[0]["id"].as_str().unwrap().to_string();
    let saved = s
        .wait_json(&k, &format!("/image/{img}"), |v| v["state"] == "saved")
        .await;
    call(&s, &k, Method::POST, "/images/delete", json!([img])).await;
    call(&s, &k, Method::POST, "/instances/delete", json!([id])).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = log(&s, "acme").await;
        if kinds(&log, "instance", &id).last().map(String::as_str) == Some("instance.deleted")
            && kinds(&log, "image", &img).last().map(String::as_str) == Some("image.deleted")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "deletes not logged");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let log = log(&s, "acme").await;
    let states = seen(&log, "instance", &id, "state");
    assert_eq!(
        states,
        [
            "queued",
            "launching",
            "launched",
            "rebooting",
            "launched",
            "deleting"
        ],
        "{states:?}"
    );
    assert_eq!(kinds(&log, "instance", &id)[0], "instance.created");
    let image_states = seen(&log, "image", &img, "state");
    assert_eq!(image_states.first().map(String::as_str), Some("queued"));
    assert!(image_states.contains(&"saved".to_string()), "{image_states:?}");
    // The view logged when the reboot ended is what GET answered after it.
    let after_reboot = log
        .iter()
        .filter(|c| c.object_type == "instance" && c.object_id == id)
        .map(|c| serde_json::from_str::<Value>(&c.data).unwrap())
        .rfind(|v| v["state"] == "launched")
        .unwrap();
    assert_eq!(after_reboot, launched);
    let image_saved = log
        .iter()
        .filter(|c| c.object_type == "image" && c.object_id == img)
        .map(|c| serde_json::from_str::<Value>(&c.data).unwrap())
        .find(|v| v["state"] == "saved")
        .unwrap();
    assert_eq!(image_saved, saved);
    // Work a job does on a request's behalf carries that request's id and actor.
    let launched_change = log
        .iter()
        .find(|c| c.object_id == id && c.data.contains("\"launched\""))
        .unwrap();
    assert_eq!(launched_change.actor, "admin@acme");
    let created = log
        .iter()
        .find(|c| c.object_id == id && c.kind == "instance.created")
        .unwrap();
    assert_eq!(launched_change.request_id, created.request_id);
    assert!(!created.request_id.is_empty());
    crate::events::feed_matches_log(&s, &k, "acme").await;
}

async fn hosts_clusters_and_operations(db: Db) {
    let fleet = fleet(2);
    let trace = tempfile::tempdir().unwrap();
    let s = corral(db, &fleet, profile(trace.path(), "none", 0.0)).await;
    let admin = s.create_tenant("acme", 4).await;
    s.put(&admin, "/api/v0/network/overlay")
        .json(json!({"type": "flannel_etcd", "options": {}}))
        .expect_status(StatusCode::CREATED)
        .await;
    s.put(&admin, "/api/v0/containermanager/cm")
        .json(json!({"type": "trivial"}))
        .expect_status(StatusCode::CREATED)
        .await;
    cluster_of(&s, &admin, &fleet).await;
    s.put(&admin, "/api/v0/cluster/c/deploy")
        .json(json!({"version": "7"}))
        .expect_status(StatusCode::CREATED)
        .await;
    let deployed = settled(&s, &admin, "deploy").await;
    assert_eq!(deployed["status"], "finished", "{deployed}");
    let cluster = s.get_json(&admin, "/api/v0/cluster/c").await;
    s.delete(&admin, "/api/v0/containermanager/cm")
        .expect_status(StatusCode::OK)
        .await;
    s.delete(&admin, "/api/v0/network/overlay")
        .expect_status(StatusCode::OK)
        .await;
    s.delete(&admin, "/api/v0/cluster/c")
        .expect_status(StatusCode::OK)
        .await;
    let [a, b] = [fleet.addresses()[0].clone(), fleet.addresses()[1].clone()];
    s.delete(&admin, &format!("/api/v0/host/{a}"))
        .expect_status(StatusCode::OK)
        .await;

    let log = log(&s, "acme").await;
    assert_eq!(
        kinds(&log, "network", "overlay"),
        ["network.created", "network.deleted"]
    );
    assert_eq!(
        kinds(&log, "container_manager", "cm"),
        ["container_manager.created", "container_manager.deleted"]
    );
    for h in [&a, &b] {
        assert_eq!(kinds(&log, "host", h)[0], "host.created");
        let statuses = seen(&log, "host", h, "status");
        assert_eq!(
            statuses[..3],
            ["investigating", "bootstrapping", "disassociated"],
            "{h}: {statuses:?}"
        );
        assert!(statuses.contains(&"active".to_string()), "{h}: {statuses:?}");
        assert_eq!(
            log.iter()
                .filter(|c| c.object_type == "operation_step" && c.object_id == format!("c/deploy/{h}"))
                .map(|c| serde_json::from_str::<Value>(&c.data).unwrap()["status"].clone())
                .collect::<Vec<_>>(),
            [json!("in_process"), json!("done")],
            "{h}"
        );
    }
    assert_eq!(kinds(&log, "host", &a).last().unwrap(), "host.deleted");
    let cluster_kinds = kinds(&log, "cluster", "c");
    assert_eq!(cluster_kinds.first().unwrap(), "cluster.created");
    assert_eq!(cluster_kinds.last().unwrap(), "cluster.deleted");
    let op = kinds(&log, "operation", "c/deploy");
    assert_eq!(op.first().unwrap(), "operation.created");
    assert_eq!(op.last().unwrap(), "operation.deleted");
    let op_statuses = seen(&log, "operation", "c/deploy", "status");
    assert_eq!(op_statuses, ["in_process", "finished"], "{op_statuses:?}");
    // The cluster's last view before its deletion is what GET answered (with its hosts).
    let mut before_delete = last_view(&log, "cluster", "c");
    if let Some(o) = before_delete.as_object_mut() {
        o.remove("hostset");
    }
    assert_eq!(before_delete, cluster);
    crate::events::feed_matches_log(&s, &admin, "acme").await;
}

both_stores!(
    users_keys_and_namespaces,
    apps_and_services,
    instances_and_images,
    hosts_clusters_and_operations
);
