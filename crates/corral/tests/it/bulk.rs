//! Bulk instance actions as one job (issue 14): a request of many instances stores one
//! `instance.bulk` job, which fans out into at most `workers` `instance.action` batch jobs;
//! the per-id answers and the histories are those of perspective 5.2; a batch job whose worker
//! died resumes after its lease lapses without doing a finished instance again; a large launch
//! on the mock cloud ends with every instance `launched`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{Db, TestServer, expect_json};
use crate::instances::{act, call, ids, launch, mock_cloud, wait_state};

fn launch_body(ids: &crate::instances::Ids, prefix: &str, n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("{prefix}-{i}"), "projectId": ids.project, "flavor": {"id": ids.small}, "image": {"id": ids.debian}}))
        .collect();
    json!(items)
}

/// Launches `n` instances in one request; answers their ids.
async fn launch_many(
    s: &TestServer,
    k: &str,
    ids: &crate::instances::Ids,
    prefix: &str,
    n: usize,
) -> Vec<String> {
    let out = call(s, k, Method::POST, "/instances", launch_body(ids, prefix, n)).await;
    out.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["status"], 202, "{r}");
            assert_eq!(r["message"], "queued", "{r}");
            r["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Waits until `n` instances of the store are in `state`.
async fn wait_count(s: &TestServer, state: &str, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = s
            .sql_count(&format!("SELECT COUNT(*) FROM instances WHERE state = '{state}'"))
            .await;
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} instances {state} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn history(s: &TestServer, k: &str, id: &str) -> Vec<Value> {
    let resp = s
        .call(k, Method::GET, &format!("/instances/{id}/history"))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK)
        .await
        .as_array()
        .unwrap()
        .clone()
}

/// One request, one stored job; the answers per id are the contract's for a mix of valid,
/// repeated, unknown, wrong-state and other-tenant ids; every accepted instance ends
/// `launched` with its history entry for the request.
async fn a_bulk_action_is_one_job(db: Db) {
    // Slow enough that nothing finishes between the answer and the look at the states.
    let s = TestServer::start_with(db, |c| {
        c.clouds = vec![mock_cloud(|o| {
            o.driver.insert("delay_ms".into(), json!(500));
        })]
    })
    .await;
    let k = s.create_tenant("acme", 4).await;
    let other = s.create_tenant("other", 2).await;
    let acme_ids = ids(&s, "acme").await;
    let other_ids = ids(&s, "other").await;
    let foreign = launch(&s, &other, &other_ids, "theirs").await;
    let vms = launch_many(&s, &k, &acme_ids, "vm", 40).await;
    // The launch of 40 is one bulk job, fanned out into one batch job per worker slot.
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM jobs WHERE kind = 'instance.bulk'")
            .await,
        1
    );
    wait_count(&s, "launched", 41, Duration::from_secs(60)).await;
    let acme = s.store.get_tenant("acme").await.unwrap().unwrap().id;
    assert_eq!(
        s.sql_count(&format!(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'instance.action' AND tenant_id = '{acme}'"
        ))
        .await,
        4,
        "one batch job per worker slot"
    );
    // One instance is shut off (a single-id request: a batch job of its own, no bulk job).
    let off = vms[0].clone();
    act(&s, &k, "shutdown", &[&off]).await;
    wait_state(&s, &k, &off, "shutoff").await;
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM jobs WHERE kind = 'instance.bulk'")
            .await,
        1
    );

    let mut body: Vec<String> = vms[1..].to_vec();
    body.insert(3, "no-such-instance".into());
    body.insert(5, vms[2].clone());
    body.push(off.clone());
    body.push(foreign.clone());
    let resp = s
        .call(&k, Method::PUT, "/instances/reboot")
        .header("x-request-id", "bulk-reboot-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let out = expect_json(resp, StatusCode::OK).await;
    let out = out.as_array().unwrap();
    assert_eq!(out.len(), body.len());
    for (id, r) in body.iter().zip(out) {
        let want = if id == "no-such-instance" || *id == foreign {
            json!({"id": id, "status": 404, "message": format!("Instance with id = {id} not found")})
        } else if *id == off {
            json!({"id": id, "status": 409, "message": "Cannot reboot instance in state shutoff"})
        } else {
            json!({"id": id, "status": 202, "message": "rebooting"})
        };
        assert_eq!(*r, want);
    }
    // Right after the answer every accepted instance reads `rebooting`.
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM instances WHERE state = 'rebooting'")
            .await,
        39
    );
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM jobs WHERE kind = 'instance.bulk'")
            .await,
        2,
        "the reboot of 39 is one job"
    );
    wait_count(&s, "launched", 40, Duration::from_secs(60)).await;
    for id in &vms[1..] {
        let h = history(&s, &k, id).await;
        let actions: Vec<&str> = h.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["launch", "reboot"], "{id}: {h:?}");
        let last = &h[1];
        assert_eq!(last["outcome"], "succeeded", "{last}");
        assert_eq!(last["requestId"], "bulk-reboot-1", "{last}");
        assert_eq!(last["actor"], "admin@acme", "{last}");
    }
    let h = history(&s, &k, &off).await;
    assert_eq!(h.last().unwrap()["action"], "shutdown");
    // Another tenant's instance was not touched.
    assert_eq!(history(&s, &other, &foreign).await.len(), 1);
    s.stop().await;
}

/// 2,000 mock instances without delay, one request: all `launched`, each with its three
/// changes (created, launching, launched), a finished history entry and its own driver report
/// (the batch's ends are one statement over all of them). The first request, before Corral has
/// seen the cloud answer, fans out to every slot; the second, at the cloud's known pace, into
/// batches of at most 256.
async fn a_large_bulk_launch(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.clouds = vec![mock_cloud(|o| {
            o.driver.insert("delay_ms".into(), json!(0));
        })]
    })
    .await;
    let k = s.create_tenant("acme", 16).await;
    let ids = ids(&s, "acme").await;
    let vms = launch_many(&s, &k, &ids, "big", 2000).await;
    assert_eq!(vms.len(), 2000);
    wait_count(&s, "launched", 2000, Duration::from_secs(120)).await;
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM instance_events WHERE outcome = 'succeeded'")
            .await,
        2000
    );
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM change_log WHERE object_type = 'instance'")
            .await,
        6000
    );
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM jobs WHERE kind = 'instance.action'")
            .await,
        16
    );
    for id in [&vms[0], &vms[1234], &vms[1999]] {
        let one = wait_state(&s, &k, id, "launched").await;
        assert_eq!(one["realId"], format!("mock-{id}"), "{one}");
    }

    let more = launch_many(&s, &k, &ids, "more", 2000).await;
    wait_count(&s, "launched", 4000, Duration::from_secs(120)).await;
    let batches = s
        .sql_count("SELECT COUNT(*) FROM jobs WHERE kind = 'instance.action'")
        .await
        - 16;
    assert!(
        (2000_u64.div_ceil(256) as i64..16).contains(&batches),
        "the second request ran in {batches} batch jobs"
    );
    let one = wait_state(&s, &k, &more[777], "launched").await;
    assert_eq!(one["realId"], format!("mock-{}", more[777]), "{one}");
    s.stop().await;
}

/// Runs one statement on a stopped server's database.
async fn exec(db_url: &str, sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(db_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// A batch job held by a worker that died (its lease still running) is re-queued when the
/// lease lapses and resumed by another server: the instances finished before are not done
/// again (one `launching` and one `launched` change each), the rest end `launched`.
async fn a_bulk_job_resumes_after_its_lease_lapses(db: Db) {
    let cloud = || {
        mock_cloud(|o| {
            o.driver.insert("delay_ms".into(), json!(300));
        })
    };
    let s = TestServer::start_with(db, |c| {
        c.clouds = vec![cloud()];
        c.job_lease = 3;
    })
    .await;
    // One worker slot: the bulk job fans out into one batch job doing the 8 in turn.
    let k = s.create_tenant("acme", 1).await;
    let ids = ids(&s, "acme").await;
    let vms = launch_many(&s, &k, &ids, "r", 8).await;
    wait_count(&s, "launched", 2, Duration::from_secs(60)).await;
    let (db_url, data_dir) = (s.db_url.clone(), s.data_dir.clone());
    let keep = s.stop_keeping_files().await;
    // The graceful stop gave the batch job back; make it a job a dead worker still holds
    // for two seconds, as after a SIGKILL.
    let until = crate::harness::wall_clock_ms() + 2000;
    exec(
        &db_url,
        &format!(
            "UPDATE jobs SET state = 'running', lease_owner = 'dead-worker', lease_until = {until} \
             WHERE kind = 'instance.action' AND state = 'queued'"
        ),
    )
    .await;
    let s = TestServer::start_with(db, |c| {
        c.database_url = Some(db_url.clone());
        c.data_dir = data_dir.clone();
        c.clouds = vec![cloud()];
        c.job_lease = 3;
    })
    .await;
    let done_before = s
        .sql_count("SELECT COUNT(*) FROM instances WHERE state = 'launched'")
        .await;
    assert!(
        (2..8).contains(&done_before),
        "{done_before} launched before the restart"
    );
    wait_count(&s, "launched", 8, Duration::from_secs(60)).await;
    assert_eq!(
        s.sql_count(
            "SELECT COUNT(*) FROM job_events e JOIN jobs j ON j.id = e.job_id \
             WHERE j.kind = 'instance.action' AND e.message = 'lease expired: re-queued'"
        )
        .await,
        1,
        "the dead worker's job was re-queued by the reaper"
    );
    for id in &vms {
        for state in ["launching", "launched"] {
            let n = s
                .sql_count(&format!(
                    "SELECT COUNT(*) FROM change_log WHERE object_id = '{id}' \
                     AND data LIKE '%\"state\":\"{state}\"%'"
                ))
                .await;
            assert_eq!(n, 1, "{id} changed to {state} {n} times");
        }
        let h = history(&s, &k, id).await;
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[0]["outcome"], "succeeded", "{h:?}");
    }
    s.stop().await;
    drop(keep);
}

both_stores!(
    a_bulk_action_is_one_job,
    a_large_bulk_launch,
    a_bulk_job_resumes_after_its_lease_lapses,
);
