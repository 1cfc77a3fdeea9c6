//! `corral-bench soak`: a long run at a fixed fraction of the measured capacity (issue 13).
//!
//! One release `corral serve` (SQLite by default, or `--database-url`), a mock cloud, the
//! simulated host transport, one tenant:
//! 1. seed `--instances` launched mock instances, a few hosts and a cluster;
//! 2. capacity: the mixed workload below in a closed loop on `--connections` keep-alive
//!    connections for `--calibrate`, in requests per second;
//! 3. the soak: the same mix, open loop, at `--fraction` of that capacity for `--duration`.
//!    Latency runs from each request's *scheduled* start, so a stalled server shows up in the
//!    figures instead of silently slowing the generator (no coordinated omission);
//! 4. every `--sample` period one row: requests answered, refused (an expected 4xx, e.g. a 409
//!    when a reboot meets a rebooting instance), errors (5xx, transport errors, timeouts, and
//!    requests the generator could not start on time), p50 / p99 latency, Corral's resident
//!    memory and open file descriptors. The last line compares memory early and late.
//!
//! The mix (weights in parentheses): reads `GET /v3/namespaces/default` (2),
//! `GET /instances/{id}` (2), `GET /api/v0/hosts` (1), `POST /query` grouping instances by state
//! (1); writes `PUT /instances/reboot [id]` (2), `PUT` then `DELETE` of a namespace (1, two
//! requests), `PUT` then `DELETE` of a cluster (1, two requests).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};

use crate::hist::Histogram;
use crate::inventory::Api;
use crate::report::{Machine, datetime_utc, ms};
use crate::{Children, corral_bin, parse_duration, random_key, spawn_corral};

#[derive(Args)]
pub struct SoakArgs {
    /// How long the soak runs, e.g. 60m.
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    duration: Duration,
    /// One row of figures per period.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    sample: Duration,
    /// Length of the closed-loop capacity measurement.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    calibrate: Duration,
    /// Fraction of the measured capacity the soak offers.
    #[arg(long, default_value_t = 0.5)]
    fraction: f64,
    /// Keep-alive connections (the closed loop's concurrency, the open loop's pool).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Launched mock instances the reads and reboots pick from.
    #[arg(long, default_value_t = 200)]
    instances: usize,
    /// Milliseconds each mock operation takes.
    #[arg(long, default_value_t = 200)]
    mock_delay_ms: u64,
    /// Per-request timeout (counted as an error).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Run on this PostgreSQL database instead of the embedded SQLite.
    #[arg(long)]
    database_url: Option<String>,
    /// Corral binary (default: target/release/corral).
    #[arg(long)]
    corral_bin: Option<std::path::PathBuf>,
}

pub async fn run(args: SoakArgs) -> Result<()> {
    if !(args.fraction > 0.0 && args.fraction <= 1.0) {
        bail!("--fraction must be in (0, 1]");
    }
    if args.connections == 0 || args.instances == 0 || args.sample.is_zero() {
        bail!("--connections, --instances and --sample must be positive");
    }
    let mut children = Children::default();
    let tmp = tempfile::Builder::new().prefix("corral-bench-").tempdir()?;
    let res = tokio::select! {
        r = inner(&args, &mut children, tmp.path()) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    children.kill_all().await;
    if res.is_err() {
        crate::print_log_tail(&tmp.path().join("corral.log"), 40);
    }
    res
}

/// What the workers share: the server, the tenant's credential and the seeded ids.
struct Shared {
    addr: SocketAddr,
    auth: String,
    instances: Vec<String>,
    seq: AtomicU64,
}

/// Counters of one sample period (or of the calibration).
#[derive(Default)]
struct Period {
    ok: u64,
    refused: u64,
    errors: u64,
    late: u64,
    hist: Histogram,
    samples: Vec<String>,
}

impl Period {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.samples.len() < 3 && !self.samples.contains(&what) {
            self.samples.push(what);
        }
    }
}

/// One request of the mix.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
}

impl Call {
    fn new(method: Method, path: String, body: Option<Value>) -> Call {
        Call { method, path, body }
    }
}

/// The `n`th unit of work of the mix: one or two requests (a create and its delete).
fn unit(shared: &Shared, n: u64) -> Vec<Call> {
    let pick = |list: &[String]| list[(n.wrapping_mul(2_654_435_761) % list.len() as u64) as usize].clone();
    match n % 10 {
        0 | 1 => vec![Call::new(Method::GET, "/v3/namespaces/default".into(), None)],
        2 | 3 => vec![Call::new(
            Method::GET,
            format!("/instances/{}", pick(&shared.instances)),
            None,
        )],
        4 => vec![Call::new(Method::GET, "/api/v0/hosts".into(), None)],
        5 => vec![Call::new(
            Method::POST,
            "/query".into(),
            Some(json!([{"sql": "select state, count(*) from instances group by state"}])),
        )],
        6 | 7 => vec![Call::new(
            Method::PUT,
            "/instances/reboot".into(),
            Some(json!([pick(&shared.instances)])),
        )],
        8 => {
            let ns = format!("/v3/namespaces/soak-{n}");
            vec![
                Call::new(Method::PUT, ns.clone(), Some(json!({"description": "soak"}))),
                Call::new(Method::DELETE, ns, None),
            ]
        }
        _ => {
            let c = format!("/api/v0/cluster/soak-{n}");
            vec![
                Call::new(Method::PUT, c.clone(), None),
                Call::new(Method::DELETE, c, None),
            ]
        }
    }
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

enum Answer {
    Ok,
    /// A 4xx the mix expects now and then (a reboot of a rebooting instance).
    Refused,
    Error(String),
}

async fn send(sender: &mut Sender, shared: &Shared, call: &Call) -> Result<Answer> {
    sender.ready().await?;
    let mut b = Request::builder()
        .method(call.method.clone())
        .uri(call.path.as_str())
        .header(HOST, shared.addr.to_string())
        .header(AUTHORIZATION, shared.auth.as_str());
    let body = match &call.body {
        Some(v) => {
            b = b.header(CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(serde_json::to_vec(v)?))
        }
        None => Full::new(Bytes::new()),
    };
    let resp = sender.send_request(b.body(body)?).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    // A bulk action answers 200 with a status per id: a reboot that met a rebooting instance
    // is refused there.
    let refused_item = call.path == "/instances/reboot"
        && serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.iter().any(|r| r["status"] == 409)))
            .unwrap_or(false);
    Ok(if status.is_success() && !refused_item {
        Answer::Ok
    } else if status == hyper::StatusCode::CONFLICT || refused_item {
        Answer::Refused
    } else {
        Answer::Error(format!(
            "{} {} -> {status}: {}",
            call.method,
            call.path,
            String::from_utf8_lossy(&bytes[..bytes.len().min(160)])
        ))
    })
}

/// Runs one unit on the worker's connection (reconnecting after a transport error) and books
/// it in `period`, its latency counted from `scheduled`.
async fn run_unit(
    conn: &mut Option<Sender>,
    shared: &Shared,
    timeout: Duration,
    scheduled: Instant,
    period: &Mutex<Period>,
) {
    let n = shared.seq.fetch_add(1, Ordering::Relaxed);
    for call in unit(shared, n) {
        let answer = async {
            if conn.is_none() {
                *conn = Some(connect(shared.addr).await?);
            }
            match conn.as_mut() {
                Some(s) => send(s, shared, &call).await,
                None => Err(anyhow!("no connection")),
            }
        };
        let answer = match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                *conn = None;
                Answer::Error(format!("{} {}: {e:#}", call.method, call.path))
            }
            Err(_) => {
                *conn = None;
                Answer::Error(format!(
                    "{} {}: no answer within {timeout:?}",
                    call.method, call.path
                ))
            }
        };
        let took = u64::try_from(scheduled.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut p = period.lock().await;
        match answer {
            Answer::Ok => {
                p.ok += 1;
                p.hist.record(took);
            }
            Answer::Refused => {
                p.refused += 1;
                p.hist.record(took);
            }
            Answer::Error(e) => p.error(e),
        }
    }
}

/// Closed loop: every connection runs units back to back for `length`; answers units per second.
async fn capacity(shared: &Arc<Shared>, args: &SoakArgs) -> Result<(f64, Period)> {
    let period = Arc::new(Mutex::new(Period::default()));
    let end = Instant::now() + args.calibrate;
    let units = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            let (shared, period, units, timeout) =
                (shared.clone(), period.clone(), units.clone(), args.timeout);
            tokio::spawn(async move {
                let mut conn = None;
                while Instant::now() < end {
                    run_unit(&mut conn, &shared, timeout, Instant::now(), &period).await;
                    units.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| anyhow!("calibration task failed: {e}"))?;
    }
    let rate = units.load(Ordering::Relaxed) as f64 / args.calibrate.as_secs_f64();
    let p = std::mem::take(&mut *period.lock().await);
    Ok((rate, p))
}

/// The machine's one-minute load average: other work on the machine shows in the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "n/a".into())
}

/// Open files of a process.
fn open_fds(pid: Option<u32>) -> String {
    pid.and_then(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map_or_else(|| "n/a".into(), |d| d.count().to_string())
}

fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn inner(args: &SoakArgs, children: &mut Children, tmp: &Path) -> Result<()> {
    let machine = Machine::detect();
    let bin = corral_bin(args.corral_bin.as_ref())?;
    let config = tmp.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"host_driver = "simulated"
[[clouds]]
id = "mock"
type = "mock"
[clouds.options]
delay_ms = {}
images = ["debian"]
flavors = [{{ name = "small", ram = 512, vcpus = 1 }}]
"#,
            args.mock_delay_ms
        ),
    )?;
    let mut env = vec![("CORRAL_CONFIG", config.display().to_string())];
    if let Some(url) = &args.database_url {
        env.push(("CORRAL_DATABASE_URL", url.clone()));
    }
    let key = random_key()?;
    let addr = spawn_corral(children, &bin, tmp, &key, Duration::from_secs(60), &env).await?;
    let pid = children.pid("corral");
    let root = Api::new(addr, format!("Bearer {key}"));
    let created = root
        .call(
            Method::POST,
            "/v2/tenants",
            Some(&json!({"tenant": {"name": "soak", "workers": 32}})),
        )
        .await?;
    let tenant_key = created["admin"]["apikey"]["key"]
        .as_str()
        .ok_or_else(|| anyhow!("no admin key: {created}"))?;
    let auth = format!("Bearer {tenant_key}");
    let api = Api::new(addr, auth.clone());

    let ids = api
        .rows("select p.id, f.id, i.id from projects p join flavors f on f.project_id = p.id join images i on i.cloud_id = p.cloud_id")
        .await?;
    let first = ids
        .first()
        .ok_or_else(|| anyhow!("the mock cloud has no project"))?;
    let (project, flavor, image) = (first[0].clone(), first[1].clone(), first[2].clone());
    let items: Vec<Value> = (0..args.instances)
        .map(|i| json!({"name": format!("soak-{i}"), "projectId": project, "flavor": {"id": flavor}, "image": {"id": image}}))
        .collect();
    let out = api.call(Method::POST, "/instances", Some(&json!(items))).await?;
    let instances: Vec<String> = out
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    if instances.len() != args.instances {
        bail!(
            "launch answered {} ids for {} instances: {out}",
            instances.len(),
            args.instances
        );
    }
    api.until_launched(args.instances as i64, Duration::from_secs(600))
        .await?;
    let key_b64 = crate::inventory::sample_key()?;
    for h in 0..20 {
        let a = format!("10.99.0.{}", h + 1);
        api.call(
            Method::PUT,
            &format!("/api/v0/host/{a}"),
            Some(&json!({"ssh_priv_key": key_b64})),
        )
        .await?;
    }
    let shared = Arc::new(Shared {
        addr,
        auth,
        instances,
        seq: AtomicU64::new(0),
    });

    eprintln!(
        "measuring capacity for {:?} on {} connections",
        args.calibrate, args.connections
    );
    let (cap, cal) = capacity(&shared, args).await?;
    let rate = cap * args.fraction;
    println!(
        "# corral-bench soak, {}",
        datetime_utc(std::time::SystemTime::now())
    );
    println!("machine: {}", machine.one_line());
    println!(
        "store: {}; capacity {:.0} units/s (closed loop, {} connections, {:?}: {} ok, {} refused, {} errors, p99 {}); \
         soak at {:.0}% = {:.1} units/s for {:?}",
        if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        cap,
        args.connections,
        args.calibrate,
        cal.ok,
        cal.refused,
        cal.errors,
        ms(cal.hist.quantile(0.99)),
        args.fraction * 100.0,
        rate,
        args.duration
    );
    if !cal.samples.is_empty() {
        println!("calibration errors: {}", cal.samples.join(" | "));
    }
    if rate <= 0.0 {
        bail!("measured no capacity");
    }

    // The open loop: a ticker hands scheduled start times to a pool of connection workers. A
    // unit that waited longer than the request timeout for a worker, or found the queue full,
    // counts as late (an error: the server fell behind).
    let (tx, rx) = mpsc::channel::<Instant>(65_536);
    let rx = Arc::new(Mutex::new(rx));
    let period = Arc::new(Mutex::new(Period::default()));
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (shared, period, rx, timeout) = (shared.clone(), period.clone(), rx.clone(), args.timeout);
            tokio::spawn(async move {
                let mut conn = None;
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(scheduled) = next else { break };
                    if scheduled.elapsed() > timeout {
                        // Queued longer than a request may take: the server fell behind.
                        period.lock().await.late += 1;
                        continue;
                    }
                    run_unit(&mut conn, &shared, timeout, scheduled, &period).await;
                }
            })
        })
        .collect();
    println!();
    println!(
        "| minute | units offered | ok | refused (409) | errors | p50 | p99 | RSS MiB | open fds | load avg |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let end = start + args.duration;
    let mut next_sample = start + args.sample;
    let mut offered = 0u64;
    let mut scheduled = start;
    let (mut total_ok, mut total_refused, mut total_errors) = (0u64, 0u64, 0u64);
    let mut rss_rows: Vec<u64> = Vec::new();
    let mut minute = 0;
    let mut errors_seen: Vec<String> = Vec::new();
    while scheduled < end {
        tokio::time::sleep_until(scheduled.into()).await;
        offered += 1;
        if tx.try_send(scheduled).is_err() {
            period.lock().await.late += 1;
        }
        scheduled += interval;
        if Instant::now() >= next_sample || scheduled >= end {
            next_sample += args.sample;
            minute += 1;
            let p = std::mem::take(&mut *period.lock().await);
            let rss = rss_kib(pid);
            if let Some(r) = rss {
                rss_rows.push(r);
            }
            let errors = p.errors + p.late;
            total_ok += p.ok;
            total_refused += p.refused;
            total_errors += errors;
            for s in p.samples {
                if errors_seen.len() < 5 && !errors_seen.contains(&s) {
                    errors_seen.push(s);
                }
            }
            println!(
                "| {minute} | {offered} | {} | {} | {errors}{} | {} | {} | {} | {} | {} |",
                p.ok,
                p.refused,
                if p.late > 0 {
                    format!(" ({} late)", p.late)
                } else {
                    String::new()
                },
                ms(p.hist.quantile(0.5)),
                ms(p.hist.quantile(0.99)),
                rss.map_or_else(|| "n/a".into(), |k| format!("{:.0}", k as f64 / 1024.0)),
                open_fds(pid),
                load_average(),
            );
            offered = 0;
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    // Units still in flight when the clock ran out land after the last row.
    let tail = std::mem::take(&mut *period.lock().await);
    total_ok += tail.ok;
    total_refused += tail.refused;
    total_errors += tail.errors + tail.late;
    println!();
    let early = rss_rows.iter().take(5).copied().max().unwrap_or(0);
    let late = rss_rows.iter().rev().take(5).copied().max().unwrap_or(0);
    println!(
        "total: {total_ok} ok, {total_refused} refused, {total_errors} errors over {:?}; RSS max of the first five \
         samples {:.0} MiB, of the last five {:.0} MiB, peak {:.0} MiB",
        args.duration,
        early as f64 / 1024.0,
        late as f64 / 1024.0,
        rss_rows.iter().copied().max().unwrap_or(0) as f64 / 1024.0
    );
    if !errors_seen.is_empty() {
        println!("sample errors: {}", errors_seen.join(" | "));
    }
    if total_errors > 0 {
        bail!("{total_errors} errors during the soak");
    }
    Ok(())
}
