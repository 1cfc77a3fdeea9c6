//! The SSH transport against real OpenSSH servers (design §6): each test starts its own `sshd`
//! on its own `127.0.0.N`. Needs root and Debian's `openssh-server` (see `corral_drivers::testing`).
//! Nothing here contacts an address outside 127.0.0.0/8.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use corral_drivers::testing::{ClientKey, KeyFormat, KeyType, TestSshd, free_port, next_loopback};
use corral_drivers::{
    FACTS_SCRIPT, HostKeyPolicy, HostTransport, RusshTransport, SshError, SshTarget, facts_command,
    parse_facts, parse_private_key, shell_quote, with_remote_timeout,
};

const LIMIT: Duration = Duration::from_secs(20);

fn ed25519() -> ClientKey {
    ClientKey::generate(KeyType::Ed25519, KeyFormat::OpenSsh).unwrap()
}

/// A server with one authorized ed25519 key, and a TOFU target for it.
fn server() -> (TestSshd, SshTarget) {
    let key = ed25519();
    let sshd = TestSshd::start(&[&key]).unwrap();
    let target = sshd.target(&key);
    (sshd, target)
}

fn local(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A process exists and is not a zombie (whoever reaps it is not our concern).
fn pid_alive(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| !s.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
        .unwrap_or(false)
}

#[tokio::test]
async fn exec_returns_exit_status_stdout_and_stderr() {
    let (sshd, target) = server();
    let t = RusshTransport::new();

    let out = t
        .exec(&target, "echo out; echo err >&2; exit 3", LIMIT)
        .await
        .unwrap();
    assert_eq!(out.exit_status, 3);
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.host_key_fingerprint, sshd.host_key_fingerprint().unwrap());

    let out = t.exec(&target, "true", LIMIT).await.unwrap();
    assert_eq!((out.exit_status, out.stdout.len(), out.stderr.len()), (0, 0, 0));

    // The command goes through the user's shell: quoting, pipes and variables work.
    let out = t
        .exec(&target, "printf '%s|' \"$USER\" a'b c' | tr a-z A-Z", LIMIT)
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "ROOT|AB C|");

    // A command killed by a signal reports 128 + signal, like a shell.
    let out = t.exec(&target, "kill -TERM $$", LIMIT).await.unwrap();
    assert_eq!(out.exit_status, 143);

    // stdin is closed: a command that reads it sees end-of-file at once.
    let start = Instant::now();
    let out = t.exec(&target, "cat; echo after", LIMIT).await.unwrap();
    assert_eq!(out.stdout_text(), "after\n");
    assert!(start.elapsed() < Duration::from_secs(5));

    // Large output crosses many windows intact.
    let out = t
        .exec(
            &target,
            "head -c 3000000 /dev/zero; head -c 1000 /dev/zero >&2",
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!((out.stdout.len(), out.stderr.len()), (3_000_000, 1000));
}

#[tokio::test]
async fn a_background_process_holding_stdout_does_not_hold_the_call() {
    let (_sshd, target) = server();
    let start = Instant::now();
    let out = RusshTransport::new()
        .exec(&target, "(sleep 8 &); echo done", LIMIT)
        .await
        .unwrap();
    assert_eq!(out.exit_status, 0);
    assert_eq!(out.stdout_text(), "done\n");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn facts_of_the_test_machine_match_what_it_has() {
    let (_sshd, target) = server();
    let out = RusshTransport::new()
        .exec(&target, &facts_command(), LIMIT)
        .await
        .unwrap();
    assert_eq!(out.exit_status, 0, "{}", out.stderr_text());
    let facts = parse_facts(&out.stdout_text()).unwrap();

    let os_id = local(". /etc/os-release; echo \"$ID\"");
    assert_eq!(facts.os_id, os_id);
    assert_eq!(facts.ostree, Path::new("/run/ostree-booted").exists());
    assert_eq!(facts.cpus.to_string(), local("nproc"));
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap();
    let mem_total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap();
    assert_eq!(facts.memory_kb.to_string(), mem_total);
    assert_eq!(facts.hostname, local("hostname -f 2>/dev/null || hostname"));

    // Space, computed another way: GNU df reports the filesystem type itself.
    let df = local("df -k -l --output=source,fstype,size");
    let mut seen = HashSet::new();
    let mut expected_space = 0i64;
    for line in df.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (source, fstype, size) = (cols[0], cols[1], cols[2]);
        if source.starts_with("/dev/")
            && !["tmpfs", "devtmpfs", "overlay", "squashfs"].contains(&fstype)
            && seen.insert(source.to_owned())
        {
            expected_space += size.parse::<i64>().unwrap();
        }
    }
    assert_eq!(facts.space_kb, expected_space, "df said:\n{df}");
    assert!(facts.space_kb > 0, "the test machine has a disk");
}

#[tokio::test]
async fn the_raw_facts_script_also_runs_in_the_login_shell_and_as_sudo_would_wrap_it() {
    // `FACTS_SCRIPT` as it is, through root's login shell (bash here), and wrapped the way a
    // non-root remote user's step would be (`sudo -n sh -c '...'` minus the sudo).
    let (_sshd, target) = server();
    let t = RusshTransport::new();
    let raw = t.exec(&target, FACTS_SCRIPT, LIMIT).await.unwrap();
    let wrapped = t
        .exec(&target, &format!("sh -c {}", shell_quote(FACTS_SCRIPT)), LIMIT)
        .await
        .unwrap();
    assert_eq!(raw.stderr_text(), "");
    assert_eq!(
        parse_facts(&raw.stdout_text()).unwrap(),
        parse_facts(&wrapped.stdout_text()).unwrap()
    );
}

#[tokio::test]
async fn trust_on_first_use_reports_the_ssh_keygen_fingerprint() {
    let (sshd, target) = server();
    let fingerprint = RusshTransport::new().probe(&target).await.unwrap();
    let keygen = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(sshd.host_key_pub_path())
        .output()
        .unwrap();
    let keygen = String::from_utf8(keygen.stdout).unwrap();
    assert_eq!(
        Some(fingerprint.as_str()),
        keygen.split_whitespace().nth(1),
        "{keygen}"
    );
    assert!(fingerprint.starts_with("SHA256:") && !fingerprint.ends_with('='));
}

#[tokio::test]
async fn a_pinned_host_key_is_accepted_and_another_is_refused_before_anything_runs() {
    let (sshd, mut target) = server();
    let t = RusshTransport::new();
    let right = sshd.host_key_fingerprint().unwrap();
    target.host_key = HostKeyPolicy::Expect(right.clone());
    assert_eq!(t.probe(&target).await.unwrap(), right);
    let out = t.exec(&target, "echo pinned", LIMIT).await.unwrap();
    assert_eq!(out.stdout_text(), "pinned\n");

    let other = ed25519().fingerprint;
    target.host_key = HostKeyPolicy::Expect(other.clone());
    let marker = sshd.dir().join("ran");
    let err = t
        .exec(&target, &format!("touch {}", marker.display()), LIMIT)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SshError::HostKeyMismatch {
            expected: other.clone(),
            actual: right.clone()
        }
    );
    assert_eq!(err.to_string(), "Host key changed.");
    assert!(!marker.exists(), "the command ran despite the wrong host key");
    assert!(matches!(
        t.probe(&target).await,
        Err(SshError::HostKeyMismatch { .. })
    ));

    // Refused before authentication: even a key the server does not know gets the
    // host-key answer, not an authentication failure.
    let mut stranger = sshd.target(&ed25519());
    stranger.host_key = HostKeyPolicy::Expect(other);
    assert!(matches!(
        t.probe(&stranger).await,
        Err(SshError::HostKeyMismatch { .. })
    ));
}

#[tokio::test]
async fn a_host_that_comes_back_with_a_new_host_key_is_refused() {
    let (mut sshd, mut target) = server();
    let t = RusshTransport::new();
    let old = t.probe(&target).await.unwrap();
    target.host_key = HostKeyPolicy::Expect(old.clone());
    t.exec(&target, "true", LIMIT).await.unwrap();

    sshd.restart_with_new_host_key().unwrap();
    let new = sshd.host_key_fingerprint().unwrap();
    assert_ne!(old, new);
    let err = t.exec(&target, "true", LIMIT).await.unwrap_err();
    assert_eq!(
        err,
        SshError::HostKeyMismatch {
            expected: old,
            actual: new.clone()
        }
    );

    // A plain restart keeps the key and the pin holds again.
    target.host_key = HostKeyPolicy::Expect(new);
    sshd.restart().unwrap();
    t.exec(&target, "true", LIMIT).await.unwrap();
}

#[tokio::test]
async fn a_key_the_server_does_not_know_is_rejected() {
    let (sshd, _target) = server();
    let stranger = sshd.target(&ed25519());
    let err = RusshTransport::new()
        .exec(&stranger, "true", LIMIT)
        .await
        .unwrap_err();
    assert_eq!(err, SshError::AuthRejected { user: "root".into() });
    assert_eq!(err.to_string(), "Authentication rejected for user 'root'.");
    assert!(!err.is_unreachable());
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let ip = next_loopback();
    let port = free_port(ip).unwrap();
    let target = SshTarget {
        host: ip.to_string(),
        port,
        user: "root".into(),
        private_key: ed25519().private_key,
        host_key: HostKeyPolicy::TrustOnFirstUse,
        connect_timeout: Duration::from_secs(5),
    };
    let start = Instant::now();
    let err = RusshTransport::new().probe(&target).await.unwrap_err();
    assert_eq!(err, SshError::Connect(format!("Connection refused: {ip}:{port}")));
    assert!(err.is_unreachable());
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_connect_timeout() {
    let ip = next_loopback();
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts connections and says nothing; a second variant sends the SSH greeting and stalls.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            if held.len() == 1 {
                use tokio::io::AsyncWriteExt;
                let _ = sock.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
            }
            held.push(sock);
        }
    });
    let target = SshTarget {
        host: ip.to_string(),
        port,
        user: "root".into(),
        private_key: ed25519().private_key,
        host_key: HostKeyPolicy::TrustOnFirstUse,
        connect_timeout: Duration::from_millis(1500),
    };
    for _ in 0..2 {
        let start = Instant::now();
        let err = RusshTransport::new()
            .exec(&target, "true", LIMIT)
            .await
            .unwrap_err();
        let took = start.elapsed();
        assert_eq!(
            err,
            SshError::Timeout(format!("Connection to {ip}:{port} timed out after 1.5 s."))
        );
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
    silent.abort();
}

/// Processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
            out.push(entry.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    out
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_command_running_past_its_limit_times_out_and_the_connection_closes() {
    let (sshd, target) = server();
    let pid_file = sshd.dir().join("pid");
    let cmd = format!("echo $$ > {}; exec sleep 60", pid_file.display());
    let start = Instant::now();
    let err = RusshTransport::new()
        .exec(&target, &cmd, Duration::from_secs(1))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(&err, SshError::Timeout(m) if m.starts_with("Command timed out after 1 s on ")),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // The connection is gone: the per-connection sshd process has exited.
    let master = sshd.pid().unwrap();
    wait_until("the session's sshd exits", Duration::from_secs(5), || {
        children_of(master).is_empty()
    })
    .await;
    RusshTransport::new().exec(&target, "true", LIMIT).await.unwrap();

    // OpenSSH refuses the KILL signal in root sessions, so the plain command is orphaned; this
    // test ends it itself.
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    if pid_alive(&pid) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -KILL {pid}"))
            .status();
    }
}

#[tokio::test]
async fn a_command_wrapped_with_a_remote_timeout_is_ended_on_the_host() {
    let (sshd, target) = server();
    let pid_file = sshd.dir().join("pid");
    let limit = Duration::from_secs(1);
    let cmd = with_remote_timeout(&format!("echo $$ > {}; exec sleep 60", pid_file.display()), limit);
    let err = RusshTransport::new()
        .exec(&target, &cmd, limit)
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Timeout(_)), "{err:?}");
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    // TERM at limit + 1 s on the host.
    wait_until("the remote command ends", Duration::from_secs(5), || {
        !pid_alive(&pid)
    })
    .await;

    // A command that finishes in time is unaffected, exit status included.
    let out = RusshTransport::new()
        .exec(
            &target,
            &with_remote_timeout("echo 'it''s'; exit 4", limit),
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!((out.exit_status, out.stdout_text().as_str()), (4, "its\n"));
}

#[tokio::test]
async fn every_accepted_key_format_authenticates() {
    let keys = [
        (
            KeyType::Ed25519,
            KeyFormat::OpenSsh,
            "ssh-ed25519",
            "OPENSSH PRIVATE KEY",
        ),
        (
            KeyType::Rsa2048,
            KeyFormat::OpenSsh,
            "ssh-rsa",
            "OPENSSH PRIVATE KEY",
        ),
        (KeyType::Rsa2048, KeyFormat::Pem, "ssh-rsa", "RSA PRIVATE KEY"),
        (KeyType::Rsa2048, KeyFormat::Pkcs8, "ssh-rsa", "BEGIN PRIVATE KEY"),
        (
            KeyType::EcdsaP256,
            KeyFormat::OpenSsh,
            "ecdsa-sha2-nistp256",
            "OPENSSH PRIVATE KEY",
        ),
        (
            KeyType::EcdsaP256,
            KeyFormat::Pem,
            "ecdsa-sha2-nistp256",
            "EC PRIVATE KEY",
        ),
        (
            KeyType::EcdsaP256,
            KeyFormat::Pkcs8,
            "ecdsa-sha2-nistp256",
            "BEGIN PRIVATE KEY",
        ),
        (
            KeyType::EcdsaP384,
            KeyFormat::Pem,
            "ecdsa-sha2-nistp384",
            "EC PRIVATE KEY",
        ),
        (
            KeyType::EcdsaP521,
            KeyFormat::OpenSsh,
            "ecdsa-sha2-nistp521",
            "OPENSSH PRIVATE KEY",
        ),
        (
            KeyType::EcdsaP521,
            KeyFormat::Pem,
            "ecdsa-sha2-nistp521",
            "EC PRIVATE KEY",
        ),
    ];
    let generated: Vec<_> = keys
        .iter()
        .map(|(kind, format, _, _)| ClientKey::generate(*kind, *format).unwrap())
        .collect();
    let sshd = TestSshd::start(&generated.iter().collect::<Vec<_>>()).unwrap();
    let t = RusshTransport::new();
    for ((kind, format, algorithm, header), key) in keys.iter().zip(&generated) {
        let what = format!("{kind:?} {format:?}");
        assert!(
            key.private_key.contains(header),
            "{what}: {}",
            key.private_key.lines().next().unwrap_or("")
        );
        let info = parse_private_key(&key.private_key).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(info.algorithm, *algorithm, "{what}");
        assert_eq!(info.public_fingerprint, key.fingerprint, "{what}");
        let out = t
            .exec(&sshd.target(key), "echo ok", LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}; sshd log: {}", sshd.log()));
        assert_eq!(out.stdout_text(), "ok\n", "{what}");
    }
}

const DSA_OPENSSH: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAABsgAAAAdzc2gtZH
NzAAAAgQDpGf728Or0DiiZ20CHNZ4gTrjsuir7BIoE33/VDaXNarDcTgAMc9Ss2P6HGTGS
hx6tuw/1b4f6DIcO59rh3bZeCiEKhMEaVhEbylRAZd3MTJD+DmkX4sF61j/xVoVG+jo4ZT
ZaIuXOrg8FB2bFxY9U8uncxfSSm6U0uVPnV8iV4QAAABUAk1mh2H72xSgCc3z4TF5ZBh2T
7IUAAACBANMAfgxr+eJYuSbEEvrgTDqfdJ6JFqluUAluafKg1xG4Xj7uvUfK0A/xdzE49N
+7z+vRDFgkOgughVtkGRicEzCiO9omY15ruSqd0c2lzBH9MuiEOrCPC1AlhBWrbyu2uZPv
S44i1L1tcYBMw8ic6QJu6oWfSDL4g72O3iE1koM+AAAAgCo5qZti6quwXs7m2W6kNivAEm
dO418zjNmmN9kTWLbsh+klm+1ZOnvMnAixOl0Z7EPLTM8XFqFsKj4fQXu48d9z8T5jHQEo
Ff6/w1nuWC6yOnkbvUhOkKQaVzvgWN2w+KbihBJ5p2GsHACzODk4TKfnaBA0I2d1wDxyYs
/9JKeEAAAB4Dw86Og8POjoAAAAB3NzaC1kc3MAAACBAOkZ/vbw6vQOKJnbQIc1niBOuOy6
KvsEigTff9UNpc1qsNxOAAxz1KzY/ocZMZKHHq27D/Vvh/oMhw7n2uHdtl4KIQqEwRpWER
vKVEBl3cxMkP4OaRfiwXrWP/FWhUb6OjhlNloi5c6uDwUHZsXFj1Ty6dzF9JKbpTS5U+dX
yJXhAAAAFQCTWaHYfvbFKAJzfPhMXlkGHZPshQAAAIEA0wB+DGv54li5JsQS+uBMOp90no
kWqW5QCW5p8qDXEbhePu69R8rQD/F3MTj037vP69EMWCQ6C6CFW2QZGJwTMKI72iZjXmu5
Kp3RzaXMEf0y6IQ6sI8LUCWEFatvK7a5k+9LjiLUvW1xgEzDyJzpAm7qhZ9IMviDvY7eIT
WSgz4AAACAKjmpm2Lqq7BezubZbqQ2K8ASZ07jXzOM2aY32RNYtuyH6SWb7Vk6e8ycCLE6
XRnsQ8tMzxcWoWwqPh9Be7jx33PxPmMdASgV/r/DWe5YLrI6eRu9SE6QpBpXO+BY3bD4pu
KEEnmnYawcALM4OThMp+doEDQjZ3XAPHJiz/0kp4QAAAAUYHS6GiY0no9pYIcj0NwuavZR
2N4AAAAHZml4dHVyZQECAw==
-----END OPENSSH PRIVATE KEY-----
";

const DSA_PEM: &str = "-----BEGIN DSA PRIVATE KEY-----
MIIBvAIBAAKBgQDhUSrvVNHzYq+X1zEwim8DXOVH8/g3qe7WWh7VR8hEH7Wky9hL
Ut1Zs4OYksmmgKNasozaa/iWvdXdSBsobzgNO3Asr7RAj7Hk3O3wtrbpuQDxSGRz
xzWmyFhzNsJBmS4MXS+NT7JOzR5e2GMy1gFVbuABkQkXkRCIUyCtCK8wnwIVAOye
cPqNGFPTwjwXovUD4660vWatAoGAdx4YmL66rNK998YVqE8k1d5IkWnUKCuGnWpR
hOyNUSGWZ2BDHy4Qq+8qCAuo8Du3E3a/7IO7gZaDPB3mY++twqF4J1w3Y1/sFC7J
LdsKq77tJ1Kb2AKEypwNnqZQOaNzC6zZ/ZGq5C91cV6HJgAIAsWvu5eXzh3hP5KS
fjc0zDYCgYEA3y5K1nnecCDCTyMjM439YM7sFtQ8RNv2z0MbVfi6tyt1p2cRz1Ha
xenp/WD2XR2FS/a5P1cjtUPVCv7JnoJmn6BGCI8+c5NRHRY1aWrPFRnDbkISnrfY
BLA5cezQuK1oyPlPcWT9GX2LzfyYyXWVeXvRUumn6fVzNHMmhfWy6CkCFQDk1a+2
HgjwzFngKYL4uGQEzK03ZQ==
-----END DSA PRIVATE KEY-----
";

#[tokio::test]
async fn unusable_keys_are_refused_with_clear_messages_and_no_connection() {
    let encrypted = |kind, format| {
        ClientKey::generate_with_passphrase(kind, format, "correct horse")
            .unwrap()
            .private_key
    };
    let cases = [
        (
            "DSA OpenSSH",
            DSA_OPENSSH.to_owned(),
            "DSA keys are not supported",
        ),
        ("DSA PEM", DSA_PEM.to_owned(), "DSA keys are not supported"),
        (
            "encrypted OpenSSH",
            encrypted(KeyType::Ed25519, KeyFormat::OpenSsh),
            "passphrase",
        ),
        (
            "encrypted RSA PEM",
            encrypted(KeyType::Rsa2048, KeyFormat::Pem),
            "passphrase",
        ),
        (
            "encrypted EC PEM",
            encrypted(KeyType::EcdsaP256, KeyFormat::Pem),
            "passphrase",
        ),
        (
            "encrypted PKCS#8",
            encrypted(KeyType::EcdsaP256, KeyFormat::Pkcs8),
            "passphrase",
        ),
        ("public key", ed25519().public_key, "public key"),
        ("garbage", "hello, I am not a key".to_owned(), "Not a private key"),
        ("empty", String::new(), "empty"),
    ];
    // Nothing listens here: had the transport tried to connect, the error would be `Connect`.
    let ip = next_loopback();
    let port = free_port(ip).unwrap();
    for (what, text, needle) in cases {
        let err = parse_private_key(&text).unwrap_err();
        assert!(err.contains(needle), "{what}: {err}");
        let target = SshTarget {
            host: ip.to_string(),
            port,
            user: "root".into(),
            private_key: text.clone(),
            host_key: HostKeyPolicy::TrustOnFirstUse,
            connect_timeout: Duration::from_secs(5),
        };
        let err = RusshTransport::new()
            .exec(&target, "true", LIMIT)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SshError::InvalidKey(m) if m.contains(needle)),
            "{what}: {err:?}"
        );
        for line in text.lines().filter(|l| l.len() > 20 && !l.starts_with("-----")) {
            assert!(
                !err.to_string().contains(line),
                "{what}: the message quotes the key"
            );
        }
    }
}

#[tokio::test]
async fn concurrent_calls_to_one_host_all_succeed() {
    let (_sshd, target) = server();
    let t = std::sync::Arc::new(RusshTransport::new());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (t, target) = (t.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            t.exec(&target, &format!("echo {i}"), LIMIT).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap().stdout_text(), format!("{i}\n"));
    }
}

#[tokio::test]
async fn a_restarting_host_goes_away_and_comes_back() {
    let (sshd, target) = server();
    let t = RusshTransport::new();
    let fingerprint = t.probe(&target).await.unwrap();
    let start = Instant::now();
    let out = t
        .exec(&target, &sshd.restart_command(Duration::from_secs(2)), LIMIT)
        .await
        .unwrap();
    assert_eq!(out.exit_status, 0, "{}", out.stderr_text());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the restart command held the call"
    );

    // Down for about two seconds: refused (or cut during the handshake).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = t.probe(&target).await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");

    // Back with the same host key.
    let deadline = Instant::now() + Duration::from_secs(15);
    let back = loop {
        match t.probe(&target).await {
            Ok(fp) => break fp,
            Err(e) if e.is_unreachable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("host did not come back: {e}; log: {}", sshd.log()),
        }
    };
    assert_eq!(back, fingerprint);
    assert!(start.elapsed() >= Duration::from_secs(2));

    // Dropping the fixture also stops the server the restart command started.
    let pid = fs::read_to_string(sshd.dir().join("sshd.pid"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(pid_alive(&pid));
    drop(sshd);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_alive(&pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!pid_alive(&pid), "the restarted sshd {pid} survived the fixture");
}
