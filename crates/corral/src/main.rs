//! `corral`: the server, its admin commands, and the API client (`corral <noun> <verb>`,
//! crate `corral-cli`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use corral::config::{LogFormat, Overrides, Settings};
use corral::server;

/// glibc's malloc kept the memory that bursts of work (a bulk action over 10,000 instances, a
/// reload of the read model) had freed in its per-thread arenas: at 100,000 instances the
/// server's resident size was three to four times its live heap, and malloc/free took nearly
/// a third of its CPU (docs/performance.md, "Memory"). mimalloc returns freed pages to the
/// system and allocates with less work per call. Built without its transparent-huge-page
/// advice (`no_thp`): freed memory is returned in small pieces, and every 2 MiB page that
/// got broken up was zeroed whole again on the next touch, up to a third of a bulk request's
/// CPU (docs/performance.md, "Run F").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Corral: a self-hosted, multi-tenant infrastructure control plane.
///
/// One server answers the Coopr (/v2), Commissaire (/api/v0), Perspective (/query,
/// /instances, /images) and CDAP (/v3) APIs on one port, over one tenant and identity store.
/// The same binary is its command-line client: `corral <noun> <verb>` (docs/cli.md).
#[derive(Parser)]
#[command(
    name = "corral",
    version,
    propagate_version = true,
    after_help = "Examples:\n  corral serve --data-dir /var/lib/corral\n  \
    corral context add local --addr http://127.0.0.1:55054 --api-key \"$(cat corral-data/bootstrap-key)\"\n  \
    corral whoami\n  corral instance launch web-1 --flavor small --image debian --wait"
)]
struct Cli {
    #[command(flatten)]
    global: corral_cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    ///
    /// Settings come from built-in defaults, then the TOML file given by --config, then
    /// CORRAL_* environment variables (CORRAL_DATA_DIR, CORRAL_BOOTSTRAP_KEY, ...), then these
    /// flags. On first start with an empty store Corral creates tenant `superadmin`, its user
    /// `admin` and an API key, written to DATA_DIR/bootstrap-key (mode 0600).
    Serve(ServeArgs),
    /// Print the OpenAPI document of this build's API (JSON) and exit.
    Openapi,
    #[command(flatten)]
    Client(corral_cli::Noun),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address and port to listen on [default: 0.0.0.0:55054].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory for Corral's state (SQLite database, bootstrap key) [default: ./corral-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database: sqlite://FILE or postgres://USER:PASS@HOST/DB [default: the SQLite file DIR/corral.db].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// TOML file with settings (every setting may also come from CORRAL_<NAME> variables).
    #[arg(long, value_name = "FILE", env = "CORRAL_CONFIG")]
    config: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log lines as readable text (human) or one JSON object per line (json) [default: human].
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => match corral_api::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("corral: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => serve(args),
        Command::Client(noun) => corral_cli::run(cli.global, noun, Cli::command),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        log_format: args.log_format,
    };
    let settings = match Settings::load(args.config.as_deref(), &overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("corral: {e}");
            return ExitCode::from(2);
        }
    };
    corral::init_logging(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let running = server::start(&settings).await?;
        server::shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        running
            .shutdown(Duration::from_secs(settings.shutdown_grace))
            .await
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("corral: {e:#}");
            ExitCode::FAILURE
        }
    }
}
