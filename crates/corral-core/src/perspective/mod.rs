//! Perspective (perspective.md): the configured clouds, and the instances and images tenants
//! run in them.

pub mod clouds;
pub(crate) mod instances;
