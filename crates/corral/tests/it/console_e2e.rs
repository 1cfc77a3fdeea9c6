//! The web console end to end (issue 15), in Debian's headless Chromium driven by
//! `playwright-core` (`tests/console/scenario.mjs`): the real server with a mock cloud, three
//! real sshd test hosts in a cluster and a running testsvc service; the browser signs in,
//! launches an instance and watches it reach `launched`, runs a rolling restart and watches
//! each host's step, queries and explains, meets a viewer's 403, a CSRF refusal, signs out, and
//! loses its session when its key is revoked. `scripts/test.sh` installs Chromium and runs
//! `npm ci` in `tests/console` first. With `CORRAL_CONSOLE_SCREENSHOTS=<dir>` the SQLite run
//! writes a screenshot of each page there (`docs/console/` holds the committed ones).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use corral::config::OsProfilePatch;
use corral_drivers::testing::TestSshd;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_stores;
use crate::harness::{BOOTSTRAP_KEY, Db, TestServer, testsvc};
use crate::helpers::SshdHosts;

both_stores!(console_in_chromium);

const NS: &str = "/v3/namespaces/default";

/// The node project of the scenarios.
fn console_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// The node project and the browser, both required: answers `(dir, chromium)`.
fn browser_setup() -> (PathBuf, String) {
    let dir = console_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "{chromium} is missing: apt-get install chromium (scripts/test.sh does)"
    );
    (dir, chromium)
}

/// `node <script>` in the console's node project.
fn node(dir: &std::path::Path, script: &str, chromium: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script)
        .current_dir(dir)
        .env("CHROMIUM", chromium)
        .kill_on_drop(true);
    cmd
}

/// Runs a scenario script to its end; fails with its whole output unless it exited 0 and
/// printed `passed`.
async fn run(mut cmd: tokio::process::Command, passed: &str) {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the browser scenarios finish within 5 minutes")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the console scenarios failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains(passed), "{stdout}\n{stderr}");
    println!("{stdout}");
}

async fn console_in_chromium(db: Db) {
    let (dir, chromium) = browser_setup();

    let sshd = SshdHosts::start(3);
    let port = sshd.port;
    let s = TestServer::start_with(db, move |c| {
        // Each mock action takes a second, so the browser sees `launching` before `launched`.
        c.clouds = vec![crate::instances::mock_cloud(|o| {
            o.driver.insert("delay_ms".into(), json!(1000));
        })];
        c.ssh_port = port;
        c.host_allow = vec!["127.0.0.0/8".into()];
        c.ssh_connect_timeout = 5;
        c.restart_wait_timeout = 30;
        // A restart really restarts the host's sshd (it goes away and comes back), so each
        // host's step takes a few seconds and the progress is visible host by host.
        let profile = OsProfilePatch {
            bootstrap: Some("true".into()),
            upgrade: Some("sleep 2".into()),
            restart: Some(TestSshd::generic_restart_command(Duration::from_secs(1))),
            deploy: Some("true".into()),
            ids: vec![],
        };
        c.os_profiles = BTreeMap::from([
            ("debian".to_string(), profile.clone()),
            ("ubuntu".to_string(), profile),
        ]);
    })
    .await;

    let admin = s.create_tenant("acme", 10).await;
    let viewer = s.create_user(&admin, "vera", "viewer").await;

    // A cluster of the three sshd hosts, all active.
    s.put(&admin, "/api/v0/cluster/web")
        .json(json!({}))
        .expect(StatusCode::CREATED)
        .await;
    for a in &sshd.addresses {
        s.put(&admin, &format!("/api/v0/host/{a}"))
            .json(json!({"ssh_priv_key": sshd.key_b64(), "cluster": "web"}))
            .expect(StatusCode::CREATED)
            .await;
    }
    for a in &sshd.addresses {
        let h = s
            .wait_json(&admin, &format!("/api/v0/host/{a}"), |h| {
                h["status"] != "investigating" && h["status"] != "bootstrapping"
            })
            .await;
        assert_eq!(h["status"], "active", "{h}");
    }

    // An app with two versions, the current one running, and a 30/70 split.
    for v in ["1.0.0", "2.0.0"] {
        let body = json!({"version": v, "description": "The shop front",
            "services": [{"name": "web", "command": [testsvc()], "instances": 2, "health_path": "/health"}]});
        s.put(&admin, &format!("{NS}/apps/shop")).json(body).ok().await;
    }
    s.post(&admin, &format!("{NS}/apps/shop/services/web/start"))
        .ok()
        .await;
    s.put(&admin, &format!("{NS}/apps/shop/services/web/routeconfig"))
        .json(json!({"1.0.0": 30, "2.0.0": 70}))
        .expect_empty_ok()
        .await;

    let mut cmd = node(&dir, "scenario.mjs", &chromium);
    cmd.env("CORRAL_URL", &s.base)
        .env("CORRAL_TENANT", "acme")
        .env("CORRAL_ADMIN_KEY", &admin)
        .env("CORRAL_VIEWER_KEY", &viewer)
        .env("CORRAL_VIEWER_USER", "vera")
        .env("CORRAL_SUPER_KEY", BOOTSTRAP_KEY)
        .env("CORRAL_CLUSTER", "web")
        .env("CORRAL_HOSTS", sshd.addresses.join(","))
        .env("CORRAL_SERVICE", "default/shop/web");
    // Screenshots come from one store's run only.
    match std::env::var_os("CORRAL_CONSOLE_SCREENSHOTS") {
        Some(shots) if db == Db::Sqlite => cmd.env("CORRAL_CONSOLE_SCREENSHOTS", shots),
        _ => cmd.env_remove("CORRAL_CONSOLE_SCREENSHOTS"),
    };
    run(cmd, "all scenarios passed").await;

    s.post(&admin, &format!("{NS}/apps/shop/services/web/stop"))
        .expect_empty_ok()
        .await;
    s.stop().await;
}

/// A watcher the server cuts off for lagging (a per-watcher buffer of 2 events, overflowed by a
/// burst of 40 launches) resumes from the revision the `lagged` event names and refetches: the
/// page still shows every instance reaching `launched`, without a reload. The feed's client
/// logic does not depend on the store, so this runs on SQLite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_lagged() {
    let (dir, chromium) = browser_setup();
    let s = TestServer::start_with(Db::Sqlite, |c| {
        c.clouds = vec![crate::instances::mock_cloud(|o| {
            o.driver.insert("delay_ms".into(), json!(500));
        })];
        c.events.buffer = 2;
    })
    .await;
    let admin = s.create_tenant("acme", 10).await;
    let mut cmd = node(&dir, "lagged.mjs", &chromium);
    cmd.env("CORRAL_URL", &s.base)
        .env("CORRAL_ADMIN_KEY", &admin)
        .env("CORRAL_E2E_COUNT", "40");
    run(cmd, "lagged scenario passed").await;
    s.stop().await;
}
