//! Commissaire (commissaire-v0.md): hosts reached over SSH, clusters and their rolling
//! operations, networks and container managers, the health watcher, and Coopr's cluster RPC
//! calls that read them.

pub mod address;
pub(crate) mod clusters;
pub(crate) mod coopr_rpc;
pub mod hosts;
pub(crate) mod named;
pub(crate) mod networks;
pub(crate) mod operations;
pub mod watcher;

use std::sync::Arc;

use corral_store::Store;
use corral_types::commissaire::{MachineryStatus, StoreStatus, WorkerInfo, WorkerStatus};
use corral_types::{Access, Error, OpCtx};

use crate::CoreSettings;
use crate::crypto::SecretBox;
use crate::jobs::JobEngine;

/// The Commissaire service: what host, cluster and operation work needs, and nothing else.
pub struct Commissaire {
    pub(crate) store: Store,
    pub(crate) settings: Arc<CoreSettings>,
    pub(crate) secrets: Arc<SecretBox>,
    /// The host machinery (SSH transport, OS profiles); `None` until configured.
    pub(crate) hosts: Option<Arc<hosts::HostOps>>,
    pub(crate) jobs: Option<Arc<JobEngine>>,
    pub(crate) watcher: Arc<watcher::WatcherState>,
}

impl Commissaire {
    /// Tells the job engine to look at the queue now.
    pub(crate) fn wake_jobs(&self) {
        if let Some(j) = &self.jobs {
            j.wake();
        }
    }

    /// The health watcher's loop (run it once per process; the singleton lease picks the one
    /// that works). `None` without host machinery.
    pub fn watcher(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Option<impl Future<Output = ()> + use<>> {
        let ops = self.hosts.clone()?;
        let owner = self
            .jobs
            .as_ref()
            .map(|j| j.owner().to_string())
            .unwrap_or_default();
        Some(watcher::run(ops, owner, self.watcher.clone(), shutdown))
    }

    /// `GET /api/v0/status` (commissaire-v0.md 5.15).
    pub async fn commissaire_status(&self, ctx: &OpCtx) -> Result<MachineryStatus, Error> {
        let scope = ctx.require(Access::Read)?;
        if !self.store.ping().await {
            return Err(Error::Unavailable("Storage is unavailable.".into()));
        }
        let (queued, running, watched) = self.store.host_machinery_counts(&scope).await?;
        let (errors, in_use) = self.watcher.for_tenant(scope.id());
        let up = if self.hosts.is_some() { "OK" } else { "FAILED" };
        Ok(MachineryStatus {
            investigator: WorkerStatus {
                info: WorkerInfo {
                    errors: Vec::new(),
                    in_use: running,
                    size: queued,
                },
                status: up.to_string(),
            },
            store: StoreStatus {
                status: "OK".to_string(),
            },
            watcher: WorkerStatus {
                info: WorkerInfo {
                    errors,
                    in_use,
                    size: watched,
                },
                status: up.to_string(),
            },
        })
    }
}
