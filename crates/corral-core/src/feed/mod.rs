//! The change feed (docs/events.md): watchers of a tenant's change log, live and resumable.
//!
//! One [`Feed`] per server. Its hub reads the log in revision order after every local commit
//! and at least every `poll_interval` (so changes committed by other replicas on the same
//! PostgreSQL arrive too), renders each entry once, and hands it to the bounded buffer of
//! every watcher whose tenant, role and filters it matches. Invariants:
//!
//! - **No gap, no duplicate.** A watcher registers at the hub's position `D` (under the hub's
//!   lock) and first reads `(since, D]` from the store, then takes what the hub fans out
//!   after `D`, skipping anything at or below what it already passed. The store hands out
//!   revisions in commit order, so reading "after N" never skips a revision that commits
//!   later.
//! - **Bounded memory.** A watcher's buffer holds at most `buffer` events; one that is full
//!   is cut off: it drains what it holds, then ends with `lagged` naming the revision to
//!   resume from. Catch-up reads the store a page at a time.
//! - At most `max_watchers_per_tenant` watchers per tenant on this server (429 beyond).

mod filter;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use corral_store::{ChangeRow, Store};
use corral_types::time::{now_ms, rfc3339_ms};
use corral_types::{Access, Error, ObjectType, OpCtx, TenantId, TenantScope};
use tokio::sync::mpsc;

pub use filter::FeedQuery;
use filter::Filter;

/// How the feed behaves (server settings `[events]`).
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// Entries younger than this are kept...
    pub retention: Duration,
    /// ...and so are the newest this many, whichever keeps more.
    pub retention_events: i64,
    /// Events a watcher may have waiting before it is cut off as lagging.
    pub buffer: usize,
    /// Watchers one tenant may have open on this server.
    pub max_watchers_per_tenant: usize,
    /// Interval of the `: heartbeat` comment on idle streams.
    pub heartbeat: Duration,
    /// How often the hub looks at the log without a local commit (other replicas' changes).
    pub poll_interval: Duration,
    /// How often retention runs.
    pub prune_interval: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            retention: Duration::from_secs(24 * 3600),
            retention_events: 1_000_000,
            buffer: 1024,
            max_watchers_per_tenant: 100,
            heartbeat: Duration::from_secs(15),
            poll_interval: Duration::from_millis(250),
            prune_interval: Duration::from_secs(60),
        }
    }
}

/// One change as watchers receive it, rendered once for all of them.
#[derive(Debug)]
pub struct FeedEvent {
    pub revision: i64,
    /// `instance.updated`, ...
    pub kind: String,
    tenant: TenantId,
    object_type: Option<ObjectType>,
    object_id: String,
    namespace: String,
    /// The one-line JSON event (docs/events.md).
    pub json: String,
}

impl FeedEvent {
    fn from_row(r: ChangeRow) -> FeedEvent {
        let json = event_json(&r);
        FeedEvent {
            revision: r.revision,
            object_type: ObjectType::parse(&r.object_type),
            kind: r.kind,
            tenant: r.tenant,
            object_id: r.object_id,
            namespace: r.namespace,
            json,
        }
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// The event's JSON: the log entry's fields around the stored view, which is already JSON
/// text and is not parsed again.
fn event_json(r: &ChangeRow) -> String {
    let mut s = String::with_capacity(r.data.len() + 256);
    let _ = write!(
        s,
        "{{\"revision\":{},\"time\":{},\"kind\":{},\"type\":{},\"id\":{},",
        r.revision,
        quoted(&rfc3339_ms(r.time)),
        quoted(&r.kind),
        quoted(&r.object_type),
        quoted(&r.object_id)
    );
    if !r.namespace.is_empty() {
        let _ = write!(s, "\"namespace\":{},", quoted(&r.namespace));
    }
    let data = if r.data.trim().is_empty() {
        "null"
    } else {
        r.data.as_str()
    };
    let _ = write!(
        s,
        "\"actor\":{},\"request_id\":{},\"object\":{}}}",
        quoted(&r.actor),
        quoted(&r.request_id),
        data
    );
    s
}

/// What a watcher receives next.
#[derive(Debug, Clone)]
pub enum FeedItem {
    Event(Arc<FeedEvent>),
    /// The watcher fell behind its buffer; the stream ends and a client resumes with
    /// `since=resume_from`.
    Lagged {
        resume_from: i64,
    },
}

/// A page of events for clients that cannot stream.
#[derive(Debug)]
pub struct FeedPage {
    pub events: Vec<Arc<FeedEvent>>,
    /// The `since` of the next page.
    pub next: i64,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeedStats {
    pub watchers: u64,
    pub events_sent: u64,
    pub lagged: u64,
    /// The last revision the hub fanned out.
    pub revision: i64,
}

/// Store pages read per query, by the hub and by a watcher catching up.
const PAGE: i64 = 1000;

struct Slot {
    id: u64,
    filter: Arc<Filter>,
    tx: mpsc::Sender<Arc<FeedEvent>>,
    lagged: Arc<AtomicBool>,
}

#[derive(Default)]
struct HubState {
    /// The last revision fanned out; `None` until first read from the store.
    delivered: Option<i64>,
    closed: bool,
    tenants: HashMap<TenantId, Vec<Slot>>,
    watchers: usize,
}

struct Hub {
    store: Store,
    settings: FeedSettings,
    state: Mutex<HubState>,
    next_id: AtomicU64,
    sent: AtomicU64,
    lagged: AtomicU64,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        crate::sync::lock(&self.state)
    }

    fn remove(&self, tenant: &TenantId, id: u64) {
        let mut st = self.lock();
        let mut removed = false;
        if let Some(slots) = st.tenants.get_mut(tenant) {
            let before = slots.len();
            slots.retain(|s| s.id != id);
            removed = slots.len() < before;
            if slots.is_empty() {
                st.tenants.remove(tenant);
            }
        }
        if removed {
            st.watchers = st.watchers.saturating_sub(1);
        }
    }

    /// Fans out everything committed after the hub's position.
    async fn pump(&self) -> Result<(), Error> {
        loop {
            let (from, idle) = {
                let st = self.lock();
                (st.delivered, st.watchers == 0)
            };
            let Some(from) = from.filter(|_| !idle) else {
                // Nobody to tell (or not started): just move to the head.
                let head = self.store.change_bounds().await?.head;
                let mut st = self.lock();
                match st.delivered {
                    None => st.delivered = Some(head),
                    Some(d) if st.watchers == 0 => st.delivered = Some(d.max(head)),
                    Some(_) => continue,
                }
                return Ok(());
            };
            let rows = self.store.changes_after_all_tenants(from, PAGE).await?;
            let full = rows.len() as i64 == PAGE;
            let Some(last) = rows.last().map(|r| r.revision) else {
                return Ok(());
            };
            let events: Vec<Arc<FeedEvent>> = rows
                .into_iter()
                .map(|r| Arc::new(FeedEvent::from_row(r)))
                .collect();
            let mut st = self.lock();
            if st.delivered != Some(from) {
                continue;
            }
            let mut gone = 0;
            for ev in &events {
                let Some(slots) = st.tenants.get_mut(&ev.tenant) else {
                    continue;
                };
                let before = slots.len();
                slots.retain(|s| {
                    if !s.filter.matches(ev) {
                        return true;
                    }
                    match s.tx.try_send(ev.clone()) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            s.lagged.store(true, Ordering::Relaxed);
                            self.lagged.fetch_add(1, Ordering::Relaxed);
                            false
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    }
                });
                gone += before - slots.len();
                if slots.is_empty() {
                    st.tenants.remove(&ev.tenant);
                }
            }
            st.watchers = st.watchers.saturating_sub(gone);
            st.delivered = Some(last);
            if !full {
                return Ok(());
            }
        }
    }
}

/// The change feed service.
#[derive(Clone)]
pub struct Feed {
    hub: Arc<Hub>,
}

impl Feed {
    pub(crate) fn new(store: Store, settings: FeedSettings) -> Feed {
        Feed {
            hub: Arc::new(Hub {
                store,
                settings,
                state: Mutex::default(),
                next_id: AtomicU64::new(1),
                sent: AtomicU64::new(0),
                lagged: AtomicU64::new(0),
            }),
        }
    }

    pub fn settings(&self) -> &FeedSettings {
        &self.hub.settings
    }

    /// The hub's loop and the retention job; ends (closing every watcher) at shutdown.
    pub fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) -> impl Future<Output = ()> + use<> {
        let hub = self.hub.clone();
        async move {
            let mut next_prune = Instant::now();
            loop {
                if *shutdown.borrow() {
                    break;
                }
                if Instant::now() >= next_prune {
                    next_prune = Instant::now() + hub.settings.prune_interval;
                    prune(&hub).await;
                }
                if let Err(e) = hub.pump().await {
                    tracing::warn!("change feed: reading the log failed: {e}");
                }
                tokio::select! {
                    _ = hub.store.changes_committed() => {}
                    _ = tokio::time::sleep(hub.settings.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
            let mut st = hub.lock();
            st.closed = true;
            st.tenants.clear();
            st.watchers = 0;
        }
    }

    /// The last revision committed in the deployment: what an answer names when its request
    /// committed nothing itself.
    pub async fn head(&self, ctx: &OpCtx) -> Result<i64, Error> {
        ctx.require(Access::Read)?;
        Ok(self.hub.store.change_bounds().await?.head)
    }

    /// Where `since` starts (the head by default), or 410 if retention removed what follows it.
    /// A revision past the head (another deployment's, or from before a restore) is refused:
    /// taken as is, it would silently skip every change up to it.
    async fn start(&self, since: Option<i64>) -> Result<i64, Error> {
        let bounds = self.hub.store.change_bounds().await?;
        let since = since.unwrap_or(bounds.head);
        if since > bounds.head {
            return Err(Error::bad_request(format!(
                "Revision {since} is after the newest one, {}.",
                bounds.head
            )));
        }
        check_kept(since, bounds.pruned_through)?;
        Ok(since)
    }

    /// A page of the caller's events after `since` (at most `limit` log entries read).
    pub async fn page(&self, ctx: &OpCtx, query: &FeedQuery, limit: i64) -> Result<FeedPage, Error> {
        let scope = ctx.require(Access::Read)?;
        let filter = Filter::new(ctx.principal().role, query);
        let since = self.start(query.since).await?;
        let rows = self.hub.store.changes_after(&scope, since, limit).await?;
        // A prune that ran during the read may have taken entries the read needed.
        check_kept(since, self.hub.store.change_bounds().await?.pruned_through)?;
        let next = rows.last().map_or(since, |r| r.revision);
        let events = rows
            .into_iter()
            .map(FeedEvent::from_row)
            .filter(|e| filter.matches(e))
            .map(Arc::new)
            .collect();
        Ok(FeedPage { events, next })
    }

    /// Opens a watcher of the caller's events after `since`.
    pub async fn watch(&self, ctx: &OpCtx, query: &FeedQuery) -> Result<Watch, Error> {
        let scope = ctx.require(Access::Read)?;
        let filter = Arc::new(Filter::new(ctx.principal().role, query));
        let since = self.start(query.since).await?;
        let head = if self.hub.lock().delivered.is_none() {
            Some(self.hub.store.change_bounds().await?.head)
        } else {
            None
        };
        let (tx, rx) = mpsc::channel(self.hub.settings.buffer.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.hub.next_id.fetch_add(1, Ordering::Relaxed);
        let upto = {
            let mut st = self.hub.lock();
            if st.closed {
                return Err(Error::Unavailable("The server is shutting down.".into()));
            }
            let max = self.hub.settings.max_watchers_per_tenant;
            let open = st.tenants.get(scope.id()).map_or(0, Vec::len);
            if open >= max {
                return Err(Error::TooManyRequests(format!(
                    "This tenant already has {open} watchers of /events on this server (the limit is {max})."
                )));
            }
            let upto = match st.delivered {
                Some(d) => d,
                None => {
                    let h = head.unwrap_or(since);
                    st.delivered = Some(h);
                    h
                }
            };
            st.tenants.entry(scope.id().clone()).or_default().push(Slot {
                id,
                filter: filter.clone(),
                tx,
                lagged: lagged.clone(),
            });
            st.watchers += 1;
            upto
        };
        Ok(Watch {
            hub: self.hub.clone(),
            scope,
            filter,
            id,
            position: since,
            sent: since,
            upto,
            checked: false,
            backlog: VecDeque::new(),
            rx,
            lagged,
        })
    }

    /// Deployment-wide counters for `/metrics`: no tenant's data, so they need no context;
    /// `/metrics` itself is open to operators and the scrape token only.
    pub fn stats(&self) -> FeedStats {
        let st = self.hub.lock();
        FeedStats {
            watchers: st.watchers as u64,
            events_sent: self.hub.sent.load(Ordering::Relaxed),
            lagged: self.hub.lagged.load(Ordering::Relaxed),
            revision: st.delivered.unwrap_or(0),
        }
    }
}

fn check_kept(since: i64, pruned_through: i64) -> Result<(), Error> {
    if since < pruned_through {
        let oldest = pruned_through + 1;
        return Err(Error::Gone {
            message: format!(
                "Revision {since} is older than the change log keeps; the oldest available is {oldest}."
            ),
            oldest,
        });
    }
    Ok(())
}

/// Applies retention: entries both older than `retention` and outside the newest
/// `retention_events` go. Every replica runs it; it is idempotent.
async fn prune(hub: &Hub) {
    let keep = i64::try_from(hub.settings.retention.as_millis()).unwrap_or(i64::MAX);
    let older_than = now_ms().saturating_sub(keep);
    match hub
        .store
        .prune_changes(older_than, hub.settings.retention_events)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::debug!(removed = n, "change log pruned"),
        Err(e) => tracing::warn!("change log retention failed: {e}"),
    }
}

/// One open watcher. Dropping it unregisters it.
pub struct Watch {
    hub: Arc<Hub>,
    scope: TenantScope,
    filter: Arc<Filter>,
    id: u64,
    /// Every revision up to here has been passed (sent or filtered out).
    position: i64,
    /// The last revision sent (where a lagged watcher resumes).
    sent: i64,
    /// Catch-up reads the store up to here; the hub brings what follows.
    upto: i64,
    checked: bool,
    backlog: VecDeque<Arc<FeedEvent>>,
    rx: mpsc::Receiver<Arc<FeedEvent>>,
    lagged: Arc<AtomicBool>,
}

impl Watch {
    /// The next item, or `None` when the stream ends (shutdown, or after `Lagged`).
    /// Cancel-safe: state changes only after each await completes.
    pub async fn next(&mut self) -> Result<Option<FeedItem>, Error> {
        loop {
            if let Some(ev) = self.backlog.pop_front() {
                return Ok(Some(self.send(ev)));
            }
            if self.position < self.upto {
                let rows = self
                    .hub
                    .store
                    .changes_after(&self.scope, self.position, PAGE)
                    .await?;
                if !self.checked {
                    check_kept(
                        self.position,
                        self.hub.store.change_bounds().await?.pruned_through,
                    )?;
                    self.checked = true;
                }
                let full = rows.len() as i64 == PAGE;
                let mut reached = self.upto;
                for r in rows {
                    if r.revision > self.upto {
                        break;
                    }
                    reached = r.revision;
                    let ev = FeedEvent::from_row(r);
                    if self.filter.matches(&ev) {
                        self.backlog.push_back(Arc::new(ev));
                    }
                }
                self.position = if full { reached } else { self.upto };
                continue;
            }
            match self.rx.recv().await {
                Some(ev) if ev.revision > self.position => {
                    self.position = ev.revision;
                    return Ok(Some(self.send(ev)));
                }
                Some(_) => continue,
                None if self.lagged.swap(false, Ordering::Relaxed) => {
                    return Ok(Some(FeedItem::Lagged {
                        resume_from: self.sent,
                    }));
                }
                None => return Ok(None),
            }
        }
    }

    /// An event that is ready without waiting, if any (to batch a burst into one write).
    /// `None` says nothing about the end of the stream: [`Watch::next`] tells that.
    pub fn try_next(&mut self) -> Option<Arc<FeedEvent>> {
        loop {
            if let Some(ev) = self.backlog.pop_front() {
                self.send(ev.clone());
                return Some(ev);
            }
            if self.position < self.upto {
                return None;
            }
            match self.rx.try_recv() {
                Ok(ev) if ev.revision > self.position => {
                    self.position = ev.revision;
                    self.send(ev.clone());
                    return Some(ev);
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    fn send(&mut self, ev: Arc<FeedEvent>) -> FeedItem {
        self.sent = ev.revision;
        self.hub.sent.fetch_add(1, Ordering::Relaxed);
        FeedItem::Event(ev)
    }

    /// Interval of heartbeats on this stream.
    pub fn heartbeat(&self) -> Duration {
        self.hub.settings.heartbeat
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.remove(self.scope.id(), self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_wraps_the_stored_view() {
        let row = ChangeRow {
            revision: 42,
            time: 1_482_242_336_123,
            tenant: TenantId::from_trusted("t"),
            kind: "instance.updated".into(),
            object_type: "instance".into(),
            object_id: "i-1".into(),
            namespace: String::new(),
            actor: "alice@acme".into(),
            request_id: "r\"1".into(),
            data: "{\"id\":\"i-1\",\"state\":\"launched\"}".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&event_json(&row)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"revision": 42, "time": "2016-12-20T13:58:56.123Z", "kind": "instance.updated",
                "type": "instance", "id": "i-1", "actor": "alice@acme", "request_id": "r\"1",
                "object": {"id": "i-1", "state": "launched"}})
        );
        let row = ChangeRow {
            namespace: "dev".into(),
            ..row
        };
        assert!(event_json(&row).contains("\"namespace\":\"dev\""));
        assert!(!event_json(&row).contains('\n'));
    }

    #[test]
    fn retention_answers_gone_with_the_oldest_revision() {
        assert!(check_kept(5, 5).is_ok());
        assert_eq!(check_kept(4, 5).unwrap_err().status(), 410);
        assert!(matches!(check_kept(0, 7), Err(Error::Gone { oldest: 8, .. })));
    }
}
