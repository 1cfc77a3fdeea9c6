//! `corral flavor`: flavors of the tenant's projects (read through `POST /query`).

use clap::Subcommand;

use crate::App;
use crate::error::{CliError, Result};
use crate::resolve::{self, Kind, Scope, query};

const COLS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("VCPUS", "/vcpus"),
    ("RAM-MB", "/ram"),
    ("DISK-GB", "/root_disk"),
    ("CLOUD", "/cloud_id"),
    ("PROJECT", "/project_id"),
];

/// Joined columns are reported as `f.id`: each is aliased back to its plain name.
const SELECT: &str = "select f.id as id, f.name as name, f.vcpus as vcpus, f.ram as ram, \
    f.root_disk as root_disk, f.ephemeral_disk as ephemeral_disk, f.has_swap as has_swap, \
    f.is_public as is_public, f.notes as notes, p.cloud_id as cloud_id, f.project_id as project_id \
    from flavors f join projects p on p.id = f.project_id";

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List flavors.
    #[command(after_help = "Examples:\n  corral flavor list\n  corral flavor list --cloud mock -q")]
    List {
        #[arg(long)]
        cloud: Option<String>,
        /// Project id or name.
        #[arg(long)]
        project: Option<String>,
    },
    /// Show one flavor by id or name.
    #[command(after_help = "Example:\n  corral flavor show small --cloud mock")]
    Show {
        flavor: String,
        #[arg(long)]
        cloud: Option<String>,
        #[arg(long)]
        project: Option<String>,
    },
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::List { cloud, project } => {
            let p = match project {
                Some(p) => resolve::project(c, Some(&p), cloud.as_deref()).await?,
                None => String::new(),
            };
            let sql = format!(
                "{SELECT} where (:c: = '' or p.cloud_id = :c:) and (:p: = '' or f.project_id = :p:) \
                 order by p.cloud_id, f.ram, f.name"
            );
            let rows = query(c, &sql, &[("c", cloud.as_deref().unwrap_or("")), ("p", &p)]).await?;
            app.out.list(&rows.objects(), COLS, "/id");
        }
        Cmd::Show {
            flavor,
            cloud,
            project,
        } => {
            let p = match project {
                Some(p) => Some(resolve::project(c, Some(&p), cloud.as_deref()).await?),
                None => None,
            };
            let id = resolve::resolve(c, Kind::Flavor, &flavor, &Scope { project: p, cloud }).await?;
            let rows = query(c, &format!("{SELECT} where f.id = :id:"), &[("id", &id)]).await?;
            let obj = rows
                .objects()
                .into_iter()
                .next()
                .ok_or_else(|| CliError::not_found(format!("no flavor '{flavor}'")))?;
            app.out.object(&obj, "/id");
        }
    }
    Ok(())
}
