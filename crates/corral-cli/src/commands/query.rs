//! `corral query`: SQL over the tenant's inventory (`POST /query`): one statement from the
//! command line or stdin, or an interactive prompt with history (like the Perspective shell).

use std::io::{IsTerminal, Read};

use hyper::Method;
use serde_json::{Value, json};

use crate::App;
use crate::commands::kv;
use crate::error::{CliError, Result};
use crate::output::{Format, table};
use crate::resolve::parse_result;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  corral query \"select id, name, state from instances where state = 'error'\"\n  \
    corral query 'select name from flavors where ram >= :ram:' --param ram=2048 -q\n  \
    echo 'select count(*) from hosts' | corral query -o json\n  \
    corral query            # interactive prompt; history in the config directory\n\n\
    Tables: see `select * from tables()` (TABLES(), COLUMNS(), FUNCTIONS())."
)]
pub struct Args {
    /// The SQL (several statements may be separated by `;`). Without it: stdin, or a prompt
    /// on a terminal.
    pub sql: Option<String>,
    /// Named parameter for `:name:` placeholders, repeatable.
    #[arg(long = "param", value_parser = kv, value_name = "NAME=VALUE")]
    pub params: Vec<(String, String)>,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let c = app.client()?;
    let sql = match args.sql {
        Some(s) => s,
        None if std::io::stdin().is_terminal() => return interactive(app, &args.params).await,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::usage(format!("stdin: {e}")))?;
            s
        }
    };
    let results = run_sql(c, &sql, &args.params).await?;
    print(app, &results)
}

async fn run_sql(c: &crate::client::Client, sql: &str, params: &[(String, String)]) -> Result<Vec<Value>> {
    let parameters: Vec<Value> = params
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    let v = c
        .json(
            Method::POST,
            "/query",
            Some(&json!([{"sql": sql, "parameters": parameters}])),
        )
        .await?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// Prints each statement's result; the first failed statement sets the exit code (2).
fn print(app: &App, results: &[Value]) -> Result<()> {
    if app.out.format != Format::Table && !app.out.quiet {
        app.out.object(&Value::Array(results.to_vec()), "");
        return first_error(results);
    }
    let mut text = String::new();
    for (i, r) in results.iter().enumerate() {
        if i > 0 && !app.out.quiet {
            text.push('\n');
        }
        match parse_result(r) {
            Ok(rows) => {
                let str_of = |v: &Value| match v {
                    Value::Null => "NULL".to_string(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if app.out.quiet {
                    for row in &rows.rows {
                        text.push_str(&row.first().map(str_of).unwrap_or_default());
                        text.push('\n');
                    }
                    continue;
                }
                let cells: Vec<Vec<String>> =
                    rows.rows.iter().map(|r| r.iter().map(str_of).collect()).collect();
                text.push_str(&table(&rows.columns, &cells, false));
                let n = rows.rows.len();
                text.push_str(&format!("({n} row{})\n", if n == 1 { "" } else { "s" }));
                if !rows.message.is_empty() {
                    text.push_str(&format!("{}\n", rows.message));
                }
            }
            Err(e) => eprintln!("corral: {}", e.message),
        }
    }
    print!("{text}");
    first_error(results)
}

fn first_error(results: &[Value]) -> Result<()> {
    for r in results {
        parse_result(r)?;
    }
    Ok(())
}

/// The prompt: statements end with `;` (or a blank line); `\q` or Ctrl-D leaves.
async fn interactive(app: &App, params: &[(String, String)]) -> Result<()> {
    use rustyline::error::ReadlineError;
    let c = app.client()?;
    let mut rl = rustyline::DefaultEditor::new().map_err(|e| CliError::failure(e.to_string()))?;
    let history = crate::config::path()?.with_file_name("query_history");
    let _ = rl.load_history(&history);
    eprintln!(
        "corral query on {}: end statements with ';', \\q to quit",
        c.connection().addr
    );
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() { "corral> " } else { "   ...> " };
        match rl.readline(prompt) {
            Ok(line) => {
                let t = line.trim();
                if t == "\\q" || (buf.is_empty() && (t == "quit" || t == "exit")) {
                    break;
                }
                buf.push_str(&line);
                buf.push('\n');
                if !(t.ends_with(';') || (t.is_empty() && !buf.trim().is_empty())) {
                    continue;
                }
                let sql = std::mem::take(&mut buf);
                let sql = sql.trim();
                if sql.is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(sql);
                match run_sql(c, sql, params).await {
                    Ok(results) => {
                        // SQL errors were printed; the prompt goes on.
                        let _ = print(app, &results);
                    }
                    Err(e) => eprintln!("corral: {e}"),
                }
            }
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(CliError::failure(e.to_string())),
        }
    }
    if let Some(dir) = history.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = rl.save_history(&history);
    Ok(())
}
