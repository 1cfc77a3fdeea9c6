//! Corral's vocabulary: typed ids and names, roles and the operation context, the wire views
//! of the API, and the one public error enum.
//!
//! Architecture invariant: this crate does no I/O and knows nothing of HTTP or SQL. It is the
//! bottom of the dependency graph; every other crate depends on it.

pub mod cdap;
pub mod changes;
pub mod commissaire;
pub mod ctx;
pub mod error;
pub mod ids;
pub mod instances;
pub mod perspective;
pub mod query;
#[cfg(feature = "sqlx")]
mod sql;
pub mod time;
pub mod views;

pub use changes::{ChangeMark, ObjectType, Verb};
pub use ctx::TenantScope;
pub use ctx::{Access, OpCtx, Principal, Role, TenantRef};
pub use error::{Error, Parsed, Result};
pub use ids::{
    ApiKeyId, CloudId, CloudKind, ClusterName, HostAddress, ImageId, InstanceId, JobId, JobKind,
    NamespaceName, OperationKind, OperationStatus, TenantId, TenantName, UserName,
};
pub use instances::{ImageState, InstanceState};
