//! The change feed, `GET /events` (docs/events.md): Server-Sent Events and JSON pages read
//! against the store's log, resume by `since` and `Last-Event-ID` across a restart, 410 after
//! retention, tenant and role filtering, following a bulk launch from its
//! `X-Corral-Revision`, a lagging watcher, the per-tenant watcher cap, and two replicas on
//! one PostgreSQL.

use std::time::{Duration, Instant};

use corral_store::ChangeRow;
use corral_types::TenantScope;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{Db, TestServer};
use crate::instances::{act, call, ids, launch, server, wait_state};

/// One message of an event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Event {
        id: Option<i64>,
        event: String,
        data: Value,
    },
    Comment(String),
}

/// A client of one event stream.
pub struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// Opens `GET /events?{query}` as `key`, with `Last-Event-ID` if given; asserts 200.
    pub async fn open(s: &TestServer, key: &str, query: &str, last_event_id: Option<i64>) -> Sse {
        let resp = Self::request(s, key, query, last_event_id).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET /events?{query}");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse {
            resp,
            buf: String::new(),
        }
    }

    pub async fn request(
        s: &TestServer,
        key: &str,
        query: &str,
        last_event_id: Option<i64>,
    ) -> reqwest::Response {
        // Streams may outlive the harness client's 30 s timeout.
        let client = reqwest::Client::new();
        let mut req = client
            .get(s.url(&format!("/events?{query}")))
            .bearer_auth(key)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        req.send().await.unwrap()
    }

    /// The next message, `None` at the end of the stream; fails after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..p + 2).collect();
                let (mut id, mut event, mut data, mut comment) = (None, String::new(), None, None);
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if let Some(c) = line.strip_prefix(':') {
                        comment = Some(c.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse::<i64>().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        assert!(data.is_none(), "one data line per event: {block:?}");
                        data = Some(serde_json::from_str::<Value>(v).expect("data is JSON"));
                    } else {
                        panic!("unexpected line {line:?} in {block:?}");
                    }
                }
                return Some(match (data, comment) {
                    (Some(data), _) => Msg::Event { id, event, data },
                    (None, Some(c)) => Msg::Comment(c),
                    (None, None) => panic!("empty message {block:?}"),
                });
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .expect("no message in time")
                .expect("stream readable");
            match chunk {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
                None => {
                    assert!(
                        self.buf.is_empty(),
                        "stream ended inside a message: {:?}",
                        self.buf
                    );
                    return None;
                }
            }
        }
    }

    /// The next event (heartbeats skipped), `None` at the end of the stream.
    pub async fn event(&mut self, wait: Duration) -> Option<(Option<i64>, String, Value)> {
        loop {
            match self.next(wait).await? {
                Msg::Event { id, event, data } => return Some((id, event, data)),
                Msg::Comment(_) => continue,
            }
        }
    }

    /// The next `n` events, each checked for the SSE framing of docs/events.md.
    pub async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let (id, event, data) = self
                .event(Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("stream ended after {} of {n} events", out.len()));
            assert_eq!(id, data["revision"].as_i64(), "id is the revision: {data}");
            assert_eq!(event, data["kind"].as_str().unwrap(), "event is the kind");
            out.push(data);
        }
        out
    }
}

/// The tenant's log as the store has it, after `since`.
pub async fn log_after(s: &TestServer, tenant: &str, since: i64) -> Vec<ChangeRow> {
    let id = s.store.get_tenant(tenant).await.unwrap().unwrap().id;
    s.store
        .changes_after(&TenantScope::background(id), since, 100_000)
        .await
        .unwrap()
}

/// A JSON page of `GET /events?{query}`.
pub async fn page(s: &TestServer, key: &str, query: &str) -> Value {
    s.get(key, &format!("/events?{query}"))
        .with(|r| r.header("accept", "application/json"))
        .ok()
        .await
}

/// Every event after `since` through JSON pages of `limit`, following `next`.
pub async fn all_pages(s: &TestServer, key: &str, since: i64, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut since = since;
    loop {
        let p = page(s, key, &format!("since={since}&limit={limit}")).await;
        let events = p["events"].as_array().unwrap().clone();
        assert!(events.len() <= limit, "a page holds at most limit events");
        let next = p["next"].as_i64().unwrap();
        if events.is_empty() {
            assert_eq!(next, since, "an empty page keeps its position");
            return out;
        }
        assert_eq!(next, events.last().unwrap()["revision"].as_i64().unwrap());
        out.extend(events);
        since = next;
    }
}

/// An event as the log's row says it must be.
fn expected(r: &ChangeRow) -> Value {
    let mut v = json!({
        "revision": r.revision,
        "kind": r.kind,
        "type": r.object_type,
        "id": r.object_id,
        "actor": r.actor,
        "request_id": r.request_id,
        "object": serde_json::from_str::<Value>(&r.data).unwrap(),
    });
    if !r.namespace.is_empty() {
        v["namespace"] = json!(r.namespace);
    }
    v
}

/// The events without their `time`, which is checked for its format here.
fn timeless(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let t = e["time"].as_str().unwrap_or_else(|| panic!("no time: {e}"));
            assert!(
                t.len() == 24 && t.ends_with('Z') && &t[10..11] == "T" && &t[19..20] == ".",
                "time {t} is RFC 3339 UTC with milliseconds"
            );
            let mut e = e.clone();
            e.as_object_mut().unwrap().remove("time");
            e
        })
        .collect()
}

/// Checks that `/events` answers exactly the tenant's log (an admin sees every kind), as
/// JSON pages and as a stream from revision 0: the change log tests call it after driving
/// every kind of object.
pub async fn feed_matches_log(s: &TestServer, admin: &str, tenant: &str) {
    let log = log_after(s, tenant, 0).await;
    assert!(!log.is_empty());
    let want: Vec<Value> = log.iter().map(expected).collect();
    // (Background work may log more meanwhile: the log read first is a prefix.)
    let pages = all_pages(s, admin, 0, 7).await;
    assert!(pages.len() >= want.len());
    assert_eq!(timeless(&pages[..want.len()]), want, "JSON pages");
    let mut sse = Sse::open(s, admin, "since=0", None).await;
    let streamed = sse.events(log.len()).await;
    assert_eq!(timeless(&streamed), want, "event stream");
}

/// A namespace change through the API; answers the request's `X-Corral-Revision`.
async fn touch(s: &TestServer, key: &str, ns: &str) -> i64 {
    let resp = s
        .call(key, Method::PUT, &format!("/v3/namespaces/{ns}"))
        .json(&json!({"description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    revision_of(&resp)
}

/// A namespace's description changed; answers the request's `X-Corral-Revision`.
async fn update(s: &TestServer, key: &str, ns: &str, description: &str) -> i64 {
    let resp = s
        .call(key, Method::PUT, &format!("/v3/namespaces/{ns}/properties"))
        .json(&json!({"description": description}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    revision_of(&resp)
}

fn revision_of(resp: &reqwest::Response) -> i64 {
    resp.headers()
        .get("x-corral-revision")
        .unwrap_or_else(|| panic!("no X-Corral-Revision on {}", resp.url()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Streams and pages, resumed by `since` and by `Last-Event-ID` across a server restart:
/// nothing missed, nothing repeated; heartbeats on an idle stream; filters; bad queries.
async fn stream_page_and_resume_across_a_restart(db: Db) {
    let s = TestServer::start_with(db, |c| c.events.heartbeat_secs = 1).await;
    let k = s.create_tenant("acme", 0).await;
    // A watcher from the head sees only what comes after it.
    let mut live = Sse::open(&s, &k, "", None).await;
    let r1 = touch(&s, &k, "dev").await;
    let (id, event, data) = live.event(Duration::from_secs(10)).await.unwrap();
    assert_eq!((id, event.as_str()), (Some(r1), "namespace.created"));
    assert_eq!(data["namespace"], "dev");
    assert_eq!(data["actor"], "admin@acme");
    assert_eq!(data["object"]["name"], "dev");
    // Idle: heartbeats.
    assert_eq!(
        live.next(Duration::from_secs(5)).await,
        Some(Msg::Comment("heartbeat".into()))
    );
    let r2 = update(&s, &k, "dev", "changed").await;
    touch(&s, &k, "prod").await;
    let got = live.events(2).await;
    assert_eq!(got[0]["revision"], r2);
    assert_eq!(got[0]["kind"], "namespace.updated");
    assert_eq!(got[1]["id"], "prod");
    let seen_before = got[1]["revision"].as_i64().unwrap();
    drop(live);

    // Filters, on pages and streams.
    let p = page(&s, &k, "since=0&types=namespace&ids=prod").await;
    assert_eq!(p["events"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p["events"][0]["id"], "prod");
    let p = page(&s, &k, "since=0&namespace=dev").await;
    assert_eq!(p["events"].as_array().unwrap().len(), 2, "{p}");
    let p = page(&s, &k, "since=0&types=instance").await;
    assert_eq!(p["events"], json!([]));
    assert_eq!(
        p["next"].as_i64().unwrap(),
        seen_before,
        "next passes filtered entries"
    );
    let mut f = Sse::open(&s, &k, "since=0&ids=prod", None).await;
    assert_eq!(f.events(1).await[0]["id"], "prod");
    drop(f);
    // The default page is from the head: empty.
    let p = page(&s, &k, "").await;
    assert_eq!(p, json!({"events": [], "next": seen_before}));
    for (query, message) in [
        ("since=-1", "since must be a revision (a whole number >= 0)."),
        ("since=abc", "since must be a revision (a whole number >= 0)."),
        ("limit=0", "limit must be between 1 and 5000."),
        ("limit=5001", "limit must be between 1 and 5000."),
    ] {
        s.get(&k, &format!("/events?{query}"))
            .with(|r| r.header("accept", "application/json"))
            .case(query)
            .expect_error(StatusCode::BAD_REQUEST, message)
            .await;
    }
    let e = s
        .get(&k, "/events?types=instance,bogus")
        .expect_error(StatusCode::BAD_REQUEST, None)
        .await;
    assert!(
        e["message"].as_str().unwrap().starts_with("Unknown type 'bogus'"),
        "{e}"
    );
    // A revision past the head would silently skip changes to come: refused, stream or page.
    let ahead = seen_before + 1_000_000;
    let message = format!("Revision {ahead} is after the newest one, {seen_before}.");
    for accept in ["application/json", "text/event-stream"] {
        s.get(&k, &format!("/events?since={ahead}"))
            .with(|r| r.header("accept", accept))
            .case(accept)
            .expect_error(StatusCode::BAD_REQUEST, message.as_str())
            .await;
    }
    s.req_anon(Method::GET, "/events")
        .expect_unauthorized("Authentication required.")
        .await;
    s.get(&k, "/events?since=x")
        .with(|r| r.header("last-event-id", "oops"))
        .expect_error(
            StatusCode::BAD_REQUEST,
            "Last-Event-ID must be a revision (a whole number >= 0).",
        )
        .await;

    // Restart on the same store, with changes while no one watched.
    let (db_url, data_dir) = (s.db_url.clone(), s.data_dir.clone());
    let _keep = s.stop_keeping_files().await;
    let s = TestServer::start_with(db, |c| {
        c.database_url = Some(db_url.clone());
        c.data_dir = data_dir.clone();
    })
    .await;
    touch(&s, &k, "test").await;
    s.delete(&k, "/v3/unrecoverable/namespaces/dev")
        .expect_empty_ok()
        .await;
    assert_eq!(log_after(&s, "acme", seen_before).await.len(), 2);
    // By `since`, and by `Last-Event-ID` (which wins over a stale `since`).
    for (query, header) in [
        (format!("since={seen_before}"), None),
        ("since=0".to_string(), Some(seen_before)),
    ] {
        let want: Vec<i64> = log_after(&s, "acme", seen_before)
            .await
            .iter()
            .map(|r| r.revision)
            .collect();
        let mut resumed = Sse::open(&s, &k, &query, header).await;
        let got = resumed.events(want.len()).await;
        let revs: Vec<i64> = got.iter().map(|e| e["revision"].as_i64().unwrap()).collect();
        assert_eq!(revs, want, "{query} {header:?}");
        assert_eq!(got[1]["kind"], "namespace.deleted");
        // Then live, with nothing repeated.
        let r = touch(&s, &k, "later").await;
        let (id, ..) = resumed.event(Duration::from_secs(10)).await.unwrap();
        assert_eq!(id, Some(r));
        s.delete(&k, "/v3/unrecoverable/namespaces/later")
            .expect_empty_ok()
            .await;
        let (_, kind, _) = resumed.event(Duration::from_secs(10)).await.unwrap();
        assert_eq!(kind, "namespace.deleted");
    }
    s.stop().await;
}

/// Retention removes old entries; a resume from before them answers 410 with `oldest`.
async fn gone_after_retention(db: Db) {
    let tune = |c: &mut corral::config::Settings| {
        c.events.retention_hours = 0;
        c.events.retention_events = 3;
    };
    let s = TestServer::start_with(db, tune).await;
    let k = s.create_tenant("acme", 0).await;
    for ns in ["a", "b", "c", "d", "e", "f"] {
        touch(&s, &k, ns).await;
    }
    let head = touch(&s, &k, "g").await;
    // Retention runs at start (and every minute).
    let (db_url, data_dir) = (s.db_url.clone(), s.data_dir.clone());
    let _keep = s.stop_keeping_files().await;
    let s = TestServer::start_with(db, |c| {
        tune(c);
        c.database_url = Some(db_url.clone());
        c.data_dir = data_dir.clone();
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.store.change_bounds().await.unwrap().pruned_through != head - 3 {
        assert!(Instant::now() < deadline, "retention did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let oldest = head - 2;
    for accept in ["application/json", "text/event-stream"] {
        let body = s
            .get(&k, "/events?since=0")
            .with(|r| r.header("accept", accept))
            .expect_error(StatusCode::GONE, None)
            .await;
        assert_eq!(body["oldest"], oldest, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(&oldest.to_string()),
            "{body}"
        );
    }
    let resp = Sse::request(&s, &k, "", Some(oldest - 2)).await;
    assert_eq!(resp.status(), StatusCode::GONE);
    // From just before the oldest kept: everything kept.
    let p = page(&s, &k, &format!("since={}", oldest - 1)).await;
    let revs: Vec<i64> = p["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(revs, [oldest, oldest + 1, head]);
    s.stop().await;
}

/// A tenant sees only its own events, and only the kinds its role may read.
async fn tenants_and_roles(db: Db) {
    let s = TestServer::start(db).await;
    let acme = s.create_tenant("acme", 0).await;
    let other = s.create_tenant("other", 0).await;
    let viewer = s.create_user(&acme, "vera", "viewer").await;
    let mut theirs = Sse::open(&s, &other, "", None).await;
    let mut admin_stream = Sse::open(&s, &acme, "", None).await;
    let mut viewer_stream = Sse::open(&s, &viewer, "", None).await;
    let since = page(&s, &acme, "").await["next"].as_i64().unwrap();
    s.post(&acme, "/v2/users")
        .json(json!({"id": "bob", "role": "user"}))
        .expect(StatusCode::CREATED)
        .await;
    touch(&s, &acme, "dev").await;
    // Admins see users; viewers do not.
    let kinds = |v: &[Value]| {
        v.iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(&admin_stream.events(2).await),
        ["user.created", "namespace.created"]
    );
    assert_eq!(kinds(&viewer_stream.events(1).await), ["namespace.created"]);
    let p = page(&s, &viewer, &format!("since={since}")).await;
    assert_eq!(kinds(p["events"].as_array().unwrap()), ["namespace.created"]);
    // Nothing of acme's reaches the other tenant: its first event is its own.
    let p = page(&s, &other, "since=0").await;
    assert!(
        p["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] != "admin@acme"),
        "{p}"
    );
    let mine = touch(&s, &other, "theirs").await;
    let (id, ..) = theirs.event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(id, Some(mine));
    s.stop().await;
}

/// A bulk launch of 50 mock instances, followed from its `X-Corral-Revision` until every
/// instance is `launched`.
async fn follow_a_bulk_launch(db: Db) {
    let s = server(db, |_| {}).await;
    let k = s.create_tenant("acme", 50).await;
    let ids = ids(&s, "acme").await;
    let items: Vec<Value> = (0..50)
        .map(|i| json!({"name": format!("vm-{i}"), "projectId": ids.project, "flavor": {"id": ids.small}, "image": {"id": ids.debian}}))
        .collect();
    let resp = s
        .call(&k, Method::POST, "/instances")
        .json(&items)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let rev = revision_of(&resp);
    let out: Vec<Value> = resp.json().await.unwrap();
    assert!(
        out.iter().all(|r| r["status"] == 202),
        "the bulk answer keeps its shape"
    );
    let launched: Vec<String> = out
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    // The revision is the request's own last one: its creations end there.
    let log = log_after(&s, "acme", 0).await;
    let at = log.iter().find(|r| r.revision == rev).expect("logged");
    assert_eq!(at.kind, "instance.created");
    assert!(
        !log.iter()
            .any(|r| r.revision > rev && r.kind == "instance.created")
    );
    // Watch from there (possibly after the work started: nothing is lost).
    let mut sse = Sse::open(
        &s,
        &k,
        &format!("since={rev}&types=instance&ids={}", launched.join(",")),
        None,
    )
    .await;
    let mut states: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let started = Instant::now();
    while states.values().filter(|s| *s == "launched").count() < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not all launched: {states:?}"
        );
        let (_, _, e) = sse.event(Duration::from_secs(30)).await.expect("stream open");
        assert!(e["revision"].as_i64().unwrap() > rev);
        let id = e["id"].as_str().unwrap().to_string();
        assert!(launched.contains(&id));
        states.insert(id, e["object"]["state"].as_str().unwrap().to_string());
    }
    // A bulk action that commits nothing answers the head.
    let resp = s
        .call(&k, Method::PUT, "/instances/start")
        .json(&json!(["no-such-instance"]))
        .send()
        .await
        .unwrap();
    let head = s.store.change_bounds().await.unwrap().head;
    assert_eq!(revision_of(&resp), head);
    // Reads carry none, nor does the read-only POST /query.
    let resp = s.call(&k, Method::GET, "/instances").send().await.unwrap();
    assert!(resp.headers().get("x-corral-revision").is_none());
    let resp = s
        .call(&k, Method::POST, "/query")
        .json(&json!([{"sql": "select count(*) from instances"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("x-corral-revision").is_none());
    s.stop().await;
}

/// A watcher that cannot keep up gets `lagged` with where to resume, and resumes with no
/// gap; a tenant may not open more watchers than the cap; `/metrics` counts them.
async fn lagged_watchers_and_the_cap(db: Db) {
    let s = server(db, |c| {
        c.events.buffer = 1;
        c.events.max_watchers_per_tenant = 2;
        c.events.heartbeat_secs = 1;
    })
    .await;
    let k = s.create_tenant("acme", 10).await;
    let ids = ids(&s, "acme").await;
    let since = page(&s, &k, "").await["next"].as_i64().unwrap();
    let mut slow = Sse::open(&s, &k, "", None).await;
    // A second watcher fills the cap; a third is refused, another tenant's is not.
    let second = Sse::open(&s, &k, "types=host", None).await;
    let resp = Sse::request(&s, &k, "", None).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 429);
    assert_eq!(body["error"], "Too Many Requests");
    let other = s.create_tenant("other", 0).await;
    let _theirs = Sse::open(&s, &other, "", None).await;
    // One transaction logs five changes at once: more than a buffer of one holds.
    let items: Vec<Value> = (0..5)
        .map(|i| json!({"name": format!("vm-{i}"), "projectId": ids.project, "flavor": {"id": ids.small}, "image": {"id": ids.debian}}))
        .collect();
    call(&s, &k, Method::POST, "/instances", json!(items)).await;
    let mut got: Vec<i64> = Vec::new();
    let mut resume_from = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(m) = slow.next(Duration::from_secs(10)).await {
        assert!(Instant::now() < deadline, "the slow watcher was never cut off");
        match m {
            Msg::Event { id, event, data } if event == "lagged" => {
                assert_eq!(id, None);
                assert_eq!(data.as_object().unwrap().len(), 1, "{data}");
                resume_from = Some(data["resume_from"].as_i64().unwrap());
            }
            Msg::Event { id, event, data } => {
                assert!(resume_from.is_none(), "lagged is the last event");
                assert_eq!(event, data["kind"].as_str().unwrap());
                got.push(id.unwrap());
            }
            Msg::Comment(_) => {}
        }
    }
    let resume_from = resume_from.expect("the stream ended with lagged");
    assert_eq!(resume_from, got.last().copied().unwrap_or(since));
    // Resuming from there misses nothing.
    let mut resumed = Sse::open(&s, &k, &format!("since={resume_from}"), None).await;
    let log = log_after(&s, "acme", since).await;
    let rest = resumed.events(log.len() - got.len()).await;
    got.extend(rest.iter().map(|e| e["revision"].as_i64().unwrap()));
    assert_eq!(got, log.iter().map(|r| r.revision).collect::<Vec<_>>());
    // A closed watcher frees its place (noticed at the latest with the next heartbeat).
    drop(second);
    drop(resumed);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = Vec::new();
    while held.len() < 2 {
        let resp = Sse::request(&s, &k, "", None).await;
        if resp.status() == StatusCode::OK {
            held.push(resp);
        } else {
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            assert!(Instant::now() < deadline, "closed watchers were not released");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let metrics = s.metrics_text().await;
    for name in [
        "corral_feed_watchers",
        "corral_feed_events_sent_total",
        "corral_feed_lagged_watchers_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    s.stop().await;
}

/// Two servers on one PostgreSQL (replicas need it: SQLite is one server's file): a watcher on
/// one sees, within a second, what is changed through the other, in order and without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres() {
    let db = Db::Postgres;
    let a = TestServer::start(db).await;
    let url = a.db_url.clone();
    let b = TestServer::start_with(db, |c| c.database_url = Some(url)).await;
    let k = a.create_tenant("acme", 0).await;
    let mut on_b = Sse::open(&b, &k, "", None).await;
    for ns in ["one", "two", "three"] {
        let done = Instant::now();
        let rev = touch(&a, &k, ns).await;
        let (id, kind, data) = on_b.event(Duration::from_secs(5)).await.unwrap();
        let took = done.elapsed();
        assert_eq!((id, kind.as_str()), (Some(rev), "namespace.created"));
        assert_eq!(data["id"], ns);
        assert!(took < Duration::from_secs(1), "replica delivery took {took:?}");
    }
    // And the other way round, both replicas writing.
    let mut on_a = Sse::open(&a, &k, "", None).await;
    let r1 = touch(&b, &k, "four").await;
    let r2 = touch(&a, &k, "five").await;
    for sse in [&mut on_a, &mut on_b] {
        let got: Vec<i64> = sse
            .events(2)
            .await
            .iter()
            .map(|e| e["revision"].as_i64().unwrap())
            .collect();
        assert_eq!(got, [r1, r2]);
    }
    b.stop().await;
    a.stop().await;
}

/// The mock instance actions' changes reach a watcher in order, and an action on an
/// instance answers the revision of its own change.
async fn instance_actions_in_order(db: Db) {
    let s = server(db, |_| {}).await;
    let k = s.create_tenant("acme", 4).await;
    let ids = ids(&s, "acme").await;
    let id = launch(&s, &k, &ids, "web").await;
    wait_state(&s, &k, &id, "launched").await;
    let mut sse = Sse::open(&s, &k, &format!("ids={id}"), None).await;
    let out = act(&s, &k, "reboot", &[&id]).await;
    assert_eq!(out[0]["status"], 202);
    let states: Vec<String> = sse
        .events(2)
        .await
        .iter()
        .map(|e| e["object"]["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["rebooting", "launched"]);
    s.stop().await;
}

both_stores!(
    stream_page_and_resume_across_a_restart,
    gone_after_retention,
    tenants_and_roles,
    follow_a_bulk_launch,
    lagged_watchers_and_the_cap,
    instance_actions_in_order,
);
