//! `corral-bench feed`: the change feed under load (docs/events.md, docs/performance.md).
//!
//! One release `corral serve` with a mock cloud, one tenant:
//! 1. launch `--instances` mock instances and wait until all are `launched` (not measured);
//! 2. open `--watchers` Server-Sent-Event streams on `GET /events?types=instance`;
//! 3. run `--actions` instance actions as bulk reboots of every instance, each round until all
//!    are `launched` again (each action logs two changes: `rebooting`, then `launched`);
//! 4. report the delivery latency of every (watcher, event) pair — receipt time minus the time
//!    the change was logged, both on this machine's clock — the deliveries against what was
//!    expected, watchers cut off for lagging, and Corral's resident memory before the
//!    watchers and at its peak.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use hyper::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hist::Histogram;
use crate::inventory::{Api, mock_cloud_config, peak_rss_mib, rss_mib};
use crate::{Children, corral_bin, random_key, spawn_corral};

#[derive(Args)]
pub struct FeedArgs {
    /// Concurrent SSE watchers, all on the one tenant.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Instances the actions act on.
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// Instance actions in all (bulk reboots of every instance, so a multiple of --instances).
    #[arg(long, default_value_t = 10_000)]
    actions: usize,
    /// Milliseconds each mock operation takes.
    #[arg(long, default_value_t = 20)]
    mock_delay_ms: u64,
    /// Corral's `events.buffer`: events a watcher may fall behind. A bulk action on all
    /// `--instances` logs that many changes at once, so keep it above that.
    #[arg(long, default_value_t = 4096)]
    buffer: usize,
    /// Corral binary (default: target/release/corral).
    #[arg(long)]
    corral_bin: Option<std::path::PathBuf>,
}

pub async fn run(args: FeedArgs) -> Result<()> {
    crate::with_children(async |children, tmp| inner(&args, children, tmp).await).await
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Milliseconds since the epoch of an RFC 3339 UTC time (`2026-12-04T21:03:05.123Z`, the
/// fraction optional).
fn parse_time(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 20 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = match s.get(19..).and_then(|r| r.strip_prefix('.')) {
        Some(r) => {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            format!("0.{digits}").parse::<f64>().unwrap_or(0.0)
        }
        None => 0.0,
    };
    // Days from civil (H. Hinnant).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) as f64 + frac) * 1000.0)
}

/// What one watcher saw.
#[derive(Default)]
struct Seen {
    latency: Histogram,
    events: u64,
    lagged: bool,
}

/// Undoes HTTP/1.1 chunked framing incrementally.
#[derive(Default)]
struct Dechunk {
    pending: Vec<u8>,
    /// Bytes left of the current chunk's data, and then its CRLF.
    left: usize,
}

impl Dechunk {
    /// Feeds raw bytes; appends the data they complete to `out`. False at the last chunk.
    fn feed(&mut self, raw: &[u8], out: &mut Vec<u8>) -> bool {
        self.pending.extend_from_slice(raw);
        let mut at = 0;
        loop {
            if self.left > 0 {
                let take = self.left.min(self.pending.len() - at);
                // The last two bytes of `left` are the chunk's CRLF.
                let data = take.min(self.left.saturating_sub(2));
                out.extend_from_slice(&self.pending[at..at + data]);
                at += take;
                self.left -= take;
                if self.left > 0 {
                    break;
                }
                continue;
            }
            let Some(nl) = self.pending[at..].iter().position(|&c| c == b'\n') else {
                break;
            };
            let line = String::from_utf8_lossy(&self.pending[at..at + nl]).to_string();
            at += nl + 1;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
            if size == 0 {
                self.pending.drain(..at);
                return false;
            }
            self.left = size + 2;
        }
        self.pending.drain(..at);
        true
    }
}

/// One watcher: reads its stream until `stop`, timing every event.
async fn watch(
    addr: std::net::SocketAddr,
    auth: String,
    ready: tokio::sync::mpsc::Sender<()>,
    delivered: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Seen> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET /events?types=instance HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let body_start = loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("the stream closed before its headers");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break head.split_off(p + 4);
        }
    };
    let head = String::from_utf8_lossy(&head).to_string();
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET /events answered: {}", head.lines().next().unwrap_or(""));
    }
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let _ = ready.send(()).await;
    let mut seen = Seen::default();
    let mut dechunk = Dechunk::default();
    let mut text: Vec<u8> = Vec::new();
    let mut raw = body_start;
    loop {
        let open = if chunked {
            let mut out = Vec::new();
            let open = dechunk.feed(&raw, &mut out);
            text.extend_from_slice(&out);
            open
        } else {
            text.extend_from_slice(&raw);
            true
        };
        let received = now_ms();
        // Complete events end with a blank line.
        while let Some(p) = text.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = text.drain(..p + 2).collect();
            let event = String::from_utf8_lossy(&event);
            let mut kind = "";
            for line in event.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    if kind == "lagged" {
                        seen.lagged = true;
                        continue;
                    }
                    let v: Value = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                    if let Some(t) = v["time"].as_str().and_then(parse_time) {
                        seen.latency
                            .record(((received - t).max(0.0) * 1_000_000.0) as u64);
                        seen.events += 1;
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if !open || seen.lagged {
            return Ok(seen);
        }
        let n = tokio::select! {
            r = s.read(&mut buf) => r?,
            _ = stop.changed() => return Ok(seen),
        };
        if n == 0 {
            return Ok(seen);
        }
        raw = buf[..n].to_vec();
    }
}

async fn inner(args: &FeedArgs, children: &mut Children, tmp: &std::path::Path) -> Result<()> {
    if args.instances == 0 || !args.actions.is_multiple_of(args.instances) {
        bail!("--actions must be a multiple of --instances");
    }
    let bin = corral_bin(args.corral_bin.as_ref())?;
    let config = mock_cloud_config(
        tmp,
        &format!(
            "database_max_connections = 8\n[events]\nmax_watchers_per_tenant = {}\nbuffer = {}\n",
            args.watchers, args.buffer
        ),
        args.mock_delay_ms,
    )?;
    let key = random_key()?;
    let addr = spawn_corral(
        children,
        &bin,
        tmp,
        &key,
        Duration::from_secs(60),
        &[("CORRAL_CONFIG", config.display().to_string())],
    )
    .await?;
    let pid = children.pid("corral");
    let root = Api::new(addr, format!("Bearer {key}"));
    let api = root.create_tenant("bench", 64).await?;
    let auth = api.auth().to_string();
    let (project, flavor, image) = api.mock_ids().await?;
    let mut instance_ids: Vec<Value> = Vec::with_capacity(args.instances);
    for batch in 0..args.instances.div_ceil(500) {
        let n = (args.instances - batch * 500).min(500);
        let items: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("vm-{batch}-{i}"), "projectId": project, "flavor": {"id": flavor}, "image": {"id": image}}))
            .collect();
        for r in api
            .call(Method::POST, "/instances", Some(&json!(items)))
            .await?
            .as_array()
            .into_iter()
            .flatten()
        {
            if r["status"] != 202 {
                bail!("launch refused: {r}");
            }
            instance_ids.push(r["id"].clone());
        }
    }
    api.until_launched(args.instances as i64, Duration::from_secs(600))
        .await?;
    let rss_before = rss_mib(pid);
    eprintln!(
        "{} instances launched; opening {} watchers",
        args.instances, args.watchers
    );

    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.watchers);
    let mut tasks = Vec::with_capacity(args.watchers);
    for _ in 0..args.watchers {
        tasks.push(tokio::spawn(watch(
            addr,
            auth.clone(),
            ready_tx.clone(),
            delivered.clone(),
            stop_rx.clone(),
        )));
    }
    drop(ready_tx);
    for _ in 0..args.watchers {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .context("watchers did not all connect within 60 s")?
            .ok_or_else(|| anyhow!("a watcher failed to connect"))?;
    }
    let rss_watching = rss_mib(pid);

    let rounds = args.actions / args.instances;
    eprintln!("running {} actions ({rounds} bulk reboots)", args.actions);
    let t = Instant::now();
    for round in 0..rounds {
        let out = api
            .call(Method::PUT, "/instances/reboot", Some(&json!(instance_ids)))
            .await?;
        let accepted = out
            .as_array()
            .map_or(0, |a| a.iter().filter(|r| r["status"] == 202).count());
        if accepted != args.instances {
            bail!("round {round}: {accepted} of {} reboots accepted", args.instances);
        }
        api.until_launched(args.instances as i64, Duration::from_secs(600))
            .await?;
    }
    let actions_took = t.elapsed();
    // Each action logs two changes; wait for the watchers to catch up.
    let expected = (args.watchers * args.actions * 2) as u64;
    let drain = Instant::now();
    while delivered.load(Ordering::Relaxed) < expected && drain.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = drain.elapsed();
    let _ = stop_tx.send(true);
    let mut all = Histogram::new();
    let (mut events, mut lagged, mut failed) = (0u64, 0usize, 0usize);
    for t in tasks {
        match t.await {
            Ok(Ok(seen)) => {
                all.merge(&seen.latency);
                events += seen.events;
                lagged += usize::from(seen.lagged);
            }
            Ok(Err(e)) => {
                failed += 1;
                eprintln!("watcher failed: {e:#}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("watcher panicked: {e}");
            }
        }
    }
    let peak = peak_rss_mib(pid);
    let ms = |ns: u64| format!("{:.1} ms", ns as f64 / 1e6);
    println!("| figure | value |");
    println!("|---|---|");
    println!("| watchers (one tenant, `types=instance`) | {} |", args.watchers);
    println!(
        "| instance actions (bulk reboots of {} instances) | {} in {:.1} s |",
        args.instances,
        args.actions,
        actions_took.as_secs_f64()
    );
    println!("| events delivered / expected | {events} / {expected} |");
    println!("| delivery latency p50 | {} |", ms(all.quantile(0.5)));
    println!("| delivery latency p99 | {} |", ms(all.quantile(0.99)));
    println!("| delivery latency max | {} |", ms(all.max()));
    println!("| watchers cut off for lagging / failed | {lagged} / {failed} |");
    println!(
        "| time for the last deliveries after the last action | {:.1} s |",
        caught_up.as_secs_f64()
    );
    println!(
        "| Corral resident memory: before watchers / with them / peak (VmHWM) | {rss_before} / {rss_watching} / {peak} |"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_to_epoch_milliseconds() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_time("2015-12-17T15:48:18.710Z"), Some(1_450_367_298_710.0));
        assert_eq!(parse_time("nope"), None);
    }

    #[test]
    fn chunks_are_undone_across_reads() {
        let mut d = Dechunk::default();
        let mut out = Vec::new();
        assert!(d.feed(b"5\r\nhel", &mut out));
        assert!(d.feed(b"lo\r\n3\r\n w", &mut out));
        assert!(d.feed(b"o\r\n", &mut out));
        assert!(!d.feed(b"0\r\n\r\n", &mut out));
        assert_eq!(out, b"hello wo");
    }
}
