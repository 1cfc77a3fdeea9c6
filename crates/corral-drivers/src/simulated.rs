//! The `simulated` host driver (spec 6.1): for demos and scale tests, never for testing the SSH
//! driver itself. It opens no connection; everything it answers is fixed by configuration, so a
//! run is reproducible.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::facts::FACTS_MARKER;
use crate::{ExecOutput, Facts, HostKeyPolicy, HostTransport, SshError, SshTarget};

/// The host key fingerprint every simulated host presents (SHA-256 of the text
/// "corral simulated host key", in the format of `ssh-keygen -lf`).
pub const SIMULATED_FINGERPRINT: &str = "SHA256:IZ+CWOj9JH1AMIxSdSDqYKYvNtxhnVWwjSQqoMpn1gg";

/// How many executed commands [`SimulatedTransport::executed`] remembers: enough for any test,
/// bounded for a demo that runs for days.
const HISTORY_LIMIT: usize = 10_000;

/// A [`HostTransport`] that pretends.
///
/// * Every call waits the configured delay, then succeeds: the facts command (recognised by
///   [`FACTS_MARKER`]) prints the configured facts, any other command exits 0 with no output.
/// * A host made unreachable ([`set_unreachable`](Self::set_unreachable)) answers
///   [`SshError::Connect`] to everything; a host given a failing command
///   ([`fail_commands`](Self::fail_commands)) exits 1 on every command containing that text.
/// * Host keys behave like a real host whose key never changes: `TrustOnFirstUse` reports
///   [`SIMULATED_FINGERPRINT`], `Expect` of anything else fails with `HostKeyMismatch`.
/// * A delay longer than the call's limit fails with [`SshError::Timeout`] after the limit.
pub struct SimulatedTransport {
    facts: Facts,
    delay: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// host → `None`: unreachable; `Some(text)`: commands containing `text` fail.
    failures: HashMap<String, Option<String>>,
    executed: VecDeque<(String, String)>,
}

impl SimulatedTransport {
    /// Every host reports `facts`; every call takes `delay`.
    pub fn new(facts: Facts, delay: Duration) -> Self {
        Self {
            facts,
            delay,
            state: Mutex::new(State::default()),
        }
    }

    /// From now on `host` cannot be reached (a powered-off machine).
    pub fn set_unreachable(&self, host: &str) {
        self.state().failures.insert(host.to_owned(), None);
    }

    /// From now on, commands run on `host` that contain `text` exit with status 1.
    pub fn fail_commands(&self, host: &str, text: &str) {
        self.state()
            .failures
            .insert(host.to_owned(), Some(text.to_owned()));
    }

    /// Removes any failure configured for `host`.
    pub fn heal(&self, host: &str) {
        self.state().failures.remove(host);
    }

    /// The `(host, command)` pairs executed so far, oldest first (the latest 10,000), so a test
    /// can count steps. Commands on unreachable hosts are not recorded: they never ran.
    pub fn executed(&self) -> Vec<(String, String)> {
        self.state().executed.iter().cloned().collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing can panic while the lock is held; a poisoned lock still holds valid data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The delay, the reachability and the host key check shared by `exec` and `probe`.
    async fn connect(&self, target: &SshTarget, limit: Duration) -> Result<(), SshError> {
        if self.delay >= limit {
            tokio::time::sleep(limit).await;
            return Err(SshError::Timeout(format!(
                "Simulated host {} did not answer within {} ms.",
                target.host,
                limit.as_millis()
            )));
        }
        tokio::time::sleep(self.delay).await;
        if matches!(self.state().failures.get(&target.host), Some(None)) {
            return Err(SshError::Connect(format!(
                "Connection refused: {}:{} (simulated)",
                target.host, target.port
            )));
        }
        if let HostKeyPolicy::Expect(expected) = &target.host_key
            && expected.trim() != SIMULATED_FINGERPRINT
        {
            return Err(SshError::HostKeyMismatch {
                expected: expected.clone(),
                actual: SIMULATED_FINGERPRINT.to_owned(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl HostTransport for SimulatedTransport {
    fn real_hosts(&self) -> bool {
        false
    }

    async fn exec(
        &self,
        target: &SshTarget,
        command: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        self.connect(target, timeout.min(target.connect_timeout)).await?;
        let mut state = self.state();
        if state.executed.len() >= HISTORY_LIMIT {
            state.executed.pop_front();
        }
        state
            .executed
            .push_back((target.host.clone(), command.to_owned()));
        let failing = match state.failures.get(&target.host) {
            Some(Some(text)) if command.contains(text.as_str()) => Some(text.clone()),
            _ => None,
        };
        drop(state);
        let mut out = ExecOutput {
            exit_status: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            host_key_fingerprint: SIMULATED_FINGERPRINT.to_owned(),
        };
        if let Some(text) = failing {
            out.exit_status = 1;
            out.stderr = format!("simulated failure of '{text}'\n").into_bytes();
        } else if command.contains(FACTS_MARKER) {
            out.stdout = self.facts.to_script_output().into_bytes();
        }
        Ok(out)
    }

    async fn probe(&self, target: &SshTarget) -> Result<String, SshError> {
        self.connect(target, target.connect_timeout).await?;
        Ok(SIMULATED_FINGERPRINT.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{facts_command, parse_facts};

    fn facts() -> Facts {
        Facts {
            os_id: "fedora".into(),
            ostree: false,
            cpus: 2,
            memory_kb: 4_000_000,
            space_kb: 100_000_000,
            hostname: "sim".into(),
        }
    }

    fn target(host: &str) -> SshTarget {
        SshTarget {
            host: host.into(),
            port: 22,
            user: "root".into(),
            private_key: String::new(),
            host_key: HostKeyPolicy::TrustOnFirstUse,
            connect_timeout: Duration::from_secs(30),
        }
    }

    const LIMIT: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn answers_facts_and_runs_other_commands_silently() {
        // Core holds transports as trait objects, chosen by configuration.
        let sim = std::sync::Arc::new(SimulatedTransport::new(facts(), Duration::ZERO));
        let _as_object: std::sync::Arc<dyn HostTransport> = sim.clone();
        let out = sim
            .exec(&target("10.0.0.1"), &facts_command(), LIMIT)
            .await
            .unwrap();
        assert_eq!(out.exit_status, 0);
        assert_eq!(parse_facts(&out.stdout_text()).unwrap(), facts());
        assert_eq!(out.host_key_fingerprint, SIMULATED_FINGERPRINT);
        let out = sim
            .exec(&target("10.0.0.1"), "dnf update -y", LIMIT)
            .await
            .unwrap();
        assert_eq!((out.exit_status, out.stdout.len(), out.stderr.len()), (0, 0, 0));
        assert_eq!(
            sim.probe(&target("10.0.0.1")).await.unwrap(),
            SIMULATED_FINGERPRINT
        );
        let executed = sim.executed();
        assert_eq!(executed.len(), 2);
        assert_eq!(executed[1], ("10.0.0.1".to_owned(), "dnf update -y".to_owned()));
    }

    #[tokio::test]
    async fn configured_failures_hit_only_their_host_and_commands() {
        let sim = SimulatedTransport::new(facts(), Duration::ZERO);
        sim.fail_commands("10.0.0.2", "dnf update");
        sim.set_unreachable("10.0.0.3");
        let out = sim
            .exec(&target("10.0.0.2"), "dnf update -y", LIMIT)
            .await
            .unwrap();
        assert_eq!(out.exit_status, 1);
        assert!(out.stderr_text().contains("simulated failure"));
        let out = sim.exec(&target("10.0.0.2"), "true", LIMIT).await.unwrap();
        assert_eq!(out.exit_status, 0);
        let out = sim
            .exec(&target("10.0.0.1"), "dnf update -y", LIMIT)
            .await
            .unwrap();
        assert_eq!(out.exit_status, 0);
        let err = sim.exec(&target("10.0.0.3"), "true", LIMIT).await.unwrap_err();
        assert!(matches!(err, SshError::Connect(_)), "{err:?}");
        assert!(err.is_unreachable());
        assert!(matches!(
            sim.probe(&target("10.0.0.3")).await,
            Err(SshError::Connect(_))
        ));
        sim.heal("10.0.0.3");
        sim.heal("10.0.0.2");
        assert!(sim.probe(&target("10.0.0.3")).await.is_ok());
        let out = sim
            .exec(&target("10.0.0.2"), "dnf update -y", LIMIT)
            .await
            .unwrap();
        assert_eq!(out.exit_status, 0);
    }

    #[tokio::test]
    async fn pinned_host_keys_are_checked() {
        let sim = SimulatedTransport::new(facts(), Duration::ZERO);
        let mut t = target("10.0.0.1");
        t.host_key = HostKeyPolicy::Expect(SIMULATED_FINGERPRINT.into());
        assert!(sim.exec(&t, "true", LIMIT).await.is_ok());
        t.host_key = HostKeyPolicy::Expect("SHA256:somethingelse".into());
        let err = sim.exec(&t, "true", LIMIT).await.unwrap_err();
        assert_eq!(err.to_string(), "Host key changed.");
        assert!(
            sim.executed().len() == 1,
            "a command ran despite the key mismatch"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delay_applies_and_a_delay_beyond_the_limit_times_out() {
        let sim = SimulatedTransport::new(facts(), Duration::from_secs(3));
        let start = tokio::time::Instant::now();
        assert!(sim.exec(&target("10.0.0.1"), "true", LIMIT).await.is_ok());
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        let start = tokio::time::Instant::now();
        let err = sim
            .exec(&target("10.0.0.1"), "true", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::Timeout(_)), "{err:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
