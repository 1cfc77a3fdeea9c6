//! The permission matrix of README 2.2, as a table: every endpoint the server serves is a
//! row, tried with no credentials, as a viewer, a user and an admin of tenant `acme`, and as
//! the superadmin (the bootstrap key). A coverage test compares the table with
//! `/openapi.json`, so an endpoint added without a row fails the suite.
//!
//! To cover a new endpoint, add a [`Row`] to [`MATRIX`] (its `path` is the OpenAPI path
//! template). Each `{placeholder}` of the path is filled, for every caller, with a new object
//! of the caller's tenant made by [`Fixture::make`] (teach it new placeholders there), so rows
//! never disturb each other: a destructive row destroys only its own throwaway target.
//! Placeholders of a row's body that the path does not have are made the same way, after
//! the path's.
//!
//! Hosts are registered for real (the server may contact `127.0.0.0/8` only, on a port where
//! nothing listens): their investigation fails in the background or, in tenant `acme`, which
//! has no workers, never starts; permissions do not depend on it.

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use corral_drivers::testing::{ClientKey, KeyFormat, KeyType};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer};
use crate::helpers::Req;

/// The letters of README 2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Perm {
    /// viewer and above
    R,
    /// user and above
    W,
    /// admin and above
    A,
    /// superadmin only
    S,
}
use Perm::*;

/// The authenticated callers every row is tried with, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    Viewer,
    User,
    Admin,
    Superadmin,
}

const CALLERS: [Caller; 4] = [Caller::Viewer, Caller::User, Caller::Admin, Caller::Superadmin];

impl Perm {
    fn allows(self, c: Caller) -> bool {
        match self {
            R => true,
            W => c >= Caller::User,
            A => c >= Caller::Admin,
            S => c == Caller::Superadmin,
        }
    }
}

/// A well-formed API key that no one holds.
const STRANGER_KEY: &str = "crk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// coopr-v2.md 3 and 4 fix these 403 texts; elsewhere the text is the server's choice.
const MUST_BE_SUPERADMIN: &str = "user unauthorized, must be superadmin.";
const MUST_BE_ADMIN: &str = "user unauthorized, must be admin.";

/// One endpoint of the matrix.
#[derive(Debug, Clone, Copy)]
struct Row {
    method: &'static str,
    /// The OpenAPI path template; every `{placeholder}` is filled by [`Fixture::make`].
    path: &'static str,
    perm: Perm,
    /// The exact status an allowed caller gets.
    ok: u16,
    /// The exact JSON body an allowed caller gets, where it is fixed (a 204 is always empty).
    answer: Option<&'static str>,
    /// A JSON body; `{fresh}` becomes a new unused name, `{ssh_key}` the base64 of a valid
    /// private key, other `{placeholder}`s as in the path.
    body: Option<&'static str>,
    /// Placeholders that name an object to be created by the request (a new unused name)
    /// instead of an existing one.
    fresh: &'static [&'static str],
    /// The exact `message` of the 403, where the contract fixes it.
    denied: Option<&'static str>,
    /// A request `(method, path, body)` the caller itself sends first, which must succeed.
    before: Option<(&'static str, &'static str, &'static str)>,
}

const fn row(method: &'static str, path: &'static str, perm: Perm, ok: u16) -> Row {
    Row {
        method,
        path,
        perm,
        ok,
        answer: None,
        body: None,
        fresh: &[],
        denied: None,
        before: None,
    }
}

impl Row {
    const fn body(mut self, body: &'static str) -> Row {
        self.body = Some(body);
        self
    }

    const fn answers(mut self, body: &'static str) -> Row {
        self.answer = Some(body);
        self
    }

    const fn fresh(mut self, names: &'static [&'static str]) -> Row {
        self.fresh = names;
        self
    }

    const fn denied(mut self, message: &'static str) -> Row {
        self.denied = Some(message);
        self
    }

    const fn before(mut self, method: &'static str, path: &'static str, body: &'static str) -> Row {
        self.before = Some((method, path, body));
        self
    }

    fn method(&self) -> Method {
        Method::from_bytes(self.method.as_bytes()).expect("method")
    }
}

/// Every authenticated endpoint served now. Extend it with each new endpoint.
const MATRIX: &[Row] = &[
    // README 3.3
    row("GET", "/token", R, 200),
    row("POST", "/token", R, 200),
    // Operators only.
    row("GET", "/metrics", S, 200),
    // The change feed (docs/events.md), asked for as a JSON page (see `Fixture::request`).
    row("GET", "/events", R, 200),
    // Corral addition for `corral whoami` (docs/cli.md).
    row("GET", "/whoami", R, 200),
    // coopr-v2.md 3: tenants.
    row("GET", "/v2/tenants", S, 200).denied(MUST_BE_SUPERADMIN),
    row("POST", "/v2/tenants", S, 200)
        .body(r#"{"tenant": {"name": "{fresh}", "workers": 0}}"#)
        .denied(MUST_BE_SUPERADMIN),
    row("GET", "/v2/tenants/{tenant}", S, 200).denied(MUST_BE_SUPERADMIN),
    row("PUT", "/v2/tenants/{tenant}", S, 200)
        .body(r#"{"tenant": {"workers": 0, "description": "changed"}}"#)
        .denied(MUST_BE_SUPERADMIN),
    row("POST", "/v2/tenants/{tenant}/adminkey", S, 200)
        .body(r#"{"description": "matrix"}"#)
        .denied(MUST_BE_SUPERADMIN),
    row("DELETE", "/v2/tenants/{tenant}", S, 200).denied(MUST_BE_SUPERADMIN),
    // coopr-v2.md 4: users and API keys.
    row("GET", "/v2/users", A, 200).denied(MUST_BE_ADMIN),
    row("POST", "/v2/users", A, 201)
        .body(r#"{"id": "{fresh}", "role": "viewer"}"#)
        .denied(MUST_BE_ADMIN),
    row("GET", "/v2/users/{user}", A, 200).denied(MUST_BE_ADMIN),
    row("PUT", "/v2/users/{user}", A, 200)
        .body(r#"{"description": "changed"}"#)
        .denied(MUST_BE_ADMIN),
    row("DELETE", "/v2/users/{user}", A, 200).denied(MUST_BE_ADMIN),
    row("GET", "/v2/users/{user}/apikeys", A, 200).denied(MUST_BE_ADMIN),
    row("POST", "/v2/users/{user}/apikeys", A, 201)
        .body(r#"{"description": "matrix"}"#)
        .denied(MUST_BE_ADMIN),
    row("GET", "/v2/users/{user}/apikeys/{key_id}", A, 200).denied(MUST_BE_ADMIN),
    row("DELETE", "/v2/users/{user}/apikeys/{key_id}", A, 200).denied(MUST_BE_ADMIN),
    // coopr-v2.md 5: the caller's own profile.
    row("GET", "/v2/profile", R, 200).before("PUT", "/v2/profile", r#"{"theme": "dark"}"#),
    row("PUT", "/v2/profile", R, 200).body(r#"{"theme": "light"}"#),
    row("DELETE", "/v2/profile", R, 200),
    // coopr-v2.md 6: the read-only RPC calls (a `{name}` is a cluster of the caller's tenant).
    row("POST", "/v2/getClusterStatuses", R, 200),
    row("POST", "/v2/getNodeProperties", R, 200).body(r#"{"clusterId": "{name}"}"#),
    // cdap-v3.md 2: namespaces.
    row("GET", "/v3/namespaces", R, 200),
    row("GET", "/v3/namespaces/{ns}", R, 200),
    row("PUT", "/v3/namespaces/{ns}", W, 200)
        .fresh(&["ns"])
        .body(r#"{"description": "matrix"}"#),
    row("PUT", "/v3/namespaces/{ns}/properties", W, 200).body(r#"{"description": "changed"}"#),
    row("DELETE", "/v3/namespaces/{ns}", W, 200),
    row("DELETE", "/v3/unrecoverable/namespaces/{ns}", W, 200),
    // cdap-v3.md 3, 4.1, 4.2: applications and their services. An `{app}` is an app of the
    // `{ns}` before it with one service `web`; a `{v}` a new version of that app; `{svc}` is `web`.
    row("GET", "/v3/namespaces/{ns}/apps", R, 200),
    row("PUT", "/v3/namespaces/{ns}/apps/{app}", W, 200)
        .fresh(&["app"])
        .body(r#"{"version": "1.0.0", "services": [{"name": "web", "command": ["/bin/true"]}]}"#),
    row("GET", "/v3/namespaces/{ns}/apps/{app}", R, 200),
    row("DELETE", "/v3/namespaces/{ns}/apps/{app}", W, 200),
    row(
        "PUT",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/create",
        W,
        200,
    )
    .fresh(&["v"])
    .body(r#"{"services": [{"name": "web", "command": ["/bin/true"]}]}"#),
    row(
        "POST",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/create",
        W,
        200,
    )
    .fresh(&["v"])
    .body(r#"{"services": [{"name": "web", "command": ["/bin/true"]}]}"#),
    row("GET", "/v3/namespaces/{ns}/apps/{app}/versions", R, 200),
    row("GET", "/v3/namespaces/{ns}/apps/{app}/versions/{v}", R, 200),
    row("DELETE", "/v3/namespaces/{ns}/apps/{app}/versions/{v}", W, 200),
    row("GET", "/v3/namespaces/{ns}/services", R, 200),
    row("GET", "/v3/namespaces/{ns}/apps/{app}/services/{svc}", R, 200),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}",
        R,
        200,
    ),
    // cdap-v3.md 4.3-4.7, 5, 6, 8, 9: service lifecycle, routing, batch calls. `{svc}` of a
    // fresh `{app}` is stopped (so stop answers 409, available and the proxy 503); a `{runid}`
    // is a run of it that was started and stopped.
    row(
        "POST",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/start",
        W,
        200,
    ),
    row(
        "POST",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/stop",
        W,
        409,
    ),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/status",
        R,
        200,
    )
    .answers(r#"{"status": "STOPPED"}"#),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/instances",
        R,
        200,
    )
    .answers(r#"{"requested": 1, "provisioned": 0, "healthy": 0}"#),
    row(
        "PUT",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/instances",
        W,
        200,
    )
    .body(r#"{"instances": 2}"#),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/runs",
        R,
        200,
    )
    .answers("[]"),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/runs/{runid}",
        R,
        200,
    ),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/available",
        R,
        503,
    ),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/processes",
        R,
        200,
    )
    .answers("[]"),
    row(
        "POST",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/start",
        W,
        200,
    ),
    row(
        "POST",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/stop",
        W,
        409,
    ),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/status",
        R,
        200,
    )
    .answers(r#"{"status": "STOPPED"}"#),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/instances",
        R,
        200,
    ),
    row(
        "PUT",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/instances",
        W,
        200,
    )
    .body(r#"{"instances": 2}"#),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/runs",
        R,
        200,
    )
    .answers("[]"),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/runs/{runid}",
        R,
        200,
    ),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/available",
        R,
        503,
    ),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/processes",
        R,
        200,
    )
    .answers("[]"),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/routeconfig",
        R,
        200,
    )
    .answers("{}"),
    row(
        "PUT",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/routeconfig",
        W,
        200,
    )
    .body(r#"{"{v}": 100}"#),
    row(
        "DELETE",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/routeconfig",
        W,
        404,
    ),
    row("POST", "/v3/namespaces/{ns}/start", W, 200)
        .body("[]")
        .answers("[]"),
    row("POST", "/v3/namespaces/{ns}/stop", W, 200)
        .body("[]")
        .answers("[]"),
    row("POST", "/v3/namespaces/{ns}/status", R, 200)
        .body("[]")
        .answers("[]"),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/services/{svc}/methods/{path}",
        R,
        503,
    ),
    row(
        "GET",
        "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/methods/{path}",
        R,
        503,
    ),
    // perspective.md 5-7: instances, images, operations. `{id}` is an instance of the mock
    // cloud (so the image rows answer 404); bulk bodies are empty lists.
    row("GET", "/instance/{id}", R, 200),
    row("GET", "/instances/{id}", R, 200),
    row("GET", "/instances/{id}/history", R, 200),
    row("GET", "/instances/{id}/console", R, 200),
    row("POST", "/instances", W, 200).body("[]").answers("[]"),
    row("POST", "/instances/delete", W, 200).body("[]").answers("[]"),
    row("PUT", "/instances/start", W, 200).body("[]").answers("[]"),
    row("PUT", "/instances/shutdown", W, 200).body("[]").answers("[]"),
    row("PUT", "/instances/reboot", W, 200).body("[]").answers("[]"),
    row("PUT", "/instances/hard-reboot", W, 200)
        .body("[]")
        .answers("[]"),
    row("PUT", "/instances/pause", W, 200).body("[]").answers("[]"),
    row("PUT", "/instances/resume", W, 200).body("[]").answers("[]"),
    row("PUT", "/instances/suspend", W, 200).body("[]").answers("[]"),
    row("PUT", "/instances/resize/{flavorId}", W, 404).body("[]"),
    row("PUT", "/instances/rebuild/{imageId}", W, 404).body("[]"),
    row("PUT", "/instances/rename", W, 200).body("{}").answers("[]"),
    row("GET", "/image/{id}", R, 404),
    row("GET", "/images/{id}", R, 404),
    row("POST", "/images", W, 200).body("[]").answers("[]"),
    row("POST", "/images/delete", W, 200).body("[]").answers("[]"),
    row("GET", "/operations", R, 200),
    row("POST", "/query", R, 200).body(r#"[{"sql": "select 1"}]"#),
    // commissaire-v0.md 5.7-5.10: networks.
    row("GET", "/api/v0/networks", R, 200),
    row("GET", "/api/v0/network", R, 200),
    row("GET", "/api/v0/network/{network}", R, 200),
    row("PUT", "/api/v0/network/{network}", W, 201)
        .fresh(&["network"])
        .body(r#"{"type": "flannel_server", "options": {"address": "10.0.0.1:8285"}}"#),
    row("DELETE", "/api/v0/network/{network}", W, 200).answers("[]"),
    // commissaire-v0.md 5.11-5.14: container managers.
    row("GET", "/api/v0/containermanagers", R, 200),
    row("GET", "/api/v0/containermanager", R, 200),
    row("GET", "/api/v0/containermanager/{container_manager}", R, 200),
    row("PUT", "/api/v0/containermanager/{container_manager}", W, 201)
        .fresh(&["container_manager"])
        .body(r#"{"type": "openshift", "options": {"apiserver": "https://k8s:6443", "token": "matrix"}}"#),
    row("DELETE", "/api/v0/containermanager/{container_manager}", W, 200).answers("[]"),
    // commissaire-v0.md 5.15: the tenant's host machinery.
    row("GET", "/api/v0/status", R, 200),
    // commissaire-v0.md 5.1-5.6: hosts.
    row("GET", "/api/v0/hosts", R, 200),
    row("GET", "/api/v0/host", R, 200),
    row("PUT", "/api/v0/host", W, 201)
        .fresh(&["address"])
        .body(r#"{"address": "{address}", "ssh_priv_key": "{ssh_key}"}"#),
    row("GET", "/api/v0/host/{address}", R, 200),
    row("PUT", "/api/v0/host/{address}", W, 201)
        .fresh(&["address"])
        .body(r#"{"ssh_priv_key": "{ssh_key}", "source": "matrix"}"#),
    row("DELETE", "/api/v0/host/{address}", W, 200).answers("[]"),
    row("GET", "/api/v0/host/{address}/creds", A, 200),
    row("GET", "/api/v0/host/{address}/status", R, 200),
    // commissaire-v0.md 4.1-4.9: clusters and their members. An `{address}` after a `{name}`
    // is a host registered into that cluster.
    row("GET", "/api/v0/clusters", R, 200),
    row("GET", "/api/v0/cluster", R, 200),
    row("GET", "/api/v0/cluster/{name}", R, 200),
    row("PUT", "/api/v0/cluster/{name}", W, 201).fresh(&["name"]),
    row("DELETE", "/api/v0/cluster/{name}", W, 200).answers("[]"),
    row("GET", "/api/v0/cluster/{name}/hosts", R, 200),
    row("PUT", "/api/v0/cluster/{name}/hosts", W, 200).body(r#"{"old": ["{address}"], "new": []}"#),
    row("GET", "/api/v0/cluster/{name}/hosts/{address}", R, 200),
    row("PUT", "/api/v0/cluster/{name}/hosts/{address}", W, 200),
    row("DELETE", "/api/v0/cluster/{name}/hosts/{address}", W, 200).answers("[]"),
    // commissaire-v0.md 4.10-4.12: rolling operations (a new cluster has no record: 204; it
    // has no members either, so a started operation finishes at once).
    row("GET", "/api/v0/cluster/{name}/deploy", R, 204),
    row("PUT", "/api/v0/cluster/{name}/deploy", W, 201).body(r#"{"version": "7.2.6"}"#),
    row("GET", "/api/v0/cluster/{name}/upgrade", R, 204),
    row("PUT", "/api/v0/cluster/{name}/upgrade", W, 201).body(r#"{"max_parallel": 2}"#),
    row("GET", "/api/v0/cluster/{name}/restart", R, 204),
    row("PUT", "/api/v0/cluster/{name}/restart", W, 201),
];

/// Endpoints that need no credentials (README 1, 2.2 "-"). `/openapi.json` and `/docs` are
/// public documentation outside the OpenAPI paths.
/// The console's session routes are public too: their credential is the sign-in form's key or
/// the session cookie (console.rs tests them).
const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/status"),
    ("GET", "/ping"),
    ("GET", "/version"),
    ("GET", "/ui/session"),
    ("POST", "/ui/session"),
    ("DELETE", "/ui/session"),
];

/// Tenant `acme` with a viewer, a user and its admin; the superadmin is the bootstrap key.
struct Fixture {
    s: TestServer,
    viewer: String,
    user: String,
    admin: String,
    seq: AtomicUsize,
    /// Base64 of a valid private key, to register hosts with.
    ssh_key: String,
}

/// The `{name}` placeholders of a template, in order.
fn placeholders(template: &str) -> Vec<&str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect()
}

/// Body placeholders that name no object.
const BODY_VALUES: [&str; 2] = ["fresh", "ssh_key"];

/// The objects a row needs: its path's placeholders, then those only its body has. A JSON
/// body's other braces are not placeholders: a placeholder is a plain identifier.
fn row_placeholders(row: &Row) -> Vec<&'static str> {
    let mut names = placeholders(row.path);
    for name in row.body.map(placeholders).unwrap_or_default() {
        let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if plain && !BODY_VALUES.contains(&name) && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

impl Fixture {
    async fn new(db: Db) -> Fixture {
        // Hosts may be registered in 127.0.0.0/8 only, and nothing listens on their SSH port:
        // a host the superadmin registers fails its investigation at once; acme's (no
        // workers) wait, queued.
        let s = TestServer::start_with(db, |s| {
            s.host_allow = vec!["127.0.0.0/8".into()];
            s.ssh_port = 9;
            s.ssh_connect_timeout = 2;
            s.clouds = vec![crate::instances::mock_cloud(|_| {})];
        })
        .await;
        let admin = s.create_tenant("acme", 0).await;
        let viewer = s.create_user(&admin, "vera", "viewer").await;
        let user = s.create_user(&admin, "ursula", "user").await;
        let key = ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).expect("ssh-keygen");
        Fixture {
            s,
            viewer,
            user,
            admin,
            seq: AtomicUsize::new(0),
            ssh_key: STANDARD.encode(&key.private_key),
        }
    }

    fn key(&self, c: Caller) -> &str {
        match c {
            Caller::Viewer => &self.viewer,
            Caller::User => &self.user,
            Caller::Admin => &self.admin,
            Caller::Superadmin => BOOTSTRAP_KEY,
        }
    }

    /// An admin of the caller's tenant, to make the caller's targets.
    fn tenant_admin(&self, c: Caller) -> &str {
        match c {
            Caller::Superadmin => BOOTSTRAP_KEY,
            _ => &self.admin,
        }
    }

    fn fresh(&self) -> String {
        format!("m{}", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// A new unused value for placeholder `name`: a host address in `127.201.0.0/16` (away
    /// from the `127.0.x.y` of the SSH tests) for `{address}`, a name otherwise.
    fn fresh_for(&self, name: &str) -> String {
        if name == "address" {
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            assert!(n < 65_000, "the matrix ran out of addresses");
            format!("127.201.{}.{}", n / 250, n % 250 + 1)
        } else {
            self.fresh()
        }
    }

    /// The value of an earlier placeholder.
    fn var<'v>(vars: &'v [(String, String)], name: &str) -> Option<&'v str> {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A new object for placeholder `name`, in the caller's tenant (tenants are global).
    async fn make(&self, c: Caller, name: &str, vars: &[(String, String)]) -> String {
        let admin = self.tenant_admin(c);
        let n = self.fresh();
        match name {
            "tenant" => {
                self.s
                    .req_root(Method::POST, "/v2/tenants")
                    .json(json!({"tenant": {"name": n, "workers": 0}}))
                    .ok()
                    .await;
                n
            }
            "user" => {
                self.s
                    .post(admin, "/v2/users")
                    .json(json!({"id": n, "role": "viewer"}))
                    .expect(StatusCode::CREATED)
                    .await;
                n
            }
            "key_id" => {
                let user = Self::var(vars, "user").expect("{key_id} needs a {user} before it");
                let created = self.s.create_key(admin, user, json!({})).await;
                created["id"].as_str().unwrap().to_string()
            }
            "ns" => {
                self.s.put(admin, &format!("/v3/namespaces/{n}")).ok().await;
                n
            }
            "network" => {
                self.s
                    .put(admin, &format!("/api/v0/network/{n}"))
                    .json(json!({}))
                    .expect(StatusCode::CREATED)
                    .await;
                n
            }
            "container_manager" => {
                self.s
                    .put(admin, &format!("/api/v0/containermanager/{n}"))
                    .json(json!({"type": "trivial"}))
                    .expect(StatusCode::CREATED)
                    .await;
                n
            }
            "name" => {
                self.s
                    .put(admin, &format!("/api/v0/cluster/{n}"))
                    .expect(StatusCode::CREATED)
                    .await;
                n
            }
            "address" => {
                // After a `{name}` (a cluster), the host is registered into it: a member.
                let address = self.fresh_for("address");
                let mut body = json!({"ssh_priv_key": self.ssh_key});
                if let Some(cluster) = Self::var(vars, "name") {
                    body["cluster"] = json!(cluster);
                }
                let host = self
                    .s
                    .put(admin, &format!("/api/v0/host/{address}"))
                    .json(body)
                    .expect(StatusCode::CREATED)
                    .await;
                assert_eq!(host["status"], "investigating", "{host}");
                address
            }
            "app" => {
                let ns = Self::var(vars, "ns").expect("{app} needs a {ns} before it");
                self.s
                    .put(admin, &format!("/v3/namespaces/{ns}/apps/{n}"))
                    .json(json!({"services": [{"name": "web", "command": ["/bin/true"]}]}))
                    .ok()
                    .await;
                n
            }
            "v" => {
                let ns = Self::var(vars, "ns").expect("{v} needs a {ns} before it");
                let app = Self::var(vars, "app").expect("{v} needs an {app} before it");
                self.s
                    .put(
                        admin,
                        &format!("/v3/namespaces/{ns}/apps/{app}/versions/{n}/create"),
                    )
                    .json(json!({"services": [{"name": "web", "command": ["/bin/true"]}]}))
                    .ok()
                    .await;
                n
            }
            // The one service of every `{app}` the fixture makes.
            "svc" => "web".to_string(),
            "path" | "flavorId" | "imageId" => "anything".to_string(),
            // An instance of the caller's tenant in the mock cloud (queued in acme, which has
            // no workers).
            "id" => {
                let tenant = if c == Caller::Superadmin {
                    "superadmin"
                } else {
                    "acme"
                };
                let ids = crate::instances::ids(&self.s, tenant).await;
                crate::instances::launch(&self.s, admin, &ids, &n).await
            }
            "runid" => {
                let ns = Self::var(vars, "ns").expect("{runid} needs a {ns} before it");
                let app = Self::var(vars, "app").expect("{runid} needs an {app} before it");
                let svc = match Self::var(vars, "v") {
                    Some(v) => format!("/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/web"),
                    None => format!("/v3/namespaces/{ns}/apps/{app}/services/web"),
                };
                let run = self.s.post(admin, &format!("{svc}/start")).ok().await["runid"]
                    .as_str()
                    .unwrap()
                    .to_string();
                self.s
                    .post(admin, &format!("{svc}/stop"))
                    .expect_status(StatusCode::OK)
                    .await;
                run
            }
            other => panic!("no fixture for {{{other}}}: teach Fixture::make to create one"),
        }
    }

    /// The concrete path and body of `row` for caller `c`: with new targets of the caller's
    /// tenant, or (`existing` false) with names of objects that do not exist.
    async fn instantiate(&self, row: &Row, c: Caller, existing: bool) -> (String, Option<String>) {
        let mut vars: Vec<(String, String)> = Vec::new();
        for name in row_placeholders(row) {
            let value = if !existing {
                if name == "key_id" {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    format!("missing{}", self.fresh())
                }
            } else if row.fresh.contains(&name) {
                self.fresh_for(name)
            } else {
                self.make(c, name, &vars).await
            };
            vars.push((name.to_string(), value));
        }
        let fill = |template: &str| {
            vars.iter().fold(template.to_string(), |t, (k, v)| {
                t.replace(&format!("{{{k}}}"), v)
            })
        };
        let path = fill(row.path);
        let body = row.body.map(|b| {
            fill(b)
                .replace("{fresh}", &self.fresh())
                .replace("{ssh_key}", &self.ssh_key)
        });
        (path, body)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        caller: Option<Caller>,
        body: Option<&str>,
    ) -> RequestBuilder {
        let mut req = match caller {
            Some(c) => self.s.call(self.key(c), method, path),
            None => self.s.anon(method, path),
        };
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        // The change feed's default answer is an endless stream; its page ends.
        if path.starts_with("/events") {
            req = req.header("accept", "application/json");
        }
        req
    }
}

/// Checks a contract error (README 3.2, 4) without panicking, for the matrix's report.
async fn check_error(resp: Response, status: StatusCode, message: Option<&str>) -> Result<(), String> {
    let got = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let text = resp.text().await.unwrap_or_default();
    if got != status {
        return Err(format!("status {got}, want {status}; body {text}"));
    }
    if ct.as_deref() != Some("application/json; charset=utf-8") {
        return Err(format!("content type {ct:?}"));
    }
    if status == StatusCode::UNAUTHORIZED && challenge.as_deref() != Some("Bearer realm=\"corral\"") {
        return Err(format!("401 with WWW-Authenticate {challenge:?}"));
    }
    let body: Value = serde_json::from_str(&text).map_err(|e| format!("body not JSON ({e}): {text}"))?;
    let mut want = json!({
        "code": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "message": body["message"].clone(),
    });
    if let Some(m) = message {
        want["message"] = json!(m);
    }
    if body != want || !body["message"].is_string() {
        return Err(format!("error body {body}, want {want}"));
    }
    Ok(())
}

/// Checks a HEAD answer: the status of the matching GET, no body.
async fn check_head(resp: Response, status: StatusCode) -> Result<(), String> {
    let got = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if got != status || !text.is_empty() {
        return Err(format!(
            "HEAD: status {got} with body {text:?}, want {status} and no body"
        ));
    }
    Ok(())
}

async fn permission_matrix(db: Db) {
    let f = Fixture::new(db).await;
    let mut failures: Vec<String> = Vec::new();
    let mut note = |what: String, r: Result<(), String>| {
        if let Err(e) = r {
            failures.push(format!("{what}: {e}"));
        }
    };
    for row in MATRIX {
        let method = row.method();
        let is_get = method == Method::GET;
        // No credentials: 401, before anything else, whether the target exists or not.
        for existing in [true, false] {
            let (path, body) = f.instantiate(row, Caller::Admin, existing).await;
            let what = format!("{} {path} without credentials", row.method);
            let resp = f
                .request(method.clone(), &path, None, body.as_deref())
                .send()
                .await
                .unwrap();
            note(
                what.clone(),
                check_error(resp, StatusCode::UNAUTHORIZED, Some("Authentication required.")).await,
            );
            if is_get {
                let resp = f.request(Method::HEAD, &path, None, None).send().await.unwrap();
                note(what, check_head(resp, StatusCode::UNAUTHORIZED).await);
            }
            // A credential that is not valid: 401 as well, with its own text.
            let mut req = f.s.call(STRANGER_KEY, method.clone(), &path);
            if let Some(b) = &body {
                req = req.header("content-type", "application/json").body(b.clone());
            }
            note(
                format!("{} {path} with an unknown key", row.method),
                check_error(
                    req.send().await.unwrap(),
                    StatusCode::UNAUTHORIZED,
                    Some("Invalid credentials."),
                )
                .await,
            );
        }
        for caller in CALLERS {
            let allowed = row.perm.allows(caller);
            if let Some((m, p, b)) = row.before {
                let m = Method::from_bytes(m.as_bytes()).unwrap();
                let resp = f.request(m, p, Some(caller), Some(b)).send().await.unwrap();
                assert!(
                    resp.status().is_success(),
                    "{caller:?}: preparation of {} {} failed: {}",
                    row.method,
                    row.path,
                    resp.status()
                );
            }
            let (path, body) = f.instantiate(row, caller, true).await;
            let what = format!("{} {path} as {caller:?}", row.method);
            let resp = f
                .request(method.clone(), &path, Some(caller), body.as_deref())
                .send()
                .await
                .unwrap();
            let ok = StatusCode::from_u16(row.ok).unwrap();
            if allowed {
                let got = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if got != ok {
                    note(what.clone(), Err(format!("status {got}, want {ok}; body {text}")));
                } else if ok == StatusCode::NO_CONTENT && !text.is_empty() {
                    note(what.clone(), Err(format!("204 with a body: {text}")));
                } else if let Some(want) = row.answer {
                    let want: Value = serde_json::from_str(want).expect("answer is JSON");
                    if serde_json::from_str::<Value>(&text).ok() != Some(want.clone()) {
                        note(what.clone(), Err(format!("body {text}, want {want}")));
                    }
                }
            } else {
                note(
                    what.clone(),
                    check_error(resp, StatusCode::FORBIDDEN, row.denied).await,
                );
                // Permission comes before existence: a missing target is still 403.
                if !placeholders(row.path).is_empty() {
                    let (missing, body) = f.instantiate(row, caller, false).await;
                    let resp = f
                        .request(method.clone(), &missing, Some(caller), body.as_deref())
                        .send()
                        .await
                        .unwrap();
                    note(
                        format!("{} {missing} as {caller:?}", row.method),
                        check_error(resp, StatusCode::FORBIDDEN, row.denied).await,
                    );
                }
            }
            if is_get {
                let (path, _) = f.instantiate(row, caller, true).await;
                let resp = f
                    .request(Method::HEAD, &path, Some(caller), None)
                    .send()
                    .await
                    .unwrap();
                let want = if allowed { ok } else { StatusCode::FORBIDDEN };
                note(what, check_head(resp, want).await);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} permission matrix failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every operation of `/openapi.json`, as `(METHOD, path template)`, with whether it is
/// declared public (`security: [{}]`).
fn operations(api: &Value) -> Vec<(String, String, bool)> {
    let mut ops = Vec::new();
    for (path, item) in api["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "delete", "patch", "options", "head", "trace",
        ] {
            if let Some(op) = item.get(method) {
                let public = op["security"] == json!([{}]);
                ops.push((method.to_uppercase(), path.clone(), public));
            }
        }
    }
    ops
}

async fn matrix_covers_every_documented_endpoint(db: Db) {
    let s = TestServer::start(db).await;
    let api = s.req_anon(Method::GET, "/openapi.json").ok().await;
    let ops = operations(&api);
    assert!(ops.len() >= MATRIX.len(), "{ops:?}");
    let in_matrix = |m: &str, p: &str| MATRIX.iter().any(|r| r.method == m && r.path == p);
    let in_public = |m: &str, p: &str| PUBLIC.iter().any(|(pm, pp)| *pm == m && *pp == p);
    let mut missing = Vec::new();
    for (method, path, public) in &ops {
        match (in_matrix(method, path), in_public(method, path)) {
            (true, true) => panic!("{method} {path} is both public and in the matrix"),
            (false, false) => missing.push(format!("{method} {path}")),
            (false, true) => assert!(
                *public,
                "{method} {path} is listed public but the API document requires credentials"
            ),
            (true, false) => assert!(
                !*public,
                "{method} {path} is public in the API document but has a matrix row"
            ),
        }
    }
    assert!(
        missing.is_empty(),
        "endpoints without a permission matrix row (add them to roles.rs MATRIX or PUBLIC):\n{}",
        missing.join("\n")
    );
    // And the other way round: no row for an endpoint that does not exist, no duplicates.
    let documented = |m: &str, p: &str| ops.iter().any(|(om, op, _)| om == m && op == p);
    for (i, r) in MATRIX.iter().enumerate() {
        assert!(
            documented(r.method, r.path),
            "row {} {} is not in the API document",
            r.method,
            r.path
        );
        assert!(
            !MATRIX[..i]
                .iter()
                .any(|o| o.method == r.method && o.path == r.path),
            "duplicate row {} {}",
            r.method,
            r.path
        );
    }
    for (m, p) in PUBLIC {
        assert!(documented(m, p), "public {m} {p} is not in the API document");
    }
    // The public reads answer without credentials, GET and HEAD.
    for (m, p) in PUBLIC.iter().filter(|(m, _)| *m == "GET") {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        s.req_anon(method, p)
            .case(format!("{m} {p}"))
            .expect_status(StatusCode::OK)
            .await;
        let resp = s.anon(Method::HEAD, p).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "HEAD {p}");
        assert!(resp.headers().get("www-authenticate").is_none(), "{p}");
    }
    // The documentation itself is public too.
    s.req_anon(Method::GET, "/docs/")
        .expect_status(StatusCode::OK)
        .await;
}

async fn forbidden_requests_change_nothing(db: Db) {
    let f = Fixture::new(db).await;
    let (viewer, user, admin) = (f.viewer.as_str(), f.user.as_str(), f.admin.as_str());
    f.s.put(admin, "/v3/namespaces/prod").ok().await;
    // (who, method, path, body, the 403's message where the contract fixes it)
    let forbidden = [
        // A viewer cannot create, edit or delete a namespace.
        (viewer, Method::PUT, "/v3/namespaces/dev", None, None),
        (
            viewer,
            Method::PUT,
            "/v3/namespaces/default/properties",
            Some(json!({"description": "hacked"})),
            None,
        ),
        (viewer, Method::DELETE, "/v3/namespaces/prod", None, None),
        (
            viewer,
            Method::DELETE,
            "/v3/unrecoverable/namespaces/prod",
            None,
            None,
        ),
        // A user cannot make itself admin, create users, give another user a key, or delete the admin.
        (
            user,
            Method::PUT,
            "/v2/users/ursula",
            Some(json!({"role": "admin"})),
            Some(MUST_BE_ADMIN),
        ),
        (
            user,
            Method::POST,
            "/v2/users",
            Some(json!({"id": "mallory", "role": "admin"})),
            Some(MUST_BE_ADMIN),
        ),
        // Its own keys it may rotate (robust.rs), another's not.
        (
            user,
            Method::POST,
            "/v2/users/vera/apikeys",
            None,
            Some(MUST_BE_ADMIN),
        ),
        (user, Method::DELETE, "/v2/users/admin", None, Some(MUST_BE_ADMIN)),
        // A tenant admin cannot touch tenants, not even its own.
        (
            admin,
            Method::PUT,
            "/v2/tenants/acme",
            Some(json!({"tenant": {"workers": 5}})),
            Some(MUST_BE_SUPERADMIN),
        ),
        (
            admin,
            Method::DELETE,
            "/v2/tenants/acme",
            None,
            Some(MUST_BE_SUPERADMIN),
        ),
        (
            admin,
            Method::POST,
            "/v2/tenants",
            Some(json!({"tenant": {"name": "evil", "workers": 0}})),
            Some(MUST_BE_SUPERADMIN),
        ),
    ];
    for (i, (key, method, path, body, message)) in forbidden.into_iter().enumerate() {
        f.s.req(key, method, path)
            .json_opt(body)
            .case(i)
            .expect_error(StatusCode::FORBIDDEN, message)
            .await;
    }
    // Nothing changed: the namespaces,
    f.s.get(admin, "/v3/namespaces/dev")
        .expect_error(StatusCode::NOT_FOUND, "Namespace 'dev' not found.")
        .await;
    assert_eq!(
        f.s.get_json(admin, "/v3/namespaces/default").await["description"],
        "Default Namespace"
    );
    f.s.get_json(admin, "/v3/namespaces/prod").await;
    // the users and their keys,
    let users = f.s.get_json(admin, "/v2/users").await;
    let summary: Vec<(&str, &str)> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [("admin", "admin"), ("ursula", "user"), ("vera", "viewer")]
    );
    assert_eq!(
        f.s.get_json(admin, "/v2/users/ursula/apikeys")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // and the tenants.
    assert_eq!(
        f.s.req_root(Method::GET, "/v2/tenants").ok().await,
        json!([
            {"name": "acme", "description": "", "workers": 0, "maxClusters": 2147483647, "maxNodes": 2147483647},
            {"name": "superadmin", "description": "", "workers": 10, "maxClusters": 2147483647, "maxNodes": 2147483647}
        ])
    );
}

async fn superadmin_means_an_admin_of_tenant_superadmin(db: Db) {
    let s = TestServer::start(db).await;
    let acme = s.create_tenant("acme", 0).await;
    // Another admin of tenant superadmin is a superadmin too; a user or viewer there is not.
    let ops = s.create_user(BOOTSTRAP_KEY, "ops", "admin").await;
    let staff = s.create_user(BOOTSTRAP_KEY, "staff", "user").await;
    let watcher = s.create_user(BOOTSTRAP_KEY, "watcher", "viewer").await;
    for path in ["/v2/tenants", "/v2/tenants/acme", "/metrics"] {
        s.get(&ops, path).case(path).expect_status(StatusCode::OK).await;
        for key in [&staff, &watcher, &acme] {
            s.get(key, path)
                .case(format!("{key:?}"))
                .expect_error(StatusCode::FORBIDDEN, None)
                .await;
        }
    }
    // acme's admin is called `admin` like the bootstrap user, and is still not a superadmin.
    s.get(&acme, "/v2/tenants")
        .expect_error(StatusCode::FORBIDDEN, MUST_BE_SUPERADMIN)
        .await;
    // Tenant `superadmin`'s user may operate in its own tenant.
    s.put(&staff, "/v3/namespaces/tools").ok().await;
}

async fn role_changes_take_effect_at_once(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.create_tenant("acme", 0).await;
    let carol = s.create_user(&admin, "carol", "viewer").await;
    let token = s.mint_token(&carol).await;
    // (the role carol is given, none at first; a namespace she then tries to create and
    // whether she may; whether she may list users), for her key and her token alike.
    let stages = [
        (None, Some(("a", false)), false),
        (Some("user"), Some(("b", true)), false),
        (Some("admin"), None, true),
        (Some("viewer"), Some(("c", false)), false),
    ];
    for (role, namespace, lists_users) in stages {
        if let Some(role) = role {
            let carol = s
                .put(&admin, "/v2/users/carol")
                .json(json!({ "role": role }))
                .case(role)
                .ok()
                .await;
            assert_eq!(carol["role"], role);
        }
        let stage = role.unwrap_or("viewer at first");
        for (cred, key) in [("key", &carol), ("token", &token)] {
            if let Some((ns, may)) = namespace {
                let req = s
                    .put(key, &format!("/v3/namespaces/{ns}"))
                    .case(format!("{stage}, {cred}"));
                if may {
                    req.ok().await;
                } else {
                    req.expect_error(StatusCode::FORBIDDEN, None).await;
                }
            }
            let req = s.get(key, "/v2/users").case(format!("{stage}, {cred}"));
            if lists_users {
                req.ok().await;
            } else {
                req.expect_error(StatusCode::FORBIDDEN, MUST_BE_ADMIN).await;
            }
        }
    }
}

async fn checks_come_in_the_contract_order(db: Db) {
    // README 5: route (404/405), authentication (401), body syntax (400), permission (403),
    // existence (404).
    let f = Fixture::new(db).await;
    f.s.req_anon(Method::PATCH, "/v2/users")
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, None)
        .await;
    f.s.req_anon(Method::GET, "/v2/userz")
        .expect_error(StatusCode::NOT_FOUND, "No route for GET /v2/userz.")
        .await;
    let not_json = |req: Req| req.with(|r| r.body("{not json"));
    not_json(f.s.req_anon(Method::POST, "/v2/users"))
        .expect_unauthorized("Authentication required.")
        .await;
    not_json(f.s.post(STRANGER_KEY, "/v2/users"))
        .expect_unauthorized("Invalid credentials.")
        .await;
    not_json(f.s.post(&f.viewer, "/v2/users")).expect_not_json().await;
    f.s.delete(&f.viewer, "/v2/users/nobody")
        .expect_error(StatusCode::FORBIDDEN, MUST_BE_ADMIN)
        .await;
    f.s.delete(&f.admin, "/v2/users/nobody")
        .expect_error(StatusCode::NOT_FOUND, "User 'nobody' not found.")
        .await;
    f.s.get(&f.admin, "/v2/tenants/nosuch")
        .expect_error(StatusCode::FORBIDDEN, MUST_BE_SUPERADMIN)
        .await;
    f.s.req_root(Method::GET, "/v2/tenants/nosuch")
        .expect_error(StatusCode::NOT_FOUND, "tenant nosuch not found")
        .await;
}

both_stores!(
    permission_matrix,
    matrix_covers_every_documented_endpoint,
    forbidden_requests_change_nothing,
    superadmin_means_an_admin_of_tenant_superadmin,
    role_changes_take_effect_at_once,
    checks_come_in_the_contract_order,
);
