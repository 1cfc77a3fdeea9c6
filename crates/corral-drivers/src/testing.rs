//! Real `sshd` servers for tests (feature `testing`; design §6).
//!
//! Each [`TestSshd`] is one OpenSSH server with its own temporary directory (config, host key,
//! `authorized_keys`, pid file, log), listening on its own loopback address `127.0.0.N` and a
//! free port, so tests can run in parallel and a test can stop, restart or re-key "its host"
//! without touching the others. The server is killed when the value is dropped.
//!
//! Requirements: Debian's `openssh-server` (for `/usr/sbin/sshd`) and `openssh-client` (for
//! `ssh-keygen`), and running as root: sshd needs root for privilege separation, and the test
//! hosts are reached as `root`.

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{HostKeyPolicy, SshTarget};

/// The OpenSSH server binary (an absolute path: sshd re-executes itself).
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long a started sshd gets to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Next `127.0.0.N` to hand out: distinct per server of this process.
static NEXT_HOST: AtomicU32 = AtomicU32::new(0);

/// Client key types for [`ClientKey::generate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    Rsa2048,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
}

impl KeyType {
    fn args(self) -> &'static [&'static str] {
        match self {
            KeyType::Ed25519 => &["-t", "ed25519"],
            KeyType::Rsa2048 => &["-t", "rsa", "-b", "2048"],
            KeyType::EcdsaP256 => &["-t", "ecdsa", "-b", "256"],
            KeyType::EcdsaP384 => &["-t", "ecdsa", "-b", "384"],
            KeyType::EcdsaP521 => &["-t", "ecdsa", "-b", "521"],
        }
    }
}

/// Private key encodings `ssh-keygen` writes (its `-m` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `BEGIN OPENSSH PRIVATE KEY` (the default).
    OpenSsh,
    /// `ssh-keygen -m PEM`: PKCS#1 `BEGIN RSA PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`
    /// (Ed25519 keys stay in OpenSSH format).
    Pem,
    /// `ssh-keygen -m PKCS8`: `BEGIN PRIVATE KEY`.
    Pkcs8,
}

/// A client key pair made by `ssh-keygen`.
#[derive(Clone)]
pub struct ClientKey {
    /// The private key file's text.
    pub private_key: String,
    /// The public key line (`ssh-ed25519 AAAA... comment`), as `authorized_keys` wants it.
    pub public_key: String,
    /// `ssh-keygen -lf` of the public key (`SHA256:...`).
    pub fingerprint: String,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// A fresh unencrypted key pair.
    pub fn generate(kind: KeyType, format: KeyFormat) -> io::Result<ClientKey> {
        Self::generate_with_passphrase(kind, format, "")
    }

    /// A fresh key pair protected by `passphrase` (empty: unencrypted).
    pub fn generate_with_passphrase(
        kind: KeyType,
        format: KeyFormat,
        passphrase: &str,
    ) -> io::Result<ClientKey> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("id");
        let mut cmd = Command::new("ssh-keygen");
        cmd.arg("-q")
            .args(kind.args())
            .args(["-N", passphrase, "-C", "corral-test-client"]);
        match format {
            KeyFormat::OpenSsh => {}
            KeyFormat::Pem => {
                cmd.args(["-m", "PEM"]);
            }
            KeyFormat::Pkcs8 => {
                cmd.args(["-m", "PKCS8"]);
            }
        }
        run(cmd.arg("-f").arg(&path))?;
        let pub_path = path.with_extension("pub");
        Ok(ClientKey {
            private_key: fs::read_to_string(&path)?,
            public_key: fs::read_to_string(&pub_path)?.trim().to_owned(),
            fingerprint: fingerprint_of(&pub_path)?,
        })
    }
}

/// `ssh-keygen -lf <file>`'s SHA-256 fingerprint (second field of its output).
pub fn fingerprint_of(public_key_file: &Path) -> io::Result<String> {
    let out = run(Command::new("ssh-keygen")
        .arg("-l")
        .arg("-E")
        .arg("sha256")
        .arg("-f")
        .arg(public_key_file))?;
    out.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| io::Error::other(format!("unexpected ssh-keygen -l output: {out}")))
}

/// One OpenSSH server for a test.
pub struct TestSshd {
    dir: TempDir,
    addr: Ipv4Addr,
    port: u16,
    child: Option<Child>,
}

impl TestSshd {
    /// Starts a server on a fresh `127.0.0.N` and a free port, authorizing `authorized` for
    /// root. Retries on another port if the chosen one was taken in the meantime.
    pub fn start(authorized: &[&ClientKey]) -> io::Result<TestSshd> {
        Self::start_on(next_loopback(), None, authorized)
    }

    /// Starts a server on `addr:port`: several test hosts of one Corral share the port the
    /// server setting `ssh_port` names, each on its own loopback address.
    pub fn start_at(addr: Ipv4Addr, port: u16, authorized: &[&ClientKey]) -> io::Result<TestSshd> {
        Self::start_on(addr, Some(port), authorized)
    }

    fn start_on(addr: Ipv4Addr, port: Option<u16>, authorized: &[&ClientKey]) -> io::Result<TestSshd> {
        ensure_privsep_dir()?;
        let dir = tempfile::Builder::new().prefix("corral-sshd-").tempdir()?;
        let mut server = TestSshd {
            dir,
            addr,
            port: 0,
            child: None,
        };
        server.generate_host_key()?;
        fs::write(server.path("authorized_keys"), "")?;
        for key in authorized {
            server.authorize(key)?;
        }
        let mut last_error = None;
        for _ in 0..5 {
            server.port = match port {
                Some(p) => p,
                None => free_port(server.addr)?,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("sshd did not start")))
    }

    /// The loopback address the server listens on.
    pub fn ip(&self) -> Ipv4Addr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ip:port`.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((self.addr, self.port))
    }

    /// The pid of the listening sshd started by this fixture (`None` while stopped). Each
    /// connection is served by a child process of it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's directory (config, keys, pid file, `sshd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The sshd configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.path("sshd_config")
    }

    /// The public half of the server's host key.
    pub fn host_key_pub_path(&self) -> PathBuf {
        self.path("ssh_host_ed25519_key.pub")
    }

    /// The host key fingerprint, as `ssh-keygen -lf` prints it.
    pub fn host_key_fingerprint(&self) -> io::Result<String> {
        fingerprint_of(&self.host_key_pub_path())
    }

    /// What sshd logged so far (errors only), for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    /// Adds a key to root's `authorized_keys` of this server (read at each login).
    pub fn authorize(&self, key: &ClientKey) -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.path("authorized_keys"))?;
        writeln!(f, "{}", key.public_key)
    }

    /// A target for this server as root with `key`, trusting the host key on first use.
    pub fn target(&self, key: &ClientKey) -> SshTarget {
        SshTarget {
            host: self.addr.to_string(),
            port: self.port,
            user: "root".to_owned(),
            private_key: key.private_key.clone(),
            host_key: HostKeyPolicy::TrustOnFirstUse,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// A shell command for a test OS profile's `restart`: run through any test server (it
    /// reads the `CORRAL_TEST_SSHD_DIR` every session of these servers gets), it stops that
    /// server and starts it again after `down`, detached, like [`restart_command`](Self::restart_command).
    pub fn generic_restart_command(down: Duration) -> String {
        let inner = format!(
            "kill $(cat \"$CORRAL_TEST_SSHD_DIR/sshd.pid\") 2>/dev/null; sleep {secs}; \
             {SSHD} -f \"$CORRAL_TEST_SSHD_DIR/sshd_config\" -E \"$CORRAL_TEST_SSHD_DIR/sshd.log\"",
            secs = down.as_secs_f64(),
        );
        format!(
            "nohup sh -c {} >/dev/null 2>&1 </dev/null &",
            crate::shell_quote(&inner)
        )
    }

    /// Stops the server (also one started by [`restart_command`](Self::restart_command)).
    /// Sessions already open keep running, as with a real sshd.
    pub fn stop(&mut self) {
        let mut child_pid = None;
        if let Some(mut child) = self.child.take() {
            child_pid = Some(child.id().to_string());
            let _ = child.kill();
            let _ = child.wait();
        }
        // A server started by `restart_command` daemonized and wrote its pid here. Only a
        // process whose command line names this server's config is signalled, so a stale
        // file can never hit an unrelated process.
        if let Ok(pid) = fs::read_to_string(self.path("sshd.pid")) {
            let pid = pid.trim().to_owned();
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains(&*self.config_path().to_string_lossy());
            if Some(&pid) != child_pid.as_ref() && ours && pid.chars().all(|c| c.is_ascii_digit()) {
                // Through sh's builtin: procps' kill(1) is not on minimal Debian.
                let _ = Command::new("sh")
                    .arg("-c")
                    .arg(format!("kill {pid}"))
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = fs::remove_file(self.path("sshd.pid"));
        }
        // Wait until the port is free again so that a restart can bind it.
        let deadline = Instant::now() + START_DEADLINE;
        while TcpStream::connect(self.socket_addr()).is_ok() && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same address, port and keys.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Restarts the server with a newly generated host key: to the client, the host was
    /// reinstalled or replaced by an impostor.
    pub fn restart_with_new_host_key(&mut self) -> io::Result<()> {
        self.stop();
        self.generate_host_key()?;
        self.spawn()
    }

    /// A shell command that, run on this machine (for example through the server itself as a
    /// "restart" step), stops this sshd at once and starts it again after `down`, detached,
    /// so that the caller sees the host go away and come back. The server restarted this way
    /// is still stopped by [`stop`](Self::stop) and on drop.
    pub fn restart_command(&self, down: Duration) -> String {
        let pid = self.path("sshd.pid");
        let inner = format!(
            "kill $(cat {pid}) 2>/dev/null; sleep {secs}; {SSHD} -f {cfg} -E {log}",
            pid = pid.display(),
            secs = down.as_secs_f64(),
            cfg = self.config_path().display(),
            log = self.path("sshd.log").display(),
        );
        format!(
            "nohup sh -c {} >/dev/null 2>&1 </dev/null &",
            crate::shell_quote(&inner)
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn generate_host_key(&self) -> io::Result<()> {
        let key = self.path("ssh_host_ed25519_key");
        let _ = fs::remove_file(&key);
        let _ = fs::remove_file(key.with_extension("pub"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "corral-test-host", "-f"])
            .arg(&key))?;
        Ok(())
    }

    fn write_config(&self) -> io::Result<()> {
        let mut config = format!(
            "Port {port}\n\
             ListenAddress {addr}\n\
             HostKey {dir}/ssh_host_ed25519_key\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PidFile {dir}/sshd.pid\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n\
             StrictModes no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             UseDNS no\n\
             MaxStartups 100:30:200\n\
             SetEnv CORRAL_TEST_HOST={addr} CORRAL_TEST_SSHD_DIR={dir}\n\
             LogLevel {log_level}\n",
            log_level = std::env::var("CORRAL_TEST_SSHD_LOG_LEVEL").unwrap_or_else(|_| "ERROR".to_owned()),
            port = self.port,
            addr = self.addr,
            dir = self.dir.path().display(),
        );
        if supports_per_source_penalties() {
            // OpenSSH >= 9.8 would otherwise refuse 127.0.0.1 for a while after the tests'
            // deliberate authentication failures.
            config.push_str("PerSourcePenalties no\n");
        }
        fs::write(self.config_path(), config)
    }

    /// Writes the config and starts `sshd -D -e`, then waits until it accepts connections.
    fn spawn(&mut self) -> io::Result<()> {
        self.write_config()?;
        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.path("sshd.log"))?;
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::other(format!("cannot run {SSHD} (is openssh-server installed?): {e}"))
            })?;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "sshd on {} exited with {status}: {}",
                    self.socket_addr(),
                    self.log()
                )));
            }
            if TcpStream::connect_timeout(&self.socket_addr(), Duration::from_millis(200)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "sshd on {} did not accept connections within {START_DEADLINE:?}: {}",
                    self.socket_addr(),
                    self.log()
                )));
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback address no other server of this process uses: 127.0.0.2 ... 127.0.0.254, then
/// 127.0.1.x and so on (the whole 127.0.0.0/8 is local on Linux).
pub fn next_loopback() -> Ipv4Addr {
    let n = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
    let host = n % 253 + 2;
    let net = (n / 253) % 255;
    Ipv4Addr::new(127, 0, net as u8, host as u8)
}

/// A port free on `addr` right now (bind port 0, read it, release it).
pub fn free_port(addr: Ipv4Addr) -> io::Result<u16> {
    Ok(TcpListener::bind((addr, 0))?.local_addr()?.port())
}

/// sshd refuses to start without its privilege separation directory; outside a booted system
/// (containers, CI) nothing created it.
fn ensure_privsep_dir() -> io::Result<()> {
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Whether this sshd knows `PerSourcePenalties` (OpenSSH 9.8+), asked once with `sshd -t`.
fn supports_per_source_penalties() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        let Ok(dir) = tempfile::tempdir() else {
            return false;
        };
        let key = dir.path().join("k");
        if run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key))
        .is_err()
        {
            return false;
        }
        let cfg = dir.path().join("c");
        let text = format!("HostKey {}\nPerSourcePenalties no\n", key.display());
        if fs::write(&cfg, text).is_err() {
            return false;
        }
        Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// Runs a helper program, answering its stdout or an error with its stderr.
fn run(cmd: &mut Command) -> io::Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
