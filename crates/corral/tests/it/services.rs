//! CDAP services for real (cdap-v3.md 1.4-1.5, 4.3-4.7, 5-9): `corral-testsvc` processes started,
//! health-checked, crashed and restarted, scaled, stopped; the method proxy's fidelity and limits;
//! route configs and the exact split; fallback strategies; batch calls; isolation.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{Db, TestServer, testsvc};
use crate::helpers::IntoReq;
use crate::helpers::Req;

const NS: &str = "/v3/namespaces/default";
const STOPPED: &str = "Service is stopped. Please start it.";
const NOT_ACCEPTING: &str = "Service is running but not accepting requests at this time.";

/// A version of app `app` with one testsvc service `svc`.
pub(crate) async fn deploy(
    s: &TestServer,
    key: &str,
    app: &str,
    version: &str,
    instances: i64,
    extra_args: &[&str],
) {
    let mut command = vec![testsvc()];
    command.extend(extra_args.iter().map(|a| a.to_string()));
    let body = json!({"version": version, "services": [{"name": "svc", "command": command,
        "env": {"LOG_LEVEL": "info"}, "instances": instances, "health_path": "/health"}]});
    s.put(key, &format!("{NS}/apps/{app}")).json(body).ok().await;
}

pub(crate) fn svc_path(app: &str, version: Option<&str>, rest: &str) -> String {
    match version {
        Some(v) => format!("{NS}/apps/{app}/versions/{v}/services/svc{rest}"),
        None => format!("{NS}/apps/{app}/services/svc{rest}"),
    }
}

pub(crate) async fn start(
    s: &TestServer,
    key: &str,
    app: &str,
    version: Option<&str>,
    args: Option<Value>,
) -> String {
    let body = s
        .post(key, &svc_path(app, version, "/start"))
        .json_opt(args)
        .ok()
        .await;
    body["runid"].as_str().expect("runid").to_string()
}

pub(crate) async fn wait_healthy(
    s: &TestServer,
    key: &str,
    app: &str,
    version: Option<&str>,
    n: i64,
) -> Value {
    s.wait_json(key, &svc_path(app, version, "/instances"), |v| {
        v["healthy"] == n && v["provisioned"] == n
    })
    .await
}

async fn processes(s: &TestServer, key: &str, app: &str, version: Option<&str>) -> Vec<Value> {
    s.get(key, &svc_path(app, version, "/processes"))
        .ok()
        .await
        .as_array()
        .unwrap()
        .clone()
}

fn process_exists(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// `m` on the method proxy path `rest` of service `svc` of `app` (at `version`).
fn method(s: &TestServer, key: &str, m: Method, app: &str, version: Option<&str>, rest: &str) -> Req {
    s.req(key, m, &svc_path(app, version, &format!("/methods{rest}")))
}

async fn status(s: &TestServer, k: &str) -> Value {
    s.get(k, &svc_path("Shop", None, "/status")).ok().await
}

async fn lifecycle(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.create_tenant("acme", 0).await;
    deploy(&s, &k, "Shop", "1.0.0", 2, &[]).await;
    assert_eq!(status(&s, &k).await, json!({"status": "STOPPED"}));
    s.get(&k, &svc_path("Shop", None, "/available"))
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, STOPPED)
        .await;
    method(&s, &k, Method::GET, "Shop", None, "/")
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, STOPPED)
        .await;

    // Runtime arguments: an object of strings with the env rules.
    for bad in [
        json!([1]),
        json!({"A": 1}),
        json!({"PORT": "1"}),
        json!({"CORRAL_X": "1"}),
    ] {
        s.post(&k, &svc_path("Shop", None, "/start"))
            .case(format!("{bad:?}"))
            .json(bad)
            .expect_error(StatusCode::BAD_REQUEST, None)
            .await;
    }
    let before = crate::harness::wall_clock_ms() / 1000;
    let run = start(
        &s,
        &k,
        "Shop",
        None,
        Some(json!({"GREETING": "hi", "LOG_LEVEL": "debug"})),
    )
    .await;
    assert_eq!(status(&s, &k).await, json!({"status": "RUNNING"}));
    s.post(&k, &svc_path("Shop", None, "/start"))
        .expect_error(
            StatusCode::CONFLICT,
            "Program 'svc' of application 'Shop' is already running.",
        )
        .await;
    assert_eq!(
        wait_healthy(&s, &k, "Shop", None, 2).await,
        json!({"requested": 2, "provisioned": 2, "healthy": 2})
    );
    assert_eq!(
        s.get(&k, &svc_path("Shop", None, "/available")).ok().await,
        json!({"message": "Service is available to accept requests."})
    );

    // The environment is exactly the contract's (1.5): runtime arguments override the spec.
    let env = method(&s, &k, Method::GET, "Shop", None, "/env").ok().await;
    let env = env.as_object().unwrap();
    let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "CORRAL_APP",
            "CORRAL_APP_VERSION",
            "CORRAL_INSTANCE",
            "CORRAL_NAMESPACE",
            "CORRAL_RUN_ID",
            "CORRAL_SERVICE",
            "GREETING",
            "LOG_LEVEL",
            "PATH",
            "PORT"
        ]
    );
    assert_eq!(env["LOG_LEVEL"], "debug");
    assert_eq!(env["CORRAL_RUN_ID"], run.as_str());
    assert_eq!(env["CORRAL_APP_VERSION"], "1.0.0");
    assert_eq!(env["CORRAL_NAMESPACE"], "default");

    // Both instances, their output captured, each in its own working directory.
    let procs = processes(&s, &k, "Shop", None).await;
    assert_eq!(procs.len(), 2, "{procs:?}");
    let pids: Vec<u64> = procs.iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    for (i, p) in procs.iter().enumerate() {
        assert_eq!(p["instance"], i as u64);
        assert!(
            p["output"]
                .as_str()
                .unwrap()
                .contains("corral-testsvc listening on 127.0.0.1:"),
            "{p}"
        );
        assert!(process_exists(p["pid"].as_u64().unwrap()));
    }

    let runs = s
        .get(&k, &svc_path("Shop", None, "/runs?status=running"))
        .ok()
        .await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["runid"], run.as_str());
    assert_eq!(runs[0]["status"], "RUNNING");
    assert!(runs[0].get("end").is_none(), "{runs}");
    assert!(runs[0]["start"].as_i64().unwrap() >= before);

    // Deletes refuse a running service (3.7, 3.8).
    s.delete(&k, &format!("{NS}/apps/Shop"))
        .expect_error(
            StatusCode::CONFLICT,
            "The following services are still running: svc (1.0.0).",
        )
        .await;
    s.delete(&k, &format!("{NS}/apps/Shop/versions/1.0.0"))
        .expect_error(StatusCode::CONFLICT, None)
        .await;

    s.post(&k, &svc_path("Shop", None, "/stop"))
        .expect_empty_ok()
        .await;
    assert_eq!(status(&s, &k).await, json!({"status": "STOPPED"}));
    for pid in &pids {
        assert!(!process_exists(*pid), "process {pid} survived the stop");
    }
    s.post(&k, &svc_path("Shop", None, "/stop"))
        .expect_error(
            StatusCode::CONFLICT,
            "Program 'svc' of application 'Shop' is not running.",
        )
        .await;
    let done = s
        .get(&k, &svc_path("Shop", Some("1.0.0"), "/runs?status=completed"))
        .ok()
        .await;
    assert_eq!(done[0]["runid"], run.as_str());
    assert_eq!(done[0]["status"], "KILLED");
    assert!(done[0]["end"].as_i64().unwrap() >= done[0]["start"].as_i64().unwrap());
    assert_eq!(
        s.get(&k, &svc_path("Shop", None, &format!("/runs/{run}")))
            .ok()
            .await,
        done[0]
    );
    s.get(
        &k,
        &svc_path("Shop", None, "/runs/00000000-0000-0000-0000-000000000000"),
    )
    .expect_error(StatusCode::NOT_FOUND, None)
    .await;
    for bad in ["status=bogus", "limit=0", "limit=10001", "start=x", "end=1.5"] {
        s.get(&k, &svc_path("Shop", None, &format!("/runs?{bad}")))
            .expect_error(StatusCode::BAD_REQUEST, None)
            .await;
    }
    assert_eq!(
        s.get(&k, &svc_path("Shop", None, "/runs?status=failed"))
            .ok()
            .await,
        json!([])
    );
    s.delete(&k, &format!("{NS}/apps/Shop")).expect_empty_ok().await;
    s.stop().await;
}

async fn crash_health_and_scaling(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.service_health_interval_ms = 200;
        c.service_health_first_interval_ms = 100;
        c.service_restart_backoff_ms = 200;
    })
    .await;
    let k = s.create_tenant("acme", 0).await;
    deploy(&s, &k, "Shop", "1.0.0", 1, &[]).await;
    start(&s, &k, "Shop", None, None).await;
    wait_healthy(&s, &k, "Shop", None, 1).await;

    // Unhealthy after three failed checks: no traffic, the second 503 text.
    method(&s, &k, Method::POST, "Shop", None, "/control/unhealthy")
        .expect_status(StatusCode::OK)
        .await;
    s.wait_json(&k, &svc_path("Shop", None, "/instances"), |v| v["healthy"] == 0)
        .await;
    s.get(&k, &svc_path("Shop", None, "/available"))
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, NOT_ACCEPTING)
        .await;
    method(&s, &k, Method::GET, "Shop", None, "/")
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, NOT_ACCEPTING)
        .await;
    // The version-pinned form too: only healthy instances get traffic.
    method(&s, &k, Method::POST, "Shop", Some("1.0.0"), "/control/healthy")
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, NOT_ACCEPTING)
        .await;
    // Tell the process directly, as an operator could, through its port.
    let port = processes(&s, &k, "Shop", None).await[0]["port"].as_u64().unwrap();
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/control/healthy"))
        .into_req()
        .expect_status(StatusCode::OK)
        .await;
    wait_healthy(&s, &k, "Shop", None, 1).await;

    // A crash: the instance is restarted (new pid), the run stays RUNNING.
    let first = processes(&s, &k, "Shop", None).await[0].clone();
    method(&s, &k, Method::POST, "Shop", None, "/control/crash")
        .expect_status(StatusCode::OK)
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let restarted = loop {
        let p = processes(&s, &k, "Shop", None).await[0].clone();
        if p["restarts"] == 1 && p["healthy"] == true && p["pid"].is_u64() {
            break p;
        }
        assert!(Instant::now() < deadline, "no restart: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(restarted["pid"], first["pid"]);
    assert!(!process_exists(first["pid"].as_u64().unwrap()));
    assert_eq!(
        s.get_json(&k, &svc_path("Shop", None, "/status")).await["status"],
        "RUNNING"
    );

    // Scaling while running: up adds new indexes, down removes the highest.
    for (bad, text) in [
        (
            json!({"instances": 0}),
            Some("Instance count should be greater than 0"),
        ),
        (json!({"instances": "2"}), None),
        (json!({}), None),
        (json!({"instances": 101}), None),
    ] {
        s.put(&k, &svc_path("Shop", None, "/instances"))
            .case(format!("{bad:?}, {text:?}"))
            .json(bad)
            .expect_error(StatusCode::BAD_REQUEST, text)
            .await;
    }
    s.put(&k, &svc_path("Shop", None, "/instances"))
        .json(json!({"instances": 3}))
        .expect_empty_ok()
        .await;
    assert_eq!(
        wait_healthy(&s, &k, "Shop", None, 3).await,
        json!({"requested": 3, "provisioned": 3, "healthy": 3})
    );
    let procs = processes(&s, &k, "Shop", None).await;
    let indexes: Vec<u64> = procs.iter().map(|p| p["instance"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert_eq!(procs[0]["pid"], restarted["pid"], "instance 0 was not touched");
    assert_eq!(s.get(&k, &svc_path("Shop", None, "")).ok().await["instances"], 3);
    s.put(&k, &svc_path("Shop", None, "/instances"))
        .json(json!({"instances": 1}))
        .expect_empty_ok()
        .await;
    assert_eq!(
        s.get(&k, &svc_path("Shop", None, "/instances")).ok().await,
        json!({"requested": 1, "provisioned": 1, "healthy": 1})
    );
    for p in &procs[1..] {
        assert!(!process_exists(p["pid"].as_u64().unwrap()), "{p}");
    }
    assert_eq!(processes(&s, &k, "Shop", None).await[0]["pid"], restarted["pid"]);
    s.stop().await;
}

/// A process that ignores SIGTERM is killed after the grace period; a program that cannot be
/// executed fails the start with 500 and a FAILED run.
async fn stop_escalates_and_start_failure(db: Db) {
    let s = TestServer::start_with(db, |c| c.service_stop_grace = 1).await;
    let k = s.create_tenant("acme", 0).await;
    deploy(&s, &k, "Stubborn", "1.0.0", 1, &["--ignore-sigterm"]).await;
    start(&s, &k, "Stubborn", None, None).await;
    wait_healthy(&s, &k, "Stubborn", None, 1).await;
    let pid = processes(&s, &k, "Stubborn", None).await[0]["pid"]
        .as_u64()
        .unwrap();
    let t = Instant::now();
    s.post(&k, &svc_path("Stubborn", None, "/stop"))
        .expect_empty_ok()
        .await;
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "stopped before the grace period ended"
    );
    assert!(!process_exists(pid));

    // A program that existed when the app was created and is gone when it starts.
    let dir = tempfile::Builder::new()
        .prefix("corral-it-bad")
        .tempdir_in("/tmp")
        .unwrap();
    let bad = dir.path().join("removed-program");
    std::fs::write(&bad, b"#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    let body = json!({"version": "1.0.0", "services": [{"name": "svc", "command": [bad.to_str().unwrap()]}]});
    s.put(&k, &format!("{NS}/apps/Broken")).json(body).ok().await;
    std::fs::remove_file(&bad).unwrap();
    let err = s
        .post(&k, &svc_path("Broken", None, "/start"))
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, None)
        .await;
    assert!(
        err["message"].as_str().unwrap().contains("could not be started"),
        "{err}"
    );
    let runs = s
        .get(&k, &svc_path("Broken", None, "/runs?status=failed"))
        .ok()
        .await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert!(runs[0]["end"].is_i64());
    assert_eq!(
        s.get_json(&k, &svc_path("Broken", None, "/status")).await["status"],
        "STOPPED"
    );
    s.stop().await;
}

/// A graceful restart of the server with a service running: the old run is closed FAILED and
/// the service runs again in a new run, on the same data dir and store.
async fn restart_restores_services(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.create_tenant("acme", 0).await;
    deploy(&s, &k, "Shop", "1.0.0", 2, &[]).await;
    let old_run = start(&s, &k, "Shop", None, Some(json!({"GREETING": "kept"}))).await;
    wait_healthy(&s, &k, "Shop", None, 2).await;
    let old_pids: Vec<u64> = processes(&s, &k, "Shop", None)
        .await
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    let (db_url, data_dir) = (s.db_url.clone(), s.data_dir.clone());
    // Keep the first server's temp dir alive: the data dir lives in it.
    let keep = s.stop_keeping_files().await;
    for pid in &old_pids {
        assert!(!process_exists(*pid), "a service process outlived the server");
    }
    let s = TestServer::start_with(db, |c| {
        c.database_url = Some(db_url);
        c.data_dir = data_dir;
    })
    .await;
    wait_healthy(&s, &k, "Shop", None, 2).await;
    let runs = s.get(&k, &svc_path("Shop", None, "/runs")).ok().await;
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    let old = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["runid"] == old_run.as_str())
        .unwrap();
    assert_eq!(old["status"], "FAILED");
    let new = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["runid"] != old_run.as_str())
        .unwrap();
    assert_eq!(new["status"], "RUNNING");
    // The runtime arguments of the last start are kept.
    let env = method(&s, &k, Method::GET, "Shop", None, "/env").ok().await;
    assert_eq!(env["GREETING"], "kept");
    assert_eq!(env["CORRAL_RUN_ID"], new["runid"]);
    s.stop().await;
    drop(keep);
}

/// Everything the proxy forwards and adds (6.2), with every method. (Large bodies: the process
/// test `proxy_streams_100_mb_each_way_in_flat_memory`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_fidelity() {
    let s = TestServer::start(Db::Sqlite).await;
    let k = s.create_tenant("acme", 0).await;
    deploy(&s, &k, "Echo", "1.0.0", 1, &[]).await;
    start(&s, &k, "Echo", None, None).await;
    wait_healthy(&s, &k, "Echo", None, 1).await;
    let base = svc_path("Echo", None, "/methods");
    for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CUSTOM"] {
        let m = Method::from_bytes(m.as_bytes()).unwrap();
        let echo = s
            .req(&k, m.clone(), &format!("{base}/echo/a%2Fb/c/?x=1&y=%20z"))
            .with(|r| r.header("x-custom", "kept"))
            .with(|r| r.header("coopr-apikey", "secret"))
            .with(|r| r.header("x-corral-tenant", "forged"))
            .with(|r| r.header("x-forwarded-for", "203.0.113.9"))
            .with(|r| r.header("connection", "x-drop"))
            .with(|r| r.header("x-drop", "gone"))
            .with(|r| r.header("x-request-id", "trace-proxy"))
            .with(|r| r.body("hello"))
            .ok()
            .await;
        assert_eq!(echo["method"], m.as_str());
        assert_eq!(echo["path"], "/echo/a%2Fb/c/", "the path is forwarded raw");
        assert_eq!(echo["query"], "x=1&y=%20z");
        assert_eq!(echo["body_len"], 5);
        let h = &echo["headers"];
        assert_eq!(h["x-custom"], "kept");
        assert!(h.get("authorization").is_none(), "{h}");
        assert!(h.get("coopr-apikey").is_none(), "{h}");
        assert!(h.get("x-drop").is_none(), "{h}");
        assert_eq!(h["x-corral-tenant"], "acme");
        assert_eq!(h["x-corral-user"], "admin");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], s.base.trim_start_matches("http://"));
        assert_eq!(h["x-request-id"], "trace-proxy");
        assert!(h["host"].as_str().unwrap().starts_with("127.0.0.1:"), "{h}");
    }
    s.req(&k, Method::HEAD, &format!("{base}/echo"))
        .expect_status(StatusCode::OK)
        .await;
    // An empty endpoint path forwards `/`.
    let root = s.get(&k, &base).ok().await;
    assert_eq!(root["version"], "1.0.0");
    // Credentials are Corral's: none, no proxying.
    s.req_anon(Method::GET, &format!("{base}/echo"))
        .expect_error(StatusCode::UNAUTHORIZED, None)
        .await;

    s.stop().await;
}

/// The body limit (413, declared or streamed) and the response timeout (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_limits() {
    let s = TestServer::start_with(Db::Sqlite, |c| {
        c.proxy_max_body_bytes = 1024 * 1024;
        c.proxy_timeout = 1;
    })
    .await;
    let k = s.create_tenant("acme", 0).await;
    deploy(&s, &k, "Echo", "1.0.0", 1, &[]).await;
    start(&s, &k, "Echo", None, None).await;
    wait_healthy(&s, &k, "Echo", None, 1).await;
    let base = svc_path("Echo", None, "/methods");
    s.post(&k, &format!("{base}/echo"))
        .with(|r| r.body(vec![0u8; 2 * 1024 * 1024]))
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, None)
        .await;
    let stream = futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![1u8; 64 * 1024])));
    s.post(&k, &format!("{base}/echo"))
        .with(|r| r.body(reqwest::Body::wrap_stream(stream)))
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, None)
        .await;
    assert_eq!(
        s.post(&k, &format!("{base}/echo"))
            .with(|r| r.body(vec![0u8; 1024 * 1024]))
            .ok()
            .await["body_len"],
        1024 * 1024
    );
    s.get(&k, &format!("{base}/slow?ms=3000"))
        .expect_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service did not answer within 1 s.",
        )
        .await;
    s.stop().await;
}

/// Which version answered `GET /` through the unversioned proxy, `n` times, 16 at a time.
async fn versions_hit(s: &TestServer, k: &str, app: &str, n: usize) -> BTreeMap<String, usize> {
    use futures_util::StreamExt;
    let path = svc_path(app, None, "/methods/");
    let answers: Vec<String> = futures_util::stream::iter(0..n)
        .map(|_| async {
            let body = s.get(k, &path).ok().await;
            body["version"].as_str().unwrap().to_string()
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut counts = BTreeMap::new();
    for a in answers {
        *counts.entry(a).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn route_config_split_and_pinning() {
    let s = TestServer::start(Db::Sqlite).await;
    let k = s.create_tenant("acme", 0).await;
    let rc = format!("{NS}/apps/Shop/services/svc/routeconfig");
    s.get(&k, &rc)
        .expect_error(StatusCode::NOT_FOUND, "Application 'Shop' not found.")
        .await;
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        deploy(&s, &k, "Shop", v, 1, &[]).await;
    }
    assert_eq!(s.get(&k, &rc).ok().await, json!({}));
    s.get(&k, &format!("{NS}/apps/Shop/services/nope/routeconfig"))
        .expect_error(
            StatusCode::NOT_FOUND,
            "Service 'nope' not found in application 'Shop'.",
        )
        .await;
    let invalid = "Route config contains invalid format or empty content.";
    for (body, text) in [
        (json!({}), invalid),
        (json!([1]), invalid),
        (json!({"1.0.0": "50", "2.0.0": 50}), invalid),
        (json!({"1.0.0": 101}), invalid),
        (json!({"1.0.0": -1, "2.0.0": 101}), invalid),
        (json!({"1.0.0": 50.5, "2.0.0": 49.5}), invalid),
        (
            json!({"1.0.0": 50, "4.0.0": 25, "5.0.0": 25}),
            "Route config contains versions that do not exist: Shop@4.0.0, Shop@5.0.0.",
        ),
        (
            json!({"1.0.0": 30, "2.0.0": 60}),
            "Route Percentage needs to add up to 100.",
        ),
    ] {
        s.put(&k, &rc)
            .case(format!("{body:?}, {text:?}"))
            .json(body)
            .expect_error(StatusCode::BAD_REQUEST, text)
            .await;
    }
    s.put(&k, &rc)
        .json(json!({"1.0.0": 90, "2.0.0": 10, "3.0.0": 0}))
        .expect_empty_ok()
        .await;
    assert_eq!(
        s.get(&k, &rc).ok().await,
        json!({"1.0.0": 90, "2.0.0": 10, "3.0.0": 0})
    );
    // A version named by a config cannot be deleted (3.8).
    s.delete(&k, &format!("{NS}/apps/Shop/versions/3.0.0"))
        .expect_error(
            StatusCode::CONFLICT,
            "Version '3.0.0' is referenced by the route config of service 'svc'.",
        )
        .await;

    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        start(&s, &k, "Shop", Some(v), None).await;
    }
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        wait_healthy(&s, &k, "Shop", Some(v), 1).await;
    }
    // 10,000 requests: 90/10 within ±2 %, and 3.0.0 (weight 0) never.
    let counts = versions_hit(&s, &k, "Shop", 10_000).await;
    let first = *counts.get("1.0.0").unwrap_or(&0);
    let second = *counts.get("2.0.0").unwrap_or(&0);
    assert_eq!(counts.get("3.0.0"), None, "{counts:?}");
    assert_eq!(first + second, 10_000);
    assert!((8_800..=9_200).contains(&first), "{counts:?}");

    // Pinned requests ignore the config.
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        for _ in 0..20 {
            assert_eq!(
                method(&s, &k, Method::GET, "Shop", Some(v), "/").ok().await["version"],
                v
            );
        }
    }
    // A stopped version gets nothing; the split is among the versions that can serve.
    s.post(&k, &svc_path("Shop", Some("2.0.0"), "/stop"))
        .expect_empty_ok()
        .await;
    let counts = versions_hit(&s, &k, "Shop", 200).await;
    assert_eq!(counts, BTreeMap::from([("1.0.0".to_string(), 200)]));
    method(&s, &k, Method::GET, "Shop", Some("2.0.0"), "/")
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, STOPPED)
        .await;

    // Without a config: the default fallback (random over all healthy instances).
    s.delete(&k, &rc).expect_empty_ok().await;
    s.delete(&k, &rc)
        .expect_error(
            StatusCode::NOT_FOUND,
            "Route config for service 'svc' of application 'Shop' not found.",
        )
        .await;
    assert_eq!(s.get(&k, &rc).ok().await, json!({}));
    let counts = versions_hit(&s, &k, "Shop", 400).await;
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["1.0.0", "3.0.0"],
        "{counts:?}"
    );
    assert!(counts.values().all(|n| *n > 120), "{counts:?}");
    s.delete(&k, &format!("{NS}/apps/Shop/versions/2.0.0"))
        .expect_empty_ok()
        .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_strategies() {
    for (strategy, expect) in [
        ("largest", Some("2.0.0")),
        ("smallest", Some("1.0.0")),
        ("drop", None),
    ] {
        let s = TestServer::start_with(Db::Sqlite, |c| {
            c.router.userservice.fallback.strategy = serde_json::from_value(json!(strategy)).unwrap();
        })
        .await;
        let k = s.create_tenant("acme", 0).await;
        for v in ["1.0.0", "2.0.0"] {
            deploy(&s, &k, "Shop", v, 1, &[]).await;
            start(&s, &k, "Shop", Some(v), None).await;
            wait_healthy(&s, &k, "Shop", Some(v), 1).await;
        }
        match expect {
            Some(v) => {
                let counts = versions_hit(&s, &k, "Shop", 50).await;
                assert_eq!(counts, BTreeMap::from([(v.to_string(), 50)]), "{strategy}");
            }
            None => {
                method(&s, &k, Method::GET, "Shop", None, "/")
                    .expect_error(StatusCode::SERVICE_UNAVAILABLE, NOT_ACCEPTING)
                    .await;
                // Pinned requests still work.
                method(&s, &k, Method::GET, "Shop", Some("1.0.0"), "/")
                    .expect_status(StatusCode::OK)
                    .await;
            }
        }
        s.stop().await;
    }
}

async fn batch_calls(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.create_tenant("acme", 0).await;
    deploy(&s, &k, "Shop", "1.0.0", 1, &[]).await;
    let item = |app: &str, kind: &str| json!({"appId": app, "programType": kind, "programId": "svc"});
    let out = s
        .post(&k, &format!("{NS}/start"))
        .json(json!([
            item("Shop", "Service"),
            item("Nope", "service"),
            item("Shop", "flow"),
            item("Shop", "thing")
        ]))
        .ok()
        .await;
    assert_eq!(out[0]["statusCode"], 200);
    assert!(out[0]["runid"].is_string(), "{out}");
    assert_eq!(out[0]["programType"], "Service");
    assert_eq!(
        out[1],
        json!({"appId": "Nope", "programType": "service", "programId": "svc",
                              "statusCode": 404, "error": "Program not found"})
    );
    assert_eq!(out[2]["statusCode"], 501);
    assert_eq!(out[2]["error"], "Program type 'flow' is not supported by Corral.");
    assert_eq!(out[3]["statusCode"], 400);
    assert_eq!(out[3]["error"], "Invalid program type 'thing'.");
    let out = s
        .post(&k, &format!("{NS}/status"))
        .json(json!([item("Shop", "service")]))
        .ok()
        .await;
    assert_eq!(
        out,
        json!([{"appId": "Shop", "programType": "service", "programId": "svc",
                            "status": "RUNNING", "statusCode": 200}])
    );
    let out = s
        .post(&k, &format!("{NS}/start"))
        .json(json!([item("Shop", "service")]))
        .ok()
        .await;
    assert_eq!(out[0]["statusCode"], 409);
    let out = s
        .post(&k, &format!("{NS}/stop"))
        .json(json!([item("Shop", "service"), item("Shop", "service")]))
        .ok()
        .await;
    assert_eq!(out[0]["statusCode"], 200);
    assert!(out[0].get("error").is_none(), "{out}");
    assert_eq!(out[1]["statusCode"], 409);
    for (body, text) in [
        (json!({"appId": "Shop"}), None),
        (json!([1]), None),
        (
            json!([{"programType": "service", "programId": "svc"}]),
            Some("'appId' must be specified."),
        ),
    ] {
        s.post(&k, &format!("{NS}/status"))
            .case(format!("{body:?}, {text:?}"))
            .json(body)
            .expect_error(StatusCode::BAD_REQUEST, text)
            .await;
    }
    s.post(&k, "/v3/namespaces/nope/status")
        .json(json!([]))
        .expect_error(StatusCode::NOT_FOUND, "Namespace 'nope' not found.")
        .await;
    // Other program types, as URIs (1).
    for path in [
        format!("{NS}/apps/Shop/flows/f/start"),
        format!("{NS}/apps/Shop/versions/1.0.0/workflows/w/status"),
    ] {
        s.post(&k, &path)
            .expect_error(StatusCode::NOT_IMPLEMENTED, None)
            .await;
    }
    s.stop().await;
}

/// Another tenant, and another namespace of the same tenant, see nothing: 404 everywhere.
async fn isolation(db: Db) {
    let s = TestServer::start(db).await;
    let acme = s.create_tenant("acme", 0).await;
    let other = s.create_tenant("other", 0).await;
    deploy(&s, &acme, "Shop", "1.0.0", 1, &[]).await;
    start(&s, &acme, "Shop", None, None).await;
    wait_healthy(&s, &acme, "Shop", None, 1).await;
    s.put(&other, "/v3/namespaces/dev").ok().await;
    s.put(&acme, "/v3/namespaces/dev").ok().await;
    for key in [&other, &acme] {
        for (m, path) in [
            (Method::GET, "/apps/Shop/services/svc/status"),
            (Method::POST, "/apps/Shop/services/svc/start"),
            (Method::POST, "/apps/Shop/services/svc/stop"),
            (Method::GET, "/apps/Shop/services/svc/instances"),
            (Method::GET, "/apps/Shop/services/svc/runs"),
            (Method::GET, "/apps/Shop/services/svc/available"),
            (Method::GET, "/apps/Shop/services/svc/processes"),
            (Method::GET, "/apps/Shop/services/svc/routeconfig"),
            (Method::GET, "/apps/Shop/services/svc/methods/env"),
            (
                Method::POST,
                "/apps/Shop/versions/1.0.0/services/svc/methods/echo",
            ),
        ] {
            // `other` in its default namespace; `acme` in its other namespace.
            let ns = if key == &other { "default" } else { "dev" };
            s.req(key, m.clone(), &format!("/v3/namespaces/{ns}{path}"))
                .case(format!("{key:?}"))
                .expect_error(StatusCode::NOT_FOUND, "Application 'Shop' not found.")
                .await;
        }
    }
    assert_eq!(
        s.post(&other, &format!("{NS}/status"))
            .json(json!([
        {"appId": "Shop", "programType": "service", "programId": "svc"}]))
            .ok()
            .await[0]["statusCode"],
        404
    );
    // A namespace delete stops its services and ends their runs KILLED.
    let pid = processes(&s, &acme, "Shop", None).await[0]["pid"]
        .as_u64()
        .unwrap();
    s.delete(&acme, NS).expect_empty_ok().await;
    assert!(!process_exists(pid));
    s.stop().await;
}

both_stores!(
    lifecycle,
    crash_health_and_scaling,
    stop_escalates_and_start_failure,
    restart_restores_services,
    batch_calls,
    isolation,
);

/// A service that answers before reading the request body (python's `http.server` answers 501
/// to a POST and closes): the caller gets that answer, as from nginx or Envoy, not a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_passes_through() {
    let s = TestServer::start(Db::Sqlite).await;
    let k = s.create_tenant("acme", 0).await;
    let body = json!({"version": "1.0", "services": [{"name": "svc",
        "command": ["sh", "-c", "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1"],
        "instances": 1, "health_path": "/"}]});
    s.put(&k, &format!("{NS}/apps/Py")).json(body).ok().await;
    start(&s, &k, "Py", None, None).await;
    wait_healthy(&s, &k, "Py", None, 1).await;
    let path = svc_path("Py", None, "/methods/upload");
    for size in [8 * 1024 * 1024, 16] {
        let status = s
            .post(&k, &path)
            .with(|r| r.body(vec![7u8; size]))
            .expect_status(StatusCode::NOT_IMPLEMENTED)
            .await;
        assert!(status.contains("Unsupported method"), "{size}: {status}");
    }
    // The service is still served afterwards.
    s.get(&k, &svc_path("Py", None, "/methods/"))
        .expect_status(StatusCode::OK)
        .await;
    s.stop().await;
}
