//! `--wait`: follows asynchronous work to its end and fails (exit 1) naming what failed.
//!
//! Two ways to learn about progress, same display and outcome:
//! * the change feed (`GET /events?since=<X-Corral-Revision>&ids=...`, docs/events.md) when the
//!   action's answer carried a revision and the server serves the feed: an event about a
//!   target updates it (instances and images from the event's object, the GET view; other
//!   kinds by one GET), with a slow safety poll beside it;
//! * polling the targets' GET endpoints, when the server has no feed (404) or the stream
//!   breaks.
//!
//! On a terminal (stderr) the display is redrawn in place: a progress bar and one line per
//! instance / host. Otherwise each change is one plain line, for logs.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

use crate::client::{Client, enc};
use crate::error::{CliError, Result};
use crate::output::{color_allowed, stderr_is_tty};

/// What "finished" means for one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Goal {
    /// An instance reaching one of these states (`error` fails).
    Instance(Vec<&'static str>),
    /// An instance or image being deleted (404 = done).
    Gone,
    /// An image reaching `saved`.
    Image,
    /// A cluster's rolling operation (`GET /api/v0/cluster/{c}/{op}`) leaving `in_process`.
    Operation { hosts: Vec<String> },
    /// A host's investigation and bootstrap ending (`active` / `disassociated`).
    Host,
    /// A CDAP service reaching a program status (`RUNNING`, `STOPPED`).
    Service(&'static str),
}

#[derive(Debug, Clone)]
pub struct Target {
    pub goal: Goal,
    /// The object id as the change feed names it (instance/image id, host address...).
    pub id: String,
    /// What the display and errors call it, e.g. `instance web-1`.
    pub label: String,
    /// The GET that tells its state.
    pub path: String,
}

impl Target {
    pub fn new(
        goal: Goal,
        id: impl Into<String>,
        label: impl Into<String>,
        path: impl Into<String>,
    ) -> Target {
        Target {
            goal,
            id: id.into(),
            label: label.into(),
            path: path.into(),
        }
    }

    /// Change-feed object types that concern this target.
    fn feed_types(&self) -> &'static [&'static str] {
        match self.goal {
            Goal::Instance(_) => &["instance"],
            Goal::Gone if self.path.starts_with("/images") => &["image"],
            Goal::Gone => &["instance"],
            Goal::Image => &["image"],
            Goal::Operation { .. } => &["operation", "operation_step"],
            Goal::Host => &["host"],
            Goal::Service(_) => &["service_run", "service_instance", "service"],
        }
    }
    /// Whether the feed filter may name this target's id (kinds whose feed id is ours).
    fn id_filterable(&self) -> bool {
        matches!(
            self.goal,
            Goal::Instance(_) | Goal::Gone | Goal::Image | Goal::Host
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Pending(String),
    Done(String),
    Failed(String),
}

impl State {
    fn settled(&self) -> bool {
        !matches!(self, State::Pending(_))
    }
}

struct Track {
    target: Target,
    state: State,
    /// Per-host lines of an operation: (address, state).
    hosts: Vec<(String, String)>,
    progress: Option<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub struct WaitOpts {
    pub timeout: Duration,
    /// Redraw in place (stderr is a terminal).
    pub live: bool,
    pub color: bool,
    /// Force polling even when the server has a feed (tests, `--poll`).
    pub poll_only: bool,
}

impl WaitOpts {
    pub fn new(timeout: Duration, poll_only: bool) -> WaitOpts {
        let live = stderr_is_tty();
        WaitOpts {
            timeout,
            live,
            color: color_allowed(live),
            poll_only,
        }
    }
}

/// Most target lines a live frame shows.
const MAX_LIVE_LINES: usize = 20;

/// How one wait ended (for the caller's final output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Feed,
    Polling,
}

/// Follows `targets` until each is settled or the timeout passes.
pub async fn wait(
    client: &Client,
    targets: Vec<Target>,
    revision: Option<i64>,
    opts: &WaitOpts,
) -> Result<Via> {
    let mut w = Waiter {
        tracks: targets
            .into_iter()
            .map(|t| Track {
                state: State::Pending("waiting".into()),
                hosts: match &t.goal {
                    Goal::Operation { hosts } => {
                        hosts.iter().map(|h| (h.clone(), "pending".into())).collect()
                    }
                    _ => vec![],
                },
                progress: None,
                target: t,
            })
            .collect(),
        drawn: 0,
        opts: opts.clone(),
        printed: HashMap::new(),
        started: Instant::now(),
    };
    if w.tracks.is_empty() {
        return Ok(Via::Polling);
    }
    let deadline = Instant::now() + opts.timeout;
    if revision.is_none() || opts.poll_only {
        w.note("polling");
    }
    w.refresh_all(client).await?;
    let mut via = Via::Polling;
    if !w.all_settled()
        && !opts.poll_only
        && let Some(rev) = revision
    {
        match w.follow_feed(client, rev, deadline).await? {
            FeedEnd::Settled => via = Via::Feed,
            FeedEnd::NoFeed => w.note("the server has no change feed: polling"),
            FeedEnd::Broken(why) => w.note(&format!("change feed unavailable ({why}): polling")),
            FeedEnd::Deadline => via = Via::Feed,
        }
    }
    if !w.all_settled() && Instant::now() < deadline {
        w.poll(client, deadline).await?;
    }
    w.finish()?;
    Ok(via)
}

enum FeedEnd {
    Settled,
    NoFeed,
    Broken(String),
    Deadline,
}

struct Waiter {
    tracks: Vec<Track>,
    drawn: usize,
    opts: WaitOpts,
    /// Last plain line printed per target, so unchanged states are not repeated.
    printed: HashMap<usize, String>,
    started: Instant,
}

impl Waiter {
    fn all_settled(&self) -> bool {
        self.tracks.iter().all(|t| t.state.settled())
    }

    fn note(&self, msg: &str) {
        if !self.opts.live {
            eprintln!("{msg}");
        }
    }

    async fn refresh_all(&mut self, client: &Client) -> Result<()> {
        for i in 0..self.tracks.len() {
            if !self.tracks[i].state.settled() {
                self.refresh(client, i).await?;
            }
        }
        self.draw();
        Ok(())
    }

    /// One GET of target `i` and its new state.
    async fn refresh(&mut self, client: &Client, i: usize) -> Result<()> {
        let path = self.tracks[i].target.path.clone();
        let reply = client.send(Method::GET, &path, None).await?;
        let value = if reply.status == 404 {
            None
        } else if reply.status == 204 {
            Some(Value::Null)
        } else if reply.ok() {
            Some(reply.json()?)
        } else {
            return Err(reply.error());
        };
        self.apply(client, i, value.as_ref()).await
    }

    /// Sets target `i`'s state from its GET view (`None` = 404).
    async fn apply(&mut self, client: &Client, i: usize, v: Option<&Value>) -> Result<()> {
        let t = &self.tracks[i].target;
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
        let state = match (&t.goal, v) {
            (Goal::Gone, None) => State::Done("deleted".into()),
            (Goal::Gone, Some(v)) if s(v, "state") == "error" => {
                State::Failed(format!("error{}", reason(client, t).await))
            }
            (Goal::Gone, Some(v)) => State::Pending(s(v, "state")),
            (_, None) => State::Failed("not found".into()),
            (Goal::Instance(want), Some(v)) => {
                let st = s(v, "state");
                if want.contains(&st.as_str()) {
                    State::Done(st)
                } else if st == "error" {
                    State::Failed(format!("error{}", reason(client, t).await))
                } else {
                    State::Pending(st)
                }
            }
            (Goal::Image, Some(v)) => match s(v, "state").as_str() {
                "saved" => State::Done("saved".into()),
                "error" => State::Failed("error".into()),
                other => State::Pending(other.to_string()),
            },
            (Goal::Host, Some(v)) => match s(v, "status").as_str() {
                st @ ("active" | "disassociated") => State::Done(st.to_string()),
                "failed" => {
                    let why = client
                        .get(&format!("{}/status", t.path))
                        .await
                        .ok()
                        .and_then(|st| st["host"]["message"].as_str().map(str::to_string))
                        .filter(|m| !m.is_empty())
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    State::Failed(format!("failed{why}"))
                }
                other => State::Pending(other.to_string()),
            },
            (Goal::Service(want), Some(v)) => {
                let st = s(v, "status");
                if st == *want {
                    State::Done(st)
                } else {
                    State::Pending(st)
                }
            }
            (Goal::Operation { .. }, Some(Value::Null)) => State::Pending("not started".into()),
            (Goal::Operation { .. }, Some(v)) => {
                let done_key = ["upgraded", "deployed", "restarted"]
                    .into_iter()
                    .find(|k| v.get(*k).is_some())
                    .unwrap_or("upgraded");
                let list = |k: &str| -> Vec<String> {
                    v[k].as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                        .unwrap_or_default()
                };
                let (done, running, failed) = (list(done_key), list("in_process"), list("failed"));
                let track = &mut self.tracks[i];
                for (addr, st) in track.hosts.iter_mut() {
                    *st = if failed.contains(addr) {
                        "failed".into()
                    } else if running.contains(addr) {
                        "running".into()
                    } else if done.contains(addr) {
                        done_key.to_string()
                    } else {
                        "pending".into()
                    };
                }
                for a in done.iter().chain(&running).chain(&failed) {
                    if !track.hosts.iter().any(|(h, _)| h == a) {
                        track.hosts.push((a.clone(), "seen".into()));
                    }
                }
                let total = track.hosts.len().max(done.len() + failed.len());
                track.progress = Some((done.len() + failed.len(), total));
                match s(v, "status").as_str() {
                    "in_process" => State::Pending(format!("in_process ({}/{total})", done.len())),
                    "finished" => State::Done("finished".into()),
                    other => {
                        let msg = s(v, "message");
                        State::Failed(if msg.is_empty() {
                            other.to_string()
                        } else {
                            format!("{other}: {msg}")
                        })
                    }
                }
            }
        };
        self.tracks[i].state = state;
        Ok(())
    }

    async fn poll(&mut self, client: &Client, deadline: Instant) -> Result<()> {
        let mut interval = Duration::from_millis(250);
        while !self.all_settled() {
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
            interval = (interval * 3 / 2).min(Duration::from_secs(2));
            self.refresh_all(client).await?;
        }
        Ok(())
    }

    async fn follow_feed(&mut self, client: &Client, since: i64, deadline: Instant) -> Result<FeedEnd> {
        let mut types: Vec<&str> = self
            .tracks
            .iter()
            .flat_map(|t| t.target.feed_types().iter().copied())
            .collect();
        types.sort_unstable();
        types.dedup();
        let ids: Option<Vec<String>> = self
            .tracks
            .iter()
            .all(|t| t.target.id_filterable())
            .then(|| self.tracks.iter().map(|t| enc(&t.target.id)).collect());
        let mut since = since;
        let mut reconnects = 0;
        loop {
            let mut path = format!("/events?since={since}&types={}", types.join(","));
            if let Some(ids) = &ids {
                path.push_str("&ids=");
                path.push_str(&ids.join(","));
            }
            let resp = client
                .open(
                    Method::GET,
                    &path,
                    None,
                    &[("accept", "text/event-stream".into())],
                )
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => return Ok(FeedEnd::Broken(e.message)),
            };
            match resp.status().as_u16() {
                200 if reconnects == 0 => {
                    self.note(&format!("following the change feed from revision {since}"))
                }
                200 => {}
                404 | 405 | 501 => return Ok(FeedEnd::NoFeed),
                s => return Ok(FeedEnd::Broken(format!("status {s}"))),
            }
            let mut body = resp.into_body();
            let mut buf = String::new();
            let mut event = SseEvent::default();
            let mut safety = Instant::now() + Duration::from_secs(5);
            loop {
                if self.all_settled() {
                    return Ok(FeedEnd::Settled);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(FeedEnd::Deadline);
                }
                let wake = deadline.min(safety);
                let frame = tokio::select! {
                    f = body.frame() => f,
                    _ = tokio::time::sleep(wake - now) => {
                        // The safety poll: whatever the feed said, the GETs are the truth.
                        self.refresh_all(client).await?;
                        safety = Instant::now() + Duration::from_secs(5);
                        continue;
                    }
                };
                let chunk = match frame {
                    None => break,
                    Some(Err(e)) => return Ok(FeedEnd::Broken(e.to_string())),
                    Some(Ok(f)) => match f.into_data() {
                        Ok(d) => d,
                        Err(_) => continue,
                    },
                };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(nl) = buf.find('\n') {
                    let line: String = buf.drain(..=nl).collect();
                    let line = line.trim_end_matches(['\n', '\r']);
                    if !line.is_empty() {
                        event.line(line);
                        continue;
                    }
                    let ev = std::mem::take(&mut event);
                    if let Some(id) = ev.id {
                        since = since.max(id);
                    }
                    if ev.kind.as_deref() == Some("lagged") {
                        if let Some(r) = serde_json::from_str::<Value>(&ev.data)
                            .ok()
                            .and_then(|v| v["resume_from"].as_i64())
                        {
                            since = r;
                        }
                        break;
                    }
                    if !ev.data.is_empty() {
                        self.on_event(client, &ev.data).await?;
                    }
                }
            }
            // The stream ended (server restart, lag): resume from the last revision seen.
            reconnects += 1;
            if reconnects > 20 {
                return Ok(FeedEnd::Broken("the stream keeps ending".into()));
            }
            self.refresh_all(client).await?;
        }
    }

    async fn on_event(&mut self, client: &Client, data: &str) -> Result<()> {
        let Ok(ev) = serde_json::from_str::<Value>(data) else {
            return Ok(());
        };
        let ty = ev["type"].as_str().unwrap_or("");
        let id = ev["id"].as_str().unwrap_or("");
        let kind = ev["kind"].as_str().unwrap_or("");
        let mut changed = false;
        for i in 0..self.tracks.len() {
            let t = &self.tracks[i].target;
            if t_settled(&self.tracks[i]) || !t.feed_types().contains(&ty) {
                continue;
            }
            match t.goal {
                Goal::Instance(_) | Goal::Gone | Goal::Image if id == t.id => {
                    let obj = (!kind.ends_with(".deleted")).then(|| ev["object"].clone());
                    self.apply(client, i, obj.as_ref()).await?;
                    changed = true;
                }
                Goal::Instance(_) | Goal::Gone | Goal::Image => {}
                _ => {
                    self.refresh(client, i).await?;
                    changed = true;
                }
            }
        }
        if changed {
            self.draw();
        }
        Ok(())
    }

    fn lines(&self) -> Vec<String> {
        let c = self.opts.color;
        let mut out = Vec::new();
        let done = self.tracks.iter().filter(|t| t.state.settled()).count();
        let single_op = self.tracks.len() == 1 && self.tracks[0].progress.is_some();
        let (n, total) = if single_op {
            self.tracks[0].progress.unwrap_or((0, 0))
        } else {
            (done, self.tracks.len())
        };
        let width = 30;
        let filled = (n * width).checked_div(total).unwrap_or(0);
        out.push(format!(
            "[{}{}] {n}/{total}  {:.0}s",
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.started.elapsed().as_secs_f64()
        ));
        let name_w = self
            .tracks
            .iter()
            .map(|t| t.target.label.len())
            .max()
            .unwrap_or(0);
        // A live frame must fit a screen: with many targets, show the unsettled and failed
        // ones (up to a screenful) and count the rest.
        let shown: Vec<&Track> = if self.opts.live && self.tracks.len() > MAX_LIVE_LINES {
            let mut v: Vec<&Track> = self
                .tracks
                .iter()
                .filter(|t| !matches!(t.state, State::Done(_)))
                .take(MAX_LIVE_LINES)
                .collect();
            if v.is_empty() {
                v.extend(self.tracks.iter().take(MAX_LIVE_LINES));
            }
            v
        } else {
            self.tracks.iter().collect()
        };
        let hidden = self.tracks.len() - shown.len();
        for t in shown {
            let (mark, text) = match &t.state {
                State::Pending(s) => ("…", s.clone()),
                State::Done(s) => ("✓", s.clone()),
                State::Failed(s) => ("✗", s.clone()),
            };
            let word = text.split([' ', ':']).next().unwrap_or("").to_string();
            let painted = format!("{}{}", crate::output::paint(&word, c), &text[word.len()..]);
            out.push(format!("{mark} {:name_w$}  {painted}", t.target.label));
            let host_w = t.hosts.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
            for (h, st) in &t.hosts {
                out.push(format!("    {h:host_w$}  {}", crate::output::paint(st, c)));
            }
        }
        if hidden > 0 {
            out.push(format!("  ... and {hidden} more"));
        }
        out
    }

    fn draw(&mut self) {
        let mut err = std::io::stderr().lock();
        if self.opts.live {
            let lines = self.lines();
            let mut s = String::new();
            if self.drawn > 0 {
                s.push_str(&format!("\x1b[{}A", self.drawn));
            }
            for l in &lines {
                s.push_str("\r\x1b[2K");
                s.push_str(l);
                s.push('\n');
            }
            // Clear what a longer previous frame left below.
            s.push_str("\x1b[J");
            self.drawn = lines.len();
            let _ = err.write_all(s.as_bytes());
        } else {
            for (i, t) in self.tracks.iter().enumerate() {
                let mut line = match &t.state {
                    State::Pending(s) => format!("{}: {s}", t.target.label),
                    State::Done(s) => format!("{}: {s} (done)", t.target.label),
                    State::Failed(s) => format!("{}: FAILED: {s}", t.target.label),
                };
                if !t.hosts.is_empty() {
                    let hs: Vec<String> = t.hosts.iter().map(|(h, s)| format!("{h}={s}")).collect();
                    line.push_str(&format!(" [{}]", hs.join(" ")));
                }
                if self.printed.get(&i) != Some(&line) {
                    let _ = writeln!(err, "{line}");
                    self.printed.insert(i, line);
                }
            }
        }
        let _ = err.flush();
    }

    fn finish(&mut self) -> Result<()> {
        self.draw();
        let failed: Vec<String> = self
            .tracks
            .iter()
            .filter_map(|t| match &t.state {
                State::Failed(why) => Some(format!("{} ({why})", t.target.label)),
                _ => None,
            })
            .collect();
        let pending: Vec<String> = self
            .tracks
            .iter()
            .filter_map(|t| match &t.state {
                State::Pending(s) => Some(format!("{} ({s})", t.target.label)),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            return Err(CliError::failure(format!(
                "{} of {} failed: {}",
                failed.len(),
                self.tracks.len(),
                failed.join(", ")
            )));
        }
        if !pending.is_empty() {
            return Err(CliError::failure(format!(
                "timed out after {}s; still waiting for: {}",
                self.opts.timeout.as_secs(),
                pending.join(", ")
            )));
        }
        Ok(())
    }
}

fn t_settled(t: &Track) -> bool {
    t.state.settled()
}

/// The reason of an instance's last failed action (from its history), as `: <reason>`.
async fn reason(client: &Client, t: &Target) -> String {
    if !t.path.starts_with("/instances/") {
        return String::new();
    }
    client
        .get(&format!("{}/history", t.path))
        .await
        .ok()
        .and_then(|h| {
            h.as_array()?
                .iter()
                .rev()
                .find(|e| e["outcome"] == "failed")
                .and_then(|e| e["error"].as_str().map(str::to_string))
        })
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

/// One server-sent event being assembled.
#[derive(Default)]
struct SseEvent {
    id: Option<i64>,
    kind: Option<String>,
    data: String,
}

impl SseEvent {
    fn line(&mut self, line: &str) {
        if line.starts_with(':') {
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = value.parse().ok(),
            "event" => self.kind = Some(value.to_string()),
            "data" => {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value);
            }
            _ => {}
        }
    }
}

/// Parses `--timeout` values: `90`, `90s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        _ => (s, 1),
    };
    // A cap keeps `now + timeout` representable; nothing Corral runs takes a year.
    const MAX_SECS: u64 = 366 * 24 * 3600;
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|secs| *secs <= MAX_SECS)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("invalid duration '{s}': use e.g. 90, 90s, 5m, 1h (at most a year)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("x").is_err());
        // Too large to add to a clock: a usage error, not a panic.
        assert!(parse_duration("18446744073709551615").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
    }

    #[test]
    fn a_live_frame_fits_a_screen() {
        let track = |i: usize, state: State| Track {
            target: Target::new(Goal::Gone, format!("{i}"), format!("instance i-{i:02}"), "/x"),
            state,
            hosts: vec![],
            progress: None,
        };
        let mut tracks: Vec<Track> = (0..30).map(|i| track(i, State::Done("deleted".into()))).collect();
        tracks[29] = track(29, State::Failed("error".into()));
        tracks[3] = track(3, State::Pending("deleting".into()));
        let w = Waiter {
            tracks,
            drawn: 0,
            opts: WaitOpts {
                timeout: Duration::from_secs(1),
                live: true,
                color: false,
                poll_only: true,
            },
            printed: HashMap::new(),
            started: Instant::now(),
        };
        let lines = w.lines();
        assert!(
            lines[0].starts_with(&format!("[{}-] 29/30", "#".repeat(29))),
            "{lines:?}"
        );
        assert_eq!(lines[1], "… instance i-03  deleting");
        assert_eq!(lines[2], "✗ instance i-29  error");
        assert_eq!(lines[3], "  ... and 28 more");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn sse_fields() {
        let mut e = SseEvent::default();
        for l in [
            "id: 7",
            "event: instance.updated",
            "data: {\"a\":1}",
            ": heartbeat",
        ] {
            e.line(l);
        }
        assert_eq!(e.id, Some(7));
        assert_eq!(e.kind.as_deref(), Some("instance.updated"));
        assert_eq!(e.data, "{\"a\":1}");
    }
}
