//! Users, API keys and the profile (coopr-v2.md 4, 5): a tenant admin manages its own
//! tenant's users and keys; every user has one free-form profile of its own.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer, expect_error, keys_of};
use crate::helpers::expect_each_error;

const USER_KEYS: [&str; 5] = ["createTime", "description", "id", "role", "tenant"];
const KEY_KEYS: [&str; 6] = [
    "createTime",
    "description",
    "expireTime",
    "id",
    "lastUsedTime",
    "prefix",
];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn user_ids(s: &TestServer, admin: &str) -> Vec<String> {
    let list = s.get(admin, "/v2/users").ok().await;
    list.as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}

/// Answers whether `key` authenticates (as anyone), by a read every role may do.
async fn key_works(s: &TestServer, key: &str) -> bool {
    let resp = s.get(key, "/v3/namespaces").send().await;
    match resp.status() {
        StatusCode::OK => true,
        StatusCode::UNAUTHORIZED => {
            expect_error(resp, StatusCode::UNAUTHORIZED, Some("Invalid credentials.")).await;
            false
        }
        other => panic!("unexpected status {other}"),
    }
}

async fn create_user_answers_201_with_the_user(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let before = now_ms();
    let alice = s
        .post(&admin, "/v2/users")
        .json(json!({"id": "alice"}))
        .expect(StatusCode::CREATED)
        .await;
    let after = now_ms();
    assert_eq!(keys_of(&alice), USER_KEYS, "{alice}");
    let created = alice["createTime"].as_i64().unwrap();
    assert!(before - 1000 <= created && created <= after + 1000, "{created}");
    assert_eq!(
        alice,
        json!({"id": "alice", "tenant": "acme", "role": "user", "description": "", "createTime": created})
    );
    let bob = s
        .post(&admin, "/v2/users")
        .json(json!({"id": "bob", "role": "viewer", "description": "Ops"}))
        .expect(StatusCode::CREATED)
        .await;
    assert_eq!(bob["role"], "viewer");
    assert_eq!(bob["description"], "Ops");
    assert_eq!(
        s.post(&admin, "/v2/users")
            .json(json!({"id": "carol", "role": "admin"}))
            .expect(StatusCode::CREATED)
            .await["role"],
        "admin"
    );

    // GET answers what the create answered; the new user has no key yet.
    for user in [&alice, &bob] {
        let path = format!("/v2/users/{}", user["id"].as_str().unwrap());
        let got = s.get(&admin, &path).case(format!("{user:?}")).ok().await;
        assert_eq!(&got, user);
        let keys = s
            .get(&admin, &format!("{path}/apikeys"))
            .case(format!("{user:?}"))
            .ok()
            .await;
        assert_eq!(keys, json!([]));
    }
    // The same id may exist in another tenant.
    let other = s.create_tenant("other", 0).await;
    assert_eq!(
        s.post(&other, "/v2/users")
            .json(json!({"id": "alice"}))
            .expect(StatusCode::CREATED)
            .await["tenant"],
        "other"
    );
}

async fn duplicate_user_is_409(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    s.post(&admin, "/v2/users")
        .json(json!({"id": "alice", "description": "first"}))
        .expect(StatusCode::CREATED)
        .await;
    s.post(&admin, "/v2/users")
        .json(json!({"id": "alice", "role": "admin", "description": "second"}))
        .expect_error(StatusCode::CONFLICT, "User 'alice' already exists.")
        .await;
    s.post(&admin, "/v2/users")
        .json(json!({"id": "admin"}))
        .expect_error(StatusCode::CONFLICT, "User 'admin' already exists.")
        .await;
    // The existing user is unchanged, and `admin` is still the admin.
    let alice = s.get(&admin, "/v2/users/alice").ok().await;
    assert_eq!(
        (alice["role"].as_str(), alice["description"].as_str()),
        (Some("user"), Some("first"))
    );
    assert_eq!(user_ids(&s, &admin).await, ["admin", "alice"]);
}

async fn invalid_user_input_is_400(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let long = "u".repeat(256);
    let invalid_ids = ["a b", "", "a.b", "al/ice", "é", long.as_str()].map(|id| {
        (
            json!({"id": id}),
            format!("Invalid name '{id}': use 1 to 255 characters from A-Z a-z 0-9 _ -."),
        )
    });
    s.expect_rejected(&admin, Method::POST, "/v2/users", invalid_ids)
        .await;
    s.expect_bad_bodies(
        &admin,
        Method::POST,
        "/v2/users",
        [
            json!({"id": "alice", "role": "superadmin"}),
            json!({"id": "alice", "role": "root"}),
            json!({"id": "alice", "role": "Admin"}),
            json!({"id": "alice", "role": ""}),
            json!({"id": "alice", "role": 1}),
            json!({"id": "alice", "description": 5}),
            json!({"id": 5}),
            json!({"role": "user"}),
            json!({}),
            json!([]),
            json!("alice"),
        ],
    )
    .await;
    assert_eq!(user_ids(&s, &admin).await, ["admin"]);
    // The longest valid id is accepted.
    let id = "u".repeat(255);
    assert_eq!(
        s.post(&admin, "/v2/users")
            .json(json!({"id": id}))
            .expect(StatusCode::CREATED)
            .await["id"],
        json!(id)
    );
}

async fn unknown_user_is_404(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    // A user of another tenant does not exist here; ids are case-sensitive.
    let other = s.create_tenant("other", 0).await;
    s.create_user(&other, "olga", "user").await;
    for (req, message) in [
        (s.get(&admin, "/v2/users/x"), Some("User 'x' not found.")),
        (s.put(&admin, "/v2/users/x").json(json!({"role": "user"})), None),
        (s.delete(&admin, "/v2/users/x"), None),
        (s.get(&admin, "/v2/users/olga"), Some("User 'olga' not found.")),
        (s.delete(&admin, "/v2/users/olga"), None),
        (s.get(&admin, "/v2/users/Admin"), Some("User 'Admin' not found.")),
    ] {
        req.expect_error(StatusCode::NOT_FOUND, message).await;
    }
    s.get(&other, "/v2/users/olga").ok().await;
}

async fn users_are_listed_sorted_by_id(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    for id in ["zed", "Bob", "alice", "al_b", "carol", "al-b"] {
        s.post(&admin, "/v2/users")
            .case(format!("{id:?}"))
            .json(json!({"id": id}))
            .expect(StatusCode::CREATED)
            .await;
    }
    assert_eq!(
        user_ids(&s, &admin).await,
        ["Bob", "admin", "al-b", "al_b", "alice", "carol", "zed"]
    );
    let list = s.get(&admin, "/v2/users").ok().await;
    for u in list.as_array().unwrap() {
        assert_eq!(keys_of(u), USER_KEYS, "{u}");
        assert_eq!(u["tenant"], "acme");
    }
    // Another tenant sees only its own.
    let other = s.create_tenant("other", 0).await;
    assert_eq!(user_ids(&s, &other).await, ["admin"]);
    // The superadmin's /v2/users is the superadmin tenant's.
    assert_eq!(user_ids(&s, BOOTSTRAP_KEY).await, ["admin"]);
}

async fn put_changes_role_and_description(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let created = s
        .post(&admin, "/v2/users")
        .json(json!({"id": "alice", "description": "Ops"}))
        .expect(StatusCode::CREATED)
        .await;
    let alice = s
        .post(&admin, "/v2/users/alice/apikeys")
        .expect(StatusCode::CREATED)
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    // A user may write.
    s.put(&alice, "/v3/namespaces/a1").ok().await;

    let body = s
        .put(&admin, "/v2/users/alice")
        .json(json!({"role": "viewer"}))
        .ok()
        .await;
    assert_eq!(
        body,
        json!({"id": "alice", "tenant": "acme", "role": "viewer", "description": "Ops", "createTime": created["createTime"]})
    );
    // The new role applies at once.
    s.put(&alice, "/v3/namespaces/a2")
        .expect_error(StatusCode::FORBIDDEN, None)
        .await;

    let body = s
        .put(&admin, "/v2/users/alice")
        .json(json!({"description": "New"}))
        .ok()
        .await;
    assert_eq!(
        (body["role"].as_str(), body["description"].as_str()),
        (Some("viewer"), Some("New"))
    );
    let body = s
        .put(&admin, "/v2/users/alice")
        .json(json!({"id": "alice", "role": "admin"}))
        .ok()
        .await;
    assert_eq!(
        (body["role"].as_str(), body["description"].as_str()),
        (Some("admin"), Some("New"))
    );
    let got = s.get(&admin, "/v2/users/alice").ok().await;
    assert_eq!(got, body);
    // Now alice manages users.
    assert_eq!(user_ids(&s, &alice).await, ["admin", "alice"]);

    // Errors change nothing.
    s.expect_bad_bodies(
        &admin,
        Method::PUT,
        "/v2/users/alice",
        [
            json!({"id": "bob", "role": "user"}),
            json!({"role": "boss"}),
            json!({"role": "superadmin"}),
            json!({"role": 3}),
            json!({"description": false}),
            json!([]),
        ],
    )
    .await;
    let again = s.get(&admin, "/v2/users/alice").ok().await;
    assert_eq!(again, body);
}

async fn last_admin_is_protected(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let keep = "Tenant 'acme' must keep at least one admin.";
    for role in ["user", "viewer"] {
        s.put(&admin, "/v2/users/admin")
            .case(format!("{role:?}"))
            .json(json!({"role": role}))
            .expect_error(StatusCode::CONFLICT, keep)
            .await;
    }
    s.delete(&admin, "/v2/users/admin")
        .expect_error(StatusCode::CONFLICT, keep)
        .await;
    // Still the admin.
    assert_eq!(user_ids(&s, &admin).await, ["admin"]);
    // Changes that keep the role are fine for the last admin.
    assert_eq!(
        s.put(&admin, "/v2/users/admin")
            .json(json!({"role": "admin", "description": "the boss"}))
            .ok()
            .await["description"],
        "the boss"
    );

    // With a second admin, the first may go.
    let boss = s.create_user(&admin, "boss", "admin").await;
    assert_eq!(
        s.put(&boss, "/v2/users/admin")
            .json(json!({"role": "user"}))
            .ok()
            .await["role"],
        "user"
    );
    // Now boss is the last one: it may not demote or delete itself, nor can anyone else.
    s.put(&boss, "/v2/users/boss")
        .json(json!({"role": "viewer"}))
        .expect_error(StatusCode::CONFLICT, keep)
        .await;
    s.delete(&boss, "/v2/users/boss")
        .expect_error(StatusCode::CONFLICT, keep)
        .await;
    // A non-admin can be deleted freely.
    s.delete(&boss, "/v2/users/admin").expect_empty_ok().await;
    assert_eq!(user_ids(&s, &boss).await, ["boss"]);

    // The superadmin tenant is protected the same way.
    s.put(BOOTSTRAP_KEY, "/v2/users/admin")
        .json(json!({"role": "user"}))
        .expect_error(
            StatusCode::CONFLICT,
            "Tenant 'superadmin' must keep at least one admin.",
        )
        .await;
    s.delete(BOOTSTRAP_KEY, "/v2/users/admin")
        .expect_error(
            StatusCode::CONFLICT,
            "Tenant 'superadmin' must keep at least one admin.",
        )
        .await;
}

async fn delete_user_cascades(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let k1 = s.create_user(&admin, "alice", "user").await;
    let k2 = s
        .post(&admin, "/v2/users/alice/apikeys")
        .expect(StatusCode::CREATED)
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    s.put(&k1, "/v2/profile")
        .json(json!({"theme": "dark"}))
        .ok()
        .await;
    let token = s.get(&k2, "/token").ok().await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for key in [&k1, &k2, &token] {
        assert!(key_works(&s, key).await);
    }

    s.delete(&admin, "/v2/users/alice").expect_empty_ok().await;
    for key in [&k1, &k2, &token] {
        assert!(!key_works(&s, key).await, "{key} still works");
    }
    s.get(&admin, "/v2/users/alice")
        .expect_error(StatusCode::NOT_FOUND, "User 'alice' not found.")
        .await;
    s.delete(&admin, "/v2/users/alice")
        .expect_error(StatusCode::NOT_FOUND, None)
        .await;
    assert_eq!(user_ids(&s, &admin).await, ["admin"]);

    // A new alice starts without keys and without a profile.
    let k3 = s.create_user(&admin, "alice", "user").await;
    let keys = s.get(&admin, "/v2/users/alice/apikeys").ok().await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    s.get(&k3, "/v2/profile")
        .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
        .await;
    assert!(!key_works(&s, &k1).await);
}

async fn api_key_lifecycle(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    s.post(&admin, "/v2/users")
        .json(json!({"id": "alice"}))
        .expect(StatusCode::CREATED)
        .await;

    let before = now_ms();
    let first = s
        .post(&admin, "/v2/users/alice/apikeys")
        .json(json!({"description": "ci"}))
        .expect(StatusCode::CREATED)
        .await;
    let after = now_ms();
    let mut with_key = KEY_KEYS.to_vec();
    with_key.push("key");
    with_key.sort();
    assert_eq!(keys_of(&first), with_key, "{first}");
    let k1 = first["key"].as_str().unwrap().to_string();
    assert!(k1.starts_with("crk_") && k1.len() == 47, "{k1}");
    assert!(
        k1[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{k1}"
    );
    assert_eq!(first["prefix"], json!(&k1[..8]));
    assert_eq!(first["description"], "ci");
    assert_eq!(first["expireTime"], Value::Null);
    assert_eq!(first["lastUsedTime"], Value::Null);
    let created = first["createTime"].as_i64().unwrap();
    assert!(before - 1000 <= created && created <= after + 1000, "{created}");
    let id1 = first["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id1).is_ok(), "{id1}");

    // Keys created later are listed later.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let expire = now_ms() + 3_600_000;
    let second = s
        .post(&admin, "/v2/users/alice/apikeys")
        .json(json!({"description": "expiring", "expireTime": expire}))
        .expect(StatusCode::CREATED)
        .await;
    assert_eq!(second["expireTime"], json!(expire));
    let k2 = second["key"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let third = s
        .post(&admin, "/v2/users/alice/apikeys")
        .expect(StatusCode::CREATED)
        .await;
    assert_eq!(third["description"], "");
    let k3 = third["key"].as_str().unwrap().to_string();
    assert!(k1 != k2 && k2 != k3 && k1 != k3);

    let list = s.get(&admin, "/v2/users/alice/apikeys").ok().await;
    let list = list.as_array().unwrap().clone();
    let ids: Vec<&Value> = list.iter().map(|k| &k["id"]).collect();
    assert_eq!(ids, [&first["id"], &second["id"], &third["id"]], "oldest first");
    for (listed, created) in list.iter().zip([&first, &second, &third]) {
        assert_eq!(keys_of(listed), KEY_KEYS, "no secret in a list: {listed}");
        let mut expected = created.clone();
        expected.as_object_mut().unwrap().remove("key");
        assert_eq!(listed, &expected);
    }
    // One key, without its secret.
    let path1 = format!("/v2/users/alice/apikeys/{id1}");
    let one = s.get(&admin, &path1).ok().await;
    assert_eq!(one, list[0]);

    // Each key authenticates as alice; a use is recorded.
    for key in [&k1, &k2, &k3] {
        assert!(key_works(&s, key).await);
    }
    let mut used = Value::Null;
    for _ in 0..50 {
        let one = s.get(&admin, &path1).ok().await;
        used = one["lastUsedTime"].clone();
        if !used.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let used = used.as_i64().expect("lastUsedTime recorded");
    assert!(used >= created && used <= now_ms() + 1000, "{used}");

    // Revoking takes effect at once, for that key only.
    s.delete(&admin, &path1).expect_empty_ok().await;
    assert!(!key_works(&s, &k1).await);
    assert!(key_works(&s, &k2).await);
    assert!(key_works(&s, &k3).await);
    let gone = format!("API key '{id1}' of user 'alice' not found.");
    expect_each_error(
        [s.get(&admin, &path1), s.delete(&admin, &path1)],
        StatusCode::NOT_FOUND,
        &gone,
    )
    .await;
    let list = s.get(&admin, "/v2/users/alice/apikeys").ok().await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

async fn api_key_errors(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let alice = s.create_user(&admin, "alice", "user").await;
    let keys = s.get(&admin, "/v2/users/alice/apikeys").ok().await;
    let alice_key_id = keys[0]["id"].as_str().unwrap().to_string();

    // A key id that is not a UUID names no key.
    let not_uuid = "/v2/users/alice/apikeys/not-a-uuid";
    expect_each_error(
        [s.get(&admin, not_uuid), s.delete(&admin, not_uuid)],
        StatusCode::NOT_FOUND,
        "API key 'not-a-uuid' of user 'alice' not found.",
    )
    .await;
    let unknown = uuid::Uuid::new_v4();
    s.get(&admin, &format!("/v2/users/alice/apikeys/{unknown}"))
        .expect_error(
            StatusCode::NOT_FOUND,
            &format!("API key '{unknown}' of user 'alice' not found."),
        )
        .await;
    // A key is found only under its own user.
    let path = format!("/v2/users/admin/apikeys/{alice_key_id}");
    let msg = format!("API key '{alice_key_id}' of user 'admin' not found.");
    expect_each_error(
        [s.get(&admin, &path), s.delete(&admin, &path)],
        StatusCode::NOT_FOUND,
        msg.as_str(),
    )
    .await;
    assert!(key_works(&s, &alice).await);
    // ... and only in its own tenant.
    let other = s.create_tenant("other", 0).await;
    s.create_user(&other, "alice", "user").await;
    s.delete(&other, &format!("/v2/users/alice/apikeys/{alice_key_id}"))
        .expect_error(
            StatusCode::NOT_FOUND,
            &format!("API key '{alice_key_id}' of user 'alice' not found."),
        )
        .await;
    assert!(key_works(&s, &alice).await);

    // Keys of an unknown user.
    expect_each_error(
        [
            s.get(&admin, "/v2/users/ghost/apikeys"),
            s.post(&admin, "/v2/users/ghost/apikeys"),
        ],
        StatusCode::NOT_FOUND,
        "User 'ghost' not found.",
    )
    .await;
    let ghost_key = format!("/v2/users/ghost/apikeys/{alice_key_id}");
    expect_each_error(
        [s.get(&admin, &ghost_key), s.delete(&admin, &ghost_key)],
        StatusCode::NOT_FOUND,
        None,
    )
    .await;

    // Bad bodies: an expiry that is not an integer or not in the future.
    s.expect_bad_bodies(
        &admin,
        Method::POST,
        "/v2/users/alice/apikeys",
        [
            json!({"expireTime": now_ms() - 1000}),
            json!({"expireTime": 0}),
            json!({"expireTime": "tomorrow"}),
            json!({"expireTime": 1.5e12}),
            json!({"description": 5}),
            json!([]),
        ],
    )
    .await;
    let keys = s.get(&admin, "/v2/users/alice/apikeys").ok().await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "no key was created: {keys}");
}

async fn profile_lifecycle(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let alice = s.create_user(&admin, "alice", "user").await;
    s.get(&alice, "/v2/profile")
        .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
        .await;

    let profile =
        json!({"theme": "dark", "defaultNamespace": "dev", "nested": {"a": [1, 2, null], "b": true}});
    assert_eq!(
        s.put(&alice, "/v2/profile").json(profile.clone()).ok().await,
        profile
    );
    assert_eq!(s.get(&alice, "/v2/profile").ok().await, profile);
    // A PUT replaces the whole object.
    let second = json!({"theme": "light"});
    assert_eq!(
        s.put(&alice, "/v2/profile").json(second.clone()).ok().await,
        second
    );
    assert_eq!(s.get(&alice, "/v2/profile").ok().await, second);
    assert_eq!(s.put(&alice, "/v2/profile").json(json!({})).ok().await, json!({}));
    s.put(&alice, "/v2/profile").json(second.clone()).ok().await;

    // Not an object: 400, and nothing changes.
    s.expect_bad_bodies(
        &alice,
        Method::PUT,
        "/v2/profile",
        [
            json!([]),
            json!([{"a": 1}]),
            json!("dark"),
            json!(5),
            json!(null),
            json!(true),
        ],
    )
    .await;
    s.put(&alice, "/v2/profile")
        .expect_error(StatusCode::BAD_REQUEST, None)
        .await;
    assert_eq!(s.get(&alice, "/v2/profile").ok().await, second);

    // At most 64 KiB: `{"b":"..."}` is 8 bytes plus the string.
    let exact = format!(r#"{{"b":"{}"}}"#, "x".repeat(64 * 1024 - 8));
    assert_eq!(exact.len(), 64 * 1024);
    let stored = s
        .put(&alice, "/v2/profile")
        .with(|r| r.body(exact.clone()))
        .ok()
        .await;
    assert_eq!(stored["b"].as_str().unwrap().len(), 64 * 1024 - 8);
    let over = format!(r#"{{"b":"{}"}}"#, "x".repeat(64 * 1024 - 7));
    s.put(&alice, "/v2/profile")
        .with(|r| r.body(over))
        .expect_error(StatusCode::BAD_REQUEST, None)
        .await;
    let big = json!({"blob": "y".repeat(100_000)});
    s.put(&alice, "/v2/profile")
        .json(big)
        .expect_error(StatusCode::BAD_REQUEST, None)
        .await;
    assert_eq!(s.get(&alice, "/v2/profile").ok().await, stored);

    s.delete(&alice, "/v2/profile").expect_empty_ok().await;
    s.get(&alice, "/v2/profile")
        .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
        .await;
    // Deleting when there is none is fine too.
    s.delete(&alice, "/v2/profile").expect_empty_ok().await;
}

async fn profiles_are_per_user(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let alice = s.create_user(&admin, "alice", "user").await;
    let bob = s.create_user(&admin, "bob", "user").await;
    let vic = s.create_user(&admin, "vic", "viewer").await;
    let other = s.create_tenant("other", 0).await;
    let other_alice = s.create_user(&other, "alice", "user").await;

    s.put(&alice, "/v2/profile")
        .json(json!({"who": "alice"}))
        .ok()
        .await;
    for key in [&bob, &vic, &admin, &other_alice] {
        s.get(key, "/v2/profile")
            .case(format!("{key:?}"))
            .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
            .await;
    }
    // Every role may keep a profile, a viewer too.
    for (key, who) in [(&bob, "bob"), (&vic, "vic"), (&other_alice, "other-alice")] {
        s.put(key, "/v2/profile")
            .case(format!("{key:?}, {who:?}"))
            .json(json!({"who": who}))
            .ok()
            .await;
    }
    for (key, who) in [
        (&alice, "alice"),
        (&bob, "bob"),
        (&vic, "vic"),
        (&other_alice, "other-alice"),
    ] {
        assert_eq!(
            s.get(key, "/v2/profile")
                .case(format!("{key:?}, {who:?}"))
                .ok()
                .await,
            json!({"who": who})
        );
    }
    // Deleting one leaves the others.
    s.delete(&bob, "/v2/profile").expect_empty_ok().await;
    s.get(&bob, "/v2/profile")
        .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
        .await;
    for (key, who) in [(&alice, "alice"), (&vic, "vic"), (&other_alice, "other-alice")] {
        assert_eq!(
            s.get(key, "/v2/profile")
                .case(format!("{key:?}, {who:?}"))
                .ok()
                .await,
            json!({"who": who})
        );
    }
    // Two keys of one user share its profile.
    let alice2 = s
        .post(&admin, "/v2/users/alice/apikeys")
        .expect(StatusCode::CREATED)
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.get(&alice2, "/v2/profile").ok().await, json!({"who": "alice"}));
}

/// Two admins removing each other at the same moment: one must win, one admin must stay.
async fn concurrent_admin_removals_keep_one_admin(db: Db) {
    let s = TestServer::start(db).await;
    for round in 0..12 {
        let tenant = format!("t{round}");
        let admin = s.create_tenant(&tenant, 0).await;
        let boss = s.create_user(&admin, "boss", "admin").await;
        let (method, body) = if round % 2 == 0 {
            (Method::PUT, Some(json!({"role": "user"})))
        } else {
            (Method::DELETE, None)
        };
        let (a, b) = tokio::join!(
            s.req(&admin, method.clone(), "/v2/users/boss")
                .json_opt(body.clone())
                .send(),
            s.req(&boss, method.clone(), "/v2/users/admin")
                .json_opt(body.clone())
                .send(),
        );
        let statuses = [a.status(), b.status()];
        assert_eq!(
            statuses.iter().filter(|st| **st == StatusCode::OK).count(),
            1,
            "round {round}: {statuses:?}"
        );
        let admins = s
            .sql_count(&format!(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' \
                 AND tenant_id = (SELECT id FROM tenants WHERE name = '{tenant}')"
            ))
            .await;
        assert_eq!(admins, 1, "round {round}: {statuses:?}");
    }
}

both_stores!(
    create_user_answers_201_with_the_user,
    duplicate_user_is_409,
    invalid_user_input_is_400,
    unknown_user_is_404,
    users_are_listed_sorted_by_id,
    put_changes_role_and_description,
    last_admin_is_protected,
    delete_user_cascades,
    api_key_lifecycle,
    api_key_errors,
    profile_lifecycle,
    profiles_are_per_user,
    concurrent_admin_removals_keep_one_admin,
);
