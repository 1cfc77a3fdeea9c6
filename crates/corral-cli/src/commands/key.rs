//! `corral key`: API keys of a user (`/v2/users/{user}/apikeys`, admin only).

use clap::Subcommand;
use hyper::Method;
use serde_json::json;

use crate::App;
use crate::client::enc;
use crate::error::Result;

const COLS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("PREFIX", "/prefix"),
    ("DESCRIPTION", "/description"),
    ("CREATED", "/createTime"),
    ("EXPIRES", "/expireTime"),
    ("LAST-USED", "/lastUsedTime"),
];

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List a user's keys (never the secrets).
    #[command(after_help = "Example:\n  corral key list alice")]
    List {
        #[arg(id = "key_owner", value_name = "USER")]
        user: String,
    },
    /// Show one key.
    #[command(after_help = "Example:\n  corral key show alice 5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e")]
    Show {
        #[arg(id = "key_owner", value_name = "USER")]
        user: String,
        id: String,
    },
    /// Create a key; the secret is printed once.
    #[command(after_help = "Examples:\n  corral key create alice --description ci\n  \
        KEY=$(corral key create alice -q)")]
    Create {
        /// The user (the global --user is the caller's own).
        #[arg(id = "key_owner", value_name = "USER")]
        user: String,
        #[arg(long)]
        description: Option<String>,
        /// Expiry, milliseconds since the epoch.
        #[arg(long, value_name = "MS")]
        expire_time: Option<i64>,
    },
    /// Delete a key (and the tokens minted from it).
    #[command(after_help = "Example:\n  corral key delete alice 5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e")]
    Delete {
        #[arg(id = "key_owner", value_name = "USER")]
        user: String,
        id: String,
    },
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::List { user } => {
            let v = c.get(&format!("/v2/users/{}/apikeys", enc(&user))).await?;
            app.out
                .list(v.as_array().map(Vec::as_slice).unwrap_or(&[]), COLS, "/id");
        }
        Cmd::Show { user, id } => {
            let v = c
                .get(&format!("/v2/users/{}/apikeys/{}", enc(&user), enc(&id)))
                .await?;
            app.out.object(&v, "/id");
        }
        Cmd::Create {
            user,
            description,
            expire_time,
        } => {
            let mut b = json!({});
            if let Some(d) = description {
                b["description"] = json!(d);
            }
            if let Some(e) = expire_time {
                b["expireTime"] = json!(e);
            }
            let v = c
                .json(
                    Method::POST,
                    &format!("/v2/users/{}/apikeys", enc(&user)),
                    Some(&b),
                )
                .await?;
            // -q prints the secret itself: the one thing a script needs from this answer.
            if app.out.quiet {
                app.out.object(&v, "/key");
            } else {
                app.out.object(&v, "/id");
            }
        }
        Cmd::Delete { user, id } => {
            c.json(
                Method::DELETE,
                &format!("/v2/users/{}/apikeys/{}", enc(&user), enc(&id)),
                None,
            )
            .await?;
            app.out
                .done(&json!({"deleted": id}), &format!("key {id} deleted"));
        }
    }
    Ok(())
}
