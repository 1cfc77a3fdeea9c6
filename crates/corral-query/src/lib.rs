//! The SQL engine of `POST /query` (spec section 4): a read-only dialect of `SELECT` over one
//! tenant's inventory.
//!
//! # Why this design
//!
//! * **Safety by construction.** The engine is a pure function of a [`Database`] value: one
//!   tenant's snapshot of the 19 tables, handed in by the caller. There is no file, network,
//!   setting or write path anywhere in this crate, so no statement — however crafted — can read
//!   another tenant's rows, touch the store, or change anything. Validating SQL text and passing
//!   it to a real database would make safety depend on the validator being perfect.
//! * **Own lexer and parser.** The dialect (spec 4.5) is small; a hand-written recursive-descent
//!   parser accepts exactly it, reports the spec's `Parse error: "..." near "..." at line:col`
//!   messages, bounds nesting (no stack overflow on 10 000 parentheses), and keeps placeholders
//!   as bound values: they can never be spliced into SQL text.
//! * **Bounded execution.** Every statement has a deadline checked inside every loop that can be
//!   long (scans, join probes, IN lists, LIKE, sorts, grouping). Joins stream the probe side into
//!   the consumer, so a cartesian product is never materialised; the build sides, the number of
//!   groups, the sort buffer and the result size are capped. No input can panic the engine
//!   (workspace lints forbid `unwrap`/`expect`/`panic`; arithmetic is checked).
//! * **Fast without caches.** Equi-joins (`ON a.x = b.y`, `USING`, `NATURAL`) are hash joins,
//!   `GROUP BY` is a hash aggregation, WHERE and ON conjuncts are pushed to the scans, and values
//!   are borrowed rather than copied while rows are filtered. Nothing is cached between queries, so
//!   memory does not grow with the number of queries.
//!
//! See `README.md` next to this crate for the dialect as implemented and the measured figures.

mod ast;
mod eval;
mod exec;
mod func;
mod lexer;
mod parser;
mod plan;
mod schema;
mod value;

use std::time::Duration;

use serde::Serialize;

pub use schema::{ColumnType, Database, TABLES, Table, TableSchema};
pub use value::Value;

use ast::{Expr, Item, Select};
use eval::{Deadline, Env, EvalError};
use lexer::{Placeholder, Tk};
use parser::Parser;

/// Longest accepted `sql` text.
pub const MAX_QUERY_BYTES: usize = 1 << 20;

/// Server settings `sql_statement_timeout` and `sql_row_limit` (spec 4.8).
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    pub row_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(5000),
            row_limit: 10_000,
        }
    }
}

/// A Parameter of spec 4.1: `name` wins over `index` when both are given.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Option<String>,
    pub index: Option<i64>,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    SyntaxError,
    MissingParameters,
    EvaluationError,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub value: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Data {
    #[serde(rename = "columnName")]
    pub column_name: Vec<String>,
    pub row: Vec<Row>,
}

/// One QueryResult of spec 4.2.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    pub status: Status,
    pub count: usize,
    pub data: Data,
    pub message: String,
}

impl QueryResult {
    fn error(status: Status, message: String) -> Self {
        QueryResult {
            status,
            count: 0,
            data: Data::default(),
            message,
        }
    }

    fn rows(columns: Vec<String>, mut rows: Vec<Vec<Value>>, row_limit: usize) -> Self {
        let mut message = String::new();
        if rows.len() > row_limit {
            rows.truncate(row_limit);
            message = format!("Row limit of {row_limit} rows reached; result truncated.");
        }
        QueryResult {
            status: Status::Success,
            count: rows.len(),
            data: Data {
                column_name: columns,
                row: rows.into_iter().map(|value| Row { value }).collect(),
            },
            message,
        }
    }
}

/// Binding rules of spec 4.4.
fn bind_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => n.as_f64().map_or(Value::Null, Value::Float),
        },
        J::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().map_or_else(|_| Value::str(s), Value::Int)
        }
        J::String(s) => Value::str(s),
        J::Array(_) | J::Object(_) => Value::Null,
    }
}

/// Runs one Query (`sql` may hold several statements): one result per statement, or exactly one
/// `missing_parameters` result. Never panics; each statement ends by its deadline.
pub fn run(db: &Database, sql: &str, params: &[Param], limits: &Limits, version: &str) -> Vec<QueryResult> {
    if sql.len() > MAX_QUERY_BYTES {
        return vec![QueryResult::error(
            Status::SyntaxError,
            format!("Parse error: \"query longer than {MAX_QUERY_BYTES} bytes\" near \"\" at 1:0"),
        )];
    }
    let lexed = lexer::lex(sql);
    let mut values = Vec::with_capacity(lexed.placeholders.len());
    for p in &lexed.placeholders {
        let found = match p {
            Placeholder::Index(n) => params.iter().find(|q| q.name.is_none() && q.index == Some(*n)),
            Placeholder::Name(n) => params.iter().find(|q| q.name.as_deref() == Some(n.as_str())),
        };
        match found {
            Some(q) => values.push(bind_value(&q.value)),
            None => {
                let message = match p {
                    Placeholder::Index(n) => format!("Parameter for placeholder #{n} is missing"),
                    Placeholder::Name(n) => format!("Parameter for placeholder \"{n}\" is missing"),
                };
                return vec![QueryResult::error(Status::MissingParameters, message)];
            }
        }
    }
    let mut results = Vec::new();
    let mut start = 0usize;
    for (i, t) in lexed.tokens.iter().enumerate() {
        if matches!(t.tk, Tk::Semi | Tk::Eof) {
            let stmt = lexed.tokens.get(start..=i).unwrap_or(&[]);
            if stmt.len() > 1 {
                results.push(run_statement(db, sql, stmt, &values, limits, version));
            }
            start = i + 1;
        }
    }
    if results.is_empty() {
        let stmt = lexed
            .tokens
            .get(lexed.tokens.len().saturating_sub(1)..)
            .unwrap_or(&[]);
        results.push(run_statement(db, sql, stmt, &values, limits, version));
    }
    results
}

fn run_statement(
    db: &Database,
    src: &str,
    toks: &[lexer::Token],
    params: &[Value],
    limits: &Limits,
    version: &str,
) -> QueryResult {
    let dl = Deadline::new(limits.timeout);
    let stmt = match Parser::new(src, toks, params).statement() {
        Ok(s) => s,
        Err(e) => return QueryResult::error(Status::SyntaxError, e.message()),
    };
    let env = Env::new(&dl, version);
    let out = if stmt.explain {
        explain(db, &stmt.select)
    } else {
        select(db, &stmt.select, &env, limits)
    };
    match out.and_then(|r| dl.check().map(|()| r)) {
        Ok((cols, rows)) => QueryResult::rows(cols, rows, limits.row_limit),
        Err(EvalError(m)) => QueryResult::error(Status::EvaluationError, m),
    }
}

type Rows = (Vec<String>, Vec<Vec<Value>>);

fn explain(db: &Database, s: &Select) -> Result<Rows, EvalError> {
    let steps = match table_function(s) {
        Some((name, _)) => vec![format!("table function {}()", name.to_uppercase())],
        None => plan::plan(db, s)?.explain(),
    };
    Ok((
        vec![String::from("task")],
        steps.into_iter().map(|t| vec![Value::from(t)]).collect(),
    ))
}

fn table_function(s: &Select) -> Option<(&str, &[Expr])> {
    match (s.items.as_slice(), &s.from) {
        (
            [
                Item::Expr {
                    expr:
                        Expr::Call {
                            name,
                            args,
                            star: false,
                        },
                    ..
                },
            ],
            None,
        ) if matches!(name.as_str(), "tables" | "columns" | "functions") => {
            Some((name.as_str(), args.as_slice()))
        }
        _ => None,
    }
}

fn select(db: &Database, s: &Select, env: &Env<'_>, limits: &Limits) -> Result<Rows, EvalError> {
    if let Some((name, args)) = table_function(s) {
        return table_fn(name, args, s, env);
    }
    let p = plan::plan(db, s)?;
    let rows = exec::execute(&p, env, limits.row_limit)?;
    Ok((p.columns, rows))
}

fn table_fn(name: &str, args: &[Expr], s: &Select, env: &Env<'_>) -> Result<Rows, EvalError> {
    let upper = name.to_uppercase();
    if s.where_.is_some() || !s.group_by.is_empty() || s.having.is_some() || !s.order_by.is_empty() {
        return eval::err(format!(
            "{upper}() must be the only item of a SELECT without FROM"
        ));
    }
    let arg = |i: usize| -> Result<Option<Value>, EvalError> {
        match args.get(i) {
            None => Ok(None),
            Some(
                e @ (Expr::Lit(_) | Expr::Param(_) | Expr::Call { .. } | Expr::Chain(..) | Expr::Unary(..)),
            ) => {
                let no_row = eval::Row::Tables {
                    tables: &[],
                    ids: &[],
                };
                let b = plan::plan(&Database::new(), &const_select(e))?;
                let v = b
                    .items
                    .first()
                    .map(|x| x.eval(env, &no_row).map(|c| c.into_owned()))
                    .transpose()?;
                Ok(v)
            }
            Some(_) => eval::err(format!("{upper}: the argument must be a constant")),
        }
    };
    let def = func::lookup(name);
    let (min, max) = def.map_or((0, 0), |d| (d.min, d.max));
    if args.len() < min || args.len() > max {
        return eval::err(format!(
            "Function {} takes {}, got {}",
            def.map_or("", |d| d.sig),
            if min == max {
                format!("{min} argument{}", if min == 1 { "" } else { "s" })
            } else {
                format!("{min} to {max} arguments")
            },
            args.len()
        ));
    }
    let (cols, rows): (Vec<&str>, Vec<Vec<Value>>) = match name {
        "tables" => (
            vec!["table_name"],
            TABLES.iter().map(|t| vec![Value::from(t.name)]).collect(),
        ),
        "columns" => {
            let t = arg(0)?.unwrap_or(Value::Null);
            let tname = t.text().into_owned();
            let schema = if t.is_null() {
                None
            } else {
                schema::table_index(&tname).and_then(|i| TABLES.get(i))
            };
            let Some(schema) = schema else {
                return eval::err(format!("Table {tname} does not exist"));
            };
            (
                vec!["column_name", "type", "default_value", "indexed"],
                schema
                    .columns
                    .iter()
                    .map(|(c, ty)| {
                        vec![
                            Value::from(*c),
                            Value::from(ty.name()),
                            Value::from("null"),
                            Value::from("false"),
                        ]
                    })
                    .collect(),
            )
        }
        _ => {
            let filter = arg(0)?;
            let mut rows = Vec::new();
            if let Some(f) = &filter {
                let n = f.text().into_owned();
                match func::lookup(&n) {
                    Some(d) => rows.push(vec![Value::from(d.sig), Value::from(d.desc)]),
                    None => return eval::err(format!("Function {n} does not exist")),
                }
            } else {
                rows = func::FUNCS
                    .iter()
                    .map(|d| vec![Value::from(d.sig), Value::from(d.desc)])
                    .collect();
            }
            (vec!["function_name", "description"], rows)
        }
    };
    let rows = match s.limit {
        Some((off, n)) => rows
            .into_iter()
            .skip(usize::try_from(off).unwrap_or(usize::MAX))
            .take(usize::try_from(n).unwrap_or(usize::MAX))
            .collect(),
        None => rows,
    };
    Ok((cols.into_iter().map(String::from).collect(), rows))
}

fn const_select(e: &Expr) -> Select {
    Select {
        items: vec![Item::Expr {
            expr: e.clone(),
            alias: None,
            text: String::new(),
        }],
        from: None,
        where_: None,
        group_by: Vec::new(),
        having: None,
        order_by: Vec::new(),
        limit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Database>();
        send_sync::<Table>();
        send_sync::<QueryResult>();
        send_sync::<Limits>();
    }

    #[test]
    fn extreme_limits() {
        let db = Database::new();
        let huge = Limits {
            timeout: Duration::MAX,
            row_limit: usize::MAX,
        };
        let r = run(&db, "select 1", &[], &huge, "v");
        assert_eq!((r[0].status, r[0].count), (Status::Success, 1));
        let zero = Limits {
            timeout: Duration::ZERO,
            row_limit: 0,
        };
        let r = run(&db, "select 1", &[], &zero, "v");
        assert_eq!(r[0].message, "Statement timeout of 0 ms exceeded.");
    }

    #[test]
    fn binding_rules() {
        use serde_json::json;
        assert_eq!(bind_value(&json!("0042")), Value::Int(42));
        assert_eq!(bind_value(&json!("42a")), Value::str("42a"));
        assert_eq!(bind_value(&json!("")), Value::str(""));
        assert_eq!(
            bind_value(&json!("99999999999999999999")),
            Value::str("99999999999999999999")
        );
        assert_eq!(bind_value(&json!(1.5)), Value::Float(1.5));
        assert_eq!(bind_value(&json!(false)), Value::Bool(false));
        assert_eq!(bind_value(&json!(null)), Value::Null);
    }
}
