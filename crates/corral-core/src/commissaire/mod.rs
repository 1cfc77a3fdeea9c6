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
