//! The change feed's vocabulary (docs/events.md): what kind of object changed, how, and the
//! mark a request leaves so its answer can name the revision its changes committed at.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::ctx::Role;

/// The objects the change log covers. Names are the feed's `type` and the prefix of its
/// `kind` (`instance.updated`); they are part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    User,
    Key,
    Host,
    Cluster,
    Network,
    ContainerManager,
    Operation,
    OperationStep,
    Instance,
    Image,
    Namespace,
    App,
    Service,
    ServiceRun,
    ServiceInstance,
}

impl ObjectType {
    pub const ALL: [ObjectType; 15] = [
        ObjectType::User,
        ObjectType::Key,
        ObjectType::Host,
        ObjectType::Cluster,
        ObjectType::Network,
        ObjectType::ContainerManager,
        ObjectType::Operation,
        ObjectType::OperationStep,
        ObjectType::Instance,
        ObjectType::Image,
        ObjectType::Namespace,
        ObjectType::App,
        ObjectType::Service,
        ObjectType::ServiceRun,
        ObjectType::ServiceInstance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::User => "user",
            ObjectType::Key => "key",
            ObjectType::Host => "host",
            ObjectType::Cluster => "cluster",
            ObjectType::Network => "network",
            ObjectType::ContainerManager => "container_manager",
            ObjectType::Operation => "operation",
            ObjectType::OperationStep => "operation_step",
            ObjectType::Instance => "instance",
            ObjectType::Image => "image",
            ObjectType::Namespace => "namespace",
            ObjectType::App => "app",
            ObjectType::Service => "service",
            ObjectType::ServiceRun => "service_run",
            ObjectType::ServiceInstance => "service_instance",
        }
    }

    pub fn parse(s: &str) -> Option<ObjectType> {
        ObjectType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// May a caller of `role` see changes of this type? Users and their keys are what
    /// `/v2/users...` shows, which is for admins only (README 2.2); everything else is
    /// readable by every role.
    pub fn readable_by(self, role: Role) -> bool {
        match self {
            ObjectType::User | ObjectType::Key => role >= Role::Admin,
            _ => true,
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an object changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Created,
    Updated,
    Deleted,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Created => "created",
            Verb::Updated => "updated",
            Verb::Deleted => "deleted",
        }
    }
}

/// The highest revision a request's changes committed at, shared between the request's
/// context (which the store writes through) and the API (which answers it as
/// `X-Corral-Revision`). Clones share the mark.
#[derive(Debug, Clone, Default)]
pub struct ChangeMark(Arc<AtomicI64>);

impl ChangeMark {
    pub fn new() -> ChangeMark {
        ChangeMark::default()
    }

    /// Records that a change committed at `revision`.
    pub fn note(&self, revision: i64) {
        self.0.fetch_max(revision, Ordering::Relaxed);
    }

    /// The highest revision noted, if any change committed.
    pub fn get(&self) -> Option<i64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            r => Some(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_users_are_for_admins() {
        for t in ObjectType::ALL {
            assert_eq!(ObjectType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ObjectType::parse("Instance"), None);
        assert!(!ObjectType::User.readable_by(Role::User));
        assert!(ObjectType::Key.readable_by(Role::Admin));
        assert!(ObjectType::Instance.readable_by(Role::Viewer));
    }

    #[test]
    fn a_mark_keeps_the_highest_revision() {
        let m = ChangeMark::new();
        assert_eq!(m.get(), None);
        let c = m.clone();
        c.note(7);
        m.note(3);
        assert_eq!(m.get(), Some(7));
    }
}
