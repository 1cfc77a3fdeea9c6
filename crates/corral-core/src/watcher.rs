//! The health watcher (commissaire-v0.md 6.2): one per deployment. Every replica runs this
//! loop, but only the holder of the `host-watcher` singleton lease checks hosts, so several
//! replicas on one PostgreSQL check each host once per interval. A check is an SSH login that
//! runs `true`; a failure marks the host `failed` with the reason, a success on a failed host
//! restores the status it should have (registering it again with its cluster's container
//! manager). The watcher never contacts an address outside the operator's allow-list.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_store::WatchedHost;
use corral_types::time::now_ms;
use tokio::sync::{Semaphore, watch};

use crate::hosts::HostOps;

const SINGLETON: &str = "host-watcher";
/// How often the loop looks for due hosts; checks are spread by each host's own last check.
const TICK: Duration = Duration::from_millis(500);
/// Most checks in flight at once.
const PARALLEL: usize = 32;

/// Recent failures and load figures for `GET /api/v0/status`.
#[derive(Default)]
pub struct WatcherState {
    pub errors: Mutex<VecDeque<String>>,
    pub in_use: std::sync::atomic::AtomicI64,
}

impl WatcherState {
    fn error(&self, msg: String) {
        if let Ok(mut e) = self.errors.lock() {
            if e.len() >= 10 {
                e.pop_front();
            }
            e.push_back(msg);
        }
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
                            state.in_use.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            check(&ops, &state, w).await;
                            state.in_use.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
    let (tenant, host) = (&w.tenant_id, &w.host);
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
            state.error(format!("{}: {message}", host.address));
            ops.store
                .record_host_check(tenant, &host.address, "failed", &message, None, now)
                .await
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(host = %host.address, error = %e, "recording a health check failed");
    }
}
