//! `POST /query` on the wire (perspective.md 4): the statements a request asks for and the
//! results it answers. Core runs the statements on the query engine and converts its results to
//! these views, so the API never depends on the engine.

use serde::Serialize;

/// One Query object of spec 4.1.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryStatement {
    pub sql: String,
    pub params: Vec<QueryParam>,
}

/// A Parameter of spec 4.1: `name` wins over `index` when both are given. The value is a JSON
/// scalar (never an array or object), bound as a SQL literal by spec 4.4's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryParam {
    pub name: Option<String>,
    pub index: Option<i64>,
    pub value: serde_json::Value,
}

/// Parses the body of `POST /query` (spec 4.1): an array of Query objects or a single one.
/// The error is the message of the 400 answer.
pub fn parse_query_request(body: serde_json::Value) -> Result<Vec<QueryStatement>, String> {
    use serde_json::Value as J;
    let queries = match body {
        J::Array(a) => a,
        o @ J::Object(_) => vec![o],
        _ => {
            return Err(String::from(
                "the body must be a Query object or an array of them",
            ));
        }
    };
    let mut out = Vec::with_capacity(queries.len());
    for (i, q) in queries.into_iter().enumerate() {
        let J::Object(mut q) = q else {
            return Err(format!("query {i}: must be an object"));
        };
        let sql = match q.remove("sql") {
            Some(J::String(s)) => s,
            Some(_) => return Err(format!("query {i}: sql must be a string")),
            None => return Err(format!("query {i}: sql is required")),
        };
        let params = match q.remove("parameters") {
            None | Some(J::Null) => Vec::new(),
            Some(J::Array(ps)) => {
                let mut v = Vec::with_capacity(ps.len());
                for (j, p) in ps.into_iter().enumerate() {
                    let J::Object(mut p) = p else {
                        return Err(format!("query {i}: parameter {j} must be an object"));
                    };
                    let name = match p.remove("name") {
                        None | Some(J::Null) => None,
                        Some(J::String(s)) => Some(s),
                        Some(_) => return Err(format!("query {i}: parameter {j}: name must be a string")),
                    };
                    let index = match p.remove("index") {
                        None | Some(J::Null) => None,
                        Some(J::Number(n)) if n.is_i64() => n.as_i64(),
                        Some(_) => return Err(format!("query {i}: parameter {j}: index must be an integer")),
                    };
                    if name.is_none() && index.is_none() {
                        return Err(format!("query {i}: parameter {j} needs a name or an index"));
                    }
                    let value = p.remove("value").unwrap_or(J::Null);
                    if matches!(value, J::Array(_) | J::Object(_)) {
                        return Err(format!(
                            "query {i}: parameter {j}: value must be a string, number, boolean or null"
                        ));
                    }
                    v.push(QueryParam { name, index, value });
                }
                v
            }
            Some(_) => return Err(format!("query {i}: parameters must be an array")),
        };
        out.push(QueryStatement { sql, params });
    }
    Ok(out)
}

/// How a statement ended (spec 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryStatus {
    Success,
    SyntaxError,
    MissingParameters,
    EvaluationError,
}

/// One row of a result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryRow {
    pub value: Vec<serde_json::Value>,
}

/// The columns and rows of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct QueryData {
    #[serde(rename = "columnName")]
    pub column_name: Vec<String>,
    pub row: Vec<QueryRow>,
}

/// One QueryResult of spec 4.2.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    pub status: QueryStatus,
    pub count: usize,
    pub data: QueryData,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_shapes() {
        let one = parse_query_request(json!({"sql": "select 1"})).unwrap();
        assert_eq!(one.len(), 1);
        let many = parse_query_request(
            json!([{"sql": "select 1", "parameters": [{"name": "a", "index": 2, "value": 1}]}, {"sql": "select 2"}]),
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].params[0].name.as_deref(), Some("a"));
        assert_eq!(many[0].params[0].index, Some(2));
        assert_eq!(many[1].sql, "select 2");
        for (bad, message) in [
            (
                json!("select 1"),
                "the body must be a Query object or an array of them",
            ),
            (json!({"sql": 1}), "query 0: sql must be a string"),
            (json!({}), "query 0: sql is required"),
            (
                json!([{"sql": "x", "parameters": {}}]),
                "query 0: parameters must be an array",
            ),
            (
                json!([{"sql": "x", "parameters": [{"value": 1}]}]),
                "query 0: parameter 0 needs a name or an index",
            ),
            (
                json!([{"sql": "x", "parameters": [{"index": "1", "value": 1}]}]),
                "query 0: parameter 0: index must be an integer",
            ),
            (
                json!([{"sql": "x", "parameters": [{"index": 1, "value": [1]}]}]),
                "query 0: parameter 0: value must be a string, number, boolean or null",
            ),
        ] {
            assert_eq!(
                parse_query_request(bad.clone()),
                Err(message.to_string()),
                "{bad}"
            );
        }
    }
}
