//! One module per noun; each has a clap `Cmd` enum (its verbs, with `--help` examples) and
//! `run`. [`Noun`] lists them; [`run`] dispatches.

use clap::Subcommand;
use serde_json::Value;

use crate::App;
use crate::error::{CliError, Result, exit};

pub mod app;
pub mod cloud;
pub mod cluster;
pub mod completion;
pub mod container_manager;
pub mod context;
pub mod flavor;
pub mod host;
pub mod image;
pub mod instance;
pub mod key;
pub mod namespace;
pub mod network;
pub mod project;
pub mod query;
pub mod service;
pub mod tenant;
pub mod user;
pub mod whoami;

/// The client's nouns (`corral <noun> <verb>`).
#[derive(Subcommand, Debug)]
pub enum Noun {
    /// Tenants (superadmin): list, show, create, update, delete, adminkey.
    #[command(subcommand)]
    Tenant(tenant::Cmd),
    /// Users of your tenant (admin): list, show, create, update, delete.
    #[command(subcommand)]
    User(user::Cmd),
    /// API keys of a user (admin): list, show, create, delete.
    #[command(subcommand)]
    Key(key::Cmd),
    /// CDAP namespaces: list, show, create, update, delete.
    #[command(subcommand)]
    Namespace(namespace::Cmd),
    /// Commissaire hosts: register, list, show, status, creds, delete.
    #[command(subcommand)]
    Host(host::Cmd),
    /// Commissaire clusters: create, list, show, delete, hosts, join, leave, deploy, upgrade,
    /// restart, operation.
    #[command(subcommand)]
    Cluster(cluster::Cmd),
    /// Commissaire networks: list, show, create, delete.
    #[command(subcommand)]
    Network(network::Cmd),
    /// Commissaire container manager configurations: list, show, create, delete.
    #[command(subcommand, name = "container-manager")]
    ContainerManager(container_manager::Cmd),
    /// Clouds (configured on the server): list, show, operations.
    #[command(subcommand)]
    Cloud(cloud::Cmd),
    /// Projects of your clouds: list, show.
    #[command(subcommand)]
    Project(project::Cmd),
    /// Flavors: list, show.
    #[command(subcommand)]
    Flavor(flavor::Cmd),
    /// Images: list, show, snapshot, delete.
    #[command(subcommand)]
    Image(image::Cmd),
    /// Instances: launch, list, show, power actions, resize, rebuild, rename, delete,
    /// history, console.
    #[command(subcommand)]
    Instance(instance::Cmd),
    /// CDAP applications: deploy, list, show, versions, delete.
    #[command(subcommand)]
    App(app::Cmd),
    /// CDAP services: list, start, stop, scale, status, runs, logs, call, routes.
    #[command(subcommand)]
    Service(service::Cmd),
    /// Run SQL over your inventory (POST /query): one statement, or an interactive prompt.
    Query(query::Args),
    /// Who the current credentials are (tenant, user, role) and where they point.
    #[command(
        after_help = "Examples:\n  corral whoami\n  corral whoami -q      # user@tenant\n  corral --context prod whoami -o json"
    )]
    Whoami,
    /// Print a shell completion script.
    Completion(completion::Args),
    /// Named connection contexts: add, use, list, remove, current.
    #[command(subcommand)]
    Context(context::Cmd),
}

pub async fn run(app: &App, noun: Noun, command: fn() -> clap::Command) -> Result<()> {
    match noun {
        Noun::Tenant(c) => tenant::run(app, c).await,
        Noun::User(c) => user::run(app, c).await,
        Noun::Key(c) => key::run(app, c).await,
        Noun::Namespace(c) => namespace::run(app, c).await,
        Noun::Host(c) => host::run(app, c).await,
        Noun::Cluster(c) => cluster::run(app, c).await,
        Noun::Network(c) => network::run(app, c).await,
        Noun::ContainerManager(c) => container_manager::run(app, c).await,
        Noun::Cloud(c) => cloud::run(app, c).await,
        Noun::Project(c) => project::run(app, c).await,
        Noun::Flavor(c) => flavor::run(app, c).await,
        Noun::Image(c) => image::run(app, c).await,
        Noun::Instance(c) => instance::run(app, c).await,
        Noun::App(c) => app::run(app, c).await,
        Noun::Service(c) => service::run(app, c).await,
        Noun::Query(a) => query::run(app, a).await,
        Noun::Whoami => whoami::run(app).await,
        Noun::Completion(a) => completion::run(a, command),
        Noun::Context(c) => context::run(app, c),
    }
}

/// `KEY=VALUE` arguments (`--option`, `--meta`, `--arg`...).
pub fn kv(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

/// A JSON object from `KEY=VALUE` pairs (values that parse as JSON numbers/booleans stay
/// strings: the APIs take string maps).
pub fn object(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Accepted `(id, name)` pairs, and the error refused items make the command end with.
pub type Bulk = (Vec<(String, String)>, Option<CliError>);

/// Prints Perspective bulk results (perspective.md 5.2) and answers the accepted ids. Refused
/// items make the command fail after printing: exit 3 if any was not found, else 4.
pub fn bulk(app: &App, results: &Value, names: &[String]) -> Result<Bulk> {
    let items = results.as_array().cloned().unwrap_or_default();
    let rows: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            if let (Some(o), Some(n)) = (r.as_object_mut(), names.get(i)) {
                o.insert("name".into(), Value::String(n.clone()));
            }
            r
        })
        .collect();
    app.out.list(
        &rows,
        &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("STATUS", "/status"),
            ("MESSAGE", "/message"),
        ],
        "/id",
    );
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let mut code = exit::CONFLICT;
    for (i, r) in items.iter().enumerate() {
        let id = r["id"].as_str().unwrap_or("").to_string();
        let name = names.get(i).cloned().unwrap_or_else(|| id.clone());
        if r["status"] == 202 {
            accepted.push((id, name));
        } else {
            if r["status"] == 404 {
                code = exit::NOT_FOUND;
            }
            refused.push(format!("{name}: {}", r["message"].as_str().unwrap_or("")));
        }
    }
    let err = (!refused.is_empty()).then(|| {
        CliError::new(
            code,
            format!(
                "{} of {} refused: {}",
                refused.len(),
                items.len(),
                refused.join("; ")
            ),
        )
    });
    Ok((accepted, err))
}

/// `label (id-prefix)` for an instance or image in messages.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
