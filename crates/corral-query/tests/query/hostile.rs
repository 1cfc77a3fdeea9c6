//! Hostile inputs: each gets the right status, promptly, and nothing panics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_query::{Database, Limits, QueryResult, Status, Table, Value};

use crate::fixture;

fn one(sql: &str) -> QueryResult {
    let r = fixture::run(&fixture::db(), sql, &[], &fixture::limits());
    assert_eq!(r.len(), 1, "{sql}: {r:?}");
    r.into_iter().next().unwrap()
}

fn assert_status(sql: &str, status: Status, message: &str) {
    let r = one(sql);
    assert_eq!((r.status, r.message.as_str()), (status, message), "{sql}");
    if status != Status::Success {
        assert_eq!((r.count, r.data.column_name.len(), r.data.row.len()), (0, 0, 0));
    }
}

const ONLY: &str = "Only SELECT and EXPLAIN statements are supported.";

#[test]
fn writes_and_other_statements_are_refused() {
    for sql in [
        "insert into clouds values ('x', 'y')",
        "INSERT INTO clouds SELECT * FROM clouds",
        "update instances set state = 'deleted'",
        "delete from instances",
        "drop table instances",
        "create table x (a int)",
        "alter table instances add column x int",
        "replace into clouds values ('x', 'y')",
        "attach database '/tmp/x.db' as x",
        "pragma writable_schema = on",
        "truncate table instances",
        "with x as (select 1) select * from x",
        "explain delete from instances",
        "set global sql_row_limit = 0",
        "grant all on *.* to x",
        "begin",
        "vacuum",
        "load data infile '/etc/passwd' into table x",
    ] {
        assert_status(sql, Status::SyntaxError, ONLY);
    }
}

#[test]
fn unknown_functions_cannot_reach_anything() {
    for (sql, f) in [
        ("select load_extension('/tmp/evil.so')", "load_extension"),
        ("select readfile('/etc/passwd')", "readfile"),
        ("select pg_read_file('/etc/passwd')", "pg_read_file"),
        ("select sleep(10)", "sleep"),
        (
            "select name from instances where writefile('/tmp/x', name) = 1",
            "writefile",
        ),
    ] {
        assert_status(
            sql,
            Status::EvaluationError,
            &format!("Function {f} does not exist"),
        );
    }
}

#[test]
fn stacked_statements_each_get_a_result() {
    let r = fixture::run(
        &fixture::db(),
        "select 1; drop table x; select count(*) from instances;",
        &[],
        &fixture::limits(),
    );
    let s: Vec<(Status, &str)> = r.iter().map(|x| (x.status, x.message.as_str())).collect();
    assert_eq!(
        s,
        vec![
            (Status::Success, ""),
            (Status::SyntaxError, ONLY),
            (Status::Success, "")
        ]
    );
    // A `;` inside a literal does not split.
    let r = fixture::run(
        &fixture::db(),
        "select 'a; drop table x'",
        &[],
        &fixture::limits(),
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].data.row[0].value, vec![Value::str("a; drop table x")]);
    // Empty statements are skipped; an empty text is one syntax error.
    assert_eq!(
        fixture::run(&fixture::db(), "select 1;;", &[], &fixture::limits()).len(),
        1
    );
    assert_status(
        "",
        Status::SyntaxError,
        "Parse error: \"unexpected token\" near \"<EOF>\" at 1:0",
    );
    assert_status(
        " ; ",
        Status::SyntaxError,
        "Parse error: \"unexpected token\" near \"<EOF>\" at 1:3",
    );
}

#[test]
fn comments_are_syntax_errors() {
    let c = "comments are not supported";
    assert_status(
        "select 1 -- drop",
        Status::SyntaxError,
        &format!("Parse error: \"{c}\" near \"--\" at 1:9"),
    );
    assert_status(
        "select /* x */ 1",
        Status::SyntaxError,
        &format!("Parse error: \"{c}\" near \"/*\" at 1:7"),
    );
    assert_status(
        "select 1 # x",
        Status::SyntaxError,
        &format!("Parse error: \"{c}\" near \"#\" at 1:9"),
    );
    assert_status(
        "select 1\n--x",
        Status::SyntaxError,
        &format!("Parse error: \"{c}\" near \"--\" at 2:0"),
    );
    // Not a comment: a minus and a negative number, or text in a literal.
    assert_eq!(one("select 1 - -1").data.row[0].value, vec![Value::Int(2)]);
    assert_eq!(
        one("select '-- /* #'").data.row[0].value,
        vec![Value::str("-- /* #")]
    );
}

#[test]
fn unicode_tricks() {
    let u = "unexpected character";
    // Fullwidth letters are not SELECT.
    assert_status(
        "ｓｅｌｅｃｔ 1",
        Status::SyntaxError,
        &format!("Parse error: \"{u}\" near \"ｓ\" at 1:0"),
    );
    // Zero-width space inside an identifier, right-to-left override, no-break space.
    assert_status(
        "select na\u{200b}me from instances",
        Status::SyntaxError,
        &format!("Parse error: \"{u}\" near \"\u{200b}\" at 1:9"),
    );
    assert_status(
        "select name\u{202e} from instances",
        Status::SyntaxError,
        &format!("Parse error: \"{u}\" near \"\u{202e}\" at 1:11"),
    );
    assert_status(
        "select\u{a0}1",
        Status::SyntaxError,
        &format!("Parse error: \"{u}\" near \"\u{a0}\" at 1:6"),
    );
    assert_status(
        "select 1 from ｉnstances",
        Status::SyntaxError,
        &format!("Parse error: \"{u}\" near \"ｉ\" at 1:14"),
    );
    // Quoted identifiers with odd characters are just unknown names.
    assert_status(
        "select `na\u{200b}me` from instances",
        Status::EvaluationError,
        "Column na\u{200b}me does not exist",
    );
    // Unicode inside literals is data.
    assert_eq!(
        one("select char_length('\u{202e}é\u{200b}')").data.row[0].value,
        vec![Value::Int(3)]
    );
}

#[test]
fn placeholders_are_values_only() {
    let db = fixture::db();
    let p = fixture::params(r#"[{"index": 1, "value": "instances"}]"#);
    let r = fixture::run(&db, "select * from ?", &p, &fixture::limits());
    assert_eq!(r[0].status, Status::SyntaxError);
    assert_eq!(
        r[0].message,
        "Parse error: \"unexpected token\" near \"?\" at 1:14"
    );
    let p = fixture::params(r#"[{"name": "t", "value": "instances"}]"#);
    let r = fixture::run(&db, "select name from :t:", &p, &fixture::limits());
    assert_eq!(
        r[0].message,
        "Parse error: \"unexpected token\" near \":t:\" at 1:17"
    );
    // In column position it is a value, not a column.
    let p = fixture::params(r#"[{"name": "c", "value": "id"}]"#);
    let r = fixture::run(&db, "select :c: from clouds", &p, &fixture::limits());
    assert_eq!(r[0].data.row.len(), 2);
    assert_eq!(r[0].data.row[0].value, vec![Value::str("id")]);
    // Injection through a value stays a value.
    let p = fixture::params(r#"[{"index": 1, "value": "x' or '1'='1"}]"#);
    let r = fixture::run(
        &db,
        "select count(*) from instances where name = ?",
        &p,
        &fixture::limits(),
    );
    assert_eq!(r[0].data.row[0].value, vec![Value::Int(0)]);
    // As an operator or keyword it is a syntax error.
    let p = fixture::params(r#"[{"index": 1, "value": "="}]"#);
    let r = fixture::run(&db, "select 1 ? 1", &p, &fixture::limits());
    assert_eq!(r[0].status, Status::SyntaxError);
}

pub fn big_db(n: usize) -> Database {
    let mut db = Database::new();
    let rows = (0..n).map(|i| {
        let s = |x: String| Value::from(x);
        vec![
            s(format!("id-{i}")),
            s(format!("r-{i}")),
            s(format!("vm-{i}")),
            Value::str("c1"),
            Value::str("mock"),
            s(format!("p-{}", i % 10)),
            s(format!("f-{}", i % 5)),
            Value::str("i1"),
            Value::str(if i % 3 == 0 { "launched" } else { "shutoff" }),
            Value::str("t"),
            Value::str("t"),
            Value::str("nova"),
            Value::str(""),
            Value::str(""),
        ]
    });
    db.set(
        "instances",
        Arc::new(Table::from_rows("instances", rows).unwrap()),
    )
    .unwrap();
    db
}

#[test]
fn cartesian_joins_stop_at_the_deadline() {
    let db = big_db(20_000);
    let limits = Limits {
        timeout: Duration::from_millis(200),
        row_limit: 10_000,
    };
    let timeout = "Statement timeout of 200 ms exceeded.";
    for sql in [
        "select count(*) from instances a, instances b, instances c",
        "select a.name from instances a join instances b join instances c where a.name = concat('x', b.name, c.name)",
        "select a.name, b.name from instances a, instances b order by a.name, b.name",
        "select a.name, b.name from instances a cross join instances b where a.name > b.name and b.name > a.name",
        "select max(a.name) from instances a left join instances b on a.name != b.name",
        "select a.state, count(*) from instances a join instances b on a.state = b.state group by a.state",
    ] {
        let t = Instant::now();
        let r = fixture::run(&db, sql, &[], &limits);
        let took = t.elapsed();
        assert_eq!(r.len(), 1, "{sql}");
        assert_eq!(r[0].status, Status::EvaluationError, "{sql}: {}", r[0].message);
        assert_eq!(r[0].message, timeout, "{sql}");
        assert!(took < Duration::from_millis(1500), "{sql} took {took:?}");
    }
    // A cartesian product with a LIMIT and no ORDER BY streams and stops early.
    let t = Instant::now();
    let r = fixture::run(
        &db,
        "select a.name, b.name from instances a, instances b limit 3",
        &[],
        &limits,
    );
    assert_eq!((r[0].status, r[0].count), (Status::Success, 3));
    assert!(t.elapsed() < Duration::from_millis(1000));
    // The row limit bounds an unlimited one the same way.
    let small = Limits {
        row_limit: 5,
        ..limits
    };
    let r = fixture::run(&db, "select a.name from instances a, instances b", &[], &small);
    assert_eq!(
        (r[0].status, r[0].count, r[0].message.as_str()),
        (
            Status::Success,
            5,
            "Row limit of 5 rows reached; result truncated."
        )
    );
}

#[test]
fn huge_in_list() {
    let items: Vec<String> = (0..100_000).map(|i| format!("{}", 99_999 - i)).collect();
    let sql = format!(
        "select count(*) from instances where char_length(name) in ({})",
        items.join(", ")
    );
    assert!(sql.len() < corral_query::MAX_QUERY_BYTES);
    let db = big_db(1000);
    let t = Instant::now();
    let r = fixture::run(&db, &sql, &[], &fixture::limits());
    assert_eq!(
        (r[0].status, r[0].data.row[0].value.clone()),
        (Status::Success, vec![Value::Int(1000)]),
        "{}",
        r[0].message
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
    let deep = "Parse error: \"expression nested too deeply\"";
    let n = 10_000;
    for sql in [
        format!("select {}1{}", "(".repeat(n), ")".repeat(n)),
        format!("select {}1", "not ".repeat(n)),
        format!("select {}1", "- ".repeat(n)),
        format!("select {}1", "!".repeat(n)),
        format!("select {}1{}", "abs(".repeat(n), ")".repeat(n)),
        format!("select 1 from {}clouds{}", "(".repeat(n), ")".repeat(n)),
        format!("select 1 {}", "is null ".repeat(n)),
        format!("select 1 in {}1{}", "(".repeat(n), ")".repeat(n)),
    ] {
        let r = one(&sql);
        assert_eq!(r.status, Status::SyntaxError, "{}", &sql[..40]);
        assert!(r.message.starts_with(deep), "{}: {}", &sql[..40], r.message);
    }
    // Long flat chains are not deep.
    let r = one(&format!("select 1{}", " + 1".repeat(100_000)));
    assert_eq!(r.data.row[0].value, vec![Value::Int(100_001)]);
    let r = one(&format!(
        "select 1 from clouds where {}",
        vec!["id = id"; 20_000].join(" and ")
    ));
    assert_eq!(r.count, 2);
    // Modest nesting is fine.
    let r = one(&format!("select {}1{}", "(".repeat(30), ")".repeat(30)));
    assert_eq!(r.status, Status::Success);
    // Too many joins.
    let r = one(&format!(
        "select 1 from clouds c0{}",
        (1..100).map(|i| format!(" join clouds c{i}")).collect::<String>()
    ));
    assert_eq!(r.status, Status::SyntaxError, "{}", r.message);
}

#[test]
fn oversized_queries_are_refused() {
    let sql = format!("select '{}'", "x".repeat(corral_query::MAX_QUERY_BYTES));
    let r = one(&sql);
    assert_eq!(r.status, Status::SyntaxError);
    assert_eq!(
        r.message,
        "Parse error: \"query longer than 1048576 bytes\" near \"\" at 1:0"
    );
    // Just under the limit parses, and the message quotes a short prefix only.
    let sql = format!("selec '{}'", "x".repeat(corral_query::MAX_QUERY_BYTES - 20));
    let r = one(&sql);
    assert!(r.message.len() < 200, "{}", r.message.len());
}

#[test]
fn odd_but_valid_or_invalid_snippets_do_not_panic() {
    for (sql, status) in [
        ("select", Status::SyntaxError),
        ("select ,", Status::SyntaxError),
        ("select * from", Status::SyntaxError),
        ("select 1 from instances i join", Status::SyntaxError),
        ("select 1 from instances left join clouds", Status::SyntaxError),
        ("explain", Status::SyntaxError),
        ("select 'unterminated", Status::SyntaxError),
        ("select `", Status::SyntaxError),
        ("select :a", Status::SyntaxError),
        ("select 1 limit -1", Status::SyntaxError),
        ("select 1e999", Status::Success),
        ("select -9223372036854775808", Status::Success),
        ("select -(-9223372036854775807 - 1)", Status::EvaluationError),
        ("select abs(-9223372036854775807 - 1)", Status::EvaluationError),
        ("select 9223372036854775807 * 2", Status::EvaluationError),
        ("select 1 << -1, 1 >> 100, ~9223372036854775807", Status::Success),
        (
            "select conv('zzzzzzzzzzzzzzzzzzzz', 36, 2)",
            Status::EvaluationError,
        ),
        ("select char(1114112)", Status::EvaluationError),
        ("select format('%d %d', 1)", Status::EvaluationError),
        (
            "select round(1.5, 400), truncate(1e300, 2), power(10, 400), exp(1000)",
            Status::Success,
        ),
        ("select 'a' regexp '('", Status::EvaluationError),
        ("select 'a' regexp 'a{1000}{1000}{1000}'", Status::EvaluationError),
        ("select 'a' regexp '(a)\\1'", Status::EvaluationError),
        (
            "select substr('abc', -5, -1), substr('abc', 9223372036854775807)",
            Status::Success,
        ),
        (
            "select replace(replace('aaaa', 'a', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'), 'a', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')",
            Status::Success,
        ),
        ("select name from instances order by 0", Status::EvaluationError),
        ("select name from instances order by 2", Status::EvaluationError),
        ("select count(count(*)) from instances", Status::EvaluationError),
        (
            "select name from instances where count(*) > 1",
            Status::EvaluationError,
        ),
        (
            "select name from instances group by count(*)",
            Status::EvaluationError,
        ),
        ("select sum(name) from instances", Status::EvaluationError),
        ("select 1 from clouds c, clouds c", Status::EvaluationError),
        ("select x.* from clouds", Status::EvaluationError),
        (
            "select * from clouds join projects using (nope)",
            Status::EvaluationError,
        ),
        (
            "select 1 from clouds a join clouds b on c.id = a.id join clouds c on 1 = 1",
            Status::EvaluationError,
        ),
        ("select tables(1)", Status::EvaluationError),
        ("select columns()", Status::EvaluationError),
        ("select columns(null)", Status::EvaluationError),
        ("select functions('a', 'b')", Status::EvaluationError),
        ("select typeof(1, 'WHATEVER')", Status::EvaluationError),
        (
            "select count(*) from instances where name like '%%%%%%%%%%%%%%%%%%%%%%%%%%%%_b'",
            Status::Success,
        ),
    ] {
        let r = one(sql);
        assert_eq!(r.status, status, "{sql}: {}", r.message);
    }
}

#[test]
fn bounded_sort_is_stable_with_offsets() {
    let db = big_db(20_000);
    let names = |sql: &str| -> Vec<String> {
        let r = fixture::run(&db, sql, &[], &fixture::limits());
        assert_eq!(r[0].status, Status::Success, "{sql}: {}", r[0].message);
        r[0].data
            .row
            .iter()
            .map(|row| match &row.value[0] {
                Value::Str(s) => s.to_string(),
                o => format!("{o:?}"),
            })
            .collect()
    };
    // launched: i % 3 == 0, in table order; shutoff: the others.
    let launched: Vec<String> = (0..20_000)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("vm-{i}"))
        .collect();
    let shutoff: Vec<String> = (0..20_000)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("vm-{i}"))
        .collect();
    assert_eq!(
        names("select name from instances order by state limit 5000, 10"),
        launched[5000..5010]
    );
    assert_eq!(
        names("select name from instances order by state desc limit 10 offset 13000"),
        shutoff[13000..13010]
    );
    let all: Vec<String> = launched.iter().chain(&shutoff).cloned().collect();
    assert_eq!(
        names("select name from instances order by state limit 6660, 20"),
        all[6660..6680]
    );
    // Row limit after LIMIT on a sorted result.
    let r = fixture::run(
        &db,
        "select name from instances order by name desc",
        &[],
        &fixture::limits(),
    );
    assert_eq!(
        (r[0].count, r[0].message.as_str()),
        (10_000, "Row limit of 10000 rows reached; result truncated.")
    );
    assert_eq!(r[0].data.row[0].value[0], Value::str("vm-9999"));
}

#[test]
fn regular_expression_errors() {
    let r = one("select 'a' regexp '('");
    assert_eq!(r.status, Status::EvaluationError);
    assert!(
        r.message.starts_with("Invalid regular expression '(': "),
        "{}",
        r.message
    );
    // A pattern from a column is compiled per distinct value and errors the same way.
    let r = one("select id regexp concat(id, '(') from clouds");
    assert_eq!(r.status, Status::EvaluationError, "{}", r.message);
    assert!(
        r.message.starts_with("Invalid regular expression 'c1(': "),
        "{}",
        r.message
    );
    let r = one("select id from clouds where id regexp concat('^', type, '|c')");
    assert_eq!(r.count, 2);
}

#[test]
fn wide_results_are_bounded() {
    // 200,000 output columns on 20,000 rows would be 96 GB of values.
    let db = big_db(20_000);
    let sql = format!("select {} from instances", vec!["name"; 200_000].join(","));
    let t = Instant::now();
    let r = fixture::run(&db, &sql, &[], &fixture::limits());
    assert_eq!(r[0].status, Status::EvaluationError);
    assert_eq!(r[0].message, "Result larger than 64 MiB");
    assert!(t.elapsed() < Duration::from_secs(10));
    // As many GROUP BY keys: the group store is capped too.
    let sql = format!(
        "select count(*) from instances group by {}",
        vec!["name"; 100_000].join(",")
    );
    let r = fixture::run(&db, &sql, &[], &fixture::limits());
    assert_eq!(r[0].status, Status::EvaluationError);
    assert!(r[0].message.starts_with("More than "), "{}", r[0].message);
}

#[test]
fn nesting_up_to_the_limit_runs_on_a_small_stack() {
    // Test threads have 2 MiB stacks, like Tokio's workers: the deepest accepted expressions of
    // each kind must parse, plan and evaluate there, in a debug build.
    let kinds: [(&str, &str); 8] = [
        ("(", ")"),
        ("abs(", ")"),
        ("not ", ""),
        ("- ", ""),
        ("1 in (", ")"),
        ("concat('a', ", ")"),
        ("abs(-(not (1 between 0 and ", ")))"),
        ("1 + (2 * (3 - ", "))"),
    ];
    for (open, close) in kinds {
        let mut deepest = 0;
        for n in 1..200 {
            let sql = format!(
                "select {}1{} from clouds where {}1{} is not null order by {}1{}",
                open.repeat(n),
                close.repeat(n),
                open.repeat(n),
                close.repeat(n),
                open.repeat(n),
                close.repeat(n)
            );
            let r = one(&sql);
            if r.status == Status::SyntaxError {
                assert!(r.message.contains("nested too deeply"), "{open}: {}", r.message);
                break;
            }
            deepest = n;
        }
        assert!(deepest >= 8, "{open}: only {deepest} levels");
    }
}
