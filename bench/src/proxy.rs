//! `corral-bench proxy`: what Corral's method proxy costs (cdap-v3.md 6, issue: services).
//!
//! Corral (release build) runs one instance of `corral-testsvc` as a CDAP service; the same
//! generator then loads `GET /` straight on the instance's port and
//! `GET /v3/.../services/svc/methods/` through Corral (authenticated, routed, streamed), with the
//! same settings, alternating in rounds. The service is the same process both times, so the
//! difference is the proxy: authentication, routing, one more loopback hop.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hyper::Method;
use serde_json::{Value, json};

use crate::load::{self, Target};
use crate::report::{self, Machine, Row};
use crate::{
    Children, FoundationArgs, Measured, corral_bin, git_describe, measure_clean, random_key, sanity_check,
    spawn_corral, workspace_root,
};

const APP: &str = "/v3/namespaces/default/apps/bench";
const SVC: &str = "/v3/namespaces/default/apps/bench/services/svc";

pub async fn run(args: FoundationArgs) -> Result<()> {
    if args.against_hello {
        bail!("--against-hello applies to `foundation` only");
    }
    crate::with_children(async |children, tmp| inner(&args, children, tmp).await).await
}

/// An answer's JSON, or an error naming the call.
fn json_of(what: &str, status: hyper::StatusCode, body: &[u8]) -> Result<Value> {
    if !status.is_success() {
        bail!("{what} answered {status}: {}", String::from_utf8_lossy(body));
    }
    serde_json::from_slice(body).with_context(|| format!("{what}: not JSON"))
}

async fn inner(args: &FoundationArgs, children: &mut Children, tmp: &Path) -> Result<()> {
    let settings = args.load.settings();
    let bin = corral_bin(args.corral_bin.as_ref())?;
    let testsvc = bin.with_file_name("corral-testsvc");
    if !testsvc.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p corral-testsvc`",
            testsvc.display()
        );
    }
    let key = random_key()?;
    let mut env = vec![(
        "CORRAL_SERVICE_WORK_DIR",
        std::env::temp_dir()
            .join("corral-bench-services")
            .display()
            .to_string(),
    )];
    // As root, Corral runs services only as another user.
    if std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_owned))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    {
        env.push(("CORRAL_SERVICE_USER", "nobody".to_owned()));
    }
    let addr = spawn_corral(
        children,
        &bin,
        tmp,
        &key,
        Duration::from_secs(args.startup_timeout),
        &env,
    )
    .await?;
    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str())];
    let spec = json!({"services": [{"name": "svc", "command": [testsvc.display().to_string()],
                                    "health_path": "/health"}]});
    let (st, body) = load::send(addr, Method::PUT, APP, &headers, Some(&spec)).await?;
    json_of("PUT app", st, &body)?;
    let (st, body) = load::send(addr, Method::POST, &format!("{SVC}/start"), &headers, None).await?;
    json_of("start", st, &body)?;
    let started = Instant::now();
    let (port, pid) = loop {
        let (st, body) = load::send(addr, Method::GET, &format!("{SVC}/processes"), &headers, None).await?;
        let procs = json_of("processes", st, &body)?;
        if let Some(p) = procs.get(0).filter(|p| p["healthy"] == true) {
            let port = p["port"].as_u64().ok_or_else(|| anyhow!("no port: {p}"))?;
            let pid = p["pid"].as_u64().ok_or_else(|| anyhow!("no pid: {p}"))?;
            break (u16::try_from(port)?, u32::try_from(pid)?);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the service did not become healthy within 30 s: {procs}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let direct = Target::new(format!("127.0.0.1:{port}").parse()?, "/")?;
    let proxied = Target::new(addr, &format!("{SVC}/methods/"))?.with_header("authorization", &auth)?;
    sanity_check(&direct, "service").await?;
    sanity_check(&proxied, "proxy").await?;

    let corral_pid = children.pid("corral");
    let mut merged: Option<(Measured, Measured)> = None;
    for round in 1..=args.rounds.max(1) {
        if args.rounds > 1 {
            eprintln!("round {round}/{}", args.rounds);
        }
        let d = measure_clean(&direct, settings, Some(pid), args, "direct:").await?;
        let p = measure_clean(&proxied, settings, corral_pid, args, "proxy: ").await?;
        merged = Some(match merged {
            None => (d, p),
            Some((mut md, mut mp)) => {
                md.absorb(&d);
                mp.absorb(&p);
                (md, mp)
            }
        });
    }
    let (d, p) = merged.ok_or_else(|| anyhow!("no rounds run"))?;
    for (what, m) in [("direct", &d), ("proxy", &p)] {
        if m.outcome.error_ratio() > args.max_error_ratio {
            bail!(
                "{what}: {} of {} requests failed",
                m.outcome.errors(),
                m.outcome.total()
            );
        }
    }
    let direct_label = format!("`GET /` straight to the instance (127.0.0.1:{port})");
    let proxy_label = "`GET .../services/svc/methods/` through Corral (bearer)".to_owned();
    let rows = [
        Row {
            label: &direct_label,
            outcome: &d.outcome,
        },
        Row {
            label: &proxy_label,
            outcome: &p.outcome,
        },
    ];
    let ratio = p.outcome.rps() / d.outcome.rps().max(f64::MIN_POSITIVE);
    let q = |m: &Measured, x: f64| m.outcome.hist.quantile(x);
    let machine = Machine::detect();
    let date = report::today_utc();
    let rev = git_describe(&workspace_root());
    println!();
    println!("== Method proxy: through Corral vs straight to the instance ({date}) ==");
    println!("machine:  {}", machine.one_line());
    println!("revision: {rev}");
    println!(
        "settings: {} connections, {:?} warm-up, {:?} measured x {} round(s), HTTP/1.1 keep-alive, closed loop",
        settings.connections,
        settings.warmup,
        settings.duration,
        args.rounds.max(1)
    );
    println!();
    print!("{}", report::table(&rows));
    println!();
    println!("CPU during the run: direct: {}; proxy: {}", d.cores(), p.cores());
    println!("throughput ratio (proxy / direct): {ratio:.3}");
    println!(
        "p50: proxy {} vs direct {}; p99: proxy {} vs direct {}",
        report::ms(q(&p, 0.5)),
        report::ms(q(&d, 0.5)),
        report::ms(q(&p, 0.99)),
        report::ms(q(&d, 0.99))
    );
    println!();
    println!("---- markdown for docs/performance.md ----");
    println!("Measured {date} on {}; revision {rev}.", machine.one_line());
    println!(
        "Settings: {} connections, {} s warm-up, {} s measured x {} round(s).",
        settings.connections,
        settings.warmup.as_secs_f64(),
        settings.duration.as_secs_f64(),
        args.rounds.max(1)
    );
    println!();
    print!("{}", report::markdown_rows(&rows));
    println!();
    println!("Throughput ratio, proxy / direct: **{ratio:.3}**.");
    Ok(())
}
