//! `corral app`: CDAP applications (`/v3/namespaces/{ns}/apps`).

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use crate::App;
use crate::client::enc;
use crate::error::{CliError, Result};

#[derive(clap::Args, Debug, Clone)]
pub struct Ns {
    /// CDAP namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

impl Ns {
    pub fn apps(&self) -> String {
        format!("/v3/namespaces/{}/apps", enc(&self.namespace))
    }
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Deploy an application version from a JSON specification file (`-` = stdin).
    #[command(
        after_help = "Examples:\n  corral app deploy purchase.json --name PurchaseHistory\n  \
        corral app deploy purchase.json -n dev --name PurchaseHistory --app-version 2.0.0\n\n\
        The file is the body of PUT /v3/namespaces/{ns}/apps/{app} (docs/cdap.md):\n  \
        {\"version\": \"1.0.0\", \"services\": [{\"name\": \"api\", \"command\": [\"/usr/bin/api\"], \"instances\": 2}]}\n\
        A \"name\" field in the file is used when --name is absent."
    )]
    Deploy {
        file: std::path::PathBuf,
        /// App name [default: the file's "name" field].
        #[arg(long)]
        name: Option<String>,
        /// Version [default: the file's "version", else -SNAPSHOT].
        #[arg(long = "app-version", id = "app_version", value_name = "VERSION")]
        version: Option<String>,
        #[command(flatten)]
        ns: Ns,
    },
    /// List the namespace's apps (current versions).
    #[command(after_help = "Example:\n  corral app list -n dev")]
    List {
        #[command(flatten)]
        ns: Ns,
    },
    /// Show an app's current (or a given) version.
    #[command(after_help = "Example:\n  corral app show PurchaseHistory --app-version 1.0.0 -o yaml")]
    Show {
        app: String,
        #[arg(long = "app-version", id = "app_version", value_name = "VERSION")]
        version: Option<String>,
        #[command(flatten)]
        ns: Ns,
    },
    /// List an app's versions, oldest first.
    #[command(after_help = "Example:\n  corral app versions PurchaseHistory")]
    Versions {
        app: String,
        #[command(flatten)]
        ns: Ns,
    },
    /// Delete an app (all versions) or one version.
    #[command(
        after_help = "Examples:\n  corral app delete PurchaseHistory\n  corral app delete PurchaseHistory --app-version 1.0.0"
    )]
    Delete {
        app: String,
        #[arg(long = "app-version", id = "app_version", value_name = "VERSION")]
        version: Option<String>,
        #[command(flatten)]
        ns: Ns,
    },
}

const COLS: &[(&str, &str)] = &[
    ("NAME", "/name"),
    ("VERSION", "/version"),
    ("DESCRIPTION", "/description"),
];

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::Deploy {
            file,
            name,
            version,
            ns,
        } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .map_err(|e| CliError::usage(format!("stdin: {e}")))?;
                s
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| CliError::usage(format!("{}: {e}", file.display())))?
            };
            let mut spec: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::usage(format!("{}: not JSON: {e}", file.display())))?;
            let Some(obj) = spec.as_object_mut() else {
                return Err(CliError::usage(format!("{}: not a JSON object", file.display())));
            };
            // `name` is ours, not the spec's (the server rejects unknown fields).
            let from_file = obj.remove("name").and_then(|n| n.as_str().map(str::to_string));
            let name = name
                .or(from_file)
                .ok_or_else(|| CliError::usage("no app name: pass --name or put \"name\" in the file"))?;
            if let Some(v) = version {
                obj.insert("version".into(), json!(v));
            }
            let v = c
                .json(Method::PUT, &format!("{}/{}", ns.apps(), enc(&name)), Some(&spec))
                .await?;
            app.out.object(&v, "/name");
        }
        Cmd::List { ns } => {
            let v = c.get(&ns.apps()).await?;
            app.out
                .list(v.as_array().map(Vec::as_slice).unwrap_or(&[]), COLS, "/name");
        }
        Cmd::Show { app: a, version, ns } => {
            let path = match version {
                Some(v) => format!("{}/{}/versions/{}", ns.apps(), enc(&a), enc(&v)),
                None => format!("{}/{}", ns.apps(), enc(&a)),
            };
            app.out.object(&c.get(&path).await?, "/name");
        }
        Cmd::Versions { app: a, ns } => {
            let v = c.get(&format!("{}/{}/versions", ns.apps(), enc(&a))).await?;
            let rows: Vec<Value> = v
                .as_array()
                .map(|x| x.iter().map(|s| json!({"version": s})).collect())
                .unwrap_or_default();
            app.out
                .list_raw(&v, &rows, &[("VERSION", "/version")], "/version");
        }
        Cmd::Delete { app: a, version, ns } => {
            let path = match &version {
                Some(v) => format!("{}/{}/versions/{}", ns.apps(), enc(&a), enc(v)),
                None => format!("{}/{}", ns.apps(), enc(&a)),
            };
            c.json(Method::DELETE, &path, None).await?;
            let what = match version {
                Some(v) => format!("version {v} of app {a} deleted"),
                None => format!("app {a} deleted"),
            };
            app.out.done(&json!({"deleted": a}), &what);
        }
    }
    Ok(())
}
