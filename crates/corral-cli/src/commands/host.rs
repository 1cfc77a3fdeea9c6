//! `corral host`: Commissaire hosts (`/api/v0/host...`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use hyper::Method;
use serde_json::json;

use crate::client::enc;
use crate::error::{CliError, Result};
use crate::wait::{Goal, Target, wait};
use crate::{App, WaitArgs};

const COLS: &[(&str, &str)] = &[
    ("ADDRESS", "/address"),
    ("STATUS", "/status"),
    ("OS", "/os"),
    ("CPUS", "/cpus"),
    ("MEMORY-KB", "/memory"),
    ("SPACE-KB", "/space"),
    ("LAST-CHECK", "/last_check"),
];

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Register a host by address with the SSH private key Corral uses to reach it; Corral
    /// investigates and bootstraps it in the background.
    #[command(
        after_help = "Examples:\n  corral host register 192.168.100.50 --key-file ~/.ssh/id_ed25519\n  \
        corral host register 10.0.0.7 --key-file key --cluster prod --remote-user core --wait"
    )]
    Register {
        address: String,
        /// PEM or OpenSSH private key file (sent base64-encoded; stored encrypted).
        #[arg(long, value_name = "FILE")]
        key_file: std::path::PathBuf,
        /// SSH user [server default: root].
        #[arg(long)]
        remote_user: Option<String>,
        /// Join this cluster as soon as the host is ready.
        #[arg(long)]
        cluster: Option<String>,
        /// Informational name of the inventory that owns the record.
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List hosts.
    #[command(after_help = "Examples:\n  corral host list\n  corral host list -q")]
    List,
    /// Show one host.
    #[command(after_help = "Example:\n  corral host show 192.168.100.50")]
    Show { address: String },
    /// A host's status: its own and its container manager's view, with the last failure.
    #[command(after_help = "Example:\n  corral host status 192.168.100.50 -o json")]
    Status { address: String },
    /// A host's SSH credentials (admin only; prints the key).
    #[command(after_help = "Example:\n  corral host creds 192.168.100.50 -o json")]
    Creds { address: String },
    /// Delete a host (it leaves its cluster).
    #[command(after_help = "Example:\n  corral host delete 192.168.100.50")]
    Delete { address: String },
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::Register {
            address,
            key_file,
            remote_user,
            cluster,
            source,
            wait: w,
        } => {
            let key = std::fs::read(&key_file)
                .map_err(|e| CliError::usage(format!("{}: {e}", key_file.display())))?;
            let mut b = json!({"ssh_priv_key": STANDARD.encode(key)});
            if let Some(u) = remote_user {
                b["remote_user"] = json!(u);
            }
            if let Some(cl) = cluster {
                b["cluster"] = json!(cl);
            }
            if let Some(s) = source {
                b["source"] = json!(s);
            }
            let path = format!("/api/v0/host/{}", enc(&address));
            let reply = c.send(Method::PUT, &path, Some(&b)).await?;
            let rev = reply.revision();
            let v = reply.json()?;
            app.out.object(&v, "/address");
            if w.wait {
                let addr = v["address"].as_str().unwrap_or(&address).to_string();
                let t = Target::new(
                    Goal::Host,
                    addr.clone(),
                    format!("host {addr}"),
                    format!("/api/v0/host/{}", enc(&addr)),
                );
                wait(c, vec![t], rev, &w.opts()).await?;
            }
        }
        Cmd::List => {
            let v = c.get("/api/v0/hosts").await?;
            app.out
                .list(v.as_array().map(Vec::as_slice).unwrap_or(&[]), COLS, "/address");
        }
        Cmd::Show { address } => app.out.object(
            &c.get(&format!("/api/v0/host/{}", enc(&address))).await?,
            "/address",
        ),
        Cmd::Status { address } => {
            let v = c.get(&format!("/api/v0/host/{}/status", enc(&address))).await?;
            app.out.object(&v, "/host/status");
        }
        Cmd::Creds { address } => {
            let v = c.get(&format!("/api/v0/host/{}/creds", enc(&address))).await?;
            app.out.object(&v, "/address");
        }
        Cmd::Delete { address } => {
            c.json(Method::DELETE, &format!("/api/v0/host/{}", enc(&address)), None)
                .await?;
            app.out
                .done(&json!({"deleted": address}), &format!("host {address} deleted"));
        }
    }
    Ok(())
}
