//! The `corral` command-line client (docs/cli.md): the real binary against the real server,
//! for every noun, with table, json and yaml output and the exit codes; `--wait` on a rolling
//! operation over real sshd hosts and on bulk mock instance actions (one failing); a
//! pseudo-terminal run that sees the live progress display. The CLI only needs one store
//! (its code paths do not differ by store), so these run on SQLite.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};

use crate::harness::{BOOTSTRAP_KEY, Db, TestServer};
use crate::instances::{mock_cloud, server};

const BIN: &str = env!("CARGO_BIN_EXE_corral");

/// One CLI run's outcome.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
    #[track_caller]
    fn ok(self) -> Out {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
    #[track_caller]
    fn code(self, code: i32) -> Out {
        assert_eq!(self.code, code, "{self:?}");
        self
    }
}

/// Runs the binary against `s` with `key`, in a private HOME / contexts file.
struct Cli {
    addr: String,
    key: String,
    home: PathBuf,
}

impl Cli {
    fn new(s: &TestServer, key: &str, home: &Path) -> Cli {
        Cli {
            addr: s.base.clone(),
            key: key.to_string(),
            home: home.to_path_buf(),
        }
    }

    fn as_key(&self, key: &str) -> Cli {
        Cli {
            addr: self.addr.clone(),
            key: key.to_string(),
            home: self.home.clone(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(BIN);
        c.args(args)
            .env("HOME", &self.home)
            .env("CORRAL_CLI_CONFIG", self.home.join("corral.toml"))
            .env("CORRAL_ADDR", &self.addr)
            .env("CORRAL_API_KEY", &self.key)
            .env_remove("CORRAL_TENANT")
            .env_remove("CORRAL_USER")
            .env_remove("CORRAL_CONTEXT")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        c
    }

    async fn run(&self, args: &[&str]) -> Out {
        let o = self.command(args).output().await.expect("run corral");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// Tenants, users, keys, namespaces, whoami and contexts, with every output format and the
/// usage, not-found, conflict and forbidden exit codes.
async fn identity_and_contexts(db: Db) {
    let s = TestServer::start(db).await;
    let home = tempfile::tempdir().unwrap();
    let root = Cli::new(&s, BOOTSTRAP_KEY, home.path());

    // tenant: create prints the admin key once; list in three formats.
    let out = root
        .run(&[
            "tenant",
            "create",
            "acme",
            "--workers",
            "3",
            "--description",
            "Acme Inc",
        ])
        .await
        .ok();
    let admin_key = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("admin key:"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .expect("admin key line");
    assert!(admin_key.starts_with("crk_"), "{out:?}");
    let table = root.run(&["tenant", "list"]).await.ok().stdout;
    let l = lines(&table);
    assert_eq!(l[0], "NAME        WORKERS  MAX-CLUSTERS  MAX-NODES   DESCRIPTION");
    assert!(
        l.iter()
            .any(|x| x.starts_with("acme        3        2147483647    2147483647  Acme Inc")),
        "{table}"
    );
    let j = root.run(&["tenant", "list", "-o", "json"]).await.ok().json();
    assert!(
        j.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "acme" && t["workers"] == 3),
        "{j}"
    );
    let y = root
        .run(&["tenant", "show", "acme", "-o", "yaml"])
        .await
        .ok()
        .stdout;
    assert_eq!(
        y,
        "description: Acme Inc\nmaxClusters: 2147483647\nmaxNodes: 2147483647\nname: acme\nworkers: 3\n"
    );
    // update keeps what it is not told to change (PUT replaces the whole tenant).
    let u = root
        .run(&["tenant", "update", "acme", "--max-nodes", "50", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        u,
        json!({"name": "acme", "description": "Acme Inc", "workers": 3, "maxClusters": 2147483647, "maxNodes": 50})
    );
    root.run(&["tenant", "create", "nowork"]).await.code(2);
    let q = root.run(&["tenant", "list", "-q"]).await.ok().stdout;
    assert_eq!(q, "acme\nsuperadmin\n");

    // Exit codes: 3 not found, 4 conflict, 2 usage (clap and server 400), 5 forbidden / bad key.
    let e = root.run(&["tenant", "show", "nope"]).await.code(3);
    assert!(
        e.stderr.contains("tenant nope not found") || e.stderr.contains("nope"),
        "{e:?}"
    );
    assert!(e.stderr.contains("(request id "), "{e:?}");
    root.run(&["tenant", "create", "acme", "--workers", "1"])
        .await
        .code(4);
    let e = root.run(&["tenant", "create"]).await.code(2);
    assert!(e.stderr.contains("Usage"), "{e:?}");
    root.run(&["tenant", "create", "bad name!", "--workers", "1"])
        .await
        .code(2);
    root.run(&["tenant", "frobnicate"]).await.code(2);

    // user and key, as the tenant admin.
    let acme = root.as_key(&admin_key);
    acme.run(&["tenant", "list"]).await.code(5);
    let u = acme
        .run(&["user", "create", "vera", "--role", "viewer", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(u["role"], "viewer");
    assert_eq!(u["tenant"], "acme");
    let users = acme.run(&["user", "list"]).await.ok().stdout;
    assert_eq!(lines(&users)[0], "ID     ROLE    TENANT  DESCRIPTION");
    assert!(users.contains("vera   viewer  acme"), "{users}");
    let vera_key = acme
        .run(&["key", "create", "vera", "--description", "cli", "-q"])
        .await
        .ok()
        .stdout;
    let vera_key = vera_key.trim().to_string();
    assert!(vera_key.starts_with("crk_"), "{vera_key}");
    let keys = acme.run(&["key", "list", "vera", "-o", "json"]).await.ok().json();
    assert_eq!(keys[0]["description"], "cli");
    assert!(
        keys[0].get("key").is_none(),
        "a listed key never shows its secret: {keys}"
    );
    let vera = root.as_key(&vera_key);
    let e = vera.run(&["user", "list"]).await.code(5);
    assert!(e.stderr.starts_with("corral: "), "{e:?}");
    vera.run(&["namespace", "create", "dev"]).await.code(5);
    root.as_key("crk_not-a-real-key").run(&["whoami"]).await.code(5);
    acme.run(&["user", "update", "vera", "--role", "bogus"])
        .await
        .code(2);

    // whoami in three formats.
    let w = vera.run(&["whoami", "-o", "json"]).await.ok().json();
    assert_eq!(
        (w["tenant"].as_str(), w["user"].as_str(), w["role"].as_str()),
        (Some("acme"), Some("vera"), Some("viewer"))
    );
    assert_eq!(w["superadmin"], false);
    let w = vera.run(&["whoami"]).await.ok().stdout;
    assert!(
        w.contains("tenant:      acme") && w.contains("role:        viewer"),
        "{w}"
    );
    assert_eq!(vera.run(&["whoami", "-q"]).await.ok().stdout, "vera@acme\n");
    assert!(
        root.run(&["whoami", "-o", "yaml"])
            .await
            .ok()
            .stdout
            .contains("superadmin: true\n")
    );

    // namespaces.
    let ns = acme
        .run(&[
            "namespace",
            "create",
            "dev",
            "--description",
            "Development",
            "--config",
            "a=b",
        ])
        .await
        .ok();
    assert!(ns.stdout.contains("description:  Development"), "{ns:?}");
    let list = acme.run(&["namespace", "list", "-o", "yaml"]).await.ok().stdout;
    assert!(
        list.contains("- config:\n    a: b\n  description: Development\n  name: dev\n"),
        "{list}"
    );
    acme.run(&["namespace", "create", "system"]).await.code(2);
    acme.run(&["namespace", "delete", "dev"]).await.ok();
    acme.run(&["namespace", "show", "dev"]).await.code(3);
    acme.run(&["user", "delete", "vera"]).await.ok();
    acme.run(&["user", "show", "vera"]).await.code(3);

    // contexts: the file is 0600, keys are never printed, flags win over the context.
    let bare = tempfile::tempdir().unwrap();
    let ctx = Cli {
        addr: s.base.clone(),
        key: admin_key.clone(),
        home: bare.path().to_path_buf(),
    };
    ctx.run(&["context", "add", "acme", "--tenant", "acme", "--user", "admin"])
        .await
        .ok();
    let file = bare.path().join("corral.toml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ctx_list = ctx.run(&["context", "list"]).await.ok().stdout;
    assert!(!ctx_list.contains(&admin_key), "{ctx_list}");
    assert!(ctx_list.contains("*        acme  http://"), "{ctx_list}");
    let ctx_json = ctx.run(&["context", "list", "-o", "json"]).await.ok().stdout;
    assert!(
        !ctx_json.contains(&admin_key) && ctx_json.contains("\"key\": \"set\""),
        "{ctx_json}"
    );
    // Without CORRAL_ADDR / CORRAL_API_KEY the context alone connects.
    let mut c = ctx.command(&["whoami", "-q"]);
    c.env_remove("CORRAL_ADDR").env_remove("CORRAL_API_KEY");
    let o = c.output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "admin@acme\n", "{o:?}");
    // A key from a flag wins over the context's, and does not inherit its tenant/user.
    let mut c = ctx.command(&["whoami", "-q", "--api-key", BOOTSTRAP_KEY]);
    c.env_remove("CORRAL_ADDR").env_remove("CORRAL_API_KEY");
    let o = c.output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "admin@superadmin\n", "{o:?}");
    // An explicit --user that disagrees with the key: the server refuses it (401 -> 5).
    let mut c = ctx.command(&["whoami", "--user", "nobody"]);
    c.env_remove("CORRAL_ADDR").env_remove("CORRAL_API_KEY");
    assert_eq!(c.output().await.unwrap().status.code(), Some(5));
    ctx.run(&["context", "add", "other", "--addr", "http://127.0.0.1:9"])
        .await
        .ok();
    assert_eq!(ctx.run(&["context", "current", "-q"]).await.ok().stdout, "acme\n");
    ctx.run(&["context", "use", "other"]).await.ok();
    let mut c = ctx.command(&["whoami"]);
    c.env_remove("CORRAL_ADDR").env_remove("CORRAL_API_KEY");
    let o = c.output().await.unwrap();
    assert_eq!(o.status.code(), Some(1), "nothing listens on port 9: {o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot connect"),
        "{o:?}"
    );
    ctx.run(&["context", "remove", "other"]).await.ok();
    ctx.run(&["context", "use", "other"]).await.code(3);
    ctx.run(&["context", "remove", "other"]).await.code(3);

    // completion and help.
    for shell in ["bash", "zsh", "fish"] {
        let c = root.run(&["completion", shell]).await.ok().stdout;
        assert!(
            c.contains("corral") && c.contains("instance"),
            "{shell}: {}",
            &c[..c.len().min(200)]
        );
    }
    for noun in [
        "tenant",
        "user",
        "key",
        "namespace",
        "host",
        "cluster",
        "network",
        "container-manager",
        "cloud",
        "project",
        "flavor",
        "image",
        "instance",
        "app",
        "service",
    ] {
        let h = root.run(&[noun, "--help"]).await.ok().stdout;
        let verb = h
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .nth(1)
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{noun} has verbs: {h}"))
            .to_string();
        let vh = root.run(&[noun, &verb, "--help"]).await.ok().stdout;
        assert!(vh.contains("Example"), "{noun} {verb} --help has examples: {vh}");
    }
    assert!(
        root.run(&["query", "--help"])
            .await
            .ok()
            .stdout
            .contains("Examples")
    );
    s.stop().await;
}

/// Networks, container managers, clusters and hosts (no sshd needed for these).
async fn commissaire_nouns(db: Db) {
    let s = TestServer::start(db).await;
    let home = tempfile::tempdir().unwrap();
    let key = s.create_tenant("acme", 2).await;
    let cli = Cli::new(&s, &key, home.path());

    let n = cli
        .run(&[
            "network",
            "create",
            "flan",
            "--type",
            "flannel_server",
            "--option",
            "address=10.0.0.1:8080",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        n,
        json!({"name": "flan", "type": "flannel_server", "options": {"address": "10.0.0.1:8080"}})
    );
    let t = cli.run(&["network", "list"]).await.ok().stdout;
    assert_eq!(lines(&t)[0], "NAME     TYPE            OPTIONS");
    assert!(
        t.contains("flan     flannel_server  {\"address\":\"10.0.0.1:8080\"}"),
        "{t}"
    );
    assert_eq!(
        cli.run(&["network", "list", "-q"]).await.ok().stdout,
        "default\nflan\n"
    );
    cli.run(&["network", "delete", "default"]).await.code(4);
    cli.run(&["network", "show", "nope"]).await.code(3);

    cli.run(&["container-manager", "create", "local", "--type", "trivial"])
        .await
        .ok();
    let y = cli
        .run(&["container-manager", "show", "local", "-o", "yaml"])
        .await
        .ok()
        .stdout;
    assert_eq!(y, "name: local\noptions: {}\ntype: trivial\n");
    cli.run(&["container-manager", "create", "x", "--type", "bogus"])
        .await
        .code(2);

    cli.run(&[
        "cluster",
        "create",
        "prod",
        "--network",
        "flan",
        "--container-manager",
        "local",
    ])
    .await
    .ok();
    cli.run(&["cluster", "create", "prod", "--network", "default"])
        .await
        .code(4);
    let c = cli.run(&["cluster", "list"]).await.ok().stdout;
    assert_eq!(
        lines(&c)[0],
        "NAME  STATUS  NETWORK  CONTAINER-MANAGER  HOSTS  AVAILABLE  UNAVAILABLE"
    );
    assert_eq!(
        lines(&c)[1],
        "prod  ok      flan     local              0      0          0"
    );
    let j = cli
        .run(&["cluster", "show", "prod", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(j["hosts"], json!({"total": 0, "available": 0, "unavailable": 0}));
    cli.run(&["cluster", "operation", "prod", "upgrade"])
        .await
        .code(3);
    cli.run(&["cluster", "operation", "prod", "sideways"])
        .await
        .code(2);
    cli.run(&["cluster", "join", "prod", "10.9.9.9"]).await.code(3);
    cli.run(&["network", "delete", "flan"]).await.code(4);
    cli.run(&["cluster", "delete", "prod"]).await.ok();
    cli.run(&["cluster", "show", "prod"]).await.code(3);
    assert_eq!(
        cli.run(&["host", "list", "-o", "json"]).await.ok().json(),
        json!([])
    );
    cli.run(&["host", "show", "10.1.1.1"]).await.code(3);
    let nokey = cli
        .run(&["host", "register", "10.1.1.1", "--key-file", "/nonexistent/key"])
        .await
        .code(2);
    assert!(nokey.stderr.contains("/nonexistent/key"), "{nokey:?}");
    s.stop().await;
}

/// Clouds, projects, flavors, images and instances on the mock cloud, names resolved through
/// the query API, `--wait` on bulk actions, and a failing action.
async fn perspective_nouns(db: Db) {
    let s = server(db, |c| {
        c.clouds = vec![mock_cloud(|o| {
            o.driver.insert("fail".into(), json!(["pauseInstance"]));
            // Slow enough that a wait always sees the transition (and opens the feed).
            o.driver.insert("delay_ms".into(), json!(300));
        })];
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let key = s.create_tenant("acme", 4).await;
    let cli = Cli::new(&s, &key, home.path());

    assert_eq!(
        cli.run(&["cloud", "list"]).await.ok().stdout,
        "ID    TYPE\nmock  mock\n"
    );
    let cloud = cli
        .run(&["cloud", "show", "mock", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(cloud["projects"].as_array().unwrap().len(), 1, "{cloud}");
    cli.run(&["cloud", "show", "nope"]).await.code(3);
    let ops = cli.run(&["cloud", "operations", "-o", "json"]).await.ok().json();
    assert!(
        ops["mock"].as_array().unwrap().contains(&json!("rebootInstance")),
        "{ops}"
    );
    let project = cli
        .run(&["project", "list", "-q"])
        .await
        .ok()
        .stdout
        .trim()
        .to_string();
    let p = cli
        .run(&["project", "show", "--cloud", "mock", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(p["id"], project.as_str());
    assert_eq!(p["flavors"].as_array().unwrap().len(), 2);
    let fl = cli.run(&["flavor", "list"]).await.ok().stdout;
    assert_eq!(
        lines(&fl)[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "VCPUS", "RAM-MB", "DISK-GB", "CLOUD", "PROJECT"]
    );
    assert!(
        lines(&fl)[1].contains("small  1      512     10       mock"),
        "{fl}"
    );
    let small = cli
        .run(&["flavor", "show", "small", "-q"])
        .await
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(small.len(), 36);
    cli.run(&["flavor", "show", "huge"]).await.code(3);
    let images = cli.run(&["image", "list", "-o", "yaml"]).await.ok().stdout;
    assert!(images.contains("  name: debian\n  state: saved\n"), "{images}");

    // launch by names, --wait (polling or feed: whichever the server offers).
    let out = cli
        .run(&[
            "instance", "launch", "web-1", "web-2", "--flavor", "small", "--image", "debian", "--cloud",
            "mock", "--wait",
        ])
        .await
        .ok();
    assert_eq!(
        lines(&out.stdout)[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "STATUS", "MESSAGE"]
    );
    assert!(
        out.stderr.contains("following the change feed from revision "),
        "{out:?}"
    );
    assert!(out.stderr.contains("instance web-1: launched (done)"), "{out:?}");
    assert!(out.stderr.contains("instance web-2: launched (done)"), "{out:?}");
    let list = cli.run(&["instance", "list", "-o", "json"]).await.ok().json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|i| i["state"] == "launched" && i["flavor"] == "small" && i["image"] == "debian"),
        "{list:?}"
    );
    let t = cli.run(&["instance", "list"]).await.ok().stdout;
    assert_eq!(lines(&t).len(), 3, "{t}");
    assert!(lines(&t)[1].contains("web-1  launched  small   debian"), "{t}");
    let shown = cli
        .run(&["instance", "show", "web-1", "-o", "yaml"])
        .await
        .ok()
        .stdout;
    assert!(
        shown.contains("name: web-1\n") && shown.contains("state: launched\n"),
        "{shown}"
    );

    // Bulk action with --wait, then a failing one (the mock fails every pause): exit 1
    // naming each instance and the driver's reason.
    let r = cli
        .run(&["instance", "reboot", "web-1", "web-2", "--wait"])
        .await
        .ok();
    assert!(r.stderr.contains("instance web-2: launched (done)"), "{r:?}");
    let f = cli
        .run(&[
            "instance",
            "pause",
            "web-1",
            "web-2",
            "--wait",
            "--timeout",
            "60s",
        ])
        .await
        .code(1);
    assert!(
        f.stderr.contains("2 of 2 failed: instance web-1 (error: pauseInstance: injected failure), instance web-2 (error: pauseInstance: injected failure)"),
        "{f:?}"
    );
    // Refused items: printed, then exit 4 (409) without waiting forever.
    let refused = cli.run(&["instance", "reboot", "web-1", "--wait"]).await.code(4);
    assert!(
        refused.stdout.contains("409") && refused.stderr.contains("Cannot reboot instance in state error"),
        "{refused:?}"
    );
    let h = cli.run(&["instance", "history", "web-1"]).await.ok().stdout;
    assert!(
        h.contains("pause") && h.contains("failed") && h.contains("injected failure"),
        "{h}"
    );
    let con = cli
        .run(&["instance", "console", "web-1", "-o", "json"])
        .await
        .ok()
        .json();
    assert!(con.get("output").is_some(), "{con}");
    let del = cli
        .run(&["instance", "delete", "web-1", "web-2", "--wait"])
        .await
        .ok();
    assert!(del.stderr.contains("instance web-2: deleted (done)"), "{del:?}");
    let gone = cli.run(&["instance", "show", "web-1"]).await.code(3);
    // Whether the query read model has caught up (no such name) or not (the GET's 404).
    assert!(
        gone.stderr.contains("no instance named 'web-1'") || gone.stderr.contains("not found"),
        "{gone:?}"
    );

    // Snapshot and image delete with --wait; rename; resize to a named flavor.
    cli.run(&[
        "instance", "launch", "db", "--flavor", "small", "--image", "alpine", "--wait",
    ])
    .await
    .ok();
    cli.run(&["instance", "resize", "db", "--flavor", "large", "--wait"])
        .await
        .ok();
    let db_inst = cli
        .run(&["instance", "show", "db", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(db_inst["flavor"]["name"], "large", "{db_inst}");
    let snap_id = cli
        .run(&["image", "snapshot", "db", "--name", "db-snap", "--wait", "-q"])
        .await
        .ok()
        .stdout
        .trim()
        .to_string();
    // By id: the query tables, which resolve names, may lag a write by up to a second
    // (docs/query.md); an id goes straight to the GET.
    let snap = cli
        .run(&["image", "show", &snap_id, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(snap["name"], "db-snap");
    assert_eq!(snap["state"], "saved");
    cli.run(&["instance", "rename", "db", "db-new"]).await.ok();
    cli.run(&["instance", "show", "db"]).await.code(3);
    cli.run(&["image", "delete", &snap_id, "--wait"]).await.ok();
    cli.run(&["image", "show", &snap_id]).await.code(3);

    // Ambiguous names: exit 2 listing the candidates.
    cli.run(&[
        "instance", "launch", "twin", "twin", "--flavor", "small", "--image", "debian", "--wait",
    ])
    .await
    .ok();
    let amb = cli.run(&["instance", "show", "twin"]).await.code(2);
    assert!(
        amb.stderr.contains("'twin' is ambiguous: 2 instances match"),
        "{amb:?}"
    );
    let ids = cli
        .run(&["instance", "list", "-q", "--state", "launched"])
        .await
        .ok()
        .stdout;
    assert_eq!(ids.lines().count(), 3, "{ids}");

    // query: a table, -q, json; a SQL error is exit 2.
    let q = cli
        .run(&[
            "query",
            "select name from instances where name = :n: order by id",
            "--param",
            "n=twin",
        ])
        .await
        .ok();
    assert_eq!(q.stdout, "name\ntwin\ntwin\n(2 rows)\n");
    let q = cli
        .run(&["query", "select count(*) as n from instances", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(q[0]["data"]["row"][0]["value"][0], 3);
    let bad = cli.run(&["query", "delete from instances"]).await.code(2);
    assert!(
        bad.stderr
            .contains("Only SELECT and EXPLAIN statements are supported."),
        "{bad:?}"
    );
    let mut piped = cli.command(&["query", "-q"]);
    piped.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = piped.spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"select name from instances where name = 'db-new'")
        .await
        .unwrap();
    drop(stdin);
    let o = child.wait_with_output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "db-new\n");
    s.stop().await;
}

/// CDAP apps and services: deploy from a file, lifecycle with --wait, scale, runs, logs, a
/// method call through the proxy, route config.
async fn cdap_nouns(db: Db) {
    let s = TestServer::start(db).await;
    let home = tempfile::tempdir().unwrap();
    let key = s.create_tenant("acme", 2).await;
    let cli = Cli::new(&s, &key, home.path());
    let testsvc = crate::harness::testsvc();
    let spec = home.path().join("app.json");
    std::fs::write(
        &spec,
        serde_json::to_vec(&json!({"name": "shop", "version": "1.0.0", "description": "Shop",
            "services": [{"name": "api", "command": [testsvc], "instances": 1}]}))
        .unwrap(),
    )
    .unwrap();
    let d = cli
        .run(&["app", "deploy", spec.to_str().unwrap(), "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        (d["name"].as_str(), d["appVersion"].as_str()),
        (Some("shop"), Some("1.0.0"))
    );
    cli.run(&["app", "deploy", spec.to_str().unwrap(), "--app-version", "2.0.0"])
        .await
        .ok();
    assert_eq!(
        cli.run(&["app", "versions", "shop", "-q"]).await.ok().stdout,
        "1.0.0\n2.0.0\n"
    );
    assert_eq!(
        cli.run(&["app", "versions", "shop", "-o", "yaml"])
            .await
            .ok()
            .stdout,
        "- 1.0.0\n- 2.0.0\n"
    );
    let y = cli.run(&["app", "show", "shop", "-o", "yaml"]).await.ok().stdout;
    assert!(
        y.contains("appVersion: 2.0.0\n") && y.contains("services:\n- command:\n  - "),
        "{y}"
    );
    let l = cli.run(&["app", "list"]).await.ok().stdout;
    assert_eq!(l, "NAME  VERSION  DESCRIPTION\nshop  2.0.0    Shop\n");
    cli.run(&["app", "show", "shop", "--app-version", "9"])
        .await
        .code(3);
    let bad = home.path().join("bad.json");
    std::fs::write(
        &bad,
        br#"{"name": "x", "services": [{"name": "a", "command": ["true"], "instance": 2}]}"#,
    )
    .unwrap();
    cli.run(&["app", "deploy", bad.to_str().unwrap()]).await.code(2);

    let svc = ["shop", "api", "--app-version", "1.0.0"];
    let start = [
        &["service", "start"][..],
        &svc[..],
        &["--wait", "--timeout", "60s"],
    ]
    .concat();
    let st = cli.run(&start).await.ok();
    assert!(st.stderr.contains("RUNNING (done)"), "{st:?}");
    cli.run(&[&["service", "start"][..], &svc[..]].concat())
        .await
        .code(4);
    let status = cli
        .run(&[&["service", "status"][..], &svc[..], &["-o", "json"]].concat())
        .await
        .ok()
        .json();
    assert_eq!(status["status"], "RUNNING");
    cli.run(&[&["service", "scale"][..], &svc[..], &["2"]].concat())
        .await
        .ok();
    let runs = cli
        .run(&[&["service", "runs"][..], &svc[..]].concat())
        .await
        .ok()
        .stdout;
    assert!(
        lines(&runs)[0].starts_with("RUNID") && runs.contains("RUNNING"),
        "{runs}"
    );
    let logs = cli
        .run(&[&["service", "logs"][..], &svc[..]].concat())
        .await
        .ok()
        .stdout;
    assert!(logs.contains("==> instance 0 (pid "), "{logs}");
    s.wait_json(
        &key,
        "/v3/namespaces/default/apps/shop/versions/1.0.0/services/api/instances",
        |v| v["healthy"] == 2,
    )
    .await;
    let call = cli
        .run(
            &[
                &["service", "call"][..],
                &svc[..],
                &["echo/hello", "-X", "POST", "-d", "abc"],
            ]
            .concat(),
        )
        .await
        .ok()
        .json();
    assert_eq!(
        (
            call["method"].as_str(),
            call["path"].as_str(),
            call["body_len"].as_u64()
        ),
        (Some("POST"), Some("/echo/hello"), Some(3)),
        "{call}"
    );
    cli.run(&[&["service", "call"][..], &svc[..], &["no/such/route"]].concat())
        .await
        .code(3);
    cli.run(&[
        "service", "routes", "shop", "api", "--set", "1.0.0=60", "--set", "2.0.0=30",
    ])
    .await
    .code(2);
    let r = cli
        .run(&[
            "service", "routes", "shop", "api", "--set", "1.0.0=70", "--set", "2.0.0=30",
        ])
        .await
        .ok()
        .stdout;
    assert_eq!(r, "VERSION  PERCENT\n1.0.0    70\n2.0.0    30\n");
    cli.run(&["service", "routes", "shop", "api", "--clear"])
        .await
        .ok();
    let list = cli.run(&["service", "list", "-o", "json"]).await.ok().json();
    assert_eq!(list[0]["name"], "api");
    let stop = [&["service", "stop"][..], &svc[..], &["--wait"]].concat();
    assert!(cli.run(&stop).await.ok().stderr.contains("STOPPED (done)"));
    cli.run(&["app", "delete", "shop", "--app-version", "1.0.0"])
        .await
        .ok();
    cli.run(&["app", "delete", "shop"]).await.ok();
    cli.run(&["app", "show", "shop"]).await.code(3);
    s.stop().await;
}

/// `--wait` on rolling operations over three real sshd hosts: hosts registered from a key
/// file and followed to the end of their bootstrap, a deploy that finishes, an upgrade that
/// fails on the middle host (exit 1 naming the operation and the host).
async fn rolling_operations_wait(db: Db) {
    use crate::operations::{corral, fleet, profile};
    let trace = tempfile::tempdir().unwrap();
    let fleet = fleet(3);
    let [a, b, c] = <[String; 3]>::try_from(fleet.addresses()).unwrap();
    let s = corral(db, &fleet, profile(trace.path(), &b, 0.2)).await;
    let key = s.create_tenant("acme", 2).await;
    let home = tempfile::tempdir().unwrap();
    let key_file = home.path().join("id_ed25519");
    std::fs::write(&key_file, &fleet.key.private_key).unwrap();
    let cli = Cli::new(&s, &key, home.path());
    cli.run(&["cluster", "create", "c"]).await.ok();
    for h in [&a, &b, &c] {
        let o = cli
            .run(&[
                "host",
                "register",
                h,
                "--key-file",
                key_file.to_str().unwrap(),
                "--wait",
                "--timeout",
                "90s",
            ])
            .await
            .ok();
        assert!(
            o.stderr.contains(&format!("host {h}: disassociated (done)")),
            "{o:?}"
        );
    }
    let hosts = cli.run(&["host", "list"]).await.ok().stdout;
    assert_eq!(
        lines(&hosts)[0].split_whitespace().collect::<Vec<_>>(),
        [
            "ADDRESS",
            "STATUS",
            "OS",
            "CPUS",
            "MEMORY-KB",
            "SPACE-KB",
            "LAST-CHECK"
        ]
    );
    assert_eq!(lines(&hosts).len(), 4, "{hosts}");
    let st = cli.run(&["host", "status", &a, "-o", "json"]).await.ok().json();
    assert_eq!(st["type"], "host_only");
    let creds = cli.run(&["host", "creds", &a, "-o", "json"]).await.ok().json();
    assert_eq!(creds["remote_user"], "root");
    cli.run(&["cluster", "join", "c", &a, &b, &c]).await.ok();
    assert_eq!(
        cli.run(&["cluster", "hosts", "c", "-q"]).await.ok().stdout,
        format!("{a}\n{b}\n{c}\n")
    );
    assert_eq!(
        cli.run(&["cluster", "hosts", "c", "-o", "json"])
            .await
            .ok()
            .json(),
        json!([a, b, c])
    );
    let ys = cli.run(&["host", "list", "-o", "yaml"]).await.ok().stdout;
    assert!(
        ys.starts_with("- address: ") && ys.contains(&format!("address: {b}\n  cpus: ")),
        "{ys}"
    );

    let d = cli
        .run(&["cluster", "deploy", "c", "7.2.6", "--wait", "--timeout", "120s"])
        .await
        .ok();
    assert!(
        d.stderr.contains("following the change feed from revision "),
        "{d:?}"
    );
    assert!(d.stderr.contains("deploy of cluster c: finished (done)"), "{d:?}");
    assert!(
        d.stderr
            .contains(&format!("{a}=deployed {b}=deployed {c}=deployed")),
        "{d:?}"
    );
    assert!(lines(&d.stdout)[1].starts_with("c        finished"), "{d:?}");
    for h in [&a, &b, &c] {
        assert_eq!(
            std::fs::read_to_string(trace.path().join(format!("{h}.deploy"))).unwrap(),
            "7.2.6\n"
        );
    }

    let u = cli
        .run(&["cluster", "upgrade", "c", "--wait", "--timeout", "120s"])
        .await
        .code(1);
    assert!(
        u.stderr.contains(&format!(
            "corral: 1 of 1 failed: upgrade of cluster c (failed: {b}:"
        )),
        "{u:?}"
    );
    assert!(
        u.stderr.contains(&format!("{a}=upgraded {b}=failed {c}=pending")),
        "{u:?}"
    );
    let rec = cli
        .run(&["cluster", "operation", "c", "upgrade", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(rec["status"], "failed");
    assert_eq!(rec["failed"], json!([b]));
    // Following an operation that already ended answers at once with its outcome.
    let again = cli
        .run(&["cluster", "operation", "c", "upgrade", "--wait"])
        .await
        .code(1);
    assert!(
        again.stderr.contains("upgrade of cluster c (failed:"),
        "{again:?}"
    );
    cli.run(&["host", "delete", &c]).await.ok();
    cli.run(&["host", "show", &c]).await.code(3);
    s.stop().await;
}

/// On a terminal the wait redraws a progress bar and one line per instance in place, in
/// colour, and ends showing every instance's final state; NO_COLOR turns colour off.
async fn terminal_progress(db: Db) {
    let s = server(db, |c| {
        c.clouds = vec![mock_cloud(|o| {
            o.driver.insert("delay_ms".into(), json!(700));
            o.driver.insert("hang".into(), json!(["suspendInstance"]));
        })];
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let key = s.create_tenant("acme", 4).await;
    let cli = Cli::new(&s, &key, home.path());
    cli.run(&[
        "instance", "launch", "tty-1", "tty-2", "--flavor", "small", "--image", "debian", "--wait",
    ])
    .await
    .ok();

    // `script` gives the command a pseudo-terminal and copies what it draws.
    let pty = |args: &str, no_color: bool| {
        let c = cli.command(&[]);
        let mut script = tokio::process::Command::new("script");
        script.args(["-qec", &format!("{BIN} {args}"), "/dev/null"]);
        for (k, v) in c.as_std().get_envs() {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        if no_color {
            script.env("NO_COLOR", "1");
        }
        script.env("TERM", "xterm").stdin(Stdio::null());
        script
    };
    let o = pty("instance reboot tty-1 tty-2 --wait", false)
        .output()
        .await
        .unwrap();
    let screen = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{screen}");
    // Redrawn in place: cursor up over the previous frame, lines cleared.
    assert!(
        screen.contains("\x1b[3A") && screen.contains("\r\x1b[2K"),
        "{screen:?}"
    );
    assert!(
        screen.contains("] 0/2"),
        "a first frame with nothing done: {screen:?}"
    );
    assert!(
        screen.contains("\x1b[33mrebooting\x1b[0m"),
        "transitions in yellow: {screen:?}"
    );
    // The last frame: full bar, both instances settled, in green.
    let last = screen.rsplit("\x1b[3A").next().unwrap();
    assert!(last.contains(&format!("[{}] 2/2", "#".repeat(30))), "{last:?}");
    assert!(
        last.contains("✓ instance tty-1  \x1b[32mlaunched\x1b[0m"),
        "{last:?}"
    );
    assert!(
        last.contains("✓ instance tty-2  \x1b[32mlaunched\x1b[0m"),
        "{last:?}"
    );
    assert!(
        !screen.contains("(done)"),
        "no plain progress lines on a terminal: {screen:?}"
    );

    // A failing wait on a terminal: the final frame marks it, the error names it.
    let o = pty("instance suspend tty-1 --wait --timeout 1s", true)
        .output()
        .await
        .unwrap();
    let screen = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{screen}");
    assert!(
        screen.contains("timed out after 1s; still waiting for: instance tty-1 (suspending)"),
        "{screen:?}"
    );
    assert!(
        screen.contains("… instance tty-1  suspending"),
        "NO_COLOR: plain words: {screen:?}"
    );
    assert!(!screen.contains("\x1b[33m"), "{screen:?}");
    // The interactive SQL prompt: a statement per `;`, one spread over two lines, an error
    // that does not end the session, `\q`; the statements land in the history file.
    let input = "(printf 'select 1 + 1 as two;\\n'; sleep 1; printf 'select name\\n'; sleep 0.5; \
                 printf 'from flavors order by name;\\n'; sleep 1; printf 'select nope from flavors;\\n'; \
                 sleep 1; printf '\\\\q\\n')";
    let mut sh = tokio::process::Command::new("sh");
    let c = cli.command(&[]);
    for (k, v) in c.as_std().get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.args(["-c", &format!("{input} | script -qec '{BIN} query' /dev/null")]);
    let o = sh.env("NO_COLOR", "1").output().await.unwrap();
    let screen = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    assert_eq!(o.status.code(), Some(0), "{screen}");
    assert!(screen.contains("corral> "), "{screen:?}");
    assert!(screen.contains("two\n2\n(1 row)\n"), "{screen:?}");
    assert!(screen.contains("name\nlarge\nsmall\n(2 rows)\n"), "{screen:?}");
    assert!(screen.contains("corral: evaluation_error: "), "{screen:?}");
    let history = std::fs::read_to_string(home.path().join("query_history")).unwrap();
    assert!(
        history.contains("select 1 + 1 as two;") && history.contains("from flavors order by name;"),
        "{history}"
    );

    // Tables on a terminal: bold headers unless NO_COLOR.
    let t = String::from_utf8_lossy(&pty("instance list", false).output().await.unwrap().stdout).into_owned();
    assert!(t.contains("\x1b[1mNAME\x1b[0m"), "{t:?}");
    let t = String::from_utf8_lossy(&pty("instance list", true).output().await.unwrap().stdout).into_owned();
    assert!(!t.contains("\x1b["), "{t:?}");
    s.stop().await;
}

/// HTTPS: a custom CA file, `--insecure`, and the refusal of an unknown issuer.
async fn tls(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let (c2, k2) = (cert.clone(), key.clone());
    let s = TestServer::start_with(db, move |st| {
        st.tls_cert = Some(c2);
        st.tls_key = Some(k2);
    })
    .await;
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let cli = Cli {
        addr: format!("https://localhost:{port}"),
        key: BOOTSTRAP_KEY.into(),
        home: dir.path().to_path_buf(),
    };
    let ok = cli
        .run(&["whoami", "-q", "--cacert", cert.to_str().unwrap()])
        .await
        .ok();
    assert_eq!(ok.stdout, "admin@superadmin\n");
    let refused = cli.run(&["whoami"]).await.code(1);
    assert!(
        refused.stderr.contains("TLS") && refused.stderr.contains("UnknownIssuer"),
        "{refused:?}"
    );
    assert_eq!(
        cli.run(&["whoami", "-q", "--insecure"]).await.ok().stdout,
        "admin@superadmin\n"
    );
    let bad_ca = cli
        .run(&["whoami", "--cacert", key.to_str().unwrap()])
        .await
        .code(2);
    assert!(bad_ca.stderr.contains("holds no certificate"), "{bad_ca:?}");
    s.stop().await;
}

/// When the feed refuses the watcher (429: the tenant's watcher cap is taken), `--wait`
/// says so and polls, with the same outcome.
async fn wait_falls_back_to_polling(db: Db) {
    let s = server(db, |c| {
        c.events.max_watchers_per_tenant = 1;
        c.clouds = vec![mock_cloud(|o| {
            o.driver.insert("delay_ms".into(), json!(300));
        })];
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let key = s.create_tenant("acme", 4).await;
    let cli = Cli::new(&s, &key, home.path());
    let held = s
        .call(&key, reqwest::Method::GET, "/events")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let o = cli
        .run(&[
            "instance", "launch", "fb-1", "--flavor", "small", "--image", "debian", "--wait",
        ])
        .await
        .ok();
    assert!(
        o.stderr.contains("change feed unavailable (status 429): polling"),
        "{o:?}"
    );
    assert!(o.stderr.contains("instance fb-1: launched (done)"), "{o:?}");
    drop(held);
    s.stop().await;
}

/// The CLI's paths do not differ by store: SQLite only (but see `on_both_stores`).
macro_rules! sqlite_only {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Db::Sqlite).await
                }
            )*
        }
    };
}

sqlite_only!(
    identity_and_contexts,
    commissaire_nouns,
    cdap_nouns,
    rolling_operations_wait,
    terminal_progress,
    tls,
    wait_falls_back_to_polling
);

/// Name resolution reads the query read model, which each store fills its own way: the
/// Perspective nouns run on PostgreSQL too.
mod on_both_stores {
    use super::perspective_nouns;
    crate::both_stores!(perspective_nouns);
}
