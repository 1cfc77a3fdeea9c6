//! `corral tenant`: Coopr tenants (`/v2/tenants`, superadmin only).

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use crate::App;
use crate::client::enc;
use crate::error::Result;

const COLS: &[(&str, &str)] = &[
    ("NAME", "/name"),
    ("WORKERS", "/workers"),
    ("MAX-CLUSTERS", "/maxClusters"),
    ("MAX-NODES", "/maxNodes"),
    ("DESCRIPTION", "/description"),
];

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List tenants.
    #[command(after_help = "Example:\n  corral tenant list -o yaml")]
    List,
    /// Show one tenant.
    #[command(after_help = "Example:\n  corral tenant show acme")]
    Show { name: String },
    /// Create a tenant; prints its admin user's API key (shown once).
    #[command(after_help = "Examples:\n  corral tenant create acme --workers 10\n  \
        corral tenant create acme --workers 10 --max-nodes 100 -o json | jq -r .admin.apikey.key")]
    Create {
        name: String,
        #[command(flatten)]
        spec: Spec,
        /// Copy the superadmin tenant's networks and container managers.
        #[arg(long)]
        bootstrap: bool,
    },
    /// Change a tenant's settings (values not given stay as they are).
    #[command(after_help = "Example:\n  corral tenant update acme --workers 20")]
    Update {
        name: String,
        #[command(flatten)]
        spec: Spec,
    },
    /// Delete a tenant (its workers must be 0).
    #[command(after_help = "Example:\n  corral tenant update acme --workers 0 && corral tenant delete acme")]
    Delete { name: String },
    /// Issue a new API key to the tenant's `admin` user (recovery).
    #[command(after_help = "Example:\n  corral tenant adminkey acme --description recovery")]
    Adminkey {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct Spec {
    /// Concurrent background job slots (required by create).
    #[arg(long)]
    workers: Option<i64>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    max_clusters: Option<i64>,
    #[arg(long)]
    max_nodes: Option<i64>,
}

/// The tenant object: `base` (the current one, for update) with the given values over it.
fn body(name: &str, s: &Spec, base: Value) -> Value {
    let mut t = if base.is_object() { base } else { json!({}) };
    t["name"] = json!(name);
    if let Some(w) = s.workers {
        t["workers"] = json!(w);
    }
    if let Some(d) = &s.description {
        t["description"] = json!(d);
    }
    if let Some(m) = s.max_clusters {
        t["maxClusters"] = json!(m);
    }
    if let Some(m) = s.max_nodes {
        t["maxNodes"] = json!(m);
    }
    t
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::List => {
            let v = c.get("/v2/tenants").await?;
            app.out
                .list(v.as_array().map(Vec::as_slice).unwrap_or(&[]), COLS, "/name");
        }
        Cmd::Show { name } => {
            let v = c.get(&format!("/v2/tenants/{}", enc(&name))).await?;
            app.out.object(&v, "/name");
        }
        Cmd::Create {
            name,
            spec,
            bootstrap,
        } => {
            if spec.workers.is_none() {
                return Err(crate::error::CliError::usage("tenant create needs --workers N"));
            }
            let b = json!({"tenant": body(&name, &spec, Value::Null), "bootstrap": bootstrap});
            let v = c.json(Method::POST, "/v2/tenants", Some(&b)).await?;
            if app.out.quiet {
                app.out.object(&v, "/tenant/name");
            } else {
                app.out.done(
                    &v,
                    &format!(
                        "tenant {name} created\nadmin user: admin\nadmin key:  {}  (shown once: store it, e.g. `corral context add`)",
                        v["admin"]["apikey"]["key"].as_str().unwrap_or("")
                    ),
                );
            }
        }
        Cmd::Update { name, spec } => {
            // PUT replaces the whole tenant: start from the current one.
            let current = c.get(&format!("/v2/tenants/{}", enc(&name))).await?;
            let b = json!({"tenant": body(&name, &spec, current)});
            let v = c
                .json(Method::PUT, &format!("/v2/tenants/{}", enc(&name)), Some(&b))
                .await?;
            app.out.object(&v, "/name");
        }
        Cmd::Delete { name } => {
            c.json(Method::DELETE, &format!("/v2/tenants/{}", enc(&name)), None)
                .await?;
            app.out
                .done(&json!({"deleted": name}), &format!("tenant {name} deleted"));
        }
        Cmd::Adminkey { name, description } => {
            let b = description.map(|d| json!({"description": d}));
            let v = c
                .json(
                    Method::POST,
                    &format!("/v2/tenants/{}/adminkey", enc(&name)),
                    b.as_ref(),
                )
                .await?;
            if app.out.quiet {
                app.out.object(&v, "/apikey/key");
            } else {
                app.out.done(
                    &v,
                    &format!(
                        "new key for {name}/admin: {}  (shown once)",
                        v["apikey"]["key"].as_str().unwrap_or("")
                    ),
                );
            }
        }
    }
    Ok(())
}
