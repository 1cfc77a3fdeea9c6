//! `corral instance`: Perspective instances. Names work wherever ids do; flavors, images
//! and projects are resolved by name through `POST /query`.

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use crate::client::{Client, enc};
use crate::commands::image::Where;
use crate::commands::{bulk, kv, object};
use crate::error::{CliError, Result};
use crate::resolve::{self, Kind, Scope, query};
use crate::wait::{Goal, Target, wait};
use crate::{App, WaitArgs};

const COLS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("STATE", "/state"),
    ("FLAVOR", "/flavor"),
    ("IMAGE", "/image"),
    ("ADDRESSES", "/addresses"),
    ("CLOUD", "/cloud_id"),
];

/// Instances to act on, and how to follow them.
#[derive(clap::Args, Debug)]
pub struct Many {
    /// Instance ids or names.
    #[arg(required = true, value_name = "INSTANCE")]
    pub instances: Vec<String>,
    #[command(flatten)]
    pub at: Where,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Launch instances (one per NAME) from a flavor and image, by name or id.
    #[command(
        after_help = "Examples:\n  corral instance launch web-1 web-2 --flavor small --image debian --wait\n  \
        corral instance launch db-1 --cloud mock --flavor large --image alpine --network private \\\n      \
        --zone zone-a --keypair ops --meta role=db"
    )]
    Launch {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[arg(long)]
        flavor: String,
        #[arg(long)]
        image: String,
        #[arg(long)]
        keypair: Option<String>,
        /// Network id or name, repeatable.
        #[arg(long = "network")]
        networks: Vec<String>,
        /// Availability zone.
        #[arg(long)]
        zone: Option<String>,
        #[arg(long = "meta", value_parser = kv, value_name = "KEY=VALUE")]
        metadata: Vec<(String, String)>,
        #[command(flatten)]
        at: Where,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List instances.
    #[command(
        after_help = "Examples:\n  corral instance list\n  corral instance list --state error -q | xargs corral instance delete"
    )]
    List {
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        at: Where,
    },
    /// Show one instance.
    #[command(after_help = "Example:\n  corral instance show web-1 -o yaml")]
    Show {
        instance: String,
        #[command(flatten)]
        at: Where,
    },
    /// Start stopped instances.
    #[command(after_help = "Example:\n  corral instance start web-1 web-2 --wait")]
    Start(Many),
    /// Shut instances down.
    #[command(after_help = "Example:\n  corral instance shutdown web-1 --wait")]
    Shutdown(Many),
    /// Reboot instances.
    #[command(after_help = "Example:\n  corral instance reboot web-1 --wait --timeout 2m")]
    Reboot(Many),
    /// Hard-reboot instances.
    #[command(after_help = "Example:\n  corral instance hard-reboot web-1 --wait")]
    HardReboot(Many),
    /// Pause instances.
    #[command(after_help = "Example:\n  corral instance pause web-1 --wait")]
    Pause(Many),
    /// Resume paused or suspended instances.
    #[command(after_help = "Example:\n  corral instance resume web-1 --wait")]
    Resume(Many),
    /// Suspend instances.
    #[command(after_help = "Example:\n  corral instance suspend web-1 --wait")]
    Suspend(Many),
    /// Resize instances to another flavor of their project.
    #[command(after_help = "Example:\n  corral instance resize web-1 --flavor large --wait")]
    Resize {
        #[arg(long)]
        flavor: String,
        #[command(flatten)]
        many: Many,
    },
    /// Rebuild instances from another image.
    #[command(after_help = "Example:\n  corral instance rebuild web-1 --image alpine --wait")]
    Rebuild {
        #[arg(long)]
        image: String,
        #[command(flatten)]
        many: Many,
    },
    /// Rename an instance.
    #[command(after_help = "Example:\n  corral instance rename web-1 frontend-1")]
    Rename {
        instance: String,
        new_name: String,
        #[command(flatten)]
        at: Where,
    },
    /// Delete instances.
    #[command(after_help = "Example:\n  corral instance delete web-1 web-2 --wait")]
    Delete(Many),
    /// An instance's actions: who, what, when, outcome, error.
    #[command(after_help = "Example:\n  corral instance history web-1")]
    History {
        instance: String,
        #[command(flatten)]
        at: Where,
    },
    /// Recent serial console output of an instance.
    #[command(after_help = "Example:\n  corral instance console web-1")]
    Console {
        instance: String,
        #[command(flatten)]
        at: Where,
    },
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::Launch {
            names,
            flavor,
            image,
            keypair,
            networks,
            zone,
            metadata,
            at,
            wait: w,
        } => {
            let project = resolve::project(c, at.project.as_deref(), at.cloud.as_deref()).await?;
            let scope = Scope {
                project: Some(project.clone()),
                cloud: at.cloud.clone(),
            };
            let flavor_id = resolve::resolve(c, Kind::Flavor, &flavor, &scope).await?;
            let image_id = resolve::resolve(c, Kind::Image, &image, &scope).await?;
            let mut nets = Vec::new();
            for n in &networks {
                nets.push(json!({"id": network(c, n, &project).await?}));
            }
            let items: Vec<Value> = names
                .iter()
                .map(|name| {
                    let mut item = json!({"name": name, "projectId": project,
                        "flavor": {"id": flavor_id}, "image": {"id": image_id}});
                    if let Some(k) = &keypair {
                        item["keypair"] = json!({"name": k});
                    }
                    if !nets.is_empty() {
                        item["networks"] = json!(nets);
                    }
                    if let Some(z) = &zone {
                        item["availabilityZone"] = json!({"name": z});
                    }
                    if !metadata.is_empty() {
                        item["metadata"] = object(&metadata);
                    }
                    item
                })
                .collect();
            let reply = c.send(Method::POST, "/instances", Some(&json!(items))).await?;
            let rev = reply.revision();
            let v = reply.json()?;
            let (accepted, refused) = bulk(app, &v, &names)?;
            follow(c, accepted, Goal::Instance(vec!["launched", "shutoff"]), rev, &w).await?;
            if let Some(e) = refused {
                return Err(e);
            }
        }
        Cmd::List { state, at } => {
            let scope = at.scope(c).await?;
            let rows = query(
                c,
                "select id, name, state, flavor_id, image_id, addresses, cloud_id, project_id, created \
                 from instances where (:s: = '' or state = :s:) and (:p: = '' or project_id = :p:) \
                 and (:c: = '' or cloud_id = :c:) order by name, id",
                &[
                    ("s", state.as_deref().unwrap_or("")),
                    ("p", scope.project.as_deref().unwrap_or("")),
                    ("c", at.cloud.as_deref().unwrap_or("")),
                ],
            )
            .await?;
            let names = names_of(c).await?;
            let objs: Vec<Value> = rows
                .objects()
                .into_iter()
                .map(|mut o| {
                    for (field, idf) in [("flavor", "flavor_id"), ("image", "image_id")] {
                        let id = o[idf].as_str().unwrap_or("").to_string();
                        o[field] = json!(names.get(&id).cloned().unwrap_or(id));
                    }
                    o
                })
                .collect();
            app.out.list(&objs, COLS, "/id");
        }
        Cmd::Show { instance, at } => {
            let id = resolve::resolve(c, Kind::Instance, &instance, &at.scope(c).await?).await?;
            app.out
                .object(&c.get(&format!("/instances/{}", enc(&id))).await?, "/id");
        }
        Cmd::Start(m) => action(app, c, "start", m, vec!["launched"]).await?,
        Cmd::Shutdown(m) => action(app, c, "shutdown", m, vec!["shutoff"]).await?,
        Cmd::Reboot(m) => action(app, c, "reboot", m, vec!["launched"]).await?,
        Cmd::HardReboot(m) => action(app, c, "hard-reboot", m, vec!["launched"]).await?,
        Cmd::Pause(m) => action(app, c, "pause", m, vec!["paused"]).await?,
        Cmd::Resume(m) => action(app, c, "resume", m, vec!["launched"]).await?,
        Cmd::Suspend(m) => action(app, c, "suspend", m, vec!["suspended"]).await?,
        Cmd::Resize { flavor, many } => {
            let id = resolve::resolve(c, Kind::Flavor, &flavor, &many.at.scope(c).await?).await?;
            action(app, c, &format!("resize/{}", enc(&id)), many, vec!["launched"]).await?;
        }
        Cmd::Rebuild { image, many } => {
            let id = resolve::resolve(c, Kind::Image, &image, &many.at.scope(c).await?).await?;
            action(app, c, &format!("rebuild/{}", enc(&id)), many, vec!["launched"]).await?;
        }
        Cmd::Rename {
            instance,
            new_name,
            at,
        } => {
            let id = resolve::resolve(c, Kind::Instance, &instance, &at.scope(c).await?).await?;
            let mut body = serde_json::Map::new();
            body.insert(id, json!(new_name));
            let v = c
                .json(Method::PUT, "/instances/rename", Some(&Value::Object(body)))
                .await?;
            let (_, refused) = bulk(app, &v, std::slice::from_ref(&instance))?;
            if let Some(e) = refused {
                return Err(e);
            }
        }
        Cmd::Delete(m) => {
            let ids = resolve::instances(c, &m.instances, &m.at.scope(c).await?).await?;
            let reply = c
                .send(Method::POST, "/instances/delete", Some(&json!(ids)))
                .await?;
            let rev = reply.revision();
            let v = reply.json()?;
            let (accepted, refused) = bulk(app, &v, &m.instances)?;
            follow(c, accepted, Goal::Gone, rev, &m.wait).await?;
            if let Some(e) = refused {
                return Err(e);
            }
        }
        Cmd::History { instance, at } => {
            let id = resolve::resolve(c, Kind::Instance, &instance, &at.scope(c).await?).await?;
            let v = c.get(&format!("/instances/{}/history", enc(&id))).await?;
            app.out.list(
                v.as_array().map(Vec::as_slice).unwrap_or(&[]),
                &[
                    ("AT", "/at"),
                    ("ACTOR", "/actor"),
                    ("ACTION", "/action"),
                    ("OUTCOME", "/outcome"),
                    ("ERROR", "/error"),
                    ("REQUEST-ID", "/requestId"),
                ],
                "/action",
            );
        }
        Cmd::Console { instance, at } => {
            let id = resolve::resolve(c, Kind::Instance, &instance, &at.scope(c).await?).await?;
            let v = c.get(&format!("/instances/{}/console", enc(&id))).await?;
            app.out.text(&v, v["output"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}

/// One power action (`PUT /instances/{action}`) over many instances, then `--wait`.
async fn action(app: &App, c: &Client, what: &str, m: Many, done: Vec<&'static str>) -> Result<()> {
    let ids = resolve::instances(c, &m.instances, &m.at.scope(c).await?).await?;
    let reply = c
        .send(Method::PUT, &format!("/instances/{what}"), Some(&json!(ids)))
        .await?;
    let rev = reply.revision();
    let v = reply.json()?;
    let (accepted, refused) = bulk(app, &v, &m.instances)?;
    follow(c, accepted, Goal::Instance(done), rev, &m.wait).await?;
    match refused {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn follow(
    c: &Client,
    accepted: Vec<(String, String)>,
    goal: Goal,
    rev: Option<i64>,
    w: &WaitArgs,
) -> Result<()> {
    if !w.wait || accepted.is_empty() {
        return Ok(());
    }
    let targets = accepted
        .into_iter()
        .map(|(id, name)| {
            let label = if name == id {
                format!("instance {}", super::short(&id))
            } else {
                format!("instance {name}")
            };
            Target::new(
                goal.clone(),
                id.clone(),
                label,
                format!("/instances/{}", enc(&id)),
            )
        })
        .collect();
    wait(c, targets, rev, &w.opts()).await.map(|_| ())
}

/// A network of `project` by id or name.
async fn network(c: &Client, n: &str, project: &str) -> Result<String> {
    let rows = query(
        c,
        "select id from networks where (id = :n: or name = :n:) and project_id = :p:",
        &[("n", n), ("p", project)],
    )
    .await?;
    match rows.rows.as_slice() {
        [one] => Ok(one[0].as_str().unwrap_or("").to_string()),
        [] => Err(CliError::not_found(format!(
            "no network '{n}' in project {project}"
        ))),
        _ => Err(CliError::usage(format!(
            "network name '{n}' is ambiguous: use its id"
        ))),
    }
}

/// Flavor and image names by id, for readable lists.
async fn names_of(c: &Client) -> Result<std::collections::HashMap<String, String>> {
    let mut m = std::collections::HashMap::new();
    for sql in ["select id, name from flavors", "select id, name from images"] {
        for r in query(c, sql, &[]).await?.rows {
            if let (Some(id), Some(name)) = (
                r.first().and_then(Value::as_str),
                r.get(1).and_then(Value::as_str),
            ) {
                m.insert(id.to_string(), name.to_string());
            }
        }
    }
    Ok(m)
}
