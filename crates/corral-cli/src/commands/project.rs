//! `corral project`: projects of the tenant's clouds (read through `POST /query`).

use clap::Subcommand;
use serde_json::Value;

use crate::App;
use crate::error::{CliError, Result};
use crate::resolve::{self, query};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List projects.
    #[command(after_help = "Examples:\n  corral project list\n  corral project list --cloud mock")]
    List {
        #[arg(long)]
        cloud: Option<String>,
    },
    /// Show a project (by id, name, or its cloud's id) with flavors, networks, zones, quota.
    #[command(
        after_help = "Examples:\n  corral project show --cloud mock\n  corral project show 71609a7f-0641-36cc-b704-db3b5b76c78e -o json"
    )]
    Show {
        project: Option<String>,
        #[arg(long)]
        cloud: Option<String>,
    },
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::List { cloud } => {
            let rows = query(
                c,
                "select id, name, cloud_id, cloud_type, last_updated from projects \
                 where (:c: = '' or cloud_id = :c:) order by cloud_id, name",
                &[("c", cloud.as_deref().unwrap_or(""))],
            )
            .await?;
            app.out.list(
                &rows.objects(),
                &[
                    ("ID", "/id"),
                    ("NAME", "/name"),
                    ("CLOUD", "/cloud_id"),
                    ("TYPE", "/cloud_type"),
                ],
                "/id",
            );
        }
        Cmd::Show { project, cloud } => {
            let id = resolve::project(c, project.as_deref(), cloud.as_deref()).await?;
            let p = [("p", id.as_str())];
            let mut obj = query(
                c,
                "select id, name, cloud_id, cloud_type, last_updated from projects where id = :p:",
                &p,
            )
            .await?
            .objects()
            .into_iter()
            .next()
            .ok_or_else(|| CliError::not_found(format!("no project '{id}'")))?;
            for (field, sql) in [
                (
                    "flavors",
                    "select id, name, vcpus, ram, root_disk from flavors where project_id = :p: order by name",
                ),
                (
                    "networks",
                    "select id, name, state, is_shared from networks where project_id = :p: order by name",
                ),
                (
                    "availabilityZones",
                    "select name from availability_zones where project_id = :p: order by name",
                ),
                (
                    "keypairs",
                    "select name, fingerprint from keypairs where project_id = :p: order by name",
                ),
                (
                    "quota",
                    "select instances, vcpus, ram, disk, ips, security_groups, volumes, keypairs \
                     from project_quota where project_id = :p:",
                ),
            ] {
                let rows = query(c, sql, &p).await?.objects();
                obj[field] = if field == "quota" {
                    rows.into_iter().next().unwrap_or(Value::Null)
                } else {
                    Value::Array(rows)
                };
            }
            app.out.object(&obj, "/id");
        }
    }
    Ok(())
}
