//! `corral network`: Commissaire networks (`/api/v0/network...`).

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use crate::App;
use crate::client::enc;
use crate::commands::{kv, object};
use crate::error::Result;

pub(crate) const COLS: &[(&str, &str)] = &[("NAME", "/name"), ("TYPE", "/type"), ("OPTIONS", "/options")];

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List networks.
    #[command(after_help = "Example:\n  corral network list")]
    List,
    /// Show one network.
    #[command(after_help = "Example:\n  corral network show default")]
    Show { name: String },
    /// Create a network.
    #[command(
        after_help = "Example:\n  corral network create flannel --type flannel_server --option address=192.168.152.101:8080"
    )]
    Create {
        name: String,
        /// flannel_etcd (default) or flannel_server.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Option, repeatable.
        #[arg(long = "option", value_parser = kv, value_name = "KEY=VALUE")]
        options: Vec<(String, String)>,
    },
    /// Delete a network (not `default`, not one in use).
    #[command(after_help = "Example:\n  corral network delete flannel")]
    Delete { name: String },
}

/// List/show/create/delete over one Commissaire collection, shared with container managers.
pub(crate) async fn crud(app: &App, singular: &str, plural: &str, cmd: Crud) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Crud::List => {
            let v = c.get(&format!("/api/v0/{plural}")).await?;
            // The lists answer names; show each in full.
            let mut rows = Vec::new();
            for n in v.as_array().cloned().unwrap_or_default() {
                match n {
                    Value::String(name) => {
                        rows.push(c.get(&format!("/api/v0/{singular}/{}", enc(&name))).await?)
                    }
                    other => rows.push(other),
                }
            }
            app.out.list(&rows, COLS, "/name");
        }
        Crud::Show(name) => app.out.object(
            &c.get(&format!("/api/v0/{singular}/{}", enc(&name))).await?,
            "/name",
        ),
        Crud::Create(name, kind, options) => {
            let mut b = json!({});
            if let Some(k) = kind {
                b["type"] = json!(k);
            }
            if !options.is_empty() {
                b["options"] = object(&options);
            }
            let v = c
                .json(
                    Method::PUT,
                    &format!("/api/v0/{singular}/{}", enc(&name)),
                    Some(&b),
                )
                .await?;
            app.out.object(&v, "/name");
        }
        Crud::Delete(name) => {
            c.json(
                Method::DELETE,
                &format!("/api/v0/{singular}/{}", enc(&name)),
                None,
            )
            .await?;
            app.out
                .done(&json!({"deleted": name}), &format!("{singular} {name} deleted"));
        }
    }
    Ok(())
}

pub(crate) enum Crud {
    List,
    Show(String),
    Create(String, Option<String>, Vec<(String, String)>),
    Delete(String),
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let crud_cmd = match cmd {
        Cmd::List => Crud::List,
        Cmd::Show { name } => Crud::Show(name),
        Cmd::Create { name, kind, options } => Crud::Create(name, kind, options),
        Cmd::Delete { name } => Crud::Delete(name),
    };
    crud(app, "network", "networks", crud_cmd).await
}
