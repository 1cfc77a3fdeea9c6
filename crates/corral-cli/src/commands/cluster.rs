//! `corral cluster`: Commissaire clusters, their members and rolling operations.

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use crate::client::{Client, enc};
use crate::error::{CliError, Result};
use crate::resolve::query;
use crate::wait::{Goal, Target, wait};
use crate::{App, WaitArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    Deploy,
    Upgrade,
    Restart,
}

impl Op {
    fn word(self) -> &'static str {
        match self {
            Op::Deploy => "deploy",
            Op::Upgrade => "upgrade",
            Op::Restart => "restart",
        }
    }
}

const OP_COLS: &[(&str, &str)] = &[
    ("CLUSTER", "/name"),
    ("STATUS", "/status"),
    ("STARTED", "/started_at"),
    ("FINISHED", "/finished_at"),
    ("IN-PROCESS", "/in_process"),
    ("FAILED", "/failed"),
    ("MESSAGE", "/message"),
];

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a cluster.
    #[command(after_help = "Examples:\n  corral cluster create prod\n  \
        corral cluster create prod --network flannel --container-manager prod_openshift")]
    Create {
        name: String,
        #[arg(long)]
        network: Option<String>,
        #[arg(long)]
        container_manager: Option<String>,
    },
    /// List clusters with their status and host counts.
    #[command(after_help = "Example:\n  corral cluster list")]
    List,
    /// Show one cluster.
    #[command(after_help = "Example:\n  corral cluster show prod -o yaml")]
    Show { name: String },
    /// Delete a cluster (its hosts stay registered).
    #[command(after_help = "Example:\n  corral cluster delete prod")]
    Delete { name: String },
    /// List a cluster's member addresses in join order.
    #[command(after_help = "Example:\n  corral cluster hosts prod")]
    Hosts { name: String },
    /// Add hosts to a cluster.
    #[command(after_help = "Example:\n  corral cluster join prod 10.0.0.5 10.0.0.6")]
    Join {
        name: String,
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Remove hosts from a cluster.
    #[command(after_help = "Example:\n  corral cluster leave prod 10.0.0.6")]
    Leave {
        name: String,
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Start a rolling deploy of an OSTree version.
    #[command(after_help = "Examples:\n  corral cluster deploy prod 7.2.6 --wait\n  \
        corral cluster deploy prod 7.2.6 --max-parallel 2 --wait --timeout 30m")]
    Deploy {
        name: String,
        /// The OSTree version.
        #[arg(value_name = "VERSION")]
        ostree_version: String,
        #[arg(long)]
        max_parallel: Option<i64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Start a rolling upgrade.
    #[command(after_help = "Example:\n  corral cluster upgrade prod --wait")]
    Upgrade {
        name: String,
        #[arg(long)]
        max_parallel: Option<i64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Start a rolling restart.
    #[command(after_help = "Example:\n  corral cluster restart prod --wait")]
    Restart {
        name: String,
        #[arg(long)]
        max_parallel: Option<i64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// The latest record of a rolling operation (exit 3 if none was ever started).
    #[command(after_help = "Examples:\n  corral cluster operation prod upgrade\n  \
        corral cluster operation prod restart --wait")]
    Operation {
        name: String,
        #[arg(value_enum)]
        op: Op,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

fn cluster_path(name: &str) -> String {
    format!("/api/v0/cluster/{}", enc(name))
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::Create {
            name,
            network,
            container_manager,
        } => {
            let mut b = json!({});
            if let Some(n) = network {
                b["network"] = json!(n);
            }
            if let Some(m) = container_manager {
                b["container_manager"] = json!(m);
            }
            let v = c.json(Method::PUT, &cluster_path(&name), Some(&b)).await?;
            app.out.object(&v, "/name");
        }
        Cmd::List => {
            let rows = query(
                c,
                "select name, status, network, container_manager, hosts_total, hosts_available, \
                 hosts_unavailable from clusters order by name",
                &[],
            )
            .await?;
            app.out.list(
                &rows.objects(),
                &[
                    ("NAME", "/name"),
                    ("STATUS", "/status"),
                    ("NETWORK", "/network"),
                    ("CONTAINER-MANAGER", "/container_manager"),
                    ("HOSTS", "/hosts_total"),
                    ("AVAILABLE", "/hosts_available"),
                    ("UNAVAILABLE", "/hosts_unavailable"),
                ],
                "/name",
            );
        }
        Cmd::Show { name } => app.out.object(&c.get(&cluster_path(&name)).await?, "/name"),
        Cmd::Delete { name } => {
            c.json(Method::DELETE, &cluster_path(&name), None).await?;
            app.out
                .done(&json!({"deleted": name}), &format!("cluster {name} deleted"));
        }
        Cmd::Hosts { name } => {
            let v = c.get(&format!("{}/hosts", cluster_path(&name))).await?;
            let rows: Vec<Value> = v
                .as_array()
                .map(|a| a.iter().map(|h| json!({"address": h})).collect())
                .unwrap_or_default();
            app.out
                .list_raw(&v, &rows, &[("ADDRESS", "/address")], "/address");
        }
        Cmd::Join { name, addresses } => {
            for a in &addresses {
                c.json(
                    Method::PUT,
                    &format!("{}/hosts/{}", cluster_path(&name), enc(a)),
                    None,
                )
                .await?;
            }
            let v = c.get(&cluster_path(&name)).await?;
            app.out.object(&v, "/name");
        }
        Cmd::Leave { name, addresses } => {
            for a in &addresses {
                c.json(
                    Method::DELETE,
                    &format!("{}/hosts/{}", cluster_path(&name), enc(a)),
                    None,
                )
                .await?;
            }
            let v = c.get(&cluster_path(&name)).await?;
            app.out.object(&v, "/name");
        }
        Cmd::Deploy {
            name,
            ostree_version,
            max_parallel,
            wait,
        } => {
            let mut b = json!({"version": ostree_version});
            if let Some(m) = max_parallel {
                b["max_parallel"] = json!(m);
            }
            start(app, c, &name, Op::Deploy, Some(b), &wait).await?;
        }
        Cmd::Upgrade {
            name,
            max_parallel,
            wait,
        } => {
            let b = max_parallel.map(|m| json!({"max_parallel": m}));
            start(app, c, &name, Op::Upgrade, b, &wait).await?;
        }
        Cmd::Restart {
            name,
            max_parallel,
            wait,
        } => {
            let b = max_parallel.map(|m| json!({"max_parallel": m}));
            start(app, c, &name, Op::Restart, b, &wait).await?;
        }
        Cmd::Operation { name, op, wait: w } => {
            let path = format!("{}/{}", cluster_path(&name), op.word());
            let reply = c.send(Method::GET, &path, None).await?;
            if reply.status == 204 {
                return Err(CliError::not_found(format!(
                    "cluster {name} has no {} operation yet",
                    op.word()
                )));
            }
            let v = reply.json()?;
            record(app, &v);
            if w.wait {
                follow(c, &name, op, None, &w).await?;
                print_final(app, c, &path).await?;
            }
        }
    }
    Ok(())
}

/// An operation record: a one-row table, or the object itself in json/yaml.
fn record(app: &App, v: &Value) {
    if app.out.format == crate::output::Format::Table {
        app.out.list(std::slice::from_ref(v), OP_COLS, "/name");
    } else {
        app.out.object(v, "/name");
    }
}

async fn start(app: &App, c: &Client, name: &str, op: Op, body: Option<Value>, w: &WaitArgs) -> Result<()> {
    let path = format!("{}/{}", cluster_path(name), op.word());
    let reply = c.send(Method::PUT, &path, body.as_ref()).await?;
    let rev = reply.revision();
    let v = reply.json()?;
    if !w.wait {
        record(app, &v);
        return Ok(());
    }
    let outcome = follow(c, name, op, rev, w).await;
    print_final(app, c, &path).await?;
    outcome
}

async fn print_final(app: &App, c: &Client, path: &str) -> Result<()> {
    let v = c.get(path).await?;
    record(app, &v);
    Ok(())
}

async fn follow(c: &Client, name: &str, op: Op, rev: Option<i64>, w: &WaitArgs) -> Result<()> {
    let hosts: Vec<String> = c
        .get(&format!("{}/hosts", cluster_path(name)))
        .await?
        .as_array()
        .map(|a| a.iter().filter_map(|h| h.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let t = Target::new(
        Goal::Operation { hosts },
        name.to_string(),
        format!("{} of cluster {name}", op.word()),
        format!("{}/{}", cluster_path(name), op.word()),
    );
    wait(c, vec![t], rev, &w.opts()).await.map(|_| ())
}
