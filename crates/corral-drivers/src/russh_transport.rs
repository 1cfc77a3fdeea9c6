//! The real host transport: an SSH client (russh, ring crypto) speaking to the host's `sshd`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::ssh_key::HashAlg;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Disconnect, Sig};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::keys::decode_private_key;
use crate::{ExecOutput, HostKeyPolicy, HostTransport, SshError, SshTarget};

/// Each of stdout and stderr is kept up to this size; the rest is read and dropped. Corral's
/// commands print little (facts, package manager logs); the cap keeps a runaway command from
/// filling the control plane's memory.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// After the exit status arrives, how long to wait for the rest of the output and the channel
/// close. A command that leaves a background process holding its stdout (`daemon &`) would
/// otherwise keep the channel open until that process ends.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// After a command timed out and was sent `KILL`, how long to wait for the server to confirm
/// before dropping the connection anyway. Short: OpenSSH ignores the signal in root sessions
/// (see [`HostTransport::exec`]), and then nothing will come.
const KILL_GRACE: Duration = Duration::from_millis(500);

/// Keepalives detect a host that vanished in the middle of a long command (about a minute,
/// `KEEPALIVE_INTERVAL * (KEEPALIVE_MAX + 1)`), well before a step's own timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;

/// Bounds the life of a session task whose handshake stalled after the caller gave up: russh
/// keeps such a task alive on its own, and healthy sessions reset this timer with every packet
/// (keepalive replies included).
const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(120);

/// The real [`HostTransport`]: one SSH connection per call, public-key authentication only,
/// host key checked against the target's [`HostKeyPolicy`] during the key exchange.
pub struct RusshTransport {
    config: Arc<client::Config>,
}

impl Default for RusshTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl RusshTransport {
    /// A transport with Corral's client settings (keepalives on, Nagle off: commands are
    /// small request/response exchanges).
    pub fn new() -> Self {
        let config = client::Config {
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            keepalive_max: KEEPALIVE_MAX,
            inactivity_timeout: Some(INACTIVITY_TIMEOUT),
            nodelay: true,
            ..client::Config::default()
        };
        Self {
            config: Arc::new(config),
        }
    }

    /// TCP connect, SSH handshake with the host key check, public-key authentication; all of it
    /// within `target.connect_timeout`. The key is decoded first so a bad key costs no traffic.
    async fn connect(&self, target: &SshTarget) -> Result<Connection, SshError> {
        let key = decode_private_key(&target.private_key).map_err(SshError::InvalidKey)?;
        let endpoint = endpoint(&target.host, target.port);
        match timeout(target.connect_timeout, self.connect_inner(target, key)).await {
            Ok(result) => result,
            Err(_) => Err(SshError::Timeout(format!(
                "Connection to {endpoint} timed out after {}.",
                human(target.connect_timeout)
            ))),
        }
    }

    async fn connect_inner(&self, target: &SshTarget, key: PrivateKey) -> Result<Connection, SshError> {
        let (stream, addr) = tcp_connect(&target.host, target.port).await?;
        let seen = Arc::new(OnceLock::new());
        let checker = HostKeyChecker {
            policy: target.host_key.clone(),
            seen: Arc::clone(&seen),
        };
        let mut handle = match client::connect_stream(Arc::clone(&self.config), stream, checker).await {
            Ok(handle) => handle,
            Err(russh::Error::UnknownKey) => {
                return Err(match (&target.host_key, seen.get()) {
                    (HostKeyPolicy::Expect(expected), Some(actual)) => SshError::HostKeyMismatch {
                        expected: expected.clone(),
                        actual: actual.clone(),
                    },
                    _ => SshError::Protocol(format!("{addr} presented an unusable host key.")),
                });
            }
            Err(e) => return Err(handshake_error(e, addr)),
        };
        let fingerprint = seen.get().cloned().ok_or_else(|| {
            SshError::Protocol(format!("{addr} completed the handshake without a host key."))
        })?;

        // RSA keys sign with SHA-2 when the server says it accepts it (RFC 8332); OpenSSH
        // refuses SHA-1 `ssh-rsa` signatures since 8.8.
        let rsa_hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| session_error(e, addr, "authentication"))?
                .flatten()
        } else {
            None
        };
        let auth = handle
            .authenticate_publickey(
                target.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash),
            )
            .await
            .map_err(|e| session_error(e, addr, "authentication"))?;
        if !auth.success() {
            // russh reports a session that died during authentication as a plain failure.
            if handle.is_closed() {
                return Err(SshError::Connect(format!(
                    "Connection to {addr} was closed during authentication."
                )));
            }
            return Err(SshError::AuthRejected {
                user: target.user.clone(),
            });
        }
        Ok(Connection {
            handle,
            fingerprint,
            addr,
        })
    }
}

#[async_trait::async_trait]
impl HostTransport for RusshTransport {
    async fn exec(&self, target: &SshTarget, command: &str, limit: Duration) -> Result<ExecOutput, SshError> {
        let conn = self.connect(target).await?;
        let result = run(&conn, command, limit).await;
        conn.close().await;
        result
    }

    async fn probe(&self, target: &SshTarget) -> Result<String, SshError> {
        let conn = self.connect(target).await?;
        let fingerprint = conn.fingerprint.clone();
        conn.close().await;
        Ok(fingerprint)
    }
}

/// An authenticated session.
struct Connection {
    handle: Handle<HostKeyChecker>,
    fingerprint: String,
    addr: SocketAddr,
}

impl Connection {
    /// Polite disconnect; dropping the handle then ends russh's session task.
    async fn close(self) {
        let _ = timeout(
            Duration::from_secs(1),
            self.handle.disconnect(Disconnect::ByApplication, "", "en"),
        )
        .await;
    }
}

/// Runs one command on an authenticated connection within `limit`.
async fn run(conn: &Connection, command: &str, limit: Duration) -> Result<ExecOutput, SshError> {
    let deadline = Instant::now() + limit;
    let timed_out = || {
        SshError::Timeout(format!(
            "Command timed out after {} on {}.",
            human(limit),
            conn.addr
        ))
    };
    let mut channel = match timeout_at(deadline, conn.handle.channel_open_session()).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) => return Err(session_error(e, conn.addr, "opening a session")),
        Ok(Ok(channel)) => channel,
    };
    match timeout_at(deadline, channel.exec(true, command)).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) => return Err(session_error(e, conn.addr, "starting the command")),
        Ok(Ok(())) => {}
    }
    // Commands get no input: end stdin at once so that one that reads it (`cat`, a package
    // manager's prompt) sees end-of-file instead of waiting until the timeout.
    let _ = channel.eof().await;
    let mut out = Collected::default();
    match timeout_at(deadline, out.read(&mut channel)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            // sshd answers a `signal` request with killpg() on the session's process group,
            // so the command and its children end instead of running on unwatched (not in
            // root sessions: see `HostTransport::exec`).
            kill(&mut channel).await;
            return Err(timed_out());
        }
    }
    let exit_status = match out.exit {
        Some(status) => status,
        None if conn.handle.is_closed() => {
            return Err(SshError::Connect(format!(
                "Connection to {} was lost while the command ran.",
                conn.addr
            )));
        }
        None => {
            return Err(SshError::Protocol(format!(
                "{} closed the session without an exit status.",
                conn.addr
            )));
        }
    };
    Ok(ExecOutput {
        exit_status,
        stdout: out.stdout,
        stderr: out.stderr,
        host_key_fingerprint: conn.fingerprint.clone(),
    })
}

async fn kill(channel: &mut Channel<Msg>) {
    if channel.signal(Sig::KILL).await.is_err() {
        return;
    }
    let _ = timeout(KILL_GRACE, async {
        while let Some(msg) = channel.wait().await {
            if matches!(msg, ChannelMsg::Close) {
                break;
            }
        }
    })
    .await;
}

#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: Option<u32>,
}

impl Collected {
    /// Reads the channel until it closes, or until [`EXIT_GRACE`] after the exit status.
    async fn read(&mut self, channel: &mut Channel<Msg>) -> Result<(), SshError> {
        let mut grace_deadline = None;
        loop {
            let msg = match grace_deadline {
                None => channel.wait().await,
                Some(at) => match timeout_at(at, channel.wait()).await {
                    Ok(msg) => msg,
                    Err(_) => return Ok(()),
                },
            };
            match msg {
                None | Some(ChannelMsg::Close) => return Ok(()),
                Some(ChannelMsg::Data { data }) => append(&mut self.stdout, &data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => append(&mut self.stderr, &data),
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    self.exit = Some(exit_status);
                    grace_deadline = Some(Instant::now() + EXIT_GRACE);
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    self.exit = Some(128 + signal_number(&signal_name));
                    grace_deadline = Some(Instant::now() + EXIT_GRACE);
                }
                Some(ChannelMsg::Failure) => {
                    return Err(SshError::Protocol(
                        "The server refused to run the command.".to_owned(),
                    ));
                }
                Some(_) => {}
            }
        }
    }
}

fn append(buf: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_OUTPUT_BYTES.saturating_sub(buf.len());
    buf.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
}

/// Signal numbers as on Linux, so `exit_status` reads like a shell's `$?`.
fn signal_number(sig: &Sig) -> u32 {
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(name) => match name.as_str() {
            "BUS" => 7,
            "USR2" => 12,
            "STKFLT" => 16,
            "CHLD" => 17,
            "CONT" => 18,
            "STOP" => 19,
            "TSTP" => 20,
            "TTIN" => 21,
            "TTOU" => 22,
            "URG" => 23,
            "XCPU" => 24,
            "XFSZ" => 25,
            "VTALRM" => 26,
            "PROF" => 27,
            "WINCH" => 28,
            "IO" => 29,
            "PWR" => 30,
            "SYS" => 31,
            _ => 127,
        },
    }
}

/// Checks the server's host key during the key exchange and remembers its fingerprint.
struct HostKeyChecker {
    policy: HostKeyPolicy,
    seen: Arc<OnceLock<String>>,
}

impl client::Handler for HostKeyChecker {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        // A certificate is judged by the key it certifies: Corral pins keys, not CAs.
        let fingerprint = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.fingerprint(HashAlg::Sha256),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().fingerprint(HashAlg::Sha256),
        }
        .to_string();
        // A re-key presents the key again; the first one is the one reported.
        let first = self.seen.get_or_init(|| fingerprint.clone());
        if *first != fingerprint {
            return Ok(false);
        }
        Ok(match &self.policy {
            HostKeyPolicy::TrustOnFirstUse => true,
            HostKeyPolicy::Expect(expected) => same_fingerprint(expected, &fingerprint),
        })
    }
}

/// Compares fingerprints as people paste them: surrounding blanks, base64 padding and the case
/// of the `SHA256:` prefix do not matter; the base64 itself is compared exactly.
fn same_fingerprint(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> Option<&str> {
        let s = s.trim().trim_end_matches('=');
        let (prefix, body) = s.split_once(':')?;
        prefix.eq_ignore_ascii_case("SHA256").then_some(body)
    }
    matches!((norm(a), norm(b)), (Some(x), Some(y)) if x == y)
}

/// `host:port`, with brackets around an IPv6 literal.
fn endpoint(host: &str, port: u16) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    }
}

/// Resolves `host` and connects to its addresses in turn; the error describes the last failure.
async fn tcp_connect(host: &str, port: u16) -> Result<(TcpStream, SocketAddr), SshError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| SshError::Connect(format!("Cannot resolve host name '{bare}': {e}.")))?
        .collect();
    let mut last = SshError::Connect(format!("Host name '{bare}' has no address."));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Err(e) => last = SshError::Connect(connect_message(&e, addr)),
        }
    }
    Err(last)
}

fn connect_message(e: &std::io::Error, addr: SocketAddr) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => format!("Connection refused: {addr}"),
        ErrorKind::HostUnreachable => format!("Host unreachable: {addr}"),
        ErrorKind::NetworkUnreachable => format!("Network unreachable: {addr}"),
        ErrorKind::TimedOut => format!("Connection timed out: {addr}"),
        _ => format!("Cannot connect to {addr}: {e}"),
    }
}

/// Errors before the handshake completed: the peer went away (a host rebooting, sshd
/// restarting, a firewall) or is not an SSH server.
fn handshake_error(e: russh::Error, addr: SocketAddr) -> SshError {
    match e {
        russh::Error::IO(_) | russh::Error::HUP | russh::Error::Disconnect | russh::Error::SendError => {
            SshError::Connect(format!(
                "Connection to {addr} was closed during the SSH handshake."
            ))
        }
        russh::Error::Version => SshError::Protocol(format!("{addr} did not answer as an SSH server.")),
        russh::Error::NoCommonAlgo { kind, .. } => SshError::Protocol(format!(
            "{addr} offers no {} algorithm this client supports.",
            format!("{kind:?}").to_lowercase()
        )),
        other => SshError::Protocol(format!("{other} ({addr}).")),
    }
}

/// Errors of an established session.
fn session_error(e: russh::Error, addr: SocketAddr, during: &str) -> SshError {
    match e {
        russh::Error::IO(_)
        | russh::Error::HUP
        | russh::Error::Disconnect
        | russh::Error::SendError
        | russh::Error::KeepaliveTimeout
        | russh::Error::InactivityTimeout => {
            SshError::Connect(format!("Connection to {addr} was lost during {during}."))
        }
        russh::Error::ChannelOpenFailure(reason) => {
            SshError::Protocol(format!("{addr} refused to open a session ({reason:?})."))
        }
        other => SshError::Protocol(format!("{other} during {during} ({addr}).")),
    }
}

/// `5 s`, `1.5 s`, `250 ms`: durations for messages.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_compare_as_pasted() {
        let fp = "SHA256:V1G9QZ41mnhTV1q+8f2cSSVx+F3PTWzdcS4fNQpVj9s";
        assert!(same_fingerprint(fp, fp));
        assert!(same_fingerprint(&format!(" {fp}= \n"), fp));
        assert!(same_fingerprint(&fp.replace("SHA256", "sha256"), fp));
        assert!(!same_fingerprint(&fp.to_lowercase(), fp));
        assert!(!same_fingerprint(
            "V1G9QZ41mnhTV1q+8f2cSSVx+F3PTWzdcS4fNQpVj9s",
            fp
        ));
        assert!(!same_fingerprint("MD5:aa:bb", fp));
        assert!(!same_fingerprint("", fp));
    }

    #[test]
    fn endpoints_and_durations_read_well() {
        assert_eq!(endpoint("127.0.0.2", 22), "127.0.0.2:22");
        assert_eq!(endpoint("::1", 22), "[::1]:22");
        assert_eq!(endpoint("[::1]", 22), "[::1]:22");
        assert_eq!(endpoint("node1.example.org", 2222), "node1.example.org:2222");
        assert_eq!(human(Duration::from_secs(5)), "5 s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human(Duration::from_millis(250)), "250 ms");
    }

    #[test]
    fn output_is_capped() {
        let mut buf = vec![0u8; MAX_OUTPUT_BYTES - 2];
        append(&mut buf, b"abcdef");
        assert_eq!(buf.len(), MAX_OUTPUT_BYTES);
        append(&mut buf, b"more");
        assert_eq!(buf.len(), MAX_OUTPUT_BYTES);
    }
}
