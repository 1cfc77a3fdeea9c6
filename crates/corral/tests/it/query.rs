//! `POST /query` over the real inventory (perspective.md 4): the request and result shapes, the
//! Perspective shell's queries over instances launched on the mock cloud and hosts registered
//! through the simulated transport, freshness after changes, the limits, and confinement to the
//! caller's tenant (the engine's own corpus, hostile inputs and fuzzing are in
//! `crates/corral-query/tests`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use corral_drivers::testing::{ClientKey, KeyFormat, KeyType};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{Db, TestServer};
use crate::instances::{ids, launch, mock_cloud};

async fn query(s: &TestServer, k: &str, body: Value) -> Value {
    s.post(k, "/query").json(body).ok().await
}

/// The rows of a one-statement query.
async fn rows(s: &TestServer, k: &str, sql: &str) -> Vec<Value> {
    let out = query(s, k, json!([{"sql": sql}])).await;
    assert_eq!(out[0]["status"], "success", "{sql}: {out}");
    out[0]["data"]["row"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].clone())
        .collect()
}

/// Queries until `sql` answers `want` (work after a 202 reaches the model as it happens),
/// for at most 30 s.
async fn until_rows(s: &TestServer, k: &str, sql: &str, want: Vec<Value>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = rows(s, k, sql).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql}: {got:?} after 30 s, want {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn server(db: Db) -> TestServer {
    TestServer::start_with(db, |c| {
        c.clouds = vec![mock_cloud(|o| {
            o.quota.instances = Some(50);
        })];
        c.host_driver = corral::config::HostDriver::Simulated;
        c.sql_row_limit = 5;
    })
    .await
}

async fn register_host(s: &TestServer, k: &str, address: &str) {
    let key = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap();
    s.put(k, &format!("/api/v0/host/{address}"))
        .json(json!({"ssh_priv_key": STANDARD.encode(&key.private_key)}))
        .expect(StatusCode::CREATED)
        .await;
}

async fn inventory_and_shell_queries(db: Db) {
    let s = server(db).await;
    let k = s.create_tenant("acme", 10).await;
    let other = s.create_tenant("other", 10).await;
    let ids = ids(&s, "acme").await;
    let oids = crate::instances::ids(&s, "other").await;
    let a = launch(&s, &k, &ids, "web-1").await;
    let b = launch(&s, &k, &ids, "web-2").await;
    let secret = launch(&s, &other, &oids, "other-secret").await;
    for (key, id) in [(&k, &a), (&k, &b), (&other, &secret)] {
        s.wait_json(key, &format!("/instances/{id}"), |v| v["state"] == "launched")
            .await;
    }
    register_host(&s, &k, "10.1.0.1").await;
    register_host(&s, &other, "10.9.0.9").await;

    // The introspection of 4.6 and the tables of 4.7.
    let tables = rows(&s, &k, "select tables()").await;
    assert_eq!(tables.len(), 5, "row limit 5 applies");
    let out = query(&s, &k, json!([{"sql": "select tables()"}])).await;
    assert_eq!(
        out[0]["message"],
        "Row limit of 5 rows reached; result truncated."
    );
    let cols = rows(&s, &k, "select columns('projects')").await;
    assert_eq!(cols[0][0], "id");

    // `show instances` of the Perspective shell: instances with projects, images, flavors.
    let shown = rows(
        &s,
        &k,
        "select i.name, p.name, im.name, f.name, f.ram, i.state from instances i \
         join projects p on i.project_id = p.id join images im on i.image_id = im.id \
         join flavors f on i.flavor_id = f.id order by i.name",
    )
    .await;
    assert_eq!(
        shown,
        vec![
            json!(["web-1", "acme", "debian", "small", 512, "launched"]),
            json!(["web-2", "acme", "debian", "small", 512, "launched"])
        ]
    );
    assert_eq!(
        rows(&s, &k, "select name, ram, vcpus from flavors order by ram").await,
        vec![json!(["small", 512, 1]), json!(["large", 4096, 4])]
    );
    assert_eq!(
        rows(&s, &k, "select name from networks").await,
        vec![json!(["private"])]
    );
    assert_eq!(
        rows(
            &s,
            &k,
            "select p.id, q.instances, q.vcpus from projects p join project_quota q on q.project_id = p.id"
        )
        .await,
        vec![json!([ids.project, 50, null])]
    );
    assert_eq!(
        rows(&s, &k, "select state, count(*) from instances group by state").await,
        vec![json!(["launched", 2])]
    );
    let hosts = rows(&s, &k, "select address, cluster from hosts").await;
    assert_eq!(hosts, vec![json!(["10.1.0.1", null])]);

    // Placeholders of both kinds, bound as values.
    let out = query(
        &s,
        &k,
        json!([{"sql": "select name from instances where id = ? or name = :n: order by name",
                "parameters": [{"index": 1, "value": a}, {"name": "n", "value": "web-2"}]}]),
    )
    .await;
    assert_eq!(out[0]["count"], 2, "{out}");
    let out = query(
        &s,
        &k,
        json!([{"sql": "select * from instances where id = :id:"}, {"sql": "selec 1"}]),
    )
    .await;
    assert_eq!(out[0]["status"], "missing_parameters");
    assert_eq!(out[0]["message"], "Parameter for placeholder \"id\" is missing");
    assert_eq!(out[1]["status"], "syntax_error");
    assert_eq!(out[1]["data"], json!({"columnName": [], "row": []}));

    // Confinement: another tenant's ids and names match nothing.
    for sql in [
        format!("select * from instances where id = '{secret}'"),
        "select * from instances where name = 'other-secret'".to_string(),
        format!("select * from projects where id = '{}'", oids.project),
        "select * from hosts where address = '10.9.0.9'".to_string(),
    ] {
        let out = query(&s, &k, json!([{"sql": sql}])).await;
        assert_eq!(out[0]["status"], "success");
        assert_eq!(out[0]["count"], 0, "{sql}: {out}");
    }
    assert_eq!(
        rows(&s, &other, "select name from instances").await,
        vec![json!(["other-secret"])]
    );
    s.stop().await;
}

/// The read model follows launches, state changes and deletes at once.
async fn freshness(db: Db) {
    let s = server(db).await;
    let k = s.create_tenant("acme", 10).await;
    let ids = ids(&s, "acme").await;
    assert_eq!(
        rows(&s, &k, "select count(*) from instances").await,
        vec![json!([0])]
    );
    let a = launch(&s, &k, &ids, "a").await;
    assert_eq!(
        rows(&s, &k, "select count(*) from instances").await,
        vec![json!([1])]
    );
    s.wait_json(&k, &format!("/instances/{a}"), |v| v["state"] == "launched")
        .await;
    assert_eq!(
        rows(&s, &k, "select state from instances").await,
        vec![json!(["launched"])]
    );
    s.put(&k, "/instances/rename")
        .json(json!({&a: "renamed"}))
        .ok()
        .await;
    assert_eq!(
        rows(&s, &k, "select name from instances").await,
        vec![json!(["renamed"])]
    );
    // A bulk action's rows reach the model with its commit (told to the model, not read back):
    // right after the answer no accepted instance can still be `launched`.
    let mut many = Vec::new();
    for i in 0..12 {
        many.push(launch(&s, &k, &ids, &format!("m{i}")).await);
    }
    until_rows(
        &s,
        &k,
        "select count(*) from instances where state = 'launched'",
        vec![json!([13])],
    )
    .await;
    let out = s.put(&k, "/instances/shutdown").json(json!(many)).ok().await;
    assert!(
        out.as_array().unwrap().iter().all(|r| r["status"] == 202),
        "{out}"
    );
    assert_eq!(
        rows(
            &s,
            &k,
            "select count(*) from instances where state in ('shutting_down', 'shutoff')"
        )
        .await,
        vec![json!([12])]
    );
    assert_eq!(
        rows(&s, &k, "select name from instances where state = 'launched'").await,
        vec![json!(["renamed"])]
    );
    s.post(&k, "/instances/delete").json(json!([a])).ok().await;
    until_rows(&s, &k, "select count(*) from instances", vec![json!([12])]).await;
    s.stop().await;
}

async fn request_shapes_and_limits(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.clouds = vec![mock_cloud(|_| {})];
        c.sql_statement_timeout = 200;
    })
    .await;
    let k = s.create_tenant("acme", 10).await;
    // A single object is an array of one.
    let out = query(&s, &k, json!({"sql": "select 1 + 1"})).await;
    assert_eq!(
        out,
        json!([{"status": "success", "count": 1, "data": {"columnName": ["1 + 1"], "row": [{"value": [2]}]}, "message": ""}])
    );
    for bad in [
        json!("select 1"),
        json!([{"sql": 1}]),
        json!([{"parameters": []}]),
        json!(7),
    ] {
        s.post(&k, "/query")
            .case(format!("{bad:?}"))
            .json(bad)
            .expect_error(StatusCode::BAD_REQUEST, None)
            .await;
    }
    s.req_anon(Method::POST, "/query")
        .json(json!([{"sql": "select 1"}]))
        .expect_error(StatusCode::UNAUTHORIZED, None)
        .await;
    // Writes and stacked statements never change anything; every statement gets a result.
    let out = query(
        &s,
        &k,
        json!([{"sql": "delete from instances; select 1; drop table hosts"}]),
    )
    .await;
    let statuses: Vec<&str> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["syntax_error", "success", "syntax_error"]);
    // The statement timeout, from the settings: a cartesian join of 100 instances four times.
    let ids = ids(&s, "acme").await;
    let items: Vec<Value> = (0..100)
        .map(|i| {
            json!({"name": format!("n{i}"), "projectId": ids.project, "flavor": {"id": ids.small},
                        "image": {"id": ids.debian}})
        })
        .collect();
    s.post(&k, "/instances").json(items).ok().await;
    let t = std::time::Instant::now();
    let out = query(
        &s,
        &k,
        json!([{"sql": "select count(*) from instances a, instances b, instances c, instances d"}]),
    )
    .await;
    assert_eq!(out[0]["status"], "evaluation_error", "{out}");
    assert_eq!(out[0]["message"], "Statement timeout of 200 ms exceeded.");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    s.stop().await;
}

both_stores!(inventory_and_shell_queries, freshness, request_shapes_and_limits);
