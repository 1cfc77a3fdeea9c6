//! The local process runner against real processes: `/bin/sh` scripts stand in for services
//! (the `corral-testsvc` binary is exercised by the supervisor's tests in core, where it can be
//! built). Liveness of a grandchild is read from `/proc`, counting a zombie as dead: in a
//! container, PID 1 may never reap the orphans a test makes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_drivers::{
    ExitInfo, LocalProcessRunner, ProcessError, ProcessHandle, ProcessRunner, ProcessSpec,
    free_loopback_port, resolve_program, resolve_program_in,
};

const LIMIT: Duration = Duration::from_secs(10);

/// A spec running `script` with `sh -c`, in `/tmp`, with a tiny environment.
fn sh(script: &str) -> ProcessSpec {
    ProcessSpec {
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        work_dir: std::env::temp_dir(),
        run_as: None,
        log_prefix: "ns/app/1.0.0/svc/0".into(),
        output_cap_bytes: 64 * 1024,
    }
}

async fn wait(h: &ProcessHandle) -> ExitInfo {
    tokio::time::timeout(LIMIT, h.wait())
        .await
        .expect("process ended in time")
}

/// Waits until the captured output contains `needle`, and answers it.
async fn output_with(h: &ProcessHandle, needle: &str) -> String {
    let until = Instant::now() + LIMIT;
    loop {
        let out = h.output_text();
        if out.contains(needle) {
            return out;
        }
        assert!(Instant::now() < until, "no {needle:?} in {out:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits (bounded) until `pid` is gone; a signal is delivered asynchronously.
async fn gone(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(3);
    while alive(pid) {
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// The first line of the output that is a number (a pid printed with `echo $!`).
fn first_pid(out: &str) -> u32 {
    out.lines().find_map(|l| l.trim().parse().ok()).expect("a pid")
}

#[tokio::test]
async fn captures_output_and_reports_the_exit_status() {
    let h = LocalProcessRunner
        .spawn(&sh("echo out; echo err >&2; exit 7"))
        .await
        .unwrap();
    assert!(h.pid > 1);
    assert_eq!(wait(&h).await, ExitInfo::Code(7));
    assert!(!h.is_running());
    assert_eq!(h.exit_info(), Some(ExitInfo::Code(7)));
    let out = h.output_text();
    assert!(out.contains("out\n") && out.contains("err\n"), "{out:?}");
    // A clone sees the same process; waiting again answers at once.
    assert_eq!(h.clone().wait().await, ExitInfo::Code(7));
}

#[tokio::test]
async fn output_keeps_only_the_last_cap_bytes() {
    let mut spec = sh("i=0; while [ $i -lt 5000 ]; do i=$((i+1)); echo line-$i; done; echo end >&2");
    spec.output_cap_bytes = 1000;
    let h = LocalProcessRunner.spawn(&spec).await.unwrap();
    assert_eq!(wait(&h).await, ExitInfo::Code(0));
    let out = h.output();
    assert_eq!(out.len(), 1000);
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("line-5000\nend\n"), "{text:?}");
    assert!(!text.contains("line-1\n"));

    let mut spec = sh("echo hello");
    spec.output_cap_bytes = 0;
    let h = LocalProcessRunner.spawn(&spec).await.unwrap();
    wait(&h).await;
    assert!(h.output().is_empty());
}

#[tokio::test]
async fn the_environment_is_exactly_the_spec() {
    let mut spec = sh("");
    spec.program = PathBuf::from("/usr/bin/env");
    spec.args = vec![];
    spec.env = vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("LOG_LEVEL".into(), "info".into()),
        ("PORT".into(), "1234".into()),
        // Later entries override earlier ones (runtime arguments over the spec's env).
        ("LOG_LEVEL".into(), "debug".into()),
    ];
    let h = LocalProcessRunner.spawn(&spec).await.unwrap();
    assert_eq!(wait(&h).await, ExitInfo::Code(0));
    let mut lines: Vec<String> = h.output_text().lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["LOG_LEVEL=debug", "PATH=/usr/bin:/bin", "PORT=1234"]);
}

#[tokio::test]
async fn runs_in_the_work_dir_with_stdin_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh("pwd; cat; echo eof");
    spec.work_dir = dir.path().to_path_buf();
    let h = LocalProcessRunner.spawn(&spec).await.unwrap();
    assert_eq!(wait(&h).await, ExitInfo::Code(0));
    let real = dir.path().canonicalize().unwrap();
    assert_eq!(h.output_text(), format!("{}\neof\n", real.display()));

    spec.work_dir = dir.path().join("missing");
    let err = LocalProcessRunner.spawn(&spec).await.unwrap_err();
    assert!(matches!(err, ProcessError::WorkDir(_)), "{err:?}");
    assert!(err.to_string().ends_with("/missing' does not exist."), "{err}");
}

#[tokio::test]
async fn a_program_that_cannot_start_is_an_error() {
    let mut spec = sh("");
    spec.program = PathBuf::from("/nonexistent/program");
    let err = LocalProcessRunner.spawn(&spec).await.unwrap_err();
    assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("Cannot start '/nonexistent/program': "),
        "{err}"
    );
}

#[tokio::test]
async fn stop_terminates_the_whole_process_group() {
    let h = LocalProcessRunner
        .spawn(&sh("sleep 1000 & echo $!; wait"))
        .await
        .unwrap();
    let grandchild = first_pid(&output_with(&h, "\n").await);
    assert!(alive(grandchild));
    assert!(h.is_running());
    let t0 = Instant::now();
    let info = LocalProcessRunner.stop(&h, Duration::from_secs(5)).await;
    assert_eq!(info, ExitInfo::Signal(15));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(!h.is_running());
    assert!(gone(grandchild).await, "grandchild {grandchild} survived");
    // Stopping again answers the same exit without signalling anything.
    assert_eq!(LocalProcessRunner.stop(&h, Duration::from_secs(5)).await, info);
}

#[tokio::test]
async fn stop_kills_after_the_grace_when_sigterm_is_ignored() {
    // The ignored disposition is inherited, so the loop's `sleep`s ignore SIGTERM too.
    let h = LocalProcessRunner
        .spawn(&sh(
            "trap '' TERM; sleep 1000 & echo $!; echo ready; while :; do sleep 0.1; done",
        ))
        .await
        .unwrap();
    let grandchild = first_pid(&output_with(&h, "ready\n").await);
    let t0 = Instant::now();
    let info = LocalProcessRunner.stop(&h, Duration::from_millis(400)).await;
    let took = t0.elapsed();
    assert_eq!(info, ExitInfo::Signal(9));
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(gone(grandchild).await, "grandchild {grandchild} survived");
}

#[tokio::test]
async fn a_leader_that_exits_takes_its_group_with_it() {
    let h = LocalProcessRunner
        .spawn(&sh("sleep 1000 & echo $!; exit 4"))
        .await
        .unwrap();
    assert_eq!(wait(&h).await, ExitInfo::Code(4));
    let grandchild = first_pid(&h.output_text());
    assert!(gone(grandchild).await, "grandchild {grandchild} survived");
}

#[tokio::test]
async fn a_process_killed_from_outside_reports_the_signal() {
    let h = LocalProcessRunner
        .spawn(&sh("echo ready; while :; do sleep 0.1; done"))
        .await
        .unwrap();
    output_with(&h, "ready\n").await;
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &h.pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert_eq!(wait(&h).await, ExitInfo::Signal(9));
}

#[tokio::test]
async fn run_as_switches_user_when_the_server_is_root() {
    if !rustix_is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let mut spec = sh("id -u; id -g");
    spec.work_dir = PathBuf::from("/");
    spec.run_as = Some((65534, 65534));
    let h = LocalProcessRunner.spawn(&spec).await.unwrap();
    assert_eq!(wait(&h).await, ExitInfo::Code(0));
    assert_eq!(h.output_text(), "65534\n65534\n");
}

/// Whether the tests run as root, read from `/proc` (no extra dependency).
fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

fn write_file(path: &Path, mode: u32) {
    std::fs::write(path, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn resolve_program_finds_absolute_paths_and_path_names() {
    assert_eq!(resolve_program("/bin/sh", None), Ok(PathBuf::from("/bin/sh")));
    let sh = resolve_program("sh", None).unwrap();
    assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");

    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("svc"), 0o755);
    let search = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
    assert_eq!(
        resolve_program_in("svc", Some(&search), None),
        Ok(dir.path().join("svc"))
    );
}

#[test]
fn resolve_program_refuses_what_cannot_run() {
    let nf = |x: &str| Err(format!("Command '{x}' not found or not executable."));
    assert_eq!(
        resolve_program("corral-no-such-command-x7", None),
        nf("corral-no-such-command-x7")
    );
    assert_eq!(resolve_program("", None), nf(""));
    assert_eq!(resolve_program("/nonexistent/svc", None), nf("/nonexistent/svc"));
    // A directory is not a program, nor is a relative path.
    assert_eq!(resolve_program("/tmp", None), nf("/tmp"));
    assert_eq!(resolve_program("./svc", None), nf("./svc"));

    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    write_file(&plain, 0o644);
    let p = plain.to_str().unwrap();
    assert_eq!(resolve_program(p, None), nf(p));
    // Relative entries of PATH (".") are never searched.
    write_file(&dir.path().join("svc"), 0o755);
    assert_eq!(resolve_program_in("svc", Some(OsStr::new(".")), None), nf("svc"));
    assert_eq!(resolve_program_in("svc", None, None), nf("svc"));
}

#[test]
fn resolve_program_keeps_to_the_allowed_dirs() {
    let allowed = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let inside = allowed.path().join("svc");
    let outside = other.path().join("svc");
    write_file(&inside, 0o755);
    write_file(&outside, 0o755);
    let dirs = [allowed.path().to_path_buf()];
    let outside_msg = |x: &str| {
        Err(format!(
            "Command '{x}' is outside the allowed service_command_dirs."
        ))
    };

    let inside_s = inside.to_str().unwrap();
    assert_eq!(
        resolve_program(inside_s, Some(&dirs)),
        Ok(inside.canonicalize().unwrap())
    );
    let outside_s = outside.to_str().unwrap();
    assert_eq!(resolve_program(outside_s, Some(&dirs)), outside_msg(outside_s));
    // Found through PATH, but not in an allowed directory.
    let search = other.path().as_os_str();
    assert_eq!(
        resolve_program_in("svc", Some(search), Some(&dirs)),
        outside_msg("svc")
    );
    // A symlink inside an allowed directory counts where it points.
    let link = allowed.path().join("link");
    symlink(&outside, &link).unwrap();
    let link_s = link.to_str().unwrap();
    assert_eq!(resolve_program(link_s, Some(&dirs)), outside_msg(link_s));
    // `..` cannot climb out either.
    let climb = format!(
        "{}/../{}/svc",
        allowed.path().display(),
        other.path().file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(resolve_program(&climb, Some(&dirs)), outside_msg(&climb));
    // A missing program is "not found" before it is "outside".
    assert_eq!(
        resolve_program("/nonexistent/svc", Some(&dirs)),
        Err("Command '/nonexistent/svc' not found or not executable.".into())
    );
}

/// The port was free a moment ago; another process (this suite starts many servers on port 0)
/// may take it first, which the supervisor survives by restarting with a new port. So: a few
/// tries, and at least one must bind.
#[test]
fn free_loopback_port_can_be_bound() {
    let mut errors = Vec::new();
    for _ in 0..10 {
        let port = free_loopback_port().unwrap();
        assert_ne!(port, 0);
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(_) => return,
            Err(e) => errors.push(format!("{port}: {e}")),
        }
    }
    panic!("no port answered by free_loopback_port could be bound: {errors:?}");
}
