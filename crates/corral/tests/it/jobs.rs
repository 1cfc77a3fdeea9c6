//! The durable job engine on both stores: steps run once across a crash, leases expire and
//! are reaped, deadlines fail jobs with a reason, tenant worker slots bound concurrency, and
//! singleton leases fence their holders.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use corral_core::jobs::{JobCtx, JobEngine, JobError, JobHandler, JobSettings, new_job};
use corral_store::{JobRow, JobState, Store};
use corral_types::time::now_ms;
use corral_types::{
    ApiKeyId, Error, JobId, OpCtx, Principal, Role, TenantName, TenantRef, TenantScope, UserName,
};
use reqwest::Method;
use serde_json::json;
use tokio::sync::{Mutex, watch};

use crate::both_stores;
use crate::harness::{Db, TestServer};

/// Counts what the jobs do, so tests can see how often each step really ran.
#[derive(Default)]
struct Probe {
    first: AtomicUsize,
    second: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    failures: Mutex<Vec<(String, String)>>,
    /// The context each run saw: user, request id, job id, tenant id.
    contexts: Mutex<Vec<(String, String, String, String)>>,
}

/// Two steps; the first can hang (to simulate a worker that dies after it).
struct TwoSteps {
    probe: Arc<Probe>,
    hang_after_first: bool,
    step_time: Duration,
}

#[async_trait::async_trait]
impl JobHandler for TwoSteps {
    async fn run(&self, ctx: &mut JobCtx) -> Result<(), JobError> {
        let op = ctx.op();
        self.probe.contexts.lock().await.push((
            op.user().to_string(),
            op.request_id().to_string(),
            op.job_id().map(|j| j.to_string()).unwrap_or_default(),
            ctx.scope().id().to_string(),
        ));
        let now = self.probe.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.probe.max_running.fetch_max(now, Ordering::SeqCst);
        let probe = self.probe.clone();
        let step_time = self.step_time;
        let first: u64 = ctx
            .step("first", || async move {
                tokio::time::sleep(step_time).await;
                probe.first.fetch_add(1, Ordering::SeqCst);
                Ok(41_u64)
            })
            .await?;
        if self.hang_after_first {
            std::future::pending::<()>().await;
        }
        let probe = self.probe.clone();
        ctx.step("second", || async move {
            assert_eq!(first, 41, "the first step's recorded output is reused");
            probe.second.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await?;
        self.probe.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    async fn failed(&self, job: &JobRow, reason: &str) -> Result<(), Error> {
        self.probe
            .failures
            .lock()
            .await
            .push((job.subject.clone(), reason.to_string()));
        Ok(())
    }
}

fn settings(lease_ms: u64) -> JobSettings {
    JobSettings {
        lease: Duration::from_millis(lease_ms),
        poll: Duration::from_millis(50),
        max_concurrent: 16,
        retry_after: Duration::from_millis(50),
    }
}

struct Running {
    engine: Arc<JobEngine>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the engine and waits for its loop to end.
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

fn start_engine(store: &Store, lease_ms: u64, kind: &str, handler: Arc<dyn JobHandler>) -> Running {
    let engine = Arc::new(JobEngine::new(store.clone(), settings(lease_ms)));
    engine.register(kind, handler);
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(engine.clone().run(rx));
    Running { engine, stop, task }
}

/// The context of a request by an admin of `scope`'s tenant, as the API would build it.
fn ctx_for(scope: &TenantScope) -> OpCtx {
    OpCtx::new(
        Principal {
            tenant: TenantRef {
                id: scope.id().clone(),
                name: TenantName::from_trusted("test".into()),
            },
            user: UserName::from_trusted("tester".into()),
            role: Role::Admin,
            api_key: ApiKeyId::new(),
        },
        "test-request",
    )
}

/// The tenant's scope, as a background task holds it: these tests drive the engine directly.
async fn tenant_id(s: &TestServer, name: &str) -> TenantScope {
    let n = s
        .sql_count(&format!("SELECT COUNT(*) FROM tenants WHERE name = '{name}'"))
        .await;
    assert_eq!(n, 1);
    let rows = s.store.list_tenants().await.unwrap();
    TenantScope::background(rows.into_iter().find(|t| t.name == name).unwrap().id)
}

async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn job_state(store: &Store, id: &JobId) -> JobState {
    store.get_job(id).await.unwrap().unwrap().state
}

async fn a_job_runs_its_steps_once(db: Db) {
    let s = TestServer::start(db).await;
    let store = s.store.clone();
    let tenant = tenant_id(&s, "superadmin").await;
    let probe = Arc::new(Probe::default());
    let handler = Arc::new(TwoSteps {
        probe: probe.clone(),
        hang_after_first: false,
        step_time: Duration::ZERO,
    });
    let r = start_engine(&store, 5_000, "test.two", handler);
    let job = new_job(
        &ctx_for(&tenant),
        &tenant,
        "test.two",
        "a",
        &json!({}),
        true,
        Duration::from_secs(30),
    )
    .unwrap();
    store.enqueue_job(&job, now_ms()).await.unwrap();
    r.engine.wake();
    wait_for("success", async || {
        job_state(&store, &job.id).await == JobState::Succeeded
    })
    .await;
    assert_eq!(probe.first.load(Ordering::SeqCst), 1);
    assert_eq!(probe.second.load(Ordering::SeqCst), 1);
    let steps = store.job_steps(&job.id).await.unwrap();
    assert_eq!(
        steps.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    let events = store.job_events(&job.id).await.unwrap();
    assert!(events.iter().any(|(_, m)| m == "succeeded"), "{events:?}");
    // The job ran in the context of the request that enqueued it.
    assert_eq!(
        *probe.contexts.lock().await,
        [(
            "tester".to_string(),
            "test-request".to_string(),
            job.id.to_string(),
            tenant.id().to_string()
        )]
    );
    r.stop().await;
}

async fn a_dead_workers_job_resumes_after_its_step(db: Db) {
    let s = TestServer::start(db).await;
    let store = s.store.clone();
    let tenant = tenant_id(&s, "superadmin").await;
    let probe = Arc::new(Probe::default());
    // Worker A runs the first step, then hangs as if dead: its heartbeat stops with it.
    let a = start_engine(
        &store,
        300,
        "test.two",
        Arc::new(TwoSteps {
            probe: probe.clone(),
            hang_after_first: true,
            step_time: Duration::ZERO,
        }),
    );
    let job = new_job(
        &ctx_for(&tenant),
        &tenant,
        "test.two",
        "a",
        &json!({}),
        true,
        Duration::from_secs(60),
    )
    .unwrap();
    store.enqueue_job(&job, now_ms()).await.unwrap();
    a.engine.wake();
    // Until the step is recorded, not just run: an abort between the two would rightly run it
    // again (steps are at least once; their record makes them skipped on resume).
    wait_for("first step recorded", async || {
        store
            .job_steps(&job.id)
            .await
            .unwrap()
            .iter()
            .any(|(name, _)| name == "first")
    })
    .await;
    a.task.abort();
    let _ = a.task.await;
    // Worker B reaps the lapsed lease and resumes: the first step is not run again.
    let b = start_engine(
        &store,
        300,
        "test.two",
        Arc::new(TwoSteps {
            probe: probe.clone(),
            hang_after_first: false,
            step_time: Duration::ZERO,
        }),
    );
    wait_for("resumed success", async || {
        job_state(&store, &job.id).await == JobState::Succeeded
    })
    .await;
    assert_eq!(
        probe.first.load(Ordering::SeqCst),
        1,
        "the completed step ran again"
    );
    assert_eq!(probe.second.load(Ordering::SeqCst), 1);
    let row = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 2);
    let events = store.job_events(&job.id).await.unwrap();
    assert!(
        events.iter().any(|(_, m)| m.starts_with("lease expired")),
        "{events:?}"
    );
    b.stop().await;
}

async fn a_job_past_its_deadline_fails_with_a_reason(db: Db) {
    let s = TestServer::start(db).await;
    let store = s.store.clone();
    let tenant = tenant_id(&s, "superadmin").await;
    let probe = Arc::new(Probe::default());
    let handler = Arc::new(TwoSteps {
        probe: probe.clone(),
        hang_after_first: true,
        step_time: Duration::ZERO,
    });
    let r = start_engine(&store, 5_000, "test.two", handler);
    let job = new_job(
        &ctx_for(&tenant),
        &tenant,
        "test.two",
        "slow-host",
        &json!({}),
        true,
        Duration::from_millis(400),
    )
    .unwrap();
    store.enqueue_job(&job, now_ms()).await.unwrap();
    r.engine.wake();
    wait_for("deadline failure", async || {
        job_state(&store, &job.id).await == JobState::Failed
    })
    .await;
    let row = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(row.error.as_deref(), Some("deadline passed"));
    wait_for("failure hook", async || !probe.failures.lock().await.is_empty()).await;
    assert_eq!(
        *probe.failures.lock().await,
        vec![("slow-host".to_string(), "deadline passed".to_string())]
    );
    // A queued job whose deadline passes before any worker takes it fails too.
    r.stop().await;
    let late = new_job(
        &ctx_for(&tenant),
        &tenant,
        "test.two",
        "never",
        &json!({}),
        true,
        Duration::from_millis(1),
    )
    .unwrap();
    store.enqueue_job(&late, now_ms()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = start_engine(
        &store,
        5_000,
        "test.two",
        Arc::new(TwoSteps {
            probe: probe.clone(),
            hang_after_first: false,
            step_time: Duration::ZERO,
        }),
    );
    wait_for("overdue failure", async || {
        job_state(&store, &late.id).await == JobState::Failed
    })
    .await;
    assert_eq!(
        probe.first.load(Ordering::SeqCst),
        1,
        "an overdue job must not start"
    );
    r.stop().await;
}

async fn tenant_workers_bound_concurrency(db: Db) {
    let s = TestServer::start(db).await;
    s.create_tenant("acme", 2).await;
    let store = s.store.clone();
    let tenant = tenant_id(&s, "acme").await;
    let probe = Arc::new(Probe::default());
    let handler = Arc::new(TwoSteps {
        probe: probe.clone(),
        hang_after_first: false,
        step_time: Duration::from_millis(150),
    });
    let r = start_engine(&store, 5_000, "test.two", handler);
    let mut ids = Vec::new();
    for i in 0..6 {
        let job = new_job(
            &ctx_for(&tenant),
            &tenant,
            "test.two",
            &format!("h{i}"),
            &json!({}),
            true,
            Duration::from_secs(60),
        )
        .unwrap();
        store.enqueue_job(&job, now_ms()).await.unwrap();
        ids.push(job.id);
    }
    r.engine.wake();
    for id in &ids {
        wait_for("all done", async || {
            job_state(&store, id).await == JobState::Succeeded
        })
        .await;
    }
    assert_eq!(
        probe.max_running.load(Ordering::SeqCst),
        2,
        "workers = 2 allows two jobs at once"
    );
    r.stop().await;
}

async fn zero_workers_keep_jobs_queued(db: Db) {
    let s = TestServer::start(db).await;
    s.create_tenant("idle", 0).await;
    let store = s.store.clone();
    let tenant = tenant_id(&s, "idle").await;
    let probe = Arc::new(Probe::default());
    let handler = Arc::new(TwoSteps {
        probe: probe.clone(),
        hang_after_first: false,
        step_time: Duration::ZERO,
    });
    let r = start_engine(&store, 5_000, "test.two", handler);
    let job = new_job(
        &ctx_for(&tenant),
        &tenant,
        "test.two",
        "h",
        &json!({}),
        true,
        Duration::from_secs(60),
    )
    .unwrap();
    store.enqueue_job(&job, now_ms()).await.unwrap();
    r.engine.wake();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(job_state(&store, &job.id).await, JobState::Queued);
    assert_eq!(probe.first.load(Ordering::SeqCst), 0);
    // Raising the tenant's workers lets it run.
    let resp = s
        .root(Method::PUT, "/v2/tenants/idle")
        .json(&json!({"tenant": {"name": "idle", "workers": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    r.engine.wake();
    wait_for("run after raise", async || {
        job_state(&store, &job.id).await == JobState::Succeeded
    })
    .await;
    r.stop().await;
}

async fn singleton_leases_fence_their_holders(db: Db) {
    let s = TestServer::start(db).await;
    let store = &s.store;
    let now = now_ms();
    let g1 = store
        .acquire_singleton("watcher", "a", now, now + 200)
        .await
        .unwrap();
    assert_eq!(g1, Some(1));
    assert_eq!(
        store
            .acquire_singleton("watcher", "b", now, now + 200)
            .await
            .unwrap(),
        None,
        "held by a"
    );
    assert_eq!(
        store
            .acquire_singleton("watcher", "a", now, now + 400)
            .await
            .unwrap(),
        Some(1),
        "a renews"
    );
    // After a's lease lapses, b takes over with a new generation; a cannot renew any more.
    let later = now + 1_000;
    assert_eq!(
        store
            .acquire_singleton("watcher", "b", later, later + 200)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        store
            .acquire_singleton("watcher", "a", later, later + 200)
            .await
            .unwrap(),
        None
    );
}

both_stores!(
    a_job_runs_its_steps_once,
    a_dead_workers_job_resumes_after_its_step,
    a_job_past_its_deadline_fails_with_a_reason,
    tenant_workers_bound_concurrency,
    zero_workers_keep_jobs_queued,
    singleton_leases_fence_their_holders,
);
