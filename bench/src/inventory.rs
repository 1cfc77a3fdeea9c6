//! `corral-bench inventory`: the scale figures of the instances and query issues.
//!
//! One release `corral serve` with a mock cloud (50 ms per operation) and the simulated host
//! transport, one tenant with 64 workers:
//! 1. launch 100,000 mock instances (batches of 2,000), and time until all are `launched`;
//! 2. register 10,000 hosts;
//! 3. one bulk reboot of 10,000 instances: how long the API takes to accept it, and how long until
//!    all are `launched` again;
//! 4. `SELECT state, COUNT(*) FROM instances GROUP BY state` and a three-table join filtered by
//!    name, each timed end to end over HTTP (median and worst of 20);
//! 5. Corral's peak resident memory (VmHWM).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use hyper::Method;
use serde_json::{Value, json};

use crate::load;
use crate::{Children, corral_bin, random_key, spawn_corral};

#[derive(Args, Clone)]
pub struct InventoryArgs {
    /// Instances to launch.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) instances: usize,
    /// Hosts to register.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) hosts: usize,
    /// Instances in the bulk reboot.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) reboot: usize,
    /// Milliseconds each mock operation takes.
    #[arg(long, default_value_t = 50)]
    pub(crate) mock_delay_ms: u64,
    /// Corral binary (default: target/release/corral).
    #[arg(long)]
    pub(crate) corral_bin: Option<std::path::PathBuf>,
    /// Run Corral on this database instead of its SQLite file (e.g. a fresh PostgreSQL
    /// database: `postgres://postgres@127.0.0.1:55432/bench`).
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// Hosts in the tenant for the `GET /api/v0/hosts` figure: the registered ones plus rows
    /// staged straight into the database (`sqlite3` / `psql`, while Corral runs) up to this
    /// count. 0 skips the figure.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) list_hosts: usize,
    /// Extra environment for the Corral process, `KEY=VALUE` (repeatable), e.g.
    /// `GLIBC_TUNABLES=glibc.malloc.arena_max=2` to see the allocator's share of the memory.
    #[arg(long)]
    pub(crate) corral_env: Vec<String>,
}

pub async fn run(args: InventoryArgs) -> Result<()> {
    crate::with_children(async |children, tmp| {
        let f = collect(&args, children, tmp).await?;
        print(&args, &f);
        Ok(())
    })
    .await
}

/// What one inventory run measured, for its own table and for `corral-bench scale`.
pub(crate) struct Figures {
    pub(crate) launch_accept: Duration,
    pub(crate) launch_all_accepted: Duration,
    pub(crate) launch_total: Duration,
    pub(crate) launched_after: Duration,
    pub(crate) hosts_took: Duration,
    pub(crate) hosts_settled: Duration,
    pub(crate) reboot_accept: Duration,
    pub(crate) reboot_accepted: usize,
    pub(crate) reboot_done: Duration,
    /// The group-by's latencies while the bulk reboot ran, sorted.
    pub(crate) under_load: Vec<Duration>,
    pub(crate) group: (Duration, Duration),
    pub(crate) join: (Duration, Duration),
    /// Corral's VmHWM in MiB before the host lists (instances + hosts loaded, read model built).
    pub(crate) peak_mib: Option<f64>,
    pub(crate) host_list: Option<HostList>,
}

impl Figures {
    /// The `p` quantile (0..=1) of the group-by under load, in ms.
    pub(crate) fn under_load_ms(&self, p: f64) -> f64 {
        let v = &self.under_load;
        v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

pub(crate) struct Api {
    addr: std::net::SocketAddr,
    auth: String,
}

impl Api {
    pub(crate) fn new(addr: std::net::SocketAddr, auth: String) -> Api {
        Api { addr, auth }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let headers = [("authorization", self.auth.as_str())];
        let (status, bytes) = load::send(self.addr, method, path, &headers, body).await?;
        if !status.is_success() {
            bail!("{path} answered {status}: {}", String::from_utf8_lossy(&bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{path}: not JSON"))
    }

    /// Creates tenant `name` with `workers` (as the superadmin) and answers its admin's API.
    pub(crate) async fn create_tenant(&self, name: &str, workers: i64) -> Result<Api> {
        let created = self
            .call(
                Method::POST,
                "/v2/tenants",
                Some(&json!({"tenant": {"name": name, "workers": workers}})),
            )
            .await?;
        let key = created["admin"]["apikey"]["key"]
            .as_str()
            .ok_or_else(|| anyhow!("no admin key: {created}"))?;
        Ok(Api::new(self.addr, format!("Bearer {key}")))
    }

    /// The project, flavor and image a launch into the `mock` cloud names, as the API has them.
    pub(crate) async fn mock_ids(&self) -> Result<(Value, Value, Value)> {
        let ids = self
            .rows("select p.id, f.id, i.id from projects p join flavors f on f.project_id = p.id join images i on i.cloud_id = p.cloud_id")
            .await?;
        let first = ids
            .first()
            .ok_or_else(|| anyhow!("the mock cloud has no project"))?;
        Ok((first[0].clone(), first[1].clone(), first[2].clone()))
    }

    pub(crate) fn auth(&self) -> &str {
        &self.auth
    }

    pub(crate) async fn rows(&self, sql: &str) -> Result<Vec<Value>> {
        let out = self
            .call(Method::POST, "/query", Some(&json!([{"sql": sql}])))
            .await?;
        if out[0]["status"] != "success" {
            bail!("{sql}: {}", out[0]);
        }
        Ok(out[0]["data"]["row"]
            .as_array()
            .map(|r| r.iter().map(|x| x["value"].clone()).collect())
            .unwrap_or_default())
    }

    /// Instances per state.
    async fn states(&self) -> Result<Vec<(String, i64)>> {
        Ok(self
            .rows("select state, count(*) from instances group by state order by state")
            .await?
            .into_iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap_or("").to_string(),
                    r[1].as_i64().unwrap_or(0),
                )
            })
            .collect())
    }

    /// Waits until `n` instances are `launched`; answers how long it took.
    pub(crate) async fn until_launched(&self, n: i64, limit: Duration) -> Result<Duration> {
        let t = Instant::now();
        loop {
            let states = self.states().await?;
            let launched = states
                .iter()
                .find(|(s, _)| s == "launched")
                .map_or(0, |(_, c)| *c);
            if launched >= n {
                return Ok(t.elapsed());
            }
            if t.elapsed() > limit {
                bail!("after {limit:?}: {states:?}");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Writes `bench.toml` in `tmp`: `settings` (top-level lines) and the `mock` cloud every
/// benchmark launches into, each operation taking `delay_ms`; answers its path.
pub(crate) fn mock_cloud_config(tmp: &Path, settings: &str, delay_ms: u64) -> Result<std::path::PathBuf> {
    let config = tmp.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"{settings}
[[clouds]]
id = "mock"
type = "mock"
[clouds.options]
delay_ms = {delay_ms}
images = ["debian"]
flavors = [{{ name = "small", ram = 512, vcpus = 1 }}]
"#
        ),
    )?;
    Ok(config)
}

pub(crate) fn peak_rss_mib(pid: Option<u32>) -> String {
    mib_text(proc_status_mib(pid, "VmHWM:"))
}

/// A process's resident memory now.
pub(crate) fn rss_mib(pid: Option<u32>) -> String {
    mib_text(proc_status_mib(pid, "VmRSS:"))
}

pub(crate) fn mib_text(mib: Option<f64>) -> String {
    mib.map_or_else(|| "n/a".into(), |m| format!("{m:.0} MiB"))
}

/// A memory figure of `/proc/PID/status`, in MiB.
pub(crate) fn proc_status_mib(pid: Option<u32>, field: &str) -> Option<f64> {
    pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
}

/// Instances per second over `took` (the launch-throughput figure of issue 14).
pub(crate) fn launch_rate(instances: usize, took: Duration) -> f64 {
    instances as f64 / took.as_secs_f64().max(1e-9)
}

fn median_and_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

pub(crate) async fn collect(args: &InventoryArgs, children: &mut Children, tmp: &Path) -> Result<Figures> {
    let bin = corral_bin(args.corral_bin.as_ref())?;
    let config = mock_cloud_config(
        tmp,
        "host_driver = \"simulated\"\ndatabase_max_connections = 8\n",
        args.mock_delay_ms,
    )?;
    let key = random_key()?;
    let mut env = vec![("CORRAL_CONFIG", config.display().to_string())];
    if let Some(url) = &args.database_url {
        env.push(("CORRAL_DATABASE_URL", url.clone()));
    }
    for kv in &args.corral_env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--corral-env wants KEY=VALUE, got {kv}"))?;
        env.push((k, v.to_string()));
    }
    let addr = spawn_corral(children, &bin, tmp, &key, Duration::from_secs(60), &env).await?;
    let root = Api {
        addr,
        auth: format!("Bearer {key}"),
    };
    let api = root.create_tenant("bench", 64).await?;
    let (project, flavor, image) = api.mock_ids().await?;

    eprintln!("launching {} instances", args.instances);
    let t = Instant::now();
    let mut accept = Duration::ZERO;
    let mut ids: Vec<String> = Vec::with_capacity(args.instances);
    for batch in 0..args.instances.div_ceil(2000) {
        let n = (args.instances - batch * 2000).min(2000);
        let items: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("vm-{batch}-{i}"), "projectId": project, "flavor": {"id": flavor}, "image": {"id": image}}))
            .collect();
        let a = Instant::now();
        let out = api.call(Method::POST, "/instances", Some(&json!(items))).await?;
        accept += a.elapsed();
        for r in out.as_array().into_iter().flatten() {
            if r["status"] != 202 {
                bail!("launch refused: {r}");
            }
            ids.push(r["id"].as_str().unwrap_or_default().to_string());
        }
    }
    let all_accepted = t.elapsed();
    let launched_after = api
        .until_launched(args.instances as i64, Duration::from_secs(3600))
        .await?;
    let launch_total = t.elapsed();
    eprintln!("launched all in {launch_total:?} (API accepted them in {accept:?})");

    eprintln!("registering {} hosts", args.hosts);
    let key_b64 = sample_key()?;
    let t = Instant::now();
    for h in 0..args.hosts {
        let addr_s = format!("10.{}.{}.{}", (h >> 16) & 0xff, (h >> 8) & 0xff, h & 0xff);
        api.call(
            Method::PUT,
            &format!("/api/v0/host/{addr_s}"),
            Some(&json!({"ssh_priv_key": key_b64})),
        )
        .await?;
    }
    let hosts_took = t.elapsed();
    // The reboot is measured on a quiet server: the hosts' investigations finish first.
    let t = Instant::now();
    loop {
        let busy = api
            .rows("select count(*) from hosts where status not in ('active', 'disassociated', 'failed')")
            .await?;
        if busy.first().and_then(|r| r[0].as_i64()) == Some(0) {
            break;
        }
        if t.elapsed() > Duration::from_secs(1800) {
            bail!("host investigations did not finish: {busy:?}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let hosts_settled = hosts_took + t.elapsed();

    eprintln!("bulk reboot of {}", args.reboot);
    // The group-by query, one at a time every 100 ms, from just before the bulk request until
    // every rebooted instance is `launched` again: the query latency under heavy writes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let api = Api::new(api.addr, api.auth.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut took = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                api.rows("SELECT state, COUNT(*) FROM instances GROUP BY state")
                    .await?;
                took.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(took)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let targets: Vec<&String> = ids.iter().take(args.reboot).collect();
    let t = Instant::now();
    let out = api
        .call(Method::PUT, "/instances/reboot", Some(&json!(targets)))
        .await?;
    let reboot_accept = t.elapsed();
    let accepted = out
        .as_array()
        .map_or(0, |a| a.iter().filter(|r| r["status"] == 202).count());
    let reboot_done = api
        .until_launched(args.instances as i64, Duration::from_secs(3600))
        .await?
        + reboot_accept;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut under_load = sampler.await??;
    under_load.sort();

    let mut group = Vec::new();
    let mut join = Vec::new();
    // The fourth request's names when there were four full ones, else the last full one's (the
    // first's below 2,000 instances): every name the join looks for exists.
    let named = (args.instances / 2000).min(4).saturating_sub(1);
    for i in 0..20 {
        let t = Instant::now();
        let r = api
            .rows("SELECT state, COUNT(*) FROM instances GROUP BY state")
            .await?;
        group.push(t.elapsed());
        if i == 0 {
            eprintln!("group by: {r:?}");
        }
        let t = Instant::now();
        let r = api
            .rows(&format!(
                "select i.id, p.name, f.ram from instances i join projects p on i.project_id = p.id \
                 join flavors f on i.flavor_id = f.id where i.name = 'vm-{named}-{i}'"
            ))
            .await?;
        join.push(t.elapsed());
        if r.len() != 1 {
            bail!("the join found {} rows for vm-{named}-{i}", r.len());
        }
    }
    let peak_mib = proc_status_mib(children.pid("corral"), "VmHWM:");
    let host_list = if args.list_hosts > 0 {
        Some(host_list_figures(args, &api, tmp, children.pid("corral")).await?)
    } else {
        None
    };
    Ok(Figures {
        launch_accept: accept,
        launch_all_accepted: all_accepted,
        launch_total,
        launched_after,
        hosts_took,
        hosts_settled,
        reboot_accept,
        reboot_accepted: accepted,
        reboot_done,
        under_load,
        group: median_and_max(group),
        join: median_and_max(join),
        peak_mib,
        host_list,
    })
}

/// The run's own table (`corral-bench inventory`).
fn print(args: &InventoryArgs, f: &Figures) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!(
        "== Inventory at scale (mock cloud, {} ms per operation, 64 workers) ==",
        args.mock_delay_ms
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| launch {} instances: API accepted all (sum of {} requests) | {:.2} s |",
        args.instances,
        args.instances.div_ceil(2000),
        f.launch_accept.as_secs_f64()
    );
    println!(
        "| launch: wall time from the first request to the last accept | {:.2} s |",
        f.launch_all_accepted.as_secs_f64()
    );
    println!(
        "| launch: until all `launched` | {:.1} s |",
        f.launch_total.as_secs_f64()
    );
    println!(
        "| (of which waiting after the last accept) | {:.1} s |",
        f.launched_after.as_secs_f64()
    );
    println!(
        "| launch rate: instances `launched` per second, first request to the last `launched` | {:.0}/s |",
        launch_rate(args.instances, f.launch_total)
    );
    println!(
        "| register {} hosts (sequential PUTs) | {:.1} s |",
        args.hosts,
        f.hosts_took.as_secs_f64()
    );
    println!(
        "| hosts: until every investigation finished | {:.1} s |",
        f.hosts_settled.as_secs_f64()
    );
    println!(
        "| bulk reboot of {}: API answered (202 for {}) | {:.3} s |",
        args.reboot,
        f.reboot_accepted,
        f.reboot_accept.as_secs_f64()
    );
    println!(
        "| bulk reboot: until all `launched` again | {:.1} s |",
        f.reboot_done.as_secs_f64()
    );
    println!(
        "| `SELECT state, COUNT(*) ... GROUP BY state` over HTTP, median / worst of 20 | {:.1} / {:.1} ms |",
        ms(f.group.0),
        ms(f.group.1)
    );
    println!(
        "| three-table join filtered by name over HTTP, median / worst of 20 | {:.1} / {:.1} ms |",
        ms(f.join.0),
        ms(f.join.1)
    );
    println!(
        "| `SELECT state, COUNT(*) ... GROUP BY state` over HTTP while the bulk reboot runs ({} queries): median / p99 / worst | {:.1} / {:.1} / {:.1} ms |",
        f.under_load.len(),
        f.under_load_ms(0.5),
        f.under_load_ms(0.99),
        f.under_load_ms(1.0)
    );
    println!(
        "| Corral peak resident memory (VmHWM), instances + hosts loaded, read model built | {} |",
        mib_text(f.peak_mib)
    );
    if let Some(h) = &f.host_list {
        println!(
            "| `GET /api/v0/hosts` with {} hosts ({} registered, the rest staged in the database): median / worst of 3 | {:.2} / {:.2} s, {:.1} MB |",
            h.hosts,
            args.hosts,
            h.median,
            h.worst,
            h.bytes as f64 / 1e6
        );
        println!(
            "| Corral resident memory before / after the host lists, peak after (VmRSS / VmRSS / VmHWM) | {} / {} / {} |",
            mib_text(h.rss_before),
            mib_text(h.rss_after),
            mib_text(h.hwm_after)
        );
        println!(
            "| `GET /api/v0/host/{{address}}` at {} hosts, median / worst of 200 sequential | {:.2} / {:.2} ms |",
            h.hosts, h.get_median, h.get_worst
        );
    }
}

/// What the host-list step measured.
pub(crate) struct HostList {
    pub(crate) hosts: usize,
    pub(crate) median: f64,
    pub(crate) worst: f64,
    pub(crate) bytes: usize,
    pub(crate) rss_before: Option<f64>,
    pub(crate) rss_after: Option<f64>,
    pub(crate) hwm_after: Option<f64>,
    pub(crate) get_median: f64,
    pub(crate) get_worst: f64,
}

/// Stages hosts up to `--list-hosts` straight into the running server's database (registering
/// them through the API investigates each one, far too slow for 100,000), then times the list
/// and single-host reads.
async fn host_list_figures(
    args: &InventoryArgs,
    api: &Api,
    tmp: &Path,
    pid: Option<u32>,
) -> Result<HostList> {
    let extra = args.list_hosts.saturating_sub(args.hosts);
    if extra > 0 {
        eprintln!("staging {extra} more hosts in the database");
        let sql = format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {extra}) \
             INSERT INTO hosts (tenant_id, address, create_time, status, os, cpus, memory, space, last_check, source) \
             SELECT t.id, '172.' || (i / 65536) || '.' || ((i / 256) % 256) || '.' || (i % 256), 0, 'active', \
             'debian', 4, 8000000, 100000000, 1700000000000 + i, 'staged' FROM n, tenants t WHERE t.name = 'bench'"
        );
        let out = match &args.database_url {
            Some(url) => std::process::Command::new("psql")
                .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", &sql])
                .output()?,
            None => std::process::Command::new("sqlite3")
                .args(["-cmd", ".timeout 60000"])
                .arg(tmp.join("data").join("corral.db"))
                .arg(&sql)
                .output()?,
        };
        if !out.status.success() {
            bail!("staging hosts: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let rss_before = proc_status_mib(pid, "VmRSS:");
    let headers = [("authorization", api.auth.as_str())];
    let mut took = Vec::new();
    let mut bytes = 0;
    let mut hosts = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let (status, body) = load::send(api.addr, Method::GET, "/api/v0/hosts", &headers, None).await?;
        took.push(t.elapsed());
        if !status.is_success() {
            bail!("GET /api/v0/hosts: {status}");
        }
        bytes = body.len();
        let list: Value = serde_json::from_slice(&body)?;
        hosts = list.as_array().map_or(0, Vec::len);
    }
    let rss_after = proc_status_mib(pid, "VmRSS:");
    let hwm_after = proc_status_mib(pid, "VmHWM:");
    let (median, worst) = median_and_max(took);
    let mut gets = Vec::new();
    for i in 0..200usize {
        let h = (i * 7919) % args.hosts.max(1);
        let addr_s = format!("10.{}.{}.{}", (h >> 16) & 0xff, (h >> 8) & 0xff, h & 0xff);
        let t = Instant::now();
        let (status, _) = load::send(
            api.addr,
            Method::GET,
            &format!("/api/v0/host/{addr_s}"),
            &headers,
            None,
        )
        .await?;
        gets.push(t.elapsed());
        if !status.is_success() {
            bail!("GET /api/v0/host/{addr_s}: {status}");
        }
    }
    let (gm, gw) = median_and_max(gets);
    Ok(HostList {
        hosts,
        median: median.as_secs_f64(),
        worst: worst.as_secs_f64(),
        bytes,
        rss_before,
        rss_after,
        hwm_after,
        get_median: gm.as_secs_f64() * 1e3,
        get_worst: gw.as_secs_f64() * 1e3,
    })
}

/// A real Ed25519 key in OpenSSH format (generated for the benchmark), base64 as the API wants.
pub(crate) fn sample_key() -> Result<String> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("k");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .status()
        .context("run ssh-keygen")?
        .success();
    if !ok {
        bail!("ssh-keygen failed");
    }
    use base64::Engine;
    Ok(base64::engine::general_purpose::STANDARD.encode(std::fs::read(&path)?))
}
