//! A small tenant: two clouds, three projects, flavors, images, instances, networks, keypairs,
//! quotas, metadata, hosts, a cluster and its operations. Ids are short so expectations read well.

use std::sync::Arc;
use std::time::Duration;

use corral_query::{Database, Limits, Param, QueryResult, Table, Value};

fn s(x: &str) -> Value {
    Value::str(x)
}
fn i(x: i64) -> Value {
    Value::Int(x)
}
fn b(x: bool) -> Value {
    Value::Bool(x)
}
const N: Value = Value::Null;

pub fn set(db: &mut Database, name: &str, rows: Vec<Vec<Value>>) {
    db.set(name, Arc::new(Table::from_rows(name, rows).unwrap()))
        .unwrap();
}

pub fn db() -> Database {
    let mut db = Database::new();
    let t = "2026-01-01T00:00:00Z";
    set(
        &mut db,
        "clouds",
        vec![vec![s("c1"), s("mock")], vec![s("c2"), s("openstack")]],
    );
    set(
        &mut db,
        "projects",
        vec![
            vec![s("p1"), s("project-one"), s("c1"), s("mock"), s(t)],
            vec![s("p2"), s("project-two"), s("c1"), s("mock"), s(t)],
            vec![s("p3"), s("other"), s("c2"), s("openstack"), s(t)],
        ],
    );
    set(
        &mut db,
        "flavors",
        vec![
            vec![
                s("f1"),
                s("p1"),
                s("small"),
                i(2048),
                i(1),
                i(20),
                i(0),
                b(false),
                b(true),
                s(""),
            ],
            vec![
                s("f2"),
                s("p1"),
                s("large"),
                i(8192),
                i(4),
                i(80),
                i(10),
                b(true),
                b(true),
                s("big one"),
            ],
            vec![
                s("f3"),
                s("p2"),
                s("tiny"),
                i(512),
                i(1),
                i(5),
                i(0),
                b(false),
                b(false),
                s(""),
            ],
        ],
    );
    set(
        &mut db,
        "images",
        vec![
            vec![
                s("i1"),
                s("r-i1"),
                s("ubuntu"),
                s("c1"),
                s("mock"),
                s(t),
                s(t),
                s("saved"),
                s(""),
            ],
            vec![
                s("i2"),
                s("r-i2"),
                s("debian"),
                s("c1"),
                s("mock"),
                s(t),
                s(t),
                s("saved"),
                s(""),
            ],
            vec![
                s("i3"),
                s(""),
                s("snap"),
                s("c2"),
                s("openstack"),
                s(t),
                s(t),
                s("queued"),
                s(""),
            ],
        ],
    );
    set(
        &mut db,
        "image_metadata",
        vec![vec![s("i1"), s("os"), s("linux")]],
    );
    let inst = |id: &str, name: &str, p: &str, f: &str, img: &str, state: &str, addr: &str| {
        vec![
            s(id),
            s(&format!("r-{id}")),
            s(name),
            s(if p == "p3" { "c2" } else { "c1" }),
            s(if p == "p3" { "openstack" } else { "mock" }),
            s(p),
            s(f),
            s(img),
            s(state),
            s(t),
            s(t),
            s("nova"),
            s(addr),
            s(""),
        ]
    };
    set(
        &mut db,
        "instances",
        vec![
            inst("a1", "web-1", "p1", "f1", "i1", "launched", "10.0.0.1"),
            inst("a2", "web-2", "p1", "f2", "i1", "launched", "10.0.0.2,10.0.1.2"),
            inst("a3", "db-1", "p2", "f3", "i2", "shutoff", ""),
            inst("a4", "orphan", "p3", "f9", "i3", "error", ""),
        ],
    );
    set(
        &mut db,
        "instance_metadata",
        vec![
            vec![s("a1"), s("role"), s("web")],
            vec![s("a3"), s("role"), s("db")],
        ],
    );
    set(
        &mut db,
        "instance_networks",
        vec![vec![s("a1"), s("n1")], vec![s("a2"), s("n1")]],
    );
    set(
        &mut db,
        "keypairs",
        vec![vec![
            s("key1"),
            s("p1"),
            s("aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"),
            s("ssh-rsa AAAA"),
        ]],
    );
    set(
        &mut db,
        "networks",
        vec![
            vec![s("n1"), s("p1"), s("net1"), s("ACTIVE"), b(false)],
            vec![s("n2"), s("p2"), s("net2"), s("ACTIVE"), b(true)],
        ],
    );
    set(
        &mut db,
        "network_subnets",
        vec![vec![
            s("s1"),
            s("p1"),
            s("n1"),
            s("sub1"),
            s("10.0.0.0/24"),
            i(4),
            s("10.0.0.1"),
            b(true),
        ]],
    );
    set(
        &mut db,
        "availability_zones",
        vec![vec![s("nova"), s("p1")], vec![s("nova"), s("p2")]],
    );
    set(
        &mut db,
        "project_quota",
        vec![
            vec![s("p1"), i(10), i(20), i(40960), i(100), N, N, N, i(5)],
            vec![s("p2"), N, N, N, N, N, N, N, N],
        ],
    );
    set(
        &mut db,
        "project_metadata",
        vec![vec![s("p1"), s("region"), s("r1")]],
    );
    set(
        &mut db,
        "project_images",
        vec![vec![s("p1"), s("i1")], vec![s("p2"), s("i2")]],
    );
    let host = |a: &str, st: &str, c: Value| {
        vec![
            s(a),
            s(st),
            s("centos"),
            i(4),
            i(8_388_608),
            i(104_857_600),
            s(t),
            s("ssh"),
            c,
        ]
    };
    set(
        &mut db,
        "hosts",
        vec![
            host("10.1.0.1", "active", s("k1")),
            host("10.1.0.2", "active", s("k1")),
            host("10.1.0.3", "active", N),
            host("10.1.0.4", "failed", N),
        ],
    );
    set(
        &mut db,
        "clusters",
        vec![vec![
            s("k1"),
            s("ok"),
            s("flannel"),
            s("kubernetes"),
            i(2),
            i(2),
            i(0),
        ]],
    );
    set(
        &mut db,
        "cluster_hosts",
        vec![
            vec![s("k1"), s("10.1.0.1"), i(1)],
            vec![s("k1"), s("10.1.0.2"), i(2)],
        ],
    );
    set(
        &mut db,
        "operations",
        vec![
            vec![
                s("k1"),
                s("deploy"),
                s("finished"),
                s("1.0"),
                s(t),
                s(t),
                i(2),
                i(0),
                i(0),
                s(""),
            ],
            vec![
                s("k1"),
                s("restart"),
                s("in_process"),
                N,
                s(t),
                N,
                i(1),
                i(1),
                i(0),
                s(""),
            ],
        ],
    );
    db
}

pub fn limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(5000),
        row_limit: 10_000,
    }
}

/// Parameters from their JSON form (`[{"index": 1, "value": ...}]`).
pub fn params(json: &str) -> Vec<Param> {
    let list: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
    list.into_iter()
        .map(|p| Param {
            name: p.get("name").and_then(|n| n.as_str()).map(String::from),
            index: p.get("index").and_then(|i| i.as_i64()),
            value: p.get("value").cloned().unwrap_or(serde_json::Value::Null),
        })
        .collect()
}

pub fn run(db: &Database, sql: &str, params: &[Param], limits: &Limits) -> Vec<QueryResult> {
    corral_query::run(db, sql, params, limits, "0.1.0-test")
}
