//! `corral cloud`: clouds (configured on the server, read through `POST /query`).

use clap::Subcommand;
use serde_json::{Value, json};

use crate::App;
use crate::error::{CliError, Result};
use crate::resolve::query;

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List the clouds you have projects in.
    #[command(after_help = "Example:\n  corral cloud list")]
    List,
    /// Show a cloud with its projects.
    #[command(after_help = "Example:\n  corral cloud show mock -o yaml")]
    Show { id: String },
    /// The operations each cloud type supports (GET /operations).
    #[command(after_help = "Example:\n  corral cloud operations -o json")]
    Operations,
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::List => {
            let rows = query(c, "select id, type from clouds order by id", &[]).await?;
            app.out
                .list(&rows.objects(), &[("ID", "/id"), ("TYPE", "/type")], "/id");
        }
        Cmd::Show { id } => {
            let rows = query(c, "select id, type from clouds where id = :id:", &[("id", &id)]).await?;
            let mut cloud = rows
                .objects()
                .into_iter()
                .next()
                .ok_or_else(|| CliError::not_found(format!("no cloud named '{id}'")))?;
            let projects = query(
                c,
                "select id, name from projects where cloud_id = :id: order by name",
                &[("id", &id)],
            )
            .await?;
            cloud["projects"] = Value::Array(projects.objects());
            app.out.object(&cloud, "/id");
        }
        Cmd::Operations => {
            let v = c.get("/operations").await?;
            let rows: Vec<Value> = v
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, ops)| json!({"cloudType": k, "operations": ops}))
                        .collect()
                })
                .unwrap_or_default();
            if app.out.format == crate::output::Format::Table && !app.out.quiet {
                app.out.list(
                    &rows,
                    &[("CLOUD-TYPE", "/cloudType"), ("OPERATIONS", "/operations")],
                    "/cloudType",
                );
            } else {
                app.out.object(&v, "");
            }
        }
    }
    Ok(())
}
