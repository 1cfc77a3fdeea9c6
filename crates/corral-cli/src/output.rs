//! Printing answers: aligned tables (default), `-o json`, `-o yaml` (a small emitter of our
//! own, enough for JSON values), and `-q` (ids only, one per line, for pipes). Colour only
//! when stdout is a terminal and `NO_COLOR` is unset.

use std::io::{IsTerminal, Write};

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// A table column: header and a JSON pointer into each row (`""` = the row itself).
pub type Col<'a> = (&'a str, &'a str);

#[derive(Debug, Clone)]
pub struct Printer {
    pub format: Format,
    pub quiet: bool,
    pub color: bool,
}

pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Colour is wanted on this stream only if it is a terminal and `NO_COLOR` is unset or empty.
pub fn color_allowed(tty: bool) -> bool {
    tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl Printer {
    pub fn new(format: Format, quiet: bool) -> Printer {
        Printer {
            format,
            quiet,
            color: color_allowed(stdout_is_tty()),
        }
    }

    fn emit(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// Structured output of `v`, if the format is json or yaml; answers whether it printed.
    fn structured(&self, v: &Value) -> bool {
        match self.format {
            Format::Json => {
                let s = serde_json::to_string_pretty(v).unwrap_or_default();
                self.emit(&format!("{s}\n"));
                true
            }
            Format::Yaml => {
                self.emit(&to_yaml(v));
                true
            }
            Format::Table => false,
        }
    }

    /// A list of objects: `-q` prints `id_ptr` of each, a table the columns.
    pub fn list(&self, rows: &[Value], cols: &[Col<'_>], id_ptr: &str) {
        if self.quiet {
            let ids: String = rows.iter().map(|r| format!("{}\n", cell(r, id_ptr))).collect();
            self.emit(&ids);
            return;
        }
        if self.structured(&Value::Array(rows.to_vec())) {
            return;
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| cols.iter().map(|(_, p)| cell(r, p)).collect())
            .collect();
        let headers: Vec<String> = cols.iter().map(|(h, _)| h.to_string()).collect();
        self.emit(&table(&headers, &cells, self.color));
    }

    /// Like [`Printer::list`] for answers that are not lists of objects (arrays of names): the
    /// table and `-q` use `rows`, json and yaml print the API's own answer `raw`.
    pub fn list_raw(&self, raw: &Value, rows: &[Value], cols: &[Col<'_>], id_ptr: &str) {
        if !self.quiet && self.structured(raw) {
            return;
        }
        self.list(rows, cols, id_ptr);
    }

    /// One object: `-q` prints its id, a table its fields as `KEY  VALUE` lines.
    pub fn object(&self, v: &Value, id_ptr: &str) {
        if self.quiet {
            self.emit(&format!("{}\n", cell(v, id_ptr)));
            return;
        }
        if self.structured(v) {
            return;
        }
        let rows: Vec<Vec<String>> = match v {
            Value::Object(m) => m
                .iter()
                .map(|(k, val)| vec![format!("{k}:"), inline(val)])
                .collect(),
            other => vec![vec![String::new(), inline(other)]],
        };
        self.emit(&table(&[], &rows, self.color));
    }

    /// Raw text (console output, logs): the same in every format but json/yaml, which wrap it.
    pub fn text(&self, v: &Value, text: &str) {
        if self.quiet || !self.structured(v) {
            let mut t = text.to_string();
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            self.emit(&t);
        }
    }

    /// A success message for commands with nothing else to print (not with -q).
    pub fn done(&self, v: &Value, message: &str) {
        if self.quiet {
            return;
        }
        if !self.structured(v) {
            self.emit(&format!("{message}\n"));
        }
    }
}

/// The text of one cell: strings bare, arrays joined with `,`, objects as compact JSON,
/// null as empty.
pub fn cell(row: &Value, ptr: &str) -> String {
    let v = if ptr.is_empty() {
        Some(row)
    } else {
        row.pointer(ptr)
    };
    match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => inline(v),
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            a.iter().map(inline).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// Colours a status word when `color` is on: green for settled good states, red for
/// failures, yellow for transitions.
pub fn paint(word: &str, color: bool) -> String {
    if !color {
        return word.to_string();
    }
    let w = word.to_ascii_lowercase();
    let code = match w.as_str() {
        "ok" | "active" | "launched" | "saved" | "running" | "finished" | "success" | "disassociated"
        | "true" | "succeeded" => "32",
        "failed" | "error" | "unavailable" | "killed" | "false" => "31",
        "in_process" | "investigating" | "bootstrapping" | "queued" | "launching" | "starting"
        | "stopping" | "deleting" | "rebooting" | "resizing" | "rebuilding" | "saving" | "partial"
        | "minimal" => "33",
        _ => return word.to_string(),
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

/// Aligned columns separated by two spaces; headers (if any) first, in bold on a terminal.
pub fn table(headers: &[String], rows: &[Vec<String>], color: bool) -> String {
    let n = headers.len().max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut width = vec![0usize; n];
    for r in std::iter::once(headers).chain(rows.iter().map(Vec::as_slice)) {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |r: &[String], head: bool| {
        let mut l = String::new();
        for (i, c) in r.iter().enumerate() {
            let last = i + 1 == r.len();
            let pad = if last { 0 } else { width[i] - c.chars().count() + 2 };
            let shown = if head && color {
                format!("\x1b[1m{c}\x1b[0m")
            } else if head {
                c.clone()
            } else {
                paint(c, color)
            };
            l.push_str(&shown);
            l.push_str(&" ".repeat(pad));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    if !headers.is_empty() {
        line(headers, true);
    }
    for r in rows {
        line(r, false);
    }
    out
}

/// A YAML document for a JSON value (block style; strings quoted whenever plain style could
/// be read back as something else).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Array(a) if a.is_empty() => out.push_str("[]\n"),
        Value::Object(m) if m.is_empty() => out.push_str("{}\n"),
        Value::Array(_) | Value::Object(_) => yaml_block(v, 0, &mut out),
        scalar => {
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
    out
}

fn yaml_block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Array(a) => {
            for item in a {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key goes on the dash's line.
                        let mut first = true;
                        for (k, val) in m {
                            if first {
                                out.push(' ');
                                first = false;
                            } else {
                                out.push_str(&pad);
                                out.push_str("  ");
                            }
                            yaml_entry(k, val, indent + 2, out);
                        }
                    }
                    Value::Array(x) if !x.is_empty() => {
                        out.push('\n');
                        yaml_block(item, indent + 2, out);
                    }
                    other => {
                        out.push(' ');
                        out.push_str(&yaml_scalar(other));
                        out.push('\n');
                    }
                }
            }
        }
        Value::Object(m) => {
            for (k, val) in m {
                out.push_str(&pad);
                yaml_entry(k, val, indent, out);
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
}

fn yaml_entry(k: &str, val: &Value, indent: usize, out: &mut String) {
    out.push_str(&yaml_string(k));
    out.push(':');
    match val {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml_block(val, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml_block(val, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Plain when unambiguous, else a JSON-style double-quoted string (valid YAML).
fn yaml_string(s: &str) -> String {
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "" | "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    let numeric = s.parse::<f64>().is_ok() || s.starts_with("0x") || s.starts_with("0o");
    let first_special = s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c));
    let bad_inside = s.contains(": ")
        || s.contains(" #")
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control());
    if reserved || numeric || first_special || bad_inside {
        serde_json::to_string(s).unwrap_or_default()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_shapes() {
        let v = json!({"name": "a", "n": 1, "tags": ["x", "true"], "o": {"k": null},
                       "list": [{"id": "1", "s": "a: b"}], "e": [], "empty": ""});
        assert_eq!(
            to_yaml(&v),
            "e: []\nempty: \"\"\nlist:\n- id: \"1\"\n  s: \"a: b\"\n\"n\": 1\nname: a\no:\n  k: null\ntags:\n- x\n- \"true\"\n"
        );
        assert_eq!(to_yaml(&json!([])), "[]\n");
    }

    #[test]
    fn aligned() {
        let t = table(
            &["ID".into(), "NAME".into()],
            &[vec!["1".into(), "alpha".into()], vec!["22".into(), "b".into()]],
            false,
        );
        assert_eq!(t, "ID  NAME\n1   alpha\n22  b\n");
    }
}
