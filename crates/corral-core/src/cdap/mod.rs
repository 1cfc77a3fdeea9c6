//! CDAP (cdap-v3.md 1): applications, the services Corral supervises for them, and the method
//! proxy's routing.

pub(crate) mod apps;
pub(crate) mod services;
pub(crate) mod supervisor;

use std::sync::Arc;

use corral_store::Store;

use crate::CoreSettings;

/// The CDAP service: applications, supervised services, their routing.
pub struct Cdap {
    pub(crate) store: Store,
    pub(crate) settings: Arc<CoreSettings>,
    /// The service processes this server runs.
    pub(crate) services: Arc<supervisor::Supervisor>,
    pub(crate) route_cache: services::RouteCache,
}
