//! Local service processes (spec cdap-v3 1.5): spawning one instance of a CDAP service, capturing
//! its output, learning how it ended and stopping it.
//!
//! Only the mechanics live here; the supervisor in core decides what to run, when to restart,
//! the environment (this module passes exactly what it is given) and the health checks. It is a
//! trait, [`ProcessRunner`], so the supervisor can be tested against a fake runner.
//!
//! Every instance is the leader of its own **process group** (pgid = pid). Signals go to the
//! group, so a service that forks (a shell wrapper, a worker pool) is stopped as a whole, and when
//! the leader exits on its own the rest of the group is killed at once: an instance never leaves
//! orphans behind holding its port or its working directory.
//!
//! Signals are sent with rustix's safe `kill_process_group` (the workspace forbids `unsafe`).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// After the leader exited (and the rest of its group was killed), how long its output is still
/// read before the exit is reported. Only a process that left the group (`setsid`) and kept the
/// pipe open makes this wait; its output keeps being captured after the exit is reported.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// How long [`ProcessRunner::stop`] waits for the exit after `SIGKILL`. A process survives
/// `SIGKILL` only if the signal was refused (it runs as a user the server may not signal) or it
/// is stuck in the kernel; the stop must not hang the supervisor on it.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Longest line copied to the server log; the rest of a longer line is dropped from the log
/// (not from the captured tail). Keeps a service that prints without newlines from making one
/// unbounded log record.
const MAX_LOG_LINE: usize = 8 * 1024;

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program, as resolved by [`resolve_program`] (an absolute path).
    pub program: PathBuf,
    /// Its arguments (`command[1..]`).
    pub args: Vec<String>,
    /// The **whole** environment of the child: nothing of the server's environment is passed
    /// (not even `PATH`, which the caller adds when the contract wants it). When a name appears
    /// twice the later value wins, so a caller can append overrides in the contract's order.
    pub env: Vec<(String, String)>,
    /// The working directory; it must exist. The caller creates it (fresh and empty) and
    /// removes it after the exit.
    pub work_dir: PathBuf,
    /// Run as this `(uid, gid)` (supplementary groups are dropped when the server is root);
    /// `None`: as the server's user.
    pub run_as: Option<(u32, u32)>,
    /// Put before every line copied to the server log, e.g. `ns/app/version/svc/index`.
    pub log_prefix: String,
    /// How much of the most recent output (stdout and stderr interleaved as they arrive) is
    /// kept for [`ProcessHandle::output`]. 0 keeps nothing.
    pub output_cap_bytes: usize,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    /// It exited with this status.
    Code(i32),
    /// It was killed by this signal (15 `SIGTERM`, 9 `SIGKILL`, ...).
    Signal(i32),
    /// The status could not be learnt: waiting for it failed, or the process was still there
    /// 5 s after `SIGKILL` (see [`ProcessHandle::is_running`]).
    Unknown,
}

impl ExitInfo {
    /// True for `Code(0)`.
    pub fn success(&self) -> bool {
        *self == ExitInfo::Code(0)
    }
}

impl fmt::Display for ExitInfo {
    /// A phrase for a run record's or an instance's message: "exited with status 3".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitInfo::Code(c) => write!(f, "exited with status {c}"),
            ExitInfo::Signal(s) => write!(f, "killed by signal {s}"),
            ExitInfo::Unknown => f.write_str("ended with an unknown status"),
        }
    }
}

/// Why a process could not be started. The `Display` is a sentence fit for a run record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The working directory does not exist or is not a directory.
    #[error("Working directory '{0}' does not exist.")]
    WorkDir(String),
    /// The operating system refused to start the program (not found, not executable, no
    /// permission for `run_as`, out of processes...).
    #[error("Cannot start '{program}': {message}.")]
    Spawn {
        /// The program as given in the spec.
        program: String,
        /// The operating system's reason.
        message: String,
    },
}

/// The most recent `cap` bytes of output.
#[derive(Debug)]
struct OutputTail {
    buf: VecDeque<u8>,
    cap: usize,
}

impl OutputTail {
    fn push(&mut self, data: &[u8]) {
        if data.len() >= self.cap {
            self.buf.clear();
            self.buf.extend(&data[data.len() - self.cap..]);
        } else {
            let overflow = (self.buf.len() + data.len()).saturating_sub(self.cap);
            self.buf.drain(..overflow);
            self.buf.extend(data);
        }
    }
}

/// Locks ignoring poisoning: the tail is plain bytes, valid whatever a panicking holder did.
fn lock(tail: &Mutex<OutputTail>) -> MutexGuard<'_, OutputTail> {
    tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A started process. Cheap to clone: clones observe the same process.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    /// Its process id, which is also its process group id.
    pub pid: u32,
    exit: watch::Receiver<Option<ExitInfo>>,
    output: Arc<Mutex<OutputTail>>,
}

impl ProcessHandle {
    /// Waits for the process to end and answers how. May be called any number of times, from
    /// any clone; once the process has ended it answers at once. When it answers, the rest of
    /// the process group has been killed and the output read to its end (or for 1 s, if a process that left the group keeps
    /// the pipe open).
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exit.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => (*v).unwrap_or(ExitInfo::Unknown),
            // The watcher task is gone without a word: only when the runtime shuts down.
            Err(_) => ExitInfo::Unknown,
        }
    }

    /// How it ended, or `None` while it runs.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    /// True until its exit has been reported.
    pub fn is_running(&self) -> bool {
        self.exit_info().is_none()
    }

    /// The captured tail of its output (stdout and stderr, raw bytes, at most
    /// `output_cap_bytes`).
    pub fn output(&self) -> Vec<u8> {
        lock(&self.output).buf.iter().copied().collect()
    }

    /// [`output`](Self::output) as text (lossy: the tail may start inside a character).
    pub fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output()).into_owned()
    }
}

/// Starts and stops service processes. The supervisor holds an `Arc<dyn ProcessRunner>`.
#[async_trait::async_trait]
pub trait ProcessRunner: Send + Sync + 'static {
    /// Starts `spec.program` with `spec.args` in its own process group, in `spec.work_dir`, with
    /// exactly `spec.env`, stdin closed, stdout and stderr captured into the handle's tail and
    /// copied line by line to the server log (tracing target `corral::service`, prefixed with
    /// `spec.log_prefix`). Returns once the process exists; whether it then stays up is the
    /// caller's to watch ([`ProcessHandle::wait`]).
    async fn spawn(&self, spec: &ProcessSpec) -> Result<ProcessHandle, ProcessError>;

    /// Stops the process: `SIGTERM` to its group, `SIGKILL` to the group if the leader is still
    /// there after `grace`, and waits for the exit. A process that has already ended is not
    /// signalled again; its exit is answered.
    async fn stop(&self, handle: &ProcessHandle, grace: Duration) -> ExitInfo;
}

/// Runs processes on the server's own machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalProcessRunner;

#[async_trait::async_trait]
impl ProcessRunner for LocalProcessRunner {
    async fn spawn(&self, spec: &ProcessSpec) -> Result<ProcessHandle, ProcessError> {
        // Checked first: the error of a spawn in a missing directory names neither.
        if !spec.work_dir.is_dir() {
            return Err(ProcessError::WorkDir(spec.work_dir.display().to_string()));
        }
        let program = spec.program.display().to_string();
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some((uid, gid)) = spec.run_as {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd.spawn().map_err(|e| ProcessError::Spawn {
            program: program.clone(),
            message: e.to_string(),
        })?;
        let Some(pid) = child.id() else {
            // Only possible once the child has been reaped, which nothing has done yet.
            return Err(ProcessError::Spawn {
                program,
                message: "no process id".into(),
            });
        };

        let tail = Arc::new(Mutex::new(OutputTail {
            buf: VecDeque::new(),
            cap: spec.output_cap_bytes,
        }));
        let prefix: Arc<str> = Arc::from(spec.log_prefix.as_str());
        let mut readers: Vec<JoinHandle<()>> = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(pump(out, "stdout", prefix.clone(), tail.clone())));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(pump(err, "stderr", prefix.clone(), tail.clone())));
        }
        tracing::info!(target: "corral::service", pid, "{prefix}: started {program}");

        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let info = match child.wait().await {
                Ok(st) => match (st.code(), st.signal()) {
                    (Some(c), _) => ExitInfo::Code(c),
                    (None, Some(s)) => ExitInfo::Signal(s),
                    (None, None) => ExitInfo::Unknown,
                },
                Err(e) => {
                    tracing::warn!(target: "corral::service", pid, "{prefix}: cannot wait: {e}");
                    ExitInfo::Unknown
                }
            };
            // The leader is gone: whatever it left in its group goes too.
            if let Err(e) = signal_group(pid, Signal::KILL) {
                tracing::warn!(target: "corral::service", pid, "{prefix}: cannot kill the process group: {e}");
            }
            for r in readers {
                let _ = tokio::time::timeout(OUTPUT_DRAIN, r).await;
            }
            tracing::info!(target: "corral::service", pid, "{prefix}: {info}");
            let _ = tx.send(Some(info));
        });

        Ok(ProcessHandle {
            pid,
            exit: rx,
            output: tail,
        })
    }

    async fn stop(&self, handle: &ProcessHandle, grace: Duration) -> ExitInfo {
        if let Some(info) = handle.exit_info() {
            return info;
        }
        if let Err(e) = signal_group(handle.pid, Signal::TERM) {
            tracing::warn!(target: "corral::service", pid = handle.pid, "cannot send SIGTERM: {e}");
        }
        if let Ok(info) = tokio::time::timeout(grace, handle.wait()).await {
            return info;
        }
        tracing::info!(target: "corral::service", pid = handle.pid, "still running after SIGTERM, sending SIGKILL");
        if let Err(e) = signal_group(handle.pid, Signal::KILL) {
            tracing::warn!(target: "corral::service", pid = handle.pid, "cannot send SIGKILL: {e}");
        }
        tokio::time::timeout(KILL_WAIT, handle.wait())
            .await
            .unwrap_or(ExitInfo::Unknown)
    }
}

/// Sends `sig` to the process group `pgid`. A group that no longer exists is not an error.
///
/// Called only while the leader is known not to have been reaped, or right after it was
/// reaped (to kill the rest): Linux does not reuse a pid while a process group of that id
/// has members, so the signal cannot reach an unrelated group.
fn signal_group(pgid: u32, sig: Signal) -> io::Result<()> {
    let pid = i32::try_from(pgid)
        .ok()
        .filter(|p| *p > 1)
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad process group id"))?;
    match kill_process_group(pid, sig) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Copies one output stream into the tail and, line by line, into the server log, until the
/// stream ends (every writer closed it) or fails.
async fn pump(
    mut reader: impl AsyncRead + Unpin,
    stream: &'static str,
    prefix: Arc<str>,
    tail: Arc<Mutex<OutputTail>>,
) {
    let mut buf = vec![0u8; 8 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let log = |line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        tracing::info!(target: "corral::service", stream, "{prefix}: {}", text.trim_end_matches('\r'));
    };
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = &buf[..n];
        lock(&tail).push(data);
        for piece in data.split_inclusive(|b| *b == b'\n') {
            let (body, ends) = match piece.split_last() {
                Some((b'\n', body)) => (body, true),
                _ => (piece, false),
            };
            let room = MAX_LOG_LINE.saturating_sub(line.len());
            line.extend_from_slice(&body[..body.len().min(room)]);
            if ends {
                log(&line);
                line.clear();
            }
        }
    }
    if !line.is_empty() {
        log(&line);
    }
}

/// Resolves a service's `command[0]` (spec cdap-v3 1.1) with the server's `PATH`; see
/// [`resolve_program_in`].
pub fn resolve_program(name: &str, allowed_dirs: Option<&[PathBuf]>) -> Result<PathBuf, String> {
    resolve_program_in(name, std::env::var_os("PATH").as_deref(), allowed_dirs)
}

/// Resolves `name` to a program: an absolute path is taken as it is, a bare name is looked up
/// in the directories of `search_path` (a `PATH` value; relative entries such as `.` are
/// skipped, so the server's working directory never supplies a program). A relative path with
/// a `/` is refused. The result must be a regular file with an execute bit set.
///
/// With `allowed_dirs` (the `service_command_dirs` setting) the program's canonical path (all
/// symlinks resolved) must lie inside one of the canonicalised directories, and that canonical
/// path is what is returned, so what runs is what was checked even if a symlink changes later.
///
/// Errors are the spec's 400 messages: `Command 'x' not found or not executable.` and
/// `Command 'x' is outside the allowed service_command_dirs.`
pub fn resolve_program_in(
    name: &str,
    search_path: Option<&OsStr>,
    allowed_dirs: Option<&[PathBuf]>,
) -> Result<PathBuf, String> {
    let not_found = || format!("Command '{name}' not found or not executable.");
    let found = if name.contains('/') {
        let p = Path::new(name);
        if !p.is_absolute() || !is_executable(p) {
            return Err(not_found());
        }
        p.to_path_buf()
    } else if name.is_empty() || name == "." || name == ".." {
        return Err(not_found());
    } else {
        search_path
            .map(std::env::split_paths)
            .into_iter()
            .flatten()
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
            .ok_or_else(not_found)?
    };
    let Some(dirs) = allowed_dirs else {
        return Ok(found);
    };
    let real = found.canonicalize().map_err(|_| not_found())?;
    let inside = dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .any(|d| real.starts_with(d));
    if inside {
        Ok(real)
    } else {
        Err(format!(
            "Command '{name}' is outside the allowed service_command_dirs."
        ))
    }
}

/// A regular file (after following symlinks) with at least one execute bit.
fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A TCP port that was free on 127.0.0.1 a moment ago (bound to port 0 and released). Another
/// process may take it before the service binds it; the service then fails to start and the
/// supervisor's restart picks a new port.
pub fn free_loopback_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// True when the server runs as root: service processes must then run as another user.
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The `(uid, gid)` of an OS user, from `/etc/passwd` (no NSS lookups: the services' user is a
/// local account), or from a numeric `uid:gid`.
pub fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    if let Some((u, g)) = name.split_once(':')
        && let (Ok(u), Ok(g)) = (u.parse(), g.parse())
    {
        return Ok((u, g));
    }
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let user = f.next()?;
            let _pw = f.next()?;
            let uid = f.next()?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            (user == name).then_some((uid, gid))
        })
        .next()
        .ok_or_else(|| format!("no user '{name}' in /etc/passwd"))
}

/// Creates `dir` fresh and empty (removing what a previous process left), mode 0700, owned by
/// `owner` when given, so the service can write there and nobody else can.
pub fn fresh_work_dir(dir: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Kills (`SIGKILL`) every process whose initial environment holds `name=value`, and answers
/// how many were signalled. A server that was killed leaves its services' processes behind;
/// at its next start it finds them by the run id each one carries in `CORRAL_RUN_ID`, which
/// no unrelated process has (unlike a recorded pid, which the kernel may have reused).
pub fn kill_processes_with_env(name: &str, value: &str) -> usize {
    let needle = format!("{name}={value}").into_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .filter(|p| *p > 1)
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|var| var == needle.as_slice())
            && let Some(pid) = Pid::from_raw(pid)
            && rustix::process::kill_process(pid, Signal::KILL).is_ok()
        {
            killed += 1;
        }
    }
    killed
}

/// One health check of a service instance (spec cdap-v3 1.5): with `path`, an HTTP/1.1
/// `GET http://127.0.0.1:<port><path>` that must answer 2xx; without, a TCP connect. Either
/// within `timeout`.
pub async fn health_probe(port: u16, path: Option<&str>, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, probe(port, path))
        .await
        .unwrap_or(false)
}

async fn probe(port: u16, path: Option<&str>) -> bool {
    let Ok(stream) = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await else {
        return false;
    };
    let Some(path) = path else {
        return true;
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(io).await else {
        return false;
    };
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
        .header(hyper::header::USER_AGENT, "corral-health")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new());
    let ok = match req {
        Ok(req) => sender
            .send_request(req)
            .await
            .is_ok_and(|r| r.status().is_success()),
        Err(_) => false,
    };
    conn.abort();
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(cap: usize) -> OutputTail {
        OutputTail {
            buf: VecDeque::new(),
            cap,
        }
    }

    fn contents(t: &OutputTail) -> Vec<u8> {
        t.buf.iter().copied().collect()
    }

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut t = tail(5);
        t.push(b"abc");
        assert_eq!(contents(&t), b"abc");
        t.push(b"def");
        assert_eq!(contents(&t), b"bcdef");
        t.push(b"0123456789");
        assert_eq!(contents(&t), b"56789");
        let mut none = tail(0);
        none.push(b"abc");
        assert!(contents(&none).is_empty());
    }

    #[test]
    fn exit_info_reads_as_a_phrase() {
        assert_eq!(ExitInfo::Code(3).to_string(), "exited with status 3");
        assert_eq!(ExitInfo::Signal(9).to_string(), "killed by signal 9");
        assert!(ExitInfo::Code(0).success());
        assert!(!ExitInfo::Signal(15).success());
    }
}
