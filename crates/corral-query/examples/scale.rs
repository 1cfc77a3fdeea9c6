//! Times the engine on one large tenant: 100,000 instances (with their projects, images and
//! flavors) and 10,000 hosts. Run with
//! `nice -n 15 cargo run --release -p corral-query --example scale`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_query::{Database, Limits, Status, Table, Value};

const INSTANCES: usize = 100_000;
const HOSTS: usize = 10_000;
const PROJECTS: usize = 100;
const FLAVORS: usize = 20;
const IMAGES: usize = 50;

fn s(x: String) -> Value {
    Value::from(x)
}

fn build() -> Database {
    let mut db = Database::new();
    let mut put = |name: &str, rows: Vec<Vec<Value>>| {
        db.set(name, Arc::new(Table::from_rows(name, rows).unwrap()))
            .unwrap();
    };
    let t = || Value::str("2026-01-01T00:00:00Z");
    put(
        "projects",
        (0..PROJECTS)
            .map(|p| {
                vec![
                    s(format!("p-{p}")),
                    s(format!("project-{p}")),
                    Value::str("c1"),
                    Value::str("mock"),
                    t(),
                ]
            })
            .collect(),
    );
    put(
        "flavors",
        (0..FLAVORS)
            .map(|f| {
                vec![
                    s(format!("f-{f}")),
                    s(format!("p-{}", f % PROJECTS)),
                    s(format!("flavor-{f}")),
                    Value::Int(512 << (f % 6)),
                    Value::Int(1 + (f % 8) as i64),
                    Value::Int(20),
                    Value::Int(0),
                    Value::Bool(false),
                    Value::Bool(true),
                    Value::str(""),
                ]
            })
            .collect(),
    );
    put(
        "images",
        (0..IMAGES)
            .map(|i| {
                vec![
                    s(format!("img-{i}")),
                    s(format!("r-img-{i}")),
                    s(format!("image-{i}")),
                    Value::str("c1"),
                    Value::str("mock"),
                    t(),
                    t(),
                    Value::str("saved"),
                    Value::str(""),
                ]
            })
            .collect(),
    );
    const STATES: [&str; 6] = ["launched", "shutoff", "paused", "suspended", "error", "launching"];
    put(
        "instances",
        (0..INSTANCES)
            .map(|i| {
                vec![
                    s(format!("00000000-0000-4000-8000-{i:012}")),
                    s(format!("real-{i}")),
                    s(format!("vm-{i}")),
                    Value::str("c1"),
                    Value::str("mock"),
                    s(format!("p-{}", i % PROJECTS)),
                    s(format!("f-{}", i % FLAVORS)),
                    s(format!("img-{}", i % IMAGES)),
                    Value::str(STATES[i % STATES.len()]),
                    t(),
                    t(),
                    Value::str("nova"),
                    s(format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)),
                    Value::str(""),
                ]
            })
            .collect(),
    );
    put(
        "hosts",
        (0..HOSTS)
            .map(|h| {
                vec![
                    s(format!("10.200.{}.{}", h >> 8, h & 255)),
                    Value::str(if h % 10 == 0 { "failed" } else { "active" }),
                    Value::str("centos"),
                    Value::Int(8),
                    Value::Int(16 << 20),
                    Value::Int(100 << 20),
                    t(),
                    Value::str("ssh"),
                    if h % 4 == 0 {
                        Value::Null
                    } else {
                        s(format!("k-{}", h % 50))
                    },
                ]
            })
            .collect(),
    );
    db
}

fn time(db: &Database, label: &str, sql: &str) {
    // `scale <word>`: only the queries whose label contains it, many times (for a profiler).
    let only = std::env::args().nth(1);
    if only.as_deref().is_some_and(|w| !label.contains(w)) {
        return;
    }
    let limits = Limits::default();
    let mut runs: Vec<Duration> = Vec::new();
    let mut rows = 0;
    for _ in 0..if only.is_some() { 300 } else { 15 } {
        let t = Instant::now();
        let r = corral_query::run(db, sql, &[], &limits, "scale");
        runs.push(t.elapsed());
        assert_eq!(r[0].status, Status::Success, "{sql}: {}", r[0].message);
        rows = r[0].count;
    }
    runs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<44} median {:>7.2} ms  (min {:>6.2}, max {:>6.2}; {rows} rows)",
        ms(runs[runs.len() / 2]),
        ms(runs[0]),
        ms(runs[runs.len() - 1])
    );
}

fn main() {
    let t = Instant::now();
    let db = build();
    println!(
        "built {INSTANCES} instances, {HOSTS} hosts in {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    time(
        &db,
        "group by state (100k instances)",
        "SELECT state, COUNT(*) FROM instances GROUP BY state",
    );
    time(
        &db,
        "3-table join filtered by name",
        "SELECT i.name, p.name, f.name, f.ram FROM instances i JOIN projects p ON i.project_id = p.id \
         JOIN flavors f ON i.flavor_id = f.id WHERE i.name = 'vm-54321'",
    );
    time(
        &db,
        "same join written small table first",
        "SELECT i.name, p.name, f.name, f.ram FROM projects p JOIN instances i ON i.project_id = p.id \
         JOIN flavors f ON i.flavor_id = f.id WHERE i.name = 'vm-54321'",
    );
    time(
        &db,
        "show instances (4 tables, first 100 by name)",
        "SELECT i.id, i.name, p.name, im.name, f.name, i.state FROM instances i \
         JOIN projects p ON i.project_id = p.id JOIN images im ON i.image_id = im.id \
         JOIN flavors f ON i.flavor_id = f.id ORDER BY i.name LIMIT 100",
    );
    time(
        &db,
        "join + group by project (100k rows)",
        "SELECT p.name, COUNT(*), SUM(f.ram) FROM instances i JOIN projects p ON i.project_id = p.id \
         JOIN flavors f ON i.flavor_id = f.id GROUP BY p.name",
    );
    time(
        &db,
        "like filter over 100k names",
        "SELECT COUNT(*) FROM instances WHERE name LIKE 'vm-9%9'",
    );
    time(
        &db,
        "hosts by status and cluster (10k)",
        "SELECT status, cluster, COUNT(*) FROM hosts GROUP BY status, cluster",
    );
    time(
        &db,
        "full scan, row limit (10k of 100k)",
        "SELECT * FROM instances",
    );
}
