//! Perspective instances and images on the mock cloud (perspective.md 2, 5, 6, 7.3): launches
//! with per-item results, every transition allowed and refused, quotas, injected failures and
//! hangs ending in `error`, history, images, `/operations`, isolation, and a restart.

use std::time::{Duration, Instant};

use corral::config::Settings;
use corral_core::clouds::{CloudConfig, CloudOptions, FlavorConfig, QuotaConfig, object_id};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{Db, TestServer, expect_error, expect_json};

/// A shared mock cloud `mock` with two flavors, two base images, one zone, a network.
pub fn mock_cloud(tune: impl FnOnce(&mut CloudOptions)) -> CloudConfig {
    let mut options = CloudOptions {
        flavors: vec![
            FlavorConfig {
                name: "small".into(),
                ram: 512,
                vcpus: 1,
                root_disk: 10,
                ephemeral_disk: 0,
                has_swap: false,
                is_public: true,
                notes: String::new(),
            },
            FlavorConfig {
                name: "large".into(),
                ram: 4096,
                vcpus: 4,
                root_disk: 40,
                ephemeral_disk: 0,
                has_swap: false,
                is_public: true,
                notes: "big".into(),
            },
        ],
        availability_zones: vec!["zone-a".into()],
        networks: vec![corral_core::clouds::NetworkConfig {
            name: "private".into(),
            shared: false,
            subnets: vec![],
        }],
        driver: json!({"images": ["debian", "alpine"], "delay_ms": 50})
            .as_object()
            .cloned()
            .unwrap(),
        ..CloudOptions::default()
    };
    tune(&mut options);
    CloudConfig {
        id: corral_types::CloudId::from_trusted("mock"),
        name: Some("Mock".into()),
        tenant: None,
        kind: corral_types::CloudKind::from_trusted("mock"),
        enabled: true,
        endpoint: None,
        identity: None,
        credential: None,
        options,
    }
}

/// The ids a tenant sees in the `mock` cloud (clients read them with `POST /query`).
pub struct Ids {
    pub project: String,
    pub small: String,
    pub large: String,
    pub debian: String,
    pub alpine: String,
    pub network: String,
}

pub async fn ids(s: &TestServer, tenant: &str) -> Ids {
    let t = s.store.get_tenant(tenant).await.unwrap().unwrap().id;
    Ids {
        project: object_id(
            &t,
            &corral_types::CloudId::from_trusted("mock"),
            "project",
            t.as_str(),
        ),
        small: object_id(
            &t,
            &corral_types::CloudId::from_trusted("mock"),
            "flavor",
            "small",
        ),
        large: object_id(
            &t,
            &corral_types::CloudId::from_trusted("mock"),
            "flavor",
            "large",
        ),
        debian: object_id(
            &t,
            &corral_types::CloudId::from_trusted("mock"),
            "image",
            "mock-image-debian",
        ),
        alpine: object_id(
            &t,
            &corral_types::CloudId::from_trusted("mock"),
            "image",
            "mock-image-alpine",
        ),
        network: object_id(
            &t,
            &corral_types::CloudId::from_trusted("mock"),
            "network",
            "private",
        ),
    }
}

pub(crate) async fn server(db: Db, tune: impl FnOnce(&mut Settings)) -> TestServer {
    TestServer::start_with(db, |c| {
        c.clouds = vec![mock_cloud(|_| {})];
        tune(c);
    })
    .await
}

pub(crate) async fn call(s: &TestServer, k: &str, m: Method, path: &str, body: Value) -> Value {
    let resp = s.call(k, m, path).json(&body).send().await.unwrap();
    expect_json(resp, StatusCode::OK).await
}

pub async fn launch(s: &TestServer, k: &str, ids: &Ids, name: &str) -> String {
    let out = call(
        s,
        k,
        Method::POST,
        "/instances",
        json!([{"name": name, "projectId": ids.project, "flavor": {"id": ids.small}, "image": {"id": ids.debian}}]),
    )
    .await;
    assert_eq!(out[0]["status"], 202, "{out}");
    out[0]["id"].as_str().unwrap().to_string()
}

async fn state_of(s: &TestServer, k: &str, id: &str) -> String {
    let resp = s
        .call(k, Method::GET, &format!("/instances/{id}"))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await["state"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) async fn wait_state(s: &TestServer, k: &str, id: &str, want: &str) -> Value {
    s.wait_json(k, &format!("/instances/{id}"), |v| v["state"] == want)
        .await
}

pub(crate) async fn act(s: &TestServer, k: &str, action: &str, ids: &[&str]) -> Value {
    call(s, k, Method::PUT, &format!("/instances/{action}"), json!(ids)).await
}

async fn lifecycle(db: Db) {
    let s = server(db, |_| {}).await;
    let k = s.create_tenant("acme", 10).await;
    let ids = ids(&s, "acme").await;
    let out = call(
        &s,
        &k,
        Method::POST,
        "/instances",
        json!([
            {"name": "web-1", "projectId": ids.project, "flavor": {"id": ids.small}, "image": {"id": ids.debian},
             "metadata": {"region": "r1"}, "availabilityZone": {"name": "zone-a"}, "networks": [{"id": ids.network}],
             "id": "ignored", "state": "ignored"},
            {"name": "web-2", "projectId": "00000000-0000-0000-0000-000000000000",
             "flavor": {"id": ids.small}, "image": {"id": ids.debian}},
            {"name": "web-3", "projectId": ids.project, "flavor": {"id": "nope"}, "image": {"id": ids.debian}},
            {"name": "web-4", "projectId": ids.project, "flavor": {"id": ids.small}, "image": {"id": "nope"}},
            {"name": "web-5", "projectId": ids.project, "flavor": {"id": ids.small}, "image": {"id": ids.debian},
             "availabilityZone": {"name": "zone-z"}}
        ]),
    )
    .await;
    assert_eq!(out[0]["status"], 202);
    assert_eq!(out[0]["message"], "queued");
    let id = out[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    assert_eq!(
        out[1],
        json!({"id": "", "status": 404, "message": "Project 00000000-0000-0000-0000-000000000000 does not exist"})
    );
    assert_eq!(
        out[2],
        json!({"id": "", "status": 404, "message": "Flavor nope does not exist"})
    );
    assert_eq!(
        out[3],
        json!({"id": "", "status": 404, "message": "Image nope does not exist"})
    );
    assert_eq!(out[4]["status"], 404);

    let inst = wait_state(&s, &k, &id, "launched").await;
    assert_eq!(inst["id"], id.as_str());
    assert_eq!(inst["realId"], format!("mock-{id}"));
    assert_eq!(inst["cloudId"], "mock");
    assert_eq!(inst["cloudType"], "mock");
    assert_eq!(inst["projectId"], ids.project.as_str());
    assert_eq!(inst["name"], "web-1");
    assert_eq!(inst["flavor"]["id"], ids.small.as_str());
    assert_eq!(inst["flavor"]["ram"], 512);
    assert_eq!(inst["image"]["id"], ids.debian.as_str());
    assert_eq!(inst["image"]["state"], "saved");
    assert_eq!(inst["keypair"], json!({}));
    assert_eq!(inst["isLocked"], false);
    assert_eq!(
        inst["metadata"],
        json!({"entry": [{"key": "region", "value": "r1"}]})
    );
    assert_eq!(inst["address"].as_array().unwrap().len(), 1);
    assert_eq!(inst["fqdn"], "");
    assert_eq!(inst["networks"][0]["id"], ids.network.as_str());
    assert_eq!(inst["availabilityZone"], json!({"name": "zone-a"}));
    let singular = s
        .call(&k, Method::GET, &format!("/instance/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(singular, StatusCode::OK).await, inst);

    // Reboot twice at once: the second is "already rebooting"; an unknown id is a per-id 404.
    let out = act(&s, &k, "reboot", &[&id, &id, "nope"]).await;
    assert_eq!(out[0], json!({"id": id, "status": 202, "message": "rebooting"}));
    assert_eq!(out[1]["status"], 202);
    assert_eq!(
        out[2],
        json!({"id": "nope", "status": 404, "message": "Instance with id = nope not found"})
    );
    let out = act(&s, &k, "reboot", &[&id]).await;
    assert_eq!(out[0]["message"], "already rebooting");
    wait_state(&s, &k, &id, "launched").await;

    for (action, transitional, end) in [
        ("shutdown", "shutting_down", "shutoff"),
        ("start", "starting", "launched"),
        ("pause", "pausing", "paused"),
        ("resume", "resuming", "launched"),
        ("suspend", "suspending", "suspended"),
        ("resume", "resuming", "launched"),
        ("hard-reboot", "hard_rebooting", "launched"),
    ] {
        let out = act(&s, &k, action, &[&id]).await;
        assert_eq!(out[0]["message"], transitional, "{action}: {out}");
        wait_state(&s, &k, &id, end).await;
    }
    let out = act(&s, &k, "reboot", &[&id]).await;
    assert_eq!(out[0]["status"], 202);
    wait_state(&s, &k, &id, "launched").await;

    // Resize and rebuild swap the flavor / image at once.
    let out = call(
        &s,
        &k,
        Method::PUT,
        &format!("/instances/resize/{}", ids.large),
        json!([id]),
    )
    .await;
    assert_eq!(out[0]["message"], "resizing");
    let now = expect_json(
        s.call(&k, Method::GET, &format!("/instances/{id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(now["flavor"]["id"], ids.large.as_str());
    wait_state(&s, &k, &id, "launched").await;
    let resp = s
        .call(&k, Method::PUT, "/instances/resize/nope")
        .json(&json!([id]))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, Some("Flavor nope does not exist")).await;
    let out = call(
        &s,
        &k,
        Method::PUT,
        &format!("/instances/rebuild/{}", ids.alpine),
        json!([id]),
    )
    .await;
    assert_eq!(out[0]["message"], "rebuilding");
    let rebuilt = wait_state(&s, &k, &id, "launched").await;
    assert_eq!(rebuilt["image"]["name"], "alpine");

    let out = call(
        &s,
        &k,
        Method::PUT,
        "/instances/rename",
        json!({&id: "web-renamed", "id-two": "x"}),
    )
    .await;
    assert_eq!(out[0], json!({"id": id, "status": 202, "message": "renamed"}));
    assert_eq!(out[1]["status"], 404);
    let renamed = expect_json(
        s.call(&k, Method::GET, &format!("/instances/{id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["name"], "web-renamed");

    // History: who, what, outcome.
    let deadline = Instant::now() + Duration::from_secs(30);
    let history = loop {
        let h = expect_json(
            s.call(&k, Method::GET, &format!("/instances/{id}/history"))
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        if h.as_array().unwrap().iter().all(|e| e["outcome"] != "accepted") {
            break h;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "launch",
            "reboot",
            "shutdown",
            "start",
            "pause",
            "resume",
            "suspend",
            "resume",
            "hard_reboot",
            "reboot",
            "resize",
            "rebuild",
            "rename"
        ]
    );
    for e in history.as_array().unwrap() {
        assert_eq!(e["actor"], "admin@acme");
        assert_eq!(e["outcome"], "succeeded", "{e}");
        assert_eq!(e["error"], "");
    }
    // Each entry names the request that asked for it: thirteen requests, thirteen ids.
    let request_ids: std::collections::BTreeSet<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["requestId"]
                .as_str()
                .unwrap_or_else(|| panic!("no requestId in {e}"))
        })
        .collect();
    assert_eq!(request_ids.len(), 13, "{history}");
    assert!(!request_ids.contains(""), "{history}");

    let out = call(&s, &k, Method::POST, "/instances/delete", json!(["id-one", id])).await;
    assert_eq!(
        out[0],
        json!({"id": "id-one", "status": 404, "message": "Instance with id = id-one not found"})
    );
    assert_eq!(out[1], json!({"id": id, "status": 202, "message": "deleting"}));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = s
            .call(&k, Method::GET, &format!("/instances/{id}"))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::NOT_FOUND {
            expect_error(
                resp,
                StatusCode::NOT_FOUND,
                Some(&format!("Instance with id = {id} not found")),
            )
            .await;
            break;
        }
        assert!(Instant::now() < deadline, "not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

/// Every action from every settled state: accepted exactly where perspective 5.3 allows it.
async fn transitions_allowed_and_refused(db: Db) {
    let s = server(db, |_| {}).await;
    let k = s.create_tenant("acme", 20).await;
    let ids = ids(&s, "acme").await;
    // One instance per settled state.
    let mut by_state = Vec::new();
    for (state, path) in [
        ("launched", &[][..]),
        ("shutoff", &["shutdown"][..]),
        ("paused", &["pause"][..]),
        ("suspended", &["suspend"][..]),
    ] {
        let id = launch(&s, &k, &ids, state).await;
        wait_state(&s, &k, &id, "launched").await;
        for a in path {
            act(&s, &k, a, &[&id]).await;
        }
        wait_state(&s, &k, &id, state).await;
        by_state.push((state, id));
    }
    let allowed: &[(&str, &[&str])] = &[
        ("start", &["shutoff"]),
        ("shutdown", &["launched"]),
        ("reboot", &["launched"]),
        ("hard-reboot", &["launched"]),
        ("pause", &["launched"]),
        ("resume", &["paused", "suspended"]),
        ("suspend", &["launched"]),
    ];
    for (action, from) in allowed {
        for (state, id) in &by_state {
            let out = act(&s, &k, action, &[id]).await;
            if from.contains(state) {
                assert_eq!(out[0]["status"], 202, "{action} from {state}: {out}");
                // Back to the state it had, for the next action.
                let after = s
                    .wait_json(&k, &format!("/instances/{id}"), |v| {
                        ["launched", "shutoff", "paused", "suspended", "error"]
                            .contains(&v["state"].as_str().unwrap())
                    })
                    .await;
                let now = after["state"].as_str().unwrap().to_string();
                let back: &[&str] = match (*state, now.as_str()) {
                    (s0, s1) if s0 == s1 => &[],
                    ("shutoff", "launched") => &["shutdown"],
                    ("launched", "shutoff") => &["start"],
                    ("launched", "paused") | ("launched", "suspended") => &["resume"],
                    ("paused", "launched") => &["pause"],
                    ("suspended", "launched") => &["suspend"],
                    other => panic!("unexpected {other:?}"),
                };
                for a in back {
                    act(&s, &k, a, &[id]).await;
                }
                wait_state(&s, &k, id, state).await;
            } else {
                let verb = if *action == "hard-reboot" {
                    "hard reboot"
                } else {
                    action
                };
                assert_eq!(
                    out[0],
                    json!({"id": id, "status": 409, "message": format!("Cannot {verb} instance in state {state}")}),
                    "{action} from {state}"
                );
            }
        }
    }
    // Resize and rebuild only from launched.
    for (state, id) in &by_state[1..] {
        for (verb, target) in [("resize", &ids.large), ("rebuild", &ids.alpine)] {
            let path = format!("/instances/{verb}/{target}");
            let out = call(&s, &k, Method::PUT, &path, json!([id])).await;
            assert_eq!(
                out[0]["message"],
                format!("Cannot {verb} instance in state {state}")
            );
        }
    }
    // Delete from every settled state.
    let all: Vec<&str> = by_state.iter().map(|(_, id)| id.as_str()).collect();
    let out = call(&s, &k, Method::POST, "/instances/delete", json!(all)).await;
    for r in out.as_array().unwrap() {
        assert_eq!(r["status"], 202, "{out}");
    }
    s.stop().await;
}

async fn quotas_and_bad_bodies(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.clouds = vec![mock_cloud(|o| {
            o.quota = QuotaConfig {
                instances: Some(3),
                vcpus: Some(6),
                ..QuotaConfig::default()
            };
        })];
    })
    .await;
    let k = s.create_tenant("acme", 10).await;
    let viewer = s.create_user(&k, "vera", "viewer").await;
    let ids = ids(&s, "acme").await;
    let item = |flavor: &str| json!({"name": "q", "projectId": ids.project, "flavor": {"id": flavor}, "image": {"id": ids.debian}});
    let out = call(
        &s,
        &k,
        Method::POST,
        "/instances",
        json!([item(&ids.large), item(&ids.large), item(&ids.small)]),
    )
    .await;
    assert_eq!(out[0]["status"], 202);
    assert_eq!(
        out[1],
        json!({"id": "", "status": 409, "message": "Quota exceeded: vcpus"})
    );
    assert_eq!(out[2]["status"], 202);
    let out = call(
        &s,
        &k,
        Method::POST,
        "/instances",
        json!([item(&ids.small), item(&ids.small)]),
    )
    .await;
    assert_eq!(out[0]["status"], 202);
    assert_eq!(out[1]["message"], "Quota exceeded: instances");
    for body in [
        json!({"name": "x"}),
        json!([1]),
        json!([{"projectId": ids.project, "flavor": {"id": ids.small}, "image": {"id": ids.debian}}]),
        json!([{"name": "", "projectId": ids.project, "flavor": {"id": ids.small}, "image": {"id": ids.debian}}]),
        json!([{"name": "x", "projectId": ids.project, "flavor": "small", "image": {"id": ids.debian}}]),
    ] {
        let resp = s
            .call(&k, Method::POST, "/instances")
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, None).await;
    }
    for (m, path, body) in [
        (Method::PUT, "/instances/reboot", json!({"a": 1})),
        (Method::PUT, "/instances/reboot", json!([1])),
        (Method::POST, "/instances/delete", json!("x")),
        (Method::PUT, "/instances/rename", json!(["x"])),
        (Method::PUT, "/instances/rename", json!({"x": ""})),
        (Method::POST, "/images", json!([{"name": "x"}])),
        (Method::POST, "/images/delete", json!([true])),
    ] {
        let resp = s.call(&k, m.clone(), path).json(&body).send().await.unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, None).await;
        // Permission comes before the body's shape (README 5): a viewer learns nothing.
        let resp = s.call(&viewer, m, path).json(&body).send().await.unwrap();
        expect_error(
            resp,
            StatusCode::FORBIDDEN,
            Some("Role 'viewer' may not change resources."),
        )
        .await;
    }
    let resp = s
        .call(&k, Method::PUT, "/instances/explode")
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let out = call(&s, &k, Method::PUT, "/instances/reboot", json!([])).await;
    assert_eq!(out, json!([]));
    s.stop().await;
}

/// A failing driver sets `error` with its reason; a hanging one is ended by the deadline.
async fn failures_and_deadlines(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.clouds = vec![mock_cloud(|o| {
            o.driver.insert("fail".into(), json!(["pauseInstance"]));
            o.driver.insert("hang".into(), json!(["rebootInstance"]));
        })];
        c.instance_transition_timeout = 2;
        c.job_lease = 3;
    })
    .await;
    let k = s.create_tenant("acme", 10).await;
    let ids = ids(&s, "acme").await;
    let a = launch(&s, &k, &ids, "a").await;
    let b = launch(&s, &k, &ids, "b").await;
    wait_state(&s, &k, &a, "launched").await;
    wait_state(&s, &k, &b, "launched").await;
    act(&s, &k, "pause", &[&a]).await;
    act(&s, &k, "reboot", &[&b]).await;
    wait_state(&s, &k, &a, "error").await;
    wait_state(&s, &k, &b, "error").await;
    let history = |id: String| {
        let s = &s;
        let k = k.clone();
        async move {
            expect_json(
                s.call(&k, Method::GET, &format!("/instances/{id}/history"))
                    .send()
                    .await
                    .unwrap(),
                StatusCode::OK,
            )
            .await
        }
    };
    let ha = history(a.clone()).await;
    let last = &ha.as_array().unwrap().last().unwrap();
    assert_eq!(last["action"], "pause");
    assert_eq!(last["outcome"], "failed");
    assert_eq!(last["error"], "pauseInstance: injected failure");
    let hb = history(b.clone()).await;
    let last = &hb.as_array().unwrap().last().unwrap();
    assert_eq!(last["action"], "reboot");
    assert_eq!(last["outcome"], "failed");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("stayed rebooting longer than the 2 s allowed"),
        "{last}"
    );
    // From error only delete is allowed.
    let out = act(&s, &k, "reboot", &[&a]).await;
    assert_eq!(out[0]["message"], "Cannot reboot instance in state error");
    let out = call(&s, &k, Method::POST, "/instances/delete", json!([a, b])).await;
    assert_eq!(out[0]["status"], 202);
    assert_eq!(out[1]["status"], 202);
    s.stop().await;
}

async fn images_and_operations(db: Db) {
    let s = server(db, |_| {}).await;
    let k = s.create_tenant("acme", 10).await;
    let ids = ids(&s, "acme").await;
    let base = expect_json(
        s.call(&k, Method::GET, &format!("/images/{}", ids.debian))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(base["name"], "debian");
    assert_eq!(base["state"], "saved");
    assert_eq!(base["projectId"], json!([ids.project]));
    let id = launch(&s, &k, &ids, "snap-me").await;
    let out = call(
        &s,
        &k,
        Method::POST,
        "/images",
        json!([{"name": "early", "instanceId": id}]),
    )
    .await;
    assert_eq!(out[0]["status"], 409, "{out}");
    wait_state(&s, &k, &id, "launched").await;
    let out = call(
        &s,
        &k,
        Method::POST,
        "/images",
        json!([{"name": "snap", "instanceId": id, "metadata": {"k": "v"}}, {"name": "x", "instanceId": "nope"}]),
    )
    .await;
    assert_eq!(out[0]["status"], 202);
    assert_eq!(out[0]["message"], "queued");
    assert_eq!(
        out[1],
        json!({"id": "", "status": 404, "message": "Instance with id = nope not found"})
    );
    let img = out[0]["id"].as_str().unwrap().to_string();
    let saved = s
        .wait_json(&k, &format!("/image/{img}"), |v| v["state"] == "saved")
        .await;
    assert_eq!(saved["instanceId"], id.as_str());
    assert_eq!(saved["realId"], format!("mock-image-{img}"));
    assert_eq!(saved["metadata"], json!({"entry": [{"key": "k", "value": "v"}]}));
    // Boot from the snapshot.
    let out = call(
        &s,
        &k,
        Method::POST,
        "/instances",
        json!([{"name": "from-snap", "projectId": ids.project, "flavor": {"id": ids.small}, "image": {"id": img}}]),
    )
    .await;
    assert_eq!(out[0]["status"], 202);
    let out = call(
        &s,
        &k,
        Method::POST,
        "/images/delete",
        json!([ids.debian, "nope", img]),
    )
    .await;
    assert_eq!(out[0]["status"], 409);
    assert_eq!(
        out[1],
        json!({"id": "nope", "status": 404, "message": "Image with id = nope not found"})
    );
    assert_eq!(out[2]["message"], "deleting");
    let deadline = Instant::now() + Duration::from_secs(30);
    while s
        .call(&k, Method::GET, &format!("/images/{img}"))
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::NOT_FOUND
    {
        assert!(Instant::now() < deadline, "image not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ops = expect_json(
        s.call(&k, Method::GET, "/operations").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let mock = ops["mock"].as_array().unwrap();
    assert_eq!(mock.len(), 21);
    let mut sorted = mock.clone();
    sorted.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    assert_eq!(&sorted, mock);
    assert_eq!(ops.as_object().unwrap().len(), 1);
    s.stop().await;
}

/// Another tenant's ids are 404 everywhere; each tenant has its own project in the shared cloud.
async fn isolation(db: Db) {
    let s = server(db, |_| {}).await;
    let acme = s.create_tenant("acme", 10).await;
    let other = s.create_tenant("other", 10).await;
    let a = ids(&s, "acme").await;
    let o = ids(&s, "other").await;
    assert_ne!(a.project, o.project);
    assert_ne!(a.debian, o.debian);
    let id = launch(&s, &acme, &a, "mine").await;
    wait_state(&s, &acme, &id, "launched").await;
    for path in [
        format!("/instances/{id}"),
        format!("/instance/{id}"),
        format!("/instances/{id}/history"),
        format!("/instances/{id}/console"),
        format!("/images/{}", a.debian),
    ] {
        let resp = s.call(&other, Method::GET, &path).send().await.unwrap();
        expect_error(resp, StatusCode::NOT_FOUND, None).await;
    }
    for action in [
        "reboot",
        "shutdown",
        "pause",
        "suspend",
        "resume",
        "start",
        "hard-reboot",
    ] {
        let out = act(&s, &other, action, &[&id]).await;
        assert_eq!(out[0]["status"], 404, "{action}");
    }
    let out = call(&s, &other, Method::POST, "/instances/delete", json!([id])).await;
    assert_eq!(out[0]["status"], 404);
    let out = call(
        &s,
        &other,
        Method::PUT,
        "/instances/rename",
        json!({&id: "stolen"}),
    )
    .await;
    assert_eq!(out[0]["status"], 404);
    let out = call(
        &s,
        &other,
        Method::POST,
        "/images",
        json!([{"name": "x", "instanceId": id}]),
    )
    .await;
    assert_eq!(out[0]["status"], 404);
    // acme's project, flavor and image do not exist for `other`.
    let out = call(
        &s,
        &other,
        Method::POST,
        "/instances",
        json!([{"name": "x", "projectId": a.project, "flavor": {"id": o.small}, "image": {"id": o.debian}},
               {"name": "x", "projectId": o.project, "flavor": {"id": a.small}, "image": {"id": o.debian}},
               {"name": "x", "projectId": o.project, "flavor": {"id": o.small}, "image": {"id": a.debian}}]),
    )
    .await;
    for r in out.as_array().unwrap() {
        assert_eq!(r["status"], 404, "{out}");
    }
    let resp = s
        .call(&other, Method::PUT, &format!("/instances/resize/{}", a.large))
        .json(&json!([id]))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, None).await;
    assert_eq!(state_of(&s, &acme, &id).await, "launched");
    s.stop().await;
}

/// The mock's state is the store's: after a restart instances read the same and act normally;
/// a disabled cloud refuses actions.
async fn restart_and_disabled_cloud(db: Db) {
    let s = server(db, |_| {}).await;
    let k = s.create_tenant("acme", 10).await;
    let ids = ids(&s, "acme").await;
    let id = launch(&s, &k, &ids, "keep").await;
    let before = wait_state(&s, &k, &id, "launched").await;
    let (db_url, data_dir) = (s.db_url.clone(), s.data_dir.clone());
    let keep = s.stop_keeping_files().await;
    let s = TestServer::start_with(db, |c| {
        c.database_url = Some(db_url.clone());
        c.data_dir = data_dir.clone();
        c.clouds = vec![mock_cloud(|_| {})];
    })
    .await;
    let after = expect_json(
        s.call(&k, Method::GET, &format!("/instances/{id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(after, before);
    act(&s, &k, "reboot", &[&id]).await;
    wait_state(&s, &k, &id, "launched").await;
    let keep2 = s.stop_keeping_files().await;
    let s = TestServer::start_with(db, |c| {
        c.database_url = Some(db_url);
        c.data_dir = data_dir;
        let mut cloud = mock_cloud(|_| {});
        cloud.enabled = false;
        c.clouds = vec![cloud];
    })
    .await;
    let out = act(&s, &k, "reboot", &[&id]).await;
    assert_eq!(
        out[0],
        json!({"id": id, "status": 409, "message": "Cloud mock is disabled"})
    );
    s.stop().await;
    drop((keep, keep2));
}

both_stores!(
    lifecycle,
    transitions_allowed_and_refused,
    quotas_and_bad_bodies,
    failures_and_deadlines,
    images_and_operations,
    isolation,
    restart_and_disabled_cloud,
);
