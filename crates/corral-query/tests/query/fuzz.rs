//! Property test over random query text (seeded, no extra dependencies): token soup and mutated
//! corpus queries. `run` must never panic and must return within the timeout plus a margin.

use std::time::{Duration, Instant};

use corral_query::{Limits, Param, Status};

use crate::{corpus, fixture};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const VOCAB: &[&str] = &[
    "select",
    "explain",
    "from",
    "where",
    "group",
    "by",
    "having",
    "order",
    "limit",
    "offset",
    "asc",
    "desc",
    "as",
    "join",
    "inner",
    "cross",
    "left",
    "right",
    "outer",
    "natural",
    "on",
    "using",
    "and",
    "or",
    "xor",
    "not",
    "!",
    "between",
    "is",
    "null",
    "like",
    "regexp",
    "in",
    "true",
    "false",
    "distinct",
    "union",
    "insert",
    "drop",
    "*",
    ",",
    ".",
    "(",
    ")",
    "(",
    ")",
    ";",
    "=",
    "<",
    ">",
    "<=",
    ">=",
    "!=",
    "<>",
    "+",
    "-",
    "/",
    "%",
    "&",
    "|",
    "^",
    "<<",
    ">>",
    "~",
    "?",
    ":p:",
    ":q.r:",
    "1",
    "0",
    "-1",
    "2.5",
    "9223372036854775807",
    "1e308",
    "'a'",
    "'%a_'",
    "'web-1'",
    "''",
    "'(['",
    "instances",
    "projects",
    "flavors",
    "hosts",
    "clouds",
    "i",
    "p",
    "f",
    "name",
    "id",
    "state",
    "ram",
    "i.name",
    "p.id",
    "f.id",
    "i.flavor_id",
    "count(*)",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "abs",
    "concat",
    "substr",
    "conv",
    "format",
    "'%d %s %f'",
    "tables()",
    "columns",
    "functions",
    "rand",
    "typeof",
    "char",
    "'é'",
    "ｓ",
    "\u{200b}",
    "--",
    "/*",
    "`x`",
    "\n",
];

fn soup(rng: &mut Rng) -> String {
    let n = 1 + rng.below(30);
    let mut out = String::from(if rng.below(4) == 0 { "" } else { "select " });
    for _ in 0..n {
        let word = VOCAB[rng.below(VOCAB.len())];
        out.push_str(word);
        out.push(' ');
    }
    out
}

fn mutate(rng: &mut Rng, sql: &str) -> String {
    let mut chars: Vec<char> = sql.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let len = chars.len();
        let at = rng.below(len + 1);
        match rng.below(6) {
            0 if len > 0 => {
                let end = (at + 1 + rng.below(8)).min(len);
                chars.drain(at.min(end)..end);
            }
            1 => {
                let tok: Vec<char> = format!(" {} ", rng.pick(VOCAB)).chars().collect();
                chars.splice(at..at, tok);
            }
            2 if len > 0 => {
                let end = (at + 1 + rng.below(12)).min(len);
                let piece: Vec<char> = chars[at.min(end)..end].to_vec();
                chars.splice(at..at, piece);
            }
            3 if len > 1 => {
                let b = rng.below(len);
                chars.swap(at.min(len - 1), b);
            }
            4 => chars.truncate(at),
            _ => chars.insert(at, char::from_u32(rng.below(0x3000) as u32).unwrap_or('x')),
        }
    }
    chars.into_iter().collect()
}

#[test]
fn random_text_never_panics_and_respects_the_deadline() {
    let db = fixture::db();
    let limits = Limits {
        timeout: Duration::from_millis(200),
        row_limit: 50,
    };
    let params: Vec<Param> = fixture::params(
        r#"[{"index": 1, "value": "web-1"}, {"index": 2, "value": 3}, {"index": 3, "value": null},
            {"name": "p", "value": "42"}, {"name": "q.r", "value": true}]"#,
    );
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001);
    let mut rng = Rng(seed);
    let mut statuses = [0usize; 4];
    // FUZZ_ITERATIONS=200000 for a longer run (in release: `cargo test --release`).
    let iterations = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6000);
    for n in 0..iterations {
        let sql = if n % 2 == 0 {
            soup(&mut rng)
        } else {
            let (base, _, _) = rng.pick(corpus::CASES);
            mutate(&mut rng, base)
        };
        let t = Instant::now();
        let results = fixture::run(&db, &sql, &params, &limits);
        let took = t.elapsed();
        assert!(!results.is_empty(), "{sql:?}");
        assert!(took < Duration::from_millis(1500), "{sql:?} took {took:?}");
        for r in &results {
            statuses[r.status as usize] += 1;
            if r.status == Status::Success {
                assert_eq!(r.count, r.data.row.len());
                assert!(
                    r.data
                        .row
                        .iter()
                        .all(|row| row.value.len() == r.data.column_name.len()),
                    "{sql:?}"
                );
                assert!(r.count <= 50);
            } else {
                assert!(
                    r.count == 0 && r.data.row.is_empty() && !r.message.is_empty(),
                    "{sql:?}"
                );
            }
            serde_json::to_string(r).unwrap();
        }
    }
    // The generator reaches every outcome, so the property is exercised beyond the parser.
    assert!(statuses.iter().all(|s| *s > 0), "{statuses:?}");
}

#[test]
fn mutated_queries_over_a_larger_tenant_respect_the_deadline() {
    let mut db = fixture::db();
    let big = crate::hostile::big_db(3000);
    db.set("instances", big.table("instances").unwrap().clone())
        .unwrap();
    let limits = Limits {
        timeout: Duration::from_millis(100),
        row_limit: 100,
    };
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let mut timeouts = 0;
    const JOINS: &[&str] = &[
        "select count(*) from instances a join instances b on a.project_id = b.project_id where a.state = 'launched'",
        "select a.name, b.name from instances a, instances b where a.name < b.name order by a.name limit 10",
        "select a.state, count(*) from instances a left join instances b on a.flavor_id = b.flavor_id group by a.state",
        "select i.name, p.name from instances i join projects p on i.project_id = p.id where i.name like '%9%'",
    ];
    for n in 0..300 {
        let base = if n % 3 == 0 {
            rng.pick(corpus::CASES).0
        } else {
            *rng.pick(JOINS)
        };
        let sql = if n % 10 == 0 {
            base.to_string()
        } else {
            mutate(&mut rng, base)
        };
        let t = Instant::now();
        let results = fixture::run(&db, &sql, &[], &limits);
        let took = t.elapsed();
        assert!(took < Duration::from_millis(1500), "{sql:?} took {took:?}");
        timeouts += results
            .iter()
            .filter(|r| r.message.starts_with("Statement timeout"))
            .count();
    }
    // Some statements do turn into long joins; they end at the deadline.
    assert!(timeouts > 0);
}
