//! Integration tests of corral-query, in one test binary (one link step).

mod corpus;
mod fixture;
mod fuzz;
mod hostile;
