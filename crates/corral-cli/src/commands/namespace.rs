//! `corral namespace`: CDAP namespaces (`/v3/namespaces`).

use clap::Subcommand;
use hyper::Method;
use serde_json::json;

use crate::App;
use crate::client::enc;
use crate::commands::{kv, object};
use crate::error::Result;

const COLS: &[(&str, &str)] = &[
    ("NAME", "/name"),
    ("DESCRIPTION", "/description"),
    ("CONFIG", "/config"),
];

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List namespaces.
    #[command(after_help = "Example:\n  corral namespace list")]
    List,
    /// Show one namespace.
    #[command(after_help = "Example:\n  corral namespace show dev -o yaml")]
    Show { name: String },
    /// Create a namespace (an existing one answers as is).
    #[command(
        after_help = "Example:\n  corral namespace create dev --description 'Development' --config scheduler.queue.name=dev"
    )]
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Free-form setting, repeatable.
        #[arg(long, value_parser = kv, value_name = "KEY=VALUE")]
        config: Vec<(String, String)>,
    },
    /// Change a namespace's description or settings.
    #[command(after_help = "Example:\n  corral namespace update dev --description 'Dev team'")]
    Update {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Setting, repeatable; given at all, they replace the whole config map.
        #[arg(long, value_parser = kv, value_name = "KEY=VALUE")]
        config: Vec<(String, String)>,
    },
    /// Delete a namespace with its apps and runs (`default` is emptied, not deleted).
    #[command(after_help = "Example:\n  corral namespace delete dev")]
    Delete { name: String },
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::List => {
            let v = c.get("/v3/namespaces").await?;
            app.out
                .list(v.as_array().map(Vec::as_slice).unwrap_or(&[]), COLS, "/name");
        }
        Cmd::Show { name } => app
            .out
            .object(&c.get(&format!("/v3/namespaces/{}", enc(&name))).await?, "/name"),
        Cmd::Create {
            name,
            description,
            config,
        } => {
            let b = props(description, &config);
            c.json(Method::PUT, &format!("/v3/namespaces/{}", enc(&name)), Some(&b))
                .await?;
            let v = c.get(&format!("/v3/namespaces/{}", enc(&name))).await?;
            app.out.object(&v, "/name");
        }
        Cmd::Update {
            name,
            description,
            config,
        } => {
            let b = props(description, &config);
            c.json(
                Method::PUT,
                &format!("/v3/namespaces/{}/properties", enc(&name)),
                Some(&b),
            )
            .await?;
            let v = c.get(&format!("/v3/namespaces/{}", enc(&name))).await?;
            app.out.object(&v, "/name");
        }
        Cmd::Delete { name } => {
            c.json(
                Method::DELETE,
                &format!("/v3/unrecoverable/namespaces/{}", enc(&name)),
                None,
            )
            .await?;
            app.out
                .done(&json!({"deleted": name}), &format!("namespace {name} deleted"));
        }
    }
    Ok(())
}

fn props(description: Option<String>, config: &[(String, String)]) -> serde_json::Value {
    let mut b = json!({});
    if let Some(d) = description {
        b["description"] = json!(d);
    }
    if !config.is_empty() {
        b["config"] = object(config);
    }
    b
}
