//! The supervisor of CDAP service processes (cdap-v3.md 1.5): keeps N instances of a running
//! service alive, checks their health, restarts them with back-off and stops them.
//!
//! It holds only what lives in this server process: the live runs and their instances. The
//! durable part (desired state, run records) is written by `services.rs` through the store.
//! Each instance is one tokio task owning its process; the router reads the instances' health
//! and ports through atomics, so a proxied request never waits on a lock a supervisor task
//! holds across an await.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::sync::{lock, read, write};
use std::time::{Duration, Instant};

use corral_drivers::{ProcessHandle, ProcessRunner, ProcessSpec};
use corral_store::ServiceRef;
use corral_types::TenantScope;
use corral_types::cdap::ServiceSpec;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How a service instance's health is checked, and how crashes are retried (1.5).
#[derive(Debug, Clone)]
pub struct SupervisionSettings {
    /// Check interval until the first success.
    pub first_interval: Duration,
    /// Check interval after it.
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before a healthy instance counts as down.
    pub failures: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Health time after which the back-off starts again from `backoff_initial`.
    pub backoff_reset: Duration,
    /// Between `SIGTERM` and `SIGKILL`.
    pub stop_grace: Duration,
}

impl Default for SupervisionSettings {
    fn default() -> Self {
        SupervisionSettings {
            first_interval: Duration::from_secs(1),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            failures: 3,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            backoff_reset: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// Where and as whom service processes run.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// This server's identity in the store (the data dir's node id): runs it supervises carry
    /// it, and only their own runs are recovered at a restart.
    pub node: String,
    /// Parent of the instances' working directories. Outside the data dir, so a service
    /// (running as `run_as`) can use its directory and never reach Corral's files.
    pub work_root: PathBuf,
    /// The OS user services run as; `None`: the server's user.
    pub run_as: Option<(u32, u32)>,
    /// The server runs as root and no `service_user` is set: services are refused rather than
    /// run as root.
    pub refuse_as_root: bool,
    /// Bytes of recent output kept per instance.
    pub output_cap_bytes: usize,
    pub supervision: SupervisionSettings,
    /// Routing without a route config (7.3).
    pub fallback: Fallback,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            node: "local".into(),
            work_root: std::env::temp_dir().join("corral-services"),
            run_as: None,
            refuse_as_root: false,
            output_cap_bytes: 64 * 1024,
            supervision: SupervisionSettings::default(),
            fallback: Fallback::Random,
        }
    }
}

/// CDAP's `router.userservice.fallback.strategy` (cdap-v3.md 7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    Random,
    Smallest,
    Largest,
    Drop,
}

/// A service of a tenant: the supervisor's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub tenant: TenantScope,
    pub service: ServiceRef,
}

/// The routing key: every version of one service of an app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AppServiceKey {
    pub tenant: TenantScope,
    pub namespace: String,
    pub app: String,
    pub service: String,
}

impl ServiceKey {
    pub(crate) fn app_service(&self) -> AppServiceKey {
        AppServiceKey {
            tenant: self.tenant.clone(),
            namespace: self.service.namespace.clone(),
            app: self.service.app.clone(),
            service: self.service.service.clone(),
        }
    }
}

/// What the router and the API see of one instance. Written only by its task.
#[derive(Debug, Default)]
pub(crate) struct InstanceState {
    pub index: usize,
    /// 0 while no process has been started.
    pub port: AtomicU16,
    /// 0 while no process runs.
    pub pid: AtomicU32,
    pub healthy: AtomicBool,
    pub restarts: AtomicU32,
    handle: Mutex<Option<ProcessHandle>>,
}

impl InstanceState {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub fn is_alive(&self) -> bool {
        self.pid.load(Ordering::Acquire) != 0
    }

    pub fn output(&self) -> String {
        lock(&self.handle)
            .as_ref()
            .map(ProcessHandle::output_text)
            .unwrap_or_default()
    }
}

struct Slot {
    state: Arc<InstanceState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// One active run in this server.
pub(crate) struct LiveRun {
    pub run_id: String,
    pub key: ServiceKey,
    spec: ServiceSpec,
    runtime_args: BTreeMap<String, String>,
    /// The instances, by index. Changed under `slots`; read by the router through `view`.
    slots: tokio::sync::Mutex<Vec<Slot>>,
    view: RwLock<Arc<Vec<Arc<InstanceState>>>>,
    /// Round-robin position (7.4).
    next: AtomicUsize,
    /// Set once the stop begins: the run no longer gets traffic.
    stopping: AtomicBool,
}

impl LiveRun {
    /// The instances, a snapshot.
    pub fn instances(&self) -> Arc<Vec<Arc<InstanceState>>> {
        read(&self.view).clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Ports of the healthy instances, starting at the round-robin position.
    pub fn healthy_ports(&self) -> Vec<u16> {
        let all = self.instances();
        let healthy: Vec<u16> = all
            .iter()
            .filter(|i| i.is_healthy())
            .map(|i| i.port.load(Ordering::Acquire))
            .filter(|p| *p != 0)
            .collect();
        if healthy.is_empty() {
            return healthy;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % healthy.len();
        healthy[start..]
            .iter()
            .chain(&healthy[..start])
            .copied()
            .collect()
    }

    pub fn healthy_count(&self) -> usize {
        self.instances().iter().filter(|i| i.is_healthy()).count()
    }
}

/// Why a run could not start.
#[derive(Debug)]
pub(crate) enum SpawnFailure {
    /// The first instance could not be spawned: the run fails (4.3's 500).
    First(String),
}

/// Runs and stops service processes for one server.
pub(crate) struct Supervisor {
    runner: Arc<dyn ProcessRunner>,
    pub settings: ServiceSettings,
    command_dirs: Option<Vec<PathBuf>>,
    /// Live runs by app service, then version.
    runs: RwLock<HashMap<AppServiceKey, BTreeMap<String, Arc<LiveRun>>>>,
    /// Serialises start, stop and scaling of one service.
    locks: Mutex<HashMap<ServiceKey, Arc<tokio::sync::Mutex<()>>>>,
    rng: AtomicU64,
    /// Where instances' health changes are logged (the change feed); none in unit tests.
    change_log: Option<corral_store::Store>,
}

impl Supervisor {
    pub fn new(
        runner: Arc<dyn ProcessRunner>,
        settings: ServiceSettings,
        command_dirs: Option<Vec<PathBuf>>,
    ) -> Supervisor {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(std::process::id()).rotate_left(32);
        Supervisor {
            runner,
            settings,
            command_dirs,
            runs: RwLock::default(),
            locks: Mutex::default(),
            rng: AtomicU64::new(seed | 1),
            change_log: None,
        }
    }

    /// Logs every instance's health changes to the store's change log.
    pub fn with_change_log(mut self, store: corral_store::Store) -> Supervisor {
        self.change_log = Some(store);
        self
    }

    /// Appends an instance's health change to the change log (`service_instance.updated`).
    /// A failed write is logged, not fatal: health is re-evaluated on every check.
    async fn log_health(&self, run: &LiveRun, index: usize, healthy: bool) {
        let Some(store) = &self.change_log else {
            return;
        };
        let s = &run.key.service;
        let change = corral_store::NewChange {
            verb: corral_types::Verb::Updated,
            object_type: corral_types::ObjectType::ServiceInstance,
            object_id: format!("{}/{index}", run.run_id),
            namespace: s.namespace.clone(),
            view: serde_json::json!({
                "namespace": s.namespace, "app": s.app, "version": s.version, "service": s.service,
                "runid": run.run_id, "instance": index, "healthy": healthy,
            }),
        };
        let scope = TenantScope::background(run.key.tenant.id().clone());
        if let Err(e) = store.append_changes(&scope, vec![change]).await {
            tracing::warn!(run = %run.run_id, instance = index, error = ?e, "cannot log a health change");
        }
    }

    /// A uniform number in `0..n` (n > 0). xorshift64*: routing needs spread, not secrecy.
    pub fn random_below(&self, n: u64) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        loop {
            let mut y = x;
            y ^= y >> 12;
            y ^= y << 25;
            y ^= y >> 27;
            match self
                .rng
                .compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let r = y.wrapping_mul(0x2545_F491_4F6C_DD1D);
                    // Multiply-shift: unbiased enough for weights up to 100 and counts of instances.
                    return ((u128::from(r) * u128::from(n)) >> 64) as u64;
                }
                Err(now) => x = now,
            }
        }
    }

    /// An index picked with probability `weights[i] / sum(weights)`; `None` when the sum is 0.
    pub fn pick_weighted(&self, weights: &[u64]) -> Option<usize> {
        let total: u64 = weights.iter().sum();
        if total == 0 {
            return None;
        }
        let mut x = self.random_below(total);
        weights.iter().position(|w| {
            if x < *w {
                return true;
            }
            x -= w;
            false
        })
    }

    /// The lock that serialises lifecycle changes of one service.
    pub fn lifecycle_lock(&self, key: &ServiceKey) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks).entry(key.clone()).or_default().clone()
    }

    /// The live run of a service version, if this server runs it.
    pub fn live(&self, key: &ServiceKey) -> Option<Arc<LiveRun>> {
        read(&self.runs)
            .get(&key.app_service())
            .and_then(|versions| versions.get(&key.service.version))
            .cloned()
    }

    /// Live runs of every version of an app's service, by version.
    pub fn live_versions(&self, key: &AppServiceKey) -> BTreeMap<String, Arc<LiveRun>> {
        read(&self.runs).get(key).cloned().unwrap_or_default()
    }

    /// Every live run (for a server shutdown).
    fn all_live(&self) -> Vec<Arc<LiveRun>> {
        read(&self.runs)
            .values()
            .flat_map(|v| v.values().cloned())
            .collect()
    }

    /// Starts `count` instances of a new run and answers once each has been spawned (or its
    /// first spawn failed). If instance 0 could not be spawned, everything started is stopped
    /// again and the run is not registered.
    pub async fn start(
        self: &Arc<Self>,
        key: ServiceKey,
        run_id: String,
        spec: ServiceSpec,
        runtime_args: BTreeMap<String, String>,
        count: usize,
    ) -> Result<Arc<LiveRun>, SpawnFailure> {
        let run = Arc::new(LiveRun {
            run_id,
            key: key.clone(),
            spec,
            runtime_args,
            slots: tokio::sync::Mutex::new(Vec::new()),
            view: RwLock::new(Arc::new(Vec::new())),
            next: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        let results = self.add_instances(&run, count).await;
        if let Some(Err(first)) = results.into_iter().next() {
            self.stop_run(&run).await;
            return Err(SpawnFailure::First(first));
        }
        write(&self.runs)
            .entry(key.app_service())
            .or_default()
            .insert(key.service.version.clone(), run.clone());
        Ok(run)
    }

    /// Adds instances up to `count` (new indexes); answers each new instance's first spawn.
    async fn add_instances(self: &Arc<Self>, run: &Arc<LiveRun>, count: usize) -> Vec<Result<(), String>> {
        let mut slots = run.slots.lock().await;
        let mut waits = Vec::new();
        for index in slots.len()..count {
            let state = Arc::new(InstanceState {
                index,
                ..InstanceState::default()
            });
            let (stop_tx, stop_rx) = watch::channel(false);
            let (first_tx, first_rx) = oneshot::channel();
            let task = tokio::spawn(supervise(
                self.clone(),
                run.clone(),
                state.clone(),
                stop_rx,
                first_tx,
            ));
            slots.push(Slot {
                state,
                stop: stop_tx,
                task,
            });
            waits.push(first_rx);
        }
        *write(&run.view) = Arc::new(slots.iter().map(|s| s.state.clone()).collect());
        drop(slots);
        let mut out = Vec::with_capacity(waits.len());
        for w in waits {
            out.push(w.await.unwrap_or_else(|_| Err("the instance task ended".into())));
        }
        out
    }

    /// Sets the instance count of a live run: new indexes are added, the highest removed.
    pub async fn scale(self: &Arc<Self>, run: &Arc<LiveRun>, count: usize) {
        let current = run.slots.lock().await.len();
        if count > current {
            for r in self.add_instances(run, count).await {
                if let Err(e) = r {
                    tracing::warn!(run = %run.run_id, "a new instance did not start: {e}");
                }
            }
            return;
        }
        let removed: Vec<Slot> = {
            let mut slots = run.slots.lock().await;
            let keep = count.min(slots.len());
            let removed = slots.split_off(keep);
            *write(&run.view) = Arc::new(slots.iter().map(|s| s.state.clone()).collect());
            removed
        };
        stop_slots(removed).await;
    }

    /// Stops every instance of a run and forgets it; answers when all processes are gone.
    pub async fn stop_run(&self, run: &Arc<LiveRun>) {
        run.stopping.store(true, Ordering::Release);
        let slots = std::mem::take(&mut *run.slots.lock().await);
        stop_slots(slots).await;
        *write(&run.view) = Arc::new(Vec::new());
        let mut runs = write(&self.runs);
        let key = run.key.app_service();
        if let Some(versions) = runs.get_mut(&key) {
            if versions
                .get(&run.key.service.version)
                .is_some_and(|r| Arc::ptr_eq(r, run))
            {
                versions.remove(&run.key.service.version);
            }
            if versions.is_empty() {
                runs.remove(&key);
            }
        }
        let work = self.settings.work_root.join(&run.run_id);
        let _ = std::fs::remove_dir_all(work);
    }

    /// Stops every process this server runs (server shutdown). The runs stay active in the
    /// store: the next start of the server closes them and starts the services again (1.4).
    pub async fn shutdown(&self) {
        let runs = self.all_live();
        let stops = runs.iter().map(|r| self.stop_run(r));
        futures_util::future::join_all(stops).await;
    }
}

async fn stop_slots(slots: Vec<Slot>) {
    for s in &slots {
        let _ = s.stop.send(true);
    }
    for s in slots {
        let _ = s.task.await;
    }
}

/// The environment of an instance, in the contract's order (1.5); later names override.
fn environment(run: &LiveRun, index: usize, port: u16) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        env.push(("PATH".to_string(), path.to_string_lossy().into_owned()));
    }
    env.extend(run.spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(run.runtime_args.iter().map(|(k, v)| (k.clone(), v.clone())));
    let s = &run.key.service;
    env.push(("PORT".into(), port.to_string()));
    env.push(("CORRAL_NAMESPACE".into(), s.namespace.clone()));
    env.push(("CORRAL_APP".into(), s.app.clone()));
    env.push(("CORRAL_APP_VERSION".into(), s.version.clone()));
    env.push(("CORRAL_SERVICE".into(), s.service.clone()));
    env.push(("CORRAL_INSTANCE".into(), index.to_string()));
    env.push(("CORRAL_RUN_ID".into(), run.run_id.clone()));
    env
}

/// Starts one process of an instance.
async fn spawn_one(sup: &Supervisor, run: &LiveRun, index: usize) -> Result<(ProcessHandle, u16), String> {
    if sup.settings.refuse_as_root {
        return Err(
            "Corral runs as root and no service_user is set: refusing to run service processes as root."
                .into(),
        );
    }
    let program = run
        .spec
        .command
        .first()
        .ok_or_else(|| "The command is empty.".to_string())?;
    let program = corral_drivers::resolve_program(program, sup.command_dirs.as_deref())?;
    let port = corral_drivers::free_loopback_port().map_err(|e| format!("No free port: {e}."))?;
    let work_dir = sup.settings.work_root.join(&run.run_id).join(index.to_string());
    prepare_root(&sup.settings.work_root.join(&run.run_id))
        .and_then(|()| corral_drivers::fresh_work_dir(&work_dir, sup.settings.run_as))
        .map_err(|e| format!("Cannot create the working directory: {e}."))?;
    let s = &run.key.service;
    let spec = ProcessSpec {
        program,
        args: run.spec.command[1..].to_vec(),
        env: environment(run, index, port),
        work_dir,
        run_as: sup.settings.run_as,
        log_prefix: format!("{}/{}/{}/{}/{index}", s.namespace, s.app, s.version, s.service),
        output_cap_bytes: sup.settings.output_cap_bytes,
    };
    let handle = sup.runner.spawn(&spec).await.map_err(|e| e.to_string())?;
    Ok((handle, port))
}

/// The run's directory (and the root above it): traversable by the service user, listable by
/// nobody else.
fn prepare_root(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    for d in [dir, dir.parent().unwrap_or(dir)] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(())
}

/// How one process's life ended.
enum Ended {
    Exited(String),
    Stopped,
}

/// The task of one instance: spawn, watch health, restart with back-off, until told to stop.
async fn supervise(
    sup: Arc<Supervisor>,
    run: Arc<LiveRun>,
    state: Arc<InstanceState>,
    mut stop: watch::Receiver<bool>,
    first: oneshot::Sender<Result<(), String>>,
) {
    let timing = sup.settings.supervision.clone();
    let mut first = Some(first);
    let mut backoff = timing.backoff_initial;
    let index = state.index;
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        let spawned = spawn_one(&sup, &run, index).await;
        let (handle, port) = match spawned {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(run = %run.run_id, instance = index, "cannot start the process: {e}");
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    if index == 0 {
                        // The run fails as a whole; `start` stops the others.
                        return;
                    }
                }
                if wait_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(timing.backoff_max);
                continue;
            }
        };
        state.port.store(port, Ordering::Release);
        state.pid.store(handle.pid, Ordering::Release);
        *lock(&state.handle) = Some(handle.clone());
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        let (ended, healthy_for) = watch_process(&sup, &run, &state, &handle, port, &mut stop).await;
        if state.healthy.swap(false, Ordering::AcqRel) {
            sup.log_health(&run, index, false).await;
        }
        state.pid.store(0, Ordering::Release);
        let _ = std::fs::remove_dir_all(sup.settings.work_root.join(&run.run_id).join(index.to_string()));
        match ended {
            Ended::Stopped => break,
            Ended::Exited(how) => {
                if healthy_for >= timing.backoff_reset {
                    backoff = timing.backoff_initial;
                }
                tracing::warn!(run = %run.run_id, instance = index, "process {how}; restarting in {} ms", backoff.as_millis());
                if wait_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(timing.backoff_max);
                state.restarts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Resolves once a stop is requested (or the run that could request it is gone).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Sleeps `d`; true when a stop came first.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop_requested(stop) => true,
    }
}

/// Health-checks a process until it exits or a stop comes (then stops it). Answers how it
/// ended and how long it had been healthy.
async fn watch_process(
    sup: &Supervisor,
    run: &LiveRun,
    state: &InstanceState,
    handle: &ProcessHandle,
    port: u16,
    stop: &mut watch::Receiver<bool>,
) -> (Ended, Duration) {
    let timing = &sup.settings.supervision;
    let path = run.spec.health_path.as_deref();
    let mut interval = timing.first_interval;
    let mut failures = 0u32;
    let mut healthy_since: Option<Instant> = None;
    let healthy_for = |since: Option<Instant>| since.map(|t| t.elapsed()).unwrap_or_default();
    loop {
        tokio::select! {
            exit = handle.wait() => {
                return (Ended::Exited(exit.to_string()), healthy_for(healthy_since));
            }
            _ = stop_requested(stop) => {
                if state.healthy.swap(false, Ordering::AcqRel) {
                    sup.log_health(run, state.index, false).await;
                }
                sup.runner.stop(handle, timing.stop_grace).await;
                return (Ended::Stopped, healthy_for(healthy_since));
            }
            _ = tokio::time::sleep(interval) => {
                if corral_drivers::health_probe(port, path, timing.timeout).await {
                    failures = 0;
                    interval = timing.interval;
                    if !state.healthy.swap(true, Ordering::AcqRel) {
                        healthy_since = Some(Instant::now());
                        tracing::info!(run = %run.run_id, instance = state.index, port, "instance is healthy");
                        sup.log_health(run, state.index, true).await;
                    }
                } else {
                    failures += 1;
                    if failures >= timing.failures && state.healthy.swap(false, Ordering::AcqRel) {
                        healthy_since = None;
                        tracing::warn!(run = %run.run_id, instance = state.index, port, "instance is unhealthy after {failures} failed checks");
                        sup.log_health(run, state.index, false).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_below_stays_in_range_and_spreads() {
        let sup = Supervisor::new(
            Arc::new(corral_drivers::LocalProcessRunner),
            ServiceSettings::default(),
            None,
        );
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let r = sup.random_below(10);
            counts[r as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn pick_weighted_follows_the_weights() {
        let sup = Supervisor::new(
            Arc::new(corral_drivers::LocalProcessRunner),
            ServiceSettings::default(),
            None,
        );
        assert_eq!(sup.pick_weighted(&[]), None);
        assert_eq!(sup.pick_weighted(&[0, 0]), None);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            counts[sup.pick_weighted(&[70, 0, 30]).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0, "{counts:?}");
        assert!((68_500..71_500).contains(&counts[0]), "{counts:?}");
    }
}
