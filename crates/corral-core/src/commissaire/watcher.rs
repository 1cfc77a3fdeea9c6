//! The health watcher (commissaire-v0.md 6.2): one per deployment. Every replica runs this
//! loop, but only the holder of the `host-watcher` singleton lease checks hosts, so several
//! replicas on one PostgreSQL check each host once per interval. A check is an SSH login that
//! runs `true`; a failure marks the host `failed` with the reason, a success on a failed host
//! restores the status it should have (registering it again with its cluster's container
//! manager). The watcher never contacts an address outside the operator's allow-list.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_store::WatchedHost;
use corral_types::time::now_ms;
use corral_types::{TenantId, TenantScope};
use tokio::sync::{Semaphore, watch};

use crate::hosts::HostOps;

const SINGLETON: &str = "host-watcher";
/// How often the loop looks for due hosts; checks are spread by each host's own last check.
const TICK: Duration = Duration::from_millis(500);
/// Most checks in flight at once.
const PARALLEL: usize = 32;

/// Recent failures and checks in flight, per tenant, for `GET /api/v0/status` (a tenant sees
/// only its own hosts' failures).
#[derive(Default)]
pub struct WatcherState {
    inner: Mutex<PerTenant>,
}

#[derive(Default)]
struct PerTenant {
    errors: HashMap<TenantId, VecDeque<String>>,
    in_use: HashMap<TenantId, i64>,
}

impl WatcherState {
    fn error(&self, tenant: &TenantId, msg: String) {
        if let Ok(mut s) = self.inner.lock() {
            let e = s.errors.entry(tenant.clone()).or_default();
            if e.len() >= 10 {
                e.pop_front();
            }
            e.push_back(msg);
        }
    }

    fn busy(&self, tenant: &TenantId, delta: i64) {
        if let Ok(mut s) = self.inner.lock() {
            *s.in_use.entry(tenant.clone()).or_default() += delta;
        }
    }

    /// The last (at most 10) failures of the tenant's hosts and its checks in flight.
    pub fn for_tenant(&self, tenant: &TenantId) -> (Vec<String>, i64) {
        self.inner
            .lock()
            .map(|s| {
                let errors = s
                    .errors
                    .get(tenant)
                    .map(|e| e.iter().cloned().collect())
                    .unwrap_or_default();
                (errors, s.in_use.get(tenant).copied().unwrap_or(0))
            })
            .unwrap_or_default()
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(
    ops: Arc<HostOps>,
    owner: String,
    state: Arc<WatcherState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = ops.settings.watcher_interval.max(Duration::from_secs(1));
    let lease = (interval * 3).max(Duration::from_secs(10));
    let slots = Arc::new(Semaphore::new(PARALLEL));
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = now_ms();
        let held = ops
            .store
            .acquire_singleton(SINGLETON, &owner, now, now + lease.as_millis() as i64)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "watcher lease");
                None
            });
        if held.is_some() {
            let before = now - interval.as_millis() as i64;
            match ops.store.hosts_due_for_check(before, PARALLEL as i64).await {
                Ok(due) => {
                    for w in due {
                        if !ops.settings.policy.allows(&w.host.address) {
                            continue;
                        }
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        let (ops, state) = (ops.clone(), state.clone());
                        tokio::spawn(async move {
                            let tenant = w.tenant_id.clone();
                            state.busy(&tenant, 1);
                            check(&ops, &state, w).await;
                            state.busy(&tenant, -1);
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watcher could not list hosts"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn check(ops: &HostOps, state: &WatcherState, w: WatchedHost) {
    // The watcher acts for no caller: it checks every tenant's hosts on its own.
    let scope = TenantScope::background(w.tenant_id.clone());
    let (tenant, host) = (&scope, &w.host);
    let now = now_ms();
    let result = ops.run(tenant, host, "true", ops.settings.connect_timeout).await;
    let outcome = match result {
        Ok(_) if host.status == "failed" => {
            let settled = match &host.cluster {
                Some(c) => ops.join_container_manager(tenant, c, &host.address).await,
                None => Ok(("disassociated", String::new(), false)),
            };
            match settled {
                Ok((status, message, registered)) => {
                    tracing::info!(host = %host.address, %status, "host recovered");
                    ops.store
                        .record_host_check(tenant, &host.address, status, &message, Some(registered), now)
                        .await
                }
                Err(e) => Err(e),
            }
        }
        Ok(_) => {
            ops.store
                .record_host_check(tenant, &host.address, &host.status, &host.message, None, now)
                .await
        }
        Err(e) => {
            let message = e.to_string();
            if host.status != "failed" {
                tracing::warn!(host = %host.address, %message, "host failed its health check");
            }
            state.error(tenant.id(), format!("{}: {message}", host.address));
            ops.store
                .record_host_check(tenant, &host.address, "failed", &message, None, now)
                .await
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(host = %host.address, error = %e, "recording a health check failed");
    }
}
