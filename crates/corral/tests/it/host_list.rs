//! `GET /api/v0/hosts` streamed from a database cursor (docs/api/commissaire.md): the same bytes
//! as the single-host answers put in a list, chunked once longer than one batch, `[]` when
//! empty, and only the caller's tenant's hosts. Hosts are staged with SQL: registering hundreds
//! through the API would investigate each one over SSH.

use reqwest::{Method, StatusCode};

use crate::both_stores;
use crate::harness::{Db, TestServer};

/// Stages `n` hosts of tenant `tenant` (addresses `10.<net>.x.y`) with varied columns, and
/// answers their addresses sorted by byte value, the list's order.
async fn seed(s: &TestServer, tenant: &str, net: u32, n: u32) -> Vec<String> {
    s.exec_sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
         INSERT INTO hosts (tenant_id, address, create_time, status, os, cpus, memory, space, last_check, source) \
         SELECT t.id, '10.{net}.' || (i / 256) || '.' || (i % 256), 0, \
                CASE WHEN i % 2 = 0 THEN 'active' ELSE 'failed' END, \
                CASE WHEN i % 3 = 0 THEN '' ELSE 'debian' END, i % 16, 1000 * i, 2000 * i, \
                CASE WHEN i % 3 = 0 THEN NULL ELSE 1700000000000 + i END, \
                CASE WHEN i % 5 = 0 THEN 'src \"quoted\" é' ELSE '' END \
         FROM n, tenants t WHERE t.name = '{tenant}'"
    ))
    .await;
    let mut addresses: Vec<String> = (1..=n)
        .map(|i| format!("10.{net}.{}.{}", i / 256, i % 256))
        .collect();
    addresses.sort();
    addresses
}

/// One raw answer: status, whether it came chunked (no `Content-Length`), body bytes.
async fn raw(s: &TestServer, key: &str, path: &str) -> (StatusCode, bool, Vec<u8>) {
    let resp = s.call(key, Method::GET, path).send().await.unwrap();
    let status = resp.status();
    let chunked = resp
        .headers()
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked");
    assert_eq!(
        chunked,
        resp.headers().get("content-length").is_none(),
        "{path}: either chunked or a length"
    );
    assert_eq!(resp.headers()["content-type"], "application/json; charset=utf-8");
    (status, chunked, resp.bytes().await.unwrap().to_vec())
}

/// The list the non-streamed answers make: `[` + each `GET /api/v0/host/{address}` body + `]`.
async fn expected(s: &TestServer, key: &str, addresses: &[String]) -> Vec<u8> {
    let mut out = b"[".to_vec();
    for (i, a) in addresses.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let (status, chunked, body) = raw(s, key, &format!("/api/v0/host/{a}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!chunked);
        out.extend(body);
    }
    out.push(b']');
    out
}

async fn streamed_host_list_is_the_same_json(db: Db) {
    let s = TestServer::start(db).await;
    let acme = s.create_tenant("acme", 1).await;
    let other = s.create_tenant("other", 1).await;
    let user = s.create_user(&acme, "alice", "user").await;

    // Empty: `[]`, one plain body.
    for path in ["/api/v0/hosts", "/api/v0/host"] {
        assert_eq!(
            raw(&s, &user, path).await,
            (StatusCode::OK, false, b"[]".to_vec())
        );
    }

    // Another tenant's hosts first, so acme's cursor has rows to skip on both sides.
    let theirs = seed(&s, "other", 2, 40).await;
    // Within one batch (256): one plain body, as before streaming.
    let mine = seed(&s, "acme", 1, 200).await;
    let (status, chunked, body) = raw(&s, &user, "/api/v0/hosts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!chunked, "a list of one batch has its Content-Length");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        String::from_utf8(expected(&s, &user, &mine).await).unwrap()
    );

    // Several batches: chunked, and still the same bytes; the singular spelling too.
    s.exec_sql("DELETE FROM hosts WHERE address LIKE '10.1.%'").await;
    let mine = seed(&s, "acme", 1, 700).await;
    let want = String::from_utf8(expected(&s, &user, &mine).await).unwrap();
    for path in ["/api/v0/hosts", "/api/v0/host"] {
        let (status, chunked, body) = raw(&s, &user, path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(chunked, "{path}: a list of several batches is streamed");
        let body = String::from_utf8(body).unwrap();
        assert_eq!(body, want, "{path}");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let got: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["address"].as_str().unwrap())
            .collect();
        assert_eq!(got, mine, "{path}: acme's hosts only, sorted by address");
    }

    // The other tenant sees its own hosts only.
    let (status, chunked, body) = raw(&s, &other, "/api/v0/hosts").await;
    assert_eq!((status, chunked), (StatusCode::OK, false));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        String::from_utf8(expected(&s, &other, &theirs).await).unwrap()
    );

    // No credentials: the ordinary error answer, nothing streamed.
    let resp = s.anon(Method::GET, "/api/v0/hosts").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

both_stores!(streamed_host_list_is_the_same_json);
