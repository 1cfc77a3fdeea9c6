//! Integration tests of corral-query, in one test binary (one link step).

// Test helpers outside #[test] functions may fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod corpus;
mod fixture;
mod fuzz;
mod hostile;
mod shell;
