//! Perspective (perspective.md): the configured clouds, and the instances and images tenants
//! run in them.

pub mod clouds;
pub(crate) mod instances;

use std::sync::Arc;
use std::time::Duration;

use corral_store::Store;

use crate::jobs::JobEngine;

/// The Perspective service: clouds, instances and images.
pub struct Perspective {
    pub(crate) store: Store,
    pub(crate) clouds: Arc<clouds::Clouds>,
    pub(crate) jobs: Option<Arc<JobEngine>>,
    /// `instance_transition_timeout`: the deadline of every instance and image action.
    pub(crate) instance_timeout: Duration,
}

impl Perspective {
    /// Tells the job engine to look at the queue now.
    pub(crate) fn wake_jobs(&self) {
        if let Some(j) = &self.jobs {
            j.wake();
        }
    }
}
