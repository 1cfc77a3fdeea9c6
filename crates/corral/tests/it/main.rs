//! Corral's integration suite: one test binary (one link step), the real server on
//! `127.0.0.1:0`, every test on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod helpers;
mod host_list;
mod hosts;
mod instances;
mod qemu_instances;

mod apps;
mod auth;
mod bulk;
mod changes;
mod cli;
mod commissaire_networks;
mod console;
mod console_e2e;
mod conventions;
mod events;
mod hardening;
mod isolation;
mod jobs;
mod namespaces;
mod operations;
mod process;
mod query;
mod replicas;
mod robust;
mod roles;
mod services;
mod tenants;
mod users;
