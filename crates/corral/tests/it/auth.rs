//! Authentication (README 3, coopr-v2.md 4): the three credential forms valid, wrong and
//! missing, access tokens, the exact 401 texts with their challenge header, and the life of
//! an API key (revocation, user deletion, expiry, last use, format, shown once).

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer, basic, expect_json, wall_clock_ms};
use crate::helpers::IntoReq;

const INVALID: &str = "Invalid credentials.";
const MALFORMED: &str = "Malformed Authorization header.";
/// A well-formed API key that no one holds.
const STRANGER_KEY: &str = "crk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
/// A well-formed access token that was never minted.
const STRANGER_TOKEN: &str = "crt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Tenant `acme` with its `admin`, `alice` (role user) and `bob` (role viewer). Each of them,
/// and the bootstrap superadmin, stores the profile `{"who": "<user>@<tenant>"}`, so a
/// `GET /v2/profile` tells which identity a credential authenticated as.
struct Acme {
    s: TestServer,
    admin: String,
    alice: String,
    bob: String,
}

async fn acme(db: Db) -> Acme {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let alice = s.create_user(&admin, "alice", "user").await;
    let bob = s.create_user(&admin, "bob", "viewer").await;
    for (key, who) in [
        (admin.as_str(), "admin@acme"),
        (alice.as_str(), "alice@acme"),
        (bob.as_str(), "bob@acme"),
        (BOOTSTRAP_KEY, "admin@superadmin"),
    ] {
        s.put(key, "/v2/profile")
            .case(format!("{key:?}, {who:?}"))
            .json(json!({ "who": who }))
            .ok()
            .await;
    }
    Acme { s, admin, alice, bob }
}

/// The three Coopr headers on a request.
fn coopr(req: RequestBuilder, user: &str, tenant: &str, key: &str) -> RequestBuilder {
    req.header("Coopr-UserID", user)
        .header("Coopr-TenantID", tenant)
        .header("Coopr-ApiKey", key)
}

/// Sends a `GET /v2/profile` built by `req` and answers who it authenticated as.
async fn whoami(req: RequestBuilder) -> String {
    let body = req.into_req().ok().await;
    body["who"].as_str().expect("who").to_string()
}

impl Acme {
    fn profile(&self) -> RequestBuilder {
        self.s.anon(Method::GET, "/v2/profile")
    }

    fn with_auth(&self, value: &str) -> RequestBuilder {
        self.profile().header("Authorization", value)
    }

    /// Who `cred` authenticates as, sent as a bearer credential.
    async fn bearer_is(&self, cred: &str) -> String {
        whoami(self.profile().bearer_auth(cred)).await
    }

    /// Asserts that each of `creds` is refused as a bearer credential (401, "Invalid
    /// credentials."), naming the refused one on failure.
    async fn refused_as_bearer<C: AsRef<str>>(&self, creds: impl IntoIterator<Item = C>) {
        for cred in creds {
            let cred = cred.as_ref();
            self.profile()
                .bearer_auth(cred)
                .into_req()
                .case(cred)
                .expect_unauthorized(INVALID)
                .await;
        }
    }

    /// Asserts that alice's API key `key` is refused in the Coopr headers and in Basic.
    async fn alice_key_refused(&self, key: &str) {
        coopr(self.profile(), "alice", "acme", key)
            .into_req()
            .case("Coopr headers")
            .expect_unauthorized(INVALID)
            .await;
        self.with_auth(&basic("alice@acme", key))
            .into_req()
            .case("Basic")
            .expect_unauthorized(INVALID)
            .await;
    }
}

async fn coopr_headers_authenticate_their_user(db: Db) {
    let a = acme(db).await;
    assert_eq!(
        whoami(coopr(a.profile(), "alice", "acme", &a.alice)).await,
        "alice@acme"
    );
    assert_eq!(
        whoami(coopr(a.profile(), "bob", "acme", &a.bob)).await,
        "bob@acme"
    );
    // The role is the user's: the admin may list users, alice may not.
    let users = coopr(a.s.anon(Method::GET, "/v2/users"), "admin", "acme", &a.admin)
        .into_req()
        .ok()
        .await;
    assert_eq!(users.as_array().unwrap().len(), 3, "{users}");
    coopr(a.s.anon(Method::GET, "/v2/users"), "alice", "acme", &a.alice)
        .into_req()
        .expect_error(StatusCode::FORBIDDEN, "user unauthorized, must be admin.")
        .await;
    // Header names are case-insensitive (HTTP).
    assert_eq!(
        a.profile()
            .header("coopr-userid", "alice")
            .header("COOPR-TENANTID", "acme")
            .header("Coopr-Apikey", &a.alice)
            .into_req()
            .ok()
            .await["who"],
        "alice@acme"
    );
}

async fn coopr_headers_with_a_wrong_part_are_invalid_credentials(db: Db) {
    let a = acme(db).await;
    let cases = [
        ("wrong key", "alice", "acme", STRANGER_KEY),
        ("garbage key", "alice", "acme", "not-a-key"),
        ("key of another user", "alice", "acme", a.bob.as_str()),
        ("the admin's key for alice", "alice", "acme", a.admin.as_str()),
        ("unknown user", "zed", "acme", a.alice.as_str()),
        ("unknown tenant", "alice", "nosuch", a.alice.as_str()),
        ("another existing tenant", "alice", "superadmin", a.alice.as_str()),
        ("the bootstrap key in acme", "admin", "acme", BOOTSTRAP_KEY),
        ("a token as if it were a key", "alice", "acme", STRANGER_TOKEN),
    ];
    for (case, user, tenant, key) in cases {
        coopr(a.profile(), user, tenant, key)
            .into_req()
            .case(case)
            .expect_unauthorized(INVALID)
            .await;
    }
    // An unknown tenant is 401 even where the path would otherwise be a 404: a caller cannot
    // learn which tenants (or namespaces) exist.
    for path in ["/v3/namespaces/nosuch", "/v2/tenants/nosuch", "/v2/users/nosuch"] {
        coopr(a.s.anon(Method::GET, path), "admin", "nosuch", &a.admin)
            .into_req()
            .case(format!("{path:?}"))
            .expect_unauthorized(INVALID)
            .await;
    }
}

async fn coopr_headers_missing_one_name_it(db: Db) {
    let a = acme(db).await;
    let cases: [(&[(&str, &str)], &str); 7] = [
        (
            &[("Coopr-TenantID", "acme"), ("Coopr-ApiKey", "k")],
            "Coopr-UserID not found in request headers.",
        ),
        (
            &[("Coopr-ApiKey", "k")],
            "Coopr-UserID not found in request headers.",
        ),
        (
            &[("Coopr-TenantID", "acme")],
            "Coopr-UserID not found in request headers.",
        ),
        (
            &[("Coopr-UserID", "alice"), ("Coopr-ApiKey", "k")],
            "Coopr-TenantID not found in request headers.",
        ),
        (
            &[("Coopr-UserID", "alice")],
            "Coopr-TenantID not found in request headers.",
        ),
        (
            &[("Coopr-UserID", "alice"), ("Coopr-TenantID", "acme")],
            "Coopr-ApiKey not found in request headers.",
        ),
        (&[], "Authentication required."),
    ];
    for (headers, message) in cases {
        let mut req = a.profile();
        for (name, value) in headers {
            // A real key where one is sent: the missing header alone is the fault.
            let value = if *value == "k" { a.alice.as_str() } else { value };
            req = req.header(*name, value);
        }
        req.into_req()
            .case(format!("{headers:?}, {message:?}"))
            .expect_unauthorized(message)
            .await;
    }
    // HEAD carries the same status and challenge, without a body.
    let resp = a.s.anon(Method::HEAD, "/v2/profile").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"corral\"");
    assert_eq!(resp.text().await.unwrap(), "");
}

async fn bearer_accepts_api_keys_and_access_tokens(db: Db) {
    let a = acme(db).await;
    assert_eq!(a.bearer_is(&a.alice).await, "alice@acme");
    assert_eq!(a.bearer_is(&a.bob).await, "bob@acme");
    // GET /token and POST /token (a body, JSON or not, is ignored).
    let mut tokens = Vec::new();
    for req in [
        a.s.call(&a.alice, Method::GET, "/token"),
        a.s.call(&a.alice, Method::POST, "/token"),
        a.s.call(&a.alice, Method::POST, "/token")
            .json(&json!({"ignored": true})),
        a.s.call(&a.alice, Method::POST, "/token").body("not json {"),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.headers()["content-type"], "application/json; charset=utf-8");
        let body = expect_json(resp, StatusCode::OK).await;
        let obj = body.as_object().unwrap();
        let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["access_token", "expires_in", "token_type"], "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        let token = body["access_token"].as_str().unwrap().to_string();
        assert_secret_format(&token, "crt_");
        tokens.push(token);
    }
    let mut distinct = tokens.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), tokens.len(), "every mint is a new token");
    for t in &tokens {
        assert_eq!(a.bearer_is(t).await, "alice@acme");
    }
    // A token minted from a token, and tokens minted with the other credential forms.
    let second = a.s.mint_token(&tokens[0]).await;
    assert_eq!(a.bearer_is(&second).await, "alice@acme");
    let via_basic =
        a.s.req_anon(Method::GET, "/token")
            .with(|r| r.header("Authorization", basic("alice@acme", &a.alice)))
            .ok()
            .await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
    assert_eq!(a.bearer_is(&via_basic).await, "alice@acme");
    let bob_token = coopr(a.s.anon(Method::POST, "/token"), "bob", "acme", &a.bob)
        .into_req()
        .ok()
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(a.bearer_is(&bob_token).await, "bob@acme");
    // A token carries its user's role: bob's is still a viewer's, the admin's an admin's.
    a.s.put(&bob_token, "/v3/namespaces/dev")
        .expect_error(StatusCode::FORBIDDEN, None)
        .await;
    let admin_token = a.s.mint_token(&a.admin).await;
    a.s.get(&admin_token, "/v2/users").ok().await;
    // Unknown secrets of either kind.
    for secret in [STRANGER_KEY, STRANGER_TOKEN, "whatever"] {
        a.profile()
            .bearer_auth(secret)
            .into_req()
            .case(format!("{secret:?}"))
            .expect_unauthorized(INVALID)
            .await;
        a.s.get(secret, "/token")
            .case(format!("{secret:?}"))
            .expect_unauthorized(INVALID)
            .await;
    }
    // No credentials: no token.
    for method in [Method::GET, Method::POST] {
        a.s.req_anon(method, "/token")
            .expect_unauthorized("Authentication required.")
            .await;
    }
}

async fn basic_with_user_at_tenant(db: Db) {
    let a = acme(db).await;
    assert_eq!(
        whoami(a.with_auth(&basic("alice@acme", &a.alice))).await,
        "alice@acme"
    );
    assert_eq!(
        whoami(a.with_auth(&basic("admin@superadmin", BOOTSTRAP_KEY))).await,
        "admin@superadmin"
    );
    let cases = [
        ("wrong key", basic("alice@acme", STRANGER_KEY)),
        ("key of another user", basic("alice@acme", &a.bob)),
        ("unknown user", basic("zed@acme", &a.alice)),
        ("unknown tenant", basic("alice@nosuch", &a.alice)),
        ("another tenant", basic("alice@superadmin", &a.alice)),
        ("empty tenant", basic("alice@", &a.alice)),
    ];
    for (case, value) in cases {
        a.with_auth(&value)
            .into_req()
            .case(case)
            .expect_unauthorized(INVALID)
            .await;
    }
}

async fn basic_with_a_bare_user_name_needs_a_unique_id(db: Db) {
    let a = acme(db).await;
    // alice exists only in acme.
    assert_eq!(whoami(a.with_auth(&basic("alice", &a.alice))).await, "alice@acme");
    // `admin` exists in superadmin and in acme: ambiguous even with a valid key.
    a.with_auth(&basic("admin", &a.admin))
        .into_req()
        .expect_unauthorized(INVALID)
        .await;
    a.with_auth(&basic("admin", BOOTSTRAP_KEY))
        .into_req()
        .expect_unauthorized(INVALID)
        .await;
    // An id that exists nowhere.
    a.with_auth(&basic("nobody", &a.alice))
        .into_req()
        .expect_unauthorized(INVALID)
        .await;
    // Once another tenant has an alice too, the bare name is ambiguous: 401 ...
    let beta = a.s.create_tenant("beta", 0).await;
    let beta_alice = a.s.create_user(&beta, "alice", "viewer").await;
    for key in [&a.alice, &beta_alice] {
        a.with_auth(&basic("alice", key))
            .into_req()
            .case(format!("{key:?}"))
            .expect_unauthorized(INVALID)
            .await;
    }
    // ... while the qualified forms still work for each of them.
    assert_eq!(
        whoami(a.with_auth(&basic("alice@acme", &a.alice))).await,
        "alice@acme"
    );
    a.with_auth(&basic("alice@beta", &beta_alice))
        .into_req()
        .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
        .await;
    // Unique again once beta's alice is gone.
    a.s.delete(&beta, "/v2/users/alice")
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(whoami(a.with_auth(&basic("alice", &a.alice))).await, "alice@acme");
}

async fn malformed_authorization_values(db: Db) {
    let a = acme(db).await;
    let no_colon = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice@acme")
    );
    let values = [
        "Digest username=\"alice\"".to_string(),
        "Token abc".to_string(),
        format!("Bearer{}", a.alice),
        "Bearer".to_string(),
        "Bearer   ".to_string(),
        "Basic".to_string(),
        "Basic !!!not-base64!!!".to_string(),
        "Basic YWxpY2U=garbage".to_string(),
        // Valid base64 of bytes that are not UTF-8.
        "Basic //79".to_string(),
        no_colon,
        a.alice.clone(),
    ];
    for value in &values {
        a.with_auth(value)
            .into_req()
            .case(value)
            .expect_unauthorized(MALFORMED)
            .await;
    }
    // The Authorization header alone decides: valid Coopr headers beside a malformed one
    // do not rescue the request.
    coopr(a.with_auth("Token abc"), "alice", "acme", &a.alice)
        .into_req()
        .expect_unauthorized(MALFORMED)
        .await;
}

async fn scheme_names_are_case_insensitive(db: Db) {
    let a = acme(db).await;
    let encoded = basic("alice@acme", &a.alice);
    let encoded = encoded.strip_prefix("Basic ").unwrap();
    for (schemes, credential) in [
        (["Bearer", "bearer", "BEARER", "bEaReR"], a.alice.as_str()),
        (["Basic", "basic", "BASIC", "bAsIc"], encoded),
    ] {
        for scheme in schemes {
            let value = format!("{scheme} {credential}");
            assert_eq!(whoami(a.with_auth(&value)).await, "alice@acme", "{scheme}");
        }
    }
}

/// `req` with each `(name, value)` header added.
fn with_headers(mut req: RequestBuilder, headers: &[(&str, &str)]) -> RequestBuilder {
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req
}

async fn coopr_headers_must_agree_with_authorization(db: Db) {
    let a = acme(db).await;
    let token = a.s.mint_token(&a.alice).await;
    let auths = [
        format!("Bearer {}", a.alice),
        format!("Bearer {token}"),
        basic("alice@acme", &a.alice),
        basic("alice", &a.alice),
    ];
    // Agreeing headers are fine, and Coopr-ApiKey is then not needed.
    let agreeing: [&[(&str, &str)]; 3] = [
        &[("Coopr-UserID", "alice"), ("Coopr-TenantID", "acme")],
        &[("Coopr-TenantID", "acme")],
        &[("Coopr-UserID", "alice")],
    ];
    // Disagreeing headers: 401, whichever part disagrees, even when it names a real user or
    // tenant.
    let disagreeing: [&[(&str, &str)]; 5] = [
        &[("Coopr-UserID", "bob")],
        &[("Coopr-TenantID", "superadmin")],
        &[("Coopr-TenantID", "nosuch")],
        &[("Coopr-UserID", "bob"), ("Coopr-TenantID", "acme")],
        &[("Coopr-UserID", "alice"), ("Coopr-TenantID", "superadmin")],
    ];
    for auth in &auths {
        for headers in agreeing {
            let req = with_headers(a.with_auth(auth), headers);
            assert_eq!(whoami(req).await, "alice@acme", "{auth} with {headers:?}");
        }
        for headers in disagreeing {
            with_headers(a.with_auth(auth), headers)
                .into_req()
                .case(format!("{auth} with {headers:?}"))
                .expect_unauthorized(INVALID)
                .await;
        }
    }
    // The full Coopr triple of another user beside alice's key does not switch identity.
    coopr(a.with_auth(&format!("Bearer {}", a.alice)), "bob", "acme", &a.bob)
        .into_req()
        .expect_unauthorized(INVALID)
        .await;
}

/// The key id and secret of a new key of `user`.
async fn new_key(s: &TestServer, admin: &str, user: &str, body: Value) -> (String, String) {
    let created = s.create_key(admin, user, body).await;
    (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    )
}

async fn revoking_a_key_stops_it_and_its_tokens_at_once(db: Db) {
    let a = acme(db).await;
    let (doomed_id, doomed) = new_key(&a.s, &a.admin, "alice", json!({"description": "doomed"})).await;
    let token = a.s.mint_token(&doomed).await;
    let token_of_token = a.s.mint_token(&token).await;
    let token_of_token_of_token = a.s.mint_token(&token_of_token).await;
    let (_, kept) = new_key(&a.s, &a.admin, "alice", json!({})).await;
    let kept_token = a.s.mint_token(&kept).await;
    let live = [
        doomed.as_str(),
        &token,
        &token_of_token,
        &token_of_token_of_token,
        &kept,
        &kept_token,
        &a.alice,
    ];
    for cred in live {
        assert_eq!(a.bearer_is(cred).await, "alice@acme");
    }
    let resp =
        a.s.call(
            &a.admin,
            Method::DELETE,
            &format!("/v2/users/alice/apikeys/{doomed_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("content-type").is_none());
    assert_eq!(resp.text().await.unwrap(), "");
    // At once: no waiting for a cache to expire.
    for cred in [doomed.as_str(), &token, &token_of_token, &token_of_token_of_token] {
        a.profile()
            .bearer_auth(cred)
            .into_req()
            .case(format!("{cred:?}"))
            .expect_unauthorized(INVALID)
            .await;
        a.s.get(cred, "/token")
            .case(format!("{cred:?}"))
            .expect_unauthorized(INVALID)
            .await;
    }
    a.alice_key_refused(&doomed).await;
    // The user's other keys and their tokens live on.
    for cred in [kept.as_str(), &kept_token, &a.alice] {
        assert_eq!(a.bearer_is(cred).await, "alice@acme");
    }
    // The key is gone from the list and cannot be revoked twice.
    let keys = a.s.get(&a.admin, "/v2/users/alice/apikeys").ok().await;
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .all(|k| k["id"] != doomed_id.as_str()),
        "{keys}"
    );
    a.s.delete(&a.admin, &format!("/v2/users/alice/apikeys/{doomed_id}"))
        .expect_error(
            StatusCode::NOT_FOUND,
            &format!("API key '{doomed_id}' of user 'alice' not found."),
        )
        .await;
}

async fn deleting_a_user_stops_its_keys_and_tokens(db: Db) {
    let a = acme(db).await;
    let (_, second) = new_key(&a.s, &a.admin, "alice", json!({})).await;
    let token = a.s.mint_token(&a.alice).await;
    let token_of_second = a.s.mint_token(&second).await;
    let token_of_token = a.s.mint_token(&token).await;
    let creds = [
        a.alice.as_str(),
        &second,
        &token,
        &token_of_second,
        &token_of_token,
    ];
    for cred in creds {
        assert_eq!(a.bearer_is(cred).await, "alice@acme");
    }
    a.s.delete(&a.admin, "/v2/users/alice")
        .expect_status(StatusCode::OK)
        .await;
    a.refused_as_bearer(creds).await;
    coopr(a.profile(), "alice", "acme", &a.alice)
        .into_req()
        .expect_unauthorized(INVALID)
        .await;
    // A new user with the same id does not inherit the old keys (or the old profile).
    let fresh = a.s.create_user(&a.admin, "alice", "user").await;
    a.refused_as_bearer(creds).await;
    a.profile()
        .bearer_auth(&fresh)
        .into_req()
        .expect_error(StatusCode::NOT_FOUND, "Profile not found.")
        .await;
    // Other users are untouched.
    assert_eq!(a.bearer_is(&a.bob).await, "bob@acme");
}

async fn an_expired_key_is_refused(db: Db) {
    let a = acme(db).await;
    let expire = wall_clock_ms() + 1500;
    let created =
        a.s.create_key(
            &a.admin,
            "alice",
            json!({"description": "short", "expireTime": expire}),
        )
        .await;
    assert_eq!(created["expireTime"], expire);
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(a.bearer_is(&key).await, "alice@acme");
    // A token minted from it cannot outlive it.
    let token = a.s.mint_token(&key).await;
    assert_eq!(a.bearer_is(&token).await, "alice@acme");
    let wait = expire - wall_clock_ms() + 100;
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    a.refused_as_bearer([&key, &token]).await;
    a.alice_key_refused(&key).await;
    // The record stays listed with its expiry; the user's other key still works.
    assert_eq!(
        a.s.get(&a.admin, &format!("/v2/users/alice/apikeys/{id}"))
            .ok()
            .await["expireTime"],
        expire
    );
    assert_eq!(a.bearer_is(&a.alice).await, "alice@acme");
}

async fn an_expired_token_is_refused(db: Db) {
    let s = TestServer::start_with(db, |c| c.token_ttl = 1).await;
    let admin = s.create_tenant("acme", 0).await;
    let body = s.get(&admin, "/token").ok().await;
    assert_eq!(body["expires_in"], 1);
    let token = body["access_token"].as_str().unwrap().to_string();
    s.get(&token, "/v2/users").ok().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.get(&token, "/v2/users").expect_unauthorized(INVALID).await;
    // The key it came from is not affected.
    s.get(&admin, "/v2/users").ok().await;
}

async fn expire_time_must_be_a_future_integer(db: Db) {
    let a = acme(db).await;
    let bad = [
        json!({"expireTime": wall_clock_ms() - 60_000}),
        json!({"expireTime": wall_clock_ms() - 1}),
        json!({"expireTime": 0}),
        json!({"expireTime": -5}),
        json!({"expireTime": "tomorrow"}),
        json!({"expireTime": (wall_clock_ms() + 60_000) as f64 + 0.5}),
    ];
    for body in bad {
        a.s.post(&a.admin, "/v2/users/alice/apikeys")
            .case(format!("{body:?}"))
            .json(body)
            .expect_error(StatusCode::BAD_REQUEST, None)
            .await;
    }
    // Nothing was created: alice still has only her first key.
    assert_eq!(
        a.s.get(&a.admin, "/v2/users/alice/apikeys")
            .ok()
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let future = wall_clock_ms() + 86_400_000;
    let created =
        a.s.create_key(&a.admin, "alice", json!({"expireTime": future}))
            .await;
    assert_eq!(created["expireTime"], future);
}

async fn last_used_time_is_recorded(db: Db) {
    let a = acme(db).await;
    let (id, key) = new_key(&a.s, &a.admin, "bob", json!({"description": "probe"})).await;
    let path = format!("/v2/users/bob/apikeys/{id}");
    assert_eq!(a.s.get_json(&a.admin, &path).await["lastUsedTime"], Value::Null);
    let before = wall_clock_ms();
    assert_eq!(a.bearer_is(&key).await, "bob@acme");
    // The use is recorded in the background; give it a moment.
    let mut seen = Value::Null;
    for _ in 0..60 {
        seen = a.s.get_json(&a.admin, &path).await["lastUsedTime"].clone();
        if !seen.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let used = seen
        .as_i64()
        .unwrap_or_else(|| panic!("lastUsedTime not set: {seen}"));
    assert!(
        used >= before - 1000 && used <= wall_clock_ms() + 1000,
        "lastUsedTime {used} is not the time of use ({before})"
    );
    // The list shows the same record.
    let list = a.s.get(&a.admin, "/v2/users/bob/apikeys").ok().await;
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["lastUsedTime"], used);
}

/// `prefix` followed by 43 characters of URL-safe base64 without padding.
fn assert_secret_format(secret: &str, prefix: &str) {
    let rest = secret
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{secret} does not start with {prefix}"));
    assert_eq!(rest.len(), 43, "{secret}");
    assert!(
        rest.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{secret}"
    );
    // 43 characters of unpadded base64 carry 32 bytes: the last one holds 2 data bits only.
    let decoded = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, rest);
    assert_eq!(decoded.map(|b| b.len()).ok(), Some(32), "{secret}");
}

async fn keys_have_the_contract_format_and_are_shown_once(db: Db) {
    let s = TestServer::start(db).await;
    // The tenant's first admin key, a user's key and a recovery admin key.
    let tenant = s
        .req_root(Method::POST, "/v2/tenants")
        .json(json!({"tenant": {"name": "acme", "workers": 0}}))
        .ok()
        .await;
    let admin_key = tenant["admin"]["apikey"].clone();
    let admin = admin_key["key"].as_str().unwrap().to_string();
    s.create_user(&admin, "alice", "user").await;
    let before = wall_clock_ms();
    let user_key = s.create_key(&admin, "alice", json!({"description": "ci"})).await;
    let after = wall_clock_ms();
    let recovery = s
        .req_root(Method::POST, "/v2/tenants/acme/adminkey")
        .json(json!({"description": "recovery"}))
        .ok()
        .await["apikey"]
        .clone();
    let mut secrets = Vec::new();
    for created in [&admin_key, &user_key, &recovery] {
        let secret = created["key"].as_str().unwrap().to_string();
        assert_secret_format(&secret, "crk_");
        assert_eq!(created["prefix"], secret[..8], "{created}");
        let id = created["id"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        assert_eq!(created["expireTime"], Value::Null);
        assert_eq!(created["lastUsedTime"], Value::Null);
        secrets.push(secret);
    }
    assert_eq!(user_key["description"], "ci");
    assert_eq!(recovery["description"], "recovery");
    let created_at = user_key["createTime"].as_i64().unwrap();
    assert!(
        created_at >= before - 1000 && created_at <= after + 1000,
        "{user_key}"
    );
    let mut fields: Vec<&str> = user_key.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "createTime",
            "description",
            "expireTime",
            "id",
            "key",
            "lastUsedTime",
            "prefix"
        ]
    );
    // Every key works (alice's as alice).
    s.get(&secrets[1], "/v3/namespaces").ok().await;
    for k in [&secrets[0], &secrets[2]] {
        s.get(k, "/v2/users").case(format!("{k:?}")).ok().await;
    }
    // Never again: not in one key, not in the lists, not anywhere in those answers.
    let mut reads = Vec::new();
    for (user, created) in [("admin", &admin_key), ("alice", &user_key), ("admin", &recovery)] {
        let id = created["id"].as_str().unwrap();
        reads.push(format!("/v2/users/{user}/apikeys/{id}"));
        reads.push(format!("/v2/users/{user}/apikeys"));
    }
    reads.push("/v2/users".into());
    reads.push("/v2/users/alice".into());
    for path in &reads {
        let resp = s.call(&admin, Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let text = resp.text().await.unwrap();
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{path} shows a secret: {text}");
        }
        let body: Value = serde_json::from_str(&text).unwrap();
        let records = match &body {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for r in records {
            assert!(r.get("key").is_none(), "{path}: {r}");
        }
    }
    // The single key read equals the creation answer minus the secret.
    let id = user_key["id"].as_str().unwrap();
    let mut expected = user_key.clone();
    expected.as_object_mut().unwrap().remove("key");
    let mut got = s.get(&admin, &format!("/v2/users/alice/apikeys/{id}")).ok().await;
    // alice's key was used above: only its last use may have changed.
    assert!(
        got["lastUsedTime"].is_i64() || got["lastUsedTime"].is_null(),
        "{got}"
    );
    got["lastUsedTime"] = Value::Null;
    assert_eq!(got, expected);
}

async fn the_bootstrap_key_is_the_superadmin(db: Db) {
    let s = TestServer::start(db).await;
    s.create_tenant("acme", 0).await;
    let tenants = |req: RequestBuilder| async move {
        let body = req.into_req().ok().await;
        body.as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let everyone = vec!["acme".to_string(), "superadmin".to_string()];
    // Accepted as given (it is not a crk_ key) in every form.
    assert_eq!(tenants(s.root(Method::GET, "/v2/tenants")).await, everyone);
    assert_eq!(
        tenants(coopr(
            s.anon(Method::GET, "/v2/tenants"),
            "admin",
            "superadmin",
            BOOTSTRAP_KEY
        ))
        .await,
        everyone
    );
    assert_eq!(
        tenants(
            s.anon(Method::GET, "/v2/tenants")
                .header("Authorization", basic("admin@superadmin", BOOTSTRAP_KEY))
        )
        .await,
        everyone
    );
    let token = s.mint_token(BOOTSTRAP_KEY).await;
    assert_secret_format(&token, "crt_");
    assert_eq!(
        tenants(s.call(&token, Method::GET, "/v2/tenants")).await,
        everyone
    );
    // It is the key of superadmin/admin, listed by its prefix like any other.
    let keys = s.req_root(Method::GET, "/v2/users/admin/apikeys").ok().await;
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["prefix"], &BOOTSTRAP_KEY[..8]);
    assert!(keys[0].get("key").is_none());
    // Case-sensitive, and only for superadmin/admin.
    let upper = BOOTSTRAP_KEY.to_uppercase();
    s.get(&upper, "/v2/tenants").expect_unauthorized(INVALID).await;
    coopr(s.anon(Method::GET, "/v2/tenants"), "admin", "acme", BOOTSTRAP_KEY)
        .into_req()
        .expect_unauthorized(INVALID)
        .await;
}

async fn a_configured_bootstrap_key_of_any_format_works(db: Db) {
    // README 3.1: the configured bootstrap key is accepted as given, whatever its format --
    // even when it happens to look like an access token, or has the characters Basic and
    // the Coopr headers use as separators.
    for configured in [
        "crt_this-bootstrap-key-looks-like-a-token-0123",
        "k:e@y!#$%&'()*+,-./;<=>?[]^_`{|}~-0123456789",
    ] {
        let s = TestServer::start_with(db, |c| c.bootstrap_apikey = Some(configured.into())).await;
        s.get(configured, "/v2/tenants")
            .case(format!("Bearer {configured}"))
            .expect_status(StatusCode::OK)
            .await;
        coopr(
            s.anon(Method::GET, "/v2/tenants"),
            "admin",
            "superadmin",
            configured,
        )
        .into_req()
        .case(format!("Coopr headers {configured}"))
        .expect_status(StatusCode::OK)
        .await;
        s.req_anon(Method::GET, "/v2/tenants")
            .with(|r| r.header("Authorization", basic("admin@superadmin", configured)))
            .case(format!("Basic {configured}"))
            .expect_status(StatusCode::OK)
            .await;
        let token = s.mint_token(configured).await;
        s.get(&token, "/v2/tenants")
            .case(format!("token of {configured}"))
            .expect_status(StatusCode::OK)
            .await;
        // The harness's usual key is not this server's.
        s.req_root(Method::GET, "/v2/tenants")
            .case(format!("{configured:?}"))
            .expect_unauthorized(INVALID)
            .await;
    }
}

async fn revocation_wins_over_requests_in_flight(db: Db) {
    // A request that read the key just before the revocation committed must not leave it
    // usable afterwards (for example through a credential cache).
    let a = acme(db).await;
    let base = a.s.base.clone();
    for round in 0..30 {
        let (id, key) = new_key(&a.s, &a.admin, "alice", json!({})).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut hammers = Vec::new();
        for _ in 0..6 {
            let (client, stop, key, url) = (
                a.s.client.clone(),
                stop.clone(),
                key.clone(),
                format!("{base}/v3/namespaces"),
            );
            hammers.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = client.get(&url).bearer_auth(&key).send().await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.s.delete(&a.admin, &format!("/v2/users/alice/apikeys/{id}"))
            .case(format!("{round:?}"))
            .expect_status(StatusCode::OK)
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in hammers {
            h.await.unwrap();
        }
        a.s.get(&key, "/v3/namespaces")
            .case(format!("round {round}: revoked key still works"))
            .expect_status(StatusCode::UNAUTHORIZED)
            .await;
    }
}

async fn a_generated_bootstrap_key_is_a_key_like_any_other(db: Db) {
    // README 2.4: without a configured key, one is generated and written to
    // <data-dir>/bootstrap-key with mode 0600; it is a normal crk_ key of superadmin/admin.
    let s = TestServer::start_with(db, |c| c.bootstrap_apikey = None).await;
    let path = s.data_dir.join("bootstrap-key");
    let key = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert_secret_format(&key, "crk_");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    assert_eq!(ids_of(&s.get(&key, "/v2/tenants").ok().await), ["superadmin"]);
    assert_eq!(
        users_status_with(&s, basic("admin@superadmin", &key)).await,
        StatusCode::OK
    );
    // The harness's usual key was not configured, so it is nobody's.
    s.req_root(Method::GET, "/v2/tenants")
        .expect_unauthorized(INVALID)
        .await;
    let base = s.base.clone();
    s.stop().await;
    assert!(
        reqwest::get(format!("{base}/status")).await.is_err(),
        "the server still answers after a clean shutdown"
    );
}

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

async fn users_status_with(s: &TestServer, authorization: String) -> StatusCode {
    s.anon(Method::GET, "/v2/users")
        .header("Authorization", authorization)
        .send()
        .await
        .unwrap()
        .status()
}

both_stores!(
    coopr_headers_authenticate_their_user,
    coopr_headers_with_a_wrong_part_are_invalid_credentials,
    coopr_headers_missing_one_name_it,
    bearer_accepts_api_keys_and_access_tokens,
    basic_with_user_at_tenant,
    basic_with_a_bare_user_name_needs_a_unique_id,
    malformed_authorization_values,
    scheme_names_are_case_insensitive,
    coopr_headers_must_agree_with_authorization,
    revoking_a_key_stops_it_and_its_tokens_at_once,
    deleting_a_user_stops_its_keys_and_tokens,
    an_expired_key_is_refused,
    an_expired_token_is_refused,
    expire_time_must_be_a_future_integer,
    last_used_time_is_recorded,
    keys_have_the_contract_format_and_are_shown_once,
    the_bootstrap_key_is_the_superadmin,
    a_configured_bootstrap_key_of_any_format_works,
    revocation_wins_over_requests_in_flight,
    a_generated_bootstrap_key_is_a_key_like_any_other,
);
