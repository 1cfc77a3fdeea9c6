//! `corral user`: users of the caller's tenant (`/v2/users`, admin only).

use clap::Subcommand;
use hyper::Method;
use serde_json::json;

use crate::App;
use crate::client::enc;
use crate::error::Result;

const COLS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("ROLE", "/role"),
    ("TENANT", "/tenant"),
    ("DESCRIPTION", "/description"),
];

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List the tenant's users.
    #[command(after_help = "Example:\n  corral user list")]
    List,
    /// Show one user.
    #[command(after_help = "Example:\n  corral user show alice -o json")]
    Show { id: String },
    /// Create a user (it has no key yet: `corral key create USER`).
    #[command(after_help = "Example:\n  corral user create alice --role user --description Ops")]
    Create {
        id: String,
        /// admin, user or viewer.
        #[arg(long, default_value = "user")]
        role: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Change a user's role or description.
    #[command(after_help = "Example:\n  corral user update alice --role viewer")]
    Update {
        id: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a user, its keys and tokens.
    #[command(after_help = "Example:\n  corral user delete alice")]
    Delete { id: String },
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::List => {
            let v = c.get("/v2/users").await?;
            app.out
                .list(v.as_array().map(Vec::as_slice).unwrap_or(&[]), COLS, "/id");
        }
        Cmd::Show { id } => app
            .out
            .object(&c.get(&format!("/v2/users/{}", enc(&id))).await?, "/id"),
        Cmd::Create {
            id,
            role,
            description,
        } => {
            let mut b = json!({"id": id, "role": role});
            if let Some(d) = description {
                b["description"] = json!(d);
            }
            let v = c.json(Method::POST, "/v2/users", Some(&b)).await?;
            app.out.object(&v, "/id");
        }
        Cmd::Update {
            id,
            role,
            description,
        } => {
            let mut b = json!({});
            if let Some(r) = role {
                b["role"] = json!(r);
            }
            if let Some(d) = description {
                b["description"] = json!(d);
            }
            let v = c
                .json(Method::PUT, &format!("/v2/users/{}", enc(&id)), Some(&b))
                .await?;
            app.out.object(&v, "/id");
        }
        Cmd::Delete { id } => {
            c.json(Method::DELETE, &format!("/v2/users/{}", enc(&id)), None)
                .await?;
            app.out
                .done(&json!({"deleted": id}), &format!("user {id} deleted"));
        }
    }
    Ok(())
}
