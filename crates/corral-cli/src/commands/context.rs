//! `corral context`: named connection settings in the contexts file (mode 0600). Keys are
//! stored, never printed.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::App;
use crate::config::{self, ConfigFile, Context};
use crate::error::{CliError, Result};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Add (or replace) a context from --addr, --api-key, --tenant, --user, --cacert,
    /// --insecure (or their CORRAL_* variables).
    #[command(
        after_help = "Examples:\n  corral context add prod --addr https://corral.example:55054 --api-key \"$KEY\" --cacert ca.pem\n  \
        CORRAL_API_KEY=crk_... corral context add dev --addr http://127.0.0.1:55054 --use"
    )]
    Add {
        name: String,
        /// Make it the current context (the first context always is).
        #[arg(long = "use")]
        make_current: bool,
    },
    /// Make a context the current one.
    #[command(after_help = "Example:\n  corral context use prod")]
    Use { name: String },
    /// List contexts (keys are shown only as set or not).
    #[command(after_help = "Example:\n  corral context list")]
    List,
    /// Remove a context.
    #[command(after_help = "Example:\n  corral context remove dev")]
    Remove { name: String },
    /// Print the current context's name.
    #[command(after_help = "Example:\n  corral context current")]
    Current,
}

pub fn run(app: &App, cmd: Cmd) -> Result<()> {
    let path = config::path()?;
    let mut file = ConfigFile::load(&path)?;
    match cmd {
        Cmd::Add { name, make_current } => {
            let g = &app.global;
            if g.addr.is_none() {
                return Err(CliError::usage("context add needs --addr (or CORRAL_ADDR)"));
            }
            let ctx = Context {
                addr: g.addr.clone(),
                api_key: g.api_key.clone(),
                tenant: g.tenant.clone(),
                user: g.user.clone(),
                ca_cert: g
                    .cacert
                    .as_ref()
                    .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
                insecure: g.insecure,
            };
            file.contexts.insert(name.clone(), ctx);
            if make_current || file.current.is_none() {
                file.current = Some(name.clone());
            }
            file.save(&path)?;
            app.out.done(
                &json!({"added": name}),
                &format!("context {name} saved in {}", path.display()),
            );
        }
        Cmd::Use { name } => {
            if !file.contexts.contains_key(&name) {
                return Err(CliError::not_found(format!("no context '{name}'")));
            }
            file.current = Some(name.clone());
            file.save(&path)?;
            app.out
                .done(&json!({"current": name}), &format!("now using context {name}"));
        }
        Cmd::List => {
            let rows: Vec<Value> = file
                .contexts
                .iter()
                .map(|(n, c)| {
                    json!({"current": if file.current.as_deref() == Some(n) { "*" } else { "" },
                        "name": n, "addr": c.addr, "tenant": c.tenant, "user": c.user,
                        "key": if c.api_key.is_some() { "set" } else { "" },
                        "cacert": c.ca_cert, "insecure": c.insecure})
                })
                .collect();
            app.out.list(
                &rows,
                &[
                    ("CURRENT", "/current"),
                    ("NAME", "/name"),
                    ("ADDR", "/addr"),
                    ("TENANT", "/tenant"),
                    ("USER", "/user"),
                    ("KEY", "/key"),
                ],
                "/name",
            );
        }
        Cmd::Remove { name } => {
            if file.contexts.remove(&name).is_none() {
                return Err(CliError::not_found(format!("no context '{name}'")));
            }
            if file.current.as_deref() == Some(name.as_str()) {
                file.current = None;
            }
            file.save(&path)?;
            app.out
                .done(&json!({"removed": name}), &format!("context {name} removed"));
        }
        Cmd::Current => match &file.current {
            Some(c) => app.out.object(&json!({"name": c}), "/name"),
            None => return Err(CliError::not_found("no current context")),
        },
    }
    Ok(())
}
