//! Losing a replica (issue 13 item 9): three `corral serve` processes on one PostgreSQL behind a
//! small round-robin TCP load balancer. The replica that holds the running work is SIGKILLed in
//! the middle of a rolling upgrade over real sshd hosts, and again in the middle of a bulk
//! launch on the mock cloud. The survivors finish every job within 30 s (the lease is 3 s), each
//! host's upgrade command runs exactly once (counted on the host side) and no instance is left
//! in a transitional state.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, Row};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{BOOTSTRAP_KEY, Db, fresh_database};
use crate::process::Proc;

/// A round-robin TCP balancer in front of the replicas: a backend that refuses the connection
/// (a killed replica) is skipped, as a load balancer's health check would.
struct Balancer {
    addr: String,
    backends: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(backends: Vec<String>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let backends = Arc::new(Mutex::new(backends));
        let next = Arc::new(AtomicUsize::new(0));
        let list = backends.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (list, next) = (list.clone(), next.clone());
                tokio::spawn(async move {
                    let candidates = list.lock().unwrap().clone();
                    for _ in 0..candidates.len() {
                        let i = next.fetch_add(1, Ordering::Relaxed) % candidates.len();
                        if let Ok(mut outbound) = TcpStream::connect(&candidates[i]).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { addr, backends, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn set_backends(&self, backends: Vec<String>) {
        *self.backends.lock().unwrap() = backends;
    }

    /// One request through the balancer: its status and JSON body (`Null` when empty).
    async fn call(
        &self,
        c: &reqwest::Client,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = c.request(method, self.url(path)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The lease owner a replica logged when it started serving.
fn worker_of(p: &Proc) -> String {
    p.log_text()
        .lines()
        .find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "corral is serving")
                .then(|| v["worker"].as_str().map(str::to_string))
                .flatten()
        })
        .expect("the serving line names the worker")
}

/// The lease owners of the running jobs of `kind`, with how many each holds.
async fn running_leases(db_url: &str, kind: &str) -> HashMap<String, i64> {
    let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
    sqlx::query(
        "SELECT lease_owner, COUNT(*) AS n FROM jobs WHERE state = 'running' AND kind = $1 \
         AND lease_owner IS NOT NULL GROUP BY lease_owner",
    )
    .bind(kind)
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<String, _>("lease_owner"), r.get::<i64, _>("n")))
    .collect()
}

struct Cluster {
    replicas: Vec<Proc>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Cluster {
    fn spawn(&mut self, data: &Path) {
        let mut args = self.args.clone();
        args.extend(["--data-dir".to_string(), data.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = Proc::spawn(&args, &envs).unwrap_or_else(|e| panic!("{e:?}"));
        self.replicas.push(p);
    }

    fn addrs(&self) -> Vec<String> {
        self.replicas.iter().map(|p| p.addr.clone()).collect()
    }

    /// SIGKILLs the replica that holds the most running jobs of `kind`, once at least `least`
    /// of them run; answers how many it held once it is dead and out of the balancer.
    async fn kill_busiest(&mut self, lb: &Balancer, db_url: &str, kind: &str, least: i64) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leases = running_leases(db_url, kind).await;
            if leases.values().sum::<i64>() >= least {
                let busiest = self
                    .replicas
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| leases.get(&worker_of(p)).map(|n| (*n, i)))
                    .max();
                if let Some((held, i)) = busiest {
                    let p = self.replicas.remove(i);
                    p.signal("-KILL");
                    let (code, _) = p.terminate_after_signal();
                    assert_eq!(code, None, "the replica was killed by a signal");
                    lb.set_backends(self.addrs());
                    return held;
                }
            }
            assert!(Instant::now() < deadline, "no replica took the work: {leases:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn poll(
    c: &reqwest::Client,
    key: &str,
    url: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    loop {
        if let Ok(resp) = c.get(url).bearer_auth(key).send().await
            && resp.status() == StatusCode::OK
            && let Ok(v) = resp.json::<Value>().await
        {
            if done(&v) {
                return v;
            }
            last = v;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not settle within {within:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_replica_mid_work_leaves_nothing_undone() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    std::fs::create_dir(&trace).unwrap();
    let sshd = crate::helpers::SshdHosts::start(3);
    let addresses = sshd.addresses.clone();
    let server_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let config = dir.path().join("corral.toml");
    std::fs::write(
        &config,
        format!(
            // Top-level keys first: the profiles' tables follow.
            "server_key = \"{server_key}\"\n{}\
             [[clouds]]\nid = \"mock\"\ntype = \"mock\"\n[clouds.options]\ndelay_ms = 1500\nimages = [\"debian\"]\n\
             [[clouds.options.flavors]]\nname = \"small\"\nvcpus = 1\nram = 512\nroot_disk = 10\n",
            sshd.config(&trace, 2)
        ),
    )
    .unwrap();
    let db_url = fresh_database(Db::Postgres, dir.path()).await;
    let mut cluster = Cluster {
        replicas: Vec::new(),
        args: ["--database-url", &db_url, "--config", config.to_str().unwrap()]
            .map(String::from)
            .to_vec(),
        envs: vec![("CORRAL_BOOTSTRAP_KEY".into(), BOOTSTRAP_KEY.into())],
    };
    // The first replica migrates the database alone; the others join it.
    for i in 0..3 {
        cluster.spawn(&dir.path().join(format!("data-{i}")));
    }
    let lb = Balancer::start(cluster.addrs()).await;
    // No pooled connection outlives a killed backend: every request is a new balanced one.
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let (_, created) = lb
        .call(
            &c,
            BOOTSTRAP_KEY,
            Method::POST,
            "/v2/tenants",
            Some(json!({"tenant": {"name": "acme", "workers": 4}})),
        )
        .await;
    let admin = created["admin"]["apikey"]["key"].as_str().unwrap().to_string();

    // A rolling upgrade: kill whoever runs a host step while it runs.
    let (status, _) = lb.call(&c, &admin, Method::PUT, "/api/v0/cluster/c", None).await;
    assert_eq!(status, StatusCode::CREATED);
    let b64 = sshd.key_b64();
    for a in &addresses {
        let body = json!({"ssh_priv_key": b64, "cluster": "c"});
        let (status, _) = lb
            .call(&c, &admin, Method::PUT, &format!("/api/v0/host/{a}"), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{a}");
    }
    poll(
        &c,
        &admin,
        &lb.url("/api/v0/cluster/c"),
        Duration::from_secs(60),
        |v| v["hosts"]["available"] == 3,
    )
    .await;
    let (status, _) = lb
        .call(&c, &admin, Method::PUT, "/api/v0/cluster/c/upgrade", None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    poll(
        &c,
        &admin,
        &lb.url("/api/v0/cluster/c/upgrade"),
        Duration::from_secs(30),
        |v| v["upgraded"].as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    // The second host's step is running (one at a time): its holder dies.
    let held = cluster.kill_busiest(&lb, &db_url, "cluster.host_step", 1).await;
    assert_eq!(held, 1, "one host step at a time");
    let rec = poll(
        &c,
        &admin,
        &lb.url("/api/v0/cluster/c/upgrade"),
        Duration::from_secs(30),
        |v| v["status"] != "in_process",
    )
    .await;
    assert_eq!(rec["status"], "finished", "{rec}");
    assert_eq!(rec["upgraded"], json!(addresses));
    for (a, count) in sshd.upgrade_counts(&trace) {
        assert_eq!(count, 1, "host {a} ran its upgrade {count} times");
    }

    // A bulk launch on three replicas again: kill the one holding the most launches.
    cluster.spawn(&dir.path().join("data-3"));
    lb.set_backends(cluster.addrs());
    let sql = "select p.id, f.id, i.id from projects p join flavors f on f.project_id = p.id \
               join project_images pi on pi.project_id = p.id join images i on i.id = pi.image_id \
               where p.cloud_id = 'mock' and f.name = 'small'";
    let (_, query) = lb
        .call(&c, &admin, Method::POST, "/query", Some(json!([{"sql": sql}])))
        .await;
    let row = &query[0]["data"]["row"][0]["value"];
    let (project, flavor, image) = (row[0].clone(), row[1].clone(), row[2].clone());
    assert!(
        project.is_string() && flavor.is_string() && image.is_string(),
        "{query}"
    );
    let items: Vec<Value> = (0..24)
        .map(|i| json!({"name": format!("vm-{i}"), "projectId": project, "flavor": {"id": flavor}, "image": {"id": image}}))
        .collect();
    let (_, launched) = lb
        .call(&c, &admin, Method::POST, "/instances", Some(json!(items)))
        .await;
    let ids: Vec<String> = launched
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["status"], 202, "{r}");
            r["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 24);
    let held = cluster.kill_busiest(&lb, &db_url, "instance.action", 3).await;
    assert!(held >= 1, "the killed replica held launches");
    let killed_at = Instant::now();
    for id in &ids {
        let left = Duration::from_secs(30).saturating_sub(killed_at.elapsed());
        let inst = poll(&c, &admin, &lb.url(&format!("/instances/{id}")), left, |v| {
            v["state"] == "launched" || v["state"] == "error"
        })
        .await;
        assert_eq!(inst["state"], "launched", "{inst}");
    }
    let sql = "select state, count(*) from instances group by state";
    let (_, states) = lb
        .call(&c, &admin, Method::POST, "/query", Some(json!([{"sql": sql}])))
        .await;
    assert_eq!(
        states[0]["data"]["row"],
        json!([{"value": ["launched", 24]}]),
        "{states}"
    );
    for p in cluster.replicas.drain(..) {
        assert_eq!(p.terminate().0, Some(0));
    }
}
