//! CDAP (cdap-v3.md 1): applications, the services Corral supervises for them, and the method
//! proxy's routing.

pub(crate) mod apps;
pub(crate) mod services;
pub(crate) mod supervisor;
