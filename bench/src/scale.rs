//! `corral-bench scale`: every figure of issue 14 in one run, on SQLite and (given a PostgreSQL
//! server) on PostgreSQL, printed as the table with "met" / "not met".
//!
//! Per store, two servers, one after the other:
//! 1. a fresh Corral with one registered host (simulated transport): authenticated
//!    `GET /api/v0/host/{address}` and `GET /v3/namespaces/default` against the bare axum server,
//!    same generator, same settings (the `foundation` measurement, waiting for an idle machine);
//! 2. `corral-bench inventory` with no mock delay: 100,000 launches, 10,000 hosts, the bulk reboot
//!    with the group-by sampled under it, peak memory, then the 100,000-host list.
//!
//! On PostgreSQL each server gets a database of its own, created on the given server and dropped
//! after.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hyper::Method;
use serde_json::json;

use crate::inventory::{self, Api, Figures, InventoryArgs, launch_rate, mib_text, mock_cloud_config};
use crate::load::Target;
use crate::report::{self, Machine};
use crate::{
    Children, FoundationArgs, LoadArgs, Measured, corral_bin, git_describe, measure_clean, random_key,
    sanity_check, spawn_corral, spawn_hello, workspace_root,
};

#[derive(clap::Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    /// Instances to launch.
    #[arg(long, default_value_t = 100_000)]
    instances: usize,
    /// Hosts to register through the API.
    #[arg(long, default_value_t = 10_000)]
    hosts: usize,
    /// Instances in the bulk reboot.
    #[arg(long, default_value_t = 10_000)]
    reboot: usize,
    /// Hosts in the tenant for the `GET /api/v0/hosts` figure (the rest staged in the database).
    #[arg(long, default_value_t = 100_000)]
    list_hosts: usize,
    /// A PostgreSQL server to run the same figures on (any database of it; the bench creates and
    /// drops its own). Without it, and without CORRAL_BENCH_DATABASE_URL, only SQLite runs.
    #[arg(long, env = "CORRAL_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Corral binary (default: target/release/corral).
    #[arg(long)]
    corral_bin: Option<PathBuf>,
    /// Before each GET measurement, wait up to this long for the rest of the machine to be idle.
    #[arg(long, default_value = "120s", value_parser = crate::parse_duration)]
    wait_idle: Duration,
    /// Re-measure a disturbed GET measurement at most this many times.
    #[arg(long, default_value_t = 3)]
    retries: u32,
}

/// What one store's run measured.
struct StoreFigures {
    bare: Measured,
    host: Measured,
    namespace: Measured,
    inventory: Figures,
}

pub async fn run(args: ScaleArgs) -> Result<()> {
    let started = report::today_utc();
    let load_before = loadavg();
    let t = Instant::now();
    let sqlite = run_store(&args, None).await?;
    let postgres = match &args.database_url {
        Some(url) => Some(run_store(&args, Some(url)).await?),
        None => {
            eprintln!("no --database-url / CORRAL_BENCH_DATABASE_URL: PostgreSQL skipped");
            None
        }
    };
    print_table(
        &args,
        &started,
        &load_before,
        t.elapsed(),
        &sqlite,
        postgres.as_ref(),
    );
    Ok(())
}

async fn run_store(args: &ScaleArgs, server: Option<&String>) -> Result<StoreFigures> {
    let store = if server.is_some() { "PostgreSQL" } else { "SQLite" };
    eprintln!("== {store}: authenticated GETs");
    let db = server.map(|url| Database::create(url)).transpose()?;
    let (bare, host, namespace) = crate::with_children(async |children, tmp| {
        gets(args, db.as_ref().map(|d| d.url.as_str()), children, tmp).await
    })
    .await?;
    drop(db);

    eprintln!("== {store}: inventory");
    let db = server.map(|url| Database::create(url)).transpose()?;
    let inv = InventoryArgs {
        instances: args.instances,
        hosts: args.hosts,
        reboot: args.reboot,
        // Issue 14's launch rate is with no artificial delay.
        mock_delay_ms: 0,
        corral_bin: args.corral_bin.clone(),
        database_url: db.as_ref().map(|d| d.url.clone()),
        list_hosts: args.list_hosts,
        // A slow store must show as a low rate, not as instances timed out into `error`.
        corral_env: vec!["CORRAL_INSTANCE_TRANSITION_TIMEOUT=3600".into()],
    };
    let inventory =
        crate::with_children(async |children, tmp| inventory::collect(&inv, children, tmp).await).await?;
    Ok(StoreFigures {
        bare,
        host,
        namespace,
        inventory,
    })
}

/// Bare axum, then Corral's host and namespace reads, each measured on an idle machine.
async fn gets(
    args: &ScaleArgs,
    database_url: Option<&str>,
    children: &mut Children,
    tmp: &Path,
) -> Result<(Measured, Measured, Measured)> {
    let fa = FoundationArgs {
        load: args.load.clone(),
        corral_bin: args.corral_bin.clone(),
        startup_timeout: 60,
        max_error_ratio: 0.01,
        wait_idle: args.wait_idle,
        retries: args.retries,
        rounds: 1,
        against_hello: false,
    };
    let settings = args.load.settings();
    let bin = corral_bin(args.corral_bin.as_ref())?;
    let config = mock_cloud_config(tmp, "host_driver = \"simulated\"\n", 0)?;
    let key = random_key()?;
    let mut env = vec![("CORRAL_CONFIG", config.display().to_string())];
    if let Some(url) = database_url {
        env.push(("CORRAL_DATABASE_URL", url.to_string()));
    }
    let addr = spawn_corral(children, &bin, tmp, &key, Duration::from_secs(60), &env).await?;
    let auth = format!("Bearer {key}");
    let api = Api::new(addr, auth.clone());
    let host = "10.0.0.1";
    api.call(
        Method::PUT,
        &format!("/api/v0/host/{host}"),
        Some(&json!({"ssh_priv_key": inventory::sample_key()?})),
    )
    .await?;
    let t = Instant::now();
    loop {
        let h = api
            .call(Method::GET, &format!("/api/v0/host/{host}"), None)
            .await?;
        // Investigated: `disassociated` until it joins a cluster.
        if h["status"] == "active" || h["status"] == "disassociated" {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("host {host} was not investigated: {h}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let host_t = Target::new(addr, &format!("/api/v0/host/{host}"))?.with_header("authorization", &auth)?;
    let ns_t = Target::new(addr, "/v3/namespaces/default")?.with_header("authorization", &auth)?;
    sanity_check(&host_t, "corral host").await?;
    sanity_check(&ns_t, "corral namespace").await?;
    let bare_addr = spawn_hello(children, "hello").await?;
    let bare_t = Target::new(bare_addr, "/hello")?;
    sanity_check(&bare_t, "bare axum").await?;

    let bare = measure_clean(&bare_t, settings, children.pid("hello"), &fa, "bare:     ").await?;
    let host_m = measure_clean(&host_t, settings, children.pid("corral"), &fa, "host:     ").await?;
    let ns_m = measure_clean(&ns_t, settings, children.pid("corral"), &fa, "namespace:").await?;
    for (what, m) in [("host", &host_m), ("namespace", &ns_m)] {
        if m.outcome.error_ratio() > fa.max_error_ratio {
            bail!(
                "{:.2}% of the {what} requests failed",
                m.outcome.error_ratio() * 100.0
            );
        }
    }
    Ok((bare, host_m, ns_m))
}

/// A database of its own on the given PostgreSQL server, dropped when done.
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    fn create(server: &str) -> Result<Database> {
        let name = format!("corral_bench_{}", &random_key()?[..12]);
        psql(server, &format!("CREATE DATABASE {name}"))?;
        Ok(Database {
            admin: server.to_string(),
            url: with_database(server, &name)?,
            name,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("warning: could not drop database {}: {e:#}", self.name);
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("run psql")?;
    if !out.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> Result<String> {
    let scheme_end = url
        .find("://")
        .ok_or_else(|| anyhow!("not a postgres:// URL: {url}"))?
        + 3;
    let (base, rest) = url.split_at(scheme_end);
    let query = rest.find('?').map_or("", |q| &rest[q..]);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    Ok(format!("{base}{authority}/{name}{query}"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

/// One row's cells for one store: the value and whether it meets the target.
type Cell = (String, bool);

/// A row of the table: the figure, its target, and how to read it off a store's run.
type Figure = (String, &'static str, fn(&ScaleArgs, &StoreFigures) -> Cell);

fn print_table(
    args: &ScaleArgs,
    date: &str,
    load_before: &str,
    took: Duration,
    sqlite: &StoreFigures,
    postgres: Option<&StoreFigures>,
) {
    let rows: Vec<Figure> = vec![
        (
            format!(
                "peak RSS (VmHWM) with {} instances + {} hosts loaded and the read model built",
                args.instances, args.hosts
            ),
            "< 300 MiB",
            |_, f| {
                let p = f.inventory.peak_mib;
                (mib_text(p), p.is_some_and(|m| m < 300.0))
            },
        ),
        (
            format!("bulk reboot of {} mock instances: API answer", args.reboot),
            "< 1 s",
            |_, f| {
                let s = f.inventory.reboot_accept.as_secs_f64();
                (
                    format!("{s:.2} s ({} × 202)", f.inventory.reboot_accepted),
                    s < 1.0,
                )
            },
        ),
        (
            format!(
                "mock-cloud launches to `launched` per second, {} instances, no delay",
                args.instances
            ),
            "> 3,750/s",
            |a, f| {
                let r = launch_rate(a.instances, f.inventory.launch_total);
                (format!("{r:.0}/s"), r > 3750.0)
            },
        ),
        (
            "authenticated `GET /api/v0/host/{address}` vs bare axum: throughput ratio, p99 (64 conn.)".into(),
            "≥ 0.6, p99 < 5 ms",
            |_, f| get_cell(&f.bare, &f.host),
        ),
        (
            "authenticated `GET /v3/namespaces/default` vs bare axum: throughput ratio, p99".into(),
            "≥ 0.6, p99 < 5 ms",
            |_, f| get_cell(&f.bare, &f.namespace),
        ),
        (
            format!(
                "`GET /api/v0/hosts` with {} hosts: worst of 3, VmRSS growth over the three",
                args.list_hosts
            ),
            "streamed, < 2 s, flat",
            |_, f| match &f.inventory.host_list {
                Some(h) => {
                    let grew = match (h.rss_before, h.rss_after) {
                        (Some(b), Some(a)) => a - b,
                        _ => f64::INFINITY,
                    };
                    // A list held in memory would be its 16 MB of JSON at least.
                    (
                        format!("{:.2} s, {grew:+.0} MiB ({} hosts)", h.worst, h.hosts),
                        h.worst < 2.0 && grew < 16.0,
                    )
                }
                None => ("not run".into(), false),
            },
        ),
        (
            "`SELECT state, COUNT(*) FROM instances GROUP BY state` over HTTP while the bulk action runs: p99".into(),
            "< 50 ms",
            |_, f| {
                let p = f.inventory.under_load_ms(0.99);
                (
                    format!("{p:.1} ms ({} queries)", f.inventory.under_load.len()),
                    p < 50.0 && !f.inventory.under_load.is_empty(),
                )
            },
        ),
    ];
    let root = workspace_root();
    println!();
    println!("== Issue 14: scale figures ({date}) ==");
    println!("machine:  {}", Machine::detect().one_line());
    println!("revision: {}", git_describe(&root));
    println!(
        "load average before / after: {load_before} / {}; whole run {:.0} s",
        loadavg(),
        took.as_secs_f64()
    );
    println!();
    if postgres.is_some() {
        println!("| figure | target | SQLite | | PostgreSQL | |");
        println!("|---|---|---:|---|---:|---|");
    } else {
        println!("| figure | target | SQLite | |");
        println!("|---|---|---:|---|");
    }
    for (label, target, cell) in &rows {
        let (v, ok) = cell(args, sqlite);
        print!("| {label} | {target} | {v} | {} |", verdict(ok));
        if let Some(pg) = postgres {
            let (v, ok) = cell(args, pg);
            print!(" {v} | {} |", verdict(ok));
        }
        println!();
    }
    println!();
    for (store, f) in std::iter::once(("SQLite", sqlite)).chain(postgres.map(|p| ("PostgreSQL", p))) {
        println!(
            "{store}: bare {:.0} req/s (p99 {}); host {:.0} req/s, CPU {}; namespace {:.0} req/s, CPU {}",
            f.bare.outcome.rps(),
            report::ms(f.bare.outcome.hist.quantile(0.99)),
            f.host.outcome.rps(),
            f.host.cores(),
            f.namespace.outcome.rps(),
            f.namespace.cores()
        );
        println!(
            "{store}: launch accepted in {:.1} s, all `launched` after {:.1} s; reboot done after {:.1} s; group-by quiet median {:.1} ms",
            f.inventory.launch_accept.as_secs_f64(),
            f.inventory.launch_total.as_secs_f64(),
            f.inventory.reboot_done.as_secs_f64(),
            f.inventory.group.0.as_secs_f64() * 1e3
        );
    }
}

fn get_cell(bare: &Measured, corral: &Measured) -> Cell {
    let ratio = corral.outcome.rps() / bare.outcome.rps().max(f64::MIN_POSITIVE);
    let p99 = corral.outcome.hist.quantile(0.99);
    (
        format!("{ratio:.2}, {}", report::ms(p99)),
        ratio >= 0.6 && p99 < 5_000_000,
    )
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_parameters_kept() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres?sslmode=disable", "b").unwrap(),
            "postgres://u@127.0.0.1:5432/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432", "b").unwrap(),
            "postgres://u@127.0.0.1:5432/b"
        );
        assert!(with_database("127.0.0.1", "b").is_err());
    }
}
