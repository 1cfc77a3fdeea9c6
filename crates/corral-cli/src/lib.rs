//! The `corral` command-line client, as a library the `corral` binary mounts beside `serve`.
//!
//! Layers, bottom up: [`client`] (HTTP, TLS, credentials) -> [`config`] (contexts file,
//! environment, flags) -> [`output`] (table, json, yaml, ids) and [`resolve`] (names -> ids
//! through `POST /query`) and [`wait`] (change feed or polling) -> [`commands`], one module per
//! noun. Adding a noun is one file in `commands/` and one line in [`Noun`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub mod client;
pub mod commands;
pub mod config;
pub mod error;
pub mod output;
pub mod resolve;
pub mod wait;

pub use commands::Noun;

use crate::client::{Client, Connection};
use crate::error::{CliError, Result};
use crate::output::{Format, Printer};

/// Options every client command takes (flags win over `CORRAL_*` variables, which win over
/// the selected context).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Server address, e.g. http://127.0.0.1:55054 or https://corral.example:55054.
    #[arg(
        long,
        global = true,
        env = "CORRAL_ADDR",
        value_name = "URL",
        help_heading = "Client options"
    )]
    pub addr: Option<String>,
    /// API key or access token (never printed; prefer a context or the variable).
    #[arg(
        long,
        global = true,
        env = "CORRAL_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        help_heading = "Client options"
    )]
    pub api_key: Option<String>,
    /// Tenant of the key (sent as Coopr-TenantID; the server checks it matches the key).
    #[arg(
        long,
        global = true,
        env = "CORRAL_TENANT",
        value_name = "TENANT",
        help_heading = "Client options"
    )]
    pub tenant: Option<String>,
    /// User of the key (sent as Coopr-UserID; the server checks it matches the key).
    #[arg(
        long,
        global = true,
        env = "CORRAL_USER",
        value_name = "USER",
        help_heading = "Client options"
    )]
    pub user: Option<String>,
    /// Named context from the contexts file [default: the current context].
    #[arg(
        long,
        global = true,
        env = "CORRAL_CONTEXT",
        value_name = "NAME",
        help_heading = "Client options"
    )]
    pub context: Option<String>,
    /// PEM file of the CA that signed the server's certificate (https).
    #[arg(long, global = true, value_name = "FILE", help_heading = "Client options")]
    pub cacert: Option<PathBuf>,
    /// Accept any server certificate (https; for tests only).
    #[arg(long, global = true, help_heading = "Client options")]
    pub insecure: bool,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table,
          help_heading = "Client options")]
    pub output: Format,
    /// Print only ids (one per line), for scripts and pipes.
    #[arg(short = 'q', long, global = true, help_heading = "Client options")]
    pub quiet: bool,
}

/// What a command runs with: the connection, the printer, the global flags.
pub struct App {
    pub global: GlobalArgs,
    pub out: Printer,
    client: Option<Client>,
    client_error: Option<CliError>,
}

impl App {
    /// The API client, or the reason there is none (no address...).
    pub fn client(&self) -> Result<&Client> {
        match (&self.client, &self.client_error) {
            (Some(c), _) => Ok(c),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Err(CliError::usage("no server address")),
        }
    }
}

/// Common `--wait` / `--timeout` flags of commands that start asynchronous work.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WaitArgs {
    /// Follow the work until it ends; exit 1 naming what failed. Uses the server's change
    /// feed when it has one, else polls.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (exit 1), e.g. 90s, 5m.
    #[arg(long, value_parser = wait::parse_duration, default_value = "10m", value_name = "DURATION")]
    pub timeout: Duration,
    /// Poll the GET endpoints even when the server has a change feed.
    #[arg(long)]
    pub poll: bool,
}

impl WaitArgs {
    pub fn opts(&self) -> wait::WaitOpts {
        wait::WaitOpts::new(self.timeout, self.poll)
    }
}

/// Builds the connection from flags/environment (already merged by clap) over the context.
pub fn connection(global: &GlobalArgs) -> Result<Connection> {
    let file = config::ConfigFile::load(&config::path()?)?;
    let ctx = file
        .select(global.context.as_deref())?
        .map(|(_, c)| c)
        .unwrap_or_default();
    // The tenant and user describe the key: a key from a flag or the environment does not
    // inherit the context's (they would make the server refuse it as someone else's).
    let (ctx_tenant, ctx_user) = if global.api_key.is_some() {
        (None, None)
    } else {
        (ctx.tenant, ctx.user)
    };
    Ok(Connection {
        addr: global.addr.clone().or(ctx.addr).unwrap_or_default(),
        api_key: global.api_key.clone().or(ctx.api_key),
        tenant: global.tenant.clone().or(ctx_tenant),
        user: global.user.clone().or(ctx_user),
        ca_cert: global.cacert.clone().or(ctx.ca_cert),
        insecure: global.insecure || ctx.insecure,
    })
}

/// Runs one client command and answers the process exit code; errors go to stderr with the
/// server's message and request id. `command` builds the whole CLI (for completions).
pub fn run(global: GlobalArgs, noun: Noun, command: fn() -> clap::Command) -> ExitCode {
    let out = Printer::new(global.output, global.quiet);
    let (client, client_error) = match connection(&global).and_then(Client::new) {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e)),
    };
    let app = App {
        global,
        out,
        client,
        client_error,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral: cannot start the async runtime: {e}");
            return ExitCode::from(error::exit::FAILURE);
        }
    };
    match runtime.block_on(commands::run(&app, noun, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corral: {e}");
            ExitCode::from(e.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The whole command tree as the binary mounts it, for clap's own consistency checks.
    #[derive(clap::Parser)]
    #[command(name = "corral", version, propagate_version = true)]
    struct Cli {
        #[command(flatten)]
        global: super::GlobalArgs,
        #[command(subcommand)]
        noun: super::Noun,
    }

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command a user runs has examples in its `--help`.
    #[test]
    fn every_command_has_examples() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            let subs: Vec<&clap::Command> =
                cmd.get_subcommands().filter(|c| c.get_name() != "help").collect();
            if subs.is_empty() {
                let help = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                if !help.contains("Example") {
                    missing.push(path);
                }
            } else {
                for s in subs {
                    walk(s, &path, missing);
                }
            }
        }
        let mut missing = Vec::new();
        let root = Cli::command();
        for noun in root.get_subcommands().filter(|c| c.get_name() != "help") {
            walk(noun, "corral", &mut missing);
        }
        assert!(missing.is_empty(), "commands without examples: {missing:?}");
    }
}
