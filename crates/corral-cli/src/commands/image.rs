//! `corral image`: Perspective images (list through `POST /query`, the rest `/images`).

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use crate::client::enc;
use crate::commands::{bulk, kv, object};
use crate::error::Result;
use crate::resolve::{self, Kind, Scope, query};
use crate::wait::{Goal, Target, wait};
use crate::{App, WaitArgs};

const COLS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("STATE", "/state"),
    ("CLOUD", "/cloud_id"),
    ("CREATED", "/created"),
];

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Where {
    /// Cloud id, to narrow names.
    #[arg(long)]
    pub cloud: Option<String>,
    /// Project id or name, to narrow names.
    #[arg(long)]
    pub project: Option<String>,
}

impl Where {
    pub async fn scope(&self, c: &crate::client::Client) -> Result<Scope> {
        let project = match &self.project {
            Some(p) => Some(resolve::project(c, Some(p), self.cloud.as_deref()).await?),
            None => None,
        };
        Ok(Scope {
            project,
            cloud: self.cloud.clone(),
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List images.
    #[command(after_help = "Examples:\n  corral image list\n  corral image list --state saved -o json")]
    List {
        #[command(flatten)]
        at: Where,
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one image by id or name.
    #[command(after_help = "Example:\n  corral image show debian --cloud mock")]
    Show {
        image: String,
        #[command(flatten)]
        at: Where,
    },
    /// Snapshot an instance into a new image.
    #[command(
        after_help = "Examples:\n  corral image snapshot web-1 --name web-1-snap --wait\n  \
        corral image snapshot web-1 --name golden --meta region=eu"
    )]
    Snapshot {
        /// Instance id or name.
        instance: String,
        #[arg(long)]
        name: String,
        #[arg(long = "meta", value_parser = kv, value_name = "KEY=VALUE")]
        metadata: Vec<(String, String)>,
        #[command(flatten)]
        at: Where,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete images.
    #[command(after_help = "Example:\n  corral image delete web-1-snap --wait")]
    Delete {
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        at: Where,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::List { at, state } => {
            let scope = at.scope(c).await?;
            let (sql, p) = match &scope.project {
                Some(p) => (
                    "select i.id as id, i.name as name, i.state as state, i.cloud_id as cloud_id, \
                     i.created as created, i.checksum as checksum from images i \
                     join project_images pi on pi.image_id = i.id where pi.project_id = :p: \
                     and (:s: = '' or i.state = :s:) order by i.name",
                    p.clone(),
                ),
                None => (
                    "select id, name, state, cloud_id, created, checksum from images \
                     where (:c: = '' or cloud_id = :c:) and (:s: = '' or state = :s:) order by name",
                    String::new(),
                ),
            };
            let rows = query(
                c,
                sql,
                &[
                    ("p", &p),
                    ("c", at.cloud.as_deref().unwrap_or("")),
                    ("s", state.as_deref().unwrap_or("")),
                ],
            )
            .await?;
            app.out.list(&rows.objects(), COLS, "/id");
        }
        Cmd::Show { image, at } => {
            let id = resolve::resolve(c, Kind::Image, &image, &at.scope(c).await?).await?;
            app.out
                .object(&c.get(&format!("/images/{}", enc(&id))).await?, "/id");
        }
        Cmd::Snapshot {
            instance,
            name,
            metadata,
            at,
            wait: w,
        } => {
            let iid = resolve::resolve(c, Kind::Instance, &instance, &at.scope(c).await?).await?;
            let mut item = json!({"name": name, "instanceId": iid});
            if !metadata.is_empty() {
                item["metadata"] = object(&metadata);
            }
            let reply = c.send(Method::POST, "/images", Some(&json!([item]))).await?;
            let rev = reply.revision();
            let v = reply.json()?;
            let (accepted, refused) = bulk(app, &v, std::slice::from_ref(&name))?;
            if let Some(e) = refused {
                return Err(e);
            }
            if w.wait {
                let targets = accepted
                    .into_iter()
                    .map(|(id, n)| {
                        Target::new(
                            Goal::Image,
                            id.clone(),
                            format!("image {n}"),
                            format!("/images/{id}"),
                        )
                    })
                    .collect();
                wait(c, targets, rev, &w.opts()).await?;
            }
        }
        Cmd::Delete { images, at, wait: w } => {
            let scope = at.scope(c).await?;
            let mut ids = Vec::new();
            for i in &images {
                ids.push(resolve::resolve(c, Kind::Image, i, &scope).await?);
            }
            let reply = c.send(Method::POST, "/images/delete", Some(&json!(ids))).await?;
            let rev = reply.revision();
            let v: Value = reply.json()?;
            let (accepted, refused) = bulk(app, &v, &images)?;
            if w.wait {
                let targets = accepted
                    .into_iter()
                    .map(|(id, n)| {
                        Target::new(
                            Goal::Gone,
                            id.clone(),
                            format!("image {n}"),
                            format!("/images/{id}"),
                        )
                    })
                    .collect();
                wait(c, targets, rev, &w.opts()).await?;
            }
            if let Some(e) = refused {
                return Err(e);
            }
        }
    }
    Ok(())
}
