//! `corral container-manager`: Commissaire container manager configurations.

use clap::Subcommand;

use crate::App;
use crate::commands::kv;
use crate::commands::network::{Crud, crud};
use crate::error::Result;

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List container managers.
    #[command(after_help = "Example:\n  corral container-manager list")]
    List,
    /// Show one container manager.
    #[command(after_help = "Example:\n  corral container-manager show prod_openshift")]
    Show { name: String },
    /// Create a container manager configuration.
    #[command(
        after_help = "Examples:\n  corral container-manager create local --type trivial\n  \
        corral container-manager create prod_openshift --type openshift --option apiserver=https://10.0.0.1:8443/api/"
    )]
    Create {
        name: String,
        /// openshift or trivial.
        #[arg(long = "type")]
        kind: String,
        /// Option, repeatable.
        #[arg(long = "option", value_parser = kv, value_name = "KEY=VALUE")]
        options: Vec<(String, String)>,
    },
    /// Delete a container manager (not one in use).
    #[command(after_help = "Example:\n  corral container-manager delete local")]
    Delete { name: String },
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let crud_cmd = match cmd {
        Cmd::List => Crud::List,
        Cmd::Show { name } => Crud::Show(name),
        Cmd::Create { name, kind, options } => Crud::Create(name, Some(kind), options),
        Cmd::Delete { name } => Crud::Delete(name),
    };
    crud(app, "containermanager", "containermanagers", crud_cmd).await
}
