//! Names to ids: Perspective objects are addressed by UUID, people use names (`small`,
//! `debian-12`, a project by its cloud). Everything is looked up through `POST /query`, so
//! the CLI sees exactly what the caller may see.

use hyper::Method;
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::{CliError, Result};

/// One statement's answer: column names and rows of values.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub message: String,
}

impl Rows {
    /// Each row as an object keyed by column name.
    pub fn objects(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|r| {
                let m: serde_json::Map<String, Value> =
                    self.columns.iter().cloned().zip(r.iter().cloned()).collect();
                Value::Object(m)
            })
            .collect()
    }
}

/// Parses one QueryResult (perspective.md 4.2); a SQL error is a usage error (exit 2).
pub fn parse_result(r: &Value) -> Result<Rows> {
    let status = r["status"].as_str().unwrap_or("");
    let message = r["message"].as_str().unwrap_or("").to_string();
    if status != "success" {
        return Err(CliError::usage(format!("{status}: {message}")));
    }
    let columns = r["data"]["columnName"]
        .as_array()
        .map(|a| a.iter().map(|c| c.as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default();
    let rows = r["data"]["row"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|row| row["value"].as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    Ok(Rows {
        columns,
        rows,
        message,
    })
}

/// Runs one statement with named parameters (`:name:` placeholders).
pub async fn query(client: &Client, sql: &str, params: &[(&str, &str)]) -> Result<Rows> {
    let parameters: Vec<Value> = params
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    let body = json!([{"sql": sql, "parameters": parameters}]);
    let answer = client.json(Method::POST, "/query", Some(&body)).await?;
    let first = answer
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| CliError::failure("the query answered no result"))?;
    parse_result(first)
}

/// The kinds of object a name can stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cloud,
    Project,
    Flavor,
    Image,
    Instance,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Cloud => "cloud",
            Kind::Project => "project",
            Kind::Flavor => "flavor",
            Kind::Image => "image",
            Kind::Instance => "instance",
        }
    }
}

/// Optional narrowing of a lookup: the project (flavors, images, instances) or cloud
/// (projects) the object must belong to.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub project: Option<String>,
    pub cloud: Option<String>,
}

/// Resolves `name_or_id` to one id, or fails: 3 when nothing matches, 2 (with the
/// candidates) when a name is ambiguous.
pub async fn resolve(client: &Client, kind: Kind, name_or_id: &str, scope: &Scope) -> Result<String> {
    let (sql, label) = match kind {
        Kind::Cloud => ("select id, type, '' from clouds where id = :v:", "type"),
        Kind::Project => (
            "select id, name, cloud_id from projects where (id = :v: or name = :v: or cloud_id = :v:) \
             and (:c: = '' or cloud_id = :c:) order by id",
            "cloud",
        ),
        Kind::Flavor => (
            "select f.id, f.name, p.cloud_id from flavors f join projects p on p.id = f.project_id \
             where (f.id = :v: or f.name = :v:) and (:p: = '' or f.project_id = :p:) \
             and (:c: = '' or p.cloud_id = :c:) order by f.id",
            "cloud",
        ),
        Kind::Image if scope.project.is_some() => (
            "select i.id, i.name, i.cloud_id from images i join project_images pi \
             on pi.image_id = i.id where (i.id = :v: or i.name = :v:) \
             and pi.project_id = :p: and (:c: = '' or i.cloud_id = :c:) order by i.id",
            "cloud",
        ),
        Kind::Image => (
            "select id, name, cloud_id from images where (id = :v: or name = :v:) \
             and (:c: = '' or cloud_id = :c:) order by id",
            "cloud",
        ),
        Kind::Instance => (
            "select id, name, state from instances where (id = :v: or name = :v:) \
             and (:p: = '' or project_id = :p:) and (:c: = '' or cloud_id = :c:) order by id",
            "state",
        ),
    };
    let p = scope.project.as_deref().unwrap_or("");
    let c = scope.cloud.as_deref().unwrap_or("");
    let rows = query(client, sql, &[("v", name_or_id), ("p", p), ("c", c)]).await?;
    let str_of = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    // An exact id wins over names that happen to equal it.
    if let Some(r) = rows
        .rows
        .iter()
        .find(|r| r.first().map(str_of).as_deref() == Some(name_or_id))
    {
        return Ok(str_of(&r[0]));
    }
    match rows.rows.as_slice() {
        // An id is taken as given (the API then says whether it exists): the query tables
        // may lag a write by up to a second (docs/query.md).
        [] if looks_like_uuid(name_or_id) => Ok(name_or_id.to_string()),
        [] => Err(CliError::not_found(format!(
            "no {} named '{name_or_id}'",
            kind.word()
        ))),
        [one] => Ok(str_of(&one[0])),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|r| {
                    let id = r.first().map(str_of).unwrap_or_default();
                    let name = r.get(1).map(str_of).unwrap_or_default();
                    let extra = r.get(2).map(str_of).unwrap_or_default();
                    format!("  {id}  {name}  ({label} {extra})")
                })
                .collect();
            Err(CliError::usage(format!(
                "'{name_or_id}' is ambiguous: {} {}s match; use an id{}:\n{}",
                many.len(),
                kind.word(),
                match kind {
                    Kind::Flavor | Kind::Image | Kind::Instance => " or --project/--cloud",
                    Kind::Project => " or --cloud",
                    Kind::Cloud => "",
                },
                list.join("\n")
            )))
        }
    }
}

/// Resolves several instances at once (names or ids), keeping the order given.
pub async fn instances(client: &Client, items: &[String], scope: &Scope) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        out.push(resolve(client, Kind::Instance, i, scope).await?);
    }
    Ok(out)
}

/// The project a command means: `--project` (name or id, within `--cloud`), else the only
/// project of `--cloud`, else the only project the caller has.
pub async fn project(client: &Client, project: Option<&str>, cloud: Option<&str>) -> Result<String> {
    let scope = Scope {
        project: None,
        cloud: cloud.map(str::to_string),
    };
    if let Some(p) = project {
        return resolve(client, Kind::Project, p, &scope).await;
    }
    let rows = query(
        client,
        "select id, name, cloud_id from projects where (:c: = '' or cloud_id = :c:) order by id",
        &[("c", cloud.unwrap_or(""))],
    )
    .await?;
    match rows.rows.as_slice() {
        [] => Err(CliError::not_found(match cloud {
            Some(c) => format!("no project in cloud '{c}'"),
            None => "no project: this tenant has none".to_string(),
        })),
        [one] => Ok(one[0].as_str().unwrap_or_default().to_string()),
        many => Err(CliError::usage(format!(
            "several projects: pass --project or --cloud:\n{}",
            many.iter()
                .map(|r| format!(
                    "  {}  {}  (cloud {})",
                    r[0].as_str().unwrap_or(""),
                    r.get(1).and_then(Value::as_str).unwrap_or(""),
                    r.get(2).and_then(Value::as_str).unwrap_or("")
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ))),
    }
}

/// `8-4-4-4-12` hexadecimal digits.
pub fn looks_like_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}
