//! `corral service`: CDAP services: lifecycle, scale, runs, logs, calls, route config.

use clap::Subcommand;
use hyper::Method;
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::client::{Client, enc};
use crate::commands::app::Ns;
use crate::commands::{kv, object};
use crate::error::{CliError, Result};
use crate::wait::{Goal, Target, wait};
use crate::{App, WaitArgs};

/// Which service (of which app version).
#[derive(clap::Args, Debug, Clone)]
pub struct Svc {
    pub app: String,
    pub service: String,
    /// App version [default: the current one].
    #[arg(long = "app-version", id = "app_version", value_name = "VERSION")]
    pub version: Option<String>,
    #[command(flatten)]
    pub ns: Ns,
}

impl Svc {
    fn path(&self) -> String {
        let v = self
            .version
            .as_ref()
            .map(|v| format!("/versions/{}", enc(v)))
            .unwrap_or_default();
        format!(
            "{}/{}{v}/services/{}",
            self.ns.apps(),
            enc(&self.app),
            enc(&self.service)
        )
    }
    fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("service {}/{}@{v}", self.app, self.service),
            None => format!("service {}/{}", self.app, self.service),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List the services of the namespace's apps.
    #[command(after_help = "Example:\n  corral service list -n dev")]
    List {
        #[command(flatten)]
        ns: Ns,
    },
    /// Start a service's run, with optional runtime arguments (extra environment).
    #[command(
        after_help = "Examples:\n  corral service start PurchaseHistory CatalogLookup --wait\n  \
        corral service start PurchaseHistory CatalogLookup --app-version 2.0.0 --arg LOG_LEVEL=debug"
    )]
    Start {
        #[command(flatten)]
        svc: Svc,
        #[arg(long = "arg", value_parser = kv, value_name = "KEY=VALUE")]
        args: Vec<(String, String)>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop a service's run.
    #[command(after_help = "Example:\n  corral service stop PurchaseHistory CatalogLookup")]
    Stop {
        #[command(flatten)]
        svc: Svc,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Set how many instances a service keeps.
    #[command(after_help = "Example:\n  corral service scale PurchaseHistory CatalogLookup 3")]
    Scale {
        #[command(flatten)]
        svc: Svc,
        instances: i64,
    },
    /// A service's program status and instance counts.
    #[command(after_help = "Example:\n  corral service status PurchaseHistory CatalogLookup -o json")]
    Status {
        #[command(flatten)]
        svc: Svc,
    },
    /// A service's run records, newest first.
    #[command(
        after_help = "Examples:\n  corral service runs PurchaseHistory CatalogLookup\n  \
        corral service runs PurchaseHistory CatalogLookup --status failed --limit 5"
    )]
    Runs {
        #[command(flatten)]
        svc: Svc,
        /// running, completed, killed, failed, all.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Recent output of each live process of a service.
    #[command(after_help = "Example:\n  corral service logs PurchaseHistory CatalogLookup")]
    Logs {
        #[command(flatten)]
        svc: Svc,
    },
    /// Call a service method through Corral's proxy; prints the answer's body.
    #[command(
        after_help = "Examples:\n  corral service call PurchaseHistory CatalogLookup health\n  \
        corral service call PurchaseHistory CatalogLookup v1/product -X POST -d '{\"id\": 7}'"
    )]
    Call {
        #[command(flatten)]
        svc: Svc,
        /// The endpoint path after .../methods/.
        method_path: String,
        /// HTTP method.
        #[arg(short = 'X', long = "request", default_value = "GET")]
        request: String,
        /// Request body (`@FILE` reads a file).
        #[arg(short = 'd', long)]
        data: Option<String>,
        /// Header, repeatable.
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
    /// Show, set or clear the route config that splits calls between versions.
    #[command(
        after_help = "Examples:\n  corral service routes PurchaseHistory CatalogLookup\n  \
        corral service routes PurchaseHistory CatalogLookup --set 1.0.0=30 --set 2.0.0=70\n  \
        corral service routes PurchaseHistory CatalogLookup --clear"
    )]
    Routes {
        app: String,
        service: String,
        #[command(flatten)]
        ns: Ns,
        #[arg(long, value_parser = kv, value_name = "VERSION=PERCENT")]
        set: Vec<(String, String)>,
        #[arg(long, conflicts_with = "set")]
        clear: bool,
    },
}

pub async fn run(app: &App, cmd: Cmd) -> Result<()> {
    let c = app.client()?;
    match cmd {
        Cmd::List { ns } => {
            let v = c
                .get(&format!("/v3/namespaces/{}/services", enc(&ns.namespace)))
                .await?;
            app.out.list(
                v.as_array().map(Vec::as_slice).unwrap_or(&[]),
                &[
                    ("APP", "/app"),
                    ("NAME", "/name"),
                    ("DESCRIPTION", "/description"),
                ],
                "/name",
            );
        }
        Cmd::Start { svc, args, wait: w } => {
            let body = (!args.is_empty()).then(|| object(&args));
            let reply = c
                .send(Method::POST, &format!("{}/start", svc.path()), body.as_ref())
                .await?;
            let rev = reply.revision().or_else(|| {
                serde_json::from_slice::<Value>(&reply.body)
                    .ok()
                    .and_then(|v| v["revision"].as_i64())
            });
            let v = reply.json()?;
            app.out.object(&v, "/runid");
            follow(c, &svc, "RUNNING", rev, &w).await?;
        }
        Cmd::Stop { svc, wait: w } => {
            let reply = c
                .send(Method::POST, &format!("{}/stop", svc.path()), None)
                .await?;
            let rev = reply.revision();
            reply.json()?;
            app.out.done(
                &json!({"stopped": svc.service}),
                &format!("{} stopped", svc.label()),
            );
            follow(c, &svc, "STOPPED", rev, &w).await?;
        }
        Cmd::Scale { svc, instances } => {
            c.json(
                Method::PUT,
                &format!("{}/instances", svc.path()),
                Some(&json!({"instances": instances})),
            )
            .await?;
            let v = c.get(&format!("{}/instances", svc.path())).await?;
            app.out.object(&v, "/requested");
        }
        Cmd::Status { svc } => {
            let st = c.get(&format!("{}/status", svc.path())).await?;
            let inst = c.get(&format!("{}/instances", svc.path())).await?;
            let v = json!({"app": svc.app, "service": svc.service, "status": st["status"],
                "requested": inst["requested"], "provisioned": inst["provisioned"], "healthy": inst["healthy"]});
            app.out.object(&v, "/status");
        }
        Cmd::Runs { svc, status, limit } => {
            let mut q = Vec::new();
            if let Some(s) = status {
                q.push(format!("status={}", enc(&s)));
            }
            if let Some(l) = limit {
                q.push(format!("limit={l}"));
            }
            let qs = if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            };
            let v = c.get(&format!("{}/runs{qs}", svc.path())).await?;
            app.out.list(
                v.as_array().map(Vec::as_slice).unwrap_or(&[]),
                &[
                    ("RUNID", "/runid"),
                    ("STATUS", "/status"),
                    ("START", "/start"),
                    ("END", "/end"),
                ],
                "/runid",
            );
        }
        Cmd::Logs { svc } => {
            let v = c.get(&format!("{}/processes", svc.path())).await?;
            let mut text = String::new();
            for p in v.as_array().cloned().unwrap_or_default() {
                text.push_str(&format!(
                    "==> instance {} (pid {}, port {}, {}, restarts {}) <==\n{}",
                    p["instance"],
                    p["pid"]
                        .as_u64()
                        .map(|x| x.to_string())
                        .unwrap_or_else(|| "-".into()),
                    p["port"]
                        .as_u64()
                        .map(|x| x.to_string())
                        .unwrap_or_else(|| "-".into()),
                    if p["healthy"] == true {
                        "healthy"
                    } else {
                        "unhealthy"
                    },
                    p["restarts"],
                    p["output"].as_str().unwrap_or("")
                ));
                if !text.ends_with('\n') {
                    text.push('\n');
                }
            }
            app.out.text(&v, &text);
        }
        Cmd::Call {
            svc,
            method_path,
            request,
            data,
            headers,
        } => {
            let method = Method::from_bytes(request.to_ascii_uppercase().as_bytes())
                .map_err(|_| CliError::usage(format!("invalid HTTP method '{request}'")))?;
            let body = match data {
                Some(d) if d.starts_with('@') => Some(Bytes::from(
                    std::fs::read(&d[1..]).map_err(|e| CliError::usage(format!("{}: {e}", &d[1..])))?,
                )),
                Some(d) => Some(Bytes::from(d)),
                None => None,
            };
            let mut extra: Vec<(String, String)> = Vec::new();
            for h in headers {
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| CliError::usage(format!("header '{h}' is not NAME: VALUE")))?;
                extra.push((k.trim().to_string(), v.trim().to_string()));
            }
            if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept")) {
                extra.push(("accept".into(), "*/*".into()));
            }
            let extra_ref: Vec<(&str, String)> = extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let path = format!("{}/methods/{}", svc.path(), method_path.trim_start_matches('/'));
            let reply = c.send_bytes(method, &path, body, &extra_ref).await?;
            // The service's answer passes through as is; a failure status still sets the exit code.
            let mut out = std::io::stdout().lock();
            let _ = std::io::Write::write_all(&mut out, &reply.body);
            let _ = std::io::Write::flush(&mut out);
            if !reply.ok() {
                return Err(CliError {
                    code: CliError::code_for_status(reply.status),
                    message: format!("the call answered {}", reply.status),
                    request_id: reply.request_id(),
                });
            }
        }
        Cmd::Routes {
            app: a,
            service,
            ns,
            set,
            clear,
        } => {
            let path = format!("{}/{}/services/{}/routeconfig", ns.apps(), enc(&a), enc(&service));
            if clear {
                c.json(Method::DELETE, &path, None).await?;
                app.out.done(&json!({}), "route config cleared");
                return Ok(());
            }
            if !set.is_empty() {
                let mut m = serde_json::Map::new();
                for (v, p) in set {
                    let pct: i64 = p
                        .parse()
                        .map_err(|_| CliError::usage(format!("percent for {v} is not an integer: {p}")))?;
                    m.insert(v, json!(pct));
                }
                c.json(Method::PUT, &path, Some(&Value::Object(m))).await?;
            }
            let v = c.get(&path).await?;
            let rows: Vec<Value> = v
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, p)| json!({"version": k, "percent": p}))
                        .collect()
                })
                .unwrap_or_default();
            if app.out.format == crate::output::Format::Table && !app.out.quiet {
                app.out.list(
                    &rows,
                    &[("VERSION", "/version"), ("PERCENT", "/percent")],
                    "/version",
                );
            } else {
                app.out.object(&v, "");
            }
        }
    }
    Ok(())
}

async fn follow(c: &Client, svc: &Svc, want: &'static str, rev: Option<i64>, w: &WaitArgs) -> Result<()> {
    if !w.wait {
        return Ok(());
    }
    let t = Target::new(
        Goal::Service(want),
        svc.service.clone(),
        svc.label(),
        format!("{}/status", svc.path()),
    );
    wait(c, vec![t], rev, &w.opts()).await.map(|_| ())
}
