//! The web console's server side (docs/security.md, "Console sessions"): its embedded files
//! under `/ui` with the security headers, sign-in with an API key (JSON and form, the
//! credential forms' user and tenant), the session cookie's attributes, the cookie as a
//! credential of every route with CSRF on change requests, revocation, expiry, sign-out,
//! tampering, the change feed over the cookie, TLS (`Secure`) and a disabled console.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer, check_error, check_unauthorized, expect_json};

const INVALID: &str = "Invalid credentials.";
const CSRF: &str = "CSRF token missing or invalid.";
const CROSS_SITE: &str = "Cross-site request refused.";
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The `Set-Cookie` values of an answer.
fn set_cookies(resp: &Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The one `Set-Cookie` of `name` among `cookies`.
fn set_cookie<'a>(cookies: &'a [String], name: &str) -> &'a str {
    let found: Vec<&String> = cookies
        .iter()
        .filter(|c| c.starts_with(&format!("{name}=")))
        .collect();
    assert_eq!(found.len(), 1, "one Set-Cookie {name} in {cookies:?}");
    found[0]
}

/// The value of a `Set-Cookie`.
fn value_of(set_cookie: &str) -> String {
    let first = set_cookie.split(';').next().unwrap();
    first.split_once('=').unwrap().1.to_string()
}

/// The attributes of a `Set-Cookie`, sorted.
fn attributes(set_cookie: &str) -> Vec<String> {
    let mut a: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|s| s.trim().to_string())
        .collect();
    a.sort();
    a
}

fn assert_security_headers(resp: &Response, what: &str) {
    let h = resp.headers();
    assert_eq!(h["content-security-policy"], CSP, "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["referrer-policy"], "same-origin", "{what}");
}

/// A browser's sign-in form: `GET /ui/session` signed out, answering the form token and its
/// cookie (`corral_csrf=...`).
async fn form_token(s: &TestServer) -> (String, String) {
    let resp = s.anon(Method::GET, "/ui/session").send().await.unwrap();
    assert_security_headers(&resp, "GET /ui/session");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let cookies = set_cookies(&resp);
    let c = set_cookie(&cookies, "corral_csrf");
    assert_eq!(attributes(c), ["HttpOnly", "Path=/ui", "SameSite=Strict"], "{c}");
    let token = value_of(c);
    let body = expect_json(resp, StatusCode::OK).await;
    assert_eq!(body, json!({"signed_in": false, "csrf": token}));
    (token.clone(), format!("corral_csrf={token}"))
}

/// A signed-in browser: its session cookie (`corral_session=...`) and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Browser {
    /// A request with the session cookie and no other credential.
    fn req(&self, s: &TestServer, method: Method, path: &str) -> RequestBuilder {
        s.anon(method, path).header("cookie", &self.cookie)
    }

    /// As [`Browser::req`], with the session's CSRF token.
    fn change(&self, s: &TestServer, method: Method, path: &str) -> RequestBuilder {
        self.req(s, method, path).header("x-csrf-token", &self.csrf)
    }
}

/// Signs in with the JSON `body` (plus the form token), asserting 200 and the cookie.
async fn sign_in(s: &TestServer, mut body: Value) -> (Browser, Value) {
    let (token, form_cookie) = form_token(s).await;
    body["csrf"] = json!(token);
    let resp = s
        .anon(Method::POST, "/ui/session")
        .header("cookie", form_cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    signed_in(resp).await
}

/// Checks a successful sign-in answer and answers the browser it makes.
async fn signed_in(resp: Response) -> (Browser, Value) {
    assert_security_headers(&resp, "POST /ui/session");
    let cookies = set_cookies(&resp);
    let session = set_cookie(&cookies, "corral_session");
    assert_eq!(
        attributes(session),
        ["HttpOnly", "Max-Age=43200", "Path=/", "SameSite=Strict"],
        "{session}"
    );
    let cleared = set_cookie(&cookies, "corral_csrf");
    assert!(cleared.starts_with("corral_csrf=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let value = value_of(session);
    assert!(
        !value.contains("crk_"),
        "the key is sealed, not in clear: {value}"
    );
    let body = expect_json(resp, StatusCode::OK).await;
    assert_eq!(body["signed_in"], json!(true), "{body}");
    let csrf = body["csrf"].as_str().unwrap().to_string();
    (
        Browser {
            cookie: format!("corral_session={value}"),
            csrf,
        },
        body,
    )
}

/// An `application/x-www-form-urlencoded` body, as a browser encodes a form.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |v: &str| {
        v.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A refused sign-in: what, the form cookie, other headers, the body, status and message.
type Refusal<'a> = (
    &'a str,
    Option<&'a str>,
    Vec<(&'a str, &'a str)>,
    Value,
    StatusCode,
    Option<&'a str>,
);

/// Tenant `acme` with its admin, `alice` (user) and `bob` (viewer).
async fn acme(s: &TestServer) -> (String, String, String) {
    let admin = s.create_tenant("acme", 1).await;
    let alice = s.create_user(&admin, "alice", "user").await;
    let bob = s.create_user(&admin, "bob", "viewer").await;
    (admin, alice, bob)
}

/// The file extension's content type, as the console serves it.
fn expected_type(path: &str) -> Option<&'static str> {
    Some(match path.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json; charset=utf-8",
        _ => return None,
    })
}

/// Every file under `crates/corral-api/console`, as (path under it, bytes).
fn console_files() -> Vec<(String, Vec<u8>)> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corral-api/console");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

async fn pages_and_files_are_served_with_security_headers(db: Db) {
    let s = TestServer::start(db).await;
    let files = console_files();
    let index = &files
        .iter()
        .find(|(p, _)| p == "index.html")
        .expect("console/index.html")
        .1;
    // The page, at /ui and for every client-side route under it, without credentials.
    for path in [
        "/ui",
        "/ui/",
        "/ui/hosts",
        "/ui/hosts/10.0.0.5",
        "/ui/instances/x/history",
    ] {
        let resp = s.anon(Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_security_headers(&resp, path);
        assert_eq!(
            resp.headers()["content-type"],
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(resp.headers()["cache-control"], "no-cache", "{path}");
        assert!(resp.headers().contains_key("etag"), "{path}");
        assert_eq!(&resp.bytes().await.unwrap()[..], &index[..], "{path}");
    }
    // Every file, with its type and a validator the browser revalidates with.
    for (rel, bytes) in &files {
        let path = format!("/ui/{rel}");
        let resp = s.anon(Method::GET, &path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_security_headers(&resp, &path);
        if let Some(t) = expected_type(rel) {
            assert_eq!(resp.headers()["content-type"], t, "{path}");
        }
        let etag = resp.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(&resp.bytes().await.unwrap()[..], &bytes[..], "{path}");
        let again = s
            .anon(Method::GET, &path)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_security_headers(&again, &path);
        assert_eq!(again.headers()["etag"], etag.as_str());
        let head = s.anon(Method::HEAD, &path).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
    }
    // A missing asset is the contract's 404, not the page.
    let resp = s.anon(Method::GET, "/ui/assets/missing.js").send().await.unwrap();
    assert_security_headers(&resp, "missing asset");
    check_error(
        "missing asset",
        resp,
        StatusCode::NOT_FOUND,
        Some("No route for GET /ui/assets/missing.js."),
    )
    .await;
    // Only GET (and HEAD) are served.
    let resp = s.anon(Method::POST, "/ui/hosts").send().await.unwrap();
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    check_error(
        "POST /ui/hosts",
        resp,
        StatusCode::METHOD_NOT_ALLOWED,
        Some("Method POST is not allowed for /ui/hosts."),
    )
    .await;
    // The server's root leads a browser to the console.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirect.get(s.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/ui/");
    s.stop().await;
}

async fn sign_in_with_each_form_of_credential(db: Db) {
    let s = TestServer::start(db).await;
    let (_admin, alice, bob) = acme(&s).await;
    // JSON with the key alone: the whoami view, the CSRF token and the end of the session.
    let before = crate::harness::wall_clock_ms();
    let (browser, body) = sign_in(&s, json!({"api_key": alice})).await;
    assert_eq!(body["user"], "alice");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["role"], "user");
    assert_eq!(body["superadmin"], false);
    let expires = body["expires_at"].as_i64().unwrap();
    assert!(
        (before + 43_200_000..=crate::harness::wall_clock_ms() + 43_200_000).contains(&expires),
        "{body}"
    );
    // The session as GET /ui/session tells it, with the same token.
    let resp = browser.req(&s, Method::GET, "/ui/session").send().await.unwrap();
    assert!(set_cookies(&resp).is_empty(), "a signed-in GET sets nothing");
    assert_eq!(expect_json(resp, StatusCode::OK).await, body);
    // The form of an HTML page, with the user and tenant (credential forms a and c).
    let (token, form_cookie) = form_token(&s).await;
    let resp = s
        .anon(Method::POST, "/ui/session")
        .header("cookie", &form_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("api_key", bob.as_str()),
            ("user", "bob"),
            ("tenant", "acme"),
            ("csrf", token.as_str()),
        ]))
        .send()
        .await
        .unwrap();
    let (_, body) = signed_in(resp).await;
    assert_eq!(
        (body["user"].as_str(), body["role"].as_str()),
        (Some("bob"), Some("viewer"))
    );
    // A bare user name (its only tenant), and empty form fields count as absent.
    sign_in(&s, json!({"api_key": alice, "user": "alice"})).await;
    let (token, form_cookie) = form_token(&s).await;
    let resp = s
        .anon(Method::POST, "/ui/session")
        .header("cookie", &form_cookie)
        .header("content-type", "application/x-www-form-urlencoded; charset=UTF-8")
        .body(form(&[
            ("api_key", alice.as_str()),
            ("user", ""),
            ("tenant", ""),
            ("csrf", &token),
        ]))
        .send()
        .await
        .unwrap();
    signed_in(resp).await;
    // The superadmin, with the token in a header instead of the body.
    let (token, form_cookie) = form_token(&s).await;
    let resp = s
        .anon(Method::POST, "/ui/session")
        .header("cookie", &form_cookie)
        .header("x-csrf-token", &token)
        .header("origin", s.base.as_str())
        .json(&json!({"api_key": BOOTSTRAP_KEY}))
        .send()
        .await
        .unwrap();
    let (_, body) = signed_in(resp).await;
    assert_eq!(body["superadmin"], true);
    // Refusals: a key that is not the named user's or tenant's, or no key at all (401); the
    // form without the form cookie, with another token, or from another site (403); a body
    // that is not a form (400). None sets a session cookie.
    let (token, form_cookie) = form_token(&s).await;
    let cases: Vec<Refusal> = vec![
        (
            "wrong user",
            Some(&form_cookie),
            vec![],
            json!({"api_key": alice, "user": "bob", "csrf": token}),
            StatusCode::UNAUTHORIZED,
            Some(INVALID),
        ),
        (
            "wrong tenant",
            Some(&form_cookie),
            vec![],
            json!({"api_key": alice, "tenant": "superadmin", "csrf": token}),
            StatusCode::UNAUTHORIZED,
            Some(INVALID),
        ),
        (
            "unknown key",
            Some(&form_cookie),
            vec![],
            json!({"api_key": "crk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "csrf": token}),
            StatusCode::UNAUTHORIZED,
            Some(INVALID),
        ),
        (
            "empty key",
            Some(&form_cookie),
            vec![],
            json!({"api_key": "", "csrf": token}),
            StatusCode::UNAUTHORIZED,
            Some(INVALID),
        ),
        (
            "no form cookie",
            None,
            vec![],
            json!({"api_key": alice, "csrf": token}),
            StatusCode::FORBIDDEN,
            Some(CSRF),
        ),
        (
            "no token",
            Some(&form_cookie),
            vec![],
            json!({"api_key": alice}),
            StatusCode::FORBIDDEN,
            Some(CSRF),
        ),
        (
            "another token",
            Some(&form_cookie),
            vec![],
            json!({"api_key": alice, "csrf": "A".repeat(43)}),
            StatusCode::FORBIDDEN,
            Some(CSRF),
        ),
        (
            "cross-site origin",
            Some(&form_cookie),
            vec![("origin", "http://evil.example")],
            json!({"api_key": alice, "csrf": token}),
            StatusCode::FORBIDDEN,
            Some(CROSS_SITE),
        ),
        (
            "null origin",
            Some(&form_cookie),
            vec![("origin", "null")],
            json!({"api_key": alice, "csrf": token}),
            StatusCode::FORBIDDEN,
            Some(CROSS_SITE),
        ),
        (
            "cross-site fetch",
            Some(&form_cookie),
            vec![("sec-fetch-site", "cross-site")],
            json!({"api_key": alice, "csrf": token}),
            StatusCode::FORBIDDEN,
            Some(CROSS_SITE),
        ),
        (
            "no api_key",
            Some(&form_cookie),
            vec![],
            json!({"csrf": token}),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "not an object",
            Some(&form_cookie),
            vec![],
            json!("a string"),
            StatusCode::BAD_REQUEST,
            None,
        ),
    ];
    for (what, cookie, headers, body, status, message) in cases {
        let mut req = s.anon(Method::POST, "/ui/session").json(&body);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        assert!(
            !set_cookies(&resp)
                .iter()
                .any(|c| c.starts_with("corral_session=")),
            "{what}"
        );
        assert_security_headers(&resp, what);
        check_error(what, resp, status, message).await;
    }
    let resp = s
        .anon(Method::POST, "/ui/session")
        .header("cookie", &form_cookie)
        .body("{not json")
        .send()
        .await
        .unwrap();
    check_error("not JSON", resp, StatusCode::BAD_REQUEST, None).await;
    s.stop().await;
}

async fn the_cookie_authenticates_and_change_requests_need_the_csrf_token(db: Db) {
    let s = TestServer::start(db).await;
    let (_admin, alice, bob) = acme(&s).await;
    let (browser, _) = sign_in(&s, json!({"api_key": alice})).await;
    // Reads need the cookie alone.
    let who = expect_json(
        browser.req(&s, Method::GET, "/whoami").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        who,
        json!({"tenant": "acme", "user": "alice", "role": "user", "superadmin": false})
    );
    // A change without the token, with another session's or a made-up one: 403, before the
    // body is even looked at; with the session's token it is done.
    let (other, _) = sign_in(&s, json!({"api_key": alice})).await;
    assert_ne!(other.csrf, browser.csrf, "each session has its own token");
    for (what, token) in [
        ("no token", None),
        ("another session's", Some(other.csrf.as_str())),
        ("made up", Some("AAAA")),
    ] {
        let mut req = browser
            .req(&s, Method::PUT, "/v3/namespaces/web")
            .body("{not json");
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        check_error(what, req.send().await.unwrap(), StatusCode::FORBIDDEN, Some(CSRF)).await;
    }
    let resp = s.get(&alice, "/v3/namespaces/web").send().await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "nothing was created");
    let resp = browser
        .change(&s, Method::PUT, "/v3/namespaces/web")
        .json(&json!({"description": "from the console"}))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("x-corral-revision"));
    expect_json(resp, StatusCode::OK).await;
    assert_eq!(
        s.get_json(&alice, "/v3/namespaces/web").await["description"],
        "from the console"
    );
    // A viewer's session with its token is still only a viewer.
    let (viewer, _) = sign_in(&s, json!({"api_key": bob})).await;
    let resp = viewer
        .change(&s, Method::PUT, "/v3/namespaces/v")
        .send()
        .await
        .unwrap();
    check_error("viewer", resp, StatusCode::FORBIDDEN, None).await;
    // Header credentials win over the cookie and are not CSRF-checked.
    let resp = browser
        .req(&s, Method::GET, "/whoami")
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(resp, StatusCode::OK).await["user"], "bob");
    let resp = browser
        .req(&s, Method::PUT, "/v3/namespaces/api")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    let resp = browser
        .req(&s, Method::GET, "/whoami")
        .header("Coopr-UserID", "alice")
        .send()
        .await
        .unwrap();
    check_unauthorized(
        "partial Coopr headers",
        resp,
        "Coopr-TenantID not found in request headers.",
    )
    .await;
    // A cookie that does not open is 401 (never 500), and no cookie is no credential.
    let value = browser.cookie.trim_start_matches("corral_session=");
    let mut flipped = value.to_string().into_bytes();
    let i = flipped.len() - 5;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, cookie) in [
        ("tampered", format!("corral_session={flipped}")),
        (
            "truncated",
            format!("corral_session={}", &value[..value.len() / 2]),
        ),
        ("garbage", "corral_session=garbage".to_string()),
        ("empty", "corral_session=".to_string()),
        ("not base64", "corral_session=v1:%%%".to_string()),
    ] {
        let resp = s
            .anon(Method::GET, "/whoami")
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        check_unauthorized(what, resp, INVALID).await;
    }
    let resp = s
        .anon(Method::GET, "/whoami")
        .header("cookie", "other=1")
        .send()
        .await
        .unwrap();
    check_unauthorized("no session cookie", resp, "Authentication required.").await;
    // A bearer change request needs no CSRF token (there is no ambient credential).
    let resp = s.put(&alice, "/v3/namespaces/plain").send().await;
    expect_json(resp, StatusCode::OK).await;
    s.stop().await;
}

async fn revoking_the_key_ends_the_session(db: Db) {
    let s = TestServer::start(db).await;
    let (admin, _alice, _bob) = acme(&s).await;
    let key = s
        .create_key(&admin, "alice", json!({"description": "console"}))
        .await;
    let (browser, _) = sign_in(&s, json!({"api_key": key["key"]})).await;
    let resp = browser.req(&s, Method::GET, "/whoami").send().await.unwrap();
    expect_json(resp, StatusCode::OK).await;
    // The admin revokes it through the API with its own key.
    let id = key["id"].as_str().unwrap();
    let resp = s
        .delete(&admin, &format!("/v2/users/alice/apikeys/{id}"))
        .send()
        .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let resp = browser.req(&s, Method::GET, "/whoami").send().await.unwrap();
    check_unauthorized("revoked", resp, INVALID).await;
    let resp = browser
        .change(&s, Method::PUT, "/v3/namespaces/x")
        .send()
        .await
        .unwrap();
    check_unauthorized("revoked change", resp, INVALID).await;
    // The console learns it is signed out, and the dead cookie is cleared.
    let resp = browser.req(&s, Method::GET, "/ui/session").send().await.unwrap();
    let cookies = set_cookies(&resp);
    assert!(set_cookie(&cookies, "corral_session").contains("Max-Age=0"));
    set_cookie(&cookies, "corral_csrf");
    assert_eq!(expect_json(resp, StatusCode::OK).await["signed_in"], false);
    // A role change applies to a live session at once, and deleting the user ends it.
    let carol_key = s.create_user(&admin, "carol", "user").await;
    let (carol, _) = sign_in(&s, json!({"api_key": carol_key})).await;
    let resp = carol
        .change(&s, Method::PUT, "/v3/namespaces/c1")
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    s.put(&admin, "/v2/users/carol")
        .json(json!({"role": "viewer"}))
        .ok()
        .await;
    let resp = carol
        .change(&s, Method::PUT, "/v3/namespaces/c2")
        .send()
        .await
        .unwrap();
    check_error("demoted", resp, StatusCode::FORBIDDEN, None).await;
    let resp = carol.req(&s, Method::GET, "/ui/session").send().await.unwrap();
    assert_eq!(expect_json(resp, StatusCode::OK).await["role"], "viewer");
    let resp = s.delete(&admin, "/v2/users/carol").send().await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let resp = carol.req(&s, Method::GET, "/whoami").send().await.unwrap();
    check_unauthorized("user deleted", resp, INVALID).await;
    s.stop().await;
}

async fn sessions_end_and_sign_out_clears_the_cookie(db: Db) {
    let s = TestServer::start_with(db, |c| c.console.session_ttl = 1).await;
    let (_admin, alice, _bob) = acme(&s).await;
    let (token, form_cookie) = form_token(&s).await;
    let resp = s
        .anon(Method::POST, "/ui/session")
        .header("cookie", &form_cookie)
        .json(&json!({"api_key": alice, "csrf": token}))
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(&resp);
    assert!(set_cookie(&cookies, "corral_session").contains("Max-Age=1"));
    let cookie = set_cookie(&cookies, "corral_session")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    expect_json(resp, StatusCode::OK).await;
    let resp = s
        .anon(Method::GET, "/whoami")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let resp = s
        .anon(Method::GET, "/whoami")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    check_unauthorized("expired", resp, INVALID).await;
    s.stop().await;

    let s = TestServer::start(db).await;
    let (_admin, alice, _bob) = acme(&s).await;
    let (browser, _) = sign_in(&s, json!({"api_key": alice})).await;
    let resp = browser
        .req(&s, Method::DELETE, "/ui/session")
        .send()
        .await
        .unwrap();
    check_error("sign-out without token", resp, StatusCode::FORBIDDEN, Some(CSRF)).await;
    let resp = browser
        .change(&s, Method::DELETE, "/ui/session")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_security_headers(&resp, "DELETE /ui/session");
    let cookies = set_cookies(&resp);
    let cleared = set_cookie(&cookies, "corral_session");
    assert!(cleared.starts_with("corral_session=;"), "{cleared}");
    assert_eq!(
        attributes(cleared),
        ["HttpOnly", "Max-Age=0", "Path=/", "SameSite=Strict"]
    );
    // Signed out already: nothing to protect.
    let resp = s.anon(Method::DELETE, "/ui/session").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    s.stop().await;
}

async fn the_change_feed_streams_over_the_cookie(db: Db) {
    let s = TestServer::start(db).await;
    let (_admin, alice, _bob) = acme(&s).await;
    let (browser, _) = sign_in(&s, json!({"api_key": alice})).await;
    // An EventSource: a GET with the cookie and nothing else.
    let mut stream = reqwest::Client::new()
        .get(s.url("/events"))
        .header("cookie", &browser.cookie)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let resp = browser
        .change(&s, Method::PUT, "/v3/namespaces/live")
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("\"live\"") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("the namespace's event in time")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(seen.contains("event: namespace.created"), "{seen}");
    drop(stream);
    s.stop().await;
}

both_stores!(
    pages_and_files_are_served_with_security_headers,
    sign_in_with_each_form_of_credential,
    the_cookie_authenticates_and_change_requests_need_the_csrf_token,
    revoking_the_key_ends_the_session,
    sessions_end_and_sign_out_clears_the_cookie,
    the_change_feed_streams_over_the_cookie,
);

/// A disabled console serves nothing and accepts no session cookie (store-independent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_console_is_not_served() {
    let s = TestServer::start_with(Db::Sqlite, |c| c.console.enabled = false).await;
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/ui"),
        (Method::GET, "/ui/hosts"),
        (Method::GET, "/ui/index.html"),
        (Method::GET, "/ui/session"),
        (Method::POST, "/ui/session"),
        (Method::DELETE, "/ui/session"),
    ] {
        let what = format!("{method} {path}");
        let resp = s.anon(method, path).send().await.unwrap();
        check_error(&what, resp, StatusCode::NOT_FOUND, None).await;
    }
    let resp = s
        .anon(Method::GET, "/whoami")
        .header("cookie", "corral_session=v1:AAAA")
        .send()
        .await
        .unwrap();
    check_unauthorized("cookie ignored", resp, "Authentication required.").await;
    s.stop().await;
}

/// One HTTP/1.1 exchange over TLS: the status, the `Set-Cookie` values and the body.
async fn tls_exchange(
    tls: &crate::helpers::TestTls,
    addr: std::net::SocketAddr,
    request: String,
) -> (u16, Vec<String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tls.connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out).await;
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let cookies = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim().to_string())
        .collect();
    (status, cookies, body.to_string())
}

/// Under TLS every console cookie is `Secure` (store-independent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_under_tls() {
    let certs = tempfile::tempdir().unwrap();
    let tls = crate::helpers::TestTls::new(certs.path());
    let s = TestServer::start_with(Db::Sqlite, |c| {
        c.tls_cert = Some(tls.cert.clone());
        c.tls_key = Some(tls.key.clone());
    })
    .await;
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let (status, cookies, _) = tls_exchange(
        &tls,
        addr,
        "GET /ui/session HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status, 200);
    let form = set_cookie(&cookies, "corral_csrf");
    assert_eq!(
        attributes(form),
        ["HttpOnly", "Path=/ui", "SameSite=Strict", "Secure"]
    );
    let token = value_of(form);
    let body = json!({"api_key": BOOTSTRAP_KEY, "csrf": token}).to_string();
    let (status, cookies, answer) = tls_exchange(
        &tls,
        addr,
        format!(
            "POST /ui/session HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nOrigin: https://localhost\r\n\
             Cookie: corral_csrf={token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        attributes(set_cookie(&cookies, "corral_session")),
        ["HttpOnly", "Max-Age=43200", "Path=/", "SameSite=Strict", "Secure"]
    );
    assert!(set_cookie(&cookies, "corral_csrf").contains("Secure"));
    s.stop().await;
}

/// The method proxy serves a user's service's content on Corral's origin: the session cookie
/// does not authenticate it, and a header-authenticated request's Corral cookies and CSRF
/// token are not forwarded to the service (other cookies are). Store-independent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_method_proxy_neither_takes_nor_forwards_the_session() {
    use crate::services::{deploy, start, svc_path, wait_healthy};
    let s = TestServer::start(Db::Sqlite).await;
    let k = s.create_tenant("acme", 1).await;
    deploy(&s, &k, "Echo", "1.0.0", 1, &[]).await;
    start(&s, &k, "Echo", None, None).await;
    wait_healthy(&s, &k, "Echo", None, 1).await;
    let (browser, _) = sign_in(&s, json!({"api_key": k})).await;
    let echo = svc_path("Echo", None, "/methods/echo/x");
    // The cookie alone is no credential here, for reads and writes alike.
    let resp = browser.req(&s, Method::GET, &echo).send().await.unwrap();
    check_unauthorized("proxy GET", resp, "Authentication required.").await;
    let resp = browser.change(&s, Method::POST, &echo).send().await.unwrap();
    check_unauthorized("proxy POST", resp, "Authentication required.").await;
    // With a bearer key, the service sees its own cookies only.
    let resp = s
        .anon(Method::GET, &echo)
        .bearer_auth(&k)
        .header("cookie", format!("app=1; {}; corral_csrf=t", browser.cookie))
        .header("x-csrf-token", &browser.csrf)
        .send()
        .await
        .unwrap();
    let seen = expect_json(resp, StatusCode::OK).await;
    assert_eq!(seen["headers"]["cookie"], "app=1", "{seen}");
    assert!(seen["headers"].get("x-csrf-token").is_none(), "{seen}");
    // The cookie still works on the service's other routes.
    let resp = browser
        .req(&s, Method::GET, &svc_path("Echo", None, "/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(resp, StatusCode::OK).await["status"], "RUNNING");
    s.stop().await;
}

/// The real binary at debug level: a sign-in is logged by user and tenant, and neither the key,
/// the session cookie nor a CSRF token reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_secret_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = crate::process::Proc::spawn(
        &["--data-dir", data.to_str().unwrap()],
        &[
            ("CORRAL_BOOTSTRAP_KEY", BOOTSTRAP_KEY),
            (
                "CORRAL_LOG",
                "corral=debug,corral_api=debug,corral_core=debug,info",
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let c = reqwest::Client::new();
    let resp = c.get(p.url("/ui/session")).send().await.unwrap();
    let cookies = set_cookies(&resp);
    let form_token = value_of(set_cookie(&cookies, "corral_csrf"));
    let resp = c
        .post(p.url("/ui/session"))
        .header("cookie", format!("corral_csrf={form_token}"))
        .json(&json!({"api_key": BOOTSTRAP_KEY, "csrf": form_token}))
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(&resp);
    let session = value_of(set_cookie(&cookies, "corral_session"));
    let body = expect_json(resp, StatusCode::OK).await;
    let csrf = body["csrf"].as_str().unwrap().to_string();
    let resp = c
        .put(p.url("/v3/namespaces/logged"))
        .header("cookie", format!("corral_session={session}"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    let resp = c
        .delete(p.url("/ui/session"))
        .header("cookie", format!("corral_session={session}"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (_, logs) = p.terminate();
    assert!(
        logs.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["message"] == "console sign-in"
                && v["tenant"] == "superadmin"
                && v["user"] == "admin"),
        "no sign-in line: {logs}"
    );
    for (what, secret) in [
        ("key", BOOTSTRAP_KEY),
        ("session cookie", &session[3..40]),
        ("CSRF token", &csrf),
        ("form token", &form_token),
    ] {
        assert!(!logs.contains(secret), "the {what} reached the log");
    }
}
